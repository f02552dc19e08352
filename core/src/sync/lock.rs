//! One lock API over every robust lock: the errors, the guard and the
//! recovery protocol, written once (in the manner of `lock_api`).
//!
//! Each lock word ([`RawMutex`](super::RawMutex), the reentrant lock, the
//! two sides of the readers/writer lock) implements [`RawLock`]: how it is
//! taken, how it is given back, and where its *poison mark* lives. Every
//! data-carrying lock — [`Mutex<T>`](super::Mutex),
//! [`ReentrantMutex<T>`](super::ReentrantMutex),
//! [`RwLock<T>`](super::RwLock), [`LockedArray<T>`](super::LockedArray) —
//! hands out the same [`Guard`] around a view of its data, and every
//! acquisition goes through `acquire` below.
//!
//! # The common path composes with `?`
//! `lock()` returns `Result<Guard, LockError>`; [`LockError`] carries no
//! guard, is `'static` and implements `Error`, so `m.lock()?` works in any
//! function returning `Result<_, Box<dyn Error>>`. `try_lock` and
//! `lock_timeout` have their own error types ([`TryLockError`],
//! [`LockTimeoutError`]), each convertible from `LockError`.
//!
//! # A dead holder: poison until someone repairs
//! When a process dies holding a lock, the data it guarded may be
//! half-updated. The next acquirer (whoever notices the death) sets the
//! lock's poison mark. From then on:
//!
//! | call | on a poisoned lock |
//! |---|---|
//! | `lock`, `try_lock`, `lock_timeout` | `Err(OwnerDied)`, without holding anything: the error composes with `?`, and nobody carries on unaware |
//! | `recover`, `try_recover`, `recover_timeout` | the guard, with [`Guard::owner_died`] true: repair the data, then [`Guard::mark_consistent`] clears the mark |
//!
//! A recovery guard dropped without `mark_consistent` leaves the lock
//! [`NotRecoverable`](LockError::NotRecoverable) for good — pthread's
//! `EOWNERDEAD`/`ENOTRECOVERABLE` rule: a recoverer that did not look must
//! not let others carry on silently. (The readers/writer lock keeps the
//! mark instead: readers cannot repair, so only a writer's
//! `mark_consistent` clears it.)
//!
//! ```
//! use shmkit_core::sync::{LockError, Mutex};
//!
//! fn deposit(m: &Mutex<i64>, amount: i64) -> Result<i64, LockError> {
//!     let g = m.lock()?;                 // the common path: plain `?`
//!     g.update(|b| *b += amount);
//!     Ok(g.get())
//! }
//!
//! let m = Mutex::new(100i64);
//! assert_eq!(deposit(&m, 5), Ok(105));
//!
//! // Where a holder may have died, the recoverer repairs the data:
//! let mut g = m.recover().unwrap();
//! if g.owner_died() {
//!     g.set(0);                          // repair (here: reset)
//!     g.mark_consistent();
//! }
//! ```

use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;

use super::mutex::{Acquired, Block, RawError};
use crate::primitive::{AtomicU32, Ordering};
use crate::wait::Spin;

/// Why `lock` (or a blocking `read`/`write`, `recover`) did not return a
/// guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockError {
    /// A holder died with the lock held: the data may be half-updated.
    /// Nothing is held. Repair through `recover()`.
    OwnerDied,
    /// A recoverer unlocked without marking the data consistent: the lock
    /// is unusable for good.
    NotRecoverable,
    /// The calling thread already holds this (non-reentrant) lock.
    WouldDeadlock,
    /// A reentrant lock's count would overflow `u32`.
    Overflow,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::OwnerDied => "a holder died with the lock held, so the data may be half-updated; repair it through recover() and mark_consistent()",
            LockError::NotRecoverable => "the lock is not recoverable: a recoverer unlocked without mark_consistent(); recreate the object",
            LockError::WouldDeadlock => "the calling thread already holds this lock; use a ReentrantMutex to lock it again",
            LockError::Overflow => "the reentrant lock count would overflow; unlock before locking again",
        })
    }
}

impl core::error::Error for LockError {}

/// Why `try_lock` (or `try_read`, `try_write`, `try_recover`) did not
/// return a guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryLockError {
    /// Another owner holds the lock.
    WouldBlock,
    /// The lock word kept changing under every attempt (extreme
    /// contention, or a peer rewriting it); nothing was taken.
    Contended,
    /// As for [`lock`](LockError).
    Lock(LockError),
}

