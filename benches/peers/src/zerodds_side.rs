//! zerodds-flatdata 1.0.0-rc.7 under test: two [`PosixSlotAllocator`]
//! segments of [`DEPTH`] slots per case (ping: parent → peers, pong: peer →
//! parent), both created by the parent with `PosixSlotAllocator::create`
//! (flink files `<tag>-ping.zd` / `<tag>-pong.zd` in `spec.dir`), attached by
//! the peers with `PosixSlotAllocator::attach`.
//!
//! * Send: `reserve_slot(active_readers_mask)`, `slot_data_ptr`, copy `src`
//!   in place, `commit_in_place(handle, len)`. A full segment (`NoFreeSlot`)
//!   is retried: spinning (poll) or parked on `wait_for_change` (blocking).
//! * Receive, **in commit order**: zerodds' own scan (`next_unread_slot`)
//!   returns the lowest-index unread slot, which is not the oldest once the
//!   writer has reused low slots (see the test
//!   `next_unread_slot_is_not_in_commit_order`). So each receiver tracks the
//!   sequence number the segment's writer gives the next commit (`commit_*`
//!   numbers them from a per-segment counter starting at 0) and looks for the
//!   slot whose [`SlotHeader`] carries it, reading the header in place (it
//!   sits [`SLOT_HEADER_SIZE`] bytes before the pointer `slot_read_ptr`
//!   returns). Then the payload is read in place through `slot_read_ptr`
//!   and the slot released with `mark_read(handle, reader_index)`.
//! * Wait (blocking mode): `notify_generation()` read before looking, then
//!   `wait_for_change(generation, 100 ms)`: a cross-process futex on a word
//!   of the segment, bumped by every commit and every `mark_read`.
//!
//! Throughput reuses the ping segment; its sequence numbers continue from
//! the ping-pong, so every receiver keeps its expected number per segment.
//! Dropping the parent unlinks both shm objects and removes both flink files
//! (`shared_memory`'s owner drop); [`cleanup`] does the same for a parent
//! that did not get to drop.

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use flink::bench::drive::{check_len, copy_out, head, put_head, take_sample, EchoSide, PingSide, PubSide, SubSide, STOP};
use flink::bench::error::{system_error, BenchError, Result};
use flink::bench::proc::{Idle, Watch};
use zerodds_flatdata::{PosixSlotAllocator, SlotBackend, SlotError, SlotHandle, SLOT_HEADER_SIZE};

use crate::spec::{Spec, DEPTH};

const SYSTEM: &str = "zerodds-flatdata";
/// Longest single blocking wait; liveness is checked between two.
const SLICE: Duration = Duration::from_millis(100);
/// Readers per segment: the slot header's reader mask has 32 bits.
const MAX_READERS: usize = 32;

fn flink_paths(spec: &Spec) -> [PathBuf; 2] {
    [spec.dir.join(format!("{}-ping.zd", spec.tag)), spec.dir.join(format!("{}-pong.zd", spec.tag))]
}

/// Mask of readers `0..n` (the writer's `active_readers_mask`).
fn readers_mask(n: usize) -> Result<u32> {
    if n == 0 || n > MAX_READERS {
        return Err(BenchError::Data(format!("{SYSTEM}: {n} readers; a segment supports 1..={MAX_READERS}")));
    }
    Ok(if n == MAX_READERS { u32::MAX } else { (1u32 << n) - 1 })
}

fn create_segment(path: &PathBuf, size: usize) -> Result<PosixSlotAllocator> {
    PosixSlotAllocator::create(path, DEPTH, size).map_err(system_error(SYSTEM, format!("create segment {}", path.display())))
}

fn attach_segment(path: &PathBuf, size: usize) -> Result<PosixSlotAllocator> {
    let seg = PosixSlotAllocator::attach(path).map_err(system_error(SYSTEM, format!("attach segment {}", path.display())))?;
    let slots = seg.slot_count().map_err(system_error(SYSTEM, "read slot count"))?;
    if slots != DEPTH || seg.slot_capacity() < size {
        return Err(BenchError::Data(format!(
            "{SYSTEM}: segment {} has {slots} slots of {} bytes, expected {DEPTH} of at least {size}",
            path.display(),
            seg.slot_capacity()
        )));
    }
    Ok(seg)
}

