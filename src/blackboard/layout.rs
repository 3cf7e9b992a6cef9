//! The blackboard segment layout: `#[repr(C)]` structs with asserted sizes
//! and offsets, and the image of the immutable part a creator writes.
//!
//! ```text
//!  offset 0      ┌────────────────────────────────────────────────┐
//!                │ BoardHeader (128 B)                            │
//!                │  magic "SHMBOARD" · version · init_state       │  init_state is stored LAST
//!                │  crc · entry_count · key size/align/hash/stride│  ┐
//!                │  max_value_size · keys/data offsets · total    │  │ immutable after init,
//!  128           ├────────────────────────────────────────────────┤  │ covered by `crc`
//!                │ EntryDesc × entry_count (64 B each)            │  │ (bytes 20..data_offset),
//!                │  value hash/size/align · buf_stride ·          │  │ copied and checked at
//!                │  block_offset · block_size                     │  │ attach, never re-read
//!  keys_offset   ├────────────────────────────────────────────────┤  │
//!                │ keys: entry_count × key_stride bytes           │  ┘
//!  data_offset   ├────────────────────────────────────────────────┤  (64-aligned)
//!                │ entry 0 block: EntryState (64 B)               │  version · seq[3] ·
//!                │   buffer 0 │ buffer 1 │ buffer 2               │  futex word · waiters · claim
//!                │   (buf_stride = align64(value size) each)      │
//!                │ entry 1 block …                                │
//!  total_size    └────────────────────────────────────────────────┘
//! ```
//!
//! Only the blocks change after init, and only through atomics (values are
//! written in place by the one writer of their entry; see `entry`).

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// "SHMBOARD", little-endian (a ring's magic is "SHMSLOT1").
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMBOARD");
/// Bumped on every incompatible layout change.
pub(crate) const LAYOUT_VERSION: u32 = 1;
/// `init_state` while the creator is still writing the segment.
pub(crate) const INIT_CREATING: u32 = 0;
/// `init_state` once the segment is ready ("RDY!").
pub(crate) const INIT_READY: u32 = u32::from_le_bytes(*b"RDY!");

/// Most entries a board may have.
pub const MAX_ENTRIES: usize = 4096;
/// Largest key type, in bytes.
pub const MAX_KEY_SIZE: usize = 1024;
/// Largest value type, in bytes (1 MiB).
pub const MAX_VALUE_SIZE: usize = 1 << 20;
/// Largest value alignment (value buffers are 64-byte aligned).
pub const MAX_VALUE_ALIGN: usize = 64;
/// Largest segment (4 GiB).
pub(crate) const MAX_TOTAL: u64 = 1 << 32;

/// Value buffers per entry: a reader copying one is disturbed only when the
/// writer publishes two more versions and starts a third meanwhile.
pub(crate) const BUFFERS: usize = 3;
/// First byte covered by the crc (after magic, version, init state, crc).
pub(crate) const CRC_FROM: usize = 20;
/// The write lock of entry `i`'s writer is on byte `ENTRY_LOCK_BASE + i`
/// (past the ring's participant bytes, `[0, LOCK_SPAN)`: bytes 0 and 1
/// mean what they mean for a ring, so `reclaim` and `flink clean` work).
pub(crate) const ENTRY_LOCK_BASE: u64 = 4096;

/// The fixed header. Plain integers: it is written once before the segment
/// is published, and read only through a copy (see `Image`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BoardHeader {
    pub magic: u64,
    pub version: u32,
    pub init_state: u32,
    /// crc32 of bytes `[CRC_FROM, data_offset)`.
    pub crc: u32,
    pub entry_count: u32,
    pub key_size: u32,
    pub key_align: u32,
    pub key_hash: [u8; 16],
    /// `align8(max(key_size, 1))`.
    pub key_stride: u32,
    /// The largest `value_size` of the table.
    pub max_value_size: u32,
    /// `HEADER_SIZE + entry_count × DESC_SIZE`.
    pub keys_offset: u64,
    /// `align64(keys_offset + entry_count × key_stride)`.
    pub data_offset: u64,
    pub total_size: u64,
    pub creator_pid: u32,
    pub _reserved0: u32,
    pub created_unix_ms: u64,
    pub _reserved: [u64; 4],
}

