//! Differential test: the same random readings are stored in the reference
//! [`MemoryStore`] and in an in-memory SQLite database, random queries of every
//! supported shape are written both in Bifrost's SQL and in SQLite's, and the
//! answers must agree (floats within a tolerance).
//!
//! Bifrost's documented semantics are written into the SQLite translation,
//! not treated as exceptions:
//! * aggregates on `readings` skip Bad readings and readings without a value
//!   unless the WHERE clause mentions `quality`;
//! * `time_bucket` buckets are aligned to the Unix epoch; `BETWEEN` is inclusive;
//! * `value` is dynamically typed: a comparison with a literal of another type
//!   is unknown (null), `sum`/`avg` see numbers only, and `min`/`max`/ORDER BY
//!   rank bools before numbers before text (SQLite stores a bool as 0/1, so
//!   the translation keeps each value's kind in a `vkind` column);
//! * nulls sort last ascending and first descending;
//! * ties on every ORDER BY key come by tag ascending, then by (ts, revision)
//!   ascending, or descending when `ts` is sorted descending; groups tie by
//!   their keys ascending; `tags` rows by name;
//! * `first`/`last` take the row with the smallest/greatest (ts, revision),
//!   null value or not (a correlated subquery in SQLite);
//! * `LIKE` is case-sensitive; glob patterns (`*` within a segment, `**`
//!   across) have hand-written SQLite equivalents.
//!
//! The seed is fixed (`DEFAULT_SEED`) unless `BIFROST_DIFF_SEED` is set; a
//! failure prints the seed and both queries.

use std::fmt::Write as _;

use crate::model::{DataType, Device, Quality, QualityLevel, Reading, Tag, Value};
use bifrost_model::Protocol;
use rusqlite::types::Value as SqlValue;

use super::*;

const DEFAULT_SEED: u64 = 0x00B1_F305_D1FF;
const QUERIES: usize = 700;

/// 2026-11-28T10:00:00Z.
const T0: i64 = 1_795_860_000_000_000;
const SEC: i64 = 1_000_000;
/// The queries' now(): an hour after T0 (readings span about 40 minutes).
const NOW: i64 = T0 + 3600 * SEC;

/// SplitMix64: small, seedable, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Tags of every value type that matters; `line0/empty` never has a reading.
const TAGS: &[(&str, DataType)] = &[
    ("line0/a/count", DataType::I32),
    ("line0/a/temp", DataType::F64),
    ("line0/b/temp", DataType::F64),
    ("line0/empty", DataType::F64),
    ("line0/flag", DataType::Bool),
    ("line0/label", DataType::String),
    ("line1/count", DataType::I64),
    ("line1/temp", DataType::F64),
];

const TEXTS: &[&str] = &["alpha", "s0", "s1", "s2"];

/// One stored reading, as the test knows it.
#[derive(Clone, Debug)]
struct Row {
    tag: &'static str,
    ts: i64,
    value: Option<Value>,
    quality: QualityLevel,
    reason: &'static str,
    id: String,
    revision: i64,
}

fn quality_name(q: QualityLevel) -> &'static str {
    match q {
        QualityLevel::Good => "good",
        QualityLevel::Uncertain => "uncertain",
        QualityLevel::Bad => "bad",
    }
}

fn random_value(rng: &mut Rng, ty: DataType) -> Value {
    match ty {
        DataType::Bool => Value::Bool(rng.chance(50)),
        DataType::String => Value::Text(rng.pick(TEXTS).to_string()),
        DataType::F64 if rng.chance(20) => Value::Float(rng.range(-20, 80) as f64),
        DataType::F64 => Value::Float(rng.range(-5000, 9000) as f64 / 100.0),
        _ => Value::Int(rng.range(-100, 400)),
    }
}

