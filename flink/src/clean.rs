//! `flink clean`: removes the stale segments (creator dead, nobody attached,
//! as the kernel locks say) and orphan flink files of a discovery directory,
//! through the library's `clean`. Never a live segment; never a file that is
//! not a flink file of ours (reported as an error and left alone); a leaked
//! segment (left in place on purpose) only with `--leaked`.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use shmslot::discovery::{clean, CleanEntry, CleanOutcome};

use crate::segment::{describe, file_name, print_json, table, CliError, DiscoveryDir};

/// Options of `flink clean`.
#[derive(Args, Debug)]
pub struct CleanArgs {
    /// Discovery directory [default: $SHMSLOT_DIR, else $XDG_RUNTIME_DIR/shmslot, else /tmp/shmslot-<uid>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also remove leaked segments (left in place by their creators) that
    /// nobody is attached to.
    #[arg(long)]
    leaked: bool,
    /// Print one JSON object per file, then a summary object, one per line.
    #[arg(long)]
    json: bool,
}

/// One file's fate.
#[derive(Debug, Serialize)]
struct CleanLine {
    name: String,
    flink_path: PathBuf,
    /// `removed`, `would_remove` (dry run), `live` (kept), `leaked` (kept:
    /// left in place on purpose, see `--leaked`), `gone` (removed
    /// or replaced by someone else meanwhile) or `error` (left alone).
    outcome: &'static str,
    /// The object the flink file named (removed or would-remove).
    segment_path: Option<PathBuf>,
    /// Whether that object still existed (false: an orphan flink file).
    object_existed: Option<bool>,
    /// Why the file was left alone (outcome `error`).
    error: Option<String>,
}

impl CleanLine {
    fn new(e: &CleanEntry, dry_run: bool) -> Self {
        let mut line =
            Self { name: file_name(&e.path), flink_path: e.path.clone(), outcome: "error", segment_path: None, object_existed: None, error: None };
        match &e.outcome {
            Ok(CleanOutcome::Removed { segment_name, object_existed }) => {
                line.outcome = if dry_run { "would_remove" } else { "removed" };
                line.segment_path = Some(PathBuf::from(format!("/dev/shm{segment_name}")));
                line.object_existed = Some(*object_existed);
            }
            Ok(CleanOutcome::Live) => line.outcome = "live",
            Ok(CleanOutcome::Leaked) => line.outcome = "leaked",
            Ok(CleanOutcome::Gone) => line.outcome = "gone",
            Err(err) => line.error = Some(describe(err, &e.path)),
        }
        line
    }

    fn row(&self) -> Vec<String> {
        let what = match self.outcome {
            "removed" | "would_remove" => match (&self.segment_path, self.object_existed) {
                (Some(seg), Some(true)) => format!("flink file and {}", seg.display()),
                (Some(seg), _) => format!("flink file ({} was already gone)", seg.display()),
                _ => "flink file".into(),
            },
            "live" => "kept (in use)".into(),
            "leaked" => "kept (leaked on purpose; --leaked removes it)".into(),
            "gone" => "removed or replaced by someone else meanwhile".into(),
            _ => format!("left alone: {}", self.error.as_deref().unwrap_or("unknown error")),
        };
        let outcome = if self.outcome == "would_remove" { "would remove" } else { self.outcome };
        vec![outcome.into(), self.name.clone(), what]
    }
}

/// Counts by outcome.
#[derive(Debug, Default, Serialize)]
struct Summary {
    dir: PathBuf,
    dry_run: bool,
    /// Removed (dry run: would be removed).
    removed: usize,
    live: usize,
    leaked: usize,
    gone: usize,
    errors: usize,
}

/// The last JSON line: `{"summary": {…}}`.
#[derive(Debug, Serialize)]
struct SummaryLine<'a> {
    summary: &'a Summary,
}

/// Runs `flink clean`.
pub fn run(args: &CleanArgs) -> Result<(), CliError> {
    let dir = DiscoveryDir::new(args.dir.as_deref());
    let entries = clean(&dir.path, args.dry_run, args.leaked).map_err(|e| dir.error(&e))?;
    let lines: Vec<CleanLine> = entries.iter().map(|e| CleanLine::new(e, args.dry_run)).collect();
    let count = |o: &[&str]| lines.iter().filter(|l| o.contains(&l.outcome)).count();
    let summary = Summary {
        dir: dir.path.clone(),
        dry_run: args.dry_run,
        removed: count(&["removed", "would_remove"]),
        live: count(&["live"]),
        leaked: count(&["leaked"]),
        gone: count(&["gone"]),
        errors: count(&["error"]),
    };
    if args.json {
        for l in &lines {
            print_json(l)?;
        }
        return print_json(&SummaryLine { summary: &summary });
    }
    print!("{}", table(&lines.iter().map(CleanLine::row).collect::<Vec<_>>()));
    let removed = if args.dry_run { format!("{} would be removed", summary.removed) } else { format!("{} removed", summary.removed) };
    println!(
        "{}: {removed}, {} live (kept), {} leaked (kept), {} gone, {} {} (left alone){}",
        dir.path.display(),
        summary.live,
        summary.leaked,
        summary.gone,
        summary.errors,
        if summary.errors == 1 { "error" } else { "errors" },
        if args.dry_run { "; dry run: nothing was removed" } else { "" },
    );
    Ok(())
}
