//! The verdict of `bench soak`: a least-squares slope per node and
//! quantity, in units per hour, against a threshold per quantity, over the
//! samples after the warm-up; RSS beyond RocksDB's caches only over those
//! after the caches were full ([`rss_fit`]), and RocksDB's caches against
//! their bound. Why: `super`'s doc comment. Pure arithmetic on samples: no
//! I/O.

use std::fmt;

use super::probe::NodeSample;

/// A quantity the verdict judges: each must stop growing after the
/// warm-up, except RocksDB's caches, which are bounded by design and must
/// stay within the node's memory budget instead, and RSS, judged only once
/// those caches are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quantity {
    /// The heap beyond RocksDB's caches: the bytes jemalloc counts as
    /// allocated (Rust's and RocksDB's C++ alike) less the block cache and
    /// memtables. The leak signal: a leak of either language grows it,
    /// while the caches filling up to their bound grow it only by
    /// jemalloc's rounding of their allocations, which it may
    /// ([`CACHE_SLACK`]).
    Heap,
    /// The resident memory beyond RocksDB's block cache and memtables.
    /// Those fill up to their bound over hours, which is not a leak (the
    /// bound is [`Quantity::Rocksdb`]'s check), and the allocator's
    /// overhead on their allocations (slabs, dirty pages) follows them
    /// uncounted: so it is judged only over the samples after the caches
    /// were full ([`rss_fit`]).
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
    pub const ALL: [Quantity; 6] = [
        Quantity::Heap,
        Quantity::Rss,
        Quantity::Fds,
        Quantity::Threads,
        Quantity::Rocksdb,
        Quantity::DiskPerReading,
    ];

    /// Its name in flags, tables and JSON.
    pub fn key(self) -> &'static str {
        match self {
            Quantity::Heap => "heap",
            Quantity::Rss => "rss",
            Quantity::Fds => "fds",
            Quantity::Threads => "threads",
            Quantity::Rocksdb => "rocksdb",
            Quantity::DiskPerReading => "disk",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Quantity::Heap | Quantity::Rss | Quantity::Rocksdb => "MB",
            Quantity::Fds => "fds",
            Quantity::Threads => "threads",
            Quantity::DiskPerReading => "B/reading",
        }
    }

    /// The default growth allowed per hour after the warm-up (why each is
    /// what it is: `BenchSoakArgs::max_growth_per_hour`).
    pub fn default_max_per_h(self) -> f64 {
        match self {
            Quantity::Heap => 5.0,
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
            Quantity::Heap => Some((n.heap_allocated? - n.rocksdb_bytes?) / MB),
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

/// Which samples of a quantity a fit judges, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Basis {
    /// Its slope over the samples after the warm-up (or, bounded, its
    /// peak over them against the bound).
    AfterWarmup,
    /// [`Quantity::Heap`] of a node that exports no `heap_allocated` (built
    /// without jemalloc): its RSS beyond the caches, judged in its place
    /// after the warm-up. That also grows while the caches fill.
    RssForHeap,
    /// [`Quantity::Rss`]: its slope over the samples from `at_s`, when the
    /// caches were full (or the warm-up's end, if later).
    CachesFull { at_s: f64 },
    /// [`Quantity::Rss`]: reported (its slope after the warm-up), not
    /// judged: the caches were full for less than [`MIN_FULL_S`] before the
    /// end (from `at_s`: the first sample within [`FULL_WITHIN`] of their
    /// peak).
    CachesFilling { at_s: Option<f64> },
}

impl Basis {
    /// Its name in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Basis::AfterWarmup => "after_warmup",
            Basis::RssForHeap => "rss_for_heap",
            Basis::CachesFull { .. } => "caches_full",
            Basis::CachesFilling { .. } => "caches_filling",
        }
    }
}

