//! `JoinableQueue`: a [byte-message queue](super::msg) plus a count of
//! unfinished tasks and a wait point, in one segment (Python's
//! `multiprocessing.JoinableQueue`).
//!
//! Every message sent counts one more unfinished task (the count goes up
//! *before* the message is published, so a consumer can never finish a
//! task that is not counted yet); [`Joinable::task_done`] counts one less
//! and is an error ([`TaskDoneError::TooManyCalls`], Python's
//! `ValueError`) if the count is already zero; [`Joinable::join_deadline`]
//! waits until the count is zero.
//!
//! | part | at | size |
//! |---|---|---|
//! | the byte-message queue | 0 | [`MsgParams::layout`]`.len` |
//! | [`JoinControl`] | that, rounded up to 128 | 128 |
//!
//! # A consumer killed between a receive and its `task_done`
//! Its task stays counted forever: nobody can tell a task that is being
//! worked on from one whose worker died (the message itself is gone, as
//! with any queue). So a `join` without a deadline would wait forever;
//! use [`join_deadline`](Joinable::join_deadline) (the posix handle's
//! `join_timeout`) when consumers may be killed: it returns
//! [`JoinTimeout`] with the count still unfinished, and the caller decides
//! (re-send the work, call `task_done` for the lost task, give up).
//! Likewise a producer killed between counting its message and publishing
//! it leaves one task counted that no consumer will ever see.
//!
//! Hostile bytes: the count is only compared and decremented with a
//! check; any value makes `join` wait (until its deadline) or return, and
//! `task_done` succeed or fail, never misbehave.

use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;

use super::msg::{
    ByteConsumer, ByteProducer, ByteQueue, MsgParams, MsgSendError, SlotWriter, TooLong,
};
use super::roles::AttachError;
use super::WaitPoint;
use crate::header::{Kind, PAYLOAD_ALIGN};
use crate::object::{LayoutError, Object};
use crate::primitive::{AtomicU32, Ordering};
use crate::wait::{AdaptiveSpin, Deadline};

/// The unfinished-task count and its wait point.
///
/// | field | written by | read by |
/// |---|---|---|
/// | `unfinished` | senders (+1 before publishing, −1 back if the send failed), `task_done` (−1, never below 0) | `join`, `inspect` |
/// | `done` | whoever brings `unfinished` to 0 wakes | `join` sleeps |
#[derive(Debug, Default)]
#[repr(C)]
pub struct JoinControl {
    unfinished: AtomicU32,
    done: WaitPoint,
}

#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::size_of::<JoinControl>(), 16);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(core::mem::offset_of!(JoinControl, unfinished), 0);

/// Bytes reserved for the [`JoinControl`] (a line of its own).
const JOIN_LEN: usize = 128;

impl JoinControl {
    /// A fresh block: nothing unfinished (all-zero, like a zeroed segment).
    #[must_use]
    pub fn new() -> JoinControl {
        JoinControl {
            unfinished: AtomicU32::new(0),
            done: WaitPoint::new(),
        }
    }

    /// The raw count, for diagnostics (`shmkit inspect`) and tests.
    #[must_use]
    pub fn unfinished(&self) -> u32 {
        // Relaxed: a snapshot.
        self.unfinished.load(Ordering::Relaxed)
    }

    /// Counts one more task, before it is published.
    fn count_one(&self) -> Result<(), TooManyTasks> {
        // Relaxed: the commit that publishes the message is a Release
        // store sequenced after this RMW, so a consumer that acquires the
        // message and then finishes it decrements after this increment in
        // the modification order of `unfinished` (write-write coherence:
        // the increment happens before the decrement). A task is never
        // finished before it is counted.
        self.unfinished
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .map(|_| ())
            .map_err(|_| TooManyTasks)
    }

