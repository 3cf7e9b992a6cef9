//! Loaned samples: what the plugin hands Cyclone, and where their bytes are.
//!
//! A slot of a topic ring holds one sample:
//!
//! ```text
//!  0        48     52        64                          64 + sample_size
//!  ┌────────┬──────┬─────────┬────────────────────────────┐
//!  │metadata│ pid  │ reserved│ payload (64-byte aligned)  │
//!  └────────┴──────┴─────────┴────────────────────────────┘
//! ```
//!
//! `metadata` is Cyclone's `dds_psmx_metadata_t`, filled in by Cyclone
//! through the loan on the writing side; `pid` is the writer's process (for
//! endpoints that ignore their own process's samples).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use shmslot::{Kept, PosixSlotAllocator, SlotBackend, SlotHandle};

use crate::ffi::{Endpoint, LoanOrigin, LoanedSample, LoanedSampleOps, Metadata, LOAN_ORIGIN_KIND_PSMX};

/// Bytes before the payload in a slot.
pub const HEADER: usize = 64;
/// Offset of the writer's pid in a slot.
pub const PID_AT: usize = 48;
/// Alignment of every payload the plugin hands out (slots are 64-aligned).
pub const PAYLOAD_ALIGN: usize = 64;

const _: () = assert!(std::mem::size_of::<Metadata>() == PID_AT);

/// Heap bytes aligned for any IDL type (a sample copied out of a slot, or
/// written while the ring was full).
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: an owned heap allocation, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// `len` zeroed bytes (at least one byte is allocated).
    pub fn zeroed(len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len.max(1), PAYLOAD_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(Self { ptr, layout })
    }
    /// A copy of `len` bytes at `src` (no zeroing first).
    ///
    /// # Safety
    /// `src` is readable for `len` bytes.
    pub unsafe fn copy_of(src: *const u8, len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len.max(1), PAYLOAD_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        // SAFETY: `src` is readable for `len` bytes (the caller's contract),
        // the fresh block writable for at least `len`; they cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, ptr.as_ptr(), len) };
        Some(Self { ptr, layout })
    }
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` or `copy_of` with this layout, freed
        // once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Where a loan's bytes live.
#[derive(Debug)]
pub enum Bytes {
    /// In a slot of the writer's ring, loaned to it; `committed` once
    /// `write` published it. Dropped uncommitted, the slot is discarded.
    Slot { ring: Arc<PosixSlotAllocator>, handle: SlotHandle, committed: bool },
    /// A received sample read in place: its slot is kept for the loan
    /// (writers skip it meanwhile) and given back when Cyclone frees the
    /// loan. The metadata is a checked copy (Cyclone must not see a value
    /// another process changes after the check).
    Kept { ring: Arc<PosixSlotAllocator>, kept: Kept, meta: Box<Metadata> },
    /// On the heap: the ring was full when Cyclone asked for the loan (the
    /// write waits for a slot and copies), or a received sample copied out.
    Heap { meta: Box<Metadata>, payload: AlignedBuf },
}

impl Drop for Bytes {
    fn drop(&mut self) {
        match self {
            // Never written (Cyclone gave the loan back, or its write
            // failed): readers step over the sequence number.
            Self::Slot { ring, handle, committed: false } => drop(ring.discard_slot(*handle)),
            Self::Kept { ring, kept, .. } => ring.unkeep(*kept),
            _ => {}
        }
    }
}

/// `dds_loaned_sample_t` with the plugin's bookkeeping after it. Cyclone only
/// sees the first field.
#[repr(C)]
#[derive(Debug)]
pub struct Loan {
    pub c: LoanedSample,
    pub bytes: Bytes,
}

impl Loan {
    /// A loan with one reference (the caller's), `ops.free` set to
    /// [`free_loan`]. `meta` and `sample` are what Cyclone reads and writes.
    pub fn new(endpoint: *mut Endpoint, meta: *mut Metadata, sample: *mut u8, bytes: Bytes) -> Box<Self> {
        Box::new(Self {
            c: LoanedSample {
                ops: LoanedSampleOps { free: Some(free_loan) },
                loan_origin: LoanOrigin { origin_kind: LOAN_ORIGIN_KIND_PSMX, psmx_endpoint: endpoint },
                metadata: meta,
                sample_ptr: sample.cast(),
                refc: std::sync::atomic::AtomicU32::new(1),
            },
            bytes,
        })
    }

    /// A heap loan of `payload_len` zeroed bytes and zeroed metadata.
    pub fn on_heap(endpoint: *mut Endpoint, payload_len: usize) -> Option<Box<Self>> {
        let payload = AlignedBuf::zeroed(payload_len)?;
        let mut meta = Box::new(Metadata::default());
        let (m, p) = (std::ptr::from_mut(&mut *meta), payload.as_ptr());
        Some(Self::new(endpoint, m, p, Bytes::Heap { meta, payload }))
    }

    /// Drops one reference; the last one frees the loan.
    ///
    /// # Safety
    /// `loan` came from `Box::into_raw` of a [`Loan`] and the caller owns one
    /// of its references.
    pub unsafe fn unref(loan: *mut LoanedSample) {
        // SAFETY: the caller's contract: a live loan.
        if unsafe { &*loan }.refc.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: that was the last reference.
            unsafe { free_loan(loan) };
        }
    }
}

/// `ops.free`: gives the bytes back and frees the loan.
///
/// # Safety
/// `loan` came from `Box::into_raw` of a [`Loan`] and nobody references it
/// any more (Cyclone calls this when the reference count dropped to zero).
pub unsafe extern "C" fn free_loan(loan: *mut LoanedSample) {
    // SAFETY: the contract above; `LoanedSample` is the first field of the
    // `#[repr(C)]` `Loan`, so the pointer is the `Loan`'s.
    drop(unsafe { Box::from_raw(loan.cast::<Loan>()) });
}
