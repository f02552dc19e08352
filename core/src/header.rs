//! The header at the start of every shmkit segment.
//!
//! ```text
//! offset  size  field
//!      0     8  magic            b"\x7fSHMKIT\0"
//!      8     4  version          FORMAT_VERSION
//!     12     4  init_state       UNINIT → INITIALIZING → READY (or ABANDONED)
//!     16     4  kind             which object the payload holds (Kind)
//!     20     4  creator_pid      process that initialised the segment
//!     24     4  payload_offset   always HEADER_LEN in this version
//!     28     4  flags            header_flags (PERSISTENT), changed atomically
//!     32     8  total_len        HEADER_LEN + payload_len
//!     40     8  payload_len      bytes of the object after the header
//!     48    40  fingerprint      payload type: hash, size, align, 2 params
//!     88     4  type_name_len    bytes used in type_name
//!     92     4  (padding)
//!     96    64  type_name        payload type name, UTF-8, truncated
//!    160     8  creator_start    creator's start time (pid-reuse check)
//!    168    88  (reserved, zero)
//!    256        payload (aligned to PAYLOAD_ALIGN)
//! ```
//!
//! # Init protocol
//!
//! | state          | set by                    | means to an opener                         |
//! |----------------|---------------------------|--------------------------------------------|
//! | `UNINIT` (0)   | `ftruncate` (zero fill)   | creator has not started: wait              |
//! | `INITIALIZING` | creator, before any field | fields being written: wait                 |
//! | `READY`        | creator, after everything | header and payload valid: attach           |
//! | `ABANDONED`    | an opener that found the creator dead mid-init | error: remove and recreate |
//!
//! `UNINIT` and `INITIALIZING` may carry the [`init_state::WAITERS`] bit:
//!
//! | transition                                  | by       | how                         |
//! |---------------------------------------------|----------|-----------------------------|
//! | `UNINIT` → `INITIALIZING`                   | creator  | store (Release), unseen yet |
//! | `S` → `S \| WAITERS` (`S` not ready)        | opener about to sleep | CAS on exactly `S`; then futex-waits on `S \| WAITERS` |
//! | `INITIALIZING[\|WAITERS]` → `READY`         | creator  | swap (Release); wakes all if the old value had `WAITERS` |
//! | not ready (any bits) → `ABANDONED`          | opener that proved the creator dead | CAS on the value it read |
//!
//! The creator writes every field and initialises the payload, then swaps
//! in `READY` with Release; an opener loads `READY` with Acquire and from
//! then on sees everything written before it.
//!
//! Why no wake-up is lost: an opener sleeps only on the exact value its
//! CAS installed, `S | WAITERS`. The creator's swap is a read-modify-write
//! of the same word, so it either comes after that CAS (it sees `WAITERS`
//! and wakes) or before it (the CAS fails on `READY` and the opener looks
//! again; had it got as far as the futex, the kernel finds `READY`, not
//! the expected value, and returns at once). Creators skip the futex wake
//! when nobody set the bit, which is the common case.
//!
//! # Hostile bytes
//!
//! The header is never read through a `&Header` while peers may write it:
//! [`HeaderSnapshot::read`] copies it with volatile reads and
//! [`HeaderSnapshot::validate`] checks every field before anything uses it.

use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use static_assertions::{const_assert, const_assert_eq};

/// The magic bytes that start every shmkit segment.
pub const MAGIC: [u8; 8] = *b"\x7fSHMKIT\0";
/// The version of the segment format this build reads and writes.
///
/// 2: owner ids in lock words, barrier tables and queue role slots are
/// liveness tokens ([`crate::owner`]), role slots record the holder's pid,
/// and the event word carries a generation. A version-1 peer would read
/// tokens as pids and judge every owner dead.
///
/// 3: queue role slots are 24 bytes and record the handle's presence
/// token (a handle shared across `fork`), and role presence words carry a
/// sticky `CLOSED` bit.
pub const FORMAT_VERSION: u32 = 3;
/// Length of the header; the payload starts here.
pub const HEADER_LEN: usize = 256;
/// Alignment of the payload (two cache lines on x86_64/aarch64, so a
/// payload's hot fields never share a line with the header).
pub const PAYLOAD_ALIGN: usize = 128;
/// Bytes of the type name kept in the header.
pub const TYPE_NAME_CAP: usize = 64;

