//! [`Shared<O>`]: the one owned handle over every object kind, with one
//! constructor set.
//!
//! Every object kind — arrays, values, locks, signals, queues, pipes — is a
//! core structure implementing [`Object`] (its parameters, layout,
//! initialisation and attachment, said once in core). This module places
//! any such object in a segment and hands out a `Shared<O>`:
//!
//! | constructor | what |
//! |---|---|
//! | `create(name, init)` | a new named segment; fails if the name is taken (a dead creator's leftover is reclaimed) |
//! | `open(name)` | an existing named segment; kind, element type and parameters are read from its header and checked |
//! | `open_or_create(name, init)` | either; race-free; an existing segment must have the parameters `init` asks for |
//! | `anonymous(init)` | an unnamed segment shared with children forked afterwards |
//! | `memfd(init)` | an unnamed segment whose descriptor ([`Shared::fd`]) can be sent to another process |
//! | `from_fd(fd)` | the other end of `memfd` |
//!
//! and the same with `_with(..., &Options)` for the one [`Options`]
//! builder. `init` is whatever the kind needs to be created ([`Create`]):
//! a length or initial values for arrays, a capacity for queues, an initial
//! value for a mutex or a semaphore, `()` for an event.
//!
//! A `Shared<O>` owns its mapping through an `Arc`: it is `Clone` (cheap,
//! one mapping), `Send` and `Sync`, and `'static`, so it can be moved into
//! threads or stored next to what it feeds. Role handles made from it
//! (senders, receivers, connection ends) own a clone too.
//!
//! # What an opener trusts
//! Nothing it did not check: the header is validated against the mapping,
//! the kind and element type against the handle's type, the recorded
//! parameters are decoded and range-checked by the object
//! ([`Object::decode`]), and the payload length they imply must equal the
//! header's, which must fit the mapping. Every size a view uses is derived
//! from those parameters by the object's own [`Object::payload_len`]: no
//! path trusts a length it did not check, and `open_or_create` compares
//! the caller's parameters with the checked ones instead of assuming them.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use shmkit_core::object::{LayoutError, Object};

use crate::error::{CreateError, OpenError, OpenOrCreateError};
use crate::segment::{Expect, ObjectSpec, Options, Segment};

mod sealed {
    pub trait Sealed {}
}

/// The access a handle was opened with: [`ReadWrite`] or [`ReadOnly`].
pub trait Access: sealed::Sealed + Send + Sync + 'static {}

/// Marker: the handle may read and write.
#[derive(Debug)]
pub enum ReadWrite {}
/// Marker: the handle may only read (the mapping is `PROT_READ`).
#[derive(Debug)]
pub enum ReadOnly {}

impl sealed::Sealed for ReadWrite {}
impl sealed::Sealed for ReadOnly {}
impl Access for ReadWrite {}
impl Access for ReadOnly {}

/// An object kind a process can create: what the creator gives, and how it
/// becomes the initial contents.
///
/// Implemented for every shmkit kind; implement it for your own
/// [`Object`]s to place them with [`Shared`].
pub trait Create: Object {
    /// What the creator gives: a length or values, a capacity, an initial
    /// value, `()`.
    type Init;

    /// The parameters `init` implies (checked later by
    /// [`Object::payload_len`]).
    fn params(init: &Self::Init) -> Self::Params;

    /// Writes `init` into a fresh object, after [`Object::init`].
    ///
    /// # Safety
    /// `payload` is the fresh, writable payload of an object with `params`
    /// (`Object::payload_len(params)` bytes, aligned to `PAYLOAD_ALIGN`),
    /// initialised by [`Object::init`], not yet visible to anyone else.
    unsafe fn write_init(payload: std::ptr::NonNull<u8>, params: &Self::Params, init: Self::Init);
}

/// What a creating constructor accepts for a kind `O`: `O`'s own
/// [`Create::Init`], and the plain values a Python user would pass (a
/// length or values for an array, the initial value for a `Value` or a
/// `Mutex`, a count for a semaphore, `()` for an event). Each kind lists
/// its conversions, so that a literal infers the right type
/// (`Value::<u64>::anonymous(0)`, `Array::<f64>::create(name, 8)`).
pub trait IntoInit<O: Create> {
    /// The creator's `Init`.
    fn into_init(self) -> O::Init;
}

