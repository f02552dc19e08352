//! Locks and signals, each in its own segment: Python's `multiprocessing`
//! `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`,
//! `Barrier`, and `Value`/`Array` with `lock=True` — shared by name, across
//! `fork`, or by memfd descriptor. This module also holds every guard and
//! error type they return: one `sync` module for everything lock-shaped.
//!
//! Each handle is a [`Shared`] over the core object of the same name in
//! [`shmkit_core::sync`] and dereferences to it, so the core type's
//! methods (`lock`, `try_lock`, `lock_timeout`, `recover`, `acquire`,
//! `wait`, ...) are called on the handle directly. Handles are `Clone` (one
//! mapping), `Send` and `Sync`.
//!
//! | Python | shmkit | created from |
//! |---|---|---|
//! | `Lock()` | [`Lock`] | `()`, or [`Lock::new`] |
//! | `RLock()` | [`RLock`] | `()` |
//! | `Value(t, v, lock=True)` | [`Mutex<T>`] | the initial `T` |
//! | `Array(t, n, lock=True)` | [`LockedArray<T>`] | a length or the values |
//! | `Semaphore(n)` | [`Semaphore`] | `n` |
//! | `BoundedSemaphore(n)` | [`Semaphore`] | `core::sync::Semaphore::bounded(n)` |
//! | `Event()` | [`Event`] | `()`, or [`Event::new`] |
//! | `Condition()` | [`Condition<T>`] (its lock and the data it guards) | the initial `T` |
//! | `Barrier(n)` | [`Barrier`] | `n` (1 to 65535) |
//!
//! Every lock's common path composes with `?` ([`LockError`] carries no
//! guard); a holder's death poisons the lock until a `recover` guard
//! repairs the data (see [`shmkit_core::sync::lock`]).
//!
//! ```
//! use shmkit_posix::sync::Mutex;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let name = format!("/shmkit-doc-sync-{}", std::process::id());
//! let a = Mutex::<u64>::create(&name, 0)?;
//! let b = Mutex::<u64>::open(&name)?; // another process, usually
//! a.lock()?.set(41);
//! b.lock()?.update(|v| *v += 1);
//! assert_eq!(a.lock()?.get(), 42);
//! # Ok(())
//! # }
//! ```

use std::ops::Deref;
use std::ptr::NonNull;

use bytemuck::Pod;
use shmkit_core::sync as core_sync;

use crate::array::ArrayInit;
use crate::handle::{Create, IntoInit, Shared};

pub use core_sync::{
    AcquireError, BarrierError, BarrierWaitResult, Guard, LockError, LockTimeoutError,
    LockedArrayGuard, MutexGuard, PartiesError, Permit, RawMutexGuard, ReentrantMutexGuard,
    ReleaseError, RwLockReadGuard, RwLockWriteGuard, TryLockError, UnlockError,
};

/// A robust lock without data: Python's `Lock`.
pub type Lock = Shared<core_sync::RawMutex>;
/// A robust mutex holding a `T`: Python's `Value(t, v, lock=True)` used
/// through its lock, or a `Lock` with the data it guards.
pub type Mutex<T> = Shared<core_sync::Mutex<T>>;
/// A reentrant robust lock without data: Python's `RLock`.
pub type RLock = Shared<core_sync::ReentrantMutex<()>>;
/// A reentrant robust mutex holding a `T`.
pub type ReentrantMutex<T> = Shared<core_sync::ReentrantMutex<T>>;
/// A readers/writer lock holding a `T` (no Python counterpart).
pub type RwLock<T> = Shared<core_sync::RwLock<T>>;
/// A semaphore, bounded or not: Python's `Semaphore`/`BoundedSemaphore`.
pub type Semaphore = Shared<core_sync::Semaphore>;
/// A manual-reset event: Python's `Event`.
pub type Event = Shared<core_sync::Event>;
/// A bare condition variable, to pair with any shmkit lock (prefer
/// [`Condition`], which owns its lock as Python's does).
pub type Condvar = Shared<core_sync::Condvar>;
/// Python's `Condition`: a mutex around a `T` and its condition variable
/// in one segment.
pub type Condition<T> = Shared<core_sync::Condition<T>>;
/// A barrier: Python's `Barrier`.
pub type Barrier = Shared<core_sync::Barrier>;
/// An array behind a robust lock: Python's `Array(t, n, lock=True)`.
pub type LockedArray<T> = Shared<core_sync::LockedArray<T>>;

/// Every lock and signal is created from a value of the core object
/// (`core::sync::Semaphore::bounded(3)`, `core::sync::Mutex::new(5)`),
/// written over the zeroed payload, or from the plain values a Python user
/// would pass (see `init_from!`).
macro_rules! create_in_place {
    ($($ty:ty $(, $gen:ident)?;)+) => {$(
        impl$(<$gen: Pod>)? Create for $ty {
            type Init = $ty;

            fn params(_: &$ty) {}

            unsafe fn write_init(payload: NonNull<u8>, _: &(), value: $ty) {
                // SAFETY: the caller hands us the fresh payload of
                // `size_of::<Self>()` writable bytes aligned to
                // PAYLOAD_ALIGN >= align_of::<Self>(), not yet visible to
                // anyone; `Self` has no drop glue to skip on the zeroes it
                // overwrites.
                unsafe { payload.cast::<$ty>().as_ptr().write(value) };
            }
        }

        impl$(<$gen: Pod>)? IntoInit<$ty> for $ty {
            fn into_init(self) -> $ty {
                self
            }
        }

        impl$(<$gen: Pod>)? Deref for Shared<$ty> {
            type Target = $ty;

            fn deref(&self) -> &$ty {
                self.view()
            }
        }
    )+};
}

