//! The one place core's atomics come from.
//!
//! Under `--cfg loom` every atomic is loom's model-checked twin, so the same
//! source of every lock and queue runs in loom models; otherwise these are the
//! `core::sync::atomic` types.
//!
//! Queue payloads: the MPMC queue and the stamped ring copy their values
//! with these atomics (one `u64` word at a time), so loom sees the copies.
//! The index ring and the pipe copy with atomics on raw memory (contiguous
//! `T`s handed out as slices, bytes moved in bulk), which loom cannot see;
//! under loom each of their slots has a shadow cell standing for its
//! copies (`ring::Shadow`), so a publication ordering too weak still fails
//! the models. Process-local statics that no shared protocol depends on
//! (the membarrier registration, the spin calibration) use
//! `core::sync::atomic` directly.
//!
//! Layout note: only the real atomics are `#[repr(C)]`-compatible with the
//! integers they wrap. Layout assertions and in-segment placement are
//! therefore `cfg(not(loom))`; loom models build their objects with `new()`.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub use core::sync::atomic::{fence, AtomicU32, AtomicUsize, Ordering};

#[cfg(all(not(loom), target_has_atomic = "64"))]
pub use core::sync::atomic::AtomicU64;

/// A spin-wait hint. Under loom it yields to the model scheduler, so that a
/// spinning thread lets the thread it waits for make progress.
#[inline]
pub fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
