//! `RwLock<u64>`: the writer lock word, the reader count and the
//! consistency flag.

use std::mem::size_of;

use shmkit_core::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{keep, region_with, Held};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    // SAFETY: an RwLock<u64> is atomics and an UnsafeCell<u64> that is only
    // ever copied atomically.
    let region = unsafe {
        region_with(
            size_of::<RwLock<u64>>(),
            setup,
            RwLock::new(0u64),
            &mut input,
        )
    };
    // SAFETY: as above; the region is exactly one lock, aligned.
    let l: &RwLock<u64> = unsafe { region.object(0) };
    let mut clock = Clock::new();
    let mut readers: Held<RwLockReadGuard<'_, u64>, 4> = Held::new();
    let mut writers: Held<RwLockWriteGuard<'_, u64>, 2> = Held::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 13 {
            0 => keep(&mut readers, l.try_read()),
            1 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "RwLock::read_timeout", || l.read_timeout(t));
                keep(&mut readers, r);
            }
            2 => keep(&mut writers, l.try_write()),
            3 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "RwLock::write_timeout", || l.write_timeout(t));
                keep(&mut writers, r);
            }
            4 => readers.drop_one(input.u8()),
            5 => writers.drop_one(input.u8()),
            6 => {
                if let Some(g) = readers.get_mut(input.u8()) {
                    let _ = g.get();
                }
            }
            7 => {
                let pick = input.u8();
                let v = input.u64();
                if let Some(g) = writers.get_mut(pick) {
                    g.set(v);
                    let _ = g.get();
                }
            }
            8 => {
                if let Some(g) = writers.get_mut(input.u8()) {
                    g.mark_consistent();
                }
            }
            9 => {
                let _ = l.snapshot();
                let _ = format!("{l:?}");
            }
            10 => keep(&mut writers, l.try_recover()),
            11 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "RwLock::recover_timeout", || l.recover_timeout(t));
                keep(&mut writers, r);
            }
            _ => region.scribble(&mut input),
        }
    }
    drop(writers);
    drop(readers);
}
