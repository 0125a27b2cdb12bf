//! The adapter over RocksDB must scan exactly like the reference
//! [`MemoryStore`]: the same readings in both, the same random requests.

use bifrost_storage::{
    DataType, Device, NewReading, Protocol, Quality, QualityLevel, StateStore, Tag, Value,
};

use super::*;
use bifrost_query::store::Summary;

const TAGS: [&str; 3] = ["a/x", "a/y", "b"];

fn config(name: &str) -> Tag {
    Tag::new(name, "plc", "hr:0", DataType::F64)
}

/// A small deterministic generator (the test must not depend on luck).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The same readings (repeated timestamps, all qualities, some without a
/// value, out of time order) in a `StateStore` and a `MemoryStore`.
fn stores(rng: &mut Lcg) -> (tempfile::TempDir, StateStore, MemoryStore) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(dir.path()).unwrap();
    let mut memory = MemoryStore::new();
    let mut b = state.batch();
    let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
    b.put_device(device, true, None, 1).unwrap();
    for name in TAGS {
        b.put_tag(config(name), true, None, 1).unwrap();
        memory.put_tag(config(name));
    }
    let mut readings = Vec::new();
    for i in 0..300 {
        let level = match rng.below(3) {
            0 => QualityLevel::Good,
            1 => QualityLevel::Uncertain,
            _ => QualityLevel::Bad,
        };
        let value = (level == QualityLevel::Good || rng.below(2) == 0)
            .then(|| Value::Float(rng.below(100) as f64));
        readings.push(NewReading {
            id: format!("r{i}"),
            tag: TAGS[rng.below(3) as usize].into(),
            ts_us: rng.below(40) as i64 - 20,
            server_ts_us: 0,
            value,
            quality: Quality {
                level,
                reason: String::new(),
            },
        });
    }
    for r in &readings {
        memory.insert(Reading {
            id: r.id.clone(),
            tag: r.tag.clone(),
            ts_us: r.ts_us,
            server_ts_us: r.server_ts_us,
            value: r.value.clone(),
            quality: r.quality.clone(),
            revision: 0,
        });
    }
    b.insert_readings(readings, false).unwrap().unwrap();
    b.commit().unwrap();
    (dir, state, memory)
}

fn position(rng: &mut Lcg) -> Position {
    Position {
        ts_us: rng.below(50) as i64 - 25,
        revision: match rng.below(4) {
            0 => 0,
            1 => u64::MAX,
            _ => rng.below(320),
        },
    }
}

fn scan_all(
    h: &dyn History,
    req: &ScanRequest<'_>,
    stop_after: u64,
) -> (Vec<(i64, u64, String)>, ScanOutcome) {
    let mut seen = Vec::new();
    let out = h
        .scan(req, &mut |r| {
            seen.push((r.ts_us, r.revision, r.id));
            (seen.len() as u64) < stop_after
        })
        .unwrap();
    (seen, out)
}

#[test]
fn store_view_scans_exactly_like_the_reference_store() {
    let mut rng = Lcg(7);
    let (_dir, state, memory) = stores(&mut rng);
    let view = StoreView(&state);
    for n in 0..2000 {
        let tag = state.tag(TAGS[rng.below(3) as usize]).unwrap();
        let mem_tag = memory.tag(&tag.name).unwrap();
        let (from, to) = (position(&mut rng), position(&mut rng));
        let mut filter = ReadingFilter::ALL;
        if rng.below(2) == 0 {
            filter.levels = [rng.below(2) == 0, rng.below(2) == 0, rng.below(2) == 0];
            filter.needs_value = rng.below(2) == 0;
        }
        let limit = (rng.below(3) == 0).then(|| rng.below(20));
        let max_read = (rng.below(3) == 0).then(|| rng.below(30));
        let backward = rng.below(2) == 0;
        let stop_after = if rng.below(4) == 0 {
            rng.below(10) + 1
        } else {
            u64::MAX
        };
        let req = |tag| ScanRequest {
            tag,
            from,
            to,
            backward,
            limit,
            max_read,
            filter,
        };
        let ours = scan_all(&view, &req(&tag), stop_after);
        let reference = scan_all(&memory, &req(&mem_tag), stop_after);
        assert_eq!(ours, reference, "request {n}: {:?}", req(&tag));
    }
}

#[test]
fn history_call_reads_a_half_open_range_through_the_scan() {
    let mut rng = Lcg(11);
    let (_dir, state, memory) = stores(&mut rng);
    let all: Vec<(i64, u64)> = {
        let tag = memory.tag("a/x").unwrap();
        let req = ScanRequest::between(&tag, i64::MIN, i64::MAX);
        scan_all(&memory, &req, u64::MAX)
            .0
            .into_iter()
            .map(|(ts, rev, _)| (ts, rev))
            .collect()
    };
    let read = |from, to, limit| {
        let mut got = Vec::new();
        let n = history(&state, "a/x", from, to, limit, |r| {
            got.push((r.ts_us, r.revision));
            true
        })
        .unwrap()
        .unwrap();
        assert_eq!(n as usize, got.len());
        got
    };
    let expect = |from: i64, to: i64, limit: usize| -> Vec<(i64, u64)> {
        let v = all
            .iter()
            .copied()
            .filter(|(ts, _)| from <= *ts && *ts < to);
        v.take(if limit == 0 { usize::MAX } else { limit })
            .collect()
    };
    assert_eq!(read(i64::MIN, i64::MAX, 0), expect(i64::MIN, i64::MAX, 0));
    assert_eq!(read(-5, 5, 0), expect(-5, 5, 0));
    assert_eq!(read(-5, 5, 3), expect(-5, 5, 3));
    assert!(read(5, 5, 0).is_empty());
    assert!(read(6, 5, 0).is_empty());
    assert!(history(&state, "nope", 0, 1, 0, |_| true).unwrap().is_err());
}

