//! The `forkserver` start method: a small single-threaded process, started
//! once (as a fresh run of the current executable, so it has no threads
//! whatever the caller runs), that forks workers on request.
//!
//! # Protocol
//! The caller and the server share a `SOCK_SEQPACKET` socket pair. A
//! request is one byte with two descriptors attached (`SCM_RIGHTS`): the
//! task file and the caller's end of a reply socket pair for this child.
//! The server forks; the child runs the task as a spawned child would
//! (see [`super::task`]) and exits. The server answers on the reply socket
//! with the child's pid and a pidfd of it (so the caller can signal it
//! without racing a pid reuse), and, once it has reaped the child, with its
//! exit code (Python's convention); then it closes the reply socket.
//!
//! The server dies with the process that started it (it watches a pidfd
//! of its parent process; `PR_SET_PDEATHSIG` where pidfds are missing),
//! and exits when its control socket closes. It reaps its children itself
//! (it is their parent), so none is left a zombie.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::task::Task;

/// The environment variable that tells a process it is the forkserver and
/// which descriptor is its control socket.
pub(super) const SERVER_FD_VAR: &str = "SHMKIT_FORKSERVER_FD";

/// How long a caller waits for a new server to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The caller's side: the control socket of the running server.
struct Server {
    control: OwnedFd,
    pid: libc::pid_t,
}

fn server() -> &'static Mutex<Option<Server>> {
    static SERVER: Mutex<Option<Server>> = Mutex::new(None);
    &SERVER
}

/// A child started through the server.
#[derive(Debug)]
pub(super) struct Remote {
    pub(super) pid: libc::pid_t,
    pub(super) pidfd: OwnedFd,
    pub(super) reply: OwnedFd,
}

/// Asks the server (started with `args` if none runs) to fork a child
/// running `task`.
pub(super) fn request(task: &Task, args: &[OsString]) -> io::Result<Remote> {
    let mut guard = server()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = guard.as_ref() {
        // SAFETY: signal 0 checks existence only; `pid` is our child.
        let alive = unsafe { libc::waitpid(s.pid, std::ptr::null_mut(), libc::WNOHANG) } == 0;
        if !alive {
            *guard = None;
        }
    }
    if guard.is_none() {
        *guard = Some(start(args)?);
    }
    let Some(s) = guard.as_ref() else {
        return Err(io::Error::other("the forkserver did not start"));
    };
    let (ours, theirs) = socket_pair()?;
    send_fds(&s.control, &[task.raw_fd(), theirs.as_raw_fd()])?;
    drop(theirs);
    drop(guard);
    // The server answers with the pid and a pidfd.
    let (bytes, fds) = recv_fds(&ours, Some(READY_TIMEOUT))?;
    let pid = match bytes.as_slice() {
        [a, b, c, d] => i32::from_le_bytes([*a, *b, *c, *d]),
        _ => return Err(io::Error::other("the forkserver sent no pid")),
    };
    let mut fds = fds.into_iter();
    let pidfd = fds
        .next()
        .ok_or_else(|| io::Error::other("the forkserver sent no pidfd"))?;
    Ok(Remote {
        pid,
        pidfd,
        reply: ours,
    })
}

