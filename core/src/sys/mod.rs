//! Operating-system back ends of the wait/wake and owner layers.
//!
//! Exactly one back end is compiled in:
//! - `loom`: model-checked yields, no clock;
//! - `linux`: shared futexes, `CLOCK_MONOTONIC`, `gettid`, `kill(tid, 0)`;
//! - `hook`: anything else (bare metal, other OSes) — the user registers a
//!   [`crate::wait::Platform`] or gets the spin fallback.

#[cfg(loom)]
mod loom_sys;
#[cfg(loom)]
pub(crate) use loom_sys::*;

#[cfg(all(not(loom), target_os = "linux"))]
mod linux;
#[cfg(all(not(loom), target_os = "linux"))]
pub(crate) use linux::*;

#[cfg(all(not(loom), not(target_os = "linux")))]
mod hook;
#[cfg(all(not(loom), not(target_os = "linux")))]
pub(crate) use hook::*;
