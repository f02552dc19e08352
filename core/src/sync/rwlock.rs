//! [`RwLock`]: many readers or one writer, writer-preferring, with a robust
//! writer side.
//!
//! | field | meaning |
//! |---|---|
//! | `writer` | a [`RawMutex`]: held by the writer, and by a writer *waiting* for readers to drain (that is what makes it writer-preferring: new readers wait while it is held) |
//! | `readers` | readers inside, plus readers briefly checking the writer word; the futex word a writer sleeps on while readers drain |
//! | `inconsistent` | 1 after a writer died holding the lock, until a writer calls `mark_consistent` |
//!
//! A reader increments `readers`, then checks the writer word; a writer
//! takes the writer lock, then checks `readers`. Every one of these
//! accesses is a read-modify-write (the checks are `fetch_or(0)` /
//! `fetch_add(0)`, AcqRel): an RMW always reads the latest value, and
//! whichever of the two `readers` RMWs comes second synchronises with the
//! first, so at least one side sees the other (a store→load pattern that
//! plain SeqCst loads would also solve on paper, but that loom cannot
//! check): the reader backs off (decrement, wake the writer if it was
//! last) and sleeps on the writer word; the writer sleeps on `readers`
//! until it reaches 0. Readers that find a writer set the writer word's
//! `WAITERS` bit, and a writer unlock wakes *all* sleepers of that word.
//!
//! # Processes that die
//! - **A writer** (holding the lock, or holding the writer lock while it
//!   waits for readers): detected like a [`RawMutex`] owner. The next
//!   writer, or a waiting reader, takes the writer lock over and poisons
//!   the lock (`inconsistent`, see [`super::lock`]); from then on every
//!   `read`/`write` returns [`LockError::OwnerDied`] until a writer takes it
//!   with `recover`, repairs the data and calls `mark_consistent`. Unlike
//!   [`Mutex`](super::Mutex), an unmarked unlock does not make the lock
//!   unusable: it stays poisoned, and recoverable.
//! - **A reader**: `readers` is a bare count and cannot name its holders, so
//!   a reader killed while holding a read lock leaks one count, and writers
//!   then wait forever: use `write_timeout` where readers may die. (A table
//!   of reader ids would bound the number of readers; shmkit chose the
//!   unbounded count and documents the limit.)
//!
//! ```
//! use shmkit_core::sync::RwLock;
//! let l = RwLock::new(1u32);
//! {
//!     let a = l.read()?;
//!     let b = l.read()?;
//!     assert_eq!(a.get() + b.get(), 2);
//! }
//! l.write()?.set(5);
//! assert_eq!(l.read()?.get(), 5);
//! # Ok::<(), shmkit_core::sync::LockError>(())
//! ```

use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::lock::{
    acquire, Failure, Guard, LockError, LockTimeoutError, Poisoned, RawLock, SealedLock,
    TryLockError,
};
use super::mutex::{Acquired, Block, RawError, RawMutex, NOT_RECOVERABLE, WAITERS};
use super::{ident, park, passed, Contention, MutexSnapshot, DEFAULT_SPIN, LIVENESS_SLICE};
use crate::owner::ID_MASK;
use crate::primitive::{AtomicU32, Ordering};
use crate::shared::{ReadCell, SharedCell};
use crate::wait::{self, Deadline, Spin};

/// The lock of an [`RwLock`] without its data. Its two sides are the
/// [`RawLock`]s of the read and the write guards.
#[repr(C)]
pub struct RawRwLock {
    writer: RawMutex,
    readers: AtomicU32,
    /// The poison mark ([`RawLock::poison`]) of both sides.
    inconsistent: AtomicU32,
}

/// The shared side of a [`RawRwLock`] (what read guards hold).
#[repr(transparent)]
pub struct ReadSide(RawRwLock);

/// The exclusive side of a [`RawRwLock`] (what write guards hold).
#[repr(transparent)]
pub struct WriteSide(RawRwLock);

/// A writer-preferring, process-shared readers/writer lock protecting a
/// `T: Pod`. Zero-filled memory is an unlocked lock holding `T::zeroed()`.
#[repr(C)]
pub struct RwLock<T> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

