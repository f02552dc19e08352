//! The facade over [`shmkit_core`] (what lives inside a segment) and
//! [`shmkit_posix`] (creating, naming and mapping segments). The README
//! follows; its examples run as doctests.
#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub use shmkit_core as core;
pub use shmkit_posix as posix;
pub use shmkit_posix::*;
