//! The floors: the cheapest way to do what each case measures, with no
//! library in between. Every case's ratios are taken against its floor.
//!
//! | case | impl | what it is |
//! |---|---|---|
//! | `busy_rtt` | `floor` | two pinned processes ping-pong a counter through two cache lines (busy poll) |
//! | `blocking_rtt` | `floor` | the same with raw shared `FUTEX_WAIT`/`FUTEX_WAKE` on two words, always waking |
//! | `lock_uncontended` | `std` | `std::sync::Mutex<u64>` lock+increment+unlock in one process |
//! | `lock_handoff` | `pthread_pshared` | a `PTHREAD_PROCESS_SHARED` mutex passed back and forth between two processes ([`handoff`]) |
//! | `spsc_throughput` | `floor` | a minimal single-producer single-consumer ring of `u64` between two processes |
//! | `pipe_bytes` | `floor` | `memcpy` of one message (64 KiB) on one core |
//! | `map_get` | `std_hashmap` | `std::collections::HashMap<u64, u64>::get` at 50 % load, one process ([`map_get_std`]) |
//!
//! The protocols ([`handoff`], [`u32_pingpong`]) are public so shmkit's
//! own impls run exactly the same loop around their primitive.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use super::proc::{pin_index, spawn_peer, Scratch};
use super::timing::{peer_guard, spin_until, time_batched, time_each, STALL};
use super::{Impl, Measurement, Params, RunResult};

/// The floors this module provides, as `(case, impl)`.
#[must_use]
pub fn impls() -> Vec<(&'static str, Impl)> {
    vec![
        (
            "busy_rtt",
            Impl {
                name: "floor",
                run: busy_rtt,
            },
        ),
        (
            "blocking_rtt",
            Impl {
                name: "floor",
                run: blocking_rtt,
            },
        ),
        (
            "lock_uncontended",
            Impl {
                name: "std",
                run: lock_std,
            },
        ),
        (
            "lock_handoff",
            Impl {
                name: "pthread_pshared",
                run: handoff_pthread,
            },
        ),
        (
            "spsc_throughput",
            Impl {
                name: "floor",
                run: spsc_ring,
            },
        ),
        (
            "pipe_bytes",
            Impl {
                name: "floor",
                run: memcpy,
            },
        ),
        (
            "map_get",
            Impl {
                name: "std_hashmap",
                run: map_get_std,
            },
        ),
    ]
}

pub(crate) fn io(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Cache-line ping-pong: the parent stores `i` in `ping`, the peer sees it
/// and stores `i` in `pong` (128 bytes away); one sample per round trip.
fn busy_rtt(p: &Params) -> RunResult {
    let s = Scratch::new(4096).map_err(io("mmap"))?;
    let (ping, pong) = (s.atomic_u64(0), s.atomic_u64(128));
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        for i in 1..=total {
            // SYNC POINT: Acquire pairs with the parent's Release of `ping`.
            if spin_until("busy_rtt peer", || ping.load(Ordering::Acquire) == i).is_err() {
                return 1;
            }
            pong.store(i, Ordering::Release);
        }
        0
    })
    .map_err(io("fork"))?;
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let samples = time_each(p, |i| {
        ping.store(i + 1, Ordering::Release);
        // SYNC POINT: Acquire pairs with the peer's Release of `pong`.
        spin_until("busy_rtt floor", || pong.load(Ordering::Acquire) == i + 1)
    })?;
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}

/// Raw shared `FUTEX_WAIT` on `word` while it holds `expected`, for at
/// most 100 ms (so a dead peer is noticed).
fn futex_wait(word: &AtomicU32, expected: u32) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAIT only reads it and
    // `ts` is a valid relative timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Raw shared `FUTEX_WAKE` of one waiter on `word`.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access it.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1u32);
    }
}

