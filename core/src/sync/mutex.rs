//! A robust cross-process mutex: [`RawMutex`] and the data-carrying
//! [`Mutex<T>`].
//!
//! # The lock word
//! One `AtomicU32`, the futex word:
//!
//! | bits | meaning |
//! |---|---|
//! | 0..30 | owner id: the holder's liveness token ([`crate::owner`]; a TID on the fallback path), 0 when unlocked |
//! | 30 | [`WAITERS`]: someone may sleep on the word; unlock must wake |
//! | 31 | [`SPINNER`]: someone spins for the lock; unlock reserves the free word for it |
//!
//! The id [`NOT_RECOVERABLE`] (all 30 id bits set: neither a task id nor a
//! token) marks a lock whose data was left inconsistent for good. Every
//! bit pattern has a meaning; the only states no honest peer produces are
//! `WAITERS` (or `WAITERS|SPINNER`) without an owner, and
//! `NOT_RECOVERABLE` with flag bits (see [`RawMutex::snapshot`]).
//!
//! | from | to | who | ordering |
//! |---|---|---|---|
//! | `0` | `me` | lock, fast path (one CAS) | Acquire |
//! | `0` or `SPINNER` | `me` | lock, slow path (a newcomer only after deferring to the spinner for its spin budget) | Acquire |
//! | `0` or `SPINNER` | `me\|WAITERS` | lock after having slept (others may sleep too) | Acquire |
//! | `t[\|W]` | `t\|SPINNER[\|W]` | a waiter, while it spins (a hint) | Relaxed |
//! | `t[\|S][\|W]` | `t\|WAITERS` | a waiter, before it sleeps (it no longer spins) | Relaxed |
//! | `t[\|S][\|W]` | `0` | unlock (one swap); the rest only if `S` or `W` was set: | Release |
//! | `0` | `SPINNER` | ... unlock that swapped out `SPINNER` (a CAS: fails if the lock was taken meanwhile); then `FUTEX_WAKE` if `WAITERS` was | Relaxed |
//! | dead `t[\|S][\|W]` | `me\|WAITERS` | take-over by a waiter that found `t` dead (CAS from the exact value) | Acquire |
//! | `me[\|W]` | `NOT_RECOVERABLE` | unlock of a guard never marked consistent | Release |
//!
//! # Handing the lock over under contention
//! When two processes pass the lock back and forth, the releaser usually
//! re-locks within nanoseconds, long before a spinner on another CPU sees
//! the free word: the spinner loses race after race and ends up asleep,
//! paying for a `FUTEX_WAKE` and a cross-CPU wake-up (tens of µs) per
//! turn. So a waiter that spins marks the word [`SPINNER`], and an unlock
//! that swaps out `SPINNER` leaves the free word at `SPINNER` instead of
//! `0`. The fast path (CAS from `0`) then fails for newcomers, who leave
//! the word to the spinner for up to their own spin budget before taking
//! it anyway; a waiter that has spun or slept takes it at once. This is
//! the effect glibc gets from its contended unlock's `FUTEX_WAKE` (the
//! releaser is held up in the syscall while the waiter takes the lock),
//! without the syscall. `SPINNER` is only a hint: a spinner that dies or
//! goes to sleep (which clears it) costs at most one newcomer one spin
//! budget, and `try_lock` and [`Spin::NONE`] callers never defer.
//!
//! # Who holds it, and whether they live
//! The word names the holder by its owner id, written by the same
//! compare-and-swap that takes the lock: a liveness token the kernel
//! releases when the holder's thread or process dies
//! ([`crate::owner`], which also says why not the kernel's robust-futex
//! list). Waiters check the holder every [`LIVENESS_SLICE`] while they
//! sleep (`try_lock` at once): one `fcntl` that says exactly whether the
//! token is still held. A holder killed by SIGKILL is detected within
//! about 50 ms, whenever it died (even right after its CAS, before it
//! wrote anything else), and whoever has its pid now; the uncontended
//! path costs no syscall.
//!
//! # The owner record
//! After acquiring, the owner also writes `(id, tag)` into a side word
//! (`AtomicU64`, on targets that have it) and clears it before unlocking.
//! The tag is the owner's thread id when the id is a token, with a random
//! nonce drawn with the token in its upper bits ([`crate::owner::tag_tid`]
//! strips it): a process that reuses a dead holder's pid has its thread id
//! too. A thread that
//! finds its *own* id in the word of a lock it does not hold (the record
//! says otherwise) knows a dead earlier holder of that id left it there —
//! tokens are random, so a released one may be drawn again — and takes the
//! lock over (`OwnerDied`) instead of answering `WouldDeadlock` or, for a
//! reentrant lock, silently re-entering a lock it never took. Diagnostics
//! read the tag to name the holding thread.
//!
//! On the fallback path (the id is a TID) the tag is the owner's start
//! time, and a checker also treats "tid alive, but its start time differs
//! from the record" as dead **only if the record's id equals the lock
//! word's id**: otherwise the record belongs to nobody or the new owner has
//! not written it yet, and a live owner must never be declared dead. That
//! path leaves the two holes the tokens close: a reuse within one clock
//! tick, and a holder killed between the CAS and the record.
//!
//! # A dead holder
//! The locker that finds the owner dead takes the lock over and poisons it
//! (the mark lives in the lock's `poison` word): `lock` then answers
//! [`LockError::OwnerDied`] to everyone, holding nothing, until a
//! `recover` guard repairs the data and calls `mark_consistent`; a
//! recovery guard dropped unrepaired makes the lock
//! [`NotRecoverable`](LockError::NotRecoverable) for good (pthread's
//! rule). The protocol is shared by every lock: see [`super::lock`].
//!
//! The holder's data is read and written through atomic element copies
//! ([`SharedCell`]), never through `&mut T`: a peer that ignores the lock
//! can tear values, never cause undefined behaviour in this process.
//!
//! ```
//! use shmkit_core::sync::{LockError, Mutex};
//!
//! let m = Mutex::new(5u64);
//! {
//!     let g = m.lock()?;
//!     g.set(g.get() + 1);
//! }
//! assert!(m.try_lock().is_ok());
//! // Where a holder may have died, a recoverer repairs the data first:
//! let mut g = m.recover()?;
//! if g.owner_died() {
//!     g.set(0);
//!     g.mark_consistent();
//! }
//! assert_eq!(g.get(), 6);
//! # Ok::<(), LockError>(())
//! ```

