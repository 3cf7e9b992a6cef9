//! Cyclone DDS 11.0.1 applications, unmodified, over the shmslot PSMX
//! plugin: separate processes of the C host program (`c/host.c`), the
//! plugin named only in `CYCLONEDDS_URI`. Each test has its own Cyclone
//! domain and discovery directory, and checks that nothing is left behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmslot::PosixSlotAllocator;

/// The plugin cargo built beside this test (`target/<profile>/`). Test
/// runners build test targets only, not the cdylib: a missing library, or
/// one older than the plugin's sources, is an error, not a silent test of
/// old code.
fn plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join("libpsmx_shmslot.so");
    let build = "build the plugin first: cargo build --release -p psmx_shmslot";
    let built = std::fs::metadata(&p).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{}: {e}: {build}", p.display()));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    for f in std::fs::read_dir(&src).unwrap().flatten() {
        let changed = f.metadata().and_then(|m| m.modified()).unwrap();
        assert!(changed <= built, "{} is older than {}: {build}", p.display(), f.path().display());
    }
    p
}

/// A Cyclone domain id of its own per test (they run in parallel).
fn domain(n: u32) -> u32 {
    (std::process::id() % 20) * 10 + n
}

/// `CYCLONEDDS_URI` for domain `d`, with or without the plugin.
fn uri(d: u32, with_plugin: bool) -> String {
    let psmx = if with_plugin { format!(r#"<Interfaces><PubSubMessageExchange type="shmslot" library="{}"/></Interfaces>"#, plugin().display()) } else { String::new() };
    format!(r#"<CycloneDDS><Domain id="{d}"><General>{psmx}</General></Domain></CycloneDDS>"#)
}

/// A private discovery directory, removed at the end; `assert_empty` checks
/// that every ring is gone.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("psmx-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Self(p)
    }
    fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.0).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }
    /// The ring of `topic` (its flink name contains it), waiting up to 10 s.
    fn ring(&self, topic: &str) -> PosixSlotAllocator {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(name) = self.entries().into_iter().find(|n| n.starts_with("cyclone.") && n.contains(topic)) {
                return PosixSlotAllocator::attach_in(&name, Some(&self.0)).unwrap();
            }
            assert!(Instant::now() < until, "no ring for {topic} in {}: {:?}", self.0.display(), self.entries());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    /// Every ring whose name contains `topic`, as they are now.
    fn rings(&self, topic: &str) -> Vec<PosixSlotAllocator> {
        self.entries().into_iter().filter(|n| n.starts_with("cyclone.") && n.contains(topic)).filter_map(|n| PosixSlotAllocator::attach_in(&n, Some(&self.0)).ok()).collect()
    }
    fn assert_empty(&self) {
        let until = Instant::now() + Duration::from_secs(5);
        while !self.entries().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.entries(), Vec::<String>::new(), "left behind in {}", self.0.display());
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // Whatever a failed test left: its segments too.
        let _ = shmslot::discovery::clean(&self.0, false, true);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A host process; its stdout lines arrive on a channel.
struct Host {
    child: Child,
    lines: mpsc::Receiver<String>,
    name: String,
}

impl Host {
    /// The C host program, run directly or through `via` (a command and
    /// its arguments, e.g. `unshare …`).
    fn start(name: &str, args: &[&str], uri: &str, dir: &Dir, via: &[&str]) -> Self {
        let host = Path::new(env!("CYCLONE_HOST"));
        match via.split_first() {
            None => Self::start_program(name, host, args, uri, dir),
            Some((first, rest)) => {
                let mut all: Vec<&str> = rest.to_vec();
                all.push(host.to_str().unwrap());
                all.extend_from_slice(args);
                Self::start_program(name, Path::new(first), &all, uri, dir)
            }
        }
    }
    fn start_program(name: &str, program: &Path, args: &[&str], uri: &str, dir: &Dir) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("CYCLONEDDS_URI", uri)
            .env("SHMSLOT_DIR", &dir.0)
            .env("LD_LIBRARY_PATH", Path::new(env!("CYCLONE_HOME")).join("lib"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Self { child, lines, name: name.to_owned() }
    }
    /// Waits for a line starting with `prefix`.
    fn expect(&self, prefix: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => panic!("{}: no line starting with {prefix:?} within {within:?}", self.name),
            }
        }
    }
    fn wait_ok(mut self) {
        let st = self.child.wait().unwrap();
        assert!(st.success(), "{} exited with {st}", self.name);
    }
    /// Waits for a line containing `part`.
    fn expect_containing(&self, part: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            match self.lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains(part) => return l,
                Ok(_) => {}
                Err(_) => panic!("{}: no line containing {part:?} within {within:?}", self.name),
            }
        }
    }
    /// Waits for a successful exit; every line it printed.
    fn output(mut self) -> Vec<String> {
        let st = self.child.wait().unwrap();
        assert!(st.success(), "{} exited with {st}", self.name);
        // The reader thread ends at the pipe's end: take every line.
        std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(5)).ok()).collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What each of the ring's readers released, once the total reaches
