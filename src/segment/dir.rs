//! Discovery directories: where flink files live, created private (0700)
//! and checked before anything in them is trusted or written.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::OpenError;

/// The default discovery directory: `$SHMSLOT_DIR`, else
/// `$XDG_RUNTIME_DIR/shmslot`, else `/tmp/shmslot-<uid>`.
pub fn default_discovery_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SHMSLOT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("shmslot");
    }
    PathBuf::from(format!("/tmp/shmslot-{}", crate::sys::shm::euid()))
}

/// Creates `dir` (mode 0700) if missing and checks it is safe: a real
/// directory (not a symlink), ours, not writable by group or others.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), OpenError> {
    let dir = &normalize_dir(dir)?;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(OpenError::Io { op: "create directory (its parent must exist)", path: dir.to_owned(), source }),
    }
    check_dir(dir)
}

/// `dir` without trailing `/` and `.` (`link/` and `link/.` would make the
/// system follow `link` when it is a symbolic link). A path ending in `..`
/// is refused.
pub(crate) fn normalize_dir(dir: &Path) -> Result<PathBuf, OpenError> {
    if dir.components().next_back() == Some(std::path::Component::ParentDir) {
        return Err(OpenError::Unsafe { path: dir.to_owned(), reason: "the directory path ends in '..' (name the directory itself)" });
    }
    let n: PathBuf = dir.components().collect();
    Ok(if n.as_os_str().is_empty() { PathBuf::from(".") } else { n })
}

/// Checks an existing directory as [`ensure_dir`] does.
pub(crate) fn check_dir(dir: &Path) -> Result<(), OpenError> {
    let dir = &normalize_dir(dir)?;
    let md = fs::symlink_metadata(dir).map_err(|source| OpenError::Io { op: "stat directory", path: dir.to_owned(), source })?;
    let refuse = |reason| Err(OpenError::Unsafe { path: dir.to_owned(), reason });
    if md.file_type().is_symlink() {
        return refuse("the directory is a symbolic link");
    }
    if !md.is_dir() {
        return refuse("not a directory");
    }
    if md.uid() != crate::sys::shm::euid() {
        return refuse("the directory is owned by another user");
    }
    if md.mode() & 0o022 != 0 {
        return refuse("the directory is writable by group or others (chmod 700 it)");
    }
    Ok(())
}

/// Where a flink file lives: a bare name goes into the discovery directory,
/// a path is used as given. With `create_dir` (a create) the directory is
/// made, 0700, when it is missing (its parent must exist: one level, never
/// a whole path); either way it is checked: not a symlink, ours, not
/// group/other writable.
pub(crate) fn resolve(flink_path: &Path, dir: Option<&Path>, create_dir: bool) -> Result<PathBuf, OpenError> {
    let bare = flink_path.components().count() == 1 && !flink_path.is_absolute();
    if bare && !flink_path.as_os_str().as_encoded_bytes().contains(&b'/') {
        let dir = normalize_dir(&dir.map_or_else(default_discovery_dir, Path::to_owned))?;
        if create_dir {
            ensure_dir(&dir)?;
        } else {
            check_dir(&dir)?;
        }
        Ok(dir.join(flink_path))
    } else {
        if let Some(parent) = flink_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if create_dir {
                ensure_dir(parent)?;
            } else {
                check_dir(parent)?;
            }
        }
        Ok(flink_path.to_owned())
    }
}

