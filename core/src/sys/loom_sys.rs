//! loom back end: waiting is a yield to the model scheduler, there is no clock.

use core::time::Duration;

use crate::owner::Liveness;
use crate::primitive::AtomicU32;

pub(crate) fn wait(_word: &AtomicU32, _expected: u32, _deadline: Option<Duration>) {
    loom::thread::yield_now();
}

/// [`wait`], counted as a full sleep (a model has no peer rewriting words).
pub(crate) fn wait_timed_out(word: &AtomicU32, expected: u32, deadline: Option<Duration>) -> bool {
    wait(word, expected, deadline);
    true
}

pub(crate) fn wake(_word: &AtomicU32, _count: u32) -> u32 {
    0
}

pub(crate) fn now() -> Option<Duration> {
    None
}

pub(crate) fn gettid() -> u32 {
    // loom threads have no OS id; model thread ids start at 0, shift past it.
    // `loom::thread::current().id()` is opaque, so models that need distinct
    // owners pass them explicitly; this value is only a stand-in.
    1
}

pub(crate) fn getpid() -> u32 {
    1
}

pub(crate) fn liveness(_id: u32) -> Liveness {
    Liveness::Alive
}

pub(crate) fn start_time(_id: u32) -> Option<u64> {
    None
}

pub(crate) fn yield_now() {
    loom::thread::yield_now();
}

/// Whether task `id` belongs to this process: under loom every model
/// thread shares the process, and ids come from a counter.
pub(crate) fn task_in_this_process(_id: u32) -> bool {
    true
}
