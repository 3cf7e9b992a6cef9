//! PSMX reader endpoints: a thread per reader endpoint takes samples from
//! the topic's ring in order and stores them in Cyclone's reader cache.
//!
//! The thread parks on the ring's futex when nothing is there (after the
//! ring's short spin budget), so an idle topic costs no CPU and a commit
//! costs the writer a system call only while a reader is parked.
//!
//! What a slot says is untrusted: the metadata is copied out and checked
//! (state, reserved field, size within the slot) before Cyclone sees it.
//!
//! A raw sample (a memcpy-safe type) is stored **in place**: the loan's
//! sample pointer is the slot's payload, the slot is kept for it
//! (`PosixSlotAllocator::keep`) and goes back to the ring when Cyclone frees
//! the loan. Writers skip a kept slot, so a reader cache that keeps loans
//! (KEEP_LAST, an application that never takes) never holds them up; a
//! reader keeps at most a quarter of the ring's slots (at most 16), and
//! samples beyond that are copied out, counted.
//!
//! A serialized sample is copied out: Cyclone copies it into its own
//! sample anyway (`serdata_default_from_psmx`), after checking the CDR in
//! the loan's buffer — which, in a slot, another process could change
//! between the check and the copy. A private copy closes that window.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shmslot::{PosixSlotAllocator, SlotBackend, SlotError, SlotHandle};

/// Whether a received sample's slot is still the reader's to release, or
/// was kept in place for its loan.
enum Outcome {
    Release,
    Kept,
}

use crate::ddsc::{self, Ddsc};
use crate::ffi::{self, DdsEntity, DdsReturn, Endpoint, EndpointOps, Guid, LoanedSample, Metadata};
use crate::instance::QosView;
use crate::loan::{AlignedBuf, Bytes, Loan, HEADER, PID_AT};

/// How long the thread parks before it looks at its stop flag again.
const PARK: Duration = Duration::from_millis(25);

/// Longest wait, per sample, for the application to give back a loan when
/// the reader keeps its limit of samples in place.
const KEEP_WAIT: Duration = Duration::from_millis(2);
/// What the waits of [`KEEP_WAIT`] that end without a loan given back may
/// cost at most: this much per second (1 %). An application that takes its
/// loans is waited for (its cache drains; the ring holds the writer back
/// meanwhile, as a reliable reader's does); one that never takes costs the
/// writers at most this, and its further samples are copied.
const KEEP_WAIT_PER_SECOND: Duration = Duration::from_millis(10);

/// How long the first sample of a writer Cyclone does not know waits for
/// discovery before it is stored with default writer QoS.
const UNKNOWN_WRITER_WAIT: Duration = Duration::from_millis(100);

/// What the endpoint and its thread share.
#[derive(Debug)]
pub struct Shared {
    pub ring: Arc<PosixSlotAllocator>,
    pub reader: u8,
    stop: AtomicBool,
    ignore_local: u32,
    /// Samples stored in Cyclone's cache.
    pub delivered: AtomicU64,
    /// Of those, raw samples stored in place (their slot kept for the loan).
    pub in_place: AtomicU64,
    /// Raw samples copied out because the reader kept its limit already.
    pub over_limit: AtomicU64,
    /// Samples filtered out (the reader ignores its participant's or
    /// process's samples).
    pub ignored: AtomicU64,
    /// Slots whose contents failed the checks (skipped, logged once).
    pub rejected: AtomicU64,
    /// Samples stored with default writer QoS (their writer was unknown to
    /// Cyclone: not discovered yet, or gone).
    pub unknown: AtomicU64,
}

