//! Queues of messages of any [`Message`] type between processes: the
//! byte-message MPMC queue ([`shmkit_core::queue::msg`]) in a segment.
//!
//! [`Shared<MsgQueue>`](Shared) places the core queue in a named,
//! anonymous or memfd segment (its capacity and longest message fixed at
//! creation and checked by every opener); its view hands out the core
//! producer and consumer handles.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

use shmkit_core::header::Kind;
use shmkit_core::object::{LayoutError, Object};
use shmkit_core::queue::joinable::{
    JoinTimeout, Joinable, JoinableEncodeError, JoinableProducer, JoinableQueue as CoreJoinable,
    TaskDoneError, TooManyTasks,
};
use shmkit_core::queue::msg::{
    ByteConsumer, ByteProducer, ByteQueue, MsgParams, MsgQueue, MsgRecvError, MsgSendError,
    SlotWriter,
};
use shmkit_core::wait::Deadline;

use crate::error::CreateError;
use crate::handle::{Create, IntoInit, Shared};
use crate::message::{ByteSink, DecodeError, EncodeError, EncodeToError, Message, SinkFull};
use crate::role::{Owned, RoleHandle};

impl Create for MsgQueue {
    type Init = MsgParams;

    fn params(init: &MsgParams) -> MsgParams {
        *init
    }

    unsafe fn write_init(_payload: NonNull<u8>, _params: &MsgParams, _init: MsgParams) {}
}

impl IntoInit<MsgQueue> for MsgParams {
    fn into_init(self) -> MsgParams {
        self
    }
}

/// `(capacity, max_len)`: the default registry sizes.
impl IntoInit<MsgQueue> for (usize, usize) {
    fn into_init(self) -> MsgParams {
        MsgParams::new(self.0, self.1)
    }
}

impl Create for CoreJoinable {
    type Init = MsgParams;

    fn params(init: &MsgParams) -> MsgParams {
        *init
    }

    unsafe fn write_init(_payload: NonNull<u8>, _params: &MsgParams, _init: MsgParams) {}
}

impl IntoInit<CoreJoinable> for MsgParams {
    fn into_init(self) -> MsgParams {
        self
    }
}

/// `(capacity, max_len)`: the default registry sizes.
impl IntoInit<CoreJoinable> for (usize, usize) {
    fn into_init(self) -> MsgParams {
        MsgParams::new(self.0, self.1)
    }
}

// ---------------------------------------------------------------------
// Typed handles
// ---------------------------------------------------------------------

/// The byte-message queue as the payload of a segment whose recorded
/// element type is `M` (so that an opener expecting another message type
/// is refused): the object of [`MessageQueue<M>`]. Never constructed.
#[derive(Debug)]
pub enum Messages<M> {
    #[doc(hidden)]
    _Never(std::convert::Infallible, PhantomData<fn() -> M>),
}

/// The joinable queue carrying `M`s: the object of [`JoinableQueue<M>`].
/// Never constructed.
#[derive(Debug)]
pub enum JoinableMessages<M> {
    #[doc(hidden)]
    _Never(std::convert::Infallible, PhantomData<fn() -> M>),
}

/// A queue of `M` messages between processes in a segment: Python's
/// `multiprocessing.Queue` of objects. `M` is any [`Message`] (every
/// `Pod`; any serde type through [`Serde`](crate::message::Serde)), each
/// encoded to at most `max_len` bytes; capacity and `max_len` are fixed at
/// creation (`(capacity, max_len)` or a [`MsgParams`]) and checked by
/// every opener, as is `M`'s type name.
///
/// Attach with [`sender`](Shared::sender) / [`receiver`](Shared::receiver)
/// (owned, `'static`, `Send`), or get both ends of a fresh anonymous one
/// from [`message_channel`].
///
/// ```
/// use shmkit_posix::msg_queue::MessageQueue;
///
/// let q = MessageQueue::<[u32; 4]>::anonymous((8, 16))?;
/// let (mut tx, mut rx) = (q.sender()?, q.receiver()?);
/// tx.send(&[1, 2, 3, 4])?;
/// assert_eq!(rx.recv()?, [1, 2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type MessageQueue<M> = Shared<Messages<M>>;

