//! `Pipe`: variable-length byte messages over a single-producer
//! single-consumer byte ring — Python's `Connection.send_bytes` /
//! `recv_bytes` / `recv_bytes_into` / `poll`.
//!
//! # Framing
//! Each message is a 4-byte little-endian length followed by the payload,
//! written into a [`Ring<u8>`](super::ring::Ring) and published with **one**
//! tail store, so the receiver sees whole messages or none. A frame may
//! wrap around the end of the ring. The largest message is
//! `capacity - 4` bytes; a larger one is [`PipeSendError::TooLarge`] at
//! send time.
//!
//! The receiver validates what it reads: fewer than 4 published bytes, a
//! length above `capacity - 4`, or a frame longer than what was published
//! are impossible for an honest sender and give [`PipeRecvError::Corrupt`].
//!
//! # Guarantees
//! As the SPSC ring (see [`super::ring`]): one sender and one receiver
//! attached at a time; a message is committed by the sender's tail store
//! and consumed by the receiver's head store, each a single atomic step, so
//! a process killed mid-send or mid-receive loses or duplicates nothing
//! committed. A receive buffer that is too small is
//! [`PipeRecvError::BufferTooSmall`] and the message stays readable. After
//! the sender is gone (dropped or dead) the receiver drains what was
//! committed, then gets [`PipeRecvError::Eof`]. After the receiver is
//! gone, every send fails with [`PipeSendError::Disconnected`] (Python's
//! `BrokenPipeError`): at once after a clean drop (one load of the
//! receiver's role word per send, a line nobody writes while both ends
//! live), and after a death within `LIVENESS_POLL_EVERY` (4096) sends or one
//! full-pipe wait (the liveness check costs a syscall, so it is not made
//! on every send).
//!
//! A duplex [`Connection`] is two pipes, one per direction, like
//! `multiprocessing.Pipe()`.
//!
//! # Sizing and speed
//! For streaming large messages give the pipe room for **several** of
//! them (8 or more): with room for only one, the sender waits for the
//! receiver to copy each message out before it can copy the next one in,
//! and the two processes alternate instead of copying at the same time
//! (64 KiB messages, measured here: ≈0.14× single-core `memcpy` with room
//! for one, ≈0.38× for four, ≈0.44× from eight on, which is ≈97% of a
//! bare `memcpy` through shared memory between the same two cores: the
//! cross-core transfer, not the pipe, is the limit). Payload bytes are
//! moved with `rep movsb` on x86_64 (`bulk_copy`, which documents why
//! that is sound against a hostile peer). Blocking calls waiting on a large message spin up to
//! ≈50 µs (about one wake-up's cost, scaled by the message size) before
//! they sleep, so a streaming peer is usually caught without a sleep.
//!
//! ```
//! use shmkit_core::queue::pipe::Pipe;
//! use shmkit_core::queue::ring::RingControl;
//! use core::ptr::NonNull;
//!
//! let control = RingControl::new();
//! let mut bytes = [0u8; 64];
//! // SAFETY: `bytes` outlives the pipe and is only accessed through it.
//! let pipe = unsafe { Pipe::from_raw(&control, NonNull::from(&mut bytes).cast(), 64) }.unwrap();
//! let (mut tx, mut rx) = (pipe.sender()?, pipe.receiver()?);
//! tx.try_send_bytes(b"hello").unwrap();
//! let mut small = [0u8; 2];
//! assert_eq!(rx.try_recv_bytes_into(&mut small).unwrap_err().needed(), Some(5));
//! let mut buf = [0u8; 16];
//! assert_eq!(rx.try_recv_bytes_into(&mut buf), Ok(5));
//! assert_eq!(&buf[..5], b"hello");
//! # Ok::<(), shmkit_core::queue::roles::AttachError>(())
//! ```

use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;

use super::ring::{self, Consumer, Producer, Ring, RingControl};
use super::roles::{AttachError, RoleSlot, GONE, NEVER};
use super::{TryRecvError, TrySendError, LIVENESS_POLL_EVERY};
use crate::header::{Kind, PAYLOAD_ALIGN};
use crate::object::{LayoutError, Object};
use crate::sync::Contention;
use crate::wait::{Deadline, Spin};

/// Bytes of the length header in front of every message.
pub const FRAME_HEADER: usize = 4;

