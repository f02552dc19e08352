//! [`LockedArray`] and [`LockedValue`]: Python's `Array(..., lock=True)` and
//! `Value(..., lock=True)`, an array or value guarded by a robust shmkit
//! mutex in the same segment.
//!
//! Payload layout (`#[repr(C)]`-style, offsets fixed by the element type):
//!
//! | offset | content |
//! |---|---|
//! | 0 | [`RawMutex`] (16 bytes) |
//! | `max(16, align_of::<T>())` rounded up to `align_of::<T>()` | `len` elements of `T` |
//!
//! The data is reachable only through the guard that [`lock`](LockedArray::lock)
//! returns. Even under the lock, elements are copied in and out with
//! relaxed atomics ([`SharedSlice`]): a peer that ignores the lock (or
//! writes garbage) can tear values, never cause undefined behaviour here.
//! A holder that dies is reported to the next locker as
//! [`LockError::OwnerDied`] (see [`shmkit_core::sync::mutex`]).
//!
//! ```
//! use shmkit_posix::locked::LockedValue;
//! let counter = LockedValue::<u64>::anonymous(0)?;
//! // In each process: read-modify-write under the lock.
//! counter.lock().unwrap().update(|v| *v += 1);
//! assert_eq!(counter.lock().unwrap().get(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::Duration;

use bytemuck::Pod;
use shmkit_core::header::Kind;
use shmkit_core::shared::{OutOfBounds, SharedSlice};
use shmkit_core::sync::{LockError, RawMutex, RawMutexGuard};

use crate::error::{CreateError, OpenError, OpenOrCreateError};
use crate::segment::{Expect, ObjectSpec, Options, Segment};

/// Offset of the data after the mutex, for element type `T`.
fn data_offset<T>() -> usize {
    data_offset_for(align_of::<T>())
}

/// Offset of the data after the mutex, for elements aligned to `align` (a
/// power of two; also read by [`crate::inspect`]).
pub(crate) fn data_offset_for(align: usize) -> usize {
    size_of::<RawMutex>().next_multiple_of(align)
}

