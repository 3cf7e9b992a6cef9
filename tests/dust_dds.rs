//! An unmodified dust_dds 0.16 stack over shmslot, across real processes:
//! user data through shared memory and none over UDP; a stock UDP-only
//! dust_dds participant on the same host served over UDP beside it, with no
//! message to a shmslot participant also sent over UDP; a subscriber
//! killed and restarted while the publisher goes on; ports removed when a
//! participant is deleted and when its process exits.
//!
//! Children are this test binary re-executed (see `common::child_command`)
//! with `SHMSLOT_DDS_ROLE` set. Each test has its own discovery directory,
//! domain id and topic name.
#![cfg(feature = "dust-dds")]

mod common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use common::family::{child_env as env, say, Family};
use common::TestDir;
use dust_dds::domain::domain_participant::DomainParticipant;
use dust_dds::domain::domain_participant_factory::DomainParticipantFactory;
use dust_dds::infrastructure::error::DdsError;
use dust_dds::infrastructure::listener::NO_LISTENER;
use dust_dds::infrastructure::qos::{DataReaderQos, DataWriterQos, QosKind};
use dust_dds::infrastructure::qos_policy::{DurabilityQosPolicy, DurabilityQosPolicyKind, HistoryQosPolicy, HistoryQosPolicyKind, ReliabilityQosPolicy, ReliabilityQosPolicyKind};
use dust_dds::infrastructure::sample_info::{ANY_INSTANCE_STATE, ANY_SAMPLE_STATE, ANY_VIEW_STATE};
use dust_dds::infrastructure::status::NO_STATUS;
use dust_dds::infrastructure::time::{Duration as DdsDuration, DurationKind};
use dust_dds::infrastructure::type_support::DdsType;
use dust_dds::transport::interface::TransportParticipantFactory;
use shmslot::dust_dds::{participant_factory, DdsCounters};
use shmslot::transport::TransportConfig;

const CHILD_TEST: &str = "dds_child_entry";
const ROLE: &str = "SHMSLOT_DDS_ROLE";
const DIR: &str = "SHMSLOT_DDS_DIR";
const DOMAIN: &str = "SHMSLOT_DDS_DOMAIN";
const TOPIC: &str = "SHMSLOT_DDS_TOPIC";
const COUNT: &str = "SHMSLOT_DDS_COUNT";
/// Publisher: how many matched subscribers to wait for.
const SUBS: &str = "SHMSLOT_DDS_SUBS";
/// Publisher: microseconds between writes.
const INTERVAL: &str = "SHMSLOT_DDS_INTERVAL_US";
/// Subscriber: say ready after this many samples (0: once created).
const READY_AT: &str = "SHMSLOT_DDS_READY_AT";

/// Payload bound of the checked samples.
const CAP: usize = 256;
/// Samples the publisher writes in the two- and three-process tests.
const SAMPLES: u64 = 1000;

/// The keyed sample: `seq`'s payload is `common::fill`'s checked bytes.
#[derive(DdsType, Debug)]
struct Reading {
    #[dust_dds(key)]
    sensor: u32,
    seq: u64,
    payload: Vec<u8>,
}

fn reading(seq: u64) -> Reading {
    let mut buf = [0u8; CAP];
    let len = common::fill(&mut buf, seq);
    Reading { sensor: 7, seq, payload: buf[..len].to_vec() }
}

fn reliability() -> ReliabilityQosPolicy {
    ReliabilityQosPolicy { kind: ReliabilityQosPolicyKind::Reliable, max_blocking_time: DurationKind::Finite(DdsDuration::new(10, 0)) }
}

/// Reliable, keep-all, transient-local (a late subscriber gets the history).
fn writer_qos() -> DataWriterQos {
    DataWriterQos { reliability: reliability(), history: HistoryQosPolicy { kind: HistoryQosPolicyKind::KeepAll }, durability: DurabilityQosPolicy { kind: DurabilityQosPolicyKind::TransientLocal }, ..Default::default() }
}

fn reader_qos() -> DataReaderQos {
    DataReaderQos { reliability: reliability(), history: HistoryQosPolicy { kind: HistoryQosPolicyKind::KeepAll }, durability: DurabilityQosPolicy { kind: DurabilityQosPolicyKind::TransientLocal }, ..Default::default() }
}

fn config(domain: u32, dir: &str) -> TransportConfig {
    TransportConfig::new(domain).discovery_dir(dir)
}

fn counters_fields(c: &DdsCounters) -> String {
    format!(
        "shm_user={} udp_user={} shm_msgs={} udp_msgs={} rx_user={} rx_msgs={} fallback={} dropped={} unavailable={} rx_errors={}",
        c.shm.user_messages, c.udp.user_messages, c.shm.messages, c.udp.messages, c.shm_received.user_messages, c.shm_received.messages, c.shm_fallback, c.shm_dropped, c.shm_unavailable, c.receive_errors
    )
}

