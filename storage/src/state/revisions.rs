//! Reading history in revision order (watch catch-up, retention): the
//! journal says which tag each revision belongs to, the tags' chunks (or
//! the unflushed tail) hold the readings.
//!
//! Costs one chunk decode per tag met in a page; the journal itself is read
//! record by record.

use std::collections::{BTreeSet, HashMap};

use bifrost_chunk::Point;
use rocksdb::{ReadOptions, DB};

use super::chunks::{self, RunEntry, CF_CHUNKS, CF_RUNS};
use super::journal::{self, Record, CF_JOURNAL};
use super::ops::Ops;
use super::read::{points_after, points_by_revision};
use super::segments;
use super::{point_to_reading, Inner, StateStore};
use crate::keys::u64_key;
use crate::model::Reading;
use crate::Result;

impl StateStore {
    /// Committed readings with revision `> after`, in revision order, at most
    /// `limit`. Readings of tags deleted since are skipped.
    pub fn readings_after(&self, after: u64, limit: usize) -> Result<Vec<Reading>> {
        Ok(self.readings_page(after, limit)?.0)
    }

    /// Like [`StateStore::readings_after`], and also the last revision looked
    /// at (`after` if none), so a reader that skips readings of deleted tags
    /// still moves on.
    pub fn readings_page(&self, after: u64, limit: usize) -> Result<(Vec<Reading>, u64)> {
        let inner = self.inner();
        let (revision, oldest) = {
            let c = inner.cache.read();
            (c.revision, c.oldest)
        };
        let after = after.max(oldest.saturating_sub(1));
        let upto = after.saturating_add(limit as u64).min(revision);
        if upto <= after {
            return Ok((vec![], after));
        }
        // The unflushed part and a database snapshot, taken together.
        let hot = inner.hot.read();
        let snapshot = inner.db.snapshot();
        let flushed = hot.flushed_revision;
        let mut points: Vec<(u64, Point)> = hot.unflushed_between(after, upto);
        drop(hot);
        let ro = || {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snapshot);
            ro
        };
        if after < flushed {
            // Segments hold the newest flushed readings of the tags not
            // merged yet, decoded block by block; the journal says which
            // tags to look up in the runs for the rest.
            let (lo, hi) = (after + 1, upto.min(flushed));
            let headers = segments::headers(&inner.db, ro())?;
            points.extend(segments::points_between(&inner.db, &ro, &headers, lo, hi)?);
            let in_segment = |rev: u64, tag: u64| headers.iter().any(|h| h.holds(rev, tag));
            let wanted = tags_between(&inner.db, &ro, lo, hi, &in_segment)?;
            for (tag, (lo, hi)) in wanted {
                for p in points_by_revision(&inner.db, ro, tag, lo, hi)? {
                    if p.revision > after && p.revision <= upto {
                        points.push((tag, p));
                    }
                }
            }
        }
        points.sort_by_key(|(_, p)| p.revision);
        let out = named_readings(&inner, points);
        Ok((out, upto))
    }

    /// The ids of the tags (live, or deleted with their history kept) whose
    /// names `matches` accepts.
    pub fn tag_ids_matching(&self, matches: impl Fn(&str) -> bool) -> Vec<u64> {
        let inner = self.inner();
        let c = inner.cache.read();
        c.tags
            .with_history()
            .filter(|(_, name)| matches(name))
            .map(|(id, _)| id)
            .collect()
    }

    /// How many tags have history held (live ones and deleted ones whose
    /// history is kept).
    pub fn tags_with_history(&self) -> usize {
        self.inner().cache.read().tags.with_history_count()
    }

    /// Like [`StateStore::readings_page`], for the readings of `tags` only,
    /// read tag by tag: it costs about what those tags hold after `after`
    /// (up to a page of each, and their blocks in the segments not merged
    /// yet), not what every tag holds since. The page ends at the last
    /// revision up to which every reading of the tags is in it.
    pub fn tag_readings_page(
        &self,
        tags: &[u64],
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Reading>, u64)> {
        let inner = self.inner();
        let (revision, oldest) = {
            let c = inner.cache.read();
            (c.revision, c.oldest)
        };
        let after = after.max(oldest.saturating_sub(1));
        if revision <= after {
            return Ok((vec![], after));
        }
        let limit = limit.max(1);
        let wanted: BTreeSet<u64> = tags.iter().copied().collect();
        // The unflushed part and a database snapshot, taken together.
        let hot = inner.hot.read();
        let snapshot = inner.db.snapshot();
        let mut points: Vec<(u64, Point)> = Vec::new();
        for &tag in &wanted {
            let tail = hot.tail_of(tag, |p| p.revision > after && p.revision <= revision);
            points.extend(tail.into_iter().map(|p| (tag, p)));
        }
        drop(hot);
        let ro = || {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snapshot);
            ro
        };
        let headers = segments::headers(&inner.db, ro())?;
        for (tag, found) in segments::points_of(&inner.db, &ro, &headers, &wanted)? {
            points.extend(
                found
                    .into_iter()
                    .filter(|p| p.revision > after)
                    .map(|p| (tag, p)),
            );
        }
        // Each tag's runs up to where the page may end by now: once one
        // tag fills a page, the others need not read past it.
        let mut last = revision;
        for &tag in &wanted {
            let (found, read_upto) = points_after(&inner.db, &ro, tag, (after, last), limit)?;
            last = last.min(read_upto.unwrap_or(u64::MAX));
            points.extend(found.into_iter().map(|p| (tag, p)));
        }
        points.retain(|(_, p)| p.revision <= last);
        points.sort_by_key(|(_, p)| p.revision);
        if points.len() > limit {
            points.truncate(limit);
            last = points[limit - 1].1.revision;
        }
        let out = named_readings(&inner, points);
        Ok((out, last))
    }

    /// Where retention may cut: the first revision, scanning from the oldest
    /// held, whose reading is not older than `cutoff_us`, looking at most at
    /// `max_scan` revisions (then the revision after the last one looked at).
    /// Cutting only a prefix of revisions keeps the held revisions contiguous,
    /// so a subscriber never meets a hole; a late reading with an old
    /// timestamp is kept until every revision before it may go. Journal
    /// records entirely older than the cutoff are passed without reading
    /// their readings.
    pub fn compaction_point(&self, cutoff_us: i64, max_scan: usize) -> Result<u64> {
        let inner = self.inner();
        let (oldest, revision) = {
            let c = inner.cache.read();
            (c.oldest, c.revision)
        };
        inner.flush()?;
        let mut point = oldest;
        let mut scanned = 0usize;
        let mut straddling: Option<Record> = None;
        journal::records_from(&inner.db, ReadOptions::default, oldest, &mut |r| {
            if r.max_ts >= cutoff_us {
                straddling = Some(r);
                return Ok(false);
            }
            point = r.last() + 1;
            scanned += r.tags.len();
            Ok(scanned < max_scan)
        })?;
        if let Some(r) = straddling.filter(|_| scanned < max_scan) {
            let from = point.max(r.first);
            let (readings, _) = self.readings_page(from - 1, (r.last() + 1 - from) as usize)?;
            match readings.iter().find(|x| x.ts_us >= cutoff_us) {
                Some(x) => return Ok(x.revision),
                None => point = r.last() + 1,
            }
        }
        Ok(point.min(revision + 1))
    }
}

