//! `flink bench`: one-way latency and throughput of shmslot between two
//! processes pinned to different CPUs, next to a memcpy + flag floor
//! measured in the same run (see `floor`), reported as ratios to it. With
//! `--transport`, also through [`ShmTransport`](::shmslot::ShmTransport),
//! reported as ratios to the bare ring as well.
//!
//! The parent creates everything (a private discovery directory under the
//! temp dir, the rings, the floor's shm object) and starts, per case, the
//! same binary as its peer (`flink __bench-child …`), which only attaches —
//! except that a transport peer opens its own input port, as every
//! participant does. Whatever happens — a peer that fails, an error,
//! Ctrl-C — the parent's drops remove every object and file it created, and
//! the workspace's final clean whatever a killed peer left.
//!
//! * [`drive`]: the measurement loops, shared by every system;
//! * [`shmslot`], [`transport`] and [`floor`]: the systems' sides;
//! * [`proc`]: pinning, the peer process, liveness checks;
//! * [`report`]: statistics, the table and JSON lines.

pub mod drive;
pub mod error;
pub mod floor;
pub mod proc;
pub mod report;
pub mod shmslot;
pub mod transport;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use drive::{Budget, EchoSide, PingSide, PubSide, SubSide};
pub use error::BenchError;
use error::Result;
use floor::{FloorMap, FloorParent, FloorPeer};
use proc::Peer;
use report::Measurement;
use shmslot::{ParentRings, PeerRings};
use transport::Endpoint;

/// Largest sample size accepted (16 slots × 2 rings of it are mapped).
const MAX_SIZE: usize = 16 << 20;

/// How shmslot waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Mode {
    /// Spin on `try_recv`, retry the reservation.
    Poll,
    /// `recv_timeout` / `reserve_slot_timeout`: spin budget, then futex park.
    Blocking,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Blocking => "blocking",
        }
    }
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum System {
    /// memcpy + one atomic flag in a shared mapping (the reference).
    Floor,
    /// shmslot rings through the safe API.
    Shmslot,
    /// shmslot's transport: `ShmTransport::send` to the peer's input port.
    Transport,
    /// shmslot's transport: `ShmTransport::loan`, write in place, `commit`.
    TransportLoan,
}

impl System {
    fn as_str(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::Shmslot => "shmslot",
            Self::Transport => "transport",
            Self::TransportLoan => "transport-loan",
        }
    }
}

/// Two distinct CPUs: the parent's and the peer's.
#[derive(Debug, Clone, Copy)]
pub struct CpuPair(pub usize, pub usize);

/// Parses `--cpus A,B` (two different CPUs).
pub fn parse_cpus(s: &str) -> Result<CpuPair, String> {
    let bad = || format!("'{s}' is not two CPU numbers like 0,1");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    if a == b {
        return Err(format!("the two processes need two different CPUs, got {a} twice"));
    }
    Ok(CpuPair(a, b))
}

/// Parses a sample size for `--sizes`: `8`, `64B`, `1KiB`, `64k`, `1MiB`,
/// `1m` (binary multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("'{s}' is not a size (examples: 8, 64, 1KiB, 64KiB, 1MiB)");
    let n: usize = digits.parse().map_err(|_| bad())?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(bad()),
    };
    match n.checked_mul(mult) {
        Some(v) if (8..=MAX_SIZE).contains(&v) => Ok(v),
        _ => Err(format!("{s}: sample sizes go from 8 B (the sequence number) to 16 MiB")),
    }
}

/// `8 B`, `1 KiB`, `64 KiB`, `1 MiB`.
pub fn format_size(n: usize) -> String {
    if n >= 1 << 20 && n & ((1 << 20) - 1) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n & ((1 << 10) - 1) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// Options of `flink bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Sample sizes, comma-separated (suffixes B, KiB, MiB).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "8,64,1KiB,64KiB,1MiB")]
    sizes: Vec<usize>,
    /// shmslot wait modes: poll (spin on try_recv) and/or blocking (spin, then futex park).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "poll,blocking")]
    modes: Vec<Mode>,
    /// Also measure shmslot's transport (ShmTransport: send, and loan + commit),
    /// in each mode, next to the bare ring, with its ratios to the ring.
    #[arg(long)]
    transport: bool,
    /// Repeat every case N times and report medians (default 3, --quick 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    reps: Option<u32>,
    /// Short phases and one repetition (a smoke test, e.g. for CI).
    #[arg(long)]
    quick: bool,
    /// Measuring time of each phase in ms (default 250, --quick 20).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    time_ms: Option<u64>,
    /// Print JSON lines (one object per row) instead of the table.
    #[arg(long)]
    json: bool,
    /// CPUs of the parent and the peer process.
    #[arg(long, value_parser = parse_cpus, default_value = "0,1", value_name = "A,B")]
    cpus: CpuPair,
    /// Spin budget of blocking calls in µs before they park (default: the library's).
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    spin_us: Option<u64>,
    /// Print every object and file created, on stderr.
    #[arg(short, long)]
    verbose: bool,
}

