//! The segment layout: `#[repr(C)]` structs with asserted sizes and offsets.
//!
//! ```text
//!  offset 0     ┌──────────────────────────────────────────────┐
//!               │ SegmentHeader (128 B)                        │  immutable after init
//!               │  magic "SHMSLOT1" · version · init_state     │  init_state is stored LAST
//!               │  slot_count · capacity · stride · max_readers│
//!               │  max_writers · policy · type_hash[16]        │
//!               │  geometry_crc · creator_pid · total_size     │
//!               │  generation · growth · predecessor (crc'd)   │
//!               │  chain flags · moved_at · successor (mutable)│
//!  128          ├──────────────────────────────────────────────┤
//!               │ Control: write_seq      (own cache line)     │  writers: CAS
//!               │          registered     (own cache line)     │  reader bits
//!               │          data  futex epoch + waiters (line)  │  readers park here
//!               │          space futex epoch + waiters (line)  │  writers park here
//!  384          ├──────────────────────────────────────────────┤
//!               │ ReaderEntry × max_readers (192 B each)       │  state · pid · cursor ·
//!               │                                              │  pinned · received · lost
//!               │                                              │  kept_total · kept[16]
//!               │                                              │  (kept: lines 2 and 3)
//!               ├──────────────────────────────────────────────┤
//!               │ WriterEntry × max_writers (64 B each)        │  state · pid · commits ·
//!               │                                              │  claiming · dropped
//!               ├──────────────────────────────────────────────┤  (64-aligned)
//!  slots_offset │ slot 0: SlotMeta (32 B) │ payload (capacity) │ pad to 64
//!               │ slot 1: …                stride = align64(32 + capacity)
//!               │ slot N-1                                     │
//!               └──────────────────────────────────────────────┘
//! ```

use std::mem::{offset_of, size_of};

use crate::protocol::{Control, ReaderEntry, SlotMeta, WriterEntry};
use crate::sync::{AtomicU32, AtomicU64};

/// "SHMSLOT1", little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMSLOT1");
/// Bumped on every incompatible layout change. 2: liveness locks, writer
/// index in `LOANED` stamps, entry epochs, `WriterEntry::claiming`. 3:
/// growing rings (generation, growth, chain words; `ADOPTING` readers). 4:
/// kept samples (`ReaderEntry::kept`, 192-byte reader entries; `KeepAll`
/// writers skip pinned slots).
pub(crate) const LAYOUT_VERSION: u32 = 4;
/// `init_state` while the creator is still writing the segment.
pub(crate) const INIT_CREATING: u32 = 0;
/// `init_state` once the segment is ready ("RDY!").
pub(crate) const INIT_READY: u32 = u32::from_le_bytes(*b"RDY!");

/// Largest slot count accepted.
pub(crate) const MAX_SLOT_COUNT: u32 = 1 << 24;
/// Largest slot capacity accepted (1 GiB).
pub(crate) const MAX_CAPACITY: u32 = 1 << 30;
/// Largest segment accepted (64 GiB).
pub(crate) const MAX_TOTAL: u64 = 1 << 36;
/// Largest writer table.
pub(crate) const MAX_WRITERS: u32 = 64;

/// Immutable part of the segment header.
#[repr(C, align(64))]
pub(crate) struct SegmentHeader {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub init_state: AtomicU32,
    pub slot_count: AtomicU32,
    pub capacity: AtomicU32,
    pub stride: AtomicU32,
    pub max_readers: AtomicU32,
    pub max_writers: AtomicU32,
    pub policy: AtomicU32,
    pub type_hash: [AtomicU32; 4],
    pub geometry_crc: AtomicU32,
    pub creator_pid: AtomicU32,
    pub total_size: AtomicU64,
    pub created_unix_ms: AtomicU64,
    /// Position in its ring's chain of generations (0: the first).
    pub generation: AtomicU32,
    /// `GrowthStrategy` code (0 static, 1 power of two, 2 best fit).
    pub growth: AtomicU32,
    /// `CHAIN_*` flags: the ring is moving / has moved to a successor.
    pub chain: AtomicU32,
    pub _reserved: AtomicU32,
    /// Once `CHAIN_MOVED`: the first sequence that is not delivered here
    /// (readers past it follow to the successor).
    pub moved_at: AtomicU64,
    /// Once `CHAIN_MOVED`: the successor's object id (its name's random part).
    pub successor: AtomicU64,
    /// The predecessor's object id (0 for generation 0).
    pub predecessor: AtomicU64,
    pub _reserved2: AtomicU64,
}

/// `chain` flag: a writer is moving the ring to a larger generation; claims
/// made from now on are discarded by their writers.
pub(crate) const CHAIN_MOVING: u32 = 1;
/// `chain` flag: `moved_at` and `successor` are published (Release).
pub(crate) const CHAIN_MOVED: u32 = 2;
/// Most generations of one ring (see `GrowthStrategy`).
pub(crate) const MAX_GENERATIONS: u32 = crate::segment::reclaim::MAX_LINEAGE;

