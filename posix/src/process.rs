//! Child processes that run a closure: Python's `Process(target=f)`,
//! `start()` and `join()`, with the closure's return value given back like
//! [`std::thread::JoinHandle::join`].
//!
//! ```
//! use shmkit_posix::{process, Array};
//!
//! let squares = Array::<u64>::anonymous(4)?;           // shared with the child
//! let child = process::spawn({
//!     let squares = squares.clone();
//!     move || {
//!         for i in 0..4 {
//!             squares.set(i, (i * i) as u64).unwrap();
//!         }
//!         squares.to_vec().iter().sum::<u64>()          // the return value
//!     }
//! })?;
//! assert_eq!(child.join()?, 14);
//! assert_eq!(squares.to_vec(), vec![0, 1, 4, 9]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How a child runs
//! [`spawn`] forks. The child runs the closure and exits with `_exit`: it
//! never returns into the caller's code, and the parent's destructors and
//! `atexit` handlers do not run a second time in it (what the closure owns
//! is dropped when the closure returns, as it would be in a thread). Its
//! result travels back through a private shared page. Exit codes follow
//! Python's convention ([`Child::exitcode`]): `0` after the closure
//! returned, `1` after it panicked (the panic message comes back in
//! [`JoinError::Panicked`]), `-N` after death by signal `N`, or the code
//! the closure passed to `std::process::exit`.
//!
//! # Threads
//! Only the calling thread exists in the child. Locks that other threads
//! held at the moment of the fork stay locked there forever (a `println!`
//! while another thread held stdout's lock deadlocks the child), so, as
//! Python 3.12 warns, forking a process that runs other threads is a
//! hazard: [`spawn`] refuses it with [`SpawnError::Threads`], and
//! [`Builder::allow_threads`] accepts the risk for closures that take no
//! lock another thread may hold (shmkit's own objects are fine: they live
//! in shared memory and are robust).
//!
//! # Reaping
//! A joined child is reaped. A [`Child`] dropped unjoined is left running
//! and reaped later, when it has exited, by the next [`spawn`] or
//! [`active_children`] call, so no zombie outlives those calls.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytemuck::Pod;

/// Starts a child process running `f` (see the module docs).
///
/// # Errors
/// [`SpawnError::Threads`] if this process runs other threads (see the
/// module docs), [`SpawnError::Os`] if `fork` or the result page fails.
pub fn spawn<T: Pod, F: FnOnce() -> T>(f: F) -> Result<Child<T>, SpawnError> {
    Builder::new().spawn(f)
}

/// The pids of children started here that are still running (Python's
/// `active_children()`); reaps the ones that have exited since.
#[must_use]
pub fn active_children() -> Vec<u32> {
    let mut live = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    live.retain(|entry| !entry.reap_if_exited());
    live.iter().map(|e| e.pid as u32).collect()
}

/// How to start a child: its name, whether it dies with its parent,
/// whether other threads may exist.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    allow_threads: bool,
}

impl Builder {
    /// The defaults: named `Process-N`, not a daemon, refusing to fork a
    /// process that runs other threads.
    #[must_use]
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The child's name (Python's `Process(name=...)`), for messages.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Whether the child is killed (`SIGKILL`) when this process dies
    /// (Python's `daemon=True`; Linux `PR_SET_PDEATHSIG`).
    #[must_use]
    pub fn daemon(mut self, yes: bool) -> Builder {
        self.daemon = yes;
        self
    }

    /// Forks even if this process runs other threads (see the module
    /// docs for what the closure must then avoid).
    #[must_use]
    pub fn allow_threads(mut self, yes: bool) -> Builder {
        self.allow_threads = yes;
        self
    }

    /// Starts a child process running `f`.
    ///
    /// # Errors
    /// As [`spawn`].
    pub fn spawn<T: Pod, F: FnOnce() -> T>(self, f: F) -> Result<Child<T>, SpawnError> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        if !self.allow_threads {
            let threads = thread_count();
            if threads > 1 {
                return Err(SpawnError::Threads { count: threads });
            }
        }
        // Reap finished children of earlier spawns (no zombies pile up).
        let _ = active_children();
        let page = ResultPage::new(std::mem::size_of::<T>()).map_err(|e| SpawnError::Os {
            call: "mmap",
            source: e,
        })?;
        let name = self
            .name
            .unwrap_or_else(|| format!("Process-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: fork has no memory-safety preconditions; the child below
        // only runs `f` and `_exit`s (see the module docs on threads).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SpawnError::Os {
                call: "fork",
                source: io::Error::last_os_error(),
            });
        }
        if pid == 0 {
            run_child(f, &page, self.daemon, parent);
        }
        registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Reapable { pid });
        Ok(Child {
            pid,
            name,
            status: None,
            page: Some(page),
            _result: PhantomData,
        })
    }
}

