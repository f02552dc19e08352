//! kill -9 with forced pid reuse, on every primitive that records an
//! owner, a holder or a role.
//!
//! Each test runs as pid 1 of a fresh pid namespace
//! ([`shmkit_testkit::pidns`]): a process holding something is SIGKILLed
//! (at a chosen point, and in the loop tests at random points), its pid is
//! given at once to a new process that stays alive, and the survivor's
//! view is checked: the death is reported (not mistaken for the new live
//! process), nothing committed is lost or duplicated, and every wait has a
//! way out. Loop tests make a few dozen kills by default and many more
//! with `SHMKIT_LONG_TESTS=1`; each prints its figures.
//!
//! They need root; without it they print `SKIPPED: <why>` (and fail under
//! `CI=true`).

mod common;

use std::time::{Duration, Instant};

use common::Pipe;
use common::{ObjectSegment, Rng};
use shmkit_core::owner::{self, test_hooks};
use shmkit_core::queue::stamped::StampedSpsc;
use shmkit_core::queue::RecvTimeoutError;
use shmkit_core::sync::{self as csync, LockError, LockTimeoutError, TryLockError};
use shmkit_posix::process;
use shmkit_posix::queue::{Queue, QueueParams};
use shmkit_posix::ring::Ring;
use shmkit_posix::sync as psync;
use shmkit_posix::Value;
use shmkit_testkit::pidns::{self, in_fresh_pid_namespace, say};
use shmkit_testkit::{fork, Child, Exit};
use std::cell::RefCell;

/// How long a survivor may take for a verdict the design gives within one
/// liveness slice (50 ms): generous, for a busy machine.
const VERDICT: Duration = Duration::from_secs(3);

/// Code of a scenario that found this process without a liveness token.
const NO_TOKENS: i32 = 80;

/// Runs `scenario` in a fresh pid namespace (see the module docs), after
/// checking that this process uses liveness tokens.
fn torture(test: &str, scenario: impl FnOnce() -> Result<(), String>) {
    in_fresh_pid_namespace(test, || {
        if !owner::uses_tokens() {
            say(&format!(
                "{test}: this process holds no liveness token (is /dev/shm writable?)"
            ));
            return NO_TOKENS;
        }
        match scenario() {
            Ok(()) => 0,
            Err(e) => {
                say(&format!("{test}: {e}"));
                1
            }
        }
    });
}

/// A random generator for `what`, its seed said past the capture (a
/// forked scenario's captured output is lost): `SHMKIT_SEED` replays it.
fn rng(what: &str) -> Rng {
    let seed = std::env::var("SHMKIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    say(&format!(
        "{what}: rng seed {seed} (SHMKIT_SEED={seed} replays it)"
    ));
    Rng::from_seed(seed)
}

/// Kill trials of the loop tests.
fn trials(default: usize, long: usize) -> usize {
    if common::long() {
        long
    } else {
        default
    }
}

