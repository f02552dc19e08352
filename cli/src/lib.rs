//! The benchmark suite behind the `shmkit bench` command: cases, floors,
//! peers and shmkit impls run between real, pinned processes, interleaved
//! round by round (see `docs/bench.md`). Its own crate, so a program that
//! depends on the `shmkit` library compiles none of it.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod bench;
