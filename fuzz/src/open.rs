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
use shmkit_core::object::Object;
use shmkit_core::sync::{
    Barrier, Condvar, Event, Mutex, RawMutex, ReentrantMutex, RwLock, Semaphore,
};
use shmkit_posix::inspect::{describe, PayloadView};
use shmkit_posix::queue::{RecvBytes, SharedDuplexPipe, SharedPipe, SharedQueue, SharedRing};
use shmkit_posix::segment::MAPPED_BYTE;
use shmkit_posix::{
    Array, Create, Expect, IntoInit, LockedArray, LockedValue, Options, Segment, Shared, Value,
};

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
    "LockedValue<u64>",
    "Mutex<u64>",
    "Lock",
    "ReentrantMutex<u64>",
    "RwLock<u64>",
    "Semaphore",
    "Event",
    "Condvar",
    "Barrier",
    "SharedRing<u8>",
    "SharedRing<u64>",
    "SharedQueue<u32>",
    "SharedQueue<u64>",
    "SharedPipe",
    "SharedDuplexPipe",
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
                type $t = LockedValue<u64>;
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
                type $t = SharedRing<u8>;
                $body
            }
            18 => {
                type $t = SharedRing<u64>;
                $body
            }
            19 => {
                type $t = SharedQueue<u32>;
                $body
            }
            20 => {
                type $t = SharedQueue<u64>;
                $body
            }
            21 => {
                type $t = SharedPipe;
                $body
            }
            _ => {
                type $t = SharedDuplexPipe;
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
        let guard = match self.try_lock() {
            Ok(g) => Some(g),
            Err(e) => e.into_guard(),
        };
        if let Some(mut g) = guard {
            let n = g.len();
            let _ = (g.is_empty(), g.get(0), g.get(n.wrapping_sub(1)), g.get(n));
            let _ = g.set(n.wrapping_sub(1), v);
            let _ = g.write_from(n.saturating_sub(k), &[v; 4][..k]);
            if n <= 4096 {
                let _ = g.to_vec();
            }
            let _ = g.view().len();
            g.mark_consistent();
        }
        let t = clock.timeout(input);
        let r = Clock::timed(t, "LockedArray::lock_timeout", || self.lock_timeout(t));
        if let Err(e) = r {
            if let Some(mut g) = e.into_guard() {
                g.mark_consistent();
            }
        }
    }
}

