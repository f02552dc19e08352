//! A pool of worker processes: Python's `multiprocessing.Pool`, with
//! `map`, `imap`, `imap_unordered`, `starmap`, `apply`, `apply_async`,
//! `map_async`, `close`, `join`, `terminate`, `initializer` and
//! `maxtasksperchild`, that survives workers killed mid-task.
//!
//! ```
//! use shmkit_posix::process::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(2)?;
//! let squares: Vec<u64> = pool.map(square, 0..10u64)?.into_iter().map(Result::unwrap).collect();
//! assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//!
//! // Keyword-style arguments: one struct (or array) carries them all.
//! #[derive(Clone, Copy, shmkit_posix::Pod, shmkit_posix::Zeroable)]
//! #[repr(C)]
//! struct Scale { x: u64, by: u64 }
//! fn scale(a: Scale) -> u64 {
//!     a.x * a.by
//! }
//! let r = pool.apply_async(scale, Scale { x: 6, by: 7 })?;
//! assert_eq!(r.get()?, 42);
//! pool.close();
//! pool.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Tasks
//! A task is a function `fn(A) -> R` (a non-capturing closure coerces to
//! one) with `A, R:` [`Message`]: any `Pod` type, or any `serde` type in
//! [`Serde`](crate::message::Serde). Functions cross to the workers as
//! their offset in the executable, checked by the worker to lie in its
//! code, so the same calls work under the three start methods. Several
//! arguments travel as one struct, array or `Serde` tuple ("keyword-style"
//! arguments); [`Pool::starmap`] takes `fn(A, B) -> R` and pairs.
//!
//! # Design: one pipe pair per worker, one wait point
//! Each worker owns a shared-memory segment holding two byte pipes
//! ([`DuplexPipe`]): tasks in, results out. The parent writes batches of
//! tasks (a *chunk* of `map` is one batch) into a worker's task pipe and
//! remembers which batches each worker holds; the worker answers each
//! batch on its result pipe and then releases one pool-wide counting
//! [`Semaphore`](shmkit_core::sync::Semaphore), the one point the parent
//! sleeps on when it has nothing to do. Nothing crosses through an OS pipe
//! or socket.
//!
//! Why per-worker pipes rather than one shared task queue (Python's
//! design): the parent knows exactly which batches each worker holds, so a
//! dead worker costs only those. When a wait times out, the parent reaps
//! workers with `waitpid(WNOHANG)`; for a dead one it
//! 1. takes every result the worker committed before it died;
//! 2. attaches as the receiver of the dead worker's task pipe and takes
//!    back the batches the worker never started, which go to other workers;
//! 3. fails the batch it was running (the one batch it took and did not
//!    answer) with [`TaskError::WorkerDied`] naming its pid and signal;
//! 4. starts a replacement and unmaps the dead worker's segment.
//!
//! Tasks whose argument and result types have a fixed length (every
//! `Pod`: [`Message::FIXED_LEN`]) travel *packed*: a batch is a header
//! and the arguments back to back, and the results come back the same
//! way, with no length or status in front of each; a task that fails is
//! sent alone, unpacked, between two packed runs. Other types are framed,
//! each with its length (and, for results, a status byte).
//!
//! A task that panics fails alone ([`TaskError::Panicked`]): the worker
//! catches the panic and goes on. The pipes are SPSC and each commit is
//! one atomic store, so a worker killed at any instant never leaves a
//! half-written message the parent would read.
//!
//! # Who does the work
//! The pool runs no thread: the parent's side (feeding batches, taking
//! results, replacing workers) runs inside the calls that wait —
//! [`AsyncResult::get`], [`Pool::map`], the `imap` iterators, [`Pool::join`]
//! — and briefly in every submission. A pool nobody waits on still
//! computes what the workers were given, and the rest waits for the next
//! call. This keeps the parent single-threaded, so workers can be forked
//! (replacements included) without the threads hazard.
//!
//! # Segments
//! Under [`StartMethod::Fork`] the segments are memfds that workers
//! inherit: no name ever exists. `Spawn` and `ForkServer` workers start
//! from `main` and open them by name: a worker's segment is unlinked as
//! soon as the worker has attached, the pool's semaphore when the pool is
//! dropped. A parent killed by `SIGKILL` leaves those names behind;
//! [`crate::segment::reclaim_stale`] (or the next `create` of the name)
//! removes them, their creator being dead.
//!
//! A worker whose pipe reports it gone, or that sends a message the
//! parent did not ask for (an impossible batch, length or sequence number:
//! shared memory is hostile), is killed and treated like a dead one. Every
//! length and index the parent reads from a worker's pipe is checked
//! before use.
//!
//! # Limits
//! - One message carries at most [`MAX_MESSAGE`] bytes: a single task or
//!   result larger than that fails with [`TaskError::TooLarge`] (chunks
//!   are split to fit).
//! - The unit of failure is the batch: a worker killed in the middle of a
//!   chunk of `map` fails the whole chunk, including the tasks of it that
//!   had finished (their results were not sent yet). A smaller chunk size
//!   fails less.
//! - A task that never returns is not detected: use
//!   [`AsyncResult::get_timeout`] and [`Pool::terminate`].
//! - Under `Fork`, each worker inherits the parent's descriptors and
//!   mappings, those of its sibling workers' segments included, until it
//!   exits (as Python's forked workers do): a dead worker's segment is
//!   freed once the workers forked before its death have exited too.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shmkit_core::object::Object;
use shmkit_core::queue::pipe::{
    DuplexPipe, Pipe, PipeReceiver, PipeRecvError, PipeSendError, PipeSender, FRAME_HEADER,
};
use shmkit_core::sync as core_sync;
use shmkit_core::wait::Spin;

use super::{task, Builder as ProcessBuilder, Child, SpawnError, StartMethod};
use crate::error::CreateError;
use crate::handle::Shared;
use crate::message::{EncodeError, Message};
use crate::segment::{ObjectSpec, Options, Segment};

/// Bytes per direction of a worker's pipes.
const PIPE_CAPACITY: usize = 1 << 20;

/// The largest message (a batch of tasks, or of results) between the
/// parent and a worker.
pub const MAX_MESSAGE: usize = PIPE_CAPACITY - FRAME_HEADER;

/// Message kinds (the first `u32` of every message).
mod kind {
    /// Parent → worker: a batch of tasks.
    pub const BATCH: u32 = 1;
    /// Parent → worker: exit cleanly.
    pub const STOP: u32 = 2;
    /// Worker → parent: results of (part of) a batch.
    pub const RESULTS: u32 = 3;
    /// Worker → parent: attached and ready.
    pub const HELLO: u32 = 4;
    /// Parent → worker: a packed batch (arguments of one fixed length).
    pub const PACKED: u32 = 5;
    /// Worker → parent: packed results (of one fixed length, all `OK`).
    pub const PACKED_RESULTS: u32 = 6;
}

/// Result statuses, one byte in front of each result.
mod status {
    pub const OK: u8 = 0;
    pub const PANICKED: u8 = 1;
    pub const FAILED: u8 = 2;
    /// The body is the result's length (`u64`), too large to send.
    pub const TOO_LARGE: u8 = 3;
}

/// A batch: `kind, count, first seq, trampoline offset, function offset`,
/// then `count` times `u32 length, bytes`.
const BATCH_HEADER: usize = 32;
/// Results: `kind, count, first seq`, then `count` times `u8 status, u32
/// length, bytes`.
const RESULT_HEADER: usize = 16;
const RESULT_ITEM: usize = 5;
/// A packed batch, for a task whose argument and result types have a
/// fixed length ([`Message::FIXED_LEN`]: every `Pod`): the batch header
/// with the packed trampoline's offset, then `u32 argument length, u32
/// result length`, then `count` arguments back to back.
const PACKED_HEADER: usize = BATCH_HEADER + 8;
/// Packed results: the results header, then `u32 result length, u32
/// zero`, then `count` results back to back, every one `OK` (a task that
/// fails is sent alone, unpacked, between two packed runs).
const PACKED_RESULT_HEADER: usize = RESULT_HEADER + 8;

/// How long the parent sleeps before it checks its workers' lives.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Batches a worker may hold at once, whatever their size: two (one to
/// run, one to start next without waiting for the parent)...
const HELD_BATCHES: usize = 2;
/// ... or more while they carry fewer items than this (tiny batches,
/// `chunksize = 1`, are pipelined deeply).
const HELD_ITEMS: usize = 256;
/// And never more batches than this.
const HELD_MAX: usize = 1024;

