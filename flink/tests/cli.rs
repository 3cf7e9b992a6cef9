//! `flink list`, `inspect` and `clean` end to end, through the built binary.
//!
//! Every test works in its own private (0700) discovery directory passed
//! with `--dir`, and removes everything it created — flink files and
//! shared-memory objects — even when it fails, so tests run in parallel.
//!
//! A stale segment needs a creator that died without cleaning up: the test
//! re-executes this very test binary (`current_exe() --exact
//! child_process_entry --nocapture`) with `FLINK_CLI_CHILD_ROLE` set; the
//! child creates a ring, prints `FLINK-CHILD-READY <segment path>` and
//! sleeps until the parent kills it with SIGKILL (it also dies with its
//! parent: `PR_SET_PDEATHSIG`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use shmslot::{Delivery, Loan, PosixSlotAllocator, Reader, ShmTransport, SlotBackend, TransportConfig};

const CHILD_TEST: &str = "child_process_entry";
const ROLE: &str = "FLINK_CLI_CHILD_ROLE";
const CHILD_DIR: &str = "FLINK_CLI_CHILD_DIR";
const CHILD_NAME: &str = "FLINK_CLI_CHILD_NAME";
const READY: &str = "FLINK-CHILD-READY ";

// ───────────────────────────── support ─────────────────────────────

/// A unique 0700 discovery directory. On drop: removes the segments of every
/// flink file still in it (their shm objects), then the directory.
struct TestDir {
    path: PathBuf,
}

impl TestDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let path = std::env::temp_dir().join(format!("flink-cli-{tag}-{}-{}-{nanos:08x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&path).expect("create test dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod test dir");
        Self { path }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn flink_args(&self) -> [&str; 2] {
        ["--dir", self.path.to_str().expect("utf-8 temp dir")]
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Whatever a failed test left: unlink the objects its flink files
        // name (any ring handle is dropped before this guard).
        if let Ok(rd) = std::fs::read_dir(&self.path) {
            for e in rd.filter_map(Result::ok) {
                if let Ok(info) = shmslot::discovery::read_flink(&e.path()) {
                    let _ = std::fs::remove_file(format!("/dev/shm{}", info.segment_name));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process, killed (SIGKILL) and reaped on drop.
struct ChildGuard(Child);

impl ChildGuard {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `flink ARGS… --dir DIR`.
fn flink(dir: &TestDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flink")).args(args).args(dir.flink_args()).output().expect("run flink")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs flink, expects success, returns stdout.
fn flink_ok(dir: &TestDir, args: &[&str]) -> String {
    let o = flink(dir, args);
    assert!(o.status.success(), "flink {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}", o.status, stdout(&o), stderr(&o));
    stdout(&o)
}

/// Parses JSON lines.
fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// `flink list --json`, as objects by name.
fn list_json(dir: &TestDir) -> Vec<Value> {
    let v = json_lines(&flink_ok(dir, &["list", "--json"]));
    for o in &v {
        assert!(o.is_object(), "{o}");
    }
    v
}

fn entry<'a>(entries: &'a [Value], name: &str) -> &'a Value {
    entries.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no entry {name} in {entries:?}"))
}

/// Publishes `n` samples of 8 bytes.
fn publish(ring: &PosixSlotAllocator, n: u64) {
    for i in 0..n {
        let mut loan = Loan::new(ring).expect("loan");
        loan.as_mut_slice()[..8].copy_from_slice(&i.to_le_bytes());
        loan.commit(8).expect("commit");
    }
}

/// Starts a child that creates ring `name` in `dir` and sleeps; returns it
/// and the segment path once it is ready.
fn spawn_creator(dir: &TestDir, name: &str) -> (ChildGuard, PathBuf) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(ROLE, "creator")
        .env(CHILD_DIR, dir.path())
        .env(CHILD_NAME, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: runs in the forked child before exec; prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = ChildGuard(cmd.spawn().expect("spawn child"));
    let out = child.0.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(seg) = line.split(READY).nth(1) {
                let _ = tx.send(PathBuf::from(seg.trim()));
                break;
            }
        }
    });
    let seg = rx.recv_timeout(Duration::from_secs(60)).expect("child never became ready");
    (child, seg)
}

/// The child's side (a no-op unless started by `spawn_creator`).
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    assert_eq!(role, "creator");
    let dir = std::env::var(CHILD_DIR).expect("dir");
    let name = std::env::var(CHILD_NAME).expect("name");
    let ring = PosixSlotAllocator::builder(8, 64).discovery_dir(&dir).create(&name).expect("child: create ring");
    publish(&ring, 3);
    println!("{READY}{}", ring.segment_path().display());
    std::io::stdout().flush().unwrap();
    // Wait to be killed; never outlive a forgotten parent for long.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::mem::forget(ring); // timed out: leave it stale rather than clean
}

// ───────────────────────────── tests ─────────────────────────────

#[test]
fn list_empty_and_missing_directories() {
    let dir = TestDir::new("empty");
    let table = flink_ok(&dir, &["list"]);
    assert!(table.contains("no segments"), "{table}");
    assert!(table.contains(dir.path().to_str().unwrap()), "{table}");
    assert_eq!(flink_ok(&dir, &["list", "--json"]), "", "an empty directory prints no JSON lines");
    let clean = flink_ok(&dir, &["clean"]);
    assert!(clean.contains("0 removed"), "{clean}");

    let missing = dir.join("does-not-exist");
    let m = missing.to_str().unwrap();
    for cmd in [&["list"][..], &["list", "--json"], &["clean"], &["clean", "--dry-run"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_flink")).args(cmd).args(["--dir", m]).output().expect("run flink");
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("discovery directory {m} does not exist")), "{cmd:?}: {err}");
        assert_eq!(stdout(&o), "", "{cmd:?}");
    }
    // A bare name in a missing directory says which directory.
    let o = Command::new(env!("CARGO_BIN_EXE_flink")).args(["inspect", "ring", "--dir", m]).output().expect("run flink");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("discovery directory {m} does not exist")), "{}", stderr(&o));
}

