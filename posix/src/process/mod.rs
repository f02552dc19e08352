//! Child processes that run a function: Python's `Process(target=f,
//! args=...)`, `start()`, `join()`, `exitcode`, `terminate()`, `kill()`,
//! `daemon`, `active_children()`, `parent_process()` and the three start methods, with the
//! function's return value given back like
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
//! # Start methods
//! | method | how | runs | Python |
//! |---|---|---|---|
//! | [`StartMethod::Fork`] (default) | `fork` | a closure ([`spawn`]) or a function ([`spawn_fn`]) | `fork` |
//! | [`StartMethod::Spawn`] | a fresh run of the current executable | a function and its arguments | `spawn` |
//! | [`StartMethod::ForkServer`] | `fork` from a single-threaded helper process started once | a function and its arguments | `forkserver` |
//!
//! `Spawn` and `ForkServer` children start from `main`: call [`init`]
//! first thing there. A spawned child finds its task in `init`, runs it and
//! exits; the forkserver lives in `init`. A function crosses as its offset
//! in the executable (children run the same program, which `init` checks);
//! its arguments and result cross as [`Message`]s (any `Pod` type, or any
//! `serde` type wrapped in `message::Serde`, with the `serde` feature). Shared
//! objects reach such children by name or by descriptor, not by memory:
//! nothing of the parent's address space is there.
//!
//! # How a child ends
//! The child runs the function and exits with `_exit`: it never returns into
//! the caller's code, and the parent's destructors and `atexit` handlers do
//! not run a second time in it (what a closure owns is dropped when it
//! returns, as it would be in a thread). Exit codes follow Python's
//! convention ([`Child::exitcode`]): `0` after the function returned, `1`
//! after it panicked (the message comes back in [`JoinError::Panicked`]),
//! `-N` after death by signal `N`, or the code the function passed to
//! `std::process::exit`.
//!
//! # Threads
//! Only the calling thread exists in a forked child. Locks that other
//! threads held at the moment of the fork stay locked there forever (a
//! `println!` while another thread held stdout's lock deadlocks the child),
//! so, as Python 3.12 warns, forking a process that runs other threads is a
//! hazard: the `Fork` method refuses it with [`SpawnError::Threads`].
//! [`Builder::allow_threads`] accepts the risk for functions that take no
//! lock another thread may hold (shmkit's own objects are fine: they live
//! in shared memory and are robust); `Spawn` and `ForkServer` have no such
//! hazard and are the way for programs that already run threads (a tokio
//! service, say).
//!
//! # Reaping
//! A joined child is reaped. A [`Child`] dropped unjoined is left running
//! and reaped later, when it has exited, by the next start or
//! [`active_children`] call, so no zombie outlives those calls.
//!
//! Those calls also reap children whose [`Child`] is still held, and keep
//! their exit codes for it. Once reaped, a child's pid may belong to any
//! new process — a new child of ours too: a [`Child`] never signals it
//! ([`Child::terminate`] and [`Child::kill`] of a reaped child do
//! nothing), never waits on it (waits go through a pidfd taken while the
//! child was known to be unreaped), and its exit code is its own (the
//! registry of children is not keyed by pid).

mod exec;
pub mod pool;
mod server;
mod task;

pub use pool::{AsyncResult, Pool, PoolError, TaskError};

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::message::Message;
use task::{Outcome, Task};

/// How a child process is started (Python's start methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartMethod {
    /// `fork`: the child is a copy of this process (the default, as on
    /// Linux in Python before 3.14).
    #[default]
    Fork,
    /// A fresh run of the current executable, which must call [`init`]
    /// first thing in `main`.
    Spawn,
    /// `fork` from a single-threaded helper, itself a fresh run of the
    /// current executable started on first use (call [`init`] first thing
    /// in `main`).
    ForkServer,
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// Sets the start method [`spawn_fn`] and [`Builder`] use by default
/// (Python's `set_start_method`).
pub fn set_start_method(method: StartMethod) {
    let v = match method {
        StartMethod::Fork => 0,
        StartMethod::Spawn => 1,
        StartMethod::ForkServer => 2,
    };
    // Relaxed: a setting, read independently by each start.
    DEFAULT_METHOD.store(v, Ordering::Relaxed);
}

/// The default start method ([`set_start_method`]).
#[must_use]
pub fn start_method() -> StartMethod {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::Spawn,
        2 => StartMethod::ForkServer,
        _ => StartMethod::Fork,
    }
}

