//! # shmkit-posix
//!
//! Creating, naming and mapping the shared-memory segments that hold
//! [`shmkit_core`] objects: named POSIX segments (`shm_open`), anonymous
//! segments inherited across `fork`, and memfd segments whose descriptor can
//! be passed to another process. Typed handles place objects in them:
//! [`SharedArray`] and [`SharedValue`] are Python's `Array` and `Value`.
//!
//! ```
//! use shmkit_posix::SharedArray;
//!
//! # let name = format!("/shmkit-doc-posix-{}", std::process::id());
//! // Process A creates a named array of ten f64 (zero-filled)...
//! let a = SharedArray::<f64>::create(&name, 10)?;
//! a.set(3, 2.5)?;
//! // ...process B (here the same process, for the example) attaches by name;
//! // the element type is checked against the one A created it with.
//! let b = SharedArray::<f64>::open(&name)?;
//! assert_eq!(b.get(3), Some(2.5));
//! assert!(SharedArray::<u32>::open(&name).is_err());
//! // A created it, so dropping A removes the name.
//! drop(b);
//! drop(a);
//! assert!(SharedArray::<f64>::open(&name).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod array;
pub mod error;
pub mod inspect;
pub mod locked;
pub mod name;
pub mod queue;
pub mod segment;
pub mod sync;

pub use array::{ReadOnly, ReadWrite, SharedArray, SharedValue};
pub use error::{CreateError, OpenError, OpenOrCreateError, TypeMismatch, UnlinkError};
pub use locked::{LockedArray, LockedValue};
pub use name::{InvalidName, SegmentName};
pub use queue::{SharedDuplexPipe, SharedPipe, SharedQueue, SharedRing};
pub use segment::{Expect, ObjectSpec, Segment, SegmentOptions};
pub use shmkit_core::{Pod, Zeroable};
