//! Aggregates answered from summaries (`exec/summarized.rs`) against the
//! same queries answered row by row, on the query tests' fixture. The store
//! here summarises like one with block summaries: whole blocks where they
//! lie in the range and in one bucket, reading by reading elsewhere.

use std::cell::Cell as Counter;
use std::collections::BTreeMap;

use crate::cell::Cell;
use crate::model::Reading;
use crate::store::{
    BucketSummaries, History, ScanOutcome, ScanRequest, StoreError, Summary, SummaryRequest,
};
use crate::tests::{close, fixture, rfc, Fixture, A, AGGS, B, E, F, NOW, SEC, T0};
use crate::{ExecContext, ExecStats, Limits, Query};

/// Readings per block.
const BLOCK: usize = 7;

/// The fixture's history, summarised in blocks of [`BLOCK`] readings of a
/// tag in (time, revision) order; counts its calls and whole blocks.
struct Blocks<'a> {
    inner: &'a dyn History,
    calls: Counter<u64>,
    whole: Counter<u64>,
}

impl History for Blocks<'_> {
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        visit: &mut dyn FnMut(Reading) -> bool,
    ) -> Result<ScanOutcome, StoreError> {
        self.inner.scan(req, visit)
    }

    fn summarize(&self, req: &SummaryRequest<'_>) -> Result<BucketSummaries, StoreError> {
        self.calls.set(self.calls.get() + 1);
        let mut all = Vec::new();
        self.inner.scan(
            &ScanRequest::between(req.tag, i64::MIN, i64::MAX),
            &mut |r| {
                all.push(r);
                true
            },
        )?;
        let in_range = |r: &Reading| (req.from_us..=req.to_us).contains(&r.ts_us);
        let add = |s: &mut Summary, r: &Reading| {
            s.add_reading(r.ts_us, r.revision, r.quality.level, r.value.as_ref())
        };
        let mut out: BTreeMap<Option<i64>, Summary> = BTreeMap::new();
        for block in all.chunks(BLOCK) {
            let (first, last) = (&block[0], &block[block.len() - 1]);
            let bucket = req.bucket_of(first.ts_us);
            if in_range(first) && in_range(last) && bucket == req.bucket_of(last.ts_us) {
                let mut s = Summary::default();
                block.iter().for_each(|r| add(&mut s, r));
                out.entry(bucket).or_default().merge(&s);
                self.whole.set(self.whole.get() + 1);
            } else {
                for r in block.iter().filter(|r| in_range(r)) {
                    add(out.entry(req.bucket_of(r.ts_us)).or_default(), r);
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

fn run_on(f: &Fixture, history: &dyn History, sql: &str) -> (Vec<Vec<Cell>>, ExecStats) {
    let q = Query::parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let ctx = ExecContext {
        catalog: &f.store,
        history,
        cluster: &f.cluster,
        now_us: NOW,
        limits: Limits::default(),
    };
    let mut rows = Vec::new();
    let stats = q
        .execute(&ctx, &mut |row| {
            rows.push(row);
            true
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    (rows, stats)
}

/// Equal rows, floats up to rounding (sums are added in another order).
fn same_rows(a: &[Vec<Cell>], b: &[Vec<Cell>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: row count");
    for (x, y) in a.iter().zip(b) {
        let same = x.len() == y.len()
            && x.iter().zip(y).all(|(p, q)| match (p, q) {
                (Cell::Float(p), Cell::Float(q)) => close(*p, *q),
                _ => p == q,
            });
        assert!(same, "{what}: {x:?} vs {y:?}");
    }
}

/// (select list, WHERE clause or "", rest) of queries summaries answer.
fn summarizable() -> Vec<(String, String, String)> {
    let from = rfc(T0 + 95 * SEC);
    let to = rfc(T0 + 400 * SEC);
    vec![
        (format!("tag, {AGGS}"), String::new(), "GROUP BY tag".into()),
        (
            format!("tag, time_bucket(INTERVAL '1 minute', ts) AS b, {AGGS}"),
            format!("tag IN ('{A}', '{B}', '{E}', '{F}') AND ts >= '{from}' AND ts < '{to}'"),
            "GROUP BY tag, b ORDER BY tag, b".into(),
        ),
        (
            "time_bucket(INTERVAL '10 seconds', ts) AS b, count(*), sum(value), avg(value)".into(),
            "tag LIKE 'line1/%'".into(),
            "GROUP BY b ORDER BY b DESC".into(),
        ),
        (
            AGGS.to_string(),
            format!(
                "glob(tag, 'line*/temp') AND ts >= now() - INTERVAL '5 minutes' AND '{from}' <= ts"
            ),
            String::new(),
        ),
        (
            "tag, time_bucket(INTERVAL '3 minutes', ts) AS b, min(value), max(value), first(value)"
                .into(),
            format!("tag = '{B}' AND ts <= '{to}'"),
            "GROUP BY b, tag".into(),
        ),
    ]
}

fn sql(select: &str, filter: &str, rest: &str) -> String {
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!("WHERE {filter}")
    };
    format!("SELECT {select} FROM readings {filter} {rest}")
}

#[test]
fn summaries_answer_what_rows_answer() {
    let f = fixture();
    for (select, filter, rest) in summarizable() {
        let blocks = Blocks {
            inner: &f.store,
            calls: Counter::new(0),
            whole: Counter::new(0),
        };
        let q = sql(&select, &filter, &rest);
        let (got, stats) = run_on(&f, &blocks, &q);
        assert!(blocks.calls.get() > 0, "{q}: summaries not asked for");
        assert!(!got.is_empty(), "{q}: no rows");
        // Usable readings have values, so this test changes no answer, but
        // the engine cannot tell and reads the rows.
        let by_rows = if filter.is_empty() {
            "value IS NOT NULL".to_string()
        } else {
            format!("({filter}) AND value IS NOT NULL")
        };
        let row_blocks = Blocks {
            inner: &f.store,
            calls: Counter::new(0),
            whole: Counter::new(0),
        };
        let (want, want_stats) = run_on(&f, &row_blocks, &sql(&select, &by_rows, &rest));
        assert_eq!(row_blocks.calls.get(), 0, "{q}: the row path summarised");
        same_rows(&got, &want, &q);
        assert_eq!(stats.scanned, want_stats.scanned, "{q}: readings read");
    }
}

#[test]
fn whole_blocks_are_merged_where_they_fit_one_bucket() {
    let f = fixture();
    let blocks = Blocks {
        inner: &f.store,
        calls: Counter::new(0),
        whole: Counter::new(0),
    };
    let (rows, _) = run_on(
        &f,
        &blocks,
        "SELECT tag, time_bucket(INTERVAL '1 hour', ts) AS b, count(*) FROM readings GROUP BY tag, b",
    );
    assert!(!rows.is_empty());
    assert!(blocks.whole.get() > 0, "no block was merged whole");
}

#[test]
fn other_filters_groups_and_arguments_read_rows() {
    let f = fixture();
    let t = rfc(T0 + 120 * SEC);
    for q in [
        // Quality mentioned: every level may count.
        format!("SELECT count(*) FROM readings WHERE tag = '{A}' AND quality = 'good'"),
        // A test on values, on the id, an instant left out, an OR.
        format!("SELECT count(*) FROM readings WHERE tag = '{A}' AND value > 3"),
        "SELECT count(*) FROM readings WHERE id <> 'x'".into(),
        format!("SELECT count(*) FROM readings WHERE ts <> '{t}'"),
        format!("SELECT count(*) FROM readings WHERE tag = '{A}' OR ts < '{t}'"),
        // Groups by something else, aggregates of something else.
        "SELECT quality, count(*) FROM readings GROUP BY quality".into(),
        "SELECT tag, sum(value * 2) FROM readings GROUP BY tag".into(),
        "SELECT tag, count(ts) FROM readings GROUP BY tag".into(),
        "SELECT time_bucket(INTERVAL '1 minute', ts) AS a, time_bucket(INTERVAL '2 minutes', ts) AS b, count(*) \
         FROM readings GROUP BY a, b"
            .into(),
        // Last values per tag: one seek per tag reads less than a summary.
        "SELECT tag, last(value) FROM readings GROUP BY tag".into(),
    ] {
        let blocks = Blocks {
            inner: &f.store,
            calls: Counter::new(0),
            whole: Counter::new(0),
        };
        run_on(&f, &blocks, &q);
        assert_eq!(blocks.calls.get(), 0, "{q}");
    }
}
