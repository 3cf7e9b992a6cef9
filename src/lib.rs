//! # shmslot
//!
//! A DDS-style shared-memory transport: processes on one host exchange
//! samples through rings of fixed-size slots in POSIX shared memory, written
//! in place and read in place — no copy and no syscall on the hot path.
//!
//! * [`SlotBackend`] — the ring contract (reserve / commit / discard / loan in
//!   place / read in place / mark_read / reader masks / notify).
//! * [`InMemorySlotAllocator`] — one process; the reference oracle.
//! * [`PosixSlotAllocator`] — shared memory, found through flink files;
//!   lock-free, multi-writer, multi-reader, futex notify.
//! * [`Loan`], [`Sample`], [`Reader`] — the safe byte API;
//!   [`Publisher`] / [`Subscriber`] — typed, for [`Pod`] types.
//! * [`locator`] — RTPS locators for shared memory, the same-host namespace
//!   id, and the discovery parameter that announces a segment.
//! * [`blackboard`] — [`Blackboard`]: fixed keyed entries, one writer per
//!   entry, lock-free latest-value reads that are never torn, a futex per
//!   entry to wait on.
//! * [`transport`] — [`ShmTransport`]: what a DDS/RTPS stack plugs in
//!   (input ports, the domain's multicast ring, never-blocking sends that
//!   report which locators shared memory did not serve).
//!
//! ```no_run
//! use shmslot::{Loan, PosixSlotAllocator, Reader};
//! use std::time::Duration;
//!
//! let ring = PosixSlotAllocator::create("demo", 16, 1024)?;   // writer side
//! let mut loan = Loan::new(&ring)?;
//! loan.as_mut_slice()[..5].copy_from_slice(b"hello");
//! loan.commit(5)?;
//!
//! let mut reader = Reader::new(PosixSlotAllocator::attach("demo")?)?; // another process
//! if let Some(sample) = reader.recv_timeout(Duration::from_secs(1))? {
//!     println!("{} bytes: {:?}", sample.len(), &sample[..]);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The source's layers (`sys`, `segment`, `protocol`, `ring` and
//! `blackboard`, `discovery`, the endpoints), the segment diagram and where
//! each invariant is written are drawn in the repository's
//! `ARCHITECTURE.md`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]
// Under loom only the protocol and its models are built; the rest is idle.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

mod backend;
#[cfg(not(loom))]
pub mod blackboard;
#[cfg(all(feature = "dust-dds", not(loom)))]
pub mod dust_dds;
mod error;
mod hash;
pub mod locator;
mod memory;
#[cfg(not(loom))]
mod ring;
mod protocol;
#[cfg(not(loom))]
mod segment;
mod pubsub;
mod sync;
#[cfg(not(loom))]
mod sys;
#[cfg(not(loom))]
pub mod transport;

#[cfg(not(loom))]
pub use blackboard::{Blackboard, BlackboardBuilder, BlackboardError, EntryId, EntryReader, EntryWriter};
pub use backend::{OverflowPolicy, ReaderMask, ReaderStats, SlotBackend, SlotHandle, SlotHeader, ALL_READERS, DEFAULT_SPIN};
pub use error::{OpenError, ReceiveError, SlotError, TypeError, ValidationError};
pub use memory::InMemorySlotAllocator;
#[cfg(not(loom))]
pub use ring::{default_discovery_dir, FlinkInfo, GrowthStrategy, Kept, PosixSlotAllocator, PosixSlotAllocatorBuilder, SegmentInfo, SegmentKind};
pub use locator::{Endianness, Locator, LocatorError, NamespaceFacts, NamespaceId, ShmAddress, ShmAnnouncement, LOCATOR_KIND_SHM};
pub use pubsub::{type_hash, Loan, Pod, Publisher, Reader, Sample, Subscriber, TypedLoan, TypedSample};
#[cfg(not(loom))]
pub use transport::{Delivery, InputPort, Received, SendLoan, SendReport, Sender, ShmTransport, TransportConfig, TransportError, TransportStats};

#[cfg(not(loom))]
pub mod discovery;
