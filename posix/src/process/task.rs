//! The task file: how a child learns what to run and how its result comes
//! back, whichever way it was started.
//!
//! A memfd private to one parent and one child (inherited across `fork`,
//! passed across `exec` by descriptor number, or sent to the forkserver
//! with `SCM_RIGHTS`):
//!
//! ```text
//! offset  size  field
//!      0     8  magic "SHMKTASK"
//!      8     4  version
//!     12     4  state: NOTHING, STARTED, VALUE, PANIC, FAILED (written by the child)
//!     16     8  executable device      (written by the parent)
//!     24     8  executable inode
//!     32     8  trampoline offset (i64, from the anchor function)
//!     40     8  function offset (i64, from the anchor function)
//!     48     8  argument length
//!     56     8  result length          (written by the child)
//!     64    64  the child's name, UTF-8, zero-padded (truncated to 63 bytes)
//!    128        arguments, then the result (a value's encoding, or a panic message)
//! ```
//!
//! The child writes its result and then the state; the parent reads them
//! only after the child has exited, so it sees everything the child wrote.
//! Everything the parent reads is checked (state, lengths against the file
//! size and a cap), and so is everything a spawned child reads (magic,
//! version, executable identity, function addresses inside the
//! executable's code) before it jumps anywhere.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::message::{DecodeError, Message};

const MAGIC: [u8; 8] = *b"SHMKTASK";
const VERSION: u32 = 1;
const HEADER: u64 = 128;
/// Where the child's name sits, and its room.
const NAME_AT: usize = 64;
const NAME_CAP: usize = 63;
/// The largest result a parent reads back.
const MAX_RESULT: u64 = 1 << 30;
/// The longest panic message kept.
pub(super) const MESSAGE_CAP: usize = 4096;

/// `state` values.
pub(super) mod state {
    /// The child has not got as far as running anything.
    pub const NOTHING: u32 = 0;
    /// A spawned child read its task and is running it.
    pub const STARTED: u32 = 1;
    /// The result holds the returned value's encoding.
    pub const VALUE: u32 = 2;
    /// The result holds the panic message.
    pub const PANIC: u32 = 3;
    /// The result holds why the task could not run (bad task file,
    /// undecodable arguments, unencodable result).
    pub const FAILED: u32 = 4;
}

/// What a child left behind.
pub(super) enum Outcome {
    /// The encoded return value.
    Value(Vec<u8>),
    /// The panic message.
    Panic(String),
    /// Why the task could not run.
    Failed(String),
    /// A spawned child that never read its task.
    NotStarted,
    /// Started but left nothing (killed, or it called `exit` itself).
    Nothing,
}

/// A function a spawned child can run: the monomorphized trampoline for
/// `fn(A) -> R`, which decodes `A`, calls the function and encodes `R`.
pub(super) type Trampoline = fn(usize, &[u8]) -> Result<Vec<u8>, String>;

