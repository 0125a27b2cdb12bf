//! Bifrost's history chunk encoding: the readings of ONE tag (a bounded
//! count or span of them), laid out as compressed columns behind a summary.
//! Storage keeps the bytes [`encode`] makes; queries read [`summary()`] to
//! answer aggregates over whole chunks without decoding them, [`decode`]
//! (or [`decode_times_revisions`]) when they need the readings, and
//! [`for_each_sample`] when they fold the readings into summaries.
//!
//! This crate is pure: it depends on `bifrost-model` and codec crates only,
//! and knows nothing of RocksDB, Raft or storage keys. It never panics on
//! bad input: every malformed chunk is a [`ChunkError`] that says what is
//! wrong and where.
//!
//! # Layout (format version 2)
//!
//! ```text
//! version byte | summary header | 6 columns, each length-prefixed | CRC-32
//! ```
//!
//! The header is [`Summary`] (see [`summary`](mod@summary) for its bytes).
//! Format 1 differs only there: its header has no float count. Chunks of
//! both formats are read; format 2 is written.
//! The columns, in order, each encoded for what it holds:
//!
//! | column     | what                      | encoding                                          |
//! |------------|---------------------------|---------------------------------------------------|
//! | timestamps | `ts_us - min_ts_us`       | [`ints`]: delta-of-delta runs, pco or pco-grid    |
//! | revisions  | `revision - min_revision` | [`ints`]                                          |
//! | server_ts  | `server_ts_us - ts_us`    | [`ints`] (a polled chunk's offsets are all 0)     |
//! | values     | `value`                   | variant runs, then per-variant sub-columns        |
//! | quality    | `quality`                 | (level, reason) dictionary, codes as runs         |
//! | ids        | `id`                      | presence runs, ids front-coded                    |
//!
//! Integer and float columns start with a codec byte; the writer tries each
//! codec and keeps the smallest (see [`ints`] and [`floats`], and
//! `examples/codec_bench.rs` for the figures behind the choice). Sub-columns
//! of values: booleans as runs, integers by [`ints`], floats by [`floats`]
//! (Gorilla XOR, pco over `f64`, or pco over `f32`), text by dictionary.
//!
//! Points keep their order exactly: storage sorts a chunk by (time,
//! revision) before encoding it, which is what makes the deltas small, but
//! any order round-trips. The CRC-32 over everything before it is checked before any
//! column is parsed, so a truncated or changed chunk is reported as such and
//! never reaches a decoder as valid-looking bytes.

mod error;
pub mod floats;
mod ids;
pub mod ints;
mod pco_col;
mod quality;
mod runs;
mod strings;
pub mod summary;
pub mod synth;
mod values;
mod wire;

#[cfg(test)]
mod tests;

use bifrost_model::{Quality, QualityLevel, Value};

pub use error::ChunkError;
pub use summary::{Edge, Summary};

use wire::{put_section, Reader, Result};

/// The format this build writes, and the newest it reads (it reads every
/// format from 1 up): the first byte of every chunk.
pub const FORMAT_VERSION: u8 = 2;

/// The most readings one chunk may hold. Storage bounds chunks far below
/// this; the bound keeps a corrupt count from sizing a huge allocation.
pub const MAX_POINTS: usize = 1 << 20;

/// A version byte and a checksum.
const MIN_LEN: usize = 1 + 4;

/// One reading of one tag as kept in history.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Source timestamp, microseconds since the Unix epoch.
    pub ts_us: i64,
    /// Cluster-wide revision assigned at commit.
    pub revision: u64,
    /// When the cluster received it (equal to `ts_us` for polled readings).
    pub server_ts_us: i64,
    pub value: Option<Value>,
    pub quality: Quality,
    /// The client's reading id; `None` for polled readings.
    pub id: Option<String>,
}

/// Encodes `points`, in the order given.
///
/// # Panics
///
/// If there are more than [`MAX_POINTS`] points.
pub fn encode(points: &[Point]) -> Vec<u8> {
    encode_format(points, FORMAT_VERSION)
}

