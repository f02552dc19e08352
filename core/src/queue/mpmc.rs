//! `Queue<T>`: a bounded multi-producer multi-consumer queue of `T: Pod`
//! in shared memory that survives processes killed at any instruction.
//!
//! Only on targets with 64-bit atomics: positions are free-running `u64`s
//! (they never wrap in practice, so stamps never suffer ABA).
//!
//! # Layout
//! A [`QueueControl`] (tail, head, two wait points), a registry of
//! producers (one [`RoleSlot`] and one *intent* word each), a registry of
//! consumers ([`RoleSlot`]s), one stamp per slot, and the slots.
//!
//! # Stamps
//! A slot's stamp is `position << 2 | state`:
//!
//! | state | meaning | set by |
//! |---|---|---|
//! | `EMPTY` | free for a producer at `position` | init (`i`), the consumer of `position - capacity` |
//! | `FULL` | holds the message of `position` | the producer of `position` (CAS: the **commit**) |
//! | `SKIPPED` | `position` was claimed by a producer that died before committing | a consumer (CAS) |
//!
//! # Push (producer claiming position `t`)
//! 1. Check the slot is free for `t`: stamp `EMPTY(t)`, or the stamp of the
//!    previous lap (`t - capacity`, `FULL`/`SKIPPED`) and `head` already
//!    past that position (its consumer committed but died, or has not yet
//!    stored, the release).
//! 2. Store `t` in our registry entry's **intent** (SeqCst), then CAS
//!    `tail` `t → t + 1` (SeqCst): the claim.
//! 3. Copy the value in (relaxed atomics), then CAS the stamp to `FULL(t)`
//!    (Release): the **commit**. If a consumer marked the position
//!    `SKIPPED` (it judged us dead), the CAS fails and we push again at a
//!    new position: nothing is lost or duplicated.
//! 4. Clear the intent (also when giving up with `Full` or `Corrupt`
//!    after losing a tail CAS: a live producer must announce no position
//!    it did not claim, or consumers could never skip that position).
//!
//! # Pop (consumer at position `h`)
//! 1. Stamp `FULL(h)` (Acquire): copy the value out speculatively, then CAS
//!    `head` `h → h + 1`. The CAS is the **delivery**: the message belongs to
//!    the one consumer whose CAS succeeds; a loser retries and its copy is
//!    discarded. Then release the slot (CAS to `EMPTY(h + capacity)`); if
//!    we die before that, producers see `head > h` instead (step 1 above).
//! 2. Stamp `SKIPPED(h)`: advance `head` past it the same way.
//! 3. Otherwise, if `tail <= h` the queue is empty. If `tail > h`, a
//!    producer claimed `h` and has not committed. Usually it is about to;
//!    but if no **live** producer has intent `h` (every registry entry is
//!    checked with the OS), its claimer died: CAS the stamp to `SKIPPED(h)`
//!    and go on. This check costs syscalls, so it is made once per sleep
//!    slice of a blocked pop and every
//!    [`LIVENESS_POLL_EVERY`](super::LIVENESS_POLL_EVERY) consecutive empty
//!    `try_pop`s.
//!
//! SYNC POINT MPMC-1: intent store → tail CAS (producer) and tail load →
//! intent loads (consumer) are SeqCst, so a consumer that sees `tail > h`
//! sees the claimer's intent `h` (or its later clearing, which follows the
//! commit: then the consumer's stamp CAS from the uncommitted value fails).
//! SYNC POINT MPMC-2: the producer's data copy, then stamp CAS (Release),
//! pairs with the consumer's stamp load (Acquire), then data copy.
//! SYNC POINT MPMC-3: the consumer's data copy, then head CAS (SeqCst),
//! pairs with the producer's head load (Acquire) before it overwrites the
//! slot of the next lap.
//!
//! # Guarantees
//! - A message is committed by its producer's stamp CAS and delivered
//!   exactly once, to the consumer whose head CAS succeeds. A producer
//!   killed before its commit sent nothing (its claimed position is skipped
//!   within one wait slice of a blocked consumer); a consumer killed after
//!   its head CAS took that one message with it (it was delivered to a
//!   process that died); a consumer killed before its head CAS took
//!   nothing.
//! - FIFO in position order: each producer's messages are delivered in the
//!   order it pushed them (a single consumer sees them in that order).
//! - Up to `producers.len()` producer and `consumers.len()` consumer
//!   handles may be attached at once ([`AttachError::Full`] beyond); slots
//!   of dead holders are reused.
//! - Disconnect: consumers get `Disconnected` when the queue is empty and
//!   every producer that ever attached is gone (dropped or dead); producers
//!   get `Disconnected` when it is full and every consumer is gone.
//! - Hostile bytes: every slot index is `position % capacity`; impossible
//!   stamps or indices give `Corrupt`, `Full`/`Empty` or garbage values,
//!   never an out-of-bounds access or a data race.
//!
//! ```
//! use shmkit_core::queue::mpmc::{Queue, QueueControl};
//! use shmkit_core::queue::roles::RoleSlot;
//! use core::sync::atomic::AtomicU64;
//! use core::ptr::NonNull;
//!
//! let control = QueueControl::new();
//! let producers = [RoleSlot::new(), RoleSlot::new()];
//! let intents = [AtomicU64::new(0), AtomicU64::new(0)];
//! let consumers = [RoleSlot::new()];
//! let stamps: [AtomicU64; 3] = Default::default();
//! let mut slots = [0u32; 3];
//! Queue::<u32>::init(&stamps, &intents);
//! // SAFETY: `slots` outlives the queue and is only accessed through it.
//! let q = unsafe {
//!     Queue::from_raw(&control, &producers, &intents, &consumers, &stamps,
//!                     NonNull::from(&mut slots).cast())
//! }.unwrap();
//! let (mut a, mut b, mut rx) = (q.producer()?, q.producer()?, q.consumer()?);
//! a.try_push(1).unwrap();
//! b.try_push(2).unwrap();
//! assert_eq!(rx.try_pop(), Ok(1));
//! assert_eq!(rx.try_pop(), Ok(2));
//! # Ok::<(), shmkit_core::queue::roles::AttachError>(())
//! ```

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::roles::{self, AttachError, RoleSlot};
use super::{
    CachePadded, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError, WaitPoint, LIVENESS_POLL_EVERY,
};
use crate::primitive::{AtomicU64, Ordering};
use crate::shared::SharedSlice;
use crate::wait::{Deadline, Spin};

