//! Element-wise access to `Pod` data that several processes read and write
//! at once: the sound core of `SharedArray` / `SharedValue`.
//!
//! Handing out `&[T]` or `&mut [T]` into memory other processes write is
//! undefined behaviour (the compiler may assume the bytes do not change).
//! [`SharedSlice`] never does: it copies elements in and out with
//! **relaxed atomic loads and stores** of the widest width the element's
//! alignment allows (8, 4, 2 or 1 bytes). Concurrent writers to the same
//! element may therefore produce a *torn* value (half of one write, half of
//! another) — which is still a valid `T`, since `T: Pod` — but never a data
//! race. For whole-element atomicity, guard the array with a shmkit mutex
//! (`lock=True` in Python's terms).
//!
//! ```
//! use shmkit_core::shared::SharedSlice;
//!
//! let mut backing = [0u64; 4];
//! // SAFETY: `backing` outlives `s` and is only accessed through `s`.
//! let s = unsafe { SharedSlice::from_raw(core::ptr::NonNull::from(&mut backing).cast(), 4) };
//! s.set(2, 42).unwrap();
//! assert_eq!(s.get(2), Some(42));
//! assert_eq!(s.get(4), None);
//! ```

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of, MaybeUninit};
use core::ptr::NonNull;
// Not the loom shim: these copies are not part of any modelled protocol,
// and must compile to plain loads and stores.
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};

use bytemuck::Pod;

use crate::header::{Fingerprint, Kind, PAYLOAD_ALIGN};
use crate::object::{LayoutError, Object};

/// An index past the end of a [`SharedSlice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    /// The index (or range end) asked for.
    pub index: usize,
    /// The slice length.
    pub len: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index {} is out of bounds for a shared array of length {}",
            self.index, self.len
        )
    }
}

impl core::error::Error for OutOfBounds {}

/// A view of `len` elements of `T` in shared memory, read and written one
/// element at a time with relaxed atomics.
pub struct SharedSlice<'a, T> {
    ptr: NonNull<T>,
    len: usize,
    _memory: PhantomData<&'a [core::cell::UnsafeCell<T>]>,
}

// SAFETY: every access goes through atomic loads/stores; `T: Pod` has no
// drop glue or interior pointers, so sharing or sending the view is sound.
unsafe impl<T: Pod> Send for SharedSlice<'_, T> {}
// SAFETY: as for Send.
unsafe impl<T: Pod> Sync for SharedSlice<'_, T> {}

impl<T> Clone for SharedSlice<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedSlice<'_, T> {}

impl<T: Pod> fmt::Debug for SharedSlice<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSlice")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> SharedSlice<'a, T> {
    /// A view of `len` elements at `ptr`.
    ///
    /// # Safety
    /// - `ptr` is aligned for `T` and `len * size_of::<T>()` bytes from it
    ///   stay mapped (readable; writable if [`set`](Self::set) or
    ///   [`write_from`](Self::write_from) are called) for `'a`;
    /// - nothing accesses those bytes for `'a` except through atomic
    ///   operations (other `SharedSlice`s, other processes).
    #[must_use]
    pub unsafe fn from_raw(ptr: NonNull<T>, len: usize) -> SharedSlice<'a, T> {
        SharedSlice {
            ptr,
            len,
            _memory: PhantomData,
        }
    }

    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of element `index`, or `None` past the end.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: index < len, so the element is inside the mapping
        // (`from_raw` contract); `out` is a private, aligned T.
        unsafe {
            copy_atomic(
                self.ptr.as_ptr().add(index).cast::<u8>().cast_const(),
                out.as_mut_ptr().cast::<u8>(),
                size_of::<T>(),
                align_of::<T>(),
                Direction::Load,
            );
            // Every byte was written, and any bytes are a valid `T: Pod`.
            Some(out.assume_init())
        }
    }

    /// Stores `value` at `index`.
    ///
    /// # Errors
    /// [`OutOfBounds`] past the end; nothing is written.
    pub fn set(&self, index: usize, value: T) -> Result<(), OutOfBounds> {
        if index >= self.len {
            return Err(OutOfBounds {
                index,
                len: self.len,
            });
        }
        // SAFETY: bounds checked above; the mapping is writable per the
        // `from_raw` contract for views that `set`.
        unsafe {
            copy_atomic(
                (&value as *const T).cast::<u8>(),
                self.ptr.as_ptr().add(index).cast::<u8>(),
                size_of::<T>(),
                align_of::<T>(),
                Direction::Store,
            );
        }
        Ok(())
    }

    /// Copies elements `start..start + out.len()` into `out`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range passes the end; `out` is untouched.
    pub fn read_into(&self, start: usize, out: &mut [T]) -> Result<(), OutOfBounds> {
        let end = self.range_end(start, out.len())?;
        // SAFETY: start..end is inside the slice; `out` is a private slice
        // of exactly end - start elements.
        unsafe {
            copy_atomic(
                self.ptr.as_ptr().add(start).cast::<u8>().cast_const(),
                out.as_mut_ptr().cast::<u8>(),
                (end - start) * size_of::<T>(),
                align_of::<T>(),
                Direction::Load,
            );
        }
        Ok(())
    }

    /// Copies `values` into elements `start..start + values.len()`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range passes the end; nothing is written.
    pub fn write_from(&self, start: usize, values: &[T]) -> Result<(), OutOfBounds> {
        let end = self.range_end(start, values.len())?;
        // SAFETY: start..end is inside the slice (writable per contract);
        // `values` is a private slice of exactly end - start elements.
        unsafe {
            copy_atomic(
                values.as_ptr().cast::<u8>(),
                self.ptr.as_ptr().add(start).cast::<u8>(),
                (end - start) * size_of::<T>(),
                align_of::<T>(),
                Direction::Store,
            );
        }
        Ok(())
    }

    /// Sets every element to `value`.
    pub fn fill(&self, value: T) {
        for i in 0..self.len {
            // Cannot fail: i < len.
            let _ = self.set(i, value);
        }
    }

    fn range_end(&self, start: usize, count: usize) -> Result<usize, OutOfBounds> {
        match start.checked_add(count) {
            Some(end) if end <= self.len => Ok(end),
            _ => Err(OutOfBounds {
                index: start.saturating_add(count),
                len: self.len,
            }),
        }
    }
}

