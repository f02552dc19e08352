//! `Queue<T>`: a bounded multi-producer multi-consumer queue of `T: Pod`
//! in shared memory, at the cost of Dmitry Vyukov's bounded queue, that
//! survives processes killed at any instruction.
//!
//! Only on targets with 64-bit atomics (stamps are 64-bit words).
//!
//! # Design
//! Vyukov's queue claims a position with a CAS on a shared counter and
//! publishes it with a plain store of the slot's sequence number: one
//! locked instruction and one store per side, two cache lines per message
//! (the counter, the slot). It is not crash-safe: a producer killed
//! between its counter CAS and its sequence store leaves a position that
//! is claimed by nobody anyone can name, and every consumer waits for it
//! forever.
//!
//! Here the claim is a CAS on **the slot's stamp itself**, and the stamp
//! records who claimed: `EMPTY(lap) → CLAIMED(lap, producer)`. A claim
//! left behind by a dead producer therefore names its claimer, and a
//! consumer that finds that claimer dead skips the position. Everything
//! else follows from putting the claim in the slot:
//!
//! - **`tail` and `head` are hints**, advanced with plain stores: the
//!   stamps alone say which positions are taken. A hint may lag (or move
//!   back a little when two stores cross); a handle that reads a stale
//!   hint finds a stamp of a later lap, jumps forward by what that stamp
//!   says, and retries. No locked instruction touches a hint.
//! - **Commit and release are plain stores**: nobody but the claimer may
//!   touch a `CLAIMED` slot until its claimer is verified dead, so the
//!   commit `CLAIMED → FULL` needs no CAS.
//! - **A pop is one CAS**: the consumer copies the value out of a `FULL`
//!   slot speculatively, then CASes `FULL(lap) → EMPTY(lap + 1)`. The CAS
//!   is the delivery: the message belongs to the one consumer whose CAS
//!   succeeds (a loser discards its copy). A consumer killed before its
//!   CAS took nothing; after it, it took that one message with it. No
//!   consumer state is ever left in a slot, so consumers never need
//!   recovering.
//! - **The dead-claimer check is on the slow path only**: a consumer
//!   that finds the next position `CLAIMED` treats it as not yet ready;
//!   only once per sleep slice of a blocked pop (and every
//!   [`LIVENESS_POLL_EVERY`](super::LIVENESS_POLL_EVERY) consecutive empty
//!   `try_pop`s) does it ask whether the claimer lives.
//! - **The empty check reads only the stamp** (no `tail`), and the full
//!   check only the stamp of the previous lap, plus one load of the other
//!   role's presence count (a word written only at attach and detach): a
//!   polling consumer never steals a line a producer writes, except the
//!   slot itself. A failing `try_` call stays inline and costs about what
//!   a successful one does; liveness syscalls (is the claimer at my
//!   position dead? is every producer?) wait for a sleep slice of a
//!   blocked call, or [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL) of
//!   busy polling.
//! - **A mask, not a modulo**: the capacity is a power of two, and a
//!   stamp stores the position's *lap* (`position >> log2(capacity)`), so
//!   an all-zero segment is a valid empty queue (`EMPTY(0)` everywhere).
//! - Stamp and value share the slot (16 bytes for a `u64`), so a message
//!   moves one cache line between the cores, like Vyukov's.
//!
//! # Stamps
//! `stamp = lap << 14 | who << 2 | state`, laps modulo 2⁵⁰:
//!
//! | state | meaning | set by |
//! |---|---|---|
//! | `EMPTY(lap)` | free for the producer of position `lap·cap + i` | zero-fill (lap 0); the consumer of the previous lap (CAS, the delivery); a consumer or attaching producer skipping a dead claim (CAS) |
//! | `CLAIMED(lap, who)` | producer `who` (registry index) is writing the value | that producer (CAS from `EMPTY(lap)`: the **claim**) |
//! | `FULL(lap)` | holds the committed message | the claimer (plain store: the **commit**) |
//!
//! Transitions of slot `i`, position `p = lap·cap + i`:
//! `EMPTY(lap) → CLAIMED(lap, w)` (claim) `→ FULL(lap)` (commit)
//! `→ EMPTY(lap + 1)` (delivery); or `CLAIMED(lap, w) → EMPTY(lap + 1)`
//! (skip, by a consumer at `p` that found `w` dead). A producer that takes
//! over the registry entry `w` of a dead holder re-marks that holder's
//! claims `CLAIMED(lap, w) → CLAIMED(lap, ORPHAN)` instead of skipping
//! them itself: skips, like deliveries, happen in position order, which
//! is what lets a handle with a stale position trust a later lap's
//! `EMPTY` as "everything before was delivered".
//!
//! # Invariants (honest peers)
//! - Claims are **dense**: a producer passes position `t` only after
//!   seeing it claimed, and reports `Full` at the first position whose
//!   slot still holds the previous lap; so the claimed positions are
//!   always a prefix `0..F`. The tail hint is at most `F`.
//! - Consumption is **in position order**: a consumer passes `h` only
//!   after seeing it delivered or skipped, and reports `Empty` at the
//!   first position not yet committed. The head hint is at most the first
//!   undelivered position.
//! - So a handle at position `t` (or `h`) sees in its slot the lap of `t`,
//!   the lap before (the queue is full at `t`), or a later lap (its hint
//!   is stale); anything else is impossible and, if it persists, reported
//!   as `Corrupt`.
//!
//! # Orderings
//! - SYNC POINT MPMC-1: the producer's value stores, then its commit
//!   store `FULL` (Release), pair with the consumer's stamp load (Acquire)
//!   that sees `FULL`, then its value loads.
//! - SYNC POINT MPMC-2: the consumer's value loads, then its delivery CAS
//!   (Release), pair with the next lap's claim CAS (Acquire) that reads
//!   the `EMPTY` it wrote, then that producer's value stores: a value is
//!   never overwritten while its consumer still reads it.
//! - SYNC POINT MPMC-3: every stamp write is a Release and every stamp
//!   or hint load an Acquire, and each handle stores its hint (Release)
//!   after the stamp write it advertises. A handle deduces where the
//!   frontier is from what it reads (a hint, a later lap in one slot);
//!   with these pairs everything the writer had seen is visible to it, so
//!   the other slots never show it a lap older than the deduction allows
//!   (which would read as an impossible state). On x86_64 all of these
//!   are plain loads and stores (the CASes are locked either way); the
//!   loom models fail with Relaxed hints or stamp loads.
//!
//! The loom models also fail with a Relaxed commit (MPMC-1: a consumer
//! reads a stale value). They cannot fail a Relaxed delivery CAS
//! (MPMC-2): what it prevents is *load buffering* (the consumer's value
//! loads reading the next lap's stores, which the memory model allows
//! without the Release/Acquire pair), and loom does not model reads from
//! later stores. The index ring's models do catch the same mistake on its
//! side (see `ring::Shadow`).
//!
//! # Guarantees
//! - A message is committed by its producer's `FULL` store and delivered
//!   exactly once, to the consumer whose delivery CAS succeeds. A producer
//!   killed before its commit sent nothing: its claim is skipped by a
//!   consumer (within one [`WAIT_SLICE`](super::WAIT_SLICE) of a blocked
//!   pop; at once if the producer that takes over its registry entry
//!   marked it [`ORPHAN`] first). A
//!   consumer killed after its delivery CAS took that message with it; a
//!   consumer killed before it took nothing.
//! - FIFO in position order: each producer's messages are delivered in
//!   the order it pushed them.
//! - Up to `producers` producer and `consumers` consumer handles may be
//!   attached at once ([`AttachError::Full`] beyond); entries of dead
//!   holders are reused.
//! - Disconnect: consumers get `Disconnected` when the queue is empty and
//!   every producer that ever attached is gone (dropped or dead); producers
//!   get `Disconnected` when it is full and every consumer is gone. A drop
//!   is seen at once (the presence count); a death on the slow path (the
//!   registry's liveness check).
//! - Hostile bytes: slot indices are masked; stamps and hints are only
//!   compared, never used as indices; every loop is bounded by an
//!   iteration budget. A peer writing garbage gives `Corrupt`,
//!   `Full`/`Empty` or garbage values, never an out-of-bounds access, a
//!   data race or a hang.
//!
//! # What the skip relies on
//! The commit is a plain store, so a claimer wrongly judged dead would
//! overwrite the slot after its skip. Liveness is exact (see
//! [`super::roles`]), and a registry entry names one *process*: a
//! producer handle inherited across `fork` registers itself anew in the
//! child on its first push (the parent's entry keeps naming the parent),
//! and a producer that takes over an entry of a dead holder first marks
//! every claim still recorded under that entry [`ORPHAN`].
//!
//! ```
//! use shmkit_core::queue::mpmc::{Queue, QueueControl};
//! use shmkit_core::queue::roles::RoleSlot;
//! use shmkit_core::primitive::AtomicU64;
//!
//! let control = QueueControl::new();
//! let producers = [RoleSlot::new(), RoleSlot::new()];
//! let consumers = [RoleSlot::new()];
//! // 4 slots of a u64: a stamp word and a value word each.
//! let words: [AtomicU64; 8] = Default::default();
//! let q = Queue::<u64>::from_parts(&control, &producers, &consumers, &words)?;
//! let (mut a, mut b, mut rx) = (q.producer()?, q.producer()?, q.consumer()?);
//! a.try_push(1).unwrap();
//! b.try_push(2).unwrap();
//! assert_eq!(rx.try_pop(), Ok(1));
//! assert_eq!(rx.try_pop(), Ok(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::roles::{self, AttachError, RoleSlot};
use super::slots::{self, SlotLayout};
use super::{
    asym, CachePadded, Idle, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError, WaitPoint,
};
use crate::header::{Kind, PAYLOAD_ALIGN};
use crate::object::{LayoutError, Object};
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{AdaptiveSpin, Deadline};

