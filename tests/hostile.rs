//! A hostile *process* scribbles random values over a live segment's header,
//! control block, reader and writer tables and slots for 10 s while two
//! reader processes and a writer process keep using the ring: every call
//! returns (within its bound) an error or a sample, nothing panics, nothing
//! touches memory out of bounds, nothing hangs.
//!
//! # Processes
//!
//! The parent creates the ring (64 slots × 256 B, 4 reader and 2 writer
//! entries; `KeepAll` in one test, `DropOldest` in the other) and re-executes
//! this test binary (`current_exe() --exact child_process_entry`, the pattern
//! of `tests/cross_process.rs`) as:
//!
//! * 2 **readers**: attach, register, then loop `next_unread_slot_timeout(50
//!   ms)` → `slot_read_ptr` → copy and check the payload → `mark_read`.
//!   Errors are counted by operation and kind, never fatal. On
//!   `ReaderNotRegistered`, or after 20 failed rounds in a row (a sample the
//!   scribbler made unreadable blocks a reader forever), the reader leaves
//!   (`unregister_reader`, else `mark_reader_disconnected`) and registers
//!   again, as a robust application would.
//! * 1 **writer**: attach, then loop `reserve_slot_timeout(ALL_READERS, 50
//!   ms)` → `slot_data_ptr` → write the payload in place → `commit_in_place`
//!   (`discard_slot` if the loan was taken away).
//! * 1 **scribbler**: maps the `/dev/shm` object read-write itself (memmap2)
//!   and writes through `AtomicU8/U32/U64` (Relaxed, aligned) — never plain
//!   stores, so the test has no data race of its own.
//!
//! All four attach (and the readers register) and report `SHMSLOT-READY`
//! before anything is scribbled: a scribbled header is a legitimate reason
//! for `attach` to fail, and attach validation has its own tests in
//! `corrupt.rs`. The parent then sends every child one `go` line carrying
//! three `CLOCK_MONOTONIC` instants (system-wide, so all processes agree):
//!
//! ```text
//!   go ──1.5 s clean──▶ scribble_start ──10 s scribbling──▶ scribble_end ──1 s──▶ stop
//! ```
//!
//! Readers and writer run from `go` to `stop` and then exit on their own
//! (exit 0); the scribbler writes only in `[scribble_start, scribble_end)`.
//! Each child prints one `SHMSLOT-RESULT k=v …` line with its counts.
//!
//! # What the scribbler writes (documented fractions)
//!
//! A ring scribbled on for long enough stalls for good (a random
//! `write_seq` makes every later reservation `Corrupt`), so the 10 s are cut
//! into **epochs** of 0.2–0.8 s, each a fresh corruption episode: the epoch
//! starts by *re-seeding* the ring to a consistent empty state at a random
//! position (`write_seq` near 0, near the 54-bit stamp wrap, near the u64
//! wrap, or anywhere; every slot SKIPPED, every reader entry free — itself a
//! hostile act: loans and held samples vanish, readers must register again),
//! then scribbles with an intensity drawn per epoch: bursts of 1–4 writes
//! separated by pauses of 0.1–1 ms (brutal), 1–10 ms (medium) or 10–50 ms
//! (gentle: a few dozen stores among thousands of operations, so the checks
//! deep in the protocol see a *nearly* valid ring).
//!
//! One write = one aligned atomic store of 1, 4 or 8 bytes, to:
//! * 50 % the **header / control / entry** region `[0, slots_offset)`:
//!   1/8 any offset in the 128-byte header, 3/8 a control word (`write_seq`,
//!   `registered`, data/space futex `generation` and `waiters`), 2/8 a field
//!   of a reader entry (state, pid, cursor, pinned, received, lost), 1/8 a
//!   field of a writer entry, 1/8 any offset in control + tables.
//! * 50 % the **slots**, of a random slot: 35 % its stamp, 20 % its pending
//!   mask, 15 % its length, 10 % any offset in its 32-byte metadata, and
//!   20 % a payload byte/word — so 10 % of all writes hit payload bytes.
//! * Values: 40 % uniformly random; 60 % "plausible" — the current value with
//!   one bit flipped, moved by up to two laps (`±2N`), moved by whole laps in
//!   stamp units, with its stamp state/pin bits replaced, 0, or all ones — so
//!   the state stays close enough to valid that the checks past the first
//!   one are reached too.
//!
//! # What is asserted — and what honestly cannot be
//!
//! In **every phase**, for every child:
//! * it exits with status 0 on its own by its deadline — no panic (a panic
//!   fails the child's libtest run: non-zero status), no SIGSEGV/SIGBUS (death
//!   by signal; a handler prints which call faulted), no hang (the parent
//!   kills everything 30 s after `stop` and fails; a child watchdog aborts
//!   and names the call if one call runs 10 s);
//! * every single API call returned within 2 s (each child reports the
//!   longest call; the blocking calls are given 50 ms);
//! * every error is a documented kind for its operation (e.g. `Corrupt`,
//!   `NoFreeSlot`, `TimedOut` for `reserve_slot_timeout`; `Corrupt`,
//!   `ReaderNotRegistered` for `next_unread_slot_timeout`);
//! * every handle returned names a slot in range (`slot_index < N`,
//!   `slot_index == seq mod N`), every `slot_read_ptr` length is at most the
//!   capacity, `slot_data_ptr` gives exactly the capacity, and every pointer
//!   is the same process-local slot base plus `index × stride` — checked in
//!   the child (a violation panics it);
//! * every reader and the writer kept calling through the scribble phase,
//!   and the scribbler really wrote (at least 500 stores).
//!
//! In the **clean phase** (operations that completed before
//! `scribble_start`, hence before the scribbler's first store): every sample
//! is valid (crc, embedded sequence number, length), KeepAll readers see the
//! sequence numbers 0, 1, 2, … without a gap, DropOldest readers in
//! increasing order, no reader call fails, the writer sees at most
//! `TimedOut`/`NoFreeSlot`, and each reader got and the writer committed at
//! least 10 samples (progress).
//!
//! During **scribbling** the samples handed out are *not* required to be
//! valid, and cannot be: the scribbler writes payload bytes of committed
//! slots (10 % of its writes) while readers read them, and a scribbled stamp,
//! length or cursor can legitimately make the library hand out a slot whose
//! bytes are stale, loaned or torn — shared memory cannot authenticate its
//! contents, the library only promises bounds. So invalid samples are
//! counted by cause (`crc`: checksum wrong; `seq`: intact sample of another
//! sequence number; `len`: too short or wrong length) and reported next to
//! the valid ones, not asserted. Likewise a scribbled `write_seq` or stamp
//! can stall the ring for good (every call then returns an error): the
//! test asserts bounded errors, not recovery.
//!
//! What this cannot see: an out-of-bounds *read or write inside the mapping
//! or the process* that does not fault. The pointer/length checks above cover
//! what the API returns; the library's internal accesses are covered only to
//! the extent that they would fault.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::family::{child_env as env, say, Family, Fields};
use common::{assert_unlinked, fill, mix, sample_len, Rng, TestDir};
use shmslot::{OverflowPolicy, PosixSlotAllocator, SlotBackend, SlotError, SlotHandle, ALL_READERS};

