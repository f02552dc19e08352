//! `Ring<T>`: a single-producer single-consumer ring of `T: Pod` in shared
//! memory, with separate [`Producer`] and [`Consumer`] handles.
//!
//! # Layout
//! A [`RingControl`] (five 128-byte lines: tail, head, two wait points, the
//! two role slots) and, separately, `capacity` elements of `T`. The
//! capacity is a power of two between 1 and 2³¹: positions are free-running
//! `u32` counters and a slot is `position & (capacity - 1)`.
//!
//! # Protocol
//! The producer owns `tail`, the consumer owns `head`; each keeps its own
//! index privately (the shared copy is only *published*) and caches the
//! other's: "possibly full → refresh `head` → really full".
//!
//! - SYNC POINT RING-1: the producer writes slots, then stores `tail`
//!   (Release); the consumer loads `tail` (Acquire) and then reads them.
//! - SYNC POINT RING-2: the consumer reads slots, then stores `head`
//!   (Release); the producer loads `head` (Acquire) before reusing them.
//!
//! Every index read from the other side is validated: `tail - head` (mod
//! 2³²) must be at most the capacity, or the operation reports `Corrupt`.
//! Slots are always addressed modulo the capacity and copied with relaxed
//! atomics ([`SharedSlice`]), so a hostile peer can make us read garbage
//! values, never out of bounds, never a data race.
//!
//! # Guarantees
//! - FIFO; a value is **committed** when the producer's `tail` store lands,
//!   and **consumed** when the consumer's `head` store lands. A producer
//!   killed mid-push published nothing; a consumer killed mid-pop consumed
//!   nothing (the next consumer gets that value again).
//! - One producer and one consumer may attach ([`AttachError::Taken`]
//!   otherwise). A role whose holder **died** may be taken over by a new
//!   attacher, which resumes from the shared index.
//! - Disconnect: a consumer gets [`TryRecvError::Disconnected`] when the
//!   ring is empty and the producer detached or died; a producer gets
//!   `Disconnected` when the ring is full and the consumer detached or died.
//!   Before anyone attached in the other role, the ring is merely empty or
//!   full. A clean drop is seen at once; a death is seen within one
//!   [`WAIT_SLICE`](super::WAIT_SLICE) by blocked calls, and within
//!   [`LIVENESS_POLL_EVERY`](super::LIVENESS_POLL_EVERY) consecutive
//!   failing `try_` calls.
//!
//! # Cost of a message
//! The fast path of `try_push`/`try_pop` makes no syscall and no atomic
//! read-modify-write: a slot copy, one Release store of the own index, a
//! compiler-only fence and a load of the peer's sleeper count (a line
//! nobody writes while nobody sleeps). The other side's index is re-read
//! only when the cached one shows full/empty. A failing call (full,
//! empty) is inline too and as cheap: a counter, and one load of the peer's
//! role word; liveness syscalls at most once per
//! [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL) of polling.
//! A message still moves **two** cache lines between the cores (the slot
//! and `tail`), where a bare cache-line ping-pong moves one; a consumer
//! that has polled an empty ring for a while prefetches the next slot so
//! the two misses overlap. Slots are contiguous `T`s (so chunks can be
//! handed out as slices), which rules out a per-slot stamp in the slot's
//! own line: for latency, use the [stamped ring](super::stamped), one line
//! per message.
//!
//! `try_push`/`try_pop` and everything on their fast path are
//! `#[inline(always)]`, the rare error paths `#[cold]`. Left to its
//! heuristics, LLVM sometimes kept `pop_inner` out of line in a polling
//! loop with two call sites: a call per message with the `Result` returned
//! through memory, which cost a streaming consumer about a third of its
//! throughput (single-message `spsc_throughput` ≈65 M/s instead of ≈95 M/s
//! on the reference VM): a ring that the producer keeps nearly full runs as
//! fast as the consumer turns one slot around.
//!
//! # Why `spsc_throughput` measured 1.22× and then 0.74–0.80× its floor
//! The machine's modes, first: the 2-vCPU VM runs a round in a fast or a
//! slow mode, and the raw ring floor swings 4× between them (≈100 M/s and
//! ≈25 M/s), this ring about 2× (≈85 and ≈46 M/s). Runs dominated by the
//! slow mode give 1.5–2×, fast-mode runs 0.8–0.9×, and a round whose
//! floor and impl runs fall in different modes anything between. Second,
//! the side of the pair that waits (the producer of a full ring, the
//! consumer of an empty one) polled worse than the floor's one-load loop,
//! and a two-core ring runs as fast as its waiting side reacts:
//! - every [`LIVENESS_POLL_EVERY`](super::LIVENESS_POLL_EVERY) failing
//!   calls a poller checked its peer's liveness: `kill` plus a `/proc`
//!   read, ≈13 µs here, every 4096 polls of 3–10 ns — a stall of the
//!   waiting side worth up to a quarter of its time, long enough for the
//!   other side to fill (drain) the ring and stall in turn. Now at most
//!   once per 10 ms of polling;
//! - a failing call went out of line (a `#[cold]` call, the liveness
//!   counter, the peer's role word): ≈20–30 ns per poll where the floor
//!   spends ≈3. Now inline, ≈3–8 ns;
//! - a consumer polling an empty ring prefetched the next slot on every
//!   poll: streaming right behind the producer, it pulled the line the
//!   producer was still filling, one more transfer of the line per
//!   message. Now only after 8 empty polls (a round trip's wait).
//!
//! - every successful call reset the handle's count of failing calls: one
//!   more store to the handle per message, which the floor (its loop state
//!   in registers) does not make. Over fresh invocations in the fast mode
//!   it made the difference between ≈0.6× (median of 7) and ≈0.85× (of
//!   6). Now a successful call stores only its position.
//!
//! What remains in the fast mode is the per-message work the floor does
//! not do (the sleeper check of the blocking calls, the checked indices):
//! at ≈10 ns a message, a few instructions show. For single messages the
//! [stamped ring](super::stamped) streams faster than the raw index ring
//! in both modes.
//!
//! ```
//! use shmkit_core::queue::ring::{Ring, RingControl};
//! use core::ptr::NonNull;
//!
//! let control = RingControl::new();
//! let mut slots = [0u64; 4];
//! // SAFETY: `slots` outlives the ring and is only accessed through it.
//! let ring = unsafe { Ring::from_raw(&control, NonNull::from(&mut slots).cast(), 4) }.unwrap();
//! let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
//! tx.try_push(7).unwrap();
//! tx.push_slice(&[8, 9]).unwrap();
//! assert_eq!(rx.try_pop(), Ok(7));
//! let mut out = [0; 4];
//! assert_eq!(rx.pop_into(&mut out), Ok(2));
//! assert_eq!(&out[..2], &[8, 9]);
//! # Ok::<(), shmkit_core::queue::roles::AttachError>(())
//! ```

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::roles::{AttachError, RoleSlot};
use super::{asym, Roles, CONSUMER, PRODUCER};
use super::{
    CachePadded, Idle, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError, WaitPoint,
};
use crate::header::{Kind, PAYLOAD_ALIGN};
use crate::object::{LayoutError, Object};
use crate::primitive::{AtomicU32, Ordering};
use crate::shared::SharedSlice;
use crate::wait::{AdaptiveSpin, Deadline, Spin};

