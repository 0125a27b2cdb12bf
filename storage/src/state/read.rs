//! Reading history back: the readings of one tag between two `(ts,
//! revision)` positions, merged from its chunks on disk and its unflushed
//! readings in memory, and the readings of one tag in a revision range.
//!
//! Chunks may overlap in time (late readings land in a later chunk), so a
//! time scan merges: chunks are visited in key order, a chunk is decoded
//! only when its summary says it may hold the next reading, and a reading is
//! handed out only when no chunk not yet visited can hold an earlier one.
//! Readings below the oldest revision held (retention) are skipped.

use std::collections::BinaryHeap;

use bifrost_chunk::{Point, Summary};
use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, DB};

use super::chunks::{
    chunk_key, chunk_summary, decode_chunk, parse_chunk_key, run_key, RunEntry, CF_CHUNKS, CF_RUNS,
    CHUNK_SPAN_US,
};
use crate::keys::ordered_i64;
use crate::{Error, Result};

/// A `(ts, revision)` position as one number with the same order.
fn position(ts: i64, rev: u64) -> u128 {
    ((ordered_i64(ts) as u128) << 64) | rev as u128
}

/// What a time scan reads: one tag, inclusive bounds, a direction.
pub(super) struct Range {
    pub tag: u64,
    pub from: (i64, u64),
    pub to: (i64, u64),
    pub reverse: bool,
    /// Readings with a smaller revision are gone (retention).
    pub oldest: u64,
}

impl Range {
    fn holds(&self, p: &Point) -> bool {
        self.holds_at(p.ts_us, p.revision)
    }

    /// Whether the reading at `(ts, rev)` is in range and still held.
    pub fn holds_at(&self, ts: i64, rev: u64) -> bool {
        let pos = (ts, rev);
        rev >= self.oldest && pos >= self.from && pos <= self.to
    }

    /// Whether the readings `s` summarises may include one in range and
    /// still held.
    pub fn may_hold_some(&self, s: &Summary) -> bool {
        let (lo, hi) = ((s.min_ts_us, s.min_revision), (s.max_ts_us, s.max_revision));
        hi >= self.from && lo <= self.to && s.max_revision >= self.oldest
    }

    /// Whether every reading `s` summarises is in range and still held.
    pub fn holds_all(&self, s: &Summary) -> bool {
        let (lo, hi) = ((s.min_ts_us, s.min_revision), (s.max_ts_us, s.max_revision));
        lo >= self.from && hi <= self.to && s.min_revision >= self.oldest
    }

    /// Heap priority: the heaps are max-heaps, the next reading is the greatest.
    fn priority(&self, pos: u128) -> u128 {
        if self.reverse {
            pos
        } else {
            u128::MAX - pos
        }
    }
}

/// A chunk read but not decoded, ordered by the best position it may hold.
struct Pending {
    priority: u128,
    key: Box<[u8]>,
    value: Box<[u8]>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.priority == o.priority
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&o.priority)
    }
}

/// A run of decoded readings in scan order, by the priority of its next one:
/// a decoded chunk (or the unflushed tail). Merging runs, not single
/// readings, keeps the heap as small as the number of overlapping chunks and
/// its entries two words, where a heap of readings moved every reading
/// through `log n` levels (it was a tenth of a long scan's time).
struct Head {
    priority: u128,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.priority == o.priority
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&o.priority)
    }
}

/// The merge state of one time scan.
struct Merge<'r> {
    range: &'r Range,
    /// Runs of readings, each with the next one to hand out at its end.
    runs: Vec<Vec<Point>>,
    /// Indexes of emptied runs, to reuse.
    free: Vec<usize>,
    /// Every run that is not empty, by the priority of its next reading.
    heads: BinaryHeap<Head>,
    pending: BinaryHeap<Pending>,
}

