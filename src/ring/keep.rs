//! Kept samples: a reader lends the sample it holds to code that gives it
//! back whenever it likes (see `protocol::pins`).

use std::time::{Duration, Instant};

use super::{grow, PARK_SLICE, PosixSlotAllocator};

use crate::backend::SlotHandle;
use crate::error::SlotError;

/// A sample a reader keeps in place past its cursor
/// ([`PosixSlotAllocator::keep`]); give it back with
/// [`PosixSlotAllocator::unkeep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    handle: SlotHandle,
    reader: u8,
    word: u8,
}

impl Kept {
    /// The sample's handle (as returned by `next_unread_slot`).
    pub fn handle(&self) -> SlotHandle {
        self.handle
    }
}

impl PosixSlotAllocator {
    /// Keeps the sample `handle` that reader `reader_index` holds (just
    /// returned by `next_unread_slot` / `next_unread_read`) in place, and
    /// moves the reader on as [`mark_read`](crate::SlotBackend::mark_read) does: the
    /// payload pointer stays valid and unchanged until
    /// [`unkeep`](Self::unkeep), while the reader goes on with later samples.
    /// This is how a sample is lent to code that returns it whenever it likes
    /// (a DDS reader cache) without copying it and without holding up the
    /// ring: writers skip a kept slot (the ring has one slot less while it is
    /// kept), they never wait for it.
    ///
    /// Only on a `KeepAll` ring (a `DropOldest` writer stops at a pinned
    /// slot). A reader keeps at most a quarter of the ring's slots, and at most 16.
    /// `Ok(None)` when it already keeps that many (or the ring has fewer than
    /// 4 slots, or is `DropOldest`): nothing changed, the sample is still held; copy it and
    /// `mark_read` it.
    ///
    /// Disconnecting the reader (unregistering it, or a reaper after its
    /// process died) gives back everything it keeps; `unkeep` is then a no-op.
    ///
    /// # Errors
    /// [`SlotError::NotHeld`] if `handle` is not the reader's current sample;
    /// as `mark_read` otherwise.
    pub fn keep(&self, handle: SlotHandle, reader_index: u8) -> Result<Option<Kept>, SlotError> {
        let (g, h) = self.gen_of(handle)?;
        let limit = (g.info.slot_count / 4) as usize;
        let word = g.ring().keep(reader_index, h.slot_index, h.seq, limit).map_err(|e| grow::outer_err(e, handle))?;
        Ok(word.map(|word| Kept { handle, reader: reader_index, word }))
    }

    /// [`keep`](Self::keep), waiting up to `timeout` for this reader to give
    /// back a kept sample when it keeps its limit already. `Ok(None)` after
    /// the timeout, as from `keep`.
    ///
    /// # Errors
    /// As `keep`.
    pub fn keep_timeout(&self, handle: SlotHandle, reader_index: u8, timeout: Duration) -> Result<Option<Kept>, SlotError> {
        // Below the limit: no clock read.
        if let Some(k) = self.keep(handle, reader_index)? {
            return Ok(Some(k));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // The limit counts what the reader keeps in `handle`'s
            // generation, and `unkeep` wakes the waiters on that
            // generation's space word.
            let (g, _) = self.gen_of(handle)?;
            let mut got = None;
            g.ring().wait_space(left.min(PARK_SLICE), &mut || match self.keep(handle, reader_index) {
                Ok(None) => true,
                other => {
                    got = Some(other);
                    false
                }
            });
            if let Some(r) = got {
                return r;
            }
            if let Some(k) = self.keep(handle, reader_index)? {
                return Ok(Some(k));
            }
        }
    }

    /// Gives back a sample [`keep`](Self::keep) kept: writers may reuse its
    /// slot from now on, so the payload must not be read any more.
    pub fn unkeep(&self, kept: Kept) {
        let Ok((g, h)) = self.gen_of(kept.handle) else { return };
        let _g = g.lock_table.lock();
        g.ring().unkeep(kept.reader, kept.word, h.seq);
    }
}
