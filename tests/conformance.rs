//! One conformance suite, written once, run against every backend: the
//! in-memory oracle, the POSIX shared-memory ring, and the POSIX ring
//! created with a growth strategy (`GrowthStrategy::PowerOfTwo`).
//!
//! Where a growing ring's contract differs (a sample larger than the slots
//! is not an error there: the ring moves to larger slots and delivers it),
//! the case says so through [`Maker::GROWS`] and asserts the growing
//! behaviour instead.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::TestDir;
use shmslot::*;

/// What a case asks of the backend under test.
#[derive(Clone, Copy)]
struct Spec {
    slots: usize,
    cap: usize,
    policy: OverflowPolicy,
    start: u64,
    hash: Option<[u8; 16]>,
}

impl Spec {
    fn new(slots: usize, cap: usize) -> Self {
        Self { slots, cap, policy: OverflowPolicy::KeepAll, start: 0, hash: None }
    }
    fn policy(mut self, p: OverflowPolicy) -> Self {
        self.policy = p;
        self
    }
    fn start(mut self, s: u64) -> Self {
        self.start = s;
        self
    }
    fn hash(mut self, h: [u8; 16]) -> Self {
        self.hash = Some(h);
        self
    }
}

/// Makes a backend for a spec. The `TestDir` (if any) must outlive it: bind
/// as `let (_d, b)` so `b` drops first.
trait Maker {
    type B: SlotBackend + 'static;
    /// Whether a sample larger than the slots grows the ring (delivered
    /// whole) instead of being `SlotError::SampleTooLarge`.
    const GROWS: bool = false;
    fn make(spec: Spec) -> (Option<TestDir>, Self::B);
}

struct Mem;
impl Maker for Mem {
    type B = InMemorySlotAllocator;
    fn make(s: Spec) -> (Option<TestDir>, Self::B) {
        let b = InMemorySlotAllocator::with_start_seq(s.slots, s.cap, s.policy, s.start);
        (None, if let Some(h) = s.hash { b.with_type_hash(h) } else { b })
    }
}

fn make_posix(s: Spec, growth: GrowthStrategy) -> (Option<TestDir>, PosixSlotAllocator) {
    let dir = TestDir::new("conf");
    let mut b = PosixSlotAllocator::builder(s.slots, s.cap).overflow_policy(s.policy).start_seq(s.start).growth(growth).discovery_dir(dir.path());
    if let Some(h) = s.hash {
        b = b.type_hash(h);
    }
    let ring = b.create("ring").expect("create ring");
    (Some(dir), ring)
}

struct Posix;
impl Maker for Posix {
    type B = PosixSlotAllocator;
    fn make(s: Spec) -> (Option<TestDir>, Self::B) {
        make_posix(s, GrowthStrategy::Static)
    }
}

/// The POSIX ring, growing to the next power of two when a sample does not
/// fit its slots.
struct PosixGrowing;
impl Maker for PosixGrowing {
    type B = PosixSlotAllocator;
    const GROWS: bool = true;
    fn make(s: Spec) -> (Option<TestDir>, Self::B) {
        make_posix(s, GrowthStrategy::PowerOfTwo)
    }
}

fn write<B: SlotBackend + ?Sized>(b: &B, bytes: &[u8]) -> Result<u64, SlotError> {
    let h = b.reserve_slot(ALL_READERS)?;
    b.commit_slot(h, bytes)
}

/// As [`write`], but a failed commit gives the loan back (a commit that
/// fails leaves it open, and an open loan blocks every later sample).
fn send<B: SlotBackend + ?Sized>(b: &B, bytes: &[u8]) -> Result<u64, SlotError> {
    let h = b.reserve_slot(ALL_READERS)?;
    b.commit_slot(h, bytes).inspect_err(|_| {
        let _ = b.discard_slot(h);
    })
}

