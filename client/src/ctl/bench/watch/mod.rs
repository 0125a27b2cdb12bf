//! `bench watch`: subscription delivery under paced ingest.
//!
//! Like `bench ingest`, it starts its own three-node cluster (killed however
//! the benchmark ends) unless told to use an existing one (`--external`, or
//! `--endpoints` typed on the command line). It imports a disabled device
//! `bench` with `--subscribers` x 10 f64 tags `bench/s{i}/t{j}` (`j` in
//! 0..10) in one `Import`. Then, once, unless `--no-resume`, it measures the
//! time for one subscriber to **resume one hour back** ([`resume`]: an hour
//! of history of every tag, one reading per tag every `--resume-period`,
//! and subscriber 0 catching up on it from the revision before). Each run
//! then:
//!
//! 1. starts the subscribers: subscriber `i` is its own
//!    [`bifrost_client::Watcher`] of the pattern `bench/s{i}/*` (progress
//!    every 200 ms), served by node `i % 3`:
//!    there is one client per node, whose endpoint list starts with that
//!    node (subscriptions go to the first node of a client's list). Ingest
//!    begins only once every subscriber has seen its `Started` event, so
//!    each one is owed every reading of its tags that the run commits.
//! 2. ingests `--rate` x `--duration` readings, paced: batch `k` of 1,000 is
//!    due `k x 1000 / rate` seconds after the start ([`Plan`]), and
//!    `--senders` tasks take the batches in turn, each sleeping until its
//!    next one is due (a sender that fell behind sends at once). Reading
//!    number `n` of the run goes to subscriber `n % subscribers`, tag
//!    `(n / subscribers) % 10`, so every batch feeds every subscriber alike.
//!    The achieved ingest rate is the readings acknowledged over the time
//!    from the start to the last acknowledgement, or over `--duration` if
//!    that is longer (the schedule spans the whole duration: the last batch
//!    is due one batch interval before its end).
//! 3. waits until every subscriber's watcher has passed the highest revision
//!    the ingest was given (every matching reading up to a revision has been
//!    delivered once the watcher reports it), for at most
//!    `--settle-timeout`; then checks that each subscriber received exactly
//!    as many readings as were acknowledged for its tags, no revision twice
//!    and no reading of another tag. Any shortfall or excess is an error.
//!
//! **Delivery latency** is measured per reading received: the subscriber's
//! wall clock when the watcher hands over the message, minus the message's
//! `applied_us`, the wall clock of the serving node when it applied the
//! committed batch (both are the same machine's clock here; on an external
//! cluster they are different machines' clocks, so the figure is only as
//! good as their synchronisation). So it is **commit on the serving node to
//! the client**: the node's fan-out to its subscriptions, the gRPC stream and
//! the client's decoding and scheduling; it does not include the ingest's
//! own path to the commit (that is what `bench ingest` measures), nor a
//! follower's lag behind the leader. Readings read back from storage during
//! a catch-up (after a reconnect or a lagging broadcast) carry no
//! `applied_us` and are counted apart, not in the latency figures.
//!
//! Delivered readings/s is every reading the subscribers received over the
//! time from the start of the ingest to the last one received (at least
//! `--duration`). The summary line holds the median over runs of the
//! achieved ingest rate and of each run's p50 and p99, and the resume
//! phase's time: `watch: S subscribers, R readings/s ingested, delivery p50
//! X ms p99 Y ms, resume 1h back in Z s (N of M readings)` (N: the readings
//! the resumed subscriber received, M: all readings committed after the
//! revision it resumed from).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bifrost_client::proto::{Reading, WatchRequest};
use bifrost_client::time::now_us;
use bifrost_client::{Client, WatchEvent};
use clap::Args;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

mod resume;

use super::common::{
    bench_tag, f64_reading, import_bench_tags, ingest_acknowledged, median, percentile_ms,
    reserve_ts, round1, run_on_target, target_client, ClusterArgs, Own, DEVICE,
};
use crate::ctl::output::{print_json, print_line, Output};
use crate::ctl::{Common, Ctx};
use resume::History;

