//! Differential property test: random single-threaded operation sequences are
//! applied to the in-memory oracle (`InMemorySlotAllocator`) and to the POSIX
//! backend (`PosixSlotAllocator`) side by side; every observable result must
//! be identical: `Ok`/`Err` and the error's fields, handles (slot index and
//! sequence number), bytes and headers read, and every reader's stats after
//! every step. Both overflow policies, rings of 1 to 8 slots, first sequence
//! numbers at 0, random, or just below `u64::MAX` (wrap-around).
//!
//! Also checked on each backend on its own: `notify_generation` changes after
//! every successful commit, discard and `mark_reader_disconnected`.
//!
//! Run: `cargo test --release --test differential` (256 cases, well under a
//! second; `PROPTEST_CASES=20000` for a deeper run).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use common::{assert_unlinked, TestDir};
use proptest::prelude::*;
use proptest::test_runner::Config;
use shmslot::{InMemorySlotAllocator, OverflowPolicy, PosixSlotAllocator, ReaderStats, SlotBackend, SlotError, SlotHandle, SlotHeader, ALL_READERS};

/// Picks a reader: one the model knows as registered (by position), or any raw
/// index (unregistered, out of the table, or past 64).
#[derive(Debug, Clone, Copy)]
enum Rd {
    Known(usize),
    Raw(u8),
}

/// Which handle an operation uses.
#[derive(Debug, Clone, Copy)]
enum Hd {
    /// An open loan (by position) or, for reads, the reader's held sample.
    Live(usize),
    /// A handle that was already committed, discarded or released.
    Stale(usize),
    /// A made-up handle.
    Forged(u32, u64),
}

#[derive(Debug, Clone)]
enum Op {
    Register,
    Unregister(Rd),
    /// Reserve for all readers, or for a subset (bits of `u64`).
    Reserve(Option<u64>),
    Commit(Hd, Vec<u8>),
    Discard(Hd),
    NextUnread(Rd),
    Read(Rd, Hd),
    MarkRead(Rd, Hd),
    Disconnect(Rd),
}

#[derive(Debug, Clone)]
struct Case {
    policy: OverflowPolicy,
    slot_count: usize,
    capacity: usize,
    max_readers: u32,
    start: u64,
    ops: Vec<Op>,
}

fn rd() -> impl Strategy<Value = Rd> {
    prop_oneof![
        12 => (0usize..8).prop_map(Rd::Known),
        1 => (0u8..6).prop_map(Rd::Raw),
        1 => any::<u8>().prop_map(Rd::Raw),
    ]
}

fn hd() -> impl Strategy<Value = Hd> {
    prop_oneof![
        10 => (0usize..8).prop_map(Hd::Live),
        2 => (0usize..8).prop_map(Hd::Stale),
        1 => (0u32..10, any::<u64>()).prop_map(|(i, s)| Hd::Forged(i, s)),
    ]
}

fn op(capacity: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Register),
        1 => rd().prop_map(Op::Unregister),
        6 => prop_oneof![4 => Just(None), 1 => any::<u64>().prop_map(Some)].prop_map(Op::Reserve),
        5 => (hd(), proptest::collection::vec(any::<u8>(), 0..=capacity + 2)).prop_map(|(h, b)| Op::Commit(h, b)),
        1 => hd().prop_map(Op::Discard),
        8 => rd().prop_map(Op::NextUnread),
        2 => (rd(), hd()).prop_map(|(r, h)| Op::Read(r, h)),
        7 => (rd(), hd()).prop_map(|(r, h)| Op::MarkRead(r, h)),
        1 => rd().prop_map(Op::Disconnect),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let start = prop_oneof![
        2 => Just(0u64),
        1 => any::<u64>(),
        3 => (0u64..8).prop_map(|k| u64::MAX - k),
    ];
    (
        prop_oneof![Just(OverflowPolicy::KeepAll), Just(OverflowPolicy::DropOldest)],
        1usize..=8,
        1usize..=12,
        1u32..=4,
        start,
    )
        .prop_flat_map(|(policy, slot_count, capacity, max_readers, start)| {
            // Most cases register a reader or two first, so samples have
            // somebody to go to.
            (0usize..=2, proptest::collection::vec(op(capacity), 1..120)).prop_map(move |(pre, ops)| Case {
                policy,
                slot_count,
                capacity,
                max_readers,
                start,
                ops: std::iter::repeat_n(Op::Register, pre).chain(ops).collect(),
            })
        })
}

