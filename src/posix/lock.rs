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
use std::io;
use std::os::fd::AsRawFd;

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

/// A lock type for [`set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
    Unlock,
}

fn flock(kind: i16, start: u64, len: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value (and
    // `l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    fl
}

/// Takes (or drops) a lock on `[start, start + len)` without waiting.
/// `Ok(false)` when another open file description holds a conflicting lock.
pub(crate) fn set(file: &File, kind: Kind, start: u64, len: u64) -> io::Result<bool> {
    let t = match kind {
        Kind::Read => libc::F_RDLCK,
        Kind::Write => libc::F_WRLCK,
        Kind::Unlock => libc::F_UNLCK,
    };
    let fl = flock(t as i16, start, len);
    // SAFETY: a valid descriptor and a pointer to an initialised `flock`
    // that lives across the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &raw const fl) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Whether an open file description other than `file`'s holds any lock on
/// `[start, start + len)`. Errors count as "held": a participant is never
/// declared dead on a failed test.
pub(crate) fn held(file: &File, start: u64, len: u64) -> bool {
    let mut fl = flock(libc::F_WRLCK as i16, start, len);
    // SAFETY: a valid descriptor and a pointer to an initialised `flock` the
    // kernel overwrites with the first conflicting lock, if any.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &raw mut fl) };
    rc != 0 || fl.l_type != libc::F_UNLCK as i16
}

/// Whether a write lock on `byte` is held by someone else (the common test:
/// is this participant alive?).
pub(crate) fn alive(file: &File, byte: u64) -> bool {
    held(file, byte, 1)
}
