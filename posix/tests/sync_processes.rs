//! Locks and signals between real processes (forked children sharing
//! anonymous segments, or attaching by name).

use std::time::{Duration, Instant};

use shmkit_core::sync::{
    Condvar, Event, LockTimeoutError, Mutex, ReentrantMutex, RwLock, Semaphore, TryLockError,
};
use shmkit_posix::sync as psync;
use shmkit_posix::Shared;
use shmkit_testkit::{fork, unique_name, Child, Exit};

const HANG: Duration = Duration::from_secs(60);

fn all_succeed(children: Vec<Child>) {
    for c in children {
        assert_eq!(c.wait_timeout(HANG), Some(Exit::Code(0)));
    }
}

/// N processes × k increments under the mutex reach exactly N×k.
#[test]
fn mutex_counter_reaches_n_times_k() {
    const N: usize = 4;
    const K: u64 = 2000;
    let counter = psync::Mutex::anonymous(Mutex::new(0u64)).unwrap();
    let children = (0..N)
        .map(|_| {
            fork(|| {
                for _ in 0..K {
                    let Ok(g) = counter.lock() else { return 2 };
                    // Read, yield the CPU, write: a lost update if the
                    // lock did not exclude.
                    let v = g.get();
                    if v % 97 == 0 {
                        std::thread::yield_now();
                    }
                    g.set(v + 1);
                }
                0
            })
        })
        .collect();
    all_succeed(children);
    assert_eq!(counter.lock().unwrap().get(), N as u64 * K);
}

/// The same through a named segment each child opens by name.
#[test]
fn named_mutex_opened_by_children() {
    let name = unique_name("sync-mutex");
    let counter = psync::Mutex::create(&name, Mutex::new(0u32)).unwrap();
    let children = (0..3)
        .map(|_| {
            let name = name.clone();
            fork(move || {
                let Ok(m) = psync::Mutex::<u32>::open(&name) else {
                    return 2;
                };
                for _ in 0..500 {
                    m.lock().unwrap().update(|v| *v += 1);
                }
                0
            })
        })
        .collect();
    all_succeed(children);
    assert_eq!(counter.lock().unwrap().get(), 1500);
    // Another object type under the same name is refused.
    assert!(psync::Semaphore::open(&name).is_err());
}

/// Python's bank example: one process deposits, one withdraws, 100 times
/// each, under the lock; the balance ends where it started.
#[test]
fn bank_deposit_and_withdraw_end_at_start() {
    let balance = psync::Mutex::anonymous(Mutex::new(200i64)).unwrap();
    let worker = |delta: i64| {
        let balance = &balance;
        fork(move || {
            for _ in 0..100 {
                let g = balance.lock().unwrap();
                let v = g.get();
                std::thread::yield_now();
                g.set(v + delta);
            }
            0
        })
    };
    let children = vec![worker(1), worker(-1)];
    all_succeed(children);
    assert_eq!(balance.lock().unwrap().get(), 200);
}

/// 20 processes through Semaphore(10): never more than 10 inside.
#[test]
fn semaphore_of_ten_admits_at_most_ten_of_twenty() {
    let sem = psync::Semaphore::anonymous(Semaphore::bounded(10)).unwrap();
    // [inside now, most ever inside]
    let stats = psync::Mutex::anonymous(Mutex::new([0u32; 2])).unwrap();
    let children = (0..20)
        .map(|_| {
            fork(|| {
                for _ in 0..10 {
                    let Ok(permit) = sem.acquire_timeout(Duration::from_secs(30)) else {
                        return 2;
                    };
                    stats.lock().unwrap().update(|[inside, max]| {
                        *inside += 1;
                        *max = (*max).max(*inside);
                    });
                    std::thread::sleep(Duration::from_micros(200));
                    stats.lock().unwrap().update(|[inside, _]| *inside -= 1);
                    drop(permit); // released
                }
                0
            })
        })
        .collect();
    all_succeed(children);
    let [inside, max] = stats.lock().unwrap().get();
    assert_eq!(inside, 0);
    assert!(max <= 10, "{max} processes were inside a Semaphore(10)");
    assert!(max >= 1);
    assert_eq!(sem.available(), 10);
    // Bounded: one release too many is an error.
    assert!(sem.release().is_err());
}

/// Event: a child blocked in `wait` wakes when the parent sets; a child's
/// `wait_timeout` on an unset event returns false, never early.
#[test]
fn event_wait_with_and_without_timeout() {
    let ev = psync::Event::anonymous(Event::new()).unwrap();
    let seen = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let waiter = fork(|| {
        ev.wait();
        seen.lock().unwrap().set(1);
        0
    });
    let timed = fork(|| {
        let other = Event::new(); // never set
        let d = Duration::from_millis(30);
        let t0 = Instant::now();
        if other.wait_timeout(d) || t0.elapsed() < d {
            return 2;
        }
        // And a timed wait that the parent's set ends early.
        if !ev.wait_timeout(Duration::from_secs(30)) {
            return 3;
        }
        0
    });
    std::thread::sleep(Duration::from_millis(20)); // let them block (not needed for correctness)
    ev.set();
    all_succeed(vec![waiter, timed]);
    assert_eq!(seen.lock().unwrap().get(), 1);
    // Timed out across processes too: the child waits on a cleared event.
    ev.clear();
    let child = fork(|| {
        let d = Duration::from_millis(30);
        let t0 = Instant::now();
        i32::from(ev.wait_timeout(d) || t0.elapsed() < d)
    });
    assert_eq!(child.wait_timeout(HANG), Some(Exit::Code(0)));
}

