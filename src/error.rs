//! Error types: one enum per kind of operation, each message says what was
//! wrong and where.

use std::io;
use std::path::PathBuf;

/// Errors of the ring operations of a [`SlotBackend`](crate::SlotBackend).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// Every slot is loaned, or still unread by a reader (`KeepAll`), or held
    /// in place by a reader (`DropOldest`). Retry, or use a blocking call.
    #[error("no free slot: the ring is full (readers have not released the oldest slot yet)")]
    NoFreeSlot,
    /// A blocking call gave up after its timeout.
    #[error("timed out after {0:?}")]
    TimedOut(std::time::Duration),
    /// A slot index outside the ring.
    #[error("slot index {index} is out of range (the ring has {count} slots)")]
    OutOfBounds {
        /// The index given.
        index: u32,
        /// Number of slots in the ring.
        count: u32,
    },
    /// The sample does not fit in a slot.
    #[error("sample of {sample} bytes does not fit in a slot of {slot_capacity} bytes")]
    SampleTooLarge {
        /// Sample size in bytes.
        sample: usize,
        /// Slot capacity in bytes.
        slot_capacity: usize,
    },
    /// The handle does not name a live loan of this ring (already committed or
    /// discarded, or never reserved).
    #[error("slot {index} is not loaned for sequence {seq} (already committed, discarded, or stale handle)")]
    NotLoaned {
        /// Slot index of the handle.
        index: u32,
        /// Sequence number of the handle.
        seq: u64,
    },
    /// The handle is not the sample this reader holds (released twice, or out
    /// of order).
    #[error("reader {reader} does not hold sequence {seq} (its next sample is {expected})")]
    NotHeld {
        /// Reader index.
        reader: u8,
        /// Sequence number of the handle.
        seq: u64,
        /// Sequence number the reader is at.
        expected: u64,
    },
    /// The reader index is not registered.
    #[error("reader {0} is not registered on this ring")]
    ReaderNotRegistered(u8),
    /// Every reader entry is taken.
    #[error("all {max} reader entries of this ring are taken")]
    ReadersFull {
        /// Configured maximum number of readers.
        max: u32,
    },
    /// Every writer entry of the ring is taken by a live writer.
    #[error("all {max} writer entries of this ring are taken by live writers")]
    WritersFull {
        /// Configured maximum number of writers.
        max: u32,
    },
    /// A growing ring already has its most generations, and a sample still
    /// does not fit.
    #[error("sample of {sample} bytes does not fit in a slot of {slot_capacity} bytes, and the ring already grew to its last generation ({max})")]
    GenerationsExhausted {
        /// Sample size in bytes.
        sample: usize,
        /// Slot capacity of the last generation.
        slot_capacity: usize,
        /// Most generations of a ring.
        max: u32,
    },
    /// Moving to the next generation of a growing ring failed (its segment
    /// could not be made or opened, or it does not continue this one).
    #[error("growing ring: {what}: {detail}")]
    Generation {
        /// What was being done.
        what: &'static str,
        /// The cause.
        detail: String,
    },
    /// Nothing is left to read and no writer is alive: the creator and every
    /// process that wrote to the ring have exited (or died). What was
    /// committed before has been delivered.
    #[error("the writer side is gone: the creator and every writer of this ring have exited")]
    WritersGone,
    /// A value read from shared memory is out of its bounds: the segment is
    /// corrupt or written by a hostile process. Nothing was read through it.
    #[error("corrupt segment: {what} is {value}, limit {limit}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The bound it broke.
        limit: u64,
    },
}

/// Why a segment (or its flink file) failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The object is smaller than its fixed header.
    #[error("truncated: {size} bytes, at least {needed} needed")]
    Truncated {
        /// Real size (from `fstat`).
        size: u64,
        /// Size needed.
        needed: u64,
    },
    /// Not a shmslot object.
    #[error("wrong magic {found:#018x} (not a shmslot segment)")]
    BadMagic {
        /// The magic found.
        found: u64,
    },
    /// Written by another layout version.
    #[error("layout version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// Version found.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// The checksum over the geometry does not match.
    #[error("geometry checksum {stored:#010x} does not match computed {computed:#010x}")]
    BadCrc {
        /// Stored crc32.
        stored: u32,
        /// Computed crc32.
        computed: u32,
    },
    /// The creator has not finished initialising the segment (or died while
    /// doing so).
    #[error("not initialised (state {state}): the creator has not published it yet")]
    NotInitialized {
        /// The init state found.
        state: u32,
    },
    /// The geometry needs more bytes than the object has.
    #[error("geometry needs {needed} bytes but the object has {size}")]
    GeometryTooLarge {
        /// Bytes the geometry describes.
        needed: u64,
        /// Real size (from `fstat`).
        size: u64,
    },
    /// A geometry field is out of its range.
    #[error("{field} = {value} is out of range ({expected})")]
    BadField {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
        /// What was expected.
        expected: &'static str,
    },
}

