//! shmkit's own impls for the lock and signal cases of the benchmark
//! engine. The floors and peers (raw futex, std, pthread, raw_sync) live
//! elsewhere; these are only the shmkit side, registered by [`impls`].
//!
//! | case | impl | what one sample is |
//! |---|---|---|
//! | `lock_uncontended` | `shmkit` | ns per lock+unlock of a robust [`RawMutex`] in a segment, averaged over a batch of [`BATCH`] |
//! | `blocking_rtt` | `shmkit_event` | one round trip: set the peer's Event, wait on ours (default spin budget) |
//! | `blocking_rtt` | `shmkit_event_nospin` | the same with [`Spin::NONE`]: straight to the futex |
//! | `blocking_rtt` | `shmkit_semaphore` | one round trip through two Semaphores (default spin) |
//! | `lock_handoff` | `shmkit` | [`Measurement::Rate`] of hand-offs: two processes pass a turn back and forth under a robust [`Mutex`] (lock; if it is my turn, hand it over; unlock; else `sched_yield`); `ops` counts every hand-off, so elapsed/ops is ns per hand-off |
//!
//! The measuring process is pinned to `params.cpus[0]`, the peer to
//! `params.cpus[1]` (equal entries: same core).

use std::time::Instant;

use shmkit_core::sync::DEFAULT_SPIN;
use shmkit_core::sync::{Event, Mutex, RawMutex, Semaphore};
use shmkit_core::wait::Spin;
use shmkit_posix::sync::Shared;

use super::proc::{pin_index, spawn_peer};
use super::{Impl, Measurement, Params, RunResult};

/// Lock+unlock pairs per `lock_uncontended` sample.
pub const BATCH: u64 = 1000;

/// The (case, impl) pairs of this module.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    vec![
        (
            "lock_uncontended",
            Impl {
                name: "shmkit",
                run: lock_uncontended,
            },
        ),
        (
            "blocking_rtt",
            Impl {
                name: "shmkit_event",
                run: event_rtt,
            },
        ),
        (
            "blocking_rtt",
            Impl {
                name: "shmkit_event_nospin",
                run: event_rtt_nospin,
            },
        ),
        (
            "blocking_rtt",
            Impl {
                name: "shmkit_semaphore",
                run: semaphore_rtt,
            },
        ),
        (
            "lock_handoff",
            Impl {
                name: "shmkit",
                run: lock_handoff,
            },
        ),
    ]
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn pin_self(p: &Params) -> Result<(), String> {
    pin_index(&p.cpus, 0).map_err(|e| err("pinning the measuring process", e))
}

fn peer_cpu(p: &Params) -> Option<usize> {
    p.cpus.get(1).copied()
}

/// `lock_uncontended`/`shmkit`: one process locks and unlocks a robust
/// mutex in an anonymous segment.
pub fn lock_uncontended(p: &Params) -> RunResult {
    pin_self(p)?;
    let m = Shared::anonymous(RawMutex::new()).map_err(|e| err("segment", e))?;
    let once = || {
        let g = m.lock().map_err(|e| err("lock", e))?;
        drop(std::hint::black_box(g));
        Ok::<(), String>(())
    };
    for _ in 0..p.warmup {
        once()?;
    }
    let batches = (p.ops / BATCH).max(1);
    let mut samples = Vec::with_capacity(batches as usize);
    for _ in 0..batches {
        let t0 = Instant::now();
        for _ in 0..BATCH {
            once()?;
        }
        samples.push((t0.elapsed().as_nanos() / u128::from(BATCH)) as u64);
    }
    Ok(Measurement::Latencies(samples))
}

