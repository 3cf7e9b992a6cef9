//! The two systems `flink bench` already measures, given the peer
//! comparison's [`Spec`]: the memcpy + flag floor and shmslot's rings, with
//! exactly flink's sides, so both benches measure the same code.

use std::time::Duration;

use flink::bench::error::{BenchError, Result};
use flink::bench::floor::{FloorMap, FloorParent, FloorPeer};
use flink::bench::shmslot::{ParentRings, PeerRings};
use flink::bench::{Mode, Workspace};

use crate::spec::Spec;

/// The floor's shm object name of a case.
fn floor_name(spec: &Spec) -> String {
    // SAFETY: geteuid cannot fail and has no preconditions.
    let uid = unsafe { libc::geteuid() };
    format!("/shmslot-peers.{uid}.{}", spec.tag)
}

/// The floor is one writer and one reader: it has no fan-out.
fn single_reader(spec: &Spec) -> Result<()> {
    if spec.readers == 1 {
        Ok(())
    } else {
        Err(BenchError::Data("the floor has a single reader; it takes no part in the fan-out".into()))
    }
}

/// Creates the floor's mapping.
pub fn floor_parent(spec: &Spec) -> Result<FloorParent> {
    single_reader(spec)?;
    Ok(FloorParent::new(FloorMap::create(&floor_name(spec), spec.size)?))
}

/// Opens the floor's mapping.
pub fn floor_peer(spec: &Spec) -> Result<FloorPeer> {
    single_reader(spec)?;
    Ok(FloorPeer::new(FloorMap::open(&floor_name(spec), spec.size)?))
}

/// Removes the floor's object if its creator did not (it does on drop).
pub fn floor_cleanup(spec: &Spec) {
    if let Ok(name) = std::ffi::CString::new(floor_name(spec)) {
        // SAFETY: `name` is a valid NUL-terminated string.
        unsafe { libc::shm_unlink(name.as_ptr()) };
    }
}

fn mode(spec: &Spec) -> Mode {
    if spec.blocking {
        Mode::Blocking
    } else {
        Mode::Poll
    }
}

/// shmslot's rings, created in the workspace (the bench's discovery directory).
pub fn shmslot_parent(ws: &Workspace, spec: &Spec, spin: Option<Duration>) -> Result<ParentRings> {
    ParentRings::create(ws, &spec.tag, spec.size, mode(spec), spin)
}

/// Attaches to shmslot's rings as reader `index` of the ping ring.
pub fn shmslot_peer(spec: &Spec, spin: Option<Duration>) -> Result<PeerRings> {
    PeerRings::attach(&spec.dir, &spec.tag, spec.size, mode(spec), spin)
}
