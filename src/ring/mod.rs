//! [`PosixSlotAllocator`]: a slot ring in a POSIX shared-memory object, found
//! through a flink file. Creator and attachers are equal peers: any may write
//! and any may read; the lock-free protocol lives in [`crate::protocol`].

mod grow;
mod layout;
pub(crate) mod status;
mod validate;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use memmap2::MmapRaw;

use crate::backend::{OverflowPolicy, ReaderMask, ReaderStats, SlotBackend, SlotHandle, SlotHeader, DEFAULT_SPIN};
use crate::error::{OpenError, SlotError, ValidationError};
use crate::protocol::{Control, Geometry, Parker, ReaderEntry, RingView, SlotArray, WriterEntry, WriterTable};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::sys::clock::{coarse_ms, wall_ms};
use crate::sys::{futex, membarrier, shm};

pub use crate::segment::dir::default_discovery_dir;
pub use crate::segment::flink::{FlinkInfo, SegmentKind};
use crate::segment::dir::resolve;
use crate::segment::name::shm_path;
use crate::segment::object::{self, Access, SizeBounds};
use crate::discovery::clear_for_create;
use crate::segment::leave::{leave_segment, set_leaked};
use crate::segment::{flink, liveness as lock};
pub use grow::GrowthStrategy;
pub use status::{Reaped, SegmentStatus};
pub use validate::SegmentInfo;

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

use layout::{Layout, SegmentHeader, CONTROL_OFFSET, INIT_CREATING, INIT_READY, LAYOUT_VERSION, MAGIC, READERS_OFFSET};

/// The process-local cursor floor of a handle (`RingView::cursor_floor`):
/// one heap word, allocated with the handle and freed when it drops. Held
/// through a raw pointer, not a `Box`, because the handle's `view` keeps a
/// shared reference to it while the handle (and so this owner) moves.
struct FloorCell(NonNull<AtomicU64>);

impl FloorCell {
    fn new() -> Self {
        Self(NonNull::from(Box::leak(Box::new(AtomicU64::new(0)))))
    }
}