/// Plays a child process when `SHMSLOT_DDS_ROLE` is set; otherwise a no-op.
#[test]
fn dds_child_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let domain: u32 = env(DOMAIN).parse().unwrap();
    match role.as_str() {
        "pub" => {
            let f = participant_factory(config(domain, &env(DIR)));
            publisher_child(f, domain, || f.get_mut_transport().counters());
        }
        "sub" => {
            let f = participant_factory(config(domain, &env(DIR)));
            subscriber_child(f, domain, || f.get_mut_transport().counters());
        }
        "stock-sub" => subscriber_child(DomainParticipantFactory::get_instance(), domain, DdsCounters::default),
        "exit-without-delete" => {
            // A participant left alive at exit: the exit hook removes its port.
            let p = participant_factory(config(domain, &env(DIR))).create_participant(domain as i32, QosKind::Default, NO_LISTENER, NO_STATUS).unwrap();
            say("SHMSLOT-READY up");
            // Alive until the parent has looked at its rings.
            let _ = std::io::stdin().lock().lines().next();
            say("SHMSLOT-RESULT exiting=1");
            std::mem::forget(p);
        }
        other => panic!("unknown role {other}"),
    }
}

fn participant<T: TransportParticipantFactory>(f: &DomainParticipantFactory<T>, domain: u32) -> DomainParticipant {
    f.create_participant(domain as i32, QosKind::Default, NO_LISTENER, NO_STATUS).unwrap()
}

