//! shmslot's transport under test ([`ShmTransport`]): what a
//! DDS stack pays per message on top of the bare ring of [`super::shmslot`].
//!
//! Parent and peer each make a transport on the bench's private discovery
//! directory, in a domain of their own (the case number), and each opens an
//! input port. The parent passes its port's locator on the peer's command
//! line; the peer answers with its own in its `ready` line. Each side then
//! sends to the other's locator and receives on its own port:
//!
//! * `transport`: `send(bytes, &[peer])` — one copy from the caller's buffer
//!   into the destination slot, as a stack with a serialised message does;
//! * `transport-loan`: `loan(&[peer])`, write into the slot, `commit` — the
//!   stack serialising in place.
//!
//! Both go through a [`Sender`], the writer thread's own handle (no lock);
//! `ShmTransport::send` adds an uncontended lock (`cargo bench --bench
//! ring` shows its cost in one process).
//!
//! Receiving is `try_recv` spun on (poll) or `recv_timeout` (blocking), read
//! in place. The transport's send never blocks: a full port reports
//! [`Delivery::Full`], which is retried by spinning in both modes (the
//! throughput run hits it all the time; the ping-pong never).
//!
//! The peer's port is the peer's: it is removed when the peer exits. If the
//! peer is killed, the parent's cached attachment removes it when the
//! parent's transport drops (the last one out), and the workspace's final
//! clean removes it if the parent never attached.

use std::path::PathBuf;
use std::time::Duration;

use shmslot::discovery::read_flink;
use shmslot::{Delivery, InputPort, Locator, Sender, ShmTransport, TransportConfig};

use super::drive::{check_len, copy_out, head, put_head, take_sample, EchoSide, PingSide, PubSide, SubSide, STOP};
use super::error::{transport_error, BenchError, Result};
use super::proc::{Idle, Watch};
use super::shmslot::DEPTH;
use super::{Mode, Workspace};

/// Longest single blocking receive; liveness is checked between two.
const SLICE: Duration = Duration::from_millis(100);

/// Parses a locator from a command line or a `ready` line (its `Display`
/// form).
pub fn decode_locator(s: &str) -> Result<Locator> {
    s.trim().parse().map_err(|e| BenchError::Data(format!("'{s}' is not a locator: {e}")))
}

/// One side (parent or peer): a transport, its input port, and where the
/// other side listens.
#[derive(Debug)]
pub struct Endpoint {
    // Declared first: dropped first (unregisters the reader, removes the ring).
    port: InputPort,
    sender: Sender,
    peer: Option<Locator>,
    mode: Mode,
    size: usize,
    loan: bool,
}

impl Endpoint {
    /// Makes a transport for `domain` in `dir` (ports of [`DEPTH`] slots of
    /// `size` bytes) and opens its input port. `loan`: send through
    /// [`ShmTransport::loan`] instead of [`ShmTransport::send`].
    pub fn open(dir: PathBuf, domain: u32, size: usize, mode: Mode, loan: bool) -> Result<Self> {
        let config = TransportConfig::new(domain).slot_count(DEPTH).slot_capacity(size).discovery_dir(dir);
        let transport = ShmTransport::new(config).map_err(transport_error("make a transport"))?;
        let port = transport.open_input().map_err(transport_error("open an input port"))?;
        Ok(Self { port, sender: transport.sender(), peer: None, mode, size, loan })
    }

    /// The parent's side: also reports what it created (`--verbose`).
    pub fn create(ws: &Workspace, domain: u32, size: usize, mode: Mode, loan: bool) -> Result<Self> {
        let this = Self::open(ws.dir().to_owned(), domain, size, mode, loan)?;
        for p in created(this.port.flink_path().to_owned()) {
            ws.created(&p);
        }
        Ok(this)
    }

    /// The peer's side: `peer` is the parent's locator.
    pub fn attach(dir: PathBuf, domain: u32, size: usize, mode: Mode, loan: bool, peer: Locator) -> Result<Self> {
        let mut this = Self::open(dir, domain, size, mode, loan)?;
        this.peer = Some(peer);
        Ok(this)
    }

    /// This side's input port locator, as text.
    pub fn locator(&self) -> String {
        self.port.locator().to_string()
    }