/// A tag's readings: irregular steps (some zero, so timestamps repeat),
/// all three qualities, Bad and Uncertain readings sometimes without a value.
fn random_history(rng: &mut Rng, name: &'static str, ty: DataType) -> Vec<Row> {
    let n = if name == "line0/empty" {
        0
    } else {
        rng.range(5, 70)
    };
    let mut ts = T0 + rng.range(0, 120) * SEC;
    let mut rows = Vec::new();
    for i in 0..n {
        ts += match rng.below(10) {
            0 => 0,
            1..=5 => rng.range(1, 2000) * 1000,
            _ => rng.range(2, 90) * SEC,
        };
        let (quality, reason, value) = match rng.below(20) {
            0..=13 => (QualityLevel::Good, "", Some(random_value(rng, ty))),
            14..=16 => {
                let v = rng.chance(80).then(|| random_value(rng, ty));
                (QualityLevel::Uncertain, "stale", v)
            }
            _ => {
                let v = rng.chance(50).then(|| random_value(rng, ty));
                let reason = if rng.chance(50) {
                    "timeout"
                } else {
                    "comm_failure"
                };
                (QualityLevel::Bad, reason, v)
            }
        };
        rows.push(Row {
            tag: name,
            ts,
            value,
            quality,
            reason,
            id: format!("{name}#{i}"),
            revision: 0,
        });
    }
    rows
}

fn tag_config(name: &str, ty: DataType) -> Tag {
    let device = if name.starts_with("line0/") {
        "plc0"
    } else {
        "plc1"
    };
    Tag::new(name, device, "hr:0", ty)
}

fn device(name: &str) -> Device {
    Device::new(name, Protocol::ModbusTcp, "127.0.0.1:502")
}

/// The same data in both engines.
struct World {
    store: MemoryStore,
    sqlite: rusqlite::Connection,
    rows: Vec<Row>,
}

/// Stores the readings mostly in time order but with some swapped, so late
/// readings arrive after newer ones; returns the rows with the revisions
/// the store gave them.
fn ingest(rng: &mut Rng, store: &mut MemoryStore, mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by_key(|r| r.ts);
    let swaps = rows.len() / 8;
    for _ in 0..swaps {
        let i = rng.below(rows.len() as u64) as usize;
        let j = rng.below(rows.len() as u64) as usize;
        rows.swap(i, j);
    }
    for r in &mut rows {
        let revision = store.insert(Reading {
            id: r.id.clone(),
            tag: r.tag.into(),
            ts_us: r.ts,
            server_ts_us: r.ts + 1000,
            value: r.value.clone(),
            quality: Quality {
                level: r.quality,
                reason: r.reason.into(),
            },
            revision: 0,
        });
        r.revision = revision as i64;
    }
    rows
}

fn world(rng: &mut Rng) -> World {
    let mut store = MemoryStore::new();
    store.put_device(device("plc0"));
    store.put_device(device("plc1"));
    for (name, ty) in TAGS {
        store.put_tag(tag_config(name, *ty));
    }
    let generated: Vec<Row> = TAGS
        .iter()
        .flat_map(|(name, ty)| random_history(rng, name, *ty))
        .collect();
    let rows = ingest(rng, &mut store, generated);
    let sqlite = load_sqlite(&rows);
    World {
        store,
        sqlite,
        rows,
    }
}

/// (value, vkind) as SQLite stores them.
fn sql_value(v: &Option<Value>) -> (SqlValue, SqlValue) {
    let kind = |k: &str| SqlValue::Text(k.into());
    match v {
        None => (SqlValue::Null, SqlValue::Null),
        Some(Value::Bool(b)) => (SqlValue::Integer(i64::from(*b)), kind("bool")),
        Some(Value::Int(i)) => (SqlValue::Integer(*i), kind("num")),
        Some(Value::Float(x)) => (SqlValue::Real(*x), kind("num")),
        Some(Value::Text(s)) => (SqlValue::Text(s.clone()), kind("text")),
    }
}

fn load_sqlite(rows: &[Row]) -> rusqlite::Connection {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(
        "PRAGMA case_sensitive_like = ON;
         CREATE TABLE readings (tag TEXT, ts INTEGER, value ANY, vkind TEXT, quality TEXT,
             reason TEXT, revision INTEGER, id TEXT, server_ts INTEGER);
         CREATE TABLE tags (name TEXT, device TEXT, type TEXT, value ANY, vkind TEXT,
             quality TEXT, reason TEXT, ts INTEGER, revision INTEGER);",
    )
    .unwrap();
    let reason = |r: &Row| (!r.reason.is_empty()).then(|| r.reason.to_string());
    for r in rows {
        let (value, vkind) = sql_value(&r.value);
        db.execute(
            "INSERT INTO readings VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                r.tag,
                r.ts,
                value,
                vkind,
                quality_name(r.quality),
                reason(r),
                r.revision,
                r.id,
                r.ts + 1000
            ],
        )
        .unwrap();
    }
    for (name, ty) in TAGS {
        // The current reading is the one with the greatest (ts, revision).
        let current = rows
            .iter()
            .filter(|r| r.tag == *name)
            .max_by_key(|r| (r.ts, r.revision));
        let (value, vkind) = sql_value(&current.and_then(|r| r.value.clone()));
        db.execute(
            "INSERT INTO tags VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                name,
                tag_config(name, *ty).device,
                ty.as_str(),
                value,
                vkind,
                current.map(|r| quality_name(r.quality)),
                current.and_then(reason),
                current.map(|r| r.ts),
                current.map(|r| r.revision)
            ],
        )
        .unwrap();
    }
    db
}

