//! The blackboard's errors, and the type descriptions they show.

use std::fmt;
use std::path::PathBuf;

use super::EntryId;
use crate::error::OpenError;
use crate::Pod;

/// A key or value type as a board stores it: [`Pod::TYPE_HASH`], size and
/// alignment. Two types are the same for a board when all three match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeDesc {
    /// [`Pod::TYPE_HASH`] of the type.
    pub hash: [u8; 16],
    /// `size_of`, in bytes.
    pub size: u32,
    /// `align_of`, in bytes.
    pub align: u32,
}

impl TypeDesc {
    /// The description of `T`.
    pub fn of<T: Pod>() -> Self {
        Self { hash: T::TYPE_HASH, size: std::mem::size_of::<T>() as u32, align: std::mem::align_of::<T>() as u32 }
    }
}

impl fmt::Display for TypeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a type of {} bytes, align {}, hash ", self.size, self.align)?;
        self.hash.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Key bytes as hex (at most the first 32 bytes, then `…`).
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 32 {
        s.push('…');
    }
    s
}

/// Errors of the blackboard: building, creating and attaching a board, and
/// the operations of its entry handles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlackboardError {
    /// Creating or attaching the segment failed (flink file, shared-memory
    /// object, validation of a corrupt or foreign segment).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The board was created with another key type.
    #[error("{path}: the board's keys are {found}; this handle's key type {expected_name} is {expected}")]
    KeyTypeMismatch {
        /// The flink file.
        path: PathBuf,
        /// `type_name` of the handle's key type.
        expected_name: &'static str,
        /// The handle's key type.
        expected: TypeDesc,
        /// The key type the board stores.
        found: TypeDesc,
    },
    /// The entry holds another value type than the one asked for.
    #[error("entry {entry} holds {found}, not {expected_name} ({expected})")]
    ValueTypeMismatch {
        /// The entry.
        entry: EntryId,
        /// `type_name` of the type asked for.
        expected_name: &'static str,
        /// The type asked for.
        expected: TypeDesc,
        /// The type the entry holds.
        found: TypeDesc,
    },
    /// No entry has this key.
    #[error("no entry of this board has key {key} (hex)")]
    UnknownKey {
        /// The key's bytes, hex.
        key: String,
    },
    /// The entry id is not one of this board's.
    #[error("entry {id} does not exist: this board has {count} entries")]
    UnknownEntry {
        /// The id given.
        id: EntryId,
        /// Entries of the board.
        count: u32,
    },
    /// Two entries of a builder have the same key.
    #[error("duplicate key {key} (hex): every entry needs its own key")]
    DuplicateKey {
        /// The key's bytes, hex.
        key: String,
    },
    /// A builder setting or type is out of range.
    #[error("invalid blackboard configuration: {what} = {value} ({expected})")]
    Config {
        /// What was out of range.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The accepted range.
        expected: &'static str,
    },
    /// The entry already has a live writer (in this or another process).
    #[error("entry {entry} already has a live writer (pid {pid}, shown for reference only): only one EntryWriter per entry may exist")]
    WriterExists {
        /// The entry.
        entry: EntryId,
        /// The pid the entry records for its writer (display only).
        pid: u32,
    },
    /// A reader found no consistent value within its bounded attempts: the
    /// writer rewrote the entry faster than it could be copied every time,
    /// or the segment is corrupt (a hostile process wrote its state).
    #[error("entry {entry}: no consistent value after {attempts} attempts (the writer rewrites it faster than it can be copied, or the segment is corrupt)")]
    Contended {
        /// The entry.
        entry: EntryId,
        /// Attempts made.
        attempts: u32,
    },
    /// A system call failed (taking a writer's lock).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The shared-memory object.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
