//! Cases `process_spawn_join` and `pool_map`: starting a child process,
//! and a process pool's `map`, against what they cost without shmkit.
//!
//! `process_spawn_join`: one sample is one child started, exiting at once
//! and joined, in nanoseconds. Floor `fork_waitpid`: raw `fork`, `_exit(0)`
//! in the child, `waitpid` in the parent. Impl `shmkit_process`:
//! `process::Builder::new().allow_threads(true).spawn(|| 0u8)` then
//! `join()` (task file, the child's return value read back).
//!
//! `pool_map`: `map`s of `x * x` over [`POOL_ITEMS`] `u64`s each, as
//! items per second (per-item time = 1 / rate). Floor `single_process`: the same
//! loop collected into a `Vec` in one process. Impls: a 2-worker
//! `process::Pool` (created once per run, outside the timing) with
//! Python's default chunking (`shmkit_pool`: 8 chunks of 12,500) and with
//! `chunksize = 1` (`shmkit_pool_chunk1`). The per-item overhead is
//! `1 / impl rate - 1 / floor rate`. Nothing is pinned: the workers inherit
//! the parent's affinity, and Python's pool (`benches/pool_map.py`) is not
//! pinned either.

use std::hint::black_box;
use std::time::Instant;

use shmkit_posix::process::{self, Pool};

use super::{Impl, Measurement, Params, RunResult};

/// Items per `map` in `pool_map` (the case's `msg_size`, which impls of
/// this case read as the item count).
pub const POOL_ITEMS: u64 = 100_000;

/// Workers in `pool_map`.
pub const POOL_WORKERS: usize = 2;

/// The impls of these cases, for the bench engine.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    vec![
        (
            "process_spawn_join",
            Impl {
                name: "fork_waitpid",
                run: fork_waitpid,
            },
        ),
        (
            "process_spawn_join",
            Impl {
                name: "shmkit_process",
                run: shmkit_process,
            },
        ),
        (
            "pool_map",
            Impl {
                name: "single_process",
                run: single_process,
            },
        ),
        (
            "pool_map",
            Impl {
                name: "shmkit_pool",
                run: |p| shmkit_pool(p, None),
            },
        ),
        (
            "pool_map",
            Impl {
                name: "shmkit_pool_chunk1",
                run: |p| shmkit_pool(p, Some(1)),
            },
        ),
    ]
}

/// Runs `op` `warmup` times unmeasured, then `ops` times measured, one
/// sample each (ns).
fn sample(params: &Params, mut op: impl FnMut() -> Result<(), String>) -> RunResult {
    for _ in 0..params.warmup {
        op()?;
    }
    let mut samples = Vec::with_capacity(usize::try_from(params.ops).unwrap_or(0));
    for _ in 0..params.ops {
        let t0 = Instant::now();
        op()?;
        samples.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(Measurement::Latencies(samples))
}

/// Runs the map `op` `warmup` times unmeasured (at most 3), then `ops`
/// times measured: a rate of items per second (the floor's per-item time
/// is a fraction of a nanosecond, below a latency sample's resolution).
fn items_rate(params: &Params, mut op: impl FnMut(u64) -> Result<(), String>) -> RunResult {
    let items = params.msg_size.max(1) as u64;
    for _ in 0..params.warmup.min(3) {
        op(items)?;
    }
    let t0 = Instant::now();
    for _ in 0..params.ops {
        op(items)?;
    }
    Ok(Measurement::Rate {
        ops: params.ops * items,
        bytes_per_op: 8,
        elapsed: t0.elapsed(),
    })
}

/// Raw `fork` + `_exit(0)` + `waitpid`.
fn fork_waitpid(params: &Params) -> RunResult {
    sample(params, || {
        // SAFETY: the child only calls `_exit`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: our child; a valid out-pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
            }
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(format!("the child ended with status {status:#x}"))
        }
    })
}

/// `process::spawn(|| 0u8)` + `join()`.
fn shmkit_process(params: &Params) -> RunResult {
    sample(params, || {
        // The child only returns: it takes no lock another thread of this
        // process could hold.
        let child = process::Builder::new()
            .allow_threads(true)
            .spawn(|| 0u8)
            .map_err(|e| e.to_string())?;
        match child.join() {
            Ok(0) => Ok(()),
            other => Err(format!("the child gave {other:?}")),
        }
    })
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// The map's loop in one process.
fn single_process(params: &Params) -> RunResult {
    items_rate(params, |n| {
        let out: Vec<u64> = (0..n).map(|x| square(black_box(x))).collect();
        black_box(out);
        Ok(())
    })
}

/// A 2-worker pool's `map` (default chunking, or `chunk`).
fn shmkit_pool(params: &Params, chunk: Option<usize>) -> RunResult {
    // The workers run only `square` and the pool's loop, which take no
    // lock another thread of this process could hold.
    let pool = Pool::builder()
        .processes(POOL_WORKERS)
        .process(process::Builder::new().allow_threads(true))
        .build()
        .map_err(|e| e.to_string())?;
    let r = items_rate(params, |n| {
        let results = pool
            .map_async(square, 0..n, chunk)
            .map_err(|e| e.to_string())?
            .get();
        let last = n.saturating_sub(1);
        match results.last() {
            Some(Ok(v)) if results.len() == n as usize && *v == last * last => {
                black_box(results);
                Ok(())
            }
            other => Err(format!("the map gave {other:?}")),
        }
    });
    pool.close();
    pool.join().map_err(|e| e.to_string())?;
    r
}
