//! The adapter between the open-path fuzz targets and the posix API: the
//! **only** file of this crate that names `shmkit_posix`.
//!
//! It answers three questions, whatever the handle API looks like:
//! - which typed handles there are ([`HANDLES`]);
//! - what an honest segment of handle `h` looks like ([`honest_segment`]:
//!   header and payload bytes, as the posix crate itself writes them);
//! - "open the object at this name or descriptor as handle `h` by this
//!   path, then call each of its operations once" ([`open_and_exercise`]).
//!
//! Written for the one-handle API (`Shared<O>` over core's `Object`, one
//! `Options` builder), with the queue and `lock=True` handles that still
//! have their own types. When the handles change again, porting the
//! fuzzer means rewriting this file, nothing else. Every operation called
//! here is a `try_` or timed one (timeouts from [`Clock`]); blocking calls
//! are never made, since a forged state could make them wait forever.

use std::fmt::Debug;
use std::os::fd::OwnedFd;
use std::time::Duration;

use bytemuck::Pod;
use shmkit_core::header::{Fingerprint, Kind};
use shmkit_core::map::{ByteMap, Map, MapParams};
use shmkit_core::object::{LayoutError, Object};
use shmkit_core::queue::msg::MsgParams;
use shmkit_core::queue::stamped::StampedSpsc;
use shmkit_core::sync::{
    Barrier, Condition, Condvar, Event, Mutex, RawMutex, ReentrantMutex, RwLock, Semaphore,
};
use shmkit_posix::array::SharedSliceExt;
use shmkit_posix::inspect::{describe, PayloadView};
use shmkit_posix::message::Message;
use shmkit_posix::msg_queue::{JoinableQueue, MessageQueue, MessageReceiver, MessageSender};
use shmkit_posix::pipe::{End, OneWayPipe, Pipe};
use shmkit_posix::queue::Queue;
use shmkit_posix::ring::Ring;
use shmkit_posix::segment::MAPPED_BYTE;
use shmkit_posix::{Array, Create, Expect, IntoInit, LockedArray, Options, Segment, Shared, Value};

use crate::{Clock, Input};

/// How the object is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `open(name)`, read-write.
    Open,
    /// `open_read_only(name)` where the handle has one, and the read-only
    /// segment open that `shmkit inspect` makes, then its decoder.
    OpenReadOnly,
    /// `open_or_create(name, ask)` of an existing name.
    OpenOrCreate,
    /// `from_fd(memfd)`.
    FromFd,
}

/// Where the object is.
#[derive(Debug)]
pub enum Source<'a> {
    /// A POSIX shared-memory name (`/...`).
    Named(&'a str),
    /// A descriptor (memfd).
    Fd(OwnedFd),
}

/// What `open_or_create` asks for (a length, capacity or initial value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// What the honest segment was made with ([`honest_segment`]'s param).
    Template(u8),
    /// What the header records (a victim asking for exactly what a forger
    /// wrote there): `fingerprint.params`.
    Header([u64; 2]),
    /// Any number.
    Raw(u64),
}

/// What a `from_fd` gave.
#[derive(Debug)]
pub enum Attached<H> {
    /// The typed handle.
    Typed(H),
    /// Refused.
    Refused,
}

/// The typed handles, by index.
pub const HANDLES: &[&str] = &[
    "Array<u8>",
    "Array<u32>",
    "Array<u64>",
    "Array<[u8; 3]>",
    "Value<u64>",
    "Value<u8>",
    "LockedArray<u32>",
    "LockedArray<u64>",
    // Index 8 was `LockedValue<u64>`, now the same type as `Mutex<u64>`
    // (`Shared<core::Mutex<u64>>`): Python's `Condition()` took its place.
    "Condition<u64>",
    "Mutex<u64>",
    "Lock",
    "ReentrantMutex<u64>",
    "RwLock<u64>",
    "Semaphore",
    "Event",
    "Condvar",
    "Barrier",
    "Ring<u8>",
    "Ring<u64>",
    "Queue<u32>",
    "Queue<u64>",
    "OneWayPipe",
    "Pipe",
    "StampedRing<u64>",
    "StampedRing<[u8; 3]>",
    "Map<u32, u64>",
    "ByteMap",
    "MessageQueue<u64>",
    "JoinableQueue<[u8; 3]>",
];

/// The largest length or capacity `open_or_create` is asked for: a
/// creation attempt sizes a (sparse) object that large before it finds
/// the name taken.
pub const MAX_ASK: u64 = 1 << 24;

