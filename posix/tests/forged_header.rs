//! A peer with write access forges the recorded parameters of an existing
//! segment (issue 8, item 1): an honest `open_or_create` asking for the
//! forged parameters must get an error, never a handle that trusts a length
//! the payload does not have (which crashed with SIGSEGV).
//!
//! Each case runs in a forked child so that a crash is a test failure with
//! the signal named, not the death of the test binary.

mod common;

use common::{poke, shm_path};
use shmkit_posix::pipe::{End, Pipe};
use shmkit_posix::queue::Queue;
use shmkit_posix::ring::Ring;
use shmkit_posix::Array;
use shmkit_posix::LockedArray;
use shmkit_testkit::{fork, unique_name, Exit};

/// Offset of the first kind parameter in the header (see
/// `shmkit_core::header`).
const PARAM0: u64 = 72;
const FORGED: u64 = 0x10_0000;

/// Creates a small segment with `create`, forges its first parameter to
/// `FORGED`, then, in a child, calls `attack`, which opens it with
/// `open_or_create(name, FORGED)` and uses whatever opens. The child must
/// exit normally (an error, or in-bounds operations).
fn forged_param0(tag: &str, create: impl FnOnce(&str), attack: impl FnOnce(&str) + Copy) {
    let name = unique_name(tag);
    create(&name);
    poke(&name, PARAM0, &FORGED.to_le_bytes());
    let child = fork(|| {
        attack(&name);
        0
    });
    let exit = child.wait();
    let _ = std::fs::remove_file(shm_path(&name));
    assert!(
        matches!(exit, Exit::Code(0)),
        "{tag}: open_or_create on a forged header ended with {exit:?}"
    );
}

#[test]
fn array_open_or_create_with_forged_length() {
    forged_param0(
        "forged-array",
        |n| Array::<u64>::create(n, 4).unwrap().persist(),
        |n| {
            if let Ok(a) = Array::<u64>::open_or_create(n, FORGED as usize) {
                let last = a.len() - 1;
                let _ = a.set(last, 1);
                let _ = a.get(last);
            }
        },
    );
}

#[test]
fn locked_array_open_or_create_with_forged_length() {
    forged_param0(
        "forged-locked",
        |n| std::mem::forget(LockedArray::<u64>::create(n, 4).unwrap()),
        |n| {
            if let Ok(a) = LockedArray::<u64>::open_or_create(n, FORGED as usize) {
                if let Ok(g) = a.lock() {
                    let last = g.len() - 1;
                    let _ = g.set(last, 1);
                }
            }
        },
    );
}

#[test]
fn queue_open_or_create_with_forged_capacity() {
    forged_param0(
        "forged-queue",
        |n| Queue::<u64>::create(n, 4).unwrap().persist(),
        |n| {
            if let Ok(q) = Queue::<u64>::open_or_create(n, FORGED as usize) {
                if let Ok(mut tx) = q.view().producer() {
                    for i in 0..FORGED {
                        if tx.try_push(i).is_err() {
                            break;
                        }
                    }
                }
            }
        },
    );
}

#[test]
fn ring_open_or_create_with_forged_capacity() {
    forged_param0(
        "forged-ring",
        |n| Ring::<u64>::create(n, 4).unwrap().persist(),
        |n| {
            if let Ok(r) = Ring::<u64>::open_or_create(n, FORGED as usize) {
                if let Ok(mut tx) = r.view().producer() {
                    for i in 0..FORGED {
                        if tx.try_push(i).is_err() {
                            break;
                        }
                    }
                }
            }
        },
    );
}

#[test]
fn duplex_pipe_open_or_create_with_forged_capacity() {
    forged_param0(
        "forged-duplex",
        |n| Pipe::create(n, 64).unwrap().persist(),
        |n| {
            if let Ok(p) = Pipe::open_or_create(n, FORGED as usize) {
                match p.end(End::B) {
                    Ok(end) => {
                        let r = end.send_bytes(&vec![7u8; 1000]);
                        eprintln!("send {r:?}");
                    }
                    Err(e) => eprintln!("end: {e}"),
                }
            }
        },
    );
}
