//! Test support for shmkit's cross-process tests. Not part of the API.
//!
//! - [`unique_name`]: a segment name no other test (or test run) uses;
//! - [`fork`]: run a closure in a real child process (`fork(2)`), get a
//!   [`Child`] to wait for or SIGKILL;
//! - [`spawn_self`] / [`role`]: re-run the current test binary as a child
//!   process that runs only one test in a given role — for children that
//!   must start fresh (`exec`), not as a copy of the parent;
//! - [`leftover_segments`]: names in `/dev/shm` with a prefix (leak checks).
//!
//! Children report through their exit code; a panic in a forked child exits
//! with code 101 so the parent's assertion fails.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every name from [`unique_name`].
pub const PREFIX: &str = "shmkit-test-";

/// A fresh segment name, `/shmkit-test-<tag>-<pid>-<n>`.
#[must_use]
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "/{PREFIX}{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    /// Whether it exited with code 0.
    #[must_use]
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

/// A child process created by [`fork`].
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

/// Runs `body` in a forked child; the child exits with its return value
/// (101 if it panics) without running destructors or atexit handlers of the
/// parent's state.
///
/// # Panics
/// If `fork` fails.
pub fn fork(body: impl FnOnce() -> i32) -> Child {
    // SAFETY: fork has no memory-safety preconditions. The child runs only
    // `body` and then `_exit`s; glibc's malloc is fork-safe, so `body` may
    // allocate. (Locks held by *other* parent threads at the time of the
    // fork stay held in the child: `body` must not need them.)
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
        // SAFETY: `_exit` ends the child at once, skipping the parent's
        // destructors and atexit handlers, which must not run twice.
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: false }
}

impl Child {
    /// The child's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Sends SIGKILL.
    pub fn kill9(&self) {
        // SAFETY: signalling our own unreaped child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }

    /// Waits for the child to end.
    ///
    /// # Panics
    /// If `waitpid` fails.
    pub fn wait(mut self) -> Exit {
        let status = self.waitpid(0).expect("waitpid");
        self.reaped = true;
        status
    }

    /// Waits at most `timeout`; on time-out, SIGKILLs the child and returns
    /// `None` (so a hung child fails the test instead of hanging it).
    pub fn wait_timeout(mut self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.waitpid(libc::WNOHANG) {
                self.reaped = true;
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.kill9();
                let _ = self.waitpid(0);
                self.reaped = true;
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn waitpid(&self, flags: libc::c_int) -> Option<Exit> {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer; `pid` is our child.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if rc == self.pid {
                break;
            }
            if rc == 0 {
                return None;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            panic!("waitpid({}): {err}", self.pid);
        }
        if libc::WIFEXITED(status) {
            Some(Exit::Code(libc::WEXITSTATUS(status)))
        } else {
            Some(Exit::Signal(libc::WTERMSIG(status)))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill9();
            let _ = self.waitpid(0);
        }
    }
}

/// Environment variable naming a child's role in [`spawn_self`].
pub const ROLE_VAR: &str = "SHMKIT_TEST_ROLE";

/// The role this process was started in by [`spawn_self`], if any. A test
/// that doubles as a child entry point starts with
/// `if let Some(role) = role() { ... return; }`.
#[must_use]
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// Starts the current test binary again, running only the test `test_name`
/// (exact match), with [`ROLE_VAR`] set to `role` and the extra environment
/// `env`. Returns the `Command` to adjust and spawn.
///
/// # Panics
/// If the current executable cannot be found.
#[must_use]
pub fn spawn_self(test_name: &str, role: &str, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Names in `/dev/shm` that start with `prefix` (without the leading `/`).
#[must_use]
pub fn leftover_segments(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// A prefix unique to this test process, for leak checks of names made by
/// [`unique_name`] in this process.
#[must_use]
pub fn own_prefix(tag: &str) -> String {
    format!("{PREFIX}{tag}-{}-", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forked_children_report_codes_and_kills() {
        assert_eq!(fork(|| 7).wait(), Exit::Code(7));
        assert_eq!(fork(|| panic!("boom")).wait(), Exit::Code(101));
        let child = fork(|| loop {
            std::thread::sleep(Duration::from_millis(10));
        });
        child.kill9();
        assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
        let hung = fork(|| loop {
            std::thread::sleep(Duration::from_millis(10));
        });
        assert_eq!(hung.wait_timeout(Duration::from_millis(20)), None);
    }

    #[test]
    fn names_are_unique() {
        assert_ne!(unique_name("a"), unique_name("a"));
        assert!(unique_name("x").starts_with(&format!("/{}", own_prefix("x"))));
    }
}
