//! Kept samples (`PosixSlotAllocator::keep` / `unkeep`): a reader lends a
//! sample in place to code that returns it whenever it likes, and moves on;
//! writers skip the kept slot instead of waiting for it.

mod common;

use common::{assert_unlinked, TestDir};
use shmslot::{GrowthStrategy, OverflowPolicy, PosixSlotAllocator, SlotBackend, SlotError, ALL_READERS};

fn write(ring: &PosixSlotAllocator, bytes: &[u8]) -> Result<u64, SlotError> {
    let h = ring.reserve_slot(ALL_READERS)?;
    ring.commit_slot(h, bytes)
}

/// The payload of a sample as bytes (valid while it is held or kept).
fn bytes_at(ptr: *const u8, len: usize) -> Vec<u8> {
    // SAFETY: the callers pass the pointer and length `next_unread_read`
    // returned for a sample still held or kept.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

fn sample(i: u64) -> Vec<u8> {
    format!("sample {i:04}").into_bytes()
}

#[test]
fn a_kept_sample_stays_intact_while_writers_lap_the_ring() {
    let dir = TestDir::new("keep-lap");
    let ring = PosixSlotAllocator::builder(8, 16).create(dir.flink("ring")).unwrap();
    let r = ring.register_reader().unwrap();
    write(&ring, b"kept one").unwrap();
    let (h, ptr, len) = ring.next_unread_read(r).unwrap().unwrap();
    let kept = ring.keep(h, r).unwrap().expect("a reader may keep a sample of an 8-slot ring");
    assert_eq!(kept.handle(), h);
    assert_eq!(ring.reader_stats(r).unwrap().next_seq, 1, "keeping moves the reader on");
    assert_eq!(ring.next_unread_read(r).unwrap(), None, "the kept sample is not delivered again");

    // Five laps: every write succeeds (the kept slot is skipped, never waited
    // for), the reader gets every sample in order, the kept one is untouched.
    let mut got = Vec::new();
    for i in 0..40 {
        write(&ring, &sample(i)).unwrap_or_else(|e| panic!("write {i} with a sample kept: {e}"));
        let (h2, p2, l2) = ring.next_unread_read(r).unwrap().expect("the sample just written");
        got.push(bytes_at(p2, l2));
        ring.mark_read(h2, r).unwrap();
        assert_eq!(bytes_at(ptr, len), b"kept one", "kept payload changed after write {i}");
    }
    assert_eq!(got, (0..40).map(sample).collect::<Vec<_>>());
    let next = ring.reader_stats(r).unwrap().next_seq;
    assert_eq!(next, 1 + 40 + 5, "40 samples and 5 skipped sequences (one per lap) since the kept one");

    ring.unkeep(kept);
    ring.unkeep(kept); // a second give-back is a no-op
    // The slot is reused again: 8 writes in a row fill every slot, none skipped.
    let first = write(&ring, b"x").unwrap();
    for _ in 1..8 {
        write(&ring, b"x").unwrap();
    }
    assert_eq!(write(&ring, b"x"), Err(SlotError::NoFreeSlot), "a full ring of 8: no slot held back any more");
    assert_eq!(ring.reader_stats(r).unwrap().next_seq, first, "nothing skipped after the give-back");
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
}

#[test]
fn a_reader_keeps_at_most_a_quarter_of_the_ring() {
    let dir = TestDir::new("keep-limit");
    let ring = PosixSlotAllocator::builder(8, 16).create(dir.flink("ring")).unwrap();
    let r = ring.register_reader().unwrap();
    for i in 0..3 {
        write(&ring, &sample(i)).unwrap();
    }
    let mut kept = Vec::new();
    for _ in 0..2 {
        let (h, _, _) = ring.next_unread_read(r).unwrap().unwrap();
        kept.push(ring.keep(h, r).unwrap().expect("within the limit"));
    }
    let (h, ptr, len) = ring.next_unread_read(r).unwrap().unwrap();
    assert_eq!(ring.keep(h, r).unwrap(), None, "a third sample of 8 slots is not kept");
    // Nothing changed: the sample is still the reader's, to copy and release.
    assert_eq!(bytes_at(ptr, len), sample(2));
    ring.mark_read(h, r).unwrap();
    // Giving one back makes room for another.
    ring.unkeep(kept.pop().unwrap());
    write(&ring, &sample(3)).unwrap();
    let (h, _, _) = ring.next_unread_read(r).unwrap().unwrap();
    assert!(ring.keep(h, r).unwrap().is_some());

    // Rings that cannot spare a slot, and DropOldest rings, never keep.
    for (slots, policy) in [(2, OverflowPolicy::KeepAll), (8, OverflowPolicy::DropOldest)] {
        let small = PosixSlotAllocator::builder(slots, 16).overflow_policy(policy).create(dir.flink(&format!("small{slots}"))).unwrap();
        let r = small.register_reader().unwrap();
        write(&small, b"a").unwrap();
        let (h, _, _) = small.next_unread_read(r).unwrap().unwrap();
        assert_eq!(small.keep(h, r).unwrap(), None, "{slots} slots, {policy:?}");
        small.mark_read(h, r).unwrap();
    }
}

#[test]
fn keep_checks_the_handle_is_the_reader_s_current_sample() {
    let dir = TestDir::new("keep-check");
    let ring = PosixSlotAllocator::builder(8, 16).create(dir.flink("ring")).unwrap();
    let r = ring.register_reader().unwrap();
    write(&ring, b"a").unwrap();
    write(&ring, b"b").unwrap();
    let (h, _, _) = ring.next_unread_read(r).unwrap().unwrap();
    let other = shmslot::SlotHandle { slot_index: 1, seq: 1 };
    assert!(matches!(ring.keep(other, r), Err(SlotError::NotHeld { .. })), "not the current sample");
    assert!(matches!(ring.keep(h, 7), Err(SlotError::ReaderNotRegistered(7))));
    assert!(ring.keep(h, r).unwrap().is_some());
    assert!(matches!(ring.keep(h, r), Err(SlotError::NotHeld { .. })), "kept already: the reader moved on");
}

#[test]
fn unregistering_gives_back_what_the_reader_kept() {
    let dir = TestDir::new("keep-unregister");
    let ring = PosixSlotAllocator::builder(4, 16).create(dir.flink("ring")).unwrap();
    let r = ring.register_reader().unwrap();
    let other = ring.register_reader().unwrap();
    write(&ring, b"shared").unwrap();
    let (h, ptr, len) = ring.next_unread_read(r).unwrap().unwrap();
    let kept = ring.keep(h, r).unwrap().unwrap();
    // Another reader keeps the very same sample.
    let (h2, _, _) = ring.next_unread_read(other).unwrap().unwrap();
    assert_eq!(h2, h);
    let kept2 = ring.keep(h2, other).unwrap().unwrap();
    ring.unregister_reader(r).unwrap();
    // `r`'s late give-back must not drop `other`'s pin.
    ring.unkeep(kept);
    for i in 0..12 {
        write(&ring, &sample(i)).unwrap();
        let (h, _, _) = ring.next_unread_read(other).unwrap().unwrap();
        ring.mark_read(h, other).unwrap();
        assert_eq!(bytes_at(ptr, len), b"shared", "still kept by the other reader after write {i}");
    }
    ring.unkeep(kept2);
    let first = write(&ring, b"x").unwrap();
    for _ in 1..4 {
        write(&ring, b"x").unwrap();
    }
    assert_eq!(ring.reader_stats(other).unwrap().next_seq, first, "no sequence skipped once nothing is kept");
}

#[test]
fn a_sample_kept_in_an_older_generation_survives_growth() {
    let dir = TestDir::new("keep-grow");
    let ring = PosixSlotAllocator::builder(4, 16).growth(GrowthStrategy::PowerOfTwo).create(dir.flink("ring")).unwrap();
    let r = ring.register_reader().unwrap();
    write(&ring, b"before growth").unwrap();
    let (h, ptr, len) = ring.next_unread_read(r).unwrap().unwrap();
    let kept = ring.keep(h, r).unwrap().unwrap();
    // A large sample moves the ring to a new generation; the reader follows.
    let big = vec![7u8; 1000];
    let (h2, p, cap) = ring.reserve_for(big.len(), ALL_READERS).unwrap();
    assert!(cap >= big.len());
    // SAFETY: a fresh loan of `cap` bytes.
    unsafe { std::ptr::copy_nonoverlapping(big.as_ptr(), p, big.len()) };
    ring.commit_in_place(h2, big.len()).unwrap();
    assert!(ring.generation() > 0);
    let (h3, p3, l3) = ring.next_unread_read(r).unwrap().expect("the big sample, in the new generation");
    assert_eq!(bytes_at(p3, l3), big);
    ring.mark_read(h3, r).unwrap();
    assert_eq!(bytes_at(ptr, len), b"before growth", "the kept sample outlives the move");
    ring.unkeep(kept);
    let paths = ring.generation_paths();
    drop(ring);
    paths.iter().for_each(|p| assert_unlinked(p));
}