// SAFETY: data is only accessed by atomic copies while a lock is held.
unsafe impl<T: Pod> Sync for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Send for RwLock<T> {}

impl<T: Pod> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("writer", &self.raw.writer)
            .field("readers", &self.raw.readers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Shared access to an [`RwLock`]'s data: dereferences to a [`ReadCell`]
/// (`get`).
pub type RwLockReadGuard<'a, T> = Guard<'a, ReadSide, ReadCell<'a, T>>;
/// Exclusive access to an [`RwLock`]'s data: dereferences to a
/// [`SharedCell`] (`get`, `set`, `update`).
pub type RwLockWriteGuard<'a, T> = Guard<'a, WriteSide, SharedCell<'a, T>>;

impl<T: Pod> RwLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        RwLock {
            raw: RawRwLock::new(),
            data: UnsafeCell::new(value),
        }
    }

    fn data(&self) -> NonNull<T> {
        NonNull::from(&self.data).cast()
    }

    fn read_guard(&self, block: Block, spin: Spin) -> Result<RwLockReadGuard<'_, T>, Failure> {
        // SAFETY: the data is a live, aligned `T` inside the lock; a read
        // guard only reads it, by atomic copies.
        let cell = unsafe { ReadCell::from_raw(self.data()) };
        acquire(self.raw.read_side(), cell, block, spin, Poisoned::Refuse)
    }

    fn write_guard(
        &self,
        block: Block,
        spin: Spin,
        poisoned: Poisoned,
    ) -> Result<RwLockWriteGuard<'_, T>, Failure> {
        // SAFETY: the data is a live, aligned `T` inside the lock; every
        // access to it is an atomic copy.
        let cell = unsafe { SharedCell::from_raw(self.data()) };
        acquire(self.raw.write_side(), cell, block, spin, poisoned)
    }

    /// Shared access, sleeping while a writer holds or waits for the lock.
    ///
    /// # Errors
    /// `OwnerDied` while the data is poisoned (a writer died; a writer
    /// repairs it through [`recover`](Self::recover)); `WouldDeadlock` if
    /// this thread holds the write lock; `NotRecoverable` if a peer wrote
    /// that state into the lock word.
    pub fn read(&self) -> Result<RwLockReadGuard<'_, T>, LockError> {
        self.read_guard(Block::Until(None), DEFAULT_SPIN)
            .map_err(Into::into)
    }

    /// Shared access if no writer holds or waits for the lock.
    ///
    /// # Errors
    /// `WouldBlock`, `Contended` (the writer word kept changing under
    /// every attempt), or as [`read`](Self::read).
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, TryLockError> {
        self.read_guard(Block::Try, Spin::NONE).map_err(Into::into)
    }

    /// Shared access, waiting at most `timeout`.
    ///
    /// # Errors
    /// `TimedOut`, or as [`read`](Self::read).
    pub fn read_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RwLockReadGuard<'_, T>, LockTimeoutError> {
        self.read_guard(Block::timeout(timeout), DEFAULT_SPIN)
            .map_err(Into::into)
    }

    /// Exclusive access.
    ///
    /// # Errors
    /// `OwnerDied` while the data is poisoned; `WouldDeadlock` if this
    /// thread holds the write lock.
    pub fn write(&self) -> Result<RwLockWriteGuard<'_, T>, LockError> {
        self.write_guard(Block::Until(None), DEFAULT_SPIN, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Exclusive access if nobody holds the lock.
    ///
    /// # Errors
    /// `WouldBlock`, `Contended`, or as [`write`](Self::write).
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>, TryLockError> {
        self.write_guard(Block::Try, Spin::NONE, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Exclusive access, waiting at most `timeout` (including the wait for
    /// readers to drain).
    ///
    /// # Errors
    /// `TimedOut`, or as [`write`](Self::write).
    pub fn write_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RwLockWriteGuard<'_, T>, LockTimeoutError> {
        self.write_guard(Block::timeout(timeout), DEFAULT_SPIN, Poisoned::Refuse)
            .map_err(Into::into)
    }

    /// Exclusive access even while poisoned, to repair the data (see
    /// [`super::lock`]): the guard's `owner_died` says whether it must,
    /// and its `mark_consistent` clears the poison.
    ///
    /// # Errors
    /// `WouldDeadlock`, `NotRecoverable`.
    pub fn recover(&self) -> Result<RwLockWriteGuard<'_, T>, LockError> {
        self.write_guard(Block::Until(None), DEFAULT_SPIN, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover) if that needs no waiting.
    ///
    /// # Errors
    /// As [`try_write`](Self::try_write), never `OwnerDied`.
    pub fn try_recover(&self) -> Result<RwLockWriteGuard<'_, T>, TryLockError> {
        self.write_guard(Block::Try, Spin::NONE, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// [`recover`](Self::recover), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`write_timeout`](Self::write_timeout), never `OwnerDied`.
    pub fn recover_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RwLockWriteGuard<'_, T>, LockTimeoutError> {
        self.write_guard(Block::timeout(timeout), DEFAULT_SPIN, Poisoned::Recover)
            .map_err(Into::into)
    }

    /// The lock without the data.
    #[must_use]
    pub fn raw(&self) -> &RawRwLock {
        &self.raw
    }
}

impl Default for RawRwLock {
    fn default() -> RawRwLock {
        RawRwLock::new()
    }
}

impl RawRwLock {
    /// An unlocked lock.
    #[must_use]
    pub fn new() -> RawRwLock {
        RawRwLock {
            writer: RawMutex::new(),
            readers: AtomicU32::new(0),
            inconsistent: AtomicU32::new(0),
        }
    }

    /// The shared side.
    #[must_use]
    pub fn read_side(&self) -> &ReadSide {
        // SAFETY: `ReadSide` is a `repr(transparent)` wrapper of `RawRwLock`.
        unsafe { &*(self as *const RawRwLock).cast::<ReadSide>() }
    }

    /// The exclusive side.
    #[must_use]
    pub fn write_side(&self) -> &WriteSide {
        // SAFETY: `WriteSide` is a `repr(transparent)` wrapper of `RawRwLock`.
        unsafe { &*(self as *const RawRwLock).cast::<WriteSide>() }
    }

    fn read_acquire(&self, block: Block, spin: Spin) -> Result<Acquired, RawError> {
        let deadline = match block {
            Block::Try => None,
            Block::Until(d) => d,
        };
        let word = self.writer.word();
        // As in `RawMutex::acquire_slow`: the budget counts loads while a
        // writer holds the lock and is refilled after every sleep, so a
        // reader that sees the writer leave but loses the race to the next
        // writer spins on instead of sleeping at once.
        let refill = match block {
            Block::Try => 0,
            Block::Until(_) => spin.iterations,
        };
        let mut budget = refill;
        let mut next_check: Option<Deadline> = None;
        // Rounds lost to a writer word that moved under us (`sync` docs).
        let mut contention = Contention::new();
        let lost = |contention: &mut Contention| match block {
            Block::Try if contention.give_up() => Err(RawError::Contended),
            Block::Until(d) if contention.back_off(d) => Err(RawError::TimedOut),
            _ => Ok(()),
        };
        loop {
            let w = word.load(Ordering::Relaxed);
            let owner = w & ID_MASK;
            if owner == 0 {
                // The reader half of the store→load pattern (module docs).
                self.readers.fetch_add(1, Ordering::AcqRel);
                // SYNC POINT (read lock): Acquire RMW of the word last
                // released by a writer: its data writes are visible (and
                // the poison mark it left, read by `acquire` next).
                if word.fetch_or(0, Ordering::AcqRel) & ID_MASK == 0 {
                    return Ok(Acquired::Clean);
                }
                self.read_unlock();
                lost(&mut contention)?;
                continue;
            }
            if owner == NOT_RECOVERABLE {
                return Err(RawError::NotRecoverable);
            }
            if self.writer.is_held_by_current_thread() {
                return Err(RawError::WouldDeadlock);
            }
            if budget > 0 {
                budget -= 1;
                crate::primitive::spin_loop();
                continue;
            }
            let check_now = match (block, next_check) {
                (Block::Try, _) => true,
                (Block::Until(_), None) => {
                    next_check = Some(Deadline::after(LIVENESS_SLICE));
                    false
                }
                (Block::Until(_), Some(at)) => at.has_passed(),
            };
            if check_now {
                next_check = Some(Deadline::after(LIVENESS_SLICE));
                if self.writer.owner_is_dead(w) {
                    // Take the writer lock over only to clear it: the data
                    // is now suspect for everyone until a writer repairs it.
                    let (me, tag) = ident();
                    if self.writer.take_over(w, me, tag).is_some() {
                        self.inconsistent.store(1, Ordering::Relaxed);
                        // SAFETY: we just took the writer lock over.
                        unsafe { self.writer.release(true) };
                    } else {
                        lost(&mut contention)?;
                    }
                    continue;
                }
            }
            if matches!(block, Block::Try) {
                return Err(RawError::WouldBlock);
            }
            if passed(deadline) {
                return Err(RawError::TimedOut);
            }
            if w & WAITERS == 0
                && word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                lost(&mut contention)?;
                continue;
            }
            if !park(word, w | WAITERS, deadline, Some(LIVENESS_SLICE)) {
                // Cut short (woken, or the word moved): a round (the
                // deadline is checked above, after another try).
                let _ = contention.back_off(None);
            }
            budget = refill;
        }
    }

    fn read_unlock(&self) {
        // SYNC POINT (read unlock): Release publishes the reader's
        // reads-done to the writer's RMW of `readers`; Acquire makes a
        // writer whose `readers` RMW came first visible in its word.
        let before = self.readers.fetch_sub(1, Ordering::AcqRel);
        if before == 1 && self.writer.word().fetch_or(0, Ordering::AcqRel) & ID_MASK != 0 {
            wait::wake_all(&self.readers);
        }
    }

    fn write_acquire(&self, block: Block, spin: Spin) -> Result<Acquired, RawError> {
        let acquired = self.writer.acquire(block, spin)?;
        let deadline = match block {
            Block::Try => None,
            Block::Until(d) => d,
        };
        // Readers only leave while we hold the writer lock (new ones wait),
        // so honest rounds here are few; a count that keeps moving is a
        // peer rewriting it, and each round backs off (`sync` docs).
        let mut contention = Contention::new();
        loop {
            // SYNC POINT (write lock): the writer half of the store→load
            // pattern; Acquire pairs with the Release decrement in
            // `read_unlock` (the readers' accesses are done).
            let r = self.readers.fetch_add(0, Ordering::AcqRel);
            if r == 0 {
                break;
            }
            if matches!(block, Block::Try) || passed(deadline) {
                // SAFETY: we hold the writer lock (acquired above).
                unsafe { self.writer.release(true) };
                return Err(if matches!(block, Block::Try) {
                    RawError::WouldBlock
                } else {
                    RawError::TimedOut
                });
            }
            if !spin.spin_until(|| self.readers.load(Ordering::Relaxed) == 0)
                && !park(&self.readers, r, deadline, None)
            {
                // Cut short (woken, or the count moved): a round (the
                // deadline is checked at the top of the next one).
                let _ = contention.back_off(None);
            }
        }
        Ok(acquired)
    }
}

impl SealedLock for ReadSide {}
impl SealedLock for WriteSide {}

impl RawLock for ReadSide {
    fn acquire_raw(&self, block: Block, spin: Spin) -> Result<Acquired, RawError> {
        self.0.read_acquire(block, spin)
    }

    unsafe fn release_raw(&self) {
        self.0.read_unlock();
    }

    unsafe fn release_unrepaired(&self) {
        // Readers cannot repair: the mark stays for a writer.
        self.0.read_unlock();
    }

    fn poison(&self) -> &AtomicU32 {
        &self.0.inconsistent
    }
}

impl RawLock for WriteSide {
    fn acquire_raw(&self, block: Block, spin: Spin) -> Result<Acquired, RawError> {
        self.0.write_acquire(block, spin)
    }

    unsafe fn release_raw(&self) {
        // SAFETY: the caller holds the writer lock. Wake all: readers
        // sleep on the writer word too.
        unsafe { self.0.writer.release(true) };
    }

    unsafe fn release_unrepaired(&self) {
        // Unlike a mutex, the lock stays usable and poisoned (module docs).
        // SAFETY: as in `release_raw`.
        unsafe { self.0.writer.release(true) };
    }

    fn poison(&self) -> &AtomicU32 {
        &self.0.inconsistent
    }
}

/// An [`RwLock`]'s shared state, read once. See [`RwLock::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RwLockSnapshot {
    /// The writer lock's word: held by the writer, or by a writer waiting
    /// for readers to drain.
    pub writer: MutexSnapshot,
    /// Readers inside (plus readers briefly checking the writer word). A
    /// reader that died holding a read lock stays counted.
    pub readers: u32,
    /// A writer died holding the lock and no writer has repaired the data.
    pub inconsistent: bool,
}

