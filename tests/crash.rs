//! Crash safety with real processes: writers killed with SIGKILL at random
//! points, readers killed while they hold samples in place, readers stopped
//! with SIGSTOP, creators killed (stale segments), cleaners racing, and
//! sequence numbers and futex generations wrapping.
//!
//! Children are this test binary re-executed (`--exact crash_child_entry`)
//! with `SHMSLOT_CRASH_ROLE` set; they talk to the parent with stdout lines
//! (`READY …`, `RESULT …`). A watchdog ends a test that runs too long, and
//! children die with their parent (`PR_SET_PDEATHSIG`), so a bug fails a test
//! but never hangs CI or leaves processes behind.
//!
//! Payload of every sample: `[0..4]` crc32 of `[4..len]`, `[4..12]` tag =
//! `incarnation << 32 | counter`, then bytes derived from the tag; `len` is
//! derived from the tag too. A reader checks all three, so a torn or partial
//! sample cannot pass.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::family::{child_env as env, say};
use common::{assert_unlinked, check, child_command, fill, mix, TestDir};
use shmslot::discovery::{self, CleanOutcome, Reclaim, SegmentState};
use shmslot::{OpenError, OverflowPolicy, PosixSlotAllocator, Reader, SlotBackend, SlotError, ALL_READERS};

const CHILD_TEST: &str = "crash_child_entry";
const ROLE: &str = "SHMSLOT_CRASH_ROLE";
const FLINK: &str = "SHMSLOT_CRASH_FLINK";
const INCARNATION: &str = "SHMSLOT_CRASH_INCARNATION";
const COUNT: &str = "SHMSLOT_CRASH_COUNT";

// ───────────────────────────── payload ─────────────────────────────

// ───────────────────────────── children ─────────────────────────────

/// Not a test of its own: a child process's entry point (returns at once
/// unless `SHMSLOT_CRASH_ROLE` is set).
#[test]
fn crash_child_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let flink = PathBuf::from(env(FLINK));
    match role.as_str() {
        "writer" => writer_child(&flink, false),
        "writer-state-first" => writer_child(&flink, true),
        "holder" => holder_child(&flink),
        "stopper" => stopper_child(&flink),
        "full-writer" => {
            // Claims a writer entry on a full ring (no sequence claimed).
            let ring = PosixSlotAllocator::attach(&flink).expect("attach");
            assert_eq!(ring.reserve_slot(ALL_READERS), Err(SlotError::NoFreeSlot));
            say("READY");
            std::thread::sleep(Duration::from_secs(120));
        }
        "creator" => {
            let ring = PosixSlotAllocator::builder(8, 64).create(&flink).expect("create");
            say(&format!("READY {}", ring.segment_path().display()));
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Writes samples forever (until killed), tagged with its incarnation.
/// `state_first` is the negative control: it publishes the slot's state
/// before writing the payload (through the pointer it kept), so a reader
/// must be able to catch torn samples.
fn writer_child(flink: &Path, state_first: bool) {
    let ring = PosixSlotAllocator::attach(flink).expect("attach");
    let inc: u64 = env(INCARNATION).parse().unwrap();
    let cap = ring.slot_capacity();
    let mut scratch = vec![0u8; cap];
    for counter in 0u64.. {
        let h = match ring.reserve_slot_timeout(ALL_READERS, Duration::from_secs(1)) {
            Ok(h) => h,
            Err(SlotError::TimedOut(_)) => continue,
            Err(e) => panic!("reserve: {e}"),
        };
        let (ptr, cap) = ring.slot_data_ptr(h).unwrap();
        // SAFETY: a loan gives `cap` writable bytes until commit/discard.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, cap) };
        let tag = inc << 32 | counter;
        if state_first {
            let len = fill(&mut scratch, tag);
            ring.commit_in_place(h, len).unwrap();
            // The bug under test: the payload after the state, slowly.
            for (i, chunk) in scratch[..len].chunks(16).enumerate().rev() {
                // SAFETY: (test-only misuse) the slot stays mapped; readers
                // may see these bytes half written, which is the point.
                unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), ptr.add(i * 16), chunk.len()) };
                std::hint::spin_loop();
            }
        } else {
            let len = fill(buf, tag);
            ring.commit_in_place(h, len).unwrap();
        }
        if counter == 0 {
            say("READY");
        }
    }
}

