//! `bench soak`: does anything keep growing while a cluster works for
//! hours? Leaks show as slopes, not as peaks, so this benchmark samples
//! every node for `--duration` and fits a line through each quantity.
//!
//! It starts its own cluster and plant exactly as `bench poll` does
//! ([`super::poll::start_plant`]: a simulator of `--devices` x `--tags`
//! polled every second by three nodes, settled before anything is
//! measured), imports a disabled device `bench` with 100 f64 tags
//! `bench/soakNNN`, and keeps a steady load on it ([`workload`]):
//! `--ingest-per-s` fresh readings through the gRPC client (ten batches a
//! second, round-robin over those tags), `--queries-per-s` queries with
//! local consistency spread over the nodes (every plant tag's current
//! value, then 10-second buckets over the last five minutes of an ingested
//! tag and of a polled one), and `--watchers` subscriptions over every tag,
//! each served by its own node in turn.
//!
//! Every `--sample-every` (the first sample when the load starts, the last
//! at `--duration`) it samples each node ([`probe`]): RSS and threads from
//! `/proc/PID/status`, open file descriptors (`/proc/PID/fd`), bytes on disk
//! under its data directory, RocksDB's memory (`bifrost_memory_bytes` parts
//! `block_cache` + `memtables`), jemalloc's heap (parts `heap_allocated`,
//! `heap_resident`: absent from a node built without jemalloc) and its
//! applied revision; one line per sample, all nodes, is printed as it is
//! taken.
//!
//! The **verdict** ([`fit`]) ignores the warm-up (`--warmup`, at most a
//! third of the run): over the later samples it fits a least-squares slope
//! per node and quantity, per hour, and fails the run when a slope is
//! above its threshold (`--max-growth-per-hour`).
//!
//! Memory is judged in two parts, because RocksDB's block cache and
//! memtables fill toward their share of `--memory-budget` for hours (at the
//! defaults, still filling at the thirtieth minute), which is no leak, and
//! RSS follows them by more than they count: jemalloc's slabs and dirty
//! pages for their allocations (about +27 MB/h of RSS beyond the caches
//! while the heap allocated beyond them stayed at 6-9 MB in heap profiles).
//!
//! - The **leak signal is the heap beyond the caches** (`heap`):
//!   `heap_allocated` less `block_cache` and `memtables`, judged by its
//!   slope after the warm-up. Every allocation of the process goes through
//!   jemalloc (RocksDB's C++ too, by the exported `malloc`), so a Rust or
//!   C++ leak grows it however the caches fill, while the caches' own
//!   bytes cancel out and the allocator's free pages are not in it. Not
//!   quite: RocksDB counts the bytes it asked for, jemalloc allocates the
//!   size class (a 4.1 KB block takes 5 KB), so the heap beyond the caches
//!   follows them by about a tenth: in the default half-hour run it grew
//!   +6.3-7.7 MB/h after the warm-up while the caches grew +62-68 MB/h
//!   (fitted against the caches, 0.09-0.11 of them, with no trend left
//!   over time), and failed a bare 5 MB/h. The rounding is less than a
//!   quarter of a request, so the heap may grow by its threshold plus a
//!   quarter of the caches' growth over the same samples
//!   ([`fit::CACHE_SLACK`]; the table and a failure show the sum). Once
//!   the caches are full that allowance is nothing; while they fill at
//!   65 MB/h a leak must pass about 21 MB/h to show. A node
//!   that exports no `heap_allocated` has its RSS beyond the caches judged
//!   in the heap's place (after the warm-up, as before; it grows while the
//!   caches fill), and the table (`rss for heap`), the failure and the
//!   summary line say so.
//! - **RSS beyond the caches** (`rss`) catches what the heap does not see
//!   (thread stacks, RocksDB's own mappings, the allocator's overhead
//!   growing without the heap). It is judged by its slope only over the
//!   samples after the caches were full, and after the warm-up: the caches
//!   count as full from the first sample within 5% of their peak over the
//!   run (their high-water mark, so memtables emptying at a flush and
//!   filling again do not count as growth). That span must be at least 15
//!   minutes: RSS wobbles by several MB (36.7-47.1 MB at a 32 MiB budget,
//!   caches full), and over less a slope of a few MB/h is noise. When the
//!   caches are still filling (full only over the last few samples, as
//!   their peak is the last one), RSS beyond them is reported, with its
//!   slope after the warm-up, and not judged: the table says `not judged:
//!   caches filling` and the summary line `not judged: caches still
//!   filling`. A longer run, or a smaller `--memory-budget` on the nodes
//!   (`BIFROST_MEMORY_BUDGET`), lets them fill.
//! - The caches themselves are judged against their bound: their peak
//!   within the node's memory budget.
//!
//! Open fds are judged without RocksDB's table files. Disk use is judged as
//! **bytes per reading applied** (disk / revision): the history is kept, so
//! the bytes grow with the readings by design; what each reading costs must
//! not. Its growth in MB/h and the marginal bytes per reading (the slope of
//! disk over readings) are reported, not judged: a leak in proportion to
//! the readings (say, a Raft log never truncated) shows there, as a
//! marginal cost above `bench storage`'s figure. The run also fails, at
//! once, when the load stalls: an ingest batch or a query failed, a
//! subscription ended, or in one sample interval no reading was
//! acknowledged, no query answered, a subscription received no polled or
//! no ingested reading, or the nodes committed no polled reading.
//!
//! At the end it prints the slopes against their thresholds, draws the
//! chart ([`chart`], `--chart`, PNG), prints the summary line
//! `soak: 30m 3 nodes heap beyond RocksDB caches 9 MB (+0.4 MB/h) rss_max
//! 120 MB (beyond RocksDB caches 45 MB, +27.0 MB/h, not judged: caches
//! still filling) fds 61 beyond tables (+0.0/h) threads 40 (+0.0/h) disk
//! 512 MB (+900 MB/h, 310 B/reading, -20.0 B/reading/h) rocksdb 60 MB of
//! budget 96 MB (+0.1 MB/h): no growth` (each figure the largest of any
//! node; `+0.3 MB/h once they were full` when RSS was judged), and exits 1
//! naming every node, quantity, slope and threshold that failed.
//!
//! It imports `poll` (the plant, the node probe, `/proc/PID/status`) and
//! `common`; nothing imports it.

