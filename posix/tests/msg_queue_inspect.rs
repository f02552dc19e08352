//! `inspect::describe` of the byte-message queue and the joinable queue:
//! the lines for known states (slots, registries, the unfinished count),
//! and garbage payloads and parameter words as `corrupt: …` lines, never
//! a panic or an out-of-bounds read.

use std::sync::atomic::{AtomicU8, Ordering};

use shmkit_core::queue::joinable::JoinableQueue;
use shmkit_core::queue::msg::{MsgParams, MsgQueue};
use shmkit_posix::inspect::{describe, Lines, PayloadView};
use shmkit_posix::{Segment, Shared};

fn view(seg: &Segment) -> PayloadView<'_> {
    // SAFETY: the payload stays mapped while `seg` lives; it is written
    // only atomically (by the objects, and by `scribble`).
    unsafe { PayloadView::new(seg.payload(), seg.payload_len()) }
}

fn lines(seg: &Segment) -> Lines {
    describe(seg.header(), &view(seg)).expect("a known kind")
}

fn value<'a>(lines: &'a Lines, label: &str) -> &'a str {
    lines
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {label:?} line in {lines:#?}"))
}

#[test]
fn msg_queue_lines() {
    let me = std::process::id();
    let q = Shared::<MsgQueue>::anonymous(MsgParams::new(4, 100).with_registry(2, 3)).unwrap();
    let (mut tx, mut rx) = (q.view().producer().unwrap(), q.view().consumer().unwrap());
    for m in [&b"a"[..], b"bc", b"def"] {
        tx.try_send(m).unwrap();
    }
    rx.try_recv_into(&mut [0u8; 100]).unwrap();
    let l = lines(q.segment());
    assert_eq!(
        value(&l, "capacity"),
        "4 slot(s) of messages up to 100 byte(s)"
    );
    assert_eq!(
        value(&l, "occupancy"),
        "2 of 4 (2 committed, head 1, tail 3)"
    );
    assert_eq!(
        value(&l, "producers"),
        format!("1 attached, of 2 slot(s): pid {me} (alive)")
    );
    assert_eq!(
        value(&l, "consumers"),
        format!("1 attached, of 3 slot(s): pid {me} (alive)")
    );
    assert!(l.iter().all(|(label, _)| *label != "unfinished"), "{l:?}");
}

#[test]
fn joinable_queue_shows_the_unfinished_count() {
    let q = Shared::<JoinableQueue>::anonymous((4, 16)).unwrap();
    let (mut tx, mut rx) = (q.view().producer().unwrap(), q.view().consumer().unwrap());
    tx.try_send(b"one").unwrap();
    tx.try_send(b"two").unwrap();
    rx.try_recv_into(&mut [0u8; 16]).unwrap();
    let l = lines(q.segment());
    assert_eq!(
        value(&l, "capacity"),
        "4 slot(s) of messages up to 16 byte(s)"
    );
    assert_eq!(
        value(&l, "unfinished"),
        "2 task(s) sent and not yet marked done"
    );
    q.view().task_done().unwrap();
    let l = lines(q.segment());
    assert_eq!(
        value(&l, "unfinished"),
        "1 task(s) sent and not yet marked done"
    );
}

/// Garbage in every payload byte: every line comes back, no panic.
#[test]
fn garbage_payloads_are_described_without_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for joinable in [false, true] {
        let params = MsgParams::new(8, 24).with_registry(2, 2);
        let (_keep_m, _keep_j);
        let seg: &Segment = if joinable {
            _keep_j = Shared::<JoinableQueue>::anonymous(params).unwrap();
            _keep_j.segment()
        } else {
            _keep_m = Shared::<MsgQueue>::anonymous(params).unwrap();
            _keep_m.segment()
        };
        for _ in 0..50 {
            let base = seg.payload().as_ptr();
            for i in 0..seg.payload_len() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // SAFETY: in the payload, mapped while `seg` lives; byte
                // atomics (the objects use word atomics: a peer's view).
                unsafe { &*base.add(i).cast::<AtomicU8>() }.store(state as u8, Ordering::Relaxed);
            }
            let l = lines(seg);
            assert!(!l.is_empty());
            if joinable {
                let _ = value(&l, "unfinished");
            }
        }
    }
}

/// Impossible parameter words in a forged header: a `corrupt` layout
/// line. (The header is copied and altered; the segment is untouched.)
#[test]
fn impossible_parameters_are_a_corrupt_layout_line() {
    let q = Shared::<MsgQueue>::anonymous((4, 16)).unwrap();
    let seg = q.segment();
    for params in [[0, 0], [u64::MAX, u64::MAX], [4, 1 << 63 | 1 << 32 | 1]] {
        let mut h = *seg.header();
        h.fingerprint.params = params;
        let l = describe(&h, &view(seg)).unwrap();
        assert!(value(&l, "layout").starts_with("corrupt: "), "{l:?}");
    }
}
