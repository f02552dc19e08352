//! Forced pid reuse: run a scenario as pid 1 of a fresh pid namespace,
//! where writing `/proc/sys/kernel/ns_last_pid` makes the next `fork` get
//! a chosen pid, so a killed process's pid can be handed to a new,
//! unrelated process at once.
//!
//! Needs root (namespaces, mounts, `ns_last_pid`). Without the privilege
//! [`in_fresh_pid_namespace`] reports the test skipped ([`crate::skip`]:
//! printed, and a failure under `CI=true`).

use std::time::Duration;

use crate::{fork, Child, Exit};

/// Exit codes of the namespace set-up (not of a scenario: scenarios must
/// not use them).
const NO_UNSHARE: i32 = 90;
const NO_MOUNT: i32 = 91;
const NO_NS_LAST_PID: i32 = 92;

/// Writes a line to the real stderr, past the test harness's capture (a
/// forked child's captured output would be lost).
pub fn say(msg: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{msg}\n").as_bytes());
}

/// Runs `scenario` as pid 1 of a new pid namespace with its own `/proc`
/// (`unshare(CLONE_NEWPID | CLONE_NEWNS)`, then `fork`), and asserts that
/// it returns 0. Skips (see the module docs) where the namespace cannot be
/// made. The scenario reports its failures with [`say`] and a non-zero
/// code (a panic in it is code 101).
///
/// # Panics
/// If the scenario fails, or under `CI=true` if it had to be skipped.
pub fn in_fresh_pid_namespace(test: &str, scenario: impl FnOnce() -> i32) {
    let outer = fork(|| {
        // SAFETY: unshare in a single-threaded child: it affects the
        // children this process forks next, and its mount namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS) } != 0 {
            return NO_UNSHARE;
        }
        let init = fork(|| {
            // SAFETY: mount calls in the new mount namespace: make every
            // mount private (nothing propagates back to the host), then
            // mount a /proc of the new pid namespace over the old one.
            let mounted = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                    && libc::mount(
                        c"proc".as_ptr(),
                        c"/proc".as_ptr(),
                        c"proc".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    ) == 0
            };
            if !mounted {
                return NO_MOUNT;
            }
            if std::fs::write("/proc/sys/kernel/ns_last_pid", "1").is_err() {
                return NO_NS_LAST_PID;
            }
            scenario()
        });
        match init.wait() {
            Exit::Code(c) => c,
            Exit::Signal(s) => 100 + s,
        }
    });
    let why = match outer.wait() {
        Exit::Code(0) => return,
        Exit::Code(NO_UNSHARE) => "cannot unshare a pid and mount namespace (needs root)",
        Exit::Code(NO_MOUNT) => "cannot mount a private /proc in the new namespaces",
        Exit::Code(NO_NS_LAST_PID) => "cannot write /proc/sys/kernel/ns_last_pid",
        other => panic!("{test}: the scenario failed: {other:?} (see the lines above)"),
    };
    crate::skip(test, why);
}

/// Forks a process that gets pid `pid` (already free: its old process
/// reaped) and sleeps until killed. Only inside
/// [`in_fresh_pid_namespace`], with no other process forking meanwhile.
///
/// # Errors
/// If `ns_last_pid` cannot be written or the new process got another pid.
pub fn reuse_pid(pid: u32) -> Result<Child, String> {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
        .map_err(|e| format!("ns_last_pid: {e}"))?;
    let reuser = fork(|| loop {
        // SAFETY: pause has no preconditions; we wait for SIGKILL.
        unsafe { libc::pause() };
    });
    if reuser.pid() != pid {
        return Err(format!("wanted pid {pid}, got {}", reuser.pid()));
    }
    Ok(reuser)
}

/// SIGKILLs `victim` (a no-op if it has ended), reaps it, and gives its pid
/// to a new process that sleeps until killed ([`reuse_pid`]). Returns how
/// the victim ended and the new process.
///
/// # Errors
/// As [`reuse_pid`], or if the victim cannot be reaped in 10 s.
pub fn kill_and_reuse(victim: Child) -> Result<(Exit, Child), String> {
    let pid = victim.pid();
    victim.kill9();
    let exit = victim
        .wait_timeout(Duration::from_secs(10))
        .ok_or_else(|| format!("victim {pid} not reaped after SIGKILL"))?;
    Ok((exit, reuse_pid(pid)?))
}

/// Whether `child` still runs (has not ended, not even as a zombie).
#[must_use]
pub fn runs(child: &Child) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", child.pid())).is_ok_and(|s| {
        // The state follows the command name's closing parenthesis.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}
