//! CPython's `Lib/test/_test_multiprocessing.py`, the lock, signal and
//! shared-data half (`_TestLock`, `_TestSemaphore`, `_TestCondition`,
//! `_TestEvent`, `_TestBarrier`, `_TestValue`, `_TestArray`,
//! `_TestSharedCTypes`, `_TestSharedMemory`), ported check by check to
//! shmkit's API. Each test is named `<python class>__<python test>` and
//! says where it differs; `docs/cpython-parity.md` lists every check.
//!
//! Where Python starts processes, these tests start real ones
//! (`process::spawn` under the fork method); where Python adds threads,
//! so do they. Timeouts are asserted never early and with generous slack
//! late; nothing waits on a sleep for another process to get somewhere
//! (the sleeps left are the delays under test, as in Python).

// `<class>__<test>`: the double underscore separates the Python names.
#![allow(non_snake_case)]

mod common;

use common::{fork, serial};
use std::time::{Duration, Instant};

use shmkit_posix::process::Child;
use shmkit_posix::sync::{
    self as psync, BarrierError, LockError, ReleaseError, TryLockError, UnlockError,
};
use shmkit_posix::{queue, segment, Array, Pod, SegmentName, Value, Zeroable};
use shmkit_testkit::unique_name;

/// Long enough that only a hang reaches it.
const HANG: Duration = Duration::from_secs(30);
/// Python's `TIMEOUT1`, `TIMEOUT2` (the fast settings).
const TIMEOUT1: Duration = Duration::from_millis(100);
const TIMEOUT2: Duration = Duration::from_millis(350);
/// How late a timed call may return on a busy 2-vCPU machine.
const SLACK: Duration = Duration::from_secs(5);

/// `f` returned (Python's `TimingWrapper`), with how long it took.
fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t0 = Instant::now();
    let r = f();
    (r, t0.elapsed())
}

/// A timed call that should have returned after `expected`: never
/// before, and not absurdly late.
fn assert_took(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected,
        "returned early: {elapsed:?} < {expected:?}"
    );
    assert!(elapsed < expected + SLACK, "returned late: {elapsed:?}");
}

/// A call that should not have waited at all.
fn assert_immediate(elapsed: Duration) {
    assert!(elapsed < SLACK, "waited {elapsed:?}");
}

/// Joins a child and asserts it returned 0 (its checks passed).
fn join_ok(child: Child<u32>) {
    assert_eq!(child.join().expect("the child ran to its end"), 0);
}

// ---------------------------------------------------------------- _TestLock

/// `test_lock`: acquire succeeds, a non-blocking acquire of the held lock
/// fails, release succeeds, and releasing the unlocked lock is an error.
#[test]
fn test_lock__release_unlocked_is_an_error() {
    let lock = psync::Lock::new().unwrap();
    lock.lock().unwrap().forget(); // lock.acquire() == True
                                   // lock.acquire(False) == False (this thread holds it: shmkit says why)
    assert_eq!(
        lock.try_lock().unwrap_err(),
        TryLockError::Lock(LockError::WouldDeadlock)
    );
    assert_eq!(lock.unlock(), Ok(())); // lock.release() is None
    assert_eq!(lock.unlock(), Err(UnlockError::NotLocked)); // ValueError
    assert!(
        lock.try_lock().is_ok(),
        "the failed release changed nothing"
    );
}

/// `test_lock` across processes: while a child holds the lock, the
/// parent's non-blocking acquire fails and its release is refused (shmkit
/// locks belong to their holder; Python's `Lock` would let any process
/// release it).
#[test]
fn test_lock__held_by_another_process() {
    let _serial = serial();
    let lock = psync::Lock::new().unwrap();
    let held = psync::Event::new().unwrap();
    let done = psync::Event::new().unwrap();
    let child = fork()
        .spawn(|| {
            let Ok(g) = lock.lock() else { return 1u32 };
            held.set();
            if !done.wait_timeout(HANG) {
                return 2;
            }
            drop(g);
            0
        })
        .unwrap();
    assert!(held.wait_timeout(HANG));
    assert_eq!(lock.try_lock().unwrap_err(), TryLockError::WouldBlock);
    assert_eq!(lock.unlock(), Err(UnlockError::NotOwner));
    done.set();
    join_ok(child);
    assert_eq!(lock.unlock(), Err(UnlockError::NotLocked));
    assert!(lock.lock_timeout(HANG).is_ok());
}

/// Extra, `acquire(timeout=t)` on a `Lock` and an `RLock` (what
/// `_TestSemaphore.test_timeout` checks of semaphores): while another
/// process holds the lock, a timed acquire fails after its timeout, never
/// before, and succeeds once the holder lets go.
#[test]
fn test_lock__acquire_timeout_while_another_process_holds_it() {
    let _serial = serial();
    let lock = psync::Lock::new().unwrap();
    let rlock = psync::RLock::anonymous(()).unwrap();
    let held = psync::Event::new().unwrap();
    let done = psync::Event::new().unwrap();
    let child = fork()
        .spawn(|| {
            let (Ok(a), Ok(b)) = (lock.lock(), rlock.lock()) else {
                return 1u32;
            };
            held.set();
            if !done.wait_timeout(HANG) {
                return 2;
            }
            drop((a, b));
            0
        })
        .unwrap();
    assert!(held.wait_timeout(HANG));
    let (r, t) = timed(|| lock.lock_timeout(TIMEOUT1).map(drop));
    assert_eq!(r, Err(psync::LockTimeoutError::TimedOut));
    assert_took(t, TIMEOUT1);
    let (r, t) = timed(|| rlock.lock_timeout(TIMEOUT1).map(drop));
    assert_eq!(r, Err(psync::LockTimeoutError::TimedOut));
    assert_took(t, TIMEOUT1);
    done.set();
    assert!(lock.lock_timeout(HANG).is_ok());
    assert!(rlock.lock_timeout(HANG).is_ok());
    join_ok(child);
}

/// Python's `cond.acquire()` ... `cond.release()` without `with` (the
/// `_TestCondition` helper `f` does it): a condition's lock kept with
/// `forget` is given back with `unlock`, by its holder only.
#[test]
fn test_condition__bare_acquire_release() {
    let cond = Cond::anonymous(0).unwrap();
    cond.lock().unwrap().forget();
    assert!(cond.try_lock().is_err());
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(cond.unlock(), Err(UnlockError::NotOwner)));
    });
    assert_eq!(cond.unlock(), Ok(()));
    assert_eq!(cond.unlock(), Err(UnlockError::NotLocked));
    assert!(cond.try_lock().is_ok());
}

