//! `peers`: shmslot side by side with iceoryx2 0.10, zerodds-flatdata
//! 1.0.0-rc.7, Unix domain sockets and a memcpy + flag floor, under one
//! protocol, in one run.
//!
//! Every system runs the same loops (flink's `drive`): two processes pinned
//! to different CPUs; a ping-pong whose one-way latency is RTT / 2 after a
//! warm-up; a throughput run (one side publishes as fast as the queue of 16
//! lets it, the other consumes, checks order and reads every byte); the wake
//! of a parked reader (one sample every few ms, one-way latency from a
//! shared monotonic clock); and a fan-out (one writer, four reader
//! processes). Repetitions are interleaved: each runs every system before
//! the next starts. The parent creates everything per case and removes it
//! afterwards, including what a killed peer left.
//!
//! Modules: [`spec`] (what every system is given), [`ours`] (floor and
//! shmslot, flink's sides), [`iceoryx2_side`], [`zerodds_side`], [`uds`],
//! [`report`] (statistics, tables, goals, JSON lines).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod iceoryx2_side;
mod ours;
mod report;
mod spec;
mod uds;
mod zerodds_side;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use flink::bench::drive::{self, Budget, PubSide, SubSide, STOP};
use flink::bench::error::{BenchError, Result};
use flink::bench::proc::{self, Peer};
use flink::bench::{format_size, measure_pair, parse_thr, say, say_thr, serve, Workspace};

use report::{FanM, PairM, Variant, WakeM};
use spec::Spec;

/// A compared system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum System {
    /// memcpy + one atomic flag in a shared mapping: the reference.
    Floor,
    /// shmslot's rings through its safe API (`Loan`, `Reader`).
    Shmslot,
    /// iceoryx2 0.10 publish-subscribe (event service to wake).
    Iceoryx2,
    /// zerodds-flatdata 1.0.0-rc.7 `PosixSlotAllocator` (futex `wait_for_change`).
    Zerodds,
    /// Unix domain sockets (SOCK_SEQPACKET; SOCK_STREAM where a message
    /// does not fit a socket buffer).
    Uds,
}

impl System {
    /// The name in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::Shmslot => "shmslot",
            Self::Iceoryx2 => "iceoryx2",
            Self::Zerodds => "zerodds",
            Self::Uds => "uds",
        }
    }

    /// The variants measured: (blocking?) per system.
    fn variants(self) -> &'static [bool] {
        match self {
            Self::Floor => &[false],
            Self::Uds => &[true],
            _ => &[false, true],
        }
    }
}

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Run {
    /// Ping-pong latency, then throughput, between two processes.
    Pair,
    /// One-way latency of waking a parked reader (blocking variants).
    Wake,
    /// One writer, several reader processes: delivered msgs/s.
    Fanout,
}

impl Run {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pair => "pair",
            Self::Wake => "wake",
            Self::Fanout => "fanout",
        }
    }
}

/// shmslot side by side with its peers.
#[derive(Parser, Debug)]
#[command(name = "peers", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the comparison and print the tables (or JSON lines).
    Run(RunArgs),
    /// A peer process (internal: started by `run`).
    #[command(name = "__child", hide = true)]
    Child(ChildArgs),
}

