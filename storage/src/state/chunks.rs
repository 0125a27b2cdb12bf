//! History on disk: per-tag compressed chunks and the run index.
//!
//! A **chunk** holds readings of one tag, sorted by `(ts, revision)`,
//! encoded by `bifrost-chunk`: at most [`CHUNK_POINTS`] readings spanning at
//! most [`CHUNK_SPAN_US`]. Key `tag | min ts | max revision` in `chunks`, so
//! a time range of one tag is one contiguous key range (widened by one span
//! at the start: chunks may overlap in time when late readings arrive, and
//! reads merge them).
//!
//! A **run** is what one merge of flushed segments wrote for one tag (level
//! 0), or what a merge of consecutive runs wrote (one level up). The runs of a tag cover disjoint,
//! increasing revision ranges; `runs` indexes each chunk by
//! `tag | max revision`, with the chunk's and the run's lowest revision, so
//! the readings of a tag in a revision range are found without a time scan.
//!
//! Knows nothing of Raft; only the merger (and `migrate-data`) writes here.

use bifrost_chunk::Point;
use rocksdb::{WriteBatch, DB};

use crate::keys::{decode_u64, from_ordered_i64, ordered_i64, u64_key};
use crate::{Error, Result};

pub(super) const CF_CHUNKS: &str = "chunks";
pub(super) const CF_RUNS: &str = "runs";

/// Most readings in one chunk.
pub(super) const CHUNK_POINTS: usize = 1024;
/// Longest time one chunk covers: a reading at `t` is in a chunk whose
/// first reading is at or after `t - CHUNK_SPAN_US`.
pub(super) const CHUNK_SPAN_US: i64 = 3_600_000_000;
/// A run at or above this level is never merged again.
pub(super) const SEALED: u8 = u8::MAX;
/// How many trailing runs of one level are merged into one of the next.
pub(super) const MERGE_FAN_IN: usize = 16;

pub(super) fn chunk_key(tag: u64, min_ts: i64, max_rev: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&u64_key(tag));
    k[8..16].copy_from_slice(&u64_key(ordered_i64(min_ts)));
    k[16..].copy_from_slice(&u64_key(max_rev));
    k
}

/// `(tag, min ts, max revision)` of a chunk key.
pub(super) fn parse_chunk_key(k: &[u8]) -> Result<(u64, i64, u64)> {
    let bad = || Error::Corrupt(format!("chunk key of {} bytes", k.len()));
    if k.len() != 24 {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| decode_u64(&k[r]).ok_or_else(bad);
    Ok((n(0..8)?, from_ordered_i64(n(8..16)?), n(16..24)?))
}

pub(super) fn run_key(tag: u64, max_rev: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&u64_key(tag));
    k[8..].copy_from_slice(&u64_key(max_rev));
    k
}

/// One chunk as the run index describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RunEntry {
    pub tag: u64,
    pub max_rev: u64,
    pub min_ts: i64,
    pub chunk_min_rev: u64,
    pub run_min_rev: u64,
    pub points: u32,
    pub level: u8,
}

impl RunEntry {
    fn value(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(29);
        v.extend_from_slice(&u64_key(ordered_i64(self.min_ts)));
        v.extend_from_slice(&u64_key(self.chunk_min_rev));
        v.extend_from_slice(&u64_key(self.run_min_rev));
        v.extend_from_slice(&self.points.to_be_bytes());
        v.push(self.level);
        v
    }

    pub fn parse(k: &[u8], v: &[u8]) -> Result<RunEntry> {
        let bad = || {
            Error::Corrupt(format!(
                "run entry ({} key, {} value bytes)",
                k.len(),
                v.len()
            ))
        };
        if k.len() != 16 || v.len() != 29 {
            return Err(bad());
        }
        let n = |b: &[u8]| decode_u64(b).ok_or_else(bad);
        Ok(RunEntry {
            tag: n(&k[..8])?,
            max_rev: n(&k[8..])?,
            min_ts: from_ordered_i64(n(&v[..8])?),
            chunk_min_rev: n(&v[8..16])?,
            run_min_rev: n(&v[16..24])?,
            points: u32::from_be_bytes(v[24..28].try_into().map_err(|_| bad())?),
            level: v[28],
        })
    }

    pub fn chunk_key(&self) -> [u8; 24] {
        chunk_key(self.tag, self.min_ts, self.max_rev)
    }
}

/// Whether `p`, the next reading in `(ts, revision)` order, may join
/// `chunk`: at most [`CHUNK_POINTS`] readings spanning at most
/// [`CHUNK_SPAN_US`]. An empty chunk takes nothing (start a new one).
pub(super) fn fits(chunk: &[Point], p: &Point) -> bool {
    chunk.first().is_some_and(|first| {
        chunk.len() < CHUNK_POINTS && p.ts_us.saturating_sub(first.ts_us) <= CHUNK_SPAN_US
    })
}

/// Sorts readings by `(ts, revision)` and cuts them into chunks of at most
/// [`CHUNK_POINTS`] readings spanning at most [`CHUNK_SPAN_US`].
pub(super) fn split(mut points: Vec<Point>) -> Vec<Vec<Point>> {
    points.sort_by_key(|p| (p.ts_us, p.revision));
    let mut out: Vec<Vec<Point>> = Vec::new();
    for p in points {
        if !out.last().is_some_and(|c| fits(c, &p)) {
            out.push(Vec::new());
        }
        out.last_mut().expect("pushed above").push(p);
    }
    out
}

/// A run's chunks, encoded, with their index entries.
pub(super) type EncodedRun = Vec<(RunEntry, Vec<u8>)>;

