//! What `flink list`, `inspect` and `clean` share: serializable mirrors of
//! the library's status types (the JSON output is derived from them, never
//! written by hand), error messages that name the path and the reason, and
//! human formatting (ages, geometry, aligned tables).

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Serialize;
use shmslot::discovery::{default_discovery_dir, FlinkInfo, ParticipantStatus, SegmentStatus};
use shmslot::{OpenError, OverflowPolicy, SegmentInfo};

use crate::bench::format_size;

/// An error of `list`, `inspect` or `clean`: one message naming the path
/// and the reason. Exit code 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        1
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// The discovery directory to use: `--dir`, else the library's default.
pub struct DiscoveryDir {
    /// The directory.
    pub path: PathBuf,
    /// Whether it is the default (not given with `--dir`).
    pub is_default: bool,
}

impl DiscoveryDir {
    /// `--dir DIR` if given, else [`default_discovery_dir`].
    pub fn new(dir: Option<&Path>) -> Self {
        match dir {
            Some(d) => Self { path: d.to_owned(), is_default: false },
            None => Self { path: default_discovery_dir(), is_default: true },
        }
    }

    /// The error for a directory that cannot be listed: missing, unsafe, no
    /// permission.
    pub fn error(&self, e: &OpenError) -> CliError {
        let d = self.path.display();
        let msg = match e {
            OpenError::Io { source, .. } if source.kind() == ErrorKind::NotFound => {
                let hint = if self.is_default { " (no ring was created there yet; pass --dir DIR or set SHMSLOT_DIR)" } else { "" };
                format!("discovery directory {d} does not exist{hint}")
            }
            OpenError::Io { op, path, source } if source.kind() == ErrorKind::PermissionDenied => {
                if path == &self.path {
                    format!("discovery directory {d}: permission denied ({op})")
                } else {
                    format!("discovery directory {d}: permission denied ({op} {})", path.display())
                }
            }
            OpenError::Unsafe { path, reason } if path == &self.path => format!("discovery directory {d} is refused: {reason}"),
            other => format!("discovery directory {d}: {other}"),
        };
        CliError(msg)
    }
}

/// Why one flink file (or its segment) could not be read, without repeating
/// the flink path when the error is about that very file.
pub fn describe(e: &OpenError, flink_path: &Path) -> String {
    match e {
        OpenError::Invalid { path, error } if path == flink_path => format!("not a flink file: {error}"),
        OpenError::Invalid { path, error } => format!("segment {} fails validation: {error}", path.display()),
        OpenError::Unsafe { path, reason } if path == flink_path => format!("refused: {reason}"),
        OpenError::Unsafe { path, reason } => format!("{} refused: {reason}", path.display()),
        OpenError::Io { op, path, source } if path == flink_path => format!("cannot {op}: {source}"),
        OpenError::Io { op, path, source } => format!("cannot {op} {}: {source}", path.display()),
        other => other.to_string(),
    }
}

/// The file name of a flink path, for display.
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// `KeepAll` or `DropOldest`, as the library names them.
pub fn policy_name(p: OverflowPolicy) -> String {
    match p {
        OverflowPolicy::KeepAll => "KeepAll".into(),
        OverflowPolicy::DropOldest => "DropOldest".into(),
    }
}

/// A policy as stored in a flink file.
pub fn stored_policy_name(v: u32) -> String {
    OverflowPolicy::from_u32(v).map_or_else(|| format!("unknown ({v})"), policy_name)
}

/// 32 hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Age in ms of something created at `created_unix_ms` (0 if in the future).
pub fn age_ms(created_unix_ms: u64) -> u64 {
    now_ms().saturating_sub(created_unix_ms)
}

/// `850ms`, `12s`, `3m12s`, `2h05m`, `3d04h`.
pub fn format_age(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600)
    }
}

/// `16 × 1 KiB`.
pub fn format_geometry(slot_count: u32, capacity: u32) -> String {
    format!("{slot_count} × {}", format_size(capacity as usize))
}

/// `1 alive`, `1 alive, 2 dead`, `2 dead`, `0`.
pub fn format_alive_dead(alive: usize, dead: usize) -> String {
    match (alive, dead) {
        (0, 0) => "0".into(),
        (a, 0) => format!("{a} alive"),
        (0, d) => format!("{d} dead"),
        (a, d) => format!("{a} alive, {d} dead"),
    }
}

/// Counts of alive and dead entries.
pub fn alive_dead(ps: &[ParticipantStatus]) -> (usize, usize) {
    let alive = ps.iter().filter(|p| p.alive).count();
    (alive, ps.len() - alive)
}

/// Left-aligned columns separated by two spaces. The last cell of a row is
/// not padded and does not widen its column, so a short row (e.g. name,
/// state, error message) keeps the first columns aligned and lets its last
/// cell run on.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| rows.iter().filter(|r| c + 1 < r.len()).map(|r| r[c].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints one JSON object on one line.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let line = serde_json::to_string(value).map_err(|e| CliError(format!("cannot encode JSON: {e}")))?;
    println!("{line}");
    Ok(())
}

// ───────────────────── serializable mirrors ─────────────────────