fn read<B: SlotBackend + ?Sized>(b: &B, r: u8) -> Option<(u64, Vec<u8>)> {
    let h = b.next_unread_slot(r).expect("next_unread_slot")?;
    let (hdr, bytes) = b.read_slot(h).expect("read_slot");
    assert_eq!(hdr.sequence_number, h.seq);
    assert_eq!(hdr.sample_size as usize, bytes.len());
    b.mark_read(h, r).expect("mark_read");
    Some((h.seq, bytes))
}

fn in_order_exactly_once<M: Maker>() {
    let (_d, b) = M::make(Spec::new(4, 32));
    let r0 = b.register_reader().unwrap();
    let r1 = b.register_reader().unwrap();
    assert_ne!(r0, r1);
    let mut expect = 0u64;
    for round in 0..50u32 {
        let n = 1 + round as usize % 4;
        for k in 0..n {
            let v = (round * 4 + k as u32).to_le_bytes();
            assert_eq!(write(&b, &v).unwrap(), expect + k as u64);
        }
        for r in [r0, r1] {
            for k in 0..n {
                let (seq, bytes) = read(&b, r).expect("a sample");
                assert_eq!(seq, expect + k as u64);
                assert_eq!(bytes, (round * 4 + k as u32).to_le_bytes());
            }
            assert!(read(&b, r).is_none(), "nothing more");
        }
        expect += n as u64;
    }
    let st = b.reader_stats(r0).unwrap();
    assert_eq!((st.received, st.lost, st.next_seq), (expect, 0, expect));
}

fn keep_all_backpressure<M: Maker>() {
    let (_d, b) = M::make(Spec::new(4, 8));
    let fast = b.register_reader().unwrap();
    let slow = b.register_reader().unwrap();
    for i in 0..4u8 {
        write(&b, &[i]).unwrap();
    }
    assert_eq!(write(&b, &[9]), Err(SlotError::NoFreeSlot));
    for _ in 0..4 {
        read(&b, fast).unwrap();
    }
    assert_eq!(write(&b, &[9]), Err(SlotError::NoFreeSlot), "the slow reader still holds every slot");
    assert_eq!(read(&b, slow).unwrap().1, vec![0]);
    write(&b, &[4]).unwrap();
    assert_eq!(b.reserve_slot_timeout(ALL_READERS, Duration::from_millis(30)).unwrap_err(), SlotError::TimedOut(Duration::from_millis(30)));
    for want in 1..=4u8 {
        assert_eq!(read(&b, slow).unwrap().1, vec![want]);
    }
    assert_eq!(read(&b, fast).unwrap().1, vec![4]);
    assert!(read(&b, fast).is_none() && read(&b, slow).is_none());
}

fn drop_oldest_counts_lost<M: Maker>() {
    let (_d, b) = M::make(Spec::new(4, 8).policy(OverflowPolicy::DropOldest));
    let r = b.register_reader().unwrap();
    for i in 0..10u8 {
        write(&b, &[i]).expect("the writer never waits");
    }
    let mut got = vec![];
    while let Some((_, v)) = read(&b, r) {
        got.push(v[0]);
    }
    let st = b.reader_stats(r).unwrap();
    assert_eq!(got, vec![6, 7, 8, 9], "the newest slot_count samples survive");
    assert_eq!((st.received, st.lost), (4, 6));
}

fn drop_oldest_never_recycles_a_held_slot<M: Maker>() {
    let (_d, b) = M::make(Spec::new(2, 8).policy(OverflowPolicy::DropOldest));
    let r = b.register_reader().unwrap();
    write(&b, b"first").unwrap();
    let h = b.next_unread_slot(r).unwrap().unwrap();
    write(&b, b"second").unwrap();
    assert_eq!(write(&b, b"third"), Err(SlotError::NoFreeSlot), "the held slot is not overwritten");
    let (p, len) = b.slot_read_ptr(h).unwrap();
    // SAFETY: the reader holds the slot until mark_read.
    assert_eq!(unsafe { std::slice::from_raw_parts(p, len) }, b"first");
    b.mark_read(h, r).unwrap();
    write(&b, b"third").unwrap();
    write(&b, b"fourth").unwrap();
    let (_, v) = read(&b, r).unwrap();
    assert_eq!(v, b"third");
    assert_eq!(b.reader_stats(r).unwrap().lost, 1);
}

