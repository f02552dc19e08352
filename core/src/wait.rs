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
//! caught by spinning on a load. [`Spin`] is a fixed budget: primitives
//! spin `Spin::iterations` times on plain loads before they sleep.
//!
//! [`AdaptiveSpin`] learns the budget per wait point (per handle) instead,
//! from what its waits took: spin for as long as a park-and-wake costs
//! when the peer usually answers within that (which bounds the latency at
//! about twice the best possible), and park almost at once when the peer
//! is idle (waits much longer than a wake-up). See its docs.
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

/// Wakes at most `n` sleepers of `word`. Returns how many were woken,
/// where known.
#[inline]
pub fn wake_n(word: &AtomicU32, n: u32) -> u32 {
    sys::wake(word, n)
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

/// A spin-then-park policy that learns, for one wait point, how long to
/// spin before it parks: or a fixed [`Spin`] budget.
///
/// # Why
/// Parking is cheap in CPU and expensive in latency: a sleeping process
/// on another CPU wakes ≈40 µs after its peer's `FUTEX_WAKE` on the
/// reference VM. A fixed few-microsecond spin therefore has a trap: once
/// one side of a request/response pair parks, its answer comes ≈40 µs
/// late, beyond the other side's spin, which parks too, and the pair stays
/// in the slow regime (rounds of `blocking_rtt` alternated between 0.33 µs
/// and 37–92 µs medians that way). Spinning for as long as a wake-up costs
/// catches a peer that answers within one wake-up, and costs at most that
/// much CPU per wait when it does not.
///
/// # The rule
/// The handle keeps two estimates, in nanoseconds:
/// - `typical`, how long its waits take: raised halfway towards a longer
///   wait at once, lowered by an eighth towards a shorter one (a single
///   slow answer restores a long spin; a burst of fast ones shortens it
///   gradually);
/// - `wake`, what a wake-up costs here: measured on every park ended by a
///   peer's wake (the waker stamps the wait point with the time; the
///   sleeper subtracts), starting from 50 µs.
///
/// The spin budget is then
///
/// | waits typically take | spin for | so that |
/// |---|---|---|
/// | up to one wake-up | twice `typical`, at least 3 µs, at most two wake-ups | a peer answering as usual is caught spinning |
/// | one to eight wake-ups | two wake-ups | an answer within that is caught; a later one costs at most one extra wake-up of latency and two of CPU |
/// | longer (an idle peer) | 3 µs | parking is cheap when the wait is long anyway |
///
/// Spinning is counted in iterations of the waiter's loop (a
/// [`Spin::pause`] and an attempt), converted from nanoseconds with what
/// an iteration of this wait point's loop was measured to take (a clock
/// read when a spin passes [`Spin::YIELD_EVERY`] iterations, one when it
/// parks: short waits pay no clock read), starting from a per-process
/// calibration of `Spin::pause` alone. Without a clock (loom, bare metal
/// without one) the policy keeps its starting budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveSpin {
    /// `Some`: a fixed budget, nothing learned.
    fixed: Option<Spin>,
    /// How long waits typically take, in spin iterations (so that a wait
    /// caught spinning is learned without a clock or a division).
    typical: u32,
    /// What a wake-up costs, ns.
    wake: u32,
    /// What one spin iteration takes at this wait point, ns (0: not
    /// measured yet, use the process calibration).
    iteration: u32,
    /// `wake` and the shortest spin in iterations, recomputed when
    /// `wake` or `iteration` change (rarely: on parks).
    wake_it: u32,
    min_it: u32,
}

/// The shortest adaptive spin.
const MIN_SPIN_NS: u32 = 3_000;
/// The wake-up cost assumed until one is measured.
const DEFAULT_WAKE_NS: u32 = 50_000;
/// Wake-up samples outside this range are not wake-up costs (a stale stamp,
/// a descheduled sleeper, a hostile peer).
const WAKE_SAMPLE_NS: core::ops::RangeInclusive<u32> = 1_000..=2_000_000;
/// The estimates stay in this range.
const MAX_TYPICAL_NS: u64 = 1_000_000_000;
const MAX_WAKE_NS: u32 = 500_000;

impl AdaptiveSpin {
    /// A learning policy with nothing learned yet: spins 3 µs.
    #[must_use]
    pub const fn new() -> AdaptiveSpin {
        AdaptiveSpin {
            fixed: None,
            typical: 0,
            wake: DEFAULT_WAKE_NS,
            iteration: 0,
            wake_it: DEFAULT_WAKE_NS / DEFAULT_NS_PER_ITERATION,
            min_it: MIN_SPIN_NS / DEFAULT_NS_PER_ITERATION,
        }
    }

