//! Statistics and output: percentiles of one run, medians over repetitions,
//! ratios to the floor measured in the same repetition (and, for the
//! transport, to the bare ring of the same mode and repetition), then a
//! table or JSON lines (hand-written: one object per row).

use std::fmt::Write as _;

use super::{format_size, Mode, System};

/// One-way latency of one run, in ns (RTT / 2).
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub samples: usize,
}

/// What one repetition of one case measured.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    pub system: System,
    pub mode: Mode,
    pub size: usize,
    pub rep: u32,
    pub lat: Latency,
    pub msgs_per_s: f64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One-way latency percentiles from round-trip times (sorts them).
pub fn latency(rtts: &mut [u64]) -> Latency {
    rtts.sort_unstable();
    let half = |p| percentile(rtts, p) as f64 / 2.0;
    Latency { p50: half(0.50), p99: half(0.99), p999: half(0.999), samples: rtts.len() }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One output row: medians over the repetitions of one case.
#[derive(Debug, Clone)]
pub struct Row {
    pub system: System,
    pub mode: Mode,
    pub size: usize,
    pub reps: usize,
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub msgs_per_s: f64,
    pub gb_per_s: f64,
    /// Median over repetitions of (p50 / floor p50 of the same repetition).
    pub p50_ratio: f64,
    /// Median over repetitions of (msgs/s / floor msgs/s of the same repetition).
    pub msgs_ratio: f64,
    /// Transport rows: their ratios to the bare ring.
    pub vs_ring: Option<RingRatios>,
}

/// A transport row over the bare ring (shmslot, same mode, size and
/// repetition): medians of per-repetition ratios transport / ring. Latency:
/// lower is better; throughput: higher is better.
#[derive(Debug, Clone, Copy)]
pub struct RingRatios {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub msgs: f64,
}

/// The target for the transport: within this factor of the bare
/// ring (latency at most this much higher, throughput at most this much
/// lower), at 8 B to 1 KiB.
pub const TRANSPORT_TARGET: f64 = 1.3;

fn is_transport(s: System) -> bool {
    matches!(s, System::Transport | System::TransportLoan)
}

/// Groups measurements by case (size, then floor, shmslot poll, shmslot
/// blocking, then the transport's) and takes medians.
pub fn aggregate(ms: &[Measurement]) -> Vec<Row> {
    let mut keys: Vec<(usize, System, Mode)> = ms.iter().map(|m| (m.size, m.system, m.mode)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(size, system, mode)| {
            let of: Vec<&Measurement> = ms.iter().filter(|m| (m.size, m.system, m.mode) == (size, system, mode)).collect();
            let floor_of = |rep| ms.iter().find(|f| f.system == System::Floor && f.size == size && f.rep == rep);
            let ratios = |f: &dyn Fn(&Measurement, &Measurement) -> f64| median(of.iter().filter_map(|m| floor_of(m.rep).map(|fl| f(m, fl))).collect());
            let ring_of = |rep| ms.iter().find(|r| r.system == System::Shmslot && r.mode == mode && r.size == size && r.rep == rep);
            let to_ring = |f: &dyn Fn(&Measurement, &Measurement) -> f64| median(of.iter().filter_map(|m| ring_of(m.rep).map(|r| f(m, r))).collect());
            let msgs_per_s = median(of.iter().map(|m| m.msgs_per_s).collect());
            Row {
                system,
                mode,
                size,
                reps: of.len(),
                samples: of.iter().map(|m| m.lat.samples).sum::<usize>() / of.len().max(1),
                p50: median(of.iter().map(|m| m.lat.p50).collect()),
                p99: median(of.iter().map(|m| m.lat.p99).collect()),
                p999: median(of.iter().map(|m| m.lat.p999).collect()),
                msgs_per_s,
                gb_per_s: msgs_per_s * size as f64 / 1e9,
                p50_ratio: ratios(&|m, f| m.lat.p50 / f.lat.p50),
                msgs_ratio: ratios(&|m, f| m.msgs_per_s / f.msgs_per_s),
                vs_ring: is_transport(system).then(|| RingRatios {
                    p50: to_ring(&|m, r| m.lat.p50 / r.lat.p50),
                    p99: to_ring(&|m, r| m.lat.p99 / r.lat.p99),
                    p999: to_ring(&|m, r| m.lat.p999 / r.lat.p999),
                    msgs: to_ring(&|m, r| m.msgs_per_s / r.msgs_per_s),
                }),
            }
        })
        .collect()
}

pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e4 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

pub fn fmt_rate(r: f64) -> String {
    if !r.is_finite() {
        "-".into()
    } else if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        "-".into()
    }
}

