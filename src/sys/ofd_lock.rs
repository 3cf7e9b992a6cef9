//! Open-file-description byte-range locks (`F_OFD_SETLK` / `F_OFD_GETLK`):
//! the system calls, nothing about what the bytes mean (that is the
//! liveness byte map, `segment::liveness`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

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