/// A monomorphized `fn(A) -> R` runner: decodes the argument, calls the
/// function (whose address is `f`), appends the encoded result.
type ItemFn = fn(f: usize, arg: &[u8], out: &mut Vec<u8>) -> Result<(), String>;

fn run1<A: Message, R: Message>(f: usize, arg: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    // SAFETY: `f` is the address of a `fn(A) -> R` of this executable: the
    // parent took it from such a pointer, paired with this very
    // monomorphization, and the worker relocated it by the executable's
    // load offset and checked that it lies in its code (`task::code_at`).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    let a = A::decode(arg).map_err(|e| e.to_string())?;
    f(a).encode(out).map_err(|e| e.to_string())
}

fn run2<A: Message, B: Message, R: Message>(
    f: usize,
    arg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    // SAFETY: as in `run1`, for a `fn(A, B) -> R`.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(f) };
    let (a, b) = split_pair(arg).ok_or("a starmap argument pair is malformed")?;
    let a = A::decode(a).map_err(|e| e.to_string())?;
    let b = B::decode(b).map_err(|e| e.to_string())?;
    f(a, b).encode(out).map_err(|e| e.to_string())
}

/// A monomorphized runner of a packed batch: runs tasks `*next..end` of
/// the `arg_len`-byte arguments in `args`, appending each result (exactly
/// `res_len` bytes) to `out` and advancing `*next` past it. On an error
/// or a panic, `*next` is the task that failed, and `out` may hold part of
/// its result after the whole ones.
type PackedFn = fn(
    f: usize,
    args: &[u8],
    lens: (usize, usize),
    next: &mut usize,
    end: usize,
    out: &mut Vec<u8>,
) -> Result<(), String>;

fn run_packed1<A: Message, R: Message>(
    f: usize,
    args: &[u8],
    (arg_len, res_len): (usize, usize),
    next: &mut usize,
    end: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    // SAFETY: as in `run1`, for this monomorphization.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    while *next < end {
        let at = *next * arg_len;
        let arg = args
            .get(at..at + arg_len)
            .ok_or("a task batch is malformed")?;
        let a = A::decode(arg).map_err(|e| e.to_string())?;
        let mark = out.len();
        f(a).encode(out).map_err(|e| e.to_string())?;
        if out.len() - mark != res_len {
            return Err(format!(
                "a result encoded to {} bytes, not the fixed {res_len}",
                out.len() - mark
            ));
        }
        *next += 1;
    }
    Ok(())
}

/// How a task's function runs in a worker: one task at a time from a
/// framed batch, and, for fixed-length arguments and results, a whole
/// packed batch in one call.
#[derive(Clone, Copy)]
struct Runner {
    item: ItemFn,
    /// The packed runner, the argument length and the result length.
    packed: Option<(PackedFn, usize, usize)>,
}

impl Runner {
    fn one<A: Message, R: Message>() -> Runner {
        let packed = match (A::FIXED_LEN, R::FIXED_LEN) {
            (Some(a), Some(r))
                if a <= MAX_MESSAGE - PACKED_HEADER && r <= MAX_MESSAGE - PACKED_RESULT_HEADER =>
            {
                Some((run_packed1::<A, R> as PackedFn, a, r))
            }
            _ => None,
        };
        Runner {
            item: run1::<A, R>,
            packed,
        }
    }

    fn two<A: Message, B: Message, R: Message>() -> Runner {
        Runner {
            item: run2::<A, B, R>,
            packed: None,
        }
    }
}

/// A pair is `u32 length of a, a, b`.
fn split_pair(arg: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(arg.get(..4)?.try_into().ok()?) as usize;
    let rest = &arg[4..];
    (len <= rest.len()).then(|| rest.split_at(len))
}

fn encode_pair<A: Message, B: Message>(
    (a, b): &(A, B),
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    a.encode(out)?;
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    b.encode(out)
}

// ---------------------------------------------------------------------
// Errors

/// Why one task gave no value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the worker survived and went on.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The worker running the task was killed by a signal (`SIGKILL`, a
    /// segfault, the OOM killer). It was replaced.
    WorkerDied {
        /// The dead worker's pid.
        pid: u32,
        /// The signal (9 for `SIGKILL`, 11 for `SIGSEGV`).
        signal: i32,
    },
    /// The worker running the task exited on its own (a task called
    /// `std::process::exit`). It was replaced.
    WorkerExited {
        /// The worker's pid.
        pid: u32,
        /// Its exit code.
        code: i32,
    },
    /// The task's argument or result could not be encoded or decoded.
    Failed {
        /// Why.
        why: String,
    },
    /// The task's argument or result does not fit in one message.
    TooLarge {
        /// Its encoded length.
        len: usize,
        /// The most a message carries ([`MAX_MESSAGE`] less framing).
        max: usize,
    },
    /// The pool was terminated (or dropped) before the task finished.
    Terminated,
    /// Not ready before the timeout; the result stays, ask again.
    Timeout,
    /// The value was taken by an earlier `get`.
    Taken,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked { message } => write!(f, "the task panicked: {message}"),
            TaskError::WorkerDied { pid, signal } => write!(
                f,
                "worker {pid} was killed by signal {signal} ({}) while it held this task; it was replaced",
                super::signal_name(*signal)
            ),
            TaskError::WorkerExited { pid, code } => write!(
                f,
                "worker {pid} exited with code {code} while it held this task; it was replaced"
            ),
            TaskError::Failed { why } => write!(f, "the task could not run: {why}"),
            TaskError::TooLarge { len, max } => write!(
                f,
                "a {len}-byte task argument or result does not fit in one pool message (at most {max} bytes); pass large data through a shared Array or a named segment"
            ),
            TaskError::Terminated => f.write_str("the pool was terminated before the task finished"),
            TaskError::Timeout => f.write_str("the result was not ready before the timeout; ask again later"),
            TaskError::Taken => f.write_str("the result was taken by an earlier get"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Why a pool call was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// `Pool::new(0)`: a pool needs at least one worker.
    NoWorkers,
    /// A chunk size of 0.
    ZeroChunksize,
    /// The pool was closed ([`Pool::close`]): it takes no new tasks.
    Closed,
    /// The pool was terminated or joined: it takes nothing any more.
    Terminated,
    /// [`Pool::join`] before [`Pool::close`] or [`Pool::terminate`].
    StillRunning,
    /// A worker could not be started.
    Spawn(SpawnError),
    /// A worker's segment could not be created.
    Create(CreateError),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::NoWorkers => {
                f.write_str("a pool needs at least one worker process (Pool::new(0) was asked)")
            }
            PoolError::ZeroChunksize => f.write_str("a chunk size must be at least 1"),
            PoolError::Closed => {
                f.write_str("the pool is closed and takes no new tasks (close() was called)")
            }
            PoolError::Terminated => {
                f.write_str("the pool was terminated or joined and takes no new tasks")
            }
            PoolError::StillRunning => {
                f.write_str("join() needs a closed or terminated pool: call close() first")
            }
            PoolError::Spawn(e) => write!(f, "a pool worker could not be started: {e}"),
            PoolError::Create(e) => {
                write!(f, "a pool worker's shared memory could not be created: {e}")
            }
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Spawn(e) => Some(e),
            PoolError::Create(e) => Some(e),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------
// Segments

/// The spec of a worker's pipe segment.
fn pipe_spec() -> ObjectSpec<'static> {
    let len = DuplexPipe::payload_len(&PIPE_CAPACITY).expect("a valid pipe capacity");
    ObjectSpec {
        kind: DuplexPipe::KIND,
        fingerprint: DuplexPipe::fingerprint(&PIPE_CAPACITY),
        type_name: DuplexPipe::type_name(),
        payload_len: len as u64,
    }
}

fn pipe_init(payload: NonNull<u8>, _len: usize) {
    // SAFETY: the creator's zero-filled payload of `payload_len(capacity)`
    // bytes, aligned, before anyone else attaches.
    unsafe { DuplexPipe::init(payload, &PIPE_CAPACITY) }
}

/// The two pipes of a segment made or opened with [`pipe_spec`]: 0 parent
/// → worker, 1 worker → parent.
fn pipes(segment: &Segment) -> [Pipe<'_>; 2] {
    // SAFETY: the segment was created with `pipe_spec` or opened expecting
    // exactly it (kind, parameters and payload length checked), is mapped
    // read-write while borrowed, was initialised before it became ready,
    // and is only accessed through the pipes (atomics).
    unsafe { DuplexPipe::attach(segment.payload(), &PIPE_CAPACITY) }
}

