//! shmkit's own impls for the lock and signal cases of the benchmark
//! engine. The floors and peers (raw futex, std, pthread, raw_sync) live
//! elsewhere; these are only the shmkit side, registered by [`impls`].
//!
//! | case | impl | what one sample is |
//! |---|---|---|
//! | `lock_uncontended` | `shmkit` | ns per lock+unlock of a robust [`RawMutex`] in a segment, averaged over a batch of [`LOCK_BATCH`] (the same batching as the `std` floor) |
//! | `blocking_rtt` | `shmkit_event` | one round trip: set the peer's Event, wait on ours (default spin budget) |
//! | `blocking_rtt` | `shmkit_event_nospin` | the same with [`Spin::NONE`]: straight to the futex |
//! | `blocking_rtt` | `shmkit_semaphore` | one round trip through two Semaphores (default spin) |
//! | `lock_handoff` | `shmkit` | ns per turn of [`floors::handoff`], the loop the `pthread_pshared` floor runs, with a robust [`RawMutex`] |
//!
//! Every impl runs the *same* protocol and clock as its floor
//! ([`floors::u32_pingpong`], [`floors::handoff`], [`time_batched`]), so the
//! ratios compare locks, not loops. The measuring process is pinned to
//! `params.cpus[0]`, the peer to `params.cpus[1]` (equal entries: same core).

use std::cell::RefCell;
use std::time::Duration;

use shmkit_core::sync::DEFAULT_SPIN;
use shmkit_core::sync::{Event, RawMutex, RawMutexGuard, Semaphore};
use shmkit_core::wait::Spin;
use shmkit_posix::Shared;

use super::floors::{self, LOCK_BATCH};
use super::proc::{pin_index, Scratch};
use super::timing::time_batched;
use super::{Impl, Measurement, Params, RunResult};

/// How long a blocking wait may take before the peer counts as stalled.
const STALL: Duration = Duration::from_secs(10);

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

/// `lock_uncontended`/`shmkit`: one process locks and unlocks a robust
/// mutex in an anonymous segment.
pub fn lock_uncontended(p: &Params) -> RunResult {
    pin_index(&p.cpus, 0).map_err(|e| err("pinning the measuring process", e))?;
    let m = Shared::<RawMutex>::anonymous(()).map_err(|e| err("segment", e))?;
    let samples = time_batched(p, LOCK_BATCH, |_| {
        let g = m.lock().map_err(|e| err("lock", e))?;
        drop(std::hint::black_box(g));
        Ok(())
    })?;
    Ok(Measurement::Latencies(samples))
}

fn event_rtt_with(p: &Params, spin: Spin) -> RunResult {
    let events = [
        Shared::<Event>::anonymous(()).map_err(|e| err("segment", e))?,
        Shared::<Event>::anonymous(()).map_err(|e| err("segment", e))?,
    ];
    floors::u32_pingpong(
        p,
        |d, _| {
            events[d].set();
            Ok(())
        },
        |d, _| {
            if !events[d].wait_spin(spin, Some(STALL)) {
                return Err("shmkit_event: peer stalled".into());
            }
            // Only this side waits on events[d], and the other side sets it
            // again only after our answer: clearing here cannot lose a set.
            events[d].clear();
            Ok(())
        },
    )
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

/// `blocking_rtt`/`shmkit_semaphore`: ping-pong through two Semaphores
/// (default spin budget).
pub fn semaphore_rtt(p: &Params) -> RunResult {
    let sems = [
        Shared::anonymous(Semaphore::new(0)).map_err(|e| err("segment", e))?,
        Shared::anonymous(Semaphore::new(0)).map_err(|e| err("segment", e))?,
    ];
    floors::u32_pingpong(
        p,
        |d, _| sems[d].release().map_err(|e| err("release", e)),
        |d, _| {
            // The ping-pong releases explicitly on the other side.
            sems[d]
                .acquire_spin(DEFAULT_SPIN, Some(STALL))
                .map(shmkit_core::sync::Permit::forget)
                .map_err(|e| err("acquire", e))
        },
    )
}

/// `lock_handoff`/`shmkit`: [`floors::handoff`] with a robust mutex.
pub fn lock_handoff(p: &Params) -> RunResult {
    let m = Shared::<RawMutex>::anonymous(()).map_err(|e| err("segment", e))?;
    let turn = Scratch::new(4096).map_err(|e| err("mmap", e))?;
    // The guard lives here between the floor's lock() and unlock() calls.
    let held: RefCell<Option<RawMutexGuard<'_>>> = RefCell::new(None);
    floors::handoff(
        p,
        turn.atomic_u64(0),
        || {
            let g = m.lock().map_err(|e| err("lock", e))?;
            *held.borrow_mut() = Some(g);
            Ok(())
        },
        || {
            held.borrow_mut()
                .take()
                .map(drop)
                .ok_or_else(|| "unlock without lock".to_string())
        },
    )
}
