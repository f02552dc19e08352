//! The byte-message MPMC queue (`Shared<MsgQueue>` and the core handles)
//! under kill -9 with real processes: nothing committed lost or
//! duplicated, every message delivered whole, a producer killed in the
//! middle of writing its slot never wedges the queue.
//!
//! Messages vary in length (8 to `MAX_LEN` bytes) and carry a pattern
//! derived from their tag, so a torn or mixed-up message is seen. 20
//! trials per test by default, 200 with `SHMKIT_LONG_TESTS=1`.

mod common;

use std::time::Duration;

use common::{tag, untag, Rng, CHILD_TIMEOUT};
use shmkit_core::queue::msg::{MsgParams, MsgQueue, MsgRecvError};
use shmkit_posix::{Array, Shared};
use shmkit_testkit::{fork, Exit};

const MAX_LEN: usize = 40;

fn trials() -> usize {
    if common::long() {
        200
    } else {
        20
    }
}

/// The message of producer `p`, number `seq`: its tag, then a pattern.
fn message(p: u64, seq: u64, out: &mut Vec<u8>) {
    out.clear();
    let t = tag(p, seq);
    out.extend_from_slice(&t.to_le_bytes());
    let extra = (seq * 7 + p) as usize % (MAX_LEN - 8 + 1);
    out.extend((0..extra).map(|i| (t as u8).wrapping_mul(31).wrapping_add(i as u8)));
}

/// The `(producer, seq)` of a received message, after checking that it
/// is whole.
fn check(bytes: &[u8]) -> (u64, u64) {
    assert!(bytes.len() >= 8, "a message of {} bytes", bytes.len());
    let t = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let (p, seq) = untag(t);
    let mut want = Vec::new();
    message(p, seq, &mut want);
    assert_eq!(bytes, &want[..], "message {p}/{seq} is not whole");
    (p, seq)
}

fn kill(child: shmkit_testkit::Child, landed: &mut usize) {
    child.kill9();
    let exit = child.wait_timeout(CHILD_TIMEOUT);
    assert!(exit.is_some(), "a killed child must be reaped");
    if exit == Some(Exit::Signal(libc::SIGKILL)) {
        *landed += 1;
    }
}