/// Waits until `child` (a zombie or running) has ended, without reaping
/// it: until `/proc` shows it as a zombie.
fn until_zombie(pid: u32) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned));
        if state.as_deref() == Some("Z") {
            return Ok(());
        }
        if t0.elapsed() > VERDICT {
            return Err(format!("{pid} never became a zombie (state {state:?})"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

// ------------------------------------------------------------- process

/// A `process` child that died and was reaped on the way by
/// `active_children()` (as Python's does), its pid then reused: its
/// `Child` must not signal the new process (`terminate`, `kill`), and must
/// report the real exit (`-9`).
#[test]
fn a_reaped_child_never_signals_the_process_that_reused_its_pid() {
    torture(
        "a_reaped_child_never_signals_the_process_that_reused_its_pid",
        || {
            let mut child = process::spawn(|| -> u8 {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
            .map_err(|e| e.to_string())?;
            let pid = child.pid();
            child.kill();
            until_zombie(pid)?;
            // Reaps it into the registry: `child` has not asked yet.
            check(!process::active_children().contains(&pid), || {
                "active_children still lists the dead child".into()
            })?;
            let reuser = pidns::reuse_pid(pid)?;
            child.terminate();
            child.kill();
            check(!child.is_alive(), || "the dead child is alive".into())?;
            check(child.exitcode() == Some(-libc::SIGKILL), || {
                format!("exitcode {:?}, want -9", child.exitcode())
            })?;
            match child.join() {
                Err(process::JoinError::Killed {
                    signal: libc::SIGKILL,
                }) => {}
                other => return Err(format!("join: {other:?}, want Killed by 9")),
            }
            never_signalled(reuser, "the dead child's handle")
        },
    );
}

/// Ends `reuser` with SIGUSR1 and checks that this was its death: no
/// signal reached it before (whichever fatal signal comes first decides
/// how a process ends).
fn never_signalled(reuser: Child, what: &str) -> Result<(), String> {
    let pid = reuser.pid();
    // SAFETY: signalling our own unreaped child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) };
    let exit = reuser.wait();
    check(exit == Exit::Signal(libc::SIGUSR1), || {
        format!("the process that reused pid {pid} ended by {exit:?}: {what} signalled it")
    })
}

fn square(x: u64) -> u64 {
    x * x
}

/// A pool worker killed and reaped on the way by `active_children()`
/// before the pool noticed, its pid reused at once: the pool's
/// `terminate` never signals the new process, and a pool that goes on
/// replaces the worker and still computes everything.
#[test]
fn a_dead_pool_workers_reused_pid_is_never_signalled() {
    torture("a_dead_pool_workers_reused_pid_is_never_signalled", || {
        for go_on in [false, true] {
            let pool = process::Pool::builder()
                .processes(2)
                .build()
                .map_err(|e| e.to_string())?;
            let pid = pool.pids()[0];
            // SAFETY: plain kill of the pool's worker.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            until_zombie(pid)?;
            let _ = process::active_children();
            let reuser = pidns::reuse_pid(pid)?;
            if go_on {
                let r = pool.map(square, 0..100u64).map_err(|e| e.to_string())?;
                for (i, r) in r.iter().enumerate() {
                    match r {
                        Ok(v) if *v == (i * i) as u64 => {}
                        Err(process::TaskError::WorkerDied { pid: p, signal: 9 }) if *p == pid => {}
                        other => return Err(format!("task {i}: {other:?}")),
                    }
                }
                check(!pool.pids().contains(&pid), || {
                    format!("the dead worker {pid} is still listed")
                })?;
            }
            pool.terminate();
            drop(pool);
            never_signalled(reuser, "the pool")?;
        }
        Ok(())
    });
}

// --------------------------------------------------------------- locks

/// Forks a child that runs `hold` (takes something and returns true),
/// says so through `ready`, and sleeps until killed; waits for it.
fn holder(what: &str, hold: impl FnOnce() -> bool) -> Result<Child, String> {
    let ready = Pipe::new();
    let child = fork(|| {
        if !hold() {
            return 2;
        }
        ready.release(1);
        loop {
            // SAFETY: pause has no preconditions; we wait for SIGKILL.
            unsafe { libc::pause() };
        }
    });
    check(ready.take_within(VERDICT), || {
        format!("{what}: the holder never got ready")
    })?;
    Ok(child)
}

/// Forks a process that gets `pid` (free: its holder reaped) and runs
/// `body` there; its exit code.
fn in_reused_pid(pid: u32, body: impl FnOnce() -> i32) -> Result<Exit, String> {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
        .map_err(|e| format!("ns_last_pid: {e}"))?;
    let child = fork(|| {
        if std::process::id() != pid {
            return 10;
        }
        body()
    });
    child
        .wait_timeout(VERDICT)
        .ok_or_else(|| format!("the process in reused pid {pid} hung"))
}

/// A lock holder killed, its pid reused by a process that also draws the
/// dead holder's liveness token again (tokens are random: a released one
/// may be drawn again; forced here): the lock word names the new process's
/// own token and its main thread has the dead holder's thread id, yet it
/// never held the lock. It must get `OwnerDied` — not `WouldDeadlock`
/// (mutex), not a silent re-entry of a lock it never took (reentrant
/// mutex). Only the random nonce in the owner record's tag tells the two
/// apart, and it clashes 1 time in 1024: a trial where it did is counted,
/// not checked, and at most one such clash is accepted. Failed every trial
/// before the nonce (the tag was the thread id alone).
#[test]
fn a_dead_holders_token_drawn_again_in_its_reused_pid_is_owner_died() {
    torture(
        "a_dead_holders_token_drawn_again_in_its_reused_pid_is_owner_died",
        || {
            let token = owner::FIRST_TOKEN + 0x5eed;
            let (trials, mut clashes) = (4, 0);
            for trial in 0..trials {
                let m =
                    psync::Mutex::anonymous(csync::Mutex::new(0u64)).map_err(|e| e.to_string())?;
                let r = psync::ReentrantMutex::anonymous(csync::ReentrantMutex::new(0u64))
                    .map_err(|e| e.to_string())?;
                let tag = shmkit_posix::Value::<u32>::anonymous(0).map_err(|e| e.to_string())?;
                let h = holder("mutex and rlock", || {
                    test_hooks::force_token_draws(token);
                    let (Ok(a), Ok(b)) = (m.lock(), r.lock()) else {
                        return false;
                    };
                    std::mem::forget((a, b));
                    tag.set(test_hooks::thread_tag());
                    true
                })?;
                let pid = h.pid();
                h.kill9();
                h.wait();
                let exit = in_reused_pid(pid, || {
                    test_hooks::force_token_draws(token);
                    if owner::thread_owner_id() != token {
                        say("the reusing process did not draw the dead holder's token");
                        return 24;
                    }
                    if test_hooks::thread_tag() == tag.get() {
                        return 25; // a nonce clash: nothing can tell them apart
                    }
                    let mutex = match m.try_lock() {
                        Err(TryLockError::Lock(LockError::OwnerDied)) => 0,
                        Err(e) => {
                            say(&format!("mutex: {e:?}, want OwnerDied"));
                            20
                        }
                        Ok(_) => {
                            say("mutex: locked clean, want OwnerDied");
                            21
                        }
                    };
                    let rlock = match r.try_lock() {
                        Err(TryLockError::Lock(LockError::OwnerDied)) => 0,
                        Err(e) => {
                            say(&format!("rlock: {e:?}, want OwnerDied"));
                            22
                        }
                        Ok(g) => {
                            say(&format!(
                                "rlock: entered at depth {} without OwnerDied",
                                r.depth()
                            ));
                            drop(g);
                            23
                        }
                    };
                    mutex.max(rlock)
                })?;
                match exit {
                    Exit::Code(0) => {}
                    Exit::Code(25) => clashes += 1,
                    other => return Err(format!("trial {trial}: the reusing process: {other:?}")),
                }
            }
            check(clashes <= 1, || {
                format!(
                    "in {clashes} of {trials} trials the reusing process's owner record \
                     (token, tag) equalled the dead holder's: nothing tells them apart"
                )
            })
        },
    );
}

// ----------------------------------------------------- random kill loops

/// What a loop test counted.
#[derive(Default)]
struct Tally {
    kills: usize,
    /// Kills that found the victim holding something (reported dead).
    inside: usize,
}

/// The loop tests' skeleton: `trials` times, forks `victim` (which bumps
/// `progress` after every step and never returns while all is well),
/// SIGKILLs it after a random number of steps (1 to `max_steps`, plus a
/// random few microseconds), gives its pid to a new process that lives on,
/// and runs `survivor` (given the trial number and the victim's last
/// progress count) while that process lives;
/// `survivor` says whether the victim died holding something. Prints the
/// tally.
fn kill_loop(
    what: &str,
    trials: usize,
    max_steps: u64,
    victim: impl Fn(&Value<u64>) -> i32,
    mut survivor: impl FnMut(usize, u64) -> Result<bool, String>,
) -> Result<(), String> {
    let mut rng = rng(what);
    let mut tally = Tally::default();
    let progress = Value::<u64>::anonymous(0).map_err(|e| e.to_string())?;
    for trial in 0..trials {
        progress.set(0);
        let v = fork(|| victim(&progress));
        // At least one step: a victim killed before it attached to a
        // queue never held its role (the peer rightly waits for one).
        let target = 1 + rng.below(max_steps);
        let t0 = Instant::now();
        while progress.get() < target {
            if t0.elapsed() > VERDICT || !pidns::runs(&v) {
                let pid = v.pid();
                let exit = v.wait_timeout(Duration::from_millis(100));
                return Err(format!(
                    "{what}, trial {trial}: victim {pid} stalled at step {} of {target} ({exit:?})",
                    progress.get()
                ));
            }
            std::hint::spin_loop();
        }
        // A random phase within a step.
        let end = Instant::now() + rng.micros(50);
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        let (exit, reuser) = pidns::kill_and_reuse(v)?;
        check(exit == Exit::Signal(libc::SIGKILL), || {
            format!("{what}, trial {trial}: the victim ended by {exit:?}")
        })?;
        let inside =
            survivor(trial, progress.get()).map_err(|e| format!("{what}, trial {trial}: {e}"))?;
        tally.kills += 1;
        tally.inside += usize::from(inside);
        // The reusing process lived through the check.
        check(pidns::runs(&reuser), || {
            format!("{what}, trial {trial}: the process reusing the pid died")
        })?;
        drop(reuser);
    }
    say(&format!(
        "{what}: {} kills, each pid reused at once; {} caught the victim mid-operation",
        tally.kills, tally.inside
    ));
    Ok(())
}

/// The survivor's side of a lock the victim took, bumped its data to odd,
/// to even, and released: a clean lock must hold even data (else the
/// holder died inside and nobody was told); `OwnerDied` is repaired (data
/// rounded up to even, marked consistent). Any other answer within
/// [`VERDICT`] — a time-out above all, which is the new process taken for
/// the dead holder — fails. Gives whether the holder died inside.
macro_rules! settle {
    ($locked:expr, $recover:expr) => {{
        match $locked {
            Ok(g) => {
                let v = g.get();
                check(v % 2 == 0, || {
                    format!("a clean lock over odd data {v}: the holder died inside and nobody was told")
                })?;
                false
            }
            Err(LockTimeoutError::Lock(LockError::OwnerDied)) => {
                let mut g = $recover.map_err(|e| format!("recover: {e:?}"))?;
                check(g.owner_died(), || "recover without owner_died".into())?;
                g.set((g.get() + 1) & !1);
                g.mark_consistent();
                true
            }
            Err(e) => {
                return Err(format!(
                    "{e:?} within {VERDICT:?}: the new process with the holder's pid taken for it?"
                ))
            }
        }
    }};
}

/// A victim's end when it has done everything: wait for the kill.
fn idle() -> i32 {
    loop {
        // SAFETY: pause has no preconditions; we wait for SIGKILL.
        unsafe { libc::pause() };
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn lost(e: impl std::fmt::Debug) -> i32 {
    say(&format!("victim: {e:?}"));
    3
}

/// Mutex, reentrant mutex held at depth 2 and 3, rwlock writer, and the
/// condition's mutex (with a notify inside): their holder SIGKILLed at
/// random points, its pid reused at once. The next locker gets the lock
/// within a liveness slice, clean over consistent data or `OwnerDied`.
#[test]
fn locks_killed_at_random_points_with_pid_reuse() {
    torture("locks_killed_at_random_points_with_pid_reuse", || {
        let n = trials(12, 300);
        let m = psync::Mutex::anonymous(csync::Mutex::new(0u64)).map_err(err)?;
        kill_loop(
            "mutex",
            n,
            3000,
            |p| loop {
                match m.lock() {
                    Ok(g) => {
                        g.set(g.get() + 1);
                        g.set(g.get() + 1);
                    }
                    Err(e) => return lost(e),
                }
                p.set(p.get() + 1);
            },
            |_, _| Ok(settle!(m.lock_timeout(VERDICT), m.recover())),
        )?;
        let r = psync::ReentrantMutex::anonymous(csync::ReentrantMutex::new(0u64)).map_err(err)?;
        kill_loop(
            "reentrant mutex",
            n,
            3000,
            |p| loop {
                let depth = 2 + p.get() % 2;
                let mut guards = Vec::new();
                for _ in 0..depth {
                    match r.lock() {
                        Ok(g) => guards.push(g),
                        Err(e) => return lost(e),
                    }
                }
                guards[0].set(guards[0].get() + 1);
                guards.pop();
                guards[0].set(guards[0].get() + 1);
                drop(guards);
                p.set(p.get() + 1);
            },
            |_, _| {
                let died = settle!(r.lock_timeout(VERDICT), r.recover());
                // Taken over at depth 1: one unlock frees it (a count
                // the dead holder left would keep it held).
                let d = r.depth();
                check(d == 0, || format!("depth {d} after the survivor unlocked"))?;
                Ok(died)
            },
        )?;
        let w = psync::RwLock::anonymous(csync::RwLock::new(0u64)).map_err(err)?;
        kill_loop(
            "rwlock writer",
            n,
            3000,
            |p| loop {
                match w.write() {
                    Ok(g) => {
                        g.set(g.get() + 1);
                        g.set(g.get() + 1);
                    }
                    Err(e) => return lost(e),
                }
                p.set(p.get() + 1);
            },
            |trial, _| {
                if trial % 2 == 0 {
                    // A reader first: it must not hang either.
                    match w.read_timeout(VERDICT) {
                        Ok(g) => {
                            let v = g.get();
                            check(v % 2 == 0, || format!("a reader saw odd data {v}"))?;
                        }
                        Err(LockTimeoutError::Lock(LockError::OwnerDied)) => {}
                        Err(e) => return Err(format!("reader: {e:?}")),
                    }
                }
                Ok(settle!(w.write_timeout(VERDICT), w.recover()))
            },
        )?;
        let c = psync::Condition::anonymous(csync::Condition::new(0u64)).map_err(err)?;
        kill_loop(
            "condition",
            n,
            3000,
            |p| loop {
                match c.lock() {
                    Ok(g) => {
                        g.set(g.get() + 1);
                        c.notify_all();
                        g.set(g.get() + 1);
                    }
                    Err(e) => return lost(e),
                }
                p.set(p.get() + 1);
            },
            |_, _| Ok(settle!(c.lock_timeout(VERDICT), c.recover())),
        )
    });
}

// ------------------------------------------------ waits with a dead peer

/// Forks a process that runs `body` and reports its exit code.
fn party(body: impl FnOnce() -> i32) -> Child {
    fork(body)
}

/// Waits for `c`'s exit code, at most [`VERDICT`] plus `extra`.
fn code_of(c: Child, what: &str, extra: Duration) -> Result<i32, String> {
    match c.wait_timeout(VERDICT + extra) {
        Some(Exit::Code(code)) => Ok(code),
        Some(other) => Err(format!("{what}: ended by {other:?}")),
        None => Err(format!("{what}: still waiting after {:?}", VERDICT + extra)),
    }
}

/// A condition's lock holder dies while a waiter, already notified, waits
/// to re-lock; its pid is reused at once: the waiter gets `OwnerDied`
/// within a liveness slice. Then a waiter dies asleep, its pid reused: a
/// later `notify_one` still wakes the live waiter (the dead one holds no
/// place in the queue).
#[test]
fn condition_holder_and_waiter_killed_with_pid_reuse() {
    torture("condition_holder_and_waiter_killed_with_pid_reuse", || {
        let c = psync::Condition::anonymous(csync::Condition::new(0u64)).map_err(err)?;
        // 1. The holder dies while the waiter waits for the lock.
        let waiter = party(|| {
            let Ok(g) = c.lock() else { return 2 };
            g.set(1); // "I am waiting", under the lock
            match c.wait_timeout(g, 2 * VERDICT) {
                Err(LockError::OwnerDied) => 0,
                Ok((_, timed_out)) => 10 + i32::from(timed_out),
                Err(_) => 12,
            }
        });
        let h = holder("condition holder", || loop {
            match c.lock() {
                Ok(g) if g.get() == 1 => {
                    c.notify_all();
                    std::mem::forget(g);
                    return true;
                }
                Ok(g) => drop(g),
                Err(_) => return false,
            }
            std::thread::yield_now();
        })?;
        let (_, reuser) = pidns::kill_and_reuse(h)?;
        let code = code_of(waiter, "the notified waiter", Duration::ZERO)?;
        check(code == 0, || {
            format!("the notified waiter, re-locking after the holder died: code {code}, want OwnerDied (0)")
        })?;
        drop(reuser);
        let mut g = c.recover().map_err(|e| format!("recover: {e:?}"))?;
        g.set(0);
        g.mark_consistent();
        drop(g);
        // 2. A waiter dies asleep; another waits; one notify wakes it.
        let sleeping = |flag: u64| {
            let c = &c;
            move || {
                let Ok(g) = c.lock() else { return 2 };
                g.set(g.get() | flag);
                match c.wait_timeout_while(g, 2 * VERDICT, |v| *v & 4 == 0) {
                    Ok((_, false)) => 0,
                    Ok((_, true)) => 11,
                    Err(_) => 12,
                }
            }
        };
        let until = |bits: u64| -> Result<(), String> {
            let t0 = Instant::now();
            while c.lock().map_err(|e| format!("{e:?}"))?.get() & bits != bits {
                check(t0.elapsed() < VERDICT, || "a waiter never waited".into())?;
                std::thread::yield_now();
            }
            Ok(())
        };
        let doomed = party(sleeping(1));
        until(1)?;
        let (_, reuser) = pidns::kill_and_reuse(doomed)?;
        let live = party(sleeping(2));
        until(2)?;
        {
            let g = c.lock().map_err(|e| format!("{e:?}"))?;
            g.set(g.get() | 4);
            c.notify_one();
        }
        let code = code_of(live, "the live waiter", Duration::ZERO)?;
        check(code == 0, || {
            format!("the live waiter after one notify_one (a dead waiter before it): code {code}, want woken (0)")
        })?;
        drop(reuser);
        Ok(())
    });
}

/// A semaphore's acquirer killed holding its permit, its pid reused: the
/// permit is lost, as with POSIX `sem_t` and Python (documented): a timed
/// acquire returns `TimedOut` (its way out), and a survivor's `release`
/// gives it back. An acquirer killed asleep, its pid reused: a `release`
/// still wakes the live sleeper.
#[test]
fn semaphore_acquirer_killed_with_pid_reuse_loses_only_its_permit() {
    torture(
        "semaphore_acquirer_killed_with_pid_reuse_loses_only_its_permit",
        || {
            let s = psync::Semaphore::anonymous(csync::Semaphore::bounded(1)).map_err(err)?;
            let h = holder("semaphore holder", || {
                s.acquire().forget();
                true
            })?;
            let (_, reuser) = pidns::kill_and_reuse(h)?;
            check(s.available() == 0, || {
                format!("{} permits after the holder died", s.available())
            })?;
            check(
                matches!(
                    s.acquire_timeout(Duration::from_millis(100)),
                    Err(csync::AcquireError::TimedOut)
                ),
                || "a timed acquire of the lost permit did not time out".into(),
            )?;
            s.release().map_err(|e| e.to_string())?;
            drop(reuser);
            // An acquirer asleep (no permit) killed, its pid reused; a
            // live sleeper then gets the one released permit.
            let held = s.acquire();
            let asleep = |s: &psync::Semaphore| {
                let t0 = Instant::now();
                let before = s.sleepers();
                move |s: &psync::Semaphore| -> Result<(), String> {
                    while s.sleepers() <= before {
                        check(t0.elapsed() < VERDICT, || "an acquirer never slept".into())?;
                        std::thread::yield_now();
                    }
                    Ok(())
                }
            };
            let wait = asleep(&s);
            let doomed = party(|| {
                s.acquire().forget();
                0
            });
            wait(&s)?;
            let (_, reuser) = pidns::kill_and_reuse(doomed)?;
            let wait = asleep(&s);
            let live = party(|| match s.acquire_timeout(2 * VERDICT) {
                Ok(p) => {
                    p.forget();
                    0
                }
                Err(_) => 11,
            });
            wait(&s)?;
            drop(held);
            let code = code_of(live, "the live acquirer", Duration::ZERO)?;
            check(code == 0, || {
                format!(
                    "the live acquirer after one release (a dead sleeper before it): code {code}"
                )
            })?;
            drop(reuser);
            Ok(())
        },
    );
}

/// A reader SIGKILLed holding a read lock, its pid reused: readers go on,
/// and a writer's wait has its way out — `try_write` says `WouldBlock`
/// and `write_timeout` times out (the count cannot name its holders: the
/// documented limit, `rwlock` module docs).
#[test]
fn rwlock_reader_killed_with_pid_reuse_leaves_writers_a_way_out() {
    torture(
        "rwlock_reader_killed_with_pid_reuse_leaves_writers_a_way_out",
        || {
            let w = psync::RwLock::anonymous(csync::RwLock::new(7u64)).map_err(err)?;
            let h = holder("reader", || w.read().map(std::mem::forget).is_ok())?;
            let (_, reuser) = pidns::kill_and_reuse(h)?;
            check(w.read().map(|g| g.get()) == Ok(7), || {
                "a reader after the dead reader".into()
            })?;
            check(
                matches!(w.try_write(), Err(TryLockError::WouldBlock)),
                || "try_write did not say WouldBlock".into(),
            )?;
            check(
                matches!(
                    w.write_timeout(Duration::from_millis(100)),
                    Err(LockTimeoutError::TimedOut)
                ),
                || "write_timeout did not time out".into(),
            )?;
            // The timed-out writer left nothing behind: readers still enter.
            check(w.try_read().is_ok(), || {
                "readers blocked after a timed-out writer".into()
            })?;
            drop(reuser);
            Ok(())
        },
    );
}

/// Barrier parties: one that had arrived in the round is killed and its
/// pid reused: that round completes (it had arrived), and the next one
/// breaks for the waiters within a slice (not when their timeout ends).
#[test]
fn barrier_arrived_party_killed_with_pid_reuse_breaks_the_next_round() {
    torture(
        "barrier_arrived_party_killed_with_pid_reuse_breaks_the_next_round",
        || {
            let b = psync::Barrier::anonymous(2).map_err(err)?;
            let arrived = Pipe::new();
            let p = party(|| match b.wait_timeout(VERDICT) {
                Ok(_) => {
                    arrived.release(1);
                    loop {
                        // SAFETY: pause has no preconditions.
                        unsafe { libc::pause() };
                    }
                }
                Err(_) => 2,
            });
            check(b.wait_timeout(VERDICT).is_ok(), || "round 1 failed".into())?;
            check(arrived.take_within(VERDICT), || {
                "the party never passed".into()
            })?;
            let (_, reuser) = pidns::kill_and_reuse(p)?;
            let t0 = Instant::now();
            let r = b.wait_timeout(4 * VERDICT);
            check(
                r == Err(csync::BarrierError::Broken) && t0.elapsed() < VERDICT,
                || {
                    format!(
                        "round 2: {r:?} after {:?}, want Broken within a slice",
                        t0.elapsed()
                    )
                },
            )?;
            drop(reuser);
            Ok(())
        },
    );
}

// ------------------------------------------------------------ queues

/// Messages a consumer victim finds queued at its start.
const QUEUED: u64 = 1000;

/// Producer and consumer of a `Pod` queue kind (ring, stamped ring, MPMC)
/// SIGKILLed at random points, each pid reused at once by a process that
/// lives on; a fresh queue per trial, in `$slot` (a `RefCell`), made by
/// `$make(capacity)`.
///
/// - Producer killed (capacity 2: often asleep on a full queue; or 1024:
///   mid-stream): the consumer gets a gap-free prefix, the victim's
///   recorded count or one more (pushed, not yet recorded), then
///   `Disconnected` within a slice — the new process is not taken for the
///   producer.
/// - Consumer killed (with [`QUEUED`] messages queued and the producer
///   gone): a new consumer attaches (the role is not `Taken` by the new
///   process) and gets every message the victim did not record, except at
///   most the one it popped and had not recorded; nothing twice.
macro_rules! pod_queue_kills {
    ($what:expr, $n:expr, $slot:ident, $make:expr) => {{
        let make = $make;
        for (capacity, steps) in [(2usize, 2u64), (1024, 1000)] {
            *$slot.borrow_mut() = make(capacity)?;
            kill_loop(
                &format!("{} producer, capacity {capacity}", $what),
                $n,
                steps,
                |p| {
                    let q = $slot.borrow();
                    let Ok(mut tx) = q.view().producer() else {
                        return 2;
                    };
                    for seq in 0.. {
                        if tx.push(seq).is_err() {
                            return 3;
                        }
                        p.set(seq + 1);
                    }
                    4
                },
                |_, recorded| {
                    let inside = {
                        let q = $slot.borrow();
                        let mut rx = q.view().consumer().map_err(|e| format!("consumer: {e}"))?;
                        let mut got = 0u64;
                        loop {
                            match rx.pop_timeout(VERDICT) {
                                Ok(v) => {
                                    check(v == got, || format!("got {v}, want {got}"))?;
                                    got += 1;
                                }
                                Err(RecvTimeoutError::Disconnected) => break,
                                Err(e) => {
                                    return Err(format!(
                                        "after {got} messages: {e:?}, want Disconnected (the new process taken for the producer?)"
                                    ))
                                }
                            }
                        }
                        check(got == recorded || got == recorded + 1, || {
                            format!("received {got}, the producer recorded {recorded}")
                        })?;
                        got != recorded
                    };
                    *$slot.borrow_mut() = make(capacity)?;
                    Ok(inside)
                },
            )?;
        }
        let popped = shmkit_posix::Array::<u64>::anonymous(QUEUED as usize).map_err(err)?;
        let refill = || -> Result<(), String> {
            *$slot.borrow_mut() = make(1024)?;
            let q = $slot.borrow();
            let mut tx = q.view().producer().map_err(|e| format!("producer: {e}"))?;
            for seq in 0..QUEUED {
                tx.push(seq).map_err(|e| format!("fill: {e:?}"))?;
            }
            Ok(()) // the producer leaves: consumers drain, then Disconnected
        };
        refill()?;
        kill_loop(
            &format!("{} consumer", $what),
            $n,
            QUEUED - 10,
            |p| {
                let q = $slot.borrow();
                let Ok(mut rx) = q.view().consumer() else {
                    return 2;
                };
                for i in 0..QUEUED as usize {
                    match rx.pop_timeout(VERDICT) {
                        Ok(v) => {
                            let _ = popped.set(i, v);
                            p.set(i as u64 + 1);
                        }
                        Err(_) => return 3,
                    }
                    // Slower than the producer was, so that the kill
                    // lands mid-stream.
                    for _ in 0..500 {
                        std::hint::spin_loop();
                    }
                }
                idle()
            },
            |_, recorded| {
                let inside = {
                    let q = $slot.borrow();
                    for i in 0..recorded {
                        let v = popped.get(i as usize);
                        check(v == Some(i), || format!("the victim recorded {v:?} at {i}"))?;
                    }
                    let mut rx = q.view().consumer().map_err(|e| {
                        format!("a new consumer: {e} (the new process taken for the dead one?)")
                    })?;
                    let first = match rx.pop_timeout(VERDICT) {
                        Ok(v) => v,
                        Err(RecvTimeoutError::Disconnected) => QUEUED,
                        Err(e) => return Err(format!("the new consumer: {e:?}")),
                    };
                    check(first == recorded || first == recorded + 1, || {
                        format!("the new consumer's first is {first}, the victim recorded {recorded}")
                    })?;
                    let mut want = first + 1;
                    while want < QUEUED {
                        match rx.pop_timeout(VERDICT) {
                            Ok(v) if v == want => want += 1,
                            other => return Err(format!("want {want}, got {other:?}")),
                        }
                    }
                    match rx.pop_timeout(VERDICT) {
                        Err(RecvTimeoutError::Disconnected) => {}
                        other => return Err(format!("after the last: {other:?}, want Disconnected")),
                    }
                    first != recorded
                };
                refill()?;
                Ok(inside)
            },
        )
    }};
}

/// See [`pod_queue_kills`]: the index ring.
#[test]
fn ring_roles_killed_at_random_points_with_pid_reuse() {
    torture("ring_roles_killed_at_random_points_with_pid_reuse", || {
        let slot = RefCell::new(Ring::<u64>::anonymous(2).map_err(err)?);
        pod_queue_kills!("ring", trials(8, 200), slot, |cap| Ring::<u64>::anonymous(
            cap
        )
        .map_err(err))
    });
}

/// See [`pod_queue_kills`]: the stamped ring.
#[test]
fn stamped_roles_killed_at_random_points_with_pid_reuse() {
    torture(
        "stamped_roles_killed_at_random_points_with_pid_reuse",
        || {
            let slot = RefCell::new(ObjectSegment::<StampedSpsc<u64>>::anonymous(2));
            pod_queue_kills!("stamped ring", trials(8, 200), slot, |cap| Ok::<_, String>(
                ObjectSegment::<StampedSpsc<u64>>::anonymous(cap)
            ))
        },
    );
}

/// See [`pod_queue_kills`]: the MPMC queue (2 producer, 2 consumer slots).
#[test]
fn mpmc_roles_killed_at_random_points_with_pid_reuse() {
    torture("mpmc_roles_killed_at_random_points_with_pid_reuse", || {
        let make =
            |cap| Queue::<u64>::anonymous(QueueParams::new(cap).with_registry(2, 2)).map_err(err);
        let slot = RefCell::new(make(2)?);
        pod_queue_kills!("mpmc", trials(8, 200), slot, make)
    });
}

const MSG_MAX: usize = 40;

/// Writes message `seq` into a claimed slot byte by byte (spinning a
/// little between bytes if `spin`: a kill then often lands mid-encode).
fn encode(
    w: &mut shmkit_core::queue::msg::SlotWriter<'_>,
    seq: u64,
    spin: bool,
) -> Result<(), shmkit_core::queue::msg::TooLong> {
    w.write(&seq.to_le_bytes())?;
    for _ in 8..msg_len(seq) {
        w.write(&[seq as u8])?;
        if spin {
            for _ in 0..50 {
                std::hint::spin_loop();
            }
        }
    }
    Ok(())
}

/// Byte message `seq`: its number, then `seq % 33` bytes of `seq as u8`.
fn msg_len(seq: u64) -> usize {
    8 + (seq % 33) as usize
}

/// The number of a received message, if it is whole.
fn msg_seq(bytes: &[u8]) -> Option<u64> {
    let seq = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    (bytes.len() == msg_len(seq) && bytes[8..].iter().all(|&b| b == seq as u8)).then_some(seq)
}

/// The byte-message queue's (and the joinable queue's) producer: SIGKILLed
/// at random points — often while its slot is claimed and its encoder
/// runs (it writes byte by byte) — its pid reused at once. The consumer
/// gets whole messages, a gap-free prefix (the victim's recorded count or
/// one more), and then: with no other producer, `Disconnected` within a
/// slice (the new process is not taken for the producer, nor is its dead
/// claim waited for); with a live producer (the parent), the queue goes
/// on across the dead claim and the wrap.
#[test]
fn msg_producer_killed_mid_encode_with_pid_reuse() {
    use shmkit_core::queue::joinable::JoinableQueue;
    use shmkit_core::queue::msg::{MsgParams, MsgQueue, MsgRecvError};
    use shmkit_posix::Shared;

    torture("msg_producer_killed_mid_encode_with_pid_reuse", || {
        let mut rng = rng("msg/joinable producer");
        let (mut kills, mut mid) = (0, 0);
        let recorded = Value::<u64>::anonymous(0).map_err(err)?;
        for trial in 0..trials(16, 400) {
            let capacity = if trial % 4 < 2 { 1 } else { 4 };
            let params = MsgParams::new(capacity, MSG_MAX).with_registry(2, 1);
            let joinable = trial % 8 >= 4;
            let (mq, jq);
            // The two kinds' producers differ in type: each closure below
            // matches on which one this trial uses.
            if joinable {
                jq = Some(Shared::<JoinableQueue>::anonymous(params).map_err(err)?);
                mq = None;
            } else {
                mq = Some(Shared::<MsgQueue>::anonymous(params).map_err(err)?);
                jq = None;
            }
            /// Attaches a producer of this trial's kind; `$body` sends
            /// with `$send(seq, spin)`.
            macro_rules! producing {
                (|$send:ident| $body:expr) => {{
                    match (&mq, &jq) {
                        (Some(q), _) => match q.view().producer() {
                            Ok(mut tx) => {
                                let mut $send = |seq: u64, spin: bool| {
                                    tx.send_with_deadline(|w| encode(w, seq, spin), None)
                                        .map(drop)
                                        .map_err(|e| format!("{e:?}"))
                                };
                                $body
                            }
                            Err(e) => Err(err(e)),
                        },
                        (_, Some(q)) => match q.view().producer() {
                            Ok(mut tx) => {
                                let mut $send = |seq: u64, spin: bool| {
                                    tx.send_with_deadline(|w| encode(w, seq, spin), None)
                                        .map(drop)
                                        .map_err(|e| format!("{e:?}"))
                                };
                                $body
                            }
                            Err(e) => Err(err(e)),
                        },
                        _ => unreachable!(),
                    }
                }};
            }
            recorded.set(0);
            let live_producer = trial % 2 == 1;
            let victim = fork(|| {
                let r: Result<(), String> = producing!(|send| {
                    let mut seq = 0;
                    loop {
                        if let Err(e) = send(seq, true) {
                            break Err(e);
                        }
                        seq += 1;
                        recorded.set(seq);
                    }
                });
                i32::from(r.is_err()) + 3
            });
            let mut rx = match (&mq, &jq) {
                (Some(q), _) => q.view().consumer(),
                (_, Some(q)) => q.view().consumer(),
                _ => unreachable!(),
            }
            .map_err(err)?;
            let mut buf = [0u8; MSG_MAX];
            let mut recv = |timeout| -> Result<_, String> {
                Ok(rx
                    .recv_into_timeout(&mut buf, timeout)
                    .map(|n| msg_seq(&buf[..n])))
            };
            let kill_after = 1 + rng.below(200);
            let mut got = 0u64;
            while got < kill_after {
                match recv(VERDICT)? {
                    Ok(Some(seq)) if seq == got => got += 1,
                    other => return Err(format!("trial {trial}: message {got}: {other:?}")),
                }
            }
            let end = Instant::now() + rng.micros(30);
            while Instant::now() < end {
                std::hint::spin_loop();
            }
            let (exit, reuser) = pidns::kill_and_reuse(victim)?;
            check(exit == Exit::Signal(libc::SIGKILL), || {
                format!("trial {trial}: the victim ended by {exit:?}")
            })?;
            kills += 1;
            // A live producer: attached after the victim died, so the
            // dead claim is in the way of its sends and the wrap.
            let parent_sends = if live_producer {
                3 * capacity as u64
            } else {
                0
            };
            let rec = recorded.get();
            let mut drain = |got: &mut u64, live: bool| -> Result<(), String> {
                loop {
                    match recv(if live { Duration::from_millis(200) } else { VERDICT })? {
                        Ok(Some(seq)) if seq == *got => *got += 1,
                        Err(MsgRecvError::Disconnected) if !live => break,
                        Err(MsgRecvError::Timeout) if live => break,
                        other => {
                            return Err(format!(
                                "trial {trial}: after {got} messages ({rec} recorded): {other:?} (the new process taken for the producer?)"
                            ))
                        }
                    }
                }
                check(*got == rec || *got == rec + 1, || {
                    format!("trial {trial}: received {got}, the victim recorded {rec}")
                })
            };
            if live_producer {
                producing!(|send| {
                    drain(&mut got, true)?;
                    for i in 0..parent_sends {
                        let seq = got + i;
                        send(seq, false)
                            .map_err(|e| format!("trial {trial}: the live producer: {e}"))?;
                        match recv(VERDICT)? {
                            Ok(Some(s)) if s == seq => {}
                            other => {
                                return Err(format!(
                                    "trial {trial}: the live producer's message {i} after the dead claim: {other:?}"
                                ))
                            }
                        }
                    }
                    Ok::<(), String>(())
                })?;
            } else {
                drain(&mut got, false)?;
            }
            mid += usize::from(got == rec);
            if let Some(q) = &jq {
                // Every message sent counted a task; nobody marked one
                // done. A victim killed between counting its message and
                // publishing it left one more (documented: `joinable`
                // module docs; `join_timeout` is the way out).
                let (want, n) = (got + parent_sends, u64::from(q.view().unfinished()));
                check(n == want || n == want + 1, || {
                    format!("trial {trial}: {n} unfinished tasks, want {want} (one per committed message) or one more")
                })?;
                check(
                    q.view().join_timeout(Duration::from_millis(20)).is_err(),
                    || format!("trial {trial}: join returned with tasks unfinished"),
                )?;
            }
            drop(reuser);
        }
        say(&format!(
            "msg/joinable producer: {kills} kills, each pid reused at once; {mid} with every commit recorded (killed encoding or waiting), {} between a commit and its record",
            kills - mid
        ));
        Ok(())
    });
}

/// The byte pipe's two ends SIGKILLed at random points, each pid reused
/// at once by a process that lives on:
/// - the sender (with room, or asleep on a full pipe): the receiver gets
///   whole messages in order, the sender's recorded count or one more,
///   then `Eof` within a slice;
/// - the receiver: the sender's next send fails with `Disconnected`
///   within a slice (not a time-out: the new process is not taken for
///   the receiver), and the receiver's recorded messages are a gap-free
///   prefix of what was sent.
#[test]
fn pipe_ends_killed_at_random_points_with_pid_reuse() {
    use shmkit_core::queue::pipe::{PipeRecvError, PipeSendError};
    use shmkit_posix::pipe::OneWayPipe;

    torture("pipe_ends_killed_at_random_points_with_pid_reuse", || {
        let n = trials(8, 200);
        let message = |seq: u64| {
            let mut m = seq.to_le_bytes().to_vec();
            m.resize(msg_len(seq), seq as u8);
            m
        };
        let mut buf = [0u8; MSG_MAX];
        for (capacity, steps) in [(64usize, 1u64), (8192, 150)] {
            let slot = RefCell::new(OneWayPipe::anonymous(capacity).map_err(err)?);
            kill_loop(
                &format!("pipe sender, capacity {capacity}"),
                n,
                steps,
                |p| {
                    let pipe = slot.borrow();
                    let Ok(mut tx) = pipe.view().sender() else {
                        return 2;
                    };
                    for seq in 0.. {
                        if tx.send_bytes(&message(seq)).is_err() {
                            return 3;
                        }
                        p.set(seq + 1);
                    }
                    4
                },
                |_, rec| {
                    let got = {
                        let pipe = slot.borrow();
                        let mut rx = pipe.view().receiver().map_err(err)?;
                        let mut got = 0;
                        loop {
                            match rx.recv_bytes_into_timeout(&mut buf, VERDICT) {
                                Ok(len) if msg_seq(&buf[..len]) == Some(got) => got += 1,
                                Err(PipeRecvError::Eof) => break got,
                                other => {
                                    return Err(format!(
                                        "after {got}: {other:?} (the new process taken for the sender?)"
                                    ))
                                }
                            }
                        }
                    };
                    check(got == rec || got == rec + 1, || {
                        format!("received {got}, the sender recorded {rec}")
                    })?;
                    *slot.borrow_mut() = OneWayPipe::anonymous(capacity).map_err(err)?;
                    Ok(got != rec)
                },
            )?;
        }
        // The receiver killed; the parent sends (an owned sender, kept
        // with its pipe for the whole trial).
        let queued = 150u64;
        let fresh = || -> Result<(OneWayPipe, shmkit_posix::pipe::PipeSender), String> {
            let pipe = OneWayPipe::anonymous(8192).map_err(err)?;
            let tx = pipe.sender().map_err(err)?;
            for seq in 0..queued {
                tx.send_bytes(&message(seq)).map_err(|e| format!("{e:?}"))?;
            }
            Ok((pipe, tx))
        };
        let slot = RefCell::new(fresh()?);
        let seen = shmkit_posix::Array::<u64>::anonymous(queued as usize).map_err(err)?;
        kill_loop(
            "pipe receiver",
            n,
            queued - 10,
            |p| {
                let pipe = &slot.borrow().0;
                let Ok(mut rx) = pipe.view().receiver() else {
                    return 2;
                };
                let mut buf = [0u8; MSG_MAX];
                for i in 0..queued {
                    match rx.recv_bytes_into_timeout(&mut buf, VERDICT) {
                        Ok(len) => {
                            let _ = seen.set(i as usize, msg_seq(&buf[..len]).unwrap_or(u64::MAX));
                            p.set(i + 1);
                        }
                        Err(_) => return 3,
                    }
                    for _ in 0..500 {
                        std::hint::spin_loop();
                    }
                }
                idle()
            },
            |_, rec| {
                for i in 0..rec {
                    let v = seen.get(i as usize);
                    check(v == Some(i), || {
                        format!("the receiver recorded {v:?} at {i}")
                    })?;
                }
                {
                    // A death is seen within `LIVENESS_POLL_EVERY` (4096)
                    // sends or one full-pipe wait (`pipe` module docs):
                    // sends go on until `Disconnected`, never a time-out.
                    let tx = &slot.borrow().1;
                    let mut sent = 0;
                    loop {
                        match tx.send_bytes_timeout(&message(queued + sent), VERDICT) {
                            Ok(()) if sent < 5000 => sent += 1,
                            Err(PipeSendError::Disconnected) => break,
                            other => {
                                return Err(format!(
                                    "send {sent} after the receiver died: {other:?}, want Disconnected (the new process taken for the receiver?)"
                                ))
                            }
                        }
                    }
                }
                *slot.borrow_mut() = fresh()?;
                Ok(false)
            },
        )?;
        Ok(())
    });
}

// ---------------------------------------------------------- segments

/// A named segment's creator SIGKILLed inside its init function, its pid
/// reused at once: an opener already waiting and a later one both get
/// `CreatorDied` (from the creator's dead lock, not after their generous
/// timeout: the new process with the creator's pid is not taken for it),
/// and `open_or_create` then makes the segment afresh.
#[test]
fn segment_creator_killed_mid_init_with_pid_reuse() {
    use shmkit_core::header::{Fingerprint, Kind};
    use shmkit_posix::segment::{ObjectSpec, Options, Segment};
    use shmkit_posix::{Array, OpenError};

    torture("segment_creator_killed_mid_init_with_pid_reuse", || {
        let spec = ObjectSpec {
            kind: Kind::ARRAY,
            fingerprint: Fingerprint::of::<u64>([8, 0]),
            type_name: std::any::type_name::<u64>(),
            payload_len: 64,
        };
        for trial in 0..3 {
            // Unique beyond this namespace, where every scenario is pid 1.
            let name = format!(
                "/{}pidns-init-{}-{trial}",
                shmkit_testkit::PREFIX,
                owner::process_owner_id()
            );
            let started = Pipe::new();
            let creator = fork(|| {
                let mut init = |_: std::ptr::NonNull<u8>, _: usize| {
                    started.release(1);
                    idle();
                };
                let _ = Segment::create(&name, &spec, &Options::new(), &mut init);
                3
            });
            check(started.take_within(VERDICT), || {
                format!("trial {trial}: the creator never reached its init")
            })?;
            let patient = Options::new().init_timeout(Duration::from_secs(60));
            let waiting = party(|| match Array::<u64>::open_with(&name, &patient) {
                Err(OpenError::CreatorDied { .. }) => 0,
                Err(_) => 2,
                Ok(_) => 3,
            });
            let (_, reuser) = pidns::kill_and_reuse(creator)?;
            let code = code_of(waiting, "the waiting opener", Duration::ZERO)?;
            check(code == 0, || {
                format!("trial {trial}: the waiting opener: code {code}, want CreatorDied")
            })?;
            let t0 = Instant::now();
            match Array::<u64>::open_with(&name, &patient) {
                Err(OpenError::CreatorDied { .. }) if t0.elapsed() < VERDICT => {}
                other => {
                    return Err(format!(
                        "trial {trial}: a later opener: {:?} after {:?}, want CreatorDied at once",
                        other.map(drop),
                        t0.elapsed()
                    ))
                }
            }
            let fresh = Array::<u64>::open_or_create(&name, [1; 8])
                .map_err(|e| format!("trial {trial}: open_or_create: {e}"))?;
            check(fresh.to_vec() == vec![1; 8], || {
                format!("trial {trial}: the new segment holds {:?}", fresh.to_vec())
            })?;
            let _ = Segment::unlink(&name);
            drop(reuser);
        }
        Ok(())
    });
}

// --------------------------------------------------------------- map

/// The shared map's writer SIGKILLed at random points of a stream of
/// inserts and removes (often inside a stripe lock, mid-insert), its pid
/// reused at once: the next writer (`check`, which locks every stripe)
/// repairs within a slice (not a time-out: the new process is not taken
/// for the stripe's holder), and the map holds exactly the state before
/// or after the writer's last operation, every value whole.
#[test]
fn map_writer_killed_at_random_points_with_pid_reuse() {
    use shmkit_posix::map::SharedMap;
    use std::collections::BTreeMap;

    const KEYS: u64 = 24;
    /// Operation `i`: remove its key every fifth time, else insert `[i; 4]`.
    fn model(n: u64) -> BTreeMap<u64, u64> {
        let mut m = BTreeMap::new();
        for i in 0..n {
            if i % 5 == 4 {
                m.remove(&(i % KEYS));
            } else {
                m.insert(i % KEYS, i);
            }
        }
        m
    }
    torture("map_writer_killed_at_random_points_with_pid_reuse", || {
        let map = SharedMap::<u64, [u64; 4]>::anonymous(32).map_err(err)?;
        // Operations committed before this trial's victim started.
        let done = std::cell::Cell::new(0u64);
        kill_loop(
            "map writer",
            trials(12, 300),
            2000,
            |p| {
                let base = done.get();
                for i in base.. {
                    let r = if i % 5 == 4 {
                        map.remove(&(i % KEYS)).map(drop)
                    } else {
                        map.insert(i % KEYS, [i; 4]).map(drop)
                    };
                    if r.is_err() {
                        return 3;
                    }
                    p.set(i - base + 1);
                }
                4
            },
            |_, rec| {
                let repairs = map.repairs();
                map.with_timeout(VERDICT).check().map_err(|e| {
                    format!("check: {e} (the new process taken for a stripe's holder?)")
                })?;
                let items: BTreeMap<u64, u64> = map
                    .items()
                    .map_err(err)?
                    .into_iter()
                    .map(|(k, v)| {
                        let whole = v.iter().all(|&x| x == v[0]);
                        (k, if whole { v[0] } else { u64::MAX })
                    })
                    .collect();
                let ops = done.get() + rec;
                let n = if items == model(ops) {
                    ops
                } else if items == model(ops + 1) {
                    ops + 1
                } else {
                    return Err(format!(
                        "after {ops} ops the map holds {items:?}, want {:?} or {:?}",
                        model(ops),
                        model(ops + 1)
                    ));
                };
                done.set(n);
                Ok(map.repairs() != repairs)
            },
        )
    });
}

// ------------------------------------------- killed right after the CAS

/// Forks a process that arms the `test-hooks` kill (it SIGKILLs itself
/// right after its next compare-and-swap that records it as an owner: a
/// lock word, a role slot — before it writes anything else) and runs `op`;
/// checks that it died there, and gives its pid to a new process that
/// lives on. Returns that process.
fn dies_at_its_cas(what: &str, op: impl FnOnce()) -> Result<Child, String> {
    let c = fork(|| {
        test_hooks::kill_after_next_owner_cas();
        op();
        5
    });
    let pid = c.pid();
    let exit = c
        .wait_timeout(VERDICT)
        .ok_or_else(|| format!("{what}: the victim hung"))?;
    check(exit == Exit::Signal(libc::SIGKILL), || {
        format!("{what}: the victim ended by {exit:?}, not at an owner CAS")
    })?;
    pidns::reuse_pid(pid)
}

/// Every owner-recording CAS not covered by `sync_pid_reuse.rs` (mutex,
/// ring producer): the taker killed right after it, its pid reused at once.
/// Locks (reentrant mutex, rwlock writer, condition, a map stripe): the
/// next taker gets `OwnerDied` (the map repairs) within a slice. Roles
/// (MPMC producer and consumer, stamped ring producer, pipe sender and
/// receiver, byte-message producer, joinable consumer): the peer sees the
/// role gone (`Disconnected`/`Eof`), or a new holder attaches — never
/// `Taken` by, or waiting for, the new process.
#[test]
fn every_owner_cas_killed_with_pid_reuse() {
    use shmkit_core::queue::joinable::JoinableQueue;
    use shmkit_core::queue::msg::{MsgParams, MsgQueue, MsgRecvError};
    use shmkit_core::queue::pipe::PipeRecvError;
    use shmkit_posix::map::SharedMap;
    use shmkit_posix::pipe::OneWayPipe;
    use shmkit_posix::Shared;

    torture("every_owner_cas_killed_with_pid_reuse", || {
        let died = |what: &str, r: Result<(), LockTimeoutError>| {
            check(
                r == Err(LockTimeoutError::Lock(LockError::OwnerDied)),
                || format!("{what}: {r:?}, want OwnerDied"),
            )
        };
        // Locks.
        let r = psync::ReentrantMutex::anonymous(csync::ReentrantMutex::new(0u64)).map_err(err)?;
        let reuser = dies_at_its_cas("rlock", || drop(r.lock()))?;
        died("rlock", r.lock_timeout(VERDICT).map(drop))?;
        r.recover().map_err(|e| format!("{e:?}"))?.mark_consistent();
        check(r.depth() == 0, || format!("rlock depth {}", r.depth()))?;
        drop(reuser);
        let w = psync::RwLock::anonymous(csync::RwLock::new(0u64)).map_err(err)?;
        let reuser = dies_at_its_cas("rwlock writer", || drop(w.write()))?;
        died("rwlock reader", w.read_timeout(VERDICT).map(drop))?;
        died("rwlock writer", w.write_timeout(VERDICT).map(drop))?;
        drop(reuser);
        let c = psync::Condition::anonymous(csync::Condition::new(0u64)).map_err(err)?;
        let reuser = dies_at_its_cas("condition", || drop(c.lock()))?;
        died("condition", c.lock_timeout(VERDICT).map(drop))?;
        drop(reuser);
        let map = SharedMap::<u64, u64>::anonymous(8).map_err(err)?;
        map.insert(1, 1).map_err(err)?;
        let reuser = dies_at_its_cas("map stripe", || {
            let _ = map.insert(2, 2);
        })?;
        let repairs = map.repairs();
        let len = map
            .with_timeout(VERDICT)
            .check()
            .map_err(|e| format!("map check: {e}"))?
            .len;
        check(len == 1 && map.repairs() > repairs, || {
            format!("map: {len} entries, {} repairs", map.repairs() - repairs)
        })?;
        check(map.insert(3, 3).is_ok(), || {
            "map: an insert after the repair".into()
        })?;
        drop(reuser);

        // Roles.
        let q = Queue::<u64>::anonymous(QueueParams::new(4).with_registry(1, 1)).map_err(err)?;
        let reuser = dies_at_its_cas("mpmc producer", || drop(q.view().producer()))?;
        {
            let mut rx = q.view().consumer().map_err(err)?;
            let r = rx.pop_timeout(VERDICT);
            check(r == Err(RecvTimeoutError::Disconnected), || {
                format!("mpmc: {r:?}, want Disconnected")
            })?;
        }
        drop(reuser);
        let q = Queue::<u64>::anonymous(QueueParams::new(4).with_registry(1, 1)).map_err(err)?;
        let reuser = dies_at_its_cas("mpmc consumer", || drop(q.view().consumer()))?;
        check(q.view().consumer().is_ok(), || {
            "mpmc: a consumer after the dead one's CAS (its only slot)".into()
        })?;
        drop(reuser);
        let s = ObjectSegment::<StampedSpsc<u64>>::anonymous(4);
        let reuser = dies_at_its_cas("stamped producer", || drop(s.view().producer()))?;
        {
            let mut rx = s.view().consumer().map_err(err)?;
            let r = rx.pop_timeout(VERDICT);
            check(r == Err(RecvTimeoutError::Disconnected), || {
                format!("stamped: {r:?}, want Disconnected")
            })?;
        }
        drop(reuser);
        let p = OneWayPipe::anonymous(256).map_err(err)?;
        let reuser = dies_at_its_cas("pipe sender", || drop(p.view().sender()))?;
        {
            let mut rx = p.view().receiver().map_err(err)?;
            let r = rx.recv_bytes_into_timeout(&mut [0u8; 8], VERDICT);
            check(r == Err(PipeRecvError::Eof), || {
                format!("pipe: {r:?}, want Eof")
            })?;
        }
        drop(reuser);
        let p = OneWayPipe::anonymous(256).map_err(err)?;
        let reuser = dies_at_its_cas("pipe receiver", || drop(p.view().receiver()))?;
        check(p.view().receiver().is_ok(), || {
            "pipe: a receiver after the dead one's CAS".into()
        })?;
        drop(reuser);
        let params = MsgParams::new(2, 16).with_registry(1, 1);
        let m = Shared::<MsgQueue>::anonymous(params).map_err(err)?;
        let reuser = dies_at_its_cas("msg producer", || drop(m.view().producer()))?;
        {
            let mut rx = m.view().consumer().map_err(err)?;
            let r = rx.recv_into_timeout(&mut [0u8; 16], VERDICT);
            check(r == Err(MsgRecvError::Disconnected), || {
                format!("msg: {r:?}, want Disconnected")
            })?;
        }
        drop(reuser);
        let j = Shared::<JoinableQueue>::anonymous(params).map_err(err)?;
        let reuser = dies_at_its_cas("joinable consumer", || drop(j.view().consumer()))?;
        check(j.view().consumer().is_ok(), || {
            "joinable: a consumer after the dead one's CAS (its only slot)".into()
        })?;
        drop(reuser);
        Ok(())
    });
}

/// A joinable queue's consumer SIGKILLed between its receive and its
/// `task_done`, its pid reused at once: `join_timeout` returns in time
/// with the task still counted (documented: nobody can tell a task being
/// worked on from one whose worker died), a new consumer attaches and
/// gets the rest, and once the caller marks the lost task done (its
/// decision), `join` returns.
#[test]
fn joinable_consumer_killed_between_get_and_task_done_with_pid_reuse() {
    use shmkit_core::queue::joinable::{JoinTimeout, JoinableQueue};
    use shmkit_core::queue::msg::MsgParams;
    use shmkit_posix::Shared;

    torture(
        "joinable_consumer_killed_between_get_and_task_done_with_pid_reuse",
        || {
            let q = Shared::<JoinableQueue>::anonymous(MsgParams::new(4, 8).with_registry(1, 1))
                .map_err(err)?;
            {
                let mut tx = q.view().producer().map_err(err)?;
                for i in 0..3u8 {
                    tx.send(&[i]).map_err(|e| format!("{e:?}"))?;
                }
                tx.forget_copy(); // stays attached: no Disconnected
            }
            let h = holder("joinable consumer", || {
                let Ok(mut rx) = q.view().consumer() else {
                    return false;
                };
                let ok = rx.recv_into_timeout(&mut [0u8; 8], VERDICT) == Ok(1);
                std::mem::forget(rx);
                ok
            })?;
            let (_, reuser) = pidns::kill_and_reuse(h)?;
            let t0 = Instant::now();
            let r = q.view().join_timeout(Duration::from_millis(100));
            check(
                r == Err(JoinTimeout { unfinished: 3 }) && t0.elapsed() < VERDICT,
                || format!("join: {r:?} after {:?}", t0.elapsed()),
            )?;
            let mut rx = q.view().consumer().map_err(|e| {
                format!("a new consumer: {e} (the new process taken for the dead one?)")
            })?;
            let mut buf = [0u8; 8];
            for want in 1..3u8 {
                let r = rx.recv_into_timeout(&mut buf, VERDICT);
                check(r == Ok(1) && buf[0] == want, || {
                    format!("the new consumer: {r:?} {:?}, want [{want}]", &buf[..1])
                })?;
                q.view().task_done().map_err(|e| format!("{e:?}"))?;
            }
            q.view().task_done().map_err(|e| format!("{e:?}"))?; // the lost one
            q.view()
                .join_timeout(VERDICT)
                .map_err(|e| format!("join after every task_done: {e}"))?;
            drop(reuser);
            Ok(())
        },
    );
}

// ------------------------------------------------------ named pools

#[test]
#[ignore = "the entry point of spawned pool workers; runs only in them"]
fn pool_spawned_entry() {
    process::init();
    panic!("pool_spawned_entry ran without a task: only spawned workers run it");
}

/// A one-worker pool whose worker is started fresh (`Spawn`): its
/// segments have names.
fn named_pool() -> Result<process::Pool, String> {
    process::Pool::builder()
        .processes(1)
        .process(
            process::Builder::new()
                .start_method(process::StartMethod::Spawn)
                .args([
                    "pool_spawned_entry",
                    "--exact",
                    "--include-ignored",
                    "--test-threads=1",
                    "-q",
                ]),
        )
        .build()
        .map_err(|e| e.to_string())
}

/// A process with a named pool (`Spawn` workers) SIGKILLed — which leaves
/// the pool's names behind, as documented — and its pid given to a new
/// process that makes a named pool too: that pool must start and work
/// (its names must not be the dead process's) while something still maps
/// the dead pool's semaphore (so the name cannot be reclaimed). Failed
/// before the pool names had a random part (`PoolError::Create`: the
/// name existed).
#[test]
fn a_named_pool_in_a_reused_pid_starts() {
    let test = "a_named_pool_in_a_reused_pid_starts";
    if let Some(why) = shmkit_testkit::exec_unavailable() {
        shmkit_testkit::skip(test, &why);
        return;
    }
    torture(test, || {
        let victim = holder("named pool parent", || {
            named_pool().map(std::mem::forget).is_ok()
        })?;
        let pid = victim.pid();
        let (_, reuser) = pidns::kill_and_reuse(victim)?;
        drop(reuser);
        // Someone still maps the dead pool's semaphore (its worker, dying
        // a moment later; `shmkit inspect`): the name cannot be reclaimed.
        let left: Vec<psync::Semaphore> =
            shmkit_testkit::leftover_segments(&format!("shmkit-pool-{pid}-"))
                .iter()
                .filter(|n| n.ends_with("-sem"))
                .filter_map(|n| psync::Semaphore::open(&format!("/{n}")).ok())
                .collect();
        check(left.len() == 1, || {
            format!("{} semaphores of the dead pool mapped, want 1", left.len())
        })?;
        let exit = in_reused_pid(pid, || match named_pool() {
            Ok(pool) => match pool.map(square, 0..8u64) {
                Ok(r) if r.iter().enumerate().all(|(i, v)| *v == Ok((i * i) as u64)) => 0,
                other => {
                    say(&format!("the new pool's map: {other:?}"));
                    21
                }
            },
            Err(e) => {
                say(&format!("a named pool in the reused pid {pid}: {e}"));
                20
            }
        });
        // The dead process's names (outside any namespace, pid `pid` is
        // a kernel thread: only these tests make such names).
        for name in shmkit_testkit::leftover_segments(&format!("shmkit-pool-{pid}-")) {
            let _ = shmkit_posix::segment::Segment::unlink(&format!("/{name}"));
        }
        let exit = exit?;
        check(exit == Exit::Code(0), || {
            format!("the process in the reused pid: {exit:?}")
        })
    });
}

/// A writer SIGKILLed while it waits for a live reader to drain (it holds
/// the writer lock then, which keeps new readers out), its pid reused at
/// once: once the reader leaves, the next writer and the next reader get
/// `OwnerDied` within a slice — neither waits for the dead writer.
#[test]
fn rwlock_writer_killed_waiting_for_readers_with_pid_reuse() {
    torture(
        "rwlock_writer_killed_waiting_for_readers_with_pid_reuse",
        || {
            let w = psync::RwLock::anonymous(csync::RwLock::new(0u64)).map_err(err)?;
            let reader = w.read().map_err(|e| format!("{e:?}"))?;
            let writer = party(|| match w.write() {
                Ok(_) => 0,
                Err(_) => 2,
            });
            let t0 = Instant::now();
            while !matches!(w.snapshot().writer.state, csync::MutexState::Held { .. }) {
                check(t0.elapsed() < VERDICT, || {
                    "the writer never took the writer lock".into()
                })?;
                std::thread::yield_now();
            }
            check(w.try_read().is_err(), || {
                "a reader entered past a waiting writer".into()
            })?;
            let (exit, reuser) = pidns::kill_and_reuse(writer)?;
            check(exit == Exit::Signal(libc::SIGKILL), || {
                format!("the writer ended by {exit:?} (it should still wait)")
            })?;
            drop(reader);
            let died = |what: &str, r: Result<(), LockTimeoutError>| {
                check(
                    r == Err(LockTimeoutError::Lock(LockError::OwnerDied)),
                    || format!("{what} after the waiting writer died: {r:?}, want OwnerDied"),
                )
            };
            died("a reader", w.read_timeout(VERDICT).map(drop))?;
            died("a writer", w.write_timeout(VERDICT).map(drop))?;
            let mut g = w.recover().map_err(|e| format!("recover: {e:?}"))?;
            g.mark_consistent();
            drop(g);
            let entered = w.try_read().map(drop).is_ok();
            let readers = w.snapshot().readers;
            check(entered && readers == 0, || {
                format!("after the repair: a reader entered: {entered}, {readers} readers left")
            })?;
            drop(reuser);
            Ok(())
        },
    );
}

/// A child that ended and was reaped on the way (by `active_children`)
/// before its `Child` asked; then a new child of ours gets its pid. Each
/// `Child` must get its own exit: the first `join`s at once with its
/// value (not waiting for — or taking the exit of — the new child that
/// has its pid), and the new child is still ours to kill and join.
#[test]
fn a_new_child_with_a_reaped_childs_pid_keeps_both_exits_apart() {
    torture(
        "a_new_child_with_a_reaped_childs_pid_keeps_both_exits_apart",
        || {
            let mut first = process::spawn(|| 7u8).map_err(|e| e.to_string())?;
            let pid = first.pid();
            until_zombie(pid)?;
            let _ = process::active_children(); // reaps it, keeps its exit
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
                .map_err(|e| format!("ns_last_pid: {e}"))?;
            let mut second = process::spawn(|| -> u8 {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
            .map_err(|e| e.to_string())?;
            check(second.pid() == pid, || {
                format!("the second child got pid {}, not {pid}", second.pid())
            })?;
            let t0 = Instant::now();
            match first.join_timeout(VERDICT) {
                Some(Ok(7)) => {}
                other => {
                    return Err(format!(
                        "the first child (exited with 7): {other:?} after {:?}, while a new child has its pid",
                        t0.elapsed()
                    ))
                }
            }
            check(second.is_alive(), || "the second child looks ended".into())?;
            second.kill();
            match second.join_timeout(VERDICT) {
                Some(Err(process::JoinError::Killed {
                    signal: libc::SIGKILL,
                })) => Ok(()),
                other => Err(format!("the second child, killed: {other:?}")),
            }
        },
    );
}

/// A task that kills its worker (SIGKILL) when `x % 17 == 13`, after
/// making the next process of the namespace get the worker's pid: the
/// pool's replacement for it.
fn square_or_die_giving_my_pid(x: u64) -> u64 {
    if x % 17 == 13 {
        let _ = std::fs::write(
            "/proc/sys/kernel/ns_last_pid",
            (std::process::id() - 1).to_string(),
        );
        // SAFETY: the default action, then a signal to this very process.
        unsafe {
            libc::signal(libc::SIGKILL, libc::SIG_DFL);
            libc::raise(libc::SIGKILL);
        }
    }
    x * x
}

/// Pool workers SIGKILLed mid-map, each replaced by a worker that gets
/// the dead one's pid: every batch the dead workers held fails with
/// `WorkerDied` naming that pid and SIGKILL, every other task succeeds,
/// and the pool goes on with replacements that reuse those pids.
#[test]
fn pool_workers_killed_and_replaced_in_their_own_pids() {
    torture("pool_workers_killed_and_replaced_in_their_own_pids", || {
        let pool = process::Pool::builder()
            .processes(2)
            .build()
            .map_err(|e| e.to_string())?;
        let (mut died, mut reused) = (0, 0);
        for round in 0..trials(3, 30) {
            let n = 68u64;
            let chunk = 4;
            let r = pool
                .map_chunked(square_or_die_giving_my_pid, 0..n, chunk)
                .map_err(|e| format!("round {round}: {e}"))?;
            let mut dead = std::collections::BTreeSet::new();
            for (i, r) in r.iter().enumerate() {
                let i = i as u64;
                let start = i / chunk as u64 * chunk as u64;
                let doomed = (start..start + chunk as u64).any(|x| x % 17 == 13);
                match r {
                    Ok(v) if !doomed && *v == i * i => {}
                    Err(process::TaskError::WorkerDied { pid, signal: 9 }) if doomed => {
                        dead.insert(*pid);
                    }
                    other => return Err(format!("round {round}, task {i}: {other:?}")),
                }
            }
            let after = pool.pids();
            check(after.len() == 2, || {
                format!("round {round}: workers {after:?}")
            })?;
            died += dead.len();
            reused += dead.iter().filter(|p| after.contains(p)).count();
        }
        say(&format!(
            "pool: {died} workers killed mid-map; {reused} of their pids were alive again as replacements at the end of their round"
        ));
        check(reused > 0, || {
            "no replacement ever got its dead worker's pid".into()
        })
    });
}