/// Call first thing in `main` when children are started with
/// [`StartMethod::Spawn`] or [`StartMethod::ForkServer`]: in such a child
/// (or in the forkserver) it runs what the parent asked for and exits;
/// anywhere else it returns at once.
///
/// It must run before the program starts any thread (it reads and clears
/// environment variables).
pub fn init() {
    if let Some(control) = server::inherited_control() {
        server::serve(control, run_task);
    }
    if let Some(task) = exec::inherited_task() {
        run_task(task);
    }
}

/// A spawned (or forkserver) child: run the task, report, exit.
fn run_task(task: Task) -> ! {
    set_current(task.name());
    let code = match task.resolve() {
        Ok((tramp, f, args)) => {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tramp(f, &args))) {
                Ok(Ok(bytes)) => {
                    task.put(task::state::VALUE, &bytes);
                    crate::handle::leave_all();
                    0
                }
                Ok(Err(why)) => {
                    task.put(task::state::FAILED, why.as_bytes());
                    1
                }
                Err(payload) => {
                    task.put_panic(&panic_message(&*payload));
                    std::mem::forget(payload);
                    1
                }
            }
        }
        Err(why) => {
            task.put(task::state::FAILED, why.as_bytes());
            1
        }
    };
    // SAFETY: ends this process at once.
    unsafe { libc::_exit(code) }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

/// This process as Python's `current_process()` sees it: its name and pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// `"MainProcess"`, or the name the parent gave the child.
    pub name: String,
    /// The process id.
    pub pid: u32,
}

fn current_name() -> &'static Mutex<Option<String>> {
    static NAME: Mutex<Option<String>> = Mutex::new(None);
    &NAME
}

fn set_current(name: String) {
    // `try_lock`: in a forked child another parent thread may have held
    // it at the fork, and would never release it here; the name is then
    // lost, nothing else.
    if let Ok(mut current) = current_name().try_lock() {
        *current = Some(name);
    }
}

/// This process's name and pid (Python's `current_process()`): a child's
/// name is the one its parent gave it (`Process-N` by default), the first
/// process is `MainProcess`.
#[must_use]
pub fn current() -> ProcessInfo {
    let name = current_name()
        .lock()
        .ok()
        .and_then(|n| n.clone())
        .unwrap_or_else(|| "MainProcess".to_owned());
    ProcessInfo {
        name,
        pid: std::process::id(),
    }
}

/// The process that forked this one, as Python's `parent_process()` sees
/// it: its name and pid, and whether it still runs. `None` in a process
/// not started by [`spawn`] or [`Builder`] with the `Fork` method (the
/// first process, and `Spawn`/`ForkServer` children, whose parent's name
/// does not cross).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentProcess {
    /// The name the parent had when it forked this process.
    pub name: String,
    /// The parent's process id.
    pub pid: u32,
}

fn parent_slot() -> &'static Mutex<Option<ParentProcess>> {
    static PARENT: Mutex<Option<ParentProcess>> = Mutex::new(None);
    &PARENT
}

/// This process's parent ([`ParentProcess`]): Python's
/// `multiprocessing.parent_process()`, `None` in the first process.
///
/// ```
/// use shmkit_posix::process;
///
/// assert!(process::parent().is_none()); // the first process
/// let child = process::spawn(|| {
///     let parent = process::parent().unwrap();
///     assert!(parent.is_alive());
///     parent.pid
/// })?;
/// assert_eq!(child.join()?, std::process::id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn parent() -> Option<ParentProcess> {
    parent_slot().lock().ok().and_then(|p| p.clone())
}

impl ParentProcess {
    /// Whether the parent still runs. A child whose parent dies is
    /// re-parented (to init or a subreaper), so this compares the current
    /// parent pid with the recorded one: a later process reusing the pid
    /// is never mistaken for the parent.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() };
        u32::try_from(ppid).is_ok_and(|p| p == self.pid)
    }

    /// Waits at most `timeout` for the parent to end (Python's
    /// `parent_process().join(timeout)`): whether it has ended.
    #[must_use]
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Open the pidfd first, then check that the parent is still
            // ours: if it is, the descriptor names it (its pid cannot have
            // been reused while it lived).
            // SAFETY: pidfd_open takes a pid and flags; it returns a new
            // descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
            let fd = libc::c_int::try_from(fd)
                .ok()
                .filter(|&fd| fd >= 0)
                .map(|fd| {
                    // SAFETY: a fresh descriptor we own.
                    unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
                });
            if !self.is_alive() {
                return true;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            match fd {
                Some(fd) => {
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ms =
                        libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
                    // SAFETY: one valid pollfd; EINTR returns early (we loop).
                    unsafe { libc::poll(&mut pfd, 1, ms) };
                }
                // No pidfd: look again after a nap.
                None => std::thread::sleep(left.min(Duration::from_millis(10))),
            }
        }
    }
}

