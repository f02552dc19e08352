//! Queues and pipes in segments: [`SharedRing`] (SPSC), [`SharedQueue`]
//! (MPMC, Python's `multiprocessing.Queue`), [`SharedPipe`] (one-way
//! byte-message pipe) and [`SharedDuplexPipe`] (`multiprocessing.Pipe()`).
//!
//! Each handle maps a segment (named, anonymous or memfd, as for
//! [`Array`](crate::Array)) and hands out the core role handles
//! of [`shmkit_core::queue`], which borrow it: `ring.producer()`,
//! `queue.consumer()`, `pipe.sender()`, `duplex.end(0)`. The guarantees of
//! each structure (crash consistency, disconnect, hostile bytes) are
//! documented in its core module. Parameters (capacity, registry sizes)
//! are recorded in the segment header and checked against its length when
//! a segment is opened.
//!
//! ```
//! use shmkit_posix::queue::SharedQueue;
//! use shmkit_testkit::fork;
//!
//! // Python's "return values from two child processes through a Queue".
//! let q = SharedQueue::<u64>::anonymous(16)?;
//! // Hold a producer in the parent, as Python's parent holds the queue:
//! // "every producer is gone" then cannot happen between the children.
//! let _open = q.queue().producer()?;
//! let children: Vec<_> = (0..2u64)
//!     .map(|i| {
//!         let q = &q;
//!         fork(move || {
//!             let Ok(mut tx) = q.queue().producer() else { return 2 };
//!             tx.push(i * i + 40).map_or(3, |()| 0)
//!         })
//!     })
//!     .collect();
//! let mut rx = q.queue().consumer()?;
//! let mut got = vec![rx.pop()?, rx.pop()?];
//! got.sort();
//! assert_eq!(got, vec![40, 41]);
//! for c in children {
//!     assert!(c.wait().success());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::Duration;

use bytemuck::Pod;
use shmkit_core::header::Kind;
use shmkit_core::object::Object;
use shmkit_core::queue::mpmc::{Mpmc, Queue, QueueParams};
use shmkit_core::queue::pipe::{
    Connection, DuplexPipe, OneWayPipe, Pipe, PipeReceiver, PipeRecvError,
};
use shmkit_core::queue::ring::{Ring, Spsc};
use shmkit_core::queue::roles::AttachError;
use shmkit_core::wait::Deadline;

use crate::error::{CreateError, OpenError, OpenOrCreateError};
use crate::segment::{Expect, ObjectSpec, Options, Segment};

pub use shmkit_core::queue::mpmc::{DEFAULT_REGISTRY, MAX_REGISTRY};
pub use shmkit_core::queue::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

fn corrupt(what: &str) -> OpenError {
    OpenError::Corrupt {
        what: what.to_owned(),
    }
}

/// The segment spec of object `O` with `params`: every size comes from
/// the core object.
fn spec<O: Object>(params: &O::Params) -> Result<ObjectSpec<'static>, CreateError> {
    let len =
        O::payload_len(params).map_err(|e| CreateError::InvalidLayout { reason: e.reason })?;
    Ok(ObjectSpec {
        kind: O::KIND,
        fingerprint: O::fingerprint(params),
        type_name: O::type_name(),
        payload_len: len as u64,
    })
}

/// Makes the segment of object `O` and initialises it.
fn build<O: Object>(params: &O::Params, how: Make<'_>) -> Result<Segment, OpenOrCreateError> {
    let spec = spec::<O>(params).map_err(OpenOrCreateError::Create)?;
    make(&spec, how, &mut |payload, _| {
        // SAFETY: `make` hands the creator the zero-filled payload of
        // `spec.payload_len` = `payload_len(params)` bytes, aligned to
        // PAYLOAD_ALIGN, before anyone else can attach.
        unsafe { O::init(payload, params) }
    })
}