mod chart;
mod fit;
mod probe;
mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bifrost_client::Security;
use bifrost_testkit::{Cluster, UNITS_PER_PORT};
use clap::Args;
use futures::future::join_all;
use serde_json::json;

use super::common::{
    bench_tag, create_cluster, explain, import_bench_tags, round1, server_binary,
    warn_if_debug_build, OwnCluster, DEVICE,
};
use super::poll::{start_plant, NodeProbe, Plant, NODE_ARGS};
use crate::ctl::output::{print_json, print_line, Output, Table};
use crate::ctl::{client_for, Common, Ctx};
use fit::{Basis, Fit, Quantity};
use probe::NodeSample;
use workload::{Progress, Spec, Workload};

/// Tags the ingested readings go to.
const INGEST_TAGS: usize = 100;
/// How long the cluster may take, after the import, to poll every device.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);
const MB: f64 = 1024.0 * 1024.0;

#[derive(Args, Debug, Clone)]
pub struct BenchSoakArgs {
    /// How long to run, warm-up included (the plan Bifrost follows asks for
    /// 72h: see README "Benchmark").
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How often every node is sampled.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// Samples left out of the verdict at the start (caches and buffers
    /// filling); at most a third of --duration.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Simulated devices, polled every second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub devices: u32,
    /// Tags per simulated device.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub tags: u16,
    /// Readings per second ingested through the gRPC client (0: none).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub ingest_per_s: u64,
    /// Queries per second: current values and bucketed history in turn (0:
    /// none).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub queries_per_s: u32,
    /// Subscriptions over every tag kept open for the whole run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub watchers: u32,
    /// The growth per hour after the warm-up above which the run fails, per
    /// kind, as KIND=N; may be repeated. Defaults: heap=5 (MB/h of the heap
    /// jemalloc counts as allocated beyond RocksDB's block cache and
    /// memtables, which fill up to their bound over hours: a flush's
    /// sawtooth stays well below it over half an hour, a leak of one
    /// allocation per reading or poll is far above it; plus a quarter of
    /// the caches' growth, jemalloc's rounding of their blocks), rss=5 (MB/h of
    /// the resident memory beyond those caches, judged only over at least
    /// 15 minutes after the caches were full: the allocator's overhead
    /// follows them while they fill), fds=5 (per hour, table files aside:
    /// those follow the data; sockets come and go with connections, a leak
    /// per call or connection adds thousands), threads=5 (per hour: the runtime's
    /// blocking pool comes and goes), disk=10 (B/reading per hour: the cost
    /// of a reading falls as fixed overhead spreads; one that rises is a
    /// store keeping what it should drop). RocksDB's caches are not judged
    /// by growth but must stay within the node's --memory-budget. A
    /// 72-hour run can be held to tighter limits.
    #[arg(long, value_name = "KIND=N", value_parser = fit::parse_limit)]
    pub max_growth_per_hour: Vec<(Quantity, f64)>,
    /// Where to write the chart (PNG).
    #[arg(long, default_value = "soak.png")]
    pub chart: PathBuf,
    #[command(flatten)]
    pub own: OwnCluster,
    #[command(flatten)]
    pub common: Common,
}

/// When the samples are taken, and which the verdict judges.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timing {
    duration: Duration,
    every: Duration,
    /// The warm-up in force: --warmup, at most a third of the duration.
    warmup: Duration,
    /// Samples at 0, every, 2 x every, ... up to the duration.
    samples: u32,
}

impl Timing {
    fn new(duration: Duration, every: Duration, warmup: Duration) -> anyhow::Result<Timing> {
        if every < Duration::from_secs(1) {
            bail!("--sample-every must be at least 1s");
        }
        let warmup = warmup.min(duration / 3);
        let samples = (duration.as_secs_f64() / every.as_secs_f64()).floor() as u32 + 1;
        let t = Timing {
            duration,
            every,
            warmup,
            samples,
        };
        if t.judged() < fit::MIN_POINTS as u32 {
            bail!(
                "--duration {} leaves {} samples after a warm-up of {} at --sample-every {}; \
                 a slope needs at least {}",
                humantime::format_duration(duration),
                t.judged(),
                humantime::format_duration(warmup),
                humantime::format_duration(every),
                fit::MIN_POINTS
            );
        }
        Ok(t)
    }

    /// Samples at or after the warm-up.
    fn judged(&self) -> u32 {
        let first = (self.warmup.as_secs_f64() / self.every.as_secs_f64()).ceil() as u32;
        self.samples.saturating_sub(first)
    }
}

/// Every node and the load at one moment.
struct Sample {
    /// Seconds since the first sample.
    at_s: f64,
    nodes: Vec<NodeSample>,
    progress: Progress,
}

impl Sample {
    /// Polled readings committed from the outboxes, all nodes together;
    /// `None` when a node's metrics did not answer.
    fn forwarded(&self) -> Option<f64> {
        self.nodes.iter().map(|n| n.forwarded).sum()
    }
}

/// What the sampling saw.
struct Run {
    samples: Vec<Sample>,
    /// Why the load stalled, when it did (the run then stopped).
    stall: Option<String>,
}