/// Options of `peers run`.
#[derive(Args, Debug)]
struct RunArgs {
    /// Systems to compare, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "floor,shmslot,iceoryx2,zerodds,uds")]
    systems: Vec<System>,
    /// What to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pair,wake,fanout")]
    runs: Vec<Run>,
    /// Sample sizes of the pair runs (suffixes B, KiB, MiB).
    #[arg(long, value_delimiter = ',', value_parser = flink::bench::parse_size, default_value = "8,64,1KiB,64KiB,1MiB")]
    sizes: Vec<usize>,
    /// Sample sizes of the fan-out.
    #[arg(long, value_delimiter = ',', value_parser = flink::bench::parse_size, default_value = "8,1KiB")]
    fanout_sizes: Vec<usize>,
    /// Reader processes of the fan-out.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=16))]
    fanout_readers: u32,
    /// Repetitions (default 3, --quick 1); each runs every system.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    reps: Option<u32>,
    /// Short phases and one repetition (a smoke test).
    #[arg(long)]
    quick: bool,
    /// Measuring time of each phase in ms (default 250, --quick 20).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    time_ms: Option<u64>,
    /// Wakes measured per case (default 300, --quick 40), one every --wake-gap-us.
    #[arg(long, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    wakes: Option<u32>,
    /// Pause before each wake sample, µs: longer than any spin budget, so the reader parks.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(200..=1_000_000))]
    wake_gap_us: u64,
    /// CPUs of the parent and the peer process(es).
    #[arg(long, value_parser = flink::bench::parse_cpus, default_value = "0,1", value_name = "A,B")]
    cpus: flink::bench::CpuPair,
    /// shmslot's spin budget before parking, µs (default: the library's).
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    spin_us: Option<u64>,
    /// Print JSON lines (one object per row and per goal) instead of tables.
    #[arg(long)]
    json: bool,
    /// Print every object and file created, on stderr.
    #[arg(short, long)]
    verbose: bool,
}

