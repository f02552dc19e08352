//! Who is attached to a queue in which role, and whether they still live.
//!
//! A [`RoleSlot`] records one attached process by its **process owner id**
//! ([`crate::owner::process_owner_id`]): a liveness token the kernel
//! releases when the process dies, written by the compare-and-swap that
//! takes the slot — so a holder killed at any instant, whoever reuses its
//! pid, is seen dead. (On the owner layer's fallback path the id is the
//! pid, checked with its start time.) The SPSC structures have one slot
//! per role — a second attach of a live role is [`AttachError::Taken`];
//! the MPMC queue has a fixed array of slots per role.
//!
//! # The slot
//!
//! | field | meaning |
//! |---|---|
//! | `holder` | the state word below |
//! | `start_lo`, `start_hi` | the holder's start time, on the fallback path only (0: a token holder, or unknown) |
//! | `pid` | the holder's pid: for diagnostics ([`Holder`] reports it), and for a holder to tell a slot it took from one a dead predecessor with the same token left |
//! | `presence` | 0, or the **presence token** of the handle ([`crate::owner`]'s `Presence`, held through the handle's own open file description, so shared by every `fork` copy of it), or [`DETACHING`] |
//! | `handoffs` | how many times a `fork` copy of the holder's handle, in another process than the last user, took up the role's position (the SPSC rings: see `ring.rs`); only compared, any value is harmless |
//!
//! # The `holder` word
//!
//! | value | state | set by |
//! |---|---|---|
//! | `0` | `NEVER`: nobody ever attached | initialisation |
//! | `id` | attached by the live-or-dead owner `id` | the attacher, after writing `pid` and the start time |
//! | `BUSY \| id` | `id` is registering (`pid`, start time being written) | the attacher's CAS |
//! | `GONE` (bit 31 set) | detached cleanly, or found dead by a peer | the holder on drop; a peer by CAS from a dead holder |
//!
//! Transitions: `NEVER`/`GONE`/dead `id` → `BUSY|me` (attach, CAS) →
//! `me` (Release, after `pid` and the start time) → `GONE` (detach, or a
//! peer that found `me` dead, by CAS). Taking over a dead holder's slot is
//! allowed: that is how a restarted producer resumes a queue whose
//! producer was killed. A role is never taken from a holder whose process
//! lives. A `try_` attach whose CAS keeps losing to a moving word gives up
//! after [`TRY_ROUNDS`](crate::sync::TRY_ROUNDS) attempts.
//!
//! Any other bit pattern (a corrupt peer) reads as a dead holder: it can
//! make a queue look disconnected or let a role be taken, never cause UB.
//!
//! # The `presence` word: a handle shared across `fork`
//!
//! The holder id names a *process*; a handle copied into a `fork` child is
//! the same handle in two processes. When the attacher records a presence
//! token (`posix` handles do; the core stays `no_std` and only sees a
//! `u32`), the slot's liveness is the token's: the role lives while *any*
//! copy of the handle, in any process, is open, and is gone when the last
//! one is dropped, or its process exits or is killed. Without one (0: the
//! fallback path, or core-only users) the holder's process decides, as
//! above: a role is then per process.
//!
//! | `presence` | state | set by |
//! |---|---|---|
//! | `0` | none: liveness is the holder's | initialisation; the last copy, at the end of its detach |
//! | `p` | liveness is token `p`'s (the holder id is kept for diagnostics) | the attacher, with the pid, before its Release store of the id |
//! | [`DETACHING`] | the last copy is detaching: live | that copy's CAS `p → DETACHING` |
//!
//! Detaching with a presence: the posix handle first closes its own
//! descriptor and asks whether another copy still holds the token; if so
//! it does nothing more (the role is still held, by the other copy). Else
//! it gates with the CAS `p → DETACHING` — exactly one copy wins it, so the
//! role count is decremented once, and no attacher can take the slot
//! meanwhile (it reads as live) — then leaves the count, marks the holder
//! `GONE` (a CAS from the word it saw, never a newer attacher's) and
//! clears the presence (`DETACHING → 0`, a CAS, never a newer
//! attacher's). A copy that was killed instead leaves `p` with its token
//! released: peers read the slot dead, as for a killed holder.

