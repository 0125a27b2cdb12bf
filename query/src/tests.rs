//! Query engine tests against the reference [`MemoryStore`]. The test data
//! is generated here, and every expected result is computed by the test
//! itself with plain loops over that data, never with the engine's helpers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::model::{DataType, Device, Quality, QualityLevel, Reading, Tag, Value};

use super::*;

/// 2026-11-28T10:00:00Z.
pub(crate) const T0: i64 = 1_795_860_000_000_000;
pub(crate) const SEC: i64 = 1_000_000;
/// The queries' now(): 10:10:30.
pub(crate) const NOW: i64 = T0 + 630 * SEC;

pub(crate) const A: &str = "line1/press1/temp";
pub(crate) const B: &str = "line1/press1/count";
const C: &str = "line1/press2/temp";
const D: &str = "line2/press1/temp";
pub(crate) const E: &str = "line2/flag";
pub(crate) const F: &str = "line2/label";
const G: &str = "line10/temp";
const H: &str = "line1/empty";
const TEMPS: [&str; 4] = [A, C, D, G];

/// One stored reading, as the test knows it.
#[derive(Clone, Debug)]
struct R {
    tag: String,
    ts: i64,
    value: Cell,
    quality: &'static str,
    reason: Option<String>,
    rev: i64,
    id: String,
}

impl R {
    /// What aggregates see when the query does not mention quality.
    fn usable(&self) -> bool {
        self.quality != "bad" && self.value != Cell::Null
    }
}

pub(crate) struct Fixture {
    pub(crate) store: MemoryStore,
    pub(crate) cluster: ClusterInfo,
    model: Vec<R>,
}

impl Fixture {
    /// The model's readings of `tag`, by (ts, revision).
    fn of(&self, tag: &str) -> Vec<R> {
        let mut v: Vec<R> = self
            .model
            .iter()
            .filter(|r| r.tag == tag)
            .cloned()
            .collect();
        v.sort_by_key(|r| (r.ts, r.rev));
        v
    }

    /// The model's readings passing `keep`, by tag, ts, revision (the engine's scan order).
    fn select(&self, keep: impl Fn(&R) -> bool) -> Vec<R> {
        let mut v: Vec<R> = self.model.iter().filter(|r| keep(r)).cloned().collect();
        v.sort_by(|a, b| (&a.tag, a.ts, a.rev).cmp(&(&b.tag, b.ts, b.rev)));
        v
    }
}

fn device(name: &str, labels: &[(&str, &str)]) -> Device {
    Device {
        name: name.into(),
        protocol: "modbus-tcp".into(),
        endpoint: "127.0.0.1:502".into(),
        unit_id: 7,
        poll_interval_ms: 1000,
        timeout_ms: 500,
        retries: 2,
        enabled: name != "plc3",
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        revision: 0,
    }
}

fn tag(name: &str, dev: &str, ty: DataType) -> Tag {
    Tag {
        scan_rate_ms: 250,
        units: if ty == DataType::F64 { "degC" } else { "" }.into(),
        description: format!("{name} sensor"),
        writable: ty == DataType::Bool,
        ..Tag::new(name, dev, "hr:0", ty)
    }
}

/// Several tags with one-second readings over ten minutes from T0, with a
/// one-minute gap (temperatures: 10:02:00-10:02:59, the counter:
/// 10:05:00-10:05:59), Bad readings (some with a value, some without),
/// Uncertain ones, a tag without readings, two readings with the same
/// timestamp and a reading that arrives late.
pub(crate) fn fixture() -> Fixture {
    let mut store = MemoryStore::new();
    let devices = [
        device("plc1", &[]),
        device("plc2", &[("area", "north"), ("line", "2")]),
        device("plc3", &[]),
    ];
    for (i, d) in devices.into_iter().enumerate() {
        store.put_device(Device {
            revision: 3 + i as u64,
            ..d
        });
    }
    let tags = [
        (A, "plc1", DataType::F64),
        (B, "plc1", DataType::I32),
        (C, "plc1", DataType::F64),
        (D, "plc2", DataType::F64),
        (E, "plc2", DataType::Bool),
        (F, "plc2", DataType::String),
        (G, "plc2", DataType::F64),
        (H, "plc1", DataType::F64),
    ];
    for (i, (name, dev, ty)) in tags.iter().enumerate() {
        store.put_tag(Tag {
            revision: 10 + i as u64,
            ..tag(name, dev, *ty)
        });
    }
    store.assign("plc1", 2, 7);
    store.assign("plc2", 1, 9);

    let mut model = Vec::new();
    let mut pending: Vec<Reading> = Vec::new();
    let mut rev = 0;
    let mut add = |model: &mut Vec<R>,
                   pending: &mut Vec<Reading>,
                   tag: &str,
                   ts: i64,
                   value: Option<Value>,
                   level: QualityLevel,
                   reason: &str,
                   id: String| {
        rev += 1;
        model.push(R {
            tag: tag.into(),
            ts,
            value: match &value {
                None => Cell::Null,
                Some(Value::Bool(b)) => Cell::Bool(*b),
                Some(Value::Int(i)) => Cell::Int(*i),
                Some(Value::Float(x)) => Cell::Float(*x),
                Some(Value::Text(s)) => Cell::Text(s.clone()),
            },
            quality: match level {
                QualityLevel::Good => "good",
                QualityLevel::Uncertain => "uncertain",
                QualityLevel::Bad => "bad",
            },
            reason: (!reason.is_empty()).then(|| reason.to_string()),
            rev,
            id: id.clone(),
        });
        pending.push(Reading {
            id,
            tag: tag.into(),
            ts_us: ts,
            server_ts_us: ts + 1234,
            value,
            quality: Quality {
                level,
                reason: reason.into(),
            },
            revision: 0,
        });
    };
    for s in 0..600i64 {
        let ts = T0 + s * SEC;
        for (k, name) in TEMPS.iter().enumerate() {
            if (120..180).contains(&s) {
                continue;
            }
            let k = k as i64;
            let v = 20.0 + ((s * (k + 3)) % 17) as f64 * 0.5 + k as f64 * 10.0;
            let (value, level, reason) = if s % 37 == 5 {
                // Bad, sometimes with a (wrong) value that must not count.
                let v = (s % 2 == 0).then_some(Value::Float(999.0));
                (v, QualityLevel::Bad, "timeout")
            } else if s % 53 == 7 {
                (Some(Value::Float(v)), QualityLevel::Uncertain, "stale")
            } else {
                (Some(Value::Float(v)), QualityLevel::Good, "")
            };
            add(
                &mut model,
                &mut pending,
                name,
                ts,
                value,
                level,
                reason,
                format!("{name}#{s}"),
            );
        }
        if !(300..360).contains(&s) {
            let (value, level, reason) = if s % 41 == 3 {
                (None, QualityLevel::Bad, "comm_failure")
            } else {
                (Some(Value::Int(s * 3 - 500)), QualityLevel::Good, "")
            };
            add(
                &mut model,
                &mut pending,
                B,
                ts,
                value,
                level,
                reason,
                format!("{B}#{s}"),
            );
        }
        if s % 10 == 0 {
            let v = Value::Bool((s / 10) % 2 == 0);
            add(
                &mut model,
                &mut pending,
                E,
                ts,
                Some(v),
                QualityLevel::Good,
                "",
                format!("{E}#{s}"),
            );
        }
        if s % 30 == 0 {
            let v = Value::Text(format!("s{}", (s / 30) % 3));
            add(
                &mut model,
                &mut pending,
                F,
                ts,
                Some(v),
                QualityLevel::Good,
                "",
                format!("{F}#{s}"),
            );
        }
        if s % 100 == 99 {
            insert_all(&mut store, &mut pending);
        }
    }
    // Same timestamp as an earlier reading: the later revision is "last".
    add(
        &mut model,
        &mut pending,
        A,
        T0 + 500 * SEC,
        Some(Value::Float(77.5)),
        QualityLevel::Good,
        "",
        format!("{A}#dup"),
    );
    // A late reading between two old ones.
    add(
        &mut model,
        &mut pending,
        D,
        T0 + 50 * SEC + 500_000,
        Some(Value::Float(55.5)),
        QualityLevel::Good,
        "",
        format!("{D}#late"),
    );
    let last_revision = insert_all(&mut store, &mut pending);
    assert_eq!(
        last_revision as i64, rev,
        "the model's revisions are the store's"
    );

    let cluster = ClusterInfo {
        members: vec![
            MemberInfo {
                id: 2,
                address: "127.0.0.1:7002".into(),
                voter: true,
                is_leader: false,
            },
            MemberInfo {
                id: 1,
                address: "127.0.0.1:7001".into(),
                voter: true,
                is_leader: true,
            },
            MemberInfo {
                id: 3,
                address: "127.0.0.1:7003".into(),
                voter: false,
                is_leader: false,
            },
        ],
    };
    Fixture {
        store,
        cluster,
        model,
    }
}

