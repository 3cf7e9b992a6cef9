//! The reference floor ("memcpy + flag"): the least a
//! shared-memory hand-off of `size` bytes can cost between the same two
//! pinned processes — a `memcpy` into a shared mapping and one published
//! atomic word, no protocol at all.
//!
//! * Latency: one flag and a ring of [`DEPTH`] payload slots per direction
//!   (the ping-pong cycles through the slots as through a shmslot ring, so
//!   both touch the same amount of memory). The parent copies ping `seq` into
//!   slot `seq % DEPTH` and stores `seq + 1` in the ping flag (Release); the
//!   peer spins on it (Acquire), copies the ping into the pong slot and stores
//!   the pong flag; the parent spins on that and copies the reply out.
//! * Throughput: the textbook fastest single-producer single-consumer ring
//!   (Lamport's, with cached indices): [`DEPTH`] payload slots, the writer
//!   publishes `head` after each copy, the reader publishes `tail` after each
//!   read; each side re-reads the other's index only when it has run out
//!   (empty / full). It uses the ping ring, as shmslot's throughput run
//!   reuses its ping ring. Markers travel in the payload head.
//!
//! Payloads sit at the same place as in a shmslot slot (64 bytes into a
//! stride of `align64(64 + size)`), and each flag or index has its own cache
//! line, so both systems move the same payload lines.
//!
//! ```text
//!    0  ping flag (u64, own line)     seq + 1 of the sample in `ping`
//!   64  pong flag (u64, own line)     seq + 1 of the reply in `pong`
//!  128  head (u64, own line)          samples published (throughput)
//!  192  tail (u64, own line)          samples consumed (throughput)
//!  256  ping ring: DEPTH × [64 unused | payload | pad to 64]
//!       pong ring: DEPTH × [64 unused | payload | pad to 64]
//! ```
//!
//! The mapping is a POSIX shm object `/flink-bench.<uid>.<pid>.<n>.<nanos>`,
//! unlinked when the creating [`FloorMap`] drops.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::drive::{checksum, head, EchoSide, PingSide, PubSide, SubSide, MARK, STOP};
use super::error::{BenchError, Result};
use super::proc::{Idle, Watch};
use super::shmslot::DEPTH;

const PING_FLAG: usize = 0;
const PONG_FLAG: usize = 64;
const HEAD: usize = 128;
const TAIL: usize = 192;
const BUFFERS: usize = 256;

fn align64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

/// Offsets of one floor mapping for samples of `size` bytes.
#[derive(Debug, Clone, Copy)]
struct Layout {
    size: usize,
    ping: usize,
    pong: usize,
    stride: usize,
    total: usize,
}

impl Layout {
    fn new(size: usize) -> Self {
        let stride = align64(64 + size);
        let ping = BUFFERS;
        let pong = ping + DEPTH * stride;
        Self { size, ping, pong, stride, total: pong + DEPTH * stride }
    }

    /// Payload of sample `seq` in the ring at `ring`.
    #[inline]
    fn payload(&self, ring: usize, seq: u64) -> usize {
        ring + (seq as usize % DEPTH) * self.stride + 64
    }
}

/// A shared mapping of a floor layout.
#[derive(Debug)]
pub struct FloorMap {
    map: MmapRaw,
    lay: Layout,
    name: String,
    owner: bool,
}

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm{name}"))
}