#[test]
fn unsafe_directory_is_refused() {
    let dir = TestDir::new("unsafe");
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flink")).args(["list", "--dir", open.to_str().unwrap()]).output().expect("run flink");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(open.to_str().unwrap()) && err.contains("writable by group or others"), "{err}");
    // A file where a directory should be.
    let file = dir.join("file");
    std::fs::write(&file, b"x").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flink")).args(["clean", "--dir", file.to_str().unwrap()]).output().expect("run flink");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
}

#[test]
fn live_segment_is_listed_and_inspected() {
    let dir = TestDir::new("live");
    let ring = PosixSlotAllocator::builder(16, 256).max_readers(8).max_writers(4).discovery_dir(dir.path()).create("telemetry").expect("create ring");
    let seg = ring.segment_path();
    let mut reader = Reader::new(&ring).expect("register reader");
    publish(&ring, 5);
    for _ in 0..2 {
        drop(reader.try_recv().expect("recv").expect("a sample"));
    }
    let pid = std::process::id();

    let entries = list_json(&dir);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = entry(&entries, "telemetry");
    assert_eq!(e["state"], "live", "{e}");
    assert_eq!(e["error"], Value::Null, "{e}");
    assert_eq!(e["flink_path"], dir.join("telemetry").to_str().unwrap());
    assert_eq!(e["segment_path"], seg.to_str().unwrap());
    assert_eq!(e["creator_pid"], pid);
    assert_eq!(e["creator_alive"], true);
    assert_eq!(e["readers_alive"], 1);
    assert_eq!(e["readers_dead"], 0);
    assert_eq!(e["writers_alive"], 1);
    assert_eq!(e["write_seq"], 5);
    assert_eq!((e["sent"].clone(), e["received"].clone(), e["dropped"].clone(), e["lost"].clone()), (5.into(), 2.into(), 0.into(), 0.into()), "{e}");
    assert_eq!(e["policy"], "KeepAll");
    assert_eq!(e["geometry"]["slot_count"], 16);
    assert_eq!(e["geometry"]["capacity"], 256);
    assert_eq!(e["geometry"]["stride"], 320);
    assert_eq!(e["geometry"]["max_readers"], 8);
    assert_eq!(e["geometry"]["max_writers"], 4);
    assert!(e["age_ms"].as_u64().is_some_and(|a| a < 600_000), "{e}");
    let r = &e["readers"][0];
    assert_eq!((r["index"].clone(), r["pid"].clone(), r["alive"].clone()), (0.into(), pid.into(), true.into()), "{r}");
    assert_eq!((r["position"].clone(), r["received"].clone(), r["lost"].clone()), (2.into(), 2.into(), 0.into()), "{r}");
    assert_eq!(e["writers"][0]["position"], 5, "{e}");
    assert_eq!(e["writers"][0]["dropped"], 0, "{e}");

    let table = flink_ok(&dir, &["list"]);
    let header = table.lines().next().unwrap_or_default();
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert!(cols.windows(5).any(|w| w == ["WRITE_SEQ", "SENT", "RECEIVED", "DROPPED", "LOST"]), "{header}");
    let row = table.lines().find(|l| l.starts_with("telemetry")).unwrap_or_else(|| panic!("{table}"));
    for needle in ["live", "16 × 256 B", "320", "8/4", "KeepAll", &format!("{pid} alive"), "1 alive"] {
        assert!(row.contains(needle), "{needle:?} not in {row:?}\n{table}");
    }
    // WRITE_SEQ 5, SENT 5, RECEIVED 2, DROPPED 0, LOST 0, then the age.
    assert!(row.split_whitespace().collect::<Vec<_>>().windows(5).any(|w| w == ["5", "5", "2", "0", "0"]), "{row}");

    // inspect: by bare name (with --dir) and by path.
    for target in ["telemetry".to_string(), dir.join("telemetry").to_str().unwrap().to_string()] {
        let v = json_lines(&flink_ok(&dir, &["inspect", &target, "--json"]));
        assert_eq!(v.len(), 1);
        let v = &v[0];
        assert_eq!(v["state"], "live", "{v}");
        assert_eq!(v["validation"]["ok"], true, "{v}");
        assert_eq!(v["creator_alive"], true);
        assert_eq!(v["write_seq"], 5);
        assert_eq!(v["segment_path"], seg.to_str().unwrap());
        assert_eq!(v["flink"]["segment_name"], seg.to_str().unwrap().trim_start_matches("/dev/shm"));
        assert_eq!(v["flink"]["creator_pid"], pid);
        let i = &v["info"];
        assert_eq!((i["slot_count"].clone(), i["capacity"].clone(), i["stride"].clone()), (16.into(), 256.into(), 320.into()), "{i}");
        assert_eq!((i["max_readers"].clone(), i["max_writers"].clone()), (8.into(), 4.into()), "{i}");
        assert_eq!(i["policy"], "KeepAll");
        assert_eq!(i["type_hash"], "0".repeat(32));
        assert_eq!(v["readers"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["readers"][0]["registered"], true);
        assert_eq!(v["readers"][0]["position"], 2);
        assert_eq!(v["writers"][0]["position"], 5);
        assert_eq!(v["writers"][0]["dropped"], 0);
        assert_eq!((v["sent"].clone(), v["received"].clone(), v["dropped"].clone()), (5.into(), 2.into(), 0.into()), "{v}");
        assert!(v["data_epoch"].is_u64() && v["data_waiters"].is_u64() && v["space_waiters"].is_u64(), "{v}");
    }
    let text = flink_ok(&dir, &["inspect", "telemetry"]);
    for needle in ["state        live", "stride 320 B", "(untyped)", "write_seq    5", "5 sent, 2 received, 0 dropped", "NEXT SEQ", "COMMITS", "DROPPED", "validation     ok"] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    // Clean keeps it.
    let out = flink_ok(&dir, &["clean"]);
    assert!(out.contains("live") && out.contains("0 removed, 1 live"), "{out}");
    assert!(dir.join("telemetry").exists() && seg.exists());

    drop(reader);
    drop(ring);
    assert!(!seg.exists(), "the ring removes its object on drop");
}

#[test]
fn transport_port_counters_are_listed_and_inspected() {
    let dir = TestDir::new("transport");
    let config = |domain| TransportConfig::new(domain).slot_count(4).slot_capacity(64).discovery_dir(dir.path());
    let receiver = ShmTransport::new(config(3)).expect("receiver transport");
    let sender = ShmTransport::new(config(3)).expect("sender transport");
    let mut port = receiver.open_input().expect("open input port");
    let name = format!("dds-d3-p{}", port.locator().port & shmslot::transport::PORT_NUMBER_MASK);
    // A 4-slot port takes 4 messages; the next 2 are dropped (never blocks).
    let outcomes: Vec<Delivery> = (0..6u8).map(|i| sender.send(&[i; 8], &[port.locator()]).expect("send").outcomes()[0]).collect();
    assert_eq!(outcomes, [[Delivery::Served; 4].as_slice(), &[Delivery::Full; 2]].concat());
    for _ in 0..3 {
        drop(port.try_recv().expect("recv").expect("a message"));
    }

    let entries = list_json(&dir);
    let e = entry(&entries, &name);
    assert_eq!(e["state"], "live", "{e}");
    assert_eq!((e["sent"].clone(), e["received"].clone(), e["dropped"].clone(), e["lost"].clone()), (4.into(), 3.into(), 2.into(), 0.into()), "{e}");
    let table = flink_ok(&dir, &["list"]);
    let row = table.lines().find(|l| l.starts_with(&name)).unwrap_or_else(|| panic!("{table}"));
    // WRITE_SEQ 4, SENT 4, RECEIVED 3, DROPPED 2, LOST 0.
    assert!(row.split_whitespace().collect::<Vec<_>>().windows(5).any(|w| w == ["4", "4", "3", "2", "0"]), "{row}");

    let v = &json_lines(&flink_ok(&dir, &["inspect", &name, "--json"]))[0];
    assert_eq!(v["writers"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!((v["writers"][0]["position"].clone(), v["writers"][0]["dropped"].clone()), (4.into(), 2.into()), "{v}");
    assert_eq!((v["readers"][0]["received"].clone(), v["dropped"].clone()), (3.into(), 2.into()), "{v}");
    let text = flink_ok(&dir, &["inspect", &name]);
    assert!(text.contains("4 sent, 3 received, 2 dropped"), "{text}");

    let flink_path = port.flink_path().to_owned();
    drop((port, sender, receiver));
    assert!(!flink_path.exists(), "the port's flink file was left behind");
}

#[test]
fn stale_segment_is_listed_and_cleaned() {
    let dir = TestDir::new("stale");
    let (mut child, stale_seg) = spawn_creator(&dir, "stale-ring");
    let live = PosixSlotAllocator::builder(4, 64).discovery_dir(dir.path()).create("live-ring").expect("create live ring");
    let live_seg = live.segment_path();

    // Alive first.
    let e = list_json(&dir);
    assert_eq!(entry(&e, "stale-ring")["state"], "live", "{e:?}");
    let child_pid = child.0.id();
    assert_eq!(entry(&e, "stale-ring")["creator_pid"], child_pid);

    child.kill(); // SIGKILL: no cleanup
    assert!(stale_seg.exists() && dir.join("stale-ring").exists());

    let e = list_json(&dir);
    assert_eq!(e.len(), 2, "{e:?}");
    let s = entry(&e, "stale-ring");
    assert_eq!(s["state"], "stale", "{s}");
    assert_eq!(s["creator_alive"], false, "{s}");
    assert_eq!(s["write_seq"], 3, "{s}");
    assert_eq!(entry(&e, "live-ring")["state"], "live");
    let table = flink_ok(&dir, &["list"]);
    let row = table.lines().find(|l| l.starts_with("stale-ring")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("stale") && row.contains(&format!("{child_pid} dead")), "{row}");

    // Dry run: reports, removes nothing.
    let dry = flink_ok(&dir, &["clean", "--dry-run"]);
    let line = dry.lines().find(|l| l.contains("stale-ring")).unwrap_or_else(|| panic!("{dry}"));
    assert!(line.starts_with("would remove"), "{dry}");
    assert!(line.contains(stale_seg.to_str().unwrap()), "{dry}");
    assert!(dry.lines().any(|l| l.starts_with("live") && l.contains("live-ring")), "{dry}");
    assert!(dry.contains("1 would be removed, 1 live") && dry.contains("dry run: nothing was removed"), "{dry}");
    assert!(stale_seg.exists() && dir.join("stale-ring").exists(), "dry run removed something");
    let dry_json = json_lines(&flink_ok(&dir, &["clean", "--dry-run", "--json"]));
    assert!(dry_json.iter().any(|l| l["name"] == "stale-ring" && l["outcome"] == "would_remove"), "{dry_json:?}");
    assert_eq!(dry_json.last().unwrap()["summary"]["removed"], 1, "{dry_json:?}");
    assert!(stale_seg.exists() && dir.join("stale-ring").exists(), "dry run removed something");

    // Clean: removes the stale one, keeps the live one.
    let out = json_lines(&flink_ok(&dir, &["clean", "--json"]));
    let s = out.iter().find(|l| l["name"] == "stale-ring").unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(s["outcome"], "removed", "{s}");
    assert_eq!(s["segment_path"], stale_seg.to_str().unwrap());
    assert_eq!(s["object_existed"], true);
    assert_eq!(out.iter().find(|l| l["name"] == "live-ring").unwrap()["outcome"], "live");
    let sum = &out.last().unwrap()["summary"];
    assert_eq!((sum["removed"].clone(), sum["live"].clone(), sum["errors"].clone()), (1.into(), 1.into(), 0.into()), "{sum}");
    assert!(!stale_seg.exists(), "stale object left in /dev/shm");
    assert!(!dir.join("stale-ring").exists(), "stale flink file left");
    assert!(live_seg.exists() && dir.join("live-ring").exists(), "clean removed a live segment");

    // Nothing left to do.
    let again = flink_ok(&dir, &["clean"]);
    assert!(!again.contains("stale-ring"), "{again}");
    assert!(again.contains("0 removed, 1 live (kept), 0 leaked"), "{again}");
    drop(live);
    assert!(!live_seg.exists());
}

#[test]
fn leaked_segment_is_listed_and_cleaned_only_with_leaked() {
    let dir = TestDir::new("leaked");
    let mut ring = PosixSlotAllocator::builder(4, 64).discovery_dir(dir.path()).create("kept").expect("create ring");
    publish(&ring, 2);
    let seg = ring.segment_path();
    ring.leak().expect("leak");
    // While its creator's handle lives it is live, and marked leaked.
    let e = list_json(&dir);
    assert_eq!((entry(&e, "kept")["state"].clone(), entry(&e, "kept")["leaked"].clone()), ("live".into(), true.into()), "{e:?}");
    let table = flink_ok(&dir, &["list"]);
    assert!(table.lines().any(|l| l.starts_with("kept") && l.contains("live, leaked")), "{table}");
    drop(ring);
    assert!(seg.exists(), "a leaked ring must outlive its handles");

    let e = list_json(&dir);
    let k = entry(&e, "kept");
    assert_eq!((k["state"].clone(), k["leaked"].clone(), k["write_seq"].clone()), ("leaked".into(), true.into(), 2.into()), "{k}");
    let table = flink_ok(&dir, &["list"]);
    assert!(table.lines().any(|l| l.starts_with("kept") && l.contains("leaked")), "{table}");

    // Plain clean keeps it and says why; --leaked (dry run first) removes it.
    let out = flink_ok(&dir, &["clean"]);
    assert!(out.lines().any(|l| l.starts_with("leaked") && l.contains("kept") && l.contains("--leaked")), "{out}");
    assert!(out.contains("0 removed, 0 live (kept), 1 leaked (kept)"), "{out}");
    assert!(seg.exists());
    let dry = json_lines(&flink_ok(&dir, &["clean", "--leaked", "--dry-run", "--json"]));
    assert_eq!(dry[0]["outcome"], "would_remove", "{dry:?}");
    assert!(seg.exists());
    let wet = json_lines(&flink_ok(&dir, &["clean", "--leaked", "--json"]));
    assert_eq!(wet[0]["outcome"], "removed", "{wet:?}");
    assert!(!seg.exists() && !dir.join("kept").exists(), "clean --leaked left something");
}

#[test]
fn generations_and_blackboards_are_listed() {
    let dir = TestDir::new("gens");
    let ring = PosixSlotAllocator::builder(4, 32).growth(shmslot::GrowthStrategy::PowerOfTwo).discovery_dir(dir.path()).create("growing").expect("create ring");
    // A reader that has not read yet keeps generation 0 alive.
    let reader = PosixSlotAllocator::attach_in("growing", Some(dir.path())).expect("attach");
    let r = reader.register_reader().expect("register");
    let mut loan = shmslot::Loan::sized(&ring, 100).expect("grow");
    loan.as_mut_slice()[0] = 1;
    loan.commit(100).expect("commit");
    let e = list_json(&dir);
    let g = entry(&e, "growing");
    assert_eq!((g["kind"].clone(), g["generation"].clone(), g["growth"].clone()), ("ring".into(), 1.into(), "power-of-two".into()), "{g}");
    assert_eq!(g["older_generations"].as_array().map(Vec::len), Some(1), "{g}");
    assert_eq!(g["geometry"]["capacity"], 128, "{g}");
    let table = flink_ok(&dir, &["list"]);
    assert!(table.lines().any(|l| l.starts_with("growing") && l.contains("1 (+1 old)")), "{table}");
    // The reader moves on: generation 0 goes.
    assert!(reader.next_unread_slot(r).expect("read").is_some());
    let g = list_json(&dir);
    assert_eq!(entry(&g, "growing")["older_generations"].as_array().map(Vec::len), Some(0), "{g:?}");

    #[derive(Clone, Copy, PartialEq, Eq)]
    #[repr(C)]
    struct Key(u32);
    // SAFETY: a plain u32, no padding.
    unsafe impl shmslot::Pod for Key {
        const TYPE_HASH: [u8; 16] = shmslot::type_hash("cli::Key", 4, 4);
    }
    let board = shmslot::BlackboardBuilder::<Key>::new().entry(Key(1), Key(7)).expect("entry").discovery_dir(dir.path()).create("board").expect("create board");
    let e = list_json(&dir);
    let b = entry(&e, "board");
    assert_eq!((b["kind"].clone(), b["state"].clone(), b["error"].clone()), ("blackboard".into(), "live".into(), serde_json::Value::Null), "{b}");
    assert_eq!(b["geometry"]["slot_count"], 1, "one entry: {b}");
    drop(board);
    drop((reader, ring));
}

#[test]
fn foreign_file_is_an_error_entry_and_left_alone() {
    let dir = TestDir::new("foreign");
    let foreign = dir.join("foreign");
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&foreign).unwrap();
    let bytes: Vec<u8> = (0..128u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    f.write_all(&bytes).unwrap();
    drop(f);
    let ring = PosixSlotAllocator::builder(4, 64).discovery_dir(dir.path()).create("ok-ring").expect("create ring");

    let e = list_json(&dir);
    assert_eq!(e.len(), 2, "{e:?}");
    let bad = entry(&e, "foreign");
    assert_eq!(bad["state"], "error", "{bad}");
    let msg = bad["error"].as_str().unwrap_or_else(|| panic!("no error message: {bad}"));
    assert!(msg.contains("not a flink file") && msg.contains("magic"), "{msg}");
    assert_eq!(entry(&e, "ok-ring")["state"], "live");
    let table = flink_ok(&dir, &["list"]);
    let row = table.lines().find(|l| l.starts_with("foreign")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("error") && row.contains("not a flink file"), "{row}");

    let out = flink_ok(&dir, &["clean"]);
    let line = out.lines().find(|l| l.contains("foreign")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("error") && line.contains("left alone"), "{out}");
    assert!(out.contains("1 error"), "{out}");
    assert_eq!(std::fs::read(&foreign).unwrap(), bytes, "clean touched the foreign file");

    // inspect on it: non-zero, says why.
    let o = flink(&dir, &["inspect", "foreign"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not a flink file"), "{}", stderr(&o));

    std::fs::remove_file(&foreign).unwrap();
    drop(ring);
}

#[test]
fn inspect_of_a_corrupt_segment_shows_the_flink_file_and_fails() {
    let dir = TestDir::new("corrupt");
    let ring = PosixSlotAllocator::builder(4, 64).discovery_dir(dir.path()).create("bad").expect("create ring");
    let seg = ring.segment_path();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).expect("open shm object");
        f.write_all_at(b"NOTMAGIC", 0).expect("corrupt magic");
    }
    let seg_name = seg.to_str().unwrap().trim_start_matches("/dev/shm").to_string();

    let o = flink(&dir, &["inspect", "bad"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(out.contains(&seg_name) && out.contains("creator pid"), "flink contents missing:\n{out}");
    assert!(out.contains("validation     FAILED") && out.contains("wrong magic"), "{out}");
    assert!(err.contains("fails validation") && err.contains("wrong magic") && err.contains(seg.to_str().unwrap()), "{err}");

    let o = flink(&dir, &["inspect", "bad", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json_lines(&stdout(&o));
    assert_eq!(v.len(), 1);
    let v = &v[0];
    assert_eq!(v["state"], "error");
    assert_eq!(v["validation"]["ok"], false);
    assert!(v["validation"]["error"].as_str().is_some_and(|e| e.contains("wrong magic")), "{v}");
    assert_eq!(v["flink"]["segment_name"], seg_name.as_str());
    assert_eq!(v["flink"]["slot_count"], 4);
    assert_eq!(v["flink"]["creator_pid"], std::process::id());

    // list shows it as an error entry, still with what the flink file says.
    let e = list_json(&dir);
    let b = entry(&e, "bad");
    assert_eq!(b["state"], "error");
    assert!(b["error"].as_str().is_some_and(|m| m.contains("wrong magic")), "{b}");
    assert_eq!(b["segment_path"], seg.to_str().unwrap());

    // A missing file.
    let o = flink(&dir, &["inspect", "nothing-here"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("{} does not exist", dir.join("nothing-here").display())), "{}", stderr(&o));

    drop(ring);
    assert!(!seg.exists());
}

#[test]
fn orphan_flink_file_is_listed_inspected_and_cleaned() {
    let dir = TestDir::new("orphan");
    let ring = PosixSlotAllocator::builder(4, 64).discovery_dir(dir.path()).create("orphan").expect("create ring");
    let seg = ring.segment_path();
    std::fs::remove_file(&seg).expect("unlink the object behind the flink file");

    let e = list_json(&dir);
    let o = entry(&e, "orphan");
    assert_eq!(o["state"], "orphan", "{o}");
    assert_eq!(o["segment_path"], seg.to_str().unwrap());
    assert_eq!(o["geometry"]["slot_count"], 4, "what the flink file says: {o}");

    let out = flink(&dir, &["inspect", "orphan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("state        orphan"), "{}", stdout(&out));
    assert!(stderr(&out).contains("does not exist (an orphan flink file"), "{}", stderr(&out));

    let out = json_lines(&flink_ok(&dir, &["clean", "--json"]));
    assert_eq!(out[0]["outcome"], "removed", "{out:?}");
    assert_eq!(out[0]["object_existed"], false, "{out:?}");
    assert!(!dir.join("orphan").exists());
    drop(ring);
}