/// Why sending a message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeSendError {
    /// The message can never fit: it is longer than the ring allows.
    TooLarge {
        /// The message length.
        len: usize,
        /// The largest message this pipe carries (`capacity - 4`).
        max: usize,
    },
    /// Not enough room right now (`try_` form).
    Full,
    /// Not enough room before the deadline.
    Timeout,
    /// The receiver is gone (dropped, or its process died): nothing sent
    /// now would ever be read (Python's `BrokenPipeError`).
    Disconnected,
    /// The shared indices are impossible: a peer corrupted the pipe.
    Corrupt,
}

impl fmt::Display for PipeSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeSendError::TooLarge { len, max } => write!(
                f,
                "a {len}-byte message cannot fit in this pipe (at most {max} bytes); create the pipe with a larger capacity or split the message"
            ),
            PipeSendError::Full => f.write_str("the pipe is full; retry later or use a blocking send"),
            PipeSendError::Timeout => f.write_str("the pipe stayed full until the timeout; retry or wait longer"),
            PipeSendError::Disconnected => f.write_str("the receiving end is gone (dropped or its process died)"),
            PipeSendError::Corrupt => f.write_str("the pipe's shared indices are impossible (corrupted by a peer); recreate the pipe"),
        }
    }
}

impl core::error::Error for PipeSendError {}

/// Why receiving a message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeRecvError {
    /// No message right now (`try_` form).
    Empty,
    /// No message before the deadline.
    Timeout,
    /// The sender is gone and every message it committed was received
    /// (Python's `EOFError`).
    Eof,
    /// The buffer is shorter than the next message, which stays readable.
    BufferTooSmall {
        /// The message length: the buffer size needed.
        needed: usize,
    },
    /// A length or index read from the pipe is impossible.
    Corrupt,
}

impl PipeRecvError {
    /// The buffer size needed, for [`PipeRecvError::BufferTooSmall`].
    #[must_use]
    pub fn needed(&self) -> Option<usize> {
        match self {
            PipeRecvError::BufferTooSmall { needed } => Some(*needed),
            _ => None,
        }
    }
}

impl fmt::Display for PipeRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeRecvError::Empty => f.write_str("no message is ready; retry later, poll, or use a blocking receive"),
            PipeRecvError::Timeout => f.write_str("no message arrived before the timeout"),
            PipeRecvError::Eof => f.write_str("end of file: the sending end is gone and every message was received"),
            PipeRecvError::BufferTooSmall { needed } => write!(
                f,
                "the next message is {needed} bytes, larger than the buffer; retry with a buffer of at least {needed} bytes (the message was not consumed)"
            ),
            PipeRecvError::Corrupt => f.write_str("a message length or index in the pipe is impossible (corrupted by a peer); recreate the pipe"),
        }
    }
}

impl core::error::Error for PipeRecvError {}

/// A one-way message pipe over a byte ring. Attach with
/// [`sender`](Pipe::sender) / [`receiver`](Pipe::receiver).
#[derive(Clone, Copy, Debug)]
pub struct Pipe<'a> {
    ring: Ring<'a, u8>,
}

impl<'a> Pipe<'a> {
    /// A pipe over `ctl` and the `capacity` bytes at `data`. `None` unless
    /// the capacity is a power of two in `8..=2³¹`.
    ///
    /// # Safety
    /// As [`Ring::from_raw`]: `capacity` bytes at `data` stay mapped and
    /// writable for `'a`, and are only accessed atomically.
    #[must_use]
    pub unsafe fn from_raw(ctl: &'a RingControl, data: NonNull<u8>, capacity: u32) -> Option<Self> {
        if capacity < 8 {
            return None;
        }
        // SAFETY: forwarded contract.
        unsafe { Ring::from_raw(ctl, data, capacity) }.map(|ring| Pipe { ring })
    }

    /// The largest message this pipe carries.
    #[must_use]
    pub fn max_message_len(&self) -> usize {
        self.ring.capacity() - FRAME_HEADER
    }

