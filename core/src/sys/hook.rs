//! Back end for targets without a built-in one (bare metal, non-Linux).
//!
//! Waiting and the clock go through the [`Platform`] registered with
//! [`crate::wait::set_platform`]; without one, waiting spins and there is no
//! clock (timed waits then give up at once, see `wait::Deadline`).

use core::time::Duration;

use crate::owner::Liveness;
use crate::primitive::{AtomicU32, Ordering};
use crate::wait::Platform;
use core::sync::atomic::AtomicPtr;

static PLATFORM: AtomicPtr<Platform> = AtomicPtr::new(core::ptr::null_mut());

pub(crate) fn set_platform(p: &'static Platform) {
    // Release pairs with the Acquire in `platform()`: a thread that sees the
    // pointer sees the table it points to.
    PLATFORM.store((p as *const Platform).cast_mut(), Ordering::Release);
}

fn platform() -> Option<&'static Platform> {
    let p = PLATFORM.load(Ordering::Acquire);
    // SAFETY: the only non-null value ever stored is a `&'static Platform`.
    unsafe { p.as_ref() }
}

pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Duration>) {
    match platform() {
        Some(p) => (p.wait)(word, expected, deadline),
        None => core::hint::spin_loop(),
    }
}

/// [`wait`]; a platform cannot say why it returned: counted as a full
/// sleep (no lost round).
pub(crate) fn wait_timed_out(word: &AtomicU32, expected: u32, deadline: Option<Duration>) -> bool {
    wait(word, expected, deadline);
    true
}

pub(crate) fn wake(word: &AtomicU32, count: u32) -> u32 {
    platform().map_or(0, |p| (p.wake)(word, count))
}

pub(crate) fn now() -> Option<Duration> {
    platform().and_then(|p| (p.now)())
}

pub(crate) fn gettid() -> u32 {
    platform().map_or(1, |p| (p.current_id)())
}

pub(crate) fn getpid() -> u32 {
    platform().map_or(1, |p| (p.current_id)())
}

pub(crate) fn liveness(id: u32) -> Liveness {
    platform().map_or(Liveness::Unknown, |p| (p.liveness)(id))
}

pub(crate) fn start_time(_id: u32) -> Option<u64> {
    None
}

pub(crate) fn yield_now() {
    core::hint::spin_loop();
}

/// Whether task `id` belongs to this process: no tasks to ask about here.
pub(crate) fn task_in_this_process(_id: u32) -> bool {
    false
}
