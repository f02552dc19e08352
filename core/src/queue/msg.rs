//! `ByteQueue`: a bounded multi-producer multi-consumer queue of byte
//! messages of bounded length in shared memory (Python's `Queue` of
//! objects, once encoded), with the crash guarantees of the
//! [MPMC queue](super::mpmc).
//!
//! Only on targets with 64-bit atomics (stamps are 64-bit words).
//!
//! # Design
//! This is the [`mpmc`](super::mpmc) queue with another slot: the same
//! control block, registries, stamps, claim / commit / skip protocol and
//! wait points (the code is the MPMC queue's, reached through its
//! crate-internal `try_claim` / `commit_with` / `abort` / `try_take`),
//! only the value words hold a message instead of a `T: Pod`:
//!
//! | word of the slot | holds |
//! |---|---|
//! | 0 | the stamp ([`super::mpmc::stamp`]) |
//! | 1 | the message length in bytes (`≤ max_len`) |
//! | 2 .. 2 + ⌈max_len / 8⌉ | the bytes, the last word zero-padded |
//!
//! Both the capacity and `max_len` are fixed at creation and recorded in
//! the segment header; every open path decodes and checks them
//! ([`MsgParams::decode`]).
//!
//! - **Encoding straight into the slot**: a producer claims a slot, then
//!   runs the caller's encoder on a [`SlotWriter`] that stores the bytes
//!   into the slot's words as they come (no intermediate buffer), then
//!   commits. An encoder that fails (an error of its own, or a message
//!   longer than `max_len`) gives the claim up: the producer re-marks it
//!   [`ORPHAN`](super::mpmc::ORPHAN), which consumers skip in position
//!   order exactly as they skip a dead producer's claim.
//! - **Decoding from a copy**: consumers take a message as the MPMC
//!   queue's do, by a speculative copy followed by the delivery CAS. The
//!   copy is needed: until the CAS, another consumer may deliver the same
//!   slot and the next lap's producer overwrite it, so a reference into
//!   the slot handed to a decoder would race with that producer (a data
//!   race, not merely a torn value). The copy goes into the caller's
//!   buffer ([`ByteConsumer::try_recv_into`]); a receiver keeps one buffer
//!   of `max_len` bytes and reuses it, so nothing is allocated per message.
//! - **Hostile lengths**: the length word is read back and checked against
//!   `max_len` before it bounds a copy; a larger one makes the delivery
//!   [`MsgRecvError::Corrupt`] (the slot is consumed, so a garbage slot
//!   cannot wedge the queue), never an out-of-bounds access or a panic.
//!
//! Orderings, guarantees (nothing committed lost or duplicated, a killed
//! producer never wedges the queue, a killed consumer took at most the one
//! message whose delivery CAS it won) and disconnection are the MPMC
//! queue's: see its module documentation; the SYNC POINTs MPMC-1..3 cover
//! the length word and the bytes, which are value words like any other.
//!
//! ```
//! use shmkit_core::primitive::AtomicU64;
//! use shmkit_core::queue::mpmc::QueueControl;
//! use shmkit_core::queue::msg::{ByteQueue, MsgParams};
//! use shmkit_core::queue::roles::RoleSlot;
//!
//! let params = MsgParams::new(4, 16).with_registry(1, 1);
//! let control = QueueControl::new();
//! let (producers, consumers) = ([RoleSlot::new()], [RoleSlot::new()]);
//! let words: Vec<AtomicU64> = (0..params.slot_words()).map(|_| AtomicU64::new(0)).collect();
//! let q = ByteQueue::from_parts(&control, &producers, &consumers, &words, 16)?;
//! let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
//! tx.try_send(b"hello").unwrap();
//! tx.try_send_with(|w| w.write(b"wor").and_then(|()| w.write(b"ld"))).unwrap();
//! let mut buf = [0u8; 16];
//! let n = rx.try_recv_into(&mut buf).unwrap();
//! assert_eq!(&buf[..n], b"hello");
//! let n = rx.try_recv_into(&mut buf).unwrap();
//! assert_eq!(&buf[..n], b"world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;

use super::mpmc::{
    Queue, QueueConsumer, QueueControl, QueueLayout, QueueParams, QueueProducer, SendStop,
};
use super::roles::{AttachError, RoleSlot};
use super::slots::SlotLayout;
use super::TryRecvError;
use crate::header::Kind;
use crate::object::{LayoutError, Object};
use crate::primitive::{AtomicU64, Ordering};
use crate::wait::{AdaptiveSpin, Deadline};

/// Largest `max_len` (bytes per message): 1 GiB.
pub const MAX_MSG_LEN: usize = 1 << 30;

