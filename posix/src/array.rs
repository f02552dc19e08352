//! `SharedArray` and `SharedValue`: Python's `multiprocessing.Array` and
//! `Value` as typed segments.
//!
//! Elements are `Pod` and copied in and out one at a time with relaxed
//! atomics (see [`shmkit_core::shared`]): concurrent writers to the *same*
//! element may leave a torn value, never undefined behaviour. No `&[T]` into
//! the segment is ever handed out. When several processes update the same
//! elements, guard them with a lock (the `lock=True` form, which keeps the
//! data reachable only through the lock's guard).
//!
//! The access mode is part of the type: a handle opened with
//! [`SharedArray::open_read_only`] is a `SharedArray<T, ReadOnly>`, which has
//! no `set`.
//!
//! ```
//! use shmkit_posix::{ReadOnly, SharedArray};
//! # let name = format!("/shmkit-doc-ro-{}", std::process::id());
//! let writer = SharedArray::<u32>::create(&name, 4)?;
//! writer.set(0, 7)?;
//! let reader: SharedArray<u32, ReadOnly> = SharedArray::<u32>::open_read_only(&name)?;
//! assert_eq!(reader.get(0), Some(7));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Writing through the read-only handle does not compile:
//!
//! ```compile_fail,E0599
//! use shmkit_posix::SharedArray;
//! # let name = format!("/shmkit-doc-ro-fail-{}", std::process::id());
//! # let writer = SharedArray::<u32>::create(&name, 4)?;
//! let reader = SharedArray::<u32>::open_read_only(&name)?;
//! reader.set(0, 7)?; // no method `set` on `SharedArray<u32, ReadOnly>`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```compile_fail,E0599
//! use shmkit_posix::SharedValue;
//! # let name = format!("/shmkit-doc-ro-fail-value-{}", std::process::id());
//! # let writer = SharedValue::<f64>::create(&name, 0.0)?;
//! let reader = SharedValue::<f64>::open_read_only(&name)?;
//! reader.set(1.5); // no method `set` on `SharedValue<f64, ReadOnly>`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::os::fd::OwnedFd;

use bytemuck::Pod;
use shmkit_core::header::{Fingerprint, Kind, PAYLOAD_ALIGN};
use shmkit_core::shared::{OutOfBounds, SharedSlice};

use crate::error::{CreateError, OpenError, OpenOrCreateError};
use crate::segment::{Expect, ObjectSpec, Segment, SegmentOptions};

mod sealed {
    pub trait Sealed {}
}

/// The access a handle was opened with: [`ReadWrite`] or [`ReadOnly`].
pub trait Access: sealed::Sealed {}

/// Marker: the handle may read and write.
#[derive(Debug)]
pub enum ReadWrite {}
/// Marker: the handle may only read (the mapping is `PROT_READ`).
#[derive(Debug)]
pub enum ReadOnly {}

impl sealed::Sealed for ReadWrite {}
impl sealed::Sealed for ReadOnly {}
impl Access for ReadWrite {}
impl Access for ReadOnly {}

/// A segment holding `len` elements of `T` (kind `array`, or `value` with
/// one element), shared by every process that maps it.
struct Elements<T> {
    segment: Segment,
    len: usize,
    _type: PhantomData<fn() -> T>,
}

/// The spec of a segment holding `len` elements of `T` after `prefix`
/// bytes (0 for plain arrays and values; a mutex for the `lock=True`
/// forms), its fingerprint recording the length.
pub(crate) fn elements_spec<T: Pod>(
    kind: Kind,
    len: usize,
    prefix: usize,
) -> Result<ObjectSpec<'static>, CreateError> {
    if align_of::<T>() > PAYLOAD_ALIGN {
        return Err(CreateError::InvalidLayout {
            reason: "element type is aligned beyond the 128-byte payload alignment",
        });
    }
    let bytes = len
        .checked_mul(size_of::<T>())
        .and_then(|b| b.checked_add(prefix))
        .ok_or(CreateError::InvalidLayout {
            reason: "array length times element size overflows",
        })?;
    Ok(ObjectSpec {
        kind,
        fingerprint: Fingerprint::of::<T>([len as u64, 0]),
        type_name: std::any::type_name::<T>(),
        payload_len: bytes as u64,
    })
}