/// Starts a child process running the closure `f` (start method `Fork`;
/// see the module docs).
///
/// # Errors
/// [`SpawnError::Threads`] if this process runs other threads,
/// [`SpawnError::Os`] if `fork` fails.
pub fn spawn<T: Message, F: FnOnce() -> T>(f: F) -> Result<Child<T>, SpawnError> {
    Builder::new().start_method(StartMethod::Fork).spawn(f)
}

/// Starts a child process running `f(args)` with the default start method
/// ([`set_start_method`]).
///
/// # Errors
/// As [`Builder::spawn_fn`].
pub fn spawn_fn<A: Message, R: Message>(f: fn(A) -> R, args: A) -> Result<Child<R>, SpawnError> {
    Builder::new().spawn_fn(f, args)
}

/// The pids of children started here that are still running (Python's
/// `active_children()`); reaps the ones that have exited since.
#[must_use]
pub fn active_children() -> Vec<u32> {
    let mut children = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    children.reap();
    children.running().map(|pid| pid as u32).collect()
}

/// How to start a child: its name and start method, whether it dies with
/// its parent, whether other threads may exist, the arguments of a fresh
/// run.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    allow_threads: bool,
    method: Option<StartMethod>,
    args: Vec<OsString>,
}

impl Builder {
    /// The defaults: named `Process-N`, the default start method, not a
    /// daemon, refusing to fork a process that runs other threads.
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

    /// Whether the child is killed (`SIGKILL`) when its parent dies
    /// (Python's `daemon=True`; Linux `PR_SET_PDEATHSIG`). Under the
    /// forkserver the parent is the server, which dies with this process.
    /// Linux sends that signal when the parent *thread* that forked the
    /// child ends: a daemon forked from a thread other than the main one
    /// (with [`allow_threads`](Self::allow_threads)) dies with that thread.
    #[must_use]
    pub fn daemon(mut self, yes: bool) -> Builder {
        self.daemon = yes;
        self
    }

    /// Forks even if this process runs other threads (see the module docs
    /// for what the child must then avoid).
    #[must_use]
    pub fn allow_threads(mut self, yes: bool) -> Builder {
        self.allow_threads = yes;
        self
    }

    /// The start method (default: [`start_method`]).
    #[must_use]
    pub fn start_method(mut self, method: StartMethod) -> Builder {
        self.method = Some(method);
        self
    }

