//! [`Event`]: Python's manual-reset `Event`.
//!
//! One futex word:
//!
//! | bit | meaning |
//! |---|---|
//! | [`SET`] (1) | the flag |
//! | [`WAITERS`] (2) | someone may sleep; `set` must wake |
//!
//! | from | to | who | ordering |
//! |---|---|---|---|
//! | any | `SET` | `set` (swap); `FUTEX_WAKE` all only if `WAITERS` was set | Release |
//! | `SET[\|W]` | `[W]` | `clear` (fetch_and) | Relaxed |
//! | `0` | `WAITERS` | a waiter, before it sleeps | Relaxed |
//!
//! Waiters read the word with Acquire: seeing `SET` they see everything
//! written before the `set` that set it.
//!
//! # Dead processes
//! An event holds no owner: a process that dies leaves the flag as it was
//! and, if it died asleep, at most a stale `WAITERS` bit, which costs the
//! next `set` one needless `FUTEX_WAKE`. A process that was supposed to
//! `set` and died never will: use `wait_timeout`.
//!
//! ```
//! use shmkit_core::sync::Event;
//! use core::time::Duration;
//! let e = Event::new();
//! assert!(!e.wait_timeout(Duration::from_millis(1)));
//! e.set();
//! assert!(e.wait_timeout(Duration::from_millis(1)));
//! e.clear();
//! assert!(!e.is_set());
//! ```

use core::fmt;
use core::time::Duration;

use super::{park, passed, DEFAULT_SPIN};
use crate::primitive::{AtomicU32, Ordering};
use crate::wait::{self, Deadline, Spin};

/// Event word bit: the flag.
pub const SET: u32 = 1;
/// Event word bit: a waiter may be asleep.
pub const WAITERS: u32 = 2;

/// A manual-reset event. `#[repr(C)]`, 4 bytes, zero-filled = clear.
#[repr(C)]
pub struct Event {
    word: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Event, u32);

impl Default for Event {
    fn default() -> Event {
        Event::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Event {
    /// A clear event.
    #[must_use]
    pub fn new() -> Event {
        Event {
            word: AtomicU32::new(0),
        }
    }

    /// Whether the flag is set.
    #[must_use]
    pub fn is_set(&self) -> bool {
        // SYNC POINT (wait): Acquire pairs with the Release swap in `set`.
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        // SYNC POINT (set): Release publishes what the setter wrote before.
        let old = self.word.swap(SET, Ordering::Release);
        if old & WAITERS != 0 {
            wait::wake_all(&self.word);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Sleeps until the flag is set.
    pub fn wait(&self) {
        let _ = self.wait_until(None, DEFAULT_SPIN);
    }

    /// Sleeps until the flag is set or `timeout` passes; returns whether it
    /// is set (false never before `timeout` has elapsed).
    #[must_use]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(Deadline::after(timeout)), DEFAULT_SPIN)
    }

    /// `wait`/`wait_timeout` with an explicit spin budget.
    #[must_use]
    pub fn wait_spin(&self, spin: Spin, timeout: Option<Duration>) -> bool {
        self.wait_until(timeout.map(Deadline::after), spin)
    }

    fn wait_until(&self, deadline: Option<Deadline>, spin: Spin) -> bool {
        if self.is_set() || spin.spin_until(|| self.is_set()) {
            return true;
        }
        loop {
            // SYNC POINT (wait): as in `is_set`.
            let w = self.word.load(Ordering::Acquire);
            if w & SET != 0 {
                return true;
            }
            if passed(deadline) {
                return false;
            }
            if w & WAITERS == 0
                && self
                    .word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            park(&self.word, w | WAITERS, deadline, None);
        }
    }
}

/// Diagnostics: loads only, safe on a read-only mapping.
impl Event {
    /// Whether the `WAITERS` bit is set: a waiter may be asleep (a flag,
    /// not a count; it stays set until the next `set`).
    #[must_use]
    pub fn has_waiters(&self) -> bool {
        // Relaxed: a picture for a human.
        self.word.load(Ordering::Relaxed) & WAITERS != 0
    }

    /// The event word as read: [`SET`] and [`WAITERS`]; any other bit
    /// means a peer scribbled on it (the event ignores such bits).
    #[must_use]
    pub fn raw_word(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn wait_timeout_is_never_early() {
        let e = Event::new();
        let d = Duration::from_millis(20);
        let t0 = std::time::Instant::now();
        assert!(!e.wait_timeout(d));
        assert!(t0.elapsed() >= d);
    }

    #[test]
    fn set_wakes_a_sleeping_thread() {
        let e = Event::new();
        std::thread::scope(|s| {
            s.spawn(|| e.wait_spin(Spin::NONE, None));
            e.set();
        });
        assert!(e.is_set());
    }

    #[test]
    fn garbage_word_is_harmless() {
        let e = Event::new();
        e.word.store(u32::MAX - 1, Ordering::Relaxed);
        assert!(!e.is_set());
        assert!(!e.wait_timeout(Duration::from_millis(1)));
        e.set();
        assert!(e.is_set());
    }
}
