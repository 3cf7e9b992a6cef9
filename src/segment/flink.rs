//! Flink files: the small files in a discovery directory that name a
//! segment's OS shared-memory object.
//!
//! Format (128 bytes, little-endian):
//!
//! ```text
//!   0  magic "SHMFLINK"        8  version u32       12  crc32 of bytes 16..128
//!  16  name_len u32           20  name [u8; 48]  ("/shmslot.<uid>.<16 hex>")
//!  68  slot_count u32         72  capacity u32      76  policy u32
//!  80  max_readers u32        84  creator_pid u32   88  created_unix_ms u64
//!  96  kind u32 (0 slot ring, 1 blackboard)
//! 100  flags u32 (bit 0: leaked — left in place by its creator, see
//!      `PosixSlotAllocator::leak`)
//! 104  reserved (zero)
//! ```
//!
//! A flink file is replaced (never rewritten) when what it says changes — a
//! segment leaked or owned again, a ring moved to a larger generation — by
//! renaming a new file over it while holding its removal claim.
//!
//! Published by writing a temp file (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600)
//! and hard-linking it to its name (fails if anything — a file or a planted
//! symlink — is there), so a reader never sees half a file.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use byteorder::{ByteOrder, LittleEndian};

use crate::error::{OpenError, ValidationError};

const FLINK_MAGIC: &[u8; 8] = b"SHMFLINK";
const FLINK_VERSION: u32 = 1;
/// Size of a flink file.
pub(crate) const FLINK_SIZE: usize = 128;
const NAME_MAX: usize = 48;

/// What a flink file names: which kind of segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentKind {
    /// A slot ring ([`PosixSlotAllocator`](crate::PosixSlotAllocator)).
    #[default]
    Ring,
    /// A keyed blackboard ([`crate::blackboard`]).
    Blackboard,
}

impl SegmentKind {
    /// As stored in a flink file.
    pub fn code(self) -> u32 {
        match self {
            Self::Ring => 0,
            Self::Blackboard => 1,
        }
    }
    /// From a flink file's code.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Ring),
            1 => Some(Self::Blackboard),
            _ => None,
        }
    }
    /// `ring` or `blackboard`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::Blackboard => "blackboard",
        }
    }
}

/// What a flink file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlinkInfo {
    /// What kind of segment the file names.
    pub kind: SegmentKind,
    /// Name of the OS shared-memory object.
    pub segment_name: String,
    /// Slots in the ring (blackboard: entries).
    pub slot_count: u32,
    /// Bytes per slot (blackboard: the largest value).
    pub capacity: u32,
    /// Overflow policy as stored (1 KeepAll, 2 DropOldest).
    pub policy: u32,
    /// Maximum readers.
    pub max_readers: u32,
    /// Creator's pid (display only: liveness is not decided by pids).
    pub creator_pid: u32,
    /// Creation time, ms since the epoch.
    pub created_unix_ms: u64,
    /// Left in place by its creator ([`PosixSlotAllocator::leak`](crate::PosixSlotAllocator::leak)):
    /// not stale when nobody is attached; only `flink clean --leaked`
    /// removes it.
    pub leaked: bool,
}

/// `flags` bit: the segment was leaked.
const FLAG_LEAKED: u32 = 1;

impl FlinkInfo {
    /// The 128 bytes of a flink file saying this (with its crc).
    ///
    /// # Errors
    /// [`ValidationError::BadField`] for a segment name longer than 48
    /// bytes (no such file could be decoded).
    pub fn encode(&self) -> Result<[u8; FLINK_SIZE], ValidationError> {
        let name = self.segment_name.as_bytes();
        if name.len() > NAME_MAX {
            return Err(ValidationError::BadField { field: "segment name length", value: name.len() as u64, expected: "at most 48 bytes" });
        }
        let mut b = [0u8; FLINK_SIZE];
        b[0..8].copy_from_slice(FLINK_MAGIC);
        LittleEndian::write_u32(&mut b[8..], FLINK_VERSION);
        LittleEndian::write_u32(&mut b[16..], name.len() as u32);
        b[20..20 + name.len()].copy_from_slice(name);
        LittleEndian::write_u32(&mut b[68..], self.slot_count);
        LittleEndian::write_u32(&mut b[72..], self.capacity);
        LittleEndian::write_u32(&mut b[76..], self.policy);
        LittleEndian::write_u32(&mut b[80..], self.max_readers);
        LittleEndian::write_u32(&mut b[84..], self.creator_pid);
        LittleEndian::write_u64(&mut b[88..], self.created_unix_ms);
        LittleEndian::write_u32(&mut b[96..], self.kind.code());
        LittleEndian::write_u32(&mut b[100..], if self.leaked { FLAG_LEAKED } else { 0 });
        let crc = crc32fast::hash(&b[16..]);
        LittleEndian::write_u32(&mut b[12..], crc);
        Ok(b)
    }

