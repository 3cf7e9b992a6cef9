//! Attach-time validation of a mapped blackboard. The immutable part is
//! copied out with atomic loads, its crc checked, every field bounded
//! against the real object size (from `fstat`), and the result kept as a
//! [`BoardInfo`] that is trusted from then on: no index, offset or size is
//! ever read from the segment again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::error::TypeDesc;
use super::layout::{
    buf_stride, data_offset, key_stride, keys_offset, BoardHeader, EntryDesc, Image, BUFFERS, DESC_SIZE, HEADER_SIZE, INIT_READY, LAYOUT_VERSION,
    MAGIC, MAX_ENTRIES, MAX_KEY_SIZE, MAX_TOTAL, MAX_VALUE_ALIGN, MAX_VALUE_SIZE, STATE_SIZE,
};
use crate::error::ValidationError;

/// One entry, as validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryInfo {
    /// The value type stored.
    pub value: TypeDesc,
    /// Where its block starts (64-aligned; block inside the object).
    pub block_offset: usize,
    /// Bytes per value buffer.
    pub buf_stride: usize,
}

/// The validated, immutable description of a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoardInfo {
    /// The key type stored.
    pub key: TypeDesc,
    /// Bytes per key in `keys`.
    pub key_stride: usize,
    /// Every entry's key, `key_stride` bytes each (the first `key.size`
    /// bytes are the key).
    pub keys: Vec<u8>,
    /// The entries, in id order.
    pub entries: Vec<EntryInfo>,
    /// The largest value size.
    pub max_value_size: u32,
    /// Bytes the layout describes.
    pub total_size: u64,
    /// Creator's pid (display only).
    pub creator_pid: u32,
    /// Creation time, ms since the epoch.
    pub created_unix_ms: u64,
}

impl BoardInfo {
    /// The key bytes of entry `i` (`i` in range).
    pub fn key_bytes(&self, i: usize) -> &[u8] {
        &self.keys[i * self.key_stride..][..self.key.size as usize]
    }
}

fn field(field: &'static str, value: u64, expected: &'static str) -> ValidationError {
    ValidationError::BadField { field, value, expected }
}

/// Copies words `[from, to)` of the mapping with atomic loads (a hostile
/// process may be writing them: no plain reads of shared memory).
///
/// # Safety
/// `base` must be valid for reads of `to × 8` bytes and 8-byte aligned.
unsafe fn copy_words(base: *const u8, from: usize, to: usize, out: &mut [u64]) {
    for (k, w) in (from..to).zip(out.iter_mut()) {
        // SAFETY: in bounds and aligned (caller); AtomicU64 is valid for any
        // bits, and the mapping is shared memory accessed atomically.
        *w = unsafe { (*base.cast::<AtomicU64>().add(k)).load(Ordering::Relaxed) };
    }
}

/// Validates the board mapped at `base`, a mapping of `size` bytes.
///
/// # Safety
/// `base` must be valid for reads of `size` bytes and 64-byte aligned for as
/// long as the call runs.
pub(crate) unsafe fn validate(base: *const u8, size: u64) -> Result<BoardInfo, ValidationError> {
    if size < HEADER_SIZE as u64 {
        return Err(ValidationError::Truncated { size, needed: HEADER_SIZE as u64 });
    }
    // SAFETY: `size >= HEADER_SIZE`; offsets 0, 8 and 12 are aligned for
    // their types; atomics accept any bits.
    let (magic, version, init_state) = unsafe {
        (
            (*base.cast::<AtomicU64>()).load(Ordering::Relaxed),
            (*base.add(8).cast::<AtomicU32>()).load(Ordering::Relaxed),
            // SYNC POINT (init): pairs with the creator's Release store of
            // READY, which comes after everything else it writes.
            (*base.add(12).cast::<AtomicU32>()).load(Ordering::Acquire),
        )
    };
    if magic != MAGIC {
        return Err(ValidationError::BadMagic { found: magic });
    }
    if version != LAYOUT_VERSION {
        return Err(ValidationError::VersionMismatch { found: version, expected: LAYOUT_VERSION });
    }
    if init_state != INIT_READY {
        return Err(ValidationError::NotInitialized { state: init_state });
    }
    // The header alone first, to learn how much is immutable.
    let mut words = vec![0u64; HEADER_SIZE / 8];
    words[0] = magic;
    words[1] = u64::from(version) | u64::from(init_state) << 32;
    // SAFETY: `size >= HEADER_SIZE`, aligned (caller).
    unsafe { copy_words(base, 2, HEADER_SIZE / 8, &mut words[2..]) };
    let first: BoardHeader = Image::from_words(words).get(0);
    let data_off = sizing(&first, size)?;
    // Now all of it, and from here on only the copy.
    let len = data_off as usize;
    let mut words = vec![0u64; len / 8];
    words[0] = magic;
    words[1] = u64::from(version) | u64::from(init_state) << 32;
    // SAFETY: `data_off <= size` (`sizing`), aligned (caller).
    unsafe { copy_words(base, 2, len / 8, &mut words[2..]) };
    let image = Image::from_words(words);
    if image.get::<BoardHeader>(0) != first {
        return Err(field("header", first.entry_count.into(), "unchanged while it is read (someone is rewriting the segment)"));
    }
    check_image(&image, size)
}