/// The child side: run `f`, report, `_exit`. Never returns.
fn run_child<T: Pod, F: FnOnce() -> T>(f: F, page: &ResultPage, daemon: bool, parent: i32) -> ! {
    // The parent's children are not ours. `try_lock`: another parent
    // thread may have held the lock at the fork, and would never release
    // it here.
    if let Ok(mut children) = registry().try_lock() {
        children.clear();
    }
    if daemon {
        // SAFETY: plain prctl; SIGKILL is a valid signal.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        // The parent may have died before the prctl: then nobody would
        // send the signal.
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            // SAFETY: ends this child at once.
            unsafe { libc::_exit(1) };
        }
    }
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => {
            page.put_value(bytemuck::bytes_of(&value));
            0
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
            page.put_panic(&message);
            // The payload's destructor could panic again: leak it.
            std::mem::forget(payload);
            1
        }
    };
    // SAFETY: `_exit` ends the child at once, skipping the parent's
    // destructors and atexit handlers, which must not run twice.
    unsafe { libc::_exit(code) }
}

/// A running or finished child process started by [`spawn`].
pub struct Child<T> {
    pid: libc::pid_t,
    name: String,
    /// The exit code once reaped (Python's convention).
    status: Option<i32>,
    page: Option<ResultPage>,
    _result: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Child<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("name", &self.name)
            .field("exitcode", &self.status)
            .finish()
    }
}

impl<T: Pod> Child<T> {
    /// The child's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The child's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child is still running (reaps it if it has exited).
    pub fn is_alive(&mut self) -> bool {
        self.poll().is_none()
    }

    /// The exit code in Python's convention (`0`, `1` after a panic, the
    /// code given to `exit`, `-N` after death by signal `N`), or `None`
    /// while the child runs. Does not wait.
    pub fn exitcode(&mut self) -> Option<i32> {
        self.poll()
    }

    /// Sends `SIGTERM` (Python's `terminate()`). A no-op once reaped.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `SIGKILL` (Python's `kill()`). A no-op once reaped.
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Waits for the child and gives back its closure's return value.
    ///
    /// # Errors
    /// [`JoinError`]: the child panicked (with its message), was killed by
    /// a signal, exited with a code of its own, or was joined already.
    pub fn join(mut self) -> Result<T, JoinError> {
        let code = match self.status {
            Some(code) => code,
            None => self.wait(None).map_err(JoinError::Os)?.unwrap_or(0),
        };
        self.result(code)
    }

    /// Waits at most `timeout` for the child: `None` if it still runs then
    /// (Python's `join(timeout)`; look again later, or `terminate` it),
    /// else what [`join`](Self::join) returns. The value can be taken only
    /// once: a later call says [`JoinError::AlreadyJoined`].
    pub fn join_timeout(&mut self, timeout: Duration) -> Option<Result<T, JoinError>> {
        let code = match self.status {
            Some(code) => code,
            None => match self.wait(Some(timeout)) {
                Ok(Some(code)) => code,
                Ok(None) => return None,
                Err(e) => return Some(Err(JoinError::Os(e))),
            },
        };
        Some(self.result(code))
    }

