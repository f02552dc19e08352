//! The `spawn` start method: a fresh run of the current executable, which
//! finds its task in [`super::init`] at the top of `main`.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::task::Task;

/// The environment variable that tells a spawned child which descriptor
/// holds its task.
pub(super) const TASK_FD_VAR: &str = "SHMKIT_TASK_FD";

/// Starts the current executable with `args`, its task on a descriptor
/// named by [`TASK_FD_VAR`]. Returns the child's pid (the caller reaps it).
pub(super) fn start(task: &Task, args: &[OsString]) -> io::Result<libc::pid_t> {
    let fd = task.raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(args).env(TASK_FD_VAR, fd.to_string());
    // SAFETY: the closure runs in the forked child before exec and only
    // makes one async-signal-safe call (fcntl) on a descriptor it owns.
    unsafe {
        cmd.pre_exec(move || {
            // Let the task descriptor survive the exec.
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    // We reap it ourselves (waitpid); `std::process::Child` neither kills
    // nor waits on drop.
    drop(child);
    Ok(pid)
}

/// In a spawned child: the task descriptor named in the environment, if
/// this process is one. Removes the variable so the child's own children
/// do not take it for theirs.
pub(super) fn inherited_task() -> Option<Task> {
    let fd: i32 = std::env::var(TASK_FD_VAR).ok()?.parse().ok()?;
    // SAFETY: called from `init`, at the top of `main`, before any other
    // thread runs (the documented contract of `init`).
    unsafe { std::env::remove_var(TASK_FD_VAR) };
    // Only a descriptor that is open and a memfd can be ours.
    // SAFETY: fcntl on any number is harmless.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the parent passed this descriptor to us alone.
    Some(unsafe { Task::from_raw(fd) })
}
