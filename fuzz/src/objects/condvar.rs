//! `Condvar` and the `Mutex<u64>` it waits with, side by side as a peer
//! would place them.

use std::mem::size_of;

use shmkit_core::sync::{Condvar, Mutex, MutexGuard};

use super::{keep, region_with, Held};
use crate::{Clock, Input, MAX_OPS};

/// The lock and the condition, as one shared struct.
#[repr(C)]
struct Pair {
    lock: Mutex<u64>,
    cond: Condvar,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let honest = Pair {
        lock: Mutex::new(0),
        cond: Condvar::new(),
    };
    // SAFETY: both fields are atomics (and an UnsafeCell<u64> only copied
    // atomically).
    let region = unsafe { region_with(size_of::<Pair>(), setup, honest, &mut input) };
    // SAFETY: as above; the region is exactly one Pair, aligned.
    let pair: &Pair = unsafe { region.object(0) };
    let (m, cv) = (&pair.lock, &pair.cond);
    let mut clock = Clock::new();
    let mut held: Held<MutexGuard<'_, u64>, 3> = Held::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 10 {
            0 => keep(&mut held, m.try_lock()),
            1 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "Mutex::lock_timeout", || m.lock_timeout(t));
                keep(&mut held, r);
            }
            2 => held.drop_one(input.u8()),
            3 => {
                if let Some(g) = held.get_mut(input.u8()) {
                    g.mark_consistent();
                }
            }
            4 => {
                let pick = input.u8();
                let t = clock.timeout(&mut input);
                if let Some(g) = held.take(pick) {
                    let r = Clock::timed(t, "Condvar::wait_timeout", || cv.wait_timeout(g, t));
                    match r {
                        Ok((g, _timed_out)) => held.push(g),
                        Err(e) => keep(&mut held, Err(e)),
                    }
                }
            }
            5 => {
                let pick = input.u8();
                let t = clock.timeout(&mut input);
                let stop = input.u64();
                if let Some(g) = held.take(pick) {
                    let r = Clock::timed(t, "Condvar::wait_timeout_while", || {
                        cv.wait_timeout_while(g, t, |v| *v != stop)
                    });
                    match r {
                        Ok((g, _)) => held.push(g),
                        Err(e) => keep(&mut held, Err(e)),
                    }
                }
            }
            6 => cv.notify_one(),
            7 => cv.notify_all(),
            8 => {
                let _ = (cv.sleepers(), cv.sequence(), m.raw().snapshot());
                let _ = format!("{cv:?}");
            }
            _ => region.scribble(&mut input),
        }
    }
    drop(held);
}