/// Encodes `points` in chunk format `version` (1 or 2): [`encode`], and
/// format 1 for the tests that read it.
fn encode_format(points: &[Point], version: u8) -> Vec<u8> {
    assert!(
        points.len() <= MAX_POINTS,
        "a chunk holds at most {MAX_POINTS} readings, got {}",
        points.len()
    );
    let mut out = vec![version];
    let summary = Summary::of(points);
    summary::put_summary(&mut out, &summary, version);
    put_columns(&mut out, points, &summary);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Timestamps and revisions are written relative to the header's minimum,
/// which spares the first value's eight bytes.
fn put_columns(out: &mut Vec<u8>, points: &[Point], s: &Summary) {
    let ts: Vec<i64> = points
        .iter()
        .map(|p| p.ts_us.wrapping_sub(s.min_ts_us))
        .collect();
    let revs: Vec<i64> = points
        .iter()
        .map(|p| p.revision.wrapping_sub(s.min_revision) as i64)
        .collect();
    let offsets: Vec<i64> = points
        .iter()
        .map(|p| p.server_ts_us.wrapping_sub(p.ts_us))
        .collect();
    let values: Vec<Option<&Value>> = points.iter().map(|p| p.value.as_ref()).collect();
    let qualities: Vec<&Quality> = points.iter().map(|p| &p.quality).collect();
    let ids: Vec<Option<&str>> = points.iter().map(|p| p.id.as_deref()).collect();
    put_section(out, |o| ints::put_ints(o, &ts));
    put_section(out, |o| ints::put_ints(o, &revs));
    put_section(out, |o| ints::put_ints(o, &offsets));
    put_section(out, |o| values::put_values(o, &values));
    put_section(out, |o| quality::put_qualities(o, &qualities));
    put_section(out, |o| ids::put_ids(o, &ids));
}

/// Decodes a chunk made by [`encode`]: the points in their encoded order.
pub fn decode(bytes: &[u8]) -> std::result::Result<Vec<Point>, ChunkError> {
    let (mut r, s) = open(bytes)?;
    let n = s.count as usize;
    let ts = r.read_section("timestamps", n, ints::read_ints)?;
    let revs = r.read_section("revisions", n, ints::read_ints)?;
    let offsets = r.read_section("server_ts", n, ints::read_ints)?;
    let values = r.read_section("values", n, values::read_values)?;
    let qualities = r.read_section("quality", n, quality::read_qualities)?;
    let ids = r.read_section("ids", n, ids::read_ids)?;
    r.finish()?;
    let (ts, revs) = absolute(&s, ts, revs);
    let columns = ts.into_iter().zip(revs).zip(offsets);
    let rest = values.into_iter().zip(qualities).zip(ids);
    Ok(columns
        .zip(rest)
        .map(
            |(((ts_us, revision), offset), ((value, quality), id))| Point {
                ts_us,
                revision,
                server_ts_us: ts_us.wrapping_add(offset),
                value,
                quality,
                id,
            },
        )
        .collect())
}

/// A reading as a summary reads it: borrowed from a decoded chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    pub ts_us: i64,
    pub revision: u64,
    pub level: QualityLevel,
    pub value: Option<&'a Value>,
}

impl<'a> Sample<'a> {
    /// The fields of `p` a summary reads.
    pub fn of(p: &'a Point) -> Sample<'a> {
        Sample {
            ts_us: p.ts_us,
            revision: p.revision,
            level: p.quality.level,
            value: p.value.as_ref(),
        }
    }
}

/// Hands each reading of a chunk to `visit` as a [`Sample`], with its place
/// in the encoded order, and returns the chunk's summary. Decodes only the
/// columns a summary reads (times, revisions, values, qualities), not
/// server times or ids: what folding a chunk into summaries needs.
pub fn for_each_sample(
    bytes: &[u8],
    mut visit: impl FnMut(usize, Sample<'_>),
) -> std::result::Result<Summary, ChunkError> {
    let (mut r, s) = open(bytes)?;
    let n = s.count as usize;
    let ts = r.read_section("timestamps", n, ints::read_ints)?;
    let revs = r.read_section("revisions", n, ints::read_ints)?;
    r.section("server_ts")?;
    let values = r.read_section("values", n, values::read_values)?;
    let qualities = r.read_section("quality", n, quality::read_qualities)?;
    let columns = ts.iter().zip(&revs).zip(values.iter().zip(&qualities));
    for (i, ((t, rev), (value, q))) in columns.enumerate() {
        visit(
            i,
            Sample {
                ts_us: t.wrapping_add(s.min_ts_us),
                revision: (*rev as u64).wrapping_add(s.min_revision),
                level: q.level,
                value: value.as_ref(),
            },
        );
    }
    Ok(s)
}

/// The summary of a chunk, from its header: no column is decoded.
pub fn summary(bytes: &[u8]) -> std::result::Result<Summary, ChunkError> {
    open(bytes).map(|(_, s)| s)
}

/// Timestamps and revisions only, in the encoded order: what a merge by
/// (time, revision) or a revision-range scan needs, without the values.
pub fn decode_times_revisions(
    bytes: &[u8],
) -> std::result::Result<(Vec<i64>, Vec<u64>), ChunkError> {
    let (mut r, s) = open(bytes)?;
    let n = s.count as usize;
    let ts = r.read_section("timestamps", n, ints::read_ints)?;
    let revs = r.read_section("revisions", n, ints::read_ints)?;
    Ok(absolute(&s, ts, revs))
}

/// Undoes [`put_columns`]' offsets from the minimum time and revision.
fn absolute(s: &Summary, ts: Vec<i64>, revs: Vec<i64>) -> (Vec<i64>, Vec<u64>) {
    let ts = ts.into_iter().map(|t| t.wrapping_add(s.min_ts_us));
    let revs = revs
        .into_iter()
        .map(|r| (r as u64).wrapping_add(s.min_revision));
    (ts.collect(), revs.collect())
}

/// Checks version and checksum, reads the header; returns a reader at the
/// first column.
fn open(bytes: &[u8]) -> Result<(Reader<'_>, Summary)> {
    if bytes.len() < MIN_LEN {
        return Err(ChunkError::TooShort {
            len: bytes.len(),
            min: MIN_LEN,
        });
    }
    let version = bytes[0];
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(ChunkError::Version {
            found: bytes[0],
            supported: FORMAT_VERSION,
        });
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("split at len - 4"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(ChunkError::Checksum {
            len: body.len(),
            stored,
            computed,
        });
    }
    let mut r = Reader::new(&body[1..], 1, "header");
    let s = summary::read_summary(&mut r, MAX_POINTS, version)?;
    Ok((r, s))
}