impl Drop for FloorCell {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::leak` in `new` and is freed only
        // here, once; the handle's `view`, the only other user, is dropped
        // before this field (declared first) and used by nothing after.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// Parks on a futex word in shared memory.
#[derive(Clone, Copy)]
pub(crate) struct FutexParker;

impl Parker for FutexParker {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
        futex::wait(word, expected, timeout);
    }
    fn wake_all(&self, word: &AtomicU32) {
        futex::wake_all(word);
    }
    fn heavy_barrier(&self) {
        membarrier::heavy();
    }
}

/// Options for [`PosixSlotAllocator::builder`].
#[derive(Debug, Clone)]
pub struct PosixSlotAllocatorBuilder {
    slot_count: usize,
    capacity: usize,
    policy: OverflowPolicy,
    max_readers: u32,
    max_writers: u32,
    type_hash: Option<[u8; 16]>,
    discovery_dir: Option<PathBuf>,
    spin: Duration,
    start_seq: u64,
    start_notify_epoch: u32,
    remove_on_drop: bool,
    growth: GrowthStrategy,
}

impl PosixSlotAllocatorBuilder {
    /// How the ring grows when a writer needs a sample larger than its
    /// slots (default [`GrowthStrategy::Static`]: it does not, and such a
    /// sample is an error). A growing ring moves to a new, larger segment
    /// generation; readers finish the old one in order and follow, and the
    /// old one is removed when its last reader has moved. Every handle
    /// follows on its own. See [`PosixSlotAllocator::reserve_for`].
    #[must_use]
    pub fn growth(mut self, growth: GrowthStrategy) -> Self {
        self.growth = growth;
        self
    }
    /// Overflow policy (default `KeepAll`).
    #[must_use]
    pub fn overflow_policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Reader table size, 1 to 64 (default 64).
    #[must_use]
    pub fn max_readers(mut self, n: u32) -> Self {
        self.max_readers = n;
        self
    }
    /// Writer table size, 1 to 64 (default 16).
    #[must_use]
    pub fn max_writers(mut self, n: u32) -> Self {
        self.max_writers = n;
        self
    }
    /// Type hash stored in the segment; typed endpoints check it.
    #[must_use]
    pub fn type_hash(mut self, hash: [u8; 16]) -> Self {
        self.type_hash = Some(hash);
        self
    }
    /// Directory for bare flink names (default [`default_discovery_dir`]).
    #[must_use]
    pub fn discovery_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discovery_dir = Some(dir.into());
        self
    }
    /// How long this handle's blocking calls spin before parking.
    #[must_use]
    pub fn spin_budget(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }
    /// First sequence number (default 0; tests start near `u64::MAX`).
    #[must_use]
    pub fn start_seq(mut self, seq: u64) -> Self {
        self.start_seq = seq;
        self
    }

    /// Whether dropping the creator's handle removes the segment (default
    /// `true`: the creator owns it). With `false` the ring belongs to all
    /// its participants: it stays while any handle is attached, and the last
    /// handle to leave removes it — for a ring many processes share and any
    /// of them may leave first, such as a domain-wide multicast ring. (Its
    /// readers then get [`SlotError::WritersGone`] whenever no writer is
    /// attached: the creator no longer vouches for future writes.)
    #[must_use]
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = remove;
        self
    }

    /// First value of the data notify epoch (default 0). For tests of the
    /// futex word's wrap-around.
    #[doc(hidden)]
    #[must_use]
    pub fn start_notify_epoch(mut self, epoch: u32) -> Self {
        self.start_notify_epoch = epoch;
        self
    }

    /// Creates the segment and its flink file. A bare name (no `/`) is put in
    /// the discovery directory; a path is used as given (its directory must be
    /// ours and not group/other writable). A stale segment already published
    /// there (creator dead, nobody attached) is removed first.
    ///
    /// # Errors
    /// [`OpenError::Config`] for an out-of-range option; [`OpenError::InUse`]
    /// when a live segment is published there; [`OpenError::Exists`] when
    /// something that is not a removable flink file is there (a planted
    /// link, a foreign or corrupt file), or another creator published first;
    /// [`OpenError::Unsafe`] for an unsafe directory; [`OpenError::Io`] for
    /// system errors (`WouldBlock`: another process is removing the stale
    /// segment there right now).
    pub fn create(self, flink_path: impl AsRef<Path>) -> Result<PosixSlotAllocator, OpenError> {
        PosixSlotAllocator::create_with(self, flink_path.as_ref())
    }

    /// Attaches to the ring published at `flink_path` or, when there is
    /// none, creates it with these options: what each of several processes
    /// sharing one ring does when any of them may come first (a domain's
    /// multicast ring, a DDS topic's ring). A creator racing us, or the last
    /// participant removing the ring right now, makes it try again (up to 64
    /// times). An attached handle takes this builder's spin budget; the
    /// other options are the creator's.
    ///
    /// # Errors
    /// As [`attach`](PosixSlotAllocator::attach) and
    /// [`create`](Self::create); the last `InUse` / `Exists` when every try
    /// lost a race.
    pub fn attach_or_create(self, flink_path: impl AsRef<Path>) -> Result<PosixSlotAllocator, OpenError> {
        let flink_path = flink_path.as_ref();
        let mut last = None;
        for _ in 0..64 {
            match PosixSlotAllocator::attach_in(flink_path, self.discovery_dir.as_ref()) {
                Ok(mut ring) => {
                    ring.set_spin_budget(self.spin);
                    return Ok(ring);
                }
                Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            match self.clone().create(flink_path) {
                Ok(ring) => return Ok(ring),
                Err(e @ (OpenError::InUse { .. } | OpenError::Exists(_))) => last = Some(e),
                Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            std::thread::yield_now();
        }
        let path = resolve(flink_path, self.discovery_dir.as_deref(), false).unwrap_or_else(|_| flink_path.to_owned());
        Err(last.unwrap_or(OpenError::Io { op: "attach or create", path, source: std::io::ErrorKind::WouldBlock.into() }))
    }
}

/// A slot ring in POSIX shared memory.
///
/// # Liveness and crashes
///
/// Every participant holds a kernel lock on the object (see the `lock`
/// module): the creator, every attached handle, every registered reader and
/// every writer. The kernel drops them when a process dies, however it dies,
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
///   [`SlotError::WritersGone`].
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

fn config(what: &'static str, value: u64, expected: &'static str) -> OpenError {
    OpenError::Config { what, value, expected }
}

/// Everything a new segment is made of.
pub(crate) struct NewSegment {
    pub slot_count: u32,
    pub capacity: u32,
    pub stride: u32,
    pub total: u64,
    pub max_readers: u32,
    pub max_writers: u32,
    pub policy: OverflowPolicy,
    pub type_hash: [u8; 16],
    pub generation: u32,
    pub growth: GrowthStrategy,
    pub predecessor: u64,
    pub start_seq: u64,
    pub start_notify_epoch: u32,
}

impl PosixSlotAllocator {
    /// A builder for a ring of `slot_count` slots (rounded up to a power of
    /// two) of `slot_capacity` bytes each.
    pub fn builder(slot_count: usize, slot_capacity: usize) -> PosixSlotAllocatorBuilder {
        PosixSlotAllocatorBuilder {
            slot_count,
            capacity: slot_capacity,
            policy: OverflowPolicy::KeepAll,
            max_readers: 64,
            max_writers: 16,
            type_hash: None,
            discovery_dir: None,
            spin: DEFAULT_SPIN,
            start_seq: 0,
            start_notify_epoch: 0,
            remove_on_drop: true,
            growth: GrowthStrategy::Static,
        }
    }

    /// Creates a `KeepAll` ring with default options; see
    /// [`PosixSlotAllocatorBuilder::create`].
    ///
    /// # Errors
    /// As [`PosixSlotAllocatorBuilder::create`].
    pub fn create(flink_path: impl AsRef<Path>, slot_count: usize, slot_capacity: usize) -> Result<Self, OpenError> {
        Self::builder(slot_count, slot_capacity).create(flink_path)
    }

    fn create_with(b: PosixSlotAllocatorBuilder, flink_path: &Path) -> Result<Self, OpenError> {
        if b.slot_count == 0 || b.slot_count > layout::MAX_SLOT_COUNT as usize {
            return Err(config("slot_count", b.slot_count as u64, "1 to 2^24"));
        }
        if b.capacity == 0 || b.capacity > layout::MAX_CAPACITY as usize {
            return Err(config("slot_capacity", b.capacity as u64, "1 byte to 1 GiB"));
        }
        if b.max_readers == 0 || b.max_readers > 64 {
            return Err(config("max_readers", b.max_readers.into(), "1 to 64"));
        }
        if b.max_writers == 0 || b.max_writers > layout::MAX_WRITERS {
            return Err(config("max_writers", b.max_writers.into(), "1 to 64"));
        }
        let slot_count = b.slot_count.next_power_of_two() as u32;
        let capacity = b.capacity as u32;
        let lay = Layout::compute(slot_count, capacity, b.max_readers, b.max_writers)
            .filter(|l| l.total <= layout::MAX_TOTAL)
            .ok_or(config("slot_count × slot_capacity", u64::from(slot_count) * u64::from(capacity), "a segment of at most 64 GiB"))?;
        let flink_path = resolve(flink_path, b.discovery_dir.as_deref(), true)?;
        clear_for_create(&flink_path)?;
        let geometry = NewSegment {
            slot_count,
            capacity,
            stride: lay.stride as u32,
            total: lay.total,
            max_readers: b.max_readers,
            max_writers: b.max_writers,
            policy: b.policy,
            type_hash: b.type_hash.unwrap_or([0; 16]),
            generation: 0,
            growth: b.growth,
            predecessor: 0,
            start_seq: b.start_seq,
            start_notify_epoch: b.start_notify_epoch,
        };
        let this = Self::create_object(None, &geometry, flink_path.clone(), b.spin, true, &|_| {})?;
        let segment_name = this.segment_name.clone();
        let info = this.info;
        let remove_on_drop = b.remove_on_drop;
        let cleanup = |e| {
            let _ = shm::unlink(&segment_name);
            e
        };

        let flink_info = FlinkInfo {
            kind: flink::SegmentKind::Ring,
            segment_name: segment_name.clone(),
            slot_count,
            capacity,
            policy: b.policy as u32,
            max_readers: b.max_readers,
            creator_pid: info.creator_pid,
            created_unix_ms: info.created_unix_ms,
            leaked: false,
        };
        let mut this = this;
        if let Err(e) = flink::publish(&flink_path, &flink_info) {
            // `this` is the owner: dropping it would try to remove a flink
            // file it never made. Unlink only the object (nobody can have
            // attached: nothing published its name).
            this.owner = false;
            this.shared = false;
            return Err(cleanup(e));
        }
        if !remove_on_drop {
            // From now on the last handle out removes it, the creator's too.
            this.owner = false;
            this.shared = true;
        }
        Ok(this)
    }

    /// Creates, maps and initialises a new object (named `name`, or a fresh
    /// random name; `O_EXCL`: a name taken is `AlreadyExists`); `extra`
    /// runs on it just before it is published ready. With `creator`, the
    /// handle holds the creator's lock. No flink file is written.
    fn create_object(name: Option<&str>, g: &NewSegment, flink_path: PathBuf, spin: Duration, creator: bool, extra: &dyn Fn(&Self)) -> Result<Self, OpenError> {
        let (object, locks) = match name {
            Some(name) => object::create_named(name, g.total, creator)?,
            None => object::create_exclusive(g.total, creator)?,
        };
        let mut hash_words = [0u32; 4];
        byteorder::LittleEndian::read_u32_into(&g.type_hash, &mut hash_words);
        let info = SegmentInfo {
            slot_count: g.slot_count,
            capacity: g.capacity,
            stride: g.stride,
            max_readers: g.max_readers,
            max_writers: g.max_writers,
            policy: g.policy,
            type_hash: g.type_hash,
            creator_pid: std::process::id(),
            created_unix_ms: wall_ms(),
            total_size: g.total,
            generation: g.generation,
            growth: g.growth,
            predecessor: g.predecessor,
        };
        // SAFETY: the mapping is `g.total` bytes, page aligned, zero-filled
        // by ftruncate, and nobody else can know its name yet.
        let mut this = unsafe { Self::from_map(object.map, object.file, locks, info, flink_path, object.name, creator, spin) };
        this.holds_creator = creator;
        let h = this.header();
        h.init_state.store(INIT_CREATING, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.slot_count.store(g.slot_count, Ordering::Relaxed);
        h.capacity.store(g.capacity, Ordering::Relaxed);
        h.stride.store(g.stride, Ordering::Relaxed);
        h.max_readers.store(g.max_readers, Ordering::Relaxed);
        h.max_writers.store(g.max_writers, Ordering::Relaxed);
        h.policy.store(g.policy as u32, Ordering::Relaxed);
        for (w, v) in h.type_hash.iter().zip(hash_words) {
            w.store(v, Ordering::Relaxed);
        }
        h.total_size.store(g.total, Ordering::Relaxed);
        h.creator_pid.store(info.creator_pid, Ordering::Relaxed);
        h.created_unix_ms.store(info.created_unix_ms, Ordering::Relaxed);
        h.generation.store(g.generation, Ordering::Relaxed);
        h.growth.store(g.growth.code(), Ordering::Relaxed);
        h.predecessor.store(g.predecessor, Ordering::Relaxed);
        let raw = layout::RawGeometry {
            slot_count: g.slot_count,
            capacity: g.capacity,
            stride: g.stride,
            max_readers: g.max_readers,
            max_writers: g.max_writers,
            policy: g.policy as u32,
            type_hash: hash_words,
            total_size: g.total,
            generation: g.generation,
            growth: g.growth.code(),
            predecessor: g.predecessor,
        };
        h.geometry_crc.store(raw.crc(), Ordering::Relaxed);
        this.ring().init(g.start_seq);
        this.ring().init_data_epoch(g.start_notify_epoch);
        extra(&this);
        this.reset_cursor_floor();
        membarrier::register();
        // SYNC POINT (init): published last; pairs with the Acquire load in
        // `validate`.
        this.header().init_state.store(INIT_READY, Ordering::Release);
        Ok(this)
    }

    /// Attaches to the ring named by the flink file (a bare name is looked up
    /// in the default discovery directory).
    ///
    /// # Errors
    /// [`OpenError::Invalid`] with a [`ValidationError`] for a corrupt,
    /// truncated, foreign or unfinished segment or flink file;
    /// [`OpenError::Unsafe`] for a symlink, foreign owner or loose mode;
    /// [`OpenError::Io`] when files are missing.
    pub fn attach(flink_path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::attach_in(flink_path, None::<PathBuf>)
    }

    /// As [`attach`](Self::attach), with bare names looked up in `dir`.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_in(flink_path: impl AsRef<Path>, dir: Option<impl AsRef<Path>>) -> Result<Self, OpenError> {
        let flink_path = resolve(flink_path.as_ref(), dir.as_ref().map(AsRef::as_ref), false)?;
        // A growing ring's flink file is replaced when the ring moves, and
        // the generation it named may be gone by the time we open it: read
        // it again then.
        let mut tries = 0;
        loop {
            let fl = flink::read(&flink_path)?;
            if fl.kind != flink::SegmentKind::Ring {
                return Err(OpenError::Invalid { path: flink_path, error: ValidationError::BadField { field: "flink kind", value: fl.kind.code().into(), expected: "0 (a slot ring)" } });
            }
            match Self::attach_segment(&fl.segment_name, flink_path.clone(), DEFAULT_SPIN) {
                Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && tries < 3 && flink::read(&flink_path).is_ok_and(|f| f.segment_name != fl.segment_name) => tries += 1,
                other => return other,
            }
        }
    }

    /// Attaches to object `name` (found through `flink_path`, or through
    /// the previous generation of a growing ring).
    pub(crate) fn attach_segment(name: &str, flink_path: PathBuf, spin: Duration) -> Result<Self, OpenError> {
        let object = object::open_checked(name, SIZE_BOUNDS, Access::ReadWrite)?;
        // SAFETY: the mapping is `object.size` bytes, page aligned, and
        // lives while this call runs.
        let info = unsafe { validate::validate(object.map.as_ptr(), object.size) }.map_err(|error| OpenError::Invalid { path: shm_path(name), error })?;
        let locks = object::announce(&object)?;
        let (map, file) = (object.map, object.file);
        // SAFETY: `validate` checked the geometry fits in `size` bytes.
        let this = unsafe { Self::from_map(map, file, locks, info, flink_path, name.to_owned(), false, spin) };
        this.reset_cursor_floor();
        membarrier::register();
        Ok(this)
    }

    /// # Safety
    /// `map` must be at least `info.total_size` bytes and laid out by `info`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn from_map(map: MmapRaw, file: File, locks: File, info: SegmentInfo, flink_path: PathBuf, segment_name: String, owner: bool, spin: Duration) -> Self {
        let lay = Layout::compute(info.slot_count, info.capacity, info.max_readers, info.max_writers).expect("validated geometry");
        let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        // SAFETY: every offset is within `lay.total <= map.len()` (caller).
        let at = |off: u64| unsafe { base.add(off as usize) };
        let ctrl: NonNull<Control> = at(CONTROL_OFFSET as u64).cast();
        let readers: NonNull<ReaderEntry> = at(READERS_OFFSET as u64).cast();
        let slots = at(lay.slots_offset);
        let geo = Geometry { slot_count: info.slot_count, capacity: info.capacity, max_readers: info.max_readers, policy: info.policy };
        let cursor_floor = FloorCell::new();
        let segment_name_for_id = segment_name.clone();
        // SAFETY: the Control block, `max_readers` reader entries and
        // `slot_count` slots of `stride` bytes (64-byte aligned) lie inside
        // the mapping (validated geometry, caller's contract); atomics only.
        // `'static` stands for "as long as this handle": the mapping is
        // unmapped and the floor cell freed only when the handle drops (after
        // `view`, its first field), neither moves when the handle does, and
        // `ring` reborrows the view for `&self` only, so no reference
        // outlives them.
        let view = unsafe {
            RingView {
                ctrl: &*ctrl.as_ptr(),
                readers: std::slice::from_raw_parts(readers.as_ptr(), info.max_readers as usize),
                slots: SlotArray::from_raw(slots, info.stride as usize, info.slot_count),
                geo,
                parker: FutexParker,
                cursor_floor: cursor_floor.0.as_ref(),
            }
        };
        Self {
            writers: at(lay.writers_offset).cast(),
            slots,
            view,
            info,
            map,
            file,
            locks,
            flink_path,
            segment_name,
            owner,
            shared: false,
            spin,
            writer: AtomicU32::new(NO_WRITER),
            lock_table: parking_lot::Mutex::new(()),
            my_readers: AtomicU64::new(0),
            next_read_check_ms: AtomicU64::new(0),
            next_write_check_ms: AtomicU64::new(0),
            idle_polls: AtomicU32::new(0),
            _cursor_floor: cursor_floor,
            pid: std::process::id(),
            id: crate::segment::name::id_of(&segment_name_for_id),
            next: std::sync::OnceLock::new(),
            depths: grow::Depths::new(),
            grow_lock: parking_lot::Mutex::new(()),
            holds_creator: false,
        }
    }

    /// Starts the cursor floor far behind `write_seq`: no lower bound known.
    fn reset_cursor_floor(&self) {
        let ws = self.ring().write_seq();
        self.ring().cursor_floor.store(ws.wrapping_sub(1 << 62), Ordering::Release);
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: offset 0 of a mapping of at least HEADER_SIZE bytes, page
        // aligned; atomics only.
        unsafe { &*self.map.as_ptr().cast::<SegmentHeader>() }
    }

    /// The protocol over this handle's mapping.
    #[inline]
    fn ring(&self) -> &RingView<'_, FutexParker> {
        &self.view
    }

    fn writers(&self) -> WriterTable<'_> {
        // SAFETY: `max_writers` entries at `writers_offset`, inside the
        // mapping; atomics only.
        WriterTable(unsafe { std::slice::from_raw_parts(self.writers.as_ptr(), self.info.max_writers as usize) })
    }

    /// This handle's writer entry, claimed on first use (reaping dead
    /// writers if every entry is taken).
    #[inline]
    fn writer_index(&self) -> Result<u8, SlotError> {
        let w = self.writer.load(Ordering::Relaxed);
        if w != NO_WRITER {
            return Ok(w as u8);
        }
        let _g = self.lock_table.lock();
        let w = self.writer.load(Ordering::Relaxed);
        if w != NO_WRITER {
            return Ok(w as u8);
        }
        let w = match self.claim_writer_entry() {
            Some(w) => w,
            None => {
                self.reap_dead_locked();
                self.claim_writer_entry().ok_or(SlotError::WritersFull { max: self.info.max_writers })?
            }
        };
        self.writer.store(u32::from(w), Ordering::Relaxed);
        Ok(w)
    }

    /// Claims a free writer entry (see `WriterTable::claim`).
    fn claim_writer_entry(&self) -> Option<u8> {
        let write_seq = self.ring().write_seq();
        let byte = |w: u8| lock::WRITER_BASE + u64::from(w);
        self.writers().claim(std::process::id(), write_seq, &mut |w| self.take_byte(byte(w)), &mut |w| self.drop_byte(byte(w)))
    }

    /// Frees what dead participants left behind: the entries of readers
    /// whose processes died (their bits cleared, their pins dropped, so
    /// `KeepAll` writers waiting on them resume) and of dead writers (their
    /// open loans, and a claim they never stamped, become skipped sequences,
    /// so readers move past them). Liveness is decided by the participants'
    /// kernel locks, never by pids. Blocked calls and full rings do this on
    /// their own; call it to do it now.
    pub fn reap_dead(&self) -> Reaped {
        let _g = self.lock_table.lock();
        self.reap_dead_locked()
    }

    /// [`reap_dead`](Self::reap_dead), with `lock_table` held by the caller.
    ///
    /// A reaper holds a dead entry's lock byte while it frees the entry: the
    /// lock says "someone is at it" to other reapers, and a reaper that dies
    /// midway leaves the entry `RECLAIMING` with its lock free again, so the
    /// next reaper finishes the job (every step may be redone).
    fn reap_dead_locked(&self) -> Reaped {
        let ring = self.ring();
        let mut out = Reaped::default();
        let reader_byte = |r: u8| lock::READER_BASE + u64::from(r);
        out.readers = ring.reap_dead_readers(
            &|r| lock::alive(&self.file, reader_byte(r)),
            &|r, st| self.upstream_alive(r, st),
            &mut |r| self.take_byte(reader_byte(r)),
            &mut |r| self.drop_byte(reader_byte(r)),
        );
        let writer_byte = |w: u8| lock::WRITER_BASE + u64::from(w);
        let (freed, skipped) = self.writers().reap_dead(
            ring,
            &|w| lock::alive(&self.file, writer_byte(w)),
            &mut |w| self.take_byte(writer_byte(w)),
            &mut |w| self.drop_byte(writer_byte(w)),
        );
        out.writers += freed;
        out.skipped += skipped;
        out
    }

    /// Takes a lock byte on this handle's descriptor (`lock_table` held).
    fn take_byte(&self, byte: u64) -> bool {
        lock::set(&self.locks, lock::Kind::Write, byte, 1).unwrap_or(false)
    }

    /// Drops a lock byte this handle took (`lock_table` held).
    fn drop_byte(&self, byte: u64) {
        let _ = lock::set(&self.locks, lock::Kind::Unlock, byte, 1);
    }

    /// Whether anyone can still write: the creator or a writer entry's owner
    /// is alive.
    pub fn writers_alive(&self) -> bool {
        lock::alive(&self.file, lock::CREATOR)
            || self.writers().any_alive(&|w| lock::alive(&self.file, lock::WRITER_BASE + u64::from(w)))
    }

    /// Who is attached and alive, the counters, and whether the segment is
    /// live or stale, as `flink inspect` shows it.
    pub fn status(&self) -> SegmentStatus {
        // SAFETY: the mapping holds `info.total_size` validated bytes.
        unsafe { status::read_status(self.map.as_ptr(), &self.info, &self.file, &self.flink_path, &self.segment_name, self.is_leaked()) }
    }

    /// True at most once per `CHECK_INTERVAL_MS` per handle and side (so a
    /// busy reader thread does not use up a blocked writer's checks).
    fn check_due(next_ms: &AtomicU64) -> bool {
        let now = coarse_ms();
        let next = next_ms.load(Ordering::Relaxed);
        now >= next && next_ms.compare_exchange(next, now + CHECK_INTERVAL_MS, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// A reader found nothing. Looks at the clock every 64 empty polls only
    /// (a parked call resets the count, so it looks right after waking).
    #[inline]
    fn empty_poll(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        let n = self.idle_polls.load(Ordering::Relaxed).wrapping_add(1);
        self.idle_polls.store(n, Ordering::Relaxed);
        if n % 64 != 0 {
            return Ok(None);
        }
        self.idle(reader_index)
    }

    /// A reader found nothing: now and then, see whether it waits on a dead
    /// writer (reap it, and look again) or on nobody at all.
    #[cold]
    fn idle(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        if !Self::check_due(&self.next_read_check_ms) {
            return Ok(None);
        }
        let ring = self.ring();
        if ring.stalled_at(reader_index).is_some() && self.reap_dead().writers > 0 {
            if let Some(h) = ring.next_unread(reader_index)? {
                return Ok(Some(SlotHandle { slot_index: h.index, seq: h.seq }));
            }
        }
        if !self.writers_alive() {
            // A writer may have committed just before it exited.
            return match ring.next_unread(reader_index)? {
                Some(h) => Ok(Some(SlotHandle { slot_index: h.index, seq: h.seq })),
                None => Err(SlotError::WritersGone),
            };
        }
        Ok(None)
    }

    #[inline]
    fn payload(&self, index: u32) -> *mut u8 {
        let i = (index & (self.info.slot_count - 1)) as usize;
        // SAFETY: `i < slot_count`; slot `i`'s payload starts 64 bytes into
        // its stride, inside the mapping.
        unsafe { self.slots.as_ptr().add(i * self.info.stride as usize + layout::SLOT_META_SIZE) }
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

    /// Whether the creator's process is alive (decided by its kernel lock:
    /// one `fcntl`). For a transport this says whether the peer that owns
    /// an input port still exists.
    pub fn creator_alive(&self) -> bool {
        lock::alive(&self.file, lock::CREATOR)
    }

    /// Counts one sample this handle's writer gave up on because the ring
    /// was full (a transport that never blocks drops it). Shown as the
    /// writer's `dropped` by [`status`](Self::status) and `flink inspect`.
    /// Does nothing before this handle's first reservation.
    pub fn record_dropped(&self) {
        let w = self.writer.load(Ordering::Relaxed);
        if w != NO_WRITER {
            self.writers().count_dropped(w as u8);
        }
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
        } else if !crate::segment::reclaim::chain_held(self.info.predecessor, status::predecessor_of) {
            // (A reader still in an older generation is a participant too:
            // it arrives here later, and the last one out removes it.)
            leave_segment(&self.flink_path, std::slice::from_ref(&self.segment_name), &self.locks, false);
        }
        // Closing `locks` drops every lock this handle held.
    }
}

/// The ring operations on this generation alone (the `SlotBackend` impl
/// picks the generation and follows moves).
impl PosixSlotAllocator {
    #[inline(always)]
    fn reserve_slot_local(&self, active_readers_mask: ReaderMask) -> Result<SlotHandle, SlotError> {
        let growing = self.info.growth != GrowthStrategy::Static;
        if growing && self.chain_flags() != 0 {
            return Err(SlotError::Moved);
        }
        let w = self.writer_index()?;
        let claiming = self.writers().claiming(w);
        let ring = self.ring();
        match ring.reserve(active_readers_mask, w, claiming) {
            // SYNC POINT (move): claim, then look for a move (SeqCst both);
            // a claim the mover's read of `write_seq` did not see is
            // discarded here (see `grow`).
            Ok((slot_index, seq)) if growing && self.header().chain.load(Ordering::SeqCst) & layout::CHAIN_MOVING != 0 => {
                let _ = ring.discard(slot_index, seq);
                Err(SlotError::Moved)
            }
            Ok((slot_index, seq)) => Ok(SlotHandle { slot_index, seq }),
            Err(SlotError::NoFreeSlot) if growing && self.chain_flags() != 0 => Err(SlotError::Moved),
            // Full: perhaps because of a dead reader (or a dead writer's
            // loan a lap ago). Look, now and then.
            Err(SlotError::NoFreeSlot) if Self::check_due(&self.next_write_check_ms) && self.reap_dead().any() => {
                let (slot_index, seq) = ring.reserve(active_readers_mask, w, claiming)?;
                Ok(SlotHandle { slot_index, seq })
            }
            Err(e) => Err(e),
        }
    }

    fn discard_slot_local(&self, handle: SlotHandle) -> Result<(), SlotError> {
        self.ring().discard(handle.slot_index, handle.seq)
    }

    #[inline(always)]
    fn slot_data_ptr_local(&self, handle: SlotHandle) -> Result<(*mut u8, usize), SlotError> {
        self.ring().check_loan(handle.slot_index, handle.seq)?;
        Ok((self.payload(handle.slot_index), self.info.capacity as usize))
    }

    #[inline(always)]
    fn commit_in_place_local(&self, handle: SlotHandle, len: usize) -> Result<u64, SlotError> {
        let seq = self.ring().commit(handle.slot_index, handle.seq, len)?;
        self.writers().count_commit(self.writer.load(Ordering::Relaxed) as u8);
        Ok(seq)
    }

    #[inline(always)]
    fn slot_read_ptr_local(&self, handle: SlotHandle) -> Result<(*const u8, usize), SlotError> {
        let len = self.ring().held_len(handle.slot_index, handle.seq)?;
        Ok((self.payload(handle.slot_index).cast_const(), len as usize))
    }

    #[inline(always)]
    fn reserve_loan_local(&self, active_readers_mask: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        // The slot was stamped LOANED for us just now: no re-check needed.
        let h = self.reserve_slot_local(active_readers_mask)?;
        Ok((h, self.payload(h.slot_index), self.info.capacity as usize))
    }

    #[inline(always)]
    fn next_unread_read_local(&self, reader_index: u8) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> {
        // `next_unread` bounded the length by the capacity (as `held_len`).
        if let Some(h) = self.ring().next_unread(reader_index)? {
            return Ok(Some((SlotHandle { slot_index: h.index, seq: h.seq }, self.payload(h.index).cast_const(), h.len as usize)));
        }
        match self.empty_poll(reader_index)? {
            Some(h) => self.slot_read_ptr_local(h).map(|(ptr, len)| Some((h, ptr, len))),
            None => Ok(None),
        }
    }

    #[inline(always)]
    fn next_unread_slot_local(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        if let Some(h) = self.ring().next_unread(reader_index)? {
            return Ok(Some(SlotHandle { slot_index: h.index, seq: h.seq }));
        }
        self.empty_poll(reader_index)
    }

    fn read_slot_local(&self, handle: SlotHandle) -> Result<(SlotHeader, Vec<u8>), SlotError> {
        let (ptr, len) = self.slot_read_ptr_local(handle)?;
        // SAFETY: `slot_read_ptr` bounded `len` by the capacity; the caller
        // holds the slot, so it is not reused while we copy.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
        let pending = self.ring().pending_of(handle.slot_index, handle.seq);
        Ok((SlotHeader { sequence_number: handle.seq, sample_size: len as u32, pending_readers: pending }, bytes))
    }

    #[inline(always)]
    fn mark_read_local(&self, handle: SlotHandle, reader_index: u8) -> Result<(), SlotError> {
        self.ring().release(reader_index, handle.slot_index, handle.seq)
    }

    fn mark_reader_disconnected_local(&self, reader_index: u8) -> Result<(), SlotError> {
        // Not while an `unkeep` of ours drops a pin (see `RingView::unkeep`).
        let _g = self.lock_table.lock();
        let ring = self.ring();
        ring.disconnect(reader_index)?;
        ring.wake_readers();
        Ok(())
    }

    fn register_reader_local(&self) -> Result<u8, SlotError> {
        let ring = self.ring();
        let _g = self.lock_table.lock();
        let mine = self.my_readers.load(Ordering::Relaxed);
        let mut lock = |r: u8, take: bool| {
            let byte = lock::READER_BASE + u64::from(r);
            if mine & (1 << r) != 0 {
                // Our own lock (an entry we hold that someone else freed):
                // taking it again would succeed on our own descriptor.
                false
            } else if take {
                self.take_byte(byte)
            } else {
                self.drop_byte(byte);
                true
            }
        };
        let r = match ring.register_with(std::process::id(), &mut lock) {
            Err(SlotError::ReadersFull { .. }) if self.reap_dead_locked().readers > 0 => ring.register_with(std::process::id(), &mut lock)?,
            other => other?,
        };
        self.my_readers.fetch_or(1 << r, Ordering::Relaxed);
        Ok(r)
    }

    pub(crate) fn unregister_local(&self, reader_index: u8) -> Result<(), SlotError> {
        let _g = self.lock_table.lock();
        self.ring().unregister(reader_index)?;
        let bit = 1u64.checked_shl(u32::from(reader_index)).unwrap_or(0);
        if self.my_readers.fetch_and(!bit, Ordering::Relaxed) & bit != 0 {
            self.drop_byte(lock::READER_BASE + u64::from(reader_index));
        }
        Ok(())
    }
}

/// A sample a reader keeps in place past its cursor
/// ([`PosixSlotAllocator::keep`]); give it back with
/// [`PosixSlotAllocator::unkeep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    handle: SlotHandle,
    reader: u8,
    word: u8,
}

