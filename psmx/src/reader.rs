//! PSMX reader endpoints: a thread per reader endpoint takes samples from
//! the topic's ring in order and stores them in Cyclone's reader cache.
//!
//! The thread parks on the ring's futex when nothing is there (after the
//! ring's short spin budget), so an idle topic costs no CPU and a commit
//! costs the writer a system call only while a reader is parked.
//!
//! What a slot says is untrusted: the metadata is copied out and checked
//! (state, reserved field, size within the slot) before Cyclone sees it.
//! The payload is copied out of the slot too, so the slot goes back to the
//! ring at once: a ring reader holds at most one sample in place, and a
//! reader cache that keeps samples (KEEP_LAST, an application that never
//! takes) must never hold up the writers. Holding several samples in place
//! needs the ring protocol to release slots out of order (see the README).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shmslot::{PosixSlotAllocator, SlotBackend, SlotError, SlotHandle};

use crate::ddsc::{self, Ddsc};
use crate::ffi::{self, DdsEntity, DdsReturn, Endpoint, EndpointOps, Guid, LoanedSample, Metadata};
use crate::instance::QosView;
use crate::loan::{AlignedBuf, Bytes, Loan, HEADER, PID_AT};

/// How long the thread parks before it looks at its stop flag again.
const PARK: Duration = Duration::from_millis(25);

/// How long a sample waits for Cyclone to discover its writer.
const UNKNOWN_WRITER_WAIT: Duration = Duration::from_secs(5);

/// What the endpoint and its thread share.
pub struct Shared {
    pub ring: PosixSlotAllocator,
    pub reader: u8,
    stop: AtomicBool,
    ignore_local: u32,
    /// Samples stored in Cyclone's cache.
    pub delivered: AtomicU64,
    /// Samples filtered out (the reader ignores its participant's or
    /// process's samples).
    pub ignored: AtomicU64,
    /// Slots whose contents failed the checks (skipped, logged once).
    pub rejected: AtomicU64,
}

/// `dds_psmx_endpoint_t` of a reader and what the plugin keeps for it.
#[repr(C)]
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
        ring,
        reader,
        stop: AtomicBool::new(false),
        ignore_local: qos.ignore_local,
        delivered: AtomicU64::new(0),
        ignored: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
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
    let shared = Arc::clone(&r.shared);
    let origin = ep as usize;
    let spawned = std::thread::Builder::new().name(format!("psmx-shmslot-{reader}")).spawn(move || run(&shared, d, reader, guid, origin as *mut Endpoint));
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

/// The receive loop of one reader endpoint.
fn run(s: &Shared, d: &'static Ddsc, reader: DdsEntity, guid: Guid, ep: *mut Endpoint) {
    let pid = std::process::id();
    let mut complained = false;
    while !s.stop.load(Ordering::Relaxed) {
        match s.ring.next_unread_slot_timeout(s.reader, PARK) {
            Ok(Some(h)) => {
                deliver(s, d, reader, &guid, pid, ep, h, &mut complained);
                if let Err(e) = s.ring.mark_read(h, s.reader) {
                    complain(d, &mut complained, &format!("ring {}: release: {e}", s.ring.flink_path().display()));
                }
            }
            Ok(None) => {}
            // No writer attached: wait for one to commit.
            Err(SlotError::WritersGone) => {
                let g = s.ring.notify_generation();
                s.ring.wait_for_change(g, PARK);
            }
            Err(e) => {
                complain(d, &mut complained, &format!("ring {}: {e}", s.ring.flink_path().display()));
                std::thread::sleep(PARK);
            }
        }
    }
    let _ = s.ring.unregister_reader(s.reader);
}

fn complain(d: &Ddsc, complained: &mut bool, msg: &str) {
    if !std::mem::replace(complained, true) {
        d.log(ffi::LC_WARNING, msg);
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

#[allow(clippy::too_many_arguments)]
fn deliver(s: &Shared, d: &Ddsc, reader: DdsEntity, guid: &Guid, pid: u32, ep: *mut Endpoint, h: SlotHandle, complained: &mut bool) {
    let (ptr, len) = match s.ring.slot_read_ptr(h) {
        Ok(x) => x,
        Err(e) => {
            complain(d, complained, &format!("ring {}: {e}", s.ring.flink_path().display()));
            return;
        }
    };
    if len < HEADER {
        s.rejected.fetch_add(1, Ordering::Relaxed);
        complain(d, complained, &format!("ring {}: a {len}-byte sample (shorter than the {HEADER}-byte header), skipped", s.ring.flink_path().display()));
        return;
    }
    // SAFETY: the held slot's region is `len >= HEADER` bytes, readable until
    // mark_read; both reads copy (another process may change the bytes).
    let (meta, writer_pid) = unsafe { (ptr.cast::<Metadata>().read_unaligned(), ptr.add(PID_AT).cast::<u32>().read_unaligned()) };
    let size = match check(&meta, len) {
        Ok(n) => n,
        Err(e) => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            complain(d, complained, &format!("ring {}: {e}, skipped", s.ring.flink_path().display()));
            return;
        }
    };
    let ignore = match s.ignore_local {
        ffi::IGNORELOCAL_PARTICIPANT => meta.guid.v[..12] == guid.v[..12],
        ffi::IGNORELOCAL_PROCESS => writer_pid == pid,
        _ => false,
    };
    if ignore {
        s.ignored.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Some(payload) = AlignedBuf::zeroed(size) else {
        complain(d, complained, &format!("out of memory for a {size}-byte sample"));
        return;
    };
    // SAFETY: `size` bytes lie inside the held region (checked), the buffer
    // holds `size` bytes, and the two cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(ptr.add(HEADER), payload.as_ptr(), size) };
    let mut meta = Box::new(meta);
    let (m, p) = (std::ptr::from_mut(&mut *meta), payload.as_ptr());
    let loan = Box::into_raw(Loan::new(ep, m, p, Bytes::Heap { meta, payload })).cast::<LoanedSample>();
    if s.stop.load(Ordering::Relaxed) {
        // SAFETY: our one reference to the loan just made.
        unsafe { Loan::unref(loan) };
        return;
    }
    // Cyclone drops a sample whose writer it does not know yet (NOT_FOUND):
    // the ring can be faster than discovery. The sample waits for it, up to
    // UNKNOWN_WRITER_WAIT, holding up the ring as a slow reader would (a
    // reliable writer waits, nothing is lost).
    let since = std::time::Instant::now();
    let rc = loop {
        // SAFETY: a live reader entity and a fully initialised loan; Cyclone
        // takes its own reference if it keeps the loan.
        let rc = unsafe { (d.reader_store_loaned_sample)(reader, loan) };
        if rc != ffi::DDS_RETCODE_NOT_FOUND || since.elapsed() > UNKNOWN_WRITER_WAIT || s.stop.load(Ordering::Relaxed) {
            break rc;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    match rc {
        ffi::DDS_RETCODE_OK => {
            s.delivered.fetch_add(1, Ordering::Relaxed);
        }
        ffi::DDS_RETCODE_NOT_FOUND => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            complain(d, complained, &format!("ring {}: a sample of a writer Cyclone did not discover within {UNKNOWN_WRITER_WAIT:?}, dropped", s.ring.flink_path().display()));
        }
        _ => {}
    }
    // SAFETY: gives back our reference.
    unsafe { Loan::unref(loan) };
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