/// Object kinds whose views never write when only read, so that a
/// read-only mapping of them is useful (arrays and values).
pub trait ReadOnlyView: Object {}

/// An object of kind `O` in a segment, owned: see the module docs.
pub struct Shared<O: Object, A: Access = ReadWrite> {
    inner: Arc<Attached<O>>,
    _access: PhantomData<A>,
}

/// A mapped segment holding an `O` with checked parameters.
pub(crate) struct Attached<O: Object> {
    segment: Segment,
    params: O::Params,
}

/// Kinds that register this process in the object, and must withdraw when
/// the process leaves cleanly. Today: barrier parties (a party that merely
/// exits must not break the barrier; a killed one still does).
mod leave {
    use std::any::Any;
    use std::sync::{Mutex, Once, Weak};

    use shmkit_core::header::Kind;
    use shmkit_core::object::Object;

    use super::Attached;

    /// Withdraws this process from the object it maps.
    pub(super) trait Leave: Send + Sync {
        fn leave(&self);
    }

    impl<O: Object> Leave for Attached<O> {
        fn leave(&self) {
            if O::KIND != Kind::BARRIER {
                return;
            }
            if let Some(b) =
                (self as &dyn Any).downcast_ref::<Attached<shmkit_core::sync::Barrier>>()
            {
                b.view().unregister_process();
            }
        }
    }

    /// Whether this kind registers the process (checked at compile time).
    pub(super) fn registers<O: Object>() -> bool {
        O::KIND == Kind::BARRIER
    }

    fn live() -> &'static Mutex<Vec<Weak<dyn Leave>>> {
        static LIVE: Mutex<Vec<Weak<dyn Leave>>> = Mutex::new(Vec::new());
        &LIVE
    }

    /// Remembers `object` for [`leave_all`], and makes sure a clean exit
    /// (`exit`, a return from `main`) runs it.
    pub(super) fn remember(object: Weak<dyn Leave>) {
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| {
            extern "C" fn at_exit() {
                leave_all();
            }
            // SAFETY: registers a plain `extern "C"` function; if it
            // cannot be registered, clean exits just break barriers.
            unsafe { libc::atexit(at_exit) };
        });
        let mut live = live()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        live.push(object);
    }

    /// Withdraws this process from every object it registered in: its
    /// clean exit. `try_lock`: after a `fork` from a threaded process the
    /// lock may be held by a thread that does not exist here.
    pub fn leave_all() {
        let Ok(live) = live().try_lock() else {
            return;
        };
        for object in live.iter().filter_map(Weak::upgrade) {
            object.leave();
        }
    }
}

pub(crate) use leave::leave_all;

impl<O: Object> Drop for Attached<O> {
    fn drop(&mut self) {
        // This process's last handle: it leaves the object cleanly.
        leave::Leave::leave(&*self);
    }
}

impl<O: Object> Attached<O> {
    /// The view of the object, valid while `self` is.
    pub(crate) fn view(&self) -> O::View<'_> {
        // SAFETY: `params` were either chosen by this process and sized by
        // `O::payload_len` when it created the segment, or decoded from the
        // header by `O::decode` and checked by `checked_params` to give
        // exactly the header's payload length, which the segment validated
        // against the mapping; the payload is aligned to PAYLOAD_ALIGN and
        // stays mapped while `self.segment` lives, which outlives the
        // returned borrow. It was initialised by its creator (`O::init`)
        // before the segment became READY. Read-only mappings are only
        // handed to `ReadOnlyView` kinds through `Shared<O, ReadOnly>`,
        // whose methods only read.
        unsafe { O::attach(self.segment.payload(), &self.params) }
    }
}

impl<O: Object, A: Access> Clone for Shared<O, A> {
    fn clone(&self) -> Self {
        Shared {
            inner: Arc::clone(&self.inner),
            _access: PhantomData,
        }
    }
}

impl<O: Object, A: Access> fmt::Debug for Shared<O, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("kind", &O::KIND)
            .field("type", &O::type_name())
            .field("params", &self.inner.params)
            .field("segment", &self.inner.segment)
            .finish()
    }
}

