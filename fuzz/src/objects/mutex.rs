//! `RawMutex` and `Mutex<u64>`: lock words, owner records and the data
//! behind them.

use std::mem::size_of;

use shmkit_core::sync::{Mutex, MutexGuard, RawMutexGuard};
use shmkit_core::wait::Spin;

use super::{keep, region_with, Held};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    // SAFETY: a Mutex<u64> is a RawMutex (atomics only) and an
    // UnsafeCell<u64> that is only ever copied atomically.
    let region =
        unsafe { region_with(size_of::<Mutex<u64>>(), setup, Mutex::new(0u64), &mut input) };
    // SAFETY: as above; the region is exactly one Mutex<u64>, aligned.
    let m: &Mutex<u64> = unsafe { region.object(0) };
    let mut clock = Clock::new();
    let mut held: Held<MutexGuard<'_, u64>, 4> = Held::new();
    let mut raw_held: Held<RawMutexGuard<'_>, 2> = Held::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 14 {
            0 => keep(&mut held, m.try_lock()),
            1 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "Mutex::lock_timeout", || m.lock_timeout(t));
                keep(&mut held, r);
            }
            2 => {
                let t = clock.timeout(&mut input);
                let spin = Spin {
                    iterations: u32::from(input.u8()),
                };
                let r = Clock::timed(t, "Mutex::lock_spin", || m.lock_spin(spin, Some(t)));
                keep(&mut held, r);
            }
            3 => held.drop_one(input.u8()),
            4 => {
                if let Some(g) = held.get_mut(input.u8()) {
                    g.mark_consistent();
                }
            }
            5 => {
                let pick = input.u8();
                let v = input.u64();
                if let Some(g) = held.get_mut(pick) {
                    g.set(v);
                    let _ = g.get();
                    g.update(|x| *x = x.wrapping_add(1));
                    let _ = (g.is_consistent(), g.owner_died(), g.as_slice().len());
                }
            }
            6 => {
                let raw = m.raw();
                let _ = (raw.is_locked(), raw.is_held_by_current_thread());
                let _ = raw.snapshot();
                let _ = format!("{m:?}");
            }
            7 => keep(&mut raw_held, m.raw().try_lock()),
            8 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "RawMutex::lock_timeout", || m.raw().lock_timeout(t));
                keep(&mut raw_held, r);
            }
            9 => raw_held.drop_one(input.u8()),
            10 => {
                if let Some(g) = raw_held.get_mut(input.u8()) {
                    g.mark_consistent();
                    let _ = (
                        g.is_consistent(),
                        g.raw().is_locked(),
                        g.raw().is_poisoned(),
                    );
                }
            }
            11 => keep(&mut held, m.try_recover()),
            12 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "Mutex::recover_timeout", || m.recover_timeout(t));
                keep(&mut held, r);
            }
            _ => region.scribble(&mut input),
        }
    }
    // Guards drop here, before the region they borrow.
    drop(raw_held);
    drop(held);
}
