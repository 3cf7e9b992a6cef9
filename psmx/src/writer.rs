//! PSMX writer endpoints: a slot is the loan, `write` commits it.
//!
//! `request_loan` reserves a slot of the topic's ring (growing the ring when
//! the sample is larger than its slots) and hands Cyclone pointers into it:
//! Cyclone serialises or copies the sample and fills in the metadata in
//! place, and `write` publishes the slot — no copy in the plugin. Only when
//! the ring is full at loan time does the loan live on the heap: a reliable
//! writer's `write` then waits for a slot (at most `max_blocking_time`) and
//! copies; a best-effort writer's drops the sample, counted.

use std::sync::Arc;
use std::time::Duration;

use shmslot::{PosixSlotAllocator, SlotBackend, SlotError, ALL_READERS};

use crate::ddsc;
use crate::ffi::{self, DdsReturn, Endpoint, EndpointOps, LoanedSample, Metadata};
use crate::instance::QosView;
use crate::loan::{Bytes, Loan, HEADER, PID_AT};

/// `dds_psmx_endpoint_t` of a writer and what the plugin keeps for it.
#[repr(C)]
#[derive(Debug)]
pub struct WriterEp {
    pub c: Endpoint,
    pub ring: Arc<PosixSlotAllocator>,
    /// Reliable: `write` waits for room (up to `max_blocking`).
    pub reliable: bool,
    pub max_blocking: Duration,
    pid: u32,
}

const OPS: EndpointOps = EndpointOps { request_loan: Some(request_loan), write: Some(write), take: None, on_data_available: None, write_with_key: None };

/// A writer endpoint on `ring`.
///
/// # Errors
/// None today; the signature matches the reader's.
pub fn create(ring: PosixSlotAllocator, qos: &QosView) -> Result<*mut Endpoint, String> {
    let max_blocking = if qos.max_blocking_ns < 0 || qos.max_blocking_ns == ffi::DDS_INFINITY { Duration::from_secs(3600) } else { Duration::from_nanos(qos.max_blocking_ns as u64) };
    let ep = Box::new(WriterEp {
        c: Endpoint { ops: OPS, psmx_topic: std::ptr::null_mut(), endpoint_type: ffi::ENDPOINT_TYPE_UNSET },
        ring: Arc::new(ring),
        reliable: qos.reliable,
        max_blocking,
        pid: std::process::id(),
    });
    Ok(Box::into_raw(ep).cast())
}

/// Frees a writer endpoint (its ring handle goes with the last loan).
///
/// # Safety
/// `ep` is a writer endpoint [`create`] made, not used afterwards.
pub unsafe fn delete(ep: *mut Endpoint) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(ep.cast::<WriterEp>()) });
}

/// A slot loan of at least `len` payload bytes, or `None` when the ring is
/// full right now.
fn slot_loan(w: &WriterEp, ep: *mut Endpoint, len: usize) -> Result<Option<Box<Loan>>, SlotError> {
    match w.ring.reserve_for(HEADER + len, ALL_READERS) {
        Ok((handle, ptr, _cap)) => {
            // SAFETY: the loan's region is at least HEADER + len bytes
            // (reserve_for grew the ring first), ours until commit or
            // discard; the pid field lies inside the header.
            unsafe { ptr.add(PID_AT).cast::<u32>().write_unaligned(w.pid) };
            let ring = Arc::clone(&w.ring);
            // SAFETY: inside the same region (payload at HEADER).
            let sample = unsafe { ptr.add(HEADER) };
            Ok(Some(Loan::new(ep, ptr.cast::<Metadata>(), sample, Bytes::Slot { ring, handle, committed: false })))
        }
        Err(SlotError::NoFreeSlot) => Ok(None),
        Err(e) => Err(e),
    }
}