/// Readings per ingest batch.
const BATCH: u64 = 1_000;
/// Tags per subscriber.
const TAGS_PER_SUBSCRIBER: u64 = 10;
/// Progress interval asked of the nodes: how soon an idle subscriber learns
/// that the ingest's last revision has passed.
const PROGRESS_MS: u64 = 200;
/// How long the subscribers may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug, Clone)]
pub struct BenchWatchArgs {
    /// Subscribers, each watching its own 10 tags.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub subscribers: u32,
    /// Readings per second to ingest (paced, in batches of 1000).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub rate: u64,
    /// How long each run ingests.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Number of runs; the summary is the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Concurrent ingest tasks taking the scheduled batches in turn.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub senders: u32,
    /// How long the subscribers may take, after the last batch was
    /// acknowledged, to receive everything (and the resumed subscriber to
    /// catch up).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub settle_timeout: Duration,
    /// How far back the resumed subscriber starts: the span of the history
    /// written before it resumes.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub resume_span: Duration,
    /// One reading per tag every this long in that history.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub resume_period: Duration,
    /// Skip the resume phase.
    #[arg(long)]
    pub no_resume: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub common: Common,
}

/// The ingest schedule of a run: `total` readings in batches of `batch`,
/// batch `k` due `k * batch / rate` seconds after the start, so readings
/// leave at `rate` on average.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Plan {
    total: u64,
    batch: u64,
    rate: u64,
}

impl Plan {
    fn new(rate: u64, duration: Duration, batch: u64) -> Plan {
        Plan {
            total: (rate as f64 * duration.as_secs_f64()).round() as u64,
            batch,
            rate,
        }
    }

    fn batches(&self) -> u64 {
        self.total.div_ceil(self.batch)
    }

    /// Readings in batch `k` (the last one may be short).
    fn size(&self, k: u64) -> u64 {
        self.batch.min(self.total.saturating_sub(k * self.batch))
    }

    /// When batch `k` is due, after the start.
    fn due(&self, k: u64) -> Duration {
        let nanos = u128::from(k * self.batch) * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(nanos as u64)
    }
}

/// Subscriber and tag (0..10) of reading number `seq` of a run.
fn route(seq: u64, subscribers: u64) -> (usize, usize) {
    (
        (seq % subscribers) as usize,
        ((seq / subscribers) % TAGS_PER_SUBSCRIBER) as usize,
    )
}

fn tag_name(sub: usize, tag: usize) -> String {
    format!("{}t{tag}", prefix(sub))
}

/// What the names of subscriber `sub`'s tags start with.
fn prefix(sub: usize) -> String {
    format!("{DEVICE}/s{sub}/")
}

/// `endpoints` rotated to start at `first`.
fn rotated(endpoints: &[String], first: usize) -> Vec<String> {
    let mut v = endpoints[first..].to_vec();
    v.extend_from_slice(&endpoints[..first]);
    v
}

/// What a subscriber has seen so far, for progress and shortfall messages.
#[derive(Default)]
struct Live {
    received: AtomicU64,
    revision: AtomicU64,
}

/// What one subscriber saw in a run.
struct SubResult {
    received: u64,
    duplicates: u64,
    foreign: u64,
    /// Readings replayed from storage (no `applied_us`).
    catch_up: u64,
    latencies_us: Vec<u32>,
    last_at: Option<Instant>,
    reconnects: u64,
}

/// What the senders did in a run.
#[derive(Default)]
struct Ingested {
    acked: u64,
    duplicates: u64,
    /// Readings acknowledged per subscriber.
    expected: Vec<u64>,
    max_revision: u64,
    last_ack: Option<Instant>,
    max_lag: Duration,
}

/// Figures of one run.
#[derive(Debug, Clone, PartialEq)]
struct RunResult {
    ingested: u64,
    ingest_s: f64,
    ingest_per_s: f64,
    max_lag_ms: f64,
    delivered: u64,
    deliver_s: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    catch_up: u64,
    reconnects: u64,
    per_node: BTreeMap<u64, u32>,
}

