//! Case `map_get`: a lookup in a `u64 → u64` map at 50 % load, against
//! `std::collections::HashMap` in one process (the floor, `std_hashmap`).
//!
//! | impl | what one sample is |
//! |---|---|
//! | `std_hashmap` ([`floors::map_get_std`](super::floors::map_get_std)) | ns per `HashMap::get` (default SipHash hasher), batches of [`MAP_BATCH`] |
//! | `shmkit` | ns per `SharedMap::get` of a map in an anonymous segment, one process |
//! | `shmkit_with_writer` | the same while a peer process, pinned to the other CPU, rewrites entries of the map without pause (a run where the writer made fewer than one write per 100 timed reads fails: it was not running) |
//!
//! All three build a map of capacity [`MAP_CAPACITY`] (for `std`:
//! `with_capacity`) holding [`MAP_CAPACITY`]` / 2` random keys, and look up
//! the same sequence of present keys in a shuffled order (no prefetcher
//! friendliness), summing the values so nothing is optimised away. The
//! reader is pinned to `params.cpus[0]`. `shmkit_with_writer ÷ shmkit`
//! (both ratios to the floor, same round) is how much a continuous writer
//! slows a reader down.
//!
//! The map is small enough to stay in the caches (`shmkit`: 8192 buckets of
//! 32 bytes, 256 KiB; `std`: 8192 buckets of 16 bytes plus control bytes):
//! the case measures the lookup, not memory latency.

use std::hint::black_box;
use std::sync::atomic::Ordering;

use shmkit_posix::map::SharedMap;

use super::floors::{map_keys, MAP_BATCH, MAP_CAPACITY};
use super::proc::{pin_index, spawn_peer, Scratch};
use super::timing::{peer_guard, spin_until, time_batched};
use super::{Impl, Measurement, Params, RunResult};

/// shmkit's impls of `map_get`, for the bench engine.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    vec![
        (
            "map_get",
            Impl {
                name: "shmkit",
                run: |p| shmkit(p, false),
            },
        ),
        (
            "map_get",
            Impl {
                name: "shmkit_with_writer",
                run: |p| shmkit(p, true),
            },
        ),
    ]
}

fn err(what: &'static str) -> impl Fn(String) -> String {
    move |e| format!("{what}: {e}")
}

/// `map_get`/`shmkit` and `shmkit_with_writer`.
fn shmkit(p: &Params, with_writer: bool) -> RunResult {
    let (present, order) = map_keys();
    let map = SharedMap::<u64, u64>::anonymous(MAP_CAPACITY).map_err(|e| format!("map: {e}"))?;
    for &k in &present {
        map.insert(k, k ^ 1).map_err(|e| format!("insert: {e}"))?;
    }
    // Words 128 bytes apart: [writer started, stop the writer, writes].
    let flags = Scratch::new(4096).map_err(|e| format!("mmap: {e}"))?;
    let peer = if with_writer {
        let (map, flags, present) = (&map, &flags, &present);
        let peer = spawn_peer(p.cpus.get(1).copied(), move || {
            peer_guard();
            let mut i = 0u64;
            flags.atomic_u64(0).store(1, Ordering::Relaxed);
            while flags.atomic_u64(128).load(Ordering::Relaxed) == 0 {
                let k = present[(i as usize * 7919) % present.len()];
                // Rewrites an existing entry (an update in place).
                if map.insert(k, k ^ (i & 1)).is_err() {
                    return 3;
                }
                i += 1;
                flags.atomic_u64(256).store(i, Ordering::Relaxed);
            }
            0
        })
        .map_err(|e| format!("fork: {e}"))?;
        spin_until("map_get writer start", || {
            flags.atomic_u64(0).load(Ordering::Relaxed) == 1
        })
        .map_err(err("writer"))?;
        Some(peer)
    } else {
        None
    };
    pin_index(&p.cpus, 0).map_err(|e| format!("pin: {e}"))?;
    let mut sum = 0u64;
    let mut writes_before = None;
    let samples = time_batched(p, MAP_BATCH, |i| {
        if i == p.warmup {
            writes_before = Some(flags.atomic_u64(256).load(Ordering::Relaxed));
        }
        let k = order[i as usize % order.len()];
        let v = map
            .get(black_box(&k))
            .map_err(|e| format!("get: {e}"))?
            .ok_or("a key went missing")?;
        sum = sum.wrapping_add(v);
        Ok(())
    });
    let writes = flags.atomic_u64(256).load(Ordering::Relaxed) - writes_before.unwrap_or(0);
    flags.atomic_u64(128).store(1, Ordering::Relaxed);
    if let Some(peer) = peer {
        peer.join().map_err(err("writer"))?;
        // The writer must really have run beside the timed reads (on a
        // busy machine it may have waited for a CPU instead). Runs too
        // short to measure anything (the smoke test's) are not judged.
        if p.ops >= 10_000 && writes < p.ops / 100 {
            return Err(format!(
                "the writer made {writes} writes during {} reads: it hardly ran (machine busy?)",
                p.ops
            ));
        }
    }
    black_box(sum);
    Ok(Measurement::Latencies(samples?))
}