/// Barrier rounds across processes: in every round each party sees all
/// the others' progress, and exactly one leader is elected per round.
#[test]
fn barrier_rounds_across_processes() {
    const PARTIES: usize = 4;
    const ROUNDS: u32 = 20;
    let barrier = psync::Barrier::anonymous(PARTIES as u32).unwrap();
    let progress = psync::Mutex::anonymous(Mutex::new([0u32; PARTIES])).unwrap();
    let leaders = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let children = (0..PARTIES)
        .map(|me| {
            let (barrier, progress, leaders) = (&barrier, &progress, &leaders);
            fork(move || {
                for round in 0..ROUNDS {
                    progress.lock().unwrap().update(|p| p[me] = round + 1);
                    let Ok(r) = barrier.wait_timeout(Duration::from_secs(30)) else {
                        return 2;
                    };
                    if r.is_leader() {
                        leaders.lock().unwrap().update(|l| *l += 1);
                    }
                    if progress
                        .lock()
                        .unwrap()
                        .get()
                        .iter()
                        .any(|&p| p < round + 1)
                    {
                        return 3;
                    }
                    // Second barrier so no one races into the next round's
                    // progress update before everyone checked.
                    if barrier.wait_timeout(Duration::from_secs(30)).is_err() {
                        return 4;
                    }
                }
                barrier.unregister();
                0
            })
        })
        .collect();
    all_succeed(children);
    assert_eq!(leaders.lock().unwrap().get(), ROUNDS);
    assert!(!barrier.is_broken());
}

/// Condvar producer/consumer across processes through a bounded buffer
/// count: every produced item is consumed, none twice.
#[test]
fn condvar_producer_consumer_across_processes() {
    const ITEMS: u64 = 300;
    const CAP: u64 = 4;
    // [items in buffer, produced, consumed]
    let state = psync::Mutex::anonymous(Mutex::new([0u64; 3])).unwrap();
    let not_full = psync::Condvar::anonymous(Condvar::new()).unwrap();
    let not_empty = psync::Condvar::anonymous(Condvar::new()).unwrap();
    let producer = fork(|| {
        for _ in 0..ITEMS {
            let g = not_full
                .wait_while(state.lock().unwrap(), |s| s[0] == CAP)
                .unwrap();
            g.update(|s| {
                s[0] += 1;
                s[1] += 1;
            });
            drop(g);
            not_empty.notify_one();
        }
        0
    });
    let consumer = fork(|| {
        for _ in 0..ITEMS {
            let g = not_empty
                .wait_while(state.lock().unwrap(), |s| s[0] == 0)
                .unwrap();
            g.update(|s| {
                s[0] -= 1;
                s[2] += 1;
            });
            drop(g);
            not_full.notify_one();
        }
        0
    });
    all_succeed(vec![producer, consumer]);
    assert_eq!(state.lock().unwrap().get(), [0, ITEMS, ITEMS]);
}

/// A condvar wait_timeout across processes is never early and reports
/// the timeout.
#[test]
fn condvar_wait_timeout_is_never_early() {
    let m = psync::Mutex::anonymous(Mutex::new(0u8)).unwrap();
    let cv = psync::Condvar::anonymous(Condvar::new()).unwrap();
    let child = fork(|| {
        let d = Duration::from_millis(30);
        let t0 = Instant::now();
        let (_g, timed_out) = cv.wait_timeout(m.lock().unwrap(), d).unwrap();
        i32::from(!timed_out || t0.elapsed() < d)
    });
    assert_eq!(child.wait_timeout(HANG), Some(Exit::Code(0)));
}

/// RLock: a child holding it twice keeps other processes out until its
/// outermost unlock.
#[test]
fn reentrant_mutex_excludes_other_processes() {
    let m = psync::ReentrantMutex::anonymous(ReentrantMutex::new(0u32)).unwrap();
    let held = psync::Event::anonymous(Event::new()).unwrap();
    let release = psync::Event::anonymous(Event::new()).unwrap();
    let child = fork(|| {
        let a = m.lock().unwrap();
        let b = m.lock().unwrap();
        b.set(2);
        held.set();
        if !release.wait_timeout(Duration::from_secs(30)) {
            return 2;
        }
        drop(b);
        drop(a);
        0
    });
    assert!(held.wait_timeout(HANG));
    assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    let d = Duration::from_millis(20);
    let t0 = Instant::now();
    assert!(matches!(m.lock_timeout(d), Err(LockTimeoutError::TimedOut)));
    assert!(t0.elapsed() >= d);
    release.set();
    assert_eq!(child.wait_timeout(HANG), Some(Exit::Code(0)));
    assert_eq!(m.lock().unwrap().get(), 2);
}

