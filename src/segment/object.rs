//! The shared-memory object of a segment, whatever its kind: created
//! exclusively, or opened and checked before its bytes are trusted, mapped,
//! and announced with this handle's liveness locks. A kind validates its
//! own bytes in between (`open_checked` maps, the kind validates,
//! `announce` joins).
//!
//! Every check that keeps another user or a careless peer out is made
//! here, once, for rings, blackboards and inspection alike:
//! the owner must be us, the mode must not let group or others write, the
//! size must be within what the kind accepts before anything is mapped, and
//! an attacher's lock must be taken while the object still has its name
//! (a remover holds every participant byte while it unlinks).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

use memmap2::{MmapOptions, MmapRaw};

use super::liveness;
use super::name::{new_segment_name, shm_path};

use crate::error::{OpenError, ValidationError};
use crate::sys::shm;

/// A created or opened object, mapped.
pub(crate) struct Object {
    /// Its name (`/shmslot.<uid>.<hex>`).
    pub name: String,
    /// The object; liveness tests go through this descriptor (it holds no
    /// lock, so a test never sees this handle's own locks).
    pub file: File,
    /// The whole object, mapped.
    pub map: MmapRaw,
    /// Its size in bytes, from `fstat` (created: the size asked for).
    pub size: u64,
}

/// The sizes a kind accepts before its header is even read.
#[derive(Clone, Copy)]
pub(crate) struct SizeBounds {
    /// Its fixed header: anything shorter is `Truncated`.
    pub min: u64,
    /// Its largest valid segment.
    pub max: u64,
    /// `max` in words, for the error.
    pub max_text: &'static str,
}

/// Read-write for participants, read-only for inspection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    ReadWrite,
    ReadOnly,
}

fn io_err<'a>(op: &'static str, name: &'a str) -> impl FnOnce(io::Error) -> OpenError + 'a {
    move |source| OpenError::Io { op, path: shm_path(name), source }
}

/// Creates a fresh object of `size` bytes under a new random name (a name
/// taken already is retried a few times), maps it and takes this handle's
/// locks: `ATTACHED`, and `CREATOR` with `creator`, before anybody can know
/// the name, so from now until this process exits the segment is live.
/// Returns the object and the descriptor that holds the locks.
pub(crate) fn create_exclusive(size: u64, creator: bool) -> Result<(Object, File), OpenError> {
    let mut attempt = 0;
    loop {
        match create_named(&new_segment_name(), size, creator) {
            Err(OpenError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists && attempt < 4 => attempt += 1,
            other => return other,
        }
    }
}

/// [`create_exclusive`] under a given name (a growing ring names its next
/// generation before it makes it); `AlreadyExists` if it is taken.
pub(crate) fn create_named(name: &str, size: u64, creator: bool) -> Result<(Object, File), OpenError> {
    let file = shm::create(name, size).map_err(io_err("create shared-memory object", name))?;
    let cleanup = |e| {
        let _ = shm::unlink(name);
        e
    };
    let map = MmapOptions::new().len(size as usize).map_raw(&file).map_err(|e| cleanup(io_err("mmap", name)(e)))?;
    let locks = shm::open(name).map_err(|e| cleanup(io_err("open shared-memory object", name)(e)))?;
    let mut wanted = vec![(liveness::Kind::Read, liveness::ATTACHED)];
    if creator {
        wanted.push((liveness::Kind::Write, liveness::CREATOR));
    }
    for (kind, byte) in wanted {
        match liveness::set(&locks, kind, byte, 1) {
            Ok(true) => {}
            Ok(false) => return Err(cleanup(OpenError::Busy { path: shm_path(name), what: "another process locks the new object" })),
            Err(source) => return Err(cleanup(io_err("lock", name)(source))),
        }
    }
    Ok((Object { name: name.to_owned(), file, map, size }, locks))
}

/// Opens object `name` and maps it, after the checks every opener makes:
/// owned by us, not writable by group or others, a size within `bounds`.
/// Nothing of its contents is read here; the kind validates them next.
pub(crate) fn open_checked(name: &str, bounds: SizeBounds, access: Access) -> Result<Object, OpenError> {
    let path = shm_path(name);
    let file = match access {
        Access::ReadWrite => shm::open(name),
        Access::ReadOnly => shm::open_read_only(name),
    }
    .map_err(io_err("open shared-memory object", name))?;
    let md = file.metadata().map_err(io_err("fstat", name))?;
    if md.uid() != shm::euid() {
        return Err(OpenError::Unsafe { path, reason: "the shared-memory object is owned by another user" });
    }
    if md.mode() & 0o022 != 0 {
        return Err(OpenError::Unsafe { path, reason: "the shared-memory object is writable by group or others" });
    }
    let size = md.len();
    let invalid = |error| OpenError::Invalid { path: path.clone(), error };
    if size < bounds.min {
        return Err(invalid(ValidationError::Truncated { size, needed: bounds.min }));
    }
    if size > bounds.max {
        return Err(invalid(ValidationError::BadField { field: "object size", value: size, expected: bounds.max_text }));
    }
    let mut opts = MmapOptions::new();
    opts.len(size as usize);
    let map = match access {
        Access::ReadWrite => opts.map_raw(&file),
        Access::ReadOnly => opts.map_raw_read_only(&file),
    }
    .map_err(io_err("mmap", name))?;
    Ok(Object { name: name.to_owned(), file, map, size })
}

/// Joins an opened (and by now validated) object: takes the `ATTACHED`
/// read lock through a second descriptor, which is returned and holds this
/// handle's locks from now on. A remover holds a write lock over every
/// participant byte while it removes the segment: then this fails, or (if
/// it finished first) the object has no name any more; either way the
/// segment is being removed.
pub(crate) fn announce(object: &Object) -> Result<File, OpenError> {
    let name = object.name.as_str();
    let gone = || OpenError::BeingRemoved { path: shm_path(name) };
    let locks = shm::open(name).map_err(io_err("open shared-memory object", name))?;
    match liveness::set(&locks, liveness::Kind::Read, liveness::ATTACHED, 1) {
        Ok(true) => {}
        Ok(false) => return Err(gone()),
        Err(source) => return Err(OpenError::Io { op: "lock", path: shm_path(name), source }),
    }
    if object.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true) {
        return Err(gone());
    }
    Ok(locks)
}