impl<T: Pod> RwLock<T> {
    /// The writer word, reader count and consistency flag, for
    /// diagnostics. Loads only (see [`RawMutex::snapshot`]): safe on a
    /// read-only mapping, never waits.
    ///
    /// ```
    /// use shmkit_core::sync::RwLock;
    /// let l = RwLock::new(0u8);
    /// let _r = l.read().unwrap();
    /// assert_eq!(l.snapshot().readers, 1);
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> RwLockSnapshot {
        // Relaxed: a picture for a human, read without the lock.
        RwLockSnapshot {
            writer: self.raw.writer.snapshot(),
            readers: self.raw.readers.load(Ordering::Relaxed),
            inconsistent: self.raw.inconsistent.load(Ordering::Relaxed) != 0,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn readers_share_writers_exclude() {
        let l = RwLock::new(0u64);
        let r = l.read().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(l.try_read().is_ok());
                assert!(matches!(l.try_write(), Err(TryLockError::WouldBlock)));
            });
        });
        drop(r);
        let w = l.write().unwrap();
        assert!(matches!(
            l.try_read(),
            Err(TryLockError::Lock(LockError::WouldDeadlock))
        ));
        drop(w);
    }

    #[test]
    fn write_timeout_is_never_early() {
        let l = RwLock::new(0u8);
        let _r = l.read().unwrap();
        let d = Duration::from_millis(20);
        let t0 = std::time::Instant::now();
        assert!(matches!(
            l.write_timeout(d),
            Err(LockTimeoutError::TimedOut)
        ));
        assert!(t0.elapsed() >= d);
        // The failed writer released the writer lock.
        assert!(l.try_read().is_ok());
    }

    #[test]
    fn threads_mix_reads_and_writes() {
        let l = RwLock::new([0u32; 2]);
        let n = if cfg!(miri) { 20 } else { 2000 };
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..n {
                        let g = l.write().unwrap();
                        let [a, b] = g.get();
                        g.set([a + 1, b + 1]);
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..n {
                    let [a, b] = l.read().unwrap().get();
                    assert_eq!(a, b);
                }
            });
        });
        assert_eq!(l.read().unwrap().get(), [2 * n, 2 * n]);
    }

    #[test]
    #[cfg(not(miri))]
    fn dead_writer_poisons_until_a_writer_repairs() {
        let l = RwLock::new(0u8);
        l.raw.writer.word().store(1 << 23, Ordering::Relaxed);
        // The reader that finds the death is told; so is everyone after.
        assert_eq!(
            l.try_read().unwrap_err(),
            TryLockError::Lock(LockError::OwnerDied)
        );
        assert_eq!(l.read().unwrap_err(), LockError::OwnerDied);
        assert_eq!(l.write().unwrap_err(), LockError::OwnerDied);
        // An unrepaired recovery leaves it poisoned (and usable).
        drop(l.recover().unwrap());
        assert_eq!(l.read().unwrap_err(), LockError::OwnerDied);
        let mut w = l.recover().unwrap();
        assert!(w.owner_died());
        w.mark_consistent();
        drop(w);
        assert!(l.read().is_ok());
    }
}