/// The table, with a note on how to read it.
pub fn table(rows: &[Row], reps: u32) -> String {
    let mut s = String::new();
    let sw = rows.iter().map(|r| r.system.as_str().len()).max().unwrap_or(0).max(8);
    let _ = writeln!(
        s,
        "{:<sw$} {:<9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>10}",
        "system", "mode", "size", "p50", "p99", "p99.9", "msgs/s", "GB/s", "p50/floor", "msgs/floor"
    );
    let mut last_size = None;
    for r in rows {
        if last_size.is_some_and(|l| l != r.size) {
            s.push('\n');
        }
        last_size = Some(r.size);
        let _ = writeln!(
            s,
            "{:<sw$} {:<9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7.3} {:>9} {:>10}",
            r.system.as_str(),
            r.mode.as_str(),
            format_size(r.size),
            fmt_ns(r.p50),
            fmt_ns(r.p99),
            fmt_ns(r.p999),
            fmt_rate(r.msgs_per_s),
            r.gb_per_s,
            fmt_ratio(r.p50_ratio),
            fmt_ratio(r.msgs_ratio),
        );
    }
    let _ = writeln!(
        s,
        "\nlatency: one-way = RTT/2 of a pinned ping-pong; throughput: one writer, one reader, ring of 16.\n\
         {} per case; ratios are medians of per-repetition ratios to the floor (p50: lower is better, msgs/s: higher is better).",
        if reps == 1 { "1 repetition".to_string() } else { format!("medians of {reps} repetitions") }
    );
    if rows.iter().any(|r| r.vs_ring.is_some()) {
        s.push('\n');
        s.push_str(&ring_table(rows, sw));
    }
    s
}

/// The transport rows over the bare ring (shown with `--transport`).
fn ring_table(rows: &[Row], sw: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "transport / bare ring (shmslot, same mode, same repetition):");
    let _ = writeln!(s, "{:<sw$} {:<9} {:>7} {:>9} {:>9} {:>9} {:>9}", "system", "mode", "size", "p50", "p99", "p99.9", "msgs/s");
    let mut last_size = None;
    for r in rows {
        let Some(v) = r.vs_ring else { continue };
        if last_size.is_some_and(|l| l != r.size) {
            s.push('\n');
        }
        last_size = Some(r.size);
        let _ = writeln!(
            s,
            "{:<sw$} {:<9} {:>7} {:>9} {:>9} {:>9} {:>9}",
            r.system.as_str(),
            r.mode.as_str(),
            format_size(r.size),
            fmt_ratio(v.p50),
            fmt_ratio(v.p99),
            fmt_ratio(v.p999),
            fmt_ratio(v.msgs),
        );
    }
    let _ = writeln!(
        s,
        "\nmedians of per-repetition ratios transport / ring: latency above 1 and throughput below 1 are what the transport costs."
    );
    s
}