    /// Attaches the calling process as the sender.
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process is the sender.
    pub fn sender(&self) -> Result<PipeSender<'a>, AttachError> {
        self.sender_with(0)
    }

    /// [`sender`](Self::sender) recording the presence token `presence`
    /// (0: none; see [`Ring::producer_with`]).
    ///
    /// # Errors
    /// As [`sender`](Self::sender); [`AttachError::Closed`] once closed.
    pub fn sender_with(&self, presence: u32) -> Result<PipeSender<'a>, AttachError> {
        Ok(PipeSender {
            tx: self.ring.producer_with(presence)?,
            receiver: self.ring.control().consumer_slot(),
            sends: 0,
        })
    }

    /// Attaches the calling process as the receiver.
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process is the receiver.
    pub fn receiver(&self) -> Result<PipeReceiver<'a>, AttachError> {
        self.receiver_with(0)
    }

    /// [`receiver`](Self::receiver) recording the presence token
    /// `presence` (0: none; see [`Ring::consumer_with`]).
    ///
    /// # Errors
    /// As [`receiver`](Self::receiver); [`AttachError::Closed`] once
    /// closed.
    pub fn receiver_with(&self, presence: u32) -> Result<PipeReceiver<'a>, AttachError> {
        Ok(PipeReceiver {
            rx: self.ring.consumer_with(presence)?,
            last_len: 0,
        })
    }
}

/// Copies between the ring (`shared`, accessed only with relaxed atomics)
/// and a private buffer. From [`BULK_MIN`] bytes on x86_64: one
/// [`bulk_copy`]. Otherwise single bytes up to the first word boundary of
/// the shared side, then whole words, then the last bytes (relaxed atomics
/// compile to plain `mov`s, but the compiler may not widen or vectorise
/// them: 8 bytes per instruction, ≈2.5× slower than `bulk_copy` for a
/// 64 KiB message here).
///
/// # Safety
/// `shared..shared + private.len()` lies inside the ring's bytes, which
/// are only ever accessed atomically.
unsafe fn copy_shared(shared: *mut u8, private: *mut u8, len: usize, load: bool) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    if len >= BULK_MIN {
        let (src, dst) = if load {
            (shared.cast_const(), private)
        } else {
            (private.cast_const(), shared)
        };
        // SAFETY: both ranges are `len` bytes inside memory this process
        // may access (the caller's contract for the shared side, a private
        // buffer of `len` bytes for the other), and they do not overlap
        // (one is private). See `bulk_copy` for why a racing peer is not
        // a data race.
        unsafe { bulk_copy(src, dst, len) };
        return;
    }
    use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
    const W: usize = core::mem::size_of::<usize>();
    let mut i = 0;
    // Every access below stays in range: `i < len` for bytes, `i + W <=
    // len` for words (the contract covers `shared..shared + len`; the
    // private side is `len` bytes too). Word accesses are on W-aligned
    // shared addresses; the private side is accessed unaligned.
    let byte = |i: usize| {
        // SAFETY: i < len (callers below), see above.
        unsafe {
            let a = AtomicU8::from_ptr(shared.add(i));
            if load {
                private.add(i).write(a.load(Relaxed));
            } else {
                a.store(private.add(i).read(), Relaxed);
            }
        }
    };
    while i < len && (shared as usize + i) % W != 0 {
        byte(i);
        i += 1;
    }
    // Miri's weak-memory emulation cannot follow the same bytes being
    // accessed atomically at two widths (it aborts: "partially overlapping
    // store buffer"), which happens here when a frame header written byte
    // by byte is later overwritten by a word of a message body: under
    // miri every byte goes through the byte loop below.
    while !cfg!(miri) && i + W <= len {
        // SAFETY: see above.
        unsafe {
            let a = AtomicUsize::from_ptr(shared.add(i).cast());
            if load {
                private
                    .add(i)
                    .cast::<usize>()
                    .write_unaligned(a.load(Relaxed));
            } else {
                a.store(private.add(i).cast::<usize>().read_unaligned(), Relaxed);
            }
        }
        i += W;
    }
    while i < len {
        byte(i);
        i += 1;
    }
}

/// From this many bytes on, [`copy_shared`] uses [`bulk_copy`].
#[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
const BULK_MIN: usize = 256;