/// Values of the `init_state` word.
pub mod init_state {
    /// Zero-filled: the creator has sized the object but not started.
    pub const UNINIT: u32 = 0;
    /// The creator is writing the header and payload.
    pub const INITIALIZING: u32 = 1;
    /// Everything is written; openers may attach.
    pub const READY: u32 = 2;
    /// The creator died while initialising; the segment is unusable.
    pub const ABANDONED: u32 = 3;
    /// Flag on `UNINIT`/`INITIALIZING`: an opener sleeps on the state word
    /// and the creator must wake it when it publishes.
    pub const WAITERS: u32 = 0x100;

    /// Whether `state` means "not ready yet, wait" (with or without
    /// [`WAITERS`]).
    #[must_use]
    pub const fn is_pending(state: u32) -> bool {
        matches!(state & !WAITERS, UNINIT | INITIALIZING)
    }
}

/// Bits of the header's `flags` word, changed atomically after creation
/// (see [`flags`]).
pub mod header_flags {
    /// The name was made to outlive its creator (`persist`): nobody may
    /// reclaim it as a dead creator's leftover, even when no process maps it.
    pub const PERSISTENT: u32 = 1;
}

/// The `flags` word of the header at `base` ([`header_flags`]).
///
/// # Safety
/// `base` must point at a mapping of at least [`HEADER_LEN`] bytes, aligned
/// to 8, that stays mapped for `'a`.
#[must_use]
pub unsafe fn flags<'a>(base: NonNull<u8>) -> &'a AtomicU32 {
    // SAFETY: the caller guarantees the header is mapped and aligned for
    // 'a; `flags` is at offset 28, so 4-aligned, and an AtomicU32 may alias
    // memory other processes access atomically.
    unsafe { &*base.as_ptr().add(28).cast::<AtomicU32>() }
}

/// What kind of object a segment holds. An open set: unknown values read
/// from a segment are kept as they are and reported, never trusted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Kind(pub u32);

impl Kind {
    /// A typed array of `Pod` elements.
    pub const ARRAY: Kind = Kind(1);
    /// A single `Pod` value.
    pub const VALUE: Kind = Kind(2);
    /// A typed array guarded by a shmkit mutex (`lock=True`).
    pub const LOCKED_ARRAY: Kind = Kind(3);
    /// A single value guarded by a shmkit mutex (`lock=True`).
    pub const LOCKED_VALUE: Kind = Kind(4);
    /// A mutex around a `Pod` value.
    pub const MUTEX: Kind = Kind(5);
    /// A reentrant mutex.
    pub const REENTRANT_MUTEX: Kind = Kind(6);
    /// A readers-writer lock.
    pub const RWLOCK: Kind = Kind(7);
    /// A counting (optionally bounded) semaphore.
    pub const SEMAPHORE: Kind = Kind(8);
    /// A manual-reset event.
    pub const EVENT: Kind = Kind(9);
    /// A condition variable with its mutex.
    pub const CONDVAR: Kind = Kind(10);
    /// A barrier of N parties.
    pub const BARRIER: Kind = Kind(11);
    /// A single-producer single-consumer ring.
    pub const RING: Kind = Kind(12);
    /// A multi-producer multi-consumer queue.
    pub const QUEUE: Kind = Kind(13);
    /// A one-way byte-message pipe.
    pub const PIPE: Kind = Kind(14);
    /// A two-way byte-message pipe.
    pub const DUPLEX_PIPE: Kind = Kind(15);
    /// A hash map of `Pod` keys to `Pod` values.
    pub const MAP: Kind = Kind(17);
    /// A hash map of bounded byte strings to bounded byte strings.
    pub const BYTE_MAP: Kind = Kind(18);
    /// A condition: a mutex around a `Pod` value and its condition
    /// variable, one object (Python's `Condition`).
    pub const CONDITION: Kind = Kind(20);
    /// A single-producer single-consumer ring with stamped slots (one
    /// cache line per message).
    pub const STAMPED_RING: Kind = Kind(16);
    /// A multi-producer multi-consumer queue of byte messages of bounded
    /// length (Python's `Queue` of objects, once encoded).
    pub const MSG_QUEUE: Kind = Kind(21);
    /// A byte-message queue with an unfinished-task count (Python's
    /// `JoinableQueue`).
    pub const JOINABLE_QUEUE: Kind = Kind(22);
    /// First value free for user-defined kinds.
    pub const USER: Kind = Kind(0x1000);