use crate::owner::{self, is_token, test_hooks, Liveness, ID_MASK};
use crate::primitive::{AtomicU32, Ordering};
use core::fmt;

/// `holder`: nobody ever attached.
pub const NEVER: u32 = 0;
/// `holder` flag: the owner in the low bits is registering.
pub const BUSY: u32 = 1 << 30;
/// `holder`: the role was held and is not any more.
pub const GONE: u32 = 1 << 31;
/// `presence`: the handle's last copy is detaching (reads as live).
pub const DETACHING: u32 = u32::MAX;

/// One registration: a process holding a role.
#[derive(Debug, Default)]
#[repr(C)]
pub struct RoleSlot {
    /// See the state table in the module docs.
    holder: AtomicU32,
    /// Low and high halves of the holder's start time (fallback path
    /// only; 0: a token holder, or unknown).
    start_lo: AtomicU32,
    start_hi: AtomicU32,
    /// The holder's pid (module docs).
    pid: AtomicU32,
    /// The handle's presence token, 0 or [`DETACHING`] (module docs).
    presence: AtomicU32,
    /// Hand-offs between `fork` copies of the holder's handle (module
    /// docs): written only when one copy takes over from another, so
    /// every user's per-call check of it is a read of a line nobody
    /// writes meanwhile.
    handoffs: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<RoleSlot>(), 24);

/// What a [`RoleSlot`] says about its holder. The pid is the one the
/// holder recorded when it attached (0 if it was killed before writing it,
/// or if the holder word names no owner at all: see [`RoleSlot::raw`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nobody ever attached.
    Never,
    /// A holder detached, or was found dead.
    Gone,
    /// Process `pid` holds the role and is alive (or liveness is unknown).
    Alive(u32),
    /// Process `pid` held the role and has died.
    Dead(u32),
}

/// Why a process could not attach in a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The role is single and a live process holds it.
    Taken {
        /// The holder's pid.
        pid: u32,
    },
    /// Every slot of a multi-holder role is held by a live process.
    Full {
        /// How many holders the role allows.
        max: usize,
    },
    /// The role was closed for good: its holders are gone and a peer saw
    /// it, or a holder called `close()`. (Disconnected is final: make a
    /// new queue or pipe.)
    Closed,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Taken { pid: 0 } => f.write_str(
                "this role's registration kept changing under every attempt (another process attaching, or a peer rewriting shared memory); retry",
            ),
            AttachError::Taken { pid } => write!(
                f,
                "this role is already held by live process {pid}; drop that handle first (only one producer and one consumer may attach)"
            ),
            AttachError::Full { max } => write!(
                f,
                "all {max} registration slots of this role are held by live processes; drop a handle or create the queue with more slots"
            ),
            AttachError::Closed => f.write_str(
                "this role was closed (its holders are gone, or one called close()); a disconnected queue or pipe stays disconnected: create a new one"
            ),
        }
    }
}

impl core::error::Error for AttachError {}

impl RoleSlot {
    /// An empty slot (state `NEVER`).
    #[must_use]
    pub fn new() -> RoleSlot {
        RoleSlot {
            holder: AtomicU32::new(NEVER),
            start_lo: AtomicU32::new(0),
            start_hi: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            presence: AtomicU32::new(0),
            handoffs: AtomicU32::new(0),
        }
    }

    /// The hand-off count (see the module docs). Relaxed: only compared;
    /// a copy that finds it moved loads the ring's indices with Acquire.
    #[inline(always)]
    pub(crate) fn handoffs(&self) -> u32 {
        self.handoffs.load(Ordering::Relaxed)
    }

    /// Records that the caller's copy took the role's position up from
    /// another copy (which last saw `seen`): the new count. Relaxed: the
    /// position itself is published by the ring's index stores.
    pub(crate) fn hand_off(&self, seen: u32) -> u32 {
        let next = seen.wrapping_add(1);
        self.handoffs.store(next, Ordering::Relaxed);
        next
    }

    /// The raw presence word (diagnostics: 0, a token, or [`DETACHING`]).
    #[must_use]
    pub fn raw_presence(&self) -> u32 {
        self.presence.load(Ordering::Relaxed)
    }