/// The element type of the underlying MPMC queue: never constructed, it
/// only tells the byte queue's slots apart from a `Pod` queue's.
#[derive(Debug)]
pub enum Bytes {}

/// What fixes a byte queue's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgParams {
    /// Slots: a power of two in `1..=2^31` (as [`QueueParams::capacity`]).
    pub capacity: usize,
    /// The longest message, in bytes (`1..=MAX_MSG_LEN`).
    pub max_len: usize,
    /// Producer handles that may be attached at once.
    pub producers: usize,
    /// Consumer handles that may be attached at once.
    pub consumers: usize,
}

impl MsgParams {
    /// `capacity` slots of messages up to `max_len` bytes, the MPMC
    /// queue's default registry sizes.
    #[must_use]
    pub const fn new(capacity: usize, max_len: usize) -> MsgParams {
        let q = QueueParams::new(capacity);
        MsgParams {
            capacity,
            max_len,
            producers: q.producers,
            consumers: q.consumers,
        }
    }

    /// These parameters with other registry sizes.
    #[must_use]
    pub const fn with_registry(self, producers: usize, consumers: usize) -> MsgParams {
        MsgParams {
            producers,
            consumers,
            ..self
        }
    }

    /// The parameters of the underlying MPMC queue.
    #[must_use]
    pub const fn queue(&self) -> QueueParams {
        QueueParams::new(self.capacity).with_registry(self.producers, self.consumers)
    }

    /// Checks the ranges; the one place they are checked.
    ///
    /// # Errors
    /// The MPMC queue's ([`QueueParams::validate`]), or `max_len` outside
    /// `1..=MAX_MSG_LEN`.
    pub fn validate(&self) -> Result<(), LayoutError> {
        self.queue().validate()?;
        if !(1..=MAX_MSG_LEN).contains(&self.max_len) {
            return Err(LayoutError::new(
                "the longest message (max_len) must be 1 byte to 1 GiB",
            ));
        }
        Ok(())
    }

    /// The slot layout: a length word, then `max_len` bytes rounded up to
    /// whole words.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn slot(&self) -> Result<SlotLayout, LayoutError> {
        self.validate()?;
        SlotLayout::for_element(8 + self.max_len.next_multiple_of(8), 8)
    }

    /// The slot words of the whole queue (`capacity` slots), for
    /// [`ByteQueue::from_parts`]; 0 for invalid parameters.
    #[must_use]
    pub fn slot_words(&self) -> usize {
        self.slot()
            .map_or(0, |s| s.stride_words.saturating_mul(self.capacity))
    }

    /// The two header parameter words that record these parameters: the
    /// capacity and `max_len` (32 bits each), and the MPMC queue's
    /// registry word.
    #[must_use]
    pub fn encode(&self) -> [u64; 2] {
        let [capacity, roles] = self.queue().encode();
        [capacity | (self.max_len as u64) << 32, roles]
    }

    /// The parameters recorded in a header's parameter words (which
    /// nobody vouches for), checked.
    ///
    /// # Errors
    /// Impossible parameters.
    pub fn decode(words: [u64; 2]) -> Result<MsgParams, LayoutError> {
        let q = QueueParams::decode([words[0] & 0xffff_ffff, words[1]])?;
        let p = MsgParams {
            capacity: q.capacity,
            max_len: (words[0] >> 32) as usize,
            producers: q.producers,
            consumers: q.consumers,
        };
        p.validate()?;
        Ok(p)
    }

    /// Where the parts sit in the payload: the MPMC queue's layout with
    /// this slot.
    ///
    /// # Errors
    /// Impossible parameters, or a payload too large for memory.
    pub fn layout(&self) -> Result<QueueLayout, LayoutError> {
        self.validate()?;
        QueueLayout::new(&self.queue(), 8 + self.max_len.next_multiple_of(8), 8)
    }
}

/// A view of a byte-message queue. Cheap to copy; attach with
/// [`producer`](ByteQueue::producer) / [`consumer`](ByteQueue::consumer).
#[derive(Clone, Copy, Debug)]
pub struct ByteQueue<'a> {
    queue: Queue<'a, Bytes>,
    max_len: usize,
}

