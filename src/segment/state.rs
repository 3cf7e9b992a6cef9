//! Whether a segment is live, stale, leaked or an orphan: one judgement,
//! from the participants' kernel locks, for every kind.

use std::fs::File;

use super::liveness;

/// Whether a segment is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Its creator, or some attached process, is alive.
    Live,
    /// Creator dead and nobody attached: `flink clean` and a new `create`
    /// of the same flink path remove it.
    Stale,
    /// Nobody attached, but left in place on purpose (see
    /// [`PosixSlotAllocator::leak`](crate::PosixSlotAllocator::leak)): kept
    /// until someone attaches and owns it, or `flink clean --leaked`.
    Leaked,
    /// The flink file names an object that does not exist any more.
    Orphan,
}

impl SegmentState {
    /// `live`, `stale` or `orphan`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Stale => "stale",
            Self::Leaked => "leaked",
            Self::Orphan => "orphan",
        }
    }
}

impl SegmentState {
    /// The state of a segment whose object exists: live if anyone holds a
    /// participant byte of it (`probe` holds none) or of an older object of
    /// it (`lineage_held`), else leaked or stale as its flink file says.
    pub(crate) fn judge(probe: &File, lineage_held: bool, leaked: bool) -> Self {
        match (liveness::held(probe, 0, liveness::LOCK_SPAN) || lineage_held, leaked) {
            (true, _) => Self::Live,
            (false, true) => Self::Leaked,
            (false, false) => Self::Stale,
        }
    }
}