/// Stamp state: free for the producer of this lap.
pub const EMPTY: u64 = 0;
/// Stamp state: a producer claimed the position and is writing it.
pub const CLAIMED: u64 = 1;
/// Stamp state: holds the committed message of this lap.
pub const FULL: u64 = 2;

const STATE_BITS: u32 = 2;
const WHO_BITS: u32 = 12;
const LAP_SHIFT: u32 = STATE_BITS + WHO_BITS;
/// Laps are counted modulo 2^`LAP_BITS`.
pub const LAP_BITS: u32 = 64 - LAP_SHIFT;
const LAP_MASK: u64 = (1 << LAP_BITS) - 1;
/// Half the lap space: a lap less than this far ahead of another is
/// "later", anything else "earlier".
const LAP_HALF: u64 = 1 << (LAP_BITS - 1);
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const WHO_MASK: u64 = (1 << WHO_BITS) - 1;

/// Largest capacity (slots).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Largest number of producers or consumers a registry may hold (a
/// claimer's index fits in the stamp's 12 `who` bits, [`ORPHAN`] aside).
pub const MAX_REGISTRY: usize = (1 << WHO_BITS) - 1;
/// The `who` of a claim whose claimer is known to be dead: a producer
/// that takes over a dead holder's registry entry re-marks that holder's
/// claims with it, and consumers skip such a claim when they reach it
/// (in position order) without asking anyone's liveness.
pub const ORPHAN: u64 = WHO_MASK;
/// Registry size per role of [`QueueParams::new`].
pub const DEFAULT_REGISTRY: usize = 32;

/// Tag in the header's second parameter word: this stamped-slot layout.
/// A segment written by an older shmkit (stamps apart from the values)
/// lacks it and is refused instead of misread.
const LAYOUT_TAG: u64 = 1 << 63;

/// A stamp word: `lap` (modulo 2⁵⁰), claimer index `who` (12 bits),
/// `state`.
#[inline(always)]
#[must_use]
pub const fn stamp(lap: u64, who: u64, state: u64) -> u64 {
    (lap & LAP_MASK) << LAP_SHIFT | (who & WHO_MASK) << STATE_BITS | (state & STATE_MASK)
}

/// The `(lap, who, state)` of a stamp word.
#[inline(always)]
#[must_use]
pub const fn decode(stamp: u64) -> (u64, u64, u64) {
    (
        stamp >> LAP_SHIFT,
        (stamp >> STATE_BITS) & WHO_MASK,
        stamp & STATE_MASK,
    )
}

/// How far lap `a` is ahead of lap `b`, modulo 2⁵⁰.
#[inline(always)]
fn laps_ahead(a: u64, b: u64) -> u64 {
    a.wrapping_sub(b) & LAP_MASK
}

/// What fixes a queue's size: its capacity and its registry sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueParams {
    /// Slots: a power of two in `1..=MAX_CAPACITY`.
    pub capacity: usize,
    /// Producer handles that may be attached at once (`1..=MAX_REGISTRY`).
    pub producers: usize,
    /// Consumer handles that may be attached at once (`1..=MAX_REGISTRY`).
    pub consumers: usize,
}

impl QueueParams {
    /// `capacity` slots, [`DEFAULT_REGISTRY`] producers and consumers.
    #[must_use]
    pub const fn new(capacity: usize) -> QueueParams {
        QueueParams {
            capacity,
            producers: DEFAULT_REGISTRY,
            consumers: DEFAULT_REGISTRY,
        }
    }

    /// These parameters with other registry sizes.
    #[must_use]
    pub const fn with_registry(self, producers: usize, consumers: usize) -> QueueParams {
        QueueParams {
            producers,
            consumers,
            ..self
        }
    }

    /// The two header parameter words that record these parameters.
    #[must_use]
    pub fn encode(&self) -> [u64; 2] {
        [
            self.capacity as u64,
            LAYOUT_TAG | (self.producers as u64) << 32 | self.consumers as u64,
        ]
    }

    /// The parameters recorded in a header's parameter words (which
    /// nobody vouches for), checked.
    ///
    /// # Errors
    /// Words of an older layout, or impossible parameters.
    pub fn decode(words: [u64; 2]) -> Result<QueueParams, LayoutError> {
        let [capacity, roles] = words;
        if roles & LAYOUT_TAG == 0 {
            return Err(LayoutError::new(
                "this queue was made by an older shmkit with another layout; recreate it",
            ));
        }
        let roles = roles & !LAYOUT_TAG;
        let p = QueueParams {
            capacity: usize::try_from(capacity)
                .map_err(|_| LayoutError::new("the queue capacity does not fit in memory"))?,
            producers: (roles >> 32) as usize,
            consumers: (roles & 0xffff_ffff) as usize,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks the ranges; the one place they are checked.
    ///
    /// # Errors
    /// A capacity that is not a power of two in `1..=MAX_CAPACITY`, or a
    /// registry size outside `1..=MAX_REGISTRY`.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if !self.capacity.is_power_of_two() || self.capacity > MAX_CAPACITY {
            return Err(LayoutError::new(
                "queue capacity must be a power of two in 1..=2^31",
            ));
        }
        if !(1..=MAX_REGISTRY).contains(&self.producers)
            || !(1..=MAX_REGISTRY).contains(&self.consumers)
        {
            return Err(LayoutError::new(
                "a queue registers 1..=4095 producers and 1..=4095 consumers",
            ));
        }
        Ok(())
    }
}