/// Largest capacity: positions are `u32` and `tail - head` must stay
/// unambiguous.
pub const MAX_CAPACITY: u32 = 1 << 31;

/// The shared control block of a [`Ring`].
///
/// | field | written by | read by |
/// |---|---|---|
/// | `tail` | producer (Release, RING-1) | consumer (Acquire) |
/// | `head` | consumer (Release, RING-2) | producer (Acquire) |
/// | `data_ready` | producer wakes | consumer sleeps |
/// | `space_ready` | consumer wakes | producer sleeps |
/// | `roles` | attach/detach ([`RoleSlot`]s and presence counts) | both |
#[derive(Debug, Default)]
#[repr(C)]
pub struct RingControl {
    tail: CachePadded<AtomicU32>,
    head: CachePadded<AtomicU32>,
    data_ready: CachePadded<WaitPoint>,
    space_ready: CachePadded<WaitPoint>,
    /// The role slots and counts ([`Roles`](super::Roles)).
    roles: CachePadded<Roles>,
    /// Under loom only: see [`Shadow`].
    #[cfg(loom)]
    shadow: Shadow,
}

#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<RingControl>(), 5 * 128);

/// Most slots a loom model's ring may have (one shadow cell each).
#[cfg(loom)]
pub const LOOM_MAX_SLOTS: usize = 64;

/// Under loom, what stands for the slot copies. The copies are atomic
/// accesses to raw memory ([`SharedSlice`], the pipe's byte copies),
/// which loom cannot follow; each slot has a `loom::cell::UnsafeCell<()>`
/// here that the producer writes (`with_mut`) for every slot it
/// publishes, just before the publishing store, and the consumer reads
/// (`with`) for every slot it releases, just before the releasing store.
/// loom reports any two such accesses of one slot that are not ordered by
/// happens-before, so a RING-1 or RING-2 ordering too weak to publish the
/// copies fails the models, as a missing ordering on a real `UnsafeCell`
/// would.
#[cfg(loom)]
pub(crate) struct Shadow([loom::cell::UnsafeCell<()>; LOOM_MAX_SLOTS]);

#[cfg(loom)]
impl Default for Shadow {
    fn default() -> Shadow {
        Shadow(core::array::from_fn(|_| loom::cell::UnsafeCell::new(())))
    }
}

#[cfg(loom)]
impl fmt::Debug for Shadow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shadow")
    }
}

impl RingControl {
    /// A fresh control block: empty, nobody attached. All-zero bytes are
    /// the same state, so a zero-filled segment needs no initialisation.
    #[must_use]
    pub fn new() -> RingControl {
        RingControl {
            tail: CachePadded(AtomicU32::new(0)),
            head: CachePadded(AtomicU32::new(0)),
            data_ready: CachePadded(WaitPoint::new()),
            space_ready: CachePadded(WaitPoint::new()),
            roles: CachePadded(Roles::new()),
            #[cfg(loom)]
            shadow: Shadow::default(),
        }
    }

    /// The producer's role slot (diagnostics, tests).
    #[must_use]
    pub fn producer_slot(&self) -> &RoleSlot {
        &self.roles.0.slots[PRODUCER]
    }

    /// The consumer's role slot (diagnostics, tests).
    #[must_use]
    pub fn consumer_slot(&self) -> &RoleSlot {
        &self.roles.0.slots[CONSUMER]
    }

    /// The raw shared indices `(head, tail)`, for diagnostics and tests
    /// that scribble over them.
    #[must_use]
    pub fn raw_indices(&self) -> (&AtomicU32, &AtomicU32) {
        (&self.head.0, &self.tail.0)
    }
}

/// A view of a ring: its control block and its slots. Cheap to copy; attach
/// with [`producer`](Ring::producer) / [`consumer`](Ring::consumer).
pub struct Ring<'a, T> {
    ctl: &'a RingControl,
    data: NonNull<T>,
    mask: u32,
    _slots: PhantomData<&'a [core::cell::UnsafeCell<T>]>,
}

impl<T> Clone for Ring<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ring<'_, T> {}

// SAFETY: the control block is atomics; the slots are only accessed with
// atomic copies (`SharedSlice`), and `T: Pod` has no drop glue or pointers.
unsafe impl<T: Pod> Send for Ring<'_, T> {}
// SAFETY: as for Send.
unsafe impl<T: Pod> Sync for Ring<'_, T> {}