fn discarded_loans_never_reach_readers<M: Maker>() {
    let (_d, b) = M::make(Spec::new(4, 8));
    let r = b.register_reader().unwrap();
    let h = b.reserve_slot(ALL_READERS).unwrap();
    let h2 = b.reserve_slot(ALL_READERS).unwrap();
    b.commit_slot(h2, b"kept").unwrap();
    assert!(b.next_unread_slot(r).unwrap().is_none(), "in order: the open loan blocks what follows");
    b.discard_slot(h).unwrap();
    assert_eq!(read(&b, r).unwrap(), (1, b"kept".to_vec()));
    {
        let mut loan = Loan::new(&b).unwrap();
        loan.as_mut_slice()[0] = 1;
    } // dropped: discarded
    write(&b, b"after").unwrap();
    assert_eq!(read(&b, r).unwrap(), (3, b"after".to_vec()));
    for _ in 0..8 {
        let h = b.reserve_slot(ALL_READERS).unwrap();
        b.discard_slot(h).unwrap();
    }
    assert!(read(&b, r).is_none(), "discards free their slots at once");
}

fn in_place_loans<M: Maker>() {
    let (_d, b) = M::make(Spec::new(4, 64));
    let mut reader = Reader::new(&b).unwrap();
    let mut loan = Loan::new(&b).unwrap();
    assert_eq!(loan.as_mut_slice().len(), 64);
    loan.as_mut_slice()[..3].copy_from_slice(b"abc");
    assert_eq!(loan.commit(3).unwrap(), 0);
    let s = reader.try_recv().unwrap().unwrap();
    assert_eq!(&*s, b"abc");
    assert_eq!(s.seq(), 0);
    drop(s);
    assert!(reader.try_recv().unwrap().is_none());
    // Written in place, a sample cannot outgrow its loan, growing ring or not.
    let loan = Loan::new(&b).unwrap();
    assert_eq!(loan.commit(65).unwrap_err(), SlotError::SampleTooLarge { sample: 65, slot_capacity: 64 });
    assert!(reader.try_recv().unwrap().is_none(), "a failed commit is discarded");
    // A loan asked for by size: a growing ring moves to larger slots first.
    let big: Vec<u8> = (0..65u8).collect();
    match Loan::sized(&b, 65) {
        Ok(mut loan) => {
            assert!(M::GROWS, "a loan of 65 bytes from a ring of 64-byte slots that does not grow");
            assert!(loan.as_mut_slice().len() >= 65);
            loan.as_mut_slice()[..65].copy_from_slice(&big);
            loan.commit(65).unwrap();
            assert!(b.slot_capacity() >= 65);
            let s = reader.try_recv().unwrap().expect("the sample of the grown ring");
            assert_eq!(&*s, &big[..], "delivered intact");
        }
        Err(e) => {
            assert!(!M::GROWS, "a growing ring refused a loan of 65 bytes: {e}");
            assert_eq!(e, SlotError::SampleTooLarge { sample: 65, slot_capacity: 64 });
        }
    }
    assert!(reader.try_recv().unwrap().is_none());
}

