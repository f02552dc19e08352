//! The wait/wake layer every blocking shmkit primitive goes through.
//!
//! Three operations on a 32-bit word in shared memory:
//! - [`wait`]: sleep while the word holds an expected value, until woken, a
//!   [`Deadline`] passes, or spuriously;
//! - [`wake_one`] / [`wake_all`]: wake sleepers of that word.
//!
//! On Linux these are **shared** futexes (keyed by the physical page, so they
//! work between processes that map a segment at different addresses) with
//! absolute `CLOCK_MONOTONIC` deadlines: retrying after a signal or a
//! spurious wake-up never stretches or shortens a timeout. On other targets
//! the user registers a [`Platform`] with [`set_platform`]; without one,
//! waiting spins and timed waits give up at once (there is no clock). macOS
//! is not supported by the posix crate: its only cross-process
//! wait-on-address calls are private (`__ulock_wait`) or too recent to rely
//! on, so shmkit does not pretend to offer blocking there.
//!
//! Callers always loop: `wait` returning says only "look again".
//!
//! # Spin, then park
//!
//! A cross-CPU futex wake costs tens of microseconds (≈40 µs on a 2-vCPU
//! VM), while a peer that answers within a few hundred nanoseconds is
//! caught by spinning on a load. [`Spin`] is that budget: primitives spin
//! `Spin::iterations` times on plain loads before they sleep.
//!
//! ```
//! use shmkit_core::wait::{self, Deadline};
//! use core::sync::atomic::{AtomicU32, Ordering};
//! use core::time::Duration;
//!
//! let word = AtomicU32::new(0);
//! // Nobody will change the word: this returns once the deadline passes.
//! let deadline = Deadline::after(Duration::from_millis(5));
//! while word.load(Ordering::Acquire) == 0 && !deadline.has_passed() {
//!     wait::wait(&word, 0, Some(deadline));
//! }
//! assert!(deadline.has_passed());
//! ```

use core::time::Duration;

use crate::primitive::AtomicU32;
use crate::sys;

/// An absolute point on the monotonic clock after which a timed wait gives
/// up. Computed once per operation, so retries never extend it.
///
/// Without a clock (bare metal with no [`Platform`], loom), every deadline
/// counts as already passed: timed operations degrade to their `try_` form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    /// Time since the clock's origin; `None` when there is no clock.
    at: Option<Duration>,
}

impl Deadline {
    /// The deadline `timeout` from now. Saturates instead of overflowing.
    #[must_use]
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: sys::now().map(|now| now.saturating_add(timeout)),
        }
    }

    /// Whether the deadline is in the past.
    #[must_use]
    pub fn has_passed(&self) -> bool {
        match (self.at, sys::now()) {
            (Some(at), Some(now)) => now >= at,
            _ => true,
        }
    }

    /// Time left until the deadline (zero once passed).
    #[must_use]
    pub fn remaining(&self) -> Duration {
        match (self.at, sys::now()) {
            (Some(at), Some(now)) => at.saturating_sub(now),
            _ => Duration::ZERO,
        }
    }

    /// The earlier of two deadlines.
    #[must_use]
    pub fn min(self, other: Deadline) -> Deadline {
        match (self.at, other.at) {
            (Some(a), Some(b)) => Deadline { at: Some(a.min(b)) },
            _ => Deadline { at: None },
        }
    }

    /// The absolute instant, for back ends.
    pub(crate) fn instant(&self) -> Option<Duration> {
        self.at
    }
}

/// Sleeps while `*word == expected`, until woken, spuriously, or until
/// `deadline` passes (`None`: no deadline).
///
/// Returns without sleeping if the word already differs. The caller must
/// re-check its condition and the deadline after every return.
#[inline]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) {
    match deadline {
        None => sys::wait(word, expected, None),
        // No clock: a timed wait cannot sleep safely; return and let the
        // caller observe `has_passed()` and give up.
        Some(d) => {
            if let Some(at) = d.instant() {
                sys::wait(word, expected, Some(at));
            }
        }
    }
}

/// Wakes one sleeper of `word`. Returns how many were woken (0 or 1; always
/// 0 where the back end cannot tell).
#[inline]
pub fn wake_one(word: &AtomicU32) -> u32 {
    sys::wake(word, 1)
}

/// Wakes every sleeper of `word`. Returns how many were woken, where known.
#[inline]
pub fn wake_all(word: &AtomicU32) -> u32 {
    sys::wake(word, u32::MAX)
}

/// The monotonic clock, if the target has one.
#[must_use]
pub fn now() -> Option<Duration> {
    sys::now()
}

