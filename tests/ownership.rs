//! Ownership hand-off: a creator that leaks its ring leaves it in place when
//! it exits; a new process attaches to it later; `own()` makes an attacher
//! the one that removes it; `create` and `clean` leave a leaked ring alone
//! unless asked to include leaked segments.

mod common;

use std::time::Duration;

use common::family::{child_env, say, Family};
use common::{assert_unlinked, child_command, TestDir};
use shmslot::discovery::{self, CleanOutcome, SegmentState};
use shmslot::{Loan, OpenError, PosixSlotAllocator, Reader};

const CHILD_TEST: &str = "child_process_entry";
const ROLE: &str = "SHMSLOT_OWNERSHIP_ROLE";
const DIR: &str = "SHMSLOT_OWNERSHIP_DIR";

fn publish(ring: &PosixSlotAllocator, values: std::ops::Range<u64>) {
    for v in values {
        let mut loan = Loan::new(ring).expect("loan");
        loan.as_mut_slice()[..8].copy_from_slice(&v.to_le_bytes());
        loan.commit(8).expect("commit");
    }
}

/// The child's side (a no-op unless started by a test below).
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let dir = child_env(DIR);
    match role.as_str() {
        "leaker" => {
            let mut ring = PosixSlotAllocator::builder(8, 64).discovery_dir(&dir).create("kept").expect("child: create");
            publish(&ring, 0..3);
            ring.leak().expect("child: leak");
            assert!(ring.is_leaked());
            say(&format!("SHMSLOT-RESULT segment={}", ring.segment_path().display()));
            // Exits: the handle drops, the process ends, the ring stays.
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs the leaker child to its end; returns the segment it left.
fn leak_in_child(dir: &TestDir) -> std::path::PathBuf {
    let mut fam = Family::new();
    let mut cmd = child_command(CHILD_TEST);
    cmd.env(ROLE, "leaker").env(DIR, dir.path());
    fam.spawn("leaker", cmd);
    let results = fam.wait_all(std::time::Instant::now() + Duration::from_secs(60), "the leaker did not finish");
    std::path::PathBuf::from(&results[0]["segment"])
}

#[test]
fn a_leaked_ring_outlives_its_creator_and_is_attached_again() {
    let dir = TestDir::new("leak");
    let segment = leak_in_child(&dir);
    let flink = dir.flink("kept");
    assert!(segment.exists(), "the leaked object must stay after its creator exited");

    let st = discovery::inspect(&flink).unwrap();
    assert_eq!(st.state, SegmentState::Leaked, "{st:?}");
    assert!(st.leaked && !st.creator_alive && !st.attached);

    // Neither a new create of the same path nor a plain clean removes it.
    match PosixSlotAllocator::builder(8, 64).discovery_dir(dir.path()).create("kept") {
        Err(OpenError::Leaked { path }) => assert_eq!(path, flink),
        other => panic!("create over a leaked ring: {other:?}"),
    }
    let cleaned = discovery::clean(dir.path(), false, false).unwrap();
    assert!(matches!(cleaned[0].outcome, Ok(CleanOutcome::Leaked)), "{cleaned:?}");
    assert!(segment.exists());

    // A new process (this one) attaches, writes and reads; leaving does not
    // remove it: it is still leaked.
    {
        let writer = PosixSlotAllocator::attach_in("kept", Some(dir.path())).unwrap();
        assert_eq!(writer.segment_path(), segment);
        assert!(writer.is_leaked() && !writer.is_owner());
        let mut reader = Reader::new(PosixSlotAllocator::attach_in("kept", Some(dir.path())).unwrap()).unwrap();
        publish(&writer, 10..13);
        for want in 10..13u64 {
            let s = reader.recv_timeout(Duration::from_secs(5)).unwrap().expect("sample");
            assert_eq!(u64::from_le_bytes(s[..8].try_into().unwrap()), want);
        }
        assert_eq!(discovery::inspect(&flink).unwrap().state, SegmentState::Live);
    }
    assert!(segment.exists(), "the last attacher of a leaked ring must not remove it");
    assert_eq!(discovery::inspect(&flink).unwrap().state, SegmentState::Leaked);

    // own(): this handle takes over the duty to remove it.
    let mut owner = PosixSlotAllocator::attach_in("kept", Some(dir.path())).unwrap();
    owner.own().unwrap();
    assert!(owner.is_owner() && !owner.is_leaked());
    assert!(!discovery::inspect(&flink).unwrap().leaked);
    let other = PosixSlotAllocator::attach_in("kept", Some(dir.path())).unwrap();
    drop(owner);
    assert_unlinked(&segment);
    assert!(!flink.exists(), "the owner's drop removes the flink file");
    drop(other);
}

#[test]
fn clean_removes_a_leaked_ring_only_when_asked() {
    let dir = TestDir::new("leak-clean");
    let segment = leak_in_child(&dir);
    let dry = discovery::clean(dir.path(), true, true).unwrap();
    assert!(matches!(dry[0].outcome, Ok(CleanOutcome::Removed { object_existed: true, .. })), "{dry:?}");
    assert!(segment.exists(), "a dry run removes nothing");
    // Attached: kept even with --leaked.
    let attached = PosixSlotAllocator::attach_in("kept", Some(dir.path())).unwrap();
    assert!(matches!(discovery::clean(dir.path(), false, true).unwrap()[0].outcome, Ok(CleanOutcome::Live)));
    drop(attached);
    assert!(segment.exists());
    let wet = discovery::clean(dir.path(), false, true).unwrap();
    assert!(matches!(wet[0].outcome, Ok(CleanOutcome::Removed { object_existed: true, .. })), "{wet:?}");
    assert_unlinked(&segment);
    assert!(!dir.flink("kept").exists());
}

#[test]
fn a_leak_by_any_handle_keeps_the_ring_past_its_owner() {
    let dir = TestDir::new("leak-attacher");
    let creator = PosixSlotAllocator::builder(4, 32).discovery_dir(dir.path()).create("ring").unwrap();
    let segment = creator.segment_path();
    let mut attacher = PosixSlotAllocator::attach_in("ring", Some(dir.path())).unwrap();
    attacher.leak().unwrap();
    assert!(creator.is_leaked() && creator.is_owner());
    drop(attacher);
    drop(creator);
    assert!(segment.exists(), "the owner's drop must not remove a leaked ring");
    assert_eq!(discovery::inspect(&dir.flink("ring")).unwrap().state, SegmentState::Leaked);
    assert!(matches!(discovery::reclaim_leaked(&dir.flink("ring")).unwrap(), discovery::Reclaim::Removed { object_existed: true, .. }));
    assert_unlinked(&segment);
}

#[test]
fn leak_and_own_need_the_flink_file() {
    let dir = TestDir::new("leak-gone");
    let mut ring = PosixSlotAllocator::builder(4, 32).discovery_dir(dir.path()).create("ring").unwrap();
    let segment = ring.segment_path();
    std::fs::remove_file(dir.flink("ring")).unwrap();
    let err = ring.leak().unwrap_err();
    assert!(matches!(&err, OpenError::NotPublished { path } if path == &dir.flink("ring")), "{err:?}");
    assert!(err.to_string().contains("no longer names this segment"), "{err}");
    assert!(ring.is_owner(), "a failed leak changes nothing");
    drop(ring);
    assert_unlinked(&segment);
}