/// Checks of the targets, one line each, for the rows present.
pub fn targets(rows: &[Row]) -> String {
    let mut s = String::new();
    for r in rows.iter().filter(|r| r.system == System::Shmslot && r.mode == Mode::Poll) {
        if r.size <= 1024 {
            let ok = r.p50_ratio <= 1.15;
            let _ = writeln!(s, "target p50 <= 1.15x floor at {:>6}: {} ({})", format_size(r.size), fmt_ratio(r.p50_ratio), if ok { "met" } else { "MISSED" });
        }
        let want = match r.size {
            8 => Some(10e6),
            1024 => Some(8e6),
            _ => None,
        };
        if let Some(want) = want {
            let ok = r.msgs_per_s >= want;
            let _ = writeln!(s, "target >= {} msgs/s at {:>6}: {} ({})", fmt_rate(want), format_size(r.size), fmt_rate(r.msgs_per_s), if ok { "met" } else { "MISSED" });
        }
    }
    let t = TRANSPORT_TARGET;
    for r in rows.iter().filter(|r| r.mode == Mode::Poll && r.size <= 1024) {
        let Some(v) = r.vs_ring else { continue };
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        let (lat_ok, thr_ok) = (v.p50 <= t, v.msgs >= 1.0 / t);
        let name = r.system.as_str();
        let _ = writeln!(s, "target {name} p50 <= {t}x ring at {:>6}: {} ({})", format_size(r.size), fmt_ratio(v.p50), met(lat_ok));
        let _ = writeln!(s, "target {name} msgs/s >= ring/{t} at {:>6}: {} ({})", format_size(r.size), fmt_ratio(v.msgs), met(thr_ok));
    }
    s
}

pub fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "null".into()
    }
}

/// A JSON number with `digits` significant digits (at least the integer
/// part), `null` when not finite: for ratios, which span 0.0003 (a latency
/// against a preempted floor) to 300, where a fixed number of decimals
/// rounds the small ones to 0.
pub fn sig(v: f64, digits: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return num(v, 0);
    }
    let magnitude = v.abs().log10().floor() as i64;
    let decimals = (digits as i64 - 1 - magnitude).max(0) as usize;
    num(v, decimals)
}