impl Kept {
    /// The sample's handle (as returned by `next_unread_slot`).
    pub fn handle(&self) -> SlotHandle {
        self.handle
    }
}

impl PosixSlotAllocator {
    /// Keeps the sample `handle` that reader `reader_index` holds (just
    /// returned by `next_unread_slot` / `next_unread_read`) in place, and
    /// moves the reader on as [`mark_read`](SlotBackend::mark_read) does: the
    /// payload pointer stays valid and unchanged until
    /// [`unkeep`](Self::unkeep), while the reader goes on with later samples.
    /// This is how a sample is lent to code that returns it whenever it likes
    /// (a DDS reader cache) without copying it and without holding up the
    /// ring: writers skip a kept slot (the ring has one slot less while it is
    /// kept), they never wait for it.
    ///
    /// Only on a `KeepAll` ring (a `DropOldest` writer stops at a pinned
    /// slot). A reader keeps at most a quarter of the ring's slots, and at most 16.
    /// `Ok(None)` when it already keeps that many (or the ring has fewer than
    /// 4 slots, or is `DropOldest`): nothing changed, the sample is still held; copy it and
    /// `mark_read` it.
    ///
    /// Disconnecting the reader (unregistering it, or a reaper after its
    /// process died) gives back everything it keeps; `unkeep` is then a no-op.
    ///
    /// # Errors
    /// [`SlotError::NotHeld`] if `handle` is not the reader's current sample;
    /// as `mark_read` otherwise.
    pub fn keep(&self, handle: SlotHandle, reader_index: u8) -> Result<Option<Kept>, SlotError> {
        let (g, h) = self.gen_of(handle)?;
        let limit = (g.info.slot_count / 4) as usize;
        let word = g.ring().keep(reader_index, h.slot_index, h.seq, limit).map_err(|e| grow::outer_err(e, handle))?;
        Ok(word.map(|word| Kept { handle, reader: reader_index, word }))
    }