impl<T> fmt::Debug for Ring<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &(self.mask as u64 + 1))
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> Ring<'a, T> {
    /// A ring over `ctl` and the `capacity` slots at `data`. `None` if the
    /// capacity is not a power of two in `1..=MAX_CAPACITY`.
    ///
    /// # Safety
    /// - `data` is aligned for `T` and `capacity` elements from it stay
    ///   mapped, readable and writable, for `'a`;
    /// - those bytes are only accessed atomically for `'a` (through rings
    ///   over them, in this or other processes).
    #[must_use]
    pub unsafe fn from_raw(ctl: &'a RingControl, data: NonNull<T>, capacity: u32) -> Option<Self> {
        if capacity == 0 || capacity > MAX_CAPACITY || !capacity.is_power_of_two() {
            return None;
        }
        Some(Ring {
            ctl,
            data,
            mask: capacity - 1,
            _slots: PhantomData,
        })
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.mask as usize + 1
    }

    /// The control block.
    #[must_use]
    pub fn control(&self) -> &'a RingControl {
        self.ctl
    }

    /// Attaches the calling process as the producer.
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process holds the role (this one
    /// included). A dead holder's role is taken over.
    pub fn producer(&self) -> Result<Producer<'a, T>, AttachError> {
        self.producer_with(0)
    }

    /// [`producer`](Self::producer) recording the presence token `presence` (0:
    /// none): the role then lives while any `fork` copy of the handle
    /// does (see [`roles`](super::roles)). The caller holds the token
    /// for as long as the handle exists.
    ///
    /// # Errors
    /// As [`producer`](Self::producer); [`AttachError::Closed`] once the role
    /// closed.
    pub fn producer_with(&self, presence: u32) -> Result<Producer<'a, T>, AttachError> {
        asym::register();
        let epoch = asym::fork_epoch();
        self.ctl.roles.0.attach(PRODUCER, presence)?;
        let tail = self.ctl.tail.load(Ordering::Acquire);
        let head = self.ctl.head.load(Ordering::Acquire);
        Ok(Producer {
            ring: *self,
            tail,
            // `free`'s fast path trusts the cache: an impossible shared head
            // is cached as "full", so the first push refreshes and
            // validates it (and reports `Corrupt`).
            head_cache: if tail.wrapping_sub(head) > self.mask + 1 {
                tail.wrapping_sub(self.mask + 1)
            } else {
                head
            },
            spin: AdaptiveSpin::new(),
            idle: Idle::new(),
            epoch,
            presence,
            handoffs: self.ctl.roles.0.slots[PRODUCER].handoffs(),
            used_in: epoch,
            _not_sync: PhantomData,
        })
    }

    /// Attaches the calling process as the consumer.
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process holds the role.
    pub fn consumer(&self) -> Result<Consumer<'a, T>, AttachError> {
        self.consumer_with(0)
    }

    /// [`consumer`](Self::consumer) recording the presence token `presence` (0:
    /// none): the role then lives while any `fork` copy of the handle
    /// does (see [`roles`](super::roles)). The caller holds the token
    /// for as long as the handle exists.
    ///
    /// # Errors
    /// As [`consumer`](Self::consumer); [`AttachError::Closed`] once the role
    /// closed.
    pub fn consumer_with(&self, presence: u32) -> Result<Consumer<'a, T>, AttachError> {
        asym::register();
        let epoch = asym::fork_epoch();
        self.ctl.roles.0.attach(CONSUMER, presence)?;
        let head = self.ctl.head.load(Ordering::Acquire);
        Ok(Consumer {
            ring: *self,
            head,
            // "Nothing known ready": the first pop refreshes the tail.
            tail_cache: head,
            streak_head: head.wrapping_sub(1),
            streak_start: 0,
            spin: AdaptiveSpin::new(),
            idle: Idle::new(),
            epoch,
            presence,
            handoffs: self.ctl.roles.0.slots[CONSUMER].handoffs(),
            used_in: epoch,
            _not_sync: PhantomData,
        })
    }

    /// Under loom, the shadow accesses standing for the copies of slots
    /// `pos..pos + n` (see [`Shadow`]); nothing otherwise.
    #[inline(always)]
    fn shadow_access(&self, pos: u32, n: u32, write: bool) {
        #[cfg(loom)]
        for k in 0..n {
            let cell =
                &self.ctl.shadow.0[(pos.wrapping_add(k) & self.mask) as usize % LOOM_MAX_SLOTS];
            if write {
                cell.with_mut(|_| ());
            } else {
                cell.with(|_| ());
            }
        }
        #[cfg(not(loom))]
        let _ = (pos, n, write);
    }

    /// Slots `pos..pos + len` (mod capacity) as at most two raw ranges
    /// `(start, count)`, both inside the slots (`len <= capacity`).
    pub(crate) fn raw_ranges(&self, pos: u32, len: u32) -> [(NonNull<T>, usize); 2] {
        let start = pos & self.mask;
        let first = len.min(self.mask + 1 - start);
        // SAFETY: start < capacity, so the pointer stays inside the slots.
        let a = unsafe { NonNull::new_unchecked(self.data.as_ptr().add(start as usize)) };
        [(a, first as usize), (self.data, (len - first) as usize)]
    }

    /// The slot of position `pos` as a one-element view (the single-message
    /// paths: no wrap to split, so no bounds to compute at run time).
    #[inline(always)]
    fn slot(&self, pos: u32) -> SharedSlice<'_, T> {
        // SAFETY: `pos & mask` < capacity, so the element is inside the
        // slots, which `from_raw`'s contract keeps mapped and accessed only
        // atomically.
        unsafe {
            SharedSlice::from_raw(
                NonNull::new_unchecked(self.data.as_ptr().add((pos & self.mask) as usize)),
                1,
            )
        }
    }

    /// Slots `pos..pos + len` (mod capacity) as at most two shared views.
    #[inline(always)]
    fn views(&self, pos: u32, len: u32) -> (SharedSlice<'_, T>, SharedSlice<'_, T>) {
        let start = pos & self.mask;
        let first = len.min(self.mask + 1 - start);
        // SAFETY: `start + first <= capacity` and `len - first <= start`
        // (since len <= capacity), so both views lie inside the slots, which
        // `from_raw`'s contract keeps mapped and accessed only atomically.
        unsafe {
            (
                SharedSlice::from_raw(
                    NonNull::new_unchecked(self.data.as_ptr().add(start as usize)),
                    first as usize,
                ),
                SharedSlice::from_raw(self.data, (len - first) as usize),
            )
        }
    }
}

/// The producer end of a [`Ring`]: `Send`, not `Sync`. Dropping it
/// detaches (the consumer then drains and gets `Disconnected`).
pub struct Producer<'a, T> {
    ring: Ring<'a, T>,
    /// Our tail; the shared one is only ever written from it.
    tail: u32,
    /// Last head seen.
    head_cache: u32,
    spin: AdaptiveSpin,
    /// Consecutive failing `try_` calls, to rate-limit liveness checks.
    idle: Idle,
    /// The fork epoch of the process that attached it.
    epoch: u32,
    /// The presence token recorded in the role slot (0: none).
    presence: u32,
    /// Where this copy last took up the position: the role slot's
    /// hand-off count, and the fork epoch of the process (see `resync`).
    handoffs: u32,
    used_in: u32,
    _not_sync: PhantomData<Cell<()>>,
}

