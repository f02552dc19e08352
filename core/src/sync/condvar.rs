//! [`Condvar`]: Python's `Condition`, paired with a shmkit [`Mutex`](super::Mutex).
//!
//! Python's `Condition` counts: `notify(n)` releases at most `n`
//! waiters, and a `wait` returns only by taking a notification (or when
//! its timeout passes): not because the futex woke it, nor because it was
//! about to sleep when a notify meant for others came (std's and POSIX's
//! condition variables return then, spuriously).
//!
//! Two words:
//!
//! | word | bits | meaning |
//! |---|---|---|
//! | `seq` | 0..32 | bumped by every notify; the futex word (std's design: no lost wake-ups) |
//! | `state` | 16..32 | `waiters`: callers registered in `wait` (0xFFFF: saturated) |
//! | `state` | 0..16 | `signals`: notifications granted and not yet taken; at most `waiters` |
//!
//! | from | to | who | ordering |
//! |---|---|---|---|
//! | `w, s` | `w+1, s` | a waiter, under the lock, before it reads `seq` | Relaxed RMW |
//! | `w, s` | `w, s+k` | `notify_n(n)`, `k = min(n, w-s)`; then `seq += 1` (Release) and `FUTEX_WAKE` of `k` | Relaxed RMW |
//! | `w, s>0` | `w-1, s-1` | a waiter takes a signal and returns notified (also when it finds one as its timeout passes) | Relaxed RMW |
//! | `w, 0` | `w-1, 0` | a waiter whose timeout passed with no signal | Relaxed RMW |
//!
//! A waiter reads `seq`, then registers, **while still holding the
//! mutex**, unlocks, then loops: once `seq` has moved from the value it
//! read (a notify came since it began), take a signal; else sleep while
//! `seq` still holds the value it last read, then read `seq` again
//! (Acquire). So a notifier that waits right after its own notify never
//! takes the signal it granted to others. A notify grants its
//! signals *before* its Release bump of `seq`: a waiter whose read sees
//! the bump sees the signals; one that read the old value returns from
//! the futex at once. A notify counts the waiters registered before its
//! own `state` step. Waking `k` sleepers is enough: a woken waiter that
//! finds no signal was beaten to it by another registered waiter (awake,
//! or timing out), who took it; a waiter not asleep checks before it
//! sleeps.
//!
//! Notify under the lock, as Python requires. A notify made without it
//! may count a waiter without making it eligible or the reverse: the
//! number released stays exact, but the one released may be a caller
//! that began after the notify, and a wake meant for an earlier sleeper
//! may reach a later one (which passes it on once).
//!
//! More than 65 534 concurrent waiters (or a corrupt word) saturate the
//! count: a caller that cannot register waits the old way (it returns at
//! the next notify, a spurious wake-up for it), and notifies wake every
//! sleeper while the count is saturated.
//!
//! # Dead processes
//! A condvar holds no owner. A waiter that dies stays counted: later
//! notifies may grant it signals that later waiters then take (wake-ups
//! that are spurious for them, at most one per dead waiter and notify;
//! [`wait_while`](Condvar::wait_while) is robust to them). A process that
//! dies holding the *mutex* is reported when a waiter re-locks it:
//! [`LockError::OwnerDied`] (the lock is poisoned; see [`super::lock`]).
//! A process that was supposed
//! to notify and died never will: waiters that must not hang use
//! `wait_timeout`.
//!
//! ```
//! use shmkit_core::sync::{Condvar, Mutex};
//! use core::time::Duration;
//! let m = Mutex::new(0u32);
//! let cv = Condvar::new();
//! let g = m.lock()?;
//! let (g, timed_out) = cv.wait_timeout(g, Duration::from_millis(1))?;
//! assert!(timed_out);
//! drop(g);
//! cv.notify_all(); // nobody waits: no syscall
//! # Ok::<(), shmkit_core::sync::LockError>(())
//! ```

use core::fmt;
use core::time::Duration;

use bytemuck::Pod;

use super::lock::{acquire, Guard, LockError, Poisoned, RawLock};
use super::mutex::Block;
use super::{park, passed, Contention, DEFAULT_SPIN, TRY_ROUNDS};
use crate::primitive::{AtomicU32, Ordering};
use crate::shared::SharedCell;
use crate::wait::{self, Deadline};

/// A condition variable for a shmkit [`Mutex`](super::Mutex). `#[repr(C)]`, 8 bytes,
/// zero-filled = new.
#[repr(C)]
pub struct Condvar {
    /// Bumped by every notify; the futex word.
    seq: AtomicU32,
    /// `waiters << 16 | signals` (module docs).
    state: AtomicU32,
}

