//! The in-memory part of the state: every tag's current value, and
//! everything applied since the last flush (readings per tag, the journal
//! tail, config and index changes, reading ids and request results).
//!
//! Apply adds to it when a batch commits; the flush empties it into the
//! database in one write. Nothing here is durable by itself: the Raft log
//! is, until a flush covers it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bifrost_chunk::Point;
use bifrost_model::{Quality, QualityLevel, Value};

use super::ingest_ids::IdMap;
use super::ops::Ops;
use super::tag_index::TagMap;
use rustc_hash::FxBuildHasher;

/// A tag's current value: its reading with the greatest `(ts, revision)`,
/// held as compactly as an unflushed one.
pub(super) type Current = HotPoint;

/// What a flush has not written yet, plus current values.
#[derive(Default)]
pub(super) struct Hot {
    /// Unflushed readings per tag id, in revision order.
    pub tail: TagMap<Vec<HotPoint>>,
    /// `(tag id, ts)` of each revision after `flushed_revision`.
    pub journal: Vec<(u64, i64)>,
    /// The last revision the database holds.
    pub flushed_revision: u64,
    /// Current value of every tag that has one.
    pub current: TagMap<Current>,
    /// Tags whose current value changed (or went) since the flush.
    pub dirty_current: HashSet<u64, FxBuildHasher>,
    /// Config and index changes, in order.
    pub ops: Ops,
    /// Ingested reading ids stored since the flush, by fingerprint (see
    /// `ingest_ids`).
    pub ids: IdMap,
    /// Request results recorded since the flush: id -> (log index, result).
    pub requests: HashMap<String, (u64, Vec<u8>)>,
    /// Bytes held by the unflushed part (as [`Hot::add_readings`] counts
    /// them), not counting what a running flush took out.
    pub bytes: usize,
    /// Bytes held by the part a running flush took out ([`Hot::frozen`]).
    pub frozen_bytes: usize,
    /// What the running flush took out and is writing: still read from
    /// here until the write is in the database.
    pub frozen: Option<Arc<Frozen>>,
}

/// The part of [`Hot`] a flush is writing, as it was when the flush began.
#[derive(Default)]
pub(super) struct Frozen {
    pub tail: TagMap<Vec<HotPoint>>,
    /// `(tag id, ts)` of each revision after the flushed one.
    pub journal: Vec<(u64, i64)>,
    /// Current values of the tags that changed (`None`: the tag went).
    pub current: Vec<(u64, Option<Current>)>,
    pub ops: Ops,
    pub ids: IdMap,
    pub requests: HashMap<String, (u64, Vec<u8>)>,
}

impl Hot {
    /// Whether a flush has nothing to write.
    pub fn is_clean(&self) -> bool {
        self.tail.is_empty()
            && self.journal.is_empty()
            && self.dirty_current.is_empty()
            && self.ops.is_empty()
            && self.ids.is_empty()
    }

    /// Adds a committed batch's readings (per tag, in revision order) and
    /// journal, counting what they take: readings held aside, and vectors'
    /// growth (their whole capacity counts, not their length). Only what
    /// the batch adds is counted, so a big tail costs nothing per batch.
    pub fn add_readings(&mut self, tail: TagMap<Vec<HotPoint>>, journal: Vec<(u64, i64)>) {
        for (tag, points) in tail {
            let aside: usize = points.iter().map(HotPoint::heap_bytes).sum();
            let held = self.tail.entry(tag).or_default();
            let (capacity, new_entry) = (held.capacity(), held.is_empty());
            held.extend(points);
            self.bytes += aside
                + (held.capacity() - capacity) * std::mem::size_of::<HotPoint>()
                + if new_entry { TAIL_ENTRY_BYTES } else { 0 };
        }
        let capacity = self.journal.capacity();
        self.journal.extend(journal);
        self.bytes += (self.journal.capacity() - capacity) * std::mem::size_of::<(u64, i64)>();
    }

    /// Drops the unflushed readings of `tag` (a purge) and their bytes.
    pub fn drop_tail(&mut self, tag: u64) {
        if let Some(points) = self.tail.remove(&tag) {
            self.bytes = self.bytes.saturating_sub(tail_bytes(&points));
        }
    }

    /// Unflushed readings of `tag` that `keep` accepts (those being
    /// flushed included).
    pub fn tail_of(&self, tag: u64, keep: impl Fn(&HotPoint) -> bool) -> Vec<Point> {
        let mut out = Vec::new();
        self.for_each_hot(tag, |p| {
            if keep(p) {
                out.push(p.to_point());
            }
        });
        out
    }

    /// Hands each unflushed reading of `tag` (those being flushed
    /// included) to `visit`.
    pub fn for_each_unflushed(&self, tag: u64, mut visit: impl FnMut(&Point)) {
        self.for_each_hot(tag, |p| visit(&p.to_point()));
    }