// SAFETY: the handle holds a mapping (valid from any thread) and checked
// parameters; the views it hands out may be used from any number of threads
// at once (`Object`'s contract: every shared access is atomic).
unsafe impl<O: Object, A: Access> Send for Shared<O, A> {}
// SAFETY: as for Send.
unsafe impl<O: Object, A: Access> Sync for Shared<O, A> {}
// SAFETY: as for `Shared`.
unsafe impl<O: Object> Send for Attached<O> {}
// SAFETY: as for `Shared`.
unsafe impl<O: Object> Sync for Attached<O> {}

/// The segment spec of an `O` with `params`.
fn spec<O: Object>(params: &O::Params) -> Result<ObjectSpec<'static>, LayoutError> {
    let len = O::payload_len(params)?;
    Ok(ObjectSpec {
        kind: O::KIND,
        fingerprint: O::fingerprint(params),
        type_name: O::type_name(),
        payload_len: len as u64,
    })
}

/// What any opener of an `O` requires: the kind and element type; the
/// parameters are checked by [`checked_params`].
fn expect<O: Object>() -> Expect {
    Expect::of::<O::Element>(O::KIND)
}

/// The parameters recorded in `segment`'s header, decoded and checked
/// against its payload length (which the segment checked against the
/// mapping).
fn checked_params<O: Object>(segment: &Segment) -> Result<O::Params, OpenError> {
    let header = segment.header();
    let corrupt = |why: String| OpenError::Corrupt { what: why };
    let params = O::decode(header.fingerprint.params).map_err(|e| {
        corrupt(format!(
            "recorded parameters {:?}: {e}",
            header.fingerprint.params
        ))
    })?;
    let needed = O::payload_len(&params).map_err(|e| {
        corrupt(format!(
            "recorded parameters {params:?} describe no possible object: {e}"
        ))
    })?;
    if needed as u64 != header.payload_len {
        return Err(corrupt(format!(
            "recorded parameters {params:?} need a payload of {needed} bytes, but the header says {}",
            header.payload_len
        )));
    }
    Ok(params)
}

impl<O: Object, A: Access> Shared<O, A> {
    fn wrap(segment: Segment, params: O::Params) -> Self {
        let inner = Arc::new(Attached { segment, params });
        if leave::registers::<O>() {
            let weak: std::sync::Weak<dyn leave::Leave> = Arc::downgrade(&inner) as _;
            leave::remember(weak);
        }
        Shared {
            inner,
            _access: PhantomData,
        }
    }

    fn attach(segment: Segment) -> Result<Self, OpenError> {
        let params = checked_params::<O>(&segment)?;
        Ok(Self::wrap(segment, params))
    }

    /// The object's parameters (length, capacity, ...), as checked when
    /// the handle was made.
    #[must_use]
    pub fn params(&self) -> &O::Params {
        &self.inner.params
    }

    /// The segment holding the object (its name, header, descriptor).
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.inner.segment
    }

    /// The descriptor of a memfd (or named) segment, to hand to another
    /// process, which attaches with [`from_fd`](Shared::from_fd) (after
    /// `SCM_RIGHTS`, or across `exec` once `FD_CLOEXEC` is cleared).
    #[must_use]
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.segment.fd()
    }

    /// Keeps the name alive after the creating process's last handle is
    /// dropped, and protects it from being reclaimed as a leftover.
    pub fn persist(&self) {
        self.inner.segment.persist();
    }

    /// Makes this process remove the name when its last handle drops.
    pub fn take_ownership(&self) {
        self.inner.segment.take_ownership();
    }
}

impl<O: Object> Shared<O> {
    /// The view of the object with a lifetime the caller picks.
    ///
    /// # Safety
    /// The view, and everything made from it, must not outlive every
    /// clone of this handle (which keeps the mapping): the caller keeps a
    /// clone next to it and drops the view first (see `crate::role`).
    pub(crate) unsafe fn view_unbounded<'a>(&self) -> O::View<'a> {
        // SAFETY: as in `Attached::view`, for as long as the mapping
        // lives, which the caller's contract guarantees.
        unsafe { O::attach(self.inner.segment.payload(), &self.inner.params) }
    }