/// The parameters of the object `O` in an opened segment, recovered from
/// its header and checked against its payload length.
fn params_of<O: Object>(segment: &Segment) -> Result<O::Params, OpenError> {
    let h = segment.header();
    let params = O::params_from(&h.fingerprint).map_err(|e| corrupt(e.reason))?;
    match O::payload_len(&params) {
        Ok(len) if len as u64 == h.payload_len && segment.is_writable() => Ok(params),
        _ => Err(corrupt("the parameters do not match the payload length")),
    }
}

/// The view of object `O` in `segment`, made or checked with `params`.
fn view<'s, O: Object>(segment: &'s Segment, params: &O::Params) -> O::View<'s> {
    // SAFETY: `params` were checked against the payload length when the
    // handle was made (`build` or `params_of`); the payload is mapped
    // read-write (checked) for as long as `segment` is borrowed, was
    // initialised by the creator before the segment became ready, and is
    // only accessed atomically.
    unsafe { O::attach(segment.payload(), params) }
}

/// How a handle's segment comes to be.
enum Make<'n> {
    Create(&'n str, &'n Options),
    OpenOrCreate(&'n str, &'n Options),
    Anonymous,
    Memfd,
}

fn make(
    spec: &ObjectSpec<'_>,
    how: Make<'_>,
    init: &mut dyn FnMut(NonNull<u8>, usize),
) -> Result<Segment, OpenOrCreateError> {
    match how {
        Make::Create(name, o) => {
            Segment::create(name, spec, o, init).map_err(OpenOrCreateError::Create)
        }
        Make::OpenOrCreate(name, o) => Segment::open_or_create(name, spec, o, init).map(|(s, _)| s),
        Make::Anonymous => Segment::anonymous(spec, init).map_err(OpenOrCreateError::Create),
        Make::Memfd => Segment::memfd(spec, init).map_err(OpenOrCreateError::Create),
    }
}

fn only_create(e: OpenOrCreateError) -> CreateError {
    match e {
        OpenOrCreateError::Create(e) => e,
        // `make` returns Open/Contended errors only for OpenOrCreate.
        other => CreateError::Os {
            call: "create",
            source: std::io::Error::other(other.to_string()),
        },
    }
}

macro_rules! segment_accessors {
    () => {
        /// The segment holding the object.
        #[must_use]
        pub fn segment(&self) -> &Segment {
            &self.segment
        }

        /// Keeps the name alive after this handle is dropped.
        pub fn persist(&mut self) {
            self.segment.persist();
        }
    };
}

// ---------------------------------------------------------------- SPSC ring

