//! `Barrier`: the state word (count, generation, broken), the party count
//! and the table of tracked parties.

use std::mem::size_of;

use shmkit_core::sync::Barrier;

use super::region_with;
use crate::{Clock, Input, MAX_OPS};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    // 1 to 128 parties.
    let honest = Barrier::new(1 + u32::from(setup >> 1)).expect("1 to 128 parties");
    // SAFETY: a Barrier is atomic words only.
    let region = unsafe { region_with(size_of::<Barrier>(), setup, honest, &mut input) };
    // SAFETY: as above; the region is exactly one barrier, aligned.
    let b: &Barrier = unsafe { region.object(0) };
    let mut clock = Clock::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 => {
                let t = clock.timeout(&mut input);
                let r = Clock::timed(t, "Barrier::wait_timeout", || b.wait_timeout(t));
                if let Ok(w) = r {
                    let _ = w.is_leader();
                }
            }
            1 => b.abort(),
            2 => b.reset(),
            3 => {
                let _ = b.register();
            }
            4 => b.unregister(),
            5 => {
                let _ = (b.parties(), b.n_waiting(), b.is_broken(), b.generation());
                let _ = format!("{b:?}");
            }
            6 => {
                // Asks the OS about every tracked id (a probe, never a
                // signal: see the crate docs).
                let _ = b.tracked_parties().count();
            }
            _ => region.scribble(&mut input),
        }
    }
}