pub(crate) const HEADER_SIZE: usize = 128;
pub(crate) const CONTROL_OFFSET: usize = HEADER_SIZE;
pub(crate) const READERS_OFFSET: usize = CONTROL_OFFSET + size_of::<Control>();
pub(crate) const READER_ENTRY_SIZE: usize = 192;
pub(crate) const WRITER_ENTRY_SIZE: usize = 64;
pub(crate) const SLOT_META_SIZE: usize = 32;

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<SegmentHeader>() == HEADER_SIZE);
    assert!(offset_of!(SegmentHeader, magic) == 0);
    assert!(offset_of!(SegmentHeader, version) == 8);
    assert!(offset_of!(SegmentHeader, init_state) == 12);
    assert!(offset_of!(SegmentHeader, slot_count) == 16);
    assert!(offset_of!(SegmentHeader, type_hash) == 40);
    assert!(offset_of!(SegmentHeader, geometry_crc) == 56);
    assert!(offset_of!(SegmentHeader, total_size) == 64);
    assert!(offset_of!(SegmentHeader, generation) == 80);
    assert!(offset_of!(SegmentHeader, moved_at) == 96);
    assert!(offset_of!(SegmentHeader, predecessor) == 112);
    assert!(size_of::<Control>() == 256);
    assert!(offset_of!(Control, write_seq) == 0);
    assert!(offset_of!(Control, registered) == 64);
    assert!(offset_of!(Control, data) == 128);
    assert!(offset_of!(Control, space) == 192);
    assert!(size_of::<ReaderEntry>() == READER_ENTRY_SIZE);
    assert!(offset_of!(ReaderEntry, cursor) == 8);
    assert!(offset_of!(ReaderEntry, pinned) == 16);
    assert!(offset_of!(ReaderEntry, kept_total) == 40);
    assert!(offset_of!(ReaderEntry, kept) == 64);
    assert!(size_of::<WriterEntry>() == WRITER_ENTRY_SIZE);
    assert!(offset_of!(WriterEntry, claiming) == 16);
    assert!(offset_of!(WriterEntry, dropped) == 24);
    assert!(size_of::<SlotMeta>() == SLOT_META_SIZE);
    assert!(offset_of!(SlotMeta, stamp) == 0);
    assert!(offset_of!(SlotMeta, pending) == 8);
    assert!(offset_of!(SlotMeta, len) == 16);
    assert!(READERS_OFFSET == 384);
};

/// Where everything is, computed from the geometry (never from the header
/// alone: the caller checks the result against the object's real size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub stride: u64,
    pub writers_offset: u64,
    pub slots_offset: u64,
    pub total: u64,
}

/// `align_up(32 + capacity, 64)`: 64-byte aligned slots whose first cache
/// line holds the 32-byte `SlotMeta` and the first 32 payload bytes. (A
/// 64-byte slot header was the first design; sharing the line halves the
/// transfers of a small sample: `flink bench` 8 B one-way p50 went from
/// ~1.5x to ~0.9x of the memcpy+flag floor.)
pub(crate) fn stride_for(capacity: u32) -> u64 {
    (SLOT_META_SIZE as u64 + u64::from(capacity)).div_ceil(64) * 64
}

impl Layout {
    /// Computes the layout; `None` on arithmetic overflow.
    pub fn compute(slot_count: u32, capacity: u32, max_readers: u32, max_writers: u32) -> Option<Self> {
        let stride = stride_for(capacity);
        let writers_offset = READERS_OFFSET as u64 + u64::from(max_readers) * READER_ENTRY_SIZE as u64;
        let slots_offset = writers_offset + u64::from(max_writers) * WRITER_ENTRY_SIZE as u64;
        let total = slots_offset.checked_add(stride.checked_mul(u64::from(slot_count))?)?;
        Some(Self { stride, writers_offset, slots_offset, total })
    }
}

/// The geometry fields exactly as stored; the crc covers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawGeometry {
    pub slot_count: u32,
    pub capacity: u32,
    pub stride: u32,
    pub max_readers: u32,
    pub max_writers: u32,
    pub policy: u32,
    pub type_hash: [u32; 4],
    pub total_size: u64,
    pub generation: u32,
    pub growth: u32,
    pub predecessor: u64,
}

impl RawGeometry {
    /// crc32 of the layout version and every geometry field, little-endian.
    pub fn crc(&self) -> u32 {
        use byteorder::{ByteOrder, LittleEndian};
        let mut b = [0u8; 68];
        LittleEndian::write_u32(&mut b[0..], LAYOUT_VERSION);
        LittleEndian::write_u32(&mut b[4..], self.slot_count);
        LittleEndian::write_u32(&mut b[8..], self.capacity);
        LittleEndian::write_u32(&mut b[12..], self.stride);
        LittleEndian::write_u32(&mut b[16..], self.max_readers);
        LittleEndian::write_u32(&mut b[20..], self.max_writers);
        LittleEndian::write_u32(&mut b[24..], self.policy);
        LittleEndian::write_u32_into(&self.type_hash, &mut b[28..44]);
        LittleEndian::write_u64(&mut b[44..], self.total_size);
        LittleEndian::write_u32(&mut b[52..], self.generation);
        LittleEndian::write_u32(&mut b[56..], self.growth);
        LittleEndian::write_u64(&mut b[60..], self.predecessor);
        crc32fast::hash(&b)
    }
}