/// The consumer end of a [`Ring`]: `Send`, not `Sync`. Dropping it
/// detaches (the producer then gets `Disconnected` when the ring is full).
pub struct Consumer<'a, T> {
    ring: Ring<'a, T>,
    head: u32,
    tail_cache: u32,
    /// Our position and the failing-call count when the current run of
    /// empty polls began (written on failing calls only), for the
    /// prefetch.
    streak_head: u32,
    streak_start: u32,
    spin: AdaptiveSpin,
    idle: Idle,
    /// The fork epoch of the process that attached it.
    epoch: u32,
    /// The presence token recorded in the role slot (0: none).
    presence: u32,
    /// Where this copy last took up the position: the role slot's
    /// hand-off count, and the fork epoch of the process (see `resync`).
    handoffs: u32,
    used_in: u32,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> fmt::Debug for Producer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}
impl<T> fmt::Debug for Consumer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// Consecutive empty polls after which a consumer prefetches the next
/// slot (see [`prefetch`]): a consumer waiting for a reply polls dozens of
/// times per round trip, one streaming behind a producer a few times per
/// message at most.
const PREFETCH_AFTER: u32 = 8;

/// A hint that the line holding `p` is about to be read. Not a memory
/// access (no data race, no fault on any address): `prefetcht0` on x86_64,
/// nothing elsewhere, under miri or under loom.
///
/// A consumer polling an empty ring calls it on the next slot before each
/// load of `tail`. The producer writes the slot before it publishes
/// `tail`, so a prefetch issued while `tail` is still old already fetches
/// the new slot; without it, the slot's line is only requested once the
/// new `tail` was seen, a second cross-core miss in series with the first.
///
/// Only after [`PREFETCH_AFTER`] empty polls: a consumer streaming right
/// behind the producer would otherwise pull the slot's line (which holds
/// the next slots too) away from the producer while it is still writing
/// them, one more transfer of the line per message.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    // SAFETY: `prefetcht0` only hints the cache; it reads no Rust-visible
    // memory, writes nothing, never faults, and touches no stack or flags.
    unsafe {
        core::arch::asm!(
            "prefetcht0 [{p}]",
            p = in(reg) p,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(loom))))]
    let _ = p;
}

/// Whether the peer of role `role` is gone for good: the cheap check
/// always, the liveness syscalls when `slow` or when `idle` says a check
/// is due.
fn peer_gone(roles: &Roles, role: usize, slow: bool, idle: &mut Idle) -> bool {
    let ticked = idle.tick();
    peer_gone_ticked(roles, role, slow, ticked, idle)
}

/// [`peer_gone`] for a call already counted: `ticked` is what
/// [`Idle::tick`] said.
fn peer_gone_ticked(roles: &Roles, role: usize, slow: bool, ticked: bool, idle: &mut Idle) -> bool {
    roles.gone(role, slow || (ticked && idle.interval_passed()))
}

