//! One lifecycle suite, written once over [`Kind`], run on slot rings and
//! blackboards alike: create and attach, leaving, the last one out, leak
//! and own, reclaiming stale segments (made by child processes that exit
//! or are killed without removing what they made), and the modes of the
//! flink file and the shared-memory object.
//!
//! Child processes re-exec this binary (`child_process_entry`, role in
//! `SHMSLOT_LC_ROLE`), as `tests/ownership.rs` and `tests/crash.rs` do; they
//! die with the parent. Every test works in its own discovery directory
//! and removes every flink file and object it (or its children) made, also
//! when it fails ([`Residue`]).

mod common;

use std::cell::RefCell;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::family::{child_env, say, Family};
use common::{assert_unlinked, assert_unsafe, child_command, must_fail, TestDir};
use shmslot::blackboard::{Blackboard, BlackboardBuilder, BlackboardError};
use shmslot::discovery::{self, CleanOutcome, SegmentKind, SegmentState};
use shmslot::{type_hash, Loan, OpenError, Pod, PosixSlotAllocator, Reader};

const CHILD_TEST: &str = "child_process_entry";
const ROLE: &str = "SHMSLOT_LC_ROLE";
const KIND: &str = "SHMSLOT_LC_KIND";
const DIR: &str = "SHMSLOT_LC_DIR";
const NAME: &str = "SHMSLOT_LC_NAME";
const STALL: Duration = Duration::from_secs(60);

// ───────────────────────────── the kinds ─────────────────────────────

/// What the suite needs of a kind of segment.
trait Kind: Sized {
    /// For the child's environment.
    const NAME: &'static str;
    /// What its flink file says it is.
    const SEGMENT_KIND: SegmentKind;
    /// Creates `name` in `dir`; the handle owns it (its drop removes it).
    fn create(dir: &Path, name: &str) -> Result<Self, OpenError>;
    /// Creates `name` in `dir` owned by all its participants (the last
    /// handle out removes it, the creator's too), if the kind can.
    fn create_shared(dir: &Path, name: &str) -> Option<Result<Self, OpenError>>;
    fn attach(dir: &Path, name: &str) -> Result<Self, OpenError>;
    fn leak(&mut self);
    fn own(&mut self);
    fn is_owner(&self) -> bool;
    fn segment_path(&self) -> PathBuf;
    fn flink_path(&self) -> PathBuf;
    /// Writes a value through `writer` that `reader` must then see: proves
    /// both handles map the same live segment.
    fn roundtrip(writer: &Self, reader: &Self, tag: u64);
}

fn ring_builder() -> shmslot::PosixSlotAllocatorBuilder {
    PosixSlotAllocator::builder(4, 64)
}

