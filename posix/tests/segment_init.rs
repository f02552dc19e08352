//! The init protocol with real processes: a creator SIGKILLed while
//! `INITIALIZING` is reported as `CreatorDied` (quickly, not after the
//! timeout) and the name can be recovered; a live creator stuck in init
//! makes openers time out, never early.

mod common;

use std::time::{Duration, Instant};

use common::{assert_no_leftovers, Pipe};
use shmkit_core::header::{Fingerprint, Kind};
use shmkit_posix::segment::{ObjectSpec, Options, Segment};
use shmkit_posix::{Array, OpenError, OpenOrCreateError};
use shmkit_testkit::{fork, unique_name, Child, Exit};

/// The spec of a `Array<u64>` of 8 elements, so typed handles can
/// open what these raw creators make.
fn spec() -> ObjectSpec<'static> {
    ObjectSpec {
        kind: Kind::ARRAY,
        fingerprint: Fingerprint::of::<u64>([8, 0]),
        type_name: std::any::type_name::<u64>(),
        payload_len: 64,
    }
}

/// Forks a child that creates `name` and, inside its init function, tells
/// the parent (through `started`) and then blocks forever. Returns once
/// the child is inside init, i.e. the segment is linked and INITIALIZING.
fn creator_stuck_in_init(name: &str) -> Child {
    let started = Pipe::new();
    let child_name = name.to_owned();
    let child = fork(|| {
        let mut init = |_: std::ptr::NonNull<u8>, _: usize| {
            started.release(1);
            loop {
                // SAFETY: pause only waits for a signal.
                unsafe { libc::pause() };
            }
        };
        // Never returns: init blocks until the parent kills us.
        let _ = Segment::create(&child_name, &spec(), &Options::new(), &mut init);
        3
    });
    assert!(
        started.take_within(Duration::from_secs(20)),
        "the creator never reached its init function"
    );
    child
}

#[test]
fn a_creator_killed_mid_init_is_reported_and_recoverable() {
    let tag = "init-killed";
    // Repeated: every kill must be detected, every recovery must work.
    for _ in 0..3 {
        let name = unique_name(tag);
        let creator = creator_stuck_in_init(&name);
        creator.kill9();
        assert_eq!(creator.wait(), Exit::Signal(libc::SIGKILL));

        // A generous timeout: CreatorDied must come from the dead lock,
        // long before it.
        let options = Options::new().init_timeout(Duration::from_secs(30));
        let t0 = Instant::now();
        let e = Array::<u64>::open_with(&name, &options).unwrap_err();
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t0.elapsed()
        );
        match &e {
            OpenError::CreatorDied { pid } => assert_ne!(*pid, 0),
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("create it again"), "{e}");
        // Marked ABANDONED: later openers (read-only too) are told at once.
        let e = Array::<u64>::open_read_only(&name).unwrap_err();
        assert!(matches!(e, OpenError::CreatorDied { .. }), "{e:?}");

        // Recovery: nobody maps the dead creator's segment and nobody made
        // it persistent, so creating under the name reclaims it (issue 8
        // item 7); `open` alone never does.
        let fresh = Array::<u64>::create(&name, [1; 8]).unwrap();
        assert_eq!(Array::<u64>::open(&name).unwrap().to_vec(), vec![1; 8]);
        drop(fresh);
    }
    assert_no_leftovers(tag);
}

/// An opener already waiting when the creator is killed wakes up with
/// CreatorDied instead of sleeping until its timeout.
#[test]
fn a_waiting_opener_learns_of_the_creators_death() {
    let tag = "init-waiting";
    let name = unique_name(tag);
    let creator = creator_stuck_in_init(&name);
    let opener_name = name.clone();
    let opener = fork(move || {
        let options = Options::new().init_timeout(Duration::from_secs(60));
        match Array::<u64>::open_with(&opener_name, &options) {
            Err(OpenError::CreatorDied { .. }) => 0,
            Err(_) => 2,
            Ok(_) => 3,
        }
    });
    creator.kill9();
    assert_eq!(creator.wait(), Exit::Signal(libc::SIGKILL));
    assert_eq!(
        opener.wait_timeout(Duration::from_secs(20)),
        Some(Exit::Code(0))
    );
    Segment::unlink(&name).unwrap();
    assert_no_leftovers(tag);
}

