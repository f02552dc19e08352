//! A fixed-capacity hash map in shared memory that many processes read and
//! write at once: Python's `Manager().dict()` without the server process.
//!
//! Two forms share one engine:
//! - [`Map<K, V>`] for `K, V: Pod` (its view: [`MapView`]);
//! - [`ByteMap`], bounded byte-string keys and values whose maximum lengths
//!   are fixed at creation: the `dict[str] = bytes` case (its view:
//!   [`ByteMapView`]).
//!
//! ```
//! use core::ptr::NonNull;
//! use shmkit_core::map::{Map, MapParams, MapView};
//! use shmkit_core::object::Object;
//!
//! #[repr(C, align(128))]
//! struct Memory([u8; 16384]); // stands in for a segment's payload
//! let mut mem = Memory([0; 16384]);
//! let params = MapParams::of::<u64, u64>(100); // room for 100 entries
//! assert!(Map::<u64, u64>::payload_len(&params)? <= 16384);
//! // SAFETY: `mem` is zeroed, aligned, large enough, and only accessed
//! // through the view.
//! let map: MapView<'_, u64, u64> =
//!     unsafe { Map::attach(NonNull::new(mem.0.as_mut_ptr()).unwrap(), &params) };
//! assert_eq!(map.insert(7, 49)?, None);
//! assert_eq!(map.insert(7, 50)?, Some(49)); // returns the old value
//! assert_eq!(map.get(&7)?, Some(50));
//! map.update(&7, |v| *v += 1)?; // atomically, under the writer lock
//! assert_eq!(map.get_or(&8, 0)?, 0); // Python's d.get(k, default)
//! assert_eq!(map.remove(&7)?, Some(51));
//! assert!(map.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Design
//!
//! **Open addressing, linear probing, removal by backward shift.** A key
//! lives in the first free bucket of its probe sequence (home = the hash's
//! high word mod buckets, then +1, +2, ... around the table) when it is
//! inserted. Removing it shifts the entries after it (up to the next
//! `EMPTY` bucket) back toward their homes, Knuth's algorithm R, so the
//! table never fills up with tombstones: under any mix of inserts and
//! removes its probes stay those of a fresh table. (The first version left
//! tombstones; sustained churn at full capacity then emptied no bucket,
//! and every miss probed the whole table.)
//!
//! Keys are hashed and compared by their bytes (a `Pod` type has no
//! padding): `0.0` and `-0.0` are two keys, and a NaN key is found again
//! by the same bits.
//!
//! **Readers never lock and never wait for a writer.** Every bucket starts
//! with a *meta* word: a version, a state (`EMPTY`, `FULL`, `TOMBSTONE`)
//! and a `WRITING` bit; every change of a meta word makes it larger (see
//! [`meta`]). A lookup is one seqlock read over the buckets it walks: it
//! loads each meta (Acquire) from the key's home on, copies the key and
//! value out with relaxed atomic loads, issues an Acquire fence, and sums
//! the same meta words again. Equal sums mean no bucket walked changed:
//! the copy is one committed entry, not torn, and no entry moved past the
//! walk. A bucket whose value is being rewritten (`FULL | WRITING`) holds
//! its committed value in its stripe's *undo record* (below), which the
//! reader copies instead: so a reader sees the old or the new value of an
//! update in progress, and a writer that dies mid-update blocks nobody. A
//! reader only takes locks when its walk changed [`READ_RETRIES`] times in
//! a row (writers rewriting those very buckets faster than it can copy
//! them, or a peer scribbling on them): it then walks under the stripe
//! locks, with the view's timeout.
//!
//! **Writers lock stripes.** The buckets are cut into `stripes` contiguous
//! ranges (a power of two, at most [`MAX_STRIPES`], at least
//! [`MIN_STRIPE_BUCKETS`] buckets each), each with a robust
//! [`RawMutex`]. A writer locks every stripe its probe passes through, in
//! probe order, from the key's home to the bucket where the probe ends (a
//! remove: to the `EMPTY` bucket after the key): one stripe almost always.
//! Holding them, it is the only writer of those buckets, so its decisions
//! ("the key is absent", "this is the first free bucket", "this entry may
//! move back") stay true until it acts on them. Stripes are locked in
//! ascending index order; a probe that wraps from the last stripe to the
//! first only `try_lock`s, and on failure releases everything, locks the
//! whole set in ascending order and starts again. No deadlock: every
//! blocking acquisition is of a stripe above all those held.
//!
//! **Every step changes one bucket.** Insert fills one free bucket, update
//! rewrites one value, remove turns one bucket into a tombstone, each
//! ending with one Release store of the meta (the commit). The remove's
//! shift is a series of moves, each a copy into the hole (a commit) then a
//! tombstone at the source; its last hole becomes `EMPTY`. A tombstone
//! only lives between two steps of one remove, or after a crash.
//!
//! **Crashes.** A writer killed at any instruction leaves at most one
//! bucket with `WRITING` set, in a stripe whose lock it held:
//!
//! | killed during | what is left | repair (by the next locker of that stripe, which the lock tells `OwnerDied`) |
//! |---|---|---|
//! | insert, before the commit | a free bucket marked `WRITING`, garbage in it | clear `WRITING`: the key was not inserted |
//! | update, before `WRITING` | a half-written undo record, nothing else | nothing |
//! | update, after `WRITING` | a half-written value; the old one in the undo record | copy the record back: the update did not happen |
//! | remove, before its tombstone | nothing | nothing: the key is still there |
//! | remove, shifting | the key removed; an entry copied into the hole and still at its source too (the move is recorded in the source's stripe) | drop the source if the copy was committed, else keep it: the entry is in one bucket |
//! | remove, last hole | a tombstone | nothing (a probe passes it; the next remove there empties it) |
//! | clear | the epoch odd (below), some buckets emptied | finish the clear |
//!
//! The repair also recounts the stripe's entries (the per-stripe counts
//! are updated after the commits), bumps [`MapView::repairs`], and marks
//! the lock consistent. Every operation is therefore atomic across crashes:
//! it happened or it did not, and nobody has to be told. Repairs are
//! idempotent: a repairer killed mid-repair leaves the same job to the
//! next locker. Until then readers see the committed state (through the
//! undo record; the first copy of a moved entry), never the half-written
//! one.
//!
//! **Clear** locks every stripe, makes the map's *epoch* odd, empties every
//! bucket and count, and makes the epoch even again. Readers check the
//! epoch before and after a lookup: an odd epoch reads as the cleared map
//! (the clear is linearised at its odd store; no insert can happen before
//! it ends, since the clear holds every stripe), a changed one retries. A
//! writer that finds the epoch odd while holding a stripe lock knows the
//! clearer died, and finishes its clear first.
//!
//! **Capacity, load factor, probe bounds.** A map created for `capacity`
//! entries has `buckets = next_power_of_two(2 × capacity)`: at most half
//! full. Inserting a new key when [`len`](MapView::len) has reached the
//! capacity fails with [`MapError::Full`], never drops anything. `len` is
//! the sum of the per-stripe counts; writers in different stripes check it
//! without a common lock, so racing inserts may overshoot the capacity by
//! at most one entry per stripe, for which the table has room
//! (`capacity + stripes <= buckets`). With linear probing at load ≤ ½ a
//! lookup of a present key probes 1.5 buckets on average and an absent one
//! 2.5 (Knuth; measured after 4 million inserts and removes at full
//! capacity: 1.5 and 2.5, no tombstone left); every probe loop is bounded
//! by the number of buckets, every retry loop by a constant, every wait by
//! the view's timeout.
//!
//! **Hostile bytes.** Every index is masked or range-checked before use,
//! every length compared with its maximum, every state checked: a peer
//! writing any bytes anywhere in the payload can make operations return
//! errors ([`MapError::Corrupt`]) or garbage values, never read or write
//! out of bounds, panic, or loop without bound.
//!
//! # Layout
//!
//! ```text
//! [MapControl: epoch, repairs]                         128 bytes
//! [Stripe; stripes]       lock, undo and move records  128 bytes each
//! [count: u32; stripes]   entries per stripe           padded to 128
//! [undo value; stripes]   one value image each         padded to 128 each
//! [bucket; buckets]       meta, hash tag, key, value   stride a power of two up to 64 bytes
//! ```
//!
//! All of it is `u32` words (and the locks), accessed only atomically. A
//! key or value is stored as its bytes packed into words (byte strings as
//! a length word then the bytes), so any `Pod` type fits whatever its
//! alignment, and loom can model every access.
//!
//! # Memory orderings
//!
//! - SYNC POINT MAP-COMMIT: a writer's commit (Release store of the meta)
//!   pairs with a reader's first meta load (Acquire): the reader sees the
//!   words the writer stored before committing.
//! - SYNC POINT MAP-SEQ: a writer's Release fence after it sets `WRITING`
//!   pairs with the reader's Acquire fence before it sums the walked metas
//!   again: a reader that copied any word stored after that fence sees
//!   `WRITING` (or later) on the re-load, and retries.
//! - SYNC POINT MAP-UNDO: an updater's Release fence *before* it rewrites
//!   its stripe's undo record pairs with the same reader fence: a reader of
//!   an older update's record that copied a rewritten word sees that older
//!   update's commit on the re-load. The Release store of `WRITING`, after
//!   the record, pairs with the reader's Acquire meta load: a reader that
//!   sees `WRITING` sees the record.
//! - SYNC POINT MAP-EPOCH: the clearer's Release fence after its odd epoch
//!   store pairs with the reader's Acquire fence before it re-loads the
//!   epoch; its final Release store pairs with the reader's first epoch
//!   load (Acquire).
//! - Writers among themselves: the stripe locks' own Acquire/Release.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{size_of, MaybeUninit};
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use crate::header::{Kind, PAYLOAD_ALIGN};
use crate::object::{LayoutError, Object};
use crate::primitive::{fence, AtomicU32, Ordering};
use crate::sync::{LockError, LockTimeoutError, RawMutex, RawMutexGuard, TryLockError};
use crate::wait::Deadline;

/// Most entries a map may be created for.
pub const MAX_CAPACITY: usize = 1 << 30;
/// Most stripes (writer locks) a map has.
pub const MAX_STRIPES: usize = 64;
/// Fewest buckets per stripe in a map laid out by [`Shape::new`].
pub const MIN_STRIPE_BUCKETS: usize = 64;
/// Largest key: a `Pod` key's size, or a byte map's maximum key length.
pub const MAX_KEY_BYTES: usize = 1 << 16;
/// Largest value: a `Pod` value's size, or a byte map's maximum value
/// length.
pub const MAX_VALUE_BYTES: usize = 1 << 24;
/// How many times a reader copies one bucket before it falls back to
/// reading it under the stripe lock.
pub const READ_RETRIES: u32 = if cfg!(loom) { 2 } else { 64 };
/// How many times an operation starts over (the epoch moved, a wrapped
/// probe had to re-lock in order) before it reports the map corrupt.
const RESTARTS: u32 = 2 * MAX_STRIPES as u32 + 16;

/// Meta word bits.
///
/// ```text
/// bit 0      WRITING: a writer is storing words into the bucket
/// bits 1..2  state: EMPTY 0, FULL 1, TOMBSTONE 2 (3 is never written)
/// bits 3..31 version: +1 on every commit, wrapping
/// ```
///
/// | from | to | who | ordering |
/// |---|---|---|---|
/// | `EMPTY`/`TOMBSTONE` v | same \| `WRITING` | inserter (Relaxed); remover moving an entry back into its hole (Release: after the move record) | then a Release fence (MAP-SEQ) |
/// | free \| `WRITING` v | `FULL` v+1 | inserter's or mover's commit | Release (MAP-COMMIT) |
/// | `FULL` v | `FULL` \| `WRITING` v | updater, after its undo record | Release (MAP-UNDO), then Release fence (MAP-SEQ) |
/// | `FULL` \| `WRITING` v | `FULL` v+1 | updater's commit; repair after copying the record back | Release (MAP-COMMIT) |
/// | free \| `WRITING` v | the same free state v+1 | repair of a dead inserter or mover | Release |
/// | `FULL` v | `TOMBSTONE` v+1 | remover (its key; a moved entry's source); repair of a half-done move | Release |
/// | `TOMBSTONE` v | `EMPTY` v+1 | remover (the shift's last hole, and tombstones just before an `EMPTY`) | Release |
/// | anything v | `EMPTY` v+1 | clear, epoch odd | Relaxed (MAP-EPOCH orders it) |
///
/// Every transition makes the word larger (by 1 to 10, as a `u32`) until
/// the version wraps after 2^29 commits of one bucket: a reader's sum of
/// the meta words it walked changes if any of them changed.
pub mod meta {
    /// A writer is storing words into the bucket.
    pub const WRITING: u32 = 1;
    /// State: never used since the last clear; ends every probe.
    pub const EMPTY: u32 = 0;
    /// State: holds an entry.
    pub const FULL: u32 = 1;
    /// State: held an entry that was removed; probes go on past it.
    pub const TOMBSTONE: u32 = 2;
    /// The state bits of a meta word.
    #[must_use]
    pub const fn state(meta: u32) -> u32 {
        (meta >> 1) & 3
    }
    /// The meta word committing `state` after `meta`: version + 1,
    /// `WRITING` clear.
    #[must_use]
    pub const fn committed(meta: u32, state: u32) -> u32 {
        ((meta >> 3).wrapping_add(1) << 3) | (state << 1)
    }
}

use meta::{committed, state, EMPTY, FULL, TOMBSTONE, WRITING};

/// The state value no writer stores.
const INVALID: u32 = 3;

/// Words of a bucket before the key: the meta word and the hash tag.
const HEAD_WORDS: usize = 2;

// ------------------------------------------------------------------ errors

/// Why a map operation failed. One enum serves every operation; each
/// method says which variants it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// `insert` of a new key into a map holding `capacity` entries.
    Full {
        /// The map's capacity.
        capacity: usize,
    },
    /// A byte map key longer than the map's maximum.
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The map's maximum key length.
        max: usize,
    },
    /// A byte map value longer than the map's maximum.
    ValueTooLong {
        /// The value's length.
        len: usize,
        /// The map's maximum value length.
        max: usize,
    },
    /// A byte map value does not fit the buffer given to copy it into.
    BufferTooSmall {
        /// The value's length.
        needed: usize,
    },
    /// The view's timeout passed while waiting for a writer lock.
    TimedOut,
    /// The calling thread already holds a lock this operation needs (a map
    /// method called from inside an `update` closure).
    WouldDeadlock,
    /// A writer lock was left unrecoverable (only a peer writing garbage
    /// over the lock word can do that: the map always repairs).
    NotRecoverable,
    /// The map's memory holds something no honest writer writes.
    Corrupt {
        /// What was found.
        what: &'static str,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Full { capacity } => write!(
                f,
                "the map is full ({capacity} entries); remove entries or create a larger map"
            ),
            MapError::KeyTooLong { len, max } => write!(
                f,
                "a {len}-byte key is longer than this map's {max}-byte maximum; create the map with a larger max_key_len"
            ),
            MapError::ValueTooLong { len, max } => write!(
                f,
                "a {len}-byte value is longer than this map's {max}-byte maximum; create the map with a larger max_value_len"
            ),
            MapError::BufferTooSmall { needed } => write!(
                f,
                "the value is {needed} bytes, longer than the buffer; pass a buffer of max_value_len bytes"
            ),
            MapError::TimedOut => f.write_str(
                "timed out waiting for a writer lock of the map; retry or use a longer timeout",
            ),
            MapError::WouldDeadlock => f.write_str(
                "this thread already holds a lock of the map (a map method called inside an update closure); call it after the update",
            ),
            MapError::NotRecoverable => f.write_str(
                "a writer lock of the map is not recoverable (its lock word was overwritten); recreate the map",
            ),
            MapError::Corrupt { what } => {
                write!(f, "the map's memory is corrupt ({what}); recreate the map")
            }
        }
    }
}

impl core::error::Error for MapError {}

const fn corrupt(what: &'static str) -> MapError {
    MapError::Corrupt { what }
}

// ------------------------------------------------------------------ layout

/// How keys (or values) are stored: a fixed number of bytes (`Pod`
/// types), or a byte string of at most `max` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Exactly this many bytes.
    Fixed(usize),
    /// A length word, then up to this many bytes.
    Bytes(usize),
}

impl Format {
    /// Words a stored key or value of this format takes.
    #[must_use]
    pub const fn words(self) -> usize {
        match self {
            Format::Fixed(n) => n.div_ceil(4),
            Format::Bytes(max) => 1 + max.div_ceil(4),
        }
    }

