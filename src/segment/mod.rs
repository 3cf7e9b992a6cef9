//! One segment's life, whatever its kind (ring or blackboard): its name,
//! the discovery directory and the flink file that publish it, the
//! liveness byte map of its participants' kernel locks, the object created
//! or opened and checked, leaving it, and reclaiming it when stale. Below
//! the kinds: nothing here reads a ring's or a blackboard's own fields.
//! (The layers: `ARCHITECTURE.md`.)

pub(crate) mod dir;
pub(crate) mod flink;
pub(crate) mod leave;
pub(crate) mod liveness;
pub(crate) mod name;
pub(crate) mod object;
pub(crate) mod reclaim;
pub(crate) mod state;