/// Stamp state: free for the position.
pub const EMPTY: u64 = 0;
/// Stamp state: holds the position's message.
pub const FULL: u64 = 1;
/// Stamp state: the position was abandoned by a dead producer.
pub const SKIPPED: u64 = 2;
const STATE_MASK: u64 = 3;
/// Intent word: not claiming anything.
pub const NO_INTENT: u64 = u64::MAX;

#[inline]
fn stamp(pos: u64, state: u64) -> u64 {
    // Positions never reach 2^62 honestly; a hostile one just wraps.
    pos.wrapping_shl(2) | state
}

/// The shared control block of a [`Queue`].
///
/// | field | written by | read by |
/// |---|---|---|
/// | `tail` | producers (claim CAS, SeqCst) | everyone |
/// | `head` | consumers (delivery CAS, SeqCst) | everyone |
/// | `data_ready` | producers wake | consumers sleep |
/// | `space_ready` | consumers wake | producers sleep |
#[derive(Debug, Default)]
#[repr(C)]
pub struct QueueControl {
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    data_ready: CachePadded<WaitPoint>,
    space_ready: CachePadded<WaitPoint>,
}

#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<QueueControl>(), 4 * 128);

impl QueueControl {
    /// A fresh control block (all zero, like a zero-filled segment).
    #[must_use]
    pub fn new() -> QueueControl {
        QueueControl {
            tail: CachePadded(AtomicU64::new(0)),
            head: CachePadded(AtomicU64::new(0)),
            data_ready: CachePadded(WaitPoint::new()),
            space_ready: CachePadded(WaitPoint::new()),
        }
    }

    /// The raw shared positions `(head, tail)`, for diagnostics and tests.
    #[must_use]
    pub fn raw_positions(&self) -> (&AtomicU64, &AtomicU64) {
        (&self.head.0, &self.tail.0)
    }
}

/// A view of an MPMC queue. Cheap to copy; attach with
/// [`producer`](Queue::producer) / [`consumer`](Queue::consumer).
pub struct Queue<'a, T> {
    ctl: &'a QueueControl,
    producers: &'a [RoleSlot],
    intents: &'a [AtomicU64],
    consumers: &'a [RoleSlot],
    stamps: &'a [AtomicU64],
    data: NonNull<T>,
    _slots: PhantomData<&'a [core::cell::UnsafeCell<T>]>,
}

impl<T> Clone for Queue<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Queue<'_, T> {}

// SAFETY: shared state is atomics; slots are only accessed with atomic
// copies; `T: Pod` has no drop glue or pointers.
unsafe impl<T: Pod> Send for Queue<'_, T> {}
// SAFETY: as for Send.
unsafe impl<T: Pod> Sync for Queue<'_, T> {}

