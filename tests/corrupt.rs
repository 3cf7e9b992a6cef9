//! Corrupt and hostile segments and flink files: attach validation gives the
//! exact typed error naming the file, and the ring operations on a scribbled
//! segment give errors or valid samples — never a panic, out-of-bounds access
//! or hang.
//!
//! Segments are corrupted the way another process would: by writing the
//! `/dev/shm` object through the file system at the offsets of
//! `src/ring/layout.rs` (the same pages the rings have mapped).

mod common;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assert_unlinked, Rng, TestDir};
use shmslot::{
    Loan, OpenError, OverflowPolicy, PosixSlotAllocator, Reader, SlotBackend, SlotError, SlotHandle, ValidationError, ALL_READERS,
};

// ───────────────────────────── layout (src/ring/layout.rs) ─────────────────────────────

/// The segment layout version these offsets describe.
const LAYOUT_VERSION: u32 = 4;
const OFF_MAGIC: u64 = 0;
const OFF_VERSION: u64 = 8;
const OFF_INIT: u64 = 12;
const OFF_SLOT_COUNT: u64 = 16;
const OFF_CAPACITY: u64 = 20;
const OFF_STRIDE: u64 = 24;
const OFF_MAX_READERS: u64 = 28;
const OFF_MAX_WRITERS: u64 = 32;
const OFF_POLICY: u64 = 36;
const OFF_TYPE_HASH: u64 = 40;
const OFF_CRC: u64 = 56;
const OFF_TOTAL: u64 = 64;
const CONTROL: u64 = 128;
const WRITE_SEQ: u64 = CONTROL;
const REGISTERED: u64 = CONTROL + 64;
const DATA_GEN: u64 = CONTROL + 128;
const SPACE_GEN: u64 = CONTROL + 192;
const READERS: u64 = 384;
/// A reader entry (three lines: counters, then the kept words).
const READER_ENTRY: u64 = 192;
const WRITER_ENTRY: u64 = 64;
const READY: u32 = u32::from_le_bytes(*b"RDY!");

fn stride_for(capacity: u32) -> u64 {
    (32 + u64::from(capacity)).div_ceil(64) * 64
}

/// Offsets of one segment, from its geometry.
#[derive(Clone, Copy, Debug)]
struct Geo {
    slot_count: u32,
    capacity: u32,
    max_readers: u32,
    max_writers: u32,
}

impl Geo {
    fn of(ring: &PosixSlotAllocator) -> Self {
        let i = ring.info();
        Self { slot_count: i.slot_count, capacity: i.capacity, max_readers: i.max_readers, max_writers: i.max_writers }
    }
    fn stride(&self) -> u64 {
        stride_for(self.capacity)
    }
    fn slots(&self) -> u64 {
        READERS + READER_ENTRY * u64::from(self.max_readers) + WRITER_ENTRY * u64::from(self.max_writers)
    }
    fn total(&self) -> u64 {
        self.slots() + self.stride() * u64::from(self.slot_count)
    }
    fn slot(&self, i: u32) -> u64 {
        self.slots() + u64::from(i) * self.stride()
    }
    fn reader(&self, r: u32) -> u64 {
        READERS + READER_ENTRY * u64::from(r)
    }
}

/// The stamp of a slot: `seq:54 | state:2 | pins:8`.
fn stamp(seq: u64, state: u64, pins: u64) -> u64 {
    (seq << 10) | (state << 8) | pins
}
const COMMITTED: u64 = 1;

