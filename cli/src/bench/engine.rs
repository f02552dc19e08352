//! Runs cases: every impl of a case interleaved, round after round, with
//! per-round medians, ratios to the floor taken within each round, and
//! percentiles from an HDR histogram over all measured samples.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use hdrhistogram::Histogram;

use super::cases::{Case, Provider, Settings, CASES};
use super::{Impl, Measurement, Metric, Params};

/// What the engine runs and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Case sizes and placement.
    pub settings: Settings,
    /// Rounds per case.
    pub rounds: usize,
    /// Case names to run (empty: all).
    pub cases: Vec<String>,
    /// Print a progress line on stderr.
    pub progress: bool,
    /// Seconds before a hung run aborts the process (0: no watchdog).
    pub watchdog_secs: u32,
}

/// The results of one impl in one case.
#[derive(Clone, Debug)]
pub struct ImplReport {
    /// Stable impl name.
    pub name: &'static str,
    /// Per round: the round's value in the case metric (median of the
    /// round's samples for latency impls), `None` if it failed.
    pub per_round: Vec<Option<f64>>,
    /// Per round: value / floor's value in the same round.
    pub ratios: Vec<Option<f64>>,
    /// All measured samples of all rounds (latency impls only), ns.
    pub hist: Option<Histogram<u64>>,
    /// Per round: CPU time per operation (ns), for impls that report it.
    pub cpu_per_round: Vec<Option<f64>>,
    /// Errors, one per failed round, as `round N: message`.
    pub errors: Vec<String>,
}

/// The results of one case.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The case.
    pub case: Case,
    /// Params every run got.
    pub params: Params,
    /// Impls in provider order (the floor first if present).
    pub impls: Vec<ImplReport>,
}

/// Median of `v` (NaN-free input), `None` when empty.
#[must_use]
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.to_vec();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl ImplReport {
    /// Rounds that produced a value.
    #[must_use]
    pub fn rounds_ok(&self) -> usize {
        self.per_round.iter().flatten().count()
    }

    /// Median across rounds of the per-round values.
    #[must_use]
    pub fn median(&self) -> Option<f64> {
        median(&self.per_round.iter().flatten().copied().collect::<Vec<_>>())
    }

    /// Median across rounds of the within-round ratios to the floor.
    #[must_use]
    pub fn ratio(&self) -> Option<f64> {
        median(&self.ratios.iter().flatten().copied().collect::<Vec<_>>())
    }

    /// Median across rounds of the CPU time per operation (ns), for impls
    /// that report it.
    #[must_use]
    pub fn cpu(&self) -> Option<f64> {
        median(
            &self
                .cpu_per_round
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>(),
        )
    }

    /// A percentile (0–100) over all samples, latency impls only.
    #[must_use]
    pub fn percentile(&self, q: f64) -> Option<f64> {
        self.hist
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q / 100.0) as f64)
    }
}

/// The value of one measurement in `metric`.
#[must_use]
pub fn value(m: &Measurement, metric: Metric) -> Option<f64> {
    let per_op_ns = match m {
        Measurement::Latencies(s) | Measurement::LatenciesCpu { samples: s, .. } => {
            let v: Vec<f64> = s.iter().map(|&x| x as f64).collect();
            median(&v)?
        }
        Measurement::Rate { ops, elapsed, .. } => {
            if *ops == 0 {
                return None;
            }
            elapsed.as_nanos() as f64 / *ops as f64
        }
    };
    let bytes = match m {
        Measurement::Rate { bytes_per_op, .. } => *bytes_per_op as f64,
        Measurement::Latencies(_) | Measurement::LatenciesCpu { .. } => 0.0,
    };
    if per_op_ns <= 0.0 {
        return match metric {
            Metric::RttNs | Metric::NsPerOp => Some(0.0),
            _ => None,
        };
    }
    Some(match metric {
        Metric::RttNs | Metric::NsPerOp => per_op_ns,
        Metric::MsgsPerS => 1e9 / per_op_ns,
        Metric::BytesPerS => bytes * 1e9 / per_op_ns,
    })
}

