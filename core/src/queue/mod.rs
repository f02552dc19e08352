//! Lock-free queues in shared memory: Python's `multiprocessing` `Queue`,
//! `SimpleQueue` and `Pipe` as ring buffers between OS processes.
//!
//! | structure | file | producers × consumers | order | element |
//! |---|---|---|---|---|
//! | [`ring::Ring`] | `ring.rs` | 1 × 1 | FIFO | `T: Pod` |
//! | [`mpmc::Queue`] (64-bit atomics only) | `mpmc.rs` | up to a fixed number each | FIFO per producer | `T: Pod` |
//! | [`stamped::StampedRing`] (64-bit atomics only) | `stamped.rs` | 1 × 1 | FIFO | `T: Pod` |
//! | [`pipe::Pipe`] | `pipe.rs` | 1 × 1 per direction | FIFO | byte messages |
//! | [`msg::ByteQueue`] (64-bit atomics only) | `msg.rs` | as the MPMC queue | FIFO per producer | byte messages up to a fixed length |
//! | [`joinable::Joinable`] (64-bit atomics only) | `joinable.rs` | as the MPMC queue | FIFO per producer | byte messages, with an unfinished-task count |
//!
//! The index ring moves a message's slot and the shared indices and hands
//! out contiguous chunks: the choice for batches, chunks and byte streams.
//! The stamped ring and the MPMC queue keep a stamp next to each value,
//! so a message moves one line and no index line is fought over: the
//! choice for single messages (see [`stamped`] for the comparison).
//!
//! Each structure is a `#[repr(C)]` control block plus arrays, all of them
//! pointer-free: the `shmkit-posix` crate places them in named, anonymous or
//! memfd segments, loom models build them with `new()`. Processes attach to
//! a structure in a **role** (producer, consumer; see [`roles`]); the role
//! handle is `Send` but not `Sync`, and holds the process's registration,
//! which is how the other side learns that every producer (or consumer) is
//! gone — dropped, or its process dead.
//!
//! # Shared building blocks
//! - [`CachePadded`]: hot indices sit alone on a 128-byte line.
//! - [`WaitPoint`]: a futex sequence word plus a sleeper count. Wakers pay
//!   one fence and one load when nobody sleeps; sleepers spin for what
//!   their handle's [`AdaptiveSpin`] learned, then sleep in slices of
//!   [`WAIT_SLICE`] so that they notice a dead peer without being woken.
//! - The error enums shared by the `Pod` queues ([`TrySendError`],
//!   [`SendTimeoutError`], [`SendError`], [`TryRecvError`],
//!   [`RecvTimeoutError`], [`RecvError`]) and [`roles::AttachError`].

use core::fmt;
use core::time::Duration;

use roles::RoleSlot;

use crate::primitive::{AtomicU32, Ordering};
use crate::wait::{self, AdaptiveSpin, Deadline, Spin};

#[cfg(target_has_atomic = "64")]
pub mod joinable;
#[cfg(target_has_atomic = "64")]
pub mod mpmc;
#[cfg(target_has_atomic = "64")]
pub mod msg;
pub mod pipe;
pub mod ring;
pub mod roles;
#[cfg(target_has_atomic = "64")]
pub mod slots;
#[cfg(target_has_atomic = "64")]
pub mod stamped;

/// The longest a blocked queue operation sleeps before it looks at its
/// peers' liveness again: bounds how long a waiter takes to notice that the
/// other side died without saying so.
pub const WAIT_SLICE: Duration = Duration::from_millis(50);

/// The sleep slice when the asymmetric barrier is unavailable.
const UNPAIRED_SLICE: Duration = Duration::from_millis(1);

/// How many consecutive empty (or full) `try_` calls a handle makes on
/// cheap checks alone before it considers asking the OS whether the peers
/// are alive. Liveness costs syscalls; busy-polling loops must not pay
/// them per call.
pub const LIVENESS_POLL_EVERY: u32 = 4096;

/// The least time between two liveness checks of a busy-polling handle:
/// every [`LIVENESS_POLL_EVERY`] failing calls it reads the clock, and asks
/// the OS only if this long passed since it last did. (Counting calls
/// alone made a fast poller ask every ≈100 µs, and a liveness check with
/// its `/proc` read costs tens of microseconds.)
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(10);

/// A handle's failing `try_` calls, and when it last asked the OS about
/// its peers: the rate limit of a busy poller's liveness checks.
///
/// Only failing calls touch it. A successful call writes nothing here: a
/// store to the handle on every message (resetting a "consecutive
/// failures" count) cost the index ring's streaming consumer about a
/// quarter of its throughput in the VM's fast mode, so the count is of all
/// failing calls, and the liveness check comes every
/// [`LIVENESS_POLL_EVERY`] of them, at most once per [`LIVENESS_INTERVAL`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Idle {
    calls: u32,
    asked_at: Option<Duration>,
}