    /// The byte count this format records in a header: the size, or the
    /// maximum length.
    #[must_use]
    pub const fn bytes(self) -> usize {
        match self {
            Format::Fixed(n) | Format::Bytes(n) => n,
        }
    }
}

/// Where everything of a map sits, derived from its capacity and key and
/// value formats by [`Shape::new`] (or [`Shape::custom`] for tests and
/// models). All offsets are in bytes from the start of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    capacity: usize,
    buckets: usize,
    stripes: usize,
    stripe_shift: u32,
    key: Format,
    value: Format,
    key_words: usize,
    value_words: usize,
    bucket_words: usize,
    undo_words: usize,
    stripes_off: usize,
    counts_off: usize,
    undo_off: usize,
    buckets_off: usize,
    total: usize,
}

fn align_up(x: usize, a: usize) -> Option<usize> {
    Some(x.checked_add(a - 1)? & !(a - 1))
}

impl Shape {
    /// The standard layout: `next_power_of_two(2 × capacity)` buckets in
    /// `clamp(buckets / MIN_STRIPE_BUCKETS, 1, MAX_STRIPES)` stripes.
    ///
    /// # Errors
    /// A capacity of 0 or above [`MAX_CAPACITY`], a key or value above
    /// [`MAX_KEY_BYTES`] / [`MAX_VALUE_BYTES`], or a size that does not
    /// fit in memory.
    pub fn new(capacity: usize, key: Format, value: Format) -> Result<Shape, LayoutError> {
        if capacity == 0 {
            return Err(LayoutError::new(
                "a map needs a capacity of at least one entry",
            ));
        }
        if capacity > MAX_CAPACITY {
            return Err(LayoutError::new("a map holds at most 2^30 entries"));
        }
        let buckets = (2 * capacity).next_power_of_two();
        let stripes = (buckets / MIN_STRIPE_BUCKETS).clamp(1, MAX_STRIPES);
        Shape::custom(capacity, buckets, stripes, key, value)
    }

    /// A layout with the bucket and stripe counts given: for tests and
    /// models that need several stripes in a tiny map. Processes sharing a
    /// map must agree on it: segments always use [`Shape::new`].
    ///
    /// # Errors
    /// As [`new`](Shape::new), and `buckets` or `stripes` not powers of
    /// two, more stripes than buckets or than [`MAX_STRIPES`], or fewer
    /// than `capacity + stripes` buckets.
    pub fn custom(
        capacity: usize,
        buckets: usize,
        stripes: usize,
        key: Format,
        value: Format,
    ) -> Result<Shape, LayoutError> {
        let bad = LayoutError::new;
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(bad("a map's capacity must be 1..=2^30 entries"));
        }
        if !buckets.is_power_of_two() || !(2..=1 << 31).contains(&buckets) {
            return Err(bad("a map's bucket count must be a power of two, 2..=2^31"));
        }
        if !stripes.is_power_of_two() || stripes > MAX_STRIPES || stripes > buckets {
            return Err(bad(
                "a map's stripe count must be a power of two, at most 64 and at most the buckets",
            ));
        }
        if capacity + stripes > buckets {
            return Err(bad(
                "a map needs buckets for its capacity plus one per stripe",
            ));
        }
        if key.bytes() > MAX_KEY_BYTES {
            return Err(bad("map keys are at most 64 KiB"));
        }
        if value.bytes() > MAX_VALUE_BYTES {
            return Err(bad("map values are at most 16 MiB"));
        }
        let (key_words, value_words) = (key.words(), value.words());
        let raw = HEAD_WORDS + key_words + value_words;
        let bucket_words = if raw <= 16 {
            raw.next_power_of_two()
        } else {
            align_up(raw, 16).ok_or(bad("map buckets do not fit in memory"))?
        };
        let undo_words = align_up(value_words, 32).ok_or(bad("map values do not fit in memory"))?;
        let too_big = || bad("the map does not fit in memory");
        let stripes_off = size_of::<MapControlLayout>();
        let counts_off = stripes_off + stripes * STRIPE_BYTES;
        let undo_off = align_up(counts_off + 4 * stripes, PAYLOAD_ALIGN).ok_or_else(too_big)?;
        let buckets_off = undo_words
            .checked_mul(4 * stripes)
            .and_then(|n| n.checked_add(undo_off))
            .and_then(|n| align_up(n, PAYLOAD_ALIGN))
            .ok_or_else(too_big)?;
        let total = bucket_words
            .checked_mul(4)
            .and_then(|n| n.checked_mul(buckets))
            .and_then(|n| n.checked_add(buckets_off))
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or_else(too_big)?;
        Ok(Shape {
            capacity,
            buckets,
            stripes,
            stripe_shift: (buckets / stripes).trailing_zeros(),
            key,
            value,
            key_words,
            value_words,
            bucket_words,
            undo_words,
            stripes_off,
            counts_off,
            undo_off,
            buckets_off,
            total,
        })
    }

    /// Entries the map holds at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Buckets (a power of two).
    #[must_use]
    pub fn buckets(&self) -> usize {
        self.buckets
    }
    /// Stripes, i.e. writer locks (a power of two).
    #[must_use]
    pub fn stripes(&self) -> usize {
        self.stripes
    }
    /// Buckets per stripe.
    #[must_use]
    pub fn stripe_buckets(&self) -> usize {
        1 << self.stripe_shift
    }
    /// How keys are stored.
    #[must_use]
    pub fn key(&self) -> Format {
        self.key
    }
    /// How values are stored.
    #[must_use]
    pub fn value(&self) -> Format {
        self.value
    }
    /// Bytes of one bucket.
    #[must_use]
    pub fn bucket_bytes(&self) -> usize {
        4 * self.bucket_words
    }
    /// The payload length of a map of this shape.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.total
    }
    /// Offset of the epoch word (odd while a clear runs).
    #[must_use]
    pub fn epoch_offset(&self) -> usize {
        0
    }
    /// Offset of the repair counter.
    #[must_use]
    pub fn repairs_offset(&self) -> usize {
        4
    }
    /// Offset of stripe `i`'s [`Stripe`] (its lock first).
    #[must_use]
    pub fn stripe_offset(&self, i: usize) -> usize {
        self.stripes_off + i * STRIPE_BYTES
    }
    /// Offset of stripe `i`'s entry count.
    #[must_use]
    pub fn count_offset(&self, i: usize) -> usize {
        self.counts_off + 4 * i
    }
    /// Offset of bucket `b`.
    #[must_use]
    pub fn bucket_offset(&self, b: usize) -> usize {
        self.buckets_off + b * 4 * self.bucket_words
    }
}

/// What a map was created with: its capacity and the formats of its keys
/// and values, plus the [`Shape`] derived from them (once: views are made
/// per call and must be cheap). Recorded in the segment header as
/// `[capacity, key bytes << 32 | value bytes]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MapParams {
    capacity: usize,
    key: Format,
    value: Format,
    shape: Result<Shape, LayoutError>,
}

impl fmt::Debug for MapParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "capacity {}", self.capacity)?;
        match (self.key, self.value) {
            (Format::Bytes(k), Format::Bytes(v)) => {
                write!(f, ", keys up to {k} bytes, values up to {v} bytes")
            }
            (k, v) => write!(f, ", {}-byte keys, {}-byte values", k.bytes(), v.bytes()),
        }
    }
}

impl MapParams {
    /// A map of `capacity` entries with keys and values of these formats.
    #[must_use]
    pub fn new(capacity: usize, key: Format, value: Format) -> MapParams {
        MapParams {
            capacity,
            key,
            value,
            shape: Shape::new(capacity, key, value),
        }
    }

    /// A `Map<K, V>` of `capacity` entries.
    #[must_use]
    pub fn of<K: Pod, V: Pod>(capacity: usize) -> MapParams {
        MapParams::new(
            capacity,
            Format::Fixed(size_of::<K>()),
            Format::Fixed(size_of::<V>()),
        )
    }

    /// A [`ByteMap`] of `capacity` entries, keys of at most `max_key_len`
    /// bytes and values of at most `max_value_len`.
    #[must_use]
    pub fn bytes(capacity: usize, max_key_len: usize, max_value_len: usize) -> MapParams {
        MapParams::new(
            capacity,
            Format::Bytes(max_key_len),
            Format::Bytes(max_value_len),
        )
    }

    /// The capacity asked for.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The key format.
    #[must_use]
    pub fn key(&self) -> Format {
        self.key
    }

    /// The value format.
    #[must_use]
    pub fn value(&self) -> Format {
        self.value
    }

    /// The layout, or why there is none.
    ///
    /// # Errors
    /// See [`Shape::new`].
    pub fn shape(&self) -> Result<Shape, LayoutError> {
        self.shape
    }

    fn encode(&self) -> [u64; 2] {
        [
            self.capacity as u64,
            ((self.key.bytes() as u64) << 32) | (self.value.bytes() as u64 & 0xffff_ffff),
        ]
    }

    /// The parameters recorded as `[capacity, key << 32 | value]`, for
    /// formats of kind `fixed` (true) or byte strings.
    fn decode(recorded: [u64; 2], fixed: bool) -> Result<MapParams, LayoutError> {
        let capacity = usize::try_from(recorded[0])
            .map_err(|_| LayoutError::new("the recorded map capacity does not fit in memory"))?;
        let key = (recorded[1] >> 32) as usize;
        let value = (recorded[1] & 0xffff_ffff) as usize;
        let (key, value) = if fixed {
            (Format::Fixed(key), Format::Fixed(value))
        } else {
            (Format::Bytes(key), Format::Bytes(value))
        };
        let p = MapParams::new(capacity, key, value);
        p.shape?;
        Ok(p)
    }
}

// --------------------------------------------------------- shared control

/// The map-wide words, alone on a 128-byte line (read by every lookup,
/// written only by clears and repairs).
#[repr(C, align(128))]
pub struct MapControl {
    /// Odd while a clear runs (or its clearer died mid-clear); +1 at the
    /// start and at the end of every clear.
    epoch: AtomicU32,
    /// Repairs made after dead writers, wrapping (diagnostics).
    repairs: AtomicU32,
}

/// `MapControl` as laid out in a segment (loom's atomics differ in size).
#[repr(C, align(128))]
struct MapControlLayout([u32; 2]);

impl Default for MapControl {
    fn default() -> Self {
        MapControl::new()
    }
}

impl MapControl {
    /// A fresh control block (zero, like zero-filled memory).
    #[must_use]
    pub fn new() -> MapControl {
        MapControl {
            epoch: AtomicU32::new(0),
            repairs: AtomicU32::new(0),
        }
    }
}

/// One stripe's writer lock and the bucket its undo record belongs to,
/// alone on a 128-byte line.
#[repr(C, align(128))]
pub struct Stripe {
    lock: RawMutex,
    /// `bucket + 1` of the last update's undo record; 0 before any.
    undo_bucket: AtomicU32,
    /// `bucket + 1` of an entry of this stripe being moved back by a
    /// remove; 0 when no move is under way.
    move_from: AtomicU32,
    /// The bucket that entry is being copied to.
    move_to: AtomicU32,
}

/// Bytes of a [`Stripe`] in a segment.
const STRIPE_BYTES: usize = 128;

#[cfg(not(loom))]
static_assertions::const_assert_eq!(size_of::<Stripe>(), STRIPE_BYTES);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(size_of::<MapControl>(), size_of::<MapControlLayout>());
#[cfg(not(loom))]
static_assertions::const_assert!(core::mem::align_of::<Stripe>() <= PAYLOAD_ALIGN);

impl Default for Stripe {
    fn default() -> Self {
        Stripe::new()
    }
}

impl Stripe {
    /// A fresh stripe (unlocked, no undo record).
    #[must_use]
    pub fn new() -> Stripe {
        Stripe {
            lock: RawMutex::new(),
            undo_bucket: AtomicU32::new(0),
            move_from: AtomicU32::new(0),
            move_to: AtomicU32::new(0),
        }
    }

    /// The stripe's writer lock (for diagnostics and tests: holding it
    /// keeps writers out of the stripe; readers are not affected).
    #[must_use]
    pub fn lock(&self) -> &RawMutex {
        &self.lock
    }
}

/// The parts of a map, for building a view over memory laid out by hand
/// (loom models, tests). Segments use [`Object::attach`].
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    /// The map-wide words.
    pub control: &'a MapControl,
    /// `shape.stripes()` stripes.
    pub stripes: &'a [Stripe],
    /// `shape.stripes()` counts.
    pub counts: &'a [AtomicU32],
    /// `shape.stripes()` undo records of the shape's undo stride.
    pub undo: &'a [AtomicU32],
    /// `shape.buckets()` buckets of `shape.bucket_bytes() / 4` words.
    pub buckets: &'a [AtomicU32],
}

impl fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("stripes", &self.stripes.len())
            .field("buckets_words", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

impl Shape {
    /// Words the [`Parts::undo`] slice must have.
    #[must_use]
    pub fn undo_words(&self) -> usize {
        self.undo_words * self.stripes
    }
    /// Words the [`Parts::buckets`] slice must have.
    #[must_use]
    pub fn bucket_words(&self) -> usize {
        self.bucket_words * self.buckets
    }
}

// ----------------------------------------------------------------- hashing

const HASH_K: u64 = 0x9e37_79b9_7f4a_7c15;

/// The 64-bit hash of a key's bytes: 8-byte little-endian chunks (the last
/// zero-padded) multiplied in, then a murmur3 finaliser. Fixed, so every
/// process agrees; not keyed (a peer choosing colliding keys only makes
/// probes longer, and they are bounded). `chunk(i)` gives chunk `i`.
#[inline]
fn hash_chunks(len: usize, chunk: impl Fn(usize) -> u64) -> u64 {
    let mut h = hash_start(len);
    for i in 0..len.div_ceil(8) {
        h = hash_mix(h, chunk(i));
    }
    hash_finish(h)
}

#[inline(always)]
fn hash_start(len: usize) -> u64 {
    (len as u64).wrapping_mul(HASH_K) ^ 0x2545_f491_4f6c_dd1d
}

#[inline(always)]
fn hash_mix(h: u64, chunk: u64) -> u64 {
    (h ^ chunk).wrapping_mul(HASH_K).rotate_left(31)
}

#[inline(always)]
fn hash_finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hash of a key's bytes, as every map computes it (the same function
/// as `hash_chunks` over the bytes, written so that a fixed-size key
/// compiles to a few instructions).
#[inline]
#[must_use]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = hash_start(bytes.len());
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(c);
        h = hash_mix(h, u64::from_le_bytes(buf));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = hash_mix(h, u64::from_le_bytes(buf));
    }
    hash_finish(h)
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// Word `i` of `bytes` packed four to a word (native order, zero-padded).
#[inline]
fn pack(bytes: &[u8], i: usize) -> u32 {
    let start = 4 * i;
    let end = (start + 4).min(bytes.len());
    let mut w = [0u8; 4];
    if let (Some(dst), Some(src)) = (
        w.get_mut(..end.saturating_sub(start)),
        bytes.get(start..end),
    ) {
        dst.copy_from_slice(src);
    }
    u32::from_ne_bytes(w)
}

/// A key or value as stored: its bytes, after a length word for byte
/// strings.
#[derive(Clone, Copy)]
struct Image<'k> {
    bytes: &'k [u8],
    prefixed: bool,
}

impl Image<'_> {
    #[inline]
    fn words(&self) -> usize {
        usize::from(self.prefixed) + self.bytes.len().div_ceil(4)
    }

    #[inline]
    fn word(&self, i: usize) -> u32 {
        if self.prefixed {
            if i == 0 {
                // Lengths are checked against the format's maximum (< 2^25).
                return self.bytes.len() as u32;
            }
            pack(self.bytes, i - 1)
        } else {
            pack(self.bytes, i)
        }
    }
}

/// Copies words of `region` into `out` (relaxed loads), 4 bytes a word.
#[inline]
fn load_bytes(region: &[AtomicU32], out: &mut [u8]) {
    let mut words = region.iter();
    let mut chunks = out.chunks_exact_mut(4);
    for c in &mut chunks {
        match words.next() {
            Some(w) => c.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes()),
            None => return,
        }
    }
    let rest = chunks.into_remainder();
    if let (false, Some(w)) = (rest.is_empty(), words.next()) {
        let n = rest.len();
        rest.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes()[..n]);
    }
}

/// Stores `img` into `region` (relaxed stores).
#[inline]
fn store_image(region: &[AtomicU32], img: &Image<'_>) {
    for (i, w) in region.iter().take(img.words()).enumerate() {
        w.store(img.word(i), Ordering::Relaxed);
    }
}

