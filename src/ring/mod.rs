//! [`PosixSlotAllocator`]: a slot ring in a POSIX shared-memory object, found
//! through a flink file. Creator and attachers are equal peers: any may write
//! and any may read; the lock-free protocol lives in [`crate::protocol`],
//! the segment's life (create, attach, leave, reclaim) in `crate::segment`
//! (the layers: `ARCHITECTURE.md`).

mod backend;
mod builder;
mod generation;
mod grow;
mod keep;
mod layout;
mod open;
mod participants;
pub(crate) mod status;
mod validate;
mod view;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;

use memmap2::MmapRaw;

pub use builder::PosixSlotAllocatorBuilder;
pub use grow::GrowthStrategy;
pub use keep::Kept;
pub use status::{Reaped, SegmentStatus};
pub use validate::SegmentInfo;

pub use crate::segment::dir::default_discovery_dir;
pub use crate::segment::flink::{FlinkInfo, SegmentKind};

use layout::READERS_OFFSET;
use view::{FloorCell, FutexParker};

use crate::error::OpenError;
use crate::protocol::{RingView, WriterEntry};
use crate::segment::leave::{leave_segment, set_leaked};
use crate::segment::name::shm_path;
use crate::segment::object::SizeBounds;
use crate::segment::reclaim::chain_held;
use crate::segment::{flink, liveness as lock};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Longest single futex sleep of a blocking call: a peer that dies never
/// wakes anybody, so blocked readers and writers look at liveness (and reap
/// what the dead left) at least this often.
const PARK_SLICE: Duration = Duration::from_millis(25);
/// At most one liveness check (a few `fcntl`s) per handle per this many ms.
const CHECK_INTERVAL_MS: u64 = 10;
/// What a ring object's size may be before its header is read.
pub(crate) const SIZE_BOUNDS: SizeBounds = SizeBounds { min: READERS_OFFSET as u64, max: layout::MAX_TOTAL, max_text: "at most 64 GiB" };
/// A handle without a writer entry.
const NO_WRITER: u32 = u32::MAX;

