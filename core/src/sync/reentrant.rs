//! [`ReentrantMutex`]: Python's `RLock`, robust like [`RawMutex`].
//!
//! The lock is a [`RawMutex`] (its lock word names the owner's liveness
//! token, unique machine-wide among live threads, and its owner record the
//! thread that wrote it, so "same thread of the same process" is two
//! comparisons that a dead earlier holder of the same token cannot pass)
//! plus a recursion count stored in the segment next to it. The count is only read and written by the owner; a corrupt
//! count can make an unlock come early or late, never panic. Locking again
//! when the count is `u32::MAX` returns [`LockError::Overflow`].
//!
//! A holder that dies is handled as for [`RawMutex`] (see
//! [`super::lock`]): the lock is poisoned, `lock` answers
//! [`LockError::OwnerDied`], and a `recover` guard repairs the data and
//! marks it consistent before its *outermost* unlock, or the lock becomes
//! not recoverable.
//!
//! ```
//! use shmkit_core::sync::ReentrantMutex;
//! let m = ReentrantMutex::new(0u32);
//! let a = m.lock()?;
//! let b = m.lock()?; // same thread: no deadlock
//! b.set(3);
//! drop(b);
//! assert_eq!(a.get(), 3);
//! # Ok::<(), shmkit_core::sync::LockError>(())
//! ```

use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::lock::{
    acquire, Failure, Guard, LockError, LockTimeoutError, Poisoned, RawLock, SealedLock,
    TryLockError, UnlockError,
};
use super::mutex::{Acquired, Block, RawError, RawMutex};
use super::MutexSnapshot;
use super::DEFAULT_SPIN;
use crate::primitive::{AtomicU32, Ordering};
use crate::shared::SharedCell;
use crate::wait::Spin;

/// The lock of a [`ReentrantMutex`] without its data: a [`RawMutex`] and
/// the recursion depth (Python's `RLock`). Zero-filled is unlocked.
#[repr(C)]
pub struct RawReentrantMutex {
    raw: RawMutex,
    /// Recursion depth; written only by the owner (Relaxed: the owner is
    /// one thread, and the raw lock's Acquire/Release order it between
    /// owners).
    count: AtomicU32,
    _reserved: AtomicU32,
}

impl RawReentrantMutex {
    /// An unlocked lock.
    #[must_use]
    pub fn new() -> RawReentrantMutex {
        RawReentrantMutex {
            raw: RawMutex::new(),
            count: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }

    /// The current recursion depth if this thread holds the lock, else 0.
    #[must_use]
    pub fn depth(&self) -> u32 {
        if self.raw.is_held_by_current_thread() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }
}

impl RawReentrantMutex {
    /// Gives back one level of a lock the calling thread holds without a
    /// guard (levels kept with [`Guard::forget`]): Python's
    /// `rlock.release()`. The outermost level unlocks (a poisoned,
    /// unrepaired lock then becomes not recoverable, as on a guard's
    /// drop). Never call it for a level whose guard is still alive.
    ///
    /// ```
    /// use shmkit_core::sync::{ReentrantMutex, UnlockError};
    /// let rlock = ReentrantMutex::new(());
    /// rlock.lock()?.forget();
    /// rlock.lock()?.forget();
    /// rlock.unlock()?;
    /// rlock.unlock()?;
    /// assert_eq!(rlock.unlock(), Err(UnlockError::NotLocked));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`UnlockError::NotLocked`] if nobody holds it,
    /// [`UnlockError::NotOwner`] if another thread or process does
    /// (Python's "cannot release un-acquired lock"); nothing changes.
    pub fn unlock(&self) -> Result<(), UnlockError> {
        if !self.raw.is_held_by_current_thread() {
            return Err(if self.raw.is_locked() {
                UnlockError::NotOwner
            } else {
                UnlockError::NotLocked
            });
        }
        // Under the lock; see `RawLock::poison`.
        let repaired = self.raw.poison().load(Ordering::Relaxed) == 0;
        // SAFETY: the calling thread holds the lock (checked above), so
        // it holds at least the outermost level `release_*` may give back.
        unsafe {
            if repaired {
                self.release_raw();
            } else {
                self.release_unrepaired();
            }
        }
        Ok(())
    }
}

impl Default for RawReentrantMutex {
    fn default() -> RawReentrantMutex {
        RawReentrantMutex::new()
    }
}

impl SealedLock for RawReentrantMutex {}

impl RawLock for RawReentrantMutex {
    fn acquire_raw(&self, block: Block, spin: Spin) -> Result<Acquired, RawError> {
        if self.raw.is_held_by_current_thread() {
            let next = self
                .count
                .load(Ordering::Relaxed)
                .checked_add(1)
                .ok_or(RawError::Overflow)?;
            self.count.store(next, Ordering::Relaxed);
            return Ok(Acquired::Clean);
        }
        let acquired = self.raw.acquire_raw(block, spin)?;
        self.count.store(1, Ordering::Relaxed);
        Ok(acquired)
    }

