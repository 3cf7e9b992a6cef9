//! Waking and waiting: the futex words readers park on for data and
//! writers for space, with their waiter counts.

use std::time::Duration;

use super::{Parker, RingView};

use crate::sync::{light_barrier, loom_sc_fence, Ordering};

impl<P: Parker> RingView<'_, P> {
    #[inline]
    pub(super) fn notify_data(&self) {
        // Always bump (one uncontended RMW for a single writer) so a caller of
        // `data_epoch()` + `wait_data()` can never miss a commit; wake only
        // when somebody waits.
        self.ctrl.data.epoch.fetch_add(1, Ordering::SeqCst);
        loom_sc_fence();
        if self.ctrl.data.waiters.load(Ordering::SeqCst) != 0 {
            self.parker.wake_all(&self.ctrl.data.epoch);
        }
    }

    #[inline]
    pub(super) fn notify_space(&self) {
        // SYNC POINT (space): our release (a plain store) precedes this load
        // in program order; `wait_space` counts itself, then runs the heavy
        // barrier, then re-checks. Either our store is visible to its
        // re-check or this load sees its count.
        light_barrier();
        if self.ctrl.space.waiters.load(Ordering::Relaxed) != 0 {
            self.ctrl.space.epoch.fetch_add(1, Ordering::SeqCst);
            self.parker.wake_all(&self.ctrl.space.epoch);
        }
    }

    /// Wakes every reader parked for data, whether or not anything was
    /// committed (a reader disconnected, or the ring moved on).
    pub fn wake_readers(&self) {
        self.ctrl.data.epoch.fetch_add(1, Ordering::SeqCst);
        self.parker.wake_all(&self.ctrl.data.epoch);
    }

    /// Sets the data notify epoch of a ring nobody else can see yet.
    pub fn init_data_epoch(&self, epoch: u32) {
        self.ctrl.data.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The data notify epoch (see [`crate::SlotBackend::notify_generation`]).
    pub fn data_epoch(&self) -> u32 {
        self.ctrl.data.epoch.load(Ordering::SeqCst)
    }

    /// Waits until the data epoch differs from `last`.
    pub fn wait_data(&self, last: u32, timeout: Duration) {
        let w = &self.ctrl.data;
        w.waiters.fetch_add(1, Ordering::SeqCst);
        loom_sc_fence();
        if w.epoch.load(Ordering::SeqCst) == last {
            self.parker.wait(&w.epoch, last, timeout);
        }
        w.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Waits while `still_full()`: register, read the epoch, re-check,
    /// then sleep. (The reverse order loses wake-ups; the loom model shows it.)
    pub fn wait_space(&self, timeout: Duration, still_full: &mut dyn FnMut() -> bool) {
        let w = &self.ctrl.space;
        w.waiters.fetch_add(1, Ordering::SeqCst);
        self.parker.heavy_barrier();
        let g = w.epoch.load(Ordering::SeqCst);
        if still_full() {
            self.parker.wait(&w.epoch, g, timeout);
        }
        w.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