impl<T: Pod> Elements<T> {
    fn spec(kind: Kind, len: usize) -> Result<ObjectSpec<'static>, CreateError> {
        elements_spec::<T>(kind, len, 0)
    }

    /// An init function writing `values` (or leaving zeros if empty).
    fn writer(values: &[T]) -> impl FnMut(std::ptr::NonNull<u8>, usize) + '_ {
        move |payload, len| {
            // No values: the payload stays zero-filled.
            if values.is_empty() {
                return;
            }
            debug_assert_eq!(len, std::mem::size_of_val(values));
            // SAFETY: the payload holds exactly `values.len()` elements,
            // aligned (PAYLOAD_ALIGN >= align_of::<T>()), and is not yet
            // visible to anyone else.
            let slice = unsafe { SharedSlice::<T>::from_raw(payload.cast(), values.len()) };
            // Cannot fail: the lengths are equal.
            let _ = slice.write_from(0, values);
        }
    }

    fn from_segment(segment: Segment) -> Result<Elements<T>, OpenError> {
        let header = segment.header();
        let corrupt = |what: &str| OpenError::Corrupt {
            what: what.to_owned(),
        };
        // The payload sits HEADER_LEN bytes into a page-aligned mapping, so
        // only alignments up to PAYLOAD_ALIGN are guaranteed. `create`
        // refuses larger ones, but a forged header could claim one.
        if align_of::<T>() > PAYLOAD_ALIGN {
            return Err(corrupt(
                "element type is aligned beyond the 128-byte payload alignment",
            ));
        }
        let len = usize::try_from(header.fingerprint.params[0])
            .map_err(|_| corrupt("array length does not fit in usize"))?;
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or_else(|| corrupt("array length times element size overflows"))?;
        if bytes as u64 != header.payload_len {
            return Err(corrupt("array length does not match the payload length"));
        }
        if header.kind == Kind::VALUE && len != 1 {
            return Err(corrupt("a value segment must hold exactly one element"));
        }
        Ok(Elements {
            segment,
            len,
            _type: PhantomData,
        })
    }

    fn create(
        kind: Kind,
        name: &str,
        values: Option<&[T]>,
        len: usize,
        options: &SegmentOptions,
    ) -> Result<Self, CreateError> {
        let spec = Self::spec(kind, len)?;
        let segment = Segment::create(
            name,
            &spec,
            options,
            &mut Self::writer(values.unwrap_or(&[])),
        )?;
        Ok(Self::trusted(segment, len))
    }

    fn open(kind: Kind, name: &str, options: &SegmentOptions) -> Result<Self, OpenError> {
        Self::from_segment(Segment::open(name, &Expect::of::<T>(kind), options)?)
    }

    fn open_or_create(
        kind: Kind,
        name: &str,
        values: Option<&[T]>,
        len: usize,
        options: &SegmentOptions,
    ) -> Result<Self, OpenOrCreateError> {
        let spec = Self::spec(kind, len).map_err(OpenOrCreateError::Create)?;
        let (segment, _created) = Segment::open_or_create(
            name,
            &spec,
            options,
            &mut Self::writer(values.unwrap_or(&[])),
        )?;
        // open_or_create checked the parameters (the length) exactly.
        Ok(Self::trusted(segment, len))
    }

    fn anonymous(
        kind: Kind,
        values: Option<&[T]>,
        len: usize,
        memfd: bool,
    ) -> Result<Self, CreateError> {
        let spec = Self::spec(kind, len)?;
        let mut init = Self::writer(values.unwrap_or(&[]));
        let segment = if memfd {
            Segment::memfd(&spec, &mut init)?
        } else {
            Segment::anonymous(&spec, &mut init)?
        };
        Ok(Self::trusted(segment, len))
    }

    /// Wraps a segment this process created with length `len`.
    fn trusted(segment: Segment, len: usize) -> Self {
        Elements {
            segment,
            len,
            _type: PhantomData,
        }
    }

    fn slice(&self) -> SharedSlice<'_, T> {
        // SAFETY: the header was validated: `len * size_of::<T>()` payload
        // bytes are mapped for the life of `self.segment`, at an address
        // aligned to PAYLOAD_ALIGN >= align_of::<T>() (checked at creation;
        // for opened segments the fingerprint's align matched T's). The
        // slice is only written through when the mapping is writable (the
        // setters exist only on ReadWrite handles), and every access is
        // atomic.
        unsafe { SharedSlice::from_raw(self.segment.payload().cast(), self.len) }
    }
}