impl Idle {
    pub(crate) const fn new() -> Idle {
        Idle {
            calls: 0,
            asked_at: None,
        }
    }

    /// Failing calls so far (wrapping).
    #[inline(always)]
    pub(crate) fn calls(&self) -> u32 {
        self.calls
    }

    /// Counts one more failing call; `true` on every
    /// [`LIVENESS_POLL_EVERY`]-th, which should then ask
    /// [`interval_passed`](Self::interval_passed). Inline: the common
    /// failing call of a busy poller costs an increment and a test.
    #[inline(always)]
    pub(crate) fn tick(&mut self) -> bool {
        self.calls = self.calls.wrapping_add(1);
        self.calls % LIVENESS_POLL_EVERY == 0
    }

    /// After [`tick`](Self::tick) said so: whether [`LIVENESS_INTERVAL`]
    /// passed since the last check (then it counts as done now).
    #[cold]
    pub(crate) fn interval_passed(&mut self) -> bool {
        let Some(now) = wait::now() else {
            // No clock: count calls alone.
            return true;
        };
        match self.asked_at {
            Some(at) if now.saturating_sub(at) < LIVENESS_INTERVAL => false,
            _ => {
                self.asked_at = Some(now);
                true
            }
        }
    }
}

/// Presence-count flag of a role (the MPMC queue's and the SPSC
/// structures' role lines count the handles attached and not dropped): a
/// handle of the role attached once.
pub const EVER_ATTACHED: u32 = 1 << 31;

/// Presence-count flag of a role: the role is **closed for good** (sticky).
/// Set on the producers' role by a consumer that observes it gone after it
/// attached once (the consumer's `Disconnected`: final, as crossbeam's and
/// Python's), and on either role by an explicit `close()` of one of its
/// handles. (A producer that finds the consumer gone does not close the
/// consumers' role: a consumer restarted after a crash takes the dead
/// one's registration over and the queue resumes.) After it no handle of the role attaches
/// ([`AttachError::Closed`](roles::AttachError::Closed)) and the peers see
/// the role gone on every call: `Disconnected` is final. A hostile peer
/// setting it only makes the role look gone.
pub const CLOSED: u32 = 1 << 30;

/// Role index of producers (senders) in the role words.
pub(crate) const PRODUCER: usize = 0;
/// Role index of consumers (receivers).
pub(crate) const CONSUMER: usize = 1;

/// Whether a role's presence word `v` says "every handle left, or closed".
#[inline(always)]
pub(crate) fn left_or_closed(v: u32) -> bool {
    v == EVER_ATTACHED || v & CLOSED != 0
}

/// The roles line of a single-producer single-consumer structure (the
/// index ring, the pipe, the stamped ring): one [`RoleSlot`] per role, and
/// per role a `present` count of the handles attached and not dropped,
/// with [`EVER_ATTACHED`] set once one was and [`CLOSED`] once the role
/// closed for good.
///
/// The count is the cheap half of "the peer is gone": a full or empty
/// call loads it (a word written only at attach and detach). A holder
/// that died is never subtracted; its slot's liveness check, on the slow
/// path, finds it, and the next holder of the role resets the count. A
/// handle recorded with a presence token counts once for all its `fork`
/// copies (the last copy subtracts: see [`roles`]); without one it counts
/// only in the process that attached it (a copy inherited across `fork`
/// neither subtracts nor releases). A hostile value only makes the peer
/// look gone or not.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Roles {
    pub(crate) slots: [RoleSlot; 2],
    present: [AtomicU32; 2],
}

impl Roles {
    pub(crate) fn new() -> Roles {
        Roles {
            slots: [RoleSlot::new(), RoleSlot::new()],
            present: [AtomicU32::new(0), AtomicU32::new(0)],
        }
    }