/// Options of the peer process (internal).
#[derive(Args, Debug)]
pub struct ChildArgs {
    #[arg(long, value_enum)]
    system: System,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, value_parser = parse_size)]
    size: usize,
    #[arg(long)]
    cpu: usize,
    /// Ring name prefix (shmslot), shm object name (floor) or domain id (transport).
    #[arg(long)]
    target: String,
    /// The parent's input port locator (transport), as `KIND/PORT/ADDRESS-HEX`.
    #[arg(long)]
    peer: Option<String>,
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    spin_us: Option<u64>,
}

/// The bench's private discovery directory; removed (with anything left in
/// it) on drop. Rings and floor objects remove themselves when dropped.
#[derive(Debug)]
pub struct Workspace {
    dir: PathBuf,
    verbose: bool,
    tty: bool,
}

impl Workspace {
    /// Creates the directory (mode 0700) under the temp dir.
    pub fn new(verbose: bool, tty: bool) -> Result<Self> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("flink-bench-{}-{nanos:08x}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| BenchError::Io { op: "create discovery directory", path: dir.clone(), source })?;
        let ws = Self { dir, verbose, tty };
        ws.created(&ws.dir);
        Ok(ws)
    }

    /// The discovery directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reports a created object or file (with `--verbose`).
    pub fn created(&self, path: &Path) {
        if self.verbose {
            let clear = if self.tty { "\r\x1b[K" } else { "" };
            eprintln!("{clear}flink bench: created {}", path.display());
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // The parent's rings remove themselves; a peer's transport port is
        // removed by the peer, or by the parent's last attachment if the
        // peer was killed. Whatever is still there now is stale (its creator
        // gone): remove its shm object, then the directory.
        let _ = ::shmslot::discovery::clean(&self.dir, false, true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The progress line on stderr.
struct Progress {
    total: usize,
    done: usize,
    tty: bool,
}

impl Progress {
    fn step(&mut self, case: &Case, phase: &str) {
        self.done += 1;
        let label = format!("[{}/{}] {} {} {} {phase}…", self.done, self.total, case.system.as_str(), case.mode.as_str(), format_size(case.size));
        if self.tty {
            eprint!("\r\x1b[K{label}");
        } else {
            eprintln!("{label}");
        }
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    system: System,
    mode: Mode,
    size: usize,
    rep: u32,
}

struct Settings {
    lat: Budget,
    thr: Budget,
    spin: Option<Duration>,
    peer_cpu: usize,
}

/// Prints one protocol line to the parent (stdout, flushed).
pub fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|source| BenchError::Io { op: "write", path: PathBuf::from("<stdout>"), source })
}

/// Prints a consumer's result line (`thr COUNT NANOS SUM`).
pub fn say_thr(c: &drive::Consumed) -> Result<()> {
    say(&format!("thr {} {} {}", c.count, c.elapsed.as_nanos(), c.sum))
}

/// Runs `flink bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    proc::install_interrupt_handler();
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut modes = args.modes.clone();
    modes.sort();
    modes.dedup();
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 });
    let measure = Duration::from_millis(args.time_ms.unwrap_or(if args.quick { 20 } else { 250 }));
    let warmup = if args.quick { Duration::from_millis(5) } else { Duration::from_millis(40) };
    let (min_samples, max_samples) = if args.quick { (200, 200_000) } else { (2_000, 1_000_000) };
    let settings = Settings {
        lat: Budget { warmup, measure, min_samples, max_samples },
        thr: Budget { warmup, measure, min_samples: 0, max_samples: 0 },
        spin: args.spin_us.map(Duration::from_micros),
        peer_cpu: args.cpus.1,
    };