const CHILD_TEST: &str = "child_process_entry";
const ROLE: &str = "SHMSLOT_HOSTILE_ROLE";
const FLINK: &str = "SHMSLOT_HOSTILE_FLINK";
const SEGMENT: &str = "SHMSLOT_HOSTILE_SEGMENT";
/// `slot_count,capacity,max_readers,max_writers`.
const GEO: &str = "SHMSLOT_HOSTILE_GEO";
const SEED: &str = "SHMSLOT_HOSTILE_SEED";

const SLOTS: usize = 64;
const CAPACITY: usize = 256;
const MAX_READERS: u32 = 4;
const MAX_WRITERS: u32 = 2;
const READERS: usize = 2;

/// From `go` to the scribbler's first store.
const CLEAN: Duration = Duration::from_millis(1500);
const SCRIBBLE: Duration = Duration::from_secs(10);
/// Readers and writer go on this long after the scribbler stopped.
const TAIL: Duration = Duration::from_secs(1);
/// Timeout given to every blocking call.
const CALL_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest any single call may take.
const MAX_CALL: Duration = Duration::from_secs(2);
/// A child aborts (naming the call) when one call runs this long.
const WATCHDOG: Duration = Duration::from_secs(10);
/// Children must be READY within this.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The parent declares a hang this long after `stop`.
const HANG_GRACE: Duration = Duration::from_secs(30);
/// Failed reader rounds in a row before it leaves and registers again.
const STUCK_AFTER: u32 = 20;

// ───────────────────────────── time ─────────────────────────────

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// The schedule every child gets in its `go` line.
#[derive(Clone, Copy, Debug)]
struct Times {
    scribble_start: u64,
    scribble_end: u64,
    stop: u64,
}

// ───────────────────────────── payload ─────────────────────────────

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Verdict {
    Valid,
    /// Checksum wrong: torn or scribbled bytes.
    Crc,
    /// An intact sample, but of another sequence number than the handle's.
    Seq,
    /// Too short, or not the length its sequence number implies.
    Len,
}

fn verdict(b: &[u8], seq: u64, cap: usize) -> Verdict {
    if b.len() < 12 {
        return Verdict::Len;
    }
    let stored = u32::from_le_bytes(b[0..4].try_into().unwrap());
    if stored != crc32fast::hash(&b[4..]) {
        return Verdict::Crc;
    }
    if u64::from_le_bytes(b[4..12].try_into().unwrap()) != seq {
        return Verdict::Seq;
    }
    if b.len() != sample_len(seq, cap) {
        return Verdict::Len;
    }
    Verdict::Valid
}

// ───────────────────────────── child plumbing ─────────────────────────────

fn wait_go() -> Times {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("child: read stdin");
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert!(parts.len() == 4 && parts[0] == "go", "child: parent went away before `go` (got {line:?})");
    let n = |i: usize| parts[i].parse::<u64>().expect("child: go times");
    Times { scribble_start: n(1), scribble_end: n(2), stop: n(3) }
}

fn sleep_until(t: u64) {
    let now = mono_ns();
    if t > now {
        std::thread::sleep(Duration::from_nanos(t - now));
    }
}

