//! [`Condvar`]: Python's `Condition`, paired with a shmkit [`Mutex`](super::Mutex).
//!
//! std's futex condvar design: a sequence word that every notify bumps.
//! A waiter reads the sequence **while still holding the mutex**, unlocks,
//! and sleeps only while the sequence still holds the value it read; a
//! notify that came after the read changed the word, so the futex returns
//! at once: no lost wake-ups. A `sleepers` count lets `notify_*` skip
//! `FUTEX_WAKE` when nobody waits: a waiter increments it (AcqRel RMW)
//! before it reads the sequence; a notifier bumps the sequence, then reads
//! `sleepers` with an RMW (`fetch_add(0)`, AcqRel). Whichever `sleepers`
//! RMW comes second synchronises with the first: either the notifier sees
//! the waiter, or the waiter reads the bumped sequence (and then was not
//! waiting when the notify happened, which is no lost wake-up).
//!
//! Wake-ups may be spurious (as with every condvar): use
//! [`wait_while`](Condvar::wait_while), or re-check the condition.
//!
//! # Dead processes
//! A condvar holds no owner. A waiter that dies leaves `sleepers` one too
//! high (later notifies make a needless syscall). A process that dies
//! holding the *mutex* is reported when a waiter re-locks it:
//! [`LockError::OwnerDied`] carries the guard. A process that was supposed
//! to notify and died never will: waiters that must not hang use
//! `wait_timeout`.
//!
//! ```
//! use shmkit_core::sync::{Condvar, Mutex};
//! use core::time::Duration;
//! let m = Mutex::new(0u32);
//! let cv = Condvar::new();
//! let g = m.lock().unwrap();
//! let (g, timed_out) = cv.wait_timeout(g, Duration::from_millis(1)).unwrap();
//! assert!(timed_out);
//! drop(g);
//! cv.notify_all(); // nobody waits: no syscall
//! ```

use core::fmt;
use core::time::Duration;

use bytemuck::Pod;

use super::mutex::{LockError, MutexGuard};
use super::park;
use crate::primitive::{AtomicU32, Ordering};
use crate::wait::{self, Deadline};

/// A condition variable for a shmkit [`Mutex`](super::Mutex). `#[repr(C)]`, 8 bytes,
/// zero-filled = new.
#[repr(C)]
pub struct Condvar {
    /// Bumped by every notify; the futex word.
    seq: AtomicU32,
    /// Waiters that may be asleep (a hint, see the module docs).
    sleepers: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Condvar, u64);

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

type WaitResult<'a, T, R> = Result<R, LockError<MutexGuard<'a, T>>>;

impl Condvar {
    /// A new condvar.
    #[must_use]
    pub fn new() -> Condvar {
        Condvar {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Unlocks `guard`'s mutex, sleeps until notified (or spuriously),
    /// re-locks.
    ///
    /// # Errors
    /// From re-locking: `OwnerDied` (with the guard) or `NotRecoverable`.
    pub fn wait<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
    ) -> WaitResult<'a, T, MutexGuard<'a, T>> {
        self.wait_until(guard, None).map(|(g, _)| g)
    }

    /// As [`wait`](Self::wait), giving up after `timeout`; returns the
    /// guard and whether it timed out (never before `timeout` elapsed).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> WaitResult<'a, T, (MutexGuard<'a, T>, bool)> {
        self.wait_until(guard, Some(Deadline::after(timeout)))
    }

    /// Waits while `condition(&data)` holds, re-checking after each wake-up.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&T) -> bool,
    ) -> WaitResult<'a, T, MutexGuard<'a, T>> {
        while condition(&guard.get()) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// [`wait_while`](Self::wait_while) with a timeout; the bool is true if
    /// it timed out with the condition still holding.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&T) -> bool,
    ) -> WaitResult<'a, T, (MutexGuard<'a, T>, bool)> {
        let deadline = Deadline::after(timeout);
        while condition(&guard.get()) {
            let (g, timed_out) = self.wait_until(guard, Some(deadline))?;
            guard = g;
            if timed_out {
                let still = condition(&guard.get());
                return Ok((guard, still));
            }
        }
        Ok((guard, false))
    }

    fn wait_until<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Deadline>,
    ) -> WaitResult<'a, T, (MutexGuard<'a, T>, bool)> {
        // Store→load against `notify` (see the module docs).
        self.sleepers.fetch_add(1, Ordering::AcqRel);
        // Read under the lock: a notify after this point changes `seq`.
        let seq = self.seq.load(Ordering::Acquire);
        let mutex = guard.mutex();
        // Dropping the guard unlocks (or, if it was never marked
        // consistent, makes the lock not recoverable, as any unlock would).
        drop(guard);
        let _ = park(&self.seq, seq, deadline, None);
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        let timed_out = deadline.is_some_and(|d| d.has_passed());
        let g = mutex.lock()?;
        Ok((g, timed_out))
    }

    /// Wakes one waiter, if any.
    pub fn notify_one(&self) {
        self.notify(false);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(true);
    }

    fn notify(&self, all: bool) {
        self.seq.fetch_add(1, Ordering::Release);
        // An RMW, not a load: it reads the latest `sleepers` (module docs).
        if self.sleepers.fetch_add(0, Ordering::AcqRel) != 0 {
            if all {
                wait::wake_all(&self.seq);
            } else {
                wait::wake_one(&self.seq);
            }
        }
    }
}

/// Diagnostics: loads only, safe on a read-only mapping.
impl Condvar {
    /// How many waiters may be asleep (a hint: one that died asleep stays
    /// counted).
    #[must_use]
    pub fn sleepers(&self) -> u32 {
        // Relaxed: a picture for a human.
        self.sleepers.load(Ordering::Relaxed)
    }

    /// The notify sequence: bumped (wrapping) by every `notify_*`.
    #[must_use]
    pub fn sequence(&self) -> u32 {
        self.seq.load(Ordering::Relaxed)
    }
}