/// A [`MessageQueue`] with an unfinished-task count: Python's
/// `JoinableQueue`. Every message sent counts a task;
/// [`task_done`](Shared::task_done) marks one done;
/// [`join`](Shared::join) / [`join_timeout`](Shared::join_timeout) wait
/// until none is left. A consumer killed between a receive and its
/// `task_done` leaves its task counted: `join` would then wait forever,
/// `join_timeout` returns [`JoinTimeout`] with the count (see
/// [`shmkit_core::queue::joinable`]).
///
/// ```
/// use std::time::Duration;
/// use shmkit_posix::msg_queue::JoinableQueue;
///
/// let q = JoinableQueue::<u64>::anonymous((8, 8))?;
/// let (mut tx, mut rx) = (q.sender()?, q.receiver()?);
/// tx.send(&7)?;
/// assert!(q.join_timeout(Duration::from_millis(1)).is_err());
/// assert_eq!(rx.recv()?, 7);
/// q.task_done()?;
/// q.join()?;
/// assert!(q.task_done().is_err()); // more task_done than items
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type JoinableQueue<M> = Shared<JoinableMessages<M>>;

// SAFETY: delegates every item to `MsgQueue`'s impl (same kind, params,
// layout, init and view); only the recorded element type differs.
unsafe impl<M: Message + 'static> Object for Messages<M> {
    const KIND: Kind = Kind::MSG_QUEUE;
    type Params = MsgParams;
    type View<'a> = ByteQueue<'a>;
    type Element = M;

    fn encode(p: &MsgParams) -> [u64; 2] {
        MsgQueue::encode(p)
    }
    fn decode(recorded: [u64; 2]) -> Result<MsgParams, LayoutError> {
        MsgQueue::decode(recorded)
    }
    fn payload_len(p: &MsgParams) -> Result<usize, LayoutError> {
        MsgQueue::payload_len(p)
    }
    unsafe fn init(payload: NonNull<u8>, p: &MsgParams) {
        // SAFETY: the caller's contract, passed on.
        unsafe { MsgQueue::init(payload, p) }
    }
    unsafe fn attach<'a>(payload: NonNull<u8>, p: &MsgParams) -> ByteQueue<'a> {
        // SAFETY: the caller's contract, passed on.
        unsafe { MsgQueue::attach(payload, p) }
    }
}

// SAFETY: delegates every item to `core::JoinableQueue`'s impl; only the
// recorded element type differs.
unsafe impl<M: Message + 'static> Object for JoinableMessages<M> {
    const KIND: Kind = Kind::JOINABLE_QUEUE;
    type Params = MsgParams;
    type View<'a> = Joinable<'a>;
    type Element = M;

    fn encode(p: &MsgParams) -> [u64; 2] {
        CoreJoinable::encode(p)
    }
    fn decode(recorded: [u64; 2]) -> Result<MsgParams, LayoutError> {
        CoreJoinable::decode(recorded)
    }
    fn payload_len(p: &MsgParams) -> Result<usize, LayoutError> {
        CoreJoinable::payload_len(p)
    }
    unsafe fn init(payload: NonNull<u8>, p: &MsgParams) {
        // SAFETY: the caller's contract, passed on.
        unsafe { CoreJoinable::init(payload, p) }
    }
    unsafe fn attach<'a>(payload: NonNull<u8>, p: &MsgParams) -> Joinable<'a> {
        // SAFETY: the caller's contract, passed on.
        unsafe { CoreJoinable::attach(payload, p) }
    }
}

macro_rules! create_typed {
    ($($obj:ident),+) => {$(
        impl<M: Message + 'static> Create for $obj<M> {
            type Init = MsgParams;

            fn params(init: &MsgParams) -> MsgParams {
                *init
            }

            unsafe fn write_init(_payload: NonNull<u8>, _params: &MsgParams, _init: MsgParams) {}
        }

        impl<M: Message + 'static> IntoInit<$obj<M>> for MsgParams {
            fn into_init(self) -> MsgParams {
                self
            }
        }

        /// `(capacity, max_len)`: the default registry sizes.
        impl<M: Message + 'static> IntoInit<$obj<M>> for (usize, usize) {
            fn into_init(self) -> MsgParams {
                MsgParams::new(self.0, self.1)
            }
        }
    )+};
}

