//! Attach-time validation of a mapped segment. Everything is read with
//! atomic loads, checked, and copied into a [`SegmentInfo`] that is trusted
//! from then on; the map size is the object's real size from `fstat`.

use crate::backend::OverflowPolicy;
use crate::error::ValidationError;
use crate::sync::Ordering;

use super::layout::{
    stride_for, Layout, RawGeometry, SegmentHeader, HEADER_SIZE, INIT_READY, LAYOUT_VERSION, MAGIC, MAX_CAPACITY, MAX_SLOT_COUNT, MAX_TOTAL,
    MAX_GENERATIONS, MAX_WRITERS, READERS_OFFSET,
};

/// The validated, immutable description of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Slots (a power of two).
    pub slot_count: u32,
    /// Payload bytes per slot.
    pub capacity: u32,
    /// Bytes per slot in the segment.
    pub stride: u32,
    /// Reader table size.
    pub max_readers: u32,
    /// Writer table size.
    pub max_writers: u32,
    /// Overflow policy.
    pub policy: OverflowPolicy,
    /// Type hash; all zero for an untyped ring.
    pub type_hash: [u8; 16],
    /// Creator's pid (display only).
    pub creator_pid: u32,
    /// Creation time, ms since the epoch.
    pub created_unix_ms: u64,
    /// Total bytes the geometry describes.
    pub total_size: u64,
    /// Position in the ring's chain of generations (0: as created).
    pub generation: u32,
    /// How the ring grows.
    pub growth: super::GrowthStrategy,
    /// The previous generation's object id (0 for generation 0).
    pub predecessor: u64,
}

fn field(field: &'static str, value: u64, expected: &'static str) -> ValidationError {
    ValidationError::BadField { field, value, expected }
}

/// Validates the header at `base`, a mapping of `size` bytes.
///
/// # Safety
/// `base` must be valid for reads of `size` bytes and 64-byte aligned for as
/// long as the call runs.
pub(crate) unsafe fn validate(base: *const u8, size: u64) -> Result<SegmentInfo, ValidationError> {
    let needed = READERS_OFFSET as u64;
    if size < needed {
        return Err(ValidationError::Truncated { size, needed });
    }
    // SAFETY: `size >= HEADER_SIZE` and `base` is aligned and readable
    // (caller), and `SegmentHeader` is made of atomics only, valid for any
    // bit pattern.
    let h = unsafe { &*base.cast::<SegmentHeader>() };
    debug_assert!(HEADER_SIZE as u64 <= needed);
    let magic = h.magic.load(Ordering::Relaxed);
    if magic != MAGIC {
        return Err(ValidationError::BadMagic { found: magic });
    }
    let version = h.version.load(Ordering::Relaxed);
    if version != LAYOUT_VERSION {
        return Err(ValidationError::VersionMismatch { found: version, expected: LAYOUT_VERSION });
    }
    // SYNC POINT (init): pairs with the creator's Release store of READY,
    // which comes after every other header field.
    let state = h.init_state.load(Ordering::Acquire);
    if state != INIT_READY {
        return Err(ValidationError::NotInitialized { state });
    }
    let slot_count = h.slot_count.load(Ordering::Relaxed);
    let capacity = h.capacity.load(Ordering::Relaxed);
    let stride = h.stride.load(Ordering::Relaxed);
    let max_readers = h.max_readers.load(Ordering::Relaxed);
    let max_writers = h.max_writers.load(Ordering::Relaxed);
    let policy = h.policy.load(Ordering::Relaxed);
    let hash = [0, 1, 2, 3].map(|i| h.type_hash[i].load(Ordering::Relaxed));
    let total_size = h.total_size.load(Ordering::Relaxed);
    let generation = h.generation.load(Ordering::Relaxed);
    let growth = h.growth.load(Ordering::Relaxed);
    let predecessor = h.predecessor.load(Ordering::Relaxed);
    let stored = h.geometry_crc.load(Ordering::Relaxed);
    let computed = RawGeometry { slot_count, capacity, stride, max_readers, max_writers, policy, type_hash: hash, total_size, generation, growth, predecessor }.crc();
    if stored != computed {
        return Err(ValidationError::BadCrc { stored, computed });
    }
    if slot_count == 0 || !slot_count.is_power_of_two() || slot_count > MAX_SLOT_COUNT {
        return Err(field("slot_count", slot_count.into(), "a power of two from 1 to 2^24"));
    }
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(field("capacity", capacity.into(), "1 to 2^30 bytes"));
    }
    if u64::from(stride) != stride_for(capacity) {
        return Err(field("stride", stride.into(), "align64(32 + capacity)"));
    }
    if max_readers == 0 || max_readers > 64 {
        return Err(field("max_readers", max_readers.into(), "1 to 64"));
    }
    if max_writers == 0 || max_writers > MAX_WRITERS {
        return Err(field("max_writers", max_writers.into(), "1 to 64"));
    }
    let growth = super::GrowthStrategy::from_code(growth).ok_or_else(|| field("growth", growth.into(), "0 (static), 1 (power of two) or 2 (best fit)"))?;
    if generation >= MAX_GENERATIONS || (generation > 0 && growth == super::GrowthStrategy::Static) || (generation == 0) != (predecessor == 0) {
        return Err(field("generation", generation.into(), "below 32, 0 for a static ring, with a predecessor exactly when above 0"));
    }
    let policy = OverflowPolicy::from_u32(policy).ok_or_else(|| field("policy", policy.into(), "1 (KeepAll) or 2 (DropOldest)"))?;
    let layout = Layout::compute(slot_count, capacity, max_readers, max_writers).ok_or_else(|| field("total_size", total_size, "no overflow"))?;
    if layout.total != total_size || total_size > MAX_TOTAL {
        return Err(field("total_size", total_size, "the size the geometry describes, at most 64 GiB"));
    }
    if total_size > size {
        return Err(ValidationError::GeometryTooLarge { needed: total_size, size });
    }
    let mut type_hash = [0u8; 16];
    byteorder::LittleEndian::write_u32_into(&hash, &mut type_hash);
    Ok(SegmentInfo {
        slot_count,
        capacity,
        stride,
        max_readers,
        max_writers,
        policy,
        type_hash,
        creator_pid: h.creator_pid.load(Ordering::Relaxed),
        created_unix_ms: h.created_unix_ms.load(Ordering::Relaxed),
        total_size,
        generation,
        growth,
        predecessor,
    })
}

use byteorder::ByteOrder as _;
