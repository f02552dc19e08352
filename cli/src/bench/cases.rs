//! The case table: every case `shmkit bench` knows, its metric, its floor
//! and its default parameters, plus the list of impl providers.
//!
//! Stable names (JSON, README): see `docs/bench.md`.

use super::{
    floors, peers, shmkit_locks, shmkit_map, shmkit_process, shmkit_queues, shmkit_segment, Impl,
    Metric, Params,
};

/// Where a case puts its processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The measuring process on `cpus[0]`, its peer(s) on `cpus[1]`.
    Pair,
    /// Both on `cpus[0]` (the same-core variant).
    SameCore,
}

/// One benchmark case.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Stable name (JSON `case`).
    pub name: &'static str,
    /// The case whose impls run here: equal to `name` except for variants
    /// (`blocking_rtt_same_core` runs the impls of `blocking_rtt`).
    pub impls_of: &'static str,
    /// What is measured.
    pub metric: Metric,
    /// The impl the ratios are taken against; `None`: no floor (ratios null).
    pub floor: Option<&'static str>,
    /// One line for `--help`, the table and docs.
    pub description: &'static str,
    /// Process placement.
    pub layout: Layout,
    /// Message size (bytes) given to impls.
    pub msg_size: usize,
    /// Measured operations per run: `[quick, full]`.
    pub ops: [u64; 2],
    /// The answering peer's delay (delay-sweep cases; zero elsewhere).
    pub delay_us: u64,
}

