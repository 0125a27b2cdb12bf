//! `bench ingest`: ingest throughput and commit latency.
//!
//! Unless told to use an existing cluster (`--external`, or `--endpoints`
//! typed on the command line), it starts its own three nodes
//! ([`super::common::start_target`]).
//!
//! Each run has `--clients` tasks share one [`Client`] (one HTTP/2 connection
//! per node) and send batches of fresh reading ids back to back for
//! `--duration`. A batch's latency is the time from sending it until the
//! cluster acknowledged it, that is, until it was committed on a majority.
//! Throughput is acknowledged readings over the run's wall time, including
//! the last batches that were in flight when the time was up.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bifrost_client::proto::{value::Kind, Quality, Reading, Tag, Value};
use bifrost_client::time::now_us;
use bifrost_client::Client;
use clap::Args;
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::json;
use tokio::task::JoinSet;

use super::common::{
    bench_device, median, percentile_ms, reserve_ts, round1, run_on_target, ClusterArgs, DEVICE,
};
use crate::ctl::data::MAX_BATCH;
use crate::ctl::output::{print_json, print_line, Output};
use crate::ctl::{client_for, Common, Ctx};

#[derive(Args, Debug, Clone)]
pub struct BenchIngestArgs {
    /// Concurrent senders.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Readings per batch (at most 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    pub batch: u32,
    /// Length of each run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Number of runs; the summary is the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Tags the readings are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=16_000))]
    pub tags: u32,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub common: Common,
}

/// Figures of one run.
#[derive(Debug, Clone, PartialEq)]
struct RunResult {
    readings: u64,
    duplicates: u64,
    batches: usize,
    elapsed: Duration,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub(super) async fn ingest(ctx: &Ctx, args: BenchIngestArgs) -> anyhow::Result<()> {
    run_on_target(ctx, &args.cluster, |endpoints, own| {
        bench(ctx, &args, endpoints, own)
    })
    .await
}

async fn bench(
    ctx: &Ctx,
    args: &BenchIngestArgs,
    endpoints: Vec<String>,
    own: bool,
) -> anyhow::Result<()> {
    let client = client_for(endpoints, ctx.timeout)?;
    let names = Arc::new(setup(&client, args.tags).await?);
    eprintln!(
        "bench: {} clients, batches of {}, {} tags, {} run(s) of {}",
        args.clients,
        args.batch,
        args.tags,
        args.runs,
        humantime::format_duration(args.duration)
    );

    // Ids must be new even against a cluster that saw an earlier benchmark,
    // or the server would acknowledge them as duplicates without storing.
    let nonce: u64 = rand::random();
    let clock = Arc::new(AtomicI64::new(0));
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = one_run(&client, &names, args, run, nonce, &clock).await?;
        let line = format!(
            "run {run}/{}: {} readings in {:.2} s, {:.0} readings/s, p50 {:.1} ms, p99 {:.1} ms ({} batches)",
            args.runs,
            r.readings,
            r.elapsed.as_secs_f64(),
            r.per_s,
            r.p50_ms,
            r.p99_ms,
            r.batches
        );
        match ctx.output {
            Output::Text | Output::Csv => print_line(&line)?,
            Output::Json => eprintln!("bench: {line}"),
        }
        if r.duplicates > 0 {
            eprintln!(
                "bench: warning: {} readings were acknowledged as duplicates",
                r.duplicates
            );
        }
        results.push(r);
    }

    let per_s = median(results.iter().map(|r| r.per_s).collect());
    let p50 = median(results.iter().map(|r| r.p50_ms).collect());
    let p99 = median(results.iter().map(|r| r.p99_ms).collect());
    match ctx.output {
        Output::Text | Output::Csv => print_line(summary_line(per_s, p50, p99))?,
        Output::Json => print_json(&json!({
            "cluster": if own { "own" } else { "external" },
            "clients": args.clients,
            "batch": args.batch,
            "tags": args.tags,
            "duration_s": args.duration.as_secs_f64(),
            "runs": results.iter().map(|r| json!({
                "readings": r.readings,
                "duplicates": r.duplicates,
                "batches": r.batches,
                "elapsed_s": r.elapsed.as_secs_f64(),
                "readings_per_s": r.per_s.round() as u64,
                "p50_ms": round1(r.p50_ms),
                "p99_ms": round1(r.p99_ms),
            })).collect::<Vec<_>>(),
            "readings_per_s": per_s.round() as u64,
            "p50_ms": round1(p50),
            "p99_ms": round1(p99),
        }))?,
    }
    Ok(())
}