/// `dds_psmx_endpoint_t` of a reader and what the plugin keeps for it.
#[repr(C)]
#[derive(Debug)]
pub struct ReaderEp {
    pub c: Endpoint,
    pub shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

const OPS: EndpointOps = EndpointOps { request_loan: None, write: None, take: Some(take), on_data_available: Some(on_data_available), write_with_key: None };

/// A reader endpoint on `ring`: registers a ring reader at once (samples
/// committed from now on wait for it); its thread starts when Cyclone names
/// the DDS reader (`on_data_available`).
///
/// # Errors
/// The ring's reader table is full (64 reader endpoints per topic ring).
pub fn create(ring: PosixSlotAllocator, qos: &QosView) -> Result<*mut Endpoint, String> {
    let reader = ring.register_reader().map_err(|e| format!("ring {}: {e}", ring.flink_path().display()))?;
    let shared = Arc::new(Shared {
        ring: Arc::new(ring),
        reader,
        stop: AtomicBool::new(false),
        ignore_local: qos.ignore_local,
        delivered: AtomicU64::new(0),
        in_place: AtomicU64::new(0),
        over_limit: AtomicU64::new(0),
        ignored: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
    });
    let ep = Box::new(ReaderEp { c: Endpoint { ops: OPS, psmx_topic: std::ptr::null_mut(), endpoint_type: ffi::ENDPOINT_TYPE_UNSET }, shared, thread: None });
    Ok(Box::into_raw(ep).cast())
}

/// Stops the thread (at once: it delivers nothing more; it leaves within
/// one park) and frees the endpoint.
///
/// # Safety
/// `ep` is a reader endpoint [`create`] made, not used afterwards.
pub unsafe fn delete(ep: *mut Endpoint) {
    // SAFETY: the caller's contract.
    let mut ep = unsafe { Box::from_raw(ep.cast::<ReaderEp>()) };
    ep.shared.stop.store(true, Ordering::SeqCst);
    if let Some(t) = ep.thread.take() {
        // Deleted from inside our own delivery (a listener that deletes its
        // reader): the thread ends by itself once the callback returns.
        if t.thread().id() != std::thread::current().id() {
            let _ = t.join();
        }
    }
    if let Ok(d) = ddsc::get() {
        let s = &ep.shared;
        d.log(
            ffi::LC_INFO,
            &format!(
                "reader endpoint on ring {} deleted: {} samples stored ({} in place, {} raw ones copied beyond the keep limit, {} of writers Cyclone did not know), {} ignored (own participant or process), {} rejected",
                s.ring.flink_path().display(),
                s.delivered.load(Ordering::Relaxed),
                s.in_place.load(Ordering::Relaxed),
                s.over_limit.load(Ordering::Relaxed),
                s.unknown.load(Ordering::Relaxed),
                s.ignored.load(Ordering::Relaxed),
                s.rejected.load(Ordering::Relaxed)
            ),
        );
    }
}

unsafe extern "C" fn take(_ep: *mut Endpoint) -> *mut LoanedSample {
    // Cyclone does not call it (delivery is through `on_data_available`).
    std::ptr::null_mut()
}

unsafe extern "C" fn on_data_available(ep: *mut Endpoint, reader: DdsEntity) -> DdsReturn {
    let Ok(d) = ddsc::get() else { return ffi::DDS_RETCODE_ERROR };
    // SAFETY: Cyclone passes a reader endpoint `create` made, once, before
    // any other use of it by another thread.
    let r = unsafe { &mut *ep.cast::<ReaderEp>() };
    let mut guid = Guid::default();
    // SAFETY: a live reader entity and a writable guid.
    let rc = unsafe { (d.get_guid)(reader, &mut guid) };
    if rc != ffi::DDS_RETCODE_OK {
        return rc;
    }
    let rx = Receiver { shared: Arc::clone(&r.shared), ddsc: d, reader, guid, pid: std::process::id(), origin: ep as usize, complained: false, unknown_writer: None, wait_budget: KEEP_WAIT_PER_SECOND, budget_at: std::time::Instant::now() };
    let spawned = spawn_without_signals(format!("psmx-shmslot-{reader}"), move || rx.run());
    match spawned {
        Ok(t) => {
            r.thread = Some(t);
            ffi::DDS_RETCODE_OK
        }
        Err(e) => {
            d.log(ffi::LC_ERROR, &format!("cannot start the receive thread: {e}"));
            ffi::DDS_RETCODE_OUT_OF_RESOURCES
        }
    }
}

/// Starts a thread with every signal blocked, as Cyclone's own threads are:
/// a process-directed signal (SIGTERM, SIGINT) goes to a thread of the
/// application, never to ours. (ddsperf wakes its signal-handling thread
/// with `kill(getpid(), SIGTERM)` and blocks SIGTERM only in its own
/// threads: delivered to a receive thread with it unblocked, it ended the
/// process.)
fn spawn_without_signals<F: FnOnce() + Send + 'static>(name: String, f: F) -> std::io::Result<JoinHandle<()>> {
    // SAFETY: sigset_t is plain data; sigfillset initialises it, and
    // pthread_sigmask only changes this thread's mask (restored below, the
    // new thread inherits the full one).
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let spawned = std::thread::Builder::new().name(name).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        spawned
    }
}

/// Checks metadata read from a slot of `len` bytes: a valid state, the
/// reserved field zero, the size inside the slot.
pub fn check(meta: &Metadata, len: usize) -> Result<usize, String> {
    if meta.sample_state == ffi::SAMPLE_STATE_UNINITIALIZED || meta.sample_state > ffi::SAMPLE_STATE_LAST {
        return Err(format!("sample state {} (expected 1 to 4)", meta.sample_state));
    }
    if meta.data_type != 0 {
        return Err(format!("data type {} (reserved, must be 0)", meta.data_type));
    }
    let size = meta.sample_size as usize;
    if HEADER + size > len {
        return Err(format!("sample size {size} exceeds the slot's {} payload bytes", len.saturating_sub(HEADER)));
    }
    Ok(size)
}

