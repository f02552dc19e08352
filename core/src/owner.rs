//! Who holds a lock or a role, and whether they are still alive.
//!
//! A lock word, a barrier's party table and a queue's role slot record an
//! **owner id**: 30 bits ([`ID_BITS`]). A survivor asks [`liveness`]
//! whether the owner behind an id still runs; if not, what it held is
//! abandoned and may be taken over.
//!
//! # Liveness tokens: ids the kernel releases at death
//! On Linux with the `std` feature, an owner id is a **token**: a random
//! value in `FIRST_TOKEN..ID_MASK` (`2²² ..= 2³⁰ - 2`) that the owner
//! *holds* as an open-file-description lock (`fcntl(F_OFD_SETLK,
//! F_WRLCK)`) on the byte at offset [`TOKEN_BASE`]` + token` of one
//! machine-wide file, [`LIVENESS_FILE`]. Each process opens that file once
//! (read-write, close-on-exec, created with mode 0666 so that every user's
//! processes share it) and keeps the descriptor for its whole life.
//!
//! - **Thread tokens** name lock holders: each thread that locks draws one
//!   on its first lock (cached with its thread id, one thread-local read
//!   per lock afterwards) and releases it (`F_UNLCK`) when it exits, from a
//!   `pthread` key destructor — those run after every Rust thread-local
//!   destructor, so a guard kept in a thread-local is dropped before the
//!   token goes.
//! - **Process tokens** name role holders (a queue's producer, a pipe's
//!   receiver) and anything that means "this process": one per process,
//!   drawn lazily, never released.
//! - **Checking** a token is one `fcntl(F_OFD_GETLK)` on its byte: a lock
//!   there means alive, none means dead. The kernel drops a process's locks
//!   when its last descriptor of the file closes — at exit, at `SIGKILL`,
//!   at `exec` (the descriptor is close-on-exec). So the answer is exact:
//!   no window between taking a lock and recording who took it (the token
//!   *is* what the lock word's compare-and-swap writes), no pid reuse (a
//!   new process never inherits a dead one's token), no clock-tick
//!   resolution, no `/proc` read, and it works across pid namespaces.
//!
//! Ids below [`FIRST_TOKEN`] are kernel task ids (Linux's `pid_max` is at
//! most 2²², so a tid or pid is always below it); ids from `FIRST_TOKEN` up
//! are tokens. The two kinds coexist in one segment — a process that fell
//! back to task ids (below) shares objects with ones that hold tokens — and
//! [`liveness`] tells them apart by range. [`ID_MASK`] itself is no id (the
//! mutex's "not recoverable" marker).
//!
//! ## Why tokens, and not ...
//! - **(task id, start time)**, what shmkit did before: start times tick at
//!   100 Hz, so a holder killed and its pid reused by a task started in the
//!   same tick looked alive; a holder killed between the lock word's CAS
//!   and the store of its start time, whose pid was reused later, looked
//!   alive too; and under qemu user emulation `/proc/<pid>/stat` is
//!   rewritten per reader, so live owners looked dead.
//! - **A random per-process incarnation stored in the segment** next to
//!   the pid: it still needs a store after the CAS (the window stays open)
//!   and still asks "is this pid alive", which a pid in another pid
//!   namespace cannot answer.
//! - **The kernel's robust-futex list** (what `pthread` robust mutexes
//!   use): each thread registers one list head with `set_robust_list`, and
//!   glibc owns it. A second user would have to splice entries into glibc's
//!   private list layout, and processes without glibc (or without `std`)
//!   have none.
//!
//! ## Two subtleties
//! - **One open file description per process.** Every thread token of a
//!   process is a lock through the *same* description, and a description
//!   never conflicts with itself: two threads drawing the same value would
//!   both succeed, and the first to exit would release the other's token.
//!   So a process keeps the set of tokens it holds (threads' and its own)
//!   and draws under a lock, skipping values in the set; a check of a
//!   token in that set answers "alive" without asking the kernel (which
//!   would not report our own locks).
//! - **`fork`.** A child shares its parent's open file description, so the
//!   parent's tokens would live as long as the child. A `pthread_atfork`
//!   child handler closes the inherited descriptor (`close` is
//!   async-signal-safe) and forgets the parent's tokens; the child opens
//!   its own description and draws its own tokens when it first needs
//!   them. A child made by a raw `clone`/`syscall(SYS_fork)`, which runs
//!   no atfork handlers, keeps its parent's tokens alive while it lives.
//!
//! Tokens are random, so a token a dead owner left in a word may be drawn
//! again later (odds about 1 in 10⁹ per draw). The word then looks held by
//! the new owner until it exits; the new owner itself tells a word it wrote
//! from one a dead predecessor left (the lock records the writer's **tag**
//! next to the word: its thread id in the low [`TAG_TID_BITS`] bits and,
//! above them, a random nonce drawn with the token), so it never mistakes
//! the abandoned lock for one it holds. The nonce matters when the pid was
//! reused too: a process that got the dead holder's pid has the same
//! thread id in its main thread, and only the nonce (odds 1 in 1024 of a
//! clash, on top of the token's) tells the two apart.
//!
//! ## Not defended
//! - Processes that share an object must see the same liveness file (same
//!   `/dev/shm`): two containers with private `/dev/shm` mounts sharing a
//!   memfd segment would see each other's tokens as dead.
//! - The file must not be deleted while shmkit processes run: tokens held
//!   on the deleted file are invisible to processes that open the new one
//!   (a check against a replaced file answers [`Liveness::Unknown`], never
//!   "dead", but processes that opened only the new file cannot tell).
//!   `/dev/shm` is sticky, so only the file's owner (or root) can delete
//!   it: on a machine shared with untrusted users, have root create it at
//!   boot (`touch /dev/shm/.shmkit-liveness && chmod 0666
//!   /dev/shm/.shmkit-liveness`), else its owner is whichever user's
//!   process came first.
//! - The file is world-writable by design: a local user can lock bytes of
//!   it, which makes tokens look alive (a dead owner's lock is then never
//!   recovered) or makes drawing fail (this process then falls back, below).
//!   That is a denial of service, never a stolen lock.
//! - A program that closes descriptors it did not open (`closefrom(3)`
//!   in a long-lived process) closes the liveness file and thereby
//!   releases its own tokens: its locks then look abandoned. Later draws
//!   and checks through the stale descriptor number fail harmlessly
//!   (fallback, "unknown").
//! - Locking from a signal handler (as with `pthread` mutexes): a first
//!   lock draws a token under a process-local lock, which the interrupted
//!   thread may hold.
//!
//! # Fallback: task ids
//! Without the `std` feature (no thread-locals to cache a token in), on
//! targets other than 64-bit Linux, under loom and miri, or when the
//! liveness file cannot be opened or locked (no `/dev/shm`, `EACCES`
//! because another user created it with a restrictive mode, `ENOLCK`),
//! the id is the thread's tid (a process's pid for roles), and a check is
//! `kill(id, 0)` plus a zombie check in `/proc`, with the owner's start
//! time recorded next to the id where there is room (locks, barrier
//! parties, role slots) and compared as well. That path does not defend
//! against the two reuse cases above (same-tick reuse, a kill between the
//! CAS and the record), nor across pid namespaces. On targets without a
//! built-in back end, ids and liveness come from the
//! [`Platform`](crate::wait::Platform). Under loom every model thread gets
//! its own id from a counter (in `sync`) and every owner is alive; under
//! miri, which cannot emulate `kill` or `fcntl` locks, every owner is alive
//! as well.

