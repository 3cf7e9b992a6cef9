//! The ring operations on one generation alone (the `SlotBackend` impl in
//! `backend` picks the generation and follows moves).

use super::layout;
use super::{GrowthStrategy, PosixSlotAllocator};

use crate::backend::{ReaderMask, SlotHandle, SlotHeader};
use crate::error::SlotError;
use crate::segment::liveness as lock;
use crate::sync::Ordering;

impl PosixSlotAllocator {
    /// Reserves in this generation. A growing ring's generation that moved
    /// (or started moving) refuses with `NoFreeSlot` and its chain flags
    /// set: the caller follows to the next generation (see `backend`).
    #[inline(always)]
    pub(super) fn reserve_slot_local(&self, active_readers_mask: ReaderMask) -> Result<SlotHandle, SlotError> {
        let growing = self.info.growth != GrowthStrategy::Static;
        if growing && self.chain_flags() != 0 {
            return Err(SlotError::NoFreeSlot);
        }
        let w = self.writer_index()?;
        let claiming = self.writers().claiming(w);
        let ring = self.ring();
        match ring.reserve(active_readers_mask, w, claiming) {
            // SYNC POINT (move): claim, then look for a move (SeqCst both);
            // a claim the mover's read of `write_seq` did not see is
            // discarded here (see `grow`).
            Ok((slot_index, seq)) if growing && self.header().chain.load(Ordering::SeqCst) & layout::CHAIN_MOVING != 0 => {
                let _ = ring.discard(slot_index, seq);
                Err(SlotError::NoFreeSlot)
            }
            Ok((slot_index, seq)) => Ok(SlotHandle { slot_index, seq }),
            // Full: perhaps because of a dead reader (or a dead writer's
            // loan a lap ago). Look, now and then.
            Err(SlotError::NoFreeSlot) if Self::check_due(&self.next_write_check_ms) && self.reap_dead().any() => {
                let (slot_index, seq) = ring.reserve(active_readers_mask, w, claiming)?;
                Ok(SlotHandle { slot_index, seq })
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn discard_slot_local(&self, handle: SlotHandle) -> Result<(), SlotError> {
        self.ring().discard(handle.slot_index, handle.seq)
    }

    #[inline(always)]
    pub(super) fn slot_data_ptr_local(&self, handle: SlotHandle) -> Result<(*mut u8, usize), SlotError> {
        self.ring().check_loan(handle.slot_index, handle.seq)?;
        Ok((self.payload(handle.slot_index), self.info.capacity as usize))
    }

    #[inline(always)]
    pub(super) fn commit_in_place_local(&self, handle: SlotHandle, len: usize) -> Result<u64, SlotError> {
        let seq = self.ring().commit(handle.slot_index, handle.seq, len)?;
        self.writers().count_commit(self.writer.load(Ordering::Relaxed) as u8);
        Ok(seq)
    }

    #[inline(always)]
    pub(super) fn slot_read_ptr_local(&self, handle: SlotHandle) -> Result<(*const u8, usize), SlotError> {
        let len = self.ring().held_len(handle.slot_index, handle.seq)?;
        Ok((self.payload(handle.slot_index).cast_const(), len as usize))
    }

    #[inline(always)]
    pub(super) fn reserve_loan_local(&self, active_readers_mask: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        // The slot was stamped LOANED for us just now: no re-check needed.
        let h = self.reserve_slot_local(active_readers_mask)?;
        Ok((h, self.payload(h.slot_index), self.info.capacity as usize))
    }

    #[inline(always)]
    pub(super) fn next_unread_read_local(&self, reader_index: u8) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> {
        // `next_unread` bounded the length by the capacity (as `held_len`).
        if let Some(h) = self.ring().next_unread(reader_index)? {
            return Ok(Some((SlotHandle { slot_index: h.index, seq: h.seq }, self.payload(h.index).cast_const(), h.len as usize)));
        }
        match self.empty_poll(reader_index)? {
            Some(h) => self.slot_read_ptr_local(h).map(|(ptr, len)| Some((h, ptr, len))),
            None => Ok(None),
        }
    }

    #[inline(always)]
    pub(super) fn next_unread_slot_local(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        if let Some(h) = self.ring().next_unread(reader_index)? {
            return Ok(Some(SlotHandle { slot_index: h.index, seq: h.seq }));
        }
        self.empty_poll(reader_index)
    }

    pub(super) fn read_slot_local(&self, handle: SlotHandle) -> Result<(SlotHeader, Vec<u8>), SlotError> {
        let (ptr, len) = self.slot_read_ptr_local(handle)?;
        // SAFETY: `slot_read_ptr` bounded `len` by the capacity; the caller
        // holds the slot, so it is not reused while we copy.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
        let pending = self.ring().pending_of(handle.slot_index, handle.seq);
        Ok((SlotHeader { sequence_number: handle.seq, sample_size: len as u32, pending_readers: pending }, bytes))
    }

    #[inline(always)]
    pub(super) fn mark_read_local(&self, handle: SlotHandle, reader_index: u8) -> Result<(), SlotError> {
        self.ring().release(reader_index, handle.slot_index, handle.seq)
    }

    pub(super) fn mark_reader_disconnected_local(&self, reader_index: u8) -> Result<(), SlotError> {
        // Not while an `unkeep` of ours drops a pin (see `RingView::unkeep`).
        let _g = self.lock_table.lock();
        let ring = self.ring();
        ring.disconnect(reader_index)?;
        ring.wake_readers();
        Ok(())
    }

    pub(super) fn register_reader_local(&self) -> Result<u8, SlotError> {
        let ring = self.ring();
        let _g = self.lock_table.lock();
        let mine = self.my_readers.load(Ordering::Relaxed);
        let mut lock = |r: u8, take: bool| {
            let byte = lock::READER_BASE + u64::from(r);
            if mine & (1 << r) != 0 {
                // Our own lock (an entry we hold that someone else freed):
                // taking it again would succeed on our own descriptor.
                false
            } else if take {
                self.take_byte(byte)
            } else {
                self.drop_byte(byte);
                true
            }
        };
        let r = match ring.register_with(std::process::id(), &mut lock) {
            Err(SlotError::ReadersFull { .. }) if self.reap_dead_locked().readers > 0 => ring.register_with(std::process::id(), &mut lock)?,
            other => other?,
        };
        self.my_readers.fetch_or(1 << r, Ordering::Relaxed);
        Ok(r)
    }

    pub(crate) fn unregister_local(&self, reader_index: u8) -> Result<(), SlotError> {
        let _g = self.lock_table.lock();
        self.ring().unregister(reader_index)?;
        let bit = 1u64.checked_shl(u32::from(reader_index)).unwrap_or(0);
        if self.my_readers.fetch_and(!bit, Ordering::Relaxed) & bit != 0 {
            self.drop_byte(lock::READER_BASE + u64::from(reader_index));
        }
        Ok(())
    }
}