impl fmt::Display for TryLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("the lock is held by another owner; retry, or use lock()/lock_timeout()"),
            TryLockError::Contended => f.write_str("the lock word kept changing under every attempt (extreme contention, or a peer rewriting shared memory); retry later or use lock()/lock_timeout()"),
            TryLockError::Lock(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for TryLockError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            TryLockError::Lock(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LockError> for TryLockError {
    fn from(e: LockError) -> TryLockError {
        TryLockError::Lock(e)
    }
}

/// Why `lock_timeout` (or a timed `read`/`write`/`recover`) did not return
/// a guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockTimeoutError {
    /// The deadline passed first.
    TimedOut,
    /// As for [`lock`](LockError).
    Lock(LockError),
}

impl fmt::Display for LockTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::TimedOut => {
                f.write_str("timed out waiting for the lock; retry or use a longer timeout")
            }
            LockTimeoutError::Lock(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for LockTimeoutError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            LockTimeoutError::Lock(e) => Some(e),
            LockTimeoutError::TimedOut => None,
        }
    }
}

impl From<LockError> for LockTimeoutError {
    fn from(e: LockError) -> LockTimeoutError {
        LockTimeoutError::Lock(e)
    }
}

/// Why an explicit `unlock` (Python's `release()`) failed. Nothing
/// changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnlockError {
    /// Nobody holds the lock (Python's `ValueError`/`RuntimeError`:
    /// "release unlocked lock").
    NotLocked,
    /// Another thread or process holds the lock. shmkit's locks belong to
    /// the thread that took them (Python's `RLock` rule, which shmkit
    /// applies to `Lock` too: to hand a permit from one process to
    /// another, use a `Semaphore`).
    NotOwner,
}

impl fmt::Display for UnlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnlockError::NotLocked => "release of an unlocked lock: unlock only what you locked (and gave up with Guard::forget)",
            UnlockError::NotOwner => "the lock is held by another thread or process, and only its holder may unlock it; to signal across processes use a Semaphore",
        })
    }
}

impl core::error::Error for UnlockError {}

mod sealed {
    pub trait Sealed {}
}

/// A robust lock word: how it is taken and given back, and its poison
/// mark. Implemented by shmkit's locks only (sealed); its methods are the
/// engine of `acquire` and [`Guard`].
pub trait RawLock: sealed::Sealed {
    /// Acquires (exclusively or shared, as the lock means).
    #[doc(hidden)]
    fn acquire_raw(&self, block: Block, spin: Spin) -> Result<Acquired, RawError>;

    /// Gives the lock back.
    ///
    /// # Safety
    /// The calling thread holds it (one acquisition's worth).
    #[doc(hidden)]
    unsafe fn release_raw(&self);

    /// Gives back a lock whose recovery guard was dropped unrepaired:
    /// [`NotRecoverable`](LockError::NotRecoverable) for good, or (locks
    /// whose holders cannot all repair) simply released, still poisoned.
    ///
    /// # Safety
    /// As [`release_raw`](RawLock::release_raw).
    #[doc(hidden)]
    unsafe fn release_unrepaired(&self);

    /// The poison mark: non-zero while a dead holder's damage is not
    /// repaired. Only read and written under the lock (Relaxed: the lock's
    /// own Acquire/Release orders it between holders).
    #[doc(hidden)]
    fn poison(&self) -> &AtomicU32;
}

pub(crate) use sealed::Sealed as SealedLock;

/// What an acquisition wants on a poisoned lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Poisoned {
    /// Refuse it: `OwnerDied`, nothing held (`lock` and friends).
    Refuse,
    /// Take it, for repair (`recover` and friends).
    Recover,
}

/// Why [`acquire`] failed: the raw lock's reason, or a poisoned lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Raw(RawError),
    OwnerDied,
}

impl From<Failure> for LockError {
    fn from(f: Failure) -> LockError {
        match f {
            Failure::OwnerDied => LockError::OwnerDied,
            Failure::Raw(RawError::NotRecoverable) => LockError::NotRecoverable,
            Failure::Raw(RawError::WouldDeadlock) => LockError::WouldDeadlock,
            Failure::Raw(RawError::Overflow) => LockError::Overflow,
            // A blocking call without a deadline neither times out nor
            // gives up; a raw lock reporting it anyway is treated as the
            // closest honest answer.
            Failure::Raw(RawError::WouldBlock | RawError::Contended | RawError::TimedOut) => {
                LockError::WouldDeadlock
            }
        }
    }
}

impl From<Failure> for TryLockError {
    fn from(f: Failure) -> TryLockError {
        match f {
            Failure::Raw(RawError::WouldBlock | RawError::TimedOut) => TryLockError::WouldBlock,
            Failure::Raw(RawError::Contended) => TryLockError::Contended,
            other => TryLockError::Lock(other.into()),
        }
    }
}

impl From<Failure> for LockTimeoutError {
    fn from(f: Failure) -> LockTimeoutError {
        match f {
            Failure::Raw(RawError::TimedOut | RawError::WouldBlock | RawError::Contended) => {
                LockTimeoutError::TimedOut
            }
            other => LockTimeoutError::Lock(other.into()),
        }
    }
}