/// Waits for a change of the segment's notify generation `seen` (read before
/// the failed attempt), at most [`SLICE`]; a wait without a change counts as
/// idle time.
#[inline]
fn park(seg: &PosixSlotAllocator, seen: u64, idle: &mut Idle, watch: &mut Watch<'_>) -> Result<()> {
    seg.wait_for_change(seen, SLICE);
    if seg.notify_generation() == seen {
        idle.check(watch)?;
    }
    Ok(())
}

/// The writing end of a segment.
struct Tx {
    seg: PosixSlotAllocator,
    /// Bits of every reader of the segment.
    mask: u32,
    blocking: bool,
}

impl Tx {
    /// Reserves a slot, copies `src` into it in place and commits it.
    #[inline]
    fn send(&self, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        let mut idle = Idle::new("waiting for a free slot");
        let handle = loop {
            let seen = if self.blocking { self.seg.notify_generation() } else { 0 };
            match self.seg.reserve_slot(self.mask) {
                Ok(h) => break h,
                Err(SlotError::NoFreeSlot) if self.blocking => park(&self.seg, seen, &mut idle, watch)?,
                Err(SlotError::NoFreeSlot) => idle.spin(watch)?,
                Err(e) => return Err(system_error(SYSTEM, "reserve a slot")(e)),
            }
        };
        let (ptr, cap) = self.seg.slot_data_ptr(handle).map_err(system_error(SYSTEM, "get the data pointer of a slot"))?;
        if src.len() > cap {
            let _ = self.seg.discard_slot(handle);
            return Err(BenchError::Data(format!("{SYSTEM}: sample of {} bytes, slot holds {cap}", src.len())));
        }
        // SAFETY: `ptr` is the data area of a slot this process has reserved
        // (it is this segment's only writer) and not yet committed, `cap >=
        // src.len()` bytes inside the mapping, which `self.seg` keeps alive.
        // Every reader has marked the slot read (or it was never written), so
        // none reads it until the commit below publishes it again.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), ptr, src.len()) };
        // zerodds publishes with a plain `ptr::write` of the slot header; this
        // keeps the compiler from moving the payload stores past it (no
        // instruction on x86-64).
        fence(Ordering::Release);
        self.seg.commit_in_place(handle, src.len()).map_err(system_error(SYSTEM, "commit a slot"))?;
        Ok(())
    }
}

/// Pointer to the first 8 bytes of one slot header (`sequence_number`,
/// `sample_size`, little-endian u32s).
struct HeaderWord(*const AtomicU64);

// SAFETY: the pointer targets the shared mapping owned by the `Rx` holding
// it, which is `Send`; it is only ever read atomically.
unsafe impl Send for HeaderWord {}

/// The reading end of a segment: delivers samples in commit order.
///
/// Where the next sample is: the writer reserves the lowest-index slot that
/// every reader has marked read (or that was never written). Readers release
/// in order, so when it reserves sample `e` the busy slots are those of
/// samples `r..e`, `r` being the slowest reader's position, `e - r < DEPTH`:
/// sample `e` lands in the lowest slot not holding one of the last `e - r`
/// samples. This reader knows the slots of all earlier samples; assuming
/// the lag `e - r` that placed the previous sample, it guesses the slot of
/// the next one (one header read in a steady state: slot 0 over and over in
/// a ping-pong, lag 0; the slot freed last in a saturated stream, lag
/// `DEPTH - 1`). On a miss it reads the other headers from slot 0 up: the
/// writer's scan runs while readers release slots, so its choice need not
/// match any single lag.
struct Rx {
    seg: PosixSlotAllocator,
    /// The header word of each slot, by slot index.
    headers: Box<[HeaderWord]>,
    index: u8,
    /// Sequence number of the next sample to deliver.
    expected: u32,
    /// Earlier samples whose slots `history` knows (at most slots - 1).
    known: usize,
    /// Slots of earlier samples: a ring of `slots` entries stored twice
    /// (entry `j` at `j` and `j + slots`), so the last `k` are one slice;
    /// `at` is the next entry.
    history: Box<[u8]>,
    at: usize,
    /// The lag that placed the previous sample, and the slot it predicts
    /// for sample `expected`.
    lag: usize,
    guess: usize,
    size: usize,
    blocking: bool,
    /// Header reads of the successful looks, and samples the guess missed,
    /// for the tests.
    #[cfg_attr(not(test), allow(dead_code))]
    reads: u64,
    #[cfg_attr(not(test), allow(dead_code))]
    missed: u64,
}