/// `want` (a reader releases its slot just after Cyclone took the sample,
/// so the application may report it a moment earlier), at most 5 s.
fn released(ring: &PosixSlotAllocator, want: u64) -> Vec<u64> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let got: Vec<u64> = ring.status().readers.iter().map(|p| p.received).collect();
        if got.iter().sum::<u64>() >= want || Instant::now() > until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The numbers of a subscriber's result line.
fn result(line: &str) -> [u64; 4] {
    let v: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(v.len(), 4, "{line}");
    [v[0], v[1], v[2], v[3]]
}

const WAIT: Duration = Duration::from_secs(60);

/// One subscriber and one publisher of `count` samples of `kind` on a
/// domain of their own; returns once the subscriber printed its result (it
/// lingers a moment before it leaves), with that result, the ring (held
/// open by an observer handle) and both processes.
fn pair(tag: &str, n: u32, kind: &str, count: u32) -> (Dir, [u64; 4], PosixSlotAllocator, Host, Host) {
    let dir = Dir::new(tag);
    let u = uri(domain(n), true);
    let count = count.to_string();
    let sub = Host::start("sub", &["sub", kind, &count], &u, &dir, &[]);
    let ring = dir.ring(&format!("shmslot_{kind}"));
    let publisher = Host::start("pub", &["pub", kind, &count, "1"], &u, &dir, &[]);
    let r = result(&sub.expect("received", WAIT));
    (dir, r, ring, sub, publisher)
}

/// The end of a [`pair`]: the subscriber saw no sample twice while it
/// lingered, both exit cleanly, and once the observer's ring handle is
/// gone nothing is left in the directory.
fn end_pair(dir: Dir, ring: PosixSlotAllocator, sub: Host, publisher: Host) {
    assert_eq!(sub.expect("extra", WAIT), "extra 0");
    publisher.wait_ok();
    sub.wait_ok();
    drop(ring);
    dir.assert_empty();
}

#[test]
fn fixed_size_reliable_samples_arrive_in_order_once_through_the_ring() {
    let (dir, r, ring, sub, publisher) = pair("fixed", 0, "fixed", 10_000);
    assert_eq!(r[..3], [10_000, 10_000, 10_000], "received, in order, checksums");
    // The ring carried every sample: its one reader (the subscriber's) took
    // all 10,000 (looked at while it lingers). Sequences skipped over slots
    // kept for loans come on top.
    assert!(ring.status().write_seq >= 10_000);
    assert_eq!(released(&ring, 10_000), [10_000]);
    // Zero copy on the reading side: the loans the subscriber took point
    // into a shmslot mapping exactly as often as its ring reader kept a
    // sample in place for a loan; the plugin copied the others (counted in
    // its log) because the reader kept its limit already (16 of 64 slots)
    // and the application gave none back in time.
    let kept = ring.status().readers[0].kept_total;
    eprintln!("loans in shared memory: {} of 10,000 (ring reader kept {kept})", r[3]);
    assert_eq!(r[3], kept, "loans pointing into a shmslot mapping");
    assert!(kept >= 1000, "only {kept} of 10,000 samples stored in place");
    end_pair(dir, ring, sub, publisher);
}

