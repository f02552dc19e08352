//! Test support for shmkit's cross-process tests. Not part of the API.
//!
//! - [`unique_name`]: a segment name no other test (or test run) uses;
//! - [`fork`]: run a closure in a real child process (`fork(2)`), get a
//!   [`Child`] to wait for or SIGKILL;
//! - [`spawn_self`] / [`role`]: re-run the current test binary as a child
//!   process that runs only one test in a given role — for children that
//!   must start fresh (`exec`), not as a copy of the parent;
//! - [`leftover_segments`]: names in `/dev/shm` with a prefix (leak checks);
//! - [`emulated`], [`exec_unavailable`], [`skip`] and [`require_exec!`]:
//!   tests that start a program with `exec` (the test binary again, the
//!   `shmkit` binary) under user-mode emulation (qemu-user), where that
//!   needs a binfmt_misc registration: without one they say they were
//!   skipped and why, and fail under `CI=true`.
//!
//! - [`pidns`]: forced pid reuse, as pid 1 of a fresh pid namespace (root).
//!
//! Children report through their exit code; a panic in a forked child exits
//! with code 101 so the parent's assertion fails.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod pidns;

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

/// Whether this process runs under user-mode emulation (qemu-user running
/// a binary built for another architecture). qemu answers `/proc/self/exe`
/// with the emulated program, while the kernel's own per-task link,
/// `/proc/self/task/<pid>/exe`, which qemu passes through, names the
/// emulator; natively both name the same file.
#[must_use]
pub fn emulated() -> bool {
    let exe = std::fs::read_link("/proc/self/exe");
    let task = std::fs::read_link(format!("/proc/self/task/{}/exe", std::process::id()));
    matches!((exe, task), (Ok(a), Ok(b)) if a != b)
}

/// Why this process cannot `exec` a program built for its own architecture
/// (the test binary again, the `shmkit` binary), or `None` if it can.
/// Natively it always can. Under emulation the kernel itself must know how
/// to run such a binary: binfmt_misc needs an enabled handler (qemu) whose
/// magic matches this executable's ELF header — without one, `exec` fails
/// with `ENOEXEC` and libc's fallback hands the binary to `/bin/sh`.
#[must_use]
pub fn exec_unavailable() -> Option<String> {
    if !emulated() {
        return None;
    }
    let mut header = [0u8; 64];
    let read = std::fs::File::open("/proc/self/exe")
        .and_then(|f| std::os::unix::fs::FileExt::read_at(&f, &mut header, 0));
    let Ok(len) = read else {
        return Some("emulated, and this executable's header cannot be read".into());
    };
    let header = &header[..len];
    let dir = "/proc/sys/fs/binfmt_misc";
    let register = |why: &str| {
        Some(format!(
            "running under user-mode emulation, where exec needs qemu registered with \
             binfmt_misc, and {why} (as root: mount -t binfmt_misc binfmt_misc {dir}; \
             cat /usr/lib/binfmt.d/qemu-<arch>.conf > {dir}/register)"
        ))
    };
    match std::fs::read_to_string(format!("{dir}/status")) {
        Ok(s) if s.trim() == "enabled" => {}
        Ok(_) => return register("binfmt_misc is disabled"),
        Err(_) => return register("binfmt_misc is not mounted"),
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return register("binfmt_misc cannot be listed");
    };
    let handled = entries.flatten().any(|e| {
        let name = e.file_name();
        name != "register"
            && name != "status"
            && std::fs::read_to_string(e.path()).is_ok_and(|t| binfmt_matches(&t, header))
    });
    if handled {
        None
    } else {
        register("no enabled handler matches this executable's ELF header")
    }
}