unsafe extern "C" fn request_loan(ep: *mut Endpoint, size: u32) -> *mut LoanedSample {
    // SAFETY: Cyclone passes a writer endpoint `create` made.
    let w = unsafe { &*ep.cast::<WriterEp>() };
    let loan = match slot_loan(w, ep, size as usize) {
        Ok(Some(l)) => Some(l),
        // Full: the write waits for a slot (reliable) or drops (best effort).
        Ok(None) => Loan::on_heap(ep, size as usize),
        Err(e) => {
            ddsc::log(ffi::LC_ERROR, &format!("request_loan of {size} bytes on ring {}: {e}", w.ring.flink_path().display()));
            None
        }
    };
    loan.map_or(std::ptr::null_mut(), |l| Box::into_raw(l).cast())
}

unsafe extern "C" fn write(ep: *mut Endpoint, data: *mut LoanedSample) -> DdsReturn {
    // SAFETY: Cyclone passes a writer endpoint `create` made and a loan
    // `request_loan` made on it (it checks the loan's origin), which it
    // keeps alive past this call.
    let (w, loan) = unsafe { (&*ep.cast::<WriterEp>(), &mut *data.cast::<Loan>()) };
    match &mut loan.bytes {
        Bytes::Slot { ring, handle, committed } => {
            // SAFETY: Cyclone wrote the metadata through the loan, into our
            // own loaned slot.
            let size = unsafe { (*loan.c.metadata).sample_size } as usize;
            match ring.commit_in_place(*handle, HEADER.saturating_add(size)) {
                Ok(_) => {
                    *committed = true;
                    ffi::DDS_RETCODE_OK
                }
                Err(e) => {
                    ddsc::log(ffi::LC_ERROR, &format!("write of {size} bytes on ring {}: {e}", ring.flink_path().display()));
                    ffi::DDS_RETCODE_ERROR
                }
            }
        }
        Bytes::Heap { meta, payload } => {
            let size = (meta.sample_size as usize).min(payload.capacity());
            if !w.reliable {
                w.ring.record_dropped();
                return ffi::DDS_RETCODE_OK;
            }
            copy_when_room(w, meta, payload.as_ptr(), size)
        }
        // A reader's loan: Cyclone hands a writer only loans of its own
        // endpoint (it checks the origin), so this is a caller's mistake.
        Bytes::Kept { .. } => {
            ddsc::log(ffi::LC_ERROR, "write of a received sample's loan on a writer endpoint");
            ffi::DDS_RETCODE_BAD_PARAMETER
        }
    }
}

/// A reliable write whose loan was on the heap: waits for a slot (at most
/// `max_blocking`), copies metadata and payload in and commits.
fn copy_when_room(w: &WriterEp, meta: &Metadata, payload: *const u8, size: usize) -> DdsReturn {
    let need = HEADER + size;
    let mut last = None;
    for _ in 0..4 {
        if let Err(e) = w.ring.ensure_capacity(need) {
            last = Some(e);
            break;
        }
        let handle = match w.ring.reserve_slot_timeout(ALL_READERS, w.max_blocking) {
            Ok(h) => h,
            Err(SlotError::TimedOut(_)) => return ffi::DDS_RETCODE_TIMEOUT,
            Err(e) => {
                last = Some(e);
                break;
            }
        };
        match w.ring.slot_data_ptr(handle) {
            Ok((ptr, cap)) if cap >= need => {
                // SAFETY: a loaned region of `cap >= need` bytes, ours until
                // commit; the heap payload holds `size` bytes and cannot
                // overlap it.
                unsafe {
                    ptr.cast::<Metadata>().write_unaligned(*meta);
                    ptr.add(PID_AT).cast::<u32>().write_unaligned(w.pid);
                    std::ptr::copy_nonoverlapping(payload, ptr.add(HEADER), size);
                }
                return match w.ring.commit_in_place(handle, need) {
                    Ok(_) => ffi::DDS_RETCODE_OK,
                    Err(e) => {
                        last = Some(e);
                        break;
                    }
                };
            }
            // The ring moved to larger slots meanwhile: try again there.
            Ok(_) => drop(w.ring.discard_slot(handle)),
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    ddsc::log(ffi::LC_ERROR, &format!("write of {size} bytes on ring {}: {}", w.ring.flink_path().display(), last.map_or_else(|| "the ring kept moving".to_owned(), |e| e.to_string())));
    ffi::DDS_RETCODE_ERROR
}
