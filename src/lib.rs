//! # shmkit
//!
//! Shared-memory IPC primitives for Rust processes on one machine: the
//! facade over [`shmkit_core`] (what lives inside a segment) and
//! [`shmkit_posix`] (creating, naming and mapping segments).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub use shmkit_core as core;
pub use shmkit_posix as posix;
pub use shmkit_posix::*;

#[doc(hidden)]
pub mod bench;
