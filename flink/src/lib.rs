//! The library half of `flink`: the benchmark harness (`bench`), so that the
//! peer comparison in `benches/peers/` measures the floor and shmslot with
//! exactly the loops and sides `flink bench` uses.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod bench;
