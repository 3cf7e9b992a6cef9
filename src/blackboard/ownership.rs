//! Who removes a board's segment and flink file, and when: the whole policy
//! in one place (`leave`, run when the last handle of a mapping goes), and
//! the two switches [`Blackboard::leak`](super::Blackboard::leak) and
//! [`Blackboard::own`](super::Blackboard::own) pull.
//!
//! * the creator's handle removes both when it goes (`Remove`);
//! * an attached handle removes both only if it is the last participant
//!   out and the creator is gone (`LastOut`, as a ring's attacher);
//! * a handle whose creation failed to publish removes nothing (`Keep`);
//! * an attacher that called `own` removes both like a creator;
//! * a board whose flink file is marked leaked is removed by nobody's
//!   leaving (see `segment::leave_segment`).

use std::sync::atomic::Ordering;

use super::segment::Segment;
use crate::error::OpenError;
use crate::segment::leave::{leave_segment, set_leaked};

/// What a segment's last local handle does when it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Leave {
    /// Remove segment and flink file (the creator, or an attacher that
    /// called `own`).
    Remove = 0,
    /// Remove them if every other participant, the creator included, is
    /// gone (an attacher).
    LastOut = 1,
    /// Remove nothing (a creation that failed to publish).
    Keep = 2,
}

impl Segment {
    /// [`Blackboard::leak`](super::Blackboard::leak): marks the board leaked
    /// in its flink file (as a ring's `leak`): no handle's leaving removes
    /// it, until someone `own`s it or `flink clean --leaked` removes it.
    pub(crate) fn mark_leaked(&self) -> Result<(), OpenError> {
        set_leaked(&self.flink_path, &self.segment_name, true)
    }

    /// [`Blackboard::own`](super::Blackboard::own): this process's handles
    /// remove the board when they go, as its creator's do; no longer leaked.
    pub(crate) fn mark_owner(&self) -> Result<(), OpenError> {
        set_leaked(&self.flink_path, &self.segment_name, false)?;
        self.leave.store(Leave::Remove as u8, Ordering::Relaxed);
        Ok(())
    }

    /// Whether leaving will remove the segment unconditionally.
    pub(crate) fn is_owner(&self) -> bool {
        self.leave.load(Ordering::Relaxed) == Leave::Remove as u8
    }

    /// Runs when the last local handle of the mapping is dropped: the same
    /// rule as a ring's handle (`segment::leave`).
    pub(crate) fn leave(&mut self) {
        if std::process::id() != self.pid {
            // A `fork`ed copy: the locks and the segment are the parent's.
            return;
        }
        match self.leave.load(Ordering::Relaxed) {
            x if x == Leave::Keep as u8 => {}
            x => leave_segment(&self.flink_path, std::slice::from_ref(&self.segment_name), &self.locks, x == Leave::Remove as u8),
        }
    }
}
