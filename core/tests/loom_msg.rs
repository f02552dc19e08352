//! loom models of the byte-message queue (`queue::msg`): messages of
//! different lengths from two producers reach one consumer whole and
//! exactly once; an encoder that fails gives its claim up without
//! wedging the consumer waiting behind it, across the wrap.
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmkit-core --release --test loom_msg`
#![cfg(loom)]

use std::sync::Arc;

use loom::thread;
use shmkit_core::primitive::AtomicU64;
use shmkit_core::queue::mpmc::QueueControl;
use shmkit_core::queue::msg::{ByteProducer, ByteQueue, MsgParams, MsgRecvError, MsgSendError};
use shmkit_core::queue::roles::RoleSlot;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.max_branches = 20_000;
    b.check(f);
}

const MAX_LEN: usize = 12;

struct Mem {
    /// Producers attached so far: a consumer that polled while every
    /// producer that had attached was gone would close the role for good
    /// (`Disconnected` is final), so the models start consuming only once
    /// the producers they wait for are attached.
    attached: loom::sync::atomic::AtomicUsize,
    ctl: QueueControl,
    producers: [RoleSlot; 2],
    consumers: [RoleSlot; 1],
    words: Vec<AtomicU64>,
}

impl Mem {
    fn new(cap: usize) -> Arc<Mem> {
        let p = MsgParams::new(cap, MAX_LEN);
        Arc::new(Mem {
            attached: loom::sync::atomic::AtomicUsize::new(0),
            ctl: QueueControl::new(),
            producers: [RoleSlot::new(), RoleSlot::new()],
            consumers: [RoleSlot::new()],
            words: (0..p.slot_words()).map(|_| AtomicU64::new(0)).collect(),
        })
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
    fn queue(&self) -> ByteQueue<'_> {
        ByteQueue::from_parts(
            &self.ctl,
            &self.producers,
            &self.consumers,
            &self.words,
            MAX_LEN,
        )
        .unwrap()
    }
}

fn send_spin(tx: &mut ByteProducer<'_>, msg: &[u8]) {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return,
            Err(MsgSendError::Full) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Message `i` of producer `p`: a length and bytes that tell them apart,
/// spanning a word boundary.
fn message(p: u8, i: u8) -> Vec<u8> {
    vec![p * 16 + i; 5 + 4 * p as usize + i as usize]
}

#[test]
fn msg_two_producers_whole_messages_exactly_once() {
    model(|| {
        let mem = Mem::new(2);
        let handles: Vec<_> = (0..2u8)
            .map(|p| {
                let m = mem.clone();
                thread::spawn(move || {
                    let mut tx = m.queue().producer().unwrap();
                    m.attached();
                    send_spin(&mut tx, &message(p, 0));
                })
            })
            .collect();
        let mut rx = mem.queue().consumer().unwrap();
        mem.wait_attached(2);
        let mut got = Vec::new();
        let mut buf = [0u8; MAX_LEN];
        while got.len() < 2 {
            match rx.try_recv_into(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(MsgRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e} after {got:?}"),
            }
        }
        got.sort_unstable();
        assert_eq!(got, vec![message(0, 0), message(1, 0)]);
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// One slot, three messages from one producer, the middle one aborted by
/// its encoder half-way: the consumer gets the other two, whole and in
/// order, each written over the previous lap's bytes.
#[test]
fn msg_wrap_and_an_aborted_claim() {
    model(|| {
        let mem = Mem::new(1);
        let m = mem.clone();
        let producer = thread::spawn(move || {
            let mut tx = m.queue().producer().unwrap();
            m.attached();
            send_spin(&mut tx, &message(1, 1));
            loop {
                match tx.try_send_with(|w| {
                    w.write(b"partial").map_err(|_| ())?;
                    Err::<(), ()>(())
                }) {
                    Err(MsgSendError::Full) => thread::yield_now(),
                    Err(MsgSendError::Encode(())) => break,
                    r => panic!("{r:?}"),
                }
            }
            send_spin(&mut tx, &message(0, 2));
        });
        let mut rx = mem.queue().consumer().unwrap();
        mem.wait_attached(1);
        let mut got = Vec::new();
        let mut buf = [0u8; MAX_LEN];
        while got.len() < 2 {
            match rx.try_recv_into(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(MsgRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e} after {got:?}"),
            }
        }
        assert_eq!(got, vec![message(1, 1), message(0, 2)]);
        producer.join().unwrap();
    });
}
