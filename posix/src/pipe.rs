//! Byte-message pipes: Python's `multiprocessing.Pipe()`.
//!
//! | Python | shmkit |
//! |---|---|
//! | `a, b = Pipe()` | `let (a, b) = pipe::duplex(capacity)?;` ([`Connection`]s) |
//! | `r, w = Pipe(duplex=False)` | `let (r, w) = pipe::one_way(capacity)?;` (reader first, as Python) |
//! | `conn.send_bytes(b)` / `conn.recv_bytes()` | [`send_bytes`](Connection::send_bytes) / [`recv_bytes`](Connection::recv_bytes) (also `try_`, `_timeout`, [`recv_bytes_into`](Connection::recv_bytes_into)) |
//! | `conn.send(obj)` / `conn.recv()` | [`send`](Connection::send) / [`recv`](Connection::recv) for any [`Message`] (`Pod` values, `Serde<T>` with the `serde` feature) |
//! | `conn.poll(timeout)` | [`poll`](Connection::poll) |
//! | `conn.close()` | [`close`](Connection::close) (or drop) |
//! | `EOFError` | [`RecvError::Eof`]; a send to a gone receiver is [`SendError::Disconnected`] (`BrokenPipeError`) |
//!
//! A named or memfd pipe is a [`Pipe`] (duplex: [`Pipe::end`]`(End::A)`,
//! `End::B`) or a [`OneWayPipe`] (`.sender()` / `.receiver()`), with the
//! constructors of every [`Shared`] kind. The capacity (bytes per
//! direction) is a power of two; a message holds at most `capacity - 4`
//! bytes ([`SendError::TooLarge`], nothing is sent). Ends are owned
//! (`'static + Send`, not `Sync`); a [`Connection`] splits into its two
//! halves.
//!
//! Across `fork` an end is one end in every process that has a copy: the
//! receiver sees EOF when every copy of the sending end is gone (dropped,
//! exit, kill -9), and EOF is final. See [`crate::queue`]'s module docs.
//! Copies may be *held* by several processes, but only one of them may
//! *use* an end: a pipe is single-producer, single-consumer, and a
//! sender's write position lives in the handle, so a copy that sends from
//! a second process (even after the first has finished) overwrites the
//! first's unread messages. Several writers share a
//! [`MessageQueue`](crate::msg_queue::MessageQueue) instead, each process
//! attaching its own sender.
//!
//! ```
//! use shmkit_posix::{pipe, process};
//!
//! // Python: parent_conn, child_conn = Pipe(); Process(target=f, args=(child_conn,))
//! let (parent, child) = pipe::duplex(1024)?;
//! let kid = process::spawn(move || {
//!     for i in 0..10u32 {
//!         child.send(&i).unwrap();
//!     }
//!     0
//! })?;
//! // `child` moved into the closure: only the child process holds it now.
//! let got: Vec<u32> = std::iter::from_fn(|| parent.recv().ok()).collect();
//! assert_eq!(got, (0..10).collect::<Vec<_>>()); // then EOF
//! kid.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use shmkit_core::queue::pipe::{self as core_pipe, DuplexPipe, OneWayPipe as OneWay};

use crate::error::CreateError;
use crate::handle::{Create, IntoInit, Shared};
use crate::message::{DecodeError, EncodeError, Message};
use crate::role::Owned;

pub use shmkit_core::queue::pipe::{
    PipeRecvError as RecvError, PipeSendError as SendError, FRAME_HEADER,
};
pub use shmkit_core::queue::roles::AttachError;

/// A duplex pipe in a segment (kind `duplex_pipe`): `Pipe()`.
pub type Pipe = Shared<DuplexPipe>;

/// A one-way pipe in a segment (kind `pipe`): `Pipe(duplex=False)`.
pub type OneWayPipe = Shared<OneWay>;

macro_rules! capacity_init {
    ($($obj:ty),*) => {$(
        impl Create for $obj {
            type Init = usize;

            fn params(capacity: &usize) -> usize {
                *capacity
            }

            unsafe fn write_init(_: std::ptr::NonNull<u8>, _: &usize, _: usize) {}
        }

        impl IntoInit<$obj> for usize {
            fn into_init(self) -> usize {
                self
            }
        }
    )*};
}
capacity_init!(DuplexPipe, OneWay);

/// Which end of a duplex [`Pipe`]: `A` sends on the first ring and
/// receives on the second, `B` the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The first end (`duplex` returns it first).
    A,
    /// The second end.
    B,
}