fn shm_open(name: &str, create: bool) -> Result<File> {
    let io = |op, source| BenchError::Io { op, path: shm_path(name), source };
    let c = CString::new(name).map_err(|_| io("name", std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    let flags = libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW | if create { libc::O_CREAT | libc::O_EXCL } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated string; shm_open has no other
    // memory-safety preconditions.
    let fd = unsafe { libc::shm_open(c.as_ptr(), flags, 0o600) };
    if fd < 0 {
        return Err(io(if create { "create shared-memory object" } else { "open shared-memory object" }, std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by shm_open and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn shm_unlink(name: &str) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: `c` is a valid NUL-terminated string.
        unsafe { libc::shm_unlink(c.as_ptr()) };
    }
}

impl FloorMap {
    /// A fresh object name for this process.
    pub fn new_name(n: usize) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        // SAFETY: geteuid cannot fail and has no preconditions.
        let uid = unsafe { libc::geteuid() };
        format!("/flink-bench.{uid}.{}.{n}.{nanos:08x}", std::process::id())
    }

    /// The OS path of the object.
    pub fn path(&self) -> PathBuf {
        shm_path(&self.name)
    }

    /// Creates the object (`O_EXCL`, mode 0600) for samples of `size` bytes.
    pub fn create(name: &str, size: usize) -> Result<Self> {
        let lay = Layout::new(size);
        let file = shm_open(name, true)?;
        // From here on, dropping `this` unlinks the name.
        let map = file.set_len(lay.total as u64).and_then(|()| MmapOptions::new().len(lay.total).map_raw(&file));
        match map {
            Ok(map) => Ok(Self { map, lay, name: name.to_owned(), owner: true }),
            Err(source) => {
                shm_unlink(name);
                Err(BenchError::Io { op: "size and map shared-memory object", path: shm_path(name), source })
            }
        }
    }

    /// Opens the parent's object; its size must match `size`.
    pub fn open(name: &str, size: usize) -> Result<Self> {
        let lay = Layout::new(size);
        let file = shm_open(name, false)?;
        let io = |op, source| BenchError::Io { op, path: shm_path(name), source };
        let len = file.metadata().map_err(|e| io("stat shared-memory object", e))?.len();
        if len != lay.total as u64 {
            return Err(BenchError::Data(format!("{} is {len} bytes, expected {}", shm_path(name).display(), lay.total)));
        }
        let map = MmapOptions::new().len(lay.total).map_raw(&file).map_err(|e| io("map shared-memory object", e))?;
        Ok(Self { map, lay, name: name.to_owned(), owner: false })
    }

    #[inline]
    fn ptr(&self, off: usize) -> *mut u8 {
        debug_assert!(off < self.lay.total);
        // SAFETY: every offset passed is inside the `lay.total`-byte mapping
        // (computed from the layout).
        unsafe { self.map.as_mut_ptr().add(off) }
    }

    #[inline]
    fn flag(&self, off: usize) -> &AtomicU64 {
        // SAFETY: flag offsets are multiples of 64 inside the mapping, which
        // is page aligned; the flag words are only ever accessed atomically,
        // by both processes.
        unsafe { &*self.ptr(off).cast::<AtomicU64>() }
    }

    /// Copies `src` into the buffer at `off`.
    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        debug_assert!(src.len() <= self.lay.size);
        // SAFETY: the buffer at `off` is `size >= src.len()` bytes inside the
        // mapping; the flag protocol gives this side exclusive access to it
        // until it publishes the flag, so nobody reads it meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr(off), src.len()) };
    }

    /// The buffer at `off`, to read after acquiring its flag.
    #[inline]
    fn read(&self, off: usize) -> &[u8] {
        // SAFETY: `size` bytes inside the mapping; the flag protocol
        // guarantees the writer does not touch them until this side hands
        // the buffer back (by replying or clearing the flag).
        unsafe { std::slice::from_raw_parts(self.ptr(off), self.lay.size) }
    }

    /// Spins until the flag at `off` satisfies `ok`; returns its value.
    #[inline]
    fn wait_flag(&self, off: usize, what: &'static str, watch: &mut Watch<'_>, ok: impl Fn(u64) -> bool) -> Result<u64> {
        let flag = self.flag(off);
        let mut idle = Idle::new(what);
        loop {
            let v = flag.load(Ordering::Acquire);
            if ok(v) {
                return Ok(v);
            }
            idle.spin(watch)?;
        }
    }
}

impl Drop for FloorMap {
    fn drop(&mut self) {
        if self.owner {
            shm_unlink(&self.name);
        }
    }
}

/// The parent's side (ping-pong sender, throughput producer).
#[derive(Debug)]
pub struct FloorParent {
    map: FloorMap,
    next: u64,
    cached_tail: u64,
}

impl FloorParent {
    /// Wraps a created mapping.
    pub fn new(map: FloorMap) -> Self {
        Self { map, next: 0, cached_tail: 0 }
    }
}

impl PingSide for FloorParent {
    #[inline]
    fn send(&mut self, seq: u64, src: &[u8], _watch: &mut Watch<'_>) -> Result<()> {
        // The peer replied to the previous ping: it is done with the ping ring.
        self.map.write(self.map.lay.payload(self.map.lay.ping, seq), src);
        self.map.flag(PING_FLAG).store(seq + 1, Ordering::Release);
        Ok(())
    }

    #[inline]
    fn recv(&mut self, seq: u64, dst: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        self.map.wait_flag(PONG_FLAG, "waiting for the reply", watch, |v| v == seq + 1)?;
        dst.copy_from_slice(self.map.read(self.map.lay.payload(self.map.lay.pong, seq)));
        Ok(())
    }

    fn stop(&mut self, _src: &mut [u8], _watch: &mut Watch<'_>) -> Result<()> {
        self.map.flag(PING_FLAG).store(STOP + 1, Ordering::Release);
        Ok(())
    }
}

impl PubSide for FloorParent {
    #[inline]
    fn publish(&mut self, _tag: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        if self.next - self.cached_tail >= DEPTH as u64 {
            let next = self.next;
            self.cached_tail = self.map.wait_flag(TAIL, "waiting for a free slot", watch, |t| next - t < DEPTH as u64)?;
        }
        self.map.write(self.map.lay.payload(self.map.lay.ping, self.next), src);
        self.next += 1;
        self.map.flag(HEAD).store(self.next, Ordering::Release);
        Ok(())
    }
}

/// The peer's side (echo, consumer).
#[derive(Debug)]
pub struct FloorPeer {
    map: FloorMap,
    last_ping: u64,
    next: u64,
    cached_head: u64,
}

impl FloorPeer {
    /// Wraps an opened mapping.
    pub fn new(map: FloorMap) -> Self {
        Self { map, last_ping: 0, next: 0, cached_head: 0 }
    }
}

impl EchoSide for FloorPeer {
    #[inline]
    fn echo(&mut self, watch: &mut Watch<'_>) -> Result<bool> {
        let last = self.last_ping;
        let v = self.map.wait_flag(PING_FLAG, "waiting for a ping", watch, |v| v != last)?;
        if v == STOP + 1 {
            return Ok(false);
        }
        self.last_ping = v;
        let lay = self.map.lay;
        self.map.write(lay.payload(lay.pong, v - 1), self.map.read(lay.payload(lay.ping, v - 1)));
        self.map.flag(PONG_FLAG).store(v, Ordering::Release);
        Ok(true)
    }
}

impl SubSide for FloorPeer {
    #[inline]
    fn take(&mut self, watch: &mut Watch<'_>) -> Result<(u64, u64)> {
        if self.next == self.cached_head {
            let next = self.next;
            self.cached_head = self.map.wait_flag(HEAD, "waiting for a sample", watch, |h| h > next)?;
        }
        let payload = self.map.read(self.map.lay.payload(self.map.lay.ping, self.next));
        let tag = head(payload);
        let result = (tag, if tag >= MARK { 0 } else { checksum(payload) });
        self.next += 1;
        self.map.flag(TAIL).store(self.next, Ordering::Release);
        Ok(result)
    }
}