impl Rx {
    fn new(seg: PosixSlotAllocator, index: usize, size: usize, blocking: bool) -> Result<Self> {
        let index = u8::try_from(index).ok().filter(|&i| usize::from(i) < MAX_READERS).ok_or_else(|| BenchError::Data(format!("{SYSTEM}: reader index {index} out of range")))?;
        let slots = seg.slot_count().map_err(system_error(SYSTEM, "read slot count"))?;
        if slots == 0 || slots > 32 {
            return Err(BenchError::Data(format!("{SYSTEM}: {slots} slots; this reader handles 1..=32")));
        }
        let mut headers = Vec::with_capacity(slots);
        for i in 0..slots {
            let slot_index = u32::try_from(i).map_err(|_| BenchError::Data(format!("{SYSTEM}: slot index {i}")))?;
            let (data, _) = seg.slot_read_ptr(SlotHandle { segment_id: 0, slot_index }).map_err(system_error(SYSTEM, "get the read pointer of a slot"))?;
            // SAFETY: zerodds lays each slot out as a 16-byte `SlotHeader`
            // directly followed by the data that `slot_read_ptr` points at
            // (posix.rs `data_ptr` = slot start + SLOT_HEADER_SIZE), so the
            // header start is inside the same mapping.
            let hdr = unsafe { data.sub(SLOT_HEADER_SIZE) };
            if hdr.align_offset(std::mem::align_of::<AtomicU64>()) != 0 {
                return Err(BenchError::Data(format!("{SYSTEM}: slot header {i} is not 8-byte aligned")));
            }
            headers.push(HeaderWord(hdr.cast::<AtomicU64>()));
        }
        Ok(Self {
            seg,
            headers: headers.into_boxed_slice(),
            index,
            expected: 0,
            known: 0,
            history: vec![0; 2 * slots].into_boxed_slice(),
            at: 0,
            lag: 0,
            guess: 0,
            size,
            blocking,
            reads: 0,
            missed: 0,
        })
    }

    /// Slots held by the last `k` samples, as bits (`k <= known`).
    #[inline]
    fn busy(&self, k: usize) -> u32 {
        let end = self.at + self.headers.len();
        self.history[end - k..end].iter().fold(0, |bits, &s| bits | 1 << s)
    }

    /// Records that sample `expected` was in `slot` and guesses the slot of
    /// the next one: the lowest slot not held by the last `lag` samples.
    #[inline]
    fn advance(&mut self, slot: usize) {
        let n = self.headers.len();
        self.history[self.at] = slot as u8;
        self.history[self.at + n] = slot as u8;
        self.at = if self.at + 1 == n { 0 } else { self.at + 1 };
        self.known = (self.known + 1).min(n - 1);
        self.guess = (!self.busy(self.lag.min(self.known))).trailing_zeros() as usize;
    }

