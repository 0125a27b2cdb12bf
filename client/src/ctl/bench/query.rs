//! `bench query`: SQL query latency on one node.
//!
//! Like `bench ingest`, it starts its own three-node cluster (killed however
//! the benchmark ends) unless told to use an existing one (`--external`, or
//! `--endpoints` typed on the command line). It imports a disabled device
//! `bench` (never polled) with 10,000 f64 tags `bench/t00000` ..
//! `bench/t09999` and one more, `bench/day`, in one `Import`; ingests one
//! current reading per tag (one batch of 10,000) and a day of one-second
//! readings of `bench/day` (86,400, in batches of 10,000, from 24 hours
//! before the current minute began to its last second: `hh:mm:00` yesterday
//! to `hh:mm-1:59` today); and waits until the node queried has applied all
//! of it.
//!
//! Every query goes, with `local` consistency, to one node: the first
//! endpoint (node 1 of the own cluster; leader or follower, as the election
//! fell, said on stderr), through a client that knows only that node. A
//! query's time is from sending it until its last row arrived, one query at a
//! time. Each run measures:
//!
//! - **point**: the current value of one tag,
//!   `SELECT value FROM tags WHERE name = 'bench/t04242'`, 2,000 times in a
//!   row: the p50 and p99 (nearest rank) of those 2,000 (goal: p99 < 1 ms);
//! - **current values**: all 10,000 in one query,
//!   `SELECT name, value, ts FROM tags WHERE name LIKE 'bench/t%'`, 10 times:
//!   the median (goal: < 30 ms, issue 11); each must return exactly 10,000 rows;
//! - **buckets**: one-minute `avg`/`min`/`max` of `bench/day` over its day,
//!   `SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, avg(value),
//!   min(value), max(value) FROM readings WHERE tag = 'bench/day' AND ts >=
//!   '<first>' AND ts <= '<last>' GROUP BY bucket`, 10 times: the median (goal:
//!   < 10 ms, issue 11); each must return one row per minute the day touches
//!   (buckets are aligned to the epoch), which is 1,440 since the day starts
//!   on a whole minute.
//!
//! The run lines also give the server's own time for the last two (the
//! `elapsed_us` of the query's stats: planning and execution on the node,
//! without the transfer of the rows), which tells the engine's share from
//! the rest. The summary line holds the medians over the runs:
//! `query: point p50 X ms p99 Y ms; 10000 current values Z ms; 1440
//! one-minute buckets W ms`.
//!
//! Against an external cluster the tags are created or replaced and the
//! readings added again on every invocation (with fresh ids); the queries
//! are bounded to the new day, but `bench/day` may by then hold readings of
//! earlier invocations in that range, and `bench/t%` must match exactly the
//! 10,000 tags.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bifrost_client::proto::{cell::Kind as CellKind, Reading, Tag};
use bifrost_client::time::{format_ts_us, now_us};
use bifrost_client::{Client, Consistency};
use bifrost_testkit::Wait;
use clap::Args;
use serde_json::json;

use super::common::{
    bench_tag, f64_reading, import_bench_tags, median, percentile_ms, round1, run_on_target,
    target_client, ClusterArgs, Own, DEVICE,
};
use crate::ctl::data::MAX_BATCH;
use crate::ctl::output::{print_json, print_line, Output};
use crate::ctl::{Common, Ctx};

/// Tags with one current reading each.
const TAGS: u32 = 10_000;
/// The tag with a day of history.
const DAY_TAG: &str = "bench/day";
/// Readings of `DAY_TAG`: one per second.
const DAY_READINGS: i64 = 86_400;
const SECOND_US: i64 = 1_000_000;
const MINUTE_US: i64 = 60 * SECOND_US;
const POINT_QUERIES: usize = 2_000;
const SCAN_QUERIES: usize = 10;
const POINT_SQL: &str = "SELECT value FROM tags WHERE name = 'bench/t04242'";
const CURRENT_SQL: &str = "SELECT name, value, ts FROM tags WHERE name LIKE 'bench/t%'";
/// How long the queried node may take to apply the set-up's readings.
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args, Debug, Clone)]
pub struct BenchQueryArgs {
    /// Number of runs; the summary is the median of each figure.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub common: Common,
}