pub async fn soak(ctx: &Ctx, args: BenchSoakArgs) -> anyhow::Result<()> {
    if ctx.endpoints_explicit {
        bail!("bench soak always starts its own cluster (it samples the nodes' processes and data directories); drop --endpoints");
    }
    let timing = Timing::new(args.duration, args.sample_every, args.warmup)?;
    if timing.warmup < args.warmup {
        eprintln!(
            "bench: warm-up cut to {}, a third of --duration",
            humantime::format_duration(timing.warmup)
        );
    }
    let png = args.chart.extension().and_then(|e| e.to_str());
    if !png.is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        bail!(
            "--chart {}: the chart is a PNG; name a .png file",
            args.chart.display()
        );
    }
    warn_if_debug_build("its nodes' figures are not a release build's");
    let exe = server_binary(args.own.bifrost.as_deref())?;
    eprintln!("bench: server binary {}", exe.display());
    let mut cluster = create_cluster(&exe, args.own.keep, false, NODE_ARGS)?;
    let run = bench(ctx, &args, &timing, &mut cluster)
        .await
        .map_err(|e| explain(e, Some(&cluster)))?;
    let ids: Vec<u64> = cluster.nodes().map(|n| n.id).collect();
    report(ctx, &args, &timing, &ids, &run)
}

