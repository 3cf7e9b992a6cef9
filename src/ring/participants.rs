//! This handle as a participant: its writer entry, the liveness checks
//! through the segment's kernel locks, and reaping what dead participants
//! left (through the protocol's reader and writer tables).

use super::{Generation, Reaped, CHECK_INTERVAL_MS, NO_WRITER};

use crate::backend::SlotHandle;
use crate::error::SlotError;
use crate::segment::liveness as lock;
use crate::sync::{AtomicU64, Ordering};
use crate::sys::clock::coarse_ms;

impl Generation {

    /// This handle's writer entry, claimed on first use (reaping dead
    /// writers if every entry is taken).
    #[inline]
    pub(super) fn writer_index(&self) -> Result<u8, SlotError> {
        let w = self.writer.load(Ordering::Relaxed);
        if w != NO_WRITER {
            return Ok(w as u8);
        }
        let _g = self.lock_table.lock();
        let w = self.writer.load(Ordering::Relaxed);
        if w != NO_WRITER {
            return Ok(w as u8);
        }
        let w = match self.claim_writer_entry() {
            Some(w) => w,
            None => {
                self.reap_dead_locked();
                self.claim_writer_entry().ok_or(SlotError::WritersFull { max: self.info.max_writers })?
            }
        };
        self.writer.store(u32::from(w), Ordering::Relaxed);
        Ok(w)
    }

    /// Claims a free writer entry (see `WriterTable::claim`).
    pub(super) fn claim_writer_entry(&self) -> Option<u8> {
        let write_seq = self.ring().write_seq();
        let byte = |w: u8| lock::WRITER_BASE + u64::from(w);
        self.writers().claim(std::process::id(), write_seq, &mut |w| self.take_byte(byte(w)), &mut |w| self.drop_byte(byte(w)))
    }

    /// Frees what dead participants left behind: the entries of readers
    /// whose processes died (their bits cleared, their pins dropped, so
    /// `KeepAll` writers waiting on them resume) and of dead writers (their
    /// open loans, and a claim they never stamped, become skipped sequences,
    /// so readers move past them). Liveness is decided by the participants'
    /// kernel locks, never by pids. Blocked calls and full rings do this on
    /// their own; call it to do it now.
    pub(crate) fn reap_dead(&self) -> Reaped {
        let _g = self.lock_table.lock();
        self.reap_dead_locked()
    }

    /// [`reap_dead`](Self::reap_dead), with `lock_table` held by the caller.
    ///
    /// A reaper holds a dead entry's lock byte while it frees the entry: the
    /// lock says "someone is at it" to other reapers, and a reaper that dies
    /// midway leaves the entry `RECLAIMING` with its lock free again, so the
    /// next reaper finishes the job (every step may be redone).
    pub(super) fn reap_dead_locked(&self) -> Reaped {
        let ring = self.ring();
        let mut out = Reaped::default();
        let reader_byte = |r: u8| lock::READER_BASE + u64::from(r);
        out.readers = ring.reap_dead_readers(
            &|r| lock::alive(&self.file, reader_byte(r)),
            &|r, st| self.upstream_alive(r, st),
            &mut |r| self.take_byte(reader_byte(r)),
            &mut |r| self.drop_byte(reader_byte(r)),
        );
        let writer_byte = |w: u8| lock::WRITER_BASE + u64::from(w);
        let (freed, skipped) = self.writers().reap_dead(
            ring,
            &|w| lock::alive(&self.file, writer_byte(w)),
            &mut |w| self.take_byte(writer_byte(w)),
            &mut |w| self.drop_byte(writer_byte(w)),
        );
        out.writers += freed;
        out.skipped += skipped;
        out
    }

    /// Takes a lock byte on this handle's descriptor (`lock_table` held).
    pub(super) fn take_byte(&self, byte: u64) -> bool {
        lock::set(&self.locks, lock::Kind::Write, byte, 1).unwrap_or(false)
    }

    /// Drops a lock byte this handle took (`lock_table` held).
    pub(super) fn drop_byte(&self, byte: u64) {
        let _ = lock::set(&self.locks, lock::Kind::Unlock, byte, 1);
    }

    /// Whether anyone can still write: the creator or a writer entry's owner
    /// is alive.
    pub(crate) fn writers_alive(&self) -> bool {
        lock::alive(&self.file, lock::CREATOR)
            || self.writers().any_alive(&|w| lock::alive(&self.file, lock::WRITER_BASE + u64::from(w)))
    }

    /// Whether the creator's process is alive (decided by its kernel lock:
    /// one `fcntl`). For a transport this says whether the peer that owns
    /// an input port still exists.
    pub(crate) fn creator_alive(&self) -> bool {
        lock::alive(&self.file, lock::CREATOR)
    }

    /// True at most once per `CHECK_INTERVAL_MS` per handle and side (so a
    /// busy reader thread does not use up a blocked writer's checks).
    pub(super) fn check_due(next_ms: &AtomicU64) -> bool {
        let now = coarse_ms();
        let next = next_ms.load(Ordering::Relaxed);
        now >= next && next_ms.compare_exchange(next, now + CHECK_INTERVAL_MS, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// A reader found nothing. Looks at the clock every 64 empty polls only
    /// (a parked call resets the count, so it looks right after waking).
    #[inline]
    pub(super) fn empty_poll(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        let n = self.idle_polls.load(Ordering::Relaxed).wrapping_add(1);
        self.idle_polls.store(n, Ordering::Relaxed);
        if n % 64 != 0 {
            return Ok(None);
        }
        self.idle(reader_index)
    }

    /// A reader found nothing: now and then, see whether it waits on a dead
    /// writer (reap it, and look again) or on nobody at all.
    #[cold]
    pub(super) fn idle(&self, reader_index: u8) -> Result<Option<SlotHandle>, SlotError> {
        if !Self::check_due(&self.next_read_check_ms) {
            return Ok(None);
        }
        let ring = self.ring();
        if ring.stalled_at(reader_index).is_some() && self.reap_dead().writers > 0 {
            if let Some(h) = ring.next_unread(reader_index)? {
                return Ok(Some(SlotHandle { slot_index: h.index, seq: h.seq }));
            }
        }
        if !self.writers_alive() {
            // A writer may have committed just before it exited.
            return match ring.next_unread(reader_index)? {
                Some(h) => Ok(Some(SlotHandle { slot_index: h.index, seq: h.seq })),
                None => Err(SlotError::WritersGone),
            };
        }
        Ok(None)
    }

    /// Counts one sample this handle's writer gave up on because the ring
    /// was full (a transport that never blocks drops it). Shown as the
    /// writer's `dropped` by [`status`](Self::status) and `flink inspect`.
    /// Does nothing before this handle's first reservation.
    pub(crate) fn record_dropped(&self) {
        let w = self.writer.load(Ordering::Relaxed);
        if w != NO_WRITER {
            self.writers().count_dropped(w as u8);
        }
    }
}
