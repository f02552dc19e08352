//! `Condition<u64>`: Python's `Condition()`, one object holding its lock
//! (a `Mutex<u64>`) and its condition variable.

use std::mem::size_of;

use shmkit_core::sync::{Condition, MutexGuard};

use super::{keep, region_with, Held};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let honest = Condition::new(u64::from(setup >> 1));
    // SAFETY: a Condition<u64> is a Mutex<u64> (atomics and an
    // UnsafeCell<u64> only copied atomically) and a Condvar (atomics).
    let region = unsafe { region_with(size_of::<Condition<u64>>(), setup, honest, &mut input) };
    // SAFETY: as above; the region is exactly one Condition, aligned.
    let c: &Condition<u64> = unsafe { region.object(0) };
    let mut clock = Clock::new();
    let mut held: Held<MutexGuard<'_, u64>, 2> = Held::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 11 {
            0 => keep(&mut held, c.try_lock()),
            1 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "Condition::lock_timeout", || c.lock_timeout(t));
                keep(&mut held, r);
            }
            2 => held.drop_one(input.u8()),
            3 => {
                if let Some(g) = held.get_mut(input.u8()) {
                    g.mark_consistent();
                    let v = g.get();
                    g.set(v.wrapping_add(1));
                }
            }
            4 => {
                let pick = input.u8();
                let t = clock.timeout(&mut input);
                if let Some(g) = held.take(pick) {
                    let r = Clock::timed(t, "Condition::wait_timeout", || c.wait_timeout(g, t));
                    keep(&mut held, r.map(|(g, _timed_out)| g));
                }
            }
            5 => {
                let pick = input.u8();
                let t = clock.timeout(&mut input);
                let stop = input.u64();
                if let Some(g) = held.take(pick) {
                    let r = Clock::timed(t, "Condition::wait_timeout_while", || {
                        c.wait_timeout_while(g, t, |v| *v != stop)
                    });
                    keep(&mut held, r.map(|(g, _)| g));
                }
            }
            6 => c.notify_one(),
            7 => c.notify_all(),
            8 => {
                let _ = (
                    c.condvar().sleepers(),
                    c.condvar().sequence(),
                    c.raw().snapshot(),
                );
                let _ = format!("{c:?}");
            }
            9 => keep(&mut held, c.mutex().try_recover()),
            _ => region.scribble(&mut input),
        }
    }
    drop(held);
}