    /// Command-line arguments for a fresh run of the executable (`Spawn`,
    /// and the forkserver when this call starts it): what makes `main` reach
    /// [`init`] (none for most programs; a test filter for a test binary).
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Builder {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    fn method(&self) -> StartMethod {
        self.method.unwrap_or_else(start_method)
    }

    /// The name the child gets: the one given, or `Process-N`.
    fn child_name(&mut self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        self.name
            .get_or_insert_with(|| format!("Process-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
            .clone()
    }

    /// Starts a child process running the closure `f`. Only the `Fork`
    /// method can run a closure (the others start from `main`).
    ///
    /// # Errors
    /// [`SpawnError::NeedsFork`] under another start method,
    /// [`SpawnError::Threads`], [`SpawnError::Os`].
    pub fn spawn<T: Message, F: FnOnce() -> T>(mut self, f: F) -> Result<Child<T>, SpawnError> {
        if self.method() != StartMethod::Fork {
            return Err(SpawnError::NeedsFork {
                method: self.method(),
            });
        }
        let name = self.child_name();
        let task = Task::new(&name).map_err(os("memfd_create"))?;
        let daemon = self.daemon;
        self.fork(
            task,
            move |task| {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                report(
                    task,
                    outcome.map(|v| {
                        let mut out = Vec::new();
                        v.encode(&mut out).map(|()| out).map_err(|e| e.to_string())
                    }),
                )
            },
            daemon,
        )
    }

    /// Starts a child process running `f(args)` with this builder's start
    /// method.
    ///
    /// # Errors
    /// [`SpawnError::Threads`] (`Fork` in a process running other
    /// threads), [`SpawnError::Bootstrapping`] (`Spawn`/`ForkServer` from
    /// a fresh run whose `main` skipped [`init`]),
    /// [`SpawnError::Encode`] if `args` cannot be encoded,
    /// [`SpawnError::Os`] if starting the child fails.
    pub fn spawn_fn<A: Message, R: Message>(
        mut self,
        f: fn(A) -> R,
        args: A,
    ) -> Result<Child<R>, SpawnError> {
        if self.method() != StartMethod::Fork && bootstrapping() {
            return Err(SpawnError::Bootstrapping);
        }
        let mut bytes = Vec::new();
        args.encode(&mut bytes)
            .map_err(|e| SpawnError::Encode(e.to_string()))?;
        let tramp: task::Trampoline = task::trampoline::<A, R>;
        let name = self.child_name();
        let task = Task::for_fn(&name, tramp, f as usize, &bytes).map_err(os("the task file"))?;
        match self.method() {
            StartMethod::Fork => {
                let daemon = self.daemon;
                self.fork(
                    task,
                    move |task| {
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                tramp(f as usize, &bytes)
                            }));
                        report(task, outcome)
                    },
                    daemon,
                )
            }
            StartMethod::Spawn => {
                let _ = active_children();
                let pid = exec::start(&task, &self.args).map_err(os("spawn"))?;
                let local = registry()
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .started(pid);
                Ok(Child::new(Handle::Local(local), self.name, task))
            }
            StartMethod::ForkServer => {
                let remote = server::request(&task, &self.args).map_err(os("forkserver"))?;
                Ok(Child::new(Handle::Remote(remote), self.name, task))
            }
        }
    }

    /// Forks a child that runs `body` on the task and exits with the code
    /// it returns.
    fn fork<T>(
        self,
        task: Task,
        body: impl FnOnce(&Task) -> i32,
        daemon: bool,
    ) -> Result<Child<T>, SpawnError> {
        if !self.allow_threads {
            let threads = thread_count();
            if threads > 1 {
                return Err(SpawnError::Threads { count: threads });
            }
        }
        // Reap finished children of earlier starts (no zombies pile up).
        let _ = active_children();
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let parent_name = current().name;
        // SAFETY: fork has no memory-safety preconditions; the child below
        // only runs `body` and `_exit`s (see the module docs on threads).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SpawnError::Os {
                call: "fork",
                source: io::Error::last_os_error(),
            });
        }
        if pid == 0 {
            // The parent's children are not ours. `try_lock`: another
            // parent thread may have held the lock at the fork, and would
            // never release it here.
            if let Ok(mut children) = registry().try_lock() {
                children.clear();
            }
            set_current(task.name());
            if let Ok(mut slot) = parent_slot().try_lock() {
                *slot = Some(ParentProcess {
                    name: parent_name,
                    pid: parent as u32,
                });
            }
            if daemon {
                // SAFETY: plain prctl; SIGKILL is a valid signal.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
                // The parent may have died before the prctl: then nobody
                // would send the signal.
                // SAFETY: getppid has no preconditions.
                if unsafe { libc::getppid() } != parent {
                    // SAFETY: ends this child at once.
                    unsafe { libc::_exit(1) };
                }
            }
            let code = body(&task);
            // SAFETY: `_exit` ends the child at once, skipping the parent's
            // destructors and atexit handlers, which must not run twice.
            unsafe { libc::_exit(code) };
        }
        let local = registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .started(pid);
        Ok(Child::new(Handle::Local(local), self.name, task))
    }
}

/// Whether this process is a `Spawn` child or the forkserver whose `main`
/// did not call [`init`] first (the variable `init` removes is still
/// there): starting a fresh run from it would run that `main` again, and
/// again (Python's "bootstrapping phase" error; `TestNoForkBomb`).
fn bootstrapping() -> bool {
    std::env::var_os(exec::TASK_FD_VAR).is_some()
        || std::env::var_os(server::SERVER_FD_VAR).is_some()
}