/// One query in both dialects. SQLite column references are written as
/// `{p}column` and the placeholder replaced by a table alias.
#[derive(Clone, Debug, Default)]
struct Pair {
    bifrost: String,
    sqlite: String,
}

impl Pair {
    fn new(bifrost: impl Into<String>, sqlite: impl Into<String>) -> Pair {
        Pair {
            bifrost: bifrost.into(),
            sqlite: sqlite.into(),
        }
    }

    fn same(text: impl Into<String>) -> Pair {
        let text = text.into();
        Pair::new(text.clone(), text)
    }
}

fn rfc(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A condition and whether it mentions `quality`.
struct Cond {
    pair: Pair,
    mentions_quality: bool,
}

/// Glob patterns and their SQLite equivalents (`*` stays within a segment).
const GLOBS: &[(&str, &str)] = &[
    (
        "line0/*/temp",
        "({p}tag GLOB 'line0/*/temp' AND {p}tag NOT GLOB 'line0/*/*/temp')",
    ),
    ("**/count", "{p}tag GLOB '*/count'"),
    ("line?/temp", "{p}tag GLOB 'line[^/]/temp'"),
    (
        "line0/*",
        "({p}tag GLOB 'line0/*' AND {p}tag NOT GLOB 'line0/*/*')",
    ),
    ("**", "{p}tag GLOB '*'"),
];

/// Tag-name predicates over column `col` (`tag` or `name`).
fn name_atom(rng: &mut Rng, col: &str) -> Pair {
    let name = rng.pick(TAGS).0;
    let other = rng.pick(TAGS).0;
    let p = match rng.below(7) {
        0 => Pair::same(format!("{{p}}{col} = '{name}'")),
        1 => Pair::same(format!("{{p}}{col} IN ('{name}', '{other}', 'nosuch/tag')")),
        2 => Pair::same(format!(
            "{{p}}{col} LIKE '{}'",
            rng.pick(&["line0/%", "line1/%", "%temp", "line0/_/temp", "LINE0/%"])
        )),
        3 => {
            let (glob, sql) = rng.pick(GLOBS);
            Pair::new(
                format!("glob({{p}}{col}, '{glob}')"),
                sql.replace("tag", col),
            )
        }
        4 => Pair::same(format!("{{p}}{col} != '{name}'")),
        5 => Pair::same(format!("{{p}}{col} NOT LIKE 'line0/%'")),
        _ => Pair::same(format!("{{p}}{col} >= '{name}'")),
    };
    // Bifrost's column references are never qualified.
    Pair::new(p.bifrost.replace("{p}", ""), p.sqlite)
}

/// A time in or around the readings, often exactly one reading's.
fn some_time(rng: &mut Rng, w: &World) -> i64 {
    if rng.chance(50) && !w.rows.is_empty() {
        w.rows[rng.below(w.rows.len() as u64) as usize].ts
    } else {
        T0 + rng.range(-60, 2700) * SEC + rng.range(0, 999_999)
    }
}

fn ts_atom(rng: &mut Rng, w: &World) -> Pair {
    let t = some_time(rng, w);
    let op = *rng.pick(&["<", "<=", ">", ">=", "="]);
    match rng.below(4) {
        0 | 1 => Pair::new(format!("ts {op} '{}'", rfc(t)), format!("{{p}}ts {op} {t}")),
        2 => {
            let u = some_time(rng, w);
            let (a, b) = (t.min(u), t.max(u));
            Pair::new(
                format!("ts BETWEEN '{}' AND '{}'", rfc(a), rfc(b)),
                format!("{{p}}ts BETWEEN {a} AND {b}"),
            )
        }
        _ => {
            let minutes = rng.range(20, 70);
            Pair::new(
                format!("ts > now() - INTERVAL '{minutes} minutes'"),
                format!("{{p}}ts > {}", NOW - minutes * 60 * SEC),
            )
        }
    }
}

/// A comparison of `value` with a literal; unknown (null) for values of
/// another kind, as in Bifrost.
fn value_atom(rng: &mut Rng) -> Pair {
    let typed =
        |kind: &str, cond: String| format!("CASE WHEN {{p}}vkind = '{kind}' THEN {cond} END");
    let op = *rng.pick(&["<", "<=", ">", ">=", "=", "!="]);
    match rng.below(7) {
        0 | 1 => {
            let x = if rng.chance(50) {
                rng.range(-50, 300).to_string()
            } else {
                format!("{}.5", rng.range(-50, 90))
            };
            Pair::new(
                format!("value {op} {x}"),
                typed("num", format!("{{p}}value {op} {x}")),
            )
        }
        2 => {
            let b = rng.chance(50);
            Pair::new(
                format!("value = {b}"),
                typed("bool", format!("{{p}}value = {}", i64::from(b))),
            )
        }
        3 => {
            let s = rng.pick(TEXTS);
            Pair::new(
                format!("value {op} '{s}'"),
                typed("text", format!("{{p}}value {op} '{s}'")),
            )
        }
        4 => {
            let (a, b) = (rng.range(-50, 50), rng.range(50, 200));
            Pair::new(
                format!("value BETWEEN {a} AND {b}"),
                typed("num", format!("{{p}}value BETWEEN {a} AND {b}")),
            )
        }
        5 => Pair::new("value IS NULL", "{p}value IS NULL"),
        _ => Pair::new("value IS NOT NULL", "{p}value IS NOT NULL"),
    }
}

fn quality_atom(rng: &mut Rng) -> Pair {
    let p = match rng.below(4) {
        0 => format!(
            "{{p}}quality = '{}'",
            rng.pick(&["good", "uncertain", "bad"])
        ),
        1 => "{p}quality != 'good'".to_string(),
        2 => "{p}quality IN ('good', 'uncertain')".to_string(),
        _ => "{p}quality IN ('good', 'uncertain', 'bad')".to_string(),
    };
    Pair::new(p.replace("{p}", ""), p)
}

fn reason_atom(rng: &mut Rng) -> Pair {
    let p = match rng.below(3) {
        0 => "{p}reason IS NULL".to_string(),
        1 => format!("{{p}}reason = '{}'", rng.pick(&["timeout", "stale"])),
        _ => "{p}reason IS NOT NULL".to_string(),
    };
    Pair::new(p.replace("{p}", ""), p)
}

/// One atom of a WHERE clause; `name_col` is `tag` or `name`.
fn atom(rng: &mut Rng, w: &World, name_col: &str) -> Cond {
    let mut mentions_quality = false;
    let pair = match rng.below(10) {
        0..=2 => name_atom(rng, name_col),
        3..=5 => ts_atom(rng, w),
        6 | 7 => value_atom(rng),
        8 => {
            mentions_quality = true;
            quality_atom(rng)
        }
        _ => reason_atom(rng),
    };
    let pair = Pair::new(pair.bifrost.replace("{p}", ""), pair.sqlite);
    if rng.chance(10) {
        let neg = |s: &str| format!("NOT ({s})");
        return Cond {
            pair: Pair::new(neg(&pair.bifrost), neg(&pair.sqlite)),
            mentions_quality,
        };
    }
    Cond {
        pair,
        mentions_quality,
    }
}

/// A WHERE clause of up to three atoms joined by AND, sometimes with an OR.
fn condition(rng: &mut Rng, w: &World, name_col: &str) -> Option<Cond> {
    let n = rng.below(4);
    let mut out: Option<Cond> = None;
    for _ in 0..n {
        let a = atom(rng, w, name_col);
        out = Some(match out {
            None => a,
            Some(c) => {
                let op = if rng.chance(20) { "OR" } else { "AND" };
                Cond {
                    pair: Pair::new(
                        format!("({}) {op} ({})", c.pair.bifrost, a.pair.bifrost),
                        format!("({}) {op} ({})", c.pair.sqlite, a.pair.sqlite),
                    ),
                    mentions_quality: c.mentions_quality || a.mentions_quality,
                }
            }
        });
    }
    out
}

/// The SQLite expression(s) that sort `col` like Bifrost does, as one
/// ORDER BY item with its direction and null placement.
fn sqlite_order_item(col: &str, desc: bool, nulls_first: bool) -> String {
    let dir = if desc { "DESC" } else { "ASC" };
    let nulls = if nulls_first {
        "NULLS FIRST"
    } else {
        "NULLS LAST"
    };
    if col == "value" {
        // bools, then numbers, then text.
        format!(
            "(CASE {{p}}vkind WHEN 'bool' THEN 1 WHEN 'num' THEN 2 WHEN 'text' THEN 3 END) {dir} {nulls}, {{p}}value {dir}"
        )
    } else {
        format!("{{p}}{col} {dir} {nulls}")
    }
}

/// A random ORDER BY over `cols`: the Bifrost text, the SQLite items, and
/// whether `ts` is the first... sorted descending (for the tie rule).
fn order_by(rng: &mut Rng, cols: &[&str]) -> (String, Vec<String>, bool) {
    let n = rng.below(3);
    let (mut b, mut s) = (Vec::new(), Vec::new());
    let mut ts_desc = None;
    for _ in 0..n {
        let col = *rng.pick(cols);
        let desc = rng.chance(50);
        let (nulls, nulls_first) = match rng.below(5) {
            0 => (" NULLS FIRST", true),
            1 => (" NULLS LAST", false),
            _ => ("", desc),
        };
        if col == "ts" && ts_desc.is_none() {
            ts_desc = Some(desc);
        }
        b.push(format!("{col}{}{nulls}", if desc { " DESC" } else { "" }));
        s.push(sqlite_order_item(col, desc, nulls_first));
    }
    (b.join(", "), s, ts_desc.unwrap_or(false))
}

fn limit_offset(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => String::new(),
        1 => format!(" LIMIT {}", rng.range(0, 30)),
        2 => format!(" LIMIT {} OFFSET {}", rng.range(1, 25), rng.range(0, 80)),
        _ => format!(" LIMIT {}", rng.range(1, 5)),
    }
}

