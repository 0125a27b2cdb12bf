//! `bench ingest`: ingest throughput and commit latency.
//!
//! Unless told to use an existing cluster (`--external`, or `--endpoints`
//! typed on the command line), it starts its own: three `bifrost serve`
//! children on free loopback ports with data and logs in a temp dir, killed
//! when the benchmark ends however it ends (a Drop guard for errors and
//! Ctrl-C/SIGTERM, and a parent-death signal in case bifrostctl itself is
//! killed).
//!
//! Each run has `--clients` tasks share one [`Client`] (one HTTP/2 connection
//! per node) and send batches of fresh reading ids back to back for
//! `--duration`. A batch's latency is the time from sending it until the
//! cluster acknowledged it, that is, until it was committed on a majority.
//! Throughput is acknowledged readings over the run's wall time, including
//! the last batches that were in flight when the time was up.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bifrost_client::proto::{value::Kind, Device, Quality, Reading, Tag, Value};
use bifrost_client::time::now_us;
use bifrost_client::Client;
use clap::{Args, Subcommand};
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::json;
use tokio::task::JoinSet;

use super::data::MAX_BATCH;
use super::output::{print_json, print_line, Output};
use super::{client_for, Common, Ctx};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Ingest throughput (readings/s) and per-batch commit latency.
    Ingest(BenchIngestArgs),
    /// Polling: a simulated plant polled by an own three-node cluster;
    /// committed readings/s, missed deadlines, CPU and memory per node.
    Poll(super::bench_poll::BenchPollArgs),
    /// SQL queries on one node: current value of one tag (p50/p99), of
    /// 10,000 tags, and one-minute buckets over a day of one tag.
    Query(super::bench_query::BenchQueryArgs),
    /// Subscriptions: delivery latency from commit on the serving node to
    /// the subscriber, under paced ingest, with every reading accounted for.
    Watch(super::bench_watch::BenchWatchArgs),
}

impl BenchCmd {
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            BenchCmd::Ingest(a) => a.common.timeout,
            BenchCmd::Poll(a) => a.common.timeout,
            BenchCmd::Query(a) => a.common.timeout,
            BenchCmd::Watch(a) => a.common.timeout,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchIngestArgs {
    /// Benchmark the cluster at --endpoints instead of starting one. Implied
    /// when --endpoints is typed on the command line (BIFROST_ENDPOINTS alone
    /// does not imply it).
    #[arg(long)]
    pub external: bool,
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
    /// Server binary for the own cluster [default: `bifrost` next to this
    /// executable].
    #[arg(long)]
    pub bifrost: Option<PathBuf>,
    /// Keep the own cluster's data and logs after the benchmark.
    #[arg(long)]
    pub keep: bool,
    /// How long the own cluster may take to elect a leader.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub startup_timeout: Duration,
    #[command(flatten)]
    pub common: Common,
}

pub(super) const DEVICE: &str = "bench";

pub async fn run(ctx: &Ctx, cmd: BenchCmd) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let bench = async {
        match cmd {
            BenchCmd::Ingest(args) => ingest(ctx, args).await,
            BenchCmd::Poll(args) => super::bench_poll::poll(ctx, args).await,
            BenchCmd::Query(args) => super::bench_query::query(ctx, args).await,
            BenchCmd::Watch(args) => super::bench_watch::watch(ctx, args).await,
        }
    };
    // Dropping the benchmark future drops its cluster guard: children die.
    tokio::select! {
        r = bench => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow!("terminated")),
    }
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

