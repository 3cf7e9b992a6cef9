//! What every compared system is given: the same geometry, the same number
//! of readers, a private directory and a unique tag per case.
//!
//! Each system's module provides
//!
//! * a **parent** side, `create(&Spec) -> Result<Parent>`, implementing
//!   `PingSide + PubSide` (flink's `drive` traits). It creates every shared
//!   object of the case (before any peer process starts) and is the writer of
//!   the throughput and fan-out runs; its `Drop` removes what it created.
//! * a **peer** side, `attach(&Spec, index) -> Result<Peer>`, implementing
//!   `EchoSide + SubSide`. It runs in its own process and attaches to what the
//!   parent created. `index` is the reader's number, `0..spec.readers`.
//!
//! Every system writes the payload (copied from the sender's buffer into the
//! slot, message or mapping) and every receiver reads all of it
//! (`take_sample` / `copy_out`), so no system skips touching the bytes.

use std::path::PathBuf;

/// Slots (or queue entries) per ring in every system.
pub const DEPTH: usize = 16;

/// One case of one system.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The bench's private directory (mode 0700, removed at the end): flink
    /// files, sockets, config roots go here.
    pub dir: PathBuf,
    /// Unique per case and run: `[a-z0-9]`, at most 24 characters. Names of
    /// shared-memory objects and services are built from it.
    pub tag: String,
    /// Sample size in bytes (8 B … 16 MiB); every sample has exactly this size.
    pub size: usize,
    /// Readers of the parent's data ring: 1 (ping-pong, throughput) or more
    /// (fan-out: throughput only).
    pub readers: usize,
    /// Whether receivers (and writers facing a full queue) block on the
    /// system's wake mechanism instead of spinning.
    pub blocking: bool,
}
