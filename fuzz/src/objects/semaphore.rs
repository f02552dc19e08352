//! `Semaphore`: the count, the bound and the sleeper hint.

use std::mem::size_of;

use shmkit_core::sync::{Permit, Semaphore};
use shmkit_core::wait::Spin;

use super::{keep, region_with, Held};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let honest = Semaphore::with_bound(u32::from(setup >> 1) & 7, u32::from(setup >> 4));
    // SAFETY: a Semaphore is three atomic words.
    let region = unsafe { region_with(size_of::<Semaphore>(), setup, honest, &mut input) };
    // SAFETY: as above; the region is exactly one semaphore, aligned.
    let s: &Semaphore = unsafe { region.object(0) };
    let mut clock = Clock::new();
    let mut permits: Held<Permit<'_>, 4> = Held::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 => {
                if let Some(p) = s.try_acquire() {
                    permits.push(p);
                }
            }
            1 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "Semaphore::acquire_timeout", || s.acquire_timeout(t));
                keep(&mut permits, r);
            }
            2 => {
                let t = clock.timeout(&mut input);
                let spin = Spin {
                    iterations: u32::from(input.u8()),
                };
                let r = Clock::timed(t, "Semaphore::acquire_spin", || {
                    s.acquire_spin(spin, Some(t))
                });
                keep(&mut permits, r);
            }
            3 => {
                let _ = s.release();
            }
            4 => {
                let _ = (s.available(), s.bound(), s.sleepers());
                let _ = format!("{s:?}");
            }
            5 => permits.drop_one(input.u8()),
            6 => {
                if let Some(p) = permits.take(input.u8()) {
                    p.forget();
                }
            }
            _ => region.scribble(&mut input),
        }
    }
    // Permits release on drop, before the region they borrow goes.
    drop(permits);
}
