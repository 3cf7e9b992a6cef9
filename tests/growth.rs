//! Growing rings: a writer whose samples outgrow the slots moves the ring
//! to larger generations while readers in other processes read; every
//! reader gets every sample exactly once, in order, and no old generation
//! is left behind once the last reader has moved on.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::family::{child_env, say, Family};
use common::{assert_unlinked, child_command, mix, TestDir};
use shmslot::discovery;
use shmslot::{GrowthStrategy, Loan, OverflowPolicy, PosixSlotAllocator, Reader, SlotBackend, SlotError, ALL_READERS};

const CHILD_TEST: &str = "child_process_entry";
const ROLE: &str = "SHMSLOT_GROWTH_ROLE";
const FLINK: &str = "SHMSLOT_GROWTH_FLINK";
const COUNT: &str = "SHMSLOT_GROWTH_COUNT";
const LAG: &str = "SHMSLOT_GROWTH_LAG";

/// Sample `i`'s length: 40 B, then 200 B (the first growth, 64 → 256), then
/// 900 B (the second, 256 → 1024) a few samples later, so a reader that lags
/// by more than a few samples is two generations behind the writer.
fn len_of(i: u64) -> usize {
    match i {
        0..1000 => 40,
        1000..1006 => 200,
        _ => 900,
    }
}

/// Fills a sample: its index, then bytes derived from it, then a checksum
/// of everything before.
fn fill(i: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
    let n = buf.len() - 8;
    for (k, b) in buf[8..n].iter_mut().enumerate() {
        *b = mix(i ^ (k as u64) << 20) as u8;
    }
    let sum = crc32fast::hash(&buf[..n]);
    buf[n..n + 4].copy_from_slice(&sum.to_le_bytes());
    buf[n + 4..].copy_from_slice(&(n as u32).to_le_bytes());
}

/// Checks a sample `fill` wrote for index `want`.
fn check(want: u64, s: &[u8]) -> Result<(), String> {
    if s.len() != len_of(want) {
        return Err(format!("sample {want}: {} bytes, expected {}", s.len(), len_of(want)));
    }
    let got = u64::from_le_bytes(s[..8].try_into().unwrap());
    if got != want {
        return Err(format!("expected sample {want}, got {got}"));
    }
    let n = s.len() - 8;
    let sum = u32::from_le_bytes(s[n..n + 4].try_into().unwrap());
    if sum != crc32fast::hash(&s[..n]) {
        return Err(format!("sample {want}: checksum mismatch"));
    }
    Ok(())
}