use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::lock::{
    acquire, Guard, LockError, LockTimeoutError, Poisoned, RawLock, SealedLock, TryLockError,
    UnlockError,
};
use super::{ident, is_dead, is_reused, park, passed, Contention, DEFAULT_SPIN, LIVENESS_SLICE};
use crate::owner::{test_hooks, ID_MASK};
use crate::primitive::{AtomicU32, Ordering};
use crate::shared::SharedCell;
use crate::wait::{self, Deadline, Spin};

/// Lock word bit: a waiter may be asleep; unlock must `FUTEX_WAKE`.
pub const WAITERS: u32 = 1 << 30;
/// Lock word bit: a waiter is spinning for the lock. Unlock then leaves
/// the word at `SPINNER` (free, reserved for a spinner) instead of `0`, so
/// a newcomer (typically the releaser re-locking at once) defers to the
/// spinner for the rest of its own spin budget. See the module docs.
pub const SPINNER: u32 = 1 << 31;
/// Lock word owner id meaning "inconsistent for good" (no task has this id).
pub const NOT_RECOVERABLE: u32 = ID_MASK;

/// How a raw acquisition blocks (the engine of [`RawLock`]).
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Block {
    /// Never sleep.
    Try,
    /// Sleep until the deadline (`None`: forever).
    Until(Option<Deadline>),
}

impl Block {
    /// Blocks at most `timeout` from now.
    pub fn timeout(timeout: Duration) -> Block {
        Block::Until(Some(Deadline::after(timeout)))
    }
}

/// A successful raw acquisition.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Acquired from an unlocked state.
    Clean,
    /// Taken over from a dead owner.
    OwnerDied,
}

/// Why a raw acquisition failed.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawError {
    /// `Block::Try` only: held by another owner.
    WouldBlock,
    /// The deadline passed.
    TimedOut,
    /// The lock is not recoverable.
    NotRecoverable,
    /// The caller holds it already.
    WouldDeadlock,
    /// `Block::Try` only: the word kept moving.
    Contended,
    /// A reentrant count would overflow.
    Overflow,
}

/// The `(id, tag)` of the current owner, written by the owner after it
/// acquires and cleared before it unlocks. See the module docs.
#[repr(C)]
struct OwnerRecord {
    #[cfg(any(loom, target_has_atomic = "64"))]
    word: crate::primitive::AtomicU64,
    /// `[id, tag]`, written tag first. Targets without 64-bit atomics have
    /// no start times (no fallback reuse check reads a torn pair): only the
    /// owner's own check reads them, and it reads its own writes.
    #[cfg(not(any(loom, target_has_atomic = "64")))]
    halves: [AtomicU32; 2],
}

impl OwnerRecord {
    fn new() -> OwnerRecord {
        OwnerRecord {
            #[cfg(any(loom, target_has_atomic = "64"))]
            word: crate::primitive::AtomicU64::new(0),
            #[cfg(not(any(loom, target_has_atomic = "64")))]
            halves: [AtomicU32::new(0), AtomicU32::new(0)],
        }
    }

    #[inline]
    fn store(&self, id: u32, tag: u32) {
        // Relaxed: read back by the owner itself (program order), and by
        // fallback checkers only as a hint they confirm against the lock
        // word's id; the lock word's own orderings order it against the
        // next owner's record.
        #[cfg(any(loom, target_has_atomic = "64"))]
        self.word
            .store((u64::from(id) << 32) | u64::from(tag), Ordering::Relaxed);
        #[cfg(not(any(loom, target_has_atomic = "64")))]
        {
            self.halves[1].store(tag, Ordering::Relaxed);
            self.halves[0].store(id, Ordering::Relaxed);
        }
    }

