//! The reader table: registering, disconnecting, carrying readers over to
//! a growing ring's next generation, and reaping the dead.

use super::shared::ReaderEntry;
use super::stamp::{entry_kind, entry_next, ENTRY_ACTIVE, ENTRY_ADOPTING, ENTRY_FREE, ENTRY_KIND, ENTRY_RECLAIMING};
use super::{Parker, RingView};

use crate::error::SlotError;
use crate::sync::Ordering;

/// A newly claimed entry's owner and words: no pins, nothing kept, no
/// counts (its cursor is set by the claimer).
fn fresh(e: &ReaderEntry, pid: u32) {
    e.pid.store(pid, Ordering::Relaxed);
    e.pinned.store(0, Ordering::Relaxed);
    e.kept.0.iter().for_each(|k| k.store(0, Ordering::Relaxed));
    e.kept_total.store(0, Ordering::Relaxed);
    e.received.store(0, Ordering::Relaxed);
    e.lost.store(0, Ordering::Relaxed);
}

impl<P: Parker> RingView<'_, P> {
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
            fresh(e, pid);
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
            fresh(e, pid_of(r));
            e.cursor.store(start, Ordering::Relaxed);
            self.ctrl.registered.0.fetch_or(1 << r, Ordering::Relaxed);
        }
    }

    /// Turns `ADOPTING` entry `r` into this process's `ACTIVE` one (its
    /// lock taken by the caller first, as in `register_with`), its counters
    /// going on from its entry in `before`, the previous generation (drained,
    /// and still the caller's). False if the entry is not `ADOPTING` (a
    /// reaper judged it dead meanwhile).
    pub fn adopt(&self, r: u8, pid: u32, before: &Self) -> bool {
        let Some(e) = self.readers.get(usize::from(r)).filter(|_| u32::from(r) < self.geo.max_readers) else { return false };
        let st = e.state.load(Ordering::SeqCst);
        if entry_kind(st) != ENTRY_ADOPTING || e.state.compare_exchange(st, (st & !ENTRY_KIND) | ENTRY_ACTIVE, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return false;
        }
        e.pid.store(pid, Ordering::Relaxed);
        // Only the owner writes its counters, and it is us on both sides.
        let Some(before) = before.readers.get(usize::from(r)) else { return true };
        e.received.store(before.received.load(Ordering::Relaxed), Ordering::Relaxed);
        e.lost.store(before.lost.load(Ordering::Relaxed), Ordering::Relaxed);
        e.kept_total.store(before.kept_total.load(Ordering::Relaxed), Ordering::Relaxed);
        true
    }

    /// Frees the entries of dead readers: an `ACTIVE` or `RECLAIMING` entry
    /// whose lock (`alive(r)`) is free and that `take(r)` could take (held
    /// while it is freed, then given back with `give(r)`), and an
    /// `ADOPTING` one whose owner is gone upstream (`adopting_alive(r,
    /// state)`: it has not arrived from a growing ring's previous
    /// generation, where it is alive while it holds its entry). Returns how
    /// many it freed.
    pub fn reap_dead_readers(&self, alive: &dyn Fn(u8) -> bool, adopting_alive: &dyn Fn(u8, u32) -> bool, take: &mut dyn FnMut(u8) -> bool, give: &mut dyn FnMut(u8)) -> u32 {
        let mut freed = 0;
        for r in 0..self.readers.len().min(self.geo.max_readers as usize) as u8 {
            let st = self.reader_state(r);
            if entry_kind(st) == ENTRY_ADOPTING {
                if !adopting_alive(r, st) && self.reap_reader(r, st) {
                    freed += 1;
                }
                continue;
            }
            if !matches!(entry_kind(st), ENTRY_ACTIVE | ENTRY_RECLAIMING) || alive(r) || !take(r) {
                continue;
            }
            // Ours now: an ACTIVE entry's owner holds it for life, so the
            // owner is dead (or a reaper before us died).
            if self.reap_reader(r, self.reader_state(r)) {
                freed += 1;
            }
            give(r);
        }
        freed
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
}
