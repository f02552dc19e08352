//! [`Semaphore`]: Python's `Semaphore` and `BoundedSemaphore`.
//!
//! | field | meaning |
//! |---|---|
//! | `count` | free permits; the futex word acquirers sleep on while it is 0 |
//! | `bound` | the most permits there may be; `u32::MAX` = unbounded |
//! | `sleepers` | how many acquirers may be asleep; a hint that lets `release` skip `FUTEX_WAKE` when nobody sleeps |
//!
//! `acquire`: CAS `count` from `c > 0` to `c - 1` (Acquire). `release`: CAS
//! `count` from `c < bound` to `c + 1` (Release); past the bound it fails
//! with [`ReleaseError::Full`] and changes nothing. A CAS that keeps losing
//! to a moving count is bounded (see the `sync` module docs):
//! `try_acquire` answers false after [`TRY_ROUNDS`] attempts; `release`
//! backs off between attempts and gives up with
//! [`ReleaseError::Contended`] only after seconds of them; blocking
//! acquires back off and check their deadline. An acquirer increments
//! `sleepers` before it sleeps; a releaser reads `sleepers` with an RMW
//! (`fetch_add(0)`, AcqRel) after its count CAS. Whichever `sleepers` RMW
//! comes second synchronises with the first: either the releaser sees the
//! sleeper and wakes it, or the sleeper's futex compare sees the new count.
//!
//! # Dead processes
//! A semaphore does not know who holds its permits: a process that dies
//! holding one never gives it back (as with POSIX `sem_t`). A process that
//! dies asleep leaves `sleepers` one too high, which only costs later
//! releases a needless `FUTEX_WAKE`.
//!
//! `acquire` hands out a [`Permit`] that gives the permit back when
//! dropped — also when the holder panics; [`Permit::forget`] keeps it taken
//! for a Python-style explicit [`release`](Semaphore::release) later.
//!
//! ```
//! use shmkit_core::sync::{Semaphore, ReleaseError};
//! let s = Semaphore::bounded(1);
//! {
//!     let _permit = s.acquire();
//!     assert!(s.try_acquire().is_none());
//! } // given back here
//! s.acquire().forget();          // Python's s.acquire() ...
//! s.release().unwrap();          // ... and s.release()
//! assert_eq!(s.release(), Err(ReleaseError::Full));
//! ```

use core::fmt;
use core::time::Duration;

use super::{park, passed, Contention, DEFAULT_SPIN, TRY_ROUNDS};
use crate::primitive::{AtomicU32, Ordering};
use crate::wait::{self, Deadline, Spin};

/// Why `release` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseError {
    /// A bounded semaphore already holds its bound of permits (Python's
    /// `ValueError: Semaphore released too many times`).
    Full,
    /// The count kept changing under every attempt (extreme contention, or
    /// a peer rewriting shared memory): the permit was *not* released.
    Contended,
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseError::Full => "semaphore released too many times: it already holds its bound of permits; release only permits you acquired",
            ReleaseError::Contended => "the semaphore's count kept changing under every attempt (extreme contention, or a peer rewriting shared memory); the permit was not released: retry",
        })
    }
}

impl core::error::Error for ReleaseError {}

/// Why a timed acquire failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcquireError {
    /// The deadline passed with no permit free.
    TimedOut,
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for a semaphore permit; retry or use a longer timeout")
    }
}

impl core::error::Error for AcquireError {}

/// A counting semaphore, optionally bounded. `#[repr(C)]`, 12 bytes.
/// Zero-filled memory is a semaphore with no permits and bound 0 (every
/// release fails): initialise with [`new`](Self::new)/[`bounded`](Self::bounded).
#[repr(C)]
pub struct Semaphore {
    count: AtomicU32,
    bound: AtomicU32,
    sleepers: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Semaphore, [u32; 3]);

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("count", &self.count.load(Ordering::Relaxed))
            .field("bound", &self.bound.load(Ordering::Relaxed))
            .finish()
    }
}

impl Semaphore {
    /// An unbounded semaphore with `permits` permits.
    #[must_use]
    pub fn new(permits: u32) -> Semaphore {
        Semaphore::with_bound(permits, u32::MAX)
    }

    /// A bounded semaphore holding (and bounded by) `permits`.
    #[must_use]
    pub fn bounded(permits: u32) -> Semaphore {
        Semaphore::with_bound(permits, permits)
    }

