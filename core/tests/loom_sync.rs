//! loom models of the lock state machines in `shmkit_core::sync`.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmkit-core --release
//! --test loom_sync`. Each model is two threads and a handful of
//! operations, with a preemption bound, so it finishes in seconds.
//! Under loom, waiting is a yield and there is no clock (timed calls act
//! as `try_`), and every model thread has its own owner id.
//!
//! What these models check: mutual exclusion, the memory orderings that
//! publish protected data (Relaxed loom atomics stand in for it, so a
//! missing Release/Acquire pair fails a model), the store→load patterns
//! between two words (rwlock, semaphore/condvar sleeper counts), and that
//! every state machine reaches its end state. What they cannot check: a
//! lost *futex* wake-up, because the loom back end's `wait` returns at once
//! instead of sleeping. Lost wake-ups are covered by the real-process
//! tests, where a missed wake hangs a child and fails its `wait_timeout`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmkit_core::sync::{Barrier, Condvar, Event, Mutex, ReentrantMutex, RwLock, Semaphore};
use shmkit_core::wait::Spin;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

/// Two threads increment a loom counter under the mutex with Relaxed
/// load+store (lost updates unless the lock excludes and orders), and a
/// contended locker that set the WAITERS bit is woken (else: deadlock).
#[test]
fn mutex_mutual_exclusion_and_waiters_bit() {
    model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let n = Arc::new(AtomicU32::new(0));
        let (m2, n2) = (m.clone(), n.clone());
        let bump = |m: &Mutex<u32>, n: &AtomicU32| {
            let _g = m.lock().unwrap();
            let v = n.load(Ordering::Relaxed);
            n.store(v + 1, Ordering::Relaxed);
        };
        let t = thread::spawn(move || bump(&m2, &n2));
        bump(&m, &n);
        t.join().unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 2);
        assert!(!m.raw().is_locked());
    });
}

/// The spinning path: with a spin budget, a waiter marks the word
/// SPINNER, the unlock leaves the free word reserved, and the releaser's
/// second lock defers to the spinner, then competes. Mutual exclusion and
/// the publishing orderings hold through all of it, and the lock ends free.
#[test]
fn mutex_spinner_reservation_excludes() {
    model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let n = Arc::new(AtomicU32::new(0));
        let (m2, n2) = (m.clone(), n.clone());
        let bump = |m: &Mutex<u32>, n: &AtomicU32| {
            let _g = m.lock_spin(Spin { iterations: 2 }, None).unwrap();
            let v = n.load(Ordering::Relaxed);
            n.store(v + 1, Ordering::Relaxed);
        };
        let t = thread::spawn(move || bump(&m2, &n2));
        bump(&m, &n);
        bump(&m, &n);
        t.join().unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 3);
        assert!(!m.raw().is_locked());
    });
}

#[test]
fn reentrant_mutex_counts_levels() {
    model(|| {
        let m = Arc::new(ReentrantMutex::new(0u32));
        let n = Arc::new(AtomicU32::new(0));
        let (m2, n2) = (m.clone(), n.clone());
        let t = thread::spawn(move || {
            let _a = m2.lock().unwrap();
            let b = m2.lock().unwrap();
            let v = n2.load(Ordering::Relaxed);
            drop(b);
            n2.store(v + 1, Ordering::Relaxed);
        });
        {
            let _g = m.lock().unwrap();
            let v = n.load(Ordering::Relaxed);
            n.store(v + 1, Ordering::Relaxed);
        }
        t.join().unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 2);
        assert_eq!(m.depth(), 0);
    });
}

/// Semaphore(1): never two inside; permits conserved.
#[test]
fn semaphore_bounds_occupancy() {
    model(|| {
        let s = Arc::new(Semaphore::bounded(1));
        let inside = Arc::new(AtomicU32::new(0));
        let worker = |s: Arc<Semaphore>, inside: Arc<AtomicU32>| {
            let permit = s.acquire();
            assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
            inside.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        };
        let (s2, i2) = (s.clone(), inside.clone());
        let t = thread::spawn(move || worker(s2, i2));
        worker(s.clone(), inside);
        t.join().unwrap();
        assert_eq!(s.available(), 1);
    });
}

/// A set publishes the setter's writes to the waiter; no lost wake-up.
#[test]
fn event_set_publishes_and_wakes() {
    model(|| {
        let e = Arc::new(Event::new());
        let data = Arc::new(AtomicU32::new(0));
        let (e2, d2) = (e.clone(), data.clone());
        let t = thread::spawn(move || {
            d2.store(7, Ordering::Relaxed);
            e2.set();
        });
        e.wait();
        assert_eq!(data.load(Ordering::Relaxed), 7);
        t.join().unwrap();
    });
}

/// The sequence counter: a notify between the condition check and the
/// sleep is not lost.
#[test]
fn condvar_sequence_loses_no_wakeup() {
    model(|| {
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        let p2 = pair.clone();
        let t = thread::spawn(move || {
            let (m, cv) = &*p2;
            m.lock().unwrap().set(1);
            cv.notify_one();
        });
        let (m, cv) = &*pair;
        let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
        assert_eq!(g.get(), 1);
        drop(g);
        t.join().unwrap();
    });
}

