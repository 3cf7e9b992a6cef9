//! The sample type both example processes agree on.

/// One published value.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Tick {
    /// Publisher's counter.
    pub count: u64,
    /// Publisher's clock (ns since the epoch) when written.
    pub sent_unix_ns: u64,
    /// Some payload.
    pub value: f64,
}

// SAFETY: repr(C), three 8-byte fields without padding; every bit pattern is
// a valid `Tick`.
unsafe impl shmslot::Pod for Tick {
    const TYPE_HASH: [u8; 16] = shmslot::type_hash("examples::Tick v1", std::mem::size_of::<Tick>(), std::mem::align_of::<Tick>());
}

/// The flink name both sides use (a bare name: it lives in the discovery
/// directory, `$SHMSLOT_DIR` or `$XDG_RUNTIME_DIR/shmslot` or `/tmp/shmslot-<uid>`).
pub const RING: &str = "example-ticks";

/// Nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
