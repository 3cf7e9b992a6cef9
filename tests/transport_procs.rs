//! `ShmTransport` across real processes: three participants exchanging
//! unicast and multicast traffic, a participant killed mid-stream, and
//! reachability from another user and from another IPC namespace with its
//! own `/dev/shm`.
//!
//! Children are this test binary re-executed (see `common::child_command`)
//! with `SHMSLOT_TR_ROLE` set; they print `SHMSLOT-READY <locator>` (their
//! input port's locator, as `Display` prints it) and read commands on stdin.

mod common;

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::family::{child_env as env, say, Family};
use common::{assert_unlinked, check, fill, TestDir};
use shmslot::locator::{Locator, NamespaceFacts, NamespaceId, ShmAddress};
use shmslot::transport::{Delivery, InputPort, ShmTransport, TransportConfig};

const CHILD_TEST: &str = "transport_child_entry";
const ROLE: &str = "SHMSLOT_TR_ROLE";
const DIR: &str = "SHMSLOT_TR_DIR";
const DOMAIN: &str = "SHMSLOT_TR_DOMAIN";
const ID: &str = "SHMSLOT_TR_ID";

/// Message size bound of the mesh test (messages are 12 to 200 bytes).
const CAP: usize = 200;
const UNICAST: u64 = 100_000;
const MULTICAST: u64 = 10_000;
const PEERS: u64 = 3;

fn unique_domain() -> u32 {
    // Each test has its own discovery directory; a distinct domain id too
    // makes a mix-up visible.
    (std::process::id() % 200) + 10
}

fn locator(ns: NamespaceId, domain: u32, port: u32) -> Locator {
    Locator::shm(ShmAddress { namespace: ns, domain_id: domain, multicast: false }, port)
}

fn parse(text: &str) -> Locator {
    text.trim().parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Plays a child process when `SHMSLOT_TR_ROLE` is set; otherwise a no-op.
#[test]
fn transport_child_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let config = TransportConfig::new(env(DOMAIN).parse().unwrap()).slot_count(64).slot_capacity(CAP).discovery_dir(env(DIR));
    match role.as_str() {
        "mesh" => mesh_child(config),
        "sink" => sink_child(config),
        "probe" => probe_child(config),
        other => panic!("unknown role {other}"),
    }
}

// ─────────────────────────── three participants ───────────────────────────

/// Tag of message `seq` of `sender` on channel `kind` (0 unicast, 1 multicast).
fn tag(sender: u64, kind: u64, seq: u64) -> u64 {
    sender << 56 | kind << 48 | seq
}

/// Reads `per_sender` messages from each of `senders` on `port`, checking
/// payload and per-sender order; returns how many arrived.
fn drain(mut port: InputPort, kind: u64, senders: Vec<u64>, per_sender: u64) -> u64 {
    let mut next = [0u64; 256];
    let want = per_sender * senders.len() as u64;
    let mut got = 0;
    while got < want {
        let Some(m) = port.recv_timeout(Duration::from_secs(30)).unwrap() else {
            panic!("kind {kind}: nothing for 30 s after {got} of {want} messages (next per sender {:?})", senders.iter().map(|&s| next[s as usize]).collect::<Vec<_>>());
        };
        let t = check(&m, CAP).unwrap_or_else(|| panic!("kind {kind}: corrupt message of {} bytes", m.len()));
        let (s, k, seq) = (t >> 56, (t >> 48) & 0xff, t & 0xffff_ffff_ffff);
        assert_eq!(k, kind, "a message of kind {k} arrived on the kind {kind} port");
        assert!(senders.contains(&s), "message from unexpected sender {s}");
        assert_eq!(seq, next[s as usize], "sender {s}: out of order or duplicated");
        next[s as usize] += 1;
        assert!(next[s as usize] <= per_sender, "sender {s}: more than {per_sender} messages");
        got += 1;
    }
    assert!(port.try_recv().unwrap().is_none(), "kind {kind}: a message beyond the expected ones");
    got
}

fn send_until_served(t: &ShmTransport, buf: &[u8], to: &Locator, full: &mut u64) {
    let start = Instant::now();
    loop {
        match t.send(buf, std::slice::from_ref(to)).unwrap().outcomes()[0] {
            Delivery::Served => return,
            Delivery::Full => {
                *full += 1;
                assert!(start.elapsed() < Duration::from_secs(30), "{to} full for 30 s");
                std::thread::sleep(Duration::from_micros(20));
            }
            d => panic!("send to {to}: {d:?}"),
        }
    }
}

