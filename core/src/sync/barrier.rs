//! [`Barrier`]: Python's `Barrier`, with its broken state, across processes.
//!
//! # The state word
//!
//! | bits | meaning |
//! |---|---|
//! | 0..16 | parties arrived in this round |
//! | 16..31 | generation (15 bits, wrapping) |
//! | 31 | [`BROKEN`] |
//!
//! | from | to | who | ordering |
//! |---|---|---|---|
//! | `g, c` | `g, c+1` | an arriving party (not the last) | AcqRel |
//! | `g, parties-1` | `g+1, 0` | the last party: the leader; wakes all | AcqRel |
//! | `g, parties-1` | `g, parties` | the last party of a [`wait_with`](Barrier::wait_with) round, before its action | AcqRel |
//! | `g, parties` | `g+1, 0` | that leader, after its action; wakes all | AcqRel |
//! | `g, c` | `BROKEN\|g, c` | a timeout, [`abort`](Barrier::abort), or a waiter that found a registered party dead; wakes all | AcqRel |
//! | any | `g+2, 0` | [`reset`](Barrier::reset); wakes all | AcqRel |
//!
//! A caller that finds `g, parties` (more callers than parties, one
//! coming while the leader runs its action) sleeps until the round
//! passes and arrives in the next; more than `parties` arrivals is a
//! corrupt word, which breaks the barrier.
//!
//! A sleeper of round `g` that sees generation `g+1` passed; `g` with
//! `BROKEN`, or any other generation (a reset), gets [`BarrierError::Broken`].
//! (So a barrier shared by more callers than parties may mis-report a
//! round if one caller sleeps through two of them; Python allows that use,
//! shmkit documents it.)
//!
//! # Parties that die
//! The barrier keeps a table of [`TRACKED_PARTIES`] slots of `(owner id,
//! tag, arrived generation)` (the id and tag of [`crate::owner`]: a
//! liveness token and the thread's tid, or on the fallback path a tid and
//! its start time). A caller registers on its first
//! [`wait`](Barrier::wait) (or earlier with [`register`](Barrier::register),
//! which also covers the first round). Sleepers wake every
//! [`LIVENESS_SLICE`] and check the parties that are
//! registered but have not arrived in this round; one that is dead (or whose
//! id was reused) breaks the barrier for everyone, as a timeout would.
//! A party that leaves for good withdraws — [`unregister`](Barrier::unregister)
//! for a thread, [`unregister_process`](Barrier::unregister_process) for
//! its whole process — else its exit later reads as a death. The
//! `shmkit-posix` handle does the latter by itself when a process drops its
//! last handle to the barrier or exits cleanly (`exit`, a return from
//! `main`, a `process::spawn` function that returned), so only a process
//! that is killed (or crashes) breaks the barrier. Parties beyond the
//! table's size are not tracked. [`reset`](Barrier::reset) clears the
//! table.
//!
//! # Party counts
//! [`Barrier::new`] takes 1 to [`MAX_PARTIES`] parties and refuses any
//! other count with [`PartiesError`], as Python's `Barrier(0)` raises
//! `ValueError`: a barrier that silently became a one-party barrier (or
//! one of 65 535 parties when 70 000 were asked) would release its callers
//! early.
//!
//! ```
//! use shmkit_core::sync::{Barrier, BarrierError};
//! use core::time::Duration;
//! let b = Barrier::new(1).unwrap();
//! assert!(b.wait().unwrap().is_leader());
//! assert!(Barrier::new(0).is_err());
//! let b2 = Barrier::new(2).unwrap();
//! assert_eq!(b2.wait_timeout(Duration::from_millis(1)), Err(BarrierError::TimedOut));
//! assert_eq!(b2.wait(), Err(BarrierError::Broken)); // until reset()
//! b2.reset();
//! assert!(!b2.is_broken());
//! ```

use core::fmt;
use core::time::Duration;

use super::{
    ident, is_dead, is_reused, park, passed, Contention, DEFAULT_SPIN, LIVENESS_SLICE, TRY_ROUNDS,
};
use crate::owner::is_token;
use crate::primitive::{AtomicU32, Ordering};
use crate::wait::{self, Deadline, Spin};

