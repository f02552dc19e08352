//! Hostile bytes in a byte-message queue's shared words (stamps, hints,
//! length words, message bytes), scribbled between operations: every call
//! returns (an error, or some message no longer than `max_len`), none
//! panics, reads out of bounds or outlives its deadline.
#![cfg(not(loom))]

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use shmkit_core::primitive::AtomicU64;
use shmkit_core::queue::mpmc::{self, QueueControl};
use shmkit_core::queue::msg::{ByteQueue, MsgParams, MsgRecvError, MsgSendError};
use shmkit_core::queue::roles::RoleSlot;

/// A small xorshift generator (no dependency, reproducible).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// No call may outlive its deadline by more than this: a hang check, not
/// a speed target.
const HANG: Duration = Duration::from_secs(5);

const MAX_LEN: usize = 20;
const CAP: usize = 8;

#[test]
fn msg_garbage_everywhere_gives_errors_not_hangs_or_overruns() {
    let p = MsgParams::new(CAP, MAX_LEN).with_registry(2, 1);
    let stride = p.slot().unwrap().stride_words;
    let ctl = QueueControl::new();
    let producers = [RoleSlot::new(), RoleSlot::new()];
    let consumers = [RoleSlot::new()];
    let words: Vec<AtomicU64> = (0..p.slot_words()).map(|_| AtomicU64::new(0)).collect();
    let q = ByteQueue::from_parts(&ctl, &producers, &consumers, &words, MAX_LEN).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let (head, tail) = q.raw().control_positions();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut buf = [0u8; MAX_LEN];
    let (mut sent, mut corrupt, mut received) = (0, 0, 0);
    for round in 0..3000u64 {
        // A scribble every other round or so: often enough to be met,
        // rarely enough for messages to get through in between.
        for _ in 0..rng.next() % 3 / 2 {
            let slot = (rng.next() % CAP as u64) as usize * stride;
            let r = rng.next();
            match r % 4 {
                // A stamp: plausible or anything.
                0 => words[slot].store(
                    mpmc::stamp(r >> 40 & 7, r >> 20 & 0xfff, r >> 10 & 3),
                    Relaxed,
                ),
                1 => words[slot].store(r, Relaxed),
                // A length word: small, just too long, or anything.
                2 => words[slot + 1].store(
                    [r % 24, MAX_LEN as u64 + 1, r, u64::MAX][(r >> 8) as usize % 4],
                    Relaxed,
                ),
                // Message bytes.
                _ => words[slot + 2 + (r >> 8) as usize % (stride - 2)].store(r, Relaxed),
            }
        }
        match rng.next() % 20 {
            0 => tail.store(rng.next(), Relaxed),
            1 => head.store(rng.next() >> (rng.next() % 64), Relaxed),
            _ => {}
        }
        let t0 = Instant::now();
        let len = (round % (MAX_LEN as u64 + 1)) as usize;
        match tx.try_send(&vec![round as u8; len]) {
            Ok(()) => sent += 1,
            Err(MsgSendError::Corrupt | MsgSendError::Full) => {}
            Err(e) => panic!("{e}"),
        }
        for r in [
            rx.try_recv_into(&mut buf),
            rx.recv_into_timeout(&mut buf, Duration::from_micros(200)),
        ] {
            match r {
                Ok(n) => {
                    assert!(n <= MAX_LEN);
                    received += 1;
                }
                Err(MsgRecvError::Corrupt) => corrupt += 1,
                Err(MsgRecvError::Empty | MsgRecvError::Timeout) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(t0.elapsed() < HANG, "round {round} hung");
        let _ = q.len();
    }
    // The garbage was seen for what it is at least sometimes, and did not
    // stop everything either.
    assert!(
        sent > 0 && received > 0 && corrupt > 0,
        "{sent} {received} {corrupt}"
    );
}

/// A committed message whose length word a peer overwrote with more than
/// `max_len`: delivered as `Corrupt` (and consumed), never copied past the
/// buffer; the messages after it arrive intact.
#[test]
fn msg_length_beyond_max_len_is_corrupt_and_consumed() {
    let p = MsgParams::new(4, MAX_LEN).with_registry(1, 1);
    let stride = p.slot().unwrap().stride_words;
    let ctl = QueueControl::new();
    let (producers, consumers) = ([RoleSlot::new()], [RoleSlot::new()]);
    let words: Vec<AtomicU64> = (0..p.slot_words()).map(|_| AtomicU64::new(0)).collect();
    let q = ByteQueue::from_parts(&ctl, &producers, &consumers, &words, MAX_LEN).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    tx.try_send(b"first").unwrap();
    tx.try_send(b"second").unwrap();
    // The length words of both: slot 0's and slot 1's.
    for (slot, bad) in [(0, MAX_LEN as u64 + 1), (1, u64::MAX)] {
        words[slot * stride + 1].store(bad, Relaxed);
        let mut buf = [0xaau8; MAX_LEN + 8];
        assert_eq!(rx.try_recv_into(&mut buf), Err(MsgRecvError::Corrupt));
        assert!(buf.iter().all(|&b| b == 0xaa), "nothing copied");
    }
    tx.try_send(b"again").unwrap();
    let mut buf = [0u8; MAX_LEN];
    let n = rx.try_recv_into(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"again");
}
