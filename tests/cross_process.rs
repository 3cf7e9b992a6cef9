//! Real multi-process tests of the POSIX backend.
//!
//! Re-exec pattern: a parent test spawns this very test binary
//! (`current_exe() --exact child_process_entry --nocapture`) with
//! `SHMSLOT_CHILD_ROLE` set; `child_process_entry` returns at once unless that
//! variable is set, and otherwise plays a reader or writer process. Works
//! under `cargo test` and `cargo nextest` (both run libtest harnesses).
//!
//! Protocol between parent and children (stdout lines, found anywhere in a
//! line because libtest may prefix its own text):
//! * `SHMSLOT-READY <n>`   reader: registered as reader `n`; writer: attached.
//! * `SHMSLOT-RESULT k=v…` the child's counts, printed just before it exits.
//!
//! Writers wait for a `go` line on stdin, so every reader is registered
//! before the first sample is reserved and all writers start together.
//!
//! Every wait is bounded; on failure the parent kills its children (and they
//! die with it: `PR_SET_PDEATHSIG`), so a bug fails a test but never hangs it.
//!
//! Payload format (every sample, 8 to 1024 bytes):
//! `[0..4]` crc32 of `[4..len]`, `[4..8]` tag = `writer_id << 28 | counter`,
//! `[8..len]` deterministic pseudo-random bytes; `len` is a function of the tag
//! so a reader checks it too.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::family::{child_env as env, say, Family, Fields};
use common::{assert_unlinked, mix, TestDir};
use shmslot::{Loan, OverflowPolicy, PosixSlotAllocator, Reader, SlotBackend};

const CHILD_TEST: &str = "child_process_entry";
const ROLE: &str = "SHMSLOT_CHILD_ROLE";
const FLINK: &str = "SHMSLOT_CHILD_FLINK";
/// Reader: samples per writer, `id:count,id:count`. Writer: its count.
const COUNTS: &str = "SHMSLOT_CHILD_COUNTS";
const WRITER_ID: &str = "SHMSLOT_CHILD_WRITER_ID";
const START_SEQ: &str = "SHMSLOT_CHILD_START_SEQ";
/// Reader: `exact` (no loss allowed), `fast` (DropOldest, no loss expected)
/// or `slow` (DropOldest, sleeps, may lose).
const MODE: &str = "SHMSLOT_CHILD_MODE";
/// Writer: reader indices it keeps within half a ring of (DropOldest).
const PACE: &str = "SHMSLOT_CHILD_PACE_READERS";
const DEADLINE_MS: &str = "SHMSLOT_CHILD_DEADLINE_MS";

/// How long a whole scenario may take before the parent kills it.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(170);
/// How long a child waits in one place (no sample, no slot) before failing.
const STALL: Duration = Duration::from_secs(30);

// ───────────────────────────── payload ─────────────────────────────


fn pool() -> &'static [u8] {
    static POOL: OnceLock<Vec<u8>> = OnceLock::new();
    POOL.get_or_init(|| (0..2048u64).flat_map(|i| mix(i ^ 0x5eed).to_le_bytes()).take(2048).collect())
}

fn tag_of(writer: u32, counter: u32) -> u32 {
    assert!(writer < 16 && counter < (1 << 28));
    (writer << 28) | counter
}

/// Length of the sample with `tag`: 8 to 1024 bytes.
fn sample_len(tag: u32) -> usize {
    8 + (mix(u64::from(tag)) % 1017) as usize
}

/// Writes the sample for `tag` into `buf`; returns its length.
fn fill(buf: &mut [u8], tag: u32) -> usize {
    let len = sample_len(tag);
    let off = (mix(u64::from(tag)) >> 32) as usize % 1024;
    buf[4..8].copy_from_slice(&tag.to_le_bytes());
    buf[8..len].copy_from_slice(&pool()[off..off + len - 8]);
    let crc = crc32fast::hash(&buf[4..len]);
    buf[0..4].copy_from_slice(&crc.to_le_bytes());
    len
}

