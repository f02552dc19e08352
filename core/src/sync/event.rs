//! [`Event`]: Python's manual-reset `Event`.
//!
//! One futex word:
//!
//! | bits | meaning |
//! |---|---|
//! | 0, [`SET`] | the flag |
//! | 1, [`WAITERS`] | someone may sleep; `set` must wake |
//! | 2..32 | the generation: bumped by every `clear` that clears a set flag (30 bits, wrapping) |
//!
//! | from | to | who | ordering |
//! |---|---|---|---|
//! | `g[\|S][\|W]` | `g\|S[\|W]` | `set` (fetch_or); only if `W` was set: then `g\|S\|W` → `g\|S` (fetch_and) and `FUTEX_WAKE` all | Release |
//! | `g\|S[\|W]` | `(g+1)[\|W]` | `clear` (one CAS) | Relaxed |
//! | `g` | `g\|W` | a waiter, before it sleeps (fetch_or) | Acquire |
//!
//! Waiters read the word with Acquire: seeing `SET`, or a generation that
//! moved, they see everything written before the `set` that did it (every
//! later write to the word is a read-modify-write, so it continues the
//! release sequence of that `set`).
//!
//! # `set()` then `clear()` at once
//! Python's contract (CPython gh-57711): every waiter already blocked in
//! `wait()` when `set()` is called returns true, even if `clear()` follows
//! before it runs. A flag alone cannot keep that promise: the woken waiter
//! would find the flag cleared and sleep again. So a `clear` that clears a
//! set flag also moves the generation, in the same atomic step, and a
//! waiter, which notes the generation when it starts, returns true once the
//! flag is set **or the generation moved** (unless 2³⁰ set/clear cycles
//! happened before it ran again). Every operation is one atomic step on
//! the word (`set`'s `WAITERS` clean-up after its wake-up aside, which
//! changes no answer), so the event is linearizable: a waiter that saw the
//! flag, cleared it and waits again waits for the *next* `set`.
//!
//! `set` stays a single read-modify-write when nobody sleeps (the generation
//! moves in `clear`, which in a ping-pong runs on a cache line its caller
//! already holds).
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

use super::{park, passed, Contention, DEFAULT_SPIN, TRY_ROUNDS};
use crate::primitive::{AtomicU32, Ordering};
use crate::wait::{self, Deadline, Spin};

/// Event word bit: the flag.
pub const SET: u32 = 1;
/// Event word bit: a waiter may be asleep.
pub const WAITERS: u32 = 2;
/// One step of the generation (bits 2..32) in the event word.
pub const GENERATION_ONE: u32 = 4;
/// Mask of the generation bits.
const GEN_MASK: u32 = !(SET | WAITERS);

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
        // SYNC POINT (set): Release publishes what the setter wrote before
        // to a waiter's Acquire read of this value, or of a later one
        // (every later write is an RMW: it continues the release sequence).
        let old = self.word.fetch_or(SET, Ordering::Release);
        if old & WAITERS != 0 {
            self.wake_sleepers();
        }
    }

    /// Drops the `WAITERS` bit, then wakes every sleeper. A waiter that
    /// announced itself after our `fetch_or` saw the flag (or a moved
    /// generation) and did not sleep; one that announces itself after this
    /// `fetch_and` sets the bit again for the next `set`.
    #[cold]
    fn wake_sleepers(&self) {
        // Relaxed: an RMW (release sequence); the wake is a syscall.
        self.word.fetch_and(!WAITERS, Ordering::Relaxed);
        wait::wake_all(&self.word);
    }

    /// Clears the flag. Clearing a set flag also moves the generation (in
    /// the same atomic step), which tells waiters that began before the
    /// `set` that it happened (module docs).
    pub fn clear(&self) {
        let mut w = self.word.load(Ordering::Relaxed);
        for _ in 0..TRY_ROUNDS {
            if w & SET == 0 {
                return;
            }
            let new = (w & GEN_MASK).wrapping_add(GENERATION_ONE) | (w & WAITERS);
            // Relaxed: an RMW of the word, continuing the release sequence
            // of the `set` before it; it publishes nothing of its own.
            match self
                .word
                .compare_exchange(w, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => w = now,
            }
        }
        // The word kept moving under every attempt (a peer rewriting it):
        // two RMWs that always land. Not one step: a waiter starting in
        // between may count this clear's set as happening after it began.
        if self.word.fetch_and(!SET, Ordering::Relaxed) & SET != 0 {
            self.word.fetch_add(GENERATION_ONE, Ordering::Relaxed);
        }
    }

    /// Sleeps until the flag is set.
    pub fn wait(&self) {
        let _ = self.wait_until(None, DEFAULT_SPIN);
    }

    /// Sleeps until the flag is set or `timeout` passes; returns true if
    /// the flag was set, or a `set` happened while waiting (even if a
    /// `clear` followed); false never before `timeout` has elapsed.
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
        // SYNC POINT (wait): Acquire pairs with the Release in `set`, here
        // and in every load and RMW below.
        let start = self.word.load(Ordering::Acquire);
        if start & SET != 0 {
            return true;
        }
        // Done once the flag is set or a `set` moved the generation.
        let done = |w: u32| w & SET != 0 || w & GEN_MASK != start & GEN_MASK;
        if spin.spin_until(|| done(self.word.load(Ordering::Acquire))) {
            return true;
        }
        // Rounds a peer's writes cut short (`sync` docs).
        let mut contention = Contention::new();
        loop {
            let mut w = self.word.load(Ordering::Acquire);
            if done(w) {
                return true;
            }
            if passed(deadline) {
                return false;
            }
            if w & WAITERS == 0 {
                // An RMW, not a CAS: it always lands, and it reads the
                // latest word (a `set` after it sees WAITERS and wakes us).
                w = self.word.fetch_or(WAITERS, Ordering::Acquire);
                if done(w) {
                    return true;
                }
                w |= WAITERS;
            }
            if !park(&self.word, w, deadline, None) {
                // Cut short (woken, or the word moved) and not done: a
                // round a peer can repeat.
                let _ = contention.back_off(None);
            }
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

    /// The event word as read: [`SET`], [`WAITERS`] and the generation
    /// (every bit pattern is a state honest peers produce).
    #[must_use]
    pub fn raw_word(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }

    /// How many times a set flag was cleared (30 bits, wrapping).
    #[must_use]
    pub fn generation(&self) -> u32 {
        // Relaxed: a picture for a human.
        self.word.load(Ordering::Relaxed) >> 2
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

    /// Issue 8, item 3: a waiter asleep when `set()` is called returns
    /// true even though `clear()` follows before it runs. Deterministic
    /// without threads racing: the "waiter" here is the word it would have
    /// read when it began (its generation), and the set+clear happen
    /// between its start and its next look.
    #[test]
    fn set_then_clear_does_not_lose_the_wakeup() {
        let e = Event::new();
        let start = e.raw_word();
        e.set();
        e.clear();
        let now = e.raw_word();
        assert_eq!(now & SET, 0);
        assert_ne!(now & GEN_MASK, start & GEN_MASK, "the generation moved");
        assert_eq!(e.generation(), 1);
        // A real waiter in another thread, parked before the set.
        let e = Event::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| e.wait_spin(Spin::NONE, Some(Duration::from_secs(30))));
            while !e.has_waiters() {
                std::thread::yield_now();
            }
            e.set();
            e.clear();
            assert!(waiter.join().unwrap(), "the waiter missed the set");
        });
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