/// Where the parts of a queue sit in its payload (byte offsets), for
/// [`Object::attach`] and for readers such as `shmkit inspect` that know
/// the element only by its size and alignment.
///
/// | part | at | size |
/// |---|---|---|
/// | [`QueueControl`] | 0 | 512 |
/// | producer registry | `producers_at` | 16 × producers, padded to 128 |
/// | consumer registry | `consumers_at` | 16 × consumers, padded to 128 |
/// | slots | `slots_at` | `capacity` × [`SlotLayout::stride_bytes`] |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// The parameters.
    pub params: QueueParams,
    /// The slot layout of the element.
    pub slot: SlotLayout,
    /// Offset of the producers' [`RoleSlot`]s.
    pub producers_at: usize,
    /// Offset of the consumers' [`RoleSlot`]s.
    pub consumers_at: usize,
    /// Offset of slot 0's stamp.
    pub slots_at: usize,
    /// Payload length.
    pub len: usize,
}

const CONTROL_LEN: usize = core::mem::size_of::<QueueControl>();
const ROLE_LEN: usize = 24;

impl QueueLayout {
    /// The layout of a queue with `params` of elements of `size` bytes
    /// aligned to `align`.
    ///
    /// # Errors
    /// Impossible parameters or element, or a payload too large for
    /// memory.
    pub fn new(
        params: &QueueParams,
        size: usize,
        align: usize,
    ) -> Result<QueueLayout, LayoutError> {
        params.validate()?;
        let slot = SlotLayout::for_element(size, align)?;
        let too_large = LayoutError::new("the queue does not fit in memory");
        let producers_at = CONTROL_LEN;
        let consumers_at = producers_at + (ROLE_LEN * params.producers).next_multiple_of(128);
        let slots_at = (consumers_at + (ROLE_LEN * params.consumers).next_multiple_of(128))
            .next_multiple_of(align.max(PAYLOAD_ALIGN));
        let len = params
            .capacity
            .checked_mul(slot.stride_bytes())
            .and_then(|b| b.checked_add(slots_at))
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or(too_large)?;
        Ok(QueueLayout {
            params: *params,
            slot,
            producers_at,
            consumers_at,
            slots_at,
            len,
        })
    }

    /// Byte offset of slot `i`'s stamp (`i < capacity`).
    #[must_use]
    pub fn stamp_at(&self, i: usize) -> usize {
        self.slots_at + i * self.slot.stride_bytes()
    }
}

/// The shared control block of a [`Queue`]. All-zero is a fresh queue.
///
/// | field | written by | read by |
/// |---|---|---|
/// | `tail` | producers, after a claim (plain store: a hint) | producers, `len` |
/// | `head` | consumers, after a delivery (plain store: a hint) | consumers, `len` |
/// | `data_ready` | producers wake | consumers sleep |
/// | `space_ready` | consumers wake | producers sleep |
/// | `present` | attach and detach | the other role, on every empty (full) `try_` call |
///
/// `present[r]` counts the handles of role `r` (producers, consumers)
/// attached and not dropped, with [`EVER_ATTACHED`] set once one was: the
/// cheap half of "every producer (consumer) is gone", one load of a line
/// written only at attach and detach. A handle of a process that died is
/// never subtracted; the registry's liveness check, on the slow path,
/// finds those. A hostile value only makes the queue look disconnected or
/// not.
#[derive(Debug, Default)]
#[repr(C)]
pub struct QueueControl {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    pub(crate) data_ready: CachePadded<WaitPoint>,
    pub(crate) space_ready: CachePadded<WaitPoint>,
    present: CachePadded<[AtomicU32; 2]>,
}

pub use super::{CLOSED, EVER_ATTACHED};
const PRODUCERS: usize = super::PRODUCER;
const CONSUMERS: usize = super::CONSUMER;

#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<QueueControl>(), 5 * 128);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<RoleSlot>(), ROLE_LEN);

impl QueueControl {
    /// A fresh control block (all zero, like a zero-filled segment).
    #[must_use]
    pub fn new() -> QueueControl {
        QueueControl {
            tail: CachePadded(AtomicU64::new(0)),
            head: CachePadded(AtomicU64::new(0)),
            data_ready: CachePadded(WaitPoint::new()),
            space_ready: CachePadded(WaitPoint::new()),
            present: CachePadded([AtomicU32::new(0), AtomicU32::new(0)]),
        }
    }

    /// Counts one more attached handle of `role`, unless the role is
    /// closed ([`CLOSED`]): then the caller gives its entry back.
    fn arrive(&self, role: usize) -> Result<(), AttachError> {
        // AcqRel (both RMWs): ordered with the detaches' Release and the
        // readers' Acquire; the count first, so a reader never sees the
        // flag with a count of zero for a handle that is arriving.
        let v = self.present.0[role].fetch_add(1, Ordering::AcqRel);
        if v & CLOSED != 0 {
            self.present.0[role].fetch_sub(1, Ordering::AcqRel);
            return Err(AttachError::Closed);
        }
        self.present.0[role].fetch_or(EVER_ATTACHED, Ordering::AcqRel);
        Ok(())
    }

    /// Detaches a handle that recorded `presence` in entry `slot` of
    /// `role` (see [`roles`]): the last `fork` copy leaves
    /// the count, once. `true` if it detached.
    fn detach_presence(&self, role: usize, slot: &RoleSlot, presence: u32) -> bool {
        let w = slot.holder_word();
        if !slot.begin_detach(presence, w) {
            return false;
        }
        self.leave(role);
        slot.finish_detach(w);
        true
    }

    /// Closes `role` for good ([`CLOSED`]).
    #[cold]
    fn close(&self, role: usize) {
        // Release (in the AcqRel): pairs with `arrive` and the readers'
        // Acquire.
        self.present.0[role].fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Whether `role` is closed (one load).
    fn closed(&self, role: usize) -> bool {
        self.present.0[role].load(Ordering::Acquire) & CLOSED != 0
    }

    /// Counts one attached handle of `role` less.
    fn leave(&self, role: usize) {
        // Release (in the AcqRel): the leaving handle's last commit or
        // delivery happens before a reader's Acquire load that sees the
        // count drop.
        self.present.0[role].fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether handles of `role` attached once and every one detached
    /// (no syscall; a dead holder still counts as present).
    #[inline]
    fn all_left(&self, role: usize) -> bool {
        // Acquire: pairs with `leave` and `close`.
        super::left_or_closed(self.present.0[role].load(Ordering::Acquire))
    }

    /// The raw position hints `(head, tail)`, for diagnostics and tests.
    #[must_use]
    pub fn raw_positions(&self) -> (&AtomicU64, &AtomicU64) {
        (&self.head.0, &self.tail.0)
    }
}

/// A view of an MPMC queue. Cheap to copy; attach with
/// [`producer`](Queue::producer) / [`consumer`](Queue::consumer).
pub struct Queue<'a, T> {
    pub(crate) ctl: &'a QueueControl,
    producers: &'a [RoleSlot],
    consumers: &'a [RoleSlot],
    /// Every slot's words, `capacity * slot.stride_words` of them.
    words: &'a [AtomicU64],
    mask: u64,
    /// `log2(capacity)`: a position's lap is `position >> shift`.
    shift: u32,
    /// Iterations one claim or take may make ([`budget`]).
    budget: u32,
    /// The slot layout: of `T` for a `Pod` queue, of a length word and
    /// the bytes for the [byte-message queue](super::msg).
    slot: SlotLayout,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Queue<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Queue<'_, T> {}

impl<T> fmt::Debug for Queue<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &(self.mask + 1))
            .field("producers", &self.producers.len())
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

/// Why [`QueueProducer::try_claim`] gave no position (the value-free
/// [`TrySendError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendStop {
    Full,
    Disconnected,
    Corrupt,
}

