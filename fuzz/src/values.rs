//! Values a peer is likely to write into shared words: the states honest
//! peers produce (our own thread id with its flag bits, a dead owner, the
//! "not recoverable" id), boundaries, and our own owner record. The
//! fuzzer could find most of them byte by byte; offering them lets it
//! reach the `owner == me`, `id reused` and wrap-around branches at once.

use std::sync::OnceLock;

use shmkit_core::owner;

/// Bit 30 of lock and role words (`WAITERS`, `BUSY`).
const BIT30: u32 = 1 << 30;
/// Bit 31 of lock and role words (`SPINNER`, `GONE`, `BROKEN`).
const BIT31: u32 = 1 << 31;
/// An id no task has (Linux ids stay below 2²²).
const DEAD_ID: u32 = 1 << 23;

/// The fuzzing thread's start time as owner records hold it (read
/// from `/proc` once: a read per peer write made scribbling the dearest
/// operation of every target).
fn my_start() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| owner::start_time(owner::current_thread_id()).unwrap_or(0))
}

/// A 32-bit word from the table, chosen by `pick`.
#[must_use]
pub fn word32(pick: u8) -> u32 {
    let tid = owner::current_thread_id();
    let pid = owner::current_process_id();
    let start = my_start() as u32;
    let table = [
        0,
        1,
        2,
        3,
        4,
        0xff,
        0x100,
        0xffff,
        0x1_0000,
        0x7fff_ffff,
        BIT31,
        u32::MAX,
        BIT30,
        BIT30 | BIT31,
        owner::ID_MASK,
        owner::ID_MASK | BIT30,
        tid,
        tid | BIT30,
        tid | BIT31,
        tid | BIT30 | BIT31,
        pid,
        pid | BIT30,
        DEAD_ID,
        DEAD_ID | BIT30,
        DEAD_ID | BIT31,
        // pid 1: alive, and never us.
        1 | BIT30,
        start,
        start.wrapping_add(1),
        u32::MAX - 1,
        BIT31 | 0xffff,
        0x8000_0001,
        0x7fff_0000,
    ];
    table[usize::from(pick) % table.len()]
}

/// A 64-bit word from the table, chosen by `pick`: positions and stamps
/// near the ends of the range, and owner records `(tid << 32 | start)`.
#[must_use]
pub fn word64(pick: u8) -> u64 {
    let tid = u64::from(owner::current_thread_id());
    let start = my_start() & 0xffff_ffff;
    let table = [
        0,
        1,
        2,
        3,
        4,
        5,
        8,
        u64::MAX,
        u64::MAX - 1,
        u64::MAX - 3,
        1 << 62,
        (1 << 62) - 1,
        1 << 63,
        u64::from(u32::MAX),
        1 << 32,
        (tid << 32) | start,
        (tid << 32) | (start + 1),
        tid << 32,
        (u64::from(DEAD_ID) << 32) | 1,
        // Stamps: position << 2 | state, for small and huge positions.
        (1 << 2) | 1,
        (1 << 2) | 2,
        (2 << 2) | 1,
        (u64::MAX >> 2) << 2,
        ((u64::MAX >> 2) << 2) | 1,
        0x5555_5555_5555_5555,
        0xaaaa_aaaa_aaaa_aaaa,
    ];
    table[usize::from(pick) % table.len()]
}