async fn ingest(ctx: &Ctx, args: BenchIngestArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("bench: note: this bifrostctl is a debug build; client-side figures may suffer");
    }
    let external = args.external || ctx.endpoints_explicit;
    let mut cluster = None;
    let endpoints = if external {
        eprintln!("bench: using the cluster at {}", ctx.endpoints.join(","));
        ctx.endpoints.clone()
    } else {
        let exe = resolve_server(args.bifrost.as_deref())?;
        let c = cluster.insert(Cluster::start(&exe, args.keep)?);
        eprintln!(
            "bench: started 3 nodes of {} at {} (data and logs in {})",
            exe.display(),
            c.endpoints.join(","),
            c.dir_path().display()
        );
        c.wait_for_leader(args.startup_timeout).await?;
        c.endpoints.clone()
    };

    let result = bench(ctx, &args, endpoints).await;
    match (result, &mut cluster) {
        // A dead node explains a failed benchmark better than the client's
        // "Unavailable" does.
        (Err(e), Some(c)) => match c.check_alive() {
            Err(dead) => Err(e.context(dead)),
            Ok(()) => Err(e),
        },
        (r, _) => r,
    }
}

async fn bench(ctx: &Ctx, args: &BenchIngestArgs, endpoints: Vec<String>) -> anyhow::Result<()> {
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
            "cluster": if ctx.endpoints_explicit || args.external { "external" } else { "own" },
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
    let device = Device {
        name: DEVICE.into(),
        protocol: "modbus-tcp".into(),
        endpoint: "127.0.0.1:1".into(),
        unit_id: 1,
        poll_interval_ms: 1000,
        timeout_ms: 1000,
        retries: 0,
        enabled: false,
        labels: [("purpose".to_string(), "bench".to_string())].into(),
        revision: 0,
    };
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

/// Reserves `n` consecutive microsecond timestamps, starting at `now` or
/// after the last reserved one, whichever is later.
pub(super) fn reserve_ts(clock: &AtomicI64, n: i64, now: i64) -> i64 {
    let mut cur = clock.load(Ordering::Relaxed);
    loop {
        let base = cur.max(now);
        match clock.compare_exchange_weak(cur, base + n, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return base,
            Err(actual) => cur = actual,
        }
    }
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
pub(super) fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

pub(super) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn summary_line(per_s: f64, p50_ms: f64, p99_ms: f64) -> String {
    format!(
        "ingest: {} readings/s p50 {p50_ms:.1} ms p99 {p99_ms:.1} ms",
        per_s.round() as u64
    )
}

pub(super) fn resolve_server(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let me = std::env::current_exe().context("locating bifrostctl")?;
            me.parent().unwrap_or(Path::new(".")).join("bifrost")
        }
    };
    if !path.is_file() {
        bail!(
            "server binary not found at {} (build it with `cargo build --release -p bifrost-server`, \
             pass --bifrost PATH, or use --external with --endpoints)",
            path.display()
        );
    }
    Ok(path)
}

/// Loopback ports that are free now (all bound at once, so distinct).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A child process of a benchmark, with its log.
struct Proc {
    /// `node 1`, `simulator`: names it in errors.
    label: String,
    child: Child,
    log: PathBuf,
}

/// The benchmark's own processes (three nodes, and for `bench poll` a
/// simulator) in one temp dir. Dropping it kills them all.
pub(super) struct Cluster {
    procs: Vec<Proc>,
    /// Indexes into `procs` of node 1, 2, 3.
    nodes: Vec<usize>,
    /// gRPC addresses of node 1, 2, 3.
    pub endpoints: Vec<String>,
    /// HTTP (`/metrics`) addresses of node 1, 2, 3.
    pub http: Vec<String>,
    dir: Option<tempfile::TempDir>,
    keep: bool,
}

impl Cluster {
    /// Three nodes with default settings.
    pub(super) fn start(exe: &Path, keep: bool) -> anyhow::Result<Cluster> {
        let mut c = Cluster::new(keep)?;
        c.start_nodes(exe, &[])?;
        Ok(c)
    }