/// The receive thread of one reader endpoint.
struct Receiver {
    shared: Arc<Shared>,
    ddsc: &'static Ddsc,
    /// The DDS reader samples go to.
    reader: DdsEntity,
    /// Its GUID (the first 12 bytes name its participant).
    guid: Guid,
    pid: u32,
    /// The endpoint, as the loans' origin (an address Cyclone compares,
    /// never dereferenced here).
    origin: usize,
    /// Whether a warning was logged already (one per thread).
    complained: bool,
    /// The last writer Cyclone did not know: its further samples are stored
    /// with default writer QoS at once.
    unknown_writer: Option<Guid>,
    /// What is left of this second's waiting for loans (see
    /// [`KEEP_WAIT_PER_SECOND`]), and when it was last topped up.
    wait_budget: Duration,
    budget_at: std::time::Instant,
}

impl Receiver {
    fn run(mut self) {
        let s = Arc::clone(&self.shared);
        while !s.stop.load(Ordering::Relaxed) {
            match s.ring.next_unread_slot_timeout(s.reader, PARK) {
                Ok(Some(h)) => {
                    if let Outcome::Release = self.deliver(h) {
                        if let Err(e) = s.ring.mark_read(h, s.reader) {
                            self.complain(&format!("release: {e}"));
                        }
                    }
                }
                Ok(None) => {}
                // No writer attached: wait for one to commit.
                Err(SlotError::WritersGone) => {
                    let g = s.ring.notify_generation();
                    s.ring.wait_for_change(g, PARK);
                }
                Err(e) => {
                    self.complain(&e.to_string());
                    std::thread::sleep(PARK);
                }
            }
        }
        let _ = s.ring.unregister_reader(s.reader);
    }

    /// Logs the first problem of this thread (a scribbled ring would
    /// otherwise flood the log).
    fn complain(&mut self, msg: &str) {
        if !std::mem::replace(&mut self.complained, true) {
            self.ddsc.log(ffi::LC_WARNING, &format!("ring {}: {msg}", self.shared.ring.flink_path().display()));
        }
    }

    /// Hands the held sample `h` to Cyclone (or skips it: bad metadata, or
    /// a sample this reader ignores).
    fn deliver(&mut self, h: SlotHandle) -> Outcome {
        let s = Arc::clone(&self.shared);
        let (ptr, len) = match s.ring.slot_read_ptr(h) {
            Ok(x) => x,
            Err(e) => {
                self.complain(&e.to_string());
                return Outcome::Release;
            }
        };
        if len < HEADER {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            self.complain(&format!("a {len}-byte sample (shorter than the {HEADER}-byte header), skipped"));
            return Outcome::Release;
        }
        // SAFETY: the held slot's region is `len >= HEADER` bytes, readable
        // until mark_read; both reads copy (another process may change the
        // bytes).
        let (meta, writer_pid) = unsafe { (ptr.cast::<Metadata>().read_unaligned(), ptr.add(PID_AT).cast::<u32>().read_unaligned()) };
        let size = match check(&meta, len) {
            Ok(n) => n,
            Err(e) => {
                s.rejected.fetch_add(1, Ordering::Relaxed);
                self.complain(&format!("{e}, skipped"));
                return Outcome::Release;
            }
        };
        let ignore = match s.ignore_local {
            ffi::IGNORELOCAL_PARTICIPANT => meta.guid.v[..12] == self.guid.v[..12],
            ffi::IGNORELOCAL_PROCESS => writer_pid == self.pid,
            _ => false,
        };
        if ignore {
            s.ignored.fetch_add(1, Ordering::Relaxed);
            return Outcome::Release;
        }
        let meta_guid = meta.guid;
        let mut meta = Box::new(meta);
        let m = std::ptr::from_mut(&mut *meta);
        let raw = matches!(meta.sample_state, ffi::SAMPLE_STATE_RAW_KEY | ffi::SAMPLE_STATE_RAW_DATA);
        let kept = if raw { self.keep(h) } else { None };
        let (outcome, loan) = if let Some(kept) = kept {
            s.in_place.fetch_add(1, Ordering::Relaxed);
            // SAFETY: HEADER < len: the payload starts inside the slot.
            let p = unsafe { ptr.add(HEADER) }.cast_mut();
            (Outcome::Kept, Loan::new(self.origin as *mut Endpoint, m, p, Bytes::Kept { ring: Arc::clone(&s.ring), kept, meta }))
        } else {
            // SAFETY: `size` bytes from HEADER lie inside the held region
            // (checked above).
            let Some(payload) = (unsafe { AlignedBuf::copy_of(ptr.add(HEADER), size) }) else {
                self.complain(&format!("out of memory for a {size}-byte sample"));
                return Outcome::Release;
            };
            let p = payload.as_ptr();
            (Outcome::Release, Loan::new(self.origin as *mut Endpoint, m, p, Bytes::Heap { meta, payload }))
        };
        let loan = Box::into_raw(loan).cast::<LoanedSample>();
        match self.store(loan, meta_guid) {
            ffi::DDS_RETCODE_OK => {
                s.delivered.fetch_add(1, Ordering::Relaxed);
            }
            rc => {
                s.rejected.fetch_add(1, Ordering::Relaxed);
                self.complain(&format!("Cyclone refused a sample (return code {rc})"));
            }
        }
        // SAFETY: gives back our reference (a kept slot goes back to the
        // ring with the last one).
        unsafe { Loan::unref(loan) };
        outcome
    }