impl<'a> ByteQueue<'a> {
    /// A queue over its parts: `words` holds the slots
    /// ([`MsgParams::slot_words`]). All-zero parts are a fresh, empty
    /// queue; parts a peer left behind are attached as they are.
    ///
    /// # Errors
    /// Impossible parameters, or `words` not a whole number of slots.
    pub fn from_parts(
        ctl: &'a QueueControl,
        producers: &'a [RoleSlot],
        consumers: &'a [RoleSlot],
        words: &'a [AtomicU64],
        max_len: usize,
    ) -> Result<ByteQueue<'a>, LayoutError> {
        let slot = MsgParams::new(1, max_len)
            .with_registry(producers.len(), consumers.len())
            .slot()?;
        Ok(ByteQueue {
            queue: Queue::from_slots(ctl, producers, consumers, words, slot)?,
            max_len,
        })
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// The longest message, in bytes.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Messages claimed and not yet delivered, as far as the hints tell
    /// (approximate while others work; Python's `qsize()`).
    #[doc(alias = "qsize")]
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether [`len`](Self::len) is 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The underlying MPMC queue (diagnostics, and tests that simulate
    /// crashes or corruption through its stamps).
    #[must_use]
    pub fn raw(&self) -> &Queue<'a, Bytes> {
        &self.queue
    }

    /// Attaches the calling process (or thread) as one more producer (see
    /// [`Queue::producer`]).
    ///
    /// # Errors
    /// [`AttachError::Full`] if every producer entry is held by a live
    /// process.
    pub fn producer(&self) -> Result<ByteProducer<'a>, AttachError> {
        self.producer_with(0)
    }

    /// [`producer`](Self::producer) recording a presence token (0: none):
    /// see [`Queue::producer_with`].
    ///
    /// # Errors
    /// As [`Queue::producer_with`].
    pub fn producer_with(&self, presence: u32) -> Result<ByteProducer<'a>, AttachError> {
        Ok(ByteProducer {
            inner: self.queue.producer_with(presence)?,
            max_len: self.max_len,
        })
    }

    /// Attaches the calling process as one more consumer.
    ///
    /// # Errors
    /// [`AttachError::Full`] if every consumer entry is held by a live
    /// process.
    pub fn consumer(&self) -> Result<ByteConsumer<'a>, AttachError> {
        self.consumer_with(0)
    }

    /// [`consumer`](Self::consumer) recording a presence token (0: none):
    /// see [`Queue::consumer_with`].
    ///
    /// # Errors
    /// As [`Queue::consumer_with`].
    pub fn consumer_with(&self, presence: u32) -> Result<ByteConsumer<'a>, AttachError> {
        Ok(ByteConsumer {
            inner: self.queue.consumer_with(presence)?,
            max_len: self.max_len,
        })
    }
}

/// A message longer than the queue's `max_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLong {
    /// The length the message reached (at least; an encoder stops at the
    /// first write that does not fit).
    pub len: usize,
    /// The queue's `max_len`.
    pub max_len: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the message is at least {} bytes, longer than the queue's limit of {} bytes; \
             create the queue with a larger max_len or send smaller messages",
            self.len, self.max_len
        )
    }
}

impl core::error::Error for TooLong {}

/// Writes a message's bytes straight into its claimed slot (relaxed
/// atomic word stores; the commit's Release store publishes them).
#[derive(Debug)]
pub struct SlotWriter<'a> {
    /// The slot's length word and data words.
    words: &'a [AtomicU64],
    max_len: usize,
    /// Bytes written so far.
    len: usize,
    /// The bytes of the current, incomplete data word, each at the shift
    /// ([`byte_shift`]) that puts it at its place in memory.
    pending: u64,
}

/// The shift of the byte at `pos` (0..8) within a word's memory: byte
/// `pos` of `w.to_ne_bytes()` is `(w >> byte_shift(pos)) as u8`.
/// (Small copies go through shifts, not byte arrays: LLVM turns a loop of
/// byte stores into a call to `memcpy`, which costs more than the
/// message.)
#[inline(always)]
const fn byte_shift(pos: usize) -> u32 {
    if cfg!(target_endian = "little") {
        8 * pos as u32
    } else {
        56 - 8 * pos as u32
    }
}

impl SlotWriter<'_> {
    /// Appends `bytes` to the message.
    ///
    /// # Errors
    /// [`TooLong`] if the message would exceed `max_len`; nothing of
    /// `bytes` is written then.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), TooLong> {
        let end = self.len.saturating_add(bytes.len());
        if end > self.max_len {
            return Err(TooLong {
                len: end,
                max_len: self.max_len,
            });
        }
        let mut rest = bytes;
        let fill = self.len % 8;
        if fill != 0 || rest.len() < 8 {
            // Into the pending word, byte by byte (an encoder's small
            // fields: a loop of at most 8, no call to memcpy).
            let n = rest.len().min(8 - fill);
            for (i, &b) in rest[..n].iter().enumerate() {
                self.pending |= u64::from(b) << byte_shift(fill + i);
            }
            rest = &rest[n..];
            self.len += n;
            if n == 0 || self.len % 8 != 0 {
                return Ok(());
            }
            self.flush_word(self.len / 8 - 1);
        }
        // Whole words, then the tail into the (now empty) pending word.
        let mut chunks = rest.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            // Index in bounds: len + 8 <= max_len, and the slot has
            // ⌈max_len / 8⌉ data words after the length word.
            self.words[1 + self.len / 8].store(u64::from_ne_bytes(w), Ordering::Relaxed);
            self.len += 8;
        }
        let tail = chunks.remainder();
        for (i, &b) in tail.iter().enumerate() {
            self.pending |= u64::from(b) << byte_shift(i);
        }
        self.len += tail.len();
        Ok(())
    }

    /// Bytes written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that still fit.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.max_len - self.len
    }

    /// Stores the pending word as data word `k` and empties it.
    #[inline(always)]
    fn flush_word(&mut self, k: usize) {
        self.words[1 + k].store(self.pending, Ordering::Relaxed);
        self.pending = 0;
    }

    /// Stores the incomplete last word and the length word.
    #[inline(always)]
    fn finish(&mut self) {
        if self.len % 8 != 0 {
            self.flush_word(self.len / 8);
        }
        self.words[0].store(self.len as u64, Ordering::Relaxed);
    }
}

