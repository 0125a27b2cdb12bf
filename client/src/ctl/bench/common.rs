//! What the benchmarks share: figures (percentiles, medians, rounding),
//! unique timestamps, the bench device and its tags, reading Prometheus
//! text (a family's sum over its series), and the cluster a
//! benchmark runs on: the one at `--endpoints`, or its own three nodes
//! started through `bifrost-testkit` (on free loopback ports, data and logs
//! in a temp dir, killed when the benchmark ends however it ends: dropped
//! on errors and Ctrl-C/SIGTERM, and a parent-death signal in case
//! bifrostctl itself is killed).
//!
//! It must not import the benchmark modules: they import it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bifrost_client::proto::{value::Kind, Device, IngestResponse, Quality, Reading, Tag, Value};
use bifrost_client::{Client, Security};
use bifrost_testkit::{locate_bifrost, Cluster, ClusterOptions};
use clap::Args;

use crate::ctl::{client_for, Ctx};

/// The benchmarks' device.
pub(super) const DEVICE: &str = "bench";

/// The cluster a benchmark starts for itself: which binary, how long it
/// may take to elect a leader, and whether its files outlive it. Shared by
/// every benchmark that starts one.
#[derive(Args, Debug, Clone)]
pub struct OwnCluster {
    /// Server binary [default: $BIFROST_BIN, else `bifrost` next to this
    /// executable].
    #[arg(long)]
    pub bifrost: Option<PathBuf>,
    /// Keep the cluster's data and logs (and a simulator's log) after the
    /// benchmark.
    #[arg(long)]
    pub keep: bool,
    /// How long the cluster may take to elect a leader.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub startup_timeout: Duration,
}

/// Which cluster a benchmark runs on; shared by `bench ingest`, `query`
/// and `watch` (`poll` always starts its own).
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Benchmark the cluster at --endpoints instead of starting one. Implied
    /// when --endpoints is typed on the command line (BIFROST_ENDPOINTS alone
    /// does not imply it).
    #[arg(long)]
    pub external: bool,
    #[command(flatten)]
    pub own: OwnCluster,
    /// Run the own cluster with TLS on every port (a CA made for it) and
    /// talk to it over TLS as user admin, instead of `--insecure` plain
    /// text: to measure what TLS costs (`bench ingest` and `bench query`).
    #[arg(long)]
    pub tls: bool,
}

/// The benchmark's own cluster, as a benchmark talks to it.
pub(super) struct Own {
    /// HTTP addresses of its nodes.
    pub http: Vec<String>,
    /// How to reach its gRPC ports.
    pub security: Security,
}

/// The server binary: `--bifrost`, else `$BIFROST_BIN`, else `bifrost`
/// next to this executable (or one directory up).
pub(super) fn server_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    locate_bifrost(given)
        .context("build it with `cargo build --release -p bifrost-server`, or pass --bifrost PATH")
}

/// Three nodes of `exe` with `args`, in a `bifrost-bench-` temp dir kept
/// with `keep`, no process started yet.
pub(super) fn create_cluster(
    exe: &Path,
    keep: bool,
    tls: bool,
    args: &[&str],
) -> anyhow::Result<Cluster> {
    let mut opts = ClusterOptions::new(exe, 3).args(args);
    opts.tls = tls;
    opts.dir_prefix = "bifrost-bench-".into();
    opts.keep = keep;
    // The benchmark spawns from its main thread (it runs in `block_on`),
    // which lives as long as the process.
    opts.die_with_parent = true;
    Ok(Cluster::create(opts)?)
}