/// The children's side (a no-op unless started by a test below).
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    assert_eq!(role, "reader");
    let flink = PathBuf::from(child_env(FLINK));
    let count: u64 = child_env(COUNT).parse().unwrap();
    let lag = child_env(LAG) == "1";
    let mut reader = Reader::new(PosixSlotAllocator::attach(&flink).expect("child: attach")).expect("child: register");
    say("SHMSLOT-READY reader");
    let mut next = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next < count {
        assert!(Instant::now() < deadline, "child: stuck at sample {next}");
        let Some(sample) = reader.recv_timeout(Duration::from_millis(200)).expect("child: recv") else { continue };
        if let Err(e) = check(next, &sample) {
            panic!("child: {e}");
        }
        drop(sample);
        next += 1;
        if lag && next == 995 {
            // Fall behind: the writer moves twice meanwhile.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let stats = reader.stats().unwrap();
    say(&format!("SHMSLOT-RESULT received={next} lost={} generation={}", stats.lost, reader.backend().generation()));
    // Stay attached until the parent has looked at /dev/shm.
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

fn spawn_readers(fam: &mut Family, flink: &Path, count: u64, n: usize) {
    for k in 0..n {
        let mut cmd = child_command(CHILD_TEST);
        cmd.env(ROLE, "reader").env(FLINK, flink).env(COUNT, count.to_string()).env(LAG, if k == 0 { "1" } else { "0" });
        fam.spawn(&format!("reader{k}"), cmd);
    }
    for k in 0..n {
        fam.wait_ready(k, Duration::from_secs(60));
    }
}

#[test]
fn a_writer_grows_twice_while_three_reader_processes_read_everything_in_order() {
    let dir = TestDir::new("grow");
    let flink = dir.flink("ring");
    let ring = PosixSlotAllocator::builder(16, 64).growth(GrowthStrategy::PowerOfTwo).create(&flink).unwrap();
    let count = 2000u64;
    let mut fam = Family::new();
    spawn_readers(&mut fam, &flink, count, 3);

    let mut buf = vec![0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..count {
        let len = len_of(i);
        fill(i, &mut buf[..len]);
        loop {
            assert!(Instant::now() < deadline, "writer stuck at sample {i}");
            match Loan::sized(&ring, len) {
                Ok(mut loan) => {
                    loan.as_mut_slice()[..len].copy_from_slice(&buf[..len]);
                    loan.commit(len).unwrap();
                    break;
                }
                Err(SlotError::NoFreeSlot) => std::thread::yield_now(),
                Err(e) => panic!("writer at sample {i}: {e}"),
            }
        }
    }
    assert_eq!(ring.generation(), 2);
    assert_eq!(ring.slot_capacity(), 1024);
    let gens = ring.generation_paths();
    assert_eq!(gens.len(), 3, "{gens:?}");

    let results = (0..3).map(|k| fam.wait_result(k, Instant::now() + Duration::from_secs(120))).collect::<Vec<_>>();
    for r in &results {
        assert_eq!(r["received"], count.to_string(), "{r:?}");
        assert_eq!(r["lost"], "0", "{r:?}");
        assert_eq!(r["generation"], "0", "a reader's handle writes in the generation it was attached to: {r:?}");
    }
    // Every reader moved on: the old generations are gone, while every
    // process is still attached.
    assert_unlinked(&gens[0]);
    assert_unlinked(&gens[1]);
    assert!(gens[2].exists());
    let st = discovery::inspect(&flink).unwrap();
    assert_eq!(st.info.unwrap().generation, 2);
    assert_eq!(st.segment_path, gens[2], "the flink file names the newest generation");

    for k in 0..3 {
        fam.send(k, "quit");
    }
    fam.wait_all(Instant::now() + Duration::from_secs(60), "readers did not exit");
    drop(ring);
    for g in &gens {
        assert_unlinked(g);
    }
}

#[test]
fn a_late_attacher_starts_in_the_newest_generation_and_old_ones_go() {
    let dir = TestDir::new("grow-late");
    let ring = PosixSlotAllocator::builder(4, 32).growth(GrowthStrategy::BestFit).discovery_dir(dir.path()).create("ring").unwrap();
    let early = PosixSlotAllocator::attach_in("ring", Some(dir.path())).unwrap();
    let mut early_reader = Reader::new(&early).unwrap();
    let send = |len: usize, tag: u8| {
        let mut loan = Loan::sized(&ring, len).unwrap();
        loan.as_mut_slice()[..len].fill(tag);
        loan.commit(len).unwrap();
    };
    send(32, 1);
    send(100, 2); // best fit: 100 → 160 (a 192-byte stride)
    assert_eq!(ring.slot_capacity(), 160);
    send(150, 3); // fits: no new generation
    assert_eq!(ring.generation(), 1);
    let gens = ring.generation_paths();

    // Attached after the move: through the republished flink file, at the
    // newest generation.
    let late = PosixSlotAllocator::attach_in("ring", Some(dir.path())).unwrap();
    assert_eq!(late.generation(), 1);
    assert_eq!(late.slot_capacity(), 160);
    let mut late_reader = Reader::new(&late).unwrap();
    send(20, 4);

    for (len, tag) in [(32, 1), (100, 2), (150, 3), (20, 4)] {
        let s = early_reader.try_recv().unwrap().expect("early reader sample");
        assert_eq!((s.len(), s[0]), (len, tag));
    }
    assert!(early_reader.try_recv().unwrap().is_none());
    let s = late_reader.try_recv().unwrap().expect("late reader sample");
    assert_eq!((s.len(), s[0]), (20, 4));
    drop(s);
    // The early reader moved on: generation 0 is gone.
    assert_unlinked(&gens[0]);
    drop((early_reader, late_reader));
    drop((late, early));
    drop(ring);
    assert_unlinked(&gens[1]);
}

#[test]
fn a_static_ring_refuses_and_a_growing_one_stops_at_its_last_generation() {
    let dir = TestDir::new("grow-limits");
    let fixed = PosixSlotAllocator::builder(4, 64).discovery_dir(dir.path()).create("fixed").unwrap();
    assert_eq!(Loan::sized(&fixed, 65).err(), Some(SlotError::SampleTooLarge { sample: 65, slot_capacity: 64 }));
    assert_eq!(fixed.commit_slot(fixed.reserve_slot(ALL_READERS).unwrap(), &[0; 65]), Err(SlotError::SampleTooLarge { sample: 65, slot_capacity: 64 }));

    // Best fit, one stride (64 bytes) larger each time, no reader: every
    // old generation goes at once.
    let ring = PosixSlotAllocator::builder(2, 32).growth(GrowthStrategy::BestFit).overflow_policy(OverflowPolicy::DropOldest).discovery_dir(dir.path()).create("ring").unwrap();
    let mut len = 32;
    let err = loop {
        len += 64;
        match Loan::sized(&ring, len) {
            Ok(loan) => loan.commit(len).map(drop).unwrap(),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, SlotError::GenerationsExhausted { max: 32, .. }), "{err}");
    assert_eq!(ring.generation(), 31);
    let gens = ring.generation_paths();
    for g in &gens[..31] {
        assert_unlinked(g);
    }
    // A copy commit larger than the loan also grows (here: cannot).
    let h = ring.reserve_slot(ALL_READERS).unwrap();
    assert!(matches!(ring.commit_slot(h, &vec![0; len]), Err(SlotError::GenerationsExhausted { .. })));
    drop(ring);
    assert_unlinked(&gens[31]);
}

#[test]
fn a_copy_commit_larger_than_the_loan_moves_the_sample_to_the_next_generation() {
    let dir = TestDir::new("grow-copy");
    let ring = PosixSlotAllocator::builder(8, 16).growth(GrowthStrategy::PowerOfTwo).discovery_dir(dir.path()).create("ring").unwrap();
    let mut reader = Reader::new(PosixSlotAllocator::attach_in("ring", Some(dir.path())).unwrap()).unwrap();
    let h = ring.reserve_slot(ALL_READERS).unwrap();
    ring.commit_slot(h, &[7; 16]).unwrap();
    let h = ring.reserve_slot(ALL_READERS).unwrap();
    ring.commit_slot(h, &[8; 100]).unwrap();
    assert_eq!(ring.slot_capacity(), 128);
    let a = reader.try_recv().unwrap().unwrap().to_vec();
    let b = reader.try_recv().unwrap().unwrap().to_vec();
    assert_eq!((a, b), (vec![7; 16], vec![8; 100]));
    assert!(reader.try_recv().unwrap().is_none());
    let gens = ring.generation_paths();
    assert_unlinked(&gens[0]);
    drop(reader);
    drop(ring);
    assert_unlinked(&gens[1]);
}

#[test]
fn a_reader_still_in_an_old_generation_keeps_the_newest_alive() {
    let dir = TestDir::new("grow-keep");
    // Shared ring: the last handle out removes it, not the creator.
    let ring = PosixSlotAllocator::builder(4, 32).growth(GrowthStrategy::PowerOfTwo).remove_on_drop(false).discovery_dir(dir.path()).create("ring").unwrap();
    let mut reader = Reader::new(PosixSlotAllocator::attach_in("ring", Some(dir.path())).unwrap()).unwrap();
    let mut loan = Loan::sized(&ring, 100).unwrap();
    loan.as_mut_slice()[..100].fill(9);
    loan.commit(100).unwrap();
    let gens = ring.generation_paths();
    drop(ring);
    // The writer left; the reader has not even mapped generation 1, but it
    // is the ring's participant: neither the writer's leaving nor a clean
    // removes the generation it will follow into.
    assert!(gens[1].exists(), "the newest generation was removed under a reader still in the old one");
    let st = discovery::inspect(&dir.flink("ring")).unwrap();
    assert_eq!(st.state, discovery::SegmentState::Live, "{st:?}");
    assert_eq!(st.older_generations, vec![gens[0].clone()]);
    assert!(matches!(discovery::clean(dir.path(), false, false).unwrap()[0].outcome, Ok(discovery::CleanOutcome::Live)));
    let s = reader.try_recv().unwrap().expect("the sample written into generation 1");
    assert_eq!(&s[..], &[9; 100][..]);
    drop(s);
    assert_unlinked(&gens[0]);
    drop(reader);
    assert_unlinked(&gens[1]);
    assert!(!dir.flink("ring").exists());
}
