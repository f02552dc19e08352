//! Segments shared by real processes: open_or_create raced by many
//! processes released together, and a memfd segment handed to a fresh
//! (exec'd) process by descriptor.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{assert_no_leftovers, Pipe};
use shmkit_core::header::{Fingerprint, Kind};
use shmkit_posix::segment::{ObjectSpec, Options, Segment};
use shmkit_posix::{Array, OpenError};
use shmkit_testkit::{fork, role, spawn_self, unique_name, Exit};

/// Processes racing in each open_or_create test.
const RACERS: usize = 8;
/// u64 words in the raced payload.
const WORDS: usize = 16;

/// What a racer reports through its exit code.
const CREATED: i32 = 10;
const OPENED: i32 = 11;

/// Eight processes, released together through a pipe, call
/// `Segment::open_or_create` on one name. Each would initialise the payload
/// with its own tag; exactly one reports that it created the segment, and
/// every racer sees that one's tag in every word (no mix, no zeros).
#[test]
fn open_or_create_raced_by_processes_has_exactly_one_creator() {
    let tag = "race-segment";
    let rounds = if std::env::var_os("SHMKIT_LONG_TESTS").is_some() {
        50
    } else {
        3
    };
    for _ in 0..rounds {
        let name = unique_name(tag);
        let spec = ObjectSpec {
            kind: Kind::ARRAY,
            fingerprint: Fingerprint::of::<u64>([WORDS as u64, 0]),
            type_name: "u64",
            payload_len: (WORDS * 8) as u64,
        };
        // Slot i: the tag racer i saw (written by racer i only).
        let seen = Array::<u64>::anonymous(RACERS).unwrap();
        let gate = Pipe::new();
        let children: Vec<_> = (0..RACERS)
            .map(|i| {
                let (name, seen, gate) = (&name, &seen, &gate);
                fork(move || {
                    if !gate.take() {
                        return 2;
                    }
                    let my_tag = 1000 + i as u64;
                    let mut init = |p: std::ptr::NonNull<u8>, len: usize| {
                        let words = len / 8;
                        for w in 0..words {
                            // SAFETY: `len` writable payload bytes, 8-aligned,
                            // nobody else can see them before READY.
                            unsafe { p.as_ptr().cast::<u64>().add(w).write(my_tag) };
                        }
                    };
                    // The parent removes the name once everyone is done.
                    let options = Options::new()
                        .unlink_on_drop(false)
                        .init_timeout(Duration::from_secs(30));
                    let Ok((segment, created)) =
                        Segment::open_or_create(name, &spec, &options, &mut init)
                    else {
                        return 3;
                    };
                    let words: Vec<u64> = (0..WORDS)
                        // SAFETY: WORDS readable u64 in the payload; the
                        // payload no longer changes after READY.
                        .map(|w| unsafe {
                            segment
                                .payload()
                                .as_ptr()
                                .cast::<u64>()
                                .add(w)
                                .read_volatile()
                        })
                        .collect();
                    if words.iter().any(|&w| w != words[0]) {
                        return 4;
                    }
                    if created && words[0] != my_tag {
                        return 5;
                    }
                    if seen.set(i, words[0]).is_err() {
                        return 6;
                    }
                    if created {
                        CREATED
                    } else {
                        OPENED
                    }
                })
            })
            .collect();
        gate.release(RACERS);
        let exits: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_timeout(Duration::from_secs(60)))
            .collect();
        let creators: Vec<usize> = (0..RACERS)
            .filter(|&i| exits[i] == Some(Exit::Code(CREATED)))
            .collect();
        assert_eq!(creators.len(), 1, "exits: {exits:?}");
        assert!(
            exits
                .iter()
                .all(|e| matches!(e, Some(Exit::Code(CREATED | OPENED)))),
            "exits: {exits:?}"
        );
        let winner = 1000 + creators[0] as u64;
        assert_eq!(seen.to_vec(), vec![winner; RACERS]);
        Segment::unlink(&name).unwrap();
    }
    assert_no_leftovers(tag);
}

/// The typed form: racers each pass *different* initial values to
/// `Array::open_or_create_from`; all end up seeing one racer's values.
/// The racers hold their handles until everyone has attached (the creator's
/// handle removes the name when dropped), then all drop them: nothing is
/// left in /dev/shm.
#[test]
fn open_or_create_from_raced_by_processes_shows_one_initial_content() {
    let tag = "race-typed";
    let name = unique_name(tag);
    let seen = Array::<u64>::anonymous(RACERS).unwrap();
    let (gate, attached, finish) = (Pipe::new(), Pipe::new(), Pipe::new());
    let children: Vec<_> = (0..RACERS)
        .map(|i| {
            let (name, seen) = (&name, &seen);
            let (gate, attached, finish) = (&gate, &attached, &finish);
            fork(move || {
                if !gate.take() {
                    return 2;
                }
                let mine = [2000 + i as u64; WORDS];
                let arr = match Array::<u64>::open_or_create(name, mine) {
                    Ok(arr) => arr,
                    Err(_) => return 3,
                };
                let values = arr.to_vec();
                attached.release(1);
                if values.len() != WORDS || values.iter().any(|&v| v != values[0]) {
                    return 4;
                }
                if seen.set(i, values[0]).is_err() {
                    return 5;
                }
                let code = if arr.segment().is_owner() {
                    CREATED
                } else {
                    OPENED
                };
                // Keep the handle (and the name) until all have attached.
                if !finish.take() {
                    return 6;
                }
                drop(arr);
                code
            })
        })
        .collect();
    gate.release(RACERS);
    for _ in 0..RACERS {
        assert!(
            attached.take_within(Duration::from_secs(60)),
            "a racer hung"
        );
    }
    finish.release(RACERS);
    let exits: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_timeout(Duration::from_secs(60)))
        .collect();
    let creators = exits
        .iter()
        .filter(|e| **e == Some(Exit::Code(CREATED)))
        .count();
    assert_eq!(creators, 1, "exits: {exits:?}");
    assert!(
        exits
            .iter()
            .all(|e| matches!(e, Some(Exit::Code(CREATED | OPENED)))),
        "exits: {exits:?}"
    );
    let values = seen.to_vec();
    assert!(values.iter().all(|&v| v == values[0]), "{values:?}");
    assert!((2000..2000 + RACERS as u64).contains(&values[0]));
    // The creator's drop removed the name.
    let e = Array::<u64>::open(&name).unwrap_err();
    assert!(matches!(e, OpenError::NotFound { .. }), "{e:?}");
    assert_no_leftovers(tag);
}