/// Checks a received sample; returns `(writer, counter)`.
fn check(bytes: &[u8], seq: u64) -> (u32, u32) {
    assert!(bytes.len() >= 8, "seq {seq}: sample of {} bytes, at least 8 expected", bytes.len());
    let stored = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let computed = crc32fast::hash(&bytes[4..]);
    assert_eq!(stored, computed, "seq {seq}: crc mismatch ({} bytes)", bytes.len());
    let tag = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    assert_eq!(bytes.len(), sample_len(tag), "seq {seq}: tag {tag:#x} has the wrong length");
    (tag >> 28, tag & ((1 << 28) - 1))
}

// ───────────────────────────── child side ─────────────────────────────

fn env_u64(name: &str) -> u64 {
    env(name).parse().unwrap_or_else(|e| panic!("child: {name}: {e}"))
}

/// Plays a child process when `SHMSLOT_CHILD_ROLE` is set; otherwise a no-op.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let deadline = Instant::now() + Duration::from_millis(env_u64(DEADLINE_MS));
    match role.as_str() {
        "reader" => reader_child(deadline),
        "writer" => writer_child(deadline),
        other => panic!("unknown child role {other}"),
    }
}

fn parse_counts(s: &str) -> Vec<(u32, u32)> {
    s.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once(':').expect("id:count");
            (k.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

fn reader_child(deadline: Instant) {
    let counts = parse_counts(&env(COUNTS));
    let total: u64 = counts.iter().map(|&(_, c)| u64::from(c)).sum();
    let start = env_u64(START_SEQ);
    let mode = env(MODE);
    let lossless = mode != "slow";
    let ring = PosixSlotAllocator::attach(env(FLINK)).expect("child: attach");
    let mut reader = Reader::new(ring).expect("child: register reader");
    let index = reader.index();
    say(&format!("SHMSLOT-READY {index}"));

    // Next counter expected from each writer (lossless), or last seen + 1.
    let mut next: HashMap<u32, u32> = counts.iter().map(|&(w, _)| (w, 0)).collect();
    let mut expect_seq = start; // next sequence number if nothing is lost
    let mut received = 0u64;
    let mut gaps = 0u64; // sequence numbers skipped over (slow reader)
    let mut held_checks = 0u64;
    let mut last_progress = Instant::now();
    loop {
        let stats = reader.stats().expect("child: reader stats");
        if received + stats.lost == total {
            break;
        }
        assert!(received + stats.lost < total, "reader {index}: received {received} + lost {} > total {total}", stats.lost);
        let now = Instant::now();
        assert!(now < deadline, "reader {index}: deadline passed after {received} of {total} samples (lost {})", stats.lost);
        assert!(now - last_progress < STALL, "reader {index}: no sample for {STALL:?} after {received} of {total} (lost {})", stats.lost);
        let Some(sample) = reader.recv_timeout(Duration::from_millis(100)).expect("child: recv") else { continue };
        last_progress = Instant::now();
        let seq = sample.seq();
        let skipped = seq.wrapping_sub(expect_seq);
        if lossless {
            assert_eq!(seq, expect_seq, "reader {index}: sequence out of order");
        } else {
            assert!((skipped as i64) >= 0 && skipped < total, "reader {index}: seq {seq} went backwards (expected >= {expect_seq})");
        }
        gaps += skipped;
        expect_seq = seq.wrapping_add(1);
        let (w, c) = check(&sample, seq);
        let want = next.get_mut(&w).unwrap_or_else(|| panic!("reader {index}: seq {seq} from unknown writer {w}"));
        if lossless {
            assert_eq!(c, *want, "reader {index}: writer {w}'s counter out of order at seq {seq}");
        } else {
            assert!(c >= *want, "reader {index}: writer {w}'s counter went back to {c} (expected >= {want}) at seq {seq}");
            if counts.len() == 1 {
                // One writer, nothing discarded: the counter is the sequence offset.
                assert_eq!(u64::from(c), seq.wrapping_sub(start), "reader {index}: seq {seq} carries index {c}");
            }
        }
        *want = c + 1;
        if mode == "slow" {
            // Hold every 4th sample in place for a while: the writer laps
            // us meanwhile, yet must not overwrite the sample we hold.
            if received % 4 == 0 {
                std::thread::sleep(Duration::from_micros(300));
                check(&sample, seq);
                held_checks += 1;
            }
            drop(sample);
            std::thread::sleep(Duration::from_micros(500));
        } else {
            drop(sample);
        }
        received += 1;
    }
    let stats = reader.stats().expect("child: reader stats");
    // Whatever was never delivered at the end counts as skipped too.
    gaps += (start.wrapping_add(total)).wrapping_sub(expect_seq);
    for &(w, c) in &counts {
        if lossless {
            assert_eq!(next[&w], c, "reader {index}: writer {w} delivered {} of {c}", next[&w]);
        }
    }
    let per_writer: Vec<String> = counts.iter().map(|&(w, _)| format!("{w}:{}", next[&w])).collect();
    say(&format!(
        "SHMSLOT-RESULT index={index} received={received} stats_received={} lost={} gaps={gaps} next_seq={} held_checks={held_checks} per_writer={}",
        stats.received,
        stats.lost,
        stats.next_seq,
        per_writer.join(",")
    ));
}

fn writer_child(deadline: Instant) {
    let id: u32 = env(WRITER_ID).parse().unwrap();
    let count: u32 = env(COUNTS).parse().unwrap();
    let start = env_u64(START_SEQ);
    let pace: Vec<u8> = std::env::var(PACE).ok().filter(|s| !s.is_empty()).map(|s| s.split(',').map(|r| r.parse().unwrap()).collect()).unwrap_or_default();
    let ring = PosixSlotAllocator::attach(env(FLINK)).expect("child: attach");
    let half = (ring.slot_count() / 2) as u64;
    say("SHMSLOT-READY writer");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("child: read stdin");
    assert_eq!(line.trim(), "go", "writer {id}: parent went away before `go`");

    let mut first_seq = None;
    let mut last_seq = 0;
    for i in 0..count {
        // DropOldest: stay within half a ring of the readers that must not
        // lose anything (a single writer knows its next sequence number).
        for &r in &pace {
            let me = start.wrapping_add(u64::from(i));
            let since = Instant::now();
            loop {
                let st = ring.reader_stats(r).unwrap_or_else(|e| panic!("writer {id}: stats of paced reader {r}: {e}"));
                if me.wrapping_sub(st.next_seq) < half {
                    break;
                }
                assert!(since.elapsed() < STALL, "writer {id}: reader {r} stuck at {} while writing {me}", st.next_seq);
                std::thread::yield_now();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now()).min(STALL);
        let mut loan = Loan::new_timeout(&ring, left).unwrap_or_else(|e| panic!("writer {id}: reserve sample {i}: {e}"));
        let len = fill(loan.as_mut_slice(), tag_of(id, i));
        let seq = loan.commit(len).unwrap_or_else(|e| panic!("writer {id}: commit sample {i}: {e}"));
        if first_seq.is_none() {
            first_seq = Some(seq);
        } else {
            assert!((seq.wrapping_sub(last_seq) as i64) > 0, "writer {id}: seq {seq} after {last_seq}");
        }
        last_seq = seq;
    }
    say(&format!("SHMSLOT-RESULT writer={id} written={count} first_seq={} last_seq={last_seq}", first_seq.unwrap_or(0)));
}

// ───────────────────────────── parent side ─────────────────────────────

fn num(r: &Fields, k: &str) -> u64 {
    r.get(k).unwrap_or_else(|| panic!("result {r:?} lacks {k}")).parse().unwrap_or_else(|e| panic!("result {k}: {e}"))
}

struct Scenario<'a> {
    ring: &'a PosixSlotAllocator,
    start: u64,
    /// Reader modes, one process each.
    readers: &'a [&'a str],
    /// Samples per writer process; writer ids are 1, 2, …
    writers: &'a [u32],
    /// Writers keep within half a ring of these readers (by position in `readers`).
    pace: &'a [usize],
}

/// Runs readers, then writers; returns the reader results (in `readers`
/// order) and the writer results.
fn run(s: &Scenario<'_>) -> (Vec<Fields>, Vec<Fields>) {
    let mut fam = Family::new();
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let child = |role: &str, vars: &[(&str, String)]| {
        let mut cmd = common::child_command(CHILD_TEST);
        cmd.env(ROLE, role).env(DEADLINE_MS, deadline.saturating_duration_since(Instant::now()).as_millis().to_string());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd
    };
    let flink = s.ring.flink_path().to_str().unwrap().to_owned();
    let counts: Vec<String> = s.writers.iter().enumerate().map(|(i, c)| format!("{}:{c}", i + 1)).collect();
    let counts = counts.join(",");
    let reader_ids: Vec<usize> = s
        .readers
        .iter()
        .enumerate()
        .map(|(i, mode)| {
            fam.spawn(
                &format!("reader{i}-{mode}"),
                child("reader", &[(FLINK, flink.clone()), (COUNTS, counts.clone()), (START_SEQ, s.start.to_string()), (MODE, (*mode).to_owned())]),
            )
        })
        .collect();
    let mut index_of = Vec::new();
    for &id in &reader_ids {
        let r: u8 = fam.wait_ready(id, STALL).parse().expect("reader index");
        index_of.push(r);
    }
    // Registration is visible in the segment before anything is written.
    for &r in &index_of {
        let st = s.ring.reader_stats(r).unwrap_or_else(|e| fam.fail(&format!("reader {r} not visible after READY: {e}")));
        assert_eq!(st.next_seq, s.start, "reader {r} registered at {} not the first sequence", st.next_seq);
    }
    let pace: Vec<String> = s.pace.iter().map(|&i| index_of[i].to_string()).collect();
    let writer_ids: Vec<usize> = s
        .writers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            fam.spawn(
                &format!("writer{}", i + 1),
                child(
                    "writer",
                    &[(FLINK, flink.clone()), (COUNTS, c.to_string()), (WRITER_ID, (i + 1).to_string()), (START_SEQ, s.start.to_string()), (PACE, pace.join(","))],
                ),
            )
        })
        .collect();
    for &id in &writer_ids {
        fam.wait_ready(id, STALL);
    }
    for &id in &writer_ids {
        fam.send(id, "go");
    }
    let mut results = fam.wait_all(deadline, &format!("scenario not finished after {SCENARIO_TIMEOUT:?}"));
    let writers = results.split_off(reader_ids.len());
    for (r, &idx) in results.iter().zip(&index_of) {
        assert_eq!(num(r, "index"), u64::from(idx));
    }
    (results, writers)
}

