//! Queues and pipes in segments: [`SharedRing`] (SPSC), [`SharedQueue`]
//! (MPMC, Python's `multiprocessing.Queue`), [`SharedPipe`] (one-way
//! byte-message pipe) and [`SharedDuplexPipe`] (`multiprocessing.Pipe()`).
//!
//! Each handle maps a segment (named, anonymous or memfd, as for
//! [`SharedArray`](crate::SharedArray)) and hands out the core role handles
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
use std::mem::{align_of, size_of};
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::Duration;

use bytemuck::Pod;
use shmkit_core::header::{Fingerprint, Kind, PAYLOAD_ALIGN};
use shmkit_core::queue::mpmc::{Queue, QueueControl};
use shmkit_core::queue::pipe::{Connection, Pipe, PipeReceiver, PipeRecvError};
use shmkit_core::queue::ring::{Ring, RingControl, MAX_CAPACITY};
use shmkit_core::queue::roles::{AttachError, RoleSlot};
use shmkit_core::wait::Deadline;

use crate::error::{CreateError, OpenError, OpenOrCreateError};
use crate::segment::{Expect, ObjectSpec, Options, Segment};

pub use shmkit_core::queue::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// Largest number of producers or consumers a [`SharedQueue`] registry may
/// hold.
pub const MAX_REGISTRY: usize = 4096;
/// Registry size of [`SharedQueue::create`] and friends, per role.
pub const DEFAULT_REGISTRY: usize = 32;

pub(crate) const RING_CONTROL: usize = size_of::<RingControl>();
const QUEUE_CONTROL: usize = size_of::<QueueControl>();
const ROLE: usize = size_of::<RoleSlot>();

fn align_up(x: usize, a: usize) -> Option<usize> {
    x.checked_add(a - 1).map(|v| v & !(a - 1))
}

fn bad(reason: &'static str) -> CreateError {
    CreateError::InvalidLayout { reason }
}

fn corrupt(what: &str) -> OpenError {
    OpenError::Corrupt {
        what: what.to_owned(),
    }
}

/// Where the parts of an MPMC queue sit in its payload (offsets in bytes;
/// also read by [`crate::inspect`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLayout {
    pub(crate) capacity: usize,
    pub(crate) producers: usize,
    pub(crate) consumers: usize,
    pub(crate) producer_roles: usize,
    pub(crate) intents: usize,
    pub(crate) consumer_roles: usize,
    pub(crate) stamps: usize,
    pub(crate) data: usize,
    pub(crate) total: usize,
}

impl QueueLayout {
    fn of<T>(capacity: usize, producers: usize, consumers: usize) -> Option<QueueLayout> {
        Self::for_element(
            capacity,
            producers,
            consumers,
            size_of::<T>(),
            align_of::<T>(),
        )
    }

    /// The layout for elements of `size` bytes aligned to `align`; `None`
    /// for impossible parameters (any of them may come from a hostile
    /// header: `align` is checked to be a power of two).
    pub(crate) fn for_element(
        capacity: usize,
        producers: usize,
        consumers: usize,
        size: usize,
        align: usize,
    ) -> Option<QueueLayout> {
        if capacity == 0
            || producers == 0
            || consumers == 0
            || producers > MAX_REGISTRY
            || consumers > MAX_REGISTRY
            || !align.is_power_of_two()
            || align > PAYLOAD_ALIGN
        {
            return None;
        }
        let producer_roles = QUEUE_CONTROL;
        let intents = producer_roles + ROLE * producers;
        let consumer_roles = intents + 8 * producers;
        let stamps = align_up(consumer_roles + ROLE * consumers, 8)?;
        let data = align_up(stamps.checked_add(capacity.checked_mul(8)?)?, align)?;
        let total = data.checked_add(capacity.checked_mul(size)?)?;
        Some(QueueLayout {
            capacity,
            producers,
            consumers,
            producer_roles,
            intents,
            consumer_roles,
            stamps,
            data,
            total,
        })
    }

    fn params(&self) -> [u64; 2] {
        [
            self.capacity as u64,
            ((self.producers as u64) << 32) | self.consumers as u64,
        ]
    }
}

fn ring_payload<T>(capacity: usize) -> Option<usize> {
    ring_payload_for(capacity, size_of::<T>(), align_of::<T>())
}