/// Why a copied value cannot be returned (decided after validation: a
/// torn copy retries instead).
#[derive(Clone, Copy, Debug)]
enum ValueIssue {
    /// A length above the format's maximum.
    Bad,
    /// The caller's buffer is shorter than the value.
    TooSmall(usize),
}

// ------------------------------------------------------------- crash tests

/// Places where the crash tests kill a writer (see the tests module).
#[allow(dead_code)] // only the crash tests read them
mod crash {
    pub const INSERT_WRITING: u32 = 1;
    pub const INSERT_KEY: u32 = 2;
    pub const INSERT_COMMITTED: u32 = 3;
    pub const UPDATE_RECORD: u32 = 4;
    pub const UPDATE_WRITING: u32 = 5;
    pub const UPDATE_HALF: u32 = 6;
    pub const UPDATE_COMMITTED: u32 = 7;
    pub const REMOVE_TOMBSTONE: u32 = 8;
    pub const REMOVE_PURGE: u32 = 9;
    pub const CLEAR_EPOCH: u32 = 10;
    pub const CLEAR_HALF: u32 = 11;
    pub const CLEAR_COUNTS: u32 = 12;
    pub const REPAIR_HALF: u32 = 13;
    pub const MOVE_RECORD: u32 = 14;
    pub const MOVE_COPIED: u32 = 15;
    pub const MOVE_DONE: u32 = 16;
    pub const LAST: u32 = 16;
}

#[cfg(all(test, not(loom), not(miri), target_os = "linux"))]
#[inline]
fn crash_point(at: u32) {
    tests::die_at(at);
}

#[cfg(not(all(test, not(loom), not(miri), target_os = "linux")))]
#[inline(always)]
fn crash_point(_at: u32) {}

// ------------------------------------------------------------------ engine

/// The map engine over its parts: everything but the key and value types.
#[derive(Clone, Copy)]
struct Table<'a> {
    shape: Shape,
    ctl: &'a MapControl,
    stripes: &'a [Stripe],
    counts: &'a [AtomicU32],
    undo: &'a [AtomicU32],
    words: &'a [AtomicU32],
    timeout: Option<Duration>,
}

/// The stripe locks an operation holds, by stripe index.
struct Held<'a> {
    guards: [MaybeUninit<RawMutexGuard<'a>>; MAX_STRIPES],
    /// Bit `s`: `guards[s]` is initialised (stripe `s` is held).
    bits: u64,
}

