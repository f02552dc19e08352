//! `cargo bench -p shmkit-cli --bench locks`: issue 3's cases (uncontended lock+unlock, blocking
//! ping-pong through Events and Semaphores on two CPUs and one, a contended
//! hand-off), through the same engine,
//! floors, peers and shmkit impls as `shmkit bench`, interleaved round by
//! round (see `docs/bench.md`). `SHMKIT_BENCH_QUICK=1`,
//! `SHMKIT_BENCH_ROUNDS` and `SHMKIT_BENCH_OPS_SCALE` adjust the run.

fn main() {
    shmkit_cli::bench::engine::cargo_bench_main(&[
        "lock_uncontended",
        "blocking_rtt",
        "blocking_rtt_same_core",
        "lock_handoff",
    ]);
}
