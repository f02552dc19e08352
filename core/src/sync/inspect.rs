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
//! this file holds the part that needs the mutex's crate-private lock word,
//! so that `mutex.rs` itself stays untouched.

use super::mutex::{RawMutex, NOT_RECOVERABLE, WAITERS};
use crate::owner::{self, Liveness, ID_MASK};
use crate::primitive::Ordering;

/// Lock word bit 31: reserved, always 0 for honest peers (locks ignore it).
const RESERVED_BIT: u32 = 1 << 31;

/// Who holds a lock, as its lock word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutexState {
    /// No owner id in the word.
    Unlocked,
    /// Task `owner` (a Linux TID) holds the lock.
    Held {
        /// The owner's thread id.
        owner: u32,
        /// Whether that task still runs. `Dead` also when the id is alive
        /// but belongs to a newer task (`id_reused`). A lock with a dead
        /// owner is taken over by its next locker, which gets `OwnerDied`.
        liveness: Liveness,
        /// The id is alive, but the owner record names the same id with
        /// another start time: the recorded owner died and its id was
        /// given to a new task.
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
    /// Bit 31, reserved and always 0 for honest peers: set means a peer
    /// scribbled on the word (locks ignore the bit).
    pub reserved_bit: bool,
}

impl RawMutex {
    /// The lock word decoded, with the owner's liveness, for diagnostics.
    ///
    /// Loads only (one relaxed load of the word, the owner record for the
    /// id-reuse check) plus, for a held lock, `kill(tid, 0)` and a `/proc`
    /// read: safe on a read-only mapping, never waits, never takes a dead
    /// owner's lock over (the next locker does that).
    ///
    /// ```
    /// use shmkit_core::sync::{MutexState, RawMutex};
    /// let m = RawMutex::new();
    /// assert_eq!(m.snapshot().state, MutexState::Unlocked);
    /// let _g = m.lock().unwrap();
    /// assert!(matches!(m.snapshot().state, MutexState::Held { .. }));
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> MutexSnapshot {
        // Relaxed: a picture for a human; nothing is published or acquired
        // through it, and no data is read on its strength.
        let word = self.word().load(Ordering::Relaxed);
        let state = match word & ID_MASK {
            0 => MutexState::Unlocked,
            NOT_RECOVERABLE => MutexState::NotRecoverable,
            owner => {
                let live = owner::liveness(owner);
                // `owner_is_dead` only loads: liveness again, then the
                // owner record's (tid, start) against the word's tid.
                let id_reused = live == Liveness::Alive && self.owner_is_dead(word);
                MutexState::Held {
                    owner,
                    liveness: if id_reused { Liveness::Dead } else { live },
                    id_reused,
                }
            }
        };
        MutexSnapshot {
            word,
            state,
            waiters: word & WAITERS != 0,
            reserved_bit: word & RESERVED_BIT != 0,
        }
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn snapshot_names_the_owner_and_never_changes_the_word() {
        let m = RawMutex::new();
        assert_eq!(
            m.snapshot(),
            MutexSnapshot {
                word: 0,
                state: MutexState::Unlocked,
                waiters: false,
                reserved_bit: false
            }
        );
        let g = m.lock().unwrap();
        let me = owner::current_thread_id();
        let s = m.snapshot();
        assert_eq!(
            s.state,
            MutexState::Held {
                owner: me,
                liveness: Liveness::Alive,
                id_reused: false
            }
        );
        assert_eq!(s.word, me);
        drop(g);

        // A dead owner (an id no task has: pid_max is at most 2^22) with
        // sleepers and the reserved bit: reported, not taken over.
        let w = (1 << 23) | WAITERS | RESERVED_BIT;
        m.word().store(w, Ordering::Relaxed);
        let s = m.snapshot();
        assert!(matches!(
            s.state,
            MutexState::Held {
                owner: 0x80_0000,
                liveness: Liveness::Dead,
                id_reused: false
            }
        ));
        assert!(s.waiters && s.reserved_bit);
        assert_eq!(m.word().load(Ordering::Relaxed), w, "read-only");

        m.word().store(NOT_RECOVERABLE, Ordering::Relaxed);
        assert_eq!(m.snapshot().state, MutexState::NotRecoverable);
    }
}
