//! The keyed blackboard: never-torn reads under a writer at full speed
//! (real processes), futex waits, types checked at attach and per entry,
//! one writer per entry (also across processes, and after a writer's
//! SIGKILL), hostile segments, ownership, inspection.
//!
//! Cross-process tests re-exec this binary (`child_process_entry`, role in
//! `SHMSLOT_BB_ROLE`), as `tests/cross_process.rs` does; children die with
//! the parent.

mod common;

use std::fs::{File, OpenOptions};
use std::mem::{align_of, size_of, MaybeUninit};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::family::{child_env as env, say, Family, Fields};
use common::{assert_unlinked, mix, TestDir};
use shmslot::blackboard::{inspect, Blackboard, BlackboardBuilder, BlackboardError, EntryReader, EntryWriter};
use shmslot::{type_hash, OpenError, Pod, PosixSlotAllocator, ValidationError};

const CHILD_TEST: &str = "child_process_entry";
const ROLE: &str = "SHMSLOT_BB_ROLE";
const FLINK: &str = "SHMSLOT_BB_FLINK";
const SECS: &str = "SHMSLOT_BB_SECS";
/// Duration of the torn-value test, in seconds (default 10).
const TORN_SECS: &str = "SHMSLOT_BB_TORN_SECS";
const STALL: Duration = Duration::from_secs(30);

// ───────────────────────────── types ─────────────────────────────

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
struct Key(u32);
// SAFETY: a u32, no padding; any bits are valid.
unsafe impl Pod for Key {
    const TYPE_HASH: [u8; 16] = type_hash("Key", 4, 4);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
struct OtherKey(u64);
// SAFETY: a u64.
unsafe impl Pod for OtherKey {
    const TYPE_HASH: [u8; 16] = type_hash("OtherKey", 8, 8);
}

/// A value that proves itself: `counter`, words derived from it and the
/// entry, and a check word over all of them.
trait Checked: Pod {
    fn make(entry: u32, counter: u64) -> Self;
    /// Writes the value field by field through the pointer (in place).
    fn fill_in_place(dst: &mut MaybeUninit<Self>, entry: u32, counter: u64);
    /// The counter of a well-formed value of `entry`, `None` if torn.
    fn counter_if_valid(&self, entry: u32) -> Option<u64>;
}

fn word(entry: u32, counter: u64, k: usize) -> u64 {
    mix(counter ^ (u64::from(entry) << 48) ^ ((k as u64) << 32) ^ 0x5eed)
}

fn check_word(entry: u32, counter: u64, words: &[u64]) -> u64 {
    words.iter().fold(mix(counter ^ u64::from(entry)), |a, w| mix(a ^ w))
}

macro_rules! checked {
    ($name:ident, $bytes:expr) => {
        #[derive(Clone, Copy)]
        #[repr(C)]
        struct $name {
            counter: u64,
            words: [u64; $bytes / 8 - 2],
            check: u64,
        }
        const _: () = assert!(size_of::<$name>() == $bytes);
        // SAFETY: repr(C), u64 fields only, no padding; any bits are valid.
        unsafe impl Pod for $name {
            const TYPE_HASH: [u8; 16] = type_hash(stringify!($name), size_of::<$name>(), align_of::<$name>());
        }
        impl $name {
            const WORDS: usize = $bytes / 8 - 2;
        }
        impl Checked for $name {
            fn make(entry: u32, counter: u64) -> Self {
                let mut words = [0u64; $bytes / 8 - 2];
                for (k, w) in words.iter_mut().enumerate() {
                    *w = word(entry, counter, k);
                }
                Self { counter, check: check_word(entry, counter, &words), words }
            }
            // V16 has no payload words.
            #[allow(clippy::reversed_empty_ranges)]
            fn fill_in_place(dst: &mut MaybeUninit<Self>, entry: u32, counter: u64) {
                let p = dst.as_mut_ptr();
                let mut acc = mix(counter ^ u64::from(entry));
                // SAFETY: `p` points to a writable, aligned `Self`; each
                // field is written through a raw place, no reference to
                // uninitialised data is made.
                unsafe {
                    (&raw mut (*p).counter).write(counter);
                    for k in 0..Self::WORDS {
                        let w = word(entry, counter, k);
                        (&raw mut (*p).words).cast::<u64>().add(k).write(w);
                        acc = mix(acc ^ w);
                    }
                    (&raw mut (*p).check).write(acc);
                }
            }
            fn counter_if_valid(&self, entry: u32) -> Option<u64> {
                let ok = self.words.iter().enumerate().all(|(k, w)| *w == word(entry, self.counter, k)) && self.check == check_word(entry, self.counter, &self.words);
                ok.then_some(self.counter)
            }
        }
    };
}

checked!(V16, 16);
checked!(V64, 64);
checked!(V200, 200);
checked!(V1K, 1024);

const ENTRIES: u32 = 64;

fn key_of(e: u32) -> Key {
    Key(1000 + e)
}

/// The 64-entry board of the torn test: entry `e` holds type `e % 4`.
fn build_torn_board(path: &Path) -> Blackboard<Key> {
    let mut b = BlackboardBuilder::<Key>::new();
    for e in 0..ENTRIES {
        b = match e % 4 {
            0 => b.entry(key_of(e), V16::make(e, 0)),
            1 => b.entry(key_of(e), V64::make(e, 0)),
            2 => b.entry(key_of(e), V200::make(e, 0)),
            _ => b.entry(key_of(e), V1K::make(e, 0)),
        }
        .unwrap();
    }
    b.create(path).unwrap()
}

// ───────────────────────────── child side ─────────────────────────────

fn env_u64(name: &str) -> u64 {
    env(name).parse().unwrap_or_else(|e| panic!("child: {name}: {e}"))
}

fn wait_go() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("child: read stdin");
    assert_eq!(line.trim(), "go", "child: parent went away before `go`");
}

