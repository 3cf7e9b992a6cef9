//! Atomics used by the ring protocol: `core`'s normally, loom's under `--cfg loom`.
//!
//! The protocol in [`crate::protocol`] is written against these names only, so
//! the loom model (`src/protocol/loom_models.rs`, `RUSTFLAGS="--cfg loom"`) checks the very
//! code that runs in shared memory.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;

#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// `fence(SeqCst)` under loom, nothing otherwise. Loom models `SeqCst`
/// accesses as `AcqRel` and only `SeqCst` fences as a total order, so it
/// flags the protocol's correct waiter/waker hand-shakes (a `SeqCst` RMW
/// followed by a `SeqCst` load on both sides, which C++20 orders in its total
/// order S) as lost wake-ups. Placed right after such an RMW, before the
/// `SeqCst` load, the fence adds no ordering in the C++20 model; it only lets
/// loom see what the native code already guarantees.
#[inline(always)]
pub(crate) fn loom_sc_fence() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// Whether this process registered for expedited `membarrier(2)`, so that a
/// waiter's heavy barrier reaches its threads and [`light_barrier`] may be a
/// compiler fence. Set once by the POSIX backend.
#[cfg(not(loom))]
pub(crate) static ASYMMETRIC_BARRIER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The light side of the asymmetric barrier (see `Parker::heavy_barrier`):
/// orders a release store before the following load of a waiter count. A
/// compiler fence when the heavy side is `membarrier`, a full fence otherwise
/// (and under loom, which models the pair as two `SeqCst` fences).
#[inline(always)]
pub(crate) fn light_barrier() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    {
        if ASYMMETRIC_BARRIER.load(Ordering::Relaxed) {
            core::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }
}