fn stale_handles_are_errors<M: Maker>() {
    let (_d, b) = M::make(Spec::new(4, 8));
    let r = b.register_reader().unwrap();
    let h = b.reserve_slot(ALL_READERS).unwrap();
    let (seq, sample) = if M::GROWS {
        // Too large for the slot: the ring grows, the loan `h` is given up
        // and the sample goes, whole, into a loan of the next generation.
        let big = [9u8; 9];
        let seq = b.commit_slot(h, &big).expect("a growing ring takes a sample larger than its slots");
        assert!(b.slot_capacity() >= 9, "the ring did not grow: {} bytes", b.slot_capacity());
        (seq, big.to_vec())
    } else {
        assert_eq!(b.commit_slot(h, &[0; 9]).unwrap_err(), SlotError::SampleTooLarge { sample: 9, slot_capacity: 8 });
        // The loan stays open after the failed commit.
        (b.commit_slot(h, b"x").unwrap(), b"x".to_vec())
    };
    assert_eq!(b.commit_slot(h, b"x").unwrap_err(), SlotError::NotLoaned { index: h.slot_index, seq: h.seq });
    assert_eq!(b.discard_slot(h).unwrap_err(), SlotError::NotLoaned { index: h.slot_index, seq: h.seq });
    let forged = SlotHandle { slot_index: 3, seq: 0 };
    assert!(b.slot_data_ptr(forged).is_err());
    assert!(b.slot_read_ptr(SlotHandle { slot_index: 99, seq: 0 }).is_err());
    let got = b.next_unread_slot(r).unwrap().unwrap();
    assert_eq!(got.seq, seq);
    assert_eq!(b.read_slot(got).unwrap().1, sample);
    assert_eq!(b.next_unread_slot(r).unwrap(), Some(got), "same handle until released");
    b.mark_read(got, r).unwrap();
    assert_eq!(b.mark_read(got, r).unwrap_err(), SlotError::NotHeld { reader: r, seq, expected: seq + 1 });
    assert!(b.next_unread_slot(r).unwrap().is_none(), "exactly one sample");
    assert_eq!(b.next_unread_slot(63).unwrap_err(), SlotError::ReaderNotRegistered(63));
    assert_eq!(b.next_unread_slot(200).unwrap_err(), SlotError::ReaderNotRegistered(200));
    assert!(b.mark_reader_disconnected(200).is_err());
}

fn registration_and_addressing<M: Maker>() {
    let (_d, b) = M::make(Spec::new(8, 8));
    let early = b.register_reader().unwrap();
    write(&b, b"0").unwrap();
    let late = b.register_reader().unwrap();
    assert!(read(&b, late).is_none(), "a reader gets what is reserved after it registered");
    write(&b, b"1").unwrap();
    assert_eq!(read(&b, late).unwrap().0, 1);
    // Addressed to `early` only.
    let h = b.reserve_slot(1 << early).unwrap();
    b.commit_slot(h, b"2").unwrap();
    write(&b, b"3").unwrap();
    assert_eq!(read(&b, late).unwrap().0, 3, "not addressed to it: skipped");
    let seqs: Vec<u64> = std::iter::from_fn(|| read(&b, early).map(|x| x.0)).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    // Leaving frees every slot it held up.
    for _ in 0..8 {
        write(&b, b"y").unwrap();
    }
    assert_eq!(write(&b, b"z"), Err(SlotError::NoFreeSlot));
    b.unregister_reader(late).unwrap();
    assert_eq!(write(&b, b"z"), Err(SlotError::NoFreeSlot), "early still holds them");
    b.mark_reader_disconnected(early).unwrap();
    write(&b, b"z").expect("no reader holds anything now");
    assert_eq!(b.unregister_reader(late).unwrap_err(), SlotError::ReaderNotRegistered(late));
    let again = b.register_reader().unwrap();
    assert!(read(&b, again).is_none());
}

fn readers_full<M: Maker>() {
    let (_d, b) = M::make(Spec::new(2, 8));
    let all: Vec<u8> = (0..64).map(|_| b.register_reader().unwrap()).collect();
    assert_eq!(all.len(), 64);
    assert!(matches!(b.register_reader(), Err(SlotError::ReadersFull { .. })));
    b.unregister_reader(all[17]).unwrap();
    assert_eq!(b.register_reader().unwrap(), all[17]);
}

