//! Shared test support: unique discovery directories that are removed (and
//! checked for leftovers) on drop.
#![allow(dead_code)]

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