/// One entry of the table.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct EntryDesc {
    pub value_hash: [u8; 16],
    pub value_size: u32,
    pub value_align: u32,
    /// `align64(max(value_size, 1))`: bytes per value buffer.
    pub buf_stride: u32,
    pub _reserved0: u32,
    /// Where the entry's block (state, then `BUFFERS` buffers) starts.
    pub block_offset: u64,
    /// `STATE_SIZE + BUFFERS × buf_stride`.
    pub block_size: u64,
    pub _reserved: [u64; 2],
}

/// The mutable head of an entry's block: atomics only.
#[repr(C, align(64))]
pub(crate) struct EntryState {
    /// Latest published version (0: the initial value); its value is in
    /// buffer `version % BUFFERS`.
    pub version: AtomicU64,
    /// Per buffer: `2 × version` of the value it holds, `2 × version + 1`
    /// while the writer writes it.
    pub seq: [AtomicU64; BUFFERS],
    /// Futex word, the notify epoch: bumped after every publication.
    pub epoch: AtomicU32,
    /// Threads parked on `epoch` (the writer wakes only if nonzero).
    pub waiters: AtomicU32,
    /// 1 while a writer holds the entry (its lock byte says whether it is
    /// alive), 0 when free.
    pub claim: AtomicU32,
    /// The claiming writer's pid (display only).
    pub writer_pid: AtomicU32,
    pub _reserved: [AtomicU64; 2],
}

pub(crate) const HEADER_SIZE: usize = 128;
pub(crate) const DESC_SIZE: usize = 64;
pub(crate) const STATE_SIZE: usize = 64;

const _: () = {
    assert!(size_of::<BoardHeader>() == HEADER_SIZE);
    assert!(offset_of!(BoardHeader, version) == 8);
    assert!(offset_of!(BoardHeader, init_state) == 12);
    assert!(offset_of!(BoardHeader, crc) == 16);
    assert!(offset_of!(BoardHeader, entry_count) == CRC_FROM);
    assert!(offset_of!(BoardHeader, key_hash) == 32);
    assert!(offset_of!(BoardHeader, keys_offset) == 56);
    assert!(offset_of!(BoardHeader, data_offset) == 64);
    assert!(offset_of!(BoardHeader, total_size) == 72);
    assert!(offset_of!(BoardHeader, created_unix_ms) == 88);
    assert!(size_of::<EntryDesc>() == DESC_SIZE);
    assert!(offset_of!(EntryDesc, value_size) == 16);
    assert!(offset_of!(EntryDesc, block_offset) == 32);
    assert!(offset_of!(EntryDesc, block_size) == 40);
    assert!(size_of::<EntryState>() == STATE_SIZE);
    assert!(offset_of!(EntryState, seq) == 8);
    assert!(offset_of!(EntryState, epoch) == 32);
    assert!(offset_of!(EntryState, waiters) == 36);
    assert!(offset_of!(EntryState, claim) == 40);
    assert!(offset_of!(EntryState, writer_pid) == 44);
};

/// Our padding-free integer structs, which a byte image may hold.
///
/// # Safety
/// `#[repr(C)]`, integers and integer arrays only, no padding: every bit
/// pattern is a valid value and every byte of a value is initialised.
pub(crate) unsafe trait Plain: Copy {}
// SAFETY: see the const assertions: the fields fill the 128 bytes.
unsafe impl Plain for BoardHeader {}
// SAFETY: as above, 64 bytes.
unsafe impl Plain for EntryDesc {}

pub(crate) const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

pub(crate) const fn align64(n: u64) -> u64 {
    (n + 63) & !63
}

/// Bytes per value buffer of a value of `size` bytes.
pub(crate) const fn buf_stride(size: u32) -> u64 {
    align64(if size == 0 { 1 } else { size as u64 })
}

/// Bytes per key in the keys area.
pub(crate) const fn key_stride(size: u32) -> u64 {
    align8(if size == 0 { 1 } else { size as u64 })
}

/// The offsets of the areas of a board of `entries` entries.
pub(crate) fn keys_offset(entries: u32) -> u64 {
    HEADER_SIZE as u64 + u64::from(entries) * DESC_SIZE as u64
}

