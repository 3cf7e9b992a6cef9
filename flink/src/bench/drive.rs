//! The measurement loops, written once over four small traits so that
//! shmslot and the floor run exactly the same loop.
//!
//! * Latency (ping-pong): the parent writes a sample (`size` bytes copied from
//!   a local buffer, the sequence number in the first 8), the peer copies it
//!   into its reply, the parent copies the reply out and checks it. One clock
//!   read per round trip; one-way latency is RTT / 2.
//! * Throughput: the parent publishes as fast as the ring lets it, the peer
//!   consumes, checks sequence order and reads every payload byte. A MARK
//!   sample starts the peer's clock after the warm-up, STOP ends it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::error::{BenchError, Result};
use super::proc::Watch;

/// Head of a sample that starts the peer's throughput clock.
pub const MARK: u64 = 1 << 62;
/// Head of a sample that ends a phase.
pub const STOP: u64 = (1 << 62) + 1;

/// How long and how much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Warm-up before measuring (faults in the rings, settles caches).
    pub warmup: Duration,
    /// Measuring time of one phase.
    pub measure: Duration,
    /// Latency: keep going past `measure` until this many round trips...
    pub min_samples: usize,
    /// ...but never past `measure * 4`, and never more than this many.
    pub max_samples: usize,
}

