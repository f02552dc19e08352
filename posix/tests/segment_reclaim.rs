//! Issue 8, items 7 and 8: leftovers of dead creators are reclaimed (what
//! Python's resource tracker does), never a segment that a live process
//! maps or that was made persistent; a fork child's drop of an inherited
//! creator handle removes nothing; and openers refuse another user's
//! object unless told to accept it.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{assert_no_leftovers, shm_path, Pipe};
use shmkit_posix::segment::{is_stale, reclaim_stale};
use shmkit_posix::{Array, CreateError, OpenError, Options, Owner, SegmentName, Value};
use shmkit_testkit::{fork, unique_name, Exit};

/// A child creates `name` and is then killed (SIGKILL, or SIGTERM whose
/// default action runs no destructor either) while it holds the handle.
fn creator_killed(name: &str, signal: i32) {
    let ready = Pipe::new();
    let child_name = name.to_owned();
    let child = fork(|| {
        let Ok(a) = Array::<u64>::create(&child_name, [7, 8, 9]) else {
            return 2;
        };
        ready.release(1);
        loop {
            // Keep the handle alive until killed.
            std::hint::black_box(&a);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    assert!(ready.take(), "the creator never created");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.pid() as i32, signal) };
    assert_eq!(child.wait(), Exit::Signal(signal));
}

#[test]
fn create_reclaims_the_leftover_of_a_killed_creator() {
    let tag = "reclaim-killed";
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let name = unique_name(tag);
        creator_killed(&name, signal);
        // The leftover is still there...
        assert!(std::path::Path::new(&shm_path(&name)).exists());
        assert_eq!(is_stale(&SegmentName::new(&name).unwrap()), Some(true));
        // ...and `create` takes the name over with a fresh segment.
        let fresh = Array::<u64>::create(&name, 2).unwrap();
        assert_eq!(fresh.to_vec(), vec![0, 0]);
        // With reclaiming off, the name stays taken.
        drop(fresh);
        creator_killed(&name, signal);
        let e =
            Array::<u64>::create_with(&name, 2, &Options::new().reclaim_stale(false)).unwrap_err();
        assert!(matches!(e, CreateError::AlreadyExists { .. }), "{e:?}");
        // open_or_create reclaims too.
        let again = Array::<u64>::open_or_create(&name, 2).unwrap();
        assert_eq!(again.to_vec(), vec![0, 0]);
        drop(again);
    }
    assert_no_leftovers(tag);
}

