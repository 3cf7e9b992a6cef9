//! The system calls on POSIX shared-memory objects, made here and nowhere
//! else, with errno mapped to `io::Error` for the caller to attach a path to.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in shm name"))
}

/// Creates a new object `name` of `size` bytes, mode 0600, failing if it
/// exists (`O_EXCL`): the mode is right from the first instant.
pub(crate) fn create(name: &str, size: u64) -> io::Result<File> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string; shm_open has no other
    // memory-safety preconditions.
    let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by shm_open and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    if let Err(e) = file.set_len(size) {
        let _ = unlink(name);
        return Err(e);
    }
    Ok(file)
}

/// Opens an existing object read-write.
pub(crate) fn open(name: &str) -> io::Result<File> {
    open_with(name, libc::O_RDWR)
}

/// Opens an existing object read-only (for inspection).
pub(crate) fn open_read_only(name: &str) -> io::Result<File> {
    open_with(name, libc::O_RDONLY)
}

fn open_with(name: &str, access: libc::c_int) -> io::Result<File> {
    let c = c_name(name)?;
    // SAFETY: as in `create`.
    let fd = unsafe { libc::shm_open(c.as_ptr(), access | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by shm_open and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Removes the object's name (mappings stay valid).
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    if unsafe { libc::shm_unlink(c.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// 64 random bits from the kernel.
pub(crate) fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: the buffer is 8 writable bytes owned by this frame.
    let n = unsafe { libc::getrandom((&raw mut v).cast(), 8, 0) };
    if n != 8 {
        // Fall back to time and pid: uniqueness is still checked by O_EXCL.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        v = t ^ (u64::from(std::process::id()) << 32);
    }
    v
}