    /// Takes `role`'s slot for the caller (with `presence`, 0 for none)
    /// and records that one handle is attached now.
    ///
    /// The count is set, not incremented: the role is single, so taking
    /// its slot means no live process held it, and a count left by a
    /// holder that died (never subtracted) is stale. (Holders `leave`
    /// before they release the slot, so no departure can land after
    /// this.) A CAS loop that refuses [`CLOSED`], bounded: a word that
    /// keeps moving gives up as the slot's own CAS does.
    pub(crate) fn attach(&self, role: usize, presence: u32) -> Result<(), roles::AttachError> {
        // Acquire: pairs with the Release of whoever closed the role.
        if self.present[role].load(Ordering::Acquire) & CLOSED != 0 {
            return Err(roles::AttachError::Closed);
        }
        self.slots[role]
            .try_take(presence)
            .map_err(|pid| roles::AttachError::Taken { pid })?;
        let mut lost = 0;
        loop {
            let v = self.present[role].load(Ordering::Acquire);
            let refused = if v & CLOSED != 0 {
                Some(roles::AttachError::Closed)
            } else if lost > crate::sync::TRY_ROUNDS {
                Some(roles::AttachError::Taken { pid: 0 })
            } else {
                None
            };
            if let Some(e) = refused {
                self.slots[role].release();
                return Err(e);
            }
            // Release: pairs with the readers' Acquire (the attach
            // happened).
            if self.present[role]
                .compare_exchange(v, EVER_ATTACHED | 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(());
            }
            lost += 1;
        }
    }

    /// Counts one attached handle of `role` less.
    pub(crate) fn leave(&self, role: usize) {
        // Release (in the AcqRel): the leaving handle's last push or pop
        // happens before a reader's Acquire load that sees the count drop.
        self.present[role].fetch_sub(1, Ordering::AcqRel);
    }