impl<T: Pod + Debug> Handle for LockedValue<T> {
    type Param = T;
    fn param(p: u8) -> T {
        ask_value(Ask::Template(p))
    }
    fn ask(ask: Ask) -> Option<T> {
        Some(ask_value(ask))
    }
    fn honest(p: u8) -> Option<Self> {
        LockedValue::anonymous(Self::param(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        LockedValue::open(name)
    }
    fn by_name_or_create(name: &str, v: T) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        LockedValue::open_or_create(name, v)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        LockedValue::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        LockedValue::segment(self)
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let v = input.pod::<T>();
        let guard = match self.try_lock() {
            Ok(g) => Some(g),
            Err(e) => e.into_guard(),
        };
        if let Some(mut g) = guard {
            let _ = g.get();
            g.set(v);
            g.update(|x| *x = v);
            g.mark_consistent();
        }
        let t = clock.timeout(input);
        let r = Clock::timed(t, "LockedValue::lock_timeout", || self.lock_timeout(t));
        if let Err(e) = r {
            if let Some(mut g) = e.into_guard() {
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
        match $lock.try_lock() {
            Ok(mut $g) => {
                $with;
                $g.mark_consistent();
            }
            Err(e) => {
                if let Some(mut $g) = e.into_guard() {
                    $with;
                    $g.mark_consistent();
                }
            }
        }
        let t = $clock.timeout($input);
        match Clock::timed(t, $what, || $lock.lock_timeout(t)) {
            Ok(mut g) => g.mark_consistent(),
            Err(e) => {
                if let Some(mut g) = e.into_guard() {
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
        match l.try_write() {
            Ok(w) => w.set(v),
            Err(e) => {
                if let Some(mut w) = e.into_guard() {
                    w.set(v);
                    w.mark_consistent();
                }
            }
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

impl SyncObject for Barrier {
    fn make(raw: u64) -> Self {
        // A party count the constructor refuses asks for one party.
        Barrier::new(raw as u32).unwrap_or_else(|_| Barrier::new(1).expect("one party"))
    }
    fn exercise(b: &Self, input: &mut Input<'_>, clock: &mut Clock) {
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

fn ring_capacity(p: u8) -> usize {
    1 << (p % 8)
}

impl<T: Pod + Debug> Handle for SharedRing<T> {
    type Param = usize;
    fn param(p: u8) -> usize {
        ring_capacity(p)
    }
    fn ask(ask: Ask) -> Option<usize> {
        ask_len(ask, ring_capacity)
    }
    fn honest(p: u8) -> Option<Self> {
        SharedRing::anonymous(ring_capacity(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        SharedRing::open(name)
    }
    fn by_name_or_create(name: &str, cap: usize) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        SharedRing::open_or_create(name, cap)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        SharedRing::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        SharedRing::segment(self)
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let ring = self.ring();
        let _ = (self.capacity(), ring.capacity());
        let v = input.pod::<T>();
        if let Ok(mut tx) = ring.producer() {
            let _ = tx.try_push(v);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Producer::push_timeout", || tx.push_timeout(v, t));
            let _ = tx.push_slice(&[v; 3]);
            let _ = tx.slots();
        }
        if let Ok(mut rx) = ring.consumer() {
            let _ = rx.try_pop();
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "Consumer::pop_timeout", || rx.pop_timeout(t));
            let _ = rx.pop_into(&mut [T::zeroed(); 3]);
            let _ = rx.slots();
        }
    }
}

fn queue_capacity(p: u8) -> usize {
    1 + usize::from(p % 16)
}

impl<T: Pod + Debug> Handle for SharedQueue<T> {
    type Param = usize;
    fn param(p: u8) -> usize {
        queue_capacity(p)
    }
    fn ask(ask: Ask) -> Option<usize> {
        ask_len(ask, queue_capacity)
    }
    fn honest(p: u8) -> Option<Self> {
        SharedQueue::anonymous(queue_capacity(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        SharedQueue::open(name)
    }
    fn by_name_or_create(name: &str, cap: usize) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        SharedQueue::open_or_create(name, cap)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        SharedQueue::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        SharedQueue::segment(self)
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let q = self.queue();
        let _ = (self.capacity(), q.len(), q.is_empty(), q.is_full());
        let v = input.pod::<T>();
        if let Ok(mut tx) = q.producer() {
            let _ = tx.try_push(v);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "QueueProducer::push_timeout", || tx.push_timeout(v, t));
        }
        if let Ok(mut rx) = q.consumer() {
            let _ = rx.try_pop();
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "QueueConsumer::pop_timeout", || rx.pop_timeout(t));
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

impl Handle for SharedPipe {
    type Param = usize;
    fn param(p: u8) -> usize {
        pipe_capacity(p)
    }
    fn ask(ask: Ask) -> Option<usize> {
        ask_len(ask, pipe_capacity)
    }
    fn honest(p: u8) -> Option<Self> {
        SharedPipe::anonymous(pipe_capacity(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        SharedPipe::open(name)
    }
    fn by_name_or_create(name: &str, cap: usize) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        SharedPipe::open_or_create(name, cap)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        SharedPipe::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        SharedPipe::segment(self)
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let pipe = self.pipe();
        let max = self.max_message_len();
        let _ = (self.capacity(), pipe.max_message_len());
        if let Ok(mut tx) = pipe.sender() {
            let msg = message(input, max);
            let _ = tx.try_send_bytes(&msg);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "PipeSender::send_bytes_timeout", || {
                tx.send_bytes_timeout(&msg, t)
            });
        }
        if let Ok(mut rx) = pipe.receiver() {
            let _ = (rx.poll(), rx.try_peek_len());
            let mut buf = vec![0u8; usize::from(input.u16()) % (max + 8)];
            let _ = rx.try_recv_bytes_into(&mut buf);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "PipeReceiver::recv_bytes_timeout", || {
                rx.recv_bytes_timeout(t)
            });
        }
    }
}

impl Handle for SharedDuplexPipe {
    type Param = usize;
    fn param(p: u8) -> usize {
        pipe_capacity(p)
    }
    fn ask(ask: Ask) -> Option<usize> {
        ask_len(ask, pipe_capacity)
    }
    fn honest(p: u8) -> Option<Self> {
        SharedDuplexPipe::anonymous(pipe_capacity(p)).ok()
    }
    fn by_name(name: &str) -> Result<Self, shmkit_posix::OpenError> {
        SharedDuplexPipe::open(name)
    }
    fn by_name_or_create(name: &str, cap: usize) -> Result<Self, shmkit_posix::OpenOrCreateError> {
        SharedDuplexPipe::open_or_create(name, cap)
    }
    fn by_fd(fd: OwnedFd) -> Attached<Self> {
        SharedDuplexPipe::from_fd(fd).map_or(Attached::Refused, Attached::Typed)
    }
    fn seg(&self) -> &Segment {
        SharedDuplexPipe::segment(self)
    }
    fn exercise(&self, input: &mut Input<'_>, clock: &mut Clock) {
        let max = self.max_message_len();
        let _ = self.capacity();
        let mut a = self.end(0).ok();
        let mut b = self.end(1).ok();
        let _ = self.end(0);
        if let Some(a) = a.as_mut() {
            let msg = message(input, max);
            let _ = a.tx.try_send_bytes(&msg);
            let _ = a.poll();
        }
        if let Some(b) = b.as_mut() {
            let mut buf = vec![0u8; usize::from(input.u16()) % (max + 8)];
            let _ = b.rx.try_recv_bytes_into(&mut buf);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "PipeReceiver::recv_bytes_timeout", || {
                b.rx.recv_bytes_timeout(t)
            });
            let msg = message(input, max);
            let t = clock.timeout(input);
            let _ = Clock::timed(t, "PipeSender::send_bytes_timeout", || {
                b.tx.send_bytes_timeout(&msg, t)
            });
        }
    }
}