    /// [`keep`](Self::keep), waiting up to `timeout` for this reader to give
    /// back a kept sample when it keeps its limit already. `Ok(None)` after
    /// the timeout, as from `keep`.
    ///
    /// # Errors
    /// As `keep`.
    pub fn keep_timeout(&self, handle: SlotHandle, reader_index: u8, timeout: Duration) -> Result<Option<Kept>, SlotError> {
        // Below the limit: no clock read.
        if let Some(k) = self.keep(handle, reader_index)? {
            return Ok(Some(k));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // The limit counts what the reader keeps in `handle`'s
            // generation, and `unkeep` wakes the waiters on that
            // generation's space word.
            let (g, _) = self.gen_of(handle)?;
            let mut got = None;
            g.ring().wait_space(left.min(PARK_SLICE), &mut || match self.keep(handle, reader_index) {
                Ok(None) => true,
                other => {
                    got = Some(other);
                    false
                }
            });
            if let Some(r) = got {
                return r;
            }
            if let Some(k) = self.keep(handle, reader_index)? {
                return Ok(Some(k));
            }
        }
    }

    /// Gives back a sample [`keep`](Self::keep) kept: writers may reuse its
    /// slot from now on, so the payload must not be read any more.
    pub fn unkeep(&self, kept: Kept) {
        let Ok((g, h)) = self.gen_of(kept.handle) else { return };
        let _g = g.lock_table.lock();
        g.ring().unkeep(kept.reader, kept.word, h.seq);
    }
}

