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
//! | `mpmc_pxc` | `vyukov` | Dmitry Vyukov's bounded MPMC queue ([`Vyukov`]), `--producers` × `--consumers` processes |
//! | `busy_rtt` | `vyukov` | (not the floor) the `floor`'s ping-pong through two [`Vyukov`] queues |
//!
//! The protocols ([`handoff`], [`u32_pingpong`]) are public so shmkit's
//! own impls run exactly the same loop around their primitive.

use std::ptr::NonNull;
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
        (
            "mpmc_pxc",
            Impl {
                name: "vyukov",
                run: vyukov_pxc,
            },
        ),
        (
            "busy_rtt",
            Impl {
                name: "vyukov",
                run: vyukov_rtt,
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

/// Dmitry Vyukov's bounded multi-producer multi-consumer queue of `u64`
/// in shared memory, in its minimal form: the floor of the MPMC cases.
/// Not crash-safe (a producer killed between its `enqueue` CAS and its
/// stamp store wedges the queue) and it trusts every byte: a floor, not
/// a product.
///
/// Layout from `base` in a [`Scratch`]: the enqueue position alone on a
/// 128-byte line, the dequeue position on the next, then `capacity`
/// cells of `(sequence, value)`, 16 bytes each (four to a 64-byte line,
/// as in the original).
pub struct Vyukov<'a> {
    enqueue: &'a AtomicU64,
    dequeue: &'a AtomicU64,
    cells: NonNull<AtomicU64>,
    mask: u64,
    _scratch: std::marker::PhantomData<&'a Scratch>,
}

impl<'a> Vyukov<'a> {
    /// Bytes a queue of `capacity` cells needs.
    #[must_use]
    pub fn bytes(capacity: usize) -> usize {
        256 + 16 * capacity
    }

    /// A fresh queue of `capacity` (a power of two) cells at `base` in
    /// `s` (before the peers are forked).
    ///
    /// # Panics
    /// If the capacity is not a power of two or the queue does not fit.
    #[must_use]
    pub fn init(s: &'a Scratch, base: usize, capacity: usize) -> Vyukov<'a> {
        assert!(capacity.is_power_of_two() && base % 128 == 0);
        assert!(base + Self::bytes(capacity) <= s.len(), "scratch too small");
        let q = Vyukov {
            enqueue: s.atomic_u64(base),
            dequeue: s.atomic_u64(base + 128),
            // SAFETY: in range (asserted above), 8-aligned.
            cells: unsafe { NonNull::new_unchecked(s.ptr().as_ptr().add(base + 256).cast()) },
            mask: capacity as u64 - 1,
            _scratch: std::marker::PhantomData,
        };
        for i in 0..capacity as u64 {
            q.seq(i).store(i, Ordering::Relaxed);
        }
        q
    }

    #[inline(always)]
    fn seq(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: `pos & mask` < capacity: cell inside the mapping, which
        // lives as long as 'a and is only accessed atomically.
        unsafe { &*self.cells.as_ptr().add(2 * (pos & self.mask) as usize) }
    }

    #[inline(always)]
    fn value(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: as in `seq`, the word after it.
        unsafe { &*self.cells.as_ptr().add(2 * (pos & self.mask) as usize + 1) }
    }

    /// Pushes `v`; `false` if full.
    #[inline]
    pub fn try_push(&self, v: u64) -> bool {
        let mut pos = self.enqueue.load(Ordering::Relaxed);
        loop {
            // SYNC POINT: Acquire pairs with the consumer's Release of the
            // sequence: it finished reading the cell's previous value.
            let seq = self.seq(pos).load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos) as i64;
            if dif == 0 {
                match self.enqueue.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.value(pos).store(v, Ordering::Relaxed);
                        // SYNC POINT: Release publishes the value.
                        self.seq(pos).store(pos + 1, Ordering::Release);
                        return true;
                    }
                    Err(now) => pos = now,
                }
            } else if dif < 0 {
                return false;
            } else {
                pos = self.enqueue.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops a value; `None` if empty.
    #[inline]
    pub fn try_pop(&self) -> Option<u64> {
        let mut pos = self.dequeue.load(Ordering::Relaxed);
        loop {
            // SYNC POINT: Acquire pairs with the producer's Release.
            let seq = self.seq(pos).load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos + 1) as i64;
            if dif == 0 {
                match self.dequeue.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let v = self.value(pos).load(Ordering::Relaxed);
                        // SYNC POINT: Release hands the cell to the
                        // producer of the next lap.
                        self.seq(pos).store(pos + self.mask + 1, Ordering::Release);
                        return Some(v);
                    }
                    Err(now) => pos = now,
                }
            } else if dif < 0 {
                return None;
            } else {
                pos = self.dequeue.load(Ordering::Relaxed);
            }
        }
    }
}