/// The shared part of both handles: a segment holding a mutex and `len` Ts.
struct Locked<T> {
    segment: Segment,
    len: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> Locked<T> {
    fn spec(kind: Kind, len: usize) -> Result<ObjectSpec<'static>, CreateError> {
        if align_of::<T>() > shmkit_core::header::PAYLOAD_ALIGN {
            return Err(CreateError::InvalidLayout {
                reason: "element type is aligned beyond the 128-byte payload alignment",
            });
        }
        if len == 0 {
            return Err(CreateError::InvalidLayout {
                reason: "an array needs at least one element (Python refuses Array(t, 0) too)",
            });
        }
        let bytes = len
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(data_offset::<T>()))
            .ok_or(CreateError::InvalidLayout {
                reason: "array length times element size overflows",
            })?;
        Ok(ObjectSpec {
            kind,
            fingerprint: shmkit_core::header::Fingerprint::of::<T>([len as u64, 0]),
            type_name: std::any::type_name::<T>(),
            payload_len: bytes as u64,
        })
    }

    fn writer(values: &[T]) -> impl FnMut(NonNull<u8>, usize) + '_ {
        move |payload, _len| {
            // The mutex is valid zero-filled; only the values are written.
            if values.is_empty() {
                return;
            }
            // SAFETY: the fresh payload holds the mutex then `values.len()`
            // elements at `data_offset`, aligned for T, not yet shared.
            let slice = unsafe {
                SharedSlice::<T>::from_raw(payload.add(data_offset::<T>()).cast(), values.len())
            };
            let _ = slice.write_from(0, values);
        }
    }

    fn from_segment(segment: Segment) -> Result<Self, OpenError> {
        let header = segment.header();
        let corrupt = |what: &str| OpenError::Corrupt {
            what: what.to_owned(),
        };
        let len = usize::try_from(header.fingerprint.params[0])
            .map_err(|_| corrupt("array length does not fit in usize"))?;
        let bytes = len
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(data_offset::<T>()))
            .ok_or_else(|| corrupt("array length times element size overflows"))?;
        if bytes as u64 != header.payload_len {
            return Err(corrupt("array length does not match the payload length"));
        }
        if header.kind == Kind::LOCKED_VALUE && len != 1 {
            return Err(corrupt(
                "a locked value segment must hold exactly one element",
            ));
        }
        if !segment.is_writable() {
            return Err(corrupt("a locked object needs a writable mapping"));
        }
        Ok(Self::trusted(segment, len))
    }

    fn trusted(segment: Segment, len: usize) -> Self {
        Locked {
            segment,
            len,
            _type: PhantomData,
        }
    }

    fn create(kind: Kind, name: &str, values: &[T], len: usize) -> Result<Self, CreateError> {
        let spec = Self::spec(kind, len)?;
        let segment = Segment::create(name, &spec, &Options::default(), &mut Self::writer(values))?;
        Ok(Self::trusted(segment, len))
    }

    fn open(kind: Kind, name: &str) -> Result<Self, OpenError> {
        let options = Options::default().read_only(false);
        Self::from_segment(Segment::open(name, &Expect::of::<T>(kind), &options)?)
    }

    fn open_or_create(
        kind: Kind,
        name: &str,
        values: &[T],
        len: usize,
    ) -> Result<Self, OpenOrCreateError> {
        let spec = Self::spec(kind, len).map_err(OpenOrCreateError::Create)?;
        let (segment, _created) =
            Segment::open_or_create(name, &spec, &Options::default(), &mut Self::writer(values))?;
        Ok(Self::trusted(segment, len))
    }

    fn anonymous(kind: Kind, values: &[T], len: usize, memfd: bool) -> Result<Self, CreateError> {
        let spec = Self::spec(kind, len)?;
        let mut init = Self::writer(values);
        let segment = if memfd {
            Segment::memfd(&spec, &mut init)?
        } else {
            Segment::anonymous(&spec, &mut init)?
        };
        Ok(Self::trusted(segment, len))
    }

    fn from_fd(kind: Kind, fd: OwnedFd) -> Result<Self, OpenError> {
        let segment = Segment::from_fd(fd, &Expect::of::<T>(kind), &Options::default())?;
        Self::from_segment(segment)
    }

    fn mutex(&self) -> &RawMutex {
        // SAFETY: the payload starts with a RawMutex (16 bytes, align 8 <=
        // PAYLOAD_ALIGN), initialised zero-filled by the creator, mapped
        // read-write for the life of the segment; it is only atomics, so
        // any bytes a peer wrote are a valid value.
        unsafe { self.segment.payload().cast::<RawMutex>().as_ref() }
    }

    fn slice(&self) -> SharedSlice<'_, T> {
        // SAFETY: the header was validated: `len` elements of T follow the
        // mutex at `data_offset`, aligned (payload is PAYLOAD_ALIGN-aligned,
        // the offset a multiple of align_of::<T>()), writable, mapped as
        // long as `self`; every access is atomic.
        unsafe {
            SharedSlice::from_raw(
                self.segment.payload().add(data_offset::<T>()).cast(),
                self.len,
            )
        }
    }

    fn lock_with<'a, G>(
        &'a self,
        r: Result<RawMutexGuard<'a>, LockError<RawMutexGuard<'a>>>,
        make: impl Fn(RawMutexGuard<'a>, SharedSlice<'a, T>) -> G,
    ) -> Result<G, LockError<G>> {
        let slice = self.slice();
        r.map(|g| make(g, slice))
            .map_err(|e| e.map(|g| make(g, slice)))
    }
}

/// An array of `T` guarded by a robust mutex: Python's
/// `multiprocessing.Array(typecode, size, lock=True)`.
///
/// ```
/// use shmkit_posix::locked::LockedArray;
/// let a = LockedArray::<i32>::anonymous_from(&[1, 2, 3])?;
/// {
///     let g = a.lock().unwrap();
///     g.set(0, g.get(0).unwrap() + g.get(2).unwrap())?;
/// }
/// assert_eq!(a.lock().unwrap().to_vec(), vec![4, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LockedArray<T: Pod> {
    inner: Locked<T>,
}

/// A single `T` guarded by a robust mutex: Python's
/// `multiprocessing.Value(typecode, value, lock=True)`.
pub struct LockedValue<T: Pod> {
    inner: Locked<T>,
}

