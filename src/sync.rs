//! Atomics used by the ring protocol: `core`'s normally, loom's under `--cfg loom`.
//!
//! The protocol in [`crate::protocol`] is written against these names only, so
//! the loom model (`tests/loom.rs`, `RUSTFLAGS="--cfg loom"`) checks the very
//! code that runs in shared memory.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;

#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
