//! Storing polled records: exactly once per (origin, outbox sequence),
//! without a per-reading id.
//!
//! An origin is one incarnation of one node's outbox. For each, the state
//! keeps the sequence below which every record is settled (applied, or
//! dropped by the outbox before it was sent) and the few applied above it:
//! a replayed record is recognised without any per-reading index. Records
//! carry the bytes the outbox wrote ([`DevicePoll`]); readings whose tag was
//! deleted or changed since the poll are skipped and counted.

use std::collections::BTreeSet;

use bifrost_chunk::Point;
use bifrost_model::poll::{DevicePoll, PolledValue};
use serde::{Deserialize, Serialize};

use super::{ApplyBatch, IngestOutcome, CF_META};
use crate::codec::encode;

/// Prefix of the meta keys of origins: `origin/NAME` -> [`OriginState`].
pub(super) const META_ORIGIN_PREFIX: &str = "origin/";

/// Which records of one origin are settled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct OriginState {
    /// Every sequence below this one is settled.
    pub settled_below: u64,
    /// Applied sequences at or above `settled_below`.
    pub above: BTreeSet<u64>,
}

impl OriginState {
    pub fn seen(&self, seq: u64) -> bool {
        seq < self.settled_below || self.above.contains(&seq)
    }

    pub fn mark(&mut self, seq: u64) {
        self.above.insert(seq);
        self.close_up();
    }

    /// Everything below `floor` is settled: the sender's outbox holds
    /// nothing older.
    pub fn raise_floor(&mut self, floor: u64) {
        if floor > self.settled_below {
            self.settled_below = floor;
            self.above = self.above.split_off(&floor);
            self.close_up();
        }
    }

    fn close_up(&mut self) {
        while self.above.remove(&self.settled_below) {
            self.settled_below += 1;
        }
    }
}

pub(super) fn origin_key(origin: &str) -> Vec<u8> {
    format!("{META_ORIGIN_PREFIX}{origin}").into_bytes()
}

impl ApplyBatch {
    fn origin(&self, origin: &str) -> OriginState {
        match self.origins.get(origin) {
            Some(o) => o.clone(),
            None => self
                .inner
                .cache
                .read()
                .origins
                .get(origin)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Stores polled records `(sequence, bytes)` of `origin`, each once;
    /// `floor` is the oldest sequence still in the sender's outbox.
    /// Duplicates and skipped readings are counted, never refused.
    pub fn insert_polled(
        &mut self,
        origin: &str,
        floor: u64,
        records: Vec<(u64, Vec<u8>)>,
    ) -> IngestOutcome {
        let mut state = self.origin(origin);
        state.raise_floor(floor);
        let mut outcome = IngestOutcome::default();
        for (seq, bytes) in records {
            let poll = match DevicePoll::decode(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(origin, seq, error = %e, "polled record skipped: cannot be read");
                    outcome.skipped += 1;
                    continue;
                }
            };
            if state.seen(seq) {
                outcome.duplicates += poll.readings.len() as u64;
                continue;
            }
            state.mark(seq);
            self.store_poll(poll, &mut outcome);
        }
        self.ops.put(CF_META, origin_key(origin), encode(&state));
        self.origins.insert(origin.to_string(), state);
        outcome
    }

    fn store_poll(&mut self, poll: DevicePoll, outcome: &mut IngestOutcome) {
        // Each reading's tag is looked up and its value checked under one
        // read of the cache, by reference: no tag is cloned per reading.
        let collecting = self.collected.is_some();
        let accepted: Vec<Option<(u64, Option<String>, PolledValue)>> = {
            let cache = self.inner.cache.read();
            poll.readings
                .into_iter()
                .map(|mut r| {
                    let tag = self.live_tag(&cache, r.tag_id)?;
                    r.value = tag.accept(r.value, &r.quality).ok()?;
                    Some((tag.id, collecting.then(|| tag.name.clone()), r))
                })
                .collect()
        };
        for a in accepted {
            let Some((tag_id, name, r)) = a else {
                outcome.skipped += 1;
                continue;
            };
            self.revision += 1;
            let point = Point {
                ts_us: r.ts_us,
                revision: self.revision,
                server_ts_us: poll.ts_us,
                value: r.value,
                quality: r.quality,
                id: None,
            };
            self.store_point(tag_id, name.as_deref().unwrap_or(""), point);
            outcome.stored += 1;
            outcome.last_revision = self.revision;
        }
    }

    /// The tag with id `id`, if it exists under that id as of this batch
    /// (a tag created, changed or deleted earlier in the same batch
    /// included: apply must not depend on how entries were grouped into
    /// batches).
    pub(super) fn live_tag<'a>(
        &'a self,
        cache: &'a super::Cache,
        id: u64,
    ) -> Option<&'a bifrost_model::Tag> {
        if self.tags.is_empty() {
            return cache.tags.by_id(id);
        }
        if let Some(t) = self.tags.values().flatten().find(|t| t.id == id) {
            return Some(t);
        }
        let tag = cache.tags.by_id(id)?;
        // Not changed by this batch (a change would have been found above,
        // or the tag was deleted or replaced under its name).
        (!self.tags.contains_key(&tag.name)).then_some(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::OriginState;
    use crate::model::{DataType, Device, Protocol, Quality, Tag, Value};
    use crate::StateStore;
    use bifrost_model::poll::{DevicePoll, PolledValue};

    fn record(tag_id: u64, ts_us: i64) -> Vec<u8> {
        DevicePoll {
            device: "plc".into(),
            epoch: 1,
            ts_us,
            readings: vec![PolledValue {
                tag_id,
                ts_us,
                value: Some(Value::Float(1.5)),
                quality: Quality::good(),
            }],
        }
        .encode()
    }

    #[test]
    fn a_tag_created_in_the_same_batch_takes_its_polled_readings() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let mut b = s.batch();
        b.put_device(
            Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502"),
            true,
            None,
            1,
        )
        .unwrap();
        let t = b
            .put_tag(Tag::new("t", "plc", "hr:0", DataType::F64), true, None, 2)
            .unwrap();
        let out = b.insert_polled("1-a", 1, vec![(1, record(t.id, 10))]);
        assert_eq!((out.stored, out.skipped), (1, 0));
        // A replay of the record, in a later batch, stores nothing.
        b.commit().unwrap();
        let mut b = s.batch();
        let out = b.insert_polled("1-a", 1, vec![(1, record(t.id, 10)), (2, record(999, 11))]);
        assert_eq!((out.stored, out.duplicates, out.skipped), (0, 1, 1));
        b.commit().unwrap();
        assert_eq!(s.revision(), 1);
        let got = s.readings_after(0, 10).unwrap();
        assert_eq!(
            (got[0].tag.as_str(), got[0].id.as_str(), got[0].ts_us),
            ("t", "", 10)
        );
    }

    #[test]
    fn replays_are_seen_and_the_set_above_the_floor_stays_small() {
        let mut o = OriginState::default();
        o.raise_floor(1);
        assert!(!o.seen(1));
        for seq in [1, 2, 4, 5] {
            o.mark(seq);
        }
        assert_eq!((o.settled_below, o.above.len()), (3, 2));
        assert!(o.seen(2) && o.seen(4) && !o.seen(3) && !o.seen(6));
        // Record 3 was dropped by a full outbox: the floor moves past it.
        o.raise_floor(6);
        assert_eq!((o.settled_below, o.above.len()), (6, 0));
        assert!(o.seen(3) && o.seen(5) && !o.seen(6));
        o.raise_floor(2);
        assert_eq!(o.settled_below, 6, "a floor never goes down");
    }
}
