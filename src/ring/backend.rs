//! `SlotBackend` for `PosixSlotAllocator`: each call goes to the generation
//! it belongs to (a static ring has one) and follows a growing ring's moves.

use std::time::Duration;

use super::layout;
use super::{grow, Generation, GrowthStrategy, PARK_SLICE, PosixSlotAllocator};

use crate::backend::{OverflowPolicy, ReaderMask, ReaderStats, SlotBackend, SlotHandle, SlotHeader};
use crate::error::SlotError;
use crate::sync::Ordering;

impl SlotBackend for PosixSlotAllocator {
    #[inline(always)]
    fn reserve_slot(&self, active_readers_mask: ReaderMask) -> Result<SlotHandle, SlotError> {
        if self.static_ring() {
            return self.gen.reserve_slot_local(active_readers_mask);
        }
        self.reserve_slot_in_chain(active_readers_mask)
    }

    fn discard_slot(&self, handle: SlotHandle) -> Result<(), SlotError> {
        let (g, h) = self.gen_of(handle)?;
        g.discard_slot_local(h).map_err(|e| grow::outer_err(e, handle))
    }

    /// Copies `bytes` into the loan and commits it. A sample larger than
    /// the loan's slot grows a ring created with a [`GrowthStrategy`]: the
    /// loan is discarded and the sample goes into a fresh loan of the next
    /// generation (addressed to every reader; on a full ring that loan
    /// fails with `NoFreeSlot` and the sample is not sent).
    fn commit_slot(&self, handle: SlotHandle, bytes: &[u8]) -> Result<u64, SlotError> {
        let (g, h) = self.gen_of(handle)?;
        let (mut ptr, cap) = g.slot_data_ptr_local(h).map_err(|e| grow::outer_err(e, handle))?;
        let mut target = handle;
        if bytes.len() > cap {
            if g.info.growth == GrowthStrategy::Static {
                return Err(SlotError::SampleTooLarge { sample: bytes.len(), slot_capacity: cap });
            }
            // The loan's slot is too small: the sample goes into a loan with
            // room for it (the ring grows), addressed to every reader.
            g.discard_slot_local(h)?;
            (target, ptr, _) = self.reserve_for(bytes.len(), crate::ALL_READERS)?;
        }
        // SAFETY: `ptr` is the writable payload of the loan `target`, which
        // this call owns until it commits, with room for `bytes.len()`
        // (checked above); a `&[u8]` cannot overlap a loaned slot.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        self.commit_in_place(target, bytes.len())
    }

    #[inline(always)]
    fn slot_data_ptr(&self, handle: SlotHandle) -> Result<(*mut u8, usize), SlotError> {
        if self.static_ring() {
            return self.gen.slot_data_ptr_local(handle);
        }
        self.slot_data_ptr_in_chain(handle)
    }

    #[inline(always)]
    fn commit_in_place(&self, handle: SlotHandle, len: usize) -> Result<u64, SlotError> {
        if self.static_ring() {
            return self.gen.commit_in_place_local(handle, len);
        }
        self.commit_in_place_in_chain(handle, len)
    }

    #[inline(always)]
    fn slot_read_ptr(&self, handle: SlotHandle) -> Result<(*const u8, usize), SlotError> {
        if self.static_ring() {
            return self.gen.slot_read_ptr_local(handle);
        }
        self.slot_read_ptr_in_chain(handle)
    }

    #[inline(always)]
    fn reserve_loan(&self, active_readers_mask: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        if self.static_ring() {
            return self.gen.reserve_loan_local(active_readers_mask);
        }
        self.reserve_loan_in_chain(active_readers_mask)
    }

    #[inline(always)]
    fn next_unread_read(&self, reader_index: u8) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> {
        if self.static_ring() {
            return self.gen.next_unread_read_local(reader_index);
        }
        self.next_unread_read_in_chain(reader_index)
    }

    #[inline(always)]
    fn next_unread_slot(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        if self.static_ring() {
            return self.gen.next_unread_slot_local(reader_index);
        }
        self.next_unread_slot_in_chain(reader_index)
    }

    fn read_slot(&self, handle: SlotHandle) -> Result<(SlotHeader, Vec<u8>), SlotError> {
        let (g, h) = self.gen_of(handle)?;
        let (mut header, bytes) = g.read_slot_local(h).map_err(|e| grow::outer_err(e, handle))?;
        header.sequence_number = handle.seq;
        Ok((header, bytes))
    }

    #[inline(always)]
    fn mark_read(&self, handle: SlotHandle, reader_index: u8) -> Result<(), SlotError> {
        if self.static_ring() {
            return self.gen.mark_read_local(handle, reader_index);
        }
        self.mark_read_in_chain(handle, reader_index)
    }

    fn mark_reader_disconnected(&self, reader_index: u8) -> Result<(), SlotError> {
        self.gen.at_depth(self.reader_depth(reader_index))?.mark_reader_disconnected_local(reader_index)
    }

