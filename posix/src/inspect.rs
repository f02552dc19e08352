//! What a segment's object is doing, read without touching it: the
//! kind-specific part of `shmkit inspect`.
//!
//! [`describe`] takes a validated [`HeaderSnapshot`] and a [`PayloadView`]
//! and returns `(label, value)` lines: a lock's owner and whether it lives,
//! its waiters; a semaphore's permits; a barrier's parties and generation;
//! a queue's capacity, occupancy and attached producers and consumers; a
//! map's capacity, length and held writer locks.
//!
//! # Rules
//! - **Reads only.** The payload may be mapped read-only. Every access is an
//!   atomic load (through the core types' snapshot accessors, which only
//!   load, or through [`PayloadView`]); nothing locks, attaches, takes a
//!   dead owner's lock over or marks a dead role gone. Liveness checks ask
//!   the OS (an `fcntl` on the liveness file for a token; `kill(pid, 0)`
//!   and `/proc` for a task id), never the object.
//! - **Never waits**: no futex, no lock, no retry loop without a bound.
//! - **Hostile bytes.** The header's parameters (capacity, registry sizes,
//!   element size and alignment) and every index read from the payload are
//!   validated before they locate anything; a layout that does not fit the
//!   payload, or a state no honest peer can produce, prints as
//!   `corrupt: …`. Nothing here panics or reads outside the payload.
//!
//! The layouts come from the modules that define them (the core queues'
//! `QueueLayout`, `ring::payload_len_for` and `pipe::stride`,
//! [`LockedArray`](shmkit_core::sync::LockedArray)'s data offset, and the core types themselves), so
//! they cannot drift apart.
//!
//! ```
//! use shmkit_posix::inspect::{describe, PayloadView};
//! use shmkit_posix::sync::Semaphore;
//!
//! let sem = Semaphore::anonymous(shmkit_core::sync::Semaphore::bounded(3))?;
//! let _permit = sem.acquire();
//! let seg = sem.segment();
//! // SAFETY: the payload stays mapped while `sem` lives; peers write it
//! // only atomically.
//! let view = unsafe { PayloadView::new(seg.payload(), seg.payload_len()) };
//! let lines = describe(&seg.header(), &view).unwrap();
//! assert!(lines.contains(&("permits", "2 available, bound 3".to_string())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use shmkit_core::header::{type_hash, HeaderSnapshot, Kind, PAYLOAD_ALIGN};
use shmkit_core::map::{Format, Shape};
use shmkit_core::owner::Liveness;
use shmkit_core::queue::joinable::{join_layout, JoinControl};
use shmkit_core::queue::mpmc::{self, QueueControl, QueueLayout, QueueParams};
use shmkit_core::queue::msg::MsgParams;
use shmkit_core::queue::pipe::{self as pipe_layout, FRAME_HEADER};
use shmkit_core::queue::ring::{self as ring_layout, RingControl};
use shmkit_core::queue::roles::{Holder, RoleSlot};
use shmkit_core::queue::slots::SlotLayout;
use shmkit_core::queue::stamped::{self, StampedControl};
use shmkit_core::sync::barrier::MAX_PARTIES;
use shmkit_core::sync::{
    Barrier, Condvar, Event, MutexSnapshot, MutexState, RawMutex, ReentrantMutex, RwLock, Semaphore,
};

use shmkit_core::sync::locked::data_offset_for;

/// What [`describe`] returns: `(label, value)` lines, in display order.
pub type Lines = Vec<(&'static str, String)>;

/// How many elements of an array (or registered holders of a role) are
/// shown.
const SHOW: usize = 8;
/// How many bytes of undecodable data are shown, in hex.
const SHOW_BYTES: usize = 32;
/// Most pipe frames walked to count messages (each is at least 4 bytes,
/// so an honest walk is bounded by the capacity anyway).
const MAX_FRAMES: u64 = 1 << 20;
/// Most MPMC stamps scanned to count committed and claimed slots.
const MAX_STAMPS: usize = 1 << 16;
/// Attempts at reading a consistent `(head, tail)` pair of a busy queue.
const INDEX_TRIES: u32 = 64;

/// A read-only, bounds-checked view of a segment's payload.
///
/// Every read is an atomic load of an in-range, aligned location (or
/// `None`); nothing ever writes through it.
#[derive(Clone, Copy, Debug)]
pub struct PayloadView<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _bytes: PhantomData<&'a [AtomicU8]>,
}

/// Core objects made only of atomics (and `Pod` padding): any bytes are a
/// valid value, and a shared reference to one may coexist with atomic
/// writes from other processes.
///
/// # Safety
/// Implementors are `#[repr(C)]` and every field is an atomic, an
/// `UnsafeCell` of a zero-sized type, or plain padding-like `Pod` data.
unsafe trait AtomicsOnly {}

// SAFETY: each is a `#[repr(C)]` core type made of atomics; the generic
// ones are instantiated with `()`, whose `UnsafeCell<()>` is zero-sized.
unsafe impl AtomicsOnly for RawMutex {}
// SAFETY: as above.
unsafe impl AtomicsOnly for ReentrantMutex<()> {}
// SAFETY: as above.
unsafe impl AtomicsOnly for RwLock<()> {}
// SAFETY: as above.
unsafe impl AtomicsOnly for Semaphore {}
// SAFETY: as above.
unsafe impl AtomicsOnly for Event {}
// SAFETY: as above.
unsafe impl AtomicsOnly for Condvar {}
// SAFETY: as above.
unsafe impl AtomicsOnly for Barrier {}
// SAFETY: as above.
unsafe impl AtomicsOnly for RingControl {}
// SAFETY: as above.
unsafe impl AtomicsOnly for QueueControl {}
// SAFETY: as above (a count and a wait point, all `AtomicU32`).
unsafe impl AtomicsOnly for JoinControl {}
// SAFETY: as above.
unsafe impl AtomicsOnly for StampedControl {}
// SAFETY: as above (every field is an atomic word).
unsafe impl AtomicsOnly for RoleSlot {}

