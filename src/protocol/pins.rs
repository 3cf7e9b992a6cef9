//! Pins: a slot held in place (a `DropOldest` reader at its cursor, or a
//! sample kept past it), named in the reader entry so a reaper can drop it.

use super::shared::SlotMeta;
use super::stamp::{PINS_MASK, LOANED, COMMITTED, PIN_NAMED, PIN_HELD, stamp_state, stamp_pins, seq_diff};
use super::{Parker, RingView};

use crate::backend::OverflowPolicy;
use crate::error::SlotError;
use crate::sync::{AtomicU64, Ordering};

impl<P: Parker> RingView<'_, P> {
    /// Pins the slot of `seq`, whose stamp was `st` (`COMMITTED(seq)`), for
    /// the entry word `name` (`pinned` or a `kept` word). False if the stamp
    /// changed meanwhile (nothing pinned, `name` free again).
    pub(super) fn pin(&self, name: &AtomicU64, slot: &SlotMeta, st: u64, seq: u64) -> Result<bool, SlotError> {
        if stamp_pins(st) >= PINS_MASK {
            return Err(SlotError::Corrupt { what: "slot pin count", value: stamp_pins(st), limit: PINS_MASK - 1 });
        }
        // SYNC POINT (pin intent): the word names the slot *before* the pin
        // exists and until after it is gone, so the words naming a slot never
        // undercount its pins; a reaper removes only pins nobody names
        // (`reap_pins`). The CAS (Release) orders this store before the pin.
        name.store((seq << 2) | PIN_NAMED, Ordering::Relaxed);
        if slot.stamp.compare_exchange(st, st + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            name.store(0, Ordering::Relaxed);
            return Ok(false);
        }
        // The pin exists: whoever drops it removes exactly this one pin, no
        // counting needed.
        name.store((seq << 2) | PIN_HELD, Ordering::Relaxed);
        Ok(true)
    }

    /// Drops the pin `name` holds if it still is `held` (`seq << 2 |
    /// PIN_HELD`). The word names the slot until after the unpin (see "pin
    /// intent"). One caller per word at a time: its owner (`release`,
    /// `next_unread`), or `unkeep` and `disconnect`, which the caller
    /// serialises (a reaper only disconnects a dead owner), so no RMW is
    /// needed on the word (`release` runs per sample).
    pub(super) fn drop_pin(&self, name: &AtomicU64, held: u64) -> bool {
        if name.load(Ordering::Relaxed) != held {
            return false;
        }
        name.store((held & !3) | PIN_NAMED, Ordering::Relaxed);
        self.unpin(held >> 2);
        name.store(0, Ordering::Release);
        true
    }

    /// Disconnecting: drops the pin `name` holds, or (named, pin maybe not
    /// taken: its owner stopped between the two) settles it by counting.
    /// Never concurrent with the owner's own pin or unpin of `name`: the
    /// owner disconnects itself, or is dead.
    pub(super) fn settle_pin(&self, name: &AtomicU64) {
        let p = name.load(Ordering::Acquire);
        if p & PIN_HELD == PIN_HELD {
            self.drop_pin(name, p);
        } else if p & PIN_NAMED != 0 {
            name.store(0, Ordering::Release);
            self.reap_pins(p >> 2);
        }
    }

    /// Removes pins of the slot holding `seq` that no reader entry names
    /// (left by a reader that died between naming the slot and recording
    /// that its pin exists). Entries name a slot from before its pin until
    /// after its unpin, so a count above the names is a leak. Best effort: it
    /// gives up if the stamp keeps changing, and (an ABA of two other
    /// readers' unpin and pin between its load and its CAS) it can in theory
    /// remove a live pin; it only runs for a reader that died inside that
    /// two-instruction window.
    pub fn reap_pins(&self, seq: u64) {
        let (index, slot) = self.slot_of(seq);
        let mask = self.mask();
        for _ in 0..16 {
            let st = slot.stamp.load(Ordering::Acquire);
            // Pins outlive the sequence they were taken on (a writer skips a
            // pinned slot, keeping them): count by slot.
            if stamp_state(st) == LOANED {
                return;
            }
            let named = self
                .readers
                .iter()
                .take(self.geo.max_readers as usize)
                .flat_map(|e| std::iter::once(&e.pinned).chain(e.kept.0.iter()))
                .filter(|w| {
                    let p = w.load(Ordering::Acquire);
                    p & PIN_NAMED != 0 && (p >> 2) & mask == u64::from(index)
                })
                .count() as u64;
            let pins = stamp_pins(st);
            if pins <= named {
                return;
            }
            if slot.stamp.compare_exchange(st, st - (pins - named), Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return;
            }
        }
    }

    /// Keeps the sample reader `r` holds (`seq`, just returned by
    /// [`next_unread`](Self::next_unread)) in place past the reader's cursor,
    /// and moves on as [`release`](Self::release) does: the reader goes on
    /// with later samples while the kept one's payload stays untouched until
    /// [`unkeep`](Self::unkeep). Writers are never held up by it: they skip
    /// the slot while it is kept (see the module doc), so the ring has one
    /// slot less meanwhile. Returns which `kept` word holds it, or `None` if
    /// the reader already keeps `limit` samples (or `KEEP_MAX`): then nothing
    /// changed, the sample is still held at the cursor (copy it, release it).
    pub fn keep(&self, r: u8, index: u32, seq: u64, limit: usize) -> Result<Option<u8>, SlotError> {
        let e = self.reader(r)?;
        if self.geo.policy != OverflowPolicy::KeepAll {
            return Ok(None); // its writers would stop at the pin (see the module doc)
        }
        let c = e.cursor.load(Ordering::Relaxed);
        let (i, slot) = self.slot_of(seq);
        if c != seq || i != index {
            return Err(SlotError::NotHeld { reader: r, seq, expected: c });
        }
        // One pass: how many words are in use, and the first free one.
        let words = &e.kept.0;
        let (mut used, mut free) = (0, None);
        for (k, w) in words.iter().enumerate() {
            if w.load(Ordering::Relaxed) != 0 {
                used += 1;
            } else if free.is_none() {
                free = Some(k);
            }
        }
        let Some(k) = free.filter(|_| used < limit) else { return Ok(None) };
        // No writer reuses the slot while our cursor is on it, but other
        // readers may pin it too: retry on their CAS.
        let mut pinned = false;
        for _ in 0..1024 {
            let st = slot.stamp.load(Ordering::Acquire);
            if seq_diff(st, seq) != 0 || stamp_state(st) != COMMITTED {
                return Err(SlotError::NotHeld { reader: r, seq, expected: c });
            }
            if self.pin(&words[k], slot, st, seq)? {
                pinned = true;
                break;
            }
        }
        if !pinned {
            return Ok(None); // a word that keeps changing: scribbled on
        }
        // SYNC POINT (keep): the pin before the cursor (Release) — a writer
        // that sees the cursor past `seq` sees the pin, see `reserve`.
        e.cursor.store(seq.wrapping_add(1), Ordering::Release);
        e.received.store(e.received.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        e.kept_total.store(e.kept_total.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        self.notify_space();
        Ok(Some(k as u8))
    }

    /// Gives back the sample reader `r` keeps in word `k` (as returned by
    /// [`keep`](Self::keep) for `seq`). A no-op if it is no longer kept (the
    /// reader was disconnected meanwhile, which dropped every pin it held):
    /// never drops somebody else's pin. Not concurrent with disconnecting
    /// `r` (the caller serialises the two).
    pub fn unkeep(&self, r: u8, k: u8, seq: u64) {
        let Some(word) = self.readers.get(usize::from(r)).filter(|_| u32::from(r) < self.geo.max_readers).and_then(|e| e.kept.0.get(usize::from(k))) else { return };
        if self.drop_pin(word, (seq << 2) | PIN_HELD) {
            self.notify_space();
        }
    }
}
