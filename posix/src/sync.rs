//! Locks and signals in their own segments: Python's `multiprocessing`
//! `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`
//! and `Barrier`, shared by name, across `fork`, or by memfd descriptor.
//!
//! One generic handle, [`Shared<O>`], places a [`shmkit_core::sync`] object
//! alone in a segment and dereferences to it, so every method of the core
//! type (`lock`, `try_lock`, `lock_timeout`, `acquire`, `wait`, ...) is
//! called on the handle directly. The aliases name the usual ones:
//! [`SharedMutex`], [`SharedRawMutex`], [`SharedReentrantMutex`],
//! [`SharedRwLock`], [`SharedSemaphore`], [`SharedEvent`],
//! [`SharedCondvar`], [`SharedBarrier`].
//!
//! The creator passes the initial object (e.g. `Semaphore::bounded(10)`),
//! which is written into the payload before anyone can attach. An opener
//! checks the kind, the object type and the payload length; whatever
//! counts the object holds (permits, bound, parties) are read from shared
//! memory and validated by the core type on every operation.
//!
//! Robustness (what happens when a process dies holding or waiting on one
//! of these) is documented on each core type; the segment adds nothing to
//! it. A named segment outlives its processes until its owner handle drops
//! or it is unlinked.
//!
//! ```
//! use shmkit_posix::sync::SharedMutex;
//! use shmkit_core::sync::Mutex;
//!
//! # let name = format!("/shmkit-doc-sync-{}", std::process::id());
//! let a = SharedMutex::create(&name, Mutex::new(0u64))?;
//! let b = SharedMutex::<u64>::open(&name)?; // another process, usually
//! a.lock().unwrap().set(41);
//! b.lock().unwrap().update(|v| *v += 1);
//! assert_eq!(a.lock().unwrap().get(), 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use bytemuck::Pod;
use shmkit_core::header::{Fingerprint, Kind, PAYLOAD_ALIGN};
use shmkit_core::sync::{
    Barrier, Condvar, Event, Mutex, RawMutex, ReentrantMutex, RwLock, Semaphore,
};

use crate::error::{CreateError, OpenError, OpenOrCreateError};
use crate::segment::{Expect, ObjectSpec, Segment, SegmentOptions};

mod sealed {
    pub trait Sealed {}
}

/// A core sync object that may live alone in a segment.
///
/// Sealed: implemented for the [`shmkit_core::sync`] types, each of which
/// is `#[repr(C)]`, made only of atomics and `Pod` data (so any bytes a peer
/// writes are a valid value), and needs no drop.
pub trait SegmentObject: sealed::Sealed + Sync + Sized {
    /// The segment kind recorded in the header.
    const KIND: Kind;
}

macro_rules! segment_object {
    ($kind:expr => $($t:ty),+ $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl SegmentObject for $t {
            const KIND: Kind = $kind;
        }
    )+};
}

segment_object!(Kind::MUTEX => RawMutex);
segment_object!(Kind::SEMAPHORE => Semaphore);
segment_object!(Kind::EVENT => Event);
segment_object!(Kind::CONDVAR => Condvar);
segment_object!(Kind::BARRIER => Barrier);

impl<T: Pod> sealed::Sealed for Mutex<T> {}
impl<T: Pod> SegmentObject for Mutex<T> {
    const KIND: Kind = Kind::MUTEX;
}
impl<T: Pod> sealed::Sealed for ReentrantMutex<T> {}
impl<T: Pod> SegmentObject for ReentrantMutex<T> {
    const KIND: Kind = Kind::REENTRANT_MUTEX;
}
impl<T: Pod> sealed::Sealed for RwLock<T> {}
impl<T: Pod> SegmentObject for RwLock<T> {
    const KIND: Kind = Kind::RWLOCK;
}

/// A robust mutex holding a `T` (Python `Lock` plus the data it guards).
pub type SharedMutex<T> = Shared<Mutex<T>>;
/// A robust mutex without data (Python `Lock`).
pub type SharedRawMutex = Shared<RawMutex>;
/// A reentrant robust mutex (Python `RLock`).
pub type SharedReentrantMutex<T> = Shared<ReentrantMutex<T>>;
/// A readers/writer lock.
pub type SharedRwLock<T> = Shared<RwLock<T>>;
/// A semaphore, bounded or not (Python `Semaphore`/`BoundedSemaphore`).
pub type SharedSemaphore = Shared<Semaphore>;
/// A manual-reset event (Python `Event`).
pub type SharedEvent = Shared<Event>;
/// A condition variable for a shmkit mutex (Python `Condition`'s waiting
/// half; pair it with a [`SharedMutex`]).
pub type SharedCondvar = Shared<Condvar>;
/// A barrier (Python `Barrier`).
pub type SharedBarrier = Shared<Barrier>;

/// A core sync object `O` in its own segment. Dereferences to `O`.
pub struct Shared<O: SegmentObject> {
    segment: Segment,
    _object: PhantomData<O>,
}

impl<O: SegmentObject> fmt::Debug for Shared<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("type", &std::any::type_name::<O>())
            .field("segment", &self.segment)
            .finish()
    }
}