impl<'a> PayloadView<'a> {
    /// A view of the `len` bytes at `ptr`.
    ///
    /// # Safety
    /// - `len` bytes from `ptr` stay mapped and readable for `'a` (they may
    ///   be mapped read-only);
    /// - anything else that writes them (other processes included) writes
    ///   atomically, as shmkit's objects do, and nothing in this process
    ///   holds a `&mut` to them.
    #[must_use]
    pub unsafe fn new(ptr: NonNull<u8>, len: usize) -> PayloadView<'a> {
        PayloadView {
            ptr,
            len,
            _bytes: PhantomData,
        }
    }

    /// Payload length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `n` bytes at `off` are inside the payload and aligned to
    /// `align` (by address).
    fn fits(&self, off: usize, n: usize, align: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
            && (self.ptr.as_ptr() as usize).wrapping_add(off) % align == 0
    }

    /// The byte at `off` (relaxed atomic load), if in range.
    #[must_use]
    pub fn u8_at(&self, off: usize) -> Option<u8> {
        if !self.fits(off, 1, 1) {
            return None;
        }
        // SAFETY: in range (checked); `new`'s contract keeps it mapped for
        // 'a and written only atomically; a load never writes.
        Some(unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(off)) }.load(Ordering::Relaxed))
    }

    /// The u32 at `off` (relaxed atomic load), if aligned and in range.
    #[must_use]
    pub fn u32_at(&self, off: usize) -> Option<u32> {
        if !self.fits(off, 4, 4) {
            return None;
        }
        // SAFETY: as for `u8_at`, and 4-aligned (checked).
        Some(
            unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast()) }
                .load(Ordering::Relaxed),
        )
    }

    /// The u64 at `off` (relaxed atomic load), if aligned and in range.
    #[must_use]
    pub fn u64_at(&self, off: usize) -> Option<u64> {
        if !self.fits(off, 8, 8) {
            return None;
        }
        // SAFETY: as for `u8_at`, and 8-aligned (checked).
        Some(
            unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(off).cast()) }
                .load(Ordering::Relaxed),
        )
    }

    /// Up to `n` bytes from `off` (byte-wise relaxed loads), clipped to the
    /// payload.
    #[must_use]
    pub fn bytes(&self, off: usize, n: usize) -> Vec<u8> {
        let end = off.saturating_add(n).min(self.len);
        (off.min(end)..end).filter_map(|i| self.u8_at(i)).collect()
    }

    /// The core object at `off`, if it fits and is aligned.
    fn object<O: AtomicsOnly>(&self, off: usize) -> Option<&'a O> {
        if !self.fits(off, size_of::<O>(), align_of::<O>()) {
            return None;
        }
        // SAFETY: in range and aligned (checked), mapped for 'a (`new`);
        // `O` is made of atomics (AtomicsOnly), so any bytes are a valid
        // `O` and a shared reference may coexist with peers' atomic writes.
        // Callers only call loading methods on it (see the module rules).
        Some(unsafe { &*self.ptr.as_ptr().add(off).cast::<O>() })
    }
}

/// The kind-specific lines for a segment whose header `h` validated and
/// whose payload `p` is. `None` for kinds this module does not know (user
/// kinds).
#[must_use]
pub fn describe(h: &HeaderSnapshot, p: &PayloadView<'_>) -> Option<Lines> {
    let mut out = Lines::new();
    match h.kind {
        Kind::ARRAY | Kind::VALUE => array(h, p, &mut out),
        Kind::LOCKED_ARRAY | Kind::LOCKED_VALUE => locked(h, p, &mut out),
        Kind::MUTEX => mutex(h, p, &mut out),
        Kind::REENTRANT_MUTEX => reentrant(h, p, &mut out),
        Kind::RWLOCK => rwlock(h, p, &mut out),
        Kind::SEMAPHORE => semaphore(p, &mut out),
        Kind::EVENT => event(p, &mut out),
        Kind::CONDVAR => condvar(p, &mut out),
        Kind::BARRIER => barrier(p, &mut out),
        Kind::RING => ring(h, p, &mut out),
        Kind::QUEUE => queue(h, p, &mut out),
        Kind::PIPE => pipe(h, p, 1, &mut out),
        Kind::DUPLEX_PIPE => pipe(h, p, 2, &mut out),
        Kind::MAP | Kind::BYTE_MAP => map(h, p, &mut out),
        Kind::STAMPED_RING => stamped_ring(h, p, &mut out),
        Kind::MSG_QUEUE | Kind::JOINABLE_QUEUE => msg_queue(h, p, &mut out),
        _ => return None,
    }
    Some(out)
}

fn corrupt(out: &mut Lines, label: &'static str, why: impl std::fmt::Display) {
    out.push((label, format!("corrupt: {why}")));
}

/// The object `O` at the start of the payload, or a `corrupt` line.
fn object_or_report<'a, O: AtomicsOnly>(
    p: &PayloadView<'a>,
    what: &str,
    out: &mut Lines,
) -> Option<&'a O> {
    let o = p.object::<O>(0);
    if o.is_none() {
        corrupt(
            out,
            "layout",
            format!(
                "a {what} needs {} payload bytes, the payload has {}",
                size_of::<O>(),
                p.len()
            ),
        );
    }
    o
}