/// One node's quantity over the judged samples.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fit {
    pub node: u64,
    pub quantity: Quantity,
    pub basis: Basis,
    /// The first sample time judged (seconds since the first sample).
    pub from_s: f64,
    /// First and last judged values.
    pub first: Option<f64>,
    pub last: Option<f64>,
    pub slope_per_h: Option<f64>,
    /// The largest judged value.
    pub peak: Option<f64>,
    pub points: usize,
    pub max_per_h: f64,
    /// Growth allowed on top of `max_per_h`: for [`Quantity::Heap`],
    /// [`CACHE_SLACK`] of the caches' growth over the same samples.
    pub allowance_per_h: f64,
    /// For a [`Quantity::bounded`] one: what its peak must stay within.
    pub bound: Option<f64>,
}

/// Fewer judged points than this make no slope worth a verdict.
pub(super) const MIN_POINTS: usize = 3;

/// RocksDB's caches count as full from the first sample within this
/// fraction of their peak over the run: from there on their high-water
/// mark grows by at most that much.
pub(super) const FULL_WITHIN: f64 = 0.05;

/// What jemalloc allocates for RocksDB's caches beyond what their counters
/// say, at most, as a fraction of them: RocksDB charges a block the bytes
/// it asked for (it is built without `ROCKSDB_MALLOC_USABLE_SIZE`), and
/// jemalloc rounds each request up to its size class, four per doubling,
/// so by less than a quarter (a data block of just over 4 KB, the usual
/// case, takes 5 KB; a memtable's 576 KB arena block 640 KB). The heap
/// beyond the caches may grow by this much of the caches' growth: in the
/// default half-hour run it grew by 0.09-0.11 of it (+6.3-7.7 MB/h while
/// the caches grew +62-68 MB/h; fitted against the caches, no trend was
/// left over time).
pub(super) const CACHE_SLACK: f64 = 0.25;

/// RSS beyond the caches is judged only over at least this long with the
/// caches full (seconds): over less its slope is mostly the allocator's
/// wobble. RSS beyond the caches of a 32 MiB node with its caches full
/// ranged over 10 MB (36.7-47.1); taken as noise of 2.5 MB standard
/// deviation sampled every 10 s, a flat series' slope scatters by about
/// 4 MB/h (one standard error) over 15 minutes, 20 MB/h over 5.
pub(super) const MIN_FULL_S: f64 = 15.0 * 60.0;

impl Fit {
    /// `quantity`'s fit over the points of `series` from `from_s` on, as
    /// judged after the warm-up.
    pub fn of(
        node: u64,
        quantity: Quantity,
        series: &[(f64, Option<f64>)],
        from_s: f64,
        max_per_h: f64,
    ) -> Fit {
        let pts = after_warmup(series, from_s);
        Fit {
            node,
            quantity,
            basis: Basis::AfterWarmup,
            from_s,
            first: pts.first().map(|p| p.1),
            last: pts.last().map(|p| p.1),
            slope_per_h: (pts.len() >= MIN_POINTS)
                .then(|| slope_per_hour(&pts))
                .flatten(),
            peak: pts.iter().map(|p| p.1).reduce(f64::max),
            points: pts.len(),
            max_per_h,
            allowance_per_h: 0.0,
            bound: None,
        }
    }

    /// This fit with the bound its peak must stay within.
    pub fn within(self, bound: Option<f64>) -> Fit {
        Fit { bound, ..self }
    }

    fn on(self, basis: Basis) -> Fit {
        Fit { basis, ..self }
    }

    /// Whether the verdict judges it (else it is only reported).
    pub fn judged(&self) -> bool {
        !matches!(self.basis, Basis::CachesFilling { .. })
    }

    /// What was judged, for tables: `heap`, or `rss for heap` when RSS was
    /// judged in the heap's place.
    pub fn label(&self) -> String {
        match self.basis {
            Basis::RssForHeap => format!("rss for {}", self.quantity),
            _ => self.quantity.to_string(),
        }
    }

    /// Which samples were judged, for messages: `after the warm-up`, `once
    /// RocksDB's caches were full (0:12:30)`.
    pub fn span_text(&self) -> String {
        match self.basis {
            Basis::CachesFull { at_s } => format!(
                "once RocksDB's caches were full (from {})",
                super::clock(at_s.max(self.from_s))
            ),
            _ => "after the warm-up".into(),
        }
    }

