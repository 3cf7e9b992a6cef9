//! The writing side of the protocol: claiming a sequence (`reserve`),
//! committing or discarding it, and skipping what a dead writer left.

use super::shared::SlotMeta;
use super::stamp::{LOANED, COMMITTED, SKIPPED, stamp, stamp_loaned, restamp, stamp_state, stamp_pins, seq_diff, dist};
use super::{Parker, RingView};

use crate::backend::{OverflowPolicy, ReaderMask};
use crate::error::SlotError;
use crate::sync::{AtomicU64, Ordering};

impl<P: Parker> RingView<'_, P> {
    /// Reserves the next sequence number for writer entry `owner` (its index
    /// goes into the `LOANED` stamp). `claiming`, the writer entry's word, is
    /// set to each `KeepAll` sequence before the claim, so a reaper can undo
    /// a claim whose writer died before stamping the slot. Returns
    /// `(slot index, seq)`.
    #[inline(always)]
    pub fn reserve(&self, readers_mask: ReaderMask, owner: u8, claiming: Option<&AtomicU64>) -> Result<(u32, u64), SlotError> {
        let n = i64::from(self.geo.slot_count);
        let keep_all = self.geo.policy == OverflowPolicy::KeepAll;
        // Pinned slots skipped so far: at most one lap's worth per call.
        let mut skipped = 0u32;
        // Bounded: each failed round means another writer made progress (or
        // the segment is being scribbled on).
        for _ in 0..(1u32 << 16) {
            let s = self.ctrl.write_seq.0.load(Ordering::SeqCst);
            let (index, slot) = self.slot_of(s);
            let st = slot.stamp.load(Ordering::Acquire);
            let d = seq_diff(st, s);
            if d == 0 {
                // Another writer reserved `s`. (DropOldest) help it publish
                // `write_seq`; (KeepAll) it already did: our `s` is stale.
                if !keep_all {
                    let _ = self.ctrl.write_seq.0.compare_exchange(s, s.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed);
                }
                continue;
            }
            if d > 0 {
                continue; // our `write_seq` was stale
            }
            if keep_all && d == -2 * n {
                // The previous lap's sequence `s - N` is claimed on
                // `write_seq` but its claimer has not stamped the slot yet
                // (preempted, or dead: a reaper voids the claim). Full for
                // now. (Found by `loom_dead_writer_unstamped_claim_is_voided`.)
                return Err(SlotError::NoFreeSlot);
            }
            if d != -n {
                return Err(SlotError::Corrupt { what: "slot stamp behind write_seq by", value: d.unsigned_abs(), limit: n as u64 });
            }
            // The slot holds `s - N`. Reusable when it is finished and
            // (KeepAll) released by every addressed reader; if it is still
            // held in place (pinned), `s` is claimed and skipped instead.
            if stamp_state(st) == LOANED {
                return Err(SlotError::NoFreeSlot);
            }
            if keep_all && !self.released_by_all(slot, s.wrapping_sub(n as u64)) {
                return Err(SlotError::NoFreeSlot);
            }
            if stamp_pins(st) != 0 && (!keep_all || skipped >= self.geo.slot_count) {
                // DropOldest: a reader reads it in place (see `keep`);
                // KeepAll: (nearly) everything is kept.
                return Err(SlotError::NoFreeSlot);
            }
            // SYNC POINT (registration): the mask is read before the CAS that
            // reserves `s`; `register` reads `write_seq` before it sets its
            // bit, so a reader is only addressed from its first cursor on.
            let wanted = self.ctrl.registered.0.load(Ordering::SeqCst) & readers_mask;
            if keep_all {
                // The claim is the CAS on `write_seq`, a line only writers
                // touch. The slot stays ours after it: a released KeepAll
                // slot changes only by the stamp of `s`, which we now own (a
                // reaper voids only claims no live writer may own, see
                // `skip_loans_of`).
                if let Some(c) = claiming {
                    // SYNC POINT (claim): before the CAS, so a reaper that
                    // sees `write_seq` past `s` sees this (or, Release, a
                    // later claim of ours and with it our stamp of `s`).
                    c.store(s, Ordering::Release);
                }
                if self.ctrl.write_seq.0.compare_exchange(s, s.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed).is_err() {
                    if let Some(c) = claiming {
                        // Lost: stop recording a claim another writer won
                        // (else a reaper would leave that claim alone).
                        c.store(s.wrapping_sub(1 << 62), Ordering::Release);
                    }
                    continue;
                }
                // SYNC POINT (keep): a reader pins (stamp CAS) before it
                // moves its cursor past `s - N` (Release), and the release
                // check above saw that cursor (Acquire, perhaps through the
                // floor): this load sees its pin. Nobody pins a released
                // sample, so with no pin now the plain store is safe; pins
                // only ever drop (CAS) until then.
                if !self.stamp_claimed_unless_pinned(slot, s, stamp_loaned(s, owner)) {
                    skipped += 1;
                    self.notify_data(); // readers waiting at `s` move on
                    continue;
                }
            } else {
                // DropOldest: the claim is the CAS on the stamp, so it fails if
                // a reader pinned the slot meanwhile (a pin is a CAS too).
                if slot.stamp.compare_exchange(st, stamp_loaned(s, owner), Ordering::SeqCst, Ordering::Relaxed).is_err() {
                    continue;
                }
                let _ = self.ctrl.write_seq.0.compare_exchange(s, s.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed);
            }
            // The readers this sample is addressed to; immutable until the
            // slot is reserved again. Release, after the LOANED stamp: a
            // reader that sees these bits re-reads the stamp and sees LOANED.
            slot.pending.store(wanted, Ordering::Release);
            return Ok((index, s));
        }
        Err(SlotError::NoFreeSlot)
    }

    /// `KeepAll`, after winning the claim of `s`: stamps `loaned` into the
    /// slot, or, if a reader still keeps the slot's sample in place, stamps
    /// `SKIPPED(s)` with the pins kept and returns false. Pins can only drop
    /// meanwhile (by CAS), so the loop ends.
    pub(super) fn stamp_claimed_unless_pinned(&self, slot: &SlotMeta, s: u64, loaned: u64) -> bool {
        let mut st = slot.stamp.load(Ordering::Acquire);
        loop {
            if stamp_pins(st) == 0 {
                slot.stamp.store(loaned, Ordering::Release);
                return true;
            }
            // Nobody reads `pending` of a skipped sequence; cleared so the
            // next lap's writer need not wait for cursors to pass `s`.
            slot.pending.store(0, Ordering::Relaxed);
            match slot.stamp.compare_exchange(st, stamp(s, SKIPPED) | stamp_pins(st), Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => return false,
                Err(now) => st = now,
            }
        }
    }

    /// `KeepAll`: has every reader the sample `old` in `slot` was addressed
    /// to released it? A reader releases by moving its cursor past the
    /// sample (a Release store on its own cache line; no RMW on the slot), so
    /// the sample is free when every addressed, still registered reader's
    /// cursor is past `old`. Fast path: the process-local `cursor_floor`
    /// already is; slow path (about once a lap): read the cursors again.
    pub(super) fn released_by_all(&self, slot: &SlotMeta, old: u64) -> bool {
        let targets = slot.pending.load(Ordering::Acquire);
        // SYNC POINT (release): the floor was computed from cursors read with
        // Acquire (pairing with the readers' Release cursor stores) and is
        // handed on Release/Acquire, so their payload reads happen-before our
        // reuse of the slot.
        if targets == 0 || dist(self.cursor_floor.load(Ordering::Acquire), old) > 0 {
            return true;
        }
        // SYNC POINT (registration): `write_seq` before the mask. A reader
        // missing from `registered` here read `write_seq` later than we did
        // (or registers later), so its cursor starts at or past `floor`.
        let mut floor = self.ctrl.write_seq.0.load(Ordering::SeqCst);
        let registered = self.ctrl.registered.0.load(Ordering::SeqCst);
        let mut free = true;
        let mut bits = registered;
        while bits != 0 {
            let r = bits.trailing_zeros();
            bits &= bits - 1;
            let Some(e) = self.readers.get(r as usize).filter(|_| r < self.geo.max_readers) else { continue };
            let c = e.cursor.load(Ordering::Acquire);
            if dist(c, floor) < 0 {
                floor = c;
            }
            if targets & (1 << r) != 0 && dist(c, old) <= 0 {
                free = false;
            }
        }
        self.cursor_floor.store(floor, Ordering::Release);
        free
    }

    /// Checks that `(index, seq)` is a loan of this ring.
    #[inline(always)]
    pub fn check_loan(&self, index: u32, seq: u64) -> Result<&SlotMeta, SlotError> {
        let (i, slot) = self.slot_of(seq);
        if i != index {
            return Err(SlotError::NotLoaned { index, seq });
        }
        let st = slot.stamp.load(Ordering::Acquire);
        if seq_diff(st, seq) != 0 || stamp_state(st) != LOANED {
            return Err(SlotError::NotLoaned { index, seq });
        }
        Ok(slot)
    }

    /// Publishes a loan with `len` payload bytes.
    #[inline(always)]
    pub fn commit(&self, index: u32, seq: u64, len: usize) -> Result<u64, SlotError> {
        let slot = self.check_loan(index, seq)?;
        if len > self.geo.capacity as usize {
            return Err(SlotError::SampleTooLarge { sample: len, slot_capacity: self.geo.capacity as usize });
        }
        slot.len.store(len as u32, Ordering::Relaxed);
        // SYNC POINT (publication): payload and len before the state; pairs
        // with the Acquire load in `next_unread`.
        slot.stamp.store(stamp(seq, COMMITTED), Ordering::Release);
        self.notify_data();
        Ok(seq)
    }

    /// Turns a loan into a skipped sequence number.
    pub fn discard(&self, index: u32, seq: u64) -> Result<(), SlotError> {
        let slot = self.check_loan(index, seq)?;
        slot.pending.store(0, Ordering::Relaxed);
        slot.stamp.store(stamp(seq, SKIPPED), Ordering::SeqCst);
        self.notify_data();
        self.notify_space();
        Ok(())
    }

    /// Turns every loan of writer entry `w` into a skipped sequence, and (for
    /// `KeepAll`) voids its claim of `claiming` if it died between claiming
    /// `write_seq` and stamping the slot. Only for a writer that is gone (its
    /// entry reclaimed by the caller, so nobody else does this at once):
    /// such a loan is frozen, so nothing but this changes it. Readers move
    /// past the skipped sequences; a half-written sample is never delivered.
    /// `claimed_by_other(s)`: whether another writer entry in use records
    /// `s` as its claim (read with Acquire). Returns how many sequences were
    /// skipped, and whether an unstamped claim had to be left for later (a
    /// writer in use records it too; the caller keeps the dead entry so a
    /// later reap tries again).
    pub fn skip_loans_of(&self, w: u8, claiming: Option<u64>, claimed_by_other: &dyn Fn(u64) -> bool) -> (u32, bool) {
        let mut skipped = 0;
        let mut deferred = false;
        for i in 0..self.geo.slot_count {
            let slot = self.slots.get(i);
            let st = slot.stamp.load(Ordering::Acquire);
            if stamp_state(st) == LOANED && stamp_pins(st) == u64::from(w) {
                slot.pending.store(0, Ordering::Relaxed);
                if slot.stamp.compare_exchange(st, restamp(st, SKIPPED), Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                    skipped += 1;
                }
            }
        }
        if let Some(s) = claiming.filter(|_| self.geo.policy == OverflowPolicy::KeepAll) {
            // SYNC POINT (claim): `s` is claimed (`write_seq` is past it) but
            // its slot still holds `s - N`: unstamped. The dead writer won
            // that claim, or lost it to a live writer about to stamp. The
            // winner recorded `claiming = s` before its CAS, so a live winner
            // still shows `s` (then leave it) or has moved on, in which case
            // its stamp of `s` is visible and the CAS below fails. Otherwise
            // nobody alive owns `s`: void it.
            // An unstamped claim is never more than N behind `write_seq`:
            // a writer one lap ahead finds its slot two laps behind and
            // stops (`reserve`). (This also keeps a "nothing claimed yet"
            // value far from `write_seq` from looking like a claim.)
            let (_, slot) = self.slot_of(s);
            let behind = dist(self.ctrl.write_seq.0.load(Ordering::SeqCst), s);
            let st = slot.stamp.load(Ordering::Acquire);
            let unstamped = behind > 0 && behind <= i64::from(self.geo.slot_count) && seq_diff(st, s) == -i64::from(self.geo.slot_count) && stamp_state(st) != LOANED;
            if unstamped {
                if claimed_by_other(s) {
                    deferred = true;
                } else if slot.stamp.compare_exchange(st, stamp(s, SKIPPED) | stamp_pins(st), Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                    skipped += 1;
                }
            }
        }
        if skipped > 0 {
            self.notify_data();
            self.notify_space();
        }
        (skipped, deferred)
    }
}
