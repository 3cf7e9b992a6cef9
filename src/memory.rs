//! [`InMemorySlotAllocator`]: one process, a `parking_lot` mutex around plain
//! state. Deliberately simple — it is the oracle the lock-free POSIX backend
//! is checked against (conformance suite, differential property test).

use std::cell::UnsafeCell;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::backend::{OverflowPolicy, ReaderMask, ReaderStats, SlotBackend, SlotHandle, SlotHeader, DEFAULT_SPIN};
use crate::error::SlotError;

/// 32 aligned payload bytes.
#[repr(C, align(32))]
struct Chunk([UnsafeCell<u8>; 32]);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Loaned,
    Committed,
    Skipped,
}

#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    state: State,
    pins: u32,
    pending: ReaderMask,
    len: u32,
}

#[derive(Clone, Copy, Default)]
struct Reader {
    active: bool,
    cursor: u64,
    pinned: Option<u64>,
    received: u64,
    lost: u64,
}

struct Inner {
    write_seq: u64,
    registered: ReaderMask,
    slots: Vec<Slot>,
    readers: [Reader; 64],
    epoch: u64,
    space_epoch: u64,
}

/// A slot ring on the heap of one process.
pub struct InMemorySlotAllocator {
    inner: Mutex<Inner>,
    data_cv: Condvar,
    space_cv: Condvar,
    /// Payload bytes, `capacity` per slot. Access is governed by slot state:
    /// the loan owner writes a `Loaned` slot, holders read a `Committed` one.
    data: Box<[Chunk]>,
    /// Bytes from one slot's payload to the next: the capacity rounded up to
    /// 32, so every payload is 32-byte aligned as in the POSIX backend.
    stride: usize,
    capacity: usize,
    policy: OverflowPolicy,
    max_readers: u32,
    type_hash: Option<[u8; 16]>,
    spin: Duration,
}

impl std::fmt::Debug for InMemorySlotAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemorySlotAllocator")
            .field("slot_count", &self.data.len())
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("max_readers", &self.max_readers)
            .finish_non_exhaustive()
    }
}

// SAFETY: `data` is only reached through pointers handed out for slots whose
// state (under the mutex) gives the caller exclusive write access (a loan) or
// shared read access (a held sample that cannot be reused); everything else is
// behind the mutex.
unsafe impl Sync for InMemorySlotAllocator {}
// SAFETY: all fields are Send; `UnsafeCell<u8>` is Send.
unsafe impl Send for InMemorySlotAllocator {}

impl InMemorySlotAllocator {
    /// A `KeepAll` ring of `slot_count` slots (rounded up to a power of two)
    /// of `slot_capacity` bytes.
    pub fn new(slot_count: usize, slot_capacity: usize) -> Self {
        Self::with_policy(slot_count, slot_capacity, OverflowPolicy::KeepAll)
    }

    /// As [`new`](Self::new) with an overflow policy.
    pub fn with_policy(slot_count: usize, slot_capacity: usize, policy: OverflowPolicy) -> Self {
        Self::with_start_seq(slot_count, slot_capacity, policy, 0)
    }

    /// As [`with_policy`](Self::with_policy), numbering samples from `start`
    /// (for tests of wrap-around).
    pub fn with_start_seq(slot_count: usize, slot_capacity: usize, policy: OverflowPolicy, start: u64) -> Self {
        let n = slot_count.max(1).next_power_of_two();
        let slots = (0..n as u64)
            .map(|k| {
                let seq = start.wrapping_add(k);
                (seq, Slot { seq: seq.wrapping_sub(n as u64), state: State::Skipped, pins: 0, pending: 0, len: 0 })
            })
            .fold(vec![None; n], |mut v, (seq, slot)| {
                v[(seq & (n as u64 - 1)) as usize] = Some(slot);
                v
            })
            .into_iter()
            .map(|s| s.expect("every slot initialised"))
            .collect();
        Self {
            inner: Mutex::new(Inner { write_seq: start, registered: 0, slots, readers: [Reader::default(); 64], epoch: 0, space_epoch: 0 }),
            data_cv: Condvar::new(),
            space_cv: Condvar::new(),
            data: (0..n * slot_capacity.div_ceil(32)).map(|_| Chunk([const { UnsafeCell::new(0) }; 32])).collect(),
            stride: slot_capacity.div_ceil(32) * 32,
            capacity: slot_capacity,
            policy,
            max_readers: 64,
            type_hash: None,
            spin: DEFAULT_SPIN,
        }
    }

