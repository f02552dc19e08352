//! # shmkit-core
//!
//! Everything that lives *inside* a shmkit shared-memory segment, with no
//! `std` and no allocator: the [segment header](header), element-wise
//! [shared data](shared), the [shared map](map), and the
//! [wait/wake](wait) and [owner] layers that blocking primitives
//! are built on.
//!
//! Objects here are `#[repr(C)]`, pointer-free and position-independent, so
//! they work at whatever address each process maps them. They validate
//! every value read back from shared memory: a corrupt or hostile peer can
//! make an operation fail, never make this process read out of bounds.
//!
//! Placing objects in named, anonymous or memfd segments is the job of the
//! `shmkit-posix` crate; bare-metal users put them in their own shared RAM
//! and register a [`wait::Platform`].
//!
//! ```
//! use shmkit_core::header::{self, Fingerprint, HeaderInit, HeaderSnapshot, Kind};
//! use core::ptr::NonNull;
//!
//! #[repr(C, align(128))]
//! struct Memory([u8; 512]);
//! let mut mem = Memory([0; 512]);
//! let base = NonNull::new(mem.0.as_mut_ptr()).unwrap();
//! let init = HeaderInit {
//!     kind: Kind::ARRAY,
//!     fingerprint: Fingerprint::of::<u64>([32, 0]),
//!     type_name: "u64",
//!     payload_len: 256,
//!     creator_pid: 1,
//!     creator_start: 0,
//! };
//! // SAFETY: `mem` is 512 writable bytes, 128-aligned, used by nobody else.
//! let snapshot = unsafe {
//!     header::begin_init(base, &init);
//!     header::publish(base);
//!     HeaderSnapshot::read(base)
//! };
//! snapshot.validate(512).unwrap();
//! assert_eq!(snapshot.kind, Kind::ARRAY);
//! ```

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "std")]
extern crate std;

pub mod header;
pub mod map;
pub mod object;
pub mod owner;
pub mod primitive;
pub mod queue;
pub mod shared;
pub mod sync;
mod sys;
pub mod wait;

pub use bytemuck::{Pod, Zeroable};
