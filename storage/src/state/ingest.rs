//! Applying a client's ingest batch: every reading checked against its tag
//! (all or nothing), readings whose id the ingest id index remembers
//! counted as duplicates (see `ingest_ids`), the rest stored with the next
//! revisions. Two forms arrive: the compact batch the API edge encodes
//! with tag ids ([`bifrost_model::poll::IngestBatch`]), and the older
//! command with tag names that a log written before it may still hold.
//! Knows nothing of Raft.

use std::collections::HashMap;

use bifrost_chunk::Point;
use bifrost_model::poll::IngestBatch;

use super::{cf, ingest_ids, ApplyBatch, IngestOutcome, CF_INGEST_IDS};
use crate::model::{NewReading, Tag};
use crate::{Rejection, Result};

/// A reading a partial ingest did not store: its position in the batch
/// (from 0) and why.
pub type Skipped = (u32, String);

/// One reading of a batch, checked, ready to store.
struct Checked {
    tag_id: u64,
    /// The tag's name, only when the batch collects readings for watchers.
    tag: Option<String>,
    point: Point,
}

impl ApplyBatch {
    /// Stores the readings of an encoded [`IngestBatch`], all or nothing: if
    /// one no longer fits its tag (deleted, or changed since the API edge
    /// checked it) nothing is stored and the rejection names the reading.
    pub fn insert_ingested(&mut self, bytes: &[u8]) -> Result<Result<IngestOutcome, Rejection>> {
        let batch = match IngestBatch::decode(bytes) {
            Ok(b) => b,
            Err(e) => return Ok(Err(Rejection::invalid(format!("ingest batch: {e}")))),
        };
        let checked: Result<Vec<Checked>, Rejection> =
            self.check_ingested(batch).into_iter().collect();
        match checked {
            Ok(checked) => Ok(Ok(
                self.store_checked(checked.into_iter().map(Some).collect())?
            )),
            Err(rejection) => Ok(Err(rejection)),
        }
    }

    /// Stores the readings of an encoded [`IngestBatch`] that still fit
    /// their tags and skips the others, returning each skipped reading's
    /// position in the batch (from 0) with the reason. For dual-writing
    /// gateways, which must not lose good readings over one bad one.
    pub fn insert_ingested_partly(
        &mut self,
        bytes: &[u8],
    ) -> Result<Result<(IngestOutcome, Vec<Skipped>), Rejection>> {
        let batch = match IngestBatch::decode(bytes) {
            Ok(b) => b,
            Err(e) => return Ok(Err(Rejection::invalid(format!("ingest batch: {e}")))),
        };
        let mut rejected = Vec::new();
        let mut items = Vec::with_capacity(batch.readings.len());
        for (i, checked) in self.check_ingested(batch).into_iter().enumerate() {
            match checked {
                Ok(c) => items.push(Some(c)),
                Err(e) => {
                    rejected.push((i as u32, e.message));
                    items.push(None);
                }
            }
        }
        let mut outcome = self.store_checked(items)?;
        outcome.skipped = rejected.len() as u64;
        Ok(Ok((outcome, rejected)))
    }

    /// Each reading of `batch` checked against its tag as it is now.
    fn check_ingested(&self, batch: IngestBatch) -> Vec<Result<Checked, Rejection>> {
        let collecting = self.collected.is_some();
        let cache = self.inner.cache.read();
        let server_ts_us = batch.server_ts_us;
        let readings = batch.readings.into_iter().enumerate();
        readings
            .map(|(i, r)| {
                let mut v = r.value;
                let rejected = |what: String| {
                    Rejection::invalid(format!("reading {} (id '{}'): {what}", i + 1, r.id))
                };
                let Some(tag) = self.live_tag(&cache, v.tag_id) else {
                    return Err(rejected(format!(
                        "tag id {} is gone (deleted or replaced since the request was \
                         checked); send it again",
                        v.tag_id
                    )));
                };
                v.value = tag.accept(v.value, &v.quality).map_err(rejected)?;
                let point = Point {
                    ts_us: v.ts_us,
                    revision: 0,
                    server_ts_us,
                    value: v.value,
                    quality: v.quality,
                    id: Some(r.id),
                };
                Ok(Checked {
                    tag_id: tag.id,
                    tag: collecting.then(|| tag.name.clone()),
                    point,
                })
            })
            .collect()
    }

