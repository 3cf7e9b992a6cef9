//! [`PosixSlotAllocator`]: a slot ring in a POSIX shared-memory object, found
//! through a flink file. Creator and attachers are equal peers: any may write
//! and any may read; the lock-free protocol lives in [`crate::protocol`].

pub(crate) mod flink;
mod layout;
mod membarrier;
mod shm;
mod validate;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::Duration;

use linux_futex::{Futex, Shared};
use memmap2::{MmapOptions, MmapRaw};

use crate::backend::{OverflowPolicy, ReaderMask, ReaderStats, SlotBackend, SlotHandle, SlotHeader, DEFAULT_SPIN};
use crate::error::{OpenError, SlotError, ValidationError};
use crate::protocol::{Control, Geometry, Parker, ReaderEntry, RingView, SlotArray};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

pub use flink::{default_discovery_dir, FlinkInfo};
pub use validate::SegmentInfo;

use layout::{Layout, SegmentHeader, WriterEntry, CONTROL_OFFSET, INIT_CREATING, INIT_READY, LAYOUT_VERSION, MAGIC, READERS_OFFSET};

/// Parks on a futex word in shared memory.
#[derive(Clone, Copy)]
pub(crate) struct FutexParker;

fn futex(word: &AtomicU32) -> &Futex<Shared> {
    // SAFETY: `Futex<Shared>` is `#[repr(transparent)]` over `AtomicU32`
    // (plus a zero-sized marker), so the reference cast is layout-exact.
    unsafe { &*std::ptr::from_ref(word).cast::<Futex<Shared>>() }
}

impl Parker for FutexParker {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
        // WrongValue, Interrupted and TimedOut all mean "look again".
        let _ = futex(word).wait_for(expected, timeout);
    }
    fn wake_all(&self, word: &AtomicU32) {
        futex(word).wake(i32::MAX);
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
}

impl PosixSlotAllocatorBuilder {
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

    /// Creates the segment and its flink file. A bare name (no `/`) is put in
    /// the discovery directory; a path is used as given (its directory must be
    /// ours and not group/other writable).
    ///
    /// # Errors
    /// [`OpenError::Config`] for an out-of-range option, [`OpenError::Exists`]
    /// when the flink file exists, [`OpenError::Unsafe`] for an unsafe
    /// directory, [`OpenError::Io`] for system errors.
    pub fn create(self, flink_path: impl AsRef<Path>) -> Result<PosixSlotAllocator, OpenError> {
        PosixSlotAllocator::create_with(self, flink_path.as_ref())
    }
}

/// A slot ring in POSIX shared memory.
pub struct PosixSlotAllocator {
    map: MmapRaw,
    _file: File,
    ctrl: NonNull<Control>,
    readers: NonNull<ReaderEntry>,
    writers: NonNull<WriterEntry>,
    slots: NonNull<u8>,
    geo: Geometry,
    info: SegmentInfo,
    flink_path: PathBuf,
    segment_name: String,
    owner: bool,
    spin: Duration,
    writer_entry: OnceLock<Option<u32>>,
    /// See `RingView::cursor_floor`.
    cursor_floor: AtomicU64,
}

// SAFETY: the pointers point into `map`, which lives as long as `self`; all
// shared state behind them is atomics, accessed through the protocol.
unsafe impl Send for PosixSlotAllocator {}
// SAFETY: as above; `&self` methods only touch atomics and loan-owned bytes.
unsafe impl Sync for PosixSlotAllocator {}

fn config(what: &'static str, value: u64, expected: &'static str) -> OpenError {
    OpenError::Config { what, value, expected }
}

