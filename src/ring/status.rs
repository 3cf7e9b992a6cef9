//! What a ring looks like from outside: who is attached and alive, its
//! counters, whether it is live or stale, and its older generations. This is
//! what `flink list` and `flink inspect` show of a ring (through
//! [`crate::discovery`]).
//!
//! Inspection maps the object read-only and never takes a participant lock,
//! so looking at a segment never keeps it alive nor changes it. Everything
//! read from it is display data: bounded by the validated geometry, and
//! never used as an index.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::MmapOptions;

use super::layout::{Layout, CONTROL_OFFSET, READERS_OFFSET};
use super::validate::{validate, SegmentInfo};

use crate::error::OpenError;
use crate::protocol::{entry_kind, Control, ReaderEntry, WriterEntry, ENTRY_ACTIVE, ENTRY_RECLAIMING};
use crate::segment::flink::{FlinkInfo, SegmentKind};
use crate::segment::liveness as lock;
use crate::segment::name::shm_path;
use crate::segment::object::{self, Access};
use crate::segment::reclaim::chain_held;
use crate::segment::state::SegmentState;
use crate::sync::Ordering;
use crate::sys::shm;

/// What [`PosixSlotAllocator::reap_dead`](super::PosixSlotAllocator::reap_dead) freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Reader entries of dead processes freed.
    pub readers: u32,
    /// Writer entries of dead processes freed.
    pub writers: u32,
    /// Sequences skipped: loans (and unstamped claims) of dead writers.
    pub skipped: u32,
}

impl Reaped {
    /// Whether anything was freed.
    pub fn any(&self) -> bool {
        self.readers + self.writers > 0
    }
}

/// One reader or writer entry in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantStatus {
    /// Entry index (a reader's index is its bit in the masks).
    pub index: u32,
    /// Recorded pid (display only; not used to decide liveness).
    pub pid: u32,
    /// Whether its process holds its lock (decided by the kernel).
    pub alive: bool,
    /// Being freed by a reaper right now.
    pub reclaiming: bool,
    /// Reader: its next sequence; writer: samples it committed.
    pub position: u64,
    /// Reader: samples released (0 for a writer).
    pub received: u64,
    /// Reader: samples lost to `DropOldest` overwrites (0 for a writer).
    pub lost: u64,
    /// Reader: samples it keeps in place now (`PosixSlotAllocator::keep`;
    /// 0 for a writer).
    pub kept: u64,
    /// Reader: samples it kept in place so far (0 for a writer).
    pub kept_total: u64,
    /// Writer: samples it gave up on because the ring was full (a
    /// never-blocking sender such as the transport; 0 for a reader).
    pub dropped: u64,
    /// Reader: whether its bit is in the registered mask.
    pub registered: bool,
}

/// A segment as seen through its flink file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStatus {
    /// The flink file.
    pub flink_path: PathBuf,
    /// The OS object (`/dev/shm/shmslot.<uid>.<random>`).
    pub segment_path: PathBuf,
    /// Live, stale or orphan.
    pub state: SegmentState,
    /// The validated geometry (`None` for an orphan).
    pub info: Option<SegmentInfo>,
    /// Whether the creator's process is alive.
    pub creator_alive: bool,
    /// Whether any handle (other than the inspector) is attached.
    pub attached: bool,
    /// Whether the flink file marks it leaked (kept when nobody is attached).
    pub leaked: bool,
    /// What kind of segment the flink file names. For a blackboard only the
    /// state fields are filled (see [`crate::blackboard::inspect`]).
    pub kind: SegmentKind,
    /// Older generations of a growing ring that still exist (their last
    /// readers have not moved on yet), newest first.
    pub older_generations: Vec<PathBuf>,
    /// Next sequence a writer will reserve.
    pub write_seq: u64,
    /// Reader entries in use.
    pub readers: Vec<ParticipantStatus>,
    /// Writer entries in use.
    pub writers: Vec<ParticipantStatus>,
    /// Data notify epoch (the futex word readers park on).
    pub data_epoch: u32,
    /// Threads parked waiting for data.
    pub data_waiters: u32,
    /// Threads parked waiting for space.
    pub space_waiters: u32,
}