fn where_clause(c: &Option<Cond>, extra_sqlite: &str, prefix: &str) -> Pair {
    let b = c
        .as_ref()
        .map_or(String::new(), |c| format!(" WHERE {}", c.pair.bifrost));
    let mut parts: Vec<String> = c.iter().map(|c| format!("({})", c.pair.sqlite)).collect();
    if !extra_sqlite.is_empty() {
        parts.push(extra_sqlite.to_string());
    }
    let s = if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    };
    Pair::new(b, s.replace("{p}", prefix))
}

/// SELECT of readings rows with any ORDER BY, LIMIT and OFFSET.
fn plain_readings_query(rng: &mut Rng, w: &World) -> Pair {
    let all = ["tag", "ts", "value", "quality", "reason", "revision", "id"];
    let mut cols: Vec<&str> = all.iter().copied().filter(|_| rng.chance(50)).collect();
    if cols.is_empty() {
        cols.push(*rng.pick(&all));
    }
    let cond = condition(rng, w, "tag");
    let wh = where_clause(&cond, "", "");
    let (order, mut items, ts_desc) = order_by(
        rng,
        &["tag", "ts", "value", "quality", "reason", "revision"],
    );
    let tie = if ts_desc { "DESC" } else { "ASC" };
    items.push(format!("tag ASC, ts {tie}, revision {tie}"));
    let lim = limit_offset(rng);
    let order_b = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {order}")
    };
    Pair::new(
        format!(
            "SELECT {} FROM readings{}{order_b}{lim}",
            cols.join(", "),
            wh.bifrost
        ),
        format!(
            "SELECT {} FROM readings{} ORDER BY {}{lim}",
            cols.join(", "),
            wh.sqlite,
            items.join(", ").replace("{p}", "")
        ),
    )
}

