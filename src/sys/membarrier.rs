//! `membarrier(2)`: the heavy side of the asymmetric barrier that lets a
//! reader release a slot with a plain store (no fence, no RMW) while a writer
//! about to park on "space" still never misses that release.

use std::sync::Once;

use crate::sync::{fence, Ordering, ASYMMETRIC_BARRIER};

const CMD_GLOBAL: libc::c_long = 1;
const CMD_GLOBAL_EXPEDITED: libc::c_long = 2;
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 4;

fn membarrier(cmd: libc::c_long) -> bool {
    // SAFETY: membarrier takes no pointers; an unsupported command returns
    // an error, which we report as `false`.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long, 0 as libc::c_long) == 0 }
}

/// Registers this process once, so other processes' heavy barriers reach it;
/// on success hot paths may use a compiler fence as their light barrier.
pub(crate) fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if membarrier(CMD_REGISTER_GLOBAL_EXPEDITED) {
            ASYMMETRIC_BARRIER.store(true, Ordering::SeqCst);
        }
    });
}

/// Makes every thread of every registered process pass a full barrier.
pub(crate) fn heavy() {
    fence(Ordering::SeqCst);
    if !membarrier(CMD_GLOBAL_EXPEDITED) {
        // Slow (an RCU grace period) but reaches every process.
        let _ = membarrier(CMD_GLOBAL);
    }
}