/// How many `width`-wide buckets, aligned to the epoch, the instants
/// `first..=last` touch when there is at least one reading in each (as there
/// is for one reading per second and one-minute buckets).
fn bucket_count(first_us: i64, last_us: i64, width_us: i64) -> i64 {
    last_us.div_euclid(width_us) - first_us.div_euclid(width_us) + 1
}

/// The day of `bench/day`: its first and last timestamps, whole seconds
/// ending with the last full minute before `now_us` (so the day starts on a
/// whole minute too).
fn day_range(now_us: i64) -> (i64, i64) {
    let last = now_us.div_euclid(MINUTE_US) * MINUTE_US - SECOND_US;
    (last - (DAY_READINGS - 1) * SECOND_US, last)
}

fn buckets_sql(first_us: i64, last_us: i64) -> String {
    format!(
        "SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, avg(value), min(value), max(value) \
         FROM readings WHERE tag = '{DAY_TAG}' AND ts >= '{}' AND ts <= '{}' GROUP BY bucket",
        format_ts_us(first_us),
        format_ts_us(last_us)
    )
}

/// What the set-up stored.
struct Day {
    first_us: i64,
    last_us: i64,
    buckets: usize,
    sql: String,
}

/// Figures of one run.
#[derive(Debug, Clone, PartialEq)]
struct RunResult {
    point_p50_ms: f64,
    point_p99_ms: f64,
    current_ms: f64,
    current_server_ms: f64,
    buckets: usize,
    buckets_ms: f64,
    buckets_server_ms: f64,
}

pub async fn query(ctx: &Ctx, args: BenchQueryArgs) -> anyhow::Result<()> {
    run_on_target(ctx, &args.cluster, |endpoints, own| {
        bench(ctx, &args, endpoints, own)
    })
    .await
}

