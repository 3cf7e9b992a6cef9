//! A keyed **blackboard** in shared memory: a fixed set of entries, each
//! holding the latest value of its own type, created with their keys and
//! initial values; one writer per entry, any number of readers in any
//! number of processes. Found through a flink file, like a ring.
//!
//! ```no_run
//! use shmslot::blackboard::{Blackboard, BlackboardBuilder};
//! use shmslot::{type_hash, Pod};
//! use std::time::Duration;
//!
//! #[derive(Clone, Copy, PartialEq, Eq)]
//! #[repr(C)]
//! struct Key(u32);
//! // SAFETY: a u32; any bits are valid.
//! unsafe impl Pod for Key { const TYPE_HASH: [u8; 16] = type_hash("Key", 4, 4); }
//! #[derive(Clone, Copy, Debug)]
//! #[repr(C)]
//! struct Battery { volts: f32, percent: f32 }
//! // SAFETY: two f32; any bits are valid.
//! unsafe impl Pod for Battery { const TYPE_HASH: [u8; 16] = type_hash("Battery", 8, 4); }
//! #[derive(Clone, Copy, Debug)]
//! #[repr(C)]
//! struct Counter(u64);
//! // SAFETY: a u64.
//! unsafe impl Pod for Counter { const TYPE_HASH: [u8; 16] = type_hash("Counter", 8, 8); }
//!
//! // Writer process:
//! let board = BlackboardBuilder::<Key>::new()
//!     .entry(Key(1), Battery { volts: 12.6, percent: 100.0 })?
//!     .entry(Key(2), Counter(0))? // each entry has its own value type
//!     .create("robot")?;
//! let mut battery = board.entry_writer::<Battery>(&Key(1))?;
//! battery.update_with_copy(&Battery { volts: 12.4, percent: 93.0 });
//!
//! // Reader process:
//! let board = Blackboard::<Key>::attach("robot")?;
//! let battery = board.entry_reader::<Battery>(&Key(1))?;
//! let (value, version) = battery.get_with_version()?;
//! battery.wait_for_change(version, Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! * **Never torn, lock-free.** A reader copies the latest value without
//!   locks and without making the writer wait; it never returns a value
//!   that was not published whole (see [`EntryReader::get`]). The writer
//!   writes in place and never waits for readers. A reader's retries are
//!   bounded ([`READ_ATTEMPTS`]): a writer gone mad or a hostile process
//!   gives [`BlackboardError::Contended`], not a hang.
//! * **Typed.** The key type ([`Pod`] + `Eq`; keys are stored and compared
//!   as bytes, so use a key type without padding) and each entry's value
//!   type are stored as their [`Pod::TYPE_HASH`], size and alignment
//!   ([`TypeDesc`]; `type_name` is not used: it is not stable across
//!   builds). Attaching with another key type, or asking for an entry as
//!   another type, is an error that shows both.
//! * **One writer per entry**, across processes, held by a kernel lock on
//!   the segment: a second [`EntryWriter`] is [`BlackboardError::WriterExists`];
//!   the claim of a process that dies is taken over by the next claimer.
//! * **Waiting** on an entry parks on its own futex; an update makes no
//!   system call unless someone waits on that entry.
//! * **Untrusted memory.** At attach the object's real size (`fstat`)
//!   bounds everything; magic, version, init state, a crc over the header,
//!   table and keys, and every offset and size are checked, then copied:
//!   a corrupt or hostile segment gives an error, never a panic,
//!   out-of-bounds access or hang.
//! * **Ownership** as for rings: the creator's handle removes the segment
//!   and flink file when dropped; an attacher that leaves last after the
//!   creator died removes them; [`Blackboard::leak`] and
//!   [`Blackboard::own`] change that.
//!
//! Limits: [`MAX_ENTRIES`] entries, keys up to [`MAX_KEY_SIZE`] bytes,
//! values up to [`MAX_VALUE_SIZE`] bytes aligned to at most
//! [`MAX_VALUE_ALIGN`], a segment of at most 4 GiB (each value takes three
//! buffers). The flink file says `kind = blackboard`, `slot_count` = the
//! entries and `capacity` = the largest value.