    fn for_each_hot(&self, tag: u64, visit: impl FnMut(&HotPoint)) {
        let frozen = self.frozen.as_ref().and_then(|f| f.tail.get(&tag));
        frozen
            .into_iter()
            .chain(self.tail.get(&tag))
            .flatten()
            .for_each(visit);
    }

    /// Unflushed readings (those being flushed included) with revisions
    /// in `(after, upto]`, with their tag ids, in no particular order.
    pub fn unflushed_between(&self, after: u64, upto: u64) -> Vec<(u64, Point)> {
        if upto <= self.flushed_revision {
            return Vec::new();
        }
        let frozen = self.frozen.as_ref().map(|f| &f.tail);
        frozen
            .into_iter()
            .chain([&self.tail])
            .flatten()
            .flat_map(|(tag, points)| {
                points
                    .iter()
                    .filter(move |p| p.revision > after && p.revision <= upto)
                    .map(move |p| (*tag, p.to_point()))
            })
            .collect()
    }

    /// The minute an ingested id with fingerprint `fp` was stored, if it
    /// was since the database was last written (`None`: ask the database).
    pub fn id_stored(&self, fp: u128) -> Option<u32> {
        let frozen = self.frozen.as_ref().and_then(|f| f.ids.get(&fp));
        self.ids.get(&fp).or(frozen).map(|u| u.minute)
    }

    /// A request result recorded since the database was last written.
    pub fn request(&self, id: &str) -> Option<(u64, Vec<u8>)> {
        let frozen = self.frozen.as_ref().and_then(|f| f.requests.get(id));
        self.requests.get(id).or(frozen).cloned()
    }

    /// Takes everything a flush writes out into [`Hot::frozen`].
    pub fn freeze(&mut self) -> Arc<Frozen> {
        let current = std::mem::take(&mut self.dirty_current)
            .into_iter()
            .map(|tag| (tag, self.current.get(&tag).cloned()))
            .collect();
        let frozen = Arc::new(Frozen {
            tail: std::mem::take(&mut self.tail),
            journal: std::mem::take(&mut self.journal),
            current,
            ops: std::mem::take(&mut self.ops),
            ids: std::mem::take(&mut self.ids),
            requests: std::mem::take(&mut self.requests),
        });
        self.frozen_bytes = std::mem::take(&mut self.bytes);
        self.frozen = Some(frozen.clone());
        frozen
    }

    /// Puts a frozen part back in front of what came since, after its
    /// write failed, so the next flush writes it.
    pub fn thaw(&mut self, f: &Frozen) {
        self.bytes += std::mem::take(&mut self.frozen_bytes);
        for (tag, points) in &f.tail {
            let newer = self.tail.remove(tag).unwrap_or_default();
            let mut all = points.clone();
            all.extend(newer);
            self.tail.insert(*tag, all);
        }
        let mut journal = f.journal.clone();
        journal.append(&mut self.journal);
        self.journal = journal;
        self.dirty_current
            .extend(f.current.iter().map(|(tag, _)| *tag));
        let mut ops = f.ops.clone();
        ops.append(std::mem::take(&mut self.ops));
        self.ops = ops;
        for (fp, unflushed) in &f.ids {
            self.ids.entry(*fp).or_insert_with(|| unflushed.clone());
        }
        for (id, r) in &f.requests {
            self.requests.entry(id.clone()).or_insert_with(|| r.clone());
        }
        self.frozen = None;
    }
}

/// What one tag's entry in the tail map takes beside its readings.
const TAIL_ENTRY_BYTES: usize = 48;

/// Bytes a tag's unflushed readings hold: the vector's whole capacity,
/// what its readings keep on the heap, and the map entry.
fn tail_bytes(points: &Vec<HotPoint>) -> usize {
    TAIL_ENTRY_BYTES
        + points.capacity() * std::mem::size_of::<HotPoint>()
        + points.iter().map(HotPoint::heap_bytes).sum::<usize>()
}

/// One unflushed reading in 48 bytes, where a [`Point`] takes 104 plus its
/// strings. What a polled reading holds is inline: times, revision, the
/// value's bits and kind, the quality level. Text values, quality reasons
/// and client ids, which polled readings do not have, are boxed aside.
#[derive(Clone, Debug)]
pub(super) struct HotPoint {
    pub ts_us: i64,
    pub revision: u64,
    server_ts_us: i64,
    /// An integer, a float's bits or a boolean as 0/1; see `kind`.
    bits: u64,
    rare: Option<Box<Rare>>,
    kind: Kind,
    level: QualityLevel,
}

/// The parts of a reading that polled readings do not have.
#[derive(Clone, Debug, Default)]
struct Rare {
    text: Option<Box<str>>,
    reason: Box<str>,
    id: Option<Box<str>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Missing,
    Bool,
    Int,
    Float,
    Text,
}

