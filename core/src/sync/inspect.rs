//! Read-only snapshots of a [`RawMutex`] for diagnostics (`shmkit
//! inspect`, monitoring, tests).
//!
//! A snapshot only *loads*: it never locks, never takes a dead owner's lock
//! over, never sets a bit, so it may run on an object in a read-only
//! mapping, while the lock is held, or while the object is being corrupted
//! by a peer. It is a picture of one instant: by the time it is printed the
//! lock may have changed hands.
//!
//! The other sync types expose their own counters next to their code
//! (`Semaphore::sleepers`, `Barrier::generation`, `RwLock::snapshot`, ...);
//! this file holds the part that needs the mutex's crate-private lock word.

use super::mutex::{RawMutex, NOT_RECOVERABLE, SPINNER, WAITERS};
use crate::owner::{self, is_token, Liveness, ID_MASK};
use crate::primitive::Ordering;

/// Who holds a lock, as its lock word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutexState {
    /// No owner id in the word.
    Unlocked,
    /// The owner `owner` holds the lock.
    Held {
        /// The owner id in the word: a liveness token, or a TID (see
        /// [`crate::owner`]).
        owner: u32,
        /// The holder's thread id, if known: the id itself when it is a
        /// TID, else the thread id the holder recorded next to the word
        /// (unknown if it was killed before recording it).
        tid: Option<u32>,
        /// Whether the owner still runs. `Dead` also when the id is alive
        /// but belongs to a newer task (`id_reused`). A lock with a dead
        /// owner is taken over by its next locker, which gets `OwnerDied`.
        liveness: Liveness,
        /// Fallback path only (a TID owner): the id is alive, but the
        /// owner record names the same id with another start time: the
        /// recorded owner died and its id was given to a new task.
        id_reused: bool,
    },
    /// The lock was left inconsistent for good (`NotRecoverable`).
    NotRecoverable,
}

/// A [`RawMutex`]'s lock word, decoded once. See [`RawMutex::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MutexSnapshot {
    /// The lock word as read.
    pub word: u32,
    /// Who holds it.
    pub state: MutexState,
    /// The `WAITERS` bit: at least one locker may be asleep on the word
    /// (a flag, not a count; it may stay set after the sleepers left).
    pub waiters: bool,
    /// The `SPINNER` bit (bit 31): a locker is spinning for the lock, or
    /// (on a free word) the last unlock reserved the lock for one.
    pub spinner: bool,
    /// Why no honest peer could have left this word, if none could:
    /// `WAITERS` without an owner (nobody sleeps on a free word), or flag
    /// bits on a not-recoverable lock (nobody sets them there). Locks cope
    /// with such words (they can fail, never misbehave); diagnostics call
    /// them corrupt. Every other word is a state honest lockers produce.
    pub impossible: Option<&'static str>,
    /// The poison mark: a holder died and nobody has repaired the data
    /// since; `lock` answers `OwnerDied` until a `recover` guard does (see
    /// [`super::lock`]).
    pub poisoned: bool,
}