    #[inline]
    fn load(&self) -> (u32, u32) {
        #[cfg(any(loom, target_has_atomic = "64"))]
        {
            let w = self.word.load(Ordering::Relaxed);
            ((w >> 32) as u32, w as u32)
        }
        #[cfg(not(any(loom, target_has_atomic = "64")))]
        (
            self.halves[0].load(Ordering::Relaxed),
            self.halves[1].load(Ordering::Relaxed),
        )
    }
}

/// A robust, process-shared mutex without data (Python's `Lock`).
/// `#[repr(C)]`, 16 bytes, valid when zero-filled (unlocked).
///
/// ```
/// use shmkit_core::sync::{LockError, RawMutex, TryLockError};
/// let m = RawMutex::new();
/// let g = m.lock()?;
/// // This thread holds it:
/// assert_eq!(m.try_lock().unwrap_err(), TryLockError::Lock(LockError::WouldDeadlock));
/// drop(g);
/// assert!(m.try_lock().is_ok());
/// # Ok::<(), LockError>(())
/// ```
#[repr(C)]
pub struct RawMutex {
    /// The lock word; states and transitions in the module docs.
    word: AtomicU32,
    /// The poison mark ([`RawLock::poison`]): non-zero from the take-over
    /// of a dead owner until a recoverer marks the data consistent.
    poison: AtomicU32,
    owner: OwnerRecord,
}

/// Holds a [`RawMutex`]; unlocks on drop.
pub type RawMutexGuard<'a> = Guard<'a, RawMutex, ()>;
/// Holds a [`Mutex`]; dereferences to its data ([`SharedCell`]:
/// `get`, `set`, `update`).
pub type MutexGuard<'a, T> = Guard<'a, RawMutex, SharedCell<'a, T>>;

#[cfg(all(not(loom), target_has_atomic = "64"))]
static_assertions::assert_eq_size!(RawMutex, [u64; 2]);
#[cfg(all(not(loom), target_has_atomic = "64"))]
static_assertions::const_assert_eq!(core::mem::align_of::<RawMutex>(), 8);

impl Default for RawMutex {
    fn default() -> RawMutex {
        RawMutex::new()
    }
}

impl fmt::Debug for RawMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.word.load(Ordering::Relaxed);
        f.debug_struct("RawMutex")
            .field("owner", &(w & ID_MASK))
            .field("waiters", &(w & WAITERS != 0))
            .finish()
    }
}

impl RawMutex {
    /// An unlocked mutex (same as zero-filled memory).
    #[must_use]
    pub fn new() -> RawMutex {
        RawMutex {
            word: AtomicU32::new(0),
            poison: AtomicU32::new(0),
            owner: OwnerRecord::new(),
        }
    }

    /// Locks, sleeping as long as needed.
    ///
    /// # Errors
    /// `OwnerDied` (a holder died; see [`recover`](Self::recover)),
    /// `NotRecoverable`, `WouldDeadlock` (this thread holds it).
    #[inline]
    pub fn lock(&self) -> Result<RawMutexGuard<'_>, LockError> {
        self.guard((), Block::Until(None), DEFAULT_SPIN, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks if that needs no waiting.
    ///
    /// When the lock is held, this checks the holder's liveness at once
    /// (one `fcntl` on the liveness file: a microsecond or two), like
    /// `pthread_mutex_trylock` reporting `EOWNERDEAD`; do not spin on it.
    ///
    /// # Errors
    /// `WouldBlock`, `Contended` (the word kept changing under
    /// [`TRY_ROUNDS`](super::TRY_ROUNDS) attempts), or as [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<RawMutexGuard<'_>, TryLockError> {
        self.guard((), Block::Try, Spin::NONE, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks, waiting at most `timeout` (never returns `TimedOut` earlier).
    ///
    /// # Errors
    /// `TimedOut`, or as [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RawMutexGuard<'_>, LockTimeoutError> {
        self.guard((), Block::timeout(timeout), DEFAULT_SPIN, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks with an explicit spin budget and optional timeout.
    ///
    /// # Errors
    /// As [`lock_timeout`](Self::lock_timeout).
    pub fn lock_spin(
        &self,
        spin: Spin,
        timeout: Option<Duration>,
    ) -> Result<RawMutexGuard<'_>, LockTimeoutError> {
        self.guard(
            (),
            Block::Until(timeout.map(Deadline::after)),
            spin,
            Poisoned::Refuse,
        )
        .map_err(Into::into)
    }

    /// Locks even if a holder died: the guard's
    /// [`owner_died`](Guard::owner_died) then says so, and the caller
    /// repairs and calls [`mark_consistent`](Guard::mark_consistent)
    /// (see [`super::lock`]).
    ///
    /// # Errors
    /// `NotRecoverable`, `WouldDeadlock`.
    pub fn recover(&self) -> Result<RawMutexGuard<'_>, LockError> {
        self.guard((), Block::Until(None), DEFAULT_SPIN, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover) if that needs no waiting.
    ///
    /// # Errors
    /// As [`try_lock`](Self::try_lock), never `OwnerDied`.
    pub fn try_recover(&self) -> Result<RawMutexGuard<'_>, TryLockError> {
        self.guard((), Block::Try, Spin::NONE, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`lock_timeout`](Self::lock_timeout), never `OwnerDied`.
    pub fn recover_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RawMutexGuard<'_>, LockTimeoutError> {
        self.guard((), Block::timeout(timeout), DEFAULT_SPIN, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// Poisons the lock as a take-over from a dead owner does (loom models
    /// have no dead owners).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn poison_for_model(&self) {
        self.poison.store(1, Ordering::Relaxed);
    }

    /// Whether a dead holder's damage awaits repair (a snapshot, read
    /// without the lock: a hint).
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.poison.load(Ordering::Relaxed) != 0
    }

    #[inline]
    pub(crate) fn guard<D>(
        &self,
        data: D,
        block: Block,
        spin: Spin,
        poisoned: Poisoned,
    ) -> Result<Guard<'_, RawMutex, D>, super::lock::Failure> {
        acquire(self, data, block, spin, poisoned)
    }

