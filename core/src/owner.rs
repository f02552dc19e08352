//! Who holds a lock or a role, and whether they are still alive.
//!
//! Locks record their owner's **thread id** (Linux TIDs fit in
//! [`ID_BITS`] bits: `pid_max` is at most 2²²), roles such as "the producer"
//! record a **process id**. A survivor checks a recorded id with
//! [`liveness`]; to guard against the id being reused by a new task after the
//! old one died, callers that can afford it also record [`start_time`] of the
//! owner and compare it on the check (a reused id has a later start time).
//!
//! The calling thread's id is cached per thread when the `std` feature is on
//! (one thread-local load per lock), and fetched with a syscall otherwise.
//! The cache is invalidated in a child after `fork()`.

/// Number of low bits an owner id may use. Linux's `pid_max` is at most
/// 4 194 304 = 2²², so ids fit with room for flag bits above them.
pub const ID_BITS: u32 = 30;
/// Mask of the id bits.
pub const ID_MASK: u32 = (1 << ID_BITS) - 1;

/// The answer to "is the owner of this id still running?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It exists (or we cannot tell it from a live one).
    Alive,
    /// It has exited or been killed; what it held is abandoned.
    Dead,
    /// The platform cannot tell (bare metal without a liveness hook).
    Unknown,
}

/// The calling thread's id (Linux: its TID). Never 0.
#[inline]
#[must_use]
pub fn current_thread_id() -> u32 {
    #[cfg(all(feature = "std", not(loom)))]
    {
        cache::thread_id()
    }
    #[cfg(not(all(feature = "std", not(loom))))]
    {
        crate::sys::gettid()
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
        crate::sys::getpid()
    }
}

/// Whether the thread or process `id` is alive. Zombies are dead.
#[must_use]
pub fn liveness(id: u32) -> Liveness {
    crate::sys::liveness(id)
}

/// When task `id` started (Linux: clock ticks since boot), if known. Two
/// tasks that had the same id at different times have different values.
#[must_use]
pub fn start_time(id: u32) -> Option<u64> {
    crate::sys::start_time(id)
}

/// Liveness of `id` that also catches id reuse: an `id` alive now whose
/// start time differs from `recorded_start` (taken when the owner
/// registered) is a different task, so the original owner is dead.
/// `recorded_start == 0` means "not recorded" and checks the id alone.
#[must_use]
pub fn liveness_with_start(id: u32, recorded_start: u64) -> Liveness {
    match liveness(id) {
        Liveness::Alive if recorded_start != 0 => match start_time(id) {
            Some(now) if now != recorded_start => Liveness::Dead,
            _ => Liveness::Alive,
        },
        other => other,
    }
}

#[cfg(all(feature = "std", not(loom)))]
mod cache {
    //! Per-thread cache of the TID, and per-process cache of the PID, both
    //! invalidated by a `fork()` child handler bumping a generation.

    extern crate std;

    use core::cell::Cell;
    use core::sync::atomic::{AtomicU32, Ordering};

    /// Bumped in every child after fork. Relaxed is enough: the handler runs
    /// in the child's only thread before `fork()` returns there.
    static FORK_GENERATION: AtomicU32 = AtomicU32::new(1);
    static PID: AtomicU32 = AtomicU32::new(0);
    static PID_GENERATION: AtomicU32 = AtomicU32::new(0);
    /// A `pthread_once_t`, not a `std::sync::Once`: a `fork()` while another
    /// thread is inside the registration would leave a `Once` "running"
    /// forever in the child, which then hangs on its first id lookup.
    /// glibc's `pthread_once` notices the fork and starts over.
    static mut REGISTER: libc::pthread_once_t = libc::PTHREAD_ONCE_INIT;

    std::thread_local! {
        /// (generation, tid); generation 0 = not yet filled.
        static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
    }

    extern "C" fn after_fork_in_child() {
        FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    }

    extern "C" fn register_once() {
        // SAFETY: the handler is a plain `extern "C"` fn that only does an
        // atomic add, which is async-signal-safe.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    }

    #[cold]
    fn register() {
        // SAFETY: REGISTER is only ever handed to pthread_once, which
        // synchronises every access to it.
        unsafe {
            libc::pthread_once(core::ptr::addr_of_mut!(REGISTER), register_once);
        }
    }

    #[inline]
    pub(super) fn thread_id() -> u32 {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        // `try_with` fails only while the thread's locals are being torn
        // down (a guard dropped in a TLS destructor): ask the kernel then.
        match TID.try_with(Cell::get) {
            Ok((cached_generation, tid)) if cached_generation == generation => tid,
            _ => refresh_tid(),
        }
    }

    #[cold]
    fn refresh_tid() -> u32 {
        register();
        // Read the generation after registering, so a fork racing with the
        // registration still invalidates what we cache here.
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let tid = crate::sys::gettid();
        let _ = TID.try_with(|c| c.set((generation, tid)));
        tid
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
}
