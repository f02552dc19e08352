//! `cargo bench -p shmkit-cli --bench queues`: issue 4's cases (busy and blocking round trips, SPSC
//! throughput, Pipe bytes per second, MPMC P×C) and issue 10's delay sweep, through the same engine,
//! floors, peers and shmkit impls as `shmkit bench`, interleaved round by
//! round (see `docs/bench.md`). `SHMKIT_BENCH_QUICK=1`,
//! `SHMKIT_BENCH_ROUNDS` and `SHMKIT_BENCH_OPS_SCALE` adjust the run.

fn main() {
    shmkit_cli::bench::engine::cargo_bench_main(&[
        "busy_rtt",
        "blocking_rtt",
        "blocking_rtt_same_core",
        "spsc_throughput",
        "pipe_bytes",
        "mpmc_pxc",
        "delay_sweep_0us",
        "delay_sweep_2us",
        "delay_sweep_5us",
        "delay_sweep_10us",
        "delay_sweep_20us",
        "delay_sweep_50us",
        "delay_sweep_100us",
    ]);
}
