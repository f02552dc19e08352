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
//!   writer, or a waiting reader, takes the writer lock over; `inconsistent`
//!   is set, and from then on every `read`/`write` returns
//!   [`LockError::OwnerDied`] carrying its guard until a *writer* repairs the
//!   data and calls [`RwLockWriteGuard::mark_consistent`]. Unlike
//!   [`Mutex`](super::Mutex), an unmarked unlock does not make the lock
//!   unusable: readers cannot repair data, so the lock stays usable and keeps
//!   saying "inconsistent" until a writer marks it.
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
//!     let a = l.read().unwrap();
//!     let b = l.read().unwrap();
//!     assert_eq!(a.get() + b.get(), 2);
//! }
//! l.write().unwrap().set(5);
//! assert_eq!(l.read().unwrap().get(), 5);
//! ```

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use super::mutex::{Acquired, Block, LockError, RawError, RawMutex, NOT_RECOVERABLE, WAITERS};
use super::{ident, park, passed, Contention, MutexSnapshot, DEFAULT_SPIN, LIVENESS_SLICE};
use crate::owner::ID_MASK;
use crate::primitive::{AtomicU32, Ordering};
use crate::shared::SharedSlice;
use crate::wait::{self, Deadline, Spin};

/// A writer-preferring, process-shared readers/writer lock protecting a
/// `T: Pod`. Zero-filled memory is an unlocked lock holding `T::zeroed()`.
#[repr(C)]
pub struct RwLock<T> {
    writer: RawMutex,
    readers: AtomicU32,
    inconsistent: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: data is only accessed by atomic copies while a lock is held.
unsafe impl<T: Pod> Sync for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Send for RwLock<T> {}

impl<T: Pod> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("writer", &self.writer)
            .field("readers", &self.readers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

type ReadResult<'a, T> = Result<RwLockReadGuard<'a, T>, LockError<RwLockReadGuard<'a, T>>>;
type WriteResult<'a, T> = Result<RwLockWriteGuard<'a, T>, LockError<RwLockWriteGuard<'a, T>>>;

impl<T: Pod> RwLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        RwLock {
            writer: RawMutex::new(),
            readers: AtomicU32::new(0),
            inconsistent: AtomicU32::new(0),
            data: UnsafeCell::new(value),
        }
    }

    /// Shared access, sleeping while a writer holds or waits for the lock.
    ///
    /// # Errors
    /// `OwnerDied` (with the guard) while the data is marked inconsistent;
    /// `WouldDeadlock` if this thread holds the write lock;
    /// `NotRecoverable` if a peer wrote that state into the lock word.
    pub fn read(&self) -> ReadResult<'_, T> {
        self.read_with(Block::Until(None), DEFAULT_SPIN)
    }

    /// Shared access if no writer holds or waits for the lock.
    ///
    /// # Errors
    /// As [`read`](Self::read), plus `WouldBlock`, and `Contended` if the
    /// writer word kept changing under every attempt.
    pub fn try_read(&self) -> ReadResult<'_, T> {
        self.read_with(Block::Try, Spin::NONE)
    }

    /// Shared access, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`read`](Self::read), plus `TimedOut`.
    pub fn read_timeout(&self, timeout: Duration) -> ReadResult<'_, T> {
        self.read_with(Block::timeout(timeout), DEFAULT_SPIN)
    }

    /// Exclusive access.
    ///
    /// # Errors
    /// `OwnerDied` (with the guard) while the data is marked inconsistent;
    /// `WouldDeadlock` if this thread holds the write lock.
    pub fn write(&self) -> WriteResult<'_, T> {
        self.write_with(Block::Until(None), DEFAULT_SPIN)
    }

    /// Exclusive access if nobody holds the lock.
    ///
    /// # Errors
    /// As [`write`](Self::write), plus `WouldBlock` and `Contended`.
    pub fn try_write(&self) -> WriteResult<'_, T> {
        self.write_with(Block::Try, Spin::NONE)
    }

    /// Exclusive access, waiting at most `timeout` (including the wait for
    /// readers to drain).
    ///
    /// # Errors
    /// As [`write`](Self::write), plus `TimedOut`.
    pub fn write_timeout(&self, timeout: Duration) -> WriteResult<'_, T> {
        self.write_with(Block::timeout(timeout), DEFAULT_SPIN)
    }

    fn read_with(&self, block: Block, spin: Spin) -> ReadResult<'_, T> {
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
            Block::Try if contention.give_up() => Err(LockError::Contended),
            Block::Until(d) if contention.back_off(d) => Err(LockError::TimedOut),
            _ => Ok(()),
        };
        loop {
            let w = word.load(Ordering::Relaxed);
            let owner = w & ID_MASK;
            if owner == 0 {
                // The reader half of the store→load pattern (module docs).
                self.readers.fetch_add(1, Ordering::AcqRel);
                // SYNC POINT (read lock): Acquire RMW of the word last
                // released by a writer: its data writes are visible.
                if word.fetch_or(0, Ordering::AcqRel) & ID_MASK == 0 {
                    let g = RwLockReadGuard {
                        lock: self,
                        _not_send: PhantomData,
                    };
                    return if self.inconsistent.load(Ordering::Relaxed) != 0 {
                        Err(LockError::OwnerDied(g))
                    } else {
                        Ok(g)
                    };
                }
                self.read_unlock();
                lost(&mut contention)?;
                continue;
            }
            if owner == NOT_RECOVERABLE {
                return Err(LockError::NotRecoverable);
            }
            if self.writer.is_held_by_current_thread() {
                return Err(LockError::WouldDeadlock);
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
                return Err(LockError::WouldBlock);
            }
            if passed(deadline) {
                return Err(LockError::TimedOut);
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

    fn write_with(&self, block: Block, spin: Spin) -> WriteResult<'_, T> {
        let acquired = match self.writer.acquire(block, spin) {
            Ok(a) => a,
            Err(e) => return Err(raw_err(e)),
        };
        if acquired == Acquired::OwnerDied {
            self.inconsistent.store(1, Ordering::Relaxed);
        }
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
                    LockError::WouldBlock
                } else {
                    LockError::TimedOut
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
        let g = RwLockWriteGuard {
            lock: self,
            _not_send: PhantomData,
        };
        if self.inconsistent.load(Ordering::Relaxed) != 0 {
            Err(LockError::OwnerDied(g))
        } else {
            Ok(g)
        }
    }

    fn view(&self) -> SharedSlice<'_, T> {
        // SAFETY: the data is a live, aligned `T` inside the lock; every
        // access to it is an atomic copy.
        unsafe { SharedSlice::from_raw(NonNull::from(&self.data).cast(), 1) }
    }
}