/// The geometry crc: crc32 over the 68 bytes `geometry_bytes` builds (the
/// last 16, generation, growth and predecessor, are 0 for these rings).
#[allow(clippy::too_many_arguments)]
fn geometry_crc(slot_count: u32, capacity: u32, stride: u32, max_readers: u32, max_writers: u32, policy: u32, hash: [u32; 4], total: u64) -> u32 {
    let mut b = Vec::with_capacity(68);
    for v in [LAYOUT_VERSION, slot_count, capacity, stride, max_readers, max_writers, policy] {
        b.extend_from_slice(&u32::to_le_bytes(v));
    }
    for v in hash {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(&[0; 16]);
    assert_eq!(b.len(), 68);
    crc32fast::hash(&b)
}

/// The segment's object opened read-write, as a hostile peer would.
struct Seg(File);

impl Seg {
    fn open(ring: &PosixSlotAllocator) -> Self {
        Self(OpenOptions::new().read(true).write(true).open(ring.segment_path()).expect("open /dev/shm object"))
    }
    fn u32(&self, off: u64) -> u32 {
        let mut b = [0; 4];
        self.0.read_exact_at(&mut b, off).unwrap();
        u32::from_le_bytes(b)
    }
    fn u64(&self, off: u64) -> u64 {
        let mut b = [0; 8];
        self.0.read_exact_at(&mut b, off).unwrap();
        u64::from_le_bytes(b)
    }
    fn set_u32(&self, off: u64, v: u32) {
        self.0.write_all_at(&v.to_le_bytes(), off).unwrap();
    }
    fn set_u64(&self, off: u64, v: u64) {
        self.0.write_all_at(&v.to_le_bytes(), off).unwrap();
    }
    /// The geometry as stored: (slot_count, capacity, stride, max_readers,
    /// max_writers, policy, hash, total).
    fn geometry(&self) -> (u32, u32, u32, u32, u32, u32, [u32; 4], u64) {
        (
            self.u32(OFF_SLOT_COUNT),
            self.u32(OFF_CAPACITY),
            self.u32(OFF_STRIDE),
            self.u32(OFF_MAX_READERS),
            self.u32(OFF_MAX_WRITERS),
            self.u32(OFF_POLICY),
            [0, 1, 2, 3].map(|i| self.u32(OFF_TYPE_HASH + 4 * i)),
            self.u64(OFF_TOTAL),
        )
    }
    fn computed_crc(&self) -> u32 {
        let (a, b, c, d, e, f, g, h) = self.geometry();
        geometry_crc(a, b, c, d, e, f, g, h)
    }
    fn fix_crc(&self) {
        self.set_u32(OFF_CRC, self.computed_crc());
    }
}

// ───────────────────────────── helpers ─────────────────────────────

fn attach_err(path: &Path) -> OpenError {
    match PosixSlotAllocator::attach(path) {
        Ok(_) => panic!("attach through {} succeeded on a corrupt file", path.display()),
        Err(e) => e,
    }
}

/// Asserts `err` is `Invalid { path, error: want }` and its message names the file.
fn assert_invalid(err: OpenError, path: &Path, want: ValidationError) {
    let msg = err.to_string();
    match err {
        OpenError::Invalid { path: p, error } => {
            assert_eq!(p, path, "error names the wrong file: {msg}");
            assert_eq!(error, want, "{msg}");
        }
        other => panic!("expected Invalid({want:?}) for {}, got {other:?}", path.display()),
    }
    assert!(msg.contains(path.to_str().unwrap()), "message does not name {}: {msg}", path.display());
}

/// Asserts `err` is `Unsafe { path, reason ∋ reason }` and its message names the file.
fn assert_unsafe(err: OpenError, path: &Path, reason: &str) {
    let msg = err.to_string();
    match err {
        OpenError::Unsafe { path: p, reason: r } => {
            assert_eq!(p, path, "error names the wrong file: {msg}");
            assert!(r.contains(reason), "reason {r:?} does not mention {reason:?}");
        }
        other => panic!("expected Unsafe({reason}) for {}, got {other:?}", path.display()),
    }
    assert!(msg.contains(path.to_str().unwrap()), "message does not name {}: {msg}", path.display());
}

/// A small KeepAll ring in `dir`: 8 slots of 100 bytes, 4 readers, 2 writers.
fn small_ring(dir: &TestDir, name: &str) -> PosixSlotAllocator {
    PosixSlotAllocator::builder(8, 100).max_readers(4).max_writers(2).create(dir.flink(name)).unwrap()
}

/// Creates a ring, lets `corrupt` scribble on its object, and returns the
/// attach error (and the object's path), cleaning everything up.
fn corrupted_attach(tag: &str, corrupt: impl FnOnce(&Seg, Geo)) -> (OpenError, PathBuf) {
    let dir = TestDir::new(tag);
    let ring = small_ring(&dir, "seg");
    // The uncorrupted segment attaches.
    drop(PosixSlotAllocator::attach(ring.flink_path()).expect("clean attach"));
    let seg = Seg::open(&ring);
    corrupt(&seg, Geo::of(&ring));
    let err = attach_err(ring.flink_path());
    let path = ring.segment_path();
    drop(ring);
    assert_unlinked(&path);
    (err, path)
}

// ───────────────────────────── segment header ─────────────────────────────

#[test]
fn truncated_object() {
    for size in [0u64, 100, 383] {
        let (err, path) = corrupted_attach("trunc", |seg, _| seg.0.set_len(size).unwrap());
        assert_invalid(err, &path, ValidationError::Truncated { size, needed: 384 });
    }
    // A readable header whose geometry no longer fits: the size check, not
    // a read past the end.
    for cut in [0u64, 1, 2] {
        let mut want = (0, 0);
        let (err, path) = corrupted_attach("trunc", |seg, g| {
            let size = [384, g.total() / 2, g.total() - 1][cut as usize];
            seg.0.set_len(size).unwrap();
            want = (g.total(), size);
        });
        assert_invalid(err, &path, ValidationError::GeometryTooLarge { needed: want.0, size: want.1 });
    }
}

#[test]
fn wrong_magic() {
    let (err, path) = corrupted_attach("magic", |seg, _| seg.set_u64(OFF_MAGIC, u64::from_le_bytes(*b"SHMSLOT2")));
    assert_invalid(err, &path, ValidationError::BadMagic { found: u64::from_le_bytes(*b"SHMSLOT2") });
    let (err, path) = corrupted_attach("magic", |seg, _| seg.set_u64(OFF_MAGIC, 0));
    assert_invalid(err, &path, ValidationError::BadMagic { found: 0 });
}

#[test]
fn wrong_version() {
    for v in [LAYOUT_VERSION - 1, LAYOUT_VERSION + 1, 0] {
        let (err, path) = corrupted_attach("version", |seg, _| seg.set_u32(OFF_VERSION, v));
        assert_invalid(err, &path, ValidationError::VersionMismatch { found: v, expected: LAYOUT_VERSION });
    }
}

#[test]
fn bad_geometry_crc() {
    // Each geometry field changed without fixing the crc.
    for (off, width) in
        [(OFF_SLOT_COUNT, 4), (OFF_CAPACITY, 4), (OFF_STRIDE, 4), (OFF_MAX_READERS, 4), (OFF_MAX_WRITERS, 4), (OFF_POLICY, 4), (OFF_TYPE_HASH + 12, 4), (OFF_TOTAL, 8), (OFF_CRC, 4)]
    {
        let mut want = (0, 0);
        let (err, path) = corrupted_attach("crc", |seg, _| {
            if width == 4 {
                seg.set_u32(off, seg.u32(off) ^ 0x10);
            } else {
                seg.set_u64(off, seg.u64(off) ^ 0x10);
            }
            want = (seg.u32(OFF_CRC), seg.computed_crc());
        });
        assert_ne!(want.0, want.1, "field at {off} did not change the crc");
        assert_invalid(err, &path, ValidationError::BadCrc { stored: want.0, computed: want.1 });
    }
}

#[test]
fn init_state_not_ready() {
    for state in [0u32, 1, READY ^ 1, u32::MAX] {
        let (err, path) = corrupted_attach("init", |seg, _| {
            assert_eq!(seg.u32(OFF_INIT), READY);
            seg.set_u32(OFF_INIT, state);
        });
        assert_invalid(err, &path, ValidationError::NotInitialized { state });
    }
}

#[test]
fn geometry_larger_than_object() {
    // Twice the slots, a consistent total size and a valid crc: only the
    // comparison with the real (fstat) size can catch it.
    let mut want = (0, 0);
    let (err, path) = corrupted_attach("toolarge", |seg, g| {
        let bigger = Geo { slot_count: g.slot_count * 2, ..g };
        seg.set_u32(OFF_SLOT_COUNT, bigger.slot_count);
        seg.set_u64(OFF_TOTAL, bigger.total());
        seg.fix_crc();
        want = (bigger.total(), g.total());
    });
    assert_invalid(err, &path, ValidationError::GeometryTooLarge { needed: want.0, size: want.1 });

    // The largest capacity allowed, with a matching stride.
    let mut want = (0, 0);
    let (err, path) = corrupted_attach("toolarge", |seg, g| {
        let huge = Geo { capacity: 1 << 30, ..g };
        seg.set_u32(OFF_CAPACITY, huge.capacity);
        seg.set_u32(OFF_STRIDE, huge.stride() as u32);
        seg.set_u64(OFF_TOTAL, huge.total());
        seg.fix_crc();
        want = (huge.total(), g.total());
    });
    assert_invalid(err, &path, ValidationError::GeometryTooLarge { needed: want.0, size: want.1 });
}

#[test]
fn geometry_fields_out_of_range_with_valid_crc() {
    type Case = (&'static str, u64, fn(&Seg, Geo));
    let cases: [Case; 9] = [
        ("slot_count", 12, |s, _| s.set_u32(OFF_SLOT_COUNT, 12)),
        ("slot_count", 0, |s, _| s.set_u32(OFF_SLOT_COUNT, 0)),
        ("slot_count", 1 << 25, |s, _| s.set_u32(OFF_SLOT_COUNT, 1 << 25)),
        ("capacity", 0, |s, _| s.set_u32(OFF_CAPACITY, 0)),
        ("stride", 64, |s, _| s.set_u32(OFF_STRIDE, 64)),
        ("max_readers", 65, |s, _| s.set_u32(OFF_MAX_READERS, 65)),
        ("max_writers", 0, |s, _| s.set_u32(OFF_MAX_WRITERS, 0)),
        ("policy", 3, |s, _| s.set_u32(OFF_POLICY, 3)),
        ("total_size", 0, |s, g| s.set_u64(OFF_TOTAL, g.total() - 64)),
    ];
    for (field, value, corrupt) in cases {
        let mut total = 0;
        let (err, path) = corrupted_attach("field", |seg, g| {
            total = g.total();
            corrupt(seg, g);
            seg.fix_crc();
        });
        let value = if field == "total_size" { total - 64 } else { value };
        let msg = err.to_string();
        match err {
            OpenError::Invalid { path: p, error: ValidationError::BadField { field: f, value: v, .. } } => {
                assert_eq!((p.as_path(), f, v), (path.as_path(), field, value), "{msg}");
            }
            other => panic!("{field} = {value}: expected BadField, got {other:?}"),
        }
        assert!(msg.contains(path.to_str().unwrap()), "{msg}");
    }
}

#[test]
fn shm_object_writable_by_group_is_refused() {
    let dir = TestDir::new("shmmode");
    let ring = small_ring(&dir, "seg");
    let path = ring.segment_path();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    assert_unsafe(attach_err(ring.flink_path()), &path, "writable by group or others");
    drop(ring);
    assert_unlinked(&path);
}

// ───────────────────────────── slot metadata and handles ─────────────────────────────

#[test]
fn slot_length_above_capacity() {
    for policy in [OverflowPolicy::KeepAll, OverflowPolicy::DropOldest] {
        let dir = TestDir::new("len");
        let ring = PosixSlotAllocator::builder(8, 100).max_readers(4).max_writers(2).overflow_policy(policy).create(dir.flink("seg")).unwrap();
        let g = Geo::of(&ring);
        let seg = Seg::open(&ring);
        let peer = PosixSlotAllocator::attach(ring.flink_path()).unwrap();
        let r = peer.register_reader().unwrap();
        ring.commit_slot(ring.reserve_slot(ALL_READERS).unwrap(), b"hello").unwrap();

        // A held sample whose length is scribbled on.
        let h = peer.next_unread_slot(r).unwrap().expect("a sample");
        assert_eq!(peer.slot_read_ptr(h).unwrap().1, 5);
        // The stamp says what layout.rs says: committed, pinned once by the
        // holder under DropOldest.
        let pins = u64::from(policy == OverflowPolicy::DropOldest);
        assert_eq!(seg.u64(g.slot(h.slot_index)), stamp(h.seq, COMMITTED, pins), "stamp is not where layout.rs says");
        assert_eq!(seg.u64(g.slot(h.slot_index) + 8), 1 << r, "pending is not where layout.rs says");
        let len_at = g.slot(h.slot_index) + 16;
        assert_eq!(seg.u32(len_at), 5, "len is not where layout.rs says");
        for bad in [101u32, 4096, u32::MAX] {
            seg.set_u32(len_at, bad);
            let corrupt = SlotError::Corrupt { what: "sample length", value: u64::from(bad), limit: 100 };
            assert_eq!(peer.slot_read_ptr(h).err(), Some(corrupt.clone()), "{policy:?}");
            assert_eq!(peer.read_slot(h).err(), Some(corrupt.clone()), "{policy:?}");
            assert_eq!(peer.next_unread_slot(r), Err(corrupt.clone()), "{policy:?}");
            // Through the safe API too.
            let mut reader = Reader::new(&peer).unwrap();
            ring.commit_slot(ring.reserve_slot(1 << reader.index()).unwrap(), b"x").unwrap();
            let h2 = peer.next_unread_slot(reader.index()).unwrap().unwrap();
            seg.set_u32(g.slot(h2.slot_index) + 16, bad);
            assert_eq!(reader.try_recv().err(), Some(corrupt.clone()), "{policy:?}");
            assert_eq!(reader.recv_timeout(Duration::from_millis(1)).err(), Some(corrupt), "{policy:?}");
            drop(reader);
        }
        // Repaired, the sample reads again: the error did no harm.
        seg.set_u32(len_at, 5);
        let (hdr, bytes) = peer.read_slot(h).unwrap();
        assert_eq!((hdr.sequence_number, &bytes[..]), (h.seq, &b"hello"[..]));
        peer.mark_read(h, r).unwrap();

        // A sample committed with a corrupt length before the reader looks.
        let w = ring.reserve_slot(ALL_READERS).unwrap();
        ring.commit_slot(w, b"abc").unwrap();
        seg.set_u32(g.slot(w.slot_index) + 16, 101);
        assert_eq!(peer.next_unread_slot(r), Err(SlotError::Corrupt { what: "sample length", value: 101, limit: 100 }));
        let path = ring.segment_path();
        drop((peer, seg, ring));
        assert_unlinked(&path);
    }
}

#[test]
fn handles_out_of_range() {
    let dir = TestDir::new("handles");
    let ring = small_ring(&dir, "seg");
    let peer = PosixSlotAllocator::attach(ring.flink_path()).unwrap();
    let n = ring.slot_count() as u32;
    let r = peer.register_reader().unwrap();

    // Write side: a loan named with an index outside the ring, or another slot.
    let loan = ring.reserve_slot(ALL_READERS).unwrap();
    for index in [n, n + loan.slot_index, 1000, u32::MAX, (loan.slot_index + 1) % n] {
        let bad = SlotHandle { slot_index: index, seq: loan.seq };
        let not_loaned = SlotError::NotLoaned { index, seq: loan.seq };
        assert_eq!(ring.slot_data_ptr(bad).err(), Some(not_loaned.clone()));
        assert_eq!(ring.commit_slot(bad, b"x"), Err(not_loaned.clone()));
        assert_eq!(ring.commit_in_place(bad, 1), Err(not_loaned.clone()));
        assert_eq!(ring.discard_slot(bad), Err(not_loaned));
    }
    // Right index, a sequence number never loaned.
    for seq in [loan.seq + u64::from(n), loan.seq.wrapping_sub(u64::from(n)), u64::MAX] {
        let bad = SlotHandle { slot_index: (seq % u64::from(n)) as u32, seq };
        assert_eq!(ring.commit_slot(bad, b"x"), Err(SlotError::NotLoaned { index: bad.slot_index, seq }));
    }
    // The real loan is untouched by all that.
    assert_eq!(ring.commit_slot(loan, b"payload"), Ok(loan.seq));
    assert_eq!(ring.commit_slot(loan, b"again"), Err(SlotError::NotLoaned { index: loan.slot_index, seq: loan.seq }));

    // Read side.
    let held = peer.next_unread_slot(r).unwrap().unwrap();
    assert_eq!(held, loan);
    for index in [n, 1000, u32::MAX, (held.slot_index + 1) % n] {
        let bad = SlotHandle { slot_index: index, seq: held.seq };
        assert_eq!(peer.slot_read_ptr(bad).err(), Some(SlotError::OutOfBounds { index, count: n }));
        assert_eq!(peer.read_slot(bad).err(), Some(SlotError::OutOfBounds { index, count: n }));
        assert_eq!(peer.mark_read(bad, r), Err(SlotError::NotHeld { reader: r, seq: held.seq, expected: held.seq }));
    }
    // Right index, a later sequence the slot does not hold.
    let later = SlotHandle { slot_index: held.slot_index, seq: held.seq + u64::from(n) };
    assert!(matches!(peer.slot_read_ptr(later), Err(SlotError::Corrupt { .. })));
    assert_eq!(peer.mark_read(later, r), Err(SlotError::NotHeld { reader: r, seq: later.seq, expected: held.seq }));
    // Reader indices outside the table.
    for bad in [4u8, 63, 64, 200, 255] {
        assert_eq!(peer.next_unread_slot(bad), Err(SlotError::ReaderNotRegistered(bad)));
        assert_eq!(peer.mark_read(held, bad), Err(SlotError::ReaderNotRegistered(bad)));
        assert_eq!(peer.reader_stats(bad), Err(SlotError::ReaderNotRegistered(bad)));
        assert_eq!(peer.unregister_reader(bad), Err(SlotError::ReaderNotRegistered(bad)));
        assert_eq!(peer.mark_reader_disconnected(bad), Err(SlotError::ReaderNotRegistered(bad)));
    }
    // The held sample is still intact and releasable exactly once.
    assert_eq!(peer.read_slot(held).unwrap().1, b"payload");
    assert_eq!(peer.mark_read(held, r), Ok(()));
    assert_eq!(peer.mark_read(held, r), Err(SlotError::NotHeld { reader: r, seq: held.seq, expected: held.seq + 1 }));
    let path = ring.segment_path();
    drop((peer, ring));
    assert_unlinked(&path);
}

// ───────────────────────────── flink files ─────────────────────────────

/// Writes `bytes` to `dir/name` with `mode`, attaches through it, removes it.
fn attach_flink_bytes(dir: &TestDir, name: &str, bytes: &[u8], mode: u32) -> (OpenError, PathBuf) {
    let path = dir.flink(name);
    {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let err = attach_err(&path);
    std::fs::remove_file(&path).unwrap();
    (err, path)
}

fn fix_flink_crc(b: &mut [u8]) {
    let crc = crc32fast::hash(&b[16..]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn corrupt_flink_files() {
    let dir = TestDir::new("flink");
    let ring = small_ring(&dir, "good");
    let good = std::fs::read(ring.flink_path()).unwrap();
    assert_eq!(good.len(), 128);
    // A byte-exact copy attaches: the cases below fail for their corruption only.
    let (copy, _) = (dir.flink("copy"), ());
    std::fs::write(&copy, &good).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    drop(PosixSlotAllocator::attach(&copy).expect("attach through a copy"));
    std::fs::remove_file(&copy).unwrap();

    // Bad magic.
    let mut b = good.clone();
    b[0] = b'X';
    let (err, path) = attach_flink_bytes(&dir, "magic", &b, 0o600);
    assert_invalid(err, &path, ValidationError::BadMagic { found: u64::from_le_bytes(b[0..8].try_into().unwrap()) });

    // Wrong version.
    let mut b = good.clone();
    b[8..12].copy_from_slice(&7u32.to_le_bytes());
    let (err, path) = attach_flink_bytes(&dir, "version", &b, 0o600);
    assert_invalid(err, &path, ValidationError::VersionMismatch { found: 7, expected: 1 });

    // Bad crc: a field (slot_count), a name byte, and the crc itself.
    for at in [68usize, 30, 12, 127] {
        let mut b = good.clone();
        b[at] ^= 0x01;
        let stored = u32::from_le_bytes(b[12..16].try_into().unwrap());
        let computed = crc32fast::hash(&b[16..]);
        let (err, path) = attach_flink_bytes(&dir, "crc", &b, 0o600);
        assert_invalid(err, &path, ValidationError::BadCrc { stored, computed });
    }

    // Too short: Invalid(Truncated). Too long: refused before reading.
    for len in [0usize, 16, 127] {
        let (err, path) = attach_flink_bytes(&dir, "short", &good[..len], 0o600);
        assert_invalid(err, &path, ValidationError::Truncated { size: len as u64, needed: 128 });
    }
    for len in [129usize, 4096, 1 << 20] {
        let mut b = good.clone();
        b.resize(len, 0);
        let (err, path) = attach_flink_bytes(&dir, "oversize", &b, 0o600);
        assert_unsafe(err, &path, "larger than a flink file can be");
    }

    // A name length beyond the field, with a valid crc.
    let mut b = good.clone();
    b[16..20].copy_from_slice(&49u32.to_le_bytes());
    fix_flink_crc(&mut b);
    let (err, path) = attach_flink_bytes(&dir, "namelen", &b, 0o600);
    assert_invalid(err, &path, ValidationError::BadField { field: "flink name length", value: 49, expected: "at most 48" });
    let mut b = good.clone();
    b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_flink_crc(&mut b);
    let (err, path) = attach_flink_bytes(&dir, "namelen", &b, 0o600);
    assert!(matches!(&err, OpenError::Invalid { path: p, error: ValidationError::BadField { field: "flink name length", .. } } if p == &path), "{err:?}");

    // Names outside the strict pattern, with a valid crc: never opened.
    for name in ["/etc/passwd", "/shmslot.0.../../../../x", "shmslot.0.0123456789abcdef", "/shmslot.0.0123456789ABCDEF", "/shmslot..0123456789abcdef", "/shmslot.0.0123456789abcde\u{e9}"] {
        let mut b = good.clone();
        b[16..68].fill(0);
        b[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        b[20..20 + name.len()].copy_from_slice(name.as_bytes());
        fix_flink_crc(&mut b);
        let (err, path) = attach_flink_bytes(&dir, "name", &b, 0o600);
        match &err {
            OpenError::Invalid { path: p, error: ValidationError::BadField { field: "segment name", .. } } => assert_eq!(p, &path),
            other => panic!("segment name {name:?}: expected BadField, got {other:?}"),
        }
    }

    // A well-formed name of an object that does not exist: an I/O error naming it.
    let mut b = good.clone();
    let name = format!("/shmslot.{}.{:016x}", unsafe_free_euid(), 0x0bad_f00d_dead_beef_u64);
    b[16..68].fill(0);
    b[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
    b[20..20 + name.len()].copy_from_slice(name.as_bytes());
    fix_flink_crc(&mut b);
    let (err, _) = attach_flink_bytes(&dir, "missing", &b, 0o600);
    match err {
        OpenError::Io { path, source, .. } => {
            assert_eq!(path, PathBuf::from(format!("/dev/shm{name}")));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io(NotFound), got {other:?}"),
    }

    // Group- or other-writable: refused, even with perfect contents.
    for mode in [0o620, 0o602, 0o666] {
        let (err, path) = attach_flink_bytes(&dir, "loose", &good, mode);
        assert_unsafe(err, &path, "writable by group or others");
    }

    // A symlink to the good flink file: refused, not followed.
    let link = dir.flink("link");
    std::os::unix::fs::symlink(ring.flink_path(), &link).unwrap();
    assert_unsafe(attach_err(&link), &link, "symbolic link");
    std::fs::remove_file(&link).unwrap();

    // A FIFO (would block a reader without O_NONBLOCK) and a directory.
    let fifo = dir.flink("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let t = Instant::now();
    assert_unsafe(attach_err(&fifo), &fifo, "not a regular file");
    assert!(t.elapsed() < Duration::from_secs(5));
    std::fs::remove_file(&fifo).unwrap();
    let sub = dir.flink("subdir");
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_unsafe(attach_err(&sub), &sub, "not a regular file");
    std::fs::remove_dir(&sub).unwrap();

    // The good flink file was never disturbed.
    drop(PosixSlotAllocator::attach(ring.flink_path()).expect("the original still attaches"));
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
}

#[test]
fn discovery_dir_writable_by_group_is_refused() {
    let dir = TestDir::new("loosedir");
    let ring = small_ring(&dir, "seg");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
    match PosixSlotAllocator::attach_in("seg", Some(dir.path())) {
        Ok(_) => panic!("attach in a group-writable directory"),
        Err(e) => assert_unsafe(e, dir.path(), "writable by group or others"),
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    drop(PosixSlotAllocator::attach_in("seg", Some(dir.path())).expect("attach once the mode is fixed"));
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
}

fn unsafe_free_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

// ───────────────────────────── hostile garbage ─────────────────────────────

/// Hostile segment contents: a consistent ring state (every slot holding the
/// sequence the protocol expects, readers active near `write_seq`) of which
/// each word is then replaced by garbage with probability 1/3 — so the checks
/// past the first one are reached too, not only the cheapest rejection.
struct Garbage {
    rng: Rng,
    g: Geo,
}

impl Garbage {
    fn corrupt(&mut self) -> bool {
        self.rng.below(3) == 0
    }
    /// A sequence number near `base`, or anything.
    fn seq_near(&mut self, base: u64) -> u64 {
        let n = u64::from(self.g.slot_count);
        match self.rng.below(4) {
            0 => self.rng.next(),
            _ => base.wrapping_add(self.rng.below(4 * n + 1)).wrapping_sub(2 * n),
        }
    }
    fn mask(&mut self) -> u64 {
        self.rng.pick(&[0, 1, 0b1010, u64::MAX, 1 << 63, self.rng.0])
    }
    fn bad_len(&mut self) -> u32 {
        let cap = self.g.capacity;
        self.rng.pick(&[cap + 1, cap * 2, u32::MAX, self.rng.0 as u32, 0, cap])
    }

    /// Scribbles over every shared word a peer could touch: control block,
    /// reader and writer tables, slot metadata (stamp, pending, len). Writes
    /// the whole image in one `pwrite`.
    fn scribble(&mut self, seg: &Seg, image: &mut [u8]) {
        let n = u64::from(self.g.slot_count);
        let base = CONTROL as usize;
        let put = |image: &mut [u8], off: u64, v: &[u8]| {
            let o = off as usize - base;
            image[o..o + v.len()].copy_from_slice(v);
        };
        // Near zero, near 2^40, or about to wrap around.
        let origin = self.rng.pick(&[0, 1 << 40, u64::MAX - 2 * n]);
        let write_seq = if self.corrupt() { self.rng.next() } else { origin.wrapping_add(self.rng.below(4 * n)) };
        put(image, WRITE_SEQ, &write_seq.to_le_bytes());
        let active = (1u64 << self.g.max_readers) - 1;
        let registered = if self.corrupt() { self.mask() } else { active & self.rng.next() | 1 };
        put(image, REGISTERED, &registered.to_le_bytes());
        for off in [DATA_GEN, SPACE_GEN] {
            let generation = self.rng.next() as u32;
            put(image, off, &generation.to_le_bytes());
            let waiters = if self.corrupt() { self.rng.pick(&[1u32, 2, u32::MAX]) } else { 0 };
            put(image, off + 4, &waiters.to_le_bytes());
        }
        for r in 0..self.g.max_readers {
            let e = self.g.reader(r);
            let state = if self.corrupt() { self.rng.pick(&[0u32, 2, 0x100, u32::MAX]) } else { 1 };
            put(image, e, &state.to_le_bytes());
            let cursor = if self.corrupt() { self.seq_near(write_seq) } else { write_seq.wrapping_sub(self.rng.below(n + 1)) };
            put(image, e + 8, &cursor.to_le_bytes());
            let pinned = match (self.corrupt(), self.rng.below(2)) {
                (false, _) => 0,
                // A plausible name of a slot: `seq << 2 | 1` (named) or `| 3` (held).
                (true, 0) => (self.seq_near(write_seq) << 2) | self.rng.pick(&[1, 3]),
                (true, _) => self.rng.next(),
            };
            put(image, e + 16, &pinned.to_le_bytes());
            let counters = [self.rng.next(), self.rng.pick(&[0, u64::MAX])];
            put(image, e + 24, &counters[0].to_le_bytes());
            put(image, e + 32, &counters[1].to_le_bytes());
        }
        for w in 0..self.g.max_writers {
            let e = self.g.reader(self.g.max_readers + w);
            let state = self.rng.pick(&[0u32, 1, u32::MAX]);
            put(image, e, &state.to_le_bytes());
        }
        for k in 0..n {
            // The slot of `write_seq - n + k` holds it: finished, in flight or skipped.
            let seq = write_seq.wrapping_sub(n).wrapping_add(k);
            let s = self.g.slot((seq % n) as u32);
            let st = if self.corrupt() {
                match self.rng.below(3) {
                    0 => self.rng.next(),
                    // state 3 does not exist; pins up to the saturated 255
                    _ => stamp(self.seq_near(write_seq), self.rng.below(4), self.rng.pick(&[0, 1, 254, 255, self.rng.0 & 0xff])),
                }
            } else {
                stamp(seq, self.rng.pick(&[1, 1, 1, 2, 0]), 0)
            };
            put(image, s, &st.to_le_bytes());
            let pending = if self.corrupt() { self.mask() } else { registered & self.rng.next() };
            put(image, s + 8, &pending.to_le_bytes());
            let len = if self.corrupt() { self.bad_len() } else { self.rng.below(u64::from(self.g.capacity) + 1) as u32 };
            put(image, s + 16, &len.to_le_bytes());
        }
        seg.0.write_all_at(image, CONTROL).unwrap();
    }
}

/// What the watchdog sees: operations done, and the one running now.
struct Progress {
    ops: AtomicU64,
    current: Mutex<&'static str>,
    done: AtomicBool,
    /// Outcomes, to show the garbage reaches past the first check:
    /// reservations, samples handed out, bytes read in place, Corrupt errors.
    reserved: AtomicU64,
    samples: AtomicU64,
    read_in_place: AtomicU64,
    corrupt: AtomicU64,
}

impl Progress {
    fn at(&self, op: &'static str) {
        *self.current.lock().unwrap() = op;
        self.ops.fetch_add(1, Ordering::Relaxed);
    }
    fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Calls every read and write operation, from two handles, checking that
/// each result is an error of a documented kind or a valid value.
fn exercise(a: &PosixSlotAllocator, b: &PosixSlotAllocator, rng: &mut Rng, p: &Progress, concurrent: bool) {
    let n = a.slot_count() as u32;
    let cap = a.slot_capacity();
    let max_r = a.info().max_readers as u8;
    let valid_handle = |h: SlotHandle| {
        assert!(h.slot_index < n && u64::from(h.slot_index) == h.seq % u64::from(n), "invalid handle {h:?}");
    };
    let reader_ids = [0u8, 1, max_r - 1, max_r, 63, 64, 255, rng.next() as u8];
    for ring in [a, b] {
        // Writing.
        p.at("reserve_slot");
        match ring.reserve_slot(rng.pick(&[ALL_READERS, 0, 1, rng.0])) {
            Ok(h) => {
                p.count(&p.reserved);
                valid_handle(h);
                p.at("slot_data_ptr");
                match ring.slot_data_ptr(h) {
                    Ok((ptr, len)) => {
                        assert_eq!(len, cap);
                        // SAFETY: the loan owns `len` writable bytes at `ptr`
                        // (if the library is right; if not, this is the
                        // out-of-bounds write the test exists to catch).
                        unsafe { std::ptr::write_bytes(ptr, 0xa5, len) };
                    }
                    // Only a concurrent scribbler can take a fresh loan away.
                    Err(SlotError::NotLoaned { .. }) if concurrent => {}
                    Err(e) => panic!("slot_data_ptr of a fresh loan: {e:?}"),
                }
                p.at("commit/discard");
                match rng.below(4) {
                    0 => assert!(matches!(ring.discard_slot(h), Ok(()) | Err(SlotError::NotLoaned { .. }))),
                    1 => assert!(matches!(
                        ring.commit_in_place(h, rng.pick(&[0, 1, cap, cap + 1])),
                        Ok(_) | Err(SlotError::NotLoaned { .. } | SlotError::SampleTooLarge { .. })
                    )),
                    _ => assert!(matches!(ring.commit_slot(h, &[7u8; 9][..rng.below(10) as usize]), Ok(_) | Err(SlotError::NotLoaned { .. }))),
                }
            }
            Err(SlotError::Corrupt { .. }) => p.count(&p.corrupt),
            // A scribbled writer table can look full of live writers.
            Err(SlotError::NoFreeSlot | SlotError::WritersFull { .. }) => {}
            Err(e) => panic!("reserve_slot: unexpected {e:?}"),
        }
        p.at("reserve_slot_timeout");
        match ring.reserve_slot_timeout(ALL_READERS, Duration::from_micros(300)) {
            Ok(h) => {
                valid_handle(h);
                let _ = ring.commit_slot(h, b"garbage test");
            }
            Err(SlotError::NoFreeSlot | SlotError::Corrupt { .. } | SlotError::TimedOut(_) | SlotError::WritersFull { .. }) => {}
            Err(e) => panic!("reserve_slot_timeout: unexpected {e:?}"),
        }
        p.at("Loan");
        if let Ok(mut loan) = Loan::new(ring) {
            let s = loan.as_mut_slice();
            assert_eq!(s.len(), cap);
            s.fill(0x5a);
            let _ = loan.commit(rng.pick(&[0, 3, cap, cap + 1]));
        }
        // Forged handles.
        let forged = SlotHandle { slot_index: rng.pick(&[0, n - 1, n, u32::MAX, rng.0 as u32]), seq: rng.pick(&[0, u64::MAX, rng.0]) };
        p.at("forged handle");
        if let Ok((_, len)) = ring.slot_data_ptr(forged) {
            assert_eq!(len, cap);
        }
        let _ = ring.commit_slot(forged, b"forged");
        let _ = ring.commit_in_place(forged, 1);
        let _ = ring.discard_slot(forged);
        if let Ok((ptr, len)) = ring.slot_read_ptr(forged) {
            assert!(len <= cap);
            // SAFETY: bounded by the capacity; reading garbage bytes is fine.
            let _ = unsafe { std::slice::from_raw_parts(ptr, len) }.iter().map(|&x| u64::from(x)).sum::<u64>();
        }
        if let Ok((hdr, bytes)) = ring.read_slot(forged) {
            assert!(bytes.len() <= cap && hdr.sample_size as usize == bytes.len());
        }
        let _ = ring.mark_read(forged, rng.pick(&reader_ids));

        // Reading.
        for &r in &reader_ids {
            p.at("next_unread_slot");
            match ring.next_unread_slot(r) {
                Ok(Some(h)) => {
                    p.count(&p.samples);
                    valid_handle(h);
                    p.at("slot_read_ptr");
                    match ring.slot_read_ptr(h) {
                        Ok((ptr, len)) => {
                            p.count(&p.read_in_place);
                            assert!(len <= cap, "slot_read_ptr gave {len} > {cap}");
                            // SAFETY: the library says `len` bytes are readable there.
                            let _ = unsafe { std::slice::from_raw_parts(ptr, len) }.iter().map(|&x| u64::from(x)).sum::<u64>();
                        }
                        Err(SlotError::Corrupt { .. } | SlotError::OutOfBounds { .. }) => p.count(&p.corrupt),
                        Err(e) => panic!("slot_read_ptr: unexpected {e:?}"),
                    }
                    p.at("read_slot");
                    if let Ok((hdr, bytes)) = ring.read_slot(h) {
                        assert!(bytes.len() <= cap);
                        assert_eq!((hdr.sequence_number, hdr.sample_size as usize), (h.seq, bytes.len()));
                    }
                    p.at("mark_read");
                    assert!(matches!(ring.mark_read(h, r), Ok(()) | Err(SlotError::NotHeld { .. } | SlotError::ReaderNotRegistered(_))));
                }
                Err(SlotError::Corrupt { .. }) => p.count(&p.corrupt),
                Ok(None) | Err(SlotError::ReaderNotRegistered(_)) => {}
                Err(e) => panic!("next_unread_slot({r}): unexpected {e:?}"),
            }
        }
        p.at("next_unread_slot_timeout");
        let r = rng.pick(&reader_ids);
        match ring.next_unread_slot_timeout(r, Duration::from_micros(300)) {
            Ok(Some(h)) => {
                valid_handle(h);
                let _ = ring.mark_read(h, r);
            }
            Ok(None) | Err(SlotError::Corrupt { .. } | SlotError::ReaderNotRegistered(_)) => {}
            Err(e) => panic!("next_unread_slot_timeout: unexpected {e:?}"),
        }
        p.at("notify");
        let generation = ring.notify_generation();
        ring.wait_for_change(rng.pick(&[generation, generation.wrapping_sub(1), rng.0]), Duration::from_micros(200));
        ring.wait_for_space(Duration::from_micros(200), &mut || true);

        // Reader table.
        p.at("reader table");
        let r = rng.pick(&reader_ids);
        if let Ok(st) = ring.reader_stats(r) {
            let _ = st;
        }
        match rng.below(6) {
            0 => {
                let _ = ring.mark_reader_disconnected(r);
            }
            1 => {
                let _ = ring.unregister_reader(r);
            }
            2 => match ring.register_reader() {
                Ok(i) => assert!(i < max_r),
                Err(SlotError::ReadersFull { .. }) => {}
                Err(e) => panic!("register_reader: unexpected {e:?}"),
            },
            3 => {
                p.at("Reader");
                if let Ok(mut reader) = Reader::new(ring) {
                    for _ in 0..4 {
                        match reader.try_recv() {
                            Ok(Some(sample)) => assert!(sample.len() <= cap),
                            Ok(None) | Err(SlotError::Corrupt { .. } | SlotError::OutOfBounds { .. } | SlotError::ReaderNotRegistered(_)) => {}
                            Err(e) => panic!("try_recv: unexpected {e:?}"),
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn hostile(policy: OverflowPolicy, seed: u64, rounds: u32, concurrent: bool) {
    let dir = TestDir::new("garbage");
    let flink = dir.flink("seg");
    let progress = Arc::new(Progress {
        ops: AtomicU64::new(0),
        current: Mutex::new("start"),
        done: AtomicBool::new(false),
        reserved: AtomicU64::new(0),
        samples: AtomicU64::new(0),
        read_in_place: AtomicU64::new(0),
        corrupt: AtomicU64::new(0),
    });
    let worker = {
        let (progress, flink) = (progress.clone(), flink.clone());
        std::thread::spawn(move || {
            let a = PosixSlotAllocator::builder(8, 48)
                .overflow_policy(policy)
                .max_readers(4)
                .max_writers(2)
                .spin_budget(Duration::from_micros(20))
                .create(&flink)
                .unwrap();
            let b = PosixSlotAllocator::attach(&flink).unwrap();
            let g = Geo::of(&a);
            let seg = Seg::open(&a);
            let mut image = vec![0u8; (g.slots() - CONTROL + u64::from(g.slot_count) * g.stride()) as usize];
            seg.0.read_exact_at(&mut image, CONTROL).unwrap();
            let mut garbage = Garbage { rng: Rng(seed), g };
            let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
            // A second hostile peer that keeps scribbling while we operate.
            let stop = Arc::new(AtomicBool::new(false));
            let scribbler = concurrent.then(|| {
                let (stop, seg, mut image) = (stop.clone(), Seg::open(&a), image.clone());
                let mut garbage = Garbage { rng: Rng(seed.rotate_left(17) | 1), g };
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        garbage.scribble(&seg, &mut image);
                        std::thread::sleep(Duration::from_micros(50));
                    }
                })
            });
            for round in 0..rounds {
                if !concurrent || round % 16 == 0 {
                    garbage.scribble(&seg, &mut image);
                }
                exercise(&a, &b, &mut rng, &progress, concurrent);
            }
            stop.store(true, Ordering::Relaxed);
            if let Some(s) = scribbler {
                s.join().unwrap();
            }
            let path = a.segment_path();
            drop((b, seg, a));
            assert_unlinked(&path);
            progress.done.store(true, Ordering::Relaxed);
        })
    };
    // Watchdog: every operation is bounded; no progress for 10 s is a hang.
    let mut last = (0, Instant::now());
    while !progress.done.load(Ordering::Relaxed) && !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        let ops = progress.ops.load(Ordering::Relaxed);
        if ops != last.0 {
            last = (ops, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            let op = *progress.current.lock().unwrap();
            panic!("{policy:?} seed {seed:#x}: `{op}` hangs on a scribbled segment (no progress for 10 s after {ops} operations)");
        }
    }
    if let Err(e) = worker.join() {
        eprintln!("{policy:?} seed {seed:#x}: panicked during `{}`", progress.current.lock().unwrap());
        std::panic::resume_unwind(e);
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (reserved, samples, read, corrupt) = (get(&progress.reserved), get(&progress.samples), get(&progress.read_in_place), get(&progress.corrupt));
    eprintln!("{policy:?} seed {seed:#x}: {} operations; {reserved} reservations, {samples} samples handed out, {read} read in place, {corrupt} Corrupt errors", get(&progress.ops));
    // The garbage must get past the first checks, or the test proves little.
    assert!(reserved > rounds as u64 / 10 && samples > rounds as u64 / 10 && read > 0 && corrupt > rounds as u64 / 10, "garbage too easy to reject: {reserved} {samples} {read} {corrupt}");
}

#[test]
fn hostile_garbage_keep_all() {
    hostile(OverflowPolicy::KeepAll, 0x5eed_0001, 1500, false);
}

#[test]
fn hostile_garbage_drop_oldest() {
    hostile(OverflowPolicy::DropOldest, 0x5eed_0002, 1500, false);
}

#[test]
fn hostile_garbage_concurrent_scribbler() {
    hostile(OverflowPolicy::KeepAll, 0x5eed_0003, 600, true);
    hostile(OverflowPolicy::DropOldest, 0x5eed_0004, 600, true);
}