    /// The fixed budget `spin`: [`Spin::NONE`] parks at once, a huge one
    /// spins (nearly) forever.
    #[must_use]
    pub const fn fixed(spin: Spin) -> AdaptiveSpin {
        let mut s = AdaptiveSpin::new();
        s.fixed = Some(spin);
        s
    }

    /// The fixed budget, or for a learning policy [`Spin::DEFAULT`] (for
    /// callers that scale a budget, such as the pipe for large messages).
    #[must_use]
    pub fn nominal(&self) -> Spin {
        self.fixed.unwrap_or(Spin::DEFAULT)
    }

    /// Whether the policy learns.
    #[must_use]
    pub fn is_adaptive(&self) -> bool {
        self.fixed.is_none()
    }

    /// What a wait typically takes and what a wake-up costs, as learned;
    /// `None` for a fixed policy.
    #[must_use]
    pub fn estimates(&self) -> Option<(Duration, Duration)> {
        self.fixed.is_none().then(|| {
            (
                Duration::from_nanos(u64::from(self.typical) * u64::from(self.iteration_ns())),
                Duration::from_nanos(u64::from(self.wake)),
            )
        })
    }

    /// The spin budget of the next wait, in iterations. No division: the
    /// estimates are kept in iterations.
    #[must_use]
    pub fn budget(&self) -> u32 {
        if let Some(spin) = self.fixed {
            return spin.iterations;
        }
        let (typical, wake, min) = (self.typical, self.wake_it, self.min_it);
        if typical <= wake {
            typical
                .saturating_mul(2)
                .clamp(min, wake.saturating_mul(2).max(min))
        } else if typical / 8 <= wake {
            wake.saturating_mul(2)
        } else {
            min
        }
    }

    /// What a spin iteration takes at this wait point, ns (at least 1).
    #[must_use]
    pub fn iteration_ns(&self) -> u32 {
        if self.iteration == 0 {
            ns_per_iteration()
        } else {
            self.iteration
        }
    }

    /// Recomputes the estimates kept in iterations.
    fn rescale(&mut self) {
        let it = self.iteration_ns();
        self.wake_it = self.wake / it;
        self.min_it = MIN_SPIN_NS / it;
    }

    /// Learns one wait of `w` iterations: halfway up at once, an eighth of
    /// the way down.
    fn learn(&mut self, w: u32) {
        self.typical = if w > self.typical {
            self.typical + (w - self.typical) / 2
        } else {
            self.typical - (self.typical - w) / 8
        };
    }

    /// Records that `iterations` spin iterations took `took` (measured
    /// by the waiter over a spin that ended in a park).
    pub fn spun(&mut self, iterations: u32, took: Duration) {
        if self.fixed.is_some() || iterations == 0 {
            return;
        }
        let old = self.iteration_ns();
        let per = (took.as_nanos() / u128::from(iterations)).clamp(1, 10_000) as u32;
        self.iteration = if self.iteration == 0 {
            per
        } else {
            // An eighth of the way: one preempted spin must not skew it.
            let i = i64::from(self.iteration) + (i64::from(per) - i64::from(self.iteration)) / 8;
            u32::try_from(i).unwrap_or(per).max(1)
        };
        // Keep `typical` in the same time, in the new iterations.
        let ns = u64::from(self.typical) * u64::from(old);
        self.typical = u32::try_from(ns / u64::from(self.iteration)).unwrap_or(u32::MAX);
        self.rescale();
    }

    /// Records a wait that ended while spinning, after `iterations`.
    #[inline]
    pub fn caught(&mut self, iterations: u32) {
        if self.fixed.is_none() {
            self.learn(iterations);
        }
    }

    /// Records a wait that ended after parking: `waited` in all (spin
    /// included), and how long the last wake-up took to reach us, if a
    /// peer's wake ended the park and the clock could tell.
    pub fn parked(&mut self, waited: Duration, wake_latency: Option<Duration>) {
        if self.fixed.is_some() {
            return;
        }
        calibrate();
        let ns = u64::try_from(waited.as_nanos())
            .unwrap_or(u64::MAX)
            .min(MAX_TYPICAL_NS);
        let it = ns / u64::from(self.iteration_ns());
        self.learn(u32::try_from(it).unwrap_or(u32::MAX));
        if let Some(l) = wake_latency {
            let l = u32::try_from(l.as_nanos()).unwrap_or(u32::MAX);
            if WAKE_SAMPLE_NS.contains(&l) {
                let wake = i64::from(self.wake) + (i64::from(l) - i64::from(self.wake)) / 4;
                self.wake = u32::try_from(wake)
                    .unwrap_or(DEFAULT_WAKE_NS)
                    .clamp(MIN_SPIN_NS, MAX_WAKE_NS);
            }
        }
        self.rescale();
    }
}

