//! Liveness tokens (issue 8, item 5) across the process events that make or
//! break them: `fork` (a child must not keep its parent's tokens alive),
//! `exec` (the new image drops them), threads of one process (never two
//! holders of one token), and the task-id fallback when the liveness file
//! cannot be used (still detects a killed holder; never chmods through a
//! planted symlink; never steals a lock it cannot check).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use shmkit_core::owner::{self, test_hooks, Liveness, FIRST_TOKEN, LIVENESS_FILE};
use shmkit_core::sync::{Event, LockError, Mutex, MutexState, TryLockError};
use shmkit_posix::sync as psync;
use shmkit_posix::Array;
use shmkit_testkit::{fork, Exit};

const NOT_HUNG: Duration = Duration::from_secs(10);

/// Writes past the harness's output capture (see `sync_pid_reuse.rs`).
fn say(msg: &str) {
    let _ = std::io::stderr().write_all(format!("{msg}\n").as_bytes());
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn is_root() -> bool {
    // SAFETY: plain getter.
    unsafe { libc::geteuid() == 0 }
}

/// A skipped test says so; in CI (root) a skip is a failure.
fn skip(test: &str, why: &str) {
    assert!(!ci(), "{test}: SKIPPED in CI ({why}): CI runs as root");
    say(&format!("{test}: SKIPPED: {why}"));
}

fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions; we wait for SIGKILL.
        unsafe { libc::pause() };
    }
}

/// Kills a process by pid (one this test started, possibly orphaned).
fn kill_pid(pid: u32) {
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < NOT_HUNG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The owner id in a held lock's word.
fn holder_of(m: &Mutex<u32>) -> u32 {
    match m.raw().snapshot().state {
        MutexState::Held { owner, .. } => owner,
        other => panic!("not held: {other:?}"),
    }
}

#[test]
fn the_liveness_file_is_shared_with_mode_0666() {
    assert!(owner::uses_tokens(), "this process holds no liveness token");
    let meta = std::fs::symlink_metadata(LIVENESS_FILE).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o666);
}

/// A fork child shares its parent's open file description; the atfork
/// handler closes the child's copy, so a parent killed holding a lock is
/// seen dead while the child it forked lives on.
#[test]
fn a_fork_child_does_not_keep_its_parents_tokens_alive() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    let m = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let m2 = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let heir_pid = Array::<u32>::anonymous(1).unwrap();
    let parent = fork(|| {
        std::mem::forget(m.lock().unwrap()); // draws this process's token
        let heir = fork(|| {
            // Its own token, on its own description.
            std::mem::forget(m2.lock().unwrap());
            ready.set();
            pause_forever()
        });
        heir_pid.set(0, heir.pid()).unwrap();
        std::mem::forget(heir); // outlives us
        pause_forever()
    });
    assert!(ready.wait_timeout(NOT_HUNG));
    wait_for("the heir's pid", || heir_pid.get(0) != Some(0));
    let heir = heir_pid.get(0).unwrap();
    let (pt, ht) = (holder_of(&m), holder_of(&m2));
    assert_ne!(pt, ht, "the child drew a token of its own");
    parent.kill9();
    assert_eq!(parent.wait(), Exit::Signal(libc::SIGKILL));
    assert_eq!(owner::liveness(heir), Liveness::Alive, "the heir lives on");
    let verdict = m.try_lock().map(drop);
    let heir_token = owner::liveness(ht);
    kill_pid(heir);
    match verdict {
        Err(TryLockError::Lock(LockError::OwnerDied)) => {}
        other => panic!("the dead parent's lock: expected OwnerDied, got {other:?}"),
    }
    assert_eq!(heir_token, Liveness::Alive);
}