/// All cases, in the order they run and print.
pub const CASES: &[Case] = &[
    Case {
        name: "busy_rtt",
        impls_of: "busy_rtt",
        metric: Metric::RttNs,
        floor: Some("floor"),
        description: "busy-poll round trip between two pinned processes",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [100_000, 1_000_000],
        delay_us: 0,
    },
    Case {
        name: "blocking_rtt",
        impls_of: "blocking_rtt",
        metric: Metric::RttNs,
        floor: Some("floor"),
        description: "blocking (sleep/wake) round trip between two processes on two CPUs",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [3_000, 20_000],
        delay_us: 0,
    },
    Case {
        name: "blocking_rtt_same_core",
        impls_of: "blocking_rtt",
        metric: Metric::RttNs,
        floor: Some("floor"),
        description: "blocking round trip, both processes pinned to one CPU",
        layout: Layout::SameCore,
        msg_size: 8,
        ops: [5_000, 50_000],
        delay_us: 0,
    },
    Case {
        name: "lock_uncontended",
        impls_of: "lock_uncontended",
        metric: Metric::NsPerOp,
        floor: Some("std"),
        description: "uncontended lock+unlock in one process (batches of 1000)",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [500_000, 5_000_000],
        delay_us: 0,
    },
    Case {
        name: "lock_handoff",
        impls_of: "lock_handoff",
        metric: Metric::NsPerOp,
        floor: Some("pthread_pshared"),
        description: "a lock passed back and forth between two processes, ns per turn",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [50_000, 500_000],
        delay_us: 0,
    },
    Case {
        name: "spsc_throughput",
        impls_of: "spsc_throughput",
        metric: Metric::MsgsPerS,
        floor: Some("floor"),
        description: "8-byte messages from one producer process to one consumer process",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000_000, 5_000_000],
        delay_us: 0,
    },
    Case {
        name: "pipe_bytes",
        impls_of: "pipe_bytes",
        metric: Metric::BytesPerS,
        floor: Some("floor"),
        description: "64 KiB messages through a pipe; floor: memcpy on one core",
        layout: Layout::Pair,
        msg_size: 64 * 1024,
        ops: [20_000, 200_000],
        delay_us: 0,
    },
    Case {
        name: "mpmc_pxc",
        impls_of: "mpmc_pxc",
        metric: Metric::MsgsPerS,
        floor: Some("vyukov"),
        description: "8-byte messages, --producers × --consumers processes on one queue",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [200_000, 2_000_000],
        delay_us: 0,
    },
    Case {
        name: "typed_queue",
        impls_of: "typed_queue",
        metric: Metric::MsgsPerS,
        floor: Some("pod_mpmc"),
        description: "a small record from one producer process to one consumer process: a 24-byte Pod through the MPMC queue (floor) vs a serde struct (16 bytes encoded) through the byte-message queue",
        layout: Layout::Pair,
        msg_size: 24,
        ops: [200_000, 2_000_000],
        delay_us: 0,
    },
    Case {
        name: "map_get",
        impls_of: "map_get",
        metric: Metric::NsPerOp,
        floor: Some("std_hashmap"),
        description: "get in a u64 -> u64 map at 50% load (batches of 1000); with_writer: a peer process rewrites entries meanwhile",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000_000, 10_000_000],
        delay_us: 0,
    },
    Case {
        name: "segment_lifecycle",
        impls_of: "segment_lifecycle",
        metric: Metric::NsPerOp,
        floor: Some("shared_memory"),
        description: "create + open + drop of a named 4 KiB segment",
        layout: Layout::Pair,
        msg_size: 4096,
        ops: [200, 2_000],
        delay_us: 0,
    },
    Case {
        name: "segment_lifecycle_touched",
        impls_of: "segment_lifecycle_touched",
        metric: Metric::NsPerOp,
        floor: Some("shared_memory"),
        description: "create + open + drop of a 4 KiB segment, each side touching its first page",
        layout: Layout::Pair,
        msg_size: 4096,
        ops: [200, 2_000],
        delay_us: 0,
    },
    Case {
        name: "delay_sweep_0us",
        impls_of: "delay_sweep",
        metric: Metric::RttNs,
        floor: Some("pure_spin"),
        description: "blocking round trip, the peer answering 0 µs after each request: pure spin, pure park, adaptive",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000, 5_000],
        delay_us: 0,
    },
    Case {
        name: "delay_sweep_2us",
        impls_of: "delay_sweep",
        metric: Metric::RttNs,
        floor: Some("pure_spin"),
        description: "blocking round trip, the peer answering 2 µs after each request: pure spin, pure park, adaptive",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000, 5_000],
        delay_us: 2,
    },
    Case {
        name: "delay_sweep_5us",
        impls_of: "delay_sweep",
        metric: Metric::RttNs,
        floor: Some("pure_spin"),
        description: "blocking round trip, the peer answering 5 µs after each request: pure spin, pure park, adaptive",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000, 5_000],
        delay_us: 5,
    },
    Case {
        name: "delay_sweep_10us",
        impls_of: "delay_sweep",
        metric: Metric::RttNs,
        floor: Some("pure_spin"),
        description: "blocking round trip, the peer answering 10 µs after each request: pure spin, pure park, adaptive",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000, 5_000],
        delay_us: 10,
    },
    Case {
        name: "delay_sweep_20us",
        impls_of: "delay_sweep",
        metric: Metric::RttNs,
        floor: Some("pure_spin"),
        description: "blocking round trip, the peer answering 20 µs after each request: pure spin, pure park, adaptive",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000, 5_000],
        delay_us: 20,
    },
    Case {
        name: "delay_sweep_50us",
        impls_of: "delay_sweep",
        metric: Metric::RttNs,
        floor: Some("pure_spin"),
        description: "blocking round trip, the peer answering 50 µs after each request: pure spin, pure park, adaptive",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000, 5_000],
        delay_us: 50,
    },
    Case {
        name: "delay_sweep_100us",
        impls_of: "delay_sweep",
        metric: Metric::RttNs,
        floor: Some("pure_spin"),
        description: "blocking round trip, the peer answering 100 µs after each request: pure spin, pure park, adaptive",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [1_000, 5_000],
        delay_us: 100,
    },
    Case {
        name: "process_spawn_join",
        impls_of: "process_spawn_join",
        metric: Metric::NsPerOp,
        floor: Some("fork_waitpid"),
        description: "a child process started, exiting at once, and joined",
        layout: Layout::Pair,
        msg_size: 8,
        ops: [300, 2_000],
        delay_us: 0,
    },
    Case {
        name: "pool_map",
        impls_of: "pool_map",
        metric: Metric::MsgsPerS,
        floor: Some("single_process"),
        description: "a 2-worker pool's map of x*x over 100,000 u64, items per second (floor: the loop in one process)",
        layout: Layout::Pair,
        // Read by this case's impls as the items per map.
        msg_size: shmkit_process::POOL_ITEMS as usize,
        ops: [10, 30],
        delay_us: 0,
    },
];

