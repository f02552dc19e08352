//! `lock=True` arrays and values between real processes.

use std::time::Duration;

use shmkit_core::sync::LockError;
use shmkit_posix::prelude::*;
use shmkit_posix::{LockedArray, LockedValue};
use shmkit_testkit::{fork, unique_name, Exit};

const HANG: Duration = Duration::from_secs(60);

/// Python's bank example with `Value('i', 200)` and its lock: deposit and
/// withdraw 100 times each in two processes; the balance ends at 200.
#[test]
fn bank_with_a_locked_value() {
    let balance = LockedValue::<i32>::anonymous(200).unwrap();
    let worker = |delta: i32| {
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
    let (a, b) = (worker(1), worker(-1));
    assert_eq!(a.wait_timeout(HANG), Some(Exit::Code(0)));
    assert_eq!(b.wait_timeout(HANG), Some(Exit::Code(0)));
    assert_eq!(balance.lock().unwrap().get(), 200);
}

/// Named locked array: children open it by name and increment every
/// element under the lock; no update is lost.
#[test]
fn named_locked_array_counts_exactly() {
    let name = unique_name("locked-array");
    let arr = LockedArray::<u64>::create(&name, 8).unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            let name = name.clone();
            fork(move || {
                let Ok(a) = LockedArray::<u64>::open(&name) else {
                    return 2;
                };
                for _ in 0..300 {
                    let g = a.lock().unwrap();
                    for i in 0..g.len() {
                        let v = g.get(i).unwrap();
                        g.set(i, v + 1).unwrap();
                    }
                }
                0
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.wait_timeout(HANG), Some(Exit::Code(0)));
    }
    assert_eq!(arr.lock().unwrap().to_vec(), vec![900; 8]);
    // Wrong element type or kind: refused.
    assert!(LockedArray::<u32>::open(&name).is_err());
    assert!(Array::<u64>::open(&name).is_err());
    assert!(LockedValue::<u64>::open(&name).is_err());
    assert_eq!(arr.lock().unwrap().get(8), None);
}

/// A process killed holding a locked value's lock: the next locker gets
/// OwnerDied with the half-done data.
#[test]
fn locked_value_owner_killed() {
    let v = LockedValue::<u64>::anonymous(1).unwrap();
    let ready = Event::new().unwrap();
    let child = fork(|| {
        let Ok(g) = v.lock() else { return 2 };
        g.set(2);
        std::mem::forget(g);
        ready.set();
        loop {
            // SAFETY: pause has no preconditions; we wait for SIGKILL.
            unsafe { libc::pause() };
        }
    });
    assert!(ready.wait_timeout(HANG));
    child.kill9();
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    assert_eq!(v.lock().unwrap_err(), LockError::OwnerDied);
    let mut g = v.recover().unwrap();
    assert!(g.owner_died());
    assert_eq!(g.get(), 2);
    g.mark_consistent();
    drop(g);
    assert!(v.lock_timeout(Duration::from_millis(10)).is_ok());
}
