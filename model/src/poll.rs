//! The compact records of readings: one poll of one device (what the
//! outbox keeps, what the Raft log carries and what apply reads, byte for
//! byte; encoded once, by the poller's node, never re-encoded on the way),
//! and one client's ingest batch (encoded once, by the node that took the
//! call, with tag names resolved to tag ids there).
//!
//! Layout (integers are LEB128 varints, signed ones zig-zag first):
//!
//! ```text
//! MAGIC (0xB7) | version (1) | device name (len, UTF-8) | assignment epoch
//! | poll time (µs, signed) | reading count | readings
//! reading: tag id | head byte | [own time: delta from poll time, signed]
//!          | [reason: len, UTF-8] | value
//! head byte: bits 0-2 value kind (0 none, 1 false, 2 true, 3 integer
//!            (signed varint), 4 f32 (4 bytes LE), 5 f64 (8 bytes LE),
//!            6 text (len, UTF-8)); bits 3-4 quality level (0 good,
//!            1 uncertain, 2 bad); bit 5 a reason follows; bit 6 the reading
//!            has its own time
//! ```
//!
//! No reading id and no tag name: a polled reading is identified by its
//! outbox record (origin and sequence), so one good reading of a `u16` tag
//! costs about five bytes.
//!
//! An ingest batch is the same but for its header and a client's reading
//! id before each reading, whose own time is then relative to the batch's
//! server time:
//!
//! ```text
//! INGEST_MAGIC (0xB8) | version (1) | server time (µs, signed)
//! | reading count | (reading id (len, UTF-8) | reading)*
//! ```
//!
//! Pure: depends on nothing but this crate.

use crate::{Quality, QualityLevel, Value};

/// First byte of every encoded poll (a postcard record behind the storage
/// codec starts with its format version, 1).
pub const MAGIC: u8 = 0xB7;
/// First byte of every encoded ingest batch.
pub const INGEST_MAGIC: u8 = 0xB8;
const VERSION: u8 = 1;

/// One poll of one device.
#[derive(Clone, Debug, PartialEq)]
pub struct DevicePoll {
    pub device: String,
    /// The epoch of the assignment under which the device was polled.
    pub epoch: u64,
    /// When the poll was made, µs since the Unix epoch.
    pub ts_us: i64,
    pub readings: Vec<PolledValue>,
}

/// One reading of a poll.
#[derive(Clone, Debug, PartialEq)]
pub struct PolledValue {
    pub tag_id: u64,
    /// The poll's time unless the device stamped the value itself.
    pub ts_us: i64,
    pub value: Option<Value>,
    pub quality: Quality,
}

/// The readings of one ingest call, their tags resolved to ids.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestBatch {
    /// When the cluster received them, µs since the Unix epoch.
    pub server_ts_us: i64,
    pub readings: Vec<IngestedValue>,
}

/// One reading of an ingest batch.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestedValue {
    /// Chosen by the client; a reading sent again under it is a duplicate.
    pub id: String,
    pub value: PolledValue,
}

/// A poll that cannot be read back, with where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("polled record at byte {offset}: {what}")]
pub struct PollDecodeError {
    pub offset: usize,
    pub what: String,
}

const OWN_TIME: u8 = 1 << 6;
const REASON: u8 = 1 << 5;

impl DevicePoll {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.device.len() + 6 * self.readings.len());
        out.extend([MAGIC, VERSION]);
        put_str(&mut out, &self.device);
        put_u64(&mut out, self.epoch);
        put_i64(&mut out, self.ts_us);
        put_u64(&mut out, self.readings.len() as u64);
        for r in &self.readings {
            put_reading(&mut out, self.ts_us, r);
        }
        out
    }

    /// Reads a poll back; the error says what is wrong and at which byte.
    pub fn decode(bytes: &[u8]) -> Result<DevicePoll, PollDecodeError> {
        let mut c = Cursor { bytes, at: 0 };
        c.header(MAGIC, "a polled record")?;
        let device = c.str("device name")?;
        let epoch = c.u64("epoch")?;
        let ts_us = c.i64("poll time")?;
        let n = c.count()?;
        let mut readings = Vec::with_capacity(n);
        for _ in 0..n {
            readings.push(c.reading(ts_us)?);
        }
        c.end()?;
        Ok(DevicePoll {
            device,
            epoch,
            ts_us,
            readings,
        })
    }

    /// How many readings an encoded poll holds, reading its header only.
    pub fn count(bytes: &[u8]) -> Result<usize, PollDecodeError> {
        let mut c = Cursor { bytes, at: 0 };
        c.header(MAGIC, "a polled record")?;
        c.str("device name")?;
        c.u64("epoch")?;
        c.i64("poll time")?;
        Ok(c.u64("reading count")? as usize)
    }

    /// Whether `bytes` are an encoded poll (rather than an older record).
    pub fn is_encoded(bytes: &[u8]) -> bool {
        bytes.first() == Some(&MAGIC)
    }
}

