//! The verdict of `bench soak`: a least-squares slope per node and
//! quantity over the samples after the warm-up, in units per hour, against
//! a threshold per quantity. Pure arithmetic on samples: no I/O.

use std::fmt;

use super::probe::NodeSample;

/// A quantity the verdict judges: each must stop growing after the
/// warm-up, except RocksDB's caches, which are bounded by design and must
/// stay within the node's memory budget instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quantity {
    /// The resident memory beyond RocksDB's block cache and memtables
    /// (those fill up to their bound over hours, which is not a leak; the
    /// bound is [`Quantity::Rocksdb`]'s check).
    Rss,
    /// Open descriptors other than RocksDB's table files (one per table
    /// file: they follow the data, which grows by design).
    Fds,
    Threads,
    /// RocksDB's block cache and memtables: within the memory budget.
    Rocksdb,
    /// Bytes on disk per reading the node has applied: the history grows
    /// with the readings by design, so the bytes themselves always grow;
    /// what must not grow is what each reading costs.
    DiskPerReading,
}

impl Quantity {
    pub const ALL: [Quantity; 5] = [
        Quantity::Rss,
        Quantity::Fds,
        Quantity::Threads,
        Quantity::Rocksdb,
        Quantity::DiskPerReading,
    ];

    /// Its name in flags, tables and JSON.
    pub fn key(self) -> &'static str {
        match self {
            Quantity::Rss => "rss",
            Quantity::Fds => "fds",
            Quantity::Threads => "threads",
            Quantity::Rocksdb => "rocksdb",
            Quantity::DiskPerReading => "disk",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Quantity::Rss | Quantity::Rocksdb => "MB",
            Quantity::Fds => "fds",
            Quantity::Threads => "threads",
            Quantity::DiskPerReading => "B/reading",
        }
    }

    /// The default growth allowed per hour after the warm-up (why each is
    /// what it is: `BenchSoakArgs::max_growth_per_hour`).
    pub fn default_max_per_h(self) -> f64 {
        match self {
            Quantity::Rss => 5.0,
            Quantity::Fds => 5.0,
            Quantity::Threads => 5.0,
            Quantity::Rocksdb => 5.0,
            Quantity::DiskPerReading => 10.0,
        }
    }

    /// Its value in a node's sample; `None` when the sample lacks it.
    pub(super) fn of(self, n: &NodeSample) -> Option<f64> {
        const MB: f64 = 1024.0 * 1024.0;
        match self {
            Quantity::Rss => n
                .rocksdb_bytes
                .map(|caches| (n.rss_kb as f64 * 1024.0 - caches) / MB),
            Quantity::Fds => Some(n.fds.saturating_sub(n.table_fds) as f64),
            Quantity::Threads => Some(n.threads as f64),
            Quantity::Rocksdb => n.rocksdb_bytes.map(|b| b / MB),
            Quantity::DiskPerReading => n
                .revision
                .filter(|&r| r > 0)
                .map(|r| n.disk_bytes as f64 / r as f64),
        }
    }

    /// Whether it is judged against a bound (its peak within the node's
    /// memory budget) rather than by its growth.
    pub fn bounded(self) -> bool {
        self == Quantity::Rocksdb
    }

    fn from_key(key: &str) -> Option<Quantity> {
        Quantity::ALL.into_iter().find(|q| q.key() == key)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `--max-growth-per-hour KIND=N`.
pub(super) fn parse_limit(s: &str) -> Result<(Quantity, f64), String> {
    let kinds = || {
        Quantity::ALL
            .iter()
            .filter(|q| !q.bounded())
            .map(|q| format!("{} ({}/h)", q.key(), q.unit()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KIND=N, where KIND is one of {}", kinds()))?;
    let q = Quantity::from_key(key.trim())
        .filter(|q| !q.bounded())
        .ok_or_else(|| format!("unknown kind {key:?}; one of {}", kinds()))?;
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{key}: {value:?} is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{key}: {v} must be 0 or more"));
    }
    Ok((q, v))
}

/// The thresholds in force: the defaults with the `--max-growth-per-hour`
/// given on top (the last one of a kind wins).
pub(super) fn limits(given: &[(Quantity, f64)]) -> Vec<(Quantity, f64)> {
    Quantity::ALL
        .iter()
        .map(|&q| {
            let v = given
                .iter()
                .rev()
                .find(|(k, _)| *k == q)
                .map_or(q.default_max_per_h(), |(_, v)| *v);
            (q, v)
        })
        .collect()
}

/// Least-squares slope of `points` (seconds, value), per hour; `None`
/// with fewer than two distinct times.
pub(super) fn slope_per_hour(points: &[(f64, f64)]) -> Option<f64> {
    slope(points).map(|s| s * 3600.0)
}

/// Least-squares slope of `points` (x, y); `None` with fewer than two
/// distinct x.
pub(super) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for &(t, v) in points {
        cov += (t - mean_t) * (v - mean_v);
        var += (t - mean_t) * (t - mean_t);
    }
    (var > 0.0).then(|| cov / var)
}

/// The points of one series from `warmup_s` on: the samples the verdict
/// judges.
pub(super) fn after_warmup(points: &[(f64, Option<f64>)], warmup_s: f64) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter(|(t, _)| *t >= warmup_s)
        .filter_map(|&(t, v)| Some((t, v?)))
        .collect()
}

/// One node's quantity over the judged samples.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fit {
    pub node: u64,
    pub quantity: Quantity,
    /// First and last judged values.
    pub first: Option<f64>,
    pub last: Option<f64>,
    pub slope_per_h: Option<f64>,
    /// The largest judged value.
    pub peak: Option<f64>,
    pub points: usize,
    pub max_per_h: f64,
    /// For a [`Quantity::bounded`] one: what its peak must stay within.
    pub bound: Option<f64>,
}

