//! Whole-chunk tests: round trips of every column kind (explicit edge cases
//! and proptest), the summary against a naive computation over the decoded
//! points, corrupt input, and the sizes the simulator's signals reach.

use std::cmp::Ordering;

use bifrost_model::{Quality, QualityLevel, Value};
use proptest::prelude::*;

use crate::summary::value_order;
use crate::synth::{points, Shape, Signal};
use crate::wire::Reader;
use crate::{
    decode, decode_times_revisions, encode, for_each_sample, summary, ChunkError, Point, Summary,
};

/// A value with floats as bits, so NaN payloads and -0.0 compare exactly.
#[derive(Debug, PartialEq)]
enum Exact {
    Bool(bool),
    Int(i64),
    Float(u64),
    Text(String),
}

fn exact(v: &Option<Value>) -> Option<Exact> {
    v.as_ref().map(|v| match v {
        Value::Bool(b) => Exact::Bool(*b),
        Value::Int(i) => Exact::Int(*i),
        Value::Float(f) => Exact::Float(f.to_bits()),
        Value::Text(t) => Exact::Text(t.clone()),
    })
}

type Key = (i64, u64, i64, Option<Exact>, Quality, Option<String>);

fn keys(points: &[Point]) -> Vec<Key> {
    points
        .iter()
        .map(|p| {
            let v = exact(&p.value);
            (
                p.ts_us,
                p.revision,
                p.server_ts_us,
                v,
                p.quality.clone(),
                p.id.clone(),
            )
        })
        .collect()
}

/// Encodes, decodes, checks the points, the summary and the time/revision
/// decoder; returns the bytes.
fn round_trip(points: &[Point]) -> Vec<u8> {
    let bytes = encode(points);
    let back = decode(&bytes).unwrap();
    assert_eq!(keys(&back), keys(points));
    let s = summary(&bytes).unwrap();
    assert_eq!(format!("{s:?}"), format!("{:?}", naive_summary(&back)));
    let (ts, revs) = decode_times_revisions(&bytes).unwrap();
    assert_eq!(ts, points.iter().map(|p| p.ts_us).collect::<Vec<_>>());
    assert_eq!(revs, points.iter().map(|p| p.revision).collect::<Vec<_>>());
    let mut seen = 0;
    let header = for_each_sample(&bytes, |i, smp| {
        assert_eq!(i, seen);
        let p = &back[i];
        assert_eq!((smp.ts_us, smp.revision), (p.ts_us, p.revision));
        assert_eq!(smp.level, p.quality.level);
        assert_eq!(exact(&smp.value.cloned()), exact(&p.value));
        seen += 1;
    })
    .unwrap();
    assert_eq!(
        (seen, format!("{header:?}")),
        (back.len(), format!("{s:?}"))
    );
    bytes
}

/// The summary computed the obvious way, independently of `Summary::of`.
fn naive_summary(points: &[Point]) -> Summary {
    let level = |l| points.iter().filter(|p| p.quality.level == l).count() as u64;
    let usable: Vec<(&Point, &Value)> = points
        .iter()
        .filter(|p| p.quality.level != QualityLevel::Bad)
        .filter_map(|p| p.value.as_ref().map(|v| (p, v)))
        .collect();
    let ints = usable.iter().filter_map(|(_, v)| match v {
        Value::Int(i) => Some(*i as i128),
        _ => None,
    });
    let floats = usable.iter().filter_map(|(_, v)| match v {
        Value::Float(f) => Some(*f),
        _ => None,
    });
    let at = |(p, _): &&(&Point, &Value)| (p.ts_us, p.revision);
    let edge = |(p, v): &(&Point, &Value)| crate::Edge {
        ts_us: p.ts_us,
        revision: p.revision,
        value: (*v).clone(),
    };
    // min_by keeps the first of equal minima; max_by the last, hence rev().
    let values = || usable.iter().map(|(_, v)| *v);
    Summary {
        count: points.len() as u64,
        min_ts_us: points.iter().map(|p| p.ts_us).min().unwrap_or(0),
        max_ts_us: points.iter().map(|p| p.ts_us).max().unwrap_or(0),
        min_revision: points.iter().map(|p| p.revision).min().unwrap_or(0),
        max_revision: points.iter().map(|p| p.revision).max().unwrap_or(0),
        good: level(QualityLevel::Good),
        uncertain: level(QualityLevel::Uncertain),
        bad: level(QualityLevel::Bad),
        usable: usable.len() as u64,
        numeric: ints.clone().count() as u64 + floats.clone().count() as u64,
        floats: Some(floats.clone().count() as u64),
        min: values().min_by(|a, b| value_order(a, b)).cloned(),
        max: values().rev().max_by(|a, b| value_order(a, b)).cloned(),
        int_sum: ints.sum(),
        float_sum: floats.fold(0.0, |a, b| a + b),
        first: usable.iter().min_by_key(at).map(edge),
        last: usable.iter().rev().max_by_key(at).map(edge),
    }
}