    /// Closes `role` for good ([`CLOSED`]).
    #[cold]
    pub(crate) fn close(&self, role: usize) {
        // Release: pairs with `attach`'s Acquire; a closer's pushes and
        // pops happen before.
        self.present[role].fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Detaches a handle of `role` that attached with `presence` (0: none,
    /// then only in the process that attached it, `same_process`).
    /// `true` if this call detached (the caller then wakes the peer).
    pub(crate) fn detach(&self, role: usize, presence: u32, same_process: bool) -> bool {
        let slot = &self.slots[role];
        if presence == 0 {
            if !same_process {
                return false;
            }
            self.leave(role);
            slot.release();
            return true;
        }
        let w = slot.holder_word();
        if !slot.begin_detach(presence, w) {
            return false;
        }
        self.leave(role);
        slot.finish_detach(w);
        true
    }

    /// Whether `role` attached once and every handle of it detached, or it
    /// is closed (one load; a dead holder still counts).
    #[inline(always)]
    pub(crate) fn all_left(&self, role: usize) -> bool {
        // Acquire: pairs with `leave` and `close`.
        left_or_closed(self.present[role].load(Ordering::Acquire))
    }

    /// Whether `role` is gone for good: every handle detached, or, when
    /// `check`, it attached once (or its slot was claimed by an attacher
    /// killed before it counted itself in) and its slot is not held by a
    /// live process (syscalls). Once it is, the role is closed
    /// ([`CLOSED`]): the answer stays.
    #[cold]
    pub(crate) fn gone(&self, role: usize, check: bool) -> bool {
        let v = self.present[role].load(Ordering::Acquire);
        if v & CLOSED != 0 {
            return true;
        }
        let gone = v == EVER_ATTACHED
            || (check
                && (v & EVER_ATTACHED != 0 || self.slots[role].raw() != roles::NEVER)
                && !self.slots[role].is_live());
        // A consumer that sees the producer gone closes its role: its
        // `Disconnected` is final. A producer that sees the consumer gone
        // does not: its push fails with the value back, and a consumer
        // restarted after a crash may take the dead one's slot over.
        if gone && role == PRODUCER {
            self.close(role);
        }
        gone
    }
}

/// `T` alone on a 128-byte line (two 64-byte lines on x86_64, which the
/// adjacent-line prefetcher pulls in pairs; one line on aarch64's big cores).
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub struct CachePadded<T>(pub T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Where the waiters of one condition ("data available", "space
/// available") sleep.
///
/// # Protocol (no lost wake-ups)
/// ```text
/// waiter                                   waker
/// sleepers += 1          (SeqCst RMW)      make the condition true
/// s = seq                (SeqCst)          fence(SeqCst)             [A]
/// check condition -> done if true          if sleepers != 0 {
/// futex_wait(seq, s, slice)                    woke_at = now
/// sleepers -= 1                                seq += 1; futex_wake(seq)
///                                          }
/// ```
/// SYNC POINT WAIT-1: if the waker's load at \[A\] reads 0, the waiter's
/// increment comes later in the single total order of SeqCst operations,
/// so the waiter's check sees the condition. If it reads non-zero, it
/// bumps `seq`: either before the waiter loaded `s` (then the Acquire of
/// `s` sees the condition, written before the bump) or after (then the
/// futex compare fails and the waiter returns at once).
///
/// The fence pair is **asymmetric** on Linux: wakers run on every push or
/// pop and only need a compiler fence, while a waiter, about to sleep
/// anyway, issues `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which makes
/// every running thread of every registered process execute a full
/// barrier. Processes register when they attach a role (`asym::register`);
/// an unregistered process (after `fork`, or where the kernel lacks the
/// command) uses a real `fence(SeqCst)` as a waker, and a waiter whose
/// `membarrier` failed sleeps in 1 ms slices. Under loom and on other
/// targets both halves are `fence(SeqCst)`.
///
/// So when nobody sleeps a waker makes no syscall and writes nothing here:
/// a compiler fence and one load of a line only sleepers write.
///
/// A waiter that dies asleep leaves `sleepers` too high: wakers then make a
/// useless `FUTEX_WAKE` per operation. That costs speed, never correctness.
///
/// | field | written by | meaning |
/// |---|---|---|
/// | `seq` | wakers | bumped (wrapping) on each wake; the futex word |
/// | `sleepers` | waiters | how many are between "I am going to sleep" and "I woke" |
/// | `woke_at` | wakers, before the bump | the low 32 bits of the monotonic clock (ns) at the last wake: a woken sleeper learns what a wake-up costs ([`AdaptiveSpin`]); any value is harmless |
#[derive(Debug, Default)]
#[repr(C)]
pub struct WaitPoint {
    seq: AtomicU32,
    sleepers: AtomicU32,
    woke_at: AtomicU32,
}

/// The low 32 bits of the monotonic clock in nanoseconds (wraps every
/// 4.3 s; only differences below that are taken).
fn clock_ns32() -> Option<u32> {
    wait::now().map(|t| t.as_nanos() as u32)
}

impl WaitPoint {
    /// A wait point with nobody asleep.
    #[must_use]
    pub fn new() -> WaitPoint {
        WaitPoint {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            woke_at: AtomicU32::new(0),
        }
    }

    /// Wakes every sleeper after the caller made a condition true. Costs a
    /// load (and, without `membarrier`, a fence) when nobody sleeps.
    #[inline(always)]
    pub(crate) fn notify(&self) {
        // SYNC POINT WAIT-1, waker side (see the type docs): the light
        // half of an asymmetric fence pair.
        asym::light();
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake();
        }
    }

    #[cold]
    fn wake(&self) {
        if let Some(now) = clock_ns32() {
            // Relaxed: a measurement, published by the Release below.
            self.woke_at.store(now, Ordering::Relaxed);
        }
        // Release: a waiter whose Acquire load of `seq` sees this bump sees
        // the condition the caller made true before it.
        self.seq.fetch_add(1, Ordering::Release);
        wait::wake_all(&self.seq);
    }

    /// Runs `attempt` until it returns `Some`: at once, then spinning for
    /// `spin`'s budget (at least `floor` iterations unless `spin` is a
    /// fixed [`Spin::NONE`]), then sleeping in slices of [`WAIT_SLICE`];
    /// then tells `spin` how long it took. `attempt(true)` is the slow
    /// check, made once per sleep slice (where peers' liveness may be
    /// asked). Returns `None` when `deadline` passes (checked every
    /// [`Spin::YIELD_EVERY`] spins, and before each sleep).
    pub(crate) fn block_on<R>(
        &self,
        spin: &mut AdaptiveSpin,
        floor: u32,
        deadline: Option<Deadline>,
        mut attempt: impl FnMut(bool) -> Option<R>,
    ) -> Option<R> {
        if let Some(r) = attempt(false) {
            return Some(r);
        }
        let budget = if spin.nominal().iterations == 0 {
            0
        } else {
            spin.budget().max(floor)
        };
        let mut i = 0;
        // The clock when the spin passed YIELD_EVERY iterations: short
        // waits end before and pay no clock read; a long one measures what
        // an iteration of this loop costs.
        let mut long_spin_at = None;
        while i < budget {
            Spin::pause(i);
            if let Some(r) = attempt(false) {
                spin.caught(i);
                return Some(r);
            }
            i += 1;
            if i % Spin::YIELD_EVERY == 0 {
                if deadline.is_some_and(|d| d.has_passed()) {
                    return None;
                }
                if i == Spin::YIELD_EVERY {
                    long_spin_at = wait::now();
                }
            }
        }
        let parked_at = wait::now();
        if let (Some(t0), Some(t1)) = (long_spin_at, parked_at) {
            spin.spun(budget - Spin::YIELD_EVERY, t1.saturating_sub(t0));
        }
        let spun = u64::from(budget) * u64::from(spin.iteration_ns());
        // The slow check (liveness syscalls, a /proc read) runs only after
        // a whole slice passed without a wake-up: a peer that keeps waking
        // us is alive, and a dead one is noticed one slice later.
        let mut slow = false;
        let mut wake_latency = None;
        loop {
            // SYNC POINT WAIT-1, waiter side: the heavy half.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let paired = asym::heavy();
            let seq = self.seq.load(Ordering::SeqCst);
            if let Some(r) = attempt(slow) {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                if let (Some(t0), Some(t1)) = (parked_at, wait::now()) {
                    let waited = t1.saturating_sub(t0) + Duration::from_nanos(spun);
                    spin.parked(waited, wake_latency);
                }
                return Some(r);
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return None;
            }
            // Without the heavy barrier a waker's light one may miss us:
            // sleep in short slices so such a miss costs at most one.
            let slice = Deadline::after(if paired { WAIT_SLICE } else { UNPAIRED_SLICE });
            wait::wait(
                &self.seq,
                seq,
                Some(deadline.map_or(slice, |d| d.min(slice))),
            );
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            // Relaxed: only whether a wake happened, and its stamp (a
            // measurement; the next attempt re-checks the condition).
            if self.seq.load(Ordering::Relaxed) != seq {
                wake_latency = clock_ns32().map(|now| {
                    Duration::from_nanos(u64::from(
                        now.wrapping_sub(self.woke_at.load(Ordering::Relaxed)),
                    ))
                });
            }
            slow = slice.has_passed();
            // Without a clock (loom, bare metal) `wait` may return at once:
            // let the peer run.
            crate::primitive::spin_loop();
        }
    }
}

macro_rules! display_error {
    ($ty:ty, $($pat:pat => $msg:expr),+ $(,)?) => {
        impl<T> fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($pat => $msg),+ })
            }
        }
        impl<T> fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
        impl<T> core::error::Error for $ty {}
    };
}

