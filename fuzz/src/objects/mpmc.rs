//! The MPMC `Queue<T>`: positions, stamps, producer intents and both role
//! registries, laid out as the posix crate lays them out in a segment.

use std::fmt::Debug;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::slice;

use bytemuck::Pod;
use shmkit_core::primitive::AtomicU64;
use shmkit_core::queue::mpmc::{Queue, QueueConsumer, QueueControl, QueueProducer};
use shmkit_core::queue::roles::RoleSlot;
use shmkit_core::wait::Spin;

use super::{region_with, Fifo, HONEST};
use crate::{Clock, Input, Region, MAX_OPS};

/// Runs one input. Setup bits 1..5 choose the capacity (1 to 16), the
/// next byte the registry sizes (1 to 4 each) and the element type.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let shape = input.u8();
    let capacity = 1 + usize::from((setup >> 1) % 16);
    let producers = 1 + usize::from(shape % 4);
    let consumers = 1 + usize::from((shape >> 2) % 4);
    let args = (setup, capacity, producers, consumers);
    match (shape >> 4) % 3 {
        0 => run_typed::<u8>(args, &mut input),
        1 => run_typed::<u64>(args, &mut input),
        _ => run_typed::<[u8; 3]>(args, &mut input),
    }
}

/// Byte offsets of the parts (as `shmkit_posix::queue`'s layout).
struct Layout {
    producer_roles: usize,
    intents: usize,
    consumer_roles: usize,
    stamps: usize,
    data: usize,
    total: usize,
}

impl Layout {
    fn of<T>(capacity: usize, producers: usize, consumers: usize) -> Layout {
        let role = size_of::<RoleSlot>();
        let producer_roles = size_of::<QueueControl>();
        let intents = producer_roles + role * producers;
        let consumer_roles = intents + 8 * producers;
        let stamps = (consumer_roles + role * consumers).next_multiple_of(8);
        let data = (stamps + 8 * capacity).next_multiple_of(align_of::<T>());
        Layout {
            producer_roles,
            intents,
            consumer_roles,
            stamps,
            data,
            total: data + capacity * size_of::<T>(),
        }
    }
}

/// The queue's parts inside `region`.
///
/// # Safety
/// `region` is `l.total` bytes.
#[allow(clippy::type_complexity)]
unsafe fn parts<'a, T>(
    region: &'a Region,
    l: &Layout,
    capacity: usize,
    producers: usize,
    consumers: usize,
) -> (
    &'a QueueControl,
    &'a [RoleSlot],
    &'a [AtomicU64],
    &'a [RoleSlot],
    &'a [AtomicU64],
    NonNull<T>,
) {
    let p = region.base().as_ptr();
    // SAFETY: every part lies inside the region at an offset aligned for
    // its type (control at 0, role slots 4-aligned, intents and stamps
    // 8-aligned, data aligned for T); all parts but the data are atomics,
    // valid for any bytes; the data is only accessed atomically.
    unsafe {
        (
            region.object(0),
            slice::from_raw_parts(p.add(l.producer_roles).cast(), producers),
            slice::from_raw_parts(p.add(l.intents).cast(), producers),
            slice::from_raw_parts(p.add(l.consumer_roles).cast(), consumers),
            slice::from_raw_parts(p.add(l.stamps).cast(), capacity),
            NonNull::new_unchecked(p.add(l.data)).cast(),
        )
    }
}

fn run_typed<T: Pod + PartialEq + Debug>(
    (setup, capacity, producers, consumers): (u8, usize, usize, usize),
    input: &mut Input<'_>,
) {
    let l = Layout::of::<T>(capacity, producers, consumers);
    // SAFETY: a QueueControl is atomics only; the rest of the region is
    // atomics and Pod slots only copied atomically.
    let region = unsafe { region_with(l.total, setup, QueueControl::new(), input) };
    // SAFETY: the region is l.total bytes.
    let (ctl, p_roles, intents, c_roles, stamps, data) =
        unsafe { parts::<T>(&region, &l, capacity, producers, consumers) };
    if setup & HONEST != 0 {
        Queue::<T>::init(stamps, intents);
    }
    // SAFETY: `capacity` slots of T at `data` stay allocated while
    // `region` lives and are only accessed atomically.
    let queue = unsafe { Queue::from_raw(ctl, p_roles, intents, c_roles, stamps, data) }
        .expect("non-empty parts");
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
                let _ = p_roles.iter().chain(c_roles).map(RoleSlot::holder).count();
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