impl<T> fmt::Debug for Queue<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.stamps.len())
            .field("producers", &self.producers.len())
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> Queue<'a, T> {
    /// Writes the initial stamps (`EMPTY(i)` for slot `i`) and intents of a
    /// fresh queue. Call once, before anyone attaches.
    pub fn init(stamps: &[AtomicU64], intents: &[AtomicU64]) {
        for (i, s) in stamps.iter().enumerate() {
            s.store(stamp(i as u64, EMPTY), Ordering::Relaxed);
        }
        for w in intents {
            w.store(NO_INTENT, Ordering::Relaxed);
        }
    }

    /// A queue over the given parts; its capacity is `stamps.len()`.
    /// `None` if any part is empty or `intents` and `producers` differ in
    /// length.
    ///
    /// # Safety
    /// - `data` is aligned for `T` and `stamps.len()` elements from it stay
    ///   mapped, readable and writable, for `'a`;
    /// - those bytes are only accessed atomically for `'a`;
    /// - the parts were initialised with [`Queue::init`] (or are a queue's
    ///   parts as a peer left them).
    #[must_use]
    pub unsafe fn from_raw(
        ctl: &'a QueueControl,
        producers: &'a [RoleSlot],
        intents: &'a [AtomicU64],
        consumers: &'a [RoleSlot],
        stamps: &'a [AtomicU64],
        data: NonNull<T>,
    ) -> Option<Self> {
        if stamps.is_empty()
            || producers.is_empty()
            || consumers.is_empty()
            || producers.len() != intents.len()
        {
            return None;
        }
        Some(Queue {
            ctl,
            producers,
            intents,
            consumers,
            stamps,
            data,
            _slots: PhantomData,
        })
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.stamps.len()
    }

    /// The raw shared positions `(head, tail)`, for diagnostics and tests
    /// that simulate crashes or corruption.
    #[must_use]
    pub fn control_positions(&self) -> (&'a AtomicU64, &'a AtomicU64) {
        self.ctl.raw_positions()
    }

    /// Messages claimed but not yet delivered (approximate while others
    /// work; Python's `qsize()`).
    #[doc(alias = "qsize")]
    #[must_use]
    pub fn len(&self) -> usize {
        let head = self.ctl.head.load(Ordering::Acquire);
        let tail = self.ctl.tail.load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.capacity() as u64) as usize
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
    /// # Errors
    /// [`AttachError::Full`] if every producer slot is held by a live
    /// process.
    pub fn producer(&self) -> Result<QueueProducer<'a, T>, AttachError> {
        let index = roles::attach_any(self.producers)?;
        self.intents[index].store(NO_INTENT, Ordering::SeqCst);
        Ok(QueueProducer {
            queue: *self,
            index,
            spin: Spin::DEFAULT,
            idle: 0,
            _not_sync: PhantomData,
        })
    }

    /// Attaches the calling process as one more consumer.
    ///
    /// # Errors
    /// [`AttachError::Full`] if every consumer slot is held by a live
    /// process.
    pub fn consumer(&self) -> Result<QueueConsumer<'a, T>, AttachError> {
        let index = roles::attach_any(self.consumers)?;
        Ok(QueueConsumer {
            queue: *self,
            index,
            spin: Spin::DEFAULT,
            idle: 0,
            _not_sync: PhantomData,
        })
    }

    fn slot(&self, pos: u64) -> (usize, SharedSlice<'_, T>) {
        let i = (pos % self.stamps.len() as u64) as usize;
        // SAFETY: i < capacity, so the element is inside the slots, which
        // `from_raw`'s contract keeps mapped and accessed only atomically.
        let view =
            unsafe { SharedSlice::from_raw(NonNull::new_unchecked(self.data.as_ptr().add(i)), 1) };
        (i, view)
    }

    /// Whether no live process has intent `pos` (so `pos`, claimed and not
    /// committed, was abandoned). Syscalls per matching entry.
    fn claimer_gone(&self, pos: u64) -> bool {
        // SYNC POINT MPMC-1, consumer side: SeqCst loads after the SeqCst
        // tail load that showed `tail > pos`.
        !self
            .intents
            .iter()
            .zip(self.producers)
            .any(|(intent, role)| intent.load(Ordering::SeqCst) == pos && role.is_live())
    }

    /// Every producer that ever attached is gone. `slow` asks the OS.
    fn producers_gone(&self, slow: bool) -> bool {
        if !roles::ever_attached(self.producers) {
            return false;
        }
        roles::all_look_empty(self.producers) || (slow && !roles::any_live(self.producers))
    }

    fn consumers_gone(&self, slow: bool) -> bool {
        if !roles::ever_attached(self.consumers) {
            return false;
        }
        roles::all_look_empty(self.consumers) || (slow && !roles::any_live(self.consumers))
    }
}