impl RawMutex {
    /// The lock word decoded, with the owner's liveness, for diagnostics.
    ///
    /// Loads only (one relaxed load of the word, the owner record for the
    /// holder's thread id and the fallback's reuse check) plus, for a held
    /// lock, one liveness check (an `fcntl` for a token; `kill(tid, 0)` and
    /// a `/proc` read for a TID): safe on a read-only mapping, never waits,
    /// never takes a dead owner's lock over (the next locker does that).
    ///
    /// ```
    /// use shmkit_core::sync::{MutexState, RawMutex};
    /// let m = RawMutex::new();
    /// assert_eq!(m.snapshot().state, MutexState::Unlocked);
    /// let _g = m.lock().unwrap();
    /// assert!(matches!(m.snapshot().state, MutexState::Held { .. }));
    /// assert_eq!(m.snapshot().impossible, None);
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> MutexSnapshot {
        // Relaxed: a picture for a human; nothing is published or acquired
        // through it, and no data is read on its strength.
        let word = self.word().load(Ordering::Relaxed);
        let flags = word & !ID_MASK;
        let (state, impossible) = match word & ID_MASK {
            0 => (
                MutexState::Unlocked,
                (word & WAITERS != 0).then_some(
                    "the WAITERS bit is set on a free lock (no locker sleeps on a free word)",
                ),
            ),
            NOT_RECOVERABLE => (
                MutexState::NotRecoverable,
                (flags != 0).then_some(
                    "flag bits are set on a not-recoverable lock (no locker sets them there)",
                ),
            ),
            owner => {
                let live = owner::liveness(owner);
                let (rec_id, rec_tag) = self.record();
                // `owner_is_dead` only loads: liveness again, then the
                // owner record's (id, start) against the word's id.
                let id_reused = live == Liveness::Alive && self.owner_is_dead(word);
                let tid = if !is_token(owner) {
                    Some(owner)
                } else if rec_id == owner && rec_tag != 0 {
                    Some(owner::tag_tid(rec_tag))
                } else {
                    None
                };
                (
                    MutexState::Held {
                        owner,
                        tid,
                        liveness: if id_reused { Liveness::Dead } else { live },
                        id_reused,
                    },
                    None,
                )
            }
        };
        MutexSnapshot {
            word,
            state,
            waiters: word & WAITERS != 0,
            spinner: word & SPINNER != 0,
            impossible,
            poisoned: self.is_poisoned(),
        }
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    extern crate std;

    use super::*;
    use crate::wait::Spin;
    use core::time::Duration;
    use std::time::Instant;

    /// Polls `cond` (set by another thread) for up to 10 s.
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(t0.elapsed() < Duration::from_secs(10), "never: {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn snapshot_names_the_owner_and_never_changes_the_word() {
        let m = RawMutex::new();
        assert_eq!(
            m.snapshot(),
            MutexSnapshot {
                word: 0,
                state: MutexState::Unlocked,
                waiters: false,
                spinner: false,
                impossible: None,
                poisoned: false,
            }
        );
        let g = m.lock().unwrap();
        let me = owner::thread_owner_id();
        let s = m.snapshot();
        assert_eq!(
            s.state,
            MutexState::Held {
                owner: me,
                tid: Some(owner::current_thread_id()),
                liveness: Liveness::Alive,
                id_reused: false
            }
        );
        assert_eq!(s.word, me);
        drop(g);

        // A dead owner (a token nobody holds) with sleepers and a spinner:
        // reported, not taken over, and an honest state.
        let w = (1 << 23) | WAITERS | SPINNER;
        m.word().store(w, Ordering::Relaxed);
        let s = m.snapshot();
        assert!(matches!(
            s.state,
            MutexState::Held {
                owner: 0x80_0000,
                tid: None,
                liveness: Liveness::Dead,
                id_reused: false
            }
        ));
        assert!(s.waiters && s.spinner);
        assert_eq!(s.impossible, None);
        assert_eq!(m.word().load(Ordering::Relaxed), w, "read-only");

        m.word().store(NOT_RECOVERABLE, Ordering::Relaxed);
        assert_eq!(m.snapshot().state, MutexState::NotRecoverable);
        assert_eq!(m.snapshot().impossible, None);
    }

    /// Issue 8, item 4: every state honest lockers put a lock word in —
    /// free, reserved for a spinner, held, held with a spinner, held with
    /// sleepers, held by a dead owner (with and without sleepers), not
    /// recoverable — decodes as possible. Only words no honest peer writes
    /// are called impossible. (Before the fix, bit 31 — the SPINNER bit —
    /// was decoded as a "reserved bit", and a healthy contended mutex was
    /// reported corrupt.)
    #[test]
    fn every_honest_lock_word_decodes_without_corruption() {
        let m = RawMutex::new();
        let check = |what: &str| {
            let s = m.snapshot();
            assert_eq!(s.impossible, None, "{what}: {s:?}");
            s
        };
        check("free");

        // Held, then a thread spinning for it (SPINNER), then sleeping
        // (WAITERS): each observed while it lasts.
        let g = m.lock().unwrap();
        assert!(matches!(check("held").state, MutexState::Held { .. }));
        std::thread::scope(|sc| {
            let spinner = sc.spawn(|| {
                drop(
                    m.lock_spin(
                        Spin {
                            iterations: u32::MAX,
                        },
                        None,
                    )
                    .unwrap(),
                );
            });
            eventually("a spinner", || m.snapshot().spinner);
            let s = check("held with a spinner");
            assert!(matches!(s.state, MutexState::Held { .. }));
            drop(g);
            spinner.join().unwrap();
        });
        // The spinner's unlock may leave the free word reserved (SPINNER
        // without an owner): free, and honest.
        let s = check("free, reserved or not");
        assert_eq!(s.state, MutexState::Unlocked);

        let g = m.lock().unwrap();
        std::thread::scope(|sc| {
            let sleeper = sc.spawn(|| drop(m.lock_spin(Spin::NONE, None).unwrap()));
            eventually("a sleeper", || m.snapshot().waiters);
            let s = check("held with sleepers");
            assert!(matches!(s.state, MutexState::Held { .. }));
            drop(g);
            sleeper.join().unwrap();
        });
        check("free after a contended unlock");

        // A thread that exits holding the lock: a dead owner.
        std::thread::scope(|sc| {
            sc.spawn(|| core::mem::forget(m.lock().unwrap()));
        });
        // (A scoped thread's join returns before its exit releases its id.)
        eventually("the owner's death", || {
            matches!(
                m.snapshot().state,
                MutexState::Held {
                    liveness: Liveness::Dead,
                    ..
                }
            )
        });
        let s = check("dead owner");
        assert!(
            matches!(
                s.state,
                MutexState::Held {
                    liveness: Liveness::Dead,
                    ..
                }
            ),
            "{s:?}"
        );
        // Taken over, not marked consistent: not recoverable.
        assert_eq!(m.lock().unwrap_err(), crate::sync::LockError::OwnerDied);
        drop(m.recover().unwrap());
        assert_eq!(check("not recoverable").state, MutexState::NotRecoverable);

        // What no honest peer writes.
        for w in [
            WAITERS,
            WAITERS | SPINNER,
            NOT_RECOVERABLE | WAITERS,
            u32::MAX,
        ] {
            m.word().store(w, Ordering::Relaxed);
            assert!(m.snapshot().impossible.is_some(), "{w:#x}");
        }
        // Every other word is possible.
        for w in [
            SPINNER,
            5,
            5 | SPINNER,
            5 | WAITERS | SPINNER,
            NOT_RECOVERABLE,
        ] {
            m.word().store(w, Ordering::Relaxed);
            assert_eq!(m.snapshot().impossible, None, "{w:#x}");
        }
    }

    /// The reentrant and readers/writer locks' snapshots in their honest
    /// states: held at depth 2, a writer holding or waiting while readers
    /// are inside, a dead writer.
    #[test]
    fn reentrant_and_rwlock_snapshots_in_honest_states() {
        use crate::sync::{ReentrantMutex, RwLock};
        let r = ReentrantMutex::new(0u8);
        let (a, b) = (r.lock().unwrap(), r.lock().unwrap());
        let s = r.snapshot();
        assert_eq!(
            (s.count, s.inconsistent, s.lock.impossible),
            (2, false, None)
        );
        drop((b, a));
        assert_eq!(r.snapshot().lock.state, MutexState::Unlocked);

        let l = RwLock::new(0u8);
        let reader = l.read().unwrap();
        std::thread::scope(|sc| {
            // A writer waiting for the reader holds the writer lock.
            let w = sc.spawn(|| drop(l.write().unwrap()));
            eventually("a waiting writer", || {
                matches!(l.snapshot().writer.state, MutexState::Held { .. })
            });
            let s = l.snapshot();
            assert_eq!((s.readers, s.writer.impossible), (1, None));
            drop(reader);
            w.join().unwrap();
        });
        // A writer that exits holding the lock.
        std::thread::scope(|sc| {
            sc.spawn(|| core::mem::forget(l.write().unwrap()));
        });
        eventually("the writer's death", || {
            matches!(
                l.snapshot().writer.state,
                MutexState::Held {
                    liveness: Liveness::Dead,
                    ..
                }
            )
        });
        assert_eq!(l.snapshot().writer.impossible, None);
    }
}
