//! Nothing here: the crate exists for its tests (`tests/rustdds.rs`), which
//! run an unmodified rustdds participant against a shmslot dust_dds one.