    let mut cases = Vec::new();
    for rep in 0..reps {
        for &size in &sizes {
            cases.push(Case { system: System::Floor, mode: Mode::Poll, size, rep });
            cases.extend(modes.iter().map(|&mode| Case { system: System::Shmslot, mode, size, rep }));
            if args.transport {
                for system in [System::Transport, System::TransportLoan] {
                    cases.extend(modes.iter().map(|&mode| Case { system, mode, size, rep }));
                }
            }
        }
    }

    proc::pin_to_cpu(args.cpus.0)?;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let switches_before = proc::involuntary_switches();
    let ws = Workspace::new(args.verbose, tty)?;
    let mut progress = Progress { total: cases.len() * 2, done: 0, tty };
    let mut results = Vec::with_capacity(cases.len());
    for (n, case) in cases.iter().enumerate() {
        match run_case(&ws, n, *case, &settings, &mut progress) {
            Ok(m) => results.push(m),
            Err(e) => {
                progress.clear();
                return Err(e);
            }
        }
    }
    progress.clear();
    drop(ws);
    let switches_after = proc::involuntary_switches();
    let preempted = (switches_after.0 - switches_before.0, switches_after.1 - switches_before.1);

    let rows = report::aggregate(&results);
    let summary = format!(
        "flink bench: parent on CPU {}, peer on CPU {}, {} cases in {:.1} s; preempted {} times (parent) and {} times (peers): {}",
        args.cpus.0,
        args.cpus.1,
        cases.len(),
        started.elapsed().as_secs_f64(),
        preempted.0,
        preempted.1,
        if preempted.0 + preempted.1 > 10 * cases.len() as u64 { "other load shared the CPUs, expect noise" } else { "quiet" },
    );
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        eprintln!("{summary}");
        report::json_lines(&rows)
    } else {
        format!("{summary}\n\n{}\n{}", report::table(&rows, reps), report::targets(&rows))
    };
    out.write_all(text.as_bytes()).map_err(|source| BenchError::Io { op: "write", path: PathBuf::from("<stdout>"), source })?;
    Ok(())
}

/// One case: create the system's shared objects, start the peer, measure
/// latency then throughput; everything is dropped (removed) on return.
fn run_case(ws: &Workspace, n: usize, case: Case, s: &Settings, progress: &mut Progress) -> Result<Measurement> {
    let mut peer_args: Vec<OsString> = ["__bench-child", "--system", case.system.as_str(), "--mode", case.mode.as_str()].map(OsString::from).into();
    peer_args.extend(["--size".into(), case.size.to_string().into(), "--cpu".into(), s.peer_cpu.to_string().into()]);
    if let Some(spin) = s.spin {
        peer_args.extend(["--spin-us".into(), spin.as_micros().to_string().into()]);
    }
    match case.system {
        System::Floor => {
            let name = FloorMap::new_name(n);
            let map = FloorMap::create(&name, case.size)?;
            ws.created(&map.path());
            peer_args.extend(["--target".into(), name.into()]);
            measure(ws, &mut FloorParent::new(map), &peer_args, case, s, progress)
        }
        System::Shmslot => {
            let tag = format!("c{n}");
            let mut rings = ParentRings::create(ws, &tag, case.size, case.mode, s.spin)?;
            peer_args.extend(["--target".into(), tag.into(), "--dir".into(), ws.dir().as_os_str().to_owned()]);
            measure(ws, &mut rings, &peer_args, case, s, progress)
        }
        System::Transport | System::TransportLoan => {
            // A domain of its own per case: nothing of an earlier case is seen.
            let domain = n as u32;
            let mut side = Endpoint::create(ws, domain, case.size, case.mode, case.system == System::TransportLoan)?;
            peer_args.extend(["--target".into(), domain.to_string().into(), "--dir".into(), ws.dir().as_os_str().to_owned()]);
            peer_args.extend(["--peer".into(), side.locator().into()]);
            measure(ws, &mut side, &peer_args, case, s, progress)
        }
    }
}

fn measure<T: PingSide + PubSide>(ws: &Workspace, side: &mut T, peer_args: &[OsString], case: Case, s: &Settings, progress: &mut Progress) -> Result<Measurement> {
    let (lat, msgs_per_s) = measure_pair(side, peer_args, case.size, &s.lat, &s.thr, &mut |path| ws.created(path), &mut |phase| progress.step(&case, phase))?;
    Ok(Measurement { system: case.system, mode: case.mode, size: case.size, rep: case.rep, lat, msgs_per_s })
}