impl SlotBackend for PosixSlotAllocator {
    #[inline]
    fn reserve_slot(&self, active_readers_mask: ReaderMask) -> Result<SlotHandle, SlotError> {
        if self.static_ring() {
            return self.reserve_slot_local(active_readers_mask);
        }
        for _ in 0..=layout::MAX_GENERATIONS {
            let d = self.depths.writer.load(Ordering::Relaxed);
            match self.at_depth(d)?.reserve_slot_local(active_readers_mask) {
                Ok(h) => return Ok(grow::join(d, h)),
                Err(SlotError::Moved) => self.follow_writer(d)?,
                Err(e) => return Err(e),
            }
        }
        Err(SlotError::NoFreeSlot)
    }

    fn discard_slot(&self, handle: SlotHandle) -> Result<(), SlotError> {
        let (g, h) = self.gen_of(handle)?;
        g.discard_slot_local(h).map_err(|e| grow::outer_err(e, handle))
    }

    /// Copies `bytes` into the loan and commits it. A sample larger than
    /// the loan's slot grows a ring created with a [`GrowthStrategy`]: the
    /// loan is discarded and the sample goes into a fresh loan of the next
    /// generation (addressed to every reader; on a full ring that loan
    /// fails with `NoFreeSlot` and the sample is not sent).
    fn commit_slot(&self, handle: SlotHandle, bytes: &[u8]) -> Result<u64, SlotError> {
        let (g, h) = self.gen_of(handle)?;
        let (mut ptr, cap) = g.slot_data_ptr_local(h).map_err(|e| grow::outer_err(e, handle))?;
        let mut target = handle;
        if bytes.len() > cap {
            if g.info.growth == GrowthStrategy::Static {
                return Err(SlotError::SampleTooLarge { sample: bytes.len(), slot_capacity: cap });
            }
            g.discard_slot_local(h)?;
            self.grow_for(bytes.len())?;
            let (nh, nptr, ncap) = self.reserve_loan(crate::ALL_READERS)?;
            if bytes.len() > ncap {
                let _ = self.discard_slot(nh);
                return Err(SlotError::SampleTooLarge { sample: bytes.len(), slot_capacity: ncap });
            }
            (target, ptr) = (nh, nptr);
        }
        // SAFETY: `ptr` is the writable payload of the loan `target`, which
        // this call owns until it commits, with room for `bytes.len()`
        // (checked above); a `&[u8]` cannot overlap a loaned slot.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        self.commit_in_place(target, bytes.len())
    }

