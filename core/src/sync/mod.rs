//! Cross-process locks and signals: Python `multiprocessing`'s Lock, RLock,
//! Semaphore, BoundedSemaphore, Event, Condition and Barrier as `#[repr(C)]`
//! objects that live inside shared memory.
//!
//! | type | Python | robust when a process dies? |
//! |---|---|---|
//! | [`Mutex`], [`RawMutex`] | `Lock` | yes: the next locker gets [`LockError::OwnerDied`] |
//! | [`ReentrantMutex`] | `RLock` | yes, as `Mutex` |
//! | [`RwLock`] | — | writer side yes; a dead *reader* leaks its count (see the module) |
//! | [`Semaphore`] | `Semaphore`, `BoundedSemaphore` | no: a permit held by a dead process is lost |
//! | [`Event`] | `Event` | nothing to lose: the flag stays as it was |
//! | [`Condvar`] | `Condition` | waits re-lock the mutex, which reports a dead owner |
//! | [`Barrier`] | `Barrier` | yes: a registered party that dies breaks it |
//!
//! Every object is valid when zero-filled (except the counts of
//! [`Semaphore`] and [`Barrier`], set by their `new`/`init`), holds only
//! atomics and `Pod` data, and validates every word it reads back: a corrupt
//! peer can make an operation fail or report nonsense, never make this
//! process panic or read out of bounds.
//!
//! Every blocking call comes in three forms: blocking, `try_` (never
//! sleeps) and `_timeout` (an absolute monotonic deadline computed once, so
//! a timeout is never early and never stretched by retries). Blocking calls
//! spin on loads for a [`Spin`](crate::wait::Spin) budget before they sleep
//! on a shared futex; each type has `with_spin` variants or a `spin`
//! parameter to tune it.
//!
//! # Owner ids
//! Lock words and barrier tables hold the owner's id
//! ([`crate::owner::thread_owner_id`]): a liveness token the kernel releases
//! when the thread or its process dies, or on the fallback path a tid
//! (see [`crate::owner`]). Under loom, every model thread gets its own id
//! from a counter here (the owner layer answers one constant there).
//!
//! # Peers that keep moving a word
//! Every retry loop here that a peer's writes can prolong (a lost
//! compare-and-swap, a futex wait that returns at once because the word
//! moved) counts its lost rounds (`Contention`): a `try_` call gives up
//! after [`TRY_ROUNDS`] of them with a `Contended` error; a timed or
//! blocking call yields the CPU between such rounds, sleeps a millisecond
//! per round once they pile up, and checks its deadline on every one. An
//! honest peer makes a round lose a handful of times at most (it must
//! take and release the lock, or enter and leave, between two of our
//! reads); only a peer rewriting the word in a loop reaches these bounds.

pub mod barrier;
pub mod condition;
pub mod condvar;
pub mod event;
mod inspect;
pub mod lock;
pub mod locked;
pub mod mutex;
pub mod reentrant;
pub mod rwlock;
pub mod semaphore;

pub use barrier::{Barrier, BarrierError, BarrierWaitResult, PartiesError, TrackedParty};
pub use condition::Condition;
pub use condvar::Condvar;
pub use event::Event;
pub use inspect::{MutexSnapshot, MutexState};
pub use lock::{Guard, LockError, LockTimeoutError, RawLock, TryLockError, UnlockError};
pub use locked::{LockedArray, LockedArrayGuard, LockedArrayRef};
pub use mutex::{Mutex, MutexGuard, RawMutex, RawMutexGuard};
pub use reentrant::{RawReentrantMutex, ReentrantMutex, ReentrantMutexGuard, ReentrantSnapshot};
pub use rwlock::{
    RawRwLock, ReadSide, RwLock, RwLockReadGuard, RwLockSnapshot, RwLockWriteGuard, WriteSide,
};
pub use semaphore::{AcquireError, Permit, ReleaseError, Semaphore};

use core::time::Duration;

use crate::primitive::AtomicU32;
use crate::wait::{self, Deadline};

