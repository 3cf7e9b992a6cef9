//! dust_dds over shmslot against stock dust_dds over UDP, in one run:
//! round-trip latency of 8 B and 1 KiB samples (p50, p99) and throughput
//! of 64 KiB samples, between two processes pinned to CPUs 0 and 1.
//!
//! ```text
//! cargo run --release --features dust-dds --example dds_bench -- [REPS]     (default 3)
//! ```
//! Each repetition runs every case over shmslot, then over UDP, each time
//! with two fresh processes in a fresh domain; the table shows medians over
//! the repetitions and the shmslot/UDP ratios. Both sides use the same
//! QoS (reliable, keep-all, volatile); shmslot's rings have 64 KiB slots,
//! so its fragment size is 65,251 bytes against stock dust_dds's 1,344.
//! `SPIN_US=0` makes shmslot's receive threads park at once instead of
//! spinning 50 µs first. The rings live in a private discovery directory,
//! checked and removed at the end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dust_dds::domain::domain_participant::DomainParticipant;
use dust_dds::domain::domain_participant_factory::DomainParticipantFactory;
use dust_dds::infrastructure::error::DdsError;
use dust_dds::infrastructure::listener::NO_LISTENER;
use dust_dds::infrastructure::qos::{DataReaderQos, DataWriterQos, QosKind};
use dust_dds::infrastructure::qos_policy::{HistoryQosPolicy, HistoryQosPolicyKind, ReliabilityQosPolicy, ReliabilityQosPolicyKind};
use dust_dds::infrastructure::sample_info::{ANY_INSTANCE_STATE, ANY_SAMPLE_STATE, ANY_VIEW_STATE};
use dust_dds::infrastructure::status::{StatusKind, NO_STATUS};
use dust_dds::infrastructure::time::{Duration as DdsDuration, DurationKind};
use dust_dds::infrastructure::type_support::DdsType;
use dust_dds::publication::data_writer::DataWriter;
use dust_dds::subscription::data_reader::DataReader;
use dust_dds::wait_set::{Condition, WaitSet};
use shmslot::transport::TransportConfig;

#[derive(DdsType, Debug, Clone)]
struct Blob {
    #[dust_dds(key)]
    id: u32,
    seq: u64,
    data: Vec<u8>,
}

const WARMUP: u64 = 200;
const ROUND_TRIPS: u64 = 2000;
const BIG: usize = 64 * 1024;
const BIG_COUNT: u64 = 400;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A participant over `transport` ("shm" or "udp") in `domain`.
fn participant(transport: &str, domain: i32) -> DomainParticipant {
    let qos = QosKind::Default;
    match transport {
        "shm" => {
            let mut config = TransportConfig::new(domain as u32).slot_count(64).slot_capacity(BIG);
            if let Ok(us) = std::env::var("SPIN_US") {
                config = config.spin_budget(Duration::from_micros(us.parse().unwrap()));
            }
            shmslot::dust_dds::participant_factory(config).create_participant(domain, qos, NO_LISTENER, NO_STATUS)
        }
        _ => DomainParticipantFactory::get_instance().create_participant(domain, qos, NO_LISTENER, NO_STATUS),
    }
    .expect("participant")
}

fn reliability() -> ReliabilityQosPolicy {
    ReliabilityQosPolicy { kind: ReliabilityQosPolicyKind::Reliable, max_blocking_time: DurationKind::Finite(DdsDuration::new(30, 0)) }
}

fn writer(p: &DomainParticipant, topic: &str) -> DataWriter<Blob> {
    let t = p.create_topic::<Blob>(topic, "Blob", QosKind::Default, NO_LISTENER, NO_STATUS).unwrap();
    let qos = DataWriterQos { reliability: reliability(), history: HistoryQosPolicy { kind: HistoryQosPolicyKind::KeepAll }, ..Default::default() };
    p.create_publisher(QosKind::Default, NO_LISTENER, NO_STATUS).unwrap().create_datawriter::<Blob>(&t, QosKind::Specific(qos), NO_LISTENER, NO_STATUS).unwrap()
}