/// `exec` closes the close-on-exec descriptor: the new image holds none of
/// the old one's tokens, although the pid is the same and alive.
#[test]
fn exec_drops_the_tokens_of_the_old_image() {
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(sleep) = sleep else {
        return skip("exec_drops_the_tokens_of_the_old_image", "no sleep binary");
    };
    let prog = std::ffi::CString::new(sleep).unwrap();
    let m = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let child = fork(|| {
        std::mem::forget(m.lock().unwrap());
        let args = [prog.as_ptr(), c"3600".as_ptr(), std::ptr::null()];
        // SAFETY: a NUL-terminated path and argv.
        unsafe { libc::execv(prog.as_ptr(), args.as_ptr()) };
        3
    });
    let pid = child.pid();
    // The exec is complete once the new image runs and the old image's
    // close-on-exec descriptors are closed (the kernel sets the new name
    // first, closes the descriptors after).
    let holds_the_file = || {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|p| p.to_string_lossy().starts_with(LIVENESS_FILE))
            })
        })
    };
    wait_for("the exec", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
            && !holds_the_file()
    });
    assert_eq!(owner::liveness(pid), Liveness::Alive);
    match m.try_lock() {
        Err(TryLockError::Lock(LockError::OwnerDied)) => m.recover().unwrap().mark_consistent(),
        other => panic!("expected OwnerDied after exec, got {other:?}"),
    };
    drop(child);
}

/// All thread tokens of a process are locks through one open file
/// description, which never conflicts with itself: without the process's
/// own set of held tokens, a second thread drawing the same value would
/// get it too, and its exit would release the first thread's token. Draws
/// forced to one value make that deterministic.
#[test]
fn two_threads_of_a_process_never_share_a_token() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    // A value nobody holds (pseudo-random per run: a clash with another
    // live token would be a 1-in-10^9 fluke).
    let v = FIRST_TOKEN + (std::process::id().wrapping_mul(2_654_435_761) % (1 << 29));
    assert_eq!(owner::liveness(v), Liveness::Dead);
    let child = fork(|| {
        test_hooks::force_token_draws(v);
        if owner::thread_owner_id() != v {
            return 2;
        }
        let other = std::thread::spawn(owner::thread_owner_id).join().unwrap();
        if other == v {
            return 3; // two live threads with one token
        }
        ready.set();
        pause_forever()
    });
    assert!(
        ready.wait_timeout(NOT_HUNG),
        "child failed: {:?}",
        child.wait()
    );
    // The other thread exited; the first still holds `v`.
    assert_eq!(owner::liveness(v), Liveness::Alive);
    child.kill9();
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    assert_eq!(owner::liveness(v), Liveness::Dead);
}

/// A process on the task-id fallback shares locks with token holders: its
/// lock word holds its tid, a live holder is never taken over, a killed one
/// is.
#[test]
fn the_task_id_fallback_still_detects_a_killed_holder() {
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    let m = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let child = fork(|| {
        test_hooks::force_task_ids();
        if owner::uses_tokens() {
            return 2;
        }
        std::mem::forget(m.lock().unwrap());
        ready.set();
        pause_forever()
    });
    assert!(
        ready.wait_timeout(NOT_HUNG),
        "child failed: {:?}",
        child.wait()
    );
    assert_eq!(holder_of(&m), child.pid(), "a tid in the word");
    assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    child.kill9();
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    match m.try_lock() {
        Err(TryLockError::Lock(LockError::OwnerDied)) => m.recover().unwrap().mark_consistent(),
        other => panic!("expected OwnerDied, got {other:?}"),
    };
}

/// Clock ticks since boot (`CLOCK_BOOTTIME`), the unit of a task's start
/// time.
fn boot_ticks() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) },
        0
    );
    // SAFETY: plain getter.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    ts.tv_sec as u64 * hz + ts.tv_nsec as u64 * hz / 1_000_000_000
}