/// How long a blocking call spins on loads before it sleeps.
///
/// The default, [`Spin::DEFAULT`], is about a few microseconds of
/// `spin_loop` iterations: long enough to catch a peer on another CPU that
/// answers within a busy-poll round trip (≈0.1–0.5 µs), short enough to cost
/// little next to the ≈40 µs a cross-CPU wake-up takes anyway. Use
/// [`Spin::NONE`] when the two processes share a CPU (spinning then only
/// delays the peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spin {
    /// Number of load + `spin_loop` iterations before sleeping.
    pub iterations: u32,
}

impl Spin {
    /// No spinning: sleep at once.
    pub const NONE: Spin = Spin { iterations: 0 };
    /// The default budget: 200 iterations, about 5 µs where a
    /// `spin_loop` (x86 `pause`) costs ≈25 ns, as on current AMD and Intel
    /// cores.
    pub const DEFAULT: Spin = Spin { iterations: 200 };
    /// Every this many iterations the spinner yields its CPU instead of
    /// spinning: if the peer it waits for shares the CPU, that lets the peer
    /// run at once; if not, the yield returns at once (nothing else is
    /// runnable) and costs about one null syscall.
    pub const YIELD_EVERY: u32 = 64;

    /// Spins until `ready()` returns true or the budget runs out; returns
    /// the last value of `ready()`. Only loads belong in `ready`.
    #[inline]
    pub fn spin_until(self, mut ready: impl FnMut() -> bool) -> bool {
        for i in 0..self.iterations {
            if ready() {
                return true;
            }
            Spin::pause(i);
        }
        ready()
    }

    /// One iteration's pause of a spin loop: a `spin_loop` hint, or every
    /// [`YIELD_EVERY`](Spin::YIELD_EVERY)th iteration a yield of the CPU.
    /// Primitives with their own spin loops call this with their count.
    #[inline]
    pub fn pause(iteration: u32) {
        if iteration % Spin::YIELD_EVERY == Spin::YIELD_EVERY - 1 {
            crate::sys::yield_now();
        } else {
            crate::primitive::spin_loop();
        }
    }
}

impl Default for Spin {
    fn default() -> Spin {
        Spin::DEFAULT
    }
}

/// The wait/wake/clock functions of a target without a built-in back end,
/// registered once with [`set_platform`]. On Linux the futex back end is
/// built in and no platform is consulted.
///
/// ```
/// use shmkit_core::wait::Platform;
/// use shmkit_core::owner::Liveness;
/// use core::sync::atomic::AtomicU32;
/// use core::time::Duration;
///
/// fn board_wait(_w: &AtomicU32, _v: u32, _deadline: Option<Duration>) { /* WFE */ }
/// fn board_wake(_w: &AtomicU32, _n: u32) -> u32 { /* SEV */ 0 }
/// fn board_now() -> Option<Duration> { None /* read a timer here */ }
/// fn board_id() -> u32 { 1 }
/// fn board_alive(_id: u32) -> Liveness { Liveness::Unknown }
///
/// static BOARD: Platform = Platform {
///     wait: board_wait,
///     wake: board_wake,
///     now: board_now,
///     current_id: board_id,
///     liveness: board_alive,
/// };
/// // On a non-Linux target: shmkit_core::wait::set_platform(&BOARD);
/// # let _ = &BOARD;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    /// Sleep while `*word == expected`, until woken or the absolute deadline
    /// (on the clock of `now`). May return early for any reason.
    pub wait: fn(word: &AtomicU32, expected: u32, deadline: Option<Duration>),
    /// Wake up to `count` sleepers of `word`; return how many were woken.
    pub wake: fn(word: &AtomicU32, count: u32) -> u32,
    /// Monotonic time since an arbitrary origin, `None` if unknown.
    pub now: fn() -> Option<Duration>,
    /// A nonzero id of the calling execution context (thread or core), used
    /// as a lock owner id. Must fit in [`crate::owner::ID_BITS`] bits.
    pub current_id: fn() -> u32,
    /// Whether the context `id` is still alive.
    pub liveness: fn(id: u32) -> crate::owner::Liveness,
}

/// Registers the [`Platform`] of a target without a built-in back end.
/// Has no effect on Linux, whose futex back end is built in.
pub fn set_platform(platform: &'static Platform) {
    #[cfg(all(not(loom), not(target_os = "linux")))]
    sys::set_platform(platform);
    #[cfg(any(loom, target_os = "linux"))]
    let _ = platform;
}