create_typed!(Messages, JoinableMessages);

/// Why a send failed. The message was not sent and is still the caller's
/// (sends take `&M`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSendError {
    /// No room right now (`try_send`).
    Full,
    /// No room before the deadline (`send_timeout`).
    Timeout,
    /// Every receiver is gone (dropped or dead): nobody would receive it.
    Disconnected,
    /// The queue's shared state is impossible (corrupted by a peer).
    Corrupt,
    /// The message encodes to more than the queue's `max_len` bytes.
    TooLong {
        /// The queue's `max_len`.
        max_len: usize,
    },
    /// The message cannot be encoded.
    Encode(EncodeError),
    /// A joinable queue's unfinished count is at its limit (`u32::MAX`).
    TooManyTasks,
}

impl fmt::Display for MessageSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageSendError::Full => {
                f.write_str("the queue is full; retry later or use a blocking send")
            }
            MessageSendError::Timeout => f.write_str("the queue stayed full until the deadline"),
            MessageSendError::Disconnected => f.write_str(
                "every receiver is gone (dropped or its process died); nobody will receive this",
            ),
            MessageSendError::Corrupt => f.write_str(
                "the queue's shared state is impossible (corrupted by a peer); recreate the queue",
            ),
            MessageSendError::TooLong { max_len } => write!(
                f,
                "the message encodes to more than the queue's limit of {max_len} bytes; \
                 create the queue with a larger max_len or send smaller messages (it was not sent)"
            ),
            MessageSendError::Encode(e) => e.fmt(f),
            MessageSendError::TooManyTasks => TooManyTasks.fmt(f),
        }
    }
}

impl std::error::Error for MessageSendError {}

/// Why a receive failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageRecvError {
    /// Nothing to receive right now (`try_recv`).
    Empty,
    /// Nothing arrived before the deadline (`recv_timeout`).
    Timeout,
    /// Empty, and every sender is gone: nothing will ever arrive.
    Disconnected,
    /// The queue's shared state is impossible, or a message's length was
    /// (corrupted by a peer; that message was consumed).
    Corrupt,
    /// The bytes taken do not decode as an `M` (a peer sent another
    /// type, or garbage); that message was consumed.
    Decode(DecodeError),
}

impl fmt::Display for MessageRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageRecvError::Empty => {
                f.write_str("the queue is empty; retry later or use a blocking receive")
            }
            MessageRecvError::Timeout => f.write_str("nothing arrived before the deadline"),
            MessageRecvError::Disconnected => f.write_str(
                "the queue is empty and every sender is gone (dropped or its process died)",
            ),
            MessageRecvError::Corrupt => f.write_str(
                "the queue's shared state is impossible (corrupted by a peer); recreate the queue",
            ),
            MessageRecvError::Decode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for MessageRecvError {}

/// The stage a message of unknown length is encoded into, on the stack,
/// before it takes a slot (see [`MessageSender`]'s sends): a small
/// record's encoding, with room to spare.
const STAGED: usize = 128;

/// A [`SlotWriter`] as the sink of [`Message::encode_to`].
struct SlotSink<'w, 's>(&'w mut SlotWriter<'s>);

impl ByteSink for SlotSink<'_, '_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), SinkFull> {
        self.0.write(bytes).map_err(|_| SinkFull)
    }
}

fn send_error(e: MsgSendError<EncodeToError>, max_len: usize) -> MessageSendError {
    match e {
        MsgSendError::Full => MessageSendError::Full,
        MsgSendError::Timeout => MessageSendError::Timeout,
        MsgSendError::Disconnected => MessageSendError::Disconnected,
        MsgSendError::Corrupt => MessageSendError::Corrupt,
        MsgSendError::Encode(EncodeToError::Full) => MessageSendError::TooLong { max_len },
        MsgSendError::Encode(EncodeToError::Encode(e)) => MessageSendError::Encode(e),
    }
}