    /// Stores a batch of readings named by tag. With `skip_invalid` false
    /// the batch is all or nothing: if any reading does not fit its tag,
    /// nothing is stored and the rejection names the reading. With
    /// `skip_invalid` (polled readings of an older log, whose tag may have
    /// been deleted or changed since they were acquired) such readings are
    /// skipped and counted instead.
    pub fn insert_readings(
        &mut self,
        mut readings: Vec<NewReading>,
        skip_invalid: bool,
    ) -> Result<Result<IngestOutcome, Rejection>> {
        let mut checked = Vec::with_capacity(readings.len());
        let mut by_name: HashMap<String, Option<Tag>> = HashMap::new();
        for (i, r) in readings.iter_mut().enumerate() {
            if !by_name.contains_key(&r.tag) {
                by_name.insert(r.tag.clone(), self.tag(&r.tag));
            }
            let problem = match &by_name[&r.tag] {
                None => Err(format!("unknown tag '{}'", r.tag)),
                Some(tag) => r.check_against(tag).map(|_| tag.id),
            };
            match problem {
                Ok(id) => checked.push(Some(id)),
                Err(_) if skip_invalid => checked.push(None),
                Err(e) => {
                    let at = format!("reading {} (id '{}')", i + 1, r.id);
                    return Ok(Err(Rejection::invalid(format!("{at}: {e}"))));
                }
            }
        }
        let items = readings.into_iter().zip(checked).map(|(r, tag_id)| {
            Some(Checked {
                tag_id: tag_id?,
                point: Point {
                    ts_us: r.ts_us,
                    revision: 0,
                    server_ts_us: r.server_ts_us,
                    value: r.value,
                    quality: r.quality,
                    id: Some(r.id),
                },
                tag: Some(r.tag),
            })
        });
        Ok(Ok(self.store_checked(items.collect())?))
    }