    /// `permits` free now, at most `bound` ever (`permits` is clamped to it).
    #[must_use]
    pub fn with_bound(permits: u32, bound: u32) -> Semaphore {
        Semaphore {
            count: AtomicU32::new(permits.min(bound)),
            bound: AtomicU32::new(bound),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Free permits now (a snapshot).
    #[must_use]
    pub fn available(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// The bound (`u32::MAX`: unbounded).
    #[must_use]
    pub fn bound(&self) -> u32 {
        self.bound.load(Ordering::Relaxed)
    }

    /// Takes a permit if one is free (`None` also if the count kept
    /// changing under [`TRY_ROUNDS`] attempts).
    #[must_use = "the permit is given back as soon as it is dropped"]
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        // `then`, not `then_some`: a Permit built eagerly would be dropped,
        // giving back a permit never taken.
        self.try_take().then(|| Permit { semaphore: self })
    }

    fn try_take(&self) -> bool {
        let mut c = self.count.load(Ordering::Relaxed);
        for _ in 0..TRY_ROUNDS {
            if c == 0 {
                return false;
            }
            // SYNC POINT (acquire): pairs with the Release CAS in `release`.
            match self
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Takes a permit, sleeping until one is free.
    #[must_use = "the permit is given back as soon as it is dropped; use forget() to keep it"]
    pub fn acquire(&self) -> Permit<'_> {
        // Without a deadline the wait cannot time out.
        let _ = self.acquire_until(None, DEFAULT_SPIN);
        Permit { semaphore: self }
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`AcquireError::TimedOut`] (never before `timeout` has elapsed).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_>, AcquireError> {
        self.acquire_until(Some(Deadline::after(timeout)), DEFAULT_SPIN)
            .map(|()| Permit { semaphore: self })
    }

    /// Takes a permit with an explicit spin budget and optional timeout.
    ///
    /// # Errors
    /// [`AcquireError::TimedOut`].
    pub fn acquire_spin(
        &self,
        spin: Spin,
        timeout: Option<Duration>,
    ) -> Result<Permit<'_>, AcquireError> {
        self.acquire_until(timeout.map(Deadline::after), spin)
            .map(|()| Permit { semaphore: self })
    }

    fn acquire_until(&self, deadline: Option<Deadline>, spin: Spin) -> Result<(), AcquireError> {
        // The spin budget counts the loads that find no permit and is
        // refilled after every sleep: an acquirer that sees a permit but
        // loses it to another (as when a Semaphore(1) is handed back and
        // forth like a lock) spins on rather than sleeping at once.
        let mut budget = spin.iterations;
        // Sleeps a moving count cut short (`sync` docs).
        let mut contention = Contention::new();
        loop {
            if self.try_take() {
                return Ok(());
            }
            if budget > 0 {
                budget -= 1;
                Spin::pause(budget);
                continue;
            }
            if passed(deadline) {
                return Err(AcquireError::TimedOut);
            }
            // AcqRel RMW: see the module docs (store→load against `release`).
            self.sleepers.fetch_add(1, Ordering::AcqRel);
            let timed_out = park(&self.count, 0, deadline, None);
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if !timed_out {
                // Cut short (woken, or the count moved) and, next time
                // round, maybe still no permit for us: a round.
                let _ = contention.back_off(None);
            }
            budget = spin.iterations;
        }
    }

    /// Returns a permit.
    ///
    /// # Errors
    /// [`ReleaseError::Full`] if the semaphore already holds its bound;
    /// [`ReleaseError::Contended`] if the count kept changing for thousands
    /// of backed-off attempts (seconds: only a peer rewriting it does
    /// that; nothing was released).
    pub fn release(&self) -> Result<(), ReleaseError> {
        let bound = self.bound.load(Ordering::Relaxed);
        let mut c = self.count.load(Ordering::Relaxed);
        // Not a `try_` call: lost rounds back off (honest contention
        // always gets through) until a bound only a peer rewriting the
        // count reaches (`sync` docs).
        let mut contention = Contention::new();
        loop {
            if c >= bound {
                return Err(ReleaseError::Full);
            }
            // SYNC POINT (release): Release pairs with the Acquire CAS of
            // the next acquirer.
            match self
                .count
                .compare_exchange_weak(c, c + 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => {
                    c = now;
                    let _ = contention.back_off(None);
                    if contention.exhausted() {
                        return Err(ReleaseError::Contended);
                    }
                }
            }
        }
        // An RMW, not a load: it reads the latest `sleepers` (module docs).
        if self.sleepers.fetch_add(0, Ordering::AcqRel) != 0 {
            wait::wake_one(&self.count);
        }
        Ok(())
    }
}

/// A permit taken from a [`Semaphore`]; given back when dropped (also on
/// a panic), unless [`forget`](Permit::forget)ten.
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct Permit<'a> {
    semaphore: &'a Semaphore,
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Permit<'_> {
    /// Keeps the permit taken: someone gives it back later with
    /// [`Semaphore::release`] (Python's acquire/release pair).
    pub fn forget(self) {
        core::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // `Full` can only come from releases nobody took (a bounded
        // semaphore some peer over-released): the permit is then already
        // accounted for. `Contended` means a peer keeps rewriting the
        // count. Neither can be reported from a drop.
        let _ = self.semaphore.release();
    }
}

/// Diagnostics: loads only, safe on a read-only mapping.
impl Semaphore {
    /// How many acquirers may be asleep (a hint: one that died asleep stays
    /// counted).
    #[must_use]
    pub fn sleepers(&self) -> u32 {
        // Relaxed: a picture for a human.
        self.sleepers.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn counts_and_bounds() {
        let s = Semaphore::new(2);
        s.try_acquire().unwrap().forget();
        let held = s.try_acquire().unwrap();
        assert!(s.try_acquire().is_none());
        drop(held); // given back
        assert_eq!(s.available(), 1);
        s.release().unwrap();
        s.release().unwrap(); // unbounded
        assert_eq!(s.available(), 3);
        let b = Semaphore::bounded(1);
        assert_eq!(b.release(), Err(ReleaseError::Full));
    }

    #[test]
    fn acquire_timeout_is_never_early() {
        let s = Semaphore::new(0);
        let d = Duration::from_millis(20);
        let t0 = std::time::Instant::now();
        assert_eq!(s.acquire_timeout(d).unwrap_err(), AcquireError::TimedOut);
        assert!(t0.elapsed() >= d);
    }

    #[test]
    fn threads_hand_permits_around() {
        let s = Semaphore::new(0);
        let n = if cfg!(miri) { 20 } else { 2000 };
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for _ in 0..n {
                    s.acquire().forget();
                }
            });
            for _ in 0..n {
                s.release().unwrap();
            }
        });
        assert_eq!(s.available(), 0);
    }

    /// A permit held by a thread that panics is given back.
    #[test]
    fn a_panic_does_not_leak_a_permit() {
        let s = Semaphore::new(1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _p = s.acquire();
            panic!("boom");
        }));
        assert!(r.is_err());
        assert_eq!(s.available(), 1);
    }
}
