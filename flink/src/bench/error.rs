//! What can go wrong in `flink bench`, with messages that say where.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use shmslot::{OpenError, SlotError, TransportError};

/// An error of the bench or of its peer process.
#[derive(Debug)]
pub enum BenchError {
    /// Creating or attaching a ring failed.
    Open {
        /// Which ring, e.g. `create ring c3-ping`.
        what: String,
        /// The library's error.
        source: OpenError,
    },
    /// A ring operation failed.
    Slot {
        /// The operation, e.g. `reserve a slot`.
        op: &'static str,
        /// The library's error.
        source: SlotError,
    },
    /// A transport operation failed.
    Transport {
        /// The operation, e.g. `open an input port`.
        op: &'static str,
        /// The library's error.
        source: TransportError,
    },
    /// A system call or file operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or object concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Pinning to a CPU failed.
    Affinity {
        /// The CPU asked for.
        cpu: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The peer process failed or misbehaved.
    Child {
        /// What the parent saw (exit status, missing line).
        what: String,
        /// What the child printed on stderr.
        stderr: String,
    },
    /// The data received was not what was sent (out of order, torn, wrong length).
    Data(String),
    /// A wait made no progress for too long.
    Stalled {
        /// What was awaited.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// A compared system's own call failed (peer comparison).
    System {
        /// The system, e.g. `iceoryx2`.
        system: &'static str,
        /// The operation, e.g. `create publisher`.
        op: String,
        /// The system's error, as it prints it.
        detail: String,
    },
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl BenchError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Interrupted => 130,
            _ => 1,
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { what, source } => write!(f, "cannot {what}: {source}"),
            Self::Slot { op, source } => write!(f, "cannot {op}: {source}"),
            Self::Transport { op, source } => write!(f, "transport: cannot {op}: {source}"),
            Self::Io { op, path, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Self::Affinity { cpu, source } => {
                write!(f, "cannot pin to CPU {cpu}: {source} (see `nproc`; choose other CPUs with --cpus A,B)")
            }
            Self::Child { what, stderr } => {
                write!(f, "bench peer process: {what}")?;
                let s = stderr.trim();
                if !s.is_empty() {
                    write!(f, "\n  peer stderr: {}", s.replace('\n', "\n  peer stderr: "))?;
                }
                Ok(())
            }
            Self::Data(msg) => write!(f, "data check failed: {msg}"),
            Self::Stalled { what, after } => write!(f, "no progress {what} for {after:?}; giving up"),
            Self::System { system, op, detail } => write!(f, "{system}: cannot {op}: {detail}"),
            Self::Interrupted => write!(f, "interrupted; removed the bench's shared-memory objects and files"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open { source, .. } => Some(source),
            Self::Slot { source, .. } => Some(source),
            Self::Transport { source, .. } => Some(source),
            Self::Io { source, .. } | Self::Affinity { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Attaches an operation name to a [`SlotError`].
pub fn slot(op: &'static str) -> impl FnOnce(SlotError) -> BenchError {
    move |source| BenchError::Slot { op, source }
}

/// Attaches an operation name to a [`TransportError`].
pub fn transport_error(op: &'static str) -> impl FnOnce(TransportError) -> BenchError {
    move |source| BenchError::Transport { op, source }
}

/// Turns a compared system's error into [`BenchError::System`], naming the
/// operation.
pub fn system_error<E: fmt::Debug>(system: &'static str, op: impl Into<String>) -> impl FnOnce(E) -> BenchError {
    let op = op.into();
    move |e| BenchError::System { system, op, detail: format!("{e:?}") }
}

/// Result of the bench.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