impl Kind for PosixSlotAllocator {
    const NAME: &'static str = "ring";
    const SEGMENT_KIND: SegmentKind = SegmentKind::Ring;
    fn create(dir: &Path, name: &str) -> Result<Self, OpenError> {
        ring_builder().discovery_dir(dir).create(name)
    }
    fn create_shared(dir: &Path, name: &str) -> Option<Result<Self, OpenError>> {
        Some(ring_builder().remove_on_drop(false).discovery_dir(dir).create(name))
    }
    fn attach(dir: &Path, name: &str) -> Result<Self, OpenError> {
        PosixSlotAllocator::attach_in(name, Some(dir))
    }
    fn leak(&mut self) {
        PosixSlotAllocator::leak(self).expect("leak");
    }
    fn own(&mut self) {
        PosixSlotAllocator::own(self).expect("own");
    }
    fn is_owner(&self) -> bool {
        PosixSlotAllocator::is_owner(self)
    }
    fn segment_path(&self) -> PathBuf {
        PosixSlotAllocator::segment_path(self)
    }
    fn flink_path(&self) -> PathBuf {
        PosixSlotAllocator::flink_path(self).to_owned()
    }
    fn roundtrip(writer: &Self, reader: &Self, tag: u64) {
        let mut r = Reader::new(reader).expect("register a reader");
        let mut loan = Loan::new(writer).expect("loan");
        loan.as_mut_slice()[..8].copy_from_slice(&tag.to_le_bytes());
        loan.commit(8).expect("commit");
        let s = r.recv_timeout(Duration::from_secs(5)).expect("recv").expect("the sample");
        assert_eq!(&s[..], &tag.to_le_bytes()[..]);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
struct Key(u32);
// SAFETY: a u32, no padding; any bits are valid.
unsafe impl Pod for Key {
    const TYPE_HASH: [u8; 16] = type_hash("lifecycle::Key", 4, 4);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
struct Val(u64);
// SAFETY: a u64; any bits are valid.
unsafe impl Pod for Val {
    const TYPE_HASH: [u8; 16] = type_hash("lifecycle::Val", 8, 8);
}

type Board = Blackboard<Key>;

/// A board's open errors are `BlackboardError::Open`: anything else is a
/// test failure.
fn open_err<T>(r: Result<T, BlackboardError>) -> Result<T, OpenError> {
    r.map_err(|e| match e {
        BlackboardError::Open(e) => e,
        other => panic!("expected BlackboardError::Open, got {other:?} ({other})"),
    })
}

impl Kind for Board {
    const NAME: &'static str = "board";
    const SEGMENT_KIND: SegmentKind = SegmentKind::Blackboard;
    fn create(dir: &Path, name: &str) -> Result<Self, OpenError> {
        let b = BlackboardBuilder::<Key>::new().entry(Key(1), Val(0)).unwrap().entry(Key(2), Val(0)).unwrap();
        open_err(b.discovery_dir(dir).create(name))
    }
    fn create_shared(_: &Path, _: &str) -> Option<Result<Self, OpenError>> {
        // A board's creator always removes it when it goes; only attachers
        // leave "last one out" (after the creator's process died).
        None
    }
    fn attach(dir: &Path, name: &str) -> Result<Self, OpenError> {
        open_err(Blackboard::<Key>::attach_in(name, Some(dir)))
    }
    fn leak(&mut self) {
        Blackboard::leak(self).expect("leak");
    }
    fn own(&mut self) {
        Blackboard::own(self).expect("own");
    }
    fn is_owner(&self) -> bool {
        Blackboard::is_owner(self)
    }
    fn segment_path(&self) -> PathBuf {
        Blackboard::segment_path(self)
    }
    fn flink_path(&self) -> PathBuf {
        Blackboard::flink_path(self).to_owned()
    }
    fn roundtrip(writer: &Self, reader: &Self, tag: u64) {
        let r = reader.entry_reader::<Val>(&Key(1)).expect("entry reader");
        let mut w = writer.entry_writer::<Val>(&Key(1)).expect("entry writer");
        let v = w.update_with_copy(&Val(tag));
        assert_eq!(r.get_with_version().expect("get"), (Val(tag), v));
    }
}

// ───────────────────────────── helpers ─────────────────────────────

/// The objects a test made (or its children made): those recorded, and
/// those named by the flink files still in the test's directory (a child
/// may have made one the test never heard of). Whatever still exists when
/// it drops is removed; if the test did not fail otherwise, that is a
/// failure too (something was left behind). Bind it after the `TestDir`
/// and before the handles, so it drops after them and before the
/// directory.
struct Residue {
    dir: PathBuf,
    objects: RefCell<Vec<PathBuf>>,
}

impl Residue {
    fn new(dir: &TestDir) -> Self {
        Self { dir: dir.path().to_owned(), objects: RefCell::new(Vec::new()) }
    }
    /// Records `p` (an object path) and returns it.
    fn add(&self, p: PathBuf) -> PathBuf {
        self.objects.borrow_mut().push(p.clone());
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(p.parent() == Some(Path::new("/dev/shm")) && name.starts_with("shmslot."), "not an object path: {}", p.display());
        p
    }
}

impl Drop for Residue {
    fn drop(&mut self) {
        let mut all = self.objects.borrow().clone();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if let Ok(info) = discovery::read_flink(&e.path()) {
                all.push(PathBuf::from(format!("/dev/shm{}", info.segment_name)));
            }
        }
        all.sort();
        all.dedup();
        let left: Vec<_> = all.into_iter().filter(|p| p.exists()).collect();
        for p in &left {
            let _ = std::fs::remove_file(p);
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "shared-memory objects left behind: {left:?}");
        }
    }
}

/// Mode bits of `path` (not followed).
fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    assert_eq!(mode_of(path), mode);
}

#[track_caller]
fn assert_gone(flink: &Path, segment: &Path) {
    assert!(!flink.exists(), "flink file {} left behind", flink.display());
    assert_unlinked(segment);
}

#[track_caller]
fn assert_present(flink: &Path, segment: &Path, what: &str) {
    assert!(flink.exists(), "{what}: flink file {} was removed", flink.display());
    assert!(segment.exists(), "{what}: object {} was removed", segment.display());
}

