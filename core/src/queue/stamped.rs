//! `StampedRing<T>`: a single-producer single-consumer ring of `T: Pod`
//! built for latency: a message moves **one** cache line between the
//! cores.
//!
//! # Which SPSC ring to choose
//! | | [`ring::Ring`](super::ring::Ring) (index ring) | [`StampedRing`] |
//! |---|---|---|
//! | a message moves | its slot and the shared indices (`tail` to the consumer, `head` back): index lines cross on every message | its slot (stamp and value together): a slot line goes to the consumer, and back to the producer a lap later |
//! | round trip (busy poll) | ≈1.4× a bare cache-line ping-pong | ≈1.0× |
//! | streaming, one message per call | 0.8–0.9× a raw index ring when the VM is in its fast mode (≈100 M/s), 1.5–2× in its slow mode (≈25 M/s) | 1.2–1.3× the raw index ring in the fast mode (≈130 M/s), 4–5× in the slow one: no index line to fight over |
//! | batches, chunks | `push_slice`/`pop_into` (≈3.5× the raw ring, one index store per batch), `write_chunk`/`read_chunk` slices of contiguous values | one message at a time |
//! | carries | `T: Pod`, and the byte [`Pipe`](super::pipe::Pipe) | `T: Pod` |
//!
//! (Figures from `shmkit bench` on the 2-vCPU reference VM; see
//! `docs/bench.md`.) Choose the stamped ring for single messages, whether
//! latency or streaming matters; the index ring for batches, in-place
//! chunks and byte streams.
//!
//! Only on targets with 64-bit atomics (stamps are 64-bit words).
//!
//! # Layout
//! A [`StampedControl`] (five 128-byte lines: the position hints, the two
//! wait points, the two role slots), then `capacity` slots of a stamp word
//! and the value (see [`super::slots`]). The capacity is a power of
//! two; an all-zero payload is an empty ring.
//!
//! # Protocol
//! Each slot's stamp is `lap << 14 | state` (the
//! [MPMC queue's encoding](super::mpmc::stamp), without claims): `EMPTY(lap)`
//! — free for the producer of position `lap·cap + i`; `FULL(lap)` — holds
//! its message. The producer alone writes `EMPTY → FULL`, the consumer
//! alone `FULL(lap) → EMPTY(lap + 1)`, both with plain stores: no
//! read-modify-write anywhere. Each side keeps its position privately and
//! publishes it as a hint (`tail`, `head`) that only a side attaching
//! later (taking over a dead holder's role) reads.
//!
//! - SYNC POINT STAMPED-1: the producer's value stores, then its `FULL`
//!   store (Release), pair with the consumer's stamp load (Acquire), then
//!   its value loads.
//! - SYNC POINT STAMPED-2: the consumer's value loads, then its `EMPTY`
//!   store (Release), pair with the producer's stamp load (Acquire) before
//!   it overwrites the slot.
//! - SYNC POINT STAMPED-3: a hint store (Release) follows the stamp store
//!   it advertises; an attaching side loads it (Acquire), so the slots
//!   agree with it.
//!
//! The loom model fails with a Relaxed `FULL` store (a stale value);
//! STAMPED-2 guards against load buffering, which loom does not model
//! (see the MPMC queue's notes on MPMC-2).
//!
//! # Guarantees
//! As the index ring's: FIFO; a message is committed by the producer's
//! `FULL` store and consumed by the consumer's `EMPTY` store, each one
//! atomic step, so a producer killed mid-push published nothing and a
//! consumer killed mid-pop consumed nothing (the next consumer gets that
//! message again). One producer and one consumer may attach
//! ([`AttachError::Taken`] otherwise); a dead holder's role is taken over
//! and resumes from the hint, corrected by the stamps. Disconnect: as the
//! index ring's. Hostile bytes: slot indices are masked, stamps and hints
//! only compared; impossible states give `Corrupt`, every loop is bounded.
//!
//! ```
//! use shmkit_core::queue::stamped::{StampedControl, StampedRing};
//! use shmkit_core::primitive::AtomicU64;
//!
//! let control = StampedControl::new();
//! let words: [AtomicU64; 8] = Default::default(); // 4 slots of a u64
//! let ring = StampedRing::<u64>::from_parts(&control, &words)?;
//! let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
//! tx.try_push(7).unwrap();
//! assert_eq!(rx.try_pop(), Ok(7));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::mpmc::{decode, stamp, EMPTY, FULL};
use super::roles::{AttachError, RoleSlot};
use super::slots::{self, SlotLayout};
use super::{
    asym, CachePadded, Idle, RecvError, RecvTimeoutError, Roles, SendError, SendTimeoutError,
    TryRecvError, TrySendError, WaitPoint, CONSUMER, PRODUCER,
};
use crate::header::{Kind, PAYLOAD_ALIGN};
use crate::object::{LayoutError, Object};
use crate::primitive::{AtomicU64, Ordering};
use crate::wait::{AdaptiveSpin, Deadline};