    /// The view of the object (a `SharedSlice` for arrays, `&Mutex<T>` for
    /// a mutex, the core `Queue` for a queue, ...), borrowing the handle.
    #[must_use]
    pub fn view(&self) -> O::View<'_> {
        self.inner.view()
    }

    /// Opens the named segment `name`, which must hold an `O`.
    ///
    /// # Errors
    /// See [`OpenError`]: `NotFound`, `KindMismatch`, `TypeMismatch`,
    /// `Corrupt` for a header whose parameters do not fit its payload,
    /// `NotOwner` for another user's object.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Self::open_with(name, &Options::default())
    }

    /// [`open`](Self::open) with options.
    ///
    /// # Errors
    /// See [`open`](Self::open).
    pub fn open_with(name: &str, options: &Options) -> Result<Self, OpenError> {
        let options = options.clone().read_only(false);
        Self::attach(Segment::open(name, &expect::<O>(), &options)?)
    }

    /// Attaches to an object by descriptor (see [`Segment::from_fd`] for
    /// the sealing rule).
    ///
    /// # Errors
    /// See [`OpenError`]; `Unsealed` for a descriptor whose object its
    /// sender could shrink.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, OpenError> {
        Self::from_fd_with(fd, &Options::default())
    }

    /// [`from_fd`](Self::from_fd) with options.
    ///
    /// # Errors
    /// See [`from_fd`](Self::from_fd).
    pub fn from_fd_with(fd: OwnedFd, options: &Options) -> Result<Self, OpenError> {
        let options = options.clone().read_only(false);
        Self::attach(Segment::from_fd(fd, &expect::<O>(), &options)?)
    }
}

impl<O: ReadOnlyView> Shared<O> {
    /// Opens the named segment `name` read-only: the mapping is
    /// `PROT_READ` and the handle, a `Shared<O, ReadOnly>`, has no setters.
    ///
    /// # Errors
    /// See [`open`](Self::open).
    pub fn open_read_only(name: &str) -> Result<Shared<O, ReadOnly>, OpenError> {
        Self::open_read_only_with(name, &Options::default())
    }

    /// [`open_read_only`](Self::open_read_only) with options.
    ///
    /// # Errors
    /// See [`open`](Self::open).
    pub fn open_read_only_with(
        name: &str,
        options: &Options,
    ) -> Result<Shared<O, ReadOnly>, OpenError> {
        let options = options.clone().read_only(true);
        Shared::attach(Segment::open(name, &expect::<O>(), &options)?)
    }
}

impl<O: ReadOnlyView> Shared<O, ReadOnly> {
    /// The view of the object. Only its reading methods may be used: the
    /// mapping is read-only (a write would be a `SIGSEGV`), which is why
    /// the handle's own methods are the way to use it.
    pub(crate) fn read_view(&self) -> O::View<'_> {
        self.inner.view()
    }
}

