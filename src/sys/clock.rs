//! Clocks: the coarse monotonic one that rate limits and liveness checks
//! read on hot paths, and the wall clock that flink files record.

use std::time::Instant;

/// Milliseconds of `CLOCK_MONOTONIC_COARSE`: a value the kernel keeps, read
/// in a few nanoseconds through the vDSO (a full `CLOCK_MONOTONIC` read costs
/// tens of ns on a VM, which slowed a writer spinning on a full ring), good
/// to a tick (1–4 ms), which is all the rate limits and liveness checks need.
#[inline]
pub(crate) fn coarse_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // the kernel knows (Linux ≥ 2.6.32).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        return BASE.get_or_init(Instant::now).elapsed().as_millis() as u64;
    }
    (ts.tv_sec as u64).wrapping_mul(1000).wrapping_add(ts.tv_nsec as u64 / 1_000_000)
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
