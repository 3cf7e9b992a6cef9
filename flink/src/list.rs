//! `flink list`: every segment of a discovery directory, one row (or one
//! JSON object) each. A file that cannot be read (a foreign file, a corrupt
//! segment, no permission) is listed with state `error` and the reason; it
//! never aborts the listing.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use shmslot::discovery::{read_flink, scan, FlinkInfo, ScanEntry, SegmentState};

use crate::segment::{
    age_ms, alive_dead, describe, file_name, format_age, format_alive_dead, format_geometry, participants, print_json, stored_policy_name, policy_name, table,
    CliError, DiscoveryDir, ParticipantView,
};

/// Options of `flink list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Discovery directory [default: $SHMSLOT_DIR, else $XDG_RUNTIME_DIR/shmslot, else /tmp/shmslot-<uid>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON object per segment, one per line, instead of the table.
    #[arg(long)]
    json: bool,
}

/// The geometry of a segment; `stride` and `max_writers` are unknown when
/// only the flink file could be read.
#[derive(Debug, Serialize)]
struct Geometry {
    slot_count: u32,
    capacity: u32,
    stride: Option<u32>,
    max_readers: u32,
    max_writers: Option<u32>,
}

/// One segment (one file of the directory). Fields that could not be read
/// are `null`.
#[derive(Debug, Serialize)]
struct ListEntry {
    /// The flink file's name.
    name: String,
    flink_path: PathBuf,
    /// `live`, `stale`, `leaked` (nobody attached, kept on purpose),
    /// `orphan` or `error`.
    state: &'static str,
    /// Whether the flink file marks the segment leaked (left in place by
    /// its creator; `flink clean --leaked` removes it).
    leaked: Option<bool>,
    /// `ring` or `blackboard` (for a blackboard, `geometry` is entries ×
    /// largest value and the ring counters are null).
    kind: Option<&'static str>,
    /// A growing ring's generation (0 until it first grew).
    generation: Option<u32>,
    /// `static`, `power-of-two` or `best-fit`.
    growth: Option<&'static str>,
    /// Older generations that still exist (their last readers have not
    /// moved on yet), newest first.
    older_generations: Vec<PathBuf>,
    /// Why the entry could not be read (state `error`).
    error: Option<String>,
    segment_path: Option<PathBuf>,
    geometry: Option<Geometry>,
    policy: Option<String>,
    creator_pid: Option<u32>,
    creator_alive: Option<bool>,
    attached: Option<bool>,
    readers_alive: Option<usize>,
    readers_dead: Option<usize>,
    writers_alive: Option<usize>,
    writers_dead: Option<usize>,
    write_seq: Option<u64>,
    /// Samples committed by the writers attached now.
    sent: Option<u64>,
    /// Samples released by the readers attached now.
    received: Option<u64>,
    /// Samples the writers attached now gave up on because the ring was
    /// full (a never-blocking sender such as the transport).
    dropped: Option<u64>,
    /// Sum of the readers' lost counts.
    lost: Option<u64>,
    created_unix_ms: Option<u64>,
    age_ms: Option<u64>,
    readers: Vec<ParticipantView>,
    writers: Vec<ParticipantView>,
}

impl ListEntry {
    /// What the flink file alone says (an orphan, or a segment that failed).
    fn from_flink(path: &Path, state: &'static str, error: Option<String>, flink: Option<&FlinkInfo>) -> Self {
        Self {
            name: file_name(path),
            flink_path: path.to_owned(),
            state,
            leaked: flink.map(|f| f.leaked),
            kind: flink.map(|f| f.kind.as_str()),
            generation: None,
            growth: None,
            older_generations: Vec::new(),
            error,
            segment_path: flink.map(|f| PathBuf::from(format!("/dev/shm{}", f.segment_name))),
            geometry: flink.map(|f| Geometry { slot_count: f.slot_count, capacity: f.capacity, stride: None, max_readers: f.max_readers, max_writers: None }),
            policy: flink.map(|f| stored_policy_name(f.policy)),
            creator_pid: flink.map(|f| f.creator_pid),
            creator_alive: None,
            attached: None,
            readers_alive: None,
            readers_dead: None,
            writers_alive: None,
            writers_dead: None,
            write_seq: None,
            sent: None,
            received: None,
            dropped: None,
            lost: None,
            created_unix_ms: flink.map(|f| f.created_unix_ms),
            age_ms: flink.map(|f| age_ms(f.created_unix_ms)),
            readers: Vec::new(),
            writers: Vec::new(),
        }
    }