/// Two parties: exactly one leader, the generation advances, not broken.
#[test]
fn barrier_generation_elects_one_leader() {
    model(|| {
        let b = Arc::new(Barrier::new(2).unwrap());
        let leaders = Arc::new(AtomicU32::new(0));
        let (b2, l2) = (b.clone(), leaders.clone());
        let t = thread::spawn(move || {
            if b2.wait().unwrap().is_leader() {
                l2.fetch_add(1, Ordering::Relaxed);
            }
        });
        if b.wait().unwrap().is_leader() {
            leaders.fetch_add(1, Ordering::Relaxed);
        }
        t.join().unwrap();
        assert_eq!(leaders.load(Ordering::Relaxed), 1);
        assert!(!b.is_broken());
    });
}

/// Python's barrier action: whichever party arrives last runs it, once,
/// and the other sees its Relaxed write when released (the leader's
/// AcqRel pass after the action publishes it).
#[test]
fn barrier_action_runs_once_before_release() {
    model(|| {
        let b = Arc::new(Barrier::new(2).unwrap());
        let ran = Arc::new(AtomicU32::new(0));
        let (b2, r2) = (b.clone(), ran.clone());
        let t = thread::spawn(move || {
            let _ = b2
                .wait_with(|| {
                    r2.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
            assert_eq!(r2.load(Ordering::Relaxed), 1);
        });
        let _ = b
            .wait_with(|| {
                ran.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        assert_eq!(ran.load(Ordering::Relaxed), 1);
        t.join().unwrap();
        assert!(!b.is_broken());
    });
}

/// A writer and a reader: the reader never sees a half-written pair of
/// Relaxed loom atomics (the store→load pattern between the writer word and
/// the reader count holds, and the lock orders the data).
#[test]
fn rwlock_writer_excludes_reader() {
    model(|| {
        let l = Arc::new(RwLock::new(0u8));
        let pair = Arc::new((AtomicU32::new(0), AtomicU32::new(0)));
        let (l2, p2) = (l.clone(), pair.clone());
        let t = thread::spawn(move || {
            let _w = l2.write().unwrap();
            p2.0.store(1, Ordering::Relaxed);
            p2.1.store(1, Ordering::Relaxed);
        });
        {
            let _r = l.read().unwrap();
            let a = pair.0.load(Ordering::Relaxed);
            let b = pair.1.load(Ordering::Relaxed);
            assert_eq!(a, b);
        }
        t.join().unwrap();
    });
}

/// Issue 8, item 3 (CPython gh-57711): a waiter already blocked in `wait`
/// when `set` is called returns true, even though `clear` follows at once.
/// With a bare flag the waiter would wake to a cleared flag and wait again
/// for ever (here: loom's branch limit fails the model).
#[test]
fn event_set_then_clear_wakes_a_blocked_waiter() {
    model(|| {
        let e = Arc::new(Event::new());
        let e2 = e.clone();
        let t = thread::spawn(move || e2.wait_spin(Spin::NONE, None));
        // "Already blocked": the waiter announced itself before sleeping.
        while !e.has_waiters() {
            thread::yield_now();
        }
        e.set();
        e.clear();
        assert!(t.join().unwrap(), "the waiter missed the set");
        assert!(!e.is_set());
    });
}

/// The other half of the Event contract: one `set` is one event. A waiter
/// that saw the flag, cleared it and waits again does not see the same
/// `set` a second time (a `set` done in two steps — flag, then generation —
/// would let it, and a ping-pong of set/wait/clear would lose count).
#[test]
fn event_one_set_is_seen_once_by_a_waiter_that_clears_it() {
    model(|| {
        let e = Arc::new(Event::new());
        let e2 = e.clone();
        let t = thread::spawn(move || e2.set());
        assert!(e.wait_spin(Spin::NONE, None));
        e.clear();
        // No clock under loom: a timed wait checks once and gives up.
        assert!(
            !e.wait_spin(Spin::NONE, Some(core::time::Duration::ZERO)),
            "one set was seen twice"
        );
        t.join().unwrap();
    });
}

/// The poison mark travels with the lock: a locker sees either the
/// poisoned lock (and refuses it, holding nothing) or the repaired data
/// with the mark cleared — never the mark cleared and the old data.
#[test]
fn poison_and_repair_are_seen_together() {
    model(|| {
        let m = Arc::new(Mutex::new(0u32));
        m.raw().poison_for_model();
        let m2 = m.clone();
        let repairer = thread::spawn(move || {
            let mut g = m2.recover().unwrap();
            assert!(g.owner_died());
            g.set(7);
            g.mark_consistent();
        });
        match m.lock() {
            Ok(g) => assert_eq!(g.get(), 7),
            Err(e) => assert_eq!(e, shmkit_core::sync::LockError::OwnerDied),
        }
        repairer.join().unwrap();
        assert_eq!(m.lock().unwrap().get(), 7);
    });
}
