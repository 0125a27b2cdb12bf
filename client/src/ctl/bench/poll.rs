//! `bench poll`: a simulated plant polled by the benchmark's own cluster.
//!
//! It starts, as children in one temp dir (killed however the benchmark
//! ends, like `bench ingest`'s):
//!
//! - a device simulator, `bifrost sim --listen 127.0.0.1:BASE --devices N
//!   --tags T`, on a block of free consecutive ports (device `i` is at port
//!   `BASE + i/247` with unit id `i%247 + 1`);
//! - three `bifrost serve` nodes with `--failure-timeout-ms 3000`, so that a
//!   busy machine does not make the leader move devices around.
//!
//! Then it imports the plant, one `Import` per 2,000 devices: devices
//! `simNNNNN` (`modbus-tcp`, timeout 1 s, no retries, the `--interval` given)
//! and for each the simulator's pattern tags `simNNNNN/sine0`,
//! `simNNNNN/ramp1`, `simNNNNN/random2`, ... at the addresses of the
//! simulator's layout (`bifrost_drivers::sim::device_layout`, mirrored in
//! [`sim_tags`]). It waits until the leader reports every device assigned,
//! the nodes poll all of them (`bifrost_polled_devices`) and the reading
//! revision grows, lets the cluster warm up, and measures over `--duration`,
//! sampling every node once a second:
//!
//! - committed readings/s, **applied on every node**: each node's growth of
//!   `Status.revision` (asked of that node directly, through its own
//!   channel: the revision it has applied; every committed reading takes
//!   one revision) per second; the figure is the slowest node's;
//! - acquired readings/s: the growth of
//!   `bifrost_outbox_acquired_readings_total` (readings written durably to
//!   an outbox), summed over the nodes; more acquired than committed means
//!   the outboxes are growing;
//! - both of those over the whole run and over its **window**, its last
//!   min(60 s, duration / 2) (issue 11 asks for the last 60 s of a 120 s
//!   run: the cluster has settled by then); a node's rate in the window
//!   runs from its first sample at or after the window's start to its last
//!   sample, skipping samples where it did not answer;
//! - outbox depth: the largest `bifrost_outbox_records` (poll records, one
//!   per device poll) seen on any node; and as **seconds of readings**: per
//!   node the largest depth in readings (`acquired - forwarded`, from
//!   `bifrost_outbox_forwarded_readings_total`; an upper bound once records
//!   were dropped) over that node's acquired readings/s over the run, the
//!   largest over the nodes (goal: under 2 s);
//! - dropped: the growth of `bifrost_outbox_dropped_records_total` (poll
//!   records dropped by a full outbox) over the run, summed over the nodes;
//! - missed deadlines: the growth of `bifrost_device_missed_deadlines_total`
//!   over that of `bifrost_device_polls_total`, all series of all nodes;
//! - CPU per node: `utime + stime` from `/proc/PID/stat` over wall time, in
//!   % of one core; peak RSS per node: `VmHWM` from `/proc/PID/status`
//!   (since the node started, so it includes the import).
//!
//! Metrics are read with a plain HTTP/1.0 GET of `/metrics`
//! (`bifrost_testkit::http_get`, no HTTP client crate). Each run prints its
//! figures, whole run and window, and per node; the last line of the text
//! output is
//! `poll: D devices T tags committed R/s acquired A/s outbox_max N dropped D
//! missed P% rss_max M MB (rates over the last W s of each S s run;
//! outbox_max X s of readings)`, with the median over runs of the window
//! rates, the largest outbox, dropped records and missed deadlines of all
//! runs, and the largest peak RSS. Goals of issue 11 that were missed are
//! named on stderr.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bifrost_client::proto::bifrost_client::BifrostClient;
use bifrost_client::proto::{Device, StatusRequest, StatusResponse, Tag};
use bifrost_client::Security;
use bifrost_testkit::{http_get, Cluster, SimOptions, UNITS_PER_PORT};
use clap::Args;
use futures::future::join_all;
use serde_json::json;
use tonic::transport::{Channel, Endpoint};

use super::common::{
    create_cluster, declared, explain, family_sum, median, round1, round2, server_binary,
    start_nodes, warn_if_debug_build, OwnCluster,
};
use crate::ctl::output::{print_json, print_line, Output};
use crate::ctl::{client_for, Common, Ctx};
/// Devices per `Import` call.
const IMPORT_CHUNK: u32 = 2_000;
/// Extra arguments of the benchmark's nodes (also `bench soak`'s).
pub(super) const NODE_ARGS: &[&str] = &["--failure-timeout-ms", "3000"];

const POLLS: &str = "bifrost_device_polls_total";
const MISSED: &str = "bifrost_device_missed_deadlines_total";
const SHED: &str = "bifrost_polls_shed_total";
const OUTBOX: &str = "bifrost_outbox_records";
const ACQUIRED: &str = "bifrost_outbox_acquired_readings_total";
pub(super) const FORWARDED: &str = "bifrost_outbox_forwarded_readings_total";
const DROPPED: &str = "bifrost_outbox_dropped_records_total";
const POLLED_DEVICES: &str = "bifrost_polled_devices";
const CONNECTIONS: &str = "bifrost_device_connections";

#[derive(Args, Debug, Clone)]
pub struct BenchPollArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub devices: u32,
    /// Tags per device (sine f32, ramp u16, random u16 in rotation).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub tags: u16,
    /// Length of each measured run; committed and acquired are also
    /// measured over its last min(60 s, duration / 2).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Number of runs; the summary has the median of the runs' rates, and
    /// the largest outbox, dropped records and missed deadlines of all runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Poll interval of every device.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Devices (Modbus unit ids) behind each simulated endpoint, like an
    /// RTU gateway's: 10,000 devices at 100 make 100 endpoints.
    #[arg(long, default_value_t = UNITS_PER_PORT, value_parser = clap::value_parser!(u32).range(1..=247))]
    pub units_per_endpoint: u32,
    /// Requests in flight at once on each endpoint's connection (the
    /// devices' `modbus.pipeline` label).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub pipeline: u16,
    #[command(flatten)]
    pub own: OwnCluster,
    /// How long the cluster may take, after the import, to assign and poll
    /// every device.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub settle_timeout: Duration,
    /// Polling time left to the cluster after it settled, before measuring.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    #[command(flatten)]
    pub common: Common,
}