impl<'a, T: Pod> Producer<'a, T> {
    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Sets how blocking pushes spin before sleeping: an
    /// [`AdaptiveSpin`] (the default, which learns), or a fixed [`Spin`]
    /// ([`Spin::NONE`] when both ends share a CPU).
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.spin = spin.into();
    }

    /// Free slots, refreshing the consumer's index only when the cached one
    /// shows fewer than `want`. `Err` if the shared head is impossible.
    #[inline(always)]
    fn free(&mut self, want: u32) -> Result<u32, ()> {
        // A `fork` copy of this end may have sent since we last did
        // (Python's shape: a child writes on the inherited end, then the
        // parent again): then we go on from where it left off rather than
        // over its messages. A copy that takes the position up in another
        // process than the last user bumps the role's hand-off count, so
        // the check is a read of a line nobody writes meanwhile (reading
        // the shared tail itself here doubled a ping-pong's round trip).
        let seen = self.ring.ctl.roles.0.slots[PRODUCER].handoffs();
        if seen != self.handoffs || asym::fork_epoch() != self.used_in {
            self.resync(seen)?;
        }
        let cap = self.ring.mask + 1;
        let free = cap - self.tail.wrapping_sub(self.head_cache);
        if free >= want {
            return Ok(free);
        }
        // SYNC POINT RING-2 (Acquire): the consumer finished reading the
        // slots before it published this head.
        let head = self.ring.ctl.head.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > cap {
            return Err(());
        }
        self.head_cache = head;
        Ok(cap - used)
    }

    /// Takes up the shared tail another copy of this end left (see
    /// `free`; the role's hand-off count was `seen`) and records the
    /// hand-off. `Err` if the indices are impossible.
    #[cold]
    #[inline(never)]
    fn resync(&mut self, seen: u32) -> Result<(), ()> {
        // SYNC POINT RING-1 (Acquire) for the other copy's tail store, and
        // RING-2 for the head, as in `free`.
        let tail = self.ring.ctl.tail.load(Ordering::Acquire);
        let head = self.ring.ctl.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.ring.mask + 1 {
            return Err(());
        }
        self.tail = tail;
        self.head_cache = head;
        self.handoffs = self.ring.ctl.roles.0.slots[PRODUCER].hand_off(seen);
        self.used_in = asym::fork_epoch();
        Ok(())
    }

    /// Free slots right now.
    ///
    /// # Errors
    /// `Corrupt` if the consumer's shared index is impossible.
    pub fn slots(&mut self) -> Result<usize, TrySendError<()>> {
        self.free(u32::MAX)
            .map(|n| n as usize)
            .map_err(|()| TrySendError::Corrupt(()))
    }

    /// Whether the ring is full (as far as this producer can tell).
    #[doc(alias = "full")]
    #[must_use]
    pub fn is_full(&mut self) -> bool {
        matches!(self.free(1), Ok(0))
    }

    #[inline(always)]
    fn publish(&mut self, n: u32) {
        self.ring.shadow_access(self.tail, n, true);
        self.tail = self.tail.wrapping_add(n);
        // SYNC POINT RING-1 (Release): the slots written before are visible
        // to a consumer that loads this tail.
        self.ring.ctl.tail.store(self.tail, Ordering::Release);
        self.ring.ctl.data_ready.notify();
    }

    #[cold]
    fn full_error(&mut self, slow: bool) -> TrySendError<()> {
        let ticked = self.idle.tick();
        self.full_error_ticked(slow, ticked)
    }

    #[cold]
    fn full_error_ticked(&mut self, slow: bool, ticked: bool) -> TrySendError<()> {
        if peer_gone_ticked(
            &self.ring.ctl.roles.0,
            CONSUMER,
            slow,
            ticked,
            &mut self.idle,
        ) {
            TrySendError::Disconnected(())
        } else {
            TrySendError::Full(())
        }
    }

    /// Pushes `value` if there is room.
    ///
    /// # Errors
    /// `Full` (the ring is full), `Disconnected` (full, and the consumer is
    /// gone), `Corrupt` (impossible shared index); the value comes back.
    #[doc(alias = "put_nowait")]
    #[inline(always)]
    pub fn try_push(&mut self, value: T) -> Result<(), TrySendError<T>> {
        self.push_inner(value, false)
    }

    #[inline(always)]
    fn push_inner(&mut self, value: T, slow: bool) -> Result<(), TrySendError<T>> {
        match self.free(1) {
            Ok(0) => {
                // The common failure of a busy poller stays inline: a
                // count and one load of a line nobody writes meanwhile.
                let ticked = self.idle.tick();
                if !slow && !ticked && !self.ring.ctl.roles.0.all_left(CONSUMER) {
                    return Err(TrySendError::Full(value));
                }
                return Err(match self.full_error_ticked(slow, ticked) {
                    TrySendError::Disconnected(()) => TrySendError::Disconnected(value),
                    _ => TrySendError::Full(value),
                });
            }
            Ok(_) => {}
            Err(()) => return Err(TrySendError::Corrupt(value)),
        }
        // Cannot fail: the view has one element.
        let _ = self.ring.slot(self.tail).set(0, value);
        self.publish(1);
        Ok(())
    }

    /// Pushes `value`, waiting while the ring is full.
    ///
    /// # Errors
    /// `Disconnected` if the consumer is gone while the ring is full;
    /// `Corrupt` on impossible shared indices. The value comes back.
    #[doc(alias = "put")]
    pub fn push(&mut self, value: T) -> Result<(), SendError<T>> {
        self.push_deadline(value, None)
            .map_err(SendTimeoutError::untimed)
    }

    /// Pushes `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected` or `Corrupt`; the value comes back.
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
        let ctl = self.ring.ctl;
        let mut spin = self.spin;
        let mut value = Some(value);
        let r = ctl.space_ready.block_on(&mut spin, 0, deadline, |slow| {
            let v = value.take()?;
            match self.push_inner(v, slow) {
                Ok(()) => Some(Ok(())),
                Err(e) => match e.blocking() {
                    Ok(err) => Some(Err(err)),
                    Err(v) => {
                        value = Some(v);
                        None
                    }
                },
            }
        });
        self.spin = spin;
        match (r, value) {
            (Some(r), _) => r,
            (None, Some(v)) => Err(SendTimeoutError::Timeout(v)),
            // `value` is only taken by an attempt that returns Some.
            (None, None) => Ok(()),
        }
    }

    /// Pushes as many of `values` as fit right now, in order; returns how
    /// many (0 if the ring is full). One index publication for the batch.
    ///
    /// # Errors
    /// `Disconnected` if none fit and the consumer is gone; `Corrupt` on
    /// impossible shared indices.
    pub fn push_slice(&mut self, values: &[T]) -> Result<usize, TrySendError<()>> {
        let want = u32::try_from(values.len()).unwrap_or(u32::MAX);
        let free = self.free(want).map_err(|()| TrySendError::Corrupt(()))?;
        let n = free.min(want);
        if n == 0 {
            return match self.full_error(false) {
                TrySendError::Disconnected(()) if !values.is_empty() => {
                    Err(TrySendError::Disconnected(()))
                }
                _ => Ok(0),
            };
        }
        let (first, second) = self.ring.views(self.tail, n);
        let split = first.len();
        // Cannot fail: the views are exactly n elements long.
        let _ = first.write_from(0, &values[..split]);
        let _ = second.write_from(0, &values[split..n as usize]);
        self.publish(n);
        Ok(n as usize)
    }

    /// Hands out exactly `n` free slots to fill in place; they are
    /// published by [`WriteChunk::commit`]. Dropping the chunk publishes
    /// nothing.
    ///
    /// # Errors
    /// `Full` if fewer than `n` slots are free (or `n` exceeds the
    /// capacity), `Disconnected` if so and the consumer is gone, `Corrupt`
    /// on impossible shared indices.
    pub fn write_chunk(&mut self, n: usize) -> Result<WriteChunk<'_, 'a, T>, TrySendError<()>> {
        self.write_chunk_inner(n, false)
    }

    pub(crate) fn write_chunk_inner(
        &mut self,
        n: usize,
        slow: bool,
    ) -> Result<WriteChunk<'_, 'a, T>, TrySendError<()>> {
        let Ok(want) = u32::try_from(n) else {
            return Err(TrySendError::Full(()));
        };
        let free = self.free(want).map_err(|()| TrySendError::Corrupt(()))?;
        if free < want {
            return Err(self.full_error(slow));
        }
        Ok(WriteChunk {
            len: want,
            producer: self,
        })
    }

    /// The nominal spin budget of blocking pushes (see
    /// [`AdaptiveSpin::nominal`]).
    pub(crate) fn spin(&self) -> Spin {
        self.spin.nominal()
    }

    /// Blocks (spin at least `floor`, then sleep) until `n` slots are free
    /// or the deadline.
    pub(crate) fn wait_for_space(
        &mut self,
        n: usize,
        floor: Spin,
        deadline: Option<Deadline>,
    ) -> Option<Result<(), TrySendError<()>>> {
        let ctl = self.ring.ctl;
        let mut spin = self.spin;
        let r = ctl
            .space_ready
            .block_on(&mut spin, floor.iterations, deadline, |slow| {
                match self.write_chunk_inner(n, slow) {
                    Ok(_) => Some(Ok(())),
                    Err(TrySendError::Full(())) => None,
                    Err(e) => Some(Err(e)),
                }
            });
        self.spin = spin;
        r
    }
}

