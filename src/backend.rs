//! The [`SlotBackend`] trait: the contract every slot ring implements.

use std::time::{Duration, Instant};

use crate::error::SlotError;

/// One bit per reader: up to 64 readers per ring.
pub type ReaderMask = u64;

/// Every reader: pass as `active_readers_mask` to address all registered readers.
pub const ALL_READERS: ReaderMask = u64::MAX;

/// Names one slot of one ring for one sequence number.
///
/// A handle is only a name: every backend re-checks it against the slot's
/// state before using it, so a stale or forged handle gives an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotHandle {
    /// Slot index in `0..slot_count`.
    pub slot_index: u32,
    /// Sequence number the slot holds (or is loaned for).
    pub seq: u64,
}

/// What a copying read returns besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotHeader {
    /// Sequence number of the sample.
    pub sequence_number: u64,
    /// Length of the sample in bytes.
    pub sample_size: u32,
    /// Readers that have not released the sample yet.
    pub pending_readers: ReaderMask,
}

/// What a ring does when a writer finds the oldest slot still unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum OverflowPolicy {
    /// A slot is reused only when every reader it was addressed to has
    /// released it: nothing is ever lost; a full ring gives
    /// [`SlotError::NoFreeSlot`] (or the blocking call waits).
    #[default]
    KeepAll = 1,
    /// The writer never waits for readers: it overwrites the oldest sample,
    /// and a reader that was overtaken skips ahead and counts what it lost.
    /// (A sample a reader is reading *in place* at that moment is never
    /// overwritten: the writer gets `NoFreeSlot` instead of tearing it.)
    DropOldest = 2,
}

impl OverflowPolicy {
    /// Decodes the value stored in a segment header.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::KeepAll),
            2 => Some(Self::DropOldest),
            _ => None,
        }
    }
}

/// Per-reader counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReaderStats {
    /// Sequence number the reader will look at next.
    pub next_seq: u64,
    /// Samples released by this reader (delivered).
    pub received: u64,
    /// Samples this reader was overtaken on (`DropOldest` only).
    pub lost: u64,
}

/// Default time a blocking call spins (re-checking, no syscall) before it
/// parks on a futex: a wake-up costs tens of microseconds on a VM, a polled
/// hand-off a fraction of one.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Blocking calls read the clock on their first empty poll and then every
/// this many (one pause between two polls).
const CLOCK_EVERY: u64 = 16;

/// Empty polls a blocking call spins through with a pause only; after them
/// (a few microseconds) it yields the CPU between polls until its spin budget
/// is over, so a waiter sharing its CPU with the thread it waits for (or with
/// other waiters, as the readers of a fan-out) lets that thread run instead
/// of burning the rest of the budget.
const PAUSE_ONLY: u64 = 128;