impl SendStop {
    /// The error of a push of `value` that stopped so.
    pub(crate) fn with<V>(self, value: V) -> TrySendError<V> {
        match self {
            SendStop::Full => TrySendError::Full(value),
            SendStop::Disconnected => TrySendError::Disconnected(value),
            SendStop::Corrupt => TrySendError::Corrupt(value),
        }
    }
}

/// Why a claim or a take stopped without a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Full (claim) or empty (take) at the handle's position.
    NotReady,
    /// The stamps or hints kept showing impossible states.
    Corrupt,
}

/// The iteration budget of one claim or take: enough to walk from a
/// stale hint to the frontier (at most a lap after a jump) with room for
/// lost races; a hostile peer cannot keep a call busy for longer.
fn budget(capacity: u64) -> u32 {
    u32::try_from(capacity.saturating_mul(2).saturating_add(256)).unwrap_or(u32::MAX)
}

impl<'a, T: Pod> Queue<'a, T> {
    /// The slot layout of `T`, a compile-time constant (checked against
    /// [`SlotLayout::of`] in `from_parts`).
    const SLOT: SlotLayout = SlotLayout::constant::<T>();

    /// A queue over its parts; its capacity is `words.len()` divided by
    /// the slot size of `T` ([`SlotLayout::of`]). All-zero parts are a
    /// fresh, empty queue; parts a peer left behind are attached as they
    /// are.
    ///
    /// # Errors
    /// The capacity is not a power of two in `1..=MAX_CAPACITY`, `words`
    /// is not a whole number of slots, or a registry is empty or larger
    /// than [`MAX_REGISTRY`].
    pub fn from_parts(
        ctl: &'a QueueControl,
        producers: &'a [RoleSlot],
        consumers: &'a [RoleSlot],
        words: &'a [AtomicU64],
    ) -> Result<Self, LayoutError> {
        let slot = SlotLayout::of::<T>()?;
        debug_assert_eq!(slot, Self::SLOT);
        Self::from_slots(ctl, producers, consumers, words, slot)
    }
}

impl<'a, T> Queue<'a, T> {
    /// A queue over its parts whose slots are laid out as `slot` says
    /// (the `Pod` queues' [`from_parts`](Queue::from_parts), and the
    /// byte-message queue's).
    pub(crate) fn from_slots(
        ctl: &'a QueueControl,
        producers: &'a [RoleSlot],
        consumers: &'a [RoleSlot],
        words: &'a [AtomicU64],
        slot: SlotLayout,
    ) -> Result<Self, LayoutError> {
        if slot.stride_words == 0
            || slot.value_word + slot.value_words > slot.stride_words
            || words.len() % slot.stride_words != 0
        {
            return Err(LayoutError::new(
                "the slot words are not a whole number of slots",
            ));
        }
        let capacity = words.len() / slot.stride_words;
        QueueParams {
            capacity,
            producers: producers.len(),
            consumers: consumers.len(),
        }
        .validate()?;
        Ok(Queue {
            ctl,
            producers,
            consumers,
            words,
            mask: capacity as u64 - 1,
            shift: capacity.trailing_zeros(),
            budget: budget(capacity as u64),
            slot,
            _type: PhantomData,
        })
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.mask as usize + 1
    }

    /// The raw position hints `(head, tail)`, for diagnostics and tests
    /// that simulate crashes or corruption.
    #[must_use]
    pub fn control_positions(&self) -> (&'a AtomicU64, &'a AtomicU64) {
        self.ctl.raw_positions()
    }