/// `test_rlock`: three acquires, three releases, and a fourth release is
/// an error.
#[test]
fn test_rlock__release_unowned_is_an_error() {
    let lock = psync::RLock::anonymous(()).unwrap();
    for depth in 1..=3 {
        lock.lock().unwrap().forget();
        assert_eq!(lock.depth(), depth);
    }
    for depth in (0..3).rev() {
        assert_eq!(lock.unlock(), Ok(()));
        assert_eq!(lock.depth(), depth);
    }
    assert_eq!(lock.unlock(), Err(UnlockError::NotLocked));
}

/// `test_rlock`'s error for a release by a non-owner (Python's
/// `AssertionError`/`RuntimeError: cannot release un-acquired lock`),
/// here with the owner in another process.
#[test]
fn test_rlock__release_by_a_non_owner_is_an_error() {
    let _serial = serial();
    let lock = psync::RLock::anonymous(()).unwrap();
    let held = psync::Event::new().unwrap();
    let done = psync::Event::new().unwrap();
    let child = fork()
        .spawn(|| {
            let (Ok(a), Ok(b)) = (lock.lock(), lock.lock()) else {
                return 1u32;
            };
            held.set();
            if !done.wait_timeout(HANG) {
                return 2;
            }
            drop((b, a));
            0
        })
        .unwrap();
    assert!(held.wait_timeout(HANG));
    assert_eq!(lock.unlock(), Err(UnlockError::NotOwner));
    assert_eq!(lock.try_lock().unwrap_err(), TryLockError::WouldBlock);
    done.set();
    join_ok(child);
    assert!(lock.try_lock().is_ok());
}

/// `test_lock_context`: `with Lock(): pass` is a guard's scope.
#[test]
fn test_lock__lock_context() {
    let lock = psync::Lock::new().unwrap();
    {
        let _g = lock.lock().unwrap();
        assert!(lock.is_held_by_current_thread());
    }
    assert!(!lock.is_locked());
}

// ----------------------------------------------------------- _TestSemaphore

/// `_test_semaphore`: the value counts down with acquires and up with
/// releases; a non-blocking acquire at 0 fails.
fn check_semaphore(sem: &psync::Semaphore) {
    assert_eq!(sem.available(), 2);
    sem.acquire().forget();
    assert_eq!(sem.available(), 1);
    sem.acquire().forget();
    assert_eq!(sem.available(), 0);
    assert!(sem.try_acquire().is_none());
    assert_eq!(sem.available(), 0);
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.available(), 1);
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.available(), 2);
}

/// `test_semaphore`: an unbounded semaphore takes releases past its
/// initial value.
#[test]
fn test_semaphore__semaphore() {
    let sem = psync::Semaphore::anonymous(2u32).unwrap();
    check_semaphore(&sem);
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.available(), 3);
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.available(), 4);
}

/// `test_bounded_semaphore`, with the check CPython comments out ("fails
/// on OS/X"): a release past the bound is an error and changes nothing.
#[test]
fn test_semaphore__bounded_semaphore() {
    let sem = psync::Semaphore::anonymous(shmkit_core::sync::Semaphore::bounded(2)).unwrap();
    check_semaphore(&sem);
    assert_eq!(sem.release(), Err(ReleaseError::Full));
    assert_eq!(sem.available(), 2);
}

/// `test_timeout`: non-blocking and timed acquires of an empty semaphore
/// fail, the timed ones after their timeout.
#[test]
fn test_semaphore__timeout() {
    let sem = psync::Semaphore::anonymous(0u32).unwrap();
    let (r, t) = timed(|| sem.try_acquire().is_none());
    assert!(r);
    assert_immediate(t);
    let (r, t) = timed(|| sem.acquire_timeout(Duration::ZERO).is_err());
    assert!(r);
    assert_immediate(t);
    let (r, t) = timed(|| sem.acquire_timeout(TIMEOUT2).is_err());
    assert!(r);
    assert_took(t, TIMEOUT2);
    let (r, t) = timed(|| sem.acquire_timeout(TIMEOUT1).is_err());
    assert!(r);
    assert_took(t, TIMEOUT1);
}

/// Extra: a permit released by another process ends a blocked acquire
/// (Python's semaphores are used this way in every `_TestCondition`
/// test).
#[test]
fn test_semaphore__release_by_another_process() {
    let _serial = serial();
    let sem = psync::Semaphore::anonymous(0u32).unwrap();
    let child = fork().spawn(|| u32::from(sem.release().is_err())).unwrap();
    sem.acquire_timeout(HANG).unwrap().forget();
    join_ok(child);
    assert_eq!(sem.available(), 0);
}

// ----------------------------------------------------------- _TestCondition

/// The condition of the `_TestCondition` tests: its data counts the
/// notifications not yet consumed. (Python's `f` waits once and counts on
/// no spurious wake-up; shmkit's `wait`, like POSIX and std condition
/// variables, may return spuriously, so a waiter waits for a ticket.)
type Cond = psync::Condition<u32>;

/// Python's `f(cond, sleeping, woken, timeout)`: lock, say it sleeps,
/// wait, say it woke. With a timeout nobody notifies, so the wait must
/// time out; without one it consumes one notification. Returns 0 if all
/// went as Python's test expects.
fn condition_f(
    cond: &Cond,
    sleeping: &psync::Semaphore,
    woken: &psync::Semaphore,
    timeout: Option<Duration>,
) -> u32 {
    let Ok(g) = cond.lock() else { return 1 };
    if sleeping.release().is_err() {
        return 2;
    }
    let g = match timeout {
        Some(t) => {
            let t0 = Instant::now();
            match cond.wait_timeout(g, t) {
                // A spurious wake-up would return early: time out again.
                Ok((g, true)) if t0.elapsed() >= t => g,
                Ok((g, _)) => match cond.wait_for_timeout(g, t, |_| false) {
                    Ok((g, false)) => g,
                    _ => return 3,
                },
                Err(_) => return 4,
            }
        }
        None => match cond.wait_for(g, |tickets| *tickets > 0) {
            Ok(g) => {
                g.update(|t| *t -= 1);
                g
            }
            Err(_) => return 5,
        },
    };
    if woken.release().is_err() {
        return 6;
    }
    drop(g);
    0
}