/// The element alignment recorded in the header, if it is a possible one.
fn element_align(h: &HeaderSnapshot, out: &mut Lines) -> Option<usize> {
    let align = usize::try_from(h.fingerprint.align).unwrap_or(0);
    if align.is_power_of_two() && align <= PAYLOAD_ALIGN {
        Some(align)
    } else {
        corrupt(
            out,
            "layout",
            format!(
                "element alignment {} is not a power of two up to {PAYLOAD_ALIGN}",
                h.fingerprint.align
            ),
        );
        None
    }
}

// ------------------------------------------------------------ arrays, data

fn array(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    elements(h, p, 0, out);
}

/// `params[0]` elements of `fingerprint.size` bytes from `off`: their
/// count, then the first few decoded when the type is a primitive number.
fn elements(h: &HeaderSnapshot, p: &PayloadView<'_>, off: usize, out: &mut Lines) {
    let len = h.fingerprint.params[0];
    let size = h.fingerprint.size;
    out.push(("length", format!("{len} element(s) of {size} byte(s)")));
    let room = p.len().saturating_sub(off) as u64;
    if len.checked_mul(size).is_none_or(|total| total > room) {
        corrupt(out, "elements", "length × size exceeds the payload");
        return;
    }
    // Both fit in the payload, hence in usize.
    let (size, n) = (size as usize, len.min(SHOW as u64) as usize);
    let ty = h.type_name();
    let shown: Vec<String> = (0..n)
        .map(|i| {
            let b = p.bytes(off + i * size, size);
            decode(ty, &b).unwrap_or_else(|| hex(&b))
        })
        .collect();
    let more = if (n as u64) < len { ", …" } else { "" };
    out.push(("elements", format!("[{}{more}]", shown.join(", "))));
}

/// A lock's protected data at `off` (to the end of the payload), typed by
/// the lock's type name (`…Mutex<T>`): decoded if `T` is a primitive
/// number, else its first bytes in hex.
fn lock_data(h: &HeaderSnapshot, p: &PayloadView<'_>, off: usize, out: &mut Lines) {
    let room = p.len().saturating_sub(off);
    let inner = inner_type(h.type_name());
    let value = inner
        .and_then(|ty| {
            let size = primitive_size(ty)?;
            if size > room {
                return None;
            }
            decode(ty, &p.bytes(off, size)).map(|v| format!("{v} ({ty})"))
        })
        .unwrap_or_else(|| {
            let b = p.bytes(off, room.min(SHOW_BYTES));
            let more = if room > SHOW_BYTES { "…" } else { "" };
            format!(
                "{room} byte(s) of {}: {}{more}",
                inner.unwrap_or("?"),
                hex(&b)
            )
        });
    out.push(("data", format!("{value}, read without the lock")));
}

/// `T` of a type name `path::Wrapper<T>`, if the name is complete.
fn inner_type(name: &str) -> Option<&str> {
    let open = name.find('<')?;
    name.strip_suffix('>').map(|s| &s[open + 1..])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn primitive_size(ty: &str) -> Option<usize> {
    Some(match ty {
        "u8" | "i8" => 1,
        "u16" | "i16" => 2,
        "u32" | "i32" | "f32" => 4,
        "u64" | "i64" | "f64" => 8,
        "usize" | "isize" => size_of::<usize>(),
        _ => return None,
    })
}

fn decode(ty: &str, b: &[u8]) -> Option<String> {
    macro_rules! num {
        ($t:ty) => {
            <[u8; size_of::<$t>()]>::try_from(b)
                .ok()
                .map(|a| <$t>::from_ne_bytes(a).to_string())
        };
    }
    match ty {
        "u8" => num!(u8),
        "u16" => num!(u16),
        "u32" => num!(u32),
        "u64" => num!(u64),
        "i8" => num!(i8),
        "i16" => num!(i16),
        "i32" => num!(i32),
        "i64" => num!(i64),
        "f32" => num!(f32),
        "f64" => num!(f64),
        "usize" => num!(usize),
        "isize" => num!(isize),
        _ => None,
    }
}

// ------------------------------------------------------------------ locks

/// `tid N` (or `pid N` when the thread leads its process, or `tid N of pid
/// P`), from `/proc`.
fn task(tid: u32) -> String {
    let tgid = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        });
    match tgid {
        Some(pid) if pid == tid => format!("pid {tid}"),
        Some(pid) => format!("tid {tid} of pid {pid}"),
        None => format!("tid {tid}"),
    }
}

/// Who holds a lock: its thread (from `/proc` while it lives), or for a
/// liveness token whose holder recorded no thread id, the token and the
/// process holding it (found through `/proc/*/fdinfo`).
fn holder(owner: u32, tid: Option<u32>, liveness: Liveness) -> String {
    match (tid, liveness) {
        (Some(t), Liveness::Dead) => format!("tid {t}"),
        (Some(t), _) => task(t),
        (None, Liveness::Dead) => format!("token {owner:#x}"),
        (None, _) => match shmkit_core::owner::token_holder_pid(owner) {
            Some(pid) => format!("pid {pid} (token {owner:#x})"),
            None => format!("token {owner:#x}"),
        },
    }
}

fn owner_text(state: &MutexState) -> String {
    match *state {
        MutexState::Unlocked | MutexState::NotRecoverable => "none".to_string(),
        MutexState::Held {
            owner,
            tid,
            liveness,
            id_reused,
        } => {
            let who = holder(owner, tid, liveness);
            match liveness {
                Liveness::Alive => format!("{who}, alive"),
                Liveness::Unknown => format!("{who}, liveness unknown"),
                Liveness::Dead if id_reused => format!(
                    "{who}, dead: the owner died holding the lock and its id now names a newer task; the next locker poisons it (OwnerDied)"
                ),
                Liveness::Dead => format!(
                    "{who}, dead: the owner died holding the lock; the next locker poisons it (OwnerDied)"
                ),
            }
        }
    }
}

