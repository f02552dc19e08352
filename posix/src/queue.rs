//! Bounded multi-producer multi-consumer queues: Python's
//! `multiprocessing.Queue`, with crossbeam-channel's vocabulary.
//!
//! | call | what |
//! |---|---|
//! | [`channel::<T>(capacity)`](channel) | an anonymous queue, a sender and a receiver (crossbeam's `bounded`) |
//! | `Queue::<T>::create(name, capacity)`, `open`, `open_or_create`, `anonymous`, `memfd`, `from_fd` | the segment, as every [`Shared`] kind |
//! | `queue.sender()` / `queue.receiver()` | one more registered sender / receiver |
//! | `send` / `try_send` / `send_timeout` | put |
//! | `recv` / `try_recv` / `recv_timeout`, `iter()` / `try_iter()`, `for x in &rx` | get |
//!
//! [`Sender`] and [`Receiver`] are owned (`'static + Send`, not `Sync`)
//! and `Clone` (each clone takes a registry entry: [`Sender::try_clone`]).
//! The capacity is a power of two; the registry (how many senders and
//! receivers may be attached at once) is [`DEFAULT_REGISTRY`] each, or
//! what [`QueueParams`] says. See [`shmkit_core::queue::mpmc`] for the
//! crash-consistency guarantees.
//!
//! # Disconnected, and `fork`
//! - A receiver gets [`RecvError::Disconnected`] once the queue is empty
//!   and every sender is gone (dropped or its process died) — and from
//!   then on, forever: the role is closed, a new sender cannot attach
//!   ([`AttachError::Closed`]). Before any sender ever attached, an empty
//!   queue is just empty (`recv` waits, `try_recv` says `Empty`; see
//!   [`Receiver::has_senders`]).
//! - A handle inherited across `fork` is the same handle in both
//!   processes: Python's shape works — the parent makes the channel,
//!   forks, drops its copy of the child's end, and the child's messages
//!   arrive, followed by `Disconnected` exactly when the child's copy is
//!   gone (dropped, exit, or kill -9). (Where the liveness file is
//!   unavailable handles are per process: see [`crate::role`].)
//! - A sender learns that every receiver is gone when the queue is full
//!   (the check is off the fast path).
//!
//! ```
//! use shmkit_posix::{process, queue};
//!
//! // Python's "a child returns a value through a Queue".
//! let (tx, rx) = queue::channel::<u64>(16)?;
//! let child = process::spawn(move || {
//!     tx.send(42).unwrap();
//!     0
//! })?;
//! // `tx` moved into the closure: the parent's copy was dropped by `spawn`.
//! assert_eq!(rx.recv()?, 42);
//! assert!(rx.recv().is_err()); // the child's copy is gone: Disconnected
//! child.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use bytemuck::Pod;
use shmkit_core::queue::mpmc::{Mpmc, QueueConsumer, QueueProducer};

use crate::error::CreateError;
use crate::handle::{Create, IntoInit, Shared};
use crate::role::Owned;

pub use shmkit_core::queue::mpmc::{QueueParams, DEFAULT_REGISTRY, MAX_REGISTRY};
pub use shmkit_core::queue::roles::AttachError;
pub use shmkit_core::queue::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// A bounded MPMC queue of `T` in a segment (kind `queue`): Python's
/// `multiprocessing.Queue`. See the module docs.
pub type Queue<T> = Shared<Mpmc<T>>;

impl<T: Pod> Create for Mpmc<T> {
    type Init = QueueParams;

    fn params(init: &QueueParams) -> QueueParams {
        *init
    }

    unsafe fn write_init(_: std::ptr::NonNull<u8>, _: &QueueParams, _: QueueParams) {}
}

/// A capacity, with the default registry sizes.
impl<T: Pod> IntoInit<Mpmc<T>> for usize {
    fn into_init(self) -> QueueParams {
        QueueParams::new(self)
    }
}

impl<T: Pod> IntoInit<Mpmc<T>> for QueueParams {
    fn into_init(self) -> QueueParams {
        self
    }
}

/// An anonymous queue of `capacity` slots (a power of two) with a sender
/// and a receiver: crossbeam's `bounded(capacity)`. Shared with children
/// forked afterwards (move the ends into [`process::spawn`](crate::process::spawn)).
///
/// # Errors
/// [`CreateError::InvalidLayout`] for a bad capacity; OS errors.
pub fn channel<T: Pod>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), CreateError> {
    let q = Queue::<T>::anonymous(capacity)?;
    let fresh = "a queue this process just created has free registry entries";
    Ok((q.sender().expect(fresh), q.receiver().expect(fresh)))
}

impl<T: Pod> Shared<Mpmc<T>> {
    /// Attaches one more sender (a registry entry).
    ///
    /// # Errors
    /// [`AttachError::Full`] if every producer entry is held by a live
    /// handle; [`AttachError::Closed`] once the senders' role closed.
    pub fn sender(&self) -> Result<Sender<T>, AttachError> {
        Owned::attach(self, |q, presence| q.producer_with(presence)).map(|inner| Sender { inner })
    }

    /// Attaches one more receiver (a registry entry).
    ///
    /// # Errors
    /// As [`sender`](Self::sender).
    pub fn receiver(&self) -> Result<Receiver<T>, AttachError> {
        Owned::attach(self, |q, presence| q.consumer_with(presence)).map(|inner| Receiver { inner })
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.params().capacity
    }
}

