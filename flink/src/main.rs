//! `flink`: the command-line tool for shmslot rings.
//!
//! Subcommands: `bench` (latency and throughput of shmslot against a
//! memcpy + flag floor, measured between two pinned processes). `list`,
//! `inspect` and `clean` come next; each subcommand is one module.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod bench;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tools for shmslot shared-memory rings.
#[derive(Parser, Debug)]
#[command(name = "flink", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure one-way latency and throughput of shmslot between two pinned
    /// processes, against a memcpy + flag floor measured in the same run.
    Bench(bench::BenchArgs),
    /// The peer process of `flink bench` (internal: started by `bench`).
    #[command(name = "__bench-child", hide = true)]
    BenchChild(bench::ChildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::BenchChild(args) => bench::child_main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flink: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