// ───────────────────────────── child side ─────────────────────────────

/// Plays a child process when `SHMSLOT_LC_ROLE` is set; otherwise a no-op.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    match child_env(KIND).as_str() {
        "ring" => child::<PosixSlotAllocator>(&role),
        "board" => child::<Board>(&role),
        other => panic!("child: unknown kind {other}"),
    }
}

fn child<K: Kind>(role: &str) {
    let dir = PathBuf::from(child_env(DIR));
    let name = child_env(NAME);
    let seg = K::create(&dir, &name).expect("child: create");
    say(&format!("SHMSLOT-READY {}", seg.segment_path().display()));
    match role {
        // Held until the parent kills this process (SIGKILL).
        "hold" => {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            panic!("child: the parent went away without killing the creator");
        }
        // Exits without removing it: no drop runs.
        "forget" => {
            say(&format!("SHMSLOT-RESULT segment={}", seg.segment_path().display()));
            std::mem::forget(seg);
            std::process::exit(0);
        }
        other => panic!("child: unknown role {other}"),
    }
}

fn child_cmd<K: Kind>(role: &str, dir: &TestDir, name: &str) -> std::process::Command {
    let mut cmd = child_command(CHILD_TEST);
    cmd.env(ROLE, role).env(KIND, K::NAME).env(DIR, dir.path()).env(NAME, name);
    cmd
}

/// A child creates `name` and exits without removing it (its handle
/// forgotten, `process::exit`). Returns the object it left.
fn stale_by_exit<K: Kind>(dir: &TestDir, name: &str, residue: &Residue) -> PathBuf {
    // Its own family, waited for as a whole: the child exits right after
    // it is ready, and `wait_ready` may see it gone before its line.
    let mut fam = Family::new();
    fam.spawn(&format!("{name}-creator"), child_cmd::<K>("forget", dir, name));
    let results = fam.wait_all(Instant::now() + STALL, "the creator did not exit");
    residue.add(PathBuf::from(&results[0]["segment"]))
}

/// A child creates `name` and holds it; returns the child's id and the
/// object. The caller kills it (SIGKILL) when it wants the creator dead.
fn held_by_child<K: Kind>(fam: &mut Family, dir: &TestDir, name: &str, residue: &Residue) -> (usize, PathBuf) {
    let c = fam.spawn(&format!("{name}-creator"), child_cmd::<K>("hold", dir, name));
    let seg = residue.add(PathBuf::from(fam.wait_ready(c, STALL)));
    (c, seg)
}

// ───────────────────────────── cases ─────────────────────────────

/// The attacher maps the creator's segment; inspect shows it live, with its
/// creator alive and someone attached; the name is taken meanwhile.
fn create_then_attach<K: Kind>() {
    let dir = TestDir::new(&format!("lc-attach-{}", K::NAME));
    let residue = Residue::new(&dir);
    let creator = K::create(dir.path(), "seg").expect("create");
    let seg = residue.add(creator.segment_path());
    let flink = dir.flink("seg");
    assert_eq!(creator.flink_path(), flink);
    assert!(seg.exists(), "no object at {}", seg.display());
    assert!(creator.is_owner());

    let attacher = K::attach(dir.path(), "seg").expect("attach");
    assert_eq!(attacher.segment_path(), seg, "the attacher maps another object");
    assert_eq!(attacher.flink_path(), flink);
    assert!(!attacher.is_owner());
    K::roundtrip(&creator, &attacher, 0x1234);
    K::roundtrip(&attacher, &creator, 0x5678);

    let st = discovery::inspect(&flink).expect("inspect");
    assert_eq!(st.state, SegmentState::Live, "{st:?}");
    assert_eq!(st.kind, K::SEGMENT_KIND);
    assert_eq!(st.segment_path, seg);
    assert!(st.creator_alive && st.attached && !st.leaked, "{st:?}");
    let listed = discovery::scan(dir.path()).expect("scan");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, flink);
    assert_eq!(listed[0].status.as_ref().expect("scan status").state, SegmentState::Live);
    assert_eq!(discovery::read_flink(&flink).unwrap().kind, K::SEGMENT_KIND);

    match K::create(dir.path(), "seg") {
        Err(OpenError::InUse { path, creator_pid }) => assert_eq!((path, creator_pid), (flink.clone(), std::process::id())),
        Err(e) => panic!("create over a live segment: {e:?}"),
        Ok(_) => panic!("create over a live segment succeeded"),
    }
    assert_eq!(discovery::clean(dir.path(), false, true).unwrap().len(), 1);
    assert_present(&flink, &seg, "clean of a live segment");
    drop(attacher);
    drop(creator);
    assert_gone(&flink, &seg);
}