/// Why a send of a message failed. Which variants an operation can give
/// is in its documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgSendError<E> {
    /// No free slot right now (`try_` calls).
    Full,
    /// No free slot before the deadline (`_timeout` calls).
    Timeout,
    /// Every consumer is gone (dropped or dead): nobody would ever
    /// receive.
    Disconnected,
    /// The stamps are impossible: a peer corrupted the queue.
    Corrupt,
    /// The encoder failed (or the message was longer than `max_len`): the
    /// slot was given up, nothing was sent.
    Encode(E),
}

impl<E: fmt::Display> fmt::Display for MsgSendError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgSendError::Full => f.write_str("the queue is full; retry later or use a blocking send"),
            MsgSendError::Timeout => f.write_str("the queue stayed full until the deadline"),
            MsgSendError::Disconnected => f.write_str(
                "every consumer is gone (dropped or its process died); nobody will receive this",
            ),
            MsgSendError::Corrupt => f.write_str(
                "the queue's shared stamps are impossible (corrupted by a peer); recreate the queue",
            ),
            MsgSendError::Encode(e) => write!(f, "the message was not sent: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for MsgSendError<E> {}

impl<E> MsgSendError<E> {
    fn stop(s: SendStop) -> MsgSendError<E> {
        match s {
            SendStop::Full => MsgSendError::Full,
            SendStop::Disconnected => MsgSendError::Disconnected,
            SendStop::Corrupt => MsgSendError::Corrupt,
        }
    }
}

/// Why a receive failed. Which variants an operation can give is in its
/// documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgRecvError {
    /// Nothing to receive right now (`try_` calls).
    Empty,
    /// Nothing arrived before the deadline (`_timeout` calls).
    Timeout,
    /// Empty, and every producer is gone: nothing will ever arrive.
    Disconnected,
    /// The stamps are impossible, or the message taken had a length
    /// larger than `max_len` (a peer wrote garbage; that slot was
    /// consumed).
    Corrupt,
    /// The buffer is shorter than the queue's `max_len` (nothing was
    /// taken).
    BufferTooSmall {
        /// The queue's `max_len`: the least buffer length accepted.
        needed: usize,
    },
}

impl fmt::Display for MsgRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgRecvError::Empty => {
                f.write_str("the queue is empty; retry later or use a blocking receive")
            }
            MsgRecvError::Timeout => f.write_str("nothing arrived before the deadline"),
            MsgRecvError::Disconnected => f.write_str(
                "the queue is empty and every producer is gone (dropped or its process died)",
            ),
            MsgRecvError::Corrupt => f.write_str(
                "the queue's shared state is impossible (corrupted by a peer); recreate the queue",
            ),
            MsgRecvError::BufferTooSmall { needed } => write!(
                f,
                "the receive buffer must hold the queue's longest message ({needed} bytes)"
            ),
        }
    }
}

impl core::error::Error for MsgRecvError {}

/// A producer handle of a [`ByteQueue`]: `Send`, not `Sync`; holds one
/// registry entry until dropped (fork: as [`QueueProducer`]).
#[derive(Debug)]
pub struct ByteProducer<'a> {
    inner: QueueProducer<'a, Bytes>,
    max_len: usize,
}

impl<'a> ByteProducer<'a> {
    /// Drops this copy of a handle whose presence token another `fork`
    /// copy still holds (see [`QueueProducer::forget_copy`]).
    pub fn forget_copy(self) {
        self.inner.forget_copy();
    }

    /// The longest message, in bytes.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The registry entry this handle's claims record (diagnostics, and
    /// tests that simulate a producer killed mid-send).
    #[must_use]
    pub fn registry_index(&self) -> usize {
        self.inner.registry_index()
    }