    /// The raw holder word (for tests and diagnostics).
    #[must_use]
    pub fn raw(&self) -> u32 {
        self.holder.load(Ordering::Acquire)
    }

    /// Cheap check, no syscall: whether the slot says "gone" or "never".
    #[inline]
    #[cfg_attr(not(target_has_atomic = "64"), allow(dead_code))] // used by mpmc
    pub(crate) fn looks_empty(&self) -> bool {
        let w = self.holder.load(Ordering::Acquire);
        w == NEVER || w & GONE != 0
    }

    /// What the slot says about its holder, asking the OS whether the
    /// recorded owner still runs (syscalls: keep off hot paths).
    #[must_use]
    pub fn holder(&self) -> Holder {
        // Acquire pairs with the Release store of the id in `try_take`:
        // seeing the plain id, we see the pid and start time written
        // before it.
        self.holder_of(self.holder.load(Ordering::Acquire))
    }

    fn holder_of(&self, w: u32) -> Holder {
        self.holder_of_by(w, true)
    }

    /// Whether the holder's *process* lives, whatever the presence says
    /// (the MPMC queue judges a claim by the process that made it; no
    /// marking). Syscalls.
    #[cfg_attr(not(target_has_atomic = "64"), allow(dead_code))] // used by mpmc
    pub(crate) fn process_live(&self) -> bool {
        let w = self.holder.load(Ordering::Acquire);
        matches!(self.holder_of_by(w, false), Holder::Alive(_))
    }

    fn holder_of_by(&self, w: u32, by_presence: bool) -> Holder {
        if w == NEVER {
            return Holder::Never;
        }
        if w & GONE != 0 {
            return Holder::Gone;
        }
        let id = w & ID_MASK;
        if id == 0 {
            return Holder::Dead(0);
        }
        // A slot being registered (`BUSY`) is judged by its attacher's id:
        // its presence word is still the predecessor's. Relaxed: ordered
        // by the Acquire load of `w` (the attacher wrote it before its
        // Release store of the id).
        let presence = if by_presence {
            self.presence.load(Ordering::Relaxed)
        } else {
            0
        };
        let (pid, live) = if w & BUSY == 0 && presence == DETACHING {
            (self.pid.load(Ordering::Relaxed), Liveness::Alive)
        } else if w & BUSY == 0 && presence != 0 {
            (self.pid.load(Ordering::Relaxed), owner::liveness(presence))
        } else if is_token(id) {
            (self.pid.load(Ordering::Relaxed), owner::liveness(id))
        } else if w & BUSY != 0 {
            (id, owner::liveness(id))
        } else {
            (id, owner::liveness_with_start(id, self.start()))
        };
        match live {
            Liveness::Dead => Holder::Dead(pid),
            Liveness::Alive | Liveness::Unknown => Holder::Alive(pid),
        }
    }

    fn start(&self) -> u64 {
        u64::from(self.start_lo.load(Ordering::Relaxed))
            | (u64::from(self.start_hi.load(Ordering::Relaxed)) << 32)
    }

    /// Whether holder word `w` names the calling process's id `me`
    /// (process `pid`) but was left by a dead earlier holder of that id: a
    /// token drawn again (the recorded pid is not ours), or on the fallback
    /// path a reused pid (the recorded start time is not ours). A slot we
    /// are still registering (`BUSY`) is never a predecessor's.
    fn left_by_predecessor(&self, w: u32, me: u32, pid: u32) -> bool {
        if w & ID_MASK != me || w & (BUSY | GONE) != 0 {
            return false;
        }
        if is_token(me) {
            return self.pid.load(Ordering::Relaxed) != pid;
        }
        let recorded = self.start();
        recorded != 0 && owner::start_time(pid).is_some_and(|now| now != recorded)
    }

    /// Whether a live process holds the slot; marks a dead holder `GONE` so
    /// the next cheap check sees it.
    pub(crate) fn is_live(&self) -> bool {
        let w = self.holder.load(Ordering::Acquire);
        match self.holder_of(w) {
            Holder::Alive(_) => true,
            Holder::Dead(_) => {
                // Only if unchanged: a new attacher may have taken it since.
                let _ = self
                    .holder
                    .compare_exchange(w, GONE, Ordering::AcqRel, Ordering::Relaxed);
                false
            }
            Holder::Never | Holder::Gone => false,
        }
    }