use crate::sys;

/// Number of low bits an owner id may use. Linux's `pid_max` is at most
/// 4 194 304 = 2²², so task ids fit with room for tokens and flag bits.
pub const ID_BITS: u32 = 30;
/// Mask of the id bits.
pub const ID_MASK: u32 = (1 << ID_BITS) - 1;
/// The smallest token. Ids below it are kernel task ids (Linux tids and
/// pids are below 2²²); ids from it up to `ID_MASK - 1` are tokens.
pub const FIRST_TOKEN: u32 = 1 << 22;
/// The machine-wide file whose byte locks hold the tokens.
pub const LIVENESS_FILE: &str = "/dev/shm/.shmkit-liveness";
/// Token `t` is held by a lock on the byte at `TOKEN_BASE + t` of
/// [`LIVENESS_FILE`].
pub const TOKEN_BASE: u64 = 0;

/// Bits of a token holder's tag (see `thread_ident`'s docs) that hold its
/// thread id: Linux tids are below 2²². The bits above hold a random nonce
/// drawn with the token (module docs).
pub const TAG_TID_BITS: u32 = 22;

/// The thread id in a token holder's tag (the nonce stripped).
#[inline]
#[must_use]
pub const fn tag_tid(tag: u32) -> u32 {
    tag & ((1 << TAG_TID_BITS) - 1)
}

/// The answer to "is the owner of this id still running?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It exists (or we cannot tell it from a live one).
    Alive,
    /// It has exited or been killed; what it held is abandoned.
    Dead,
    /// The platform cannot tell (bare metal without a liveness hook, or a
    /// liveness file that cannot be read).
    Unknown,
}

/// Whether `id` is a liveness token (not a task id, not `ID_MASK`).
#[inline]
#[must_use]
pub const fn is_token(id: u32) -> bool {
    id >= FIRST_TOKEN && id < ID_MASK
}

