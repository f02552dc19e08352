//! loom models of the queue protocols: the SPSC ring (order, wrap, batch,
//! disconnect), the MPMC queue (claim, commit, exactly-once delivery with
//! two producers or two consumers, the wrap, the skip of a dead claimer by
//! a consumer and by the producer taking over its entry) and the Pipe
//! framing (whole messages across the wrap).
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit-core --release --test loom_queue`
#![cfg(loom)]

use std::ptr::NonNull;
use std::sync::Arc;

use loom::thread;
use shmkit_core::primitive::AtomicU64;
use shmkit_core::queue::mpmc::{stamp, Queue, QueueControl, QueueProducer, CLAIMED, EMPTY};
use shmkit_core::queue::pipe::{Pipe, PipeRecvError, PipeSendError};
use shmkit_core::queue::ring::{Ring, RingControl};
use shmkit_core::queue::roles::RoleSlot;
use shmkit_core::queue::stamped::{StampedControl, StampedRing};
use shmkit_core::queue::{RecvError, TryRecvError, TrySendError};
use shmkit_core::wait::Spin;

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
    /// Producers attached so far: a consumer that polled while every
    /// producer that had attached was gone would close the role for good
    /// (`Disconnected` is final), so the models start consuming only once
    /// the producers they wait for are attached.
    attached: loom::sync::atomic::AtomicUsize,
    ctl: QueueControl,
    producers: [RoleSlot; 2],
    consumers: [RoleSlot; 2],
    /// `cap` slots of a `u64`: a stamp word and a value word each.
    words: Vec<AtomicU64>,
}

impl QueueMem {
    fn new(cap: usize) -> Arc<QueueMem> {
        Arc::new(QueueMem {
            attached: loom::sync::atomic::AtomicUsize::new(0),
            ctl: QueueControl::new(),
            producers: [RoleSlot::new(), RoleSlot::new()],
            consumers: [RoleSlot::new(), RoleSlot::new()],
            words: (0..2 * cap).map(|_| AtomicU64::new(0)).collect(),
        })
    }
    fn queue(&self) -> Queue<'_, u64> {
        Queue::from_parts(&self.ctl, &self.producers, &self.consumers, &self.words).unwrap()
    }
    /// Counts one more attached producer.
    fn attached(&self) {
        self.attached
            .fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
    }
    /// Waits until `n` producers attached.
    fn wait_attached(&self, n: usize) {
        while self.attached.load(loom::sync::atomic::Ordering::SeqCst) < n {
            thread::yield_now();
        }
    }
}

fn push_spin(tx: &mut QueueProducer<'_, u64>, mut v: u64) {
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
                    m.attached();
                    push_spin(&mut tx, 10 + p);
                })
            })
            .collect();
        mem.wait_attached(2);
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

/// What a producer killed between its claim and its commit leaves: its
/// claim of position 0 in the stamp, and its registry entry no longer
/// held by a live process (here: released). `false` if another producer
/// claimed position 0 first (then the "dead" one claimed nothing).
fn claim_and_die(q: &Queue<'_, u64>, tx: QueueProducer<'_, u64>) -> bool {
    use shmkit_core::primitive::Ordering::SeqCst;
    let who = tx.registry_index() as u64;
    let claimed = q
        .stamp_of(0)
        .compare_exchange(stamp(0, 0, EMPTY), stamp(0, who, CLAIMED), SeqCst, SeqCst)
        .is_ok();
    drop(tx);
    claimed
}

/// Skip of a dead claimer by a consumer: producer A claims position 0 and
/// dies; producer B, still attached, pushes 7 (at position 0 if it got
/// there first, else at 1). A blocked consumer, whose slow path asks
/// whether A lives, gets 7 exactly once, never A's unwritten slot.
#[test]
fn mpmc_consumer_skips_a_dead_claimer() {
    model(|| {
        let mem = QueueMem::new(2);
        let m = mem.clone();
        let dead = thread::spawn(move || {
            let q = m.queue();
            let tx = q.producer().unwrap();
            claim_and_die(&q, tx)
        });
        let m = mem.clone();
        let live = thread::spawn(move || {
            let mut tx = m.queue().producer().unwrap();
            m.attached();
            push_spin(&mut tx, 7);
            // Still attached: the consumer cannot conclude "disconnected".
            std::mem::forget(tx);
        });
        mem.wait_attached(1);
        let mut rx = mem.queue().consumer().unwrap();
        rx.set_spin(Spin::NONE);
        loop {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v, 7);
                    break;
                }
                // Before the live producer attached, the dead one was
                // "every producer that ever attached".
                Err(RecvError::Disconnected) => thread::yield_now(),
                Err(RecvError::Corrupt) => panic!("corrupt"),
            }
        }
        assert!(matches!(
            rx.try_pop(),
            Err(TryRecvError::Empty | TryRecvError::Disconnected)
        ));
        dead.join().unwrap();
        live.join().unwrap();
    });
}

/// A dead claimer's entry taken over: A (entry 0) claims position 0 and
/// dies; B attaches afterwards and gets entry 0 back, so A's claim now
/// names a live entry, which consumers would wait for forever. B marks
/// it orphaned first; the consumer skips it and gets B's message, then
/// `Disconnected`.
#[test]
fn mpmc_takeover_skips_the_dead_holders_claim() {
    model(|| {
        let mem = QueueMem::new(2);
        let m = mem.clone();
        let producers = thread::spawn(move || {
            let q = m.queue();
            let tx = q.producer().unwrap();
            assert_eq!(tx.registry_index(), 0);
            assert!(claim_and_die(&q, tx));
            let mut tx = q.producer().unwrap();
            m.attached();
            assert_eq!(tx.registry_index(), 0, "the dead holder's entry is reused");
            push_spin(&mut tx, 5);
        });
        mem.wait_attached(1);
        let mut rx = mem.queue().consumer().unwrap();
        let mut got = Vec::new();
        loop {
            match rx.try_pop() {
                Ok(v) => got.push(v),
                Err(TryRecvError::Disconnected) if !got.is_empty() => break,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => thread::yield_now(),
                Err(TryRecvError::Corrupt) => panic!("corrupt"),
            }
        }
        assert_eq!(got, vec![5]);
        producers.join().unwrap();
    });
}

struct StampedMem {
    ctl: StampedControl,
    /// `cap` slots of a `u64`: a stamp word and a value word each.
    words: Vec<AtomicU64>,
}

impl StampedMem {
    fn new(cap: usize) -> Arc<StampedMem> {
        Arc::new(StampedMem {
            ctl: StampedControl::new(),
            words: (0..2 * cap).map(|_| AtomicU64::new(0)).collect(),
        })
    }
    fn ring(&self) -> StampedRing<'_, u64> {
        StampedRing::from_parts(&self.ctl, &self.words).unwrap()
    }
}

/// The stamped ring: order across the wrap, the values published by the
/// stamps alone (no index), and everything committed drained before
/// `Disconnected`.
#[test]
fn stamped_order_across_the_wrap() {
    model(|| {
        let mem = StampedMem::new(2);
        let m = mem.clone();
        let producer = thread::spawn(move || {
            let mut tx = m.ring().producer().unwrap();
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
        });
        let mut rx = mem.ring().consumer().unwrap();
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
        assert_eq!(next, 4);
        producer.join().unwrap();
    });
}