    /// A short lowercase name for display (`"unknown"` for others).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::ARRAY => "array",
            Kind::VALUE => "value",
            Kind::LOCKED_ARRAY => "locked-array",
            Kind::LOCKED_VALUE => "locked-value",
            Kind::MUTEX => "mutex",
            Kind::REENTRANT_MUTEX => "reentrant-mutex",
            Kind::RWLOCK => "rwlock",
            Kind::SEMAPHORE => "semaphore",
            Kind::EVENT => "event",
            Kind::CONDVAR => "condvar",
            Kind::BARRIER => "barrier",
            Kind::RING => "ring",
            Kind::QUEUE => "queue",
            Kind::PIPE => "pipe",
            Kind::DUPLEX_PIPE => "duplex-pipe",
            Kind::MAP => "map",
            Kind::BYTE_MAP => "byte-map",
            Kind::CONDITION => "condition",
            Kind::STAMPED_RING => "stamped-ring",
            Kind::MSG_QUEUE => "msg-queue",
            Kind::JOINABLE_QUEUE => "joinable-queue",
            Kind(k) if k >= Kind::USER.0 => "user",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the payload is made of, compared on every open.
///
/// `type_hash` is FNV-1a of [`core::any::type_name`]; it tells `u32` from
/// `f32` and `MyStruct` from `OtherStruct` (type names are not promised
/// stable across compiler versions: processes sharing a segment should be
/// built by the same toolchain). `params` are kind-specific: the length of
/// an array, the capacity of a queue, ...
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(C)]
pub struct Fingerprint {
    /// FNV-1a 64 of the element type's name; 0 for untyped payloads.
    pub type_hash: u64,
    /// `size_of` of the element type.
    pub size: u64,
    /// `align_of` of the element type.
    pub align: u64,
    /// Kind-specific parameters (length, capacity, ...).
    pub params: [u64; 2],
}

impl Fingerprint {
    /// The fingerprint of element type `T` with the given parameters.
    #[must_use]
    pub fn of<T>(params: [u64; 2]) -> Fingerprint {
        Fingerprint {
            type_hash: type_hash::<T>(),
            size: core::mem::size_of::<T>() as u64,
            align: core::mem::align_of::<T>() as u64,
            params,
        }
    }

    /// Whether the element types agree (hash, size and alignment).
    #[must_use]
    pub fn same_type(&self, other: &Fingerprint) -> bool {
        self.type_hash == other.type_hash && self.size == other.size && self.align == other.align
    }
}

/// FNV-1a 64 over `core::any::type_name::<T>()`.
#[must_use]
pub fn type_hash<T>() -> u64 {
    fnv1a(core::any::type_name::<T>().as_bytes())
}

/// FNV-1a, 64-bit.
#[must_use]
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The header as laid out in the segment. Never referenced while shared:
/// see [`HeaderSnapshot`] and the free functions of this module.
#[repr(C)]
pub struct Header {
    magic: [u8; 8],
    version: u32,
    init_state: AtomicU32,
    kind: u32,
    creator_pid: u32,
    payload_offset: u32,
    flags: u32,
    total_len: u64,
    payload_len: u64,
    fingerprint: Fingerprint,
    type_name_len: u32,
    _pad: u32,
    type_name: [u8; TYPE_NAME_CAP],
    creator_start: u64,
    _reserved: [u8; 88],
}

const_assert_eq!(core::mem::size_of::<Fingerprint>(), 40);
const_assert_eq!(core::mem::size_of::<Header>(), HEADER_LEN);
const_assert_eq!(core::mem::align_of::<Header>(), 8);
const_assert_eq!(core::mem::offset_of!(Header, init_state), 12);
const_assert_eq!(core::mem::offset_of!(Header, kind), 16);
const_assert_eq!(core::mem::offset_of!(Header, creator_pid), 20);
const_assert_eq!(core::mem::offset_of!(Header, flags), 28);
const_assert_eq!(core::mem::offset_of!(Header, total_len), 32);
const_assert_eq!(core::mem::offset_of!(Header, payload_len), 40);
const_assert_eq!(core::mem::offset_of!(Header, fingerprint), 48);
const_assert_eq!(core::mem::offset_of!(Header, type_name_len), 88);
const_assert_eq!(core::mem::offset_of!(Header, type_name), 96);
const_assert_eq!(core::mem::offset_of!(Header, creator_start), 160);
const_assert!(HEADER_LEN % PAYLOAD_ALIGN == 0);