fn point(ts_us: i64, revision: u64, value: Option<Value>) -> Point {
    Point {
        ts_us,
        revision,
        server_ts_us: ts_us,
        value,
        quality: Quality::good(),
        id: None,
    }
}

fn floats(values: &[f64]) -> Vec<Point> {
    let v = values.iter().map(|f| Some(Value::Float(*f)));
    v.enumerate()
        .map(|(i, v)| point(i as i64 * 1000, i as u64, v))
        .collect()
}

#[test]
fn empty_and_one_point_chunks_round_trip() {
    let bytes = round_trip(&[]);
    assert_eq!(summary(&bytes).unwrap(), Summary::default());
    assert!(bytes.len() <= 16, "{} bytes", bytes.len());
    round_trip(&[point(-5, 7, Some(Value::Int(3)))]);
    round_trip(&[point(i64::MIN, u64::MAX, None)]);
}

#[test]
fn special_floats_keep_their_bits() {
    let nan_payload = f64::from_bits(0x7ff8_0000_dead_beef);
    let neg_nan = f64::from_bits(0xfff0_0000_0000_0001);
    let specials = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        nan_payload,
        neg_nan,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        f64::MIN,
        1.5,
    ];
    round_trip(&floats(&specials));
    // Long enough that pco is chosen, with NaNs among smooth values.
    let mut smooth: Vec<f64> = (0..2000).map(|i| (i as f64 * 0.01).sin()).collect();
    smooth[100] = nan_payload;
    smooth[500] = -0.0;
    smooth[900] = f64::NEG_INFINITY;
    round_trip(&floats(&smooth));
    // f32 values (pco over f32, and f32 in the header), with f32 specials.
    let mut narrow: Vec<f64> = (0..1500).map(|i| (i as f32 * 0.3).sin() as f64).collect();
    narrow[10] = -0.0;
    narrow[20] = f64::from(f32::from_bits(1));
    narrow[30] = f64::INFINITY;
    narrow[1499] = f64::from(f32::MAX);
    let bytes = round_trip(&floats(&narrow));
    assert_eq!(
        summary(&bytes).unwrap().max,
        Some(Value::Float(f64::INFINITY))
    );
    round_trip(&floats(&[f64::from(f32::MIN_POSITIVE), f64::NAN, 0.5]));
}

#[test]
fn extreme_integers_times_and_revisions_round_trip() {
    let ints = [i64::MIN, i64::MAX, 0, -1, i64::MIN, 1, i64::MAX, i64::MAX];
    let pts: Vec<Point> = ints
        .iter()
        .enumerate()
        .map(|(i, &v)| Point {
            server_ts_us: v,
            ..point(v, u64::MAX - i as u64, Some(Value::Int(v)))
        })
        .collect();
    round_trip(&pts);
    let revs = [u64::MAX, 0, u64::MAX - 1, 1 << 63, (1 << 63) - 1];
    let pts: Vec<Point> = revs
        .iter()
        .map(|&r| point(i64::MAX, r, Some(Value::Int(0))))
        .collect();
    round_trip(&pts);
    // The summary's integer sum does not overflow.
    let big: Vec<Point> = (0..1000)
        .map(|i| point(i, 0, Some(Value::Int(i64::MAX))))
        .collect();
    let s = summary(&round_trip(&big)).unwrap();
    assert_eq!(s.int_sum, i64::MAX as i128 * 1000);
}

