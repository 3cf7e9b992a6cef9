//! One mapped blackboard segment: created (written, then published through
//! its flink file) or attached (validated), and the per-entry writer claims.
//! Shared by a [`Blackboard`](super::Blackboard) and every entry handle made
//! from it (through an `Arc`): the mapping lives until the last is dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use memmap2::MmapRaw;

use super::error::{BlackboardError, TypeDesc};
use super::layout::{build_image, EntryState, BUFFERS, ENTRY_LOCK_BASE, HEADER_SIZE, INIT_READY, STATE_SIZE};
use super::ownership::Leave;
use super::validate::{check_image, validate, BoardInfo};
use super::EntryId;
use crate::error::{OpenError, ValidationError};
use crate::discovery::clear_for_create;
use crate::segment::dir::resolve;
use crate::segment::flink;
use crate::segment::liveness as lock;
use crate::segment::name::shm_path;
use crate::segment::object::{self, Access, Object, SizeBounds};
use crate::sys::clock::wall_ms;
use crate::sys::shm;

/// Writes an entry's initial value at the pointer it is given (a value
/// buffer, 64-aligned, at least the value's size).
pub(crate) type InitFn = Box<dyn FnOnce(*mut u8) + Send>;

/// A mapped board; see the module doc.
pub(crate) struct Segment {
    pub map: MmapRaw,
    /// The object, mapped; liveness tests go through this descriptor.
    pub file: File,
    /// A second open of the object that holds this handle's locks.
    pub locks: File,
    pub info: BoardInfo,
    pub flink_path: PathBuf,
    pub segment_name: String,
    /// What the last handle of this segment does when it goes (see
    /// `ownership`).
    pub leave: AtomicU8,
    /// Entries this handle holds a writer claim on (their lock bytes are
    /// held on `locks`, whose open file description all threads of this
    /// handle share: a second claim through it would not conflict).
    pub claimed: parking_lot::Mutex<Vec<bool>>,
    /// The process that opened it: a copy in a `fork`ed child only unmaps.
    pub pid: u32,
}

impl Segment {
    /// Creates the segment and its flink file; see
    /// [`BlackboardBuilder::create`](super::BlackboardBuilder::create).
    pub fn create(flink_path: &Path, dir: Option<&Path>, key: TypeDesc, keys: Vec<Vec<u8>>, entries: Vec<(TypeDesc, InitFn)>) -> Result<Self, BlackboardError> {
        let pid = std::process::id();
        let created = wall_ms();
        let types: Vec<TypeDesc> = entries.iter().map(|(t, _)| *t).collect();
        let (image, total) = build_image(key, &keys, &types, pid, created).ok_or(BlackboardError::Config {
            what: "blackboard size",
            value: types.iter().map(|t| u64::from(t.size) * BUFFERS as u64).sum(),
            expected: "a segment of at most 4 GiB (three buffers per value)",
        })?;
        let flink_path = resolve(flink_path, dir, true)?;
        clear_for_create(&flink_path)?;
        let (Object { name, file, map, .. }, locks) = object::create_exclusive(total, true)?;
        let cleanup = |e| {
            let _ = shm::unlink(&name);
            e
        };
        let base = map.as_mut_ptr();
        // Words 0 and 1 (magic, version, init state) are stored apart, with
        // the init state last.
        let words = image.words();
        // SAFETY: the mapping is `total >= image.len()` bytes, page aligned,
        // zero-filled, and nobody else can know its name yet; word stores
        // through atomics at aligned offsets.
        unsafe {
            for (k, w) in words.iter().enumerate().skip(2) {
                (*base.cast::<AtomicU64>().add(k)).store(*w, Ordering::Relaxed);
            }
            (*base.cast::<AtomicU64>()).store(words[0], Ordering::Relaxed);
            (*base.add(8).cast::<AtomicU32>()).store(words[1] as u32, Ordering::Relaxed);
        }
        // Our own bytes, checked as an attacher will check them (a failure
        // is a bug of ours, reported rather than trusted).
        let info = check_image(&image, total).map_err(|error| cleanup(OpenError::Invalid { path: shm_path(&name), error }.into()))?;
        for ((_, init), e) in entries.into_iter().zip(&info.entries) {
            // Version 0 in buffer 0; the state is all zero already
            // (ftruncate), which is: version 0, every seq 0, unclaimed.
            // SAFETY: buffer 0 of the entry's block lies inside the mapping
            // (`build_image` laid it out for `total` bytes), is 64-aligned
            // and at least the value's size; nobody else maps it yet.
            init(unsafe { base.add(e.block_offset + STATE_SIZE) });
        }
        // SYNC POINT (init): published last; pairs with the Acquire load in
        // `validate`.
        // SAFETY: offset 12 of the mapping, aligned.
        unsafe { (*base.add(12).cast::<AtomicU32>()).store(INIT_READY, Ordering::Release) };
        let n = info.entries.len();
        let this = Self {
            map,
            file,
            locks,
            flink_path: flink_path.clone(),
            segment_name: name.clone(),
            leave: AtomicU8::new(Leave::Remove as u8),
            claimed: parking_lot::Mutex::new(vec![false; n]),
            pid,
            info,
        };
        let flink_info = flink::FlinkInfo {
            kind: flink::SegmentKind::Blackboard,
            segment_name: name.clone(),
            slot_count: n as u32,
            capacity: this.info.max_value_size,
            policy: 0,
            max_readers: 0,
            creator_pid: pid,
            created_unix_ms: created,
            leaked: false,
        };
        if let Err(e) = flink::publish(&flink_path, &flink_info) {
            // Not published: nobody can have attached. Unlink only the
            // object (the flink path is somebody else's).
            this.leave.store(Leave::Keep as u8, Ordering::Relaxed);
            drop(this);
            return Err(cleanup(e.into()));
        }
        Ok(this)
    }

