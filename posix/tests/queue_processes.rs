//! Queues and pipes between real processes: stress P producers × C
//! consumers, the seeds' programs, attach rules and hostile bytes.

mod common;

use std::time::Duration;

use common::{tag, untag, CHILD_TIMEOUT};
use shmkit_core::queue::pipe::{PipeRecvError, PipeSendError};
use shmkit_core::queue::roles::AttachError;
use shmkit_core::queue::{RecvError, RecvTimeoutError, TryRecvError, TrySendError};
use shmkit_posix::pipe::{End, OneWayPipe, Pipe};
use shmkit_posix::queue::{Queue, QueueParams};
use shmkit_posix::ring::Ring;
use shmkit_posix::Array;
use shmkit_testkit::{fork, unique_name, Exit};

fn per_producer(long_n: u64, n: u64) -> u64 {
    if common::long() {
        long_n
    } else {
        n
    }
}

/// One producer process, one consumer (the parent): FIFO, nothing lost,
/// sum checked; then `Disconnected` once the producer exits.
fn spsc_run(capacity: usize, n: u64, batched: bool) {
    let ring = Ring::<u64>::anonymous(capacity).unwrap();
    let mut rx = ring.view().consumer().unwrap();
    let child = fork(|| {
        let Ok(mut tx) = ring.view().producer() else {
            return 2;
        };
        if batched {
            let mut next = 0;
            while next < n {
                let batch: Vec<u64> = (next..(next + 7).min(n)).collect();
                match tx.push_slice(&batch) {
                    Ok(k) => next += k as u64,
                    Err(_) => return 3,
                }
            }
        } else {
            for i in 0..n {
                if tx.push(i).is_err() {
                    return 3;
                }
            }
        }
        0
    });
    let mut expected = 0;
    let mut sum = 0u64;
    loop {
        match rx.pop_timeout(Duration::from_secs(30)) {
            Ok(v) => {
                assert_eq!(v, expected, "FIFO order");
                expected += 1;
                sum += v;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("pop failed: {e}"),
        }
    }
    assert_eq!(expected, n);
    assert_eq!(sum, n * (n - 1) / 2);
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
}

#[test]
fn spsc_one_by_one_in_order() {
    spsc_run(64, per_producer(2_000_000, 100_000), false);
}

#[test]
fn spsc_tiny_capacity_blocks_constantly() {
    spsc_run(2, per_producer(200_000, 20_000), false);
}

#[test]
fn spsc_batched_wraps_in_order() {
    spsc_run(16, per_producer(1_000_000, 50_000), true);
}

/// P producer processes × C consumer processes through an MPMC queue.
/// Consumers record what they got in their own region of a shared array;
/// the parent checks every message arrived exactly once, per-producer
/// order per consumer, and the sums.
fn mpmc_run(producers: u64, consumers: u64, capacity: usize, n: u64) {
    let q = Queue::<u64>::anonymous(capacity).unwrap();
    let total = (producers * n) as usize;
    // Region of consumer c: [count, values...] of total + 1 slots.
    let got = Array::<u64>::anonymous((total + 1) * consumers as usize).unwrap();
    let start = common::StartLine::new((producers + consumers) as usize);
    let mut children = Vec::new();
    for c in 0..consumers {
        let (q, got, start) = (&q, &got, &start);
        children.push(fork(move || {
            let Ok(mut rx) = q.view().consumer() else {
                return 2;
            };
            start.arrive(c as usize);
            let base = c as usize * (total + 1);
            let mut last = vec![None::<u64>; producers as usize];
            let mut count = 0;
            loop {
                match rx.pop_timeout(Duration::from_secs(30)) {
                    Ok(v) => {
                        let (p, seq) = untag(v);
                        let Some(prev) = last.get_mut(p as usize) else {
                            return 4;
                        };
                        if prev.is_some_and(|s| s >= seq) {
                            return 5; // per-producer order broken
                        }
                        *prev = Some(seq);
                        if got.set(base + 1 + count, v).is_err() {
                            return 6;
                        }
                        count += 1;
                        let _ = got.set(base, count as u64);
                    }
                    Err(RecvTimeoutError::Disconnected) => return 0,
                    Err(_) => return 3,
                }
            }
        }));
    }
    for p in 0..producers {
        let (q, start) = (&q, &start);
        children.push(fork(move || {
            let Ok(mut tx) = q.view().producer() else {
                return 2;
            };
            start.arrive((consumers + p) as usize);
            for seq in 0..n {
                if tx.push(tag(p, seq)).is_err() {
                    return 3;
                }
            }
            0
        }));
    }
    start.release();
    for child in children {
        assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    }
    let mut seen = vec![0u8; total];
    let mut sum = 0u64;
    for c in 0..consumers as usize {
        let base = c * (total + 1);
        let count = got.get(base).unwrap() as usize;
        for i in 0..count {
            let (p, seq) = untag(got.get(base + 1 + i).unwrap());
            let slot = (p * n + seq) as usize;
            seen[slot] += 1;
            sum += seq;
        }
    }
    assert!(seen.iter().all(|&k| k == 1), "every message exactly once");
    assert_eq!(sum, producers * n * (n - 1) / 2);
}

#[test]
fn mpmc_1x1() {
    mpmc_run(1, 1, 64, per_producer(500_000, 40_000));
}

#[test]
fn mpmc_2x2() {
    mpmc_run(2, 2, 64, per_producer(300_000, 20_000));
}

#[test]
fn mpmc_4x4() {
    mpmc_run(4, 4, 64, per_producer(100_000, 5_000));
}

#[test]
fn mpmc_2x2_tiny_capacity() {
    mpmc_run(2, 2, 1, per_producer(50_000, 3_000));
}

#[test]
fn mpmc_4x4_tiny_capacity() {
    mpmc_run(4, 4, 2, per_producer(20_000, 1_000));
}

/// The seed: return values from two child processes through a Queue.
#[test]
fn two_children_return_values_through_a_queue() {
    let q = Queue::<[u64; 2]>::anonymous(4).unwrap();
    // The parent holds a producer handle too, as Python's parent holds the
    // queue: otherwise a child that finished before the other attached
    // would (rightly) look like "every producer is gone" for a moment.
    let keep_open = q.view().producer().unwrap();
    let children: Vec<_> = (1..=2u64)
        .map(|i| {
            let q = &q;
            fork(move || {
                let Ok(mut tx) = q.view().producer() else {
                    return 2;
                };
                tx.push([i, i * 100]).map_or(3, |()| 0)
            })
        })
        .collect();
    let mut rx = q.view().consumer().unwrap();
    let mut got = vec![rx.pop().unwrap(), rx.pop().unwrap()];
    got.sort_unstable();
    assert_eq!(got, vec![[1, 100], [2, 200]]);
    for c in children {
        assert_eq!(c.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    }
    // Every producer gone, queue drained: Disconnected.
    drop(keep_open);
    assert_eq!(rx.pop(), Err(RecvError::Disconnected));
}

/// The seed: a Pipe producer sends 0..9 then closes; the consumer gets all
/// ten, then EOF.
#[test]
fn pipe_sends_ten_then_eof() {
    let pipe = OneWayPipe::anonymous(64).unwrap();
    let rx = pipe.receiver().unwrap();
    let child = fork(|| {
        let Ok(tx) = pipe.sender() else {
            return 2;
        };
        for i in 0..10u32 {
            // Tiny ring: sends block until the parent reads.
            if tx.send_bytes(&i.to_le_bytes()).is_err() {
                return 3;
            }
        }
        drop(tx);
        0
    });
    for i in 0..10u32 {
        assert_eq!(rx.recv_bytes().unwrap(), i.to_le_bytes());
    }
    assert_eq!(rx.recv_bytes(), Err(PipeRecvError::Eof));
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
}

/// Variable-length messages, many wrapping around the end of the ring,
/// through a named duplex pipe opened by a child: echo and compare.
#[test]
fn duplex_pipe_echoes_variable_messages_across_the_wrap() {
    let name = unique_name("duplex");
    let pipe = Pipe::create(&name, 256).unwrap();
    let child_name = name.clone();
    let child = fork(move || {
        let Ok(pipe) = Pipe::open(&child_name) else {
            return 2;
        };
        let Ok(b) = pipe.end(End::B) else {
            return 3;
        };
        loop {
            match b.recv_bytes() {
                Ok(msg) => {
                    if b.send_bytes(&msg).is_err() {
                        return 4;
                    }
                }
                Err(PipeRecvError::Eof) => return 0,
                Err(_) => return 5,
            }
        }
    });
    // Attached after the fork: a copy of `a` in the child would keep it
    // open there (a handle is one handle in every process holding a copy,
    // as Python's Connection), and the child would wait for its own EOF.
    let a = pipe.end(End::A).unwrap();
    assert!(matches!(pipe.end(End::A), Err(AttachError::Taken { .. })));
    let mut buf = [0u8; 252];
    for i in 0..2000usize {
        let len = (i * 37) % 253;
        let msg: Vec<u8> = (0..len).map(|k| (k + i) as u8).collect();
        a.send_bytes(&msg).unwrap();
        let n = a.recv_bytes_into(&mut buf).unwrap();
        assert_eq!(&buf[..n], &msg[..]);
    }
    assert_eq!(
        a.try_send_bytes(&[0; 253]),
        Err(PipeSendError::TooLarge { len: 253, max: 252 })
    );
    drop(a);
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
}

#[test]
fn too_small_buffer_loses_nothing() {
    let pipe = OneWayPipe::anonymous(32).unwrap();
    let (tx, rx) = (pipe.sender().unwrap(), pipe.receiver().unwrap());
    assert!(!rx.poll(Duration::ZERO).unwrap());
    tx.try_send_bytes(b"0123456789").unwrap();
    let mut small = [0u8; 4];
    assert_eq!(
        rx.try_recv_bytes_into(&mut small),
        Err(PipeRecvError::BufferTooSmall { needed: 10 })
    );
    assert!(rx.poll(Duration::ZERO).unwrap());
    assert_eq!(rx.recv_bytes().unwrap(), b"0123456789");
    assert_eq!(
        rx.try_recv_bytes_into(&mut small),
        Err(PipeRecvError::Empty)
    );
    let t0 = std::time::Instant::now();
    assert!(!rx.poll(Duration::from_millis(20)).unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(20));
}

/// One producer may attach; a second attach is an error; a dead holder's
/// role is taken over and the new producer continues where it stopped.
#[test]
fn single_attach_and_takeover_of_a_dead_producer() {
    let ring = Ring::<u32>::anonymous(8).unwrap();
    let child = fork(|| {
        let Ok(mut tx) = ring.view().producer() else {
            return 2;
        };
        if tx.try_push(1).is_err() {
            return 3;
        }
        // Exit without dropping `tx`: the role stays registered to a pid
        // that will be dead.
        std::mem::forget(tx);
        0
    });
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    let mut tx = ring.view().producer().expect("dead holder taken over");
    assert!(matches!(
        ring.view().producer(),
        Err(AttachError::Taken { pid }) if pid == std::process::id()
    ));
    tx.try_push(2).unwrap();
    let mut rx = ring.view().consumer().unwrap();
    assert_eq!(rx.try_pop(), Ok(1));
    assert_eq!(rx.try_pop(), Ok(2));
    assert_eq!(rx.try_pop(), Err(TryRecvError::Empty));
    drop(tx);
    assert_eq!(rx.try_pop(), Err(TryRecvError::Disconnected));
}

/// A consumer that is gone makes a full ring's producer fail instead of
/// blocking.
#[test]
fn producer_sees_disconnect_when_consumer_dies() {
    let ring = Ring::<u64>::anonymous(2).unwrap();
    let mut tx = ring.view().producer().unwrap();
    let child = fork(|| {
        let Ok(rx) = ring.view().consumer() else {
            return 2;
        };
        std::mem::forget(rx);
        0
    });
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    tx.push(1).unwrap();
    tx.push(2).unwrap();
    let t0 = std::time::Instant::now();
    assert!(matches!(
        tx.push_timeout(3, Duration::from_secs(10)),
        Err(shmkit_core::queue::SendTimeoutError::Disconnected(3))
    ));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn timeouts_are_never_early() {
    let q = Queue::<u8>::anonymous(1).unwrap();
    let (mut tx, mut rx) = (q.view().producer().unwrap(), q.view().consumer().unwrap());
    let t0 = std::time::Instant::now();
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(t0.elapsed() >= Duration::from_millis(30));
    tx.try_push(1).unwrap();
    assert!(matches!(tx.try_push(2), Err(TrySendError::Full(2))));
    let t0 = std::time::Instant::now();
    assert!(tx.push_timeout(2, Duration::from_millis(30)).is_err());
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

/// Garbage in the shared indices gives errors, never a crash.
#[test]
fn hostile_ring_indices_give_corrupt() {
    use std::sync::atomic::Ordering::Relaxed;
    let ring = Ring::<u64>::anonymous(8).unwrap();
    let (mut tx, mut rx) = (
        ring.view().producer().unwrap(),
        ring.view().consumer().unwrap(),
    );
    let (head, tail) = ring.view().control().raw_indices();
    tail.store(1000, Relaxed);
    assert_eq!(rx.try_pop(), Err(TryRecvError::Corrupt));
    assert_eq!(rx.pop(), Err(RecvError::Corrupt));
    head.store(u32::MAX - 3, Relaxed);
    for _ in 0..10 {
        // The producer's own tail is 0; head far ahead is impossible.
        let _ = tx.try_push(1);
    }
    let mut rng = common::Rng::new();
    for _ in 0..2000 {
        head.store(rng.next() as u32, Relaxed);
        tail.store(rng.next() as u32, Relaxed);
        let _ = tx.try_push(7);
        let _ = tx.push_slice(&[1, 2, 3]);
        let _ = rx.try_pop();
        let mut out = [0; 5];
        let _ = rx.pop_into(&mut out);
        if let Ok(c) = rx.read_chunk(3) {
            let (a, b) = c.slices();
            assert_eq!(a.len() + b.len(), 3);
        }
    }
}

#[test]
fn hostile_queue_bytes_give_errors_not_crashes() {
    let q = Queue::<u64>::anonymous(QueueParams::new(4).with_registry(2, 2)).unwrap();
    let (mut tx, mut rx) = (q.view().producer().unwrap(), q.view().consumer().unwrap());
    let payload = q.segment().payload();
    let len = q.segment().payload_len();
    let mut rng = common::Rng::new();
    for round in 0..300 {
        // Scribble over random 8-byte words of the whole payload (control,
        // registries, stamps, data) with relaxed atomic stores.
        for _ in 0..8 {
            let off = (rng.below(len as u64 / 8) * 8) as usize;
            // SAFETY: off + 8 <= len, 8-aligned inside the mapped payload;
            // other accesses to these bytes are atomic too.
            let word =
                unsafe { std::sync::atomic::AtomicU64::from_ptr(payload.as_ptr().add(off).cast()) };
            word.store(
                rng.next() >> (rng.below(4) * 16),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let _ = tx.try_push(round);
        let _ = rx.try_pop();
        let _ = rx.pop_timeout(Duration::from_micros(50));
        let _ = q.view().len();
    }
}

#[test]
fn hostile_pipe_lengths_give_corrupt() {
    let pipe = OneWayPipe::anonymous(64).unwrap();
    let (tx, rx) = (pipe.sender().unwrap(), pipe.receiver().unwrap());
    tx.try_send_bytes(b"abc").unwrap();
    // Overwrite the length header (first 4 data bytes, after the 640-byte
    // control block) with an impossible length.
    let data = pipe.segment().payload().as_ptr().wrapping_add(640);
    // SAFETY: inside the payload, 4-aligned, accessed atomically.
    let header = unsafe { std::sync::atomic::AtomicU32::from_ptr(data.cast()) };
    header.store(1 << 30, std::sync::atomic::Ordering::Relaxed);
    let mut buf = [0u8; 64];
    assert_eq!(
        rx.try_recv_bytes_into(&mut buf),
        Err(PipeRecvError::Corrupt)
    );
    header.store(61, std::sync::atomic::Ordering::Relaxed); // longer than published
    assert_eq!(
        rx.try_recv_bytes_into(&mut buf),
        Err(PipeRecvError::Corrupt)
    );
    header.store(2, std::sync::atomic::Ordering::Relaxed); // shorter: garbage, but in bounds
    assert_eq!(rx.try_recv_bytes_into(&mut buf), Ok(2));
}

/// A producer process that claimed a position and died before committing
/// (simulated: it writes its claim into the slot's stamp, as a push
/// killed between its claim and its commit leaves it, then exits) does not
/// wedge the queue: a blocked consumer skips the abandoned position within
/// a wait slice and gets the next committed message; a producer passes it.
#[test]
fn claimed_but_unpublished_position_of_a_dead_producer_is_skipped() {
    use shmkit_core::queue::mpmc::{stamp, CLAIMED, EMPTY};
    use std::sync::atomic::Ordering::SeqCst;
    let q = Queue::<u64>::anonymous(4).unwrap();
    let mut rx = q.view().consumer().unwrap();
    let mut tx = q.view().producer().unwrap();
    tx.try_push(1).unwrap();
    let child = fork(|| {
        let Ok(tx) = q.view().producer() else {
            return 2;
        };
        let who = tx.registry_index() as u64;
        // Position 1 (lap 0 of slot 1): EMPTY → CLAIMED by us.
        let claimed = q
            .view()
            .stamp_of(1)
            .compare_exchange(stamp(0, 0, EMPTY), stamp(0, who, CLAIMED), SeqCst, SeqCst)
            .is_ok();
        std::mem::forget(tx);
        if claimed {
            0
        } else {
            3
        }
    });
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    tx.try_push(2).unwrap();
    assert_eq!(rx.pop_timeout(Duration::from_secs(5)), Ok(1));
    // Position 1 is claimed, never committed, its claimer dead.
    assert_eq!(rx.try_pop(), Err(TryRecvError::Empty));
    assert_eq!(rx.pop_timeout(Duration::from_secs(5)), Ok(2));
    for i in 3..20 {
        tx.push(i).unwrap();
        assert_eq!(rx.pop_timeout(Duration::from_secs(5)), Ok(i));
    }
}

/// A producer handle inherited across `fork` takes a registry entry of its
/// own in the child on its first push, so that its claims name the child.
/// Here the child pushes once through the inherited handle, then leaves a
/// claim of the next position under the entry its handle now records, and
/// exits, as a child killed between a claim and its commit would. The
/// parent (whose handle still holds the original entry) lives on: if the
/// child's claims named the parent's entry, no consumer would ever skip
/// that position and the queue would be wedged.
#[test]
fn inherited_producer_claims_in_the_child_name_the_child() {
    use shmkit_core::queue::mpmc::{stamp, CLAIMED, EMPTY};
    use std::sync::atomic::Ordering::SeqCst;
    let q = Queue::<u64>::anonymous(QueueParams::new(8).with_registry(4, 1)).unwrap();
    let mut rx = q.view().consumer().unwrap();
    let mut tx = q.view().producer().unwrap();
    let parent_entry = tx.registry_index();
    let child_entry = Array::<u64>::anonymous(vec![0u64]).unwrap();
    let child = fork(|| {
        if tx.try_push(1).is_err() {
            return 2;
        }
        let who = tx.registry_index() as u64;
        let _ = child_entry.set(0, who);
        // Position 1 (lap 0 of slot 1): claimed, never committed.
        match q.view().stamp_of(1).compare_exchange(
            stamp(0, 0, EMPTY),
            stamp(0, who, CLAIMED),
            SeqCst,
            SeqCst,
        ) {
            Ok(_) => 0,
            Err(_) => 3,
        }
    });
    assert_eq!(child.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    assert_ne!(
        child_entry.get(0),
        Some(parent_entry as u64),
        "the child pushed under the parent's registry entry"
    );
    assert_eq!(rx.pop_timeout(Duration::from_secs(5)), Ok(1));
    tx.try_push(2).unwrap();
    assert_eq!(
        tx.registry_index(),
        parent_entry,
        "the parent keeps its entry"
    );
    // The child's dead claim at position 1 is skipped within a wait slice.
    assert_eq!(rx.pop_timeout(Duration::from_secs(5)), Ok(2));
}

/// A producer that takes over the registry entry of a dead holder first
/// marks that holder's claims orphaned: otherwise a claim the dead holder
/// left would name a live entry (the new holder's), and no consumer would
/// ever skip it.
#[test]
fn takeover_of_a_dead_producers_entry_orphans_its_claims() {
    use shmkit_core::queue::mpmc::{stamp, CLAIMED, EMPTY};
    use std::sync::atomic::Ordering::SeqCst;
    let q = Queue::<u64>::anonymous(QueueParams::new(4).with_registry(1, 1)).unwrap();
    let mut rx = q.view().consumer().unwrap();
    let dead = fork(|| {
        let Ok(tx) = q.view().producer() else {
            return 2;
        };
        let who = tx.registry_index() as u64;
        let claimed = q
            .view()
            .stamp_of(0)
            .compare_exchange(stamp(0, 0, EMPTY), stamp(0, who, CLAIMED), SeqCst, SeqCst)
            .is_ok();
        // Exit without detaching, the claim uncommitted.
        std::mem::forget(tx);
        if claimed {
            0
        } else {
            3
        }
    });
    assert_eq!(dead.wait_timeout(CHILD_TIMEOUT), Some(Exit::Code(0)));
    // The only entry is the dead holder's: this attach takes it over.
    let mut tx = q.view().producer().unwrap();
    tx.try_push(5).unwrap();
    assert_eq!(rx.pop_timeout(Duration::from_secs(5)), Ok(5));
}