/// Copies `len` bytes from `src` to `dst` with one `rep movsb`.
///
/// # Why this is sound while a peer writes the shared side
/// To the compiler the `asm!` block is opaque: it may read `src..src+len`
/// and write `dst..dst+len`, and must assume nothing else about their
/// contents. On x86_64 `rep movsb` performs one single-copy-atomic byte
/// load and one byte store per byte, with no ordering promised among them:
/// exactly the effect of a loop of relaxed `AtomicU8` loads and stores,
/// which is what the word-wise loop above does in wider pieces, and what
/// Rust's proposed `atomic_load_memcpy`/`atomic_store_memcpy` (RFC 3301)
/// specify. A racing peer therefore gives us torn bytes (which the pipe's
/// framing treats as data, never as an index), never undefined behaviour.
/// The ordering with the ring's indices comes from the Acquire/Release
/// index accesses around the copy, which the block cannot be moved across
/// (it is not `nomem`).
///
/// Why: the word loop moves 8 bytes per instruction; `rep movsb` lets the
/// CPU use its fast-string microcode (full-line stores without a read for
/// ownership where it can), which is how `memcpy` moves large blocks.
///
/// # Safety
/// `src..src+len` is readable and `dst..dst+len` writable for this call,
/// every other access to the shared one of them is atomic (or this same
/// copy, in another process), and the ranges do not overlap.
#[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
#[inline]
unsafe fn bulk_copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract; `rep movsb` with DF clear (the ABI
    // guarantees DF = 0 on entry to asm) copies forward exactly `len`
    // bytes, and clobbers only rsi, rdi, rcx (declared).
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Copies `bytes` into the concatenation of the two ranges at `offset`
/// (callers keep `offset + bytes.len()` inside them).
fn copy_in(ranges: [(NonNull<u8>, usize); 2], offset: usize, bytes: &[u8]) {
    let [(a, la), (b, lb)] = ranges;
    let (k, rest) = if offset < la {
        let k = (la - offset).min(bytes.len());
        // SAFETY: offset + k <= la: inside the first range (ring bytes).
        unsafe { copy_shared(a.as_ptr().add(offset), bytes.as_ptr().cast_mut(), k, false) };
        (k, 0)
    } else {
        (0, offset - la)
    };
    let tail = &bytes[k..];
    if !tail.is_empty() && rest + tail.len() <= lb {
        // SAFETY: rest + tail.len() <= lb: inside the second range.
        unsafe {
            copy_shared(
                b.as_ptr().add(rest),
                tail.as_ptr().cast_mut(),
                tail.len(),
                false,
            )
        };
    }
}

/// Copies out of the concatenation of the two ranges at `offset`.
fn copy_out(ranges: [(NonNull<u8>, usize); 2], offset: usize, out: &mut [u8]) {
    let [(a, la), (b, lb)] = ranges;
    let (k, rest) = if offset < la {
        let k = (la - offset).min(out.len());
        // SAFETY: offset + k <= la: inside the first range (ring bytes).
        unsafe { copy_shared(a.as_ptr().add(offset), out.as_mut_ptr(), k, true) };
        (k, 0)
    } else {
        (0, offset - la)
    };
    let tail = &mut out[k..];
    if !tail.is_empty() && rest + tail.len() <= lb {
        // SAFETY: rest + tail.len() <= lb: inside the second range.
        unsafe { copy_shared(b.as_ptr().add(rest), tail.as_mut_ptr(), tail.len(), true) };
    }
}

/// Spin iterations per byte the peer still has to copy: one per 32 bytes
/// is ≈0.8 ns per byte at ≈25 ns per iteration, so a peer copying at more
/// than ≈1.3 GB/s finishes within the budget.
const BYTES_PER_SPIN: usize = 32;

/// The most a large message raises the spin budget to: ≈50 µs, about what
/// one cross-CPU wake-up costs (spinning longer than a sleep would cost
/// is never worth it).
const MAX_BULK_SPIN: u32 = 2000;

/// The spin budget for waiting on a peer that copies `bytes` bytes: the
/// handle's own budget, raised for large messages so that a streaming peer
/// is caught spinning rather than after a sleep (a sleep costs a
/// `membarrier`, a futex wait and ≈40 µs of wake-up, the time to copy
/// about a megabyte). [`Spin::NONE`] stays none: on a shared CPU spinning
/// only delays the peer.
fn bulk_spin(spin: Spin, bytes: usize) -> Spin {
    if spin.iterations == 0 {
        return spin;
    }
    let extra = u32::try_from(bytes / BYTES_PER_SPIN).unwrap_or(u32::MAX);
    Spin {
        iterations: spin.iterations.max(extra.min(MAX_BULK_SPIN)),
    }
}

/// The sending end of a [`Pipe`]: `Send`, not `Sync`. Dropping it closes
/// the pipe for the receiver (after it drains: [`PipeRecvError::Eof`]).
#[derive(Debug)]
pub struct PipeSender<'a> {
    tx: Producer<'a, u8>,
    /// The receiver's role slot: checked on every send.
    receiver: &'a RoleSlot,
    /// Sends since the last liveness check of the receiver.
    sends: u32,
}

