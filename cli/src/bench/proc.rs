//! Process plumbing for benchmark impls: pinning, forked peers, and raw
//! shared scratch memory for floors that bypass shmkit.

use std::io;
use std::ptr::NonNull;

/// Pins the calling thread (and so a single-threaded process) to `cpu`.
///
/// # Errors
/// The OS error of `sched_setaffinity` (e.g. no such CPU).
pub fn pin_current(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET bounds-checks `cpu` against the set size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins to `params.cpus[index]` if the list has that entry.
///
/// # Errors
/// As [`pin_current`].
pub fn pin_index(cpus: &[usize], index: usize) -> io::Result<()> {
    match cpus.get(index) {
        Some(&cpu) => pin_current(cpu),
        None => Ok(()),
    }
}

/// A forked peer process. Dropping it unjoined SIGKILLs and reaps it.
#[derive(Debug)]
pub struct Peer {
    pid: libc::pid_t,
    reaped: bool,
}

/// Forks a peer that pins itself to `cpu` (if given), runs `body`, and
/// exits with its return value (101 on panic).
///
/// # Errors
/// The OS error of `fork`.
pub fn spawn_peer(cpu: Option<usize>, body: impl FnOnce() -> i32) -> io::Result<Peer> {
    // SAFETY: the child only runs `body` and `_exit`s; the benchmark
    // process is single-threaded when it forks peers.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(cpu) = cpu {
                if pin_current(cpu).is_err() {
                    return 102;
                }
            }
            body()
        }))
        .unwrap_or(101);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    Ok(Peer { pid, reaped: false })
}

impl Peer {
    /// The peer's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the peer; `Err` unless it exited with code 0.
    ///
    /// # Errors
    /// A description of how the peer ended.
    pub fn join(mut self) -> Result<(), String> {
        let mut status = 0;
        loop {
            // SAFETY: valid out-pointer; `pid` is our unreaped child.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                self.reaped = true;
                return Err(format!("waitpid: {err}"));
            }
        }
        self.reaped = true;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else if libc::WIFEXITED(status) {
            Err(format!(
                "peer exited with code {}",
                libc::WEXITSTATUS(status)
            ))
        } else {
            Err(format!("peer killed by signal {}", libc::WTERMSIG(status)))
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// `len` bytes of zeroed `MAP_SHARED | MAP_ANONYMOUS` memory, shared with
/// peers forked after this call; unmapped on drop. For floors and peers
/// that must not go through shmkit.
#[derive(Debug)]
pub struct Scratch {
    ptr: NonNull<u8>,
    len: usize,
}

impl Scratch {
    /// Maps `len` bytes (page-aligned, zeroed).
    ///
    /// # Errors
    /// The OS error of `mmap`.
    pub fn new(len: usize) -> io::Result<Scratch> {
        // SAFETY: anonymous mapping request with no address hint.
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
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Scratch { ptr, len })
    }

    /// Start of the mapping (page-aligned).
    #[must_use]
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true for a successful mapping.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An atomic at byte `offset` (must be 4-aligned and in range).
    ///
    /// # Panics
    /// If `offset` is misaligned or out of range.
    #[must_use]
    pub fn atomic_u32(&self, offset: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "bad scratch offset"
        );
        // SAFETY: in range and aligned (checked); the mapping lives as long
        // as `self`; shared memory is accessed only atomically through this.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    /// An atomic at byte `offset` (must be 8-aligned and in range).
    ///
    /// # Panics
    /// If `offset` is misaligned or out of range.
    #[must_use]
    pub fn atomic_u64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len,
            "bad scratch offset"
        );
        // SAFETY: as for `atomic_u32`.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
