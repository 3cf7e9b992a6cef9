//! Growing rings: a ring whose samples outgrow its slots moves to a new,
//! larger segment — its next *generation* — and every handle follows.
//!
//! # The move
//!
//! A writer that needs larger slots takes the generation's `GROW` lock byte
//! (one mover at a time; a mover that dies drops it, and the next one
//! finishes the job), then:
//!
//! 1. sets `CHAIN_MOVING` (SeqCst). From now on a writer that claims a
//!    sequence here and then sees the flag discards its claim (a skipped
//!    sequence) and writes into the next generation instead;
//! 2. reads `write_seq` into `moved_at`. Every claim below it was made by a
//!    writer that has not seen the flag, and is committed or discarded
//!    here; every claim at or past it sees the flag (the claim and the
//!    mover's read are both SeqCst on `write_seq`, except a `DropOldest`
//!    claim of exactly `moved_at`, see `RingView::drained_to`);
//! 3. creates the next generation: same geometry but the capacity, its
//!    reader table seeded with every reader registered here as `ADOPTING`
//!    (registered from its first sequence, so `KeepAll` writers there keep
//!    every sample for it), and its header naming this one as predecessor;
//! 4. publishes `successor` and `moved_at`, then `CHAIN_MOVED` (Release);
//!    republishes the flink file to name the new generation (new attachers
//!    start there); wakes readers parked here.
//!
//! A reader reads this generation in order up to `moved_at`, then follows:
//! it takes its entry's lock in the next generation, turns its `ADOPTING`
//! entry `ACTIVE`, and only then leaves this one. Nothing is lost or
//! duplicated: the samples below `moved_at` are read here, the rest there.
//!
//! # Liveness across generations
//!
//! An `ADOPTING` entry holds no lock in its generation; its owner is alive
//! while it holds its entry in the previous generation (`ACTIVE`, its lock
//! held there) or is itself still `ADOPTING` there (judged the same way,
//! one generation further back). A reaper that finds a dead one frees it,
//! so `KeepAll` writers never wait for a reader that died before arriving.
//!
//! # Release
//!
//! A moved generation is removed (unlinked) as soon as no reader is
//! registered in it any more: by the last reader to leave it, by a reaper
//! that freed its last dead reader, or by the last handle to drop. Handles
//! keep their mappings of old generations until they drop (a sample or loan
//! may still point into one); for `PowerOfTwo` growth that is at most the
//! size of the newest generation again.
//!
//! # The bound
//!
//! A ring has at most [`MAX_GENERATIONS`] (32) generations: the generation
//! of a slot handle travels in the top bits of its slot index (the slot
//! count takes at most 24), liveness checks walk back at most that far,
//! and `PowerOfTwo` growth reaches the largest capacity (1 GiB) from one
//! byte in 30 steps.

use std::sync::atomic::{AtomicU32 as StdAtomicU32, AtomicU8};
use std::time::{Duration, Instant};

use super::layout::{Layout, CHAIN_MOVED, CHAIN_MOVING, MAX_GENERATIONS};
use super::open::{config, NewSegment};
use super::{flink, lock, FlinkInfo, Generation, PosixSlotAllocator};

use crate::backend::SlotHandle;
use crate::error::{OpenError, SlotError};
use crate::protocol::{entry_kind, ENTRY_ACTIVE, ENTRY_ADOPTING};
use crate::sync::Ordering;
use crate::sys::shm;

/// How a ring grows when a sample does not fit its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GrowthStrategy {
    /// Never: a sample larger than the slot capacity is an error
    /// ([`SlotError::SampleTooLarge`]).
    #[default]
    Static,
    /// To the next power of two that holds the sample (at least twice the
    /// current capacity): few generations, up to 2x memory.
    PowerOfTwo,
    /// To exactly what the sample needs (rounded up to fill the slot's
    /// 64-byte stride): least memory, a generation per larger sample.
    BestFit,
}

impl GrowthStrategy {
    /// As stored in the segment header.
    pub(crate) fn code(self) -> u32 {
        match self {
            Self::Static => 0,
            Self::PowerOfTwo => 1,
            Self::BestFit => 2,
        }
    }