impl SegmentStatus {
    /// A status with no ring fields (an orphan, a blackboard): what the
    /// flink file says, nobody attached.
    pub(crate) fn without_ring(flink_path: &Path, segment_path: PathBuf, state: SegmentState, fl: &FlinkInfo) -> Self {
        Self {
            flink_path: flink_path.to_owned(),
            segment_path,
            state,
            info: None,
            creator_alive: false,
            attached: false,
            leaked: fl.leaked,
            kind: fl.kind,
            older_generations: Vec::new(),
            write_seq: 0,
            readers: Vec::new(),
            writers: Vec::new(),
            data_epoch: 0,
            data_waiters: 0,
            space_waiters: 0,
        }
    }

    /// Sum of the readers' lost counts.
    pub fn lost(&self) -> u64 {
        self.readers.iter().map(|r| r.lost).fold(0, u64::wrapping_add)
    }

    /// Samples committed by the writers attached now.
    pub fn sent(&self) -> u64 {
        self.writers.iter().map(|w| w.position).fold(0, u64::wrapping_add)
    }

    /// Samples released by the readers attached now.
    pub fn received(&self) -> u64 {
        self.readers.iter().map(|r| r.received).fold(0, u64::wrapping_add)
    }

    /// Samples the writers attached now dropped on a full ring.
    pub fn dropped(&self) -> u64 {
        self.writers.iter().map(|w| w.dropped).fold(0, u64::wrapping_add)
    }
}

/// Reads the status of a mapped, validated segment.
///
/// # Safety
/// `base` must be a mapping of at least `info.total_size` bytes laid out by
/// `info`, valid for the call.
pub(crate) unsafe fn read_status(base: *const u8, info: &SegmentInfo, probe: &File, flink_path: &Path, segment_name: &str, leaked: bool) -> SegmentStatus {
    let lay = Layout::compute(info.slot_count, info.capacity, info.max_readers, info.max_writers).expect("validated geometry");
    // SAFETY: all offsets lie within the validated geometry (caller), the
    // mapping is page aligned, and the structs are atomics only (any bit
    // pattern is valid).
    let (ctrl, readers, writers) = unsafe {
        (
            &*base.add(CONTROL_OFFSET).cast::<Control>(),
            std::slice::from_raw_parts(base.add(READERS_OFFSET).cast::<ReaderEntry>(), info.max_readers as usize),
            std::slice::from_raw_parts(base.add(lay.writers_offset as usize).cast::<WriterEntry>(), info.max_writers as usize),
        )
    };
    let registered = ctrl.registered.0.load(Ordering::Relaxed);
    let in_use = |state: u32| matches!(entry_kind(state), ENTRY_ACTIVE | ENTRY_RECLAIMING);
    let readers = readers
        .iter()
        .enumerate()
        .filter(|(_, e)| in_use(e.state.load(Ordering::Relaxed)))
        .map(|(r, e)| ParticipantStatus {
            index: r as u32,
            pid: e.pid.load(Ordering::Relaxed),
            alive: lock::alive(probe, lock::READER_BASE + r as u64),
            reclaiming: entry_kind(e.state.load(Ordering::Relaxed)) == ENTRY_RECLAIMING,
            position: e.cursor.load(Ordering::Relaxed),
            received: e.received.load(Ordering::Relaxed),
            lost: e.lost.load(Ordering::Relaxed),
            kept: e.kept.0.iter().filter(|w| w.load(Ordering::Relaxed) != 0).count() as u64,
            kept_total: e.kept_total.load(Ordering::Relaxed),
            dropped: 0,
            registered: registered & (1 << r) != 0,
        })
        .collect();
    let writers = writers
        .iter()
        .enumerate()
        .filter(|(_, e)| in_use(e.state.load(Ordering::Relaxed)))
        .map(|(w, e)| ParticipantStatus {
            index: w as u32,
            pid: e.pid.load(Ordering::Relaxed),
            alive: lock::alive(probe, lock::WRITER_BASE + w as u64),
            reclaiming: entry_kind(e.state.load(Ordering::Relaxed)) == ENTRY_RECLAIMING,
            position: e.commits.load(Ordering::Relaxed),
            received: 0,
            lost: 0,
            kept: 0,
            kept_total: 0,
            dropped: e.dropped.load(Ordering::Relaxed),
            registered: false,
        })
        .collect();
    let creator_alive = lock::alive(probe, lock::CREATOR);
    SegmentStatus {
        flink_path: flink_path.to_owned(),
        segment_path: PathBuf::from(format!("/dev/shm{segment_name}")),
        state: SegmentState::judge(probe, chain_held(info.predecessor, predecessor_of), leaked),
        info: Some(*info),
        creator_alive,
        attached: lock::held(probe, lock::ATTACHED, 1),
        leaked,
        kind: SegmentKind::Ring,
        older_generations: older_generations(info),
        write_seq: ctrl.write_seq.0.load(Ordering::Relaxed),
        readers,
        writers,
        data_epoch: ctrl.data.epoch.load(Ordering::Relaxed),
        data_waiters: ctrl.data.waiters.load(Ordering::Relaxed),
        space_waiters: ctrl.space.waiters.load(Ordering::Relaxed),
    }
}

