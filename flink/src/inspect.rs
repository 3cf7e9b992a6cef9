//! `flink inspect PATH`: one segment in full — the flink file, the
//! geometry, who is attached and alive, the counters, the validation
//! result. Reads the flink file first, then the segment, so when the segment
//! fails what the flink file says is still shown (and the exit code is 1).

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use shmslot::discovery::{inspect, read_flink, SegmentState};
use shmslot::OpenError;

use crate::bench::format_size;
use crate::segment::{
    age_ms, describe, format_age, format_geometry, participants, print_json, table, CliError, DiscoveryDir, FlinkView, InfoView, ParticipantView,
};

/// Options of `flink inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The flink file: a bare name (no `/`) is looked up in the discovery
    /// directory, a path is used as given.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Discovery directory for a bare name [default: $SHMSLOT_DIR, else $XDG_RUNTIME_DIR/shmslot, else /tmp/shmslot-<uid>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
}

/// Whether the flink file and its segment passed validation.
#[derive(Debug, Serialize)]
struct Validation {
    ok: bool,
    /// What failed, when not ok.
    error: Option<String>,
}

/// Everything `inspect` could read. Fields that could not be read are
/// `null` (or empty lists).
#[derive(Debug, Serialize)]
struct InspectView {
    flink_path: PathBuf,
    /// The flink file's contents.
    flink: Option<FlinkView>,
    segment_path: Option<PathBuf>,
    /// `live`, `stale`, `orphan` or `error`.
    state: &'static str,
    /// The validated geometry, policy and type hash.
    info: Option<InfoView>,
    creator_alive: Option<bool>,
    attached: Option<bool>,
    write_seq: Option<u64>,
    /// Samples committed by the writers attached now.
    sent: Option<u64>,
    /// Samples released by the readers attached now.
    received: Option<u64>,
    /// Samples the writers attached now dropped on a full ring.
    dropped: Option<u64>,
    /// Sum of the readers' lost counts.
    lost: Option<u64>,
    age_ms: Option<u64>,
    data_epoch: Option<u32>,
    data_waiters: Option<u32>,
    space_waiters: Option<u32>,
    readers: Vec<ParticipantView>,
    writers: Vec<ParticipantView>,
    validation: Validation,
}

/// Where a bare name or a path points.
fn resolve(path: &Path, dir: &DiscoveryDir) -> PathBuf {
    if path.as_os_str().as_encoded_bytes().contains(&b'/') {
        path.to_owned()
    } else {
        dir.path.join(path)
    }
}

/// The message for a flink file that cannot be read at all.
fn flink_error(e: &OpenError, path: &Path, bare: bool, dir: &DiscoveryDir) -> String {
    let p = path.display();
    match e {
        OpenError::Io { source, .. } if source.kind() == ErrorKind::NotFound => {
            if bare && !dir.path.exists() {
                dir.error(e).to_string()
            } else {
                format!("{p} does not exist")
            }
        }
        OpenError::Io { op, source, .. } if source.kind() == ErrorKind::PermissionDenied => format!("{p}: permission denied ({op})"),
        OpenError::Invalid { error, .. } => format!("{p} is not a flink file: {error}"),
        OpenError::Unsafe { reason, .. } => format!("{p} is refused: {reason}"),
        other => format!("{p}: {}", describe(other, path)),
    }
}