/// Options of a peer process.
#[derive(Args, Debug)]
struct ChildArgs {
    #[arg(long, value_enum)]
    system: System,
    #[arg(long)]
    blocking: bool,
    #[arg(long, value_enum)]
    run: Run,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    tag: String,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 0)]
    index: usize,
    #[arg(long, default_value_t = 1)]
    readers: usize,
    #[arg(long)]
    cpu: usize,
    #[arg(long)]
    spin_us: Option<u64>,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => run(&args),
        Command::Child(args) => child(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Creates a system's parent side for `spec` and runs `$body` with it bound
/// to `$side` (each arm has its own concrete type).
macro_rules! with_parent {
    ($system:expr, $ws:expr, $spec:expr, $spin:expr, |$side:ident| $body:expr) => {
        match $system {
            System::Floor => {
                let mut $side = ours::floor_parent($spec)?;
                $body
            }
            System::Shmslot => {
                let mut $side = ours::shmslot_parent($ws, $spec, $spin)?;
                $body
            }
            System::Iceoryx2 => {
                let mut $side = iceoryx2_side::Parent::create($spec)?;
                $body
            }
            System::Zerodds => {
                let mut $side = zerodds_side::Parent::create($spec)?;
                $body
            }
            System::Uds => {
                let mut $side = uds::Parent::create($spec)?;
                $body
            }
        }
    };
}

/// The peer's counterpart of [`with_parent!`].
macro_rules! with_peer {
    ($system:expr, $spec:expr, $index:expr, $spin:expr, |$side:ident| $body:expr) => {
        match $system {
            System::Floor => {
                let mut $side = ours::floor_peer($spec)?;
                $body
            }
            System::Shmslot => {
                let mut $side = ours::shmslot_peer($spec, $spin)?;
                $body
            }
            System::Iceoryx2 => {
                let mut $side = iceoryx2_side::Peer::attach($spec, $index)?;
                $body
            }
            System::Zerodds => {
                let mut $side = zerodds_side::Peer::attach($spec, $index)?;
                $body
            }
            System::Uds => {
                let mut $side = uds::Peer::attach($spec, $index)?;
                $body
            }
        }
    };
}

/// Removes whatever a system may have left of a case.
fn cleanup(system: System, spec: &Spec) {
    match system {
        System::Floor => ours::floor_cleanup(spec),
        System::Shmslot => {} // the rings remove themselves; the workspace cleans the rest
        System::Iceoryx2 => iceoryx2_side::cleanup(spec),
        System::Zerodds => zerodds_side::cleanup(spec),
        System::Uds => uds::cleanup(spec),
    }
}

/// One case of the run.
#[derive(Debug, Clone, Copy)]
struct Case {
    run: Run,
    variant: Variant,
    size: usize,
    rep: u32,
}

struct Settings {
    lat: Budget,
    thr: Budget,
    wakes: u32,
    wake_gap: Duration,
    readers: usize,
    spin: Option<Duration>,
    peer_cpu: usize,
}

/// What a case measured.
enum Measured {
    Pair(PairM),
    Wake(WakeM),
    Fan(FanM),
}

fn run(args: &RunArgs) -> Result<()> {
    proc::install_interrupt_handler();
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 });
    let measure = Duration::from_millis(args.time_ms.unwrap_or(if args.quick { 20 } else { 250 }));
    let warmup = if args.quick { Duration::from_millis(5) } else { Duration::from_millis(40) };
    let (min_samples, max_samples) = if args.quick { (200, 200_000) } else { (2_000, 1_000_000) };
    let s = Settings {
        lat: Budget { warmup, measure, min_samples, max_samples },
        thr: Budget { warmup, measure, min_samples: 0, max_samples: 0 },
        wakes: args.wakes.unwrap_or(if args.quick { 40 } else { 300 }),
        wake_gap: Duration::from_micros(args.wake_gap_us),
        readers: args.fanout_readers as usize,
        spin: args.spin_us.map(Duration::from_micros),
        peer_cpu: args.cpus.1,
    };
    let sorted = |v: &[usize]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (sizes, fan_sizes) = (sorted(&args.sizes), sorted(&args.fanout_sizes));
    let mut systems = args.systems.clone();
    systems.sort();
    systems.dedup();
    let variants: Vec<Variant> = systems.iter().flat_map(|&system| system.variants().iter().map(move |&blocking| Variant { system, blocking })).collect();
    // The wake needs room for the sequence number: its smallest size of at least 64 B.
    let wake_size = 64;

    let mut cases = Vec::new();
    for rep in 0..reps {
        if args.runs.contains(&Run::Pair) {
            for &size in &sizes {
                cases.extend(variants.iter().map(|&variant| Case { run: Run::Pair, variant, size, rep }));
            }
        }
        if args.runs.contains(&Run::Wake) {
            cases.extend(variants.iter().filter(|v| v.blocking).map(|&variant| Case { run: Run::Wake, variant, size: wake_size, rep }));
        }
        if args.runs.contains(&Run::Fanout) {
            for &size in &fan_sizes {
                cases.extend(variants.iter().filter(|v| v.system != System::Floor).map(|&variant| Case { run: Run::Fanout, variant, size, rep }));
            }
        }
    }

    proc::pin_to_cpu(args.cpus.0)?;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let switches_before = proc::involuntary_switches();
    let ws = Workspace::new(args.verbose, tty)?;
    let mut out = report::Results::default();
    for (n, case) in cases.iter().enumerate() {
        let label = format!("[{}/{}] {} {} {}", n + 1, cases.len(), case.run.as_str(), case.variant.name(), format_size(case.size));
        if tty {
            eprint!("\r\x1b[K{label}…");
        } else {
            eprintln!("{label}");
        }
        let _ = std::io::stderr().flush();
        let spec = Spec {
            dir: ws.dir().to_owned(),
            tag: format!("p{:x}c{n}", std::process::id()),
            size: case.size,
            readers: if case.run == Run::Fanout { s.readers } else { 1 },
            blocking: case.variant.blocking,
        };
        let result = run_case(&ws, *case, &spec, &s);
        cleanup(case.variant.system, &spec);
        match result {
            Ok(Measured::Pair(m)) => out.pairs.push(m),
            Ok(Measured::Wake(m)) => out.wakes.push(m),
            Ok(Measured::Fan(m)) => out.fans.push(m),
            Err(e) => {
                if tty {
                    eprint!("\r\x1b[K");
                }
                return Err(BenchError::Data(format!("{label}: {e}")));
            }
        }
    }
    if tty {
        eprint!("\r\x1b[K");
    }
    drop(ws);
    let switches_after = proc::involuntary_switches();
    let preempted = (switches_after.0 - switches_before.0, switches_after.1 - switches_before.1);
    let summary = format!(
        "peers: parent on CPU {}, peers on CPU {}, {} cases ({} repetitions, interleaved) in {:.1} s; preempted {} times (parent) and {} times (peers)",
        args.cpus.0,
        args.cpus.1,
        cases.len(),
        reps,
        started.elapsed().as_secs_f64(),
        preempted.0,
        preempted.1,
    );
    let mut notes = String::new();
    if systems.contains(&System::Uds) {
        // Which socket type carried each size (the parent decided it the same way).
        let all: Vec<usize> = sizes.iter().chain(&fan_sizes).copied().collect();
        let kinds: Vec<String> = sorted(&all)
            .into_iter()
            .map(|size| (size, uds::kind(&Spec { dir: PathBuf::new(), tag: String::new(), size, readers: 1, blocking: true })))
            .map(|(size, kind)| format!("{} {kind}", format_size(size)))
            .collect();
        notes = format!("uds socket type by size: {}\n", kinds.join(", "));
    }
    let text = if args.json {
        eprintln!("{summary}");
        out.json_lines()
    } else {
        format!("{summary}\n\n{}\n{notes}", out.tables(reps))
    };
    std::io::stdout().lock().write_all(text.as_bytes()).map_err(|source| BenchError::Io { op: "write", path: PathBuf::from("<stdout>"), source })
}