    /// Counts one task less: `Ok(remaining)`, or an error at zero.
    fn finish_one(&self) -> Result<u32, TaskDoneError> {
        // SYNC POINT JOIN-1 (Release): the finished task's work happens
        // before a joiner's Acquire load that sees the count reach zero
        // (an RMW continues the release sequence of every earlier one, so
        // the joiner sees every task's work, not only the last one's).
        let left = self
            .unfinished
            .fetch_update(Ordering::Release, Ordering::Relaxed, |n| n.checked_sub(1))
            .map_err(|_| TaskDoneError::TooManyCalls)?
            - 1;
        if left == 0 {
            self.done.notify();
        }
        Ok(left)
    }
}

/// More than `u32::MAX` tasks unfinished at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyTasks;

impl fmt::Display for TooManyTasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("4294967295 tasks are unfinished already; call task_done for finished ones")
    }
}

impl core::error::Error for TooManyTasks {}

/// Why [`Joinable::task_done`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskDoneError {
    /// `task_done` was called more times than messages were sent
    /// (Python's `ValueError`).
    TooManyCalls,
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "task_done() called more times than there were items put in the queue; \
             call it once per item received",
        )
    }
}

impl core::error::Error for TaskDoneError {}

/// A [`Joinable::join_deadline`] that ran out: tasks still unfinished
/// (possibly because a consumer died between a receive and its
/// `task_done`: see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinTimeout {
    /// The unfinished count when the deadline passed.
    pub unfinished: u32,
}

impl fmt::Display for JoinTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} task(s) still unfinished at the deadline (a consumer may have died before its task_done)",
            self.unfinished
        )
    }
}

impl core::error::Error for JoinTimeout {}

/// A view of a joinable queue: the byte queue and its count.
#[derive(Clone, Copy, Debug)]
pub struct Joinable<'a> {
    queue: ByteQueue<'a>,
    join: &'a JoinControl,
}

impl<'a> Joinable<'a> {
    /// A joinable queue over a byte queue and a count block (all-zero: a
    /// fresh one).
    #[must_use]
    pub fn from_parts(queue: ByteQueue<'a>, join: &'a JoinControl) -> Joinable<'a> {
        Joinable { queue, join }
    }

    /// The byte queue.
    #[must_use]
    pub fn queue(&self) -> &ByteQueue<'a> {
        &self.queue
    }

    /// Tasks sent and not yet marked done (a snapshot).
    #[must_use]
    pub fn unfinished(&self) -> u32 {
        self.join.unfinished()
    }

    /// Attaches a producer: each message it sends counts a task.
    ///
    /// # Errors
    /// As [`ByteQueue::producer`].
    pub fn producer(&self) -> Result<JoinableProducer<'a>, AttachError> {
        self.producer_with(0)
    }

    /// [`producer`](Self::producer) recording a presence token (0: none).
    ///
    /// # Errors
    /// As [`ByteQueue::producer_with`].
    pub fn producer_with(&self, presence: u32) -> Result<JoinableProducer<'a>, AttachError> {
        Ok(JoinableProducer {
            inner: self.queue.producer_with(presence)?,
            join: self.join,
        })
    }

    /// [`consumer`](Self::consumer) recording a presence token (0: none).
    ///
    /// # Errors
    /// As [`ByteQueue::consumer_with`].
    pub fn consumer_with(&self, presence: u32) -> Result<ByteConsumer<'a>, AttachError> {
        self.queue.consumer_with(presence)
    }

    /// Attaches a consumer (a plain [`ByteConsumer`]: finishing a task is
    /// [`task_done`](Self::task_done), which anyone may call).
    ///
    /// # Errors
    /// As [`ByteQueue::consumer`].
    pub fn consumer(&self) -> Result<ByteConsumer<'a>, AttachError> {
        self.queue.consumer()
    }

    /// Marks one task done: the remaining count.
    ///
    /// # Errors
    /// [`TaskDoneError::TooManyCalls`] if no task is unfinished.
    pub fn task_done(&self) -> Result<u32, TaskDoneError> {
        self.join.finish_one()
    }

    /// Waits until every task sent is marked done, or `deadline` passes
    /// (`None`: forever, which a consumer killed before its `task_done`
    /// makes forever indeed).
    ///
    /// # Errors
    /// [`JoinTimeout`] with the count left.
    pub fn join_deadline(&self, deadline: Option<Deadline>) -> Result<(), JoinTimeout> {
        let mut spin = AdaptiveSpin::new();
        // SYNC POINT JOIN-1 (Acquire): pairs with the Release of the
        // `task_done` that brought the count to zero.
        let done = || (self.join.unfinished.load(Ordering::Acquire) == 0).then_some(());
        self.join
            .done
            .block_on(&mut spin, 0, deadline, |_| done())
            .ok_or(JoinTimeout {
                unfinished: self.unfinished(),
            })
    }

    /// [`join_deadline`](Self::join_deadline) with a timeout.
    ///
    /// # Errors
    /// [`JoinTimeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeout> {
        self.join_deadline(Some(Deadline::after(timeout)))
    }
}

