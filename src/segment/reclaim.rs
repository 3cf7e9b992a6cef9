//! Reclaiming a stale segment: one whose creator is dead and that no
//! participant is attached to, judged by their kernel locks (never by the
//! pid in the flink file). What every kind shares is here; what only one
//! kind knows — which older objects belong to the same segment (a growing
//! ring's earlier generations) — comes in as its [`Lineage`], so this code
//! never reads one kind's fields from another kind's object.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::flink::{self, SegmentKind};
use super::liveness as lock;
use super::name::{name_of, shm_path};

use crate::error::OpenError;
use crate::sys::shm;

/// A kind's lineage: the id of the object that object `name` continues
/// (a growing ring's previous generation), 0 for none. Read by the kind
/// from its own header; an object of a kind without lineage has none.
pub(crate) type Lineage = fn(&str) -> u64;

/// The lineage of a kind whose objects continue nothing.
pub(crate) fn no_lineage(_: &str) -> u64 {
    0
}

/// Longest lineage walked (a growing ring's generation limit).
pub(crate) const MAX_LINEAGE: u32 = 32;

/// How [`reclaim`](crate::discovery::reclaim) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// The segment was stale (or its object missing) and is gone now: flink
    /// file and object removed by this call.
    Removed {
        /// The object that was named.
        segment_name: String,
        /// Whether the object still existed (false: an orphan flink file).
        object_existed: bool,
    },
    /// Someone is alive in it: nothing was touched.
    Live {
        /// The pid the flink file records (display only).
        creator_pid: u32,
    },
    /// Nobody is attached, but the segment was leaked on purpose: nothing
    /// was touched (see [`reclaim_leaked`](crate::discovery::reclaim_leaked)).
    Leaked,
    /// The flink file disappeared or was replaced meanwhile (another remover
    /// got there first); nothing was touched.
    Gone,
    /// Another remover held the flink file for longer than we wait (2 s);
    /// nothing was touched.
    Busy,
}

/// Removes the segment behind `flink_path` if it is stale: its creator is
/// dead and no participant is attached (judged by their kernel locks, never
/// by the pid in the file), or its object no longer exists.
///
/// Safe against any number of concurrent removers and creators: the flink
/// file is claimed (see `flink::FlinkClaim`), and the object is held with a
/// write lock over every participant byte while both are removed, so
/// exactly one remover removes a stale segment, nobody can attach to it
/// meanwhile, and a new live segment published under the same name is never
/// removed.
///
/// With `dry_run`, takes the same locks and decides the same way, but
/// removes nothing; with `leaked`, leaked segments count as stale.
/// `lineage_of` gives the [`Lineage`] of the kind the flink file names:
/// only that kind's own code reads the object's fields.
///
/// # Errors
/// [`OpenError`] for a file that is not a flink file of ours (left alone),
/// or a system error.
pub(crate) fn reclaim(flink_path: &Path, dry_run: bool, leaked: bool, lineage_of: fn(SegmentKind) -> Lineage) -> Result<Reclaim, OpenError> {
    let claim = match flink::claim(flink_path)? {
        Ok(c) => c,
        Err(flink::Unclaimed::Gone) => return Ok(Reclaim::Gone),
        Err(flink::Unclaimed::Busy) => return Ok(Reclaim::Busy),
    };
    let name = claim.info.segment_name.clone();
    let creator_pid = claim.info.creator_pid;
    let lineage = lineage_of(claim.info.kind);
    let shm_path = shm_path(&name);
    let object = match shm::open(&name) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(OpenError::Io { op: "open shared-memory object", path: shm_path, source }),
    };
    if let Some(f) = &object {
        let md = f.metadata().map_err(|source| OpenError::Io { op: "fstat", path: shm_path.clone(), source })?;
        if md.uid() != shm::euid() {
            return Err(OpenError::Unsafe { path: shm_path, reason: "the shared-memory object is owned by another user" });
        }
        match lock::set(f, lock::Kind::Write, 0, lock::LOCK_SPAN) {
            Ok(true) => {}
            Ok(false) => return Ok(Reclaim::Live { creator_pid }),
            Err(source) => return Err(OpenError::Io { op: "lock", path: shm_path, source }),
        }
        if chain_held(lineage(&name), lineage) {
            return Ok(Reclaim::Live { creator_pid });
        }
    }
    // Held: the flink claim, and (if it exists) every participant byte.
    if claim.info.leaked && !leaked && object.is_some() {
        return Ok(Reclaim::Leaked);
    }
    if dry_run {
        return Ok(Reclaim::Removed { segment_name: name, object_existed: object.is_some() });
    }
    if !claim.remove() {
        return Ok(Reclaim::Gone);
    }
    if object.is_some() {
        let pred = lineage(&name);
        let _ = shm::unlink(&name);
        remove_stale_predecessors(pred, lineage);
    }
    Ok(Reclaim::Removed { segment_name: name, object_existed: object.is_some() })
}

/// Whether an older object of a segment, from object `id` back, is held by
/// someone alive (a growing ring's reader that has not moved on yet is a
/// participant of the ring, although it holds no lock on the newest
/// generation).
pub(crate) fn chain_held(mut id: u64, lineage: Lineage) -> bool {
    for _ in 0..MAX_LINEAGE {
        if id == 0 {
            return false;
        }
        let name = name_of(id);
        let Ok(f) = shm::open_read_only(&name) else { return false };
        if lock::held(&f, 0, lock::LOCK_SPAN) {
            return true;
        }
        id = lineage(&name);
    }
    false
}

/// After a segment's newest object was reclaimed: its older objects that
/// still exist and that nobody holds (every participant byte lockable) go
/// too; a live one stops the walk.
fn remove_stale_predecessors(mut id: u64, lineage: Lineage) {
    for _ in 0..MAX_LINEAGE {
        if id == 0 {
            return;
        }
        let name = name_of(id);
        let Ok(f) = shm::open(&name) else { return };
        if f.metadata().map_or(true, |m| m.uid() != shm::euid()) || !lock::set(&f, lock::Kind::Write, 0, lock::LOCK_SPAN).unwrap_or(false) {
            return;
        }
        id = lineage(&name);
        let _ = shm::unlink(&name);
    }
}