/// Checks the header's geometry fields; returns the length of the immutable
/// part (`data_offset`), which fits in `size`.
fn sizing(h: &BoardHeader, size: u64) -> Result<u64, ValidationError> {
    let n = h.entry_count;
    if n == 0 || n as usize > MAX_ENTRIES {
        return Err(field("entry_count", n.into(), "1 to 4096"));
    }
    if h.key_size as usize > MAX_KEY_SIZE {
        return Err(field("key_size", h.key_size.into(), "at most 1024 bytes"));
    }
    if !h.key_align.is_power_of_two() || h.key_align as usize > MAX_VALUE_ALIGN {
        return Err(field("key_align", h.key_align.into(), "a power of two up to 64"));
    }
    let kstride = key_stride(h.key_size);
    if u64::from(h.key_stride) != kstride {
        return Err(field("key_stride", h.key_stride.into(), "align8(key_size)"));
    }
    if h.keys_offset != keys_offset(n) {
        return Err(field("keys_offset", h.keys_offset, "128 + 64 × entry_count"));
    }
    let data_off = data_offset(n, kstride);
    if h.data_offset != data_off {
        return Err(field("data_offset", h.data_offset, "align64(keys_offset + entry_count × key_stride)"));
    }
    if data_off > size {
        return Err(ValidationError::Truncated { size, needed: data_off });
    }
    Ok(data_off)
}