/// An array of `len` elements of `T` as the payload of a segment (kind
/// `array`): Python's `multiprocessing.Array`. Its view is a
/// [`SharedSlice`]. Never constructed: it names the [`Object`].
///
/// A length of zero is refused, as Python's `Array('i', 0)` would be useless
/// and a zero-length payload would make every access an error.
#[derive(Debug)]
pub enum Array<T> {
    #[doc(hidden)]
    _Never(core::convert::Infallible, PhantomData<fn() -> T>),
}

/// One `T` as the payload of a segment (kind `value`): Python's
/// `multiprocessing.Value`. Its view is a one-element [`SharedSlice`].
/// Never constructed: it names the [`Object`].
#[derive(Debug)]
pub enum Value<T> {
    #[doc(hidden)]
    _Never(core::convert::Infallible, PhantomData<fn() -> T>),
}

/// The payload length of `len` elements of `T`, checked.
fn elements_len<T>(len: usize) -> Result<usize, LayoutError> {
    if len == 0 {
        return Err(LayoutError::new(
            "an array needs at least one element (Python refuses Array(t, 0) too)",
        ));
    }
    if align_of::<T>() > PAYLOAD_ALIGN {
        return Err(LayoutError::new(
            "the element type is aligned beyond the 128-byte payload alignment",
        ));
    }
    match len.checked_mul(size_of::<T>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(bytes),
        _ => Err(LayoutError::new(
            "array length times element size does not fit in memory",
        )),
    }
}

// SAFETY: the view is a `SharedSlice` of exactly `len` elements, which is
// `payload_len` bytes; it copies elements with atomic accesses only and
// indexes nothing with a value read from the payload. `T: Pod` is aligned
// to at most PAYLOAD_ALIGN (checked by `payload_len`). `init` writes
// nothing (zero is every element's initial value). Reading through the
// view never writes, so a read-only mapping is fine as long as the setters
// are not called (posix hands read-only mappings out without them).
unsafe impl<T: Pod> Object for Array<T> {
    const KIND: Kind = Kind::ARRAY;
    type Params = usize;
    type View<'a> = SharedSlice<'a, T>;

    fn fingerprint(len: &usize) -> Fingerprint {
        Fingerprint::of::<T>([*len as u64, 0])
    }

    fn type_name() -> &'static str {
        core::any::type_name::<T>()
    }

    fn params_from(fingerprint: &Fingerprint) -> Result<usize, LayoutError> {
        if fingerprint.params[1] != 0 {
            return Err(LayoutError::new("an array records no second parameter"));
        }
        usize::try_from(fingerprint.params[0])
            .map_err(|_| LayoutError::new("the recorded array length does not fit in memory"))
    }

    fn payload_len(len: &usize) -> Result<usize, LayoutError> {
        elements_len::<T>(*len)
    }

    unsafe fn init(_payload: NonNull<u8>, _len: &usize) {}

    unsafe fn attach<'a>(payload: NonNull<u8>, len: &usize) -> SharedSlice<'a, T> {
        // SAFETY: the caller guarantees `payload_len(len)` = `len *
        // size_of::<T>()` bytes, aligned to PAYLOAD_ALIGN >= align_of::<T>(),
        // mapped for 'a and only accessed atomically.
        unsafe { SharedSlice::from_raw(payload.cast(), *len) }
    }
}