const FD_VAR: &str = "SHMKIT_TEST_MEMFD";

/// A memfd-backed array handed to a freshly exec'd process by descriptor
/// number: the child attaches with `from_fd`, checks the type, writes; the
/// parent sees the writes. The parent's array has no name, so nothing can
/// leak into /dev/shm.
#[test]
fn memfd_array_handed_to_an_exec_child() {
    shmkit_testkit::require_exec!("memfd_array_handed_to_an_exec_child");
    if role().as_deref() == Some("memfd-child") {
        let fd: i32 = std::env::var(FD_VAR).unwrap().parse().unwrap();
        // SAFETY: the parent left this descriptor open for us, and nothing
        // else in this process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let dup = fd.try_clone().unwrap();
        // Wrong type first: refused.
        let e = Array::<u32>::from_fd(dup).unwrap_err();
        assert!(matches!(e, OpenError::TypeMismatch(_)), "{e:?}");
        let arr = Array::<u64>::from_fd(fd).unwrap();
        assert_eq!(arr.len(), 4);
        assert_eq!(arr.get(0), Some(1));
        arr.write_from(1, &[20, 30, 40]).unwrap();
        return;
    }
    let arr = Array::<u64>::memfd(4).unwrap();
    arr.set(0, 1).unwrap();
    assert!(arr.segment().name().is_none());
    let fd = arr.segment().fd().unwrap().as_raw_fd();
    let mut cmd = spawn_self(
        "memfd_array_handed_to_an_exec_child",
        "memfd-child",
        &[(FD_VAR, fd.to_string())],
    );
    // SAFETY: between fork and exec the closure only calls fcntl, which is
    // async-signal-safe, to let this one descriptor survive the exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "child failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The child ran the test itself (not zero tests).
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    assert_eq!(arr.to_vec(), vec![1, 20, 30, 40]);
    // The descriptor is still close-on-exec in the parent.
    // SAFETY: plain fcntl query on a descriptor `arr` owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
}

/// A named array created here, attached and written by a forked child,
/// read-only attached by a second child that reports what it saw.
#[test]
fn named_array_shared_by_a_writer_and_a_read_only_child() {
    let tag = "proc-named";
    let name = unique_name(tag);
    let arr = Array::<i64>::create(&name, 3).unwrap();
    let writer_name = name.clone();
    let writer = fork(move || match Array::<i64>::open(&writer_name) {
        Ok(a) => a.write_from(0, &[-1, -2, -3]).map_or(3, |()| 0),
        Err(_) => 2,
    });
    assert_eq!(writer.wait(), Exit::Code(0));
    let reader_name = name.clone();
    let reader = fork(move || match Array::<i64>::open_read_only(&reader_name) {
        Ok(a) if a.to_vec() == vec![-1, -2, -3] => 0,
        Ok(_) => 3,
        Err(_) => 2,
    });
    assert_eq!(reader.wait(), Exit::Code(0));
    assert_eq!(arr.to_vec(), vec![-1, -2, -3]);
    drop(arr);
    assert_no_leftovers(tag);
}

/// An unprivileged process (root's child after setuid to nobody) creates,
/// opens and removes a segment (on older kernels its unnamed object is
/// then linked through /proc/self/fd: linkat(AT_EMPTY_PATH) needs a
/// capability there).
#[test]
fn an_unprivileged_process_creates_and_removes_segments() {
    let tag = "proc-nobody";
    let name = unique_name(tag);
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: the plain tests exercise the same path.
        eprintln!("not root: skipping the setuid part");
        return;
    }
    let child_name = name.clone();
    let child = fork(move || {
        // SAFETY: plain credential calls in a single-threaded child.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return 2;
            }
        }
        let Ok(arr) = Array::<u16>::create(&child_name, [4, 5, 6]) else {
            return 3;
        };
        match Array::<u16>::open(&child_name) {
            Ok(other) if other.to_vec() == vec![4, 5, 6] => {}
            _ => return 4,
        }
        // A second create of the name still reports AlreadyExists.
        if !matches!(
            Array::<u16>::create(&child_name, 3),
            Err(shmkit_posix::CreateError::AlreadyExists { .. })
        ) {
            return 5;
        }
        drop(arr);
        0
    });
    assert_eq!(child.wait(), Exit::Code(0));
    assert_no_leftovers(tag);
}