    unsafe fn release_raw(&self) {
        let c = self.count.load(Ordering::Relaxed);
        if c > 1 {
            self.count.store(c - 1, Ordering::Relaxed);
            return;
        }
        self.count.store(0, Ordering::Relaxed);
        // SAFETY: the caller holds the outermost level.
        unsafe { self.raw.release_raw() };
    }

    unsafe fn release_unrepaired(&self) {
        let c = self.count.load(Ordering::Relaxed);
        if c > 1 {
            // An inner level: only the outermost unlock decides.
            self.count.store(c - 1, Ordering::Relaxed);
            return;
        }
        self.count.store(0, Ordering::Relaxed);
        // SAFETY: the caller holds the outermost level.
        unsafe { self.raw.release_unrepaired() };
    }

    fn poison(&self) -> &AtomicU32 {
        self.raw.poison()
    }
}

/// A reentrant, robust, process-shared mutex protecting a `T: Pod`.
/// Zero-filled memory is an unlocked lock holding `T::zeroed()`.
#[repr(C)]
pub struct ReentrantMutex<T> {
    raw: RawReentrantMutex,
    data: UnsafeCell<T>,
}

// SAFETY: data is accessed only by atomic copies while holding the lock.
unsafe impl<T: Pod> Sync for ReentrantMutex<T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Send for ReentrantMutex<T> {}

impl<T: Pod> fmt::Debug for ReentrantMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReentrantMutex")
            .field("raw", &self.raw.raw)
            .finish_non_exhaustive()
    }
}

/// One level of a held [`ReentrantMutex`]; the outermost drop unlocks.
pub type ReentrantMutexGuard<'a, T> = Guard<'a, RawReentrantMutex, SharedCell<'a, T>>;

