//! Shared test support: unique discovery directories that are removed (and
//! checked for leftovers) on drop.
#![allow(dead_code)]

pub mod family;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A unique, private (0700) discovery directory for one test. On drop it
/// asserts the directory is empty (every ring removed its flink file), then
/// removes it.
pub struct TestDir {
    path: PathBuf,
    check_empty: bool,
}

impl TestDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "shmslot-test-{tag}-{}-{}-{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        ));
        std::fs::create_dir(&path).expect("create test dir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        Self { path, check_empty: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of a flink file named `name` in this directory.
    pub fn flink(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let left: Vec<_> = std::fs::read_dir(&self.path).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect()).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&self.path);
        if self.check_empty && !std::thread::panicking() {
            assert!(left.is_empty(), "flink files left behind in {}: {left:?}", self.path.display());
        }
    }
}

/// Asserts the shm object behind `segment_path` is gone.
pub fn assert_unlinked(segment_path: &Path) {
    assert!(!segment_path.exists(), "shared-memory object {} left behind", segment_path.display());
}

/// splitmix64's finaliser: deterministic pseudo-random bits for payloads.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Length of the checked sample for `tag`: 12 to `cap` bytes.
pub fn sample_len(tag: u64, cap: usize) -> usize {
    12 + (mix(tag) % (cap as u64 - 11)) as usize
}

/// A checked sample: `[0..4]` crc32 of `[4..len]`, `[4..12]` the tag,
/// `[12..len]` bytes derived from it; `len` derived from it too. Writes it
/// into `buf` (its length is the capacity) and returns `len`.
pub fn fill(buf: &mut [u8], tag: u64) -> usize {
    let len = sample_len(tag, buf.len());
    buf[4..12].copy_from_slice(&tag.to_le_bytes());
    for (k, chunk) in buf[12..len].chunks_mut(8).enumerate() {
        let v = mix(tag ^ ((k as u64) << 40)).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let crc = crc32fast::hash(&buf[4..len]);
    buf[0..4].copy_from_slice(&crc.to_le_bytes());
    len
}

/// The tag of a well-formed sample of [`fill`], `None` for a torn, partial
/// or otherwise wrong one.
pub fn check(bytes: &[u8], cap: usize) -> Option<u64> {
    if bytes.len() < 12 {
        return None;
    }
    let tag = u64::from_le_bytes(bytes[4..12].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    (crc == crc32fast::hash(&bytes[4..]) && bytes.len() == sample_len(tag, cap)).then_some(tag)
}

/// This test binary re-executed to run only `child_test` (a `#[test]` that
/// plays a child process when its role variable is set), dying with its
/// parent (`PR_SET_PDEATHSIG`) so a failed test leaves no process behind.
/// The caller sets the environment and stdio.
pub fn child_command(child_test: &str) -> std::process::Command {
    child_command_via(&[], child_test)
}

/// As [`child_command`], started through `wrapper` (a program and its
/// arguments, which must end by running the program named after them with
/// its arguments, as `unshare … sh -c '… exec "$0" "$@"'` does).
pub fn child_command_via(wrapper: &[&str], child_test: &str) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    cmd.args(["--exact", child_test, "--nocapture", "--test-threads=1"]);
    // SAFETY: the closure runs in the forked child before exec and only
    // makes an async-signal-safe system call (prctl).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// xorshift64*: deterministic, seedable random numbers for tests (the seed
/// must not be 0).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// The error of `r`, which must have failed.
#[track_caller]
pub fn must_fail<T>(r: Result<T, shmslot::OpenError>, what: &str) -> shmslot::OpenError {
    match r {
        Ok(_) => panic!("{what}: succeeded, but must fail"),
        Err(e) => e,
    }
}

/// Asserts `err` is `Unsafe { path, reason ∋ reason }` and its message names
/// the path and the reason.
#[track_caller]
pub fn assert_unsafe(err: shmslot::OpenError, path: &Path, reason: &str) {
    let msg = err.to_string();
    match err {
        shmslot::OpenError::Unsafe { path: p, reason: r } => {
            assert_eq!(p, path, "error names the wrong path: {msg}");
            assert!(r.contains(reason), "reason {r:?} does not mention {reason:?}");
        }
        other => panic!("expected Unsafe({reason}) for {}, got {other:?} ({other})", path.display()),
    }
    assert!(msg.contains(path.to_str().unwrap()), "message does not name {}: {msg}", path.display());
    assert!(msg.contains("refused") && msg.contains(reason), "message does not give the reason {reason:?}: {msg}");
}