/// The payload length of a ring of `capacity` elements of `size` bytes
/// aligned to `align`; `None` for impossible parameters.
pub(crate) fn ring_payload_for(capacity: usize, size: usize, align: usize) -> Option<usize> {
    if capacity == 0
        || capacity > MAX_CAPACITY as usize
        || !capacity.is_power_of_two()
        || !align.is_power_of_two()
        || align > PAYLOAD_ALIGN
    {
        return None;
    }
    RING_CONTROL.checked_add(capacity.checked_mul(size)?)
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
    fn spec(capacity: usize) -> Result<ObjectSpec<'static>, CreateError> {
        let payload = ring_payload::<T>(capacity)
            .ok_or_else(|| bad("ring capacity must be a power of two in 1..=2^31 (and the element aligned to at most 128)"))?;
        Ok(ObjectSpec {
            kind: Kind::RING,
            fingerprint: Fingerprint::of::<T>([capacity as u64, 0]),
            type_name: std::any::type_name::<T>(),
            payload_len: payload as u64,
        })
    }

    fn build(capacity: usize, how: Make<'_>) -> Result<Self, OpenOrCreateError> {
        let spec = Self::spec(capacity).map_err(OpenOrCreateError::Create)?;
        // All-zero bytes are a fresh ring: no init.
        let segment = make(&spec, how, &mut |_, _| {})?;
        Ok(SharedRing {
            segment,
            capacity,
            _type: PhantomData,
        })
    }

    fn from_segment(segment: Segment) -> Result<Self, OpenError> {
        let h = segment.header();
        let capacity = usize::try_from(h.fingerprint.params[0])
            .map_err(|_| corrupt("ring capacity does not fit in usize"))?;
        match ring_payload::<T>(capacity) {
            Some(len) if len as u64 == h.payload_len && segment.is_writable() => Ok(SharedRing {
                segment,
                capacity,
                _type: PhantomData,
            }),
            _ => Err(corrupt("ring capacity does not match the payload length")),
        }
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
        let base = self.segment.payload();
        // SAFETY: the payload holds a RingControl (640 bytes, 128-aligned,
        // only atomics, valid when all-zero or as peers left it) followed
        // by `capacity` elements of T (checked against the payload length;
        // 640 is a multiple of every alignment <= 128), mapped read-write
        // for the life of `self.segment` and only accessed atomically.
        unsafe {
            let ctl = &*base.as_ptr().cast::<RingControl>();
            let data = NonNull::new_unchecked(base.as_ptr().add(RING_CONTROL)).cast::<T>();
            Ring::from_raw(ctl, data, self.capacity as u32)
        }
        .expect("capacity validated when the handle was made")
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
/// [`shmkit_core::queue::mpmc`] for the crash-consistency guarantees.
#[derive(Debug)]
pub struct SharedQueue<T: Pod> {
    segment: Segment,
    layout: QueueLayout,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> SharedQueue<T> {
    fn spec(layout: &QueueLayout) -> ObjectSpec<'static> {
        ObjectSpec {
            kind: Kind::QUEUE,
            fingerprint: Fingerprint::of::<T>(layout.params()),
            type_name: std::any::type_name::<T>(),
            payload_len: layout.total as u64,
        }
    }

    fn build(
        capacity: usize,
        producers: usize,
        consumers: usize,
        how: Make<'_>,
    ) -> Result<Self, OpenOrCreateError> {
        let layout = QueueLayout::of::<T>(capacity, producers, consumers).ok_or_else(|| {
            OpenOrCreateError::Create(bad(
                "queue capacity and registry sizes must be in 1..=4096 registry slots and a non-zero capacity that fits in memory",
            ))
        })?;
        let spec = Self::spec(&layout);
        let segment = make(&spec, how, &mut |payload, _| {
            let parts = Self::parts_at(payload, &layout);
            Queue::<T>::init(parts.3, parts.2);
        })?;
        Ok(SharedQueue {
            segment,
            layout,
            _type: PhantomData,
        })
    }

    fn from_segment(segment: Segment) -> Result<Self, OpenError> {
        let h = segment.header();
        let [capacity, roles] = h.fingerprint.params;
        let capacity = usize::try_from(capacity)
            .map_err(|_| corrupt("queue capacity does not fit in usize"))?;
        let layout = QueueLayout::of::<T>(
            capacity,
            (roles >> 32) as usize,
            (roles & 0xffff_ffff) as usize,
        )
        .ok_or_else(|| corrupt("queue parameters are impossible"))?;
        if layout.total as u64 != h.payload_len || !segment.is_writable() {
            return Err(corrupt("queue parameters do not match the payload length"));
        }
        Ok(SharedQueue {
            segment,
            layout,
            _type: PhantomData,
        })
    }

    /// Creates the named queue `name` with `capacity` slots and room for
    /// [`DEFAULT_REGISTRY`] producers and consumers at once.
    ///
    /// # Errors
    /// See [`CreateError`].
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

    #[allow(clippy::type_complexity)]
    fn parts_at<'a>(
        payload: NonNull<u8>,
        l: &QueueLayout,
    ) -> (
        &'a QueueControl,
        &'a [RoleSlot],
        &'a [shmkit_core::primitive::AtomicU64],
        &'a [shmkit_core::primitive::AtomicU64],
        &'a [RoleSlot],
        NonNull<T>,
    ) {
        let p = payload.as_ptr();
        // SAFETY: `l` was computed by `QueueLayout::of` and matches the
        // payload length, so every part lies inside the payload at an
        // offset aligned for its type (control at 0, 128-aligned; role
        // slots 4-aligned; intents and stamps 8-aligned; data aligned for
        // T). All parts except the data are atomics, valid for any bytes;
        // the data is only accessed atomically by the core queue. The
        // mapping lives as long as the segment the caller borrows.
        unsafe {
            (
                &*p.cast::<QueueControl>(),
                std::slice::from_raw_parts(p.add(l.producer_roles).cast(), l.producers),
                std::slice::from_raw_parts(p.add(l.intents).cast(), l.producers),
                std::slice::from_raw_parts(p.add(l.stamps).cast(), l.capacity),
                std::slice::from_raw_parts(p.add(l.consumer_roles).cast(), l.consumers),
                NonNull::new_unchecked(p.add(l.data)).cast(),
            )
        }
    }

    /// The queue: attach with `.producer()` / `.consumer()`.
    #[must_use]
    pub fn queue(&self) -> Queue<'_, T> {
        let (ctl, producers, intents, stamps, consumers, data) =
            Self::parts_at(self.segment.payload(), &self.layout);
        // SAFETY: see `parts_at`; the parts were initialised by the
        // creator before the segment became READY.
        unsafe { Queue::from_raw(ctl, producers, intents, consumers, stamps, data) }
            .expect("layout validated when the handle was made")
    }

    /// Number of slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.layout.capacity
    }

    segment_accessors!();
}

