//! kill -9 at random points: survivors finish, and every committed message
//! is delivered exactly once.
//!
//! Producers record, after each successful push, the last sequence number
//! they committed in shared memory; a producer killed between a push and
//! that record committed at most one message more than it says. Consumers
//! record each message after popping it; a consumer killed between the two
//! took at most one message with it. Each trial kills one process of the
//! role under test: 20 trials per test by default, 1,000 with
//! `SHMKIT_LONG_TESTS=1` (the figures in the report come from that mode;
//! each test prints its kill count and how many kills hit mid-stream).

mod common;

use std::time::Duration;

use common::{tag, untag, ObjectSegment, Rng, CHILD_TIMEOUT};
use shmkit_core::queue::pipe::PipeRecvError;
use shmkit_core::queue::stamped::StampedSpsc;
use shmkit_core::queue::{RecvTimeoutError, SendError};
use shmkit_posix::pipe::OneWayPipe;
use shmkit_posix::queue::{Queue, QueueParams};
use shmkit_posix::ring::Ring;
use shmkit_posix::Array;
use shmkit_testkit::{fork, Exit};

fn trials() -> usize {
    if common::long() {
        1000
    } else {
        20
    }
}

/// How many kills a test made, and how many landed while the victim was
/// still running (the rest found it already finished).
#[derive(Default)]
struct Kills {
    made: usize,
    landed: usize,
}

impl Kills {
    fn record(&mut self, exit: Option<Exit>) {
        assert!(exit.is_some(), "a killed child must be reaped");
        self.made += 1;
        if exit == Some(Exit::Signal(libc::SIGKILL)) {
            self.landed += 1;
        }
    }
}

impl Drop for Kills {
    fn drop(&mut self) {
        eprintln!(
            "kills: {} made, {} landed while the victim ran",
            self.made, self.landed
        );
    }
}

/// `last[p]`: 0 = nothing committed yet, else last committed seq + 1.
fn check_prefix(received: &[u64], recorded: u64, who: &str) {
    for (i, &seq) in received.iter().enumerate() {
        assert_eq!(seq, i as u64, "{who}: in order, no gaps, no duplicates");
    }
    let got = received.len() as u64;
    assert!(
        got == recorded || got == recorded + 1,
        "{who}: received {got} messages, recorded {recorded} committed"
    );
}