fn check_writers(writers: &[Fields], counts: &[u32]) {
    for (w, &c) in writers.iter().zip(counts) {
        assert_eq!(num(w, "written"), u64::from(c), "writer result {w:?}");
    }
}

/// One writer, three readers, 1,000,000 samples of 8 B to 1 KiB, KeepAll:
/// every reader gets every sample exactly once, in order, intact. The
/// sequence numbers start near `u64::MAX` and wrap around mid-run.
#[test]
fn keep_all_one_writer_three_readers_million_samples() {
    const TOTAL: u32 = 1_000_000;
    let dir = TestDir::new("xproc-keepall");
    let start = u64::MAX - 300_000;
    let ring = PosixSlotAllocator::builder(1024, 1024).max_readers(8).start_seq(start).create(dir.flink("keepall")).unwrap();
    let t = Instant::now();
    let (readers, writers) = run(&Scenario { ring: &ring, start, readers: &["exact"; 3], writers: &[TOTAL], pace: &[] });
    eprintln!("1 writer → 3 readers, {TOTAL} samples: {:?}", t.elapsed());
    check_writers(&writers, &[TOTAL]);
    assert_eq!(num(&writers[0], "first_seq"), start);
    assert_eq!(num(&writers[0], "last_seq"), start.wrapping_add(u64::from(TOTAL) - 1));
    for r in &readers {
        assert_eq!(num(r, "received"), u64::from(TOTAL), "{r:?}");
        assert_eq!(num(r, "stats_received"), u64::from(TOTAL), "{r:?}");
        assert_eq!(num(r, "lost"), 0, "{r:?}");
        assert_eq!(num(r, "gaps"), 0, "{r:?}");
        assert_eq!(num(r, "next_seq"), start.wrapping_add(u64::from(TOTAL)), "{r:?}");
    }
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
}

