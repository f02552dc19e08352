//! loom models of the queue protocols: the SPSC ring (order, wrap, batch,
//! disconnect), the MPMC queue (exactly-once with two producers or two
//! consumers) and the Pipe framing (whole messages across the wrap).
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit-core --release --test loom_queue`
#![cfg(loom)]

use std::ptr::NonNull;
use std::sync::Arc;

use loom::thread;
use shmkit_core::primitive::AtomicU64;
use shmkit_core::queue::mpmc::{Queue, QueueControl};
use shmkit_core::queue::pipe::{Pipe, PipeRecvError, PipeSendError};
use shmkit_core::queue::ring::{Ring, RingControl};
use shmkit_core::queue::roles::RoleSlot;
use shmkit_core::queue::{TryRecvError, TrySendError};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.max_branches = 20_000;
    b.check(f);
}

/// Slots that outlive the model threads (leaked: a few bytes per run).
fn slots<T: Copy + Default + 'static>(n: usize) -> NonNull<T> {
    let v: &'static mut [T] = Vec::leak(vec![T::default(); n]);
    NonNull::from(v).cast()
}

struct RingMem {
    ctl: RingControl,
    data: NonNull<u64>,
}
// SAFETY: the data is only accessed through the ring's atomic copies.
unsafe impl Send for RingMem {}
// SAFETY: as above.
unsafe impl Sync for RingMem {}

impl RingMem {
    fn new(cap: u32) -> Arc<RingMem> {
        Arc::new(RingMem {
            ctl: RingControl::new(),
            data: slots(cap as usize),
        })
    }
    fn ring(&self, cap: u32) -> Ring<'_, u64> {
        // SAFETY: `data` holds `cap` leaked elements, only used atomically.
        unsafe { Ring::from_raw(&self.ctl, self.data, cap) }.unwrap()
    }
}

#[test]
fn spsc_order_across_the_wrap() {
    model(|| {
        let mem = RingMem::new(2);
        let m = mem.clone();
        let producer = thread::spawn(move || {
            let mut tx = m.ring(2).producer().unwrap();
            for v in 1..=3u64 {
                let mut v = v;
                loop {
                    match tx.try_push(v) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => v = back,
                        Err(_) => panic!("unexpected"),
                    }
                    thread::yield_now();
                }
            }
            drop(tx);
        });
        let mut rx = mem.ring(2).consumer().unwrap();
        let mut next = 1;
        loop {
            match rx.try_pop() {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Corrupt) => panic!("corrupt"),
            }
        }
        assert_eq!(
            next, 4,
            "everything committed is drained before Disconnected"
        );
        producer.join().unwrap();
    });
}

#[test]
fn spsc_batch_and_chunks() {
    model(|| {
        let mem = RingMem::new(4);
        let m = mem.clone();
        let producer = thread::spawn(move || {
            let mut tx = m.ring(4).producer().unwrap();
            assert_eq!(tx.push_slice(&[1, 2, 3]).unwrap(), 3);
            loop {
                if let Ok(chunk) = tx.write_chunk(2) {
                    let (a, b) = chunk.slices();
                    let mut k = 0;
                    for s in [a, b] {
                        for i in 0..s.len() {
                            s.set(i, 4 + k).unwrap();
                            k += 1;
                        }
                    }
                    chunk.commit_all();
                    break;
                }
                thread::yield_now();
            }
        });
        let mut rx = mem.ring(4).consumer().unwrap();
        let mut got = Vec::new();
        while got.len() < 5 {
            let mut out = [0u64; 2];
            match rx.pop_into(&mut out) {
                Ok(n) => got.extend_from_slice(&out[..n]),
                Err(e) => panic!("{e}"),
            }
            thread::yield_now();
        }
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        producer.join().unwrap();
    });
}

struct QueueMem {
    ctl: QueueControl,
    producers: [RoleSlot; 2],
    intents: [AtomicU64; 2],
    consumers: [RoleSlot; 2],
    stamps: Vec<AtomicU64>,
    data: NonNull<u64>,
}
// SAFETY: the data is only accessed through the queue's atomic copies.
unsafe impl Send for QueueMem {}
// SAFETY: as above.
unsafe impl Sync for QueueMem {}

impl QueueMem {
    fn new(cap: usize) -> Arc<QueueMem> {
        let mem = QueueMem {
            ctl: QueueControl::new(),
            producers: [RoleSlot::new(), RoleSlot::new()],
            intents: [AtomicU64::new(0), AtomicU64::new(0)],
            consumers: [RoleSlot::new(), RoleSlot::new()],
            stamps: (0..cap).map(|_| AtomicU64::new(0)).collect(),
            data: slots(cap),
        };
        Queue::<u64>::init(&mem.stamps, &mem.intents);
        Arc::new(mem)
    }
    fn queue(&self) -> Queue<'_, u64> {
        // SAFETY: `data` holds `stamps.len()` leaked elements, used
        // atomically; the parts were initialised by `Queue::init`.
        unsafe {
            Queue::from_raw(
                &self.ctl,
                &self.producers,
                &self.intents,
                &self.consumers,
                &self.stamps,
                self.data,
            )
        }
        .unwrap()
    }
}

fn push_spin(tx: &mut shmkit_core::queue::mpmc::QueueProducer<'_, u64>, mut v: u64) {
    loop {
        match tx.try_push(v) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => v = back,
            Err(_) => panic!("unexpected"),
        }
        thread::yield_now();
    }
}

#[test]
fn mpmc_two_producers_exactly_once() {
    model(|| {
        let mem = QueueMem::new(2);
        let handles: Vec<_> = (0..2u64)
            .map(|p| {
                let m = mem.clone();
                thread::spawn(move || {
                    let mut tx = m.queue().producer().unwrap();
                    push_spin(&mut tx, 10 + p);
                })
            })
            .collect();
        let mut rx = mem.queue().consumer().unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            match rx.try_pop() {
                Ok(v) => got.push(v),
                Err(TryRecvError::Empty) => thread::yield_now(),
                // One producer came and went before the other attached:
                // "every producer gone" is then true for a while.
                Err(TryRecvError::Disconnected) => thread::yield_now(),
                Err(e) => panic!("{e} after {got:?}"),
            }
        }
        got.sort_unstable();
        assert_eq!(got, vec![10, 11]);
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// Two consumers race for two committed messages (pushed before they
/// start, then the producer leaves): each is delivered exactly once, and
/// both consumers end with `Disconnected`.
#[test]
fn mpmc_two_consumers_exactly_once() {
    model(|| {
        let mem = QueueMem::new(2);
        {
            let mut tx = mem.queue().producer().unwrap();
            push_spin(&mut tx, 1);
            push_spin(&mut tx, 2);
        }
        let drain = |m: Arc<QueueMem>| {
            move || {
                let mut rx = m.queue().consumer().unwrap();
                let mut got = Vec::new();
                loop {
                    match rx.try_pop() {
                        Ok(v) => got.push(v),
                        Err(TryRecvError::Disconnected) => return got,
                        Err(TryRecvError::Corrupt) => panic!("corrupt"),
                        Err(TryRecvError::Empty) => thread::yield_now(),
                    }
                }
            }
        };
        let other = thread::spawn(drain(mem.clone()));
        let mut all = drain(mem.clone())();
        all.extend(other.join().unwrap());
        all.sort_unstable();
        assert_eq!(all, vec![1, 2], "each message exactly once");
    });
}

struct PipeMem {
    ctl: RingControl,
    data: NonNull<u8>,
}
// SAFETY: the bytes are only accessed through the pipe's atomic copies.
unsafe impl Send for PipeMem {}
// SAFETY: as above.
unsafe impl Sync for PipeMem {}

#[test]
fn pipe_frames_whole_messages_across_the_wrap() {
    model(|| {
        let mem = Arc::new(PipeMem {
            ctl: RingControl::new(),
            data: slots(8),
        });
        fn pipe(m: &PipeMem) -> Pipe<'_> {
            // SAFETY: 8 leaked bytes, only used atomically.
            unsafe { Pipe::from_raw(&m.ctl, m.data, 8) }.unwrap()
        }
        let m = mem.clone();
        let sender = thread::spawn(move || {
            let mut tx = pipe(&m).sender().unwrap();
            for msg in [&b"ab"[..], b"cde"] {
                loop {
                    match tx.try_send_bytes(msg) {
                        Ok(()) => break,
                        Err(PipeSendError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            assert!(matches!(
                tx.try_send_bytes(b"fghij"),
                Err(PipeSendError::TooLarge { len: 5, max: 4 })
            ));
        });
        let mut rx = pipe(&mem).receiver().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            match rx.try_recv_bytes_into(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(PipeRecvError::Empty) => thread::yield_now(),
                Err(PipeRecvError::Eof) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, vec![b"ab".to_vec(), b"cde".to_vec()]);
        sender.join().unwrap();
    });
}

/// One producer, one consumer, capacity 1: every push after the first
/// reuses the slot (the lap logic: release, or `head` past it).
#[test]
fn mpmc_wrap_around_one_slot() {
    model(|| {
        let mem = QueueMem::new(1);
        let m = mem.clone();
        let producer = thread::spawn(move || {
            let mut tx = m.queue().producer().unwrap();
            for v in 1..=3 {
                push_spin(&mut tx, v);
            }
        });
        let mut rx = mem.queue().consumer().unwrap();
        let mut got = Vec::new();
        loop {
            match rx.try_pop() {
                Ok(v) => got.push(v),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Corrupt) => panic!("corrupt"),
                Err(TryRecvError::Empty) => thread::yield_now(),
            }
        }
        assert_eq!(got, vec![1, 2, 3]);
        producer.join().unwrap();
    });
}

/// The invariant the dead-claimer skip relies on: a producer that is not
/// inside a push announces no intent. Two producers race for the single
/// slot of a capacity-1 queue (no consumer); the loser of the tail CAS
/// finds the queue full. If it kept the intent of the position it lost,
/// a consumer could never skip that position should its real claimer
/// die: the loser is alive and "claims" it, and the queue is wedged for
/// as long as the loser lives (its own retries return `Full` before
/// they store a new intent).
#[test]
fn mpmc_losing_producer_leaves_no_intent() {
    use shmkit_core::primitive::Ordering::SeqCst;
    use shmkit_core::queue::mpmc::NO_INTENT;
    model(|| {
        let mem = QueueMem::new(1);
        let handles: Vec<_> = (0..2u64)
            .map(|p| {
                let m = mem.clone();
                thread::spawn(move || {
                    let mut tx = m.queue().producer().unwrap();
                    let r = tx.try_push(10 + p);
                    assert!(matches!(r, Ok(()) | Err(TrySendError::Full(_))));
                    // Still attached, as if it went on with other work:
                    // skip the drop, which would clear the intent.
                    std::mem::forget(tx);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for (i, w) in mem.intents.iter().enumerate() {
            assert_eq!(w.load(SeqCst), NO_INTENT, "producer {i} left an intent");
        }
    });
}