    #[inline]
    fn slot_data_ptr(&self, handle: SlotHandle) -> Result<(*mut u8, usize), SlotError> {
        if self.static_ring() {
            return self.slot_data_ptr_local(handle);
        }
        let (g, h) = self.gen_of(handle)?;
        g.slot_data_ptr_local(h).map_err(|e| grow::outer_err(e, handle))
    }

    #[inline]
    fn commit_in_place(&self, handle: SlotHandle, len: usize) -> Result<u64, SlotError> {
        if self.static_ring() {
            return self.commit_in_place_local(handle, len);
        }
        let (g, h) = self.gen_of(handle)?;
        g.commit_in_place_local(h, len).map_err(|e| grow::outer_err(e, handle))
    }

    #[inline]
    fn slot_read_ptr(&self, handle: SlotHandle) -> Result<(*const u8, usize), SlotError> {
        if self.static_ring() {
            return self.slot_read_ptr_local(handle);
        }
        let (g, h) = self.gen_of(handle)?;
        g.slot_read_ptr_local(h).map_err(|e| grow::outer_err(e, handle))
    }

    #[inline]
    fn reserve_loan(&self, active_readers_mask: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        if self.static_ring() {
            return self.reserve_loan_local(active_readers_mask);
        }
        for _ in 0..=layout::MAX_GENERATIONS {
            let d = self.depths.writer.load(Ordering::Relaxed);
            match self.at_depth(d)?.reserve_loan_local(active_readers_mask) {
                Ok((h, ptr, len)) => return Ok((grow::join(d, h), ptr, len)),
                Err(SlotError::Moved) => self.follow_writer(d)?,
                Err(e) => return Err(e),
            }
        }
        Err(SlotError::NoFreeSlot)
    }

