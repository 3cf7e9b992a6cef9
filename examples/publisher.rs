//! Publishes `Tick`s on a shared-memory ring. Run it in one terminal and
//! `cargo run --example subscriber` in another (start either first).
//!
//! ```text
//! cargo run --example publisher -- [COUNT] [INTERVAL_MS]     (default 100 ticks, 100 ms apart)
//! ```
//! The ring (and its flink file) is removed when the publisher exits.

#[path = "common/tick.rs"]
mod tick;

use std::time::Duration;

use shmslot::{OverflowPolicy, PosixSlotAllocator, Publisher, SlotError};
use tick::{now_ns, Tick, RING};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args().nth(n).map_or(default, |a| a.parse().unwrap_or_else(|_| panic!("argument {n} must be a number, got {a:?}")))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count = arg(1, 100);
    let interval = Duration::from_millis(arg(2, 100));
    // DropOldest: a slow or stopped subscriber never holds the publisher up.
    let ring = PosixSlotAllocator::builder(16, std::mem::size_of::<Tick>())
        .overflow_policy(OverflowPolicy::DropOldest)
        .type_hash(<Tick as shmslot::Pod>::TYPE_HASH)
        .create(RING)?;
    println!("publishing {count} ticks on {} (segment {})", ring.flink_path().display(), ring.segment_path().display());
    let publisher = Publisher::<Tick, _>::new(ring)?;
    for count in 0..count {
        // Build the value in place in the shared slot, then publish it.
        match publisher.loan() {
            Ok(mut loan) => {
                *loan.value_mut() = Tick { count, sent_unix_ns: now_ns(), value: (count as f64).sin() };
                let seq = loan.commit()?;
                println!("sent #{count} (seq {seq})");
            }
            Err(SlotError::NoFreeSlot) => println!("ring full: a subscriber is holding the oldest sample; skipped #{count}"),
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(interval);
    }
    Ok(())
}