/// Plays a child process when `SHMSLOT_BB_ROLE` is set; otherwise a no-op.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    match role.as_str() {
        "torn-writer" => torn_writer(),
        "torn-reader" => torn_reader(),
        "waiter" => waiter(),
        "claimer" => claimer(),
        "creator" => creator(),
        other => panic!("unknown child role {other}"),
    }
}

/// Updates entry `e` once, in one of three ways (copy; loan + write; loan
/// written field by field in place).
fn update<V: Checked>(w: &mut EntryWriter<V>, e: u32, mode: u64) {
    let counter = w.version() + 1;
    let v = match mode % 3 {
        0 => w.update_with_copy(&V::make(e, counter)),
        1 => w.loan_uninit().write(V::make(e, counter)).publish(),
        _ => {
            let mut loan = w.loan_uninit();
            assert_eq!(loan.version(), counter);
            V::fill_in_place(loan.value_mut(), e, counter);
            // SAFETY: `fill_in_place` wrote every field.
            unsafe { loan.assume_init() }.publish()
        }
    };
    assert_eq!(v, counter, "writer: entry {e} published version {v}, expected {counter}");
}

fn torn_writer() {
    let board = Blackboard::<Key>::attach(env(FLINK)).expect("writer: attach");
    let secs = env_u64(SECS);
    let (mut w16, mut w64, mut w200, mut w1k) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in 0..ENTRIES {
        let k = key_of(e);
        match e % 4 {
            0 => w16.push(board.entry_writer::<V16>(&k).unwrap()),
            1 => w64.push(board.entry_writer::<V64>(&k).unwrap()),
            2 => w200.push(board.entry_writer::<V200>(&k).unwrap()),
            _ => w1k.push(board.entry_writer::<V1K>(&k).unwrap()),
        }
    }
    say("SHMSLOT-READY writer");
    wait_go();
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut updates, mut rounds) = (0u64, 0u64);
    while Instant::now() < end {
        for e in 0..ENTRIES {
            let i = (e / 4) as usize;
            let mode = rounds + u64::from(e);
            match e % 4 {
                0 => update(&mut w16[i], e, mode),
                1 => update(&mut w64[i], e, mode),
                2 => update(&mut w200[i], e, mode),
                _ => update(&mut w1k[i], e, mode),
            }
            updates += 1;
        }
        rounds += 1;
    }
    say(&format!("SHMSLOT-RESULT updates={updates} rounds={rounds}"));
}

#[derive(Default)]
struct ReadStats {
    reads: u64,
    torn: u64,
    mismatched: u64,
    backwards: u64,
    advances: u64,
    contended: u64,
}

fn read_one<V: Checked>(r: &EntryReader<V>, e: u32, last: &mut u64, s: &mut ReadStats) {
    match r.get_with_version() {
        Ok((value, version)) => {
            s.reads += 1;
            match value.counter_if_valid(e) {
                None => s.torn += 1,
                Some(c) if c != version => s.mismatched += 1,
                Some(_) => {}
            }
            if version < *last {
                s.backwards += 1;
            } else if version > *last {
                s.advances += 1;
                *last = version;
            }
        }
        Err(BlackboardError::Contended { .. }) => s.contended += 1,
        Err(e) => panic!("reader: {e}"),
    }
}