/// A slot ring in POSIX shared memory.
///
/// # Liveness and crashes
///
/// Every participant holds a kernel lock on the object (see
/// `segment::liveness`): the creator, every attached handle, every
/// registered reader and every writer. The kernel drops them when a process dies, however it dies,
/// so anyone can tell the dead from the living without trusting a pid:
///
/// * a dead reader's entry is freed and its bits cleared, so `KeepAll`
///   writers waiting on it resume; a dead writer's open loans become skipped
///   sequences, so readers move past them (a half-written sample is never
///   delivered). Blocked calls and full rings look for the dead on their own
///   (at most every 10 ms per handle, and a blocked call sleeps at most
///   25 ms at a time); [`reap_dead`](Self::reap_dead) does it at once.
/// * a reader whose ring is drained and whose writers are all gone (the
///   creator and every writer process exited) gets
///   [`SlotError::WritersGone`](crate::SlotError::WritersGone).
/// * a segment whose creator died and that nobody is attached to is stale:
///   the next `create` of the same flink path reclaims it, as does
///   `flink clean`; the last handle to leave a dead creator's segment
///   removes it (of handles leaving at the same instant, one does).
///
/// Locks are held through a descriptor that is closed on `exec` but shared
/// with a `fork`ed child: a child forked without `exec` keeps its parent's
/// participants alive until it exits. Such a child must not use the
/// parent's handles (attach its own); dropping a copied handle only unmaps.
pub struct PosixSlotAllocator {
    /// The protocol's view of the mapping, built once (the hot calls use it
    /// through one pointer instead of assembling a view per call). Its
    /// references point into `map` and `cursor_floor`, which this handle owns
    /// and which never move; [`ring`](Self::ring) hands them out only for the
    /// lifetime of `&self`. First field, so it is dropped before them.
    view: RingView<'static, FutexParker>,
    map: MmapRaw,
    /// The object, mapped; liveness tests go through this descriptor.
    file: File,
    /// A second open of the object that holds this handle's locks.
    locks: File,
    writers: NonNull<WriterEntry>,
    slots: NonNull<u8>,
    info: SegmentInfo,
    flink_path: PathBuf,
    segment_name: String,
    owner: bool,
    /// Created with `remove_on_drop(false)`: the creator leaves like any
    /// attached handle (the last one out removes the segment).
    shared: bool,
    spin: Duration,
    /// This handle's writer entry, `NO_WRITER` until its first reservation.
    writer: AtomicU32,
    /// Serialises this handle's lock-table changes (claiming a writer entry,
    /// registering and unregistering readers): its threads share one open
    /// file description, on which one thread's unlock would drop another's
    /// lock of the same byte.
    lock_table: parking_lot::Mutex<()>,
    /// Reader entries this handle registered (it holds their locks).
    my_readers: AtomicU64,
    /// `coarse_ms` before which no liveness check of a reader runs.
    next_read_check_ms: AtomicU64,
    /// `coarse_ms` before which no liveness check of a writer runs.
    next_write_check_ms: AtomicU64,
    /// Empty polls since the last look at the clock.
    idle_polls: AtomicU32,
    /// Owns the word `view.cursor_floor` points at (see
    /// `RingView::cursor_floor`); only its drop uses it.
    _cursor_floor: FloorCell,
    /// The process that opened this handle: a copy in a `fork`ed child only
    /// unmaps on drop (its locks and entries are the parent's).
    pid: u32,
    /// This generation's object id (the random part of its name).
    id: u64,
    /// A growing ring's next generation, once this one moved and this
    /// handle followed (see `grow`); a full handle of its own.
    next: std::sync::OnceLock<Box<PosixSlotAllocator>>,
    /// The handle the caller holds: which generation its writer and each of
    /// its readers is in.
    depths: grow::Depths,
    /// Serialises mapping the next generation.
    grow_lock: parking_lot::Mutex<()>,
    /// This handle holds the creator's lock of this generation (the
    /// creator's, and the generations it followed into).
    holds_creator: bool,
}

// SAFETY: the pointers point into `map` or the floor cell, which live as
// long as `self`; all shared state behind them is atomics, accessed through
// the protocol.
unsafe impl Send for PosixSlotAllocator {}
// SAFETY: as above; `&self` methods only touch atomics and loan-owned bytes.
unsafe impl Sync for PosixSlotAllocator {}

impl PosixSlotAllocator {

    /// Who is attached and alive, the counters, and whether the segment is
    /// live or stale, as `flink inspect` shows it.
    pub fn status(&self) -> SegmentStatus {
        // SAFETY: the mapping holds `info.total_size` validated bytes.
        unsafe { status::read_status(self.map.as_ptr(), &self.info, &self.file, &self.flink_path, &self.segment_name, self.is_leaked()) }
    }


    /// The flink file this ring was created or attached through.
    pub fn flink_path(&self) -> &Path {
        &self.flink_path
    }


    /// The OS object: `/dev/shm/shmslot.<uid>.<random>` (of a growing ring,
    /// the generation this handle writes in).
    pub fn segment_path(&self) -> PathBuf {
        shm_path(&self.writer_gen().segment_name)
    }


    /// The objects of every generation this handle has mapped, oldest
    /// first (one for a ring that never grew). Old ones may be removed
    /// already: a generation goes when its last reader has moved on.
    pub fn generation_paths(&self) -> Vec<PathBuf> {
        let mut out = vec![shm_path(&self.segment_name)];
        let mut n = self.next.get();
        while let Some(g) = n {
            out.push(shm_path(&g.segment_name));
            n = g.next.get();
        }
        out
    }


    /// The validated geometry.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }


