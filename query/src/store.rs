//! What the engine reads, as two traits the store implements.
//!
//! [`Catalog`] is the small part: the tag and device configuration, which
//! node polls each device, and each tag's current reading. [`History`] is
//! the large part, and the only way the engine (and the server's `History`
//! call) reaches stored readings: one scan of one tag between two
//! `(ts, revision)` positions, forward or backward, with a limit and a
//! filter the store may apply while reading. The engine builds everything
//! else (merging tags, ordering, aggregation) on top of that scan, so a
//! different history store only has to provide it. A store that keeps
//! summaries of blocks of readings may also answer [`History::summarize`]
//! (readings summarised by time bucket) from whole blocks' summaries; the
//! default folds a scan.

use std::collections::BTreeMap;

pub use bifrost_chunk::{Edge, Summary};

use crate::model::{Assignment, AuditRecord, Device, QualityLevel, Reading, Tag};

/// A failure of the store (not the query's fault), as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// The configuration and current values a query may read.
pub trait Catalog {
    /// Tags whose name starts with `prefix`, in name order.
    fn tags_with_prefix(&self, prefix: &str) -> Vec<Tag>;
    /// One tag by exact name.
    fn tag(&self, name: &str) -> Option<Tag>;
    /// The current (newest by `(ts, revision)`) reading of each of `tags`,
    /// in the order given; `None` for a tag without one.
    fn current_many(&self, tags: &[Tag]) -> Result<Vec<Option<Reading>>, StoreError>;
    /// Every device, in name order.
    fn devices(&self) -> Vec<Device>;
    /// Which node polls each device, by device name.
    fn assignments(&self) -> BTreeMap<String, Assignment>;
    /// The audit records held, oldest first (none for a reader who may not
    /// see them).
    fn audit(&self) -> Vec<AuditRecord>;
}

/// A place in one tag's history: readings are ordered by `(ts, revision)`,
/// and revisions are unique, so a position names at most one reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub ts_us: i64,
    pub revision: u64,
}

impl Position {
    /// Before every reading at `ts_us` (revisions start at 1).
    pub fn first_at(ts_us: i64) -> Position {
        Position { ts_us, revision: 0 }
    }

    /// After every reading at `ts_us`.
    pub fn last_at(ts_us: i64) -> Position {
        Position {
            ts_us,
            revision: u64::MAX,
        }
    }

    /// The position of `r`.
    pub fn of(r: &Reading) -> Position {
        Position {
            ts_us: r.ts_us,
            revision: r.revision,
        }
    }

    /// The next position, if there is one.
    pub fn next(self) -> Option<Position> {
        Some(match self.revision.checked_add(1) {
            Some(revision) => Position { revision, ..self },
            None => Position::first_at(self.ts_us.checked_add(1)?),
        })
    }

    /// The previous position, if there is one.
    pub fn prev(self) -> Option<Position> {
        Some(match self.revision.checked_sub(1) {
            Some(revision) => Position { revision, ..self },
            None => Position::last_at(self.ts_us.checked_sub(1)?),
        })
    }
}

/// Which readings a scan hands over; the others are read and skipped.
/// Stores that keep statistics per block may skip whole blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadingFilter {
    /// Admitted quality levels: good, uncertain, bad.
    pub levels: [bool; 3],
    /// Skip readings without a value.
    pub needs_value: bool,
}

impl ReadingFilter {
    /// Every reading.
    pub const ALL: ReadingFilter = ReadingFilter {
        levels: [true; 3],
        needs_value: false,
    };

    /// Whether `r` passes.
    pub fn admits(&self, r: &Reading) -> bool {
        let level = match r.quality.level {
            QualityLevel::Good => 0,
            QualityLevel::Uncertain => 1,
            QualityLevel::Bad => 2,
        };
        self.levels[level] && (r.value.is_some() || !self.needs_value)
    }
}

/// One scan of one tag's history.
#[derive(Clone, Copy, Debug)]
pub struct ScanRequest<'a> {
    pub tag: &'a Tag,
    /// First position in range (inclusive).
    pub from: Position,
    /// Last position in range (inclusive).
    pub to: Position,
    /// Newest first: by `(ts, revision)` descending. A backward scan starts
    /// with one seek to `to`, so "the last reading at or before T" costs one
    /// step however long the history before T is.
    pub backward: bool,
    /// Most readings to hand over; `None` for all.
    pub limit: Option<u64>,
    /// Most readings to read (handed over or skipped by `filter`); the scan
    /// stops there and the caller treats it as over its budget.
    pub max_read: Option<u64>,
    pub filter: ReadingFilter,
}