    fn result(&mut self, code: i32) -> Result<T, JoinError> {
        let Some(page) = self.page.take() else {
            return Err(JoinError::AlreadyJoined);
        };
        match (code, page.outcome::<T>()) {
            (0, Outcome::Value(v)) => Ok(v),
            (_, Outcome::Panic(message)) => Err(JoinError::Panicked { message }),
            (c, _) if c < 0 => Err(JoinError::Killed { signal: -c }),
            (c, _) => Err(JoinError::Exited { code: c }),
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: our own child, not yet reaped, so the pid is still
            // ours.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Reaps the child if it has exited.
    fn poll(&mut self) -> Option<i32> {
        if self.status.is_none() {
            if let Some(code) = waitpid(self.pid, libc::WNOHANG) {
                self.reaped(code);
            }
        }
        self.status
    }

    /// Waits for the child to exit, until `timeout` (forever if `None`).
    /// `Ok(None)`: still running at the timeout.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        if let Some(code) = self.poll() {
            return Ok(Some(code));
        }
        match timeout {
            None => {
                let code = waitpid(self.pid, 0).ok_or_else(io::Error::last_os_error)?;
                self.reaped(code);
                Ok(Some(code))
            }
            Some(timeout) => {
                let deadline = Instant::now() + timeout;
                let mut nap = Duration::from_micros(50);
                loop {
                    if let Some(code) = self.poll() {
                        return Ok(Some(code));
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    if !wait_exit_fd(self.pid, deadline - now) {
                        // No pidfd: poll with a growing nap.
                        std::thread::sleep(nap.min(deadline - now));
                        nap = (nap * 2).min(Duration::from_millis(10));
                    }
                }
            }
        }
    }

    fn reaped(&mut self, code: i32) {
        self.status = Some(code);
        registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|e| e.pid != self.pid);
    }
}

/// Waits until the child `pid` exits or `timeout` passes, on a pidfd.
/// Returns false if pidfds are unavailable (the caller then polls).
fn wait_exit_fd(pid: libc::pid_t, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Ok(fd) = libc::c_int::try_from(fd) else {
        return false;
    };
    if fd < 0 {
        return false;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd; EINTR just returns early (the caller loops).
    unsafe { libc::poll(&mut pfd, 1, ms) };
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    true
}

/// `waitpid(pid, flags)` as an exit code in Python's convention; `None` if
/// the child has not exited (`WNOHANG`) or cannot be waited for.
fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        if rc == pid {
            break;
        }
        if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
    if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Some(-libc::WTERMSIG(status))
    } else {
        None
    }
}

impl<T> Drop for Child<T> {
    fn drop(&mut self) {
        // Reap now if it has exited; otherwise the registry reaps it later.
        if self.status.is_none() && waitpid(self.pid, libc::WNOHANG).is_some() {
            registry()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|e| e.pid != self.pid);
        }
    }
}

/// A child not yet reaped.
struct Reapable {
    pid: libc::pid_t,
}

impl Reapable {
    fn reap_if_exited(&self) -> bool {
        waitpid(self.pid, libc::WNOHANG).is_some()
    }
}

fn registry() -> &'static Mutex<Vec<Reapable>> {
    static CHILDREN: Mutex<Vec<Reapable>> = Mutex::new(Vec::new());
    &CHILDREN
}

/// How many threads this process runs (`/proc/self/task` entries); 1 if
/// that cannot be read.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count().max(1))
}

/// Why a child could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// This process runs other threads; forking it is a hazard (see the
    /// module docs). [`Builder::allow_threads`] accepts the risk.
    Threads {
        /// Threads counted, the caller included.
        count: usize,
    },
    /// A system call failed.
    Os {
        /// The call.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Threads { count } => write!(
                f,
                "this process runs {count} threads; a forked child gets only the caller's, and locks the others hold stay locked in it forever. Start children before threads, or use process::Builder::new().allow_threads(true) if the child takes no such lock"
            ),
            SpawnError::Os { call, source } => write!(f, "{call} failed while starting a child: {source}"),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::Os { source, .. } => Some(source),
            SpawnError::Threads { .. } => None,
        }
    }
}

/// Why [`Child::join`] gave no value.
#[derive(Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The closure panicked (exit code 1).
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The child was killed by this signal (exit code `-signal`).
    Killed {
        /// The signal number (9 for `SIGKILL`, 15 for `SIGTERM`).
        signal: i32,
    },
    /// The child exited with its own code before its closure returned.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The value was taken by an earlier join.
    AlreadyJoined,
    /// Waiting for the child failed.
    Os(io::Error),
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked { message } => write!(f, "the child process panicked: {message}"),
            JoinError::Killed { signal } => write!(
                f,
                "the child process was killed by signal {signal} ({})",
                signal_name(*signal)
            ),
            JoinError::Exited { code } => write!(
                f,
                "the child process exited with code {code} before its closure returned"
            ),
            JoinError::AlreadyJoined => {
                f.write_str("the child's result was taken by an earlier join")
            }
            JoinError::Os(e) => write!(f, "waiting for the child failed: {e}"),
        }
    }
}