/// Calls `$body` with `$t` bound to handle `$h`'s type.
macro_rules! dispatch {
    ($h:expr, $t:ident => $body:expr) => {
        match $h % HANDLES.len() {
            0 => {
                type $t = Array<u8>;
                $body
            }
            1 => {
                type $t = Array<u32>;
                $body
            }
            2 => {
                type $t = Array<u64>;
                $body
            }
            3 => {
                type $t = Array<[u8; 3]>;
                $body
            }
            4 => {
                type $t = Value<u64>;
                $body
            }
            5 => {
                type $t = Value<u8>;
                $body
            }
            6 => {
                type $t = LockedArray<u32>;
                $body
            }
            7 => {
                type $t = LockedArray<u64>;
                $body
            }
            8 => {
                type $t = Shared<Condition<u64>>;
                $body
            }
            9 => {
                type $t = Shared<Mutex<u64>>;
                $body
            }
            10 => {
                type $t = Shared<RawMutex>;
                $body
            }
            11 => {
                type $t = Shared<ReentrantMutex<u64>>;
                $body
            }
            12 => {
                type $t = Shared<RwLock<u64>>;
                $body
            }
            13 => {
                type $t = Shared<Semaphore>;
                $body
            }
            14 => {
                type $t = Shared<Event>;
                $body
            }
            15 => {
                type $t = Shared<Condvar>;
                $body
            }
            16 => {
                type $t = Shared<Barrier>;
                $body
            }
            17 => {
                type $t = Ring<u8>;
                $body
            }
            18 => {
                type $t = Ring<u64>;
                $body
            }
            19 => {
                type $t = Queue<u32>;
                $body
            }
            20 => {
                type $t = Queue<u64>;
                $body
            }
            21 => {
                type $t = OneWayPipe;
                $body
            }
            22 => {
                type $t = Pipe;
                $body
            }
            23 => {
                type $t = Shared<Stamped<u64>>;
                $body
            }
            24 => {
                type $t = Shared<Stamped<[u8; 3]>>;
                $body
            }
            25 => {
                type $t = Shared<Map<u32, u64>>;
                $body
            }
            26 => {
                type $t = Shared<ByteMap>;
                $body
            }
            27 => {
                type $t = MessageQueue<u64>;
                $body
            }
            _ => {
                type $t = JoinableQueue<[u8; 3]>;
                $body
            }
        }
    };
}

/// The bytes (header and payload) of an honest segment of handle `h`,
/// made by the posix crate with a parameter derived from `param`.
///
/// # Panics
/// If the posix crate cannot make one (out of memory, no `memfd`).
#[must_use]
pub fn honest_segment(h: usize, param: u8) -> Vec<u8> {
    dispatch!(h, H => {
        let handle = H::honest(param).expect("an honest anonymous segment");
        let seg = handle.seg();
        // SAFETY: the anonymous mapping is `len()` bytes, readable, and
        // this process alone has it (no fork since it was made).
        unsafe { std::slice::from_raw_parts(seg.base().as_ptr(), seg.len()) }.to_vec()
    })
}

/// Opens the object at `source` as handle `h` by `path` (`ask` matters to
/// `open_or_create` only), then calls each of the handle's operations
/// once, with values and timeouts from `input`. Returns whether the open
/// succeeded.
pub fn open_and_exercise(
    h: usize,
    path: Path,
    source: Source<'_>,
    ask: Ask,
    input: &mut Input<'_>,
) -> bool {
    let mut clock = Clock::new();
    dispatch!(h, H => {
        let opened = match (path, source) {
            (Path::Open, Source::Named(name)) => H::by_name(name).ok(),
            (Path::OpenOrCreate, Source::Named(name)) => {
                H::ask(ask).and_then(|a| H::by_name_or_create(name, a).ok())
            }
            (Path::FromFd, Source::Fd(fd)) => match H::by_fd(fd) {
                Attached::Typed(handle) => Some(handle),
                Attached::Refused => None,
            },
            (Path::OpenReadOnly, Source::Named(name)) => {
                let typed = H::open_read_only_and_exercise(name, input, &mut clock);
                let inspected = inspect(name);
                return typed || inspected;
            }
            // A name for from_fd, or a descriptor for a named path: the
            // caller's mistake; nothing opens.
            _ => None,
        };
        match opened {
            Some(handle) => {
                let _ = format!("{handle:?}");
                let seg = handle.seg();
                let _ = (seg.header(), seg.payload_len(), seg.len(), seg.name());
                Handle::exercise(&handle, input, &mut clock);
                true
            }
            None => false,
        }
    })
}

/// Holds the file at `path` open the way a live process mapping the
/// segment does (the shared open-file-description lock on its mapped
/// byte), so that `create` and `open_or_create` take it for a live peer's
/// segment rather than a dead creator's leftover to reclaim. The hold lasts
/// as long as the returned descriptor.
///
/// # Errors
/// The file cannot be opened or locked.
pub fn hold_as_live_peer(path: &str) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    // SAFETY: an all-zero `flock` is a valid value of the C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_RDLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = MAPPED_BYTE as libc::off_t;
    lock.l_len = 1;
    // SAFETY: F_OFD_SETLK reads the `flock` we pass, on a descriptor we own.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OwnedFd::from(file))
}