fn joinable_send_error(
    e: MsgSendError<JoinableEncodeError<EncodeToError>>,
    max_len: usize,
) -> MessageSendError {
    match e {
        MsgSendError::Full => MessageSendError::Full,
        MsgSendError::Timeout => MessageSendError::Timeout,
        MsgSendError::Disconnected => MessageSendError::Disconnected,
        MsgSendError::Corrupt => MessageSendError::Corrupt,
        MsgSendError::Encode(JoinableEncodeError::TooManyTasks) => MessageSendError::TooManyTasks,
        MsgSendError::Encode(JoinableEncodeError::Encode(e)) => {
            send_error(MsgSendError::Encode(e), max_len)
        }
    }
}

impl RoleHandle for ByteProducer<'static> {
    fn forget_copy(self) {
        ByteProducer::forget_copy(self);
    }
}

impl RoleHandle for ByteConsumer<'static> {
    fn forget_copy(self) {
        ByteConsumer::forget_copy(self);
    }
}

impl RoleHandle for JoinableProducer<'static> {
    fn forget_copy(self) {
        JoinableProducer::forget_copy(self);
    }
}

/// The core producer of a sender: the byte queue's, or the joinable
/// queue's (which counts tasks). Owned through the crate's one
/// owned-handle helper ([`crate::role`]).
enum SenderInner<M: Message + 'static> {
    Plain(Owned<ByteProducer<'static>, Messages<M>>),
    Joinable(Owned<JoinableProducer<'static>, JoinableMessages<M>>),
}

/// The sending end of a [`MessageQueue`] or of a [`JoinableQueue`]
/// (whose sends count tasks): owned, `'static`, `Send`, not `Sync` (one
/// per thread; attach more with [`sender`](Shared::sender)). Holds a
/// producer registration until dropped, shared with its `fork` copies (see
/// [`crate::role`]); each message is encoded straight into its slot.
///
/// Sends take `&mut self`: the message's encoder (user code: a
/// `Serialize` impl) runs while the core handle is borrowed, so it must
/// not be able to reach the same sender again.
pub struct MessageSender<M: Message + 'static> {
    inner: SenderInner<M>,
    max_len: usize,
}

impl<M: Message + 'static> fmt::Debug for MessageSender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSender")
            .field("max_len", &self.max_len)
            .field("joinable", &matches!(self.inner, SenderInner::Joinable(_)))
            .finish_non_exhaustive()
    }
}

