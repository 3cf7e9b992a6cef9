//! The options of a new ring, and `attach_or_create`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Generation, GrowthStrategy, PosixSlotAllocator};

use crate::backend::{OverflowPolicy, DEFAULT_SPIN};
use crate::error::OpenError;
use crate::segment::dir::resolve;

/// Options for [`PosixSlotAllocator::builder`].
#[derive(Debug, Clone)]
pub struct PosixSlotAllocatorBuilder {
    pub(super) slot_count: usize,
    pub(super) capacity: usize,
    pub(super) policy: OverflowPolicy,
    pub(super) max_readers: u32,
    pub(super) max_writers: u32,
    pub(super) type_hash: Option<[u8; 16]>,
    pub(super) discovery_dir: Option<PathBuf>,
    pub(super) spin: Duration,
    pub(super) start_seq: u64,
    pub(super) start_notify_epoch: u32,
    pub(super) remove_on_drop: bool,
    pub(super) growth: GrowthStrategy,
}

impl PosixSlotAllocatorBuilder {
    /// How the ring grows when a writer needs a sample larger than its
    /// slots (default [`GrowthStrategy::Static`]: it does not, and such a
    /// sample is an error). A growing ring moves to a new, larger segment
    /// generation; readers finish the old one in order and follow, and the
    /// old one is removed when its last reader has moved. Every handle
    /// follows on its own. See [`PosixSlotAllocator::reserve_for`].
    #[must_use]
    pub fn growth(mut self, growth: GrowthStrategy) -> Self {
        self.growth = growth;
        self
    }
    /// Overflow policy (default `KeepAll`).
    #[must_use]
    pub fn overflow_policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Reader table size, 1 to 64 (default 64).
    #[must_use]
    pub fn max_readers(mut self, n: u32) -> Self {
        self.max_readers = n;
        self
    }
    /// Writer table size, 1 to 64 (default 16).
    #[must_use]
    pub fn max_writers(mut self, n: u32) -> Self {
        self.max_writers = n;
        self
    }
    /// Type hash stored in the segment; typed endpoints check it.
    #[must_use]
    pub fn type_hash(mut self, hash: [u8; 16]) -> Self {
        self.type_hash = Some(hash);
        self
    }
    /// Directory for bare flink names (default [`default_discovery_dir`](crate::default_discovery_dir)).
    #[must_use]
    pub fn discovery_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discovery_dir = Some(dir.into());
        self
    }
    /// How long this handle's blocking calls spin before parking.
    #[must_use]
    pub fn spin_budget(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }
    /// First sequence number (default 0; tests start near `u64::MAX`).
    #[must_use]
    pub fn start_seq(mut self, seq: u64) -> Self {
        self.start_seq = seq;
        self
    }

    /// Whether dropping the creator's handle removes the segment (default
    /// `true`: the creator owns it). With `false` the ring belongs to all
    /// its participants: it stays while any handle is attached, and the last
    /// handle to leave removes it — for a ring many processes share and any
    /// of them may leave first, such as a domain-wide multicast ring. (Its
    /// readers then get [`SlotError::WritersGone`](crate::SlotError::WritersGone) whenever no writer is
    /// attached: the creator no longer vouches for future writes.)
    #[must_use]
    pub fn remove_on_drop(mut self, remove: bool) -> Self {
        self.remove_on_drop = remove;
        self
    }

    /// First value of the data notify epoch (default 0). For tests of the
    /// futex word's wrap-around.
    #[doc(hidden)]
    #[must_use]
    pub fn start_notify_epoch(mut self, epoch: u32) -> Self {
        self.start_notify_epoch = epoch;
        self
    }

    /// Creates the segment and its flink file. A bare name (no `/`) is put in
    /// the discovery directory; a path is used as given (its directory must be
    /// ours and not group/other writable). A stale segment already published
    /// there (creator dead, nobody attached) is removed first.
    ///
    /// # Errors
    /// [`OpenError::Config`] for an out-of-range option; [`OpenError::InUse`]
    /// when a live segment is published there; [`OpenError::Exists`] when
    /// something that is not a removable flink file is there (a planted
    /// link, a foreign or corrupt file), or another creator published first;
    /// [`OpenError::Unsafe`] for an unsafe directory; [`OpenError::Io`] for
    /// system errors (`WouldBlock`: another process is removing the stale
    /// segment there right now).
    pub fn create(self, flink_path: impl AsRef<Path>) -> Result<PosixSlotAllocator, OpenError> {
        Generation::create_with(self, flink_path.as_ref()).map(PosixSlotAllocator::over)
    }

    /// Attaches to the ring published at `flink_path` or, when there is
    /// none, creates it with these options: what each of several processes
    /// sharing one ring does when any of them may come first (a domain's
    /// multicast ring, a DDS topic's ring). A creator racing us, or the last
    /// participant removing the ring right now, makes it try again (up to 64
    /// times). An attached handle takes this builder's spin budget; the
    /// other options are the creator's.
    ///
    /// # Errors
    /// As [`attach`](PosixSlotAllocator::attach) and
    /// [`create`](Self::create); the last `InUse` / `Exists` when every try
    /// lost a race.
    pub fn attach_or_create(self, flink_path: impl AsRef<Path>) -> Result<PosixSlotAllocator, OpenError> {
        let flink_path = flink_path.as_ref();
        let mut last = None;
        for _ in 0..64 {
            match PosixSlotAllocator::attach_in(flink_path, self.discovery_dir.as_ref()) {
                Ok(mut ring) => {
                    ring.set_spin_budget(self.spin);
                    return Ok(ring);
                }
                Err(OpenError::BeingRemoved { .. }) => {}
                Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            match self.clone().create(flink_path) {
                Ok(ring) => return Ok(ring),
                Err(e @ (OpenError::InUse { .. } | OpenError::Exists(_))) => last = Some(e),
                Err(OpenError::Busy { .. } | OpenError::BeingRemoved { .. }) => {}
                Err(e) => return Err(e),
            }
            std::thread::yield_now();
        }
        let path = resolve(flink_path, self.discovery_dir.as_deref(), false).unwrap_or_else(|_| flink_path.to_owned());
        Err(last.unwrap_or(OpenError::Busy { path, what: "other processes keep creating and removing the ring there" }))
    }
}

impl PosixSlotAllocator {
    /// A builder for a ring of `slot_count` slots (rounded up to a power of
    /// two) of `slot_capacity` bytes each.
    pub fn builder(slot_count: usize, slot_capacity: usize) -> PosixSlotAllocatorBuilder {
        PosixSlotAllocatorBuilder {
            slot_count,
            capacity: slot_capacity,
            policy: OverflowPolicy::KeepAll,
            max_readers: 64,
            max_writers: 16,
            type_hash: None,
            discovery_dir: None,
            spin: DEFAULT_SPIN,
            start_seq: 0,
            start_notify_epoch: 0,
            remove_on_drop: true,
            growth: GrowthStrategy::Static,
        }
    }
}