/// Registers a reader, takes one sample in place and holds it forever.
fn holder_child(flink: &Path) {
    let ring = PosixSlotAllocator::attach(flink).expect("attach");
    let r = ring.register_reader().unwrap();
    say(&format!("REGISTERED {r}"));
    let h = loop {
        if let Some(h) = ring.next_unread_slot_timeout(r, Duration::from_secs(1)).unwrap() {
            break h;
        }
    };
    say(&format!("READY {}", h.seq));
    std::thread::sleep(Duration::from_secs(120));
}

/// Reads `COUNT` samples (copying out), stops itself with SIGSTOP, then
/// reads until a sample of length 1 (the end marker) and reports.
fn stopper_child(flink: &Path) {
    let ring = PosixSlotAllocator::attach(flink).expect("attach");
    let before: u64 = env(COUNT).parse().unwrap();
    let mut reader = Reader::new(&ring).unwrap();
    say("READY");
    let mut received = 0u64;
    let mut stopped = false;
    loop {
        if received == before && !stopped {
            stopped = true;
            say("STOPPING");
            // SAFETY: raise has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
        let Some(s) = reader.recv_timeout(Duration::from_secs(10)).unwrap() else { panic!("stopper: no sample for 10 s") };
        let end = s.len() == 1;
        drop(s);
        received += 1;
        if end {
            break;
        }
    }
    let st = reader.stats().unwrap();
    say(&format!("RESULT received={received} lost={}", st.lost));
}

// ───────────────────────────── parent side ─────────────────────────────

/// A child process with its stdout lines.
struct Proc {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(role: &str, flink: &Path, vars: &[(&str, String)]) -> Self {
        let mut cmd = child_command(CHILD_TEST);
        cmd.env(ROLE, role).env(FLINK, flink).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child");
        let out = BufReader::new(child.stdout.take().unwrap());
        Self { child, out }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The rest of the first line starting with `prefix` (libtest may print
    /// its own lines before ours). Bounded by the test's watchdog.
    fn expect(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line).unwrap_or(0) == 0 {
                let status = self.child.wait();
                panic!("child {} ended before `{prefix}`: {status:?}", self.pid());
            }
            if let Some(i) = line.find(prefix) {
                return line[i + prefix.len()..].trim().to_owned();
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0, "kill({sig})");
    }

    fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// On a failing test (a panic), stops helper threads and removes the
/// segment they keep alive, so a failure leaves nothing behind either.
struct OnPanic {
    stop: Arc<AtomicBool>,
    segment: PathBuf,
    flink: PathBuf,
}

impl Drop for OnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = std::fs::remove_file(&self.segment);
            let _ = std::fs::remove_file(&self.flink);
        }
    }
}

