//! Hostile bytes left in a queue's shared indices *before* a handle
//! attaches: the handle must report `Corrupt`, never panic (debug-build
//! overflow) and never write as if there were room.
#![cfg(not(loom))]

use std::ptr::NonNull;

use shmkit_core::queue::pipe::{Pipe, PipeSendError};
use shmkit_core::queue::ring::{Ring, RingControl};
use shmkit_core::queue::TrySendError;

/// A shared `head` that is ahead of `tail` (so `tail - head`, mod 2^32,
/// exceeds the capacity) when the producer attaches: its cached head
/// must not be trusted on the fast path.
#[test]
fn ring_producer_attached_over_garbage_head_reports_corrupt() {
    let ctl = RingControl::new();
    let mut slots = [0u32; 4];
    // SAFETY: `slots` outlives the ring and is only used through it.
    let ring = unsafe { Ring::from_raw(&ctl, NonNull::from(&mut slots).cast(), 4) }.unwrap();
    let (head, tail) = ctl.raw_indices();
    head.store(100, std::sync::atomic::Ordering::Relaxed);
    let mut tx = ring.producer().unwrap();
    assert!(matches!(tx.try_push(7), Err(TrySendError::Corrupt(7))));
    assert!(matches!(
        tx.push_slice(&[1, 2]),
        Err(TrySendError::Corrupt(()))
    ));
    assert!(matches!(tx.write_chunk(1), Err(TrySendError::Corrupt(()))));
    assert_eq!(
        tail.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing published"
    );
}

/// The same through the Pipe's sender (a ring producer of bytes).
#[test]
fn pipe_sender_attached_over_garbage_head_reports_corrupt() {
    let ctl = RingControl::new();
    let mut bytes = [0u8; 16];
    // SAFETY: `bytes` outlives the pipe and is only used through it.
    let pipe = unsafe { Pipe::from_raw(&ctl, NonNull::from(&mut bytes).cast(), 16) }.unwrap();
    ctl.raw_indices()
        .0
        .store(100, std::sync::atomic::Ordering::Relaxed);
    let mut tx = pipe.sender().unwrap();
    assert_eq!(tx.try_send_bytes(b"hi"), Err(PipeSendError::Corrupt));
}