    /// `5 MB/h`, or `5 MB/h + 21.0 for the caches' slack`.
    pub fn threshold_text(&self) -> String {
        let unit = self.quantity.unit();
        match self.allowance_per_h {
            a if a > 0.0 => format!("{} {unit}/h + {a:.1} for the caches' slack", self.max_per_h),
            _ => format!("{} {unit}/h", self.max_per_h),
        }
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
    /// or too few samples to tell. One only reported fails nothing.
    pub fn failure(&self) -> Option<String> {
        if !self.judged() {
            return None;
        }
        if self.quantity.bounded() {
            return self.over_bound();
        }
        let unit = self.quantity.unit();
        let what = match self.basis {
            Basis::RssForHeap => format!(
                "rss beyond RocksDB's caches (judged for {}: the node exports no heap_allocated)",
                self.quantity
            ),
            _ => self.quantity.to_string(),
        };
        match self.slope_per_h {
            None => Some(format!(
                "node {}: {what} could not be judged: {} samples with a value {} \
                 (at least {MIN_POINTS} needed)",
                self.node,
                self.points,
                self.span_text()
            )),
            Some(s) if s > self.max_per_h + self.allowance_per_h => Some(format!(
                "node {}: {what} kept growing {}: {s:+.2} {unit}/h \
                 (threshold {}; {} -> {} over {} samples)",
                self.node,
                self.span_text(),
                self.threshold_text(),
                value_text(self.first),
                value_text(self.last),
                self.points
            )),
            Some(_) => None,
        }
    }
}

/// When RocksDB's caches (`caches`: MB at every sample of the run) were
/// full: the time of the first sample within [`FULL_WITHIN`] of their peak
/// over the run. `None` without any value.
///
/// Still filling at the end, they are "full" only over the last few
/// samples (the peak is the last one), which [`MIN_FULL_S`] leaves out.
/// Once full, the memtables may still empty at a flush and fill again: the
/// high-water mark, not each value, is what must have stopped growing.
pub(super) fn caches_full_at(caches: &[(f64, Option<f64>)]) -> Option<f64> {
    let peak = caches.iter().filter_map(|p| p.1).reduce(f64::max)?;
    caches
        .iter()
        .find(|(_, v)| v.is_some_and(|v| v >= peak * (1.0 - FULL_WITHIN)))
        .map(|p| p.0)
}

/// RSS beyond the caches (`rss`), judged by its slope over the samples
/// after both the warm-up and the caches' filling ([`caches_full_at`] of
/// `caches`) when those span at least [`MIN_FULL_S`]; else reported (its
/// slope after the warm-up) and not judged.
pub(super) fn rss_fit(
    node: u64,
    rss: &[(f64, Option<f64>)],
    caches: &[(f64, Option<f64>)],
    warmup_s: f64,
    max_per_h: f64,
) -> Fit {
    let full_at = caches_full_at(caches);
    let end_s = rss
        .iter()
        .rev()
        .find(|p| p.1.is_some())
        .map_or(0.0, |p| p.0);
    if let Some(at_s) = full_at {
        let from_s = at_s.max(warmup_s);
        let fit = Fit::of(node, Quantity::Rss, rss, from_s, max_per_h);
        if end_s - from_s >= MIN_FULL_S && fit.points >= MIN_POINTS {
            return fit.on(Basis::CachesFull { at_s });
        }
    }
    Fit::of(node, Quantity::Rss, rss, warmup_s, max_per_h)
        .on(Basis::CachesFilling { at_s: full_at })
}

/// Every fit of one node, in the order of `limits` (the quantities and
/// their thresholds); `series(q)` is the node's value of `q` at every
/// sample of the run, warm-up included; `budget_mb` its memory budget.
/// [`Quantity::Heap`] falls back to RSS beyond the caches
/// ([`Basis::RssForHeap`]) when the node exported no `heap_allocated`.
pub(super) fn node_fits(
    node: u64,
    series: impl Fn(Quantity) -> Vec<(f64, Option<f64>)>,
    warmup_s: f64,
    limits: &[(Quantity, f64)],
    budget_mb: Option<f64>,
) -> Vec<Fit> {
    limits
        .iter()
        .map(|&(q, max)| match q {
            Quantity::Heap => {
                let heap = series(q);
                if heap.iter().any(|p| p.1.is_some()) {
                    let caches = Fit::of(
                        node,
                        Quantity::Rocksdb,
                        &series(Quantity::Rocksdb),
                        warmup_s,
                        max,
                    );
                    Fit {
                        allowance_per_h: CACHE_SLACK * caches.slope_per_h.unwrap_or(0.0).max(0.0),
                        ..Fit::of(node, q, &heap, warmup_s, max)
                    }
                } else {
                    Fit::of(node, q, &series(Quantity::Rss), warmup_s, max).on(Basis::RssForHeap)
                }
            }
            Quantity::Rss => rss_fit(node, &series(q), &series(Quantity::Rocksdb), warmup_s, max),
            Quantity::Rocksdb => Fit::of(node, q, &series(q), warmup_s, max).within(budget_mb),
            _ => Fit::of(node, q, &series(q), warmup_s, max),
        })
        .collect()
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
        // Built without jemalloc: no heap.
        assert_eq!(Quantity::Heap.of(&n), None);
        let heap = NodeSample {
            heap_allocated: Some(38.0 * 1024.0 * 1024.0),
            ..n.clone()
        };
        assert_eq!(Quantity::Heap.of(&heap), Some(8.0));
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
        assert_eq!(parse_limit("heap=3"), Ok((Quantity::Heap, 3.0)));
        assert!(parse_limit("leak=1").unwrap_err().contains("unknown kind"));
        assert!(parse_limit("rss").unwrap_err().contains("KIND=N"));
        assert!(parse_limit("fds=-1").is_err());
        let l = limits(&[(Quantity::Fds, 1.0), (Quantity::Fds, 2.0)]);
        assert_eq!(l.len(), 6);
        assert_eq!(l[2], (Quantity::Fds, 2.0));
        assert_eq!(l[1], (Quantity::Rss, Quantity::Rss.default_max_per_h()));
    }