/// Spins until `ready()` holds, yielding the CPU every 64 attempts (the
/// P×C cases run more processes than CPUs: a waiter must let the process
/// it waits for run); `Err` after [`STALL`]. The MPMC floor and shmkit's
/// MPMC impls wait with this same loop.
///
/// # Errors
/// A message naming `what` when nothing happens for [`STALL`].
#[inline]
pub fn spin_yield_until(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let mut n: u32 = 0;
    let mut start: Option<Instant> = None;
    loop {
        if ready() {
            return Ok(());
        }
        n = n.wrapping_add(1);
        if n % 64 == 0 {
            std::thread::yield_now();
            if n % 4096 == 0 {
                let s = *start.get_or_insert_with(Instant::now);
                if s.elapsed() > STALL {
                    return Err(format!("{what}: peer stalled for {STALL:?}"));
                }
            }
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Capacity of the queues of `mpmc_pxc` (floor and shmkit).
pub const PXC_CAPACITY: usize = 1024;

/// The P×C protocol shared by the MPMC floor and shmkit's MPMC impls:
/// `producers` processes each push `(warmup + ops) / producers` values
/// (`0..per`), `consumers` processes pop until `consume` says they are
/// done; processes are pinned round-robin over `cpus`; the clock runs from
/// the start signal until every process has exited.
///
/// `produce(start, per)` attaches, calls `start()` (which waits for the
/// start signal), and pushes the values `0..per` (waiting as it likes);
/// `consume(start)` attaches, calls `start()` and pops until the end of
/// the stream. Each runs in its own process and returns `false` on
/// failure. `finish()` runs in the parent after every producer exited and
/// before the consumers are joined (the floor pushes its end markers
/// there).
///
/// # Errors
/// Fork failures, peers that do not start, or a peer's failure.
pub fn pxc(
    p: &Params,
    produce: impl Fn(&dyn Fn(), u64) -> bool,
    consume: impl Fn(&dyn Fn()) -> bool,
    finish: impl FnOnce() -> Result<(), String>,
) -> RunResult {
    let (np, nc) = (p.producers.max(1), p.consumers.max(1));
    let per = (p.warmup + p.ops) / np as u64;
    let s = Scratch::new(4096).map_err(io("mmap"))?;
    let (ready, go) = (s.atomic_u32(0), s.atomic_u32(128));
    let n = p.cpus.len().max(1);
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for i in 0..np + nc {
        let cpu = p.cpus.get(i % n).copied();
        let (produce, consume) = (&produce, &consume);
        let peer = spawn_peer(cpu, move || {
            peer_guard();
            let start = || {
                ready.fetch_add(1, Ordering::SeqCst);
                // SYNC POINT: Acquire pairs with the parent's Release of
                // `go`.
                while go.load(Ordering::Acquire) == 0 {
                    std::thread::yield_now();
                }
            };
            let ok = if i < np {
                produce(&start, per)
            } else {
                consume(&start)
            };
            i32::from(!ok) * 3
        })
        .map_err(io("fork"))?;
        if i < np {
            producers.push(peer);
        } else {
            consumers.push(peer);
        }
    }
    let t_wait = Instant::now();
    while ready.load(Ordering::SeqCst) < (np + nc) as u32 {
        if t_wait.elapsed() > STALL {
            return Err("peers did not start".into());
        }
        std::thread::yield_now();
    }
    let t0 = Instant::now();
    go.store(1, Ordering::Release);
    for peer in producers {
        peer.join()?;
    }
    finish()?;
    for peer in consumers {
        peer.join()?;
    }
    Ok(Measurement::Rate {
        ops: per * np as u64,
        bytes_per_op: 8,
        elapsed: t0.elapsed(),
    })
}

/// End-of-stream marker of the Vyukov floor's P×C run (values pushed are
/// below it).
const VYUKOV_END: u64 = u64::MAX;

/// `mpmc_pxc` / `vyukov`: [`pxc`] over one [`Vyukov`] queue of
/// [`PXC_CAPACITY`]; producers and consumers wait with
/// [`spin_yield_until`]; the parent pushes one end marker per consumer
/// once the producers are done.
fn vyukov_pxc(p: &Params) -> RunResult {
    let s = Scratch::new(Vyukov::bytes(PXC_CAPACITY)).map_err(io("mmap"))?;
    let q = Vyukov::init(&s, 0, PXC_CAPACITY);
    pxc(
        p,
        |start, per| {
            start();
            (0..per).all(|k| spin_yield_until("vyukov producer", || q.try_push(k)).is_ok())
        },
        |start| {
            start();
            loop {
                let mut v = 0;
                if spin_yield_until("vyukov consumer", || q.try_pop().map(|x| v = x).is_some())
                    .is_err()
                {
                    return false;
                }
                if v == VYUKOV_END {
                    return true;
                }
            }
        },
        || {
            for _ in 0..p.consumers.max(1) {
                spin_yield_until("vyukov end", || q.try_push(VYUKOV_END))?;
            }
            Ok(())
        },
    )
}

/// Capacity of each direction's queue in the round-trip impls (shmkit's
/// use the same).
pub const RTT_CAPACITY: usize = 64;

/// `busy_rtt` / `vyukov`: the `floor`'s ping-pong, each direction a
/// [`Vyukov`] queue of [`RTT_CAPACITY`]: the parent pushes `i` and spins
/// for its echo, the peer spins for `i` and pushes it back.
fn vyukov_rtt(p: &Params) -> RunResult {
    let len = Vyukov::bytes(RTT_CAPACITY).next_multiple_of(128);
    let s = Scratch::new(2 * len).map_err(io("mmap"))?;
    let (ping, pong) = (
        Vyukov::init(&s, 0, RTT_CAPACITY),
        Vyukov::init(&s, len, RTT_CAPACITY),
    );
    let total = p.warmup + p.ops;
    let peer = spawn_peer(p.cpus.get(1).copied(), || {
        peer_guard();
        for i in 1..=total {
            let mut v = 0;
            if spin_until("vyukov peer", || ping.try_pop().map(|x| v = x).is_some()).is_err()
                || v != i
                || spin_until("vyukov peer", || pong.try_push(i)).is_err()
            {
                return 1;
            }
        }
        0
    })
    .map_err(io("fork"))?;
    pin_index(&p.cpus, 0).map_err(io("pin"))?;
    let samples = time_each(p, |i| {
        let i = i + 1;
        spin_until("vyukov", || ping.try_push(i))?;
        let mut v = 0;
        spin_until("vyukov", || pong.try_pop().map(|x| v = x).is_some())?;
        if v != i {
            return Err(format!("vyukov: echo {v}, expected {i}"));
        }
        Ok(())
    })?;
    peer.join()?;
    Ok(Measurement::Latencies(samples))
}