fn mesh_child(config: TransportConfig) {
    let me: u64 = env(ID).parse().unwrap();
    let t = ShmTransport::new(config).unwrap();
    let unicast = t.open_input().unwrap();
    let multicast = t.multicast_input().unwrap();
    say(&format!("SHMSLOT-READY {}", unicast.locator()));
    // "go <id>=<locator> …" names the others once everybody is ready.
    let line = std::io::stdin().lock().lines().next().unwrap().unwrap();
    let peers: Vec<(u64, Locator)> = line
        .trim()
        .strip_prefix("go ")
        .unwrap()
        .split(' ')
        .map(|p| {
            let (id, loc) = p.split_once('=').unwrap();
            (id.parse().unwrap(), parse(loc))
        })
        .collect();
    let others: Vec<u64> = peers.iter().map(|p| p.0).collect();
    let uni = std::thread::spawn(move || drain(unicast, 0, others, UNICAST));
    let multi = std::thread::spawn(move || drain(multicast, 1, (0..PEERS).collect(), MULTICAST));
    let mut buf = [0u8; CAP];
    let mut full = 0;
    let group = t.multicast_locator();
    for seq in 0..UNICAST {
        for (_, to) in &peers {
            let len = fill(&mut buf, tag(me, 0, seq));
            send_until_served(&t, &buf[..len], to, &mut full);
        }
        if seq % (UNICAST / MULTICAST) == 0 {
            let len = fill(&mut buf, tag(me, 1, seq / (UNICAST / MULTICAST)));
            send_until_served(&t, &buf[..len], &group, &mut full);
        }
    }
    let got_uni = uni.join().unwrap();
    let got_multi = multi.join().unwrap();
    let s = t.stats();
    assert_eq!(s.sent, UNICAST * peers.len() as u64 + MULTICAST);
    assert_eq!(s.dropped, full, "every Full outcome is counted as dropped");
    assert_eq!(s.received, got_uni + got_multi);
    say(&format!("SHMSLOT-RESULT unicast={got_uni} multicast={got_multi} full={full}"));
    // Stay until every participant has everything (the parent says so):
    // our ports are others' destinations until then.
    let _ = std::io::stdin().lock().lines().next();
}

#[test]
fn three_participants_exchange_unicast_and_multicast_exactly_once() {
    let dir = TestDir::new("tr-mesh");
    let domain = unique_domain();
    let mut fam = Family::new();
    let ids: Vec<usize> = (0..PEERS)
        .map(|i| {
            let mut cmd = common::child_command(CHILD_TEST);
            cmd.env(ROLE, "mesh").env(DIR, dir.path()).env(DOMAIN, domain.to_string()).env(ID, i.to_string());
            fam.spawn(&format!("participant{i}"), cmd)
        })
        .collect();
    let ports: Vec<Locator> = ids.iter().map(|&id| parse(&fam.wait_ready(id, Duration::from_secs(30)))).collect();
    for (i, &id) in ids.iter().enumerate() {
        let others: Vec<String> = (0..PEERS as usize).filter(|&j| j != i).map(|j| format!("{j}={}", ports[j])).collect();
        fam.send(id, &format!("go {}", others.join(" ")));
    }
    // Each prints its result when it has everything; then all may leave.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut results = Vec::new();
    for &id in &ids {
        results.push(fam.wait_result(id, deadline));
    }
    for &id in &ids {
        fam.send(id, "bye");
    }
    fam.wait_all(deadline, "participants did not exit");
    for r in &results {
        assert_eq!(r["unicast"], (UNICAST * (PEERS - 1)).to_string());
        assert_eq!(r["multicast"], (MULTICAST * PEERS).to_string());
    }
    eprintln!("full (retried) per participant: {:?}", results.iter().map(|r| r["full"].clone()).collect::<Vec<_>>());
}

// ─────────────────────────── killed mid-stream ───────────────────────────

fn sink_child(config: TransportConfig) {
    let t = ShmTransport::new(config).unwrap();
    let mut port = t.open_input().unwrap();
    say(&format!("SHMSLOT-READY {}", port.locator()));
    loop {
        // Reads until killed.
        let _ = port.recv_timeout(Duration::from_millis(100)).unwrap();
    }
}