impl<T> Producer<'_, T> {
    /// Closes the role for good ([`CLOSED`](super::CLOSED)) and detaches:
    /// the peer sees `Disconnected` (after draining) even while a `fork`
    /// copy of this handle lives, and nobody attaches in this role again.
    pub fn close(self) {
        self.ring.ctl.roles.0.close(PRODUCER);
        drop(self);
    }

    /// Drops this copy of a handle whose presence token another copy
    /// (inherited across `fork`) still holds: the role stays attached,
    /// held by that copy.
    pub fn forget_copy(self) {
        core::mem::forget(self);
    }
}

impl<T> Drop for Producer<'_, T> {
    fn drop(&mut self) {
        // Without a presence, in a forked child the registration is the
        // parent's; with one, the last copy detaches (`Roles::detach`).
        let same = asym::fork_epoch() == self.epoch;
        if self.ring.ctl.roles.0.detach(PRODUCER, self.presence, same) {
            self.ring.ctl.data_ready.notify();
        }
    }
}

/// Free slots of a [`Producer`] handed out by
/// [`write_chunk`](Producer::write_chunk): fill them through
/// [`slices`](Self::slices), then [`commit`](Self::commit).
pub struct WriteChunk<'p, 'a, T> {
    producer: &'p mut Producer<'a, T>,
    len: u32,
}

impl<T: Pod> WriteChunk<'_, '_, T> {
    /// The slots as two shared views (the second is empty unless the chunk
    /// wraps around the end of the ring). Writes go straight to the ring.
    #[must_use]
    pub fn slices(&self) -> (SharedSlice<'_, T>, SharedSlice<'_, T>) {
        self.producer.ring.views(self.producer.tail, self.len)
    }

    /// The slots as raw ranges (see [`Ring::raw_ranges`]).
    pub(crate) fn raw(&self) -> [(NonNull<T>, usize); 2] {
        self.producer.ring.raw_ranges(self.producer.tail, self.len)
    }

    /// Number of slots in the chunk.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the chunk has no slots.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes the first `n` slots (at most the chunk's length).
    pub fn commit(self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(self.len);
        if n > 0 {
            self.producer.publish(n);
        }
    }

    /// Publishes the whole chunk.
    pub fn commit_all(self) {
        let n = self.len;
        self.commit(n as usize);
    }
}