/// Python's `check_invariant`: no sleepers left, no notification left.
fn check_invariant(cond: &Cond) {
    assert_eq!(cond.condvar().sleepers(), 0);
    assert_eq!(cond.lock().unwrap().get(), 0);
}

/// Lets `n` waiters go: `n` tickets and a `notify(n)`, under the lock.
fn notify(cond: &Cond, n: u32) {
    let g = cond.lock().unwrap();
    g.update(|t| *t += n);
    cond.notify_n(n);
}

struct Waiters<'a> {
    processes: Vec<Child<u32>>,
    threads: Vec<std::thread::ScopedJoinHandle<'a, u32>>,
}

impl Waiters<'_> {
    fn join(self) {
        for p in self.processes {
            join_ok(p);
        }
        for t in self.threads {
            assert_eq!(t.join().unwrap(), 0);
        }
    }
}

/// Starts `pairs` waiting processes and `pairs` waiting threads, as the
/// Python tests do (processes first: the fork happens with no thread of
/// this test running).
fn start_waiters<'s, 'e: 's>(
    scope: &'s std::thread::Scope<'s, 'e>,
    pairs: usize,
    cond: &'e Cond,
    sleeping: &'e psync::Semaphore,
    woken: &'e psync::Semaphore,
    timeout: Option<Duration>,
) -> Waiters<'s> {
    let processes = (0..pairs)
        .map(|_| {
            fork()
                .spawn(|| condition_f(cond, sleeping, woken, timeout))
                .unwrap()
        })
        .collect();
    let threads = (0..pairs)
        .map(|_| scope.spawn(move || condition_f(cond, sleeping, woken, timeout)))
        .collect();
    Waiters { processes, threads }
}

/// `test_notify`: a process and a thread sleep; each `notify()` wakes one.
#[test]
fn test_condition__notify() {
    let _serial = serial();
    let cond = Cond::anonymous(0).unwrap();
    let sleeping = psync::Semaphore::anonymous(0u32).unwrap();
    let woken = psync::Semaphore::anonymous(0u32).unwrap();
    std::thread::scope(|s| {
        let waiters = start_waiters(s, 1, &cond, &sleeping, &woken, None);
        for _ in 0..2 {
            sleeping.acquire_timeout(HANG).unwrap().forget();
        }
        assert_eq!(woken.available(), 0);
        notify(&cond, 1);
        woken.acquire_timeout(HANG).unwrap().forget();
        notify(&cond, 1);
        woken.acquire_timeout(HANG).unwrap().forget();
        waiters.join();
    });
    assert_eq!(woken.available(), 0, "exactly two woke");
    check_invariant(&cond);
}

/// `test_notify_all`: three processes and three threads time out; three
/// more of each sleep and one `notify_all()` wakes all six.
#[test]
fn test_condition__notify_all() {
    let _serial = serial();
    let cond = Cond::anonymous(0).unwrap();
    let sleeping = psync::Semaphore::anonymous(0u32).unwrap();
    let woken = psync::Semaphore::anonymous(0u32).unwrap();
    std::thread::scope(|s| {
        let waiters = start_waiters(s, 3, &cond, &sleeping, &woken, Some(TIMEOUT1));
        for _ in 0..6 {
            sleeping.acquire_timeout(HANG).unwrap().forget();
        }
        for _ in 0..6 {
            woken.acquire_timeout(HANG).unwrap().forget();
        }
        assert_eq!(woken.available(), 0);
        waiters.join();
    });
    check_invariant(&cond);
    std::thread::scope(|s| {
        let waiters = start_waiters(s, 3, &cond, &sleeping, &woken, None);
        for _ in 0..6 {
            sleeping.acquire_timeout(HANG).unwrap().forget();
        }
        assert_eq!(woken.available(), 0);
        {
            let g = cond.lock().unwrap();
            g.set(6);
            cond.notify_all();
        }
        for _ in 0..6 {
            woken.acquire_timeout(HANG).unwrap().forget();
        }
        waiters.join();
    });
    assert_eq!(woken.available(), 0);
    check_invariant(&cond);
}

/// `test_notify_n`: of six sleepers `notify(n=2)` wakes two, `notify(n=4)`
/// the other four, and a `notify(n=3)` with nobody waiting wakes nobody.
#[test]
fn test_condition__notify_n() {
    let _serial = serial();
    let cond = Cond::anonymous(0).unwrap();
    let sleeping = psync::Semaphore::anonymous(0u32).unwrap();
    let woken = psync::Semaphore::anonymous(0u32).unwrap();
    std::thread::scope(|s| {
        let waiters = start_waiters(s, 3, &cond, &sleeping, &woken, None);
        for _ in 0..6 {
            sleeping.acquire_timeout(HANG).unwrap().forget();
        }
        assert_eq!(woken.available(), 0);
        notify(&cond, 2);
        for _ in 0..2 {
            woken.acquire_timeout(HANG).unwrap().forget();
        }
        notify(&cond, 4);
        for _ in 0..4 {
            woken.acquire_timeout(HANG).unwrap().forget();
        }
        waiters.join();
    });
    let g = cond.lock().unwrap();
    assert_eq!(cond.notify_n(3), 0, "nobody waits: nobody woken");
    drop(g);
    assert_eq!(woken.available(), 0);
    check_invariant(&cond);
}

/// `test_timeout`: `wait(TIMEOUT1)` with no notifier returns false after
/// the timeout.
#[test]
fn test_condition__timeout() {
    let cond = Cond::anonymous(0).unwrap();
    let g = cond.lock().unwrap();
    let (r, t) = timed(|| cond.wait_timeout(g, TIMEOUT1).unwrap());
    let (g, timed_out) = r;
    drop(g);
    assert!(timed_out);
    // Spurious wake-ups aside (none here: nobody notifies), never early.
    assert_took(t, TIMEOUT1);
}