/// What a worker is told: where its segments are, and how to start.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct WorkerArgs {
    /// Inherited descriptors (`Fork`), or -1 (then the names).
    pipe_fd: i32,
    sem_fd: i32,
    /// Batches to run before exiting (0: no limit).
    maxtasks: u32,
    /// Whether `init` names an initializer.
    has_init: u32,
    /// The initializer's code offset.
    init: i64,
    pipe_name: [u8; 64],
    sem_name: [u8; 64],
}

fn name_field(name: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    let n = name.len().min(63);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

fn field_name(field: &[u8; 64]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(64);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn dup(fd: i32) -> Result<OwnedFd, String> {
    // SAFETY: F_DUPFD_CLOEXEC on any number either fails or returns a new
    // descriptor we own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(format!(
            "descriptor {fd}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

// ---------------------------------------------------------------------
// The worker

/// A worker's whole life: attach, say hello, run batches until told to
/// stop (or the parent is gone, or `maxtasks` batches ran).
fn worker_main(args: WorkerArgs) -> u8 {
    match worker_loop(&args) {
        Ok(()) => 0,
        Err(why) => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("shmkit pool worker {}: {why}\n", std::process::id()).as_bytes(),
            );
            2
        }
    }
}

fn worker_loop(args: &WorkerArgs) -> Result<(), String> {
    let options = Options::default();
    let segment = if args.pipe_fd >= 0 {
        Segment::from_fd(dup(args.pipe_fd)?, &pipe_spec().expect(), &options)
    } else {
        Segment::open(
            &field_name(&args.pipe_name),
            &pipe_spec().expect(),
            &options,
        )
    }
    .map_err(|e| format!("cannot attach its pipes: {e}"))?;
    let sem = if args.sem_fd >= 0 {
        Shared::<core_sync::Semaphore>::from_fd(dup(args.sem_fd)?)
    } else {
        Shared::<core_sync::Semaphore>::open(&field_name(&args.sem_name))
    }
    .map_err(|e| format!("cannot attach the pool's semaphore: {e}"))?;
    let [tasks, results] = pipes(&segment);
    let mut rx = tasks.receiver().map_err(|e| e.to_string())?;
    let mut tx = results.sender().map_err(|e| e.to_string())?;
    let code = task::executable_code().map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
    if args.has_init != 0 {
        let f =
            task::code_at(args.init, &code).ok_or("the initializer is not in this executable")?;
        // SAFETY: the parent took `init` from a `fn()` of this executable;
        // relocated and checked to lie in our code above.
        let f = unsafe { std::mem::transmute::<usize, fn()>(f) };
        f();
    }
    let mut hello = [0u8; RESULT_HEADER];
    hello[..4].copy_from_slice(&kind::HELLO.to_le_bytes());
    send(&mut tx, &sem, &hello)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut out = Vec::with_capacity(4096);
    let mut resolved: Option<((i64, i64), (usize, usize))> = None;
    let mut done = 0u32;
    loop {
        let len = match rx.recv_bytes_into(&mut buf) {
            Ok(len) => len,
            Err(PipeRecvError::Eof) => return Ok(()), // the parent is gone
            Err(e) => return Err(format!("its task pipe: {e}")),
        };
        let msg = &buf[..len];
        let word = |at: usize| u32::from_le_bytes(msg[at..at + 4].try_into().unwrap_or([0; 4]));
        let quad = |at: usize| u64::from_le_bytes(msg[at..at + 8].try_into().unwrap_or([0; 8]));
        if len >= 4 && word(0) == kind::STOP {
            return Ok(());
        }
        let packed = len >= PACKED_HEADER && word(0) == kind::PACKED;
        if len < BATCH_HEADER || !(packed || word(0) == kind::BATCH) {
            return Err("a task message is malformed".into());
        }
        let count = word(4);
        let first = quad(8);
        let offsets = (quad(16) as i64, quad(24) as i64);
        let (run, f) = match resolved {
            Some((o, r)) if o == offsets => r,
            _ => {
                let tramp = task::code_at(offsets.0, &code);
                let f = task::code_at(offsets.1, &code);
                let (Some(tramp), Some(f)) = (tramp, f) else {
                    return Err("a task names a function outside this executable".into());
                };
                resolved = Some((offsets, (tramp, f)));
                (tramp, f)
            }
        };
        let mut answer = Answer {
            tx: &mut tx,
            sem: &sem,
            out: &mut out,
        };
        if packed {
            // SAFETY: the parent took the offset of a packed batch's
            // trampoline from a `PackedFn` of this executable; relocated
            // and checked to lie in our code above.
            let run = unsafe { std::mem::transmute::<usize, PackedFn>(run) };
            let lens = (word(32) as usize, word(36) as usize);
            answer.packed(msg, first, count, lens, (run, f))?;
        } else {
            // SAFETY: as above, for a framed batch's `ItemFn`.
            let run = unsafe { std::mem::transmute::<usize, ItemFn>(run) };
            answer.framed(msg, first, count, (run, f))?;
        }
        done += 1;
        if args.maxtasks != 0 && done >= args.maxtasks {
            return Ok(());
        }
    }
}

fn send(
    tx: &mut PipeSender<'_>,
    sem: &Shared<core_sync::Semaphore>,
    msg: &[u8],
) -> Result<(), String> {
    tx.send_bytes(msg)
        .map_err(|e| format!("its result pipe: {e}"))?;
    // The parent counts wake-ups, not results: a full count is harmless.
    let _ = sem.view().release();
    Ok(())
}

fn start_results(out: &mut Vec<u8>, first: u64) {
    out.clear();
    out.extend_from_slice(&kind::RESULTS.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
}

/// How a task (or a run of them, packed) ended, from its `catch_unwind`:
/// `None` if it returned, else its status and message (cut to
/// [`task::MESSAGE_CAP`] bytes).
fn failure(outcome: std::thread::Result<Result<(), String>>) -> Option<(u8, String)> {
    let (code, mut text) = match outcome {
        Ok(Ok(())) => return None,
        Ok(Err(why)) => (status::FAILED, why),
        Err(payload) => {
            let m = super::panic_message(&*payload);
            // Not dropped: a payload's destructor may panic again.
            std::mem::forget(payload);
            (status::PANICKED, m)
        }
    };
    text.truncate(task::MESSAGE_CAP.min(text.len()));
    while !text.is_char_boundary(text.len()) {
        text.pop();
    }
    Some((code, text))
}

/// A worker's side of answering one batch: its result pipe, the pool's
/// wake-up semaphore, and the buffer results are encoded in.
struct Answer<'a, 'p> {
    tx: &'a mut PipeSender<'p>,
    sem: &'a Shared<core_sync::Semaphore>,
    out: &'a mut Vec<u8>,
}

impl Answer<'_, '_> {
    fn send(&mut self) -> Result<(), String> {
        send(self.tx, self.sem, self.out)
    }

    /// Runs a framed batch: each task alone, its result framed.
    fn framed(
        &mut self,
        msg: &[u8],
        first: u64,
        count: u32,
        (run, f): (ItemFn, usize),
    ) -> Result<(), String> {
        start_results(self.out, first);
        let mut in_msg = 0u32;
        let mut at = BATCH_HEADER;
        for i in 0..count {
            let arg = msg
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as usize)
                .and_then(|len| msg.get(at + 4..at + 4 + len));
            let Some(arg) = arg else {
                return Err("a task batch is malformed".into());
            };
            at += 4 + arg.len();
            let out = &mut *self.out;
            let mark = out.len();
            out.push(status::OK);
            out.extend_from_slice(&[0; 4]);
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(f, arg, out)));
            let code = match failure(outcome) {
                None => status::OK,
                Some((code, text)) => {
                    out.truncate(mark + RESULT_ITEM);
                    out.extend_from_slice(text.as_bytes());
                    code
                }
            };
            let len = out.len() - mark - RESULT_ITEM;
            if RESULT_HEADER + RESULT_ITEM + len > MAX_MESSAGE {
                // The parent reports it as `TooLarge` (the body is the length).
                out.truncate(mark + RESULT_ITEM);
                out[mark] = status::TOO_LARGE;
                out.extend_from_slice(&(len as u64).to_le_bytes());
            } else {
                out[mark] = code;
            }
            let len = out.len() - mark - RESULT_ITEM;
            out[mark + 1..mark + 5].copy_from_slice(&(len as u32).to_le_bytes());
            if out.len() > MAX_MESSAGE {
                // This result does not fit behind the others: send those,
                // then start a message with it.
                let item = out[mark..].to_vec();
                out.truncate(mark);
                out[4..8].copy_from_slice(&in_msg.to_le_bytes());
                self.send()?;
                start_results(self.out, first + u64::from(i));
                self.out.extend_from_slice(&item);
                in_msg = 0;
            }
            in_msg += 1;
        }
        self.out[4..8].copy_from_slice(&in_msg.to_le_bytes());
        self.send()
    }

    /// Runs a packed batch: its results go back packed, in messages of at
    /// most [`MAX_MESSAGE`] bytes; a task that fails (an error, a panic)
    /// ends the packed run before it and is sent alone, framed.
    fn packed(
        &mut self,
        msg: &[u8],
        first: u64,
        count: u32,
        (arg_len, res_len): (usize, usize),
        (run, f): (PackedFn, usize),
    ) -> Result<(), String> {
        let count = count as usize;
        let args = &msg[PACKED_HEADER..];
        if count.checked_mul(arg_len) != Some(args.len())
            || res_len > MAX_MESSAGE - PACKED_RESULT_HEADER
        {
            return Err("a packed task batch is malformed".into());
        }
        let per_message = ((MAX_MESSAGE - PACKED_RESULT_HEADER)
            .checked_div(res_len)
            .unwrap_or(usize::MAX))
        .max(1);
        let mut next = 0;
        while next < count {
            let start = next;
            let end = count.min(start.saturating_add(per_message));
            let out = &mut *self.out;
            out.clear();
            out.extend_from_slice(&kind::PACKED_RESULTS.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(first + start as u64).to_le_bytes());
            out.extend_from_slice(&(res_len as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            // One `catch_unwind` for the whole run, not one per task.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(f, args, (arg_len, res_len), &mut next, end, out)
            }));
            let failed = failure(outcome);
            if next > start {
                out.truncate(PACKED_RESULT_HEADER + (next - start) * res_len);
                out[4..8].copy_from_slice(&((next - start) as u32).to_le_bytes());
                self.send()?;
            }
            if let Some((code, text)) = failed {
                let out = &mut *self.out;
                start_results(out, first + next as u64);
                out.push(code);
                out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                out.extend_from_slice(text.as_bytes());
                out[4..8].copy_from_slice(&1u32.to_le_bytes());
                self.send()?;
                next += 1;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------
// The parent's side

/// A batch of tasks waiting for a worker.
struct Batch {
    first: u64,
    count: u32,
    bytes: Vec<u8>,
}

/// One worker as the parent sees it.
struct Worker {
    // Field order is drop order: the role handles go before the mapping
    // they borrow (`segment`).
    tx: PipeSender<'static>,
    rx: PipeReceiver<'static>,
    /// Batches sent and not yet fully answered, oldest first: `(first
    /// unanswered seq, unanswered count)`.
    held: VecDeque<(u64, u32)>,
    held_items: usize,
    /// Batches sent in its life (for `maxtasksperchild`).
    sent: u32,
    child: Child<u8>,
    /// Its segment's name until it has attached (fresh-run workers).
    name: Option<String>,
    segment: Segment,
}

impl Worker {
    fn can_take(&self, maxtasks: u32) -> bool {
        (maxtasks == 0 || self.sent < maxtasks)
            && self.held.len() < HELD_MAX
            && (self.held.len() < HELD_BATCHES || self.held_items < HELD_ITEMS)
    }

    /// Whether it ran all it may (`maxtasksperchild`) and exits.
    fn retiring(&self, maxtasks: u32) -> bool {
        maxtasks != 0 && self.sent >= maxtasks && self.held.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Closed,
    /// Terminated or joined.
    Stopped,
}

/// Where one task's result is.
#[derive(Clone, Copy)]
enum Slot {
    Pending,
    /// Encoded value at `data[at..at + len]`.
    Value {
        at: usize,
        len: usize,
    },
    /// In `errors`.
    Error,
    /// Given out.
    Taken,
}

/// One submission (`apply_async`: one task; `map`: many).
struct Job {
    slots: Vec<Slot>,
    data: Vec<u8>,
    errors: HashMap<usize, TaskError>,
    finished: usize,
    /// Indices in the order they finished (`imap_unordered`).
    order: Option<VecDeque<usize>>,
    /// Nobody will ask for it: dropped when finished.
    abandoned: bool,
}

impl Job {
    fn done(&self) -> bool {
        self.finished == self.slots.len()
    }

    fn settle(&mut self, i: usize, slot: Slot) {
        if let Some(s) = self.slots.get_mut(i) {
            if matches!(s, Slot::Pending) {
                *s = slot;
                self.finished += 1;
                if let Some(order) = &mut self.order {
                    order.push_back(i);
                }
            }
        }
    }

    fn fail(&mut self, i: usize, e: TaskError) {
        if matches!(self.slots.get(i), Some(Slot::Pending)) {
            self.errors.insert(i, e);
            self.settle(i, Slot::Error);
        }
    }

    /// Takes result `i`, decoded.
    fn take<R: Message>(&mut self, i: usize) -> Result<R, TaskError> {
        let Some(slot) = self.slots.get_mut(i) else {
            return Err(TaskError::Taken);
        };
        match std::mem::replace(slot, Slot::Taken) {
            Slot::Value { at, len } => R::decode(&self.data[at..at + len])
                .map_err(|e| TaskError::Failed { why: e.to_string() }),
            Slot::Error => Err(self.errors.remove(&i).unwrap_or(TaskError::Taken)),
            Slot::Pending => {
                *slot = Slot::Pending;
                Err(TaskError::Timeout)
            }
            Slot::Taken => Err(TaskError::Taken),
        }
    }
}

/// How workers are made.
#[derive(Clone)]
struct Config {
    processes: usize,
    process: ProcessBuilder,
    maxtasks: u32,
    init: Option<i64>,
    /// Names instead of inherited descriptors.
    named: bool,
}

struct Inner {
    config: Config,
    state: State,
    workers: Vec<Worker>,
    sem: Shared<core_sync::Semaphore>,
    sem_name: Option<String>,
    pending: VecDeque<Batch>,
    jobs: BTreeMap<u64, Job>,
    next_seq: u64,
    next_worker: usize,
    buf: Vec<u8>,
    last_check: Instant,
    /// Why the last replacement could not start.
    spawn_error: Option<String>,
}

/// The number in a worker's name (`PoolWorker-N`, as Python names them).
fn worker_number() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Relaxed: a counter for names.
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The random part of a pool segment's name. A counter would not do: a
/// process killed with a named pool leaves its names behind (module docs),
/// and a process that later gets its pid — or any `fork` child, which
/// inherits the counter — would make the same names and fail to create
/// them.
fn pool_id() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: a valid 8-byte buffer; getrandom writes at most 8 bytes.
    if unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, 0) } == 8 {
        return u64::from_ne_bytes(bytes);
    }
    // No getrandom: a per-process counter and the clock.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Relaxed: a counter for unique names.
    let n = u64::from(NEXT.fetch_add(1, Ordering::Relaxed));
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t.rotate_left(20) ^ n
}