/// An anonymous duplex pipe with `capacity` bytes per direction (a power
/// of two) and both its ends: Python's `Pipe()`.
///
/// # Errors
/// [`CreateError::InvalidLayout`] for a bad capacity; OS errors.
pub fn duplex(capacity: usize) -> Result<(Connection, Connection), CreateError> {
    let pipe = Pipe::anonymous(capacity)?;
    let fresh = "a pipe this process just created has both ends free";
    Ok((
        pipe.end(End::A).expect(fresh),
        pipe.end(End::B).expect(fresh),
    ))
}

/// An anonymous one-way pipe and its ends, reader first: Python's
/// `Pipe(duplex=False)`.
///
/// # Errors
/// As [`duplex`].
pub fn one_way(capacity: usize) -> Result<(PipeReceiver, PipeSender), CreateError> {
    let pipe = OneWayPipe::anonymous(capacity)?;
    let fresh = "a pipe this process just created has both ends free";
    Ok((pipe.receiver().expect(fresh), pipe.sender().expect(fresh)))
}

impl Shared<DuplexPipe> {
    /// Attaches end `end`.
    ///
    /// # Errors
    /// [`AttachError::Taken`] while a live handle holds that end;
    /// [`AttachError::Closed`] once it closed.
    pub fn end(&self, end: End) -> Result<Connection, AttachError> {
        let (out, inn) = match end {
            End::A => (0, 1),
            End::B => (1, 0),
        };
        let tx = Owned::attach(self, |p, presence| p[out].sender_with(presence))?;
        let rx = Owned::attach(self, |p, presence| p[inn].receiver_with(presence))?;
        Ok(Connection {
            tx: PipeSender {
                inner: Tx::Duplex(tx),
            },
            rx: PipeReceiver {
                inner: Rx::Duplex(rx),
            },
        })
    }

    /// The largest message.
    #[must_use]
    pub fn max_message_len(&self) -> usize {
        self.params() - FRAME_HEADER
    }
}

impl Shared<OneWay> {
    /// Attaches the sending end.
    ///
    /// # Errors
    /// As [`Pipe::end`].
    pub fn sender(&self) -> Result<PipeSender, AttachError> {
        Owned::attach(self, |p, presence| p.sender_with(presence)).map(|o| PipeSender {
            inner: Tx::OneWay(o),
        })
    }

    /// Attaches the receiving end.
    ///
    /// # Errors
    /// As [`Pipe::end`].
    pub fn receiver(&self) -> Result<PipeReceiver, AttachError> {
        Owned::attach(self, |p, presence| p.receiver_with(presence)).map(|o| PipeReceiver {
            inner: Rx::OneWay(o),
        })
    }

    /// The largest message.
    #[must_use]
    pub fn max_message_len(&self) -> usize {
        self.params() - FRAME_HEADER
    }
}

#[derive(Debug)]
enum Tx {
    OneWay(Owned<core_pipe::PipeSender<'static>, OneWay>),
    Duplex(Owned<core_pipe::PipeSender<'static>, DuplexPipe>),
}

#[derive(Debug)]
enum Rx {
    OneWay(Owned<core_pipe::PipeReceiver<'static>, OneWay>),
    Duplex(Owned<core_pipe::PipeReceiver<'static>, DuplexPipe>),
}

impl Tx {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut core_pipe::PipeSender<'static>) -> R) -> R {
        match self {
            Tx::OneWay(o) => o.with(f),
            Tx::Duplex(o) => o.with(f),
        }
    }
}

impl Rx {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut core_pipe::PipeReceiver<'static>) -> R) -> R {
        match self {
            Rx::OneWay(o) => o.with(f),
            Rx::Duplex(o) => o.with(f),
        }
    }
}

/// Why a typed [`send`](Connection::send) or [`recv`](Connection::recv)
/// failed.
#[derive(Debug)]
pub enum MessageError {
    /// The value could not be encoded (nothing was sent).
    Encode(EncodeError),
    /// Sending failed (nothing was sent).
    Send(SendError),
    /// Receiving failed (`Eof` included).
    Recv(RecvError),
    /// A message arrived but is not a value of the asked type (it was
    /// consumed).
    Decode(DecodeError),
}

impl MessageError {
    /// Whether this is end of file: the sender is gone and everything was
    /// received.
    #[must_use]
    pub fn is_eof(&self) -> bool {
        matches!(self, MessageError::Recv(RecvError::Eof))
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Encode(e) => write!(f, "cannot encode the message: {e}"),
            MessageError::Send(e) => fmt::Display::fmt(e, f),
            MessageError::Recv(e) => fmt::Display::fmt(e, f),
            MessageError::Decode(e) => write!(f, "the received message does not decode: {e}"),
        }
    }
}

impl std::error::Error for MessageError {}

/// The sending end of a pipe: owned, `'static + Send`, not `Sync`.
#[derive(Debug)]
pub struct PipeSender {
    inner: Tx,
}

/// The receiving end of a pipe: owned, `'static + Send`, not `Sync`.
#[derive(Debug)]
pub struct PipeReceiver {
    inner: Rx,
}

impl PipeSender {
    /// Sends `msg`, waiting for room.
    ///
    /// # Errors
    /// `TooLarge` (never fits: nothing sent), `Disconnected`, `Corrupt`.
    pub fn send_bytes(&self, msg: &[u8]) -> Result<(), SendError> {
        self.inner.with(|tx| tx.send_bytes(msg))
    }