    /// Half an hour sampled every 10 s, as `bench soak`'s defaults.
    const RUN: usize = 181;
    const WARMUP_S: f64 = 300.0;

    /// The fits of node 1 from its heap, RSS and caches (MB, each a
    /// function of the seconds since the first sample); fds, threads and
    /// disk per reading flat. Default thresholds, a 96 MB budget.
    fn fits_of(
        heap: Option<&dyn Fn(f64) -> f64>,
        rss: &dyn Fn(f64) -> f64,
        caches: &dyn Fn(f64) -> f64,
    ) -> Vec<Fit> {
        let of = |q: Quantity| match q {
            Quantity::Heap => match heap {
                Some(h) => series(h, 10.0, RUN),
                None => series(|_| 0.0, 10.0, RUN)
                    .into_iter()
                    .map(|(t, _)| (t, None))
                    .collect(),
            },
            Quantity::Rss => series(rss, 10.0, RUN),
            Quantity::Rocksdb => series(caches, 10.0, RUN),
            _ => series(|_| 40.0, 10.0, RUN),
        };
        node_fits(1, of, WARMUP_S, &limits(&[]), Some(96.0))
    }

    fn fit(fits: &[Fit], q: Quantity) -> &Fit {
        fits.iter().find(|f| f.quantity == q).unwrap()
    }

    /// The default run as measured: the caches fill from 10 to 52 MB over
    /// the half hour, and RSS beyond them follows (the allocator's
    /// overhead on their allocations), +27 MB/h.
    fn filling(t: f64) -> f64 {
        10.0 + 42.0 * t / 1800.0
    }
    fn rss_following(t: f64) -> f64 {
        30.0 + 27.0 * t / 3600.0
    }
    /// Allocated beyond the caches: flat at 6-9 MB (a flush's sawtooth).
    fn flat_heap(t: f64) -> f64 {
        6.0 + (t / 10.0) % 4.0
    }