impl std::error::Error for JoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JoinError::Os(e) => Some(e),
            _ => None,
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// What the child left in its result page.
enum Outcome<T> {
    Value(T),
    Panic(String),
    Nothing,
}

/// A private `MAP_SHARED | MAP_ANONYMOUS` mapping between a parent and one
/// forked child: a state word, then the value bytes or a panic message.
/// Only the two of them map it (it is created just before the fork and
/// shared by nobody else), and the parent reads it only after the child
/// has exited, so the reads see everything the child wrote.
struct ResultPage {
    base: NonNull<u8>,
    len: usize,
    value_len: usize,
}

// SAFETY: the mapping is valid from any thread; all access is through
// atomics or after the writer has exited.
unsafe impl Send for ResultPage {}

/// `state` values (0: nothing written, the page's initial zero).
const VALUE: u32 = 1;
const PANIC: u32 = 2;
/// Layout: state (4), message length (4), then the value at 16, the
/// message after it.
const VALUE_AT: usize = 16;
/// Longest panic message kept.
const MESSAGE_CAP: usize = 4096;

impl ResultPage {
    fn new(value_len: usize) -> io::Result<ResultPage> {
        let len = (VALUE_AT + value_len + MESSAGE_CAP).next_multiple_of(4096);
        // SAFETY: an anonymous shared mapping of `len` bytes; no address
        // hint, no descriptor.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(ResultPage {
            base,
            len,
            value_len,
        })
    }

    fn state(&self) -> &AtomicU32 {
        // SAFETY: the mapping is page-aligned and at least 16 bytes; an
        // AtomicU32 at offset 0 is aligned and lives as long as `self`.
        unsafe { &*self.base.as_ptr().cast::<AtomicU32>() }
    }

    fn put_value(&self, bytes: &[u8]) {
        debug_assert_eq!(bytes.len(), self.value_len);
        // SAFETY: VALUE_AT + value_len <= len; only this (child) process
        // writes, before it sets the state, and the parent reads only
        // after the child has exited.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.as_ptr().add(VALUE_AT),
                bytes.len().min(self.value_len),
            );
        }
        // Release: pairs with the Acquire load in `outcome`.
        self.state().store(VALUE, Ordering::Release);
    }

    fn put_panic(&self, message: &str) {
        let mut n = message.len().min(MESSAGE_CAP);
        while !message.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: as in `put_value`; the message fits after the value.
        unsafe {
            let at = self.base.as_ptr().add(VALUE_AT + self.value_len);
            std::ptr::copy_nonoverlapping(message.as_ptr(), at, n);
            (*self.base.as_ptr().add(4).cast::<AtomicU32>()).store(n as u32, Ordering::Relaxed);
        }
        self.state().store(PANIC, Ordering::Release);
    }

    fn outcome<T: Pod>(&self) -> Outcome<T> {
        // Acquire pairs with the Release stores of the child.
        match self.state().load(Ordering::Acquire) {
            VALUE => {
                let mut v = T::zeroed();
                // SAFETY: the child wrote exactly size_of::<T>() bytes at
                // VALUE_AT and has exited; T is Pod, any bytes are valid.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.base.as_ptr().add(VALUE_AT),
                        bytemuck::bytes_of_mut(&mut v).as_mut_ptr(),
                        std::mem::size_of::<T>().min(self.value_len),
                    );
                }
                Outcome::Value(v)
            }
            PANIC => {
                // SAFETY: as above; the length is clamped to the capacity.
                let message = unsafe {
                    let n = ((*self.base.as_ptr().add(4).cast::<AtomicU32>())
                        .load(Ordering::Relaxed) as usize)
                        .min(MESSAGE_CAP);
                    let at = self.base.as_ptr().add(VALUE_AT + self.value_len);
                    String::from_utf8_lossy(std::slice::from_raw_parts(at, n)).into_owned()
                };
                Outcome::Panic(message)
            }
            _ => Outcome::Nothing,
        }
    }
}

impl Drop for ResultPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