impl Remote {
    /// Waits until the server reports the child's exit code, at most
    /// `timeout` (`None`: forever). `Ok(None)`: still running.
    pub(super) fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        match recv_fds(&self.reply, Some(timeout.unwrap_or(Duration::MAX))) {
            Ok((bytes, _)) => match bytes.as_slice() {
                [a, b, c, d] => Ok(Some(i32::from_le_bytes([*a, *b, *c, *d]))),
                // The server closed the socket without a code: it died.
                [] => Err(io::Error::other(
                    "the forkserver died before reporting the child's exit",
                )),
                _ => Err(io::Error::other(
                    "the forkserver sent a malformed exit code",
                )),
            },
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `sig` through the pidfd (never to a recycled pid).
    pub(super) fn signal(&self, sig: libc::c_int) {
        // SAFETY: pidfd_send_signal on our pidfd; no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

/// Starts the server and waits for its ready byte.
fn start(args: &[OsString]) -> io::Result<Server> {
    let (ours, theirs) = socket_pair()?;
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.args(args).env(SERVER_FD_VAR, fd.to_string());
    // SAFETY: the closure runs in the forked child before exec and only
    // makes one async-signal-safe call on a descriptor it owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    drop(child);
    drop(theirs);
    match recv_fds(&ours, Some(READY_TIMEOUT)) {
        Ok((bytes, _)) if bytes == b"R" => Ok(Server { control: ours, pid }),
        _ => {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            Err(io::Error::other(
                "the forkserver did not start: call shmkit::process::init() first thing in main",
            ))
        }
    }
}

/// In the server process (from `init`): the control socket, if this
/// process is the server.
pub(super) fn inherited_control() -> Option<OwnedFd> {
    let fd: RawFd = std::env::var(SERVER_FD_VAR).ok()?.parse().ok()?;
    // SAFETY: called from `init` before any other thread runs.
    unsafe { std::env::remove_var(SERVER_FD_VAR) };
    // SAFETY: fcntl on any number is harmless.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the starter passed this descriptor to us alone.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The server's loop. Never returns.
pub(super) fn serve(control: OwnedFd, run: fn(Task) -> !) -> ! {
    // Die with the process that started us. Not through
    // `PR_SET_PDEATHSIG` alone: that signal follows the *thread* that
    // forked us, and a server started from a short-lived thread (a test
    // thread, a thread pool's) would die when that thread ends, under the
    // feet of the process that still uses it. A pidfd of the parent
    // process becomes readable once its whole thread group has exited.
    let parent = parent_pidfd();
    if parent.is_none() {
        // No pidfd (Linux < 5.3): the signal is the best there is.
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    }
    let watch = parent.as_ref().map(AsRawFd::as_raw_fd);
    let _ = send_bytes(&control, b"R");
    /// A child and where its exit code goes.
    struct Live {
        pid: libc::pid_t,
        pidfd: OwnedFd,
        reply: OwnedFd,
    }
    let mut live: Vec<Live> = Vec::new();
    loop {
        let mut fds: Vec<libc::pollfd> = std::iter::once(control.as_raw_fd())
            .chain(live.iter().map(|l| l.pidfd.as_raw_fd()))
            .chain(watch)
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if watch.is_some() && fds.last().is_some_and(|p| p.revents != 0) {
            // SAFETY: the process that started us is gone: end the server.
            unsafe { libc::_exit(0) };
        }
        // Children that exited: reap, report, forget.
        let mut i = 0;
        live.retain(|l| {
            i += 1;
            if fds[i].revents == 0 {
                return true;
            }
            let mut status = 0;
            // SAFETY: our own child.
            let rc = unsafe { libc::waitpid(l.pid, &mut status, libc::WNOHANG) };
            if rc != l.pid {
                return true;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -libc::WTERMSIG(status)
            };
            let _ = send_bytes(&l.reply, &code.to_le_bytes());
            false
        });
        if fds[0].revents == 0 {
            continue;
        }
        // A request, or the caller went away.
        let Ok((bytes, got)) = recv_fds(&control, None) else {
            // SAFETY: ends the server.
            unsafe { libc::_exit(0) };
        };
        if bytes.is_empty() && got.is_empty() {
            // SAFETY: the control socket closed: the caller is gone.
            unsafe { libc::_exit(0) };
        }
        let mut got = got.into_iter();
        let (Some(task), Some(reply)) = (got.next(), got.next()) else {
            continue;
        };
        // SAFETY: the server is single-threaded; the child only runs the
        // task and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop(control);
            drop(reply);
            // SAFETY: the descriptor came to us alone with the request.
            run(unsafe { Task::from_raw(std::os::fd::IntoRawFd::into_raw_fd(task)) });
        }
        drop(task);
        if pid < 0 {
            continue;
        }
        // SAFETY: pidfd_open of our own, unreaped child.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let Ok(pidfd) = RawFd::try_from(pidfd) else {
            continue;
        };
        if pidfd < 0 {
            continue;
        }
        // SAFETY: a fresh descriptor we own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let _ = send_fds_with(&reply, &pid.to_le_bytes(), &[pidfd.as_raw_fd()]);
        live.push(Live { pid, pidfd, reply });
    }
}

/// A pidfd of this process's parent process, or `None` without pidfds.
/// Ends this process if the parent is already gone.
fn parent_pidfd() -> Option<OwnedFd> {
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    // SAFETY: pidfd_open takes a pid and flags; it returns a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, ppid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|&fd| fd >= 0).map(|fd| {
        // SAFETY: a fresh descriptor we own.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    // Re-parented since (to init or a subreaper): the parent died before
    // the pidfd was opened, which may then name another process.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != ppid {
        // SAFETY: ends the server: its caller is gone.
        unsafe { libc::_exit(0) };
    }
    fd
}

fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn send_bytes(sock: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    send_fds_with(sock, bytes, &[])
}

fn send_fds(sock: &OwnedFd, fds: &[RawFd]) -> io::Result<()> {
    if fds.is_empty() {
        return Ok(());
    }
    send_fds_with(sock, b"T", fds)
}

/// One `sendmsg` of `bytes` with `fds` attached.
fn send_fds_with(sock: &OwnedFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u8; if fds.is_empty() { 0 } else { space }];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives
    // the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds one header of `payload` bytes.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                payload,
            );
        }
    }
    loop {
        // SAFETY: `msg` is fully initialised above.
        let rc = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message (at most 64 bytes and 4 descriptors), waiting at
/// most `timeout` (`None`: forever). An empty message with no descriptor
/// means the peer closed its end. `TimedOut` on time-out.
fn recv_fds(sock: &OwnedFd, timeout: Option<Duration>) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    if let Some(t) = timeout {
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = std::time::Instant::now().checked_add(t);
        loop {
            let left = deadline.map_or(-1, |d| {
                let ms = d
                    .saturating_duration_since(std::time::Instant::now())
                    .as_millis();
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            });
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left) };
            if rc > 0 {
                break;
            }
            if rc == 0 {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    let mut buf = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((4 * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: a zeroed msghdr is valid; the pointers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: `msg` is initialised; MSG_CMSG_CLOEXEC marks received
        // descriptors close-on-exec.
        let rc = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if rc >= 0 {
            break rc as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel filled in, within
    // `msg_controllen`; SCM_RIGHTS payloads are arrays of descriptors,
    // which we now own.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((buf[..n.min(buf.len())].to_vec(), fds))
}