/// DropOldest, one slow reader (sleeps, sometimes while holding a sample in
/// place) and two fast ones that the writer keeps pace with: the fast ones
/// lose nothing; the slow one loses samples, counts exactly what it lost, and
/// never sees a sample overwritten under it.
#[test]
fn drop_oldest_slow_reader_loses_fast_readers_do_not() {
    const TOTAL: u32 = 100_000;
    let dir = TestDir::new("xproc-dropoldest");
    let start = 1 << 40;
    let ring = PosixSlotAllocator::builder(64, 1024)
        .overflow_policy(OverflowPolicy::DropOldest)
        .max_readers(4)
        .start_seq(start)
        .create(dir.flink("dropoldest"))
        .unwrap();
    let t = Instant::now();
    let (readers, writers) = run(&Scenario { ring: &ring, start, readers: &["fast", "slow", "fast"], writers: &[TOTAL], pace: &[0, 2] });
    eprintln!("DropOldest, {TOTAL} samples: {:?}; readers {readers:?}", t.elapsed());
    check_writers(&writers, &[TOTAL]);
    let total = u64::from(TOTAL);
    for r in [&readers[0], &readers[2]] {
        assert_eq!(num(r, "lost"), 0, "fast reader lost samples: {r:?}");
        assert_eq!(num(r, "received"), total, "{r:?}");
        assert_eq!(num(r, "stats_received"), total, "{r:?}");
        assert_eq!(num(r, "gaps"), 0, "{r:?}");
    }
    let slow = &readers[1];
    let (received, lost) = (num(slow, "received"), num(slow, "lost"));
    assert_eq!(received + lost, total, "slow reader: {slow:?}");
    assert_eq!(num(slow, "stats_received"), received, "{slow:?}");
    assert_eq!(num(slow, "gaps"), lost, "the lost count must equal the sequence numbers skipped: {slow:?}");
    assert!(lost > 0, "the slow reader was never overtaken, the test proves nothing: {slow:?}");
    assert!(received > 0 && num(slow, "held_checks") > 0, "{slow:?}");
    assert_eq!(num(slow, "next_seq"), start + total, "{slow:?}");
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
}

