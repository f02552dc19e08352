//! Helpers shared by the queue process tests.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A message tag: producer in the high 16 bits, sequence number below.
pub fn tag(producer: u64, seq: u64) -> u64 {
    (producer << 48) | seq
}

pub fn untag(v: u64) -> (u64, u64) {
    (v >> 48, v & ((1 << 48) - 1))
}

/// Whether the heavier runs were asked for.
pub fn long() -> bool {
    std::env::var("SHMKIT_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// A small xorshift generator seeded from the clock (the seed is printed so
/// a failure can be replayed with SHMKIT_SEED).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::env::var("SHMKIT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("rng seed {seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn micros(&mut self, max: u64) -> Duration {
        Duration::from_micros(self.below(max))
    }
}

/// Generous bound for a child that should finish.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// A start line for forked children: each calls [`StartLine::arrive`] after
/// attaching to the queue; the parent's [`StartLine::release`] waits for
/// all of them, then lets them go. Without it a fast producer may finish
/// and detach before a slow one attached, which (correctly) looks like
/// "every producer is gone" to the consumers.
pub struct StartLine {
    flags: shmkit_posix::SharedArray<u64>,
    n: usize,
}

impl StartLine {
    pub fn new(n: usize) -> StartLine {
        StartLine {
            flags: shmkit_posix::SharedArray::anonymous(n + 1).unwrap(),
            n,
        }
    }

    /// Child `i` is attached; waits for the go.
    pub fn arrive(&self, i: usize) {
        let _ = self.flags.set(i, 1);
        while self.flags.get(self.n) != Some(1) {
            std::thread::yield_now();
        }
    }

    /// Waits until every child arrived, then lets them all go.
    pub fn release(&self) {
        while (0..self.n).any(|i| self.flags.get(i) != Some(1)) {
            std::thread::yield_now();
        }
        let _ = self.flags.set(self.n, 1);
    }
}