/// The calling thread's kernel id (Linux: its TID). Never 0. Cached per
/// thread with the `std` feature.
#[inline]
#[must_use]
pub fn current_thread_id() -> u32 {
    #[cfg(all(feature = "std", not(loom)))]
    {
        cache::thread().tid
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    {
        sys::gettid()
    }
}

/// The calling process's id. Never 0.
#[inline]
#[must_use]
pub fn current_process_id() -> u32 {
    #[cfg(all(feature = "std", not(loom)))]
    {
        cache::process_id()
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    {
        sys::getpid()
    }
}

/// The owner id the calling thread's locks record: its thread token, or
/// its tid on the fallback path (module docs).
#[inline]
#[must_use]
pub fn thread_owner_id() -> u32 {
    thread_ident().0
}

/// The owner id of the calling process, as role slots record it: its
/// process token, or its pid on the fallback path.
#[must_use]
pub fn process_owner_id() -> u32 {
    process_ident().0
}

/// Whether the calling thread's owner id is a token (false: the fallback
/// path, see the module docs).
#[must_use]
pub fn uses_tokens() -> bool {
    is_token(thread_owner_id())
}

/// `(owner id, tag)` of the calling thread. The tag goes into a lock's
/// owner record next to the id: when the id is a token, the thread id
/// plus a random nonce drawn with the token above [`TAG_TID_BITS`] (so a
/// thread tells a lock it took from one a dead earlier holder of the same
/// token left, even one whose pid it reuses, and diagnostics can name the
/// thread: [`tag_tid`]); the start time's low 32 bits when the id is a tid
/// (the fallback's reuse check; 0 = unknown).
#[inline]
pub(crate) fn thread_ident() -> (u32, u32) {
    #[cfg(all(feature = "std", not(loom)))]
    {
        let t = cache::thread();
        (t.id, t.tag)
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    {
        (sys::gettid(), 0)
    }
}

/// `(owner id, pid)` of the calling process (see [`process_owner_id`]).
pub(crate) fn process_ident() -> (u32, u32) {
    #[cfg(all(feature = "std", not(loom)))]
    {
        (cache::process_token(), cache::process_id())
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    {
        let pid = sys::getpid();
        (pid, pid)
    }
}

/// Whether the owner behind `id` is alive: a token is checked against the
/// liveness file, a task id with `kill(id, 0)` and `/proc` (zombies are
/// dead). See the module docs.
#[must_use]
pub fn liveness(id: u32) -> Liveness {
    #[cfg(all(target_os = "linux", not(loom)))]
    if is_token(id) {
        return token_liveness(id);
    }
    sys::liveness(id)
}

#[cfg(all(target_os = "linux", not(loom)))]
fn token_liveness(token: u32) -> Liveness {
    #[cfg(feature = "std")]
    {
        cache::token_liveness(token)
    }
    #[cfg(not(feature = "std"))]
    {
        sys::probe_liveness_file(TOKEN_BASE + u64::from(token))
    }
}

/// Whether owner id `id` names this process or one of its threads: a
/// token this process holds, or the id of one of its tasks (fallback).
/// Lets a process that leaves cleanly withdraw what it registered (barrier
/// parties) without touching anyone else's.
#[must_use]
pub fn is_this_process(id: u32) -> bool {
    if id == 0 {
        return false;
    }
    #[cfg(all(feature = "std", not(loom)))]
    if is_token(id) {
        return tokens::held_here(id);
    }
    sys::task_in_this_process(id)
}

/// When task `id` started (Linux: clock ticks since boot), if known. Two
/// tasks that had the same id in different clock ticks have different
/// values (the fallback path's reuse check; tokens need none).
#[must_use]
pub fn start_time(id: u32) -> Option<u64> {
    sys::start_time(id)
}

/// Liveness of task `id` that also catches id reuse: an `id` alive now whose
/// start time differs from `recorded_start` (taken when the owner
/// registered) is a different task, so the original owner is dead.
/// `recorded_start == 0` means "not recorded" and checks the id alone.
/// Start times have a 10 ms resolution: a reuse within the same tick goes
/// unnoticed. Tokens need no start time; for one, this is [`liveness`].
#[must_use]
pub fn liveness_with_start(id: u32, recorded_start: u64) -> Liveness {
    match liveness(id) {
        Liveness::Alive if recorded_start != 0 && !is_token(id) => match start_time(id) {
            Some(now) if now != recorded_start => Liveness::Dead,
            _ => Liveness::Alive,
        },
        other => other,
    }
}

/// The pid of the process holding token `id`, for diagnostics: scans
/// `/proc/*/fdinfo` for a descriptor of the liveness file with a lock on
/// the token's byte (`/proc/locks` shows `-1` as the pid of every
/// open-file-description lock). Costs a directory walk over every process:
/// keep it to tools such as `shmkit inspect`. `None` for a token nobody
/// holds, one held by a process we may not look into, or a task id.
#[cfg(all(feature = "std", target_os = "linux"))]
#[must_use]
pub fn token_holder_pid(id: u32) -> Option<u32> {
    if !is_token(id) {
        return None;
    }
    let offset = TOKEN_BASE + u64::from(id);
    let ino = std::fs::metadata(LIVENESS_FILE)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))?;
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(std::format!("/proc/{pid}/fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            if holds_lock_at(&info, ino, offset) {
                // The lowest pid: a fork child that kept the description
                // (no atfork handler ran) shares the parent's locks.
                found = Some(found.map_or(pid, |p: u32| p.min(pid)));
                break;
            }
        }
    }
    found
}

/// Whether an fdinfo text is a descriptor of inode `ino` holding a lock
/// whose range starts at `offset`.
#[cfg(all(feature = "std", target_os = "linux"))]
fn holds_lock_at(info: &str, ino: u64, offset: u64) -> bool {
    let same_file = info
        .lines()
        .find_map(|l| l.strip_prefix("ino:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        == Some(ino);
    same_file
        && info
            .lines()
            .filter_map(|l| l.strip_prefix("lock:"))
            .any(|l| {
                // "1: OFDLCK ADVISORY  WRITE -1 fe:00:1234 START END"
                let fields: std::vec::Vec<&str> = l.split_whitespace().collect();
                fields.len() >= 2 && fields[fields.len() - 2].parse::<u64>().ok() == Some(offset)
            })
}

/// A **presence token**: a token held through a description of the
/// liveness file that belongs to one object (a queue's sender, a pipe end)
/// rather than to a thread or a process.
///
/// A `fork` child inherits the description (the atfork handler closes only
/// the process's own one), so the token stays held while *any* process
/// keeps a copy of the object, and is released when the last copy is
/// dropped or the last process holding one dies. That is how a role
/// handle inherited across `fork` stays present after its creator drops
/// its copy (Python's "create both ends, fork, close the parent's copy").
///
/// | event | the token |
/// |---|---|
/// | [`Presence::new`] | held (a fresh description, a lock on a fresh byte) |
/// | `fork` | still held, now also by the child's inherited descriptor |
/// | drop in one process | held while another process keeps its descriptor |
/// | last descriptor closed (drop, exit, kill, `exec`) | released: [`liveness`] says `Dead` |
///
/// Checking it is [`liveness`], like any token. `None` from
/// [`Presence::new`] where tokens are not used (module docs, "Fallback"):
/// callers then fall back to the process token.
#[cfg(all(feature = "std", target_os = "linux", not(loom)))]
#[derive(Debug)]
pub struct Presence {
    fd: i32,
    token: u32,
}

#[cfg(all(feature = "std", target_os = "linux", not(loom)))]
impl Presence {
    /// Opens a description of the liveness file and holds a fresh token
    /// through it. `None` on the fallback path (no liveness file, no
    /// tokens on this target, or draws failing).
    #[must_use]
    pub fn new() -> Option<Presence> {
        cache::register();
        let (fd, token) = tokens::draw_presence()?;
        Some(Presence { fd, token })
    }

    /// The token (an owner id: check it with [`liveness`]).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.token
    }

    /// Whether another description (a copy inherited by a `fork` child,
    /// usually) still holds the token after this one is closed: closes
    /// this process's descriptor, then asks. Consumes the presence.
    #[must_use]
    pub fn close_and_check_elsewhere(self) -> bool {
        let token = self.token;
        drop(self);
        liveness(token) == Liveness::Alive
    }
}

#[cfg(all(feature = "std", target_os = "linux", not(loom)))]
impl Drop for Presence {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

/// Test support (feature `test-hooks`, never in a normal build): make the
/// calling process behave in ways tests cannot otherwise force.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks {
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    static KILL_AFTER_CAS: AtomicBool = AtomicBool::new(false);
    static FORCE_TASK_IDS: AtomicBool = AtomicBool::new(false);
    static FORCED_DRAW: AtomicU32 = AtomicU32::new(0);

    /// From now on, this process SIGKILLs itself right after the next
    /// compare-and-swap that records it as an owner (a lock word, a role
    /// slot), before anything else is written: the worst instant to die.
    pub fn kill_after_next_owner_cas() {
        KILL_AFTER_CAS.store(true, Ordering::SeqCst);
    }

    /// Called right after an owner-recording CAS succeeded.
    #[inline]
    pub(crate) fn after_owner_cas() {
        if KILL_AFTER_CAS.load(Ordering::Relaxed) {
            #[cfg(target_os = "linux")]
            // SAFETY: signalling our own process.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }

    /// This process draws no tokens from now on (threads and the process
    /// not yet holding one use task ids): the fallback path, on demand.
    pub fn force_task_ids() {
        FORCE_TASK_IDS.store(true, Ordering::SeqCst);
    }

    pub(crate) fn task_ids_forced() -> bool {
        FORCE_TASK_IDS.load(Ordering::Relaxed)
    }

    /// Every token draw of this process from now on yields `token` (a
    /// value in `FIRST_TOKEN..ID_MASK`; 0 restores random draws): makes
    /// clashes, and their refusal, deterministic.
    pub fn force_token_draws(token: u32) {
        FORCED_DRAW.store(token, Ordering::SeqCst);
    }

    /// The tag the calling thread's locks record next to its owner id
    /// (see `owner::thread_ident`): lets a test tell whether two owners'
    /// records could be told apart at all.
    pub fn thread_tag() -> u32 {
        super::thread_ident().1
    }

    #[allow(dead_code)] // unused where tokens are never drawn
    pub(crate) fn forced_draw() -> Option<u32> {
        match FORCED_DRAW.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
}

/// No-op stand-in when the hooks are compiled out.
#[cfg(not(feature = "test-hooks"))]
pub(crate) mod test_hooks {
    #[inline(always)]
    pub(crate) fn after_owner_cas() {}
    #[allow(dead_code)]
    pub(crate) fn task_ids_forced() -> bool {
        false
    }
    #[allow(dead_code)]
    pub(crate) fn forced_draw() -> Option<u32> {
        None
    }
}

#[cfg(all(feature = "std", not(loom)))]
mod cache {
    //! Per-thread cache of the owner id and tid, per-process caches of the
    //! pid and the process token, all invalidated by a `fork()` child
    //! handler bumping a generation; and, where tokens are used, the
    //! process's liveness-file state.

    extern crate std;

    use core::cell::Cell;
    use core::sync::atomic::{AtomicU32, Ordering};

    /// Bumped in every child after fork. Relaxed is enough: the handler runs
    /// in the child's only thread before `fork()` returns there.
    pub(super) static FORK_GENERATION: AtomicU32 = AtomicU32::new(1);
    static PID: AtomicU32 = AtomicU32::new(0);
    static PID_GENERATION: AtomicU32 = AtomicU32::new(0);
    static PTOKEN: AtomicU32 = AtomicU32::new(0);
    static PTOKEN_GENERATION: AtomicU32 = AtomicU32::new(0);
    /// A `pthread_once_t`, not a `std::sync::Once`: a `fork()` while another
    /// thread is inside the registration would leave a `Once` "running"
    /// forever in the child, which then hangs on its first id lookup.
    /// glibc's `pthread_once` notices the fork and starts over.
    static mut REGISTER: libc::pthread_once_t = libc::PTHREAD_ONCE_INIT;

    /// What a thread caches about itself.
    #[derive(Clone, Copy)]
    pub(super) struct Thread {
        /// Fork generation the rest belongs to; 0 = not yet filled.
        generation: u32,
        /// Kernel thread id.
        pub(super) tid: u32,
        /// Owner id: a thread token, or `tid` (fallback).
        pub(super) id: u32,
        /// See `owner::thread_ident`.
        pub(super) tag: u32,
    }

    std::thread_local! {
        /// No destructor, so it stays readable while the thread's other
        /// thread-locals are torn down (and in `pthread` key destructors).
        static THREAD: Cell<Thread> = const {
            Cell::new(Thread { generation: 0, tid: 0, id: 0, tag: 0 })
        };
    }

    extern "C" fn prepare_fork() {
        super::tokens::prepare_fork();
    }

    extern "C" fn after_fork_in_parent() {
        super::tokens::after_fork_in_parent();
    }

    extern "C" fn after_fork_in_child() {
        // Only async-signal-safe work here: atomics and `close`.
        super::tokens::after_fork_in_child();
        FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    }

    extern "C" fn register_once() {
        // SAFETY: the handlers are plain `extern "C"` fns; see each.
        unsafe {
            libc::pthread_atfork(
                Some(prepare_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            );
        }
        super::tokens::create_exit_key();
    }

    #[cold]
    pub(super) fn register() {
        // SAFETY: REGISTER is only ever handed to pthread_once, which
        // synchronises every access to it.
        unsafe {
            libc::pthread_once(core::ptr::addr_of_mut!(REGISTER), register_once);
        }
    }

    #[inline]
    pub(super) fn thread() -> Thread {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        match THREAD.try_with(Cell::get) {
            Ok(t) if t.generation == generation => t,
            _ => refresh_thread(),
        }
    }

    #[cold]
    fn refresh_thread() -> Thread {
        register();
        // Read the generation after registering, so a fork racing with the
        // registration still invalidates what we cache here.
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let tid = crate::sys::gettid();
        let t = match super::tokens::draw_thread_token() {
            Some(token) => Thread {
                generation,
                tid,
                id: token,
                // The nonce (module docs); `tid` fits below it.
                tag: super::tag_tid(tid) | (crate::sys::random_u32() << super::TAG_TID_BITS),
            },
            None => fallback(generation, tid),
        };
        let _ = THREAD.try_with(|c| c.set(t));
        t
    }

    /// The fallback identity: the tid, tagged with its start time.
    fn fallback(generation: u32, tid: u32) -> Thread {
        // (Miri can read /proc but the value serves no check there.)
        let start = if cfg!(miri) {
            0
        } else {
            crate::sys::start_time(tid).map_or(0, |s| s as u32)
        };
        Thread {
            generation,
            tid,
            id: tid,
            tag: start,
        }
    }

    /// Switches the calling (exiting) thread to its tid once its token is
    /// released, so a lock taken later in its teardown records a task id.
    #[allow(dead_code)] // without tokens nothing retires
    pub(super) fn retire_thread() -> Option<u32> {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let t = THREAD.try_with(Cell::get).ok()?;
        if t.generation != generation || !super::is_token(t.id) {
            return None;
        }
        let _ = THREAD.try_with(|c| {
            c.set(Thread {
                generation,
                tid: t.tid,
                id: t.tid,
                tag: 0,
            });
        });
        Some(t.id)
    }

    #[inline]
    pub(super) fn process_id() -> u32 {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        // Acquire pairs with the Release store in the refresh below.
        if PID_GENERATION.load(Ordering::Acquire) == generation {
            let pid = PID.load(Ordering::Relaxed);
            if pid != 0 {
                return pid;
            }
        }
        register();
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let pid = crate::sys::getpid();
        PID.store(pid, Ordering::Relaxed);
        // Release pairs with the Acquire load of PID_GENERATION above: a
        // thread that sees this generation sees the pid stored before it.
        PID_GENERATION.store(generation, Ordering::Release);
        pid
    }

    pub(super) fn process_token() -> u32 {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        // Acquire pairs with the Release store below.
        if PTOKEN_GENERATION.load(Ordering::Acquire) == generation {
            let t = PTOKEN.load(Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
        register();
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let t = super::tokens::process_token().unwrap_or_else(process_id);
        PTOKEN.store(t, Ordering::Relaxed);
        // Release pairs with the Acquire load above (as for the pid).
        PTOKEN_GENERATION.store(generation, Ordering::Release);
        t
    }

    #[cfg(target_os = "linux")]
    pub(super) fn token_liveness(token: u32) -> super::Liveness {
        register();
        super::tokens::liveness(token)
    }
}

/// The process's liveness-file state: its descriptor and the tokens it
/// holds, under one lock (module docs, "Two subtleties").
#[cfg(all(
    feature = "std",
    target_os = "linux",
    target_pointer_width = "64",
    not(loom),
    not(miri)
))]
mod tokens {
    extern crate std;

    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicI32, AtomicU32, Ordering};
    use std::collections::BTreeSet;

    use super::cache::FORK_GENERATION;
    use super::{Liveness, FIRST_TOKEN, ID_MASK, TOKEN_BASE};
    use crate::sys;

    /// Draws tried before giving up (each clashes only with a token
    /// another task holds: about one in a million draws while a thousand
    /// tasks hold tokens).
    const DRAWS: u32 = 64;

    struct Process {
        /// Fork generation the rest belongs to.
        generation: u32,
        /// The liveness file, or -1 (not opened yet, or could not be).
        fd: i32,
        /// Whether `fd` was opened read-write (tokens can be taken).
        writable: bool,
        /// `(device, inode)` of the file `fd` was opened on.
        identity: (u64, u64),
        /// Whether opening was tried in this generation.
        tried: bool,
        /// A draw failed for a reason other than a clash: stop drawing.
        failed: bool,
        /// The process token, 0 if not drawn.
        process_token: u32,
        /// Every token this process holds (its threads' and its own).
        held: BTreeSet<u32>,
    }

    struct Shared(UnsafeCell<Process>);
    // SAFETY: the process state is only accessed while LOCK is held.
    unsafe impl Sync for Shared {}

    static STATE: Shared = Shared(UnsafeCell::new(Process {
        generation: 0,
        fd: -1,
        writable: false,
        identity: (0, 0),
        tried: false,
        failed: false,
        process_token: 0,
        held: BTreeSet::new(),
    }));
    /// 0 free, 1 held. A spin lock (holders only make a few syscalls) that
    /// a fork child can reset, which a `std` mutex is not.
    static LOCK: AtomicU32 = AtomicU32::new(0);
    /// The descriptor, mirrored for the fork child handler (which may not
    /// take LOCK: the parent's prepare handler holds it across `fork`).
    static FD: AtomicI32 = AtomicI32::new(-1);
    /// The `pthread` key whose destructor releases a thread's token.
    static EXIT_KEY: AtomicU32 = AtomicU32::new(0);
    static EXIT_KEY_READY: AtomicU32 = AtomicU32::new(0);

    fn lock() {
        let mut spins = 0u32;
        // SYNC POINT (token state): Acquire pairs with the Release store
        // in `unlock`: the holder sees the previous holder's writes.
        while LOCK
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins = spins.wrapping_add(1);
            if spins % 16 == 0 {
                sys::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
    }

    fn unlock() {
        // SYNC POINT (token state): see `lock`.
        LOCK.store(0, Ordering::Release);
    }

    /// Runs `f` on the process state, under the lock.
    fn with<R>(f: impl FnOnce(&mut Process) -> R) -> R {
        lock();
        // SAFETY: LOCK is held: nobody else accesses the state.
        let p = unsafe { &mut *STATE.0.get() };
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        if p.generation != generation {
            // A fork child (or the first use): the parent's descriptor was
            // closed by the child handler; its tokens are not ours.
            p.generation = generation;
            p.fd = -1;
            p.writable = false;
            p.tried = false;
            p.failed = false;
            p.process_token = 0;
            p.held.clear();
        }
        let r = f(p);
        unlock();
        r
    }

    impl Process {
        /// The descriptor, opening the file on first use.
        fn fd(&mut self) -> Option<i32> {
            if !self.tried {
                self.tried = true;
                let opened = sys::open_liveness_file(true)
                    .map(|fd| (fd, true))
                    .or_else(|_| sys::open_liveness_file(false).map(|fd| (fd, false)));
                if let Ok((fd, writable)) = opened {
                    self.fd = fd;
                    self.writable = writable;
                    self.identity = sys::file_identity(fd).unwrap_or((0, 0));
                    FD.store(fd, Ordering::Relaxed);
                }
            }
            (self.fd >= 0).then_some(self.fd)
        }

        /// Draws and takes a token not held by anyone, or `None`.
        fn draw(&mut self) -> Option<u32> {
            if self.failed || super::test_hooks::task_ids_forced() {
                return None;
            }
            let fd = self.fd()?;
            if !self.writable {
                return None;
            }
            // Still our file? A program that closed our descriptor may
            // have reused its number for another file: locks taken there
            // would hold nothing anyone checks.
            if sys::file_identity(fd) != Some(self.identity) {
                self.failed = true;
                return None;
            }
            for _ in 0..DRAWS {
                let token = super::test_hooks::forced_draw()
                    .unwrap_or_else(|| FIRST_TOKEN + sys::random_u32() % (ID_MASK - FIRST_TOKEN));
                if self.held.contains(&token) {
                    continue;
                }
                match sys::ofd_lock(fd, TOKEN_BASE + u64::from(token), true) {
                    Ok(()) => {
                        self.held.insert(token);
                        return Some(token);
                    }
                    Err(e) if e == libc::EAGAIN || e == libc::EACCES => {}
                    Err(_) => {
                        // ENOLCK and the like: this file will not do.
                        self.failed = true;
                        return None;
                    }
                }
            }
            None
        }
    }

    pub(super) fn create_exit_key() {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; the destructor is a plain
        // `extern "C"` fn.
        if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
            EXIT_KEY.store(key, Ordering::Relaxed);
            // Release pairs with the Acquire load in `draw_thread_token`.
            EXIT_KEY_READY.store(1, Ordering::Release);
        }
    }

    /// A thread token for the calling thread, or `None` (fallback).
    pub(super) fn draw_thread_token() -> Option<u32> {
        // Acquire pairs with the Release store in `create_exit_key`.
        if EXIT_KEY_READY.load(Ordering::Acquire) == 0 {
            // Without the key nothing would release the token at exit.
            return None;
        }
        let key = EXIT_KEY.load(Ordering::Relaxed);
        let token = with(Process::draw)?;
        // Any non-null value makes the destructor run at thread exit.
        // SAFETY: `key` was created by pthread_key_create.
        if unsafe {
            libc::pthread_setspecific(key, core::ptr::NonNull::<u8>::dangling().as_ptr().cast())
        } != 0
        {
            release(token);
            return None;
        }
        Some(token)
    }

    /// The `pthread` key destructor: the thread is exiting, every Rust
    /// thread-local is already gone; release its token.
    extern "C" fn thread_exit(_value: *mut libc::c_void) {
        if let Some(token) = super::cache::retire_thread() {
            release(token);
        }
    }

    fn release(token: u32) {
        with(|p| {
            if p.held.remove(&token) && p.fd >= 0 {
                let _ = sys::ofd_lock(p.fd, TOKEN_BASE + u64::from(token), false);
            }
        });
    }

    /// The process token (drawn once per process), or `None` (fallback).
    pub(super) fn process_token() -> Option<u32> {
        with(|p| {
            if p.process_token == 0 {
                p.process_token = p.draw()?;
            }
            Some(p.process_token)
        })
    }

    /// Whether `token` is one this process holds.
    pub(super) fn held_here(token: u32) -> bool {
        with(|p| p.held.contains(&token))
    }

    /// Whether `token` is held, by this process or another one.
    pub(super) fn liveness(token: u32) -> Liveness {
        with(|p| {
            if p.held.contains(&token) {
                // Ours: the kernel would not report a lock of our own
                // description, and the lock we hold keeps the set stable.
                return Liveness::Alive;
            }
            let Some(fd) = p.fd() else {
                return Liveness::Unknown;
            };
            match sys::ofd_probe(fd, TOKEN_BASE + u64::from(token)) {
                Ok(true) => Liveness::Alive,
                // Nobody holds it: dead, if our file is still *the* file.
                Ok(false) if sys::is_current_liveness_file(fd) => Liveness::Dead,
                Ok(false) | Err(_) => Liveness::Unknown,
            }
        })
    }

    /// A presence token: a fresh description of the liveness file and a
    /// token locked through it (see `owner::Presence`). The draw clashes
    /// with every lock another description holds, this process's own
    /// included, so it never equals a live thread or process token.
    pub(super) fn draw_presence() -> Option<(i32, u32)> {
        if super::test_hooks::task_ids_forced() {
            return None;
        }
        let fd = sys::open_liveness_file(true).ok()?;
        // The file our process checks against: a presence taken on a
        // different (replaced) file would look dead to it.
        let ours = with(|p| p.fd().map(|_| p.identity));
        if ours.is_some() && sys::file_identity(fd) != ours {
            sys::close(fd);
            return None;
        }
        for _ in 0..DRAWS {
            let token = super::test_hooks::forced_draw()
                .unwrap_or_else(|| FIRST_TOKEN + sys::random_u32() % (ID_MASK - FIRST_TOKEN));
            match sys::ofd_lock(fd, TOKEN_BASE + u64::from(token), true) {
                Ok(()) => return Some((fd, token)),
                Err(e) if e == libc::EAGAIN || e == libc::EACCES => {}
                Err(_) => break,
            }
        }
        sys::close(fd);
        None
    }

    /// `pthread_atfork` prepare: hold the lock across `fork`, so the child
    /// inherits a consistent state (no descriptor half-opened, no token
    /// half-drawn).
    pub(super) fn prepare_fork() {
        lock();
    }

    pub(super) fn after_fork_in_parent() {
        unlock();
    }

    /// `pthread_atfork` child: async-signal-safe only (atomics, `close`).
    pub(super) fn after_fork_in_child() {
        let fd = FD.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            sys::close(fd);
        }
        // The lock was taken by our own prepare handler before the fork.
        LOCK.store(0, Ordering::Relaxed);
    }
}

/// Where tokens are not drawn (module docs, "Fallback") but the `std`
/// cache exists: the same calls, answering "no token".
#[cfg(all(
    feature = "std",
    not(loom),
    not(all(
        feature = "std",
        target_os = "linux",
        target_pointer_width = "64",
        not(loom),
        not(miri)
    ))
))]
mod tokens {
    #[cfg(target_os = "linux")]
    use super::Liveness;