    /// The stamp word of the slot of position `pos`, for diagnostics and
    /// tests that simulate crashes or corruption (see [`stamp`]).
    #[must_use]
    pub fn stamp_of(&self, pos: u64) -> &'a AtomicU64 {
        self.stamp_word(pos)
    }

    /// Messages claimed and not yet delivered, as far as the hints tell
    /// (approximate while others work; Python's `qsize()`).
    #[doc(alias = "qsize")]
    #[must_use]
    pub fn len(&self) -> usize {
        // Relaxed: a snapshot of two hints, exact only when nobody works.
        let head = self.ctl.head.load(Ordering::Relaxed);
        let tail = self.ctl.tail.load(Ordering::Relaxed);
        let n = tail.wrapping_sub(head);
        if n > self.mask + 1 {
            // Crossed hints (a lagging head store) or garbage.
            if (n as i64) < 0 {
                0
            } else {
                self.capacity()
            }
        } else {
            n as usize
        }
    }

    /// Whether [`len`](Self::len) is 0.
    #[doc(alias = "empty")]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`len`](Self::len) is the capacity.
    #[doc(alias = "full")]
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Attaches the calling process (or thread) as one more producer.
    ///
    /// Taking a registry entry may mean taking over one of a dead holder:
    /// any claim it left is marked [`ORPHAN`] first (a scan of the stamps,
    /// once per attach).
    ///
    /// # Errors
    /// [`AttachError::Full`] if every producer entry is held by a live
    /// process.
    pub fn producer(&self) -> Result<QueueProducer<'a, T>, AttachError> {
        self.producer_with(0)
    }

    /// [`producer`](Self::producer) recording the presence token
    /// `presence` (0: none) in its entry: the entry then lives while any
    /// `fork` copy of the handle does, and counts once for all of them
    /// (see [`roles`]); entries the copies take in forked
    /// processes on their first push only hold their claims (not
    /// counted). The caller holds the token while the handle exists.
    ///
    /// # Errors
    /// As [`producer`](Self::producer); [`AttachError::Closed`] once the
    /// producers' role closed.
    pub fn producer_with(&self, presence: u32) -> Result<QueueProducer<'a, T>, AttachError> {
        let (index, epoch) = self.register_producer(presence, true)?;
        Ok(QueueProducer {
            queue: *self,
            index,
            home: index,
            presence,
            claimed: stamp(0, index as u64, CLAIMED),
            // Acquire: MPMC-3.
            tail: self.ctl.tail.load(Ordering::Acquire),
            epoch,
            spin: AdaptiveSpin::new(),
            idle: Idle::new(),
            _not_sync: PhantomData,
        })
    }

    /// Takes a producer entry for the calling process and clears the
    /// claims a dead previous holder of it left.
    fn register_producer(&self, presence: u32, counted: bool) -> Result<(usize, u32), AttachError> {
        // Wakers' side of the fence pair, and the fork epoch below, need
        // the process registered (idempotent).
        asym::register();
        let epoch = asym::fork_epoch();
        if self.ctl.closed(PRODUCERS) {
            return Err(AttachError::Closed);
        }
        let index = roles::attach_any(self.producers, presence)?;
        self.orphan_claims_of(index as u64);
        if counted {
            if let Err(e) = self.ctl.arrive(PRODUCERS) {
                self.producers[index].release();
                return Err(e);
            }
        }
        Ok((index, epoch))
    }

    /// Whether producers are attached now (one load: counted and not
    /// closed; a holder that died without detaching still counts until a
    /// consumer's liveness check finds it). Before the first producer
    /// attaches, an empty queue is just empty: receivers wait, `try_`
    /// receives say `Empty`.
    #[must_use]
    pub fn has_producers(&self) -> bool {
        // Acquire: pairs with `arrive` and `leave`.
        let v = self.ctl.present.0[PRODUCERS].load(Ordering::Acquire);
        v & EVER_ATTACHED != 0 && !super::left_or_closed(v)
    }

    /// Attaches the calling process as one more consumer.
    ///
    /// # Errors
    /// [`AttachError::Full`] if every consumer entry is held by a live
    /// process.
    pub fn consumer(&self) -> Result<QueueConsumer<'a, T>, AttachError> {
        self.consumer_with(0)
    }

    /// [`consumer`](Self::consumer) recording the presence token
    /// `presence` (0: none): see [`producer_with`](Self::producer_with).
    ///
    /// # Errors
    /// As [`consumer`](Self::consumer); [`AttachError::Closed`] once the
    /// consumers' role closed.
    pub fn consumer_with(&self, presence: u32) -> Result<QueueConsumer<'a, T>, AttachError> {
        asym::register();
        let epoch = asym::fork_epoch();
        if self.ctl.closed(CONSUMERS) {
            return Err(AttachError::Closed);
        }
        let index = roles::attach_any(self.consumers, presence)?;
        if let Err(e) = self.ctl.arrive(CONSUMERS) {
            self.consumers[index].release();
            return Err(e);
        }
        Ok(QueueConsumer {
            queue: *self,
            index,
            presence,
            epoch,
            // Acquire: MPMC-3.
            head: self.ctl.head.load(Ordering::Acquire),
            spin: AdaptiveSpin::new(),
            idle: Idle::new(),
            _not_sync: PhantomData,
        })
    }

    /// The stamp word of position `pos`'s slot.
    #[inline(always)]
    fn stamp_word(&self, pos: u64) -> &'a AtomicU64 {
        let i = (pos & self.mask) as usize * self.slot.stride_words;
        // In bounds: i < capacity * stride = words.len() (`from_parts`),
        // so the check never fails.
        &self.words[i]
    }

    /// The value words of position `pos`'s slot.
    #[inline(always)]
    pub(crate) fn value_words(&self, pos: u64) -> &'a [AtomicU64] {
        let i = (pos & self.mask) as usize * self.slot.stride_words + self.slot.value_word;
        // In bounds: the value ends within the slot (`from_slots`).
        &self.words[i..i + self.slot.value_words]
    }

    /// The lap of position `pos`, modulo 2⁵⁰.
    #[inline(always)]
    fn lap(&self, pos: u64) -> u64 {
        (pos >> self.shift) & LAP_MASK
    }

    /// Re-marks (`CLAIMED(lap, who) → CLAIMED(lap, ORPHAN)`) every claim
    /// recorded under registry entry `who`. Called by a producer that just
    /// took the entry, before its first claim: any such claim is a dead
    /// holder's, and consumers will skip it in order.
    fn orphan_claims_of(&self, who: u64) {
        for i in 0..self.capacity() as u64 {
            let word = self.stamp_word(i);
            // Relaxed: a claim of ours cannot exist yet, and a claim of
            // the dead holder cannot change but by this CAS or a skip.
            let s = word.load(Ordering::Relaxed);
            let (lap, w, state) = decode(s);
            if state == CLAIMED && w == who {
                // Release: MPMC-3 (a stamp write).
                let _ = word.compare_exchange(
                    s,
                    stamp(lap, ORPHAN, CLAIMED),
                    Ordering::Release,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Whether the producer `who` recorded in a claim is gone (not a
    /// registry index, or its entry is not held by a live process).
    /// Syscalls.
    fn claimer_gone(&self, who: u64) -> bool {
        // The process that made the claim, not the handle's presence:
        // a claim dies with its process even while a `fork` copy of the
        // handle lives on.
        match self.producers.get(who as usize) {
            Some(slot) => !slot.process_live(),
            None => true,
        }
    }

    /// Every producer that ever attached is gone: every one detached (one
    /// load), or, when `slow`, the registry says so (no entry held by a
    /// live process: syscalls).
    #[inline]
    fn producers_gone(&self, slow: bool) -> bool {
        if self.ctl.all_left(PRODUCERS) {
            // Seen gone: closed for good.
            self.ctl.close(PRODUCERS);
            return true;
        }
        slow && self.closes(PRODUCERS, self.producers)
    }

    /// The registry of `role` is gone: then the role closes for good
    /// (producers only: see `CLOSED`).
    #[cold]
    fn closes(&self, role: usize, slots: &[RoleSlot]) -> bool {
        let gone = registry_gone(slots);
        if gone {
            self.ctl.close(role);
        }
        gone
    }

    /// As [`producers_gone`](Self::producers_gone), for consumers.
    #[inline]
    fn consumers_gone(&self, slow: bool) -> bool {
        // Not closed: a restarted consumer may take a dead one's entry
        // over (see `CLOSED`).
        self.ctl.all_left(CONSUMERS) || (slow && registry_gone(self.consumers))
    }
}

/// Whether a registry had holders and none lives: every entry reads gone
/// (no syscall), or no entry is held by a live process (syscalls).
#[cold]
fn registry_gone(slots: &[RoleSlot]) -> bool {
    roles::ever_attached(slots) && (roles::all_look_empty(slots) || !roles::any_live(slots))
}

/// Skips an abandoned claim: `CLAIMED(lap, _) → EMPTY(lap + 1)`, only if
/// the stamp still is `claim` (a CAS, so two skippers, or a skip and a
/// re-marking, cannot both act).
///
/// Release: MPMC-3. No value is handed over (the dead claimer's partial
/// value is overwritten by the next lap's producer), but a handle that
/// reads this later lap deduces that everything before was delivered,
/// which this skipper had seen.
fn skip(word: &AtomicU64, claim: u64, lap: u64) {
    let _ = word.compare_exchange(
        claim,
        stamp(lap.wrapping_add(1), 0, EMPTY),
        Ordering::Release,
        Ordering::Relaxed,
    );
}

/// A producer handle of a [`Queue`]: `Send`, not `Sync`; holds one
/// registry entry until dropped.
///
/// A handle used in a process forked after it was made (the registry
/// entry names the parent) takes an entry of its own in that process on
/// its first push; if none is free, pushes there report `Full` until one
/// is.
pub struct QueueProducer<'a, T> {
    queue: Queue<'a, T>,
    /// The entry our claims name (`home`, or one taken after a `fork`).
    index: usize,
    /// The entry taken at attach, which holds `presence`.
    home: usize,
    /// The presence token recorded in `home` (0: none).
    presence: u32,
    /// `CLAIMED` with our index, lap 0: OR a lap's `EMPTY` stamp with it
    /// to get our claim of that lap.
    claimed: u64,
    /// Private cursor: one past our last claim (at most the first
    /// unclaimed position).
    tail: u64,
    /// The fork epoch of the process that registered `index`.
    epoch: u32,
    pub(crate) spin: AdaptiveSpin,
    idle: Idle,
    _not_sync: PhantomData<Cell<()>>,
}

/// A consumer handle of a [`Queue`]: `Send`, not `Sync`.
pub struct QueueConsumer<'a, T> {
    queue: Queue<'a, T>,
    index: usize,
    /// The presence token recorded in our entry (0: none).
    presence: u32,
    /// The fork epoch of the process that attached it.
    epoch: u32,
    /// Private cursor: at most the first undelivered position.
    head: u64,
    pub(crate) spin: AdaptiveSpin,
    idle: Idle,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> fmt::Debug for QueueProducer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueProducer")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}
impl<T> fmt::Debug for QueueConsumer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueConsumer")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl<'a, T> QueueProducer<'a, T> {
    /// The queue this handle pushes to.
    #[must_use]
    pub fn queue(&self) -> &Queue<'a, T> {
        &self.queue
    }

    /// The registry entry this handle's claims record (diagnostics, and
    /// tests that simulate a producer killed mid-push).
    #[must_use]
    pub fn registry_index(&self) -> usize {
        self.index
    }

    /// Sets how blocking pushes spin before sleeping: an
    /// [`AdaptiveSpin`] (the default, which learns), or a fixed
    /// [`Spin`](crate::wait::Spin)
    /// ([`Spin::NONE`](crate::wait::Spin::NONE) when both ends share a CPU).
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.spin = spin.into();
    }

    /// Claims the next free position: `Ok(position)`, or why not.
    #[inline(always)]
    fn claim(&mut self) -> Result<u64, Stop> {
        let q = &self.queue;
        let cap = q.mask + 1;
        // Where our last claim left us, or the shared hint if another
        // producer moved on since (alone, the hint is our own line).
        let mut t = self.next(self.tail);
        let mut budget = q.budget;
        let mut impossible = false;
        loop {
            let word = q.stamp_word(t);
            let lap = q.lap(t);
            // Acquire: MPMC-3 (what we deduce from a later lap holds).
            let s = word.load(Ordering::Acquire);
            let empty = stamp(lap, 0, EMPTY);
            if s == empty {
                // SYNC POINT MPMC-2 (Acquire on success): pairs with the
                // Release of the delivery CAS that wrote this EMPTY; that
                // consumer's reads of the previous lap's value happen
                // before our writes. Release: MPMC-3.
                if word
                    .compare_exchange(s, empty | self.claimed, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(t);
                }
                // Another producer claimed it: look again.
            } else {
                let (slap, _, state) = decode(s);
                let ahead = laps_ahead(slap, lap);
                if ahead == 0 && state != EMPTY && state != STATE_MASK {
                    // Claimed already: claims are dense, try the next.
                    t = self.next(t + 1);
                } else if ahead != 0 && ahead < LAP_HALF {
                    // A later lap: our cursor is stale. That position is
                    // claimed (or, if EMPTY, its previous lap was), so
                    // the frontier is at most a lap behind it.
                    let seen = t.wrapping_add(ahead << q.shift);
                    let to = if state == EMPTY {
                        seen.wrapping_sub(cap - 1)
                    } else {
                        seen.wrapping_add(1)
                    };
                    t = self.next(to);
                } else if ahead == LAP_MASK && state != EMPTY && state != STATE_MASK {
                    // The previous lap, not yet delivered: full at `t`.
                    self.tail = t;
                    return Err(Stop::NotReady);
                } else {
                    // Impossible for honest peers (an EMPTY of the
                    // previous lap, an earlier lap, a bad state or claim).
                    // Retry from the shared hint a few times, then say so.
                    impossible = true;
                    // Acquire: MPMC-3.
                    t = q.ctl.tail.load(Ordering::Acquire);
                }
            }
            budget -= 1;
            if budget == 0 {
                return Err(if impossible {
                    Stop::Corrupt
                } else {
                    Stop::NotReady
                });
            }
        }
    }

    /// The next position to look at, at least `to`: the shared hint if
    /// it is further on.
    #[inline(always)]
    fn next(&self, to: u64) -> u64 {
        // Acquire: MPMC-3, pairs with the Release store in `commit`.
        let hint = self.queue.ctl.tail.load(Ordering::Acquire);
        if (hint.wrapping_sub(to) as i64) > 0 {
            hint
        } else {
            to
        }
    }

    /// Writes the value words of our claimed position `t` with `write`
    /// and commits it (the `FULL` store, the tail hint, the wake-up).
    #[inline(always)]
    pub(crate) fn commit_with(&mut self, t: u64, write: impl FnOnce(&'a [AtomicU64])) {
        let q = &self.queue;
        write(q.value_words(t));
        // SYNC POINT MPMC-1 (Release): the value stores above are visible
        // to a consumer whose Acquire load sees FULL. A plain store: nobody
        // touches a CLAIMED slot while its claimer lives.
        q.stamp_word(t)
            .store(stamp(q.lap(t), 0, FULL), Ordering::Release);
        self.tail = t.wrapping_add(1);
        // Release: MPMC-3, after the stamp write it advertises.
        q.ctl.tail.store(self.tail, Ordering::Release);
        q.ctl.data_ready.notify();
    }

    /// Gives up our claim of position `t` without a message: marks it
    /// [`ORPHAN`], which consumers skip in position order as they skip a
    /// dead producer's claim (an encoder that failed half-way through the
    /// slot).
    pub(crate) fn abort(&mut self, t: u64) {
        let q = &self.queue;
        // Release: MPMC-3 (a stamp write). A plain store: the claim is
        // ours, nobody else writes it while we live.
        q.stamp_word(t)
            .store(stamp(q.lap(t), ORPHAN, CLAIMED), Ordering::Release);
        self.tail = t.wrapping_add(1);
        // Release: MPMC-3.
        q.ctl.tail.store(self.tail, Ordering::Release);
        q.ctl.data_ready.notify();
    }

    /// Claims a position for a push: `Ok(position)`, which the caller
    /// must [`commit_with`](Self::commit_with) or [`abort`](Self::abort)
    /// before its next claim, or why not (with the rare checks of a
    /// failing call: re-registration after `fork`, disconnection). `slow`
    /// allows the liveness syscalls.
    #[inline(always)]
    pub(crate) fn try_claim(&mut self, slow: bool) -> Result<u64, SendStop> {
        if asym::fork_epoch() != self.epoch {
            return self.claim_after_fork(slow);
        }
        match self.claim() {
            Ok(t) => Ok(t),
            Err(Stop::Corrupt) => Err(SendStop::Corrupt),
            Err(Stop::NotReady) => {
                // The common failure of a busy poller stays inline: a
                // count, and one load of a line nobody writes meanwhile.
                let ticked = self.idle.tick();
                if !slow && !ticked && !self.queue.ctl.all_left(CONSUMERS) {
                    return Err(SendStop::Full);
                }
                Err(self.full(ticked, slow))
            }
        }
    }

    /// Full, and the rare checks are due (or `slow`): `Disconnected` if
    /// every consumer is gone.
    #[cold]
    fn full(&mut self, ticked: bool, slow: bool) -> SendStop {
        let slow = slow || (ticked && self.idle.interval_passed());
        if self.queue.consumers_gone(slow) {
            SendStop::Disconnected
        } else {
            SendStop::Full
        }
    }

    /// First push in a process forked after this handle was made: take an
    /// entry of our own, so that our claims name this process.
    #[cold]
    fn claim_after_fork(&mut self, slow: bool) -> Result<u64, SendStop> {
        // With a presence, the entry taken here only holds this
        // process's claims: the handle is counted once, by `home`.
        match self.queue.register_producer(0, self.presence == 0) {
            Ok((index, epoch)) => {
                self.index = index;
                self.claimed = stamp(0, index as u64, CLAIMED);
                self.epoch = epoch;
                self.try_claim(slow)
            }
            Err(_) => Err(SendStop::Full),
        }
    }
}

impl<T: Pod> QueueProducer<'_, T> {
    /// Writes `value` at our claimed position `t` and commits it.
    #[inline(always)]
    fn commit(&mut self, t: u64, value: &T) {
        self.commit_with(t, |words| slots::store_value(words, value));
    }

    #[inline(always)]
    fn push_inner(&mut self, value: T, slow: bool) -> Result<(), TrySendError<T>> {
        match self.try_claim(slow) {
            Ok(t) => {
                self.commit(t, &value);
                Ok(())
            }
            Err(e) => Err(e.with(value)),
        }
    }
    /// Pushes `value` if there is room.
    ///
    /// # Errors
    /// `Full`, `Disconnected` (full and every consumer is gone), `Corrupt`.
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), TrySendError<T>> {
        self.push_inner(value, false)
    }

    /// Pushes `value`, waiting while the queue is full.
    ///
    /// # Errors
    /// `Disconnected`, `Corrupt`; the value comes back.
    #[doc(alias = "put")]
    pub fn push(&mut self, value: T) -> Result<(), SendError<T>> {
        self.push_deadline(value, None)
            .map_err(SendTimeoutError::untimed)
    }

    /// Pushes `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`.
    pub fn push_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.push_deadline(value, Some(Deadline::after(timeout)))
    }

    /// Pushes `value`, waiting for room until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// As [`push_timeout`](Self::push_timeout).
    pub fn push_deadline(
        &mut self,
        value: T,
        deadline: Option<Deadline>,
    ) -> Result<(), SendTimeoutError<T>> {
        let ctl = self.queue.ctl;
        let mut spin = self.spin;
        let r = ctl.space_ready.block_on(&mut spin, 0, deadline, |slow| {
            match self.push_inner(value, slow) {
                Ok(()) => Some(Ok(())),
                Err(e) => e.blocking().ok().map(Err),
            }
        });
        self.spin = spin;
        r.unwrap_or(Err(SendTimeoutError::Timeout(value)))
    }
}