// SAFETY: as for `Array<T>` with a length of one.
unsafe impl<T: Pod> Object for Value<T> {
    const KIND: Kind = Kind::VALUE;
    type Params = ();
    type View<'a> = SharedSlice<'a, T>;

    fn fingerprint(_: &()) -> Fingerprint {
        Fingerprint::of::<T>([1, 0])
    }

    fn type_name() -> &'static str {
        core::any::type_name::<T>()
    }

    fn params_from(fingerprint: &Fingerprint) -> Result<(), LayoutError> {
        if fingerprint.params != [1, 0] {
            return Err(LayoutError::new(
                "a value segment must hold exactly one element",
            ));
        }
        Ok(())
    }

    fn payload_len(_: &()) -> Result<usize, LayoutError> {
        elements_len::<T>(1)
    }

    unsafe fn init(_payload: NonNull<u8>, _: &()) {}

    unsafe fn attach<'a>(payload: NonNull<u8>, _: &()) -> SharedSlice<'a, T> {
        // SAFETY: as for `Array<T>::attach` with one element.
        unsafe { SharedSlice::from_raw(payload.cast(), 1) }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    /// `src` is shared (atomic loads), `dst` private.
    Load,
    /// `src` is private, `dst` shared (atomic stores).
    Store,
}

/// Copies `len` bytes between shared and private memory in chunks of
/// `min(align, 8)` bytes, each chunk one relaxed atomic access on the shared
/// side.
///
/// # Safety
/// Both ranges are valid for `len` bytes, aligned to `align`, and do not
/// overlap; `len` is a multiple of `align` (true of every Rust type size).
#[inline]
unsafe fn copy_atomic(src: *const u8, dst: *mut u8, len: usize, align: usize, dir: Direction) {
    macro_rules! chunks {
        ($atomic:ty, $int:ty) => {{
            let w = size_of::<$int>();
            let mut i = 0;
            while i + w <= len {
                // SAFETY: `i + w <= len` keeps the access in range; both
                // sides are aligned to `align >= w`. The shared side is only
                // touched atomically; `from_ptr` requires that no non-atomic
                // access races with it, which the callers' contracts ensure.
                unsafe {
                    match dir {
                        Direction::Load => {
                            let v = <$atomic>::from_ptr(src.add(i).cast_mut().cast::<$int>())
                                .load(Ordering::Relaxed);
                            dst.add(i).cast::<$int>().write(v);
                        }
                        Direction::Store => {
                            let v = src.add(i).cast::<$int>().read();
                            <$atomic>::from_ptr(dst.add(i).cast::<$int>())
                                .store(v, Ordering::Relaxed);
                        }
                    }
                }
                i += w;
            }
        }};
    }
    #[cfg(target_has_atomic = "64")]
    if align >= 8 {
        chunks!(core::sync::atomic::AtomicU64, u64);
        return;
    }
    if align >= 4 {
        chunks!(AtomicU32, u32);
    } else if align == 2 {
        chunks!(AtomicU16, u16);
    } else {
        chunks!(AtomicU8, u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Rgb {
        r: u8,
        g: u8,
        b: u8,
    }

    #[test]
    fn every_alignment_round_trips() {
        let mut a = [0u8; 3];
        // SAFETY: a buffer private to this test, aligned and live for the call.
        let s = unsafe { SharedSlice::<u8>::from_raw(NonNull::from(&mut a).cast(), 3) };
        s.set(1, 9).unwrap();
        assert_eq!(s.get(1), Some(9));

        let mut c = [Rgb { r: 0, g: 0, b: 0 }; 2];
        // SAFETY: a buffer private to this test, aligned and live for the call.
        let s = unsafe { SharedSlice::<Rgb>::from_raw(NonNull::from(&mut c).cast(), 2) };
        s.set(1, Rgb { r: 1, g: 2, b: 3 }).unwrap();
        assert_eq!(s.get(1), Some(Rgb { r: 1, g: 2, b: 3 }));

        let mut f = [0f64; 8];
        // SAFETY: a buffer private to this test, aligned and live for the call.
        let s = unsafe { SharedSlice::<f64>::from_raw(NonNull::from(&mut f).cast(), 8) };
        s.write_from(2, &[1.5, 2.5, 3.5]).unwrap();
        let mut out = [0.0; 4];
        s.read_into(1, &mut out).unwrap();
        assert_eq!(out, [0.0, 1.5, 2.5, 3.5]);
        assert_eq!(
            s.write_from(7, &[1.0, 2.0]),
            Err(OutOfBounds { index: 9, len: 8 })
        );
        assert_eq!(
            s.read_into(usize::MAX, &mut out),
            Err(OutOfBounds {
                index: usize::MAX,
                len: 8
            })
        );
        assert_eq!(s.set(8, 1.0), Err(OutOfBounds { index: 8, len: 8 }));
        s.fill(7.0);
        assert!((0..8).all(|i| s.get(i) == Some(7.0)));
    }
}