    /// Stores checked readings (`None`: one skipped) under the next
    /// revisions, but those whose id is remembered, which count as
    /// duplicates. Checks use the ingest clock from before this command;
    /// the readings then move it.
    fn store_checked(&mut self, items: Vec<Option<Checked>>) -> Result<IngestOutcome> {
        let ids: Vec<Option<&str>> = items
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.point.id.as_deref()))
            .collect();
        let fingerprints: Vec<u128> = ids
            .iter()
            .map(|id| id.map_or(0, ingest_ids::fingerprint))
            .collect();
        let known = self.known_ids(&ids, &fingerprints)?;
        let mut outcome = IngestOutcome::default();
        let mut clock = self.ingest_clock;
        for ((item, fp), known) in items.into_iter().zip(fingerprints).zip(known) {
            let Some(Checked {
                tag_id,
                tag,
                mut point,
            }) = item
            else {
                outcome.skipped += 1;
                continue;
            };
            if known || self.ids.contains_key(&fp) {
                outcome.duplicates += 1;
                continue;
            }
            let minute = ingest_ids::minute_of(point.server_ts_us);
            let id = point.id.as_deref().unwrap_or_default().into();
            self.ids.insert(fp, ingest_ids::Unflushed { minute, id });
            clock = clock.max(minute);
            self.revision += 1;
            point.revision = self.revision;
            self.store_point(tag_id, tag.as_deref().unwrap_or(""), point);
            outcome.stored += 1;
            outcome.last_revision = self.revision;
        }
        self.ingest_clock = clock;
        Ok(outcome)
    }

    /// For each id (`None`: a reading skipped), whether it is remembered
    /// (see `ingest_ids`) from an earlier command: in this batch, in the
    /// unflushed state (both by its fingerprint), or on disk (one
    /// multi-get for the ids memory does not hold).
    ///
    /// Memory first, then the disk: a flush writes the ids to disk and
    /// only then, under the same lock, drops them from memory, so an id
    /// not in memory at the first look is on disk at the second. The other
    /// order let a flush land between the two looks and hide an id from
    /// both, and a replica replaying its log beside a flush stored a resent
    /// batch again, under revisions the others never gave.
    fn known_ids(&self, ids: &[Option<&str>], fingerprints: &[u128]) -> Result<Vec<bool>> {
        let in_memory: Vec<Option<u32>> = {
            let hot = self.inner.hot.read();
            fingerprints
                .iter()
                .map(|fp| {
                    let unflushed = self.ids.get(fp).map(|u| u.minute);
                    unflushed.or_else(|| hot.id_stored(*fp))
                })
                .collect()
        };
        let ask: Vec<usize> = (0..ids.len()).filter(|&i| in_memory[i].is_none()).collect();
        let ids_cf = cf(&self.inner, CF_INGEST_IDS);
        let keys = ask
            .iter()
            .map(|&i| (ids_cf, ids[i].unwrap_or_default().as_bytes()));
        let mut stored = in_memory;
        for (&i, disk) in ask.iter().zip(self.inner.db.multi_get_cf(keys)) {
            stored[i] = disk?.map(|v| ingest_ids::minute_in(&v));
        }
        Ok(stored
            .into_iter()
            .map(|m| m.is_some_and(|m| ingest_ids::remembered(m, self.ingest_clock)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use bifrost_model::poll::{IngestBatch, IngestedValue, PolledValue};

    use crate::model::{DataType, Device, Protocol, Quality, Tag, Value};
    use crate::{RejectionKind, StateStore};

    fn batch(readings: &[(&str, u64, Value)]) -> Vec<u8> {
        let readings = readings.iter().map(|(id, tag_id, v)| IngestedValue {
            id: id.to_string(),
            value: PolledValue {
                tag_id: *tag_id,
                ts_us: 5_000,
                value: Some(v.clone()),
                quality: Quality::good(),
            },
        });
        IngestBatch {
            server_ts_us: 9_000,
            readings: readings.collect(),
        }
        .encode()
    }

    fn store_with(tags: &[(&str, DataType)]) -> (tempfile::TempDir, StateStore, Vec<Tag>) {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let mut b = s.batch();
        let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
        b.put_device(device, true, None, 1).unwrap();
        let made = tags
            .iter()
            .map(|(name, ty)| b.put_tag(Tag::new(*name, "plc", "hr:0", *ty), true, None, 2))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        b.commit().unwrap();
        (dir, s, made)
    }

    #[test]
    fn a_compact_batch_is_stored_with_its_ids_and_a_resend_is_a_duplicate() {
        let (_d, s, t) = store_with(&[("a", DataType::F64), ("b", DataType::U16)]);
        let bytes = batch(&[
            ("g:1", t[0].id, Value::Float(1.5)),
            ("g:2", t[1].id, Value::Int(7)),
        ]);
        let mut b = s.batch();
        b.collect_readings();
        let out = b.insert_ingested(&bytes).unwrap().unwrap();
        assert_eq!((out.stored, out.duplicates, out.last_revision), (2, 0, 2));
        let committed = b.commit().unwrap().readings.unwrap();
        let got: Vec<_> = committed
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.tag.as_str(),
                    r.ts_us,
                    r.server_ts_us,
                    r.revision,
                )
            })
            .collect();
        assert_eq!(
            got,
            [("g:1", "a", 5_000, 9_000, 1), ("g:2", "b", 5_000, 9_000, 2)]
        );
        let mut b = s.batch();
        let again = b.insert_ingested(&bytes).unwrap().unwrap();
        assert_eq!((again.stored, again.duplicates), (0, 2));
        assert_eq!(
            s.current("b").unwrap().unwrap().unwrap().value,
            Some(Value::Int(7))
        );
    }

    /// A resent batch is a duplicate however a flush, on another thread,
    /// moves its ids from memory to disk while the resend is checked (a
    /// flush that landed between a disk-first check's two looks hid them
    /// from both; in a cluster, a replica replaying its log then stored the
    /// resend again under revisions the others never gave).
    #[test]
    fn a_resend_is_a_duplicate_while_flushes_run_beside_it() {
        let (_d, s, t) = store_with(&[("a", DataType::F64)]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flusher = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    s.flush().unwrap();
                }
            })
        };
        let mut stored_again = vec![];
        for round in 0..3_000u32 {
            let ids: Vec<String> = (0..4).map(|i| format!("r{round}:{i}")).collect();
            let readings: Vec<(&str, u64, Value)> = ids
                .iter()
                .map(|id| (id.as_str(), t[0].id, Value::Float(round as f64)))
                .collect();
            let bytes = batch(&readings);
            let mut b = s.batch();
            let first = b.insert_ingested(&bytes).unwrap().unwrap();
            assert_eq!(first.stored, 4, "round {round}");
            b.commit().unwrap();
            let mut b = s.batch();
            let again = b.insert_ingested(&bytes).unwrap().unwrap();
            b.commit().unwrap();
            if again.stored != 0 {
                stored_again.push((round, again.stored));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flusher.join().unwrap();
        assert!(
            stored_again.is_empty(),
            "resends stored again (round, readings): {stored_again:?}"
        );
        assert_eq!(s.revision(), 3_000 * 4);
    }

    #[test]
    fn a_batch_whose_tag_went_or_changed_type_is_rejected_whole_naming_the_reading() {
        let (_d, s, t) = store_with(&[("a", DataType::F64), ("flag", DataType::Bool)]);
        let mut b = s.batch();
        b.delete_tag("a", true).unwrap();
        let bytes = batch(&[
            ("ok", t[1].id, Value::Bool(true)),
            ("x:9", t[0].id, Value::Float(1.0)),
        ]);
        let e = b.insert_ingested(&bytes).unwrap().unwrap_err();
        assert_eq!(e.kind, RejectionKind::InvalidArgument);
        assert!(
            e.message.contains("reading 2 (id 'x:9')")
                && e.message.contains(&format!("tag id {}", t[0].id)),
            "{e}"
        );
        let text = batch(&[("y", t[1].id, Value::Text("open".into()))]);
        let e = b.insert_ingested(&text).unwrap().unwrap_err();
        assert!(e.message.starts_with("reading 1 (id 'y'): "), "{e}");
        let e = b.insert_ingested(&[0xB8, 1, 2]).unwrap().unwrap_err();
        assert!(e.message.starts_with("ingest batch: "), "{e}");
        b.commit().unwrap();
        assert_eq!(s.revision(), 0, "nothing stored");
    }

    #[test]
    fn a_partial_batch_stores_what_fits_and_names_what_does_not() {
        let (_d, s, t) = store_with(&[("a", DataType::F64), ("flag", DataType::Bool)]);
        let mut b = s.batch();
        b.delete_tag("a", true).unwrap();
        let bytes = batch(&[
            ("ok:1", t[1].id, Value::Bool(true)),
            ("gone", t[0].id, Value::Float(1.0)),
            ("text", t[1].id, Value::Text("open".into())),
            ("ok:2", t[1].id, Value::Bool(false)),
        ]);
        let (out, rejected) = b.insert_ingested_partly(&bytes).unwrap().unwrap();
        assert_eq!((out.stored, out.skipped, out.last_revision), (2, 2, 2));
        let at: Vec<u32> = rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, [1, 2]);
        assert!(rejected[0].1.contains("is gone"), "{rejected:?}");
        assert!(
            rejected[1].1.starts_with("reading 3 (id 'text'): "),
            "{rejected:?}"
        );
        b.commit().unwrap();
        assert_eq!(
            s.current("flag").unwrap().unwrap().unwrap().value,
            Some(Value::Bool(false))
        );
        let mut b = s.batch();
        let (again, _) = b.insert_ingested_partly(&bytes).unwrap().unwrap();
        assert_eq!(
            (again.stored, again.duplicates),
            (0, 2),
            "a resend is deduplicated"
        );
    }
}