/// `lock`, `owner`, `waiters` lines for a lock word (`lock` labelled
/// `label`).
fn lock_lines(label: &'static str, s: &MutexSnapshot, out: &mut Lines) {
    let state = match s.state {
        MutexState::Unlocked => "unlocked",
        MutexState::Held { .. } => "held",
        MutexState::NotRecoverable => {
            "NOT RECOVERABLE: a recoverer unlocked without mark_consistent(); recreate the object"
        }
    };
    out.push((label, format!("{state} (word {:#010x})", s.word)));
    out.push(("owner", owner_text(&s.state)));
    out.push((
        "waiters",
        if s.waiters {
            "yes (the WAITERS bit: a locker may be asleep)".to_string()
        } else {
            "none".to_string()
        },
    ));
    if s.spinner {
        out.push((
            "spinner",
            "yes (the SPINNER bit: a locker spins for the lock, or the last unlock reserved it for one)"
                .to_string(),
        ));
    }
    if s.poisoned {
        out.push((
            "poisoned",
            "yes: a holder died; lock() answers OwnerDied until a recover() guard repairs the data and calls mark_consistent()"
                .to_string(),
        ));
    }
    if let Some(why) = s.impossible {
        corrupt(out, "lock word", why);
    }
}

fn mutex(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    let Some(m) = object_or_report::<RawMutex>(p, "mutex", out) else {
        return;
    };
    lock_lines("lock", &m.snapshot(), out);
    // RawMutex and Mutex<T> share the kind: the type tells them apart.
    if h.fingerprint.type_hash == type_hash::<RawMutex>() {
        return;
    }
    // Mutex<T> is `#[repr(C)] { raw: RawMutex, data: T }`; the recorded
    // alignment is Mutex<T>'s, max(8, align_of::<T>()), which puts the
    // data where T's own alignment does.
    if let Some(align) = element_align(h, out) {
        lock_data(h, p, size_of::<RawMutex>().next_multiple_of(align), out);
    }
}

fn reentrant(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    // `#[repr(C)]` with the data last: the head of a ReentrantMutex<T> is
    // that of a ReentrantMutex<()>, whatever T is.
    let Some(m) = object_or_report::<ReentrantMutex<()>>(p, "reentrant mutex", out) else {
        return;
    };
    let s = m.snapshot();
    lock_lines("lock", &s.lock, out);
    if matches!(s.lock.state, MutexState::Held { .. }) {
        out.push(("depth", format!("{} (times the owner locked it)", s.count)));
        if s.inconsistent {
            out.push((
                "consistent",
                "no: taken over from a dead owner, not yet marked consistent".to_string(),
            ));
        }
    }
    if let Some(align) = element_align(h, out) {
        lock_data(
            h,
            p,
            size_of::<ReentrantMutex<()>>().next_multiple_of(align),
            out,
        );
    }
}

fn rwlock(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    // As for `reentrant`: the head does not depend on T.
    let Some(l) = object_or_report::<RwLock<()>>(p, "readers/writer lock", out) else {
        return;
    };
    let s = l.snapshot();
    lock_lines("writer lock", &s.writer, out);
    out.push((
        "readers",
        format!(
            "{} inside (a reader that died holding a read lock stays counted)",
            s.readers
        ),
    ));
    out.push((
        "consistent",
        if s.inconsistent {
            "no: a writer died holding the lock; the next writer must repair the data and mark_consistent()".to_string()
        } else {
            "yes".to_string()
        },
    ));
    if let Some(align) = element_align(h, out) {
        lock_data(h, p, size_of::<RwLock<()>>().next_multiple_of(align), out);
    }
}

fn locked(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    let Some(m) = object_or_report::<RawMutex>(p, "locked array", out) else {
        return;
    };
    lock_lines("lock", &m.snapshot(), out);
    if let Some(align) = element_align(h, out) {
        elements(h, p, data_offset_for(align), out);
    }
}

fn semaphore(p: &PayloadView<'_>, out: &mut Lines) {
    let Some(s) = object_or_report::<Semaphore>(p, "semaphore", out) else {
        return;
    };
    let (count, bound) = (s.available(), s.bound());
    if bound == 0 {
        corrupt(
            out,
            "permits",
            format!("bound 0 ({count} available): never initialised, every release fails"),
        );
    } else if count > bound {
        corrupt(
            out,
            "permits",
            format!("{count} available exceed the bound {bound}"),
        );
    } else if bound == u32::MAX {
        out.push(("permits", format!("{count} available, unbounded")));
    } else {
        out.push(("permits", format!("{count} available, bound {bound}")));
    }
    out.push((
        "sleepers",
        format!("{} (acquirers that may be asleep)", s.sleepers()),
    ));
}

fn event(p: &PayloadView<'_>, out: &mut Lines) {
    let Some(e) = object_or_report::<Event>(p, "event", out) else {
        return;
    };
    let w = e.raw_word();
    out.push((
        "event",
        if w & shmkit_core::sync::event::SET != 0 {
            "set"
        } else {
            "clear"
        }
        .to_string(),
    ));
    out.push((
        "waiters",
        if w & shmkit_core::sync::event::WAITERS != 0 {
            "yes (the WAITERS bit: a waiter may be asleep)"
        } else {
            "none"
        }
        .to_string(),
    ));
    // Every bit pattern is honest: the bits above the two flags count sets.
    out.push((
        "generation",
        format!(
            "{} (set flags cleared so far, 30 bits, wrapping)",
            e.generation()
        ),
    ));
}

fn condvar(p: &PayloadView<'_>, out: &mut Lines) {
    let Some(c) = object_or_report::<Condvar>(p, "condition variable", out) else {
        return;
    };
    out.push((
        "sleepers",
        format!("{} (waiters that may be asleep)", c.sleepers()),
    ));
    out.push((
        "sequence",
        format!("{} (notifies so far, wrapping)", c.sequence()),
    ));
}