/// On the task-id fallback a lock holder records its own start time and
/// others compare it with the one they read for its id: a task must read
/// the value everyone else reads for it, for processes and threads alike.
/// (qemu-user answers `/proc/<own pid>/stat` itself, with the start time
/// of the program it emulates: a forked child read its parent's there, so
/// live holders were judged dead whenever the child started in a later
/// clock tick than its parent. The child here always does.)
#[test]
fn a_task_reads_the_start_time_others_read_for_it() {
    let parent = owner::start_time(std::process::id()).expect("our own start time");
    let t0 = Instant::now();
    while boot_ticks() <= parent + 2 {
        assert!(
            t0.elapsed() < NOT_HUNG,
            "the clock does not move past our start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A thread of ours reads its own start time and stays alive until the
    // child has read it too. (The child itself starts no thread: forked
    // from a process that runs others, it may only do simple things.)
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        // Owned here, so that a failed assertion below drops it and lets
        // the thread (and the scope) end.
        let done_tx = done_tx;
        s.spawn(move || {
            let tid = owner::current_thread_id();
            tid_tx.send((tid, owner::start_time(tid))).unwrap();
            let _ = done_rx.recv();
        });
        let (tid, thread_own) = tid_rx.recv().unwrap();
        // [the child's own start time, our thread's as the child reads it,
        // done]
        let seen = Array::<u64>::anonymous(3).unwrap();
        let child = fork(|| {
            seen.set(0, owner::start_time(std::process::id()).unwrap_or(0))
                .unwrap();
            seen.set(1, owner::start_time(tid).unwrap_or(0)).unwrap();
            seen.set(2, 1).unwrap();
            pause_forever()
        });
        let t0 = Instant::now();
        while seen.get(2) != Some(1) {
            if t0.elapsed() > NOT_HUNG {
                // Kills the child if it is stuck, so the test fails, not hangs.
                panic!("child failed: {:?}", child.wait_timeout(Duration::ZERO));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let from_here = owner::start_time(child.pid()).expect("the child's start time");
        assert!(from_here > parent, "the child started in a later tick");
        assert_eq!(seen.get(0), Some(from_here), "the child's own reading");
        assert_ne!(tid, std::process::id());
        assert!(thread_own.is_some());
        assert_eq!(
            seen.get(1),
            thread_own,
            "a thread's own reading, and the child's"
        );
        child.kill9();
        assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
        done_tx.send(()).unwrap();
    });
}

/// Runs `body` in a child with a private, empty `/dev/shm` (a tmpfs in its
/// own mount namespace) prepared by `setup`. Skips where that needs
/// privileges we lack.
fn with_private_dev_shm(test: &str, setup: impl FnOnce() -> bool, body: impl FnOnce() -> i32) {
    if !is_root() {
        return skip(test, "not root: cannot mount a private /dev/shm");
    }
    let child = fork(|| {
        // SAFETY: namespace and mount calls in a single-threaded child;
        // the mounts are private to its new mount namespace.
        let ok = unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/dev/shm".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    c"mode=1777".as_ptr().cast(),
                ) == 0
        };
        if !ok {
            return 10;
        }
        if !setup() {
            return 11;
        }
        body()
    });
    match child.wait() {
        Exit::Code(10) => skip(test, "cannot mount a private /dev/shm"),
        other => assert_eq!(other, Exit::Code(0), "{test}"),
    }
}

/// The fallback's checks in a child whose liveness file is unusable:
/// - it draws no token and locks with its tid;
/// - a holder (a grandchild) killed holding the lock is still detected;
/// - a lock held by a *token* it cannot check is never taken over.
fn fallback_checks(test: &str) -> i32 {
    if owner::uses_tokens() {
        say(&format!("{test}: drew a token from an unusable file"));
        return 2;
    }
    let m = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let ready = psync::Event::anonymous(Event::new()).unwrap();
    let holder = fork(|| {
        std::mem::forget(m.lock().unwrap());
        ready.set();
        pause_forever()
    });
    if !ready.wait_timeout(NOT_HUNG) {
        return 3;
    }
    holder.kill9();
    let _ = holder.wait();
    if !matches!(m.try_lock(), Err(TryLockError::Lock(LockError::OwnerDied))) {
        say(&format!("{test}: a killed tid holder was not detected"));
        return 4;
    }
    // A token held by someone we cannot check: alive as far as we know.
    let t = psync::Mutex::anonymous(Mutex::new(0u32)).unwrap();
    let word = t.segment().payload().as_ptr().cast::<u32>();
    // SAFETY: the lock word, in range and aligned; written atomically.
    unsafe { shmkit_core::primitive::AtomicU32::from_ptr(word) }
        .store(FIRST_TOKEN + 12_345, std::sync::atomic::Ordering::Relaxed);
    if owner::liveness(FIRST_TOKEN + 12_345) != Liveness::Unknown {
        say(&format!("{test}: an uncheckable token was not Unknown"));
        return 5;
    }
    if !matches!(t.try_lock(), Err(TryLockError::WouldBlock)) {
        say(&format!("{test}: took over a lock it could not check"));
        return 6;
    }
    0
}