    pub(super) fn create_exit_key() {}
    pub(super) fn prepare_fork() {}
    pub(super) fn after_fork_in_parent() {}
    pub(super) fn after_fork_in_child() {}
    pub(super) fn draw_thread_token() -> Option<u32> {
        None
    }
    pub(super) fn process_token() -> Option<u32> {
        None
    }
    pub(super) fn held_here(_token: u32) -> bool {
        false
    }
    pub(super) fn draw_presence() -> Option<(i32, u32)> {
        None
    }
    /// A token another process holds, asked without a descriptor of our
    /// own (we hold none).
    #[cfg(target_os = "linux")]
    pub(super) fn liveness(token: u32) -> Liveness {
        if cfg!(miri) {
            // Miri cannot emulate `fcntl` locks.
            return Liveness::Unknown;
        }
        crate::sys::probe_liveness_file(super::TOKEN_BASE + u64::from(token))
    }
}

#[cfg(all(
    test,
    all(
        feature = "std",
        target_os = "linux",
        target_pointer_width = "64",
        not(loom),
        not(miri)
    )
))]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn threads_hold_distinct_live_tokens_released_at_exit() {
        let me = thread_owner_id();
        assert!(is_token(me), "no token: is /dev/shm writable?");
        assert_eq!(liveness(me), Liveness::Alive);
        let (other, tid) = std::thread::spawn(|| (thread_owner_id(), current_thread_id()))
            .join()
            .unwrap();
        assert!(is_token(other));
        assert_ne!(other, me);
        assert_ne!(tid, current_thread_id());
        // The exited thread's token was released by its key destructor.
        assert_eq!(liveness(other), Liveness::Dead);
        let p = process_owner_id();
        assert!(is_token(p));
        assert_ne!(p, me);
        assert_eq!(liveness(p), Liveness::Alive);
        assert_eq!(thread_owner_id(), me, "cached");
    }

    #[test]
    fn presence_lives_while_any_fork_copy_does() {
        let p = Presence::new().expect("no presence token: is /dev/shm writable?");
        let token = p.id();
        assert!(is_token(token));
        assert_eq!(liveness(token), Liveness::Alive);
        assert!(!is_this_process(token), "held by its own description");
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid out-array of two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only calls async-signal-safe functions (read,
        // _exit) before exiting.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let mut b = 0u8;
            // SAFETY: reading one byte into a valid buffer.
            unsafe {
                libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        assert!(child > 0);
        // The child's inherited descriptor keeps the token held.
        assert!(p.close_and_check_elsewhere());
        assert_eq!(liveness(token), Liveness::Alive);
        // SAFETY: writing one byte from a valid buffer; reaping our child.
        unsafe {
            assert_eq!(libc::write(fds[1], [1u8].as_ptr().cast(), 1), 1);
            let mut status = 0;
            assert_eq!(libc::waitpid(child, &mut status, 0), child);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(liveness(token), Liveness::Dead);
        // Alone, the last copy's close releases it at once.
        let q = Presence::new().unwrap();
        let t = q.id();
        assert!(!q.close_and_check_elsewhere());
        assert_eq!(liveness(t), Liveness::Dead);
    }

    #[test]
    fn fdinfo_lines_are_parsed() {
        let info = "pos:\t0\nflags:\t02100002\nino:\t77\nlock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:77 4194400 4194400\n";
        assert!(holds_lock_at(info, 77, 4_194_400));
        assert!(!holds_lock_at(info, 78, 4_194_400));
        assert!(!holds_lock_at(info, 77, 4_194_401));
    }

    #[test]
    fn token_holder_pid_names_this_process() {
        let me = thread_owner_id();
        assert_eq!(token_holder_pid(me), Some(current_process_id()));
        assert_eq!(token_holder_pid(1), None);
    }
}