impl HotPoint {
    pub fn from_point(p: Point) -> HotPoint {
        let (kind, bits, text) = match p.value {
            None => (Kind::Missing, 0, None),
            Some(Value::Bool(b)) => (Kind::Bool, u64::from(b), None),
            Some(Value::Int(i)) => (Kind::Int, i as u64, None),
            Some(Value::Float(f)) => (Kind::Float, f.to_bits(), None),
            Some(Value::Text(t)) => (Kind::Text, 0, Some(t)),
        };
        let rare = (text.is_some() || !p.quality.reason.is_empty() || p.id.is_some()).then(|| {
            Box::new(Rare {
                text: text.map(String::into_boxed_str),
                reason: p.quality.reason.into_boxed_str(),
                id: p.id.map(String::into_boxed_str),
            })
        });
        HotPoint {
            ts_us: p.ts_us,
            revision: p.revision,
            server_ts_us: p.server_ts_us,
            bits,
            rare,
            kind,
            level: p.quality.level,
        }
    }

    pub fn to_point(&self) -> Point {
        let rare = self.rare.as_deref();
        let value = match self.kind {
            Kind::Missing => None,
            Kind::Bool => Some(Value::Bool(self.bits != 0)),
            Kind::Int => Some(Value::Int(self.bits as i64)),
            Kind::Float => Some(Value::Float(f64::from_bits(self.bits))),
            Kind::Text => Some(Value::Text(
                rare.and_then(|r| r.text.as_deref())
                    .unwrap_or_default()
                    .to_string(),
            )),
        };
        Point {
            ts_us: self.ts_us,
            revision: self.revision,
            server_ts_us: self.server_ts_us,
            value,
            quality: Quality {
                level: self.level,
                reason: rare.map(|r| r.reason.to_string()).unwrap_or_default(),
            },
            id: rare.and_then(|r| r.id.as_deref().map(String::from)),
        }
    }

    /// What this reading keeps on the heap beside itself.
    fn heap_bytes(&self) -> usize {
        self.rare.as_deref().map_or(0, |r| {
            std::mem::size_of::<Rare>()
                + r.text.as_ref().map_or(0, |t| t.len())
                + r.reason.len()
                + r.id.as_ref().map_or(0, |t| t.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(value: Option<Value>, reason: &str, id: Option<&str>, server_ts_us: i64) -> Point {
        Point {
            ts_us: -5,
            revision: 7,
            server_ts_us,
            value,
            quality: Quality {
                level: QualityLevel::Uncertain,
                reason: reason.into(),
            },
            id: id.map(String::from),
        }
    }

    #[test]
    fn a_hot_point_gives_back_the_reading_it_was_made_of() {
        let points = [
            point(None, "", None, -5),
            point(Some(Value::Bool(true)), "", None, -5),
            point(Some(Value::Bool(false)), "", None, 9),
            point(Some(Value::Int(-42)), "", None, -5),
            point(Some(Value::Int(i64::MAX)), "", None, -5),
            point(Some(Value::Float(-0.0)), "", None, -5),
            point(Some(Value::Float(2.5e300)), "stale", None, -5),
            point(Some(Value::Text("open".into())), "", Some("r1"), 11),
            point(Some(Value::Text(String::new())), "comm lost", None, -5),
        ];
        for p in points {
            let back = HotPoint::from_point(p.clone()).to_point();
            assert_eq!(format!("{back:?}"), format!("{p:?}"));
        }
    }

    #[test]
    fn a_polled_reading_is_held_in_48_bytes_and_nothing_aside() {
        assert_eq!(std::mem::size_of::<HotPoint>(), 48);
        let polled = HotPoint::from_point(point(Some(Value::Float(1.5)), "", None, -5));
        assert_eq!(polled.heap_bytes(), 0);
        let ingested = HotPoint::from_point(point(Some(Value::Int(1)), "", Some("id-1"), 3));
        assert!(ingested.heap_bytes() >= std::mem::size_of::<Rare>() + 4);
        let mut tail = Vec::with_capacity(10);
        tail.push(polled);
        assert_eq!(tail_bytes(&tail), 48 + 10 * 48, "the whole capacity counts");
    }

    #[test]
    fn added_readings_are_counted_as_what_they_hold() {
        let mut hot = Hot::default();
        let batch = |n: i64, id: Option<&str>| {
            let points = (0..n)
                .map(|i| HotPoint::from_point(point(Some(Value::Int(i)), "", id, i)))
                .collect::<Vec<_>>();
            let journal = (0..n).map(|i| (1, i)).collect();
            (
                TagMap::from_iter([(1, points.clone()), (2, points)]),
                journal,
            )
        };
        let held = |hot: &Hot| {
            hot.tail.values().map(tail_bytes).sum::<usize>() + hot.journal.capacity() * 16
        };
        for (n, id) in [(3, None), (5, Some("client-id")), (40, None)] {
            let (tail, journal) = batch(n, id);
            hot.add_readings(tail, journal);
            assert_eq!(hot.bytes, held(&hot), "after a batch of {n}");
        }
        hot.drop_tail(2);
        assert_eq!(hot.bytes, held(&hot), "after a purge");
    }
}