impl Inner {
    fn start_worker(&mut self) -> Result<Worker, PoolError> {
        let options = Options::default();
        let (segment, name) = if self.config.named {
            let name = format!(
                "/shmkit-pool-{}-{}-w{}",
                std::process::id(),
                pool_id(),
                self.next_seq
            );
            let s = Segment::create(&name, &pipe_spec(), &options, &mut pipe_init)
                .map_err(PoolError::Create)?;
            (s, Some(name))
        } else {
            (
                Segment::memfd(&pipe_spec(), &mut pipe_init).map_err(PoolError::Create)?,
                None,
            )
        };
        let mut args = WorkerArgs::zeroed();
        args.pipe_fd = segment.fd().map_or(-1, |fd| fd.as_raw_fd());
        args.sem_fd = self.sem.fd().map_or(-1, |fd| fd.as_raw_fd());
        if let (Some(n), Some(s)) = (&name, &self.sem_name) {
            args.pipe_fd = -1;
            args.sem_fd = -1;
            args.pipe_name = name_field(n);
            args.sem_name = name_field(s);
        }
        args.maxtasks = self.config.maxtasks;
        if let Some(init) = self.config.init {
            args.has_init = 1;
            args.init = init;
        }
        let child = self
            .config
            .process
            .clone()
            .name(format!("PoolWorker-{}", worker_number()))
            .daemon(true)
            .spawn_fn(worker_main, args)
            .map_err(PoolError::Spawn)?;
        let [tasks, results] = pipes(&segment);
        let tx = tasks
            .sender()
            .map_err(|e| PoolError::Create(attach_error(e)))?;
        let rx = results
            .receiver()
            .map_err(|e| PoolError::Create(attach_error(e)))?;
        // SAFETY: the role handles borrow the mapping that `segment` owns;
        // they are stored next to it in the `Worker`, declared before it
        // (so dropped first), and never leave the `Worker`. Moving the
        // `Segment` does not move its mapping.
        let (tx, rx) = unsafe {
            (
                std::mem::transmute::<PipeSender<'_>, PipeSender<'static>>(tx),
                std::mem::transmute::<PipeReceiver<'_>, PipeReceiver<'static>>(rx),
            )
        };
        Ok(Worker {
            tx,
            rx,
            held: VecDeque::new(),
            held_items: 0,
            sent: 0,
            child,
            name,
            segment,
        })
    }