/// A producer handle of a [`Queue`]: `Send`, not `Sync`; holds one
/// registry entry until dropped.
pub struct QueueProducer<'a, T> {
    queue: Queue<'a, T>,
    index: usize,
    spin: Spin,
    idle: u32,
    _not_sync: PhantomData<Cell<()>>,
}

/// A consumer handle of a [`Queue`]: `Send`, not `Sync`.
pub struct QueueConsumer<'a, T> {
    queue: Queue<'a, T>,
    index: usize,
    spin: Spin,
    idle: u32,
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

/// Outcome of one push attempt.
enum PushStep {
    Done,
    Full,
    Corrupt,
}

impl<'a, T: Pod> QueueProducer<'a, T> {
    /// The queue this handle pushes to.
    #[must_use]
    pub fn queue(&self) -> &Queue<'a, T> {
        &self.queue
    }

    /// Sets how long blocking pushes spin before sleeping.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    fn step(&mut self, value: T) -> PushStep {
        let q = &self.queue;
        let cap = q.stamps.len() as u64;
        let intent = &q.intents[self.index];
        // Consecutive stale reads of an unchanged tail. Only a tail that
        // does not move while its slot says it is stale is suspicious (a
        // hostile stamp); under contention the tail moves and this resets,
        // so a healthy queue never reports `Corrupt`.
        let (mut stale, mut stale_at) = (0u32, u64::MAX);
        // Whether `intent` holds a position of a lost tail CAS: it must be
        // cleared before we return without a claim, or consumers would
        // take us (alive) for the claimer of a position another producer
        // claimed, and never skip it should that one die.
        let mut announced = false;
        loop {
            let t = q.ctl.tail.load(Ordering::SeqCst);
            let (i, view) = q.slot(t);
            // SeqCst loads (plain loads on x86 and aarch64): a spinning
            // producer always reads the latest stamp and head.
            let s = q.stamps[i].load(Ordering::SeqCst);
            let free = if s == stamp(t, EMPTY) {
                true
            } else if t >= cap && s >> 2 == t - cap && s & STATE_MASK != EMPTY {
                // Previous lap's message or skip: free once head passed it.
                // SYNC POINT MPMC-3 (Acquire): its consumer finished reading.
                q.ctl.head.load(Ordering::SeqCst) > t - cap
            } else if s >> 2 > t || (s >> 2 == t && s & STATE_MASK != EMPTY) {
                // Our tail is stale: someone claimed and wrote past it.
                if t != stale_at {
                    (stale, stale_at) = (0, t);
                }
                stale += 1;
                if stale > 1000 {
                    if announced {
                        intent.store(NO_INTENT, Ordering::SeqCst);
                    }
                    return PushStep::Corrupt;
                }
                continue;
            } else {
                false
            };
            if !free {
                if announced {
                    intent.store(NO_INTENT, Ordering::SeqCst);
                }
                return PushStep::Full;
            }
            // SYNC POINT MPMC-1, producer side: intent before the claim.
            intent.store(t, Ordering::SeqCst);
            announced = true;
            if q.ctl
                .tail
                .compare_exchange(t, t.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Cannot fail: the view has one element.
            let _ = view.set(0, value);
            let mut current = s;
            let committed = loop {
                // SYNC POINT MPMC-2 (Release): the value is visible to a
                // consumer that sees FULL(t).
                match q.stamps[i].compare_exchange(
                    current,
                    stamp(t, FULL),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break true,
                    // The previous lap's consumer released the slot
                    // between our check and now: commit over that.
                    Err(now) if now == stamp(t, EMPTY) => current = now,
                    // A consumer judged us dead and skipped `t`.
                    Err(_) => break false,
                }
            };
            intent.store(NO_INTENT, Ordering::SeqCst);
            if committed {
                q.ctl.data_ready.notify();
                return PushStep::Done;
            }
        }
    }

    fn push_inner(&mut self, value: T, slow: bool) -> Result<(), TrySendError<T>> {
        match self.step(value) {
            PushStep::Done => {
                self.idle = 0;
                Ok(())
            }
            PushStep::Corrupt => Err(TrySendError::Corrupt(value)),
            PushStep::Full => {
                self.idle = self.idle.wrapping_add(1);
                let slow = slow || self.idle % LIVENESS_POLL_EVERY == 0;
                if self.queue.consumers_gone(slow) {
                    Err(TrySendError::Disconnected(value))
                } else {
                    Err(TrySendError::Full(value))
                }
            }
        }
    }

    /// Pushes `value` if there is room.
    ///
    /// # Errors
    /// `Full`, `Disconnected` (full and every consumer is gone), `Corrupt`.
    #[doc(alias = "put_nowait")]
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
        let r = ctl.space_ready.block_on(self.spin, deadline, |slow| {
            match self.push_inner(value, slow) {
                Ok(()) => Some(Ok(())),
                Err(e) => e.blocking().ok().map(Err),
            }
        });
        r.unwrap_or(Err(SendTimeoutError::Timeout(value)))
    }
}

