//! `bifrost migrate-data`: converts a state database of an older format
//! into the current one (format 3), offline, keeping every revision as it
//! was so the node's Raft log and every subscriber's resume point stay
//! valid.
//!
//! From format 1 (one RocksDB record per reading, column families
//! `history` and `revisions`): `history` becomes per-tag chunks (each tag's
//! readings one sealed run, cut into chunks as a merge cuts them),
//! `revisions` becomes the revision journal, and the per-reading ids of
//! polled readings (`ORIGIN:SEQUENCE:INDEX`) become the per-origin settled
//! marks that deduplicate outbox replays now.
//!
//! From formats 1 and 2: the reading ids (`reading_ids`, one string key per
//! reading, kept forever) become the compact ingest id index (see
//! `ingest_ids`); their server times are not known, so the converted
//! entries are never forgotten, as before. Everything else (devices, tags,
//! current values, assignments, request results, the applied log id and
//! the other metadata, and format 2's chunks, segments and journal) is
//! copied as it is.
//!
//! The new database is written beside the old one and checked (every reading
//! and every revision counted) before the state's pointer file is switched
//! to it, atomically; the old one is kept under a `formatN-backup-` name for
//! the operator to delete. An interrupted run leaves the old state active
//! and can be started again. Knows nothing of Raft.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use bifrost_chunk::Point;
use rocksdb::{IteratorMode, Options, WriteBatch, DB};

use super::chunks::{self, CF_CHUNKS, CF_RUNS, SEALED};
use super::ingest_ids::{self, FlushedClock, CF_INGEST_IDS, KEPT};
use super::journal::{self, Record, CF_JOURNAL, RECORD_REVISIONS};
use super::polled::{origin_key, OriginState};
use super::segments::CF_SEGMENTS;
use super::{
    cf_descriptors, db_options, old_format, write_atomic, StoredReading, CF_ASSIGN, CF_CURRENT,
    CF_DEVICES, CF_META, CF_REQUESTS, CF_REQUESTS_BY_INDEX, CF_TAGS, FORMAT, META_FORMAT, POINTER,
};
use crate::codec::{decode, encode};
use crate::keys::{decode_u64, from_ordered_i64, u64_key};
use crate::{Error, MemoryBudget, Result};

/// Format 1's column families that go away.
const OLD_HISTORY: &str = "history";
const OLD_REVISIONS: &str = "revisions";
/// Formats 1 and 2: reading id (UTF-8) -> revision.
const OLD_IDS: &str = "reading_ids";
/// What format 1 and format 2 hold that the current format holds as it is.
const FORMAT1_KEPT: &[&str] = &[
    CF_DEVICES,
    CF_TAGS,
    CF_ASSIGN,
    CF_REQUESTS,
    CF_REQUESTS_BY_INDEX,
    CF_CURRENT,
    CF_META,
];
const FORMAT2_KEPT: &[&str] = &[
    CF_DEVICES,
    CF_TAGS,
    CF_ASSIGN,
    CF_REQUESTS,
    CF_REQUESTS_BY_INDEX,
    CF_CURRENT,
    CF_META,
    CF_CHUNKS,
    CF_RUNS,
    CF_SEGMENTS,
    CF_JOURNAL,
];
/// Records per write while copying.
const BATCH_KEYS: usize = 10_000;
/// The new database's directory name, under the state root.
const MIGRATED: &str = "sm-migrated";

/// What a migration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    pub readings: u64,
    pub tags: u64,
    /// The highest revision held (unchanged by the migration).
    pub revision: u64,
    /// Where the old database was kept.
    pub backup: PathBuf,
}

/// A stage of the migration and how far it got, for a progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Copied { records: u64 },
    Ids { ids: u64 },
    Journal { revisions: u64 },
    History { readings: u64 },
}

fn failed(what: impl std::fmt::Display) -> Error {
    Error::Migrate(what.to_string())
}

