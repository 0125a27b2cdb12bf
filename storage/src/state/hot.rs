//! The in-memory part of the state: every tag's current value, and
//! everything applied since the last flush (readings per tag, the journal
//! tail, config and index changes, reading ids and request results).
//!
//! Apply adds to it when a batch commits; the flush empties it into the
//! database in one write. Nothing here is durable by itself: the Raft log
//! is, until a flush covers it.

use std::collections::{HashMap, HashSet};

use bifrost_chunk::Point;

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
    /// Reading ids stored (`Some(revision)`) or forgotten (`None`) since the flush.
    pub ids: HashMap<String, Option<u64>>,
    /// Request results recorded since the flush: id -> (log index, result).
    pub requests: HashMap<String, (u64, Vec<u8>)>,
    /// Rough bytes held by the unflushed part.
    pub bytes: usize,
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

    /// Unflushed readings of `tag` that `keep` accepts.
    pub fn tail_of(&self, tag: u64, keep: impl Fn(&Point) -> bool) -> Vec<Point> {
        self.tail
            .get(&tag)
            .map(|ps| ps.iter().filter(|p| keep(p)).cloned().collect())
            .unwrap_or_default()
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