impl<'a, T: Pod> Consumer<'a, T> {
    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Sets how blocking pops spin before sleeping: an
    /// [`AdaptiveSpin`] (the default, which learns), or a fixed [`Spin`]
    /// ([`Spin::NONE`] when both ends share a CPU).
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.spin = spin.into();
    }

    /// Ready slots, refreshing the producer's index when the cached one
    /// shows fewer than `want`. `Err` if the shared tail is impossible.
    #[inline(always)]
    fn ready(&mut self, want: u32) -> Result<u32, ()> {
        // As the producer's `free`: a `fork` copy of this end may have
        // received since we last did; we go on from its position rather
        // than receive its messages again.
        let seen = self.ring.ctl.roles.0.slots[CONSUMER].handoffs();
        if seen != self.handoffs || asym::fork_epoch() != self.used_in {
            self.resync(seen)?;
        }
        let ready = self.tail_cache.wrapping_sub(self.head);
        if ready >= want {
            return Ok(ready);
        }
        if ready == 0
            && self.streak_head == self.head
            && self.idle.calls().wrapping_sub(self.streak_start) >= PREFETCH_AFTER
        {
            // Polling an empty ring: ask for the next slot's line too, so
            // that the miss on it overlaps the miss on `tail` instead of
            // following it (see `prefetch`).
            prefetch(
                self.ring
                    .data
                    .as_ptr()
                    .wrapping_add((self.head & self.ring.mask) as usize),
            );
        }
        // SYNC POINT RING-1 (Acquire): the producer wrote the slots before
        // it published this tail.
        let tail = self.ring.ctl.tail.load(Ordering::Acquire);
        let ready = tail.wrapping_sub(self.head);
        if ready > self.ring.mask + 1 {
            return Err(());
        }
        self.tail_cache = tail;
        Ok(ready)
    }

    /// Takes up the shared head another copy of this end left (see
    /// `ready`; the hand-off count was `seen`) and records the hand-off.
    /// `Err` if the indices are impossible.
    #[cold]
    #[inline(never)]
    fn resync(&mut self, seen: u32) -> Result<(), ()> {
        // SYNC POINT RING-2 (Acquire) for the other copy's head store
        // (its reads of the slots are done), RING-1 for the tail.
        let head = self.ring.ctl.head.load(Ordering::Acquire);
        let tail = self.ring.ctl.tail.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.ring.mask + 1 {
            return Err(());
        }
        self.head = head;
        self.tail_cache = head;
        self.handoffs = self.ring.ctl.roles.0.slots[CONSUMER].hand_off(seen);
        self.used_in = asym::fork_epoch();
        Ok(())
    }

    /// Values ready to pop right now.
    ///
    /// # Errors
    /// `Corrupt` if the producer's shared index is impossible.
    #[doc(alias = "qsize")]
    pub fn slots(&mut self) -> Result<usize, TryRecvError> {
        self.ready(u32::MAX)
            .map(|n| n as usize)
            .map_err(|()| TryRecvError::Corrupt)
    }

    /// Whether nothing is ready.
    #[doc(alias = "empty")]
    #[must_use]
    pub fn is_empty(&mut self) -> bool {
        matches!(self.ready(1), Ok(0))
    }

    #[inline(always)]
    fn release(&mut self, n: u32) {
        self.ring.shadow_access(self.head, n, false);
        self.head = self.head.wrapping_add(n);
        // SYNC POINT RING-2 (Release): our reads of the slots are done
        // before a producer that sees this head reuses them.
        self.ring.ctl.head.store(self.head, Ordering::Release);
        self.ring.ctl.space_ready.notify();
    }

    /// Empty: `Disconnected` if the producer is gone (after a last look at
    /// the tail, so everything it committed is drained first).
    #[cold]
    fn empty_error(&mut self, slow: bool) -> TryRecvError {
        let ticked = self.idle.tick();
        self.empty_error_ticked(slow, ticked)
    }

    #[cold]
    fn empty_error_ticked(&mut self, slow: bool, ticked: bool) -> TryRecvError {
        if peer_gone_ticked(
            &self.ring.ctl.roles.0,
            PRODUCER,
            slow,
            ticked,
            &mut self.idle,
        ) {
            match self.ready(1) {
                Ok(0) => TryRecvError::Disconnected,
                Ok(_) => TryRecvError::Empty,
                Err(()) => TryRecvError::Corrupt,
            }
        } else {
            TryRecvError::Empty
        }
    }

    /// Pops a value if one is ready.
    ///
    /// # Errors
    /// `Empty`, `Disconnected` (empty and the producer is gone), `Corrupt`.
    #[doc(alias = "get_nowait")]
    #[inline(always)]
    pub fn try_pop(&mut self) -> Result<T, TryRecvError> {
        self.pop_inner(false)
    }

    #[inline(always)]
    fn pop_inner(&mut self, slow: bool) -> Result<T, TryRecvError> {
        match self.ready(1) {
            Ok(0) => {
                // The common failure of a busy poller stays inline (see
                // `Producer::push_inner`).
                if self.streak_head != self.head {
                    self.streak_head = self.head;
                    self.streak_start = self.idle.calls();
                }
                let ticked = self.idle.tick();
                if !slow && !ticked && !self.ring.ctl.roles.0.all_left(PRODUCER) {
                    return Err(TryRecvError::Empty);
                }
                return Err(self.empty_error_ticked(slow, ticked));
            }
            Ok(_) => {}
            Err(()) => return Err(TryRecvError::Corrupt),
        }
        let value = self.ring.slot(self.head).get(0).unwrap_or_else(T::zeroed);
        self.release(1);
        Ok(value)
    }

    /// Pops a value, waiting while the ring is empty.
    ///
    /// # Errors
    /// `Disconnected` once the ring is drained and the producer is gone;
    /// `Corrupt` on impossible shared indices.
    #[doc(alias = "get")]
    pub fn pop(&mut self) -> Result<T, RecvError> {
        self.pop_deadline(None).map_err(RecvTimeoutError::untimed)
    }

    /// Pops a value, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected` or `Corrupt`.
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.pop_deadline(Some(Deadline::after(timeout)))
    }

    /// Pops a value, waiting until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// As [`pop_timeout`](Self::pop_timeout).
    pub fn pop_deadline(&mut self, deadline: Option<Deadline>) -> Result<T, RecvTimeoutError> {
        let ctl = self.ring.ctl;
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

    /// Pops up to `out.len()` ready values into `out`; returns how many
    /// (0 if none is ready). One index publication for the batch.
    ///
    /// # Errors
    /// `Disconnected` if nothing is ready and the producer is gone;
    /// `Corrupt` on impossible shared indices.
    pub fn pop_into(&mut self, out: &mut [T]) -> Result<usize, TryRecvError> {
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let ready = self.ready(want).map_err(|()| TryRecvError::Corrupt)?;
        let n = ready.min(want);
        if n == 0 {
            return match self.empty_error(false) {
                TryRecvError::Empty => Ok(0),
                _ if out.is_empty() => Ok(0),
                e => Err(e),
            };
        }
        let (first, second) = self.ring.views(self.head, n);
        let split = first.len();
        // Cannot fail: the views are exactly n elements long.
        let _ = first.read_into(0, &mut out[..split]);
        let _ = second.read_into(0, &mut out[split..n as usize]);
        self.release(n);
        Ok(n as usize)
    }

    /// Hands out exactly `n` ready slots to read in place; they are
    /// released by [`ReadChunk::commit`]. Dropping the chunk releases
    /// nothing (the values stay ready).
    ///
    /// # Errors
    /// `Empty` if fewer than `n` values are ready, `Disconnected` if none
    /// is and the producer is gone, `Corrupt` on impossible indices.
    pub fn read_chunk(&mut self, n: usize) -> Result<ReadChunk<'_, 'a, T>, TryRecvError> {
        self.read_chunk_inner(n, false)
    }

    pub(crate) fn read_chunk_inner(
        &mut self,
        n: usize,
        slow: bool,
    ) -> Result<ReadChunk<'_, 'a, T>, TryRecvError> {
        let Ok(want) = u32::try_from(n) else {
            return Err(TryRecvError::Empty);
        };
        let ready = self.ready(want).map_err(|()| TryRecvError::Corrupt)?;
        if ready < want {
            return Err(if ready == 0 {
                self.empty_error(slow)
            } else {
                TryRecvError::Empty
            });
        }
        Ok(ReadChunk {
            len: want,
            consumer: self,
        })
    }

    /// The nominal spin budget of blocking pops (see
    /// [`AdaptiveSpin::nominal`]).
    pub(crate) fn spin(&self) -> Spin {
        self.spin.nominal()
    }

    /// Blocks (spin at least `floor`, then sleep) until at least one value
    /// is ready.
    pub(crate) fn wait_for_data(
        &mut self,
        floor: Spin,
        deadline: Option<Deadline>,
    ) -> Option<Result<(), TryRecvError>> {
        let ctl = self.ring.ctl;
        let mut spin = self.spin;
        let r = ctl
            .data_ready
            .block_on(&mut spin, floor.iterations, deadline, |slow| {
                match self.ready(1) {
                    Ok(0) => match self.empty_error(slow) {
                        TryRecvError::Empty => None,
                        e => Some(Err(e)),
                    },
                    Ok(_) => Some(Ok(())),
                    Err(()) => Some(Err(TryRecvError::Corrupt)),
                }
            });
        self.spin = spin;
        r
    }

    /// Whether the producer is gone (cheap check plus, when `slow`, a
    /// liveness check).
    pub(crate) fn producer_gone(&mut self, slow: bool) -> bool {
        peer_gone(&self.ring.ctl.roles.0, PRODUCER, slow, &mut self.idle)
    }
}

impl<T> Consumer<'_, T> {
    /// Closes the role for good ([`CLOSED`](super::CLOSED)) and detaches:
    /// the peer sees `Disconnected` (after draining) even while a `fork`
    /// copy of this handle lives, and nobody attaches in this role again.
    pub fn close(self) {
        self.ring.ctl.roles.0.close(CONSUMER);
        drop(self);
    }

    /// Drops this copy of a handle whose presence token another copy
    /// (inherited across `fork`) still holds: the role stays attached,
    /// held by that copy.
    pub fn forget_copy(self) {
        core::mem::forget(self);
    }
}

impl<T> Drop for Consumer<'_, T> {
    fn drop(&mut self) {
        // Without a presence, in a forked child the registration is the
        // parent's; with one, the last copy detaches (`Roles::detach`).
        let same = asym::fork_epoch() == self.epoch;
        if self.ring.ctl.roles.0.detach(CONSUMER, self.presence, same) {
            self.ring.ctl.space_ready.notify();
        }
    }
}