fn barrier(p: &PayloadView<'_>, out: &mut Lines) {
    let Some(b) = object_or_report::<Barrier>(p, "barrier", out) else {
        return;
    };
    let parties = b.parties();
    let valid = (1..=MAX_PARTIES).contains(&parties);
    if valid {
        out.push(("parties", parties.to_string()));
    } else {
        corrupt(
            out,
            "parties",
            format!("{parties} (must be 1..={MAX_PARTIES}): every wait fails"),
        );
    }
    out.push((
        "generation",
        format!("{} (rounds completed, 15 bits, wrapping)", b.generation()),
    ));
    let waiting = b.n_waiting();
    if valid && waiting > parties {
        corrupt(
            out,
            "waiting",
            format!("{waiting} arrived of {parties} parties: the next wait breaks the barrier"),
        );
    } else if valid && waiting == parties {
        out.push((
            "waiting",
            format!("all {parties} arrived: the last runs its action (wait_with) before the round passes"),
        ));
    } else {
        out.push((
            "waiting",
            format!("{waiting} of {parties} arrived this round"),
        ));
    }
    if let Some(t) = b.default_timeout() {
        out.push(("timeout", format!("{t:?} (of wait() and wait_with())")));
    }
    out.push((
        "broken",
        if b.is_broken() {
            "yes: a timeout, abort(), or a dead party broke it; reset() it".to_string()
        } else {
            "no".to_string()
        },
    ));
    let mut tracked = 0;
    for party in b.tracked_parties() {
        tracked += 1;
        let arrived = if party.arrived {
            "arrived"
        } else {
            "not arrived"
        };
        let dead = if party.dead && !party.arrived {
            "dead (breaks the barrier at the next waiter's liveness check)"
        } else if party.dead {
            "dead"
        } else {
            "alive"
        };
        out.push(("party", format!("{}, {dead}, {arrived}", task(party.tid))));
    }
    if tracked == 0 {
        out.push(("party", "none registered yet".to_string()));
    }
}

// ----------------------------------------------------------------- queues

fn role_text(slot: &RoleSlot) -> String {
    let text = role_holder_text(slot);
    match (slot.holder(), slot.raw_presence()) {
        (Holder::Never | Holder::Gone, _) | (_, 0) => text,
        (_, shmkit_core::queue::roles::DETACHING) => format!("{text}; its last copy is detaching"),
        (_, p) => format!(
            "{text}; handle shared across fork (presence token {p:#x}: held while any copy is open)"
        ),
    }
}

fn role_holder_text(slot: &RoleSlot) -> String {
    match slot.holder() {
        Holder::Never => "none (never attached)".to_string(),
        Holder::Gone => "none (detached)".to_string(),
        Holder::Alive(pid) => format!("pid {pid}, alive"),
        Holder::Dead(0) if slot.raw() & shmkit_core::owner::ID_MASK == 0 => format!(
            "corrupt: holder word {:#010x} names no process (reads as a dead holder)",
            slot.raw()
        ),
        Holder::Dead(0) => {
            "dead, killed while attaching (a new one may take the role over)".to_string()
        }
        Holder::Dead(pid) => {
            format!("pid {pid}, dead (died attached; a new one may take the role over)")
        }
    }
}

/// A consistent `(head, tail)` pair: `tail` read between two equal reads
/// of `head`, so at that instant the head was what we report. `None` if
/// the indices kept moving.
fn stable_pair<T: PartialEq + Copy>(head: impl Fn() -> T, tail: impl Fn() -> T) -> Option<(T, T)> {
    (0..INDEX_TRIES).find_map(|_| {
        let h1 = head();
        let t = tail();
        (head() == h1).then_some((h1, t))
    })
}

/// The `capacity` line and, if possible, the validated capacity.
fn capacity(
    h: &HeaderSnapshot,
    p: &PayloadView<'_>,
    payload_for: impl Fn(usize) -> Option<usize>,
    unit: &str,
    out: &mut Lines,
) -> Option<usize> {
    let raw = h.fingerprint.params[0];
    let cap = usize::try_from(raw).ok();
    match cap.and_then(|c| Some((c, payload_for(c)?))) {
        Some((c, need)) if need as u64 == h.payload_len && need <= p.len() => {
            out.push(("capacity", format!("{c} {unit}")));
            Some(c)
        }
        Some((c, need)) => {
            corrupt(
                out,
                "capacity",
                format!(
                    "{c} {unit} need a {need}-byte payload, the header says {}",
                    h.payload_len
                ),
            );
            None
        }
        None => {
            corrupt(
                out,
                "capacity",
                format!("{raw} is impossible for this kind (or for the element size {} and alignment {})", h.fingerprint.size, h.fingerprint.align),
            );
            None
        }
    }
}

fn ring(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    let size = usize::try_from(h.fingerprint.size).unwrap_or(usize::MAX);
    let align = usize::try_from(h.fingerprint.align).unwrap_or(0);
    let unit = format!("slot(s) of {size} byte(s)");
    let Some(cap) = capacity(
        h,
        p,
        |c| ring_layout::payload_len_for(c, size, align).ok(),
        &unit,
        out,
    ) else {
        return;
    };
    let Some(ctl) = object_or_report::<RingControl>(p, "ring", out) else {
        return;
    };
    let (head, tail) = ctl.raw_indices();
    // Acquire: keeps the three loads in program order (see `stable_pair`).
    match stable_pair(
        || head.load(Ordering::Acquire),
        || tail.load(Ordering::Acquire),
    ) {
        Some((hd, tl)) => {
            let n = tl.wrapping_sub(hd);
            if n as usize > cap {
                corrupt(
                    out,
                    "occupancy",
                    format!("tail - head = {n} exceeds the capacity {cap} (head {hd}, tail {tl})"),
                );
            } else {
                out.push(("occupancy", format!("{n} of {cap} (head {hd}, tail {tl})")));
            }
        }
        None => out.push(("occupancy", "changing too fast to read".to_string())),
    }
    out.push(("producer", role_text(ctl.producer_slot())));
    out.push(("consumer", role_text(ctl.consumer_slot())));
}