#[test]
fn mixed_variants_none_values_qualities_and_ids_round_trip() {
    let long = "x".repeat(100_000);
    let values = [
        Some(Value::Bool(true)),
        Some(Value::Int(-7)),
        None,
        Some(Value::Float(2.5)),
        Some(Value::Text(String::new())),
        Some(Value::Text(long.clone())),
        Some(Value::Text("ünïcödé".into())),
        Some(Value::Bool(false)),
        Some(Value::Int(7)),
        None,
    ];
    let qualities = [
        Quality::good(),
        Quality::uncertain(""),
        Quality::bad("comm_failure"),
        Quality::bad(long.clone()),
        Quality::uncertain("stale"),
    ];
    let ids = [None, Some(String::new()), Some("gw-1".into()), Some(long)];
    let pts: Vec<Point> = (0..40)
        .map(|i| Point {
            ts_us: 1_000 * (i % 7),
            revision: 100 + i as u64,
            server_ts_us: 5_000 * i,
            value: values[i as usize % values.len()].clone(),
            quality: qualities[i as usize % qualities.len()].clone(),
            id: ids[i as usize % ids.len()].clone(),
        })
        .collect();
    round_trip(&pts);
}

#[test]
fn out_of_order_and_duplicate_timestamps_keep_their_order() {
    let ts = [5, 3, 3, 9, 1, 1, 1, 20, -4, 3];
    let pts: Vec<Point> = ts
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            point(
                t * 1_000_000,
                (i as u64 * 7) % 5,
                Some(Value::Int(i as i64)),
            )
        })
        .collect();
    let s = summary(&round_trip(&pts)).unwrap();
    // Ties on (ts, revision) keep the earliest written.
    assert_eq!(s.first.unwrap().ts_us, -4_000_000);
    assert_eq!(s.last.unwrap().ts_us, 20_000_000);
}

#[test]
fn summary_keeps_the_query_layers_rules() {
    let mut pts = vec![
        point(1, 1, Some(Value::Int(5))),
        point(2, 2, Some(Value::Float(-1.5))),
        point(3, 3, Some(Value::Bool(true))),
        point(4, 4, Some(Value::Text("a".into()))),
        point(5, 5, Some(Value::Int(100))),
        point(0, 9, None),
    ];
    pts[4].quality = Quality::bad("out_of_range");
    pts[5].quality = Quality::uncertain("stale");
    let s = summary(&round_trip(&pts)).unwrap();
    assert_eq!((s.count, s.good, s.uncertain, s.bad), (6, 4, 1, 1));
    assert_eq!((s.usable, s.numeric), (4, 2));
    assert_eq!(s.min, Some(Value::Bool(true)));
    assert_eq!(s.max, Some(Value::Text("a".into())));
    assert_eq!((s.int_sum, s.float_sum, s.sum()), (5, -1.5, Some(3.5)));
    assert_eq!(s.first.unwrap().value, Value::Int(5));
    assert_eq!(s.last.unwrap().value, Value::Text("a".into()));
    assert_eq!(
        (s.min_ts_us, s.max_ts_us, s.min_revision, s.max_revision),
        (0, 5, 1, 9)
    );
    assert_eq!(
        value_order(&Value::Int(2), &Value::Float(1.5)),
        Ordering::Greater
    );
}

#[test]
fn format_1_chunks_still_read_without_a_float_count() {
    let pts = floats(&[1.5, 0.0, -2.25]);
    let old = crate::encode_format(&pts, 1);
    assert_eq!(old[0], 1);
    assert_eq!(keys(&decode(&old).unwrap()), keys(&pts));
    let s = summary(&old).unwrap();
    assert_eq!(s.floats, None);
    assert_eq!(
        Summary {
            floats: Some(3),
            ..s
        },
        Summary::of(&pts)
    );
    // Format 2 counts them, also when they add up to zero.
    let zero = floats(&[0.0, -0.0]);
    let s = summary(&encode(&zero)).unwrap();
    assert_eq!(
        (s.floats, s.float_sum.to_bits(), s.int_sum),
        (Some(2), 0, 0)
    );
    // A merge with a format-1 summary no longer knows the count.
    let mut merged = summary(&encode(&zero)).unwrap();
    merged.merge(&summary(&old).unwrap());
    assert_eq!((merged.count, merged.floats), (5, None));
}

#[test]
fn merged_summaries_equal_the_summary_of_all_readings() {
    let mut pts = vec![
        point(10, 4, Some(Value::Int(7))),
        point(5, 9, Some(Value::Float(2.5))),
        point(20, 1, Some(Value::Int(-3))),
        point(1, 2, None),
    ];
    pts[1].quality = Quality::uncertain("stale");
    pts[2].quality = Quality::bad("comm");
    for cut in 0..=pts.len() {
        let mut s = Summary::of(&pts[..cut]);
        s.merge(&Summary::of(&pts[cut..]));
        assert_eq!(s, Summary::of(&pts), "cut at {cut}");
    }
    let mut empty = Summary::default();
    empty.merge(&Summary::default());
    assert_eq!(empty, Summary::default());
}