/// A fixed-length array of `T` in shared memory: Python's
/// `multiprocessing.Array(typecode, size, lock=False)`.
///
/// ```
/// use shmkit_posix::SharedArray;
/// let arr = SharedArray::<i32>::anonymous_from(&[0, 1, 2, 3])?;
/// arr.set(0, 5)?;
/// assert_eq!(arr.to_vec(), vec![5, 1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedArray<T: Pod, A: Access = ReadWrite> {
    inner: Elements<T>,
    _access: PhantomData<A>,
}

/// A single `T` in shared memory: Python's
/// `multiprocessing.Value(typecode, value, lock=False)`.
///
/// ```
/// use shmkit_posix::SharedValue;
/// let num = SharedValue::<f64>::anonymous(0.0)?;
/// num.set(3.14);
/// assert_eq!(num.get(), 3.14);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedValue<T: Pod, A: Access = ReadWrite> {
    inner: Elements<T>,
    _access: PhantomData<A>,
}

impl<T: Pod, A: Access> fmt::Debug for SharedArray<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("len", &self.inner.len)
            .field("segment", &self.inner.segment)
            .finish()
    }
}

impl<T: Pod, A: Access> fmt::Debug for SharedValue<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedValue")
            .field("segment", &self.inner.segment)
            .finish()
    }
}

impl<T: Pod> SharedArray<T> {
    fn wrap(inner: Elements<T>) -> Self {
        SharedArray {
            inner,
            _access: PhantomData,
        }
    }