/// State word bit: the barrier is broken.
pub const BROKEN: u32 = 1 << 31;
const COUNT_MASK: u32 = 0xFFFF;
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0x7FFF;
/// Most parties a barrier can have.
pub const MAX_PARTIES: u32 = 0xFFFF;
/// Parties whose death the barrier can detect.
#[cfg(not(loom))]
pub const TRACKED_PARTIES: usize = 32;
/// Parties whose death the barrier can detect (small under loom, where
/// every slot load is a model-checked step).
#[cfg(loom)]
pub const TRACKED_PARTIES: usize = 2;
/// `arrived` marker bit, so that generation 0 differs from "never".
const ARRIVED: u32 = 1 << 31;

/// Why a barrier wait failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierError {
    /// The barrier is broken (a timeout, `abort`, `reset`, or a dead
    /// party); call `reset` before using it again.
    Broken,
    /// This caller's timeout passed; the barrier is now broken for all.
    TimedOut,
    /// The party count in shared memory is 0 or above [`MAX_PARTIES`]:
    /// the object is corrupt or uninitialised.
    InvalidParties,
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BarrierError::Broken => "the barrier is broken (timeout, abort, reset, or a party died); call reset() and retry the round",
            BarrierError::TimedOut => "timed out waiting at the barrier; it is now broken for every party until reset()",
            BarrierError::InvalidParties => "the barrier's party count is 0 or too large: the shared object is corrupt or was never initialised",
        })
    }
}

impl core::error::Error for BarrierError {}

/// Why [`Barrier::new`] refused a party count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartiesError {
    /// The count that was asked for.
    pub parties: u32,
}

impl fmt::Display for PartiesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a barrier needs 1 to {MAX_PARTIES} parties, not {}",
            self.parties
        )
    }
}

impl core::error::Error for PartiesError {}

/// What a successful [`Barrier::wait`] tells its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
    index: u32,
}

impl BarrierWaitResult {
    /// Whether this caller arrived last (exactly one per round).
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// This caller's place in the round's order of arrival: 0 for the
    /// first, `parties - 1` for the last (the leader). Python's
    /// `barrier.wait()` return value: different for every party of a
    /// round, so one of them can be picked (`if i == 0: ...`).
    ///
    /// ```
    /// use shmkit_core::sync::Barrier;
    /// let b = Barrier::new(1).unwrap();
    /// let r = b.wait().unwrap();
    /// assert_eq!((r.index(), r.is_leader()), (0, true));
    /// ```
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }
}

#[repr(C)]
struct Slot {
    /// The party's owner id; 0 = free.
    id: AtomicU32,
    /// The party's tag (see `owner::thread_ident`).
    tag: AtomicU32,
    arrived: AtomicU32,
    _reserved: AtomicU32,
}

/// A barrier for `parties` callers. `#[repr(C)]`; initialise with
/// [`new`](Self::new) (zero-filled memory has 0 parties: every wait fails
/// with [`BarrierError::InvalidParties`]).
#[repr(C)]
pub struct Barrier {
    state: AtomicU32,
    parties: AtomicU32,
    /// Python's `Barrier(n, timeout=t)`: the timeout of `wait` and
    /// `wait_with`, in milliseconds (rounded up); 0 = none. A setting:
    /// any value is valid.
    default_timeout_ms: AtomicU32,
    _reserved: AtomicU32,
    slots: [Slot; TRACKED_PARTIES],
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Barrier, [u32; 4 + 4 * TRACKED_PARTIES]);

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.load(Ordering::Relaxed);
        f.debug_struct("Barrier")
            .field("parties", &self.parties.load(Ordering::Relaxed))
            .field("arrived", &(s & COUNT_MASK))
            .field("broken", &(s & BROKEN != 0))
            .finish()
    }
}

fn generation(s: u32) -> u32 {
    (s >> GEN_SHIFT) & GEN_MASK
}

impl Barrier {
    /// A barrier for `parties` callers.
    ///
    /// # Errors
    /// [`PartiesError`] unless `1 <= parties <= MAX_PARTIES` (Python's
    /// `ValueError`).
    pub fn new(parties: u32) -> Result<Barrier, PartiesError> {
        if !(1..=MAX_PARTIES).contains(&parties) {
            return Err(PartiesError { parties });
        }
        Ok(Barrier {
            state: AtomicU32::new(0),
            parties: AtomicU32::new(parties),
            default_timeout_ms: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            slots: core::array::from_fn(|_| Slot {
                id: AtomicU32::new(0),
                tag: AtomicU32::new(0),
                arrived: AtomicU32::new(0),
                _reserved: AtomicU32::new(0),
            }),
        })
    }

