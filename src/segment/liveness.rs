//! Liveness by the kernel: open-file-description byte-range locks
//! (`F_OFD_SETLK`) on the shared-memory object itself, one byte per
//! participant. The kernel drops a process's locks when it dies (its last
//! descriptor of the open file description closes), whatever killed it, and
//! anyone can test a byte with `F_OFD_GETLK`. A stored pid is only shown.
//!
//! ```text
//!  byte 0          creator        write lock, held for the creator's life
//!  byte 1          attached       read lock, held by every attached handle
//!  byte 2          grow           write lock, held while a writer moves a
//!                                 growing ring to its next generation
//!  bytes 64..128   reader r       write lock, held while entry r is ACTIVE
//!  bytes 128..192  writer w       write lock, held while entry w is ACTIVE
//! ```
//!
//! The bytes lie past nothing in particular: locks may cover any offset, and
//! the object's contents are not involved. A handle holds its locks through
//! one descriptor and tests through another: locks of one open file
//! description never conflict with each other, so testing through the
//! holding descriptor would call our own participants dead.
//!
//! Whoever takes a write lock over `[0, LOCK_SPAN)` has proved that nobody
//! else is attached (no creator, reader, writer or attached handle alive), and
//! keeps that true while it removes the segment.

use std::fs::File;

pub(crate) use crate::sys::ofd_lock::{held, set, Kind};

/// The creator's byte.
pub(crate) const CREATOR: u64 = 0;
/// Every attached handle holds a read lock here.
pub(crate) const ATTACHED: u64 = 1;
/// Held by the writer moving a growing ring (see `grow`).
pub(crate) const GROW: u64 = 2;
/// Reader entry `r` is byte `READER_BASE + r`.
pub(crate) const READER_BASE: u64 = 64;
/// Writer entry `w` is byte `WRITER_BASE + w`.
pub(crate) const WRITER_BASE: u64 = 128;
/// Every participant byte lies below this.
pub(crate) const LOCK_SPAN: u64 = 192;

/// Whether a write lock on `byte` is held by someone else (the common test:
/// is this participant alive?).
pub(crate) fn alive(file: &File, byte: u64) -> bool {
    held(file, byte, 1)
}