/// Ready slots of a [`Consumer`] handed out by
/// [`read_chunk`](Consumer::read_chunk).
pub struct ReadChunk<'c, 'a, T> {
    consumer: &'c mut Consumer<'a, T>,
    len: u32,
}

impl<T: Pod> ReadChunk<'_, '_, T> {
    /// The values as two shared views (the second is empty unless the
    /// chunk wraps). Reads come straight from the ring.
    #[must_use]
    pub fn slices(&self) -> (SharedSlice<'_, T>, SharedSlice<'_, T>) {
        self.consumer.ring.views(self.consumer.head, self.len)
    }

    /// The values as raw ranges (see [`Ring::raw_ranges`]).
    pub(crate) fn raw(&self) -> [(NonNull<T>, usize); 2] {
        self.consumer.ring.raw_ranges(self.consumer.head, self.len)
    }

    /// Number of values in the chunk.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the chunk is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Releases the first `n` values (at most the chunk's length) to the
    /// producer: they are consumed.
    pub fn commit(self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(self.len);
        if n > 0 {
            self.consumer.release(n);
        }
    }

    /// Releases the whole chunk.
    pub fn commit_all(self) {
        let n = self.len;
        self.commit(n as usize);
    }
}

/// Bytes of a [`RingControl`] in a segment: the slots start this far into
/// the payload.
pub const CONTROL_LEN: usize = 5 * 128;

#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<RingControl>(), CONTROL_LEN);

/// Checks a ring capacity: the one place it is checked.
///
/// # Errors
/// Not a power of two in `1..=MAX_CAPACITY`.
pub fn validate_capacity(capacity: usize) -> Result<u32, LayoutError> {
    match u32::try_from(capacity) {
        Ok(c) if c.is_power_of_two() && c <= MAX_CAPACITY => Ok(c),
        _ => Err(LayoutError::new(
            "ring capacity must be a power of two in 1..=2^31",
        )),
    }
}

/// The payload length of a ring of `capacity` elements of `size` bytes
/// aligned to `align` (any of them possibly read from a header nobody
/// vouches for): the control block, then the slots.
///
/// # Errors
/// A bad capacity or alignment, or a payload too large for memory.
pub fn payload_len_for(capacity: usize, size: usize, align: usize) -> Result<usize, LayoutError> {
    validate_capacity(capacity)?;
    if !align.is_power_of_two() || align > PAYLOAD_ALIGN {
        return Err(LayoutError::new(
            "the element alignment must be a power of two up to 128",
        ));
    }
    capacity
        .checked_mul(size)
        .and_then(|b| b.checked_add(CONTROL_LEN))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or(LayoutError::new("the ring does not fit in memory"))
}

/// A [`Ring`] of `T` as the payload of a segment (kind `ring`): a
/// [`RingControl`] then `capacity` elements. Never constructed: it names
/// the [`Object`], whose view is a [`Ring`].
#[derive(Debug)]
pub enum Spsc<T> {
    #[doc(hidden)]
    _Never(core::convert::Infallible, PhantomData<fn() -> T>),
}

// SAFETY: `payload_len` = 640 + capacity * size_of::<T>() for a checked
// capacity; `attach` places the control block (atomics, 128-aligned) at 0
// and `capacity` elements at 640 (a multiple of every alignment up to
// 128), which the ring only accesses through atomic copies at masked
// indices. All-zero is a fresh ring: `init` writes nothing.
unsafe impl<T: Pod> Object for Spsc<T> {
    const KIND: Kind = Kind::RING;
    type Params = usize;
    type View<'a> = Ring<'a, T>;

    type Element = T;

    fn encode(capacity: &usize) -> [u64; 2] {
        [*capacity as u64, 0]
    }

    fn decode(recorded: [u64; 2]) -> Result<usize, LayoutError> {
        if recorded[1] != 0 {
            return Err(LayoutError::new("a ring records no second parameter"));
        }
        let capacity = usize::try_from(recorded[0])
            .map_err(|_| LayoutError::new("the ring capacity does not fit in memory"))?;
        validate_capacity(capacity)?;
        Ok(capacity)
    }

    fn payload_len(capacity: &usize) -> Result<usize, LayoutError> {
        payload_len_for(
            *capacity,
            core::mem::size_of::<T>(),
            core::mem::align_of::<T>(),
        )
    }

    unsafe fn init(_payload: NonNull<u8>, _capacity: &usize) {}

    unsafe fn attach<'a>(payload: NonNull<u8>, capacity: &usize) -> Ring<'a, T> {
        let base = payload.as_ptr();
        // SAFETY: `attach`'s contract: `payload_len(capacity)` bytes,
        // PAYLOAD_ALIGN-aligned, mapped for 'a, accessed only atomically;
        // the control block is atomics (valid for any bytes) at 0, the
        // slots at CONTROL_LEN (aligned for T, see above).
        unsafe {
            let ctl = &*base.cast::<RingControl>();
            let data = NonNull::new_unchecked(base.add(CONTROL_LEN)).cast::<T>();
            Ring::from_raw(ctl, data, *capacity as u32)
        }
        .expect("the caller checked payload_len(capacity), which checks the capacity")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// With nobody asleep, pushes and pops (`try_` and blocking) write
    /// nothing to the wait points (no shared-line write, no wake
    /// syscall): the futex words and the wake stamps stay as they were.
    #[test]
    fn no_sleeper_no_wait_point_write() {
        let ctl = RingControl::new();
        let mut slots = [0u32; 4];
        // SAFETY: `slots` outlives the ring and is only used through it.
        let ring = unsafe { Ring::from_raw(&ctl, NonNull::from(&mut slots).cast(), 4) }.unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let words = |w: &WaitPoint| {
            (
                w.seq.load(Ordering::Relaxed),
                w.woke_at.load(Ordering::Relaxed),
            )
        };
        let before = (words(&ctl.data_ready), words(&ctl.space_ready));
        for i in 0..100 {
            tx.try_push(i).unwrap();
            tx.push(i + 1).unwrap();
            assert_eq!(rx.try_pop(), Ok(i));
            assert_eq!(rx.pop(), Ok(i + 1));
        }
        assert_eq!((words(&ctl.data_ready), words(&ctl.space_ready)), before);
    }
}
