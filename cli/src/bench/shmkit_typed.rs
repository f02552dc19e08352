//! Impls of `typed_queue`: a small record through shmkit's MPMC queues
//! between two processes (one producer, one consumer), as a `Pod` through
//! the `Pod` queue (the floor) and as a serde value through the
//! byte-message queue.
//!
//! | impl | what |
//! |---|---|
//! | `pod_mpmc` (floor) | [`RecordPod`] (24 bytes) through the MPMC queue (`Mpmc<RecordPod>`, `try_push`/`try_pop`) |
//! | `msg_pod` | the same `Pod` through the byte-message queue's typed handles (`MessageQueue<RecordPod>`: its bytes copied into and out of the slot) |
//! | `msg_serde` | [`Record`] (the same fields, 16 bytes in postcard's format) through `MessageQueue<Serde<Record>>`: encoded into a buffer on the stack, copied into its slot, decoded by postcard from the receiver's buffer |
//!
//! All use [`floors::pxc`] with one producer and one consumer and the
//! floor's waiting loop around the `try_` calls, over queues of
//! [`floors::PXC_CAPACITY`] slots.

use serde::{Deserialize, Serialize};
use shmkit_core::queue::mpmc::{Mpmc, QueueParams};
use shmkit_core::queue::{TryRecvError, TrySendError};
use shmkit_core::{Pod, Zeroable};
use shmkit_posix::message::{Message, Serde};
use shmkit_posix::msg_queue::{MessageQueue, MessageRecvError, MessageSendError};

use super::floors;
use super::shmkit_queues::ObjectSegment;
use super::{Impl, Params, RunResult};

/// `typed_queue`'s impls, as `(case, impl)`.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    let i = |name, run| Impl { name, run };
    vec![
        ("typed_queue", i("pod_mpmc", pod_mpmc)),
        ("typed_queue", i("msg_pod", msg_pod)),
        ("typed_queue", i("msg_serde", msg_serde)),
    ]
}

/// The record as a `Pod`: 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[bytemuck(crate = "shmkit_posix::bytemuck")]
#[repr(C)]
pub struct RecordPod {
    seq: u64,
    value: f64,
    sensor: u32,
    scale: f32,
}

/// The record as a serde type: the same fields; postcard encodes one of
/// the benchmark's in 16 bytes (a 3-byte varint `seq`, 8, 1, 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    seq: u64,
    value: f64,
    sensor: u32,
    scale: f32,
}

/// The longest encoding the byte-message queues take: room for either.
const MAX_LEN: usize = 32;

fn one_by_one(p: &Params) -> Params {
    Params {
        producers: 1,
        consumers: 1,
        ..p.clone()
    }
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// `typed_queue` / `pod_mpmc`: the floor.
fn pod_mpmc(p: &Params) -> RunResult {
    let p = one_by_one(p);
    let q = ObjectSegment::<Mpmc<RecordPod>>::anonymous(
        QueueParams::new(floors::PXC_CAPACITY).with_registry(1, 1),
    )?;
    floors::pxc(
        &p,
        |start, per| {
            let Ok(mut tx) = q.view().producer() else {
                return false;
            };
            start();
            (0..per).all(|k| {
                let r = RecordPod {
                    seq: k,
                    value: k as f64 * 0.5,
                    sensor: (k % 16) as u32,
                    scale: 1.5,
                };
                let mut failed = false;
                floors::spin_yield_until("pod_mpmc producer", || match tx.try_push(r) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => false,
                    Err(_) => {
                        failed = true;
                        true
                    }
                })
                .is_ok()
                    && !failed
            })
        },
        |start| {
            let Ok(mut rx) = q.view().consumer() else {
                return false;
            };
            start();
            let mut sum = 0u64;
            loop {
                let mut end = None;
                if floors::spin_yield_until("pod_mpmc consumer", || match rx.try_pop() {
                    Ok(r) => {
                        sum = sum.wrapping_add(r.seq);
                        true
                    }
                    Err(TryRecvError::Empty) => false,
                    Err(TryRecvError::Disconnected) => {
                        end = Some(true);
                        true
                    }
                    Err(_) => {
                        end = Some(false);
                        true
                    }
                })
                .is_err()
                {
                    return false;
                }
                if let Some(ok) = end {
                    std::hint::black_box(sum);
                    return ok;
                }
            }
        },
        || Ok(()),
    )
}

/// A [`floors::pxc`] run of `M`s through a `MessageQueue<M>`.
fn msg_run<M: Message + 'static>(
    p: &Params,
    what: &'static str,
    make: impl Fn(u64) -> M,
    seq: impl Fn(&M) -> u64,
) -> RunResult {
    let p = one_by_one(p);
    let q = MessageQueue::<M>::anonymous(
        shmkit_core::queue::msg::MsgParams::new(floors::PXC_CAPACITY, MAX_LEN).with_registry(1, 1),
    )
    .map_err(err("queue"))?;
    floors::pxc(
        &p,
        |start, per| {
            let Ok(mut tx) = q.sender() else {
                return false;
            };
            start();
            (0..per).all(|k| {
                let m = make(k);
                let mut failed = false;
                floors::spin_yield_until(what, || match tx.try_send(&m) {
                    Ok(()) => true,
                    Err(MessageSendError::Full) => false,
                    Err(_) => {
                        failed = true;
                        true
                    }
                })
                .is_ok()
                    && !failed
            })
        },
        |start| {
            let Ok(mut rx) = q.receiver() else {
                return false;
            };
            start();
            let mut sum = 0u64;
            loop {
                let mut end = None;
                if floors::spin_yield_until(what, || match rx.try_recv() {
                    Ok(m) => {
                        sum = sum.wrapping_add(seq(&m));
                        true
                    }
                    Err(MessageRecvError::Empty) => false,
                    Err(MessageRecvError::Disconnected) => {
                        end = Some(true);
                        true
                    }
                    Err(_) => {
                        end = Some(false);
                        true
                    }
                })
                .is_err()
                {
                    return false;
                }
                if let Some(ok) = end {
                    std::hint::black_box(sum);
                    return ok;
                }
            }
        },
        || Ok(()),
    )
}

/// `typed_queue` / `msg_pod`.
fn msg_pod(p: &Params) -> RunResult {
    msg_run(
        p,
        "msg_pod",
        |k| RecordPod {
            seq: k,
            value: k as f64 * 0.5,
            sensor: (k % 16) as u32,
            scale: 1.5,
        },
        |r| r.seq,
    )
}

/// `typed_queue` / `msg_serde`.
fn msg_serde(p: &Params) -> RunResult {
    msg_run(
        p,
        "msg_serde",
        |k| {
            Serde(Record {
                seq: k,
                value: k as f64 * 0.5,
                sensor: (k % 16) as u32,
                scale: 1.5,
            })
        },
        |r| r.0.seq,
    )
}