/// What a creator writes into a new header.
#[derive(Clone, Copy, Debug)]
pub struct HeaderInit<'a> {
    /// The object kind.
    pub kind: Kind,
    /// The payload's fingerprint.
    pub fingerprint: Fingerprint,
    /// The payload's type name (truncated to [`TYPE_NAME_CAP`] bytes).
    pub type_name: &'a str,
    /// Bytes of payload after the header.
    pub payload_len: u64,
    /// The creating process.
    pub creator_pid: u32,
    /// The creating process's start time (0 if unknown).
    pub creator_start: u64,
}

/// Total segment length for a payload of `payload_len` bytes, or `None` on
/// overflow (or a size no `usize` address space can map).
#[must_use]
pub fn segment_len(payload_len: u64) -> Option<usize> {
    let total = payload_len.checked_add(HEADER_LEN as u64)?;
    let total = usize::try_from(total).ok()?;
    // Mappings are limited to isize::MAX bytes.
    if total > isize::MAX as usize {
        return None;
    }
    Some(total)
}

/// The `init_state` word of the header at `base`.
///
/// # Safety
/// `base` must point at a mapping of at least [`HEADER_LEN`] bytes, aligned
/// to 8, that stays mapped for `'a`.
#[must_use]
pub unsafe fn init_state<'a>(base: NonNull<u8>) -> &'a AtomicU32 {
    // SAFETY: the caller guarantees the header is mapped and aligned for
    // 'a; `init_state` is at offset 12, so 4-aligned, and an AtomicU32 may
    // alias memory other processes access atomically.
    unsafe { &*base.as_ptr().add(12).cast::<AtomicU32>() }
}

/// Writes a fresh header in state `INITIALIZING`; the creator then builds
/// the payload and calls [`publish`].
///
/// `total_len` is written as [`segment_len`]`(init.payload_len)`; for a
/// payload length that function refuses (one that could not be mapped),
/// it is `u64::MAX` and the header never passes
/// [`HeaderSnapshot::validate`].
///
/// # Safety
/// `base` must point at a writable mapping of at least [`HEADER_LEN`] bytes,
/// aligned to 8, that this process created (exclusively, e.g. `O_EXCL`) and
/// whose header no peer writes.
pub unsafe fn begin_init(base: NonNull<u8>, init: &HeaderInit<'_>) {
    let hdr = base.as_ptr().cast::<Header>();
    // A payload no mapping can hold gets `u64::MAX`, which never validates
    // (no `payload_len` adds up to it and no mapping is that long), rather
    // than an overflow panic or a wrapped length that might.
    let total_len = segment_len(init.payload_len).map_or(u64::MAX, |t| t as u64);
    // SAFETY: the caller guarantees `hdr` is a writable, aligned,
    // exclusively-created header; raw-pointer field writes never form a
    // reference to memory peers may read concurrently.
    unsafe {
        let name = truncate_utf8(init.type_name, TYPE_NAME_CAP);
        let mut type_name = [0u8; TYPE_NAME_CAP];
        type_name[..name.len()].copy_from_slice(name.as_bytes());
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).magic), MAGIC);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).version), FORMAT_VERSION);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).kind), init.kind.0);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).creator_pid), init.creator_pid);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).payload_offset), HEADER_LEN as u32);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).flags), 0);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).total_len), total_len);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).payload_len), init.payload_len);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).fingerprint), init.fingerprint);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).type_name_len), name.len() as u32);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).type_name), type_name);
        ptr::write_volatile(ptr::addr_of_mut!((*hdr).creator_start), init.creator_start);
        // Release: a reader that sees INITIALIZING sees the fields above
        // (creator pid for its error message).
        init_state(base).store(init_state::INITIALIZING, Ordering::Release);
    }
}