/// `n attached, of m slot(s): pid … (alive), …` for a role registry.
fn registry_text(slots: &[&RoleSlot]) -> String {
    let (mut alive, mut dead) = (0, 0);
    let mut shown = Vec::new();
    for slot in slots {
        let text = match slot.holder() {
            Holder::Never | Holder::Gone => continue,
            Holder::Alive(pid) => {
                alive += 1;
                format!("pid {pid} (alive)")
            }
            Holder::Dead(pid) => {
                dead += 1;
                format!("pid {pid} (dead)")
            }
        };
        if shown.len() < SHOW {
            shown.push(text);
        } else if shown.len() == SHOW {
            shown.push("…".to_string());
        }
    }
    let mut s = format!("{alive} attached");
    if dead > 0 {
        s.push_str(&format!(", {dead} dead"));
    }
    s.push_str(&format!(", of {} slot(s)", slots.len()));
    if !shown.is_empty() {
        s.push_str(": ");
        s.push_str(&shown.join(", "));
    }
    s
}

fn queue(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    let [cap, roles] = h.fingerprint.params;
    let (producers, consumers) = ((roles >> 32) & 0x7fff_ffff, roles & 0xffff_ffff);
    let layout = QueueParams::decode(h.fingerprint.params).and_then(|params| {
        QueueLayout::new(
            &params,
            usize::try_from(h.fingerprint.size).unwrap_or(usize::MAX),
            usize::try_from(h.fingerprint.align).unwrap_or(0),
        )
    });
    let l = match layout {
        Ok(l) if l.len as u64 == h.payload_len && l.len <= p.len() => l,
        Ok(l) => {
            corrupt(
                out,
                "layout",
                format!(
                    "capacity {cap} with {producers} producer and {consumers} consumer slots needs a {}-byte payload, the header says {}",
                    l.len, h.payload_len
                ),
            );
            return;
        }
        Err(e) => {
            corrupt(
                out,
                "layout",
                format!(
                    "capacity {cap} with {producers} producer and {consumers} consumer slots (element size {}, alignment {}) is impossible: {e}",
                    h.fingerprint.size, h.fingerprint.align
                ),
            );
            return;
        }
    };
    out.push((
        "capacity",
        format!(
            "{} slot(s) of {} byte(s)",
            l.params.capacity, h.fingerprint.size
        ),
    ));
    queue_state(p, &l, None, out);
}

/// The lines of an MPMC queue laid out as `l` (its slots, positions and
/// registries), shared by the `Pod` queue and the byte-message queues
/// (`max_len`: a slot's first value word is its message's length).
fn queue_state(p: &PayloadView<'_>, l: &QueueLayout, max_len: Option<usize>, out: &mut Lines) {
    let capacity = l.params.capacity;
    let Some(ctl) = object_or_report::<QueueControl>(p, "queue", out) else {
        return;
    };
    // The stamps are the truth; the hints only say roughly where.
    let (mut full, mut claimed, mut bad, mut long) = (0usize, 0usize, 0usize, 0usize);
    for i in 0..capacity.min(MAX_STAMPS) {
        match p.u64_at(l.stamp_at(i)).map(mpmc::decode) {
            Some((_, 0, mpmc::EMPTY)) => {}
            Some((_, 0, mpmc::FULL)) => {
                full += 1;
                let len_at = l.stamp_at(i) + 8 * l.slot.value_word;
                if let (Some(max), Some(len)) = (max_len, p.u64_at(len_at)) {
                    long += usize::from(len > max as u64);
                }
            }
            // A claim names a producer entry, or no producer any more.
            Some((_, who, mpmc::CLAIMED))
                if who < l.params.producers as u64 || who == mpmc::ORPHAN =>
            {
                claimed += 1;
            }
            _ => bad += 1,
        }
    }
    let committed = if capacity <= MAX_STAMPS {
        format!("{full} committed, ")
    } else {
        String::new()
    };
    let (head, tail) = ctl.raw_positions();
    // Acquire: keeps the three loads in program order (see `stable_pair`).
    match stable_pair(
        || head.load(Ordering::Acquire),
        || tail.load(Ordering::Acquire),
    ) {
        Some((hd, tl)) if hd <= tl && tl - hd <= capacity as u64 => out.push((
            "occupancy",
            format!(
                "{} of {capacity} ({committed}head {hd}, tail {tl})",
                tl - hd
            ),
        )),
        // The positions are hints that lag (a consumer's store may land
        // after a producer's): out of step is not corrupt by itself.
        Some((hd, tl)) => out.push((
            "occupancy",
            format!("{committed}position hints out of step (head {hd}, tail {tl})"),
        )),
        None => out.push(("occupancy", "changing too fast to read".to_string())),
    }
    out.push((
        "in flight",
        format!("{claimed} push(es) claimed a slot and not yet committed"),
    ));
    if bad > 0 {
        corrupt(
            out,
            "stamps",
            format!("{bad} slot stamp(s) hold no possible state"),
        );
    }
    if long > 0 {
        corrupt(
            out,
            "lengths",
            format!(
                "{long} committed message(s) longer than max_len {}",
                max_len.unwrap_or(0)
            ),
        );
    }
    let slots = |at: usize, n: usize| -> Vec<&RoleSlot> {
        (0..n)
            .filter_map(|i| p.object::<RoleSlot>(at + size_of::<RoleSlot>() * i))
            .collect()
    };
    out.push((
        "producers",
        registry_text(&slots(l.producers_at, l.params.producers)),
    ));
    out.push((
        "consumers",
        registry_text(&slots(l.consumers_at, l.params.consumers)),
    ));
}

