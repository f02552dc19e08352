//! The joinable queue (`Shared<JoinableQueue>`) with real processes:
//! Python's `JoinableQueue` behaviours — `join` returns once every item
//! put was marked done by consumer processes; `task_done` called too often
//! is an error; a consumer killed between a `get` and its `task_done`
//! leaves the count up, and `join_timeout` says so instead of hanging.

mod common;

use std::time::Duration;

use common::CHILD_TIMEOUT;
use shmkit_core::queue::joinable::{JoinTimeout, JoinableQueue, TaskDoneError};
use shmkit_core::queue::msg::{MsgParams, MsgRecvError};
use shmkit_posix::{Array, Shared};
use shmkit_testkit::{fork, Exit};

/// N items, K consumer processes each marking what it gets done: `join`
/// returns with the count at zero, and the consumers together processed
/// every item exactly once.
#[test]
fn join_returns_after_every_task_done() {
    const N: u64 = 500;
    const K: usize = 3;
    let q = Shared::<JoinableQueue>::anonymous(MsgParams::new(8, 16).with_registry(2, 4)).unwrap();
    let sums = Array::<u64>::anonymous(K).unwrap();
    let consumers: Vec<_> = (0..K)
        .map(|c| {
            let (q, sums) = (&q, &sums);
            fork(move || {
                let Ok(mut rx) = q.view().consumer() else {
                    return 2;
                };
                let mut buf = [0u8; 16];
                loop {
                    match rx.recv_into_timeout(&mut buf, Duration::from_secs(30)) {
                        Ok(8) => {
                            let v = u64::from_le_bytes(buf[..8].try_into().unwrap());
                            let _ = sums.set(c, sums.get(c).unwrap() + v);
                            if q.view().task_done().is_err() {
                                return 4;
                            }
                        }
                        Err(MsgRecvError::Disconnected) => return 0,
                        _ => return 3,
                    }
                }
            })
        })
        .collect();
    {
        let mut tx = q.view().producer().unwrap();
        for v in 1..=N {
            tx.send(&v.to_le_bytes()).unwrap();
        }
    }
    q.view()
        .join_timeout(CHILD_TIMEOUT)
        .expect("every item was marked done");
    assert_eq!(q.view().unfinished(), 0);
    // The producer is gone: the consumers drain and leave.
    for c in consumers {
        assert_eq!(c.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    }
    let total: u64 = (0..K).map(|c| sums.get(c).unwrap()).sum();
    assert_eq!(total, N * (N + 1) / 2, "each item processed exactly once");
}

/// `task_done` once more than items were put, from another process:
/// `TooManyCalls`, and the count stays at zero.
#[test]
fn too_many_task_done_is_an_error() {
    let q = Shared::<JoinableQueue>::anonymous((4, 8)).unwrap();
    let mut tx = q.view().producer().unwrap();
    tx.send(b"x").unwrap();
    let child = fork(|| {
        let Ok(mut rx) = q.view().consumer() else {
            return 2;
        };
        if rx.recv_into_timeout(&mut [0u8; 8], CHILD_TIMEOUT).is_err() {
            return 3;
        }
        match (q.view().task_done(), q.view().task_done()) {
            (Ok(0), Err(TaskDoneError::TooManyCalls)) => 0,
            _ => 4,
        }
    });
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    assert_eq!(q.view().task_done(), Err(TaskDoneError::TooManyCalls));
    assert_eq!(q.view().unfinished(), 0);
    assert!(TaskDoneError::TooManyCalls
        .to_string()
        .contains("more times than there were items"));
    q.view().join_timeout(Duration::ZERO).unwrap();
}

/// A consumer killed after its `get`, before its `task_done`: the item is
/// gone with it and stays counted; `join_timeout` returns in time with
/// the count, and a `task_done` for the lost task (the caller's decision)
/// lets `join` return.
#[test]
fn killed_consumer_makes_join_time_out_not_hang() {
    let q = Shared::<JoinableQueue>::anonymous((4, 8)).unwrap();
    let mut tx = q.view().producer().unwrap();
    tx.send(b"work").unwrap();
    let got = common::Pipe::new();
    let child = fork(|| {
        let Ok(mut rx) = q.view().consumer() else {
            return 2;
        };
        if rx.recv_into_timeout(&mut [0u8; 8], CHILD_TIMEOUT).is_err() {
            return 3;
        }
        got.release(1);
        // Working on it when killed.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    assert!(
        got.take_within(CHILD_TIMEOUT),
        "the consumer never got the item"
    );
    child.kill9();
    assert_eq!(
        child.wait_timeout(CHILD_TIMEOUT),
        Some(Exit::Signal(libc::SIGKILL))
    );
    let e = q
        .view()
        .join_timeout(Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(e, JoinTimeout { unfinished: 1 });
    assert!(e.to_string().contains("1 task(s) still unfinished"), "{e}");
    assert_eq!(q.view().task_done(), Ok(0));
    q.view().join_timeout(Duration::from_secs(5)).unwrap();
}