mod entry;
mod error;
mod layout;
mod ownership;
mod segment;
mod status;
mod validate;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use entry::{EntryId, EntryLoan, EntryReader, EntryValue, EntryWriter, READ_ATTEMPTS};
pub use error::{BlackboardError, TypeDesc};
pub use layout::{MAX_ENTRIES, MAX_KEY_SIZE, MAX_VALUE_ALIGN, MAX_VALUE_SIZE};
pub use status::{inspect, BlackboardStatus, EntryStatus};

use crate::segment::liveness as lock;
use crate::Pod;
use error::hex;
use segment::{InitFn, Segment};

/// The bytes of a key: its identity on the board.
fn key_bytes<K: Pod>(key: &K) -> &[u8] {
    // SAFETY: `key` is a valid reference to `size_of K` bytes. Keys are
    // documented to have no padding (Pod types are plain integers, floats
    // and arrays or `repr(C)` structs of them), so every byte is
    // initialised.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(key).cast::<u8>(), std::mem::size_of::<K>()) }
}

/// An entry waiting in a [`BlackboardBuilder`].
struct PendingEntry {
    key: Vec<u8>,
    value: TypeDesc,
    init: InitFn,
}

/// Builds a board: its key type `K`, then its entries (key, initial value
/// of the entry's own type) in the order of their [`EntryId`]s.
pub struct BlackboardBuilder<K: Pod + Eq> {
    entries: Vec<PendingEntry>,
    discovery_dir: Option<PathBuf>,
    _k: PhantomData<fn(K)>,
}

impl<K: Pod + Eq> Default for BlackboardBuilder<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Pod + Eq> BlackboardBuilder<K> {
    /// A builder with no entries yet.
    pub fn new() -> Self {
        Self { entries: Vec::new(), discovery_dir: None, _k: PhantomData }
    }

    /// Adds an entry with key `key` holding values of type `V`, starting as
    /// `initial` (version 0).
    ///
    /// # Errors
    /// [`BlackboardError::DuplicateKey`]; [`BlackboardError::Config`] past
    /// [`MAX_ENTRIES`] entries, for a key larger than [`MAX_KEY_SIZE`], or a
    /// value larger than [`MAX_VALUE_SIZE`] or aligned to more than
    /// [`MAX_VALUE_ALIGN`].
    pub fn entry<V: Pod>(mut self, key: K, initial: V) -> Result<Self, BlackboardError> {
        let config = |what, value: usize, expected| BlackboardError::Config { what, value: value as u64, expected };
        if std::mem::size_of::<K>() > MAX_KEY_SIZE {
            return Err(config("key size", std::mem::size_of::<K>(), "at most 1024 bytes"));
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(config("entries", self.entries.len() + 1, "at most 4096"));
        }
        let value = TypeDesc::of::<V>();
        if value.size as usize > MAX_VALUE_SIZE {
            return Err(config("value size", value.size as usize, "at most 1 MiB"));
        }
        if value.align as usize > MAX_VALUE_ALIGN {
            return Err(config("value alignment", value.align as usize, "at most 64"));
        }
        let key = key_bytes(&key).to_vec();
        if self.entries.iter().any(|e| e.key == key) {
            return Err(BlackboardError::DuplicateKey { key: hex(&key) });
        }
        let init: InitFn = Box::new(move |dst: *mut u8| {
            // SAFETY: `Segment::create` passes buffer 0 of this entry's
            // block: 64-aligned (align of `V` ≤ 64), at least `size_of V`
            // bytes, in a mapping nobody else knows yet.
            unsafe { dst.cast::<V>().write(initial) }
        });
        self.entries.push(PendingEntry { key, value, init });
        Ok(self)
    }

    /// Directory for a bare flink name (default
    /// [`default_discovery_dir`](crate::default_discovery_dir)).
    #[must_use]
    pub fn discovery_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discovery_dir = Some(dir.into());
        self
    }

    /// Creates the board and its flink file, as a ring's `create` does: a
    /// bare name (no `/`) goes in the discovery directory, a path is used
    /// as given; a stale segment published there is reclaimed first. The
    /// handle returned is the creator: dropping it removes the board.
    ///
    /// # Errors
    /// [`BlackboardError::Config`] for a board without entries or over
    /// 4 GiB; [`BlackboardError::Open`] as a ring's
    /// [`create`](crate::PosixSlotAllocatorBuilder::create) (in use,
    /// exists, unsafe directory, system errors).
    pub fn create(self, flink_path: impl AsRef<Path>) -> Result<Blackboard<K>, BlackboardError> {
        if self.entries.is_empty() {
            return Err(BlackboardError::Config { what: "entries", value: 0, expected: "at least one" });
        }
        let (keys, entries) = self.entries.into_iter().map(|e| (e.key, (e.value, e.init))).unzip();
        let seg = Segment::create(flink_path.as_ref(), self.discovery_dir.as_deref(), TypeDesc::of::<K>(), keys, entries)?;
        Ok(Blackboard { seg: Arc::new(seg), _k: PhantomData })
    }
}