/// Starts the plant and the load, and samples until the end or a stall.
async fn bench(
    ctx: &Ctx,
    args: &BenchSoakArgs,
    timing: &Timing,
    cluster: &mut Cluster,
) -> anyhow::Result<Run> {
    let plant = Plant {
        devices: args.devices,
        tags: args.tags,
        interval_ms: 1000,
        units_per_endpoint: UNITS_PER_PORT,
        pipeline: 1,
        startup_timeout: args.own.startup_timeout,
        settle_timeout: SETTLE_TIMEOUT,
    };
    let (probes, _sim_pid) = start_plant(ctx, cluster, &plant).await?;
    let dirs: Vec<PathBuf> = cluster.nodes().map(|n| n.data_dir.clone()).collect();
    let endpoints = cluster.endpoints();
    let client = client_for(endpoints.clone(), ctx.timeout, Security::Plain, None)?;
    let ingest_tags: Vec<String> = (0..INGEST_TAGS)
        .map(|i| format!("{DEVICE}/soak{i:03}"))
        .collect();
    let tags = ingest_tags
        .iter()
        .enumerate()
        .map(|(slot, n)| bench_tag(n.clone(), slot))
        .collect();
    import_bench_tags(&client, tags, Instant::now()).await?;
    // Subscriptions go to the first node of their client's list.
    let watch_clients = (0..endpoints.len())
        .map(|k| {
            let mut e = endpoints.clone();
            e.rotate_left(k);
            client_for(e, ctx.timeout, Security::Plain, None)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = Spec {
        ingest_per_s: args.ingest_per_s,
        ingest_tags,
        queries_per_s: args.queries_per_s,
        plant_tags: args.devices as usize * usize::from(args.tags),
        polled_tag: "sim00000/sine0".into(),
        watchers: args.watchers,
    };
    let workload = Workload::start(&spec, &client, &watch_clients);
    eprintln!(
        "bench: soaking for {} (warm-up {}), sampling every {}: {} devices x {} tags polled every second, \
         {} readings/s ingested, {} queries/s, {} subscriptions",
        humantime::format_duration(timing.duration),
        humantime::format_duration(timing.warmup),
        humantime::format_duration(timing.every),
        args.devices,
        args.tags,
        args.ingest_per_s,
        args.queries_per_s,
        args.watchers
    );
    sample_run(ctx, cluster, &probes, &dirs, &workload, &spec, timing).await
}

/// Samples every node at each due time, printing a line each; stops early
/// when the load stalled.
async fn sample_run(
    ctx: &Ctx,
    cluster: &Cluster,
    probes: &[NodeProbe],
    dirs: &[PathBuf],
    workload: &Workload,
    spec: &Spec,
    timing: &Timing,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    emit(ctx, &header(probes.len()))?;
    for k in 0..timing.samples {
        tokio::time::sleep_until((start + timing.every * k).into()).await;
        cluster.check_alive()?;
        let nodes = join_all(probes.iter().zip(dirs).map(|(p, d)| probe::sample(p, d)))
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        let s = Sample {
            at_s: start.elapsed().as_secs_f64(),
            nodes,
            progress: workload.progress(),
        };
        emit(ctx, &sample_line(&s, timing.warmup.as_secs_f64()))?;
        let stalled = samples.last().map_or_else(Vec::new, |prev| {
            workload::stalls(
                spec,
                &prev.progress,
                &s.progress,
                (prev.forwarded(), s.forwarded()),
            )
        });
        samples.push(s);
        if !stalled.is_empty() {
            return Ok(Run {
                samples,
                stall: Some(stalled.join("; ")),
            });
        }
    }
    Ok(Run {
        samples,
        stall: None,
    })
}

/// A line of the running table: stdout in text, stderr with JSON output.
fn emit(ctx: &Ctx, line: &str) -> anyhow::Result<()> {
    match ctx.output {
        Output::Text | Output::Csv => print_line(line)?,
        Output::Json => eprintln!("bench: {line}"),
    }
    Ok(())
}

/// Column widths of the running table, per node.
const WIDTHS: [usize; 7] = [6, 5, 5, 4, 6, 7, 6];

fn header(nodes: usize) -> String {
    let col = |name: &str, w: usize| format!("{name:<width$}", width = nodes * (w + 1) + 1);
    let names = [
        "rss MB",
        "heap+ MB",
        "fds",
        "threads",
        "rocksdb MB",
        "disk MB",
        "B/reading",
    ];
    let cols: String = names.iter().zip(WIDTHS).map(|(n, w)| col(n, w)).collect();
    format!(
        "{:<11}{cols}{:>11} {:>11} {:>8} {:>11}",
        "time", "revision", "ingested", "queries", "watched"
    )
}

/// One sample as a row: per quantity, the nodes' values separated by `/`;
/// a `w` marks the warm-up.
fn sample_line(s: &Sample, warmup_s: f64) -> String {
    let per = |f: &dyn Fn(&NodeSample) -> String, w: usize| {
        let v: Vec<String> = s.nodes.iter().map(f).collect();
        format!(
            "{:<width$}",
            v.join("/"),
            width = s.nodes.len() * (w + 1) + 1
        )
    };
    let opt = |v: Option<f64>, p: usize| v.map_or("?".into(), |v| format!("{v:.p$}"));
    let cols = [
        per(&|n| format!("{:.1}", n.rss_kb as f64 / 1024.0), WIDTHS[0]),
        per(&|n| opt(Quantity::Heap.of(n), 1), WIDTHS[1]),
        per(&|n| n.fds.to_string(), WIDTHS[2]),
        per(&|n| n.threads.to_string(), WIDTHS[3]),
        per(&|n| opt(n.rocksdb_bytes.map(|b| b / MB), 1), WIDTHS[4]),
        per(&|n| format!("{:.1}", n.disk_bytes as f64 / MB), WIDTHS[5]),
        per(&|n| opt(Quantity::DiskPerReading.of(n), 0), WIDTHS[6]),
    ]
    .concat();
    let revision = s.nodes.iter().filter_map(|n| n.revision).max().unwrap_or(0);
    let warm = if s.at_s < warmup_s { "w" } else { "" };
    format!(
        "{:<11}{cols}{revision:>11} {:>11} {:>8} {:>11}",
        format!("{} {warm}", clock(s.at_s)),
        s.progress.ingested,
        s.progress.queries,
        s.progress.watched_total()
    )
}

/// `H:MM:SS`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

// ------------------------------------------------------------------ report

/// Node `k`'s value of `f` at each sample: (seconds, value when known).
fn series(
    samples: &[Sample],
    k: usize,
    f: impl Fn(&NodeSample) -> Option<f64>,
) -> Vec<(f64, Option<f64>)> {
    samples.iter().map(|s| (s.at_s, f(&s.nodes[k]))).collect()
}

/// One node's disk over the judged samples: reported, not judged (the
/// verdict judges bytes per reading).
#[derive(Debug, Clone, PartialEq)]
struct DiskGrowth {
    node: u64,
    first_mb: f64,
    last_mb: f64,
    mb_per_h: Option<f64>,
    /// Disk over readings applied at the last sample.
    bytes_per_reading: Option<f64>,
    /// The slope of disk over readings applied: what one more reading cost.
    marginal: Option<f64>,
}

fn disk_growth(node: u64, samples: &[Sample], k: usize, warmup_s: f64) -> DiskGrowth {
    let judged: Vec<&NodeSample> = samples
        .iter()
        .filter(|s| s.at_s >= warmup_s)
        .map(|s| &s.nodes[k])
        .collect();
    let mb = |n: &NodeSample| n.disk_bytes as f64 / MB;
    let over_time = fit::after_warmup(&series(samples, k, |n| Some(mb(n))), warmup_s);
    let over_readings: Vec<(f64, f64)> = judged
        .iter()
        .filter_map(|n| Some((n.revision? as f64, n.disk_bytes as f64)))
        .collect();
    DiskGrowth {
        node,
        first_mb: judged.first().map_or(0.0, |n| mb(n)),
        last_mb: judged.last().map_or(0.0, |n| mb(n)),
        mb_per_h: fit::slope_per_hour(&over_time),
        bytes_per_reading: judged.last().and_then(|n| Quantity::DiskPerReading.of(n)),
        marginal: fit::slope(&over_readings),
    }
}

/// Everything the report says.
struct Report {
    fits: Vec<Fit>,
    disk: Vec<DiskGrowth>,
    failures: Vec<String>,
    elapsed_s: f64,
}

impl Report {
    fn of(args: &BenchSoakArgs, timing: &Timing, ids: &[u64], run: &Run) -> Report {
        let warmup_s = timing.warmup.as_secs_f64();
        let limits = fit::limits(&args.max_growth_per_hour);
        let mut fits = Vec::new();
        for (k, &id) in ids.iter().enumerate() {
            let budget_mb = run
                .samples
                .iter()
                .rev()
                .find_map(|s| s.nodes[k].budget_bytes)
                .map(|b| b / MB);
            let of = |q: Quantity| series(&run.samples, k, |n| q.of(n));
            fits.extend(fit::node_fits(id, of, warmup_s, &limits, budget_mb));
        }
        let disk = ids
            .iter()
            .enumerate()
            .map(|(k, &id)| disk_growth(id, &run.samples, k, warmup_s))
            .collect();
        let elapsed_s = run.samples.last().map_or(0.0, |s| s.at_s);
        let mut failures = Vec::new();
        if let Some(stall) = &run.stall {
            failures.push(format!("the load stalled at {}: {stall}", clock(elapsed_s)));
        }
        failures.extend(fit::verdict(&fits));
        Report {
            fits,
            disk,
            failures,
            elapsed_s,
        }
    }

    /// The largest of any node's `pick` (slope, peak or last value) for `q`.
    fn worst(&self, q: Quantity, pick: fn(&Fit) -> Option<f64>) -> Option<f64> {
        self.worst_of(q, |_| true, pick)
    }

    /// The largest `pick` of the fits of `q` that pass `keep`.
    fn worst_of(
        &self,
        q: Quantity,
        keep: impl Fn(&Fit) -> bool,
        pick: fn(&Fit) -> Option<f64>,
    ) -> Option<f64> {
        self.fits
            .iter()
            .filter(|f| f.quantity == q && keep(f))
            .filter_map(pick)
            .reduce(f64::max)
    }

    /// The nodes whose fit of `q` passes `pick`, as `node 2` or `nodes 1, 3`.
    fn nodes_where(&self, q: Quantity, pick: impl Fn(&Fit) -> bool) -> Option<String> {
        let ids: Vec<String> = self
            .fits
            .iter()
            .filter(|f| f.quantity == q && pick(f))
            .map(|f| f.node.to_string())
            .collect();
        match ids.len() {
            0 => None,
            1 => Some(format!("node {}", ids[0])),
            _ => Some(format!("nodes {}", ids.join(", "))),
        }
    }

    fn verdict(&self) -> String {
        match self.failures.as_slice() {
            [] => "no growth".into(),
            [one] => format!("FAILED: {one}"),
            [first, rest @ ..] => format!("FAILED: {first}; and {} more", rest.len()),
        }
    }
}

fn report(
    ctx: &Ctx,
    args: &BenchSoakArgs,
    timing: &Timing,
    ids: &[u64],
    run: &Run,
) -> anyhow::Result<()> {
    let r = Report::of(args, timing, ids, run);
    let chart = draw_chart(&args.chart, run, ids, timing, r.elapsed_s);
    let rss_max = run
        .samples
        .iter()
        .flat_map(|s| s.nodes.iter().map(|n| n.rss_kb as f64 / 1024.0))
        .fold(0.0, f64::max);
    match ctx.output {
        Output::Text | Output::Csv => {
            print_line(workload_line(run, args.watchers))?;
            print_line(fits_table(&r.fits).render().trim_end())?;
            print_line(disk_table(&r.disk).render().trim_end())?;
            print_line(chart_line(&args.chart, &chart))?;
            print_line(summary_line(&r, ids.len(), rss_max))?;
        }
        Output::Json => {
            eprintln!("bench: {}", chart_line(&args.chart, &chart));
            print_json(&report_json(args, timing, ids, run, &r, chart.is_ok()))?;
        }
    }
    if r.failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("bench soak failed:\n  {}", r.failures.join("\n  ")))
    }
}