    /// Creates the named array `name` of `len` zeroed elements.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create(name: &str, len: usize) -> Result<Self, CreateError> {
        Self::create_with(name, len, &SegmentOptions::default())
    }

    /// [`create`](Self::create) with options (mode, ownership).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create_with(
        name: &str,
        len: usize,
        options: &SegmentOptions,
    ) -> Result<Self, CreateError> {
        Elements::create(Kind::ARRAY, name, None, len, options).map(Self::wrap)
    }

    /// Creates the named array `name` holding a copy of `values`; openers
    /// never see it before the values are in place.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create_from(name: &str, values: &[T]) -> Result<Self, CreateError> {
        Elements::create(
            Kind::ARRAY,
            name,
            Some(values),
            values.len(),
            &SegmentOptions::default(),
        )
        .map(Self::wrap)
    }

    /// Opens the named array `name`, read-write. Its element type must be `T`.
    ///
    /// # Errors
    /// See [`OpenError`]; `TypeMismatch` for another element type.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Self::open_with(name, &SegmentOptions::default())
    }

    /// [`open`](Self::open) with options (init timeout). A `read_only`
    /// option is ignored: use [`open_read_only`](Self::open_read_only).
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open_with(name: &str, options: &SegmentOptions) -> Result<Self, OpenError> {
        let options = options.clone().read_only(false);
        Elements::open(Kind::ARRAY, name, &options).map(Self::wrap)
    }

    /// Opens the named array `name` read-only: the mapping is `PROT_READ`
    /// and the returned handle, a `SharedArray<T, ReadOnly>`, has no
    /// setters.
    ///
    /// ```
    /// use shmkit_posix::{ReadOnly, SharedArray};
    /// # let name = format!("/shmkit-doc-ro-array-{}", std::process::id());
    /// let writer = SharedArray::<u32>::create(&name, 2)?;
    /// let reader: SharedArray<u32, ReadOnly> = SharedArray::<u32>::open_read_only(&name)?;
    /// writer.set(1, 9)?;
    /// assert_eq!(reader.to_vec(), vec![0, 9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open_read_only(name: &str) -> Result<SharedArray<T, ReadOnly>, OpenError> {
        let options = SegmentOptions::default().read_only(true);
        Ok(SharedArray {
            inner: Elements::open(Kind::ARRAY, name, &options)?,
            _access: PhantomData,
        })
    }

    /// Opens `name` if it exists (it must hold `len` elements of `T`), else
    /// creates it zeroed. Safe to race from many processes.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create(name: &str, len: usize) -> Result<Self, OpenOrCreateError> {
        Elements::open_or_create(Kind::ARRAY, name, None, len, &SegmentOptions::default())
            .map(Self::wrap)
    }

    /// Opens `name` if it exists, else creates it holding `values`. Every
    /// racer sees the same initial contents: only the creator writes them,
    /// before anyone can attach.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create_from(name: &str, values: &[T]) -> Result<Self, OpenOrCreateError> {
        Elements::open_or_create(
            Kind::ARRAY,
            name,
            Some(values),
            values.len(),
            &SegmentOptions::default(),
        )
        .map(Self::wrap)
    }

    /// An unnamed array of `len` zeroed elements, shared with children
    /// created by `fork` after this call.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous(len: usize) -> Result<Self, CreateError> {
        Elements::anonymous(Kind::ARRAY, None, len, false).map(Self::wrap)
    }

    /// An unnamed array holding a copy of `values`, shared across `fork`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous_from(values: &[T]) -> Result<Self, CreateError> {
        Elements::anonymous(Kind::ARRAY, Some(values), values.len(), false).map(Self::wrap)
    }

    /// A memfd-backed array of `len` zeroed elements; pass
    /// [`segment().fd()`](Segment::fd) to another process, which attaches
    /// with [`from_fd`](Self::from_fd).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn memfd(len: usize) -> Result<Self, CreateError> {
        Elements::anonymous(Kind::ARRAY, None, len, true).map(Self::wrap)
    }

    /// Attaches to an array by descriptor. The object must be sealed
    /// against shrinking, or take the seal (see [`Segment::from_fd`]).
    ///
    /// # Errors
    /// See [`OpenError`]; `Unsealed` for an object a peer could shrink.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, OpenError> {
        Self::from_fd_with(fd, &SegmentOptions::default())
    }

    /// [`from_fd`](Self::from_fd) with options, e.g.
    /// [`allow_unsealed`](SegmentOptions::allow_unsealed). A `read_only`
    /// option is ignored (this handle writes).
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn from_fd_with(fd: OwnedFd, options: &SegmentOptions) -> Result<Self, OpenError> {
        let options = options.clone().read_only(false);
        let segment = Segment::from_fd(fd, &Expect::of::<T>(Kind::ARRAY), &options)?;
        Elements::from_segment(segment).map(Self::wrap)
    }

    /// Stores `value` at `index`.
    ///
    /// # Errors
    /// [`OutOfBounds`] past the end.
    pub fn set(&self, index: usize, value: T) -> Result<(), OutOfBounds> {
        self.inner.slice().set(index, value)
    }

    /// Copies `values` into elements `start..start + values.len()`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range passes the end; nothing is written.
    pub fn write_from(&self, start: usize, values: &[T]) -> Result<(), OutOfBounds> {
        self.inner.slice().write_from(start, values)
    }

    /// Sets every element to `value`.
    pub fn fill(&self, value: T) {
        self.inner.slice().fill(value);
    }

    /// An element-wise view, e.g. to hand to code that takes a
    /// [`SharedSlice`].
    #[must_use]
    pub fn view(&self) -> SharedSlice<'_, T> {
        self.inner.slice()
    }

    /// Keeps the name alive after this handle is dropped.
    pub fn persist(&mut self) {
        self.inner.segment.persist();
    }

    /// Makes this handle remove the name when dropped.
    pub fn take_ownership(&mut self) {
        self.inner.segment.take_ownership();
    }
}