impl super::StateStore {
    /// Converts the state under `root` from format 1 to the current format
    /// (see the module). The node must be stopped. `progress` is called
    /// every so often.
    pub fn migrate(root: &Path, progress: &mut dyn FnMut(Progress)) -> Result<Migration> {
        let pointer = root.join(POINTER);
        let active = fs::read_to_string(&pointer)
            .map_err(|e| failed(format!("no state in {} ({e})", pointer.display())))?;
        let old_dir = root.join(active.trim());
        let format = old_format(&old_dir).ok_or_else(|| {
            failed(format!(
                "the state database in {} is already in format {FORMAT}: nothing to migrate",
                old_dir.display()
            ))
        })?;
        let families = DB::list_cf(&Options::default(), &old_dir)
            .map_err(|e| failed(format!("no database in {}: {e}", old_dir.display())))?;
        let old = DB::open_cf_for_read_only(&Options::default(), &old_dir, &families, false)?;
        let new_dir = root.join(MIGRATED);
        if new_dir.exists() {
            fs::remove_dir_all(&new_dir)?; // an interrupted earlier run
        }
        let budget = MemoryBudget::default();
        let descriptors = cf_descriptors(&budget, &FlushedClock::default());
        let new = DB::open_cf_descriptors(&db_options(&budget), &new_dir, descriptors)?;
        let (readings, tags) = if format == 1 {
            copy_unchanged(&old, &new, FORMAT1_KEPT, progress)?;
            convert_ids(&old, &new, progress)?;
            from_format1(&old, &new, progress)?
        } else {
            copy_unchanged(&old, &new, FORMAT2_KEPT, progress)?;
            convert_ids(&old, &new, progress)?;
            count_journal(&new)?
        };
        let meta = new.cf_handle(CF_META).expect("meta cf");
        new.put_cf(meta, META_FORMAT, u64_key(FORMAT))?;
        let revision = new
            .get_cf(meta, super::META_REVISION)?
            .and_then(|v| decode_u64(&v))
            .unwrap_or(0);
        new.flush()?;
        drop(new);
        drop(old);
        let backup = root.join(format!("format{format}-backup-{}", active.trim()));
        write_atomic(&pointer, MIGRATED.as_bytes())?;
        fs::rename(&old_dir, &backup)?;
        Ok(Migration {
            readings,
            tags,
            revision,
            backup,
        })
    }
}

/// Format 1's history and revisions as chunks and journal, and its polled
/// ids as settled marks, checked against each other. Returns readings and
/// tags held.
fn from_format1(old: &DB, new: &DB, progress: &mut dyn FnMut(Progress)) -> Result<(u64, u64)> {
    let (revisions, min_revision) = write_journal(old, new, progress)?;
    write_origins(old, new)?;
    let (readings, tags) = write_history(old, new, &min_revision, progress)?;
    if readings != revisions {
        return Err(failed(format!(
            "{readings} readings in '{OLD_HISTORY}' but {revisions} in '{OLD_REVISIONS}': \
             the old database is inconsistent; nothing was changed"
        )));
    }
    Ok((readings, tags))
}

/// Readings and tags a journal holds (tag id 0 marks a purged revision).
fn count_journal(db: &DB) -> Result<(u64, u64)> {
    let mut tags = std::collections::HashSet::new();
    let mut readings = 0;
    journal::records_from(db, rocksdb::ReadOptions::default, 0, &mut |r| {
        for tag in r.tags.iter().filter(|t| **t != 0) {
            readings += 1;
            tags.insert(*tag);
        }
        Ok(true)
    })?;
    Ok((readings, tags.len() as u64))
}

/// Every reading id of `reading_ids` into the ingest id index (the same
/// key, the minute [`KEPT`] for value): remembered for good.
fn convert_ids(old: &DB, new: &DB, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let mut ids = 0u64;
    let kept = ingest_ids::value(KEPT);
    let to = (CF_INGEST_IDS, Some(kept.as_slice()));
    copy_family(old, new, OLD_IDS, to, &mut ids, &mut |ids| {
        progress(Progress::Ids { ids })
    })?;
    progress(Progress::Ids { ids });
    Ok(())
}