/// How long a waiter sleeps at most before it checks whether the owner it
/// waits for is still alive. Detection of a dead owner therefore takes at
/// most this plus one liveness check (≈ tens of µs).
pub const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// The spin budget blocking calls use unless told otherwise:
/// [`Spin::DEFAULT`](crate::wait::Spin::DEFAULT), or none under loom (each
/// spin would be a model-checked yield).
pub const DEFAULT_SPIN: crate::wait::Spin = if cfg!(loom) {
    crate::wait::Spin::NONE
} else {
    crate::wait::Spin::DEFAULT
};

/// Under loom: a distinct id per model thread (the owner layer answers the
/// same constant for all of them).
#[cfg(loom)]
pub(crate) fn current_id() -> u32 {
    extern crate std;
    use core::sync::atomic::{AtomicU32 as StdU32, Ordering as StdOrdering};
    static NEXT: StdU32 = StdU32::new(2);
    loom::thread_local! {
        static ID: u32 = NEXT.fetch_add(1, StdOrdering::Relaxed) & crate::owner::ID_MASK;
    }
    ID.with(|id| *id)
}

/// The calling thread's `(owner id, tag)` (see `owner::thread_ident`):
/// what a lock's owner record holds. One thread-local read with `std`.
#[cfg(not(loom))]
#[inline]
pub(crate) fn ident() -> (u32, u32) {
    crate::owner::thread_ident()
}

/// Under loom: the model thread's id, no tag.
#[cfg(loom)]
pub(crate) fn ident() -> (u32, u32) {
    (current_id(), 0)
}

/// Whether the task `id` is dead. `Unknown` counts as alive: without a way
/// to tell, a lock must never be stolen.
///
/// Under loom and miri (which cannot emulate `kill` or `/proc`) every owner
/// counts as alive.
pub(crate) fn is_dead(id: u32) -> bool {
    #[cfg(any(loom, miri))]
    {
        let _ = id;
        false
    }
    #[cfg(not(any(loom, miri)))]
    {
        crate::owner::liveness(id) == crate::owner::Liveness::Dead
    }
}

/// The fallback path's reuse check: whether the *task id* `id` is alive
/// but started at another time than `recorded_start` (the id was reused:
/// the recorded task is dead). `recorded_start == 0` means "not recorded"
/// and answers false; so does a token (tokens are never reused while
/// held, and their tag is a tid, not a start time).
pub(crate) fn is_reused(id: u32, recorded_start: u32) -> bool {
    #[cfg(any(loom, miri))]
    {
        let _ = (id, recorded_start);
        false
    }
    #[cfg(not(any(loom, miri)))]
    {
        recorded_start != 0
            && !crate::owner::is_token(id)
            && crate::owner::start_time(id).is_some_and(|s| s as u32 != recorded_start)
    }
}

/// How many lost rounds a `try_` call accepts before it gives up with a
/// `Contended` error (module docs, "Peers that keep moving a word").
pub const TRY_ROUNDS: u32 = 64;

/// Lost rounds after which a blocking call yields the CPU on every
/// further one.
const YIELD_AFTER: u32 = 16;

/// Lost rounds after which a blocking call sleeps for [`BACKOFF_SLEEP`]
/// on every further one: far beyond what honest peers cause.
const SLEEP_AFTER: u32 = 1024;

/// See [`SLEEP_AFTER`].
const BACKOFF_SLEEP: Duration = Duration::from_millis(1);

/// Lost rounds after which a call without a deadline that must end gives
/// up (`Contention::exhausted`): about two seconds of 1 ms naps.
const GIVE_UP_AFTER: u32 = SLEEP_AFTER + 2048;

/// Counts the lost rounds of one call's retry loop and bounds them (module
/// docs, "Peers that keep moving a word").
#[derive(Debug, Default)]
pub(crate) struct Contention {
    lost: u32,
}

impl Contention {
    pub(crate) const fn new() -> Contention {
        Contention { lost: 0 }
    }

    /// One more lost round of a `try_` call: true once it must give up.
    #[inline]
    pub(crate) fn give_up(&mut self) -> bool {
        self.lost = self.lost.saturating_add(1);
        self.lost > TRY_ROUNDS
    }

