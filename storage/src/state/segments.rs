//! Level 0 of history: what one flush wrote, every tag in one segment.
//!
//! A flush writes its readings as one **segment**: sorted by `(tag, ts,
//! revision)` and cut into blocks of about [`BLOCK_POINTS`] at tag
//! boundaries (a tag with more readings than that gets blocks of its own).
//! A block is one chunk (`bifrost-chunk`) of the readings plus the tag id of
//! each, as `(tag, count)` runs. So a flush costs a few keys however many
//! tags it holds; a chunk per tag per flush cost two keys per tag, which at
//! 100,000 tags held commits back.
//!
//! When [`SEGMENT_FAN_IN`] segments wait, all the segments waiting are
//! merged as one **group** into per-tag runs (see `chunks`) by the merger
//! thread, a tag range per step so that a step stays small and flushes go
//! on between steps. Every header of the group
//! records the tag the merge reached (`merged_below`), in the same write as
//! the runs; a reader of a tag below it finds that tag's readings in the
//! runs. A segment goes when the merge reaches its end.
//!
//! Keys in `segments`: `h | first revision` -> [`Header`];
//! `b | first revision | last tag of the block | ordinal` -> block.
//! Knows nothing of Raft; the flush writes segments, the merger moves their
//! headers on and removes them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bifrost_chunk::Point;
use rocksdb::{ReadOptions, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::chunks;
use super::hot::HotPoint;
use super::summarize::Buckets;
use super::tag_index::TagMap;
use crate::codec::{decode, encode};
use crate::keys::{decode_u64, u64_key};
use crate::{Error, Result};

pub(super) const CF_SEGMENTS: &str = "segments";

/// About how many readings one block holds.
pub(super) const BLOCK_POINTS: usize = 2048;
/// How many segments wait before they are merged into per-tag runs.
pub(super) const SEGMENT_FAN_IN: usize = 8;
/// About how many readings one merge step reads, over the whole group.
pub(super) const STEP_POINTS: usize = 50_000;

/// One segment, as its header key says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Header {
    #[serde(skip)]
    pub first_rev: u64,
    pub last_rev: u64,
    pub points: u64,
    /// Tags below this are in per-tag runs already (0: none are).
    pub merged_below: u64,
}

impl Header {
    /// Whether revision `rev` of `tag` is read from this segment.
    pub fn holds(&self, rev: u64, tag: u64) -> bool {
        (self.first_rev..=self.last_rev).contains(&rev) && tag >= self.merged_below
    }
}

fn header_key(first_rev: u64) -> [u8; 9] {
    let mut k = [b'h'; 9];
    k[1..].copy_from_slice(&u64_key(first_rev));
    k
}

fn block_key(first_rev: u64, last_tag: u64, ordinal: u32) -> [u8; 21] {
    let mut k = [b'b'; 21];
    k[1..9].copy_from_slice(&u64_key(first_rev));
    k[9..17].copy_from_slice(&u64_key(last_tag));
    k[17..].copy_from_slice(&ordinal.to_be_bytes());
    k
}

/// The last tag a block key names.
fn block_last_tag(k: &[u8]) -> Result<u64> {
    match k {
        [b'b', rest @ ..] if rest.len() == 20 => Ok(decode_u64(&rest[8..16]).expect("8 bytes")),
        _ => Err(Error::Corrupt(format!(
            "segment block key of {} bytes",
            k.len()
        ))),
    }
}

/// `(tag id, readings)`: consecutive readings of one tag in a block.
type TagRuns = Vec<(u64, u32)>;
/// Called per block: key, value, the block's last tag; false stops.
type BlockVisit<'v> = dyn FnMut(&[u8], &[u8], u64) -> Result<bool> + 'v;

/// The `(tag, count)` runs of a block, then its chunk.
#[derive(Serialize, Deserialize)]
struct BlockTags {
    runs: Vec<(u64, u32)>,
}