/// Child side of `Fork`: writes what `f` did into the task and gives the
/// exit code.
fn report(task: &Task, outcome: std::thread::Result<Result<Vec<u8>, String>>) -> i32 {
    match outcome {
        Ok(Ok(bytes)) => {
            task.put(task::state::VALUE, &bytes);
            // A clean exit: withdraw from what this process registered in
            // (barrier parties), as an `exit` would (`_exit` runs no
            // `atexit` handler).
            crate::handle::leave_all();
            0
        }
        Ok(Err(why)) => {
            task.put(task::state::FAILED, why.as_bytes());
            1
        }
        Err(payload) => {
            task.put_panic(&panic_message(&*payload));
            // The payload's destructor could panic again: leak it.
            std::mem::forget(payload);
            1
        }
    }
}

fn os(call: &'static str) -> impl Fn(io::Error) -> SpawnError {
    move |source| SpawnError::Os { call, source }
}

/// Where a child runs: our own child, or the forkserver's.
#[derive(Debug)]
enum Handle {
    Local(Local),
    Remote(server::Remote),
}

/// One of our own children: its pid, and its entry in the registry. The
/// entry, not the pid, names it there: once it is reaped, its pid may be
/// given to a new child of ours while its exit code still waits for its
/// `Child`.
#[derive(Clone, Copy, Debug)]
struct Local {
    pid: libc::pid_t,
    id: u64,
}

/// A running or finished child process.
pub struct Child<T> {
    handle: Handle,
    name: String,
    /// The exit code once the child has ended (Python's convention).
    status: Option<i32>,
    task: Option<Task>,
    _result: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Child<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid_raw())
            .field("name", &self.name)
            .field("exitcode", &self.status)
            .finish()
    }
}

impl<T> Child<T> {
    fn new(handle: Handle, name: Option<String>, task: Task) -> Child<T> {
        let name = name.unwrap_or_default();
        Child {
            handle,
            name,
            status: None,
            task: Some(task),
            _result: PhantomData,
        }
    }

    fn pid_raw(&self) -> libc::pid_t {
        match &self.handle {
            Handle::Local(l) => l.pid,
            Handle::Remote(r) => r.pid,
        }
    }
}

