//! How every impl times itself, floors, peers and shmkit alike.
//!
//! # Why not `Instant` per operation
//! `Instant::now()` costs 20–30 ns on this VM (a vDSO `clock_gettime`),
//! a fifth of the busy-poll floor. Round trips are therefore timed with
//! the time-stamp counter (`rdtsc`, ~8 ns, x86_64 only), converted to
//! nanoseconds with a factor calibrated once against `Instant`; elsewhere
//! `Instant` is used. Operations far cheaper than a clock read
//! (lock+unlock, ~5 ns) are timed in batches ([`time_batched`]), each
//! sample being the batch's time divided by its length.
//!
//! # Hangs
//! A peer that dies must not hang the benchmark: peers call
//! [`peer_guard`] (they die with the parent), busy loops use
//! [`spin_until`] (gives up after [`STALL`]), and the engine arms a
//! watchdog alarm around every run.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::Params;

/// How long a busy loop waits for a peer before reporting it stalled.
pub const STALL: Duration = Duration::from_secs(10);

/// A raw clock reading; convert differences with [`ticks_to_ns`].
#[inline(always)]
#[must_use]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64 (user mode may read
        // the TSC unless the OS disabled it, which Linux does not).
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let start = *EPOCH.get_or_init(Instant::now);
        start.elapsed().as_nanos() as u64
    }
}

#[cfg(not(target_arch = "x86_64"))]
static EPOCH: OnceLock<Instant> = OnceLock::new();

static NS_PER_TICK: OnceLock<f64> = OnceLock::new();

/// Nanoseconds per tick, calibrated on first use (about 20 ms).
#[must_use]
pub fn ns_per_tick() -> f64 {
    *NS_PER_TICK.get_or_init(calibrate)
}

fn calibrate() -> f64 {
    if cfg!(not(target_arch = "x86_64")) {
        return 1.0;
    }
    // Best of three 10 ms windows against the monotonic clock.
    let mut best = Vec::with_capacity(3);
    for _ in 0..3 {
        let (i0, t0) = (Instant::now(), ticks());
        while i0.elapsed() < Duration::from_millis(10) {
            std::hint::spin_loop();
        }
        let (t1, i1) = (ticks(), Instant::now());
        let dt = t1.wrapping_sub(t0).max(1);
        best.push((i1 - i0).as_nanos() as f64 / dt as f64);
    }
    best.sort_by(f64::total_cmp);
    best[1]
}

/// Converts a tick difference to nanoseconds.
#[inline]
#[must_use]
pub fn ticks_to_ns(ticks: u64) -> u64 {
    (ticks as f64 * ns_per_tick()).round() as u64
}

/// Runs `op(i)` for `params.warmup` unmeasured then `params.ops` measured
/// iterations and returns one sample (ns) per measured call. Used for round
/// trips: `op` does one complete round trip.
///
/// # Errors
/// The first error `op` returns.
pub fn time_each(
    params: &Params,
    mut op: impl FnMut(u64) -> Result<(), String>,
) -> Result<Vec<u64>, String> {
    let _ = ns_per_tick();
    for i in 0..params.warmup {
        op(i)?;
    }
    let mut raw = Vec::with_capacity(params.ops as usize);
    for i in params.warmup..params.warmup + params.ops {
        let t0 = ticks();
        op(i)?;
        let t1 = ticks();
        raw.push(t1.wrapping_sub(t0));
    }
    Ok(raw.into_iter().map(ticks_to_ns).collect())
}

/// Like [`time_each`] for operations cheaper than a clock read: times
/// batches of `batch` calls; each sample is the batch's time divided by
/// `batch` (so percentiles describe batches, not single calls).
///
/// # Errors
/// The first error `op` returns.
pub fn time_batched(
    params: &Params,
    batch: u64,
    mut op: impl FnMut(u64) -> Result<(), String>,
) -> Result<Vec<u64>, String> {
    let _ = ns_per_tick();
    let batch = batch.max(1);
    for i in 0..params.warmup {
        op(i)?;
    }
    let batches = (params.ops / batch).max(1);
    let mut raw = Vec::with_capacity(batches as usize);
    let mut i = params.warmup;
    for _ in 0..batches {
        let t0 = ticks();
        for _ in 0..batch {
            op(i)?;
            i += 1;
        }
        let t1 = ticks();
        raw.push(t1.wrapping_sub(t0));
    }
    Ok(raw
        .into_iter()
        .map(|t| (ticks_to_ns(t) as f64 / batch as f64).round() as u64)
        .collect())
}

/// Spins until `cond()` holds; `Err` after [`STALL`] (peer dead or stuck).
///
/// The clock is read only every few thousand iterations, so the loop is as
/// tight as a bare spin.
///
/// # Errors
/// A message naming `what` when the peer stalls.
#[inline]
pub fn spin_until(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let mut n: u32 = 0;
    let mut start: Option<Instant> = None;
    loop {
        if cond() {
            return Ok(());
        }
        std::hint::spin_loop();
        n = n.wrapping_add(1);
        if n % 4096 == 0 {
            let s = *start.get_or_insert_with(Instant::now);
            if s.elapsed() > STALL {
                return Err(format!("{what}: peer stalled for {STALL:?}"));
            }
        }
    }
}

/// Call first thing in a forked peer: the peer is SIGKILLed if the
/// benchmark process dies, so a crashed or interrupted run leaves no
/// spinning orphans.
pub fn peer_guard() {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // If the parent already died before prctl, we were re-parented.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        // SAFETY: ending this peer process immediately.
        unsafe { libc::_exit(1) };
    }
}

/// Turns an `io::Error`-returning libc result into the impl's error text.
pub(crate) fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_samples_are_never_shorter_than_what_they_time() {
        let p = Params {
            ops: 3,
            warmup: 1,
            ..Params::default()
        };
        let samples = time_each(&p, |_| {
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        })
        .unwrap();
        assert_eq!(samples.len(), 3);
        eprintln!("ns/tick {} samples {samples:?}", ns_per_tick());
        // Calibration error is far below 5%.
        assert!(samples.iter().all(|&s| s >= 1_900_000), "{samples:?}");
    }

    #[test]
    fn batched_samples_divide_by_the_batch() {
        let p = Params {
            ops: 4,
            warmup: 0,
            ..Params::default()
        };
        let mut calls = 0;
        let samples = time_batched(&p, 2, |_| {
            calls += 1;
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        })
        .unwrap();
        assert_eq!((calls, samples.len()), (4, 2));
        assert!(samples.iter().all(|&s| s >= 950_000), "{samples:?}");
    }

    #[test]
    fn a_stalled_spin_reports_an_error_and_errors_propagate() {
        let p = Params {
            ops: 10,
            warmup: 0,
            ..Params::default()
        };
        let r = time_each(&p, |i| if i == 3 { Err("boom".into()) } else { Ok(()) });
        assert_eq!(r, Err("boom".to_string()));
        assert!(spin_until("x", || true).is_ok());
    }
}
