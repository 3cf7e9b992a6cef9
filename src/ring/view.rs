//! A handle's view of its mapping: the protocol's `RingView` over the
//! shared words (built once per handle), the futex parker, the
//! process-local cursor floor, and where a slot's payload is.

use std::fs::File;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::time::Duration;

use memmap2::MmapRaw;

use super::layout::{self, Layout, SegmentHeader, CONTROL_OFFSET, READERS_OFFSET};
use super::{Generation, SegmentInfo, NO_WRITER};

use crate::protocol::{Control, Geometry, Parker, ReaderEntry, RingView, SlotArray, WriterTable};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::sys::{futex, membarrier};

/// The process-local cursor floor of a handle (`RingView::cursor_floor`):
/// one heap word, allocated with the handle and freed when it drops. Held
/// through a raw pointer, not a `Box`, because the handle's `view` keeps a
/// shared reference to it while the handle (and so this owner) moves.
pub(super) struct FloorCell(NonNull<AtomicU64>);

impl FloorCell {
    pub(super) fn new() -> Self {
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

impl Generation {
    /// # Safety
    /// `map` must be at least `info.total_size` bytes and laid out by `info`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn from_map(map: MmapRaw, file: File, locks: File, info: SegmentInfo, flink_path: PathBuf, segment_name: String, owner: bool, spin: Duration) -> Self {
        let lay = Layout::compute(info.slot_count, info.capacity, info.max_readers, info.max_writers).expect("validated geometry");
        let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        // SAFETY: every offset is within `lay.total <= map.len()` (caller).
        let at = |off: u64| unsafe { base.add(off as usize) };
        let ctrl: NonNull<Control> = at(CONTROL_OFFSET as u64).cast();
        let readers: NonNull<ReaderEntry> = at(READERS_OFFSET as u64).cast();
        let slots = at(lay.slots_offset);
        let geo = Geometry { slot_count: info.slot_count, capacity: info.capacity, max_readers: info.max_readers, policy: info.policy };
        let cursor_floor = FloorCell::new();
        let id = crate::segment::name::id_of(&segment_name);
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
            id,
            next: std::sync::OnceLock::new(),
            grow_lock: parking_lot::Mutex::new(()),
            holds_creator: false,
        }
    }

    /// Starts the cursor floor far behind `write_seq`: no lower bound known.
    pub(super) fn reset_cursor_floor(&self) {
        let ws = self.ring().write_seq();
        self.ring().cursor_floor.store(ws.wrapping_sub(1 << 62), Ordering::Release);
    }

    pub(super) fn header(&self) -> &SegmentHeader {
        // SAFETY: offset 0 of a mapping of at least HEADER_SIZE bytes, page
        // aligned; atomics only.
        unsafe { &*self.map.as_ptr().cast::<SegmentHeader>() }
    }

    /// The protocol over this handle's mapping.
    #[inline]
    pub(super) fn ring(&self) -> &RingView<'_, FutexParker> {
        &self.view
    }

    pub(super) fn writers(&self) -> WriterTable<'_> {
        // SAFETY: `max_writers` entries at `writers_offset`, inside the
        // mapping; atomics only.
        WriterTable(unsafe { std::slice::from_raw_parts(self.writers.as_ptr(), self.info.max_writers as usize) })
    }

    #[inline]
    pub(super) fn payload(&self, index: u32) -> *mut u8 {
        let i = (index & (self.info.slot_count - 1)) as usize;
        // SAFETY: `i < slot_count`; slot `i`'s payload starts 64 bytes into
        // its stride, inside the mapping.
        unsafe { self.slots.as_ptr().add(i * self.info.stride as usize + layout::SLOT_META_SIZE) }
    }
}