impl<T: Message> Child<T> {
    /// The child's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid_raw() as u32
    }

    /// The child's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child is still running.
    pub fn is_alive(&mut self) -> bool {
        self.poll().is_none()
    }

    /// The exit code in Python's convention (`0`, `1` after a panic, the
    /// code given to `exit`, `-N` after death by signal `N`), or `None`
    /// while the child runs. Does not wait.
    pub fn exitcode(&mut self) -> Option<i32> {
        self.poll()
    }

    /// Sends `SIGTERM` (Python's `terminate()`). A no-op once it ended.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `SIGKILL` (Python's `kill()`). A no-op once it ended.
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Waits for the child to end and gives its exit code (Python's
    /// `p.join()` followed by `p.exitcode`); the return value stays for a
    /// later [`join`](Self::join).
    ///
    /// # Errors
    /// The operating system's, if waiting for the child fails.
    pub fn wait(&mut self) -> io::Result<i32> {
        match self.status {
            Some(code) => Ok(code),
            None => self.wait_for(None)?.ok_or_else(|| {
                io::Error::other("a wait without a timeout ended without an exit code")
            }),
        }
    }

    /// Waits for the child and gives back its function's return value.
    ///
    /// # Errors
    /// [`JoinError`]: the child panicked (with its message), was killed by
    /// a signal, exited with a code of its own, never started its task
    /// (`init` missing), or was joined already.
    pub fn join(mut self) -> Result<T, JoinError> {
        let code = match self.status {
            Some(code) => code,
            None => match self.wait_for(None) {
                Ok(Some(code)) => code,
                Ok(None) => {
                    return Err(JoinError::Os(io::Error::other(
                        "a wait without a timeout ended without an exit code",
                    )))
                }
                Err(e) => return Err(JoinError::Os(e)),
            },
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
            None => match self.wait_for(Some(timeout)) {
                Ok(Some(code)) => code,
                Ok(None) => return None,
                Err(e) => return Some(Err(JoinError::Os(e))),
            },
        };
        Some(self.result(code))
    }

    fn result(&mut self, code: i32) -> Result<T, JoinError> {
        let Some(task) = self.task.take() else {
            return Err(JoinError::AlreadyJoined);
        };
        let outcome = task.outcome().map_err(JoinError::Os);
        // The child is reaped: nobody writes the task file any more.
        task.recycle();
        match (code, outcome?) {
            (0, Outcome::Value(bytes)) => T::decode(&bytes).map_err(JoinError::Decode),
            (_, Outcome::Panic(message)) => Err(JoinError::Panicked { message }),
            (_, Outcome::Failed(why)) => Err(JoinError::Failed { why }),
            (c, _) if c < 0 => Err(JoinError::Killed { signal: -c }),
            (_, Outcome::NotStarted) => Err(JoinError::NotStarted),
            (c, _) => Err(JoinError::Exited { code: c }),
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if self.status.is_some() {
            return;
        }
        match &self.handle {
            Handle::Local(l) => {
                // Under the registry's lock, which every reap of our
                // children takes: a child reaped on our behalf (by
                // `active_children`, another start, another thread) may
                // have given its pid to an unrelated process already;
                // one the registry does not know is not our child (a
                // `fork` copy of a parent's handle).
                let children = registry()
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if children.unreaped(*l) {
                    // SAFETY: our own child, not reaped (checked under the
                    // lock that every reap holds), so the pid is still
                    // ours.
                    unsafe { libc::kill(l.pid, sig) };
                }
            }
            Handle::Remote(r) => r.signal(sig),
        }
    }

    /// The exit code if the child has ended (reaping it).
    fn poll(&mut self) -> Option<i32> {
        if self.status.is_none() {
            if let Ok(Some(code)) = self.wait_for(Some(Duration::ZERO)) {
                return Some(code);
            }
        }
        self.status
    }

    /// Waits for the child to end, until `timeout` (forever if `None`).
    /// `Ok(None)`: still running at the timeout.
    fn wait_for(&mut self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        if let Some(code) = self.status {
            return Ok(Some(code));
        }
        let code = match &self.handle {
            Handle::Remote(r) => r.wait(timeout)?,
            Handle::Local(l) => wait_local(*l, timeout)?,
        };
        if let Some(code) = code {
            self.status = Some(code);
        }
        Ok(code)
    }
}

/// Waits for our child `child`, until `timeout` (forever if `None` or too
/// far to name). Reaps it through the registry, which may have reaped it
/// already (then it hands over the exit code it kept).
fn wait_local(child: Local, timeout: Option<Duration>) -> io::Result<Option<i32>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut nap = Duration::from_micros(50);
    loop {
        // Blocking in waitpid under the registry's lock would stall every
        // other start: wait for the exit without the lock, then reap under
        // it. What we wait on is taken under the lock, which every reap of
        // our children takes, right after a reap that found the child
        // running: a pidfd of it, so never of a process — or a new child
        // of ours — that got its pid after another thread reaped it. (That
        // thread left the exit code in the registry.)
        let fd = {
            let mut children = registry()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(code) = children.reap_one(child, libc::WNOHANG) {
                return Ok(Some(code));
            }
            if deadline.is_none() && !children.knows(child) {
                return Err(io::Error::from_raw_os_error(libc::ECHILD));
            }
            pidfd_open(child.pid)
        };
        let left = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    // It may have ended during the last wait.
                    return Ok(registry()
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .reap_one(child, libc::WNOHANG));
                }
                Some(d - now)
            }
        };
        match (fd, left) {
            (Some(fd), left) => wait_exit_fd(&fd, left),
            // No pidfds (Linux before 5.3): wait for the exit without
            // reaping (`WNOWAIT`). The pid is re-checked under the lock
            // above on every round.
            (None, None) => wait_exit_nowait(child.pid),
            (None, Some(left)) => {
                // Poll with a growing nap.
                std::thread::sleep(nap.min(left));
                nap = (nap * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// Waits until process `pid` (our child) exits, without reaping it; returns
/// at once if it cannot be waited for (reaped by another thread, which left
/// the code in the registry, or SIGCHLD ignored), after a short nap so the
/// caller's loop does not spin.
fn wait_exit_nowait(pid: libc::pid_t) {
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid out-pointer; WNOWAIT leaves the child reapable.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        return;
    }
}

/// A pidfd of process `pid`, or `None` if pidfds are unavailable.
fn pidfd_open(pid: libc::pid_t) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a fresh descriptor we own.
    Some(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Waits until the process of pidfd `fd` exits or `timeout` passes
/// (`None`: no timeout; returns early on a signal: the caller loops).
fn wait_exit_fd(fd: &std::os::fd::OwnedFd, timeout: Option<Duration>) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis().max(1)).unwrap_or(libc::c_int::MAX)
    });
    // SAFETY: one valid pollfd; EINTR just returns early (the caller loops).
    unsafe { libc::poll(&mut pfd, 1, ms) };
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
        // Nobody will ask for its exit code any more: reap it now if it
        // has exited, else let the next start or `active_children` reap
        // it and forget it (the forkserver reaps its own).
        if let (None, Handle::Local(l)) = (self.status, &self.handle) {
            registry()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .disown(*l);
        }
    }
}