/// Why [`try_push`](ring::Producer::try_push) failed; the value comes back.
#[doc(alias = "put_nowait")]
pub enum TrySendError<T> {
    /// No free slot right now.
    Full(T),
    /// Every consumer is gone (dropped or dead): nobody would ever pop.
    Disconnected(T),
    /// The shared indices are impossible: a peer corrupted the queue.
    Corrupt(T),
}

display_error!(TrySendError<T>,
    TrySendError::Full(_) => "the queue is full; retry later or use a blocking push",
    TrySendError::Disconnected(_) => "every consumer is gone (dropped or its process died); nobody will receive this",
    TrySendError::Corrupt(_) => "the queue's shared indices are impossible (corrupted by a peer); recreate the queue",
);

/// Why a push with a timeout failed; the value comes back.
pub enum SendTimeoutError<T> {
    /// The queue stayed full until the deadline.
    Timeout(T),
    /// Every consumer is gone (dropped or dead).
    Disconnected(T),
    /// The shared indices are impossible: a peer corrupted the queue.
    Corrupt(T),
}

display_error!(SendTimeoutError<T>,
    SendTimeoutError::Timeout(_) => "the queue stayed full until the timeout; retry or wait longer",
    SendTimeoutError::Disconnected(_) => "every consumer is gone (dropped or its process died); nobody will receive this",
    SendTimeoutError::Corrupt(_) => "the queue's shared indices are impossible (corrupted by a peer); recreate the queue",
);

/// Why a blocking push failed; the value comes back.
pub enum SendError<T> {
    /// Every consumer is gone (dropped or dead).
    Disconnected(T),
    /// The shared indices are impossible: a peer corrupted the queue.
    Corrupt(T),
}

display_error!(SendError<T>,
    SendError::Disconnected(_) => "every consumer is gone (dropped or its process died); nobody will receive this",
    SendError::Corrupt(_) => "the queue's shared indices are impossible (corrupted by a peer); recreate the queue",
);

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Disconnected(v) | TrySendError::Corrupt(v) => v,
        }
    }
}

impl<T> TrySendError<T> {
    /// What a blocking push makes of a failed attempt: `Err(value)` to
    /// keep waiting (full), or the error to return.
    pub(crate) fn blocking(self) -> Result<SendTimeoutError<T>, T> {
        match self {
            TrySendError::Full(v) => Err(v),
            TrySendError::Disconnected(v) => Ok(SendTimeoutError::Disconnected(v)),
            TrySendError::Corrupt(v) => Ok(SendTimeoutError::Corrupt(v)),
        }
    }
}

impl<T> SendTimeoutError<T> {
    /// The error of a push without a deadline (which cannot time out).
    pub(crate) fn untimed(self) -> SendError<T> {
        match self {
            SendTimeoutError::Corrupt(v) => SendError::Corrupt(v),
            SendTimeoutError::Disconnected(v) | SendTimeoutError::Timeout(v) => {
                SendError::Disconnected(v)
            }
        }
    }
}

