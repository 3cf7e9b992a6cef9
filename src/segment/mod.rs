//! One segment's life, whatever its kind (ring or blackboard): its name,
//! the discovery directory and flink file that publish it, the liveness
//! byte map of its participants' kernel locks, and leaving it.

pub(crate) mod flink;
pub(crate) mod liveness;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::OpenError;
use crate::sys::shm;
use flink::default_discovery_dir;
use liveness as lock;

/// Where a flink file lives: a bare name goes into the discovery directory
/// (created if `create_dir`), a path is used as given. Either directory is
/// checked: not a symlink, ours, not group/other writable.
pub(crate) fn resolve(flink_path: &Path, dir: Option<&Path>, create_dir: bool) -> Result<PathBuf, OpenError> {
    let bare = flink_path.components().count() == 1 && !flink_path.is_absolute();
    if bare && !flink_path.as_os_str().as_encoded_bytes().contains(&b'/') {
        let dir = flink::normalize_dir(&dir.map_or_else(default_discovery_dir, Path::to_owned))?;
        if create_dir {
            flink::ensure_dir(&dir)?;
        } else {
            flink::check_dir(&dir)?;
        }
        Ok(dir.join(flink_path))
    } else {
        if let Some(parent) = flink_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            flink::check_dir(parent)?;
        }
        Ok(flink_path.to_owned())
    }
}

/// Makes way for a new segment at `flink_path` (ring or blackboard): a
/// stale one published there (creator dead, nobody attached) is reclaimed;
/// a live or leaked one, or anything that is not a flink file, is not.
pub(crate) fn clear_for_create(flink_path: &Path) -> Result<(), OpenError> {
    if flink_path.symlink_metadata().is_err() {
        return Ok(());
    }
    match crate::ring::status::reclaim(flink_path) {
        Ok(crate::ring::status::Reclaim::Removed { .. } | crate::ring::status::Reclaim::Gone) => Ok(()),
        Ok(crate::ring::status::Reclaim::Live { creator_pid }) => Err(OpenError::InUse { path: flink_path.to_owned(), creator_pid }),
        Ok(crate::ring::status::Reclaim::Leaked) => Err(OpenError::Leaked { path: flink_path.to_owned() }),
        Ok(crate::ring::status::Reclaim::Busy) => Err(OpenError::Io { op: "reclaim (another process is removing the segment there)", path: flink_path.to_owned(), source: std::io::ErrorKind::WouldBlock.into() }),
        Err(OpenError::Io { source, .. }) if source.kind() != std::io::ErrorKind::NotFound => Err(OpenError::Io { op: "reclaim existing flink file", path: flink_path.to_owned(), source }),
        Err(_) => Err(OpenError::Exists(flink_path.to_owned())),
    }
}

/// What a handle does last when it leaves a segment (ring or blackboard),
/// (`segment_names`: its object, or every generation of a growing ring),
/// with every entry it held already freed: unless the flink file marks the
/// segment leaked, the owner removes it (flink file and object), and any
/// other handle removes it if it is the last one out.
///
/// "Last one out" is decided by the kernel locks: the handle lets go of
/// every byte first, then tries to hold them all. Of handles leaving at the
/// same time each lets go before it tries, so the last to let go finds
/// nobody (and two trying at once cannot both fail: the first lock taken
/// wins). Holding them all means every other participant is gone, the
/// creator included; holding them while removing means nobody attaches
/// meanwhile.
pub(crate) fn leave_segment(flink_path: &Path, segment_names: &[String], locks: &File, owner: bool) {
    let last = || lock::set(locks, lock::Kind::Unlock, 0, lock::LOCK_SPAN).is_ok() && lock::set(locks, lock::Kind::Write, 0, lock::LOCK_SPAN).unwrap_or(false);
    if !owner && !last() {
        return;
    }
    match flink::claim(flink_path) {
        // Leaked: it outlives its participants until someone `own`s it or
        // `flink clean --leaked` removes it.
        Ok(Ok(c)) if segment_names.contains(&c.info.segment_name) && c.info.leaked => return,
        Ok(Ok(c)) if segment_names.contains(&c.info.segment_name) => {
            c.remove();
        }
        // Not published (any more) under that path: only the objects are ours.
        _ => {}
    }
    for name in segment_names {
        let _ = shm::unlink(name);
    }
}
