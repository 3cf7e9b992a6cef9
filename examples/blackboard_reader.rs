//! Attaches to the board of `blackboard_writer`, waits for each change of
//! its pose entry and prints the latest values.
//!
//! ```text
//! cargo run --example blackboard_reader -- [NAME]   (default blackboard-demo)
//! ```

#[path = "common/board.rs"]
#[allow(dead_code)]
mod board;

use std::time::Duration;

use board::{Battery, Counter, Pose, Topic, BATTERY, COUNTER, DEFAULT_BOARD, POSE};
use shmslot::blackboard::Blackboard;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_BOARD.to_owned());
    let board = Blackboard::<Topic>::attach(&name)?;
    let pose = board.entry_reader::<Pose>(&POSE)?;
    let battery = board.entry_reader::<Battery>(&BATTERY)?;
    let counter = board.entry_reader::<Counter>(&COUNTER)?;
    println!("attached to {} ({} entries)", board.flink_path().display(), board.len());
    let mut last = pose.version();
    loop {
        // Parks on the pose entry's futex; the writer wakes it.
        if pose.wait_for_change(last, Duration::from_secs(2)).is_none() {
            if !board.creator_alive() {
                println!("the writer is gone");
                return Ok(());
            }
            continue;
        }
        let ((p, version), b, c) = (pose.get_with_version()?, battery.get()?, counter.get()?);
        last = version;
        println!("v{version}: pose ({:.2}, {:.2}, {:.2}) at {} ms, battery {:.2} V {:.0} %, counter {}", p.x, p.y, p.z, p.stamp, b.voltage, b.percent, c.0);
    }
}