    /// Sets how blocking sends spin before sleeping (see
    /// [`QueueProducer::set_spin`]).
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.inner.set_spin(spin);
    }

    /// Fills the claimed position `t` with `encode` and commits it, or
    /// gives it up if `encode` fails.
    #[inline(always)]
    fn fill<R, E>(
        &mut self,
        t: u64,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<R, E>,
    ) -> Result<R, MsgSendError<E>> {
        let mut w = SlotWriter {
            words: self.inner.queue().value_words(t),
            max_len: self.max_len,
            len: 0,
            pending: 0,
        };
        match encode(&mut w) {
            Ok(r) => {
                w.finish();
                self.inner.commit_with(t, |_| {});
                Ok(r)
            }
            Err(e) => {
                self.inner.abort(t);
                Err(MsgSendError::Encode(e))
            }
        }
    }

    /// Sends the message `encode` writes into a free slot, if there is
    /// one: the encoder runs once, on the claimed slot, only then.
    ///
    /// # Errors
    /// `Full`, `Disconnected`, `Corrupt` (the encoder did not run), or
    /// `Encode(e)` (it failed; nothing was sent).
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_send_with<R, E>(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<R, E>,
    ) -> Result<R, MsgSendError<E>> {
        match self.inner.try_claim(false) {
            Ok(t) => self.fill(t, encode),
            Err(s) => Err(MsgSendError::stop(s)),
        }
    }

    /// Sends `bytes` if there is room.
    ///
    /// # Errors
    /// As [`try_send_with`](Self::try_send_with); `Encode(TooLong)` for
    /// more than `max_len` bytes (checked before anything else).
    #[inline]
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), MsgSendError<TooLong>> {
        self.check_len(bytes.len())?;
        self.try_send_with(|w| w.write(bytes))
    }

    fn check_len(&self, len: usize) -> Result<(), MsgSendError<TooLong>> {
        if len > self.max_len {
            return Err(MsgSendError::Encode(TooLong {
                len,
                max_len: self.max_len,
            }));
        }
        Ok(())
    }

    /// As [`try_send_with`](Self::try_send_with), waiting for a free slot
    /// until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`, `Encode`.
    pub fn send_with_deadline<R, E>(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<R, E>,
        deadline: Option<Deadline>,
    ) -> Result<R, MsgSendError<E>> {
        let ctl = self.inner.queue().ctl;
        let mut spin = self.inner.spin;
        let claimed = ctl.space_ready.block_on(&mut spin, 0, deadline, |slow| {
            match self.inner.try_claim(slow) {
                Ok(t) => Some(Ok(t)),
                Err(SendStop::Full) => None,
                Err(s) => Some(Err(s)),
            }
        });
        self.inner.spin = spin;
        match claimed {
            Some(Ok(t)) => self.fill(t, encode),
            Some(Err(s)) => Err(MsgSendError::stop(s)),
            None => Err(MsgSendError::Timeout),
        }
    }

    /// Sends `bytes`, waiting while the queue is full.
    ///
    /// # Errors
    /// `Disconnected`, `Corrupt`, `Encode(TooLong)`.
    #[doc(alias = "put")]
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), MsgSendError<TooLong>> {
        self.check_len(bytes.len())?;
        self.send_with_deadline(|w| w.write(bytes), None)
    }

    /// Sends `bytes`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`, `Encode(TooLong)`.
    pub fn send_timeout(
        &mut self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<(), MsgSendError<TooLong>> {
        self.check_len(bytes.len())?;
        self.send_with_deadline(|w| w.write(bytes), Some(Deadline::after(timeout)))
    }
}

/// A consumer handle of a [`ByteQueue`]: `Send`, not `Sync`.
#[derive(Debug)]
pub struct ByteConsumer<'a> {
    inner: QueueConsumer<'a, Bytes>,
    max_len: usize,
}

/// The speculative copy of a slot's message into `buf` (at least
/// `max_len` bytes): its length, or `None` for a length word beyond
/// `max_len` (garbage). Relaxed loads: the delivery protocol orders them.
#[inline(always)]
fn copy_out(words: &[AtomicU64], max_len: usize, buf: &mut [u8]) -> Option<usize> {
    let len = words[0].load(Ordering::Relaxed);
    let len = usize::try_from(len).ok().filter(|&l| l <= max_len)?;
    // In bounds: ⌈len / 8⌉ ≤ ⌈max_len / 8⌉ data words follow word 0.
    let data = &words[1..];
    let mut chunks = buf[..len].chunks_exact_mut(8);
    let mut k = 0;
    for c in &mut chunks {
        c.copy_from_slice(&data[k].load(Ordering::Relaxed).to_ne_bytes());
        k += 1;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let w = data[k].load(Ordering::Relaxed);
        for (i, d) in tail.iter_mut().enumerate() {
            *d = (w >> byte_shift(i)) as u8;
        }
    }
    Some(len)
}