/// Marks the segment `READY`. Returns whether an opener announced that it
/// sleeps on the state word ([`init_state::WAITERS`]): then the caller must
/// wake all waiters on [`init_state()`], else it may skip the wake-up.
///
/// # Safety
/// As [`begin_init`], after the payload is fully initialised.
#[must_use = "openers sleeping on the state word must be woken if this returns true"]
pub unsafe fn publish(base: NonNull<u8>) -> bool {
    // SYNC POINT: Release pairs with the Acquire load in
    // `HeaderSnapshot::read`; an opener that sees READY sees every header
    // field and payload byte written before this swap. Being a
    // read-modify-write, the swap also sees any WAITERS bit an opener's CAS
    // set before it (see the module docs).
    // SAFETY: forwarded from the caller.
    let old = unsafe { init_state(base) }.swap(init_state::READY, Ordering::Release);
    old & init_state::WAITERS != 0
}

/// Announces that the caller is about to sleep on the state word, which
/// it read as `seen` (not ready yet). Returns the value to pass to the
/// futex wait: `seen | WAITERS`, or `None` if the state changed meanwhile
/// (read it again instead of sleeping).
///
/// # Safety
/// `base` as for [`init_state()`], mapped writable.
pub unsafe fn announce_waiter(base: NonNull<u8>, seen: u32) -> Option<u32> {
    if !init_state::is_pending(seen) {
        return None;
    }
    let waiting = seen | init_state::WAITERS;
    if seen == waiting {
        // Announced already (by us or another opener). If the word has
        // moved on since `seen`, the futex wait on `seen` returns at once.
        return Some(waiting);
    }
    // Relaxed: the CAS publishes nothing; it only has to be ordered with
    // the creator's swap, which it is, both being RMWs of this word.
    // SAFETY: forwarded from the caller.
    unsafe { init_state(base) }
        .compare_exchange(seen, waiting, Ordering::Relaxed, Ordering::Relaxed)
        .ok()
        .map(|_| waiting)
}

/// Marks a segment whose creator died mid-init as `ABANDONED`, if it is still
/// in `from` (`UNINIT` or `INITIALIZING`, with or without `WAITERS`).
/// Returns whether this call did it.
///
/// # Safety
/// `base` as for [`init_state()`], mapped writable.
pub unsafe fn mark_abandoned(base: NonNull<u8>, from: u32) -> bool {
    // SAFETY: forwarded from the caller.
    unsafe { init_state(base) }
        .compare_exchange(
            from,
            init_state::ABANDONED,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
}

/// A private copy of a header, taken with volatile reads, not yet trusted.
#[derive(Clone, Copy)]
pub struct HeaderSnapshot {
    /// The magic bytes as found.
    pub magic: [u8; 8],
    /// The format version as found.
    pub version: u32,
    /// The init state as found (Acquire).
    pub init_state: u32,
    /// The kind as found.
    pub kind: Kind,
    /// The creator's pid as found.
    pub creator_pid: u32,
    /// The payload offset as found.
    pub payload_offset: u32,
    /// The flags as found.
    pub flags: u32,
    /// The total length as found.
    pub total_len: u64,
    /// The payload length as found.
    pub payload_len: u64,
    /// The fingerprint as found.
    pub fingerprint: Fingerprint,
    type_name_len: u32,
    type_name: [u8; TYPE_NAME_CAP],
    /// The creator's start time as found.
    pub creator_start: u64,
}

impl fmt::Debug for HeaderSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderSnapshot")
            .field("version", &self.version)
            .field("init_state", &self.init_state)
            .field("kind", &self.kind)
            .field("creator_pid", &self.creator_pid)
            .field("total_len", &self.total_len)
            .field("payload_len", &self.payload_len)
            .field("fingerprint", &self.fingerprint)
            .field("type_name", &self.type_name())
            .finish()
    }
}

