//! `cargo bench -p shmkit-cli --bench segment`: issue 2's case (create + open + drop of a 4 KiB named
//! segment against the `shared_memory` crate, bare and with each side
//! touching the page), through the same engine,
//! floors, peers and shmkit impls as `shmkit bench`, interleaved round by
//! round (see `docs/bench.md`). `SHMKIT_BENCH_QUICK=1`,
//! `SHMKIT_BENCH_ROUNDS` and `SHMKIT_BENCH_OPS_SCALE` adjust the run.

fn main() {
    shmkit_cli::bench::engine::cargo_bench_main(&[
        "segment_lifecycle",
        "segment_lifecycle_touched",
    ]);
}