/// What `shmkit inspect` does with a name: a read-only open accepting any
/// kind and type, then the kind's decoder. Returns whether it opened.
fn inspect(name: &str) -> bool {
    // Learn what the header claims, to expect exactly that. The file was
    // written by the caller and nobody changes it meanwhile.
    let Ok(bytes) = std::fs::read(format!("/dev/shm{name}")) else {
        return false;
    };
    if bytes.len() < 88 {
        return false;
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let kind = Kind(u32::from_le_bytes(
        bytes[16..20].try_into().unwrap_or_default(),
    ));
    let mut expect = Expect::of::<u8>(kind);
    expect.fingerprint = Fingerprint {
        type_hash: word(48),
        size: word(56),
        align: word(64),
        params: [word(72), word(80)],
    };
    expect.match_params = true;
    let options = Options::default()
        .read_only(true)
        .init_timeout(Duration::ZERO);
    let Ok(seg) = Segment::open(name, &expect, &options) else {
        return false;
    };
    // SAFETY: the validated payload is `payload_len()` bytes, mapped (read
    // only) while `seg` lives; nothing in this process writes it.
    let view = unsafe { PayloadView::new(seg.payload(), seg.payload_len()) };
    if let Some(lines) = describe(seg.header(), &view) {
        let _ = lines.len();
    }
    true
}

/// What the adapter needs of each typed handle.
trait Handle: Sized + Debug {
    /// What `open_or_create` and `anonymous` take.
    type Param;
    /// An honest parameter derived from `p`.
    fn param(p: u8) -> Self::Param;
    /// The parameter a caller would pass, given `ask`; `None` if it would
    /// not (too large to ask for).
    fn ask(ask: Ask) -> Option<Self::Param>;
    fn honest(p: u8) -> Option<Self>;
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError>;
    fn by_name_or_create(
        name: &str,
        param: Self::Param,
    ) -> Result<Self, shmkit_posix::OpenOrCreateError>;
    /// `from_fd`.
    fn by_fd(fd: OwnedFd) -> Attached<Self>;
    /// The typed read-only open, if the handle has one; exercises it.
    fn open_read_only_and_exercise(
        _name: &str,
        _input: &mut Input<'_>,
        _clock: &mut Clock,
    ) -> bool {
        false
    }
    fn seg(&self) -> &Segment;
    /// One call of each operation.
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock);
}

/// A length or capacity from `ask`, if at most [`MAX_ASK`].
fn ask_len(ask: Ask, template: impl Fn(u8) -> usize) -> Option<usize> {
    let n = match ask {
        Ask::Template(p) => return Some(template(p)),
        Ask::Header(params) => params[0],
        Ask::Raw(n) => n % (MAX_ASK + 1),
    };
    (n <= MAX_ASK).then_some(n as usize)
}

fn ask_value<T: Pod>(ask: Ask) -> T {
    let raw = match ask {
        Ask::Template(p) => u64::from(p),
        Ask::Header(params) => params[0],
        Ask::Raw(n) => n,
    };
    let mut v = T::zeroed();
    let out = bytemuck::bytes_of_mut(&mut v);
    let n = out.len().min(8);
    out[..n].copy_from_slice(&raw.to_le_bytes()[..n]);
    v
}

fn array_len(p: u8) -> usize {
    1 + usize::from(p % 64)
}

