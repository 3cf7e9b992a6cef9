//! The writer table: one entry per writing handle, claimed on its first
//! reservation with its liveness lock held from before the claim until
//! after it is freed. The entry records what a reaper needs when its
//! owner dies (the sequence it was claiming) and the counters `flink
//! inspect` shows. Who holds which lock is the caller's business: the
//! table takes and drops them through the closures it is given.

use super::stamp::{entry_kind, entry_next, ENTRY_ACTIVE, ENTRY_FREE, ENTRY_KIND, ENTRY_RECLAIMING};
use super::{Parker, RingView};

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// One writer's entry (claimed on a handle's first reservation, with the
/// liveness lock of its index held from before the claim until after it is
/// freed).
#[repr(C, align(64))]
pub(crate) struct WriterEntry {
    /// `epoch << 2 | ENTRY_*` (see `protocol::entry_kind`).
    pub state: AtomicU32,
    /// Owner's pid, for display only.
    pub pid: AtomicU32,
    /// Samples committed (display; exact for one writing thread per handle).
    pub commits: AtomicU64,
    /// The `KeepAll` sequence this writer last tried to claim (see
    /// `RingView::reserve` and `skip_loans_of`).
    pub claiming: AtomicU64,
    /// Samples this writer gave up on because the ring was full (display;
    /// counted by a never-blocking sender, see `record_dropped`).
    pub dropped: AtomicU64,
}

/// The writer entries of one ring.
#[derive(Clone, Copy)]
pub(crate) struct WriterTable<'a>(pub &'a [WriterEntry]);

/// An entry in use: its owner alive, or being reaped.
fn in_use(state: u32) -> bool {
    matches!(entry_kind(state), ENTRY_ACTIVE | ENTRY_RECLAIMING)
}

impl<'a> WriterTable<'a> {
    /// Claims a free entry for process `pid`: `take(w)` takes entry `w`'s
    /// lock first and `give(w)` drops it again if another claimer won the
    /// entry, so an `ACTIVE` entry's lock is held for as long as its owner
    /// lives. `write_seq` is the ring's now: the entry claims nothing yet.
    pub fn claim(&self, pid: u32, write_seq: u64, take: &mut dyn FnMut(u8) -> bool, give: &mut dyn FnMut(u8)) -> Option<u8> {
        for (w, e) in self.0.iter().enumerate() {
            let st = e.state.load(Ordering::Relaxed);
            if entry_kind(st) != ENTRY_FREE || !take(w as u8) {
                continue;
            }
            if e.state.compare_exchange(st, entry_next(st), Ordering::SeqCst, Ordering::Relaxed).is_err() {
                give(w as u8);
                continue;
            }
            e.pid.store(pid, Ordering::Relaxed);
            e.commits.store(0, Ordering::Relaxed);
            e.dropped.store(0, Ordering::Relaxed);
            // Nothing claimed yet: a sequence far from the ring.
            e.claiming.store(write_seq.wrapping_sub(1 << 62), Ordering::Relaxed);
            return Some(w as u8);
        }
        None
    }

    /// Frees entry `w`, its owner leaving (its loans skipped already).
    pub fn free(&self, w: u8) {
        let Some(e) = self.0.get(usize::from(w)) else { return };
        let st = e.state.load(Ordering::SeqCst);
        if entry_kind(st) == ENTRY_ACTIVE {
            let _ = e.state.compare_exchange(st, st & !ENTRY_KIND, Ordering::SeqCst, Ordering::Relaxed);
        }
    }

    /// Entry `w`'s claim word (see `RingView::reserve`).
    #[inline]
    pub fn claiming(&self, w: u8) -> Option<&'a AtomicU64> {
        self.0.get(usize::from(w)).map(|e| &e.claiming)
    }

    /// Counts a commit of entry `w`'s owner (display; its own cache line
    /// and one writing thread per handle: no RMW).
    #[inline]
    pub fn count_commit(&self, w: u8) {
        if let Some(e) = self.0.get(usize::from(w)) {
            e.commits.store(e.commits.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// Counts a sample entry `w`'s owner gave up on, the ring full.
    pub fn count_dropped(&self, w: u8) {
        if let Some(e) = self.0.get(usize::from(w)) {
            e.dropped.store(e.dropped.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// Whether an `ACTIVE` entry's owner is alive (`alive(w)`: its lock).
    pub fn any_alive(&self, alive: &dyn Fn(u8) -> bool) -> bool {
        self.0.iter().enumerate().any(|(w, e)| entry_kind(e.state.load(Ordering::Relaxed)) == ENTRY_ACTIVE && alive(w as u8))
    }

    /// Frees the entries of dead writers: an entry in use whose lock
    /// (`alive(w)`) is free and that `take(w)` could take. Its open loans,
    /// and a claim it never stamped, become skipped sequences of `ring`, so
    /// readers move past them. Returns (entries freed, sequences skipped).
    ///
    /// The reaper holds a dead entry's lock while it frees the entry: the
    /// lock says "someone is at it" to other reapers, and a reaper that dies
    /// midway leaves the entry `RECLAIMING` with its lock free again, so the
    /// next reaper finishes the job (every step may be redone).
    pub fn reap_dead<P: Parker>(&self, ring: &RingView<'_, P>, alive: &dyn Fn(u8) -> bool, take: &mut dyn FnMut(u8) -> bool, give: &mut dyn FnMut(u8)) -> (u32, u32) {
        let (mut freed, mut skipped) = (0, 0);
        for (w, e) in self.0.iter().enumerate() {
            if !in_use(e.state.load(Ordering::SeqCst)) || alive(w as u8) || !take(w as u8) {
                continue;
            }
            let st = e.state.load(Ordering::SeqCst);
            let reclaiming = (st & !ENTRY_KIND) | ENTRY_RECLAIMING;
            let taken = match entry_kind(st) {
                ENTRY_ACTIVE => e.state.compare_exchange(st, reclaiming, Ordering::SeqCst, Ordering::Relaxed).is_ok(),
                kind => kind == ENTRY_RECLAIMING,
            };
            if taken {
                // A claim another *live* writer records may be that writer's
                // own (see `skip_loans_of`).
                let claimed_by_other = |s: u64| {
                    self.0.iter().enumerate().any(|(o, x)| o != w && in_use(x.state.load(Ordering::SeqCst)) && x.claiming.load(Ordering::Acquire) == s && alive(o as u8))
                };
                let (n, deferred) = ring.skip_loans_of(w as u8, Some(e.claiming.load(Ordering::SeqCst)), &claimed_by_other);
                skipped += n;
                if deferred {
                    // Keep the dead entry (and its claim) for a later reap.
                    e.state.store((st & !ENTRY_KIND) | ENTRY_ACTIVE, Ordering::SeqCst);
                } else {
                    e.state.store(st & !ENTRY_KIND, Ordering::SeqCst);
                    freed += 1;
                }
            }
            give(w as u8);
        }
        (freed, skipped)
    }
}
