//! Making a handle: creating a ring (its first generation, or a growing
//! ring's next one) and publishing it, or attaching to one and validating
//! it, on the segment layer's `create_exclusive` / `open_checked`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use byteorder::ByteOrder as _;

use super::layout::{self, Layout, INIT_CREATING, INIT_READY, LAYOUT_VERSION, MAGIC};
use super::{validate, Generation, GrowthStrategy, PosixSlotAllocator, PosixSlotAllocatorBuilder, SegmentInfo, SIZE_BOUNDS};

use crate::backend::{OverflowPolicy, DEFAULT_SPIN};
use crate::discovery::clear_for_create;
use crate::error::{OpenError, ValidationError};
use crate::segment::dir::resolve;
use crate::segment::flink::{self, FlinkInfo};
use crate::segment::name::shm_path;
use crate::segment::object::{self, Access};
use crate::sync::Ordering;
use crate::sys::clock::wall_ms;
use crate::sys::{membarrier, shm};

/// Whether attaching failed because the object is gone: removed already
/// (no such object) or being removed.
pub(super) fn is_gone(e: &OpenError) -> bool {
    match e {
        OpenError::BeingRemoved { .. } => true,
        OpenError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

pub(super) fn config(what: &'static str, value: u64, expected: &'static str) -> OpenError {
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

impl Generation {

    pub(super) fn create_with(b: PosixSlotAllocatorBuilder, flink_path: &Path) -> Result<Self, OpenError> {
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
    pub(super) fn create_object(name: Option<&str>, g: &NewSegment, flink_path: PathBuf, spin: Duration, creator: bool, extra: &dyn Fn(&Self)) -> Result<Self, OpenError> {
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

    /// As [`attach`](Self::attach), with bare names looked up in `dir`.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub(super) fn attach_in(flink_path: impl AsRef<Path>, dir: Option<impl AsRef<Path>>) -> Result<Self, OpenError> {
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
                Err(e) if is_gone(&e) && tries < 3 && flink::read(&flink_path).is_ok_and(|f| f.segment_name != fl.segment_name) => tries += 1,
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
}

impl PosixSlotAllocator {
    /// Creates a `KeepAll` ring with default options; see
    /// [`PosixSlotAllocatorBuilder::create`].
    ///
    /// # Errors
    /// As [`PosixSlotAllocatorBuilder::create`].
    pub fn create(flink_path: impl AsRef<Path>, slot_count: usize, slot_capacity: usize) -> Result<Self, OpenError> {
        Self::builder(slot_count, slot_capacity).create(flink_path)
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
        Generation::attach_in(flink_path, dir).map(Self::over)
    }
}
