//! Writes the committed seed corpus, `corpus/<target>/seed-*`:
//! `cargo +nightly run --example seeds` from `fuzz/`.
//!
//! Seeds are starting points, not tests: for each object target, a few
//! honest programs that walk the object through its main states (and one
//! forged state each); for each open-path target, every typed handle's
//! honest segment, verbatim, so that each mutation the fuzzer makes is a
//! small forgery of a real segment. The opcodes follow `src/objects/*.rs`;
//! if they change, the seeds still run, they just lead elsewhere.

use std::fs;
use std::path::Path;

use shmkit_fuzz::open::{self, HANDLES};

/// A u64 as the programs' value arguments.
fn v8(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn program(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn objects() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let one = v8(1);
    let two = v8(2);
    vec![
        // mutex: lock, set, relock (would deadlock), timed, misc, drop; raw
        // lock, mark, drop; our tid forged into the word with no record
        // (taken over: OwnerDied), a dead id, then lock again.
        (
            "mutex",
            "honest",
            program(&[
                &[1, 0, 5, 0],
                &one,
                &[0, 1, 1, 6, 3, 0, 7, 10, 0, 9, 0],
                &[
                    11, 1, 0, 0, 16, 0, 4, 0, 3, 0, 11, 1, 0, 0, 22, 1, 1, 4, 0, 3, 0, 2, 1, 8,
                ],
            ]),
        ),
        (
            "mutex",
            "raw",
            program(&[
                &[0],
                &[0; 24],
                &[0, 6, 3, 0, 8, 2, 9, 0, 11, 4, 0, 0],
                &two,
                &[0],
            ]),
        ),
        (
            "reentrant",
            "honest",
            program(&[
                &[1, 0, 0, 4, 0],
                &two,
                &[5, 2, 0, 2, 0, 1, 1, 6, 1, 0, 0, 16, 0, 3, 0, 2, 0, 0],
            ]),
        ),
        (
            "rwlock",
            "honest",
            program(&[
                &[1, 0, 0, 6, 0, 2, 3, 1, 4, 0, 4, 0, 2, 7, 0],
                &one,
                &[8, 0, 9, 0, 5, 0, 10, 1, 0, 0, 22, 0, 3, 2, 5, 0],
            ]),
        ),
        (
            "semaphore",
            "bounded",
            vec![
                53, 0, 0, 0, 1, 1, 3, 3, 3, 3, 4, 5, 1, 0, 0, 11, 3, 0, 2, 1, 5,
            ],
        ),
        (
            "event",
            "honest",
            vec![1, 2, 1, 0, 2, 0, 4, 1, 3, 1, 4, 5, 1, 0, 0, 3, 2, 0, 0],
        ),
        (
            "barrier",
            "one_party",
            vec![3, 0, 0, 0, 0, 5, 3, 6, 4, 2, 0, 0],
        ),
        (
            "barrier",
            "two_parties",
            vec![
                5, 3, 0, 1, 5, 6, 2, 0, 0, 1, 0, 0, 2, 7, 1, 16, 0, 22, 3, 0, 1, 6,
            ],
        ),
        (
            "condvar",
            "honest",
            program(&[
                &[1, 0, 4, 0, 1, 6, 7, 5, 0, 1],
                &one,
                &[8, 2, 0, 9, 1, 24, 0, 11, 0, 4, 0, 0],
            ]),
        ),
        // ring of 4 u32: attach both, push, pop, batches, chunks, detach,
        // then a forged tail.
        (
            "ring",
            "u32x4",
            vec![
                21, 0, 1, 4, 1, 0, 0, 0, 4, 2, 0, 0, 0, 8, 6, 3, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0,
                0, 10, 8, 7, 2, 1, 6, 0, 0, 0, 7, 0, 0, 0, 11, 2, 1, 8, 9, 1, 12, 0, 0, 2, 8, 3,
                13, 1, 0, 0, 11, 1, 8,
            ],
        ),
        (
            "ring",
            "u8x1",
            vec![1, 0, 1, 4, 7, 4, 8, 8, 5, 9, 1, 6, 2, 1, 2, 10, 2, 2, 8],
        ),
        (
            "ring",
            "u64x32",
            program(&[
                &[43, 0, 1, 6, 30],
                &[0x11; 240],
                &[10, 39, 7, 9, 3],
                &[0x22; 72],
                &[11, 9, 5],
            ]),
        ),
        (
            "ring",
            "u8x3x8",
            vec![55, 0, 1, 4, 1, 2, 3, 6, 2, 4, 5, 6, 7, 8, 9, 8, 10, 4],
        ),
        // mpmc: capacity 3, two producers, one consumer, u64.
        (
            "mpmc",
            "u64",
            program(&[
                &[5, 17, 0, 0, 1, 4, 0],
                &one,
                &[4, 1],
                &two,
                &[6, 0, 6, 0, 6, 0],
                &[4, 0],
                &one,
                &[4, 1],
                &one,
                &[4, 0],
                &one,
                &[4, 0],
                &one,
                &[5, 0],
                &one,
                &[1, 7, 0, 1, 8, 0, 9, 0, 2, 0, 3, 0],
                // A claimed, never committed position: tail forged ahead.
                &[1, 10, 3, 0, 0, 1, 8, 0, 6, 0],
            ]),
        ),
        (
            "mpmc",
            "u8",
            vec![33, 5, 0, 0, 0, 1, 1, 4, 0, 7, 4, 1, 8, 6, 0, 6, 1, 8, 1],
        ),
        // pipe of 32 bytes: messages, a too-small buffer, a frame
        // forged past what was published.
        (
            "pipe",
            "simplex",
            program(&[
                &[5, 0, 1, 5, 5, 0],
                b"hello",
                &[8, 9, 12, 2, 0, 12, 32, 0, 5, 10, 0],
                b"0123456789",
                &[6, 4, 0],
                b"abcd",
                &[1, 11, 1, 13, 32, 0, 1, 10, 0, 2, 9, 3, 1],
                &[5, 3, 0],
                b"xyz",
                &[14, 1, 0, 0, 0],
                &[12, 32, 0],
            ]),
        ),
        (
            "pipe",
            "duplex",
            program(&[
                &[21, 4, 0, 4, 1, 5, 0, 3, 0],
                b"abc",
                &[12, 0, 16, 0, 5, 1, 2, 0],
                b"xy",
                &[12, 1, 16, 0, 9, 0, 11, 1, 1],
            ]),
        ),
        // stamped ring of 4 u64: attach both, push, pop, timed calls,
        // runs of empty pops, inspection, detach, then a forged word.
        (
            "stamped",
            "u64x4",
            program(&[
                &[37, 0, 1, 4],
                &one,
                &[4],
                &two,
                &[6, 6, 5],
                &one,
                &[1, 7, 1, 8, 9, 0, 0, 0, 0, 3, 2, 1, 0, 10, 0, 0, 1],
            ]),
        ),
        (
            "stamped",
            "u8x1",
            vec![1, 0, 1, 4, 7, 4, 8, 6, 6, 2, 8, 3, 0, 4, 9, 0, 0, 0, 0, 5],
        ),
        // map of 8 u32 -> u64: insert, get, update, get_or_insert, for_each,
        // update_or_insert, remove, check, clear.
        (
            "map",
            "honest",
            program(&[
                &[15, 1, 5, 0],
                &v8(10),
                &[0, 5, 0, 3, 5, 0, 4, 6, 0],
                &v8(7),
                &[5, 6, 0, 6, 0, 0, 9, 5, 0],
                &two,
                &[2, 5, 0, 8, 0, 0, 7, 0, 0, 0, 6, 0],
            ]),
        ),
        // map of one entry: the second key finds it full.
        (
            "map",
            "full",
            program(&[
                &[1, 1, 1, 0],
                &one,
                &[1, 2, 0],
                &two,
                &[8, 0, 0, 2, 1, 0, 1, 2, 0],
                &two,
            ]),
        ),
        // byte map of 4 entries, keys up to 4 bytes, values up to 17.
        (
            "bytemap",
            "honest",
            program(&[
                &[7, 0x44, 1, 3, 0, 5],
                b"hello",
                &[4, 0, 3, 0, 20, 2, 2, 0, 3],
                b"abc",
                &[
                    0, 4, 3, 0, 5, 2, 0, 6, 0, 0, 3, 3, 0, 8, 0, 0, 7, 0, 0, 1, 5, 0, 1,
                ],
                b"x",
                &[0],
            ]),
        ),
        // condition: lock, wait (times out), notify, predicate wait,
        // recover, a forged lock word.
        (
            "condition",
            "honest",
            program(&[
                &[1, 0, 3, 0, 4, 0, 1, 6, 7, 8, 5, 0, 1],
                &one,
                &[2, 0, 9, 0, 1, 0, 10, 1, 0, 0, 0, 1, 2],
            ]),
        ),
    ]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, seed) in objects() {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(format!("seed-{name}")), seed).expect("write seed");
    }
    for target in ["open", "open_read_only", "open_or_create", "from_fd"] {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        for (h, handle) in HANDLES.iter().enumerate() {
            let param = 3;
            let mut segment = open::honest_segment(h, param);
            // The creator's pid and start time: zero, so seeds do not
            // change with the process that wrote them.
            segment[20..24].fill(0);
            segment[160..168].fill(0);
            // Handle, "file length from the template" and nothing else
            // fixed, the parameter, ask for it, the segment verbatim, then
            // values for the operations.
            let mut seed = vec![h as u8, 0x80, param, 0];
            seed.extend_from_slice(&segment);
            seed.extend_from_slice(&[7; 24]);
            let file: String = handle
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            fs::write(dir.join(format!("seed-{h:02}-{file}")), seed).expect("write seed");
        }
    }
    println!("seeds written under {}", root.display());
}