/// This process's children started by [`spawn`] and friends, reaped as
/// they exit: an exit code is kept until its [`Child`] asks for it (or is
/// dropped), so reaping on behalf of `active_children` never steals one.
/// Entries are keyed by a number of their own, not by pid: a reaped
/// child's pid may go to a new child of ours while the old exit code is
/// still kept. Among the entries not yet reaped, pids are unique.
#[derive(Default)]
struct Children {
    entries: std::collections::HashMap<u64, Entry>,
    next: u64,
}

struct Entry {
    pid: libc::pid_t,
    /// The exit code, once reaped.
    exit: Option<i32>,
    /// Whether a `Child` still wants the exit code.
    owned: bool,
}

impl Children {
    fn started(&mut self, pid: libc::pid_t) -> Local {
        self.next += 1;
        let id = self.next;
        self.entries.insert(
            id,
            Entry {
                pid,
                exit: None,
                owned: true,
            },
        );
        Local { pid, id }
    }

    /// The pids of the children not reaped yet.
    fn running(&self) -> impl Iterator<Item = libc::pid_t> + '_ {
        self.entries
            .values()
            .filter(|e| e.exit.is_none())
            .map(|e| e.pid)
    }

    fn knows(&self, child: Local) -> bool {
        self.entries.contains_key(&child.id)
    }

    /// Whether `child` is a child of ours not reaped yet (its pid cannot
    /// have been reused while this registry is locked).
    fn unreaped(&self, child: Local) -> bool {
        self.entries
            .get(&child.id)
            .is_some_and(|e| e.exit.is_none())
    }

    /// Reaps every child that has exited, keeping the codes still wanted.
    fn reap(&mut self) {
        self.entries.retain(|_, entry| {
            if entry.exit.is_none() {
                entry.exit = waitpid(entry.pid, libc::WNOHANG);
            }
            entry.exit.is_none() || entry.owned
        });
    }

    /// The exit code of `child` if it has exited (reaping it with
    /// `flags`), handed over once: the entry is gone afterwards. A child
    /// the registry does not know (a `fork` copy of a parent's handle) is
    /// asked of the OS by pid.
    fn reap_one(&mut self, child: Local, flags: libc::c_int) -> Option<i32> {
        let code = match self.entries.get(&child.id).and_then(|e| e.exit) {
            Some(code) => code,
            None => waitpid(child.pid, flags)?,
        };
        self.entries.remove(&child.id);
        Some(code)
    }

    /// Its `Child` was dropped: forget the exit code once reaped.
    fn disown(&mut self, child: Local) {
        if let Some(entry) = self.entries.get_mut(&child.id) {
            entry.owned = false;
        }
        self.reap();
    }

    fn clear(&mut self) {
        self.entries.clear();
    }
}

fn registry() -> &'static Mutex<Children> {
    static CHILDREN: std::sync::LazyLock<Mutex<Children>> =
        std::sync::LazyLock::new(|| Mutex::new(Children::default()));
    &CHILDREN
}

/// How many threads this process runs (`/proc/self/task` entries); 1 if
/// that cannot be read. Under user-mode emulation (qemu-user) the
/// emulator's own helper threads (qemu's RCU thread) are listed there too;
/// they run none of the program's code, hold none of its locks, and the
/// emulator re-creates them in every fork child: they are not counted.
fn thread_count() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count().max(1));
    tasks.saturating_sub(emulator_threads()).max(1)
}