    /// From the header's code.
    pub(crate) fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Static),
            1 => Some(Self::PowerOfTwo),
            2 => Some(Self::BestFit),
            _ => None,
        }
    }

    /// `static`, `power-of-two` or `best-fit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::PowerOfTwo => "power-of-two",
            Self::BestFit => "best-fit",
        }
    }

    /// The capacity the next generation gets for a sample of `needed` bytes
    /// (`None`: this strategy does not grow, or beyond the 1 GiB limit).
    pub(crate) fn next_capacity(self, current: u32, needed: usize) -> Option<u32> {
        let needed = u32::try_from(needed).ok().filter(|&n| n <= super::layout::MAX_CAPACITY)?;
        let cap = match self {
            Self::Static => return None,
            Self::PowerOfTwo => needed.max(current.saturating_mul(2)).checked_next_power_of_two()?,
            Self::BestFit => (super::layout::stride_for(needed) - super::layout::SLOT_META_SIZE as u64) as u32,
        };
        Some(cap.min(super::layout::MAX_CAPACITY).max(needed))
    }
}

/// A slot handle's generation travels in the top bits of its slot index.
const DEPTH_SHIFT: u32 = 24;
const INDEX_MASK: u32 = (1 << DEPTH_SHIFT) - 1;

/// Splits a handle into (generation depth below the root, local handle).
#[inline]
pub(crate) fn split(h: SlotHandle) -> (u32, SlotHandle) {
    (h.slot_index >> DEPTH_SHIFT, SlotHandle { slot_index: h.slot_index & INDEX_MASK, seq: h.seq })
}

/// A local handle of generation `depth`, as the root hands it out.
#[inline]
pub(crate) fn join(depth: u32, h: SlotHandle) -> SlotHandle {
    SlotHandle { slot_index: (depth << DEPTH_SHIFT) | h.slot_index, seq: h.seq }
}

/// An error about a local handle, restated about the caller's handle.
pub(crate) fn outer_err(e: SlotError, outer: SlotHandle) -> SlotError {
    match e {
        SlotError::NotLoaned { seq, .. } => SlotError::NotLoaned { index: outer.slot_index, seq },
        SlotError::OutOfBounds { count, .. } => SlotError::OutOfBounds { index: outer.slot_index, count },
        other => other,
    }
}

fn generation_err(what: &'static str, detail: impl std::fmt::Display) -> SlotError {
    SlotError::Generation { what, detail: detail.to_string() }
}

/// How long a writer waits for another process's move to finish before it
/// looks at whether that mover died.
const MOVE_POLL: Duration = Duration::from_millis(1);
/// Longest wait for a live mover (it creates and fills one segment).
const MOVE_WAIT: Duration = Duration::from_secs(10);

/// Per-root state of a growing ring: which generation the writer and each
/// reader is in (depths below the root handle).
pub(crate) struct Depths {
    pub writer: StdAtomicU32,
    pub readers: [AtomicU8; 64],
}

impl Depths {
    pub fn new() -> Self {
        Self { writer: StdAtomicU32::new(0), readers: [const { AtomicU8::new(0) }; 64] }
    }
}

impl Generation {
    /// The generation `depth` below this (root) handle.
    #[inline]
    pub(crate) fn at_depth(&self, depth: u32) -> Result<&Self, SlotError> {
        if depth == 0 {
            Ok(self)
        } else {
            self.deep(depth)
        }
    }

    #[cold]
    fn deep(&self, depth: u32) -> Result<&Self, SlotError> {
        let mut g = self;
        for _ in 0..depth {
            g = g.next.get().ok_or(SlotError::Corrupt { what: "generation of a slot handle", value: u64::from(depth), limit: u64::from(MAX_GENERATIONS) })?;
        }
        Ok(g)
    }

    /// The deepest generation this handle has mapped, and its depth.
    pub(crate) fn newest(&self) -> (&Self, u32) {
        let mut g = self;
        let mut d = 0;
        while let Some(n) = g.next.get() {
            g = n;
            d += 1;
        }
        (g, d)
    }

    /// The header's chain flags (only a growing ring has any).
    #[inline]
    pub(crate) fn chain_flags(&self) -> u32 {
        self.header().chain.load(Ordering::Acquire)
    }

    /// Whether reader `r` has read everything this generation delivers and
    /// must follow to the next one.
    pub(crate) fn moved_past(&self, r: u8) -> bool {
        if self.chain_flags() & CHAIN_MOVED == 0 {
            return false;
        }
        let end = self.header().moved_at.load(Ordering::Acquire);
        self.ring().drained_to(r, end)
    }