    /// Tags the ring with a type hash (for typed endpoints).
    #[must_use]
    pub fn with_type_hash(mut self, hash: [u8; 16]) -> Self {
        self.type_hash = Some(hash);
        self
    }

    /// Limits the number of readers (at most 64).
    #[must_use]
    pub fn with_max_readers(mut self, max: u32) -> Self {
        self.max_readers = max.clamp(1, 64);
        self
    }

    fn mask(&self, inner: &Inner) -> u64 {
        inner.slots.len() as u64 - 1
    }

    fn loan<'a>(&self, inner: &'a mut Inner, h: SlotHandle) -> Result<&'a mut Slot, SlotError> {
        let i = (h.seq & self.mask(inner)) as usize;
        let slot = &mut inner.slots[i];
        if i as u32 != h.slot_index || slot.seq != h.seq || slot.state != State::Loaned {
            return Err(SlotError::NotLoaned { index: h.slot_index, seq: h.seq });
        }
        Ok(slot)
    }

    fn data_ptr(&self, index: u32) -> *mut u8 {
        let base = self.data.as_ptr().cast::<u8>().cast_mut();
        // SAFETY: `index < slot_count` (handles are checked before this is
        // called), so the offset stays inside the `slot_count * stride`
        // bytes of `data`.
        unsafe { base.add(index as usize * self.stride) }
    }

    fn reader(inner: &mut Inner, r: u8) -> Result<&mut Reader, SlotError> {
        match inner.readers.get_mut(usize::from(r)) {
            Some(rd) if rd.active => Ok(rd),
            _ => Err(SlotError::ReaderNotRegistered(r)),
        }
    }

    fn held(&self, inner: &Inner, h: SlotHandle) -> Result<Slot, SlotError> {
        let count = inner.slots.len() as u32;
        if h.slot_index >= count || u64::from(h.slot_index) != h.seq & self.mask(inner) {
            return Err(SlotError::OutOfBounds { index: h.slot_index, count });
        }
        let slot = inner.slots[h.slot_index as usize];
        if slot.seq != h.seq || slot.state != State::Committed {
            return Err(SlotError::Corrupt { what: "held slot's sequence moved by", value: slot.seq.wrapping_sub(h.seq), limit: 0 });
        }
        Ok(slot)
    }
}

impl SlotBackend for InMemorySlotAllocator {
    fn reserve_slot(&self, active_readers_mask: ReaderMask) -> Result<SlotHandle, SlotError> {
        let mut g = self.inner.lock();
        let s = g.write_seq;
        let i = (s & self.mask(&g)) as usize;
        let registered = g.registered;
        let slot = &mut g.slots[i];
        if slot.state == State::Loaned || slot.pins != 0 || (self.policy == OverflowPolicy::KeepAll && slot.pending != 0) {
            return Err(SlotError::NoFreeSlot);
        }
        *slot = Slot { seq: s, state: State::Loaned, pins: 0, pending: registered & active_readers_mask, len: 0 };
        g.write_seq = s.wrapping_add(1);
        Ok(SlotHandle { slot_index: i as u32, seq: s })
    }

    fn discard_slot(&self, handle: SlotHandle) -> Result<(), SlotError> {
        let mut g = self.inner.lock();
        let slot = self.loan(&mut g, handle)?;
        slot.state = State::Skipped;
        slot.pending = 0;
        g.epoch += 1;
        self.data_cv.notify_all();
        g.space_epoch += 1;
        self.space_cv.notify_all();
        Ok(())
    }

