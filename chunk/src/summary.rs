//! The chunk summary, written as the chunk's header so that counts, time and
//! revision ranges, quality counts and the aggregates (`min`, `max`, `sum`,
//! `first`, `last`) over a whole chunk are answered without decoding a
//! column. It follows the query layer's rules (`bifrost-query`'s aggregates):
//! only *usable* readings are aggregated (quality not Bad, value present);
//! `min`/`max` use its total order over values (booleans, then numbers —
//! integers and floats compared as `f64` with `total_cmp` — then text); sums
//! are kept as the query keeps them, an exact `i128` over `Int` values and
//! an `f64` over `Float` values, added in chunk order; `first`/`last` are by
//! (timestamp, revision), the earliest-written reading winning ties.
//!
//! Summaries also add up: [`Summary::merge`] combines two (the summary of
//! the union of their readings), [`Summary::add`] adds one reading, so a
//! query folds whole chunks by their headers and decodes only the chunks
//! its bounds cut.
//!
//! Header layout: the count, then (for a non-empty chunk) minimum time and
//! span, minimum revision and span, good and uncertain counts, usable,
//! numeric and (since format 2) float counts; with usable readings the min, max, first and last (edges
//! relative to the minimum time and revision); with numeric readings a flag
//! byte and the non-zero sums. About 40 bytes for a chunk of floats.

use std::cmp::Ordering;

use bifrost_model::{QualityLevel, Value};

use crate::floats::as_f32;
use crate::strings::{put_str, read_str};
use crate::wire::{put_ivar, put_uvar, unzigzag, zigzag, Reader, Result};
use crate::Point;

/// A reading at an edge of a chunk: the first or last usable one.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub ts_us: i64,
    pub revision: u64,
    pub value: Value,
}

/// What a chunk holds, read from its header alone. Ranges are 0 for an
/// empty chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Readings in the chunk.
    pub count: u64,
    pub min_ts_us: i64,
    pub max_ts_us: i64,
    pub min_revision: u64,
    pub max_revision: u64,
    /// Readings per quality level; they add up to `count`.
    pub good: u64,
    pub uncertain: u64,
    pub bad: u64,
    /// Readings the query layer aggregates: not Bad, with a value.
    pub usable: u64,
    /// Usable readings whose value is `Int` or `Float`.
    pub numeric: u64,
    /// Usable readings whose value is `Float` (a sum over them is a float
    /// even when it is 0); `None` in a chunk written in format 1, which did
    /// not count them.
    pub floats: Option<u64>,
    /// Least and greatest usable value in the query layer's order.
    pub min: Option<Value>,
    pub max: Option<Value>,
    /// Exact sum of the usable `Int` values.
    pub int_sum: i128,
    /// Sum of the usable `Float` values, in chunk order.
    pub float_sum: f64,
    /// Usable reading with the least (timestamp, revision), and the greatest.
    pub first: Option<Edge>,
    pub last: Option<Edge>,
}

impl Default for Summary {
    /// The summary of no readings.
    fn default() -> Summary {
        Summary {
            count: 0,
            min_ts_us: 0,
            max_ts_us: 0,
            min_revision: 0,
            max_revision: 0,
            good: 0,
            uncertain: 0,
            bad: 0,
            usable: 0,
            numeric: 0,
            floats: Some(0),
            min: None,
            max: None,
            int_sum: 0,
            float_sum: 0.0,
            first: None,
            last: None,
        }
    }
}

impl Summary {
    /// Sum of the numeric values as the query layer finishes it (floats plus
    /// integers as `f64`); `None` without numeric readings.
    pub fn sum(&self) -> Option<f64> {
        (self.numeric > 0).then_some(self.float_sum + self.int_sum as f64)
    }

    /// Computes the summary of `points`.
    pub fn of(points: &[Point]) -> Summary {
        let mut s = Summary::default();
        for p in points {
            s.add(p);
        }
        s
    }