pub(super) fn trampoline<A: Message, R: Message>(f: usize, args: &[u8]) -> Result<Vec<u8>, String> {
    // SAFETY: `f` is the address of a `fn(A) -> R` in this executable: the
    // parent took it from such a function pointer, paired with this very
    // monomorphization of the trampoline, and `Task::resolve` relocated it
    // by this process's load offset after checking the executable's
    // identity and that the address lies in its code.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    let args = A::decode(args).map_err(|e: DecodeError| e.to_string())?;
    let mut out = Vec::new();
    f(args).encode(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The function whose address every other one is measured from: the
/// executable's code moves as a whole under ASLR, so offsets from here are
/// the same in every process running it.
#[inline(never)]
fn anchor() {
    std::hint::black_box(());
}

fn anchor_addr() -> usize {
    anchor as fn() as usize
}

/// The offset of the function at `addr` from the anchor: the same in
/// every process running this executable (what crosses to a pool worker).
pub(super) fn code_offset(addr: usize) -> i64 {
    (addr as i64).wrapping_sub(anchor_addr() as i64)
}

/// The address of the function at `offset` from the anchor in this
/// process, if it lies inside `code` (this executable's code,
/// [`executable_code`]); `None` for anything else (a hostile or corrupt
/// offset is never called).
pub(super) fn code_at(offset: i64, code: &[std::ops::Range<usize>]) -> Option<usize> {
    let addr = (anchor_addr() as i64).wrapping_add(offset) as usize;
    code.iter().any(|r| r.contains(&addr)).then_some(addr)
}

/// The task file of one child.
#[derive(Debug)]
pub(super) struct Task {
    file: File,
}

impl Task {
    /// A new task file with no function (a forked closure) for the child
    /// called `name`.
    pub(super) fn new(name: &str) -> io::Result<Task> {
        let file = match cache::take() {
            Some(file) => file,
            None => {
                // SAFETY: a NUL-terminated name and valid flags.
                let fd = unsafe { libc::memfd_create(c"shmkit-task".as_ptr(), libc::MFD_CLOEXEC) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: a fresh descriptor we own.
                File::from(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        };
        // The header below resets every field a previous use wrote (state,
        // lengths, functions); bytes past the recorded lengths are never
        // read.
        let mut header = [0u8; HEADER as usize];
        header[..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let mut n = name.len().min(NAME_CAP);
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        header[NAME_AT..NAME_AT + n].copy_from_slice(&name.as_bytes()[..n]);
        file.write_all_at(&header, 0)?;
        Ok(Task { file })
    }

    /// A new task file running `f` on `args` (any start method).
    pub(super) fn for_fn(name: &str, tramp: Trampoline, f: usize, args: &[u8]) -> io::Result<Task> {
        let task = Task::new(name)?;
        let exe = std::fs::metadata("/proc/self/exe")?;
        let base = anchor_addr() as i64;
        let mut fields = [0u8; 48];
        fields[..8].copy_from_slice(&exe.dev().to_le_bytes());
        fields[8..16].copy_from_slice(&exe.ino().to_le_bytes());
        fields[16..24].copy_from_slice(&((tramp as usize as i64).wrapping_sub(base)).to_le_bytes());
        fields[24..32].copy_from_slice(&((f as i64).wrapping_sub(base)).to_le_bytes());
        fields[32..40].copy_from_slice(&(args.len() as u64).to_le_bytes());
        task.file.write_all_at(&fields, 16)?;
        task.file.write_all_at(args, HEADER)?;
        Ok(task)
    }

    /// Parent side, once the child has been reaped (nobody can write the
    /// file any more): keeps the file for the next child (creating and
    /// closing a memfd costs about a quarter of a fork here).
    pub(super) fn recycle(self) {
        cache::put(self.file);
    }

    /// Takes over a task file a parent passed by descriptor number.
    ///
    /// # Safety
    /// `fd` is an open descriptor this process owns and nobody else uses.
    pub(super) unsafe fn from_raw(fd: i32) -> Task {
        // SAFETY: forwarded from the caller.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Task {
            file: File::from(fd),
        }
    }

    fn u64_at(&self, at: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, at)?;
        Ok(u64::from_le_bytes(b))
    }

    fn set_state(&self, s: u32) {
        let _ = self.file.write_all_at(&s.to_le_bytes(), 12);
    }

    /// Child side: records the result (its encoding or a message) and then
    /// the state.
    pub(super) fn put(&self, s: u32, bytes: &[u8]) {
        let args_len = self.u64_at(48).unwrap_or(0);
        let ok = self.file.write_all_at(bytes, HEADER + args_len).is_ok()
            && self
                .file
                .write_all_at(&(bytes.len() as u64).to_le_bytes(), 56)
                .is_ok();
        if ok {
            self.set_state(s);
        }
    }

    /// Child side: records a panic message (clamped to a char boundary).
    pub(super) fn put_panic(&self, message: &str) {
        let mut n = message.len().min(MESSAGE_CAP);
        while !message.is_char_boundary(n) {
            n -= 1;
        }
        self.put(state::PANIC, &message.as_bytes()[..n]);
    }

    /// The child's name as recorded (lossy, bounded).
    pub(super) fn name(&self) -> String {
        let mut raw = [0u8; NAME_CAP];
        if self.file.read_exact_at(&mut raw, NAME_AT as u64).is_err() {
            return String::new();
        }
        let end = raw.iter().position(|&b| b == 0).unwrap_or(NAME_CAP);
        String::from_utf8_lossy(&raw[..end]).into_owned()
    }

    /// Spawned-child side: checks the task, relocates its functions into
    /// this process and marks it started. Returns the trampoline, the
    /// function address and the argument bytes.
    pub(super) fn resolve(&self) -> Result<(Trampoline, usize, Vec<u8>), String> {
        let mut head = [0u8; HEADER as usize];
        self.file
            .read_exact_at(&mut head, 0)
            .map_err(|e| format!("cannot read the task file: {e}"))?;
        let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
        if head[..8] != MAGIC
            || u32::from_le_bytes([head[8], head[9], head[10], head[11]]) != VERSION
        {
            return Err("the task file is not one this version of shmkit wrote".into());
        }
        let exe = std::fs::metadata("/proc/self/exe").map_err(|e| e.to_string())?;
        if (exe.dev(), exe.ino()) != (word(16), word(24)) {
            return Err(
                "the child runs another executable than its parent: spawn and forkserver children must be the same program".into(),
            );
        }
        let base = anchor_addr() as i64;
        let tramp = base.wrapping_add(word(32) as i64) as usize;
        let f = base.wrapping_add(word(40) as i64) as usize;
        let code = executable_code().map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
        if !code.iter().any(|r| r.contains(&tramp)) || !code.iter().any(|r| r.contains(&f)) {
            return Err("the task names a function outside this executable's code".into());
        }
        let args_len = word(48);
        let size = self.file.metadata().map_err(|e| e.to_string())?.len();
        if args_len > size.saturating_sub(HEADER) {
            return Err("the task's argument length passes the end of the task file".into());
        }
        let mut args = vec![0u8; args_len as usize];
        self.file
            .read_exact_at(&mut args, HEADER)
            .map_err(|e| e.to_string())?;
        self.set_state(state::STARTED);
        // SAFETY: `tramp` was a `Trampoline` in the parent, which runs the
        // same executable (checked above); relocated by the same offset as
        // every function of the executable, it is one here, and it lies in
        // the executable's code (checked above).
        let tramp: Trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
        Ok((tramp, f, args))
    }

    /// Parent side, after the child has exited: what it left.
    pub(super) fn outcome(&self) -> io::Result<Outcome> {
        let mut head = [0u8; HEADER as usize];
        self.file.read_exact_at(&mut head, 0)?;
        let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
        let s = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        let at = HEADER + word(48);
        let len = word(56);
        let size = self.file.metadata()?.len();
        let read = |cap: u64| -> io::Result<Vec<u8>> {
            if len > cap || at.checked_add(len).is_none_or(|end| end > size) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the child's result length passes the end of its task file",
                ));
            }
            let mut buf = vec![0u8; len as usize];
            self.file.read_exact_at(&mut buf, at)?;
            Ok(buf)
        };
        Ok(match s {
            state::VALUE => Outcome::Value(read(MAX_RESULT)?),
            state::PANIC => {
                Outcome::Panic(String::from_utf8_lossy(&read(MESSAGE_CAP as u64)?).into_owned())
            }
            state::FAILED => {
                Outcome::Failed(String::from_utf8_lossy(&read(MESSAGE_CAP as u64)?).into_owned())
            }
            state::NOTHING if word(32) != 0 || word(40) != 0 => Outcome::NotStarted,
            _ => Outcome::Nothing,
        })
    }

    /// The raw descriptor number (to pass across `exec`).
    pub(super) fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

/// Task files of reaped children, for reuse by this process only: a
/// forked child inherits the cache's descriptors, which name the same
/// files as the parent's, so the cache remembers whose it is and a child
/// drops what it inherited instead of reusing it.
mod cache {
    use std::fs::File;
    use std::sync::Mutex;

    struct Cache {
        owner: u32,
        files: Vec<File>,
    }

    static FREE: Mutex<Cache> = Mutex::new(Cache {
        owner: 0,
        files: Vec::new(),
    });

    /// The most files kept.
    const KEEP: usize = 8;

    /// The cache, emptied first if it was inherited. `try_lock`: in a
    /// forked child another parent thread may have held it at the fork.
    fn mine() -> Option<std::sync::MutexGuard<'static, Cache>> {
        let mut cache = FREE.try_lock().ok()?;
        let me = std::process::id();
        if cache.owner != me {
            cache.files.clear();
            cache.owner = me;
        }
        Some(cache)
    }

    pub(super) fn take() -> Option<File> {
        mine()?.files.pop()
    }

    pub(super) fn put(file: File) {
        if let Some(mut cache) = mine() {
            if cache.files.len() < KEEP {
                cache.files.push(file);
            }
        }
    }
}

/// The address ranges of this process's executable code (`r-xp` mappings
/// of `/proc/self/exe`).
pub(super) fn executable_code() -> io::Result<Vec<std::ops::Range<usize>>> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let path = parts.nth(3).unwrap_or("");
        if !perms.contains('x') || path != exe {
            continue;
        }
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) {
            out.push(lo..hi);
        }
    }
    Ok(out)
}