impl<'a> Held<'a> {
    fn new() -> Held<'a> {
        Held {
            guards: [const { MaybeUninit::uninit() }; MAX_STRIPES],
            bits: 0,
        }
    }

    #[inline]
    fn holds(&self, s: usize) -> bool {
        s < MAX_STRIPES && self.bits >> s & 1 == 1
    }

    /// Whether a stripe above `s` is held (then `s` may only be `try_lock`ed).
    fn holds_above(&self, s: usize) -> bool {
        s + 1 < MAX_STRIPES && self.bits >> (s + 1) != 0
    }

    fn put(&mut self, s: usize, g: RawMutexGuard<'a>) {
        if let Some(slot) = self.guards.get_mut(s) {
            if self.bits >> s & 1 == 1 {
                // SAFETY: bit `s` says slot `s` is initialised; it is
                // replaced below, so drop the old guard first.
                unsafe { slot.assume_init_drop() };
            }
            slot.write(g);
            self.bits |= 1 << s;
        }
    }

    fn release_all(&mut self) {
        let mut bits = self.bits;
        self.bits = 0;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(slot) = self.guards.get_mut(s) {
                // SAFETY: bit `s` was set, so slot `s` holds a guard; the
                // bit is cleared (above), so it is dropped exactly once.
                unsafe { slot.assume_init_drop() };
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// How to take a stripe lock.
#[derive(Clone, Copy)]
enum How {
    /// Wait, until the deadline if there is one.
    Block(Option<Deadline>),
    /// Never wait.
    Try,
}

/// Where a writer's probe stops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// At the key (or the `EMPTY` bucket that says it is absent).
    Key,
    /// At the `EMPTY` bucket after the key: a remove shifts the entries
    /// up to it back, so it holds their stripes too.
    Empty,
}

/// Where a writer's probe ended.
#[derive(Clone, Copy, Debug)]
struct Located {
    /// The key's bucket, if present.
    found: Option<usize>,
    /// The first free bucket of the probe (a tombstone, or the `EMPTY`
    /// that ended it), if the key is absent.
    free: Option<usize>,
    /// The `EMPTY` bucket that ended the probe, if one did.
    empty: Option<usize>,
}

enum Probe {
    At(Located),
    /// Release everything and lock this set of stripes in order.
    Relock(u64),
}

impl<'a> Table<'a> {
    fn new(shape: Shape, parts: Parts<'a>) -> Option<Table<'a>> {
        if parts.stripes.len() != shape.stripes
            || parts.counts.len() != shape.stripes
            || parts.undo.len() != shape.undo_words()
            || parts.buckets.len() != shape.bucket_words()
        {
            return None;
        }
        Some(Table {
            shape,
            ctl: parts.control,
            stripes: parts.stripes,
            counts: parts.counts,
            undo: parts.undo,
            words: parts.buckets,
            timeout: None,
        })
    }

    /// The view of a map laid out by `shape` at `payload`.
    ///
    /// # Safety
    /// `shape.payload_len()` bytes at `payload`, aligned to
    /// `PAYLOAD_ALIGN`, stay mapped read-write for `'a` and are only
    /// accessed atomically.
    #[inline]
    unsafe fn at(payload: NonNull<u8>, shape: Shape) -> Table<'a> {
        let p = payload.as_ptr();
        // SAFETY: every offset and length below comes from `shape`, whose
        // parts all end within `shape.total` (checked arithmetic in
        // `Shape::custom`) and are aligned (128 for the control, stripes
        // and undo records, 4 for words); `MapControl` and `Stripe` are
        // made of atomics (any bytes are valid), and `AtomicU32` has the
        // size and alignment of `u32`. The caller keeps the bytes mapped
        // and accessed only atomically for 'a.
        unsafe {
            Table {
                shape,
                ctl: &*p.cast::<MapControl>(),
                stripes: core::slice::from_raw_parts(
                    p.add(shape.stripes_off).cast::<Stripe>(),
                    shape.stripes,
                ),
                counts: core::slice::from_raw_parts(
                    p.add(shape.counts_off).cast::<AtomicU32>(),
                    shape.stripes,
                ),
                undo: core::slice::from_raw_parts(
                    p.add(shape.undo_off).cast::<AtomicU32>(),
                    shape.undo_words(),
                ),
                words: core::slice::from_raw_parts(
                    p.add(shape.buckets_off).cast::<AtomicU32>(),
                    shape.bucket_words(),
                ),
                timeout: None,
            }
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.shape.buckets - 1
    }

    #[inline]
    fn stripe_of(&self, b: usize) -> usize {
        b >> self.shape.stripe_shift
    }

    /// The words of bucket `b mod buckets`. Masking here makes every
    /// bucket access in range whatever index a caller computed (from a
    /// hash, a probe, a record a peer may have scribbled on).
    #[inline]
    fn bucket(&self, b: usize) -> &'a [AtomicU32] {
        let bw = self.shape.bucket_words;
        let start = (b & self.mask()) * bw;
        debug_assert!(start + bw <= self.words.len());
        // SAFETY: `b & mask < buckets`, and `words` holds exactly
        // `buckets * bucket_words` words: `Table::new` checks it, and
        // `Table::at` makes the slice from the same shape. So
        // `start + bw <= words.len()`.
        unsafe { self.words.get_unchecked(start..start + bw) }
    }

    /// Words `from..from + n` of bucket `b`, where the shape guarantees
    /// `from + n <= bucket_words`.
    #[inline]
    fn bucket_part(&self, b: usize, from: usize, n: usize) -> &'a [AtomicU32] {
        let bucket = self.bucket(b);
        debug_assert!(from + n <= bucket.len());
        // SAFETY: callers pass the head, key and value regions, which
        // `Shape::custom` lays out inside a bucket: HEAD_WORDS + key_words
        // + value_words <= bucket_words. Shapes are only made there.
        unsafe { bucket.get_unchecked(from..from + n) }
    }

    /// The meta word of bucket `b`.
    #[inline]
    fn meta(&self, b: usize) -> &'a AtomicU32 {
        &self.bucket_part(b, 0, 1)[0]
    }

    #[inline]
    fn key_region(&self, b: usize) -> &'a [AtomicU32] {
        self.bucket_part(b, HEAD_WORDS, self.shape.key_words)
    }

    #[inline]
    fn value_region(&self, b: usize) -> &'a [AtomicU32] {
        let (k, v) = (self.shape.key_words, self.shape.value_words);
        self.bucket_part(b, HEAD_WORDS + k, v)
    }

    #[inline]
    fn undo_region(&self, s: usize) -> &'a [AtomicU32] {
        let start = s * self.shape.undo_words;
        self.undo
            .get(start..start + self.shape.value_words)
            .unwrap_or(&[])
    }

    /// Whether bucket `b` holds the key `key` with hash tag `tag` (relaxed
    /// loads: a reader validates afterwards, a writer holds the lock).
    #[inline]
    fn key_matches(&self, b: usize, tag: u32, key: &Image<'_>) -> bool {
        if self.bucket_part(b, 1, 1)[0].load(Ordering::Relaxed) != tag {
            return false;
        }
        let mut region = self.key_region(b);
        if key.prefixed {
            match region.split_first() {
                // Lengths are checked against the maximum (< 2^17).
                Some((len, rest)) if len.load(Ordering::Relaxed) == key.bytes.len() as u32 => {
                    region = rest
                }
                _ => return false,
            }
        }
        if region.len() < key.bytes.len().div_ceil(4) {
            return false;
        }
        let mut words = region.iter();
        let mut chunks = key.bytes.chunks_exact(4);
        for c in &mut chunks {
            let mut buf = [0u8; 4];
            buf.copy_from_slice(c);
            if words.next().map(|w| w.load(Ordering::Relaxed)) != Some(u32::from_ne_bytes(buf)) {
                return false;
            }
        }
        let rest = chunks.remainder();
        rest.is_empty() || words.next().map(|w| w.load(Ordering::Relaxed)) == Some(pack(rest, 0))
    }

    fn deadline(&self) -> Option<Deadline> {
        self.timeout.map(Deadline::after)
    }

    // ---------------------------------------------------------- readers

    /// Looks `key` up without locking; `read` copies a value region out.
    ///
    /// The walk from the key's home to the bucket that answers is one
    /// seqlock read (module docs, "Readers never lock"): every meta word walked is
    /// summed, and after an Acquire fence summed again. Every transition
    /// of a meta word increases it (see [`meta`]), so equal sums mean no
    /// bucket walked changed meanwhile: no write, no entry moved past us.
    #[inline]
    fn lookup<R>(
        &self,
        key: Image<'_>,
        hash: u64,
        mut read: impl FnMut(&[AtomicU32]) -> Result<R, ValueIssue>,
    ) -> Result<Option<R>, MapError> {
        let mask = self.mask();
        let tag = tag_of(hash);
        let home = tag as usize & mask;
        for _ in 0..READ_RETRIES {
            // SYNC POINT MAP-EPOCH (reader, start): Acquire pairs with the
            // Release store that ended the last clear.
            let e1 = self.ctl.epoch.load(Ordering::Acquire);
            if e1 & 1 != 0 {
                // A clear is under way (or its clearer died): it holds
                // every stripe, so no insert follows it before it ends.
                // Linearised after it, the map is empty.
                return Ok(None);
            }
            let mut sum = 0u64;
            let mut walked = 0;
            let mut found = None;
            let mut bad = false;
            for n in 0..=mask {
                let b = (home + n) & mask;
                // SYNC POINT MAP-COMMIT (reader): Acquire pairs with the
                // writer's Release commit (for `FULL | WRITING`, with the
                // updater's Release store of `WRITING` after its undo
                // record, MAP-UNDO): the words it stored before are
                // visible.
                let m = self.meta(b).load(Ordering::Acquire);
                sum += u64::from(m);
                walked = n + 1;
                let st = state(m);
                if st == FULL {
                    if self.key_matches(b, tag, &key) {
                        found = Some(if m & WRITING == 0 {
                            read(self.value_region(b))
                        } else {
                            // An update in progress (or its writer died):
                            // the committed value is in the stripe's undo
                            // record.
                            let s = self.stripe_of(b);
                            let rec = self
                                .stripes
                                .get(s)
                                .map(|st| st.undo_bucket.load(Ordering::Relaxed));
                            if rec == Some(b as u32 + 1) {
                                read(self.undo_region(s))
                            } else {
                                Err(ValueIssue::Bad)
                            }
                        });
                        break;
                    }
                } else if st == EMPTY {
                    // `EMPTY | WRITING` (and `TOMBSTONE | WRITING`): an
                    // insert or a move not committed yet; the bucket is
                    // what it was.
                    break;
                } else if st != TOMBSTONE {
                    bad = true;
                    break;
                }
            }
            // SYNC POINT MAP-SEQ / MAP-UNDO / MAP-EPOCH (reader): the
            // Acquire fence pairs with every writer's Release fence before
            // the words it stores (after `WRITING`, before an undo record,
            // after an odd epoch): if we copied any of those words, the
            // loads below see the meta or the epoch moved.
            fence(Ordering::Acquire);
            let again: u64 = (0..walked)
                .map(|n| u64::from(self.meta((home + n) & mask).load(Ordering::Relaxed)))
                .sum();
            let e2 = self.ctl.epoch.load(Ordering::Relaxed);
            if again != sum || e2 != e1 {
                if e2 & 1 != 0 {
                    return Ok(None);
                }
                continue;
            }
            if bad {
                return Err(corrupt("a bucket state no writer stores"));
            }
            return match found {
                None => Ok(None),
                Some(Ok(r)) => Ok(Some(r)),
                Some(Err(ValueIssue::TooSmall(needed))) => Err(MapError::BufferTooSmall { needed }),
                Some(Err(ValueIssue::Bad)) => Err(corrupt(
                    "a stored value length above the maximum, or an update without its undo record",
                )),
            };
        }
        self.lookup_locked(key, hash, read)
    }

    /// The fallback of [`lookup`](Self::lookup) after [`READ_RETRIES`]
    /// walks that changed under it: the same walk under the writer locks,
    /// waiting at most the view's timeout.
    #[cold]
    fn lookup_locked<R>(
        &self,
        key: Image<'_>,
        hash: u64,
        mut read: impl FnMut(&[AtomicU32]) -> Result<R, ValueIssue>,
    ) -> Result<Option<R>, MapError> {
        self.modify(key, hash, Until::Key, |t, _, at| match at.found {
            Some(b) => t.read_locked(b, &mut read).map(Some),
            None => Ok(None),
        })
    }

    /// Entries, as the per-stripe counts say (0 while a clear runs).
    fn len(&self) -> usize {
        if self.ctl.epoch.load(Ordering::Acquire) & 1 != 0 {
            return 0;
        }
        self.count_sum()
    }

    fn count_sum(&self) -> usize {
        let sum = self.counts.iter().fold(0u64, |acc, c| {
            acc.saturating_add(u64::from(c.load(Ordering::Relaxed)))
        });
        usize::try_from(sum)
            .unwrap_or(usize::MAX)
            .min(self.shape.buckets)
    }

    // ---------------------------------------------------------- locking

    /// Takes stripe `s`'s lock into `held`, repairing the stripe if its
    /// last holder died. `Ok(false)`: `How::Try` found it held.
    fn acquire(&self, held: &mut Held<'a>, s: usize, how: How) -> Result<bool, MapError> {
        let stripes: &'a [Stripe] = self.stripes;
        let Some(stripe) = stripes.get(s) else {
            return Err(corrupt("a stripe index out of range"));
        };
        // Writers always take a stripe in recovery mode: a dead holder's
        // damage is the map's to repair, here, before anything else.
        let lock_error = |e: LockError| match e {
            LockError::WouldDeadlock => MapError::WouldDeadlock,
            // (`OwnerDied` is never refused to a recoverer; `Overflow` is
            // a reentrant lock's, never a `RawMutex`'s.)
            LockError::NotRecoverable | LockError::OwnerDied | LockError::Overflow => {
                MapError::NotRecoverable
            }
        };
        let r = match how {
            How::Try => stripe.lock.try_recover().map_err(|e| match e {
                TryLockError::Lock(e) => Some(lock_error(e)),
                // `WouldBlock`, `Contended`: not taken.
                _ => None,
            }),
            How::Block(None) => stripe.lock.recover().map_err(|e| Some(lock_error(e))),
            How::Block(Some(d)) if d.has_passed() => stripe.lock.try_recover().map_err(|e| {
                Some(match e {
                    TryLockError::Lock(e) => lock_error(e),
                    // The deadline had passed: `try_recover` said no.
                    _ => MapError::TimedOut,
                })
            }),
            How::Block(Some(d)) => stripe.lock.recover_timeout(d.remaining()).map_err(|e| {
                Some(match e {
                    LockTimeoutError::Lock(e) => lock_error(e),
                    LockTimeoutError::TimedOut => MapError::TimedOut,
                })
            }),
        };
        match r {
            Ok(mut g) => {
                if g.owner_died() {
                    self.repair(s);
                    g.mark_consistent();
                }
                held.put(s, g);
                Ok(true)
            }
            Err(None) => Ok(false),
            Err(Some(e)) => Err(e),
        }
    }

    /// Releases everything and locks the stripes of `want`, in ascending
    /// order.
    fn lock_set(
        &self,
        held: &mut Held<'a>,
        want: u64,
        deadline: Option<Deadline>,
    ) -> Result<(), MapError> {
        held.release_all();
        let mut bits = want;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.acquire(held, s, How::Block(deadline))?;
        }
        Ok(())
    }

    fn all_stripes(&self) -> u64 {
        if self.shape.stripes >= 64 {
            u64::MAX
        } else {
            (1 << self.shape.stripes) - 1
        }
    }

    // ---------------------------------------------------------- writers

    /// Locks what `key`'s probe needs and runs `op` on where it ended.
    fn modify<R>(
        &self,
        key: Image<'_>,
        hash: u64,
        until: Until,
        op: impl FnOnce(&Self, &Held<'a>, Located) -> Result<R, MapError>,
    ) -> Result<R, MapError> {
        let deadline = self.deadline();
        let tag = tag_of(hash);
        let home = tag as usize & self.mask();
        let mut held = Held::new();
        let mut want = 1u64 << self.stripe_of(home);
        for _ in 0..RESTARTS {
            self.lock_set(&mut held, want, deadline)?;
            // Relaxed: our lock acquisition (Acquire) ordered us after the
            // last clearer's unlock, and no clear can start while we hold a
            // stripe.
            if self.ctl.epoch.load(Ordering::Relaxed) & 1 != 0 {
                // Its clearer died (it would hold our stripe otherwise).
                held.release_all();
                self.clear_locked_all(deadline, true)?;
                continue;
            }
            match self.probe(&mut held, home, tag, &key, until, deadline)? {
                Probe::Relock(set) => want = set,
                Probe::At(at) => {
                    let r = op(self, &held, at);
                    if let Some(e) = at.empty {
                        // The probe ended at an EMPTY bucket: the
                        // tombstones right before it are needed by no probe
                        // (unless the op just filled it; `purge` looks).
                        self.purge(&held, e.wrapping_sub(1) & self.mask());
                    }
                    return r;
                }
            }
        }
        Err(corrupt("a writer's probe kept restarting"))
    }

    /// The writer's probe, locking stripes as it goes.
    fn probe(
        &self,
        held: &mut Held<'a>,
        home: usize,
        tag: u32,
        key: &Image<'_>,
        until: Until,
        deadline: Option<Deadline>,
    ) -> Result<Probe, MapError> {
        let mask = self.mask();
        let mut free = None;
        let mut found = None;
        for n in 0..=mask {
            let b = (home + n) & mask;
            let s = self.stripe_of(b);
            if !held.holds(s) {
                if !held.holds_above(s) {
                    self.acquire(held, s, How::Block(deadline))?;
                } else if !self.acquire(held, s, How::Try)? {
                    // Wrapped around to a stripe below one we hold: lock
                    // the whole set in order instead.
                    return Ok(Probe::Relock(held.bits | 1 << s));
                }
            }
            // Relaxed: we hold the stripe; its last writer's unlock
            // (Release) and our lock (Acquire) order its stores before.
            let m = self.meta(b).load(Ordering::Relaxed);
            if m & WRITING != 0 {
                return Err(corrupt("a bucket marked mid-write under a held lock"));
            }
            match state(m) {
                EMPTY => {
                    return Ok(Probe::At(Located {
                        found,
                        free: if found.is_some() {
                            None
                        } else {
                            free.or(Some(b))
                        },
                        empty: Some(b),
                    }))
                }
                TOMBSTONE => {
                    free.get_or_insert(b);
                }
                FULL => {
                    if found.is_none() && self.key_matches(b, tag, key) {
                        found = Some(b);
                        if until == Until::Key {
                            return Ok(Probe::At(Located {
                                found,
                                free: None,
                                empty: None,
                            }));
                        }
                    }
                }
                _ => return Err(corrupt("a bucket state no writer stores")),
            }
        }
        Ok(Probe::At(Located {
            found,
            free: if found.is_some() { None } else { free },
            empty: None,
        }))
    }

    /// Copies bucket `b`'s value out under its stripe lock.
    fn read_locked<R>(
        &self,
        b: usize,
        read: impl FnOnce(&[AtomicU32]) -> Result<R, ValueIssue>,
    ) -> Result<R, MapError> {
        read(self.value_region(b)).map_err(|issue| match issue {
            ValueIssue::Bad => corrupt("a stored value length above the maximum"),
            ValueIssue::TooSmall(needed) => MapError::BufferTooSmall { needed },
        })
    }

    /// Sets the value of the probed key: rewrites it in place if found,
    /// else inserts the key into the free bucket (if below capacity).
    fn set_locked(
        &self,
        at: &mut Located,
        key: &Image<'_>,
        tag: u32,
        value: &Image<'_>,
    ) -> Result<(), MapError> {
        if let Some(b) = at.found {
            self.update_in_place(b, value);
            return Ok(());
        }
        if self.count_sum() >= self.shape.capacity {
            return Err(MapError::Full {
                capacity: self.shape.capacity,
            });
        }
        let Some(b) = at.free else {
            return Err(corrupt("no free bucket below the capacity"));
        };
        self.write_new(b, key, tag, value);
        at.found = Some(b);
        at.free = None;
        Ok(())
    }

    fn bump_count(&self, b: usize, up: bool) {
        if let Some(c) = self.counts.get(self.stripe_of(b)) {
            // Relaxed: only this stripe's lock holder writes it; readers
            // of `len` take it as a snapshot.
            let n = c.load(Ordering::Relaxed);
            c.store(
                if up {
                    n.wrapping_add(1)
                } else {
                    n.saturating_sub(1)
                },
                Ordering::Relaxed,
            );
        }
    }

    /// Inserts into free bucket `b` (the stripe is held).
    fn write_new(&self, b: usize, key: &Image<'_>, tag: u32, value: &Image<'_>) {
        let meta = self.meta(b);
        let m = meta.load(Ordering::Relaxed);
        // Relaxed: a reader of a free bucket copies nothing; the fence
        // below covers readers still copying the entry this bucket held.
        meta.store(m | WRITING, Ordering::Relaxed);
        // SYNC POINT MAP-SEQ (writer): a reader that copies any word
        // stored below sees the meta moved when it re-loads it.
        fence(Ordering::Release);
        crash_point(crash::INSERT_WRITING);
        if let Some(w) = self.bucket(b).get(1) {
            w.store(tag, Ordering::Relaxed);
        }
        store_image(self.key_region(b), key);
        crash_point(crash::INSERT_KEY);
        store_image(self.value_region(b), value);
        // SYNC POINT MAP-COMMIT (writer): publishes the words above to
        // readers' Acquire meta loads. Also the crash boundary: before
        // it the bucket is still free.
        meta.store(committed(m, FULL), Ordering::Release);
        crash_point(crash::INSERT_COMMITTED);
        self.bump_count(b, true);
    }

    /// Rewrites the value of bucket `b` (the stripe is held), through the
    /// stripe's undo record.
    fn update_in_place(&self, b: usize, value: &Image<'_>) {
        let s = self.stripe_of(b);
        let (meta, region, undo) = (self.meta(b), self.value_region(b), self.undo_region(s));
        let Some(stripe) = self.stripes.get(s) else {
            return;
        };
        let m = meta.load(Ordering::Relaxed);
        // SYNC POINT MAP-UNDO (writer, record): readers of the previous
        // update's record that copy a word stored below see its commit.
        fence(Ordering::Release);
        // The committed value into the record: for byte strings only the
        // words its length uses.
        let used = self.used_value_words(region);
        for (src, dst) in region.iter().zip(undo).take(used) {
            dst.store(src.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        stripe.undo_bucket.store(b as u32 + 1, Ordering::Relaxed);
        crash_point(crash::UPDATE_RECORD);
        // SYNC POINT MAP-UNDO (writer, WRITING): Release publishes the
        // record to readers that see `WRITING`, and keeps it before this
        // store for a repairer after our death.
        meta.store(m | WRITING, Ordering::Release);
        // SYNC POINT MAP-SEQ (writer): as in `write_new`.
        fence(Ordering::Release);
        crash_point(crash::UPDATE_WRITING);
        let n = value.words();
        for (i, w) in region.iter().take(n).enumerate() {
            if i == n / 2 {
                crash_point(crash::UPDATE_HALF);
            }
            w.store(value.word(i), Ordering::Relaxed);
        }
        // SYNC POINT MAP-COMMIT (writer).
        meta.store(committed(m, FULL), Ordering::Release);
        crash_point(crash::UPDATE_COMMITTED);
    }

    /// Removes the entry in bucket `b`, then shifts the entries after it
    /// back toward their homes (Knuth's algorithm R), up to the `EMPTY`
    /// bucket `empty` that ended the probe; every stripe in between is
    /// held. The remove itself is the tombstone store; each move is
    /// crash-safe on its own ([`move_entry`](Self::move_entry)), and the
    /// last hole is emptied. No tombstone outlives the operation, so probes
    /// stay as short as in a table that never saw a remove.
    fn remove_locked(&self, held: &Held<'a>, b: usize, empty: Option<usize>) {
        let mask = self.mask();
        let meta = self.meta(b);
        let m = meta.load(Ordering::Relaxed);
        // Release: a reader that sees the tombstone sees everything this
        // writer did before (every committed transition is Release).
        meta.store(committed(m, TOMBSTONE), Ordering::Release);
        crash_point(crash::REMOVE_TOMBSTONE);
        self.bump_count(b, false);
        let Some(empty) = empty else {
            return; // No EMPTY bucket anywhere (only a scribbled table).
        };
        let mut hole = b;
        let mut q = (b + 1) & mask;
        while q != empty {
            let m = self.meta(q).load(Ordering::Relaxed);
            if m & WRITING == 0 && state(m) == FULL {
                let home = self.tag(q) as usize & mask;
                // The entry at `q` may move back to `hole` if `hole` lies on
                // its probe, between its home and `q`.
                if hole.wrapping_sub(home) & mask <= q.wrapping_sub(home) & mask {
                    self.move_entry(q, hole);
                    hole = q;
                }
            }
            q = (q + 1) & mask;
        }
        // Every entry between `hole` and `empty` lives past `hole`: no probe
        // needs it. (With the tombstones right before it.)
        self.empty_from(held, hole);
    }

    /// Moves the entry at `q` into the free bucket `t` before it on its
    /// probe (both stripes held). The stripe of `q` records the move first:
    /// between the copy's commit and the source's tombstone the key is in
    /// both buckets, and a repairer finishes (or forgets) the move from the
    /// record (see [`repair`](Self::repair)). Readers find the first copy,
    /// and a walk that changed under them does not validate.
    fn move_entry(&self, q: usize, t: usize) {
        let Some(stripe) = self.stripes.get(self.stripe_of(q)) else {
            return;
        };
        stripe.move_to.store(t as u32, Ordering::Relaxed);
        stripe.move_from.store(q as u32 + 1, Ordering::Relaxed);
        crash_point(crash::MOVE_RECORD);
        let meta = self.meta(t);
        let mt = meta.load(Ordering::Relaxed);
        // Release: the move record before the copy (crash order).
        meta.store(mt | WRITING, Ordering::Release);
        // SYNC POINT MAP-SEQ (writer): as in `write_new`.
        fence(Ordering::Release);
        let (src, dst) = (self.bucket(q), self.bucket(t));
        let used = HEAD_WORDS + self.shape.key_words + self.used_value_words(self.value_region(q));
        for (from, to) in src.iter().zip(dst).take(used).skip(1) {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        // SYNC POINT MAP-COMMIT (writer).
        meta.store(committed(mt, FULL), Ordering::Release);
        self.bump_count(t, true);
        crash_point(crash::MOVE_COPIED);
        let mq = self.meta(q).load(Ordering::Relaxed);
        self.meta(q)
            .store(committed(mq, TOMBSTONE), Ordering::Release);
        self.bump_count(q, false);
        crash_point(crash::MOVE_DONE);
        // Release: the tombstone before the record's end (crash order).
        stripe.move_from.store(0, Ordering::Release);
    }

    /// Words of a value region in use (a byte string's length word and
    /// the words its length covers; all of a fixed value).
    fn used_value_words(&self, region: &[AtomicU32]) -> usize {
        match self.shape.value {
            Format::Fixed(_) => region.len(),
            Format::Bytes(max) => {
                let len = region.first().map_or(0, |w| w.load(Ordering::Relaxed)) as usize;
                1 + len.min(max).div_ceil(4)
            }
        }
    }

    /// The hash tag of bucket `b` (the home is `tag & mask`).
    #[inline]
    fn tag(&self, b: usize) -> u32 {
        self.bucket(b)
            .get(1)
            .map_or(0, |w| w.load(Ordering::Relaxed))
    }

    /// Empties the tombstone at `b`, which no probe needs, and the
    /// tombstones right before it (no probe needs a tombstone followed by
    /// an `EMPTY` bucket), as long as their stripes are held.
    fn empty_from(&self, held: &Held<'a>, b: usize) {
        let mask = self.mask();
        let mut p = b;
        for _ in 0..mask {
            if !held.holds(self.stripe_of(p)) {
                return;
            }
            let meta = self.meta(p);
            let m = meta.load(Ordering::Relaxed);
            if m & WRITING != 0 || state(m) != TOMBSTONE {
                return;
            }
            // Release: as for tombstones.
            meta.store(committed(m, EMPTY), Ordering::Release);
            crash_point(crash::REMOVE_PURGE);
            p = (p + mask) & mask;
        }
    }

    /// Empties the tombstone at `b` and those right before it if the
    /// bucket after `b` is `EMPTY`: no key is stored past an `EMPTY`
    /// bucket of its probe, so none needs them. Only in held stripes: a
    /// writer whose probe runs through a bucket holds its stripe, so no
    /// insert can land past these buckets meanwhile.
    fn purge(&self, held: &Held<'a>, b: usize) {
        // Relaxed, and maybe in a stripe we do not hold: only its state
        // matters, and a writer there can only fill it with a key whose
        // home is past `b`, which does not need `b` either.
        if state(self.meta((b + 1) & self.mask()).load(Ordering::Relaxed)) == EMPTY {
            self.empty_from(held, b);
        }
    }

    /// Locks every stripe and clears the map; with `only_if_odd`, only if
    /// a dead clearer left the epoch odd.
    fn clear_locked_all(
        &self,
        deadline: Option<Deadline>,
        only_if_odd: bool,
    ) -> Result<(), MapError> {
        let mut held = Held::new();
        self.lock_set(&mut held, self.all_stripes(), deadline)?;
        let e = self.ctl.epoch.load(Ordering::Relaxed);
        if only_if_odd && e & 1 == 0 {
            return Ok(());
        }
        // Odd now (a dead clearer's odd epoch stays as it is).
        let odd = e | 1;
        self.ctl.epoch.store(odd, Ordering::Relaxed);
        // SYNC POINT MAP-EPOCH (clearer): a reader that sees any bucket
        // emptied below sees the odd epoch when it re-loads it.
        fence(Ordering::Release);
        crash_point(crash::CLEAR_EPOCH);
        let half = self.shape.buckets / 2;
        for b in 0..self.shape.buckets {
            if b == half {
                crash_point(crash::CLEAR_HALF);
            }
            let meta = self.meta(b);
            let m = meta.load(Ordering::Relaxed);
            if state(m) != EMPTY || m & WRITING != 0 {
                // Relaxed: the epoch's fence and final store order it.
                meta.store(committed(m, EMPTY), Ordering::Relaxed);
            }
        }
        for c in self.counts {
            c.store(0, Ordering::Relaxed);
        }
        crash_point(crash::CLEAR_COUNTS);
        // SYNC POINT MAP-EPOCH (clearer, end): Release publishes the
        // cleared buckets to readers' Acquire epoch load.
        self.ctl.epoch.store(odd.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Repairs stripe `s` after its lock holder died (module docs,
    /// "Crashes"). Idempotent.
    fn repair(&self, s: usize) {
        let lo = s << self.shape.stripe_shift;
        let hi = (lo + (1 << self.shape.stripe_shift)).min(self.shape.buckets);
        let record = self
            .stripes
            .get(s)
            .map_or(0, |st| st.undo_bucket.load(Ordering::Relaxed));
        let undo = self.undo_region(s);
        // SYNC POINT MAP-SEQ (repairer): like a writer's fence after
        // `WRITING`: a reader that copies a word we restore below sees the
        // meta moved on its re-load (we loaded `WRITING` before this).
        fence(Ordering::Release);
        let mut full = 0u32;
        for b in lo..hi {
            let meta = self.meta(b);
            let m = meta.load(Ordering::Relaxed);
            let st = state(m);
            let fixed = if m & WRITING == 0 && st != INVALID {
                None
            } else if st == FULL && record == b as u32 + 1 && self.restore(b, undo) {
                // A dead update: its committed value is back.
                Some(FULL)
            } else if st == EMPTY {
                // A dead insert: the key was never there.
                Some(EMPTY)
            } else {
                // A dead insert into a tombstone; and what no honest
                // writer leaves (an update without its record, state 3):
                // a tombstone keeps every probe going.
                Some(TOMBSTONE)
            };
            if let Some(st) = fixed {
                // Release: the restored words before the commit.
                meta.store(committed(m, st), Ordering::Release);
            }
            if state(meta.load(Ordering::Relaxed)) == FULL {
                full += 1;
            }
            if b == lo + (hi - lo) / 2 {
                crash_point(crash::REPAIR_HALF);
            }
        }
        // A move of one of our entries, cut short: if its copy was
        // committed, the entry is in both buckets: drop the source.
        // Otherwise the copy's bucket is still free (or `WRITING`, which
        // its own stripe's repair clears): keep the source.
        let from = self
            .stripes
            .get(s)
            .map_or(0, |st| st.move_from.load(Ordering::Relaxed));
        if from != 0 {
            let q = from as usize - 1;
            let t = self
                .stripes
                .get(s)
                .map_or(0, |st| st.move_to.load(Ordering::Relaxed)) as usize;
            if (lo..hi).contains(&q) && t < self.shape.buckets && t != q {
                let (mq, mt) = (
                    self.meta(q).load(Ordering::Relaxed),
                    self.meta(t).load(Ordering::Relaxed),
                );
                if mq & WRITING == 0
                    && state(mq) == FULL
                    && mt & WRITING == 0
                    && state(mt) == FULL
                    && self.same_key(q, t)
                {
                    self.meta(q)
                        .store(committed(mq, TOMBSTONE), Ordering::Release);
                    full = full.saturating_sub(1);
                }
            }
            if let Some(st) = self.stripes.get(s) {
                // Release: the tombstone before the record's end.
                st.move_from.store(0, Ordering::Release);
            }
        }
        if let Some(c) = self.counts.get(s) {
            c.store(full, Ordering::Relaxed);
        }
        self.ctl.repairs.fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the undo record back into bucket `b`'s value; false if the
    /// record is impossible.
    fn restore(&self, b: usize, undo: &[AtomicU32]) -> bool {
        let region = self.value_region(b);
        let used = match self.shape.value {
            Format::Fixed(_) => region.len(),
            Format::Bytes(max) => {
                let len = undo.first().map_or(0, |w| w.load(Ordering::Relaxed)) as usize;
                if len > max {
                    return false;
                }
                1 + len.div_ceil(4)
            }
        };
        for (src, dst) in undo.iter().zip(region).take(used) {
            dst.store(src.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        true
    }

    /// Locks every stripe (finishing a dead clearer's clear) and calls `f`
    /// with the bucket of every entry.
    fn for_each_locked(
        &self,
        mut f: impl FnMut(usize) -> Result<(), MapError>,
    ) -> Result<(), MapError> {
        let deadline = self.deadline();
        let mut held = Held::new();
        self.lock_set(&mut held, self.all_stripes(), deadline)?;
        if self.ctl.epoch.load(Ordering::Relaxed) & 1 != 0 {
            held.release_all();
            self.clear_locked_all(deadline, true)?;
            return Ok(());
        }
        for b in 0..self.shape.buckets {
            if late(b, deadline) {
                return Err(MapError::TimedOut);
            }
            if state(self.meta(b).load(Ordering::Relaxed)) == FULL {
                f(b)?;
            }
        }
        Ok(())
    }

    /// The length of the byte-string key stored in bucket `b`, checked.
    fn stored_key_len(&self, b: usize) -> Result<usize, MapError> {
        match self.shape.key {
            Format::Fixed(n) => Ok(n),
            Format::Bytes(max) => {
                let len = self
                    .key_region(b)
                    .first()
                    .map_or(0, |w| w.load(Ordering::Relaxed)) as usize;
                if len > max {
                    return Err(corrupt("a stored key length above the maximum"));
                }
                Ok(len)
            }
        }
    }

    /// The key bytes of bucket `b` (length from [`stored_key_len`]).
    fn key_bytes_region(&self, b: usize) -> &'a [AtomicU32] {
        let region = self.key_region(b);
        match self.shape.key {
            Format::Fixed(_) => region,
            Format::Bytes(_) => region.get(1..).unwrap_or(&[]),
        }
    }

    /// The hash of the key stored in bucket `b`.
    fn stored_hash(&self, b: usize) -> Result<u64, MapError> {
        let len = self.stored_key_len(b)?;
        let region = self.key_bytes_region(b);
        let words = len.div_ceil(4);
        let word = |i: usize| -> [u8; 4] {
            if i < words {
                region
                    .get(i)
                    .map_or(0, |w| w.load(Ordering::Relaxed))
                    .to_ne_bytes()
            } else {
                [0; 4]
            }
        };
        Ok(hash_chunks(len, |i| {
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&word(2 * i));
            buf[4..].copy_from_slice(&word(2 * i + 1));
            // Zero the bytes past the key (the last word's tail is zero
            // already; a byte key's stale words past its length are not).
            let valid = len.saturating_sub(8 * i).min(8);
            buf[valid..].fill(0);
            u64::from_le_bytes(buf)
        }))
    }

    /// Checks every invariant under every lock (see [`MapStats`]).
    fn check(&self) -> Result<MapStats, MapError> {
        let deadline = self.deadline();
        let mut held = Held::new();
        self.lock_set(&mut held, self.all_stripes(), deadline)?;
        if self.ctl.epoch.load(Ordering::Relaxed) & 1 != 0 {
            // A clearer died: finish its clear first.
            held.release_all();
            self.clear_locked_all(deadline, true)?;
            self.lock_set(&mut held, self.all_stripes(), deadline)?;
        }
        let mask = self.mask();
        let mut stats = MapStats::default();
        let mut per_stripe = [0u32; MAX_STRIPES];
        for b in 0..self.shape.buckets {
            if late(b, deadline) {
                return Err(MapError::TimedOut);
            }
            let m = self.meta(b).load(Ordering::Relaxed);
            if m & WRITING != 0 {
                return Err(corrupt("a bucket left mid-write"));
            }
            match state(m) {
                EMPTY => continue,
                TOMBSTONE => {
                    stats.tombstones += 1;
                    continue;
                }
                FULL => {}
                _ => return Err(corrupt("a bucket state no writer stores")),
            }
            stats.len += 1;
            if let Some(c) = per_stripe.get_mut(self.stripe_of(b)) {
                *c += 1;
            }
            let hash = self.stored_hash(b)?;
            if self.bucket(b).get(1).map(|w| w.load(Ordering::Relaxed)) != Some(tag_of(hash)) {
                return Err(corrupt("a stored hash tag does not match its key"));
            }
            // Every bucket from the key's home to it must be non-empty,
            // and none may hold the same key.
            let home = tag_of(hash) as usize & mask;
            let dist = b.wrapping_sub(home) & mask;
            for n in 0..dist {
                if late(n, deadline) {
                    return Err(MapError::TimedOut);
                }
                let p = (home + n) & mask;
                let mp = self.meta(p).load(Ordering::Relaxed);
                if state(mp) == EMPTY {
                    return Err(corrupt("an entry stored past an empty bucket of its probe"));
                }
                if state(mp) == FULL && self.same_key(p, b) {
                    return Err(corrupt("a key stored twice"));
                }
            }
            stats.longest_probe = stats.longest_probe.max(dist + 1);
            stats.total_probe += dist + 1;
        }
        for (s, c) in self.counts.iter().enumerate() {
            if Some(&c.load(Ordering::Relaxed)) != per_stripe.get(s) {
                return Err(corrupt("a stripe's count differs from its entries"));
            }
        }
        if self
            .stripes
            .iter()
            .any(|st| st.move_from.load(Ordering::Relaxed) != 0)
        {
            return Err(corrupt("a move record left behind"));
        }
        // Walking backwards from an EMPTY bucket, each bucket's distance
        // to the next EMPTY one.
        let empty =
            (0..self.shape.buckets).find(|&b| state(self.meta(b).load(Ordering::Relaxed)) == EMPTY);
        stats.total_miss_probe = match empty {
            None => self.shape.buckets * self.shape.buckets,
            Some(e) => {
                let mut run = 0;
                let mut total = 0;
                for n in 0..self.shape.buckets {
                    let b = e.wrapping_sub(n) & mask;
                    run = if state(self.meta(b).load(Ordering::Relaxed)) == EMPTY {
                        1
                    } else {
                        run + 1
                    };
                    total += run;
                }
                total
            }
        };
        Ok(stats)
    }

    /// Whether buckets `a` and `b` hold the same key (their tags, and the
    /// words their keys use).
    fn same_key(&self, a: usize, b: usize) -> bool {
        let tag = |x: usize| self.bucket(x).get(1).map(|w| w.load(Ordering::Relaxed));
        let used = |x: usize| match self.shape.key {
            Format::Fixed(_) => self.shape.key_words,
            Format::Bytes(max) => {
                let len = self
                    .key_region(x)
                    .first()
                    .map_or(0, |w| w.load(Ordering::Relaxed));
                1 + (len as usize).min(max).div_ceil(4)
            }
        };
        let n = used(a);
        tag(a) == tag(b)
            && n == used(b)
            && self
                .key_region(a)
                .iter()
                .zip(self.key_region(b))
                .take(n)
                .all(|(x, y)| x.load(Ordering::Relaxed) == y.load(Ordering::Relaxed))
    }
}

/// What [`MapView::check`] found: the map's invariants hold, and these
/// are its numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    /// Entries.
    pub len: usize,
    /// Removed entries whose buckets still count as used by probes.
    pub tombstones: usize,
    /// The longest probe of any present key, in buckets (1: at its home).
    pub longest_probe: usize,
    /// The sum of every present key's probe length (divide by `len` for
    /// the mean).
    pub total_probe: usize,
    /// The sum over every bucket of the probe length of an absent key
    /// whose home it is: the buckets up to and including the first
    /// `EMPTY` (divide by the bucket count for the mean).
    pub total_miss_probe: usize,
}

// ------------------------------------------------------------- Map<K, V>

/// A hash map of `K` to `V` (`Pod` both) as the payload of a segment (kind
/// `map`). Never constructed: it names the [`Object`]; its view is
/// [`MapView`].
#[derive(Debug)]
pub enum Map<K, V> {
    #[doc(hidden)]
    _Never(core::convert::Infallible, PhantomData<fn() -> (K, V)>),
}

/// A map of `K` to `V` in shared memory; see the [module docs](self).
/// Cheap to copy; every method may be called from any thread and process
/// at once.
pub struct MapView<'a, K, V> {
    table: Table<'a>,
    _kv: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for MapView<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for MapView<'_, K, V> {}

impl<K, V> fmt::Debug for MapView<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapView")
            .field("capacity", &self.table.shape.capacity)
            .field("buckets", &self.table.shape.buckets)
            .field("stripes", &self.table.shape.stripes)
            .field("timeout", &self.table.timeout)
            .finish()
    }
}

#[inline]
fn read_pod<V: Pod>(region: &[AtomicU32]) -> Result<V, ValueIssue> {
    let mut v = V::zeroed();
    load_bytes(region, bytemuck::bytes_of_mut(&mut v));
    Ok(v)
}

#[inline]
fn pod_image<T: Pod>(v: &T) -> Image<'_> {
    Image {
        bytes: bytemuck::bytes_of(v),
        prefixed: false,
    }
}

impl<'a, K: Pod, V: Pod> MapView<'a, K, V> {
    /// A view over parts laid out by hand (loom models, tests); `None` if
    /// the shape's formats are not `K` and `V` or the parts' lengths do
    /// not match it.
    #[must_use]
    pub fn from_parts(shape: Shape, parts: Parts<'a>) -> Option<Self> {
        if shape.key != Format::Fixed(size_of::<K>())
            || shape.value != Format::Fixed(size_of::<V>())
        {
            return None;
        }
        Some(MapView {
            table: Table::new(shape, parts)?,
            _kv: PhantomData,
        })
    }

    /// The same view, whose operations give up with
    /// [`MapError::TimedOut`] once `timeout` has passed waiting for a
    /// writer lock (measured from the start of each writing operation; a
    /// read only ever waits in its fallback, and from there). Never early.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.table.timeout = Some(timeout);
        self
    }

    /// The layout.
    #[must_use]
    pub fn shape(&self) -> &Shape {
        &self.table.shape
    }

    /// Entries the map holds at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.table.shape.capacity
    }

    /// Entries now (a snapshot: writers in other stripes may be changing
    /// it). Python's `len(d)`.
    #[doc(alias = "__len__")]
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether [`len`](Self::len) is 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times a writer repaired a stripe after its previous lock
    /// holder died (wrapping).
    #[must_use]
    pub fn repairs(&self) -> u32 {
        self.table.ctl.repairs.load(Ordering::Relaxed)
    }

    /// A copy of the value of `key`. Never waits for a writer, unless one
    /// rewrites this very entry faster than it can be copied
    /// ([`READ_RETRIES`] times); then it reads under the lock.
    ///
    /// # Errors
    /// Only after that fallback: `TimedOut`, `WouldDeadlock`,
    /// `NotRecoverable`; and `Corrupt`.
    #[doc(alias = "__getitem__")]
    #[inline]
    pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        let img = pod_image(key);
        self.table.lookup(img, hash_bytes(img.bytes), read_pod::<V>)
    }

    /// The value of `key`, or `default`: Python's `d.get(k, default)`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn get_or(&self, key: &K, default: V) -> Result<V, MapError> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// Whether `key` is present: Python's `k in d`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    #[doc(alias = "__contains__")]
    pub fn contains_key(&self, key: &K) -> Result<bool, MapError> {
        let img = pod_image(key);
        Ok(self
            .table
            .lookup(img, hash_bytes(img.bytes), |_| Ok(()))?
            .is_some())
    }

    /// Sets `key` to `value`; returns the old value.
    ///
    /// # Errors
    /// `Full` (a new key in a full map; nothing changes), `TimedOut`,
    /// `WouldDeadlock`, `NotRecoverable`, `Corrupt`.
    #[doc(alias = "__setitem__")]
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, MapError> {
        let (k, v) = (pod_image(&key), pod_image(&value));
        let hash = hash_bytes(k.bytes);
        self.table.modify(k, hash, Until::Key, |t, _, mut at| {
            let old = match at.found {
                Some(b) => Some(t.read_locked(b, read_pod::<V>)?),
                None => None,
            };
            t.set_locked(&mut at, &k, tag_of(hash), &v)?;
            Ok(old)
        })
    }

    /// Removes `key`; returns its value. Python's `d.pop(k, None)`.
    ///
    /// # Errors
    /// `TimedOut`, `WouldDeadlock`, `NotRecoverable`, `Corrupt`.
    #[doc(alias = "pop")]
    #[doc(alias = "__delitem__")]
    pub fn remove(&self, key: &K) -> Result<Option<V>, MapError> {
        let k = pod_image(key);
        self.table
            .modify(k, hash_bytes(k.bytes), Until::Empty, |t, held, at| {
                let Some(b) = at.found else {
                    return Ok(None);
                };
                let old = t.read_locked(b, read_pod::<V>)?;
                t.remove_locked(held, b, at.empty);
                Ok(Some(old))
            })
    }

    /// The value of `key`, inserting `default` first if it is absent:
    /// Python's `d.setdefault(k, default)`.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    #[doc(alias = "setdefault")]
    pub fn get_or_insert(&self, key: K, default: V) -> Result<V, MapError> {
        let (k, v) = (pod_image(&key), pod_image(&default));
        let hash = hash_bytes(k.bytes);
        self.table
            .modify(k, hash, Until::Key, |t, _, mut at| match at.found {
                Some(b) => t.read_locked(b, read_pod::<V>),
                None => {
                    t.set_locked(&mut at, &k, tag_of(hash), &v)?;
                    Ok(default)
                }
            })
    }

    /// Changes the value of `key` with `f`, atomically (under the writer
    /// lock: no other writer changes it between the read and the write;
    /// readers see the old value or the new one). `Ok(None)` if `key` is
    /// absent. `f` runs under the lock: keep it short, and do not call
    /// this map's writing methods from it (`WouldDeadlock` or a deadlock).
    ///
    /// # Errors
    /// `TimedOut`, `WouldDeadlock`, `NotRecoverable`, `Corrupt`.
    pub fn update<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Result<Option<R>, MapError> {
        let k = pod_image(key);
        let hash = hash_bytes(k.bytes);
        self.table.modify(k, hash, Until::Key, |t, _, mut at| {
            let Some(b) = at.found else {
                return Ok(None);
            };
            let mut v = t.read_locked(b, read_pod::<V>)?;
            let r = f(&mut v);
            t.set_locked(&mut at, &k, tag_of(hash), &pod_image(&v))?;
            Ok(Some(r))
        })
    }

    /// Like [`update`](Self::update), starting from `default` when `key`
    /// is absent (Python's `d[k] = f(d.get(k, default))`, atomically).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn update_or_insert<R>(
        &self,
        key: K,
        default: V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, MapError> {
        let k = pod_image(&key);
        let hash = hash_bytes(k.bytes);
        self.table.modify(k, hash, Until::Key, |t, _, mut at| {
            let mut v = match at.found {
                Some(b) => t.read_locked(b, read_pod::<V>)?,
                None => default,
            };
            let r = f(&mut v);
            t.set_locked(&mut at, &k, tag_of(hash), &pod_image(&v))?;
            Ok(r)
        })
    }

    /// Removes every entry, atomically: readers see the map before or
    /// after, never half-cleared. Python's `d.clear()`.
    ///
    /// # Errors
    /// `TimedOut`, `WouldDeadlock`, `NotRecoverable`.
    pub fn clear(&self) -> Result<(), MapError> {
        self.table.clear_locked_all(self.table.deadline(), false)
    }

    /// Calls `f` with every entry of a consistent snapshot: it holds every
    /// writer lock meanwhile (readers go on). Python's `d.items()`; the
    /// posix handle collects it into `items()`, `keys()` and `values()`.
    ///
    /// # Errors
    /// `TimedOut`, `WouldDeadlock`, `NotRecoverable`.
    #[doc(alias = "items")]
    pub fn for_each(&self, mut f: impl FnMut(K, V)) -> Result<(), MapError> {
        let t = &self.table;
        t.for_each_locked(|b| {
            let mut k = K::zeroed();
            load_bytes(t.key_region(b), bytemuck::bytes_of_mut(&mut k));
            let v = t.read_locked(b, read_pod::<V>)?;
            f(k, v);
            Ok(())
        })
    }

    /// Checks every invariant of the map under every writer lock (every
    /// key reachable from its home through non-empty buckets, no key twice,
    /// no bucket mid-write, counts right) and returns its numbers. For
    /// tests and diagnostics: it costs a pass over the map.
    ///
    /// # Errors
    /// `Corrupt` naming the broken invariant; `TimedOut`,
    /// `WouldDeadlock`, `NotRecoverable`.
    pub fn check(&self) -> Result<MapStats, MapError> {
        self.table.check()
    }
}

