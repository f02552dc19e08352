//! How a structure lives in a segment: its parameters, its layout, its
//! initialisation and its attachment, said once, by the structure itself.
//!
//! Every structure that can fill a segment's payload implements
//! [`Object`]. The trait is the whole contract between core and whoever
//! places objects in memory (the `shmkit-posix` crate, `shmkit inspect`, a
//! bare-metal user with its own shared RAM):
//!
//! | step | who | what |
//! |---|---|---|
//! | choose | creator | [`Object::Params`]: capacity, length, registry sizes |
//! | size | creator | [`Object::payload_len`] checks the parameters and gives the exact payload length |
//! | record | creator | [`Object::fingerprint`] goes into the header: element type and parameters |
//! | initialise | creator | [`Object::init`] writes the initial state into the zero-filled payload, before anyone can attach |
//! | recover | opener | [`Object::decode`] reads the parameters back out of a header it does not trust |
//! | check | opener | [`Object::payload_len`] of those parameters must equal the header's payload length, which was checked against the mapping |
//! | attach | anyone | [`Object::attach`] gives the view (`Ring`, `Queue`, `&Mutex<T>`, `SharedSlice<T>`...) |
//!
//! A placer therefore never computes an offset or trusts a length itself:
//! one function of the structure derives every size from parameters that
//! were either chosen by the caller or recovered and checked here.
//!
//! ```
//! use core::ptr::NonNull;
//! use shmkit_core::header::PAYLOAD_ALIGN;
//! use shmkit_core::object::Object;
//! use shmkit_core::shared::Array;
//!
//! #[repr(C, align(128))]
//! struct Memory([u8; 256]);
//! let mut mem = Memory([0; 256]);
//! let payload = NonNull::new(mem.0.as_mut_ptr()).unwrap();
//!
//! // The creator: 16 u64s.
//! let params = 16;
//! let len = Array::<u64>::payload_len(&params)?;
//! assert_eq!(len, 128);
//! let fingerprint = Array::<u64>::fingerprint(&params);
//! // SAFETY: `mem` holds `len` zeroed bytes aligned to PAYLOAD_ALIGN, used
//! // by nobody else.
//! let array = unsafe {
//!     Array::<u64>::init(payload, &params);
//!     Array::<u64>::attach(payload, &params)
//! };
//! array.set(3, 7)?;
//!
//! // An opener recovers the parameters from the header's fingerprint and
//! // checks them against the payload length before attaching.
//! let recovered = Array::<u64>::params_from(&fingerprint)?;
//! assert_eq!(Array::<u64>::payload_len(&recovered)?, len);
//! // SAFETY: as above.
//! let seen = unsafe { Array::<u64>::attach(payload, &recovered) };
//! assert_eq!(seen.get(3), Some(7));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::ptr::NonNull;

use crate::header::{Fingerprint, Kind};

/// Why parameters describe no possible object: a caller's mistake at
/// creation, or a forged or corrupt header at opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutError {
    /// What is wrong, in words a user can act on.
    pub reason: &'static str,
}

impl LayoutError {
    /// A layout error saying `reason`.
    #[must_use]
    pub const fn new(reason: &'static str) -> LayoutError {
        LayoutError { reason }
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl core::error::Error for LayoutError {}

/// A structure that can be the payload of a segment.
///
/// # Safety
/// Implementors promise, for every `params` for which
/// [`payload_len`](Object::payload_len) returns `Ok(n)`:
/// - [`attach`](Object::attach) and every operation of the view it returns
///   access only the `n` bytes from `payload`, and only with atomic
///   accesses or copies that tolerate concurrent writes by other processes
///   (a hostile peer may write any bytes at any time): no reference to
///   plain data in the payload, no value read back from it used as an index
///   or length before it is checked;
/// - [`init`](Object::init) writes only those `n` bytes;
/// - the view needs no alignment beyond [`PAYLOAD_ALIGN`](crate::header::PAYLOAD_ALIGN);
/// - views may be made in any thread and used from any number of threads
///   and processes at once (every shared access is atomic);
/// - `decode(encode(p)) == Ok(p)`.
pub unsafe trait Object: 'static {
    /// The kind recorded in the segment header.
    const KIND: Kind;

    /// What fixes the object's size and shape (a capacity, a length,
    /// registry sizes); recorded in the header.
    type Params: Copy + PartialEq + fmt::Debug + Send + Sync + 'static;

    /// What a process works with once attached, borrowing the payload.
    type View<'a>;

    /// The type whose name, size and alignment the header records and
    /// openers compare: the element type of arrays and queues, the object
    /// itself for locks and signals, `u8` for byte pipes.
    type Element;

    /// `params` as the header's two parameter words, such that
    /// [`decode`](Object::decode) gives them back.
    fn encode(params: &Self::Params) -> [u64; 2];

    /// The parameters recorded in a header nobody vouches for. The element
    /// type was already compared; this decodes and range-checks the words.
    ///
    /// # Errors
    /// The recorded parameters are impossible.
    fn decode(recorded: [u64; 2]) -> Result<Self::Params, LayoutError>;

    /// The header fingerprint: the element type (name hash, size, align)
    /// and the encoded parameters.
    fn fingerprint(params: &Self::Params) -> Fingerprint {
        Fingerprint::of::<Self::Element>(Self::encode(params))
    }

    /// The element type's name, for the header and for messages.
    fn type_name() -> &'static str {
        core::any::type_name::<Self::Element>()
    }

    /// The parameters recorded in `fingerprint` ([`decode`](Object::decode)
    /// of its parameter words).
    ///
    /// # Errors
    /// The recorded parameters are impossible.
    fn params_from(fingerprint: &Fingerprint) -> Result<Self::Params, LayoutError> {
        Self::decode(fingerprint.params)
    }

    /// The exact payload length of an object with `params`.
    ///
    /// # Errors
    /// The parameters are impossible (zero capacity, not a power of two,
    /// too large for memory, ...).
    fn payload_len(params: &Self::Params) -> Result<usize, LayoutError>;

    /// Writes the initial state of a fresh object.
    ///
    /// # Safety
    /// `payload` points to `payload_len(params)` zero-filled, writable
    /// bytes aligned to `PAYLOAD_ALIGN`, which no other thread or process
    /// accesses until this returns.
    unsafe fn init(payload: NonNull<u8>, params: &Self::Params);

    /// The view of the object at `payload`.
    ///
    /// # Safety
    /// - `payload_len(params)` returned `Ok(n)`, and `n` bytes from
    ///   `payload`, aligned to `PAYLOAD_ALIGN`, stay mapped for `'a`;
    /// - they are mapped writable, unless the implementor documents that
    ///   its view never writes;
    /// - they were initialised by [`init`](Object::init) with the same
    ///   parameters (possibly by another process; peers may have changed
    ///   them since, in any way).
    unsafe fn attach<'a>(payload: NonNull<u8>, params: &Self::Params) -> Self::View<'a>;
}