impl Default for AdaptiveSpin {
    fn default() -> AdaptiveSpin {
        AdaptiveSpin::new()
    }
}

impl From<Spin> for AdaptiveSpin {
    fn from(spin: Spin) -> AdaptiveSpin {
        AdaptiveSpin::fixed(spin)
    }
}

/// Nanoseconds one [`Spin::pause`] iteration takes here, measured once
/// per process on the first park (until then, and without a clock, 25).
#[must_use]
pub fn ns_per_iteration() -> u32 {
    #[cfg(not(loom))]
    {
        match calibration::NS_PER_ITERATION.load(core::sync::atomic::Ordering::Relaxed) {
            0 => DEFAULT_NS_PER_ITERATION,
            n => n,
        }
    }
    #[cfg(loom)]
    {
        DEFAULT_NS_PER_ITERATION
    }
}

const DEFAULT_NS_PER_ITERATION: u32 = 25;

/// Measures [`ns_per_iteration`] if it was not yet (a few microseconds,
/// once per process).
fn calibrate() {
    #[cfg(not(loom))]
    {
        use core::sync::atomic::Ordering::Relaxed;
        if calibration::NS_PER_ITERATION.load(Relaxed) != 0 {
            return;
        }
        const N: u32 = 256;
        let Some(t0) = now() else {
            return;
        };
        for i in 0..N {
            Spin::pause(i);
        }
        if let Some(t1) = now() {
            let per = (t1.saturating_sub(t0).as_nanos() / u128::from(N)) as u32;
            calibration::NS_PER_ITERATION.store(per.clamp(1, 1_000), Relaxed);
        }
    }
}

#[cfg(not(loom))]
mod calibration {
    //! Process-local and no part of any shared protocol, so not through
    //! the loom shim (under loom there is no clock to calibrate with).
    use core::sync::atomic::AtomicU32;

    /// 0: not measured yet. Relaxed everywhere: any value is a usable
    /// estimate.
    pub(super) static NS_PER_ITERATION: AtomicU32 = AtomicU32::new(0);
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// The budget rule, with one iteration measured at 10 ns: short waits
    /// spin twice what they take (3 µs at least), waits of a few wake-ups
    /// spin two wake-ups, an idle peer's waits 3 µs; one slow answer
    /// raises the budget at once, fast ones lower it by eighths.
    #[test]
    fn adaptive_budget_follows_what_waits_took() {
        let mut s = AdaptiveSpin::new();
        s.spun(1000, 10 * US);
        assert_eq!(s.iteration_ns(), 10);
        assert_eq!(s.budget(), 300, "nothing learned: the 3 µs minimum");
        // A park that a peer's wake ended after 45 µs, the wake taking 40.
        s.parked(45 * US, Some(40 * US));
        let (typical, wake) = s.estimates().unwrap();
        assert_eq!(typical, Duration::from_nanos(22_500));
        assert_eq!(wake, Duration::from_nanos(47_500));
        assert_eq!(s.budget(), 4_500, "twice the typical wait");
        // Fast answers lower it gradually (an eighth at a time).
        for _ in 0..8 {
            s.caught(20);
        }
        assert!(s.budget() < 4_500 && s.budget() > 300, "{}", s.budget());
        for _ in 0..200 {
            s.caught(20);
        }
        assert_eq!(s.budget(), 300);
        // Waits of a few wake-ups: spin two wake-ups.
        for _ in 0..4 {
            s.parked(150 * US, None);
        }
        assert_eq!(s.budget(), 2 * 47_500 / 10);
        // An idle peer: park almost at once.
        for _ in 0..3 {
            s.parked(Duration::from_millis(50), None);
        }
        assert_eq!(s.budget(), 300);
        // Hostile or absurd wake samples are ignored.
        s.parked(Duration::from_millis(50), Some(Duration::from_secs(3)));
        assert_eq!(s.estimates().unwrap().1, Duration::from_nanos(47_500));
        // A fixed policy learns nothing.
        let mut f = AdaptiveSpin::fixed(Spin::NONE);
        f.parked(45 * US, Some(40 * US));
        assert_eq!((f.budget(), f.estimates()), (0, None));
    }
}
