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
//! A holder that dies is handled as for [`RawMutex`]: the next locker gets
//! [`LockError::OwnerDied`] with a guard at count 1, and must call
//! `mark_consistent` before its *outermost* unlock, or the lock becomes
//! not recoverable.
//!
//! ```
//! use shmkit_core::sync::ReentrantMutex;
//! let m = ReentrantMutex::new(0u32);
//! let a = m.lock().unwrap();
//! let b = m.lock().unwrap(); // same thread: no deadlock
//! b.set(3);
//! drop(b);
//! assert_eq!(a.get(), 3);
//! ```

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::mutex::{Acquired, Block, LockError, RawMutex};
use super::MutexSnapshot;
use super::DEFAULT_SPIN;
use crate::primitive::{AtomicU32, Ordering};
use crate::shared::SharedSlice;
use crate::wait::{Deadline, Spin};

/// A reentrant, robust, process-shared mutex protecting a `T: Pod`.
/// Zero-filled memory is an unlocked lock holding `T::zeroed()`.
#[repr(C)]
pub struct ReentrantMutex<T> {
    raw: RawMutex,
    /// Recursion depth; written only by the owner (Relaxed: the owner is
    /// one thread, and the raw lock's Acquire/Release order it between
    /// owners).
    count: AtomicU32,
    /// Set while the data is inconsistent (an owner died); cleared by
    /// `mark_consistent`. Only the owner touches it.
    inconsistent: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: data is accessed only by atomic copies while holding the lock.
unsafe impl<T: Pod> Sync for ReentrantMutex<T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Send for ReentrantMutex<T> {}

impl<T: Pod> fmt::Debug for ReentrantMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReentrantMutex")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

type LockResult<'a, T> = Result<ReentrantMutexGuard<'a, T>, LockError<ReentrantMutexGuard<'a, T>>>;

impl<T: Pod> ReentrantMutex<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        ReentrantMutex {
            raw: RawMutex::new(),
            count: AtomicU32::new(0),
            inconsistent: AtomicU32::new(0),
            data: UnsafeCell::new(value),
        }
    }

    /// Locks (again, if this thread holds it), sleeping as needed.
    ///
    /// # Errors
    /// `OwnerDied`, `NotRecoverable`, `Overflow`.
    pub fn lock(&self) -> LockResult<'_, T> {
        self.lock_with(Block::Until(None), DEFAULT_SPIN)
    }

    /// Locks if that needs no waiting.
    ///
    /// # Errors
    /// As [`lock`](Self::lock), plus `WouldBlock`.
    pub fn try_lock(&self) -> LockResult<'_, T> {
        self.lock_with(Block::Try, Spin::NONE)
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`lock`](Self::lock), plus `TimedOut`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<'_, T> {
        self.lock_with(Block::Until(Some(Deadline::after(timeout))), DEFAULT_SPIN)
    }

    fn lock_with(&self, block: Block, spin: Spin) -> LockResult<'_, T> {
        if self.raw.is_held_by_current_thread() {
            let c = self.count.load(Ordering::Relaxed);
            let Some(next) = c.checked_add(1) else {
                return Err(LockError::Overflow);
            };
            self.count.store(next, Ordering::Relaxed);
            let g = self.guard();
            return if self.inconsistent.load(Ordering::Relaxed) != 0 {
                Err(LockError::OwnerDied(g))
            } else {
                Ok(g)
            };
        }
        match self.raw.acquire(block, spin) {
            Ok(Acquired::Clean) => {
                self.count.store(1, Ordering::Relaxed);
                self.inconsistent.store(0, Ordering::Relaxed);
                Ok(self.guard())
            }
            Ok(Acquired::OwnerDied) => {
                self.count.store(1, Ordering::Relaxed);
                self.inconsistent.store(1, Ordering::Relaxed);
                Err(LockError::OwnerDied(self.guard()))
            }
            Err(e) => Err(e.into_lock_error()),
        }
    }

    fn guard(&self) -> ReentrantMutexGuard<'_, T> {
        ReentrantMutexGuard {
            lock: self,
            _not_send: PhantomData,
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

/// One level of a held [`ReentrantMutex`]; the outermost drop unlocks.
#[must_use = "the lock level is released as soon as the guard is dropped"]
pub struct ReentrantMutexGuard<'a, T: Pod> {
    lock: &'a ReentrantMutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> fmt::Debug for ReentrantMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReentrantMutexGuard")
            .finish_non_exhaustive()
    }
}

impl<T: Pod> ReentrantMutexGuard<'_, T> {
    fn view(&self) -> SharedSlice<'_, T> {
        // SAFETY: the data is a live, aligned `T` inside the lock; all
        // accesses are atomic copies.
        unsafe { SharedSlice::from_raw(NonNull::from(&self.lock.data).cast(), 1) }
    }

    /// A copy of the data.
    #[must_use]
    pub fn get(&self) -> T {
        self.view().get(0).unwrap_or_else(T::zeroed)
    }

    /// Replaces the data.
    pub fn set(&self, value: T) {
        let _ = self.view().set(0, value);
    }

    /// Declares the data repaired after `OwnerDied`.
    pub fn mark_consistent(&mut self) {
        self.lock.inconsistent.store(0, Ordering::Relaxed);
    }
}

impl<T: Pod> Drop for ReentrantMutexGuard<'_, T> {
    fn drop(&mut self) {
        let c = self.lock.count.load(Ordering::Relaxed);
        if c > 1 {
            self.lock.count.store(c - 1, Ordering::Relaxed);
            return;
        }
        self.lock.count.store(0, Ordering::Relaxed);
        // SAFETY: a guard exists only while this thread holds the raw lock.
        unsafe {
            if self.lock.inconsistent.load(Ordering::Relaxed) == 0 {
                self.lock.raw.release(false);
            } else {
                self.lock.raw.release_unrecoverable();
            }
        }
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
    /// The owner took the lock over from a dead one and has not marked the
    /// data consistent yet (meaningful while held).
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
            lock: self.raw.snapshot(),
            count: self.count.load(Ordering::Relaxed),
            inconsistent: self.inconsistent.load(Ordering::Relaxed) != 0,
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
            s.spawn(|| assert!(matches!(m.try_lock(), Err(LockError::WouldBlock))));
        });
        drop(b);
        drop(a);
        assert_eq!(m.depth(), 0);
        std::thread::scope(|s| {
            s.spawn(|| assert!(m.try_lock().is_ok()));
        });
    }

    #[test]
    fn overflow_is_an_error() {
        let m = ReentrantMutex::new(0u8);
        let _a = m.lock().unwrap();
        m.count.store(u32::MAX, Ordering::Relaxed);
        assert!(matches!(m.lock(), Err(LockError::Overflow)));
        m.count.store(1, Ordering::Relaxed);
    }
}