impl PipeSender<'_> {
    /// Closes the pipe for good and detaches: the receiver gets `Eof`
    /// after draining, even while a `fork` copy of this end lives.
    pub fn close(self) {
        self.tx.close();
    }

    /// Drops this copy of an end whose presence token another copy still
    /// holds (see [`Producer::forget_copy`]).
    pub fn forget_copy(self) {
        self.tx.forget_copy();
    }

    /// The largest message this pipe carries.
    #[must_use]
    pub fn max_message_len(&self) -> usize {
        self.tx.capacity() - FRAME_HEADER
    }

    /// Sets how long blocking sends spin before sleeping.
    pub fn set_spin(&mut self, spin: Spin) {
        self.tx.set_spin(spin);
    }

    fn frame_len(&self, msg: &[u8]) -> Result<usize, PipeSendError> {
        let max = self.max_message_len();
        if msg.len() > max {
            return Err(PipeSendError::TooLarge {
                len: msg.len(),
                max,
            });
        }
        Ok(FRAME_HEADER + msg.len())
    }

    /// `Err(Disconnected)` if the receiver is known gone: its role word
    /// says so (one load), or — every `LIVENESS_POLL_EVERY` sends — a
    /// liveness check finds it dead.
    #[inline]
    fn check_receiver(&mut self) -> Result<(), PipeSendError> {
        let w = self.receiver.raw();
        if w & GONE != 0 {
            return Err(PipeSendError::Disconnected);
        }
        self.sends = self.sends.wrapping_add(1);
        if self.sends % LIVENESS_POLL_EVERY == 0 && w != NEVER {
            return self.check_receiver_liveness();
        }
        Ok(())
    }

    #[cold]
    fn check_receiver_liveness(&mut self) -> Result<(), PipeSendError> {
        // Marks a dead receiver GONE, so later sends see it in one load.
        if self.receiver.raw() != NEVER && !self.receiver.is_live() {
            return Err(PipeSendError::Disconnected);
        }
        Ok(())
    }

    /// Sends `msg` if there is room for it now.
    ///
    /// # Errors
    /// `TooLarge`, `Full`, `Disconnected` (the receiver is gone),
    /// `Corrupt`.
    pub fn try_send_bytes(&mut self, msg: &[u8]) -> Result<(), PipeSendError> {
        let n = self.frame_len(msg)?;
        self.check_receiver()?;
        let chunk = self.tx.write_chunk(n).map_err(|e| match e {
            TrySendError::Full(()) => PipeSendError::Full,
            TrySendError::Disconnected(()) => PipeSendError::Disconnected,
            TrySendError::Corrupt(()) => PipeSendError::Corrupt,
        })?;
        let ranges = chunk.raw();
        // The length fits in u32: it is below the capacity (<= 2^31).
        copy_in(ranges, 0, &(msg.len() as u32).to_le_bytes());
        copy_in(ranges, FRAME_HEADER, msg);
        chunk.commit_all();
        Ok(())
    }

    /// Sends `msg`, waiting for room.
    ///
    /// # Errors
    /// `TooLarge`, `Disconnected`, `Corrupt`.
    pub fn send_bytes(&mut self, msg: &[u8]) -> Result<(), PipeSendError> {
        self.send_bytes_deadline(msg, None)
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `TooLarge`, `Timeout`, `Disconnected`, `Corrupt`.
    pub fn send_bytes_timeout(
        &mut self,
        msg: &[u8],
        timeout: Duration,
    ) -> Result<(), PipeSendError> {
        self.send_bytes_deadline(msg, Some(Deadline::after(timeout)))
    }

    /// Sends `msg`, waiting for room until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// As [`send_bytes_timeout`](Self::send_bytes_timeout).
    pub fn send_bytes_deadline(
        &mut self,
        msg: &[u8],
        deadline: Option<Deadline>,
    ) -> Result<(), PipeSendError> {
        let n = self.frame_len(msg)?;
        // Honestly, a wait that saw room leaves room (only we fill the
        // ring): a send that then finds it full again is a peer moving
        // the indices back, and each such round backs off (`sync` docs).
        let mut contention = Contention::new();
        let mut waited = false;
        loop {
            match self.try_send_bytes(msg) {
                Err(PipeSendError::Full) => {}
                other => return other,
            }
            if waited && contention.back_off(deadline) {
                return Err(PipeSendError::Timeout);
            }
            waited = true;
            match self
                .tx
                .wait_for_space(n, bulk_spin(self.tx.spin(), n), deadline)
            {
                None => return Err(PipeSendError::Timeout),
                Some(Ok(())) => {}
                Some(Err(TrySendError::Disconnected(()))) => {
                    return Err(PipeSendError::Disconnected)
                }
                Some(Err(_)) => return Err(PipeSendError::Corrupt),
            }
        }
    }
}