/// Largest capacity (slots).
pub const MAX_CAPACITY: usize = 1 << 31;

/// Laps are compared modulo 2^50, as the MPMC queue's.
const LAP_MASK: u64 = (1 << 50) - 1;
const LAP_HALF: u64 = 1 << 49;

/// The shared control block of a [`StampedRing`]. All-zero is a fresh
/// ring with nobody attached.
///
/// | field | written by | read by |
/// |---|---|---|
/// | `tail` | producer, after each push (a hint) | an attaching producer, `len` |
/// | `head` | consumer, after each pop (a hint) | an attaching consumer, `len` |
/// | `data_ready` | producer wakes | consumer sleeps |
/// | `space_ready` | consumer wakes | producer sleeps |
/// | `roles` | attach/detach ([`RoleSlot`]s, and the `present` counts) | both |
///
/// The roles line holds the role slots and the presence counts of
/// `queue::Roles`: the cheap "the peer left" of an empty or full
/// call is one load.
#[derive(Debug, Default)]
#[repr(C)]
pub struct StampedControl {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    data_ready: CachePadded<WaitPoint>,
    space_ready: CachePadded<WaitPoint>,
    roles: CachePadded<Roles>,
}

/// Bytes of a [`StampedControl`] in a segment: the slots start this far
/// into the payload.
pub const CONTROL_LEN: usize = 5 * 128;

#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<StampedControl>(), CONTROL_LEN);

impl StampedControl {
    /// A fresh control block (all zero, like a zero-filled segment).
    #[must_use]
    pub fn new() -> StampedControl {
        StampedControl {
            tail: CachePadded(AtomicU64::new(0)),
            head: CachePadded(AtomicU64::new(0)),
            data_ready: CachePadded(WaitPoint::new()),
            space_ready: CachePadded(WaitPoint::new()),
            roles: CachePadded(Roles::new()),
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

    /// The raw position hints `(head, tail)`, for diagnostics and tests.
    #[must_use]
    pub fn raw_positions(&self) -> (&AtomicU64, &AtomicU64) {
        (&self.head.0, &self.tail.0)
    }
}

/// A view of a stamped ring. Cheap to copy; attach with
/// [`producer`](StampedRing::producer) / [`consumer`](StampedRing::consumer).
pub struct StampedRing<'a, T> {
    ctl: &'a StampedControl,
    words: &'a [AtomicU64],
    mask: u64,
    shift: u32,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for StampedRing<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for StampedRing<'_, T> {}

impl<T> fmt::Debug for StampedRing<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StampedRing")
            .field("capacity", &(self.mask + 1))
            .finish_non_exhaustive()
    }
}

/// Checks a stamped ring capacity: the one place it is checked.
///
/// # Errors
/// Not a power of two in `1..=MAX_CAPACITY`.
pub fn validate_capacity(capacity: usize) -> Result<(), LayoutError> {
    if capacity.is_power_of_two() && capacity <= MAX_CAPACITY {
        Ok(())
    } else {
        Err(LayoutError::new(
            "stamped ring capacity must be a power of two in 1..=2^31",
        ))
    }
}

/// The payload length of a stamped ring of `capacity` elements of `size`
/// bytes aligned to `align` (possibly read from a header nobody vouches
/// for); the slots start at [`CONTROL_LEN`] rounded up to the element
/// alignment.
///
/// # Errors
/// Impossible parameters, or a payload too large for memory.
pub fn payload_len_for(capacity: usize, size: usize, align: usize) -> Result<usize, LayoutError> {
    validate_capacity(capacity)?;
    let slot = SlotLayout::for_element(size, align)?;
    capacity
        .checked_mul(slot.stride_bytes())
        .and_then(|b| b.checked_add(slots_at(align)))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or(LayoutError::new("the ring does not fit in memory"))
}