/// Blocks (futex) until `word == target`; `Err` after [`STALL`].
fn futex_wait_for(what: &str, word: &AtomicU32, target: u32) -> Result<(), String> {
    let start = Instant::now();
    loop {
        // SYNC POINT: Acquire pairs with the peer's Release store before
        // its wake.
        let v = word.load(Ordering::Acquire);
        if v == target {
            return Ok(());
        }
        futex_wait(word, v);
        if start.elapsed() > STALL {
            return Err(format!("{what}: peer stalled for {STALL:?}"));
        }
    }
}

/// The blocking ping-pong protocol shared by the futex floor: `signal(i)`
/// makes the other side's `wait(i)` return. The parent signals then waits
/// for the echo; one sample per round trip.
///
/// `signal` and `wait` run in both processes (the peer is forked after
/// they are built), on different words per direction, chosen by `dir`
/// (0 = parent to peer, 1 = peer to parent).
///
/// # Errors
/// Fork or pinning failures, a stalled peer, or the peer's failure.
pub fn u32_pingpong(
    p: &Params,
    signal: impl Fn(usize, u32) -> Result<(), String>,
    wait: impl Fn(usize, u32) -> Result<(), String>,
) -> RunResult {
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        for i in 1..=total {
            let i = i as u32;
            if wait(0, i).is_err() || signal(1, i).is_err() {
                return 1;
            }
        }
        0
    })
    .map_err(io("fork"))?;
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let samples = time_each(p, |i| {
        let i = (i + 1) as u32;
        signal(0, i)?;
        wait(1, i)
    })?;
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}

/// Futex ping-pong: store then always `FUTEX_WAKE`; wait with
/// `FUTEX_WAIT` while the word is not yet the expected value. No spinning.
fn blocking_rtt(p: &Params) -> RunResult {
    let s = Scratch::new(4096).map_err(io("mmap"))?;
    let words = [s.atomic_u32(0), s.atomic_u32(128)];
    u32_pingpong(
        p,
        |d, i| {
            // SYNC POINT: Release pairs with the Acquire in futex_wait_for.
            words[d].store(i, Ordering::Release);
            futex_wake(words[d]);
            Ok(())
        },
        |d, i| futex_wait_for("blocking_rtt floor", words[d], i),
    )
}

/// Samples per batch for lock+unlock pairs (far cheaper than a clock read).
pub const LOCK_BATCH: u64 = 1000;

fn lock_std(p: &Params) -> RunResult {
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let m = std::sync::Mutex::new(0u64);
    let samples = time_batched(p, LOCK_BATCH, |_| {
        let mut g = m.lock().map_err(|_| "std mutex poisoned".to_string())?;
        *g += 1;
        Ok(())
    })?;
    std::hint::black_box(&m);
    Ok(Measurement::Latencies(samples))
}