/// A group key: Bifrost select item, SQLite select item, and how a
/// correlated subquery matches it (`i` inner row, `o` outer group).
struct GroupKey {
    bifrost: String,
    sqlite: String,
    matches: String,
}

fn bucket_key(rng: &mut Rng) -> GroupKey {
    let (text, us) = *rng.pick(&[
        ("30 seconds", 30 * SEC),
        ("1 minute", 60 * SEC),
        ("5 minutes", 300 * SEC),
        ("1 hour", 3600 * SEC),
        ("90 seconds", 90 * SEC),
    ]);
    GroupKey {
        bifrost: format!("time_bucket(INTERVAL '{text}', ts) AS bucket"),
        sqlite: format!("(o.ts / {us}) * {us} AS bucket"),
        matches: format!("(i.ts / {us}) = (o.ts / {us})"),
    }
}

fn column_key(col: &str) -> GroupKey {
    GroupKey {
        bifrost: col.into(),
        sqlite: format!("o.{col}"),
        matches: format!("i.{col} = o.{col}"),
    }
}

/// An aggregate over `arg` in both dialects. `scope` restricts the
/// correlated subquery of first/last to the rows of the group.
fn aggregate(func: &str, arg: &str, table: &str, scope: &str) -> Pair {
    let num = |f: &str| format!("{f}(CASE WHEN o.vkind = 'num' THEN o.{arg} END)");
    let typed = |f: &str, kinds: [&str; 3]| {
        let parts: Vec<String> = kinds
            .iter()
            .map(|k| format!("{f}(CASE WHEN o.vkind = '{k}' THEN o.value END)"))
            .collect();
        format!("COALESCE({})", parts.join(", "))
    };
    let s = match (func, arg) {
        ("count", "*") => "count(*)".to_string(),
        ("avg" | "sum", "value") => num(func),
        ("min", "value") => typed("min", ["bool", "num", "text"]),
        ("max", "value") => typed("max", ["text", "num", "bool"]),
        ("first" | "last", _) => {
            let dir = if func == "first" { "ASC" } else { "DESC" };
            // Wrapped in max() so that the query aggregates even when this
            // is its only item; every row of a group gives the same answer.
            format!(
                "max((SELECT i.{arg} FROM {table} i WHERE {scope} AND i.ts IS NOT NULL \
                 ORDER BY i.ts {dir}, i.revision {dir} LIMIT 1))"
            )
        }
        _ => format!("{func}(o.{arg})"),
    };
    Pair::new(format!("{func}({arg})"), s)
}