impl Merge<'_> {
    /// Adds the readings of `points` that are in range as one run.
    fn push_run(&mut self, mut points: Vec<Point>) {
        let range = self.range;
        points.retain(|p| range.holds(p));
        if points.is_empty() {
            return;
        }
        // The next reading last. Chunks come in time order, so the sort is
        // one pass over a sorted (or reversed) run.
        let key = |p: &Point| range.priority(position(p.ts_us, p.revision));
        points.sort_by_key(key);
        let priority = key(points.last().expect("not empty"));
        let run = match self.free.pop() {
            Some(i) => {
                self.runs[i] = points;
                i
            }
            None => {
                self.runs.push(points);
                self.runs.len() - 1
            }
        };
        self.heads.push(Head { priority, run });
    }

    /// The priority of the next reading to hand out.
    fn best_ready(&self) -> Option<u128> {
        self.heads.peek().map(|h| h.priority)
    }

    /// Takes the next reading (the one of `best_ready`).
    fn pop_ready(&mut self) -> Option<Point> {
        let head = self.heads.pop()?;
        let run = &mut self.runs[head.run];
        let point = run.pop().expect("a head's run is not empty");
        match run.last() {
            Some(next) => {
                let priority = self.range.priority(position(next.ts_us, next.revision));
                self.heads.push(Head {
                    priority,
                    run: head.run,
                });
            }
            None => {
                // Its memory back now, not at the end of the scan.
                self.runs[head.run] = Vec::new();
                self.free.push(head.run);
            }
        }
        Some(point)
    }

    /// Queues a chunk by its summary, unless it holds nothing in range.
    fn push_chunk(&mut self, key: Box<[u8]>, value: Box<[u8]>) -> Result<()> {
        let s = chunk_summary(&key, &value)?;
        let r = self.range;
        if !r.may_hold_some(&s) {
            return Ok(());
        }
        let best = if r.reverse {
            (s.max_ts_us, s.max_revision)
        } else {
            (s.min_ts_us, s.min_revision)
        };
        let priority = r.priority(position(best.0, best.1));
        self.pending.push(Pending {
            priority,
            key,
            value,
        });
        Ok(())
    }

    /// Decodes pending chunks that may hold something ahead of the best
    /// ready reading.
    fn decode_ahead(&mut self) -> Result<()> {
        while let Some(top) = self.pending.peek() {
            if self.best_ready().is_some_and(|best| best > top.priority) {
                break;
            }
            let chunk = self.pending.pop().expect("peeked");
            self.push_run(decode_chunk(&chunk.key, &chunk.value)?);
        }
        Ok(())
    }

    /// The priority above which no chunk not yet visited can hold anything,
    /// given the min ts of the next chunk in key order.
    fn frontier(&self, next_min_ts: i64) -> u128 {
        if self.range.reverse {
            let ts = next_min_ts.saturating_add(CHUNK_SPAN_US);
            self.range.priority(position(ts, u64::MAX))
        } else {
            self.range.priority(position(next_min_ts, 0))
        }
    }
}

/// Passes the readings in `range` to `visit`, in order (or reversed), until
/// it returns false; `tail` are the tag's unflushed readings. Returns how
/// many readings were passed.
pub(super) fn scan_between(
    db: &DB,
    ro: impl Fn() -> ReadOptions,
    range: &Range,
    tail: Vec<Point>,
    visit: &mut dyn FnMut(Point) -> bool,
) -> Result<u64> {
    if range.from > range.to {
        return Ok(0);
    }
    let mut merge = Merge {
        range,
        runs: Vec::new(),
        free: Vec::new(),
        heads: BinaryHeap::new(),
        pending: BinaryHeap::new(),
    };
    merge.push_run(tail);
    let mut it = chunk_iter(db, ro(), range);
    let mut n = 0;
    loop {
        merge.decode_ahead()?;
        let next_min_ts = if it.valid() {
            Some(parse_chunk_key(it.key().expect("valid iterator"))?.1)
        } else {
            it.status()?;
            None
        };
        let emit = match (merge.best_ready(), next_min_ts) {
            (None, None) => return Ok(n),
            (Some(_), None) => true,
            (Some(best), Some(ts)) => best > merge.frontier(ts),
            (None, Some(_)) => false,
        };
        if emit {
            let point = merge.pop_ready().expect("a best one is ready");
            n += 1;
            if !visit(point) {
                return Ok(n);
            }
        } else {
            let key = it.key().expect("valid iterator").into();
            let value = it.value().expect("valid iterator").into();
            merge.push_chunk(key, value)?;
            if range.reverse {
                it.prev();
            } else {
                it.next();
            }
        }
    }
}

/// An iterator over the chunk keys that may hold readings of `range`,
/// positioned at the first one in scan order.
pub(super) fn chunk_iter<'a>(
    db: &'a DB,
    mut ro: ReadOptions,
    range: &Range,
) -> DBRawIteratorWithThreadMode<'a, DB> {
    let lower = chunk_key(range.tag, range.from.0.saturating_sub(CHUNK_SPAN_US), 0);
    let last = chunk_key(range.tag, range.to.0, u64::MAX);
    let mut upper = last.to_vec();
    upper.push(0);
    ro.set_iterate_lower_bound(lower.to_vec());
    ro.set_iterate_upper_bound(upper);
    let mut it = db.raw_iterator_cf_opt(db.cf_handle(CF_CHUNKS).expect("chunks cf"), ro);
    if range.reverse {
        it.seek_for_prev(last);
    } else {
        it.seek(lower);
    }
    it
}

