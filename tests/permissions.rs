//! Permissions and paths of the discovery directory, flink files and
//! shared-memory objects.
//!
//! * Created with private modes from the first instant: directory 0700, flink
//!   file and `/dev/shm` object 0600, even under `umask 0` (checked in a child
//!   process, because the umask is process-wide and tests run in parallel).
//! * Refused with [`OpenError::Unsafe`] naming the path and the reason: a
//!   foreign-owned flink file, directory or object; a symlinked directory; a
//!   directory writable by others; a discovery "directory" that is a file; a
//!   directory at the flink path.
//! * A link planted at the flink path (symlink, dangling symlink, hard link,
//!   directory) makes `create` fail with [`OpenError::Exists`] instead of
//!   writing through it — also when the link appears while `create` runs.
//!
//! Already covered in `tests/corrupt.rs` and not repeated here: group/other
//! writable flink files, a symlinked flink file, FIFO and directory flink
//! files on attach by full path, oversize flink files, a group-writable
//! discovery directory on attach.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assert_unlinked, assert_unsafe, must_fail, TestDir};
use shmslot::{OpenError, PosixSlotAllocator, PosixSlotAllocatorBuilder};

/// A uid that is not ours (`nobody`).
const FOREIGN_UID: u32 = 65534;

// ───────────────────────────── helpers ─────────────────────────────

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A small ring: 8 slots of 64 bytes, 2 readers, 2 writers.
fn builder() -> PosixSlotAllocatorBuilder {
    PosixSlotAllocator::builder(8, 64).max_readers(2).max_writers(2)
}

/// Asserts `err` is `Exists(path)` and its message names the path.
#[track_caller]
fn assert_exists(err: OpenError, path: &Path) {
    let msg = err.to_string();
    match err {
        OpenError::Exists(p) => assert_eq!(p, path, "error names the wrong path: {msg}"),
        other => panic!("expected Exists for {}, got {other:?} ({other})", path.display()),
    }
    assert!(msg.contains(path.to_str().unwrap()), "message does not name {}: {msg}", path.display());
    assert!(msg.contains("already exists"), "message does not say why: {msg}");
}

/// Permission bits (with setuid/setgid/sticky) of `path` itself (not followed).
fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).mode() & 0o7777
}

/// A private (0700) subdirectory of `dir`.
fn private_subdir(dir: &TestDir, name: &str) -> PathBuf {
    let p = dir.flink(name);
    fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
    p
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// What must not change about a victim file.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    bytes: Vec<u8>,
    mode: u32,
    ino: u64,
    uid: u32,
    mtime: (i64, i64),
}

fn snapshot(path: &Path) -> Snapshot {
    let md = fs::symlink_metadata(path).unwrap();
    assert!(md.is_file(), "{} is no longer a regular file", path.display());
    Snapshot { bytes: fs::read(path).unwrap(), mode: md.mode() & 0o7777, ino: md.ino(), uid: md.uid(), mtime: (md.mtime(), md.mtime_nsec()) }
}

/// A victim file with known contents, mode 0644.
fn victim(dir: &Path) -> PathBuf {
    let p = dir.join("victim");
    fs::write(&p, b"precious contents: must never be overwritten\n").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// Changes the owner of `path` (not following symlinks). `false`, with the
/// reason printed, when this process may not give files away (not root, or
/// a user namespace without `FOREIGN_UID`).
fn give_away(path: &Path, uid: u32) -> bool {
    if euid() != 0 {
        eprintln!("skipped: not root (euid {}), cannot chown {} to another user", euid(), path.display());
        return false;
    }
    match std::os::unix::fs::lchown(path, Some(uid), None) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipped: cannot chown {} to uid {uid}: {e}", path.display());
            false
        }
    }
}

fn take_back(path: &Path) {
    std::os::unix::fs::lchown(path, Some(euid()), None).unwrap();
}

// ───────────────────────────── modes under umask 0 (child process) ─────────────────────────────