fn workload_line(run: &Run, watchers: u32) -> String {
    let Some(last) = run.samples.last() else {
        return "workload: no sample".into();
    };
    let p = &last.progress;
    let polled: u64 = p.watched.iter().map(|w| w.0).sum();
    let per_s = |n: u64| n as f64 / last.at_s.max(1e-9);
    format!(
        "workload over {}: {} readings ingested ({:.0}/s), {} queries answered, {} readings received by \
         {watchers} subscriptions ({polled} polled, {} ingested), {:.0} polled readings committed by the nodes",
        clock(last.at_s),
        p.ingested,
        per_s(p.ingested),
        p.queries,
        p.watched_total(),
        p.watched_total() - polled,
        last.forwarded().unwrap_or(0.0) - run.samples[0].forwarded().unwrap_or(0.0),
    )
}

fn fits_table(fits: &[Fit]) -> Table {
    let mut t = Table::new(&[
        "node",
        "quantity",
        "samples judged",
        "slope",
        "threshold",
        "verdict",
    ]);
    for f in fits {
        let unit = f.quantity.unit();
        t.row(vec![
            f.node.to_string(),
            f.label(),
            format!(
                "{} -> {} {unit} ({} from {})",
                fit::value_text(f.first),
                fit::value_text(f.last),
                f.points,
                clock(f.from_s)
            ),
            f.slope_per_h
                .map_or("?".into(), |s| format!("{s:+.2} {unit}/h")),
            match (f.quantity.bounded(), f.basis) {
                (true, _) => format!("peak within budget {} {unit}", fit::value_text(f.bound)),
                (false, Basis::CachesFull { .. } | Basis::CachesFilling { .. }) => {
                    format!("{} {unit}/h once caches full", f.max_per_h)
                }
                (false, _) => f.threshold_text(),
            },
            match (f.judged(), f.failure().is_some(), f.quantity.bounded()) {
                (false, _, _) => "not judged: caches filling",
                (true, false, _) => "ok",
                (true, true, true) => "OVER",
                (true, true, false) => "GROWS",
            }
            .into(),
        ]);
    }
    t
}

fn disk_table(disk: &[DiskGrowth]) -> Table {
    let mut t = Table::new(&[
        "node",
        "disk after warm-up",
        "growth",
        "per reading",
        "marginal (reported, not judged)",
    ]);
    let opt = |v: Option<f64>, unit: &str| v.map_or("?".into(), |v| format!("{v:.0} {unit}"));
    for d in disk {
        t.row(vec![
            d.node.to_string(),
            format!("{:.1} -> {:.1} MB", d.first_mb, d.last_mb),
            d.mb_per_h.map_or("?".into(), |v| format!("{v:+.1} MB/h")),
            opt(d.bytes_per_reading, "B/reading"),
            opt(d.marginal, "B/reading"),
        ]);
    }
    t
}

/// The chart's panels, top left to bottom right: the judged quantities,
/// then disk in MB and the whole RSS.
fn panels(run: &Run, nodes: usize) -> Vec<chart::Panel> {
    let titles = [
        (Quantity::Heap, "heap beyond caches MB"),
        (Quantity::Rss, "RSS beyond caches MB"),
        (Quantity::Fds, "open fds"),
        (Quantity::Threads, "threads"),
        (Quantity::Rocksdb, "RocksDB MB"),
        (Quantity::DiskPerReading, "disk B/reading"),
    ];
    let known =
        |pts: Vec<(f64, Option<f64>)>| pts.into_iter().filter_map(|(t, v)| Some((t, v?))).collect();
    let mut panels: Vec<chart::Panel> = titles
        .iter()
        .map(|&(q, title)| chart::Panel {
            title: title.into(),
            series: (0..nodes)
                .map(|k| known(series(&run.samples, k, |n| q.of(n))))
                .collect(),
        })
        .collect();
    panels.push(chart::Panel {
        title: "disk MB".into(),
        series: (0..nodes)
            .map(|k| known(series(&run.samples, k, |n| Some(n.disk_bytes as f64 / MB))))
            .collect(),
    });
    panels.push(chart::Panel {
        title: "RSS MB".into(),
        series: (0..nodes)
            .map(|k| known(series(&run.samples, k, |n| Some(n.rss_kb as f64 / 1024.0))))
            .collect(),
    });
    panels
}