/// The readings of `tag` on disk with revisions in `[lo, hi]`, in no
/// particular order.
pub(super) fn points_by_revision(
    db: &DB,
    ro: impl Fn() -> ReadOptions,
    tag: u64,
    lo: u64,
    hi: u64,
) -> Result<Vec<Point>> {
    let runs = db.cf_handle(CF_RUNS).expect("runs cf");
    let mut opts = ro();
    opts.set_iterate_upper_bound(
        run_key(tag, u64::MAX)
            .iter()
            .copied()
            .chain([0])
            .collect::<Vec<_>>(),
    );
    let mut it = db.raw_iterator_cf_opt(runs, opts);
    it.seek(run_key(tag, lo));
    let mut out = Vec::new();
    while it.valid() {
        let e = RunEntry::parse(it.key().expect("valid"), it.value().expect("valid"))?;
        if e.run_min_rev > hi {
            break;
        }
        if e.chunk_min_rev <= hi {
            out.extend(
                indexed_chunk(db, &ro, &e)?
                    .into_iter()
                    .filter(|p| (lo..=hi).contains(&p.revision)),
            );
        }
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// The readings of `tag` in its runs with revisions in `(after, ceiling]`,
/// gathered chunk by chunk in the run index's order until at least
/// `at_least` are in and no chunk left can hold a revision at or below the
/// last one gathered (a late reading's chunk may come after chunks with
/// higher revisions). Returns them (in no particular order) and, when it
/// stopped early, the revision up to which every reading of the tag in its
/// runs was gathered.
pub(super) fn points_after(
    db: &DB,
    ro: &dyn Fn() -> ReadOptions,
    tag: u64,
    (after, ceiling): (u64, u64),
    at_least: usize,
) -> Result<(Vec<Point>, Option<u64>)> {
    let entries = run_entries_from(db, ro, tag, after.saturating_add(1))?;
    // The lowest revision any chunk from here on may hold.
    let mut lowest_ahead = vec![u64::MAX; entries.len() + 1];
    for (i, e) in entries.iter().enumerate().rev() {
        lowest_ahead[i] = lowest_ahead[i + 1].min(e.chunk_min_rev);
    }
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if lowest_ahead[i] > ceiling {
            break;
        }
        out.extend(
            indexed_chunk(db, ro, e)?
                .into_iter()
                .filter(|p| p.revision > after && p.revision <= ceiling),
        );
        if out.len() >= at_least && lowest_ahead[i + 1] > e.max_rev {
            return Ok((out, Some(e.max_rev)));
        }
    }
    Ok((out, None))
}

/// The readings of the chunk the run index entry `e` names; a missing chunk
/// is corruption.
fn indexed_chunk(db: &DB, ro: &dyn Fn() -> ReadOptions, e: &RunEntry) -> Result<Vec<Point>> {
    let chunks = db.cf_handle(CF_CHUNKS).expect("chunks cf");
    let key = e.chunk_key();
    let bytes = db.get_cf_opt(chunks, key, &ro())?.ok_or_else(|| {
        Error::Corrupt(format!(
            "run index names a missing chunk (tag {}, revision {})",
            e.tag, e.max_rev
        ))
    })?;
    decode_chunk(&key, &bytes)
}

/// The run index entries of `tag` whose chunks end at or after revision
/// `from`, in key (max revision) order: index only, no chunk is read.
fn run_entries_from(
    db: &DB,
    ro: &dyn Fn() -> ReadOptions,
    tag: u64,
    from: u64,
) -> Result<Vec<RunEntry>> {
    let runs = db.cf_handle(CF_RUNS).expect("runs cf");
    let mut opts = ro();
    opts.set_iterate_upper_bound(run_key(tag + 1, 0).to_vec());
    let mut it = db.raw_iterator_cf_opt(runs, opts);
    it.seek(run_key(tag, from));
    let mut out = Vec::new();
    while it.valid() {
        out.push(RunEntry::parse(
            it.key().expect("valid"),
            it.value().expect("valid"),
        )?);
        it.next();
    }
    it.status()?;
    Ok(out)
}
