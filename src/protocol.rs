//! The lock-free slot-ring protocol, shared by every process attached to a
//! segment. It works on a [`RingView`] of atomics (in shared memory for the
//! POSIX backend, on the heap for the loom model) and knows nothing of files.
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

use std::time::Duration;

use crate::backend::{OverflowPolicy, ReaderMask, ReaderStats};
use crate::error::SlotError;
use crate::sync::{light_barrier, loom_sc_fence, AtomicU32, AtomicU64, Ordering};

const SEQ_SHIFT: u32 = 10;
const STATE_SHIFT: u32 = 8;
const PINS_MASK: u64 = 0xff;
const SEQ54: u64 = (1 << 54) - 1;

/// Slot states (2 bits of the stamp).
pub(crate) const LOANED: u64 = 0;
pub(crate) const COMMITTED: u64 = 1;
pub(crate) const SKIPPED: u64 = 2;

/// `ReaderEntry::pinned`: the slot is named (a pin may or may not exist).
pub(crate) const PIN_NAMED: u64 = 1;
/// `ReaderEntry::pinned`: the pin exists.
pub(crate) const PIN_HELD: u64 = 3;

/// Participant (reader and writer) entry states: the low 2 bits of `state`;
/// the bits above count tenancies (an epoch), so a stale observation of an
/// entry never matches its next tenant.
pub(crate) const ENTRY_FREE: u32 = 0;
pub(crate) const ENTRY_ACTIVE: u32 = 1;
/// Being freed by a reaper (its owner died).
pub(crate) const ENTRY_RECLAIMING: u32 = 2;
/// A reader of the previous generation of a growing ring, copied into this
/// one when it was made (registered, so samples are addressed to it) and
/// not yet arrived: it holds no lock here. Its owner turns it `ACTIVE`
/// ([`RingView::adopt`]) when it follows; reapers judge its liveness by the
/// previous generation (see `PosixSlotAllocator::upstream_alive`).
pub(crate) const ENTRY_ADOPTING: u32 = 3;
const ENTRY_KIND: u32 = 3;

/// The kind (`ENTRY_FREE`, `ENTRY_ACTIVE`, `ENTRY_RECLAIMING`) of a state.
#[inline]
pub(crate) fn entry_kind(state: u32) -> u32 {
    state & ENTRY_KIND
}

/// The state of the next tenant after `state`.
#[inline]
pub(crate) fn entry_next(state: u32) -> u32 {
    (state & !ENTRY_KIND).wrapping_add(4) | ENTRY_ACTIVE
}

