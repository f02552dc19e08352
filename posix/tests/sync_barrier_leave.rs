//! Issue 8, item 7: a barrier party that leaves cleanly — drops its
//! handle, or exits normally — must not break later rounds; a party that
//! is killed still does. Real processes throughout.

use std::time::Duration;

use shmkit_core::sync::BarrierError;
use shmkit_posix::process::Builder;
use shmkit_posix::sync::Barrier;
use shmkit_testkit::{fork, unique_name, Exit};

const HANG: Duration = Duration::from_secs(30);

fn spawn() -> Builder {
    // Tests run on libtest's threads; the children only use the barrier.
    Builder::new().allow_threads(true)
}

/// Waits alone in the next round, long enough for the waiter to check
/// the registered parties' liveness (one 50 ms slice, several times): a
/// registration the gone party left behind reads as a death (`Broken`);
/// without one the wait just times out (`TimedOut`). Then the barrier is
/// reset and a full round with a fresh second party passes.
fn next_round(b: &Barrier) -> Result<(), BarrierError> {
    let alone = b.wait_timeout(Duration::from_millis(400)).map(drop);
    assert!(alone.is_err(), "one of two parties cannot pass a round");
    b.reset();
    if alone == Err(BarrierError::Broken) {
        return alone;
    }
    let party = spawn()
        .spawn(|| b.wait_timeout(HANG).is_ok() as u8)
        .unwrap();
    let mine = b.wait_timeout(HANG).map(drop);
    let theirs = party.join().unwrap();
    mine?;
    assert_eq!(theirs, 1);
    Ok(())
}

/// A child that takes part in a round and returns (a clean exit) leaves
/// the barrier usable. Before the fix its registration outlived it and
/// read as a death: the next round was `Broken`.
#[test]
fn a_party_that_exits_cleanly_does_not_break_the_next_round() {
    let b = Barrier::anonymous(2).unwrap();
    let first = spawn()
        .spawn(|| b.wait_timeout(HANG).is_ok() as u8)
        .unwrap();
    assert!(b.wait_timeout(HANG).is_ok(), "round 1");
    assert_eq!(first.join().unwrap(), 1);
    assert_eq!(next_round(&b), Ok(()));
    assert!(!b.is_broken());
}

/// A process that opened the barrier by name, took part, dropped its
/// handle and then died (no clean exit at all) left nothing behind.
#[test]
fn a_party_that_dropped_its_handle_does_not_break_the_next_round() {
    let name = unique_name("barrier-drop");
    let b = Barrier::create(&name, 2).unwrap();
    let child_name = name.clone();
    let first = fork(move || {
        let Ok(mine) = Barrier::open(&child_name) else {
            return 2;
        };
        if mine.wait_timeout(HANG).is_err() {
            return 3;
        }
        drop(mine);
        // Die without any exit handler: only the drop withdrew us.
        // SAFETY: ends this process at once.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        4
    });
    assert!(b.wait_timeout(HANG).is_ok(), "round 1");
    assert_eq!(first.wait(), Exit::Signal(libc::SIGKILL));
    assert_eq!(next_round(&b), Ok(()));
}

/// A party killed between rounds still breaks the next one.
#[test]
fn a_killed_party_still_breaks_the_next_round() {
    let b = Barrier::anonymous(2).unwrap();
    let ready = shmkit_posix::sync::Event::new().unwrap();
    let first = fork(|| {
        if b.wait_timeout(HANG).is_err() {
            return 2;
        }
        ready.set();
        loop {
            // SAFETY: pause has no preconditions; we wait for SIGKILL.
            unsafe { libc::pause() };
        }
    });
    assert!(b.wait_timeout(HANG).is_ok(), "round 1");
    assert!(ready.wait_timeout(HANG));
    first.kill9();
    assert_eq!(first.wait(), Exit::Signal(libc::SIGKILL));
    assert_eq!(next_round(&b), Err(BarrierError::Broken));
}

/// A clean `exit` (not through `process::spawn`) withdraws too: the
/// `atexit` hook.
#[test]
fn a_party_that_calls_exit_does_not_break_the_next_round() {
    let b = Barrier::anonymous(2).unwrap();
    let first = fork(|| {
        if b.wait_timeout(HANG).is_err() {
            return 2;
        }
        // Runs the atexit handlers, as a `main` returning would.
        std::process::exit(0)
    });
    assert!(b.wait_timeout(HANG).is_ok(), "round 1");
    assert_eq!(first.wait(), Exit::Code(0));
    assert_eq!(next_round(&b), Ok(()));
}