impl<K: Pod + Eq> std::fmt::Debug for BlackboardBuilder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlackboardBuilder").field("entries", &self.entries.len()).field("discovery_dir", &self.discovery_dir).finish()
    }
}

/// A handle of a keyed blackboard in shared memory; see the
/// [module](self) doc. Entry handles made from it keep its mapping alive.
pub struct Blackboard<K: Pod + Eq> {
    seg: Arc<Segment>,
    _k: PhantomData<fn(K) -> K>,
}

impl<K: Pod + Eq> Blackboard<K> {
    /// A builder (same as [`BlackboardBuilder::new`]).
    pub fn builder() -> BlackboardBuilder<K> {
        BlackboardBuilder::new()
    }

    /// Attaches to the board named by the flink file (a bare name is
    /// looked up in the default discovery directory).
    ///
    /// # Errors
    /// [`BlackboardError::KeyTypeMismatch`] if the board's keys are not
    /// `K`; [`BlackboardError::Open`] with [`OpenError::Invalid`](crate::OpenError::Invalid)
    /// for a corrupt, truncated, foreign or unfinished segment (or a flink
    /// file naming a ring), [`OpenError::Unsafe`](crate::OpenError::Unsafe),
    /// or [`OpenError::Io`](crate::OpenError::Io) when files are missing.
    pub fn attach(flink_path: impl AsRef<Path>) -> Result<Self, BlackboardError> {
        Self::attach_in(flink_path, None::<PathBuf>)
    }

