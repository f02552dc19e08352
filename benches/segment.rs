//! Segment create + open + drop of a 4 KiB named segment: shmkit against
//! the `shared_memory` crate, interleaved in one run; then the same cycle
//! with one byte written and read back (`segment_lifecycle_touched`, see
//! `shmkit::bench::shmkit_segment`).
//!
//! `cargo bench --bench segment` prints, per round, the median cycle time of
//! each impl and the ratio shmkit / shared_memory measured within that
//! round (the machine's fast and slow modes stay visible), then the median
//! of the per-round ratios. `SHMKIT_BENCH_ROUNDS` and `SHMKIT_BENCH_OPS`
//! override the round count (default 7) and cycles per round (default 2000).

use shmkit::bench::shmkit_segment::impls;
use shmkit::bench::{Impl, Measurement, Params};

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then
    // run one tiny round as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds = if smoke {
        1
    } else {
        env_or("SHMKIT_BENCH_ROUNDS", 7)
    };
    let ops = if smoke {
        20
    } else {
        env_or("SHMKIT_BENCH_OPS", 2000)
    };
    let params = Params {
        cpus: vec![0],
        ops,
        warmup: ops / 10,
        ..Params::default()
    };
    let all = impls();
    let mut cases: Vec<&str> = all.iter().map(|(case, _)| *case).collect();
    cases.dedup();
    for case in cases {
        let impls: Vec<Impl> = all
            .iter()
            .filter(|(c, _)| *c == case)
            .map(|(_, imp)| *imp)
            .collect();
        run_case(case, &impls, &params, rounds);
    }
}

/// Runs `impls` (shmkit first, its peer second) interleaved for `rounds`
/// rounds and prints per-round medians and ratios.
fn run_case(case: &str, impls: &[Impl], params: &Params, rounds: u64) {
    println!(
        "\n{case}: create+open+drop of a 4 KiB named segment, {} cycles/round",
        params.ops
    );
    print!("{:>5}", "round");
    for imp in impls {
        print!("  {:>16}", format!("{} ns", imp.name));
    }
    println!("  {:>8}", "ratio");
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let mut medians = vec![0u64; impls.len()];
        // Alternate the order so neither impl always runs first.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..impls.len()).collect()
        } else {
            (0..impls.len()).rev().collect()
        };
        for i in order {
            let imp = impls[i];
            match (imp.run)(params) {
                Ok(Measurement::Latencies(samples)) => medians[i] = median(samples),
                Ok(Measurement::Rate { .. }) => {
                    eprintln!("{}: unexpected rate measurement", imp.name);
                    std::process::exit(1);
                }
                Err(e) => {
                    eprintln!("{}: {e}", imp.name);
                    std::process::exit(1);
                }
            }
        }
        let ratio = medians[0] as f64 / medians[1].max(1) as f64;
        ratios.push(ratio);
        print!("{round:>5}");
        for m in &medians {
            print!("  {m:>16}");
        }
        println!("  {ratio:>8.3}");
    }
    ratios.sort_by(f64::total_cmp);
    let mid = ratios[ratios.len() / 2];
    println!("{case}: median ratio shmkit/shared_memory over {rounds} rounds: {mid:.3}");
}