/// `test_waitfor`: a child waits for `state == 4` while the parent counts
/// up, notifying each step; the parent first waits for the child's
/// `state = 0`.
#[test]
fn test_condition__waitfor() {
    let _serial = serial();
    let cond = psync::Condition::<i32>::anonymous(-1).unwrap();
    let child = fork()
        .spawn(|| {
            let Ok(g) = cond.lock() else { return 1u32 };
            g.set(0);
            cond.notify_one();
            match cond.wait_for(g, |state| *state == 4) {
                Ok(g) if g.get() == 4 => 0,
                _ => 2,
            }
        })
        .unwrap();
    let g = cond.wait_for(cond.lock().unwrap(), |s| *s == 0).unwrap();
    assert_eq!(g.get(), 0);
    drop(g);
    for _ in 0..4 {
        let g = cond.lock().unwrap();
        g.update(|s| *s += 1);
        cond.notify_one();
    }
    join_ok(child);
}

/// `test_waitfor_timeout`: a child's `wait_for(state == 4, 0.1 s)` sees
/// only three increments and returns false, not before its timeout.
#[test]
fn test_condition__waitfor_timeout() {
    let _serial = serial();
    let cond = psync::Condition::<i32>::anonymous(0).unwrap();
    let started = psync::Semaphore::anonymous(0u32).unwrap();
    let expected = Duration::from_millis(100);
    let child = fork()
        .spawn(|| {
            let _ = started.release();
            let Ok(g) = cond.lock() else { return 1u32 };
            let t0 = Instant::now();
            match cond.wait_for_timeout(g, expected, |state| *state == 4) {
                Ok((_, false)) if t0.elapsed() >= expected => 0,
                Ok((_, false)) => 2,
                _ => 3,
            }
        })
        .unwrap();
    started.acquire_timeout(HANG).unwrap().forget();
    for _ in 0..3 {
        let g = cond.lock().unwrap();
        g.update(|s| *s += 1);
        cond.notify_one();
    }
    join_ok(child);
}

/// `test_wait_result`: `wait(0)` and `wait(0.1)` return false; a child's
/// notify ends a `wait(60)` with true. (The `KeyboardInterrupt` half has
/// no Rust counterpart: a signal does not unwind; waits retry `EINTR`.)
#[test]
fn test_condition__wait_result() {
    let _serial = serial();
    let cond = psync::Condition::<u32>::anonymous(0).unwrap();
    let g = cond.lock().unwrap();
    let (g, timed_out) = cond.wait_timeout(g, Duration::ZERO).unwrap();
    assert!(timed_out);
    let (g, timed_out) = cond.wait_timeout(g, TIMEOUT1).unwrap();
    assert!(timed_out);
    let child = fork()
        .spawn(|| {
            let Ok(g) = cond.lock() else { return 1u32 };
            g.set(1);
            cond.notify_one();
            0
        })
        .unwrap();
    // The child needs the lock this wait gives up.
    let (g, notified) = cond.wait_for_timeout(g, HANG, |n| *n == 1).unwrap();
    assert!(notified);
    drop(g);
    join_ok(child);
}

// --------------------------------------------------------------- _TestEvent

/// `test_event`: timed waits on a clear event return false after their
/// timeout, on a set one true at once; a child's `set()` ends a wait.
#[test]
fn test_event__event() {
    let _serial = serial();
    let event = psync::Event::new().unwrap();
    assert!(!event.is_set());
    let (r, t) = timed(|| event.wait_timeout(Duration::ZERO));
    assert!(!r);
    assert_immediate(t);
    let (r, t) = timed(|| event.wait_timeout(TIMEOUT1));
    assert!(!r);
    assert_took(t, TIMEOUT1);

    event.set();
    assert!(event.is_set());
    let (r, t) = timed(|| event.wait_timeout(HANG));
    assert!(r);
    assert_immediate(t);
    let (r, t) = timed(|| event.wait_timeout(TIMEOUT1));
    assert!(r);
    assert!(t < TIMEOUT1 + SLACK);

    event.clear();
    assert!(!event.is_set());
    let child = fork()
        .spawn(|| {
            std::thread::sleep(TIMEOUT2); // the delay under test
            event.set();
            0u32
        })
        .unwrap();
    assert!(event.wait_timeout(HANG));
    join_ok(child);
}

/// `test_repr`: the event's printed form says whether it is set.
#[test]
fn test_event__repr() {
    let event = psync::Event::new().unwrap();
    assert!(format!("{:?}", *event).contains("set: false"));
    event.set();
    assert!(format!("{:?}", *event).contains("set: true"));
    event.clear();
    assert!(format!("{:?}", *event).contains("set: false"));
}

// ------------------------------------------------------------- _TestBarrier

/// `_TestBarrier.N`.
const N: u32 = 5;

/// Python's `_DummyList`: a counter under a lock, shared with children.
type Counter = psync::Mutex<u32>;

fn counter() -> Counter {
    Counter::anonymous(0).unwrap()
}

fn bump(c: &Counter) {
    c.lock().unwrap().update(|n| *n += 1);
}

fn count(c: &Counter) -> u32 {
    c.lock().unwrap().get()
}

/// Python's `run_threads`: `f` in `N - 1` child processes and in this
/// one; every run of `f` must return 0.
fn run_parties(f: impl Fn() -> u32 + Copy) {
    let _serial = serial();
    let children: Vec<Child<u32>> = (0..N - 1).map(|_| fork().spawn(f).unwrap()).collect();
    let mine = f();
    for c in children {
        join_ok(c);
    }
    assert_eq!(mine, 0);
}

/// `run_threads` under CPython's `ThreadsMixin` (the same tests with
/// `multiprocessing.dummy`): `f` in `N - 1` threads and this one.
fn run_threads(f: impl Fn() -> u32 + Copy + Send + Sync) {
    let mine = std::thread::scope(|s| {
        let threads: Vec<_> = (0..N - 1).map(|_| s.spawn(f)).collect();
        let mine = f();
        for t in threads {
            assert_eq!(t.join().unwrap(), 0);
        }
        mine
    });
    assert_eq!(mine, 0);
}

fn barrier() -> psync::Barrier {
    psync::Barrier::anonymous(N).unwrap()
}

/// `multipass`: two counters move in lockstep through `2 * passes` rounds.
fn multipass(barrier: &psync::Barrier, results: &[Counter; 2], passes: u32) -> u32 {
    let m = barrier.parties();
    if m != N {
        return 1;
    }
    for i in 0..passes {
        bump(&results[0]);
        if count(&results[1]) != i * m {
            return 2;
        }
        if barrier.wait_timeout(HANG).is_err() {
            return 3;
        }
        bump(&results[1]);
        if count(&results[0]) != (i + 1) * m {
            return 4;
        }
        if barrier.wait_timeout(HANG).is_err() {
            return 5;
        }
    }
    if barrier.n_waiting() != 0 || barrier.is_broken() {
        return 6;
    }
    0
}