impl<T> QueueProducer<'_, T> {
    /// Closes the producers' role for good ([`CLOSED`]) and detaches: once
    /// the queue is drained consumers get `Disconnected`, whatever other
    /// producers still live (close when every producer is done, as
    /// Python's `Queue.close()`), and no producer attaches again.
    pub fn close(self) {
        self.queue.ctl.close(PRODUCERS);
        drop(self);
    }

    /// Drops this copy of a handle whose presence token another copy
    /// (inherited across `fork`) still holds: gives back only the entry
    /// this process took for its own claims.
    pub fn forget_copy(self) {
        if self.index != self.home && asym::fork_epoch() == self.epoch {
            self.queue.producers[self.index].release();
        }
        core::mem::forget(self);
    }
}

impl<T> Drop for QueueProducer<'_, T> {
    fn drop(&mut self) {
        let same = asym::fork_epoch() == self.epoch;
        if self.presence == 0 {
            // In a forked child that never pushed, the registration is
            // the parent's: leave it alone.
            if !same {
                return;
            }
            self.queue.ctl.leave(PRODUCERS);
            self.queue.producers[self.index].release();
            self.queue.ctl.data_ready.notify();
            return;
        }
        // An entry this process took for its claims (not counted).
        if self.index != self.home && same {
            self.queue.producers[self.index].release();
        }
        let q = self.queue;
        if q.ctl
            .detach_presence(PRODUCERS, &q.producers[self.home], self.presence)
        {
            q.ctl.data_ready.notify();
        }
    }
}

