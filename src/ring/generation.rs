//! One generation of a ring: the mapped object with this handle's locks and
//! entries in it, what leaving it does, and the ring operations on it alone
//! (the `SlotBackend` impl in `backend` picks the generation and follows a
//! growing ring's moves).

use std::fs::File;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::time::Duration;

use memmap2::MmapRaw;

use super::layout;
use super::view::{FloorCell, FutexParker};
use super::{status, GrowthStrategy, NO_WRITER, SegmentInfo};

use crate::backend::{ReaderMask, SlotHandle, SlotHeader};
use crate::error::SlotError;
use crate::protocol::{RingView, WriterEntry};
use crate::segment::leave::leave_segment;
use crate::segment::reclaim::chain_held;
use crate::segment::liveness as lock;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// One generation of a ring, mapped: the object, this handle's locks and
/// entries in it, and the protocol's view of it. A static ring is one
/// generation; a growing ring's handle follows a chain of them (`next`,
/// see `grow`).
pub(crate) struct Generation {
    /// The protocol's view of the mapping, built once (the hot calls use it
    /// through one pointer instead of assembling a view per call). Its
    /// references point into `map` and `cursor_floor`, which this handle owns
    /// and which never move; [`ring`](Self::ring) hands them out only for the
    /// lifetime of `&self`. First field, so it is dropped before them.
    pub(super) view: RingView<'static, FutexParker>,
    pub(super) map: MmapRaw,
    /// The object, mapped; liveness tests go through this descriptor.
    pub(super) file: File,
    /// A second open of the object that holds this handle's locks.
    pub(super) locks: File,
    pub(super) writers: NonNull<WriterEntry>,
    pub(super) slots: NonNull<u8>,
    pub(super) info: SegmentInfo,
    pub(super) flink_path: PathBuf,
    pub(super) segment_name: String,
    pub(super) owner: bool,
    /// Created with `remove_on_drop(false)`: the creator leaves like any
    /// attached handle (the last one out removes the segment).
    pub(super) shared: bool,
    pub(super) spin: Duration,
    /// This handle's writer entry, `NO_WRITER` until its first reservation.
    pub(super) writer: AtomicU32,
    /// Serialises this handle's lock-table changes (claiming a writer entry,
    /// registering and unregistering readers): its threads share one open
    /// file description, on which one thread's unlock would drop another's
    /// lock of the same byte.
    pub(super) lock_table: parking_lot::Mutex<()>,
    /// Reader entries this handle registered (it holds their locks).
    pub(super) my_readers: AtomicU64,
    /// `coarse_ms` before which no liveness check of a reader runs.
    pub(super) next_read_check_ms: AtomicU64,
    /// `coarse_ms` before which no liveness check of a writer runs.
    pub(super) next_write_check_ms: AtomicU64,
    /// Empty polls since the last look at the clock.
    pub(super) idle_polls: AtomicU32,
    /// Owns the word `view.cursor_floor` points at (see
    /// `RingView::cursor_floor`); only its drop uses it.
    pub(super) _cursor_floor: FloorCell,
    /// The process that opened this handle: a copy in a `fork`ed child only
    /// unmaps on drop (its locks and entries are the parent's).
    pub(super) pid: u32,
    /// This generation's object id (the random part of its name).
    pub(super) id: u64,
    /// A growing ring's next generation, once this one moved and this
    /// handle followed (see `grow`); a full handle of its own.
    pub(super) next: std::sync::OnceLock<Box<Generation>>,
    /// Serialises mapping the next generation.
    pub(super) grow_lock: parking_lot::Mutex<()>,
    /// This handle holds the creator's lock of this generation (the
    /// creator's, and the generations it followed into).
    pub(super) holds_creator: bool,
}

// SAFETY: the pointers point into `map` or the floor cell, which live as
// long as `self`; all shared state behind them is atomics, accessed through
// the protocol.
unsafe impl Send for Generation {}
// SAFETY: as above; `&self` methods only touch atomics and loan-owned bytes.
unsafe impl Sync for Generation {}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixSlotAllocator")
            .field("flink_path", &self.flink_path)
            .field("segment", &self.segment_name)
            .field("info", &self.info)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A `fork`ed copy: the entries, locks and segment are the
            // parent's. Only unmap.
            return;
        }
        let ring = self.ring();
        let w = self.writer.load(Ordering::Relaxed);
        if w != NO_WRITER {
            // Loans a caller never committed nor discarded must not block
            // readers: skip them, then free the entry, then its lock.
            let _ = ring.skip_loans_of(w as u8, None, &|_| false);
            self.writers().free(w as u8);
        }
        let mut mine = self.my_readers.load(Ordering::Relaxed);
        while mine != 0 {
            let r = mine.trailing_zeros() as u8;
            mine &= mine - 1;
            let _ = ring.unregister(r);
        }
        // A static ring's drop reads nothing more from the mapping (a hostile
        // process may have truncated the object under it: any read would
        // fault).
        let growing = self.info.growth != GrowthStrategy::Static;
        if self.owner {
            // The owner (only ever the handle the caller holds, never one of
            // its later generations) removes the whole ring: every generation.
            let names = if growing { self.chain_names() } else { vec![self.segment_name.clone()] };
            leave_segment(&self.flink_path, &names, &self.locks, true);
        } else if growing && self.chain_flags() & layout::CHAIN_MOVED != 0 {
            // An old generation of a growing ring: it goes when its last
            // reader has moved on, whoever is attached.
            self.release_if_unread();
        } else if !chain_held(self.info.predecessor, status::predecessor_of) {
            // (A reader still in an older generation is a participant too:
            // it arrives here later, and the last one out removes it.)
            leave_segment(&self.flink_path, std::slice::from_ref(&self.segment_name), &self.locks, false);
        }
        // Closing `locks` drops every lock this handle held.
    }
}

impl Generation {
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
            // Full, and moved meanwhile: never reserve here again (a sample
            // past `moved_at` would never be read).
            Err(SlotError::NoFreeSlot) if growing && self.chain_flags() != 0 => Err(SlotError::NoFreeSlot),
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