/// Fewer judged points than this make no slope worth a verdict.
pub(super) const MIN_POINTS: usize = 3;

impl Fit {
    pub fn of(
        node: u64,
        quantity: Quantity,
        series: &[(f64, Option<f64>)],
        warmup_s: f64,
        max_per_h: f64,
    ) -> Fit {
        let pts = after_warmup(series, warmup_s);
        Fit {
            node,
            quantity,
            first: pts.first().map(|p| p.1),
            last: pts.last().map(|p| p.1),
            slope_per_h: (pts.len() >= MIN_POINTS)
                .then(|| slope_per_hour(&pts))
                .flatten(),
            peak: pts.iter().map(|p| p.1).reduce(f64::max),
            points: pts.len(),
            max_per_h,
            bound: None,
        }
    }

    /// This fit with the bound its peak must stay within.
    pub fn within(self, bound: Option<f64>) -> Fit {
        Fit { bound, ..self }
    }

    /// Why a bounded quantity fails the run: its peak above the bound, or
    /// no peak or bound to compare.
    fn over_bound(&self) -> Option<String> {
        let (q, unit) = (self.quantity, self.quantity.unit());
        match (self.peak, self.bound) {
            (Some(peak), Some(bound)) if peak > bound => Some(format!(
                "node {}: {q} went past its bound after the warm-up: {peak:.1} {unit} \
                 (the node's memory budget: {bound:.1} {unit})",
                self.node
            )),
            (Some(_), Some(_)) => None,
            _ => Some(format!(
                "node {}: {q} could not be judged: no value or no memory budget in the \
                 node's metrics after the warm-up",
                self.node
            )),
        }
    }

    /// Why this fit fails the run, if it does: a slope above its threshold,
    /// or too few samples to tell.
    pub fn failure(&self) -> Option<String> {
        if self.quantity.bounded() {
            return self.over_bound();
        }
        let (q, unit) = (self.quantity, self.quantity.unit());
        match self.slope_per_h {
            None => Some(format!(
                "node {}: {q} could not be judged: {} samples with a value after the warm-up \
                 (at least {MIN_POINTS} needed)",
                self.node, self.points
            )),
            Some(s) if s > self.max_per_h => Some(format!(
                "node {}: {q} kept growing after the warm-up: {s:+.2} {unit}/h \
                 (threshold {} {unit}/h; {} -> {} over {} samples)",
                self.node,
                self.max_per_h,
                value_text(self.first),
                value_text(self.last),
                self.points
            )),
            Some(_) => None,
        }
    }
}