/// The library calls a child makes, for timing, error counts and crash and
/// hang reports.
#[derive(Clone, Copy)]
enum Op {
    Reserve,
    SlotDataPtr,
    CommitInPlace,
    Discard,
    NextUnread,
    SlotReadPtr,
    MarkRead,
    Register,
    Unregister,
    Disconnect,
}

const OP_NAMES: [&str; 10] =
    ["reserve_slot_timeout", "slot_data_ptr", "commit_in_place", "discard_slot", "next_unread_slot_timeout", "slot_read_ptr", "mark_read", "register_reader", "unregister_reader", "mark_reader_disconnected"];

/// The call running now (index into `OP_NAMES`) and when it started (0: none).
static CURRENT_OP: AtomicUsize = AtomicUsize::new(usize::MAX);
static CALL_START: AtomicU64 = AtomicU64::new(0);

/// Error kinds each operation may return on a hostile segment (its
/// documentation, plus `TimedOut` for the timed reserve).
const ALLOWED: &[(&str, &[&str])] = &[
    ("reserve_slot_timeout", &["NoFreeSlot", "TimedOut", "Corrupt", "WritersFull"]),
    ("slot_data_ptr", &["NotLoaned"]),
    ("commit_in_place", &["NotLoaned"]),
    ("discard_slot", &["NotLoaned"]),
    ("next_unread_slot_timeout", &["ReaderNotRegistered", "Corrupt"]),
    ("slot_read_ptr", &["Corrupt", "OutOfBounds"]),
    ("mark_read", &["NotHeld", "ReaderNotRegistered"]),
    ("register_reader", &["ReadersFull"]),
    ("unregister_reader", &["ReaderNotRegistered"]),
    ("mark_reader_disconnected", &["ReaderNotRegistered"]),
];

fn kind(e: &SlotError) -> &'static str {
    match e {
        SlotError::NoFreeSlot => "NoFreeSlot",
        SlotError::TimedOut(_) => "TimedOut",
        SlotError::OutOfBounds { .. } => "OutOfBounds",
        SlotError::SampleTooLarge { .. } => "SampleTooLarge",
        SlotError::NotLoaned { .. } => "NotLoaned",
        SlotError::NotHeld { .. } => "NotHeld",
        SlotError::ReaderNotRegistered(_) => "ReaderNotRegistered",
        SlotError::ReadersFull { .. } => "ReadersFull",
        SlotError::Corrupt { .. } => "Corrupt",
        SlotError::WritersFull { .. } => "WritersFull",
        SlotError::WritersGone => "WritersGone",
        _ => "Other",
    }
}

/// Per-child call accounting.
struct Tally {
    times: Times,
    /// Calls completed before / after `scribble_start`.
    calls: [u64; 2],
    max_ns: u64,
    max_op: usize,
    /// `err.<op>.<kind>`, `clean_err.<op>.<kind>`, `corrupt.<what>` counts.
    counts: BTreeMap<String, u64>,
}

impl Tally {
    fn new(times: Times) -> Self {
        Self { times, calls: [0; 2], max_ns: 0, max_op: 0, counts: BTreeMap::new() }
    }

    fn bump(&mut self, key: String) {
        *self.counts.entry(key).or_default() += 1;
    }

    /// Runs one library call, timing it and counting its error.
    fn call<T>(&mut self, op: Op, f: impl FnOnce() -> Result<T, SlotError>) -> Result<T, SlotError> {
        CURRENT_OP.store(op as usize, Ordering::Relaxed);
        let t0 = mono_ns();
        CALL_START.store(t0, Ordering::Relaxed);
        let r = f();
        let t1 = mono_ns();
        CALL_START.store(0, Ordering::Relaxed);
        if t1 - t0 > self.max_ns {
            self.max_ns = t1 - t0;
            self.max_op = op as usize;
        }
        let clean = t1 < self.times.scribble_start;
        self.calls[usize::from(!clean)] += 1;
        if let Err(e) = &r {
            let name = OP_NAMES[op as usize];
            self.bump(format!("err.{name}.{}", kind(e)));
            if clean {
                self.bump(format!("clean_err.{name}.{}", kind(e)));
            }
            if let SlotError::Corrupt { what, .. } = e {
                self.bump(format!("corrupt.{}", what.replace(' ', "_")));
            }
            if kind(e) == "Other" {
                eprintln!("{name}: unexpected error {e:?}");
            }
        }
        r
    }

    fn fields(&self) -> String {
        let mut s = format!(
            "calls_clean={} calls_scribble={} max_call_us={} max_call_op={}",
            self.calls[0],
            self.calls[1],
            self.max_ns / 1000,
            OP_NAMES[self.max_op]
        );
        for (k, v) in &self.counts {
            s += &format!(" {k}={v}");
        }
        s
    }
}

/// Aborts the child, naming the call, when one call runs for `WATCHDOG`.
fn start_watchdog() {
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_millis(100));
        let start = CALL_START.load(Ordering::Relaxed);
        if start != 0 && mono_ns().saturating_sub(start) > nanos(WATCHDOG) {
            let op = OP_NAMES.get(CURRENT_OP.load(Ordering::Relaxed)).copied().unwrap_or("?");
            eprintln!("SHMSLOT-HANG {op} has not returned for {WATCHDOG:?}");
            say(&format!("SHMSLOT-HANG {op}"));
            std::process::abort();
        }
    });
}