/// One JSON object per row, one per line. Transport rows also carry their
/// ratios to the bare ring (`p50_vs_ring`, `p99_vs_ring`, `p999_vs_ring`,
/// `msgs_vs_ring`).
pub fn json_lines(rows: &[Row]) -> String {
    let mut s = String::new();
    for r in rows {
        let vs_ring = r.vs_ring.map_or_else(String::new, |v| {
            format!(",\"p50_vs_ring\":{},\"p99_vs_ring\":{},\"p999_vs_ring\":{},\"msgs_vs_ring\":{}", sig(v.p50, 4), sig(v.p99, 4), sig(v.p999, 4), sig(v.msgs, 4))
        });
        let _ = writeln!(
            s,
            "{{\"system\":\"{}\",\"mode\":\"{}\",\"size\":{},\"reps\":{},\"samples\":{},\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"msgs_per_s\":{},\"gb_per_s\":{},\"p50_vs_floor\":{},\"msgs_vs_floor\":{}{vs_ring}}}",
            r.system.as_str(),
            r.mode.as_str(),
            r.size,
            r.reps,
            r.samples,
            num(r.p50, 1),
            num(r.p99, 1),
            num(r.p999, 1),
            num(r.msgs_per_s, 0),
            num(r.gb_per_s, 6),
            sig(r.p50_ratio, 4),
            sig(r.msgs_ratio, 4),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_keep_significant_digits() {
        assert_eq!(sig(0.000_285_714, 4), "0.0002857");
        assert_eq!(sig(1.234_56, 4), "1.235");
        assert_eq!(sig(294.22, 4), "294.2");
        assert_eq!(sig(12_345.6, 4), "12346");
        assert_eq!(sig(0.0, 4), "0");
        assert_eq!(sig(f64::NAN, 4), "null");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).rev().map(|x| x * 2).collect();
        let l = latency(&mut v);
        assert_eq!(l.p50, 500.0);
        assert_eq!(l.p99, 990.0);
        assert_eq!(l.p999, 999.0);
    }

    #[test]
    fn ratios_pair_each_repetition_with_its_floor() {
        let lat = |p50| Latency { p50, p99: p50, p999: p50, samples: 1 };
        let m = |system, rep, p50, thr| Measurement { system, mode: Mode::Poll, size: 8, rep, lat: lat(p50), msgs_per_s: thr };
        let rows = aggregate(&[
            m(System::Floor, 0, 100.0, 10.0),
            m(System::Shmslot, 0, 150.0, 5.0),
            m(System::Floor, 1, 200.0, 20.0),
            m(System::Shmslot, 1, 220.0, 10.0),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].system, System::Floor);
        assert!((rows[1].p50_ratio - 1.3).abs() < 1e-9); // median of 1.5 and 1.1
        assert!((rows[1].msgs_ratio - 0.5).abs() < 1e-9);
        let json = json_lines(&rows);
        assert!(json.lines().all(|l| l.starts_with('{') && l.ends_with('}')));
        assert!(!json.contains("vs_ring"), "only transport rows carry ring ratios: {json}");
        let text = table(&rows, 2);
        assert!(text.starts_with("system   mode "), "without transport rows the columns stay as they were:\n{text}");
        assert!(!text.contains("bare ring") && !targets(&rows).contains("transport"), "{text}");
    }

    #[test]
    fn transport_rows_pair_with_the_ring_of_the_same_mode_and_repetition() {
        let lat = |p50| Latency { p50, p99: p50 * 2.0, p999: p50 * 4.0, samples: 1 };
        let m = |system, mode, rep, p50, thr| Measurement { system, mode, size: 64, rep, lat: lat(p50), msgs_per_s: thr };
        let rows = aggregate(&[
            m(System::Floor, Mode::Poll, 0, 100.0, 10.0),
            m(System::Shmslot, Mode::Poll, 0, 200.0, 8.0),
            m(System::Shmslot, Mode::Blocking, 0, 1000.0, 2.0),
            m(System::Transport, Mode::Poll, 0, 300.0, 4.0),
            m(System::Transport, Mode::Blocking, 0, 1100.0, 2.0),
            m(System::Floor, Mode::Poll, 1, 100.0, 10.0),
            m(System::Shmslot, Mode::Poll, 1, 400.0, 8.0),
            m(System::Shmslot, Mode::Blocking, 1, 1000.0, 2.0),
            m(System::Transport, Mode::Poll, 1, 400.0, 8.0),
            m(System::Transport, Mode::Blocking, 1, 1100.0, 2.0),
        ]);
        let tp = rows.iter().find(|r| r.system == System::Transport && r.mode == Mode::Poll).unwrap();
        let v = tp.vs_ring.expect("ring ratios");
        assert!((v.p50 - 1.25).abs() < 1e-9, "median of 1.5 and 1.0: {v:?}");
        assert!((v.p999 - 1.25).abs() < 1e-9, "{v:?}");
        assert!((v.msgs - 0.75).abs() < 1e-9, "median of 0.5 and 1.0: {v:?}");
        let tb = rows.iter().find(|r| r.system == System::Transport && r.mode == Mode::Blocking).unwrap();
        assert!((tb.vs_ring.unwrap().p50 - 1.1).abs() < 1e-9, "blocking pairs with blocking");
        assert!(rows.iter().filter(|r| r.system != System::Transport).all(|r| r.vs_ring.is_none()));
        let json = json_lines(&rows);
        assert_eq!(json.matches("\"p50_vs_ring\":1.250").count(), 1, "{json}");
        let text = table(&rows, 2);
        assert!(text.contains("transport / bare ring") && text.contains("1.25x"), "{text}");
        assert!(targets(&rows).contains("target transport p50 <= 1.3x ring at   64 B: 1.25x (met)"), "{}", targets(&rows));
    }
}