    fn slot_data_ptr(&self, handle: SlotHandle) -> Result<(*mut u8, usize), SlotError> {
        let mut g = self.inner.lock();
        self.loan(&mut g, handle)?;
        Ok((self.data_ptr(handle.slot_index), self.capacity))
    }

    fn commit_in_place(&self, handle: SlotHandle, len: usize) -> Result<u64, SlotError> {
        let mut g = self.inner.lock();
        let cap = self.capacity;
        let slot = self.loan(&mut g, handle)?;
        if len > cap {
            return Err(SlotError::SampleTooLarge { sample: len, slot_capacity: cap });
        }
        slot.len = len as u32;
        slot.state = State::Committed;
        g.epoch += 1;
        self.data_cv.notify_all();
        Ok(handle.seq)
    }

    fn slot_read_ptr(&self, handle: SlotHandle) -> Result<(*const u8, usize), SlotError> {
        let g = self.inner.lock();
        let slot = self.held(&g, handle)?;
        Ok((self.data_ptr(handle.slot_index).cast_const(), slot.len as usize))
    }

    fn next_unread_slot(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        let mut g = self.inner.lock();
        let n = g.slots.len() as u64;
        let mask = n - 1;
        let write_seq = g.write_seq;
        let drop_oldest = self.policy == OverflowPolicy::DropOldest;
        let Inner { slots, readers, .. } = &mut *g;
        let rd = match readers.get_mut(usize::from(reader_index)) {
            Some(rd) if rd.active => rd,
            _ => return Err(SlotError::ReaderNotRegistered(reader_index)),
        };
        let bit = 1u64 << reader_index;
        loop {
            let c = rd.cursor;
            let i = (c & mask) as usize;
            let slot = &mut slots[i];
            let d = slot.seq.wrapping_sub(c) as i64;
            if d < 0 {
                return Ok(None);
            }
            if d > 0 {
                let oldest = write_seq.wrapping_sub(n);
                let next = if (oldest.wrapping_sub(c) as i64) > 0 { oldest } else { c.wrapping_add(1) };
                if drop_oldest {
                    rd.lost += next.wrapping_sub(c);
                }
                rd.cursor = next;
                continue;
            }
            match slot.state {
                State::Loaned => return Ok(None),
                State::Skipped => {
                    rd.cursor = c.wrapping_add(1);
                    continue;
                }
                State::Committed => {}
            }
            if slot.pending & bit == 0 {
                rd.cursor = c.wrapping_add(1);
                continue;
            }
            if drop_oldest && rd.pinned != Some(c) {
                slot.pins += 1;
                rd.pinned = Some(c);
            }
            return Ok(Some(SlotHandle { slot_index: i as u32, seq: c }));
        }
    }

    fn read_slot(&self, handle: SlotHandle) -> Result<(SlotHeader, Vec<u8>), SlotError> {
        let (ptr, len) = self.slot_read_ptr(handle)?;
        let pending = self.inner.lock().slots[handle.slot_index as usize].pending;
        // SAFETY: `slot_read_ptr` checked the slot is committed with this
        // sequence; the caller holds it, so it is not reused while we copy.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
        Ok((SlotHeader { sequence_number: handle.seq, sample_size: len as u32, pending_readers: pending }, bytes))
    }