impl IngestBatch {
    pub fn encode(&self) -> Vec<u8> {
        let ids: usize = self.readings.iter().map(|r| r.id.len() + 1).sum();
        let mut out = Vec::with_capacity(24 + ids + 8 * self.readings.len());
        out.extend([INGEST_MAGIC, VERSION]);
        put_i64(&mut out, self.server_ts_us);
        put_u64(&mut out, self.readings.len() as u64);
        for r in &self.readings {
            put_str(&mut out, &r.id);
            put_reading(&mut out, self.server_ts_us, &r.value);
        }
        out
    }

    /// Reads a batch back; the error says what is wrong and at which byte.
    pub fn decode(bytes: &[u8]) -> Result<IngestBatch, PollDecodeError> {
        let mut c = Cursor { bytes, at: 0 };
        c.header(INGEST_MAGIC, "an ingest batch")?;
        let server_ts_us = c.i64("server time")?;
        let n = c.count()?;
        let mut readings = Vec::with_capacity(n);
        for _ in 0..n {
            let id = c.str("reading id")?;
            let value = c.reading(server_ts_us)?;
            readings.push(IngestedValue { id, value });
        }
        c.end()?;
        Ok(IngestBatch {
            server_ts_us,
            readings,
        })
    }
}

/// One reading, its time relative to `base_ts` (see the module).
fn put_reading(out: &mut Vec<u8>, base_ts: i64, r: &PolledValue) {
    put_u64(out, r.tag_id);
    let (kind, payload) = value_kind(&r.value);
    let mut head = kind | (level_code(r.quality.level) << 3);
    if !r.quality.reason.is_empty() {
        head |= REASON;
    }
    if r.ts_us != base_ts {
        head |= OWN_TIME;
    }
    out.push(head);
    if head & OWN_TIME != 0 {
        put_i64(out, r.ts_us.wrapping_sub(base_ts));
    }
    if head & REASON != 0 {
        put_str(out, &r.quality.reason);
    }
    payload(out);
}

type Payload<'a> = Box<dyn FnOnce(&mut Vec<u8>) + 'a>;

/// The kind code of a value and how its bytes are written. A float that an
/// `f32` holds exactly (most PLC floats are `f32`) takes four bytes; NaNs
/// keep all their bits as `f64`.
fn value_kind(v: &Option<Value>) -> (u8, Payload<'_>) {
    match v {
        None => (0, Box::new(|_| {})),
        Some(Value::Bool(false)) => (1, Box::new(|_| {})),
        Some(Value::Bool(true)) => (2, Box::new(|_| {})),
        Some(Value::Int(i)) => (3, Box::new(move |o| put_i64(o, *i))),
        Some(Value::Float(f)) if !f.is_nan() && (*f as f32) as f64 == *f => {
            (4, Box::new(move |o| o.extend((*f as f32).to_le_bytes())))
        }
        Some(Value::Float(f)) => (5, Box::new(move |o| o.extend(f.to_le_bytes()))),
        Some(Value::Text(s)) => (6, Box::new(move |o| put_str(o, s))),
    }
}