fn sequence_wraps_around<M: Maker>() {
    let start = u64::MAX - 5;
    let (_d, b) = M::make(Spec::new(4, 8).start(start));
    let r = b.register_reader().unwrap();
    for k in 0..20u64 {
        let seq = write(&b, &k.to_le_bytes()).unwrap();
        assert_eq!(seq, start.wrapping_add(k));
        let (s, v) = read(&b, r).unwrap();
        assert_eq!((s, v), (seq, k.to_le_bytes().to_vec()));
    }
    let (_d, b) = M::make(Spec::new(4, 8).start(start).policy(OverflowPolicy::DropOldest));
    let r = b.register_reader().unwrap();
    for k in 0..11u64 {
        write(&b, &k.to_le_bytes()).unwrap();
    }
    assert_eq!(read(&b, r).unwrap().0, start.wrapping_add(7));
    assert_eq!(b.reader_stats(r).unwrap().lost, 7);
}

fn blocking_calls_wake<M: Maker>() {
    let (_d, b) = M::make(Spec::new(2, 8));
    let b = Arc::new(b);
    let r = b.register_reader().unwrap();
    // A parked reader is woken by a commit from another thread.
    let t0 = Instant::now();
    let w = {
        let b = Arc::clone(&b);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            write(&*b, b"wake").unwrap();
        })
    };
    let h = b.next_unread_slot_timeout(r, Duration::from_secs(10)).unwrap().expect("woken by the commit");
    assert!(t0.elapsed() < Duration::from_secs(5));
    b.mark_read(h, r).unwrap();
    w.join().unwrap();
    assert!(b.next_unread_slot_timeout(r, Duration::from_millis(20)).unwrap().is_none());
    // A parked writer is woken by a release.
    write(&*b, b"1").unwrap();
    write(&*b, b"2").unwrap();
    let rd = {
        let b = Arc::clone(&b);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            read(&*b, r).unwrap();
        })
    };
    let h = b.reserve_slot_timeout(ALL_READERS, Duration::from_secs(10)).expect("woken by the release");
    b.discard_slot(h).unwrap();
    rd.join().unwrap();
    // The seed-style generation wait sees a commit between capture and wait.
    let g = b.notify_generation();
    write(&*b, b"3").unwrap_or_else(|_| {
        read(&*b, r);
        write(&*b, b"3").unwrap()
    });
    assert_ne!(b.notify_generation(), g);
    let t = Instant::now();
    b.wait_for_change(g, Duration::from_secs(10));
    assert!(t.elapsed() < Duration::from_secs(5), "no lost wake-up");
}