    /// Sends `msg` if there is room now.
    ///
    /// # Errors
    /// `TooLarge`, `Full`, `Disconnected`, `Corrupt`.
    pub fn try_send_bytes(&self, msg: &[u8]) -> Result<(), SendError> {
        self.inner.with(|tx| tx.try_send_bytes(msg))
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `TooLarge`, `Timeout`, `Disconnected`, `Corrupt`.
    pub fn send_bytes_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.inner.with(|tx| tx.send_bytes_timeout(msg, timeout))
    }

    /// Sends a value as one message (Python's `send(obj)`): a `Pod`
    /// value's bytes, or a `Serde<T>`'s encoding.
    ///
    /// # Errors
    /// [`MessageError::Encode`], [`MessageError::Send`].
    pub fn send<M: Message>(&self, value: &M) -> Result<(), MessageError> {
        let mut buf = Vec::new();
        value.encode(&mut buf).map_err(MessageError::Encode)?;
        self.send_bytes(&buf).map_err(MessageError::Send)
    }

    /// The largest message.
    #[must_use]
    pub fn max_message_len(&self) -> usize {
        self.inner.with(|tx| tx.max_message_len())
    }

    /// Closes this end for good and detaches: the receiver gets EOF after
    /// draining, even while a `fork` copy of this end lives.
    pub fn close(self) {
        match self.inner {
            Tx::OneWay(o) => o.close(core_pipe::PipeSender::close),
            Tx::Duplex(o) => o.close(core_pipe::PipeSender::close),
        }
    }
}

impl PipeReceiver {
    /// Waits for the next message and returns it (Python's
    /// `recv_bytes()`).
    ///
    /// # Errors
    /// `Eof` (the sender is gone and everything was received: final),
    /// `Corrupt`.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_vec(None)
    }

    /// The next message if one is ready.
    ///
    /// # Errors
    /// `Empty`, `Eof`, `Corrupt`.
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.inner.with(|rx| {
            let len = rx.try_peek_len()?;
            let mut buf = vec![0u8; len];
            let n = rx.try_recv_bytes_into(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        })
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// # Errors
    /// `Timeout`, `Eof`, `Corrupt`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.recv_vec(Some(timeout))
    }

    fn recv_vec(&self, timeout: Option<Duration>) -> Result<Vec<u8>, RecvError> {
        let deadline = timeout.map(shmkit_core::wait::Deadline::after);
        self.inner.with(|rx| {
            let len = rx.wait_len(deadline)?;
            let mut buf = vec![0u8; len];
            // The message is ready and exactly `len` bytes: no waiting,
            // and the buffer fits.
            let n = rx.try_recv_bytes_into(&mut buf)?;
            buf.truncate(n);
            Ok(buf)
        })
    }