// ---------------------------------------------------------------- pipes

pub(crate) fn pipe_payload(capacity: usize, rings: usize) -> Option<usize> {
    if !(8..=MAX_CAPACITY as usize).contains(&capacity) || !capacity.is_power_of_two() {
        return None;
    }
    pipe_stride(capacity).checked_mul(rings)
}

/// Bytes from one ring's control to the next: rounded up to 128 so every
/// control block stays aligned.
pub(crate) fn pipe_stride(capacity: usize) -> usize {
    (RING_CONTROL + capacity).next_multiple_of(PAYLOAD_ALIGN)
}

fn pipe_at(segment: &Segment, capacity: usize, which: usize) -> Pipe<'_> {
    let stride = pipe_stride(capacity);
    // SAFETY: the payload holds `rings` strides of (RingControl, capacity
    // bytes), checked against its length; `which` < rings (callers pass 0,
    // or 1 for duplex pipes). Controls sit at multiples of the stride, a
    // multiple of 128, so they are aligned; the bytes are only accessed
    // atomically by the core pipe.
    unsafe {
        let base = segment.payload().as_ptr().add(which * stride);
        let ctl = &*base.cast::<RingControl>();
        Pipe::from_raw(
            ctl,
            NonNull::new_unchecked(base.add(RING_CONTROL)),
            capacity as u32,
        )
    }
    .expect("capacity validated when the handle was made")
}

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
    ($ty:ident, $kind:expr, $rings:expr, $what:literal) => {
        impl $ty {
            fn spec(capacity: usize) -> Result<ObjectSpec<'static>, CreateError> {
                let payload = pipe_payload(capacity, $rings).ok_or_else(|| {
                    bad("pipe capacity must be a power of two in 8..=2^31 bytes")
                })?;
                Ok(ObjectSpec {
                    kind: $kind,
                    fingerprint: Fingerprint::of::<u8>([capacity as u64, 0]),
                    type_name: "u8",
                    payload_len: payload as u64,
                })
            }

            fn build(capacity: usize, how: Make<'_>) -> Result<Self, OpenOrCreateError> {
                let spec = Self::spec(capacity).map_err(OpenOrCreateError::Create)?;
                let segment = make(&spec, how, &mut |_, _| {})?;
                Ok($ty { segment, capacity })
            }

            fn from_segment(segment: Segment) -> Result<Self, OpenError> {
                let h = segment.header();
                let capacity = usize::try_from(h.fingerprint.params[0])
                    .map_err(|_| corrupt("pipe capacity does not fit in usize"))?;
                match pipe_payload(capacity, $rings) {
                    Some(len) if len as u64 == h.payload_len && segment.is_writable() => {
                        Ok($ty { segment, capacity })
                    }
                    _ => Err(corrupt("pipe capacity does not match the payload length")),
                }
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

pipe_handle!(SharedPipe, Kind::PIPE, 1, "pipe");
pipe_handle!(SharedDuplexPipe, Kind::DUPLEX_PIPE, 2, "duplex pipe");

impl SharedPipe {
    /// The pipe: attach with `.sender()` / `.receiver()`.
    #[must_use]
    pub fn pipe(&self) -> Pipe<'_> {
        pipe_at(&self.segment, self.capacity, 0)
    }
}

impl SharedDuplexPipe {
    /// Attaches end `which` (0 or 1; anything else means 1).
    ///
    /// # Errors
    /// [`AttachError::Taken`] if a live process holds that end.
    pub fn end(&self, which: usize) -> Result<Connection<'_>, AttachError> {
        Connection::attach(
            [
                pipe_at(&self.segment, self.capacity, 0),
                pipe_at(&self.segment, self.capacity, 1),
            ],
            which,
        )
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
