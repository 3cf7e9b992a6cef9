//! The reading side of the protocol: the next sample in order
//! (`next_unread`), its bounded length, releasing it, and where a reader is.

use super::shared::SlotMeta;
use super::stamp::{PINS_MASK, LOANED, COMMITTED, SKIPPED, PIN_HELD, stamp_state, stamp_pins, seq_diff, dist};
use super::{Held, Parker, RingView};

use crate::backend::{OverflowPolicy, ReaderMask, ReaderStats};
use crate::error::SlotError;
use crate::sync::Ordering;

impl<P: Parker> RingView<'_, P> {
    /// The sample reader `r` should consume next, in sequence order.
    #[inline(always)]
    pub fn next_unread(&self, r: u8) -> Result<Option<Held>, SlotError> {
        let e = self.reader(r)?;
        // A disconnected reader (its bit out of `registered`) is addressed by
        // nothing: writers no longer wait for it, so it must not read.
        let bit = (1u64 << r) & self.ctrl.registered.0.load(Ordering::Relaxed);
        let n = u64::from(self.geo.slot_count);
        let drop_oldest = self.geo.policy == OverflowPolicy::DropOldest;
        let mut c = e.cursor.load(Ordering::Relaxed);
        if drop_oldest && e.pinned.load(Ordering::Relaxed) == (c << 2) | PIN_HELD {
            // Pinned by an earlier call for this very sequence: still ours.
            let (index, slot) = self.slot_of(c);
            return Ok(Some(Held { index, seq: c, len: self.bounded_len(slot)? }));
        }
        let start = c;
        let mut lost = 0u64;
        let mut result = None;
        // Bounded: each round moves the cursor forward or returns.
        for _ in 0..(2 * n + 64) {
            let (index, slot) = self.slot_of(c);
            let st = slot.stamp.load(Ordering::Acquire);
            let d = seq_diff(st, c);
            if d < 0 {
                break; // not reserved yet
            }
            if d > 0 {
                // The slot moved on: `c` was skipped, not addressed to us, or
                // (DropOldest) overwritten before we got to it.
                let oldest = self.ctrl.write_seq.0.load(Ordering::SeqCst).wrapping_sub(n);
                let next = if dist(oldest, c) > 0 { oldest } else { c.wrapping_add(1) };
                if drop_oldest {
                    lost = lost.wrapping_add(next.wrapping_sub(c));
                }
                c = next;
                continue;
            }
            match stamp_state(st) {
                LOANED => break, // in-order: wait for this writer
                COMMITTED => {}
                _ => {
                    c = c.wrapping_add(1);
                    continue;
                }
            }
            if drop_oldest {
                if !self.pin(&e.pinned, slot, st, c)? {
                    continue; // changed under us: look again
                }
                if slot.pending.load(Ordering::Acquire) & bit == 0 {
                    self.drop_pin(&e.pinned, (c << 2) | PIN_HELD);
                    c = c.wrapping_add(1);
                    continue;
                }
            } else {
                let pending = slot.pending.load(Ordering::Acquire);
                // The slot may have been reused for `c + N` (fresh bits) since
                // `st` was read, if `c` was not addressed to us: re-check
                // (another reader's pin changes only the pin bits).
                if (slot.stamp.load(Ordering::Acquire) ^ st) & !PINS_MASK != 0 {
                    continue;
                }
                if pending & bit == 0 {
                    c = c.wrapping_add(1);
                    continue;
                }
            }
            result = Some(Held { index, seq: c, len: self.bounded_len(slot)? });
            break;
        }
        if c != start {
            e.cursor.store(c, Ordering::Relaxed);
        }
        if lost != 0 {
            e.lost.fetch_add(lost, Ordering::Relaxed);
        }
        Ok(result)
    }

    /// The payload length of `slot`, bounded by the capacity.
    #[inline(always)]
    pub(super) fn bounded_len(&self, slot: &SlotMeta) -> Result<u32, SlotError> {
        let len = slot.len.load(Ordering::Relaxed);
        if len > self.geo.capacity {
            return Err(SlotError::Corrupt { what: "sample length", value: u64::from(len), limit: u64::from(self.geo.capacity) });
        }
        Ok(len)
    }

    /// Length of a sample the caller holds (re-checked against the stamp).
    #[inline(always)]
    pub fn held_len(&self, index: u32, seq: u64) -> Result<u32, SlotError> {
        let (i, slot) = self.slot_of(seq);
        if i != index || index >= self.geo.slot_count {
            return Err(SlotError::OutOfBounds { index, count: self.geo.slot_count });
        }
        let st = slot.stamp.load(Ordering::Acquire);
        if seq_diff(st, seq) != 0 || stamp_state(st) != COMMITTED {
            return Err(SlotError::Corrupt { what: "held slot's sequence moved by", value: seq_diff(st, seq).unsigned_abs(), limit: 0 });
        }
        self.bounded_len(slot)
    }

    /// Readers that `seq` is addressed to and that have not released it.
    pub fn pending_of(&self, index: u32, seq: u64) -> ReaderMask {
        if index >= self.geo.slot_count {
            return 0;
        }
        let mut pending = self.slots.get(index).pending.load(Ordering::Acquire) & self.ctrl.registered.0.load(Ordering::SeqCst);
        let mut bits = pending;
        while bits != 0 {
            let r = bits.trailing_zeros();
            bits &= bits - 1;
            match self.readers.get(r as usize) {
                Some(e) if dist(e.cursor.load(Ordering::Acquire), seq) <= 0 => {}
                _ => pending &= !(1 << r),
            }
        }
        pending
    }

    /// Releases the sample reader `r` holds and advances its cursor.
    #[inline(always)]
    pub fn release(&self, r: u8, index: u32, seq: u64) -> Result<(), SlotError> {
        let e = self.reader(r)?;
        let c = e.cursor.load(Ordering::Relaxed);
        let (i, slot) = self.slot_of(seq);
        if c != seq || i != index {
            return Err(SlotError::NotHeld { reader: r, seq, expected: c });
        }
        let st = slot.stamp.load(Ordering::Relaxed);
        if seq_diff(st, seq) != 0 || stamp_state(st) != COMMITTED {
            return Err(SlotError::NotHeld { reader: r, seq, expected: c });
        }
        if self.geo.policy == OverflowPolicy::DropOldest {
            self.drop_pin(&e.pinned, (seq << 2) | PIN_HELD);
        }
        // SYNC POINT (release): a writer that sees the cursor past `seq` may
        // reuse the slot (`released_by_all`), so our payload reads precede
        // this Release store. (DropOldest: the unpin above guards the slot.)
        e.cursor.store(seq.wrapping_add(1), Ordering::Release);
        e.received.store(e.received.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        self.notify_space();
        Ok(())
    }

    /// Drops one pin from the slot of `seq`, whatever sequence its stamp
    /// shows by now (writers skip pinned slots, keeping their pins).
    pub(super) fn unpin(&self, seq: u64) {
        let (_, slot) = self.slot_of(seq);
        let mut st = slot.stamp.load(Ordering::Relaxed);
        // A pinned slot is never loaned (a loan's pin bits name its writer).
        // Bounded: other readers' pins move the word a few times at most; a
        // word that keeps changing is being scribbled on.
        for _ in 0..1024 {
            if stamp_state(st) == LOANED || stamp_pins(st) == 0 {
                return;
            }
            match slot.stamp.compare_exchange_weak(st, st - 1, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => st = now,
            }
        }
    }

    /// Growing rings: whether reader `r` has read everything of this
    /// generation below `end` (its `moved_at`) and nothing more can come.
    pub fn drained_to(&self, r: u8, end: u64) -> bool {
        let Ok(e) = self.reader(r) else { return false };
        let c = e.cursor.load(Ordering::Acquire);
        if dist(c, end) < 0 {
            return false;
        }
        // Past `end` only skipped and discarded sequences follow, but a
        // `DropOldest` writer may have claimed `end` itself just before the
        // move was announced (its claim is the stamp's CAS, unordered with
        // the mover's read of `write_seq`): wait while the sequence at the
        // cursor is loaned or committed.
        let (_, slot) = self.slot_of(c);
        let st = slot.stamp.load(Ordering::Acquire);
        !(seq_diff(st, c) == 0 && stamp_state(st) != SKIPPED)
    }

    /// The sequence reader `r` waits at, when it waits on a loan or a claim
    /// that is not stamped yet (its writer may have died); `None` when the
    /// reader is caught up with `write_seq` or has a sample.
    pub fn stalled_at(&self, r: u8) -> Option<u64> {
        let e = self.reader(r).ok()?;
        let c = e.cursor.load(Ordering::Relaxed);
        if dist(self.ctrl.write_seq.0.load(Ordering::SeqCst), c) <= 0 {
            return None;
        }
        let (_, slot) = self.slot_of(c);
        let st = slot.stamp.load(Ordering::Acquire);
        let d = seq_diff(st, c);
        (d < 0 || (d == 0 && stamp_state(st) == LOANED)).then_some(c)
    }

    /// Counters of reader `r`.
    pub fn stats(&self, r: u8) -> Result<ReaderStats, SlotError> {
        let e = self.reader(r)?;
        Ok(ReaderStats {
            next_seq: e.cursor.load(Ordering::Relaxed),
            received: e.received.load(Ordering::Relaxed),
            lost: e.lost.load(Ordering::Relaxed),
        })
    }
}
