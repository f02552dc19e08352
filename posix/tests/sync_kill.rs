//! kill -9 tests for every robustness claim of `shmkit_core::sync`: a
//! child takes the lock (or registers as a barrier party), tells the
//! parent through a shared Event, and is SIGKILLed. Repeated
//! `trials()` times (more with `SHMKIT_LONG_TESTS=1`).

use std::time::{Duration, Instant};

use shmkit_core::sync::{
    BarrierError, Event, LockError, Mutex, ReentrantMutex, RwLock, TryLockError,
};
use shmkit_posix::sync as psync;
use shmkit_testkit::{fork, Child, Exit};

/// Generous: only proves "not hung" on a noisy shared machine. The
/// design bound is one liveness slice (50 ms) plus a check.
const NOT_HUNG: Duration = Duration::from_secs(10);

fn trials() -> usize {
    if std::env::var_os("SHMKIT_LONG_TESTS").is_some_and(|v| v == "1") {
        1000
    } else {
        100
    }
}

/// Forks a child that runs `hold` (which takes something), sets `ready`,
/// and then sleeps until killed; returns once `ready` is set.
fn child_holding(ready: &Event, hold: impl FnOnce() -> bool) -> Child {
    ready.clear();
    let child = fork(|| {
        if !hold() {
            return 2;
        }
        ready.set();
        loop {
            // SAFETY: pause has no preconditions; we wait for SIGKILL.
            unsafe { libc::pause() };
        }
    });
    assert!(ready.wait_timeout(NOT_HUNG), "child never took the lock");
    child
}

/// Kills the child; in half the trials also reaps it first (a zombie and
/// a fully gone task must both read as dead).
fn kill(child: Child, trial: usize) -> Option<Child> {
    child.kill9();
    if trial % 2 == 0 {
        assert_eq!(
            child.wait_timeout(NOT_HUNG),
            Some(Exit::Signal(libc::SIGKILL))
        );
        None
    } else {
        Some(child)
    }
}

/// Retries a `try_` call while it says `WouldBlock`: SIGKILL is delivered
/// asynchronously, so right after `kill()` returns the owner may still be
/// alive for a moment. The result in `lock()`'s terms.
fn retry_try<G>(mut f: impl FnMut() -> Result<G, TryLockError>) -> Result<G, LockError> {
    let t0 = Instant::now();
    loop {
        match f() {
            Err(TryLockError::WouldBlock) if t0.elapsed() < NOT_HUNG => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(g) => return Ok(g),
            Err(TryLockError::Lock(e)) => return Err(e),
            Err(other) => panic!("try_ call: {other:?}"),
        }
    }
}

#[test]
fn mutex_owner_killed_is_taken_over_with_owner_died() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    for trial in 0..trials() {
        let m = psync::Mutex::anonymous(Mutex::new(0u64)).unwrap();
        let child = child_holding(&ready, || {
            m.lock()
                .map(|g| {
                    g.set(7);
                    std::mem::forget(g); // stays locked until the kill
                })
                .is_ok()
        });
        let zombie = kill(child, trial);
        let t0 = Instant::now();
        // Alternate the entry points: try_lock checks the owner at once,
        // lock and lock_timeout after a liveness slice.
        // The first locker is told (holding nothing), in a third of the
        // trials by a recoverer, which then holds the lock for repair.
        let r = match trial % 4 {
            0 => retry_try(|| m.try_lock()).map(drop),
            1 => m.lock().map(drop),
            2 => m.lock_timeout(NOT_HUNG).map(drop).map_err(|e| match e {
                shmkit_core::sync::LockTimeoutError::Lock(e) => e,
                other => panic!("trial {trial}: {other:?}"),
            }),
            _ => Err(LockError::OwnerDied),
        };
        assert_eq!(r, Err(LockError::OwnerDied), "trial {trial}");
        assert!(t0.elapsed() < NOT_HUNG);
        // So is everyone after it, in any process, until a repair.
        let other = fork(|| i32::from(m.lock().err() != Some(LockError::OwnerDied)));
        assert_eq!(other.wait_timeout(NOT_HUNG), Some(Exit::Code(0)));
        let mut g = if trial % 4 == 3 {
            retry_try(|| m.try_recover()).unwrap()
        } else {
            m.recover().unwrap()
        };
        assert!(g.owner_died(), "trial {trial}");
        assert_eq!(g.get(), 7);
        g.set(8);
        g.mark_consistent();
        drop(g);
        assert_eq!(m.lock().unwrap().get(), 8);
        drop(zombie);
    }
}

/// Pthread's rule: a recoverer that unlocks without mark_consistent makes
/// the lock not recoverable, for every process.
#[test]
fn mutex_unmarked_recovery_is_not_recoverable_across_processes() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    let m = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let child = child_holding(&ready, || m.lock().map(std::mem::forget).is_ok());
    drop(kill(child, 0));
    let g = retry_try(|| m.try_recover()).unwrap();
    assert!(g.owner_died());
    drop(g); // not marked
    let other = fork(|| i32::from(!matches!(m.lock(), Err(LockError::NotRecoverable))));
    assert_eq!(other.wait_timeout(NOT_HUNG), Some(Exit::Code(0)));
}