pub async fn watch(ctx: &Ctx, args: BenchWatchArgs) -> anyhow::Result<()> {
    if Plan::new(args.rate, args.duration, BATCH).total == 0 {
        bail!("--rate x --duration must be at least one reading");
    }
    let tags = u64::from(args.subscribers) * TAGS_PER_SUBSCRIBER;
    if !args.no_resume && History::new(args.resume_span, args.resume_period, tags).is_none() {
        bail!("--resume-period must be more than 0 and at most --resume-span");
    }
    if args.cluster.tls {
        bail!("bench watch: --tls is not supported (its subscribers use plain WebSocket)");
    }
    run_on_target(ctx, &args.cluster, |endpoints, own| {
        bench(ctx, &args, endpoints, own)
    })
    .await
}

/// `own`: the HTTP addresses of the nodes of the benchmark's own cluster.
async fn bench(
    ctx: &Ctx,
    args: &BenchWatchArgs,
    endpoints: Vec<String>,
    own: Option<Own>,
) -> anyhow::Result<()> {
    let ingest = target_client(ctx, endpoints.clone(), own.as_ref())?;
    let subs = args.subscribers as usize;
    let names: Vec<String> = (0..subs)
        .flat_map(|i| (0..TAGS_PER_SUBSCRIBER as usize).map(move |j| tag_name(i, j)))
        .collect();
    let started = Instant::now();
    let tags = names
        .iter()
        .enumerate()
        .map(|(slot, n)| bench_tag(n.clone(), slot))
        .collect();
    import_bench_tags(&ingest, tags, started).await?;
    let names = Arc::new(names);
    // Subscribers of node k use client k: only subscriptions go through it,
    // and they go to the first node of its list.
    let sub_clients = (0..endpoints.len())
        .map(|k| target_client(ctx, rotated(&endpoints, k), own.as_ref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!(
        "bench: {subs} subscribers over {} node(s), {} readings/s in batches of {BATCH} from {} senders, {} run(s) of {}",
        endpoints.len(),
        args.rate,
        args.senders,
        args.runs,
        humantime::format_duration(args.duration)
    );

    // Ids must be new even on a cluster that saw an earlier benchmark.
    let nonce: u64 = rand::random();
    let resumed = if args.no_resume {
        None
    } else {
        let r = resume::resume(
            args,
            &ingest,
            &sub_clients,
            &names,
            own.as_ref().map(|o| o.http.as_slice()),
            nonce,
        )
        .await?;
        match ctx.output {
            Output::Text | Output::Csv => print_line(r.text(args.resume_period))?,
            Output::Json => eprintln!("bench: {}", r.text(args.resume_period)),
        }
        Some(r)
    };
    let clock = Arc::new(AtomicI64::new(0));
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = one_run(args, &ingest, &sub_clients, &names, run, nonce, &clock).await?;
        let line = format!("run {run}/{}: {}", args.runs, run_text(&r, args));
        match ctx.output {
            Output::Text | Output::Csv => print_line(&line)?,
            Output::Json => eprintln!("bench: {line}"),
        }
        results.push(r);
    }

    let med = |f: fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let (per_s, p50, p99) = (
        med(|r| r.ingest_per_s),
        med(|r| r.p50_ms),
        med(|r| r.p99_ms),
    );
    if p99 >= 50.0 {
        eprintln!("bench: goal missed: delivery p99 {p99:.1} ms (goal < 50 ms)");
    }
    match ctx.output {
        Output::Text | Output::Csv => print_line(summary_line(
            args.subscribers,
            per_s,
            p50,
            p99,
            resumed.as_ref(),
        ))?,
        Output::Json => print_json(&json!({
            "cluster": if own.is_some() { "own" } else { "external" },
            "subscribers": args.subscribers,
            "rate": args.rate,
            "batch": BATCH,
            "senders": args.senders,
            "duration_s": args.duration.as_secs_f64(),
            "runs": results.iter().map(|r| json!({
                "ingested": r.ingested,
                "ingest_s": r.ingest_s,
                "ingest_per_s": r.ingest_per_s.round() as u64,
                "max_send_lag_ms": round1(r.max_lag_ms),
                "delivered": r.delivered,
                "deliver_s": r.deliver_s,
                "delivered_per_s": r.delivered_per_s.round() as u64,
                "p50_ms": round1(r.p50_ms),
                "p99_ms": round1(r.p99_ms),
                "max_ms": round1(r.max_ms),
                "catch_up_readings": r.catch_up,
                "reconnects": r.reconnects,
                "subscribers_per_node": r.per_node.iter()
                    .map(|(n, c)| (n.to_string(), json!(c)))
                    .collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "ingest_per_s": per_s.round() as u64,
            "p50_ms": round1(p50),
            "p99_ms": round1(p99),
            "resume": resumed.as_ref().map(|r| r.json()),
        }))?,
    }
    Ok(())
}

fn run_text(r: &RunResult, args: &BenchWatchArgs) -> String {
    let mut s = format!(
        "ingested {} readings in {:.2} s ({:.0}/s, target {}); delivered {} to {} subscribers in {:.2} s ({:.0}/s); \
         delivery p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        r.ingested,
        r.ingest_s,
        r.ingest_per_s,
        args.rate,
        r.delivered,
        args.subscribers,
        r.deliver_s,
        r.delivered_per_s,
        r.p50_ms,
        r.p99_ms,
        r.max_ms
    );
    if r.catch_up > 0 || r.reconnects > 0 {
        s += &format!(
            " ({} readings from catch-up, {} reconnects)",
            r.catch_up, r.reconnects
        );
    }
    s
}

/// `watch: S subscribers, R readings/s ingested, delivery p50 X ms p99 Y
/// ms`, then `, resume 1h back in X s (N of M readings)` unless skipped.
fn summary_line(
    subscribers: u32,
    per_s: f64,
    p50: f64,
    p99: f64,
    resumed: Option<&resume::Resume>,
) -> String {
    let mut s = format!(
        "watch: {subscribers} subscribers, {} readings/s ingested, delivery p50 {p50:.1} ms p99 {p99:.1} ms",
        per_s.round() as u64
    );
    if let Some(r) = resumed {
        s += &format!(", {}", r.summary());
    }
    s
}

async fn one_run(
    args: &BenchWatchArgs,
    ingest: &Client,
    sub_clients: &[Client],
    names: &Arc<Vec<String>>,
    run: u32,
    nonce: u64,
    clock: &Arc<AtomicI64>,
) -> anyhow::Result<RunResult> {
    let subs = args.subscribers as usize;
    let target = Arc::new(AtomicU64::new(0));
    let live: Arc<Vec<Live>> = Arc::new((0..subs).map(|_| Live::default()).collect());

    // 1. Subscribers, all started before the first reading is sent.
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<u64>();
    let mut tasks = JoinSet::new();
    for i in 0..subs {
        let client = sub_clients[i % sub_clients.len()].clone();
        let (ready, target, live) = (ready_tx.clone(), target.clone(), live.clone());
        tasks.spawn(async move { (i, subscriber(client, i, ready, target, live).await) });
    }
    drop(ready_tx);
    let mut per_node: BTreeMap<u64, u32> = BTreeMap::new();
    let start_by = tokio::time::Instant::now() + START_TIMEOUT;
    let mut ready = 0;
    while ready < subs {
        tokio::select! {
            node = ready_rx.recv() => match node {
                Some(node) => {
                    *per_node.entry(node).or_default() += 1;
                    ready += 1;
                }
                None => bail!("the subscribers ended before they started"),
            },
            Some(joined) = tasks.join_next() => {
                let (i, r) = joined.context("subscriber task")?;
                r.with_context(|| format!("subscriber {i}"))?;
                bail!("subscriber {i} ended before the ingest began");
            }
            _ = tokio::time::sleep_until(start_by) => bail!(
                "only {ready} of {subs} subscribers started within {START_TIMEOUT:?}"
            ),
        }
    }
    eprintln!(
        "bench: run {run}: {subs} subscribers started ({})",
        per_node
            .iter()
            .map(|(n, c)| format!("node {n}: {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 2. Paced ingest.
    let plan = Plan::new(args.rate, args.duration, BATCH);
    let started = Instant::now();
    let acked = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    for s in 0..u64::from(args.senders) {
        let (client, names, clock, acked) =
            (ingest.clone(), names.clone(), clock.clone(), acked.clone());
        let step = u64::from(args.senders);
        senders.spawn(async move {
            let mut out = Ingested {
                expected: vec![0; subs],
                ..Default::default()
            };
            let mut k = s;
            while k < plan.batches() {
                let due = started + plan.due(k);
                tokio::time::sleep_until(due.into()).await;
                out.max_lag = out.max_lag.max(due.elapsed());
                let (first, size) = (k * plan.batch, plan.size(k));
                let base = reserve_ts(&clock, size as i64, now_us());
                let mut counts = vec![0u64; subs];
                let readings: Vec<Reading> = (0..size)
                    .map(|n| {
                        let seq = first + n;
                        let (sub, tag) = route(seq, subs as u64);
                        counts[sub] += 1;
                        f64_reading(
                            format!("{nonce:016x}-w{run}-{seq}"),
                            names[sub * TAGS_PER_SUBSCRIBER as usize + tag].clone(),
                            base + n as i64,
                            (seq % 1000) as f64 / 10.0,
                        )
                    })
                    .collect();
                let resp = ingest_acknowledged(&client, readings, &format!("batch {k}")).await?;
                out.last_ack = Some(Instant::now());
                acked.fetch_add(size, Ordering::Relaxed);
                out.acked += size;
                out.duplicates += resp.duplicates;
                out.max_revision = out.max_revision.max(resp.last_revision);
                for (e, c) in out.expected.iter_mut().zip(counts) {
                    *e += c;
                }
                k += step;
            }
            Ok::<_, anyhow::Error>(out)
        });
    }
    let mut ing = Ingested {
        expected: vec![0; subs],
        ..Default::default()
    };
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            joined = senders.join_next() => match joined {
                None => break,
                Some(r) => {
                    let o = r.context("ingest task")??;
                    ing.acked += o.acked;
                    ing.duplicates += o.duplicates;
                    ing.max_revision = ing.max_revision.max(o.max_revision);
                    ing.last_ack = ing.last_ack.max(o.last_ack);
                    ing.max_lag = ing.max_lag.max(o.max_lag);
                    for (e, c) in ing.expected.iter_mut().zip(o.expected) {
                        *e += c;
                    }
                }
            },
            _ = tick.tick() => eprintln!(
                "bench: run {run}: {:.0}s, {} readings acknowledged, {} delivered",
                started.elapsed().as_secs_f64(),
                acked.load(Ordering::Relaxed),
                live.iter().map(|l| l.received.load(Ordering::Relaxed)).sum::<u64>()
            ),
        }
    }
    // The schedule spans the whole duration (the last batch stands for its
    // last 1000/rate seconds): finishing early is not a higher rate.
    let ingest_s = ing
        .last_ack
        .map_or(0.0, |t| (t - started).as_secs_f64())
        .max(args.duration.as_secs_f64());
    if ing.duplicates > 0 {
        eprintln!(
            "bench: warning: {} readings were acknowledged as duplicates (a retried batch)",
            ing.duplicates
        );
    }

    // 3. Everything up to the last revision delivered, or a shortfall.
    let status_revision = ingest.status().await.map_or(0, |s| s.revision);
    let last_revision = ing.max_revision.max(status_revision).max(1);
    target.store(last_revision, Ordering::SeqCst);
    let settle_by = tokio::time::Instant::now() + args.settle_timeout;
    let mut done: Vec<Option<SubResult>> = (0..subs).map(|_| None).collect();
    let mut finished = 0;
    while finished < subs {
        tokio::select! {
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let (i, r) = joined.context("subscriber task")?;
                done[i] = Some(r.with_context(|| format!("run {run}: subscriber {i}"))?);
                finished += 1;
            }
            _ = tokio::time::sleep_until(settle_by) => {
                tasks.abort_all();
                let late: Vec<String> = (0..subs)
                    .filter(|&i| done[i].is_none())
                    .map(|i| format!(
                        "subscriber {i}: {} of {} readings, at revision {}",
                        live[i].received.load(Ordering::Relaxed),
                        ing.expected[i],
                        live[i].revision.load(Ordering::Relaxed)
                    ))
                    .collect();
                bail!(
                    "run {run}: {} of {subs} subscribers had not reached revision {last_revision} \
                     {} after the last acknowledgement:\n  {}",
                    late.len(),
                    humantime::format_duration(args.settle_timeout),
                    first_lines(&late)
                );
            }
        }
    }

    let results = done
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.ok_or_else(|| anyhow!("run {run}: subscriber {i} vanished")))
        .collect::<anyhow::Result<Vec<SubResult>>>()?;
    let mut problems = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let want = ing.expected[i];
        if r.received != want {
            problems.push(format!(
                "subscriber {i}: received {} readings, {want} were ingested for its tags",
                r.received
            ));
        }
        if r.duplicates > 0 {
            problems.push(format!(
                "subscriber {i}: {} readings with a revision it had already received",
                r.duplicates
            ));
        }
        if r.foreign > 0 {
            problems.push(format!(
                "subscriber {i}: {} readings of tags it did not watch",
                r.foreign
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "run {run}: the subscribers did not receive exactly the readings ingested:\n  {}",
            first_lines(&problems)
        );
    }

    let delivered: u64 = results.iter().map(|r| r.received).sum();
    let last_at = results.iter().filter_map(|r| r.last_at).max();
    let deliver_s = last_at
        .map_or(0.0, |t| (t - started).as_secs_f64())
        .max(args.duration.as_secs_f64());
    let mut latencies: Vec<Duration> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter())
        .map(|&us| Duration::from_micros(u64::from(us)))
        .collect();
    latencies.sort_unstable();
    Ok(RunResult {
        ingested: ing.acked,
        ingest_s,
        ingest_per_s: per_s(ing.acked, ingest_s),
        max_lag_ms: ing.max_lag.as_secs_f64() * 1000.0,
        delivered,
        deliver_s,
        delivered_per_s: per_s(delivered, deliver_s),
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        catch_up: results.iter().map(|r| r.catch_up).sum(),
        reconnects: results.iter().map(|r| r.reconnects).sum(),
        per_node,
    })
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// The first ten lines, and how many more there are.
fn first_lines(lines: &[String]) -> String {
    let mut s = lines
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n  ");
    if lines.len() > 10 {
        s += &format!("\n  ... and {} more", lines.len() - 10);
    }
    s
}

/// Subscriber `i`: reports the serving node on `ready` once started, then
/// records what it receives until its watcher has passed `target` (0: not
/// known yet).
async fn subscriber(
    client: Client,
    i: usize,
    ready: mpsc::UnboundedSender<u64>,
    target: Arc<AtomicU64>,
    live: Arc<Vec<Live>>,
) -> anyhow::Result<SubResult> {
    let mut w = client.watcher(WatchRequest {
        tags: Vec::new(),
        patterns: vec![format!("{}*", prefix(i))],
        from_revision: None,
        progress_ms: PROGRESS_MS,
    });
    let node = match w.next().await? {
        WatchEvent::Started { node_id, .. } => node_id,
        other => return Err(anyhow!("expected Started first, got {other:?}")),
    };
    let _ = ready.send(node);
    let prefix = prefix(i);
    let mut revisions = Vec::new();
    let mut r = SubResult {
        received: 0,
        duplicates: 0,
        foreign: 0,
        catch_up: 0,
        latencies_us: Vec::new(),
        last_at: None,
        reconnects: 0,
    };
    let me = &live[i];
    loop {
        let ev = w.next().await?;
        let (now, at) = (now_us(), Instant::now());
        if let WatchEvent::Readings {
            readings,
            applied_us,
            ..
        } = &ev
        {
            let n = readings.len() as u64;
            revisions.extend(readings.iter().map(|x| x.revision));
            r.foreign += readings
                .iter()
                .filter(|x| !x.tag.starts_with(&prefix))
                .count() as u64;
            if *applied_us > 0 {
                let us = (now - applied_us).clamp(0, i64::from(u32::MAX)) as u32;
                r.latencies_us
                    .extend(std::iter::repeat_n(us, readings.len()));
            } else {
                r.catch_up += n;
            }
            r.received += n;
            r.last_at = Some(at);
            me.received.fetch_add(n, Ordering::Relaxed);
        }
        let at_revision = w.last_revision().unwrap_or(0);
        me.revision.store(at_revision, Ordering::Relaxed);
        let t = target.load(Ordering::SeqCst);
        if t != 0 && at_revision >= t {
            break;
        }
    }
    r.duplicates = duplicates(&mut revisions);
    r.reconnects = w.reconnects();
    Ok(r)
}

/// How many entries repeat an earlier one (sorts `v`).
fn duplicates(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.windows(2).filter(|w| w[0] == w[1]).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_paces_batches_at_the_rate() {
        let p = Plan::new(50_000, Duration::from_secs(10), 1000);
        assert_eq!(p.total, 500_000);
        assert_eq!(p.batches(), 500);
        assert_eq!(p.due(0), Duration::ZERO);
        assert_eq!(p.due(1), Duration::from_millis(20));
        assert_eq!(p.due(499), Duration::from_millis(9_980));
        assert!((0..500).all(|k| p.size(k) == 1000));
    }

    #[test]
    fn plan_with_a_short_last_batch_and_a_slow_rate() {
        let p = Plan::new(2_500, Duration::from_secs(1), 1000);
        assert_eq!(p.batches(), 3);
        assert_eq!((p.size(0), p.size(1), p.size(2)), (1000, 1000, 500));
        assert_eq!(p.size(3), 0);
        assert_eq!(p.due(2), Duration::from_millis(800));
        // Below one batch per second: the batches are spaced out.
        let p = Plan::new(300, Duration::from_secs(10), 1000);
        assert_eq!(p.total, 3000);
        assert_eq!(p.due(1), Duration::from_nanos(3_333_333_333));
        // Fractional durations round to whole readings.
        assert_eq!(Plan::new(3, Duration::from_millis(500), 1000).total, 2);
        assert_eq!(Plan::new(1, Duration::from_millis(100), 1000).total, 0);
    }

    #[test]
    fn batches_feed_every_subscriber_and_every_tag_alike() {
        let subs = 100u64;
        let mut per_sub = vec![0u64; subs as usize];
        let mut per_tag = BTreeMap::new();
        for seq in 0..1000 {
            let (s, t) = route(seq, subs);
            per_sub[s] += 1;
            *per_tag.entry((s, t)).or_insert(0) += 1;
        }
        assert!(per_sub.iter().all(|&n| n == 10));
        assert_eq!(per_tag.len(), 1000, "each (subscriber, tag) once");
        assert_eq!(route(0, 3), (0, 0));
        assert_eq!(route(4, 3), (1, 1));
        assert_eq!(route(29, 3), (2, 9));
        assert_eq!(route(30, 3), (0, 0));
    }

    #[test]
    fn subscriber_clients_start_at_their_node() {
        let e: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(rotated(&e, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&e, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&e, 2), ["c", "a", "b"]);
    }

    #[test]
    fn duplicate_revisions_are_counted() {
        assert_eq!(duplicates(&mut [3, 1, 2]), 0);
        assert_eq!(duplicates(&mut [3, 1, 3, 2, 3]), 2);
        assert_eq!(duplicates(&mut []), 0);
    }

    #[test]
    fn tag_names_match_the_subscribers_pattern() {
        assert_eq!(tag_name(7, 3), "bench/s7/t3");
        assert!(tag_name(7, 3).starts_with(&prefix(7)));
    }

    #[test]
    fn summary_line_has_the_agreed_shape() {
        assert_eq!(
            summary_line(100, 49_998.6, 3.24, 12.06, None),
            "watch: 100 subscribers, 49999 readings/s ingested, delivery p50 3.2 ms p99 12.1 ms"
        );
        let r = resume::Resume {
            span: Duration::from_secs(3600),
            history: 3_600_001,
            ingest_s: 40.0,
            from: 7,
            head: 3_600_008,
            node: 2,
            received: 36_001,
            started_s: 0.01,
            caught_up_s: 0.4567,
        };
        assert_eq!(
            summary_line(100, 49_998.6, 3.24, 12.06, Some(&r)),
            "watch: 100 subscribers, 49999 readings/s ingested, delivery p50 3.2 ms p99 12.1 ms, \
             resume 1h back in 0.46 s (36001 of 3600001 readings)"
        );
    }
}