/// A live creator stuck in init: openers (read-write and read-only) give
/// up with InitTimedOut after the timeout, never before it.
#[test]
fn openers_time_out_against_a_live_creator_stuck_in_init() {
    let tag = "init-timeout";
    let name = unique_name(tag);
    let creator = creator_stuck_in_init(&name);
    let timeout = Duration::from_millis(150);
    let options = Options::new().init_timeout(timeout);

    let t0 = Instant::now();
    let e = Array::<u64>::open_with(&name, &options).unwrap_err();
    let elapsed = t0.elapsed();
    match e {
        OpenError::InitTimedOut { waited } => {
            assert!(waited >= timeout, "reported {waited:?} < {timeout:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(elapsed >= timeout, "returned after {elapsed:?}");

    // Read-only openers wait on the state word through a PROT_READ mapping.
    let ro = options.clone().read_only(true);
    let t0 = Instant::now();
    let e = Segment::open(&name, &spec().expect(), &ro).unwrap_err();
    assert!(matches!(e, OpenError::InitTimedOut { .. }), "{e:?}");
    assert!(t0.elapsed() >= timeout);

    // A zero timeout is a try: no waiting at all, still not an error of
    // another kind.
    let e = Segment::open(
        &name,
        &spec().expect(),
        &options.clone().init_timeout(Duration::ZERO),
    )
    .unwrap_err();
    assert!(matches!(e, OpenError::InitTimedOut { .. }), "{e:?}");
    // open_or_create reports the same.
    let e = Segment::open_or_create(&name, &spec(), &options, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(e, OpenOrCreateError::Open(OpenError::InitTimedOut { .. })),
        "{e:?}"
    );

    creator.kill9();
    assert_eq!(creator.wait(), Exit::Signal(libc::SIGKILL));
    Segment::unlink(&name).unwrap();
    assert_no_leftovers(tag);
}

/// An opener that starts while the creator is in init attaches as soon as
/// the creator publishes, and sees what init wrote.
#[test]
fn an_opener_waits_for_ready_and_sees_the_initial_contents() {
    let tag = "init-ready";
    let name = unique_name(tag);
    let started = Pipe::new();
    let go = Pipe::new();
    let child_name = name.clone();
    let creator = fork(|| {
        let mut init = |p: std::ptr::NonNull<u8>, len: usize| {
            started.release(1);
            // Hold init until the parent has an opener waiting.
            if !go.take() {
                return;
            }
            // SAFETY: the payload is `len` writable bytes only we can see.
            unsafe { p.as_ptr().write_bytes(0x7f, len) };
        };
        let options = Options::new().unlink_on_drop(false);
        match Segment::create(&child_name, &spec(), &options, &mut init) {
            Ok(_) => 0,
            Err(_) => 2,
        }
    });
    assert!(started.take_within(Duration::from_secs(20)));
    let opener_name = name.clone();
    let opener = fork(move || {
        let options = Options::new().init_timeout(Duration::from_secs(30));
        match Array::<u64>::open_with(&opener_name, &options) {
            Ok(a) if a.to_vec() == vec![0x7f7f_7f7f_7f7f_7f7f; 8] => 0,
            Ok(_) => 2,
            Err(_) => 3,
        }
    });
    go.release(1);
    assert_eq!(
        creator.wait_timeout(Duration::from_secs(20)),
        Some(Exit::Code(0))
    );
    assert_eq!(
        opener.wait_timeout(Duration::from_secs(20)),
        Some(Exit::Code(0))
    );
    Segment::unlink(&name).unwrap();
    assert_no_leftovers(tag);
}

/// An init function that panics: the half-built name is removed again, but
/// only if it is still the creator's object: a segment another process
/// put under the name meanwhile survives.
#[test]
fn a_panicking_init_removes_only_its_own_name() {
    let tag = "init-panic";
    let name = unique_name(tag);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = Segment::create(&name, &spec(), &Options::new(), &mut |_, _| {
            panic!("init failed");
        });
    }));
    assert!(result.is_err());
    let e = Array::<u64>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");

    // Meanwhile a peer removes the half-built segment and creates its own.
    let replacement = std::cell::RefCell::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = Segment::create(&name, &spec(), &Options::new(), &mut |_, _| {
            Segment::unlink(&name).unwrap();
            *replacement.borrow_mut() = Some(Array::<u64>::create(&name, [9; 8]));
            panic!("init failed");
        });
    }));
    assert!(result.is_err());
    let replacement = replacement.into_inner().unwrap().unwrap();
    assert_eq!(Array::<u64>::open(&name).unwrap().to_vec(), vec![9; 8]);
    drop(replacement);
    assert_no_leftovers(tag);
}