/// Why a header cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The mapping is shorter than a header.
    TooShort {
        /// Bytes actually mapped.
        len: usize,
    },
    /// The magic bytes are wrong: not a shmkit segment (or overwritten).
    NotShmkit,
    /// The segment was written by another format version.
    VersionMismatch {
        /// Version found in the segment.
        found: u32,
    },
    /// The creator has not finished initialising (state as found).
    NotReady {
        /// The `init_state` value read.
        state: u32,
    },
    /// The creator died while initialising.
    Abandoned,
    /// A header field is impossible (offset, lengths, type name, state).
    Corrupt {
        /// Which field is wrong.
        field: &'static str,
    },
    /// The header says the object is longer than what is mapped.
    Truncated {
        /// Length the header claims.
        expected: u64,
        /// Length actually available.
        actual: u64,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TooShort { len } => write!(
                f,
                "segment is {len} bytes, shorter than the {HEADER_LEN}-byte shmkit header"
            ),
            HeaderError::NotShmkit => f.write_str("not a shmkit segment (bad magic bytes)"),
            HeaderError::VersionMismatch { found } => write!(
                f,
                "segment format version {found}, this build reads version {FORMAT_VERSION}"
            ),
            HeaderError::NotReady { state } => {
                write!(f, "segment is not initialised yet (state {state})")
            }
            HeaderError::Abandoned => {
                f.write_str("the segment's creator died while initialising it")
            }
            HeaderError::Corrupt { field } => write!(f, "corrupt segment header: bad {field}"),
            HeaderError::Truncated { expected, actual } => write!(
                f,
                "segment truncated: header says {expected} bytes, only {actual} present"
            ),
        }
    }
}

impl core::error::Error for HeaderError {}

impl HeaderSnapshot {
    /// Copies the header at `base` out of shared memory. The init state is
    /// loaded first with Acquire, so if it reads `READY` the rest of the copy
    /// is what the creator published.
    ///
    /// # Safety
    /// `base` must point at a mapping of at least [`HEADER_LEN`] readable
    /// bytes, aligned to 8.
    #[must_use]
    pub unsafe fn read(base: NonNull<u8>) -> HeaderSnapshot {
        let hdr = base.as_ptr().cast::<Header>().cast_const();
        // SYNC POINT: Acquire pairs with the Release store in `publish`.
        // SAFETY: forwarded from the caller.
        let state = unsafe { init_state(base) }.load(Ordering::Acquire);
        // SAFETY: `hdr` is readable and aligned per the caller; volatile reads of plain integers and byte arrays copy
        // whatever bytes are there (every bit pattern is a valid value) and
        // never create a reference to memory a peer may be writing.
        unsafe {
            HeaderSnapshot {
                magic: ptr::read_volatile(ptr::addr_of!((*hdr).magic)),
                version: ptr::read_volatile(ptr::addr_of!((*hdr).version)),
                init_state: state,
                kind: Kind(ptr::read_volatile(ptr::addr_of!((*hdr).kind))),
                creator_pid: ptr::read_volatile(ptr::addr_of!((*hdr).creator_pid)),
                payload_offset: ptr::read_volatile(ptr::addr_of!((*hdr).payload_offset)),
                flags: ptr::read_volatile(ptr::addr_of!((*hdr).flags)),
                total_len: ptr::read_volatile(ptr::addr_of!((*hdr).total_len)),
                payload_len: ptr::read_volatile(ptr::addr_of!((*hdr).payload_len)),
                fingerprint: ptr::read_volatile(ptr::addr_of!((*hdr).fingerprint)),
                type_name_len: ptr::read_volatile(ptr::addr_of!((*hdr).type_name_len)),
                type_name: ptr::read_volatile(ptr::addr_of!((*hdr).type_name)),
                creator_start: ptr::read_volatile(ptr::addr_of!((*hdr).creator_start)),
            }
        }
    }

    /// The type name recorded by the creator; `"?"` if it is not UTF-8 or
    /// its length is out of range.
    #[must_use]
    pub fn type_name(&self) -> &str {
        let len = self.type_name_len as usize;
        self.type_name
            .get(..len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("?")
    }

    /// Checks everything that does not depend on the payload type: magic,
    /// version, state, offsets and lengths against `mapped_len`, the bytes
    /// actually mapped. On success, `payload_len` bytes at `HEADER_LEN` are
    /// inside the mapping.
    pub fn validate(&self, mapped_len: usize) -> Result<(), HeaderError> {
        // Creators write the magic before the segment becomes visible under
        // its name, so a wrong magic is never a creator still at work.
        if self.magic != MAGIC {
            return Err(HeaderError::NotShmkit);
        }
        if self.version != FORMAT_VERSION {
            return Err(HeaderError::VersionMismatch {
                found: self.version,
            });
        }
        match self.init_state {
            init_state::READY => {}
            state if init_state::is_pending(state) => {
                return Err(HeaderError::NotReady {
                    state: self.init_state,
                })
            }
            init_state::ABANDONED => return Err(HeaderError::Abandoned),
            _ => {
                return Err(HeaderError::Corrupt {
                    field: "init_state",
                })
            }
        }
        if self.payload_offset as usize != HEADER_LEN {
            return Err(HeaderError::Corrupt {
                field: "payload_offset",
            });
        }
        if self.type_name_len as usize > TYPE_NAME_CAP {
            return Err(HeaderError::Corrupt {
                field: "type_name_len",
            });
        }
        let expected_total =
            self.payload_len
                .checked_add(HEADER_LEN as u64)
                .ok_or(HeaderError::Corrupt {
                    field: "payload_len",
                })?;
        if self.total_len != expected_total {
            return Err(HeaderError::Corrupt { field: "total_len" });
        }
        if self.total_len > mapped_len as u64 {
            return Err(HeaderError::Truncated {
                expected: self.total_len,
                actual: mapped_len as u64,
            });
        }
        Ok(())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(128))]
    struct Buf([u8; 512]);