fn encode_block(runs: &[(u64, u32)], points: &[Point]) -> Vec<u8> {
    let tags = encode(&BlockTags {
        runs: runs.to_vec(),
    });
    let mut out = Vec::with_capacity(4 + tags.len() + points.len() * 4);
    out.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    out.extend_from_slice(&tags);
    out.extend(bifrost_chunk::encode(points));
    out
}

/// A block's tag runs and its undecoded chunk bytes.
fn split_block<'a>(key: &[u8], v: &'a [u8]) -> Result<(TagRuns, &'a [u8])> {
    let bad =
        |what: String| Error::Corrupt(format!("segment block {}: {what}", describe_block_key(key)));
    let len = v
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| bad(format!("{} bytes, too short", v.len())))?;
    let tags = v
        .get(4..4 + len)
        .ok_or_else(|| bad(format!("tag runs of {len} bytes past the end")))?;
    let runs = decode::<BlockTags>(tags)
        .map_err(|e| bad(e.to_string()))?
        .runs;
    Ok((runs, &v[4 + len..]))
}

/// A segment block stored under `key` that does not read, named in the error.
fn corrupt_block(key: &[u8], e: bifrost_chunk::ChunkError) -> Error {
    Error::Corrupt(format!("segment block {}: {e}", describe_block_key(key)))
}

/// A block's readings with their tag ids.
fn decode_block(key: &[u8], v: &[u8]) -> Result<Vec<(u64, Point)>> {
    let (runs, chunk) = split_block(key, v)?;
    let points = bifrost_chunk::decode(chunk).map_err(|e| corrupt_block(key, e))?;
    let tags = runs
        .iter()
        .flat_map(|&(tag, n)| std::iter::repeat_n(tag, n as usize));
    let out: Vec<(u64, Point)> = tags.zip(points).collect();
    let expected: usize = runs.iter().map(|r| r.1 as usize).sum();
    if out.len() != expected {
        return Err(Error::Corrupt(format!(
            "segment block {}: {expected} tagged readings, {} in the chunk",
            describe_block_key(key),
            out.len()
        )));
    }
    Ok(out)
}

fn describe_block_key(k: &[u8]) -> String {
    match (k.get(1..9).and_then(decode_u64), block_last_tag(k)) {
        (Some(seg), Ok(tag)) => format!("(segment {seg}, up to tag {tag})"),
        _ => format!("with a bad key of {} bytes", k.len()),
    }
}

/// Adds the segment of revisions `first_rev..=last_rev` holding `tail` (per
/// tag, any order) to `wb`. Writes nothing when `tail` is empty.
pub(super) fn write(
    db: &DB,
    wb: &mut WriteBatch,
    first_rev: u64,
    last_rev: u64,
    tail: &TagMap<Vec<HotPoint>>,
) {
    let cf = db.cf_handle(CF_SEGMENTS).expect("segments cf");
    let mut tags: Vec<u64> = tail.keys().copied().collect();
    tags.sort_unstable();
    let mut ordinal = 0u32;
    let mut points = 0u64;
    let mut block: Vec<Point> = Vec::new();
    let mut runs: Vec<(u64, u32)> = Vec::new();
    let mut emit = |block: &mut Vec<Point>, runs: &mut Vec<(u64, u32)>| {
        if let Some(&(last_tag, _)) = runs.last() {
            wb.put_cf(
                cf,
                block_key(first_rev, last_tag, ordinal),
                encode_block(runs, block),
            );
            ordinal += 1;
            block.clear();
            runs.clear();
        }
    };
    for tag in tags {
        let mut mine: Vec<Point> = tail[&tag].iter().map(HotPoint::to_point).collect();
        if mine.is_empty() {
            continue;
        }
        points += mine.len() as u64;
        mine.sort_by_key(|p| (p.ts_us, p.revision));
        if mine.len() > BLOCK_POINTS {
            emit(&mut block, &mut runs);
            for piece in mine.chunks(BLOCK_POINTS) {
                runs.push((tag, piece.len() as u32));
                block.extend_from_slice(piece);
                emit(&mut block, &mut runs);
            }
            continue;
        }
        if block.len() + mine.len() > BLOCK_POINTS {
            emit(&mut block, &mut runs);
        }
        runs.push((tag, mine.len() as u32));
        block.extend(mine);
    }
    emit(&mut block, &mut runs);
    if points > 0 {
        let header = Header {
            first_rev,
            last_rev,
            points,
            merged_below: 0,
        };
        wb.put_cf(cf, header_key(first_rev), encode(&header));
    }
}

