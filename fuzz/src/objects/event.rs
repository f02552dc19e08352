//! `Event`: one flag word with a waiters bit.

use std::mem::size_of;

use shmkit_core::sync::Event;
use shmkit_core::wait::Spin;

use super::region_with;
use crate::{Clock, Input, MAX_OPS};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    // SAFETY: an Event is one atomic word.
    let region = unsafe { region_with(size_of::<Event>(), setup, Event::new(), &mut input) };
    // SAFETY: as above; the region is exactly one event.
    let e: &Event = unsafe { region.object(0) };
    let mut clock = Clock::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 => e.set(),
            1 => e.clear(),
            2 => {
                let t = clock.timeout(&mut input);
                let set = Clock::timed(t, "Event::wait_timeout", || e.wait_timeout(t));
                // Returning true means the flag was seen set.
                let _ = set;
            }
            3 => {
                let t = clock.timeout(&mut input);
                let spin = Spin {
                    iterations: u32::from(input.u8()),
                };
                let _ = Clock::timed(t, "Event::wait_spin", || e.wait_spin(spin, Some(t)));
            }
            4 => {
                let _ = (e.is_set(), e.has_waiters(), e.raw_word());
                let _ = format!("{e:?}");
            }
            _ => region.scribble(&mut input),
        }
    }
}