    #[test]
    fn a_flat_heap_with_filling_caches_passes_and_rss_is_reported_not_judged() {
        let fits = fits_of(Some(&flat_heap), &rss_following, &filling);
        assert_eq!(verdict(&fits), Vec::<String>::new());
        let heap = fit(&fits, Quantity::Heap);
        assert_eq!(heap.basis, Basis::AfterWarmup);
        assert!(
            heap.judged() && heap.slope_per_h.unwrap().abs() < 1.0,
            "{heap:?}"
        );
        // A quarter of the caches' 84 MB/h.
        assert!((heap.allowance_per_h - 21.0).abs() < 0.1, "{heap:?}");
        // The heap beyond the caches following them by 15% (jemalloc's
        // rounding of their blocks, as measured): +12.6 MB/h, allowed.
        let slack = |t: f64| flat_heap(t) + 0.15 * filling(t);
        let with_slack = fits_of(Some(&slack), &rss_following, &filling);
        assert_eq!(verdict(&with_slack), Vec::<String>::new());
        let heap_slack = fit(&with_slack, Quantity::Heap).clone();
        assert!(
            (heap_slack.slope_per_h.unwrap() - 12.6).abs() < 0.5,
            "{heap_slack:?}"
        );
        let strict = Fit {
            allowance_per_h: 0.0,
            ..heap_slack
        };
        assert!(strict.failure().is_some());
        let rss = fit(&fits, Quantity::Rss);
        // Reported with its slope after the warm-up, not judged: the caches
        // reached 95% of their peak only in the last two minutes (at 1690 s).
        assert!(!rss.judged(), "{rss:?}");
        let Basis::CachesFilling { at_s: Some(at_s) } = rss.basis else {
            panic!("{:?}", rss.basis)
        };
        assert_eq!(at_s, 1690.0);
        assert!((rss.slope_per_h.unwrap() - 27.0).abs() < 0.1, "{rss:?}");
        assert_eq!(rss.from_s, WARMUP_S);
        // Judged by its slope after the warm-up, as before, it would fail.
        assert!(Fit::of(
            1,
            Quantity::Rss,
            &series(rss_following, 10.0, RUN),
            WARMUP_S,
            5.0
        )
        .failure()
        .is_some());
    }

    #[test]
    fn a_heap_growing_30_mb_an_hour_fails() {
        let leak = |t: f64| flat_heap(t) + 30.0 * t / 3600.0;
        let full = |_: f64| 19.0;
        let cases: [(&dyn Fn(f64) -> f64, &str); 2] = [
            (&filling, "(threshold 5 MB/h + 21.0 for the caches' slack;"),
            (&full, "(threshold 5 MB/h;"),
        ];
        for (caches, threshold) in cases {
            let fits = fits_of(Some(&leak), &|t| rss_following(t) + leak(t), caches);
            let failures = verdict(&fits);
            assert!(!failures.is_empty());
            let slope: f64 = failures[0]
                .strip_prefix("node 1: heap kept growing after the warm-up: +")
                .and_then(|rest| rest.split(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("{failures:?}"));
            // The flush's sawtooth tilts it a little.
            assert!((slope - 30.0).abs() < 0.5, "{slope}");
            assert!(failures[0].contains(threshold), "{}", failures[0]);
        }
        // 4 MB/h stays below the threshold; 6 MB/h with the caches full
        // does not.
        let slow = |t: f64| flat_heap(t) + 4.0 * t / 3600.0;
        assert_eq!(
            verdict(&fits_of(Some(&slow), &rss_following, &filling)),
            Vec::<String>::new()
        );
        let six = |t: f64| flat_heap(t) + 6.0 * t / 3600.0;
        let failures = verdict(&fits_of(Some(&six), &|_| 42.0, &full));
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with("node 1: heap kept growing"),
            "{failures:?}"
        );
    }