/// A subscriber whose application takes nothing while the publisher runs:
/// its reader cache keeps every sample (KEEP_ALL), so the loans of the
/// first 16 stay in their slots, and the plugin copies the rest. The
/// publisher is never held up by the kept slots (the ring's writers skip
/// them); a reliable write that found no slot for 10 s would fail it.
#[test]
fn a_reader_cache_that_keeps_loans_never_holds_up_the_publisher() {
    let dir = Dir::new("hold");
    let u = uri(domain(7), true);
    let sub = Host::start("sub-hold", &["sub", "fixed", "5000", "hold"], &u, &dir, &[]);
    let ring = dir.ring("shmslot_fixed");
    let publisher = Host::start("pub", &["pub", "fixed", "5000", "1"], &u, &dir, &[]);
    let t = Instant::now();
    publisher.wait_ok();
    eprintln!("publisher done in {:?}", t.elapsed());
    let reader = ring.status().readers[0];
    assert_eq!((reader.kept, reader.kept_total), (16, 16), "a reader keeps at most a quarter of a 64-slot ring, then copies");
    sub.expect("publisher gone", WAIT);
    let r = result(&sub.expect("received", WAIT));
    assert_eq!(r[..3], [5000, 5000, 5000], "received, in order, checksums");
    // The 16 kept while holding, and those still in the ring when the
    // publisher left (the plugin reads them in place once the application
    // gives loans back).
    let kept_total = ring.status().readers[0].kept_total;
    assert_eq!(r[3], kept_total, "loans in shared memory: those kept in place");
    assert!(kept_total >= 16);
    // Taken and given back: the slots are the ring's again.
    let until = Instant::now() + Duration::from_secs(5);
    while ring.status().readers[0].kept != 0 {
        assert!(Instant::now() < until, "kept slots not given back");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sub.expect("extra", WAIT), "extra 0");
    sub.wait_ok();
    drop(ring);
    dir.assert_empty();
}

/// Cyclone's own `ddsperf`, unmodified, as a user runs it: ping/pong in its
/// default listener mode (samples are handled on the thread that delivers
/// them: the plugin's receive thread), with its default endpoints, which
/// ignore their own participant's samples (ignore_local PARTICIPANT; the
/// iceoryx2 plugin refuses those). Every round trip goes through the two
/// rings, read in place (UK1k is memcpy safe).
#[test]
fn ddsperf_in_listener_mode_with_ignore_local_endpoints_runs_over_the_rings() {
    let dir = Dir::new("ddsperf");
    let d = domain(8).to_string();
    let u = uri(domain(8), true);
    let ddsperf = Path::new(env!("CYCLONE_HOME")).join("bin/ddsperf");
    let pong = Host::start_program("ddsperf-pong", &ddsperf, &["-i", &d, "-T", "UK1k", "-D", "4", "pong"], &u, &dir);
    let pings = dir.ring("PingUK1k");
    let ping = Host::start_program("ddsperf-ping", &ddsperf, &["-i", &d, "-T", "UK1k", "-D", "2", "ping"], &u, &dir);
    // "... size 1024 mean 2.1us min ... cnt 812345": round trips in a second.
    let count = |l: &str| l.rsplit("cnt ").next().and_then(|c| c.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0);
    let first = ping.expect_containing("size 1024 mean", WAIT);
    // Mid-run: pongs go back on a ring per pinging participant (ddsperf puts
    // each participant's pongs in a partition of its own), and every ring
    // reader keeps the samples in place for Cyclone's loans.
    let pongs = dir.rings("PongUK1k");
    assert!(!pongs.is_empty());
    for (name, rings) in [("ping", std::slice::from_ref(&pings)), ("pong", &pongs[..])] {
        let kept: u64 = rings.iter().flat_map(|r| r.status().readers).map(|r| r.kept_total).sum();
        assert!(kept > 0, "{name} rings: nothing read in place");
    }
    let lines = ping.output();
    let round_trips: u64 = count(&first) + lines.iter().filter(|l| l.contains("size 1024 mean")).map(|l| count(l)).sum::<u64>();
    assert!(round_trips >= 1000, "{round_trips} round trips: {lines:#?}");
    // Every ping and every pong went through a ring.
    let pinged = pings.status().write_seq;
    let ponged: u64 = pongs.iter().map(|r| r.status().write_seq).sum();
    assert!(pinged >= round_trips && ponged >= round_trips, "{pinged} pings and {ponged} pongs through the rings, {round_trips} round trips");
    pong.wait_ok();
    drop((pings, pongs));
    dir.assert_empty();
}

#[test]
fn variable_size_keyed_samples_grow_the_ring() {
    let (dir, r, ring, sub, publisher) = pair("var", 1, "var", 1000);
    assert_eq!(r[..3], [1000, 1000, 1000], "received, each once in order per key, checksums and sizes");
    // 256 KiB samples do not fit the first 4 KiB slots: the flink file now
    // names a generation with slots of at least 256 KiB (looked at while
    // the subscriber lingers, before the last participant removes it).
    let name = dir.entries().into_iter().find(|n| n.contains("shmslot_var")).unwrap();
    let info = shmslot::discovery::read_flink(&dir.0.join(name)).unwrap();
    assert!(info.capacity >= 256 * 1024, "slots of {} bytes: the ring never grew", info.capacity);
    end_pair(dir, ring, sub, publisher);
}