/// A byte-message queue, and a joinable queue's unfinished count.
fn msg_queue(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    let joinable = h.kind == Kind::JOINABLE_QUEUE;
    let checked = MsgParams::decode(h.fingerprint.params).and_then(|params| {
        let len = if joinable {
            join_layout(&params)?.1
        } else {
            params.layout()?.len
        };
        Ok((params, len))
    });
    let params = match checked {
        Ok((params, len)) if len as u64 == h.payload_len && len <= p.len() => params,
        Ok((params, len)) => {
            corrupt(
                out,
                "layout",
                format!(
                    "{params:?} needs a {len}-byte payload, the header says {}",
                    h.payload_len
                ),
            );
            return;
        }
        Err(e) => {
            corrupt(
                out,
                "layout",
                format!(
                    "parameter words {:#x?} are impossible: {e}",
                    h.fingerprint.params
                ),
            );
            return;
        }
    };
    let Ok(l) = params.layout() else {
        return;
    };
    out.push((
        "capacity",
        format!(
            "{} slot(s) of messages up to {} byte(s)",
            params.capacity, params.max_len
        ),
    ));
    queue_state(p, &l, Some(params.max_len), out);
    if joinable {
        let at = join_layout(&params).map(|(at, _)| at).unwrap_or(usize::MAX);
        match p.object::<JoinControl>(at) {
            Some(j) => out.push((
                "unfinished",
                format!("{} task(s) sent and not yet marked done", j.unfinished()),
            )),
            None => corrupt(out, "unfinished", "the count lies outside the payload"),
        }
    }
}

fn stamped_ring(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    let size = usize::try_from(h.fingerprint.size).unwrap_or(usize::MAX);
    let align = usize::try_from(h.fingerprint.align).unwrap_or(0);
    let unit = format!("slot(s) of {size} byte(s)");
    let Some(cap) = capacity(
        h,
        p,
        |c| stamped::payload_len_for(c, size, align).ok(),
        &unit,
        out,
    ) else {
        return;
    };
    let Some(ctl) = object_or_report::<StampedControl>(p, "ring", out) else {
        return;
    };
    // `capacity` validated the element, so the slot layout exists.
    if let Ok(slot) = SlotLayout::for_element(size, align) {
        let at = stamped::slots_at(align);
        let (mut full, mut bad) = (0usize, 0usize);
        for i in 0..cap.min(MAX_STAMPS) {
            match p.u64_at(at + i * slot.stride_bytes()).map(mpmc::decode) {
                Some((_, 0, mpmc::EMPTY)) => {}
                Some((_, 0, mpmc::FULL)) => full += 1,
                _ => bad += 1,
            }
        }
        let scanned = if cap > MAX_STAMPS {
            format!(" in the first {MAX_STAMPS} slots")
        } else {
            String::new()
        };
        out.push(("occupancy", format!("{full} of {cap} committed{scanned}")));
        if bad > 0 {
            corrupt(
                out,
                "stamps",
                format!("{bad} slot stamp(s) hold no possible state"),
            );
        }
    }
    out.push(("producer", role_text(ctl.producer_slot())));
    out.push(("consumer", role_text(ctl.consumer_slot())));
}

/// Messages framed between `head` and `tail` of the byte ring whose bytes
/// start at `data`: `(messages, complete)` (`complete` false if the walk
/// stopped at [`MAX_FRAMES`]), or why the framing is impossible.
fn frames(
    p: &PayloadView<'_>,
    data: usize,
    cap: usize,
    head: u32,
    tail: u32,
) -> Result<(u64, bool), String> {
    let mask = cap - 1;
    let max = cap - FRAME_HEADER;
    let byte = |pos: u32| p.u8_at(data + (pos as usize & mask)).unwrap_or(0);
    let mut pos = head;
    let mut n = 0;
    while pos != tail {
        if n == MAX_FRAMES {
            return Ok((n, false));
        }
        let left = tail.wrapping_sub(pos) as usize;
        if left < FRAME_HEADER {
            return Err(format!(
                "{left} published byte(s) at {pos} cannot hold a frame header"
            ));
        }
        let len = u32::from_le_bytes(std::array::from_fn(|i| byte(pos.wrapping_add(i as u32))));
        let len = len as usize;
        if len > max {
            return Err(format!(
                "a {len}-byte message at {pos} exceeds the largest possible, {max}"
            ));
        }
        if FRAME_HEADER + len > left {
            return Err(format!(
                "a {len}-byte message at {pos} runs past the published tail"
            ));
        }
        // Both fit in the capacity (<= 2^31).
        pos = pos.wrapping_add((FRAME_HEADER + len) as u32);
        n += 1;
    }
    Ok((n, true))
}

