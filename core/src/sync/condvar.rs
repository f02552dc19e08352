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
//! [`LockError::OwnerDied`] (the lock is poisoned; see [`super::lock`]).
//! A process that was supposed
//! to notify and died never will: waiters that must not hang use
//! `wait_timeout`.
//!
//! ```
//! use shmkit_core::sync::{Condvar, Mutex};
//! use core::time::Duration;
//! let m = Mutex::new(0u32);
//! let cv = Condvar::new();
//! let g = m.lock()?;
//! let (g, timed_out) = cv.wait_timeout(g, Duration::from_millis(1))?;
//! assert!(timed_out);
//! drop(g);
//! cv.notify_all(); // nobody waits: no syscall
//! # Ok::<(), shmkit_core::sync::LockError>(())
//! ```

use core::fmt;
use core::time::Duration;

use bytemuck::Pod;

use super::lock::{acquire, Guard, LockError, Poisoned, RawLock};
use super::mutex::Block;
use super::{park, DEFAULT_SPIN};
use crate::primitive::{AtomicU32, Ordering};
use crate::shared::SharedCell;
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

impl Condvar {
    /// A new condvar.
    #[must_use]
    pub fn new() -> Condvar {
        Condvar {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Unlocks `guard`'s lock, sleeps until notified (or spuriously),
    /// re-locks. Works with the guard of any exclusive shmkit lock
    /// ([`MutexGuard`](super::MutexGuard) usually).
    ///
    /// # Errors
    /// From re-locking: `OwnerDied` (a holder died meanwhile; nothing is
    /// held) or `NotRecoverable`.
    pub fn wait<'a, R: RawLock, D>(
        &self,
        guard: Guard<'a, R, D>,
    ) -> Result<Guard<'a, R, D>, LockError> {
        self.wait_until(guard, None).map(|(g, _)| g)
    }

    /// As [`wait`](Self::wait), giving up after `timeout`; returns the
    /// guard and whether it timed out (never before `timeout` elapsed).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<'a, R: RawLock, D>(
        &self,
        guard: Guard<'a, R, D>,
        timeout: Duration,
    ) -> Result<(Guard<'a, R, D>, bool), LockError> {
        self.wait_until(guard, Some(Deadline::after(timeout)))
    }

    /// Waits while `condition(&data)` holds, re-checking after each wake-up.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_while<'a, R: RawLock, T: Pod>(
        &self,
        mut guard: Guard<'a, R, SharedCell<'a, T>>,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<Guard<'a, R, SharedCell<'a, T>>, LockError> {
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
    pub fn wait_timeout_while<'a, R: RawLock, T: Pod>(
        &self,
        mut guard: Guard<'a, R, SharedCell<'a, T>>,
        timeout: Duration,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<(Guard<'a, R, SharedCell<'a, T>>, bool), LockError> {
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

    fn wait_until<'a, R: RawLock, D>(
        &self,
        guard: Guard<'a, R, D>,
        deadline: Option<Deadline>,
    ) -> Result<(Guard<'a, R, D>, bool), LockError> {
        // Store→load against `notify` (see the module docs).
        self.sleepers.fetch_add(1, Ordering::AcqRel);
        // Read under the lock: a notify after this point changes `seq`.
        let seq = self.seq.load(Ordering::Acquire);
        let (lock, data, consistent) = guard.into_parts();
        // Unlock as the guard's drop would (an unrepaired recovery guard
        // leaves the lock not recoverable, as any unlock of it would).
        // SAFETY: `into_parts` handed us the lock the guard held.
        unsafe {
            if consistent || lock.poison().load(Ordering::Relaxed) == 0 {
                lock.release_raw();
            } else {
                lock.release_unrepaired();
            }
        }
        let _ = park(&self.seq, seq, deadline, None);
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        let timed_out = deadline.is_some_and(|d| d.has_passed());
        let g = acquire(
            lock,
            data,
            Block::Until(None),
            DEFAULT_SPIN,
            Poisoned::Refuse,
        )?;
        Ok((g, timed_out))
    }

    /// Wakes one waiter, if any.
    pub fn notify_one(&self) {
        let _ = self.notify_n(1);
    }

    /// Wakes at most `n` waiters (Python's `notify(n)`) and returns how
    /// many were asleep and woken (0 where the platform cannot tell). A
    /// waiter that was about to sleep may also return (a spurious wake-up,
    /// as with any condition variable: wait in a loop, or with
    /// `wait_while`).
    pub fn notify_n(&self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        self.seq.fetch_add(1, Ordering::Release);
        // An RMW, not a load: it reads the latest `sleepers` (module docs).
        if self.sleepers.fetch_add(0, Ordering::AcqRel) != 0 {
            wait::wake_n(&self.seq, n)
        } else {
            0
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let _ = self.notify_n(u32::MAX);
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