    /// Whether a call that has no deadline but must end (an unlock-like
    /// call such as a semaphore release) has lost so many rounds, backing
    /// off between them, that only a peer rewriting the word explains it.
    pub(crate) fn exhausted(&self) -> bool {
        self.lost > GIVE_UP_AFTER
    }

    /// One more lost round of a blocking call: backs off (yield, or a
    /// short sleep once rounds pile up) and says whether `deadline` has
    /// passed (the caller then times out).
    #[cold]
    pub(crate) fn back_off(&mut self, deadline: Option<Deadline>) -> bool {
        self.lost = self.lost.saturating_add(1);
        if passed(deadline) {
            return true;
        }
        if self.lost > SLEEP_AFTER {
            let nap = AtomicU32::new(0);
            let until = Deadline::after(BACKOFF_SLEEP);
            wait::wait(&nap, 0, Some(deadline.map_or(until, |d| d.min(until))));
        } else if self.lost > YIELD_AFTER {
            crate::sys::yield_now();
        }
        passed(deadline)
    }
}

/// Sleeps on `word` while it holds `expected`, until the earlier of
/// `deadline` and `slice` from now. `slice: None` sleeps until the deadline.
/// Returns true if it slept until then; false if a wake-up, a moved word or
/// a signal cut it short — the rounds [`Contention`] counts (an honest
/// peer's wake-up mostly ends the wait; a peer moving the word and waking
/// its sleepers in a loop makes every round one of these).
#[inline]
pub(crate) fn park(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Deadline>,
    slice: Option<Duration>,
) -> bool {
    // loom has no clock: a sliced wait would never yield to the model.
    #[cfg(loom)]
    let slice: Option<Duration> = {
        let _ = slice;
        None
    };
    let until = match (deadline, slice) {
        (d, None) => d,
        (None, Some(s)) => Some(Deadline::after(s)),
        (Some(d), Some(s)) => Some(d.min(Deadline::after(s))),
    };
    // As `wait::wait`: without a clock a timed wait cannot sleep.
    match until.map(|d| d.instant()) {
        None => crate::sys::wait_timed_out(word, expected, None),
        Some(Some(at)) => crate::sys::wait_timed_out(word, expected, Some(at)),
        Some(None) => true,
    }
}

/// Whether an optional deadline has passed (`None`: never).
#[inline]
pub(crate) fn passed(deadline: Option<Deadline>) -> bool {
    deadline.is_some_and(|d| d.has_passed())
}

/// Each lock and signal fills a segment on its own: [`Object`] with no
/// parameters, the object itself as the recorded type, its size as the
/// payload. A zero-filled payload is a valid (unlocked, empty) object;
/// creators that want another initial value (a semaphore's permits, a
/// barrier's parties, a mutex's data) write it over the zeroes before the
/// segment is published.
///
/// [`Object`]: crate::object::Object
macro_rules! sync_object {
    ($kind:expr => $ty:ty $(, $gen:ident)?) => {
        // SAFETY: the view is `&Self` over `size_of::<Self>()` bytes aligned
        // to PAYLOAD_ALIGN (asserted below, and checked by `payload_len`).
        // `Self` is `#[repr(C)]`, made only of atomics and `Pod` data
        // accessed through atomic copies, so any bytes are a valid value
        // and every shared access is atomic; it is `Sync`. Its operations
        // validate every word they read back. `init` writes nothing (zero
        // is a valid state). The view writes (locks, counts), so it needs a
        // writable mapping, which posix hands out only read-write.
        unsafe impl$(<$gen: bytemuck::Pod>)? $crate::object::Object for $ty {
            const KIND: $crate::header::Kind = $kind;
            type Params = ();
            type View<'a> = &'a Self;
            type Element = Self;

            fn encode(_: &()) -> [u64; 2] {
                [0, 0]
            }

            fn decode(recorded: [u64; 2]) -> Result<(), $crate::object::LayoutError> {
                if recorded == [0, 0] {
                    Ok(())
                } else {
                    Err($crate::object::LayoutError::new(
                        "a lock or signal records no parameters",
                    ))
                }
            }

            fn payload_len(_: &()) -> Result<usize, $crate::object::LayoutError> {
                if core::mem::align_of::<Self>() > $crate::header::PAYLOAD_ALIGN {
                    return Err($crate::object::LayoutError::new(
                        "the object type is aligned beyond the 128-byte payload alignment",
                    ));
                }
                Ok(core::mem::size_of::<Self>())
            }

            unsafe fn init(_payload: core::ptr::NonNull<u8>, _: &()) {}

            unsafe fn attach<'a>(payload: core::ptr::NonNull<u8>, _: &()) -> &'a Self {
                // SAFETY: the caller guarantees `size_of::<Self>()` mapped,
                // writable bytes aligned to PAYLOAD_ALIGN for 'a; every bit
                // pattern is a valid `Self` (atomics and Pod data).
                unsafe { payload.cast::<Self>().as_ref() }
            }
        }
    };
}