    /// Tries to register the calling process. `Err(pid)` if a live
    /// process holds the slot; `Err(0)` if the slot kept changing under
    /// [`TRY_ROUNDS`](crate::sync::TRY_ROUNDS) attempts (see
    /// [`AttachError::Taken`]'s message).
    pub(crate) fn try_take(&self, presence: u32) -> Result<(), u32> {
        // Role holders notify waiters: make their side of the fence pair
        // cheap (see `WaitPoint`).
        super::asym::register();
        let (me, pid) = owner::process_ident();
        let me = me & ID_MASK;
        let mut lost = 0;
        loop {
            let w = self.holder.load(Ordering::Acquire);
            if let Holder::Alive(holder) = self.holder_of(w) {
                if !self.left_by_predecessor(w, me, pid) {
                    return Err(holder);
                }
            }
            if self
                .holder
                .compare_exchange(w, BUSY | me, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                lost += 1;
                if lost > crate::sync::TRY_ROUNDS {
                    return Err(0);
                }
                continue;
            }
            test_hooks::after_owner_cas();
            // A token holder needs no start time. (Miri cannot read /proc:
            // it records "unknown", which checks treat as "the id alone".)
            let start = if is_token(me) || cfg!(miri) {
                0
            } else {
                owner::start_time(pid).unwrap_or(0)
            };
            self.start_lo.store(start as u32, Ordering::Relaxed);
            self.start_hi.store((start >> 32) as u32, Ordering::Relaxed);
            self.pid.store(pid, Ordering::Relaxed);
            self.presence.store(presence, Ordering::Relaxed);
            // Release pairs with the Acquire in `holder()`: whoever sees the
            // plain id sees the pid, start time and presence.
            self.holder.store(me, Ordering::Release);
            return Ok(());
        }
    }

    /// Detaches the calling process, if the slot still names it.
    ///
    /// A compare-exchange, not a store: a handle copied into a `fork` child
    /// (whose pid differs), or a holder that was wrongly judged dead and
    /// taken over, must not clear the slot of the live process that now
    /// holds it.
    pub(crate) fn release(&self) {
        let me = owner::process_owner_id() & ID_MASK;
        // SeqCst: ordered before the waker's fence in `WaitPoint::notify`
        // that follows, so a sleeper that checks after sees `GONE`.
        let _ = self
            .holder
            .compare_exchange(me, GONE, Ordering::SeqCst, Ordering::Relaxed);
    }
}

impl RoleSlot {
    /// The holder word now, for [`begin_detach`](Self::begin_detach)'s
    /// caller to hand to [`finish_detach`](Self::finish_detach).
    pub(crate) fn holder_word(&self) -> u32 {
        self.holder.load(Ordering::Acquire)
    }