    /// Adds one reading.
    pub fn add(&mut self, p: &Point) {
        self.add_reading(p.ts_us, p.revision, p.quality.level, p.value.as_ref());
    }

    /// Adds one reading, given by the fields a summary reads.
    pub fn add_reading(
        &mut self,
        ts_us: i64,
        revision: u64,
        level: QualityLevel,
        value: Option<&Value>,
    ) {
        self.add_range((ts_us, ts_us), (revision, revision), 1);
        match level {
            QualityLevel::Good => self.good += 1,
            QualityLevel::Uncertain => self.uncertain += 1,
            QualityLevel::Bad => self.bad += 1,
        }
        match value {
            Some(v) if level != QualityLevel::Bad => self.add_usable(ts_us, revision, v),
            _ => {}
        }
    }

    /// Adds the readings `other` summarises (as if they came after this
    /// summary's own: ties in `min` and `max` keep this one's value).
    pub fn merge(&mut self, other: &Summary) {
        if other.count == 0 {
            return;
        }
        self.add_range(
            (other.min_ts_us, other.max_ts_us),
            (other.min_revision, other.max_revision),
            other.count,
        );
        self.good += other.good;
        self.uncertain += other.uncertain;
        self.bad += other.bad;
        self.usable += other.usable;
        self.numeric += other.numeric;
        self.floats = self.floats.zip(other.floats).map(|(a, b)| a + b);
        self.int_sum += other.int_sum;
        self.float_sum += other.float_sum;
        if let Some(v) = &other.min {
            keep_value(&mut self.min, v, Ordering::Less);
        }
        if let Some(v) = &other.max {
            keep_value(&mut self.max, v, Ordering::Greater);
        }
        if let Some(e) = &other.first {
            keep_edge(&mut self.first, e, Ordering::Less);
        }
        if let Some(e) = &other.last {
            keep_edge(&mut self.last, e, Ordering::Greater);
        }
    }

    /// Widens the time and revision ranges to hold `ts` and `rev`, and
    /// counts `n` more readings.
    fn add_range(&mut self, ts: (i64, i64), rev: (u64, u64), n: u64) {
        if self.count == 0 {
            (self.min_ts_us, self.max_ts_us) = ts;
            (self.min_revision, self.max_revision) = rev;
        }
        self.count += n;
        self.min_ts_us = self.min_ts_us.min(ts.0);
        self.max_ts_us = self.max_ts_us.max(ts.1);
        self.min_revision = self.min_revision.min(rev.0);
        self.max_revision = self.max_revision.max(rev.1);
    }

    fn add_usable(&mut self, ts_us: i64, revision: u64, v: &Value) {
        self.usable += 1;
        match v {
            Value::Int(i) => self.int_sum += *i as i128,
            Value::Float(f) => {
                self.float_sum += f;
                self.floats = self.floats.map(|n| n + 1);
            }
            _ => {}
        }
        if matches!(v, Value::Int(_) | Value::Float(_)) {
            self.numeric += 1;
        }
        keep_value(&mut self.min, v, Ordering::Less);
        keep_value(&mut self.max, v, Ordering::Greater);
        let at = (ts_us, revision);
        let edge = || Edge {
            ts_us,
            revision,
            value: v.clone(),
        };
        if self
            .first
            .as_ref()
            .is_none_or(|b| at < (b.ts_us, b.revision))
        {
            self.first = Some(edge());
        }
        if self
            .last
            .as_ref()
            .is_none_or(|b| at > (b.ts_us, b.revision))
        {
            self.last = Some(edge());
        }
    }
}

/// The query layer's total order over values: booleans, numbers, text.
pub fn value_order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Bool(_) => 0,
            Value::Int(_) | Value::Float(_) => 1,
            Value::Text(_) => 2,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Int(x), Value::Float(y)) => (*x as f64).total_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.total_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.total_cmp(y),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn keep_value(best: &mut Option<Value>, v: &Value, want: Ordering) {
    if best.as_ref().is_none_or(|b| value_order(v, b) == want) {
        *best = Some(v.clone());
    }
}