/// An attacher dropping leaves the segment; the creator dropping removes
/// flink file and object, even with another handle still attached (whose
/// mapping stays usable until it goes).
fn leave<K: Kind>() {
    let dir = TestDir::new(&format!("lc-leave-{}", K::NAME));
    let residue = Residue::new(&dir);
    let creator = K::create(dir.path(), "seg").expect("create");
    let seg = residue.add(creator.segment_path());
    let flink = creator.flink_path();
    for _ in 0..3 {
        let attacher = K::attach(dir.path(), "seg").expect("attach");
        K::roundtrip(&attacher, &creator, 7);
        drop(attacher);
        assert_present(&flink, &seg, "an attacher left");
        let st = discovery::inspect(&flink).unwrap();
        assert_eq!(st.state, SegmentState::Live);
        assert!(st.creator_alive);
    }
    let stays = K::attach(dir.path(), "seg").expect("attach");
    drop(creator);
    assert_gone(&flink, &seg);
    K::roundtrip(&stays, &stays, 9);
    match K::attach(dir.path(), "seg") {
        Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(OpenError::BeingRemoved { .. }) => {}
        Err(e) => panic!("attach after the creator left: {e:?}"),
        Ok(_) => panic!("attach after the creator left succeeded"),
    }
    drop(stays);
    assert_gone(&flink, &seg);
}

/// The last handle out removes the segment: of one created for shared
/// ownership (if the kind has it), whoever leaves last, the creator first;
/// and of one whose creator's process died (SIGKILL), its last attacher.
fn last_one_out<K: Kind>() {
    let dir = TestDir::new(&format!("lc-last-{}", K::NAME));
    let residue = Residue::new(&dir);
    if let Some(shared) = K::create_shared(dir.path(), "shared") {
        let shared = shared.expect("create shared");
        let seg = residue.add(shared.segment_path());
        let flink = shared.flink_path();
        assert!(!shared.is_owner());
        let a = K::attach(dir.path(), "shared").unwrap();
        let b = K::attach(dir.path(), "shared").unwrap();
        drop(shared);
        assert_present(&flink, &seg, "the creator of a shared segment left first");
        let st = discovery::inspect(&flink).unwrap();
        assert_eq!(st.state, SegmentState::Live, "{st:?}");
        K::roundtrip(&a, &b, 11);
        drop(a);
        assert_present(&flink, &seg, "the second to last left");
        drop(b);
        assert_gone(&flink, &seg);
    } else {
        // The kind has no shared ownership: its creator's drop removes it.
        let creator = K::create(dir.path(), "shared").unwrap();
        let seg = residue.add(creator.segment_path());
        let a = K::attach(dir.path(), "shared").unwrap();
        drop(creator);
        assert_gone(&dir.flink("shared"), &seg);
        drop(a);
    }

    let mut fam = Family::new();
    let (c, seg) = held_by_child::<K>(&mut fam, &dir, "orphaned", &residue);
    let flink = dir.flink("orphaned");
    let a = K::attach(dir.path(), "orphaned").expect("attach to the child's segment");
    let b = K::attach(dir.path(), "orphaned").expect("attach to the child's segment");
    assert_eq!(a.segment_path(), seg);
    assert!(discovery::inspect(&flink).unwrap().creator_alive);
    fam.kill(c);
    let st = discovery::inspect(&flink).unwrap();
    assert_eq!((st.state, st.creator_alive, st.attached), (SegmentState::Live, false, true), "{st:?}");
    K::roundtrip(&a, &b, 12);
    drop(a);
    assert_present(&flink, &seg, "an attacher left while another was attached");
    drop(b);
    assert_gone(&flink, &seg);
}