/// The benchmark's device (disabled: never polled) and its f64 tags.
async fn setup(client: &Client, tags: u32) -> anyhow::Result<Vec<String>> {
    let device = bench_device();
    client
        .put_device(device, false)
        .await
        .context("creating the bench device")?;
    let names: Vec<String> = (0..tags).map(|i| format!("{DEVICE}/t{i:05}")).collect();
    stream::iter(names.iter().enumerate().map(|(i, name)| {
        let tag = Tag {
            name: name.clone(),
            device: DEVICE.into(),
            // f64 takes four registers.
            address: format!("holding:{}", i * 4),
            data_type: "f64".into(),
            ..Default::default()
        };
        let client = client.clone();
        async move { client.put_tag(tag, false).await }
    }))
    .buffer_unordered(8)
    .try_collect::<Vec<_>>()
    .await
    .context("creating the bench tags")?;
    eprintln!("bench: device {DEVICE:?} and {tags} tags ready");
    Ok(names)
}

async fn one_run(
    client: &Client,
    names: &Arc<Vec<String>>,
    args: &BenchIngestArgs,
    run: u32,
    nonce: u64,
    clock: &Arc<AtomicI64>,
) -> anyhow::Result<RunResult> {
    let started = Instant::now();
    let stop_at = started + args.duration;
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for sender in 0..args.clients {
        let (client, names, acked, clock) =
            (client.clone(), names.clone(), acked.clone(), clock.clone());
        let batch = args.batch;
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut duplicates = 0u64;
            let mut seq = 0u64;
            while Instant::now() < stop_at {
                let readings = make_batch(&names, batch, &clock, |n| {
                    format!("{nonce:016x}-{run}-{sender}-{}", seq + n)
                });
                seq += u64::from(batch);
                let sent = Instant::now();
                let resp = client.ingest(readings).await?;
                latencies.push(sent.elapsed());
                acked.fetch_add(resp.stored + resp.duplicates, Ordering::Relaxed);
                duplicates += resp.duplicates;
            }
            Ok::<_, bifrost_client::Error>((latencies, duplicates))
        });
    }

    let mut latencies = Vec::new();
    let mut duplicates = 0;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(r) => {
                    let (l, d) = r.context("bench sender task")?.context("ingest")?;
                    latencies.extend(l);
                    duplicates += d;
                }
            },
            _ = tick.tick() => eprintln!(
                "bench: run {run}: {:.0}s, {} readings acknowledged",
                started.elapsed().as_secs_f64(),
                acked.load(Ordering::Relaxed)
            ),
        }
    }
    let elapsed = started.elapsed();
    let readings = acked.load(Ordering::Relaxed);
    latencies.sort();
    Ok(RunResult {
        readings,
        duplicates,
        batches: latencies.len(),
        elapsed,
        per_s: readings as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
    })
}

/// A batch with ids from `id(n)`, tags round-robin, and timestamps unique
/// across the whole benchmark (so no two readings of a tag share one).
fn make_batch(
    names: &[String],
    batch: u32,
    clock: &AtomicI64,
    id: impl Fn(u64) -> String,
) -> Vec<Reading> {
    let base = reserve_ts(clock, i64::from(batch), now_us());
    (0..u64::from(batch))
        .map(|n| {
            let ts_us = base + n as i64;
            Reading {
                id: id(n),
                tag: names[(ts_us as u64 % names.len() as u64) as usize].clone(),
                ts_us,
                value: Some(Value {
                    kind: Some(Kind::FloatValue((ts_us % 1000) as f64 / 10.0)),
                }),
                quality: Some(Quality::default()),
                server_ts_us: 0,
                revision: 0,
            }
        })
        .collect()
}

fn summary_line(per_s: f64, p50_ms: f64, p99_ms: f64) -> String {
    format!(
        "ingest: {} readings/s p50 {p50_ms:.1} ms p99 {p99_ms:.1} ms",
        per_s.round() as u64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_has_the_agreed_shape() {
        assert_eq!(
            summary_line(81234.6, 12.34, 40.06),
            "ingest: 81235 readings/s p50 12.3 ms p99 40.1 ms"
        );
    }

    #[test]
    fn batches_have_unique_ids_and_spread_over_tags() {
        let names: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
        let clock = AtomicI64::new(0);
        let b = make_batch(&names, 6, &clock, |n| format!("x-{n}"));
        assert_eq!(b.len(), 6);
        let ids: std::collections::HashSet<_> = b.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), 6);
        for t in &names {
            assert_eq!(b.iter().filter(|r| &r.tag == t).count(), 2, "{t}");
        }
        assert!(b.windows(2).all(|w| w[1].ts_us == w[0].ts_us + 1));
    }
}