/// Where a flink file lives: a bare name goes into the discovery directory
/// (created if `create_dir`), a path is used as given. Either directory is
/// checked: not a symlink, ours, not group/other writable.
fn resolve(flink_path: &Path, dir: Option<&Path>, create_dir: bool) -> Result<PathBuf, OpenError> {
    let bare = flink_path.components().count() == 1 && !flink_path.is_absolute();
    if bare && !flink_path.as_os_str().as_encoded_bytes().contains(&b'/') {
        let dir = dir.map_or_else(default_discovery_dir, Path::to_owned);
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

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
        if flink_path.symlink_metadata().is_ok() {
            return Err(OpenError::Exists(flink_path));
        }

        let mut attempt = 0;
        let (segment_name, file) = loop {
            let name = flink::new_segment_name();
            match shm::create(&name, lay.total) {
                Ok(f) => break (name, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 4 => attempt += 1,
                Err(source) => return Err(OpenError::Io { op: "create shared-memory object", path: PathBuf::from(format!("/dev/shm{name}")), source }),
            }
        };
        let cleanup = |e| {
            let _ = shm::unlink(&segment_name);
            e
        };
        let map = MmapOptions::new()
            .len(lay.total as usize)
            .map_raw(&file)
            .map_err(|source| cleanup(OpenError::Io { op: "mmap", path: PathBuf::from(format!("/dev/shm{segment_name}")), source }))?;

        let hash = b.type_hash.unwrap_or([0; 16]);
        let mut hash_words = [0u32; 4];
        byteorder::LittleEndian::read_u32_into(&hash, &mut hash_words);
        let info = SegmentInfo {
            slot_count,
            capacity,
            stride: lay.stride as u32,
            max_readers: b.max_readers,
            max_writers: b.max_writers,
            policy: b.policy,
            type_hash: hash,
            creator_pid: std::process::id(),
            created_unix_ms: now_ms(),
            total_size: lay.total,
        };
        // SAFETY: the mapping is `lay.total` bytes, page aligned, zero-filled
        // by ftruncate, and nobody else can know its name yet.
        let this = unsafe { Self::from_map(map, file, info, flink_path.clone(), segment_name.clone(), true, b.spin) };
        let h = this.header();
        h.init_state.store(INIT_CREATING, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.slot_count.store(slot_count, Ordering::Relaxed);
        h.capacity.store(capacity, Ordering::Relaxed);
        h.stride.store(lay.stride as u32, Ordering::Relaxed);
        h.max_readers.store(b.max_readers, Ordering::Relaxed);
        h.max_writers.store(b.max_writers, Ordering::Relaxed);
        h.policy.store(b.policy as u32, Ordering::Relaxed);
        for (w, v) in h.type_hash.iter().zip(hash_words) {
            w.store(v, Ordering::Relaxed);
        }
        h.total_size.store(lay.total, Ordering::Relaxed);
        h.creator_pid.store(info.creator_pid, Ordering::Relaxed);
        h.created_unix_ms.store(info.created_unix_ms, Ordering::Relaxed);
        let raw = layout::RawGeometry {
            slot_count,
            capacity,
            stride: lay.stride as u32,
            max_readers: b.max_readers,
            max_writers: b.max_writers,
            policy: b.policy as u32,
            type_hash: hash_words,
            total_size: lay.total,
        };
        h.geometry_crc.store(raw.crc(), Ordering::Relaxed);
        this.ring().init(b.start_seq);
        this.reset_cursor_floor();
        membarrier::register();
        // SYNC POINT (init): published last; pairs with the Acquire load in
        // `validate`.
        h.init_state.store(INIT_READY, Ordering::Release);

        let flink_info = FlinkInfo {
            segment_name: segment_name.clone(),
            slot_count,
            capacity,
            policy: b.policy as u32,
            max_readers: b.max_readers,
            creator_pid: info.creator_pid,
            created_unix_ms: info.created_unix_ms,
        };
        if let Err(e) = flink::publish(&flink_path, &flink_info) {
            // `this` is the owner: dropping it would try to remove a flink
            // file it never made. Unlink only the object.
            let mut this = this;
            this.owner = false;
            return Err(cleanup(e));
        }
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
        let fl = flink::read(&flink_path)?;
        let shm_path = PathBuf::from(format!("/dev/shm{}", fl.segment_name));
        let file = shm::open(&fl.segment_name).map_err(|source| OpenError::Io { op: "open shared-memory object", path: shm_path.clone(), source })?;
        let md = file.metadata().map_err(|source| OpenError::Io { op: "fstat", path: shm_path.clone(), source })?;
        if md.uid() != shm::euid() {
            return Err(OpenError::Unsafe { path: shm_path, reason: "the shared-memory object is owned by another user" });
        }
        if md.mode() & 0o022 != 0 {
            return Err(OpenError::Unsafe { path: shm_path, reason: "the shared-memory object is writable by group or others" });
        }
        let size = md.len();
        let invalid = |error| OpenError::Invalid { path: shm_path.clone(), error };
        if size < READERS_OFFSET as u64 {
            return Err(invalid(ValidationError::Truncated { size, needed: READERS_OFFSET as u64 }));
        }
        if size > layout::MAX_TOTAL {
            return Err(invalid(ValidationError::BadField { field: "object size", value: size, expected: "at most 64 GiB" }));
        }
        let map = MmapOptions::new().len(size as usize).map_raw(&file).map_err(|source| OpenError::Io { op: "mmap", path: shm_path.clone(), source })?;
        // SAFETY: the mapping is `size` bytes, page aligned, and lives while
        // this call runs.
        let info = unsafe { validate::validate(map.as_ptr(), size) }.map_err(invalid)?;
        // SAFETY: `validate` checked the geometry fits in `size` bytes.
        let this = unsafe { Self::from_map(map, file, info, flink_path, fl.segment_name, false, DEFAULT_SPIN) };
        this.reset_cursor_floor();
        membarrier::register();
        Ok(this)
    }

    /// # Safety
    /// `map` must be at least `info.total_size` bytes and laid out by `info`.
    unsafe fn from_map(map: MmapRaw, file: File, info: SegmentInfo, flink_path: PathBuf, segment_name: String, owner: bool, spin: Duration) -> Self {
        let lay = Layout::compute(info.slot_count, info.capacity, info.max_readers, info.max_writers).expect("validated geometry");
        let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        // SAFETY: every offset is within `lay.total <= map.len()` (caller).
        let at = |off: u64| unsafe { base.add(off as usize) };
        Self {
            ctrl: at(CONTROL_OFFSET as u64).cast(),
            readers: at(READERS_OFFSET as u64).cast(),
            writers: at(lay.writers_offset).cast(),
            slots: at(lay.slots_offset),
            geo: Geometry { slot_count: info.slot_count, capacity: info.capacity, max_readers: info.max_readers, policy: info.policy },
            info,
            map,
            _file: file,
            flink_path,
            segment_name,
            owner,
            spin,
            writer_entry: OnceLock::new(),
            cursor_floor: AtomicU64::new(0),
        }
    }

    /// Starts the cursor floor far behind `write_seq`: no lower bound known.
    fn reset_cursor_floor(&self) {
        // SAFETY: see `ring`.
        let ws = unsafe { self.ctrl.as_ref() }.write_seq.0.load(Ordering::SeqCst);
        self.cursor_floor.store(ws.wrapping_sub(1 << 62), Ordering::Release);
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: offset 0 of a mapping of at least HEADER_SIZE bytes, page
        // aligned; atomics only.
        unsafe { &*self.map.as_ptr().cast::<SegmentHeader>() }
    }

    #[inline]
    fn ring(&self) -> RingView<'_, FutexParker> {
        RingView {
            // SAFETY: `ctrl` points at the Control block inside the mapping,
            // which lives as long as `&self`; atomics only.
            ctrl: unsafe { self.ctrl.as_ref() },
            // SAFETY: `max_readers` entries follow at READERS_OFFSET, inside
            // the mapping (validated geometry).
            readers: unsafe { std::slice::from_raw_parts(self.readers.as_ptr(), self.info.max_readers as usize) },
            // SAFETY: `slot_count` slots of `stride` bytes start at `slots`,
            // 64-byte aligned, inside the mapping.
            slots: unsafe { SlotArray::from_raw(self.slots, self.info.stride as usize, self.info.slot_count) },
            geo: self.geo,
            parker: FutexParker,
            cursor_floor: &self.cursor_floor,
        }
    }

    fn writers(&self) -> &[WriterEntry] {
        // SAFETY: `max_writers` entries at `writers_offset`, inside the mapping.
        unsafe { std::slice::from_raw_parts(self.writers.as_ptr(), self.info.max_writers as usize) }
    }

    fn claim_writer_entry(&self) {
        self.writer_entry.get_or_init(|| {
            self.writers().iter().position(|w| w.state.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok()).map(|i| {
                self.writers()[i].pid.store(std::process::id(), Ordering::Relaxed);
                i as u32
            })
        });
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

    /// The OS object: `/dev/shm/shmslot.<uid>.<random>`.
    pub fn segment_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm{}", self.segment_name))
    }

    /// The validated geometry.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// Whether dropping this handle removes the segment and flink file.
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Sets this handle's spin budget for blocking calls.
    pub fn set_spin_budget(&mut self, spin: Duration) {
        self.spin = spin;
    }
}

impl Drop for PosixSlotAllocator {
    fn drop(&mut self) {
        if let Some(Some(i)) = self.writer_entry.get() {
            self.writers()[*i as usize].state.store(0, Ordering::Release);
        }
        if self.owner {
            flink::remove_if_names(&self.flink_path, &self.segment_name);
            let _ = shm::unlink(&self.segment_name);
        }
    }
}

impl SlotBackend for PosixSlotAllocator {
    fn reserve_slot(&self, active_readers_mask: ReaderMask) -> Result<SlotHandle, SlotError> {
        self.claim_writer_entry();
        let (slot_index, seq) = self.ring().reserve(active_readers_mask)?;
        Ok(SlotHandle { slot_index, seq })
    }

    fn discard_slot(&self, handle: SlotHandle) -> Result<(), SlotError> {
        self.ring().discard(handle.slot_index, handle.seq)
    }

    fn slot_data_ptr(&self, handle: SlotHandle) -> Result<(*mut u8, usize), SlotError> {
        self.ring().check_loan(handle.slot_index, handle.seq)?;
        Ok((self.payload(handle.slot_index), self.info.capacity as usize))
    }

    fn commit_in_place(&self, handle: SlotHandle, len: usize) -> Result<u64, SlotError> {
        self.ring().commit(handle.slot_index, handle.seq, len)
    }

    fn slot_read_ptr(&self, handle: SlotHandle) -> Result<(*const u8, usize), SlotError> {
        let len = self.ring().held_len(handle.slot_index, handle.seq)?;
        Ok((self.payload(handle.slot_index).cast_const(), len as usize))
    }

    fn next_unread_slot(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        Ok(self.ring().next_unread(reader_index)?.map(|h| SlotHandle { slot_index: h.index, seq: h.seq }))
    }

    fn read_slot(&self, handle: SlotHandle) -> Result<(SlotHeader, Vec<u8>), SlotError> {
        let (ptr, len) = self.slot_read_ptr(handle)?;
        // SAFETY: `slot_read_ptr` bounded `len` by the capacity; the caller
        // holds the slot, so it is not reused while we copy.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
        let pending = self.ring().pending_of(handle.slot_index, handle.seq);
        Ok((SlotHeader { sequence_number: handle.seq, sample_size: len as u32, pending_readers: pending }, bytes))
    }

    fn mark_read(&self, handle: SlotHandle, reader_index: u8) -> Result<(), SlotError> {
        self.ring().release(reader_index, handle.slot_index, handle.seq)
    }

    fn mark_reader_disconnected(&self, reader_index: u8) -> Result<(), SlotError> {
        let ring = self.ring();
        ring.disconnect(reader_index)?;
        ring.ctrl.data.generation.fetch_add(1, Ordering::SeqCst);
        FutexParker.wake_all(&ring.ctrl.data.generation);
        Ok(())
    }

    fn register_reader(&self) -> Result<u8, SlotError> {
        self.ring().register(std::process::id())
    }

    fn unregister_reader(&self, reader_index: u8) -> Result<(), SlotError> {
        self.ring().unregister(reader_index)
    }

    fn reader_stats(&self, reader_index: u8) -> Result<ReaderStats, SlotError> {
        self.ring().stats(reader_index)
    }

    fn slot_count(&self) -> usize {
        self.info.slot_count as usize
    }
    fn slot_capacity(&self) -> usize {
        self.info.capacity as usize
    }
    fn slot_total_size(&self) -> usize {
        self.info.stride as usize
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
    fn notify_generation(&self) -> u64 {
        u64::from(self.ring().generation())
    }
    fn wait_for_change(&self, last: u64, timeout: Duration) {
        self.ring().wait_data(last as u32, timeout);
    }
    fn wait_for_space(&self, timeout: Duration, still_full: &mut dyn FnMut() -> bool) {
        self.ring().wait_space(timeout, still_full);
    }
}

use byteorder::ByteOrder as _;
