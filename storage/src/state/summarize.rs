//! Summaries of one tag's readings by time bucket, for aggregates
//! (`StateStore::summarize_history`). Order does not matter, so nothing is
//! merged or sorted: a chunk inside the time range, above the oldest
//! revision held and within one bucket adds its summary undecoded (so does
//! a segment block holding only this tag); every other chunk or block is
//! folded reading by reading from the columns a summary reads, and the
//! unflushed readings where they are, uncloned.
//!
//! Knows nothing of SQL: a bucket is whatever `bucket_of` makes of a time.

use std::collections::BTreeMap;

use bifrost_chunk::{Sample, Summary};
use rocksdb::{ReadOptions, DB};

use super::chunks::{chunk_summary, corrupt_chunk};
use super::read::{chunk_iter, Range};
use crate::Result;

/// The summaries gathered so far, by bucket. Readings usually come in time
/// order, so the bucket being filled stays out of the map until the next
/// reading falls in another.
pub(super) struct Buckets<'f, K> {
    range: &'f Range,
    bucket_of: &'f dyn Fn(i64) -> K,
    done: BTreeMap<K, Summary>,
    open: Option<(K, Summary)>,
    /// Readings in range added so far, whole chunks included.
    pub read: u64,
}

impl<'f, K: Ord> Buckets<'f, K> {
    pub fn new(range: &'f Range, bucket_of: &'f dyn Fn(i64) -> K) -> Buckets<'f, K> {
        Buckets {
            range,
            bucket_of,
            done: BTreeMap::new(),
            open: None,
            read: 0,
        }
    }

    /// Adds one reading if it is in range.
    pub fn add(&mut self, s: Sample<'_>) {
        if !self.range.holds_at(s.ts_us, s.revision) {
            return;
        }
        self.read += 1;
        let key = (self.bucket_of)(s.ts_us);
        if self.open.as_ref().is_none_or(|(open, _)| *open != key) {
            self.close();
            self.open = Some((key, Summary::default()));
        }
        let (_, summary) = self.open.as_mut().expect("opened above");
        summary.add_reading(s.ts_us, s.revision, s.level, s.value);
    }

    /// Adds the readings `s` summarises at once, if they all lie in range
    /// and in one bucket (and `s` counts its floats); false if not.
    pub fn add_whole(&mut self, s: &Summary) -> bool {
        if s.count == 0 || !self.range.holds_all(s) || s.floats.is_none() {
            return false;
        }
        let key = (self.bucket_of)(s.min_ts_us);
        if key != (self.bucket_of)(s.max_ts_us) {
            return false;
        }
        self.read += s.count;
        self.done.entry(key).or_default().merge(s);
        true
    }

    fn close(&mut self) {
        if let Some((key, s)) = self.open.take() {
            self.done.entry(key).or_default().merge(&s);
        }
    }

    pub fn finish(mut self) -> BTreeMap<K, Summary> {
        self.close();
        self.done
    }
}

/// Adds the tag's chunks that may hold readings of the range, until more
/// than `max_read` readings were read.
pub(super) fn add_chunks<K: Ord>(
    db: &DB,
    ro: ReadOptions,
    buckets: &mut Buckets<'_, K>,
    max_read: Option<u64>,
) -> Result<()> {
    let range = buckets.range;
    let mut it = chunk_iter(db, ro, range);
    while it.valid() && max_read.is_none_or(|m| buckets.read <= m) {
        let (key, value) = (it.key().expect("valid"), it.value().expect("valid"));
        let s = chunk_summary(key, value)?;
        if range.may_hold_some(&s) && !buckets.add_whole(&s) {
            bifrost_chunk::for_each_sample(value, |_, smp| buckets.add(smp))
                .map_err(|e| corrupt_chunk(key, e))?;
        }
        it.next();
    }
    it.status()?;
    Ok(())
}
