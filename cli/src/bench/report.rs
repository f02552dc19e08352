//! Printing results: the human table and the JSON document.

use std::fmt::Write as _;

use super::engine::CaseReport;
use super::Metric;

/// A value in `metric` for people: `132 ns`, `87.1 µs`, `110 M/s`, `41.9 GB/s`.
#[must_use]
pub fn human(v: f64, metric: Metric) -> String {
    match metric {
        Metric::RttNs | Metric::NsPerOp => {
            if v < 10.0 {
                format!("{v:.2} ns")
            } else if v < 1_000.0 {
                format!("{v:.0} ns")
            } else if v < 1_000_000.0 {
                format!("{:.1} µs", v / 1e3)
            } else {
                format!("{:.1} ms", v / 1e6)
            }
        }
        Metric::MsgsPerS => si(v, "/s"),
        Metric::BytesPerS => si(v, "B/s"),
    }
}

fn si(v: f64, unit: &str) -> String {
    if v >= 1e9 {
        format!("{:.1} G{unit}", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} M{unit}", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k{unit}", v / 1e3)
    } else {
        format!("{v:.0} {unit}")
    }
}

/// A compact per-round value (no unit) for the per-round column.
fn compact(v: f64, metric: Metric) -> String {
    match metric {
        Metric::RttNs | Metric::NsPerOp if v < 10.0 => format!("{v:.1}"),
        Metric::RttNs | Metric::NsPerOp if v < 10_000.0 => format!("{v:.0}"),
        Metric::RttNs | Metric::NsPerOp => format!("{:.0}k", v / 1e3),
        _ => human(v, metric).replace(' ', ""),
    }
}

/// The table `shmkit bench` prints: one block per case, one row per impl,
/// then the impls that failed and the cases with no impl yet.
#[must_use]
pub fn table(reports: &[CaseReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:<22} {:>10} {:>10} {:>10} {:>4} {:>8}  per-round medians",
        "case", "impl", "median", "p99", "p99.9", "runs", "×floor"
    );
    for c in reports {
        let m = c.case.metric;
        let _ = writeln!(
            s,
            "── {} ({}, {} ops/run{}) ── {}",
            c.case.name,
            m.as_str(),
            c.params.ops,
            if c.params.cpus.is_empty() {
                String::new()
            } else {
                format!(", cpus {:?}", c.params.cpus)
            },
            c.case.description
        );
        if c.impls.is_empty() {
            let _ = writeln!(s, "   (no impl yet)");
            continue;
        }
        for r in &c.impls {
            let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| human(v, m));
            let ratio = r
                .ratio()
                .map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
            let rounds: Vec<String> = r
                .per_round
                .iter()
                .map(|v| v.map_or_else(|| "ERR".to_string(), |v| compact(v, m)))
                .collect();
            let floor_mark = if c.case.floor == Some(r.name) {
                "*"
            } else {
                " "
            };
            let cpu = r.cpu().map_or_else(String::new, |v| {
                format!("  cpu/op {}", human(v, Metric::NsPerOp))
            });
            let _ = writeln!(
                s,
                "{:<24} {:<22} {:>10} {:>10} {:>10} {:>4} {:>8}  {}{cpu}",
                "",
                format!("{}{}", r.name, floor_mark),
                opt(r.median()),
                opt(r.percentile(99.0)),
                opt(r.percentile(99.9)),
                r.rounds_ok(),
                ratio,
                rounds.join(" ")
            );
        }
    }
    let errors: Vec<String> = reports
        .iter()
        .flat_map(|c| {
            c.impls
                .iter()
                .filter(|r| !r.errors.is_empty())
                .map(move |r| format!("  {} / {}: {}", c.case.name, r.name, r.errors.join("; ")))
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(s, "failed runs:");
        for e in errors {
            let _ = writeln!(s, "{e}");
        }
    }
    let _ = writeln!(
        s,
        "* = the case's floor; ×floor = median over rounds of (impl / floor in the same round); \
         per-round medians in ns for times; cpu/op = CPU time of the measuring process per operation"
    );
    s
}

/// The JSON document of `--format json`: an array of
/// `{case, impl, metric, median, p99, rounds, ratio_to_floor,
/// cpu_ns_per_op}`, one per impl that produced at least one round.
#[must_use]
pub fn json(reports: &[CaseReport]) -> serde_json::Value {
    let mut rows = Vec::new();
    for c in reports {
        for r in &c.impls {
            let Some(median) = r.median() else { continue };
            rows.push(serde_json::json!({
                "case": c.case.name,
                "impl": r.name,
                "metric": c.case.metric.as_str(),
                "median": median,
                "p99": r.percentile(99.0),
                "rounds": r.rounds_ok(),
                "ratio_to_floor": if c.case.floor.is_some() { r.ratio() } else { None },
                "cpu_ns_per_op": r.cpu(),
            }));
        }
    }
    serde_json::Value::Array(rows)
}

/// Impls that failed every round and cases with no impl, for stderr.
#[must_use]
pub fn problems(reports: &[CaseReport]) -> Vec<String> {
    let mut v = Vec::new();
    for c in reports {
        if c.impls.is_empty() {
            v.push(format!("{}: no impl yet", c.case.name));
        }
        for r in &c.impls {
            for e in &r.errors {
                v.push(format!("{} / {}: {e}", c.case.name, r.name));
            }
        }
    }
    v
}