/// On SIGSEGV/SIGBUS, writes which call faulted (and where) to stderr, then
/// dies of the signal (`SA_RESETHAND`: the faulting access re-runs with the
/// default action).
fn install_crash_reporter() {
    extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
        // Async-signal-safe: atomics, a stack buffer and write(2) only.
        let mut buf = [0u8; 200];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            let k = b.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&b[..k]);
            n += k;
        };
        put(b"\nSHMSLOT-CRASH signal ");
        put(&[b'0' + (sig / 10) as u8, b'0' + (sig % 10) as u8]);
        put(b" at address 0x");
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let addr = unsafe { (*info).si_addr() } as usize;
        let mut hex = [0u8; 16];
        for (i, h) in hex.iter_mut().enumerate() {
            *h = b"0123456789abcdef"[(addr >> (60 - 4 * i)) & 0xf];
        }
        put(&hex);
        let in_call = CALL_START.load(Ordering::Relaxed) != 0;
        put(if in_call { b" inside " } else { b" outside any call; last call " });
        put(OP_NAMES.get(CURRENT_OP.load(Ordering::Relaxed)).copied().unwrap_or("?").as_bytes());
        put(b"\n");
        // SAFETY: writes `n` initialised bytes of `buf` to fd 2.
        unsafe { libc::write(2, buf.as_ptr().cast(), n) };
    }
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler
        // has the SA_SIGINFO signature and is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0, "sigaction");
        }
    }
}

/// Plays a child process when `SHMSLOT_HOSTILE_ROLE` is set; otherwise a no-op.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    install_crash_reporter();
    start_watchdog();
    match role.as_str() {
        "reader" => reader_child(),
        "writer" => writer_child(),
        "scribbler" => scribbler_child(),
        other => panic!("unknown child role {other}"),
    }
}

/// Checks that every pointer the library gives is the same slot base plus
/// `index × stride`.
struct PtrCheck {
    stride: usize,
    base: Option<usize>,
}

impl PtrCheck {
    fn check(&mut self, what: &str, ptr: usize, h: SlotHandle) {
        let base = ptr.wrapping_sub(h.slot_index as usize * self.stride);
        let first = *self.base.get_or_insert(base);
        assert_eq!(base, first, "{what} of {h:?} returned {ptr:#x}: not slot {} of the ring (slot 0 at {first:#x})", h.slot_index);
    }
}

fn check_handle(what: &str, h: SlotHandle, n: u64) {
    assert!(u64::from(h.slot_index) < n && u64::from(h.slot_index) == h.seq % n, "{what} returned an invalid handle {h:?} (ring of {n} slots)");
}

// ───────────────────────────── reader ─────────────────────────────

/// Leaves a reader index: unregisters it, or (entry scribbled) at least
/// takes its bit out of every sample.
fn leave(ring: &PosixSlotAllocator, t: &mut Tally, r: u8) {
    if t.call(Op::Unregister, || ring.unregister_reader(r)).is_err() {
        let _ = t.call(Op::Disconnect, || ring.mark_reader_disconnected(r));
    }
}

