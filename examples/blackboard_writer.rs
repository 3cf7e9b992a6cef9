//! Creates a blackboard with three entries of different types and updates
//! them for a while. Run `cargo run --example blackboard_reader` in another
//! terminal.
//!
//! ```text
//! cargo run --example blackboard_writer -- [NAME] [SECONDS]   (default blackboard-demo, 10 s)
//! ```
//! The board (and its flink file) is removed when the writer exits.

#[path = "common/board.rs"]
#[allow(dead_code)]
mod board;

use std::time::{Duration, Instant};

use board::{Battery, Counter, Pose, Topic, BATTERY, COUNTER, DEFAULT_BOARD, POSE};
use shmslot::blackboard::BlackboardBuilder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_BOARD.to_owned());
    let secs: u64 = std::env::args().nth(2).map_or(Ok(10), |s| s.parse())?;
    let board = BlackboardBuilder::<Topic>::new()
        .entry(POSE, Pose::default())?
        .entry(BATTERY, Battery { voltage: 12.6, percent: 100.0 })?
        .entry(COUNTER, Counter(0))?
        .create(&name)?;
    println!("board {} (segment {}) for {secs} s", board.flink_path().display(), board.segment_path().display());
    let mut pose = board.entry_writer::<Pose>(&POSE)?;
    let mut battery = board.entry_writer::<Battery>(&BATTERY)?;
    let mut counter = board.entry_writer::<Counter>(&COUNTER)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let t = start.elapsed().as_secs_f64();
        // Built in place in shared memory, then published.
        let mut value = pose.loan_uninit().write(Pose::default());
        *value = Pose { x: t.cos(), y: t.sin(), z: 0.1 * t, stamp: start.elapsed().as_millis() as u64 };
        let version = value.publish();
        // Copied in.
        counter.update_with_copy(&Counter(n));
        if n % 10 == 0 {
            let percent = (100.0 - t as f32).max(0.0);
            battery.update_with_copy(&Battery { voltage: 11.0 + 1.6 * percent / 100.0, percent });
        }
        println!("pose v{version}, counter {n}");
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
