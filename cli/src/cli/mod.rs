//! The command line: argument parsing and dispatch.

mod bench;
mod inspect;
mod plot;
mod segments;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Shared-memory IPC for Rust processes: benchmarks and segment tools.
#[derive(Parser, Debug)]
#[command(name = "shmkit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark shmkit against its floors and peers between real processes.
    Bench(bench::BenchArgs),
    /// List shmkit segments in /dev/shm.
    Ls(segments::LsArgs),
    /// Show one segment's header and kind-specific state (read-only).
    Inspect(segments::InspectArgs),
    /// Remove (unlink) one segment.
    Rm(segments::RmArgs),
    /// List segments whose creator died and that no process maps; remove them with --yes.
    Gc(segments::GcArgs),
}

/// Parses the arguments, runs the command, prints errors to stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Bench(a) => bench::run(&a),
        Command::Ls(a) => segments::ls(&a),
        Command::Inspect(a) => segments::inspect(&a),
        Command::Rm(a) => segments::rm(&a),
        Command::Gc(a) => segments::gc(&a),
    };
    match r {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("shmkit: error: {msg}");
            ExitCode::from(1)
        }
    }
}