impl<T> Drop for QueueProducer<'_, T> {
    fn drop(&mut self) {
        self.queue.intents[self.index].store(NO_INTENT, Ordering::SeqCst);
        self.queue.producers[self.index].release();
        self.queue.ctl.data_ready.notify();
    }
}

impl<'a, T: Pod> QueueConsumer<'a, T> {
    /// The queue this handle pops from.
    #[must_use]
    pub fn queue(&self) -> &Queue<'a, T> {
        &self.queue
    }

    /// Sets how long blocking pops spin before sleeping.
    pub fn set_spin(&mut self, spin: Spin) {
        self.spin = spin;
    }

    fn pop_inner(&mut self, slow: bool) -> Result<T, TryRecvError> {
        let q = &self.queue;
        let cap = q.stamps.len() as u64;
        self.idle = self.idle.wrapping_add(1);
        let slow = slow || self.idle % LIVENESS_POLL_EVERY == 0;
        // Consecutive stale reads of an unchanged head (see `step`).
        let (mut stale, mut stale_at) = (0u32, u64::MAX);
        // Skips per call are bounded: a hostile tail far ahead must not
        // keep us skipping "abandoned" positions forever.
        let mut skips = 0u64;
        loop {
            let h = q.ctl.head.load(Ordering::SeqCst);
            let (i, view) = q.slot(h);
            // SYNC POINT MPMC-2 (Acquire).
            let s = q.stamps[i].load(Ordering::SeqCst);
            if s == stamp(h, FULL) || s == stamp(h, SKIPPED) {
                // Speculative copy: discarded unless our head CAS wins.
                let value = view.get(0).unwrap_or_else(T::zeroed);
                // SYNC POINT MPMC-3: the delivery. Our copy is done before
                // a producer that sees the new head overwrites the slot.
                if q.ctl
                    .head
                    .compare_exchange(h, h.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    // Release the slot for the next lap (producers also
                    // accept `head > h` if we die before this).
                    let _ = q.stamps[i].compare_exchange(
                        s,
                        stamp(h.wrapping_add(cap), EMPTY),
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    );
                    q.ctl.space_ready.notify();
                    if s & STATE_MASK == FULL {
                        self.idle = 0;
                        return Ok(value);
                    }
                }
                continue;
            }
            if s >> 2 > h {
                // Our head is stale (another consumer moved on).
                if h != stale_at {
                    (stale, stale_at) = (0, h);
                }
                stale += 1;
                if stale > 1000 {
                    return Err(TryRecvError::Corrupt);
                }
                continue;
            }
            let t = q.ctl.tail.load(Ordering::SeqCst);
            if t <= h {
                if q.producers_gone(slow) {
                    // Everything committed before they left is in
                    // positions < tail: look once more.
                    if q.ctl.tail.load(Ordering::SeqCst) <= h {
                        return Err(TryRecvError::Disconnected);
                    }
                    continue;
                }
                return Err(TryRecvError::Empty);
            }
            // Claimed, not committed.
            if slow && skips < cap && q.claimer_gone(h) {
                skips += 1;
                let _ = q.stamps[i].compare_exchange(
                    s,
                    stamp(h, SKIPPED),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                );
                continue;
            }
            return Err(TryRecvError::Empty);
        }
    }

    /// Pops a message if one is ready.
    ///
    /// # Errors
    /// `Empty`, `Disconnected` (empty and every producer is gone),
    /// `Corrupt`.
    #[doc(alias = "get_nowait")]
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
        ctl.data_ready
            .block_on(self.spin, deadline, |slow| match self.pop_inner(slow) {
                Ok(v) => Some(Ok(v)),
                Err(e) => e.blocking().map(Err),
            })
            .unwrap_or(Err(RecvTimeoutError::Timeout))
    }
}

impl<T> Drop for QueueConsumer<'_, T> {
    fn drop(&mut self) {
        self.queue.consumers[self.index].release();
        self.queue.ctl.space_ready.notify();
    }
}