    /// Whether dropping this handle removes the segment and flink file
    /// (the creator's handle, unless created with
    /// [`remove_on_drop(false)`](PosixSlotAllocatorBuilder::remove_on_drop)).
    pub fn is_owner(&self) -> bool {
        self.owner
    }


    /// Leaves the segment in place when this handle drops, whoever drops
    /// last: the ring outlives its creator (and every other participant)
    /// and can be attached again later, by any process of this user. The
    /// flink file says so (`flink list` shows it `leaked`); neither a new
    /// `create` of the same path nor `flink clean` removes it, only
    /// `flink clean --leaked` or a handle that [`own`](Self::own)s it.
    ///
    /// The mark is the segment's, not the handle's: whichever handle sets
    /// it (the creator's or an attacher's), no handle's drop removes the
    /// segment while it is set, the owner's included.
    ///
    /// # Errors
    /// [`OpenError`] when the flink file cannot be rewritten (it no longer
    /// names this segment, or a system error); nothing changed then.
    pub fn leak(&mut self) -> Result<(), OpenError> {
        set_leaked(&self.flink_path, &self.segment_name, true)
    }


    /// Takes over the duty to remove the segment: dropping this handle
    /// removes it (flink file and object), as the creator's would, and it is
    /// no longer leaked. For a process that attached to a leaked ring and
    /// is the one to end it.
    ///
    /// # Errors
    /// As [`leak`](Self::leak).
    pub fn own(&mut self) -> Result<(), OpenError> {
        set_leaked(&self.flink_path, &self.segment_name, false)?;
        self.owner = true;
        self.shared = false;
        Ok(())
    }


    /// Whether the flink file marks the segment leaked (see
    /// [`leak`](Self::leak)); read from the file now.
    pub fn is_leaked(&self) -> bool {
        flink::read(&self.flink_path).is_ok_and(|f| f.segment_name == self.segment_name && f.leaked)
    }


    /// Sets this handle's spin budget for blocking calls.
    pub fn set_spin_budget(&mut self, spin: Duration) {
        self.spin = spin;
    }
}

impl std::fmt::Debug for PosixSlotAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixSlotAllocator")
            .field("flink_path", &self.flink_path)
            .field("segment", &self.segment_name)
            .field("info", &self.info)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Drop for PosixSlotAllocator {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A `fork`ed copy: the entries, locks and segment are the
            // parent's. Only unmap.
            return;
        }
        let ring = self.ring();
        let w = self.writer.load(Ordering::Relaxed);
        if w != NO_WRITER {
            // Loans a caller never committed nor discarded must not block
            // readers: skip them, then free the entry, then its lock.
            let _ = ring.skip_loans_of(w as u8, None, &|_| false);
            self.writers().free(w as u8);
        }
        let mut mine = self.my_readers.load(Ordering::Relaxed);
        while mine != 0 {
            let r = mine.trailing_zeros() as u8;
            mine &= mine - 1;
            let _ = ring.unregister(r);
        }
        // A static ring's drop reads nothing more from the mapping (a hostile
        // process may have truncated the object under it: any read would
        // fault).
        let growing = self.info.growth != GrowthStrategy::Static;
        if self.owner {
            // The owner (only ever the handle the caller holds, never one of
            // its later generations) removes the whole ring: every generation.
            let names = if growing { self.chain_names() } else { vec![self.segment_name.clone()] };
            leave_segment(&self.flink_path, &names, &self.locks, true);
        } else if growing && self.chain_flags() & layout::CHAIN_MOVED != 0 {
            // An old generation of a growing ring: it goes when its last
            // reader has moved on, whoever is attached.
            self.release_if_unread();
        } else if !chain_held(self.info.predecessor, status::predecessor_of) {
            // (A reader still in an older generation is a participant too:
            // it arrives here later, and the last one out removes it.)
            leave_segment(&self.flink_path, std::slice::from_ref(&self.segment_name), &self.locks, false);
        }
        // Closing `locks` drops every lock this handle held.
    }
}