#[test]
fn a_killed_participant_becomes_unreachable_and_its_port_is_reclaimed() {
    let dir = TestDir::new("tr-kill");
    let domain = unique_domain();
    let mut fam = Family::new();
    let mut cmd = common::child_command(CHILD_TEST);
    cmd.env(ROLE, "sink").env(DIR, dir.path()).env(DOMAIN, domain.to_string());
    let id = fam.spawn("sink", cmd);
    let to = parse(&fam.wait_ready(id, Duration::from_secs(30)));
    let t = ShmTransport::new(TransportConfig::new(domain).slot_count(64).slot_capacity(CAP).discovery_dir(dir.path())).unwrap();
    assert!(t.is_reachable(&to));
    let flink = dir.flink(&format!("dds-d{domain}-p{}", to.port & 0xFFFF));
    let segment = PathBuf::from(format!("/dev/shm{}", shmslot::discovery::read_flink(&flink).unwrap().segment_name));

    // Stream to it, kill it in the middle, keep streaming.
    let mut buf = [0u8; CAP];
    let mut served = 0u64;
    let mut worst = Duration::ZERO;
    let mut killed_at: Option<Instant> = None;
    let mut unreachable_after = None;
    for seq in 0.. {
        let len = fill(&mut buf, seq);
        let t0 = Instant::now();
        let d = t.send(&buf[..len], &[to]).unwrap().outcomes()[0];
        worst = worst.max(t0.elapsed());
        match d {
            Delivery::Served => served += 1,
            Delivery::Full => {}
            Delivery::Unreachable => {
                unreachable_after = Some(killed_at.expect("unreachable before the kill").elapsed());
                break;
            }
            d => panic!("{d:?}"),
        }
        if served == 20_000 && killed_at.is_none() {
            fam.kill_all();
            killed_at = Some(Instant::now());
        }
        if let Some(k) = killed_at {
            assert!(k.elapsed() < Duration::from_secs(1), "still served or full a second after the kill");
        }
        if d == Delivery::Full {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let after = unreachable_after.unwrap();
    assert!(!t.is_reachable(&to), "is_reachable after the kill");
    assert!(worst < Duration::from_millis(500), "a send took {worst:?}");
    // The sender let its attachment go, and was the last one out: the port
    // is gone (flink file and shm object); a new participant takes it anew.
    assert!(!flink.exists(), "the dead participant's flink file is still there");
    assert_unlinked(&segment);
    let fresh = ShmTransport::new(TransportConfig::new(domain).slot_count(64).slot_capacity(CAP).discovery_dir(dir.path())).unwrap();
    let p = fresh.open_input().unwrap();
    assert_eq!(p.locator().port & 0xFFFF, to.port & 0xFFFF, "the port number is reused");
    // …but the dead participant's locator does not reach its new owner.
    assert_ne!(p.locator().port, to.port, "a new incarnation");
    assert!(!fresh.is_reachable(&to), "a stale locator reached the port number's new owner");
    assert!(fresh.is_reachable(&p.locator()));
    eprintln!("served {served} before the kill; unreachable {after:?} after it; slowest send {worst:?}");
}

// ─────────────────────── other users and namespaces ───────────────────────

/// Opens a port, says where it is, then answers `check <locator>` with
/// whether that locator is reachable from here.
fn probe_child(config: TransportConfig) {
    let t = ShmTransport::new(config).unwrap();
    let port = t.open_input().unwrap();
    say(&format!("SHMSLOT-READY {}", port.locator()));
    let line = std::io::stdin().lock().lines().next().expect("a command").unwrap();
    let loc = parse(line.strip_prefix("check ").expect("check <locator>"));
    say(&format!("SHMSLOT-RESULT reachable={}", t.is_reachable(&loc)));
    drop(port);
}

/// Talks to a probe child: checks that neither side
/// reaches the other, and that the child's own segment is invisible here.
fn probe_is_isolated(fam: &mut Family, id: usize, me: &ShmTransport, my_port: &InputPort) {
    let child = parse(&fam.wait_ready(id, Duration::from_secs(30)));
    let child_ns = child.shm_address().unwrap().namespace;
    assert_ne!(child_ns, me.namespace_id(), "the child has the same namespace id");
    assert!(!me.is_reachable(&child), "{child} reachable from here");
    let udp = Locator::udpv4([127, 0, 0, 1].into(), 7411);
    assert_eq!(me.select_locators(&[child, udp]), vec![udp]);
    fam.send(id, &format!("check {}", my_port.locator()));
    let r = fam.wait_result(id, Instant::now() + Duration::from_secs(30));
    assert_eq!(r["reachable"], "false", "the child reaches this process's port");
    fam.wait_all(Instant::now() + Duration::from_secs(30), "probe did not exit");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A private directory owned by `uid`, removed on drop.
struct OwnedDir(PathBuf);
impl Drop for OwnedDir {
    fn drop(&mut self) {
        let left: Vec<_> = std::fs::read_dir(&self.0).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&self.0);
        assert!(left.is_empty() || std::thread::panicking(), "left behind in {}: {left:?}", self.0.display());
    }
}

#[test]
fn another_user_is_not_reachable() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to start a child as another user");
        return;
    }
    const NOBODY: u32 = 65534;
    let domain = unique_domain();
    let dir = TestDir::new("tr-uid");
    let me = ShmTransport::new(TransportConfig::new(domain).discovery_dir(dir.path())).unwrap();
    let mine = me.open_input().unwrap();
    // The child's discovery directory must be its own (0700, its uid).
    let theirs = OwnedDir(std::env::temp_dir().join(format!("shmslot-test-tr-uid-{}-{}", std::process::id(), NOBODY)));
    std::fs::create_dir(&theirs.0).unwrap();
    std::os::unix::fs::chown(&theirs.0, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut cmd = common::child_command(CHILD_TEST);
    cmd.env(ROLE, "probe").env(DIR, &theirs.0).env(DOMAIN, domain.to_string()).uid(NOBODY).gid(NOBODY);
    let mut fam = Family::new();
    let id = fam.spawn("probe-nobody", cmd);
    probe_is_isolated(&mut fam, id, &me, &mine);
}

/// Whether this process may make a new IPC + mount namespace (root, or a
/// container that allows it).
fn can_unshare() -> Result<(), String> {
    let out = std::process::Command::new("unshare").args(["--ipc", "--mount", "true"]).output().map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("unshare --ipc --mount: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[test]
fn another_ipc_namespace_with_its_own_dev_shm_is_not_reachable() {
    if let Err(why) = can_unshare() {
        eprintln!("SKIPPED: cannot create namespaces here ({why})");
        return;
    }
    let domain = unique_domain();
    let dir = TestDir::new("tr-ipcns");
    let me = ShmTransport::new(TransportConfig::new(domain).discovery_dir(dir.path())).unwrap();
    let mine = me.open_input().unwrap();
    // `unshare --ipc --mount` and a fresh tmpfs on /dev/shm, then the child.
    let mut cmd = common::child_command_via(
        &["unshare", "--ipc", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec \"$0\" \"$@\""],
        CHILD_TEST,
    );
    cmd.env(ROLE, "probe").env(DIR, dir.path()).env(DOMAIN, domain.to_string());
    let mut fam = Family::new();
    let id = fam.spawn("probe-ipcns", cmd);
    // The child publishes its flink file in our directory, but its segment
    // lives in its own /dev/shm: even a locator forged with our namespace id
    // does not open from here.
    let child = parse(&fam.wait_ready(id, Duration::from_secs(30)));
    let forged = locator(me.namespace_id(), domain, child.port);
    assert!(dir.flink(&format!("dds-d{domain}-p{}", child.port & 0xFFFF)).exists());
    assert!(!me.is_reachable(&forged), "a segment in another /dev/shm opened");
    probe_is_isolated(&mut fam, id, &me, &mine);
}

#[test]
fn another_boot_is_not_reachable() {
    let domain = unique_domain();
    let dir = TestDir::new("tr-boot");
    let me = ShmTransport::new(TransportConfig::new(domain).discovery_dir(dir.path())).unwrap();
    let port = me.open_input().unwrap();
    let facts = NamespaceFacts::current().unwrap();
    assert_eq!(facts.id(), me.namespace_id());
    let mut other_boot = facts.clone();
    other_boot.boot_id = "00000000-0000-4000-8000-000000000000".into();
    let mut other_user = facts.clone();
    other_user.euid ^= 1;
    for (what, f) in [("boot", other_boot), ("user", other_user)] {
        let loc = locator(f.id(), domain, port.locator().port);
        assert!(!me.is_reachable(&loc), "a locator from another {what} is reachable");
    }
    assert!(me.is_reachable(&port.locator()));
}