    fn usable(&self) -> Result<(), PoolError> {
        match self.state {
            State::Running => Ok(()),
            State::Closed => Err(PoolError::Closed),
            State::Stopped => Err(PoolError::Terminated),
        }
    }

    /// Encodes `items` into batches of at most `chunksize` and queues them.
    /// Returns the job's key.
    fn submit<I>(
        &mut self,
        runner: Runner,
        f: usize,
        items: &[I],
        chunksize: usize,
        order: bool,
        encode: impl Fn(&I, &mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> u64 {
        let first = self.next_seq;
        self.next_seq += items.len() as u64 + 1;
        let mut job = Job {
            slots: vec![Slot::Pending; items.len()],
            data: Vec::new(),
            errors: HashMap::new(),
            finished: 0,
            order: order.then(VecDeque::new),
            abandoned: false,
        };
        let tramp = runner.packed.map_or(runner.item as usize, |p| p.0 as usize);
        let offsets = (task::code_offset(tramp), task::code_offset(f));
        // Packed: no length in front of each argument.
        let (header, framing) = match runner.packed {
            Some(_) => (PACKED_HEADER, 0),
            None => (BATCH_HEADER, 4),
        };
        let mut cur: Option<Batch> = None;
        let mut i = 0;
        while i < items.len() {
            let batch = cur.get_or_insert_with(|| {
                let room = header + (framing + runner.packed.map_or(12, |p| p.1)) * chunksize;
                let mut bytes = Vec::with_capacity(room.min(MAX_MESSAGE));
                let kind = if runner.packed.is_some() {
                    kind::PACKED
                } else {
                    kind::BATCH
                };
                bytes.extend_from_slice(&kind.to_le_bytes());
                bytes.extend_from_slice(&0u32.to_le_bytes());
                bytes.extend_from_slice(&(first + i as u64).to_le_bytes());
                bytes.extend_from_slice(&offsets.0.to_le_bytes());
                bytes.extend_from_slice(&offsets.1.to_le_bytes());
                if let Some((_, arg_len, res_len)) = runner.packed {
                    bytes.extend_from_slice(&(arg_len as u32).to_le_bytes());
                    bytes.extend_from_slice(&(res_len as u32).to_le_bytes());
                }
                Batch {
                    first: first + i as u64,
                    count: 0,
                    bytes,
                }
            });
            let mark = batch.bytes.len();
            batch.bytes.extend_from_slice(&[0; 4][..framing]);
            let encoded = encode(&items[i], &mut batch.bytes);
            let len = batch.bytes.len() - mark - framing;
            let problem = match encoded {
                Err(e) => Some(TaskError::Failed { why: e.to_string() }),
                Ok(()) if runner.packed.is_some_and(|p| p.1 != len) => Some(TaskError::Failed {
                    why: format!(
                        "an argument encoded to {len} bytes, not its type's fixed {}",
                        runner.packed.map_or(0, |p| p.1)
                    ),
                }),
                Ok(()) if batch.bytes.len() <= MAX_MESSAGE => None,
                Ok(()) if batch.count > 0 => {
                    // Does not fit behind the others: this batch ends here
                    // and the item starts the next one.
                    batch.bytes.truncate(mark);
                    let full = cur.take().expect("a batch in progress");
                    self.queue(full);
                    continue;
                }
                Ok(()) => Some(TaskError::TooLarge {
                    len,
                    max: MAX_MESSAGE - header - framing,
                }),
            };
            if let Some(e) = problem {
                // The item fails alone; batches are contiguous, so the
                // one in progress ends before it.
                batch.bytes.truncate(mark);
                job.fail(i, e);
                if let Some(b) = cur.take().filter(|b| b.count > 0) {
                    self.queue(b);
                }
                i += 1;
                continue;
            }
            if framing != 0 {
                batch.bytes[mark..mark + 4].copy_from_slice(&(len as u32).to_le_bytes());
            }
            batch.count += 1;
            i += 1;
            if batch.count as usize >= chunksize {
                let full = cur.take().expect("a batch in progress");
                self.queue(full);
            }
        }
        if let Some(b) = cur.take().filter(|b| b.count > 0) {
            self.queue(b);
        }
        self.jobs.insert(first, job);
        self.pump();
        first
    }

    /// Queues a batch, and hands it out at once if a worker has room (so
    /// workers start while the rest of a large `map` is being encoded).
    fn queue(&mut self, mut batch: Batch) {
        batch.bytes[4..8].copy_from_slice(&batch.count.to_le_bytes());
        self.pending.push_back(batch);
        // A worker found gone here is dealt with by the next `pump`.
        self.fill(&mut Vec::new());
    }

    /// Moves results in and batches out; whether anything moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let mut dead = Vec::new();
        for w in 0..self.workers.len() {
            match self.drain(w) {
                Ok(n) => moved |= n > 0,
                Err(()) => dead.push(w),
            }
        }
        moved |= self.fill(&mut dead);
        if !dead.is_empty() {
            // Gone (its pipe says so) or lying (an impossible message):
            // either way it is killed, and reaped and replaced by the
            // next check, which fails what it held.
            dead.sort_unstable();
            dead.dedup();
            for &w in dead.iter().rev() {
                self.workers[w].child.kill();
                let code = self.workers[w].child.wait().ok();
                self.bury(w, code);
            }
            moved = true;
        }
        // Workers that ran their `maxtasksperchild` batches exit: replace
        // them once answered.
        if self.config.maxtasks != 0 && self.state != State::Stopped {
            for w in 0..self.workers.len() {
                if self.workers[w].retiring(self.config.maxtasks) {
                    let _ = self.workers[w].child.wait();
                    self.bury(w, None);
                    moved = true;
                }
            }
        }
        moved
    }

    /// Hands pending batches to workers with room, round robin.
    fn fill(&mut self, dead: &mut Vec<usize>) -> bool {
        let n = self.workers.len();
        let mut moved = false;
        let mut idle_rounds = 0;
        while !self.pending.is_empty() && n > 0 && idle_rounds < n {
            let w = self.next_worker % n;
            self.next_worker = self.next_worker.wrapping_add(1);
            let worker = &mut self.workers[w];
            if dead.contains(&w) || !worker.can_take(self.config.maxtasks) {
                idle_rounds += 1;
                continue;
            }
            let batch = self.pending.front().expect("not empty");
            match worker.tx.try_send_bytes(&batch.bytes) {
                Ok(()) => {
                    let batch = self.pending.pop_front().expect("not empty");
                    worker.held.push_back((batch.first, batch.count));
                    worker.held_items += batch.count as usize;
                    worker.sent += 1;
                    moved = true;
                    idle_rounds = 0;
                }
                Err(PipeSendError::Full) => idle_rounds += 1,
                Err(_) => {
                    dead.push(w);
                    idle_rounds += 1;
                }
            }
        }
        moved
    }

    /// Takes every result worker `w` has committed. `Err` if its pipe says
    /// it is gone or lies.
    fn drain(&mut self, w: usize) -> Result<usize, ()> {
        let mut n = 0;
        loop {
            let mut buf = std::mem::take(&mut self.buf);
            if buf.len() < MAX_MESSAGE {
                buf.resize(MAX_MESSAGE, 0);
            }
            let got = self.workers[w].rx.try_recv_bytes_into(&mut buf);
            let r = match got {
                Ok(len) => self.accept(w, &buf[..len]),
                Err(PipeRecvError::Empty) => {
                    self.buf = buf;
                    return Ok(n);
                }
                Err(_) => Err(()),
            };
            self.buf = buf;
            r?;
            n += 1;
        }
    }

    /// One message from worker `w`. `Err` if it is impossible.
    fn accept(&mut self, w: usize, msg: &[u8]) -> Result<(), ()> {
        if msg.len() < RESULT_HEADER {
            return Err(());
        }
        let word = |at: usize| u32::from_le_bytes(msg[at..at + 4].try_into().unwrap_or([0; 4]));
        let first = u64::from_le_bytes(msg[8..16].try_into().unwrap_or([0; 8]));
        let count = word(4);
        match word(0) {
            kind::HELLO => {
                // Attached: its segment's name is no longer needed.
                if let Some(name) = self.workers[w].name.take() {
                    let _ = Segment::unlink(&name);
                }
                return Ok(());
            }
            kind::RESULTS | kind::PACKED_RESULTS => {}
            _ => return Err(()),
        }
        let worker = &mut self.workers[w];
        let Some(&(held_first, held_count)) = worker.held.front() else {
            return Err(());
        };
        if first != held_first || count > held_count {
            return Err(());
        }
        if count == held_count {
            worker.held.pop_front();
        } else if let Some(front) = worker.held.front_mut() {
            *front = (first + u64::from(count), held_count - count);
        }
        worker.held_items = worker.held_items.saturating_sub(count as usize);
        let Some((&key, job)) = self.jobs.range_mut(..=first).next_back() else {
            return Err(());
        };
        let base = (first - key) as usize;
        if base + count as usize > job.slots.len() {
            return Err(());
        }
        if word(0) == kind::PACKED_RESULTS {
            // `count` results of `len` bytes, back to back, all `OK`.
            let len = msg.get(16..20).map_or(0, |b| {
                u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as usize
            });
            let body = msg.get(PACKED_RESULT_HEADER..).ok_or(())?;
            if (count as usize).checked_mul(len) != Some(body.len()) {
                return Err(());
            }
            let start = job.data.len();
            job.data.extend_from_slice(body);
            for i in 0..count as usize {
                let at = start + i * len;
                job.settle(base + i, Slot::Value { at, len });
            }
            if job.done() && job.abandoned {
                self.jobs.remove(&key);
            }
            return Ok(());
        }
        let mut at = RESULT_HEADER;
        for i in 0..count as usize {
            let head = msg.get(at..at + RESULT_ITEM).ok_or(())?;
            let len = u32::from_le_bytes(head[1..5].try_into().unwrap_or([0; 4])) as usize;
            let body = msg
                .get(at + RESULT_ITEM..at + RESULT_ITEM + len)
                .ok_or(())?;
            at += RESULT_ITEM + len;
            let text = || String::from_utf8_lossy(body).into_owned();
            match head[0] {
                status::OK => {
                    let start = job.data.len();
                    job.data.extend_from_slice(body);
                    job.settle(base + i, Slot::Value { at: start, len });
                }
                status::PANICKED => job.fail(base + i, TaskError::Panicked { message: text() }),
                status::TOO_LARGE => {
                    let len = body.try_into().map_or(usize::MAX, |b| {
                        usize::try_from(u64::from_le_bytes(b)).unwrap_or(usize::MAX)
                    });
                    let max = MAX_MESSAGE - RESULT_HEADER - RESULT_ITEM;
                    job.fail(base + i, TaskError::TooLarge { len, max });
                }
                _ => job.fail(base + i, TaskError::Failed { why: text() }),
            }
        }
        if job.done() && job.abandoned {
            self.jobs.remove(&key);
        }
        Ok(())
    }

    /// Reaps workers that have died, accounts for what they held and
    /// replaces them.
    fn check_workers(&mut self) {
        self.last_check = Instant::now();
        let mut w = 0;
        while w < self.workers.len() {
            if let Some(code) = self.workers[w].child.exitcode() {
                self.bury(w, Some(code));
            } else {
                w += 1;
            }
        }
        while self.state != State::Stopped && self.workers.len() < self.config.processes {
            match self.start_worker() {
                Ok(worker) => {
                    self.workers.push(worker);
                    self.spawn_error = None;
                }
                Err(e) => {
                    self.spawn_error = Some(e.to_string());
                    break;
                }
            }
        }
        if self.workers.is_empty() {
            // Nobody can run anything: fail what waits rather than hang.
            let why = self
                .spawn_error
                .clone()
                .unwrap_or_else(|| "the pool has no workers".into());
            for batch in std::mem::take(&mut self.pending) {
                self.fail_range(
                    batch.first,
                    batch.count,
                    &TaskError::Failed { why: why.clone() },
                );
            }
        }
    }

    /// Removes worker `w` (exited with `code`, or retired): its committed
    /// results are taken, its unstarted batches go back to the queue, the
    /// batch it ran fails.
    fn bury(&mut self, w: usize, code: Option<i32>) {
        let _ = self.drain(w);
        let mut worker = self.workers.swap_remove(w);
        // The batches it never took are still in its task pipe: take them
        // back (its receiver role died with it).
        let [tasks, _] = pipes(&worker.segment);
        let mut back = Vec::new();
        if let Ok(mut rx) = tasks.receiver() {
            let mut buf = vec![0u8; MAX_MESSAGE];
            while let Ok(len) = rx.try_recv_bytes_into(&mut buf) {
                let msg = &buf[..len];
                if len >= BATCH_HEADER {
                    let count = u32::from_le_bytes(msg[4..8].try_into().unwrap_or([0; 4]));
                    let first = u64::from_le_bytes(msg[8..16].try_into().unwrap_or([0; 8]));
                    back.push(Batch {
                        first,
                        count,
                        bytes: msg.to_vec(),
                    });
                }
            }
        }
        // Only batches it really held go back (a message is trusted only
        // as far as it matches what we sent: the worker's side of the
        // pipe was writable by the worker).
        back.retain(|b| {
            worker
                .held
                .iter()
                .any(|&(f, c)| f == b.first && c == b.count)
        });
        worker
            .held
            .retain(|&(f, _)| !back.iter().any(|b| b.first == f));
        for batch in back.into_iter().rev() {
            self.pending.push_front(batch);
        }
        let pid = worker.child.pid();
        let error = match code {
            Some(c) if c < 0 => TaskError::WorkerDied { pid, signal: -c },
            Some(c) => TaskError::WorkerExited { pid, code: c },
            None => TaskError::WorkerExited { pid, code: 0 },
        };
        let held: Vec<(u64, u32)> = worker.held.drain(..).collect();
        for (first, count) in held {
            self.fail_range(first, count, &error);
        }
        if let Some(name) = worker.name.take() {
            let _ = Segment::unlink(&name);
        }
        drop(worker);
        if self.state != State::Stopped {
            if let Ok(worker) = self.start_worker() {
                self.workers.push(worker);
            }
        }
    }

    fn fail_range(&mut self, first: u64, count: u32, e: &TaskError) {
        let Some((&key, job)) = self.jobs.range_mut(..=first).next_back() else {
            return;
        };
        for seq in first..first + u64::from(count) {
            job.fail((seq - key) as usize, e.clone());
        }
        if job.done() && job.abandoned {
            self.jobs.remove(&key);
        }
    }

    /// Drives the pool until `done` says so or `deadline` passes.
    fn drive(&mut self, deadline: Option<Instant>, done: &mut dyn FnMut(&Inner) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.pump() {
                continue;
            }
            if self.last_check.elapsed() >= CHECK_EVERY {
                self.check_workers();
                if self.pump() {
                    continue;
                }
            }
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if d <= now => return done(self),
                Some(d) => (d - now).min(CHECK_EVERY),
                None => CHECK_EVERY,
            };
            // No spinning: the workers need the CPUs (a pool usually has
            // as many workers as CPUs, the parent is one process more).
            let sem = self.sem.view();
            let woke = match sem.acquire_spin(Spin::NONE, Some(slice)) {
                Ok(permit) => {
                    // Every permit stands for messages committed before it
                    // was released; the next `pump` takes them all, so
                    // the other permits are spent too (else each would cost
                    // a pass that finds nothing).
                    permit.forget();
                    while let Some(p) = sem.try_acquire() {
                        p.forget();
                    }
                    true
                }
                Err(_) => false,
            };
            if !woke {
                self.check_workers();
            }
        }
    }

    fn job_done(&self, key: u64) -> bool {
        self.jobs.get(&key).is_none_or(Job::done)
    }

    /// Kills every worker and fails what is unfinished.
    fn terminate(&mut self) {
        if self.state == State::Stopped && self.workers.is_empty() {
            return;
        }
        self.state = State::Stopped;
        for w in &self.workers {
            w.child.terminate();
        }
        for mut w in std::mem::take(&mut self.workers) {
            if w.child.join_timeout(Duration::from_secs(1)).is_none() {
                w.child.kill();
                let _ = w.child.wait();
            }
            if let Some(name) = w.name.take() {
                let _ = Segment::unlink(&name);
            }
        }
        self.pending.clear();
        for job in self.jobs.values_mut() {
            for i in 0..job.slots.len() {
                job.fail(i, TaskError::Terminated);
            }
        }
        self.jobs.retain(|_, j| !j.abandoned);
    }
}