    /// Whether slot `i` holds sample `expected`, committed, not yet marked
    /// read by this reader.
    #[inline]
    fn holds_expected(&self, i: usize) -> bool {
        let hdr = self.headers[i].0;
        // SAFETY: `hdr` is the 8-aligned start of slot `i`'s 16-byte header
        // inside the mapping `self.seg` keeps alive. Its words are written
        // by the segment's writer (`commit_*`: plain stores of sn, size, then
        // mask + reserved) and by readers (`mark_read`: atomic `fetch_or` on
        // the mask); reading atomically is the best a reader can do. Acquire
        // keeps the later reads (mask, payload) after it.
        let word = unsafe { &*hdr }.load(Ordering::Acquire);
        // Little-endian: sequence_number is the low half, sample_size the
        // high half. A never-written slot is all zeros (size 0).
        if word as u32 != self.expected || (word >> 32) == 0 {
            return false;
        }
        // The writer clears the mask after it stores the sequence number: a
        // reused slot can show the new number with the old mask, where this
        // reader's bit is still set. Marking it read then could be undone by
        // the writer's late clear, so wait for the clear.
        // SAFETY: the mask is the u32 at offset 8 of the same header (4-aligned),
        // accessed atomically as zerodds' own `mark_read` does.
        let mask = unsafe { &*hdr.cast::<AtomicU32>().add(2) }.load(Ordering::Acquire);
        mask & (1 << self.index) == 0
    }

    /// Looks for sample `expected`: the guessed slot, then the others.
    #[inline]
    fn find(&mut self) -> Option<usize> {
        if self.holds_expected(self.guess) {
            #[cfg(test)]
            {
                self.reads += 1;
            }
            return Some(self.guess);
        }
        self.find_elsewhere()
    }

    /// The rest of [`Rx::find`]; on a hit, learns the lag that explains it.
    #[inline(never)]
    fn find_elsewhere(&mut self) -> Option<usize> {
        let i = (0..self.headers.len()).find(|&i| i != self.guess && self.holds_expected(i))?;
        #[cfg(test)]
        {
            self.missed += 1;
            self.reads += i as u64 + 1 + u64::from(i > self.guess);
        }
        // The largest lag whose prediction is slot i (predictions only grow
        // with the lag); none if the writer's scan raced with a release.
        for k in 0..=self.known {
            if (!self.busy(k)).trailing_zeros() as usize == i {
                self.lag = k;
            }
        }
        Some(i)
    }

    /// Waits for the next sample in commit order and returns its slot.
    #[inline]
    fn wait(&mut self, watch: &mut Watch<'_>) -> Result<SlotHandle> {
        let mut idle = Idle::new("waiting for a sample");
        loop {
            let seen = if self.blocking { self.seg.notify_generation() } else { 0 };
            if let Some(i) = self.find() {
                return Ok(SlotHandle { segment_id: 0, slot_index: i as u32 });
            }
            if self.blocking {
                park(&self.seg, seen, &mut idle, watch)?;
            } else {
                idle.spin(watch)?;
            }
        }
    }

    /// The payload of `handle` (from [`Rx::wait`], not yet released), in place.
    #[inline]
    fn payload(&self, handle: SlotHandle) -> Result<&[u8]> {
        let (ptr, len) = self.seg.slot_read_ptr(handle).map_err(system_error(SYSTEM, "get the read pointer of a slot"))?;
        // SAFETY: `ptr`/`len` describe the committed data of slot `handle`
        // (len <= slot capacity, inside the mapping `self.seg` keeps alive).
        // This reader's bit is not set in the slot's reader mask until
        // `release`, and the writer reserves only slots with every reader's
        // bit set, so the bytes do not change while the slice (borrowing
        // `self`) lives.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// Marks `handle` read by this reader and moves on to the next sample.
    #[inline]
    fn release(&mut self, handle: SlotHandle) -> Result<()> {
        // `mark_read` is a Relaxed `fetch_or`: keep the payload reads before
        // it (no instruction on x86-64).
        fence(Ordering::Release);
        self.seg.mark_read(handle, self.index).map_err(system_error(SYSTEM, "mark a slot read"))?;
        self.expected = self.expected.wrapping_add(1);
        self.advance(handle.slot_index as usize);
        Ok(())
    }
}

/// The parent: creates both segments, writes ping, reads pong (as reader 0).
pub struct Parent {
    ping: Tx,
    pong: Rx,
}

impl Parent {
    /// Creates the ping and pong segments in `spec.dir`.
    pub fn create(spec: &Spec) -> Result<Self> {
        let mask = readers_mask(spec.readers)?;
        let [ping_path, pong_path] = flink_paths(spec);
        let ping = create_segment(&ping_path, spec.size)?;
        let pong = create_segment(&pong_path, spec.size)?;
        Ok(Self { ping: Tx { seg: ping, mask, blocking: spec.blocking }, pong: Rx::new(pong, 0, spec.size, spec.blocking)? })
    }
}

impl PingSide for Parent {
    #[inline]
    fn send(&mut self, _seq: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        self.ping.send(src, watch)
    }

