//! `shmkit`: benchmark shmkit against its floors and peers, and inspect,
//! remove and garbage-collect shmkit segments in `/dev/shm`.
//!
//! Run `shmkit --help` or `shmkit <command> --help`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