fn raw_err<G>(e: RawError) -> LockError<G> {
    e.into_lock_error()
}

/// Shared access to an [`RwLock`]'s data.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLockReadGuard").finish_non_exhaustive()
    }
}

impl<T: Pod> RwLockReadGuard<'_, T> {
    /// A copy of the data.
    #[must_use]
    pub fn get(&self) -> T {
        self.lock.view().get(0).unwrap_or_else(T::zeroed)
    }
}

impl<T: Pod> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

/// Exclusive access to an [`RwLock`]'s data.
#[must_use = "the write lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLockWriteGuard").finish_non_exhaustive()
    }
}

impl<T: Pod> RwLockWriteGuard<'_, T> {
    /// A copy of the data.
    #[must_use]
    pub fn get(&self) -> T {
        self.lock.view().get(0).unwrap_or_else(T::zeroed)
    }

    /// Replaces the data.
    pub fn set(&self, value: T) {
        let _ = self.lock.view().set(0, value);
    }

    /// Declares the data repaired after `OwnerDied`.
    pub fn mark_consistent(&mut self) {
        self.lock.inconsistent.store(0, Ordering::Relaxed);
    }
}

impl<T: Pod> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this thread holds the writer
        // lock. Wake all: readers sleep on the writer word too.
        unsafe { self.lock.writer.release(true) };
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
            writer: self.writer.snapshot(),
            readers: self.readers.load(Ordering::Relaxed),
            inconsistent: self.inconsistent.load(Ordering::Relaxed) != 0,
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
                assert!(matches!(l.try_write(), Err(LockError::WouldBlock)));
            });
        });
        drop(r);
        let w = l.write().unwrap();
        assert!(matches!(l.try_read(), Err(LockError::WouldDeadlock)));
        drop(w);
    }

    #[test]
    fn write_timeout_is_never_early() {
        let l = RwLock::new(0u8);
        let _r = l.read().unwrap();
        let d = Duration::from_millis(20);
        let t0 = std::time::Instant::now();
        assert!(matches!(l.write_timeout(d), Err(LockError::TimedOut)));
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
    fn dead_writer_marks_inconsistent_until_repaired() {
        let l = RwLock::new(0u8);
        l.writer.word().store(1 << 23, Ordering::Relaxed);
        let g = l.try_read().unwrap_err().into_guard().unwrap();
        drop(g);
        let mut w = l.write().unwrap_err().into_guard().unwrap();
        w.mark_consistent();
        drop(w);
        assert!(l.read().is_ok());
    }
}