pub async fn poll(ctx: &Ctx, args: BenchPollArgs) -> anyhow::Result<()> {
    if ctx.endpoints_explicit {
        bail!("bench poll always starts its own cluster (it measures the nodes' processes); drop --endpoints");
    }
    let interval_ms = u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX);
    if interval_ms == 0 {
        bail!("--interval must be at least 1ms");
    }
    if args.duration < Duration::from_secs(1) {
        bail!("--duration must be at least 1s");
    }
    warn_if_debug_build("its own CPU use is higher");
    let exe = server_binary(args.own.bifrost.as_deref())?;
    eprintln!("bench: server binary {}", exe.display());
    let mut cluster = create_cluster(&exe, args.own.keep, false, NODE_ARGS)?;
    bench(ctx, &args, interval_ms, &mut cluster)
        .await
        .map_err(|e| explain(e, Some(&cluster)))
}

/// A simulated plant polled by the benchmark's own cluster, and how long
/// that cluster may take to start and then to poll all of it (`bench poll`,
/// `bench soak`).
pub(super) struct Plant {
    pub devices: u32,
    pub tags: u16,
    pub interval_ms: u64,
    pub units_per_endpoint: u32,
    pub pipeline: u16,
    pub startup_timeout: Duration,
    pub settle_timeout: Duration,
}

/// Starts the simulator of `plant` and the nodes of `cluster`, imports the
/// plant and waits until every device is assigned and polled and readings
/// flow. Returns a probe of each node and the simulator's pid.
pub(super) async fn start_plant(
    ctx: &Ctx,
    cluster: &mut Cluster,
    plant: &Plant,
) -> anyhow::Result<(Vec<NodeProbe>, u32)> {
    // The simulator first: its ports are then taken before the nodes start.
    let sim_opts = SimOptions {
        devices: plant.devices,
        tags: plant.tags,
        units_per_port: plant.units_per_endpoint,
    };
    let sim = cluster.start_sim(&sim_opts).await?;
    let (base, sim_pid) = (sim.port(), sim.pid().context("the simulator's pid")?);
    eprintln!(
        "bench: simulator: {} devices x {} tags on 127.0.0.1:{base}..{} (pid {sim_pid})",
        plant.devices,
        plant.tags,
        sim.last_port()
    );

    start_nodes(cluster, plant.startup_timeout).await?;
    let nodes: Vec<NodeProbe> = cluster
        .nodes()
        .map(|n| {
            let pid = n
                .pid()
                .with_context(|| format!("node {} is not running", n.id))?;
            NodeProbe::new(n.id, &n.grpc, &n.http, pid)
        })
        .collect::<anyhow::Result<_>>()?;

    import_plant(ctx, cluster, plant, base).await?;
    settle(cluster, &nodes, plant).await?;
    Ok((nodes, sim_pid))
}

async fn bench(
    ctx: &Ctx,
    args: &BenchPollArgs,
    interval_ms: u64,
    cluster: &mut Cluster,
) -> anyhow::Result<()> {
    let plant = Plant {
        devices: args.devices,
        tags: args.tags,
        interval_ms,
        units_per_endpoint: args.units_per_endpoint,
        pipeline: args.pipeline,
        startup_timeout: args.own.startup_timeout,
        settle_timeout: args.settle_timeout,
    };
    let (nodes, sim_pid) = start_plant(ctx, cluster, &plant).await?;
    if !args.warmup.is_zero() {
        eprintln!(
            "bench: warming up for {}",
            humantime::format_duration(args.warmup)
        );
        tokio::time::sleep(args.warmup).await;
    }

    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let r = one_run(cluster, &nodes, sim_pid, args, run).await?;
        if ctx.output != Output::Json {
            for line in run_lines(&r, args, run) {
                print_line(line)?;
            }
        }
        runs.push(r);
    }

    let summary = Summary::of(args, &runs);
    for goal in summary.goals_missed() {
        eprintln!("bench: goal missed: {goal}");
    }
    match ctx.output {
        Output::Text | Output::Csv => print_line(summary.line())?,
        Output::Json => print_json(&json!({
            "devices": args.devices,
            "tags": args.tags,
            "interval_ms": interval_ms,
            "duration_s": args.duration.as_secs_f64(),
            "window_s": round1(summary.window.as_secs_f64()),
            "expected_readings_per_s": expected_per_s(args),
            "runs": runs.iter().map(|r| run_json(r, args)).collect::<Vec<_>>(),
            "committed_per_s": summary.committed_per_s.round() as u64,
            "acquired_per_s": summary.acquired_per_s.round() as u64,
            "outbox_max": summary.outbox_max as u64,
            "outbox_max_s": summary.outbox_max_s.map(round2),
            "dropped": summary.dropped as u64,
            "missed_pct": round2(summary.missed_pct),
            "rss_max_mb": summary.rss_max_mb.round() as u64,
        }))?,
    }
    Ok(())
}

/// Readings per second if every poll stored a reading of every tag.
fn expected_per_s(args: &BenchPollArgs) -> u64 {
    (f64::from(args.devices) * f64::from(args.tags) / args.interval.as_secs_f64()).round() as u64
}

/// Missed deadlines (shed polls included) in % of the polls due: those
/// made and those missed.
fn missed_pct(missed: f64, polls: f64) -> f64 {
    if polls > 0.0 {
        100.0 * missed / (polls + missed)
    } else {
        // Nothing polled at all: every deadline was missed.
        100.0
    }
}

/// The figures of the summary line, over all runs: the median of the runs'
/// committed and acquired rates (each over its run's window), the largest
/// outbox, dropped records and missed deadlines of all runs together, and
/// the largest peak RSS of any node.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    devices: u32,
    tags: u16,
    duration: Duration,
    window: Duration,
    committed_per_s: f64,
    acquired_per_s: f64,
    outbox_max: f64,
    outbox_max_s: Option<f64>,
    dropped: f64,
    missed_pct: f64,
    /// Polls shed by back-pressure, in % of the polls due.
    shed_pct: f64,
    /// Leader elections during the runs: the largest growth of a node's
    /// term over a run.
    elections: u64,
    rss_max_mb: f64,
    /// Simulated endpoints, and the most device connections one node held.
    endpoints: u32,
    connections_max: f64,
}