/// Why a send to a joinable queue failed: the byte queue's reasons, or too
/// many unfinished tasks.
pub type JoinableSendError<E> = MsgSendError<JoinableEncodeError<E>>;

/// The encoder's failure, or the count's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinableEncodeError<E> {
    /// The encoder failed (or the message was too long).
    Encode(E),
    /// The unfinished count is at its limit.
    TooManyTasks,
}

impl<E: fmt::Display> fmt::Display for JoinableEncodeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinableEncodeError::Encode(e) => e.fmt(f),
            JoinableEncodeError::TooManyTasks => TooManyTasks.fmt(f),
        }
    }
}

/// A producer of a [`Joinable`] queue: every message it sends counts one
/// unfinished task.
#[derive(Debug)]
pub struct JoinableProducer<'a> {
    inner: ByteProducer<'a>,
    join: &'a JoinControl,
}

impl JoinableProducer<'_> {
    /// Drops this copy of a handle whose presence token another `fork`
    /// copy still holds (see [`ByteProducer::forget_copy`]).
    pub fn forget_copy(self) {
        self.inner.forget_copy();
    }

    /// The longest message, in bytes.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.inner.max_len()
    }

    /// Sets how blocking sends spin before sleeping.
    pub fn set_spin(&mut self, spin: impl Into<AdaptiveSpin>) {
        self.inner.set_spin(spin);
    }

    /// Counts a task, then runs `send`; uncounts it if nothing was sent.
    fn counted<R, E>(
        &mut self,
        send: impl FnOnce(&mut ByteProducer<'_>) -> Result<R, MsgSendError<E>>,
    ) -> Result<R, JoinableSendError<E>> {
        if self.join.count_one().is_err() {
            return Err(MsgSendError::Encode(JoinableEncodeError::TooManyTasks));
        }
        send(&mut self.inner).map_err(|e| {
            // Not published: nobody can finish it. (If this brings the
            // count to zero, joiners are woken: they were waiting for it.)
            let _ = self.join.finish_one();
            match e {
                MsgSendError::Full => MsgSendError::Full,
                MsgSendError::Timeout => MsgSendError::Timeout,
                MsgSendError::Disconnected => MsgSendError::Disconnected,
                MsgSendError::Corrupt => MsgSendError::Corrupt,
                MsgSendError::Encode(e) => MsgSendError::Encode(JoinableEncodeError::Encode(e)),
            }
        })
    }

    /// As [`ByteProducer::try_send_with`], counting a task.
    ///
    /// # Errors
    /// As `try_send_with`, and `Encode(TooManyTasks)`.
    pub fn try_send_with<R, E>(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<R, E>,
    ) -> Result<R, JoinableSendError<E>> {
        self.counted(|p| p.try_send_with(encode))
    }

    /// As [`ByteProducer::send_with_deadline`], counting a task.
    ///
    /// # Errors
    /// As `send_with_deadline`, and `Encode(TooManyTasks)`.
    pub fn send_with_deadline<R, E>(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<R, E>,
        deadline: Option<Deadline>,
    ) -> Result<R, JoinableSendError<E>> {
        self.counted(|p| p.send_with_deadline(encode, deadline))
    }

    /// `Encode(TooLong)` for more than `max_len` bytes: checked before the
    /// task is counted, as the byte producer checks it before anything
    /// else (a message that cannot be sent never shows in the count).
    fn check_len(&self, len: usize) -> Result<(), JoinableSendError<TooLong>> {
        let max_len = self.inner.max_len();
        if len > max_len {
            return Err(MsgSendError::Encode(JoinableEncodeError::Encode(TooLong {
                len,
                max_len,
            })));
        }
        Ok(())
    }

    /// Sends `bytes` if there is room, counting a task.
    ///
    /// # Errors
    /// As [`ByteProducer::try_send`] (`Encode(TooLong)` first), and
    /// `Encode(TooManyTasks)`.
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), JoinableSendError<TooLong>> {
        self.check_len(bytes.len())?;
        self.counted(|p| p.try_send(bytes))
    }

    /// Sends `bytes`, waiting while the queue is full, counting a task.
    ///
    /// # Errors
    /// As [`ByteProducer::send`] (`Encode(TooLong)` first), and
    /// `Encode(TooManyTasks)`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), JoinableSendError<TooLong>> {
        self.check_len(bytes.len())?;
        self.counted(|p| p.send(bytes))
    }
}