impl<T: Pod + Debug> Handle for Array<T> {
    type Param = usize;
    fn param(p: u8) -> usize {
        array_len(p)
    }
    fn ask(ask: Ask) -> Option<usize> {
        ask_len(ask, array_len)
    }
    fn honest(p: u8) -> Option<Self> {
        Array::anonymous(array_len(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        Array::open(name)
    }
    fn by_name_or_create(name: &str, len: usize) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        Array::open_or_create(name, len)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        Array::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn open_read_only_and_exercise(name: &str, input: &mut Input<'_>, _: &mut Clock) -> bool {
        let Ok(a) = Array::<T>::open_read_only(name) else {
            return false;
        };
        let n = a.len();
        let _ = (a.is_empty(), a.get(0), a.get(n.wrapping_sub(1)), a.get(n));
        let mut buf = [T::zeroed(); 4];
        let k = usize::from(input.u8() % 5);
        let _ = a.read_into(n.saturating_sub(k), &mut buf[..k]);
        if n <= 4096 {
            let _ = a.to_vec();
        }
        let _ = (format!("{a:?}"), a.segment().header(), a.params());
        true
    }
    fn seg(&self) -> &Segment {
        self.segment()
    }
    fn exercise(&self, input: &mut Input<'_>, _: &mut Clock) {
        let n = self.len();
        let _ = (
            self.is_empty(),
            self.get(0),
            self.get(n.wrapping_sub(1)),
            self.get(n),
        );
        let v = input.pod::<T>();
        let _ = self.set(n.wrapping_sub(1), v);
        let _ = self.set(0, v);
        let _ = self.set(n, v);
        let mut buf = [v; 4];
        let k = usize::from(input.u8() % 5);
        let _ = self.read_into(n.saturating_sub(k), &mut buf[..k]);
        let _ = self.write_from(n.saturating_sub(k), &buf[..k]);
        if n <= 4096 {
            let _ = self.to_vec();
            self.fill(v);
        }
        let _ = self.view().len();
    }
}

impl<T: Pod + Debug> Handle for Value<T> {
    type Param = T;
    fn param(p: u8) -> T {
        ask_value(Ask::Template(p))
    }
    fn ask(ask: Ask) -> Option<T> {
        Some(ask_value(ask))
    }
    fn honest(p: u8) -> Option<Self> {
        Value::anonymous(Self::param(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        Value::open(name)
    }
    fn by_name_or_create(name: &str, v: T) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        Value::open_or_create(name, v)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        Value::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn open_read_only_and_exercise(name: &str, _: &mut Input<'_>, _: &mut Clock) -> bool {
        let Ok(v) = Value::<T>::open_read_only(name) else {
            return false;
        };
        let _ = (v.get(), format!("{v:?}"), v.segment().header());
        true
    }
    fn seg(&self) -> &Segment {
        self.segment()
    }
    fn exercise(&self, input: &mut Input<'_>, _: &mut Clock) {
        let _ = self.get();
        self.set(input.pod::<T>());
        self.update(|x| *x = T::zeroed());
        let _ = self.get();
    }
}

impl<T: Pod + Debug> Handle for LockedArray<T> {
    type Param = usize;
    fn param(p: u8) -> usize {
        array_len(p)
    }
    fn ask(ask: Ask) -> Option<usize> {
        ask_len(ask, array_len)
    }
    fn honest(p: u8) -> Option<Self> {
        LockedArray::anonymous(array_len(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        LockedArray::open(name)
    }
    fn by_name_or_create(name: &str, len: usize) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        LockedArray::open_or_create(name, len)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        LockedArray::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        LockedArray::segment(self)
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let _ = (self.len(), self.is_empty());
        let v = input.pod::<T>();
        let k = usize::from(input.u8() % 5);
        // A poisoned lock refuses `try_lock`: repair through `try_recover`.
        let guard = self.try_lock().or_else(|_| self.try_recover()).ok();
        if let Some(mut g) = guard {
            let n = g.len();
            let _ = (g.is_empty(), g.get(0), g.get(n.wrapping_sub(1)), g.get(n));
            let _ = g.set(n.wrapping_sub(1), v);
            let _ = g.write_from(n.saturating_sub(k), &[v; 4][..k]);
            if n <= 4096 {
                let _ = g.to_vec();
            }
            let _ = (g.owner_died(), g.is_consistent());
            g.mark_consistent();
        }
        let t = clock.timeout(input);
        let r = Clock::timed(t, "LockedArray::lock_timeout", || self.lock_timeout(t));
        if r.is_err() {
            let t = clock.timeout(input);
            let r = Clock::timed(t, "LockedArray::recover_timeout", || {
                self.recover_timeout(t)
            });
            if let Ok(mut g) = r {
                g.mark_consistent();
            }
        }
    }
}

/// The sync objects in their own segments: how each is made honestly,
/// asked for, and exercised.
trait SyncObject:
    Object<Params = ()> + Create + IntoInit<Self> + Sized + Send + Sync + 'static
{
    fn make(raw: u64) -> Self;
    fn exercise(object: &Self, input: &mut Input<'_>, clock: &mut Clock);
}

impl<O> Handle for Shared<O>
where
    O: SyncObject,
    Shared<O>: std::ops::Deref<Target = O>,
{
    type Param = O;
    fn param(p: u8) -> O {
        O::make(u64::from(p % 4))
    }
    fn ask(ask: Ask) -> Option<O> {
        Some(O::make(match ask {
            Ask::Template(p) => u64::from(p % 4),
            Ask::Header(params) => params[0],
            Ask::Raw(n) => n,
        }))
    }
    fn honest(p: u8) -> Option<Self> {
        Shared::anonymous(Self::param(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        Shared::open(name)
    }
    fn by_name_or_create(name: &str, o: O) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        Shared::open_or_create(name, o)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        Shared::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        self.segment()
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        O::exercise(self, input, clock);
    }
}

/// Locks `try_lock` and then `lock_timeout` of any shmkit lock, marking
/// whatever guard comes back consistent.
macro_rules! lock_twice {
    ($lock:expr, $what:literal, $input:expr, $clock:expr, |$g:ident| $with:expr) => {{
        // A poisoned lock refuses `try_lock`: repair through `try_recover`.
        if let Ok(mut $g) = $lock.try_lock().or_else(|_| $lock.try_recover()) {
            $with;
            $g.mark_consistent();
        }
        let t = $clock.timeout($input);
        match Clock::timed(t, $what, || $lock.lock_timeout(t)) {
            Ok(mut g) => g.mark_consistent(),
            Err(_) => {
                let t = $clock.timeout($input);
                if let Ok(mut g) = Clock::timed(t, $what, || $lock.recover_timeout(t)) {
                    g.mark_consistent();
                }
            }
        }
    }};
}

impl SyncObject for Mutex<u64> {
    fn make(raw: u64) -> Self {
        Mutex::new(raw)
    }
    fn exercise(m: &Self, input: &mut Input<'_>, clock: &mut Clock) {
        let v = input.u64();
        lock_twice!(m, "Mutex::lock_timeout", input, clock, |g| {
            g.set(v);
            let _ = g.get();
        });
        let _ = m.raw().snapshot();
    }
}

impl SyncObject for RawMutex {
    fn make(_: u64) -> Self {
        RawMutex::new()
    }
    fn exercise(m: &Self, input: &mut Input<'_>, clock: &mut Clock) {
        lock_twice!(m, "RawMutex::lock_timeout", input, clock, |g| {
            let _ = g.is_consistent();
        });
        let _ = (m.snapshot(), m.is_locked(), m.is_held_by_current_thread());
    }
}

impl SyncObject for ReentrantMutex<u64> {
    fn make(raw: u64) -> Self {
        ReentrantMutex::new(raw)
    }
    fn exercise(m: &Self, input: &mut Input<'_>, clock: &mut Clock) {
        let v = input.u64();
        lock_twice!(m, "ReentrantMutex::lock_timeout", input, clock, |g| {
            g.set(v);
            // Again, while held: reentrant.
            if let Ok(mut inner) = m.try_lock() {
                let _ = inner.get();
                inner.mark_consistent();
            }
        });
        let _ = (m.snapshot(), m.depth());
    }
}

impl SyncObject for RwLock<u64> {
    fn make(raw: u64) -> Self {
        RwLock::new(raw)
    }
    fn exercise(l: &Self, input: &mut Input<'_>, clock: &mut Clock) {
        if let Ok(r) = l.try_read() {
            let _ = r.get();
        }
        let t = clock.timeout(input);
        if let Ok(r) = Clock::timed(t, "RwLock::read_timeout", || l.read_timeout(t)) {
            let _ = r.get();
        }
        let v = input.u64();
        // A poisoned lock refuses `try_write`: repair through `try_recover`.
        if let Ok(mut w) = l.try_write().or_else(|_| l.try_recover()) {
            w.set(v);
            w.mark_consistent();
        }
        let t = clock.timeout(input);
        if let Ok(w) = Clock::timed(t, "RwLock::write_timeout", || l.write_timeout(t)) {
            let _ = w.get();
        }
        let _ = l.snapshot();
    }
}

impl SyncObject for Semaphore {
    fn make(raw: u64) -> Self {
        Semaphore::with_bound(raw as u32, (raw >> 32) as u32)
    }
    fn exercise(s: &Self, input: &mut Input<'_>, clock: &mut Clock) {
        let _ = s.try_acquire();
        let _ = s.release();
        let t = clock.timeout(input);
        let _ = Clock::timed(t, "Semaphore::acquire_timeout", || s.acquire_timeout(t));
        let _ = (s.available(), s.bound(), s.sleepers());
    }
}

impl SyncObject for Event {
    fn make(_: u64) -> Self {
        Event::new()
    }
    fn exercise(e: &Self, input: &mut Input<'_>, clock: &mut Clock) {
        let _ = (e.is_set(), e.has_waiters(), e.raw_word());
        let t = clock.timeout(input);
        let _ = Clock::timed(t, "Event::wait_timeout", || e.wait_timeout(t));
        e.set();
        e.clear();
    }
}

impl SyncObject for Condvar {
    fn make(_: u64) -> Self {
        Condvar::new()
    }
    fn exercise(cv: &Self, input: &mut Input<'_>, clock: &mut Clock) {
        cv.notify_one();
        cv.notify_all();
        let _ = (cv.sleepers(), cv.sequence());
        // Condvars pair with any shmkit mutex: a private one here.
        let m = Mutex::new(0u32);
        if let Ok(g) = m.try_lock() {
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Condvar::wait_timeout", || cv.wait_timeout(g, t));
        };
    }
}

impl SyncObject for Condition<u64> {
    fn make(raw: u64) -> Self {
        Condition::new(raw)
    }
    fn exercise(c: &Self, input: &mut Input<'_>, clock: &mut Clock) {
        let v = input.u64();
        lock_twice!(c.mutex(), "Condition::lock_timeout", input, clock, |g| {
            g.set(v);
        });
        c.notify_one();
        c.notify_all();
        let _ = (c.condvar().sleepers(), c.raw().snapshot(), format!("{c:?}"));
        if let Ok(g) = c.try_lock() {
            let t = clock.timeout(input);
            let r = Clock::timed(t, "Condition::wait_timeout", || c.wait_timeout(g, t));
            if let Ok((g, _)) = r {
                let t = clock.timeout(input);
                let stop = input.u64();
                let _ = Clock::timed(t, "Condition::wait_timeout_while", || {
                    c.wait_timeout_while(g, t, |x| *x != stop)
                });
            }
        }
    }
}

/// `Barrier(n)`: the party count is the recorded parameter.
impl Handle for Shared<Barrier> {
    type Param = u32;
    fn param(p: u8) -> u32 {
        1 + u32::from(p % 4)
    }
    fn ask(ask: Ask) -> Option<u32> {
        match ask {
            Ask::Template(p) => Some(Self::param(p)),
            Ask::Header(params) => u32::try_from(params[0]).ok(),
            Ask::Raw(n) => Some(n as u32),
        }
    }
    fn honest(p: u8) -> Option<Self> {
        Shared::anonymous(Self::param(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        Shared::open(name)
    }
    fn by_name_or_create(name: &str, n: u32) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        Shared::open_or_create(name, n)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        Shared::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        self.segment()
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let b: &Barrier = self;
        let _ = (b.parties(), b.n_waiting(), b.is_broken(), b.generation());
        let _ = b.register();
        let t = clock.timeout(input);
        let _ = Clock::timed(t, "Barrier::wait_timeout", || b.wait_timeout(t));
        let _ = b.tracked_parties().count();
        b.reset();
        b.abort();
        b.unregister();
    }
}

/// The stamped SPSC ring has no posix handle yet (posix never creates
/// one), but any core [`Object`] opens through [`Shared`]: this object is
/// [`StampedSpsc<T>`] in every recorded respect (kind, element type,
/// parameters, layout, view), with the [`Create`] that posix lacks, so
/// that honest segments can be made and `open_or_create` exercised.
#[derive(Debug)]
pub enum Stamped<T> {
    #[doc(hidden)]
    _Never(
        std::convert::Infallible,
        std::marker::PhantomData<fn() -> T>,
    ),
}

// SAFETY: every item forwards to `StampedSpsc<T>`'s, which upholds the
// contract.
unsafe impl<T: Pod> Object for Stamped<T> {
    const KIND: Kind = <StampedSpsc<T> as Object>::KIND;
    type Params = usize;
    type View<'a> = <StampedSpsc<T> as Object>::View<'a>;
    type Element = T;
    fn encode(capacity: &usize) -> [u64; 2] {
        StampedSpsc::<T>::encode(capacity)
    }
    fn decode(recorded: [u64; 2]) -> Result<usize, LayoutError> {
        StampedSpsc::<T>::decode(recorded)
    }
    fn payload_len(capacity: &usize) -> Result<usize, LayoutError> {
        StampedSpsc::<T>::payload_len(capacity)
    }
    unsafe fn init(payload: std::ptr::NonNull<u8>, capacity: &usize) {
        // SAFETY: forwarded from our caller, same contract.
        unsafe { StampedSpsc::<T>::init(payload, capacity) }
    }
    unsafe fn attach<'a>(payload: std::ptr::NonNull<u8>, capacity: &usize) -> Self::View<'a> {
        // SAFETY: forwarded from our caller, same contract.
        unsafe { StampedSpsc::<T>::attach(payload, capacity) }
    }
}

impl<T: Pod> Create for Stamped<T> {
    type Init = usize;
    fn params(capacity: &usize) -> usize {
        *capacity
    }
    unsafe fn write_init(_: std::ptr::NonNull<u8>, _: &usize, _: usize) {}
}

impl<T: Pod> IntoInit<Stamped<T>> for usize {
    fn into_init(self) -> usize {
        self
    }
}

impl<T: Pod + Debug> Handle for Shared<Stamped<T>> {
    type Param = usize;
    fn param(p: u8) -> usize {
        ring_capacity(p)
    }
    fn ask(ask: Ask) -> Option<usize> {
        ask_len(ask, ring_capacity)
    }
    fn honest(p: u8) -> Option<Self> {
        Shared::anonymous(ring_capacity(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        Shared::open(name)
    }
    fn by_name_or_create(name: &str, cap: usize) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        Shared::open_or_create(name, cap)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        Shared::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        self.segment()
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let ring = self.view();
        let _ = (
            ring.capacity(),
            ring.len(),
            ring.is_empty(),
            format!("{ring:?}"),
        );
        let v = input.pod::<T>();
        if let Ok(mut tx) = ring.producer() {
            let _ = tx.try_push(v);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "StampedProducer::push_timeout", || tx.push_timeout(v, t));
        }
        if let Ok(mut rx) = ring.consumer() {
            let _ = rx.try_pop();
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "StampedConsumer::pop_timeout", || rx.pop_timeout(t));
        }
    }
}

fn map_capacity(p: u8) -> usize {
    1 + usize::from(p % 64)
}

impl Handle for Shared<Map<u32, u64>> {
    type Param = usize;
    fn param(p: u8) -> usize {
        map_capacity(p)
    }
    fn ask(ask: Ask) -> Option<usize> {
        ask_len(ask, map_capacity)
    }
    fn honest(p: u8) -> Option<Self> {
        Shared::anonymous(map_capacity(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        Shared::open(name)
    }
    fn by_name_or_create(name: &str, cap: usize) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        Shared::open_or_create(name, cap)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        Shared::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        self.segment()
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let t = clock.timeout(input);
        let m = self.with_timeout(t);
        let (k, v) = (input.u32(), input.u64());
        let _ = (m.capacity(), m.len(), m.is_empty(), m.repairs());
        Clock::timed(t, "MapView operations", || {
            let _ = m.get(&k);
            let _ = m.insert(k, v);
            let _ = m.update(&k, |x| *x = x.wrapping_add(1));
            let _ = m.get_or_insert(k.wrapping_add(1), v);
            let _ = m.contains_key(&k);
            let _ = m.for_each(|_, _| {});
            let _ = m.check();
            let _ = m.remove(&k);
        });
        // Not the posix conveniences (`items()`, `get()`...): they wait
        // without a deadline, and a forged stripe lock naming a live
        // process holds them, as a held lock holds `lock()`.
    }
}

fn byte_map_shape(p: u8) -> (usize, usize, usize) {
    (
        1 + usize::from(p % 16),
        1 + usize::from((p >> 4) % 8),
        usize::from(p % 5) * 8,
    )
}

impl Handle for Shared<ByteMap> {
    type Param = (usize, usize, usize);
    fn param(p: u8) -> (usize, usize, usize) {
        byte_map_shape(p)
    }
    fn ask(ask: Ask) -> Option<(usize, usize, usize)> {
        match ask {
            Ask::Template(p) => Some(byte_map_shape(p)),
            Ask::Header(params) => {
                let p: MapParams = ByteMap::decode(params).ok()?;
                (p.capacity() as u64 <= MAX_ASK)
                    .then(|| (p.capacity(), p.key().bytes(), p.value().bytes()))
            }
            Ask::Raw(n) => Some((
                (n % 256) as usize,
                ((n >> 8) % 64) as usize,
                ((n >> 16) % 256) as usize,
            )),
        }
    }
    fn honest(p: u8) -> Option<Self> {
        Shared::anonymous(byte_map_shape(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        Shared::open(name)
    }
    fn by_name_or_create(
        name: &str,
        shape: (usize, usize, usize),
    ) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        Shared::open_or_create(name, shape)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        Shared::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        self.segment()
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let t = clock.timeout(input);
        let m = self.with_timeout(t);
        let key = message(input, m.max_key_len());
        let value = message(input, m.max_value_len());
        let mut out = vec![0u8; usize::from(input.u8())];
        let _ = (m.capacity(), m.len(), m.is_empty(), m.repairs());
        Clock::timed(t, "ByteMapView operations", || {
            let _ = m.get_into(&key, &mut out);
            let _ = m.value_len(&key);
            let _ = m.insert(&key, &value, None);
            let _ = m.insert_if_absent(&value, &key);
            let _ = m.contains_key(&key);
            let _ = m.for_each(|e| {
                let mut k = vec![0u8; e.key_len().min(1 << 16)];
                e.read_key(&mut k);
                let _ = e.value_len();
            });
            let _ = m.check();
            let _ = m.remove(&key, Some(&mut out));
        });
        // Not the posix conveniences: see the map above.
    }
}

// ======================================================================
// The posix *queue* API (`ring::Ring`, `queue::Queue`, `pipe::OneWayPipe`,
// `pipe::Pipe`, and their owned role handles): every call into it is in
// this section, one `Handle` impl per kind, and in `dispatch!` entries 17
// to 22.
// ======================================================================

/// The parts of a queue kind's `Handle` impl that only differ by how a
/// parameter byte becomes a capacity: every kind here is a `Shared<O>`
/// created from a `usize`.
macro_rules! sized_by {
    ($cap:ident) => {
        type Param = usize;
        fn param(p: u8) -> usize {
            $cap(p)
        }
        fn ask(ask: Ask) -> Option<usize> {
            ask_len(ask, $cap)
        }
        fn honest(p: u8) -> Option<Self> {
            Self::anonymous($cap(p)).ok()
        }
        fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
            Self::open(name)
        }
        fn by_name_or_create(
            name: &str,
            cap: usize,
        ) -> Result<Self, shmkit_posix::OpenOrCreateError> {
            Self::open_or_create(name, cap)
        }
        fn by_fd(fd: OwnedFd) -> Attached<Self> {
            Self::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
        }
        fn seg(&self) -> &Segment {
            self.segment()
        }
    };
}

fn ring_capacity(p: u8) -> usize {
    1 << (p % 8)
}

impl<T: Pod + Debug> Handle for Ring<T> {
    sized_by!(ring_capacity);
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let _ = self.capacity();
        let v = input.pod::<T>();
        if let Ok(tx) = self.producer() {
            let _ = tx.push(v);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Producer::push_timeout", || tx.push_timeout(v, t));
            let _ = tx.push_slice(&[v; 3]);
            let _ = tx.slots();
        }
        if let Ok(rx) = self.consumer() {
            let _ = rx.pop();
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Consumer::pop_timeout", || rx.pop_timeout(t));
            let _ = rx.pop_into(&mut [T::zeroed(); 3]);
            let _ = rx.slots();
        }
    }
}

/// A power of two from 1 to 16 (the MPMC queue's slots are a power of two).
fn queue_capacity(p: u8) -> usize {
    1 << (p % 5)
}

impl<T: Pod + Debug> Handle for Queue<T> {
    sized_by!(queue_capacity);
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let _ = self.capacity();
        let v = input.pod::<T>();
        if let Ok(tx) = self.sender() {
            let _ = (tx.len(), tx.is_empty(), tx.is_full());
            let _ = tx.try_send(v);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Sender::send_timeout", || tx.send_timeout(v, t));
        }
        if let Ok(rx) = self.receiver() {
            let _ = rx.try_recv();
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Receiver::recv_timeout", || rx.recv_timeout(t));
        }
    }
}

fn pipe_capacity(p: u8) -> usize {
    8 << (p % 6)
}

/// A message from the input, up to a few bytes past what fits.
fn message(input: &mut Input<'_>, max: usize) -> Vec<u8> {
    let len = usize::from(input.u16()) % (max + 8);
    let mut msg = input.bytes(len).to_vec();
    msg.resize(len, 0x5a);
    msg
}

impl Handle for OneWayPipe {
    sized_by!(pipe_capacity);
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let max = self.max_message_len();
        let _ = self.params();
        if let Ok(tx) = self.sender() {
            let msg = message(input, max);
            let _ = tx.try_send_bytes(&msg);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "PipeSender::send_bytes_timeout", || {
                tx.send_bytes_timeout(&msg, t)
            });
        }
        if let Ok(rx) = self.receiver() {
            let _ = rx.poll(std::time::Duration::ZERO);
            let mut buf = vec![0u8; usize::from(input.u16()) % (max + 8)];
            let _ = rx.try_recv_bytes_into(&mut buf);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "PipeReceiver::recv_bytes_timeout", || {
                rx.recv_bytes_timeout(t)
            });
        }
    }
}

impl Handle for Pipe {
    sized_by!(pipe_capacity);
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let max = self.max_message_len();
        let _ = self.params();
        let a = self.end(End::A).ok();
        let b = self.end(End::B).ok();
        let _ = self.end(End::A);
        if let Some(a) = a.as_ref() {
            let msg = message(input, max);
            let _ = a.try_send_bytes(&msg);
            let _ = a.poll(std::time::Duration::ZERO);
        }
        if let Some(b) = b.as_ref() {
            let mut buf = vec![0u8; usize::from(input.u16()) % (max + 8)];
            let _ = b.try_recv_bytes_into(&mut buf);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Connection::recv_bytes_timeout", || {
                b.recv_bytes_timeout(t)
            });
            let msg = message(input, max);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Connection::send_bytes_timeout", || {
                b.send_bytes_timeout(&msg, t)
            });
        }
    }
}