    /// Detach with presence `p`, step 1 (module docs): `true` if this
    /// caller won the gate `p → DETACHING` while the holder word is still
    /// `w` (the one seen before), so that it alone leaves the count and
    /// finishes. `false`: the slot moved on (a peer found the token
    /// released and marked it, or a new attacher took it) — nothing of
    /// ours is left to undo.
    pub(crate) fn begin_detach(&self, p: u32, w: u32) -> bool {
        if p == 0 || p == DETACHING {
            return false;
        }
        // AcqRel: the gate. Acquire pairs with the attacher's Release
        // store of the id (we see its presence); Release orders our
        // earlier pushes or pops before the detach for a peer that sees
        // DETACHING.
        if self
            .presence
            .compare_exchange(p, DETACHING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if self.holder.load(Ordering::Acquire) != w || w & (GONE | BUSY) != 0 {
            // A peer marked the slot (the token read released between our
            // close and the gate) or a new attacher holds it: undo the
            // gate if it is still ours, and touch nothing else.
            let _ =
                self.presence
                    .compare_exchange(DETACHING, p, Ordering::Relaxed, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Detach with presence, last step: the holder word `w` → `GONE`, then
    /// the presence `DETACHING → 0` (CASes: never a newer attacher's).
    pub(crate) fn finish_detach(&self, w: u32) {
        // SeqCst: as in `release`.
        let _ = self
            .holder
            .compare_exchange(w, GONE, Ordering::SeqCst, Ordering::Relaxed);
        let _ = self
            .presence
            .compare_exchange(DETACHING, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// Attaches to the first free (never used, gone, or dead-held) slot,
/// recording `presence` (0: none).
#[cfg_attr(not(target_has_atomic = "64"), allow(dead_code))] // used by mpmc
pub(crate) fn attach_any(slots: &[RoleSlot], presence: u32) -> Result<usize, AttachError> {
    let mut first_holder = None;
    for (i, slot) in slots.iter().enumerate() {
        match slot.try_take(presence) {
            Ok(()) => return Ok(i),
            Err(pid) => {
                first_holder.get_or_insert(pid);
            }
        }
    }
    match (slots.len(), first_holder) {
        (1, Some(pid)) => Err(AttachError::Taken { pid }),
        (max, _) => Err(AttachError::Full { max }),
    }
}

/// Whether any slot is held by a live process (syscalls per held slot).
#[cfg_attr(not(target_has_atomic = "64"), allow(dead_code))] // used by mpmc
pub(crate) fn any_live(slots: &[RoleSlot]) -> bool {
    slots.iter().any(RoleSlot::is_live)
}

/// Whether any slot was ever attached.
#[cfg_attr(not(target_has_atomic = "64"), allow(dead_code))] // used by mpmc
pub(crate) fn ever_attached(slots: &[RoleSlot]) -> bool {
    slots
        .iter()
        .any(|s| s.holder.load(Ordering::Acquire) != NEVER)
}

/// Cheap check: every slot looks gone or never used (no syscall). A slot
/// whose holder died without detaching still looks held.
#[cfg_attr(not(target_has_atomic = "64"), allow(dead_code))] // used by mpmc
pub(crate) fn all_look_empty(slots: &[RoleSlot]) -> bool {
    slots.iter().all(RoleSlot::looks_empty)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)] // asks the OS for pids and start times
    fn attach_detach_and_single_holder() {
        let slot = [RoleSlot::new()];
        assert_eq!(slot[0].holder(), Holder::Never);
        assert_eq!(attach_any(&slot, 0), Ok(0));
        let me = owner::current_process_id();
        assert_eq!(slot[0].holder(), Holder::Alive(me));
        assert_eq!(attach_any(&slot, 0), Err(AttachError::Taken { pid: me }));
        slot[0].release();
        assert_eq!(slot[0].holder(), Holder::Gone);
        assert!(!any_live(&slot));
        assert!(ever_attached(&slot));
        assert_eq!(attach_any(&slot, 0), Ok(0));
    }

    #[test]
    #[cfg_attr(miri, ignore)] // asks the OS for pids and start times
    fn garbage_holder_reads_as_dead_and_is_taken_over() {
        let slot = [RoleSlot::new()];
        slot[0].holder.store(BUSY, Ordering::Relaxed); // pid 0: impossible
        assert_eq!(slot[0].holder(), Holder::Dead(0));
        assert_eq!(attach_any(&slot, 0), Ok(0));
        slot[0].holder.store(0xffff_ffff, Ordering::Relaxed);
        assert_eq!(slot[0].holder(), Holder::Gone);
    }

    /// A peer may write every word of a slot
    /// while this process holds a `&RoleSlot` (every queue handle does):
    /// that is only sound if every byte is inside an atomic. Miri checks it
    /// (a write through a shared reference to plain data is UB there);
    /// natively the test only shows the slot survives the bytes.
    #[test]
    fn a_peer_may_write_every_word_of_a_borrowed_slot() {
        let slot = RoleSlot::new();
        let seen: &RoleSlot = &slot;
        let base = core::ptr::from_ref(seen).cast::<u32>().cast_mut();
        for i in 0..core::mem::size_of::<RoleSlot>() / 4 {
            // SAFETY: in bounds and 4-aligned; the peer's write is atomic,
            // as every shmkit peer's is.
            unsafe { core::sync::atomic::AtomicU32::from_ptr(base.add(i)) }
                .store(0xffff_ffff, core::sync::atomic::Ordering::Relaxed);
        }
        assert_eq!(seen.raw(), 0xffff_ffff);
    }
}