    /// Waits for the next message and copies it into `buf`; returns its
    /// length (Python's `recv_bytes_into`).
    ///
    /// # Errors
    /// `BufferTooSmall { needed }` (the message stays), `Eof`, `Corrupt`.
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.inner.with(|rx| rx.recv_bytes_into(buf))
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into) if a message is ready.
    ///
    /// # Errors
    /// `Empty`, `BufferTooSmall`, `Eof`, `Corrupt`.
    pub fn try_recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.inner.with(|rx| rx.try_recv_bytes_into(buf))
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into) waiting at most
    /// `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `BufferTooSmall`, `Eof`, `Corrupt`.
    pub fn recv_bytes_into_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        self.inner
            .with(|rx| rx.recv_bytes_into_timeout(buf, timeout))
    }

    /// Receives one message as a value (Python's `recv()`).
    ///
    /// # Errors
    /// [`MessageError::Recv`] (`Eof` included: see
    /// [`MessageError::is_eof`]), [`MessageError::Decode`].
    pub fn recv<M: Message>(&self) -> Result<M, MessageError> {
        let bytes = self.recv_bytes().map_err(MessageError::Recv)?;
        M::decode(&bytes).map_err(MessageError::Decode)
    }

    /// Whether a message is ready, waiting at most `timeout` for one
    /// (`Duration::ZERO`: just look; Python's `poll(timeout)`). `Ok(true)`
    /// also when the next call would report EOF, as Python's does.
    ///
    /// # Errors
    /// `Corrupt`.
    pub fn poll(&self, timeout: Duration) -> Result<bool, RecvError> {
        let r = self.inner.with(|rx| {
            if timeout.is_zero() {
                rx.poll()
            } else {
                rx.poll_timeout(timeout)
            }
        });
        match r {
            Err(RecvError::Eof) => Ok(true),
            other => other,
        }
    }

    /// The largest message.
    #[must_use]
    pub fn max_message_len(&self) -> usize {
        self.inner.with(|rx| rx.max_message_len())
    }

    /// Closes this end for good and detaches: the sender gets
    /// `Disconnected`; no receiver attaches again.
    pub fn close(self) {
        match self.inner {
            Rx::OneWay(o) => o.close(core_pipe::PipeReceiver::close),
            Rx::Duplex(o) => o.close(core_pipe::PipeReceiver::close),
        }
    }
}

/// One end of a duplex pipe (Python's `Connection`): sends to the other
/// end and receives from it. Owned, `'static + Send`, not `Sync`;
/// [`split`](Self::split) gives the two halves.
#[derive(Debug)]
pub struct Connection {
    tx: PipeSender,
    rx: PipeReceiver,
}

impl Connection {
    /// [`PipeSender::send_bytes`].
    ///
    /// # Errors
    /// As there.
    pub fn send_bytes(&self, msg: &[u8]) -> Result<(), SendError> {
        self.tx.send_bytes(msg)
    }

    /// [`PipeSender::try_send_bytes`].
    ///
    /// # Errors
    /// As there.
    pub fn try_send_bytes(&self, msg: &[u8]) -> Result<(), SendError> {
        self.tx.try_send_bytes(msg)
    }

    /// [`PipeSender::send_bytes_timeout`].
    ///
    /// # Errors
    /// As there.
    pub fn send_bytes_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.tx.send_bytes_timeout(msg, timeout)
    }

    /// [`PipeSender::send`].
    ///
    /// # Errors
    /// As there.
    pub fn send<M: Message>(&self, value: &M) -> Result<(), MessageError> {
        self.tx.send(value)
    }

    /// [`PipeReceiver::recv_bytes`].
    ///
    /// # Errors
    /// As there.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.rx.recv_bytes()
    }

    /// [`PipeReceiver::try_recv_bytes`].
    ///
    /// # Errors
    /// As there.
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.rx.try_recv_bytes()
    }

    /// [`PipeReceiver::recv_bytes_timeout`].
    ///
    /// # Errors
    /// As there.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.rx.recv_bytes_timeout(timeout)
    }

    /// [`PipeReceiver::recv_bytes_into`].
    ///
    /// # Errors
    /// As there.
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.rx.recv_bytes_into(buf)
    }

    /// [`PipeReceiver::try_recv_bytes_into`].
    ///
    /// # Errors
    /// As there.
    pub fn try_recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.rx.try_recv_bytes_into(buf)
    }

    /// [`PipeReceiver::recv_bytes_into_timeout`].
    ///
    /// # Errors
    /// As there.
    pub fn recv_bytes_into_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        self.rx.recv_bytes_into_timeout(buf, timeout)
    }

    /// [`PipeReceiver::recv`].
    ///
    /// # Errors
    /// As there.
    pub fn recv<M: Message>(&self) -> Result<M, MessageError> {
        self.rx.recv()
    }

    /// [`PipeReceiver::poll`].
    ///
    /// # Errors
    /// As there.
    pub fn poll(&self, timeout: Duration) -> Result<bool, RecvError> {
        self.rx.poll(timeout)
    }

    /// The largest message.
    #[must_use]
    pub fn max_message_len(&self) -> usize {
        self.tx.max_message_len()
    }

    /// The sending and the receiving half, to use from two threads.
    #[must_use]
    pub fn split(self) -> (PipeSender, PipeReceiver) {
        (self.tx, self.rx)
    }

    /// Closes both directions of this end for good (Python's
    /// `Connection.close()`): the other end gets EOF after draining and
    /// `Disconnected` on send.
    pub fn close(self) {
        self.tx.close();
        self.rx.close();
    }
}