/// Why a non-blocking pop returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "get_nowait")]
pub enum TryRecvError {
    /// Nothing is ready right now.
    Empty,
    /// Empty, and every producer is gone (dropped or dead): nothing will
    /// ever arrive. Everything committed before was delivered first.
    Disconnected,
    /// The shared indices are impossible: a peer corrupted the queue.
    Corrupt,
}

/// Why a pop with a timeout returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// Empty, and every producer is gone: nothing will ever arrive.
    Disconnected,
    /// The shared indices are impossible: a peer corrupted the queue.
    Corrupt,
}

/// Why a blocking pop returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Empty, and every producer is gone: nothing will ever arrive.
    Disconnected,
    /// The shared indices are impossible: a peer corrupted the queue.
    Corrupt,
}

impl TryRecvError {
    /// What a blocking pop makes of a failed attempt: `None` to keep
    /// waiting (empty), or the error to return.
    pub(crate) fn blocking(self) -> Option<RecvTimeoutError> {
        match self {
            TryRecvError::Empty => None,
            TryRecvError::Disconnected => Some(RecvTimeoutError::Disconnected),
            TryRecvError::Corrupt => Some(RecvTimeoutError::Corrupt),
        }
    }
}

impl RecvTimeoutError {
    /// The error of a pop without a deadline (which cannot time out).
    pub(crate) fn untimed(self) -> RecvError {
        match self {
            RecvTimeoutError::Corrupt => RecvError::Corrupt,
            RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout => RecvError::Disconnected,
        }
    }
}

const EMPTY_MSG: &str = "the queue is empty; retry later or use a blocking pop";
const TIMEOUT_MSG: &str = "nothing arrived before the timeout; retry or wait longer";
const DISCONNECTED_MSG: &str =
    "every producer is gone (dropped or its process died) and the queue is drained";
const CORRUPT_MSG: &str =
    "the queue's shared indices are impossible (corrupted by a peer); recreate the queue";

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => EMPTY_MSG,
            TryRecvError::Disconnected => DISCONNECTED_MSG,
            TryRecvError::Corrupt => CORRUPT_MSG,
        })
    }
}
impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => TIMEOUT_MSG,
            RecvTimeoutError::Disconnected => DISCONNECTED_MSG,
            RecvTimeoutError::Corrupt => CORRUPT_MSG,
        })
    }
}
impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvError::Disconnected => DISCONNECTED_MSG,
            RecvError::Corrupt => CORRUPT_MSG,
        })
    }
}
impl core::error::Error for TryRecvError {}
impl core::error::Error for RecvTimeoutError {}
impl core::error::Error for RecvError {}

/// Asymmetric fences: `light()` on the hot path, `heavy()` before sleeping.
pub(crate) mod asym {
    // Miri cannot run `membarrier`: it takes the portable path.
    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    mod imp {
        use core::sync::atomic::{compiler_fence, fence, AtomicU32, AtomicU8, Ordering};

        const UNKNOWN: u8 = 0;
        const READY: u8 = 1;
        const UNAVAILABLE: u8 = 2;
        /// Whether *this process* registered for global expedited
        /// membarrier. Reset in fork children (the registration belongs to
        /// the parent's address space).
        static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
        static ATFORK: AtomicU8 = AtomicU8::new(0);

        const CMD_QUERY: libc::c_int = 0;
        const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
        const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

        fn membarrier(cmd: libc::c_int) -> libc::c_long {
            // SAFETY: membarrier takes two integers and touches no memory
            // of ours.
            unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0) }
        }

        /// Bumped in every child after `fork`: a handle that recorded the
        /// epoch when it registered in a process can tell that it now runs
        /// in another one.
        static EPOCH: AtomicU32 = AtomicU32::new(0);

        extern "C" fn forget_in_child() {
            STATE.store(UNKNOWN, Ordering::Relaxed);
            EPOCH.fetch_add(1, Ordering::Relaxed);
        }

        /// The fork epoch of the calling process (see `EPOCH`). Relaxed:
        /// the child handler runs in the child's only thread before `fork`
        /// returns there, so every later load in the child sees it.
        #[inline(always)]
        pub(crate) fn fork_epoch() -> u32 {
            EPOCH.load(Ordering::Relaxed)
        }

        pub(crate) fn register() {
            if STATE.load(Ordering::Relaxed) != UNKNOWN {
                return;
            }
            if ATFORK.swap(1, Ordering::Relaxed) == 0 {
                // SAFETY: the handler only does an atomic store, which is
                // async-signal-safe.
                unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
            }
            let both = libc::c_long::from(CMD_GLOBAL_EXPEDITED | CMD_REGISTER_GLOBAL_EXPEDITED);
            let supported = membarrier(CMD_QUERY);
            let ok = supported >= 0
                && (supported & both) == both
                && membarrier(CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
            STATE.store(if ok { READY } else { UNAVAILABLE }, Ordering::Relaxed);
        }

        #[inline(always)]
        pub(crate) fn light() {
            if STATE.load(Ordering::Relaxed) == READY {
                // The heavy side's membarrier supplies the hardware barrier.
                compiler_fence(Ordering::SeqCst);
            } else {
                fence(Ordering::SeqCst);
            }
        }

        pub(crate) fn heavy() -> bool {
            fence(Ordering::SeqCst);
            membarrier(CMD_GLOBAL_EXPEDITED) == 0
        }
    }

    #[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
    mod imp {
        use crate::primitive::{fence, Ordering};

        pub(crate) fn register() {}

        /// No `fork` here (or it is not tracked): one epoch.
        #[inline(always)]
        #[cfg_attr(not(target_has_atomic = "64"), allow(dead_code))] // used by mpmc
        pub(crate) fn fork_epoch() -> u32 {
            0
        }

        #[inline]
        pub(crate) fn light() {
            fence(Ordering::SeqCst);
        }

        pub(crate) fn heavy() -> bool {
            fence(Ordering::SeqCst);
            true
        }
    }

    /// Which process generation runs: changes in a `fork` child (once the
    /// process called [`register`]). Handles whose shared registration
    /// names the process compare it to notice that they were inherited.
    #[cfg_attr(not(target_has_atomic = "64"), allow(unused_imports))] // used by mpmc
    pub(crate) use imp::fork_epoch;
    /// Registers the calling process for the cheap waker side (Linux:
    /// `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`, once per process).
    pub(crate) use imp::register;
    pub(crate) use imp::{heavy, light};
}