/// Two writer processes into one KeepAll ring, two readers: every sample of
/// each writer arrives exactly once, per-writer counters without gaps, and
/// the ring's sequence numbers are dense. A small ring keeps it full, so the
/// writers race on the reuse of every slot (the path that once un-addressed
/// a live sample: a writer with a stale view cleared the readers' fresh
/// pending bits).
#[test]
fn two_writer_processes_one_ring() {
    const EACH: u32 = 100_000;
    let dir = TestDir::new("xproc-2writers");
    let ring = PosixSlotAllocator::builder(16, 1024).max_readers(4).create(dir.flink("twowriters")).unwrap();
    let t = Instant::now();
    let (readers, writers) = run(&Scenario { ring: &ring, start: 0, readers: &["exact", "exact"], writers: &[EACH, EACH], pace: &[] });
    eprintln!("2 writers → 2 readers, 2×{EACH} samples: {:?}", t.elapsed());
    check_writers(&writers, &[EACH, EACH]);
    for r in &readers {
        assert_eq!(num(r, "received"), 2 * u64::from(EACH), "{r:?}");
        assert_eq!(num(r, "lost"), 0, "{r:?}");
        assert_eq!(r["per_writer"], format!("1:{EACH},2:{EACH}"), "{r:?}");
    }
    // The two writers really ran concurrently: their sequence ranges overlap.
    let (a, b) = (&writers[0], &writers[1]);
    assert!(
        num(a, "first_seq") < num(b, "last_seq") && num(b, "first_seq") < num(a, "last_seq"),
        "the writers did not overlap in time: {a:?} {b:?}"
    );
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
}