// ---------------------------------------------------------------------
// The public handles

/// How to make a [`Pool`]: worker count, start method, initializer,
/// `maxtasksperchild`.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    processes: Option<usize>,
    process: ProcessBuilder,
    maxtasks: u32,
    init: Option<fn()>,
}

impl Builder {
    /// The defaults: one worker per available CPU, the default start
    /// method, no initializer, workers that live as long as the pool.
    #[must_use]
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The number of workers (Python's `processes`).
    #[must_use]
    pub fn processes(mut self, n: usize) -> Builder {
        self.processes = Some(n);
        self
    }

    /// Runs `f` first in every worker (Python's `initializer`).
    #[must_use]
    pub fn initializer(mut self, f: fn()) -> Builder {
        self.init = Some(f);
        self
    }

    /// A worker exits after this many batches and is replaced (Python's
    /// `maxtasksperchild`; a `map` chunk is one batch). 0: no limit.
    #[must_use]
    pub fn maxtasksperchild(mut self, n: u32) -> Builder {
        self.maxtasks = n;
        self
    }

    /// The workers' start method.
    #[must_use]
    pub fn start_method(mut self, method: StartMethod) -> Builder {
        self.process = self.process.start_method(method);
        self
    }

    /// How workers are started, as a process [`Builder`](ProcessBuilder)
    /// (start method, `allow_threads`, arguments of a fresh run). Its name
    /// and daemon settings are replaced: workers are `PoolWorker-N`, and
    /// daemons.
    #[must_use]
    pub fn process(mut self, process: ProcessBuilder) -> Builder {
        self.process = process;
        self
    }

    /// Starts the pool.
    ///
    /// # Errors
    /// [`PoolError::NoWorkers`] for 0 processes; [`PoolError::Spawn`] or
    /// [`PoolError::Create`] if a worker cannot start.
    pub fn build(self) -> Result<Pool, PoolError> {
        let processes = self
            .processes
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        if processes == 0 {
            return Err(PoolError::NoWorkers);
        }
        let named = self.process.method() != StartMethod::Fork;
        let (sem, sem_name) = if named {
            let name = format!("/shmkit-pool-{}-{}-sem", std::process::id(), pool_id());
            (
                Shared::<core_sync::Semaphore>::create(&name, 0u32).map_err(PoolError::Create)?,
                Some(name),
            )
        } else {
            (
                Shared::<core_sync::Semaphore>::memfd(0u32).map_err(PoolError::Create)?,
                None,
            )
        };
        let mut inner = Inner {
            config: Config {
                processes,
                process: self.process,
                maxtasks: self.maxtasks,
                init: self.init.map(|f| task::code_offset(f as usize)),
                named,
            },
            state: State::Running,
            workers: Vec::new(),
            sem,
            sem_name,
            pending: VecDeque::new(),
            jobs: BTreeMap::new(),
            next_seq: 1,
            next_worker: 0,
            buf: Vec::new(),
            last_check: Instant::now(),
            spawn_error: None,
        };
        for _ in 0..processes {
            match inner.start_worker() {
                Ok(w) => inner.workers.push(w),
                Err(e) => {
                    inner.terminate();
                    return Err(e);
                }
            }
        }
        Ok(Pool {
            inner: Arc::new(Mutex::new(inner)),
        })
    }
}

/// A pool of worker processes (see the module docs). Dropping it
/// terminates the workers (Python's `with Pool() as p:`); [`close`] then
/// [`join`] lets them finish first.
///
/// [`close`]: Pool::close
/// [`join`]: Pool::join
pub struct Pool {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("Pool")
            .field("processes", &inner.config.processes)
            .field("state", &inner.state)
            .finish_non_exhaustive()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Python's default chunk size for `len` items over `workers`: `len / (4
/// × workers)`, rounded up.
#[must_use]
pub fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers.max(1)).max(1)
}