/// A liveness file planted as a symlink is never followed: no token is
/// drawn (the fallback is used) and the symlink's target keeps its mode
/// (a follow + fchmod 0666 would make a root-owned file world-writable).
#[test]
fn a_planted_symlink_is_never_followed() {
    let target = format!("/tmp/shmkit-test-symlink-target-{}", std::process::id());
    let t2 = target.clone();
    with_private_dev_shm(
        "a_planted_symlink_is_never_followed",
        move || {
            std::fs::write(&t2, b"").is_ok()
                && std::fs::set_permissions(&t2, std::fs::Permissions::from_mode(0o600)).is_ok()
                && std::os::unix::fs::symlink(&t2, LIVENESS_FILE).is_ok()
        },
        || {
            let code = fallback_checks("a_planted_symlink_is_never_followed");
            let mode = std::fs::metadata(&target).map(|m| m.permissions().mode() & 0o7777);
            let _ = std::fs::remove_file(&target);
            if mode.as_ref().ok() != Some(&0o600) {
                say(&format!("the symlink's target changed mode: {mode:?}"));
                return 7;
            }
            code
        },
    );
}

/// A liveness file another user owns with mode 0600: we cannot open it,
/// so we use the fallback (and never take over a lock held by a token).
#[test]
fn another_users_private_liveness_file_means_the_fallback() {
    with_private_dev_shm(
        "another_users_private_liveness_file_means_the_fallback",
        || {
            std::fs::write(LIVENESS_FILE, b"").is_ok()
                && std::fs::set_permissions(LIVENESS_FILE, std::fs::Permissions::from_mode(0o600))
                    .is_ok()
                // SAFETY: a NUL-terminated path.
                && unsafe { libc::chown(c"/dev/shm/.shmkit-liveness".as_ptr(), 4321, 4321) } == 0
        },
        || {
            // Drop root: now the file is someone else's, mode 0600.
            // SAFETY: credential calls in a single-threaded child.
            let dropped = unsafe {
                libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setgid(65534) == 0
                    && libc::setuid(65534) == 0
            };
            if !dropped {
                return 8;
            }
            fallback_checks("another_users_private_liveness_file_means_the_fallback")
        },
    );
}

/// A program that closes the liveness file's descriptor behind our back
/// (and reuses its number for another file) loses its tokens — documented,
/// not defended — but later draws notice the descriptor no longer names
/// the liveness file and fall back to task ids, instead of "holding"
/// tokens as locks on an unrelated file that nobody checks.
#[test]
fn draws_through_a_descriptor_reused_for_another_file_fall_back() {
    let child = fork(|| {
        if !owner::uses_tokens() {
            return 2;
        }
        // Find our descriptor of the liveness file, close it, and put
        // another file at its number.
        let Some(fd) = std::fs::read_dir("/proc/self/fd").ok().and_then(|d| {
            d.flatten().find_map(|e| {
                let link = std::fs::read_link(e.path()).ok()?;
                (link.to_str()? == LIVENESS_FILE)
                    .then(|| e.file_name().to_str()?.parse::<i32>().ok())
                    .flatten()
            })
        }) else {
            return 3;
        };
        // A regular file that takes byte locks as well as the real one.
        let other_path = format!("/tmp/shmkit-test-not-liveness-{}", std::process::id());
        let Ok(other) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&other_path)
        else {
            return 4;
        };
        let _ = std::fs::remove_file(&other_path);
        // SAFETY: closing and replacing a descriptor number on purpose;
        // nothing else in this process uses it.
        unsafe {
            libc::close(fd);
            if libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&other), fd) != fd {
                return 4;
            }
        }
        let fresh = std::thread::spawn(owner::thread_owner_id).join().unwrap();
        if owner::is_token(fresh) {
            return 5; // a "token" locked in an unrelated file
        }
        0
    });
    assert_eq!(child.wait(), Exit::Code(0));
}