    /// As [`attach`](Self::attach), with bare names looked up in `dir`.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_in(flink_path: impl AsRef<Path>, dir: Option<impl AsRef<Path>>) -> Result<Self, BlackboardError> {
        let seg = Segment::attach(flink_path.as_ref(), dir.as_ref().map(AsRef::as_ref))?;
        let expected = TypeDesc::of::<K>();
        if seg.info.key != expected {
            return Err(BlackboardError::KeyTypeMismatch { path: seg.flink_path.clone(), expected_name: std::any::type_name::<K>(), expected, found: seg.info.key });
        }
        Ok(Self { seg: Arc::new(seg), _k: PhantomData })
    }

    /// The id of the entry with key `key`.
    ///
    /// # Errors
    /// [`BlackboardError::UnknownKey`].
    pub fn entry_id(&self, key: &K) -> Result<EntryId, BlackboardError> {
        let key = key_bytes(key);
        (0..self.seg.info.entries.len())
            .find(|&i| self.seg.info.key_bytes(i) == key)
            .map(|i| EntryId(i as u32))
            .ok_or_else(|| BlackboardError::UnknownKey { key: hex(key) })
    }

    /// The index of `key`'s entry, which must hold `V`.
    fn typed<V: Pod>(&self, key: &K) -> Result<usize, BlackboardError> {
        let id = self.entry_id(key)?;
        let found = self.seg.info.entries[id.0 as usize].value;
        let expected = TypeDesc::of::<V>();
        if found != expected {
            return Err(BlackboardError::ValueTypeMismatch { entry: id, expected_name: std::any::type_name::<V>(), expected, found });
        }
        Ok(id.0 as usize)
    }

    /// A reader of `key`'s entry, whose values must be `V`s.
    ///
    /// # Errors
    /// [`BlackboardError::UnknownKey`], [`BlackboardError::ValueTypeMismatch`].
    pub fn entry_reader<V: Pod>(&self, key: &K) -> Result<EntryReader<V>, BlackboardError> {
        let i = self.typed::<V>(key)?;
        Ok(EntryReader::new(self.seg.clone(), i))
    }

    /// The update handle of `key`'s entry, whose values must be `V`s. Only
    /// one may exist per entry across all processes; a handle whose process
    /// died is replaced.
    ///
    /// # Errors
    /// [`BlackboardError::UnknownKey`], [`BlackboardError::ValueTypeMismatch`],
    /// [`BlackboardError::WriterExists`] while another writer of the entry
    /// lives (in this or another process).
    pub fn entry_writer<V: Pod>(&self, key: &K) -> Result<EntryWriter<V>, BlackboardError> {
        let i = self.typed::<V>(key)?;
        self.seg.claim(i)?;
        Ok(EntryWriter::new(self.seg.clone(), i))
    }

    fn index(&self, id: EntryId) -> Result<usize, BlackboardError> {
        let count = self.seg.info.entries.len();
        ((id.0 as usize) < count).then_some(id.0 as usize).ok_or(BlackboardError::UnknownEntry { id, count: count as u32 })
    }

    /// The latest version of entry `id`.
    ///
    /// # Errors
    /// [`BlackboardError::UnknownEntry`].
    pub fn version(&self, id: EntryId) -> Result<u64, BlackboardError> {
        Ok(self.seg.state(self.index(id)?).version.load(Ordering::Acquire))
    }

    /// Waits on entry `id`'s futex until its version differs from `last`;
    /// returns the new version, or `None` after `timeout`.
    ///
    /// # Errors
    /// [`BlackboardError::UnknownEntry`].
    pub fn wait_for_change(&self, id: EntryId, last: u64, timeout: Duration) -> Result<Option<u64>, BlackboardError> {
        Ok(entry::wait_for_change(self.seg.state(self.index(id)?), last, timeout))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.seg.info.entries.len()
    }

    /// Whether the board has no entries (never: a board has at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry's key, in id order.
    pub fn keys(&self) -> Vec<K> {
        (0..self.len())
            .map(|i| {
                // SAFETY: `size_of K` bytes (the key type was checked at
                // attach); any bits are a valid `K` (`Pod`); unaligned read
                // from our own copy.
                unsafe { self.seg.info.key_bytes(i).as_ptr().cast::<K>().read_unaligned() }
            })
            .collect()
    }

    /// The value type of entry `id`.
    ///
    /// # Errors
    /// [`BlackboardError::UnknownEntry`].
    pub fn value_type(&self, id: EntryId) -> Result<TypeDesc, BlackboardError> {
        Ok(self.seg.info.entries[self.index(id)?].value)
    }

    /// The flink file this board was created or attached through.
    pub fn flink_path(&self) -> &Path {
        &self.seg.flink_path
    }

    /// The OS object: `/dev/shm/shmslot.<uid>.<random>`.
    pub fn segment_path(&self) -> PathBuf {
        self.seg.segment_path()
    }

    /// Whether dropping this process's last handle of the board removes it
    /// unconditionally (the creator's, or after [`own`](Self::own)).
    pub fn is_owner(&self) -> bool {
        self.seg.is_owner()
    }

    /// Whether the creator's process is alive (its kernel lock).
    pub fn creator_alive(&self) -> bool {
        lock::alive(&self.seg.file, lock::CREATOR)
    }

    /// The board as [`inspect`] shows it.
    pub fn status(&self) -> BlackboardStatus {
        status::read_status(&self.seg.info, &|i| self.seg.state(i), &self.seg.file, &self.seg.flink_path, self.seg.segment_path())
    }

    /// Leaves the board in place past every handle, as a ring's
    /// [`leak`](crate::PosixSlotAllocator::leak): the flink file marks it
    /// leaked, nobody's drop removes it (the creator's included), and only a
    /// handle that [`own`](Self::own)s it or `flink clean --leaked` does.
    /// It can be attached again later by any process of this user.
    ///
    /// # Errors
    /// [`BlackboardError::Open`] when the flink file cannot be rewritten.
    pub fn leak(&mut self) -> Result<(), BlackboardError> {
        Ok(self.seg.mark_leaked()?)
    }

    /// Takes over the duty to remove the board: when this process's last
    /// handle of it goes, segment and flink file are removed, as by the
    /// creator; it is no longer leaked.
    ///
    /// # Errors
    /// As [`leak`](Self::leak).
    pub fn own(&mut self) -> Result<(), BlackboardError> {
        Ok(self.seg.mark_owner()?)
    }
}

impl<K: Pod + Eq> std::fmt::Debug for Blackboard<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blackboard")
            .field("flink_path", &self.seg.flink_path)
            .field("segment", &self.seg.segment_name)
            .field("entries", &self.len())
            .field("owner", &self.is_owner())
            .finish_non_exhaustive()
    }
}