// SAFETY: the view is a `Table` over exactly the `payload_len` bytes the
// shape computes (`Table::at`, whose parts all end within them); every
// access is atomic, every index is masked or range-checked, every length
// read back is compared with its maximum (module docs, "Hostile bytes").
// It writes (locks, buckets), so it needs a writable mapping. `init`
// writes nothing: zero-filled memory is an empty map (epoch 0, locks free,
// buckets EMPTY). `decode(encode(p)) == p` for every valid `p`.
unsafe impl<K: Pod, V: Pod> Object for Map<K, V> {
    const KIND: Kind = Kind::MAP;
    type Params = MapParams;
    type View<'a> = MapView<'a, K, V>;
    type Element = (K, V);

    fn encode(params: &MapParams) -> [u64; 2] {
        params.encode()
    }

    fn decode(recorded: [u64; 2]) -> Result<MapParams, LayoutError> {
        let p = MapParams::decode(recorded, true)?;
        if p != MapParams::of::<K, V>(p.capacity) {
            return Err(LayoutError::new(
                "the recorded key and value sizes are not this map's",
            ));
        }
        Ok(p)
    }

    fn payload_len(params: &MapParams) -> Result<usize, LayoutError> {
        if params.key != Format::Fixed(size_of::<K>())
            || params.value != Format::Fixed(size_of::<V>())
        {
            return Err(LayoutError::new(
                "the parameters are not those of this map's key and value types",
            ));
        }
        Ok(params.shape?.payload_len())
    }