impl<M: Message + 'static> MessageSender<M> {
    /// The longest encoding the queue takes, in bytes.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// `TooLong` now if `msg`'s length is known without encoding it and
    /// exceeds `max_len`.
    #[inline]
    fn check(&self, msg: &M) -> Result<(), MessageSendError> {
        match msg.encoded_len() {
            Some(n) if n > self.max_len => Err(MessageSendError::TooLong {
                max_len: self.max_len,
            }),
            _ => Ok(()),
        }
    }

    /// Sends `msg`. A message whose length is not known up front (a serde
    /// value) is encoded first into [`STAGED`] bytes on the stack, and only an
    /// encoding that succeeded takes a slot: one that fails, or is too
    /// long, costs the queue nothing (Python's bpo-33078: with `maxsize=1`,
    /// a put after a failed one does not wait). Only a message longer
    /// than the stage is encoded straight into its slot, and gives the slot
    /// up (marked for consumers to skip) if its encoding fails half-way.
    #[inline]
    fn send_raw(
        &mut self,
        msg: &M,
        try_: bool,
        deadline: Option<Deadline>,
    ) -> Result<(), MessageSendError> {
        self.check(msg)?;
        if msg.encoded_len().is_none() {
            let mut stage = [0u8; STAGED];
            match msg.encode_to_slice(&mut stage) {
                Ok(n) if n > self.max_len => {
                    return Err(MessageSendError::TooLong {
                        max_len: self.max_len,
                    });
                }
                Ok(n) => {
                    let bytes = &stage[..n];
                    return self.send_with(
                        |w: &mut SlotWriter<'_>| w.write(bytes).map_err(|_| EncodeToError::Full),
                        try_,
                        deadline,
                    );
                }
                Err(EncodeToError::Encode(e)) => return Err(MessageSendError::Encode(e)),
                // Longer than the stage: straight into the slot.
                Err(EncodeToError::Full) => {}
            }
        }
        self.send_with(
            |w: &mut SlotWriter<'_>| msg.encode_to(&mut SlotSink(w)),
            try_,
            deadline,
        )
    }

    /// Claims a slot (now, or waiting until `deadline`) and fills it with
    /// `encode`.
    #[inline]
    fn send_with(
        &mut self,
        encode: impl FnOnce(&mut SlotWriter<'_>) -> Result<(), EncodeToError>,
        try_: bool,
        deadline: Option<Deadline>,
    ) -> Result<(), MessageSendError> {
        let max_len = self.max_len;
        match &mut self.inner {
            SenderInner::Plain(o) => {
                let p = o.get_mut();
                if try_ {
                    p.try_send_with(encode)
                } else {
                    p.send_with_deadline(encode, deadline)
                }
                .map_err(|e| send_error(e, max_len))
            }
            SenderInner::Joinable(o) => {
                let p = o.get_mut();
                if try_ {
                    p.try_send_with(encode)
                } else {
                    p.send_with_deadline(encode, deadline)
                }
                .map_err(|e| joinable_send_error(e, max_len))
            }
        }
    }

    /// Sends `msg` if there is room now.
    ///
    /// # Errors
    /// `Full`, `Disconnected`, `Corrupt`, `TooLong`, `Encode`
    /// (`TooManyTasks` for a joinable queue).
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_send(&mut self, msg: &M) -> Result<(), MessageSendError> {
        self.send_raw(msg, true, None)
    }

    /// Sends `msg`, waiting while the queue is full.
    ///
    /// # Errors
    /// `Disconnected`, `Corrupt`, `TooLong`, `Encode` (`TooManyTasks`).
    #[doc(alias = "put")]
    pub fn send(&mut self, msg: &M) -> Result<(), MessageSendError> {
        self.send_raw(msg, false, None)
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`, `TooLong`, `Encode`
    /// (`TooManyTasks`).
    pub fn send_timeout(&mut self, msg: &M, timeout: Duration) -> Result<(), MessageSendError> {
        self.send_raw(msg, false, Some(Deadline::after(timeout)))
    }
}

/// The core consumer of a receiver, owned (see [`SenderInner`]).
enum ReceiverInner<M: Message + 'static> {
    Plain(Owned<ByteConsumer<'static>, Messages<M>>),
    Joinable(Owned<ByteConsumer<'static>, JoinableMessages<M>>),
}

/// The receiving end of a [`MessageQueue`] or [`JoinableQueue`]: owned,
/// `'static`, `Send`. Decodes each message from a buffer of `max_len`
/// bytes it allocates once (the copy out of the slot is what makes a
/// receive safe against other receivers: see
/// [`shmkit_core::queue::msg`]).
pub struct MessageReceiver<M: Message + 'static> {
    inner: ReceiverInner<M>,
    buf: Box<[u8]>,
}

impl<M: Message + 'static> fmt::Debug for MessageReceiver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageReceiver")
            .field("max_len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<M: Message + 'static> MessageReceiver<M> {
    fn consumer(&mut self) -> (&mut ByteConsumer<'static>, &mut [u8]) {
        let c = match &mut self.inner {
            ReceiverInner::Plain(o) => o.get_mut(),
            ReceiverInner::Joinable(o) => o.get_mut(),
        };
        (c, &mut self.buf)
    }

    #[inline]
    fn finish(&mut self, r: Result<usize, MsgRecvError>) -> Result<M, MessageRecvError> {
        match r {
            Ok(n) => M::decode(&self.buf[..n]).map_err(MessageRecvError::Decode),
            Err(MsgRecvError::Empty) => Err(MessageRecvError::Empty),
            Err(MsgRecvError::Timeout) => Err(MessageRecvError::Timeout),
            Err(MsgRecvError::Disconnected) => Err(MessageRecvError::Disconnected),
            // `BufferTooSmall` cannot happen: the buffer is `max_len` long.
            Err(MsgRecvError::Corrupt | MsgRecvError::BufferTooSmall { .. }) => {
                Err(MessageRecvError::Corrupt)
            }
        }
    }

    /// Receives a message if one is ready.
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupt`, `Decode`.
    #[inline]
    pub fn try_recv(&mut self) -> Result<M, MessageRecvError> {
        let (c, buf) = self.consumer();
        let r = c.try_recv_into(buf);
        self.finish(r)
    }

    /// Receives a message, waiting while the queue is empty.
    ///
    /// # Errors
    /// `Disconnected` (drained, every sender gone), `Corrupt`, `Decode`.
    #[doc(alias = "get")]
    pub fn recv(&mut self) -> Result<M, MessageRecvError> {
        let (c, buf) = self.consumer();
        let r = c.recv_into(buf);
        self.finish(r)
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`, `Decode`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<M, MessageRecvError> {
        let (c, buf) = self.consumer();
        let r = c.recv_into_timeout(buf, timeout);
        self.finish(r)
    }

    /// A blocking iterator over the messages: ends once the queue is
    /// drained and every sender is gone. Items are `Result`s so that a
    /// message that does not decode (or a corrupt queue) is reported, not
    /// skipped silently; after a `Corrupt` the iterator ends.
    pub fn iter(&mut self) -> Iter<'_, M> {
        Iter {
            rx: self,
            done: false,
        }
    }
}

