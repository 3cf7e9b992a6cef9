//! Statistics and output of the comparison: medians over repetitions with
//! their spread, ratios taken within each repetition (then the median of
//! those), the goals checked against them, tables and JSON lines.

use std::fmt::Write as _;

use flink::bench::format_size;
use flink::bench::report::{fmt_ns, fmt_rate, fmt_ratio, median, num, percentile, sig, Latency};

use crate::System;

/// A system in one of its waiting modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Variant {
    /// The system.
    pub system: System,
    /// Receivers (and writers facing a full queue) wait on the system's wake
    /// mechanism instead of spinning.
    pub blocking: bool,
}

impl Variant {
    /// The mode's name in that system's terms.
    pub fn mode(self) -> &'static str {
        match (self.system, self.blocking) {
            (_, false) => "poll",
            (System::Iceoryx2, true) => "event",
            (System::Zerodds, true) => "wait",
            (_, true) => "blocking",
        }
    }

    /// `system mode`.
    pub fn name(self) -> String {
        format!("{} {}", self.system.as_str(), self.mode())
    }

    fn of(system: System, blocking: bool) -> Self {
        Self { system, blocking }
    }
}

/// A ping-pong and throughput measurement (one repetition).
#[derive(Debug, Clone)]
pub struct PairM {
    pub variant: Variant,
    pub size: usize,
    pub rep: u32,
    /// One-way latency (RTT / 2).
    pub lat: Latency,
    /// Throughput, msgs/s.
    pub msgs: f64,
}

/// A wake measurement (one repetition): one-way latencies in ns.
#[derive(Debug, Clone)]
pub struct WakeM {
    pub variant: Variant,
    pub size: usize,
    pub rep: u32,
    pub one_way: Vec<u64>,
}

/// A fan-out measurement (one repetition): each reader's msgs/s.
#[derive(Debug, Clone)]
pub struct FanM {
    pub variant: Variant,
    pub size: usize,
    pub rep: u32,
    pub per_reader: Vec<f64>,
}

impl FanM {
    fn delivered(&self) -> f64 {
        self.per_reader.iter().sum()
    }
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Results {
    pub pairs: Vec<PairM>,
    pub wakes: Vec<WakeM>,
    pub fans: Vec<FanM>,
}

/// Median with its spread: half the range over the repetitions, relative to
/// the median (0.05 = ±5 %).
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    spread: f64,
}