/// The ring's lineage (see `segment::reclaim`): the id of the generation
/// ring object `name` continues, 0 for none or when unreadable.
pub(crate) fn predecessor_of(name: &str) -> u64 {
    peek_header(name).map_or(0, |(_, _, p)| p)
}

/// The chain words (flags, successor id) of object `name`, read through a
/// read-only mapping of its header; `None` if it is missing or too small.
/// Display and removal only: the id is used as nothing but a name.
pub(crate) fn peek_chain(name: &str) -> Option<(u32, u64)> {
    peek_header(name).map(|(flags, successor, _)| (flags, successor))
}

/// Object `name`'s chain flags, successor and predecessor ids (see
/// [`peek_chain`]).
fn peek_header(name: &str) -> Option<(u32, u64, u64)> {
    let file = shm::open_read_only(name).ok()?;
    if file.metadata().ok()?.len() < super::layout::HEADER_SIZE as u64 {
        return None;
    }
    let map = MmapOptions::new().len(super::layout::HEADER_SIZE).map_raw_read_only(&file).ok()?;
    // SAFETY: a page-aligned mapping of at least HEADER_SIZE readable bytes,
    // alive for this block; the header is atomics only.
    let h = unsafe { &*map.as_ptr().cast::<super::layout::SegmentHeader>() };
    Some((h.chain.load(Ordering::Acquire), h.successor.load(Ordering::Acquire), h.predecessor.load(Ordering::Relaxed)))
}

/// The older generations of a growing ring that still exist, walking the
/// predecessor ids (display only; bounded by the generation limit).
fn older_generations(info: &SegmentInfo) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut id = info.predecessor;
    while id != 0 && out.len() < super::layout::MAX_GENERATIONS as usize {
        let name = crate::segment::name::name_of(id);
        let Some((_, _, pred)) = peek_header(&name) else { break };
        out.push(PathBuf::from(format!("/dev/shm{name}")));
        id = pred;
    }
    out
}

/// Inspects the ring behind one flink file (`fl`, read from it already),
/// read-only and without joining it (see [`crate::discovery::inspect`]).
pub(crate) fn inspect(flink_path: &Path, fl: &FlinkInfo) -> Result<SegmentStatus, OpenError> {
    let object = match object::open_checked(&fl.segment_name, super::SIZE_BOUNDS, Access::ReadOnly) {
        Ok(o) => o,
        Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SegmentStatus::without_ring(flink_path, shm_path(&fl.segment_name), SegmentState::Orphan, fl))
        }
        Err(e) => return Err(e),
    };
    // SAFETY: the mapping is `object.size` readable bytes, page aligned,
    // alive for the calls below.
    let info = unsafe { validate(object.map.as_ptr(), object.size) }.map_err(|error| OpenError::Invalid { path: shm_path(&fl.segment_name), error })?;
    // SAFETY: `validate` checked the geometry fits in `object.size` bytes.
    Ok(unsafe { read_status(object.map.as_ptr(), &info, &object.file, flink_path, &fl.segment_name, fl.leaked) })
}