impl<'a, T> QueueConsumer<'a, T> {
    /// The queue this handle pops from.
    #[must_use]
    pub fn queue(&self) -> &Queue<'a, T> {
        &self.queue
    }

    /// Sets how blocking pops spin before sleeping: an
    /// [`AdaptiveSpin`] (the default, which learns), or a fixed
    /// [`Spin`](crate::wait::Spin)
    /// ([`Spin::NONE`](crate::wait::Spin::NONE) when both ends share a CPU).
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.spin = spin.into();
    }

    /// Takes the next message: `Ok(read(value words))`, or why not.
    /// `read` runs on every committed slot met, speculatively: its result
    /// is returned only if the delivery CAS after it succeeds (a loser's
    /// words may have been overwritten meanwhile). `slow` allows the
    /// dead-claimer check (syscalls).
    #[inline(always)]
    fn take<R>(
        &mut self,
        slow: bool,
        read: &mut impl FnMut(&'a [AtomicU64]) -> R,
    ) -> Result<R, Stop> {
        let q = &self.queue;
        let cap = q.mask + 1;
        let mut h = self.next(self.head);
        let mut budget = q.budget;
        let mut impossible = false;
        loop {
            let word = q.stamp_word(h);
            let lap = q.lap(h);
            // SYNC POINT MPMC-1 (Acquire): pairs with the producer's
            // Release commit; the value loads below see its stores.
            let s = word.load(Ordering::Acquire);
            let full = stamp(lap, 0, FULL);
            if s == full {
                // Speculative copy: ours only if the CAS below succeeds.
                let value = read(q.value_words(h));
                // SYNC POINT MPMC-2 (Release): our loads above happen
                // before the next lap's producer writes the slot. The
                // delivery: exactly one consumer's CAS succeeds.
                if word
                    .compare_exchange(
                        s,
                        stamp(lap.wrapping_add(1), 0, EMPTY),
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.head = h.wrapping_add(1);
                    // Release: MPMC-3, after the stamp write it advertises.
                    q.ctl.head.store(self.head, Ordering::Release);
                    q.ctl.space_ready.notify();
                    return Ok(value);
                }
                // Another consumer took it: look again.
            } else {
                let (slap, who, state) = decode(s);
                let ahead = laps_ahead(slap, lap);
                if ahead == 0 && state == EMPTY && who == 0 {
                    self.head = h;
                    return Err(Stop::NotReady);
                } else if ahead == 0 && state == CLAIMED {
                    // Claimed, not committed: usually about to be. Its
                    // claimer may be dead; asking costs syscalls.
                    if who == ORPHAN || (slow && q.claimer_gone(who)) {
                        skip(word, s, lap);
                    } else {
                        self.head = h;
                        return Err(Stop::NotReady);
                    }
                } else if ahead != 0 && ahead < LAP_HALF {
                    // A later lap: delivered already (consumption is in
                    // order, so everything up to a lap before it was).
                    let seen = h.wrapping_add(ahead << q.shift);
                    h = self.next(seen.wrapping_sub(cap - 1));
                } else {
                    // Impossible for honest peers.
                    impossible = true;
                    // Acquire: MPMC-3.
                    h = q.ctl.head.load(Ordering::Acquire);
                }
            }
            budget -= 1;
            if budget == 0 {
                return Err(if impossible {
                    Stop::Corrupt
                } else {
                    Stop::NotReady
                });
            }
        }
    }

    /// The next position to look at, at least `to`: the shared hint if
    /// it is further on.
    #[inline(always)]
    fn next(&self, to: u64) -> u64 {
        // Acquire: MPMC-3, pairs with the Release store after a delivery.
        let hint = self.queue.ctl.head.load(Ordering::Acquire);
        if (hint.wrapping_sub(to) as i64) > 0 {
            hint
        } else {
            to
        }
    }

    /// Takes the next message through `read` (see `take`), with the rare
    /// checks of a failing call (a dead claimer, disconnection).
    #[inline(always)]
    pub(crate) fn try_take<R>(
        &mut self,
        slow: bool,
        read: &mut impl FnMut(&'a [AtomicU64]) -> R,
    ) -> Result<R, TryRecvError> {
        match self.take(slow, read) {
            Ok(v) => Ok(v),
            Err(Stop::Corrupt) => Err(TryRecvError::Corrupt),
            Err(Stop::NotReady) => {
                // The common failure of a busy poller stays inline (see
                // `push_inner`).
                let ticked = self.idle.tick();
                if !slow && !ticked && !self.queue.ctl.all_left(PRODUCERS) {
                    return Err(TryRecvError::Empty);
                }
                self.empty(ticked, slow, read)
            }
        }
    }

    /// Empty, and the rare checks are due (or `slow`): skip a dead claimer
    /// at our position; `Disconnected` if every producer is gone and
    /// nothing is left.
    #[cold]
    fn empty<R>(
        &mut self,
        ticked: bool,
        slow: bool,
        read: &mut impl FnMut(&'a [AtomicU64]) -> R,
    ) -> Result<R, TryRecvError> {
        let due = ticked && self.idle.interval_passed();
        if !slow && due {
            // Every so often a busy poller, too, asks whether the claimer
            // at its position lives (and skips it if not).
            match self.take(true, read) {
                Ok(v) => return Ok(v),
                Err(Stop::Corrupt) => return Err(TryRecvError::Corrupt),
                Err(Stop::NotReady) => {}
            }
        }
        let slow = slow || due;
        if !self.queue.producers_gone(slow) {
            return Err(TryRecvError::Empty);
        }
        // Every producer is gone. Their last commits happen before their
        // entries read as gone, so what they committed is visible now:
        // look once more (skipping claims of the dead) before saying so.
        match self.take(true, read) {
            Ok(v) => Ok(v),
            Err(Stop::Corrupt) => Err(TryRecvError::Corrupt),
            Err(Stop::NotReady) => {
                let q = &self.queue;
                let h = self.head;
                // Relaxed: `take` just acquired this stamp.
                let s = q.stamp_word(h).load(Ordering::Relaxed);
                if s == stamp(q.lap(h), 0, EMPTY) {
                    Err(TryRecvError::Disconnected)
                } else {
                    Err(TryRecvError::Empty)
                }
            }
        }
    }
}

impl<T: Pod> QueueConsumer<'_, T> {
    #[inline(always)]
    fn pop_inner(&mut self, slow: bool) -> Result<T, TryRecvError> {
        self.try_take(slow, &mut |words| slots::load_value(words))
    }

    /// Pops a message if one is ready.
    ///
    /// # Errors
    /// `Empty`, `Disconnected` (empty and every producer is gone),
    /// `Corrupt`.
    #[doc(alias = "get_nowait")]
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, TryRecvError> {
        self.pop_inner(false)
    }

    /// Pops a message, waiting while the queue is empty.
    ///
    /// # Errors
    /// `Disconnected` once drained with every producer gone; `Corrupt`.
    #[doc(alias = "get")]
    pub fn pop(&mut self) -> Result<T, RecvError> {
        self.pop_deadline(None).map_err(RecvTimeoutError::untimed)
    }

    /// Pops a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`.
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.pop_deadline(Some(Deadline::after(timeout)))
    }

    /// Pops a message, waiting until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// As [`pop_timeout`](Self::pop_timeout).
    pub fn pop_deadline(&mut self, deadline: Option<Deadline>) -> Result<T, RecvTimeoutError> {
        let ctl = self.queue.ctl;
        let mut spin = self.spin;
        let r =
            ctl.data_ready
                .block_on(&mut spin, 0, deadline, |slow| match self.pop_inner(slow) {
                    Ok(v) => Some(Ok(v)),
                    Err(e) => e.blocking().map(Err),
                });
        self.spin = spin;
        r.unwrap_or(Err(RecvTimeoutError::Timeout))
    }
}