    fn mark_read(&self, handle: SlotHandle, reader_index: u8) -> Result<(), SlotError> {
        let mut g = self.inner.lock();
        let mask = self.mask(&g);
        let Inner { slots, readers, .. } = &mut *g;
        let rd = match readers.get_mut(usize::from(reader_index)) {
            Some(rd) if rd.active => rd,
            _ => return Err(SlotError::ReaderNotRegistered(reader_index)),
        };
        let slot = &mut slots[(handle.seq & mask) as usize];
        if rd.cursor != handle.seq
            || u64::from(handle.slot_index) != handle.seq & mask
            || slot.seq != handle.seq
            || slot.state != State::Committed
        {
            return Err(SlotError::NotHeld { reader: reader_index, seq: handle.seq, expected: rd.cursor });
        }
        slot.pending &= !(1u64 << reader_index);
        if rd.pinned == Some(handle.seq) {
            rd.pinned = None;
            slot.pins -= 1;
        }
        rd.cursor = handle.seq.wrapping_add(1);
        rd.received += 1;
        g.space_epoch += 1;
        self.space_cv.notify_all();
        Ok(())
    }

    fn mark_reader_disconnected(&self, reader_index: u8) -> Result<(), SlotError> {
        if u32::from(reader_index) >= self.max_readers {
            return Err(SlotError::ReaderNotRegistered(reader_index));
        }
        let mut g = self.inner.lock();
        let bit = 1u64 << reader_index;
        g.registered &= !bit;
        let mask = self.mask(&g);
        let Inner { slots, readers, .. } = &mut *g;
        for s in slots.iter_mut() {
            s.pending &= !bit;
        }
        if let Some(seq) = readers[usize::from(reader_index)].pinned.take() {
            let s = &mut slots[(seq & mask) as usize];
            if s.seq == seq && s.pins > 0 {
                s.pins -= 1;
            }
        }
        g.epoch += 1;
        self.data_cv.notify_all();
        g.space_epoch += 1;
        self.space_cv.notify_all();
        Ok(())
    }

    fn register_reader(&self) -> Result<u8, SlotError> {
        let mut g = self.inner.lock();
        let start = g.write_seq;
        let max = self.max_readers as usize;
        let r = g.readers[..max].iter().position(|r| !r.active).ok_or(SlotError::ReadersFull { max: self.max_readers })?;
        g.readers[r] = Reader { active: true, cursor: start, pinned: None, received: 0, lost: 0 };
        g.registered |= 1 << r;
        Ok(r as u8)
    }

    fn unregister_reader(&self, reader_index: u8) -> Result<(), SlotError> {
        Self::reader(&mut self.inner.lock(), reader_index)?;
        self.mark_reader_disconnected(reader_index)?;
        self.inner.lock().readers[usize::from(reader_index)].active = false;
        Ok(())
    }

    fn reader_stats(&self, reader_index: u8) -> Result<ReaderStats, SlotError> {
        let mut g = self.inner.lock();
        let rd = Self::reader(&mut g, reader_index)?;
        Ok(ReaderStats { next_seq: rd.cursor, received: rd.received, lost: rd.lost })
    }

    fn slot_count(&self) -> usize {
        self.inner.lock().slots.len()
    }
    fn slot_capacity(&self) -> usize {
        self.capacity
    }
    fn slot_total_size(&self) -> usize {
        self.capacity
    }
    fn overflow_policy(&self) -> OverflowPolicy {
        self.policy
    }
    fn type_hash(&self) -> Option<[u8; 16]> {
        self.type_hash
    }
    fn spin_budget(&self) -> Duration {
        self.spin
    }

    fn notify_generation(&self) -> u64 {
        self.inner.lock().epoch
    }

    fn wait_for_change(&self, last: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut g = self.inner.lock();
        while g.epoch == last {
            if self.data_cv.wait_until(&mut g, deadline).timed_out() {
                return;
            }
        }
    }

    fn wait_for_space(&self, timeout: Duration, still_full: &mut dyn FnMut() -> bool) {
        // `still_full` takes the lock itself, so check it unlocked, then wait
        // for a release notification; the lock orders the two.
        let deadline = Instant::now() + timeout;
        let seen = self.inner.lock().space_epoch;
        if !still_full() {
            return;
        }
        let mut g = self.inner.lock();
        while g.space_epoch == seen {
            if self.space_cv.wait_until(&mut g, deadline).timed_out() {
                return;
            }
        }
    }
}