const CHILD_TEST: &str = "umask_child_entry";
const ROLE: &str = "SHMSLOT_PERM_CHILD_ROLE";
const DISC_DIR: &str = "SHMSLOT_PERM_CHILD_DIR";
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Plays the child of [`private_modes_under_umask_0`] when `ROLE` is set;
/// otherwise a no-op.
///
/// Sets `umask 0`, creates a ring through a discovery directory that does
/// not exist yet (bare name) and a second one by full path in it, and
/// reports the modes as `PERM-RESULT key=value…`. It asserts them too, and
/// removes everything before exiting.
#[test]
fn umask_child_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    assert_eq!(role, "umask0", "unknown child role");
    let disc = PathBuf::from(std::env::var_os(DISC_DIR).expect("child: discovery dir not set"));
    assert!(fs::symlink_metadata(&disc).is_err(), "child: {} exists already", disc.display());

    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(0) };
    // SAFETY: as above; reads back the mask just set.
    let now = unsafe { libc::umask(0) };
    assert_eq!(now, 0, "child: umask not 0");

    let first = builder().discovery_dir(&disc).create("first").expect("child: create through a new discovery dir");
    assert_eq!(first.flink_path(), disc.join("first"));
    let second = builder().create(disc.join("second")).expect("child: create by full path");

    // Control: a file asking for 0666 gets 0666, so umask 0 is in effect
    // and the private modes below come from the library, not the umask.
    let control = disc.join("control");
    drop(OpenOptions::new().write(true).create_new(true).mode(0o666).open(&control).unwrap());

    let fields = [
        ("dir", mode_of(&disc)),
        ("flink", mode_of(first.flink_path())),
        ("shm", mode_of(&first.segment_path())),
        ("flink2", mode_of(second.flink_path())),
        ("shm2", mode_of(&second.segment_path())),
        ("control", mode_of(&control)),
    ];
    let line: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v:o}")).collect();
    let (seg1, seg2) = (first.segment_path(), second.segment_path());
    println!("PERM-RESULT {} seg1={} seg2={}", line.join(" "), seg1.display(), seg2.display());
    std::io::stdout().flush().unwrap();

    // The owners are ours, too.
    for p in [&disc, first.flink_path(), &seg1, second.flink_path(), &seg2] {
        assert_eq!(fs::symlink_metadata(p).unwrap().uid(), euid(), "child: {} is not ours", p.display());
    }
    for (k, v) in fields {
        let want = match k {
            "dir" => 0o700,
            "control" => 0o666,
            _ => 0o600,
        };
        assert_eq!(v, want, "child: {k} has mode {v:o} under umask 0, want {want:o}");
    }

    fs::remove_file(&control).unwrap();
    drop((first, second));
    assert_unlinked(&seg1);
    assert_unlinked(&seg2);
    fs::remove_dir(&disc).expect("child: discovery dir not empty after the rings were dropped");
    println!("PERM-DONE");
}

/// Runs [`umask_child_entry`] in a child process; returns its stdout lines.
fn run_umask_child(disc: &Path) -> Vec<String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(ROLE, "umask0")
        .env(DISC_DIR, disc)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // an async-signal-safe system call (prctl).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn child process");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let out_reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for child") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let lines = std::mem::take(&mut *lines.lock().unwrap());
    match status {
        Some(st) if st.success() => lines,
        st => panic!("umask child {}:\n── stdout:\n{}\n── stderr:\n{stderr}", st.map_or("timed out".to_owned(), |s| format!("failed: {s}")), lines.join("\n")),
    }
}

