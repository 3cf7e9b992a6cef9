//! What a segment looks like from outside: who is attached and alive, its
//! counters, whether it is live or stale; and the removal of stale ones.
//! This is what `flink list`, `flink inspect` and `flink clean` show and do,
//! and what `create` uses to reclaim a stale flink path.
//!
//! Inspection maps the object read-only and never takes a participant lock,
//! so looking at a segment never keeps it alive nor changes it. Everything
//! read from it is display data: bounded by the validated geometry, and
//! never used as an index.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use memmap2::MmapOptions;

use super::layout::{Layout, WriterEntry, CONTROL_OFFSET, READERS_OFFSET};
use super::validate::{validate, SegmentInfo};
use crate::segment::{flink, liveness as lock};
use crate::sys::shm;
use crate::error::{OpenError, ValidationError};
use crate::protocol::{entry_kind, Control, ReaderEntry, ENTRY_ACTIVE, ENTRY_RECLAIMING};
use crate::sync::Ordering;

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

/// Whether a segment is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Its creator, or some attached process, is alive.
    Live,
    /// Creator dead and nobody attached: `flink clean` and a new `create`
    /// of the same flink path remove it.
    Stale,
    /// Nobody attached, but left in place on purpose (see
    /// [`PosixSlotAllocator::leak`](crate::PosixSlotAllocator::leak)): kept
    /// until someone attaches and owns it, or `flink clean --leaked`.
    Leaked,
    /// The flink file names an object that does not exist any more.
    Orphan,
}

impl SegmentState {
    /// `live`, `stale` or `orphan`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Stale => "stale",
            Self::Leaked => "leaked",
            Self::Orphan => "orphan",
        }
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
    pub kind: super::SegmentKind,
    /// Older generations of a growing ring that still exist (their last
    /// readers have not moved on yet), newest first.
    pub older_generations: Vec<PathBuf>,
    /// Next sequence a writer will reserve.
    pub write_seq: u64,
    /// Reader entries in use.
    pub readers: Vec<ParticipantStatus>,
    /// Writer entries in use.
    pub writers: Vec<ParticipantStatus>,
    /// Data notify generation (futex word).
    pub data_generation: u32,
    /// Threads parked waiting for data.
    pub data_waiters: u32,
    /// Threads parked waiting for space.
    pub space_waiters: u32,
}

impl SegmentStatus {
    /// A status with no ring fields (an orphan, a blackboard): what the
    /// flink file says, nobody attached.
    fn without_ring(flink_path: &Path, segment_path: PathBuf, state: SegmentState, fl: &super::FlinkInfo) -> Self {
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
            data_generation: 0,
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
    let anyone = lock::held(probe, 0, lock::LOCK_SPAN) || chain_held(info.predecessor);
    SegmentStatus {
        flink_path: flink_path.to_owned(),
        segment_path: PathBuf::from(format!("/dev/shm{segment_name}")),
        state: match (anyone, leaked) {
            (true, _) => SegmentState::Live,
            (false, true) => SegmentState::Leaked,
            (false, false) => SegmentState::Stale,
        },
        info: Some(*info),
        creator_alive,
        attached: lock::held(probe, lock::ATTACHED, 1),
        leaked,
        kind: super::SegmentKind::Ring,
        older_generations: older_generations(info),
        write_seq: ctrl.write_seq.0.load(Ordering::Relaxed),
        readers,
        writers,
        data_generation: ctrl.data.generation.load(Ordering::Relaxed),
        data_waiters: ctrl.data.waiters.load(Ordering::Relaxed),
        space_waiters: ctrl.space.waiters.load(Ordering::Relaxed),
    }
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
        let name = super::grow::segment_name_of(id);
        let Some((_, _, pred)) = peek_header(&name) else { break };
        out.push(PathBuf::from(format!("/dev/shm{name}")));
        id = pred;
    }
    out
}