fn torn_reader() {
    let board = Blackboard::<Key>::attach(env(FLINK)).expect("reader: attach");
    let secs = env_u64(SECS);
    let (mut r16, mut r64, mut r200, mut r1k) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in 0..ENTRIES {
        let k = key_of(e);
        match e % 4 {
            0 => r16.push(board.entry_reader::<V16>(&k).unwrap()),
            1 => r64.push(board.entry_reader::<V64>(&k).unwrap()),
            2 => r200.push(board.entry_reader::<V200>(&k).unwrap()),
            _ => r1k.push(board.entry_reader::<V1K>(&k).unwrap()),
        }
    }
    say("SHMSLOT-READY reader");
    wait_go();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut last = vec![0u64; ENTRIES as usize];
    let mut s = ReadStats::default();
    let mut rng = common::Rng(u64::from(std::process::id()) | 1);
    while Instant::now() < end {
        for _ in 0..64 {
            let e = rng.below(u64::from(ENTRIES)) as u32;
            let (i, l) = ((e / 4) as usize, &mut last[e as usize]);
            match e % 4 {
                0 => read_one(&r16[i], e, l, &mut s),
                1 => read_one(&r64[i], e, l, &mut s),
                2 => read_one(&r200[i], e, l, &mut s),
                _ => read_one(&r1k[i], e, l, &mut s),
            }
        }
    }
    let max_version_sum: u64 = last.iter().sum();
    say(&format!(
        "SHMSLOT-RESULT reads={} torn={} mismatched={} backwards={} advances={} contended={} max_version_sum={max_version_sum}",
        s.reads, s.torn, s.mismatched, s.backwards, s.advances, s.contended
    ));
}

fn waiter() {
    let board = Blackboard::<Key>::attach(env(FLINK)).expect("waiter: attach");
    let r = board.entry_reader::<V16>(&key_of(0)).unwrap();
    let v0 = r.version();
    say(&format!("SHMSLOT-READY {v0}"));
    let t = Instant::now();
    let changed = r.wait_for_change(v0, Duration::from_secs(20));
    let ms = t.elapsed().as_millis();
    let (value, version) = r.get_with_version().unwrap();
    assert_eq!(value.counter_if_valid(0), Some(version), "waiter: bad value");
    say(&format!("SHMSLOT-RESULT changed={} ms={ms} version={version}", u8::from(changed.is_some())));
}