impl Summary {
    fn of(args: &BenchPollArgs, runs: &[RunResult]) -> Summary {
        let max = |f: fn(&RunResult) -> f64| runs.iter().map(f).fold(0.0, f64::max);
        let sum = |f: fn(&RunResult) -> f64| runs.iter().map(f).sum::<f64>();
        Summary {
            devices: args.devices,
            tags: args.tags,
            duration: args.duration,
            window: window(args.duration),
            committed_per_s: median(runs.iter().map(|r| r.committed_window_per_s).collect()),
            acquired_per_s: median(runs.iter().map(|r| r.acquired_window_per_s).collect()),
            outbox_max: max(|r| r.outbox_max),
            outbox_max_s: runs.iter().filter_map(|r| r.outbox_max_s).reduce(f64::max),
            dropped: sum(|r| r.dropped),
            missed_pct: missed_pct(sum(|r| r.missed), sum(|r| r.polls)),
            shed_pct: missed_pct(sum(|r| r.shed), sum(|r| r.polls + r.missed - r.shed)),
            elections: runs.iter().map(|r| r.elections).max().unwrap_or(0),
            rss_max_mb: runs
                .iter()
                .flat_map(|r| r.nodes.iter().map(|n| n.hwm_mb))
                .fold(0.0, f64::max),
            endpoints: args.devices.div_ceil(args.units_per_endpoint),
            connections_max: runs
                .iter()
                .flat_map(|r| r.nodes.iter().map(|n| n.connections_max))
                .fold(0.0, f64::max),
        }
    }

    /// `poll: D devices T tags committed R/s acquired A/s outbox_max N
    /// dropped D missed P% rss_max M MB (...)`.
    fn line(&self) -> String {
        format!(
            "poll: {} devices {} tags committed {}/s acquired {}/s outbox_max {} dropped {} \
             missed {:.2}% rss_max {} MB (rates over the last {} s of each {} s run; outbox_max {}; \
             shed {:.2}% of due polls; {} elections; {} endpoints, at most {} connections per node)",
            self.devices,
            self.tags,
            self.committed_per_s.round() as u64,
            self.acquired_per_s.round() as u64,
            self.outbox_max as u64,
            self.dropped as u64,
            self.missed_pct,
            self.rss_max_mb.round() as u64,
            secs(self.window),
            secs(self.duration),
            outbox_seconds_text(self.outbox_max_s),
            self.shed_pct,
            self.elections,
            self.endpoints,
            self.connections_max as u64,
        )
    }

    /// Issue 11's goals this run missed, one sentence each.
    fn goals_missed(&self) -> Vec<String> {
        let mut missed = Vec::new();
        if self.committed_per_s < 0.99 * self.acquired_per_s {
            missed.push(format!(
                "committed {:.0}/s is under 99% of acquired {:.0}/s",
                self.committed_per_s, self.acquired_per_s
            ));
        }
        if self.outbox_max_s.is_some_and(|s| s >= 2.0) {
            missed.push(format!(
                "outbox_max {} (goal: under 2 s)",
                outbox_seconds_text(self.outbox_max_s)
            ));
        }
        if self.dropped > 0.0 {
            missed.push(format!("{} records dropped (goal: 0)", self.dropped));
        }
        if self.missed_pct >= 1.0 {
            missed.push(format!(
                "{:.2}% polls missed (goal: under 1%)",
                self.missed_pct
            ));
        }
        if self.elections > 0 {
            missed.push(format!(
                "{} leader elections during a run (goal: a stable leader)",
                self.elections
            ));
        }
        if self.rss_max_mb > 150.0 {
            missed.push(format!(
                "rss_max {:.0} MB (goal: 100 MB, at most 150 MB)",
                self.rss_max_mb
            ));
        }
        missed
    }
}

// ---------------------------------------------------------------- the plant

/// The simulator's pattern tags of one device: (name, address, data type).
/// Mirrors `bifrost_drivers::sim::device_layout`, which is the truth: the
/// u32 counter is at hr:0-1, then tag `k` follows pattern `k % 3` (sine f32
/// over two registers, ramp u16, random u16), packed from hr:2.
pub fn sim_tags(tags: u16) -> Vec<(String, String, &'static str)> {
    let mut at: u32 = 2;
    (0..tags)
        .map(|k| {
            let (pattern, data_type, registers) = match k % 3 {
                0 => ("sine", "f32", 2),
                1 => ("ramp", "u16", 1),
                _ => ("random", "u16", 1),
            };
            let tag = (format!("{pattern}{k}"), format!("hr:{at}"), data_type);
            at += registers;
            tag
        })
        .collect()
}

/// How the simulated plant's devices are reached and polled.
struct PlantShape {
    base_port: u16,
    units_per_endpoint: u32,
    interval_ms: u64,
    pipeline: u16,
}