/// Inspects the segment behind one flink file, read-only and without
/// joining it.
///
/// # Errors
/// [`OpenError`] for an unsafe or invalid flink file, an object that fails
/// validation (the error says what failed), or a system error.
pub fn inspect(flink_path: &Path) -> Result<SegmentStatus, OpenError> {
    let fl = flink::read(flink_path)?;
    if fl.kind == super::SegmentKind::Blackboard {
        let b = crate::blackboard::inspect(flink_path)?;
        return Ok(SegmentStatus { creator_alive: b.creator_alive, attached: b.attached, ..SegmentStatus::without_ring(flink_path, b.segment_path, b.state, &fl) });
    }
    let shm_path = PathBuf::from(format!("/dev/shm{}", fl.segment_name));
    let file = match shm::open_read_only(&fl.segment_name) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SegmentStatus::without_ring(flink_path, shm_path, SegmentState::Orphan, &fl))
        }
        Err(source) => return Err(OpenError::Io { op: "open shared-memory object", path: shm_path, source }),
    };
    let md = file.metadata().map_err(|source| OpenError::Io { op: "fstat", path: shm_path.clone(), source })?;
    if md.uid() != shm::euid() {
        return Err(OpenError::Unsafe { path: shm_path, reason: "the shared-memory object is owned by another user" });
    }
    let size = md.len();
    let invalid = |error| OpenError::Invalid { path: shm_path.clone(), error };
    if size < READERS_OFFSET as u64 {
        return Err(invalid(ValidationError::Truncated { size, needed: READERS_OFFSET as u64 }));
    }
    if size > super::layout::MAX_TOTAL {
        return Err(invalid(ValidationError::BadField { field: "object size", value: size, expected: "at most 64 GiB" }));
    }
    let map = MmapOptions::new().len(size as usize).map_raw_read_only(&file).map_err(|source| OpenError::Io { op: "mmap", path: shm_path.clone(), source })?;
    // SAFETY: the mapping is `size` readable bytes, page aligned, alive for
    // the calls below.
    let info = unsafe { validate(map.as_ptr(), size) }.map_err(invalid)?;
    // SAFETY: `validate` checked the geometry fits in `size` bytes.
    Ok(unsafe { read_status(map.as_ptr(), &info, &file, flink_path, &fl.segment_name, fl.leaked) })
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
    flink::check_dir(dir)?;
    let rd = std::fs::read_dir(dir).map_err(|source| OpenError::Io { op: "read discovery directory", path: dir.to_owned(), source })?;
    let mut paths: Vec<PathBuf> = rd.filter_map(Result::ok).filter(|e| !e.file_name().as_encoded_bytes().starts_with(b".")).map(|e| e.path()).collect();
    paths.sort();
    Ok(paths.into_iter().map(|path| ScanEntry { status: inspect(&path), path }).collect())
}

/// How [`reclaim`] ended.
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
    /// was touched (see [`reclaim_leaked`]).
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
/// # Errors
/// [`OpenError`] for a file that is not a flink file of ours (left alone),
/// or a system error.
pub fn reclaim(flink_path: &Path) -> Result<Reclaim, OpenError> {
    reclaim_impl(flink_path, false, false)
}

/// [`reclaim`], and a leaked segment nobody is attached to is removed too.
///
/// # Errors
/// As [`reclaim`].
pub fn reclaim_leaked(flink_path: &Path) -> Result<Reclaim, OpenError> {
    reclaim_impl(flink_path, false, true)
}

/// [`reclaim`]; with `dry_run`, takes the same locks and decides the same
/// way, but removes nothing; with `leaked`, leaked segments count as stale.
fn reclaim_impl(flink_path: &Path, dry_run: bool, leaked: bool) -> Result<Reclaim, OpenError> {
    let claim = match flink::claim(flink_path)? {
        Ok(c) => c,
        Err(flink::Unclaimed::Gone) => return Ok(Reclaim::Gone),
        Err(flink::Unclaimed::Busy) => return Ok(Reclaim::Busy),
    };
    let name = claim.info.segment_name.clone();
    let creator_pid = claim.info.creator_pid;
    // Only a ring has older generations; a blackboard's bytes where a ring
    // header keeps its predecessor id are reserved, never read as one.
    let is_ring = claim.info.kind == flink::SegmentKind::Ring;
    let predecessor = |name: &str| if is_ring { peek_header(name).map_or(0, |(_, _, p)| p) } else { 0 };
    let shm_path = PathBuf::from(format!("/dev/shm{name}"));
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
        if chain_held(predecessor(&name)) {
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
        let pred = predecessor(&name);
        let _ = shm::unlink(&name);
        remove_stale_predecessors(pred);
    }
    Ok(Reclaim::Removed { segment_name: name, object_existed: object.is_some() })
}

/// Whether a growing ring's older generation from `id` back is held by
/// someone alive (a reader that has not moved on yet is a participant of
/// the ring, although it holds no lock on the newest generation).
pub(crate) fn chain_held(mut id: u64) -> bool {
    for _ in 0..super::layout::MAX_GENERATIONS {
        if id == 0 {
            return false;
        }
        let name = super::grow::segment_name_of(id);
        let Ok(f) = shm::open_read_only(&name) else { return false };
        if lock::held(&f, 0, lock::LOCK_SPAN) {
            return true;
        }
        id = peek_header(&name).map_or(0, |(_, _, p)| p);
    }
    false
}

/// After a growing ring's newest generation was reclaimed: its older
/// generations that still exist and that nobody holds (every participant
/// byte lockable) go too; a live one stops the walk.
fn remove_stale_predecessors(mut id: u64) {
    for _ in 0..super::layout::MAX_GENERATIONS {
        if id == 0 {
            return;
        }
        let name = super::grow::segment_name_of(id);
        let Ok(f) = shm::open(&name) else { return };
        if f.metadata().map_or(true, |m| m.uid() != shm::euid()) || !lock::set(&f, lock::Kind::Write, 0, lock::LOCK_SPAN).unwrap_or(false) {
            return;
        }
        id = peek_header(&name).map_or(0, |(_, _, p)| p);
        let _ = shm::unlink(&name);
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
                _ => reclaim_impl(&e.path, dry_run, include_leaked).map(|r| match r {
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
        OpenError::Exists(path) | OpenError::Leaked { path } => Some(path),
        _ => None,
    }
}