/// Offset of the first slot for elements aligned to `align` (at most
/// [`PAYLOAD_ALIGN`]).
#[must_use]
pub fn slots_at(align: usize) -> usize {
    CONTROL_LEN.next_multiple_of(align.clamp(1, PAYLOAD_ALIGN))
}

impl<'a, T: Pod> StampedRing<'a, T> {
    /// The slot layout of `T`, a compile-time constant (checked against
    /// [`SlotLayout::of`] in `from_parts`).
    const SLOT: SlotLayout = SlotLayout::constant::<T>();

    /// A ring over its parts; its capacity is `words.len()` divided by
    /// the slot size of `T` ([`SlotLayout::of`]). All-zero parts are an
    /// empty ring.
    ///
    /// # Errors
    /// The capacity is not a power of two in `1..=MAX_CAPACITY`, or
    /// `words` is not a whole number of slots.
    pub fn from_parts(
        ctl: &'a StampedControl,
        words: &'a [AtomicU64],
    ) -> Result<Self, LayoutError> {
        let slot = SlotLayout::of::<T>()?;
        debug_assert_eq!(slot, Self::SLOT);
        if words.len() % slot.stride_words != 0 {
            return Err(LayoutError::new(
                "the slot words are not a whole number of slots",
            ));
        }
        let capacity = words.len() / slot.stride_words;
        validate_capacity(capacity)?;
        Ok(StampedRing {
            ctl,
            words,
            mask: capacity as u64 - 1,
            shift: capacity.trailing_zeros(),
            _type: PhantomData,
        })
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.mask as usize + 1
    }

    /// The control block.
    #[must_use]
    pub fn control(&self) -> &'a StampedControl {
        self.ctl
    }

    /// The stamp word of position `pos`'s slot (diagnostics, tests).
    #[must_use]
    pub fn stamp_of(&self, pos: u64) -> &'a AtomicU64 {
        self.stamp_word(pos)
    }

    /// Messages pushed and not yet popped, as far as the hints tell
    /// (exact when nobody works).
    #[doc(alias = "qsize")]
    #[must_use]
    pub fn len(&self) -> usize {
        // Relaxed: a snapshot of two hints.
        let n = self
            .ctl
            .tail
            .load(Ordering::Relaxed)
            .wrapping_sub(self.ctl.head.load(Ordering::Relaxed));
        if n > self.mask + 1 {
            0
        } else {
            n as usize
        }
    }

    /// Whether [`len`](Self::len) is 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Attaches the calling process as the producer.
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process holds the role.
    pub fn producer(&self) -> Result<StampedProducer<'a, T>, AttachError> {
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
    pub fn producer_with(&self, presence: u32) -> Result<StampedProducer<'a, T>, AttachError> {
        asym::register();
        let epoch = asym::fork_epoch();
        self.ctl.roles.0.attach(PRODUCER, presence)?;
        Ok(StampedProducer {
            ring: *self,
            epoch,
            presence,
            // Acquire: STAMPED-3.
            tail: self.ctl.tail.load(Ordering::Acquire),
            spin: AdaptiveSpin::new(),
            idle: Idle::new(),
            _not_sync: PhantomData,
        })
    }

    /// Attaches the calling process as the consumer.
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process holds the role.
    pub fn consumer(&self) -> Result<StampedConsumer<'a, T>, AttachError> {
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
    pub fn consumer_with(&self, presence: u32) -> Result<StampedConsumer<'a, T>, AttachError> {
        asym::register();
        let epoch = asym::fork_epoch();
        self.ctl.roles.0.attach(CONSUMER, presence)?;
        Ok(StampedConsumer {
            ring: *self,
            epoch,
            presence,
            // Acquire: STAMPED-3.
            head: self.ctl.head.load(Ordering::Acquire),
            spin: AdaptiveSpin::new(),
            idle: Idle::new(),
            _not_sync: PhantomData,
        })
    }

    #[inline(always)]
    fn stamp_word(&self, pos: u64) -> &'a AtomicU64 {
        // In bounds: (pos & mask) < capacity (`from_parts`).
        &self.words[(pos & self.mask) as usize * Self::SLOT.stride_words]
    }

    #[inline(always)]
    fn value_words(&self, pos: u64) -> &'a [AtomicU64] {
        let i = (pos & self.mask) as usize * Self::SLOT.stride_words + Self::SLOT.value_word;
        // In bounds: the value ends within the slot (`SlotLayout`).
        &self.words[i..i + Self::SLOT.value_words]
    }

    #[inline(always)]
    fn lap(&self, pos: u64) -> u64 {
        (pos >> self.shift) & LAP_MASK
    }

    /// Where a side's position `pos` really is, from what the slots say.
    /// The side acts in state `mine` (`EMPTY` for the producer, `FULL` for
    /// the consumer) of `pos`'s lap, and waits while the slot shows the
    /// other state of the lap just before (producer: the previous lap's
    /// message is not yet popped) or of the same lap (consumer: not yet
    /// pushed); `Ok(pos)` then. A slot further on means `pos` is stale (a
    /// hint that lagged behind its last holder's final store): move on.
    /// `Err` for impossible states (a hostile peer), or after more steps
    /// than an honest lag allows.
    #[cold]
    fn resync(&self, mut pos: u64, mine: u64) -> Result<u64, ()> {
        let (wait_state, wait_ahead) = if mine == EMPTY {
            (FULL, LAP_MASK)
        } else {
            (EMPTY, 0)
        };
        for _ in 0..self.capacity() + 2 {
            // Acquire: STAMPED-1/2.
            let s = self.stamp_word(pos).load(Ordering::Acquire);
            let (lap, who, state) = decode(s);
            if who != 0 || (state != EMPTY && state != FULL) {
                return Err(());
            }
            let ahead = lap.wrapping_sub(self.lap(pos)) & LAP_MASK;
            if (ahead == 0 && state == mine) || (ahead == wait_ahead && state == wait_state) {
                return Ok(pos);
            }
            if (ahead == 0 && state != mine) || (ahead != 0 && ahead < LAP_HALF) {
                pos = pos.wrapping_add(1);
            } else {
                return Err(());
            }
        }
        Err(())
    }
}