    /// At a 32 MiB budget: the caches fill to 17 MB in ten minutes, the
    /// block cache takes its last 2 MB at once, then the memtables empty
    /// at a flush and fill again (down to 14 MB).
    fn full_at_600(t: f64) -> f64 {
        if t < 600.0 {
            5.0 + 12.0 * t / 600.0
        } else {
            19.0 - 5.0 * ((t - 600.0) % 120.0) / 120.0
        }
    }

    #[test]
    fn rss_growth_after_the_caches_are_full_fails() {
        // RSS beyond the caches rises with them, then stays at 42 MB: judged
        // from the tenth minute, flat, ok.
        let settled = |t: f64| 30.0 + 12.0 * (t.min(600.0) / 600.0) + (t / 10.0) % 3.0;
        let fits = fits_of(Some(&flat_heap), &settled, &full_at_600);
        assert_eq!(verdict(&fits), Vec::<String>::new());
        let rss = fit(&fits, Quantity::Rss);
        assert_eq!(rss.basis, Basis::CachesFull { at_s: 600.0 });
        assert_eq!((rss.from_s, rss.points), (600.0, 121));
        assert!(rss.slope_per_h.unwrap().abs() < 1.0, "{rss:?}");
        // The same, growing 20 MB/h from there (memory the heap does not
        // see: thread stacks, RocksDB's own mappings): fails, once full.
        let leaking = |t: f64| settled(t) + 20.0 * (t - 600.0).max(0.0) / 3600.0;
        let failures = verdict(&fits_of(Some(&flat_heap), &leaking, &full_at_600));
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with(
                "node 1: rss kept growing once RocksDB's caches were full (from 0:10:00): +20.0"
            ),
            "{}",
            failures[0]
        );
        // A warm-up longer than the filling: judged from its end.
        let of = |q: Quantity| match q {
            Quantity::Rocksdb => series(full_at_600, 10.0, RUN),
            _ => series(leaking, 10.0, RUN),
        };
        let late = rss_fit(1, &of(Quantity::Rss), &of(Quantity::Rocksdb), 900.0, 5.0);
        assert_eq!((late.from_s, late.points), (900.0, 91));
        assert!(late.failure().unwrap().contains("(from 0:15:00)"));
    }

    #[test]
    fn the_caches_must_be_full_for_a_quarter_hour_before_rss_is_judged() {
        // Full from the 20th minute of 30: ten minutes, not judged.
        let late = |t: f64| full_at_600(t - 600.0).max(5.0);
        let f = rss_fit(
            1,
            &series(|t| 40.0 + t / 60.0, 10.0, RUN),
            &series(late, 10.0, RUN),
            WARMUP_S,
            5.0,
        );
        assert_eq!(f.basis, Basis::CachesFilling { at_s: Some(1200.0) });
        assert_eq!(f.failure(), None);
        assert_eq!(caches_full_at(&series(late, 10.0, RUN)), Some(1200.0));
        assert_eq!(caches_full_at(&[(0.0, None)]), None);
        // Full from the 15th: judged, and 60 MB/h fails.
        let at_900 = |t: f64| full_at_600(t - 300.0).max(5.0);
        let f = rss_fit(
            1,
            &series(|t| 40.0 + t / 60.0, 10.0, RUN),
            &series(at_900, 10.0, RUN),
            WARMUP_S,
            5.0,
        );
        assert_eq!(f.basis, Basis::CachesFull { at_s: 900.0 });
        assert!(f.failure().is_some());
    }

    #[test]
    fn without_heap_allocated_rss_is_judged_in_its_place_and_says_so() {
        let fits = fits_of(None, &rss_following, &filling);
        let heap = fit(&fits, Quantity::Heap);
        assert_eq!(heap.basis, Basis::RssForHeap);
        assert_eq!(heap.label(), "rss for heap");
        let failures = verdict(&fits);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with(
                "node 1: rss beyond RocksDB's caches (judged for heap: the node exports no \
                 heap_allocated) kept growing after the warm-up: +27.0"
            ),
            "{}",
            failures[0]
        );
        // Flat, it passes.
        assert_eq!(
            verdict(&fits_of(None, &|_| 42.0, &filling)),
            Vec::<String>::new()
        );
    }
}