impl<T: Pod> fmt::Debug for LockedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedArray")
            .field("len", &self.inner.len)
            .field("segment", &self.inner.segment)
            .finish()
    }
}

impl<T: Pod> fmt::Debug for LockedValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedValue")
            .field("segment", &self.inner.segment)
            .finish()
    }
}

type ArrayLock<'a, T> = Result<LockedArrayGuard<'a, T>, LockError<LockedArrayGuard<'a, T>>>;
type ValueLock<'a, T> = Result<LockedValueGuard<'a, T>, LockError<LockedValueGuard<'a, T>>>;

impl<T: Pod> LockedArray<T> {
    /// Creates the named array `name` of `len` zeroed elements.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create(name: &str, len: usize) -> Result<Self, CreateError> {
        Locked::create(Kind::LOCKED_ARRAY, name, &[], len).map(|inner| Self { inner })
    }

    /// Creates the named array `name` holding a copy of `values`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create_from(name: &str, values: &[T]) -> Result<Self, CreateError> {
        Locked::create(Kind::LOCKED_ARRAY, name, values, values.len()).map(|inner| Self { inner })
    }

    /// Opens the named array `name` (element type `T`).
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Locked::open(Kind::LOCKED_ARRAY, name).map(|inner| Self { inner })
    }

    /// Opens `name` if it exists (it must hold `len` elements of `T`),
    /// else creates it zeroed.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create(name: &str, len: usize) -> Result<Self, OpenOrCreateError> {
        Locked::open_or_create(Kind::LOCKED_ARRAY, name, &[], len).map(|inner| Self { inner })
    }

    /// An unnamed array of `len` zeroed elements, shared across `fork`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous(len: usize) -> Result<Self, CreateError> {
        Locked::anonymous(Kind::LOCKED_ARRAY, &[], len, false).map(|inner| Self { inner })
    }

    /// An unnamed array holding a copy of `values`, shared across `fork`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous_from(values: &[T]) -> Result<Self, CreateError> {
        Locked::anonymous(Kind::LOCKED_ARRAY, values, values.len(), false)
            .map(|inner| Self { inner })
    }

    /// A memfd-backed array of `len` zeroed elements.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn memfd(len: usize) -> Result<Self, CreateError> {
        Locked::anonymous(Kind::LOCKED_ARRAY, &[], len, true).map(|inner| Self { inner })
    }

    /// Attaches to an array by descriptor.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn from_fd(fd: OwnedFd) -> Result<Self, OpenError> {
        Locked::from_fd(Kind::LOCKED_ARRAY, fd).map(|inner| Self { inner })
    }

    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether the array has no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Locks the array.
    ///
    /// # Errors
    /// As [`RawMutex::lock`].
    pub fn lock(&self) -> ArrayLock<'_, T> {
        self.inner
            .lock_with(self.inner.mutex().lock(), LockedArrayGuard::new)
    }

    /// Locks the array if that needs no waiting.
    ///
    /// # Errors
    /// As [`RawMutex::try_lock`].
    pub fn try_lock(&self) -> ArrayLock<'_, T> {
        self.inner
            .lock_with(self.inner.mutex().try_lock(), LockedArrayGuard::new)
    }

    /// Locks the array, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`RawMutex::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> ArrayLock<'_, T> {
        self.inner.lock_with(
            self.inner.mutex().lock_timeout(timeout),
            LockedArrayGuard::new,
        )
    }

    /// The segment holding the array.
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.inner.segment
    }
}