sync_object!(crate::header::Kind::MUTEX => RawMutex);
sync_object!(crate::header::Kind::MUTEX => Mutex<T>, T);
sync_object!(crate::header::Kind::REENTRANT_MUTEX => ReentrantMutex<T>, T);
sync_object!(crate::header::Kind::RWLOCK => RwLock<T>, T);
sync_object!(crate::header::Kind::SEMAPHORE => Semaphore);
sync_object!(crate::header::Kind::EVENT => Event);
sync_object!(crate::header::Kind::CONDVAR => Condvar);
sync_object!(crate::header::Kind::CONDITION => Condition<T>, T);

/// `Semaphore(n)`: an unbounded semaphore with `n` permits, so that handles
/// can be created from a plain count.
impl From<u32> for Semaphore {
    fn from(permits: u32) -> Semaphore {
        Semaphore::new(permits)
    }
}

// SAFETY: as for `sync_object!`, with the party count as the parameter:
// `payload_len` accepts only 1..=MAX_PARTIES (Python's `Barrier(0)` is a
// `ValueError`), and `init` writes the barrier of that many parties into
// the zeroed payload, which it owns exclusively.
unsafe impl crate::object::Object for Barrier {
    const KIND: crate::header::Kind = crate::header::Kind::BARRIER;
    /// The number of parties.
    type Params = u32;
    type View<'a> = &'a Barrier;
    type Element = Barrier;

    fn encode(parties: &u32) -> [u64; 2] {
        [u64::from(*parties), 0]
    }

    fn decode(recorded: [u64; 2]) -> Result<u32, crate::object::LayoutError> {
        match (u32::try_from(recorded[0]), recorded[1]) {
            (Ok(parties), 0) if (1..=barrier::MAX_PARTIES).contains(&parties) => Ok(parties),
            _ => Err(crate::object::LayoutError::new(
                "the recorded party count is not 1 to 65535",
            )),
        }
    }

    fn payload_len(parties: &u32) -> Result<usize, crate::object::LayoutError> {
        if !(1..=barrier::MAX_PARTIES).contains(parties) {
            return Err(crate::object::LayoutError::new(
                "a barrier needs 1 to 65535 parties (Python's Barrier(0) raises ValueError too)",
            ));
        }
        Ok(core::mem::size_of::<Barrier>())
    }

    unsafe fn init(payload: core::ptr::NonNull<u8>, parties: &u32) {
        if let Ok(b) = Barrier::new(*parties) {
            // SAFETY: the caller hands us `size_of::<Barrier>()` zeroed,
            // writable bytes aligned to PAYLOAD_ALIGN, owned exclusively;
            // Barrier has no drop glue to skip.
            unsafe { payload.cast::<Barrier>().as_ptr().write(b) };
        }
    }

    unsafe fn attach<'a>(payload: core::ptr::NonNull<u8>, _: &u32) -> &'a Barrier {
        // SAFETY: as in `sync_object!`.
        unsafe { payload.cast::<Barrier>().as_ref() }
    }
}