fn reader_child() {
    let ring = PosixSlotAllocator::attach(env(FLINK)).expect("reader: attach");
    let first = ring.register_reader().expect("reader: register");
    say(&format!("SHMSLOT-READY {first}"));
    let times = wait_go();
    let n = ring.slot_count() as u64;
    let cap = ring.slot_capacity();
    let keep_all = ring.overflow_policy() == OverflowPolicy::KeepAll;
    let mut ptrs = PtrCheck { stride: ring.slot_total_size(), base: None };
    let mut t = Tally::new(times);
    let mut me = Some(first);
    let mut buf = vec![0u8; cap];
    // [clean, scribble] counts of each verdict.
    let mut verdicts: HashMap<Verdict, [u64; 2]> = HashMap::new();
    let mut expect_next = 0u64; // clean phase: the next sequence number
    let mut clean_out_of_order = 0u64;
    let (mut reregistered, mut resyncs, mut failing) = (0u64, 0u64, 0u32);
    let mut last_index = first;
    while mono_ns() < times.stop {
        let Some(r) = me else {
            match t.call(Op::Register, || ring.register_reader()) {
                Ok(i) => {
                    assert!(u32::from(i) < MAX_READERS, "register_reader gave index {i} of {MAX_READERS}");
                    me = Some(i);
                    last_index = i;
                    reregistered += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
            continue;
        };
        let ok = match t.call(Op::NextUnread, || ring.next_unread_slot_timeout(r, CALL_TIMEOUT)) {
            Ok(None) => true,
            Ok(Some(h)) => {
                check_handle("next_unread_slot_timeout", h, n);
                let read = match t.call(Op::SlotReadPtr, || ring.slot_read_ptr(h)) {
                    Ok((ptr, len)) => {
                        assert!(len <= cap, "slot_read_ptr of {h:?} gave {len} bytes, capacity {cap}");
                        ptrs.check("slot_read_ptr", ptr as usize, h);
                        // SAFETY: the library says `len <= cap` bytes are
                        // readable at `ptr` while we hold the sample (checked
                        // to be slot `h.slot_index` of our mapping above). The
                        // scribbler may change them meanwhile (another
                        // process: torn bytes, no UB in this process).
                        unsafe { std::ptr::copy_nonoverlapping(ptr, buf.as_mut_ptr(), len) };
                        let v = verdict(&buf[..len], h.seq, cap);
                        let clean = mono_ns() < times.scribble_start;
                        verdicts.entry(v).or_default()[usize::from(!clean)] += 1;
                        if clean {
                            let in_order = if keep_all { h.seq == expect_next } else { (h.seq.wrapping_sub(expect_next) as i64) >= 0 };
                            if !in_order {
                                eprintln!("reader {r}: clean phase: seq {} after {}", h.seq, expect_next.wrapping_sub(1));
                                clean_out_of_order += 1;
                            }
                            expect_next = h.seq.wrapping_add(1);
                        }
                        true
                    }
                    Err(_) => false,
                };
                let released = t.call(Op::MarkRead, || ring.mark_read(h, r)).is_ok();
                read && released
            }
            Err(SlotError::ReaderNotRegistered(_)) => {
                leave(&ring, &mut t, r);
                me = None;
                failing = 0;
                continue;
            }
            Err(_) => false,
        };
        if ok {
            failing = 0;
        } else {
            failing += 1;
            std::thread::sleep(Duration::from_millis(1));
            if failing >= STUCK_AFTER {
                // Stuck on a sample the scribbler made unreadable: start over
                // at the current write position.
                leave(&ring, &mut t, r);
                me = None;
                resyncs += 1;
                failing = 0;
            }
        }
    }
    if let Some(r) = me {
        leave(&ring, &mut t, r);
    }
    let v = |k: Verdict| verdicts.get(&k).copied().unwrap_or_default();
    let (valid, crc, seq, len) = (v(Verdict::Valid), v(Verdict::Crc), v(Verdict::Seq), v(Verdict::Len));
    say(&format!(
        "SHMSLOT-RESULT role=reader first_index={first} last_index={last_index} valid_clean={} valid_scribble={} \
         bad_crc_clean={} bad_crc_scribble={} bad_seq_clean={} bad_seq_scribble={} bad_len_clean={} bad_len_scribble={} \
         clean_out_of_order={clean_out_of_order} reregistered={reregistered} resyncs={resyncs} {}",
        valid[0],
        valid[1],
        crc[0],
        crc[1],
        seq[0],
        seq[1],
        len[0],
        len[1],
        t.fields()
    ));
}

// ───────────────────────────── writer ─────────────────────────────

fn writer_child() {
    let ring = PosixSlotAllocator::attach(env(FLINK)).expect("writer: attach");
    say("SHMSLOT-READY writer");
    let times = wait_go();
    let n = ring.slot_count() as u64;
    let cap = ring.slot_capacity();
    let mut ptrs = PtrCheck { stride: ring.slot_total_size(), base: None };
    let mut t = Tally::new(times);
    let mut buf = vec![0u8; cap];
    let mut commits = [0u64; 2];
    let mut reserved = 0u64;
    let mut round = 0u64;
    while mono_ns() < times.stop {
        match t.call(Op::Reserve, || ring.reserve_slot_timeout(ALL_READERS, CALL_TIMEOUT)) {
            Ok(h) => {
                check_handle("reserve_slot_timeout", h, n);
                reserved += 1;
                match t.call(Op::SlotDataPtr, || ring.slot_data_ptr(h)) {
                    Ok((ptr, len)) => {
                        assert_eq!(len, cap, "slot_data_ptr of {h:?}: {len} bytes, capacity {cap}");
                        ptrs.check("slot_data_ptr", ptr as usize, h);
                        let l = fill(&mut buf, h.seq);
                        // SAFETY: the loan's `cap` writable bytes at `ptr`
                        // (slot `h.slot_index` of our mapping, checked above);
                        // `l <= cap`. Others may touch them only through a
                        // scribbled state (another process, not UB here).
                        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), ptr, l) };
                        if let Ok(seq) = t.call(Op::CommitInPlace, || ring.commit_in_place(h, l)) {
                            assert_eq!(seq, h.seq, "commit_in_place of {h:?} returned seq {seq}");
                            commits[usize::from(mono_ns() >= times.scribble_start)] += 1;
                        }
                    }
                    Err(_) => {
                        let _ = t.call(Op::Discard, || ring.discard_slot(h));
                    }
                }
            }
            Err(SlotError::TimedOut(_)) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
        round += 1;
        if round % 8 == 0 {
            // Leave the 2 CPUs some air: at most ~50k samples/s.
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    drop(ring);
    say(&format!("SHMSLOT-RESULT role=writer reserved={reserved} commits_clean={} commits_scribble={} {}", commits[0], commits[1], t.fields()));
}

// ───────────────────────────── scribbler ─────────────────────────────

const TARGETS: [&str; 12] =
    ["header", "write_seq", "registered", "futex_word", "reader_entry", "writer_entry", "control_any", "stamp", "pending", "len", "meta_any", "payload"];

struct Scribbler {
    base: *mut u8,
    len: usize,
    slot_count: u64,
    capacity: u64,
    stride: u64,
    max_readers: u64,
    max_writers: u64,
    writers_offset: u64,
    slots_offset: u64,
    rng: Rng,
    writes: [u64; TARGETS.len()],
}

impl Scribbler {
    /// An aligned offset in `[from, to)` for a store of `width` bytes.
    fn offset_in(&mut self, from: u64, to: u64, width: u64) -> u64 {
        from + self.rng.below((to - from) / width) * width
    }

    fn any_width(&mut self) -> u64 {
        [1, 4, 8][self.rng.below(3) as usize]
    }

    /// Picks a target: (kind, offset, width in bytes).
    fn target(&mut self) -> (usize, u64, u64) {
        if self.rng.below(2) == 0 {
            match self.rng.below(8) {
                0 => {
                    let w = self.any_width();
                    (0, self.offset_in(0, 128, w), w)
                }
                1..=3 => match self.rng.below(6) {
                    0 => (1, 128, 8),
                    1 => (2, 192, 8),
                    // data.generation, data.waiters, space.generation, space.waiters
                    k => (3, [256, 260, 320, 324][k as usize - 2], 4),
                },
                4 | 5 => {
                    let e = 384 + 192 * self.rng.below(self.max_readers);
                    // state, pid, cursor, pinned, received, lost, a kept word
                    let kept = 64 + 8 * self.rng.below(16);
                    let (off, w) = [(0, 4), (4, 4), (8, 8), (16, 8), (24, 8), (32, 8), (kept, 8)][self.rng.below(7) as usize];
                    (4, e + off, w)
                }
                6 => {
                    let e = self.writers_offset + 64 * self.rng.below(self.max_writers);
                    // state, pid, commits
                    let (off, w) = [(0, 4), (4, 4), (8, 8)][self.rng.below(3) as usize];
                    (5, e + off, w)
                }
                _ => {
                    let w = self.any_width();
                    (6, self.offset_in(128, self.slots_offset, w), w)
                }
            }
        } else {
            let s = self.slots_offset + self.rng.below(self.slot_count) * self.stride;
            match self.rng.below(20) {
                0..=6 => (7, s, 8),
                7..=10 => (8, s + 8, 8),
                11..=13 => (9, s + 16, 4),
                14 | 15 => {
                    let w = self.any_width();
                    (10, self.offset_in(s, s + 32, w), w)
                }
                _ => {
                    let w = self.any_width();
                    (11, self.offset_in(s + 32, s + 32 + self.capacity, w), w)
                }
            }
        }
    }

    fn atomic<T>(&self, off: u64, width: u64) -> &T {
        let off = off as usize;
        assert!(off % width as usize == 0 && off + width as usize <= self.len, "scribbler: offset {off} width {width} outside the map of {}", self.len);
        // SAFETY: in bounds and aligned (checked); the map lives as long as
        // `self`; every access through it is atomic.
        unsafe { &*self.base.add(off).cast::<T>() }
    }

    fn load(&self, off: u64, width: u64) -> u64 {
        match width {
            1 => u64::from(self.atomic::<AtomicU8>(off, 1).load(Ordering::Relaxed)),
            4 => u64::from(self.atomic::<AtomicU32>(off, 4).load(Ordering::Relaxed)),
            _ => self.atomic::<AtomicU64>(off, 8).load(Ordering::Relaxed),
        }
    }

    fn store(&self, off: u64, width: u64, v: u64) {
        match width {
            1 => self.atomic::<AtomicU8>(off, 1).store(v as u8, Ordering::Relaxed),
            4 => self.atomic::<AtomicU32>(off, 4).store(v as u32, Ordering::Relaxed),
            _ => self.atomic::<AtomicU64>(off, 8).store(v, Ordering::Relaxed),
        }
    }

    /// A new value for a word holding `cur`: random, or plausible.
    fn value(&mut self, cur: u64, width: u64) -> u64 {
        let n = self.slot_count;
        let v = match self.rng.below(10) {
            0..=3 => self.rng.next(),
            4 => cur ^ (1 << self.rng.below(width * 8)),
            // up to two laps off (sequence numbers, cursors, counts)
            5 => cur.wrapping_add(self.rng.below(4 * n + 1)).wrapping_sub(2 * n),
            // whole laps off, in stamp units (seq << 10)
            6 => cur.wrapping_add((self.rng.below(5).wrapping_sub(2)).wrapping_mul(n << 10)),
            // another stamp state and pin count
            7 => (cur & !0x3ff) | (self.rng.below(4) << 8) | [0, 1, 2, 254, 255][self.rng.below(5) as usize],
            8 => 0,
            _ => u64::MAX,
        };
        if width == 8 {
            v
        } else {
            v & ((1 << (width * 8)) - 1)
        }
    }

    /// Re-seeds the ring to a consistent, empty state at a random position
    /// (near 0, near the 54-bit stamp wrap, near the u64 wrap, or anywhere):
    /// `write_seq = W`, every slot SKIPPED for `W - N + k`, every reader
    /// entry free with its cursor at `W`, nobody registered. A hostile act
    /// too — loans and held samples vanish under their owners.
    fn reseed(&mut self) {
        let n = self.slot_count;
        let w = match self.rng.below(4) {
            0 => self.rng.below(1 << 20),
            1 => (1u64 << 54).wrapping_sub(self.rng.below(4 * n)),
            2 => u64::MAX - self.rng.below(4 * n),
            _ => self.rng.next(),
        };
        for k in 0..n {
            let seq = w.wrapping_sub(n).wrapping_add(k);
            let s = self.slots_offset + (seq % n) * self.stride;
            self.store(s, 8, (seq << 10) | (2 << 8)); // SKIPPED, no pins
            self.store(s + 8, 8, 0);
            self.store(s + 16, 4, 0);
        }
        for r in 0..self.max_readers {
            let e = 384 + 192 * r;
            self.store(e, 4, 0); // free
            self.store(e + 8, 8, w);
            self.store(e + 16, 8, 0);
            for k in 0..16 {
                self.store(e + 64 + 8 * k, 8, 0); // kept words
            }
        }
        self.store(192, 8, 0); // registered
        self.store(128, 8, w); // write_seq
    }

    fn scribble_one(&mut self) {
        let (kind, off, width) = self.target();
        let cur = self.load(off, width);
        let v = self.value(cur, width);
        self.store(off, width, v);
        self.writes[kind] += 1;
    }
}

fn scribbler_child() {
    let geo: Vec<u64> = env(GEO).split(',').map(|v| v.parse().expect("scribbler: geometry")).collect();
    let [slot_count, capacity, max_readers, max_writers] = geo[..] else { panic!("scribbler: {GEO} needs 4 numbers") };
    let stride = (32 + capacity).div_ceil(64) * 64;
    let writers_offset = 384 + 192 * max_readers;
    let slots_offset = writers_offset + 64 * max_writers;
    let total = slots_offset + stride * slot_count;
    let seed = env(SEED).parse::<u64>().expect("scribbler: seed") | 1;
    let file = OpenOptions::new().read(true).write(true).open(env(SEGMENT)).expect("scribbler: open the shm object");
    let len = file.metadata().expect("scribbler: fstat").len();
    assert_eq!(len, total, "scribbler: object size differs from the layout of src/ring/layout.rs");
    let map = memmap2::MmapOptions::new().len(len as usize).map_raw(&file).expect("scribbler: mmap");
    let mut s = Scribbler {
        base: map.as_mut_ptr(),
        len: len as usize,
        slot_count,
        capacity,
        stride,
        max_readers,
        max_writers,
        writers_offset,
        slots_offset,
        rng: Rng(seed),
        writes: [0; TARGETS.len()],
    };
    // The layout is what we think it is: slot 0's stamp holds a SKIPPED
    // sequence of the fresh ring (state bits 2).
    assert_eq!((s.load(slots_offset, 8) >> 8) & 3, 2, "scribbler: slot 0's stamp is not where layout.rs says");
    say("SHMSLOT-READY scribbler");
    let times = wait_go();
    sleep_until(times.scribble_start);
    let mut bursts = 0u64;
    // Epochs of each intensity: pauses of 0.1–1 ms, 1–10 ms, 10–50 ms.
    let mut epochs = [0u64; 3];
    loop {
        let now = mono_ns();
        if now >= times.scribble_end {
            break;
        }
        let epoch_end = (now + nanos(Duration::from_millis(200 + s.rng.below(600)))).min(times.scribble_end);
        let scale = s.rng.below(3) as usize;
        let (lo, hi) = [(100, 1_000), (1_000, 10_000), (10_000, 50_000)][scale];
        epochs[scale] += 1;
        s.reseed();
        while mono_ns() < epoch_end {
            for _ in 0..=s.rng.below(4) {
                s.scribble_one();
            }
            bursts += 1;
            std::thread::sleep(Duration::from_micros(lo + s.rng.below(hi - lo)));
        }
    }
    let total_writes: u64 = s.writes.iter().sum();
    let per: Vec<String> = TARGETS.iter().zip(s.writes).map(|(k, v)| format!("w.{k}={v}")).collect();
    drop(map);
    say(&format!(
        "SHMSLOT-RESULT role=scribbler seed={seed} writes={total_writes} bursts={bursts} epochs_brutal={} epochs_medium={} epochs_gentle={} {}",
        epochs[0],
        epochs[1],
        epochs[2],
        per.join(" ")
    ));
}

// ───────────────────────────── parent side ─────────────────────────────

fn num(r: &Fields, k: &str) -> u64 {
    r.get(k).map_or(0, |v| v.parse().unwrap_or_else(|e| panic!("result {k}={v}: {e}")))
}

fn show(r: &Fields) -> String {
    r.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

fn run(policy: OverflowPolicy, tag: &str) {
    let dir = TestDir::new(tag);
    let ring = PosixSlotAllocator::builder(SLOTS, CAPACITY)
        .overflow_policy(policy)
        .max_readers(MAX_READERS)
        .max_writers(MAX_WRITERS)
        .create(dir.flink("hostile"))
        .unwrap();
    let info = ring.info();
    let geo = format!("{},{},{},{}", info.slot_count, info.capacity, info.max_readers, info.max_writers);
    let segment = ring.segment_path();
    let flink = ring.flink_path().to_str().unwrap().to_owned();
    let seed = std::env::var(SEED).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| mix(mono_ns() ^ u64::from(std::process::id())));
    let t0 = mono_ns();

    let mut fam = Family::new();
    let child = |role: &str, vars: &[(&str, String)]| {
        let mut cmd = common::child_command(CHILD_TEST);
        cmd.env(ROLE, role).env("RUST_BACKTRACE", "1");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd
    };
    let mut ids = Vec::new();
    for i in 0..READERS {
        ids.push(fam.spawn(&format!("reader{i}"), child("reader", &[(FLINK, flink.clone())])));
    }
    ids.push(fam.spawn("writer", child("writer", &[(FLINK, flink.clone())])));
    ids.push(fam.spawn("scribbler", child("scribbler", &[(SEGMENT, segment.to_str().unwrap().to_owned()), (GEO, geo), (SEED, seed.to_string())])));
    for &id in &ids {
        let r = fam.wait_ready(id, READY_TIMEOUT);
        if id < READERS {
            let index: u8 = r.parse().expect("reader index");
            assert!(ring.reader_stats(index).is_ok(), "reader {index} not registered after READY");
        }
    }
    // Everyone attached (the readers registered): start the clock.
    let go = mono_ns() + nanos(Duration::from_millis(100));
    let times = Times { scribble_start: go + nanos(CLEAN), scribble_end: go + nanos(CLEAN + SCRIBBLE), stop: go + nanos(CLEAN + SCRIBBLE + TAIL) };
    for &id in &ids {
        fam.send(id, &format!("go {} {} {}", times.scribble_start, times.scribble_end, times.stop));
    }
    // `mono_ns` is CLOCK_MONOTONIC, the clock of `Instant` on Linux.
    let deadline = Instant::now() + Duration::from_nanos((times.stop + nanos(HANG_GRACE)).saturating_sub(mono_ns()));
    let results = fam.wait_all(deadline, &format!("hang: children still running {HANG_GRACE:?} after their stop time"));
    let elapsed = Duration::from_nanos(mono_ns() - t0);
    eprintln!("{policy:?}: all children exited 0 after {elapsed:?} (scribbler seed {seed})");
    for (i, r) in results.iter().enumerate() {
        eprintln!("  {}: {}", fam.procs[i].name, show(r));
    }

    let check = |cond: bool, what: String| {
        if !cond {
            panic!("{policy:?} (seed {seed}): {what}");
        }
    };
    let allowed = |key: &str| {
        let mut parts = key.splitn(3, '.');
        let (_, op, kind) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        ALLOWED.iter().any(|(o, kinds)| *o == op && kinds.contains(&kind))
    };
    for (i, r) in results.iter().enumerate().take(READERS + 1) {
        let name = &fam.procs[i].name;
        // Every call bounded, every error of a documented kind.
        check(num(r, "max_call_us") < MAX_CALL.as_micros() as u64, format!("{name}: a call took {} µs ({}): {}", num(r, "max_call_us"), r["max_call_op"], show(r)));
        for k in r.keys().filter(|k| k.starts_with("err.")) {
            check(allowed(k), format!("{name}: undocumented error {k}: {}", show(r)));
        }
        // It kept working through the scribbling.
        check(num(r, "calls_scribble") >= 20, format!("{name}: only {} calls while scribbled on: {}", num(r, "calls_scribble"), show(r)));
    }
    for (i, r) in results.iter().enumerate().take(READERS) {
        let name = &fam.procs[i].name;
        // Clean phase: progress, and every sample valid and in order.
        check(num(r, "valid_clean") >= 10, format!("{name}: only {} valid samples before scribbling: {}", num(r, "valid_clean"), show(r)));
        for k in ["bad_crc_clean", "bad_seq_clean", "bad_len_clean", "clean_out_of_order"] {
            check(num(r, k) == 0, format!("{name}: {k} = {} before any scribbling: {}", num(r, k), show(r)));
        }
        let clean_errs: Vec<&String> = r.keys().filter(|k| k.starts_with("clean_err.")).collect();
        check(clean_errs.is_empty(), format!("{name}: errors before any scribbling {clean_errs:?}: {}", show(r)));
    }
    let w = &results[READERS];
    check(num(w, "commits_clean") >= 10, format!("writer: only {} commits before scribbling: {}", num(w, "commits_clean"), show(w)));
    for k in w.keys().filter(|k| k.starts_with("clean_err.")) {
        check(
            k == "clean_err.reserve_slot_timeout.TimedOut" || k == "clean_err.reserve_slot_timeout.NoFreeSlot",
            format!("writer: error {k} before any scribbling: {}", show(w)),
        );
    }
    let s = &results[READERS + 1];
    check(num(s, "writes") >= 500, format!("scribbler: only {} stores: {}", num(s, "writes"), show(s)));

    drop(fam);
    drop(ring);
    assert_unlinked(&segment);
    drop(dir); // asserts the flink file is gone
}

/// KeepAll: 2 readers, 1 writer, 1 scribbler process for 10 s.
#[test]
fn hostile_scribbler_process_keep_all() {
    run(OverflowPolicy::KeepAll, "hostile-keepall");
}

/// DropOldest: 2 readers, 1 writer, 1 scribbler process for 10 s.
#[test]
fn hostile_scribbler_process_drop_oldest() {
    run(OverflowPolicy::DropOldest, "hostile-dropoldest");
}
