//! The typed handles of the byte-message queues (`msg_queue`): owned
//! senders and receivers across real processes, oversized messages and
//! bytes that do not decode as clear errors, and the element type checked
//! on open.

mod common;

use std::time::Duration;

use common::CHILD_TIMEOUT;
use shmkit_posix::msg_queue::{
    message_channel, JoinableQueue, MessageQueue, MessageRecvError, MessageSendError,
};
use shmkit_testkit::{fork, Exit};

/// A child process sends through an owned sender it moved in; the parent
/// receives everything through the iterator, which ends when the child's
/// sender is gone.
#[test]
fn owned_ends_across_a_fork() {
    let (tx, mut rx) = message_channel::<[u64; 3]>(4, 24).unwrap();
    let mut tx = Some(tx);
    let child = fork(|| {
        let mut tx = tx.take().unwrap();
        for i in 0..100u64 {
            if tx.send(&[i, i * i, !i]).is_err() {
                return 3;
            }
        }
        0
    });
    // The parent's copy of the sender must go too, for the end to come;
    // after the first message, when the child's copy counts (an inherited
    // sender registers in the child on its first send: dropped earlier,
    // the parent's would leave the queue with no sender for a moment,
    // which is a disconnection).
    let mut got = vec![rx.recv().unwrap()];
    drop(tx.take());
    got.extend(rx.iter().collect::<Result<Vec<_>, _>>().unwrap());
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    assert_eq!(got.len(), 100);
    for (i, m) in got.iter().enumerate() {
        let i = i as u64;
        assert_eq!(*m, [i, i * i, !i]);
    }
}

/// Opening with another message type is refused (the segment records
/// the type).
#[test]
fn the_message_type_is_checked_on_open() {
    let name = format!("/shmkit-test-msgq-type-{}", std::process::id());
    let q = MessageQueue::<u64>::create(&name, (4, 8)).unwrap();
    assert!(MessageQueue::<u32>::open(&name).is_err());
    assert!(JoinableQueue::<u64>::open(&name).is_err(), "another kind");
    let again = MessageQueue::<u64>::open(&name).unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), again.receiver().unwrap());
    tx.send(&5).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(5));
}

/// A message longer than `max_len`: `TooLong`, nothing sent, the value
/// still the caller's; the queue still works.
#[test]
fn oversized_messages_are_refused_and_kept() {
    let (mut tx, mut rx) = message_channel::<[u8; 16]>(2, 8).unwrap();
    let big = [7u8; 16];
    assert_eq!(
        tx.try_send(&big),
        Err(MessageSendError::TooLong { max_len: 8 })
    );
    assert_eq!(tx.send(&big), Err(MessageSendError::TooLong { max_len: 8 }));
    let e = tx
        .send_timeout(&big, Duration::from_millis(10))
        .unwrap_err();
    assert!(e.to_string().contains("limit of 8 bytes"), "{e}");
    assert_eq!(big, [7u8; 16], "still ours");
    assert_eq!(rx.try_recv(), Err(MessageRecvError::Empty));
}

/// Bytes that do not decode as the receiver's type (a raw producer sent
/// three bytes into a queue of `u64`): `Decode`, never a panic; the next
/// message decodes.
#[test]
fn bytes_that_do_not_decode_are_a_decode_error() {
    let q = MessageQueue::<u64>::anonymous((4, 8)).unwrap();
    let mut raw = q.view().producer().unwrap();
    let (mut tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
    raw.try_send(b"abc").unwrap();
    tx.try_send(&9).unwrap();
    match rx.try_recv() {
        Err(MessageRecvError::Decode(e)) => {
            assert!(e.to_string().contains("3 bytes cannot hold a u64"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.try_recv(), Ok(9));
}

#[cfg(feature = "serde")]
mod serde_messages {
    use super::*;
    use shmkit_posix::message::Serde;

    type Record = Serde<(String, Vec<u32>, Option<i64>)>;

    /// Serde values of varying length through a queue between processes,
    /// encoded straight into the slots.
    #[test]
    fn serde_values_cross_processes() {
        let (tx, mut rx) = message_channel::<Record>(4, 64).unwrap();
        let mut tx = Some(tx);
        let child = fork(|| {
            let mut tx = tx.take().unwrap();
            for i in 0..50u32 {
                let r = Serde((format!("item {i}"), (0..i % 7).collect(), Some(-(i as i64))));
                if tx.send(&r).is_err() {
                    return 3;
                }
            }
            0
        });
        // After the first message (see `owned_ends_across_a_fork`).
        let mut got = vec![rx.recv().unwrap()];
        drop(tx.take());
        got.extend(rx.iter().collect::<Result<Vec<Record>, _>>().unwrap());
        assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
        assert_eq!(got.len(), 50);
        for (i, r) in got.iter().enumerate() {
            let i = i as u32;
            assert_eq!(r.0 .0, format!("item {i}"));
            assert_eq!(r.0 .1, (0..i % 7).collect::<Vec<_>>());
            assert_eq!(r.0 .2, Some(-(i as i64)));
        }
    }

    /// A serde value whose encoding outgrows the slot half-way: `TooLong`,
    /// the partial encoding is given up, the next message arrives.
    #[test]
    fn oversized_serde_value_is_too_long() {
        let (mut tx, mut rx) = message_channel::<Serde<String>>(2, 16).unwrap();
        let long = Serde("x".repeat(100));
        assert_eq!(
            tx.try_send(&long),
            Err(MessageSendError::TooLong { max_len: 16 })
        );
        tx.try_send(&Serde("short".into())).unwrap();
        assert_eq!(rx.try_recv().unwrap().0, "short");
        assert_eq!(rx.try_recv(), Err(MessageRecvError::Empty));
    }

    /// Garbage bytes in a serde queue: `Decode` errors, no panic.
    #[test]
    fn garbage_serde_bytes_are_decode_errors() {
        let q = MessageQueue::<Serde<Vec<String>>>::anonymous((4, 32)).unwrap();
        let mut raw = q.view().producer().unwrap();
        let mut rx = q.receiver().unwrap();
        raw.try_send(&[0xff; 32]).unwrap();
        raw.try_send(&[]).unwrap();
        assert!(matches!(rx.try_recv(), Err(MessageRecvError::Decode(_))));
        assert!(matches!(rx.try_recv(), Err(MessageRecvError::Decode(_))));
    }
}