/// Impls registered for `case` by `providers`, floor first.
#[must_use]
pub fn impls_for(case: &Case, providers: &[Provider]) -> Vec<Impl> {
    let mut v: Vec<Impl> = providers
        .iter()
        .flat_map(|p| p())
        .filter(|(c, _)| *c == case.impls_of)
        .map(|(_, i)| i)
        .collect();
    if let Some(f) = case.floor {
        if let Some(pos) = v.iter().position(|i| i.name == f) {
            let floor = v.remove(pos);
            v.insert(0, floor);
        }
    }
    v
}

/// Validates `--cases`: every name must be a known case.
///
/// # Errors
/// The unknown names, with the list of known ones.
pub fn select(names: &[String]) -> Result<Vec<&'static Case>, String> {
    if names.is_empty() {
        return Ok(CASES.iter().collect());
    }
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !CASES.iter().any(|c| c.name == *n))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        return Err(format!(
            "unknown case(s) {}; known cases: {}",
            unknown.join(", "),
            known.join(", ")
        ));
    }
    Ok(CASES
        .iter()
        .filter(|c| names.iter().any(|n| n == c.name))
        .collect())
}

/// Runs the selected cases with impls from `providers`.
///
/// # Errors
/// Only for bad options (unknown case); failing impls are reported in the
/// results, never fatal.
pub fn run(opts: &Options, providers: &[Provider]) -> Result<Vec<CaseReport>, String> {
    let cases = select(&opts.cases)?;
    let mut progress = Progress::new(opts.progress);
    let mut out = Vec::new();
    for case in cases {
        let params = case.params(&opts.settings);
        let impls = impls_for(case, providers);
        let mut reports: Vec<ImplReport> = impls
            .iter()
            .map(|i| ImplReport {
                name: i.name,
                per_round: Vec::new(),
                ratios: Vec::new(),
                hist: None,
                cpu_per_round: Vec::new(),
                errors: Vec::new(),
            })
            .collect();
        for round in 0..opts.rounds {
            // Rotate the order each round so no impl always runs first.
            let n = impls.len();
            for k in 0..n {
                let idx = (k + round) % n;
                let imp = &impls[idx];
                progress.show(&format!(
                    "round {}/{} {} / {}",
                    round + 1,
                    opts.rounds,
                    case.name,
                    imp.name
                ));
                let result = run_guarded(imp, case, &params, opts.watchdog_secs);
                let r = &mut reports[idx];
                match result {
                    Ok(m) => {
                        r.per_round.push(value(&m, case.metric));
                        r.cpu_per_round.push(match &m {
                            Measurement::LatenciesCpu { cpu_ns_per_op, .. } => Some(*cpu_ns_per_op),
                            _ => None,
                        });
                        if let Measurement::Latencies(samples)
                        | Measurement::LatenciesCpu { samples, .. } = &m
                        {
                            let h = r.hist.get_or_insert_with(|| {
                                Histogram::new_with_bounds(1, 600_000_000_000, 3)
                                    .expect("valid bounds: 1 ns to 10 min, 3 figures")
                            });
                            for &s in samples {
                                h.saturating_record(s.max(1));
                            }
                        }
                    }
                    Err(e) => {
                        r.per_round.push(None);
                        r.cpu_per_round.push(None);
                        r.errors.push(format!("round {}: {e}", round + 1));
                    }
                }
            }
            // Ratios within this round.
            let floor_v = case
                .floor
                .and_then(|f| reports.iter().find(|r| r.name == f))
                .and_then(|r| r.per_round.get(round).copied().flatten());
            for r in &mut reports {
                let v = r.per_round.get(round).copied().flatten();
                r.ratios.push(match (v, floor_v) {
                    (Some(v), Some(f)) if f > 0.0 => Some(v / f),
                    _ => None,
                });
            }
        }
        out.push(CaseReport {
            case: *case,
            params,
            impls: reports,
        });
    }
    progress.done();
    Ok(out)
}