/// The layout of a joinable queue: the byte queue's, then the count block
/// on a line of its own at the returned offset; the payload length.
///
/// # Errors
/// As [`MsgParams::layout`].
pub fn join_layout(p: &MsgParams) -> Result<(usize, usize), LayoutError> {
    let queue_len = p.layout()?.len;
    let at = queue_len
        .checked_next_multiple_of(PAYLOAD_ALIGN)
        .ok_or(LayoutError::new("the queue does not fit in memory"))?;
    let len = at
        .checked_add(JOIN_LEN)
        .filter(|&l| l <= isize::MAX as usize)
        .ok_or(LayoutError::new("the queue does not fit in memory"))?;
    Ok((at, len))
}

/// A [`Joinable`] queue as the payload of a segment (kind
/// `joinable-queue`). Never constructed: it names the [`Object`].
#[derive(Debug)]
pub enum JoinableQueue {}

// SAFETY: `join_layout` puts the byte queue (see `MsgQueue`'s impl) at 0
// and the `JoinControl` (atomics only, 4-aligned) at a 128-aligned offset
// after it, both inside `payload_len` bytes. The view accesses them only
// atomically, the count only with checked arithmetic. All-zero is the
// initial state. `decode(encode(p))` gives `p` back.
unsafe impl Object for JoinableQueue {
    const KIND: Kind = Kind::JOINABLE_QUEUE;
    type Params = MsgParams;
    type View<'a> = Joinable<'a>;
    type Element = u8;

    fn encode(p: &MsgParams) -> [u64; 2] {
        p.encode()
    }

    fn decode(recorded: [u64; 2]) -> Result<MsgParams, LayoutError> {
        MsgParams::decode(recorded)
    }

    fn payload_len(p: &MsgParams) -> Result<usize, LayoutError> {
        Ok(join_layout(p)?.1)
    }

    unsafe fn init(_payload: NonNull<u8>, _params: &MsgParams) {}

    #[cfg(not(loom))]
    unsafe fn attach<'a>(payload: NonNull<u8>, p: &MsgParams) -> Joinable<'a> {
        let (at, _) = join_layout(p).expect("the caller checked payload_len(params)");
        // SAFETY: `attach`'s contract covers the byte queue's part, a
        // prefix of this payload.
        let queue = unsafe { super::msg::attach_at(payload, p) };
        // SAFETY: `at + 16 <= payload_len`, `at` is 128-aligned and the
        // payload PAYLOAD_ALIGN-aligned; `JoinControl` is atomics only,
        // valid for any bytes, accessed by everyone only atomically.
        let join = unsafe { &*payload.as_ptr().add(at).cast::<JoinControl>() };
        Joinable { queue, join }
    }

