//! Owned role handles: the one place where a core role handle (which
//! borrows its segment) is made `'static` by keeping it next to the
//! [`Shared`] that maps the segment, and where it gets the presence token
//! that makes it one handle across `fork`.
//!
//! Every owned sender, receiver, producer, consumer and connection end
//! ([`crate::ring`], [`crate::queue`], [`crate::pipe`]) is an
//! `Owned<H, O>` (crate-private): `H` the core handle, `O` the object kind.
//!
//! # Across `fork`
//! A handle records a presence token ([`shmkit_core::owner::Presence`]: a lock held
//! through the handle's own open file description) in its role slot when
//! it attaches. A `fork` child's copy of the handle shares the
//! description, so the role lives while any copy, in any process, is open.
//! Dropping a copy closes this process's descriptor first and asks whether
//! another copy still holds the token: if so, the role stays attached
//! (held by that copy: the core handle is forgotten, `forget_copy`); if
//! not, the core handle detaches (once, whichever copy is last). A copy
//! whose process exits or is killed releases its descriptor with the
//! process. This is Python's shape: the parent makes both ends, forks,
//! drops the child's end, and sees `Disconnected`/EOF exactly when the
//! child's copy is gone.
//!
//! Without a liveness file (`Presence::new()` is `None`, the owner
//! layer's fallback path) handles are per process, as in the core: a copy
//! inherited across `fork` neither counts nor detaches, and the role is
//! gone when the attaching process drops it or dies.

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::ManuallyDrop;

use shmkit_core::object::Object;
use shmkit_core::owner::Presence;

use crate::handle::Shared;

/// A core role handle that can be dropped as a mere copy (another `fork`
/// copy holds the role).
pub(crate) trait RoleHandle {
    /// Drops this copy without detaching the role (core `forget_copy`).
    fn forget_copy(self);
}

/// A core role handle `H` of an object `O`, owned: `'static`, `Send`
/// (when `H` is), not `Sync` (the core handle is not).
pub(crate) struct Owned<H: RoleHandle, O: Object> {
    /// The core handle, borrowing `shared`'s mapping: declared first, and
    /// dropped by hand in `Drop` before the fields below.
    handle: UnsafeCell<ManuallyDrop<H>>,
    /// This handle's presence token (`None`: the fallback path).
    presence: Option<Presence>,
    /// Keeps the mapping alive for as long as `handle` borrows it.
    shared: Shared<O>,
}

impl<H: RoleHandle, O: Object> Owned<H, O> {
    /// Attaches to `shared` in a role: `attach` gets the object's view and
    /// the presence id to record (0: none) and returns the core handle.
    pub(crate) fn attach<E>(
        shared: &Shared<O>,
        attach: impl FnOnce(O::View<'static>, u32) -> Result<H, E>,
    ) -> Result<Self, E> {
        let presence = Presence::new();
        let id = presence.as_ref().map_or(0, Presence::id);
        // SAFETY: the view and the handle made from it live in `handle`,
        // next to `shared`, a clone of the handle that keeps the mapping;
        // `Drop` drops (or forgets) `handle` before `shared`, and `handle`
        // is only lent out for the duration of a borrow of `self` (`get`,
        // `get_mut`): nothing borrowing the mapping escapes `self`. The
        // view passed to `attach` is dropped with its result on error.
        let view = unsafe { shared.view_unbounded() };
        let handle = attach(view, id)?;
        Ok(Owned {
            handle: UnsafeCell::new(ManuallyDrop::new(handle)),
            presence,
            shared: shared.clone(),
        })
    }

    /// The core handle, through a shared borrow of `self`.
    ///
    /// `f` must not reach this same `Owned` again (no user code runs in
    /// it: only core calls).
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        // SAFETY: `Owned` is not `Sync` (`UnsafeCell`), so only this
        // thread reaches `handle`; the callers in this crate pass
        // closures that only call the core handle, which calls no user
        // code, so no other borrow of `handle` exists while `f` runs.
        f(unsafe { &mut *self.handle.get() })
    }

    /// The core handle, exclusively (for chunk APIs that return borrows).
    #[inline(always)]
    pub(crate) fn get_mut(&mut self) -> &mut H {
        self.handle.get_mut()
    }

    /// The object handle this role handle was made from.
    pub(crate) fn shared(&self) -> &Shared<O> {
        &self.shared
    }

    /// Consumes the handle with `close` (the core `close`, which closes
    /// the role for good and detaches, whatever other copies exist).
    pub(crate) fn close(self, close: impl FnOnce(H)) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so `handle` is taken once here;
        // `presence` and `shared` are moved out below and dropped after
        // it (the core handle goes first).
        let handle = unsafe { ManuallyDrop::take(this.handle.get_mut()) };
        close(handle);
        // SAFETY: read once each from a value that is never dropped.
        let (presence, shared) =
            unsafe { (std::ptr::read(&this.presence), std::ptr::read(&this.shared)) };
        drop(presence);
        drop(shared);
    }
}

impl<H: RoleHandle, O: Object> Drop for Owned<H, O> {
    fn drop(&mut self) {
        // SAFETY: `handle` is taken exactly once, here, and never used
        // again; `shared` (dropped after this body) still maps it.
        let handle = unsafe { ManuallyDrop::take(self.handle.get_mut()) };
        let elsewhere = self
            .presence
            .take()
            .is_some_and(Presence::close_and_check_elsewhere);
        if elsewhere {
            handle.forget_copy();
        } else {
            drop(handle);
        }
    }
}

impl<H: RoleHandle, O: Object> fmt::Debug for Owned<H, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Owned")
            .field("presence", &self.presence.as_ref().map(Presence::id))
            .field("object", &self.shared)
            .finish_non_exhaustive()
    }
}

macro_rules! role_handle {
    ($($ty:ty),* $(,)?) => {
        $(impl<T: shmkit_core::Pod> RoleHandle for $ty {
            fn forget_copy(self) {
                <$ty>::forget_copy(self);
            }
        })*
    };
}

role_handle!(
    shmkit_core::queue::ring::Producer<'static, T>,
    shmkit_core::queue::ring::Consumer<'static, T>,
    shmkit_core::queue::stamped::StampedProducer<'static, T>,
    shmkit_core::queue::stamped::StampedConsumer<'static, T>,
    shmkit_core::queue::mpmc::QueueProducer<'static, T>,
    shmkit_core::queue::mpmc::QueueConsumer<'static, T>,
);

impl RoleHandle for shmkit_core::queue::pipe::PipeSender<'static> {
    fn forget_copy(self) {
        shmkit_core::queue::pipe::PipeSender::forget_copy(self);
    }
}

impl RoleHandle for shmkit_core::queue::pipe::PipeReceiver<'static> {
    fn forget_copy(self) {
        shmkit_core::queue::pipe::PipeReceiver::forget_copy(self);
    }
}