/// Single-threaded runs of every structure's paths (wrap-around, chunks,
/// framing, errors), small enough for miri.
#[cfg(all(test, not(loom)))]
mod tests {
    use core::ptr::NonNull;

    use super::pipe::{Pipe, PipeRecvError, PipeSendError};
    use super::ring::{Ring, RingControl};
    use super::{TryRecvError, TrySendError};

    #[test]
    fn ring_wraps_batches_and_chunks() {
        let ctl = RingControl::new();
        let mut slots = [0u32; 4];
        // SAFETY: `slots` outlives the ring and is only used through it.
        let ring = unsafe { Ring::from_raw(&ctl, NonNull::from(&mut slots).cast(), 4) }.unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        for round in 0..5u32 {
            assert_eq!(tx.push_slice(&[round, round + 1, round + 2]).unwrap(), 3);
            assert!(matches!(tx.write_chunk(2), Err(TrySendError::Full(()))));
            let chunk = tx.write_chunk(1).unwrap();
            let (a, b) = chunk.slices();
            assert_eq!(a.len() + b.len(), 1);
            if a.is_empty() {
                b.set(0, 99).unwrap()
            } else {
                a.set(0, 99).unwrap()
            };
            chunk.commit_all();
            assert!(matches!(tx.try_push(7), Err(TrySendError::Full(7))));
            assert_eq!(rx.try_pop(), Ok(round));
            let chunk = rx.read_chunk(2).unwrap();
            let (a, b) = chunk.slices();
            let mut got = [0; 2];
            let k = a.len();
            a.read_into(0, &mut got[..k]).unwrap();
            b.read_into(0, &mut got[k..]).unwrap();
            assert_eq!(got, [round + 1, round + 2]);
            chunk.commit(2);
            assert_eq!(rx.try_pop(), Ok(99));
            assert_eq!(rx.try_pop(), Err(TryRecvError::Empty));
        }
        let (_, tail) = ctl.raw_indices();
        tail.store(1000, crate::primitive::Ordering::Relaxed);
        assert_eq!(rx.try_pop(), Err(TryRecvError::Corrupt));
    }

    #[test]
    fn pipe_frames_across_the_wrap() {
        let ctl = RingControl::new();
        let mut bytes = [0u8; 16];
        // SAFETY: `bytes` outlives the pipe and is only used through it.
        let pipe = unsafe { Pipe::from_raw(&ctl, NonNull::from(&mut bytes).cast(), 16) }.unwrap();
        let (mut tx, mut rx) = (pipe.sender().unwrap(), pipe.receiver().unwrap());
        let mut buf = [0u8; 12];
        for i in 0..40usize {
            let msg: [u8; 12] = core::array::from_fn(|k| (i * 7 + k) as u8);
            let len = i % 13;
            tx.try_send_bytes(&msg[..len]).unwrap();
            if len > 1 {
                assert_eq!(
                    rx.try_recv_bytes_into(&mut buf[..len - 1]),
                    Err(PipeRecvError::BufferTooSmall { needed: len })
                );
            }
            assert_eq!(rx.try_recv_bytes_into(&mut buf), Ok(len));
            assert_eq!(&buf[..len], &msg[..len]);
        }
        assert_eq!(
            tx.try_send_bytes(&[0; 13]),
            Err(PipeSendError::TooLarge { len: 13, max: 12 })
        );
        drop(tx);
        assert_eq!(rx.try_recv_bytes_into(&mut buf), Err(PipeRecvError::Eof));
    }

