//! Loom models of the ring protocol in this folder (the very code that runs
//! in shared memory: `crate::sync` switches its atomics to loom's).
//!
//! Run them with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom cargo test --release --lib loom
//! ```
//!
//! (`CARGO_TARGET_DIR` only keeps the loom build apart from the normal one.)
//! Each model runs with a preemption bound of 2 unless `LOOM_MAX_PREEMPTIONS`
//! says otherwise. At 2, in `--release` on a 2-vCPU VM, the largest model
//! takes about 50 s alone and the whole set about 3 minutes.
//!
//! The ring lives on the heap here: a `Control`, `ReaderEntry`s and
//! `SlotMeta`s (`SlotArray::from_slice`), and one `loom::cell::UnsafeCell`
//! payload word per slot, which the writer fills between reserve and commit
//! and readers read between `next_unread` and `release`. Loom reports any
//! access to that cell that is not ordered by happens-before (a torn read, or
//! a writer recycling a slot a reader still holds) as a causality violation.
//!
//! Futex waits are emulated by `LoomParker`: one loom `Mutex` + `Condvar`;
//! `wait` sleeps (without timeout) while the word still holds the expected
//! value, `wake_all` notifies everybody. As with a real futex the value check
//! and the sleep are atomic with respect to `wake_all`, so a wake-up the
//! protocol forgets to send leaves the waiter asleep forever, which loom
//! reports as a deadlock.
//!
//! # SeqCst and loom
//!
//! Loom models `SeqCst` *accesses* as `AcqRel` (its README, "Limitations";
//! loom 0.7 `rt::thread::Set::seq_cst` is a no-op), only `fence(SeqCst)` is
//! modelled as a total order. The waiter/waker hand-shakes of the protocol
//! are store-buffering (Dekker) patterns — the waiter RMWs `waiters` then
//! loads the generation (or the ring state), the waker publishes (RMWs the
//! generation, or stores a cursor) then loads `waiters`. For the data side,
//! all `SeqCst`, C++20/Rust guarantee it with the accesses alone (all four
//! ops are in the single total order S; a "both read stale" outcome is a
//! cycle in S). Loom cannot see that and
//! reports a lost wake-up (a deadlock) for the correct code. The protocol
//! therefore issues `crate::sync::loom_sc_fence()` right after the RMWs of
//! the data hand-shake (`notify_data`, `wait_data`): a `fence(SeqCst)` under
//! `--cfg loom`, nothing otherwise. Between `SeqCst` operations of one thread
//! such a fence adds nothing in the C++20 model, so the models check the same
//! algorithm that runs natively; `loom_dekker_without_fences_is_flagged_by_loom`
//! pins down exactly this loom limitation on a bare store-buffering litmus
//! test. Without those fences the blocking models fail with a (false)
//! deadlock.
//!
//! The space hand-shake is an asymmetric barrier: `light_barrier()` after a
//! release (a compiler fence natively once `membarrier(2)` is registered),
//! `Parker::heavy_barrier()` (`membarrier`) in `wait_space`. Loom cannot
//! model `membarrier`; the model takes the usual approximation: both sides
//! are `fence(SeqCst)` (`light_barrier` is one under loom, and
//! `LoomParker::heavy_barrier` is one here), i.e. it checks the protocol
//! assuming the heavy barrier orders like a fence executed by the releasing
//! thread at that point.
//!
//! # Models (2 slots each, writer blocking on space, readers on data)
//!
//! * `loom_keep_all_one_writer_two_readers` — the main model, 3 samples.
//! * `loom_negative_control_reversed_wait_space_deadlocks` — the same with
//!   `wait_space`'s order reversed (a copy in this file): loom must report
//!   the lost wake-up as a deadlock.
//! * `loom_keep_all_writer_woken_by_unregister` — a reader leaves while the
//!   writer waits on it; sequences wrap past `u64::MAX`.
//! * `loom_keep_all_reregister_same_index` — leave and re-register at the
//!   same index while the writer publishes.
//! * `loom_keep_all_register_races_with_writer` — registration mid-stream.
//! * `loom_keep_all_reader_outside_mask_never_sees_recycled_slot` — reader
//!   masks: a slot recycled while an unaddressed reader looks at it.
//! * `loom_drop_oldest_pins_protect_payload` — `DropOldest` pins and losses.
//! * `loom_dead_writer_unstamped_claim_is_voided` — a writer dies between
//!   claiming `write_seq` and stamping its slot; a reaper voids the claim
//!   while a live writer and a reader go on.
//! * `loom_reaper_never_voids_a_live_claim` — the reaper's void races a
//!   *live* writer's claim of the same sequence: it never voids it.
//! * `loom_dead_writer_loan_is_skipped` — a writer dies with a half-written
//!   loan; the reader never receives it and moves on.
//! * `loom_kept_sample_is_skipped_never_recycled` — a reader keeps a sample
//!   in place past its cursor and reads on while the writer laps the ring:
//!   the writer skips the kept slot (never waits for it, never writes it),
//!   the reader gets every later sample once, in order.
//! * `loom_negative_control_keep_without_pin_is_caught` — the same with the
//!   pin left out (the reader just releases and goes on reading the slot):
//!   loom must flag the writer recycling the slot under it.