/// RwLock across processes: writers keep a pair equal, readers never see
/// it torn.
#[test]
fn rwlock_readers_never_see_a_torn_pair() {
    let l = psync::RwLock::anonymous(RwLock::new([0u64; 2])).unwrap();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                for _ in 0..500 {
                    let g = l.write().unwrap();
                    let [a, b] = g.get();
                    g.set([a + 1, b]);
                    std::thread::yield_now();
                    g.set([a + 1, b + 1]);
                }
                0
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                for _ in 0..500 {
                    let [a, b] = l.read().unwrap().get();
                    if a != b {
                        return 2;
                    }
                }
                0
            })
        })
        .collect();
    all_succeed(writers);
    all_succeed(readers);
    assert_eq!(l.read().unwrap().get(), [1000, 1000]);
}

/// Garbage written over every object by a hostile peer: operations fail
/// or return nonsense, never panic.
#[test]
fn garbage_bytes_never_panic() {
    fn scribble<O: shmkit_core::object::Object>(s: &Shared<O>, byte: u8) {
        let len = s.segment().payload_len();
        // SAFETY: the payload is `len` writable bytes of this process's
        // mapping; every object in it is made of atomics and Pod data, so
        // any bytes are a valid value (this simulates a hostile peer).
        unsafe { std::ptr::write_bytes(s.segment().payload().as_ptr(), byte, len) };
    }
    let short = Duration::from_millis(2);
    for byte in [0xFF, 0x80, 0x55, 0x01] {
        let m = psync::Mutex::anonymous(Mutex::new(0u64)).unwrap();
        scribble(&m, byte);
        let _ = m.try_lock();
        let _ = m.lock_timeout(short);
        let s = psync::Semaphore::anonymous(Semaphore::new(1)).unwrap();
        scribble(&s, byte);
        let _ = s.try_acquire();
        let _ = s.release();
        let e = psync::Event::anonymous(Event::new()).unwrap();
        scribble(&e, byte);
        let _ = e.wait_timeout(short);
        let b = psync::Barrier::anonymous(2).unwrap();
        scribble(&b, byte);
        let _ = b.wait_timeout(short);
        let r = psync::RwLock::anonymous(RwLock::new(0u32)).unwrap();
        scribble(&r, byte);
        let _ = r.try_read();
        let _ = r.write_timeout(short);
        let rm = psync::ReentrantMutex::anonymous(ReentrantMutex::new(0u32)).unwrap();
        scribble(&rm, byte);
        let _ = rm.try_lock();
    }
}

/// A memfd-backed semaphore handed to a child by descriptor (inherited
/// across fork, attached with `from_fd`).
#[test]
fn memfd_semaphore_attached_by_descriptor() {
    use std::os::fd::AsFd;
    let sem = psync::Semaphore::memfd(Semaphore::new(0)).unwrap();
    let fd = sem
        .segment()
        .fd()
        .unwrap()
        .as_fd()
        .try_clone_to_owned()
        .unwrap();
    let child = fork(move || {
        let Ok(mine) = psync::Semaphore::from_fd(fd) else {
            return 2;
        };
        i32::from(mine.release().is_err())
    });
    assert_eq!(child.wait_timeout(HANG), Some(Exit::Code(0)));
    assert!(sem.acquire_timeout(Duration::from_secs(10)).is_ok());
    // The wrong object type through the same kind of descriptor is refused.
    let fd = sem.segment().fd().unwrap().try_clone_to_owned().unwrap();
    assert!(psync::Event::from_fd(fd).is_err());
}

/// Python's `notify(n)`: with three processes asleep in `wait`,
/// `notify_n(1)` wakes exactly one of them and `notify_n(5)` the other two.
#[test]
fn condition_notify_n_wakes_exactly_n_sleeping_processes() {
    let cond = psync::Condition::<u32>::anonymous(0).unwrap();
    let children: Vec<Child> = (0..3)
        .map(|_| {
            fork(|| {
                let g = cond.lock().unwrap();
                let g = cond.wait(g).unwrap();
                g.update(|n| *n += 1);
                0
            })
        })
        .collect();
    // All three asleep in the kernel: counted as sleepers and in state S.
    let asleep = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('S'))
            })
            .unwrap_or(false)
    };
    let t0 = Instant::now();
    while cond.condvar().sleepers() < 3 || !children.iter().all(|c| asleep(c.pid())) {
        assert!(t0.elapsed() < HANG, "the waiters never fell asleep");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        cond.notify_n(1),
        1,
        "notify_n(1) woke another number of sleepers"
    );
    let t0 = Instant::now();
    while cond.lock().unwrap().get() < 1 {
        assert!(t0.elapsed() < HANG, "the woken waiter never counted itself");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(cond.notify_n(5), 2, "two sleepers were left to wake");
    all_succeed(children);
    assert_eq!(cond.lock().unwrap().get(), 3);
}