    /// Attaches through a flink file; see
    /// [`Blackboard::attach`](super::Blackboard::attach).
    pub fn attach(flink_path: &Path, dir: Option<&Path>) -> Result<Self, BlackboardError> {
        let flink_path = resolve(flink_path, dir, false)?;
        let fl = flink::read(&flink_path)?;
        if fl.kind != flink::SegmentKind::Blackboard {
            let error = ValidationError::BadField { field: "flink kind", value: fl.kind.code().into(), expected: "1 (blackboard): this flink file names a slot ring" };
            return Err(OpenError::Invalid { path: flink_path, error }.into());
        }
        let (object, info) = open_validated(&fl.segment_name, Access::ReadWrite)?;
        let locks = object::announce(&object)?;
        let Object { name, file, map, .. } = object;
        let n = info.entries.len();
        Ok(Self {
            map,
            file,
            locks,
            info,
            flink_path,
            segment_name: name,
            leave: AtomicU8::new(Leave::LastOut as u8),
            claimed: parking_lot::Mutex::new(vec![false; n]),
            pid: std::process::id(),
        })
    }

    /// The entry's state (`i` a validated entry index).
    pub fn state(&self, i: usize) -> &EntryState {
        let off = self.info.entries[i].block_offset;
        // SAFETY: validated: the block lies inside the mapping, 64-aligned;
        // `EntryState` is atomics only (any bits valid); the mapping lives
        // as long as `self`.
        unsafe { &*self.map.as_ptr().add(off).cast::<EntryState>() }
    }

    /// Buffer `b % BUFFERS` of entry `i` (`i` a validated entry index):
    /// 64-aligned, `buf_stride` bytes, inside the mapping.
    pub fn buffer(&self, i: usize, b: u64) -> *mut u8 {
        let e = &self.info.entries[i];
        let b = (b % BUFFERS as u64) as usize;
        // SAFETY: validated: `STATE_SIZE + BUFFERS × buf_stride` bytes from
        // `block_offset` lie inside the mapping.
        unsafe { self.map.as_mut_ptr().add(e.block_offset + STATE_SIZE + b * e.buf_stride) }
    }

    /// Claims entry `i`'s writer: its lock byte first (held for as long as
    /// this handle holds the claim; the kernel drops it if the process
    /// dies), then the claim word. Finding the lock free while the word says
    /// claimed means the previous writer died: we take over.
    pub fn claim(&self, i: usize) -> Result<(), BlackboardError> {
        let mut claimed = self.claimed.lock();
        let st = self.state(i);
        let exists = || BlackboardError::WriterExists { entry: EntryId(i as u32), pid: st.writer_pid.load(Ordering::Relaxed) };
        if claimed[i] {
            return Err(exists());
        }
        match lock::set(&self.locks, lock::Kind::Write, ENTRY_LOCK_BASE + i as u64, 1) {
            Ok(true) => {}
            Ok(false) => return Err(exists()),
            Err(source) => return Err(BlackboardError::Io { op: "lock entry writer byte of", path: shm_path(&self.segment_name), source }),
        }
        // SYNC POINT (claim): the lock is ours, so no live writer exists;
        // Acquire pairs with a previous writer's Release of the claim, after
        // its last publication.
        st.claim.swap(1, Ordering::AcqRel);
        st.writer_pid.store(std::process::id(), Ordering::Relaxed);
        claimed[i] = true;
        Ok(())
    }

    /// Gives up the claim on entry `i` (the word, then the lock).
    pub fn release(&self, i: usize) {
        let mut claimed = self.claimed.lock();
        if !std::mem::replace(&mut claimed[i], false) || std::process::id() != self.pid {
            return;
        }
        let st = self.state(i);
        st.writer_pid.store(0, Ordering::Relaxed);
        st.claim.store(0, Ordering::Release);
        let _ = lock::set(&self.locks, lock::Kind::Unlock, ENTRY_LOCK_BASE + i as u64, 1);
    }

    /// The OS object's path.
    pub fn segment_path(&self) -> PathBuf {
        shm_path(&self.segment_name)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.leave();
        // Closing `locks` drops every lock this handle held.
    }
}

/// A board object's size before its header is read.
const SIZE_BOUNDS: SizeBounds = SizeBounds { min: HEADER_SIZE as u64, max: super::layout::MAX_TOTAL, max_text: "at most 4 GiB" };

/// Opens, checks ([`object::open_checked`]) and validates the board object
/// `name`.
pub(crate) fn open_validated(name: &str, access: Access) -> Result<(Object, BoardInfo), OpenError> {
    let object = object::open_checked(name, SIZE_BOUNDS, access)?;
    // SAFETY: the mapping is `object.size` bytes, page aligned, alive for
    // the call.
    let info = unsafe { validate(object.map.as_ptr(), object.size) }.map_err(|error| OpenError::Invalid { path: shm_path(name), error })?;
    Ok((object, info))
}