/// What one operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Reader(Result<u8, SlotError>),
    Unit(Result<(), SlotError>),
    Handle(Result<SlotHandle, SlotError>),
    Seq(Result<u64, SlotError>),
    Next(Result<Option<SlotHandle>, SlotError>),
    Read(Result<(SlotHeader, Vec<u8>), SlotError>),
}

impl Out {
    /// `Corrupt` errors are compared by what was wrong, not by the diagnostic
    /// value: the POSIX backend measures sequence distances on the 54 bits a
    /// slot stamp keeps, the oracle on 64.
    fn normalized(self) -> Self {
        fn n<T>(r: Result<T, SlotError>) -> Result<T, SlotError> {
            r.map_err(|e| match e {
                SlotError::Corrupt { what, .. } => SlotError::Corrupt { what, value: 0, limit: 0 },
                e => e,
            })
        }
        match self {
            Out::Reader(r) => Out::Reader(n(r)),
            Out::Unit(r) => Out::Unit(n(r)),
            Out::Handle(r) => Out::Handle(n(r)),
            Out::Seq(r) => Out::Seq(n(r)),
            Out::Next(r) => Out::Next(n(r)),
            Out::Read(r) => Out::Read(n(r)),
        }
    }
}

/// The model: what the test knows about the rings (identical for both, or
/// the test has already failed).
struct Model {
    readers: Vec<u8>,
    loans: Vec<SlotHandle>,
    stale: Vec<SlotHandle>,
    held: [Option<SlotHandle>; 64],
}

impl Default for Model {
    fn default() -> Self {
        Self { readers: Vec::new(), loans: Vec::new(), stale: Vec::new(), held: [None; 64] }
    }
}

impl Model {
    fn reader(&self, r: &Rd) -> u8 {
        match *r {
            Rd::Known(i) if !self.readers.is_empty() => self.readers[i % self.readers.len()],
            Rd::Known(i) => i as u8,
            Rd::Raw(r) => r,
        }
    }

    /// A handle for a loan operation; `Some(position)` if it is an open loan.
    fn loan(&self, h: &Hd) -> (SlotHandle, Option<usize>) {
        match *h {
            Hd::Live(i) if !self.loans.is_empty() => {
                let i = i % self.loans.len();
                (self.loans[i], Some(i))
            }
            Hd::Live(_) | Hd::Stale(_) if self.stale.is_empty() => (SlotHandle { slot_index: 0, seq: 12345 }, None),
            Hd::Live(i) | Hd::Stale(i) => (self.stale[i % self.stale.len()], None),
            Hd::Forged(slot_index, seq) => (SlotHandle { slot_index, seq }, None),
        }
    }

    /// A handle for a read operation of reader `r`.
    fn read_handle(&self, r: u8, h: &Hd) -> SlotHandle {
        match (*h, self.held.get(usize::from(r)).copied().flatten()) {
            (Hd::Live(_), Some(held)) => held,
            (Hd::Forged(slot_index, seq), _) => SlotHandle { slot_index, seq },
            (_, _) => self.loan(&Hd::Stale(0)).0,
        }
    }

    fn retire(&mut self, h: SlotHandle) {
        self.stale.push(h);
        if self.stale.len() > 16 {
            self.stale.remove(0);
        }
    }
}

fn apply(b: &dyn SlotBackend, op: &Op, m: &Model) -> Out {
    match op {
        Op::Register => Out::Reader(b.register_reader()),
        Op::Unregister(r) => Out::Unit(b.unregister_reader(m.reader(r))),
        Op::Reserve(mask) => Out::Handle(b.reserve_slot(mask.unwrap_or(ALL_READERS))),
        Op::Commit(h, bytes) => {
            let gen = b.notify_generation();
            let out = b.commit_slot(m.loan(h).0, bytes);
            if out.is_ok() {
                assert_ne!(b.notify_generation(), gen, "commit must change the notify generation");
            }
            Out::Seq(out)
        }
        Op::Discard(h) => {
            let gen = b.notify_generation();
            let out = b.discard_slot(m.loan(h).0);
            if out.is_ok() {
                assert_ne!(b.notify_generation(), gen, "discard must change the notify generation");
            }
            Out::Unit(out)
        }
        Op::NextUnread(r) => Out::Next(b.next_unread_slot(m.reader(r))),
        Op::Read(r, h) => Out::Read(b.read_slot(m.read_handle(m.reader(r), h))),
        Op::MarkRead(r, h) => {
            let r = m.reader(r);
            Out::Unit(b.mark_read(m.read_handle(r, h), r))
        }
        Op::Disconnect(r) => {
            let gen = b.notify_generation();
            let out = b.mark_reader_disconnected(m.reader(r));
            if out.is_ok() {
                assert_ne!(b.notify_generation(), gen, "mark_reader_disconnected must change the notify generation");
            }
            Out::Unit(out)
        }
    }
}