/// The helper threads an emulator adds to every process: 0 natively.
/// Under emulation, what a fresh fork child runs besides the thread that
/// forked (its only program thread), counted once per process.
fn emulator_threads() -> usize {
    // usize::MAX: not counted yet. Relaxed: a cache of a value that never
    // changes; racing first calls count the same number.
    static HELPERS: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(usize::MAX);
    let cached = HELPERS.load(Ordering::Relaxed);
    if cached != usize::MAX {
        return cached;
    }
    // qemu answers `/proc/self/exe` with the emulated program; the kernel's
    // per-task link, which qemu passes through, names the emulator.
    let exe = std::fs::read_link("/proc/self/exe");
    let task = std::fs::read_link(format!("/proc/self/task/{}/exe", std::process::id()));
    let emulated = matches!((exe, task), (Ok(a), Ok(b)) if a != b);
    let helpers = if emulated {
        threads_of_a_fresh_fork().map_or(0, |n| n - 1)
    } else {
        0
    };
    HELPERS.store(helpers, Ordering::Relaxed);
    helpers
}

/// Forks a child that stops itself at once, counts its threads, kills and
/// reaps it. `None` if that fails.
fn threads_of_a_fresh_fork() -> Option<usize> {
    // SAFETY: the child only calls `raise` and `_exit`, both
    // async-signal-safe (other parent threads' locks are never needed).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return None;
    }
    if pid == 0 {
        // SAFETY: plain calls; the parent SIGKILLs us while stopped.
        unsafe {
            libc::raise(libc::SIGSTOP);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    let stopped = loop {
        // SAFETY: `status` is a valid out-pointer; `pid` is our child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
        if rc == pid {
            break libc::WIFSTOPPED(status);
        }
        if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None; // not ours to wait for (SIGCHLD ignored): leave it
    };
    let threads = stopped
        .then(|| std::fs::read_dir(format!("/proc/{pid}/task")).map(Iterator::count))
        .and_then(Result::ok)
        .filter(|&n| n >= 1);
    if stopped {
        // SAFETY: `pid` is our stopped, unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = waitpid(pid, 0);
    }
    threads
}

/// Why a child could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// This process runs other threads; forking it is a hazard (see the
    /// module docs). [`Builder::allow_threads`] accepts the risk; the
    /// `Spawn` and `ForkServer` methods avoid it.
    Threads {
        /// Threads counted, the caller included.
        count: usize,
    },
    /// Only the `Fork` method can run a closure.
    NeedsFork {
        /// The method asked for.
        method: StartMethod,
    },
    /// The arguments cannot be encoded.
    Encode(String),
    /// A `Spawn` or `ForkServer` start from a fresh run whose `main` did
    /// not call [`init`] first: it would start the same `main` again, and
    /// so on (a fork bomb).
    Bootstrapping,
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
                "this process runs {count} threads; a forked child gets only the caller's, and locks the others hold stay locked in it forever. Start children before threads, use the Spawn or ForkServer start method, or process::Builder::new().allow_threads(true) if the child takes no such lock"
            ),
            SpawnError::NeedsFork { method } => write!(
                f,
                "only the Fork start method can run a closure ({method:?} starts from main): use spawn_fn with a function and its arguments"
            ),
            SpawnError::Encode(why) => write!(f, "cannot encode the child's arguments: {why}"),
            SpawnError::Bootstrapping => f.write_str(
                "this process is a fresh run of the executable whose main did not call shmkit::process::init() first; starting another would run main again (and again): call init() first thing in main",
            ),
            SpawnError::Os { call, source } => {
                write!(f, "{call} failed while starting a child: {source}")
            }
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why [`Child::join`] gave no value.
#[derive(Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The function panicked (exit code 1).
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The child was killed by this signal (exit code `-signal`).
    Killed {
        /// The signal number (9 for `SIGKILL`, 15 for `SIGTERM`).
        signal: i32,
    },
    /// The child exited with its own code before its function returned.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The task could not run: undecodable arguments, an unencodable
    /// result, or a task file the child refused.
    Failed {
        /// Why.
        why: String,
    },
    /// A `Spawn`/`ForkServer` child never read its task: its `main` does
    /// not call [`init`] first.
    NotStarted,
    /// The returned value does not decode as the expected type.
    Decode(crate::message::DecodeError),
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
                "the child process exited with code {code} before its function returned"
            ),
            JoinError::Failed { why } => write!(f, "the child process could not run its task: {why}"),
            JoinError::NotStarted => f.write_str(
                "the child process never ran its task: call shmkit::process::init() first thing in main",
            ),
            JoinError::Decode(e) => write!(f, "the child's result: {e}"),
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
            JoinError::Decode(e) => Some(e),
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
