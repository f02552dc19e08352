//! `shmkit bench`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::plot;
use shmkit_cli::bench::cases::{providers, Settings, CASES};
use shmkit_cli::bench::{engine, report};

/// Output format of `shmkit bench`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// A table for people.
    Table,
    /// One JSON array on stdout (schema in docs/bench.md); nothing else.
    Json,
}

#[derive(Args, Debug)]
#[command(after_help = cases_help())]
pub struct BenchArgs {
    /// Small runs: the whole suite in under a minute.
    #[arg(long)]
    quick: bool,
    /// Only these cases (comma-separated, see the list below).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// CPUs to pin to: the measuring process first, its peer second.
    /// Default: 0,1 (or 0 alone on a one-CPU machine). Same-core variants use the first.
    #[arg(long, value_delimiter = ',')]
    cpus: Option<Vec<usize>>,
    /// Rounds per case (every impl runs once per round, interleaved).
    /// Default: 3 with --quick, 10 otherwise.
    #[arg(long)]
    rounds: Option<usize>,
    /// Producer processes for the P×C case (mpmc_pxc).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer processes for the P×C case (mpmc_pxc).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also draw the results to FILE (.svg or .png).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Multiply every case's operation count (e.g. 0.01 for a smoke run).
    /// Also read from SHMKIT_BENCH_OPS_SCALE.
    #[arg(long, env = "SHMKIT_BENCH_OPS_SCALE", default_value_t = 1.0)]
    ops_scale: f64,
    /// Abort if one run takes longer than this many seconds (0: never).
    #[arg(long, default_value_t = 120)]
    watchdog: u32,
    /// No progress line on stderr.
    #[arg(long)]
    no_progress: bool,
    /// List the cases and their impls, then exit.
    #[arg(long)]
    list: bool,
}

fn cases_help() -> String {
    let mut s = String::from("Cases:\n");
    for c in CASES {
        s.push_str(&format!(
            "  {:<24} {} [{}]\n",
            c.name,
            c.description,
            c.metric.as_str()
        ));
    }
    s.push_str("\nExamples:\n  shmkit bench --quick\n  shmkit bench --cases busy_rtt,blocking_rtt --cpus 2,3 --plot bench.svg\n  shmkit bench --quick --format json > results.json\n");
    s
}

fn default_cpus() -> Vec<usize> {
    let allowed = allowed_cpus();
    match allowed.as_slice() {
        [] => Vec::new(),
        [one] => vec![*one],
        [a, b, ..] => vec![*a, *b],
    }
}

/// CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    // SAFETY: CPU_ISSET bounds-checks its index against the set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

pub fn run(a: &BenchArgs) -> Result<ExitCode, String> {
    let provs = providers();
    if a.list {
        let mut out = std::io::stdout().lock();
        for c in CASES {
            let names: Vec<&str> = engine::impls_for(c, &provs)
                .iter()
                .map(|i| i.name)
                .collect();
            let _ = writeln!(
                out,
                "{:<24} {:<12} floor={:<16} impls: {}",
                c.name,
                c.metric.as_str(),
                c.floor.unwrap_or("-"),
                if names.is_empty() {
                    "(none yet)".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    engine::select(&a.cases).map_err(|e| format!("{e} (see `shmkit bench --help`)"))?;
    let cpus = a.cpus.clone().unwrap_or_else(default_cpus);
    let allowed = allowed_cpus();
    if let Some(bad) = cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--cpus: CPU {bad} is not available to this process (allowed: {allowed:?}); pass CPUs from that list"
        ));
    }
    if !(a.ops_scale > 0.0 && a.ops_scale.is_finite()) {
        return Err("--ops-scale must be a positive number, e.g. 0.1".into());
    }
    if let Some(p) = &a.plot {
        plot::check_path(p)?;
    }
    let rounds = a.rounds.unwrap_or(if a.quick { 3 } else { 10 });
    if rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let opts = engine::Options {
        settings: Settings {
            cpus,
            quick: a.quick,
            ops_scale: a.ops_scale,
            producers: a.producers,
            consumers: a.consumers,
        },
        rounds,
        cases: a.cases.clone(),
        progress: !a.no_progress,
        watchdog_secs: a.watchdog,
    };
    let reports = engine::run(&opts, &provs)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            let doc = report::json(&reports);
            writeln!(out, "{doc}").map_err(|e| format!("writing stdout: {e}"))?;
            for p in report::problems(&reports) {
                eprintln!("shmkit bench: {p}");
            }
        }
        Format::Table => {
            write!(out, "{}", report::table(&reports))
                .map_err(|e| format!("writing stdout: {e}"))?;
            let missing: Vec<&str> = reports
                .iter()
                .filter(|c| c.impls.is_empty())
                .map(|c| c.case.name)
                .collect();
            if !missing.is_empty() {
                writeln!(out, "cases with no impl yet: {}", missing.join(", "))
                    .map_err(|e| format!("writing stdout: {e}"))?;
            }
        }
    }
    if let Some(p) = &a.plot {
        plot::draw(p, &reports)?;
        eprintln!("shmkit bench: plot written to {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