/// `test_barrier`: a barrier is passed in lockstep.
#[test]
fn test_barrier__barrier() {
    let (b, results) = (barrier(), [counter(), counter()]);
    run_parties(|| multipass(&b, &results, 1));
}

/// `test_barrier_10`: ten consecutive passes.
#[test]
fn test_barrier__barrier_10() {
    let (b, results) = (barrier(), [counter(), counter()]);
    run_parties(|| multipass(&b, &results, 10));
}

/// `test_barrier_10`, `test_action`, `test_abort` and `test_reset` under
/// CPython's `ThreadsMixin`: the parties are threads of one process.
#[test]
fn test_barrier__threads() {
    let (b, results) = (barrier(), [counter(), counter()]);
    run_threads(|| multipass(&b, &results, 10));

    let (b, ran) = (barrier(), counter());
    run_threads(|| match b.wait_timeout_with(HANG, || bump(&ran)) {
        Ok(_) => u32::from(count(&ran) != 1),
        Err(_) => 2,
    });

    let b = barrier();
    let (broken, after) = (counter(), counter());
    run_threads(|| {
        match b.wait_timeout(HANG) {
            Ok(r) if r.index() == N / 2 => b.abort(),
            Ok(_) => match b.wait_timeout(HANG) {
                Err(BarrierError::Broken) => bump(&broken),
                _ => return 1,
            },
            Err(_) => return 2,
        }
        0
    });
    assert_eq!(count(&broken), N - 1);
    assert!(b.is_broken());

    let b = barrier();
    run_threads(|| {
        match b.wait_timeout(HANG) {
            Ok(r) if r.index() == N / 2 => {
                if !poll_until(|| b.n_waiting() >= N - 1) {
                    return 1;
                }
                b.reset();
            }
            Ok(_) => match b.wait_timeout(HANG) {
                Err(BarrierError::Broken) => {}
                _ => return 2,
            },
            Err(_) => return 3,
        }
        if b.wait_timeout(HANG).is_err() {
            return 4;
        }
        bump(&after);
        0
    });
    assert_eq!(count(&after), N);
}

/// `test_wait_return`: the arrival indices of a round are 0 to N-1, so
/// exactly one party gets 0; exactly one is the leader.
#[test]
fn test_barrier__wait_return() {
    let b = barrier();
    let (tx, rx) = queue::channel::<u32>(16).unwrap();
    run_parties(|| match b.wait_timeout(HANG) {
        Ok(r) => {
            let leader = if r.is_leader() { 1000 } else { 0 };
            u32::from(tx.send(r.index() + leader).is_err())
        }
        Err(_) => 1,
    });
    let mut got: Vec<u32> = (0..N).map(|_| rx.recv_timeout(HANG).unwrap()).collect();
    assert_eq!(got.iter().filter(|&&i| i == 0).count(), 1);
    assert_eq!(got.iter().filter(|&&i| i >= 1000).count(), 1);
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3, 1000 + N - 1], "the leader arrives last");
}

/// `test_action`: the action runs once per round, before any party is
/// released.
#[test]
fn test_barrier__action() {
    let b = barrier();
    let results = counter();
    run_parties(|| match b.wait_timeout_with(HANG, || bump(&results)) {
        Ok(_) if count(&results) == 1 => 0,
        Ok(_) => 1,
        Err(_) => 2,
    });
    assert_eq!(count(&results), 1);
}

/// (shmkit only) A leader killed inside its action breaks the round: the
/// party waiting for the action's end gets `Broken` instead of hanging.
#[test]
fn test_barrier__action_leader_killed() {
    let _serial = serial();
    let b = psync::Barrier::anonymous(2).unwrap();
    let in_action = psync::Event::new().unwrap();
    let first = fork()
        .spawn(|| match b.wait_timeout(HANG) {
            Err(BarrierError::Broken) => 0u32,
            _ => 1,
        })
        .unwrap();
    assert!(poll_until(|| b.n_waiting() == 1));
    let leader = fork()
        .spawn(|| {
            let _ = b.wait_timeout_with(HANG, || {
                in_action.set();
                std::thread::sleep(HANG * 4); // until killed
            });
            2u32
        })
        .unwrap();
    assert!(in_action.wait_timeout(HANG));
    leader.kill();
    assert!(leader.join().is_err(), "killed");
    join_ok(first);
    assert!(b.is_broken());
}

/// `test_abort`: the party with index N/2 aborts; every other party's
/// second wait fails with `Broken`, and the barrier stays broken.
#[test]
fn test_barrier__abort() {
    let b = barrier();
    let (results1, results2) = (counter(), counter());
    run_parties(|| {
        match b.wait_timeout(HANG) {
            Ok(r) if r.index() == N / 2 => b.abort(),
            Ok(_) => match b.wait_timeout(HANG) {
                Ok(_) => bump(&results1),
                Err(BarrierError::Broken) => bump(&results2),
                Err(_) => return 1,
            },
            Err(_) => return 2,
        }
        0
    });
    assert_eq!(count(&results1), 0);
    assert_eq!(count(&results2), N - 1);
    assert!(b.is_broken());
}