    /// Every queue object, laid out by its `Object` impl in one raw
    /// payload, initialised and attached there (as a segment holds it),
    /// moves a message; the parameters round-trip through the header
    /// fingerprint. Under miri this checks the layouts' casts.
    #[cfg(target_has_atomic = "64")]
    #[test]
    fn objects_attach_over_raw_payloads() {
        use super::mpmc::{Mpmc, QueueParams};
        use super::pipe::{Connection, DuplexPipe, OneWayPipe};
        use super::ring::Spsc;
        use super::stamped::StampedSpsc;
        use crate::object::Object;

        #[repr(C, align(128))]
        struct Payload([u8; 4096]);

        fn place<O: Object>(params: O::Params, use_it: impl FnOnce(O::View<'_>)) {
            let len = O::payload_len(&params).unwrap();
            assert!(len <= 4096, "{len}");
            assert_eq!(O::params_from(&O::fingerprint(&params)), Ok(params));
            let mut mem = Payload([0; 4096]);
            let payload = NonNull::new(mem.0.as_mut_ptr()).unwrap();
            // SAFETY: 4096 >= len zeroed bytes, 128-aligned, private to
            // this test, alive until the end of this function.
            let view = unsafe {
                O::init(payload, &params);
                O::attach(payload, &params)
            };
            use_it(view);
        }

        place::<Mpmc<[u32; 3]>>(QueueParams::new(8).with_registry(3, 2), |q| {
            let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
            tx.try_push([1, 2, 3]).unwrap();
            assert_eq!(rx.try_pop(), Ok([1, 2, 3]));
        });
        assert!(Mpmc::<u64>::payload_len(&QueueParams::new(6)).is_err());
        assert!(Mpmc::<u64>::payload_len(&QueueParams::new(8).with_registry(0, 1)).is_err());
        place::<Spsc<u16>>(16, |r| {
            let (mut tx, mut rx) = (r.producer().unwrap(), r.consumer().unwrap());
            tx.try_push(9).unwrap();
            assert_eq!(rx.try_pop(), Ok(9));
        });
        place::<StampedSpsc<u64>>(4, |r| {
            let (mut tx, mut rx) = (r.producer().unwrap(), r.consumer().unwrap());
            tx.try_push(7).unwrap();
            assert_eq!(rx.try_pop(), Ok(7));
        });
        place::<OneWayPipe>(64, |p| {
            let (mut tx, mut rx) = (p.sender().unwrap(), p.receiver().unwrap());
            tx.try_send_bytes(b"hi").unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(rx.try_recv_bytes_into(&mut buf), Ok(2));
        });
        place::<DuplexPipe>(64, |pipes| {
            let mut a = Connection::attach(pipes, 0).unwrap();
            let mut b = Connection::attach(pipes, 1).unwrap();
            a.tx.try_send_bytes(b"ping").unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(b.rx.try_recv_bytes_into(&mut buf), Ok(4));
        });
    }

    #[cfg(target_has_atomic = "64")]
    #[test]
    fn mpmc_wraps_and_releases() {
        use super::mpmc::{Queue, QueueControl};
        use super::roles::RoleSlot;
        use crate::primitive::AtomicU64;
        let ctl = QueueControl::new();
        let producers = [RoleSlot::new(), RoleSlot::new()];
        let consumers = [RoleSlot::new()];
        // 4 slots of a u16: a stamp word and a value word each.
        let words: [AtomicU64; 8] = Default::default();
        let q = Queue::<u16>::from_parts(&ctl, &producers, &consumers, &words).unwrap();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        for i in 0..20u16 {
            tx.try_push(i).unwrap();
            tx.try_push(i + 100).unwrap();
            assert_eq!(rx.try_pop(), Ok(i));
            assert_eq!(rx.try_pop(), Ok(i + 100));
        }
        for i in 0..4 {
            tx.try_push(i).unwrap();
        }
        assert!(matches!(tx.try_push(9), Err(TrySendError::Full(9))));
        assert_eq!(q.len(), 4);
        drop(tx);
        for i in 0..4 {
            assert_eq!(rx.try_pop(), Ok(i));
        }
        assert_eq!(rx.try_pop(), Err(TryRecvError::Disconnected));
    }
}