fn claimer() {
    let board = Blackboard::<Key>::attach(env(FLINK)).expect("claimer: attach");
    let mut w = board.entry_writer::<V16>(&key_of(0)).expect("claimer: claim");
    w.update_with_copy(&V16::make(0, 1));
    say(&format!("SHMSLOT-READY {}", std::process::id()));
    // Hold the claim until killed (or the parent goes away).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn creator() {
    let board = BlackboardBuilder::<Key>::new().entry(key_of(0), V16::make(0, 0)).unwrap().create(env(FLINK)).expect("creator: create");
    say(&format!("SHMSLOT-READY {}", board.segment_path().display()));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

// ───────────────────────────── parent side ─────────────────────────────

fn child(role: &str, flink: &Path, secs: u64) -> std::process::Command {
    let mut cmd = common::child_command(CHILD_TEST);
    cmd.env(ROLE, role).env(FLINK, flink).env(SECS, secs.to_string());
    cmd
}

fn num(r: &Fields, k: &str) -> u64 {
    r.get(k).unwrap_or_else(|| panic!("result {r:?} lacks {k}")).parse().unwrap_or_else(|e| panic!("result {k}: {e}"))
}

/// One writer process updating 64 entries of four value types (16 B to
/// 1 KiB) as fast as it can, by copy and by loan in turn; four reader
/// processes reading random entries: every value read is whole (its
/// checksum holds) and is exactly the version it was returned with, and no
/// reader sees a version go back.
#[test]
fn torn_values_never_seen_across_processes() {
    let secs: u64 = std::env::var(TORN_SECS).ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let dir = TestDir::new("bb-torn");
    let board = build_torn_board(&dir.flink("torn"));
    let path = board.flink_path().to_owned();
    let mut fam = Family::new();
    let writer = fam.spawn("writer", child("torn-writer", &path, secs));
    fam.wait_ready(writer, STALL);
    let readers: Vec<usize> = (0..4).map(|i| fam.spawn(&format!("reader{i}"), child("torn-reader", &path, secs))).collect();
    for &r in &readers {
        fam.wait_ready(r, STALL);
    }
    for id in std::iter::once(writer).chain(readers.iter().copied()) {
        fam.send(id, "go");
    }
    let t = Instant::now();
    let results = fam.wait_all(Instant::now() + Duration::from_secs(secs + 90), "torn test did not finish");
    let elapsed = t.elapsed();
    let w = &results[0];
    let updates = num(w, "updates");
    let final_versions: u64 = (0..ENTRIES).map(|e| board.version(board.entry_id(&key_of(e)).unwrap()).unwrap()).sum();
    assert_eq!(final_versions, updates, "the entries' versions must add up to the writer's updates");
    let mut total_reads = 0;
    for (i, r) in results[1..].iter().enumerate() {
        eprintln!("torn test reader {i}: {r:?}");
        assert_eq!(num(r, "torn"), 0, "reader {i} saw torn values: {r:?}");
        assert_eq!(num(r, "mismatched"), 0, "reader {i} saw a value with the wrong version: {r:?}");
        assert_eq!(num(r, "backwards"), 0, "reader {i} saw a version go back: {r:?}");
        assert_eq!(num(r, "contended"), 0, "reader {i} gave up on a legitimate writer: {r:?}");
        assert!(num(r, "reads") >= 10_000 * secs.min(10) / 10, "reader {i} read too little to prove anything: {r:?}");
        assert!(num(r, "advances") >= 100, "reader {i} did not see versions advance: {r:?}");
        total_reads += num(r, "reads");
    }
    assert!(updates >= 10_000, "the writer updated too little: {w:?}");
    eprintln!("torn test: {secs} s ({elapsed:?} wall), 1 writer: {updates} updates ({} rounds of 64 entries); 4 readers: {total_reads} reads; torn 0", num(w, "rounds"));
    let seg = board.segment_path();
    drop(board);
    assert_unlinked(&seg);
    assert!(!path.exists());
}

fn small_board(dir: &TestDir, name: &str) -> Blackboard<Key> {
    BlackboardBuilder::<Key>::new()
        .entry(key_of(0), V16::make(0, 0))
        .unwrap()
        .entry(key_of(1), V64::make(1, 0))
        .unwrap()
        .entry(key_of(2), V200::make(2, 0))
        .unwrap()
        .create(dir.flink(name))
        .unwrap()
}

/// Waits (bounded) until entry 0 of `board` has a parked waiter.
fn until_parked(board: &Blackboard<Key>) {
    let limit = Instant::now() + STALL;
    while board.status().entries[0].waiters == 0 {
        assert!(Instant::now() < limit, "no waiter parked on entry 0");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A waiter in another process parks on the entry's futex and wakes on its
/// update, long before its timeout.
#[test]
fn wait_wakes_across_processes() {
    let dir = TestDir::new("bb-wait");
    let board = small_board(&dir, "wait");
    let mut w = board.entry_writer::<V16>(&key_of(0)).unwrap();
    let mut fam = Family::new();
    let c = fam.spawn("waiter", child("waiter", board.flink_path(), 0));
    assert_eq!(fam.wait_ready(c, STALL), "0");
    until_parked(&board);
    let t = Instant::now();
    assert_eq!(w.update_with_copy(&V16::make(0, 1)), 1);
    let r = fam.wait_result(c, Instant::now() + STALL);
    fam.wait_exit(c, Instant::now() + STALL);
    eprintln!("cross-process wake: {r:?}, {:?} after the update", t.elapsed());
    assert_eq!(num(&r, "changed"), 1, "{r:?}");
    assert_eq!(num(&r, "version"), 1, "{r:?}");
    assert!(num(&r, "ms") < 10_000, "woke only after {} ms: {r:?}", num(&r, "ms"));
    assert_eq!(board.status().entries[0].waiters, 0);
}

/// Within one process: a thread parked on an entry (board-level wait by
/// id) wakes on its update; a wait on an entry that does not change times
/// out; a change of another entry does not count.
#[test]
fn wait_wakes_threads_and_times_out() {
    let dir = TestDir::new("bb-wait-thread");
    let board = small_board(&dir, "waitthread");
    let id = board.entry_id(&key_of(0)).unwrap();
    let mut other = board.entry_writer::<V64>(&key_of(1)).unwrap();
    let mut w = board.entry_writer::<V16>(&key_of(0)).unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let t = Instant::now();
            (board.wait_for_change(id, 0, Duration::from_secs(20)).unwrap(), t.elapsed())
        });
        until_parked(&board);
        other.update_with_copy(&V64::make(1, 1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!h.is_finished(), "a change of another entry woke the waiter");
        w.update_with_copy(&V16::make(0, 1));
        let (v, took) = h.join().unwrap();
        assert_eq!(v, Some(1));
        assert!(took < Duration::from_secs(10), "woke after {took:?}");
    });
    let r = board.entry_reader::<V16>(&key_of(0)).unwrap();
    // Already changed: returns at once.
    assert_eq!(r.wait_for_change(0, Duration::from_secs(20)), Some(1));
    let t = Instant::now();
    assert_eq!(r.wait_for_change(1, Duration::from_millis(200)), None);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(10), "timed out after {took:?}");
}

