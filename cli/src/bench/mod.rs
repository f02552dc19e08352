//! The benchmark engine behind `shmkit bench` and `benches/`.
//!
//! A **case** (e.g. `busy_rtt`) compares several **impls** (the floor, the
//! peers, shmkit) on one metric. The engine runs every impl of a case
//! interleaved, round after round, in one invocation, and reports per-round
//! medians and ratios to the floor computed *within* a round, so the
//! machine's fast/slow modes never masquerade as a speed-up.
//!
//! An impl is a plain function from [`Params`] to a [`Measurement`]: it sets
//! up its own processes (fork, pinned with [`Params::cpus`]), does
//! `params.warmup` unmeasured operations, then `params.ops` measured ones.

pub mod proc;
pub mod shmkit_locks;
pub mod shmkit_map;
pub mod shmkit_process;
pub mod shmkit_queues;
pub mod shmkit_segment;
pub mod shmkit_typed;

use std::time::Duration;

/// What a case measures; names match the JSON schema in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Round-trip time of one message or signal, nanoseconds.
    RttNs,
    /// Cost of one operation (e.g. lock+unlock), nanoseconds.
    NsPerOp,
    /// Messages per second.
    MsgsPerS,
    /// Bytes per second.
    BytesPerS,
}

impl Metric {
    /// The JSON name of the metric.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::RttNs => "rtt_ns",
            Metric::NsPerOp => "ns_per_op",
            Metric::MsgsPerS => "msgs_per_s",
            Metric::BytesPerS => "bytes_per_s",
        }
    }
}

/// How one run of one impl is set up.
#[derive(Clone, Debug)]
pub struct Params {
    /// CPUs to pin the processes to, in order (first = the measuring
    /// process). Two equal entries mean "same core". Empty: no pinning.
    pub cpus: Vec<usize>,
    /// Measured operations (round trips, lock+unlock pairs, messages).
    pub ops: u64,
    /// Unmeasured warm-up operations before them.
    pub warmup: u64,
    /// Message size in bytes, for message and throughput cases.
    pub msg_size: usize,
    /// Producer processes, for P×C cases.
    pub producers: usize,
    /// Consumer processes, for P×C cases.
    pub consumers: usize,
    /// How long the answering peer waits before each answer, for the
    /// delay-sweep cases.
    pub delay: Duration,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            cpus: vec![0, 1],
            ops: 100_000,
            warmup: 10_000,
            msg_size: 8,
            producers: 1,
            consumers: 1,
            delay: Duration::ZERO,
        }
    }
}

/// What one run of one impl produced.
#[derive(Clone, Debug)]
pub enum Measurement {
    /// One sample per operation (or per small batch), in nanoseconds; the
    /// engine takes the median and percentiles.
    Latencies(Vec<u64>),
    /// Latencies as above, and the CPU time the measuring process spent
    /// per operation (ns), for cases that weigh latency against CPU.
    LatenciesCpu {
        /// One sample per operation, ns.
        samples: Vec<u64>,
        /// CPU time of the measuring process per operation, ns.
        cpu_ns_per_op: f64,
    },
    /// `ops` operations moving `bytes_per_op` bytes each took `elapsed`.
    Rate {
        /// Operations completed.
        ops: u64,
        /// Bytes moved per operation.
        bytes_per_op: u64,
        /// Wall time they took.
        elapsed: Duration,
    },
}

/// The result type of an impl: a measurement, or why it could not run.
pub type RunResult = Result<Measurement, String>;

/// One implementation taking part in a case.
#[derive(Clone, Copy, Debug)]
pub struct Impl {
    /// Stable name used in tables and JSON (`floor`, `shmkit_spsc`, ...).
    pub name: &'static str,
    /// Runs it once.
    pub run: fn(&Params) -> RunResult,
}

pub mod cases;
pub mod engine;
pub mod floors;
#[cfg(feature = "peer-iceoryx2")]
pub mod iceoryx;
pub mod peers;
pub mod report;
pub mod timing;