/// Issue: "discovery directory 0700, flink file and shm object 0600 from
/// creation, even under umask 0".
#[test]
fn private_modes_under_umask_0() {
    let dir = TestDir::new("umask0");
    let disc = dir.flink("discovery");
    let lines = run_umask_child(&disc);
    let result = lines.iter().find_map(|l| l.find("PERM-RESULT ").map(|p| l[p + 12..].to_owned())).unwrap_or_else(|| panic!("no PERM-RESULT line from the child:\n{}", lines.join("\n")));
    assert!(lines.iter().any(|l| l.contains("PERM-DONE")), "child did not finish:\n{}", lines.join("\n"));
    let field = |k: &str| -> String {
        result.split_whitespace().find_map(|kv| kv.strip_prefix(k).and_then(|r| r.strip_prefix('='))).unwrap_or_else(|| panic!("no {k} in {result:?}")).to_owned()
    };
    assert_eq!(field("control"), "666", "umask 0 was not in effect in the child: {result}");
    assert_eq!(field("dir"), "700", "new discovery directory: {result}");
    assert_eq!(field("flink"), "600", "flink file in the new directory: {result}");
    assert_eq!(field("shm"), "600", "shared-memory object: {result}");
    assert_eq!(field("flink2"), "600", "flink file by full path: {result}");
    assert_eq!(field("shm2"), "600", "second shared-memory object: {result}");
    // The child cleaned up.
    assert!(fs::symlink_metadata(&disc).is_err(), "child left {} behind", disc.display());
    for k in ["seg1", "seg2"] {
        let seg = PathBuf::from(field(k));
        assert!(seg.starts_with("/dev/shm"), "{seg:?}");
        assert_unlinked(&seg);
    }
}

// ───────────────────────────── foreign owners ─────────────────────────────

/// Issue: "a … foreign-owned … flink file … is refused with a clear error".
#[test]
fn foreign_owned_flink_file_is_refused() {
    let dir = TestDir::new("foreignfile");
    let ring = builder().create(dir.flink("good")).unwrap();
    let copy = dir.flink("copy");
    fs::write(&copy, fs::read(ring.flink_path()).unwrap()).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o600)).unwrap();
    // A byte-exact copy of ours attaches: only the owner differs below.
    drop(PosixSlotAllocator::attach(&copy).expect("attach through our own copy"));

    if give_away(&copy, FOREIGN_UID) {
        assert_eq!(fs::symlink_metadata(&copy).unwrap().uid(), FOREIGN_UID);
        assert_unsafe(must_fail(PosixSlotAllocator::attach(&copy), "attach through a foreign flink file"), &copy, "owned by another user");
        assert_unsafe(must_fail(PosixSlotAllocator::attach_in("copy", Some(dir.path())), "attach_in a foreign flink file"), &copy, "owned by another user");
        // Create does not take it over either.
        let before = snapshot(&copy);
        assert_exists(must_fail(builder().create(&copy), "create over a foreign flink file"), &copy);
        assert_eq!(snapshot(&copy), before, "create changed the foreign file");
        // Ours again: attaches (the owner was the only reason).
        take_back(&copy);
        drop(PosixSlotAllocator::attach(&copy).expect("attach once the copy is ours again"));
    }
    fs::remove_file(&copy).unwrap();
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
}

/// Issue: "a … foreign-owned … directory is refused": create and attach,
/// by bare name and by full path; nothing is created in it.
#[test]
fn foreign_owned_discovery_dir_is_refused() {
    let dir = TestDir::new("foreigndir");
    let theirs = private_subdir(&dir, "theirs");
    let ring = builder().create(theirs.join("seg")).unwrap();

    if give_away(&theirs, FOREIGN_UID) {
        let owned = "the directory is owned by another user";
        assert_unsafe(must_fail(builder().discovery_dir(&theirs).create("new"), "create in a foreign dir (bare name)"), &theirs, owned);
        assert_unsafe(must_fail(builder().create(theirs.join("new")), "create in a foreign dir (full path)"), &theirs, owned);
        assert_unsafe(must_fail(PosixSlotAllocator::attach_in("seg", Some(&theirs)), "attach_in a foreign dir"), &theirs, owned);
        assert_unsafe(must_fail(PosixSlotAllocator::attach(theirs.join("seg")), "attach in a foreign dir (full path)"), &theirs, owned);
        assert_eq!(listing(&theirs), names(&["seg"]), "something was created in the foreign directory");
        assert_eq!(mode_of(&theirs), 0o700);
        take_back(&theirs);
        drop(PosixSlotAllocator::attach_in("seg", Some(&theirs)).expect("attach once the dir is ours again"));
    }
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
    fs::remove_dir(&theirs).unwrap();
}

