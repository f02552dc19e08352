//! The MPMC `Queue<T>`: positions, slot stamps and both role registries,
//! laid out and attached by the core object ([`Mpmc`]) as in a segment.

use std::fmt::Debug;

use bytemuck::Pod;
use shmkit_core::queue::mpmc::{Mpmc, Queue, QueueConsumer, QueueParams, QueueProducer};
use shmkit_core::wait::Spin;

use super::{attach, object_region, Fifo};
use crate::{Clock, Input, MAX_OPS};

/// Runs one input. Setup bits 1..3 choose the capacity (1 to 16, a power
/// of two), the next byte the registry sizes (1 to 4 each) and the element type.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let shape = input.u8();
    let capacity = 1 << ((setup >> 1) % 5);
    let producers = 1 + usize::from(shape % 4);
    let consumers = 1 + usize::from((shape >> 2) % 4);
    let args = (setup, capacity, producers, consumers);
    match (shape >> 4) % 3 {
        0 => run_typed::<u8>(args, &mut input),
        1 => run_typed::<u64>(args, &mut input),
        _ => run_typed::<[u8; 3]>(args, &mut input),
    }
}

fn run_typed<T: Pod + PartialEq + Debug>(
    (setup, capacity, producers, consumers): (u8, usize, usize, usize),
    input: &mut Input<'_>,
) {
    let params = QueueParams::new(capacity).with_registry(producers, consumers);
    let region = object_region::<Mpmc<T>>(&params, setup, input).expect("valid queue parameters");
    let queue: Queue<'_, T> = attach::<Mpmc<T>>(&region, &params);
    let mut fifo: Fifo<T> = Fifo::new(setup);
    let mut clock = Clock::new();
    let mut txs: Vec<QueueProducer<'_, T>> = Vec::new();
    let mut rxs: Vec<QueueConsumer<'_, T>> = Vec::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 12 {
            0 => {
                if let Ok(p) = queue.producer() {
                    txs.push(p);
                }
            }
            1 => {
                if let Ok(c) = queue.consumer() {
                    rxs.push(c);
                }
            }
            2 => {
                let i = input.u8();
                if !txs.is_empty() {
                    txs.remove(usize::from(i) % txs.len());
                }
            }
            3 => {
                let i = input.u8();
                if !rxs.is_empty() {
                    rxs.remove(usize::from(i) % rxs.len());
                }
            }
            4 => {
                let (i, v) = (input.u8(), input.pod::<T>());
                if let Some(p) = pick(&mut txs, i) {
                    if p.try_push(v).is_ok() {
                        fifo.sent(v);
                    }
                }
            }
            5 => {
                let (i, v, t) = (input.u8(), input.pod::<T>(), clock.timeout(input));
                if let Some(p) = pick(&mut txs, i) {
                    let r = Clock::timed(t, "QueueProducer::push_timeout", || p.push_timeout(v, t));
                    if r.is_ok() {
                        fifo.sent(v);
                    }
                }
            }
            6 => {
                if let Some(c) = pick(&mut rxs, input.u8()) {
                    if let Ok(v) = c.try_pop() {
                        fifo.received(&v);
                    }
                }
            }
            7 => {
                let (i, t) = (input.u8(), clock.timeout(input));
                if let Some(c) = pick(&mut rxs, i) {
                    let r = Clock::timed(t, "QueueConsumer::pop_timeout", || c.pop_timeout(t));
                    if let Ok(v) = r {
                        fifo.received(&v);
                    }
                }
            }
            8 => {
                // Empty `try_pop`s in a row: every 4096th asks about
                // peers' liveness and may skip positions of dead claimers.
                if let Some(c) = pick(&mut rxs, input.u8()) {
                    for _ in 0..1024 {
                        if let Ok(v) = c.try_pop() {
                            fifo.received(&v);
                        }
                    }
                }
            }
            9 => {
                let _ = (
                    queue.len(),
                    queue.is_empty(),
                    queue.is_full(),
                    queue.capacity(),
                );
                let _ = queue.control_positions();
                let spin = Spin {
                    iterations: u32::from(input.u8()),
                };
                txs.iter_mut().for_each(|p| p.set_spin(spin));
                rxs.iter_mut().for_each(|c| c.set_spin(spin));
            }
            _ => {
                region.scribble(input);
                fifo.scribbled();
            }
        }
    }
    drop(rxs);
    drop(txs);
}

fn pick<H>(handles: &mut [H], i: u8) -> Option<&mut H> {
    if handles.is_empty() {
        return None;
    }
    let n = handles.len();
    handles.get_mut(usize::from(i) % n)
}
