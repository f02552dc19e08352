//! Issue 8, item 7 (the errors a Python user expects), the parts in the
//! sync and pipe code:
//! - `Barrier(0)` and a party count above the maximum are refused
//!   (Python's `ValueError`), not silently clamped;
//! - `send_bytes` to a pipe whose receiver is gone fails with
//!   `Disconnected` (Python's `BrokenPipeError`) at once, not only once
//!   the pipe has filled up.

use std::time::Duration;

use shmkit_core::queue::pipe::PipeSendError;
use shmkit_core::sync::barrier::MAX_PARTIES;
use shmkit_core::sync::{Barrier, Event, PartiesError};
use shmkit_posix::pipe::{End, OneWayPipe, Pipe};
use shmkit_posix::sync as psync;
use shmkit_testkit::{fork, Exit};

const NOT_HUNG: Duration = Duration::from_secs(10);

#[test]
fn barrier_party_counts_out_of_range_are_refused() {
    assert_eq!(Barrier::new(0).err(), Some(PartiesError { parties: 0 }));
    assert_eq!(
        Barrier::new(70_000).err(),
        Some(PartiesError { parties: 70_000 })
    );
    assert_eq!(
        Barrier::new(MAX_PARTIES + 1).err(),
        Some(PartiesError {
            parties: MAX_PARTIES + 1
        })
    );
    let msg = Barrier::new(0).err().unwrap().to_string();
    assert!(msg.contains("1 to 65535"), "{msg}");
    // The bounds themselves are fine, and mean what they say.
    assert_eq!(Barrier::new(1).unwrap().parties(), 1);
    assert_eq!(Barrier::new(MAX_PARTIES).unwrap().parties(), MAX_PARTIES);
    let b = psync::Barrier::anonymous(2).unwrap();
    assert_eq!(b.parties(), 2);
}

/// The receiver dropped its end in another process: the next send fails,
/// although the pipe has room.
#[test]
fn sending_to_a_pipe_whose_receiver_left_is_disconnected_at_once() {
    let pipe = OneWayPipe::anonymous(4096).unwrap();
    let mut tx = pipe.view().sender().unwrap();
    // Before anyone receives: messages wait in the pipe.
    tx.send_bytes(b"early").unwrap();
    let receiver = fork(|| {
        let mut rx = pipe.view().receiver().unwrap();
        let mut buf = [0u8; 16];
        match rx.recv_bytes_into(&mut buf) {
            Ok(5) if &buf[..5] == b"early" => 0,
            _ => 2,
        }
        // Dropping `rx` here detaches the receiver.
    });
    assert_eq!(receiver.wait_timeout(NOT_HUNG), Some(Exit::Code(0)));
    assert_eq!(tx.try_send_bytes(b"late"), Err(PipeSendError::Disconnected));
    assert_eq!(tx.send_bytes(b"late"), Err(PipeSendError::Disconnected));
    assert_eq!(
        tx.send_bytes_timeout(b"late", Duration::from_millis(1)),
        Err(PipeSendError::Disconnected)
    );
}

/// The receiver's process was killed (its end never detached): sends fail
/// once a liveness check finds it dead — within `LIVENESS_POLL_EVERY`
/// sends, long before a 1 MiB pipe fills with 8-byte messages.
#[test]
fn sending_to_a_pipe_whose_receiver_died_is_disconnected_soon() {
    let pipe = OneWayPipe::anonymous(1 << 20).unwrap();
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    let mut tx = pipe.view().sender().unwrap();
    let receiver = fork(|| {
        let rx = pipe.view().receiver().unwrap();
        std::mem::forget(rx);
        ready.set();
        loop {
            // SAFETY: pause has no preconditions; we wait for SIGKILL.
            unsafe { libc::pause() };
        }
    });
    assert!(ready.wait_timeout(NOT_HUNG));
    receiver.kill9();
    assert_eq!(receiver.wait(), Exit::Signal(libc::SIGKILL));
    let capacity_in_messages = (1 << 20) / 12;
    let mut sent = 0;
    let err = loop {
        match tx.send_bytes(b"8 bytes!") {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < capacity_in_messages, "never disconnected");
    };
    assert_eq!(err, PipeSendError::Disconnected);
    // The sender checks the receiver's liveness every 4096 sends (the
    // queues' `LIVENESS_POLL_EVERY`).
    assert!(
        sent <= 4096,
        "{sent} sends before the dead receiver was noticed"
    );
    // From then on, at once (the slot is marked gone).
    assert_eq!(tx.try_send_bytes(b"x"), Err(PipeSendError::Disconnected));
}

/// A duplex end whose peer end was dropped: sending fails at once.
#[test]
fn a_duplex_end_whose_peer_left_is_disconnected() {
    let duplex = Pipe::anonymous(256).unwrap();
    let a = duplex.end(End::A).unwrap();
    let b = duplex.end(End::B).unwrap();
    a.send_bytes(b"hi").unwrap();
    drop(b);
    assert_eq!(a.send_bytes(b"bye"), Err(PipeSendError::Disconnected));
}