/// [`FlinkInfo`]: what a flink file says.
#[derive(Debug, Serialize)]
pub struct FlinkView {
    /// Name of the OS shared-memory object.
    pub segment_name: String,
    /// Slots in the ring.
    pub slot_count: u32,
    /// Bytes per slot.
    pub capacity: u32,
    /// `KeepAll`, `DropOldest` or `unknown (n)`.
    pub policy: String,
    /// Maximum readers.
    pub max_readers: u32,
    /// Creator's pid (display only).
    pub creator_pid: u32,
    /// Creation time, ms since the epoch.
    pub created_unix_ms: u64,
}

impl From<&FlinkInfo> for FlinkView {
    fn from(f: &FlinkInfo) -> Self {
        Self {
            segment_name: f.segment_name.clone(),
            slot_count: f.slot_count,
            capacity: f.capacity,
            policy: stored_policy_name(f.policy),
            max_readers: f.max_readers,
            creator_pid: f.creator_pid,
            created_unix_ms: f.created_unix_ms,
        }
    }
}

/// [`SegmentInfo`]: the validated geometry of a segment.
#[derive(Debug, Serialize)]
pub struct InfoView {
    /// Slots (a power of two).
    pub slot_count: u32,
    /// Payload bytes per slot.
    pub capacity: u32,
    /// Bytes per slot in the segment.
    pub stride: u32,
    /// Reader table size.
    pub max_readers: u32,
    /// Writer table size.
    pub max_writers: u32,
    /// `KeepAll` or `DropOldest`.
    pub policy: String,
    /// Type hash in hex; all zero for an untyped ring.
    pub type_hash: String,
    /// Creator's pid (display only).
    pub creator_pid: u32,
    /// Creation time, ms since the epoch.
    pub created_unix_ms: u64,
    /// Total bytes of the segment.
    pub total_size: u64,
}

impl From<&SegmentInfo> for InfoView {
    fn from(i: &SegmentInfo) -> Self {
        Self {
            slot_count: i.slot_count,
            capacity: i.capacity,
            stride: i.stride,
            max_readers: i.max_readers,
            max_writers: i.max_writers,
            policy: policy_name(i.policy),
            type_hash: hex(&i.type_hash),
            creator_pid: i.creator_pid,
            created_unix_ms: i.created_unix_ms,
            total_size: i.total_size,
        }
    }
}

/// [`ParticipantStatus`]: one reader or writer entry in use. `position` is
/// a reader's next sequence and a writer's commit count.
#[derive(Debug, Serialize)]
pub struct ParticipantView {
    /// Entry index (a reader's bit in the masks).
    pub index: u32,
    /// Recorded pid (display only).
    pub pid: u32,
    /// Whether its process holds its lock.
    pub alive: bool,
    /// Being freed by a reaper right now.
    pub reclaiming: bool,
    /// Reader: whether its bit is in the registered mask (false for a writer).
    pub registered: bool,
    /// Reader: its next sequence; writer: samples it committed.
    pub position: u64,
    /// Reader: samples released (0 for a writer).
    pub received: u64,
    /// Reader: samples lost to `DropOldest` overwrites (0 for a writer).
    pub lost: u64,
    /// Reader: samples it keeps in place now, and so far (0 for a writer).
    pub kept: u64,
    pub kept_total: u64,
    /// Writer: samples it gave up on because the ring was full (0 for a
    /// reader).
    pub dropped: u64,
}

impl From<&ParticipantStatus> for ParticipantView {
    fn from(p: &ParticipantStatus) -> Self {
        Self {
            index: p.index,
            pid: p.pid,
            alive: p.alive,
            reclaiming: p.reclaiming,
            registered: p.registered,
            position: p.position,
            received: p.received,
            lost: p.lost,
            kept: p.kept,
            kept_total: p.kept_total,
            dropped: p.dropped,
        }
    }
}

/// The participants of a status, as views.
pub fn participants(st: &SegmentStatus) -> (Vec<ParticipantView>, Vec<ParticipantView>) {
    (st.readers.iter().map(Into::into).collect(), st.writers.iter().map(Into::into).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(format_age(850), "850ms");
        assert_eq!(format_age(12_000), "12s");
        assert_eq!(format_age(192_000), "3m12s");
        assert_eq!(format_age(7_500_000), "2h05m");
        assert_eq!(format_age(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
    }

    #[test]
    fn table_aligns_all_but_the_last_column() {
        let rows = vec![vec!["a".into(), "bbb".into(), "c".into()], vec!["aaaa".into(), "b".into(), "long last".into()], vec!["x".into(), "a very long message".into()]];
        assert_eq!(table(&rows), "a     bbb  c\naaaa  b    long last\nx     a very long message\n");
    }

    #[test]
    fn errors_name_the_path_and_reason() {
        let dir = DiscoveryDir { path: PathBuf::from("/nope"), is_default: false };
        let e = OpenError::Io { op: "stat directory", path: PathBuf::from("/nope"), source: std::io::Error::from(ErrorKind::NotFound) };
        assert_eq!(dir.error(&e).to_string(), "discovery directory /nope does not exist");
        let e = OpenError::Unsafe { path: PathBuf::from("/nope"), reason: "not a directory" };
        assert_eq!(dir.error(&e).to_string(), "discovery directory /nope is refused: not a directory");
    }
}