    /// Whether some owner holds the lock (a snapshot).
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & ID_MASK != 0
    }

    /// Whether the calling thread holds the lock: the word names our id
    /// *and* the owner record is ours (not a dead earlier holder's of the
    /// same id, see the module docs).
    #[must_use]
    pub fn is_held_by_current_thread(&self) -> bool {
        let (me, tag) = ident();
        self.word.load(Ordering::Relaxed) & ID_MASK == me && self.owner.load() == (me, tag)
    }

    /// Unlocks a lock the calling thread holds without a guard (one given
    /// up with [`Guard::forget`]): Python's `lock.release()`.
    ///
    /// Only the holder may unlock; a lock a dead holder left poisoned and
    /// nobody repaired becomes not recoverable, as the drop of an
    /// unrepaired recovery guard does (see [`super::lock`]). Never call it
    /// while a guard of this lock is alive in this thread: that guard
    /// would unlock a second time when dropped.
    ///
    /// ```
    /// use shmkit_core::sync::{RawMutex, UnlockError};
    /// let lock = RawMutex::new();
    /// assert_eq!(lock.unlock(), Err(UnlockError::NotLocked));
    /// lock.lock()?.forget();
    /// lock.unlock()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`UnlockError::NotLocked`] if nobody holds it,
    /// [`UnlockError::NotOwner`] if another thread or process does; the
    /// lock is then left as it was.
    pub fn unlock(&self) -> Result<(), UnlockError> {
        if !self.is_held_by_current_thread() {
            return Err(if self.is_locked() {
                UnlockError::NotOwner
            } else {
                UnlockError::NotLocked
            });
        }
        // Under the lock; see `RawLock::poison`.
        let repaired = self.poison.load(Ordering::Relaxed) == 0;
        // SAFETY: the calling thread holds the lock (checked above: the
        // word names our id and the owner record is ours).
        unsafe {
            if repaired {
                self.release(false);
            } else {
                self.release_unrecoverable();
            }
        }
        Ok(())
    }

    /// The owner record `(id, tag)` (module docs), for diagnostics.
    pub(crate) fn record(&self) -> (u32, u32) {
        self.owner.load()
    }

    /// The futex word, for primitives built on this lock.
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Acquires the lock.
    #[inline]
    pub(crate) fn acquire(&self, block: Block, spin: Spin) -> Result<Acquired, RawError> {
        let (me, tag) = ident();
        // SYNC POINT (lock): Acquire pairs with the Release swap of the
        // previous unlock, so its writes to the protected data are visible.
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            test_hooks::after_owner_cas();
            self.owner.store(me, tag);
            return Ok(Acquired::Clean);
        }
        self.acquire_slow(me, tag, block, spin)
    }

    /// The contended path: spin, then sleep, checking the owner's liveness
    /// once per [`LIVENESS_SLICE`] of sleep.
    ///
    /// The spin budget counts the loads made while the lock is *held*, and
    /// it is refilled after every sleep. A waiter that sees the lock free
    /// but loses the race for it (the releaser re-locked first: the
    /// common case when two processes hand a lock back and forth) keeps
    /// spinning on what is left of its budget instead of going to sleep:
    /// a sleep costs a `FUTEX_WAKE` from the next unlock plus a cross-CPU
    /// wake-up (tens of µs), against the few hundred ns the releaser
    /// holds the lock. The clock (slice, deadline) is read only once the
    /// budget is spent, so none of that is on the spinning path. While it
    /// spins, the waiter reserves the next unlock with [`SPINNER`] (module
    /// docs, "Handing the lock over").
    ///
    /// Every compare-and-swap lost to a moving word, and every sleep,
    /// counts as a lost round ([`Contention`]): a `try_lock` gives up
    /// after [`TRY_ROUNDS`](super::TRY_ROUNDS) with `Contended`, a
    /// blocking one backs off and checks its deadline.
    #[cold]
    #[inline(never)]
    fn acquire_slow(
        &self,
        me: u32,
        tag: u32,
        block: Block,
        spin: Spin,
    ) -> Result<Acquired, RawError> {
        // A try_lock never spins and checks the owner at once.
        let (deadline, refill) = match block {
            Block::Try => (None, 0),
            Block::Until(d) => (d, spin.iterations),
        };
        let mut budget = refill;
        // A sleeper checks the owner after each slice.
        let mut next_check: Option<Deadline> = None;
        let mut slept = false;
        // Whether we spun while the lock was held (or slept): a word left
        // reserved by an unlock is then ours to take at once.
        let mut waited = false;
        // How long a newcomer leaves a reserved word to its spinner: as
        // long as it would spin on a held lock.
        let mut defer = refill;
        let mut contention = Contention::new();
        // A round lost to a moving word: give up (try) or back off.
        let lost = |contention: &mut Contention| match block {
            Block::Try if contention.give_up() => Err(RawError::Contended),
            Block::Until(d) if contention.back_off(d) => Err(RawError::TimedOut),
            _ => Ok(()),
        };
        loop {
            let w = self.word.load(Ordering::Relaxed);
            let owner = w & ID_MASK;
            if owner == 0 {
                if w & SPINNER != 0 && !waited && defer > 0 {
                    // Reserved for a spinner that waited longer than us:
                    // leave it the lock for a while.
                    defer -= 1;
                    crate::primitive::spin_loop();
                    continue;
                }
                // After sleeping, others may sleep too: keep WAITERS so
                // our unlock wakes them.
                let new = if slept { me | WAITERS } else { me };
                // SYNC POINT (lock): as in `acquire`.
                if self
                    .word
                    .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    test_hooks::after_owner_cas();
                    self.owner.store(me, tag);
                    return Ok(Acquired::Clean);
                }
                lost(&mut contention)?;
                continue;
            }
            if owner == NOT_RECOVERABLE {
                return Err(RawError::NotRecoverable);
            }
            if owner == me {
                if self.owner.load() == (me, tag) {
                    return Err(RawError::WouldDeadlock);
                }
                // A dead earlier holder of our id holds it (module docs,
                // "The owner record"). Claim the record first so no
                // fallback checker mistakes us for the dead one.
                self.owner.store(me, tag);
                if let Some(acquired) = self.take_over(w, me, tag) {
                    return Ok(acquired);
                }
                lost(&mut contention)?;
                continue;
            }
            if budget > 0 {
                if w & SPINNER == 0 {
                    // A hint: failure (the word moved) is retried on the
                    // next load. Relaxed: orders nothing.
                    let _ = self.word.compare_exchange(
                        w,
                        w | SPINNER,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                waited = true;
                budget -= 1;
                crate::primitive::spin_loop();
                continue;
            }
            let check_now = match (block, next_check) {
                (Block::Try, _) => true,
                (Block::Until(_), None) => {
                    next_check = Some(Deadline::after(LIVENESS_SLICE));
                    false
                }
                (Block::Until(_), Some(at)) => at.has_passed(),
            };
            if check_now {
                if self.owner_is_dead(w) {
                    if let Some(acquired) = self.take_over(w, me, tag) {
                        return Ok(acquired);
                    }
                    lost(&mut contention)?;
                    continue;
                }
                next_check = Some(Deadline::after(LIVENESS_SLICE));
            }
            if matches!(block, Block::Try) {
                return Err(RawError::WouldBlock);
            }
            if passed(deadline) {
                return Err(RawError::TimedOut);
            }
            // Going to sleep: we no longer spin, so drop SPINNER (another
            // spinner sets it again) lest unlocks reserve the lock for us
            // and make newcomers wait while we are asleep.
            let sleeping = (w | WAITERS) & !SPINNER;
            if w != sleeping
                && self
                    .word
                    .compare_exchange(w, sleeping, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                lost(&mut contention)?;
                continue;
            }
            if !park(&self.word, sleeping, deadline, Some(LIVENESS_SLICE)) {
                // Cut short (woken, or the word had moved): a round a
                // peer can repeat, so it counts. The deadline is checked
                // before the next sleep, after another try for the lock.
                let _ = contention.back_off(None);
            }
            slept = true;
            waited = true;
            // Woken (or the slice ended): compete for the lock with a
            // fresh budget rather than sleeping again at the first loss.
            budget = refill;
        }
    }

    /// Whether the owner named by lock word `w` is dead (a token nobody
    /// holds, a task id no live task has, or on the fallback path a reused
    /// task id).
    pub(crate) fn owner_is_dead(&self, w: u32) -> bool {
        let owner = w & ID_MASK;
        if owner == 0 || owner == NOT_RECOVERABLE {
            return false;
        }
        if is_dead(owner) {
            return true;
        }
        let (rec_id, rec_tag) = self.owner.load();
        rec_id == owner && is_reused(owner, rec_tag)
    }

    /// Takes the lock over from the dead owner of word `w` (one CAS from
    /// that exact value), for the caller `(me, tag)`. `None` if the word
    /// changed meanwhile.
    pub(crate) fn take_over(&self, w: u32, me: u32, tag: u32) -> Option<Acquired> {
        // WAITERS stays set: others may be asleep on the dead owner.
        // SYNC POINT (take-over): Acquire pairs with whatever Release the
        // dead owner's last write to the word made (its own lock CAS did
        // not release, so its data writes may be torn: hence OwnerDied).
        self.word
            .compare_exchange(w, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        test_hooks::after_owner_cas();
        self.owner.store(me, tag);
        Some(Acquired::OwnerDied)
    }

    /// Unlocks, waking one sleeper (or all, for locks whose sleepers
    /// include readers) if the `WAITERS` bit was set.
    ///
    /// # Safety
    /// The calling thread holds the lock (acquired with `acquire`).
    #[inline]
    pub(crate) unsafe fn release(&self, wake_all: bool) {
        self.owner.store(0, 0);
        // SYNC POINT (unlock): Release publishes the protected data to the
        // next owner's Acquire CAS.
        let w = self.word.swap(0, Ordering::Release);
        if w & (WAITERS | SPINNER) != 0 {
            self.release_contended(w, wake_all);
        }
    }

    /// The rest of an unlock that found `WAITERS` or `SPINNER` in the
    /// word it swapped out (`w`).
    #[cold]
    #[inline(never)]
    fn release_contended(&self, w: u32, wake_all: bool) {
        if w & SPINNER != 0 {
            // Reserve the free word for the spinner. Fails harmlessly if
            // someone took the lock since our swap. Relaxed: an RMW, so it
            // continues the release sequence of the swap above, and the
            // spinner's Acquire CAS from `SPINNER` still synchronises with
            // that swap (the loom model checks it).
            let _ = self
                .word
                .compare_exchange(0, SPINNER, Ordering::Relaxed, Ordering::Relaxed);
        }
        if w & WAITERS != 0 {
            if wake_all {
                wait::wake_all(&self.word);
            } else {
                wait::wake_one(&self.word);
            }
        }
    }

    /// Marks the lock not recoverable and wakes everyone, who will then
    /// get `NotRecoverable`.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    pub(crate) unsafe fn release_unrecoverable(&self) {
        self.owner.store(0, 0);
        self.word.swap(NOT_RECOVERABLE, Ordering::Release);
        wait::wake_all(&self.word);
    }
}