/// Every segment's header, oldest first.
pub(super) fn headers(db: &DB, ro: ReadOptions) -> Result<Vec<Header>> {
    let cf = db.cf_handle(CF_SEGMENTS).expect("segments cf");
    let mut ro = ro;
    ro.set_iterate_upper_bound(vec![b'h' + 1]);
    let mut it = db.raw_iterator_cf_opt(cf, ro);
    it.seek([b'h']);
    let mut out = Vec::new();
    while it.valid() {
        let k = it.key().expect("valid");
        let first_rev = k
            .get(1..)
            .and_then(decode_u64)
            .ok_or_else(|| Error::Corrupt(format!("segment header key of {} bytes", k.len())))?;
        let mut h: Header = decode(it.value().expect("valid"))?;
        h.first_rev = first_rev;
        out.push(h);
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// Visits the blocks of segment `seg` that may hold tags from `from_tag`
/// on, in order, with each block's last tag, until `visit` returns false.
fn blocks_from(
    db: &DB,
    ro: ReadOptions,
    seg: u64,
    from_tag: u64,
    visit: &mut BlockVisit<'_>,
) -> Result<()> {
    let cf = db.cf_handle(CF_SEGMENTS).expect("segments cf");
    let mut ro = ro;
    ro.set_iterate_upper_bound(block_key(seg + 1, 0, 0).to_vec());
    let mut it = db.raw_iterator_cf_opt(cf, ro);
    it.seek(block_key(seg, from_tag, 0));
    while it.valid() {
        let (k, v) = (it.key().expect("valid"), it.value().expect("valid"));
        if !visit(k, v, block_last_tag(k)?)? {
            return Ok(());
        }
        it.next();
    }
    it.status()?;
    Ok(())
}

/// The readings of `tags` that segments (not yet merged for them) hold,
/// per tag. Each segment's blocks are read once, and only those holding
/// one of the tags are decoded.
pub(super) fn points_of(
    db: &DB,
    ro: &dyn Fn() -> ReadOptions,
    headers: &[Header],
    tags: &BTreeSet<u64>,
) -> Result<HashMap<u64, Vec<Point>>> {
    let mut out: HashMap<u64, Vec<Point>> = HashMap::new();
    for h in headers {
        // Tags below `merged_below` are in their runs now, even where a
        // block still holds them beside unmerged ones.
        let unmerged = |t: &u64| *t >= h.merged_below && tags.contains(t);
        let Some(&first) = tags.range(h.merged_below..).next() else {
            continue;
        };
        let mut wanted = tags.range(first..).copied().peekable();
        blocks_from(db, ro(), h.first_rev, first, &mut |k, v, last_tag| {
            let (runs, _) = split_block(k, v)?;
            let first_tag = runs.first().map_or(u64::MAX, |r| r.0);
            while wanted.next_if(|t| *t < first_tag).is_some() {}
            let Some(&next) = wanted.peek() else {
                return Ok(false);
            };
            if next <= last_tag && runs.iter().any(|r| unmerged(&r.0)) {
                for (tag, p) in decode_block(k, v)? {
                    if unmerged(&tag) {
                        out.entry(tag).or_default().push(p);
                    }
                }
            }
            Ok(true)
        })?;
    }
    Ok(out)
}

/// Adds the readings of `tag` that segments not merged for it hold to
/// `buckets`: a block holding only this tag by its summary when it can,
/// the others reading by reading (only the tag's run of the block).
pub(super) fn add_tag_to<K: Ord>(
    db: &DB,
    ro: &dyn Fn() -> ReadOptions,
    headers: &[Header],
    tag: u64,
    buckets: &mut Buckets<'_, K>,
) -> Result<()> {
    for h in headers.iter().filter(|h| tag >= h.merged_below) {
        blocks_from(db, ro(), h.first_rev, tag, &mut |k, v, _| {
            let (runs, chunk) = split_block(k, v)?;
            if runs.first().is_none_or(|r| r.0 > tag) {
                return Ok(false);
            }
            let start: usize = runs
                .iter()
                .take_while(|r| r.0 < tag)
                .map(|r| r.1 as usize)
                .sum();
            let Some(&(_, n)) = runs.iter().find(|r| r.0 == tag) else {
                return Ok(true);
            };
            let corrupt = |e| corrupt_block(k, e);
            if runs.len() == 1
                && buckets.add_whole(&bifrost_chunk::summary(chunk).map_err(corrupt)?)
            {
                return Ok(true);
            }
            let ours = start..start + n as usize;
            bifrost_chunk::for_each_sample(chunk, |i, smp| {
                if ours.contains(&i) {
                    buckets.add(smp);
                }
            })
            .map_err(corrupt)?;
            Ok(true)
        })?;
    }
    Ok(())
}

/// The readings with revisions in `[lo, hi]` that segments hold (for the
/// tags not merged yet), with their tag ids, in no particular order.
pub(super) fn points_between(
    db: &DB,
    ro: &dyn Fn() -> ReadOptions,
    headers: &[Header],
    lo: u64,
    hi: u64,
) -> Result<Vec<(u64, Point)>> {
    let mut out = Vec::new();
    for h in headers
        .iter()
        .filter(|h| h.first_rev <= hi && h.last_rev >= lo)
    {
        blocks_from(db, ro(), h.first_rev, h.merged_below, &mut |k, v, _| {
            out.extend(
                decode_block(k, v)?
                    .into_iter()
                    .filter(|(tag, p)| *tag >= h.merged_below && (lo..=hi).contains(&p.revision)),
            );
            Ok(true)
        })?;
    }
    Ok(out)
}

/// The segments a merge works on now: the group in progress, else every
/// segment when there are at least `min` of them.
pub(super) fn group(headers: Vec<Header>, min: usize) -> Vec<Header> {
    if headers.iter().any(|h| h.merged_below > 0) {
        headers.into_iter().filter(|h| h.merged_below > 0).collect()
    } else if headers.len() >= min.max(1) {
        headers
    } else {
        Vec::new()
    }
}

/// One merge step, read and encoded, not written yet.
#[derive(Debug, Default)]
pub(super) struct Step {
    /// The run each tag merged gets.
    pub runs: Vec<(u64, chunks::EncodedRun)>,
    /// The group, and where the step ends (`u64::MAX`: at its end).
    group: Vec<Header>,
    to: u64,
}

impl Step {
    /// Keeps the runs of the tags `keep` accepts only (asked when the step
    /// is about to be written: a tag purged since it was read gets none).
    pub fn retain_tags(&mut self, keep: impl Fn(u64) -> bool) {
        self.runs.retain(|(tag, _)| keep(*tag));
    }

    /// Writes the step in one write: its runs, and the group's headers
    /// moved on (or the segments removed, at their end). Returns the tags
    /// written.
    pub fn write(self, db: &DB) -> Result<Vec<u64>> {
        let cf = db.cf_handle(CF_SEGMENTS).expect("segments cf");
        let mut wb = WriteBatch::default();
        let mut tags = Vec::new();
        for (tag, run) in &self.runs {
            chunks::put_run(db, &mut wb, run);
            tags.push(*tag);
        }
        for h in &self.group {
            if self.to == u64::MAX {
                wb.delete_cf(cf, header_key(h.first_rev));
                wb.delete_range_cf(
                    cf,
                    block_key(h.first_rev, 0, 0),
                    block_key(h.first_rev + 1, 0, 0),
                );
            } else {
                let merged = Header {
                    merged_below: self.to,
                    ..h.clone()
                };
                wb.put_cf(cf, header_key(h.first_rev), encode(&merged));
            }
        }
        crate::crash::point("merge-before-write");
        db.write(wb)?;
        crate::crash::point("merge-after-write");
        Ok(tags)
    }
}

/// Reads and encodes the next step of `group` (all at the same
/// `merged_below`): about `step_points` readings, of a tag range, become
/// per-tag runs at level 0. Readings below revision `oldest` (retention)
/// are dropped. Nothing is written: see [`Step::write`].
pub(super) fn merge_step(
    db: &DB,
    group: Vec<Header>,
    oldest: u64,
    step_points: usize,
) -> Result<Step> {
    let Some(from) = group.first().map(|h| h.merged_below) else {
        return Ok(Step::default());
    };
    let to = step_end(db, &group, from, step_points)?;
    let mut per_tag: BTreeMap<u64, Vec<Point>> = BTreeMap::new();
    for h in &group {
        blocks_from(
            db,
            ReadOptions::default(),
            h.first_rev,
            from,
            &mut |k, v, last| {
                for (tag, p) in decode_block(k, v)? {
                    if (from..to).contains(&tag) && p.revision >= oldest {
                        per_tag.entry(tag).or_default().push(p);
                    }
                }
                Ok(last < to)
            },
        )?;
    }
    let runs = per_tag
        .into_iter()
        .map(|(tag, points)| (tag, chunks::encode_run(tag, points, 0)))
        .collect();
    Ok(Step { runs, group, to })
}

/// Where the step from tag `from` ends (exclusive): after about
/// `step_points` readings of the group; `u64::MAX` when the step reaches
/// the end of them all. It is a block boundary in one segment only: in the
/// others a block may hold tags on both sides of it, which is why readers
/// check every tag they take from a segment against `merged_below`.
fn step_end(db: &DB, group: &[Header], from: u64, step_points: usize) -> Result<u64> {
    let quota = (step_points / group.len().max(1)).max(1) as u64;
    let mut end = u64::MAX;
    for h in group {
        let mut seen = 0u64;
        let mut reached: Option<u64> = None;
        blocks_from(
            db,
            ReadOptions::default(),
            h.first_rev,
            from,
            &mut |k, v, last| {
                if reached.is_some_and(|r| r != last) {
                    return Ok(false);
                }
                let (runs, _) = split_block(k, v)?;
                seen += runs.iter().map(|r| r.1 as u64).sum::<u64>();
                if seen >= quota {
                    reached = Some(last);
                }
                Ok(true)
            },
        )?;
        // A tag cut into blocks of its own ends with its last block: the
        // loop above passed every block naming the tag it stopped at.
        if let Some(last) = reached {
            end = end.min(last.saturating_add(1));
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_headers_apart_from_blocks_and_blocks_by_segment_then_tag() {
        let mut keys = vec![
            block_key(2, 1, 0).to_vec(),
            header_key(5).to_vec(),
            block_key(1, 9, 0).to_vec(),
            block_key(1, 3, 1).to_vec(),
            block_key(1, 3, 0).to_vec(),
            header_key(1).to_vec(),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                block_key(1, 3, 0).to_vec(),
                block_key(1, 3, 1).to_vec(),
                block_key(1, 9, 0).to_vec(),
                block_key(2, 1, 0).to_vec(),
                header_key(1).to_vec(),
                header_key(5).to_vec(),
            ]
        );
        assert_eq!(block_last_tag(&block_key(7, 42, 3)).unwrap(), 42);
        assert!(block_last_tag(&header_key(7)).is_err());
    }

    #[test]
    fn a_damaged_block_is_named() {
        let key = block_key(10, 4, 0);
        let p = Point {
            ts_us: 1,
            revision: 10,
            server_ts_us: 1,
            value: None,
            quality: bifrost_model::Quality::good(),
            id: None,
        };
        let good = encode_block(&[(4, 1)], std::slice::from_ref(&p));
        assert_eq!(decode_block(&key, &good).unwrap(), vec![(4, p.clone())]);
        let wrong_count = encode_block(&[(4, 2)], &[p]);
        let err = decode_block(&key, &wrong_count).unwrap_err().to_string();
        assert!(
            err.contains("segment 10, up to tag 4") && err.contains("2 tagged"),
            "{err}"
        );
        let err = decode_block(&key, &good[..3]).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
    }
}
