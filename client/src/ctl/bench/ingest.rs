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
//!
//! The **shape** of the load is `--clients` x `--batch` readings over
//! `--tags` tags, each batch holding `--tags-per-batch` of them (all of them
//! by default: readings round-robin over every tag, like a gateway
//! forwarding a whole plant). `--tags-per-batch 1` is the other shape issue
//! 11 asks for: every batch is one tag's readings (a backfill or one busy
//! signal), so a batch lands in one tag's history. Batch `b` (numbered
//! across all senders) takes the tags following batch `b - 1`'s, wrapping
//! around, so every tag gets its turn.
//!
//! Each run prints a line; the last line is the summary, the median over
//! runs: `ingest: R readings/s p50 X ms p99 Y ms (C clients x B readings,
//! T tags per batch)`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bifrost_client::proto::{value::Kind, Quality, Reading, Tag, Value};
use bifrost_client::time::now_us;
use bifrost_client::Client;
use clap::Args;
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::json;
use tokio::task::JoinSet;

use super::common::{
    bench_device, median, percentile_ms, reserve_ts, round1, run_on_target, target_client,
    ClusterArgs, Own, DEVICE,
};
use crate::ctl::data::MAX_BATCH;
use crate::ctl::output::{print_json, print_line, Output};
use crate::ctl::{Common, Ctx};

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
    /// Tags in each batch (1: every batch is one tag's readings) [default:
    /// all of --tags].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16_000))]
    pub tags_per_batch: Option<u32>,
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
    if args.tags_per_batch.is_some_and(|k| k > args.tags) {
        bail!(
            "--tags-per-batch {} is more than --tags {}",
            args.tags_per_batch.unwrap_or_default(),
            args.tags
        );
    }
    run_on_target(ctx, &args.cluster, |endpoints, own| {
        bench(ctx, &args, endpoints, own)
    })
    .await
}

async fn bench(
    ctx: &Ctx,
    args: &BenchIngestArgs,
    endpoints: Vec<String>,
    own: Option<Own>,
) -> anyhow::Result<()> {
    let client = target_client(ctx, endpoints, own.as_ref())?;
    let names = Arc::new(setup(&client, args.tags).await?);
    eprintln!(
        "bench: {} (of {} tags), {} run(s) of {}",
        shape(args),
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
        Output::Text | Output::Csv => print_line(summary_line(per_s, p50, p99, &shape(args)))?,
        Output::Json => print_json(&json!({
            "cluster": if own.is_some() { "own" } else { "external" },
            "tls": args.cluster.tls,
            "clients": args.clients,
            "batch": args.batch,
            "tags": args.tags,
            "tags_per_batch": tags_per_batch(args),
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
        let (batch, clients, per_batch) = (args.batch, args.clients, tags_per_batch(args));
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut duplicates = 0u64;
            let mut seq = 0u64;
            // Batch numbers across all senders: this sender's j-th is
            // j * clients + sender.
            let mut b = u64::from(sender);
            while Instant::now() < stop_at {
                let tags = batch_tags(b, per_batch, names.len());
                let readings = make_batch(&names, &tags, batch, &clock, |n| {
                    format!("{nonce:016x}-{run}-{sender}-{}", seq + n)
                });
                seq += u64::from(batch);
                b += u64::from(clients);
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

fn tags_per_batch(args: &BenchIngestArgs) -> u32 {
    args.tags_per_batch.unwrap_or(args.tags)
}

/// `C clients x B readings, T tags per batch`.
fn shape(args: &BenchIngestArgs) -> String {
    let k = tags_per_batch(args);
    format!(
        "{} clients x {} readings, {k} {} per batch{}",
        args.clients,
        args.batch,
        if k == 1 { "tag" } else { "tags" },
        if args.cluster.tls { ", TLS" } else { "" }
    )
}

/// The tags (indices of the names) of batch `b`: `per_batch` of the
/// `tags`, consecutive and wrapping around, right after batch `b - 1`'s.
fn batch_tags(b: u64, per_batch: u32, tags: usize) -> Vec<usize> {
    let tags = tags as u64;
    let start = b * u64::from(per_batch) % tags;
    (0..u64::from(per_batch))
        .map(|i| ((start + i) % tags) as usize)
        .collect()
}

/// A batch with ids from `id(n)`, round-robin over `tags` (indices of the
/// names), and timestamps unique across the whole benchmark (so no two
/// readings of a tag share one).
fn make_batch(
    names: &[String],
    tags: &[usize],
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
                tag: names[tags[n as usize % tags.len()]].clone(),
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

/// `ingest: R readings/s p50 X ms p99 Y ms (SHAPE)`.
fn summary_line(per_s: f64, p50_ms: f64, p99_ms: f64, shape: &str) -> String {
    format!(
        "ingest: {} readings/s p50 {p50_ms:.1} ms p99 {p99_ms:.1} ms ({shape})",
        per_s.round() as u64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> BenchIngestArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: BenchIngestArgs,
        }
        let argv = std::iter::once("bench").chain(extra.iter().copied());
        <Cli as clap::Parser>::parse_from(argv).args
    }

    #[test]
    fn summary_line_has_the_agreed_shape() {
        assert_eq!(
            summary_line(81234.6, 12.34, 40.06, &shape(&args(&[]))),
            "ingest: 81235 readings/s p50 12.3 ms p99 40.1 ms (16 clients x 1000 readings, 100 tags per batch)"
        );
        assert_eq!(
            shape(&args(&["--tags-per-batch", "1"])),
            "16 clients x 1000 readings, 1 tag per batch"
        );
        assert_eq!(
            shape(&args(&["--clients", "4", "--batch", "10", "--tags", "3"])),
            "4 clients x 10 readings, 3 tags per batch"
        );
    }

    #[test]
    fn batches_take_their_tags_in_turn() {
        // One tag per batch: batch b is tag b, around the tags.
        let one: Vec<Vec<usize>> = (0..5).map(|b| batch_tags(b, 1, 3)).collect();
        assert_eq!(one, [[0], [1], [2], [0], [1]]);
        // Two of five: consecutive, wrapping, after the previous batch's.
        assert_eq!(batch_tags(0, 2, 5), [0, 1]);
        assert_eq!(batch_tags(2, 2, 5), [4, 0]);
        // All tags: every batch has every tag.
        assert!((0..4).all(|b| batch_tags(b, 5, 5).len() == 5));
        assert_eq!(batch_tags(1, 5, 5), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn one_tag_batches_hold_one_tag() {
        let names: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
        let clock = AtomicI64::new(0);
        let b = make_batch(&names, &[2], 4, &clock, |n| format!("x-{n}"));
        assert!(b.iter().all(|r| r.tag == "t2"));
        assert!(b.windows(2).all(|w| w[1].ts_us > w[0].ts_us));
    }

    #[test]
    fn batches_have_unique_ids_and_spread_over_tags() {
        let names: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
        let clock = AtomicI64::new(0);
        let b = make_batch(&names, &[0, 1, 2], 6, &clock, |n| format!("x-{n}"));
        assert_eq!(b.len(), 6);
        let ids: std::collections::HashSet<_> = b.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), 6);
        for t in &names {
            assert_eq!(b.iter().filter(|r| &r.tag == t).count(), 2, "{t}");
        }
        assert!(b.windows(2).all(|w| w[1].ts_us == w[0].ts_us + 1));
    }
}