    /// A barrier for `parties` callers whose [`wait`](Self::wait) and
    /// [`wait_with`](Self::wait_with) time out after `timeout`: Python's
    /// `Barrier(parties, timeout=timeout)` (see
    /// [`set_default_timeout`](Self::set_default_timeout)).
    ///
    /// ```
    /// use core::time::Duration;
    /// use shmkit_core::sync::{Barrier, BarrierError};
    /// let b = Barrier::with_timeout(2, Duration::from_millis(5)).unwrap();
    /// assert_eq!(b.wait(), Err(BarrierError::TimedOut));
    /// ```
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_timeout(parties: u32, timeout: Duration) -> Result<Barrier, PartiesError> {
        let b = Barrier::new(parties)?;
        b.set_default_timeout(Some(timeout));
        Ok(b)
    }

    /// Sets (or with `None` removes) the timeout that [`wait`](Self::wait)
    /// and [`wait_with`](Self::wait_with) apply, for every party: Python's
    /// `timeout` argument of `Barrier`, for a barrier already made
    /// (`shmkit_posix::sync::Barrier::anonymous(n)`, then this). Kept in
    /// milliseconds, rounded up (so never early), at most `u32::MAX` ms
    /// (about 49 days); `Some(ZERO)` is 1 ms. The timed waits keep their
    /// own timeout.
    pub fn set_default_timeout(&self, timeout: Option<Duration>) {
        let ms = timeout.map_or(0, |t| {
            let ms = t.as_nanos().div_ceil(1_000_000).max(1);
            u32::try_from(ms).unwrap_or(u32::MAX)
        });
        // Relaxed: a setting, read on its own by each wait.
        self.default_timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// The timeout of [`wait`](Self::wait) (see
    /// [`set_default_timeout`](Self::set_default_timeout)).
    #[must_use]
    pub fn default_timeout(&self) -> Option<Duration> {
        // Relaxed: a setting.
        match self.default_timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms))),
        }
    }

    /// The deadline of a `wait` without an explicit timeout.
    fn default_deadline(&self) -> Option<Deadline> {
        self.default_timeout().map(Deadline::after)
    }

    /// The number of parties.
    #[must_use]
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed)
    }

    /// Parties waiting in the current round (a snapshot).
    #[must_use]
    pub fn n_waiting(&self) -> u32 {
        self.state.load(Ordering::Relaxed) & COUNT_MASK
    }

    /// Whether the barrier is broken.
    #[must_use]
    pub fn is_broken(&self) -> bool {
        self.state.load(Ordering::Acquire) & BROKEN != 0
    }

    /// Breaks the barrier: current and future waiters get `Broken` until
    /// [`reset`](Self::reset).
    pub fn abort(&self) {
        self.state.fetch_or(BROKEN, Ordering::AcqRel);
        wait::wake_all(&self.state);
    }

    /// Returns the barrier to its initial state; callers waiting now get
    /// `Broken`. Clears the party table (parties re-register on their next
    /// wait).
    ///
    /// As in Python, this needs outside coordination: a party of a round
    /// that just completed but has not yet woken up also gets `Broken`.
    /// Call it on a broken barrier, or when nobody waits.
    pub fn reset(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        let mut tries = 0;
        loop {
            let new = ((generation(s) + 2) & GEN_MASK) << GEN_SHIFT;
            tries += 1;
            if tries > TRY_ROUNDS {
                // The word keeps moving (a peer rewriting it): a reset
                // discards the round anyway, so store the new generation
                // unconditionally rather than retry without end.
                self.state.swap(new, Ordering::AcqRel);
                break;
            }
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        for slot in &self.slots {
            slot.id.store(0, Ordering::Relaxed);
        }
        wait::wake_all(&self.state);
    }

    /// Registers the calling thread as a party, so its death breaks the
    /// barrier even before its first wait. Returns false if the table is
    /// full (the caller is then not tracked).
    pub fn register(&self) -> bool {
        self.slot_of().is_some()
    }

    /// Removes the calling thread from the party table (call before
    /// leaving for good, so that exiting does not read as dying).
    pub fn unregister(&self) {
        let (me, _) = ident();
        for slot in &self.slots {
            if slot.id.load(Ordering::Relaxed) == me {
                slot.id.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Removes every party of the calling *process* from the table: what a
    /// process that leaves cleanly does (its last barrier handle dropped,
    /// or its exit), so that leaving does not read as dying. A process
    /// killed never gets here, and its death still breaks the barrier.
    pub fn unregister_process(&self) {
        for slot in &self.slots {
            let id = slot.id.load(Ordering::Relaxed);
            if id != 0 && crate::owner::is_this_process(id) {
                // Only if unchanged (Relaxed: as `unregister`).
                let _ = slot
                    .id
                    .compare_exchange(id, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }

    /// The calling thread's slot, registering it if needed (`None`: the
    /// table is full). One pass over the table, one CAS per free slot.
    fn slot_of(&self) -> Option<&Slot> {
        let (me, tag) = ident();
        for slot in &self.slots {
            if slot.id.load(Ordering::Relaxed) == me {
                // Ours, or a dead predecessor's with our id: refresh the tag.
                slot.tag.store(tag, Ordering::Relaxed);
                return Some(slot);
            }
        }
        for slot in &self.slots {
            if slot
                .id
                .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                slot.tag.store(tag, Ordering::Relaxed);
                slot.arrived.store(0, Ordering::Relaxed);
                return Some(slot);
            }
        }
        None
    }

    /// Waits until all parties have called `wait`, or for the
    /// [default timeout](Self::set_default_timeout) if one is set.
    ///
    /// # Errors
    /// `Broken`, `InvalidParties`; `TimedOut` only with a default timeout.
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(self.default_deadline(), DEFAULT_SPIN, None::<fn()>)
    }

    /// Waits at most `timeout`; timing out breaks the barrier (Python).
    ///
    /// # Errors
    /// `TimedOut` (never before `timeout` has elapsed), `Broken`,
    /// `InvalidParties`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(Some(Deadline::after(timeout)), DEFAULT_SPIN, None::<fn()>)
    }

    /// [`wait`](Self::wait) with Python's `action`: the last party to
    /// arrive runs `action` before any party of the round is released
    /// (the others' actions are dropped unrun). Every party of a barrier
    /// built with an action in Python passes the same one here, since a
    /// closure cannot live in shared memory.
    ///
    /// While the action runs, the round counts as not yet passed: a
    /// waiter that times out then breaks it, and if the action panics (or
    /// its process dies) the barrier breaks, so the others get `Broken`
    /// rather than hang — Python's rule for an action that raises.
    ///
    /// ```
    /// use shmkit_core::sync::Barrier;
    /// let b = Barrier::new(1).unwrap();
    /// let mut ran = 0;
    /// assert!(b.wait_with(|| ran += 1).unwrap().is_leader());
    /// assert_eq!(ran, 1);
    /// ```
    ///
    /// # Errors
    /// As [`wait`](Self::wait); the leader gets `Broken` if the round was
    /// broken while its action ran.
    pub fn wait_with(&self, action: impl FnOnce()) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(self.default_deadline(), DEFAULT_SPIN, Some(action))
    }

    /// [`wait_with`](Self::wait_with) for at most `timeout` (the time the
    /// leader's action takes counts for the waiters, not for the leader).
    ///
    /// # Errors
    /// As [`wait_timeout`](Self::wait_timeout) and
    /// [`wait_with`](Self::wait_with).
    pub fn wait_timeout_with(
        &self,
        timeout: Duration,
        action: impl FnOnce(),
    ) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_until(Some(Deadline::after(timeout)), DEFAULT_SPIN, Some(action))
    }

    fn wait_until<F: FnOnce()>(
        &self,
        deadline: Option<Deadline>,
        spin: Spin,
        action: Option<F>,
    ) -> Result<BarrierWaitResult, BarrierError> {
        let parties = self.parties.load(Ordering::Relaxed);
        if parties == 0 || parties > MAX_PARTIES {
            return Err(BarrierError::InvalidParties);
        }
        let slot = self.slot_of();
        let mut s = self.state.load(Ordering::Acquire);
        // Rounds lost to a state word that moved under us (`sync` docs).
        let mut contention = Contention::new();
        let (gen, index) = loop {
            if s & BROKEN != 0 {
                return Err(BarrierError::Broken);
            }
            let gen = generation(s);
            let count = s & COUNT_MASK;
            if count > parties {
                // Corrupt: more arrivals than parties. Break, never index.
                self.abort();
                return Err(BarrierError::Broken);
            }
            if count == parties {
                // A leader runs its action: this round is full, and we
                // (a caller beyond the parties) belong to the next one.
                // Sleep until the word moves, checking the leader's
                // liveness (its slot reads "not arrived" during the
                // action) every slice, as the round's waiters do.
                if passed(deadline) {
                    self.abort();
                    return Err(BarrierError::TimedOut);
                }
                if park(&self.state, s, deadline, Some(LIVENESS_SLICE)) {
                    if self.a_party_died(gen) {
                        self.break_round(s);
                    }
                } else if contention.back_off(deadline) {
                    // Cut short again and again (a peer moving the word).
                    self.abort();
                    return Err(BarrierError::TimedOut);
                }
                s = self.state.load(Ordering::Acquire);
                continue;
            }
            if let Some(slot) = slot {
                slot.arrived.store(gen | ARRIVED, Ordering::Relaxed);
            }
            let last = count + 1 == parties;
            let new = if last && action.is_none() {
                ((gen + 1) & GEN_MASK) << GEN_SHIFT
            } else {
                // Not last, or last with an action: `count == parties`
                // until the action is done.
                s + 1
            };
            // SYNC POINT (arrive): AcqRel: each arrival releases what its
            // party did before the barrier; the leader's acquires all of
            // them and releases them to the sleepers' Acquire loads.
            match self
                .state
                .compare_exchange(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if last => {
                    if let Some(action) = action {
                        self.run_action(gen, parties, slot, action)?;
                    } else {
                        wait::wake_all(&self.state);
                    }
                    return Ok(BarrierWaitResult {
                        leader: true,
                        index: count,
                    });
                }
                Ok(_) => break (gen, count),
                Err(now) => {
                    s = now;
                    if contention.back_off(deadline) {
                        // Timed out before arriving: break the round, as
                        // a timeout after arriving does.
                        self.abort();
                        return Err(BarrierError::TimedOut);
                    }
                }
            }
        };
        let done = |s: u32| generation(s) != gen || s & BROKEN != 0;
        spin.spin_until(|| done(self.state.load(Ordering::Relaxed)));
        let mut next_check = Deadline::after(LIVENESS_SLICE);
        loop {
            let s = self.state.load(Ordering::Acquire);
            let g = generation(s);
            if g == (gen + 1) & GEN_MASK {
                return Ok(BarrierWaitResult {
                    leader: false,
                    index,
                });
            }
            if g != gen || s & BROKEN != 0 {
                return Err(BarrierError::Broken);
            }
            if passed(deadline) {
                if self.break_round(s) {
                    return Err(BarrierError::TimedOut);
                }
                continue;
            }
            if next_check.has_passed() {
                next_check = Deadline::after(LIVENESS_SLICE);
                if self.a_party_died(gen) {
                    self.break_round(s);
                    continue;
                }
            }
            if !park(&self.state, s, deadline, Some(LIVENESS_SLICE)) {
                // Cut short (woken, or the word moved): a round (the
                // deadline is checked at the top of the next one).
                let _ = contention.back_off(None);
            }
        }
    }

    /// The leader's part of a round with an action: the state is
    /// `gen, parties` (full, not yet passed). Runs `action`, then passes
    /// the round; breaks it instead if `action` unwinds.
    #[cold]
    fn run_action(
        &self,
        gen: u32,
        parties: u32,
        slot: Option<&Slot>,
        action: impl FnOnce(),
    ) -> Result<(), BarrierError> {
        let full = (gen << GEN_SHIFT) | parties;
        // Not arrived while the action runs: if this process dies in it,
        // the waiters' liveness checks see a registered party that has
        // not arrived, dead, and break the round.
        if let Some(slot) = slot {
            slot.arrived.store(0, Ordering::Relaxed);
        }
        /// Breaks the round if the action unwinds (no `catch_unwind` in
        /// `no_std`: a drop guard).
        struct BreakOnUnwind<'a>(&'a Barrier, u32);
        impl Drop for BreakOnUnwind<'_> {
            fn drop(&mut self) {
                self.0.break_round(self.1);
            }
        }
        let guard = BreakOnUnwind(self, full);
        action();
        core::mem::forget(guard);
        // SYNC POINT (pass): AcqRel, as the action-less leader's arrival:
        // releases the action's effects (and what every party did before
        // the barrier) to the sleepers' Acquire loads of the new
        // generation.
        let passed = self
            .state
            .compare_exchange(
                full,
                ((gen + 1) & GEN_MASK) << GEN_SHIFT,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        wait::wake_all(&self.state);
        // Failed: a timeout, abort or reset broke the round meanwhile.
        if passed {
            Ok(())
        } else {
            Err(BarrierError::Broken)
        }
    }

    /// Sets `BROKEN` if the state is still `s`; wakes all on success.
    fn break_round(&self, s: u32) -> bool {
        let ok = self
            .state
            .compare_exchange(s, s | BROKEN, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ok {
            wait::wake_all(&self.state);
        }
        ok
    }

    /// Whether a registered party that has not arrived in round `gen` is
    /// dead.
    fn a_party_died(&self, gen: u32) -> bool {
        self.slots.iter().any(|slot| {
            let id = slot.id.load(Ordering::Relaxed);
            if id == 0 || slot.arrived.load(Ordering::Relaxed) == gen | ARRIVED {
                return false;
            }
            let tag = slot.tag.load(Ordering::Relaxed);
            // Re-read: a slot freed and re-taken meanwhile is skipped.
            (is_dead(id) || is_reused(id, tag)) && slot.id.load(Ordering::Relaxed) == id
        })
    }
}

/// A party in a [`Barrier`]'s tracking table, as
/// [`Barrier::tracked_parties`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackedParty {
    /// The party's owner id (a liveness token, or a tid; see
    /// [`crate::owner`]).
    pub id: u32,
    /// The party's thread id (as recorded when it registered).
    pub tid: u32,
    /// Whether it arrived in the current generation (it is waiting, or the
    /// round it arrived in has not completed).
    pub arrived: bool,
    /// Whether it is dead (or its id was reused by a newer task). A dead
    /// party that has not arrived breaks the barrier at the next liveness
    /// check of a waiter.
    pub dead: bool,
}