/// Devices `range` of the simulated plant and their tags.
fn plant(
    shape: &PlantShape,
    range: Range<u32>,
    layout: &[(String, String, &'static str)],
) -> (Vec<Device>, Vec<Tag>) {
    let per = shape.units_per_endpoint;
    let mut devices = Vec::with_capacity(range.len());
    let mut tags = Vec::with_capacity(range.len() * layout.len());
    for i in range {
        let name = format!("sim{i:05}");
        devices.push(Device {
            name: name.clone(),
            protocol: "modbus-tcp".into(),
            endpoint: format!("127.0.0.1:{}", u32::from(shape.base_port) + i / per),
            unit_id: i % per + 1,
            poll_interval_ms: shape.interval_ms,
            timeout_ms: 1000,
            retries: 0,
            enabled: true,
            labels: [
                ("bench".to_string(), "poll".to_string()),
                ("modbus.pipeline".to_string(), shape.pipeline.to_string()),
            ]
            .into(),
            revision: 0,
        });
        for (tag, address, data_type) in layout {
            tags.push(Tag {
                name: format!("{name}/{tag}"),
                device: name.clone(),
                address: address.clone(),
                data_type: (*data_type).into(),
                ..Default::default()
            });
        }
    }
    (devices, tags)
}

async fn import_plant(ctx: &Ctx, cluster: &Cluster, spec: &Plant, base: u16) -> anyhow::Result<()> {
    // Our own cluster: plain text, like the probes.
    let client = client_for(cluster.endpoints(), ctx.timeout, Security::Plain, None)?;
    let layout = sim_tags(spec.tags);
    let shape = PlantShape {
        base_port: base,
        units_per_endpoint: spec.units_per_endpoint,
        interval_ms: spec.interval_ms,
        pipeline: spec.pipeline,
    };
    let started = Instant::now();
    let mut done = 0u32;
    while done < spec.devices {
        let end = (done + IMPORT_CHUNK).min(spec.devices);
        let (devices, tags) = plant(&shape, done..end, &layout);
        let sent = Instant::now();
        let r = client
            .import(devices, tags)
            .await
            .with_context(|| format!("importing devices {done}..{end}"))?;
        done = end;
        eprintln!(
            "bench: imported {done}/{} devices ({} devices, {} tags in {:.1}s)",
            spec.devices,
            r.devices,
            r.tags,
            sent.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "bench: plant imported in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ------------------------------------------------------------------ probes

/// One node as the benchmark watches it: its own gRPC channel (so `Status`
/// is answered by this node, not the leader), its HTTP port and its pid.
pub(super) struct NodeProbe {
    pub id: u64,
    pub http: String,
    pub pid: u32,
    stub: BifrostClient<Channel>,
}

/// What one node said at one moment.
#[derive(Debug, Clone, Default)]
struct NodeSample {
    /// From `Status`, when the node answered.
    state: Option<String>,
    /// The reading revision this node has applied; `None`: no answer.
    revision: Option<u64>,
    assigned: usize,
    /// Sums over all series of the families.
    polls: f64,
    missed: f64,
    shed: f64,
    /// The node's Raft term, when it answered.
    term: Option<u64>,
    outbox: f64,
    acquired: f64,
    forwarded: f64,
    dropped: f64,
    polled_devices: Option<f64>,
    /// Device connections the node holds open.
    connections: f64,
    cpu_ticks: u64,
    hwm_kb: u64,
    /// Families the benchmark reads that have no lines on this node.
    undeclared: Vec<&'static str>,
}

impl NodeProbe {
    fn new(id: u64, grpc: &str, http: &str, pid: u32) -> anyhow::Result<NodeProbe> {
        let channel = Endpoint::from_shared(format!("http://{grpc}"))?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        Ok(NodeProbe {
            id,
            http: http.to_string(),
            pid,
            // Status carries every assignment: 10,000 devices are ~300 KB.
            stub: BifrostClient::new(channel).max_decoding_message_size(64 << 20),
        })
    }

    /// This node's `Status`; `None` when it did not answer within 6 s.
    pub(super) async fn status(&self) -> Option<StatusResponse> {
        let mut stub = self.stub.clone();
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_secs(5));
        match tokio::time::timeout(Duration::from_secs(6), stub.status(req)).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }

    pub(super) async fn metrics(&self) -> anyhow::Result<String> {
        http_get(&self.http, "/metrics", Duration::from_secs(10))
            .await
            .with_context(|| format!("scraping node {}", self.id))
    }

    async fn sample(&self) -> anyhow::Result<NodeSample> {
        let (status, metrics) = tokio::join!(self.status(), self.metrics());
        let metrics = metrics?;
        let (cpu_ticks, hwm_kb) = proc_usage(self.pid)?;
        let sum = |name| family_sum(&metrics, name).map(|(s, _)| s).unwrap_or(0.0);
        Ok(NodeSample {
            state: status.as_ref().map(|s| s.state.clone()),
            revision: status.as_ref().map(|s| s.revision),
            assigned: status.as_ref().map_or(0, |s| s.assignments.len()),
            polls: sum(POLLS),
            missed: sum(MISSED),
            shed: sum(SHED),
            term: status.as_ref().map(|s| s.term),
            outbox: sum(OUTBOX),
            acquired: sum(ACQUIRED),
            forwarded: sum(FORWARDED),
            dropped: sum(DROPPED),
            polled_devices: family_sum(&metrics, POLLED_DEVICES).map(|(s, _)| s),
            connections: sum(CONNECTIONS),
            cpu_ticks,
            hwm_kb,
            undeclared: [POLLS, MISSED, OUTBOX]
                .into_iter()
                .filter(|f| !declared(&metrics, f))
                .collect(),
        })
    }
}

/// Every node at one moment.
struct Sample {
    at: Instant,
    nodes: Vec<NodeSample>,
}

impl Sample {
    async fn take(nodes: &[NodeProbe]) -> anyhow::Result<Sample> {
        let at = Instant::now();
        let nodes = join_all(nodes.iter().map(NodeProbe::sample))
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Sample { at, nodes })
    }

    /// The leader's reading revision (all nodes converge on the same; a
    /// node that lags only makes a revision lower), or the highest one when
    /// no node says it leads.
    fn revision(&self) -> u64 {
        self.leader().and_then(|n| n.revision).unwrap_or_else(|| {
            self.nodes
                .iter()
                .filter_map(|n| n.revision)
                .max()
                .unwrap_or(0)
        })
    }

    /// The lowest revision a node that answered has applied.
    fn slowest_revision(&self) -> Option<u64> {
        self.nodes.iter().filter_map(|n| n.revision).min()
    }

    fn leader(&self) -> Option<&NodeSample> {
        self.nodes
            .iter()
            .find(|n| n.state.as_deref() == Some("Leader"))
    }

    fn assigned(&self) -> usize {
        self.leader()
            .map(|n| n.assigned)
            .unwrap_or_else(|| self.nodes.iter().map(|n| n.assigned).max().unwrap_or(0))
    }

    /// Devices the nodes poll, if they report it.
    fn polled(&self) -> Option<f64> {
        let v: Vec<f64> = self.nodes.iter().filter_map(|n| n.polled_devices).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }
}

// ------------------------------------------------------------------ settle

async fn settle(cluster: &Cluster, nodes: &[NodeProbe], plant: &Plant) -> anyhow::Result<()> {
    let started = Instant::now();
    let want = plant.devices as usize;
    let mut last_rev: Option<u64> = None;
    let mut good = 0;
    let mut said = Instant::now() - Duration::from_secs(10);
    loop {
        cluster.check_alive()?;
        let s = Sample::take(nodes).await?;
        let assigned = s.assigned();
        let polled = s.polled();
        let rev = s.revision();
        let flowing = last_rev.is_some_and(|r| rev > r);
        last_rev = Some(rev);
        let all_polled = polled.is_none_or(|p| p >= want as f64);
        if assigned >= want && all_polled && flowing {
            good += 1;
            // Two growing samples in a row: readings flow, not a last trickle.
            if good >= 2 {
                eprintln!(
                    "bench: all {want} devices assigned and polled, readings flowing (revision {rev}) after {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
        } else {
            good = 0;
        }
        let polled_text = polled.map_or("?".to_string(), |p| format!("{p:.0}"));
        if started.elapsed() > plant.settle_timeout {
            bail!(
                "after {}: {assigned}/{want} devices assigned, {polled_text} polled, revision {rev}; \
                 logs are in {} (use --keep to keep them)",
                humantime::format_duration(plant.settle_timeout),
                cluster.dir().display()
            );
        }
        if said.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "bench: settling ({:.0}s): {assigned}/{want} devices assigned, {polled_text} polled, revision {rev}",
                started.elapsed().as_secs_f64()
            );
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// --------------------------------------------------------------------- run

/// The longest end of a run that rates are measured over (issue 11 asks
/// for committed and acquired "over the last 60 s").
const WINDOW_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct NodeResult {
    id: u64,
    role: String,
    cpu_pct: f64,
    hwm_mb: f64,
    /// Growth of this node's applied revision per second, over the run and
    /// over its window; `None` when the node did not answer twice.
    committed_per_s: Option<f64>,
    committed_window_per_s: Option<f64>,
    /// Readings written to this node's outbox per second, over the run.
    acquired_per_s: f64,
    /// The largest `bifrost_outbox_records` seen.
    outbox_max: f64,
    /// The largest outbox depth in readings seen (acquired - forwarded).
    outbox_readings_max: f64,
    /// Poll records dropped from the outbox during the run.
    dropped: f64,
    polled_devices: Option<f64>,
    /// The most device connections the node held open at once.
    connections_max: f64,
    polls: f64,
    missed: f64,
    shed: f64,
    /// Growth of the node's term over the run.
    elections: u64,
}

#[derive(Debug, Clone)]
struct RunResult {
    elapsed: Duration,
    /// The end of the run that the `*_window_per_s` rates are over.
    window: Duration,
    /// Readings applied on every node per second: the slowest node's.
    committed_per_s: f64,
    committed_window_per_s: f64,
    /// Readings written to the outboxes per second, all nodes together.
    acquired_per_s: f64,
    acquired_window_per_s: f64,
    outbox_max: f64,
    /// The deepest outbox in seconds of its own node's readings.
    outbox_max_s: Option<f64>,
    dropped: f64,
    polls: f64,
    missed: f64,
    shed: f64,
    elections: u64,
    nodes: Vec<NodeResult>,
    sim_cpu_pct: f64,
    sim_hwm_mb: f64,
}

async fn one_run(
    cluster: &Cluster,
    nodes: &[NodeProbe],
    sim_pid: u32,
    args: &BenchPollArgs,
    run: u32,
) -> anyhow::Result<RunResult> {
    let (sim0, _) = proc_usage(sim_pid)?;
    let samples = sample_run(cluster, nodes, args.duration, run).await?;
    let (sim1, sim_hwm) = proc_usage(sim_pid)?;
    let last = samples.last().expect("a run has two samples");
    warn_missing_families(nodes, last, run);
    let elapsed = last.at.duration_since(samples[0].at);
    let window = window(args.duration);
    let from = (args.duration - window).as_secs_f64();
    let results: Vec<NodeResult> = nodes
        .iter()
        .enumerate()
        .map(|(k, probe)| node_result(probe.id, &samples, k, from))
        .collect();
    let acquired_window: Vec<Option<f64>> = (0..nodes.len())
        .map(|k| rate_since(&series(&samples, k, |n| Some(n.acquired)), from))
        .collect();
    let cpu = |t0: u64, t1: u64| cpu_pct(t0, t1, elapsed);
    Ok(RunResult {
        elapsed,
        window,
        committed_per_s: slowest(results.iter().map(|n| n.committed_per_s)).unwrap_or(0.0),
        committed_window_per_s: slowest(results.iter().map(|n| n.committed_window_per_s))
            .unwrap_or(0.0),
        acquired_per_s: results.iter().map(|n| n.acquired_per_s).sum(),
        acquired_window_per_s: acquired_window.iter().flatten().sum(),
        outbox_max: results.iter().map(|n| n.outbox_max).fold(0.0, f64::max),
        outbox_max_s: results
            .iter()
            .filter_map(|n| outbox_seconds(n.outbox_readings_max, n.acquired_per_s))
            .reduce(f64::max),
        dropped: results.iter().map(|n| n.dropped).sum(),
        polls: results.iter().map(|n| n.polls).sum(),
        missed: results.iter().map(|n| n.missed).sum(),
        shed: results.iter().map(|n| n.shed).sum(),
        elections: results.iter().map(|n| n.elections).max().unwrap_or(0),
        nodes: results,
        sim_cpu_pct: cpu(sim0, sim1),
        sim_hwm_mb: sim_hwm as f64 / 1024.0,
    })
}

/// Every node, once a second for `duration` (the first and last samples
/// `duration` apart), with a progress line on stderr each time.
async fn sample_run(
    cluster: &Cluster,
    nodes: &[NodeProbe],
    duration: Duration,
    run: u32,
) -> anyhow::Result<Vec<Sample>> {
    let s0 = Sample::take(nodes).await?;
    let (start, rev0) = (s0.at, s0.slowest_revision().unwrap_or(0));
    let stop = start + duration;
    let mut samples = vec![s0];
    let mut next = start + Duration::from_secs(1);
    while next < stop {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_secs(1);
        cluster.check_alive()?;
        let s = Sample::take(nodes).await?;
        let secs = s.at.duration_since(start).as_secs_f64();
        let committed = s.slowest_revision().unwrap_or(0).saturating_sub(rev0);
        eprintln!(
            "bench: run {run}: {secs:.0}s, {committed} readings committed on every node ({:.0}/s), outbox {}",
            committed as f64 / secs.max(0.001),
            s.nodes
                .iter()
                .map(|n| format!("{:.0}", n.outbox))
                .collect::<Vec<_>>()
                .join("/")
        );
        samples.push(s);
    }
    tokio::time::sleep_until(stop.into()).await;
    samples.push(Sample::take(nodes).await?);
    Ok(samples)
}

/// Node `k`'s figures over a run's samples; rates in the window are from
/// `from` seconds after the first sample.
fn node_result(id: u64, samples: &[Sample], k: usize, from: f64) -> NodeResult {
    let (first, last) = (&samples[0].nodes[k], &samples[samples.len() - 1].nodes[k]);
    let elapsed = samples[samples.len() - 1].at.duration_since(samples[0].at);
    let revisions = series(samples, k, |n| n.revision.map(|r| r as f64));
    let max_of =
        |f: fn(&NodeSample) -> f64| samples.iter().map(|s| f(&s.nodes[k])).fold(0.0, f64::max);
    NodeResult {
        id,
        role: last.state.clone().unwrap_or_else(|| "no answer".into()),
        cpu_pct: cpu_pct(first.cpu_ticks, last.cpu_ticks, elapsed),
        hwm_mb: last.hwm_kb as f64 / 1024.0,
        committed_per_s: rate_since(&revisions, 0.0),
        committed_window_per_s: rate_since(&revisions, from),
        acquired_per_s: rate_since(&series(samples, k, |n| Some(n.acquired)), 0.0).unwrap_or(0.0),
        outbox_max: max_of(|n| n.outbox),
        outbox_readings_max: max_of(|n| (n.acquired - n.forwarded).max(0.0)),
        dropped: growth(first.dropped, last.dropped),
        polled_devices: last.polled_devices,
        connections_max: max_of(|n| n.connections),
        polls: growth(first.polls, last.polls),
        missed: growth(first.missed, last.missed),
        shed: growth(first.shed, last.shed),
        elections: term_growth(samples, k),
    }
}

/// How far node `k`'s term grew between its first and last answers.
fn term_growth(samples: &[Sample], k: usize) -> u64 {
    let terms: Vec<u64> = samples.iter().filter_map(|s| s.nodes[k].term).collect();
    match (terms.first(), terms.last()) {
        (Some(a), Some(b)) => b.saturating_sub(*a),
        _ => 0,
    }
}

/// A per-node family with no lines at all until its first series (a node
/// that polls nothing, a deadline never missed) is normal, so only a
/// family that no node exports is worth a word; the outbox gauge is always
/// there.
fn warn_missing_families(nodes: &[NodeProbe], last: &Sample, run: u32) {
    for family in [POLLS, MISSED, OUTBOX] {
        let missing: Vec<String> = nodes
            .iter()
            .zip(&last.nodes)
            .filter(|(_, n)| n.undeclared.contains(&family))
            .map(|(p, _)| p.id.to_string())
            .collect();
        if family == OUTBOX && !missing.is_empty() {
            eprintln!(
                "bench: warning: node(s) {} export no {family}",
                missing.join(", ")
            );
        } else if missing.len() == nodes.len() {
            eprintln!(
                "bench: note: no node exports {family} in run {run} (no series yet, or the metric was renamed); counted as 0"
            );
        }
    }
}

fn run_lines(r: &RunResult, args: &BenchPollArgs, run: u32) -> Vec<String> {
    let last = format!("last {} s", secs(r.window));
    let mut lines = vec![format!(
        "run {run}/{}: {:.1} s: committed on every node {:.0}/s ({last}: {:.0}/s), acquired {:.0}/s \
         ({last}: {:.0}/s; every tag of every poll: {}/s), outbox_max {:.0} records ({}), \
         dropped {:.0} records, {:.0} polls (on schedule: {:.0}), {:.0} missed deadlines ({:.2}%)",
        args.runs,
        r.elapsed.as_secs_f64(),
        r.committed_per_s,
        r.committed_window_per_s,
        r.acquired_per_s,
        r.acquired_window_per_s,
        expected_per_s(args),
        r.outbox_max,
        outbox_seconds_text(r.outbox_max_s),
        r.dropped,
        r.polls,
        expected_polls(r, args),
        r.missed,
        missed_pct(r.missed, r.polls),
    )];
    lines.extend(r.nodes.iter().map(|n| node_line(n, &last)));
    lines.push(format!(
        "  simulator: cpu {:.1}%  rss_peak {:.0} MB",
        r.sim_cpu_pct, r.sim_hwm_mb
    ));
    lines
}

fn node_line(n: &NodeResult, last: &str) -> String {
    let rate = |r: Option<f64>| r.map_or("?".into(), |r| format!("{r:.0}"));
    format!(
        "  node {} ({}): committed {}/s ({last}: {}/s)  acquired {:.0}/s  cpu {:.1}%  rss_peak {:.0} MB  \
         outbox_max {:.0} records, {:.0} readings ({})  dropped {:.0}  devices {}  connections {:.0}  polls {:.0}  missed {:.0}",
        n.id,
        n.role.to_lowercase(),
        rate(n.committed_per_s),
        rate(n.committed_window_per_s),
        n.acquired_per_s,
        n.cpu_pct,
        n.hwm_mb,
        n.outbox_max,
        n.outbox_readings_max,
        outbox_seconds_text(outbox_seconds(n.outbox_readings_max, n.acquired_per_s)),
        n.dropped,
        n.polled_devices.map_or("?".into(), |d| format!("{d:.0}")),
        n.connections_max,
        n.polls,
        n.missed
    )
}

/// Polls due in a run if every device was polled on every tick. Fewer
/// polls than this are deadlines missed too, even when the nodes' counter
/// (which counts polls that ran longer than the interval) does not show them.
fn expected_polls(r: &RunResult, args: &BenchPollArgs) -> f64 {
    f64::from(args.devices) * r.elapsed.as_secs_f64() / args.interval.as_secs_f64()
}

fn run_json(r: &RunResult, args: &BenchPollArgs) -> serde_json::Value {
    json!({
        "elapsed_s": round1(r.elapsed.as_secs_f64()),
        "window_s": round1(r.window.as_secs_f64()),
        "committed_per_s": r.committed_per_s.round() as u64,
        "committed_window_per_s": r.committed_window_per_s.round() as u64,
        "acquired_per_s": r.acquired_per_s.round() as u64,
        "acquired_window_per_s": r.acquired_window_per_s.round() as u64,
        "outbox_max": r.outbox_max as u64,
        "outbox_max_s": r.outbox_max_s.map(round2),
        "dropped": r.dropped as u64,
        "polls": r.polls as u64,
        "expected_polls": expected_polls(r, args).round() as u64,
        "missed": r.missed as u64,
        "missed_pct": round2(missed_pct(r.missed, r.polls)),
        "nodes": r.nodes.iter().map(|n| json!({
            "id": n.id,
            "role": n.role.to_lowercase(),
            "committed_per_s": n.committed_per_s.map(|r| r.round() as u64),
            "committed_window_per_s": n.committed_window_per_s.map(|r| r.round() as u64),
            "acquired_per_s": n.acquired_per_s.round() as u64,
            "cpu_pct": round1(n.cpu_pct),
            "rss_peak_mb": n.hwm_mb.round() as u64,
            "outbox_max": n.outbox_max as u64,
            "outbox_readings_max": n.outbox_readings_max as u64,
            "outbox_max_s": outbox_seconds(n.outbox_readings_max, n.acquired_per_s).map(round2),
            "dropped": n.dropped as u64,
            "polled_devices": n.polled_devices.map(|d| d as u64),
            "connections_max": n.connections_max as u64,
            "polls": n.polls as u64,
            "missed": n.missed as u64,
        })).collect::<Vec<_>>(),
        "simulator": {"cpu_pct": round1(r.sim_cpu_pct), "rss_peak_mb": r.sim_hwm_mb.round() as u64},
    })
}

// ----------------------------------------------------------------- figures

/// The end of a run that committed and acquired are measured over: its
/// last min(60 s, duration / 2), so a short run still has a settled half.
fn window(duration: Duration) -> Duration {
    WINDOW_MAX.min(duration / 2)
}

/// One node's value of a figure at each sample: (seconds since the first
/// sample, value when known).
fn series(
    samples: &[Sample],
    k: usize,
    f: impl Fn(&NodeSample) -> Option<f64>,
) -> Vec<(f64, Option<f64>)> {
    let t0 = samples[0].at;
    samples
        .iter()
        .map(|s| (s.at.duration_since(t0).as_secs_f64(), f(&s.nodes[k])))
        .collect()
}

/// Growth per second of a counter from its first known point at or after
/// `from` seconds to its last known point; `None` without two such points
/// apart in time. (A node that did not answer one sample still has a rate
/// from the ones it answered.)
fn rate_since(points: &[(f64, Option<f64>)], from: f64) -> Option<f64> {
    let mut known = points.iter().filter_map(|&(t, v)| Some((t, v?)));
    let (t0, v0) = known.find(|&(t, _)| t >= from)?;
    let (t1, v1) = known.next_back()?;
    (t1 > t0).then(|| growth(v0, v1) / (t1 - t0))
}

/// The slowest node's rate: what every node applied. Nodes without a
/// figure are left out; `None` when no node has one.
fn slowest(rates: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    rates.into_iter().flatten().reduce(f64::min)
}

/// How much a counter grew (never negative: a counter only goes down when
/// its node restarted).
fn growth(first: f64, last: f64) -> f64 {
    (last - first).max(0.0)
}

/// An outbox depth in readings as seconds of its node's acquired readings;
/// `None` for a node that acquired nothing.
fn outbox_seconds(readings: f64, acquired_per_s: f64) -> Option<f64> {
    (acquired_per_s > 0.0).then(|| readings / acquired_per_s)
}

fn outbox_seconds_text(s: Option<f64>) -> String {
    s.map_or("no readings acquired".into(), |s| {
        format!("{s:.2} s of readings")
    })
}

fn cpu_pct(t0: u64, t1: u64, wall: Duration) -> f64 {
    100.0 * t1.saturating_sub(t0) as f64 / clock_ticks_per_s() / wall.as_secs_f64().max(1e-9)
}

/// Seconds with at most one decimal and no trailing `.0`.
fn secs(d: Duration) -> f64 {
    round1(d.as_secs_f64())
}

// ------------------------------------------------------- /proc and /metrics

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (utime + stime in clock ticks, VmHWM in kB) of a process.
fn proc_usage(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let ticks = parse_stat_cpu(&stat).ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    Ok((ticks, parse_status_value(&status, "VmHWM:").unwrap_or(0)))
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are
/// counted from the last `)`.
fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, index 11 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The number on a line of `/proc/PID/status`: `VmHWM:    61232 kB` (in
/// kB) or `Threads:\t41`.
pub(super) fn parse_status_value(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_tags_follow_the_simulator_layout() {
        let t = sim_tags(5);
        let got: Vec<(&str, &str, &str)> = t
            .iter()
            .map(|(n, a, d)| (n.as_str(), a.as_str(), *d))
            .collect();
        assert_eq!(
            got,
            vec![
                ("sine0", "hr:2", "f32"),
                ("ramp1", "hr:4", "u16"),
                ("random2", "hr:5", "u16"),
                ("sine3", "hr:6", "f32"),
                ("ramp4", "hr:8", "u16"),
            ]
        );
    }

    #[test]
    fn plant_spreads_devices_over_ports_and_units() {
        let layout = sim_tags(3);
        let shape = PlantShape {
            base_port: 30_000,
            units_per_endpoint: UNITS_PER_PORT,
            interval_ms: 500,
            pipeline: 2,
        };
        let (devices, tags) = plant(&shape, 245..249, &layout);
        let at: Vec<(&str, &str, u32)> = devices
            .iter()
            .map(|d| (d.name.as_str(), d.endpoint.as_str(), d.unit_id))
            .collect();
        assert_eq!(
            at,
            vec![
                ("sim00245", "127.0.0.1:30000", 246),
                ("sim00246", "127.0.0.1:30000", 247),
                ("sim00247", "127.0.0.1:30001", 1),
                ("sim00248", "127.0.0.1:30001", 2),
            ]
        );
        let d = &devices[0];
        assert_eq!(
            (
                d.protocol.as_str(),
                d.poll_interval_ms,
                d.timeout_ms,
                d.retries,
                d.enabled
            ),
            ("modbus-tcp", 500, 1000, 0, true)
        );
        assert_eq!(d.labels["modbus.pipeline"], "2");
        let hundred = PlantShape {
            units_per_endpoint: 100,
            ..shape
        };
        let (devices, _) = plant(&hundred, 9_999..10_000, &layout);
        assert_eq!(
            (devices[0].endpoint.as_str(), devices[0].unit_id),
            ("127.0.0.1:30099", 100)
        );
        assert_eq!(tags.len(), 12);
        assert_eq!(tags[0].name, "sim00245/sine0");
        assert_eq!(tags[0].device, "sim00245");
        assert_eq!(tags[2].address, "hr:5");
    }

    #[test]
    fn proc_files_are_parsed() {
        let stat = "4242 (bifrost (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 9 0 100 1000000 5000 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(175));
        let status =
            "Name:\tbifrost\nVmPeak:\t  200000 kB\nVmHWM:\t   61232 kB\nVmRSS:\t   50000 kB\n";
        assert_eq!(parse_status_value(status, "VmHWM:"), Some(61232));
        assert_eq!(parse_status_value(status, "VmSwap:"), None);
        // Our own process, for real.
        let (ticks, hwm) = proc_usage(std::process::id()).unwrap();
        assert!(hwm > 0);
        let _ = ticks;
    }

    fn args(devices: u32, duration_s: u64) -> BenchPollArgs {
        BenchPollArgs {
            devices,
            tags: 10,
            duration: Duration::from_secs(duration_s),
            runs: 1,
            interval: Duration::from_secs(1),
            units_per_endpoint: UNITS_PER_PORT,
            pipeline: 1,
            own: OwnCluster {
                bifrost: None,
                keep: false,
                startup_timeout: Duration::from_secs(60),
            },
            settle_timeout: Duration::from_secs(300),
            warmup: Duration::from_secs(5),
            common: Common { timeout: None },
        }
    }

    fn run_with(committed: f64, acquired: f64, outbox: f64, outbox_s: f64) -> RunResult {
        RunResult {
            elapsed: Duration::from_secs(120),
            window: Duration::from_secs(60),
            committed_per_s: committed - 1.0,
            committed_window_per_s: committed,
            acquired_per_s: acquired - 1.0,
            acquired_window_per_s: acquired,
            outbox_max: outbox,
            outbox_max_s: Some(outbox_s),
            dropped: 2.0,
            polls: 399.0,
            missed: 1.0,
            shed: 0.5,
            elections: (outbox_s * 2.0) as u64,
            nodes: vec![NodeResult {
                id: 1,
                role: "Follower".into(),
                cpu_pct: 50.0,
                hwm_mb: outbox / 10.0,
                committed_per_s: Some(committed),
                committed_window_per_s: Some(committed),
                acquired_per_s: acquired,
                outbox_max: outbox,
                outbox_readings_max: outbox * 10.0,
                dropped: 2.0,
                polled_devices: Some(100.0),
                connections_max: 3.0,
                polls: 399.0,
                missed: 1.0,
                shed: 0.5,
                elections: (outbox_s * 2.0) as u64,
            }],
            sim_cpu_pct: 10.0,
            sim_hwm_mb: 20.0,
        }
    }

    #[test]
    fn summary_line_has_the_agreed_shape() {
        let s = Summary {
            devices: 10_000,
            tags: 10,
            duration: Duration::from_secs(120),
            window: Duration::from_secs(60),
            committed_per_s: 99_873.6,
            acquired_per_s: 99_901.2,
            outbox_max: 1_234.0,
            outbox_max_s: Some(0.414),
            dropped: 0.0,
            missed_pct: 0.126,
            shed_pct: 0.1,
            elections: 0,
            rss_max_mb: 87.4,
            endpoints: 100,
            connections_max: 67.0,
        };
        assert_eq!(
            s.line(),
            "poll: 10000 devices 10 tags committed 99874/s acquired 99901/s outbox_max 1234 dropped 0 \
             missed 0.13% rss_max 87 MB (rates over the last 60 s of each 120 s run; \
             outbox_max 0.41 s of readings; shed 0.10% of due polls; 0 elections; \
             100 endpoints, at most 67 connections per node)"
        );
        let s = Summary {
            duration: Duration::from_millis(1500),
            window: window(Duration::from_millis(1500)),
            outbox_max_s: None,
            ..s
        };
        assert!(
            s.line().ends_with(
                "(rates over the last 0.8 s of each 1.5 s run; outbox_max no readings acquired; \
                 shed 0.10% of due polls; 0 elections; 100 endpoints, at most 67 connections per node)"
            ),
            "{}",
            s.line()
        );
        assert_eq!(missed_pct(0.0, 0.0), 100.0);
        assert_eq!(missed_pct(1.0, 399.0), 0.25, "of the polls due");
    }

    #[test]
    fn summary_takes_medians_maxima_and_sums_over_runs() {
        let runs = [
            run_with(100.0, 110.0, 50.0, 0.5),
            run_with(300.0, 330.0, 10.0, 1.5),
            run_with(200.0, 220.0, 20.0, 0.2),
        ];
        let s = Summary::of(&args(7, 120), &runs);
        assert_eq!((s.devices, s.tags), (7, 10));
        assert_eq!(s.window, Duration::from_secs(60));
        // The window figures, not the whole-run ones.
        assert_eq!((s.committed_per_s, s.acquired_per_s), (200.0, 220.0));
        assert_eq!((s.outbox_max, s.outbox_max_s), (50.0, Some(1.5)));
        assert_eq!(s.dropped, 6.0);
        assert_eq!(s.missed_pct, 0.25);
        assert_eq!(s.shed_pct, 0.125);
        assert_eq!(s.elections, 3, "the most of any run");
        assert_eq!(s.rss_max_mb, 5.0);
    }

    #[test]
    fn goals_name_what_was_missed() {
        let mut s = Summary::of(&args(7, 120), &[run_with(990.0, 1000.0, 10.0, 1.9)]);
        s.dropped = 0.0;
        s.missed_pct = 0.99;
        s.rss_max_mb = 150.0;
        s.elections = 0;
        assert_eq!(s.goals_missed(), Vec::<String>::new());
        s.committed_per_s = 989.0;
        s.outbox_max_s = Some(2.0);
        s.dropped = 3.0;
        s.missed_pct = 1.0;
        s.rss_max_mb = 151.0;
        s.elections = 2;
        let missed = s.goals_missed();
        assert_eq!(missed.len(), 6, "{missed:?}");
        assert!(missed[4].starts_with("2 leader elections"), "{missed:?}");
        assert!(missed[0].starts_with("committed 989/s is under 99% of acquired 1000/s"));
        assert!(missed[2].starts_with("3 records dropped"));
    }

    #[test]
    fn the_window_is_the_last_minute_or_half_the_run() {
        assert_eq!(window(Duration::from_secs(120)), Duration::from_secs(60));
        assert_eq!(window(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(window(Duration::from_secs(30)), Duration::from_secs(15));
        assert_eq!(window(Duration::from_secs(1)), Duration::from_millis(500));
    }

    #[test]
    fn rates_run_from_the_first_known_point_in_the_window_to_the_last() {
        let pts = [
            (0.0, Some(0.0)),
            (1.0, Some(100.0)),
            (2.0, None),
            (3.0, Some(400.0)),
            (4.0, Some(700.0)),
            (5.0, None),
        ];
        assert_eq!(rate_since(&pts, 0.0), Some(700.0 / 4.0));
        // The window starts at 2 s, where the node did not answer: from 3 s.
        assert_eq!(rate_since(&pts, 2.0), Some(300.0));
        // One known point in the window: no rate.
        assert_eq!(rate_since(&pts, 3.5), None);
        assert_eq!(rate_since(&[], 0.0), None);
        // A counter that went down (a restart) counts as no growth.
        assert_eq!(
            rate_since(&[(0.0, Some(5.0)), (1.0, Some(2.0))], 0.0),
            Some(0.0)
        );
    }

    #[test]
    fn committed_is_the_slowest_node_that_answered() {
        assert_eq!(
            slowest([Some(300.0), Some(100.0), Some(200.0)]),
            Some(100.0)
        );
        assert_eq!(slowest([None, Some(250.0), Some(260.0)]), Some(250.0));
        assert_eq!(slowest([None, None]), None);
    }

    #[test]
    fn outbox_depth_in_seconds_and_dropped_growth() {
        assert_eq!(outbox_seconds(5_000.0, 10_000.0), Some(0.5));
        assert_eq!(outbox_seconds(0.0, 0.0), None);
        assert_eq!(growth(10.0, 25.0), 15.0);
        assert_eq!(growth(25.0, 10.0), 0.0);
    }
}