/// One waiter in [`Condvar`]'s `state` word.
const ONE_WAITER: u32 = 1 << 16;
/// The signals bits of the `state` word.
const SIGNALS: u32 = 0xFFFF;
/// The waiters count at which the `state` word is saturated.
const MAX_WAITERS: u32 = 0xFFFF;

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Condvar, u64);

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

impl Condvar {
    /// A new condvar.
    #[must_use]
    pub fn new() -> Condvar {
        Condvar {
            seq: AtomicU32::new(0),
            state: AtomicU32::new(0),
        }
    }

    /// Unlocks `guard`'s lock, sleeps until a notify releases it (see the
    /// module docs for the one case of another waiter taking it first),
    /// re-locks. Works with the guard of any exclusive shmkit lock
    /// ([`MutexGuard`](super::MutexGuard) usually).
    ///
    /// # Errors
    /// From re-locking: `OwnerDied` (a holder died meanwhile; nothing is
    /// held) or `NotRecoverable`.
    pub fn wait<'a, R: RawLock, D>(
        &self,
        guard: Guard<'a, R, D>,
    ) -> Result<Guard<'a, R, D>, LockError> {
        self.wait_until(guard, None).map(|(g, _)| g)
    }

    /// As [`wait`](Self::wait), giving up after `timeout`; returns the
    /// guard and whether it timed out (never before `timeout` elapsed).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<'a, R: RawLock, D>(
        &self,
        guard: Guard<'a, R, D>,
        timeout: Duration,
    ) -> Result<(Guard<'a, R, D>, bool), LockError> {
        self.wait_until(guard, Some(Deadline::after(timeout)))
    }

    /// Waits while `condition(&data)` holds, re-checking after each wake-up.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_while<'a, R: RawLock, T: Pod>(
        &self,
        mut guard: Guard<'a, R, SharedCell<'a, T>>,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<Guard<'a, R, SharedCell<'a, T>>, LockError> {
        while condition(&guard.get()) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// [`wait_while`](Self::wait_while) with a timeout; the bool is true if
    /// it timed out with the condition still holding.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout_while<'a, R: RawLock, T: Pod>(
        &self,
        mut guard: Guard<'a, R, SharedCell<'a, T>>,
        timeout: Duration,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<(Guard<'a, R, SharedCell<'a, T>>, bool), LockError> {
        let deadline = Deadline::after(timeout);
        while condition(&guard.get()) {
            let (g, timed_out) = self.wait_until(guard, Some(deadline))?;
            guard = g;
            if timed_out {
                let still = condition(&guard.get());
                return Ok((guard, still));
            }
        }
        Ok((guard, false))
    }

    fn wait_until<'a, R: RawLock, D>(
        &self,
        guard: Guard<'a, R, D>,
        deadline: Option<Deadline>,
    ) -> Result<(Guard<'a, R, D>, bool), LockError> {
        // Both under the lock, `seq` first (module docs): a notify before
        // this neither counts us nor is ours to take; one after it does
        // both.
        // SYNC POINT (wait): Acquire pairs with the Release bump in
        // `notify_n`: seeing it, we see the signals granted before it.
        let seq = self.seq.load(Ordering::Acquire);
        let registered = self.register();
        let (lock, data, consistent) = guard.into_parts();
        // Unlock as the guard's drop would (an unrepaired recovery guard
        // leaves the lock not recoverable, as any unlock of it would).
        // SAFETY: `into_parts` handed us the lock the guard held.
        unsafe {
            if consistent || lock.poison().load(Ordering::Relaxed) == 0 {
                lock.release_raw();
            } else {
                lock.release_unrepaired();
            }
        }
        let timed_out = if registered {
            self.sleep_for_signal(seq, deadline)
        } else {
            // Saturated (module docs): the old way, any notify ends it.
            let _ = park(&self.seq, seq, deadline, None);
            passed(deadline)
        };
        let g = acquire(
            lock,
            data,
            Block::Until(None),
            DEFAULT_SPIN,
            Poisoned::Refuse,
        )?;
        Ok((g, timed_out))
    }

    /// Counts the caller as a waiter; false if the count is saturated (or
    /// the word keeps moving): the caller then waits unregistered.
    fn register(&self) -> bool {
        let mut w = self.state.load(Ordering::Relaxed);
        for _ in 0..TRY_ROUNDS {
            if w >> 16 >= MAX_WAITERS {
                return false;
            }
            // Relaxed: the `state` word changes only by RMWs, whose single
            // modification order is all the counting needs; what a waiter
            // must see of a notify reaches it through `seq` (module docs).
            match self.state.compare_exchange_weak(
                w,
                w + ONE_WAITER,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
        false
    }

    /// Takes a granted signal if there is one, and stops counting as a
    /// waiter: `w, s>0` → `w-1, s-1`.
    fn try_take(&self) -> bool {
        let mut w = self.state.load(Ordering::Relaxed);
        for _ in 0..TRY_ROUNDS {
            // No signal, or (a corrupt word) a signal but no waiter.
            if w & SIGNALS == 0 || w < ONE_WAITER {
                return false;
            }
            // Relaxed: as in `register`.
            match self.state.compare_exchange_weak(
                w,
                w - ONE_WAITER - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
        false
    }

    /// Leaves after a timeout: takes a signal granted meanwhile if it may
    /// (`eligible`: a notify came since it began; the wait then counts as
    /// notified: returns true), else only stops counting as a waiter.
    /// Gives up (staying counted, as a dead waiter does) only against a
    /// word that moves under [`TRY_ROUNDS`] tries.
    fn leave(&self, eligible: bool) -> bool {
        let mut w = self.state.load(Ordering::Relaxed);
        let mut contention = Contention::new();
        loop {
            if w < ONE_WAITER {
                // Corrupt (we are counted): nothing to give back.
                return false;
            }
            // Never more signals than waiters left (a corrupt word).
            let took = (eligible || w & SIGNALS > (w >> 16) - 1) && w & SIGNALS != 0;
            let new = if took {
                w - ONE_WAITER - 1
            } else {
                w - ONE_WAITER
            };
            // Relaxed: as in `register`.
            match self
                .state
                .compare_exchange_weak(w, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                // A signal dropped only to keep a corrupt word's
                // signals within its waiters is no notification.
                Ok(_) => return took && eligible,
                Err(now) => {
                    w = now;
                    // The deadline has passed: no backing off, a bounded
                    // number of tries (`sync` docs).
                    if contention.give_up() {
                        return false;
                    }
                }
            }
        }
    }

    /// A registered waiter's sleep: until it takes a signal (returns
    /// false) or its deadline passes (true, unless it may take a signal
    /// then). `start` is the `seq` it read under the lock: only signals
    /// of a notify that bumped `seq` since are its to take (its own
    /// notify just before it waits is not).
    fn sleep_for_signal(&self, start: u32, deadline: Option<Deadline>) -> bool {
        let mut seq = start;
        // Wake-ups that found no signal for us (`sync` docs).
        let mut contention = Contention::new();
        let mut passed_on = false;
        loop {
            let eligible = seq != start;
            if eligible && self.try_take() {
                return false;
            }
            if passed(deadline) {
                return !self.leave(eligible);
            }
            let slept = park(&self.seq, seq, deadline, None);
            // SYNC POINT (wait): as in `wait_until`.
            let now = self.seq.load(Ordering::Acquire);
            if !slept {
                if now == start && !passed_on && self.pending() > 0 {
                    // Woken by a notify that came before we began (only
                    // possible when it runs without the lock): its wake was
                    // meant for an earlier waiter; pass it on, once.
                    passed_on = true;
                    wait::wake_one(&self.seq);
                }
                // Woken, or `seq` had moved: a round a peer bumping `seq`
                // can repeat.
                let _ = contention.back_off(None);
            }
            seq = now;
        }
    }

    /// Releases one waiter, if any (Python's `notify()`).
    pub fn notify_one(&self) {
        let _ = self.notify_n(1);
    }

    /// Releases at most `n` waiters (Python's `notify(n)`): as many as
    /// there are waiters not yet released, up to `n`, and returns that
    /// number. Each returns from its wait, unless a caller that started
    /// waiting after this call takes the notification first (module
    /// docs). Notify under the lock, as Python requires: the waiters
    /// counted are then exactly those waiting.
    ///
    /// ```
    /// use shmkit_core::sync::Condvar;
    /// assert_eq!(Condvar::new().notify_n(3), 0); // nobody waits
    /// ```
    pub fn notify_n(&self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let mut w = self.state.load(Ordering::Relaxed);
        let mut granted = 0;
        for _ in 0..TRY_ROUNDS {
            let (waiters, signals) = (w >> 16, w & SIGNALS);
            // `signals <= waiters` in an honest word; a corrupt one
            // grants nothing.
            let add = n.min(waiters.saturating_sub(signals));
            if add == 0 {
                break;
            }
            // Relaxed: published by the Release bump of `seq` below.
            match self
                .state
                .compare_exchange_weak(w, w + add, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    granted = add;
                    break;
                }
                Err(now) => w = now,
            }
        }
        // SYNC POINT (notify): Release: a waiter whose Acquire load of
        // `seq` sees this bump sees the signals granted above.
        self.seq.fetch_add(1, Ordering::Release);
        if w >> 16 >= MAX_WAITERS {
            // Saturated: unregistered waiters may sleep too.
            wait::wake_all(&self.seq);
        } else if granted > 0 {
            wait::wake_n(&self.seq, granted);
        }
        granted
    }

    /// Releases every waiter (Python's `notify_all()`).
    pub fn notify_all(&self) {
        let _ = self.notify_n(u32::MAX);
    }
}

/// Diagnostics: loads only, safe on a read-only mapping.
impl Condvar {
    /// How many callers are registered in `wait` (a hint: one that died
    /// waiting stays counted).
    #[must_use]
    pub fn sleepers(&self) -> u32 {
        // Relaxed: a picture for a human.
        self.state.load(Ordering::Relaxed) >> 16
    }

    /// Notifications granted and not yet taken (a hint: those granted to
    /// waiters that died stay).
    #[must_use]
    pub fn pending(&self) -> u32 {
        // Relaxed: a picture for a human.
        self.state.load(Ordering::Relaxed) & SIGNALS
    }

    /// The notify sequence: bumped (wrapping) by every `notify_*`.
    #[must_use]
    pub fn sequence(&self) -> u32 {
        self.seq.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;
    use crate::sync::Mutex;

    /// `notify_one` with one waiter asleep and another about to sleep
    /// (registered, not yet parked: the window where std's design and
    /// shmkit's earlier one returned both) releases exactly one of them.
    #[test]
    fn notify_one_releases_exactly_one_of_two_waiters() {
        let m = Mutex::new(0u32);
        let cv = Condvar::new();
        let timeout = Duration::from_millis(if cfg!(miri) { 50 } else { 200 });
        std::thread::scope(|s| {
            let asleep = s.spawn(|| {
                let g = m.lock().unwrap();
                let (_g, timed_out) = cv.wait_timeout(g, timeout).unwrap();
                timed_out
            });
            while cv.sleepers() != 1 {
                std::thread::yield_now();
            }
            // The second waiter's first half: under the lock, as `wait`.
            let g = m.lock().unwrap();
            let start = cv.seq.load(Ordering::Acquire);
            assert!(cv.register());
            drop(g);
            assert_eq!(cv.notify_n(1), 1, "one signal for two waiters");
            let second_timed_out = cv.sleep_for_signal(start, Some(Deadline::after(timeout)));
            let first_timed_out = asleep.join().unwrap();
            assert!(
                first_timed_out != second_timed_out,
                "exactly one released: first timed out {first_timed_out}, second {second_timed_out}"
            );
        });
        assert_eq!((cv.sleepers(), cv.pending()), (0, 0));
    }

    /// A notifier that waits right after its own notify (Python's
    /// `with cond: state = 0; cond.notify(); cond.wait_for(...)`) does not
    /// take the signal it granted: the other waiter gets it.
    #[test]
    fn a_notifier_does_not_take_its_own_signal() {
        let m = Mutex::new(0u32);
        let cv = Condvar::new();
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                let g = m.lock().unwrap();
                // Bounded, so that a failing notifier fails the test
                // rather than hanging it.
                let (g, timed_out) = cv
                    .wait_timeout_while(g, Duration::from_secs(10), |v| *v == 0)
                    .unwrap();
                (g.get(), timed_out)
            });
            while cv.sleepers() != 1 {
                std::thread::yield_now();
            }
            let g = m.lock().unwrap();
            g.set(1);
            cv.notify_one();
            let (g, timed_out) = cv.wait_timeout(g, Duration::from_millis(20)).unwrap();
            assert!(timed_out, "the notifier took its own signal");
            drop(g);
            assert_eq!(other.join().unwrap(), (1, false));
        });
        assert_eq!((cv.sleepers(), cv.pending()), (0, 0));
    }

    /// A corrupt `state` word (signals without waiters, a saturated
    /// count) makes waits return or time out, never panic or hang.
    #[test]
    fn corrupt_state_is_harmless() {
        let m = Mutex::new(0u32);
        let cv = Condvar::new();
        cv.state.store(0x0000_FFFF, Ordering::Relaxed); // signals, no waiters
        let (g, timed_out) = cv
            .wait_timeout(m.lock().unwrap(), Duration::from_millis(5))
            .unwrap();
        assert!(timed_out);
        drop(g);
        assert_eq!(cv.notify_n(1), 0);
        cv.state.store(0xFFFF_0000, Ordering::Relaxed); // saturated
        let (g, timed_out) = cv
            .wait_timeout(m.lock().unwrap(), Duration::from_millis(5))
            .unwrap();
        assert!(timed_out);
        drop(g);
        cv.notify_all();
    }
}