create_in_place! {
    core_sync::RawMutex;
    core_sync::Mutex<T>, T;
    core_sync::ReentrantMutex<T>, T;
    core_sync::RwLock<T>, T;
    core_sync::Semaphore;
    core_sync::Event;
    core_sync::Condvar;
    core_sync::Condition<T>, T;
}

/// The plain values a Python user passes: `()` for `Lock()`, `Event()`;
/// the initial data of a data-carrying lock; `n` for `Semaphore(n)`.
macro_rules! init_from {
    ($($from:ty => $ty:ty $(, $gen:ident)?: |$v:ident| $make:expr;)+) => {$(
        impl$(<$gen: Pod>)? IntoInit<$ty> for $from {
            fn into_init(self) -> $ty {
                let $v = self;
                $make
            }
        }
    )+};
}

init_from! {
    () => core_sync::RawMutex: |_v| core_sync::RawMutex::new();
    T => core_sync::Mutex<T>, T: |v| core_sync::Mutex::new(v);
    T => core_sync::ReentrantMutex<T>, T: |v| core_sync::ReentrantMutex::new(v);
    T => core_sync::RwLock<T>, T: |v| core_sync::RwLock::new(v);
    T => core_sync::Condition<T>, T: |v| core_sync::Condition::new(v);
    u32 => core_sync::Semaphore: |v| core_sync::Semaphore::new(v);
    () => core_sync::Event: |_v| core_sync::Event::new();
    () => core_sync::Condvar: |_v| core_sync::Condvar::new();
}

/// `Barrier(n)`: the party count is the barrier's recorded parameter, so
/// `Barrier::create(name, 0)` fails at once with a clear error.
impl Create for core_sync::Barrier {
    type Init = u32;

    fn params(parties: &u32) -> u32 {
        *parties
    }

    unsafe fn write_init(_payload: NonNull<u8>, _parties: &u32, _: u32) {
        // `Object::init` wrote the barrier of `parties` parties.
    }
}

impl IntoInit<core_sync::Barrier> for u32 {
    fn into_init(self) -> u32 {
        self
    }
}

impl Deref for Shared<core_sync::Barrier> {
    type Target = core_sync::Barrier;

    fn deref(&self) -> &core_sync::Barrier {
        self.view()
    }
}

/// `Array(t, n, lock=True)`: a length, or the initial values.
impl<T: Pod> Create for core_sync::LockedArray<T> {
    type Init = ArrayInit<T>;

    fn params(init: &ArrayInit<T>) -> usize {
        init.len()
    }

    unsafe fn write_init(payload: NonNull<u8>, len: &usize, init: ArrayInit<T>) {
        if let ArrayInit::Values(values) = init {
            // SAFETY: forwarded from the caller: the fresh payload of a
            // locked array of `len` = `values.len()` elements, nobody else
            // attached yet (so the lock is free and ours to take).
            let view = unsafe { <Self as shmkit_core::object::Object>::attach(payload, len) };
            if let Ok(g) = view.lock() {
                // Cannot fail: the lengths are equal.
                let _ = g.write_from(0, &values);
            }
        }
    }
}

impl<T: Pod, I: IntoInit<shmkit_core::shared::Array<T>>> IntoInit<core_sync::LockedArray<T>> for I {
    fn into_init(self) -> ArrayInit<T> {
        self.into_init()
    }
}

impl<T: Pod> LockedArray<T> {
    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        *self.params()
    }

    /// Never true: an array holds at least one element.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The lock in front of the elements: Python's `arr.get_lock()` (its
    /// guard, from [`lock`](Self::lock), is `arr.get_obj()`).
    ///
    /// ```
    /// use shmkit_posix::LockedArray;
    /// let arr = LockedArray::<i32>::anonymous(vec![1, 2, 3])?;
    /// let g = arr.lock()?;
    /// assert!(arr.raw().is_held_by_current_thread());
    /// assert_eq!(g.get(2), Some(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn raw(&self) -> &core_sync::RawMutex {
        self.view().raw()
    }

    /// Locks, sleeping as long as needed.
    ///
    /// # Errors
    /// As [`core_sync::RawMutex::lock`].
    pub fn lock(&self) -> Result<LockedArrayGuard<'_, T>, LockError> {
        self.view().lock()
    }

    /// Locks if that needs no waiting.
    ///
    /// # Errors
    /// As [`core_sync::RawMutex::try_lock`].
    pub fn try_lock(&self) -> Result<LockedArrayGuard<'_, T>, TryLockError> {
        self.view().try_lock()
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`core_sync::RawMutex::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<LockedArrayGuard<'_, T>, LockTimeoutError> {
        self.view().lock_timeout(timeout)
    }

    /// Locks even if a holder died, to repair the elements (see
    /// [`core_sync::RawMutex::recover`]).
    ///
    /// # Errors
    /// As [`core_sync::RawMutex::recover`].
    pub fn recover(&self) -> Result<LockedArrayGuard<'_, T>, LockError> {
        self.view().recover()
    }

    /// [`recover`](Self::recover) if that needs no waiting.
    ///
    /// # Errors
    /// As [`core_sync::RawMutex::try_recover`].
    pub fn try_recover(&self) -> Result<LockedArrayGuard<'_, T>, TryLockError> {
        self.view().try_recover()
    }

    /// [`recover`](Self::recover), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`core_sync::RawMutex::recover_timeout`].
    pub fn recover_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<LockedArrayGuard<'_, T>, LockTimeoutError> {
        self.view().recover_timeout(timeout)
    }
}