    /// The next generation, mapped on first use (this generation must have
    /// moved).
    pub(crate) fn successor(&self) -> Result<&Self, SlotError> {
        if let Some(n) = self.next.get() {
            return Ok(n);
        }
        let _g = self.grow_lock.lock();
        if let Some(n) = self.next.get() {
            return Ok(n);
        }
        let h = self.header();
        if h.chain.load(Ordering::Acquire) & CHAIN_MOVED == 0 {
            return Err(generation_err("follow", "this generation has not moved (yet)"));
        }
        let id = h.successor.load(Ordering::Acquire);
        let name = crate::segment::name::name_of(id);
        let next = Self::attach_segment(&name, self.flink_path.clone(), self.spin).map_err(|e| generation_err("open the next generation", e))?;
        self.check_successor(&next)?;
        self.adopt_generation(next)
    }

    /// The next generation must continue this one: one generation on, this
    /// one as predecessor, the same geometry but a larger capacity.
    fn check_successor(&self, next: &Self) -> Result<(), SlotError> {
        let (a, b) = (&self.info, &next.info);
        let same = b.generation == a.generation + 1
            && b.predecessor == self.id
            && b.growth == a.growth
            && b.slot_count == a.slot_count
            && b.max_readers == a.max_readers
            && b.max_writers == a.max_writers
            && b.policy == a.policy
            && b.type_hash == a.type_hash
            && b.capacity > a.capacity;
        if same {
            Ok(())
        } else {
            Err(generation_err("open the next generation", format!("{} does not continue {} (generation, predecessor or geometry differ)", next.segment_name, self.segment_name)))
        }
    }

    /// Hangs `next` below this generation; it inherits the creator's role
    /// (its lock) when this handle holds it here.
    fn adopt_generation(&self, mut next: Self) -> Result<&Self, SlotError> {
        if self.holds_creator && lock::set(&next.locks, lock::Kind::Write, lock::CREATOR, 1).unwrap_or(false) {
            next.holds_creator = true;
        }
        let _ = self.next.set(Box::new(next));
        Ok(self.next.get().expect("just set"))
    }

    /// Waits until a move started here is published (`CHAIN_MOVED`); takes
    /// over from a mover that died (its `GROW` lock is free again).
    pub(crate) fn wait_moved(&self) -> Result<(), SlotError> {
        let deadline = Instant::now() + MOVE_WAIT;
        loop {
            let flags = self.chain_flags();
            if flags & CHAIN_MOVED != 0 {
                return Ok(());
            }
            if flags & CHAIN_MOVING != 0 && !lock::alive(&self.file, lock::GROW) {
                // The mover died: finish the move (at our capacity + 1: the
                // sample it wanted is gone with it).
                return self.move_to(self.info.capacity as usize + 1);
            }
            if Instant::now() > deadline {
                return Err(generation_err("follow", "another process has been moving the ring for 10 s"));
            }
            std::thread::sleep(MOVE_POLL);
        }
    }

    /// Moves this generation to a successor with room for `len` bytes (or
    /// waits for a move another writer started). See the module doc.
    fn move_to(&self, len: usize) -> Result<(), SlotError> {
        let too_many = || SlotError::GenerationsExhausted { sample: len, slot_capacity: self.info.capacity as usize, max: MAX_GENERATIONS };
        let capacity = self.info.growth.next_capacity(self.info.capacity, len).ok_or(SlotError::SampleTooLarge { sample: len, slot_capacity: self.info.capacity as usize })?;
        if self.info.generation + 1 >= MAX_GENERATIONS {
            return Err(too_many());
        }
        let deadline = Instant::now() + MOVE_WAIT;
        let _t = self.lock_table.lock();
        loop {
            if self.chain_flags() & CHAIN_MOVED != 0 {
                return Ok(());
            }
            if self.take_byte(lock::GROW) {
                break;
            }
            if Instant::now() > deadline {
                return Err(generation_err("grow", "another process has been moving the ring for 10 s"));
            }
            std::thread::sleep(MOVE_POLL);
        }
        let res = self.move_locked(capacity);
        self.drop_byte(lock::GROW);
        res
    }

