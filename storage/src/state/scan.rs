//! Read-only scans behind the query engine's store traits (the server
//! adapts them): history in either direction, current values of many tags
//! at once, and tag selection by name prefix.
//!
//! Each call reads through its own RocksDB iterator, so one call sees one
//! consistent view; a query that makes several calls (one per tag) may see
//! readings committed between them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bifrost_chunk::{Sample, Summary};
use rocksdb::ReadOptions;

use super::read::{scan_between, Range};
use super::segments;
use super::summarize::{add_chunks, Buckets};
use super::{point_to_reading, StateStore};
use crate::model::{Reading, Tag};
use crate::{Rejection, Result};

/// A device's tags as [`StateStore::device_activity`] counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceActivity {
    pub tags: usize,
    /// The newest timestamp among the tags' current readings.
    pub newest_ts_us: Option<i64>,
}

impl StateStore {
    /// Tags whose name starts with `prefix`, in name order. Served from the
    /// in-memory config cache: only the matching range of names is visited.
    pub fn tags_with_prefix(&self, prefix: &str) -> Vec<Tag> {
        let inner = self.inner();
        let c = inner.cache.read();
        c.tags.with_prefix(prefix).cloned().collect()
    }

    /// Calls `visit` with each live tag whose name starts with `prefix`, in
    /// name order, until it returns `false`; without cloning them (a tag
    /// browser walks 100,000 names to count a folder's tags). The config
    /// cache is read-locked meanwhile: `visit` must be quick.
    pub fn visit_tags_with_prefix(&self, prefix: &str, mut visit: impl FnMut(&Tag) -> bool) {
        let inner = self.inner();
        let c = inner.cache.read();
        for t in c.tags.with_prefix(prefix) {
            if !visit(t) {
                break;
            }
        }
    }

    /// Per device with tags: how many it has and the newest timestamp among
    /// their current readings (none if no tag has a reading), walked under
    /// the locks without copying a tag or a reading.
    pub fn device_activity(&self) -> HashMap<String, DeviceActivity> {
        let inner = self.inner();
        let c = inner.cache.read();
        let hot = inner.hot.read();
        let mut out: HashMap<String, DeviceActivity> = HashMap::new();
        for t in c.tags.iter() {
            let newest = hot.current.get(&t.id).map(|p| p.ts_us);
            // The device's name is copied once, not once per tag.
            if let Some(seen) = out.get_mut(t.device.as_str()) {
                seen.tags += 1;
                seen.newest_ts_us = seen.newest_ts_us.max(newest);
            } else {
                let first = DeviceActivity {
                    tags: 1,
                    newest_ts_us: newest,
                };
                out.insert(t.device.clone(), first);
            }
        }
        out
    }

    /// Current value of a tag: `Ok(None)` if it has none yet; a rejection if
    /// there is no such tag.
    pub fn current(&self, name: &str) -> Result<Result<Option<Reading>, Rejection>> {
        let inner = self.inner();
        let Some(id) = inner.cache.read().tags.get(name).map(|t| t.id) else {
            return Ok(Err(Rejection::not_found(format!("unknown tag '{name}'"))));
        };
        let hot = inner.hot.read();
        Ok(Ok(hot
            .current
            .get(&id)
            .map(|c| point_to_reading(name, c.to_point()))))
    }

    /// Current values of `tags`, in the order given; `None` for a tag
    /// without a reading (or deleted since the caller looked it up).
    pub fn current_many(&self, tags: &[Tag]) -> Result<Vec<Option<Reading>>> {
        let inner = self.inner();
        let hot = inner.hot.read();
        Ok(tags
            .iter()
            .map(|t| {
                hot.current
                    .get(&t.id)
                    .map(|c| point_to_reading(&t.name, c.to_point()))
            })
            .collect())
    }