/// The label the watchdog prints, as fixed bytes (signal-safe to read).
static LABEL: [AtomicU8; 96] = [const { AtomicU8::new(0) }; 96];
static LABEL_LEN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    // No allocation here: a fixed buffer, write(2), _exit(2).
    let mut buf = [0u8; 256];
    let mut n = 0;
    let mut put = |b: u8| {
        if n < buf.len() {
            buf[n] = b;
            n += 1;
        }
    };
    b"shmkit bench: ".iter().for_each(|&b| put(b));
    let len = LABEL_LEN.load(Ordering::Relaxed).min(LABEL.len());
    LABEL
        .iter()
        .take(len)
        .for_each(|l| put(l.load(Ordering::Relaxed)));
    b" hung past the watchdog; aborting (a peer died or deadlocked). \
      Re-run without that case (--cases) or with a larger --watchdog.\n"
        .iter()
        .for_each(|&b| put(b));
    // SAFETY: write(2) and _exit(2) are async-signal-safe; peers die with
    // us (they set PR_SET_PDEATHSIG).
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n);
        libc::_exit(3);
    }
}

fn run_guarded(imp: &Impl, case: &Case, params: &Params, secs: u32) -> super::RunResult {
    if secs == 0 {
        return (imp.run)(params);
    }
    let label = format!("{} / {}", case.name, imp.name);
    let bytes = label.as_bytes();
    let len = bytes.len().min(LABEL.len());
    for (slot, &b) in LABEL.iter().zip(&bytes[..len]) {
        slot.store(b, Ordering::Relaxed);
    }
    LABEL_LEN.store(len, Ordering::Relaxed);
    // SAFETY: installing a handler that only calls async-signal-safe
    // functions (the allocation-free path is write + _exit), then arming
    // the alarm.
    unsafe {
        libc::signal(libc::SIGALRM, on_alarm as *const () as libc::sighandler_t);
        libc::alarm(secs);
    }
    let r = std::panic::catch_unwind(|| (imp.run)(params))
        .unwrap_or_else(|_| Err("the impl panicked".to_string()));
    // SAFETY: disarming the alarm.
    unsafe { libc::alarm(0) };
    r
}

struct Progress {
    on: bool,
    tty: bool,
    dirty: bool,
}

impl Progress {
    fn new(on: bool) -> Progress {
        Progress {
            on,
            tty: std::io::stderr().is_terminal(),
            dirty: false,
        }
    }

    fn show(&mut self, msg: &str) {
        if !self.on {
            return;
        }
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r\x1b[K[bench] {msg}");
            self.dirty = true;
        } else {
            let _ = writeln!(e, "[bench] {msg}");
        }
        let _ = e.flush();
    }