#[test]
fn a_segment_a_live_process_maps_is_never_reclaimed() {
    let tag = "reclaim-mapped";
    let name = unique_name(tag);
    // The creator forks a child that inherits the mapping, then dies.
    let ready = Pipe::new();
    let stop = Pipe::new();
    let child_name = name.clone();
    let creator = fork(|| {
        let Ok(a) = Array::<u64>::create(&child_name, [1, 2]) else {
            return 2;
        };
        let grandchild = fork(|| {
            ready.release(1);
            // Holds the inherited mapping until told to stop.
            let ok = stop.take();
            std::hint::black_box(&a);
            i32::from(!ok)
        });
        std::mem::forget(grandchild);
        // SAFETY: ends this process like a kill would: no destructor runs.
        unsafe { libc::_exit(0) }
    });
    assert_eq!(creator.wait(), Exit::Code(0));
    assert!(ready.take());
    let segment_name = SegmentName::new(&name).unwrap();
    assert_eq!(is_stale(&segment_name), Some(false));
    let e = Array::<u64>::create(&name, 2).unwrap_err();
    assert!(matches!(e, CreateError::AlreadyExists { .. }), "{e:?}");
    assert!(reclaim_stale(&name).unwrap().is_empty());
    // The grandchild lets go: now it is a leftover.
    stop.release(1);
    // Wait until the grandchild has exited (its mapping lock is gone).
    let t0 = std::time::Instant::now();
    while is_stale(&segment_name) != Some(true) {
        assert!(t0.elapsed().as_secs() < 20, "the grandchild never exited");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let removed = reclaim_stale(&name).unwrap();
    assert_eq!(removed, vec![name.clone()]);
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
    assert_no_leftovers(tag);
}

#[test]
fn a_persistent_segment_is_never_reclaimed() {
    let tag = "reclaim-persist";
    let name = unique_name(tag);
    let child_name = name.clone();
    let child = fork(move || match Value::<u64>::create(&child_name, 5) {
        Ok(v) => {
            v.persist();
            0
        }
        Err(_) => 2,
    });
    assert_eq!(child.wait(), Exit::Code(0));
    assert_eq!(is_stale(&SegmentName::new(&name).unwrap()), Some(false));
    let e = Value::<u64>::create(&name, 1).unwrap_err();
    assert!(matches!(e, CreateError::AlreadyExists { .. }), "{e:?}");
    // Created persistent from the start (the option) is the same.
    let opened = Value::<u64>::open(&name).unwrap();
    assert_eq!(opened.get(), 5);
    opened.take_ownership();
    drop(opened);
    let persistent =
        Value::<u64>::create_with(&name, 6, &Options::new().unlink_on_drop(false)).unwrap();
    drop(persistent);
    assert_eq!(is_stale(&SegmentName::new(&name).unwrap()), Some(false));
    assert!(reclaim_stale(&name).unwrap().is_empty());
    shmkit_posix::Segment::unlink(&name).unwrap();
    assert_no_leftovers(tag);
}

#[test]
fn a_fork_child_dropping_the_creators_handle_removes_nothing() {
    let tag = "reclaim-fork-drop";
    let name = unique_name(tag);
    let creator = Array::<u32>::create(&name, [1, 2, 3]).unwrap();
    let copy = creator.clone();
    let child = fork(move || {
        // The last handle of this process: in the creator process this
        // would remove the name.
        drop(copy);
        0
    });
    assert_eq!(child.wait(), Exit::Code(0));
    assert_eq!(Array::<u32>::open(&name).unwrap().to_vec(), vec![1, 2, 3]);
    drop(creator);
    let e = Array::<u32>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");
    assert_no_leftovers(tag);
}

/// Item 8: another user creates the name first, with a mode that would let
/// us in; by default we refuse to attach, naming the owner.
#[test]
fn openers_refuse_another_users_object_by_default() {
    let tag = "owner-squat";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: not root, so this test cannot create an object as another user");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root; this test must run there"
        );
        return;
    }
    let name = unique_name(tag);
    let child_name = name.clone();
    let squatter = fork(move || {
        // SAFETY: plain credential calls in a single-threaded child.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return 2;
            }
        }
        let options = Options::new().mode(0o666).unlink_on_drop(false);
        match Array::<u64>::create_with(&child_name, 4, &options) {
            Ok(_) => 0,
            Err(_) => 3,
        }
    });
    assert_eq!(squatter.wait(), Exit::Code(0));
    assert_eq!(std::fs::metadata(shm_path(&name)).unwrap().uid(), 65534);

    for e in [
        Array::<u64>::open(&name).unwrap_err(),
        Array::<u64>::open_read_only(&name).map(|_| ()).unwrap_err(),
        match Array::<u64>::open_or_create(&name, 4) {
            Err(shmkit_posix::OpenOrCreateError::Open(e)) => e,
            other => panic!("{other:?}"),
        },
    ] {
        match &e {
            OpenError::NotOwner {
                owner, expected, ..
            } => {
                assert_eq!((*owner, *expected), (65534, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("uid 65534"), "{e}");
    }
    // Deliberately shared setups say whom they accept.
    let a = Array::<u64>::open_with(&name, &Options::new().owner(Owner::Uid(65534))).unwrap();
    a.set(0, 1).unwrap();
    let b = Array::<u64>::open_with(&name, &Options::new().owner(Owner::Any)).unwrap();
    assert_eq!(b.get(0), Some(1));
    let e = Array::<u64>::open_with(&name, &Options::new().owner(Owner::Uid(1))).unwrap_err();
    assert!(matches!(e, OpenError::NotOwner { .. }), "{e:?}");
    // Another user's object is never reclaimed by us either.
    drop((a, b));
    assert_eq!(is_stale(&SegmentName::new(&name).unwrap()), None);
    shmkit_posix::Segment::unlink(&name).unwrap();
    assert_no_leftovers(tag);
}