impl<T: Pod> LockedValue<T> {
    /// Creates the named value `name` holding `value`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create(name: &str, value: T) -> Result<Self, CreateError> {
        Locked::create(Kind::LOCKED_VALUE, name, &[value], 1).map(|inner| Self { inner })
    }

    /// Opens the named value `name` (type `T`).
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Locked::open(Kind::LOCKED_VALUE, name).map(|inner| Self { inner })
    }

    /// Opens `name` if it exists, else creates it holding `value`.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create(name: &str, value: T) -> Result<Self, OpenOrCreateError> {
        Locked::open_or_create(Kind::LOCKED_VALUE, name, &[value], 1).map(|inner| Self { inner })
    }

    /// An unnamed value shared across `fork`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous(value: T) -> Result<Self, CreateError> {
        Locked::anonymous(Kind::LOCKED_VALUE, &[value], 1, false).map(|inner| Self { inner })
    }

    /// A memfd-backed value.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn memfd(value: T) -> Result<Self, CreateError> {
        Locked::anonymous(Kind::LOCKED_VALUE, &[value], 1, true).map(|inner| Self { inner })
    }

    /// Attaches to a value by descriptor.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn from_fd(fd: OwnedFd) -> Result<Self, OpenError> {
        Locked::from_fd(Kind::LOCKED_VALUE, fd).map(|inner| Self { inner })
    }

    /// Locks the value.
    ///
    /// # Errors
    /// As [`RawMutex::lock`].
    pub fn lock(&self) -> ValueLock<'_, T> {
        self.inner
            .lock_with(self.inner.mutex().lock(), LockedValueGuard::new)
    }

    /// Locks the value if that needs no waiting.
    ///
    /// # Errors
    /// As [`RawMutex::try_lock`].
    pub fn try_lock(&self) -> ValueLock<'_, T> {
        self.inner
            .lock_with(self.inner.mutex().try_lock(), LockedValueGuard::new)
    }

    /// Locks the value, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`RawMutex::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> ValueLock<'_, T> {
        self.inner.lock_with(
            self.inner.mutex().lock_timeout(timeout),
            LockedValueGuard::new,
        )
    }

    /// The segment holding the value.
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.inner.segment
    }
}

/// Holds a [`LockedArray`]'s lock; the only way to its elements.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockedArrayGuard<'a, T: Pod> {
    guard: RawMutexGuard<'a>,
    slice: SharedSlice<'a, T>,
}

impl<T: Pod> fmt::Debug for LockedArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedArrayGuard")
            .field("guard", &self.guard)
            .field("len", &self.slice.len())
            .finish()
    }
}

impl<'a, T: Pod> LockedArrayGuard<'a, T> {
    fn new(guard: RawMutexGuard<'a>, slice: SharedSlice<'a, T>) -> Self {
        LockedArrayGuard { guard, slice }
    }

    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// Whether the array has no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slice.is_empty()
    }

    /// A copy of element `index`, or `None` past the end.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<T> {
        self.slice.get(index)
    }

    /// Stores `value` at `index`.
    ///
    /// # Errors
    /// [`OutOfBounds`] past the end.
    pub fn set(&self, index: usize, value: T) -> Result<(), OutOfBounds> {
        self.slice.set(index, value)
    }

    /// Copies `values` into `start..start + values.len()`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range passes the end; nothing is written.
    pub fn write_from(&self, start: usize, values: &[T]) -> Result<(), OutOfBounds> {
        self.slice.write_from(start, values)
    }

    /// A copy of every element.
    #[must_use]
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.slice.len())
            .filter_map(|i| self.slice.get(i))
            .collect()
    }

    /// The element view (valid while the guard is held).
    #[must_use]
    pub fn view(&self) -> SharedSlice<'_, T> {
        self.slice
    }

    /// Declares the data repaired after `OwnerDied`.
    pub fn mark_consistent(&mut self) {
        self.guard.mark_consistent();
    }
}

/// Holds a [`LockedValue`]'s lock; the only way to its value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockedValueGuard<'a, T: Pod> {
    guard: RawMutexGuard<'a>,
    slice: SharedSlice<'a, T>,
}

impl<T: Pod> fmt::Debug for LockedValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedValueGuard")
            .field("guard", &self.guard)
            .finish()
    }
}

impl<'a, T: Pod> LockedValueGuard<'a, T> {
    fn new(guard: RawMutexGuard<'a>, slice: SharedSlice<'a, T>) -> Self {
        LockedValueGuard { guard, slice }
    }

    /// A copy of the value.
    #[must_use]
    pub fn get(&self) -> T {
        self.slice.get(0).unwrap_or_else(T::zeroed)
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        let _ = self.slice.set(0, value);
    }

    /// Copies the value out, lets `f` change it, writes it back.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut v = self.get();
        let r = f(&mut v);
        self.set(v);
        r
    }

    /// Declares the data repaired after `OwnerDied`.
    pub fn mark_consistent(&mut self) {
        self.guard.mark_consistent();
    }
}