    /// Decodes and checks a flink file's bytes.
    ///
    /// # Errors
    /// A [`ValidationError`] saying what is wrong.
    pub fn decode(b: &[u8]) -> Result<Self, ValidationError> {
        if b.len() != FLINK_SIZE {
            return Err(ValidationError::Truncated { size: b.len() as u64, needed: FLINK_SIZE as u64 });
        }
        if &b[0..8] != FLINK_MAGIC {
            return Err(ValidationError::BadMagic { found: LittleEndian::read_u64(&b[0..8]) });
        }
        let version = LittleEndian::read_u32(&b[8..]);
        if version != FLINK_VERSION {
            return Err(ValidationError::VersionMismatch { found: version, expected: FLINK_VERSION });
        }
        let stored = LittleEndian::read_u32(&b[12..]);
        let computed = crc32fast::hash(&b[16..]);
        if stored != computed {
            return Err(ValidationError::BadCrc { stored, computed });
        }
        let len = LittleEndian::read_u32(&b[16..]) as usize;
        if len > NAME_MAX {
            return Err(ValidationError::BadField { field: "flink name length", value: len as u64, expected: "at most 48" });
        }
        let name = std::str::from_utf8(&b[20..20 + len])
            .ok()
            .filter(|n| super::name::valid_segment_name(n))
            .ok_or(ValidationError::BadField { field: "segment name", value: len as u64, expected: "/shmslot.<uid>.<16 hex digits>" })?;
        let kind_code = LittleEndian::read_u32(&b[96..]);
        let kind = SegmentKind::from_code(kind_code).ok_or(ValidationError::BadField { field: "flink kind", value: kind_code.into(), expected: "0 (ring) or 1 (blackboard)" })?;
        let flags = LittleEndian::read_u32(&b[100..]);
        if flags & !FLAG_LEAKED != 0 {
            return Err(ValidationError::BadField { field: "flink flags", value: flags.into(), expected: "only bit 0 (leaked)" });
        }
        Ok(Self {
            leaked: flags & FLAG_LEAKED != 0,
            kind,
            segment_name: name.to_owned(),
            slot_count: LittleEndian::read_u32(&b[68..]),
            capacity: LittleEndian::read_u32(&b[72..]),
            policy: LittleEndian::read_u32(&b[76..]),
            max_readers: LittleEndian::read_u32(&b[80..]),
            creator_pid: LittleEndian::read_u32(&b[84..]),
            created_unix_ms: LittleEndian::read_u64(&b[88..]),
        })
    }
}

/// Writes `info` to `path`, failing if anything exists there.
pub(crate) fn publish(path: &Path, info: &FlinkInfo) -> Result<(), OpenError> {
    with_temp(path, info, |tmp| {
        fs::hard_link(tmp, path).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                OpenError::Exists(path.to_owned())
            } else {
                OpenError::Io { op: "publish flink file", path: path.to_owned(), source }
            }
        })
    })
}

/// Writes `info` to a fresh temp file next to `path` (`O_CREAT|O_EXCL|
/// O_NOFOLLOW`, mode 0600), hands it to `put`, then removes the temp name.
fn with_temp(path: &Path, info: &FlinkInfo, put: impl FnOnce(&Path) -> Result<(), OpenError>) -> Result<(), OpenError> {
    let bytes = info.encode().map_err(|error| OpenError::Invalid { path: path.to_owned(), error })?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".flink-tmp.{}.{:016x}", std::process::id(), crate::sys::shm::random_u64()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|source| OpenError::Io { op: "create flink temp file", path: tmp.clone(), source })?;
    let res = f.write_all(&bytes).map_err(|source| OpenError::Io { op: "write flink file", path: tmp.clone(), source }).and_then(|()| put(&tmp));
    let _ = fs::remove_file(&tmp);
    res
}