impl<T: Pod, A: Access> SharedArray<T, A> {
    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether there are no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// A copy of element `index`, or `None` past the end.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<T> {
        self.inner.slice().get(index)
    }

    /// Copies elements `start..start + out.len()` into `out`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range passes the end.
    pub fn read_into(&self, start: usize, out: &mut [T]) -> Result<(), OutOfBounds> {
        self.inner.slice().read_into(start, out)
    }

    /// A copy of the whole array.
    #[must_use]
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = vec![T::zeroed(); self.inner.len];
        // Cannot fail: `out` has exactly `len` elements.
        let _ = self.inner.slice().read_into(0, &mut out);
        out
    }

    /// The underlying segment (name, descriptor, header).
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.inner.segment
    }
}

impl<T: Pod> SharedValue<T> {
    fn wrap(inner: Elements<T>) -> Self {
        SharedValue {
            inner,
            _access: PhantomData,
        }
    }

    /// Creates the named value `name` holding `initial`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create(name: &str, initial: T) -> Result<Self, CreateError> {
        Self::create_with(name, initial, &SegmentOptions::default())
    }

    /// [`create`](Self::create) with options.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create_with(
        name: &str,
        initial: T,
        options: &SegmentOptions,
    ) -> Result<Self, CreateError> {
        Elements::create(Kind::VALUE, name, Some(&[initial]), 1, options).map(Self::wrap)
    }

    /// Opens the named value `name`, read-write.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let options = SegmentOptions::default();
        Elements::open(Kind::VALUE, name, &options).map(Self::wrap)
    }

    /// Opens the named value `name` read-only: the mapping is `PROT_READ`
    /// and the returned handle, a `SharedValue<T, ReadOnly>`, has no `set`.
    ///
    /// ```
    /// use shmkit_posix::{ReadOnly, SharedValue};
    /// # let name = format!("/shmkit-doc-ro-value-{}", std::process::id());
    /// let writer = SharedValue::<f64>::create(&name, 0.5)?;
    /// let reader: SharedValue<f64, ReadOnly> = SharedValue::<f64>::open_read_only(&name)?;
    /// writer.set(2.5);
    /// assert_eq!(reader.get(), 2.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open_read_only(name: &str) -> Result<SharedValue<T, ReadOnly>, OpenError> {
        let options = SegmentOptions::default().read_only(true);
        Ok(SharedValue {
            inner: Elements::open(Kind::VALUE, name, &options)?,
            _access: PhantomData,
        })
    }

    /// Opens `name` if it exists, else creates it holding `initial`.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`].
    pub fn open_or_create(name: &str, initial: T) -> Result<Self, OpenOrCreateError> {
        Elements::open_or_create(
            Kind::VALUE,
            name,
            Some(&[initial]),
            1,
            &SegmentOptions::default(),
        )
        .map(Self::wrap)
    }

    /// An unnamed value shared with children created by `fork`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous(initial: T) -> Result<Self, CreateError> {
        Elements::anonymous(Kind::VALUE, Some(&[initial]), 1, false).map(Self::wrap)
    }

    /// Stores `value`.
    pub fn set(&self, value: T) {
        // Cannot fail: a value segment holds exactly one element.
        let _ = self.inner.slice().set(0, value);
    }

    /// Keeps the name alive after this handle is dropped.
    pub fn persist(&mut self) {
        self.inner.segment.persist();
    }

    /// Makes this handle remove the name when dropped (a no-op for
    /// anonymous values).
    ///
    /// ```
    /// use shmkit_posix::SharedValue;
    /// # let name = format!("/shmkit-doc-take-value-{}", std::process::id());
    /// let mut creator = SharedValue::<u64>::create(&name, 1)?;
    /// creator.persist();
    /// drop(creator); // the name outlives the creator's handle
    /// let mut last_user = SharedValue::<u64>::open(&name)?;
    /// last_user.take_ownership();
    /// drop(last_user); // ... and is removed with this one
    /// assert!(SharedValue::<u64>::open(&name).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_ownership(&mut self) {
        self.inner.segment.take_ownership();
    }
}

impl<T: Pod, A: Access> SharedValue<T, A> {
    /// A copy of the value.
    #[must_use]
    pub fn get(&self) -> T {
        self.inner.slice().get(0).unwrap_or_else(T::zeroed)
    }

    /// The underlying segment.
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.inner.segment
    }
}