impl<T> QueueConsumer<'_, T> {
    /// Closes the consumers' role for good ([`CLOSED`]) and detaches:
    /// producers get `Disconnected` (when the queue is full), and no
    /// consumer attaches again.
    pub fn close(self) {
        self.queue.ctl.close(CONSUMERS);
        drop(self);
    }

    /// Drops this copy of a handle whose presence token another copy
    /// (inherited across `fork`) still holds.
    pub fn forget_copy(self) {
        core::mem::forget(self);
    }
}

impl<T> Drop for QueueConsumer<'_, T> {
    fn drop(&mut self) {
        let q = self.queue;
        if self.presence == 0 {
            // In a forked child, the registration is the parent's.
            if asym::fork_epoch() != self.epoch {
                return;
            }
            q.ctl.leave(CONSUMERS);
            q.consumers[self.index].release();
            q.ctl.space_ready.notify();
            return;
        }
        if q.ctl
            .detach_presence(CONSUMERS, &q.consumers[self.index], self.presence)
        {
            q.ctl.space_ready.notify();
        }
    }
}

/// A [`Queue`] of `T` as the payload of a segment (kind `queue`):
/// Python's `multiprocessing.Queue`. Never constructed: it names the
/// [`Object`], whose view is a [`Queue`].
#[derive(Debug)]
pub enum Mpmc<T> {
    #[doc(hidden)]
    _Never(core::convert::Infallible, PhantomData<fn() -> T>),
}

// SAFETY: for every `params` `payload_len` accepts, `QueueLayout::new`
// gives offsets inside `payload_len` bytes: the control block (atomics,
// 128-aligned) at 0, two registries of `RoleSlot`s (atomics and a `u32`,
// 4-aligned) and `capacity * stride` 8-aligned `AtomicU64` slot words.
// The view reads and writes only through those atomics; every index it
// computes is masked or checked (see the module docs). All-zero is the
// initial state, so `init` writes nothing. `params_from(fingerprint(p))`
// decodes what `fingerprint` encodes.
unsafe impl<T: Pod> Object for Mpmc<T> {
    const KIND: Kind = Kind::QUEUE;
    type Params = QueueParams;
    type View<'a> = Queue<'a, T>;

    type Element = T;

    fn encode(p: &QueueParams) -> [u64; 2] {
        p.encode()
    }

    fn decode(recorded: [u64; 2]) -> Result<QueueParams, LayoutError> {
        QueueParams::decode(recorded)
    }

    fn payload_len(p: &QueueParams) -> Result<usize, LayoutError> {
        Ok(QueueLayout::new(p, core::mem::size_of::<T>(), core::mem::align_of::<T>())?.len)
    }

    unsafe fn init(_payload: NonNull<u8>, _params: &QueueParams) {}

    #[cfg(not(loom))]
    unsafe fn attach<'a>(payload: NonNull<u8>, p: &QueueParams) -> Queue<'a, T> {
        let l = QueueLayout::new(p, core::mem::size_of::<T>(), core::mem::align_of::<T>())
            .expect("the caller checked payload_len(params)");
        let base = payload.as_ptr();
        // SAFETY: `attach`'s contract: `l.len` bytes at `payload`, aligned
        // to PAYLOAD_ALIGN, mapped for 'a, accessed by everyone only
        // atomically. Each part lies inside them at an offset aligned for
        // its type (`QueueLayout`); all parts are atomics (the
        // `RoleSlot`'s reserved word is plain but never accessed), valid
        // for any bytes.
        let (ctl, producers, consumers, words) = unsafe {
            (
                &*base.cast::<QueueControl>(),
                core::slice::from_raw_parts(base.add(l.producers_at).cast(), p.producers),
                core::slice::from_raw_parts(base.add(l.consumers_at).cast(), p.consumers),
                core::slice::from_raw_parts(
                    base.add(l.slots_at).cast::<AtomicU64>(),
                    p.capacity * l.slot.stride_words,
                ),
            )
        };
        Queue::from_parts(ctl, producers, consumers, words)
            .expect("the layout was validated with the same parameters")
    }

    /// Under loom atomics are not plain words: models build their queues
    /// with [`Queue::from_parts`].
    #[cfg(loom)]
    unsafe fn attach<'a>(_payload: NonNull<u8>, _p: &QueueParams) -> Queue<'a, T> {
        unimplemented!("loom models build queues with Queue::from_parts")
    }
}