use std::sync::Arc;
use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::model::Builder;
use loom::sync::atomic::AtomicBool;
use loom::sync::{Condvar, Mutex};
use loom::thread;

use super::{CacheLine, Control, Geometry, Held, NotifyWord, Parker, ReaderEntry, RingView, SlotArray, SlotMeta};

use crate::backend::{OverflowPolicy, ALL_READERS};
use crate::error::SlotError;
use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Parkers here never time out: a lost wake-up must show as a deadlock.
const FOREVER: Duration = Duration::from_secs(3600);
/// Payload length committed with every sample.
const LEN: usize = 8;

fn builder() -> Builder {
    let mut b = Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b
}

/// What the writer puts in the payload cell for sample `seq`.
fn payload_of(seq: u64) -> u64 {
    seq ^ 0x5a5a_5a5a_5a5a_5a5a
}

/// Futex emulation: `wait` sleeps while `*word == expected` (checked under the
/// mutex), `wake_all` notifies under the mutex. One pair serves every word: a
/// waiter woken for another word re-checks its own and sleeps again.
struct LoomParker {
    lock: Mutex<()>,
    cv: Condvar,
}

impl Parker for &LoomParker {
    fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Duration) {
        let mut g = self.lock.lock().unwrap();
        while word.load(Ordering::SeqCst) == expected {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn wake_all(&self, _word: &AtomicU32) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
    /// `membarrier(2)` modelled as a `SeqCst` fence (see the top).
    fn heavy_barrier(&self) {
        fence(Ordering::SeqCst);
    }
}

/// A ring on the heap.
struct Heap {
    ctrl: Box<Control>,
    readers: Box<[ReaderEntry]>,
    slots: Box<[SlotMeta]>,
    payload: Box<[UnsafeCell<u64>]>,
    parker: LoomParker,
    geo: Geometry,
    /// The process-local cursor floor (one "process" here).
    cursor_floor: AtomicU64,
}

type Ring<'a> = RingView<'a, &'a LoomParker>;

impl Heap {
    fn new(slot_count: u32, max_readers: u32, policy: OverflowPolicy, start: u64) -> Arc<Self> {
        let word = || NotifyWord { epoch: AtomicU32::new(0), waiters: AtomicU32::new(0) };
        let h = Self {
            ctrl: Box::new(Control {
                write_seq: CacheLine(AtomicU64::new(0)),
                registered: CacheLine(AtomicU64::new(0)),
                data: word(),
                space: word(),
            }),
            readers: (0..max_readers)
                .map(|_| ReaderEntry {
                    state: AtomicU32::new(0),
                    pid: AtomicU32::new(0),
                    cursor: AtomicU64::new(0),
                    pinned: AtomicU64::new(0),
                    received: AtomicU64::new(0),
                    lost: AtomicU64::new(0),
                    kept_total: AtomicU64::new(0),
                    kept: CacheLine(std::array::from_fn(|_| AtomicU64::new(0))),
                })
                .collect(),
            slots: (0..slot_count).map(|_| SlotMeta { stamp: AtomicU64::new(0), pending: AtomicU64::new(0), len: AtomicU32::new(0) }).collect(),
            payload: (0..slot_count).map(|_| UnsafeCell::new(0)).collect(),
            parker: LoomParker { lock: Mutex::new(()), cv: Condvar::new() },
            geo: Geometry { slot_count, capacity: LEN as u32, max_readers, policy },
            cursor_floor: AtomicU64::new(0),
        };
        h.view().init(start);
        // As `PosixSlotAllocator` does at create/attach: no bound known yet.
        h.cursor_floor.store(start.wrapping_sub(1 << 62), Ordering::SeqCst);
        // Not `Sync` (loom's `UnsafeCell`): fine, loom threads run on one OS
        // thread and `loom::thread::spawn` asks for no `Send`; loom itself
        // checks every access to the payload cells.
        #[allow(clippy::arc_with_non_send_sync)]
        Arc::new(h)
    }

    fn view(&self) -> Ring<'_> {
        RingView { ctrl: &self.ctrl, readers: &self.readers, slots: SlotArray::from_slice(&self.slots), geo: self.geo, parker: &self.parker, cursor_floor: &self.cursor_floor }
    }

    /// Writes the payload of a loaned slot (exclusive access by contract).
    fn write_payload(&self, index: u32, seq: u64) {
        // SAFETY: loom checks the claim: the cell is only accessed through
        // `with`/`with_mut`, and loom panics on an unordered pair.
        self.payload[index as usize].with_mut(|p| unsafe { *p = payload_of(seq) });
    }

    /// Reads the payload of a held slot.
    fn read_payload(&self, held: Held) -> u64 {
        // SAFETY: as in `write_payload`.
        self.payload[held.index as usize].with(|p| unsafe { *p })
    }
}