/// Key and value types are checked; unknown keys, duplicate keys, empty
/// boards and rings are refused.
#[test]
fn types_and_keys_are_checked() {
    let dir = TestDir::new("bb-types");
    let board = small_board(&dir, "types");
    let path = board.flink_path().to_owned();
    match Blackboard::<OtherKey>::attach(&path) {
        Err(BlackboardError::KeyTypeMismatch { expected, found, .. }) => {
            assert_eq!((expected.size, found.size), (8, 4));
        }
        other => panic!("attach with another key type: {other:?}"),
    }
    let other = Blackboard::<Key>::attach(&path).unwrap();
    match other.entry_reader::<V64>(&key_of(0)) {
        Err(e @ BlackboardError::ValueTypeMismatch { .. }) => eprintln!("{e}"),
        other => panic!("reader of the wrong type: {other:?}"),
    }
    assert!(matches!(other.entry_writer::<V16>(&key_of(1)), Err(BlackboardError::ValueTypeMismatch { .. })));
    assert!(matches!(other.entry_reader::<V16>(&key_of(7)), Err(BlackboardError::UnknownKey { .. })));
    assert!(matches!(other.entry_id(&key_of(7)), Err(BlackboardError::UnknownKey { .. })));
    assert_eq!(other.keys(), vec![key_of(0), key_of(1), key_of(2)]);
    assert_eq!(other.entry_id(&key_of(2)).unwrap().index(), 2);
    let r = other.entry_reader::<V200>(&key_of(2)).unwrap();
    assert_eq!(r.get().unwrap().counter_if_valid(2), Some(0));
    assert_eq!(r.version(), 0);
    let dup = BlackboardBuilder::<Key>::new().entry(key_of(0), V16::make(0, 0)).unwrap().entry(key_of(0), V64::make(0, 0));
    assert!(matches!(dup, Err(BlackboardError::DuplicateKey { .. })));
    assert!(matches!(BlackboardBuilder::<Key>::new().create(dir.flink("empty")), Err(BlackboardError::Config { .. })));
    // A live board's name is taken.
    assert!(matches!(small_board_result(&dir, "types"), Err(BlackboardError::Open(OpenError::InUse { .. }))));
    // A ring's flink file is not a board's, and the other way round.
    let ring = PosixSlotAllocator::create(dir.flink("ring"), 4, 64).unwrap();
    match Blackboard::<Key>::attach(ring.flink_path()) {
        Err(BlackboardError::Open(OpenError::Invalid { error: ValidationError::BadField { field: "flink kind", .. }, .. })) => {}
        other => panic!("board attach through a ring's flink file: {other:?}"),
    }
    assert!(PosixSlotAllocator::attach(&path).is_err());
    drop(ring);
}

fn small_board_result(dir: &TestDir, name: &str) -> Result<Blackboard<Key>, BlackboardError> {
    BlackboardBuilder::<Key>::new().entry(key_of(0), V16::make(0, 0))?.create(dir.flink(name))
}