#[test]
fn mpmc_producer_killed_at_random_points() {
    let mut rng = Rng::new();
    let mut kills = Kills::default();
    let n = 3000u64;
    for trial in 0..trials() {
        let capacity = if trial % 2 == 0 { 2 } else { 16 };
        let q = Queue::<u64>::anonymous(QueueParams::new(capacity).with_registry(4, 2)).unwrap();
        let last = Array::<u64>::anonymous(2).unwrap();
        let mut rx = q.view().consumer().unwrap();
        let start = common::StartLine::new(2);
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let (q, last, start) = (&q, &last, &start);
                fork(move || {
                    let Ok(mut tx) = q.view().producer() else {
                        return 2;
                    };
                    start.arrive(p as usize);
                    for seq in 0..n {
                        if tx.push(tag(p, seq)).is_err() {
                            return 3;
                        }
                        let _ = last.set(p as usize, seq + 1);
                    }
                    0
                })
            })
            .collect();
        start.release();
        // Pop, and kill producer 1 after a random number of messages.
        let mut got = [Vec::new(), Vec::new()];
        let kill_after = rng.below(n);
        let mut victim = None;
        let mut survivor = None;
        for (i, child) in producers.into_iter().enumerate() {
            if i == 1 {
                victim = Some(child);
            } else {
                survivor = Some(child);
            }
        }
        loop {
            match rx.pop_timeout(Duration::from_secs(30)) {
                Ok(v) => {
                    let (p, seq) = untag(v);
                    got[p as usize].push(seq);
                    if got[0].len() + got[1].len() == kill_after as usize {
                        if let Some(v) = victim.take() {
                            v.kill9();
                            kills.record(v.wait_timeout(CHILD_TIMEOUT));
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("trial {trial}: pop failed: {e}"),
            }
        }
        if let Some(v) = victim.take() {
            // Finished before the kill point; kill anyway (no-op if exited).
            v.kill9();
            kills.record(v.wait_timeout(CHILD_TIMEOUT));
        }
        assert_eq!(
            survivor.unwrap().wait_timeout(CHILD_TIMEOUT),
            Some(Exit::Code(0))
        );
        check_prefix(&got[0], last.get(0).unwrap(), "survivor");
        assert_eq!(got[0].len() as u64, n);
        check_prefix(&got[1], last.get(1).unwrap(), "killed producer");
    }
}

#[test]
fn mpmc_consumer_killed_at_random_points() {
    let mut rng = Rng::new();
    let mut kills = Kills::default();
    let n = 2000u64;
    let total = 2 * n as usize;
    for trial in 0..trials() {
        let capacity = if trial % 2 == 0 { 2 } else { 16 };
        let q = Queue::<u64>::anonymous(QueueParams::new(capacity).with_registry(2, 4)).unwrap();
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
                    loop {
                        match rx.pop_timeout(Duration::from_secs(30)) {
                            Ok(v) => {
                                let _ = got.set(base + 1 + count, v);
                                count += 1;
                                let _ = got.set(base, count as u64);
                            }
                            Err(RecvTimeoutError::Disconnected) => return 0,
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
                    for seq in 0..n {
                        if tx.push(tag(p, seq)).is_err() {
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
        let victim = consumers.next().unwrap();
        victim.kill9();
        kills.record(victim.wait_timeout(CHILD_TIMEOUT));
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
}

#[test]
fn spsc_producer_killed_at_random_points() {
    let mut rng = Rng::new();
    let mut kills = Kills::default();
    let n = 5000u64;
    for trial in 0..trials() {
        let ring = Ring::<u64>::anonymous(if trial % 2 == 0 { 2 } else { 64 }).unwrap();
        let last = Array::<u64>::anonymous(1).unwrap();
        let mut rx = ring.view().consumer().unwrap();
        let child = fork(|| {
            let Ok(mut tx) = ring.view().producer() else {
                return 2;
            };
            for seq in 0..n {
                if tx.push(seq).is_err() {
                    return 3;
                }
                let _ = last.set(0, seq + 1);
            }
            0
        });
        let kill_after = rng.below(n) as usize;
        let mut got = Vec::new();
        let mut child = Some(child);
        loop {
            match rx.pop_timeout(Duration::from_secs(30)) {
                Ok(v) => {
                    got.push(v);
                    if got.len() == kill_after {
                        if let Some(c) = child.take() {
                            c.kill9();
                            kills.record(c.wait_timeout(CHILD_TIMEOUT));
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("trial {trial}: {e}"),
            }
        }
        if let Some(c) = child {
            c.kill9();
            kills.record(c.wait_timeout(CHILD_TIMEOUT));
        }
        check_prefix(&got, last.get(0).unwrap(), "spsc producer");
    }
}

/// The consumer is killed; a new consumer (the parent) takes over the dead
/// holder's role and gets everything the dead one did not consume.
#[test]
fn spsc_consumer_killed_then_taken_over() {
    let mut rng = Rng::new();
    let mut kills = Kills::default();
    let n = 5000u64;
    for trial in 0..trials() {
        let ring = Ring::<u64>::anonymous(if trial % 2 == 0 { 2 } else { 64 }).unwrap();
        let got = Array::<u64>::anonymous(n as usize + 1).unwrap();
        let consumer = fork(|| {
            let Ok(mut rx) = ring.view().consumer() else {
                return 2;
            };
            let mut count = 0;
            loop {
                match rx.pop_timeout(Duration::from_secs(30)) {
                    Ok(v) => {
                        let _ = got.set(1 + count, v);
                        count += 1;
                        let _ = got.set(0, count as u64);
                    }
                    Err(RecvTimeoutError::Disconnected) => return 0,
                    Err(_) => return 3,
                }
            }
        });
        let producer = fork(|| {
            let Ok(mut tx) = ring.view().producer() else {
                return 2;
            };
            for seq in 0..n {
                let mut value = seq;
                // While the consumer is dead and the ring full, pushes say
                // Disconnected: wait for the replacement consumer.
                while let Err(e) = tx.push(value) {
                    match e {
                        SendError::Disconnected(v) => value = v,
                        SendError::Corrupt(_) => return 3,
                    }
                    std::thread::yield_now();
                }
            }
            0
        });
        std::thread::sleep(rng.micros(2000));
        consumer.kill9();
        kills.record(consumer.wait_timeout(CHILD_TIMEOUT));
        let mut rx = loop {
            // The dead holder is taken over (the kernel may need a moment
            // to reap it into a zombie, which counts as dead).
            if let Ok(rx) = ring.view().consumer() {
                break rx;
            }
            std::thread::yield_now();
        };
        let mut mine = Vec::new();
        loop {
            match rx.pop_timeout(Duration::from_secs(30)) {
                Ok(v) => mine.push(v),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("trial {trial}: {e}"),
            }
        }
        assert_eq!(producer.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
        let count = got.get(0).unwrap() as usize;
        let mut all: Vec<u64> = (0..count).map(|i| got.get(1 + i).unwrap()).collect();
        let recorded = all.len();
        all.extend(&mine);
        // In order with at most one gap (the message the dead consumer
        // popped but did not record), right at the hand-over.
        let mut expected = 0;
        let mut gaps = 0;
        for (i, &v) in all.iter().enumerate() {
            if v != expected {
                assert!(
                    i == recorded && v == expected + 1,
                    "trial {trial}: order broken"
                );
                gaps += 1;
            }
            expected = v + 1;
        }
        assert_eq!(expected, n, "trial {trial}: the tail was delivered");
        assert!(gaps <= 1);
    }
}

#[test]
fn pipe_sender_killed_mid_stream_gives_whole_messages_then_eof() {
    let mut rng = Rng::new();
    let mut kills = Kills::default();
    for trial in 0..trials() {
        let pipe = OneWayPipe::anonymous(1024).unwrap();
        let rx = pipe.receiver().unwrap();
        // A sender killed before it attached would (rightly) leave the
        // receiver waiting for one: kill only after the attach.
        let start = common::StartLine::new(1);
        let child = fork(|| {
            let Ok(mut tx) = pipe.view().sender() else {
                return 2;
            };
            start.arrive(0);
            for i in 0u32.. {
                let len = (i as usize * 53) % 300;
                let mut msg = vec![(i % 251) as u8; len + 4];
                msg[..4].copy_from_slice(&i.to_le_bytes());
                if tx.send_bytes(&msg).is_err() {
                    return 3;
                }
            }
            0
        });
        start.release();
        std::thread::sleep(rng.micros(2000));
        child.kill9();
        kills.record(child.wait_timeout(CHILD_TIMEOUT));
        let mut next = 0u32;
        loop {
            match rx.recv_bytes_timeout(Duration::from_secs(30)) {
                Ok(msg) => {
                    let i = u32::from_le_bytes(msg[..4].try_into().unwrap());
                    assert_eq!(i, next, "trial {trial}: in order");
                    assert_eq!(msg.len(), (i as usize * 53) % 300 + 4);
                    assert!(msg[4..].iter().all(|&b| b == (i % 251) as u8));
                    next += 1;
                }
                Err(PipeRecvError::Eof) => break,
                Err(e) => panic!("trial {trial}: {e}"),
            }
        }
    }
}

#[test]
fn stamped_producer_killed_at_random_points() {
    let mut rng = Rng::new();
    let mut kills = Kills::default();
    let n = 5000u64;
    for trial in 0..trials() {
        let ring =
            ObjectSegment::<StampedSpsc<u64>>::anonymous(if trial % 2 == 0 { 2 } else { 64 });
        let last = Array::<u64>::anonymous(vec![0u64]).unwrap();
        let mut rx = ring.view().consumer().unwrap();
        let child = fork(|| {
            let Ok(mut tx) = ring.view().producer() else {
                return 2;
            };
            for seq in 0..n {
                if tx.push(seq).is_err() {
                    return 3;
                }
                let _ = last.set(0, seq + 1);
            }
            0
        });
        let kill_after = rng.below(n) as usize;
        let mut got = Vec::new();
        let mut child = Some(child);
        loop {
            match rx.pop_timeout(Duration::from_secs(30)) {
                Ok(v) => {
                    got.push(v);
                    if got.len() == kill_after {
                        if let Some(c) = child.take() {
                            c.kill9();
                            kills.record(c.wait_timeout(CHILD_TIMEOUT));
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("trial {trial}: {e}"),
            }
        }
        if let Some(c) = child {
            c.kill9();
            kills.record(c.wait_timeout(CHILD_TIMEOUT));
        }
        check_prefix(&got, last.get(0).unwrap(), "stamped producer");
    }
}

/// The stamped ring's consumer is killed; the parent takes its role over
/// (resuming from the head hint, corrected by the stamps) and gets
/// everything the dead one did not consume.
#[test]
fn stamped_consumer_killed_then_taken_over() {
    let mut rng = Rng::new();
    let mut kills = Kills::default();
    let n = 5000u64;
    for trial in 0..trials() {
        let ring =
            ObjectSegment::<StampedSpsc<u64>>::anonymous(if trial % 2 == 0 { 2 } else { 64 });
        let got = Array::<u64>::anonymous(vec![0u64; n as usize + 1]).unwrap();
        let consumer = fork(|| {
            let Ok(mut rx) = ring.view().consumer() else {
                return 2;
            };
            let mut count = 0;
            loop {
                match rx.pop_timeout(Duration::from_secs(30)) {
                    Ok(v) => {
                        let _ = got.set(1 + count, v);
                        count += 1;
                        let _ = got.set(0, count as u64);
                    }
                    Err(RecvTimeoutError::Disconnected) => return 0,
                    Err(_) => return 3,
                }
            }
        });
        let producer = fork(|| {
            let Ok(mut tx) = ring.view().producer() else {
                return 2;
            };
            for seq in 0..n {
                let mut value = seq;
                while let Err(e) = tx.push(value) {
                    match e {
                        SendError::Disconnected(v) => value = v,
                        SendError::Corrupt(_) => return 3,
                    }
                    std::thread::yield_now();
                }
            }
            0
        });
        std::thread::sleep(rng.micros(2000));
        consumer.kill9();
        kills.record(consumer.wait_timeout(CHILD_TIMEOUT));
        let mut rx = loop {
            if let Ok(rx) = ring.view().consumer() {
                break rx;
            }
            std::thread::yield_now();
        };
        let mut mine = Vec::new();
        loop {
            match rx.pop_timeout(Duration::from_secs(30)) {
                Ok(v) => mine.push(v),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("trial {trial}: {e}"),
            }
        }
        assert_eq!(producer.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
        let count = got.get(0).unwrap() as usize;
        let mut all: Vec<u64> = (0..count).map(|i| got.get(1 + i).unwrap()).collect();
        let recorded = all.len();
        all.extend(&mine);
        // In order with at most one gap (a message the dead consumer
        // consumed, with its EMPTY store, but did not record), right at the
        // hand-over; never a duplicate.
        let mut expected = 0;
        let mut gaps = 0;
        for (i, &v) in all.iter().enumerate() {
            if v != expected {
                assert!(
                    i == recorded && v == expected + 1,
                    "trial {trial}: order broken at {i}: {v} after {expected}"
                );
                gaps += 1;
            }
            expected = v + 1;
        }
        assert_eq!(expected, n, "trial {trial}: the tail was delivered");
        assert!(gaps <= 1);
    }
}