/// The producer end of a [`StampedRing`]: `Send`, not `Sync`.
pub struct StampedProducer<'a, T> {
    ring: StampedRing<'a, T>,
    /// The fork epoch of the process that attached it.
    epoch: u32,
    /// The presence token recorded in the role slot (0: none).
    presence: u32,
    tail: u64,
    spin: AdaptiveSpin,
    idle: Idle,
    _not_sync: PhantomData<Cell<()>>,
}

/// The consumer end of a [`StampedRing`]: `Send`, not `Sync`.
pub struct StampedConsumer<'a, T> {
    ring: StampedRing<'a, T>,
    /// The fork epoch of the process that attached it.
    epoch: u32,
    /// The presence token recorded in the role slot (0: none).
    presence: u32,
    head: u64,
    spin: AdaptiveSpin,
    idle: Idle,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> fmt::Debug for StampedProducer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StampedProducer")
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}
impl<T> fmt::Debug for StampedConsumer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StampedConsumer")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> StampedProducer<'a, T> {
    /// Sets how blocking pushes spin before sleeping: an
    /// [`AdaptiveSpin`] (the default, which learns), or a fixed
    /// [`Spin`](crate::wait::Spin)
    /// ([`Spin::NONE`](crate::wait::Spin::NONE) when both ends share a CPU).
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.spin = spin.into();
    }

    #[inline(always)]
    fn push_inner(&mut self, value: T, slow: bool) -> Result<(), TrySendError<T>> {
        let r = &self.ring;
        let t = self.tail;
        let word = r.stamp_word(t);
        // SYNC POINT STAMPED-2 (Acquire): the consumer finished reading
        // the slot before it stored this EMPTY.
        if word.load(Ordering::Acquire) != stamp(r.lap(t), 0, EMPTY) {
            // The common failure of a busy poller stays inline: full at
            // our position (the previous lap's message), a count, and one
            // load of a line nobody writes meanwhile.
            let ticked = self.idle.tick();
            if !slow
                && !ticked
                && word.load(Ordering::Relaxed) == stamp(r.lap(t).wrapping_sub(1), 0, FULL)
                && !r.ctl.roles.0.all_left(CONSUMER)
            {
                return Err(TrySendError::Full(value));
            }
            return self.not_free(value, slow, ticked);
        }
        slots::store_value(r.value_words(t), &value);
        // SYNC POINT STAMPED-1 (Release): the value is visible to a
        // consumer that sees FULL.
        word.store(stamp(r.lap(t), 0, FULL), Ordering::Release);
        self.tail = t.wrapping_add(1);
        // Release: STAMPED-3.
        r.ctl.tail.store(self.tail, Ordering::Release);
        r.ctl.data_ready.notify();
        Ok(())
    }

    /// The slot at our position is not free: full, or our position is
    /// stale (we took over a dead producer's role), or corrupt.
    #[cold]
    fn not_free(&mut self, value: T, slow: bool, ticked: bool) -> Result<(), TrySendError<T>> {
        match self.ring.resync(self.tail, EMPTY) {
            Err(()) => return Err(TrySendError::Corrupt(value)),
            Ok(t) if t != self.tail => {
                self.tail = t;
                return self.push_inner(value, slow);
            }
            Ok(_) => {}
        }
        // Full (the slot holds the previous lap).
        let check = slow || (ticked && self.idle.interval_passed());
        if self.ring.ctl.roles.0.gone(CONSUMER, check) {
            Err(TrySendError::Disconnected(value))
        } else {
            Err(TrySendError::Full(value))
        }
    }

    /// Pushes `value` if there is room.
    ///
    /// # Errors
    /// `Full`, `Disconnected` (full and the consumer is gone), `Corrupt`.
    #[doc(alias = "put_nowait")]
    #[inline(always)]
    pub fn try_push(&mut self, value: T) -> Result<(), TrySendError<T>> {
        self.push_inner(value, false)
    }

    /// Pushes `value`, waiting while the ring is full.
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
        let ctl = self.ring.ctl;
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