/// The sending side of a [`Queue`]: owned, `'static + Send`, not `Sync`;
/// `Clone` takes one more registry entry.
#[derive(Debug)]
pub struct Sender<T: Pod> {
    inner: Owned<QueueProducer<'static, T>, Mpmc<T>>,
}

/// The receiving side of a [`Queue`]: owned, `'static + Send`, not
/// `Sync`; `Clone` takes one more registry entry.
#[derive(Debug)]
pub struct Receiver<T: Pod> {
    inner: Owned<QueueConsumer<'static, T>, Mpmc<T>>,
}

macro_rules! queue_state {
    () => {
        /// Messages in the queue now (a snapshot).
        #[doc(alias = "qsize")]
        #[must_use]
        pub fn len(&self) -> usize {
            self.inner.shared().view().len()
        }

        /// Whether the queue is empty now.
        #[doc(alias = "empty")]
        #[must_use]
        pub fn is_empty(&self) -> bool {
            self.inner.shared().view().is_empty()
        }

        /// Whether the queue is full now.
        #[doc(alias = "full")]
        #[must_use]
        pub fn is_full(&self) -> bool {
            self.inner.shared().view().is_full()
        }

        /// Number of slots.
        #[must_use]
        pub fn capacity(&self) -> usize {
            self.inner.shared().capacity()
        }

        /// The queue this handle is attached to (to attach more handles,
        /// or reach its segment).
        #[must_use]
        pub fn queue(&self) -> &Queue<T> {
            self.inner.shared()
        }
    };
}

impl<T: Pod> Sender<T> {
    /// Sends `value`, waiting while the queue is full.
    ///
    /// # Errors
    /// `Disconnected` (every receiver is gone), `Corrupt`; the value comes
    /// back.
    #[doc(alias = "put")]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.inner.with(|p| p.push(value))
    }

    /// Sends `value` if there is room now.
    ///
    /// # Errors
    /// `Full`, `Disconnected`, `Corrupt`; the value comes back.
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.inner.with(|p| p.try_push(value))
    }

    /// Sends `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`; the value comes back.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.inner.with(|p| p.push_timeout(value, timeout))
    }

    /// One more sender on the same queue (a new registry entry).
    ///
    /// # Errors
    /// [`AttachError::Full`] if the registry is full; `Closed`.
    pub fn try_clone(&self) -> Result<Sender<T>, AttachError> {
        self.inner.shared().sender()
    }

    /// Closes the queue for senders, for good, and detaches (Python's
    /// `Queue.close()`): once drained, receivers get `Disconnected` even
    /// while other senders (or `fork` copies of this one) live, and no
    /// sender attaches again. Call it when every sender is done.
    pub fn close(self) {
        self.inner.close(QueueProducer::close);
    }

    queue_state!();
}

impl<T: Pod> Clone for Sender<T> {
    /// # Panics
    /// If the registry is full (see [`try_clone`](Sender::try_clone)).
    fn clone(&self) -> Self {
        self.try_clone().unwrap_or_else(|e| {
            panic!("cannot clone a queue Sender: {e} (use try_clone to handle this)")
        })
    }
}

impl<T: Pod> Receiver<T> {
    /// Receives the oldest message, waiting while the queue is empty.
    ///
    /// # Errors
    /// `Disconnected` (empty, and every sender is gone: final), `Corrupt`.
    #[doc(alias = "get")]
    pub fn recv(&self) -> Result<T, RecvError> {
        self.inner.with(|c| c.pop())
    }

    /// Receives the oldest message if there is one.
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupt`.
    #[doc(alias = "get_nowait")]
    #[inline]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.inner.with(|c| c.try_pop())
    }

    /// Receives the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupt`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.inner.with(|c| c.pop_timeout(timeout))
    }

    /// A blocking iterator: ends at `Disconnected` (or `Corrupt`).
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// A non-blocking iterator over what is ready now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Whether senders are attached now. Before the first sender attaches
    /// an empty queue is just empty (`recv` waits, `try_recv` says
    /// `Empty`); after every sender left it is `Disconnected`, for good.
    #[must_use]
    pub fn has_senders(&self) -> bool {
        self.inner.shared().view().has_producers()
    }

    /// One more receiver on the same queue (a new registry entry).
    ///
    /// # Errors
    /// [`AttachError::Full`] if the registry is full; `Closed`.
    pub fn try_clone(&self) -> Result<Receiver<T>, AttachError> {
        self.inner.shared().receiver()
    }

    /// Closes the queue for receivers, for good, and detaches: senders get
    /// `Disconnected` (when the queue is full); no receiver attaches again.
    pub fn close(self) {
        self.inner.close(QueueConsumer::close);
    }

    queue_state!();
}

impl<T: Pod> Clone for Receiver<T> {
    /// # Panics
    /// If the registry is full (see [`try_clone`](Receiver::try_clone)).
    fn clone(&self) -> Self {
        self.try_clone().unwrap_or_else(|e| {
            panic!("cannot clone a queue Receiver: {e} (use try_clone to handle this)")
        })
    }
}

/// [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'r, T: Pod> {
    rx: &'r Receiver<T>,
}

impl<T: Pod> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'r, T: Pod> {
    rx: &'r Receiver<T>,
}

impl<T: Pod> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<'r, T: Pod> IntoIterator for &'r Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'r, T>;
    fn into_iter(self) -> Iter<'r, T> {
        self.iter()
    }
}

/// Owning blocking iterator ([`IntoIterator`] for [`Receiver`]).
#[derive(Debug)]
pub struct IntoIter<T: Pod> {
    rx: Receiver<T>,
}

impl<T: Pod> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T: Pod> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
