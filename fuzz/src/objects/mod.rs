//! One fuzz target per core object: arbitrary initial bytes, then a
//! sequence of operations with peer writes in between.
//!
//! Every target decodes its input the same way:
//!
//! ```text
//! byte 0        setup: bit 0 set = start from the honest initial state
//!               (`new`), clear = the next size_of(object) bytes are the
//!               initial bytes; other bits are the target's own (element
//!               type, capacity, ...)
//! then          up to MAX_OPS operations: an opcode byte and its
//!               arguments; one opcode of every target is "a peer writes"
//!               (Region::scribble)
//! ```
//!
//! Objects are reached the way the posix crate reaches them in a segment:
//! through the core [`Object`] (`payload_len`, `init`, `attach`: queues,
//! the stamped ring, maps), or, where the honest initial state is a value
//! (a lock's data, a semaphore's permits, a barrier's parties), that value
//! written over the region and a reference cast from it, as `Create` does.
//! The SPSC ring and the pipes still use their `from_raw` constructors.

pub mod barrier;
pub mod bytemap;
pub mod condition;
pub mod condvar;
pub mod event;
pub mod joinable;
pub mod map;
pub mod mpmc;
pub mod msg;
pub mod mutex;
pub mod pipe;
pub mod reentrant;
pub mod ring;
pub mod rwlock;
pub mod semaphore;
pub mod stamped;

use shmkit_core::object::Object;

use crate::input::Input;
use crate::region::Region;

/// Bit of the setup byte: start from the honest initial state.
pub const HONEST: u8 = 1;

/// A region for an object of `len` bytes whose honest initial state is
/// `honest` (a value of the object type, written over the zeroed region),
/// or, unless the setup byte says honest, whose initial bytes come from
/// the input.
///
/// # Safety
/// `T` is made of atomics and `Pod` data only (any bytes are a valid
/// `T`), and `len >= size_of::<T>()`.
pub unsafe fn region_with<T>(len: usize, setup: u8, honest: T, input: &mut Input<'_>) -> Region {
    let region = Region::new(len);
    if setup & HONEST != 0 {
        // SAFETY: the region is at least size_of::<T>() bytes, aligned to
        // 128 >= align_of::<T>() (every core object), fresh and not yet
        // shared; T has no drop glue worth running on zeroes.
        unsafe { region.base().cast::<T>().as_ptr().write(honest) };
    } else {
        region.fill(input.bytes(len));
    }
    region
}

/// Keeps at most `N` guards, dropping the oldest to make room; guards are
/// what a thread holds between operations.
#[derive(Debug)]
pub struct Held<G, const N: usize> {
    guards: Vec<G>,
}

impl<G, const N: usize> Held<G, N> {
    /// No guard held.
    #[must_use]
    pub fn new() -> Self {
        Held { guards: Vec::new() }
    }

    /// Holds `g` (dropping the oldest if `N` are held).
    pub fn push(&mut self, g: G) {
        if self.guards.len() == N {
            self.guards.remove(0);
        }
        self.guards.push(g);
    }

    /// Releases the guard chosen by `pick`, if any.
    pub fn drop_one(&mut self, pick: u8) {
        if !self.guards.is_empty() {
            let i = usize::from(pick) % self.guards.len();
            self.guards.remove(i);
        }
    }

    /// Takes the guard chosen by `pick` out, if any.
    pub fn take(&mut self, pick: u8) -> Option<G> {
        if self.guards.is_empty() {
            return None;
        }
        let i = usize::from(pick) % self.guards.len();
        Some(self.guards.remove(i))
    }

    /// The guard chosen by `pick`, if any.
    pub fn get_mut(&mut self, pick: u8) -> Option<&mut G> {
        if self.guards.is_empty() {
            return None;
        }
        let i = usize::from(pick) % self.guards.len();
        self.guards.get_mut(i)
    }
}

impl<G, const N: usize> Default for Held<G, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps the guard of a lock call that acquired (plainly, or, for the
/// `recover` calls, from a dead owner); drops every error.
pub fn keep<G, E, const N: usize>(held: &mut Held<G, N>, r: Result<G, E>) {
    if let Ok(g) = r {
        held.push(g);
    }
}

/// A region holding core object `O` with `params`, exactly
/// `O::payload_len(params)` bytes: initialised by [`Object::init`] if the
/// setup byte says honest, else filled with the input's bytes. `None` if
/// the parameters describe no object.
pub fn object_region<O: Object>(
    params: &O::Params,
    setup: u8,
    input: &mut Input<'_>,
) -> Option<Region> {
    let len = O::payload_len(params).ok()?;
    let region = Region::new(len);
    if setup & HONEST != 0 {
        // SAFETY: the region is `payload_len(params)` fresh, zeroed bytes
        // aligned to 128 = PAYLOAD_ALIGN, not yet shared.
        unsafe { O::init(region.base(), params) };
    } else {
        region.fill(input.bytes(len));
    }
    Some(region)
}

/// The view of the object in a region made by [`object_region`] with the
/// same `params`, as posix attaches it in a segment.
pub fn attach<'r, O: Object>(region: &'r Region, params: &O::Params) -> O::View<'r> {
    // SAFETY: `object_region` checked `payload_len(params)` and made the
    // region exactly that long, 128-aligned, writable, alive for 'r, and
    // initialised (or filled with bytes a peer may write: `attach` allows
    // any bytes); the fuzzer only accesses it atomically (`Region`).
    unsafe { O::attach(region.base(), params) }
}

/// What an honest queue must deliver: the values committed and not yet
/// consumed, in order. Checked only while it is `live`: from an honest
/// initial state, until the first peer write (after which anything may be
/// delivered, as long as nothing crashes).
#[derive(Debug)]
pub struct Fifo<T> {
    live: bool,
    queue: std::collections::VecDeque<T>,
}

impl<T: PartialEq + std::fmt::Debug> Fifo<T> {
    /// A model that checks iff the object started honest.
    #[must_use]
    pub fn new(setup: u8) -> Fifo<T> {
        Fifo {
            live: setup & HONEST != 0,
            queue: std::collections::VecDeque::new(),
        }
    }

    /// A peer wrote: stop checking.
    pub fn scribbled(&mut self) {
        self.live = false;
        self.queue.clear();
    }

    /// `value` was committed.
    pub fn sent(&mut self, value: T) {
        if self.live {
            self.queue.push_back(value);
        }
    }

    /// `value` was delivered.
    ///
    /// # Panics
    /// If an honest queue delivered anything but the oldest committed value.
    pub fn received(&mut self, value: &T) {
        if self.live {
            let expected = self.queue.pop_front();
            assert_eq!(
                expected.as_ref(),
                Some(value),
                "an honest queue delivered out of order, twice, or something never sent"
            );
        }
    }

    /// The oldest committed value, if checking.
    #[must_use]
    pub fn front(&self) -> Option<&T> {
        if self.live {
            self.queue.front()
        } else {
            None
        }
    }

    /// Whether checking is on.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.live
    }
}