    /// Readings of `tag` between two `(ts, revision)` positions (both
    /// inclusive), in (ts, revision) order, or the reverse of it when
    /// `reverse`, passed to `visit` until it returns false. Returns how
    /// many readings were read. A scan can resume right after (or,
    /// reversed, right before) the last reading it saw; `(t, 0)` and
    /// `(t, u64::MAX)` bound whole timestamps (revisions start at 1).
    ///
    /// Chunks are decoded only when they may hold the next reading, so "the
    /// last reading at or before T" decodes one chunk, however long the
    /// history before T is (plus the tag's blocks in the segments not merged
    /// yet, one per segment).
    pub fn scan_history_between(
        &self,
        tag: &Tag,
        from: (i64, u64),
        to: (i64, u64),
        reverse: bool,
        mut visit: impl FnMut(Reading) -> bool,
    ) -> Result<u64> {
        let inner = self.inner();
        let range = Range {
            tag: tag.id,
            from,
            to,
            reverse,
            oldest: inner.cache.read().oldest,
        };
        // The unflushed part and a database snapshot, taken together.
        let hot = inner.hot.read();
        let snapshot = inner.db.snapshot();
        let mut tail = hot.tail_of(tag.id, |_| true);
        drop(hot);
        let ro = || {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snapshot);
            ro
        };
        let headers = segments::headers(&inner.db, ro())?;
        let only = BTreeSet::from([tag.id]);
        let on_disk = segments::points_of(&inner.db, &ro, &headers, &only)?;
        tail.extend(on_disk.into_values().flatten());
        scan_between(&inner.db, ro, &range, tail, &mut |p| {
            visit(point_to_reading(&tag.name, p))
        })
    }

    /// Summaries of the readings of `tag` with `from_us <= ts <= to_us`,
    /// by `bucket_of` their time, which must never decrease as time grows
    /// (a time bucket's start does not). Chunks inside the range and one
    /// bucket count by their summary, undecoded (see `summarize.rs`). May
    /// stop once more than `max_read` readings were read.
    pub fn summarize_history<K: Ord>(
        &self,
        tag: &Tag,
        (from_us, to_us): (i64, i64),
        bucket_of: &dyn Fn(i64) -> K,
        max_read: Option<u64>,
    ) -> Result<BTreeMap<K, Summary>> {
        let inner = self.inner();
        let range = Range {
            tag: tag.id,
            from: (from_us, 0),
            to: (to_us, u64::MAX),
            reverse: false,
            oldest: inner.cache.read().oldest,
        };
        let mut buckets = Buckets::new(&range, bucket_of);
        if range.from > range.to {
            return Ok(buckets.finish());
        }
        // The unflushed part, folded where it is, and a database snapshot,
        // taken together.
        let hot = inner.hot.read();
        let snapshot = inner.db.snapshot();
        hot.for_each_unflushed(tag.id, |p| buckets.add(Sample::of(p)));
        drop(hot);
        let ro = || {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snapshot);
            ro
        };
        let headers = segments::headers(&inner.db, ro())?;
        segments::add_tag_to(&inner.db, &ro, &headers, tag.id, &mut buckets)?;
        add_chunks(&inner.db, ro(), &mut buckets, max_read)?;
        Ok(buckets.finish())
    }
}

#[cfg(test)]
mod tests {