/// Diagnostics: loads only (plus liveness syscalls), safe on a read-only
/// mapping, never waits.
impl Barrier {
    /// The generation: the number of completed rounds (15 bits, wrapping;
    /// a [`reset`](Self::reset) adds 2).
    ///
    /// ```
    /// use shmkit_core::sync::Barrier;
    /// let b = Barrier::new(1).unwrap();
    /// b.wait().unwrap();
    /// assert_eq!(b.generation(), 1);
    /// ```
    #[must_use]
    pub fn generation(&self) -> u32 {
        // Relaxed: a picture for a human.
        generation(self.state.load(Ordering::Relaxed))
    }

    /// The registered parties (those the barrier can tell are dead), in
    /// table order. Asks the OS about each one's liveness.
    pub fn tracked_parties(&self) -> impl Iterator<Item = TrackedParty> + '_ {
        let gen = self.generation();
        self.slots.iter().filter_map(move |slot| {
            // Relaxed: a picture for a human.
            let id = slot.id.load(Ordering::Relaxed);
            if id == 0 {
                return None;
            }
            let tag = slot.tag.load(Ordering::Relaxed);
            Some(TrackedParty {
                id,
                tid: if is_token(id) {
                    crate::owner::tag_tid(tag)
                } else {
                    id
                },
                arrived: slot.arrived.load(Ordering::Relaxed) == gen | ARRIVED,
                dead: is_dead(id) || is_reused(id, tag),
            })
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn rounds_with_threads_elect_one_leader_each() {
        let b = Barrier::new(3).unwrap();
        let leaders = AtomicU32::new(0);
        let rounds = if cfg!(miri) { 3 } else { 50 };
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..rounds {
                        if b.wait().unwrap().is_leader() {
                            leaders.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    b.unregister();
                });
            }
        });
        assert_eq!(leaders.load(Ordering::Relaxed), rounds);
    }

    /// Python's action: run once per round by the last arrival, before
    /// anyone is released.
    #[test]
    fn the_action_runs_once_before_release() {
        let b = Barrier::new(3).unwrap();
        let ran = AtomicU32::new(0);
        let rounds = if cfg!(miri) { 2 } else { 20 };
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for round in 1..=rounds {
                        let r = b
                            .wait_with(|| {
                                ran.fetch_add(1, Ordering::Relaxed);
                            })
                            .unwrap();
                        // Relaxed: the barrier's AcqRel orders the action
                        // before every release.
                        assert_eq!(ran.load(Ordering::Relaxed), round);
                        let _ = r;
                        // Nobody may start the next round's action before
                        // all have checked this one's.
                        b.wait().unwrap();
                    }
                    b.unregister();
                });
            }
        });
        assert_eq!(ran.load(Ordering::Relaxed), rounds);
        assert!(!b.is_broken());
    }

    /// A caller beyond the parties that comes while the leader runs its
    /// action belongs to the next round: it waits (here until its timeout,
    /// which breaks the barrier, as every timeout does) instead of taking
    /// the full round for corruption.
    #[test]
    fn a_caller_during_the_action_waits_for_the_next_round() {
        let b = Barrier::new(2).unwrap();
        let d = Duration::from_millis(20);
        std::thread::scope(|s| {
            let first = s.spawn(|| b.wait());
            while b.n_waiting() != 1 {
                std::thread::yield_now();
            }
            let leader = b.wait_with(|| {
                // The round is full while this runs.
                assert_eq!(b.n_waiting(), 2);
                let late = std::thread::scope(|s2| {
                    s2.spawn(|| {
                        let t0 = std::time::Instant::now();
                        (b.wait_timeout(d), t0.elapsed())
                    })
                    .join()
                    .unwrap()
                });
                assert_eq!(late.0, Err(BarrierError::TimedOut));
                assert!(late.1 >= d, "waited {:?}", late.1);
            });
            assert_eq!(leader, Err(BarrierError::Broken));
            assert_eq!(first.join().unwrap(), Err(BarrierError::Broken));
        });
    }

    /// An action that panics breaks the round (Python: an action that
    /// raises): the other party gets `Broken`, not a hang.
    #[test]
    fn a_panicking_action_breaks_the_barrier() {
        let b = Barrier::new(2).unwrap();
        let results: [_; 2] = std::thread::scope(|s| {
            let party = || {
                s.spawn(|| {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        b.wait_with(|| panic!("action failed")).map(drop)
                    }));
                    b.unregister();
                    r
                })
            };
            let (x, y) = (party(), party());
            [x.join().unwrap(), y.join().unwrap()]
        });
        let panicked = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(panicked, 1, "the leader's action ran and panicked");
        assert!(results
            .iter()
            .any(|r| matches!(r, Ok(Err(BarrierError::Broken)))));
        assert!(b.is_broken());
    }

    #[test]
    fn timeout_breaks_and_is_never_early() {
        let b = Barrier::new(2).unwrap();
        let d = Duration::from_millis(20);
        let t0 = std::time::Instant::now();
        assert_eq!(b.wait_timeout(d), Err(BarrierError::TimedOut));
        assert!(t0.elapsed() >= d);
        assert!(b.is_broken());
        b.reset();
        assert!(!b.is_broken());
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_panic() {
        let b = Barrier::new(2).unwrap();
        b.parties.store(0, Ordering::Relaxed);
        assert_eq!(b.wait(), Err(BarrierError::InvalidParties));
        b.parties.store(2, Ordering::Relaxed);
        b.state.store(0x7FFF_FFFF, Ordering::Relaxed);
        assert_eq!(b.wait(), Err(BarrierError::Broken));
    }

    #[test]
    #[cfg(not(miri))]
    fn dead_registered_party_breaks_the_barrier() {
        let b = Barrier::new(2).unwrap();
        // A registered party with an id no task has, never arriving.
        b.slots[0].id.store(1 << 23, Ordering::Relaxed);
        assert_eq!(b.wait(), Err(BarrierError::Broken));
    }
}
