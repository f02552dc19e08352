//! Coverage-guided fuzz targets for shmkit (`cargo fuzz`, libFuzzer).
//!
//! Two families of targets, one file each under `fuzz_targets/`, whose
//! logic lives here so that it can also be replayed by plain tests:
//!
//! - [`objects`]: one target per core object. The input is the object's
//!   initial bytes (or "start honest") followed by a sequence of
//!   operations; between operations a *peer* may overwrite any bytes of
//!   the object ([`Region::scribble`]). Only `try_` and timed calls with
//!   tiny timeouts are made, and every timed call is checked to return by
//!   its deadline ([`Clock::timed`]).
//! - [`open`]: one target per open path (`open`, `open_read_only`,
//!   `open_or_create`, `from_fd`). The input is a whole segment (header and
//!   payload); it is written to `/dev/shm` or a memfd, opened with a typed
//!   handle, and every operation of that handle is called once. Every call
//!   into the posix API goes through that one module.
//!
//! Properties checked: no panic, no out-of-bounds access or other UB
//! (AddressSanitizer, which `cargo fuzz` builds with; objects live in heap
//! buffers of their exact size, so even a one-byte overrun is reported),
//! no timed call returning late (or hanging: libFuzzer's `-timeout`), and,
//! while no peer has written anything, that queues and pipes deliver
//! exactly what was sent, in order (a model in the harness).
//!
//! # Forged owner ids
//! Lock words and role slots name owners by thread or process id, and the
//! fuzzer forges them freely. shmkit only ever *asks* about such an id
//! (`kill(id, 0)`, which delivers nothing, and a read of
//! `/proc/<id>/stat`) and only waits on words in its own buffer, with a
//! deadline. To make that a checked property rather than a hope, this crate
//! interposes `kill(2)` for the whole fuzzer binary ([`kill`]): a real
//! signal to any process but ourselves aborts the run as a finding.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod input;
pub mod objects;
pub mod open;
pub mod paths;
pub mod region;
pub mod values;

use std::time::{Duration, Instant};

pub use input::Input;
pub use region::Region;

/// Most operations one input runs: enough to walk an object through its
/// states, few enough that one input stays fast.
pub const MAX_OPS: usize = 64;

/// How much later than its timeout a timed call may return before it
/// counts as a finding. Generous: the machine may be busy, and libFuzzer's
/// `-timeout` still catches real hangs; what this catches is a call that
/// waits out some internal slice or budget after its own deadline passed.
pub const LATE: Duration = Duration::from_secs(1);

/// The timeouts timed calls are given, and the total an input may spend
/// waiting in them (later timed calls get zero).
#[derive(Debug)]
pub struct Clock {
    spent: Duration,
}

impl Clock {
    /// Sum of the timeouts one input may ask for: waiting is most of what
    /// a timed call costs, and inputs must stay fast.
    pub const BUDGET: Duration = Duration::from_millis(1);

    /// A fresh budget.
    #[must_use]
    pub fn new() -> Clock {
        Clock {
            spent: Duration::ZERO,
        }
    }

    /// A tiny timeout chosen by the input: 0 (give up after the spin), 1 µs
    /// (passes while spinning), 20 µs or 100 µs (sleeps), or 0 once the
    /// input's budget is spent.
    pub fn timeout(&mut self, input: &mut Input<'_>) -> Duration {
        const CHOICES: [Duration; 4] = [
            Duration::ZERO,
            Duration::from_micros(1),
            Duration::from_micros(20),
            Duration::from_micros(100),
        ];
        let t = CHOICES[input.below(CHOICES.len())];
        if self.spent + t > Self::BUDGET {
            return Duration::ZERO;
        }
        self.spent += t;
        t
    }

    /// Runs `call`, which was given `timeout`, and checks it returned in
    /// time.
    ///
    /// # Panics
    /// If it returned more than [`LATE`] after its timeout: a timed call on
    /// forged shared state must end by its deadline.
    pub fn timed<R>(timeout: Duration, what: &str, call: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = call();
        let took = start.elapsed();
        assert!(
            took <= timeout + LATE,
            "{what} with a {timeout:?} timeout returned after {took:?}"
        );
        r
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// `kill(2)` for the whole fuzzer binary: forwards to the system call, but
/// aborts if anything in the process sends a real signal (not 0, the
/// "does it exist?" probe) to another process. See the crate docs.
///
/// # Safety
/// As `kill(2)`: no memory is involved.
#[no_mangle]
pub unsafe extern "C" fn kill(pid: libc::pid_t, sig: libc::c_int) -> libc::c_int {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if sig != 0 && pid != me {
        // Not a panic: this may run inside libc or libFuzzer code.
        eprintln!("shmkit-fuzz: something sent signal {sig} to pid {pid}; only kill(pid, 0) probes are allowed");
        std::process::abort();
    }
    // SAFETY: the raw system call with the caller's arguments.
    let rc = unsafe { libc::syscall(libc::SYS_kill, pid, sig) };
    // The syscall returns 0 or -1 (errno set by `syscall`).
    rc as libc::c_int
}