/// How a creating constructor makes its segment.
enum Make<'n> {
    Named(&'n str),
    OpenOrCreate(&'n str),
    Anonymous,
    Memfd,
}

impl<O: Create> Shared<O> {
    fn make(init: O::Init, how: Make<'_>, options: &Options) -> Result<Self, OpenOrCreateError> {
        let params = O::params(&init);
        let spec = spec::<O>(&params).map_err(|e| {
            OpenOrCreateError::Create(CreateError::InvalidLayout { reason: e.reason })
        })?;
        let mut init = Some(init);
        let mut fill = |payload: std::ptr::NonNull<u8>, _len: usize| {
            if let Some(init) = init.take() {
                // SAFETY: the segment layer hands us the fresh, zeroed,
                // writable payload of `spec.payload_len` =
                // `O::payload_len(&params)` bytes, aligned to
                // PAYLOAD_ALIGN, before anyone else can attach.
                unsafe {
                    O::init(payload, &params);
                    O::write_init(payload, &params, init);
                }
            }
        };
        let created = |segment| Self::wrap(segment, params);
        let options = options.clone().read_only(false);
        match how {
            Make::Named(name) => Segment::create(name, &spec, &options, &mut fill)
                .map(created)
                .map_err(OpenOrCreateError::Create),
            Make::Anonymous => Segment::anonymous(&spec, &mut fill)
                .map(created)
                .map_err(OpenOrCreateError::Create),
            Make::Memfd => Segment::memfd(&spec, &mut fill)
                .map(created)
                .map_err(OpenOrCreateError::Create),
            Make::OpenOrCreate(name) => {
                let (segment, made) = Segment::open_or_create_expecting(
                    name,
                    &spec,
                    &expect::<O>(),
                    &options,
                    &mut fill,
                )?;
                if made {
                    return Ok(created(segment));
                }
                let recorded = checked_params::<O>(&segment).map_err(OpenOrCreateError::Open)?;
                if recorded != params {
                    return Err(OpenOrCreateError::Open(OpenError::ParamsMismatch {
                        kind: O::KIND,
                        type_name: O::type_name().to_owned(),
                        recorded: format!("{recorded:?}"),
                        asked: format!("{params:?}"),
                    }));
                }
                Ok(Self::wrap(segment, recorded))
            }
        }
    }

    /// Creates the named segment `name` holding a new `O` made from
    /// `init`. Openers never see it before it is initialised.
    ///
    /// # Errors
    /// See [`CreateError`]: `AlreadyExists` if a live segment has the name,
    /// `InvalidLayout` for impossible parameters.
    pub fn create(name: &str, init: impl IntoInit<O>) -> Result<Self, CreateError> {
        Self::create_with(name, init, &Options::default())
    }

    /// [`create`](Self::create) with options.
    ///
    /// # Errors
    /// See [`create`](Self::create).
    pub fn create_with(
        name: &str,
        init: impl IntoInit<O>,
        options: &Options,
    ) -> Result<Self, CreateError> {
        Self::make(init.into_init(), Make::Named(name), options).map_err(only_create)
    }

    /// Opens `name` if it exists (it must have the parameters `init`
    /// implies), else creates it from `init`. Safe to race from many
    /// processes: exactly one creates, and nobody sees the object before it
    /// is initialised.
    ///
    /// # Errors
    /// See [`OpenOrCreateError`]; `Open(ParamsMismatch)` names the
    /// recorded and the asked parameters.
    pub fn open_or_create(name: &str, init: impl IntoInit<O>) -> Result<Self, OpenOrCreateError> {
        Self::open_or_create_with(name, init, &Options::default())
    }

    /// [`open_or_create`](Self::open_or_create) with options.
    ///
    /// # Errors
    /// See [`open_or_create`](Self::open_or_create).
    pub fn open_or_create_with(
        name: &str,
        init: impl IntoInit<O>,
        options: &Options,
    ) -> Result<Self, OpenOrCreateError> {
        Self::make(init.into_init(), Make::OpenOrCreate(name), options)
    }

    /// An unnamed object shared with children forked after this call
    /// (Python's objects passed to a child `Process`).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn anonymous(init: impl IntoInit<O>) -> Result<Self, CreateError> {
        Self::make(init.into_init(), Make::Anonymous, &Options::default()).map_err(only_create)
    }

    /// An unnamed object in a memfd whose descriptor ([`fd`](Shared::fd))
    /// can be sent to another process, which attaches with
    /// [`from_fd`](Shared::from_fd). Sealed against resizing.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn memfd(init: impl IntoInit<O>) -> Result<Self, CreateError> {
        Self::make(init.into_init(), Make::Memfd, &Options::default()).map_err(only_create)
    }
}

impl<O: Create> Shared<O>
where
    O::Init: Default,
{
    /// An unnamed object with the default initial state, shared with
    /// children forked afterwards: Python's `Event()`, `Lock()`,
    /// `Condition()`. The same as `anonymous(Default::default())`.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn new() -> Result<Self, CreateError> {
        Self::make(O::Init::default(), Make::Anonymous, &Options::default()).map_err(only_create)
    }
}

fn only_create(e: OpenOrCreateError) -> CreateError {
    match e {
        OpenOrCreateError::Create(e) => e,
        // Only `Make::OpenOrCreate` opens; the other ways only create.
        other => CreateError::Os {
            call: "create",
            source: std::io::Error::other(other.to_string()),
        },
    }
}