    use crate::model::{DataType, Device, NewReading, Protocol, Quality, Tag, Value};
    use crate::StateStore;

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let mut b = s.batch();
        let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
        b.put_device(device, true, None, 1).unwrap();
        for name in ["a/x", "a/y", "ab", "b/x"] {
            let tag = Tag::new(name, "plc", "hr:0", DataType::F64);
            b.put_tag(tag, true, None, 1).unwrap();
        }
        // "a/x" at ts 10..=50 step 10, two readings at 30; "a/y" one reading.
        let mut readings: Vec<NewReading> = [10, 20, 30, 30, 40, 50]
            .iter()
            .enumerate()
            .map(|(i, ts)| NewReading {
                id: format!("x{i}"),
                tag: "a/x".into(),
                ts_us: *ts,
                server_ts_us: *ts,
                value: Some(Value::Float(i as f64)),
                quality: Quality::good(),
            })
            .collect();
        readings.push(NewReading {
            id: "y".into(),
            tag: "a/y".into(),
            ts_us: 25,
            server_ts_us: 25,
            value: Some(Value::Float(9.0)),
            quality: Quality::good(),
        });
        b.insert_readings(readings, false).unwrap().unwrap();
        b.commit().unwrap();
        (dir, s)
    }

    fn scan(s: &StateStore, tag: &str, from: i64, to: i64, reverse: bool) -> Vec<(i64, u64)> {
        let tag = s.tag(tag).unwrap();
        let mut out = Vec::new();
        let n = s
            .scan_history_between(&tag, (from, 0), (to, u64::MAX), reverse, |r| {
                out.push((r.ts_us, r.revision));
                true
            })
            .unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    #[test]
    fn history_scans_both_ways_within_inclusive_bounds_of_one_tag() {
        let (_d, s) = store();
        let all = vec![(10, 1), (20, 2), (30, 3), (30, 4), (40, 5), (50, 6)];
        assert_eq!(scan(&s, "a/x", i64::MIN, i64::MAX, false), all);
        let mut rev = all.clone();
        rev.reverse();
        assert_eq!(scan(&s, "a/x", i64::MIN, i64::MAX, true), rev);
        assert_eq!(
            scan(&s, "a/x", 20, 40, false),
            vec![(20, 2), (30, 3), (30, 4), (40, 5)]
        );
        assert_eq!(
            scan(&s, "a/x", 20, 40, true),
            vec![(40, 5), (30, 4), (30, 3), (20, 2)]
        );
        assert_eq!(scan(&s, "a/x", 30, 30, true), vec![(30, 4), (30, 3)]);
        assert!(scan(&s, "a/x", 41, 49, true).is_empty());
        assert!(scan(&s, "a/x", 40, 39, false).is_empty());
        // The last reading at or before 35, whatever came before: one step.
        let tag = s.tag("a/x").unwrap();
        let mut seen = 0;
        s.scan_history_between(&tag, (i64::MIN, 0), (35, u64::MAX), true, |r| {
            seen += 1;
            assert_eq!((r.ts_us, r.revision, r.tag.as_str()), (30, 4, "a/x"));
            false
        })
        .unwrap();
        assert_eq!(seen, 1);
        assert_eq!(scan(&s, "a/y", i64::MIN, i64::MAX, true), vec![(25, 7)]);
        assert!(scan(&s, "ab", i64::MIN, i64::MAX, true).is_empty());
    }

    #[test]
    fn history_scans_between_positions_resume_after_a_reading() {
        let (_d, s) = store();
        let tag = s.tag("a/x").unwrap();
        let between = |from: (i64, u64), to: (i64, u64), reverse: bool| {
            let mut out = Vec::new();
            s.scan_history_between(&tag, from, to, reverse, |r| {
                out.push((r.ts_us, r.revision));
                true
            })
            .unwrap();
            out
        };
        // Right after (30, 3) forward, right before (30, 4) in reverse.
        assert_eq!(
            between((30, 4), (i64::MAX, u64::MAX), false),
            vec![(30, 4), (40, 5), (50, 6)]
        );
        assert_eq!(
            between((i64::MIN, 0), (30, 3), true),
            vec![(30, 3), (20, 2), (10, 1)]
        );
        // Both bounds inclusive, also at the revision level.
        assert_eq!(between((30, 3), (30, 3), false), vec![(30, 3)]);
        assert_eq!(
            between((30, 3), (40, 5), true),
            vec![(40, 5), (30, 4), (30, 3)]
        );
        assert!(between((30, 5), (30, 4), false).is_empty());
    }

    #[test]
    fn tags_by_prefix_and_current_values_of_many() {
        let (_d, s) = store();
        let names = |p: &str| -> Vec<String> {
            s.tags_with_prefix(p).into_iter().map(|t| t.name).collect()
        };
        assert_eq!(names("a/"), ["a/x", "a/y"]);
        assert_eq!(names("a"), ["a/x", "a/y", "ab"]);
        assert_eq!(names(""), ["a/x", "a/y", "ab", "b/x"]);
        assert!(names("c").is_empty());
        let tags = s.tags_with_prefix("");
        let cur = s.current_many(&tags).unwrap();
        let got: Vec<Option<(i64, u64)>> = cur
            .iter()
            .map(|r| r.as_ref().map(|r| (r.ts_us, r.revision)))
            .collect();
        assert_eq!(got, vec![Some((50, 6)), Some((25, 7)), None, None]);
        assert_eq!(cur[1].as_ref().unwrap().tag, "a/y");
    }

    #[test]
    fn device_activity_counts_tags_and_finds_the_newest_current_reading() {
        let (_d, s) = store();
        let mut b = s.batch();
        let quiet = Device::new("quiet", Protocol::ModbusTcp, "127.0.0.1:503");
        b.put_device(quiet, true, None, 2).unwrap();
        let tag = Tag::new("q/1", "quiet", "hr:0", DataType::F64);
        b.put_tag(tag, true, None, 2).unwrap();
        b.commit().unwrap();
        let activity = s.device_activity();
        let plc = super::DeviceActivity {
            tags: 4,
            newest_ts_us: Some(50),
        };
        let quiet = super::DeviceActivity {
            tags: 1,
            newest_ts_us: None,
        };
        assert_eq!(activity.len(), 2);
        assert_eq!((activity["plc"], activity["quiet"]), (plc, quiet));
    }
}