    /// Sends `src` to the other side, retrying while its port is full.
    #[inline]
    fn deliver(sender: &mut Sender, to: Locator, loan: bool, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        let to = [to];
        let mut idle = Idle::new("waiting for room in the peer's port");
        loop {
            let report = if loan {
                let mut l = sender.loan(&to).map_err(transport_error("loan a slot"))?;
                if l.destinations() > 0 {
                    l.as_mut_slice()[..src.len()].copy_from_slice(src);
                }
                l.commit(src.len()).map_err(transport_error("commit a loan"))?
            } else {
                sender.send(src, &to).map_err(transport_error("send"))?
            };
            match report.outcome(0) {
                Some(Delivery::Served) => return Ok(()),
                Some(Delivery::Full) => idle.spin(watch)?,
                other => return Err(BenchError::Data(format!("sending to {}: {other:?} (the peer's port is gone or refuses the message)", to[0]))),
            }
        }
    }

    fn peer(&self) -> Result<Locator> {
        self.peer.ok_or_else(|| BenchError::Data("the peer's locator is not known yet".into()))
    }
}

/// A port's shm object and flink file (for `--verbose`).
fn created(flink: PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = read_flink(&flink).ok().map(|info| PathBuf::from(format!("/dev/shm{}", info.segment_name))).into_iter().collect();
    v.push(flink);
    v
}

/// Waits for the next message and runs `f` on its bytes while holding it.
#[inline]
fn recv_with<R>(port: &mut InputPort, mode: Mode, watch: &mut Watch<'_>, f: impl FnOnce(&[u8], &mut Watch<'_>) -> R) -> Result<R> {
    let mut idle = Idle::new("waiting for a message");
    loop {
        let got = match mode {
            Mode::Poll => port.try_recv(),
            Mode::Blocking => port.recv_timeout(SLICE),
        }
        .map_err(transport_error("receive a message"))?;
        match got {
            Some(msg) => return Ok(f(&msg, watch)),
            None if mode == Mode::Poll => idle.spin(watch)?,
            None => idle.check(watch)?,
        }
    }
}

impl PingSide for Endpoint {
    /// The peer's `ready` line carries its locator and its port's flink file.
    fn peer_ready(&mut self, hello: &str) -> Result<Vec<PathBuf>> {
        let (loc, flink) = hello.split_once(' ').ok_or_else(|| BenchError::Data(format!("ready line '{hello}' lacks 'LOCATOR FLINK_PATH'")))?;
        self.peer = Some(decode_locator(loc)?);
        Ok(created(PathBuf::from(flink)))
    }

    #[inline]
    fn send(&mut self, _seq: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        let to = self.peer()?;
        Self::deliver(&mut self.sender, to, self.loan, src, watch)
    }

    #[inline]
    fn recv(&mut self, _seq: u64, dst: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        recv_with(&mut self.port, self.mode, watch, |m, _| copy_out(m, dst))?
    }

    fn stop(&mut self, src: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        put_head(src, STOP);
        let to = self.peer()?;
        Self::deliver(&mut self.sender, to, self.loan, src, watch)
    }
}

impl PubSide for Endpoint {
    #[inline]
    fn publish(&mut self, _tag: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        let to = self.peer()?;
        Self::deliver(&mut self.sender, to, self.loan, src, watch)
    }
}

impl EchoSide for Endpoint {
    /// `LOCATOR FLINK_PATH` of this side's port.
    fn hello(&self) -> String {
        format!("{} {}", self.locator(), self.port.flink_path().display())
    }

    #[inline]
    fn echo(&mut self, watch: &mut Watch<'_>) -> Result<bool> {
        let to = self.peer()?;
        let (sender, loan, mode, size) = (&mut self.sender, self.loan, self.mode, self.size);
        recv_with(&mut self.port, mode, watch, |m, w| {
            if head(m) == STOP {
                return Ok(false);
            }
            check_len(m, size)?;
            // The reply is written before the ping message is released.
            Self::deliver(sender, to, loan, m, w)?;
            Ok(true)
        })?
    }
}

impl SubSide for Endpoint {
    #[inline]
    fn take(&mut self, watch: &mut Watch<'_>) -> Result<(u64, u64)> {
        let size = self.size;
        recv_with(&mut self.port, self.mode, watch, |m, _| take_sample(m, size))?
    }
}
