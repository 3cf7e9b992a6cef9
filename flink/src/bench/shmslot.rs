//! shmslot under test: two rings of [`DEPTH`] slots (ping: parent → peer,
//! pong: peer → parent), written in place through [`Loan`] and read in place
//! through [`Reader`] — the safe API an application uses.
//!
//! `poll` spins on `try_recv` / retries `Loan::new`; `blocking` uses
//! `recv_timeout` / `Loan::new_timeout` (spin budget, then futex park).
//! Throughput reuses the ping ring (already faulted in by the ping-pong).

use std::path::Path;
use std::time::Duration;

use shmslot::{Loan, PosixSlotAllocator, Reader, SlotError};

use super::drive::{check_len, copy_out, head, put_head, take_sample, EchoSide, PingSide, PubSide, SubSide, STOP};
use super::error::{slot, BenchError, Result};
use super::proc::{Idle, Watch};
use super::{Mode, Workspace};

/// Slots per ring.
pub const DEPTH: usize = 16;
/// Longest single blocking call; liveness is checked between two.
const SLICE: Duration = Duration::from_millis(100);

type Ring = PosixSlotAllocator;

/// Reserves a slot: `Loan::new` retried (poll) or `Loan::new_timeout` (blocking).
#[inline]
fn reserve<'a>(ring: &'a Ring, mode: Mode, watch: &mut Watch<'_>) -> Result<Loan<'a, Ring>> {
    let mut idle = Idle::new("waiting for a free slot");
    loop {
        let r = match mode {
            Mode::Poll => Loan::new(ring),
            Mode::Blocking => Loan::new_timeout(ring, SLICE),
        };
        match r {
            Ok(loan) => return Ok(loan),
            Err(SlotError::NoFreeSlot) => idle.spin(watch)?,
            Err(SlotError::TimedOut(_)) => idle.check(watch)?,
            Err(e) => return Err(slot("reserve a slot")(e)),
        }
    }
}

/// Waits for the next sample and runs `f` on its bytes while holding it
/// (released when `f` returns).
#[inline]
fn recv_with<R>(reader: &mut Reader<Ring>, mode: Mode, watch: &mut Watch<'_>, f: impl FnOnce(&[u8], &mut Watch<'_>) -> R) -> Result<R> {
    let mut idle = Idle::new("waiting for a sample");
    loop {
        let got = match mode {
            Mode::Poll => reader.try_recv(),
            Mode::Blocking => reader.recv_timeout(SLICE),
        }
        .map_err(slot("receive a sample"))?;
        match got {
            Some(sample) => return Ok(f(&sample, watch)),
            None if mode == Mode::Poll => idle.spin(watch)?,
            None => idle.check(watch)?,
        }
    }
}

/// Writes `src` into a loan and commits it.
#[inline]
fn send_on(ring: &Ring, mode: Mode, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
    let mut loan = reserve(ring, mode, watch)?;
    loan.as_mut_slice()[..src.len()].copy_from_slice(src);
    loan.commit(src.len()).map_err(slot("commit a sample"))?;
    Ok(())
}

fn ring_names(tag: &str) -> (String, String) {
    (format!("{tag}-ping"), format!("{tag}-pong"))
}

/// The parent's rings: it writes ping and reads pong.
#[derive(Debug)]
pub struct ParentRings {
    ping: Ring,
    pong: Reader<Ring>,
    mode: Mode,
}

impl ParentRings {
    /// Creates both rings in the bench's discovery directory. The pong
    /// reader is registered here, before the peer can write.
    pub fn create(ws: &Workspace, tag: &str, size: usize, mode: Mode, spin: Option<Duration>) -> Result<Self> {
        let (ping_name, pong_name) = ring_names(tag);
        let make = |name: &str| -> Result<Ring> {
            let mut b = PosixSlotAllocator::builder(DEPTH, size).discovery_dir(ws.dir());
            if let Some(spin) = spin {
                b = b.spin_budget(spin);
            }
            let ring = b.create(name).map_err(|source| BenchError::Open { what: format!("create ring {name}"), source })?;
            ws.created(ring.flink_path());
            ws.created(&ring.segment_path());
            Ok(ring)
        };
        let ping = make(&ping_name)?;
        let pong = make(&pong_name)?;
        let pong = Reader::new(pong).map_err(slot("register a reader"))?;
        Ok(Self { ping, pong, mode })
    }
}

impl PingSide for ParentRings {
    #[inline]
    fn send(&mut self, _seq: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        send_on(&self.ping, self.mode, src, watch)
    }

    #[inline]
    fn recv(&mut self, _seq: u64, dst: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        recv_with(&mut self.pong, self.mode, watch, |s, _| copy_out(s, dst))?
    }

    fn stop(&mut self, src: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        put_head(src, STOP);
        send_on(&self.ping, self.mode, src, watch)
    }
}

impl PubSide for ParentRings {
    #[inline]
    fn publish(&mut self, _tag: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        send_on(&self.ping, self.mode, src, watch)
    }
}

/// The peer's rings: it reads ping and writes pong.
#[derive(Debug)]
pub struct PeerRings {
    ping: Reader<Ring>,
    pong: Ring,
    mode: Mode,
    size: usize,
}

impl PeerRings {
    /// Attaches to the parent's rings and registers the ping reader.
    pub fn attach(dir: &Path, tag: &str, size: usize, mode: Mode, spin: Option<Duration>) -> Result<Self> {
        let (ping_name, pong_name) = ring_names(tag);
        let open = |name: &str| -> Result<Ring> {
            let mut ring = PosixSlotAllocator::attach_in(name, Some(dir)).map_err(|source| BenchError::Open { what: format!("attach ring {name}"), source })?;
            if let Some(spin) = spin {
                ring.set_spin_budget(spin);
            }
            Ok(ring)
        };
        let ping = Reader::new(open(&ping_name)?).map_err(slot("register a reader"))?;
        let pong = open(&pong_name)?;
        Ok(Self { ping, pong, mode, size })
    }
}

impl EchoSide for PeerRings {
    #[inline]
    fn echo(&mut self, watch: &mut Watch<'_>) -> Result<bool> {
        let (pong, mode, size) = (&self.pong, self.mode, self.size);
        recv_with(&mut self.ping, mode, watch, |s, w| {
            if head(s) == STOP {
                return Ok(false);
            }
            check_len(s, size)?;
            // The reply is written before the ping sample is released.
            send_on(pong, mode, s, w)?;
            Ok(true)
        })?
    }
}

impl SubSide for PeerRings {
    #[inline]
    fn take(&mut self, watch: &mut Watch<'_>) -> Result<(u64, u64)> {
        let size = self.size;
        recv_with(&mut self.ping, self.mode, watch, |s, _| take_sample(s, size))?
    }
}