impl Pool {
    /// A pool of `n` workers with the default start method.
    ///
    /// # Errors
    /// As [`Builder::build`]; [`PoolError::NoWorkers`] for 0.
    pub fn new(n: usize) -> Result<Pool, PoolError> {
        Builder::new().processes(n).build()
    }

    /// A [`Builder`].
    #[must_use]
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The number of workers.
    #[must_use]
    pub fn processes(&self) -> usize {
        lock(&self.inner).config.processes
    }

    /// The pids of the workers running now.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.inner)
            .workers
            .iter()
            .map(|w| w.child.pid())
            .collect()
    }

    fn submit<I, R>(
        &self,
        runner: Runner,
        f: usize,
        items: &[I],
        chunksize: Option<usize>,
        order: bool,
        encode: impl Fn(&I, &mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<Handle<R>, PoolError> {
        let mut inner = lock(&self.inner);
        inner.usable()?;
        let chunksize = match chunksize {
            Some(0) => return Err(PoolError::ZeroChunksize),
            Some(c) => c,
            None => default_chunksize(items.len(), inner.config.processes),
        };
        let key = inner.submit(runner, f, items, chunksize, order, encode);
        Ok(Handle {
            inner: Arc::clone(&self.inner),
            key,
            len: items.len(),
            _result: PhantomData,
        })
    }

    /// Submits `f` over `items` (each encoded as itself), in chunks of
    /// `chunksize` (`None`: Python's default), recording the finishing
    /// order if `order`.
    fn submit_one<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        items: &[A],
        chunksize: Option<usize>,
        order: bool,
    ) -> Result<Handle<R>, PoolError> {
        self.submit(
            Runner::one::<A, R>(),
            f as usize,
            items,
            chunksize,
            order,
            |a, out| a.encode(out),
        )
    }

    /// Runs `f(args)` in a worker and returns at once (Python's
    /// `apply_async`); [`AsyncResult::get`] waits for the value.
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Terminated`].
    pub fn apply_async<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        args: A,
    ) -> Result<AsyncResult<R>, PoolError> {
        let h = self.submit_one(f, std::slice::from_ref(&args), Some(1), false)?;
        Ok(AsyncResult { handle: h })
    }

    /// Runs `f(args)` in a worker and waits for it (Python's `apply`).
    ///
    /// # Errors
    /// The pool's refusal ([`PoolError`]) or the task's failure, as
    /// [`AsyncResult::get`].
    pub fn apply<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        args: A,
    ) -> Result<R, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.apply_async(f, args)?.get()?)
    }

    /// `f` over `items` in chunks of `chunksize` (default: Python's,
    /// [`default_chunksize`]); returns at once.
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], [`PoolError::Closed`],
    /// [`PoolError::Terminated`].
    pub fn map_async<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>, PoolError> {
        let items: Vec<A> = items.into_iter().collect();
        let h = self.submit_one(f, &items, chunksize, false)?;
        Ok(MapResult { handle: h })
    }

    /// `f` over `items` with Python's default chunking; the results in
    /// order, each a value or why that task failed (a worker killed
    /// mid-chunk fails that chunk's tasks, nothing else).
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Terminated`].
    pub fn map<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        Ok(self.map_async(f, items, None)?.get())
    }

    /// [`map`](Self::map) with chunks of `chunksize` tasks.
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], [`PoolError::Closed`],
    /// [`PoolError::Terminated`].
    pub fn map_chunked<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        Ok(self.map_async(f, items, Some(chunksize))?.get())
    }

    /// `f(a, b)` for every pair (Python's `starmap`), default chunking.
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Terminated`].
    pub fn starmap<A: Message, B: Message, R: Message>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<Result<R, TaskError>>, PoolError> {
        let items: Vec<(A, B)> = items.into_iter().collect();
        let h = self.submit(
            Runner::two::<A, B, R>(),
            f as usize,
            &items,
            None,
            false,
            encode_pair,
        )?;
        Ok(MapResult { handle: h }.get())
    }

    /// `f` over `items`, the results lazily and in order (Python's `imap`,
    /// chunks of 1).
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Terminated`].
    pub fn imap<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Imap<R>, PoolError> {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Self::imap) with chunks of `chunksize`.
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], [`PoolError::Closed`],
    /// [`PoolError::Terminated`].
    pub fn imap_chunked<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Imap<R>, PoolError> {
        let items: Vec<A> = items.into_iter().collect();
        let h = self.submit_one(f, &items, Some(chunksize), false)?;
        Ok(Imap { handle: h, next: 0 })
    }

    /// `f` over `items`, the results lazily as they finish, each with its
    /// index in `items` (Python's `imap_unordered`, chunks of 1).
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Terminated`].
    pub fn imap_unordered<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<ImapUnordered<R>, PoolError> {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with chunks of
    /// `chunksize` (Python's `imap_unordered(f, items, chunksize)`).
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], [`PoolError::Closed`],
    /// [`PoolError::Terminated`].
    pub fn imap_unordered_chunked<A: Message, R: Message>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<ImapUnordered<R>, PoolError> {
        let items: Vec<A> = items.into_iter().collect();
        let h = self.submit_one(f, &items, Some(chunksize), true)?;
        Ok(ImapUnordered {
            handle: h,
            given: 0,
        })
    }

    /// `f(a, b)` for every pair in chunks of `chunksize` (default: Python's,
    /// [`default_chunksize`]); returns at once (Python's `starmap_async`;
    /// its `starmap(f, items, chunksize)` is
    /// `starmap_async(f, items, Some(chunksize))?.get()`).
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`], [`PoolError::Closed`],
    /// [`PoolError::Terminated`].
    pub fn starmap_async<A: Message, B: Message, R: Message>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>, PoolError> {
        let items: Vec<(A, B)> = items.into_iter().collect();
        let h = self.submit(
            Runner::two::<A, B, R>(),
            f as usize,
            &items,
            chunksize,
            false,
            encode_pair,
        )?;
        Ok(MapResult { handle: h })
    }

    /// Takes no new tasks; what was submitted still runs (Python's
    /// `close`).
    pub fn close(&self) {
        let mut inner = lock(&self.inner);
        if inner.state == State::Running {
            inner.state = State::Closed;
        }
    }

    /// Kills the workers now; unfinished tasks fail with
    /// [`TaskError::Terminated`] (Python's `terminate`).
    pub fn terminate(&self) {
        lock(&self.inner).terminate();
    }

    /// Waits for every submitted task, then for the workers to exit
    /// (Python's `join`, after `close` or `terminate`).
    ///
    /// # Errors
    /// [`PoolError::StillRunning`] before `close`/`terminate`.
    pub fn join(&self) -> Result<(), PoolError> {
        let mut inner = lock(&self.inner);
        match inner.state {
            State::Running => return Err(PoolError::StillRunning),
            State::Stopped => return Ok(()),
            State::Closed => {}
        }
        inner.drive(None, &mut |i| {
            i.pending.is_empty() && i.workers.iter().all(|w| w.held.is_empty())
        });
        inner.state = State::Stopped;
        let mut stop = [0u8; BATCH_HEADER];
        stop[..4].copy_from_slice(&kind::STOP.to_le_bytes());
        for w in &mut inner.workers {
            let _ = w.tx.send_bytes(&stop);
        }
        for mut w in std::mem::take(&mut inner.workers) {
            let _ = w.child.wait();
            if let Some(name) = w.name.take() {
                let _ = Segment::unlink(&name);
            }
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        lock(&self.inner).terminate();
    }
}