/// The receiving end of a [`Pipe`]: `Send`, not `Sync`.
#[derive(Debug)]
pub struct PipeReceiver<'a> {
    rx: Consumer<'a, u8>,
    /// Length of the last message received: the guess for the next one's,
    /// which sizes the spin before sleeping ([`bulk_spin`]).
    last_len: usize,
}

impl PipeReceiver<'_> {
    /// Closes the pipe for good and detaches: the sender gets
    /// `Disconnected`, and no receiver attaches again.
    pub fn close(self) {
        self.rx.close();
    }

    /// Drops this copy of an end whose presence token another copy still
    /// holds (see [`Consumer::forget_copy`]).
    pub fn forget_copy(self) {
        self.rx.forget_copy();
    }

    /// The largest message this pipe carries.
    #[must_use]
    pub fn max_message_len(&self) -> usize {
        self.rx.capacity() - FRAME_HEADER
    }

    /// Sets how long blocking receives spin before sleeping.
    pub fn set_spin(&mut self, spin: Spin) {
        self.rx.set_spin(spin);
    }

    /// The length of the next message, if one is ready, without consuming
    /// it.
    ///
    /// # Errors
    /// `Empty`, `Eof` (the sender is gone and everything was received),
    /// `Corrupt`.
    pub fn try_peek_len(&mut self) -> Result<usize, PipeRecvError> {
        self.peek_len(false)
    }

    fn peek_len(&mut self, slow: bool) -> Result<usize, PipeRecvError> {
        let max = self.max_message_len();
        let ready = self.rx.slots().map_err(|_| PipeRecvError::Corrupt)?;
        if ready == 0 {
            return Err(if self.rx.producer_gone(slow) {
                // Look again: the sender's last message may have landed
                // just before it left.
                match self.rx.slots() {
                    Ok(0) => PipeRecvError::Eof,
                    Ok(_) => PipeRecvError::Empty,
                    Err(_) => PipeRecvError::Corrupt,
                }
            } else {
                PipeRecvError::Empty
            });
        }
        if ready < FRAME_HEADER {
            return Err(PipeRecvError::Corrupt);
        }
        let mut header = [0u8; FRAME_HEADER];
        {
            // Not committed: peeking consumes nothing.
            let chunk = self
                .rx
                .read_chunk(FRAME_HEADER)
                .map_err(|_| PipeRecvError::Corrupt)?;
            copy_out(chunk.raw(), 0, &mut header);
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > max || FRAME_HEADER + len > ready {
            return Err(PipeRecvError::Corrupt);
        }
        Ok(len)
    }

    /// Whether a message is ready (Python's `poll()` with no timeout).
    ///
    /// # Errors
    /// `Eof` once the sender is gone and everything was received;
    /// `Corrupt`.
    pub fn poll(&mut self) -> Result<bool, PipeRecvError> {
        match self.peek_len(false) {
            Ok(_) => Ok(true),
            Err(PipeRecvError::Empty) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits at most `timeout` for a message; `Ok(true)` if one is ready
    /// (Python's `poll(timeout)`).
    ///
    /// # Errors
    /// `Eof`, `Corrupt`.
    pub fn poll_timeout(&mut self, timeout: Duration) -> Result<bool, PipeRecvError> {
        match self.wait_len(Some(Deadline::after(timeout))) {
            Ok(_) => Ok(true),
            Err(PipeRecvError::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits for the next message and returns its length (not consuming
    /// it).
    ///
    /// # Errors
    /// `Timeout`, `Eof`, `Corrupt`.
    pub fn wait_len(&mut self, deadline: Option<Deadline>) -> Result<usize, PipeRecvError> {
        // As in `send_bytes_deadline`: data seen stays (only we consume),
        // so finding none again is a peer moving the indices back.
        let mut contention = Contention::new();
        let mut waited = false;
        loop {
            match self.peek_len(false) {
                Err(PipeRecvError::Empty) => {}
                other => return other,
            }
            if waited && contention.back_off(deadline) {
                return Err(PipeRecvError::Timeout);
            }
            waited = true;
            match self
                .rx
                .wait_for_data(bulk_spin(self.rx.spin(), self.last_len), deadline)
            {
                None => return Err(PipeRecvError::Timeout),
                Some(Ok(())) => {}
                Some(Err(TryRecvError::Disconnected)) => return Err(PipeRecvError::Eof),
                Some(Err(_)) => return Err(PipeRecvError::Corrupt),
            }
        }
    }

    /// Receives the next message into `buf` if one is ready; returns its
    /// length.
    ///
    /// # Errors
    /// `Empty`, `Eof`, `Corrupt`, or `BufferTooSmall { needed }` — then
    /// nothing was consumed.
    pub fn try_recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, PipeRecvError> {
        let len = self.peek_len(false)?;
        self.take(len, buf)
    }

    /// Receives the next message into `buf`, waiting for one.
    ///
    /// # Errors
    /// `Eof`, `Corrupt`, `BufferTooSmall { needed }` (nothing consumed).
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, PipeRecvError> {
        self.recv_bytes_into_deadline(buf, None)
    }

    /// Receives the next message into `buf`, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Eof`, `Corrupt`, `BufferTooSmall { needed }`.
    pub fn recv_bytes_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, PipeRecvError> {
        self.recv_bytes_into_deadline(buf, Some(Deadline::after(timeout)))
    }

    /// Receives the next message into `buf`, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`recv_bytes_into_timeout`](Self::recv_bytes_into_timeout).
    pub fn recv_bytes_into_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<usize, PipeRecvError> {
        let len = self.wait_len(deadline)?;
        self.take(len, buf)
    }

    /// Consumes the next message, of length `len` (validated by
    /// `peek_len`), into `buf`.
    fn take(&mut self, len: usize, buf: &mut [u8]) -> Result<usize, PipeRecvError> {
        if buf.len() < len {
            return Err(PipeRecvError::BufferTooSmall { needed: len });
        }
        let chunk = self
            .rx
            .read_chunk(FRAME_HEADER + len)
            .map_err(|_| PipeRecvError::Corrupt)?;
        copy_out(chunk.raw(), FRAME_HEADER, &mut buf[..len]);
        chunk.commit_all();
        self.last_len = len;
        Ok(len)
    }
}

/// One end of a duplex pipe: sends on one [`Pipe`], receives on the other
/// (`multiprocessing.Pipe(duplex=True)`).
#[derive(Debug)]
pub struct Connection<'a> {
    /// The sending half.
    pub tx: PipeSender<'a>,
    /// The receiving half.
    pub rx: PipeReceiver<'a>,
}

impl<'a> Connection<'a> {
    /// End `which` (0 or 1) of the duplex pipe made of `pipes`: end 0 sends
    /// on `pipes[0]` and receives on `pipes[1]`, end 1 the reverse.
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process holds that end.
    pub fn attach(pipes: [Pipe<'a>; 2], which: usize) -> Result<Connection<'a>, AttachError> {
        let (out, inn) = if which == 0 { (0, 1) } else { (1, 0) };
        let tx = pipes[out].sender()?;
        let rx = pipes[inn].receiver()?;
        Ok(Connection { tx, rx })
    }

    /// [`PipeSender::send_bytes`].
    ///
    /// # Errors
    /// As there.
    pub fn send_bytes(&mut self, msg: &[u8]) -> Result<(), PipeSendError> {
        self.tx.send_bytes(msg)
    }

    /// [`PipeReceiver::recv_bytes_into`].
    ///
    /// # Errors
    /// As there.
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, PipeRecvError> {
        self.rx.recv_bytes_into(buf)
    }

    /// [`PipeReceiver::poll`].
    ///
    /// # Errors
    /// As there.
    pub fn poll(&mut self) -> Result<bool, PipeRecvError> {
        self.rx.poll()
    }
}

/// Checks a pipe capacity (bytes per direction): the one place it is
/// checked.
///
/// # Errors
/// Not a power of two in `8..=2^31`.
pub fn validate_capacity(capacity: usize) -> Result<u32, LayoutError> {
    match u32::try_from(capacity) {
        Ok(c) if c >= 8 && c.is_power_of_two() && c <= ring::MAX_CAPACITY => Ok(c),
        _ => Err(LayoutError::new(
            "pipe capacity must be a power of two in 8..=2^31 bytes",
        )),
    }
}

/// Bytes from one direction's ring (a [`RingControl`] and `capacity`
/// bytes) to the next in a pipe's payload: rounded up to 128 so every
/// control block stays aligned.
#[must_use]
pub fn stride(capacity: usize) -> usize {
    (ring::CONTROL_LEN + capacity).next_multiple_of(PAYLOAD_ALIGN)
}

/// The payload length of `rings` directions of `capacity` bytes (1: a
/// one-way pipe, 2: a duplex pipe).
///
/// # Errors
/// A bad capacity, or a payload too large for memory.
pub fn payload_len_for(capacity: usize, rings: usize) -> Result<usize, LayoutError> {
    validate_capacity(capacity)?;
    stride(capacity)
        .checked_mul(rings)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or(LayoutError::new("the pipe does not fit in memory"))
}

/// The pipe of direction `which` at `payload`.
///
/// # Safety
/// `payload_len_for(capacity, n)` bytes at `payload` with `which < n`,
/// as [`Object::attach`] requires.
unsafe fn pipe_at<'a>(payload: NonNull<u8>, capacity: usize, which: usize) -> Pipe<'a> {
    // SAFETY: the caller's contract: direction `which` starts `which *
    // stride` bytes in (128-aligned), a control block (atomics, valid for
    // any bytes) followed by `capacity` bytes, all inside the payload and
    // only accessed atomically.
    unsafe {
        let base = payload.as_ptr().add(which * stride(capacity));
        Pipe::from_raw(
            &*base.cast::<RingControl>(),
            NonNull::new_unchecked(base.add(ring::CONTROL_LEN)),
            capacity as u32,
        )
    }
    .expect("the caller checked the capacity")
}

/// A one-way byte-message [`Pipe`] as the payload of a segment (kind
/// `pipe`): `multiprocessing.Pipe(duplex=False)`. Never constructed: it
/// names the [`Object`].
#[derive(Debug)]
pub enum OneWayPipe {}

/// A duplex byte-message pipe as the payload of a segment (kind
/// `duplex_pipe`): `multiprocessing.Pipe()`, two [`Pipe`]s, one per
/// direction; end 0 sends on the first and receives on the second
/// ([`Connection::attach`]). Never constructed: it names the [`Object`].
#[derive(Debug)]
pub enum DuplexPipe {}

fn pipe_params(recorded: [u64; 2]) -> Result<usize, LayoutError> {
    if recorded[1] != 0 {
        return Err(LayoutError::new("a pipe records no second parameter"));
    }
    let capacity = usize::try_from(recorded[0])
        .map_err(|_| LayoutError::new("the pipe capacity does not fit in memory"))?;
    validate_capacity(capacity)?;
    Ok(capacity)
}

// SAFETY: the payload is one direction (see `payload_len_for` and
// `pipe_at`); the pipe accesses it only through its ring (atomics, masked
// indices) and validates every length it reads. All-zero is a fresh pipe.
unsafe impl Object for OneWayPipe {
    const KIND: Kind = Kind::PIPE;
    type Params = usize;
    type View<'a> = Pipe<'a>;

    type Element = u8;

    fn encode(capacity: &usize) -> [u64; 2] {
        [*capacity as u64, 0]
    }

    fn decode(recorded: [u64; 2]) -> Result<usize, LayoutError> {
        pipe_params(recorded)
    }

    fn payload_len(capacity: &usize) -> Result<usize, LayoutError> {
        payload_len_for(*capacity, 1)
    }

    unsafe fn init(_payload: NonNull<u8>, _capacity: &usize) {}

    unsafe fn attach<'a>(payload: NonNull<u8>, capacity: &usize) -> Pipe<'a> {
        // SAFETY: forwarded contract, one direction.
        unsafe { pipe_at(payload, *capacity, 0) }
    }
}

// SAFETY: as for `OneWayPipe`, with two directions.
unsafe impl Object for DuplexPipe {
    const KIND: Kind = Kind::DUPLEX_PIPE;
    type Params = usize;
    type View<'a> = [Pipe<'a>; 2];

    type Element = u8;

    fn encode(capacity: &usize) -> [u64; 2] {
        [*capacity as u64, 0]
    }

    fn decode(recorded: [u64; 2]) -> Result<usize, LayoutError> {
        pipe_params(recorded)
    }

    fn payload_len(capacity: &usize) -> Result<usize, LayoutError> {
        payload_len_for(*capacity, 2)
    }

    unsafe fn init(_payload: NonNull<u8>, _capacity: &usize) {}

    unsafe fn attach<'a>(payload: NonNull<u8>, capacity: &usize) -> [Pipe<'a>; 2] {
        // SAFETY: forwarded contract, two directions.
        unsafe {
            [
                pipe_at(payload, *capacity, 0),
                pipe_at(payload, *capacity, 1),
            ]
        }
    }
}
