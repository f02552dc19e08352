//! [`Array`] and [`Value`]: Python's `multiprocessing.Array` and `Value`
//! (and `shared_memory.SharedMemory`, an `Array<u8>`), as [`Shared`]
//! handles over the core [`Array`](shmkit_core::shared::Array) and
//! [`Value`](shmkit_core::shared::Value) objects.
//!
//! Elements are `Pod` and copied in and out one at a time with relaxed
//! atomics (see [`shmkit_core::shared`]): concurrent writers to the *same*
//! element may leave a torn value, never undefined behaviour. No `&[T]`
//! into the segment is ever handed out. When several processes update the
//! same elements, guard them with a lock (the `lock=True` form,
//! [`LockedArray`](crate::LockedArray)).
//!
//! The access mode is part of the type: a handle opened with
//! [`open_read_only`](Shared::open_read_only) is an `Array<T, ReadOnly>`,
//! which has no `set`.
//!
//! ```
//! use shmkit_posix::{Array, ReadOnly};
//! # let name = format!("/shmkit-doc-ro-{}", std::process::id());
//! let writer = Array::<u32>::create(&name, 4)?;     // four zeroed u32
//! writer.set(0, 7)?;
//! let reader: Array<u32, ReadOnly> = Array::<u32>::open_read_only(&name)?;
//! assert_eq!(reader.get(0), Some(7));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Writing through the read-only handle does not compile:
//!
//! ```compile_fail,E0599
//! use shmkit_posix::Array;
//! # let name = format!("/shmkit-doc-ro-fail-{}", std::process::id());
//! # let writer = Array::<u32>::create(&name, 4)?;
//! let reader = Array::<u32>::open_read_only(&name)?;
//! reader.set(0, 7)?; // no method `set` on `Array<u32, ReadOnly>`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```compile_fail,E0599
//! use shmkit_posix::Value;
//! # let name = format!("/shmkit-doc-ro-fail-value-{}", std::process::id());
//! # let writer = Value::<f64>::create(&name, 0.0)?;
//! let reader = Value::<f64>::open_read_only(&name)?;
//! reader.set(1.5); // no method `set` on `Value<f64, ReadOnly>`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ptr::NonNull;

use bytemuck::Pod;
use shmkit_core::object::Object;
use shmkit_core::shared::{self, OutOfBounds, SharedSlice};

use crate::handle::{Access, Create, IntoInit, ReadOnly, ReadOnlyView, ReadWrite, Shared};

/// A fixed-length array of `T` in shared memory: Python's
/// `multiprocessing.Array(typecode, size_or_values, lock=False)`.
///
/// ```
/// use shmkit_posix::Array;
/// let arr = Array::<i32>::anonymous([0, 1, 2, 3])?;  // or anonymous(4): zeroes
/// arr.set(0, 5)?;
/// assert_eq!(arr.to_vec(), vec![5, 1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Array<T, A = ReadWrite> = Shared<shared::Array<T>, A>;

/// A single `T` in shared memory: Python's
/// `multiprocessing.Value(typecode, value, lock=False)`.
///
/// ```
/// use shmkit_posix::Value;
/// let num = Value::<f64>::anonymous(0.0)?;
/// num.set(3.14);
/// assert_eq!(num.get(), 3.14);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Value<T, A = ReadWrite> = Shared<shared::Value<T>, A>;

/// How a new [`Array`] is filled: `n` zeroes (from a `usize`), or a copy of
/// given values (from a `Vec`, a slice or an array).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArrayInit<T> {
    /// This many zeroed elements.
    Zeroed(usize),
    /// These values.
    Values(Vec<T>),
}

impl<T> ArrayInit<T> {
    /// How many elements the array will have.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            ArrayInit::Zeroed(n) => *n,
            ArrayInit::Values(v) => v.len(),
        }
    }

    /// Whether the array would be empty (creating it then fails).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Pod> IntoInit<shared::Array<T>> for ArrayInit<T> {
    fn into_init(self) -> ArrayInit<T> {
        self
    }
}

impl<T: Pod> IntoInit<shared::Array<T>> for usize {
    fn into_init(self) -> ArrayInit<T> {
        ArrayInit::Zeroed(self)
    }
}

impl<T: Pod> IntoInit<shared::Array<T>> for Vec<T> {
    fn into_init(self) -> ArrayInit<T> {
        ArrayInit::Values(self)
    }
}

impl<T: Pod> IntoInit<shared::Array<T>> for &[T] {
    fn into_init(self) -> ArrayInit<T> {
        ArrayInit::Values(self.to_vec())
    }
}

impl<T: Pod> IntoInit<shared::Array<T>> for &Vec<T> {
    fn into_init(self) -> ArrayInit<T> {
        ArrayInit::Values(self.clone())
    }
}

impl<T: Pod, const N: usize> IntoInit<shared::Array<T>> for &[T; N] {
    fn into_init(self) -> ArrayInit<T> {
        ArrayInit::Values(self.to_vec())
    }
}

impl<T: Pod, const N: usize> IntoInit<shared::Array<T>> for [T; N] {
    fn into_init(self) -> ArrayInit<T> {
        ArrayInit::Values(Vec::from(self))
    }
}