/// The iterator of [`MessageReceiver::iter`].
#[derive(Debug)]
pub struct Iter<'r, M: Message + 'static> {
    rx: &'r mut MessageReceiver<M>,
    done: bool,
}

impl<M: Message + 'static> Iterator for Iter<'_, M> {
    type Item = Result<M, MessageRecvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.rx.recv() {
            Err(MessageRecvError::Disconnected) => {
                self.done = true;
                None
            }
            Err(MessageRecvError::Corrupt) => {
                self.done = true;
                Some(Err(MessageRecvError::Corrupt))
            }
            r => Some(r),
        }
    }
}

/// Attaching a sender or receiver failed.
pub use shmkit_core::queue::roles::AttachError;

impl<M: Message + 'static> Shared<Messages<M>> {
    /// Attaches a sender (one more producer of the queue).
    ///
    /// # Errors
    /// [`AttachError::Full`] if every producer entry is held by a live
    /// handle; [`AttachError::Closed`] once the producers' role closed.
    pub fn sender(&self) -> Result<MessageSender<M>, AttachError> {
        let o = Owned::attach(self, |q, presence| q.producer_with(presence))?;
        Ok(MessageSender {
            max_len: self.params().max_len,
            inner: SenderInner::Plain(o),
        })
    }

    /// Attaches a receiver (one more consumer of the queue).
    ///
    /// # Errors
    /// As [`sender`](Self::sender).
    pub fn receiver(&self) -> Result<MessageReceiver<M>, AttachError> {
        let o = Owned::attach(self, |q, presence| q.consumer_with(presence))?;
        Ok(MessageReceiver {
            buf: vec![0u8; self.params().max_len].into_boxed_slice(),
            inner: ReceiverInner::Plain(o),
        })
    }

    /// Messages sent and not yet received (approximate while others work;
    /// Python's `qsize()`).
    #[doc(alias = "qsize")]
    #[must_use]
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether [`len`](Self::len) is 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages the queue holds at most (Python's `maxsize`; fixed at
    /// creation, a power of two).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.view().capacity()
    }

    /// Whether [`len`](Self::len) has reached the
    /// [`capacity`](Self::capacity), so that a `try_send` now would say
    /// `Full` (Python's `full()`; a snapshot while others work).
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }
}