fn spread(v: &[f64]) -> Spread {
    let m = median(v.to_vec());
    let finite = v.iter().copied().filter(|x| x.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    Spread { median: m, spread: if m > 0.0 && hi >= lo { (hi - lo) / 2.0 / m } else { f64::NAN } }
}

fn fmt_spread(s: f64) -> String {
    if s.is_finite() {
        format!("±{:.0}%", s * 100.0)
    } else {
        "-".into()
    }
}

/// One-way percentiles of the wake (not halved: these are one-way already).
fn one_way(v: &[u64]) -> Latency {
    let mut v = v.to_vec();
    v.sort_unstable();
    let p = |q| percentile(&v, q) as f64;
    Latency { p50: p(0.50), p99: p(0.99), p999: p(0.999), samples: v.len() }
}

/// A row of the pair table.
struct PairRow {
    variant: Variant,
    size: usize,
    reps: usize,
    p50: Spread,
    p99: f64,
    p999: f64,
    msgs: Spread,
    p50_floor: f64,
    msgs_floor: f64,
}

struct WakeRow {
    variant: Variant,
    size: usize,
    reps: usize,
    p50: Spread,
    p99: f64,
    p999: f64,
    samples: usize,
}

struct FanRow {
    variant: Variant,
    size: usize,
    reps: usize,
    readers: usize,
    delivered: Spread,
    slowest: f64,
}

/// A goal of the issue, checked.
#[derive(Debug, Clone)]
pub struct Goal {
    /// What is compared, e.g. `p50 8 B: shmslot poll / zerodds poll`.
    pub what: String,
    /// Median over repetitions of the per-repetition ratio.
    pub ratio: f64,
    /// The bound.
    pub limit: f64,
    /// `ratio <= limit` (latency) or `ratio >= limit` (throughput).
    pub at_most: bool,
}

impl Goal {
    /// Whether the goal is met (a missing measurement is not).
    pub fn met(&self) -> bool {
        self.ratio.is_finite() && if self.at_most { self.ratio <= self.limit } else { self.ratio >= self.limit }
    }
}

fn keys<T>(ms: &[T], key: impl Fn(&T) -> (usize, Variant)) -> Vec<(usize, Variant)> {
    let mut k: Vec<_> = ms.iter().map(key).collect();
    k.sort();
    k.dedup();
    k
}

impl Results {
    fn pair(&self, v: Variant, size: usize, rep: u32) -> Option<&PairM> {
        self.pairs.iter().find(|m| m.variant == v && m.size == size && m.rep == rep)
    }

    /// Median over repetitions of `f(a) / f(b)`, over the repetitions that have both.
    fn pair_ratio(&self, a: Variant, b: Variant, size: usize, f: impl Fn(&PairM) -> f64) -> f64 {
        let r = self.pairs.iter().filter(|m| m.variant == a && m.size == size).filter_map(|m| self.pair(b, size, m.rep).map(|o| f(m) / f(o)));
        median(r.collect())
    }

    fn pair_rows(&self) -> Vec<PairRow> {
        keys(&self.pairs, |m| (m.size, m.variant))
            .into_iter()
            .map(|(size, variant)| {
                let of: Vec<&PairM> = self.pairs.iter().filter(|m| m.size == size && m.variant == variant).collect();
                let col = |f: &dyn Fn(&PairM) -> f64| of.iter().map(|m| f(m)).collect::<Vec<f64>>();
                let floor = Variant::of(System::Floor, false);
                PairRow {
                    variant,
                    size,
                    reps: of.len(),
                    p50: spread(&col(&|m| m.lat.p50)),
                    p99: median(col(&|m| m.lat.p99)),
                    p999: median(col(&|m| m.lat.p999)),
                    msgs: spread(&col(&|m| m.msgs)),
                    p50_floor: self.pair_ratio(variant, floor, size, |m| m.lat.p50),
                    msgs_floor: self.pair_ratio(variant, floor, size, |m| m.msgs),
                }
            })
            .collect()
    }

    fn wake_rows(&self) -> Vec<WakeRow> {
        keys(&self.wakes, |m| (m.size, m.variant))
            .into_iter()
            .map(|(size, variant)| {
                let of: Vec<Latency> = self.wakes.iter().filter(|m| m.size == size && m.variant == variant).map(|m| one_way(&m.one_way)).collect();
                WakeRow {
                    variant,
                    size,
                    reps: of.len(),
                    p50: spread(&of.iter().map(|l| l.p50).collect::<Vec<_>>()),
                    p99: median(of.iter().map(|l| l.p99).collect()),
                    p999: median(of.iter().map(|l| l.p999).collect()),
                    samples: of.iter().map(|l| l.samples).sum(),
                }
            })
            .collect()
    }

    fn fan_rows(&self) -> Vec<FanRow> {
        keys(&self.fans, |m| (m.size, m.variant))
            .into_iter()
            .map(|(size, variant)| {
                let of: Vec<&FanM> = self.fans.iter().filter(|m| m.size == size && m.variant == variant).collect();
                FanRow {
                    variant,
                    size,
                    reps: of.len(),
                    readers: of.first().map_or(0, |m| m.per_reader.len()),
                    delivered: spread(&of.iter().map(|m| m.delivered()).collect::<Vec<_>>()),
                    slowest: median(of.iter().map(|m| m.per_reader.iter().copied().fold(f64::INFINITY, f64::min)).collect()),
                }
            })
            .collect()
    }

    /// The goals, for the measurements present.
    pub fn goals(&self) -> Vec<Goal> {
        use System::{Floor, Iceoryx2, Shmslot, Uds, Zerodds};
        let poll = |s| Variant::of(s, false);
        let blocking = |s| Variant::of(s, true);
        let ours = poll(Shmslot);
        let mut goals = Vec::new();
        let mut add = |what: String, ratio: f64, limit: f64, at_most: bool| {
            if !ratio.is_nan() {
                goals.push(Goal { what, ratio, limit, at_most });
            }
        };
        for size in [8, 1024] {
            let z = format_size(size);
            let lat = |m: &PairM| m.lat.p50;
            let thr = |m: &PairM| m.msgs;
            add(format!("poll p50 {z}: shmslot / zerodds"), self.pair_ratio(ours, poll(Zerodds), size, lat), 0.7, true);
            add(format!("poll p50 {z}: shmslot / iceoryx2"), self.pair_ratio(ours, poll(Iceoryx2), size, lat), 0.35, true);
            add(format!("poll p50 {z}: shmslot / floor"), self.pair_ratio(ours, poll(Floor), size, lat), 1.15, true);
            add(format!("msgs/s {z}: shmslot / zerodds"), self.pair_ratio(ours, poll(Zerodds), size, thr), 3.0, false);
            add(format!("msgs/s {z}: shmslot / iceoryx2"), self.pair_ratio(ours, poll(Iceoryx2), size, thr), 5.0, false);
            add(format!("blocking p50 {z}: shmslot blocking / shmslot poll"), self.pair_ratio(blocking(Shmslot), ours, size, lat), 2.0, true);
        }
        for size in [64 << 10, 1 << 20] {
            // The best peer of each repetition, whichever it is.
            let peers = |m: &PairM| matches!(m.variant.system, Iceoryx2 | Zerodds | Uds);
            let r = self.pairs.iter().filter(|m| m.variant == ours && m.size == size).filter_map(|m| {
                let best = self.pairs.iter().filter(|o| peers(o) && o.size == size && o.rep == m.rep).map(|o| o.msgs).fold(f64::NAN, f64::max);
                best.is_finite().then(|| m.msgs / best)
            });
            add(format!("msgs/s {} (loan): shmslot / best peer", format_size(size)), median(r.collect()), 1.0, false);
        }
        let wake = |v: Variant, rep: u32| self.wakes.iter().find(|m| m.variant == v && m.rep == rep).map(|m| one_way(&m.one_way).p50);
        let r = self.wakes.iter().filter(|m| m.variant == blocking(Shmslot)).filter_map(|m| wake(blocking(Zerodds), m.rep).map(|z| one_way(&m.one_way).p50 / z));
        add("wake of a parked reader p50: shmslot blocking / zerodds wait".into(), median(r.collect()), 1.0, true);
        for (a, b) in [(ours, poll(Iceoryx2)), (blocking(Shmslot), blocking(Iceoryx2))] {
            for size in keys(&self.fans, |m| (m.size, m.variant)).into_iter().map(|k| k.0).collect::<std::collections::BTreeSet<_>>() {
                let fan = |v: Variant, rep: u32| self.fans.iter().find(|m| m.variant == v && m.size == size && m.rep == rep).map(FanM::delivered);
                let r = self.fans.iter().filter(|m| m.variant == a && m.size == size).filter_map(|m| fan(b, m.rep).map(|o| m.delivered() / o));
                add(format!("fan-out msgs/s {}: {} / {}", format_size(size), a.name(), b.name()), median(r.collect()), 2.0, false);
            }
        }
        goals
    }

    /// The tables, with notes on how to read them, and the goals.
    pub fn tables(&self, reps: u32) -> String {
        let mut s = String::new();
        let w = 8;
        let pairs = self.pair_rows();
        if !pairs.is_empty() {
            let _ = writeln!(
                s,
                "{:<w$} {:<8} {:>7} {:>9} {:>5} {:>9} {:>9} {:>9} {:>5} {:>7} {:>9} {:>10}",
                "system", "mode", "size", "p50", "±", "p99", "p99.9", "msgs/s", "±", "GB/s", "p50/floor", "msgs/floor"
            );
            let mut last = None;
            for r in &pairs {
                if last.is_some_and(|l| l != r.size) {
                    s.push('\n');
                }
                last = Some(r.size);
                let _ = writeln!(
                    s,
                    "{:<w$} {:<8} {:>7} {:>9} {:>5} {:>9} {:>9} {:>9} {:>5} {:>7.3} {:>9} {:>10}",
                    r.variant.system.as_str(),
                    r.variant.mode(),
                    format_size(r.size),
                    fmt_ns(r.p50.median),
                    fmt_spread(r.p50.spread),
                    fmt_ns(r.p99),
                    fmt_ns(r.p999),
                    fmt_rate(r.msgs.median),
                    fmt_spread(r.msgs.spread),
                    r.msgs.median * r.size as f64 / 1e9,
                    fmt_ratio(r.p50_floor),
                    fmt_ratio(r.msgs_floor),
                );
            }
            let _ = writeln!(
                s,
                "\nlatency: one-way = RTT/2 of a pinned ping-pong; throughput: one writer, one reader, queue of 16, every byte read.\n\
                 {}; ± is half the range over the repetitions, relative to the median; ratios are medians of per-repetition ratios.\n",
                if reps == 1 { "1 repetition".to_string() } else { format!("medians of {reps} interleaved repetitions") }
            );
        }
        let wakes = self.wake_rows();
        if !wakes.is_empty() {
            let _ = writeln!(s, "wake of a parked reader (one sample every few ms; one-way, from a shared monotonic clock):");
            let _ = writeln!(s, "{:<w$} {:<8} {:>7} {:>9} {:>5} {:>9} {:>9} {:>8}", "system", "mode", "size", "p50", "±", "p99", "p99.9", "samples");
            for r in &wakes {
                let _ = writeln!(
                    s,
                    "{:<w$} {:<8} {:>7} {:>9} {:>5} {:>9} {:>9} {:>8}",
                    r.variant.system.as_str(),
                    r.variant.mode(),
                    format_size(r.size),
                    fmt_ns(r.p50.median),
                    fmt_spread(r.p50.spread),
                    fmt_ns(r.p99),
                    fmt_ns(r.p999),
                    r.samples
                );
            }
            s.push('\n');
        }
        let fans = self.fan_rows();
        if !fans.is_empty() {
            let _ = writeln!(s, "fan-out (one writer on the parent CPU, the readers on the peer CPU, yielding when idle):");
            let _ = writeln!(s, "{:<w$} {:<8} {:>7} {:>7} {:>10} {:>5} {:>10}", "system", "mode", "size", "readers", "delivered", "±", "slowest");
            let mut last = None;
            for r in &fans {
                if last.is_some_and(|l| l != r.size) {
                    s.push('\n');
                }
                last = Some(r.size);
                let _ = writeln!(
                    s,
                    "{:<w$} {:<8} {:>7} {:>7} {:>10} {:>5} {:>10}",
                    r.variant.system.as_str(),
                    r.variant.mode(),
                    format_size(r.size),
                    r.readers,
                    fmt_rate(r.delivered.median),
                    fmt_spread(r.delivered.spread),
                    fmt_rate(r.slowest)
                );
            }
            let _ = writeln!(s, "\ndelivered: msgs/s summed over the readers; slowest: the slowest reader's msgs/s.\n");
        }
        let goals = self.goals();
        if !goals.is_empty() {
            let _ = writeln!(s, "goals (medians of per-repetition ratios):");
            for g in goals {
                let _ = writeln!(
                    s,
                    "  {:<58} {:>7} {} {:<5} {}",
                    g.what,
                    fmt_ratio(g.ratio),
                    if g.at_most { "<=" } else { ">=" },
                    format!("{}x", g.limit),
                    if g.met() { "met" } else { "MISSED" }
                );
            }
        }
        s
    }

    /// One JSON object per row and per goal, one per line.
    pub fn json_lines(&self) -> String {
        let mut s = String::new();
        let head = |kind: &str, v: Variant, size: usize, reps: usize| {
            format!("{{\"kind\":\"{kind}\",\"system\":\"{}\",\"mode\":\"{}\",\"size\":{size},\"reps\":{reps}", v.system.as_str(), v.mode())
        };
        for r in self.pair_rows() {
            let _ = writeln!(
                s,
                "{},\"p50_ns\":{},\"p50_spread\":{},\"p99_ns\":{},\"p999_ns\":{},\"msgs_per_s\":{},\"msgs_spread\":{},\"gb_per_s\":{},\"p50_vs_floor\":{},\"msgs_vs_floor\":{}}}",
                head("pair", r.variant, r.size, r.reps),
                num(r.p50.median, 1),
                sig(r.p50.spread, 4),
                num(r.p99, 1),
                num(r.p999, 1),
                num(r.msgs.median, 0),
                sig(r.msgs.spread, 4),
                num(r.msgs.median * r.size as f64 / 1e9, 6),
                sig(r.p50_floor, 4),
                sig(r.msgs_floor, 4),
            );
        }
        for r in self.wake_rows() {
            let _ = writeln!(
                s,
                "{},\"p50_ns\":{},\"p50_spread\":{},\"p99_ns\":{},\"p999_ns\":{},\"samples\":{}}}",
                head("wake", r.variant, r.size, r.reps),
                num(r.p50.median, 1),
                sig(r.p50.spread, 4),
                num(r.p99, 1),
                num(r.p999, 1),
                r.samples
            );
        }
        for r in self.fan_rows() {
            let _ = writeln!(
                s,
                "{},\"readers\":{},\"delivered_msgs_per_s\":{},\"delivered_spread\":{},\"slowest_msgs_per_s\":{}}}",
                head("fanout", r.variant, r.size, r.reps),
                r.readers,
                num(r.delivered.median, 0),
                sig(r.delivered.spread, 4),
                num(r.slowest, 0)
            );
        }
        for g in self.goals() {
            let _ = writeln!(
                s,
                "{{\"kind\":\"goal\",\"goal\":\"{}\",\"ratio\":{},\"limit\":{},\"at_most\":{},\"met\":{}}}",
                g.what,
                sig(g.ratio, 4),
                g.limit,
                g.at_most,
                g.met()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p50: f64) -> Latency {
        Latency { p50, p99: p50 * 2.0, p999: p50 * 3.0, samples: 10 }
    }

    fn pair(system: System, blocking: bool, size: usize, rep: u32, p50: f64, msgs: f64) -> PairM {
        PairM { variant: Variant { system, blocking }, size, rep, lat: lat(p50), msgs }
    }

    #[test]
    fn goal_ratios_pair_each_repetition_with_itself() {
        let mut r = Results::default();
        // rep 0: shmslot 100 vs zerodds 200 (0.5); rep 1: 300 vs 400 (0.75).
        r.pairs.push(pair(System::Shmslot, false, 8, 0, 100.0, 9.0));
        r.pairs.push(pair(System::Zerodds, false, 8, 0, 200.0, 3.0));
        r.pairs.push(pair(System::Shmslot, false, 8, 1, 300.0, 6.0));
        r.pairs.push(pair(System::Zerodds, false, 8, 1, 400.0, 1.0));
        let goals = r.goals();
        let g = goals.iter().find(|g| g.what == "poll p50 8 B: shmslot / zerodds").expect("goal present");
        assert!((g.ratio - 0.625).abs() < 1e-9, "median of 0.5 and 0.75: {g:?}");
        assert!(g.met());
        let t = goals.iter().find(|g| g.what == "msgs/s 8 B: shmslot / zerodds").unwrap();
        assert!((t.ratio - 4.5).abs() < 1e-9, "median of 3 and 6: {t:?}");
        assert!(t.met());
        assert!(!goals.iter().any(|g| g.what.contains("iceoryx2")), "no iceoryx2 rows, no iceoryx2 goals");
    }

    #[test]
    fn best_peer_is_taken_per_repetition_and_a_miss_says_so() {
        let mut r = Results::default();
        let size = 64 << 10;
        r.pairs.push(pair(System::Shmslot, false, size, 0, 1.0, 100.0));
        r.pairs.push(pair(System::Iceoryx2, false, size, 0, 1.0, 120.0));
        r.pairs.push(pair(System::Zerodds, true, size, 0, 1.0, 80.0));
        r.pairs.push(pair(System::Floor, false, size, 0, 1.0, 1000.0)); // not a peer
        let g = r.goals().into_iter().find(|g| g.what.starts_with("msgs/s 64 KiB")).unwrap();
        assert!((g.ratio - 100.0 / 120.0).abs() < 1e-9, "{g:?}");
        assert!(!g.met());
        assert!(r.tables(1).contains("MISSED"));
        let json = r.json_lines();
        assert!(json.lines().all(|l| l.starts_with('{') && l.ends_with('}')), "{json}");
        assert!(json.contains("\"kind\":\"goal\"") && json.contains("\"met\":false"), "{json}");
    }

    #[test]
    fn spread_is_half_the_range_over_the_median() {
        let s = spread(&[90.0, 100.0, 110.0]);
        assert_eq!(s.median, 100.0);
        assert!((s.spread - 0.1).abs() < 1e-12);
        assert!(fmt_spread(s.spread) == "±10%");
    }

    #[test]
    fn wake_and_fanout_goals() {
        let mut r = Results::default();
        let v = |system, blocking| Variant { system, blocking };
        r.wakes.push(WakeM { variant: v(System::Shmslot, true), size: 64, rep: 0, one_way: vec![30_000, 40_000, 50_000] });
        r.wakes.push(WakeM { variant: v(System::Zerodds, true), size: 64, rep: 0, one_way: vec![40_000, 50_000, 60_000] });
        r.fans.push(FanM { variant: v(System::Shmslot, false), size: 8, rep: 0, per_reader: vec![1.0, 1.0, 1.0, 1.0] });
        r.fans.push(FanM { variant: v(System::Iceoryx2, false), size: 8, rep: 0, per_reader: vec![0.5; 4] });
        let goals = r.goals();
        let w = goals.iter().find(|g| g.what.starts_with("wake")).unwrap();
        assert!((w.ratio - 0.8).abs() < 1e-9, "{w:?}");
        let f = goals.iter().find(|g| g.what.starts_with("fan-out msgs/s 8 B: shmslot poll")).unwrap();
        assert!((f.ratio - 2.0).abs() < 1e-9 && f.met(), "{f:?}");
        assert!(!goals.iter().any(|g| g.what.contains("event")), "no blocking fan-out rows: {goals:?}");
    }
}
