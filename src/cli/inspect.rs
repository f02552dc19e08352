//! Kind-specific state for `shmkit inspect`: one small hook per kind.
//!
//! A hook gets the validated header and a read-only [`Payload`] whose
//! length the header check guaranteed to be mapped, and returns
//! `(label, value)` lines. Hooks must treat every byte as hostile: read
//! through [`Payload`]'s bounds-checked accessors, validate before
//! interpreting, and never wait on anything (the mapping is read-only, so
//! they cannot take a lock anyway).
//!
//! To add a kind, write `fn mutex(h: &HeaderSnapshot, p: &Payload) -> Lines`
//! (e.g. owner pid + liveness, waiter count) and add its arm to [`details`].

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shmkit::core::header::{HeaderSnapshot, Kind, HEADER_LEN};

use super::segments::Mapping;

/// Lines a hook returns.
pub type Lines = Vec<(&'static str, String)>;

/// The payload of a mapped, header-validated segment, read-only.
pub struct Payload<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _map: &'a Mapping,
}

impl<'a> Payload<'a> {
    /// The payload of `map` as described by `h` (already validated against
    /// the mapping's length); `None` if it does not fit after all.
    pub fn new(map: &'a Mapping, h: &HeaderSnapshot) -> Option<Payload<'a>> {
        let len = usize::try_from(h.payload_len).ok()?;
        if HEADER_LEN.checked_add(len)? > map.len() {
            return None;
        }
        // SAFETY: HEADER_LEN <= map.len(), so the offset stays in the mapping.
        let ptr = unsafe { map.base().add(HEADER_LEN) };
        Some(Payload {
            ptr,
            len,
            _map: map,
        })
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The u32 at byte `off` (relaxed atomic load), if aligned and in range.
    #[allow(dead_code)] // for the lock/queue hooks the integrator adds
    pub fn u32_at(&self, off: usize) -> Option<u32> {
        if off % 4 != 0 || off.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: in range and 4-aligned (checked; the payload is
        // 128-aligned); the mapping lives for 'a; an atomic load only reads,
        // so it is fine on a read-only mapping peers write concurrently.
        Some(
            unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast()) }
                .load(Ordering::Relaxed),
        )
    }

    /// The u64 at byte `off` (relaxed atomic load), if aligned and in range.
    #[allow(dead_code)] // for the lock/queue hooks the integrator adds
    pub fn u64_at(&self, off: usize) -> Option<u64> {
        if off % 8 != 0 || off.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: as for `u32_at`, 8-aligned.
        Some(
            unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(off).cast()) }
                .load(Ordering::Relaxed),
        )
    }

    /// Up to `n` bytes from `off` (volatile copies), clipped to the payload.
    pub fn bytes(&self, off: usize, n: usize) -> Vec<u8> {
        let end = off.saturating_add(n).min(self.len);
        (off.min(end)..end)
            // SAFETY: `i < len`, inside the mapping; a volatile byte read
            // never forms a reference to memory peers may write.
            .map(|i| unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(i)) })
            .collect()
    }
}

/// Kind-specific lines for `h`, or `None` if no hook knows the kind.
pub fn details(h: &HeaderSnapshot, p: &Payload<'_>) -> Option<Lines> {
    match h.kind {
        Kind::ARRAY | Kind::VALUE => Some(elements(h, p)),
        // The integrator adds MUTEX, SEMAPHORE, EVENT, BARRIER, RING,
        // QUEUE, PIPE, ... here.
        _ => None,
    }
}

/// How many elements `elements` prints.
const SHOW: usize = 8;

/// Arrays and values: length, element size, the first few elements decoded
/// when the element type is a primitive number.
fn elements(h: &HeaderSnapshot, p: &Payload<'_>) -> Lines {
    let mut out = Lines::new();
    let len = h.fingerprint.params[0];
    let size = h.fingerprint.size;
    out.push(("length", format!("{len} element(s) of {size} byte(s)")));
    let fits = len
        .checked_mul(size)
        .is_some_and(|total| total <= p.len() as u64);
    if !fits {
        out.push((
            "elements",
            "length × size exceeds the payload: corrupt".to_string(),
        ));
        return out;
    }
    let n = usize::try_from(len).unwrap_or(0).min(SHOW);
    let size = size as usize;
    let ty = h.type_name();
    let shown: Vec<String> = (0..n)
        .map(|i| {
            let b = p.bytes(i * size, size);
            decode(ty, &b)
                .unwrap_or_else(|| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        })
        .collect();
    let more = if (n as u64) < len { ", …" } else { "" };
    out.push(("elements", format!("[{}{more}]", shown.join(", "))));
    out
}

fn decode(ty: &str, b: &[u8]) -> Option<String> {
    macro_rules! num {
        ($t:ty) => {
            <[u8; std::mem::size_of::<$t>()]>::try_from(b)
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