/// Aggregate calls `(function, argument)`: `sum`/`avg` of numbers only.
fn random_aggregates(rng: &mut Rng, args: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    let funcs = ["count", "avg", "sum", "min", "max", "first", "last"];
    // Value at a time: every aggregate last() (or every one first()).
    let only = match rng.below(5) {
        0 => Some("last"),
        1 => Some("first"),
        _ => None,
    };
    let n = rng.range(1, 4);
    (0..n)
        .map(|_| {
            let func = only.unwrap_or_else(|| *rng.pick(&funcs));
            let arg = match func {
                "count" if rng.chance(40) => "*",
                "avg" | "sum" if args.contains(&"revision") && rng.chance(30) => "revision",
                "avg" | "sum" => "value",
                _ => *rng.pick(args),
            };
            (func, arg)
        })
        .collect()
}

/// An aggregate query over `table`, grouped by some of `keys`.
fn aggregate_query(rng: &mut Rng, w: &World, table: &str, keys: Vec<GroupKey>) -> Pair {
    let readings = table == "readings";
    let args: &[&'static str] = if readings {
        &["value", "ts", "quality", "revision"]
    } else {
        &["value", "ts", "name", "quality"]
    };
    let cond = condition(rng, w, if readings { "tag" } else { "name" });
    let usable = readings && !cond.as_ref().is_some_and(|c| c.mentions_quality);
    let usable_sql = |p: &str| {
        if usable {
            format!("{p}quality != 'bad' AND {p}value IS NOT NULL")
        } else {
            String::new()
        }
    };
    let outer = where_clause(&cond, &usable_sql("{p}"), "o.");
    let inner = where_clause(&cond, &usable_sql("{p}"), "i.");
    let mut scope: Vec<String> = vec![inner.sqlite.trim_start_matches(" WHERE ").to_string()];
    scope.extend(keys.iter().map(|k| k.matches.clone()));
    scope.retain(|s| !s.is_empty());
    let scope = if scope.is_empty() {
        "1".into()
    } else {
        scope.join(" AND ")
    };
    let calls = random_aggregates(rng, args);
    let aggs: Vec<Pair> = calls
        .iter()
        .map(|(f, a)| aggregate(f, a, table, &scope))
        .collect();
    let mut items_b: Vec<String> = keys.iter().map(|k| k.bifrost.clone()).collect();
    let mut items_s: Vec<String> = keys.iter().map(|k| k.sqlite.clone()).collect();
    items_b.extend(aggs.iter().map(|a| a.bifrost.clone()));
    items_s.extend(aggs.iter().map(|a| a.sqlite.clone()));
    // Sortable positions: not a value picked from groups of several types
    // (SQLite would rank a bool among the numbers).
    let positions: Vec<String> = (1..=keys.len())
        .chain(
            calls
                .iter()
                .enumerate()
                .filter(|(_, (f, a))| *a != "value" || matches!(*f, "count" | "avg" | "sum"))
                .map(|(i, _)| keys.len() + i + 1),
        )
        .map(|i| i.to_string())
        .collect();
    let (order, mut order_s, _) = if positions.is_empty() {
        (String::new(), Vec::new(), false)
    } else {
        order_by(
            rng,
            &positions.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    // Groups that tie on every key come by their group keys.
    order_s.extend((1..=keys.len()).map(|i| format!("{i} ASC")));
    let group = if keys.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = keys
            .iter()
            .map(|k| k.bifrost.rsplit(' ').next().unwrap())
            .collect();
        format!(" GROUP BY {}", names.join(", "))
    };
    let lim = limit_offset(rng);
    let order_b = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {order}")
    };
    let order_s = if order_s.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order_s.join(", ").replace("{p}", ""))
    };
    Pair::new(
        format!(
            "SELECT {} FROM {table}{}{group}{order_b}{lim}",
            items_b.join(", "),
            outer.bifrost
        ),
        format!(
            "SELECT {} FROM {table} o{}{group}{order_s}{lim}",
            items_s.join(", "),
            outer.sqlite
        ),
    )
}

