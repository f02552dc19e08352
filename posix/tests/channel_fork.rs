//! Python's fork shapes with owned handles, in real processes: the parent
//! makes both ends, forks, drops its copy of the child's end; the child
//! sends N messages and exits; the parent receives all N, then
//! `Disconnected`/EOF — not before, and not never. Plus: a child dropping
//! its inherited copy while the parent's lives is no disconnect; kill -9
//! of the last copy is; `Disconnected` is final (`AttachError::Closed`);
//! `close()`; owned handles moved into threads.
//!
//! The tests run one at a time (`common::serial`): a child forked by one
//! test inherits copies of every handle another test holds at that moment,
//! and a copy keeps its end open — the very semantics under test — so a
//! concurrent fork could keep a dropped end alive.

mod common;

use std::cell::Cell;
use std::time::Duration;

use shmkit_posix::queue::{self, AttachError, RecvError, RecvTimeoutError, TryRecvError};
use shmkit_posix::{pipe, ring};
use shmkit_testkit::fork;

const N: u64 = 1000;
const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(300);

#[test]
fn queue_python_shape_all_messages_then_disconnected() {
    let _serial = common::serial();
    let (tx, rx) = queue::channel::<u64>(16).unwrap();
    let gate = &common::Pipe::new();
    // `tx` moves into the closure: the parent's copy is dropped by `fork`.
    let child = fork(move || {
        // Sends only after the parent dropped its copy and looked: the
        // parent must see neither Disconnected nor a lost message.
        gate.take();
        for i in 0..N {
            if tx.send(i).is_err() {
                return 2;
            }
        }
        0
    });
    assert_eq!(rx.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
    gate.release(1);
    let got: Vec<u64> = std::iter::from_fn(|| rx.recv_timeout(LONG).ok()).collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every message, in order");
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    assert!(child.wait().success());
}

#[test]
fn queue_child_exiting_without_drop_disconnects() {
    let _serial = common::serial();
    let (tx, rx) = queue::channel::<u64>(16).unwrap();
    let slot = Cell::new(Some(tx));
    let child = fork(|| {
        let tx = slot.take().unwrap();
        tx.send(7).unwrap();
        std::mem::forget(tx); // exits with the copy open: the OS closes it
        0
    });
    drop(slot.take()); // the parent's copy
    assert_eq!(rx.recv_timeout(LONG), Ok(7));
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    assert!(child.wait().success());
}

#[test]
fn queue_child_dropping_its_copy_is_no_disconnect() {
    let _serial = common::serial();
    let (tx, rx) = queue::channel::<u64>(16).unwrap();
    let slot = Cell::new(Some(tx));
    let child = fork(|| {
        drop(slot.take());
        0
    });
    assert!(child.wait().success());
    let tx = slot.take().unwrap();
    assert_eq!(rx.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
    assert!(rx.has_senders());
    tx.send(5).unwrap();
    assert_eq!(rx.recv(), Ok(5));
    drop(tx);
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn queue_kill9_of_the_last_copy_disconnects_and_it_stays_final() {
    let _serial = common::serial();
    let (tx, rx) = queue::channel::<u64>(16).unwrap();
    let q = rx.queue().clone();
    let child = fork(move || {
        tx.send(1).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert_eq!(rx.recv_timeout(LONG), Ok(1));
    child.kill9();
    let _ = child.wait();
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    // Final: no new sender, and still Disconnected.
    assert_eq!(q.sender().err(), Some(AttachError::Closed));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn queue_before_any_sender_is_empty_not_disconnected() {
    let _serial = common::serial();
    let q = queue::Queue::<u32>::anonymous(8).unwrap();
    let rx = q.receiver().unwrap();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert!(!rx.has_senders());
    let tx = q.sender().unwrap();
    assert!(rx.has_senders());
    tx.send(3).unwrap();
    drop(tx);
    assert_eq!(rx.recv(), Ok(3));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert_eq!(q.sender().err(), Some(AttachError::Closed));
}

#[test]
fn queue_close_disconnects_while_a_fork_copy_lives() {
    let _serial = common::serial();
    let (tx, rx) = queue::channel::<u64>(16).unwrap();
    let gate = common::Pipe::new();
    let child = fork(|| {
        gate.take(); // holds its copy of `tx` until released
        0
    });
    tx.send(9).unwrap();
    tx.close();
    assert_eq!(rx.recv(), Ok(9));
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    gate.release(1);
    assert!(child.wait().success());
}

#[test]
fn queue_handles_move_into_threads_and_clone() {
    let _serial = common::serial();
    let (tx, rx) = queue::channel::<u64>(64).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    tx.send(t * 1000 + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut got: Vec<u64> = rx.iter().collect();
    for t in threads {
        t.join().unwrap();
    }
    got.sort_unstable();
    let mut want: Vec<u64> = (0..4u64)
        .flat_map(|t| (0..100).map(move |i| t * 1000 + i))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn pipe_python_shape_all_messages_then_eof() {
    let _serial = common::serial();
    let (parent, child_end) = pipe::duplex(256).unwrap();
    let child = fork(move || {
        for i in 0..N {
            if child_end.send(&i).is_err() {
                return 2;
            }
        }
        0
    });
    let mut got = Vec::new();
    let err = loop {
        match parent.recv::<u64>() {
            Ok(v) => got.push(v),
            Err(e) => break e,
        }
    };
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert!(err.is_eof(), "{err}");
    assert_eq!(
        parent.recv_bytes(),
        Err(pipe::RecvError::Eof),
        "EOF is final"
    );
    assert!(child.wait().success());
}

#[test]
fn pipe_child_dropping_its_copy_is_no_eof_and_kill9_is() {
    let _serial = common::serial();
    let (a, b) = pipe::duplex(256).unwrap();
    let slot = Cell::new(Some(b));
    let child = fork(|| {
        drop(slot.take());
        0
    });
    assert!(child.wait().success());
    let b = slot.take().unwrap();
    assert_eq!(
        a.recv_bytes_timeout(SHORT),
        Err(pipe::RecvError::Timeout),
        "the parent's copy of b still lives"
    );
    b.send_bytes(b"hi").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"hi");
    // Hand b to a child, drop ours, kill the child: EOF.
    let child = fork(move || {
        b.send_bytes(b"last").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert_eq!(a.recv_bytes_timeout(LONG).unwrap(), b"last");
    child.kill9();
    let _ = child.wait();
    assert_eq!(a.recv_bytes_timeout(LONG), Err(pipe::RecvError::Eof));
}

#[test]
fn pipe_one_way_close_and_split_threads() {
    let _serial = common::serial();
    let (r, w) = pipe::one_way(64).unwrap();
    let t = std::thread::spawn(move || {
        w.send_bytes(b"x").unwrap();
        w.close();
    });
    assert_eq!(r.recv_bytes().unwrap(), b"x");
    assert_eq!(r.recv_bytes(), Err(pipe::RecvError::Eof));
    t.join().unwrap();
    let (a, b) = pipe::duplex(64).unwrap();
    let (tx, rx) = b.split();
    let t = std::thread::spawn(move || {
        let m = rx.recv_bytes().unwrap();
        tx.send_bytes(&m).unwrap();
    });
    a.send_bytes(b"echo").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"echo");
    t.join().unwrap();
    assert!(a.poll(LONG).unwrap(), "EOF is ready");
    assert_eq!(
        a.send_bytes(&[0; 61]),
        Err(pipe::SendError::TooLarge { len: 61, max: 60 })
    );
}

#[test]
fn ring_python_shape_all_messages_then_disconnected() {
    let _serial = common::serial();
    let (tx, rx) = ring::new::<u64>(16).unwrap();
    let child = fork(move || {
        for i in 0..N {
            if tx.push_blocking(i).is_err() {
                return 2;
            }
        }
        0
    });
    let got: Vec<u64> = std::iter::from_fn(|| rx.pop_timeout(LONG).ok()).collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert_eq!(rx.pop_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    assert!(child.wait().success());
}

#[test]
fn ring_stays_disconnected_after_a_new_producer_tries() {
    let _serial = common::serial();
    let r = ring::Ring::<u32>::anonymous(8).unwrap();
    let rx = r.consumer().unwrap();
    let tx = r.producer().unwrap();
    assert!(matches!(r.producer(), Err(AttachError::Taken { .. })));
    tx.push(1).unwrap();
    drop(tx);
    assert_eq!(rx.pop(), Ok(1));
    assert_eq!(rx.pop(), Err(ring::PopError::Disconnected));
    assert_eq!(r.producer().err(), Some(AttachError::Closed));
    assert_eq!(rx.pop(), Err(ring::PopError::Disconnected));
}

/// Python's shape with one end written by two processes in turn: the
/// parent sends, a forked child sends on its inherited copy and exits,
/// the parent sends again. Each end keeps its position in the handle, and
/// the parent's copy goes on from where the child's left off: nothing is
/// overwritten.
#[test]
fn pipe_sender_used_by_two_processes_in_turn_loses_nothing() {
    let _serial = common::serial();
    let (rx, tx) = pipe::one_way(4096).unwrap();
    tx.send_bytes(b"p1").unwrap();
    let child = fork(|| {
        let ok = tx.send_bytes(b"c1").is_ok() && tx.send_bytes(b"c2").is_ok();
        i32::from(!ok)
    });
    assert!(child.wait().success());
    tx.send_bytes(b"p2").unwrap();
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| {
        rx.poll(Duration::ZERO)
            .unwrap()
            .then(|| rx.recv_bytes().unwrap())
    })
    .collect();
    assert_eq!(got, [&b"p1"[..], b"c1", b"c2", b"p2"]);
}

/// The receiving end read by two processes in turn: each message is
/// received once, by whichever process reads it first.
#[test]
fn pipe_receiver_used_by_two_processes_in_turn_receives_each_message_once() {
    let _serial = common::serial();
    let (rx, tx) = pipe::one_way(4096).unwrap();
    for m in [b"m1", b"m2", b"m3", b"m4"] {
        tx.send_bytes(m).unwrap();
    }
    assert_eq!(rx.recv_bytes().unwrap(), b"m1");
    let child = fork(|| i32::from(rx.recv_bytes().ok().as_deref() != Some(&b"m2"[..])));
    assert!(child.wait().success(), "the child got m2");
    assert_eq!(rx.recv_bytes().unwrap(), b"m3");
    assert_eq!(rx.recv_bytes().unwrap(), b"m4");
    assert!(!rx.poll(Duration::ZERO).unwrap());
}

/// The same for an SPSC ring (`$ends` makes its two ends): its producer
/// and its consumer each used by parent and child in turn.
macro_rules! ring_ends_in_turn {
    ($name:ident, $ends:expr) => {
        #[test]
        fn $name() {
            let _serial = common::serial();
            let (tx, rx) = $ends;
            tx.push_blocking(1).unwrap();
            let child =
                fork(|| i32::from(tx.push_blocking(2).is_err() || tx.push_blocking(3).is_err()));
            assert!(child.wait().success());
            tx.push_blocking(4).unwrap();
            assert_eq!(rx.pop_timeout(LONG), Ok(1));
            let child = fork(|| i32::from(rx.pop_timeout(LONG) != Ok(2)));
            assert!(child.wait().success(), "the child got 2");
            assert_eq!(rx.pop_timeout(LONG), Ok(3));
            assert_eq!(rx.pop_timeout(LONG), Ok(4));
            assert!(rx.pop_timeout(SHORT).is_err(), "nothing more");
        }
    };
}

ring_ends_in_turn!(
    ring_ends_used_by_two_processes_in_turn_lose_and_repeat_nothing,
    ring::new::<u64>(16).unwrap()
);
ring_ends_in_turn!(
    stamped_ring_ends_used_by_two_processes_in_turn_lose_and_repeat_nothing,
    {
        let r = ring::StampedRing::<u64>::anonymous(16).unwrap();
        (r.producer().unwrap(), r.consumer().unwrap())
    }
);