    #[inline]
    fn next_unread_read(&self, reader_index: u8) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> {
        if self.static_ring() {
            return self.next_unread_read_local(reader_index);
        }
        for _ in 0..=layout::MAX_GENERATIONS {
            let d = self.reader_depth(reader_index);
            let g = self.at_depth(d)?;
            match g.next_unread_read_local(reader_index) {
                Ok(Some((h, ptr, len))) => return Ok(Some((grow::join(d, h), ptr, len))),
                Ok(None) | Err(SlotError::WritersGone) if g.info.growth != GrowthStrategy::Static && g.moved_past(reader_index) => self.follow_reader(reader_index, d)?,
                other => return other,
            }
        }
        Ok(None)
    }

    #[inline]
    fn next_unread_slot(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        if self.static_ring() {
            return self.next_unread_slot_local(reader_index);
        }
        for _ in 0..=layout::MAX_GENERATIONS {
            let d = self.reader_depth(reader_index);
            let g = self.at_depth(d)?;
            match g.next_unread_slot_local(reader_index) {
                Ok(Some(h)) => return Ok(Some(grow::join(d, h))),
                Ok(None) | Err(SlotError::WritersGone) if g.info.growth != GrowthStrategy::Static && g.moved_past(reader_index) => self.follow_reader(reader_index, d)?,
                other => return other,
            }
        }
        Ok(None)
    }

    fn read_slot(&self, handle: SlotHandle) -> Result<(SlotHeader, Vec<u8>), SlotError> {
        let (g, h) = self.gen_of(handle)?;
        let (mut header, bytes) = g.read_slot_local(h).map_err(|e| grow::outer_err(e, handle))?;
        header.sequence_number = handle.seq;
        Ok((header, bytes))
    }