    fn base(buf: &mut Buf) -> NonNull<u8> {
        NonNull::new(buf.0.as_mut_ptr()).unwrap()
    }

    fn init() -> HeaderInit<'static> {
        HeaderInit {
            kind: Kind::ARRAY,
            fingerprint: Fingerprint::of::<u32>([64, 0]),
            type_name: "u32",
            payload_len: 256,
            creator_pid: 7,
            creator_start: 9,
        }
    }

    #[test]
    fn a_published_header_validates_and_reads_back() {
        let mut buf = Buf([0; 512]);
        let b = base(&mut buf);
        // SAFETY: `buf` is 512 bytes, 128-aligned, private to this test.
        let snap = unsafe {
            begin_init(b, &init());
            assert_eq!(
                HeaderSnapshot::read(b).validate(512),
                Err(HeaderError::NotReady {
                    state: init_state::INITIALIZING
                })
            );
            // Nobody announced waiting: no wake-up needed.
            assert!(!publish(b));
            HeaderSnapshot::read(b)
        };
        assert_eq!(snap.validate(512), Ok(()));
        assert_eq!(snap.kind, Kind::ARRAY);
        assert_eq!(snap.type_name(), "u32");
        assert_eq!(snap.fingerprint, Fingerprint::of::<u32>([64, 0]));
        assert_eq!(snap.creator_pid, 7);
        assert_eq!(
            snap.validate(300),
            Err(HeaderError::Truncated {
                expected: 512,
                actual: 300
            })
        );
    }

    #[test]
    fn corrupt_fields_are_reported() {
        let mut buf = Buf([0; 512]);
        let b = base(&mut buf);
        // SAFETY: as above.
        unsafe {
            begin_init(b, &init());
            assert!(!publish(b));
        }
        // SAFETY: a buffer private to this test, aligned and live for the call.
        let good = unsafe { HeaderSnapshot::read(b) };
        let mut s = good;
        s.magic[0] ^= 1;
        assert_eq!(s.validate(512), Err(HeaderError::NotShmkit));
        let mut s = good;
        s.version = 99;
        assert_eq!(
            s.validate(512),
            Err(HeaderError::VersionMismatch { found: 99 })
        );
        let mut s = good;
        s.init_state = 77;
        assert_eq!(
            s.validate(512),
            Err(HeaderError::Corrupt {
                field: "init_state"
            })
        );
        let mut s = good;
        s.payload_len = u64::MAX;
        assert_eq!(
            s.validate(512),
            Err(HeaderError::Corrupt {
                field: "payload_len"
            })
        );
        let mut s = good;
        s.total_len += 1;
        assert_eq!(
            s.validate(512),
            Err(HeaderError::Corrupt { field: "total_len" })
        );
        let mut s = good;
        s.type_name_len = 1000;
        assert_eq!(
            s.validate(512),
            Err(HeaderError::Corrupt {
                field: "type_name_len"
            })
        );
        assert_eq!(
            good.validate(10),
            Err(HeaderError::Truncated {
                expected: 512,
                actual: 10
            })
        );
    }

    #[test]
    fn zeroed_header_is_foreign_and_abandoned_is_distinct() {
        let mut buf = Buf([0; 512]);
        let b = base(&mut buf);
        // SAFETY: a buffer private to this test, aligned and live for the call.
        let snap = unsafe { HeaderSnapshot::read(b) };
        assert_eq!(snap.validate(512), Err(HeaderError::NotShmkit));
        // SAFETY: a buffer private to this test, aligned and live for the call.
        unsafe { begin_init(b, &init()) };
        // SAFETY: a buffer private to this test, aligned and live for the call.
        assert!(unsafe { mark_abandoned(b, init_state::INITIALIZING) });
        // SAFETY: a buffer private to this test, aligned and live for the call.
        let snap = unsafe { HeaderSnapshot::read(b) };
        assert_eq!(snap.validate(512), Err(HeaderError::Abandoned));
    }

    #[test]
    fn an_announced_waiter_is_reported_to_the_publisher() {
        let mut buf = Buf([0; 512]);
        let b = base(&mut buf);
        const WAITING: u32 = init_state::INITIALIZING | init_state::WAITERS;
        // SAFETY: a buffer private to this test, aligned and live for the
        // calls.
        unsafe {
            begin_init(b, &init());
            // A stale expectation does not install the bit.
            assert_eq!(announce_waiter(b, init_state::UNINIT), None);
            assert_eq!(announce_waiter(b, init_state::INITIALIZING), Some(WAITING));
            // A second waiter finds the bit set and sleeps on the same value.
            assert_eq!(announce_waiter(b, WAITING), Some(WAITING));
            assert_eq!(
                HeaderSnapshot::read(b).validate(512),
                Err(HeaderError::NotReady { state: WAITING })
            );
            assert!(publish(b));
            assert_eq!(init_state(b).load(Ordering::Relaxed), init_state::READY);
            assert_eq!(HeaderSnapshot::read(b).validate(512), Ok(()));
            // Once ready, nobody sleeps: READY is not pending, and a stale
            // WAITING is no longer the word's value (the futex wait on it
            // returns at once).
            assert_eq!(announce_waiter(b, init_state::READY), None);
            assert_ne!(init_state(b).load(Ordering::Relaxed), WAITING);

            // A dead creator's segment is abandoned whatever bits it had.
            begin_init(b, &init());
            assert_eq!(announce_waiter(b, init_state::INITIALIZING), Some(WAITING));
            assert!(mark_abandoned(b, WAITING));
            assert_eq!(
                HeaderSnapshot::read(b).validate(512),
                Err(HeaderError::Abandoned)
            );
        }
        // Only the two pending states take the bit; anything else is corrupt.
        let mut snap = {
            let mut buf = Buf([0; 512]);
            let b = base(&mut buf);
            // SAFETY: as above.
            unsafe {
                begin_init(b, &init());
                let _ = publish(b);
                HeaderSnapshot::read(b)
            }
        };
        for bad in [
            init_state::READY | init_state::WAITERS,
            init_state::ABANDONED | init_state::WAITERS,
            init_state::WAITERS << 1,
        ] {
            snap.init_state = bad;
            assert_eq!(
                snap.validate(512),
                Err(HeaderError::Corrupt {
                    field: "init_state"
                }),
                "{bad:#x}"
            );
        }
    }

    #[test]
    fn an_unmappable_payload_length_neither_panics_nor_wraps() {
        let mut buf = Buf([0; 512]);
        let b = base(&mut buf);
        for payload_len in [u64::MAX, u64::MAX - HEADER_LEN as u64 + 1, 1 << 63] {
            let init = HeaderInit {
                payload_len,
                ..init()
            };
            // SAFETY: a buffer private to this test, aligned and live for
            // the call.
            let snap = unsafe {
                begin_init(b, &init);
                let _ = publish(b);
                HeaderSnapshot::read(b)
            };
            // Not wrapped to a small length that a mapping could satisfy.
            assert_eq!(snap.total_len, u64::MAX, "payload_len {payload_len}");
            assert!(snap.validate(usize::MAX).is_err());
        }
        // Where segment_len agrees, the header says the same.
        // SAFETY: as above.
        let snap = unsafe {
            begin_init(b, &init());
            HeaderSnapshot::read(b)
        };
        assert_eq!(
            Some(snap.total_len as usize),
            segment_len(init().payload_len)
        );
    }

    #[test]
    fn type_names_truncate_on_char_boundaries() {
        let long = "é".repeat(40); // 80 bytes
        let t = truncate_utf8(&long, TYPE_NAME_CAP);
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c == 'é'));
        assert_ne!(type_hash::<u32>(), type_hash::<f32>());
        assert!(segment_len(u64::MAX).is_none());
    }
}