/// Stores `pending` in order; returns the last revision given.
fn insert_all(store: &mut MemoryStore, pending: &mut Vec<Reading>) -> u64 {
    let mut last = 0;
    for r in pending.drain(..) {
        last = store.insert(r);
    }
    last
}

fn run_with(
    f: &Fixture,
    sql: &str,
    limits: Limits,
) -> Result<(Vec<Vec<Cell>>, ExecStats), QueryError> {
    let q = Query::parse(sql)?;
    let ctx = ExecContext {
        catalog: &f.store,
        history: &f.store,
        cluster: &f.cluster,
        now_us: NOW,
        limits,
    };
    let mut rows = Vec::new();
    let stats = q.execute(&ctx, &mut |row| {
        assert_eq!(row.len(), q.columns().len(), "row width of {sql}");
        rows.push(row);
        true
    })?;
    assert_eq!(stats.rows, rows.len() as u64);
    Ok((rows, stats))
}

fn run(f: &Fixture, sql: &str) -> Vec<Vec<Cell>> {
    match run_with(f, sql, Limits::default()) {
        Ok((rows, _)) => rows,
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn err(f: &Fixture, sql: &str) -> QueryError {
    match run_with(f, sql, Limits::default()) {
        Ok((rows, _)) => panic!("{sql} should fail, returned {} rows", rows.len()),
        Err(e) => e,
    }
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

pub(crate) fn rfc(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// (tag, ts, revision) of result rows that start with those three columns.
fn keys(rows: &[Vec<Cell>]) -> Vec<(String, i64, i64)> {
    rows.iter()
        .map(|r| match (&r[0], &r[1], &r[2]) {
            (Cell::Text(t), Cell::Timestamp(ts), Cell::Int(rev)) => (t.clone(), *ts, *rev),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

fn model_keys(rs: &[R]) -> Vec<(String, i64, i64)> {
    rs.iter().map(|r| (r.tag.clone(), r.ts, r.rev)).collect()
}

fn as_f64(c: &Cell) -> f64 {
    match c {
        Cell::Int(i) => *i as f64,
        Cell::Float(x) => *x,
        other => panic!("not a number: {other:?}"),
    }
}

pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn projection_returns_every_column_of_one_tag_in_time_order() {
    let f = fixture();
    let q = Query::parse(&format!(
        "SELECT tag, ts, revision, value, quality, reason, id, server_ts FROM readings WHERE tag = '{A}'"
    ))
    .unwrap();
    let types: Vec<ColumnType> = q.columns().iter().map(|c| c.ty).collect();
    assert_eq!(
        types,
        [
            ColumnType::Text,
            ColumnType::Timestamp,
            ColumnType::Int,
            ColumnType::Any,
            ColumnType::Text,
            ColumnType::Text,
            ColumnType::Text,
            ColumnType::Timestamp
        ]
    );
    let rows = run(
        &f,
        &format!(
            "SELECT tag, ts, revision, value, quality, reason, id, server_ts FROM readings WHERE tag = '{A}'"
        ),
    );
    let want: Vec<Vec<Cell>> = f
        .of(A)
        .into_iter()
        .map(|r| {
            vec![
                text(&r.tag),
                Cell::Timestamp(r.ts),
                Cell::Int(r.rev),
                r.value,
                text(r.quality),
                r.reason.map_or(Cell::Null, Cell::Text),
                Cell::Text(r.id),
                Cell::Timestamp(r.ts + 1234),
            ]
        })
        .collect();
    assert_eq!(rows.len(), 600 - 60 + 1);
    assert_eq!(rows, want);
}

#[test]
fn star_aliases_and_arithmetic() {
    let f = fixture();
    let q = Query::parse(&format!("SELECT * FROM readings WHERE tag = '{F}'")).unwrap();
    let names: Vec<&str> = q.columns().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tag",
            "ts",
            "value",
            "quality",
            "reason",
            "revision",
            "id",
            "server_ts"
        ]
    );
    let rows = run(&f, &format!("SELECT * FROM readings r WHERE r.tag = '{F}'"));
    let want: Vec<Cell> = f.of(F).into_iter().map(|r| r.value).collect();
    assert_eq!(rows.iter().map(|r| r[2].clone()).collect::<Vec<_>>(), want);

    let q = Query::parse(&format!(
        "SELECT value * 2 + 1 AS twice, ts AS t, -value FROM readings WHERE tag = '{B}' AND ts < '{}'",
        rfc(T0 + 10 * SEC)
    ))
    .unwrap();
    assert_eq!(q.columns()[0].name, "twice");
    assert_eq!(q.columns()[1].name, "t");
    let rows = run(
        &f,
        &format!(
            "SELECT value * 2 + 1 AS twice, ts AS t, -value FROM readings WHERE tag = '{B}' AND ts < '{}'",
            rfc(T0 + 10 * SEC)
        ),
    );
    let want: Vec<Vec<Cell>> = f
        .of(B)
        .into_iter()
        .filter(|r| r.ts < T0 + 10 * SEC)
        .map(|r| match r.value {
            Cell::Int(v) => vec![Cell::Int(v * 2 + 1), Cell::Timestamp(r.ts), Cell::Int(-v)],
            _ => vec![Cell::Null, Cell::Timestamp(r.ts), Cell::Null],
        })
        .collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows, want);
}

type NameTest = Box<dyn Fn(&str) -> bool>;
type RowTest = Box<dyn Fn(&R) -> bool>;

#[test]
fn tag_predicates_select_exactly_the_matching_tags() {
    let f = fixture();
    let cases: Vec<(String, NameTest)> = vec![
        (format!("tag = '{C}'"), Box::new(|t| t == C)),
        (format!("tag != '{C}'"), Box::new(|t| t != C)),
        (
            format!("tag <> '{C}' AND tag LIKE 'line2/%'"),
            Box::new(|t| t != C && t.starts_with("line2/")),
        ),
        (
            format!("tag IN ('{A}', '{E}', 'no/such/tag')"),
            Box::new(|t| t == A || t == E),
        ),
        (
            format!("tag NOT IN ('{A}', '{E}')"),
            Box::new(|t| t != A && t != E),
        ),
        (
            "tag LIKE 'line1/%'".into(),
            Box::new(|t| t.starts_with("line1/")),
        ),
        (
            "tag LIKE 'line1%'".into(),
            Box::new(|t| t.starts_with("line1")),
        ),
        (
            "tag LIKE '%/temp'".into(),
            Box::new(|t| t.ends_with("/temp")),
        ),
        (
            "tag NOT LIKE '%temp'".into(),
            Box::new(|t| !t.ends_with("temp")),
        ),
        (
            "tag LIKE 'line_/press_/temp'".into(),
            Box::new(|t| t == A || t == C || t == D),
        ),
        (
            "glob(tag, 'line1/*/temp')".into(),
            Box::new(|t| t == A || t == C),
        ),
        ("glob(tag, 'line*/temp')".into(), Box::new(|t| t == G)),
        // `**` stands for whole segments here: line10/temp has none between.
        (
            "glob(tag, 'line*/**/temp')".into(),
            Box::new(|t| t == A || t == C || t == D),
        ),
        (
            "glob(tag, 'line?/*')".into(),
            Box::new(|t| t == E || t == F),
        ),
        (
            "NOT glob(tag, 'line1/**')".into(),
            Box::new(|t| !t.starts_with("line1/")),
        ),
        (
            format!("(tag = '{A}' OR glob(tag, 'line2/*')) AND NOT (tag = '{E}')"),
            Box::new(|t| t == A || t == F),
        ),
        (
            format!("tag LIKE 'line1/%' AND (tag LIKE '%count' OR tag = '{D}')"),
            Box::new(|t| t == B),
        ),
    ];
    for (cond, keep) in cases {
        let rows = run(
            &f,
            &format!("SELECT tag, ts, revision FROM readings WHERE {cond}"),
        );
        let want = f.select(|r| keep(&r.tag));
        assert!(!want.is_empty(), "{cond}: the test needs matching data");
        assert_eq!(keys(&rows), model_keys(&want), "{cond}");
    }
}

#[test]
fn tag_selection_never_reads_history_of_tags_that_cannot_match() {
    let f = fixture();
    let (rows, stats) = run_with(
        &f,
        &format!("SELECT ts FROM readings WHERE tag = '{E}' OR tag = '{F}'"),
        Limits::default(),
    )
    .unwrap();
    let n = f.of(E).len() + f.of(F).len();
    assert_eq!(rows.len(), n);
    assert_eq!(
        stats.scanned, n as u64,
        "only the two tags' history is read"
    );

    let (_, stats) = run_with(
        &f,
        "SELECT ts FROM readings WHERE glob(tag, 'line2/*') AND tag LIKE '%flag'",
        Limits::default(),
    )
    .unwrap();
    assert_eq!(stats.scanned, f.of(E).len() as u64);

    // A time range narrows the key range of each scan.
    let (rows, stats) = run_with(
        &f,
        &format!(
            "SELECT ts FROM readings WHERE tag = '{B}' AND ts BETWEEN '{}' AND '{}'",
            rfc(T0 + 10 * SEC),
            rfc(T0 + 19 * SEC)
        ),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(stats.scanned, 10);
}

#[test]
fn time_ranges_with_now_intervals_and_rfc3339() {
    let f = fixture();
    let cases: Vec<(String, i64, i64)> = vec![
        // (condition, inclusive from, inclusive to)
        (
            "ts >= now() - INTERVAL '1 minute'".into(),
            NOW - 60 * SEC,
            i64::MAX,
        ),
        (
            "ts > now() - INTERVAL '90 seconds'".into(),
            NOW - 90 * SEC + 1,
            i64::MAX,
        ),
        (
            "ts >= now() - INTERVAL '2 minutes' AND ts < now() - INTERVAL '1 minute'".into(),
            NOW - 120 * SEC,
            NOW - 60 * SEC - 1,
        ),
        (
            "ts >= now() - INTERVAL '1 hour'".into(),
            NOW - 3600 * SEC,
            i64::MAX,
        ),
        (
            "now() - INTERVAL '10 minutes' > ts".into(),
            i64::MIN,
            NOW - 600 * SEC - 1,
        ),
        (
            "ts >= now() - INTERVAL '1 day'".into(),
            NOW - 86_400 * SEC,
            i64::MAX,
        ),
        (
            "ts >= now() - INTERVAL '5' MINUTE".into(),
            NOW - 300 * SEC,
            i64::MAX,
        ),
        (
            "ts >= now() - INTERVAL '1 minute 30 seconds'".into(),
            NOW - 90 * SEC,
            i64::MAX,
        ),
        (
            format!("ts >= '{}'", rfc(T0 + 590 * SEC)),
            T0 + 590 * SEC,
            i64::MAX,
        ),
        (
            format!("ts <= '{}'", rfc(T0 + 3 * SEC)),
            i64::MIN,
            T0 + 3 * SEC,
        ),
        (
            format!("ts = '{}'", rfc(T0 + 42 * SEC)),
            T0 + 42 * SEC,
            T0 + 42 * SEC,
        ),
        // The same instant written with an offset.
        (
            "ts BETWEEN '2026-11-28T11:00:10+01:00' AND '2026-11-28T11:00:20+01:00'".into(),
            T0 + 10 * SEC,
            T0 + 20 * SEC,
        ),
        (
            format!(
                "ts BETWEEN TIMESTAMP '{}' AND '{}'",
                "2026-11-28 10:01:00Z",
                rfc(T0 + 61 * SEC)
            ),
            T0 + 60 * SEC,
            T0 + 61 * SEC,
        ),
        (
            format!(
                "ts NOT BETWEEN '{}' AND '{}'",
                rfc(T0 + 5 * SEC),
                rfc(T0 + 595 * SEC)
            ),
            i64::MIN,
            i64::MAX,
        ),
        (
            format!(
                "(ts < '{}' OR ts > '{}')",
                rfc(T0 + 3 * SEC),
                rfc(T0 + 597 * SEC)
            ),
            i64::MIN,
            i64::MAX,
        ),
    ];
    for (cond, from, to) in cases {
        let rows = run(
            &f,
            &format!("SELECT tag, ts, revision FROM readings WHERE tag LIKE 'line1/%' AND {cond}"),
        );
        let in_range = |ts: i64| -> bool {
            if cond.contains("NOT BETWEEN") {
                !(T0 + 5 * SEC..=T0 + 595 * SEC).contains(&ts)
            } else if cond.starts_with("(ts <") {
                !(T0 + 3 * SEC..=T0 + 597 * SEC).contains(&ts)
            } else {
                (from..=to).contains(&ts)
            }
        };
        let want = f.select(|r| r.tag.starts_with("line1/") && in_range(r.ts));
        assert!(!want.is_empty(), "{cond}: the test needs matching data");
        assert_eq!(keys(&rows), model_keys(&want), "{cond}");
    }
}

#[test]
fn value_and_quality_predicates() {
    let f = fixture();
    let cases: Vec<(String, RowTest)> = vec![
        (
            "value > 25".into(),
            Box::new(|r| {
                matches!(r.value, Cell::Float(x) if x > 25.0)
                    || matches!(r.value, Cell::Int(i) if i > 25)
            }),
        ),
        (
            "value <= -400".into(),
            Box::new(|r| matches!(r.value, Cell::Int(i) if i <= -400)),
        ),
        (
            "value = 21.5".into(),
            Box::new(|r| r.value == Cell::Float(21.5)),
        ),
        (
            "value = true".into(),
            Box::new(|r| r.value == Cell::Bool(true)),
        ),
        ("value = 's1'".into(), Box::new(|r| r.value == text("s1"))),
        ("value IS NULL".into(), Box::new(|r| r.value == Cell::Null)),
        ("quality = 'bad'".into(), Box::new(|r| r.quality == "bad")),
        (
            "quality != 'good'".into(),
            Box::new(|r| r.quality != "good"),
        ),
        (
            "quality = 'uncertain' AND value > 30".into(),
            Box::new(|r| r.quality == "uncertain" && matches!(r.value, Cell::Float(x) if x > 30.0)),
        ),
        (
            "reason = 'timeout'".into(),
            Box::new(|r| r.reason.as_deref() == Some("timeout")),
        ),
        (
            "reason IS NOT NULL AND quality = 'bad' AND value IS NOT NULL".into(),
            Box::new(|r| r.quality == "bad" && r.value != Cell::Null),
        ),
    ];
    for (cond, keep) in cases {
        let rows = run(
            &f,
            &format!("SELECT tag, ts, revision FROM readings WHERE {cond}"),
        );
        let want = f.select(&keep);
        assert!(!want.is_empty(), "{cond}: the test needs matching data");
        assert_eq!(keys(&rows), model_keys(&want), "{cond}");
    }
}

#[test]
fn order_by_desc_with_limit_on_one_tag_scans_backwards_and_stops() {
    let f = fixture();
    let (rows, stats) = run_with(
        &f,
        &format!("SELECT tag, ts, revision, value FROM readings WHERE tag = '{A}' ORDER BY ts DESC LIMIT 5"),
        Limits::default(),
    )
    .unwrap();
    let mut want = f.of(A);
    want.reverse();
    want.truncate(5);
    assert_eq!(keys(&rows), model_keys(&want));
    assert_eq!(stats.scanned, 5, "stops after the fifth reading");

    // Same-timestamp readings come in revision order, reversed when descending.
    let rows = run(
        &f,
        &format!(
            "SELECT tag, ts, revision, value FROM readings WHERE tag = '{A}' AND ts = '{}' ORDER BY ts DESC",
            rfc(T0 + 500 * SEC)
        ),
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][3], Cell::Float(77.5));
    assert!(matches!((&rows[0][2], &rows[1][2]), (Cell::Int(a), Cell::Int(b)) if a > b));

    // Ascending with OFFSET.
    let (rows, stats) = run_with(
        &f,
        &format!("SELECT tag, ts, revision FROM readings WHERE tag = '{D}' ORDER BY ts LIMIT 3 OFFSET 50"),
        Limits::default(),
    )
    .unwrap();
    let want: Vec<R> = f.of(D).into_iter().skip(50).take(3).collect();
    assert_eq!(keys(&rows), model_keys(&want));
    assert!(
        want.iter().any(|r| r.id.ends_with("#late")),
        "the late reading sorts by its ts"
    );
    assert_eq!(stats.scanned, 53);

    // Hidden sort key: ordered by a column that is not selected.
    let rows = run(
        &f,
        &format!("SELECT value FROM readings WHERE tag = '{B}' ORDER BY ts DESC LIMIT 3"),
    );
    let want: Vec<Vec<Cell>> = f
        .of(B)
        .into_iter()
        .rev()
        .take(3)
        .map(|r| vec![r.value])
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn order_by_tag_then_ts_streams_across_tags_in_both_directions() {
    let f = fixture();
    let (rows, stats) = run_with(
        &f,
        "SELECT tag, ts, revision FROM readings WHERE tag LIKE 'line2/%' ORDER BY tag DESC, ts DESC LIMIT 30",
        Limits::default(),
    )
    .unwrap();
    let mut want = f.select(|r| r.tag.starts_with("line2/"));
    want.sort_by(|a, b| (&b.tag, b.ts, b.rev).cmp(&(&a.tag, a.ts, a.rev)));
    want.truncate(30);
    assert_eq!(keys(&rows), model_keys(&want));
    assert_eq!(stats.scanned, 30, "streamed: nothing read past the limit");
}

/// The model's readings passing `keep`, in Bifrost's order for
/// `ORDER BY ts [DESC]`: by ts, ties by tag ascending, then by revision in
/// the direction of ts.
fn by_time(f: &Fixture, desc: bool, keep: impl Fn(&R) -> bool) -> Vec<R> {
    let mut v = f.select(keep);
    v.sort_by(|a, b| {
        let time = (a.ts, a.rev).cmp(&(b.ts, b.rev));
        let time = if desc { time.reverse() } else { time };
        match a.ts.cmp(&b.ts) {
            std::cmp::Ordering::Equal => a.tag.cmp(&b.tag).then(time),
            _ => time,
        }
    });
    v
}

#[test]
fn order_by_ts_across_tags_merges_their_histories() {
    let f = fixture();
    let line1 = |r: &R| r.tag.starts_with("line1/");
    // The newest rows of every tag, not of the first tag in name order.
    let (rows, stats) = run_with(
        &f,
        "SELECT tag, ts, revision FROM readings WHERE tag LIKE 'line1/%' ORDER BY ts DESC LIMIT 20",
        Limits::default(),
    )
    .unwrap();
    let want: Vec<R> = by_time(&f, true, line1).into_iter().take(20).collect();
    assert_eq!(keys(&rows), model_keys(&want));
    let tags: BTreeSet<&str> = want.iter().map(|r| r.tag.as_str()).collect();
    assert!(tags.len() >= 3, "the newest rows come from several tags");
    assert!(
        stats.scanned < 20 + 4 * 64,
        "a merge reads little past the limit: {}",
        stats.scanned
    );

    // Ascending, with OFFSET, and ties at one timestamp broken by tag.
    let rows = run(
        &f,
        "SELECT tag, ts, revision FROM readings WHERE tag LIKE 'line1/%' ORDER BY ts LIMIT 7 OFFSET 100",
    );
    let want: Vec<R> = by_time(&f, false, line1)
        .into_iter()
        .skip(100)
        .take(7)
        .collect();
    assert_eq!(keys(&rows), model_keys(&want));

    // ts first, then tag descending: ties at one timestamp by tag descending.
    let rows = run(
        &f,
        "SELECT tag, ts, revision FROM readings WHERE glob(tag, '**/temp') ORDER BY ts DESC, tag DESC LIMIT 9",
    );
    let mut want = f.select(|r| r.tag.ends_with("/temp"));
    want.sort_by(|a, b| (b.ts, &b.tag, b.rev).cmp(&(a.ts, &a.tag, a.rev)));
    want.truncate(9);
    assert_eq!(keys(&rows), model_keys(&want));

    // No LIMIT: every row, merged (the late reading of D in its place).
    let rows = run(
        &f,
        "SELECT tag, ts, revision FROM readings WHERE tag LIKE 'line2/%' ORDER BY ts",
    );
    let want = by_time(&f, false, |r| r.tag.starts_with("line2/"));
    assert_eq!(keys(&rows), model_keys(&want));
}

#[test]
fn order_by_other_keys_sorts_in_memory_with_nulls_and_ties() {
    let f = fixture();
    let rows = run(
        &f,
        "SELECT tag, ts, revision, value FROM readings WHERE glob(tag, 'line1/*/temp') ORDER BY value DESC, tag ASC, ts DESC LIMIT 40",
    );
    let mut want = f.select(|r| r.tag == A || r.tag == C);
    let num = |c: &Cell| match c {
        Cell::Float(x) => Some(*x),
        _ => None,
    };
    want.sort_by(|a, b| {
        // DESC puts nulls first; then by value descending, tag, ts descending.
        match (num(&a.value), num(&b.value)) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.partial_cmp(&x).unwrap(),
        }
        .then_with(|| a.tag.cmp(&b.tag))
        .then_with(|| b.ts.cmp(&a.ts))
    });
    want.truncate(40);
    let got: Vec<(String, i64)> = keys(&rows).into_iter().map(|(t, ts, _)| (t, ts)).collect();
    let exp: Vec<(String, i64)> = want.iter().map(|r| (r.tag.clone(), r.ts)).collect();
    assert_eq!(got, exp);
    assert_eq!(rows[0][3], Cell::Null, "nulls first when descending");

    // By output position and alias, ascending, across all tags.
    let rows = run(
        &f,
        "SELECT tag, ts AS t, revision FROM readings WHERE tag LIKE 'line%' ORDER BY t, 1 LIMIT 12",
    );
    let mut want = f.select(|_| true);
    want.sort_by(|a, b| (a.ts, &a.tag, a.rev).cmp(&(b.ts, &b.tag, b.rev)));
    want.truncate(12);
    let got: Vec<(String, i64)> = keys(&rows).into_iter().map(|(t, ts, _)| (t, ts)).collect();
    let exp: Vec<(String, i64)> = want.iter().map(|r| (r.tag.clone(), r.ts)).collect();
    assert_eq!(got, exp);
}

/// Expected aggregates of one tag's readings, computed by hand.
struct Agg {
    count: i64,
    count_value: i64,
    sum: f64,
    min: f64,
    max: f64,
    first: Cell,
    last: Cell,
}

fn aggregate(rs: &[R]) -> Agg {
    let mut a = Agg {
        count: 0,
        count_value: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        first: Cell::Null,
        last: Cell::Null,
    };
    let mut first_at = (i64::MAX, i64::MAX);
    let mut last_at = (i64::MIN, i64::MIN);
    for r in rs {
        a.count += 1;
        if r.value != Cell::Null {
            a.count_value += 1;
            let x = as_f64(&r.value);
            a.sum += x;
            a.min = a.min.min(x);
            a.max = a.max.max(x);
        }
        if (r.ts, r.rev) < first_at {
            first_at = (r.ts, r.rev);
            a.first = r.value.clone();
        }
        if (r.ts, r.rev) > last_at {
            last_at = (r.ts, r.rev);
            a.last = r.value.clone();
        }
    }
    a
}

fn check_agg_row(row: &[Cell], a: &Agg, what: &str) {
    assert_eq!(row[1], Cell::Int(a.count), "{what}: count(*)");
    assert_eq!(row[2], Cell::Int(a.count_value), "{what}: count(value)");
    assert!(
        close(as_f64(&row[3]), a.sum / a.count_value as f64),
        "{what}: avg {:?}",
        row[3]
    );
    assert!(close(as_f64(&row[4]), a.min), "{what}: min");
    assert!(close(as_f64(&row[5]), a.max), "{what}: max");
    assert!(close(as_f64(&row[6]), a.sum), "{what}: sum");
    assert_eq!(row[7], a.first, "{what}: first");
    assert_eq!(row[8], a.last, "{what}: last");
}

pub(crate) const AGGS: &str =
    "count(*), count(value), avg(value), min(value), max(value), sum(value), first(value), last(value)";

#[test]
fn every_aggregate_per_tag_skips_bad_readings() {
    let f = fixture();
    let q = Query::parse(&format!("SELECT tag, {AGGS} FROM readings GROUP BY tag")).unwrap();
    let types: Vec<ColumnType> = q.columns().iter().map(|c| c.ty).collect();
    assert_eq!(
        types,
        [
            ColumnType::Text,
            ColumnType::Int,
            ColumnType::Int,
            ColumnType::Float,
            ColumnType::Any,
            ColumnType::Any,
            ColumnType::Any,
            ColumnType::Any,
            ColumnType::Any
        ]
    );
    assert_eq!(q.columns()[3].name, "avg(value)");
    let rows = run(
        &f,
        &format!("SELECT tag, {AGGS} FROM readings WHERE tag LIKE 'line1/press%' GROUP BY tag"),
    );
    let tags: Vec<Cell> = rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(tags, [text(B), text(A), text(C)], "groups sorted by tag");
    for row in &rows {
        let Cell::Text(t) = &row[0] else { panic!() };
        let usable: Vec<R> = f.of(t).into_iter().filter(R::usable).collect();
        let all = f.of(t);
        assert!(usable.len() < all.len(), "{t}: the data has bad readings");
        check_agg_row(row, &aggregate(&usable), t);
    }
    // The integer tag's sum stays an integer.
    let b_sum: i64 = f
        .of(B)
        .iter()
        .filter(|r| r.usable())
        .map(|r| match r.value {
            Cell::Int(i) => i,
            _ => unreachable!(),
        })
        .sum();
    assert_eq!(rows[0][6], Cell::Int(b_sum));
    // Without GROUP BY: one row over everything selected.
    let rows = run(
        &f,
        &format!("SELECT 'all', {AGGS} FROM readings WHERE glob(tag, 'line1/*/temp')"),
    );
    assert_eq!(rows.len(), 1);
    let usable = f.select(|r| (r.tag == A || r.tag == C) && r.usable());
    check_agg_row(&rows[0], &aggregate(&usable), "A and C");
}

#[test]
fn aggregates_take_exactly_the_rows_a_quality_predicate_selects() {
    let f = fixture();
    let rows = run(
        &f,
        &format!(
            "SELECT tag, {AGGS} FROM readings WHERE tag = '{A}' AND quality IN ('good', 'uncertain', 'bad') GROUP BY tag"
        ),
    );
    let all = f.of(A);
    assert_eq!(rows.len(), 1);
    check_agg_row(&rows[0], &aggregate(&all), "A with bad readings");
    assert_eq!(
        rows[0][5],
        Cell::Float(999.0),
        "the bad value is included when asked"
    );

    let rows = run(
        &f,
        "SELECT count(*), count(value) FROM readings WHERE quality = 'bad'",
    );
    let bad = f.select(|r| r.quality == "bad");
    let with_value = bad.iter().filter(|r| r.value != Cell::Null).count();
    assert_eq!(
        rows,
        [vec![
            Cell::Int(bad.len() as i64),
            Cell::Int(with_value as i64)
        ]]
    );

    // Without a quality predicate, count(*) is of usable readings only.
    let rows = run(
        &f,
        &format!("SELECT count(*) FROM readings WHERE tag = '{B}'"),
    );
    let usable = f.of(B).iter().filter(|r| r.usable()).count();
    assert_eq!(rows, [vec![Cell::Int(usable as i64)]]);
    assert!(usable < f.of(B).len());
}

#[test]
fn time_buckets_skip_empty_buckets_and_bad_readings() {
    let f = fixture();
    for (interval, width) in [
        ("1 minute", 60 * SEC),
        ("90 seconds", 90 * SEC),
        ("7 seconds", 7 * SEC),
    ] {
        let sql = format!(
            "SELECT tag, time_bucket(INTERVAL '{interval}', ts) AS bucket, count(*), avg(value), max(value) \
             FROM readings WHERE tag IN ('{A}', '{B}') AND ts >= '{}' \
             GROUP BY tag, bucket ORDER BY tag DESC, bucket",
            rfc(T0 + 30 * SEC)
        );
        let rows = run(&f, &sql);
        // (tag, bucket start) -> (count, sum, max)
        let mut want: BTreeMap<(String, i64), (i64, f64, f64)> = BTreeMap::new();
        for r in f.select(|r| (r.tag == A || r.tag == B) && r.ts >= T0 + 30 * SEC && r.usable()) {
            let start = r.ts - r.ts.rem_euclid(width);
            let e = want
                .entry((r.tag.clone(), start))
                .or_insert((0, 0.0, f64::NEG_INFINITY));
            e.0 += 1;
            e.1 += as_f64(&r.value);
            e.2 = e.2.max(as_f64(&r.value));
        }
        let mut want: Vec<_> = want.into_iter().collect();
        want.sort_by(|a, b| b.0 .0.cmp(&a.0 .0).then(a.0 .1.cmp(&b.0 .1)));
        assert_eq!(rows.len(), want.len(), "{interval}");
        for (row, ((t, start), (n, sum, max))) in rows.iter().zip(&want) {
            assert_eq!(row[0], text(t), "{interval}");
            assert_eq!(row[1], Cell::Timestamp(*start), "{interval}");
            assert_eq!(row[2], Cell::Int(*n), "{interval} {t} {}", rfc(*start));
            assert!(close(as_f64(&row[3]), sum / *n as f64));
            assert!(close(as_f64(&row[4]), *max));
        }
        if width == 60 * SEC {
            // The gaps: no bucket at 10:02 for A, none at 10:05 for B.
            let starts = |t: &str| -> BTreeSet<i64> {
                rows.iter()
                    .filter(|r| r[0] == text(t))
                    .map(|r| match r[1] {
                        Cell::Timestamp(s) => s,
                        _ => panic!(),
                    })
                    .collect()
            };
            assert!(!starts(A).contains(&(T0 + 120 * SEC)));
            assert!(starts(A).contains(&(T0 + 180 * SEC)));
            assert!(!starts(B).contains(&(T0 + 300 * SEC)));
            assert_eq!(
                starts(B).len(),
                9,
                "10:00 (from :30) to 10:09 without 10:05"
            );
        }
    }
    // Buckets with the bad readings included when asked for.
    let rows = run(
        &f,
        &format!(
            "SELECT time_bucket(INTERVAL '1 minute', ts), count(*) FROM readings \
             WHERE tag = '{A}' AND quality != 'good' GROUP BY 1"
        ),
    );
    let mut want: BTreeMap<i64, i64> = BTreeMap::new();
    for r in f.of(A).iter().filter(|r| r.quality != "good") {
        *want.entry(r.ts - r.ts.rem_euclid(60 * SEC)).or_default() += 1;
    }
    let got: BTreeMap<i64, i64> = rows
        .iter()
        .map(|r| match (&r[0], &r[1]) {
            (Cell::Timestamp(s), Cell::Int(n)) => (*s, *n),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, want);
}

/// The model's answer to "last usable value of `tag` at or before `t`".
fn value_at(f: &Fixture, tag: &str, t: i64) -> Option<Cell> {
    let mut best: Option<&R> = None;
    for r in f
        .model
        .iter()
        .filter(|r| r.tag == tag && r.ts <= t && r.usable())
    {
        if best.is_none_or(|b| (r.ts, r.rev) > (b.ts, b.rev)) {
            best = Some(r);
        }
    }
    best.map(|r| r.value.clone())
}

#[test]
fn value_at_time_carries_forward_with_one_seek_per_tag() {
    let f = fixture();
    // Inside the temperatures' gap (10:02:30), right on a bad reading of the
    // counter (s = 126: 126 % 41 == 3), and after the duplicated timestamp.
    for t in [T0 + 150 * SEC, T0 + 126 * SEC, T0 + 500 * SEC, NOW] {
        let (rows, stats) = run_with(
            &f,
            &format!(
                "SELECT tag, last(value) AS v FROM readings WHERE tag LIKE 'line1/%' AND ts <= '{}' GROUP BY tag",
                rfc(t)
            ),
            Limits::default(),
        )
        .unwrap();
        let mut want = Vec::new();
        for name in [B, H, A, C] {
            if let Some(v) = value_at(&f, name, t) {
                want.push(vec![text(name), v]);
            }
        }
        want.sort_by(|a, b| match (&a[0], &b[0]) {
            (Cell::Text(x), Cell::Text(y)) => x.cmp(y),
            _ => unreachable!(),
        });
        assert_eq!(rows, want, "at {}", rfc(t));
        assert!(
            stats.scanned <= 6,
            "one seek per tag, a few bad readings skipped: scanned {}",
            stats.scanned
        );
    }
    // In the gap the value is the one before the gap.
    assert_eq!(
        value_at(&f, A, T0 + 150 * SEC),
        value_at(&f, A, T0 + 119 * SEC)
    );
    // Before the first reading: no row per tag; one null row without GROUP BY.
    let rows = run(
        &f,
        &format!(
            "SELECT tag, last(value) FROM readings WHERE tag LIKE 'line1/%' AND ts < '{}' GROUP BY tag",
            rfc(T0)
        ),
    );
    assert!(rows.is_empty());
    let rows = run(
        &f,
        &format!(
            "SELECT last(value) FROM readings WHERE tag = '{A}' AND ts < '{}'",
            rfc(T0)
        ),
    );
    assert_eq!(rows, [vec![Cell::Null]]);

    // first() seeks forward the same way.
    let (rows, stats) = run_with(
        &f,
        &format!(
            "SELECT tag, first(value) FROM readings WHERE tag IN ('{A}', '{B}') AND ts >= '{}' GROUP BY tag",
            rfc(T0 + 120 * SEC)
        ),
        Limits::default(),
    )
    .unwrap();
    let first_from = |tag: &str, t: i64| -> Cell {
        f.of(tag)
            .into_iter()
            .find(|r| r.ts >= t && r.usable())
            .unwrap()
            .value
    };
    assert_eq!(
        rows,
        [
            vec![text(B), first_from(B, T0 + 120 * SEC)],
            vec![text(A), first_from(A, T0 + 120 * SEC)]
        ]
    );
    assert!(stats.scanned <= 4, "scanned {}", stats.scanned);
}

#[test]
fn tags_table_has_config_and_current_values() {
    let f = fixture();
    let rows = run(
        &f,
        "SELECT name, device, address, type, units, description, writable, scan_rate_ms, config_revision, value, quality, reason, ts, revision FROM tags WHERE name LIKE 'line%' ORDER BY name DESC",
    );
    let mut names = vec![A, B, C, D, E, F, G, H];
    names.sort();
    names.reverse();
    assert_eq!(rows.len(), names.len());
    let revs = [
        (A, 10),
        (B, 11),
        (C, 12),
        (D, 13),
        (E, 14),
        (F, 15),
        (G, 16),
        (H, 17),
    ];
    for (row, name) in rows.iter().zip(&names) {
        assert_eq!(row[0], text(name));
        let cur = f.of(name).into_iter().max_by_key(|r| (r.ts, r.rev));
        let rev = revs.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(row[8], Cell::Int(rev), "{name} config revision");
        assert_eq!(row[6], Cell::Bool(*name == E));
        assert_eq!(row[7], Cell::Int(250));
        assert_eq!(row[5], text(&format!("{name} sensor")));
        match cur {
            None => assert_eq!(
                &row[9..],
                &[Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null]
            ),
            Some(r) => {
                assert_eq!(row[9], r.value, "{name}");
                assert_eq!(row[10], text(r.quality));
                assert_eq!(row[11], r.reason.map_or(Cell::Null, Cell::Text));
                assert_eq!(row[12], Cell::Timestamp(r.ts));
                assert_eq!(row[13], Cell::Int(r.rev));
            }
        }
    }
    assert_eq!(
        rows.iter().find(|r| r[0] == text(B)).unwrap()[3],
        text("i32")
    );

    // Predicates on current values, and aggregates over tags.
    let rows = run(&f, "SELECT name FROM tags WHERE value IS NULL");
    assert_eq!(rows, [vec![text(H)]]);
    let rows = run(
        &f,
        "SELECT device, count(*), count(value) FROM tags GROUP BY device",
    );
    assert_eq!(
        rows,
        [
            vec![text("plc1"), Cell::Int(4), Cell::Int(3)],
            vec![text("plc2"), Cell::Int(4), Cell::Int(4)]
        ]
    );
    let rows = run(
        &f,
        "SELECT name FROM tags WHERE glob(name, 'line1/*/temp') AND units = 'degC'",
    );
    assert_eq!(rows, [vec![text(A)], vec![text(C)]]);

    // first()/last() go by the current reading's (ts, revision) even when
    // no current column is selected; H has no reading and is skipped.
    let newest = |keep: &dyn Fn(&str) -> bool, pick_last: bool| {
        let current = f.model.iter().filter(|r| keep(&r.tag)).fold(
            BTreeMap::<&str, &R>::new(),
            |mut m, r| {
                let e = m.entry(r.tag.as_str()).or_insert(r);
                if (r.ts, r.rev) > (e.ts, e.rev) {
                    *e = r;
                }
                m
            },
        );
        let by_time = current.values().map(|r| ((r.ts, r.rev), r.tag.clone()));
        let chosen = if pick_last {
            by_time.max()
        } else {
            by_time.min()
        };
        text(&chosen.unwrap().1)
    };
    let line1 = |t: &str| t.starts_with("line1/");
    let rows = run(
        &f,
        "SELECT first(name), last(name) FROM tags WHERE name LIKE 'line1/%'",
    );
    assert_eq!(rows, [vec![newest(&line1, false), newest(&line1, true)]]);
    assert_ne!(rows[0][0], Cell::Null);
}

#[test]
fn the_audit_table_filters_by_time_and_action() {
    let mut f = fixture();
    let record = |age_h: i64, action: &str, outcome: &str| crate::model::AuditRecord {
        ts_us: NOW - age_h * 3_600_000_000,
        user: "alice".into(),
        source: "10.0.0.9:50123".into(),
        action: action.into(),
        target: "line1/valve".into(),
        detail: "1".into(),
        outcome: outcome.into(),
        index: 40 - age_h as u64,
    };
    f.store.add_audit(record(30, "write", "ok"));
    f.store
        .add_audit(record(2, "write", "rejected: out of range"));
    f.store.add_audit(record(1, "put_tag", "ok"));
    let rows = run(
        &f,
        "SELECT username, action, outcome, revision FROM audit WHERE ts > now() - INTERVAL '1 day' AND action = 'write'",
    );
    assert_eq!(
        rows,
        [vec![
            text("alice"),
            text("write"),
            text("rejected: out of range"),
            Cell::Int(38)
        ]]
    );
    let all = run(&f, "SELECT count(*) FROM audit");
    assert_eq!(all, [vec![Cell::Int(3)]]);
}

#[test]
fn devices_and_cluster_tables() {
    let f = fixture();
    let rows = run(
        &f,
        "SELECT name, protocol, endpoint, unit_id, poll_interval_ms, timeout_ms, retries, enabled, labels, config_revision, owner, owner_epoch FROM devices",
    );
    assert_eq!(
        rows,
        [
            vec![
                text("plc1"),
                text("modbus-tcp"),
                text("127.0.0.1:502"),
                Cell::Int(7),
                Cell::Int(1000),
                Cell::Int(500),
                Cell::Int(2),
                Cell::Bool(true),
                text("{}"),
                Cell::Int(3),
                Cell::Int(2),
                Cell::Int(7)
            ],
            vec![
                text("plc2"),
                text("modbus-tcp"),
                text("127.0.0.1:502"),
                Cell::Int(7),
                Cell::Int(1000),
                Cell::Int(500),
                Cell::Int(2),
                Cell::Bool(true),
                text(r#"{"area":"north","line":"2"}"#),
                Cell::Int(4),
                Cell::Int(1),
                Cell::Int(9)
            ],
            vec![
                text("plc3"),
                text("modbus-tcp"),
                text("127.0.0.1:502"),
                Cell::Int(7),
                Cell::Int(1000),
                Cell::Int(500),
                Cell::Int(2),
                Cell::Bool(false),
                text("{}"),
                Cell::Int(5),
                Cell::Null,
                Cell::Null
            ],
        ]
    );
    let rows = run(
        &f,
        "SELECT name FROM devices WHERE owner IS NULL OR NOT enabled",
    );
    assert_eq!(rows, [vec![text("plc3")]]);

    let rows = run(&f, "SELECT * FROM cluster ORDER BY node_id DESC");
    assert_eq!(
        rows,
        [
            vec![
                Cell::Int(3),
                text("127.0.0.1:7003"),
                text("learner"),
                Cell::Bool(false),
                Cell::Bool(false),
                Cell::Int(0)
            ],
            vec![
                Cell::Int(2),
                text("127.0.0.1:7002"),
                text("follower"),
                Cell::Bool(true),
                Cell::Bool(false),
                Cell::Int(1)
            ],
            vec![
                Cell::Int(1),
                text("127.0.0.1:7001"),
                text("leader"),
                Cell::Bool(true),
                Cell::Bool(true),
                Cell::Int(1)
            ],
        ]
    );
    let rows = run(&f, "SELECT node_id FROM cluster WHERE is_leader");
    assert_eq!(rows, [vec![Cell::Int(1)]]);
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let f = fixture();
    let e = err(&f, "SELECT tag\nFROM readings\nWHERE ts >= = 3");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!((e.line, e.column), (Some(3), Some(13)));
    assert!(e.message.contains("found: ="), "{e}");
    assert!(e.to_string().ends_with("at line 3, column 13"), "{e}");
    let e = err(&f, "SELECT 'unterminated FROM tags");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!((e.line, e.column), (Some(1), Some(8)));
}

#[test]
fn unknown_names_are_reported_with_their_position() {
    let f = fixture();
    let e = err(&f, "SELECT vlaue FROM readings");
    assert_eq!(e.kind, ErrorKind::UnknownColumn);
    assert_eq!(
        e.to_string(),
        "unknown column 'vlaue' in table 'readings' at line 1, column 8"
    );
    let e = err(&f, "SELECT tag\n  FROM readings\n  WHERE qualty = 'bad'");
    assert_eq!(e.kind, ErrorKind::UnknownColumn);
    assert_eq!((e.line, e.column), (Some(3), Some(9)));
    let e = err(&f, "SELECT * FROM reading");
    assert_eq!(e.kind, ErrorKind::UnknownTable);
    assert_eq!((e.line, e.column), (Some(1), Some(15)));
    assert!(e.message.contains("tags, readings, devices, cluster"));
    let e = err(&f, "SELECT name FROM tags ORDER BY nmae");
    assert_eq!(e.kind, ErrorKind::UnknownColumn);
    assert_eq!(e.column, Some(32));
    let e = err(&f, "SELECT x.tag FROM readings r");
    assert_eq!(e.kind, ErrorKind::UnknownTable);
}

#[test]
fn wrong_types_are_type_errors_with_position() {
    let f = fixture();
    let cases = [
        ("SELECT tag FROM readings WHERE ts > 5", 37, "timestamp"),
        ("SELECT avg(quality) FROM readings", 12, "needs numbers"),
        (
            "SELECT tag FROM readings WHERE value LIKE 3",
            43,
            "text pattern",
        ),
        (
            "SELECT tag FROM readings WHERE ts >= '2026-13-01T00:00:00Z'",
            38,
            "RFC 3339",
        ),
        (
            "SELECT tag FROM readings WHERE ts >= now() - INTERVAL '3 fortnights'",
            55,
            "unknown unit",
        ),
        (
            "SELECT tag FROM readings WHERE quality = 'Bad'",
            42,
            "'good', 'uncertain' or 'bad'",
        ),
        (
            "SELECT tag FROM readings WHERE tag = 1",
            38,
            "cannot compare",
        ),
        (
            "SELECT tag FROM readings WHERE glob(tag, 'a/***')",
            42,
            "in a row",
        ),
        (
            "SELECT tag FROM readings WHERE revision",
            32,
            "WHERE needs a condition",
        ),
        ("SELECT sum(tag) FROM readings", 12, "needs numbers"),
        (
            "SELECT time_bucket(5, ts), count(*) FROM readings GROUP BY 1",
            20,
            "interval",
        ),
        ("SELECT tag FROM readings LIMIT 'ten'", 32, "whole number"),
    ];
    for (sql, column, words) in cases {
        let e = err(&f, sql);
        assert_eq!(e.kind, ErrorKind::Type, "{sql}: {e}");
        assert_eq!((e.line, e.column), (Some(1), Some(column)), "{sql}: {e}");
        assert!(e.message.contains(words), "{sql}: {e}");
    }
}

#[test]
fn unsupported_constructs_are_named() {
    let f = fixture();
    let cases = [
        (
            "SELECT r.tag FROM readings r JOIN tags t ON r.tag = t.name",
            "JOIN",
        ),
        ("SELECT tag FROM readings, tags", "joins"),
        (
            "SELECT tag FROM readings WHERE tag IN (SELECT name FROM tags)",
            "subqueries",
        ),
        ("SELECT * FROM (SELECT * FROM tags)", "subqueries in FROM"),
        (
            "SELECT tag, count(*) FROM readings GROUP BY tag HAVING count(*) > 1",
            "HAVING",
        ),
        (
            "SELECT tag, sum(value) OVER (PARTITION BY tag) FROM readings",
            "window functions",
        ),
        ("SELECT DISTINCT tag FROM readings", "DISTINCT"),
        ("SELECT count(DISTINCT tag) FROM readings", "DISTINCT"),
        ("INSERT INTO tags (name) VALUES ('x')", "INSERT"),
        ("DELETE FROM readings", "DELETE"),
        (
            "SELECT name FROM tags UNION SELECT name FROM devices",
            "UNION",
        ),
        ("WITH x AS (SELECT 1) SELECT * FROM tags", "WITH"),
        ("SELECT upper(name) FROM tags", "upper()"),
        ("SELECT name FROM tags WHERE name ILIKE 'x%'", "ILIKE"),
        ("SELECT tag, value FROM readings GROUP BY tag", "GROUP BY"),
        ("SELECT first(name) FROM devices", "devices"),
        ("SELECT 1", "without FROM"),
        (
            "SELECT name FROM tags; SELECT name FROM devices",
            "more than one statement",
        ),
    ];
    for (sql, words) in cases {
        let e = err(&f, sql);
        assert_eq!(e.kind, ErrorKind::Unsupported, "{sql}: {e}");
        assert!(e.message.contains(words), "{sql}: {e}");
        assert!(e.line.is_some(), "{sql}: no position in {e}");
    }
}

#[test]
fn scan_limit_row_limit_and_deadline() {
    let f = fixture();
    let total = f.model.len() as u64;
    let limits = |max_rows, max_scan| Limits {
        max_rows,
        max_scan,
        deadline: None,
    };
    // An unrestricted query reads everything and counts it.
    let (rows, stats) = run_with(&f, "SELECT tag FROM readings", limits(0, 0)).unwrap();
    assert_eq!((rows.len() as u64, stats.scanned), (total, total));
    let e = run_with(&f, "SELECT count(*) FROM readings", limits(0, 1000)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit);
    assert_eq!(
        e.message,
        "query would scan more than 1000 readings (limit); narrow the tag filter or time range"
    );
    // Exactly at the scan limit is fine.
    let n = f.of(E).len() as u64;
    assert!(run_with(
        &f,
        &format!("SELECT ts FROM readings WHERE tag = '{E}'"),
        limits(0, n)
    )
    .is_ok());
    assert!(run_with(
        &f,
        &format!("SELECT ts FROM readings WHERE tag = '{E}'"),
        limits(0, n - 1)
    )
    .is_err());

    // Rows over the limit are an error, not a truncation...
    let e = run_with(
        &f,
        &format!("SELECT ts FROM readings WHERE tag = '{E}'"),
        limits(10, 0),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit);
    assert!(e.message.contains("more than 10 rows"), "{e}");
    let e = run_with(
        &f,
        "SELECT tag, count(*) FROM readings GROUP BY tag",
        limits(3, 0),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit);
    // ...unless the query's own LIMIT is smaller; exactly max_rows is fine.
    let (rows, _) = run_with(
        &f,
        &format!("SELECT ts FROM readings WHERE tag = '{E}' LIMIT 10"),
        limits(10, 0),
    )
    .unwrap();
    assert_eq!(rows.len(), 10);
    let (rows, _) = run_with(
        &f,
        &format!("SELECT ts FROM readings WHERE tag = '{E}'"),
        limits(n, 0),
    )
    .unwrap();
    assert_eq!(rows.len() as u64, n);

    // A deadline in the past.
    let past = Instant::now() - Duration::from_millis(1);
    let e = run_with(
        &f,
        "SELECT tag FROM readings",
        Limits {
            max_rows: 0,
            max_scan: 0,
            deadline: Some(past),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.message.contains("deadline"), "{e}");
    // A generous one does not get in the way.
    let later = Instant::now() + Duration::from_secs(60);
    assert!(run_with(
        &f,
        "SELECT tag FROM readings",
        Limits {
            max_rows: 0,
            max_scan: 0,
            deadline: Some(later),
        },
    )
    .is_ok());
}

#[test]
fn a_sink_that_says_stop_ends_the_scan() {
    let f = fixture();
    let q = Query::parse("SELECT tag, ts FROM readings").unwrap();
    let ctx = ExecContext {
        catalog: &f.store,
        history: &f.store,
        cluster: &f.cluster,
        now_us: NOW,
        limits: Limits::default(),
    };
    let mut seen = 0;
    let stats = q
        .execute(&ctx, &mut |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
    assert_eq!((seen, stats.rows, stats.scanned), (3, 3, 3));
}