    #[cfg(loom)]
    unsafe fn attach<'a>(_payload: NonNull<u8>, _p: &MsgParams) -> Joinable<'a> {
        unimplemented!("loom models build queues from parts")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::primitive::AtomicU64;
    use crate::queue::mpmc::QueueControl;
    use crate::queue::roles::RoleSlot;

    #[test]
    fn count_task_done_join() {
        let p = MsgParams::new(2, 8).with_registry(1, 1);
        let ctl = QueueControl::new();
        let (producers, consumers) = ([RoleSlot::new()], [RoleSlot::new()]);
        let words: Vec<AtomicU64> = (0..p.slot_words()).map(|_| AtomicU64::new(0)).collect();
        let join = JoinControl::new();
        let q = Joinable::from_parts(
            ByteQueue::from_parts(&ctl, &producers, &consumers, &words, 8).unwrap(),
            &join,
        );
        assert_eq!(q.join_timeout(Duration::ZERO), Ok(()));
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        tx.try_send(b"a").unwrap();
        tx.try_send(b"b").unwrap();
        // Full, and too long: not counted.
        assert_eq!(tx.try_send(b"c"), Err(MsgSendError::Full));
        assert!(matches!(
            tx.try_send(&[0; 9]),
            Err(MsgSendError::Encode(JoinableEncodeError::Encode(_)))
        ));
        assert_eq!(q.unfinished(), 2);
        assert_eq!(
            q.join_timeout(Duration::from_millis(1)),
            Err(JoinTimeout { unfinished: 2 })
        );
        let mut buf = [0u8; 8];
        rx.try_recv_into(&mut buf).unwrap();
        assert_eq!(q.task_done(), Ok(1));
        rx.try_recv_into(&mut buf).unwrap();
        assert_eq!(q.task_done(), Ok(0));
        assert_eq!(q.join_timeout(Duration::from_millis(1)), Ok(()));
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
        assert_eq!(q.unfinished(), 0);
        // A hostile count at the limit: sends are refused, not wrapped.
        join.unfinished.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(
            tx.try_send(b"d"),
            Err(MsgSendError::Encode(JoinableEncodeError::TooManyTasks))
        );
        assert_eq!(q.unfinished(), u32::MAX);
    }

    /// A message longer than `max_len` is `TooLong`, checked before the
    /// task is counted, as `ByteProducer::try_send` checks it before
    /// anything else: with a count at its limit too (found by the
    /// `joinable` fuzz target, which got `TooManyTasks`), and with no
    /// passing count for a joiner to see.
    #[test]
    fn too_long_is_told_before_the_count() {
        let p = MsgParams::new(2, 8).with_registry(1, 1);
        let ctl = QueueControl::new();
        let (producers, consumers) = ([RoleSlot::new()], [RoleSlot::new()]);
        let words: Vec<AtomicU64> = (0..p.slot_words()).map(|_| AtomicU64::new(0)).collect();
        let join = JoinControl::new();
        let q = Joinable::from_parts(
            ByteQueue::from_parts(&ctl, &producers, &consumers, &words, 8).unwrap(),
            &join,
        );
        let mut tx = q.producer().unwrap();
        join.unfinished.store(u32::MAX, Ordering::Relaxed);
        let too_long = [0u8; 9];
        let is_too_long = |r: Result<(), JoinableSendError<TooLong>>| {
            matches!(
                r,
                Err(MsgSendError::Encode(JoinableEncodeError::Encode(TooLong {
                    len: 9,
                    max_len: 8
                })))
            )
        };
        assert!(is_too_long(tx.try_send(&too_long)));
        assert!(is_too_long(tx.send(&too_long)));
        assert_eq!(q.unfinished(), u32::MAX);
    }

    #[test]
    fn layout_puts_the_count_on_its_own_line() {
        let p = MsgParams::new(4, 24).with_registry(2, 2);
        let (at, len) = join_layout(&p).unwrap();
        assert_eq!(at % 128, 0);
        assert!(at >= p.layout().unwrap().len);
        assert_eq!(len, at + 128);
    }
}