/// For revisions `from..=to` on disk, each tag met and the revision range
/// it was met in.
fn tags_between(
    db: &DB,
    ro: &dyn Fn() -> ReadOptions,
    from: u64,
    to: u64,
    skip: &dyn Fn(u64, u64) -> bool,
) -> Result<HashMap<u64, (u64, u64)>> {
    let mut out: HashMap<u64, (u64, u64)> = HashMap::new();
    journal::records_from(db, ro, from, &mut |r| {
        for (i, tag) in r.tags.iter().enumerate() {
            let rev = r.first + i as u64;
            if rev < from || rev > to || skip(rev, *tag) {
                continue;
            }
            let e = out.entry(*tag).or_insert((rev, rev));
            e.1 = rev;
        }
        Ok(r.last() < to)
    })?;
    Ok(out)
}

/// Adds to `ops` the removal of every reading with a revision in
/// `[oldest, below)` from the database (the caller flushed and merged every
/// segment first): chunks
/// entirely below go, chunks across `below` stay (readers skip what is
/// below the oldest revision), and journal records entirely below go
/// (ingested reading ids are forgotten by their own window, not here). Returns how
/// many readings were removed.
pub(super) fn remove_below(db: &DB, oldest: u64, below: u64, ops: &mut Ops) -> Result<u64> {
    let tags = tags_between(db, &ReadOptions::default, oldest, below - 1, &|_, _| false)?;
    let mut removed = 0;
    for tag in tags.keys() {
        removed += remove_tag_below(db, *tag, oldest, below, ops)?;
    }
    let mut keep_from = u64_key(below).to_vec();
    journal::records_from(db, ReadOptions::default, below, &mut |r| {
        keep_from = u64_key(r.first).to_vec();
        Ok(false)
    })?;
    ops.delete_range(CF_JOURNAL, u64_key(0), keep_from);
    Ok(removed)
}

fn remove_tag_below(db: &DB, tag: u64, oldest: u64, below: u64, ops: &mut Ops) -> Result<u64> {
    let runs = db.cf_handle(CF_RUNS).expect("runs cf");
    let chunks_cf = db.cf_handle(CF_CHUNKS).expect("chunks cf");
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(chunks::run_key(tag + 1, 0).to_vec());
    let mut removed = 0;
    let start = chunks::run_key(tag, 0);
    for item in db.iterator_cf_opt(
        runs,
        ro,
        rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
    ) {
        let (k, v) = item?;
        let e = RunEntry::parse(&k, &v)?;
        if e.run_min_rev >= below {
            break;
        }
        if e.chunk_min_rev >= below {
            continue;
        }
        let key = e.chunk_key();
        if let Some(bytes) = db.get_cf(chunks_cf, key)? {
            for p in chunks::decode_chunk(&key, &bytes)? {
                if p.revision >= oldest && p.revision < below {
                    removed += 1;
                }
            }
        }
        if e.max_rev < below {
            ops.delete(CF_CHUNKS, key);
            ops.delete(CF_RUNS, &k);
        }
    }
    Ok(removed)
}

/// `points` (tag id, reading), in their order, as readings named by their
/// tags in `inner`'s configuration; those of a tag no longer known are left
/// out.
fn named_readings(inner: &Inner, points: Vec<(u64, Point)>) -> Vec<Reading> {
    let c = inner.cache.read();
    points
        .into_iter()
        .filter_map(|(tag, p)| c.tags.name_of(tag).map(|n| point_to_reading(n, p)))
        .collect()
}
