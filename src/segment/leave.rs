//! Leaving a segment, and the two switches that change who removes it:
//! the same rules for every kind.
//!
//! * the owner (the creator, or a handle that called `own`) removes the
//!   segment — flink file and object — when it leaves;
//! * any other handle removes it if it is the last participant out (the
//!   creator gone too);
//! * nobody's leaving removes a segment its flink file marks leaked: it
//!   stays until a handle `own`s it or `flink clean --leaked` removes it.

use std::fs::File;
use std::path::Path;

use super::{flink, liveness as lock};

use crate::error::OpenError;
use crate::sys::shm;

/// What a handle does last when it leaves a segment (ring or blackboard),
/// (`segment_names`: its object, or every generation of a growing ring),
/// with every entry it held already freed: unless the flink file marks the
/// segment leaked, the owner removes it (flink file and object), and any
/// other handle removes it if it is the last one out.
///
/// "Last one out" is decided by the kernel locks: the handle lets go of
/// every byte first, then tries to hold them all. Of handles leaving at the
/// same time each lets go before it tries, so the last to let go finds
/// nobody (and two trying at once cannot both fail: the first lock taken
/// wins). Holding them all means every other participant is gone, the
/// creator included; holding them while removing means nobody attaches
/// meanwhile.
pub(crate) fn leave_segment(flink_path: &Path, segment_names: &[String], locks: &File, owner: bool) {
    let last = || lock::set(locks, lock::Kind::Unlock, 0, lock::LOCK_SPAN).is_ok() && lock::set(locks, lock::Kind::Write, 0, lock::LOCK_SPAN).unwrap_or(false);
    if !owner && !last() {
        return;
    }
    match flink::claim(flink_path) {
        // Leaked: it outlives its participants until someone `own`s it or
        // `flink clean --leaked` removes it.
        Ok(Ok(c)) if segment_names.contains(&c.info.segment_name) && c.info.leaked => return,
        Ok(Ok(c)) if segment_names.contains(&c.info.segment_name) => {
            c.remove();
        }
        // Not published (any more) under that path: only the objects are ours.
        _ => {}
    }
    for name in segment_names {
        let _ = shm::unlink(name);
    }
}

/// Marks the segment published at `flink_path` (object `segment_name`)
/// leaked, or not, by replacing its flink file.
///
/// # Errors
/// [`OpenError`] when the flink file no longer names this segment, or a
/// system error; nothing changed then.
pub(crate) fn set_leaked(flink_path: &Path, segment_name: &str, leaked: bool) -> Result<(), OpenError> {
    flink::replace(flink_path, segment_name, |f| f.leaked = leaked).map(drop)
}