/// Updates the model from an outcome both backends agreed on.
fn update(m: &mut Model, op: &Op, out: &Out) {
    match (op, out) {
        (Op::Register, Out::Reader(Ok(r))) => {
            m.readers.push(*r);
            m.held[usize::from(*r)] = None;
        }
        (Op::Unregister(r), Out::Unit(Ok(()))) => {
            let r = m.reader(r);
            m.readers.retain(|&x| x != r);
            if let Some(h) = m.held[usize::from(r)].take() {
                m.retire(h);
            }
        }
        (Op::Reserve(_), Out::Handle(Ok(h))) => m.loans.push(*h),
        (Op::Commit(h, _), Out::Seq(Ok(_))) | (Op::Discard(h), Out::Unit(Ok(()))) => {
            let (handle, pos) = m.loan(h);
            if let Some(i) = pos {
                m.loans.remove(i);
            }
            m.retire(handle);
        }
        (Op::NextUnread(r), Out::Next(Ok(next))) => m.held[usize::from(m.reader(r))] = *next,
        (Op::MarkRead(r, h), Out::Unit(Ok(()))) => {
            let r = m.reader(r);
            let handle = m.read_handle(r, h);
            if m.held[usize::from(r)] == Some(handle) {
                m.held[usize::from(r)] = None;
            }
            m.retire(handle);
        }
        _ => {}
    }
}

/// Outcome kinds seen over a whole run (coverage of the generator).
static SEEN: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

fn kind(out: &Out) -> &'static str {
    match out {
        Out::Reader(Ok(_)) => "register ok",
        Out::Unit(Ok(())) => "unit ok",
        Out::Handle(Ok(_)) => "reserve ok",
        Out::Seq(Ok(_)) => "commit ok",
        Out::Next(Ok(Some(_))) => "next some",
        Out::Next(Ok(None)) => "next none",
        Out::Read(Ok(_)) => "read ok",
        Out::Reader(Err(SlotError::ReadersFull { .. })) => "readers full",
        Out::Handle(Err(SlotError::NoFreeSlot)) => "no free slot",
        Out::Seq(Err(SlotError::SampleTooLarge { .. })) => "too large",
        Out::Seq(Err(SlotError::NotLoaned { .. })) | Out::Unit(Err(SlotError::NotLoaned { .. })) => "not loaned",
        Out::Unit(Err(SlotError::NotHeld { .. })) => "not held",
        Out::Unit(Err(SlotError::ReaderNotRegistered(_))) | Out::Next(Err(SlotError::ReaderNotRegistered(_))) => "not registered",
        _ => "other error",
    }
}

/// `reader_stats` of every index 0..=64 that does not answer
/// `ReaderNotRegistered` (so a difference in registration shows too).
fn stats(b: &dyn SlotBackend) -> Vec<(u8, Result<ReaderStats, SlotError>)> {
    (0..=64u8).map(|r| (r, b.reader_stats(r))).filter(|(r, s)| *s != Err(SlotError::ReaderNotRegistered(*r))).collect()
}