/// Takes `lock` (blocking as `block` says) and wraps `data` in a guard:
/// the one acquisition path of every shmkit lock. A dead holder found on
/// the way poisons the lock; a poisoned lock is refused or taken for
/// repair, as `poisoned` says.
pub(crate) fn acquire<'a, R: RawLock, D>(
    lock: &'a R,
    data: D,
    block: Block,
    spin: Spin,
    poisoned: Poisoned,
) -> Result<Guard<'a, R, D>, Failure> {
    let died = match lock.acquire_raw(block, spin).map_err(Failure::Raw)? {
        Acquired::OwnerDied => {
            // Under the lock; see `RawLock::poison`.
            lock.poison().store(1, Ordering::Relaxed);
            true
        }
        Acquired::Clean => lock.poison().load(Ordering::Relaxed) != 0,
    };
    if died && poisoned == Poisoned::Refuse {
        // Give it back as it is, poison mark and all: a recoverer must
        // still find it.
        // SAFETY: acquired just above by this thread.
        unsafe { lock.release_raw() };
        return Err(Failure::OwnerDied);
    }
    Ok(Guard {
        lock,
        data,
        consistent: !died,
        owner_died: died,
        _not_send: PhantomData,
    })
}

/// Proof that the calling thread holds a lock, and the way to its data:
/// dereferences to the data view (a [`SharedCell`](crate::shared::SharedCell)
/// for one value, a [`SharedSlice`](crate::shared::SharedSlice) for an
/// array). Unlocks on drop. Not `Send`: the lock belongs to the thread that
/// took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct Guard<'a, R: RawLock, D> {
    lock: &'a R,
    data: D,
    consistent: bool,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl<R: RawLock, D> fmt::Debug for Guard<'_, R, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("owner_died", &self.owner_died)
            .field("consistent", &self.consistent)
            .finish_non_exhaustive()
    }
}

impl<'a, R: RawLock, D> Guard<'a, R, D> {
    /// Whether a holder died with the lock held before this guard took it
    /// (only a `recover` guard can say so): repair the data, then
    /// [`mark_consistent`](Self::mark_consistent).
    #[must_use]
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Declares the data repaired: clears the lock's poison mark. Without
    /// it, dropping a recovery guard leaves the lock not recoverable (see
    /// the module docs).
    pub fn mark_consistent(&mut self) {
        if !self.consistent {
            // Under the lock; see `RawLock::poison`.
            self.lock.poison().store(0, Ordering::Relaxed);
            self.consistent = true;
        }
    }

    /// Whether the data counts as consistent (false on a recovery guard
    /// until [`mark_consistent`](Self::mark_consistent)).
    #[must_use]
    pub fn is_consistent(&self) -> bool {
        self.consistent
    }

    /// The raw lock this guard holds.
    #[must_use]
    pub fn raw(&self) -> &'a R {
        self.lock
    }

    /// Keeps the lock held after the guard is gone: Python's
    /// `lock.acquire()` without a `with` block. The calling thread later
    /// gives it back with the lock's `unlock()` (Python's `release()`);
    /// until then it stays locked, also against this thread. A recovery
    /// guard forgotten before [`mark_consistent`](Self::mark_consistent)
    /// leaves the lock poisoned, and `unlock` then makes it not
    /// recoverable, as dropping the guard would have.
    ///
    /// The locks with an `unlock` are [`RawMutex`](super::RawMutex),
    /// [`Mutex`](super::Mutex), [`ReentrantMutex`](super::ReentrantMutex)
    /// and [`Condition`](super::Condition) (and a locked array, through its
    /// `raw()` lock). A forgotten [`RwLock`](super::RwLock) guard is never
    /// given back: a write side stays held until its holder dies, a read
    /// side for good.
    ///
    /// ```
    /// use shmkit_core::sync::{RawMutex, UnlockError};
    /// let lock = RawMutex::new();
    /// lock.lock()?.forget();                  // lock.acquire()
    /// assert!(lock.is_held_by_current_thread());
    /// lock.unlock()?;                         // lock.release()
    /// assert_eq!(lock.unlock(), Err(UnlockError::NotLocked));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forget(self) {
        core::mem::forget(self);
    }

    /// Gives up the guard without unlocking (for primitives that release
    /// the lock themselves, such as a condition variable's wait), returning
    /// the lock and the data view.
    pub(crate) fn into_parts(self) -> (&'a R, D, bool) {
        let me = core::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so `data` is moved out exactly
        // once.
        let data = unsafe { core::ptr::read(&me.data) };
        (me.lock, data, me.consistent)
    }
}

impl<R: RawLock, D> Deref for Guard<'_, R, D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.data
    }
}

impl<R: RawLock, D> Drop for Guard<'_, R, D> {
    #[inline]
    fn drop(&mut self) {
        // A recovery guard whose lock another level (a reentrant lock's
        // inner guard) marked consistent meanwhile counts as repaired.
        // Under the lock; see `RawLock::poison`.
        let repaired = self.consistent || self.lock.poison().load(Ordering::Relaxed) == 0;
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe {
            if repaired {
                self.lock.release_raw();
            } else {
                self.lock.release_unrepaired();
            }
        }
    }
}