#[test]
fn a_participant_without_the_plugin_gets_every_sample_over_udp_once() {
    let dir = Dir::new("mixed");
    let d = domain(2);
    let shm = Host::start("sub-shm", &["sub", "fixed", "2000"], &uri(d, true), &dir, &[]);
    let udp = Host::start("sub-udp", &["sub", "fixed", "2000"], &uri(d, false), &dir, &[]);
    let ring = dir.ring("shmslot_fixed");
    let publisher = Host::start("pub", &["pub", "fixed", "2000", "2"], &uri(d, true), &dir, &[]);
    let r = result(&shm.expect("received", WAIT));
    assert_eq!(r[..3], [2000, 2000, 2000], "{}", shm.name);
    // Only the plugin's subscriber reads the ring (looked at while it
    // lingers, before it leaves).
    assert!(ring.status().write_seq >= 2000);
    assert_eq!(released(&ring, 2000), [2000]);
    let r = result(&udp.expect("received", WAIT));
    assert_eq!(r[..3], [2000, 2000, 2000], "{}", udp.name);
    for s in [&shm, &udp] {
        assert_eq!(s.expect("extra", WAIT), "extra 0", "{}", s.name);
    }
    publisher.wait_ok();
    shm.wait_ok();
    udp.wait_ok();
    drop(ring);
    dir.assert_empty();
}

