//! Kind-specific state for `shmkit inspect`.
//!
//! The decoding lives in [`shmkit::posix::inspect`], next to the layouts it
//! reads (queue registries, pipe rings, the data after a lock), so the CLI
//! holds no byte offsets. This file only ties the payload view to the
//! read-only mapping it reads, so the view cannot outlive it.
//!
//! The hooks there treat every byte as hostile (a bad value prints as
//! `corrupt: …`) and never wait on or write to anything: the mapping is
//! read-only, so they could not take a lock anyway.

use shmkit::core::header::{HeaderSnapshot, HEADER_LEN};
use shmkit::posix::inspect::{describe, PayloadView};

use super::segments::Mapping;

/// Lines a hook returns.
pub type Lines = Vec<(&'static str, String)>;

/// The payload of a mapped, header-validated segment, read-only.
pub struct Payload<'a> {
    view: PayloadView<'a>,
}

impl<'a> Payload<'a> {
    /// The payload of `map` as described by `h` (already validated against
    /// the mapping's length); `None` if it does not fit after all.
    pub fn new(map: &'a Mapping, h: &HeaderSnapshot) -> Option<Payload<'a>> {
        let len = usize::try_from(h.payload_len).ok()?;
        if HEADER_LEN.checked_add(len)? > map.len() {
            return None;
        }
        // SAFETY: HEADER_LEN + len <= map.len() (checked), so the payload
        // lies inside the mapping, which `'a` borrows (it stays mapped as
        // long as the view). Peers write it only atomically (shmkit
        // objects), and this process never writes it: the mapping is
        // read-only.
        let view = unsafe { PayloadView::new(map.base().add(HEADER_LEN), len) };
        Some(Payload { view })
    }
}

/// Kind-specific lines for `h`, or `None` if no hook knows the kind.
pub fn details(h: &HeaderSnapshot, p: &Payload<'_>) -> Option<Lines> {
    describe(h, &p.view)
}