/// What a blocking call does between two empty polls of its spin phase.
#[inline]
fn spin_pause(polls: u64) {
    if polls < PAUSE_ONLY {
        crate::sync::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// A ring of fixed-size slots that writers fill and readers consume in
/// sequence order.
///
/// # Ordering and visibility contract
///
/// * Sequence numbers are 64-bit and assigned in reservation order; they wrap
///   around (compare them with wrapping arithmetic), which is impossible in
///   practice.
/// * **Publication.** Every byte a writer puts into a loaned slot (by
///   [`commit_slot`](Self::commit_slot) or in place through
///   [`slot_data_ptr`](Self::slot_data_ptr)) happens-before a reader that
///   obtains the slot from [`next_unread_slot`](Self::next_unread_slot)
///   reads it: commit publishes with `Release`, the reader observes with
///   `Acquire`. A reader never sees a loaned (half-written) or discarded slot.
/// * **Release.** Everything a reader does with a slot's bytes happens-before
///   a writer reuses that slot: [`mark_read`](Self::mark_read) releases with
///   `Release`, reservation observes with `Acquire`. Under
///   [`OverflowPolicy::KeepAll`] a slot is reused only after every reader it
///   was addressed to released it; under `DropOldest` only when no reader
///   holds it in place.
/// * **Order.** Each registered reader receives every sample committed after
///   its registration that was addressed to it, exactly once, in sequence
///   order. A sample whose writer is slow blocks later samples for that
///   reader until it is committed or discarded (in-order delivery).
/// * **Addressing.** A sample is addressed to the readers that are registered
///   when its slot is reserved, intersected with `active_readers_mask`.
/// * **Reader ownership.** A reader index is driven by one thread at a time;
///   it holds at most one sample (`next_unread_slot` returns the same handle
///   until it is `mark_read`).
/// * **Notify.** [`notify_generation`](Self::notify_generation) changes after
///   every commit or discard (and `mark_reader_disconnected`). Capture it,
///   check your condition, then call [`wait_for_change`](Self::wait_for_change):
///   no change is missed in between. Waking costs a syscall only when somebody
///   waits.
pub trait SlotBackend: Send + Sync {
    /// Reserves the next sequence number and its slot (a loan) for one writer.
    /// The sample will be addressed to the registered readers in
    /// `active_readers_mask` ([`ALL_READERS`] for all).
    ///
    /// # Errors
    /// [`SlotError::NoFreeSlot`] when the ring is full (see
    /// [`OverflowPolicy`]); [`SlotError::Corrupt`] for a corrupt segment;
    /// [`SlotError::WritersFull`] (shared memory) when every writer entry is
    /// taken by a live writer.
    fn reserve_slot(&self, active_readers_mask: ReaderMask) -> Result<SlotHandle, SlotError>;

    /// Copies `bytes` into the loaned slot and publishes it. Returns its
    /// sequence number.
    ///
    /// # Errors
    /// [`SlotError::SampleTooLarge`] (the loan stays open; discard it or
    /// commit a smaller sample), [`SlotError::NotLoaned`] for a stale handle.
    fn commit_slot(&self, handle: SlotHandle, bytes: &[u8]) -> Result<u64, SlotError> {
        let (ptr, cap) = self.slot_data_ptr(handle)?;
        if bytes.len() > cap {
            return Err(SlotError::SampleTooLarge { sample: bytes.len(), slot_capacity: cap });
        }
        // SAFETY: `slot_data_ptr` returned a writable region of `cap` bytes
        // that this loan owns exclusively until commit or discard, and
        // `bytes.len() <= cap`. A `&[u8]` cannot overlap a loaned slot
        // (nobody else may reference it).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        self.commit_in_place(handle, bytes.len())
    }

    /// Gives a loan back unpublished. Readers never see it; they step over its
    /// sequence number.
    ///
    /// # Errors
    /// [`SlotError::NotLoaned`] for a stale handle.
    fn discard_slot(&self, handle: SlotHandle) -> Result<(), SlotError>;

    /// The writable data region of a loaned slot: pointer and capacity. Valid
    /// until [`commit_in_place`](Self::commit_in_place) or
    /// [`discard_slot`](Self::discard_slot) of the same handle.
    ///
    /// # Errors
    /// [`SlotError::NotLoaned`] for a stale handle.
    fn slot_data_ptr(&self, handle: SlotHandle) -> Result<(*mut u8, usize), SlotError>;

    /// Publishes a loaned slot whose first `len` bytes were written in place.
    /// Returns its sequence number.
    ///
    /// # Errors
    /// [`SlotError::SampleTooLarge`], [`SlotError::NotLoaned`].
    fn commit_in_place(&self, handle: SlotHandle, len: usize) -> Result<u64, SlotError>;

    /// The read-only data region of a committed slot: pointer and length
    /// (bounded by the capacity). Valid while the reader holds the slot (from
    /// `next_unread_slot` until `mark_read`).
    ///
    /// # Errors
    /// [`SlotError::OutOfBounds`] for an index that does not belong to
    /// `handle.seq`; [`SlotError::Corrupt`] when the slot no longer holds
    /// `handle.seq` or its length exceeds the capacity.
    fn slot_read_ptr(&self, handle: SlotHandle) -> Result<(*const u8, usize), SlotError>;

    /// [`reserve_slot`](Self::reserve_slot) and
    /// [`slot_data_ptr`](Self::slot_data_ptr) in one call (what a
    /// [`Loan`](crate::Loan) does): the handle, the writable region and its
    /// capacity. A backend that knows the slot it just reserved overrides it
    /// to skip re-checking the fresh handle.
    ///
    /// # Errors
    /// As `reserve_slot`; a failing `slot_data_ptr` discards the loan.
    fn reserve_loan(&self, active_readers_mask: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        let handle = self.reserve_slot(active_readers_mask)?;
        match self.slot_data_ptr(handle) {
            Ok((ptr, cap)) => Ok((handle, ptr, cap)),
            Err(e) => {
                let _ = self.discard_slot(handle);
                Err(e)
            }
        }
    }

    /// [`next_unread_slot`](Self::next_unread_slot) and
    /// [`slot_read_ptr`](Self::slot_read_ptr) in one call (what
    /// [`Reader::try_recv`](crate::Reader::try_recv) does). A backend whose
    /// `next_unread_slot` already validated the length overrides it to skip
    /// re-checking it.
    ///
    /// # Errors
    /// As `next_unread_slot` and `slot_read_ptr`.
    fn next_unread_read(&self, reader_index: u8) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> {
        match self.next_unread_slot(reader_index)? {
            Some(h) => self.slot_read_ptr(h).map(|(ptr, len)| Some((h, ptr, len))),
            None => Ok(None),
        }
    }

    /// The next sample for `reader_index` in sequence order, or `None` when
    /// nothing new is committed. Returns the same handle until it is
    /// [`mark_read`](Self::mark_read).
    ///
    /// # Errors
    /// [`SlotError::ReaderNotRegistered`], [`SlotError::Corrupt`];
    /// [`SlotError::WritersGone`] (shared memory) when nothing is left to
    /// read and no writer is alive any more (checked now and then while the
    /// ring is empty, never on the hot path).
    fn next_unread_slot(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError>;

    /// Copies a held slot out.
    ///
    /// # Errors
    /// As [`slot_read_ptr`](Self::slot_read_ptr).
    fn read_slot(&self, handle: SlotHandle) -> Result<(SlotHeader, Vec<u8>), SlotError>;

    /// Releases the sample `reader_index` holds and moves it to the next one.
    ///
    /// # Errors
    /// [`SlotError::NotHeld`] when `handle` is not the reader's current sample.
    fn mark_read(&self, handle: SlotHandle, reader_index: u8) -> Result<(), SlotError>;

    /// Removes a reader from every present and future sample (for a reader
    /// found dead or gone): its pending bits are cleared and writers waiting
    /// on it resume. The reader entry stays claimed; see `unregister_reader`.
    ///
    /// # Errors
    /// [`SlotError::ReaderNotRegistered`] for an index past the reader table.
    fn mark_reader_disconnected(&self, reader_index: u8) -> Result<(), SlotError>;

    /// Claims a reader entry and bit. Samples reserved from now on are
    /// addressed to it and (`KeepAll`) wait for it.
    ///
    /// # Errors
    /// [`SlotError::ReadersFull`].
    fn register_reader(&self) -> Result<u8, SlotError>;

    /// Leaves: disconnects the reader and frees its entry for reuse.
    ///
    /// # Errors
    /// [`SlotError::ReaderNotRegistered`].
    fn unregister_reader(&self, reader_index: u8) -> Result<(), SlotError>;

    /// Counters of one reader.
    ///
    /// # Errors
    /// [`SlotError::ReaderNotRegistered`].
    fn reader_stats(&self, reader_index: u8) -> Result<ReaderStats, SlotError>;

    /// Number of slots (a power of two).
    fn slot_count(&self) -> usize;
    /// Bytes of payload one slot holds.
    fn slot_capacity(&self) -> usize;
    /// Bytes one slot takes in the segment (slot header + capacity + padding).
    fn slot_total_size(&self) -> usize;
    /// The overflow policy of the ring.
    fn overflow_policy(&self) -> OverflowPolicy;
    /// Type hash the ring was created for, `None` for an untyped ring.
    fn type_hash(&self) -> Option<[u8; 16]> {
        None
    }
    /// How long blocking calls spin before they park.
    fn spin_budget(&self) -> Duration {
        DEFAULT_SPIN
    }

    /// Makes sure the next loan can hold `len` bytes: a backend that can
    /// grow (a POSIX ring created with a growth strategy) moves to larger
    /// slots; the default only checks.
    ///
    /// # Errors
    /// [`SlotError::SampleTooLarge`] when `len` exceeds the slot capacity
    /// and the backend cannot grow.
    fn ensure_capacity(&self, len: usize) -> Result<(), SlotError> {
        if len > self.slot_capacity() {
            return Err(SlotError::SampleTooLarge { sample: len, slot_capacity: self.slot_capacity() });
        }
        Ok(())
    }

    /// Changes after every commit, discard and reader disconnection.
    fn notify_generation(&self) -> u64;

    /// Blocks until [`notify_generation`](Self::notify_generation) differs
    /// from `last` or `timeout` passes. Spurious returns are possible; check
    /// your condition again.
    fn wait_for_change(&self, last: u64, timeout: Duration);

    /// Blocks while `still_full()` is true (a writer waiting for a free slot),
    /// at most `timeout`. Implementations register as a waiter *before*
    /// re-checking `still_full`, so a release in between is not missed.
    fn wait_for_space(&self, timeout: Duration, still_full: &mut dyn FnMut() -> bool);

    /// [`reserve_slot`](Self::reserve_slot) that waits up to `timeout` for a
    /// free slot: spins for [`spin_budget`](Self::spin_budget), then parks.
    ///
    /// # Errors
    /// [`SlotError::TimedOut`]; others as `reserve_slot`.
    fn reserve_slot_timeout(&self, active_readers_mask: ReaderMask, timeout: Duration) -> Result<SlotHandle, SlotError> {
        wait_for_slot(self, timeout, || self.reserve_slot(active_readers_mask))
    }

    /// [`reserve_loan`](Self::reserve_loan) that waits up to `timeout` for a
    /// free slot, as [`reserve_slot_timeout`](Self::reserve_slot_timeout).
    ///
    /// # Errors
    /// [`SlotError::TimedOut`]; others as `reserve_loan`.
    fn reserve_loan_timeout(&self, active_readers_mask: ReaderMask, timeout: Duration) -> Result<(SlotHandle, *mut u8, usize), SlotError> {
        wait_for_slot(self, timeout, || self.reserve_loan(active_readers_mask))
    }

    /// [`next_unread_slot`](Self::next_unread_slot) that waits up to
    /// `timeout` for a sample: spins for [`spin_budget`](Self::spin_budget),
    /// then parks. `Ok(None)` means the timeout passed.
    ///
    /// # Errors
    /// As `next_unread_slot`.
    fn next_unread_slot_timeout(&self, reader_index: u8, timeout: Duration) -> Result<Option<SlotHandle>, SlotError> {
        wait_for_sample(self, timeout, || self.next_unread_slot(reader_index))
    }

    /// [`next_unread_read`](Self::next_unread_read) that waits up to
    /// `timeout` for a sample, as
    /// [`next_unread_slot_timeout`](Self::next_unread_slot_timeout).
    ///
    /// # Errors
    /// As `next_unread_read`.
    fn next_unread_read_timeout(&self, reader_index: u8, timeout: Duration) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> {
        wait_for_sample(self, timeout, || self.next_unread_read(reader_index))
    }
}

/// The pacing of a blocking call: retry after one pause while spinning
/// (reading the clock only every `CLOCK_EVERY` polls: a batch of pauses or
/// a clock read between two polls is latency added to every hand-off),
/// then park, until the timeout.
struct Pacing {
    start: Instant,
    spin_until: Instant,
    timeout: Duration,
    polls: u64,
}

/// What a blocking call does after a miss.
enum Pace {
    /// Poll again.
    Again,
    /// Park, at most this long.
    Park(Duration),
    /// The timeout passed.
    Expired,
}

impl Pacing {
    fn new(spin: Duration, timeout: Duration) -> Self {
        let start = Instant::now();
        Self { start, spin_until: start + spin.min(timeout), timeout, polls: 0 }
    }

    #[inline(always)]
    fn after_miss(&mut self) -> Pace {
        self.polls = self.polls.wrapping_add(1);
        if self.polls % CLOCK_EVERY != 1 {
            spin_pause(self.polls);
            return Pace::Again;
        }
        let now = Instant::now();
        let end = self.start + self.timeout;
        if now >= end {
            Pace::Expired
        } else if now < self.spin_until {
            Pace::Again
        } else {
            Pace::Park(end - now)
        }
    }
}

/// The writers' wait, for any form of reservation (`reserve`): retries while
/// the ring is full, spinning for the spin budget, then parking for space.
#[inline(always)]
fn wait_for_slot<B: SlotBackend + ?Sized, T>(b: &B, timeout: Duration, mut reserve: impl FnMut() -> Result<T, SlotError>) -> Result<T, SlotError> {
    let mut pacing = Pacing::new(b.spin_budget(), timeout);
    loop {
        match reserve() {
            Err(SlotError::NoFreeSlot) => {}
            other => return other,
        }
        let left = match pacing.after_miss() {
            Pace::Again => continue,
            Pace::Expired => return Err(SlotError::TimedOut(timeout)),
            Pace::Park(left) => left,
        };
        let mut result = None;
        b.wait_for_space(left, &mut || match reserve() {
            Err(SlotError::NoFreeSlot) => true,
            other => {
                result = Some(other);
                false
            }
        });
        if let Some(r) = result {
            return r;
        }
    }
}

/// The readers' wait, for any form of taking the next sample (`next`):
/// polls, spinning for the spin budget, then parks on the notify word.
#[inline(always)]
fn wait_for_sample<B: SlotBackend + ?Sized, T>(b: &B, timeout: Duration, mut next: impl FnMut() -> Result<Option<T>, SlotError>) -> Result<Option<T>, SlotError> {
    let mut pacing = Pacing::new(b.spin_budget(), timeout);
    // Spin without touching the notify word (it lives on the writers'
    // cache line), then capture the epoch, re-check, and park.
    loop {
        if let Some(h) = next()? {
            return Ok(Some(h));
        }
        let left = match pacing.after_miss() {
            Pace::Again => continue,
            Pace::Expired => return Ok(None),
            Pace::Park(left) => left,
        };
        let epoch = b.notify_generation();
        if let Some(h) = next()? {
            return Ok(Some(h));
        }
        b.wait_for_change(epoch, left);
    }
}

/// Forwards every method to the pointee, so a `Reader`, `Publisher` … can
/// hold `&B`, `Arc<B>` or `Box<B>`.
macro_rules! forward_backend {
    ($($ty:ty),*) => {$(
        impl<B: SlotBackend + ?Sized> SlotBackend for $ty {
            fn reserve_slot(&self, m: ReaderMask) -> Result<SlotHandle, SlotError> { (**self).reserve_slot(m) }
            fn commit_slot(&self, h: SlotHandle, b: &[u8]) -> Result<u64, SlotError> { (**self).commit_slot(h, b) }
            fn discard_slot(&self, h: SlotHandle) -> Result<(), SlotError> { (**self).discard_slot(h) }
            fn slot_data_ptr(&self, h: SlotHandle) -> Result<(*mut u8, usize), SlotError> { (**self).slot_data_ptr(h) }
            fn commit_in_place(&self, h: SlotHandle, len: usize) -> Result<u64, SlotError> { (**self).commit_in_place(h, len) }
            fn slot_read_ptr(&self, h: SlotHandle) -> Result<(*const u8, usize), SlotError> { (**self).slot_read_ptr(h) }
            fn reserve_loan(&self, m: ReaderMask) -> Result<(SlotHandle, *mut u8, usize), SlotError> { (**self).reserve_loan(m) }
            fn next_unread_read(&self, r: u8) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> { (**self).next_unread_read(r) }
            fn next_unread_slot(&self, r: u8) -> Result<Option<SlotHandle>, SlotError> { (**self).next_unread_slot(r) }
            fn read_slot(&self, h: SlotHandle) -> Result<(SlotHeader, Vec<u8>), SlotError> { (**self).read_slot(h) }
            fn mark_read(&self, h: SlotHandle, r: u8) -> Result<(), SlotError> { (**self).mark_read(h, r) }
            fn mark_reader_disconnected(&self, r: u8) -> Result<(), SlotError> { (**self).mark_reader_disconnected(r) }
            fn register_reader(&self) -> Result<u8, SlotError> { (**self).register_reader() }
            fn unregister_reader(&self, r: u8) -> Result<(), SlotError> { (**self).unregister_reader(r) }
            fn reader_stats(&self, r: u8) -> Result<ReaderStats, SlotError> { (**self).reader_stats(r) }
            fn slot_count(&self) -> usize { (**self).slot_count() }
            fn slot_capacity(&self) -> usize { (**self).slot_capacity() }
            fn slot_total_size(&self) -> usize { (**self).slot_total_size() }
            fn overflow_policy(&self) -> OverflowPolicy { (**self).overflow_policy() }
            fn type_hash(&self) -> Option<[u8; 16]> { (**self).type_hash() }
            fn spin_budget(&self) -> Duration { (**self).spin_budget() }
            fn ensure_capacity(&self, len: usize) -> Result<(), SlotError> { (**self).ensure_capacity(len) }
            fn notify_generation(&self) -> u64 { (**self).notify_generation() }
            fn wait_for_change(&self, last: u64, t: Duration) { (**self).wait_for_change(last, t) }
            fn wait_for_space(&self, t: Duration, f: &mut dyn FnMut() -> bool) { (**self).wait_for_space(t, f) }
            fn reserve_slot_timeout(&self, m: ReaderMask, t: Duration) -> Result<SlotHandle, SlotError> { (**self).reserve_slot_timeout(m, t) }
            fn next_unread_slot_timeout(&self, r: u8, t: Duration) -> Result<Option<SlotHandle>, SlotError> { (**self).next_unread_slot_timeout(r, t) }
            fn reserve_loan_timeout(&self, m: ReaderMask, t: Duration) -> Result<(SlotHandle, *mut u8, usize), SlotError> { (**self).reserve_loan_timeout(m, t) }
            fn next_unread_read_timeout(&self, r: u8, t: Duration) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> { (**self).next_unread_read_timeout(r, t) }
        }
    )*};
}
forward_backend!(&B, std::sync::Arc<B>, Box<B>);
