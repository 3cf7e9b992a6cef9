fn main() { println!("flink: see shmslot"); }