/// Polls `cond` (Python's `while ...: time.sleep(0.001)`), failing after
/// `HANG`.
fn poll_until(mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > HANG {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// `test_reset`: the party with index N/2 waits until the others wait
/// again, then resets: they get `Broken`, and all pass the next round.
#[test]
fn test_barrier__reset() {
    let b = barrier();
    let (results1, results2, results3) = (counter(), counter(), counter());
    run_parties(|| {
        match b.wait_timeout(HANG) {
            Ok(r) if r.index() == N / 2 => {
                if !poll_until(|| b.n_waiting() >= N - 1) {
                    return 1;
                }
                b.reset();
            }
            Ok(_) => match b.wait_timeout(HANG) {
                Ok(_) => bump(&results1),
                Err(BarrierError::Broken) => bump(&results2),
                Err(_) => return 2,
            },
            Err(_) => return 3,
        }
        if b.wait_timeout(HANG).is_err() {
            return 4;
        }
        bump(&results3);
        0
    });
    assert_eq!(count(&results1), 0);
    assert_eq!(count(&results2), N - 1);
    assert_eq!(count(&results3), N);
}

/// `test_abort_and_reset`: a broken barrier is reset (between two rounds
/// of a second barrier, so nobody is inside it) and passed again.
#[test]
fn test_barrier__abort_and_reset() {
    let (b, b2) = (barrier(), barrier());
    let (results1, results2, results3) = (counter(), counter(), counter());
    run_parties(|| {
        match b.wait_timeout(HANG) {
            Ok(r) if r.index() == N / 2 => b.abort(),
            Ok(_) => match b.wait_timeout(HANG) {
                Ok(_) => bump(&results1),
                Err(BarrierError::Broken) => bump(&results2),
                Err(_) => return 1,
            },
            Err(_) => return 2,
        }
        match b2.wait_timeout(HANG) {
            Ok(r) if r.index() == N / 2 => b.reset(),
            Ok(_) => {}
            Err(_) => return 3,
        }
        if b2.wait_timeout(HANG).is_err() || b.wait_timeout(HANG).is_err() {
            return 4;
        }
        bump(&results3);
        0
    });
    assert_eq!(count(&results1), 0);
    assert_eq!(count(&results2), N - 1);
    assert_eq!(count(&results3), N);
}

/// `test_timeout`: one party is a second late; the others' `wait(0.5)`
/// breaks the barrier, and every party's wait fails (`TimedOut` for the
/// one whose timeout broke it, `Broken` for the rest; Python raises
/// `BrokenBarrierError` for both).
#[test]
fn test_barrier__timeout() {
    let b = barrier();
    let results = counter();
    run_parties(|| {
        match b.wait_timeout(HANG) {
            Ok(r) if r.index() == N / 2 => std::thread::sleep(Duration::from_secs(1)),
            Ok(_) => {}
            Err(_) => return 1,
        }
        match b.wait_timeout(Duration::from_millis(500)) {
            Err(BarrierError::Broken | BarrierError::TimedOut) => bump(&results),
            _ => return 2,
        }
        0
    });
    assert_eq!(count(&results), b.parties());
}

/// `test_default_timeout`: `Barrier(N, timeout=0.5)`; one party is a
/// second late, and the others' plain `wait()` breaks the barrier for all.
#[test]
fn test_barrier__default_timeout() {
    let b = barrier();
    b.set_default_timeout(Some(Duration::from_millis(500)));
    assert_eq!(b.default_timeout(), Some(Duration::from_millis(500)));
    let results = counter();
    run_parties(|| {
        match b.wait_timeout(HANG) {
            Ok(r) if r.index() == N / 2 => std::thread::sleep(Duration::from_secs(1)),
            Ok(_) => {}
            Err(_) => return 1,
        }
        match b.wait() {
            Err(BarrierError::Broken | BarrierError::TimedOut) => bump(&results),
            _ => return 2,
        }
        0
    });
    assert_eq!(count(&results), b.parties());
}

/// `test_single_thread`: a one-party barrier never waits.
#[test]
fn test_barrier__single_thread() {
    let b = psync::Barrier::anonymous(1).unwrap();
    assert!(b.wait().unwrap().is_leader());
    assert!(b.wait().unwrap().is_leader());
}

/// `test_thousand`: N processes pass a barrier 1000 times, each sending
/// the pass number after it; the receiver reads N copies of each number
/// in order.
#[test]
fn test_barrier__thousand() {
    let _serial = serial();
    const PASSES: u32 = 1000;
    let b = barrier();
    let (tx, rx) = queue::channel::<u32>(64).unwrap();
    let children: Vec<Child<u32>> = (0..N)
        .map(|_| {
            let tx = tx.clone();
            fork()
                .spawn(|| {
                    for i in 0..PASSES {
                        if b.wait_timeout(HANG).is_err() || tx.send(i).is_err() {
                            return 1;
                        }
                    }
                    0
                })
                .unwrap()
        })
        .collect();
    drop(tx);
    for i in 0..PASSES {
        for _ in 0..N {
            assert_eq!(rx.recv_timeout(HANG).unwrap(), i);
        }
    }
    for c in children {
        join_ok(c);
    }
}

// --------------------------------------------------------------- _TestValue

/// `test_value` / `test_rawvalue`: values of several types, set by a
/// child, read by the parent (Python's codes `i`, `d`, `h`, `q`, `c`).
#[test]
fn test_value__value() {
    let _serial = serial();
    let i = Value::<i32>::anonymous(4343).unwrap();
    let d = Value::<f64>::anonymous(3.625).unwrap();
    let h = Value::<i16>::anonymous(-232).unwrap();
    let q = Value::<i64>::anonymous(1 << 33).unwrap();
    let c = Value::<u8>::anonymous(b'x').unwrap();
    assert_eq!(
        (i.get(), d.get(), h.get(), q.get(), c.get()),
        (4343, 3.625, -232, 1 << 33, b'x')
    );
    let child = fork()
        .spawn(|| {
            i.set(24234);
            d.set(-4.25);
            h.set(234);
            q.set(1 << 34);
            c.set(b'y');
            0u32
        })
        .unwrap();
    join_ok(child);
    assert_eq!(
        (i.get(), d.get(), h.get(), q.get(), c.get()),
        (24234, -4.25, 234, 1 << 34, b'y')
    );
}

/// `test_value` with `lock=True` (the default): `Value('i', v)` is a
/// `Mutex<i32>`; its lock is the mutex (`get_lock()`), its guard the
/// object (`get_obj()`), and a child's update under it is seen.
#[test]
fn test_value__getobj_getlock() {
    let _serial = serial();
    let val = psync::Mutex::<i32>::anonymous(5).unwrap();
    let lock = val.raw(); // get_lock()
    {
        let obj = val.lock().unwrap(); // get_obj(), under the lock
        assert!(lock.is_held_by_current_thread());
        assert_eq!(obj.get(), 5);
    }
    let child = fork()
        .spawn(|| match val.lock() {
            Ok(g) => {
                g.update(|v| *v *= 3);
                0u32
            }
            Err(_) => 1,
        })
        .unwrap();
    join_ok(child);
    assert_eq!(val.lock().unwrap().get(), 15);
}

// --------------------------------------------------------------- _TestArray

const SEQ: [i32; 10] = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831];

/// Python's `f`: prefix sums, in place.
fn prefix_sums(arr: &Array<i32>) {
    for i in 1..arr.len() {
        let (a, b) = (arr.get(i - 1).unwrap(), arr.get(i).unwrap());
        arr.set(i, a + b).unwrap();
    }
}

/// `test_array` / `test_rawarray`: length, indexing, slices read and
/// written, and a child's in-place prefix sums seen by the parent.
#[test]
fn test_array__array() {
    let _serial = serial();
    let mut seq = SEQ.to_vec();
    let arr = Array::<i32>::anonymous(SEQ).unwrap();
    assert_eq!(arr.len(), seq.len());
    assert_eq!(arr.get(3), Some(seq[3]));
    let mut slice = [0; 5];
    arr.read_into(2, &mut slice).unwrap();
    assert_eq!(slice, seq[2..7]);
    arr.write_from(4, &[1, 2, 3, 4]).unwrap();
    seq[4..8].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(arr.to_vec(), seq);
    for i in 1..seq.len() {
        seq[i] += seq[i - 1];
    }
    let child = fork()
        .spawn(|| {
            prefix_sums(&arr);
            0u32
        })
        .unwrap();
    join_ok(child);
    assert_eq!(arr.to_vec(), seq);
    // Out of range is an error, not a panic (Python's IndexError).
    assert_eq!(arr.get(10), None);
    assert!(arr.set(10, 0).is_err());
}

/// `test_array_from_size`: an array made from a size is zeroed (issue
/// #11675), three times over, and can be filled.
#[test]
fn test_array__array_from_size() {
    for _ in 0..3 {
        let arr = Array::<i32>::anonymous(10usize).unwrap();
        assert_eq!(arr.len(), 10);
        assert_eq!(arr.to_vec(), [0; 10]);
        let values: Vec<i32> = (0..10).collect();
        arr.write_from(0, &values).unwrap();
        assert_eq!(arr.to_vec(), values);
    }
}

/// `test_getobj_getlock_obj`: `Array('i', range(10))` (locked) is a
/// `LockedArray<i32>`: its lock is `raw()` (`get_lock()`), its guard the
/// elements (`get_obj()`); a child's update under it is seen.
#[test]
fn test_array__getobj_getlock_obj() {
    let _serial = serial();
    let values: Vec<i32> = (0..10).collect();
    let arr = psync::LockedArray::<i32>::anonymous(values.clone()).unwrap();
    assert_eq!(arr.len(), 10);
    {
        let obj = arr.lock().unwrap();
        assert!(arr.raw().is_held_by_current_thread()); // get_lock()
        assert_eq!(obj.get(9), Some(9));
    }
    let child = fork()
        .spawn(|| match arr.lock() {
            Ok(g) => {
                for i in 0..10 {
                    let v = g.get(i).unwrap_or(0);
                    let _ = g.set(i, v * 2);
                }
                0u32
            }
            Err(_) => 1,
        })
        .unwrap();
    join_ok(child);
    let g = arr.lock().unwrap();
    assert_eq!(
        (0..10).map(|i| g.get(i).unwrap()).collect::<Vec<_>>(),
        values.iter().map(|v| v * 2).collect::<Vec<_>>()
    );
}

// --------------------------------------------------------- _TestSharedCTypes

/// Python's `_Foo(Structure)`: `x: c_int, y: c_double, z: c_longlong`.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Foo {
    x: i32,
    _pad: i32,
    y: f64,
    z: i64,
}

