//! Futex waits and wake-ups on 32-bit words in shared memory (process-shared
//! futexes, through linux-futex).

use std::time::Duration;

use linux_futex::{Futex, Shared};

use crate::sync::AtomicU32;

fn futex(word: &AtomicU32) -> &Futex<Shared> {
    // SAFETY: `Futex<Shared>` is `#[repr(transparent)]` over `AtomicU32`
    // (plus a zero-sized marker), so the reference cast is layout-exact.
    unsafe { &*std::ptr::from_ref(word).cast::<Futex<Shared>>() }
}

/// Sleeps while `*word == expected`, at most `timeout`; may return early.
#[inline]
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    // WrongValue, Interrupted and TimedOut all mean "look again".
    let _ = futex(word).wait_for(expected, timeout);
}

/// Wakes every thread (of every process) sleeping on `word`.
#[inline]
pub(crate) fn wake_all(word: &AtomicU32) {
    futex(word).wake(i32::MAX);
}