    /// [`move_to`](Self::move_to) with the `GROW` lock held.
    fn move_locked(&self, capacity: u32) -> Result<(), SlotError> {
        let h = self.header();
        if h.chain.load(Ordering::Acquire) & CHAIN_MOVED != 0 {
            return Ok(());
        }
        // SYNC POINT (move): the flag before the read of `write_seq`; pairs
        // with the writers' claim-then-check in `reserve_local`.
        h.chain.fetch_or(CHAIN_MOVING, Ordering::SeqCst);
        let moved_at = self.ring().write_seq();
        // A mover that died may have left a successor half made: its id was
        // stored before the object was created.
        let stale = h.successor.load(Ordering::Acquire);
        if stale != 0 {
            let _ = shm::unlink(&crate::segment::name::name_of(stale));
        }
        let (next, name) = loop {
            let id = shm::random_u64();
            if id == 0 {
                continue;
            }
            h.successor.store(id, Ordering::Release);
            let name = crate::segment::name::name_of(id);
            match self.create_successor(&name, capacity, moved_at) {
                Ok(n) => break (n, name),
                Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(generation_err("create the next generation", e)),
            }
        };
        // Before anyone can follow: this writer is a live writer there (and
        // the creator, if it is here), so readers that arrive first never
        // find the writer side gone.
        let next = self.adopt_generation(next)?;
        let _ = next.writer_index();
        h.moved_at.store(moved_at, Ordering::Release);
        // SYNC POINT (moved): publishes `successor` and `moved_at`, and the
        // successor's contents (made before), to followers' Acquire loads.
        h.chain.fetch_or(CHAIN_MOVED, Ordering::SeqCst);
        // New attachers start in the newest generation. The old flink file
        // keeps working too (attach follows the chain), so a failure here is
        // not an error of the move.
        let _ = flink::replace(&self.flink_path, &self.segment_name, |f: &mut FlinkInfo| {
            f.segment_name.clone_from(&name);
            f.capacity = capacity;
        });
        // Readers parked here must wake up to follow; with none, this
        // generation is done already.
        self.ring().wake_readers();
        self.release_if_unread();
        Ok(())
    }

    /// Creates the successor object `name`: this geometry with `capacity`,
    /// one generation on, its sequences going on from `moved_at` (where
    /// this generation's end), every reader registered here carried over as
    /// `ADOPTING`.
    fn create_successor(&self, name: &str, capacity: u32, moved_at: u64) -> Result<Self, OpenError> {
        let info = &self.info;
        let lay = Layout::compute(info.slot_count, capacity, info.max_readers, info.max_writers)
            .filter(|l| l.total <= super::layout::MAX_TOTAL)
            .ok_or(config("slot_count × slot_capacity", u64::from(info.slot_count) * u64::from(capacity), "a segment of at most 64 GiB"))?;
        let geometry = NewSegment {
            slot_count: info.slot_count,
            capacity,
            stride: lay.stride as u32,
            total: lay.total,
            max_readers: info.max_readers,
            max_writers: info.max_writers,
            policy: info.policy,
            type_hash: info.type_hash,
            generation: info.generation + 1,
            growth: info.growth,
            predecessor: self.id,
            start_seq: moved_at,
            start_notify_epoch: 0,
        };
        let ring = self.ring();
        let registered = ring.registered();
        let carried = |next: &Self| {
            next.ring().seed_adopting(registered, &|r| ring.reader_pid(r));
        };
        Self::create_object(Some(name), &geometry, self.flink_path.clone(), self.spin, false, &carried)
    }

    /// A moved generation nobody reads any more is removed (its name; the
    /// mappings of handles that still have it stay valid).
    pub(crate) fn release_if_unread(&self) {
        if self.chain_flags() & CHAIN_MOVED != 0 && self.ring().registered() == 0 {
            let _ = shm::unlink(&self.segment_name);
        }
    }