fn run(case: &Case, dir: &TestDir) -> Result<(), TestCaseError> {
    static N: AtomicU32 = AtomicU32::new(0);
    let oracle = InMemorySlotAllocator::with_start_seq(case.slot_count, case.capacity, case.policy, case.start).with_max_readers(case.max_readers);
    let posix = PosixSlotAllocator::builder(case.slot_count, case.capacity)
        .overflow_policy(case.policy)
        .max_readers(case.max_readers)
        .start_seq(case.start)
        .create(dir.flink(&format!("ring{}", N.fetch_add(1, Ordering::Relaxed))))
        .expect("create the POSIX ring");
    let segment = posix.segment_path();
    let result = (|| {
        prop_assert_eq!(oracle.slot_count(), posix.slot_count());
        prop_assert_eq!(oracle.slot_capacity(), posix.slot_capacity());
        prop_assert_eq!(oracle.overflow_policy(), posix.overflow_policy());
        let mut m = Model::default();
        for (step, op) in case.ops.iter().enumerate() {
            let want = apply(&oracle, op, &m).normalized();
            let got = apply(&posix, op, &m).normalized();
            prop_assert_eq!(&want, &got, "step {}: {:?}", step, op);
            prop_assert_eq!(stats(&oracle), stats(&posix), "reader stats after step {}: {:?}", step, op);
            update(&mut m, op, &want);
            let mut seen = SEEN.lock().unwrap();
            *seen.entry(kind(&want)).or_default() += 1;
            if stats(&oracle).iter().any(|(_, s)| matches!(s, Ok(s) if s.lost > 0)) {
                *seen.entry("lost > 0").or_default() += 1;
            }
            if matches!(want, Out::Next(Ok(Some(h))) if h.seq < case.start) {
                *seen.entry("delivered past wrap").or_default() += 1;
            }
        }
        Ok(())
    })();
    drop(posix);
    assert_unlinked(&segment);
    result
}

#[test]
fn posix_matches_in_memory_oracle() {
    let dir = TestDir::new("differential");
    // 256 cases by default; `PROPTEST_CASES=20000` for a deeper run.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    proptest!(config, |(case in case())| {
        run(&case, &dir)?;
    });
    let seen = SEEN.lock().unwrap();
    eprintln!("outcomes: {seen:?}");
    for k in [
        "register ok", "reserve ok", "commit ok", "next some", "next none", "read ok", "unit ok", "readers full", "no free slot",
        "too large", "not loaned", "not held", "not registered", "lost > 0", "delivered past wrap",
    ] {
        assert!(seen.get(k).copied().unwrap_or(0) >= 5, "the generator rarely reaches {k:?}: {seen:?}");
    }
}

/// The generator reaches the interesting corners (guards against a strategy
/// that silently stops producing them): a sample delivered across the
/// `u64::MAX` wrap, a full ring, and a `DropOldest` reader losing samples.
#[test]
fn differential_ops_reach_wrap_full_and_loss() {
    let dir = TestDir::new("differential-corners");
    let ring = PosixSlotAllocator::builder(2, 4)
        .overflow_policy(OverflowPolicy::DropOldest)
        .start_seq(u64::MAX)
        .create(dir.flink("corners"))
        .unwrap();
    let oracle = InMemorySlotAllocator::with_start_seq(2, 4, OverflowPolicy::DropOldest, u64::MAX);
    let ops = vec![
        Op::Register,
        Op::Reserve(None),
        Op::Commit(Hd::Live(0), b"a".to_vec()),
        Op::Reserve(None),
        Op::Commit(Hd::Live(0), b"b".to_vec()),
        Op::Reserve(None),
        Op::Commit(Hd::Live(0), b"c".to_vec()),
        Op::NextUnread(Rd::Known(0)),
        Op::Read(Rd::Known(0), Hd::Live(0)),
        Op::Reserve(None),
    ];
    let mut m = Model::default();
    let mut outs = Vec::new();
    for op in &ops {
        let want = apply(&oracle, op, &m);
        assert_eq!(want, apply(&ring, op, &m), "{op:?}");
        update(&mut m, op, &want);
        outs.push(want);
    }
    // Sequence u64::MAX was overwritten by 1 (lost), then 0 is delivered
    // (held in place, so the writer must not reuse its slot for 2: NoFreeSlot).
    assert_eq!(outs[7], Out::Next(Ok(Some(SlotHandle { slot_index: 0, seq: 0 }))));
    assert_eq!(outs[8], Out::Read(Ok((SlotHeader { sequence_number: 0, sample_size: 1, pending_readers: 1 }, b"b".to_vec()))));
    assert_eq!(outs[9], Out::Handle(Err(SlotError::NoFreeSlot)));
    assert_eq!(ring.reader_stats(0).unwrap(), ReaderStats { next_seq: 0, received: 0, lost: 1 });
    assert_eq!(oracle.reader_stats(0).unwrap(), ring.reader_stats(0).unwrap());
}