/// Runs `flink inspect`.
pub fn run(args: &InspectArgs) -> Result<(), CliError> {
    let dir = DiscoveryDir::new(args.dir.as_deref());
    let bare = !args.path.as_os_str().as_encoded_bytes().contains(&b'/');
    let path = resolve(&args.path, &dir);

    let mut view = InspectView {
        flink_path: path.clone(),
        flink: None,
        segment_path: None,
        state: "error",
        info: None,
        creator_alive: None,
        attached: None,
        write_seq: None,
        sent: None,
        received: None,
        dropped: None,
        lost: None,
        age_ms: None,
        data_epoch: None,
        data_waiters: None,
        space_waiters: None,
        readers: Vec::new(),
        writers: Vec::new(),
        validation: Validation { ok: false, error: None },
    };

    let failure = match read_flink(&path) {
        Err(e) => {
            let msg = flink_error(&e, &path, bare, &dir);
            if matches!(&e, OpenError::Io { source, .. } if source.kind() == ErrorKind::NotFound) {
                // Nothing was read: no report, only the error.
                if args.json {
                    view.validation.error = Some(msg.clone());
                    print_json(&view)?;
                }
                return Err(CliError(msg));
            }
            view.validation.error = Some(describe(&e, &path));
            Some(msg)
        }
        Ok(fl) => {
            view.segment_path = Some(PathBuf::from(format!("/dev/shm{}", fl.segment_name)));
            view.age_ms = Some(age_ms(fl.created_unix_ms));
            view.flink = Some(FlinkView::from(&fl));
            match inspect(&path) {
                Err(e) => {
                    view.validation.error = Some(describe(&e, &path));
                    Some(match &e {
                        OpenError::Invalid { path: seg, error } if seg != &path => {
                            format!("segment {} (named by {}) fails validation: {error}", seg.display(), path.display())
                        }
                        _ => format!("{}: {}", path.display(), describe(&e, &path)),
                    })
                }
                Ok(st) => {
                    view.state = st.state.as_str();
                    view.segment_path = Some(st.segment_path.clone());
                    view.creator_alive = Some(st.creator_alive);
                    view.attached = Some(st.attached);
                    if st.state == SegmentState::Orphan {
                        let msg = format!(
                            "the shared-memory object {} does not exist (an orphan flink file; `flink clean` removes it)",
                            st.segment_path.display()
                        );
                        view.validation.error = Some(msg.clone());
                        Some(format!("{}: {msg}", path.display()))
                    } else {
                        (view.readers, view.writers) = participants(&st);
                        view.write_seq = Some(st.write_seq);
                        view.sent = Some(st.sent());
                        view.received = Some(st.received());
                        view.dropped = Some(st.dropped());
                        view.lost = Some(st.lost());
                        view.data_epoch = Some(st.data_epoch);
                        view.data_waiters = Some(st.data_waiters);
                        view.space_waiters = Some(st.space_waiters);
                        if let Some(info) = &st.info {
                            view.age_ms = Some(age_ms(info.created_unix_ms));
                            view.info = Some(InfoView::from(info));
                        }
                        view.validation.ok = true;
                        None
                    }
                }
            }
        }
    };

    if args.json {
        print_json(&view)?;
    } else {
        print!("{}", report(&view));
    }
    failure.map_or(Ok(()), |msg| Err(CliError(msg)))
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The text report.
fn report(v: &InspectView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "flink file     {}", v.flink_path.display());
    if let Some(f) = &v.flink {
        let _ = writeln!(s, "  segment      /dev/shm{}", f.segment_name);
        let _ = writeln!(s, "  geometry     {} ({} readers max)", format_geometry(f.slot_count, f.capacity), f.max_readers);
        let _ = writeln!(s, "  policy       {}", f.policy);
        let _ = writeln!(s, "  creator pid  {}", f.creator_pid);
        let _ = writeln!(s, "  created      {} ms since the epoch ({} ago)", f.created_unix_ms, format_age(age_ms(f.created_unix_ms)));
    }
    if let Some(seg) = &v.segment_path {
        let _ = writeln!(s, "segment        {}", seg.display());
    }
    let _ = writeln!(s, "  state        {}", v.state);
    if let Some(i) = &v.info {
        let _ = writeln!(
            s,
            "  geometry     {}, stride {} B, {} readers max, {} writers max, {} total",
            format_geometry(i.slot_count, i.capacity),
            i.stride,
            i.max_readers,
            i.max_writers,
            format_size(i.total_size as usize)
        );
        let untyped = if i.type_hash.bytes().all(|c| c == b'0') { " (untyped)" } else { "" };
        let _ = writeln!(s, "  type hash    {}{untyped}", i.type_hash);
        let _ = writeln!(s, "  policy       {}", i.policy);
        let _ = writeln!(s, "  created      {} ms since the epoch ({} ago)", i.created_unix_ms, format_age(age_ms(i.created_unix_ms)));
        if let Some(alive) = v.creator_alive {
            let _ = writeln!(s, "  creator      pid {}, {}", i.creator_pid, if alive { "alive" } else { "dead" });
        }
    } else if let Some(alive) = v.creator_alive {
        let _ = writeln!(s, "  creator      {}", if alive { "alive" } else { "dead" });
    }
    if let Some(a) = v.attached {
        let _ = writeln!(s, "  attached     {}", yes(a));
    }
    if let Some(seq) = v.write_seq {
        let _ = writeln!(s, "  write_seq    {seq}");
    }
    if let (Some(sent), Some(received), Some(dropped)) = (v.sent, v.received, v.dropped) {
        let _ = writeln!(s, "  counters     {sent} sent, {received} received, {dropped} dropped (by the participants attached now)");
    }
    if let Some(lost) = v.lost {
        let _ = writeln!(s, "  lost         {lost}");
    }
    if let (Some(g), Some(dw), Some(sw)) = (v.data_epoch, v.data_waiters, v.space_waiters) {
        let _ = writeln!(s, "  notify       data epoch {g}, {dw} data waiters, {sw} space waiters");
    }
    if v.info.is_some() {
        let _ = writeln!(s, "readers ({})", v.readers.len());
        if !v.readers.is_empty() {
            let mut rows = vec![["INDEX", "PID", "ALIVE", "REGISTERED", "NEXT SEQ", "RECEIVED", "LOST", "KEPT NOW/TOTAL"].map(String::from).to_vec()];
            rows.extend(v.readers.iter().map(|r| {
                let alive = if r.reclaiming { "reclaiming".into() } else { yes(r.alive).to_string() };
                let kept = format!("{}/{}", r.kept, r.kept_total);
                vec![r.index.to_string(), r.pid.to_string(), alive, yes(r.registered).into(), r.position.to_string(), r.received.to_string(), r.lost.to_string(), kept]
            }));
            indent(&mut s, &table(&rows));
        }
        let _ = writeln!(s, "writers ({})", v.writers.len());
        if !v.writers.is_empty() {
            let mut rows = vec![["INDEX", "PID", "ALIVE", "COMMITS", "DROPPED"].map(String::from).to_vec()];
            rows.extend(v.writers.iter().map(|w| {
                let alive = if w.reclaiming { "reclaiming".into() } else { yes(w.alive).to_string() };
                vec![w.index.to_string(), w.pid.to_string(), alive, w.position.to_string(), w.dropped.to_string()]
            }));
            indent(&mut s, &table(&rows));
        }
    }
    match (&v.validation.ok, &v.validation.error) {
        (true, _) => {
            let _ = writeln!(s, "validation     ok");
        }
        (false, Some(e)) => {
            let _ = writeln!(s, "validation     FAILED: {e}");
        }
        (false, None) => {
            let _ = writeln!(s, "validation     FAILED");
        }
    }
    s
}

fn indent(s: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(s, "  {line}");
    }
}