impl<M: Message + 'static> Shared<JoinableMessages<M>> {
    /// Attaches a sender: each message it sends counts a task.
    ///
    /// # Errors
    /// [`AttachError::Full`] if every producer entry is held by a live
    /// handle; [`AttachError::Closed`] once the producers' role closed.
    pub fn sender(&self) -> Result<MessageSender<M>, AttachError> {
        let o = Owned::attach(self, |q, presence| q.producer_with(presence))?;
        Ok(MessageSender {
            max_len: self.params().max_len,
            inner: SenderInner::Joinable(o),
        })
    }

    /// Attaches a receiver. Call [`task_done`](Self::task_done) once per
    /// message received, when its work is finished.
    ///
    /// # Errors
    /// As [`sender`](Self::sender).
    pub fn receiver(&self) -> Result<MessageReceiver<M>, AttachError> {
        let o = Owned::attach(self, |q, presence| q.consumer_with(presence))?;
        Ok(MessageReceiver {
            buf: vec![0u8; self.params().max_len].into_boxed_slice(),
            inner: ReceiverInner::Joinable(o),
        })
    }

    /// Marks one task done: the count left.
    ///
    /// # Errors
    /// [`TaskDoneError::TooManyCalls`] (Python's `ValueError`) if no task
    /// is unfinished.
    pub fn task_done(&self) -> Result<u32, TaskDoneError> {
        self.view().task_done()
    }

    /// Waits until every message sent was marked done. Waits forever if
    /// a consumer died before its `task_done`: prefer
    /// [`join_timeout`](Self::join_timeout) when consumers may be killed.
    ///
    /// # Errors
    /// None in practice (a `Result` for symmetry with `join_timeout`).
    pub fn join(&self) -> Result<(), JoinTimeout> {
        self.view().join_deadline(None)
    }

    /// Waits at most `timeout` until every message sent was marked done.
    ///
    /// # Errors
    /// [`JoinTimeout`] with the count still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeout> {
        self.view().join_timeout(timeout)
    }

    /// Tasks sent and not yet marked done.
    #[must_use]
    pub fn unfinished(&self) -> u32 {
        self.view().unfinished()
    }

    /// Messages sent and not yet received (approximate while others work;
    /// Python's `qsize()`; not the unfinished-task count, which also
    /// counts messages received and not yet marked done).
    #[doc(alias = "qsize")]
    #[must_use]
    pub fn len(&self) -> usize {
        self.view().queue().len()
    }

    /// Whether [`len`](Self::len) is 0 (Python's `empty()`).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages the queue holds at most (Python's `maxsize`; fixed at
    /// creation, a power of two).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.view().queue().capacity()
    }

    /// Whether [`len`](Self::len) has reached the
    /// [`capacity`](Self::capacity) (Python's `full()`; a snapshot).
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }
}

/// Both ends of a new anonymous [`MessageQueue`] of `capacity` messages
/// of up to `max_len` encoded bytes (crossbeam's `bounded`): the ends
/// keep the queue alive; children forked afterwards can use them (or the
/// segment, through more senders and receivers).
///
/// ```
/// use shmkit_posix::msg_queue::{message_channel, MessageRecvError};
///
/// let (mut tx, mut rx) = message_channel::<u64>(4, 8)?;
/// tx.send(&1)?;
/// drop(tx);
/// assert_eq!(rx.recv()?, 1);
/// assert_eq!(rx.recv(), Err(MessageRecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ChannelError`]: impossible parameters (`capacity` a power of two,
/// `max_len` in `1..=2^30`), or the OS refused the segment.
pub fn message_channel<M: Message + 'static>(
    capacity: usize,
    max_len: usize,
) -> Result<(MessageSender<M>, MessageReceiver<M>), ChannelError> {
    let q = MessageQueue::<M>::anonymous((capacity, max_len)).map_err(ChannelError::Create)?;
    let tx = q.sender().map_err(ChannelError::Attach)?;
    let rx = q.receiver().map_err(ChannelError::Attach)?;
    Ok((tx, rx))
}

/// Why [`message_channel`] failed.
#[derive(Debug)]
pub enum ChannelError {
    /// The segment could not be made.
    Create(CreateError),
    /// A registry refused the end (cannot happen on a fresh queue).
    Attach(AttachError),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Create(e) => e.fmt(f),
            ChannelError::Attach(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ChannelError {}