// ======================================================================
// The message queues (`msg_queue::MessageQueue`, `msg_queue::JoinableQueue`):
// `dispatch!` entries 27 and 28.
// ======================================================================

/// An honest message queue's parameters: 1 to 16 slots, messages up to 8
/// to 40 bytes (the default registry sizes).
fn msg_params(p: u8) -> MsgParams {
    MsgParams::new(1 << (p % 5), [8, 9, 16, 40][usize::from(p >> 5) % 4])
}

/// What `open_or_create` of a message queue asks for.
fn msg_ask(ask: Ask) -> Option<MsgParams> {
    let p = match ask {
        Ask::Template(p) => msg_params(p),
        Ask::Header(params) => MsgParams::decode(params).ok()?,
        Ask::Raw(n) => MsgParams::new((n % 64) as usize, ((n >> 8) % 256) as usize)
            .with_registry(((n >> 16) % 8) as usize, ((n >> 24) % 8) as usize),
    };
    (p.capacity as u64 <= MAX_ASK).then_some(p)
}

/// Both ends' `try_` and timed calls, with `M`s made from the input.
fn exercise_messages<M: Message + Pod>(
    tx: Option<MessageSender<M>>,
    rx: Option<MessageReceiver<M>>,
    input: &mut Input<'_>,
    clock: &mut Clock,
) {
    if let Some(mut tx) = tx {
        let _ = tx.max_len();
        let _ = tx.try_send(&input.pod::<M>());
        let (m, t) = (input.pod::<M>(), clock.timeout(input));
        let _ = Clock::timed(t, "MessageSender::send_timeout", || tx.send_timeout(&m, t));
    }
    if let Some(mut rx) = rx {
        let _ = rx.try_recv();
        let t = clock.timeout(input);
        let _ = Clock::timed(t, "MessageReceiver::recv_timeout", || rx.recv_timeout(t));
    }
}

