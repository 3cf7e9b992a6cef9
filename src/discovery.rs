//! Discovery directories and segment status, for tools (`flink list`,
//! `inspect`, `clean`): read-only inspection, and removal of stale segments
//! decided by the participants' kernel locks.
//!
//! The one place that knows every kind of segment: what acts on whatever a
//! flink file names (inspect, reclaim, clean, making way for a new segment)
//! dispatches on its kind here.

use std::path::{Path, PathBuf};

pub use crate::segment::dir::default_discovery_dir;
pub use crate::segment::flink::{read as read_flink, FlinkInfo, SegmentKind};
pub use crate::segment::reclaim::Reclaim;
pub use crate::segment::state::SegmentState;
pub use crate::ring::status::{ParticipantStatus, Reaped, SegmentStatus};

use crate::error::OpenError;
use crate::segment::reclaim::{self, Lineage};
use crate::segment::{dir, flink};

/// The lineage of each kind (see `segment::reclaim`): only a ring has
/// older objects, its earlier generations.
pub(crate) fn lineage_of(kind: SegmentKind) -> Lineage {
    match kind {
        SegmentKind::Ring => crate::ring::status::predecessor_of,
        SegmentKind::Blackboard => reclaim::no_lineage,
    }
}

/// Inspects the segment behind one flink file, read-only and without
/// joining it. For a blackboard only the state fields are filled (see
/// [`crate::blackboard::inspect`] for its entries).
///
/// # Errors
/// [`OpenError`] for an unsafe or invalid flink file, an object that fails
/// validation (the error says what failed), or a system error.
pub fn inspect(flink_path: &Path) -> Result<SegmentStatus, OpenError> {
    let fl = flink::read(flink_path)?;
    match fl.kind {
        SegmentKind::Ring => crate::ring::status::inspect(flink_path, &fl),
        SegmentKind::Blackboard => {
            let b = crate::blackboard::inspect(flink_path)?;
            Ok(SegmentStatus { creator_alive: b.creator_alive, attached: b.attached, ..SegmentStatus::without_ring(flink_path, b.segment_path, b.state, &fl) })
        }
    }
}

/// One file of a discovery directory.
#[derive(Debug)]
pub struct ScanEntry {
    /// The file.
    pub path: PathBuf,
    /// Its segment, or why it could not be read (a foreign file, a corrupt
    /// segment, no permission, …).
    pub status: Result<SegmentStatus, OpenError>,
}

/// Lists a discovery directory: every entry but hidden (`.`-prefixed)
/// temporary files, sorted by name.
///
/// # Errors
/// [`OpenError`] when the directory is missing, unsafe or unreadable.
pub fn scan(dir: &Path) -> Result<Vec<ScanEntry>, OpenError> {
    dir::check_dir(dir)?;
    let rd = std::fs::read_dir(dir).map_err(|source| OpenError::Io { op: "read discovery directory", path: dir.to_owned(), source })?;
    let mut paths: Vec<PathBuf> = rd.filter_map(Result::ok).filter(|e| !e.file_name().as_encoded_bytes().starts_with(b".")).map(|e| e.path()).collect();
    paths.sort();
    Ok(paths.into_iter().map(|path| ScanEntry { status: inspect(&path), path }).collect())
}

/// Removes the segment behind `flink_path` if it is stale: its creator is
/// dead and no participant is attached (judged by their kernel locks, never
/// by the pid in the file), or its object no longer exists.
///
/// Safe against any number of concurrent removers and creators: exactly
/// one remover removes a stale segment, nobody can attach to it meanwhile,
/// and a new live segment published under the same name is never removed.
///
/// # Errors
/// [`OpenError`] for a file that is not a flink file of ours (left alone),
/// or a system error.
pub fn reclaim(flink_path: &Path) -> Result<Reclaim, OpenError> {
    reclaim::reclaim(flink_path, false, false, lineage_of)
}

/// [`reclaim`], and a leaked segment nobody is attached to is removed too.
///
/// # Errors
/// As [`reclaim`].
pub fn reclaim_leaked(flink_path: &Path) -> Result<Reclaim, OpenError> {
    reclaim::reclaim(flink_path, false, true, lineage_of)
}