fn pipe(h: &HeaderSnapshot, p: &PayloadView<'_>, rings: usize, out: &mut Lines) {
    let unit = "bytes per direction";
    let Some(cap) = capacity(
        h,
        p,
        |c| pipe_layout::payload_len_for(c, rings).ok(),
        unit,
        out,
    ) else {
        return;
    };
    out.push((
        "messages",
        format!("up to {} bytes each", cap - FRAME_HEADER),
    ));
    let labels: &[[&'static str; 3]] = if rings == 1 {
        &[["pending", "sender", "receiver"]]
    } else {
        &[
            ["0→1 pending", "0→1 sender", "0→1 receiver"],
            ["1→0 pending", "1→0 sender", "1→0 receiver"],
        ]
    };
    for (i, [pending, sender, receiver]) in labels.iter().copied().enumerate() {
        let at = i * pipe_layout::stride(cap);
        let Some(ctl) = p.object::<RingControl>(at) else {
            corrupt(out, pending, "the ring is outside the payload");
            continue;
        };
        let (head, tail) = ctl.raw_indices();
        // Acquire: keeps the loads in program order (see `stable_pair`).
        match stable_pair(
            || head.load(Ordering::Acquire),
            || tail.load(Ordering::Acquire),
        ) {
            Some((hd, tl)) if tl.wrapping_sub(hd) as usize <= cap => {
                let bytes = tl.wrapping_sub(hd);
                match frames(p, at + ring_layout::CONTROL_LEN, cap, hd, tl) {
                    Ok((n, complete)) => out.push((
                        pending,
                        format!(
                            "{}{n} message(s), {bytes} byte(s) (head {hd}, tail {tl})",
                            if complete { "" } else { "at least " }
                        ),
                    )),
                    Err(why) => corrupt(
                        out,
                        pending,
                        format!("{why} ({bytes} byte(s) published, head {hd}, tail {tl})"),
                    ),
                }
            }
            Some((hd, tl)) => corrupt(
                out,
                pending,
                format!(
                    "tail - head = {} exceeds the capacity {cap} (head {hd}, tail {tl})",
                    tl.wrapping_sub(hd)
                ),
            ),
            None => out.push((pending, "changing too fast to read".to_string())),
        }
        out.push((sender, role_text(ctl.producer_slot())));
        out.push((receiver, role_text(ctl.consumer_slot())));
    }
}

// ------------------------------------------------------------------- maps

/// A map: its capacity and layout, length (the per-stripe counts), a clear
/// under way, the writer locks held (one per stripe) and the repairs made.
/// The layout comes from `shmkit_core::map::Shape` of the header's
/// parameters, checked against the payload length.
fn map(h: &HeaderSnapshot, p: &PayloadView<'_>, out: &mut Lines) {
    let [cap, sizes] = h.fingerprint.params;
    let (k, v) = ((sizes >> 32) as usize, (sizes & 0xffff_ffff) as usize);
    let (key, value) = if h.kind == Kind::MAP {
        (Format::Fixed(k), Format::Fixed(v))
    } else {
        (Format::Bytes(k), Format::Bytes(v))
    };
    let shape = match usize::try_from(cap).ok().map(|c| Shape::new(c, key, value)) {
        Some(Ok(s)) if s.payload_len() as u64 == h.payload_len && s.payload_len() <= p.len() => s,
        Some(Ok(s)) => {
            corrupt(
                out,
                "layout",
                format!(
                    "a map of {cap} entries needs a {}-byte payload, the header says {}",
                    s.payload_len(),
                    h.payload_len
                ),
            );
            return;
        }
        Some(Err(e)) => {
            return corrupt(
                out,
                "layout",
                format!("capacity {cap}, keys {k}, values {v}: {e}"),
            )
        }
        None => {
            return corrupt(
                out,
                "layout",
                format!("capacity {cap} does not fit in memory"),
            )
        }
    };
    out.push((
        "capacity",
        format!(
            "{cap} entries ({} buckets of {} bytes, {} writer lock(s))",
            shape.buckets(),
            shape.bucket_bytes(),
            shape.stripes()
        ),
    ));
    out.push((
        "entries",
        match (key, value) {
            (Format::Bytes(k), Format::Bytes(v)) => {
                format!("keys up to {k} bytes, values up to {v} bytes")
            }
            _ => format!("{k}-byte keys, {v}-byte values"),
        },
    ));
    let len = (0..shape.stripes())
        .filter_map(|i| p.u32_at(shape.count_offset(i)))
        .fold(0u64, |acc, c| acc.saturating_add(u64::from(c)));
    // Inserts racing in different stripes may overshoot by one a stripe.
    if len > (shape.capacity() + shape.stripes()) as u64 {
        corrupt(
            out,
            "length",
            format!("{len} entries counted, more than the capacity {cap}"),
        );
    } else {
        out.push(("length", format!("{len} of {cap} (read without the locks)")));
    }
    if p.u32_at(shape.epoch_offset()).is_some_and(|e| e & 1 != 0) {
        out.push((
            "clear",
            "under way, or its clearer died (readers see an empty map; the next writer finishes it)".to_string(),
        ));
    }
    let mut held = Vec::new();
    for i in 0..shape.stripes() {
        let Some(lock) = p.object::<RawMutex>(shape.stripe_offset(i)) else {
            corrupt(
                out,
                "writer lock",
                format!("stripe {i} is outside the payload"),
            );
            return;
        };
        let s = lock.snapshot();
        match s.state {
            MutexState::Unlocked => {}
            MutexState::Held { .. } => held.push((i, owner_text(&s.state))),
            MutexState::NotRecoverable => corrupt(
                out,
                "writer lock",
                format!("stripe {i}'s lock is not recoverable (a peer overwrote its word)"),
            ),
        }
    }
    out.push((
        "locks",
        format!(
            "{} of {} writer lock(s) held",
            if held.is_empty() {
                "none".to_string()
            } else {
                held.len().to_string()
            },
            shape.stripes()
        ),
    ));
    for (i, owner) in held.iter().take(SHOW) {
        out.push(("writer lock", format!("stripe {i}: {owner}")));
    }
    if held.len() > SHOW {
        out.push(("writer lock", "…".to_string()));
    }
    if let Some(r) = p.u32_at(shape.repairs_offset()) {
        out.push((
            "repairs",
            format!("{r} (stripes repaired after a writer died holding their lock)"),
        ));
    }
}