impl<T: Pod> ReentrantMutex<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        ReentrantMutex {
            raw: RawReentrantMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    fn guard(
        &self,
        block: Block,
        spin: Spin,
        poisoned: Poisoned,
    ) -> Result<ReentrantMutexGuard<'_, T>, Failure> {
        // SAFETY: the data is a live, aligned `T` inside the lock; every
        // access to it is an atomic copy.
        let cell = unsafe { SharedCell::from_raw(NonNull::from(&self.data).cast()) };
        acquire(&self.raw, cell, block, spin, poisoned)
    }

    /// Locks (again, if this thread holds it), sleeping as needed.
    ///
    /// # Errors
    /// `OwnerDied` (see [`recover`](Self::recover)), `NotRecoverable`,
    /// `Overflow`.
    pub fn lock(&self) -> Result<ReentrantMutexGuard<'_, T>, LockError> {
        self.guard(Block::Until(None), DEFAULT_SPIN, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks if that needs no waiting.
    ///
    /// # Errors
    /// `WouldBlock`, `Contended`, or as [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<ReentrantMutexGuard<'_, T>, TryLockError> {
        self.guard(Block::Try, Spin::NONE, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// `TimedOut`, or as [`lock`](Self::lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ReentrantMutexGuard<'_, T>, LockTimeoutError> {
        self.guard(Block::timeout(timeout), DEFAULT_SPIN, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks even if a holder died (see [`RawMutex::recover`]).
    ///
    /// # Errors
    /// `NotRecoverable`, `Overflow`.
    pub fn recover(&self) -> Result<ReentrantMutexGuard<'_, T>, LockError> {
        self.guard(Block::Until(None), DEFAULT_SPIN, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover) if that needs no waiting.
    ///
    /// # Errors
    /// As [`try_lock`](Self::try_lock), never `OwnerDied`.
    pub fn try_recover(&self) -> Result<ReentrantMutexGuard<'_, T>, TryLockError> {
        self.guard(Block::Try, Spin::NONE, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`lock_timeout`](Self::lock_timeout), never `OwnerDied`.
    pub fn recover_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ReentrantMutexGuard<'_, T>, LockTimeoutError> {
        self.guard(Block::timeout(timeout), DEFAULT_SPIN, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// Gives back one level kept with [`Guard::forget`] (Python's
    /// `release()`; see [`RawReentrantMutex::unlock`]).
    ///
    /// # Errors
    /// As [`RawReentrantMutex::unlock`].
    pub fn unlock(&self) -> Result<(), UnlockError> {
        self.raw.unlock()
    }

    /// The current recursion depth if this thread holds the lock, else 0.
    #[must_use]
    pub fn depth(&self) -> u32 {
        self.raw.depth()
    }

    /// The lock without the data.
    #[must_use]
    pub fn raw(&self) -> &RawReentrantMutex {
        &self.raw
    }
}

/// A [`ReentrantMutex`]'s shared state, read once. See
/// [`ReentrantMutex::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReentrantSnapshot {
    /// The lock word.
    pub lock: MutexSnapshot,
    /// The recursion depth the owner recorded (meaningful while held).
    pub count: u32,
    /// A holder died and nobody has marked the data consistent since.
    pub inconsistent: bool,
}

impl<T: Pod> ReentrantMutex<T> {
    /// The lock word, recursion count and consistency flag, for
    /// diagnostics. Loads only (see [`RawMutex::snapshot`]): safe on a
    /// read-only mapping, never waits.
    ///
    /// ```
    /// use shmkit_core::sync::ReentrantMutex;
    /// let m = ReentrantMutex::new(0u8);
    /// let (_a, _b) = (m.lock().unwrap(), m.lock().unwrap());
    /// assert_eq!(m.snapshot().count, 2);
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> ReentrantSnapshot {
        // Relaxed: a picture for a human, read without the lock.
        ReentrantSnapshot {
            lock: self.raw.raw.snapshot(),
            count: self.raw.count.load(Ordering::Relaxed),
            inconsistent: self.raw.raw.is_poisoned(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn reenters_and_blocks_others() {
        let m = ReentrantMutex::new(0u32);
        let a = m.lock().unwrap();
        let b = m.try_lock().unwrap();
        assert_eq!(m.depth(), 2);
        std::thread::scope(|s| {
            s.spawn(|| assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock))));
        });
        drop(b);
        drop(a);
        assert_eq!(m.depth(), 0);
        std::thread::scope(|s| {
            s.spawn(|| assert!(m.try_lock().is_ok()));
        });
    }

    /// Python's `RLock`: levels kept with `forget` are given back one
    /// `unlock` each; one too many, or another thread's, is an error.
    #[test]
    fn unlock_gives_back_one_level() {
        let m = ReentrantMutex::new(0u8);
        m.lock().unwrap().forget();
        let inner = m.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(m.unlock(), Err(UnlockError::NotOwner)));
        });
        drop(inner);
        assert_eq!(m.depth(), 1);
        assert_eq!(m.unlock(), Ok(()));
        assert_eq!(m.depth(), 0);
        assert_eq!(m.unlock(), Err(UnlockError::NotLocked));
        std::thread::scope(|s| {
            s.spawn(|| assert!(m.try_lock().is_ok()));
        });
    }

    #[test]
    fn overflow_is_an_error() {
        let m = ReentrantMutex::new(0u8);
        let _a = m.lock().unwrap();
        m.raw.count.store(u32::MAX, Ordering::Relaxed);
        assert!(matches!(m.lock(), Err(LockError::Overflow)));
        m.raw.count.store(1, Ordering::Relaxed);
    }
}