/// A submitted job, typed by its result.
struct Handle<R> {
    inner: Arc<Mutex<Inner>>,
    key: u64,
    len: usize,
    _result: PhantomData<fn() -> R>,
}

impl<R> Handle<R> {
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let key = self.key;
        lock(&self.inner).drive(deadline, &mut |i| i.job_done(key))
    }

    fn with_job<T>(&self, f: impl FnOnce(&mut Job) -> T) -> Option<T> {
        lock(&self.inner).jobs.get_mut(&self.key).map(f)
    }
}

impl<R> Drop for Handle<R> {
    fn drop(&mut self) {
        let mut inner = lock(&self.inner);
        if let Some(job) = inner.jobs.get_mut(&self.key) {
            job.abandoned = true;
            if job.done() {
                inner.jobs.remove(&self.key);
            }
        }
    }
}

fn deadline(timeout: Duration) -> Option<Instant> {
    Some(
        Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
    )
}

/// The pending result of [`Pool::apply_async`] (Python's `AsyncResult`).
pub struct AsyncResult<R> {
    handle: Handle<R>,
}

impl<R: Message> AsyncResult<R> {
    /// Waits for the value.
    ///
    /// # Errors
    /// Why the task gave none ([`TaskError`]).
    pub fn get(self) -> Result<R, TaskError> {
        self.handle.wait(None);
        self.handle
            .with_job(|j| j.take(0))
            .unwrap_or(Err(TaskError::Terminated))
    }

    /// Waits at most `timeout` for the value; [`TaskError::Timeout`] if it
    /// is not ready (ask again later).
    ///
    /// # Errors
    /// `Timeout`, `Taken` after a successful call, or why the task failed.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, TaskError> {
        if !self.handle.wait(deadline(timeout)) {
            return Err(TaskError::Timeout);
        }
        self.handle
            .with_job(|j| j.take(0))
            .unwrap_or(Err(TaskError::Terminated))
    }

    /// Whether the task has finished (Python's `ready()`).
    #[must_use]
    pub fn ready(&self) -> bool {
        self.handle.wait(Some(Instant::now()))
    }

    /// Whether it finished with a value: `None` while it runs (Python's
    /// `successful()`, which raises then).
    #[must_use]
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        self.handle
            .with_job(|j| matches!(j.slots.first(), Some(Slot::Value { .. })))
    }

    /// Waits for the task to finish (Python's `wait()`).
    pub fn wait(&self) {
        self.handle.wait(None);
    }

    /// Waits at most `timeout`; whether it finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.handle.wait(deadline(timeout))
    }
}

/// The pending results of [`Pool::map_async`].
pub struct MapResult<R> {
    handle: Handle<R>,
}

impl<R: Message> MapResult<R> {
    fn collect(&self) -> Vec<Result<R, TaskError>> {
        let n = self.handle.len;
        self.handle
            .with_job(|j| (0..n).map(|i| j.take(i)).collect())
            .unwrap_or_else(|| (0..n).map(|_| Err(TaskError::Terminated)).collect())
    }

    /// Waits for every task; the results in order.
    #[must_use]
    pub fn get(self) -> Vec<Result<R, TaskError>> {
        self.handle.wait(None);
        self.collect()
    }

    /// Waits at most `timeout`; `None` if not every task finished.
    #[must_use]
    pub fn get_timeout(&self, timeout: Duration) -> Option<Vec<Result<R, TaskError>>> {
        self.handle.wait(deadline(timeout)).then(|| self.collect())
    }

    /// Whether every task has finished.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.handle.wait(Some(Instant::now()))
    }

    /// Waits for every task.
    pub fn wait(&self) {
        self.handle.wait(None);
    }
}

/// The ordered, lazy results of [`Pool::imap`].
pub struct Imap<R> {
    handle: Handle<R>,
    next: usize,
}

impl<R: Message> Iterator for Imap<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.handle.len {
            return None;
        }
        let (key, i) = (self.handle.key, self.next);
        let mut inner = lock(&self.handle.inner);
        inner.drive(None, &mut |s| {
            s.jobs
                .get(&key)
                .is_none_or(|j| !matches!(j.slots.get(i), Some(Slot::Pending)))
        });
        self.next += 1;
        Some(
            inner
                .jobs
                .get_mut(&key)
                .map_or(Err(TaskError::Terminated), |j| j.take(i)),
        )
    }
}

/// The lazy results of [`Pool::imap_unordered`] as they finish: `(index
/// in the input, result)`.
pub struct ImapUnordered<R> {
    handle: Handle<R>,
    given: usize,
}

impl<R: Message> Iterator for ImapUnordered<R> {
    type Item = (usize, Result<R, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.given >= self.handle.len {
            return None;
        }
        let key = self.handle.key;
        let mut inner = lock(&self.handle.inner);
        inner.drive(None, &mut |s| {
            s.jobs
                .get(&key)
                .is_none_or(|j| j.order.as_ref().is_some_and(|o| !o.is_empty()))
        });
        self.given += 1;
        let job = inner.jobs.get_mut(&key)?;
        let i = job.order.as_mut()?.pop_front()?;
        Some((i, job.take(i)))
    }
}

fn attach_error(e: shmkit_core::queue::roles::AttachError) -> CreateError {
    CreateError::Os {
        call: "attach a pool pipe",
        source: std::io::Error::other(e.to_string()),
    }
}
