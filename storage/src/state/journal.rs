//! The revision journal: which tag each revision belongs to.
//!
//! Readings are stored per tag; the journal gives the cluster-wide order
//! back. A record holds the tag ids of up to [`RECORD_REVISIONS`]
//! consecutive revisions (varints, LZ4 on disk: polled batches repeat their
//! tag order, so this costs well under a byte per reading) and the time
//! span of their readings, which retention reads without decoding history.
//! Key: first revision (`journal` column family). Written by the flush; the
//! unflushed tail is in memory.

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::keys::{decode_u64, u64_key};
use crate::{Error, Result};

pub(super) const CF_JOURNAL: &str = "journal";

/// Most revisions in one record.
pub(super) const RECORD_REVISIONS: usize = 4096;

/// Tag ids of consecutive revisions from `first`, and their time span.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    #[serde(skip)]
    pub first: u64,
    pub tags: Vec<u64>,
    pub min_ts: i64,
    pub max_ts: i64,
}

impl Record {
    /// The last revision in the record.
    pub fn last(&self) -> u64 {
        self.first + self.tags.len() as u64 - 1
    }

    /// Records for `entries` (tag id, reading ts) of revisions from `first`.
    pub fn cut(first: u64, entries: &[(u64, i64)]) -> Vec<Record> {
        entries
            .chunks(RECORD_REVISIONS)
            .enumerate()
            .map(|(i, part)| Record {
                first: first + (i * RECORD_REVISIONS) as u64,
                tags: part.iter().map(|e| e.0).collect(),
                min_ts: part.iter().map(|e| e.1).min().unwrap_or(0),
                max_ts: part.iter().map(|e| e.1).max().unwrap_or(0),
            })
            .collect()
    }

    pub fn write(&self, db: &DB, wb: &mut WriteBatch) {
        let cf = db.cf_handle(CF_JOURNAL).expect("journal cf");
        wb.put_cf(cf, u64_key(self.first), encode(self));
    }

    fn parse(k: &[u8], v: &[u8]) -> Result<Record> {
        let first = decode_u64(k).ok_or_else(|| Error::Corrupt("journal key".into()))?;
        let mut r: Record = decode(v)?;
        if r.tags.is_empty() {
            return Err(Error::Corrupt(format!(
                "empty journal record at revision {first}"
            )));
        }
        r.first = first;
        Ok(r)
    }
}

/// The records on disk holding revisions from `from` on, in order, passed
/// to `visit` until it returns false.
pub(super) fn records_from(
    db: &DB,
    ro: impl Fn() -> ReadOptions,
    from: u64,
    visit: &mut dyn FnMut(Record) -> Result<bool>,
) -> Result<()> {
    let cf = db.cf_handle(CF_JOURNAL).expect("journal cf");
    // The record holding `from` starts at or before it.
    let start = match db
        .iterator_cf_opt(
            cf,
            ro(),
            IteratorMode::From(&u64_key(from), Direction::Reverse),
        )
        .next()
    {
        Some(item) => item?.0.to_vec(),
        None => u64_key(from).to_vec(),
    };
    for item in db.iterator_cf_opt(cf, ro(), IteratorMode::From(&start, Direction::Forward)) {
        let (k, v) = item?;
        let r = Record::parse(&k, &v)?;
        if r.last() < from {
            continue;
        }
        if !visit(r)? {
            break;
        }
    }
    Ok(())
}