/// Checks the copied immutable part of a segment of `size` bytes (its
/// magic, version and init state aside) and describes it.
pub(crate) fn check_image(image: &Image, size: u64) -> Result<BoardInfo, ValidationError> {
    let h: BoardHeader = image.get(0);
    let data_off = sizing(&h, size)?;
    if image.len() as u64 != data_off {
        return Err(field("data_offset", data_off, "the length of the copied header, table and keys"));
    }
    let n = h.entry_count;
    let computed = image.crc();
    if h.crc != computed {
        return Err(ValidationError::BadCrc { stored: h.crc, computed });
    }
    if h.total_size > MAX_TOTAL {
        return Err(field("total_size", h.total_size, "at most 4 GiB"));
    }
    if h.total_size > size {
        return Err(ValidationError::GeometryTooLarge { needed: h.total_size, size });
    }
    let mut entries = Vec::with_capacity(n as usize);
    let mut end = data_off;
    let mut max_value_size = 0;
    for i in 0..n as usize {
        let d: EntryDesc = image.get(HEADER_SIZE + i * DESC_SIZE);
        if d.value_size as usize > MAX_VALUE_SIZE {
            return Err(field("value_size", d.value_size.into(), "at most 1 MiB"));
        }
        if !d.value_align.is_power_of_two() || d.value_align as usize > MAX_VALUE_ALIGN {
            return Err(field("value_align", d.value_align.into(), "a power of two up to 64"));
        }
        let stride = buf_stride(d.value_size);
        if u64::from(d.buf_stride) != stride {
            return Err(field("buf_stride", d.buf_stride.into(), "align64(value_size)"));
        }
        if d.block_size != STATE_SIZE as u64 + BUFFERS as u64 * stride {
            return Err(field("block_size", d.block_size, "64 + 3 × buf_stride"));
        }
        // Blocks in id order, 64-aligned, after the immutable part, not
        // overlapping each other, inside `total_size` (so inside the object).
        if d.block_offset % 64 != 0 || d.block_offset < end {
            return Err(field("block_offset", d.block_offset, "64-aligned, past the table, keys and previous entry"));
        }
        end = d.block_offset.checked_add(d.block_size).filter(|&e| e <= h.total_size).ok_or_else(|| field("block_offset", d.block_offset, "block inside total_size"))?;
        max_value_size = max_value_size.max(d.value_size);
        entries.push(EntryInfo {
            value: TypeDesc { hash: d.value_hash, size: d.value_size, align: d.value_align },
            block_offset: d.block_offset as usize,
            buf_stride: stride as usize,
        });
    }
    if h.total_size != end {
        return Err(field("total_size", h.total_size, "the end of the last entry block"));
    }
    if h.max_value_size != max_value_size {
        return Err(field("max_value_size", h.max_value_size.into(), "the largest value_size of the table"));
    }
    let kstride = h.key_stride as usize;
    let keys_at = h.keys_offset as usize;
    let keys = image.bytes()[keys_at..keys_at + n as usize * kstride].to_vec();
    Ok(BoardInfo {
        key: TypeDesc { hash: h.key_hash, size: h.key_size, align: h.key_align },
        key_stride: kstride,
        keys,
        entries,
        max_value_size,
        total_size: h.total_size,
        creator_pid: h.creator_pid,
        created_unix_ms: h.created_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::super::layout::{build_image, CRC_FROM};
    use super::*;

    fn desc(size: u32, align: u32) -> TypeDesc {
        TypeDesc { hash: [size as u8; 16], size, align }
    }

    /// A whole segment (header, table, keys and zeroed blocks) in a buffer
    /// of 64-aligned words.
    fn segment(entries: &[TypeDesc]) -> Vec<AlignedLine> {
        let keys: Vec<Vec<u8>> = (0..entries.len() as u32).map(|k| k.to_le_bytes().to_vec()).collect();
        let (image, total) = build_image(desc(4, 4), &keys, entries, 7, 8).unwrap();
        let mut seg = vec![AlignedLine([0; 8]); (total as usize).div_ceil(64)];
        for (k, w) in image.words().iter().enumerate() {
            seg[k / 8].0[k % 8] = *w;
        }
        // The header's init state (word 1, high half) is READY.
        seg[0].0[1] = u64::from(LAYOUT_VERSION) | u64::from(INIT_READY) << 32;
        seg
    }

    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct AlignedLine([u64; 8]);

    fn check(seg: &[AlignedLine], size: u64) -> Result<BoardInfo, ValidationError> {
        assert!(size <= seg.len() as u64 * 64);
        // SAFETY: `size` bytes of the 64-aligned buffer.
        unsafe { validate(seg.as_ptr().cast(), size) }
    }

    fn full(seg: &[AlignedLine]) -> u64 {
        seg.len() as u64 * 64
    }

    fn bytes(seg: &mut [AlignedLine]) -> &mut [u8] {
        // SAFETY: plain words, any bytes valid.
        unsafe { std::slice::from_raw_parts_mut(seg.as_mut_ptr().cast::<u8>(), seg.len() * 64) }
    }

    fn recrc(seg: &mut [AlignedLine]) {
        let b = bytes(seg);
        let data = u64::from_le_bytes(b[64..72].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&b[CRC_FROM..data]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn round_trip() {
        let types = [desc(16, 8), desc(0, 1), desc(200, 8), desc(1024, 64)];
        let seg = segment(&types);
        let info = check(&seg, full(&seg)).unwrap();
        assert_eq!(info.entries.len(), 4);
        assert_eq!(info.entries.iter().map(|e| e.value).collect::<Vec<_>>(), types);
        assert_eq!(info.max_value_size, 1024);
        assert_eq!(info.key_bytes(2), &2u32.to_le_bytes());
        assert_eq!(info.creator_pid, 7);
        assert!(info.entries.iter().all(|e| e.block_offset % 64 == 0));
    }

    #[test]
    fn hostile_fields_are_errors() {
        let types = [desc(16, 8), desc(64, 8), desc(8, 8)];
        let base = segment(&types);
        let size = full(&base);
        type Edit = fn(&mut [u8]);
        let cases: [(&str, Edit, bool); 9] = [
            ("magic", |b| b[0] ^= 1, false),
            ("not ready", |b| b[12] = 0, false),
            ("crc", |b| b[16] ^= 1, false),
            ("entry count 0", |b| b[20..24].copy_from_slice(&0u32.to_le_bytes()), true),
            ("entry count big", |b| b[20..24].copy_from_slice(&5000u32.to_le_bytes()), true),
            ("entry count smaller", |b| b[20..24].copy_from_slice(&2u32.to_le_bytes()), true),
            ("overlapping block", |b| b.copy_within(128 + 32..128 + 40, 128 + 64 + 32), true),
            ("block past end", |b| b[128 + 128 + 32..128 + 128 + 40].copy_from_slice(&(1u64 << 31).to_le_bytes()), true),
            ("misaligned block", |b| b[128 + 128 + 32] += 8, true),
        ];
        for (what, edit, fix_crc) in cases {
            let mut seg = base.clone();
            edit(bytes(&mut seg));
            if fix_crc {
                recrc(&mut seg);
            }
            assert!(check(&seg, size).is_err(), "{what}: accepted");
        }
        // Truncations: less than the header, less than the table, less
        // than the blocks.
        for cut in [0, 100, 200, size - 64] {
            assert!(check(&base, cut).is_err(), "truncated to {cut}: accepted");
        }
        // A value size that does not match its buffers, with a good crc.
        let mut seg = base.clone();
        bytes(&mut seg)[128 + 16..128 + 20].copy_from_slice(&100u32.to_le_bytes());
        recrc(&mut seg);
        assert!(matches!(check(&seg, size), Err(ValidationError::BadField { field: "buf_stride", .. })));
    }
}