fn arb_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        any::<bool>().prop_map(|b| Some(Value::Bool(b))),
        any::<i64>().prop_map(|i| Some(Value::Int(i))),
        (0i64..1000).prop_map(|i| Some(Value::Int(i))),
        any::<u64>().prop_map(|b| Some(Value::Float(f64::from_bits(b)))),
        (-100.0f64..100.0).prop_map(|f| Some(Value::Float(f))),
        any::<f32>().prop_map(|f| Some(Value::Float(f.into()))),
        "[a-c]{0,3}|.{0,20}".prop_map(|t| Some(Value::Text(t))),
    ]
}

fn arb_quality() -> impl Strategy<Value = Quality> {
    let level = prop_oneof![
        Just(QualityLevel::Good),
        Just(QualityLevel::Uncertain),
        Just(QualityLevel::Bad)
    ];
    (level, "|timeout|.{0,10}").prop_map(|(level, reason)| Quality { level, reason })
}

/// Points whose times and revisions are either regular with noise or
/// arbitrary, so both codecs of each column get exercised.
fn arb_points() -> impl Strategy<Value = Vec<Point>> {
    let regular = (any::<i64>(), 0i64..3, any::<u64>(), 0i64..10_000_000);
    let columns = (
        arb_value(),
        arb_quality(),
        proptest::option::of("[a-z]{0,4}[0-9]{0,6}"),
    );
    let point = (regular, any::<(i64, u64, i64)>(), any::<bool>(), columns);
    proptest::collection::vec(point, 0..400).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(
                |(i, ((base, noise, rev, lag), wild, regular, (value, quality, id)))| {
                    let i = i as i64;
                    let (ts_us, revision, server_ts_us) = if regular {
                        let ts = base.wrapping_add(i * 1_000_000 + noise);
                        (
                            ts,
                            rev.wrapping_add(i as u64 * 10_000),
                            ts.wrapping_add(lag),
                        )
                    } else {
                        wild
                    };
                    Point {
                        ts_us,
                        revision,
                        server_ts_us,
                        value,
                        quality,
                        id,
                    }
                },
            )
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_chunks_round_trip(pts in arb_points()) {
        round_trip(&pts);
    }

    #[test]
    fn merges_at_any_cut_match_one_pass(pts in arb_points(), cut in 0usize..400) {
        let cut = cut.min(pts.len());
        let mut s = Summary::of(&pts[..cut]);
        s.merge(&Summary::of(&pts[cut..]));
        let all = Summary::of(&pts);
        // Float sums are added in another order: equal up to rounding,
        // which is bounded by the sum of the magnitudes.
        let (a, b) = (s.float_sum, all.float_sum);
        let magnitude: f64 = pts
            .iter()
            .filter_map(|p| match p.value {
                Some(Value::Float(f)) => Some(f.abs()),
                _ => None,
            })
            .sum();
        let close = a == b
            || !(a.is_finite() && b.is_finite())
            || (a - b).abs() <= 4.0 * pts.len() as f64 * f64::EPSILON * magnitude;
        prop_assert!(close, "{} vs {}", s.float_sum, all.float_sum);
        prop_assert_eq!(
            format!("{:?}", Summary { float_sum: 0.0, ..s }),
            format!("{:?}", Summary { float_sum: 0.0, ..all })
        );
    }

    #[test]
    fn regular_columns_round_trip(
        start in any::<i64>(),
        step in -5_000_000i64..5_000_000,
        n in 1usize..3000,
        noise in 0i64..5000,
        value in arb_value(),
    ) {
        let pts: Vec<Point> = (0..n as i64)
            .map(|i| point(
                start.wrapping_add(i * step + (i * 7919) % (noise + 1)),
                (start as u64).wrapping_add(i as u64 * 10_000),
                value.clone(),
            ))
            .collect();
        round_trip(&pts);
    }
}

fn sim_chunk() -> Vec<u8> {
    let shape = Shape {
        signal: Signal::Sine,
        points: 300,
        jitter: true,
        late: 0.01,
        seed: 3,
    };
    let mut pts = points(&shape);
    pts[5].quality = Quality::bad("timeout");
    pts[6].value = Some(Value::Text("t".into()));
    pts[7].id = Some("gw-7".into());
    encode(&pts)
}