/// A module's contribution: `(case, impl)` pairs.
pub type Provider = fn() -> Vec<(&'static str, Impl)>;

/// Providers behind cargo features.
#[cfg(feature = "peer-iceoryx2")]
const OPTIONAL: &[Provider] = &[super::iceoryx::impls];
#[cfg(not(feature = "peer-iceoryx2"))]
const OPTIONAL: &[Provider] = &[];

/// Every impl provider. The integrator adds `shmkit_locks::impls`,
/// `shmkit_queues::impls`, `shmkit_segment::impls` here.
#[must_use]
pub fn providers() -> Vec<Provider> {
    let mut v: Vec<Provider> = vec![
        floors::impls,
        peers::impls,
        shmkit_locks::impls,
        shmkit_queues::impls,
        super::shmkit_typed::impls,
        shmkit_segment::impls,
        shmkit_map::impls,
        shmkit_process::impls,
    ];
    v.extend_from_slice(OPTIONAL);
    v
}

/// The case named `name`.
#[must_use]
pub fn case(name: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.name == name)
}

/// How a bench invocation scales cases.
#[derive(Clone, Debug)]
pub struct Settings {
    /// CPUs: `[measuring, peer]`; empty = no pinning.
    pub cpus: Vec<usize>,
    /// `--quick` sizes instead of full ones.
    pub quick: bool,
    /// Multiplies every case's op count (tests shrink it).
    pub ops_scale: f64,
    /// Producers for P×C cases.
    pub producers: usize,
    /// Consumers for P×C cases.
    pub consumers: usize,
}

impl Case {
    /// The params one run of this case gets under `s`.
    #[must_use]
    pub fn params(&self, s: &Settings) -> Params {
        let base = self.ops[usize::from(!s.quick)];
        let ops = ((base as f64 * s.ops_scale).round() as u64).max(10);
        let cpus = match (self.layout, s.cpus.first()) {
            (Layout::SameCore, Some(&c)) => vec![c, c],
            (Layout::SameCore, None) => vec![0, 0],
            (Layout::Pair, _) => s.cpus.clone(),
        };
        Params {
            cpus,
            ops,
            warmup: (ops / 10).max(10),
            msg_size: self.msg_size,
            producers: s.producers.max(1),
            consumers: s.consumers.max(1),
            delay: std::time::Duration::from_micros(self.delay_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Measurement;

    /// Every impl of every provider (floors, peers, shmkit) runs to
    /// completion on a tiny workload and returns samples (no timing checks).
    #[test]
    fn every_provided_impl_runs() {
        let p = Params {
            cpus: Vec::new(),
            ops: 300,
            warmup: 30,
            ..Params::default()
        };
        for provider in providers() {
            for (case, imp) in provider() {
                match (imp.run)(&p) {
                    Ok(
                        Measurement::Latencies(s) | Measurement::LatenciesCpu { samples: s, .. },
                    ) => {
                        assert!(!s.is_empty(), "{case}/{}", imp.name)
                    }
                    Ok(Measurement::Rate { ops, .. }) => assert!(ops > 0, "{case}/{}", imp.name),
                    Err(e) => panic!("{case}/{}: {e}", imp.name),
                }
            }
        }
    }

    #[test]
    fn params_follow_layout_and_scale() {
        let s = Settings {
            cpus: vec![2, 3],
            quick: true,
            ops_scale: 0.5,
            producers: 0,
            consumers: 3,
        };
        let same = case("blocking_rtt_same_core").unwrap();
        let p = same.params(&s);
        assert_eq!(p.cpus, vec![2, 2]);
        assert_eq!(p.ops, same.ops[0] / 2);
        assert_eq!(p.warmup, p.ops / 10);
        assert_eq!((p.producers, p.consumers), (1, 3));
        let pair = case("busy_rtt")
            .unwrap()
            .params(&Settings { quick: false, ..s });
        assert_eq!(pair.cpus, vec![2, 3]);
        assert_eq!(pair.ops, case("busy_rtt").unwrap().ops[1] / 2);
        // Every case name is unique and every floor is named.
        for (i, c) in CASES.iter().enumerate() {
            assert!(
                CASES[i + 1..].iter().all(|d| d.name != c.name),
                "{}",
                c.name
            );
        }
    }
}