/// Waits for `SUBS` matched subscribers, writes `COUNT` samples
/// `INTERVAL` µs apart (measuring the longest `write`-to-`write` gap),
/// then waits for "finish" on stdin or, without one, for every sample to
/// be acknowledged.
fn publisher_child<T: TransportParticipantFactory>(f: &DomainParticipantFactory<T>, domain: u32, counters: impl Fn() -> DdsCounters) {
    let (count, subs): (u64, i32) = (env(COUNT).parse().unwrap(), env(SUBS).parse().unwrap());
    let interval = Duration::from_micros(std::env::var(INTERVAL).map_or(0, |v| v.parse().unwrap()));
    let p = participant(f, domain);
    let topic = p.create_topic::<Reading>(&env(TOPIC), "Reading", QosKind::Default, NO_LISTENER, NO_STATUS).unwrap();
    let publisher = p.create_publisher(QosKind::Default, NO_LISTENER, NO_STATUS).unwrap();
    let writer = publisher.create_datawriter::<Reading>(&topic, QosKind::Specific(writer_qos()), NO_LISTENER, NO_STATUS).unwrap();
    let t0 = Instant::now();
    while writer.get_publication_matched_status().unwrap().current_count < subs {
        assert!(t0.elapsed() < Duration::from_secs(60), "publisher: {subs} subscribers not matched in 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    say(&format!("SHMSLOT-READY matched-after-ms={}", t0.elapsed().as_millis()));
    let mut worst = Duration::ZERO;
    let mut last = Instant::now();
    for seq in 0..count {
        writer.write(reading(seq), None).unwrap();
        worst = worst.max(last.elapsed());
        last = Instant::now();
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    let written_in = t0.elapsed();
    if std::env::var("SHMSLOT_DDS_FINISH").as_deref() == Ok("stdin") {
        let _ = std::io::stdin().lock().lines().next();
    } else {
        writer.wait_for_acknowledgments(DdsDuration::new(60, 0)).unwrap();
    }
    let c = counters();
    say(&format!("SHMSLOT-RESULT written={count} worst_gap_us={} written_ms={} {}", worst.as_micros(), written_in.as_millis(), counters_fields(&c)));
    p.delete_contained_entities().unwrap();
    f.delete_participant(&p).unwrap();
}

/// Reads `COUNT` samples, checking each one's payload and that they come
/// in order, each once (from the first one seen: a restarted subscriber
/// with transient-local durability starts at 0 again); says ready after
/// `READY_AT` of them; then waits for a line on stdin before it exits (so
/// its last acknowledgements reach the publisher).
fn subscriber_child<T: TransportParticipantFactory>(f: &DomainParticipantFactory<T>, domain: u32, counters: impl Fn() -> DdsCounters) {
    let (count, ready_at): (u64, u64) = (env(COUNT).parse().unwrap(), env(READY_AT).parse().unwrap());
    let p = participant(f, domain);
    let topic = p.create_topic::<Reading>(&env(TOPIC), "Reading", QosKind::Default, NO_LISTENER, NO_STATUS).unwrap();
    let subscriber = p.create_subscriber(QosKind::Default, NO_LISTENER, NO_STATUS).unwrap();
    let reader = subscriber.create_datareader::<Reading>(&topic, QosKind::Specific(reader_qos()), NO_LISTENER, NO_STATUS).unwrap();
    if ready_at == 0 {
        say("SHMSLOT-READY created");
    }
    let (mut next, mut got) = (0u64, 0u64);
    let mut idle = Instant::now();
    while next < count {
        let samples = match reader.take(256, ANY_SAMPLE_STATE, ANY_VIEW_STATE, ANY_INSTANCE_STATE) {
            Ok(s) => s,
            Err(DdsError::NoData) => {
                assert!(idle.elapsed() < Duration::from_secs(60), "subscriber: nothing for 60 s after {got} samples (next {next})");
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => panic!("take: {e:?}"),
        };
        idle = Instant::now();
        for s in samples {
            let Some(r) = s.data else { continue };
            assert_eq!(common::check(&r.payload, CAP), Some(r.seq), "sample {} corrupt", r.seq);
            assert_eq!(r.seq, next, "out of order or duplicated");
            next += 1;
            got += 1;
            if got == ready_at {
                say(&format!("SHMSLOT-READY got={got}"));
            }
        }
    }
    let c = counters();
    say(&format!("SHMSLOT-RESULT received={got} {}", counters_fields(&c)));
    let _ = std::io::stdin().lock().lines().next();
}

fn topic_name(tag: &str) -> String {
    format!("shmslot-test-{tag}-{}", std::process::id())
}

fn spawn(fam: &mut Family, name: &str, role: &str, domain: u32, dir: &TestDir, topic: &str, extra: &[(&str, String)]) -> usize {
    let mut cmd = common::child_command(CHILD_TEST);
    cmd.env(ROLE, role).env(DIR, dir.path()).env(DOMAIN, domain.to_string()).env(TOPIC, topic).env(COUNT, SAMPLES.to_string()).env(READY_AT, "0");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    fam.spawn(name, cmd)
}

fn num(fields: &common::family::Fields, key: &str) -> u64 {
    fields.get(key).unwrap_or_else(|| panic!("no {key} in {fields:?}")).parse().unwrap()
}

#[test]
fn two_processes_user_data_goes_through_shared_memory_only() {
    let dir = TestDir::new("dds-two");
    let (domain, topic) = (41, topic_name("two"));
    let mut fam = Family::new();
    let sub = spawn(&mut fam, "subscriber", "sub", domain, &dir, &topic, &[]);
    fam.wait_ready(sub, Duration::from_secs(30));
    let publ = spawn(&mut fam, "publisher", "pub", domain, &dir, &topic, &[(SUBS, "1".into())]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = fam.wait_result(sub, deadline);
    let p = fam.wait_result(publ, deadline);
    fam.send(sub, "exit");
    fam.wait_all(deadline, "children did not exit");
    eprintln!("publisher {p:?}\nsubscriber {s:?}");

    assert_eq!(num(&s, "received"), SAMPLES);
    // Every sample went through shared memory (retransmissions may add
    // some), nothing of user data over UDP, and no SHM destination fell back.
    assert!(num(&p, "shm_user") >= SAMPLES, "publisher: {p:?}");
    assert_eq!(num(&p, "udp_user"), 0, "publisher sent user data over UDP: {p:?}");
    assert_eq!(num(&p, "fallback"), 0, "publisher: {p:?}");
    assert!(num(&s, "rx_user") >= SAMPLES, "subscriber read user data elsewhere: {s:?}");
    assert_eq!(num(&s, "udp_user"), 0, "subscriber: {s:?}");
    for r in [&p, &s] {
        assert_eq!(num(r, "unavailable") + num(r, "rx_errors"), 0, "{r:?}");
    }
}

#[test]
fn a_stock_udp_participant_beside_shmslot_ones_gets_everything_over_udp() {
    let dir = TestDir::new("dds-three");
    let (domain, topic) = (42, topic_name("three"));
    let mut fam = Family::new();
    let sub = spawn(&mut fam, "shmslot subscriber", "sub", domain, &dir, &topic, &[]);
    let stock = spawn(&mut fam, "stock subscriber", "stock-sub", domain, &dir, &topic, &[]);
    fam.wait_ready(sub, Duration::from_secs(30));
    fam.wait_ready(stock, Duration::from_secs(30));
    let publ = spawn(&mut fam, "publisher", "pub", domain, &dir, &topic, &[(SUBS, "2".into())]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = fam.wait_result(sub, deadline);
    let k = fam.wait_result(stock, deadline);
    let p = fam.wait_result(publ, deadline);
    fam.send(sub, "exit");
    fam.send(stock, "exit");
    fam.wait_all(deadline, "children did not exit");
    eprintln!("publisher {p:?}\nshmslot subscriber {s:?}\nstock subscriber {k:?}");

    // Both got every sample, in order, each once (the subscribers check).
    assert_eq!(num(&s, "received"), SAMPLES);
    assert_eq!(num(&k, "received"), SAMPLES);
    // The publisher served the shmslot subscriber through shared memory and
    // the stock one over UDP; no call that named a reachable SHM locator
    // went to UDP, so the shmslot subscriber got nothing twice.
    assert!(num(&p, "shm_user") >= SAMPLES, "publisher: {p:?}");
    assert!(num(&p, "udp_user") >= SAMPLES, "publisher: {p:?}");
    assert_eq!(num(&p, "fallback"), 0, "publisher: {p:?}");
    assert!(num(&s, "rx_user") >= SAMPLES, "shmslot subscriber: {s:?}");
}

#[test]
fn a_killed_subscriber_restarts_and_matches_again_while_the_publisher_goes_on() {
    const TOTAL: u64 = 3000;
    let dir = TestDir::new("dds-kill");
    let (domain, topic) = (43, topic_name("kill"));
    let mut fam = Family::new();
    let first = spawn(&mut fam, "first subscriber", "sub", domain, &dir, &topic, &[(COUNT, TOTAL.to_string()), (READY_AT, "300".into())]);
    let publ = spawn(&mut fam, "publisher", "pub", domain, &dir, &topic, &[(SUBS, "1".into()), (COUNT, TOTAL.to_string()), (INTERVAL, "1000".into()), ("SHMSLOT_DDS_FINISH", "stdin".into())]);
    fam.wait_ready(publ, Duration::from_secs(60));
    fam.wait_ready(first, Duration::from_secs(60));
    fam.kill(first);
    let second = spawn(&mut fam, "restarted subscriber", "sub", domain, &dir, &topic, &[(COUNT, TOTAL.to_string())]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = fam.wait_result(second, deadline);
    fam.send(publ, "finish");
    let p = fam.wait_result(publ, deadline);
    fam.send(second, "exit");
    eprintln!("publisher {p:?}\nrestarted subscriber {s:?}");

    // The restarted subscriber matched again and, transient-local, got the
    // whole history from 0 in order, each sample once.
    assert_eq!(num(&s, "received"), TOTAL);
    assert!(num(&s, "rx_user") > 0, "{s:?}");
    // The publisher never stalled on the dead subscriber.
    assert_eq!(num(&p, "written"), TOTAL);
    assert!(num(&p, "worst_gap_us") < 500_000, "a write of the publisher took {} µs", num(&p, "worst_gap_us"));
    // The dead subscriber's port was reclaimed by the restarted one, and
    // the two exit cleanly, removing everything (the TestDir checks).
    let deadline = Instant::now() + Duration::from_secs(30);
    fam.wait_exit(publ, deadline);
    fam.wait_exit(second, deadline);
}

#[test]
fn a_participant_s_port_is_removed_on_delete_and_at_exit() {
    let dir = TestDir::new("dds-ports");
    let domain = 44;
    let names = || std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect::<Vec<_>>();
    let count = || names().len();

    // Deleting a participant lets go of its port and the multicast ring.
    let f = participant_factory(config(domain, dir.path().to_str().unwrap()));
    let p = participant(f, domain);
    let made = names();
    assert!(made.contains(&format!("dds-d{domain}-p1")) && made.contains(&format!("dds-d{domain}-multicast")), "{made:?}");
    f.delete_participant(&p).unwrap();
    let t0 = Instant::now();
    while count() > 0 {
        assert!(t0.elapsed() < Duration::from_secs(2), "still there {:?} after the participant was deleted", t0.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("removed {:?} after delete_participant", t0.elapsed());

    // A process that exits with its participant alive: the exit hook.
    let mut fam = Family::new();
    let mut cmd = common::child_command(CHILD_TEST);
    cmd.env(ROLE, "exit-without-delete").env(DIR, dir.path()).env(DOMAIN, domain.to_string());
    let id = fam.spawn("exit", cmd);
    fam.wait_ready(id, Duration::from_secs(30));
    // The child stays until told (it used to exit right after saying ready,
    // and under load its exit hook had removed one ring before this count:
    // seen once in CI, 1 of 2).
    assert_eq!(count(), 2, "the child's port and multicast ring");
    fam.send(id, "exit");
    fam.wait_all(Instant::now() + Duration::from_secs(30), "child did not exit");
    assert_eq!(names(), Vec::<String>::new(), "left behind by a process that exited with a live participant");
}