impl ByteConsumer<'_> {
    /// Drops this copy of a handle whose presence token another `fork`
    /// copy still holds (see [`QueueConsumer::forget_copy`]).
    pub fn forget_copy(self) {
        self.inner.forget_copy();
    }

    /// The longest message, in bytes: the least length of a receive
    /// buffer.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Sets how blocking receives spin before sleeping.
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.inner.set_spin(spin);
    }

    fn check_buf(&self, buf: &[u8]) -> Result<(), MsgRecvError> {
        if buf.len() < self.max_len {
            return Err(MsgRecvError::BufferTooSmall {
                needed: self.max_len,
            });
        }
        Ok(())
    }

    #[inline(always)]
    fn recv_inner(&mut self, buf: &mut [u8], slow: bool) -> Result<usize, MsgRecvError> {
        let max_len = self.max_len;
        match self
            .inner
            .try_take(slow, &mut |words| copy_out(words, max_len, buf))
        {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(MsgRecvError::Corrupt),
            Err(TryRecvError::Empty) => Err(MsgRecvError::Empty),
            Err(TryRecvError::Disconnected) => Err(MsgRecvError::Disconnected),
            Err(TryRecvError::Corrupt) => Err(MsgRecvError::Corrupt),
        }
    }

    /// Copies the next message into `buf` (at least `max_len` bytes) if
    /// one is ready: its length.
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupt`, `BufferTooSmall`.
    #[doc(alias = "get_nowait")]
    #[inline(always)]
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, MsgRecvError> {
        self.check_buf(buf)?;
        self.recv_inner(buf, false)
    }

    /// As [`try_recv_into`](Self::try_recv_into), waiting until
    /// `deadline` (`None`: forever).
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`, `BufferTooSmall`.
    pub fn recv_into_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<usize, MsgRecvError> {
        self.check_buf(buf)?;
        let ctl = self.inner.queue().ctl;
        let mut spin = self.inner.spin;
        let r = ctl.data_ready.block_on(&mut spin, 0, deadline, |slow| {
            match self.recv_inner(buf, slow) {
                Err(MsgRecvError::Empty) => None,
                r => Some(r),
            }
        });
        self.inner.spin = spin;
        r.unwrap_or(Err(MsgRecvError::Timeout))
    }

    /// Copies the next message into `buf`, waiting while the queue is
    /// empty: its length.
    ///
    /// # Errors
    /// `Disconnected`, `Corrupt`, `BufferTooSmall`.
    #[doc(alias = "get")]
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, MsgRecvError> {
        self.recv_into_deadline(buf, None)
    }

    /// Copies the next message into `buf`, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`, `BufferTooSmall`.
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, MsgRecvError> {
        self.recv_into_deadline(buf, Some(Deadline::after(timeout)))
    }

    /// Takes the next message into `buf` (see
    /// [`try_recv_into`](Self::try_recv_into)) and hands its bytes to
    /// `decode`.
    ///
    /// # Errors
    /// As `try_recv_into`.
    pub fn try_recv_with<R>(
        &mut self,
        buf: &mut [u8],
        decode: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, MsgRecvError> {
        let n = self.try_recv_into(buf)?;
        Ok(decode(&buf[..n]))
    }
}

/// A [`ByteQueue`] as the payload of a segment (kind `msg-queue`).
/// Never constructed: it names the [`Object`], whose view is a
/// [`ByteQueue`].
#[derive(Debug)]
pub enum MsgQueue {}

// SAFETY: for every `params` `payload_len` accepts, `MsgParams::layout`
// (the MPMC queue's `QueueLayout` with this slot) gives offsets inside
// `payload_len` bytes: the control block at 0, the two registries, and
// `capacity * stride` 8-aligned `AtomicU64` slot words. The view reads and
// writes only through those atomics; every index it computes is masked or
// checked, and a length read from a slot is checked against `max_len`
// before it bounds a copy. All-zero is the initial state, so `init`
// writes nothing. `decode(encode(p))` gives `p` back.
unsafe impl Object for MsgQueue {
    const KIND: Kind = Kind::MSG_QUEUE;
    type Params = MsgParams;
    type View<'a> = ByteQueue<'a>;
    type Element = u8;

    fn encode(p: &MsgParams) -> [u64; 2] {
        p.encode()
    }

    fn decode(recorded: [u64; 2]) -> Result<MsgParams, LayoutError> {
        MsgParams::decode(recorded)
    }

    fn payload_len(p: &MsgParams) -> Result<usize, LayoutError> {
        Ok(p.layout()?.len)
    }

