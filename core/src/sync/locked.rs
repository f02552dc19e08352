//! [`LockedArray<T>`]: Python's `Array(t, n, lock=True)` — an array whose
//! elements are reachable only through the guard of the robust mutex in
//! front of it. (`Value(t, v, lock=True)` is a [`Mutex<T>`](super::Mutex).)
//!
//! # Layout
//! | offset | content |
//! |---|---|
//! | 0 | [`RawMutex`] (16 bytes) |
//! | 16, rounded up to `align_of::<T>()` | `len` elements of `T` |
//!
//! Even under the lock, elements are copied in and out with relaxed
//! atomics ([`SharedSlice`]): a peer that ignores the lock (or writes
//! garbage) can tear values, never cause undefined behaviour here. A
//! holder that dies poisons the lock (see [`super::lock`]).
//!
//! ```
//! use core::ptr::NonNull;
//! use shmkit_core::object::Object;
//! use shmkit_core::sync::LockedArray;
//!
//! #[repr(C, align(128))]
//! struct Memory([u8; 128]);
//! let mut mem = Memory([0; 128]);
//! let payload = NonNull::new(mem.0.as_mut_ptr()).unwrap();
//! let len = 4;
//! assert!(LockedArray::<u32>::payload_len(&len)? <= 128);
//! // SAFETY: `mem` holds enough zeroed, aligned bytes, used by nobody else.
//! let array = unsafe {
//!     LockedArray::<u32>::init(payload, &len);
//!     LockedArray::<u32>::attach(payload, &len)
//! };
//! let g = array.lock()?;
//! g.set(2, 7)?;
//! assert_eq!(g.get(2), Some(7));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::lock::{Failure, Guard, LockError, LockTimeoutError, Poisoned, TryLockError};
use super::mutex::{Block, RawMutex};
use super::DEFAULT_SPIN;
use crate::header::{Kind, PAYLOAD_ALIGN};
use crate::object::{LayoutError, Object};
use crate::shared::SharedSlice;
use crate::wait::Spin;

/// An array of `T` behind a robust mutex, as the payload of a segment
/// (kind `locked_array`). Never constructed: it names the [`Object`]; its
/// view is a [`LockedArrayRef`].
#[derive(Debug)]
pub enum LockedArray<T> {
    #[doc(hidden)]
    _Never(core::convert::Infallible, PhantomData<fn() -> T>),
}

/// Holds a locked array's lock; dereferences to its elements.
pub type LockedArrayGuard<'a, T> = Guard<'a, RawMutex, SharedSlice<'a, T>>;

/// A locked array in memory: lock it to reach the elements.
pub struct LockedArrayRef<'a, T> {
    raw: &'a RawMutex,
    data: SharedSlice<'a, T>,
}

impl<T> Clone for LockedArrayRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for LockedArrayRef<'_, T> {}

impl<T: Pod> core::fmt::Debug for LockedArrayRef<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LockedArrayRef")
            .field("raw", self.raw)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Where the elements start, for element type `T`.
fn data_offset<T>() -> usize {
    data_offset_for(align_of::<T>())
}

/// Where the elements start, for elements aligned to `align` (a power of
/// two): the layout fact `shmkit inspect` reads, said here once.
#[must_use]
pub fn data_offset_for(align: usize) -> usize {
    size_of::<RawMutex>().next_multiple_of(align.max(1))
}

impl<'a, T: Pod> LockedArrayRef<'a, T> {
    fn guard(
        &self,
        block: Block,
        spin: Spin,
        poisoned: Poisoned,
    ) -> Result<LockedArrayGuard<'a, T>, Failure> {
        self.raw.guard(self.data, block, spin, poisoned)
    }

    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Never true: an array holds at least one element.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Locks, sleeping as long as needed.
    ///
    /// # Errors
    /// As [`RawMutex::lock`].
    pub fn lock(&self) -> Result<LockedArrayGuard<'a, T>, LockError> {
        self.guard(Block::Until(None), DEFAULT_SPIN, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks if that needs no waiting.
    ///
    /// # Errors
    /// As [`RawMutex::try_lock`].
    pub fn try_lock(&self) -> Result<LockedArrayGuard<'a, T>, TryLockError> {
        self.guard(Block::Try, Spin::NONE, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`RawMutex::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockedArrayGuard<'a, T>, LockTimeoutError> {
        self.guard(Block::timeout(timeout), DEFAULT_SPIN, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Locks even if a holder died, to repair (see [`RawMutex::recover`]).
    ///
    /// # Errors
    /// As [`RawMutex::recover`].
    pub fn recover(&self) -> Result<LockedArrayGuard<'a, T>, LockError> {
        self.guard(Block::Until(None), DEFAULT_SPIN, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover) if that needs no waiting.
    ///
    /// # Errors
    /// As [`RawMutex::try_recover`].
    pub fn try_recover(&self) -> Result<LockedArrayGuard<'a, T>, TryLockError> {
        self.guard(Block::Try, Spin::NONE, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`RawMutex::recover_timeout`].
    pub fn recover_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockedArrayGuard<'a, T>, LockTimeoutError> {
        self.guard(Block::timeout(timeout), DEFAULT_SPIN, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// The lock (diagnostics).
    #[must_use]
    pub fn raw(&self) -> &'a RawMutex {
        self.raw
    }
}

// SAFETY: the view is a `&RawMutex` at offset 0 (atomics only, valid for
// any bytes) and a `SharedSlice` of exactly `len` elements at
// `data_offset`, together `payload_len` bytes; elements are only copied
// atomically, and no value read from the payload indexes anything. The
// alignment of both parts is at most PAYLOAD_ALIGN (checked). `init`
// writes nothing (zero is an unlocked mutex and zeroed elements).
unsafe impl<T: Pod> Object for LockedArray<T> {
    const KIND: Kind = Kind::LOCKED_ARRAY;
    type Params = usize;
    type View<'a> = LockedArrayRef<'a, T>;
    type Element = T;

    fn encode(len: &usize) -> [u64; 2] {
        [*len as u64, 0]
    }

    fn decode(recorded: [u64; 2]) -> Result<usize, LayoutError> {
        if recorded[1] != 0 {
            return Err(LayoutError::new(
                "a locked array records no second parameter",
            ));
        }
        usize::try_from(recorded[0])
            .map_err(|_| LayoutError::new("the recorded array length does not fit in memory"))
    }

    fn payload_len(len: &usize) -> Result<usize, LayoutError> {
        if *len == 0 {
            return Err(LayoutError::new(
                "an array needs at least one element (Python refuses Array(t, 0) too)",
            ));
        }
        if align_of::<T>() > PAYLOAD_ALIGN {
            return Err(LayoutError::new(
                "the element type is aligned beyond the 128-byte payload alignment",
            ));
        }
        len.checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(data_offset::<T>()))
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or(LayoutError::new(
                "array length times element size does not fit in memory",
            ))
    }

    unsafe fn init(_payload: NonNull<u8>, _len: &usize) {}

    unsafe fn attach<'a>(payload: NonNull<u8>, len: &usize) -> LockedArrayRef<'a, T> {
        // SAFETY: the caller guarantees `payload_len(len)` bytes at
        // `payload`, aligned to PAYLOAD_ALIGN (>= the mutex's and T's
        // alignment), mapped writable for 'a: the mutex at 0, `len` Ts at
        // `data_offset` (itself a multiple of align_of::<T>()).
        unsafe {
            LockedArrayRef {
                raw: payload.cast::<RawMutex>().as_ref(),
                data: SharedSlice::from_raw(payload.add(data_offset::<T>()).cast(), *len),
            }
        }
    }
}