/// Copies the column families `names`, whose records did not change.
fn copy_unchanged(
    old: &DB,
    new: &DB,
    names: &[&str],
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let mut records = 0u64;
    for &name in names {
        copy_family(old, new, name, (name, None), &mut records, &mut |records| {
            progress(Progress::Copied { records })
        })?;
    }
    progress(Progress::Copied { records });
    Ok(())
}

/// Copies every record of family `from` of `old` into family `to.0` of
/// `new`, with its value, or with the value `to.1` when there is one, in
/// writes of [`BATCH_KEYS`]; counts them in `copied` and reports the count
/// after each write but the last. A family the old database lacks (none of
/// its kind was ever written) copies nothing.
fn copy_family(
    old: &DB,
    new: &DB,
    from: &str,
    to: (&str, Option<&[u8]>),
    copied: &mut u64,
    report: &mut dyn FnMut(u64),
) -> Result<()> {
    let (to, value) = to;
    let Some(from) = old.cf_handle(from) else {
        return Ok(());
    };
    let to = new.cf_handle(to).expect("every family is created");
    let mut wb = WriteBatch::default();
    for item in old.iterator_cf(from, IteratorMode::Start) {
        let (k, v) = item?;
        wb.put_cf(to, k, value.unwrap_or(&v));
        *copied += 1;
        if wb.len() >= BATCH_KEYS {
            new.write(std::mem::take(&mut wb))?;
            report(*copied);
        }
    }
    new.write(wb)?;
    Ok(())
}

/// `(tag id, ts, revision)` of a format-1 history key.
fn parse_history_key(k: &[u8]) -> Result<(u64, i64, u64)> {
    let bad = || failed(format!("a format-1 history key of {} bytes", k.len()));
    if k.len() != 24 {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| decode_u64(&k[r]).ok_or_else(bad);
    Ok((n(0..8)?, from_ordered_i64(n(8..16)?), n(16..24)?))
}

/// The journal from `revisions` (revision -> history key), in revision
/// order; a revision missing there (a reading purged with its tag) gets tag
/// id 0, which no tag has. Returns the revisions held and each tag's lowest.
fn write_journal(
    old: &DB,
    new: &DB,
    progress: &mut dyn FnMut(Progress),
) -> Result<(u64, HashMap<u64, u64>)> {
    let cf = old
        .cf_handle(OLD_REVISIONS)
        .ok_or_else(|| failed(format!("no '{OLD_REVISIONS}' column family")))?;
    let mut min_revision: HashMap<u64, u64> = HashMap::new();
    let mut entries: Vec<(u64, i64)> = Vec::new();
    let mut first: Option<u64> = None;
    let mut held = 0u64;
    let flush = |first: u64, entries: &mut Vec<(u64, i64)>| -> Result<()> {
        let mut wb = WriteBatch::default();
        for record in Record::cut(first, entries) {
            record.write(new, &mut wb);
        }
        entries.clear();
        new.write(wb)?;
        Ok(())
    };
    for item in old.iterator_cf(cf, IteratorMode::Start) {
        let (k, v) = item?;
        let revision = decode_u64(&k).ok_or_else(|| failed("a format-1 revision key"))?;
        let (tag, ts, _) = parse_history_key(&v)?;
        let start = *first.get_or_insert(revision);
        let mut next = start + entries.len() as u64;
        while next < revision {
            let ts = entries.last().map_or(ts, |e| e.1);
            entries.push((0, ts));
            next += 1;
        }
        entries.push((tag, ts));
        min_revision.entry(tag).or_insert(revision);
        held += 1;
        if entries.len() >= RECORD_REVISIONS * 64 {
            flush(start, &mut entries)?;
            first = Some(next + 1);
            progress(Progress::Journal { revisions: held });
        }
    }
    if let Some(start) = first.filter(|_| !entries.is_empty()) {
        flush(start, &mut entries)?;
    }
    progress(Progress::Journal { revisions: held });
    Ok((held, min_revision))
}

/// Per origin, everything up to the highest outbox sequence whose readings
/// were stored is settled (an outbox is committed in order, so older
/// records were stored or dropped).
fn write_origins(old: &DB, new: &DB) -> Result<()> {
    let Some(ids) = old.cf_handle(OLD_IDS) else {
        return Ok(());
    };
    let mut highest: HashMap<String, u64> = HashMap::new();
    for item in old.iterator_cf(ids, IteratorMode::Start) {
        let (k, _) = item?;
        let id = String::from_utf8_lossy(&k);
        let Some((origin, seq)) = polled_id(&id) else {
            continue;
        };
        let e = highest.entry(origin.to_string()).or_insert(seq);
        *e = (*e).max(seq);
    }
    let meta = new.cf_handle(CF_META).expect("meta cf");
    for (origin, seq) in highest {
        let state = OriginState {
            settled_below: seq + 1,
            ..Default::default()
        };
        new.put_cf(meta, origin_key(&origin), encode(&state))?;
    }
    Ok(())
}

/// `(origin, sequence)` of a polled reading's format-1 id
/// `NODE-INCARNATION:SEQUENCE:INDEX`.
fn polled_id(id: &str) -> Option<(&str, u64)> {
    let mut parts = id.split(':');
    let (origin, seq, index) = (parts.next()?, parts.next()?, parts.next()?);
    let (node, incarnation) = origin.split_once('-')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none() && numeric(node) && numeric(incarnation) && numeric(index))
        .then_some(())?;
    Some((origin, seq.parse().ok()?))
}