fn typed_endpoints<M: Maker>() {
    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Pose {
        x: f64,
        y: f64,
        id: u64,
    }
    // SAFETY: repr(C), three 8-byte fields, no padding; any bits are valid.
    unsafe impl Pod for Pose {
        const TYPE_HASH: [u8; 16] = type_hash("Pose", std::mem::size_of::<Pose>(), std::mem::align_of::<Pose>());
    }
    #[derive(Clone, Copy)]
    #[repr(C)]
    struct Other(u32);
    // SAFETY: a u32.
    unsafe impl Pod for Other {
        const TYPE_HASH: [u8; 16] = type_hash("Other", 4, 4);
    }
    let (_d, b) = M::make(Spec::new(4, 64).hash(Pose::TYPE_HASH));
    let (_d2, b2) = M::make(Spec::new(4, 64).hash(Pose::TYPE_HASH));
    let mut sub = Subscriber::<Pose, _>::new(&b).unwrap();
    let publ = Publisher::<Pose, _>::new(&b).unwrap();
    assert!(matches!(Publisher::<Other, _>::new(&b2), Err(TypeError::Mismatch { .. })));
    assert!(matches!(Subscriber::<Other, _>::new(&b2), Err(TypeError::Mismatch { .. })));
    let (_d3, untyped) = M::make(Spec::new(4, 64));
    assert!(matches!(Publisher::<Pose, _>::new(&untyped), Err(TypeError::Mismatch { found: None, .. })));
    let p = Pose { x: 1.5, y: -2.0, id: 7 };
    publ.publish(&p).unwrap();
    let mut loan = publ.loan().unwrap();
    *loan.value_mut() = Pose { x: 0.0, y: 0.0, id: 8 };
    loan.value_mut().x = 3.0;
    loan.commit().unwrap();
    assert_eq!(*sub.try_recv().unwrap().unwrap(), p);
    assert_eq!(*sub.try_recv().unwrap().unwrap(), Pose { x: 3.0, y: 0.0, id: 8 });
    assert!(sub.try_recv().unwrap().is_none());
    // A byte sample of the wrong size is an error, not a misread.
    write(&b, b"short").unwrap();
    assert!(matches!(sub.try_recv(), Err(ReceiveError::WrongSize { len: 5, expected: 24, .. })));
    assert!(sub.try_recv().unwrap().is_none(), "the bad sample was released");
}

/// Small samples, then one larger than the slots (by copy), small ones,
/// another larger one (loaned by size), small ones again; one reader reads
/// as the writer goes, the other only at the end (on a growing ring it is
/// two generations behind by then). A growing ring delivers every sample,
/// exactly once and in order, to both; a static one refuses the large ones
/// with `SampleTooLarge` and still delivers the rest in order.
fn a_sample_larger_than_the_slots_mid_stream<M: Maker>() {
    const CAP: usize = 16;
    let (_d, b) = M::make(Spec::new(16, CAP));
    let eager = b.register_reader().unwrap();
    let lagging = b.register_reader().unwrap();
    #[derive(Clone, Copy)]
    enum Step {
        Small(u8),
        /// Reserve, then a copy commit larger than the loan.
        ByCopy(usize, u8),
        /// `Loan::sized`, written in place.
        BySize(usize, u8),
    }
    use Step::*;
    let plan = [Small(0), Small(1), Small(2), ByCopy(100, 0xa0), Small(3), Small(4), BySize(300, 0xb0), Small(5), Small(6), Small(7)];
    let bytes_of = |step: Step| -> Vec<u8> {
        match step {
            Small(i) => (0..1 + usize::from(i) % CAP).map(|k| i.wrapping_mul(31).wrapping_add(k as u8)).collect(),
            ByCopy(len, tag) | BySize(len, tag) => (0..len).map(|k| tag ^ (k as u8)).collect(),
        }
    };
    let mut expected = Vec::new();
    let mut got_eager = Vec::new();
    for step in plan {
        let bytes = bytes_of(step);
        let res = match step {
            Small(_) | ByCopy(..) => send(&b, &bytes),
            BySize(len, _) => Loan::sized(&b, len).and_then(|mut loan| {
                loan.as_mut_slice()[..len].copy_from_slice(&bytes);
                loan.commit(len)
            }),
        };
        if bytes.len() <= CAP || M::GROWS {
            res.unwrap_or_else(|e| panic!("sample of {} bytes: {e}", bytes.len()));
            expected.push(bytes);
        } else {
            assert_eq!(res, Err(SlotError::SampleTooLarge { sample: bytes.len(), slot_capacity: CAP }));
        }
        got_eager.extend(std::iter::from_fn(|| read(&b, eager)));
    }
    let got_lagging: Vec<_> = std::iter::from_fn(|| read(&b, lagging)).collect();
    for (who, got) in [("eager", &got_eager), ("lagging", &got_lagging)] {
        let lens: Vec<usize> = got.iter().map(|(_, v)| v.len()).collect();
        assert_eq!(got.len(), expected.len(), "{who} reader: got samples of {lens:?}");
        for (k, ((_, v), want)) in got.iter().zip(&expected).enumerate() {
            assert!(v == want, "{who} reader, sample {k}: {} bytes, expected {} (got lengths {lens:?})", v.len(), want.len());
        }
        // (Sequence numbers across a growth: see
        // `sequence_numbers_keep_increasing_across_growth`.)
        if !M::GROWS {
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{who} reader: sequence numbers not increasing: {:?}", got.iter().map(|x| x.0).collect::<Vec<_>>());
        }
    }
    assert!(read(&b, eager).is_none() && read(&b, lagging).is_none(), "nothing more");
    for r in [eager, lagging] {
        assert_eq!(b.reader_stats(r).unwrap().lost, 0);
    }
    if M::GROWS {
        assert!(b.slot_capacity() >= 300, "grown to {} bytes", b.slot_capacity());
    } else {
        assert_eq!(b.slot_capacity(), CAP);
    }
    // Both readers are where the writer is: the next sample reaches both.
    let seq = write(&b, b"after").unwrap();
    assert_eq!(read(&b, eager).unwrap(), (seq, b"after".to_vec()));
    assert_eq!(read(&b, lagging).unwrap(), (seq, b"after".to_vec()));
}