    unsafe fn init(_payload: NonNull<u8>, _params: &MapParams) {}

    #[inline]
    unsafe fn attach<'a>(payload: NonNull<u8>, params: &MapParams) -> MapView<'a, K, V> {
        let shape = params
            .shape
            .expect("attach's contract: payload_len(params) succeeded");
        MapView {
            // SAFETY: forwarded from the caller: `payload_len(params)` =
            // `shape.payload_len()` bytes, aligned, mapped read-write for
            // 'a, accessed only atomically.
            table: unsafe { Table::at(payload, shape) },
            _kv: PhantomData,
        }
    }
}

// --------------------------------------------------------------- ByteMap

/// A hash map of byte strings to byte strings, with maximum key and value
/// lengths fixed at creation, as the payload of a segment (kind
/// `byte-map`): Python's `dict[str] = bytes`. Never constructed: it names
/// the [`Object`]; its view is [`ByteMapView`].
#[derive(Debug)]
pub enum ByteMap {
    #[doc(hidden)]
    _Never(core::convert::Infallible),
}

/// A byte-string map in shared memory; see the [module docs](self). The
/// same engine as [`MapView`], with keys and values as `&[u8]` and values
/// copied into caller buffers (this crate allocates nothing).
#[derive(Clone, Copy)]
pub struct ByteMapView<'a> {
    table: Table<'a>,
}

impl fmt::Debug for ByteMapView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteMapView")
            .field("capacity", &self.table.shape.capacity)
            .field("max_key_len", &self.max_key_len())
            .field("max_value_len", &self.max_value_len())
            .field("timeout", &self.table.timeout)
            .finish()
    }
}

/// One entry of a [`ByteMapView::for_each`] snapshot, read under the
/// writer locks.
#[derive(Clone, Copy)]
pub struct ByteEntry<'t, 'a> {
    table: &'t Table<'a>,
    bucket: usize,
    key_len: usize,
    value_len: usize,
}

impl fmt::Debug for ByteEntry<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteEntry")
            .field("key_len", &self.key_len)
            .field("value_len", &self.value_len)
            .finish()
    }
}

impl ByteEntry<'_, '_> {
    /// The key's length.
    #[must_use]
    pub fn key_len(&self) -> usize {
        self.key_len
    }
    /// The value's length.
    #[must_use]
    pub fn value_len(&self) -> usize {
        self.value_len
    }
    /// Copies the key into `out[..key_len]` (`out` must be that long;
    /// shorter copies a prefix).
    pub fn read_key(&self, out: &mut [u8]) {
        let n = self.key_len.min(out.len());
        load_bytes(self.table.key_bytes_region(self.bucket), &mut out[..n]);
    }
    /// Copies the value into `out[..value_len]` (shorter: a prefix).
    pub fn read_value(&self, out: &mut [u8]) {
        let n = self.value_len.min(out.len());
        let region = self.table.value_region(self.bucket);
        load_bytes(region.get(1..).unwrap_or(&[]), &mut out[..n]);
    }
}

/// Reads a byte-string value region into `out`.
#[inline]
fn read_bytes_into(region: &[AtomicU32], max: usize, out: &mut [u8]) -> Result<usize, ValueIssue> {
    let len = region.first().map_or(0, |w| w.load(Ordering::Relaxed)) as usize;
    if len > max {
        return Err(ValueIssue::Bad);
    }
    let Some(dst) = out.get_mut(..len) else {
        return Err(ValueIssue::TooSmall(len));
    };
    load_bytes(region.get(1..).unwrap_or(&[]), dst);
    Ok(len)
}

fn bytes_image(b: &[u8]) -> Image<'_> {
    Image {
        bytes: b,
        prefixed: true,
    }
}

impl<'a> ByteMapView<'a> {
    /// A view over parts laid out by hand; `None` if the shape is not a
    /// byte map's or the parts' lengths do not match it.
    #[must_use]
    pub fn from_parts(shape: Shape, parts: Parts<'a>) -> Option<Self> {
        if !matches!(
            (shape.key, shape.value),
            (Format::Bytes(_), Format::Bytes(_))
        ) {
            return None;
        }
        Some(ByteMapView {
            table: Table::new(shape, parts)?,
        })
    }