/// Errors of [`PosixSlotAllocator`](crate::PosixSlotAllocator) `create` and
/// `attach`, and of the discovery directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A system call failed on a path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"shm_open"`, `"create flink file"`, …).
        op: &'static str,
        /// The file or object.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The segment or flink file is invalid.
    #[error("{path}: {error}")]
    Invalid {
        /// The file or object that failed.
        path: PathBuf,
        /// What was wrong.
        error: ValidationError,
    },
    /// Something that is not a flink file of ours is at that path (a planted
    /// link, a foreign or corrupt file); it is left untouched.
    #[error("{0}: already exists and is not a removable flink file (left untouched; remove it or pick another name)")]
    Exists(PathBuf),
    /// A live segment is published under that flink path: its creator or
    /// one of its participants is alive (decided by their kernel locks).
    #[error("{path}: in use by a live segment (creator pid {creator_pid}, shown for reference only)")]
    InUse {
        /// The flink file.
        path: PathBuf,
        /// The pid the flink file records (display only).
        creator_pid: u32,
    },
    /// A leaked segment is published under that flink path (left in place
    /// by its creator): attach to it, or remove it with
    /// `flink clean --leaked`.
    #[error("{path}: a leaked segment is published there (attach to it, or remove it with `flink clean --leaked`)")]
    Leaked {
        /// The flink file.
        path: PathBuf,
    },
    /// A file or directory is refused for safety.
    #[error("{path}: refused: {reason}")]
    Unsafe {
        /// The path refused.
        path: PathBuf,
        /// Why (symlink, owner, mode, size).
        reason: &'static str,
    },
    /// Another process is at this segment right now (removing the stale
    /// segment published there, or replacing its flink file): nothing was
    /// changed; trying again shortly is expected to succeed.
    #[error("{path}: busy: {what} right now (try again)")]
    Busy {
        /// The flink file or object.
        path: PathBuf,
        /// What the other process is doing.
        what: &'static str,
    },
    /// The segment is being removed (its last participant is leaving it):
    /// attach again, or create it anew.
    #[error("{path}: the segment is being removed")]
    BeingRemoved {
        /// The object.
        path: PathBuf,
    },
    /// The flink file no longer names this handle's segment (it was
    /// removed, or replaced by another segment's): nothing was changed.
    #[error("{path}: the flink file no longer names this segment (removed or replaced)")]
    NotPublished {
        /// The flink file.
        path: PathBuf,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {what} = {value} ({expected})")]
    Config {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The accepted range.
        expected: &'static str,
    },
}

/// Errors of the typed [`Publisher`](crate::Publisher) and
/// [`Subscriber`](crate::Subscriber) constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeError {
    /// The segment was created for another type.
    #[error("type hash mismatch: the segment holds {}, this endpoint is for {}", hash_text(found), hash_text(&Some(*expected)))]
    Mismatch {
        /// Hash of the endpoint's type.
        expected: [u8; 16],
        /// Hash stored in the segment; `None` for an untyped segment.
        found: Option<[u8; 16]>,
    },
    /// The type does not fit in a slot.
    #[error("type of {size} bytes (align {align}) does not fit a slot of {capacity} bytes")]
    TooLarge {
        /// `size_of::<T>()`.
        size: usize,
        /// `align_of::<T>()`.
        align: usize,
        /// Slot capacity.
        capacity: usize,
    },
    /// Registering the subscriber's reader failed.
    #[error(transparent)]
    Slot(#[from] SlotError),
}

/// A received sample's size does not match the subscriber's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The ring operation failed.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The sample is not `size_of::<T>()` bytes long.
    #[error("sample {seq} is {len} bytes, expected {expected}")]
    WrongSize {
        /// Sequence number of the sample (it was released).
        seq: u64,
        /// Its length.
        len: usize,
        /// `size_of::<T>()`.
        expected: usize,
    },
}

fn hash_text(h: &Option<[u8; 16]>) -> String {
    match h {
        None => "no type (an untyped segment)".to_owned(),
        Some(h) => h.iter().map(|b| format!("{b:02x}")).collect(),
    }
}