    fn new(e: &ScanEntry) -> Self {
        match &e.status {
            Err(err) => {
                // The flink file may still be readable (a segment that fails
                // validation): show what it says.
                let flink = read_flink(&e.path).ok();
                Self::from_flink(&e.path, "error", Some(describe(err, &e.path)), flink.as_ref())
            }
            Ok(st) if st.state == SegmentState::Orphan || st.info.is_none() => {
                let flink = read_flink(&e.path).ok();
                let mut entry = Self::from_flink(&e.path, st.state.as_str(), None, flink.as_ref());
                entry.segment_path = Some(st.segment_path.clone());
                entry.creator_alive = Some(st.creator_alive);
                entry.attached = Some(st.attached);
                (entry.readers_alive, entry.readers_dead, entry.writers_alive, entry.writers_dead) = (Some(0), Some(0), Some(0), Some(0));
                entry
            }
            Ok(st) => {
                let info = st.info.expect("checked above");
                let (ra, rd) = alive_dead(&st.readers);
                let (wa, wd) = alive_dead(&st.writers);
                let (readers, writers) = participants(st);
                Self {
                    name: file_name(&e.path),
                    flink_path: e.path.clone(),
                    state: st.state.as_str(),
                    leaked: Some(st.leaked),
                    kind: Some(st.kind.as_str()),
                    generation: Some(info.generation),
                    growth: Some(info.growth.as_str()),
                    older_generations: st.older_generations.clone(),
                    error: None,
                    segment_path: Some(st.segment_path.clone()),
                    geometry: Some(Geometry {
                        slot_count: info.slot_count,
                        capacity: info.capacity,
                        stride: Some(info.stride),
                        max_readers: info.max_readers,
                        max_writers: Some(info.max_writers),
                    }),
                    policy: Some(policy_name(info.policy)),
                    creator_pid: Some(info.creator_pid),
                    creator_alive: Some(st.creator_alive),
                    attached: Some(st.attached),
                    readers_alive: Some(ra),
                    readers_dead: Some(rd),
                    writers_alive: Some(wa),
                    writers_dead: Some(wd),
                    write_seq: Some(st.write_seq),
                    sent: Some(st.sent()),
                    received: Some(st.received()),
                    dropped: Some(st.dropped()),
                    lost: Some(st.lost()),
                    created_unix_ms: Some(info.created_unix_ms),
                    age_ms: Some(age_ms(info.created_unix_ms)),
                    readers,
                    writers,
                }
            }
        }
    }

    /// The table row; an `error` row is name, state and the reason.
    fn row(&self) -> Vec<String> {
        let dash = || "-".to_string();
        let state = if self.leaked == Some(true) && self.state == "live" { "live, leaked".to_string() } else { self.state.to_string() };
        let mut row = vec![self.name.clone(), self.kind.unwrap_or("-").to_string(), state];
        if let Some(err) = &self.error {
            row.push(err.clone());
            return row;
        }
        let opt = |v: Option<String>| v.unwrap_or_else(dash);
        row.extend([
            opt(self.geometry.as_ref().map(|g| format_geometry(g.slot_count, g.capacity))),
            opt(self.geometry.as_ref().and_then(|g| g.stride).map(|s| s.to_string())),
            opt(self.geometry.as_ref().map(|g| format!("{}/{}", g.max_readers, g.max_writers.map_or_else(dash, |w| w.to_string())))),
            opt(self.policy.clone()),
            opt(self.generation.map(|g| match self.older_generations.len() {
                0 => g.to_string(),
                n => format!("{g} (+{n} old)"),
            })),
            match (self.creator_pid, self.creator_alive) {
                (Some(pid), Some(alive)) => format!("{pid} {}", if alive { "alive" } else { "dead" }),
                (Some(pid), None) => pid.to_string(),
                _ => dash(),
            },
            opt(self.readers_alive.zip(self.readers_dead).map(|(a, d)| format_alive_dead(a, d))),
            opt(self.writers_alive.zip(self.writers_dead).map(|(a, d)| format_alive_dead(a, d))),
            opt(self.write_seq.map(|s| s.to_string())),
            opt(self.sent.map(|v| v.to_string())),
            opt(self.received.map(|v| v.to_string())),
            opt(self.dropped.map(|v| v.to_string())),
            opt(self.lost.map(|l| l.to_string())),
            opt(self.age_ms.map(format_age)),
        ]);
        row
    }
}

const HEADER: [&str; 17] =
    ["NAME", "KIND", "STATE", "SLOTS × CAP", "STRIDE", "MAX R/W", "POLICY", "GEN", "CREATOR", "READERS", "WRITERS", "WRITE_SEQ", "SENT", "RECEIVED", "DROPPED", "LOST", "AGE"];

/// Runs `flink list`.
pub fn run(args: &ListArgs) -> Result<(), CliError> {
    let dir = DiscoveryDir::new(args.dir.as_deref());
    let entries: Vec<ListEntry> = scan(&dir.path).map_err(|e| dir.error(&e))?.iter().map(ListEntry::new).collect();
    if args.json {
        for e in &entries {
            print_json(e)?;
        }
        return Ok(());
    }
    if entries.is_empty() {
        println!("no segments in {}", dir.path.display());
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| (*h).to_string()).collect()];
    rows.extend(entries.iter().map(ListEntry::row));
    print!("{}", table(&rows));
    Ok(())
}
