//! `flink bench` end to end: a quick run prints well-formed JSON rows for the
//! floor and shmslot (and the transport, with `--transport`), and leaves no
//! shared-memory object or file behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn flink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flink"))
}

/// Paths the bench reported creating (`--verbose`).
fn created_paths(stderr: &str) -> Vec<PathBuf> {
    stderr.lines().filter_map(|l| l.split("flink bench: created ").nth(1)).map(|p| PathBuf::from(p.trim())).collect()
}

#[test]
fn quick_json_rows_and_no_leftovers() {
    let out = flink().args(["bench", "--quick", "--sizes", "8", "--json", "--verbose"]).output().expect("run flink");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flink bench failed: {}\nstderr:\n{stderr}", out.status);

    let mut seen = BTreeSet::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let o = v.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        let system = o["system"].as_str().expect("system");
        let mode = o["mode"].as_str().expect("mode");
        assert_eq!(o["size"].as_u64(), Some(8), "{line}");
        assert!(o["reps"].as_u64().is_some_and(|r| r >= 1), "{line}");
        for key in ["p50_ns", "p99_ns", "p999_ns", "msgs_per_s", "gb_per_s", "p50_vs_floor", "msgs_vs_floor"] {
            let x = o[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number: {line}"));
            assert!(x.is_finite() && x > 0.0, "{key} = {x}: {line}");
        }
        assert!(o["p50_ns"].as_f64() <= o["p99_ns"].as_f64() && o["p99_ns"].as_f64() <= o["p999_ns"].as_f64(), "{line}");
        if system == "floor" {
            assert_eq!(o["p50_vs_floor"].as_f64(), Some(1.0), "{line}");
        }
        assert!(seen.insert((system.to_owned(), mode.to_owned())), "duplicate row: {line}");
    }
    let want: BTreeSet<(String, String)> =
        [("floor", "poll"), ("shmslot", "poll"), ("shmslot", "blocking")].iter().map(|(s, m)| ((*s).to_owned(), (*m).to_owned())).collect();
    assert_eq!(seen, want, "rows:\n{stdout}");

    // Per shmslot case two rings, plus one floor object.
    assert_nothing_left(&stderr, 5);
}

/// Checks that the run listed at least `min_shm` shm objects and its
/// discovery directory (`--verbose`), and that none of it exists any more.
fn assert_nothing_left(stderr: &str, min_shm: usize) {
    let created = created_paths(stderr);
    let in_shm: Vec<&PathBuf> = created.iter().filter(|p| p.starts_with("/dev/shm")).collect();
    assert!(in_shm.len() >= min_shm, "expected {min_shm} created shm objects to be listed:\n{stderr}");
    assert!(created.iter().any(|p| p.starts_with(std::env::temp_dir())), "discovery directory not listed:\n{stderr}");
    for p in &created {
        assert!(!p.exists(), "{} was left behind", p.display());
    }
    // And nothing else in /dev/shm carries the names this run used.
    let names: Vec<String> = in_shm.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

#[test]
fn transport_rows_carry_ring_ratios_and_leave_nothing() {
    let out = flink().args(["bench", "--quick", "--sizes", "8,64", "--modes", "poll", "--transport", "--json", "--verbose"]).output().expect("run flink");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flink bench --transport failed: {}\nstderr:\n{stderr}", out.status);

    let mut seen = BTreeSet::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let system = v["system"].as_str().expect("system").to_owned();
        assert_eq!(v["mode"], "poll", "{line}");
        let transport = system.starts_with("transport");
        for key in ["p50_vs_ring", "p99_vs_ring", "p999_vs_ring", "msgs_vs_ring"] {
            if transport {
                // Three decimals: a ratio measured under heavy load (tests
                // run in parallel on the same two CPUs) may print as 0.000.
                let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number: {line}"));
                assert!(x.is_finite() && x >= 0.0, "{key} = {x}: {line}");
            } else {
                assert!(v.get(key).is_none(), "{key} on a {system} row: {line}");
            }
        }
        for key in ["p50_ns", "msgs_per_s", "p50_vs_floor"] {
            assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {line}");
        }
        assert!(seen.insert((system, v["size"].as_u64().expect("size"))), "duplicate row: {line}");
    }
    let want: BTreeSet<(String, u64)> =
        ["floor", "shmslot", "transport", "transport-loan"].iter().flat_map(|s| [((*s).to_owned(), 8), ((*s).to_owned(), 64)]).collect();
    assert_eq!(seen, want, "rows:\n{stdout}");

    // Per size: one floor object, two rings, and four ports (two per
    // transport case, one of them the peer's).
    assert_nothing_left(&stderr, 2 * 7);
    let ports = created_paths(&stderr).into_iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dds-d"))).count();
    assert_eq!(ports, 8, "the transport ports' flink files, the peer's included:\n{stderr}");
}

#[test]
fn bad_arguments_are_refused_clearly() {
    for (args, needle) in [
        (&["bench", "--sizes", "4"][..], "8 B"),
        (&["bench", "--sizes", "ten"][..], "not a size"),
        (&["bench", "--modes", "turbo"][..], "turbo"),
        (&["bench", "--reps", "0"][..], "reps"),
        (&["bench", "--cpus", "1,1"][..], "different CPUs"),
    ] {
        let out = flink().args(args).output().expect("run flink");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} should be a usage error:\n{stderr}");
        assert!(stderr.contains(needle), "{args:?}: error does not mention {needle:?}:\n{stderr}");
    }
}

#[test]
fn failing_peer_is_reported_and_cleaned_up() {
    // CPU 4095 does not exist: the peer cannot pin itself and exits; the
    // parent must say so and still remove everything it created.
    let out = flink().args(["bench", "--quick", "--sizes", "8", "--modes", "poll", "--cpus", "0,4095", "--verbose"]).output().expect("run flink");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "should fail:\n{stderr}");
    assert!(stderr.contains("cannot pin to CPU 4095"), "{stderr}");
    let created = created_paths(&stderr);
    assert!(!created.is_empty(), "{stderr}");
    for p in created {
        assert!(!Path::new(&p).exists(), "{} was left behind", p.display());
    }
}