    /// As [`MapView::with_timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.table.timeout = Some(timeout);
        self
    }

    /// The layout.
    #[must_use]
    pub fn shape(&self) -> &Shape {
        &self.table.shape
    }

    /// Entries the map holds at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.table.shape.capacity
    }

    /// The longest key the map takes.
    #[must_use]
    pub fn max_key_len(&self) -> usize {
        self.table.shape.key.bytes()
    }

    /// The longest value the map takes.
    #[must_use]
    pub fn max_value_len(&self) -> usize {
        self.table.shape.value.bytes()
    }

    /// As [`MapView::len`].
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether [`len`](Self::len) is 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As [`MapView::repairs`].
    #[must_use]
    pub fn repairs(&self) -> u32 {
        self.table.ctl.repairs.load(Ordering::Relaxed)
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        let max = self.max_key_len();
        if key.len() > max {
            return Err(MapError::KeyTooLong {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), MapError> {
        let max = self.max_value_len();
        if value.len() > max {
            return Err(MapError::ValueTooLong {
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    /// Copies the value of `key` into `out`; returns its length. As
    /// [`MapView::get`] otherwise. A key longer than the maximum is absent.
    ///
    /// # Errors
    /// `BufferTooSmall` if `out` is shorter than the value (a buffer of
    /// [`max_value_len`](Self::max_value_len) bytes always fits); as
    /// [`MapView::get`].
    pub fn get_into(&self, key: &[u8], out: &mut [u8]) -> Result<Option<usize>, MapError> {
        if key.len() > self.max_key_len() {
            return Ok(None);
        }
        let max = self.max_value_len();
        self.table.lookup(bytes_image(key), hash_bytes(key), |r| {
            read_bytes_into(r, max, out)
        })
    }

    /// The length of the value of `key`, if present.
    ///
    /// # Errors
    /// As [`MapView::get`].
    pub fn value_len(&self, key: &[u8]) -> Result<Option<usize>, MapError> {
        if key.len() > self.max_key_len() {
            return Ok(None);
        }
        let max = self.max_value_len();
        self.table.lookup(bytes_image(key), hash_bytes(key), |r| {
            let len = r.first().map_or(0, |w| w.load(Ordering::Relaxed)) as usize;
            if len > max {
                Err(ValueIssue::Bad)
            } else {
                Ok(len)
            }
        })
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// As [`MapView::get`].
    #[doc(alias = "__contains__")]
    pub fn contains_key(&self, key: &[u8]) -> Result<bool, MapError> {
        Ok(self.value_len(key)?.is_some())
    }

    /// Sets `key` to `value`. If `key` was present, returns the old
    /// value's length, and copies it into `old` when given (a prefix if
    /// `old` is shorter).
    ///
    /// # Errors
    /// `KeyTooLong`, `ValueTooLong`; as [`MapView::insert`].
    #[doc(alias = "__setitem__")]
    pub fn insert(
        &self,
        key: &[u8],
        value: &[u8],
        old: Option<&mut [u8]>,
    ) -> Result<Option<usize>, MapError> {
        self.check_key(key)?;
        self.check_value(value)?;
        let (k, v) = (bytes_image(key), bytes_image(value));
        let hash = hash_bytes(key);
        let max = self.max_value_len();
        self.table.modify(k, hash, Until::Key, |t, _, mut at| {
            let prev = match at.found {
                Some(b) => Some(t.read_locked(b, |r| copy_prefix(r, max, old))?),
                None => None,
            };
            t.set_locked(&mut at, &k, tag_of(hash), &v)?;
            Ok(prev)
        })
    }

    /// Sets `key` to `value` only if it is absent; returns whether it did.
    /// (Python's `d.setdefault(k, v)` without the copy out: read the value
    /// with [`get_into`](Self::get_into).)
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    #[doc(alias = "setdefault")]
    pub fn insert_if_absent(&self, key: &[u8], value: &[u8]) -> Result<bool, MapError> {
        self.check_key(key)?;
        self.check_value(value)?;
        let (k, v) = (bytes_image(key), bytes_image(value));
        let hash = hash_bytes(key);
        self.table.modify(k, hash, Until::Key, |t, _, mut at| {
            if at.found.is_some() {
                return Ok(false);
            }
            t.set_locked(&mut at, &k, tag_of(hash), &v)?;
            Ok(true)
        })
    }

    /// Removes `key`; returns its value's length, copying the value into
    /// `old` when given (a prefix if shorter).
    ///
    /// # Errors
    /// As [`MapView::remove`].
    #[doc(alias = "pop")]
    #[doc(alias = "__delitem__")]
    pub fn remove(&self, key: &[u8], old: Option<&mut [u8]>) -> Result<Option<usize>, MapError> {
        if key.len() > self.max_key_len() {
            return Ok(None);
        }
        let k = bytes_image(key);
        let max = self.max_value_len();
        self.table
            .modify(k, hash_bytes(key), Until::Empty, |t, held, at| {
                let Some(b) = at.found else {
                    return Ok(None);
                };
                let len = t.read_locked(b, |r| copy_prefix(r, max, old))?;
                t.remove_locked(held, b, at.empty);
                Ok(Some(len))
            })
    }

    /// Changes the value of `key` atomically: copies it into `buf`, calls
    /// `f(buf, len)`, which changes `buf` and returns the new length, and
    /// stores `buf[..new_len]`. `buf` must hold the value (a buffer of
    /// [`max_value_len`](Self::max_value_len) bytes always does). With
    /// `default`, an absent key starts as that value; without, the call
    /// returns `Ok(None)`. Returns the new length. `f` runs under the lock,
    /// as in [`MapView::update`].
    ///
    /// # Errors
    /// `BufferTooSmall`; `ValueTooLong` if `f` returns a length beyond
    /// `buf` or the maximum (nothing is stored); as [`insert`](Self::insert).
    pub fn update_in(
        &self,
        key: &[u8],
        default: Option<&[u8]>,
        buf: &mut [u8],
        f: impl FnOnce(&mut [u8], usize) -> usize,
    ) -> Result<Option<usize>, MapError> {
        self.check_key(key)?;
        if let Some(d) = default {
            self.check_value(d)?;
        }
        let k = bytes_image(key);
        let hash = hash_bytes(key);
        let max = self.max_value_len();
        self.table.modify(k, hash, Until::Key, |t, _, mut at| {
            let len = match (at.found, default) {
                (Some(b), _) => t.read_locked(b, |r| read_bytes_into(r, max, buf))?,
                (None, Some(d)) => {
                    let Some(dst) = buf.get_mut(..d.len()) else {
                        return Err(MapError::BufferTooSmall { needed: d.len() });
                    };
                    dst.copy_from_slice(d);
                    d.len()
                }
                (None, None) => return Ok(None),
            };
            let new_len = f(buf, len);
            let Some(value) = buf.get(..new_len).filter(|_| new_len <= max) else {
                return Err(MapError::ValueTooLong { len: new_len, max });
            };
            t.set_locked(&mut at, &k, tag_of(hash), &bytes_image(value))?;
            Ok(Some(new_len))
        })
    }

    /// As [`MapView::clear`].
    ///
    /// # Errors
    /// As [`MapView::clear`].
    pub fn clear(&self) -> Result<(), MapError> {
        self.table.clear_locked_all(self.table.deadline(), false)
    }

    /// Calls `f` with every entry of a consistent snapshot, as
    /// [`MapView::for_each`].
    ///
    /// # Errors
    /// `Corrupt` for a stored length above its maximum; as
    /// [`MapView::for_each`].
    #[doc(alias = "items")]
    pub fn for_each(&self, mut f: impl FnMut(&ByteEntry<'_, 'a>)) -> Result<(), MapError> {
        let t = &self.table;
        let max = self.max_value_len();
        t.for_each_locked(|b| {
            let key_len = t.stored_key_len(b)?;
            let value_len = t
                .value_region(b)
                .first()
                .map_or(0, |w| w.load(Ordering::Relaxed)) as usize;
            if value_len > max {
                return Err(corrupt("a stored value length above the maximum"));
            }
            f(&ByteEntry {
                table: t,
                bucket: b,
                key_len,
                value_len,
            });
            Ok(())
        })
    }

    /// As [`MapView::check`].
    ///
    /// # Errors
    /// As [`MapView::check`].
    pub fn check(&self) -> Result<MapStats, MapError> {
        self.table.check()
    }
}

/// Copies a byte-string value region into a prefix of `out` (if given);
/// returns the value's length.
fn copy_prefix(
    region: &[AtomicU32],
    max: usize,
    out: Option<&mut [u8]>,
) -> Result<usize, ValueIssue> {
    let len = region.first().map_or(0, |w| w.load(Ordering::Relaxed)) as usize;
    if len > max {
        return Err(ValueIssue::Bad);
    }
    if let Some(out) = out {
        let n = len.min(out.len());
        load_bytes(region.get(1..).unwrap_or(&[]), &mut out[..n]);
    }
    Ok(len)
}

// SAFETY: as for `Map<K, V>`.
unsafe impl Object for ByteMap {
    const KIND: Kind = Kind::BYTE_MAP;
    type Params = MapParams;
    type View<'a> = ByteMapView<'a>;
    type Element = ByteMap;

    fn encode(params: &MapParams) -> [u64; 2] {
        params.encode()
    }

    fn decode(recorded: [u64; 2]) -> Result<MapParams, LayoutError> {
        MapParams::decode(recorded, false)
    }

    fn payload_len(params: &MapParams) -> Result<usize, LayoutError> {
        if !matches!(
            (params.key, params.value),
            (Format::Bytes(_), Format::Bytes(_))
        ) {
            return Err(LayoutError::new("the parameters are not a byte map's"));
        }
        Ok(params.shape?.payload_len())
    }

    unsafe fn init(_payload: NonNull<u8>, _params: &MapParams) {}

    #[inline]
    unsafe fn attach<'a>(payload: NonNull<u8>, params: &MapParams) -> ByteMapView<'a> {
        let shape = params
            .shape
            .expect("attach's contract: payload_len(params) succeeded");
        ByteMapView {
            // SAFETY: as for `Map<K, V>`.
            table: unsafe { Table::at(payload, shape) },
        }
    }
}

/// Whether a pass over the table (at step `i` of it) should stop because
/// the call's deadline passed: asked every 4096 steps, so that a scan of a
/// huge table — or a quadratic one over forged probe distances, in
/// `check` — ends by the deadline of a timed view.
fn late(i: usize, deadline: Option<Deadline>) -> bool {
    i % 4096 == 4095 && deadline.is_some_and(|d| d.has_passed())
}

#[cfg(all(test, not(loom)))]
// Under miri the fork, timing and long tests are left out, and some of
// their helpers with them.
#[cfg_attr(miri, allow(dead_code))]
mod tests {
    extern crate std;

    use super::*;
    use core::cell::UnsafeCell;
    use std::boxed::Box;
    use std::collections::HashMap;
    use std::vec;
    use std::vec::Vec;

    /// Zeroed 128-aligned memory of this process.
    #[repr(C, align(128))]
    struct Block(UnsafeCell<[u8; 128]>);

    struct Mem(Box<[Block]>);

    impl Mem {
        fn new(len: usize) -> Mem {
            Mem((0..len.div_ceil(128).max(1))
                .map(|_| Block(UnsafeCell::new([0; 128])))
                .collect())
        }

        fn ptr(&self) -> NonNull<u8> {
            // Every byte sits in an UnsafeCell, so writing through a
            // pointer derived from the shared borrow is allowed.
            NonNull::new(self.0.as_ptr().cast::<u8>().cast_mut()).unwrap()
        }

        fn len(&self) -> usize {
            self.0.len() * 128
        }
    }

    fn pod_view<'m, K: Pod, V: Pod>(ptr: NonNull<u8>, shape: Shape) -> MapView<'m, K, V> {
        assert_eq!(shape.key, Format::Fixed(size_of::<K>()));
        assert_eq!(shape.value, Format::Fixed(size_of::<V>()));
        MapView {
            // SAFETY: every caller passes memory of at least
            // `shape.payload_len()` zeroed (or map-initialised) bytes,
            // 128-aligned, that outlives the view ('m, which callers tie
            // to the memory's owner), accessed only atomically.
            table: unsafe { Table::at(ptr, shape) },
            _kv: PhantomData,
        }
    }

    fn byte_view<'m>(ptr: NonNull<u8>, shape: Shape) -> ByteMapView<'m> {
        ByteMapView {
            // SAFETY: as in `pod_view`.
            table: unsafe { Table::at(ptr, shape) },
        }
    }

    /// A `Map<K, V>` in memory of this process.
    struct Owned<K, V> {
        mem: Mem,
        shape: Shape,
        _kv: PhantomData<fn() -> (K, V)>,
    }

    impl<K: Pod, V: Pod> Owned<K, V> {
        /// The standard layout for `capacity` entries.
        fn new(capacity: usize) -> Self {
            Self::with(MapParams::of::<K, V>(capacity).shape().unwrap())
        }

        /// A custom layout (several stripes in a tiny map).
        fn custom(capacity: usize, buckets: usize, stripes: usize) -> Self {
            let (k, v) = (Format::Fixed(size_of::<K>()), Format::Fixed(size_of::<V>()));
            Self::with(Shape::custom(capacity, buckets, stripes, k, v).unwrap())
        }

        fn with(shape: Shape) -> Self {
            Owned {
                mem: Mem::new(shape.payload_len()),
                shape,
                _kv: PhantomData,
            }
        }

        fn view(&self) -> MapView<'_, K, V> {
            pod_view(self.mem.ptr(), self.shape)
        }
    }

    fn home_of<K: Pod>(shape: &Shape, k: &K) -> usize {
        tag_of(hash_bytes(bytemuck::bytes_of(k))) as usize & (shape.buckets - 1)
    }

    fn contents<K: Pod + Eq + core::hash::Hash, V: Pod>(m: &MapView<'_, K, V>) -> HashMap<K, V> {
        let mut out = HashMap::new();
        m.for_each(|k, v| assert!(out.insert(k, v).is_none(), "a key twice"))
            .unwrap();
        out
    }

    /// A small xorshift generator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn operations_and_python_idioms() {
        let owned_m = Owned::<u64, u64>::new(8);
        let m = owned_m.view();
        assert_eq!(m.capacity(), 8);
        assert_eq!(m.insert(1, 10), Ok(None));
        assert_eq!(m.insert(1, 11), Ok(Some(10)));
        assert_eq!(m.get(&1), Ok(Some(11)));
        assert_eq!(m.get(&2), Ok(None));
        assert_eq!(m.contains_key(&1), Ok(true));
        assert_eq!(m.contains_key(&2), Ok(false));
        assert_eq!(m.get_or(&2, 5), Ok(5));
        assert_eq!(m.get_or_insert(2, 20), Ok(20));
        assert_eq!(m.get_or_insert(2, 21), Ok(20));
        assert_eq!(
            m.update(&1, |v| {
                *v += 1;
                *v * 2
            }),
            Ok(Some(24))
        );
        assert_eq!(m.update(&3, |v| *v += 1), Ok(None));
        assert_eq!(m.update_or_insert(3, 100, |v| *v += 1), Ok(()));
        assert_eq!(m.update_or_insert(3, 100, |v| *v += 1), Ok(()));
        assert_eq!(m.get(&3), Ok(Some(102)));
        assert_eq!(m.len(), 3);
        assert_eq!(m.remove(&1), Ok(Some(12)));
        assert_eq!(m.remove(&1), Ok(None));
        assert_eq!(m.len(), 2);
        assert_eq!(contents(&m), HashMap::from([(2, 20), (3, 102)]));
        assert_eq!(m.check().unwrap().len, 2);
        m.clear().unwrap();
        assert!(m.is_empty());
        assert_eq!(m.get(&2), Ok(None));
        assert_eq!(m.check().unwrap().len, 0);
        assert_eq!(m.repairs(), 0);
        // Zero-sized values make a set.
        let owned_set = Owned::<u32, ()>::new(4);
        let set = owned_set.view();
        set.insert(7, ()).unwrap();
        assert_eq!(set.contains_key(&7), Ok(true));
        assert_eq!(set.contains_key(&8), Ok(false));
    }

    #[test]
    fn a_full_map_is_an_error_and_changes_nothing() {
        let owned_m = Owned::<u32, u32>::new(10);
        let m = owned_m.view();
        for k in 0..10 {
            m.insert(k, k).unwrap();
        }
        let full = MapError::Full { capacity: 10 };
        assert_eq!(m.insert(10, 10), Err(full));
        assert_eq!(m.get_or_insert(10, 10), Err(full));
        assert_eq!(m.update_or_insert(10, 10, |_| ()), Err(full));
        assert_eq!(m.get(&10), Ok(None));
        assert_eq!(m.len(), 10);
        // Existing keys still change.
        assert_eq!(m.insert(3, 33), Ok(Some(3)));
        assert_eq!(m.update(&4, |v| *v = 44), Ok(Some(())));
        assert_eq!(m.remove(&0), Ok(Some(0)));
        assert_eq!(m.insert(10, 10), Ok(None));
        assert_eq!(m.check().unwrap().len, 10);
        assert!(std::format!("{full}").contains("full"));
    }

    #[test]
    fn byte_map_operations() {
        let shape = MapParams::bytes(4, 8, 16).shape().unwrap();
        let mem = Mem::new(shape.payload_len());
        let m = byte_view(mem.ptr(), shape);
        let mut buf = [0u8; 16];
        assert_eq!(m.insert(b"image", b"pixels", None), Ok(None));
        assert_eq!(m.get_into(b"image", &mut buf), Ok(Some(6)));
        assert_eq!(&buf[..6], b"pixels");
        assert_eq!(m.value_len(b"image"), Ok(Some(6)));
        let mut old = [0u8; 16];
        assert_eq!(m.insert(b"image", b"px", Some(&mut old)), Ok(Some(6)));
        assert_eq!(&old[..6], b"pixels");
        assert_eq!(m.get_into(b"image", &mut buf), Ok(Some(2)));
        assert_eq!(&buf[..2], b"px");
        // Limits.
        assert_eq!(
            m.insert(b"123456789", b"", None),
            Err(MapError::KeyTooLong { len: 9, max: 8 })
        );
        assert_eq!(
            m.insert(b"k", &[0; 17], None),
            Err(MapError::ValueTooLong { len: 17, max: 16 })
        );
        assert_eq!(m.get_into(b"123456789", &mut buf), Ok(None));
        m.insert(b"lidar", b"0123456789abcdef", None).unwrap();
        assert_eq!(
            m.get_into(b"lidar", &mut [0; 4]),
            Err(MapError::BufferTooSmall { needed: 16 })
        );
        // Empty key and value.
        m.insert(b"", b"", None).unwrap();
        assert_eq!(m.get_into(b"", &mut buf), Ok(Some(0)));
        assert_eq!(m.len(), 3);
        // Python's setdefault and an atomic append.
        assert_eq!(m.insert_if_absent(b"image", b"zzz"), Ok(false));
        let mut work = [0u8; 16];
        let appended = m.update_in(b"image", None, &mut work, |b, len| {
            b[len..len + 3].copy_from_slice(b"-v2");
            len + 3
        });
        assert_eq!(appended, Ok(Some(5)));
        assert_eq!(m.get_into(b"image", &mut buf), Ok(Some(5)));
        assert_eq!(&buf[..5], b"px-v2");
        assert_eq!(m.update_in(b"none", None, &mut work, |_, l| l), Ok(None));
        assert_eq!(
            m.update_in(b"image", None, &mut work, |_, _| 17),
            Err(MapError::ValueTooLong { len: 17, max: 16 })
        );
        assert_eq!(
            m.update_in(b"anchor", Some(b"a"), &mut work, |_, l| l),
            Ok(Some(1))
        );
        assert_eq!(m.len(), 4);
        assert_eq!(
            m.insert(b"fifth", b"", None),
            Err(MapError::Full { capacity: 4 })
        );
        let mut seen = Vec::new();
        m.for_each(|e| {
            let mut k = vec![0; e.key_len()];
            let mut v = vec![0; e.value_len()];
            e.read_key(&mut k);
            e.read_value(&mut v);
            seen.push((k, v));
        })
        .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (b"".to_vec(), b"".to_vec()),
                (b"anchor".to_vec(), b"a".to_vec()),
                (b"image".to_vec(), b"px-v2".to_vec()),
                (b"lidar".to_vec(), b"0123456789abcdef".to_vec()),
            ]
        );
        assert_eq!(m.remove(b"lidar", Some(&mut old)), Ok(Some(16)));
        assert_eq!(&old, b"0123456789abcdef");
        assert_eq!(m.contains_key(b"lidar"), Ok(false));
        // check() recomputes every stored key's hash from its words.
        assert_eq!(m.check().unwrap().len, 3);
    }

    /// Random operations on tiny maps of several stripes (probes cross
    /// stripes and wrap around the table) against `std::HashMap`.
    #[test]
    fn random_operations_match_std_hashmap() {
        let shapes: [(usize, usize, usize); 4] =
            [(4, 8, 4), (40, 64, 8), (8, 16, 8), (100, 256, 4)];
        let ops = if cfg!(miri) { 300 } else { 20_000 };
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for (cap, buckets, stripes) in shapes {
            let owned_m = Owned::<u16, u32>::custom(cap, buckets, stripes);
            let m = owned_m.view();
            let mut model: HashMap<u16, u32> = HashMap::new();
            let keys = (cap as u64 * 3 / 2).max(4);
            for i in 0..ops {
                let k = rng.below(keys) as u16;
                let v = rng.next() as u32;
                let full = model.len() >= cap && !model.contains_key(&k);
                match rng.below(100) {
                    0..=39 => {
                        let want = if full {
                            Err(MapError::Full { capacity: cap })
                        } else {
                            Ok(model.insert(k, v))
                        };
                        assert_eq!(m.insert(k, v), want, "insert {k}");
                    }
                    40..=64 => assert_eq!(m.remove(&k), Ok(model.remove(&k)), "remove {k}"),
                    65..=79 => assert_eq!(m.get(&k), Ok(model.get(&k).copied()), "get {k}"),
                    80..=89 => {
                        let got = m.update(&k, |x| *x = x.wrapping_add(v));
                        let want = model.get_mut(&k).map(|x| *x = x.wrapping_add(v));
                        assert_eq!(got, Ok(want), "update {k}");
                    }
                    90..=98 => {
                        let want = if full {
                            Err(MapError::Full { capacity: cap })
                        } else {
                            Ok(*model.entry(k).or_insert(v))
                        };
                        assert_eq!(m.get_or_insert(k, v), want, "setdefault {k}");
                    }
                    _ => {
                        if rng.below(20) == 0 {
                            m.clear().unwrap();
                            model.clear();
                        }
                    }
                }
                if i % 97 == 0 {
                    let stats = m.check().unwrap();
                    assert_eq!(stats.len, model.len());
                    assert_eq!(m.len(), model.len());
                    assert_eq!(contents(&m), model);
                }
            }
            assert_eq!(contents(&m), model);
        }
    }

    /// Inserting and removing keys for a long time at full capacity keeps
    /// probes as short as in a fresh table: removes shift entries back and
    /// leave no tombstone. (With tombstones instead, this workload filled
    /// the whole table with them and every miss probed all of it.)
    #[test]
    #[cfg(not(miri))]
    fn churn_at_full_capacity_keeps_probes_short() {
        let owned_m = Owned::<u64, u64>::new(1024);
        let m = owned_m.view();
        let mut rng = Rng(99);
        let mut live: Vec<u64> = Vec::new();
        for _ in 0..1024 {
            let k = rng.next();
            m.insert(k, k).unwrap();
            live.push(k);
        }
        for _ in 0..200_000 {
            let i = rng.below(live.len() as u64) as usize;
            assert_eq!(m.remove(&live[i]), Ok(Some(live[i])));
            let k = rng.next();
            m.insert(k, k).unwrap();
            live[i] = k;
        }
        let s = m.check().unwrap();
        assert_eq!(s.len, 1024);
        let buckets = m.shape().buckets();
        let mean_hit = s.total_probe as f64 / s.len as f64;
        let mean_miss = s.total_miss_probe as f64 / buckets as f64;
        std::eprintln!(
            "after churn: {} tombstones in {buckets} buckets, mean probe {mean_hit:.2} (hit) {mean_miss:.2} (miss), longest {}",
            s.tombstones, s.longest_probe
        );
        // Linear probing at load 1/2 averages 1.5 (hit) and 2.5 (miss).
        assert_eq!(s.tombstones, 0, "{s:?}");
        assert!(mean_hit < 2.0 && mean_miss < 4.0, "{s:?}");
    }

    #[test]
    fn threads_update_counters_exactly() {
        let owned_m = Owned::<u32, u64>::custom(200, 512, 8);
        let m = owned_m.view();
        let n = if cfg!(miri) { 20 } else { 3000 };
        std::thread::scope(|s| {
            for t in 0..4u32 {
                s.spawn(move || {
                    for i in 0..n {
                        m.update_or_insert(i % 16, 0, |v| *v += 1).unwrap();
                        m.insert(1000 + t * 100_000 + i % 40, u64::from(i)).unwrap();
                        let _ = m.get(&(i % 16)).unwrap();
                    }
                });
            }
        });
        let total: u64 = (0..16).map(|k| m.get(&k).unwrap().unwrap()).sum();
        assert_eq!(total, 4 * u64::from(n));
        assert_eq!(m.len(), 16 + 4 * 40.min(n as usize));
        m.check().unwrap();
    }

    #[test]
    fn readers_never_see_torn_values() {
        let owned_m = Owned::<u32, [u32; 8]>::custom(16, 32, 4);
        let m = owned_m.view();
        let n = if cfg!(miri) { 30 } else { 20_000 };
        let done = core::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut seen = 0u32;
                    while !done.load(core::sync::atomic::Ordering::Relaxed) || seen == 0 {
                        for k in 0..3 {
                            if let Some(v) = m.get(&k).unwrap() {
                                assert!(v.iter().all(|&x| x == v[0]), "torn: {v:?}");
                                seen += 1;
                            }
                        }
                    }
                });
            }
            for i in 0..n {
                let k = i % 3;
                m.insert(k, [i; 8]).unwrap();
                if i % 7 == 0 {
                    m.remove(&k).unwrap();
                }
                m.update(&k, |v| *v = [v[0] + 1; 8]).unwrap();
            }
            done.store(true, core::sync::atomic::Ordering::Relaxed);
        });
        m.check().unwrap();
    }

    /// Readers go on while a writer lock is held; writers give up at their
    /// deadline, never before it.
    #[test]
    #[cfg(not(miri))]
    fn readers_do_not_wait_and_timeouts_are_never_early() {
        let owned_m = Owned::<u64, u64>::custom(32, 64, 4);
        let m = owned_m.view();
        let shape = *m.shape();
        // A key, and another whose probe stays in another stripe.
        let stripe = |k: &u64| home_of(&shape, k) >> shape.stripe_shift;
        let k = 1u64;
        let other = (2..)
            .find(|o| stripe(o) != stripe(&k) && (home_of(&shape, o) + 1) % 16 != 0)
            .unwrap();
        m.insert(k, 5).unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                let _g = m.table.stripes[stripe(&k)].lock.lock().unwrap();
                held_tx.send(()).unwrap();
                let _ = go_rx.recv();
            });
            held_rx.recv().unwrap();
            assert_eq!(m.get(&k), Ok(Some(5)), "a reader does not wait");
            let d = Duration::from_millis(30);
            let t = m.with_timeout(d);
            for op in 0..3 {
                let t0 = std::time::Instant::now();
                let r = match op {
                    0 => t.insert(k, 6).map(|_| ()),
                    1 => t.clear(),
                    _ => t.for_each(|_, _| ()),
                };
                assert_eq!(r, Err(MapError::TimedOut), "op {op}");
                assert!(
                    t0.elapsed() >= d,
                    "op {op} gave up early: {:?}",
                    t0.elapsed()
                );
            }
            // Another stripe is free.
            assert_eq!(t.insert(other, 7), Ok(None));
            go_tx.send(()).unwrap();
        });
        assert_eq!(m.insert(k, 6), Ok(Some(5)));
        // A map method inside an update closure of the same stripe.
        assert_eq!(
            m.update(&k, |_| m.insert(k, 1)),
            Ok(Some(Err(MapError::WouldDeadlock)))
        );
        m.check().unwrap();
    }

    /// Garbage over the whole payload: every operation answers (often an
    /// error), within its timeout, and never panics or reads out of bounds.
    #[test]
    #[cfg(not(miri))]
    fn garbage_never_panics_or_hangs() {
        let shape = Shape::custom(12, 32, 4, Format::Fixed(8), Format::Fixed(20)).unwrap();
        let bshape = MapParams::bytes(12, 10, 20).shape().unwrap();
        let mut rng = Rng(0xdead_beef_1234_5678);
        let mut errors = 0;
        let rounds = if std::env::var_os("SHMKIT_LONG_TESTS").is_some() {
            400
        } else {
            60
        };
        for round in 0..rounds {
            for (byte_map, shape) in [(false, shape), (true, bshape)] {
                let mem = Mem::new(shape.payload_len());
                let words = mem.len() / 4;
                let p = mem.ptr().as_ptr().cast::<u32>();
                for i in 0..words {
                    let w = match rng.below(4) {
                        0 => 0,
                        1 => rng.below(64) as u32,
                        _ => rng.next() as u32,
                    };
                    // SAFETY: i < words, inside `mem`; atomic like the map.
                    unsafe { core::sync::atomic::AtomicU32::from_ptr(p.add(i)) }
                        .store(w, core::sync::atomic::Ordering::Relaxed);
                }
                if round % 2 == 1 {
                    // Free locks and an even epoch: the operations get past
                    // them into the garbage buckets.
                    for i in 0..shape.buckets_off / 4 {
                        // SAFETY: as above.
                        unsafe { core::sync::atomic::AtomicU32::from_ptr(p.add(i)) }
                            .store(0, core::sync::atomic::Ordering::Relaxed);
                    }
                }
                let d = Duration::from_millis(20);
                let t0 = std::time::Instant::now();
                let mut results: Vec<bool> = Vec::new();
                if byte_map {
                    let m = byte_view(mem.ptr(), shape).with_timeout(d);
                    let mut buf = [0u8; 20];
                    for k in 0..6u8 {
                        let key = [k; 3];
                        results.push(m.get_into(&key, &mut buf).is_ok());
                        results.push(m.insert(&key, &[k; 5], Some(&mut buf)).is_ok());
                        results.push(m.update_in(&key, Some(b"x"), &mut buf, |_, l| l).is_ok());
                        results.push(m.remove(&key, None).is_ok());
                    }
                    results.push(m.for_each(|e| e.read_value(&mut buf)).is_ok());
                    results.push(m.check().is_ok());
                    let _ = m.len();
                    results.push(m.clear().is_ok());
                } else {
                    let m = pod_view::<u64, [u8; 20]>(mem.ptr(), shape).with_timeout(d);
                    for k in 0..6u64 {
                        results.push(m.get(&k).is_ok());
                        results.push(m.insert(k, [1; 20]).is_ok());
                        results.push(m.update_or_insert(k, [2; 20], |v| v[0] += 1).is_ok());
                        results.push(m.remove(&k).is_ok());
                    }
                    results.push(m.for_each(|_, _| ()).is_ok());
                    results.push(m.check().is_ok());
                    let _ = m.len();
                    results.push(m.clear().is_ok());
                }
                errors += results.iter().filter(|ok| !**ok).count();
                // 28 operations, each bounded by the 20 ms timeout (and a
                // dead owner's take-over costs at most one liveness slice
                // inside it): generous, only a hang fails.
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "round {round}: {:?}",
                    t0.elapsed()
                );
            }
        }
        assert!(errors > 0, "garbage was never reported");
    }

    #[test]
    fn params_round_trip_and_garbage_is_refused() {
        let p = MapParams::of::<u64, u32>(100);
        assert_eq!(Map::<u64, u32>::decode(Map::<u64, u32>::encode(&p)), Ok(p));
        assert_eq!(
            Map::<u64, u32>::payload_len(&p),
            Ok(p.shape().unwrap().payload_len())
        );
        assert!(Map::<u32, u32>::decode(Map::<u64, u32>::encode(&p)).is_err());
        assert!(Map::<u64, u32>::decode([0, (8 << 32) | 4]).is_err());
        assert!(Map::<u64, u32>::decode([u64::MAX, (8 << 32) | 4]).is_err());
        let b = MapParams::bytes(10, 32, 4096);
        assert_eq!(ByteMap::decode(ByteMap::encode(&b)), Ok(b));
        assert!(ByteMap::decode([10, u64::MAX]).is_err());
        assert!(ByteMap::payload_len(&p).is_err());
        assert!(Map::<u64, u32>::payload_len(&b).is_err());
        assert!(MapParams::of::<u8, u8>(0).shape().is_err());
        assert!(MapParams::of::<u8, u8>(MAX_CAPACITY + 1).shape().is_err());
        let s = MapParams::of::<u8, u8>(MAX_CAPACITY).shape().unwrap();
        assert_eq!(s.buckets(), 1 << 31);
        for (cap, buckets, stripes) in [
            (4, 4, 1),
            (1, 3, 1),
            (1, 4, 3),
            (1, 128, 128),
            (0, 4, 1),
            (1, 1, 1),
        ] {
            assert!(
                Shape::custom(cap, buckets, stripes, Format::Fixed(1), Format::Fixed(1)).is_err(),
                "{cap} {buckets} {stripes}"
            );
        }
        // The standard layout: half full at capacity, 64+ buckets a stripe.
        let s = MapParams::of::<u64, u64>(1000).shape().unwrap();
        assert_eq!((s.buckets(), s.stripes(), s.bucket_bytes()), (2048, 32, 32));
        assert_eq!(
            std::format!("{p:?}"),
            "capacity 100, 8-byte keys, 4-byte values"
        );
    }

    // ------------------------------------------------------------ crashes

    static DIE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

    /// The crash hook: a forked child that set `DIE` kills itself there.
    pub(super) fn die_at(at: u32) {
        if DIE.load(core::sync::atomic::Ordering::Relaxed) == at {
            // SAFETY: raise has no preconditions; SIGKILL ends this
            // (forked, single-threaded) process at this instruction.
            unsafe { libc::raise(libc::SIGKILL) };
        }
    }

    /// `len` bytes of `MAP_SHARED` anonymous memory, shared with children
    /// forked later.
    struct Shm {
        ptr: NonNull<u8>,
        len: usize,
    }

    impl Shm {
        fn new(len: usize) -> Shm {
            // SAFETY: a fresh anonymous mapping; no pointer is passed in.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            Shm {
                ptr: NonNull::new(p.cast()).unwrap(),
                len,
            }
        }
    }

    impl Drop for Shm {
        fn drop(&mut self) {
            // SAFETY: our own mapping, unmapped once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }

    /// Runs `f` in a forked child that dies at crash point `point`;
    /// returns whether it died there (SIGKILL) rather than finishing.
    fn die_in_child(point: u32, f: impl FnOnce()) -> bool {
        // SAFETY: the child runs only map operations (atomics, futex and
        // raw syscalls, no allocation) and then `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            DIE.store(point, core::sync::atomic::Ordering::Relaxed);
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
            // SAFETY: ends the child without the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) };
        }
        let mut status = 0;
        // SAFETY: our child; `status` is a valid out-pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {}
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL
    }

    type V4 = [u64; 4];

    /// Keys whose homes are `h` and `h` again, and nothing else near.
    fn two_keys_at_one_home(shape: &Shape) -> (u64, u64) {
        let mut by_home: HashMap<usize, u64> = HashMap::new();
        for k in 1000u64.. {
            let h = home_of(shape, &k);
            if h % 8 > 4 {
                continue; // keep h..h+2 inside one 8-bucket stripe
            }
            if let Some(&first) = by_home.get(&h) {
                return (first, k);
            }
            by_home.insert(h, k);
        }
        unreachable!()
    }

    /// A writer killed at every crash point: readers see the state before
    /// or after the operation (never a torn value), and the next locker
    /// repairs the map to exactly that state.
    #[test]
    #[cfg(not(miri))]
    fn a_writer_killed_at_any_point_is_repaired() {
        use crash::*;
        for point in 1..=LAST {
            let shape = Shape::custom(16, 32, 4, Format::Fixed(8), Format::Fixed(32)).unwrap();
            let shm = Shm::new(shape.payload_len());
            let m = pod_view::<u64, V4>(shm.ptr, shape);
            let (a, b) = two_keys_at_one_home(&shape);
            let mut before: HashMap<u64, V4> = HashMap::new();
            // `a` at its home, `b` (same home) right after it, then an
            // empty bucket: removing `a` moves `b` back and empties b's
            // old bucket.
            for k in [1u64, 2, 3, a, b] {
                m.insert(k, [k; 4]).unwrap();
                before.insert(k, [k; 4]);
            }
            let mut after = before.clone();
            let op: &dyn Fn() = match point {
                INSERT_WRITING | INSERT_KEY | INSERT_COMMITTED => {
                    after.insert(77, [77; 4]);
                    &|| {
                        let _ = m.insert(77, [77; 4]);
                    }
                }
                UPDATE_RECORD | UPDATE_WRITING | UPDATE_HALF | UPDATE_COMMITTED | REPAIR_HALF => {
                    after.insert(2, [9; 4]);
                    &|| {
                        let _ = m.insert(2, [9; 4]);
                    }
                }
                REMOVE_TOMBSTONE | REMOVE_PURGE | MOVE_RECORD | MOVE_COPIED | MOVE_DONE => {
                    after.remove(&a);
                    &|| {
                        let _ = m.remove(&a);
                    }
                }
                _ => {
                    after.clear();
                    &|| {
                        let _ = m.clear();
                    }
                }
            };
            let first = if point == REPAIR_HALF {
                UPDATE_HALF
            } else {
                point
            };
            assert!(
                die_in_child(first, op),
                "point {point}: the child did not die there"
            );
            if point == REPAIR_HALF {
                // The repairer dies half-way through its repair.
                assert!(
                    die_in_child(REPAIR_HALF, || {
                        let _ = m.check();
                    }),
                    "the repairer did not die"
                );
            }
            let expected = match point {
                INSERT_COMMITTED | UPDATE_COMMITTED | REMOVE_TOMBSTONE | REMOVE_PURGE => &after,
                MOVE_RECORD | MOVE_COPIED | MOVE_DONE => &after,
                CLEAR_EPOCH | CLEAR_HALF | CLEAR_COUNTS => &after,
                _ => &before,
            };
            // Readers, before anyone repairs: the committed state.
            for k in [1u64, 2, 3, a, b, 77] {
                assert_eq!(
                    m.get(&k),
                    Ok(expected.get(&k).copied()),
                    "point {point}, key {k}"
                );
            }
            // The next locker repairs; the map is exactly that state.
            let repairs = m.repairs();
            let stats = m.check().unwrap_or_else(|e| panic!("point {point}: {e}"));
            assert!(m.repairs() > repairs, "point {point}: no repair");
            assert_eq!(stats.len, expected.len(), "point {point}");
            assert_eq!(&contents(&m), expected, "point {point}");
            assert_eq!(m.len(), expected.len(), "point {point}");
            // And works on.
            m.insert(5, [5; 4]).unwrap();
            m.check().unwrap();
        }
    }

    /// The same for a byte map's update (the record holds a length).
    #[test]
    #[cfg(not(miri))]
    fn a_byte_map_writer_killed_mid_update_is_undone() {
        let shape = MapParams::bytes(8, 8, 64).shape().unwrap();
        let shm = Shm::new(shape.payload_len());
        let m = byte_view(shm.ptr, shape);
        m.insert(b"k", b"short", None).unwrap();
        assert!(die_in_child(crash::UPDATE_HALF, || {
            let _ = m.insert(b"k", &[7; 64], None);
        }));
        let mut buf = [0u8; 64];
        assert_eq!(m.get_into(b"k", &mut buf), Ok(Some(5)));
        assert_eq!(&buf[..5], b"short");
        m.check().unwrap();
        assert_eq!(m.get_into(b"k", &mut buf), Ok(Some(5)));
        assert_eq!(&buf[..5], b"short");
        assert!(m.repairs() > 0);
    }
}