    unsafe fn init(_payload: NonNull<u8>, _params: &MsgParams) {}

    #[cfg(not(loom))]
    unsafe fn attach<'a>(payload: NonNull<u8>, p: &MsgParams) -> ByteQueue<'a> {
        // SAFETY: `attach`'s contract, passed on.
        unsafe { attach_at(payload, p) }
    }

    #[cfg(loom)]
    unsafe fn attach<'a>(_payload: NonNull<u8>, _p: &MsgParams) -> ByteQueue<'a> {
        unimplemented!("loom models build queues with ByteQueue::from_parts")
    }
}

/// The view of a byte queue laid out by [`MsgParams::layout`] at
/// `payload`.
///
/// # Safety
/// `MsgParams::layout(p).len` bytes at `payload`, aligned to
/// `PAYLOAD_ALIGN`, mapped for `'a` and accessed by everyone only
/// atomically (the [`Object::attach`] contract).
#[cfg(not(loom))]
pub(crate) unsafe fn attach_at<'a>(payload: NonNull<u8>, p: &MsgParams) -> ByteQueue<'a> {
    let l = p.layout().expect("the caller checked payload_len(params)");
    let base = payload.as_ptr();
    // SAFETY: the caller's contract: `l.len` bytes at `payload`, mapped
    // for 'a, accessed only atomically. Each part lies inside them at an
    // offset aligned for its type (`QueueLayout`); all parts are atomics
    // (the `RoleSlot`'s reserved word is plain but never accessed), valid
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
    ByteQueue::from_parts(ctl, producers, consumers, words, p.max_len)
        .expect("the layout was validated with the same parameters")
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    struct Parts {
        ctl: QueueControl,
        producers: Vec<RoleSlot>,
        consumers: Vec<RoleSlot>,
        words: Vec<AtomicU64>,
        max_len: usize,
    }

    fn parts(capacity: usize, max_len: usize) -> Parts {
        let p = MsgParams::new(capacity, max_len).with_registry(2, 2);
        Parts {
            ctl: QueueControl::new(),
            producers: (0..2).map(|_| RoleSlot::new()).collect(),
            consumers: (0..2).map(|_| RoleSlot::new()).collect(),
            words: (0..p.slot_words()).map(|_| AtomicU64::new(0)).collect(),
            max_len,
        }
    }

    impl Parts {
        fn queue(&self) -> ByteQueue<'_> {
            ByteQueue::from_parts(
                &self.ctl,
                &self.producers,
                &self.consumers,
                &self.words,
                self.max_len,
            )
            .unwrap()
        }
    }

    #[test]
    fn messages_of_every_length_wrap_around() {
        let parts = parts(4, 21);
        let q = parts.queue();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        let mut buf = [0u8; 21];
        for round in 0..5u8 {
            for len in 0..=21usize {
                let msg: Vec<u8> = (0..len as u8).map(|i| i ^ round).collect();
                tx.try_send(&msg).unwrap();
                let n = rx.try_recv_into(&mut buf).unwrap();
                assert_eq!(&buf[..n], &msg[..]);
            }
        }
        assert_eq!(rx.try_recv_into(&mut buf), Err(MsgRecvError::Empty));
    }

    #[test]
    fn the_writer_assembles_pieces_across_words() {
        let parts = parts(2, 40);
        let q = parts.queue();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        let pieces: [&[u8]; 5] = [b"abc", b"defghijklmn", b"", b"o", b"pqrstuvwxyz0123"];
        tx.try_send_with(|w| {
            for p in pieces {
                w.write(p)?;
            }
            Ok::<_, TooLong>(())
        })
        .unwrap();
        let got = rx.try_recv_with(&mut [0u8; 40], |b| b.to_vec()).unwrap();
        assert_eq!(got, b"abcdefghijklmnopqrstuvwxyz0123");
    }

    /// Every message of up to 40 bytes, written in random pieces (empty
    /// ones included), arrives whole.
    #[test]
    fn random_pieces_assemble() {
        let parts = parts(4, 40);
        let q = parts.queue();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut buf = [0u8; 40];
        for round in 0..2000 {
            let len = next(41);
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + round) as u8).collect();
            let mut cuts: Vec<usize> = (0..next(6)).map(|_| next(len + 1)).collect();
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            tx.try_send_with(|w| {
                for c in cuts.windows(2) {
                    w.write(&msg[c[0]..c[1]])?;
                }
                Ok::<_, TooLong>(())
            })
            .unwrap();
            let n = rx.try_recv_into(&mut buf).unwrap();
            assert_eq!(&buf[..n], &msg[..], "round {round}, cuts {cuts:?}");
        }
    }

    #[test]
    fn too_long_and_failed_encoders_send_nothing_and_do_not_wedge() {
        let parts = parts(2, 8);
        let q = parts.queue();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        assert_eq!(
            tx.try_send(&[0; 9]),
            Err(MsgSendError::Encode(TooLong { len: 9, max_len: 8 }))
        );
        // An encoder that overflows half-way: the claim is given up.
        let r = tx.try_send_with(|w| {
            w.write(&[1; 5])?;
            w.write(&[2; 5])
        });
        assert_eq!(
            r,
            Err(MsgSendError::Encode(TooLong {
                len: 10,
                max_len: 8
            }))
        );
        assert_eq!(
            tx.try_send_with(|_| Err::<(), _>("no")),
            Err(MsgSendError::Encode("no"))
        );
        let mut buf = [0u8; 8];
        // Both aborted claims are skipped; the queue still works, and
        // wraps (capacity 2) past them.
        assert_eq!(rx.try_recv_into(&mut buf), Err(MsgRecvError::Empty));
        for i in 0..4u8 {
            tx.try_send(&[i; 3]).unwrap();
            assert_eq!(rx.try_recv_into(&mut buf), Ok(3));
            assert_eq!(buf[..3], [i; 3]);
        }
        assert_eq!(
            rx.try_recv_into(&mut [0u8; 7]),
            Err(MsgRecvError::BufferTooSmall { needed: 8 })
        );
    }

    #[test]
    fn full_then_disconnected() {
        let parts = parts(2, 8);
        let q = parts.queue();
        let (mut tx, rx) = (q.producer().unwrap(), q.consumer().unwrap());
        tx.try_send(b"1").unwrap();
        tx.try_send(b"2").unwrap();
        assert_eq!(tx.try_send(b"3"), Err(MsgSendError::Full));
        assert_eq!(
            tx.send_timeout(b"3", Duration::from_millis(1)),
            Err(MsgSendError::Timeout)
        );
        drop(rx);
        assert_eq!(tx.try_send(b"3"), Err(MsgSendError::Disconnected));
        let mut rx = q.consumer().unwrap();
        drop(tx);
        let mut buf = [0u8; 8];
        assert_eq!(rx.recv_into(&mut buf), Ok(1));
        assert_eq!(rx.recv_into(&mut buf), Ok(1));
        assert_eq!(rx.recv_into(&mut buf), Err(MsgRecvError::Disconnected));
    }

    #[test]
    fn garbage_lengths_are_corrupt_and_consumed() {
        let parts = parts(2, 8);
        let q = parts.queue();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        tx.try_send(b"abc").unwrap();
        tx.try_send(b"def").unwrap();
        // A peer scribbles on the first message's length word.
        let stride = parts.words.len() / 2;
        parts.words[1].store(u64::MAX, Ordering::Relaxed);
        parts.words[stride + 1].store(9, Ordering::Relaxed);
        let mut buf = [0u8; 8];
        assert_eq!(rx.try_recv_into(&mut buf), Err(MsgRecvError::Corrupt));
        assert_eq!(rx.try_recv_into(&mut buf), Err(MsgRecvError::Corrupt));
        tx.try_send(b"ok").unwrap();
        assert_eq!(rx.try_recv_into(&mut buf), Ok(2));
    }

    /// The layout of one set of parameters, pinned: a change here changes
    /// the format of existing segments.
    #[test]
    fn layout_is_pinned() {
        let l = MsgParams::new(4, 20).with_registry(2, 3).layout().unwrap();
        assert_eq!(
            (l.producers_at, l.consumers_at, l.slots_at),
            (640, 768, 896)
        );
        // A stamp, a length word, 20 bytes in 3 words.
        assert_eq!(l.slot.stride_words, 5);
        assert_eq!(l.slot.value_word, 1);
        assert_eq!(l.len, 896 + 4 * 40);
        assert_eq!(MsgParams::new(4, 20).encode()[0], 4 | 20 << 32);
    }

    #[test]
    fn params_round_trip_and_are_checked() {
        let p = MsgParams::new(64, 100).with_registry(3, 5);
        assert_eq!(MsgParams::decode(p.encode()), Ok(p));
        assert!(MsgParams::new(3, 8).validate().is_err());
        assert!(MsgParams::new(4, 0).validate().is_err());
        assert!(MsgParams::new(4, MAX_MSG_LEN + 1).validate().is_err());
        let mut w = p.encode();
        w[0] &= 0xffff_ffff; // max_len 0
        assert!(MsgParams::decode(w).is_err());
        assert!(MsgParams::decode([u64::MAX, u64::MAX]).is_err());
        assert!(MsgParams::decode([0, 0]).is_err());
        assert_eq!(p.slot().unwrap().stride_words, 2 + 13);
    }
}