    /// An empty temp dir, no processes yet.
    pub(super) fn new(keep: bool) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("bifrost-bench-")
            .tempdir()
            .context("creating a temp dir for the cluster")?;
        Ok(Cluster {
            procs: Vec::new(),
            nodes: Vec::new(),
            endpoints: Vec::new(),
            http: Vec::new(),
            dir: Some(dir),
            keep,
        })
    }

    /// Starts `cmd` with stdout and stderr in `DIR/<log_name>`, killed with
    /// this process. Returns its pid.
    pub(super) fn spawn(
        &mut self,
        label: &str,
        log_name: &str,
        mut cmd: Command,
    ) -> anyhow::Result<u32> {
        let log_path = self.dir_path().join(log_name);
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {label} ({:?})", cmd.get_program()))?;
        let pid = child.id();
        self.procs.push(Proc {
            label: label.to_string(),
            child,
            log: log_path,
        });
        Ok(pid)
    }

    /// Starts three `bifrost serve` nodes on free loopback ports, each with
    /// `extra` arguments.
    pub(super) fn start_nodes(&mut self, exe: &Path, extra: &[&str]) -> anyhow::Result<()> {
        let ports = free_ports(6)?;
        let grpc: Vec<String> = ports[..3]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let http: Vec<String> = ports[3..]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let peers = grpc
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>();
        let peers = peers.join(",");
        for i in 0..3 {
            let id = i + 1;
            let data = self.dir_path().join(format!("n{id}"));
            std::fs::create_dir_all(&data)
                .with_context(|| format!("creating {}", data.display()))?;
            let mut cmd = Command::new(exe);
            cmd.arg("serve")
                .args(["--id", &id.to_string()])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen", &grpc[i], "--http", &http[i], "--peers", &peers])
                .args(extra);
            self.spawn(&format!("node {id}"), &format!("n{id}.log"), cmd)?;
            self.nodes.push(self.procs.len() - 1);
        }
        self.endpoints = grpc;
        self.http = http;
        Ok(())
    }

    /// Pids of node 1, 2, 3.
    pub(super) fn node_pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .map(|&i| self.procs[i].child.id())
            .collect()
    }

    pub(super) fn dir_path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("?"))
    }

    /// An error naming the first process that has exited, with its log's
    /// tail.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{} exited ({status}); last lines of {}:\n{}",
                    p.label,
                    p.log.display(),
                    tail(&p.log, 15)
                );
            }
        }
        Ok(())
    }

    pub(super) async fn wait_for_leader(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = client_for(self.endpoints.clone(), Duration::from_secs(1))?;
        let started = Instant::now();
        let mut said = Instant::now();
        loop {
            self.check_alive().context("cluster start-up")?;
            if let Ok(s) = client.status().await {
                if s.leader_id != 0 {
                    eprintln!(
                        "bench: node {} is leader after {:.1}s",
                        s.leader_id,
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
            }
            if started.elapsed() > timeout {
                bail!(
                    "no leader after {}; logs are in {} (use --keep to keep them)",
                    humantime::format_duration(timeout),
                    self.dir_path().display()
                );
            }
            if said.elapsed() >= Duration::from_secs(1) {
                eprintln!(
                    "bench: waiting for a leader ({:.0}s)",
                    started.elapsed().as_secs_f64()
                );
                said = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if self.keep {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "bench: kept cluster data and logs in {}",
                    dir.keep().display()
                );
            }
        }
    }
}

/// Asks the kernel to SIGKILL the child when this process dies, so a killed
/// bifrostctl does not leave servers behind. The signal follows the thread
/// that spawned the child; ours is the main thread (the benchmark runs in
/// `block_on` and spawns from there), which lives as long as the process.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// The last `n` lines of a file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let Ok(f) = File::open(path) else {
        return "(no log)".into();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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
    fn percentiles_use_nearest_rank() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&lat, 50.0), 50.0);
        assert_eq!(percentile_ms(&lat, 99.0), 99.0);
        assert_eq!(percentile_ms(&lat[..1], 99.0), 1.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn timestamps_are_unique_and_never_behind_now() {
        let clock = AtomicI64::new(0);
        assert_eq!(reserve_ts(&clock, 10, 1_000), 1_000);
        // Same microsecond again: continues after the reserved range.
        assert_eq!(reserve_ts(&clock, 10, 1_000), 1_010);
        // The wall clock moved past the range: jump to now.
        assert_eq!(reserve_ts(&clock, 10, 5_000), 5_000);
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