/// Where the entry blocks start.
pub(crate) fn data_offset(entries: u32, key_stride: u64) -> u64 {
    align64(keys_offset(entries) + u64::from(entries) * key_stride)
}

/// An 8-byte aligned byte image of the immutable part of a segment (held
/// as words, so its structs can be read and written in place).
pub(crate) struct Image {
    words: Vec<u64>,
}

impl Image {
    /// `len` zero bytes (`len` a multiple of 8).
    pub fn zeroed(len: usize) -> Self {
        debug_assert!(len % 8 == 0);
        Self { words: vec![0; len / 8] }
    }

    /// From words copied out of a segment.
    pub fn from_words(words: Vec<u64>) -> Self {
        Self { words }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn len(&self) -> usize {
        self.words.len() * 8
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the words are initialised and any u64 is 8 valid bytes;
        // the slice covers exactly the vector's storage.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len()) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; any bytes written make valid words.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len()) }
    }

    /// The `T` at byte `off` (8-aligned, in bounds; checked).
    pub fn get<T: Plain>(&self, off: usize) -> T {
        assert!(off % 8 == 0 && off + size_of::<T>() <= self.len(), "image read out of bounds");
        // SAFETY: in bounds and 8-aligned (checked; our structs need at most
        // 8), and `T: Plain` is valid for any initialised bytes.
        unsafe { self.words.as_ptr().cast::<u8>().add(off).cast::<T>().read() }
    }

    /// Stores `v` at byte `off` (8-aligned, in bounds; checked).
    pub fn put<T: Plain>(&mut self, off: usize, v: T) {
        assert!(off % 8 == 0 && off + size_of::<T>() <= self.len(), "image write out of bounds");
        // SAFETY: as in `get`; `T` has no padding, so every byte of the
        // image stays initialised.
        unsafe { self.words.as_mut_ptr().cast::<u8>().add(off).cast::<T>().write(v) }
    }

    /// crc32 of bytes `[CRC_FROM, len)`.
    pub fn crc(&self) -> u32 {
        crc32fast::hash(&self.bytes()[CRC_FROM..])
    }
}

/// The immutable part of a new board — header (init state `CREATING`),
/// table and keys, crc set — and the total size. `None` when the board
/// would exceed 4 GiB. Keys are `key.size` bytes each.
pub(crate) fn build_image(key: super::error::TypeDesc, keys: &[Vec<u8>], entries: &[super::error::TypeDesc], creator_pid: u32, created_unix_ms: u64) -> Option<(Image, u64)> {
    let n = u32::try_from(entries.len()).ok()?;
    let kstride = key_stride(key.size);
    let data = data_offset(n, kstride);
    let mut image = Image::zeroed(data as usize);
    let mut offset = data;
    let mut max_value_size = 0;
    for (i, e) in entries.iter().enumerate() {
        let stride = buf_stride(e.size);
        let block_size = STATE_SIZE as u64 + BUFFERS as u64 * stride;
        let d = EntryDesc {
            value_hash: e.hash,
            value_size: e.size,
            value_align: e.align,
            buf_stride: stride as u32,
            block_offset: offset,
            block_size,
            ..EntryDesc::default()
        };
        image.put(HEADER_SIZE + i * DESC_SIZE, d);
        offset = offset.checked_add(block_size)?;
        max_value_size = max_value_size.max(e.size);
    }
    if offset > MAX_TOTAL {
        return None;
    }
    let keys_at = keys_offset(n) as usize;
    for (i, k) in keys.iter().enumerate() {
        image.bytes_mut()[keys_at + i * kstride as usize..][..k.len()].copy_from_slice(k);
    }
    let mut h = BoardHeader {
        magic: MAGIC,
        version: LAYOUT_VERSION,
        init_state: INIT_CREATING,
        crc: 0,
        entry_count: n,
        key_size: key.size,
        key_align: key.align,
        key_hash: key.hash,
        key_stride: kstride as u32,
        max_value_size,
        keys_offset: keys_at as u64,
        data_offset: data,
        total_size: offset,
        creator_pid,
        created_unix_ms,
        ..BoardHeader::default()
    };
    image.put(0, h);
    h.crc = image.crc();
    image.put(0, h);
    Some((image, offset))
}
