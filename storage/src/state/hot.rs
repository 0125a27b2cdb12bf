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

use super::ingest_ids::IdMap;
use super::ops::Ops;
use super::StoredReading;

/// A tag's current value: its reading with the greatest `(ts, revision)`.
#[derive(Clone, Debug)]
pub(super) struct Current {
    pub revision: u64,
    pub reading: StoredReading,
}

/// What a flush has not written yet, plus current values.
#[derive(Default)]
pub(super) struct Hot {
    /// Unflushed readings per tag id, in revision order.
    pub tail: HashMap<u64, Vec<Point>>,
    /// `(tag id, ts)` of each revision after `flushed_revision`.
    pub journal: Vec<(u64, i64)>,
    /// The last revision the database holds.
    pub flushed_revision: u64,
    /// Current value of every tag that has one.
    pub current: HashMap<u64, Current>,
    /// Tags whose current value changed (or went) since the flush.
    pub dirty_current: HashSet<u64>,
    /// Config and index changes, in order.
    pub ops: Ops,
    /// Ingested reading ids stored since the flush, by fingerprint (see
    /// `ingest_ids`).
    pub ids: IdMap,
    /// Request results recorded since the flush: id -> (log index, result).
    pub requests: HashMap<String, (u64, Vec<u8>)>,
    /// Rough bytes held by the unflushed part.
    pub bytes: usize,
    /// What the running flush took out and is writing: still read from
    /// here until the write is in the database.
    pub frozen: Option<Arc<Frozen>>,
}

/// The part of [`Hot`] a flush is writing, as it was when the flush began.
#[derive(Default)]
pub(super) struct Frozen {
    pub tail: HashMap<u64, Vec<Point>>,
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

    /// Unflushed readings of `tag` that `keep` accepts (those being
    /// flushed included).
    pub fn tail_of(&self, tag: u64, keep: impl Fn(&Point) -> bool) -> Vec<Point> {
        let mut out = Vec::new();
        self.for_each_unflushed(tag, |p| {
            if keep(p) {
                out.push(p.clone());
            }
        });
        out
    }

    /// Hands each unflushed reading of `tag` (those being flushed
    /// included) to `visit`, in place.
    pub fn for_each_unflushed(&self, tag: u64, visit: impl FnMut(&Point)) {
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
                    .map(move |p| (*tag, p.clone()))
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
        self.bytes = 0;
        self.frozen = Some(frozen.clone());
        frozen
    }

    /// Puts a frozen part back in front of what came since, after its
    /// write failed, so the next flush writes it.
    pub fn thaw(&mut self, f: &Frozen) {
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

/// Rough memory of one reading in the tail.
pub(super) fn point_bytes(p: &Point) -> usize {
    let text = |v: &Option<bifrost_model::Value>| match v {
        Some(bifrost_model::Value::Text(s)) => s.len(),
        _ => 0,
    };
    std::mem::size_of::<Point>()
        + 16
        + p.quality.reason.len()
        + p.id.as_ref().map_or(0, |s| s.len())
        + text(&p.value)
}