/// A single-producer single-consumer ring of `T` in a segment (kind
/// `ring`); see [`shmkit_core::queue::ring`] for the guarantees. The
/// capacity is a power of two.
///
/// ```
/// use shmkit_posix::queue::SharedRing;
/// let ring = SharedRing::<u32>::anonymous(8)?;
/// let (mut tx, mut rx) = (ring.ring().producer()?, ring.ring().consumer()?);
/// tx.push(5)?;
/// assert_eq!(rx.pop()?, 5);
/// // Only one producer may attach.
/// assert!(ring.ring().producer().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SharedRing<T: Pod> {
    segment: Segment,
    capacity: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> SharedRing<T> {
    fn build(capacity: usize, how: Make<'_>) -> Result<Self, OpenOrCreateError> {
        Ok(SharedRing {
            segment: build::<Spsc<T>>(&capacity, how)?,
            capacity,
            _type: PhantomData,
        })
    }

    fn from_segment(segment: Segment) -> Result<Self, OpenError> {
        Ok(SharedRing {
            capacity: params_of::<Spsc<T>>(&segment)?,
            segment,
            _type: PhantomData,
        })
    }

    /// Creates the named ring `name` with `capacity` slots (a power of two).
    ///
    /// # Errors
    /// See [`CreateError`]; `InvalidLayout` for a bad capacity.
    pub fn create(name: &str, capacity: usize) -> Result<Self, CreateError> {
        Self::build(capacity, Make::Create(name, &Options::default())).map_err(only_create)
    }

    /// Opens the named ring `name` of element type `T`.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let options = Options::default();
        Self::from_segment(Segment::open(name, &Expect::of::<T>(Kind::RING), &options)?)
    }

    /// Opens `name` (which must have this capacity) or creates it.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Self, OpenOrCreateError> {
        Self::build(capacity, Make::OpenOrCreate(name, &Options::default()))
    }

    /// An unnamed ring shared with children forked after this call.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous(capacity: usize) -> Result<Self, CreateError> {
        Self::build(capacity, Make::Anonymous).map_err(only_create)
    }

    /// A ring in a memfd whose descriptor ([`Segment::fd`]) can be passed
    /// to another process, which maps it with [`from_fd`](Self::from_fd).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn memfd(capacity: usize) -> Result<Self, CreateError> {
        Self::build(capacity, Make::Memfd).map_err(only_create)
    }

    /// Maps a ring from a memfd descriptor received from another process.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn from_fd(fd: OwnedFd) -> Result<Self, OpenError> {
        Self::from_segment(Segment::from_fd(
            fd,
            &Expect::of::<T>(Kind::RING),
            &Options::default(),
        )?)
    }

    /// The ring: attach with `.producer()` / `.consumer()`.
    #[must_use]
    pub fn ring(&self) -> Ring<'_, T> {
        view::<Spsc<T>>(&self.segment, &self.capacity)
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    segment_accessors!();
}

// ---------------------------------------------------------------- MPMC

/// A bounded multi-producer multi-consumer queue of `T` in a segment (kind
/// `queue`): Python's `multiprocessing.Queue`. See
/// [`shmkit_core::queue::mpmc`] for the crash-consistency guarantees. The
/// capacity is a power of two.
#[derive(Debug)]
pub struct SharedQueue<T: Pod> {
    segment: Segment,
    params: QueueParams,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> SharedQueue<T> {
    fn build(
        capacity: usize,
        producers: usize,
        consumers: usize,
        how: Make<'_>,
    ) -> Result<Self, OpenOrCreateError> {
        let params = QueueParams::new(capacity).with_registry(producers, consumers);
        Ok(SharedQueue {
            segment: build::<Mpmc<T>>(&params, how)?,
            params,
            _type: PhantomData,
        })
    }

    fn from_segment(segment: Segment) -> Result<Self, OpenError> {
        Ok(SharedQueue {
            params: params_of::<Mpmc<T>>(&segment)?,
            segment,
            _type: PhantomData,
        })
    }

    /// Creates the named queue `name` with `capacity` slots (a power of
    /// two) and room for [`DEFAULT_REGISTRY`] producers and consumers at
    /// once.
    ///
    /// # Errors
    /// See [`CreateError`]; `InvalidLayout` for a bad capacity.
    pub fn create(name: &str, capacity: usize) -> Result<Self, CreateError> {
        Self::create_with(name, capacity, DEFAULT_REGISTRY, DEFAULT_REGISTRY)
    }

    /// [`create`](Self::create) with explicit registry sizes.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create_with(
        name: &str,
        capacity: usize,
        producers: usize,
        consumers: usize,
    ) -> Result<Self, CreateError> {
        Self::build(
            capacity,
            producers,
            consumers,
            Make::Create(name, &Options::default()),
        )
        .map_err(only_create)
    }