async fn bench(
    ctx: &Ctx,
    args: &BenchQueryArgs,
    endpoints: Vec<String>,
    own: Option<Own>,
) -> anyhow::Result<()> {
    let client = target_client(ctx, endpoints.clone(), own.as_ref())?;
    let day = setup(&client).await?;

    // Only Local queries ever go through this client, and it knows one
    // node: every query goes there (it never learns of a leader).
    let node = endpoints[0].clone();
    let local = target_client(ctx, vec![node.clone()], own.as_ref())?;
    let own = own.is_some();
    let role = match client.status().await {
        Ok(s) if own && s.leader_id == 1 => " (node 1, the leader)".to_string(),
        Ok(s) if own && s.leader_id != 0 => {
            format!(" (node 1, a follower; node {} leads)", s.leader_id)
        }
        _ => String::new(),
    };
    eprintln!("bench: queries go to {node}{role} with local consistency");
    wait_applied(&local, &day).await?;

    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = one_run(&local, &day).await?;
        let line = format!("run {run}/{}: {}", args.runs, run_text(&r));
        match ctx.output {
            Output::Text | Output::Csv => print_line(&line)?,
            Output::Json => eprintln!("bench: {line}"),
        }
        results.push(r);
    }

    let med = |f: fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let (p50, p99) = (med(|r| r.point_p50_ms), med(|r| r.point_p99_ms));
    let (current, buckets) = (med(|r| r.current_ms), med(|r| r.buckets_ms));
    for (what, got, goal) in [
        ("point p99", p99, 1.0),
        ("10000 current values", current, 30.0),
        ("one-minute buckets", buckets, 10.0),
    ] {
        if got >= goal {
            eprintln!("bench: goal missed: {what} {got:.2} ms (goal < {goal} ms)");
        }
    }
    match ctx.output {
        Output::Text | Output::Csv => {
            print_line(summary_line(p50, p99, current, day.buckets, buckets))?
        }
        Output::Json => print_json(&json!({
            "cluster": if own { "own" } else { "external" },
            "tls": args.cluster.tls,
            "node": node,
            "tags": TAGS,
            "day_readings": DAY_READINGS,
            "point_queries": POINT_QUERIES,
            "scan_queries": SCAN_QUERIES,
            "runs": results.iter().map(|r| json!({
                "point_p50_ms": round3(r.point_p50_ms),
                "point_p99_ms": round3(r.point_p99_ms),
                "current_values_ms": round1(r.current_ms),
                "current_values_server_ms": round1(r.current_server_ms),
                "buckets": r.buckets,
                "buckets_ms": round1(r.buckets_ms),
                "buckets_server_ms": round1(r.buckets_server_ms),
            })).collect::<Vec<_>>(),
            "point_p50_ms": round3(p50),
            "point_p99_ms": round3(p99),
            "current_values_ms": round1(current),
            "buckets": day.buckets,
            "buckets_ms": round1(buckets),
        }))?,
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn run_text(r: &RunResult) -> String {
    format!(
        "point p50 {:.2} ms p99 {:.2} ms; {TAGS} current values {:.1} ms (server {:.1} ms); \
         {} one-minute buckets {:.1} ms (server {:.1} ms)",
        r.point_p50_ms,
        r.point_p99_ms,
        r.current_ms,
        r.current_server_ms,
        r.buckets,
        r.buckets_ms,
        r.buckets_server_ms
    )
}

/// `query: point p50 X ms p99 Y ms; 10000 current values Z ms; 1440
/// one-minute buckets W ms`.
fn summary_line(p50: f64, p99: f64, current: f64, buckets: usize, buckets_ms: f64) -> String {
    format!(
        "query: point p50 {p50:.2} ms p99 {p99:.2} ms; {TAGS} current values {current:.1} ms; \
         {buckets} one-minute buckets {buckets_ms:.1} ms"
    )
}

/// The device, the tags and their readings.
async fn setup(client: &Client) -> anyhow::Result<Day> {
    let started = Instant::now();
    let mut tags: Vec<Tag> = (0..TAGS as usize)
        .map(|i| bench_tag(format!("{DEVICE}/t{i:05}"), i))
        .collect();
    tags.push(bench_tag(DAY_TAG.into(), TAGS as usize));
    import_bench_tags(client, tags, started).await?;

    // Fresh ids, or a cluster that saw an earlier benchmark would take the
    // readings for duplicates and not store them.
    let nonce: u64 = rand::random();
    let now = now_us();
    let current: Vec<Reading> = (0..TAGS)
        .map(|i| {
            f64_reading(
                format!("{nonce:016x}-cur-{i}"),
                format!("{DEVICE}/t{i:05}"),
                now,
                f64::from(i) / 10.0,
            )
        })
        .collect();
    let resp = client
        .ingest(current)
        .await
        .context("ingesting current values")?;
    if resp.stored != u64::from(TAGS) {
        bail!("ingesting current values: {} of {TAGS} stored", resp.stored);
    }

    let sent = Instant::now();
    let (first_us, last_us) = day_range(now_us());
    let mut n = 0;
    while n < DAY_READINGS {
        let end = (n + i64::from(MAX_BATCH)).min(DAY_READINGS);
        let batch: Vec<Reading> = (n..end)
            .map(|k| {
                // A slow wave over the day, so buckets differ.
                let v = 20.0 + 5.0 * (k as f64 * std::f64::consts::TAU / 3600.0).sin();
                f64_reading(
                    format!("{nonce:016x}-day-{k}"),
                    DAY_TAG.into(),
                    first_us + k * SECOND_US,
                    v,
                )
            })
            .collect();
        let resp = client
            .ingest(batch)
            .await
            .with_context(|| format!("ingesting readings {n}..{end} of {DAY_TAG}"))?;
        if resp.stored != (end - n) as u64 {
            bail!(
                "ingesting readings {n}..{end} of {DAY_TAG}: {} of {} stored",
                resp.stored,
                end - n
            );
        }
        n = end;
    }
    eprintln!(
        "bench: {TAGS} current values and {DAY_READINGS} readings of {DAY_TAG} ({} .. {}) ingested in {:.1}s",
        format_ts_us(first_us),
        format_ts_us(last_us),
        sent.elapsed().as_secs_f64()
    );
    let buckets = bucket_count(first_us, last_us, MINUTE_US) as usize;
    Ok(Day {
        first_us,
        last_us,
        buckets,
        sql: buckets_sql(first_us, last_us),
    })
}

/// Waits until the queried node answers with everything the set-up stored
/// (its local state may trail the leader's for a moment).
async fn wait_applied(local: &Client, day: &Day) -> anyhow::Result<()> {
    let started = Instant::now();
    let count_sql = format!(
        "SELECT count(*) FROM readings WHERE tag = '{DAY_TAG}' AND ts >= '{}' AND ts <= '{}'",
        format_ts_us(day.first_us),
        format_ts_us(day.last_us)
    );
    let current_sql = "SELECT count(value) FROM tags WHERE name LIKE 'bench/t%'";
    let what = format!(
        "the queried node to apply {DAY_READINGS} readings of {DAY_TAG} and {TAGS} current values"
    );
    Wait::new(what, APPLY_TIMEOUT)
        .until_async(|| async {
            let day_n = single_int(local, &count_sql)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let current_n = single_int(local, current_sql)
                .await
                .map_err(|e| format!("{e:#}"))?;
            if day_n >= DAY_READINGS && current_n >= i64::from(TAGS) {
                Ok(())
            } else {
                Err(format!("{day_n} readings and {current_n} current values"))
            }
        })
        .await?;
    eprintln!(
        "bench: the queried node has applied everything ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The one integer cell of a query's one row.
async fn single_int(client: &Client, sql: &str) -> anyhow::Result<i64> {
    let (_, rows, _) = client
        .query(sql, Consistency::Local)
        .await
        .with_context(|| format!("query {sql:?}"))?
        .collect()
        .await
        .with_context(|| format!("query {sql:?}"))?;
    match rows
        .first()
        .and_then(|r| r.cells.first())
        .and_then(|c| c.kind.as_ref())
    {
        Some(CellKind::IntValue(n)) => Ok(*n),
        other => bail!("query {sql:?}: expected one integer, got {other:?}"),
    }
}

/// Runs `sql` to the end; returns its rows, the time taken and the server's
/// own time in ms.
async fn timed_query(client: &Client, sql: &str) -> anyhow::Result<(usize, Duration, f64)> {
    let sent = Instant::now();
    let (_, rows, stats) = client
        .query(sql, Consistency::Local)
        .await
        .with_context(|| format!("query {sql:?}"))?
        .collect()
        .await
        .with_context(|| format!("query {sql:?}"))?;
    let took = sent.elapsed();
    let server_ms = stats.map_or(0.0, |s| s.elapsed_us as f64 / 1000.0);
    Ok((rows.len(), took, server_ms))
}

async fn one_run(client: &Client, day: &Day) -> anyhow::Result<RunResult> {
    let mut point = Vec::with_capacity(POINT_QUERIES);
    for _ in 0..POINT_QUERIES {
        let (rows, took, _) = timed_query(client, POINT_SQL).await?;
        if rows != 1 {
            bail!("{POINT_SQL:?} returned {rows} rows, expected 1");
        }
        point.push(took);
    }
    point.sort();

    let mut current = Vec::with_capacity(SCAN_QUERIES);
    let mut current_server = Vec::with_capacity(SCAN_QUERIES);
    for _ in 0..SCAN_QUERIES {
        let (rows, took, server) = timed_query(client, CURRENT_SQL).await?;
        if rows != TAGS as usize {
            bail!("{CURRENT_SQL:?} returned {rows} rows, expected {TAGS}");
        }
        current.push(took.as_secs_f64() * 1000.0);
        current_server.push(server);
    }

    let mut buckets = Vec::with_capacity(SCAN_QUERIES);
    let mut buckets_server = Vec::with_capacity(SCAN_QUERIES);
    for _ in 0..SCAN_QUERIES {
        let (rows, took, server) = timed_query(client, &day.sql).await?;
        if rows != day.buckets {
            bail!(
                "the one-minute buckets of {DAY_TAG} came back as {rows} rows, expected {}",
                day.buckets
            );
        }
        buckets.push(took.as_secs_f64() * 1000.0);
        buckets_server.push(server);
    }

    Ok(RunResult {
        point_p50_ms: percentile_ms(&point, 50.0),
        point_p99_ms: percentile_ms(&point, 99.0),
        current_ms: median(current),
        current_server_ms: median(current_server),
        buckets: day.buckets,
        buckets_ms: median(buckets),
        buckets_server_ms: median(buckets_server),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_seconds_is_1440_or_1441_minute_buckets() {
        // Starting on a whole minute: exactly 1440.
        let first = 1_700_000_040 * SECOND_US; // 22:14:00
        assert_eq!(first % MINUTE_US, 0);
        let last = first + (DAY_READINGS - 1) * SECOND_US;
        assert_eq!(bucket_count(first, last, MINUTE_US), 1440);
        // Starting anywhere else: a partial bucket at each end.
        assert_eq!(
            bucket_count(first + SECOND_US, last + SECOND_US, MINUTE_US),
            1441
        );
        assert_eq!(
            bucket_count(first - SECOND_US, last - SECOND_US, MINUTE_US),
            1441
        );
        // One instant is one bucket; a boundary crossing makes two.
        assert_eq!(bucket_count(first, first, MINUTE_US), 1);
        assert_eq!(bucket_count(first - 1, first, MINUTE_US), 2);
        // Before the epoch too (aligned to it, flooring).
        assert_eq!(bucket_count(-MINUTE_US, -1, MINUTE_US), 1);
    }

    #[test]
    fn the_day_ends_with_the_last_full_minute() {
        // 2023-11-14T22:13:20.654321Z: the day ends at 22:12:59.
        let now = 1_700_000_000 * SECOND_US + 654_321;
        let (first, last) = day_range(now);
        assert_eq!(last, (1_700_000_000 - 21) * SECOND_US);
        assert_eq!((last - first) / SECOND_US + 1, DAY_READINGS);
        assert_eq!(first % MINUTE_US, 0);
        assert_eq!(bucket_count(first, last, MINUTE_US), 1440);
        // On a whole minute: the minute just begun is left out.
        let (_, last) = day_range(1_699_999_980 * SECOND_US);
        assert_eq!(last, 1_699_999_979 * SECOND_US);
    }

    #[test]
    fn bucket_query_names_the_day() {
        let sql = buckets_sql(0, 59 * SECOND_US);
        assert!(sql.contains("WHERE tag = 'bench/day'"), "{sql}");
        assert!(sql.contains("ts >= '1970-01-01T00:00:00.000000Z'"), "{sql}");
        assert!(sql.contains("ts <= '1970-01-01T00:00:59.000000Z'"), "{sql}");
        assert!(sql.contains("GROUP BY bucket"), "{sql}");
    }

    #[test]
    fn summary_line_has_the_agreed_shape() {
        assert_eq!(
            summary_line(0.234, 0.871, 23.44, 1440, 61.06),
            "query: point p50 0.23 ms p99 0.87 ms; 10000 current values 23.4 ms; \
             1440 one-minute buckets 61.1 ms"
        );
    }
}