/// How a writer waits for space (the library's `wait_space`, or a broken copy).
type WaitSpace = fn(&Ring<'_>, &mut dyn FnMut() -> bool);

fn wait_space_lib(ring: &Ring<'_>, still_full: &mut dyn FnMut() -> bool) {
    ring.wait_space(FOREVER, still_full);
}

/// NEGATIVE CONTROL: `RingView::wait_space` with the order reversed — check
/// the condition first, *then* register as a waiter and read the generation,
/// then sleep. A release between the check and the registration sees no
/// waiter, sends no wake-up, and the writer sleeps forever.
fn wait_space_reversed(ring: &Ring<'_>, still_full: &mut dyn FnMut() -> bool) {
    let w = &ring.ctrl.space;
    if still_full() {
        w.waiters.fetch_add(1, Ordering::SeqCst);
        ring.parker.heavy_barrier();
        let g = w.epoch.load(Ordering::SeqCst);
        ring.parker.wait(&w.epoch, g, FOREVER);
        w.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `reserve` that blocks for space the way `SlotBackend::reserve_slot_timeout`
/// does once its spin budget is spent.
fn reserve_blocking(ring: &Ring<'_>, mask: u64, wait: WaitSpace) -> (u32, u64) {
    reserve_blocking_as(ring, mask, wait, 0, None)
}

/// [`reserve_blocking`] as writer entry `owner` with its `claiming` word.
fn reserve_blocking_as(ring: &Ring<'_>, mask: u64, wait: WaitSpace, owner: u8, claiming: Option<&AtomicU64>) -> (u32, u64) {
    loop {
        match ring.reserve(mask, owner, claiming) {
            Ok(x) => return x,
            Err(SlotError::NoFreeSlot) => {}
            Err(e) => panic!("reserve: {e}"),
        }
        let mut got = None;
        wait(ring, &mut || match ring.reserve(mask, owner, claiming) {
            Err(SlotError::NoFreeSlot) => true,
            Ok(x) => {
                got = Some(x);
                false
            }
            Err(e) => panic!("reserve: {e}"),
        });
        if let Some(x) = got {
            return x;
        }
    }
}

/// Publishes `k` samples to all readers, blocking for space; returns their
/// sequence numbers.
fn write_samples(h: &Heap, k: u64, wait: WaitSpace) -> Vec<u64> {
    write_masked(h, &vec![ALL_READERS; k as usize], wait)
}

/// Publishes one sample per reader mask in `masks`, blocking for space.
fn write_masked(h: &Heap, masks: &[u64], wait: WaitSpace) -> Vec<u64> {
    let ring = h.view();
    masks
        .iter()
        .map(|&mask| {
            let (index, seq) = reserve_blocking(&ring, mask, wait);
            h.write_payload(index, seq);
            assert_eq!(ring.commit(index, seq, LEN), Ok(seq));
            seq
        })
        .collect()
}

/// Next sample for reader `r`, blocking on the data word. With `end`: `None`
/// once the reader's cursor reaches `end` (nothing more will come).
fn next_blocking(ring: &Ring<'_>, r: u8, end: Option<u64>) -> Option<Held> {
    loop {
        let g = ring.data_epoch();
        if let Some(held) = ring.next_unread(r).unwrap() {
            return Some(held);
        }
        if end.is_some_and(|end| ring.stats(r).unwrap().next_seq == end) {
            return None;
        }
        ring.wait_data(g, FOREVER);
    }
}

/// Consumes one held sample: checks its payload, then releases it.
fn consume(h: &Heap, ring: &Ring<'_>, r: u8, held: Held) {
    assert_eq!(held.len as usize, LEN);
    assert_eq!(h.read_payload(held), payload_of(held.seq), "torn or recycled payload");
    ring.release(r, held.index, held.seq).unwrap();
}

/// A reader registered mid-stream: its start cursor and every sample it
/// takes (blocking) until the writer's `k`th.
fn late_reader_takes(h: &Heap, ring: &Ring<'_>, r: u8, k: u64) -> (u64, Vec<u64>) {
    let first = ring.stats(r).unwrap().next_seq;
    let mut got = Vec::new();
    while let Some(held) = next_blocking(ring, r, Some(k)) {
        consume(h, ring, r, held);
        got.push(held.seq);
    }
    (first, got)
}

/// A thread that takes `k` samples as reader `r` (blocking) and returns their
/// sequence numbers.
fn spawn_consumer(h: &Arc<Heap>, r: u8, k: u64) -> thread::JoinHandle<Vec<u64>> {
    let h = h.clone();
    thread::spawn(move || {
        let ring = h.view();
        (0..k)
            .map(|_| {
                let held = next_blocking(&ring, r, None).unwrap();
                consume(&h, &ring, r, held);
                held.seq
            })
            .collect()
    })
}

/// Nothing in the ring is still pending for anybody: the last two samples
/// (one per slot; `end` is one past the last) are released by every reader
/// they were addressed to.
fn assert_released(h: &Heap, end: u64) {
    for seq in [end.wrapping_sub(2), end.wrapping_sub(1)] {
        let index = (seq & 1) as u32;
        assert_eq!(h.view().pending_of(index, seq), 0, "sample {seq} still pending");
    }
}

/// KeepAll, one writer, two readers, 2 slots, 3 samples (the writer must wait
/// for space at least once, every slot is reused while readers may still be
/// on the previous sample): each reader receives every sample exactly once, in
/// order, intact; nobody deadlocks.
fn keep_all_model(wait: WaitSpace) {
    const K: u64 = 3;
    let h = Heap::new(2, 2, OverflowPolicy::KeepAll, 0);
    let r0 = h.view().register(1).unwrap();
    let r1 = h.view().register(2).unwrap();
    let readers: Vec<_> = [r0, r1]
        .into_iter()
        .map(|r| {
            let h = h.clone();
            thread::spawn(move || {
                let ring = h.view();
                let mut got = Vec::new();
                for _ in 0..K {
                    let held = next_blocking(&ring, r, None).unwrap();
                    consume(&h, &ring, r, held);
                    got.push(held.seq);
                }
                got
            })
        })
        .collect();
    let written = write_samples(&h, K, wait);
    assert_eq!(written, (0..K).collect::<Vec<_>>());
    for (r, t) in [r0, r1].into_iter().zip(readers) {
        assert_eq!(t.join().unwrap(), written, "reader {r}: every sample exactly once, in order");
        let ring = h.view();
        assert_eq!(ring.next_unread(r).unwrap(), None, "reader {r}: nothing after the last sample");
        let st = ring.stats(r).unwrap();
        assert_eq!((st.next_seq, st.received, st.lost), (K, K, 0));
    }
    assert_released(&h, K);
    assert_eq!(h.ctrl.space.waiters.load(Ordering::SeqCst), 0);
    assert_eq!(h.ctrl.data.waiters.load(Ordering::SeqCst), 0);
}

#[test]
fn loom_keep_all_one_writer_two_readers() {
    builder().check(|| keep_all_model(wait_space_lib));
}

/// The negative control: the same model with `wait_space` reversed must be
/// caught (as a deadlock: the writer sleeps with nobody left to wake it).
#[test]
fn loom_negative_control_reversed_wait_space_deadlocks() {
    let caught = std::panic::catch_unwind(|| builder().check(|| keep_all_model(wait_space_reversed)));
    let payload = caught.expect_err("loom must catch the lost wake-up of the reversed wait_space");
    let msg = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("");
    assert!(msg.contains("deadlock"), "expected a loom deadlock, got: {msg:?}");
}

/// KeepAll: reader 1 never reads and leaves (`unregister`) while the writer
/// may be blocked on it; the writer must be woken and finish, reader 0 still
/// receives everything. Sequences start just below `u64::MAX` and wrap.
#[test]
fn loom_keep_all_writer_woken_by_unregister() {
    builder().check(|| {
        const K: u64 = 3;
        let start = u64::MAX - 1;
        let h = Heap::new(2, 2, OverflowPolicy::KeepAll, start);
        let r0 = h.view().register(1).unwrap();
        let r1 = h.view().register(2).unwrap();
        let t0 = spawn_consumer(&h, r0, K);
        let t1 = {
            let h = h.clone();
            thread::spawn(move || h.view().unregister(r1).unwrap())
        };
        let written = write_samples(&h, K, wait_space_lib);
        let expected: Vec<u64> = (0..K).map(|i| start.wrapping_add(i)).collect();
        assert_eq!(written, expected);
        t1.join().unwrap();
        assert_eq!(t0.join().unwrap(), expected);
        assert_eq!(h.view().stats(r1), Err(SlotError::ReaderNotRegistered(r1)));
        assert_released(&h, start.wrapping_add(K));
    });
}

/// KeepAll: reader 1 leaves and a new reader takes its index while the
/// writer publishes. Bits of the old reader that a writer stored after the
/// sweep must not block the writer (they are stale once the index is free or
/// re-registered past them); the new reader receives samples in order from
/// its start cursor on, intact.
#[test]
fn loom_keep_all_reregister_same_index() {
    builder().check(|| {
        const K: u64 = 3;
        let h = Heap::new(2, 2, OverflowPolicy::KeepAll, 0);
        let r0 = h.view().register(1).unwrap();
        let r1 = h.view().register(2).unwrap();
        let t0 = spawn_consumer(&h, r0, K);
        let t1 = {
            let h = h.clone();
            thread::spawn(move || {
                let ring = h.view();
                ring.unregister(r1).unwrap();
                let r = ring.register(3).unwrap();
                assert_eq!(r, r1, "the freed index is reused");
                late_reader_takes(&h, &ring, r, K)
            })
        };
        write_samples(&h, K, wait_space_lib);
        assert_eq!(t0.join().unwrap(), vec![0, 1, 2]);
        // Not necessarily a suffix here: a sample reserved with the old
        // reader's (stale) bit just before the new registration completed is
        // delivered to the new reader too. It is still in order, intact and
        // not before the new reader's start cursor.
        let (first, got) = t1.join().unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert!(got.iter().all(|&g| g >= first && g < K), "{got:?} outside [{first}, {K})");
    });
}

/// KeepAll: a reader registers while the writer publishes. The samples
/// addressed to it (those reserved after its bit was visible) are a suffix of
/// the stream, none of them before its starting cursor, and it receives all
/// of them in order — a sample addressed to it but behind its cursor would
/// block the writer forever (deadlock).
#[test]
fn loom_keep_all_register_races_with_writer() {
    builder().check(|| {
        const K: u64 = 3;
        let h = Heap::new(2, 2, OverflowPolicy::KeepAll, 0);
        let t = {
            let h = h.clone();
            thread::spawn(move || {
                let ring = h.view();
                let r = ring.register(7).unwrap();
                late_reader_takes(&h, &ring, r, K)
            })
        };
        write_samples(&h, K, wait_space_lib);
        let (first, got) = t.join().unwrap();
        assert!(first <= K);
        if let Some(&g0) = got.first() {
            assert!(g0 >= first, "received {g0} before its start cursor {first}");
            assert_eq!(got, (g0..K).collect::<Vec<_>>(), "addressed samples are a suffix, all received in order");
        }
        assert_released(&h, K);
    });
}

/// KeepAll with reader masks: samples 0 and 1 go to reader 0 only, sample 2
/// (which reuses slot 0) to both. Reader 1 must receive exactly `[2]`: while
/// it looks at sample 0 (not addressed to it) the slot may be recycled for
/// sample 2 with its bit set, and it must not mistake those fresh bits for
/// sample 0's and read the slot while the writer fills it.
#[test]
fn loom_keep_all_reader_outside_mask_never_sees_recycled_slot() {
    builder().check(|| {
        const K: u64 = 3;
        let h = Heap::new(2, 2, OverflowPolicy::KeepAll, 0);
        let r0 = h.view().register(1).unwrap();
        let r1 = h.view().register(2).unwrap();
        let spawn_reader = |r: u8| {
            let h = h.clone();
            thread::spawn(move || {
                let ring = h.view();
                let mut got = Vec::new();
                while let Some(held) = next_blocking(&ring, r, Some(K)) {
                    consume(&h, &ring, r, held);
                    got.push(held.seq);
                }
                got
            })
        };
        let (t0, t1) = (spawn_reader(r0), spawn_reader(r1));
        write_masked(&h, &[1 << r0, 1 << r0, ALL_READERS], wait_space_lib);
        assert_eq!(t0.join().unwrap(), vec![0, 1, 2]);
        assert_eq!(t1.join().unwrap(), vec![2], "reader 1 gets only the sample addressed to it");
    });
}

/// DropOldest, one writer, one reader, 2 slots, 4 samples: the reader sees
/// strictly increasing sequences with intact payloads (a pinned slot is never
/// recycled under it: loom flags the payload cell otherwise), always gets the
/// last one, and received + lost accounts for every sample.
#[test]
fn loom_drop_oldest_pins_protect_payload() {
    builder().check(|| {
        const K: u64 = 4;
        let h = Heap::new(2, 1, OverflowPolicy::DropOldest, 0);
        let r = h.view().register(1).unwrap();
        let t = {
            let h = h.clone();
            thread::spawn(move || {
                let ring = h.view();
                let mut got = Vec::new();
                while let Some(held) = next_blocking(&ring, r, Some(K)) {
                    // Asking again must return the same sample without a
                    // second pin.
                    assert_eq!(ring.next_unread(r).unwrap(), Some(held), "a held sample must stay the reader's current one");
                    consume(&h, &ring, r, held);
                    got.push(held.seq);
                }
                got
            })
        };
        write_samples(&h, K, wait_space_lib);
        let got = t.join().unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert_eq!(got.last(), Some(&(K - 1)), "the newest sample is never lost: {got:?}");
        let st = h.view().stats(r).unwrap();
        assert_eq!(st.next_seq, K);
        assert_eq!(st.received, got.len() as u64);
        assert_eq!(st.received + st.lost, K, "received + lost must account for every sample ({got:?}, lost {})", st.lost);
        assert_eq!(h.readers[r as usize].pinned.load(Ordering::SeqCst), 0);
        for i in 0..2 {
            assert_eq!(super::stamp_pins(h.slots[i].stamp.load(Ordering::SeqCst)), 0, "slot {i} still pinned");
        }
    });
}

/// Documents the loom limitation described at the top: the store-buffering
/// litmus test with `SeqCst` RMW + `SeqCst` load on both sides (forbidden
/// "both read 0" in C++20) is *allowed* by loom, while the same with a
/// `fence(SeqCst)` after each RMW is correctly forbidden. If a future loom
/// models `SeqCst` accesses fully, the first half fails and the loom-only
/// fences in the protocol can go.
#[test]
fn loom_dekker_without_fences_is_flagged_by_loom() {
    fn sb(fenced: bool) -> bool {
        let both_stale = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = both_stale.clone();
        builder().check(move || {
            let x = Arc::new(AtomicU32::new(0));
            let y = Arc::new(AtomicU32::new(0));
            let r = Arc::new(AtomicBool::new(false));
            let t = {
                let (x, y, r) = (x.clone(), y.clone(), r.clone());
                thread::spawn(move || {
                    x.fetch_add(1, Ordering::SeqCst);
                    if fenced {
                        fence(Ordering::SeqCst);
                    }
                    r.store(y.load(Ordering::SeqCst) == 0, Ordering::SeqCst);
                })
            };
            y.fetch_add(1, Ordering::SeqCst);
            if fenced {
                fence(Ordering::SeqCst);
            }
            let mine = x.load(Ordering::SeqCst) == 0;
            t.join().unwrap();
            if mine && r.load(Ordering::SeqCst) {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        both_stale.load(std::sync::atomic::Ordering::SeqCst)
    }
    assert!(sb(false), "loom now forbids the SeqCst-only store-buffering outcome: the loom-only fences may be unnecessary");
    assert!(!sb(true), "loom allowed store buffering across SeqCst fences");
}

/// A live writer (entry 1, its `claiming` word given) that publishes `k`
/// samples, blocking for space.
fn spawn_live_writer(h: &Arc<Heap>, claiming: &Arc<AtomicU64>, k: u64) -> thread::JoinHandle<Vec<u64>> {
    let (h, claiming) = (h.clone(), claiming.clone());
    thread::spawn(move || {
        let ring = h.view();
        (0..k)
            .map(|_| {
                let (index, seq) = reserve_blocking_as(&ring, ALL_READERS, wait_space_lib, 1, Some(&claiming));
                h.write_payload(index, seq);
                assert_eq!(ring.commit(index, seq, LEN), Ok(seq));
                seq
            })
            .collect()
    })
}

/// A writer (entry 0) claims sequence 0 on `write_seq` and dies before it
/// stamps the slot. A reaper voids the claim concurrently with a live writer
/// publishing 2 samples (the second reuses the voided slot, and finds it
/// two laps behind until the void) and a reader: the reader gets exactly
/// the live writer's samples, in order, intact; nobody deadlocks.
#[test]
fn loom_dead_writer_unstamped_claim_is_voided() {
    builder().check(|| {
        let h = Heap::new(2, 1, OverflowPolicy::KeepAll, 0);
        let r = h.view().register(1).unwrap();
        // The dead writer: `reserve`'s KeepAll claim of 0, up to its death.
        let claiming = 0;
        assert!(h.ctrl.write_seq.0.compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed).is_ok());
        let live_claim = Arc::new(AtomicU64::new(u64::MAX));
        let writer = spawn_live_writer(&h, &live_claim, 2);
        let reader = spawn_consumer(&h, r, 2);
        // The reaper (its kernel lock says the writer is dead).
        assert_eq!(h.view().skip_loans_of(0, Some(claiming), &|s| live_claim.load(Ordering::Acquire) == s), (1, false));
        let written = writer.join().unwrap();
        assert_eq!(written, vec![1, 2]);
        assert_eq!(reader.join().unwrap(), written);
    });
}

/// A writer (entry 0) recorded `claiming = 0` and died before its CAS; a
/// reaper looking to void its claim of sequence 0 races the live writer's
/// own claim of it. The live writer records its claim before its CAS, so the
/// reaper never voids it (nothing skipped), and the reader gets exactly what
/// the live writer committed, in order.
#[test]
fn loom_reaper_never_voids_a_live_claim() {
    builder().check(|| {
        let h = Heap::new(2, 1, OverflowPolicy::KeepAll, 0);
        let r = h.view().register(1).unwrap();
        let live_claim = Arc::new(AtomicU64::new(u64::MAX));
        let writer = spawn_live_writer(&h, &live_claim, 2);
        let reaper = {
            let h = h.clone();
            let live_claim = live_claim.clone();
            thread::spawn(move || h.view().skip_loans_of(0, Some(0), &|s| live_claim.load(Ordering::Acquire) == s).0)
        };
        assert_eq!(reaper.join().unwrap(), 0, "a live writer's claim was voided");
        let written = writer.join().unwrap();
        assert_eq!(written, vec![0, 1]);
        let ring = h.view();
        let mut got = Vec::new();
        while let Some(held) = ring.next_unread(r).unwrap() {
            consume(&h, &ring, r, held);
            got.push(held.seq);
        }
        assert_eq!(got, written);
    });
}

/// A writer (entry 0) dies with a half-written loan of sequence 0. The
/// reaper skips it while a live writer publishes 2 samples (the second
/// waits for the loaned slot) and a reader reads: the reader never receives
/// the half-written sample and gets the live writer's samples in order.
#[test]
fn loom_dead_writer_loan_is_skipped() {
    builder().check(|| {
        let h = Heap::new(2, 1, OverflowPolicy::KeepAll, 0);
        let r = h.view().register(1).unwrap();
        let (index, seq) = h.view().reserve(ALL_READERS, 0, None).unwrap();
        h.write_payload(index, seq ^ 1); // half-written: wrong bytes; then death
        let live_claim = Arc::new(AtomicU64::new(u64::MAX));
        let writer = spawn_live_writer(&h, &live_claim, 2);
        let reader = spawn_consumer(&h, r, 2);
        assert_eq!(h.view().skip_loans_of(0, None, &|_| false), (1, false));
        let written = writer.join().unwrap();
        assert_eq!(written, vec![1, 2]);
        assert_eq!(reader.join().unwrap(), written, "the dead writer's loan was delivered, or order broke");
    });
}

/// A growing ring's move (see `ring::grow`): a writer claims, then looks
/// at the move flag and discards its claim if it is set; the mover sets the
/// flag, then reads `write_seq` as `moved_at`; the reader reads this
/// generation until it is drained to `moved_at`. Every sample a writer
/// committed here is read here before the reader leaves (none is lost to
/// the move), for both claim styles (`KeepAll`: CAS on `write_seq`;
/// `DropOldest`: CAS on the stamp, which may claim exactly `moved_at`).
fn move_model(policy: OverflowPolicy) {
    builder().check(move || {
        let h = Heap::new(4, 1, policy, 0);
        let r = h.view().register(1).unwrap();
        let moving = Arc::new(AtomicU32::new(0));
        let moved_at = Arc::new(AtomicU64::new(0));
        let moved = Arc::new(AtomicBool::new(false));
        let writer = {
            let (h, moving) = (h.clone(), moving.clone());
            thread::spawn(move || {
                let ring = h.view();
                let mut committed = Vec::new();
                for _ in 0..2 {
                    let (index, seq) = ring.reserve(ALL_READERS, 0, None).unwrap();
                    // SYNC POINT (move): claim, then look (SeqCst both;
                    // the fence only shows loom the C++20 order S, see
                    // `loom_sc_fence`).
                    crate::sync::loom_sc_fence();
                    if moving.load(Ordering::SeqCst) != 0 {
                        ring.discard(index, seq).unwrap();
                        break;
                    }
                    h.write_payload(index, seq);
                    ring.commit(index, seq, LEN).unwrap();
                    committed.push(seq);
                }
                committed
            })
        };
        let mover = {
            let (h, moving, moved_at, moved) = (h.clone(), moving.clone(), moved_at.clone(), moved.clone());
            thread::spawn(move || {
                moving.store(1, Ordering::SeqCst);
                crate::sync::loom_sc_fence();
                moved_at.store(h.ctrl.write_seq.0.load(Ordering::SeqCst), Ordering::Release);
                moved.store(true, Ordering::Release);
            })
        };
        let ring = h.view();
        let mut read = Vec::new();
        loop {
            if let Some(held) = ring.next_unread(r).unwrap() {
                consume(&h, &ring, r, held);
                read.push(held.seq);
            } else if moved.load(Ordering::Acquire) && ring.drained_to(r, moved_at.load(Ordering::Acquire)) {
                break;
            } else {
                thread::yield_now();
            }
        }
        let committed = writer.join().unwrap();
        mover.join().unwrap();
        assert_eq!(read, committed, "a sample committed in the old generation was not read there before the reader left");
    });
}

#[test]
fn loom_move_keep_all_loses_nothing() {
    move_model(OverflowPolicy::KeepAll);
}

#[test]
fn loom_move_drop_oldest_loses_nothing() {
    move_model(OverflowPolicy::DropOldest);
}

/// How a reader hands a sample on without copying it: the library's `keep`,
/// or (NEGATIVE CONTROL) a plain `release` that leaves the slot unpinned.
type KeepFn = fn(&Ring<'_>, u8, Held) -> Option<u8>;

fn keep_lib(ring: &Ring<'_>, r: u8, held: Held) -> Option<u8> {
    Some(ring.keep(r, held.index, held.seq, 1).unwrap().expect("a 2-slot ring with a limit of 1 keeps one sample"))
}

fn keep_without_pin(ring: &Ring<'_>, r: u8, held: Held) -> Option<u8> {
    ring.release(r, held.index, held.seq).unwrap();
    None
}

/// KeepAll, 2 slots, one reader that keeps the first sample in place and
/// reads the next two while the writer publishes three: the writer must skip
/// the kept slot (sequence 2) rather than wait for it or write it; the kept
/// payload is read after every later sample (loom flags a write to it).
fn keep_model(keep: KeepFn, check_written: bool) {
    const K: u64 = 3;
    let h = Heap::new(2, 1, OverflowPolicy::KeepAll, 0);
    let r = h.view().register(1).unwrap();
    let reader = {
        let h = h.clone();
        thread::spawn(move || {
            let ring = h.view();
            let first = next_blocking(&ring, r, None).unwrap();
            assert_eq!(h.read_payload(first), payload_of(first.seq));
            let word = keep(&ring, r, first);
            let mut got = vec![first.seq];
            for _ in 1..K {
                let held = next_blocking(&ring, r, None).unwrap();
                consume(&h, &ring, r, held);
                got.push(held.seq);
                assert_eq!(h.read_payload(first), payload_of(first.seq), "kept payload recycled");
            }
            if let Some(k) = word {
                ring.unkeep(r, k, first.seq);
            }
            got
        })
    };
    let written = write_samples(&h, K, wait_space_lib);
    if !check_written {
        return; // the negative control: only loom's verdict on the payload counts
    }
    assert_eq!(written, vec![0, 1, 3], "sequence 2 (the kept slot) is skipped");
    assert_eq!(reader.join().unwrap(), written, "every sample once, in order");
    let ring = h.view();
    assert_eq!(ring.stats(r).unwrap().next_seq, 4);
    assert!(h.readers[r as usize].kept.0.iter().all(|w| w.load(Ordering::SeqCst) == 0), "a kept word left named");
    for i in 0..2 {
        assert_eq!(super::stamp_pins(h.slots[i].stamp.load(Ordering::SeqCst)), 0, "slot {i} still pinned");
    }
    // Given back: the next sample reuses the slot, nothing skipped.
    assert_eq!(write_samples(&h, 1, wait_space_lib), vec![4]);
}

#[test]
fn loom_kept_sample_is_skipped_never_recycled() {
    builder().check(|| keep_model(keep_lib, true));
}

#[test]
fn loom_negative_control_keep_without_pin_is_caught() {
    let caught = std::panic::catch_unwind(|| builder().check(|| keep_model(keep_without_pin, false)));
    let payload = caught.expect_err("loom must catch the slot recycled under a reader that did not pin it");
    let msg = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("");
    assert!(msg.contains("Causality violation") || msg.contains("kept payload recycled"), "expected the recycled slot to be flagged, got: {msg:?}");
}