/// Starts the nodes of `cluster` and waits until they agree on a leader.
pub(super) async fn start_nodes(cluster: &mut Cluster, timeout: Duration) -> anyhow::Result<()> {
    cluster.start_nodes()?;
    eprintln!(
        "bench: started 3 nodes at {} (data and logs in {})",
        cluster.endpoints().join(","),
        cluster.dir().display()
    );
    let started = Instant::now();
    let leader = cluster
        .wait_leader(&[1, 2, 3], timeout)
        .await
        .with_context(|| {
            format!(
                "cluster start-up; logs are in {} (use --keep to keep them)",
                cluster.dir().display()
            )
        })?;
    eprintln!(
        "bench: node {leader} is leader after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The cluster to benchmark: the one at `--endpoints` (no [`Cluster`]), or
/// three nodes started here with a leader elected. The caller keeps the
/// `Cluster`: dropping it kills the nodes.
pub(super) async fn start_target(
    ctx: &Ctx,
    args: &ClusterArgs,
) -> anyhow::Result<(Option<Cluster>, Vec<String>)> {
    if args.external || ctx.endpoints_explicit {
        eprintln!("bench: using the cluster at {}", ctx.endpoints.join(","));
        return Ok((None, ctx.endpoints.clone()));
    }
    let exe = server_binary(args.own.bifrost.as_deref())
        .context("or benchmark an existing cluster: --external with --endpoints")?;
    eprintln!(
        "bench: server binary {}{}",
        exe.display(),
        if args.tls {
            "; the cluster runs with TLS on every port"
        } else {
            ""
        }
    );
    let mut c = create_cluster(&exe, args.own.keep, args.tls, &[])?;
    start_nodes(&mut c, args.own.startup_timeout).await?;
    let endpoints = c.endpoints();
    Ok((Some(c), endpoints))
}

/// A client of the benchmarked cluster at `endpoints`: our `own` nodes as
/// they run (plain text unless `--tls`), the cluster at `--endpoints` as
/// the global TLS flags say, with the command's token (never sent to our
/// own nodes).
pub(super) fn target_client(
    ctx: &Ctx,
    endpoints: Vec<String>,
    own: Option<&Own>,
) -> anyhow::Result<Client> {
    let (security, token) = match own {
        Some(o) => (o.security.clone(), None),
        None => (ctx.security.clone(), ctx.token.clone()),
    };
    client_for(endpoints, ctx.timeout, security, token)
}

/// Says on stderr that this `bifrostctl` is a debug build, and what that
/// costs the figures, when it is one.
pub(super) fn warn_if_debug_build(cost: &str) {
    if cfg!(debug_assertions) {
        eprintln!("bench: note: this bifrostctl is a debug build; {cost}");
    }
}

/// Runs `bench(endpoints, own)` against the cluster [`start_target`] gives
/// (`own`: started here), after the debug-build note; a failure names a
/// node of our own cluster that died.
pub(super) async fn run_on_target<F, Fut>(
    ctx: &Ctx,
    args: &ClusterArgs,
    bench: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Vec<String>, Option<Own>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    warn_if_debug_build("client-side figures may suffer");
    let (cluster, endpoints) = start_target(ctx, args).await?;
    let own = cluster.as_ref().map(|c| Own {
        http: c.nodes().map(|n| n.http.clone()).collect(),
        security: c.security(),
    });
    bench(endpoints, own)
        .await
        .map_err(|e| explain(e, cluster.as_ref()))
}

/// A failed benchmark's error, with the first dead process and its log's
/// tail if one died: that explains it better than the client's
/// "Unavailable".
pub(super) fn explain(e: anyhow::Error, cluster: Option<&Cluster>) -> anyhow::Error {
    match cluster.map(Cluster::check_alive) {
        Some(Err(dead)) => e.context(dead),
        _ => e,
    }
}

/// The benchmarks' device: disabled, so never polled.
pub(super) fn bench_device() -> Device {
    Device {
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
    }
}

/// Distinct holding-register offsets for f64 tags (four registers each):
/// 0..=39996, then 50000..=65532, then around again. Offsets 40000-49999
/// would read as classic references (`holding:40001` is offset 0).
fn register_of(slot: usize) -> usize {
    const LOW: usize = 10_000;
    const HIGH: usize = (65_532 - 50_000) / 4 + 1;
    match slot % (LOW + HIGH) {
        s if s < LOW => s * 4,
        s => 50_000 + (s - LOW) * 4,
    }
}

/// An f64 tag of the bench device; `slot` picks its (never read) registers.
pub(super) fn bench_tag(name: String, slot: usize) -> Tag {
    Tag {
        name,
        device: DEVICE.into(),
        address: format!("holding:{}", register_of(slot)),
        data_type: "f64".into(),
        ..Default::default()
    }
}

/// Imports the bench device and `tags`, saying on stderr how long it took
/// since `started`.
pub(super) async fn import_bench_tags(
    client: &Client,
    tags: Vec<Tag>,
    started: Instant,
) -> anyhow::Result<()> {
    let r = client
        .import(vec![bench_device()], tags)
        .await
        .context("importing the bench device and tags")?;
    eprintln!(
        "bench: imported device {DEVICE:?} and {} tags in {:.1}s",
        r.tags,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Ingests `readings` (`what` names them in errors) and fails unless every
/// one is acknowledged: stored, or a duplicate of one a retry stored.
pub(super) async fn ingest_acknowledged(
    client: &Client,
    readings: Vec<Reading>,
    what: &str,
) -> anyhow::Result<IngestResponse> {
    let n = readings.len() as u64;
    let resp = client
        .ingest(readings)
        .await
        .with_context(|| format!("ingesting {what}"))?;
    if resp.stored + resp.duplicates != n {
        anyhow::bail!(
            "{what}: {} of {n} readings acknowledged",
            resp.stored + resp.duplicates
        );
    }
    Ok(resp)
}

pub(super) fn f64_reading(id: String, tag: String, ts_us: i64, v: f64) -> Reading {
    Reading {
        id,
        tag,
        ts_us,
        value: Some(Value {
            kind: Some(Kind::FloatValue(v)),
        }),
        quality: Some(Quality::default()),
        server_ts_us: 0,
        revision: 0,
    }
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

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Sum and count of all samples of metric `name` in Prometheus text format
/// (`name{labels} value` or `name value`); `None` when there are none.
pub(super) fn family_sum(text: &str, name: &str) -> Option<(f64, usize)> {
    sum_where(text, name, |_| true)
}

/// Sum of the samples of metric `name` that carry the label `key="value"`
/// (`bifrost_memory_bytes{part="block_cache"}`); `None` when there are none.
pub(super) fn labelled_sum(text: &str, name: &str, key: &str, value: &str) -> Option<f64> {
    let pair = format!("{key}=\"{value}\"");
    let has = |labels: &str| {
        labels.match_indices(&pair).any(|(i, _)| {
            let after = &labels[i + pair.len()..];
            (i == 0 || labels[..i].ends_with(',')) && (after.is_empty() || after.starts_with(','))
        })
    };
    sum_where(text, name, has).map(|(sum, _)| sum)
}

/// Sum and count of the samples of metric `name` whose label set (the text
/// between the braces, empty without) passes `keep`.
fn sum_where(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> Option<(f64, usize)> {
    let mut sum = 0.0;
    let mut count = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let sample = if let Some(labels) = rest.strip_prefix('{') {
            labels_end(labels).map(|end| (&labels[..end], &labels[end + 1..]))
        } else if rest.starts_with([' ', '\t']) {
            Some(("", rest))
        } else {
            // A longer name with this one as prefix.
            None
        };
        let Some((labels, value)) = sample else {
            continue;
        };
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|_| keep(labels))
        {
            sum += v;
            count += 1;
        }
    }
    (count > 0).then_some((sum, count))
}

/// Whether the text declares the family of sample name `name` (`# TYPE`
/// names a counter without its `_total`). A family without series yet is
/// declared but has no samples.
pub(super) fn declared(text: &str, name: &str) -> bool {
    let family = name.strip_suffix("_total").unwrap_or(name);
    text.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|r| r.split_whitespace().next())
            == Some(family)
    })
}

/// Index of the `}` that closes a label set (quoted values may hold `}`).
fn labels_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tag_addresses_stay_in_the_register_space() {
        assert_eq!(bench_tag("a".into(), 0).address, "holding:0");
        assert_eq!(bench_tag("a".into(), 9_999).address, "holding:39996");
        assert_eq!(bench_tag("a".into(), 10_000).address, "holding:50000");
        assert_eq!(bench_tag("a".into(), 13_883).address, "holding:65532");
        assert_eq!(bench_tag("a".into(), 13_884).address, "holding:0");
        let all: std::collections::HashSet<usize> = (0..13_884).map(register_of).collect();
        assert_eq!(all.len(), 13_884);
        assert!(all
            .iter()
            .all(|&r| r % 4 == 0 && !(40_000..50_000).contains(&r) && r <= 65_532));
    }

    #[test]
    fn metric_families_are_summed_over_all_series() {
        let text = "\
# HELP bifrost_device_polls Polls of a device by this node.
# TYPE bifrost_device_polls counter
bifrost_device_polls_total{device=\"sim00001\"} 10
bifrost_device_polls_total{device=\"odd} name\"} 5
bifrost_device_polls_total_extra 1000
bifrost_outbox_records 7
bifrost_outbox_records_bytes 99
# EOF
";
        assert_eq!(
            family_sum(text, "bifrost_device_polls_total"),
            Some((15.0, 2))
        );
        assert_eq!(family_sum(text, "bifrost_outbox_records"), Some((7.0, 1)));
        assert_eq!(family_sum(text, "bifrost_device_polls"), None);
        assert_eq!(family_sum(text, "bifrost_missing"), None);
        assert!(declared(text, "bifrost_device_polls_total"));
        assert!(!declared(text, "bifrost_device_missed_deadlines_total"));
        assert!(!declared(text, "bifrost_outbox_records"));
    }

    #[test]
    fn labelled_series_are_picked_by_their_label() {
        let text = "\
bifrost_memory_bytes{part=\"budget\"} 100663296
bifrost_memory_bytes{part=\"block_cache\"} 1000
bifrost_memory_bytes{part=\"memtables\"} 200
bifrost_memory_bytes{node=\"1\",part=\"block_cache\"} 30
bifrost_memory_bytes{part=\"block_cache_x\"} 7
bifrost_memory_bytes{xpart=\"block_cache\"} 9
";
        let part = |p| labelled_sum(text, "bifrost_memory_bytes", "part", p);
        assert_eq!(part("block_cache"), Some(1030.0));
        assert_eq!(part("memtables"), Some(200.0));
        assert_eq!(part("unflushed"), None);
        assert_eq!(
            family_sum(text, "bifrost_memory_bytes"),
            Some((100_664_542.0, 6))
        );
    }
}