#[test]
fn truncated_chunks_are_errors_at_every_length() {
    let bytes = sim_chunk();
    for len in 0..bytes.len() {
        match decode(&bytes[..len]) {
            Err(ChunkError::TooShort { .. } | ChunkError::Checksum { .. }) => {}
            other => panic!("truncated to {len}: {other:?}"),
        }
        assert!(summary(&bytes[..len]).is_err());
    }
}

#[test]
fn flipped_bytes_and_wrong_versions_are_errors() {
    let bytes = sim_chunk();
    for i in 0..bytes.len() {
        for bit in [0x01, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            let e = decode(&b).unwrap_err();
            assert!(
                matches!(e, ChunkError::Checksum { .. } | ChunkError::Version { .. }),
                "byte {i}: {e}"
            );
        }
    }
    let mut b = bytes.clone();
    b[0] = 3;
    let e = decode(&b).unwrap_err();
    assert_eq!(
        e.to_string(),
        "chunk format version 3 is not supported (this build reads versions 1 to 2)"
    );
    assert!(decode(&[]).unwrap_err().to_string().contains("0 bytes"));
}

/// The bytes between the version byte and the checksum, read without the
/// checksum's protection: what a decoder sees if a corruption slips past it.
fn decode_body(body: &[u8]) -> Result<Vec<Point>, ChunkError> {
    let mut bytes = vec![crate::FORMAT_VERSION];
    bytes.extend_from_slice(body);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    decode(&bytes)
}

/// Chunks whose columns use every codec: sine and random (pco), a short
/// ramp (delta runs, Gorilla), mixed variants.
fn bodies() -> Vec<Vec<u8>> {
    let mut out = vec![sim_chunk()];
    for (signal, n) in [
        (Signal::Random, 600),
        (Signal::Ramp, 50),
        (Signal::Sine, 30),
    ] {
        let shape = Shape {
            signal,
            points: n,
            jitter: true,
            late: 0.05,
            seed: 1,
        };
        out.push(encode(&points(&shape)));
    }
    out.into_iter()
        .map(|b| b[1..b.len() - 4].to_vec())
        .collect()
}

#[test]
fn truncated_sections_name_the_section_and_offset() {
    for body in bodies() {
        for len in 0..body.len() {
            match decode_body(&body[..len]) {
                Err(ChunkError::Corrupt { offset, .. }) => assert!(offset <= len + 1),
                other => panic!("body cut to {len}: {other:?}"),
            }
        }
    }
}

#[test]
fn flipped_bytes_past_the_checksum_never_panic() {
    let mut rng = rand::rng();
    for body in bodies() {
        for i in 0..body.len() {
            let mut b = body.clone();
            b[i] ^= 1 << rand::Rng::random_range(&mut rng, 0..8);
            // A flip may still decode (to other points); it must not panic,
            // and an error must name a section.
            if let Err(e) = decode_body(&b) {
                assert!(matches!(e, ChunkError::Corrupt { .. }), "{e}");
            }
        }
    }
}

#[test]
fn column_errors_name_the_column() {
    let bytes = encode(&floats(&[1.0, 2.0, 3.0]));
    let mut body = bytes[1..bytes.len() - 4].to_vec();
    // The first column's codec byte follows the header and its length.
    let header = {
        let mut r = Reader::new(&body, 1, "header");
        crate::summary::read_summary(&mut r, 10, crate::FORMAT_VERSION).unwrap();
        body.len() - r.remaining()
    };
    body[header + 1] = 9;
    let e = decode_body(&body).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "chunk timestamps at byte {}: unknown integer codec 9",
            header + 2
        )
    );
}

#[test]
fn simulator_signals_compress_well_under_the_goals() {
    // Goals per reading for a whole node (issue 11): 2 B for sine, ramp and
    // counter, 3.5 B for random. Exact 1 s polls, hour-long chunks.
    for (signal, limit) in [
        (Signal::Sine, 1.0),
        (Signal::Ramp, 0.2),
        (Signal::Counter, 0.2),
        (Signal::Random, 1.5),
    ] {
        let shape = Shape {
            signal,
            points: 3600,
            jitter: false,
            late: 0.01,
            seed: 11,
        };
        let pts = points(&shape);
        let per_point = round_trip(&pts).len() as f64 / pts.len() as f64;
        assert!(per_point < limit, "{}: {per_point:.3} B/pt", signal.name());
    }
}