fn keep_edge(best: &mut Option<Edge>, e: &Edge, want: Ordering) {
    let at = (e.ts_us, e.revision);
    if best
        .as_ref()
        .is_none_or(|b| at.cmp(&(b.ts_us, b.revision)) == want)
    {
        *best = Some(e.clone());
    }
}

/// Appends the header in chunk format `version` (the float count is written
/// from format 2 on).
pub(crate) fn put_summary(out: &mut Vec<u8>, s: &Summary, version: u8) {
    put_uvar(out, s.count);
    if s.count == 0 {
        return;
    }
    put_ivar(out, s.min_ts_us);
    put_uvar(out, s.max_ts_us.wrapping_sub(s.min_ts_us) as u64);
    put_uvar(out, s.min_revision);
    put_uvar(out, s.max_revision - s.min_revision);
    for n in [s.good, s.uncertain, s.usable, s.numeric] {
        put_uvar(out, n);
    }
    if version >= 2 {
        put_uvar(
            out,
            s.floats
                .expect("a summary made by Summary::of counts floats"),
        );
    }
    if let (Some(min), Some(max), Some(first), Some(last)) = (&s.min, &s.max, &s.first, &s.last) {
        put_value(out, min);
        put_value(out, max);
        put_edge(
            out,
            first,
            first.ts_us.wrapping_sub(s.min_ts_us),
            first.revision - s.min_revision,
        );
        put_edge(
            out,
            last,
            s.max_ts_us.wrapping_sub(last.ts_us),
            s.max_revision - last.revision,
        );
    }
    if s.numeric > 0 {
        put_sums(out, s);
    }
}

/// An edge: its distance in time and revision from the nearer end of the
/// ranges (usually 0), then its value.
fn put_edge(out: &mut Vec<u8>, e: &Edge, ts_from_end: i64, revision_from_end: u64) {
    put_uvar(out, ts_from_end as u64);
    put_uvar(out, revision_from_end);
    put_value(out, &e.value);
}

/// A flag byte (bit 0: integer sum follows, bit 1: float sum follows), then
/// the non-zero sums: the `i128` zig-zagged as two varints, the `f64` bits.
fn put_sums(out: &mut Vec<u8>, s: &Summary) {
    let float = s.float_sum.to_bits() != 0;
    out.push((s.int_sum != 0) as u8 | (float as u8) << 1);
    if s.int_sum != 0 {
        let z = ((s.int_sum << 1) ^ (s.int_sum >> 127)) as u128;
        put_uvar(out, z as u64);
        put_uvar(out, (z >> 64) as u64);
    }
    if float {
        out.extend_from_slice(&s.float_sum.to_bits().to_le_bytes());
    }
}

/// A value: a tag byte (0 false, 1 true, 2 int, 3 float, 4 text, 5 float
/// that is exactly an `f32`), then its data.
fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Float(f) if as_f32(*f).is_some() => {
            out.push(5);
            out.extend_from_slice(&(*f as f32).to_bits().to_le_bytes());
        }
        Value::Bool(b) => out.push(*b as u8),
        Value::Int(i) => {
            out.push(2);
            put_uvar(out, zigzag(*i));
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Text(t) => {
            out.push(4);
            put_str(out, t);
        }
    }
}