macro_rules! message_queue_handle {
    ($q:ident) => {
        type Param = MsgParams;
        fn param(p: u8) -> MsgParams {
            msg_params(p)
        }
        fn ask(ask: Ask) -> Option<MsgParams> {
            msg_ask(ask)
        }
        fn honest(p: u8) -> Option<Self> {
            $q::anonymous(msg_params(p)).ok()
        }
        fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
            $q::open(name)
        }
        fn by_name_or_create(
            name: &str,
            p: MsgParams,
        ) -> Result<Self, shmkit_posix::OpenOrCreateError> {
            $q::open_or_create(name, p)
        }
        fn by_fd(fd: OwnedFd) -> Attached<Self> {
            $q::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
        }
        fn seg(&self) -> &Segment {
            self.segment()
        }
    };
}

impl<M: Message + Pod + Debug> Handle for MessageQueue<M> {
    message_queue_handle!(MessageQueue);
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let _ = (self.len(), self.is_empty(), self.params());
        exercise_messages(self.sender().ok(), self.receiver().ok(), input, clock);
    }
}

impl<M: Message + Pod + Debug> Handle for JoinableQueue<M> {
    message_queue_handle!(JoinableQueue);
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let _ = (self.unfinished(), self.params());
        exercise_messages(self.sender().ok(), self.receiver().ok(), input, clock);
        let _ = self.task_done();
        let t = clock.timeout(input);
        let _ = Clock::timed(t, "JoinableQueue::join_timeout", || self.join_timeout(t));
    }
}