    #[inline]
    fn mark_read(&self, handle: SlotHandle, reader_index: u8) -> Result<(), SlotError> {
        if self.static_ring() {
            return self.mark_read_local(handle, reader_index);
        }
        let (g, h) = self.gen_of(handle)?;
        g.mark_read_local(h, reader_index).map_err(|e| grow::outer_err(e, handle))
    }

    fn mark_reader_disconnected(&self, reader_index: u8) -> Result<(), SlotError> {
        self.at_depth(self.reader_depth(reader_index))?.mark_reader_disconnected_local(reader_index)
    }

    fn register_reader(&self) -> Result<u8, SlotError> {
        // In the newest generation: follow every published move first, and
        // again if one started while we registered (we may or may not have
        // been carried over; a copy of us that we never adopt is reaped).
        for _ in 0..=layout::MAX_GENERATIONS {
            let (mut g, mut d) = self.newest();
            while g.info.growth != GrowthStrategy::Static && g.chain_flags() != 0 {
                g.wait_moved()?;
                g = g.successor()?;
                d += 1;
            }
            let r = g.register_reader_local()?;
            if g.info.growth != GrowthStrategy::Static && g.chain_flags() != 0 {
                let _ = g.unregister_local(r);
                g.release_if_unread();
                continue;
            }
            self.depths.readers[usize::from(r)].store(d as u8, Ordering::Relaxed);
            return Ok(r);
        }
        Err(SlotError::Generation { what: "register a reader", detail: "the ring kept moving".into() })
    }

    fn unregister_reader(&self, reader_index: u8) -> Result<(), SlotError> {
        let d = self.reader_depth(reader_index);
        let g = self.at_depth(d)?;
        g.unregister_local(reader_index)?;
        g.release_if_unread();
        // Copies of this reader carried into later generations never get
        // adopted now: free them (reapers would, later).
        let mut n = g.next.get();
        while let Some(x) = n {
            let st = x.ring().reader_state(reader_index);
            if crate::protocol::entry_kind(st) == crate::protocol::ENTRY_ADOPTING {
                x.ring().reap_reader(reader_index, st);
                x.release_if_unread();
            }
            n = x.next.get();
        }
        // Registered, so below 64.
        self.depths.readers[usize::from(reader_index)].store(0, Ordering::Relaxed);
        Ok(())
    }

    fn reader_stats(&self, reader_index: u8) -> Result<ReaderStats, SlotError> {
        self.at_depth(self.reader_depth(reader_index))?.ring().stats(reader_index)
    }

    fn slot_count(&self) -> usize {
        self.info.slot_count as usize
    }
    fn slot_capacity(&self) -> usize {
        self.writer_gen().info.capacity as usize
    }
    fn slot_total_size(&self) -> usize {
        self.writer_gen().info.stride as usize
    }
    fn overflow_policy(&self) -> OverflowPolicy {
        self.info.policy
    }
    fn type_hash(&self) -> Option<[u8; 16]> {
        Some(self.info.type_hash).filter(|h| h != &[0; 16])
    }
    fn spin_budget(&self) -> Duration {
        self.spin
    }
    fn ensure_capacity(&self, len: usize) -> Result<(), SlotError> {
        // A static ring is its one generation: no chain to walk (this runs
        // on every transport send).
        if self.info.growth == GrowthStrategy::Static {
            let capacity = self.info.capacity as usize;
            return if len <= capacity { Ok(()) } else { Err(SlotError::SampleTooLarge { sample: len, slot_capacity: capacity }) };
        }
        self.grow_for(len)
    }
    fn notify_generation(&self) -> u64 {
        u64::from(self.newest().0.ring().data_epoch())
    }
    fn wait_for_change(&self, last: u64, timeout: Duration) {
        self.newest().0.ring().wait_data(last as u32, timeout.min(PARK_SLICE));
        // The next empty poll looks at liveness (if due).
        self.idle_polls.store(63, Ordering::Relaxed);
        let mut n = self.next.get();
        while let Some(x) = n {
            x.idle_polls.store(63, Ordering::Relaxed);
            n = x.next.get();
        }
    }
    fn wait_for_space(&self, timeout: Duration, still_full: &mut dyn FnMut() -> bool) {
        self.writer_gen().ring().wait_space(timeout.min(PARK_SLICE), still_full);
    }
}

impl PosixSlotAllocator {
    /// A ring that never grows: every call goes straight to this
    /// generation (the hot path of a static ring pays one predicted branch).
    #[inline(always)]
    fn static_ring(&self) -> bool {
        self.info.growth == GrowthStrategy::Static
    }

    /// The generation a slot handle belongs to, and the handle in it.
    #[inline]
    fn gen_of(&self, handle: SlotHandle) -> Result<(&Self, SlotHandle), SlotError> {
        let (d, h) = grow::split(handle);
        // No such generation: the handle as given is out of this one's
        // range, and its calls fail as for any out-of-range index.
        Ok(self.at_depth(d).map_or((self, handle), |g| (g, h)))
    }

    /// The generation (depth) reader `r` reads in.
    #[inline]
    fn reader_depth(&self, r: u8) -> u32 {
        self.depths.readers.get(usize::from(r)).map_or(0, |d| u32::from(d.load(Ordering::Relaxed)))
    }

    /// The generation this handle's writer reserves in.
    #[inline]
    fn writer_gen(&self) -> &Self {
        self.at_depth(self.depths.writer.load(Ordering::Relaxed)).unwrap_or(self)
    }

    /// Reserves a loan with room for `len` bytes: as
    /// [`SlotBackend::reserve_loan`], after growing a ring created with a
    /// [`GrowthStrategy`] if `len` exceeds its slots.
    ///
    /// # Errors
    /// [`SlotError::SampleTooLarge`] on a static ring,
    /// [`SlotError::GenerationsExhausted`] when the ring cannot grow any
    /// more, [`SlotError::Generation`] when the next generation cannot be
    /// made; as `reserve_loan` otherwise.
    pub fn reserve_for(&self, len: usize, active_readers_mask: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        self.ensure_capacity(len)?;
        self.reserve_loan(active_readers_mask)
    }

    /// The generation of the ring this handle writes in (0 until the ring
    /// first grew), and how many generations this handle has mapped.
    pub fn generation(&self) -> u32 {
        self.writer_gen().info.generation
    }
}

use byteorder::ByteOrder as _;