    fn register_reader(&self) -> Result<u8, SlotError> {
        // In the newest generation: follow every published move first, and
        // again if one started while we registered (we may or may not have
        // been carried over; a copy of us that we never adopt is reaped).
        for _ in 0..=layout::MAX_GENERATIONS {
            let (mut g, mut d) = self.gen.newest();
            while g.info.growth != GrowthStrategy::Static && g.chain_flags() != 0 {
                g.wait_moved()?;
                g = g.successor()?;
                d += 1;
            }
            let r = g.register_reader_local()?;
            if g.info.growth != GrowthStrategy::Static && g.chain_flags() != 0 {
                let _ = g.unregister_local(r);
                g.release_if_unread();
                continue;
            }
            self.depths.readers[usize::from(r)].store(d as u8, Ordering::Relaxed);
            return Ok(r);
        }
        Err(SlotError::Generation { what: "register a reader", detail: "the ring kept moving".into() })
    }

    fn unregister_reader(&self, reader_index: u8) -> Result<(), SlotError> {
        let d = self.reader_depth(reader_index);
        let g = self.gen.at_depth(d)?;
        g.unregister_local(reader_index)?;
        g.release_if_unread();
        // Copies of this reader carried into later generations never get
        // adopted now: free them (reapers would, later).
        let mut n = g.next.get();
        while let Some(x) = n {
            let st = x.ring().reader_state(reader_index);
            if crate::protocol::entry_kind(st) == crate::protocol::ENTRY_ADOPTING {
                x.ring().reap_reader(reader_index, st);
                x.release_if_unread();
            }
            n = x.next.get();
        }
        // Registered, so below 64.
        self.depths.readers[usize::from(reader_index)].store(0, Ordering::Relaxed);
        Ok(())
    }

    fn reader_stats(&self, reader_index: u8) -> Result<ReaderStats, SlotError> {
        self.gen.at_depth(self.reader_depth(reader_index))?.ring().stats(reader_index)
    }

    fn slot_count(&self) -> usize {
        self.gen.info.slot_count as usize
    }
    fn slot_capacity(&self) -> usize {
        self.writer_gen().info.capacity as usize
    }
    fn slot_total_size(&self) -> usize {
        self.writer_gen().info.stride as usize
    }
    fn overflow_policy(&self) -> OverflowPolicy {
        self.gen.info.policy
    }
    fn type_hash(&self) -> Option<[u8; 16]> {
        Some(self.gen.info.type_hash).filter(|h| h != &[0; 16])
    }
    fn spin_budget(&self) -> Duration {
        self.gen.spin
    }
    fn ensure_capacity(&self, len: usize) -> Result<(), SlotError> {
        // A static ring is its one generation: no chain to walk (this runs
        // on every transport send).
        if self.gen.info.growth == GrowthStrategy::Static {
            let capacity = self.gen.info.capacity as usize;
            return if len <= capacity { Ok(()) } else { Err(SlotError::SampleTooLarge { sample: len, slot_capacity: capacity }) };
        }
        self.grow_for(len)
    }
    fn notify_generation(&self) -> u64 {
        u64::from(self.gen.newest().0.ring().data_epoch())
    }
    fn wait_for_change(&self, last: u64, timeout: Duration) {
        self.gen.newest().0.ring().wait_data(last as u32, timeout.min(PARK_SLICE));
        // The next empty poll looks at liveness (if due).
        self.gen.idle_polls.store(63, Ordering::Relaxed);
        let mut n = self.gen.next.get();
        while let Some(x) = n {
            x.idle_polls.store(63, Ordering::Relaxed);
            n = x.next.get();
        }
    }
    fn wait_for_space(&self, timeout: Duration, still_full: &mut dyn FnMut() -> bool) {
        self.writer_gen().ring().wait_space(timeout.min(PARK_SLICE), still_full);
    }
}

/// The growing ring's forms of the hot calls: which generation, and
/// following its moves. Out of line, so that a static ring's calls are one
/// predicted branch and the generation's own operation, inlined.
impl PosixSlotAllocator {
    #[inline(never)]
    fn reserve_slot_in_chain(&self, active_readers_mask: ReaderMask) -> Result<SlotHandle, SlotError> {
        self.reserve_loan_in_chain(active_readers_mask).map(|(h, _, _)| h)
    }

    #[inline(never)]
    fn slot_data_ptr_in_chain(&self, handle: SlotHandle) -> Result<(*mut u8, usize), SlotError> {
        let (g, h) = self.gen_of(handle)?;
        g.slot_data_ptr_local(h).map_err(|e| grow::outer_err(e, handle))
    }

    #[inline(never)]
    fn commit_in_place_in_chain(&self, handle: SlotHandle, len: usize) -> Result<u64, SlotError> {
        let (g, h) = self.gen_of(handle)?;
        g.commit_in_place_local(h, len).map_err(|e| grow::outer_err(e, handle))
    }

