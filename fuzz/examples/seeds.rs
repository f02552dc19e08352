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

/// The byte-message program of the `msg` and `joinable` seeds, with
/// `joinable_ops` (task_done, join_timeout) before the producer leaves.
fn msg_program(joinable_ops: &[u8]) -> Vec<u8> {
    use shmkit_core::queue::msg::MsgParams;
    // The queue the setup bytes below choose.
    let layout = MsgParams::new(4, 16)
        .with_registry(2, 1)
        .layout()
        .expect("layout");
    // Positions 0 to 2 are taken by then (two messages and a given-up
    // slot): the next message goes to slot 3.
    let len_word = u16::try_from(layout.stamp_at(3) + 8).expect("small layout");
    program(&[
        // Capacity 4 (setup bits 1..3 = 2), honest; 2 producers, 1
        // consumer, max_len 16.
        &[5, 0x41],
        // Attach a producer and a consumer; try_send "hello".
        &[0, 1, 4, 0, 5],
        b"hello",
        // try_send of 18 bytes: too long.
        &[4, 0, 18],
        &[0x33; 18],
        // In pieces (cut after 1), timed (20 µs), not failing.
        &[5, 0, 3],
        b"abc",
        &[2, 1, 1, 0],
        // An encoder failing after 1 byte (try_send_with).
        &[5, 0, 2],
        b"xy",
        &[0, 1, 0, 1],
        // Receive into max_len, then max_len + 5 (timed), then 3 bytes.
        &[6, 0, 2, 0, 7, 0, 1, 3, 6, 0, 0, 3, 0],
        // try_recv_with, a run of empty receives, spin, the joinable ops.
        &[9, 0, 8, 0, 10, 5],
        joinable_ops,
        // "world" into slot 3, its length word forged to 200, received
        // (Corrupt: that slot is consumed).
        &[4, 0, 5],
        b"world",
        &[14, 4],
        &len_word.to_le_bytes(),
        &200u64.to_le_bytes(),
        &[6, 0, 2, 0],
        // The producer gone: Disconnected; then a forged stamp (slot 0).
        &[2, 0, 7, 0, 2, 1, 13, 3],
        &u16::try_from(layout.stamp_at(0))
            .expect("small layout")
            .to_le_bytes(),
        &[3, 6, 0, 2, 0],
    ])
}

/// A joinable queue of 1 slot (max_len 1, one producer and consumer)
/// from raw bytes: honest but for a count of 5 and a full slot 0 whose
/// length word says 200.
fn joinable_raw() -> Vec<u8> {
    use shmkit_core::queue::joinable::join_layout;
    use shmkit_core::queue::mpmc;
    use shmkit_core::queue::msg::MsgParams;
    let p = MsgParams::new(1, 1).with_registry(1, 1);
    let layout = p.layout().expect("layout");
    let (count_at, len) = join_layout(&p).expect("join layout");
    let mut bytes = vec![0u8; len];
    bytes[count_at..count_at + 4].copy_from_slice(&5u32.to_le_bytes());
    let stamp = layout.stamp_at(0);
    bytes[stamp..stamp + 8].copy_from_slice(&mpmc::stamp(0, 0, mpmc::FULL).to_le_bytes());
    bytes[stamp + 8..stamp + 16].copy_from_slice(&200u64.to_le_bytes());
    // Setup: raw (bit 0 clear), capacity 1; shape: 1 producer, 1
    // consumer, max_len 1; the bytes; then attach a consumer, receive
    // (the forged message: Corrupt), attach a producer, send, receive,
    // task_done twice, join_timeout.
    program(&[
        &[0, 0x00],
        &bytes,
        &[1, 6, 0, 2, 0, 0, 4, 0, 1, 7, 6, 0, 2, 0, 11, 11, 12, 1],
    ])
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
        // byte-message queue of 4 slots, 2 producers, 1 consumer, messages
        // up to 16 bytes: a send, one too long, one in pieces (timed), an
        // encoder failing half-way (its slot given up), receives into a
        // large, a just-right and a too-short buffer, runs of empty
        // receives, the producer gone (Disconnected), then forged words.
        ("msg", "honest", msg_program(&[])),
        // The same over a joinable queue, with task_done (one too many)
        // and join_timeout before and after.
        (
            "joinable",
            "honest",
            msg_program(&[12, 2, 11, 11, 12, 0, 11, 12, 1]),
        ),
        // A joinable queue from raw bytes: an unfinished count of 5 and a
        // slot whose length word says 200.
        ("joinable", "raw", joinable_raw()),
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