/// Makes way for a new segment of any kind at `flink_path`: a stale one
/// published there (creator dead, nobody attached) is reclaimed, whatever
/// its kind; a live or leaked one, or anything that is not a flink file,
/// is not.
pub(crate) fn clear_for_create(flink_path: &Path) -> Result<(), OpenError> {
    if flink_path.symlink_metadata().is_err() {
        return Ok(());
    }
    match reclaim(flink_path) {
        Ok(Reclaim::Removed { .. } | Reclaim::Gone) => Ok(()),
        Ok(Reclaim::Live { creator_pid }) => Err(OpenError::InUse { path: flink_path.to_owned(), creator_pid }),
        Ok(Reclaim::Leaked) => Err(OpenError::Leaked { path: flink_path.to_owned() }),
        Ok(Reclaim::Busy) => Err(OpenError::Busy { path: flink_path.to_owned(), what: "another process is removing the segment there" }),
        Err(OpenError::Io { source, .. }) if source.kind() != std::io::ErrorKind::NotFound => Err(OpenError::Io { op: "reclaim existing flink file", path: flink_path.to_owned(), source }),
        Err(_) => Err(OpenError::Exists(flink_path.to_owned())),
    }
}

/// What [`clean`] did with one file.
#[derive(Debug)]
pub struct CleanEntry {
    /// The flink file.
    pub path: PathBuf,
    /// What happened (or, in a dry run, what would happen).
    pub outcome: Result<CleanOutcome, OpenError>,
}

/// One file's fate in [`clean`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanOutcome {
    /// Stale or orphan: removed (dry run: would be removed).
    Removed {
        /// The object named.
        segment_name: String,
        /// Whether the object existed.
        object_existed: bool,
    },
    /// Live: left alone.
    Live,
    /// Leaked and not asked to include leaked segments: left alone.
    Leaked,
    /// Removed or replaced by someone else meanwhile.
    Gone,
}

/// Removes every stale segment (and orphan flink file) of a discovery
/// directory; never a live one, never a file that is not a flink file of
/// ours (those are reported as errors and left alone), and a leaked one only
/// with `include_leaked`. With `dry_run`, reports what it would remove and
/// removes nothing.
///
/// # Errors
/// [`OpenError`] when the directory is missing, unsafe or unreadable.
pub fn clean(dir: &Path, dry_run: bool, include_leaked: bool) -> Result<Vec<CleanEntry>, OpenError> {
    let entries = scan(dir)?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let outcome = match e.status {
                Ok(st) if st.state == SegmentState::Live => Ok(CleanOutcome::Live),
                Ok(st) if st.state == SegmentState::Leaked && !include_leaked => Ok(CleanOutcome::Leaked),
                // The flink file itself is refused or invalid: not ours to touch.
                Err(err) if error_path(&err) == Some(e.path.as_path()) => Err(err),
                // Stale or orphan, or a valid flink file whose object fails
                // validation: liveness is decided by the locks, not by the
                // object's contents.
                _ => reclaim::reclaim(&e.path, dry_run, include_leaked, lineage_of).map(|r| match r {
                    Reclaim::Removed { segment_name, object_existed } => CleanOutcome::Removed { segment_name, object_existed },
                    Reclaim::Live { .. } => CleanOutcome::Live,
                    Reclaim::Leaked => CleanOutcome::Leaked,
                    // Another remover is at it: for this cleaner it is gone.
                    Reclaim::Gone | Reclaim::Busy => CleanOutcome::Gone,
                }),
            };
            CleanEntry { path: e.path, outcome }
        })
        .collect())
}

/// The path an error is about.
fn error_path(e: &OpenError) -> Option<&Path> {
    match e {
        OpenError::Io { path, .. } | OpenError::Invalid { path, .. } | OpenError::Unsafe { path, .. } | OpenError::InUse { path, .. } => Some(path),
        OpenError::Exists(path) | OpenError::Leaked { path } | OpenError::Busy { path, .. } | OpenError::BeingRemoved { path } | OpenError::NotPublished { path } => Some(path),
        _ => None,
    }
}