impl<T> StampedProducer<'_, T> {
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

impl<T> Drop for StampedProducer<'_, T> {
    fn drop(&mut self) {
        // Without a presence, in a forked child the registration is the
        // parent's; with one, the last copy detaches (`Roles::detach`).
        let same = asym::fork_epoch() == self.epoch;
        if self.ring.ctl.roles.0.detach(PRODUCER, self.presence, same) {
            self.ring.ctl.data_ready.notify();
        }
    }
}

impl<'a, T: Pod> StampedConsumer<'a, T> {
    /// Sets how blocking pops spin before sleeping: an
    /// [`AdaptiveSpin`] (the default, which learns), or a fixed
    /// [`Spin`](crate::wait::Spin)
    /// ([`Spin::NONE`](crate::wait::Spin::NONE) when both ends share a CPU).
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.spin = spin.into();
    }

    #[inline(always)]
    fn pop_inner(&mut self, slow: bool) -> Result<T, TryRecvError> {
        let r = &self.ring;
        let h = self.head;
        let word = r.stamp_word(h);
        // SYNC POINT STAMPED-1 (Acquire): the producer wrote the value
        // before it stored FULL.
        if word.load(Ordering::Acquire) != stamp(r.lap(h), 0, FULL) {
            // The common failure of a busy poller stays inline (see
            // `StampedProducer::push_inner`): empty at our position.
            let ticked = self.idle.tick();
            if !slow
                && !ticked
                && word.load(Ordering::Relaxed) == stamp(r.lap(h), 0, EMPTY)
                && !r.ctl.roles.0.all_left(PRODUCER)
            {
                return Err(TryRecvError::Empty);
            }
            return self.not_full(slow, ticked);
        }
        let value = slots::load_value(r.value_words(h));
        // SYNC POINT STAMPED-2 (Release): our reads are done before a
        // producer that sees this EMPTY overwrites the slot.
        word.store(stamp(r.lap(h).wrapping_add(1), 0, EMPTY), Ordering::Release);
        self.head = h.wrapping_add(1);
        // Release: STAMPED-3.
        r.ctl.head.store(self.head, Ordering::Release);
        r.ctl.space_ready.notify();
        Ok(value)
    }

    /// Nothing committed at our position: empty, our position is stale
    /// (we took over a dead consumer's role), or corrupt.
    #[cold]
    fn not_full(&mut self, slow: bool, ticked: bool) -> Result<T, TryRecvError> {
        match self.ring.resync(self.head, FULL) {
            Err(()) => return Err(TryRecvError::Corrupt),
            Ok(h) if h != self.head => {
                self.head = h;
                return self.pop_inner(slow);
            }
            Ok(_) => {}
        }
        let check = slow || (ticked && self.idle.interval_passed());
        if self.ring.ctl.roles.0.gone(PRODUCER, check) {
            // Look once more: the producer's last push may have landed
            // just before it left.
            let r = &self.ring;
            // Acquire: STAMPED-1.
            if r.stamp_word(self.head).load(Ordering::Acquire) == stamp(r.lap(self.head), 0, FULL) {
                return self.pop_inner(slow);
            }
            return Err(TryRecvError::Disconnected);
        }
        Err(TryRecvError::Empty)
    }

    /// Pops a message if one is ready.
    ///
    /// # Errors
    /// `Empty`, `Disconnected` (empty and the producer is gone), `Corrupt`.
    #[doc(alias = "get_nowait")]
    #[inline(always)]
    pub fn try_pop(&mut self) -> Result<T, TryRecvError> {
        self.pop_inner(false)
    }

    /// Pops a message, waiting while the ring is empty.
    ///
    /// # Errors
    /// `Disconnected` once drained with the producer gone; `Corrupt`.
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
}