/// A foreign-owned shared-memory object behind a good flink file is refused.
#[test]
fn foreign_owned_shm_object_is_refused() {
    let dir = TestDir::new("foreignshm");
    let ring = builder().create(dir.flink("seg")).unwrap();
    let seg = ring.segment_path();
    if give_away(&seg, FOREIGN_UID) {
        assert_unsafe(must_fail(PosixSlotAllocator::attach(ring.flink_path()), "attach to a foreign object"), &seg, "owned by another user");
        take_back(&seg);
        drop(PosixSlotAllocator::attach(ring.flink_path()).expect("attach once the object is ours again"));
    }
    drop(ring);
    assert_unlinked(&seg);
}

// ───────────────────────────── symlinked and odd directories ─────────────────────────────

/// Issue: "a symlinked … directory is refused": a symlink to a good 0700
/// directory of ours, for create and attach, bare name and full path.
#[test]
fn symlinked_discovery_dir_is_refused() {
    let dir = TestDir::new("dirlink");
    let real = private_subdir(&dir, "real");
    let link = dir.flink("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let why = "the directory is a symbolic link";

    assert_unsafe(must_fail(builder().discovery_dir(&link).create("seg"), "create through a symlinked dir (bare name)"), &link, why);
    assert_unsafe(must_fail(builder().create(link.join("seg")), "create through a symlinked dir (full path)"), &link, why);
    assert!(listing(&real).is_empty(), "create wrote into the symlink's target: {:?}", listing(&real));

    // A good ring in the target: attach through the link is still refused.
    let ring = builder().create(real.join("seg")).unwrap();
    assert_unsafe(must_fail(PosixSlotAllocator::attach_in("seg", Some(&link)), "attach_in a symlinked dir"), &link, why);
    assert_unsafe(must_fail(PosixSlotAllocator::attach(link.join("seg")), "attach through a symlinked dir (full path)"), &link, why);
    drop(PosixSlotAllocator::attach_in("seg", Some(&real)).expect("attach in the real dir"));

    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
    assert_eq!(fs::read_link(&link).unwrap(), real, "the link was changed");
    fs::remove_file(&link).unwrap();
    fs::remove_dir(&real).unwrap();
}

/// A dangling symlink as the discovery directory: refused, and `create`
/// does not make the directory it points to.
#[test]
fn dangling_symlinked_discovery_dir_is_refused() {
    let dir = TestDir::new("dirdangle");
    let target = dir.flink("not-there");
    let link = dir.flink("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_unsafe(must_fail(builder().discovery_dir(&link).create("seg"), "create through a dangling dir symlink"), &link, "symbolic link");
    assert_unsafe(must_fail(PosixSlotAllocator::attach_in("seg", Some(&link)), "attach_in a dangling dir symlink"), &link, "symbolic link");
    assert!(fs::symlink_metadata(&target).is_err(), "create made the symlink's target {}", target.display());
    fs::remove_file(&link).unwrap();
}

/// A symlinked discovery directory spelled with a trailing `/` (or `/.`):
/// `lstat("link/")` follows the link, so the symlink check of `check_dir`
/// would not see it; the library strips trailing `/` and `.` first (this
/// test found the bypass).
#[test]
fn symlinked_discovery_dir_with_trailing_slash_is_refused() {
    let dir = TestDir::new("dirslash");
    let real = private_subdir(&dir, "real");
    let link = dir.flink("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut failures = Vec::new();
    for spelling in ["link/", "link/."] {
        let through = dir.path().join(spelling);
        match builder().discovery_dir(&through).create("seg") {
            Err(OpenError::Unsafe { reason, .. }) if reason.contains("symbolic link") => {}
            Err(e) => failures.push(format!("create through {spelling:?}: unexpected error {e}")),
            Ok(ring) => {
                failures.push(format!("create through {spelling:?} succeeded, flink file written to {}", ring.flink_path().display()));
                // Attach the same way, for the report.
                match PosixSlotAllocator::attach_in("seg", Some(&through)) {
                    Ok(_) => failures.push(format!("attach_in through {spelling:?} succeeded")),
                    Err(e) => failures.push(format!("attach_in through {spelling:?}: {e}")),
                }
                let seg = ring.segment_path();
                drop(ring);
                assert_unlinked(&seg);
            }
        }
    }
    assert!(listing(&real).is_empty());
    fs::remove_file(&link).unwrap();
    fs::remove_dir(&real).unwrap();
    assert!(failures.is_empty(), "symlinked discovery directory not refused:\n{}", failures.join("\n"));
}

/// Issue: "a … group/other-writable … directory is refused". The existing
/// test covers attach in a 0770 directory; this covers other-writable modes
/// (and group-writable ones for create), by bare name and full path. The
/// mode is not silently changed and nothing is created.
#[test]
fn discovery_dir_writable_by_others_is_refused() {
    let dir = TestDir::new("otherdir");
    let loose = private_subdir(&dir, "loose");
    let ring = builder().create(loose.join("seg")).unwrap();
    let why = "the directory is writable by group or others";
    for mode in [0o707, 0o703, 0o702, 0o777, 0o1777, 0o1703, 0o720, 0o730] {
        fs::set_permissions(&loose, fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(mode_of(&loose), mode);
        let m = format!("{mode:o}");
        assert_unsafe(must_fail(builder().discovery_dir(&loose).create("new"), &format!("create in a {m} dir (bare name)")), &loose, why);
        assert_unsafe(must_fail(builder().create(loose.join("new")), &format!("create in a {m} dir (full path)")), &loose, why);
        assert_unsafe(must_fail(PosixSlotAllocator::attach_in("seg", Some(&loose)), &format!("attach_in a {m} dir")), &loose, why);
        assert_unsafe(must_fail(PosixSlotAllocator::attach(loose.join("seg")), &format!("attach in a {m} dir (full path)")), &loose, why);
        assert_eq!(mode_of(&loose), mode, "the library changed the directory's mode");
        assert_eq!(listing(&loose), names(&["seg"]), "something was created in the {m} directory");
    }
    // Read/execute for others is fine: only write access is refused.
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
    drop(PosixSlotAllocator::attach_in("seg", Some(&loose)).expect("attach in a 0755 dir"));
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o700)).unwrap();
    let seg = ring.segment_path();
    drop(ring);
    assert_unlinked(&seg);
    fs::remove_dir(&loose).unwrap();
}

/// A discovery "directory" that is a regular file: refused, file untouched.
#[test]
fn discovery_dir_that_is_a_file_is_refused() {
    let dir = TestDir::new("dirfile");
    let file = dir.flink("notadir");
    fs::write(&file, b"a file").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let before = snapshot(&file);
    let why = "not a directory";
    assert_unsafe(must_fail(builder().discovery_dir(&file).create("seg"), "create in a file (bare name)"), &file, why);
    assert_unsafe(must_fail(builder().create(file.join("seg")), "create in a file (full path)"), &file, why);
    assert_unsafe(must_fail(PosixSlotAllocator::attach_in("seg", Some(&file)), "attach_in a file"), &file, why);
    assert_eq!(snapshot(&file), before);
    fs::remove_file(&file).unwrap();
}

/// A flink path in a directory that does not exist yet: a create makes that
/// directory, 0700 (one level: a missing parent is an error naming the
/// directory it could not make, and nothing is created); an attach makes
/// nothing.
#[test]
fn missing_final_directory_of_a_flink_path_is_created_private() {
    let dir = TestDir::new("mkdir");
    let sub = dir.path().join("rings");
    let flink = sub.join("cam");
    match PosixSlotAllocator::attach(&flink) {
        Err(OpenError::Io { path, source, .. }) => assert!(path == sub && source.kind() == std::io::ErrorKind::NotFound, "{path:?}: {source}"),
        other => panic!("attach in a missing directory: {other:?}"),
    }
    assert!(!sub.exists(), "attach made the directory");
    let ring = builder().create(&flink).expect("create in a missing directory");
    assert_eq!(mode_of(&sub), 0o700);
    drop(PosixSlotAllocator::attach(&flink).expect("attach there"));
    drop(ring);
    assert!(!flink.exists(), "the creator's drop removes its flink file");
    fs::remove_dir(&sub).unwrap();

    let deep = dir.path().join("a").join("b");
    match builder().create(deep.join("cam")) {
        Err(OpenError::Io { path, source, .. }) => assert!(path == deep && source.kind() == std::io::ErrorKind::NotFound, "{path:?}: {source}"),
        other => panic!("create two levels down: {other:?}"),
    }
    assert!(!dir.path().join("a").exists(), "a missing parent was created");
}

/// A directory at the flink path: create says it exists (and leaves it
/// alone), attach by bare name refuses it as not a regular file (attach by
/// full path is covered in `tests/corrupt.rs`).
#[test]
fn directory_at_flink_path() {
    let dir = TestDir::new("flinkdir");
    let sub = private_subdir(&dir, "seg");
    fs::write(sub.join("keep"), b"keep").unwrap();
    assert_exists(must_fail(builder().create(&sub), "create over a directory (full path)"), &sub);
    assert_exists(must_fail(builder().discovery_dir(dir.path()).create("seg"), "create over a directory (bare name)"), &sub);
    assert_unsafe(must_fail(PosixSlotAllocator::attach_in("seg", Some(dir.path())), "attach_in a directory"), &sub, "not a regular file");
    assert_eq!(listing(&sub), names(&["keep"]));
    assert_eq!(mode_of(&sub), 0o700);
    fs::remove_file(sub.join("keep")).unwrap();
    fs::remove_dir(&sub).unwrap();
}

// ───────────────────────────── links planted at the flink path ─────────────────────────────

/// Issue: "a link planted at the flink path makes create fail instead of
/// writing through it": a symlink to a victim file elsewhere.
#[test]
fn symlink_planted_at_flink_path_is_not_written_through() {
    let dir = TestDir::new("plantsym");
    let elsewhere = private_subdir(&dir, "elsewhere");
    let victim = victim(&elsewhere);
    let before = snapshot(&victim);
    let path = dir.flink("seg");
    std::os::unix::fs::symlink(&victim, &path).unwrap();

    assert_exists(must_fail(builder().create(&path), "create over a symlink (full path)"), &path);
    assert_exists(must_fail(builder().discovery_dir(dir.path()).create("seg"), "create over a symlink (bare name)"), &path);
    assert_eq!(snapshot(&victim), before, "the victim was written through the symlink");
    assert_eq!(fs::metadata(&victim).unwrap().nlink(), 1);
    assert_eq!(fs::read_link(&path).unwrap(), victim, "the planted link was changed");
    assert_eq!(listing(dir.path()), names(&["elsewhere", "seg"]), "temp files left behind");
    assert_eq!(listing(&elsewhere), names(&["victim"]));

    fs::remove_file(&path).unwrap();
    fs::remove_file(&victim).unwrap();
    fs::remove_dir(&elsewhere).unwrap();
}

/// A dangling symlink at the flink path: create fails and does not create
/// the file the link points to.
#[test]
fn dangling_symlink_planted_at_flink_path_is_not_followed() {
    let dir = TestDir::new("plantdangle");
    let elsewhere = private_subdir(&dir, "elsewhere");
    let target = elsewhere.join("would-be-created");
    let path = dir.flink("seg");
    std::os::unix::fs::symlink(&target, &path).unwrap();

    assert_exists(must_fail(builder().create(&path), "create over a dangling symlink (full path)"), &path);
    assert_exists(must_fail(builder().discovery_dir(dir.path()).create("seg"), "create over a dangling symlink (bare name)"), &path);
    assert!(fs::symlink_metadata(&target).is_err(), "create made the symlink's target {}", target.display());
    assert!(listing(&elsewhere).is_empty());
    assert_eq!(fs::read_link(&path).unwrap(), target);
    assert_eq!(listing(dir.path()), names(&["elsewhere", "seg"]), "temp files left behind");

    fs::remove_file(&path).unwrap();
    fs::remove_dir(&elsewhere).unwrap();
}

/// A hard link of a victim file at the flink path: create fails, the victim
/// is unchanged.
#[test]
fn hard_link_planted_at_flink_path_is_not_written_through() {
    let dir = TestDir::new("planthard");
    let elsewhere = private_subdir(&dir, "elsewhere");
    let victim = victim(&elsewhere);
    let path = dir.flink("seg");
    fs::hard_link(&victim, &path).unwrap();
    let before = snapshot(&victim);

    assert_exists(must_fail(builder().create(&path), "create over a hard link (full path)"), &path);
    assert_exists(must_fail(builder().discovery_dir(dir.path()).create("seg"), "create over a hard link (bare name)"), &path);
    assert_eq!(snapshot(&victim), before, "the victim was written through the hard link");
    assert_eq!(snapshot(&path), before);
    assert_eq!(fs::metadata(&victim).unwrap().nlink(), 2);
    assert_eq!(listing(dir.path()), names(&["elsewhere", "seg"]), "temp files left behind");

    fs::remove_file(&path).unwrap();
    fs::remove_file(&victim).unwrap();
    fs::remove_dir(&elsewhere).unwrap();
}

/// Links planted and removed at the flink path while `create` runs in a
/// loop, so some appear after `create`'s existence check and before the
/// flink file is published: whatever the interleaving, `create` either
/// publishes a fresh file of its own or fails with `Exists`; the victim is
/// never written, and no dangling target is created.
#[test]
fn links_planted_during_create_are_never_written_through() {
    let dir = TestDir::new("plantrace");
    let elsewhere = private_subdir(&dir, "elsewhere");
    let victim = victim(&elsewhere);
    let dangling = elsewhere.join("never");
    let before = snapshot(&victim);
    let path = dir.flink("seg");

    let stop = Arc::new(AtomicBool::new(false));
    let planter = {
        let (stop, victim, dangling, path) = (stop.clone(), victim.clone(), dangling.clone(), path.clone());
        std::thread::spawn(move || {
            let mut planted = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = match i % 3 {
                    0 => std::os::unix::fs::symlink(&victim, &path),
                    1 => std::os::unix::fs::symlink(&dangling, &path),
                    _ => fs::hard_link(&victim, &path),
                };
                if r.is_ok() {
                    // Only what we planted is removed: a published flink file
                    // makes the plant fail.
                    planted += 1;
                    for _ in 0..(i % 7) * 50 {
                        std::hint::spin_loop();
                    }
                    fs::remove_file(&path).unwrap();
                }
                std::thread::yield_now();
            }
            planted
        })
    };

    let (mut created, mut refused) = (0u64, 0u64);
    let t = Instant::now();
    // Until both outcomes were seen a good number of times (or 5 s pass).
    while t.elapsed() < Duration::from_secs(5) && (created + refused < 4000 || refused < 20 || created < 20) {
        match builder().create(&path) {
            Ok(ring) => {
                created += 1;
                // The file at the path is a fresh one of ours naming this ring.
                let md = fs::symlink_metadata(&path).unwrap();
                assert!(md.is_file() && md.ino() != before.ino && md.mode() & 0o7777 == 0o600, "published over a planted link: {md:?}");
                let info = shmslot::discovery::read_flink(&path).expect("read the published flink file");
                assert_eq!(ring.segment_path(), PathBuf::from(format!("/dev/shm{}", info.segment_name)));
                let seg = ring.segment_path();
                drop(ring);
                assert_unlinked(&seg);
            }
            Err(e) => {
                refused += 1;
                assert_exists(e, &path);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let planted = planter.join().unwrap();
    eprintln!("{created} created, {refused} refused with Exists, {planted} links planted");
    assert!(planted > 0 && refused > 0, "the race was not exercised: {created} created, {refused} refused, {planted} planted");

    assert_eq!(snapshot(&victim), before, "the victim was written through a planted link");
    assert_eq!(fs::metadata(&victim).unwrap().nlink(), 1);
    assert!(fs::symlink_metadata(&dangling).is_err(), "create made the dangling link's target");
    assert!(fs::symlink_metadata(&path).is_err(), "something left at the flink path");
    assert_eq!(listing(dir.path()), names(&["elsewhere"]), "temp files left behind");
    assert_eq!(listing(&elsewhere), names(&["victim"]));
    fs::remove_file(&victim).unwrap();
    fs::remove_dir(&elsewhere).unwrap();
}