/// The adapter's history, with only the scan: `summarize` is the default,
/// a fold of the scan.
struct ScanOnly<'a>(StoreView<'a>);

impl History for ScanOnly<'_> {
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        visit: &mut dyn FnMut(Reading) -> bool,
    ) -> Result<ScanOutcome, StoreError> {
        self.0.scan(req, visit)
    }
}

/// Readings of "a/x" (and, between them, of "a/w") about one a second
/// from 0, in sealed chunks, some removed by retention, with late readings
/// in an unmerged segment (blocks holding both tags) and more not flushed
/// at all; values mix floats, integers and none, qualities all three
/// levels.
fn layered_store(rng: &mut Lcg) -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::open(dir.path()).unwrap();
    let mut b = state.batch();
    let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
    b.put_device(device, true, None, 1).unwrap();
    // "a/w" first: a lower id, so its readings come first in a segment block.
    b.put_tag(config("a/w"), true, None, 1).unwrap();
    b.put_tag(config("a/x"), true, None, 1).unwrap();
    b.commit().unwrap();
    let mut n = 0;
    let mut wave = |ts: &mut dyn FnMut(&mut Lcg, usize) -> i64, count: usize, rng: &mut Lcg| {
        let readings: Vec<NewReading> = (0..count)
            .map(|i| {
                n += 1;
                let level = [
                    QualityLevel::Good,
                    QualityLevel::Uncertain,
                    QualityLevel::Bad,
                ][(rng.below(10) / 8 + rng.below(10) / 9) as usize];
                let value = match rng.below(10) {
                    0 if level != QualityLevel::Good => None,
                    1..=3 => Some(Value::Int(rng.below(1000) as i64 - 500)),
                    _ => Some(Value::Float(rng.below(1000) as f64 / 8.0 + 1.0 / 16.0)),
                };
                NewReading {
                    id: format!("r{n}"),
                    tag: ["a/w", "a/x", "a/x"][rng.below(3) as usize].into(),
                    ts_us: ts(rng, i),
                    server_ts_us: 0,
                    value,
                    quality: Quality {
                        level,
                        reason: String::new(),
                    },
                }
            })
            .collect();
        let mut b = state.batch();
        b.insert_readings(readings, false).unwrap().unwrap();
        b.commit().unwrap();
    };
    wave(&mut |_, i| i as i64 * 1_000_000, 5000, rng);
    state.flush().unwrap();
    state.merge_segments().unwrap();
    let mut b = state.batch();
    assert!(b.compact(700).unwrap() > 0);
    b.commit().unwrap();
    wave(
        &mut |rng, _| rng.below(5000) as i64 * 1_000_000 + 1,
        400,
        rng,
    );
    state.flush().unwrap();
    wave(
        &mut |rng, _| rng.below(6000) as i64 * 1_000_000 + 2,
        300,
        rng,
    );
    (dir, state)
}

#[test]
fn store_view_summarizes_chunks_whole_exactly_like_a_fold_of_its_scan() {
    let mut rng = Lcg(5);
    let (_dir, state) = layered_store(&mut rng);
    let view = StoreView(&state);
    let tag = state.tag("a/x").unwrap();
    let widths = [
        None,
        Some(1),
        Some(7),
        Some(60),
        Some(600),
        Some(3600),
        Some(86_400),
    ];
    for n in 0..300 {
        let (a, b) = (rng.below(6500) as i64, rng.below(6500) as i64);
        let req = SummaryRequest {
            tag: &tag,
            from_us: if n % 4 == 0 {
                i64::MIN
            } else {
                a.min(b) * 1_000_000 - 1
            },
            to_us: if n % 3 == 0 {
                i64::MAX
            } else {
                a.max(b) * 1_000_000
            },
            width_us: widths[rng.below(7) as usize].map(|w: i64| w * 1_000_000),
            max_read: None,
        };
        let ours = view.summarize(&req).unwrap();
        let folded = ScanOnly(view).summarize(&req).unwrap();
        assert_eq!(ours.len(), folded.len(), "request {n}: {req:?}");
        for ((k, s), (fk, f)) in ours.iter().zip(&folded) {
            assert_eq!(k, fk, "request {n}");
            let close = (s.float_sum - f.float_sum).abs() <= 1e-9 * f.float_sum.abs().max(1.0);
            assert!(
                close,
                "request {n} bucket {k:?}: {} vs {}",
                s.float_sum, f.float_sum
            );
            let exact = |s: &Summary| Summary {
                float_sum: 0.0,
                ..s.clone()
            };
            assert_eq!(exact(s), exact(f), "request {n} bucket {k:?}");
        }
    }
}