/// Two producer processes; producer 1 is killed after a random number of
/// messages. The consumer (the parent) gets all of producer 0's messages
/// and a gap-free prefix of producer 1's: what it recorded as committed,
/// or one more.
#[test]
fn msg_producer_killed_at_random_points() {
    let mut rng = Rng::new();
    let n = 2000u64;
    let mut landed = 0;
    for trial in 0..trials() {
        let capacity = if trial % 2 == 0 { 2 } else { 16 };
        let q =
            Shared::<MsgQueue>::anonymous(MsgParams::new(capacity, MAX_LEN).with_registry(4, 2))
                .unwrap();
        let last = Array::<u64>::anonymous(2).unwrap();
        let mut rx = q.view().consumer().unwrap();
        let start = common::StartLine::new(2);
        let mut children: Vec<_> = (0..2u64)
            .map(|p| {
                let (q, last, start) = (&q, &last, &start);
                fork(move || {
                    let Ok(mut tx) = q.view().producer() else {
                        return 2;
                    };
                    start.arrive(p as usize);
                    let mut m = Vec::new();
                    for seq in 0..n {
                        message(p, seq, &mut m);
                        if tx.send(&m).is_err() {
                            return 3;
                        }
                        let _ = last.set(p as usize, seq + 1);
                    }
                    0
                })
            })
            .collect();
        start.release();
        let mut victim = children.pop();
        let survivor = children.pop().unwrap();
        let kill_after = rng.below(n) as usize;
        let mut got = [Vec::new(), Vec::new()];
        let mut buf = [0u8; MAX_LEN];
        loop {
            match rx.recv_into_timeout(&mut buf, Duration::from_secs(30)) {
                Ok(len) => {
                    let (p, seq) = check(&buf[..len]);
                    got[p as usize].push(seq);
                    if got[0].len() + got[1].len() == kill_after {
                        if let Some(v) = victim.take() {
                            kill(v, &mut landed);
                        }
                    }
                }
                Err(MsgRecvError::Disconnected) => break,
                Err(e) => panic!("trial {trial}: receive failed: {e}"),
            }
        }
        if let Some(v) = victim.take() {
            kill(v, &mut landed);
        }
        assert_eq!(survivor.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
        for (p, seqs) in got.iter().enumerate() {
            for (i, &seq) in seqs.iter().enumerate() {
                assert_eq!(
                    seq, i as u64,
                    "trial {trial}: producer {p} in order, no gaps or duplicates"
                );
            }
        }
        assert_eq!(got[0].len() as u64, n);
        let recorded = last.get(1).unwrap();
        let k = got[1].len() as u64;
        assert!(
            k == recorded || k == recorded + 1,
            "trial {trial}: got {k} of the killed producer's messages, it recorded {recorded}"
        );
    }
    eprintln!("{landed} kills landed while the producer ran");
}

/// Two consumer processes record what they receive; one is killed at a
/// random time. Every message is received at most once, whole, and at
/// most one (the one the victim took as it died) is missing.
#[test]
fn msg_consumer_killed_at_random_points() {
    let mut rng = Rng::new();
    let n = 1500u64;
    let total = 2 * n as usize;
    let mut landed = 0;
    for trial in 0..trials() {
        let capacity = if trial % 2 == 0 { 2 } else { 16 };
        let q =
            Shared::<MsgQueue>::anonymous(MsgParams::new(capacity, MAX_LEN).with_registry(2, 4))
                .unwrap();
        let got = Array::<u64>::anonymous(2 * (total + 1)).unwrap();
        let start = common::StartLine::new(4);
        let consumers: Vec<_> = (0..2usize)
            .map(|c| {
                let (q, got, start) = (&q, &got, &start);
                fork(move || {
                    let Ok(mut rx) = q.view().consumer() else {
                        return 2;
                    };
                    start.arrive(c);
                    let base = c * (total + 1);
                    let mut count = 0;
                    let mut buf = [0u8; MAX_LEN];
                    loop {
                        match rx.recv_into_timeout(&mut buf, Duration::from_secs(30)) {
                            Ok(len) => {
                                let (p, seq) = check(&buf[..len]);
                                let _ = got.set(base + 1 + count, tag(p, seq));
                                count += 1;
                                let _ = got.set(base, count as u64);
                            }
                            Err(MsgRecvError::Disconnected) => return 0,
                            Err(_) => return 3,
                        }
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let (q, start) = (&q, &start);
                fork(move || {
                    let Ok(mut tx) = q.view().producer() else {
                        return 2;
                    };
                    start.arrive(2 + p as usize);
                    let mut m = Vec::new();
                    for seq in 0..n {
                        message(p, seq, &mut m);
                        if tx.send(&m).is_err() {
                            return 3;
                        }
                    }
                    0
                })
            })
            .collect();
        start.release();
        std::thread::sleep(rng.micros(3000));
        let mut consumers = consumers.into_iter();
        kill(consumers.next().unwrap(), &mut landed);
        for p in producers {
            assert_eq!(
                p.wait_timeout(CHILD_TIMEOUT),
                Some(Exit::Code(0)),
                "trial {trial}"
            );
        }
        for c in consumers {
            assert_eq!(
                c.wait_timeout(CHILD_TIMEOUT),
                Some(Exit::Code(0)),
                "trial {trial}"
            );
        }
        let mut seen = vec![0u32; total];
        for c in 0..2 {
            let base = c * (total + 1);
            let count = got.get(base).unwrap() as usize;
            for i in 0..count {
                let (p, seq) = untag(got.get(base + 1 + i).unwrap());
                seen[(p * n + seq) as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&k| k <= 1), "trial {trial}: a duplicate");
        let missing = seen.iter().filter(|&&k| k == 0).count();
        assert!(missing <= 1, "trial {trial}: {missing} messages lost");
    }
    eprintln!("{landed} kills landed while the consumer ran");
}

/// A producer process killed while its encoder is half-way through its
/// slot (claimed, never committed): the consumer skips the dead claim
/// and receives what a live producer sent after it, and the queue keeps
/// working across the wrap.
#[test]
fn msg_producer_killed_mid_write_does_not_wedge() {
    for capacity in [1, 4] {
        let q =
            Shared::<MsgQueue>::anonymous(MsgParams::new(capacity, MAX_LEN).with_registry(2, 1))
                .unwrap();
        let mut rx = q.view().consumer().unwrap();
        let mut tx = q.view().producer().unwrap();
        let writing = common::Pipe::new();
        let child = fork(|| {
            let Ok(mut tx) = q.view().producer() else {
                return 2;
            };
            let _ = tx.try_send_with(|w| {
                w.write(b"half a mess")?;
                writing.release(1);
                // Killed here, holding the claim.
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
                #[allow(unreachable_code)]
                Ok::<(), shmkit_core::queue::msg::TooLong>(())
            });
            3
        });
        assert!(
            writing.take_within(CHILD_TIMEOUT),
            "the child never claimed"
        );
        child.kill9();
        assert_eq!(
            child.wait_timeout(CHILD_TIMEOUT),
            Some(Exit::Signal(libc::SIGKILL))
        );
        let mut buf = [0u8; MAX_LEN];
        // Nothing was committed: a waiting consumer finds the claimer dead
        // (within a wait slice) and skips its claim, and times out.
        assert_eq!(
            rx.recv_into_timeout(&mut buf, Duration::from_millis(300)),
            Err(MsgRecvError::Timeout)
        );
        for i in 0..3 * capacity as u64 {
            let mut m = Vec::new();
            message(0, i, &mut m);
            tx.send_timeout(&m, Duration::from_secs(10)).unwrap();
            let len = rx
                .recv_into_timeout(&mut buf, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("capacity {capacity}, message {i}: {e}"));
            assert_eq!(check(&buf[..len]), (0, i));
        }
    }
}
