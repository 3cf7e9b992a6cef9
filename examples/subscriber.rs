//! Receives `Tick`s from the ring the `publisher` example creates.
//!
//! ```text
//! cargo run --example subscriber -- [IDLE_SECONDS]     (exit after this long without data; default 5)
//! ```

#[path = "common/tick.rs"]
mod tick;

use std::time::{Duration, Instant};

use shmslot::{PosixSlotAllocator, ReceiveError, SlotError, Subscriber};
use tick::{now_ns, Tick, RING};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idle = Duration::from_secs(std::env::args().nth(1).map_or(Ok(5), |a| a.parse())?);
    // Wait for the publisher to create the ring.
    let start = Instant::now();
    let ring = loop {
        match PosixSlotAllocator::attach(RING) {
            Ok(r) => break r,
            Err(e) if start.elapsed() < idle => {
                eprintln!("waiting for the publisher ({e})");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut sub = Subscriber::<Tick, _>::new(ring)?;
    println!("subscribed to {}", sub.reader().backend().flink_path().display());
    loop {
        match sub.recv_timeout(idle) {
            Ok(Some(tick)) => {
                let age_us = now_ns().saturating_sub(tick.sent_unix_ns) as f64 / 1e3;
                println!("got #{} value {:+.3} (seq {}, {age_us:.1} µs after it was written)", tick.count, tick.value, tick.seq());
            }
            Ok(None) => {
                println!("no data for {idle:?}");
                break;
            }
            // The publisher exited (or was killed) and everything it wrote
            // was read: liveness comes from its kernel lock, not a pid.
            Err(ReceiveError::Slot(SlotError::WritersGone)) => {
                println!("the publisher is gone");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let stats = sub.stats()?;
    println!("received {}, lost {}", stats.received, stats.lost);
    Ok(())
}