fn draw_chart(
    path: &Path,
    run: &Run,
    ids: &[u64],
    timing: &Timing,
    elapsed_s: f64,
) -> anyhow::Result<()> {
    let end_s = elapsed_s.max(timing.every.as_secs_f64());
    chart::draw(
        path,
        &panels(run, ids.len()),
        ids,
        timing.warmup.as_secs_f64(),
        end_s,
    )
}

fn chart_line(path: &Path, chart: &anyhow::Result<()>) -> String {
    match chart {
        Ok(()) => format!(
            "chart: {} (panels: heap and RSS beyond RocksDB's caches MB, open fds, threads, \
             RocksDB MB, disk B/reading, disk MB, RSS MB; one line per node; the warm-up shaded)",
            path.display()
        ),
        Err(e) => format!("chart: not written: {e:#}"),
    }
}

/// `soak: 30m 3 nodes heap beyond RocksDB caches 9 MB (+0.4 MB/h) rss_max
/// 120 MB (beyond RocksDB caches 45 MB, +27.0 MB/h, not judged: caches
/// still filling) ...: no growth`; each figure the largest of any node
/// (the budget the smallest).
fn summary_line(r: &Report, nodes: usize, rss_max: f64) -> String {
    let v = |x: Option<f64>, p: usize| x.map_or("?".into(), |x| format!("{x:.p$}"));
    let s = |x: Option<f64>, p: usize| x.map_or("?".into(), |x| format!("{x:+.p$}"));
    let max = |f: fn(&DiskGrowth) -> Option<f64>| r.disk.iter().filter_map(f).reduce(f64::max);
    format!(
        "soak: {} {nodes} nodes {} rss_max {rss_max:.0} MB (beyond RocksDB caches {} MB, {}) \
         fds {} beyond tables ({}/h) threads {} ({}/h) \
         disk {} MB ({} MB/h, {} B/reading, {} B/reading/h) rocksdb {} MB of budget {} MB ({} MB/h): {}",
        fit_span(r.elapsed_s),
        heap_summary(r),
        v(r.worst(Quantity::Rss, |f| f.last), 0),
        rss_summary(r),
        v(r.worst(Quantity::Fds, |f| f.last), 0),
        s(r.worst(Quantity::Fds, |f| f.slope_per_h), 1),
        v(r.worst(Quantity::Threads, |f| f.last), 0),
        s(r.worst(Quantity::Threads, |f| f.slope_per_h), 1),
        v(max(|d| Some(d.last_mb)), 0),
        s(max(|d| d.mb_per_h), 0),
        v(max(|d| d.bytes_per_reading), 0),
        s(r.worst(Quantity::DiskPerReading, |f| f.slope_per_h), 1),
        v(r.worst(Quantity::Rocksdb, |f| f.peak), 0),
        v(
            r.fits
                .iter()
                .filter_map(|f| f.bound)
                .reduce(f64::min),
            0
        ),
        s(r.worst(Quantity::Rocksdb, |f| f.slope_per_h), 1),
        r.verdict()
    )
}

/// The heap part of the summary line: `heap beyond RocksDB caches 9 MB
/// (+0.4 MB/h)`, saying where RSS was judged in its place.
fn heap_summary(r: &Report) -> String {
    let s = |x: Option<f64>| x.map_or("?".into(), |x| format!("{x:+.1}"));
    let native = |f: &Fit| f.basis != Basis::RssForHeap;
    let heap = format!(
        "heap beyond RocksDB caches {} MB ({} MB/h",
        r.worst_of(Quantity::Heap, native, |f| f.last)
            .map_or("?".into(), |x| format!("{x:.0}")),
        s(r.worst_of(Quantity::Heap, native, |f| f.slope_per_h))
    );
    let fallback = r.worst_of(Quantity::Heap, |f| !native(f), |f| f.slope_per_h);
    match r.nodes_where(Quantity::Heap, |f| !native(f)) {
        None => format!("{heap})"),
        Some(_) if r.nodes_where(Quantity::Heap, native).is_none() => format!(
            "heap not exported (no jemalloc): rss beyond RocksDB caches judged in its place ({} MB/h)",
            s(fallback)
        ),
        Some(nodes) => format!(
            "{heap}; {nodes} without heap_allocated: rss judged in its place, {} MB/h)",
            s(fallback)
        ),
    }
}

/// The RSS part of the summary line: its slope once the caches were full,
/// or reported and not judged while they were filling.
fn rss_summary(r: &Report) -> String {
    let s = |x: Option<f64>| x.map_or("?".into(), |x| format!("{x:+.1}"));
    let judged = r.worst_of(Quantity::Rss, Fit::judged, |f| f.slope_per_h);
    match r.nodes_where(Quantity::Rss, |f| !f.judged()) {
        None => format!("{} MB/h once they were full", s(judged)),
        Some(_) if r.nodes_where(Quantity::Rss, Fit::judged).is_none() => format!(
            "{} MB/h, not judged: caches still filling",
            s(r.worst(Quantity::Rss, |f| f.slope_per_h))
        ),
        Some(nodes) => format!(
            "{} MB/h once they were full; not judged on {nodes}: caches still filling",
            s(judged)
        ),
    }
}

/// The run's length as humantime prints it, whole seconds: `30m`, `2m 59s`.
fn fit_span(secs: f64) -> String {
    humantime::format_duration(Duration::from_secs(secs.round() as u64)).to_string()
}