impl<T> StampedConsumer<'_, T> {
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

impl<T> Drop for StampedConsumer<'_, T> {
    fn drop(&mut self) {
        // Without a presence, in a forked child the registration is the
        // parent's; with one, the last copy detaches (`Roles::detach`).
        let same = asym::fork_epoch() == self.epoch;
        if self.ring.ctl.roles.0.detach(CONSUMER, self.presence, same) {
            self.ring.ctl.space_ready.notify();
        }
    }
}

/// A [`StampedRing`] of `T` as the payload of a segment (kind
/// `stamped-ring`). Never constructed: it names the [`Object`], whose
/// view is a [`StampedRing`].
#[derive(Debug)]
pub enum StampedSpsc<T> {
    #[doc(hidden)]
    _Never(core::convert::Infallible, PhantomData<fn() -> T>),
}

// SAFETY: `payload_len` = `slots_at(align) + capacity * stride` for a
// checked capacity; `attach` places the control block (atomics, 128-
// aligned) at 0 and the slot words (8-aligned `AtomicU64`s) at
// `slots_at`, all inside the payload; the ring touches them only through
// those atomics, at masked indices. All-zero is an empty ring: `init`
// writes nothing.
unsafe impl<T: Pod> Object for StampedSpsc<T> {
    const KIND: Kind = Kind::STAMPED_RING;
    type Params = usize;
    type View<'a> = StampedRing<'a, T>;

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

    #[cfg(not(loom))]
    unsafe fn attach<'a>(payload: NonNull<u8>, capacity: &usize) -> StampedRing<'a, T> {
        let slot = SlotLayout::of::<T>().expect("checked by payload_len");
        let base = payload.as_ptr();
        // SAFETY: `attach`'s contract: `payload_len(capacity)` bytes at
        // `payload`, PAYLOAD_ALIGN-aligned, mapped for 'a, accessed by
        // everyone only atomically; the parts lie inside at aligned
        // offsets and are atomics, valid for any bytes.
        let (ctl, words) = unsafe {
            (
                &*base.cast::<StampedControl>(),
                core::slice::from_raw_parts(
                    base.add(slots_at(core::mem::align_of::<T>()))
                        .cast::<AtomicU64>(),
                    capacity * slot.stride_words,
                ),
            )
        };
        StampedRing::from_parts(ctl, words).expect("the capacity was checked")
    }

    /// Under loom atomics are not plain words: models build their rings
    /// with [`StampedRing::from_parts`].
    #[cfg(loom)]
    unsafe fn attach<'a>(_payload: NonNull<u8>, _capacity: &usize) -> StampedRing<'a, T> {
        unimplemented!("loom models build rings with StampedRing::from_parts")
    }
}