/// A waiter already blocked in `lock()` when the owner dies learns it
/// within the bound (asserted generously: not hung).
#[test]
fn blocked_waiter_learns_of_the_dead_owner() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    let waiting = psync::Event::anonymous(Event::new()).unwrap();
    let rounds = trials() / 10;
    let mut slowest = Duration::ZERO;
    for trial in 0..rounds {
        let m = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
        waiting.clear();
        let owner = child_holding(&ready, || m.lock().map(std::mem::forget).is_ok());
        let waiter = fork(|| {
            waiting.set();
            match m.lock() {
                Err(LockError::OwnerDied) => 0,
                _ => 2,
            }
        });
        assert!(waiting.wait_timeout(NOT_HUNG));
        // The waiter is (very likely) asleep in lock() by now; either way
        // it must end up with OwnerDied.
        std::thread::sleep(Duration::from_millis(2));
        let t0 = Instant::now();
        drop(kill(owner, trial));
        assert_eq!(
            waiter.wait_timeout(NOT_HUNG),
            Some(Exit::Code(0)),
            "trial {trial}"
        );
        let took = t0.elapsed();
        assert!(took < NOT_HUNG);
        slowest = slowest.max(took);
    }
    // For information (no speed assertion on a shared machine): the design
    // bound is one 50 ms liveness slice plus a check and the process exit.
    eprintln!("slowest kill-to-waiter-done over {rounds} trials: {slowest:?}");
}

#[test]
fn reentrant_owner_killed_is_taken_over() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    for trial in 0..trials() {
        let m = psync::ReentrantMutex::anonymous(ReentrantMutex::new(0u32)).unwrap();
        let child = child_holding(&ready, || {
            let (Ok(a), Ok(b)) = (m.lock(), m.lock()) else {
                return false;
            };
            b.set(5);
            std::mem::forget(b);
            std::mem::forget(a);
            true
        });
        let zombie = kill(child, trial);
        let r = if trial % 2 == 0 {
            retry_try(|| m.try_lock()).map(drop)
        } else {
            m.lock().map(drop)
        };
        assert_eq!(r, Err(LockError::OwnerDied), "trial {trial}");
        assert_eq!(m.depth(), 0);
        let mut g = m.recover().unwrap();
        assert!(g.owner_died());
        assert_eq!(m.depth(), 1);
        assert_eq!(g.get(), 5);
        g.mark_consistent();
        drop(g);
        assert_eq!(m.depth(), 0);
        assert!(m.try_lock().is_ok());
        drop(zombie);
    }
}

#[test]
fn rwlock_writer_killed_is_reported_until_repaired() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    for trial in 0..trials() {
        let l = psync::RwLock::anonymous(RwLock::new(0u32)).unwrap();
        let child = child_holding(&ready, || {
            l.write()
                .map(|g| {
                    g.set(9);
                    std::mem::forget(g);
                })
                .is_ok()
        });
        let zombie = kill(child, trial);
        // A reader (try or blocking) takes the dead writer's lock over.
        let r = if trial % 2 == 0 {
            retry_try(|| l.try_read()).map(drop)
        } else {
            l.read().map(drop)
        };
        assert_eq!(r, Err(LockError::OwnerDied), "trial {trial}");
        assert_eq!(l.write().unwrap_err(), LockError::OwnerDied);
        let mut w = l.recover().unwrap();
        assert!(w.owner_died());
        assert_eq!(w.get(), 9);
        w.set(10);
        w.mark_consistent();
        drop(w);
        assert_eq!(l.read().unwrap().get(), 10);
        drop(zombie);
    }
}

#[test]
fn barrier_party_killed_breaks_the_barrier() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    for trial in 0..trials() {
        let b = psync::Barrier::anonymous(2).unwrap();
        let child = child_holding(&ready, || b.register());
        let zombie = kill(child, trial);
        let t0 = Instant::now();
        assert_eq!(
            b.wait_timeout(NOT_HUNG),
            Err(BarrierError::Broken),
            "trial {trial}"
        );
        assert!(t0.elapsed() < NOT_HUNG);
        assert!(b.is_broken());
        b.reset();
        assert!(!b.is_broken());
        drop(zombie);
    }
}

/// A party that completed a round and died before the next breaks the
/// next round (registration happened in its first wait).
#[test]
fn barrier_party_dying_between_rounds_breaks_the_next() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    let b = psync::Barrier::anonymous(2).unwrap();
    let child = fork(|| {
        if b.wait().is_err() {
            return 2;
        }
        ready.set();
        loop {
            // SAFETY: pause has no preconditions; we wait for SIGKILL.
            unsafe { libc::pause() };
        }
    });
    assert!(b.wait_timeout(NOT_HUNG).is_ok());
    assert!(ready.wait_timeout(NOT_HUNG));
    drop(kill(child, 0));
    assert_eq!(b.wait_timeout(NOT_HUNG), Err(BarrierError::Broken));
}