/// Python's `string.value *= 2` on a `c_char` array: the NUL-terminated
/// bytes, doubled.
fn double_string(bytes: &mut [u8]) {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let doubled = [&bytes[..len], &bytes[..len]].concat();
    let n = doubled.len().min(bytes.len());
    bytes[..n].copy_from_slice(&doubled[..n]);
}

/// `test_sharedctypes` (`lock=False`): ints, a double, a long long, a
/// struct, an array of doubles and a char array doubled by a child.
#[test]
fn test_sharedctypes__sharedctypes() {
    let _serial = serial();
    let x = Value::<i32>::anonymous(7).unwrap();
    let y = Value::<f64>::anonymous(1.0 / 3.0).unwrap();
    let z = Value::<i64>::anonymous(1 << 33).unwrap();
    let foo = Value::<Foo>::anonymous(Foo {
        x: 3,
        _pad: 0,
        y: 2.0,
        z: 0,
    })
    .unwrap();
    let arr = Array::<f64>::anonymous((0..10).map(f64::from).collect::<Vec<_>>()).unwrap();
    let string = Array::<u8>::anonymous(20usize).unwrap();
    string.write_from(0, b"hello").unwrap();
    let child = fork()
        .spawn(|| {
            x.update(|v| *v *= 2);
            y.update(|v| *v *= 2.0);
            z.update(|v| *v *= 2);
            foo.update(|f| {
                f.x *= 2;
                f.y *= 2.0;
            });
            let mut s = string.to_vec();
            double_string(&mut s);
            let _ = string.write_from(0, &s);
            for i in 0..arr.len() {
                let _ = arr.set(i, arr.get(i).unwrap_or(0.0) * 2.0);
            }
            0u32
        })
        .unwrap();
    join_ok(child);
    assert_eq!(x.get(), 14);
    assert!((y.get() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(z.get(), 1 << 34);
    assert_eq!((foo.get().x, foo.get().y), (6, 4.0));
    assert_eq!(
        arr.to_vec(),
        (0..10).map(|i| f64::from(i) * 2.0).collect::<Vec<_>>()
    );
    assert_eq!(&string.to_vec()[..11], b"hellohello\0");
}

/// `test_synchronize` (`lock=True`): the same through locked values and a
/// locked array.
#[test]
fn test_sharedctypes__synchronize() {
    let _serial = serial();
    let x = psync::Mutex::<i32>::anonymous(7).unwrap();
    let y = psync::Mutex::<f64>::anonymous(1.0 / 3.0).unwrap();
    let z = psync::Mutex::<i64>::anonymous(1 << 33).unwrap();
    let foo = psync::Mutex::<Foo>::anonymous(Foo {
        x: 3,
        _pad: 0,
        y: 2.0,
        z: 0,
    })
    .unwrap();
    let arr =
        psync::LockedArray::<f64>::anonymous((0..10).map(f64::from).collect::<Vec<_>>()).unwrap();
    let child = fork()
        .spawn(|| {
            let (Ok(x), Ok(y), Ok(z), Ok(foo), Ok(arr)) =
                (x.lock(), y.lock(), z.lock(), foo.lock(), arr.lock())
            else {
                return 1u32;
            };
            x.update(|v| *v *= 2);
            y.update(|v| *v *= 2.0);
            z.update(|v| *v *= 2);
            foo.update(|f| {
                f.x *= 2;
                f.y *= 2.0;
            });
            for i in 0..arr.len() {
                let _ = arr.set(i, arr.get(i).unwrap_or(0.0) * 2.0);
            }
            0
        })
        .unwrap();
    join_ok(child);
    assert_eq!(x.lock().unwrap().get(), 14);
    assert!((y.lock().unwrap().get() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(z.lock().unwrap().get(), 1 << 34);
    let f = foo.lock().unwrap().get();
    assert_eq!((f.x, f.y), (6, 4.0));
    let a = arr.lock().unwrap();
    assert_eq!(
        (0..10).map(|i| a.get(i).unwrap()).collect::<Vec<_>>(),
        (0..10).map(|i| f64::from(i) * 2.0).collect::<Vec<_>>()
    );
}

// --------------------------------------------------------- _TestSharedMemory

/// `test_shared_memory_basics`: a named block is created, written, attached
/// by name, refused a second creation, attached-or-created, refused when
/// absent, and unlinked only once.
#[test]
fn test_shared_memory__basics() {
    let name = unique_name("tsmb");
    let sms = Array::<u8>::create(&name, 512usize).unwrap();
    assert_eq!(
        sms.segment().name().map(SegmentName::as_str),
        Some(name.as_str())
    );
    assert!(sms.len() >= 512);
    sms.set(0, 42).unwrap();
    assert_eq!(sms.get(0), Some(42));
    let also = Array::<u8>::open(&name).unwrap();
    assert_eq!(also.get(0), Some(42));
    drop(also);
    // FileExistsError
    assert!(matches!(
        Array::<u8>::create(&name, 512usize),
        Err(shmkit_posix::CreateError::AlreadyExists { .. })
    ));
    // O_CREAT without O_EXCL attaches, with the existing size.
    let ok_if_exists = Array::<u8>::open_or_create(&name, 512usize).unwrap();
    assert_eq!(ok_if_exists.len(), sms.len());
    drop(ok_if_exists);
    // FileNotFoundError
    let absent = unique_name("notthere");
    assert!(matches!(
        Array::<u8>::open(&absent),
        Err(shmkit_posix::OpenError::NotFound { .. })
    ));
    // A second unlink of the same name is an error.
    let dbl = unique_name("dblunlink");
    let uno = Array::<u8>::create(&dbl, 5000usize).unwrap();
    assert!(uno.len() >= 5000);
    segment::Segment::unlink(&dbl).unwrap();
    assert!(matches!(
        segment::Segment::unlink(&dbl),
        Err(shmkit_posix::UnlinkError::NotFound { .. })
    ));
    // The name re-created by someone else survives the first creator's
    // drop (which removes the name only while it names its own block).
    let again = Array::<u8>::create(&dbl, 16usize).unwrap();
    again.set(0, 7).unwrap();
    drop(uno);
    assert_eq!(Array::<u8>::open(&dbl).unwrap().get(0), Some(7));
    drop(again);
    assert_eq!(sms.get(0), Some(42));
}

/// `test_invalid_shared_memory_cration`: a block of size 0 is refused
/// (negative sizes and a missing size do not type-check in Rust).
#[test]
fn test_shared_memory__invalid_creation() {
    let name = unique_name("zero");
    assert!(Array::<u8>::create(&name, 0usize).is_err());
    assert!(Array::<u8>::anonymous(0usize).is_err());
    assert!(Array::<u8>::open(&name).is_err(), "nothing was left behind");
}

/// `test_shared_memory_across_processes`: a child attaches by name and
/// writes; another child writes through the handle it inherited (Python
/// pickles the `SharedMemory` object).
#[test]
fn test_shared_memory__across_processes() {
    let _serial = serial();
    let name = unique_name("across");
    let sms = Array::<u8>::create(&name, 512usize).unwrap();
    let child = fork()
        .spawn(|| match Array::<u8>::open(&name) {
            Ok(local) => u32::from(local.write_from(0, b"howdy").is_err()),
            Err(_) => 1,
        })
        .unwrap();
    join_ok(child);
    assert_eq!(sms.to_vec()[..5], *b"howdy");
    let child = fork()
        .spawn(|| u32::from(sms.write_from(0, b"HELLO").is_err()))
        .unwrap();
    join_ok(child);
    assert_eq!(sms.to_vec()[..5], *b"HELLO");
}

/// `test_shared_memory_pickle_unpickle_dead_object`: once the block is
/// gone, attaching to it by name fails.
#[test]
fn test_shared_memory__attach_dead_object() {
    let name = unique_name("dead");
    let sms = Array::<u8>::create(&name, 512usize).unwrap();
    sms.write_from(0, b"pickle").unwrap();
    drop(sms); // the creator's handle: close() and unlink()
    assert!(matches!(
        Array::<u8>::open(&name),
        Err(shmkit_posix::OpenError::NotFound { .. })
    ));
}

/// `test_shared_memory_cleaned_after_process_termination`: a block whose
/// creator is killed does not leak. (Python's resource tracker unlinks
/// it; in shmkit the name stays until `reclaim_stale` — `shmkit gc`, or a
/// service at start-up — finds it a dead creator's leftover.)
#[test]
fn test_shared_memory__cleaned_after_process_termination() {
    let _serial = serial();
    let name = unique_name("killed");
    let ready = psync::Event::new().unwrap();
    let mut child = fork()
        .spawn(|| {
            let Ok(_sm) = Array::<u8>::create(&name, 10usize) else {
                return 1u32;
            };
            ready.set();
            std::thread::sleep(HANG * 4); // until killed
            2
        })
        .unwrap();
    assert!(ready.wait_timeout(HANG));
    child.terminate();
    assert_eq!(child.wait().unwrap(), -libc::SIGTERM);
    let seg_name = SegmentName::new(&name).unwrap();
    assert_eq!(segment::is_stale(&seg_name), Some(true));
    let body = seg_name.body().to_owned();
    let removed = segment::reclaim_stale(&body).unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(matches!(
        Array::<u8>::open(&name),
        Err(shmkit_posix::OpenError::NotFound { .. })
    ));
}
