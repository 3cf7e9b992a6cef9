//! Two processes exchanging messages through `ShmTransport`: a ping-pong.
//!
//! ```text
//! cargo run --release --example transport -- [COUNT] [SIZE]   (default 10000 round trips of 64 bytes)
//! ```
//!
//! Run without a role, it is **ping**: it makes a private discovery
//! directory, opens its input port, and starts itself again as **pong**
//! (`transport pong PING_LOCATOR DIR`: the locator as text). Pong opens its own
//! port and sends its locator to ping as its first message (as an RTPS
//! `Locator_t`, 24 bytes); then ping sends COUNT numbered
//! messages and pong echoes each one back. Ping prints the round-trip
//! statistics (one-way = RTT / 2) and both transports' counters, and removes
//! the directory; each port's ring is removed by its owner when it closes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use shmslot::{Endianness, InputPort, Locator, ShmTransport, TransportConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One domain in a private directory: nobody else is in it.
const DOMAIN: u32 = 0;
/// Longest wait for any one message before giving up on the other side.
const PATIENCE: Duration = Duration::from_secs(5);
/// The message that ends the exchange.
const BYE: &[u8] = b"bye";

fn config(dir: &Path) -> TransportConfig {
    TransportConfig::new(DOMAIN).slot_count(64).slot_capacity(4096).discovery_dir(dir)
}

/// The next message on `port`, copied out; an error after [`PATIENCE`].
fn recv(port: &mut InputPort, what: &str) -> Result<Vec<u8>> {
    match port.recv_timeout(PATIENCE)? {
        Some(msg) => Ok(msg.to_vec()),
        None => Err(format!("no {what} within {PATIENCE:?}").into()),
    }
}

/// Sends `bytes` to `to`; the transport never blocks, so a full port is
/// retried (the other side is reading).
fn send(t: &ShmTransport, bytes: &[u8], to: Locator) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match t.send(bytes, &[to])?.outcomes()[0] {
            shmslot::Delivery::Served => return Ok(()),
            shmslot::Delivery::Full if Instant::now() < deadline => std::hint::spin_loop(),
            other => return Err(format!("sending to port {}: {other:?}", to.port).into()),
        }
    }
}

/// The private discovery directory; on drop, removes whatever a crashed
/// peer left (stale rings), then the directory.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("shmslot-transport-example-{}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = shmslot::discovery::clean(&self.0, false, false);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The pong process; killed (if still running) and reaped on drop.
struct Pong(Child);

impl Drop for Pong {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn ping(count: usize, size: usize) -> Result<()> {
    let dir = PrivateDir::new()?; // dropped last: after the ports and the pong
    let transport = ShmTransport::new(config(&dir.0))?;
    let mut port = transport.open_input()?;
    if size > port.max_message_size() {
        return Err(format!("SIZE {size} is over the slot capacity ({} bytes)", port.max_message_size()).into());
    }
    println!("ping: port {} in {} (locator {})", port.locator().port, dir.0.display(), port.locator());

    let exe = std::env::current_exe()?;
    let mut pong = Pong(Command::new(exe).arg("pong").arg(port.locator().to_string()).arg(&dir.0).spawn()?);
    // Pong's first message: where to send.
    let peer = Locator::decode(&recv(&mut port, "locator from pong")?, Endianness::Little)?;
    println!("ping: pong (pid {}) listens on port {}", pong.0.id(), peer.port);

    let warmup = (count / 10).min(1000);
    let mut msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut rtts = Vec::with_capacity(count);
    for seq in 0..(warmup + count) as u64 {
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        let t0 = Instant::now();
        send(&transport, &msg, peer)?;
        let reply = port.recv_timeout(PATIENCE)?.ok_or("pong stopped answering")?;
        let rtt = t0.elapsed();
        if *reply != msg[..] {
            return Err(format!("reply {seq} differs from what was sent").into());
        }
        drop(reply); // releases the slot
        if seq >= warmup as u64 {
            rtts.push(rtt);
        }
    }
    send(&transport, BYE, peer)?;
    let status = pong.0.wait()?;

    rtts.sort_unstable();
    let one_way = |q: f64| rtts[((rtts.len() as f64 * q).ceil() as usize).clamp(1, rtts.len()) - 1] / 2;
    println!(
        "ping: {count} round trips of {size} B (after {warmup} warm-up): one-way min {:?}, p50 {:?}, p99 {:?}, max {:?}",
        rtts[0] / 2,
        one_way(0.50),
        one_way(0.99),
        rtts[rtts.len() - 1] / 2,
    );
    let s = transport.stats();
    println!("ping: sent {}, received {}, dropped {}, unreachable {}", s.sent, s.received, s.dropped, s.unreachable);
    if !status.success() {
        return Err(format!("pong failed ({status})").into());
    }
    println!("ping: done; pong exited, removing {}", dir.0.display());
    Ok(())
}

fn pong(peer: Locator, dir: &Path) -> Result<()> {
    let transport = ShmTransport::new(config(dir))?;
    let mut port = transport.open_input()?;
    if !transport.is_reachable(&peer) {
        return Err(format!("{peer} is not reachable through shared memory from here").into());
    }
    send(&transport, &port.locator().encode(Endianness::Little), peer)?;
    println!("pong: port {}, echoing to {peer}", port.locator().port);
    loop {
        let msg = port.recv_timeout(PATIENCE)?.ok_or("ping stopped sending")?;
        if *msg == *BYE {
            break;
        }
        // Reply straight from the received slot, then release it.
        send(&transport, &msg, peer)?;
    }
    let s = transport.stats();
    println!("pong: sent {}, received {}, dropped {}", s.sent, s.received, s.dropped);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("pong") => match (args.get(1).map(|l| l.parse::<Locator>()), args.get(2)) {
            (Some(Ok(peer)), Some(dir)) => pong(peer, Path::new(dir)),
            (Some(Err(e)), _) => Err(e.into()),
            _ => Err("usage: transport pong PING_LOCATOR DIR".into()),
        },
        _ => {
            let num = |i: usize, default: usize| args.get(i).map_or(Ok(default), |a| a.parse().map_err(|_| format!("argument {} must be a number, got {a:?}", i + 1)));
            match (num(0, 10_000), num(1, 64)) {
                (Ok(count), Ok(size)) if count > 0 && size >= 8 => ping(count, size),
                (Ok(_), Ok(_)) => Err("COUNT must be at least 1 and SIZE at least 8 (the sequence number)".into()),
                (Err(e), _) | (_, Err(e)) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let role = if args.first().is_some_and(|a| a == "pong") { "pong" } else { "ping" };
            eprintln!("{role}: {e}");
            ExitCode::FAILURE
        }
    }
}
