//! The lock-free slot-ring protocol, shared by every process attached to a
//! segment. It works on a [`RingView`] of atomics (in shared memory for the
//! POSIX backend, on the heap for the loom model) and knows nothing of files.
//! Its invariants are stated here and at each `SYNC POINT`; where the rest
//! are written: `ARCHITECTURE.md`.
//!
//! # Algorithm
//!
//! A multi-writer, multi-reader *broadcast* ring in the manner of Vyukov's
//! bounded MPMC queue: sequence number `s` lives in slot `s mod N`; each slot
//! carries a **stamp** word `seq:54 | state:2 | pins:8` that says which
//! sequence the slot holds and how far it got:
//!
//! ```text
//!            reserve                    commit (store Release)
//!   COMMITTED/SKIPPED(s-N) ──────▶ LOANED(s) ──────────────────▶ COMMITTED(s)
//!                                       └── discard / dead writer ─▶ SKIPPED(s)
//! ```
//!
//! * `write_seq` is the next sequence to reserve. Writers never wait on each
//!   other: `KeepAll` writers claim `s` with a CAS on `write_seq` (a line no
//!   reader touches) once the slot's previous sample is released, then store
//!   `LOANED(s)`; `DropOldest` writers claim with a CAS of the stamp to
//!   `LOANED(s)` and then advance `write_seq` (others that see `LOANED(s)`
//!   help advance it).
//! * `pending` holds one bit per reader the sample is *addressed* to (the
//!   registered readers in the writer's mask), fixed until the slot is
//!   reserved again.
//! * Each reader has a cursor (next sequence) and consumes in sequence order.
//!   It **releases** a sample by storing its cursor past it (Release, on its
//!   own cache line: no RMW on the slot). Under `KeepAll` a slot is reusable
//!   when every addressed reader still registered is past it; writers keep a
//!   process-local lower bound of the cursors and re-read them about once a
//!   lap. Under `DropOldest` any slot not held in place is reusable, and
//!   overtaken readers count what they lost.
//! * `pins` counts readers holding a slot's sample in place: a `DropOldest`
//!   reader reading at its cursor, or any reader that **keeps** a sample past
//!   its cursor ([`RingView::keep`], a loan handed to an application that
//!   returns it whenever it likes). A pin is a CAS on the stamp, so a
//!   `DropOldest` writer's reuse (also a CAS on the stamp) and a pin never
//!   both succeed, and a `KeepAll` reader pins only at its cursor, before
//!   any writer may reuse the slot.
//! * `KeepAll` writers never wait for a kept sample: a writer that finds the
//!   slot of `s` released but pinned claims `s` all the same and stamps it
//!   `SKIPPED(s)`, **keeping the pin count** (the payload stays as it was),
//!   then goes on with `s + 1`. Readers skip `s` as any discarded sequence.
//!   So a sample kept for long costs the ring one slot, never its progress.
//!   Pins are dropped per slot, whatever sequence the stamp shows by then;
//!   the reader entry names each pinned slot (`pinned`, `kept`) from before
//!   its pin until after its unpin, so a reaper can drop a dead reader's
//!   pins. (A `DropOldest` writer still refuses a pinned slot with
//!   `NoFreeSlot`: skipping there would blur what `lost` counts.)
//! * The metadata is 32 bytes and the payload follows at +32, so a small
//!   sample travels to the reader in the same cache line as its stamp.
//!
//! Stamps carry 54 bits of the 64-bit sequence: every live sequence lies within
//! `N <= 2^24` of `write_seq`, so differences of stamps are unambiguous; full
//! 64-bit sequences live in `write_seq` and the cursors, and wrap around with
//! wrapping arithmetic.
//!
//! # Trust
//!
//! Every word here may have been written by a hostile process. Indices come
//! from `seq & mask` (always in range), lengths are checked against the
//! capacity copied at attach, loops are bounded, and nothing read from the
//! ring is used as an index without that.

mod notify;
mod pins;
mod read;
mod readers;
mod shared;
mod stamp;
mod write;
mod writers;

pub(crate) use shared::*;
pub(crate) use stamp::*;
pub(crate) use writers::{WriterEntry, WriterTable};

use std::time::Duration;