/// Arguments of the peer process(es) of a case.
fn child_args(case: Case, spec: &Spec, s: &Settings, index: usize) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["__child".into(), "--system".into(), case.variant.system.as_str().into(), "--run".into(), case.run.as_str().into()];
    if case.variant.blocking {
        a.push("--blocking".into());
    }
    for (k, v) in [
        ("--size", spec.size.to_string()),
        ("--tag", spec.tag.clone()),
        ("--index", index.to_string()),
        ("--readers", spec.readers.to_string()),
        ("--cpu", s.peer_cpu.to_string()),
    ] {
        a.push(k.into());
        a.push(v.into());
    }
    a.push("--dir".into());
    a.push(spec.dir.clone().into_os_string());
    if let Some(spin) = s.spin {
        a.push("--spin-us".into());
        a.push(spin.as_micros().to_string().into());
    }
    a
}

fn run_case(ws: &Workspace, case: Case, spec: &Spec, s: &Settings) -> Result<Measured> {
    let v = case.variant;
    let (size, rep) = (case.size, case.rep);
    with_parent!(v.system, ws, spec, s.spin, |side| {
        match case.run {
            Run::Pair => {
                let args = child_args(case, spec, s, 0);
                let (lat, msgs) = measure_pair(&mut side, &args, size, &s.lat, &s.thr, &mut |p| ws.created(p), &mut |_| {})?;
                Ok(Measured::Pair(PairM { variant: v, size, rep, lat, msgs }))
            }
            Run::Wake => {
                let args = child_args(case, spec, s, 0);
                let one_way = wake_parent(&mut side, &args, size, s)?;
                Ok(Measured::Wake(WakeM { variant: v, size, rep, one_way }))
            }
            Run::Fanout => {
                let per_reader = fanout_parent(&mut side, case, spec, s)?;
                Ok(Measured::Fan(FanM { variant: v, size, rep, per_reader }))
            }
        }
    })
}

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for every process of the host
/// (the wake's one-way latency is a difference taken across two processes).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The wake: one sample every `wake_gap` (the reader has parked by then),
/// the send time taken just before publishing; the peer reports when each
/// arrived. Returns one-way latencies (ns), the first tenth (warm-up) left out.
fn wake_parent<T: PubSide>(side: &mut T, args: &[OsString], size: usize, s: &Settings) -> Result<Vec<u64>> {
    let mut peer = Peer::spawn(args)?;
    let _ = peer.wait_ready()?;
    let mut watch = || peer.check_alive();
    let mut src = drive::pattern(size);
    let mut sent = Vec::with_capacity(s.wakes as usize);
    for seq in 0..u64::from(s.wakes) {
        std::thread::sleep(s.wake_gap);
        watch()?;
        drive::put_head(&mut src, seq);
        sent.push(monotonic_ns());
        side.publish(seq, &src, &mut watch)?;
    }
    drive::put_head(&mut src, STOP);
    side.publish(STOP, &src, &mut watch)?;
    let line = peer.read_line("wake report", Duration::from_secs(30))?;
    peer.finish(Duration::from_secs(10))?;
    let bad = |what: &str| BenchError::Child { what: format!("wake report: {what}"), stderr: String::new() };
    let got: Vec<u64> = line
        .strip_prefix("wake")
        .ok_or_else(|| bad("no 'wake' prefix"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad("not numbers"))?;
    if got.len() != sent.len() {
        return Err(bad(&format!("{} arrival times for {} samples", got.len(), sent.len())));
    }
    let skip = sent.len() / 10;
    Ok(sent.iter().zip(&got).skip(skip).map(|(&t0, &t1)| t1.saturating_sub(t0)).collect())
}

/// The reader of the wake: takes each sample, notes the time it arrived.
fn wake_child<T: SubSide>(side: &mut T, watch: &mut proc::Watch<'_>) -> Result<()> {
    let mut times = Vec::with_capacity(4096);
    let mut expected = 0u64;
    loop {
        let (h, _) = side.take(watch)?;
        let now = monotonic_ns();
        if h == STOP {
            break;
        }
        if h != expected {
            return Err(BenchError::Data(format!("wake: received sample {h}, expected {expected}")));
        }
        expected += 1;
        times.push(now);
    }
    let mut line = String::from("wake");
    for t in times {
        line.push(' ');
        line.push_str(&t.to_string());
    }
    say(&line)
}

/// The fan-out: `readers` peer processes attach (all on the peer CPU, each
/// yielding when it finds nothing), the parent publishes as fast as the
/// slowest lets it. Returns each reader's msgs/s.
fn fanout_parent<T: PubSide>(side: &mut T, case: Case, spec: &Spec, s: &Settings) -> Result<Vec<f64>> {
    proc::yield_when_idle(true);
    let result = (|| {
        let mut peers = Vec::with_capacity(spec.readers);
        for i in 0..spec.readers {
            peers.push(Peer::spawn(&child_args(case, spec, s, i))?);
        }
        for p in &mut peers {
            let _ = p.wait_ready()?;
        }
        let mut watch = || peers.iter_mut().try_for_each(Peer::check_alive);
        drive::publish(side, spec.size, &s.thr, &mut watch)?;
        let mut rates = Vec::with_capacity(spec.readers);
        for mut p in peers {
            let line = p.read_line("throughput report", Duration::from_secs(30))?;
            p.finish(Duration::from_secs(10))?;
            rates.push(parse_thr(&line)?.msgs_per_s());
        }
        Ok(rates)
    })();
    proc::yield_when_idle(false);
    result
}

fn child(args: &ChildArgs) -> Result<()> {
    let mut watch = proc::start_child(args.cpu)?;
    let spec = Spec { dir: args.dir.clone(), tag: args.tag.clone(), size: args.size, readers: args.readers, blocking: args.blocking };
    let spin = args.spin_us.map(Duration::from_micros);
    if args.run == Run::Fanout {
        proc::yield_when_idle(true);
    }
    with_peer!(args.system, &spec, args.index, spin, |side| match args.run {
        Run::Pair => serve(&mut side, &mut watch),
        Run::Wake => {
            say("ready")?;
            wake_child(&mut side, &mut watch)
        }
        Run::Fanout => {
            say("ready")?;
            say_thr(&drive::consume(&mut side, &mut watch)?)
        }
    })
}
