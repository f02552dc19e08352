//! `ReentrantMutex<u64>`: the raw lock plus a recursion count and a
//! consistency flag that peers may rewrite while it is held.

use std::mem::size_of;

use shmkit_core::sync::{ReentrantMutex, ReentrantMutexGuard};

use super::{keep, region_with, Held};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let len = size_of::<ReentrantMutex<u64>>();
    // SAFETY: a ReentrantMutex<u64> is atomics and an UnsafeCell<u64> that
    // is only ever copied atomically.
    let region = unsafe { region_with(len, setup, ReentrantMutex::new(0u64), &mut input) };
    // SAFETY: as above; the region is exactly one lock, aligned.
    let m: &ReentrantMutex<u64> = unsafe { region.object(0) };
    let mut clock = Clock::new();
    let mut held: Held<ReentrantMutexGuard<'_, u64>, 6> = Held::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 10 {
            0 => keep(&mut held, m.try_lock()),
            1 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "ReentrantMutex::lock_timeout", || m.lock_timeout(t));
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
                let v = input.u64();
                if let Some(g) = held.get_mut(pick) {
                    g.set(v);
                    let _ = g.get();
                }
            }
            5 => {
                let _ = (m.depth(), m.snapshot());
                let _ = format!("{m:?}");
            }
            6 => keep(&mut held, m.try_recover()),
            7 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "ReentrantMutex::recover_timeout", || {
                    m.recover_timeout(t)
                });
                keep(&mut held, r);
            }
            _ => region.scribble(&mut input),
        }
    }
    drop(held);
}