    /// Opens the named queue `name` of element type `T`.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let options = Options::default();
        Self::from_segment(Segment::open(
            name,
            &Expect::of::<T>(Kind::QUEUE),
            &options,
        )?)
    }

    /// Opens `name` (same parameters) or creates it.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Self, OpenOrCreateError> {
        Self::build(
            capacity,
            DEFAULT_REGISTRY,
            DEFAULT_REGISTRY,
            Make::OpenOrCreate(name, &Options::default()),
        )
    }

    /// An unnamed queue shared with children forked after this call.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous(capacity: usize) -> Result<Self, CreateError> {
        Self::anonymous_with(capacity, DEFAULT_REGISTRY, DEFAULT_REGISTRY)
    }

    /// [`anonymous`](Self::anonymous) with explicit registry sizes.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous_with(
        capacity: usize,
        producers: usize,
        consumers: usize,
    ) -> Result<Self, CreateError> {
        Self::build(capacity, producers, consumers, Make::Anonymous).map_err(only_create)
    }

    /// A queue in a memfd (see [`SharedRing::memfd`]).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn memfd(capacity: usize) -> Result<Self, CreateError> {
        Self::build(capacity, DEFAULT_REGISTRY, DEFAULT_REGISTRY, Make::Memfd).map_err(only_create)
    }

    /// Maps a queue from a memfd descriptor.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn from_fd(fd: OwnedFd) -> Result<Self, OpenError> {
        Self::from_segment(Segment::from_fd(
            fd,
            &Expect::of::<T>(Kind::QUEUE),
            &Options::default(),
        )?)
    }

    /// The queue: attach with `.producer()` / `.consumer()`.
    #[must_use]
    pub fn queue(&self) -> Queue<'_, T> {
        view::<Mpmc<T>>(&self.segment, &self.params)
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.params.capacity
    }

    segment_accessors!();
}

// ---------------------------------------------------------------- pipes

/// A one-way byte-message pipe in a segment (kind `pipe`):
/// `multiprocessing.Pipe(duplex=False)`. See
/// [`shmkit_core::queue::pipe`].
///
/// ```
/// use shmkit_posix::queue::{SharedPipe, RecvBytes};
/// let pipe = SharedPipe::anonymous(1024)?;
/// let (mut tx, mut rx) = (pipe.pipe().sender()?, pipe.pipe().receiver()?);
/// tx.send_bytes(b"ping")?;
/// assert_eq!(rx.recv_bytes()?, b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SharedPipe {
    segment: Segment,
    capacity: usize,
}

/// A duplex byte-message pipe in a segment (kind `duplex_pipe`):
/// `multiprocessing.Pipe()`. End 0 and end 1 each send on one ring and
/// receive on the other.
///
/// ```
/// use shmkit_posix::queue::{SharedDuplexPipe, RecvBytes};
/// let pipe = SharedDuplexPipe::anonymous(1024)?;
/// let (mut a, mut b) = (pipe.end(0)?, pipe.end(1)?);
/// a.send_bytes(b"ping")?;
/// assert_eq!(b.rx.recv_bytes()?, b"ping");
/// b.send_bytes(b"pong")?;
/// assert_eq!(a.rx.recv_bytes()?, b"pong");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SharedDuplexPipe {
    segment: Segment,
    capacity: usize,
}