/// Reads the header of chunk format `version`; `max_count` bounds the count.
pub(crate) fn read_summary(r: &mut Reader, max_count: usize, version: u8) -> Result<Summary> {
    let mut s = Summary {
        count: r.count("count", max_count)? as u64,
        ..Summary::default()
    };
    if s.count == 0 {
        return Ok(s);
    }
    s.min_ts_us = r.ivar("minimum time")?;
    s.max_ts_us = s.min_ts_us.wrapping_add(r.uvar("time span")? as i64);
    s.min_revision = r.uvar("minimum revision")?;
    let span = r.uvar("revision span")?;
    s.max_revision = s
        .min_revision
        .checked_add(span)
        .ok_or_else(|| r.error("revision span passes u64::MAX"))?;
    read_counts(r, &mut s, version)?;
    if s.usable > 0 {
        s.min = Some(read_value(r)?);
        s.max = Some(read_value(r)?);
        s.first = Some(read_edge(r, &s, true)?);
        s.last = Some(read_edge(r, &s, false)?);
    }
    if s.numeric > 0 {
        read_sums(r, &mut s)?;
    }
    Ok(s)
}

fn read_counts(r: &mut Reader, s: &mut Summary, version: u8) -> Result<()> {
    let n = s.count as usize;
    s.good = r.count("good count", n)? as u64;
    s.uncertain = r.count("uncertain count", n - s.good as usize)? as u64;
    s.bad = s.count - s.good - s.uncertain;
    s.usable = r.count("usable count", (s.good + s.uncertain) as usize)? as u64;
    s.numeric = r.count("numeric count", s.usable as usize)? as u64;
    s.floats = if version >= 2 {
        Some(r.count("float count", s.numeric as usize)? as u64)
    } else {
        None
    };
    Ok(())
}

/// Reads an edge written relative to the start of the ranges (`first`) or
/// to their end; it must lie inside them.
fn read_edge(r: &mut Reader, s: &Summary, first: bool) -> Result<Edge> {
    let at = *r;
    let dt = r.uvar("edge time")?;
    let drev = r.uvar("edge revision")?;
    let span = (
        s.max_ts_us.wrapping_sub(s.min_ts_us) as u64,
        s.max_revision - s.min_revision,
    );
    if dt > span.0 || drev > span.1 {
        return Err(at.error("edge lies outside the time or revision range"));
    }
    let (ts_us, revision) = if first {
        (s.min_ts_us.wrapping_add(dt as i64), s.min_revision + drev)
    } else {
        (s.max_ts_us.wrapping_sub(dt as i64), s.max_revision - drev)
    };
    let value = read_value(r)?;
    Ok(Edge {
        ts_us,
        revision,
        value,
    })
}

fn read_sums(r: &mut Reader, s: &mut Summary) -> Result<()> {
    let at = *r;
    let flags = r.u8("sum flags")?;
    if flags > 3 {
        return Err(at.error(format!("unknown sum flags {flags:#04x}")));
    }
    if flags & 1 != 0 {
        let lo = r.uvar("integer sum")? as u128;
        let z = lo | (r.uvar("integer sum")? as u128) << 64;
        s.int_sum = (z >> 1) as i128 ^ -((z & 1) as i128);
    }
    if flags & 2 != 0 {
        s.float_sum = f64_le(r, "float sum")?;
    }
    Ok(())
}

fn read_value(r: &mut Reader) -> Result<Value> {
    let at = *r;
    Ok(match r.u8("value type")? {
        0 => Value::Bool(false),
        1 => Value::Bool(true),
        2 => Value::Int(unzigzag(r.uvar("int value")?)),
        3 => Value::Float(f64_le(r, "float value")?),
        4 => Value::Text(read_str(r, "text value")?),
        5 => {
            let b = r.take(4, "f32 value")?;
            let bits = u32::from_le_bytes(b.try_into().expect("take returned 4 bytes"));
            Value::Float(f32::from_bits(bits).into())
        }
        t => return Err(at.error(format!("unknown value type {t}"))),
    })
}

fn f64_le(r: &mut Reader, what: &str) -> Result<f64> {
    let b = r.take(8, what)?;
    let bits = u64::from_le_bytes(b.try_into().expect("take returned 8 bytes"));
    Ok(f64::from_bits(bits))
}