/// One writer per entry: a second one in this handle, another handle of
/// this process, or another process is refused; after the holder's process
/// is killed (SIGKILL) a new writer takes over and continues its versions.
#[test]
fn one_writer_per_entry_and_takeover_after_sigkill() {
    let dir = TestDir::new("bb-writer");
    let board = small_board(&dir, "writer");
    let second = Blackboard::<Key>::attach(board.flink_path()).unwrap();
    {
        let _w = board.entry_writer::<V16>(&key_of(0)).unwrap();
        assert!(matches!(board.entry_writer::<V16>(&key_of(0)), Err(BlackboardError::WriterExists { .. })));
        assert!(matches!(second.entry_writer::<V16>(&key_of(0)), Err(BlackboardError::WriterExists { .. })));
        // Other entries are free.
        let _w1 = second.entry_writer::<V64>(&key_of(1)).unwrap();
    }
    // Freed by the drop.
    drop(second.entry_writer::<V16>(&key_of(0)).unwrap());

    let mut fam = Family::new();
    let c = fam.spawn("claimer", child("claimer", board.flink_path(), 0));
    let pid: u32 = fam.wait_ready(c, STALL).parse().unwrap();
    match board.entry_writer::<V16>(&key_of(0)) {
        Err(BlackboardError::WriterExists { pid: p, .. }) => assert_eq!(p, pid),
        other => panic!("claim while another process holds it: {other:?}"),
    }
    let st = &board.status().entries[0];
    assert!(st.writer_claimed && st.writer_alive && st.writer_pid == pid, "{st:?}");
    fam.kill(c);
    let st = &board.status().entries[0];
    assert!(st.writer_claimed && !st.writer_alive, "{st:?}");
    let mut w = board.entry_writer::<V16>(&key_of(0)).expect("takeover after SIGKILL");
    assert_eq!(w.version(), 1, "the new writer continues the versions");
    assert_eq!(w.update_with_copy(&V16::make(0, 2)), 2);
    let r = second.entry_reader::<V16>(&key_of(0)).unwrap();
    assert_eq!(r.get_with_version().unwrap().0.counter_if_valid(0), Some(2));
}

/// The OS object behind a board, opened for hostile edits.
fn object(board: &Blackboard<Key>) -> File {
    OpenOptions::new().read(true).write(true).open(board.segment_path()).unwrap()
}

fn read_u64(f: &File, at: u64) -> u64 {
    let mut b = [0; 8];
    f.read_exact_at(&mut b, at).unwrap();
    u64::from_le_bytes(b)
}

/// Recomputes the crc (bytes 20..data_offset) so that a field edit, not the
/// crc, is what validation must catch.
fn recrc(f: &File) {
    let data = read_u64(f, 64) as usize;
    let mut b = vec![0; data];
    f.read_exact_at(&mut b, 0).unwrap();
    f.write_all_at(&crc32fast::hash(&b[20..]).to_le_bytes(), 16).unwrap();
}

/// Hostile edits of the segment give typed errors at attach, never a
/// panic; a hostile entry state makes a read fail (boundedly), not hang.
#[test]
fn corrupt_segments_are_refused() {
    let dir = TestDir::new("bb-corrupt");
    type Edit = fn(&File);
    type Expect = fn(&ValidationError) -> bool;
    let cases: [(&str, Edit, Expect); 9] = [
        ("bad magic", |f| f.write_all_at(b"XXXXXXXX", 0).unwrap(), |e| matches!(e, ValidationError::BadMagic { .. })),
        ("unfinished", |f| f.write_all_at(&[0; 4], 12).unwrap(), |e| matches!(e, ValidationError::NotInitialized { .. })),
        ("bad crc", |f| f.write_all_at(&[0xff], 128 + 3 * 64).unwrap(), |e| matches!(e, ValidationError::BadCrc { .. })),
        (
            "entry count too big",
            |f| {
                f.write_all_at(&5000u32.to_le_bytes(), 20).unwrap();
                recrc(f);
            },
            |e| matches!(e, ValidationError::BadField { field: "entry_count", .. }),
        ),
        (
            "entry count smaller than the table",
            |f| {
                f.write_all_at(&1u32.to_le_bytes(), 20).unwrap();
                recrc(f);
            },
            |e| matches!(e, ValidationError::BadField { .. } | ValidationError::BadCrc { .. }),
        ),
        (
            "overlapping entry blocks",
            |f| {
                let first = read_u64(f, 128 + 32);
                f.write_all_at(&first.to_le_bytes(), 128 + 64 + 32).unwrap();
                recrc(f);
            },
            |e| matches!(e, ValidationError::BadField { field: "block_offset", .. }),
        ),
        (
            "block offset past the object",
            |f| {
                f.write_all_at(&(1u64 << 40).to_le_bytes(), 128 + 128 + 32).unwrap();
                recrc(f);
            },
            |e| matches!(e, ValidationError::BadField { field: "block_offset", .. }),
        ),
        ("truncated to 100 bytes", |f| f.set_len(100).unwrap(), |e| matches!(e, ValidationError::Truncated { .. })),
        (
            "truncated blocks",
            |f| {
                let total = read_u64(f, 72);
                f.set_len(total - 64).unwrap();
            },
            |e| matches!(e, ValidationError::GeometryTooLarge { .. }),
        ),
    ];
    for (i, (what, edit, expected)) in cases.into_iter().enumerate() {
        let board = small_board(&dir, &format!("corrupt{i}"));
        edit(&object(&board));
        match Blackboard::<Key>::attach(board.flink_path()) {
            Err(BlackboardError::Open(OpenError::Invalid { error, .. })) if expected(&error) => eprintln!("{what}: {error}"),
            other => panic!("{what}: {other:?}"),
        }
        assert!(inspect(board.flink_path()).is_err(), "{what}: inspect accepted it");
        let seg = board.segment_path();
        drop(board);
        assert_unlinked(&seg);
    }

    // Hostile entry state after attach: the version names a buffer whose
    // sequence never matches. Reads give up (boundedly) with a typed error.
    let board = small_board(&dir, "hostile-state");
    let r = board.entry_reader::<V16>(&key_of(0)).unwrap();
    let f = object(&board);
    let block = read_u64(&f, 128 + 32);
    f.write_all_at(&5u64.to_le_bytes(), block).unwrap();
    let t = Instant::now();
    assert!(matches!(r.get(), Err(BlackboardError::Contended { .. })));
    assert!(t.elapsed() < Duration::from_secs(10), "a hostile state held a reader for {:?}", t.elapsed());
    // An odd (being written) sequence for the current version: same.
    f.write_all_at(&0u64.to_le_bytes(), block).unwrap();
    f.write_all_at(&1u64.to_le_bytes(), block + 8).unwrap();
    assert!(matches!(r.get(), Err(BlackboardError::Contended { .. })));
    // Repaired, it reads again.
    f.write_all_at(&0u64.to_le_bytes(), block + 8).unwrap();
    assert_eq!(r.get().unwrap().counter_if_valid(0), Some(0));
}

