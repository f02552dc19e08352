//! [`Condition<T>`]: Python's `Condition`, which owns its lock — a
//! [`Mutex<T>`] and a [`Condvar`] in one object, so one segment holds both
//! and nobody can pair the condition variable with the wrong lock.
//!
//! ```
//! use core::time::Duration;
//! use shmkit_core::sync::Condition;
//!
//! let items = Condition::new(0u32);     // Python: cond = Condition()
//! {
//!     let g = items.lock()?;            // with cond:
//!     g.update(|n| *n += 1);            //     produce
//!     items.notify_one();               //     cond.notify()
//! }
//! let g = items.lock()?;
//! // cond.wait_for(lambda: n > 0, timeout=1)
//! let (g, timed_out) = items.wait_timeout_while(g, Duration::from_secs(1), |n| *n == 0)?;
//! assert!(!timed_out);
//! assert_eq!(g.get(), 1);
//! # Ok::<(), shmkit_core::sync::LockError>(())
//! ```
//!
//! Robustness is the mutex's (see [`super::lock`]): a holder that dies
//! poisons it, and waiters re-locking get [`LockError::OwnerDied`]. A
//! process that should have notified and died never will: waiters that
//! must not hang use the timed waits.

use core::fmt;
use core::time::Duration;

use bytemuck::Pod;

use super::condvar::Condvar;
use super::lock::{LockError, LockTimeoutError, TryLockError, UnlockError};
use super::mutex::{Mutex, MutexGuard, RawMutex};

/// A mutex around a `T: Pod` and its condition variable, in one object.
/// Zero-filled memory is an unlocked condition holding `T::zeroed()`.
#[repr(C)]
pub struct Condition<T> {
    mutex: Mutex<T>,
    condvar: Condvar,
}

impl<T: Pod> fmt::Debug for Condition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("mutex", &self.mutex)
            .field("condvar", &self.condvar)
            .finish()
    }
}

impl<T: Pod> Condition<T> {
    /// An unlocked condition holding `value`.
    pub fn new(value: T) -> Self {
        Condition {
            mutex: Mutex::new(value),
            condvar: Condvar::new(),
        }
    }

    /// Locks (Python's `acquire()` / `with cond:`).
    ///
    /// # Errors
    /// As [`Mutex::lock`].
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError> {
        self.mutex.lock()
    }

    /// Locks if that needs no waiting.
    ///
    /// # Errors
    /// As [`Mutex::try_lock`].
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        self.mutex.try_lock()
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Mutex::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, LockTimeoutError> {
        self.mutex.lock_timeout(timeout)
    }