/// The parent's side of the ping-pong.
pub trait PingSide {
    /// Takes what the peer said after `ready` (see [`EchoSide::hello`]);
    /// returns the paths of objects the peer created, for `--verbose`.
    fn peer_ready(&mut self, hello: &str) -> Result<Vec<PathBuf>> {
        if hello.is_empty() {
            Ok(Vec::new())
        } else {
            Err(BenchError::Data(format!("unexpected words after 'ready': '{hello}'")))
        }
    }
    /// Publishes `src` (its head already holds `seq`).
    fn send(&mut self, seq: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()>;
    /// Waits for the reply to `seq` and copies it into `dst`.
    fn recv(&mut self, seq: u64, dst: &mut [u8], watch: &mut Watch<'_>) -> Result<()>;
    /// Tells the peer the ping-pong is over.
    fn stop(&mut self, src: &mut [u8], watch: &mut Watch<'_>) -> Result<()>;
}

/// The peer's side of the ping-pong.
pub trait EchoSide {
    /// What the peer tells the parent in its `ready` line (nothing, unless
    /// the parent needs to learn something from it, e.g. where to reply).
    fn hello(&self) -> String {
        String::new()
    }
    /// Waits for one sample and replies with a copy; `false` on STOP.
    fn echo(&mut self, watch: &mut Watch<'_>) -> Result<bool>;
}

/// The parent's side of the throughput run.
pub trait PubSide {
    /// Publishes `src`, whose head holds `tag` (a sequence number, MARK or STOP).
    fn publish(&mut self, tag: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()>;
}

/// The peer's side of the throughput run.
pub trait SubSide {
    /// Waits for the next sample; returns its head and a checksum of every
    /// payload byte (0 for MARK and STOP).
    fn take(&mut self, watch: &mut Watch<'_>) -> Result<(u64, u64)>;
}

/// The payload a writer copies from: a byte pattern.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i.wrapping_mul(31) ^ 0x5a) as u8).collect()
}

/// Writes the head (sequence number or marker).
#[inline]
pub fn put_head(buf: &mut [u8], v: u64) {
    buf[..8].copy_from_slice(&v.to_le_bytes());
}

/// A received sample must be as long as what was sent.
#[inline]
pub fn check_len(got: &[u8], size: usize) -> Result<()> {
    if got.len() == size {
        Ok(())
    } else {
        Err(BenchError::Data(format!("received {} bytes, sent {size}", got.len())))
    }
}

/// Copies a received ping-pong sample out (its length checked).
#[inline]
pub fn copy_out(got: &[u8], dst: &mut [u8]) -> Result<()> {
    check_len(got, dst.len())?;
    dst.copy_from_slice(got);
    Ok(())
}

/// What a subscriber takes from a received sample: its head, and the
/// checksum of its bytes (0 for a mark).
#[inline]
pub fn take_sample(got: &[u8], size: usize) -> Result<(u64, u64)> {
    check_len(got, size)?;
    let h = head(got);
    Ok((h, if h >= MARK { 0 } else { checksum(got) }))
}

/// Reads the head.
#[inline]
pub fn head(buf: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[..8]);
    u64::from_le_bytes(b)
}

/// Reads every byte of `buf` (a wrapping sum of 8-byte words plus the tail).
#[inline]
pub fn checksum(buf: &[u8]) -> u64 {
    let mut chunks = buf.chunks_exact(8);
    let mut s = 0u64;
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        s = s.wrapping_add(u64::from_le_bytes(b));
    }
    for &b in chunks.remainder() {
        s = s.wrapping_add(u64::from(b));
    }
    s
}

/// Runs the ping-pong: warm-up, then measure. Returns round-trip times in ns.
pub fn latency<T: PingSide>(t: &mut T, size: usize, budget: &Budget, watch: &mut Watch<'_>) -> Result<Vec<u64>> {
    let mut src = pattern(size);
    let mut dst = vec![0u8; size];
    // Touch the sample buffer now: a page fault while measuring would land in
    // a round trip.
    let mut rtts = Vec::with_capacity(budget.max_samples);
    rtts.resize(budget.max_samples, 1u64);
    rtts.clear();
    let start = Instant::now();
    let warm_end = start + budget.warmup;
    let mut measure_end = None::<(Instant, Instant)>;
    let mut prev = start;
    let mut seq = 0u64;
    loop {
        put_head(&mut src, seq);
        t.send(seq, &src, watch)?;
        t.recv(seq, &mut dst, watch)?;
        let now = Instant::now();
        if head(&dst) != seq {
            return Err(BenchError::Data(format!("latency: reply carries sample {}, expected {seq}", head(&dst))));
        }
        match measure_end {
            Some((soft, hard)) => {
                rtts.push((now - prev).as_nanos() as u64);
                let n = rtts.len();
                if n >= budget.max_samples || (now >= soft && n >= budget.min_samples) || now >= hard {
                    break;
                }
            }
            None if now >= warm_end && seq >= 64 => measure_end = Some((now + budget.measure, now + budget.measure * 4)),
            None => {}
        }
        prev = now;
        seq += 1;
    }
    t.stop(&mut src, watch)?;
    Ok(rtts)
}

/// The peer's ping-pong: echo until STOP.
pub fn echo<T: EchoSide>(t: &mut T, watch: &mut Watch<'_>) -> Result<()> {
    while t.echo(watch)? {}
    Ok(())
}

/// Publishes for warm-up + measure, with MARK in between and STOP at the end.
pub fn publish<T: PubSide>(t: &mut T, size: usize, budget: &Budget, watch: &mut Watch<'_>) -> Result<()> {
    let mut src = pattern(size);
    // Read the clock every `every` samples: often enough for large samples,
    // rarely enough not to cost anything for small ones (a power of two).
    let every: u64 = if size >= 4096 { 1 } else { 64 };
    let warm_end = Instant::now() + budget.warmup;
    let mut mark = None::<Instant>;
    let mut seq = 0u64;
    loop {
        put_head(&mut src, seq);
        t.publish(seq, &src, watch)?;
        seq += 1;
        if seq & (every - 1) == 0 {
            let now = Instant::now();
            match mark {
                None if now >= warm_end => {
                    put_head(&mut src, MARK);
                    t.publish(MARK, &src, watch)?;
                    mark = Some(now);
                }
                Some(m) if now >= m + budget.measure => break,
                _ => {}
            }
        }
    }
    put_head(&mut src, STOP);
    t.publish(STOP, &src, watch)
}

/// What the consuming peer measured.
#[derive(Debug, Clone, Copy)]
pub struct Consumed {
    /// Samples between MARK and STOP.
    pub count: u64,
    /// Time from MARK to STOP.
    pub elapsed: Duration,
    /// Checksum of every byte read (printed so the reads are not optimised out).
    pub sum: u64,
}

impl Consumed {
    /// Samples per second between MARK and STOP (NaN if no time passed).
    pub fn msgs_per_s(&self) -> f64 {
        let ns = self.elapsed.as_nanos();
        if ns == 0 {
            f64::NAN
        } else {
            self.count as f64 * 1e9 / ns as f64
        }
    }
}

/// The peer's consumer: checks that data samples arrive in order 0, 1, 2, …
pub fn consume<T: SubSide>(t: &mut T, watch: &mut Watch<'_>) -> Result<Consumed> {
    let mut expected = 0u64;
    let mut count = 0u64;
    let mut sum = 0u64;
    let mut t0 = None::<Instant>;
    loop {
        let (h, s) = t.take(watch)?;
        if h == STOP {
            break;
        }
        if h == MARK {
            t0 = Some(Instant::now());
            count = 0;
            continue;
        }
        if h != expected {
            return Err(BenchError::Data(format!("throughput: received sample {h}, expected {expected} (out of order or lost)")));
        }
        expected += 1;
        count += 1;
        sum = sum.wrapping_add(s);
    }
    let t0 = t0.ok_or_else(|| BenchError::Data("throughput: STOP arrived before MARK".into()))?;
    Ok(Consumed { count, elapsed: t0.elapsed(), sum })
}