/// The creator's drop removes segment and flink file, even with another
/// handle attached (which stays usable until it goes).
#[test]
fn creator_drop_removes_segment_and_flink() {
    let dir = TestDir::new("bb-creator-drop");
    let board = small_board(&dir, "drop");
    assert!(board.is_owner());
    let (path, seg) = (board.flink_path().to_owned(), board.segment_path());
    assert!(path.exists() && seg.exists());
    let other = Blackboard::<Key>::attach(&path).unwrap();
    assert!(!other.is_owner());
    let r = other.entry_reader::<V16>(&key_of(0)).unwrap();
    drop(board);
    assert!(!path.exists());
    assert_unlinked(&seg);
    assert_eq!(r.get().unwrap().counter_if_valid(0), Some(0), "the mapping outlives the name");
    drop((other, r));
}

/// The creator's process dies (SIGKILL); of the attached handles, the last
/// one out removes the board — entry handles count as attached.
#[test]
fn last_attacher_out_removes_after_creator_died() {
    let dir = TestDir::new("bb-last-out");
    let path = dir.flink("lastout");
    let mut fam = Family::new();
    let c = fam.spawn("creator", child("creator", &path, 0));
    let seg = std::path::PathBuf::from(fam.wait_ready(c, STALL));
    let a = Blackboard::<Key>::attach(&path).unwrap();
    let b = Blackboard::<Key>::attach(&path).unwrap();
    let r = b.entry_reader::<V16>(&key_of(0)).unwrap();
    assert!(a.creator_alive());
    fam.kill(c);
    assert!(!a.creator_alive());
    drop(a);
    assert!(path.exists() && seg.exists(), "removed while others were attached");
    drop(b);
    assert!(path.exists() && seg.exists(), "removed while an entry reader lived");
    assert_eq!(r.get().unwrap().counter_if_valid(0), Some(0));
    drop(r);
    assert!(!path.exists(), "flink file left behind");
    assert_unlinked(&seg);
}