/// Replaces the flink file at `path`, which must name `segment_name`, by
/// what `change` makes of it, holding its removal claim (so no remover
/// removes it meanwhile and no second replacer interleaves). Returns what
/// the new file says.
///
/// # Errors
/// [`OpenError::NotPublished`] when `path` no longer names that segment
/// (removed, or replaced by another segment); [`OpenError::Busy`] when
/// another remover holds it; other errors of reading or writing the file.
pub(crate) fn replace(path: &Path, segment_name: &str, change: impl FnOnce(&mut FlinkInfo)) -> Result<FlinkInfo, OpenError> {
    let claim = match claim(path)? {
        Ok(c) if c.info.segment_name == segment_name => c,
        Ok(_) | Err(Unclaimed::Gone) => return Err(OpenError::NotPublished { path: path.to_owned() }),
        Err(Unclaimed::Busy) => return Err(OpenError::Busy { path: path.to_owned(), what: "another process holds the flink file" }),
    };
    let mut info = claim.info.clone();
    change(&mut info);
    with_temp(path, &info, |tmp| fs::rename(tmp, path).map_err(|source| OpenError::Io { op: "replace flink file", path: path.to_owned(), source }))?;
    drop(claim);
    Ok(info)
}

/// Reads and checks the flink file at `path`: no symlink, a regular file of
/// ours, not group/other writable, exactly 128 bytes.
///
/// # Errors
/// [`OpenError`] naming the file and the reason.
pub fn read(path: &Path) -> Result<FlinkInfo, OpenError> {
    open_checked(path).map(|(_, info)| info)
}

/// [`read`], also returning the open file (for locking it).
pub(crate) fn open_checked(path: &Path) -> Result<(fs::File, FlinkInfo), OpenError> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                OpenError::Unsafe { path: path.to_owned(), reason: "the flink file is a symbolic link" }
            } else {
                OpenError::Io { op: "open flink file", path: path.to_owned(), source }
            }
        })?;
    let md = f.metadata().map_err(|source| OpenError::Io { op: "stat flink file", path: path.to_owned(), source })?;
    let refuse = |reason| Err(OpenError::Unsafe { path: path.to_owned(), reason });
    if !md.is_file() {
        return refuse("not a regular file");
    }
    if md.uid() != crate::sys::shm::euid() {
        return refuse("the flink file is owned by another user");
    }
    if md.mode() & 0o022 != 0 {
        return refuse("the flink file is writable by group or others");
    }
    if md.len() > FLINK_SIZE as u64 {
        return refuse("the flink file is larger than a flink file can be (128 bytes)");
    }
    if md.len() != FLINK_SIZE as u64 {
        return Err(OpenError::Invalid { path: path.to_owned(), error: ValidationError::Truncated { size: md.len(), needed: FLINK_SIZE as u64 } });
    }
    let mut b = [0u8; FLINK_SIZE];
    f.read_exact(&mut b).map_err(|source| OpenError::Io { op: "read flink file", path: path.to_owned(), source })?;
    let info = FlinkInfo::decode(&b).map_err(|error| OpenError::Invalid { path: path.to_owned(), error })?;
    Ok((f, info))
}

/// An exclusive claim on one flink file: the right to remove it. Removers
/// (`flink clean`, a `create` reclaiming a stale name, a creator's drop, the
/// last attacher of a dead creator's segment) take an exclusive `flock` on
/// the open file and re-check that the path still names that very file
/// before they unlink it. A creator never replaces a flink file (it links a
/// new one, which fails while the old exists), so between the check and the
/// unlink only a holder of this claim can change the path: two removers
/// never both remove, and a new live flink file published after a removal is
/// never removed by a remover that looked at the old one.
pub(crate) struct FlinkClaim {
    path: PathBuf,
    file: fs::File,
    /// What the claimed file says.
    pub info: FlinkInfo,
}

/// How [`claim`] ended when it did not claim.
pub(crate) enum Unclaimed {
    /// Another remover holds the file right now.
    Busy,
    /// The path no longer names a flink file (removed or replaced meanwhile).
    Gone,
}

/// How long [`claim`] waits for another remover.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Claims the flink file at `path` for removal; see [`FlinkClaim`].
pub(crate) fn claim(path: &Path) -> Result<Result<FlinkClaim, Unclaimed>, OpenError> {
    let (file, info) = match open_checked(path) {
        Ok(x) => x,
        Err(OpenError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(Err(Unclaimed::Gone)),
        Err(e) => return Err(e),
    };
    // Other removers hold the claim for a few system calls; wait for them,
    // but boundedly (a process of ours that holds it forever must not hang
    // us).
    let deadline = std::time::Instant::now() + CLAIM_WAIT;
    loop {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Ok(Err(Unclaimed::Busy));
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    if !same_file(path, &file) {
        return Ok(Err(Unclaimed::Gone));
    }
    Ok(Ok(FlinkClaim { path: path.to_owned(), file, info }))
}

/// Whether `path` (not followed) is the file open as `file`.
fn same_file(path: &Path, file: &fs::File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl FlinkClaim {
    /// Removes the claimed file, if the path still names it.
    pub fn remove(self) -> bool {
        same_file(&self.path, &self.file) && fs::remove_file(&self.path).is_ok()
    }
}