    #[inline]
    fn recv(&mut self, _seq: u64, dst: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        let h = self.pong.wait(watch)?;
        copy_out(self.pong.payload(h)?, dst)?;
        self.pong.release(h)
    }

    fn stop(&mut self, src: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        put_head(src, STOP);
        self.ping.send(src, watch)
    }
}

impl PubSide for Parent {
    #[inline]
    fn publish(&mut self, _tag: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        self.ping.send(src, watch)
    }
}

/// A peer: reads ping as reader `index`, writes pong.
pub struct Peer {
    ping: Rx,
    pong: Tx,
}

impl Peer {
    /// Attaches to the parent's segments.
    pub fn attach(spec: &Spec, index: usize) -> Result<Self> {
        if index >= spec.readers {
            return Err(BenchError::Data(format!("{SYSTEM}: reader {index} of {}", spec.readers)));
        }
        let [ping_path, pong_path] = flink_paths(spec);
        let ping = Rx::new(attach_segment(&ping_path, spec.size)?, index, spec.size, spec.blocking)?;
        let pong = Tx { seg: attach_segment(&pong_path, spec.size)?, mask: 1, blocking: spec.blocking };
        Ok(Self { ping, pong })
    }
}

impl EchoSide for Peer {
    #[inline]
    fn echo(&mut self, watch: &mut Watch<'_>) -> Result<bool> {
        let h = self.ping.wait(watch)?;
        let got = self.ping.payload(h)?;
        let more = head(got) != STOP;
        if more {
            check_len(got, self.ping.size)?;
            // The reply is written before the ping slot is released.
            self.pong.send(got, watch)?;
        }
        self.ping.release(h)?;
        Ok(more)
    }
}

impl SubSide for Peer {
    #[inline]
    fn take(&mut self, watch: &mut Watch<'_>) -> Result<(u64, u64)> {
        let h = self.ping.wait(watch)?;
        let r = take_sample(self.ping.payload(h)?, self.ping.size)?;
        self.ping.release(h)?;
        Ok(r)
    }
}

/// Removes the case's flink files and the shm objects they name (if still
/// there): what a parent that did not drop leaves. Peers only attach, so a
/// killed peer leaves nothing. Never fails.
pub fn cleanup(spec: &Spec) {
    for path in flink_paths(spec) {
        if let Ok(id) = std::fs::read_to_string(&path) {
            // `shared_memory` names objects `/shmem_<hex>`; accept only a
            // single path component.
            let id = id.trim();
            if id.len() > 1 && id.starts_with('/') && !id[1..].contains('/') {
                if let Ok(c) = CString::new(id) {
                    // SAFETY: `c` is a valid NUL-terminated string; shm_unlink
                    // has no other preconditions (ENOENT is fine).
                    unsafe { libc::shm_unlink(c.as_ptr()) };
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flink::bench::drive::{consume, echo, latency, publish, Budget};
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;

    fn budget() -> Budget {
        Budget { warmup: Duration::from_millis(5), measure: Duration::from_millis(20), min_samples: 200, max_samples: 10_000 }
    }

    /// A fresh directory and tag per test, removed when dropped.
    struct Case {
        spec: Spec,
    }

    impl Case {
        fn new(name: &str, size: usize, readers: usize, blocking: bool) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let tag = format!("zd{}x{n}", std::process::id());
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tmp-{name}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self { spec: Spec { dir, tag, size, readers, blocking } }
        }

        /// The shm object names in the case's flink files.
        fn os_ids(&self) -> Vec<String> {
            flink_paths(&self.spec).iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
        }
    }

    impl Drop for Case {
        fn drop(&mut self) {
            cleanup(&self.spec);
            let _ = std::fs::remove_dir(&self.spec.dir);
        }
    }

    fn shm_exists(id: &str) -> bool {
        Path::new("/dev/shm").join(id.trim_start_matches('/')).exists()
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir).map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
    }

    /// Ping-pong then throughput against one peer, as the harness runs them.
    fn pair(size: usize, blocking: bool) {
        // Two CPUs shared with other builds: let empty polls yield.
        flink::bench::proc::yield_when_idle(true);
        let case = Case::new("pair", size, 1, blocking);
        let spec = case.spec.clone();
        let mut parent = Parent::create(&spec).unwrap();
        let ids = case.os_ids();
        assert_eq!(ids.len(), 2);
        assert!(ids.iter().all(|id| shm_exists(id)));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let peer = std::thread::spawn(move || {
            let mut peer = Peer::attach(&spec, 0).unwrap();
            ready_tx.send(()).unwrap();
            let w = &mut || Ok(());
            echo(&mut peer, w).unwrap();
            let echo_stats = (peer.ping.reads, peer.ping.missed, peer.ping.expected);
            let c = consume(&mut peer, w).unwrap();
            let r = &peer.ping;
            (c, echo_stats, (r.reads - echo_stats.0, r.missed - echo_stats.1, r.expected - echo_stats.2))
        });
        ready_rx.recv().unwrap();
        let w = &mut || Ok(());
        let rtts = latency(&mut parent, size, &budget(), w).unwrap();
        // `latency` ran (and checked) at least 65 round trips before measuring.
        assert!(!rtts.is_empty());
        let pong = (parent.pong.reads, parent.pong.missed, parent.pong.expected);
        publish(&mut parent, size, &budget(), w).unwrap();
        let (c, ping_pp, ping_tp) = peer.join().unwrap();
        assert!(c.count > 0);
        let mut sorted = rtts.clone();
        sorted.sort_unstable();
        let per = |(reads, fallback, n): (u64, u64, u32)| format!("{:.2} header reads/sample, {fallback} of {n} missed by the guess", reads as f64 / f64::from(n));
        eprintln!(
            "size {size} blocking {blocking}: {} round trips, median rtt {} ns; throughput {} samples in {:?} ({:.2} M/s)\n  ping-pong ping: {}\n  ping-pong pong: {}\n  throughput: {}",
            rtts.len(),
            sorted[sorted.len() / 2],
            c.count,
            c.elapsed,
            c.count as f64 / c.elapsed.as_secs_f64() / 1e6,
            per(ping_pp),
            per(pong),
            per(ping_tp),
        );
        drop(parent);
        // The owner's drop removed both objects and both flink files.
        assert!(ids.iter().all(|id| !shm_exists(id)), "shm objects left: {ids:?}");
        assert!(dir_entries(&case.spec.dir).is_empty());
    }

    #[test]
    fn poll_8() {
        pair(8, false);
    }
    #[test]
    fn poll_1k() {
        pair(1024, false);
    }
    #[test]
    fn poll_1m() {
        pair(1 << 20, false);
    }
    #[test]
    fn blocking_8() {
        pair(8, true);
    }
    #[test]
    fn blocking_1k() {
        pair(1024, true);
    }
    #[test]
    fn blocking_1m() {
        pair(1 << 20, true);
    }

    /// One writer, four readers: every reader gets every sample in order.
    fn fan_out(size: usize, blocking: bool) {
        let case = Case::new("fanout", size, 4, blocking);
        let mut parent = Parent::create(&case.spec).unwrap();
        let ids = case.os_ids();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let peers: Vec<_> = (0..4)
            .map(|i| {
                let spec = case.spec.clone();
                let ready = ready_tx.clone();
                std::thread::spawn(move || {
                    let mut peer = Peer::attach(&spec, i).unwrap();
                    ready.send(()).unwrap();
                    let c = consume(&mut peer, &mut || Ok(())).unwrap();
                    (c.count, peer.ping.reads as f64 / f64::from(peer.ping.expected), peer.ping.missed)
                })
            })
            .collect();
        for _ in 0..4 {
            ready_rx.recv().unwrap();
        }
        flink::bench::proc::yield_when_idle(true);
        publish(&mut parent, size, &budget(), &mut || Ok(())).unwrap();
        let results: Vec<(u64, f64, u64)> = peers.into_iter().map(|p| p.join().unwrap()).collect();
        eprintln!("fan-out size {size} blocking {blocking}: (count, header reads/sample, missed by the guess) {results:.2?}");
        let counts: Vec<u64> = results.iter().map(|r| r.0).collect();
        assert!(counts.iter().all(|&c| c > 0));
        // Every reader saw the same samples between MARK and STOP.
        assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
        drop(parent);
        assert!(ids.iter().all(|id| !shm_exists(id)));
        assert!(dir_entries(&case.spec.dir).is_empty());
    }

    #[test]
    fn fan_out_poll_8() {
        fan_out(8, false);
    }
    #[test]
    fn fan_out_blocking_8() {
        fan_out(8, true);
    }
    #[test]
    fn fan_out_poll_1m() {
        fan_out(1 << 20, false);
    }
    #[test]
    fn fan_out_blocking_1m() {
        fan_out(1 << 20, true);
    }

    /// zerodds' `next_unread_slot` returns the lowest-index unread slot; once
    /// the writer has reused low slots that is a newer sample than the
    /// oldest unread one.
    #[test]
    fn next_unread_slot_is_not_in_commit_order() {
        let case = Case::new("order", 8, 1, false);
        let mut parent = Parent::create(&case.spec).unwrap();
        let mut peer = Peer::attach(&case.spec, 0).unwrap();
        let w = &mut || Ok(());
        let mut buf = vec![0u8; 8];
        // Fill the ring: samples 0..16 in slots 0..16.
        for seq in 0..DEPTH as u64 {
            put_head(&mut buf, seq);
            parent.publish(seq, &buf, w).unwrap();
        }
        // The reader takes 0 and 1; the writer puts 16 and 17 into slots 0 and 1.
        assert_eq!(peer.take(w).unwrap().0, 0);
        assert_eq!(peer.take(w).unwrap().0, 1);
        for seq in DEPTH as u64..DEPTH as u64 + 2 {
            put_head(&mut buf, seq);
            parent.publish(seq, &buf, w).unwrap();
        }
        // zerodds' scan offers slot 0, which holds sample 16 (sn 16) ...
        let h = peer.ping.seg.next_unread_slot(0).unwrap().unwrap();
        assert_eq!(h.slot_index, 0);
        let (hdr, bytes) = peer.ping.seg.read_slot(h).unwrap();
        assert_eq!(hdr.sequence_number, 16);
        assert_eq!(head(&bytes), 16);
        // ... while sample 2 is still unread in slot 2; the sn-tracking reader
        // delivers 2, 3, ..., 17 in order.
        for seq in 2..DEPTH as u64 + 2 {
            assert_eq!(peer.take(w).unwrap().0, seq);
        }
        assert!(peer.ping.seg.next_unread_slot(0).unwrap().is_none());
    }

    /// The u32 sequence number wraps after 2^32 commits per segment (430 s
    /// at 10 M/s; a bench phase is far shorter). The reader survives it:
    /// start the ping counter just below the wrap and stream through it.
    #[test]
    fn sequence_number_wrap() {
        let case = Case::new("wrap", 8, 1, false);
        let mut parent = Parent::create(&case.spec).unwrap();
        let mut peer = Peer::attach(&case.spec, 0).unwrap();
        let start = u32::MAX - 40;
        // SAFETY: (test only) zerodds' segment header is 0x20 bytes before
        // slot 0, its `next_sn` an AtomicU32 at offset 0x0c; nothing else
        // uses the segment yet.
        unsafe {
            let base = peer.ping.headers[0].0.cast::<u8>().sub(0x20);
            (*base.add(0x0c).cast::<AtomicU32>()).store(start, Ordering::Relaxed);
        }
        peer.ping.expected = start;
        let w = &mut || Ok(());
        let mut buf = vec![0u8; 8];
        let (mut sent, mut got) = (0u64, 0u64);
        while got < 200 {
            // Keep up to 10 in flight so the ring wraps and slots get reused.
            while sent < 200 && sent - got < 10 {
                put_head(&mut buf, sent);
                parent.publish(sent, &buf, w).unwrap();
                sent += 1;
            }
            assert_eq!(peer.take(w).unwrap().0, got);
            got += 1;
        }
        assert_eq!(peer.ping.expected, start.wrapping_add(200));
    }

    /// A killed peer leaves nothing (it only attached); a parent that never
    /// dropped leaves its flink files and shm objects, which `cleanup` removes.
    #[test]
    fn cleanup_removes_everything() {
        // Nothing there: must not fail.
        cleanup(&Spec { dir: PathBuf::from("/nonexistent-zd-dir"), tag: "none".into(), size: 8, readers: 1, blocking: false });

        let case = Case::new("cleanup", 4096, 1, false);
        let parent = Parent::create(&case.spec).unwrap();
        let ids = case.os_ids();
        assert_eq!(ids.len(), 2);
        assert!(ids.iter().all(|id| id.starts_with("/shmem_") && shm_exists(id)), "{ids:?}");
        let before = dir_entries(&case.spec.dir);

        // A real peer process attaches and is SIGKILLed.
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args(["--ignored", "--exact", "zerodds_side::tests::attached_child", "--nocapture", "--test-threads=1"])
            .env("ZD_CHILD_DIR", &case.spec.dir)
            .env("ZD_CHILD_TAG", &case.spec.tag)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::BufRead;
            let out = child.stdout.take().unwrap();
            let mut lines = std::io::BufReader::new(out).lines();
            loop {
                let line = lines.next().expect("child output").unwrap();
                if line.contains("ZD-CHILD-ATTACHED") {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(dir_entries(&case.spec.dir), before, "a killed peer changed the dir");
        assert!(ids.iter().all(|id| shm_exists(id)), "a killed peer removed an object");

        // The parent dies without dropping: everything stays ...
        std::mem::forget(parent);
        assert!(ids.iter().all(|id| shm_exists(id)));
        // ... until cleanup.
        cleanup(&case.spec);
        assert!(ids.iter().all(|id| !shm_exists(id)), "left in /dev/shm: {ids:?}");
        assert!(dir_entries(&case.spec.dir).is_empty());
        cleanup(&case.spec); // twice is fine
    }

    /// Child of `cleanup_removes_everything`: attaches and waits to be killed.
    #[test]
    #[ignore]
    fn attached_child() {
        let (Ok(dir), Ok(tag)) = (std::env::var("ZD_CHILD_DIR"), std::env::var("ZD_CHILD_TAG")) else {
            return;
        };
        let spec = Spec { dir: PathBuf::from(dir), tag, size: 4096, readers: 1, blocking: false };
        let _peer = Peer::attach(&spec, 0).unwrap();
        println!("ZD-CHILD-ATTACHED");
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod guess_cost {
    use super::*;

    #[test]
    #[ignore]
    /// Time of `Rx::advance` (remember the slot, guess the next) per lag.
    fn guess_cost() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tmp-plan");
        std::fs::create_dir_all(&dir).unwrap();
        let spec = Spec { dir: dir.clone(), tag: "zdplan".into(), size: 8, readers: 1, blocking: false };
        let parent = Parent::create(&spec).unwrap();
        let mut peer = Peer::attach(&spec, 0).unwrap();
        let rx = &mut peer.ping;
        for (pattern, lag, f) in [("cyclic", 15, (|s: u64| (s % 16) as u8) as fn(u64) -> u8), ("slot0", 0, |_| 0u8), ("lag 3", 3, |s: u64| ((s * 7) % 4) as u8)] {
            rx.lag = lag;
            let t = std::time::Instant::now();
            let n = 1_000_000u64;
            for s in 0..n {
                rx.advance(std::hint::black_box(f(s) as usize));
                std::hint::black_box(rx.guess);
            }
            eprintln!("guess {pattern}: {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
        }
        drop(peer);
        drop(parent);
        std::fs::remove_dir(&dir).unwrap();
    }
}