fn level_code(level: QualityLevel) -> u8 {
    match level {
        QualityLevel::Good => 0,
        QualityLevel::Uncertain => 1,
        QualityLevel::Bad => 2,
    }
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Reads an encoded poll, knowing its offset for errors.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn error(&self, what: impl Into<String>) -> PollDecodeError {
        PollDecodeError {
            offset: self.at,
            what: what.into(),
        }
    }

    /// The magic byte `magic` of `what`, and the version.
    fn header(&mut self, magic: u8, what: &str) -> Result<(), PollDecodeError> {
        match self.bytes {
            [m, VERSION, ..] if *m == magic => {
                self.at = 2;
                Ok(())
            }
            [m, v, ..] if *m == magic => Err(self.error(format!("unknown version {v}"))),
            _ => Err(self.error(format!("not {what} (no magic byte {magic:#04x})"))),
        }
    }

    /// A reading count, checked against the bytes left.
    fn count(&mut self) -> Result<usize, PollDecodeError> {
        let n = self.u64("reading count")?;
        if n > (self.bytes.len() as u64) {
            let total = self.bytes.len();
            return Err(self.error(format!("{n} readings cannot fit in {total} bytes")));
        }
        Ok(n as usize)
    }

    /// That nothing follows the last reading.
    fn end(&self) -> Result<(), PollDecodeError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            left => Err(self.error(format!("{left} bytes after the last reading"))),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], PollDecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error(format!("{what}: {n} bytes needed, the record ends first")));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u64(&mut self, what: &str) -> Result<u64, PollDecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1, what)?.first().expect("one byte");
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error(format!("{what}: varint longer than 10 bytes")))
    }

    fn i64(&mut self, what: &str) -> Result<i64, PollDecodeError> {
        let v = self.u64(what)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn str(&mut self, what: &str) -> Result<String, PollDecodeError> {
        let n = self.u64(what)? as usize;
        let start = self.at;
        let b = self.take(n, what)?.to_vec();
        String::from_utf8(b).map_err(|_| PollDecodeError {
            offset: start,
            what: format!("{what} is not UTF-8"),
        })
    }

    fn reading(&mut self, poll_ts: i64) -> Result<PolledValue, PollDecodeError> {
        let tag_id = self.u64("tag id")?;
        let head = *self.take(1, "reading head")?.first().expect("one byte");
        if head & 0x80 != 0 {
            return Err(self.error(format!("reading head {head:#04x} has an unknown bit")));
        }
        let ts_us = if head & OWN_TIME != 0 {
            poll_ts.wrapping_add(self.i64("reading time")?)
        } else {
            poll_ts
        };
        let reason = if head & REASON != 0 {
            self.str("quality reason")?
        } else {
            String::new()
        };
        let level = match (head >> 3) & 0b11 {
            0 => QualityLevel::Good,
            1 => QualityLevel::Uncertain,
            2 => QualityLevel::Bad,
            q => return Err(self.error(format!("quality code {q} is unknown"))),
        };
        let value = self.value(head & 0b111)?;
        Ok(PolledValue {
            tag_id,
            ts_us,
            value,
            quality: Quality { level, reason },
        })
    }

    fn value(&mut self, kind: u8) -> Result<Option<Value>, PollDecodeError> {
        let fixed = |b: &[u8]| -> [u8; 8] {
            let mut a = [0u8; 8];
            a[..b.len()].copy_from_slice(b);
            a
        };
        Ok(match kind {
            0 => None,
            1 => Some(Value::Bool(false)),
            2 => Some(Value::Bool(true)),
            3 => Some(Value::Int(self.i64("integer value")?)),
            4 => {
                let b = fixed(self.take(4, "f32 value")?);
                Some(Value::Float(
                    f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64
                ))
            }
            5 => Some(Value::Float(f64::from_le_bytes(fixed(
                self.take(8, "f64 value")?,
            )))),
            6 => Some(Value::Text(self.str("text value")?)),
            k => return Err(self.error(format!("value kind {k} is unknown"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DevicePoll {
        let good = |tag_id, value| PolledValue {
            tag_id,
            ts_us: 1_700_000_000_000_000,
            value: Some(value),
            quality: Quality::good(),
        };
        DevicePoll {
            device: "plc1".into(),
            epoch: 42,
            ts_us: 1_700_000_000_000_000,
            readings: vec![
                good(1, Value::Int(999)),
                good(300, Value::Float(21.5)),
                good(2, Value::Float(0.1)),
                good(3, Value::Float(f64::from_bits(0x7ff8_0000_0000_1234))),
                good(4, Value::Bool(true)),
                good(5, Value::Text("héllo".into())),
                good(6, Value::Int(i64::MIN)),
                PolledValue {
                    tag_id: u64::MAX,
                    ts_us: 1_699_999_999_000_000,
                    value: None,
                    quality: Quality::bad("comm_failure"),
                },
                PolledValue {
                    tag_id: 7,
                    ts_us: i64::MIN,
                    value: Some(Value::Bool(false)),
                    quality: Quality {
                        level: QualityLevel::Uncertain,
                        reason: String::new(),
                    },
                },
            ],
        }
    }

    #[test]
    fn every_kind_of_reading_round_trips_bit_for_bit() {
        let poll = sample();
        let bytes = poll.encode();
        let back = DevicePoll::decode(&bytes).unwrap();
        assert_eq!(back.device, poll.device);
        assert_eq!((back.epoch, back.ts_us), (poll.epoch, poll.ts_us));
        for (a, b) in poll.readings.iter().zip(&back.readings) {
            assert_eq!(
                (a.tag_id, a.ts_us, &a.quality),
                (b.tag_id, b.ts_us, &b.quality)
            );
            match (&a.value, &b.value) {
                (Some(Value::Float(x)), Some(Value::Float(y))) => {
                    assert_eq!(x.to_bits(), y.to_bits())
                }
                (x, y) => assert_eq!(x, y),
            }
        }
        assert_eq!(DevicePoll::count(&bytes).unwrap(), poll.readings.len());
        assert!(DevicePoll::is_encoded(&bytes));
    }

    #[test]
    fn a_good_u16_reading_takes_a_few_bytes() {
        let poll = DevicePoll {
            device: "plc1".into(),
            epoch: 7,
            ts_us: 1_700_000_000_000_000,
            readings: (0..100)
                .map(|i| PolledValue {
                    tag_id: 1000 + i,
                    ts_us: 1_700_000_000_000_000,
                    value: Some(Value::Int(999)),
                    quality: Quality::good(),
                })
                .collect(),
        };
        let per_reading = poll.encode().len() as f64 / 100.0;
        assert!(per_reading <= 5.2, "{per_reading} bytes per reading");
    }

    fn ingest_sample() -> IngestBatch {
        let server_ts_us = 1_700_000_000_123_456;
        IngestBatch {
            server_ts_us,
            readings: sample()
                .readings
                .into_iter()
                .enumerate()
                .map(|(i, value)| IngestedValue {
                    id: format!("gateway-7:{i}:é"),
                    value,
                })
                .collect(),
        }
    }

    #[test]
    fn an_ingest_batch_round_trips_with_its_ids_and_is_told_from_a_poll() {
        let batch = ingest_sample();
        let bytes = batch.encode();
        let mut back = IngestBatch::decode(&bytes).unwrap();
        // The NaN keeps its bits; NaN is never `==`, so it is taken out to
        // compare the rest.
        let nan_bits = |b: &mut IngestBatch| match b.readings[3].value.value.take() {
            Some(Value::Float(f)) => f.to_bits(),
            other => panic!("{other:?}"),
        };
        let mut want = batch.clone();
        assert_eq!(nan_bits(&mut back), nan_bits(&mut want));
        assert_eq!(back, want);
        for n in 0..bytes.len() {
            let e = IngestBatch::decode(&bytes[..n]).unwrap_err();
            assert!(e.offset <= n, "{e} at length {n}");
        }
        let e = DevicePoll::decode(&bytes).unwrap_err();
        assert!(e.what.contains("not a polled record"), "{e}");
        let e = IngestBatch::decode(&sample().encode()).unwrap_err();
        assert!(e.what.contains("not an ingest batch"), "{e}");
        let mut trailing = bytes.clone();
        trailing.push(7);
        let e = IngestBatch::decode(&trailing).unwrap_err();
        assert_eq!(
            (e.offset, e.what.as_str()),
            (bytes.len(), "1 bytes after the last reading")
        );
    }

    #[test]
    fn every_truncation_and_bad_header_is_an_error_naming_the_byte() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            let e = DevicePoll::decode(&bytes[..n]).unwrap_err();
            assert!(e.offset <= n, "{e} at length {n}");
        }
        let mut wrong = bytes.clone();
        wrong[1] = 9;
        assert!(DevicePoll::decode(&wrong)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(DevicePoll::decode(&trailing)
            .unwrap_err()
            .what
            .contains("after the last reading"));
        let e = DevicePoll::decode(&[1, 2, 3]).unwrap_err();
        assert!(e.what.contains("magic"), "{e}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let bytes = sample().encode();
        let mut state = 1u64;
        for _ in 0..20_000 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = 2 + (state >> 33) as usize % (b.len() - 2);
                b[i] = (state >> 17) as u8;
            }
            let _ = DevicePoll::decode(&b);
        }
    }
}