/// Sequence numbers are assigned in reservation order (the trait's
/// contract), also across a growth: what commits return and what a reader
/// gets keep increasing from the ring's first sequence number, and the
/// reader's counters count every sample it received.
fn sequence_numbers_keep_increasing_across_growth<M: Maker>() {
    let start = 1000;
    let (_d, b) = M::make(Spec::new(8, 16).start(start));
    let r = b.register_reader().unwrap();
    let mut committed = Vec::new();
    for (k, len) in [4usize, 4, 4, 100, 4, 4, 300, 4].into_iter().enumerate() {
        match send(&b, &vec![k as u8; len]) {
            Ok(seq) => committed.push(seq),
            Err(SlotError::SampleTooLarge { .. }) if !M::GROWS && len > 16 => {}
            Err(e) => panic!("sample {k} of {len} bytes: {e}"),
        }
    }
    assert_eq!(committed.len(), if M::GROWS { 8 } else { 6 });
    assert!(committed[0] == start && committed.windows(2).all(|w| w[0] < w[1]), "sequence numbers the commits returned: {committed:?}");
    let got: Vec<u64> = std::iter::from_fn(|| read(&b, r)).map(|(seq, _)| seq).collect();
    assert_eq!(got, committed, "sequence numbers the reader got");
    let st = b.reader_stats(r).unwrap();
    assert_eq!((st.received, st.lost, st.next_seq), (committed.len() as u64, 0, committed.last().unwrap() + 1), "{st:?}");
}

/// Every case, for every backend. `#[growing(...)]` adds an attribute to
/// the growing ring's instantiation only.
macro_rules! suite {
    ($( $(#[growing($($growing_attr:tt)*)])? $case:ident ),* $(,)?) => {
        mod in_memory {
            $( #[test] fn $case() { super::$case::<super::Mem>() } )*
        }
        mod posix {
            $( #[test] fn $case() { super::$case::<super::Posix>() } )*
        }
        mod posix_growing {
            $( $(#[$($growing_attr)*])? #[test] fn $case() { super::$case::<super::PosixGrowing>() } )*
        }
    };
}

suite!(
    in_order_exactly_once,
    keep_all_backpressure,
    drop_oldest_counts_lost,
    drop_oldest_never_recycles_a_held_slot,
    discarded_loans_never_reach_readers,
    in_place_loans,
    stale_handles_are_errors,
    registration_and_addressing,
    readers_full,
    sequence_wraps_around,
    blocking_calls_wake,
    typed_endpoints,
    a_sample_larger_than_the_slots_mid_stream,
    sequence_numbers_keep_increasing_across_growth,
);
