//! `cargo bench --bench queues`: the queue cases of `shmkit bench`
//! (`busy_rtt`, `blocking_rtt`, `spsc_throughput`, `pipe_bytes`, `mpmc_pxc`) through the same engine, floors,
//! peers and (once merged) shmkit impls.
//!
//! Environment: `SHMKIT_BENCH_QUICK=1` for quick sizes, `SHMKIT_BENCH_ROUNDS`
//! (default 5), `SHMKIT_BENCH_OPS_SCALE` (default 1).

use shmkit::bench::cases::{providers, Settings};
use shmkit::bench::{engine, report};

fn main() {
    run(&[
        "busy_rtt",
        "blocking_rtt",
        "blocking_rtt_same_core",
        "spsc_throughput",
        "pipe_bytes",
        "mpmc_pxc",
    ]);
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cases: &[&str]) {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // special but must stay quick.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let opts = engine::Options {
        settings: Settings {
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
    match engine::run(&opts, &providers()) {
        Ok(r) => print!("{}", report::table(&r)),
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    }
}
