//! `flink`: the command-line tool for shmslot rings.
//!
//! Subcommands, one module each: `list` (every segment of a discovery
//! directory), `inspect` (one segment in full), `clean` (remove stale
//! segments), and `bench` (latency and throughput of shmslot, and with
//! `--transport` of its `ShmTransport`, against a memcpy + flag floor,
//! measured between two pinned processes). `segment` holds what list,
//! inspect and clean share.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod clean;
mod inspect;
mod list;
mod segment;

use std::fmt::Display;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flink::bench;

/// Tools for shmslot shared-memory rings.
#[derive(Parser, Debug)]
#[command(name = "flink", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every segment of a discovery directory: geometry, policy, who is
    /// alive, counters, age, and whether it is live, stale or an orphan.
    List(list::ListArgs),
    /// Show one segment in full: its flink file, geometry, type hash, every
    /// reader and writer, notify counters, and the validation result.
    Inspect(inspect::InspectArgs),
    /// Remove the stale segments (creator dead, nobody attached) and orphan
    /// flink files of a discovery directory; never a live one.
    Clean(clean::CleanArgs),
    /// Measure one-way latency and throughput of shmslot between two pinned
    /// processes, against a memcpy + flag floor measured in the same run
    /// (with --transport, also through ShmTransport, against the bare ring).
    Bench(bench::BenchArgs),
    /// The peer process of `flink bench` (internal: started by `bench`).
    #[command(name = "__bench-child", hide = true)]
    BenchChild(bench::ChildArgs),
}

/// Prints an error as `flink: …` and turns it into the exit code.
fn exit<E: Display>(result: Result<(), E>, code: impl FnOnce(&E) -> u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flink: {e}");
            ExitCode::from(code(&e))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List(args) => exit(list::run(&args), segment::CliError::exit_code),
        Command::Inspect(args) => exit(inspect::run(&args), segment::CliError::exit_code),
        Command::Clean(args) => exit(clean::run(&args), segment::CliError::exit_code),
        Command::Bench(args) => exit(bench::run(&args), bench::BenchError::exit_code),
        Command::BenchChild(args) => exit(bench::child_main(&args), bench::BenchError::exit_code),
    }
}