/// Reclaiming a blackboard never reads ring fields out of it: the bytes at
/// offset 112, a ring header's predecessor id, are reserved in a
/// blackboard, and whatever they say must not make reclaim remove another
/// segment. (It did: reclaim walked them as a chain of older ring
/// generations and unlinked every one nobody held.)
#[test]
fn reclaiming_a_blackboard_never_follows_ring_fields() {
    let dir = TestDir::new("bb-no-chain");
    // A leaked ring: its object exists and nobody holds it.
    let mut ring = PosixSlotAllocator::builder(4, 8).create(dir.flink("ring")).unwrap();
    ring.leak().unwrap();
    let ring_seg = ring.segment_path();
    let ring_flink = ring.flink_path().to_owned();
    drop(ring);
    let ring_id = u64::from_str_radix(ring_seg.to_str().unwrap().rsplit('.').next().unwrap(), 16).unwrap();
    // A leaked board whose reserved bytes at 112 name that ring's object.
    let mut board = small_board(&dir, "board");
    let (path, seg) = (board.flink_path().to_owned(), board.segment_path());
    board.leak().unwrap();
    drop(board);
    OpenOptions::new().write(true).open(&seg).unwrap().write_all_at(&ring_id.to_le_bytes(), 112).unwrap();
    assert!(matches!(shmslot::discovery::reclaim_leaked(&path).unwrap(), shmslot::discovery::Reclaim::Removed { .. }));
    assert_unlinked(&seg);
    assert!(ring_seg.exists(), "reclaiming the board removed the ring's object {}", ring_seg.display());
    assert!(matches!(shmslot::discovery::reclaim_leaked(&ring_flink).unwrap(), shmslot::discovery::Reclaim::Removed { .. }));
    assert_unlinked(&ring_seg);
}

/// `leak` leaves the board in place past its creator (leaked: neither a
/// plain reclaim nor the last handle out removes it; an attacher can use it
/// again); `own` makes an attacher remove it.
#[test]
fn leak_and_own() {
    let dir = TestDir::new("bb-leak-own");
    let mut board = small_board(&dir, "leak");
    let (path, seg) = (board.flink_path().to_owned(), board.segment_path());
    board.leak().unwrap();
    drop(board);
    assert!(path.exists() && seg.exists());
    let st = inspect(&path).unwrap();
    assert_eq!(st.state, shmslot::discovery::SegmentState::Leaked, "{st:?}");
    assert_eq!(shmslot::discovery::reclaim(&path).unwrap(), shmslot::discovery::Reclaim::Leaked);
    let again = Blackboard::<Key>::attach(&path).unwrap();
    assert_eq!(again.entry_reader::<V64>(&key_of(1)).unwrap().version(), 0);
    drop(again);
    assert!(seg.exists(), "the last attacher of a leaked board must not remove it");
    assert!(matches!(shmslot::discovery::reclaim_leaked(&path).unwrap(), shmslot::discovery::Reclaim::Removed { .. }));
    assert!(!path.exists());
    assert_unlinked(&seg);

    let board = small_board(&dir, "own");
    let (path, seg) = (board.flink_path().to_owned(), board.segment_path());
    let mut other = Blackboard::<Key>::attach(&path).unwrap();
    other.own().unwrap();
    assert!(other.is_owner());
    drop(other);
    assert!(!path.exists());
    assert_unlinked(&seg);
    drop(board);
}

/// `inspect` shows entries, versions, writers, liveness — without joining.
#[test]
fn inspect_shows_entries() {
    let dir = TestDir::new("bb-inspect");
    let board = small_board(&dir, "inspect");
    let mut w = board.entry_writer::<V64>(&key_of(1)).unwrap();
    w.update_with_copy(&V64::make(1, 1));
    w.loan_uninit().write(V64::make(1, 2)).publish();
    // A dropped loan publishes nothing.
    let unpublished = w.loan_uninit().write(V64::make(1, 3));
    assert_eq!(unpublished.version(), 3);
    let _ = unpublished;
    let st = inspect(board.flink_path()).unwrap();
    assert_eq!(st.state, shmslot::discovery::SegmentState::Live);
    assert!(st.creator_alive && st.attached);
    assert_eq!(st.entries.len(), 3);
    assert_eq!(st.entries[1].version, 2);
    assert!(st.entries[1].writer_claimed && st.entries[1].writer_alive);
    assert!(!st.entries[0].writer_claimed && !st.entries[0].writer_alive);
    assert_eq!(st.entries[0].key_hex, "e8030000");
    assert_eq!(st.entries[2].value_type.size, 200);
    let r = board.entry_reader::<V64>(&key_of(1)).unwrap();
    assert_eq!(r.get_with_version().unwrap().1, 2);
    assert_eq!(r.get().unwrap().counter_if_valid(1), Some(2));
    drop(w);
    assert!(!board.status().entries[1].writer_claimed);
    let ring = PosixSlotAllocator::create(dir.flink("ring"), 4, 64).unwrap();
    assert!(inspect(ring.flink_path()).is_err());
}