/// Encodes a stamp.
#[inline]
pub(crate) fn stamp(seq: u64, state: u64) -> u64 {
    (seq << SEQ_SHIFT) | (state << STATE_SHIFT)
}
/// `LOANED(seq)` by writer entry `owner`: a loan never has pins, so the pin
/// bits name the writer (a reaper finds a dead writer's loans by them).
#[inline]
pub(crate) fn stamp_loaned(seq: u64, owner: u8) -> u64 {
    stamp(seq, LOANED) | u64::from(owner)
}
/// The same stamp in state `state`, pins/owner cleared.
#[inline]
fn restamp(st: u64, state: u64) -> u64 {
    (st & !((1 << SEQ_SHIFT) - 1)) | (state << STATE_SHIFT)
}
#[inline]
pub(crate) fn stamp_state(st: u64) -> u64 {
    (st >> STATE_SHIFT) & 3
}
#[inline]
pub(crate) fn stamp_pins(st: u64) -> u64 {
    st & PINS_MASK
}
/// `stamp.seq - seq`, sign-extended from 54 bits.
#[inline]
pub(crate) fn seq_diff(st: u64, seq: u64) -> i64 {
    let d = ((st >> SEQ_SHIFT).wrapping_sub(seq)) & SEQ54;
    ((d << 10) as i64) >> 10
}
/// `a - b` as a signed distance between full sequence numbers.
#[inline]
fn dist(a: u64, b: u64) -> i64 {
    a.wrapping_sub(b) as i64
}

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
    /// Bumped to wake waiters.
    pub generation: AtomicU32,
    /// Threads (all processes) parked or about to park on `generation`.
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
    fn stamp_claimed_unless_pinned(&self, slot: &SlotMeta, s: u64, loaned: u64) -> bool {
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
    fn released_by_all(&self, slot: &SlotMeta, old: u64) -> bool {
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

    #[inline]
    fn notify_data(&self) {
        // Always bump (one uncontended RMW for a single writer) so a caller of
        // `generation()` + `wait_data()` can never miss a commit; wake only
        // when somebody waits.
        self.ctrl.data.generation.fetch_add(1, Ordering::SeqCst);
        loom_sc_fence();
        if self.ctrl.data.waiters.load(Ordering::SeqCst) != 0 {
            self.parker.wake_all(&self.ctrl.data.generation);
        }
    }

    #[inline]
    fn notify_space(&self) {
        // SYNC POINT (space): our release (a plain store) precedes this load
        // in program order; `wait_space` counts itself, then runs the heavy
        // barrier, then re-checks. Either our store is visible to its
        // re-check or this load sees its count.
        light_barrier();
        if self.ctrl.space.waiters.load(Ordering::Relaxed) != 0 {
            self.ctrl.space.generation.fetch_add(1, Ordering::SeqCst);
            self.parker.wake_all(&self.ctrl.space.generation);
        }
    }

    /// The data generation (see [`crate::SlotBackend::notify_generation`]).
    pub fn generation(&self) -> u32 {
        self.ctrl.data.generation.load(Ordering::SeqCst)
    }

    /// Waits until the data generation differs from `last`.
    pub fn wait_data(&self, last: u32, timeout: Duration) {
        let w = &self.ctrl.data;
        w.waiters.fetch_add(1, Ordering::SeqCst);
        loom_sc_fence();
        if w.generation.load(Ordering::SeqCst) == last {
            self.parker.wait(&w.generation, last, timeout);
        }
        w.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Waits while `still_full()`: register, read the generation, re-check,
    /// then sleep. (The reverse order loses wake-ups; the loom model shows it.)
    pub fn wait_space(&self, timeout: Duration, still_full: &mut dyn FnMut() -> bool) {
        let w = &self.ctrl.space;
        w.waiters.fetch_add(1, Ordering::SeqCst);
        self.parker.heavy_barrier();
        let g = w.generation.load(Ordering::SeqCst);
        if still_full() {
            self.parker.wait(&w.generation, g, timeout);
        }
        w.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Claims a reader entry; its cursor starts at the current `write_seq`.
    #[cfg_attr(not(loom), allow(dead_code))]
    pub fn register(&self, pid: u32) -> Result<u8, SlotError> {
        self.register_with(pid, &mut |_, _| true)
    }

    /// [`register`](Self::register) with a liveness lock: `lock(r, true)`
    /// takes entry `r`'s lock before the entry is claimed (false: taken by
    /// someone else, try the next entry), `lock(r, false)` gives it back when
    /// the claim fails. So an `ACTIVE` entry's lock is held for as long as
    /// its owner lives, and a reaper that finds it free knows the owner died.
    pub fn register_with(&self, pid: u32, lock: &mut dyn FnMut(u8, bool) -> bool) -> Result<u8, SlotError> {
        for (r, e) in self.readers.iter().enumerate().take(self.geo.max_readers as usize) {
            let state = e.state.load(Ordering::Relaxed);
            if entry_kind(state) != ENTRY_FREE || !lock(r as u8, true) {
                continue;
            }
            // SeqCst: see `released_by_all` (a writer that saw this entry
            // free must be seen by our `write_seq` load below).
            if e.state.compare_exchange(state, entry_next(state), Ordering::SeqCst, Ordering::Relaxed).is_err() {
                lock(r as u8, false);
                continue;
            }
            e.pid.store(pid, Ordering::Relaxed);
            e.pinned.store(0, Ordering::Relaxed);
            e.kept.0.iter().for_each(|k| k.store(0, Ordering::Relaxed));
            e.kept_total.store(0, Ordering::Relaxed);
            e.received.store(0, Ordering::Relaxed);
            e.lost.store(0, Ordering::Relaxed);
            // SYNC POINT (registration): read `write_seq` before setting
            // the bit; see `reserve`.
            let start = self.ctrl.write_seq.0.load(Ordering::SeqCst);
            e.cursor.store(start, Ordering::SeqCst);
            self.ctrl.registered.0.fetch_or(1 << r, Ordering::SeqCst);
            // A writer may be waiting on a stale bit of this index that
            // our cursor (past it) now makes ignorable: wake it.
            self.notify_space();
            return Ok(r as u8);
        }
        Err(SlotError::ReadersFull { max: self.geo.max_readers })
    }

    /// Removes reader `r` from every sample: clears its bit everywhere and
    /// drops its pin. Writers waiting on it are woken.
    pub fn disconnect(&self, r: u8) -> Result<(), SlotError> {
        if u32::from(r) >= self.geo.max_readers || usize::from(r) >= self.readers.len() {
            return Err(SlotError::ReaderNotRegistered(r));
        }
        // Writers judge releases by registered readers' cursors only, so
        // leaving the mask releases everything this reader held.
        self.ctrl.registered.0.fetch_and(!(1u64 << r), Ordering::SeqCst);
        let e = &self.readers[usize::from(r)];
        for name in std::iter::once(&e.pinned).chain(e.kept.0.iter()) {
            self.settle_pin(name);
        }
        self.notify_space();
        Ok(())
    }

    /// Pins the slot of `seq`, whose stamp was `st` (`COMMITTED(seq)`), for
    /// the entry word `name` (`pinned` or a `kept` word). False if the stamp
    /// changed meanwhile (nothing pinned, `name` free again).
    fn pin(&self, name: &AtomicU64, slot: &SlotMeta, st: u64, seq: u64) -> Result<bool, SlotError> {
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
    fn drop_pin(&self, name: &AtomicU64, held: u64) -> bool {
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
    fn settle_pin(&self, name: &AtomicU64) {
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

    /// Disconnects `r` and frees its entry (the caller drops its lock after).
    pub fn unregister(&self, r: u8) -> Result<(), SlotError> {
        let e = self.reader(r)?;
        let state = e.state.load(Ordering::SeqCst);
        // `disconnect` took `r` out of `registered` and woke waiting writers;
        // from then on writers ignore its cursor, so the entry can go.
        self.disconnect(r)?;
        // A reaper may have taken the entry meanwhile: it frees it then.
        let _ = e.state.compare_exchange(state, state & !ENTRY_KIND, Ordering::SeqCst, Ordering::Relaxed);
        Ok(())
    }

    /// Makes `readers` (bits of registered readers of the previous
    /// generation, with their pids) `ADOPTING` entries of this fresh ring:
    /// registered from its first sequence on. Only for a ring nobody else
    /// can see yet (after `init`).
    pub fn seed_adopting(&self, readers: u64, pid_of: &dyn Fn(u8) -> u32) {
        let start = self.ctrl.write_seq.0.load(Ordering::Relaxed);
        let mut bits = readers & (u64::MAX >> (64 - self.geo.max_readers.clamp(1, 64)));
        while bits != 0 {
            let r = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            let e = &self.readers[usize::from(r)];
            e.state.store(ENTRY_ADOPTING, Ordering::Relaxed);
            e.pid.store(pid_of(r), Ordering::Relaxed);
            e.cursor.store(start, Ordering::Relaxed);
            e.pinned.store(0, Ordering::Relaxed);
            e.kept.0.iter().for_each(|k| k.store(0, Ordering::Relaxed));
            e.kept_total.store(0, Ordering::Relaxed);
            e.received.store(0, Ordering::Relaxed);
            e.lost.store(0, Ordering::Relaxed);
            self.ctrl.registered.0.fetch_or(1 << r, Ordering::Relaxed);
        }
    }

    /// Turns `ADOPTING` entry `r` into this process's `ACTIVE` one (its
    /// lock taken by the caller first, as in `register_with`), its counters
    /// going on from `before`, the reader's entry in the previous generation
    /// (drained, and still the caller's). False if the entry is not
    /// `ADOPTING` (a reaper judged it dead meanwhile).
    pub fn adopt(&self, r: u8, pid: u32, before: &ReaderEntry) -> bool {
        let Some(e) = self.readers.get(usize::from(r)).filter(|_| u32::from(r) < self.geo.max_readers) else { return false };
        let st = e.state.load(Ordering::SeqCst);
        if entry_kind(st) != ENTRY_ADOPTING || e.state.compare_exchange(st, (st & !ENTRY_KIND) | ENTRY_ACTIVE, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return false;
        }
        e.pid.store(pid, Ordering::Relaxed);
        // Only the owner writes its counters, and it is us on both sides.
        e.received.store(before.received.load(Ordering::Relaxed), Ordering::Relaxed);
        e.lost.store(before.lost.load(Ordering::Relaxed), Ordering::Relaxed);
        e.kept_total.store(before.kept_total.load(Ordering::Relaxed), Ordering::Relaxed);
        true
    }

    /// Frees reader entry `r` whose owner died, if its state still is the
    /// `observed` one: `ACTIVE` (read before its lock was found free), or
    /// `RECLAIMING` left by a reaper that died (the caller holds the entry's
    /// lock, so no other reaper is at it): clears its bit everywhere, drops
    /// its pin, wakes writers. Every step may be redone. Returns whether
    /// this call freed it.
    pub fn reap_reader(&self, r: u8, observed: u32) -> bool {
        let Some(e) = self.readers.get(usize::from(r)).filter(|_| u32::from(r) < self.geo.max_readers) else { return false };
        let reclaiming = (observed & !ENTRY_KIND) | ENTRY_RECLAIMING;
        if !matches!(entry_kind(observed), ENTRY_ACTIVE | ENTRY_RECLAIMING | ENTRY_ADOPTING) || e.state.compare_exchange(observed, reclaiming, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return false;
        }
        let _ = self.disconnect(r);
        e.state.store(observed & !ENTRY_KIND, Ordering::SeqCst);
        true
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

    /// Drops one pin from the slot of `seq`, whatever sequence its stamp
    /// shows by now (writers skip pinned slots, keeping their pins).
    fn unpin(&self, seq: u64) {
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
    fn bounded_len(&self, slot: &SlotMeta) -> Result<u32, SlotError> {
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
}

impl<P: Parker> RingView<'_, P> {
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

#[cfg(all(test, loom))]
#[path = "protocol_loom.rs"]
mod loom_tests;
