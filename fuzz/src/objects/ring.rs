//! The SPSC `Ring<T>`: its indices, wait points and role slots, and its
//! slots, for several element sizes and capacities.

use std::fmt::Debug;
use std::mem::size_of;
use std::ptr::NonNull;

use bytemuck::Pod;
use shmkit_core::queue::ring::{Consumer, Producer, Ring, RingControl};
use shmkit_core::wait::Spin;

use super::{region_with, Fifo};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input. Setup bits 1..4 choose the capacity (1 to 32), bits
/// 4..6 the element type.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let capacity = 1u32 << ((setup >> 1) % 6);
    match (setup >> 4) % 4 {
        0 => run_typed::<u8>(setup, capacity, &mut input),
        1 => run_typed::<u32>(setup, capacity, &mut input),
        2 => run_typed::<u64>(setup, capacity, &mut input),
        // Three bytes, aligned to one: slots that straddle words.
        _ => run_typed::<[u8; 3]>(setup, capacity, &mut input),
    }
}

fn run_typed<T: Pod + PartialEq + Debug>(setup: u8, capacity: u32, input: &mut Input<'_>) {
    const CONTROL: usize = size_of::<RingControl>();
    let len = CONTROL + capacity as usize * size_of::<T>();
    // SAFETY: a RingControl is atomics only; the slots are Pod bytes only
    // ever copied atomically.
    let region = unsafe { region_with(len, setup, RingControl::new(), input) };
    // SAFETY: the control block is at offset 0, aligned.
    let ctl: &RingControl = unsafe { region.object(0) };
    // SAFETY: CONTROL (640) is a multiple of every alignment up to 128, and
    // `capacity` slots of T follow it inside the region; they stay
    // allocated while `region` lives and are only accessed atomically.
    let ring = unsafe {
        let data = NonNull::new_unchecked(region.base().as_ptr().add(CONTROL)).cast::<T>();
        Ring::from_raw(ctl, data, capacity)
    }
    .expect("a power of two up to 32");
    let mut fifo: Fifo<T> = Fifo::new(setup);
    let mut clock = Clock::new();
    let mut tx: Option<Producer<'_, T>> = None;
    let mut rx: Option<Consumer<'_, T>> = None;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 15;
        match op {
            0 if tx.is_none() => tx = ring.producer().ok(),
            1 if rx.is_none() => rx = ring.consumer().ok(),
            2 => tx = None,
            3 => rx = None,
            _ => {}
        }
        if let Some(p) = tx.as_mut() {
            match op {
                4 => {
                    let v = input.pod::<T>();
                    if p.try_push(v).is_ok() {
                        fifo.sent(v);
                    }
                }
                5 => {
                    let v = input.pod::<T>();
                    let t = clock.timeout(input);
                    if Clock::timed(t, "Producer::push_timeout", || p.push_timeout(v, t)).is_ok() {
                        fifo.sent(v);
                    }
                }
                6 => {
                    let n = usize::from(input.u8() % 40);
                    let values: Vec<T> = (0..n).map(|_| input.pod::<T>()).collect();
                    if let Ok(k) = p.push_slice(&values) {
                        assert!(k <= n, "push_slice pushed {k} of {n}");
                        values[..k].iter().for_each(|v| fifo.sent(*v));
                    }
                }
                7 => {
                    let n = usize::from(input.u8() % 40);
                    let k = usize::from(input.u8());
                    if let Ok(chunk) = p.write_chunk(n) {
                        let (a, b) = chunk.slices();
                        assert_eq!(a.len() + b.len(), n, "write_chunk handed out another size");
                        let values: Vec<T> = (0..n).map(|_| input.pod::<T>()).collect();
                        let _ = a.write_from(0, &values[..a.len()]);
                        let _ = b.write_from(0, &values[a.len()..]);
                        let _ = (chunk.len(), chunk.is_empty());
                        if k % 4 != 0 {
                            // Commit a prefix; k % 4 == 0 drops the chunk
                            // uncommitted.
                            let k = k.min(n);
                            chunk.commit(k);
                            values[..k].iter().for_each(|v| fifo.sent(*v));
                        }
                    }
                }
                12 => {
                    let _ = (p.slots(), p.is_full(), p.capacity());
                    p.set_spin(Spin {
                        iterations: u32::from(input.u8()),
                    });
                }
                _ => {}
            }
        }
        if let Some(c) = rx.as_mut() {
            match op {
                8 => {
                    if let Ok(v) = c.try_pop() {
                        fifo.received(&v);
                    }
                }
                9 => {
                    let t = clock.timeout(input);
                    if let Ok(v) = Clock::timed(t, "Consumer::pop_timeout", || c.pop_timeout(t)) {
                        fifo.received(&v);
                    }
                }
                10 => {
                    let mut out = vec![T::zeroed(); usize::from(input.u8() % 40)];
                    if let Ok(k) = c.pop_into(&mut out) {
                        assert!(k <= out.len(), "pop_into popped {k} into {}", out.len());
                        out[..k].iter().for_each(|v| fifo.received(v));
                    }
                }
                11 => {
                    let n = usize::from(input.u8() % 40);
                    let k = usize::from(input.u8());
                    if let Ok(chunk) = c.read_chunk(n) {
                        let (a, b) = chunk.slices();
                        assert_eq!(a.len() + b.len(), n, "read_chunk handed out another size");
                        let mut got = vec![T::zeroed(); n];
                        let _ = a.read_into(0, &mut got[..a.len()]);
                        let _ = b.read_into(0, &mut got[a.len()..]);
                        if k % 4 != 0 {
                            let k = k.min(n);
                            chunk.commit(k);
                            got[..k].iter().for_each(|v| fifo.received(v));
                        }
                    }
                }
                12 => {
                    let _ = (c.slots(), c.is_empty(), c.capacity());
                    c.set_spin(Spin {
                        iterations: u32::from(input.u8()),
                    });
                }
                _ => {}
            }
        }
        match op {
            12 => {
                let _ = (ring.capacity(), ctl.producer_slot().holder());
                let _ = (ctl.consumer_slot().holder(), ctl.raw_indices());
            }
            13 | 14 => {
                region.scribble(input);
                fifo.scribbled();
            }
            _ => {}
        }
    }
    drop(rx);
    drop(tx);
}