fn readings_aggregate_query(rng: &mut Rng, w: &World) -> Pair {
    let keys = match rng.below(6) {
        0 => vec![],
        1 | 2 => vec![column_key("tag")],
        3 => vec![bucket_key(rng)],
        4 => vec![column_key("tag"), bucket_key(rng)],
        _ => vec![column_key("quality")],
    };
    aggregate_query(rng, w, "readings", keys)
}

fn tags_aggregate_query(rng: &mut Rng, w: &World) -> Pair {
    let keys = match rng.below(4) {
        0 => vec![],
        1 => vec![column_key("type")],
        2 => vec![column_key("device")],
        _ => vec![column_key("quality")],
    };
    aggregate_query(rng, w, "tags", keys)
}

/// SELECT of `tags` rows (configuration and current reading).
fn plain_tags_query(rng: &mut Rng, w: &World) -> Pair {
    let all = [
        "name", "device", "type", "value", "quality", "reason", "ts", "revision",
    ];
    let mut cols: Vec<&str> = all.iter().copied().filter(|_| rng.chance(50)).collect();
    if cols.is_empty() {
        cols.push("name");
    }
    let cond = condition(rng, w, "name");
    let wh = where_clause(&cond, "", "");
    let (order, mut items, _) = order_by(rng, &["name", "type", "value", "quality", "ts"]);
    items.push("name ASC".into());
    let lim = limit_offset(rng);
    let order_b = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {order}")
    };
    Pair::new(
        format!(
            "SELECT {} FROM tags{}{order_b}{lim}",
            cols.join(", "),
            wh.bifrost
        ),
        format!(
            "SELECT {} FROM tags{} ORDER BY {}{lim}",
            cols.join(", "),
            wh.sqlite,
            items.join(", ").replace("{p}", "")
        ),
    )
}

fn random_query(rng: &mut Rng, w: &World) -> Pair {
    match rng.below(10) {
        0..=3 => plain_readings_query(rng, w),
        4..=6 => readings_aggregate_query(rng, w),
        7 | 8 => plain_tags_query(rng, w),
        _ => tags_aggregate_query(rng, w),
    }
}

/// A cell reduced to what both engines can express: SQLite has no bool or
/// timestamp type, so those become numbers.
#[derive(Clone, Debug, PartialEq)]
enum Norm {
    Null,
    Num(f64),
    Text(String),
}