use crate::backend::OverflowPolicy;
use crate::error::SlotError;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// How a thread parks on a futex word (the OS futex, or a loom model).
pub(crate) trait Parker {
    /// Sleeps while `*word == expected`, at most `timeout`; may return early.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration);
    /// Wakes every thread sleeping on `word`.
    fn wake_all(&self, word: &AtomicU32);
    /// The heavy side of an asymmetric barrier: after it returns, every
    /// thread of every attached process has passed a full memory barrier
    /// (`membarrier(2)`), so their earlier stores are visible to us and their
    /// later loads see our earlier stores. Paired with [`light_barrier`] on
    /// the hot side, it replaces a fence on every release.
    fn heavy_barrier(&self);
}

/// Geometry copied out of the segment at attach and trusted afterwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub slot_count: u32,
    pub capacity: u32,
    pub max_readers: u32,
    pub policy: OverflowPolicy,
}

/// The protocol over one ring's atomics.
pub(crate) struct RingView<'a, P> {
    pub ctrl: &'a Control,
    pub readers: &'a [ReaderEntry],
    pub slots: SlotArray<'a>,
    pub geo: Geometry,
    pub parker: P,
    /// Process-local: a lower bound of every registered reader's cursor
    /// (cursors only grow, and a reader registers with the current
    /// `write_seq`), so `KeepAll` writers need not read cursors per sample.
    pub cursor_floor: &'a AtomicU64,
}

/// A successful `next_unread`: where the sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub index: u32,
    pub seq: u64,
    pub len: u32,
}

impl<P: Parker> RingView<'_, P> {
    #[inline]
    fn mask(&self) -> u64 {
        u64::from(self.geo.slot_count) - 1
    }

    #[inline]
    fn slot_of(&self, seq: u64) -> (u32, &SlotMeta) {
        let i = (seq & self.mask()) as u32;
        (i, self.slots.get(i))
    }

    #[inline]
    fn reader(&self, r: u8) -> Result<&ReaderEntry, SlotError> {
        match self.readers.get(usize::from(r)) {
            Some(e) if u32::from(r) < self.geo.max_readers && entry_kind(e.state.load(Ordering::Relaxed)) == ENTRY_ACTIVE => Ok(e),
            _ => Err(SlotError::ReaderNotRegistered(r)),
        }
    }

    /// The next sequence a writer will reserve (SeqCst: a growing ring's
    /// mover reads it after raising its flag, see `ring::grow`).
    pub fn write_seq(&self) -> u64 {
        self.ctrl.write_seq.0.load(Ordering::SeqCst)
    }

    /// The registered readers' bits.
    pub fn registered(&self) -> u64 {
        self.ctrl.registered.0.load(Ordering::SeqCst)
    }

    /// Reader entry `r`'s state word (`epoch << 2 | ENTRY_*`), 0 (free)
    /// for an index past the table.
    pub fn reader_state(&self, r: u8) -> u32 {
        self.readers.get(usize::from(r)).map_or(ENTRY_FREE, |e| e.state.load(Ordering::SeqCst))
    }

    /// The pid reader entry `r` records (display only), 0 past the table.
    pub fn reader_pid(&self, r: u8) -> u32 {
        self.readers.get(usize::from(r)).map_or(0, |e| e.pid.load(Ordering::Relaxed))
    }

    /// Initialises a fresh ring whose first sequence will be `start`.
    /// Only for a ring nobody else can see yet.
    pub fn init(&self, start: u64) {
        for k in 0..u64::from(self.geo.slot_count) {
            let seq = start.wrapping_add(k);
            let (_, slot) = self.slot_of(seq);
            slot.stamp.store(stamp(seq.wrapping_sub(u64::from(self.geo.slot_count)), SKIPPED), Ordering::Relaxed);
            slot.pending.store(0, Ordering::Relaxed);
            slot.len.store(0, Ordering::Relaxed);
        }
        for r in self.readers {
            r.state.store(ENTRY_FREE, Ordering::Relaxed);
        }
        self.ctrl.registered.0.store(0, Ordering::Relaxed);
        self.ctrl.write_seq.0.store(start, Ordering::Relaxed);
    }
}

#[cfg(all(test, loom))]
mod loom_models;