pub(super) fn value_text(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.1}"))
}

/// Every failing fit's reason, in node then quantity order.
pub(super) fn verdict(fits: &[Fit]) -> Vec<String> {
    fits.iter().filter_map(Fit::failure).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64, every_s: f64, n: usize) -> Vec<(f64, Option<f64>)> {
        (0..n)
            .map(|i| {
                let t = i as f64 * every_s;
                (t, Some(f(t)))
            })
            .collect()
    }

    #[test]
    fn a_linear_series_gives_its_slope_per_hour() {
        // 2 MB per minute: 120 MB/h, whatever the offset.
        let pts: Vec<(f64, f64)> = (0..30)
            .map(|i| (i as f64 * 60.0, 80.0 + 2.0 * i as f64))
            .collect();
        let s = slope_per_hour(&pts).unwrap();
        assert!((s - 120.0).abs() < 1e-9, "{s}");
        let falling: Vec<(f64, f64)> = pts.iter().map(|&(t, v)| (t, -v)).collect();
        assert!((slope_per_hour(&falling).unwrap() + 120.0).abs() < 1e-9);
        assert_eq!(slope_per_hour(&pts[..1]), None);
        assert_eq!(slope_per_hour(&[(5.0, 1.0), (5.0, 2.0)]), None);
    }

    #[test]
    fn a_flat_noisy_series_stays_below_the_threshold() {
        // 30 minutes every 10 s of 100 MB +- 3 MB of deterministic noise
        // (a sawtooth of allocator churn and a pseudo-random wobble).
        let noise = |i: usize| ((i * 7919) % 13) as f64 / 2.0 - 3.0;
        let pts: Vec<(f64, Option<f64>)> = (0..180)
            .map(|i| (i as f64 * 10.0, Some(100.0 + noise(i))))
            .collect();
        let fit = Fit::of(1, Quantity::Rss, &pts, 300.0, 5.0);
        let s = fit.slope_per_h.unwrap();
        assert!(s.abs() < 5.0, "slope {s} MB/h of a flat series");
        assert_eq!(fit.failure(), None);
    }

    #[test]
    fn warmup_samples_are_excluded() {
        // RSS climbs 50 MB during a 5-minute warm-up, then stays flat.
        let pts = series(
            |t| if t < 300.0 { 50.0 + t / 6.0 } else { 100.0 },
            10.0,
            180,
        );
        let judged = Fit::of(2, Quantity::Rss, &pts, 300.0, 5.0);
        assert_eq!(judged.slope_per_h, Some(0.0));
        assert_eq!(judged.points, 150);
        assert_eq!((judged.first, judged.last), (Some(100.0), Some(100.0)));
        // The same series judged from the start grows.
        let whole = Fit::of(2, Quantity::Rss, &pts, 0.0, 5.0);
        assert!(whole.slope_per_h.unwrap() > 5.0);
        // Unknown values are skipped, not taken as zero.
        let mut gaps = pts.clone();
        gaps[100].1 = None;
        assert_eq!(Fit::of(2, Quantity::Rss, &gaps, 300.0, 5.0).points, 149);
    }

    #[test]
    fn a_growing_series_fails_naming_node_quantity_slope_and_threshold() {
        // One fd every 6 minutes: 10 per hour.
        let pts = series(|t| 60.0 + (t / 360.0).floor(), 10.0, 360);
        let ok = Fit::of(1, Quantity::Fds, &series(|_| 60.0, 10.0, 360), 300.0, 5.0);
        let bad = Fit::of(3, Quantity::Fds, &pts, 300.0, 5.0);
        let failures = verdict(&[ok, bad]);
        assert_eq!(failures.len(), 1, "{failures:?}");
        let f = &failures[0];
        assert!(
            f.starts_with("node 3: fds kept growing after the warm-up: +9.9"),
            "{f}"
        );
        assert!(f.contains("(threshold 5 fds/h;"), "{f}");
        // Just above and at the threshold.
        let at = Fit::of(
            1,
            Quantity::Rss,
            &series(|t| t / 720.0, 10.0, 100),
            0.0,
            5.0,
        );
        assert!((at.slope_per_h.unwrap() - 5.0).abs() < 1e-9);
        assert!(Fit {
            max_per_h: 4.99,
            ..at.clone()
        }
        .failure()
        .is_some());
        assert!(Fit {
            max_per_h: 5.01,
            ..at
        }
        .failure()
        .is_none());
    }

    #[test]
    fn too_few_samples_fail_as_unjudged() {
        let pts = series(|_| 1.0, 10.0, 32);
        let f = Fit::of(1, Quantity::Threads, &pts, 300.0, 5.0);
        assert_eq!(f.points, 2);
        assert!(f
            .failure()
            .unwrap()
            .contains("threads could not be judged: 2 samples"));
    }

    #[test]
    fn rocksdb_caches_may_fill_up_to_the_budget_but_not_past_it() {
        // The block cache filling at 60 MB/h for half an hour, from 10 MB.
        let filling = series(|t| 10.0 + t / 60.0, 10.0, 180);
        let fit = Fit::of(1, Quantity::Rocksdb, &filling, 300.0, 5.0);
        assert!(fit.slope_per_h.unwrap() > 50.0);
        assert_eq!(fit.peak, Some(10.0 + 1790.0 / 60.0));
        assert_eq!(fit.clone().within(Some(96.0)).failure(), None);
        let over = fit.clone().within(Some(32.0)).failure().unwrap();
        assert!(
            over.contains("node 1: rocksdb went past its bound") && over.contains("32.0 MB"),
            "{over}"
        );
        let unknown = fit.within(None).failure().unwrap();
        assert!(unknown.contains("could not be judged"), "{unknown}");
        assert!(parse_limit("rocksdb=5")
            .unwrap_err()
            .contains("unknown kind"));
    }

    #[test]
    fn rss_and_fds_leave_out_what_is_bounded_or_follows_the_data() {
        let n = NodeSample {
            rss_kb: 100 * 1024,
            rocksdb_bytes: Some(30.0 * 1024.0 * 1024.0),
            fds: 90,
            table_fds: 25,
            ..Default::default()
        };
        assert_eq!(Quantity::Rss.of(&n), Some(70.0));
        assert_eq!(Quantity::Fds.of(&n), Some(65.0));
        // Without the node's metrics, its memory beyond the caches is unknown.
        let unknown = NodeSample {
            rocksdb_bytes: None,
            ..n
        };
        assert_eq!(Quantity::Rss.of(&unknown), None);
    }

    #[test]
    fn disk_is_judged_per_reading() {
        let n = NodeSample {
            disk_bytes: 3_000_000,
            revision: Some(10_000),
            ..Default::default()
        };
        assert_eq!(Quantity::DiskPerReading.of(&n), Some(300.0));
        let none = NodeSample {
            revision: Some(0),
            ..n.clone()
        };
        assert_eq!(Quantity::DiskPerReading.of(&none), None);
    }

    #[test]
    fn limits_take_the_flags_over_the_defaults() {
        assert_eq!(parse_limit("rss=2.5"), Ok((Quantity::Rss, 2.5)));
        assert_eq!(
            parse_limit(" disk = 1"),
            Ok((Quantity::DiskPerReading, 1.0))
        );
        assert!(parse_limit("heap=1").unwrap_err().contains("unknown kind"));
        assert!(parse_limit("rss").unwrap_err().contains("KIND=N"));
        assert!(parse_limit("fds=-1").is_err());
        let l = limits(&[(Quantity::Fds, 1.0), (Quantity::Fds, 2.0)]);
        assert_eq!(l.len(), 5);
        assert_eq!(l[1], (Quantity::Fds, 2.0));
        assert_eq!(l[0], (Quantity::Rss, Quantity::Rss.default_max_per_h()));
    }
}
