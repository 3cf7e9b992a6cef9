//! A board as `flink list` / `flink inspect` show it: read-only, without
//! joining it (no participant lock is taken, so looking never keeps a board
//! alive). Everything read from the entry blocks is display data.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::error::{hex, TypeDesc};
use super::layout::{EntryState, ENTRY_LOCK_BASE};
use super::segment::open_validated;
use super::validate::BoardInfo;
use super::EntryId;
use crate::error::{OpenError, ValidationError};
use crate::segment::name::shm_path;
use crate::segment::object::{Access, Object};
use crate::segment::state::SegmentState;
use crate::segment::{flink, liveness as lock};

/// One entry of a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryStatus {
    /// Its id.
    pub id: EntryId,
    /// Its key's bytes, hex (at most 32 bytes shown).
    pub key_hex: String,
    /// Its value type.
    pub value_type: TypeDesc,
    /// Its latest version (updates since creation).
    pub version: u64,
    /// Whether a writer claims it.
    pub writer_claimed: bool,
    /// Whether a live process holds its writer lock (decided by the kernel).
    pub writer_alive: bool,
    /// The pid recorded by its writer (display only).
    pub writer_pid: u32,
    /// Threads waiting for a change right now.
    pub waiters: u32,
}

/// A board as seen through its flink file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlackboardStatus {
    /// The flink file.
    pub flink_path: PathBuf,
    /// The OS object (`/dev/shm/shmslot.<uid>.<random>`).
    pub segment_path: PathBuf,
    /// Live, stale or orphan.
    pub state: SegmentState,
    /// Whether the creator's process is alive.
    pub creator_alive: bool,
    /// Whether any handle (other than the inspector) is attached.
    pub attached: bool,
    /// Creator's pid (display only).
    pub creator_pid: u32,
    /// Creation time, ms since the epoch.
    pub created_unix_ms: u64,
    /// The key type.
    pub key_type: Option<TypeDesc>,
    /// Total bytes of the segment.
    pub total_size: u64,
    /// The entries (empty for an orphan).
    pub entries: Vec<EntryStatus>,
}

/// The status of a mapped, validated board; `probe` is a descriptor of the
/// object that holds no lock.
pub(crate) fn read_status<'m>(info: &BoardInfo, state_of: &dyn Fn(usize) -> &'m EntryState, probe: &std::fs::File, flink_path: &Path, segment_path: PathBuf) -> BlackboardStatus {
    let entries = info
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let st = state_of(i);
            EntryStatus {
                id: EntryId(i as u32),
                key_hex: hex(info.key_bytes(i)),
                value_type: e.value,
                version: st.version.load(Ordering::Relaxed),
                writer_claimed: st.claim.load(Ordering::Relaxed) != 0,
                writer_alive: lock::alive(probe, ENTRY_LOCK_BASE + i as u64),
                writer_pid: st.writer_pid.load(Ordering::Relaxed),
                waiters: st.waiters.load(Ordering::Relaxed),
            }
        })
        .collect();
    BlackboardStatus {
        flink_path: flink_path.to_owned(),
        segment_path,
        state: SegmentState::judge(probe, false, flink::read(flink_path).is_ok_and(|f| f.leaked)),
        creator_alive: lock::alive(probe, lock::CREATOR),
        attached: lock::held(probe, lock::ATTACHED, 1),
        creator_pid: info.creator_pid,
        created_unix_ms: info.created_unix_ms,
        key_type: Some(info.key),
        total_size: info.total_size,
        entries,
    }
}

/// Inspects the board behind a flink file, read-only and without joining
/// it: its entries (key, value type, version, writer claimed and alive),
/// whether its creator is alive and whether anyone is attached.
///
/// # Errors
/// [`OpenError`] for an unsafe or invalid flink file, a flink file that
/// names a ring, an object that fails validation (the error says what
/// failed), or a system error.
pub fn inspect(flink_path: impl AsRef<Path>) -> Result<BlackboardStatus, OpenError> {
    let flink_path = flink_path.as_ref();
    let fl = flink::read(flink_path)?;
    if fl.kind != flink::SegmentKind::Blackboard {
        let error = ValidationError::BadField { field: "flink kind", value: fl.kind.code().into(), expected: "1 (blackboard): this flink file names a slot ring" };
        return Err(OpenError::Invalid { path: flink_path.to_owned(), error });
    }
    let segment_path = shm_path(&fl.segment_name);
    let (Object { file, map, .. }, info) = match open_validated(&fl.segment_name, Access::ReadOnly) {
        Ok(x) => x,
        Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(BlackboardStatus {
                flink_path: flink_path.to_owned(),
                segment_path,
                state: SegmentState::Orphan,
                creator_alive: false,
                attached: false,
                creator_pid: fl.creator_pid,
                created_unix_ms: fl.created_unix_ms,
                key_type: None,
                total_size: 0,
                entries: Vec::new(),
            })
        }
        Err(e) => return Err(e),
    };
    let base = map.as_ptr();
    let state_of = |i: usize| -> &EntryState {
        // SAFETY: validated: entry `i`'s block lies inside the mapping,
        // 64-aligned; atomics only (any bits valid); `map` outlives the
        // call below.
        unsafe { &*base.add(info.entries[i].block_offset).cast::<EntryState>() }
    };
    Ok(read_status(&info, &state_of, &file, flink_path, segment_path))
}