fn reader(p: &DomainParticipant, topic: &str) -> (DataReader<Blob>, WaitSet) {
    let t = p.create_topic::<Blob>(topic, "Blob", QosKind::Default, NO_LISTENER, NO_STATUS).unwrap();
    let qos = DataReaderQos { reliability: reliability(), history: HistoryQosPolicy { kind: HistoryQosPolicyKind::KeepAll }, ..Default::default() };
    let r = p.create_subscriber(QosKind::Default, NO_LISTENER, NO_STATUS).unwrap().create_datareader::<Blob>(&t, QosKind::Specific(qos), NO_LISTENER, NO_STATUS).unwrap();
    let cond = r.get_statuscondition();
    cond.set_enabled_statuses(&[StatusKind::DataAvailable]).unwrap();
    let mut ws = WaitSet::new();
    ws.attach_condition(Condition::StatusCondition(cond)).unwrap();
    (r, ws)
}

fn matched(w: &DataWriter<Blob>) {
    let t0 = Instant::now();
    while w.get_publication_matched_status().unwrap().current_count < 1 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no match in 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for samples and takes them.
fn take(r: &DataReader<Blob>, ws: &mut WaitSet) -> Vec<Blob> {
    loop {
        match r.take(64, ANY_SAMPLE_STATE, ANY_VIEW_STATE, ANY_INSTANCE_STATE) {
            Ok(s) => return s.into_iter().filter_map(|s| s.data).collect(),
            Err(DdsError::NoData) => {
                ws.wait(DdsDuration::new(30, 0)).expect("nothing for 30 s");
            }
            Err(e) => panic!("take: {e:?}"),
        }
    }
}

fn child(role: &str, transport: &str, domain: i32, size: usize) {
    let p = participant(transport, domain);
    match role {
        "ping" => {
            pin(0);
            let w = writer(&p, "ping");
            let (r, mut ws) = reader(&p, "pong");
            matched(&w);
            std::thread::sleep(Duration::from_millis(200)); // the pong side's writer matches too
            let mut rtts = Vec::with_capacity(ROUND_TRIPS as usize);
            let data = vec![0x5a; size];
            for seq in 0..WARMUP + ROUND_TRIPS {
                let t0 = Instant::now();
                w.write(Blob { id: 1, seq, data: data.clone() }, None).unwrap();
                'wait: loop {
                    for b in take(&r, &mut ws) {
                        if b.seq == seq {
                            assert_eq!(b.data.len(), size);
                            break 'wait;
                        }
                    }
                }
                if seq >= WARMUP {
                    rtts.push(t0.elapsed().as_nanos() as u64);
                }
            }
            w.write(Blob { id: 1, seq: u64::MAX, data: Vec::new() }, None).unwrap();
            let _ = w.wait_for_acknowledgments(DdsDuration::new(5, 0));
            rtts.sort_unstable();
            println!("RESULT {} {}", rtts[rtts.len() / 2], rtts[rtts.len() * 99 / 100]);
        }
        "pong" => {
            pin(1);
            let w = writer(&p, "pong");
            let (r, mut ws) = reader(&p, "ping");
            loop {
                for b in take(&r, &mut ws) {
                    if b.seq == u64::MAX {
                        return;
                    }
                    w.write(b, None).unwrap();
                }
            }
        }
        "pub" => {
            pin(0);
            let w = writer(&p, "bulk");
            matched(&w);
            let data = vec![0xa5; size];
            for seq in 0..BIG_COUNT {
                w.write(Blob { id: 1, seq, data: data.clone() }, None).unwrap();
            }
            w.wait_for_acknowledgments(DdsDuration::new(120, 0)).unwrap();
        }
        "sub" => {
            pin(1);
            let (r, mut ws) = reader(&p, "bulk");
            println!("READY");
            let (mut got, mut first) = (0u64, None);
            while got < BIG_COUNT {
                for b in take(&r, &mut ws) {
                    assert_eq!(b.data.len(), size);
                    first.get_or_insert_with(Instant::now);
                    got += 1;
                }
            }
            let secs = first.unwrap().elapsed().as_secs_f64();
            println!("RESULT {:.1}", (BIG_COUNT - 1) as f64 / secs);
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs the two sides of one case; returns the result line's numbers.
fn case(waiter: &str, other: &str, transport: &str, domain: i32, size: usize) -> Vec<f64> {
    let exe = std::env::current_exe().unwrap();
    let spawn = |role: &str| {
        Command::new(&exe).args(["--role", role, transport, &domain.to_string(), &size.to_string()]).stdout(Stdio::piped()).spawn().expect("spawn")
    };
    let mut a = spawn(waiter);
    let mut lines = BufReader::new(a.stdout.take().unwrap()).lines();
    if waiter == "sub" {
        assert_eq!(lines.next().unwrap().unwrap(), "READY");
    }
    let mut b = spawn(other);
    let result = lines.map_while(Result::ok).find_map(|l| l.strip_prefix("RESULT ").map(str::to_owned)).expect("no result");
    let _ = a.wait();
    // The other side exits on its own (pong on the stop sample, pub once
    // acknowledged); a kill would leave its ring to be reclaimed.
    let t0 = Instant::now();
    while b.try_wait().ok().flatten().is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = b.kill();
            let _ = b.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    result.split(' ').map(|v| v.parse().unwrap()).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--role") {
        child(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap());
        return;
    }
    let reps: usize = args.get(1).map_or(3, |a| a.parse().expect("REPS must be a number"));
    // Children find it through SHMSLOT_DIR (the default discovery dir).
    let dir = std::env::temp_dir().join(format!("shmslot-dds-bench-{}", std::process::id()));
    std::env::set_var("SHMSLOT_DIR", &dir);
    let transports = ["shm", "udp"];
    // [transport][case] → samples over repetitions; cases: 8 B p50, p99, 1 KiB p50, p99, 64 KiB msgs/s.
    let mut r = vec![vec![Vec::new(); 5]; 2];
    // A fresh domain for every case (150..230), so no participant of an
    // earlier case is discovered.
    let mut n = std::process::id() as i32;
    let mut next_domain = || {
        n += 1;
        150 + n.rem_euclid(80)
    };
    for rep in 0..reps {
        for (t, transport) in transports.iter().enumerate() {
            for (k, size) in [(0, 8), (2, 1024)] {
                let v = case("ping", "pong", transport, next_domain(), size);
                r[t][k].push(v[0]);
                r[t][k + 1].push(v[1]);
            }
            r[t][4].push(case("sub", "pub", transport, next_domain(), BIG)[0]);
            eprintln!("rep {}/{reps} {transport} done", rep + 1);
        }
    }
    // Every child exited (or was killed after 30 s): what it left, if any,
    // is reported and removed.
    match shmslot::discovery::clean(&dir, false, false) {
        Ok(left) if !left.is_empty() => eprintln!("warning: {} segment(s) left behind by killed children, removed", left.len()),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cleaning {}: {e}", dir.display()),
    }
    let _ = std::fs::remove_dir(&dir);
    let m: Vec<Vec<f64>> = r.into_iter().map(|cases| cases.into_iter().map(median).collect()).collect();
    println!("dust_dds 0.16 round trip (µs) and 64 KiB throughput, medians of {reps} repetitions:");
    println!("| | shmslot | UDP | shmslot/UDP |");
    println!("|---|---|---|---|");
    let names = ["RTT p50, 8 B", "RTT p99, 8 B", "RTT p50, 1 KiB", "RTT p99, 1 KiB"];
    for (k, name) in names.iter().enumerate() {
        println!("| {name} | {:.1} µs | {:.1} µs | {:.2}× |", m[0][k] / 1e3, m[1][k] / 1e3, m[0][k] / m[1][k]);
    }
    let mbs = |v: f64| v * BIG as f64 / 1e6;
    println!("| 64 KiB samples/s | {:.0} ({:.0} MB/s) | {:.0} ({:.0} MB/s) | {:.2}× |", m[0][4], mbs(m[0][4]), m[1][4], mbs(m[1][4]), m[0][4] / m[1][4]);
}
