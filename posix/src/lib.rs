//! # shmkit-posix
//!
//! Creating, naming and mapping the shared-memory segments that hold
//! [`shmkit_core`] objects — named POSIX segments (`shm_open`), anonymous
//! segments inherited across `fork`, memfd segments whose descriptor can be
//! passed to another process — and the owned handles users hold.
//!
//! Every kind has the same handle, [`Shared<O>`], with the same
//! constructors (`create`, `open`, `open_or_create`, `anonymous`, `memfd`,
//! `from_fd`, their `_with(.., &Options)` forms, and `new()` for kinds with
//! a default state); the aliases give the Python names: [`Array`],
//! [`Value`], [`sync::Lock`], [`sync::Event`], ... Handles are `Clone`,
//! `Send`, `Sync` and `'static`; [`process::spawn`] runs a closure in a
//! child process.
//!
//! ```
//! use shmkit_posix::{process, Array};
//!
//! # let name = format!("/shmkit-doc-posix-{}", std::process::id());
//! // Process A creates a named array of ten f64 (zero-filled)...
//! let a = Array::<f64>::create(&name, 10)?;
//! a.set(3, 2.5)?;
//! // ...process B attaches by name; the element type is checked against
//! // the one A created it with.
//! let child = process::spawn({
//!     let name = name.clone();
//!     move || {
//!         let b = Array::<f64>::open(&name).unwrap();
//!         b.set(4, b.get(3).unwrap() * 2.0).unwrap();
//!         Array::<u32>::open(&name).is_err() as u8 // wrong element type
//!     }
//! })?;
//! assert_eq!(child.join()?, 1);
//! assert_eq!(a.get(4), Some(5.0));
//! // A created it, so dropping A (its process's last handle) removes the name.
//! drop(a);
//! assert!(Array::<f64>::open(&name).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Your own `#[repr(C)]` structs travel through arrays, values and queues
//! once they are `Pod`; the derive needs no direct dependency:
//!
//! ```
//! use shmkit_posix::{Pod, Value, Zeroable};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
//! #[bytemuck(crate = "shmkit_posix::bytemuck")]
//! #[repr(C)]
//! struct Point {
//!     x: f64,
//!     y: f64,
//! }
//!
//! let p = Value::<Point>::anonymous(Point { x: 1.0, y: 2.0 })?;
//! assert_eq!(p.get().y, 2.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod array;
pub mod error;
pub mod handle;
pub mod inspect;
pub mod map;
pub mod message;
pub mod msg_queue;
pub mod name;
pub mod pipe;
pub mod process;
pub mod queue;
pub mod ring;
pub mod role;
pub mod segment;
pub mod sync;

pub use array::{Array, ArrayInit, Value};
pub use bytemuck;
pub use error::{CreateError, OpenError, OpenOrCreateError, TypeMismatch, UnlinkError};
pub use handle::{Access, Create, IntoInit, ReadOnly, ReadOnlyView, ReadWrite, Shared};
pub use map::{ByteMapInit, MapError, SharedByteMap, SharedMap};
pub use msg_queue::{message_channel, JoinableQueue, MessageQueue, MessageReceiver, MessageSender};
pub use sync::LockedArray;
/// Python's `Value(t, v, lock=True)`: a value reached only through its
/// robust lock (the same object as [`sync::Mutex`]).
pub type LockedValue<T> = sync::Mutex<T>;
pub use name::{InvalidName, SegmentName};
pub use pipe::{Connection, Pipe};
pub use queue::{Queue, Receiver, Sender};
pub use ring::Ring;
pub use segment::{Expect, ObjectSpec, Options, Owner, Segment};
pub use shmkit_core::{Pod, Zeroable};

/// The names most programs use: `use shmkit_posix::prelude::*;`.
pub mod prelude {
    pub use crate::array::SharedSliceExt;
    pub use crate::pipe::{self, Connection, Pipe};
    pub use crate::process;
    pub use crate::queue::{self, Queue, Receiver, Sender};
    pub use crate::ring::{self, Ring};
    pub use crate::sync::{
        Barrier, Condition, Event, Lock, LockedArray, Mutex, RLock, RwLock, Semaphore,
    };
    pub use crate::{Array, Options, Pod, Shared, SharedByteMap, SharedMap, Value, Zeroable};
}
