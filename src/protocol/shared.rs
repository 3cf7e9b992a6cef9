//! The protocol's words in shared memory: per-slot metadata, reader
//! entries, the control block. Atomics only: any bit pattern is a valid
//! value, and the protocol trusts none of them.

use crate::sync::{AtomicU32, AtomicU64};

/// Per-slot metadata, 32 bytes; the payload follows at +32 in the same
/// stride, so a small sample shares the cache line of its stamp and a reader
/// pulls both in one transfer.
#[repr(C, align(32))]
pub(crate) struct SlotMeta {
    /// `seq:54 | state:2 | pins:8`.
    pub stamp: AtomicU64,
    /// Readers the sample is addressed to (immutable until reuse).
    pub pending: AtomicU64,
    /// Payload length, `<= capacity` when valid.
    pub len: AtomicU32,
}

/// One reader's entry. Only its owner writes `cursor`/`pinned`/counters.
#[repr(C, align(64))]
pub(crate) struct ReaderEntry {
    /// `epoch << 2 | ENTRY_*`.
    pub state: AtomicU32,
    /// Process id of the owner, for display only.
    pub pid: AtomicU32,
    /// Next sequence this reader will look at.
    pub cursor: AtomicU64,
    /// The `DropOldest` slot it pins: `seq << 2 | PIN_NAMED` from just
    /// before the pin CAS, `seq << 2 | PIN_HELD` once the pin exists; 0 when
    /// none.
    pub pinned: AtomicU64,
    /// Samples released.
    pub received: AtomicU64,
    /// Samples overtaken on (`DropOldest`).
    pub lost: AtomicU64,
    /// Samples kept in place so far ([`RingView::keep`]; display only).
    pub kept_total: AtomicU64,
    /// Samples this reader keeps in place past its cursor ([`RingView::keep`]),
    /// one word each as `pinned`: `seq << 2 | PIN_NAMED` / `| PIN_HELD`, 0
    /// when free. On lines of their own: written per keep, never per sample.
    pub kept: CacheLine<[AtomicU64; KEEP_MAX]>,
}

/// Most samples one reader keeps in place at once ([`RingView::keep`]).
pub(crate) const KEEP_MAX: usize = 16;

/// The slot metadata of a ring: `count` entries `stride` bytes apart (the
/// payload of each slot sits between them in a segment).
#[derive(Clone, Copy)]
pub(crate) struct SlotArray<'a> {
    base: std::ptr::NonNull<u8>,
    stride: usize,
    count: u32,
    _life: std::marker::PhantomData<&'a SlotMeta>,
}

// SAFETY: a `SlotArray` is a shared borrow of `SlotMeta`s, which are atomics
// only (Sync); sending or sharing it is sharing `&SlotMeta`.
unsafe impl Send for SlotArray<'_> {}
// SAFETY: as above.
unsafe impl Sync for SlotArray<'_> {}

impl<'a> SlotArray<'a> {
    /// Contiguous metadata (the loom model, tests).
    #[allow(dead_code)]
    pub fn from_slice(slots: &'a [SlotMeta]) -> Self {
        assert!(slots.len().is_power_of_two() && slots.len() <= u32::MAX as usize);
        Self {
            base: std::ptr::NonNull::from(slots).cast(),
            stride: std::mem::size_of::<SlotMeta>(),
            count: slots.len() as u32,
            _life: std::marker::PhantomData,
        }
    }

    /// # Safety
    /// `base + i * stride` must be a valid, 64-byte aligned `SlotMeta` for
    /// every `i < count`, for `'a`; `count` must be a power of two.
    pub unsafe fn from_raw(base: std::ptr::NonNull<u8>, stride: usize, count: u32) -> Self {
        Self { base, stride, count, _life: std::marker::PhantomData }
    }

    /// Slot `i mod count`: always in range.
    #[inline]
    pub fn get(&self, i: u32) -> &'a SlotMeta {
        let i = (i & (self.count - 1)) as usize;
        // SAFETY: `i < count` (masked, count is a power of two), so the
        // constructor's contract makes this a valid `SlotMeta` for `'a`.
        unsafe { &*self.base.as_ptr().add(i * self.stride).cast::<SlotMeta>() }
    }
}

/// A futex word with its waiter count.
#[repr(C, align(64))]
pub(crate) struct NotifyWord {
    /// The notify epoch: bumped to wake waiters (a futex word; not a ring
    /// generation, see `ring::grow`).
    pub epoch: AtomicU32,
    /// Threads (all processes) parked or about to park on `epoch`.
    pub waiters: AtomicU32,
}

/// The hot control words of a ring, each on its own cache line.
#[repr(C)]
pub(crate) struct Control {
    /// Next sequence to reserve.
    pub write_seq: CacheLine<AtomicU64>,
    /// Registered readers.
    pub registered: CacheLine<AtomicU64>,
    /// Readers wait here for commits; bumped on every commit.
    pub data: NotifyWord,
    /// Writers wait here for a free slot; bumped only when someone waits.
    pub space: NotifyWord,
}

/// Pads `T` to a cache line of its own.
#[repr(C, align(64))]
pub(crate) struct CacheLine<T>(pub T);