fn event_rtt_with(p: &Params, spin: Spin) -> RunResult {
    pin_self(p)?;
    let ping = Shared::anonymous(Event::new()).map_err(|e| err("segment", e))?;
    let pong = Shared::anonymous(Event::new()).map_err(|e| err("segment", e))?;
    let total = p.warmup + p.ops;
    let peer = spawn_peer(peer_cpu(p), || {
        for _ in 0..total {
            let _ = ping.wait_spin(spin, None);
            ping.clear();
            pong.set();
        }
        0
    })
    .map_err(|e| err("fork", e))?;
    let mut samples = Vec::with_capacity(p.ops as usize);
    for i in 0..total {
        let t0 = Instant::now();
        ping.set();
        let _ = pong.wait_spin(spin, None);
        pong.clear();
        if i >= p.warmup {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}

/// `blocking_rtt`/`shmkit_event`: ping-pong through two Events, default
/// spin budget.
pub fn event_rtt(p: &Params) -> RunResult {
    event_rtt_with(p, DEFAULT_SPIN)
}

/// `blocking_rtt`/`shmkit_event_nospin`: the same, never spinning.
pub fn event_rtt_nospin(p: &Params) -> RunResult {
    event_rtt_with(p, Spin::NONE)
}

/// `blocking_rtt`/`shmkit_semaphore`: ping-pong through two Semaphores.
pub fn semaphore_rtt(p: &Params) -> RunResult {
    pin_self(p)?;
    let ping = Shared::anonymous(Semaphore::new(0)).map_err(|e| err("segment", e))?;
    let pong = Shared::anonymous(Semaphore::new(0)).map_err(|e| err("segment", e))?;
    let total = p.warmup + p.ops;
    let peer = spawn_peer(peer_cpu(p), || {
        for _ in 0..total {
            ping.acquire();
            if pong.release().is_err() {
                return 2;
            }
        }
        0
    })
    .map_err(|e| err("fork", e))?;
    let mut samples = Vec::with_capacity(p.ops as usize);
    for i in 0..total {
        let t0 = Instant::now();
        ping.release().map_err(|e| err("release", e))?;
        pong.acquire();
        if i >= p.warmup {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}

/// `lock_handoff`/`shmkit`: a turn word under a robust mutex; each process
/// locks, and if it is its turn hands the turn over, then unlocks.
pub fn lock_handoff(p: &Params) -> RunResult {
    pin_self(p)?;
    // [turn (0 = measuring process, 1 = peer)]
    let m = Shared::anonymous(Mutex::new(0u32)).map_err(|e| err("segment", e))?;
    let total = p.warmup + p.ops;
    let run = |me: u32, other: u32, mut on_handoff: Box<dyn FnMut(u64) + '_>| {
        let mut done = 0u64;
        while done < total {
            let g = m.lock().map_err(|e| err("lock", e))?;
            if g.get() == me {
                g.set(other);
                done += 1;
                drop(g);
                on_handoff(done);
            } else {
                drop(g);
                // Not our turn: let the peer run (essential when both
                // share a CPU, where spinning would burn its timeslice).
                std::thread::yield_now();
            }
        }
        Ok::<(), String>(())
    };
    let peer = spawn_peer(peer_cpu(p), || {
        i32::from(run(1, 0, Box::new(|_| {})).is_err())
    })
    .map_err(|e| err("fork", e))?;
    let mut t0 = Instant::now();
    let warmup = p.warmup;
    run(
        0,
        1,
        Box::new(|done| {
            if done == warmup {
                t0 = Instant::now();
            }
        }),
    )?;
    let elapsed = t0.elapsed();
    peer.join()?;
    Ok(Measurement::Rate {
        // Both processes handed over `ops` times in the measured window.
        ops: 2 * p.ops,
        bytes_per_op: 0,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every impl runs to completion on a tiny workload (no timing checks).
    #[test]
    fn every_impl_runs() {
        let p = Params {
            cpus: Vec::new(),
            ops: 200,
            warmup: 20,
            ..Params::default()
        };
        for (case, imp) in impls() {
            match (imp.run)(&p) {
                Ok(Measurement::Latencies(s)) => assert!(!s.is_empty(), "{case}/{}", imp.name),
                Ok(Measurement::Rate { ops, .. }) => assert_eq!(ops, 400, "{case}/{}", imp.name),
                Err(e) => panic!("{case}/{}: {e}", imp.name),
            }
        }
    }
}