/// The lock hand-off protocol: two processes (the parent and one forked
/// peer, pinned to `cpus[0]`/`cpus[1]`) take turns on a counter guarded by
/// the lock. Each loops `lock(); if turn is mine { turn += 1 }; unlock()`,
/// the parent owning even turns, the peer odd ones, so every turn needs
/// the lock to move to the other process. Reports turns per second as
/// `ns_per_op` = ns per turn, after `warmup` turns.
///
/// `lock`/`unlock` run in both processes; `turn` must live in shared
/// memory and is only touched under the lock.
///
/// # Errors
/// Fork or pinning failures, a lock error, or the peer's failure.
pub fn handoff(
    p: &Params,
    turn: &AtomicU64,
    lock: impl Fn() -> Result<(), String>,
    unlock: impl Fn() -> Result<(), String>,
) -> RunResult {
    let total = p.warmup + p.ops;
    // Relaxed: `turn` is only accessed between lock() and unlock(), whose
    // acquire/release order it.
    let step = |mine: u64| -> Result<u64, String> {
        lock()?;
        let t = turn.load(Ordering::Relaxed);
        if t % 2 == mine && t < total {
            turn.store(t + 1, Ordering::Relaxed);
        }
        unlock()?;
        Ok(t)
    };
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        loop {
            match step(1) {
                Ok(t) if t >= total => return 0,
                Ok(_) => {}
                Err(_) => return 1,
            }
        }
    })
    .map_err(io("fork"))?;
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let mut start = None;
    // Stall detection: the turn must move at least once per STALL.
    let (mut last_t, mut last_move, mut n) = (0, Instant::now(), 0u32);
    loop {
        let t = step(0)?;
        if t >= p.warmup && start.is_none() {
            start = Some((Instant::now(), t));
        }
        if t >= total {
            break;
        }
        n = n.wrapping_add(1);
        if n % 1024 == 0 {
            if t != last_t {
                (last_t, last_move) = (t, Instant::now());
            } else if last_move.elapsed() > STALL {
                return Err("lock_handoff: no progress; peer stalled".into());
            }
        }
    }
    let end = Instant::now();
    peer.join()?;
    let (start, t0) = start.ok_or("lock_handoff: never started")?;
    Ok(Measurement::Rate {
        ops: total - t0,
        bytes_per_op: 0,
        elapsed: end - start,
    })
}

/// A pthread mutex in shared memory, `PTHREAD_PROCESS_SHARED`, optionally
/// robust. Lives at the start of `s`.
pub(crate) struct PthreadMutex<'a> {
    m: *mut libc::pthread_mutex_t,
    _s: &'a Scratch,
}

impl<'a> PthreadMutex<'a> {
    pub(crate) fn new(s: &'a Scratch, robust: bool) -> Result<PthreadMutex<'a>, String> {
        let m = s.ptr().as_ptr().cast::<libc::pthread_mutex_t>();
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before use
        // and destroyed after; `m` is a page-aligned, zeroed, shared mapping
        // large enough for a pthread_mutex_t (checked by the caller's size).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            if libc::pthread_mutexattr_init(&mut attr) != 0 {
                return Err("pthread_mutexattr_init failed".into());
            }
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            if robust {
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            }
            let rc = libc::pthread_mutex_init(m, &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            if rc != 0 {
                return Err(format!("pthread_mutex_init: error {rc}"));
            }
        }
        Ok(PthreadMutex { m, _s: s })
    }

    pub(crate) fn lock(&self) -> Result<(), String> {
        // SAFETY: `m` was initialised by `new` and stays mapped.
        match unsafe { libc::pthread_mutex_lock(self.m) } {
            0 => Ok(()),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the lock after EOWNERDEAD.
                unsafe { libc::pthread_mutex_consistent(self.m) };
                Ok(())
            }
            rc => Err(format!("pthread_mutex_lock: error {rc}")),
        }
    }

    pub(crate) fn unlock(&self) -> Result<(), String> {
        // SAFETY: `m` is initialised and held by this thread.
        match unsafe { libc::pthread_mutex_unlock(self.m) } {
            0 => Ok(()),
            rc => Err(format!("pthread_mutex_unlock: error {rc}")),
        }
    }
}

fn handoff_pthread(p: &Params) -> RunResult {
    let s = Scratch::new(4096).map_err(io("mmap"))?;
    let m = PthreadMutex::new(&s, false)?;
    handoff(p, s.atomic_u64(1024), || m.lock(), || m.unlock())
}

/// Ring capacity (messages) of the raw SPSC floor.
const RING_CAP: u64 = 1024;