/// Starts the peer process (`current_exe() peer_args…`), waits for its
/// `ready` line, measures latency (ping-pong) then throughput against it,
/// and waits for it to exit. `created` gets the paths of objects the peer
/// reported; `phase` is told `latency`, then `throughput`. Returns one-way
/// latency and the peer's msgs/s.
pub fn measure_pair<T: PingSide + PubSide>(
    side: &mut T,
    peer_args: &[OsString],
    size: usize,
    lat: &Budget,
    thr: &Budget,
    created: &mut dyn FnMut(&Path),
    phase: &mut dyn FnMut(&str),
) -> Result<(report::Latency, f64)> {
    let mut peer = Peer::spawn(peer_args)?;
    let hello = peer.wait_ready()?;
    for path in side.peer_ready(&hello)? {
        created(&path);
    }
    phase("latency");
    let mut watch = || peer.check_alive();
    let mut rtts = drive::latency(side, size, lat, &mut watch)?;
    phase("throughput");
    drive::publish(side, size, thr, &mut watch)?;
    let line = peer.read_line("throughput report", Duration::from_secs(30))?;
    peer.finish(Duration::from_secs(10))?;
    Ok((report::latency(&mut rtts), parse_thr(&line)?.msgs_per_s()))
}

/// Parses a consumer's `thr COUNT NANOS SUM` line.
pub fn parse_thr(line: &str) -> Result<drive::Consumed> {
    let bad = || BenchError::Child { what: format!("printed '{line}' instead of 'thr COUNT NANOS SUM'"), stderr: String::new() };
    let mut f = line.strip_prefix("thr ").ok_or_else(bad)?.split(' ').map(str::parse::<u64>);
    let (Some(Ok(count)), Some(Ok(nanos)), Some(Ok(sum))) = (f.next(), f.next(), f.next()) else { return Err(bad()) };
    Ok(drive::Consumed { count, elapsed: Duration::from_nanos(nanos), sum })
}

/// The peer process: attach, say `ready`, echo until STOP, consume until
/// STOP, print `thr COUNT NANOS SUM`.
pub fn child_main(args: &ChildArgs) -> Result<()> {
    let mut watch = proc::start_child(args.cpu)?;
    let spin = args.spin_us.map(Duration::from_micros);
    match args.system {
        System::Floor => serve(&mut FloorPeer::new(FloorMap::open(&args.target, args.size)?), &mut watch),
        System::Shmslot => {
            let dir = args.dir.as_deref().ok_or_else(|| BenchError::Data("--dir is required for shmslot".into()))?;
            serve(&mut PeerRings::attach(dir, &args.target, args.size, args.mode, spin)?, &mut watch)
        }
        System::Transport | System::TransportLoan => {
            let dir = args.dir.clone().ok_or_else(|| BenchError::Data("--dir is required for the transport".into()))?;
            let domain = args.target.parse().map_err(|_| BenchError::Data(format!("--target {} is not a domain id", args.target)))?;
            let peer = transport::decode_locator(args.peer.as_deref().ok_or_else(|| BenchError::Data("--peer is required for the transport".into()))?)?;
            let loan = args.system == System::TransportLoan;
            serve(&mut Endpoint::attach(dir, domain, args.size, args.mode, loan, peer)?, &mut watch)
        }
    }
}

/// The peer's side of [`measure_pair`]: says `ready` (with the side's
/// hello), echoes until STOP, consumes until STOP, prints `thr COUNT NANOS SUM`.
pub fn serve<T: EchoSide + SubSide>(side: &mut T, watch: &mut proc::Watch<'_>) -> Result<()> {
    let hello = side.hello();
    say(&if hello.is_empty() { "ready".to_string() } else { format!("ready {hello}") })?;
    drive::echo(side, watch)?;
    say_thr(&drive::consume(side, watch)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_bounds() {
        assert_eq!(parse_size("8"), Ok(8));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("4").is_err());
        assert!(parse_size("1GiB").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(format_size(65536), "64 KiB");
        assert_eq!(format_size(100), "100 B");
    }

    #[test]
    fn cpus_must_differ() {
        assert!(parse_cpus("0,1").is_ok());
        assert!(parse_cpus("1,1").is_err());
        assert!(parse_cpus("0").is_err());
    }
}