/// Fails the test (ends this test process) if it runs longer than `limit`.
fn watchdog(what: &'static str, limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let t = Instant::now();
        while !d.load(Ordering::Relaxed) {
            if t.elapsed() > limit {
                eprintln!("WATCHDOG: {what} still running after {limit:?}: failing");
                std::process::exit(101);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    done
}

/// Waits until `pid` is in state `T` (stopped).
fn wait_stopped(pid: u32) {
    let t = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "pid (comm) S ...": the state follows the last ')'.
        if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "process {pid} did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the reader threads of the kill test saw.
#[derive(Default)]
struct Seen {
    samples: u64,
    torn: u64,
    order_errors: Vec<String>,
    /// incarnation -> last counter
    last: HashMap<u32, u32>,
}

/// `kills` writer processes, each SIGKILLed at a random point of its write
/// loop while two readers read; then one more writer that exits normally.
fn kill_writers(tag: &str, kills: u32, state_first: bool) -> (Seen, Duration) {
    let dir = TestDir::new(tag);
    let flink = dir.flink("ring");
    let ring = Arc::new(PosixSlotAllocator::builder(16, 1024).create(&flink).unwrap());
    let cap = ring.slot_capacity();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let _guard = OnPanic { stop: stop.clone(), segment: ring.segment_path(), flink: flink.clone() };
    let ready = Arc::new(Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (ring, seen, stop, ready) = (ring.clone(), seen.clone(), stop.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut reader = Reader::new(&*ring).unwrap();
                let mut local: HashMap<u32, u32> = HashMap::new();
                let (mut samples, mut torn, mut order_errors) = (0u64, 0u64, Vec::new());
                let mut last_inc = 0u32;
                ready.wait();
                loop {
                    match reader.recv_timeout(Duration::from_millis(20)).unwrap() {
                        Some(s) => {
                            samples += 1;
                            match check(&s, cap) {
                                None => torn += 1,
                                Some(t) => {
                                    let (inc, counter) = ((t >> 32) as u32, t as u32);
                                    let want = local.get(&inc).map_or(0, |c| c + 1);
                                    if counter != want || inc < last_inc {
                                        order_errors.push(format!("incarnation {inc}: counter {counter}, expected {want} (after incarnation {last_inc})"));
                                    }
                                    last_inc = inc;
                                    local.insert(inc, counter);
                                }
                            }
                        }
                        None if stop.load(Ordering::Relaxed) => break,
                        None => {}
                    }
                }
                let mut s = seen.lock().unwrap();
                s.samples += samples;
                s.torn += torn;
                s.order_errors.extend(order_errors);
                for (k, v) in local {
                    let e = s.last.entry(k).or_insert(v);
                    *e = (*e).min(v);
                }
            })
        })
        .collect();
    ready.wait();

    let done = watchdog("kill_writers", Duration::from_secs(240));
    let mut rng = mix(u64::from(std::process::id()) ^ kills as u64);
    let mut worst_notice = Duration::ZERO;
    let role = if state_first { "writer-state-first" } else { "writer" };
    for inc in 1..=kills {
        let mut p = Proc::spawn(role, &flink, &[(INCARNATION, inc.to_string())]);
        p.expect("READY");
        // A random point of the write loop: 0 to 1.5 ms after its first
        // commit (a few hundred samples at most).
        rng = mix(rng);
        let until = Instant::now() + Duration::from_micros(rng % 1500);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let pid = p.pid();
        let killed = Instant::now();
        p.kill();
        // Each kill is noticed: the dead writer's entry is reaped (by us, or
        // by a reader or the next writer that got there first).
        loop {
            ring.reap_dead();
            if !ring.status().writers.iter().any(|w| w.pid == pid) {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(2), "writer {pid} (incarnation {inc}) still listed 2 s after its death");
            std::thread::sleep(Duration::from_millis(1));
        }
        worst_notice = worst_notice.max(killed.elapsed());
    }
    // A last writer, killed only after the readers took everything it wrote:
    // the ring still works after all those deaths.
    let mut p = Proc::spawn(role, &flink, &[(INCARNATION, (kills + 1).to_string())]);
    p.expect("READY");
    std::thread::sleep(Duration::from_millis(20));
    p.kill();
    ring.reap_dead();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    (seen, worst_notice)
}

fn assert_kill_run(tag: &str) {
    let kills = 1000;
    let (seen, worst) = kill_writers(tag, kills, false);
    eprintln!("{tag}: {kills} kills, {} samples read, {} torn, worst notice {worst:?}", seen.samples, seen.torn);
    assert_eq!(seen.torn, 0, "torn or partial samples accepted");
    assert!(seen.order_errors.is_empty(), "order errors: {:?}", &seen.order_errors[..seen.order_errors.len().min(5)]);
    // Every incarnation committed at least one sample before it could be
    // killed, and readers were registered before it started: all seen.
    assert_eq!(seen.last.len() as u32, kills + 1, "some writer incarnations were never read");
}

#[test]
fn writer_sigkill_run_1() {
    assert_kill_run("kill1");
}

#[test]
fn writer_sigkill_run_2() {
    assert_kill_run("kill2");
}

#[test]
fn writer_sigkill_run_3() {
    assert_kill_run("kill3");
}

/// Negative control: a writer that publishes the state before the data is
/// caught by the very same readers (so the kill runs above can fail).
#[test]
fn writer_sigkill_control_state_before_data_is_caught() {
    let (seen, _) = kill_writers("killctl", 100, true);
    eprintln!("control: {} samples read, {} torn", seen.samples, seen.torn);
    assert!(seen.torn > 0, "the readers did not catch a single torn sample from a writer that publishes state first");
}

/// A reader process holding a sample in place is killed: the `KeepAll`
/// writer, blocked on it, is back within 100 ms, at full rate, and every
/// slot is usable again.
#[test]
fn reader_killed_holding_a_sample_releases_the_writer() {
    let dir = TestDir::new("holder");
    let flink = dir.flink("ring");
    let ring = Arc::new(PosixSlotAllocator::builder(16, 64).create(&flink).unwrap());
    let done = watchdog("reader_killed_holding", Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let _guard = OnPanic { stop: stop.clone(), segment: ring.segment_path(), flink: flink.clone() };
    let got = Arc::new(AtomicU64::new(0));
    let drain = {
        let (ring, stop, got) = (ring.clone(), stop.clone(), got.clone());
        let mut reader = Reader::new(ring).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if reader.try_recv().unwrap().is_some() {
                    got.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let publish = |n: u64| {
        let t = Instant::now();
        for i in 0..n {
            let h = ring.reserve_slot_timeout(ALL_READERS, Duration::from_secs(5)).expect("reserve");
            ring.commit_slot(h, &i.to_le_bytes()).unwrap();
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    // Rates on this shared machine are noisy: the best of a few batches.
    let best_rate = || (0..5).map(|_| publish(20_000)).fold(0.0, f64::max);
    let before = best_rate();

    let mut holder = Proc::spawn("holder", &flink, &[]);
    holder.expect("REGISTERED");
    publish(1); // the sample it will hold
    holder.expect("READY");
    // The ring fills up behind the held sample: the writer is stuck.
    let mut filled = 0;
    let stuck = loop {
        match ring.reserve_slot_timeout(ALL_READERS, Duration::from_millis(50)) {
            Ok(h) => {
                ring.commit_slot(h, b"x").unwrap();
                filled += 1;
                assert!(filled <= 16, "the writer was not held back by the reader that holds a sample");
            }
            Err(SlotError::TimedOut(_)) => break filled,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(stuck >= 14, "ring filled with only {stuck} more samples");

    let killed = Instant::now();
    holder.kill();
    let h = ring.reserve_slot_timeout(ALL_READERS, Duration::from_secs(2)).expect("writer not released");
    let back = killed.elapsed();
    ring.commit_slot(h, b"x").unwrap();
    let after = best_rate();
    eprintln!("writer back {back:?} after the kill; best rate before {before:.0}/s, after {after:.0}/s");
    assert!(back < Duration::from_millis(100), "writer resumed only {back:?} after the holder died");
    assert!(after > before * 0.5, "rate after recovery {after:.0}/s is far below {before:.0}/s");

    // No slot stays lost: with a reader that does not read, exactly 16
    // samples fit.
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap();
    let idle = ring.register_reader().unwrap();
    let mut fit = 0;
    while let Ok(h) = ring.reserve_slot(ALL_READERS) {
        ring.commit_slot(h, b"y").unwrap();
        fit += 1;
        assert!(fit <= 16);
    }
    assert_eq!(fit, 16, "only {fit} of 16 slots usable after the recovery");
    assert!(ring.status().readers.iter().all(|r| r.alive), "a dead reader entry is still listed");
    ring.unregister_reader(idle).unwrap();
    done.store(true, Ordering::Relaxed);
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
}

/// A reader process stopped with SIGSTOP: the `KeepAll` writer gets
/// `NoFreeSlot`, and its timed reserve times out on time (it never hangs);
/// after SIGCONT everything arrives.
#[test]
fn reader_sigstop_keep_all_writer_times_out_on_time() {
    let dir = TestDir::new("stopka");
    let flink = dir.flink("ring");
    let ring = PosixSlotAllocator::builder(16, 64).create(&flink).unwrap();
    let done = watchdog("sigstop keep_all", Duration::from_secs(60));
    let mut p = Proc::spawn("stopper", &flink, &[(COUNT, "100".into())]);
    p.expect("READY");
    for i in 0..100u64 {
        let h = ring.reserve_slot_timeout(ALL_READERS, Duration::from_secs(5)).unwrap();
        ring.commit_slot(h, &i.to_le_bytes()).unwrap();
    }
    p.expect("STOPPING");
    wait_stopped(p.pid());
    for i in 0..16u64 {
        let h = ring.reserve_slot(ALL_READERS).expect("an empty ring has 16 free slots");
        ring.commit_slot(h, &i.to_le_bytes()).unwrap();
    }
    assert_eq!(ring.reserve_slot(ALL_READERS), Err(SlotError::NoFreeSlot));
    for timeout in [Duration::from_millis(1), Duration::from_millis(50), Duration::from_millis(200)] {
        let t = Instant::now();
        assert_eq!(ring.reserve_slot_timeout(ALL_READERS, timeout), Err(SlotError::TimedOut(timeout)));
        let took = t.elapsed();
        assert!(took >= timeout && took < timeout + Duration::from_millis(500), "timed reserve of {timeout:?} took {took:?}");
    }
    // A stopped process is alive: its reader is not reaped.
    assert_eq!(ring.reap_dead().readers, 0);
    p.signal(libc::SIGCONT);
    let h = ring.reserve_slot_timeout(ALL_READERS, Duration::from_secs(5)).unwrap();
    ring.commit_slot(h, b"e").unwrap(); // the end marker
    let result = p.expect("RESULT");
    assert_eq!(result, "received=117 lost=0");
    let _ = p.child.wait();
    done.store(true, Ordering::Relaxed);
}

/// A reader process stopped with SIGSTOP on a `DropOldest` ring: the writer
/// never waits; after SIGCONT the reader reports what it lost.
#[test]
fn reader_sigstop_drop_oldest_writer_never_waits() {
    let dir = TestDir::new("stopdo");
    let flink = dir.flink("ring");
    let ring = PosixSlotAllocator::builder(16, 64).overflow_policy(OverflowPolicy::DropOldest).create(&flink).unwrap();
    let done = watchdog("sigstop drop_oldest", Duration::from_secs(60));
    let mut p = Proc::spawn("stopper", &flink, &[(COUNT, "50".into())]);
    p.expect("READY");
    for i in 0..50u64 {
        // Paced, so the running reader loses nothing before it stops.
        let h = ring.reserve_slot(ALL_READERS).unwrap();
        ring.commit_slot(h, &i.to_le_bytes()).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    p.expect("STOPPING");
    wait_stopped(p.pid());
    let mut worst = Duration::ZERO;
    for i in 0..1000u64 {
        let t = Instant::now();
        let h = ring.reserve_slot(ALL_READERS).expect("a DropOldest writer never waits for a stopped reader");
        ring.commit_slot(h, &i.to_le_bytes()).unwrap();
        worst = worst.max(t.elapsed());
    }
    p.signal(libc::SIGCONT);
    let h = ring.reserve_slot(ALL_READERS).unwrap();
    ring.commit_slot(h, b"e").unwrap();
    let result = p.expect("RESULT");
    let field = |k: &str| -> u64 { result.split_whitespace().find_map(|f| f.strip_prefix(k)).unwrap().parse().unwrap() };
    let (received, lost) = (field("received="), field("lost="));
    eprintln!("drop_oldest: worst publish {worst:?}; reader received {received}, lost {lost}");
    assert_eq!(received + lost, 50 + 1000 + 1, "received + lost must be every sample");
    assert!(lost >= 1000 - 16, "lost only {lost} of 1000 written while stopped");
    let _ = p.child.wait();
    done.store(true, Ordering::Relaxed);
}

/// Spawns a creator process, waits until its segment is published, kills
/// it. Returns the segment path.
fn stale_segment(flink: &Path) -> PathBuf {
    let mut p = Proc::spawn("creator", flink, &[]);
    let seg = PathBuf::from(p.expect("READY "));
    p.kill();
    seg
}

/// A creator killed: its segment is stale; `flink clean` (the library's
/// `clean`) and a new `create` both reclaim it; a dry run removes nothing.
#[test]
fn stale_segment_after_creator_kill_is_reclaimed() {
    let dir = TestDir::new("stale");
    let flink = dir.flink("ring");
    let done = watchdog("stale", Duration::from_secs(60));

    let seg = stale_segment(&flink);
    let st = discovery::inspect(&flink).unwrap();
    assert_eq!((st.state, st.creator_alive), (SegmentState::Stale, false));
    let dry = discovery::clean(dir.path(), true, false).unwrap();
    assert!(matches!(dry[0].outcome, Ok(CleanOutcome::Removed { object_existed: true, .. })), "{dry:?}");
    assert!(flink.exists() && seg.exists(), "a dry run removed something");
    let wet = discovery::clean(dir.path(), false, false).unwrap();
    assert!(matches!(wet[0].outcome, Ok(CleanOutcome::Removed { object_existed: true, .. })), "{wet:?}");
    assert!(!flink.exists());
    assert_unlinked(&seg);
    assert!(discovery::clean(dir.path(), false, false).unwrap().is_empty());

    // `create` over a stale segment reclaims it instead of failing.
    let seg = stale_segment(&flink);
    let ring = PosixSlotAllocator::create(&flink, 8, 64).expect("create over a stale segment");
    assert_unlinked(&seg);
    assert_ne!(ring.segment_path(), seg);
    // ... but never over a live one.
    match PosixSlotAllocator::create(&flink, 8, 64) {
        Err(OpenError::InUse { creator_pid, .. }) => assert_eq!(creator_pid, std::process::id()),
        other => panic!("create over a live segment: {other:?}"),
    }
    // An orphan flink file (its object gone) is reclaimed as well.
    let info = discovery::read_flink(&flink).unwrap();
    let seg = ring.segment_path();
    std::mem::forget(ring); // leaves the flink file and the object behind
    std::fs::remove_file(&seg).unwrap();
    assert_eq!(discovery::inspect(&flink).unwrap().state, SegmentState::Orphan);
    let ring = PosixSlotAllocator::create(&flink, 8, 64).expect("create over an orphan flink file");
    assert_ne!(discovery::read_flink(&flink).unwrap().segment_name, info.segment_name);
    drop(ring);
    done.store(true, Ordering::Relaxed);
}

/// Rewrites the pid a flink file records (display data).
fn set_recorded_pid(flink: &Path, pid: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut info = discovery::read_flink(flink).unwrap();
    info.creator_pid = pid;
    let tmp = flink.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).unwrap();
    f.write_all(&info.encode().unwrap()).unwrap();
    std::fs::rename(&tmp, flink).unwrap();
}

/// Liveness is judged by the lock, not the pid: a stale segment whose flink
/// file names a live process (pid 1, and this very test process) is removed;
/// a live segment whose flink file names a dead pid is kept.
#[test]
fn liveness_is_judged_by_lock_not_pid() {
    let dir = TestDir::new("pidlie");
    let done = watchdog("pidlie", Duration::from_secs(60));
    for pid in [1, std::process::id()] {
        let flink = dir.flink(&format!("stale{pid}"));
        let seg = stale_segment(&flink);
        set_recorded_pid(&flink, pid);
        assert_eq!(discovery::inspect(&flink).unwrap().state, SegmentState::Stale);
        assert!(matches!(discovery::reclaim(&flink).unwrap(), Reclaim::Removed { .. }));
        assert_unlinked(&seg);
    }
    // A live creator process whose flink file names a dead pid.
    let flink = dir.flink("live");
    let mut p = Proc::spawn("creator", &flink, &[]);
    let seg = PathBuf::from(p.expect("READY "));
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    set_recorded_pid(&flink, dead);
    let st = discovery::inspect(&flink).unwrap();
    assert_eq!((st.state, st.creator_alive), (SegmentState::Live, true));
    assert!(matches!(discovery::reclaim(&flink).unwrap(), Reclaim::Live { .. }));
    assert!(matches!(discovery::clean(dir.path(), false, false).unwrap()[0].outcome, Ok(CleanOutcome::Live)));
    assert!(flink.exists() && seg.exists());
    p.kill();
    assert!(matches!(discovery::reclaim(&flink).unwrap(), Reclaim::Removed { .. }));
    assert_unlinked(&seg);
    done.store(true, Ordering::Relaxed);
}

/// Four cleaners race over one stale segment: exactly one removes it. With
/// a creator racing them for the same name, the new live segment is never
/// removed.
#[test]
fn racing_cleaners_remove_a_stale_segment_exactly_once() {
    let dir = TestDir::new("race");
    let flink = dir.flink("ring");
    let done = watchdog("racing cleaners", Duration::from_secs(120));
    for round in 0..40 {
        let seg = stale_segment(&flink);
        let with_creator = round % 2 == 1;
        let go = Arc::new(Barrier::new(if with_creator { 5 } else { 4 }));
        let cleaners: Vec<_> = (0..4)
            .map(|_| {
                let (go, dir) = (go.clone(), dir.path().to_owned());
                std::thread::spawn(move || {
                    go.wait();
                    let out = discovery::clean(&dir, false, false).unwrap();
                    out.iter().filter(|e| matches!(e.outcome, Ok(CleanOutcome::Removed { .. }))).count()
                })
            })
            .collect();
        let creator = with_creator.then(|| {
            let (go, flink) = (go.clone(), flink.clone());
            std::thread::spawn(move || {
                go.wait();
                loop {
                    match PosixSlotAllocator::create(&flink, 8, 64) {
                        Ok(ring) => return ring,
                        Err(OpenError::InUse { .. } | OpenError::Exists(_)) => std::thread::yield_now(),
                        Err(e) => panic!("create: {e}"),
                    }
                }
            })
        });
        let removed: usize = cleaners.into_iter().map(|c| c.join().unwrap()).sum();
        // With a creator racing, the cleaners may all have found the stale
        // segment held (by the creator reclaiming it): it is gone once the
        // creator is done, not before.
        let ring = creator.map(|c| c.join().unwrap());
        assert_unlinked(&seg);
        match ring {
            None => assert_eq!(removed, 1, "round {round}: {removed} cleaners removed the stale segment"),
            Some(ring) => {
                // Either a cleaner removed the stale one, or the creator
                // reclaimed it itself; nobody removed the new one.
                assert!(removed <= 1, "round {round}: {removed} removals");
                let info = discovery::read_flink(&flink).expect("the new live segment's flink file was removed");
                assert_eq!(PathBuf::from(format!("/dev/shm{}", info.segment_name)), ring.segment_path());
                assert!(ring.segment_path().exists(), "the new live segment's object was removed");
                assert!(matches!(discovery::clean(dir.path(), false, false).unwrap()[0].outcome, Ok(CleanOutcome::Live)));
                drop(ring);
            }
        }
        assert!(!flink.exists());
    }
    done.store(true, Ordering::Relaxed);
}

/// Sequence numbers near `u64::MAX` and the futex generation near
/// `u32::MAX`: a million commits through two mappings, with blocking calls
/// on both sides, and no stall or ordering error.
#[test]
fn sequence_and_futex_generation_wrap_a_million_commits() {
    let dir = TestDir::new("wrap");
    let flink = dir.flink("ring");
    let n: u64 = 1_000_000;
    let start = u64::MAX - n / 2;
    let ring = PosixSlotAllocator::builder(64, 32).start_seq(start).start_notify_epoch(u32::MAX - 300_000).create(&flink).unwrap();
    let peer = PosixSlotAllocator::attach(&flink).unwrap();
    let done = watchdog("wrap", Duration::from_secs(120));
    let mut reader = Reader::new(&peer).unwrap();
    let g0 = ring.notify_generation();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..n {
                let h = ring.reserve_slot_timeout(ALL_READERS, Duration::from_secs(5)).expect("writer stalled");
                ring.commit_slot(h, &i.to_le_bytes()).unwrap();
            }
        });
        for i in 0..n {
            let s = reader.recv_timeout(Duration::from_secs(5)).unwrap().unwrap_or_else(|| panic!("reader stalled at sample {i}"));
            assert_eq!(s.seq(), start.wrapping_add(i), "sequence out of order");
            assert_eq!(u64::from_le_bytes(s[..8].try_into().unwrap()), i, "payload out of order");
        }
    });
    let g1 = ring.notify_generation();
    assert!(g1 < g0, "the generation did not wrap: {g0} -> {g1}");
    done.store(true, Ordering::Relaxed);
    drop(reader);
    drop(peer);
    drop(ring);
}

/// A writer that never claimed a sequence (its first reservation found the
/// ring full) is killed: reaping it touches no sample (its "nothing claimed
/// yet" record is not a claim), the reader gets every sample, and the ring
/// keeps working. (Found by review: the record used to look like a claim of
/// the next sequence, whose void destroyed an unread sample and wedged the
/// ring.)
#[test]
fn dead_writer_that_never_claimed_leaves_the_ring_intact() {
    let dir = TestDir::new("neverclaimed");
    let flink = dir.flink("ring");
    let ring = PosixSlotAllocator::builder(4, 64).create(&flink).unwrap();
    let done = watchdog("never claimed", Duration::from_secs(60));
    let r = ring.register_reader().unwrap();
    for i in 0..4u8 {
        let h = ring.reserve_slot(ALL_READERS).unwrap();
        ring.commit_slot(h, &[i]).unwrap();
    }
    let mut p = Proc::spawn("full-writer", &flink, &[]);
    p.expect("READY");
    p.kill();
    let reaped = ring.reap_dead();
    assert_eq!((reaped.writers, reaped.skipped), (1, 0), "{reaped:?}");
    let mut got = Vec::new();
    while let Some(h) = ring.next_unread_slot(r).unwrap() {
        got.push(ring.read_slot(h).unwrap().1[0]);
        ring.mark_read(h, r).unwrap();
    }
    assert_eq!(got, vec![0, 1, 2, 3], "a sample was lost");
    for i in 4..12u8 {
        let h = ring.reserve_slot(ALL_READERS).expect("the ring is wedged");
        ring.commit_slot(h, &[i]).unwrap();
        let h = ring.next_unread_slot(r).unwrap().unwrap();
        assert_eq!(ring.read_slot(h).unwrap().1[0], i);
        ring.mark_read(h, r).unwrap();
    }
    ring.unregister_reader(r).unwrap();
    done.store(true, Ordering::Relaxed);
}

/// Handles leaving a ring at the same instant: one of them is the last and
/// removes it (each lets go of its locks before it tries to take them all;
/// trying while still holding its own made every one of them see the
/// others, and the ring was left behind).
#[test]
fn handles_leaving_together_leave_nothing_behind() {
    const HANDLES: usize = 6;
    let dir = TestDir::new("leave-together");
    for round in 0..40 {
        let path = dir.flink(&format!("shared-{round}"));
        let first = PosixSlotAllocator::builder(4, 64).remove_on_drop(false).create(&path).unwrap();
        let segment = first.segment_path();
        let mut handles = vec![first];
        handles.extend((1..HANDLES).map(|_| PosixSlotAllocator::attach(&path).unwrap()));
        let go = std::sync::Barrier::new(HANDLES);
        std::thread::scope(|s| {
            for h in handles {
                let go = &go;
                s.spawn(move || {
                    go.wait();
                    drop(h);
                });
            }
        });
        assert!(!path.exists(), "round {round}: flink file left behind");
        assert_unlinked(&segment);
    }
}