fn report_json(
    args: &BenchSoakArgs,
    timing: &Timing,
    ids: &[u64],
    run: &Run,
    r: &Report,
    chart_written: bool,
) -> serde_json::Value {
    let warmup_s = timing.warmup.as_secs_f64();
    let last = run
        .samples
        .last()
        .map(|s| s.progress.clone())
        .unwrap_or_default();
    json!({
        "duration_s": timing.duration.as_secs_f64(),
        "elapsed_s": round1(r.elapsed_s),
        "sample_every_s": timing.every.as_secs_f64(),
        "warmup_s": warmup_s,
        "devices": args.devices,
        "tags": args.tags,
        "ingest_per_s": args.ingest_per_s,
        "queries_per_s": args.queries_per_s,
        "watchers": args.watchers,
        "nodes": ids,
        "samples": run.samples.iter().map(|s| json!({
            "t_s": round1(s.at_s),
            "warmup": s.at_s < warmup_s,
            "nodes": ids.iter().zip(&s.nodes).map(|(id, n)| json!({
                "id": id,
                "rss_mb": round1(n.rss_kb as f64 / 1024.0),
                "rss_anon_mb": round1(n.rss_anon_kb as f64 / 1024.0),
                "rss_file_mb": round1(n.rss_file_kb as f64 / 1024.0),
                "heap_allocated_mb": n.heap_allocated.map(|b| round1(b / MB)),
                "heap_resident_mb": n.heap_resident.map(|b| round1(b / MB)),
                "heap_metadata_mb": n.heap_metadata.map(|b| round1(b / MB)),
                "heap_active_mb": n.heap_active.map(|b| round1(b / MB)),
                "fds": n.fds,
                "threads": n.threads,
                "rocksdb_mb": n.rocksdb_bytes.map(|b| round1(b / MB)),
                "disk_mb": round1(n.disk_bytes as f64 / MB),
                "revision": n.revision,
            })).collect::<Vec<_>>(),
            "ingested": s.progress.ingested,
            "queries": s.progress.queries,
            "watched": s.progress.watched_total(),
        })).collect::<Vec<_>>(),
        "fits": r.fits.iter().map(|f| json!({
            "node": f.node,
            "quantity": f.quantity.key(),
            "basis": f.basis.key(),
            "judged": f.judged(),
            "from_s": round1(f.from_s),
            "unit": f.quantity.unit(),
            "first": f.first,
            "last": f.last,
            "points": f.points,
            "slope_per_h": f.slope_per_h,
            "max_per_h": f.max_per_h,
            "allowance_per_h": f.allowance_per_h,
            "ok": f.failure().is_none(),
        })).collect::<Vec<_>>(),
        "disk": r.disk.iter().map(|d| json!({
            "node": d.node,
            "first_mb": round1(d.first_mb),
            "last_mb": round1(d.last_mb),
            "mb_per_h": d.mb_per_h.map(round1),
            "bytes_per_reading": d.bytes_per_reading.map(round1),
            "marginal_bytes_per_reading": d.marginal.map(round1),
        })).collect::<Vec<_>>(),
        "workload": {
            "ingested": last.ingested,
            "ingest_errors": last.ingest_errors,
            "queries": last.queries,
            "query_errors": last.query_errors,
            "watched": last.watched_total(),
        },
        "stalled": run.stall,
        "chart": chart_written.then(|| args.chart.display().to_string()),
        "failures": r.failures,
        "verdict": if r.failures.is_empty() { "no growth" } else { "failed" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warmup_is_at_most_a_third_and_leaves_samples_to_judge() {
        let (m, s) = (|m: u64| Duration::from_secs(60 * m), Duration::from_secs);
        let t = Timing::new(m(30), s(10), m(5)).unwrap();
        assert_eq!((t.warmup, t.samples, t.judged()), (m(5), 181, 151));
        // 3 minutes: the warm-up is cut to one.
        let t = Timing::new(m(3), s(10), m(5)).unwrap();
        assert_eq!((t.warmup, t.samples, t.judged()), (m(1), 19, 13));
        assert_eq!(Timing::new(s(30), s(10), m(5)).unwrap().judged(), 3);
        let e = Timing::new(s(20), s(10), m(5)).unwrap_err().to_string();
        assert!(e.contains("leaves 2 samples"), "{e}");
        assert!(Timing::new(m(3), Duration::from_millis(500), m(1)).is_err());
    }

    fn node(rss_mb: u64, disk_mb: u64, revision: u64) -> NodeSample {
        NodeSample {
            rss_kb: rss_mb * 1024,
            rss_anon_kb: (rss_mb * 1024).saturating_sub(12 * 1024),
            rss_file_kb: 12 * 1024,
            threads: 40,
            fds: 61,
            table_fds: 12,
            disk_bytes: disk_mb << 20,
            rocksdb_bytes: Some(30.0 * MB),
            budget_bytes: Some(96.0 * MB),
            heap_allocated: Some(38.0 * MB),
            heap_resident: Some(50.0 * MB),
            heap_metadata: Some(3.0 * MB),
            heap_active: Some(42.0 * MB),
            revision: Some(revision),
            forwarded: Some(revision as f64 / 10.0),
        }
    }

    /// Three nodes sampled every minute for an hour; node 2's RSS grows
    /// 12 MB/h, disk grows 1 MB a minute with 10,000 readings a minute.
    fn run() -> Run {
        let samples = (0..=60u64)
            .map(|i| Sample {
                at_s: i as f64 * 60.0,
                nodes: vec![
                    node(100, 10 + i, 10_000 * (i + 1)),
                    node(100 + i / 5, 10 + i, 10_000 * (i + 1)),
                    node(100, 10 + i, 10_000 * (i + 1)),
                ],
                progress: Progress::default(),
            })
            .collect();
        Run {
            samples,
            stall: None,
        }
    }

    fn args() -> BenchSoakArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            soak: BenchSoakArgs,
        }
        Cli::parse_from(["soak", "--duration", "1h"]).soak
    }

    #[test]
    fn a_node_whose_rss_grows_fails_the_run_by_name() {
        let timing = Timing::new(
            Duration::from_secs(3600),
            Duration::from_secs(60),
            Duration::from_secs(300),
        )
        .unwrap();
        let r = Report::of(&args(), &timing, &[1, 2, 3], &run());
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        // The caches are full from the start: RSS is judged after the warm-up.
        assert!(
            r.failures[0].starts_with(
                "node 2: rss kept growing once RocksDB's caches were full (from 0:05:00): +1"
            ),
            "{}",
            r.failures[0]
        );
        assert!(r.failures[0].contains("(threshold 5 MB/h;"));
        // Disk grows 60 MB/h, but per reading it falls: not a failure.
        let d = &r.disk[0];
        assert!((d.mb_per_h.unwrap() - 60.0).abs() < 1e-6, "{d:?}");
        assert!((d.marginal.unwrap() - 104.8576).abs() < 1e-6, "{d:?}");
        let line = summary_line(&r, 3, 112.0);
        assert!(
            line.starts_with(
                "soak: 1h 3 nodes heap beyond RocksDB caches 8 MB (+0.0 MB/h) \
                 rss_max 112 MB (beyond RocksDB caches 82 MB, +1"
            ),
            "{line}"
        );
        assert!(line.contains(" MB/h once they were full) fds"), "{line}");
        assert!(
            line.contains(
                " fds 49 beyond tables (+0.0/h) threads 40 (+0.0/h) disk 70 MB (+60 MB/h, "
            ),
            "{line}"
        );
        assert!(
            line.contains(": FAILED: node 2: rss kept growing"),
            "{line}"
        );
        // Raised above the growth, it passes.
        let mut lenient = args();
        lenient.max_growth_per_hour = vec![(Quantity::Rss, 20.0)];
        let r = Report::of(&lenient, &timing, &[1, 2, 3], &run());
        assert_eq!(r.failures, Vec::<String>::new());
        assert!(summary_line(&r, 3, 112.0)
            .ends_with("rocksdb 30 MB of budget 96 MB (+0.0 MB/h): no growth"));
    }

    /// Half an hour every 10 s: the caches fill from 10 to 52 MB and RSS
    /// follows them (+27 MB/h beyond them), the heap beyond them flat at 8
    /// MB, or not exported.
    fn filling_run(heap: bool) -> Run {
        let samples = (0..=180u64)
            .map(|i| {
                let t = i as f64 * 10.0;
                // Whole KB, so that the heap beyond them is exactly 8 MB.
                let caches_kb = ((10.0 + 42.0 * t / 1800.0) * 1024.0).round();
                let rss_kb = caches_kb + (29.6 + 27.0 * t / 3600.0) * 1024.0;
                let n = NodeSample {
                    rss_kb: rss_kb as u64,
                    rocksdb_bytes: Some(caches_kb * 1024.0),
                    heap_allocated: heap.then_some(caches_kb * 1024.0 + 8.0 * MB),
                    heap_resident: None,
                    ..node(0, 10, 10_000 * (i + 1))
                };
                Sample {
                    at_s: t,
                    nodes: vec![n.clone(), n.clone(), n],
                    progress: Progress::default(),
                }
            })
            .collect();
        Run {
            samples,
            stall: None,
        }
    }

    #[test]
    fn rss_is_reported_not_judged_while_the_caches_fill_and_the_summary_says_so() {
        let timing = Timing::new(
            Duration::from_secs(1800),
            Duration::from_secs(10),
            Duration::from_secs(300),
        )
        .unwrap();
        let r = Report::of(&args(), &timing, &[1, 2, 3], &filling_run(true));
        assert_eq!(r.failures, Vec::<String>::new());
        let line = summary_line(&r, 3, 100.0);
        assert!(
            line.contains(
                "heap beyond RocksDB caches 8 MB (+0.0 MB/h) rss_max 100 MB (beyond RocksDB \
                 caches 43 MB, +27.0 MB/h, not judged: caches still filling) fds"
            ),
            "{line}"
        );
        assert!(line.ends_with(": no growth"), "{line}");
        let table = fits_table(&r.fits).render();
        assert!(table.contains("not judged: caches filling"), "{table}");
        // Without heap_allocated, RSS beyond the caches is judged in the
        // heap's place, and fails: the summary names it.
        let r = Report::of(&args(), &timing, &[1, 2, 3], &filling_run(false));
        assert_eq!(r.failures.len(), 3, "{:?}", r.failures);
        assert!(r.failures[0].starts_with("node 1: rss beyond RocksDB's caches (judged for heap"));
        let line = summary_line(&r, 3, 100.0);
        assert!(
            line.contains(
                " 3 nodes heap not exported (no jemalloc): rss beyond RocksDB caches judged \
                 in its place (+27.0 MB/h) rss_max"
            ),
            "{line}"
        );
        assert!(fits_table(&r.fits).render().contains("rss for heap"));
    }

    #[test]
    fn a_stall_fails_the_run_first() {
        let timing = Timing::new(
            Duration::from_secs(3600),
            Duration::from_secs(60),
            Duration::from_secs(300),
        )
        .unwrap();
        let mut run = run();
        run.stall = Some("no query was answered".into());
        let mut lenient = args();
        lenient.max_growth_per_hour = vec![(Quantity::Rss, 20.0)];
        let r = Report::of(&lenient, &timing, &[1, 2, 3], &run);
        assert_eq!(
            r.failures,
            vec!["the load stalled at 1:00:00: no query was answered".to_string()]
        );
    }

    #[test]
    fn sample_lines_hold_every_node() {
        let s = Sample {
            at_s: 130.2,
            nodes: vec![node(80, 50, 100_000), node(81, 51, 100_000)],
            progress: Progress {
                ingested: 5000,
                queries: 20,
                watched: vec![(100, 900)],
                ..Default::default()
            },
        };
        let line = sample_line(&s, 300.0);
        assert!(line.starts_with("0:02:10 w  80.0/81.0"), "{line}");
        // The heap beyond the caches: 38 - 30 MB.
        assert_eq!(line.split_whitespace().nth(3), Some("8.0/8.0"), "{line}");
        assert!(line.contains("61/61"), "{line}");
        assert!(line.contains("524/535"), "B/reading: {line}");
        assert!(
            line.trim_end()
                .ends_with("100000        5000       20        1000"),
            "{line}"
        );
        assert_eq!(clock(72.0 * 3600.0), "72:00:00");
        assert!(header(3).starts_with("time       rss MB"));
    }
}