impl<T: Pod> IntoInit<shared::Value<T>> for T {
    fn into_init(self) -> T {
        self
    }
}

impl<T: Pod> Create for shared::Array<T> {
    type Init = ArrayInit<T>;

    fn params(init: &ArrayInit<T>) -> usize {
        init.len()
    }

    unsafe fn write_init(payload: NonNull<u8>, len: &usize, init: ArrayInit<T>) {
        if let ArrayInit::Values(values) = init {
            // SAFETY: forwarded from the caller: the fresh payload of
            // `len` = `values.len()` elements.
            let view = unsafe { Self::attach(payload, len) };
            // Cannot fail: the lengths are equal.
            let _ = view.write_from(0, &values);
        }
    }
}

impl<T: Pod> Create for shared::Value<T> {
    type Init = T;

    fn params(_: &T) {}

    unsafe fn write_init(payload: NonNull<u8>, params: &(), init: T) {
        // SAFETY: forwarded from the caller.
        let view = unsafe { Self::attach(payload, params) };
        // Cannot fail: index 0 of a one-element view.
        let _ = view.set(0, init);
    }
}

impl<T: Pod> ReadOnlyView for shared::Array<T> {}
impl<T: Pod> ReadOnlyView for shared::Value<T> {}

/// `to_vec` for element views (a locked array's guard dereferences to
/// one): core has no allocator, so the copy into a `Vec` lives here.
pub trait SharedSliceExt<T> {
    /// A copy of every element (each copied atomically, the whole not).
    fn to_vec(&self) -> Vec<T>;
}

impl<T: Pod> SharedSliceExt<T> for SharedSlice<'_, T> {
    fn to_vec(&self) -> Vec<T> {
        let mut out = vec![T::zeroed(); self.len()];
        // Cannot fail: `out` has exactly `len` elements.
        let _ = self.read_into(0, &mut out);
        out
    }
}

/// The elements, whatever the access (reading never writes).
trait Elements<T: Pod> {
    fn elements(&self) -> SharedSlice<'_, T>;
}

impl<T: Pod> Elements<T> for Array<T, ReadWrite> {
    fn elements(&self) -> SharedSlice<'_, T> {
        self.view()
    }
}

impl<T: Pod> Elements<T> for Array<T, ReadOnly> {
    fn elements(&self) -> SharedSlice<'_, T> {
        self.read_view()
    }
}

impl<T: Pod> Elements<T> for Value<T, ReadWrite> {
    fn elements(&self) -> SharedSlice<'_, T> {
        self.view()
    }
}

impl<T: Pod> Elements<T> for Value<T, ReadOnly> {
    fn elements(&self) -> SharedSlice<'_, T> {
        self.read_view()
    }
}

#[allow(private_bounds)] // `Elements` is the two access modes' common read path
impl<T: Pod, A: Access> Array<T, A>
where
    Array<T, A>: Elements<T>,
{
    /// Number of elements (at least one).
    #[must_use]
    pub fn len(&self) -> usize {
        *self.params()
    }

    /// Never true: an array holds at least one element.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A copy of element `index`, or `None` past the end.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<T> {
        self.elements().get(index)
    }

    /// Copies elements `start..start + out.len()` into `out`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range passes the end; `out` is untouched.
    pub fn read_into(&self, start: usize, out: &mut [T]) -> Result<(), OutOfBounds> {
        self.elements().read_into(start, out)
    }

    /// A copy of every element (each copied atomically, the whole not: a
    /// concurrent writer may change some elements while others are read).
    #[must_use]
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = vec![T::zeroed(); self.len()];
        // Cannot fail: `out` has exactly `len` elements.
        let _ = self.read_into(0, &mut out);
        out
    }
}

impl<T: Pod> Array<T> {
    /// Stores `value` at `index`.
    ///
    /// # Errors
    /// [`OutOfBounds`] past the end.
    pub fn set(&self, index: usize, value: T) -> Result<(), OutOfBounds> {
        self.view().set(index, value)
    }

    /// Copies `values` into `start..start + values.len()`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range passes the end; nothing is written.
    pub fn write_from(&self, start: usize, values: &[T]) -> Result<(), OutOfBounds> {
        self.view().write_from(start, values)
    }

    /// Sets every element to `value`.
    pub fn fill(&self, value: T) {
        self.view().fill(value);
    }
}

#[allow(private_bounds)] // as for `Array`
impl<T: Pod, A: Access> Value<T, A>
where
    Value<T, A>: Elements<T>,
{
    /// A copy of the value.
    #[must_use]
    pub fn get(&self) -> T {
        // Index 0 of a one-element view always exists.
        self.elements().get(0).unwrap_or_else(T::zeroed)
    }
}

impl<T: Pod> Value<T> {
    /// Replaces the value.
    pub fn set(&self, value: T) {
        // Cannot fail: index 0 of a one-element view.
        let _ = self.view().set(0, value);
    }

    /// Copies the value out, lets `f` change it and stores it back. Not
    /// atomic as a whole: two processes updating at once may lose an
    /// update; use a [`Mutex`](crate::sync::Mutex) or the `lock=True`
    /// form for that.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut v = self.get();
        let r = f(&mut v);
        self.set(v);
        r
    }
}