fn norm_cell(c: &Cell) -> Norm {
    match c {
        Cell::Null => Norm::Null,
        Cell::Bool(b) => Norm::Num(f64::from(u8::from(*b))),
        Cell::Int(i) | Cell::Timestamp(i) => Norm::Num(*i as f64),
        Cell::Float(x) => Norm::Num(*x),
        Cell::Text(s) => Norm::Text(s.clone()),
    }
}

fn norm_sql(v: SqlValue) -> Norm {
    match v {
        SqlValue::Null => Norm::Null,
        SqlValue::Integer(i) => Norm::Num(i as f64),
        SqlValue::Real(x) => Norm::Num(x),
        SqlValue::Text(s) => Norm::Text(s),
        SqlValue::Blob(b) => panic!("unexpected blob {b:?}"),
    }
}

fn same(a: &Norm, b: &Norm) -> bool {
    match (a, b) {
        (Norm::Num(x), Norm::Num(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

fn run_bifrost(w: &World, sql: &str) -> Result<Vec<Vec<Norm>>, QueryError> {
    let q = Query::parse(sql)?;
    let cluster = ClusterInfo::default();
    let ctx = ExecContext {
        catalog: &w.store,
        history: &w.store,
        cluster: &cluster,
        now_us: NOW,
        limits: Limits::default(),
    };
    let mut rows = Vec::new();
    q.execute(&ctx, &mut |row| {
        rows.push(row.iter().map(norm_cell).collect());
        true
    })?;
    Ok(rows)
}

fn run_sqlite(w: &World, sql: &str) -> rusqlite::Result<Vec<Vec<Norm>>> {
    let mut stmt = w.sqlite.prepare(sql)?;
    let width = stmt.column_count();
    let rows = stmt.query_map([], |row| {
        (0..width)
            .map(|i| row.get::<_, SqlValue>(i).map(norm_sql))
            .collect::<rusqlite::Result<Vec<Norm>>>()
    })?;
    rows.collect()
}

/// Where two answers first differ, if they do.
fn first_difference(a: &[Vec<Norm>], b: &[Vec<Norm>]) -> Option<String> {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x.len() != y.len() || x.iter().zip(y).any(|(p, q)| !same(p, q)) {
            return Some(format!("row {i}: bifrost {x:?}, sqlite {y:?}"));
        }
    }
    (a.len() != b.len()).then(|| format!("bifrost {} rows, sqlite {} rows", a.len(), b.len()))
}

fn seed() -> u64 {
    match std::env::var("BIFROST_DIFF_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("BIFROST_DIFF_SEED must be an unsigned integer, got {s:?}")),
        Err(_) => DEFAULT_SEED,
    }
}

/// Runs `q` in both engines and panics, saying where, unless they agree;
/// returns the number of rows.
fn check(w: &World, seed: u64, n: usize, q: &Pair) -> usize {
    let context = || {
        format!(
            "seed {seed} (BIFROST_DIFF_SEED={seed}), query {n}\n  bifrost: {}\n  sqlite:  {}",
            q.bifrost, q.sqlite
        )
    };
    let ours = run_bifrost(w, &q.bifrost)
        .unwrap_or_else(|e| panic!("{}\n  bifrost failed: {e}", context()));
    let theirs =
        run_sqlite(w, &q.sqlite).unwrap_or_else(|e| panic!("{}\n  sqlite failed: {e}", context()));
    if let Some(diff) = first_difference(&ours, &theirs) {
        let mut msg = format!("{}\n  {diff}\n  bifrost:", context());
        for r in ours.iter().take(30) {
            let _ = write!(msg, "\n    {r:?}");
        }
        msg.push_str("\n  sqlite:");
        for r in theirs.iter().take(30) {
            let _ = write!(msg, "\n    {r:?}");
        }
        panic!("{msg}");
    }
    ours.len()
}

#[test]
fn random_queries_agree_with_sqlite() {
    let seed = seed();
    let mut rng = Rng(seed);
    let w = world(&mut rng);
    let mut non_empty = 0;
    for n in 0..QUERIES {
        let q = random_query(&mut rng, &w);
        non_empty += usize::from(check(&w, seed, n, &q) > 0);
    }
    // The generator must not drift into queries that select nothing.
    assert!(
        non_empty > QUERIES / 2,
        "seed {seed}: only {non_empty} of {QUERIES} queries returned rows"
    );
}