/// Whether a binfmt_misc entry (the text of `/proc/sys/fs/binfmt_misc/NAME`)
/// is an enabled magic handler that matches `header` and whose interpreter
/// can be found.
fn binfmt_matches(entry: &str, header: &[u8]) -> bool {
    let hex = |s: &str| -> Option<Vec<u8>> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
    };
    let field = |key: &str| {
        entry
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    let enabled = entry.lines().next() == Some("enabled");
    let (Some(offset), Some(magic)) = (
        field("offset ").and_then(|o| o.parse::<usize>().ok()),
        field("magic ").and_then(hex),
    ) else {
        return false; // an extension handler, or unreadable
    };
    let mask = field("mask ")
        .and_then(hex)
        .unwrap_or_else(|| vec![0xff; magic.len()]);
    // Opened at registration (flag F), the interpreter need not be visible
    // here; otherwise the kernel opens it by path at each exec.
    let interpreter = field("flags:").is_some_and(|f| f.contains('F'))
        || field("interpreter ").is_some_and(|p| std::path::Path::new(p).exists());
    enabled
        && interpreter
        && mask.len() == magic.len()
        && offset
            .checked_add(magic.len())
            .and_then(|end| header.get(offset..end))
            .is_some_and(|h| {
                h.iter()
                    .zip(&magic)
                    .zip(&mask)
                    .all(|((h, m), k)| h & k == m & k)
            })
}

/// Whether `CI` says this is a CI run (`true` or `1`).
#[must_use]
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports test `test` as skipped because of `why`: prints
/// `<test>: SKIPPED: <why>` past the harness's output capture (so it shows
/// without `--nocapture`). Under `CI=true` it fails the test instead: CI
/// runs as root and sets up what the tests need, so a skip there is a bug.
///
/// # Panics
/// Under `CI=true`.
pub fn skip(test: &str, why: &str) {
    assert!(
        !ci(),
        "{test}: SKIPPED in CI ({why}): CI must not skip this"
    );
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("{test}: SKIPPED: {why}\n").as_bytes(),
    );
}

/// Returns from the calling test (after [`skip`]) if this process cannot
/// `exec` a program built like itself ([`exec_unavailable`]).
#[macro_export]
macro_rules! require_exec {
    ($test:expr) => {
        if let Some(why) = $crate::exec_unavailable() {
            $crate::skip($test, &why);
            return;
        }
    };
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
    fn binfmt_entries_are_matched_on_masked_magic() {
        // qemu-aarch64 as Debian registers it, against an aarch64 and an
        // x86-64 ELF header.
        let entry = "enabled\ninterpreter /nonexistent/qemu\nflags: POF\noffset 0\n\
                     magic 7f454c460201010000000000000000000200b700\n\
                     mask ffffffffffffff00fffffffffffffffffeffffff\n";
        let mut arm = [0u8; 20];
        arm[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        arm[16..20].copy_from_slice(&[0x03, 0x00, 0xb7, 0x00]); // ET_DYN, EM_AARCH64
        let mut x86 = arm;
        x86[18] = 0x3e; // EM_X86_64
        assert!(binfmt_matches(entry, &arm));
        assert!(!binfmt_matches(entry, &x86));
        assert!(!binfmt_matches(entry, &arm[..10]), "short header");
        assert!(!binfmt_matches(
            &entry.replacen("enabled", "disabled", 1),
            &arm
        ));
        // Without F the interpreter must exist.
        assert!(!binfmt_matches(&entry.replace("POF", "PO"), &arm));
        assert!(!binfmt_matches(
            "enabled\ninterpreter /x\nflags: \nextension .exe\n",
            &arm
        ));
    }

    #[test]
    fn exec_unavailable_tells_whether_exec_works() {
        // Run this test binary again, only listing one of its tests: a
        // real exec, which works exactly when the probe says it does.
        let listed = Command::new(std::env::current_exe().unwrap())
            .args(["--list", "tests::names_are_unique", "--exact"])
            .output()
            .is_ok_and(|o| {
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout).contains("tests::names_are_unique: test")
            });
        let why = exec_unavailable();
        assert_eq!(why.is_none(), listed, "{why:?}");
        if !emulated() {
            assert_eq!(why, None, "a native run can always exec");
        }
    }

    #[test]
    fn names_are_unique() {
        assert_ne!(unique_name("a"), unique_name("a"));
        assert!(unique_name("x").starts_with(&format!("/{}", own_prefix("x"))));
    }
}