impl SealedLock for RawMutex {}

impl RawLock for RawMutex {
    #[inline]
    fn acquire_raw(&self, block: Block, spin: Spin) -> Result<Acquired, RawError> {
        self.acquire(block, spin)
    }

    #[inline]
    unsafe fn release_raw(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.release(false) }
    }

    unsafe fn release_unrepaired(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.release_unrecoverable() }
    }

    fn poison(&self) -> &AtomicU32 {
        &self.poison
    }
}

/// A robust process-shared mutex protecting a `T: Pod`, for a user's own
/// `#[repr(C)]` shared struct or a shmkit segment. Zero-filled memory is an
/// unlocked mutex holding `T::zeroed()`.
///
/// ```
/// use shmkit_core::sync::Mutex;
/// let m = Mutex::new([0u32; 4]);
/// m.lock().unwrap().update(|a| a[1] = 7);
/// assert_eq!(m.lock().unwrap().get(), [0, 7, 0, 0]);
/// ```
#[repr(C)]
pub struct Mutex<T> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only accessed through atomic element copies while the
// lock is held; T: Pod has no drop glue and no pointers.
unsafe impl<T: Pod> Sync for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Send for Mutex<T> {}

impl<T: Pod> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    fn cell(&self) -> SharedCell<'_, T> {
        // SAFETY: the mutex's `T` is aligned and alive as long as `self`;
        // every access to it is an atomic copy (here, and in peers using
        // the same type).
        unsafe { SharedCell::from_raw(NonNull::from(&self.data).cast::<T>()) }
    }

    /// Locks, sleeping as long as needed.
    ///
    /// # Errors
    /// As [`RawMutex::lock`].
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError> {
        self.raw
            .guard(
                self.cell(),
                Block::Until(None),
                DEFAULT_SPIN,
                Poisoned::Refuse,
            )
            .map_err(Into::into)
    }

    /// Locks if that needs no waiting.
    ///
    /// # Errors
    /// As [`RawMutex::try_lock`].
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        self.raw
            .guard(self.cell(), Block::Try, Spin::NONE, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`RawMutex::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, LockTimeoutError> {
        self.raw
            .guard(
                self.cell(),
                Block::timeout(timeout),
                DEFAULT_SPIN,
                Poisoned::Refuse,
            )
            .map_err(Into::into)
    }

    /// Locks with an explicit spin budget and optional timeout.
    ///
    /// # Errors
    /// As [`RawMutex::lock_timeout`].
    pub fn lock_spin(
        &self,
        spin: Spin,
        timeout: Option<Duration>,
    ) -> Result<MutexGuard<'_, T>, LockTimeoutError> {
        self.raw
            .guard(
                self.cell(),
                Block::Until(timeout.map(Deadline::after)),
                spin,
                Poisoned::Refuse,
            )
            .map_err(Into::into)
    }

    /// Unlocks what the calling thread locked and kept with
    /// [`Guard::forget`] (Python's `release()`; see [`RawMutex::unlock`]).
    ///
    /// # Errors
    /// As [`RawMutex::unlock`].
    pub fn unlock(&self) -> Result<(), UnlockError> {
        self.raw.unlock()
    }

    /// Locks even if a holder died (see [`RawMutex::recover`]).
    ///
    /// # Errors
    /// As [`RawMutex::recover`].
    pub fn recover(&self) -> Result<MutexGuard<'_, T>, LockError> {
        self.raw
            .guard(
                self.cell(),
                Block::Until(None),
                DEFAULT_SPIN,
                Poisoned::Recover,
            )
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover) if that needs no waiting.
    ///
    /// # Errors
    /// As [`RawMutex::try_recover`].
    pub fn try_recover(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        self.raw
            .guard(self.cell(), Block::Try, Spin::NONE, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`RawMutex::recover_timeout`].
    pub fn recover_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, LockTimeoutError> {
        self.raw
            .guard(
                self.cell(),
                Block::timeout(timeout),
                DEFAULT_SPIN,
                Poisoned::Recover,
            )
            .map_err(Into::into)
    }

    /// The lock without the data.
    #[must_use]
    pub fn raw(&self) -> &RawMutex {
        &self.raw
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn lock_unlock_and_data() {
        let m = Mutex::new(1u32);
        {
            let g = m.lock().unwrap();
            assert_eq!(g.get(), 1);
            g.set(2);
            assert!(matches!(
                m.try_lock(),
                Err(TryLockError::Lock(LockError::WouldDeadlock))
            ));
            assert_eq!(m.lock().unwrap_err(), LockError::WouldDeadlock);
        }
        assert_eq!(m.lock().unwrap().get(), 2);
        assert!(!m.raw().is_locked());
    }

    #[test]
    fn lock_timeout_is_never_early() {
        let m = RawMutex::new();
        let _g = m.lock().unwrap();
        // Another thread, so the owner check does not say WouldDeadlock.
        std::thread::scope(|s| {
            s.spawn(|| {
                let d = Duration::from_millis(20);
                let t0 = std::time::Instant::now();
                assert!(matches!(m.lock_timeout(d), Err(LockTimeoutError::TimedOut)));
                assert!(t0.elapsed() >= d);
            });
        });
    }

    #[test]
    fn threads_count_to_total() {
        let m = Mutex::new(0u64);
        let n = if cfg!(miri) { 50 } else { 10_000 };
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..n {
                        m.lock().unwrap().update(|v| *v += 1);
                    }
                });
            }
        });
        assert_eq!(m.lock().unwrap().get(), 3 * n);
    }

    #[test]
    #[cfg(not(miri))]
    fn dead_owner_poisons_and_an_unmarked_recovery_is_not_recoverable() {
        let m = RawMutex::new();
        // An id that names no task: pid_max is at most 2^22.
        m.word.store((1 << 23) | WAITERS, Ordering::Relaxed);
        // The locker that finds the death is told, and holds nothing.
        assert_eq!(
            m.try_lock().unwrap_err(),
            TryLockError::Lock(LockError::OwnerDied)
        );
        assert!(!m.is_locked());
        assert!(m.is_poisoned());
        // So is everyone after it, until a recoverer repairs.
        assert_eq!(m.lock().unwrap_err(), LockError::OwnerDied);
        assert_eq!(
            m.lock_timeout(Duration::from_millis(1)).unwrap_err(),
            LockTimeoutError::Lock(LockError::OwnerDied)
        );
        let g = m.recover().unwrap();
        assert!(g.owner_died() && !g.is_consistent());
        drop(g);
        assert_eq!(m.lock().unwrap_err(), LockError::NotRecoverable);
        assert_eq!(
            m.try_recover().unwrap_err(),
            TryLockError::Lock(LockError::NotRecoverable)
        );
    }

    /// Python's `acquire()`/`release()` pair: `forget` then `unlock`;
    /// a second `unlock` is an error that changes nothing; another
    /// thread's `unlock` is refused.
    #[test]
    fn forget_then_unlock_and_the_errors() {
        let m = Mutex::new(1u32);
        assert_eq!(m.unlock(), Err(UnlockError::NotLocked));
        m.lock().unwrap().forget();
        assert!(m.raw().is_held_by_current_thread());
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(m.unlock(), Err(UnlockError::NotOwner)));
        });
        assert!(m.raw().is_held_by_current_thread());
        assert_eq!(m.unlock(), Ok(()));
        assert_eq!(m.unlock(), Err(UnlockError::NotLocked));
        assert_eq!(m.lock().unwrap().get(), 1);
    }

    /// A recovery guard forgotten unrepaired: `unlock` leaves the lock
    /// not recoverable, as the guard's drop would; repaired, it unlocks.
    #[test]
    #[cfg(not(miri))]
    fn unlock_of_an_unrepaired_recovery_is_not_recoverable() {
        let m = RawMutex::new();
        m.word.store(1 << 23, Ordering::Relaxed); // a dead holder
        let mut g = m.recover().unwrap();
        g.mark_consistent();
        g.forget();
        assert_eq!(m.unlock(), Ok(()));
        assert!(m.lock().is_ok(), "repaired: usable");
        m.word.store(1 << 23, Ordering::Relaxed);
        m.recover().unwrap().forget();
        assert_eq!(m.unlock(), Ok(()));
        assert_eq!(m.lock().unwrap_err(), LockError::NotRecoverable);
    }

    #[test]
    #[cfg(not(miri))]
    fn marked_consistent_stays_usable() {
        let m = RawMutex::new();
        m.word.store(1 << 23, Ordering::Relaxed);
        // A recoverer that finds the death itself gets the guard at once.
        let mut g = m.recover().unwrap();
        assert!(g.owner_died());
        g.mark_consistent();
        drop(g);
        assert!(!m.is_poisoned());
        let g = m.lock().unwrap();
        assert!(!g.owner_died());
    }

    /// A thread that exits holding the lock (its process lives on) is a
    /// dead owner too: its TID is gone.
    #[test]
    #[cfg(not(miri))]
    fn thread_exiting_with_the_lock_is_a_dead_owner() {
        let m = Mutex::new(1u32);
        std::thread::scope(|s| {
            s.spawn(|| core::mem::forget(m.lock().unwrap()));
        });
        let t0 = std::time::Instant::now();
        assert_eq!(m.lock().unwrap_err(), LockError::OwnerDied);
        assert!(t0.elapsed() < Duration::from_secs(10));
        let mut g = m.recover().unwrap();
        assert!(g.owner_died());
        g.mark_consistent();
    }

    /// Pid-reuse protection: a live task named in the lock word counts as
    /// dead only if the record names the same tid with another start time.
    #[test]
    #[cfg(not(miri))]
    fn reused_id_is_dead_only_when_the_record_matches_the_word() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let live = std::thread::spawn(move || {
            tx.send(crate::owner::current_thread_id()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let Some(real_start) = crate::owner::start_time(tid) else {
            // No /proc: nothing to check here.
            drop(done_tx);
            live.join().unwrap();
            return;
        };
        let real_start = real_start as u32;
        let m = RawMutex::new();
        // Record matches the live task: alive, so WouldBlock.
        m.word.store(tid, Ordering::Relaxed);
        m.owner.store(tid, real_start);
        assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
        // Record names another tid (a new owner has not written its record
        // yet): never declare the live owner dead.
        m.owner.store(tid + 1, real_start.wrapping_add(1));
        assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
        // Same tid, other start time: the recorded owner died and its id
        // was reused by the live task, so the lock is taken over.
        m.owner.store(tid, real_start.wrapping_add(1));
        let mut g = m.try_recover().expect("taken over from the dead owner");
        assert!(g.owner_died());
        g.mark_consistent();
        drop(g);
        drop(done_tx);
        live.join().unwrap();
    }

    /// An unlock that swaps out SPINNER leaves the free word reserved; a
    /// newcomer defers to the (here absent) spinner for its budget, then
    /// takes the lock; `try_lock` takes it at once.
    #[test]
    fn unlock_reserves_for_a_spinner_and_newcomers_defer_boundedly() {
        let m = RawMutex::new();
        let g = m.lock().unwrap();
        m.word.fetch_or(SPINNER, Ordering::Relaxed);
        drop(g);
        assert_eq!(m.word.load(Ordering::Relaxed), SPINNER);
        assert!(!m.is_locked());
        let g = m.lock_spin(Spin { iterations: 50 }, None).unwrap();
        assert_eq!(m.word.load(Ordering::Relaxed) & !ID_MASK, 0);
        drop(g);
        assert_eq!(m.word.load(Ordering::Relaxed), 0);
        m.word.store(SPINNER, Ordering::Relaxed);
        drop(m.try_lock().unwrap());
        assert_eq!(m.word.load(Ordering::Relaxed), 0);
    }

    /// A waiter that goes to sleep clears the SPINNER it set while it
    /// spun, so unlocks do not keep the lock reserved for a sleeper.
    #[test]
    #[cfg(not(miri))]
    fn a_sleeping_waiter_drops_its_spinner_bit() {
        let m = RawMutex::new();
        let g = m.lock().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| drop(m.lock().unwrap()));
            let t0 = std::time::Instant::now();
            loop {
                let w = m.word.load(Ordering::Relaxed);
                if w & WAITERS != 0 && w & SPINNER == 0 {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(10), "word {w:#x}");
                std::thread::yield_now();
            }
            drop(g);
            waiter.join().unwrap();
        });
        assert!(!m.is_locked());
    }

    #[test]
    #[cfg(not(miri))]
    fn garbage_lock_words_never_panic() {
        let m = RawMutex::new();
        for w in [
            u32::MAX,
            0x8000_0000,
            WAITERS,
            NOT_RECOVERABLE | WAITERS,
            0x7fff_ffff,
            SPINNER | WAITERS,
            SPINNER | 12345,
        ] {
            m.word.store(w, Ordering::Relaxed);
            let _ = m.try_lock();
            let _ = m.lock_timeout(Duration::from_millis(1));
        }
    }
}