#[test]
fn another_ipc_namespace_with_its_own_dev_shm_gets_the_data_over_udp() {
    let probe = Command::new("unshare").args(["--ipc", "--mount", "true"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: cannot create namespaces here ({probe:?})");
        return;
    }
    let dir = Dir::new("ipcns");
    let u = uri(domain(3), true);
    let via = ["unshare", "--ipc", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec \"$0\" \"$@\""];
    let other = Host::start("sub-other-ns", &["sub", "fixed", "1000"], &u, &dir, &via);
    let publisher = Host::start("pub", &["pub", "fixed", "1000", "1"], &u, &dir, &[]);
    // Both made a ring of the topic, each named for its own namespace; only
    // the publisher's can be opened from here.
    let until = Instant::now() + WAIT;
    let ring = loop {
        let mine = dir.entries().into_iter().filter(|n| n.contains("shmslot_fixed")).find_map(|n| PosixSlotAllocator::attach_in(&n, Some(&dir.0)).ok());
        if let Some(r) = mine {
            break r;
        }
        assert!(Instant::now() < until, "the publisher's ring never appeared: {:?}", dir.entries());
        std::thread::sleep(Duration::from_millis(20));
    };
    let r = result(&other.expect("received", WAIT));
    assert_eq!(r[..3], [1000, 1000, 1000]);
    assert_eq!(other.expect("extra", WAIT), "extra 0");
    publisher.wait_ok();
    // The publisher wrote its ring, and nobody read it: the other
    // namespace's subscriber got everything over UDP.
    let st = ring.status();
    assert_eq!(st.write_seq, 1000);
    assert!(st.readers.is_empty(), "{:?}", st.readers);
    other.wait_ok();
    drop(ring);
    dir.assert_empty();
}

#[test]
fn killed_subscribers_and_publishers_stop_nobody_and_leave_nothing_behind() {
    let dir = Dir::new("kill");
    let u = uri(domain(4), true);
    let mut first = Host::start("sub-1", &["sub", "fixed", "1000000"], &u, &dir, &[]);
    let ring = dir.ring("shmslot_fixed");
    // A publisher of 50,000 samples; the first subscriber dies early.
    let publisher = Host::start("pub", &["pub", "fixed", "50000", "1"], &u, &dir, &[]);
    publisher.expect("ready", WAIT);
    let until = Instant::now() + WAIT;
    while ring.status().write_seq < 1000 {
        assert!(Instant::now() < until, "publisher never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    publisher.wait_ok();
    assert!(ring.status().write_seq >= 50_000, "the publisher finished over the ring");
    // A new subscriber matches a new publisher on the same ring.
    let second = Host::start("sub-2", &["sub", "fixed", "500"], &u, &dir, &[]);
    let again = Host::start("pub-2", &["pub", "fixed", "500", "1"], &u, &dir, &[]);
    let r = result(&second.expect("received", WAIT));
    assert_eq!(r[..3], [500, 500, 500]);
    again.wait_ok();
    second.wait_ok();
    drop(ring);
    dir.assert_empty();

    // A publisher SIGKILLed mid-stream, and its subscriber too: nobody
    // alive holds the ring any more. The next participants on the topic
    // reclaim it and go on; nothing is left afterwards.
    let mut sub = Host::start("sub-3", &["sub", "fixed", "1000000"], &u, &dir, &[]);
    let ring = dir.ring("shmslot_fixed");
    let mut doomed = Host::start("pub-3", &["pub", "fixed", "1000000", "1"], &u, &dir, &[]);
    while ring.status().write_seq < 1000 {
        assert!(Instant::now() < until, "publisher never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(ring);
    for h in [&mut doomed, &mut sub] {
        h.child.kill().unwrap();
        h.child.wait().unwrap();
    }
    assert!(dir.entries().iter().any(|n| n.contains("shmslot_fixed")), "the killed processes' ring is stale, not gone: {:?}", dir.entries());
    let fourth = Host::start("sub-4", &["sub", "fixed", "500"], &u, &dir, &[]);
    let last = Host::start("pub-4", &["pub", "fixed", "500", "1"], &u, &dir, &[]);
    let r = result(&fourth.expect("received", WAIT));
    assert_eq!(r[..3], [500, 500, 500], "over the reclaimed ring");
    last.wait_ok();
    fourth.wait_ok();
    dir.assert_empty();
}

#[test]
fn a_bad_plugin_config_is_a_clear_error_not_a_crash() {
    let dir = Dir::new("badcfg");
    let u = format!(
        r#"<CycloneDDS><Domain id="{}"><General><Interfaces><PubSubMessageExchange type="shmslot" library="{}" config="SLOTS=100;"/></Interfaces></General></Domain></CycloneDDS>"#,
        domain(5),
        plugin().display()
    );
    let out = Command::new(env!("CYCLONE_HOST")).args(["sub", "fixed", "1"]).env("CYCLONEDDS_URI", u).env("SHMSLOT_DIR", &dir.0).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "the participant cannot be made: {err}");
    assert!(err.contains("SLOTS=\"100\" is invalid (a power of two from 2 to 65536)"), "{err}");
    dir.assert_empty();
}

/// The venv `scripts/test.sh` makes with the PyPI `cyclonedds==11.0.1`
/// (`target/cyclone-py`).
fn python() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).and_then(Path::parent).unwrap();
    let py = target.join("cyclone-py/bin/python");
    assert!(
        py.is_file(),
        "{} missing: python3 -m venv {venv} && {venv}/bin/pip install cyclonedds==11.0.1 (scripts/test.sh does this)",
        py.display(),
        venv = target.join("cyclone-py").display()
    );
    py
}

#[test]
fn a_python_subscriber_with_the_same_config_loads_the_plugin_and_gets_everything_over_udp() {
    // One CYCLONEDDS_URI naming the plugin for every process. The Python
    // binding loads libddsc RTLD_LOCAL (the plugin finds it among the loaded
    // objects) and its types cannot use PSMX endpoints: it must start and
    // get every sample over UDP, while the C subscriber reads the ring.
    let dir = Dir::new("python");
    let u = uri(domain(6), true);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/sub.py");
    let py = Host::start_program("sub-python", &python(), &[script.to_str().unwrap(), "2000"], &u, &dir);
    let shm = Host::start("sub-shm", &["sub", "fixed", "2000"], &u, &dir, &[]);
    let ring = dir.ring("shmslot_fixed");
    let publisher = Host::start("pub", &["pub", "fixed", "2000", "2"], &u, &dir, &[]);
    let r = result(&shm.expect("received", WAIT));
    assert_eq!(r[..3], [2000, 2000, 2000], "{}", shm.name);
    assert!(ring.status().write_seq >= 2000);
    assert_eq!(released(&ring, 2000), [2000], "only the C subscriber reads the ring");
    let r = result(&py.expect("received", WAIT));
    assert_eq!(r[..3], [2000, 2000, 2000], "{}", py.name);
    for s in [&shm, &py] {
        assert_eq!(s.expect("extra", WAIT), "extra 0", "{}", s.name);
    }
    publisher.wait_ok();
    shm.wait_ok();
    py.wait_ok();
    drop(ring);
    dir.assert_empty();
}