// SAFETY: the handle only hands out `&O`, and `O: Sync`; the mapping is
// valid from any thread.
unsafe impl<O: SegmentObject> Send for Shared<O> {}
// SAFETY: as above.
unsafe impl<O: SegmentObject> Sync for Shared<O> {}

impl<O: SegmentObject> Deref for Shared<O> {
    type Target = O;

    fn deref(&self) -> &O {
        // SAFETY: the payload is at least size_of::<O>() bytes (checked at
        // creation and on open), aligned to PAYLOAD_ALIGN >= align_of::<O>()
        // (checked in `spec`), mapped read-write for the life of
        // `self.segment`, and initialised: by the creator's init, or, for
        // bytes a peer overwrote, still a valid `O` since `O` is made of
        // atomics and Pod data (SegmentObject's contract). Only `&O` is
        // handed out, and all its mutation is atomic.
        unsafe { self.segment.payload().cast::<O>().as_ref() }
    }
}

impl<O: SegmentObject> Shared<O> {
    fn spec() -> Result<ObjectSpec<'static>, CreateError> {
        if align_of::<O>() > PAYLOAD_ALIGN {
            return Err(CreateError::InvalidLayout {
                reason: "object type is aligned beyond the 128-byte payload alignment",
            });
        }
        Ok(ObjectSpec {
            kind: O::KIND,
            fingerprint: Fingerprint::of::<O>([0, 0]),
            type_name: std::any::type_name::<O>(),
            payload_len: size_of::<O>() as u64,
        })
    }

    fn writer(initial: O) -> impl FnMut(NonNull<u8>, usize) {
        let mut initial = Some(initial);
        move |payload, len| {
            if let Some(object) = initial.take() {
                debug_assert!(len >= size_of::<O>());
                // SAFETY: the fresh payload is size_of::<O>() writable
                // bytes, aligned for O, not yet visible to anyone else; O
                // has no drop glue to skip on the zeroes it overwrites.
                unsafe { payload.cast::<O>().as_ptr().write(object) };
            }
        }
    }

    fn wrap(segment: Segment) -> Result<Self, OpenError> {
        if segment.header().payload_len != size_of::<O>() as u64 || !segment.is_writable() {
            return Err(OpenError::Corrupt {
                what:
                    "the payload length does not match the object type, or the mapping is read-only"
                        .to_owned(),
            });
        }
        Ok(Shared {
            segment,
            _object: PhantomData,
        })
    }

    fn trusted(segment: Segment) -> Self {
        Shared {
            segment,
            _object: PhantomData,
        }
    }

    /// Creates the named segment `name` holding `initial`.
    ///
    /// # Errors
    /// See [`CreateError`]; `AlreadyExists` if the name is taken.
    pub fn create(name: &str, initial: O) -> Result<Self, CreateError> {
        Self::create_with(name, initial, &SegmentOptions::default())
    }

    /// [`create`](Self::create) with options (mode, ownership).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create_with(
        name: &str,
        initial: O,
        options: &SegmentOptions,
    ) -> Result<Self, CreateError> {
        let spec = Self::spec()?;
        let segment = Segment::create(name, &spec, options, &mut Self::writer(initial))?;
        Ok(Self::trusted(segment))
    }

    /// Opens the named object `name`; it must hold an `O`.
    ///
    /// # Errors
    /// See [`OpenError`]; `KindMismatch`/`TypeMismatch` for another object.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let options = SegmentOptions::default().read_only(false);
        Self::wrap(Segment::open(name, &Expect::of::<O>(O::KIND), &options)?)
    }

    /// Opens `name` if it exists, else creates it holding `initial`. Safe
    /// to race from many processes: exactly one creates, and nobody sees
    /// the object before it is initialised.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create(name: &str, initial: O) -> Result<Self, OpenOrCreateError> {
        let spec = Self::spec().map_err(OpenOrCreateError::Create)?;
        let (segment, _created) = Segment::open_or_create(
            name,
            &spec,
            &SegmentOptions::default(),
            &mut Self::writer(initial),
        )?;
        Ok(Self::trusted(segment))
    }

    /// An unnamed object shared with children created by `fork` afterwards.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous(initial: O) -> Result<Self, CreateError> {
        let segment = Segment::anonymous(&Self::spec()?, &mut Self::writer(initial))?;
        Ok(Self::trusted(segment))
    }

    /// A memfd-backed object; pass [`segment().fd()`](Segment::fd) to
    /// another process, which attaches with [`from_fd`](Self::from_fd).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn memfd(initial: O) -> Result<Self, CreateError> {
        let segment = Segment::memfd(&Self::spec()?, &mut Self::writer(initial))?;
        Ok(Self::trusted(segment))
    }

    /// Attaches to an object by descriptor.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn from_fd(fd: OwnedFd) -> Result<Self, OpenError> {
        let segment = Segment::from_fd(fd, &Expect::of::<O>(O::KIND), &SegmentOptions::default())?;
        Self::wrap(segment)
    }

    /// The segment holding the object.
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Keeps the name alive after this handle is dropped.
    pub fn persist(&mut self) {
        self.segment.persist();
    }

    /// Makes this handle remove the name when dropped.
    pub fn take_ownership(&mut self) {
        self.segment.take_ownership();
    }
}