/// One run of `tag` (readings in any order) at `level`, encoded: its chunks
/// with their index entries, ready for [`put_run`].
pub(super) fn encode_run(tag: u64, points: Vec<Point>, level: u8) -> EncodedRun {
    let Some(run_min_rev) = points.iter().map(|p| p.revision).min() else {
        return vec![];
    };
    let level = if points.len() >= CHUNK_POINTS {
        SEALED
    } else {
        level
    };
    split(points)
        .into_iter()
        .map(|chunk| encode_chunk(tag, &chunk, run_min_rev, level))
        .collect()
}

/// One chunk of `tag` (non-empty, in `(ts, revision)` order) of the run
/// starting at `run_min_rev`, encoded, with its index entry.
pub(super) fn encode_chunk(
    tag: u64,
    chunk: &[Point],
    run_min_rev: u64,
    level: u8,
) -> (RunEntry, Vec<u8>) {
    let revisions = chunk.iter().map(|p| p.revision);
    let entry = RunEntry {
        tag,
        max_rev: revisions.clone().max().expect("non-empty chunk"),
        min_ts: chunk[0].ts_us,
        chunk_min_rev: revisions.min().expect("non-empty chunk"),
        run_min_rev,
        points: chunk.len() as u32,
        level,
    };
    (entry, bifrost_chunk::encode(chunk))
}

/// Adds an encoded run to `wb`.
pub(super) fn put_run(db: &DB, wb: &mut WriteBatch, run: &[(RunEntry, Vec<u8>)]) {
    let chunks = db.cf_handle(CF_CHUNKS).expect("chunks cf");
    let runs = db.cf_handle(CF_RUNS).expect("runs cf");
    for (entry, bytes) in run {
        wb.put_cf(chunks, entry.chunk_key(), bytes);
        wb.put_cf(runs, run_key(entry.tag, entry.max_rev), entry.value());
    }
}

/// A chunk stored under `key` that does not read, named in the error.
pub(super) fn corrupt_chunk(key: &[u8], e: bifrost_chunk::ChunkError) -> Error {
    let what = parse_chunk_key(key)
        .map(|(tag, ts, rev)| format!("tag {tag}, from ts {ts}, up to revision {rev}"))
        .unwrap_or_else(|_| "with a bad key".into());
    Error::Corrupt(format!("chunk of {what}: {e}"))
}

/// Decodes a chunk, naming it in the error.
pub(super) fn decode_chunk(key: &[u8], bytes: &[u8]) -> Result<Vec<Point>> {
    bifrost_chunk::decode(bytes).map_err(|e| corrupt_chunk(key, e))
}

/// The summary of the chunk stored under `key`, from its header alone.
pub(super) fn chunk_summary(key: &[u8], bytes: &[u8]) -> Result<bifrost_chunk::Summary> {
    bifrost_chunk::summary(bytes).map_err(|e| corrupt_chunk(key, e))
}

/// The `[from, to)` key ranges of one tag in `chunks` and in `runs`.
pub(super) type KeyRange = (Vec<u8>, Vec<u8>);
pub(super) fn tag_ranges(tag: u64) -> (KeyRange, KeyRange) {
    let chunks = (
        chunk_key(tag, i64::MIN, 0).to_vec(),
        chunk_key(tag + 1, i64::MIN, 0).to_vec(),
    );
    let runs = (run_key(tag, 0).to_vec(), run_key(tag + 1, 0).to_vec());
    (chunks, runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_sort_by_tag_then_time_then_revision_and_parse_back() {
        let mut keys = [
            chunk_key(2, -5, 1),
            chunk_key(1, 10, 3),
            chunk_key(1, -10, 9),
            chunk_key(1, 10, 2),
            chunk_key(1, i64::MIN, 100),
            chunk_key(1, i64::MAX, 0),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_chunk_key(k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![
                (1, i64::MIN, 100),
                (1, -10, 9),
                (1, 10, 2),
                (1, 10, 3),
                (1, i64::MAX, 0),
                (2, -5, 1)
            ]
        );
        assert!(parse_chunk_key(&[0; 23]).is_err());
    }

    #[test]
    fn run_entries_round_trip_and_bad_ones_are_named() {
        let e = RunEntry {
            tag: 7,
            max_rev: 99,
            min_ts: -3,
            chunk_min_rev: 50,
            run_min_rev: 40,
            points: 12,
            level: 2,
        };
        let back = RunEntry::parse(&run_key(7, 99), &e.value()).unwrap();
        assert_eq!(back, e);
        let err = RunEntry::parse(&run_key(7, 99), &e.value()[..5]).unwrap_err();
        assert!(err.to_string().contains("run entry"), "{err}");
    }

    #[test]
    fn splitting_sorts_and_bounds_chunks_by_count_and_span() {
        let point = |ts: i64, revision: u64| Point {
            ts_us: ts,
            revision,
            server_ts_us: ts,
            value: None,
            quality: bifrost_model::Quality::good(),
            id: None,
        };
        let mut points: Vec<Point> = (0..2500)
            .map(|i| point(i * 1_000_000, i as u64 + 1))
            .collect();
        points.push(point(-5 * CHUNK_SPAN_US, 9_999)); // very late
        points.reverse();
        let chunks = split(points);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(
            sizes,
            [1, CHUNK_POINTS, CHUNK_POINTS, 2500 - 2 * CHUNK_POINTS]
        );
        for c in &chunks {
            assert!(c
                .windows(2)
                .all(|w| (w[0].ts_us, w[0].revision) <= (w[1].ts_us, w[1].revision)));
            assert!(c.last().unwrap().ts_us - c[0].ts_us <= CHUNK_SPAN_US);
        }
    }
}