    /// Keeps the held raw sample `h` in place for a loan; at the reader's
    /// limit it waits a little for the application to give one back (within
    /// the wait budget), then gives up: `None`, copy it.
    fn keep(&mut self, h: SlotHandle) -> Option<shmslot::Kept> {
        let s = Arc::clone(&self.shared);
        // Below the limit: no clock, no wait.
        match s.ring.keep(h, s.reader) {
            Ok(Some(k)) => return Some(k),
            Err(e) => {
                self.complain(&format!("keep: {e}"));
                return None;
            }
            Ok(None) => {}
        }
        let now = std::time::Instant::now();
        self.wait_budget = (self.wait_budget + (now - self.budget_at) * KEEP_WAIT_PER_SECOND.as_millis() as u32 / 1000).min(KEEP_WAIT_PER_SECOND);
        self.budget_at = now;
        let wait = self.wait_budget.min(KEEP_WAIT);
        let kept = s.ring.keep_timeout(h, s.reader, wait);
        if !matches!(kept, Ok(Some(_))) {
            // Only a wait in vain counts: one that ended with a loan given
            // back was the application taking.
            self.wait_budget -= (std::time::Instant::now() - now).min(self.wait_budget);
        }
        match kept {
            Ok(Some(k)) => Some(k),
            Ok(None) => {
                s.over_limit.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.complain(&format!("keep: {e}"));
                None
            }
        }
    }

    /// Stores `loan` in the reader's cache. Cyclone drops a sample whose
    /// writer it does not know (NOT_FOUND): the ring can be faster than
    /// discovery, and a writer that wrote and left is gone from Cyclone while
    /// its samples are still in the ring. The first such sample of a writer
    /// waits for discovery up to UNKNOWN_WRITER_WAIT; then it and the
    /// writer's further samples are stored with default writer QoS
    /// (ownership strength 0, auto-dispose, no lifespan): nothing a reliable
    /// writer wrote is lost.
    fn store(&mut self, loan: *mut LoanedSample, writer: Guid) -> DdsReturn {
        let since = std::time::Instant::now();
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return ffi::DDS_RETCODE_ERROR; // deleted: deliver nothing more
            }
            // SAFETY: a live reader entity and a fully initialised loan;
            // Cyclone takes its own reference if it keeps the loan.
            let rc = unsafe { (self.ddsc.reader_store_loaned_sample)(self.reader, loan) };
            if rc != ffi::DDS_RETCODE_NOT_FOUND {
                return rc;
            }
            if self.unknown_writer == Some(writer) || since.elapsed() > UNKNOWN_WRITER_WAIT {
                self.unknown_writer = Some(writer);
                self.shared.unknown.fetch_add(1, Ordering::Relaxed);
                // SAFETY: as above.
                return unsafe { (self.ddsc.reader_store_loaned_sample_wr_metadata)(self.reader, loan, 0, true, ffi::DDS_INFINITY) };
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_from_a_slot_is_checked() {
        let ok = Metadata { sample_state: 2, sample_size: 100, ..Metadata::default() };
        assert_eq!(check(&ok, HEADER + 100), Ok(100));
        assert!(check(&ok, HEADER + 99).unwrap_err().contains("exceeds"));
        assert!(check(&Metadata { sample_state: 0, ..ok }, 1000).unwrap_err().contains("state 0"));
        assert!(check(&Metadata { sample_state: 5, ..ok }, 1000).unwrap_err().contains("state 5"));
        assert!(check(&Metadata { data_type: 1, ..ok }, 1000).unwrap_err().contains("reserved"));
        assert!(check(&Metadata { sample_size: u32::MAX, ..ok }, 1000).is_err());
    }
}