macro_rules! pipe_handle {
    ($ty:ident, $object:ty, $kind:expr, $what:literal) => {
        impl $ty {
            fn build(capacity: usize, how: Make<'_>) -> Result<Self, OpenOrCreateError> {
                Ok($ty {
                    segment: build::<$object>(&capacity, how)?,
                    capacity,
                })
            }

            fn from_segment(segment: Segment) -> Result<Self, OpenError> {
                Ok($ty {
                    capacity: params_of::<$object>(&segment)?,
                    segment,
                })
            }

            #[doc = concat!("Creates the named ", $what, " `name` with `capacity` bytes per direction (a power of two; messages up to `capacity - 4` bytes).")]
            ///
            /// # Errors
            /// See [`CreateError`].
            pub fn create(name: &str, capacity: usize) -> Result<Self, CreateError> {
                Self::build(capacity, Make::Create(name, &Options::default()))
                    .map_err(only_create)
            }

            #[doc = concat!("Opens the named ", $what, " `name`.")]
            ///
            /// # Errors
            /// See [`OpenError`].
            pub fn open(name: &str) -> Result<Self, OpenError> {
                Self::from_segment(Segment::open(
                    name,
                    &Expect::of::<u8>($kind),
                    &Options::default(),
                )?)
            }

            /// Opens `name` (same capacity) or creates it.
            ///
            /// # Errors
            /// See [`OpenOrCreateError`].
            pub fn open_or_create(name: &str, capacity: usize) -> Result<Self, OpenOrCreateError> {
                Self::build(capacity, Make::OpenOrCreate(name, &Options::default()))
            }

            #[doc = concat!("An unnamed ", $what, " shared with children forked after this call.")]
            ///
            /// # Errors
            /// See [`CreateError`].
            pub fn anonymous(capacity: usize) -> Result<Self, CreateError> {
                Self::build(capacity, Make::Anonymous).map_err(only_create)
            }

            #[doc = concat!("A ", $what, " in a memfd (see [`SharedRing::memfd`]).")]
            ///
            /// # Errors
            /// See [`CreateError`].
            pub fn memfd(capacity: usize) -> Result<Self, CreateError> {
                Self::build(capacity, Make::Memfd).map_err(only_create)
            }

            /// Maps it from a memfd descriptor.
            ///
            /// # Errors
            /// See [`OpenError`].
            pub fn from_fd(fd: OwnedFd) -> Result<Self, OpenError> {
                Self::from_segment(Segment::from_fd(
                    fd,
                    &Expect::of::<u8>($kind),
                    &Options::default(),
                )?)
            }

            /// Bytes per direction.
            #[must_use]
            pub fn capacity(&self) -> usize {
                self.capacity
            }

            /// The largest message.
            #[must_use]
            pub fn max_message_len(&self) -> usize {
                self.capacity - shmkit_core::queue::pipe::FRAME_HEADER
            }

            segment_accessors!();
        }
    };
}

pipe_handle!(SharedPipe, OneWayPipe, Kind::PIPE, "pipe");
pipe_handle!(
    SharedDuplexPipe,
    DuplexPipe,
    Kind::DUPLEX_PIPE,
    "duplex pipe"
);

impl SharedPipe {
    /// The pipe: attach with `.sender()` / `.receiver()`.
    #[must_use]
    pub fn pipe(&self) -> Pipe<'_> {
        view::<OneWayPipe>(&self.segment, &self.capacity)
    }
}

impl SharedDuplexPipe {
    /// Attaches end `which` (0 or 1; anything else means 1).
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process holds that end.
    pub fn end(&self, which: usize) -> Result<Connection<'_>, AttachError> {
        Connection::attach(view::<DuplexPipe>(&self.segment, &self.capacity), which)
    }
}

/// Receiving whole messages as `Vec<u8>` (Python's `recv_bytes`).
pub trait RecvBytes {
    /// Waits for the next message and returns it.
    ///
    /// # Errors
    /// `Eof` once the sender is gone and everything was received;
    /// `Corrupt`.
    fn recv_bytes(&mut self) -> Result<Vec<u8>, PipeRecvError> {
        self.recv_bytes_deadline(None)
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// # Errors
    /// `Timeout`, `Eof`, `Corrupt`.
    fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, PipeRecvError> {
        self.recv_bytes_deadline(Some(Deadline::after(timeout)))
    }

    /// Waits until `deadline` for the next message.
    ///
    /// # Errors
    /// `Timeout`, `Eof`, `Corrupt`.
    fn recv_bytes_deadline(&mut self, deadline: Option<Deadline>)
        -> Result<Vec<u8>, PipeRecvError>;
}

impl RecvBytes for PipeReceiver<'_> {
    fn recv_bytes_deadline(
        &mut self,
        deadline: Option<Deadline>,
    ) -> Result<Vec<u8>, PipeRecvError> {
        let len = self.wait_len(deadline)?;
        let mut buf = vec![0u8; len];
        // The message is ready and exactly `len` bytes: no waiting, and
        // the buffer fits.
        let n = self.try_recv_bytes_into(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}