    /// Locks even if a holder died, to repair (see [`Mutex::recover`]).
    ///
    /// # Errors
    /// As [`Mutex::recover`].
    pub fn recover(&self) -> Result<MutexGuard<'_, T>, LockError> {
        self.mutex.recover()
    }

    /// Unlocks what the calling thread locked and kept with
    /// [`Guard::forget`](super::Guard::forget): Python's `cond.release()`
    /// after a bare `cond.acquire()` (see [`RawMutex::unlock`]).
    ///
    /// # Errors
    /// As [`RawMutex::unlock`].
    pub fn unlock(&self) -> Result<(), UnlockError> {
        self.mutex.unlock()
    }

    /// Unlocks, sleeps until notified (or spuriously), re-locks (Python's
    /// `wait()`). `guard` must come from this condition's `lock`.
    ///
    /// # Errors
    /// As [`Condvar::wait`].
    pub fn wait<'a>(&self, guard: MutexGuard<'a, T>) -> Result<MutexGuard<'a, T>, LockError> {
        debug_assert!(core::ptr::eq(guard.raw(), self.mutex.raw()));
        self.condvar.wait(guard)
    }

    /// [`wait`](Self::wait) for at most `timeout`; the bool says whether
    /// it timed out (Python's `wait(timeout)` returning false).
    ///
    /// # Errors
    /// As [`Condvar::wait`].
    pub fn wait_timeout<'a>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> Result<(MutexGuard<'a, T>, bool), LockError> {
        debug_assert!(core::ptr::eq(guard.raw(), self.mutex.raw()));
        self.condvar.wait_timeout(guard, timeout)
    }

    /// Waits while `condition(&value)` holds (Python's `wait_for(pred)`
    /// with the predicate negated).
    ///
    /// # Errors
    /// As [`Condvar::wait`].
    pub fn wait_while<'a>(
        &self,
        guard: MutexGuard<'a, T>,
        condition: impl FnMut(&T) -> bool,
    ) -> Result<MutexGuard<'a, T>, LockError> {
        self.condvar.wait_while(guard, condition)
    }

    /// [`wait_while`](Self::wait_while) for at most `timeout`; the bool
    /// is true if it timed out with the condition still holding.
    ///
    /// # Errors
    /// As [`Condvar::wait`].
    pub fn wait_timeout_while<'a>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
        condition: impl FnMut(&T) -> bool,
    ) -> Result<(MutexGuard<'a, T>, bool), LockError> {
        self.condvar.wait_timeout_while(guard, timeout, condition)
    }

    /// Waits until `predicate(&value)` holds: Python's
    /// `cond.wait_for(predicate)` (checked first, then after every
    /// wake-up, always under the lock).
    ///
    /// ```
    /// use shmkit_core::sync::Condition;
    /// let c = Condition::new(4u32);
    /// let g = c.wait_for(c.lock()?, |n| *n == 4)?; // already true: no wait
    /// assert_eq!(g.get(), 4);
    /// # Ok::<(), shmkit_core::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Condvar::wait`].
    pub fn wait_for<'a>(
        &self,
        guard: MutexGuard<'a, T>,
        mut predicate: impl FnMut(&T) -> bool,
    ) -> Result<MutexGuard<'a, T>, LockError> {
        self.wait_while(guard, |v| !predicate(v))
    }

    /// [`wait_for`](Self::wait_for) for at most `timeout`: Python's
    /// `cond.wait_for(predicate, timeout)`, whose result is the
    /// predicate's last value — false only if it still failed when the
    /// timeout passed (never before `timeout` has elapsed).
    ///
    /// ```
    /// use core::time::Duration;
    /// use shmkit_core::sync::Condition;
    /// let c = Condition::new(0u32);
    /// let (g, ok) = c.wait_for_timeout(c.lock()?, Duration::from_millis(5), |n| *n == 4)?;
    /// assert!(!ok);
    /// drop(g);
    /// # Ok::<(), shmkit_core::sync::LockError>(())
    /// ```
    ///
    /// # Errors
    /// As [`Condvar::wait`].
    pub fn wait_for_timeout<'a>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut predicate: impl FnMut(&T) -> bool,
    ) -> Result<(MutexGuard<'a, T>, bool), LockError> {
        let (g, timed_out) = self.wait_timeout_while(guard, timeout, |v| !predicate(v))?;
        Ok((g, !timed_out))
    }

    /// Wakes one waiter (Python's `notify()`).
    pub fn notify_one(&self) {
        self.condvar.notify_one();
    }

    /// Wakes at most `n` waiters (Python's `notify(n)`); returns how many
    /// were asleep and woken (see [`Condvar::notify_n`]).
    pub fn notify_n(&self, n: u32) -> u32 {
        self.condvar.notify_n(n)
    }

    /// Wakes every waiter (Python's `notify_all()`).
    pub fn notify_all(&self) {
        self.condvar.notify_all();
    }

    /// The mutex.
    #[must_use]
    pub fn mutex(&self) -> &Mutex<T> {
        &self.mutex
    }

    /// The condition variable.
    #[must_use]
    pub fn condvar(&self) -> &Condvar {
        &self.condvar
    }

    /// The raw lock (diagnostics).
    #[must_use]
    pub fn raw(&self) -> &RawMutex {
        self.mutex.raw()
    }
}