    fn done(&mut self) {
        if self.on && self.tty && self.dirty {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// The `main` of a `cargo bench` target (`benches/*.rs`, `harness = false`):
/// runs `cases` through this engine with every provider and prints the
/// table.
///
/// `cargo bench` passes `--bench`; `cargo test --benches` does not, and
/// then one tiny round runs as a smoke test. Environment:
/// `SHMKIT_BENCH_QUICK=1` for quick sizes, `SHMKIT_BENCH_ROUNDS` (default
/// 5), `SHMKIT_BENCH_OPS_SCALE` (default 1).
pub fn cargo_bench_main(cases: &[&str]) {
    fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let opts = Options {
        settings: super::cases::Settings {
            cpus: vec![0, 1],
            quick: smoke || env_or("SHMKIT_BENCH_QUICK", 0u8) == 1,
            ops_scale: if smoke {
                0.01
            } else {
                env_or("SHMKIT_BENCH_OPS_SCALE", 1.0)
            },
            producers: 1,
            consumers: 1,
        },
        rounds: if smoke {
            1
        } else {
            env_or("SHMKIT_BENCH_ROUNDS", 5)
        },
        cases: cases.iter().map(|s| (*s).to_string()).collect(),
        progress: !smoke,
        watchdog_secs: 120,
    };
    match run(&opts, &super::cases::providers()) {
        Ok(r) => print!("{}", super::report::table(&r)),
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::RunResult;
    use std::time::Duration;

    static FLOOR_CALLS: AtomicUsize = AtomicUsize::new(0);
    static FAST_CALLS: AtomicUsize = AtomicUsize::new(0);

    fn floor(_: &Params) -> RunResult {
        let n = FLOOR_CALLS.fetch_add(1, Ordering::Relaxed);
        Ok(Measurement::Latencies(vec![[100, 200][n % 2]; 5]))
    }
    fn other(_: &Params) -> RunResult {
        let n = FAST_CALLS.fetch_add(1, Ordering::Relaxed);
        Ok(Measurement::Latencies(vec![[150, 400][n % 2]; 5]))
    }
    fn broken(_: &Params) -> RunResult {
        Err("not built".into())
    }
    fn fake() -> Vec<(&'static str, Impl)> {
        vec![
            (
                "busy_rtt",
                Impl {
                    name: "other",
                    run: other,
                },
            ),
            (
                "busy_rtt",
                Impl {
                    name: "broken",
                    run: broken,
                },
            ),
            (
                "busy_rtt",
                Impl {
                    name: "floor",
                    run: floor,
                },
            ),
        ]
    }

    #[test]
    fn ratios_are_taken_within_rounds_and_failures_are_reported() {
        let opts = Options {
            settings: Settings {
                cpus: vec![],
                quick: true,
                ops_scale: 1.0,
                producers: 1,
                consumers: 1,
            },
            rounds: 2,
            cases: vec!["busy_rtt".into(), "mpmc_pxc".into()],
            progress: false,
            watchdog_secs: 0,
        };
        let r = run(&opts, &[fake]).unwrap();
        assert_eq!(r.len(), 2);
        let busy = &r[0];
        assert_eq!(busy.impls[0].name, "floor", "floor first");
        let other = busy.impls.iter().find(|i| i.name == "other").unwrap();
        assert_eq!(other.per_round, vec![Some(150.0), Some(400.0)]);
        // (1.5 + 2.0) / 2, not the ratio of medians (275 / 150).
        assert_eq!(other.ratio(), Some(1.75));
        assert_eq!(other.percentile(99.0).map(|v| v.round()), Some(400.0));
        let broken = busy.impls.iter().find(|i| i.name == "broken").unwrap();
        assert_eq!(broken.rounds_ok(), 0);
        assert_eq!(broken.errors.len(), 2);
        assert!(r[1].impls.is_empty(), "a case without impls is kept, empty");
        let doc = crate::bench::report::json(&r);
        let rows = doc.as_array().unwrap();
        assert_eq!(
            rows.len(),
            2,
            "failed impls are left out of the JSON: {doc}"
        );
        assert!(crate::bench::report::problems(&r).len() >= 3);
        assert!(select(&["nope".into()]).is_err());
    }

    #[test]
    fn values_convert_between_metrics() {
        let rate = Measurement::Rate {
            ops: 1000,
            bytes_per_op: 8,
            elapsed: Duration::from_micros(1),
        };
        assert_eq!(value(&rate, Metric::NsPerOp), Some(1.0));
        assert_eq!(value(&rate, Metric::MsgsPerS), Some(1e9));
        assert_eq!(value(&rate, Metric::BytesPerS), Some(8e9));
        let lat = Measurement::Latencies(vec![10, 30, 20]);
        assert_eq!(value(&lat, Metric::RttNs), Some(20.0));
        assert_eq!(value(&Measurement::Latencies(vec![]), Metric::RttNs), None);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