    /// Whether the owner of `ADOPTING` entry `r` is alive: it holds entry
    /// `r` of the previous generation (`ACTIVE` with its lock, or
    /// `ADOPTING` and alive there). The previous generation is attached for
    /// the look (its dead readers reaped on the way, and it is removed if
    /// that leaves it unread). Then `r`'s state here is read again: if it
    /// changed, its owner arrived meanwhile (it takes its entry here before
    /// it leaves the previous one), so it counts as alive.
    pub(crate) fn upstream_alive(&self, r: u8, observed: u32) -> bool {
        let pred = self.info.predecessor;
        if pred == 0 || self.info.generation == 0 {
            return false;
        }
        let alive = match Self::attach_segment(&crate::segment::name::name_of(pred), self.flink_path.clone(), self.spin) {
            Ok(p) if p.info.generation + 1 == self.info.generation => {
                let _ = p.reap_dead();
                let st = p.ring().reader_state(r);
                matches!(entry_kind(st), ENTRY_ACTIVE | ENTRY_ADOPTING)
            }
            // Gone (every reader left it, or it was removed) or not ours.
            Ok(_) => false,
            Err(e) if super::open::is_gone(&e) => false,
            // Cannot tell: never declare a reader dead on a failed test.
            Err(_) => true,
        };
        alive || self.ring().reader_state(r) != observed
    }

    /// Every generation's object name from this one on, following the
    /// published successors (for an owner removing the whole ring).
    pub(crate) fn chain_names(&self) -> Vec<String> {
        let mut names = vec![self.segment_name.clone()];
        let mut g = self;
        while let Some(n) = g.next.get() {
            names.push(n.segment_name.clone());
            g = n;
        }
        // Generations this handle never mapped: read their headers.
        let (mut flags, mut id) = (g.chain_flags(), g.header().successor.load(Ordering::Acquire));
        while flags & CHAIN_MOVED != 0 && id != 0 && names.len() < MAX_GENERATIONS as usize {
            let name = crate::segment::name::name_of(id);
            names.push(name.clone());
            match super::status::peek_chain(&name) {
                Some((f, i)) => (flags, id) = (f, i),
                None => break,
            }
        }
        names
    }
}

/// The handle's side of growth: growing the ring for a sample, and moving
/// its writer or a reader on to the next generation.
impl PosixSlotAllocator {
    /// Root: the writer's generation moved (a claim was discarded, or the
    /// move was seen before claiming): go on in the next one.
    #[cold]
    pub(crate) fn follow_writer(&self, depth: u32) -> Result<(), SlotError> {
        let g = self.gen.at_depth(depth)?;
        g.wait_moved()?;
        g.successor()?;
        let _ = self.depths.writer.compare_exchange(depth, depth + 1, Ordering::Relaxed, Ordering::Relaxed);
        Ok(())
    }

    /// Root: reader `r` read everything of generation `depth`: take its
    /// entry in the next one, then leave this one.
    #[cold]
    pub(crate) fn follow_reader(&self, r: u8, depth: u32) -> Result<(), SlotError> {
        let g = self.gen.at_depth(depth)?;
        let next = g.successor()?;
        {
            let _t = next.lock_table.lock();
            let byte = lock::READER_BASE + u64::from(r);
            if !next.take_byte(byte) {
                return Err(generation_err("follow", format!("the lock of reader {r} in {} is held by another process", next.segment_name)));
            }
            if !next.ring().adopt(r, std::process::id(), g.ring()) {
                next.drop_byte(byte);
                return Err(generation_err("follow", format!("reader {r} was not carried over to {} (judged dead, or registered while the ring moved)", next.segment_name)));
            }
            next.my_readers.fetch_or(1 << r, Ordering::Relaxed);
        }
        // Arrived: only now leave the old generation (see the module doc).
        let _ = g.unregister_local(r);
        g.release_if_unread();
        self.depths.readers[usize::from(r)].store((depth + 1) as u8, Ordering::Relaxed);
        Ok(())
    }

    /// Root: makes room for a sample of `len` bytes in the writer's
    /// generation, growing the ring if its strategy allows.
    pub(crate) fn grow_for(&self, len: usize) -> Result<(), SlotError> {
        for _ in 0..=MAX_GENERATIONS {
            let depth = self.depths.writer.load(Ordering::Relaxed);
            let g = self.gen.at_depth(depth)?;
            let fits = len <= g.info.capacity as usize;
            if g.info.growth == GrowthStrategy::Static {
                return if fits { Ok(()) } else { Err(SlotError::SampleTooLarge { sample: len, slot_capacity: g.info.capacity as usize }) };
            }
            if fits && g.chain_flags() == 0 {
                return Ok(());
            }
            if g.chain_flags() == 0 {
                g.move_to(len)?;
            }
            self.follow_writer(depth)?;
        }
        Err(generation_err("grow", "the ring kept moving under this writer"))
    }
}