    #[inline(never)]
    fn slot_read_ptr_in_chain(&self, handle: SlotHandle) -> Result<(*const u8, usize), SlotError> {
        let (g, h) = self.gen_of(handle)?;
        g.slot_read_ptr_local(h).map_err(|e| grow::outer_err(e, handle))
    }

    #[inline(never)]
    fn reserve_loan_in_chain(&self, active_readers_mask: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        for _ in 0..=layout::MAX_GENERATIONS {
            let d = self.depths.writer.load(Ordering::Relaxed);
            let g = self.gen.at_depth(d)?;
            match g.reserve_loan_local(active_readers_mask) {
                Ok((h, ptr, len)) => return Ok((grow::join(d, h), ptr, len)),
                // This generation moved (or is moving): go on in the next.
                Err(SlotError::NoFreeSlot) if g.chain_flags() != 0 => self.follow_writer(d)?,
                Err(e) => return Err(e),
            }
        }
        Err(SlotError::NoFreeSlot)
    }

    #[inline(never)]
    fn next_unread_read_in_chain(&self, reader_index: u8) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> {
        for _ in 0..=layout::MAX_GENERATIONS {
            let d = self.reader_depth(reader_index);
            let g = self.gen.at_depth(d)?;
            match g.next_unread_read_local(reader_index) {
                Ok(Some((h, ptr, len))) => return Ok(Some((grow::join(d, h), ptr, len))),
                Ok(None) | Err(SlotError::WritersGone) if g.info.growth != GrowthStrategy::Static && g.moved_past(reader_index) => self.follow_reader(reader_index, d)?,
                other => return other,
            }
        }
        Ok(None)
    }

    #[inline(never)]
    fn next_unread_slot_in_chain(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        Ok(self.next_unread_read_in_chain(reader_index)?.map(|(h, _, _)| h))
    }

    #[inline(never)]
    fn mark_read_in_chain(&self, handle: SlotHandle, reader_index: u8) -> Result<(), SlotError> {
        let (g, h) = self.gen_of(handle)?;
        g.mark_read_local(h, reader_index).map_err(|e| grow::outer_err(e, handle))
    }
}

impl PosixSlotAllocator {
    /// A ring that never grows: every call goes straight to this
    /// generation (the hot path of a static ring pays one predicted branch).
    #[inline(always)]
    pub(super) fn static_ring(&self) -> bool {
        self.gen.info.growth == GrowthStrategy::Static
    }

    /// The generation a slot handle belongs to, and the handle in it.
    #[inline]
    pub(super) fn gen_of(&self, handle: SlotHandle) -> Result<(&Generation, SlotHandle), SlotError> {
        let (d, h) = grow::split(handle);
        // No such generation: the handle as given is out of this one's
        // range, and its calls fail as for any out-of-range index.
        Ok(self.gen.at_depth(d).map_or((&self.gen, handle), |g| (g, h)))
    }

    /// The generation (depth) reader `r` reads in.
    #[inline]
    pub(super) fn reader_depth(&self, r: u8) -> u32 {
        self.depths.readers.get(usize::from(r)).map_or(0, |d| u32::from(d.load(Ordering::Relaxed)))
    }

    /// The generation this handle's writer reserves in.
    #[inline]
    pub(super) fn writer_gen(&self) -> &Generation {
        self.gen.at_depth(self.depths.writer.load(Ordering::Relaxed)).unwrap_or(&self.gen)
    }

    /// Reserves a loan with room for `len` bytes: as
    /// [`SlotBackend::reserve_loan`], after growing a ring created with a
    /// [`GrowthStrategy`] if `len` exceeds its slots.
    ///
    /// # Errors
    /// [`SlotError::SampleTooLarge`] on a static ring,
    /// [`SlotError::GenerationsExhausted`] when the ring cannot grow any
    /// more, [`SlotError::Generation`] when the next generation cannot be
    /// made; as `reserve_loan` otherwise.
    pub fn reserve_for(&self, len: usize, active_readers_mask: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        // A static ring: the one length check (its loans are all this big).
        self.ensure_capacity(len)?;
        let (h, ptr, cap) = self.reserve_loan(active_readers_mask)?;
        // A growing ring: the generation reserved in is the one grown for,
        // or a later (larger) one; checked all the same, as the caller
        // writes `len` bytes on the strength of it.
        if !self.static_ring() && len > cap {
            let _ = self.discard_slot(h);
            return Err(SlotError::SampleTooLarge { sample: len, slot_capacity: cap });
        }
        Ok((h, ptr, cap))
    }

    /// The generation of the ring this handle writes in (0 until the ring
    /// first grew), and how many generations this handle has mapped.
    pub fn generation(&self) -> u32 {
        self.writer_gen().info.generation
    }
}
