//! The stamped SPSC ring (`StampedSpsc<T>`, kind `stamped ring`): its
//! control block (positions, both role slots) and its stamped slots, laid
//! out and attached by the core object as in a segment.

use std::fmt::Debug;

use bytemuck::Pod;
use shmkit_core::queue::stamped::{StampedConsumer, StampedProducer, StampedRing, StampedSpsc};
use shmkit_core::wait::Spin;

use super::{attach, object_region, Fifo};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input. Setup bits 1..4 choose the capacity (1 to 32), bits
/// 4..6 the element type.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let capacity = 1usize << ((setup >> 1) % 6);
    match (setup >> 4) % 4 {
        0 => run_typed::<u8>(setup, capacity, &mut input),
        1 => run_typed::<u32>(setup, capacity, &mut input),
        2 => run_typed::<u64>(setup, capacity, &mut input),
        // Three bytes, aligned to one: payloads that straddle words.
        _ => run_typed::<[u8; 3]>(setup, capacity, &mut input),
    }
}

fn run_typed<T: Pod + PartialEq + Debug>(setup: u8, capacity: usize, input: &mut Input<'_>) {
    let region =
        object_region::<StampedSpsc<T>>(&capacity, setup, input).expect("a power of two up to 32");
    let ring: StampedRing<'_, T> = attach::<StampedSpsc<T>>(&region, &capacity);
    let mut fifo: Fifo<T> = Fifo::new(setup);
    let mut clock = Clock::new();
    let mut tx: Option<StampedProducer<'_, T>> = None;
    let mut rx: Option<StampedConsumer<'_, T>> = None;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 11 {
            0 if tx.is_none() => tx = ring.producer().ok(),
            1 if rx.is_none() => rx = ring.consumer().ok(),
            2 => tx = None,
            3 => rx = None,
            4 => {
                let v = input.pod::<T>();
                if let Some(p) = tx.as_mut() {
                    if p.try_push(v).is_ok() {
                        fifo.sent(v);
                    }
                }
            }
            5 => {
                let (v, t) = (input.pod::<T>(), clock.timeout(input));
                if let Some(p) = tx.as_mut() {
                    let r =
                        Clock::timed(t, "StampedProducer::push_timeout", || p.push_timeout(v, t));
                    if r.is_ok() {
                        fifo.sent(v);
                    }
                }
            }
            6 => {
                if let Some(c) = rx.as_mut() {
                    if let Ok(v) = c.try_pop() {
                        fifo.received(&v);
                    }
                }
            }
            7 => {
                let t = clock.timeout(input);
                if let Some(c) = rx.as_mut() {
                    let r = Clock::timed(t, "StampedConsumer::pop_timeout", || c.pop_timeout(t));
                    if let Ok(v) = r {
                        fifo.received(&v);
                    }
                }
            }
            8 => {
                // Empty `try_pop`s in a row reach the producer liveness
                // check.
                if let Some(c) = rx.as_mut() {
                    for _ in 0..1024 {
                        if let Ok(v) = c.try_pop() {
                            fifo.received(&v);
                        }
                    }
                }
            }
            9 => {
                let _ = (
                    ring.len(),
                    ring.is_empty(),
                    ring.capacity(),
                    format!("{ring:?}"),
                );
                let ctl = ring.control();
                let _ = (ctl.raw_positions(), ring.stamp_of(u64::from(input.u32())));
                let _ = (ctl.producer_slot().holder(), ctl.consumer_slot().holder());
                let spin = Spin {
                    iterations: u32::from(input.u8()),
                };
                if let Some(p) = tx.as_mut() {
                    p.set_spin(spin);
                }
                if let Some(c) = rx.as_mut() {
                    c.set_spin(spin);
                }
            }
            10 => {
                region.scribble(input);
                fifo.scribbled();
            }
            _ => {}
        }
    }
    drop(rx);
    drop(tx);
}