/// A leaked segment survives every handle; neither `clean` without leaked
/// nor a new `create` removes it; it is attached again, and an attacher
/// that `own`s it removes it when it goes.
fn leak_and_own<K: Kind>() {
    let dir = TestDir::new(&format!("lc-leak-{}", K::NAME));
    let residue = Residue::new(&dir);
    let mut creator = K::create(dir.path(), "kept").unwrap();
    let seg = residue.add(creator.segment_path());
    let flink = creator.flink_path();
    let attacher = K::attach(dir.path(), "kept").unwrap();
    creator.leak();
    assert!(discovery::read_flink(&flink).unwrap().leaked);
    drop(attacher);
    drop(creator);
    assert_present(&flink, &seg, "every handle of a leaked segment dropped");
    let st = discovery::inspect(&flink).unwrap();
    assert_eq!(st.state, SegmentState::Leaked, "{st:?}");
    assert!(st.leaked && !st.creator_alive && !st.attached, "{st:?}");

    let cleaned = discovery::clean(dir.path(), false, false).unwrap();
    assert_eq!(cleaned.len(), 1);
    assert!(matches!(cleaned[0].outcome, Ok(CleanOutcome::Leaked)), "{cleaned:?}");
    assert_present(&flink, &seg, "clean without leaked");
    match K::create(dir.path(), "kept") {
        Err(OpenError::Leaked { path }) => assert_eq!(path, flink),
        Err(e) => panic!("create over a leaked segment: {e:?}"),
        Ok(_) => panic!("create over a leaked segment succeeded"),
    }
    assert_present(&flink, &seg, "create over a leaked segment");

    // Attached again, used, left: still leaked.
    let again = K::attach(dir.path(), "kept").expect("attach to a leaked segment");
    assert_eq!(again.segment_path(), seg);
    K::roundtrip(&again, &again, 21);
    assert_eq!(discovery::inspect(&flink).unwrap().state, SegmentState::Live);
    drop(again);
    assert_present(&flink, &seg, "the last attacher of a leaked segment left");
    assert_eq!(discovery::inspect(&flink).unwrap().state, SegmentState::Leaked);

    let mut owner = K::attach(dir.path(), "kept").unwrap();
    assert!(!owner.is_owner());
    owner.own();
    assert!(owner.is_owner());
    let st = discovery::inspect(&flink).unwrap();
    assert!(!st.leaked && st.state == SegmentState::Live, "{st:?}");
    let other = K::attach(dir.path(), "kept").unwrap();
    drop(owner);
    assert_gone(&flink, &seg);
    drop(other);
    assert_gone(&flink, &seg);
}

/// A child creates a segment and exits without removing it: inspect says
/// stale, and a new `create` of the same path reclaims it. A second one
/// (its creator killed this time) is removed by `clean`, which leaves a
/// live one next to it alone.
fn reclaim_stale<K: Kind>() {
    let dir = TestDir::new(&format!("lc-stale-{}", K::NAME));
    let residue = Residue::new(&dir);
    let flink = dir.flink("stale");
    let seg = stale_by_exit::<K>(&dir, "stale", &residue);
    assert_present(&flink, &seg, "the creator exited without removing it");
    let st = discovery::inspect(&flink).unwrap();
    assert_eq!(st.state, SegmentState::Stale, "{st:?}");
    assert!(!st.creator_alive && !st.attached && !st.leaked, "{st:?}");
    assert_eq!(st.segment_path, seg);

    let fresh = K::create(dir.path(), "stale").expect("create over a stale segment");
    let fresh_seg = residue.add(fresh.segment_path());
    assert_unlinked(&seg);
    assert_ne!(fresh_seg, seg);
    let st = discovery::inspect(&flink).unwrap();
    assert_eq!((st.state, st.creator_alive), (SegmentState::Live, true), "{st:?}");
    assert_eq!(st.segment_path, fresh_seg);
    drop(fresh);
    assert_gone(&flink, &fresh_seg);

    let mut fam = Family::new();
    let (c, seg2) = held_by_child::<K>(&mut fam, &dir, "stale2", &residue);
    let flink2 = dir.flink("stale2");
    fam.kill(c);
    assert_eq!(discovery::inspect(&flink2).unwrap().state, SegmentState::Stale);
    let live = K::create(dir.path(), "live").unwrap();
    let live_seg = residue.add(live.segment_path());
    let dry = discovery::clean(dir.path(), true, false).unwrap();
    assert_eq!(dry.len(), 2, "{dry:?}");
    assert_present(&flink2, &seg2, "a dry run");
    let wet = discovery::clean(dir.path(), false, false).unwrap();
    let outcome = |p: &Path| wet.iter().find(|e| e.path == p).unwrap_or_else(|| panic!("clean did not list {}: {wet:?}", p.display())).outcome.as_ref().unwrap().clone();
    let name2 = seg2.strip_prefix("/dev/shm").unwrap().to_str().unwrap();
    assert_eq!(outcome(&flink2), CleanOutcome::Removed { segment_name: format!("/{name2}"), object_existed: true });
    assert_eq!(outcome(&dir.flink("live")), CleanOutcome::Live);
    assert_gone(&flink2, &seg2);
    assert_present(&dir.flink("live"), &live_seg, "clean next to a live segment");
    drop(live);
    assert_gone(&dir.flink("live"), &live_seg);
}

