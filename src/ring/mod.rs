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

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use builder::PosixSlotAllocatorBuilder;
pub(crate) use generation::Generation;
pub use grow::GrowthStrategy;
pub use keep::Kept;
pub use status::{Reaped, SegmentStatus};
pub use validate::SegmentInfo;

pub use crate::segment::dir::default_discovery_dir;
pub use crate::segment::flink::{FlinkInfo, SegmentKind};

use layout::READERS_OFFSET;

use crate::error::OpenError;
use crate::segment::leave::set_leaked;
use crate::segment::name::shm_path;
use crate::segment::object::SizeBounds;
use crate::segment::{flink, liveness as lock};

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
/// registered reader and every writer. The kernel drops them when a
/// process dies, however it dies, so anyone can tell the dead from the
/// living without trusting a pid:
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
    /// The ring as this handle opened it: a static ring's one generation,
    /// or the first of the chain a growing ring's handle follows.
    gen: Generation,
    /// Which generation (depth in the chain) this handle's writer and each
    /// of its readers is in; all 0 on a static ring.
    depths: grow::Depths,
}

impl PosixSlotAllocator {
    /// The handle over a generation just created or attached.
    fn over(gen: Generation) -> Self {
        Self { gen, depths: grow::Depths::new() }
    }

    /// Frees what dead participants left behind: the entries of readers
    /// whose processes died (their bits cleared, their pins dropped, so
    /// `KeepAll` writers waiting on them resume) and of dead writers (their
    /// open loans, and a claim they never stamped, become skipped sequences,
    /// so readers move past them). Liveness is decided by the participants'
    /// kernel locks, never by pids. Blocked calls and full rings do this on
    /// their own; call it to do it now.
    pub fn reap_dead(&self) -> Reaped {
        self.gen.reap_dead()
    }

    /// Whether anyone can still write: the creator or a writer entry's owner
    /// is alive.
    pub fn writers_alive(&self) -> bool {
        self.gen.writers_alive()
    }

    /// Whether the creator's process is alive (decided by its kernel lock:
    /// one `fcntl`). For a transport this says whether the peer that owns
    /// an input port still exists.
    pub fn creator_alive(&self) -> bool {
        self.gen.creator_alive()
    }

    /// Counts one sample this handle's writer gave up on because the ring
    /// was full (a transport that never blocks drops it). Shown as the
    /// writer's `dropped` by [`status`](Self::status) and `flink inspect`.
    /// Does nothing before this handle's first reservation.
    pub fn record_dropped(&self) {
        self.gen.record_dropped();
    }
}

impl PosixSlotAllocator {
    /// Who is attached and alive, the counters, and whether the segment is
    /// live or stale, as `flink inspect` shows it.
    pub fn status(&self) -> SegmentStatus {
        // SAFETY: the mapping holds `info.total_size` validated bytes.
        unsafe { status::read_status(self.gen.map.as_ptr(), &self.gen.info, &self.gen.file, &self.gen.flink_path, &self.gen.segment_name, self.is_leaked()) }
    }

    /// The flink file this ring was created or attached through.
    pub fn flink_path(&self) -> &Path {
        &self.gen.flink_path
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
        let mut out = vec![shm_path(&self.gen.segment_name)];
        let mut n = self.gen.next.get();
        while let Some(g) = n {
            out.push(shm_path(&g.segment_name));
            n = g.next.get();
        }
        out
    }

    /// The validated geometry.
    pub fn info(&self) -> &SegmentInfo {
        &self.gen.info
    }

    /// Whether dropping this handle removes the segment and flink file
    /// (the creator's handle, unless created with
    /// [`remove_on_drop(false)`](PosixSlotAllocatorBuilder::remove_on_drop)).
    pub fn is_owner(&self) -> bool {
        self.gen.owner
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
        set_leaked(&self.gen.flink_path, &self.gen.segment_name, true)
    }

    /// Takes over the duty to remove the segment: dropping this handle
    /// removes it (flink file and object), as the creator's would, and it is
    /// no longer leaked. For a process that attached to a leaked ring and
    /// is the one to end it.
    ///
    /// # Errors
    /// As [`leak`](Self::leak).
    pub fn own(&mut self) -> Result<(), OpenError> {
        set_leaked(&self.gen.flink_path, &self.gen.segment_name, false)?;
        self.gen.owner = true;
        self.gen.shared = false;
        Ok(())
    }

    /// Whether the flink file marks the segment leaked (see
    /// [`leak`](Self::leak)); read from the file now.
    pub fn is_leaked(&self) -> bool {
        flink::read(&self.gen.flink_path).is_ok_and(|f| f.segment_name == self.gen.segment_name && f.leaked)
    }

    /// Sets this handle's spin budget for blocking calls.
    pub fn set_spin_budget(&mut self, spin: Duration) {
        self.gen.spin = spin;
    }
}

impl std::fmt::Debug for PosixSlotAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.gen, f)
    }
}