/// A minimal SPSC ring: consumer index at 0, producer index at 128, slots
/// from 256. Each side caches the other's index and refreshes it only when
/// the ring looks full/empty. The peer produces, the parent consumes and
/// times from message `warmup` to the last.
fn spsc_ring(p: &Params) -> RunResult {
    let s = Scratch::new(256 + RING_CAP as usize * 8).map_err(io("mmap"))?;
    let (head, tail) = (s.atomic_u64(0), s.atomic_u64(128));
    let slot = |i: u64| s.atomic_u64(256 + (i % RING_CAP) as usize * 8);
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        let mut cached_head = 0;
        for i in 0..total {
            if i - cached_head == RING_CAP {
                // SYNC POINT: Acquire pairs with the consumer's Release of
                // `head`: the slot we overwrite has been read.
                if spin_until("spsc producer", || {
                    cached_head = head.load(Ordering::Acquire);
                    i - cached_head < RING_CAP
                })
                .is_err()
                {
                    return 1;
                }
            }
            slot(i).store(i, Ordering::Relaxed);
            // SYNC POINT: Release publishes the slot to the consumer.
            tail.store(i + 1, Ordering::Release);
        }
        0
    })
    .map_err(io("fork"))?;
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let mut cached_tail = 0;
    let mut start = Instant::now();
    for i in 0..total {
        if i == p.warmup {
            start = Instant::now();
        }
        if i == cached_tail {
            // SYNC POINT: Acquire pairs with the producer's Release of `tail`.
            spin_until("spsc consumer", || {
                cached_tail = tail.load(Ordering::Acquire);
                cached_tail > i
            })?;
        }
        let v = slot(i).load(Ordering::Relaxed);
        if v != i {
            return Err(format!("spsc floor: read {v}, expected {i}"));
        }
        // SYNC POINT: Release hands the slot back to the producer.
        head.store(i + 1, Ordering::Release);
    }
    let elapsed = start.elapsed();
    peer.join()?;
    Ok(Measurement::Rate {
        ops: p.ops,
        bytes_per_op: 8,
        elapsed,
    })
}

/// One core copying `msg_size` bytes (default 64 KiB) at a time.
fn memcpy(p: &Params) -> RunResult {
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let n = p.msg_size.max(1);
    let src = vec![0x5au8; n];
    let mut dst = vec![0u8; n];
    let mut copy = || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    };
    for _ in 0..p.warmup {
        copy();
    }
    let start = Instant::now();
    for _ in 0..p.ops {
        copy();
    }
    Ok(Measurement::Rate {
        ops: p.ops,
        bytes_per_op: n as u64,
        elapsed: start.elapsed(),
    })
}

/// Capacity of every map of case `map_get`; half of it is filled.
pub const MAP_CAPACITY: usize = 4096;
/// Lookups per timed batch in `map_get`.
pub const MAP_BATCH: u64 = 1000;

/// The keys of case `map_get`: the `MAP_CAPACITY / 2` present keys
/// (random, fixed seed), and the order they are looked up in (a shuffled
/// cycle through all of them, so no prefetcher walks it).
#[must_use]
pub fn map_keys() -> (Vec<u64>, Vec<u64>) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let present: Vec<u64> = (0..MAP_CAPACITY / 2).map(|_| next()).collect();
    let mut order = present.clone();
    for i in (1..order.len()).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    (present, order)
}

/// `map_get`/`std_hashmap`: `get` on a `std::collections::HashMap<u64,
/// u64>` (default hasher) made `with_capacity(MAP_CAPACITY)` and filled
/// with [`map_keys`], in one process; values summed so nothing is
/// optimised away.
pub fn map_get_std(p: &Params) -> RunResult {
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let (present, order) = map_keys();
    let mut map = std::collections::HashMap::<u64, u64>::with_capacity(MAP_CAPACITY);
    for &k in &present {
        map.insert(k, k ^ 1);
    }
    let mut sum = 0u64;
    let samples = time_batched(p, MAP_BATCH, |i| {
        let k = order[i as usize % order.len()];
        let v = std::hint::black_box(&map)
            .get(&k)
            .ok_or("a key went missing")?;
        sum = sum.wrapping_add(*v);
        Ok(())
    })?;
    std::hint::black_box(sum);
    Ok(Measurement::Latencies(samples))
}