impl<'a> ScanRequest<'a> {
    /// Every reading of `tag` with `from_us <= ts <= to_us`, oldest first.
    pub fn between(tag: &'a Tag, from_us: i64, to_us: i64) -> ScanRequest<'a> {
        ScanRequest {
            tag,
            from: Position::first_at(from_us),
            to: Position::last_at(to_us),
            backward: false,
            limit: None,
            max_read: None,
            filter: ReadingFilter::ALL,
        }
    }
}

/// What a scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Readings read, including those the filter skipped.
    pub read: u64,
    /// Readings handed to `visit`.
    pub visited: u64,
}

/// Where the `width_us`-wide bucket holding `ts_us` starts
/// (`time_bucket`): buckets are aligned to the epoch. `None` when the start
/// is before the earliest time there is.
pub fn bucket_start(ts_us: i64, width_us: i64) -> Option<i64> {
    ts_us.div_euclid(width_us).checked_mul(width_us)
}

/// One tag's readings between two times, summarised by time bucket.
#[derive(Clone, Copy, Debug)]
pub struct SummaryRequest<'a> {
    pub tag: &'a Tag,
    /// First time in range (inclusive).
    pub from_us: i64,
    /// Last time in range (inclusive).
    pub to_us: i64,
    /// The buckets' width ([`bucket_start`]); `None` for one summary of the
    /// whole range.
    pub width_us: Option<i64>,
    /// The store may stop once it has read this many readings (the caller
    /// then fails the query as over its budget, see `ScanRequest::max_read`).
    pub max_read: Option<u64>,
}

impl SummaryRequest<'_> {
    /// The bucket `ts_us` falls in: its start, or `None` when the start is
    /// out of range or the request has no buckets. Never decreases as
    /// `ts_us` grows, so readings between two of one bucket are in it too.
    pub fn bucket_of(&self, ts_us: i64) -> Option<i64> {
        self.width_us.and_then(|w| bucket_start(ts_us, w))
    }
}

/// Summaries by bucket ([`SummaryRequest::bucket_of`]), in bucket order,
/// each of at least one reading.
pub type BucketSummaries = Vec<(Option<i64>, Summary)>;

/// Tag histories.
pub trait History {
    /// Hands the readings of `req` to `visit`, in `req`'s direction, until
    /// `visit` returns false or a limit is reached.
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        visit: &mut dyn FnMut(Reading) -> bool,
    ) -> Result<ScanOutcome, StoreError>;

    /// The summary of each bucket of `req`'s readings, of every quality
    /// (their counts add up to the readings read, and each says which of
    /// them are usable). Summaries must count their floats (`floats` is
    /// `Some`). The default folds a [`History::scan`]; a store that keeps
    /// summaries of blocks of readings merges a block's summary whole when
    /// the block lies in the range and in one bucket.
    fn summarize(&self, req: &SummaryRequest<'_>) -> Result<BucketSummaries, StoreError> {
        let mut buckets: BTreeMap<Option<i64>, Summary> = BTreeMap::new();
        let scan = ScanRequest {
            max_read: req.max_read,
            ..ScanRequest::between(req.tag, req.from_us, req.to_us)
        };
        self.scan(&scan, &mut |r| {
            let value = r.value.as_ref();
            let bucket = buckets.entry(req.bucket_of(r.ts_us)).or_default();
            bucket.add_reading(r.ts_us, r.revision, r.quality.level, value);
            true
        })?;
        Ok(buckets.into_iter().collect())
    }
}

/// One member of the cluster, as the Raft layer sees it (rows of `cluster`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    pub address: String,
    /// A voter; a member that is not is a learner.
    pub voter: bool,
    pub is_leader: bool,
}

/// The cluster as the caller knows it (from Raft metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub members: Vec<MemberInfo>,
}

/// Runs `req` over readings already in `(ts, revision)` order: the common
/// part of every [`History`] implementation that walks its readings one by
/// one (`readings` yields them in the scan's direction, from its start).
pub fn scan_ordered(
    req: &ScanRequest<'_>,
    readings: impl Iterator<Item = Result<Reading, StoreError>>,
    visit: &mut dyn FnMut(Reading) -> bool,
) -> Result<ScanOutcome, StoreError> {
    let mut out = ScanOutcome::default();
    if req.from > req.to || req.limit == Some(0) {
        return Ok(out);
    }
    for r in readings {
        let r = r?;
        let pos = Position::of(&r);
        if pos < req.from || pos > req.to {
            break;
        }
        out.read += 1;
        if req.filter.admits(&r) {
            out.visited += 1;
            if !visit(r) || req.limit == Some(out.visited) {
                break;
            }
        }
        if req.max_read == Some(out.read) {
            break;
        }
    }
    Ok(out)
}