/// Flink file and object are ours and private (0600); a flink file made
/// writable by group or others is refused by attach and inspect.
fn private_modes<K: Kind>() {
    let dir = TestDir::new(&format!("lc-modes-{}", K::NAME));
    let residue = Residue::new(&dir);
    let creator = K::create(dir.path(), "seg").unwrap();
    let seg = residue.add(creator.segment_path());
    let flink = creator.flink_path();
    assert_eq!(mode_of(&flink), 0o600, "flink file {}", flink.display());
    assert_eq!(mode_of(&seg), 0o600, "object {}", seg.display());
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    for p in [&flink, &seg] {
        assert_eq!(std::fs::symlink_metadata(p).unwrap().uid(), euid, "{} is not ours", p.display());
    }
    for mode in [0o620, 0o602] {
        chmod(&flink, mode);
        let why = "the flink file is writable by group or others";
        assert_unsafe(must_fail(K::attach(dir.path(), "seg"), "attach through a loose flink file"), &flink, why);
        assert_unsafe(must_fail(discovery::inspect(&flink), "inspect of a loose flink file"), &flink, why);
    }
    chmod(&flink, 0o600);
    drop(K::attach(dir.path(), "seg").expect("attach once the flink file is 0600 again"));
    drop(creator);
    assert_gone(&flink, &seg);
}

/// An object made writable by group or others is refused on attach (for a
/// board inside `BlackboardError::Open`); at 0600 again it attaches.
fn group_writable_object_is_refused_on_attach<K: Kind>() {
    let dir = TestDir::new(&format!("lc-objattach-{}", K::NAME));
    let residue = Residue::new(&dir);
    let creator = K::create(dir.path(), "seg").unwrap();
    let seg = residue.add(creator.segment_path());
    for mode in [0o660, 0o620, 0o602] {
        chmod(&seg, mode);
        let err = must_fail(K::attach(dir.path(), "seg"), &format!("attach to a {mode:o} object"));
        assert_unsafe(err, &seg, "writable by group or others");
    }
    chmod(&seg, 0o600);
    let a = K::attach(dir.path(), "seg").expect("attach once the object is 0600 again");
    K::roundtrip(&creator, &a, 31);
    drop(a);
    let flink = creator.flink_path();
    drop(creator);
    assert_gone(&flink, &seg);
}

/// `discovery::inspect` refuses an object writable by group or others, as
/// attach does.
fn group_writable_object_is_refused_by_inspect<K: Kind>() {
    let dir = TestDir::new(&format!("lc-objinspect-{}", K::NAME));
    let residue = Residue::new(&dir);
    let creator = K::create(dir.path(), "seg").unwrap();
    let seg = residue.add(creator.segment_path());
    let flink = creator.flink_path();
    assert_eq!(discovery::inspect(&flink).unwrap().state, SegmentState::Live);
    chmod(&seg, 0o660);
    let res = discovery::inspect(&flink);
    // Back to 0600 before asserting: a failure must still clean up.
    chmod(&seg, 0o600);
    match res {
        Err(e) => assert_unsafe(e, &seg, "writable by group or others"),
        Ok(st) => panic!("inspect accepted a group-writable object {}: {st:?}", seg.display()),
    }
    drop(creator);
    assert_gone(&flink, &seg);
}

/// Every case, for both kinds. `#[ring(...)]` adds an attribute to the
/// ring's instantiation only.
macro_rules! suite {
    ($( $(#[ring($($ring_attr:tt)*)])? $case:ident ),* $(,)?) => {
        mod ring {
            $( $(#[$($ring_attr)*])? #[test] fn $case() { super::$case::<shmslot::PosixSlotAllocator>() } )*
        }
        mod blackboard {
            $( #[test] fn $case() { super::$case::<super::Board>() } )*
        }
    };
}

suite!(
    create_then_attach,
    leave,
    last_one_out,
    leak_and_own,
    reclaim_stale,
    private_modes,
    group_writable_object_is_refused_on_attach,
    group_writable_object_is_refused_by_inspect,
);