/// Each tag's readings from `history` (in (tag, ts, revision) order) as one
/// sealed run of chunks. Returns readings and tags written.
fn write_history(
    old: &DB,
    new: &DB,
    min_revision: &HashMap<u64, u64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(u64, u64)> {
    let cf = old
        .cf_handle(OLD_HISTORY)
        .ok_or_else(|| failed(format!("no '{OLD_HISTORY}' column family")))?;
    let mut out = RunWriter {
        new,
        wb: WriteBatch::default(),
        chunk: Vec::new(),
        tag: None,
        run_min_rev: 0,
        readings: 0,
        tags: 0,
    };
    for item in old.iterator_cf(cf, IteratorMode::Start) {
        let (k, v) = item?;
        let (tag, ts, revision) = parse_history_key(&k)?;
        let r: StoredReading = decode(&v)
            .map_err(|e| failed(format!("reading of tag {tag} at revision {revision}: {e}")))?;
        if out.tag != Some(tag) {
            out.end_chunk()?;
            out.tag = Some(tag);
            out.tags += 1;
            out.run_min_rev = *min_revision.get(&tag).ok_or_else(|| {
                failed(format!(
                    "tag {tag} has readings in '{OLD_HISTORY}' but none in '{OLD_REVISIONS}'"
                ))
            })?;
        }
        let point = Point {
            ts_us: ts,
            revision,
            server_ts_us: r.server_ts_us,
            value: r.value,
            quality: r.quality,
            id: (!r.id.is_empty()).then_some(r.id),
        };
        if !chunks::fits(&out.chunk, &point) {
            out.end_chunk()?;
        }
        out.chunk.push(point);
        out.readings += 1;
        if out.readings.is_multiple_of(1_000_000) {
            progress(Progress::History {
                readings: out.readings,
            });
        }
    }
    out.end_chunk()?;
    new.write(out.wb)?;
    progress(Progress::History {
        readings: out.readings,
    });
    Ok((out.readings, out.tags))
}

/// Cuts one tag's readings, already in (ts, revision) order, into chunks.
struct RunWriter<'a> {
    new: &'a DB,
    wb: WriteBatch,
    chunk: Vec<Point>,
    tag: Option<u64>,
    run_min_rev: u64,
    readings: u64,
    tags: u64,
}

impl RunWriter<'_> {
    fn end_chunk(&mut self) -> Result<()> {
        let (Some(tag), false) = (self.tag, self.chunk.is_empty()) else {
            return Ok(());
        };
        let chunk = std::mem::take(&mut self.chunk);
        let encoded = chunks::encode_chunk(tag, &chunk, self.run_min_rev, SEALED);
        chunks::put_run(self.new, &mut self.wb, &[encoded]);
        if self.wb.len() >= BATCH_KEYS {
            self.new.write(std::mem::take(&mut self.wb))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
