//! Prometheus metrics of a node (prometheus-client, the official Rust
//! client). Raft gauges are read from openraft's metrics at scrape time.

use std::sync::Arc;
use std::time::Duration;

use bifrost_raft::RaftNode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub device: String,
}

/// Another member of the cluster, by id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// A node's port: `peer`, `grpc` or `http`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    pub port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabels {
    pub part: String,
}

/// One of a node's two databases: `state` or `node` (Raft log, outbox).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DbLabels {
    pub db: String,
}

/// A side of snapshot transfers: `sent` (as leader) or `received`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: String,
}

/// Files of a snapshot transfer: `shipped`, or `reused` (the receiver held
/// them already).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransferLabels {
    pub direction: String,
    pub how: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProposalLabels {
    pub kind: String,
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub proposals: Family<ProposalLabels, Counter>,
    pub proposal_latency: Histogram,
    pub apply_latency: Histogram,
    pub applied_entries: Counter,
    pub readings_ingested: Counter,
    pub readings_duplicate: Counter,
    pub assignment_changes: Counter,
    pub device_writes: Family<OutcomeLabels, Counter>,
    pub polls: Family<DeviceLabels, Counter>,
    pub poll_errors: Family<DeviceLabels, Counter>,
    pub poll_missed: Family<DeviceLabels, Counter>,
    pub poll_latency_last: Family<DeviceLabels, Gauge>,
    /// A device's circuit-breaker backoff in ms, 0 while closed.
    pub breaker_backoff: Family<DeviceLabels, Gauge>,
    pub breaker_skipped: Family<DeviceLabels, Counter>,
    pub poll_latency: Histogram,
    pub polled_devices: Gauge,
    pub device_connections: Gauge,
    pub polls_shed: Counter,
    pub poll_admission: Gauge,
    pub ingest_refused: Counter,
    pub outbox_acquired: Counter,
    pub outbox_forwarded: Counter,
    pub outbox_dropped_records: Counter,
    pub watch_subscriptions: Gauge,
    pub watch_overflows: Counter,
    pub watch_slow_disconnects: Counter,
    pub rate_limited: Counter,
    pub peer_refused: Counter,
    /// Each TLS port's server side, for its handshake and reload counts.
    pub tls_ports: std::sync::OnceLock<Vec<(&'static str, Arc<bifrost_tls::ServerTls>)>>,
    tls_refused_handshakes: Family<PortLabels, Gauge>,
    tls_reloads: Family<PortLabels, Gauge>,
    pub watch_delivered: Counter,
    pub watch_tag_pages: Counter,
    pub queries: Family<OutcomeLabels, Counter>,
    pub query_latency: Histogram,
    pub compacted_readings: Counter,
    pub replica_mismatched_ranges: Counter,
    pub replica_checked_revision: Gauge,
    pub replica_first_mismatch_revision: Gauge,
    outbox_records: Gauge,
    outbox_bytes: Gauge,
    term: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    last_log_index: Gauge,
    is_leader: Gauge,
    node_id: Gauge,
    log_appends: Gauge,
    log_fsyncs: Gauge,
    state_flushed_revision: Gauge,
    state_unflushed_bytes: Gauge,
    disk_free_bytes: Gauge,
    disk_low: Gauge,
    storage_write_stalled: Family<DbLabels, Gauge>,
    pub(crate) clock_offset: Family<NodeLabels, Gauge>,
    memory: Family<PartLabels, Gauge>,
    snapshot_transfers: Family<DirectionLabels, Gauge>,
    snapshot_files: Family<TransferLabels, Gauge>,
    snapshot_bytes: Family<TransferLabels, Gauge>,
    snapshot_last_files: Family<TransferLabels, Gauge>,
    snapshot_last_bytes: Family<TransferLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bifrost");
        let proposals = Family::<ProposalLabels, Counter>::default();
        registry.register(
            "proposals",
            "Commands proposed through Raft, by kind and result",
            proposals.clone(),
        );
        let proposal_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "proposal_latency_seconds",
            "Time from proposal to applied result, as seen by the proposing node",
            proposal_latency.clone(),
        );
        let apply_latency = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        registry.register(
            "apply_latency_seconds",
            "Time to apply one batch of committed entries to the state machine",
            apply_latency.clone(),
        );
        let applied_entries = Counter::default();
        registry.register(
            "applied_entries",
            "Log entries applied to the state machine",
            applied_entries.clone(),
        );
        let readings_ingested = Counter::default();
        registry.register(
            "readings_ingested",
            "Readings newly stored through this node's API",
            readings_ingested.clone(),
        );
        let readings_duplicate = Counter::default();
        registry.register(
            "readings_duplicate",
            "Ingested readings whose id was already stored (acknowledged, not stored again)",
            readings_duplicate.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<DeviceLabels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let assignment_changes = counter(
            &mut registry,
            "assignment_changes",
            "Device assignments changed by this node as leader",
        );
        let device_writes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "device_writes",
            "Writes to devices executed here, by outcome",
            device_writes.clone(),
        );
        let polls = family(
            &mut registry,
            "device_polls",
            "Polls of a device by this node",
        );
        let poll_errors = family(
            &mut registry,
            "device_poll_errors",
            "Polls of a device that gave Bad samples",
        );
        let poll_missed = family(
            &mut registry,
            "device_missed_deadlines",
            "Poll deadlines of a device missed because the previous poll ran late",
        );
        let breaker_skipped = family(
            &mut registry,
            "device_breaker_skipped_polls",
            "Polls of a device not tried because its circuit breaker was open (it did not answer)",
        );
        let breaker_backoff = Family::<DeviceLabels, Gauge>::default();
        registry.register(
            "device_breaker_backoff_ms",
            "Backoff of a device's open circuit breaker, milliseconds; 0 while closed",
            breaker_backoff.clone(),
        );
        let poll_latency_last = Family::<DeviceLabels, Gauge>::default();
        registry.register(
            "device_poll_latency_last_us",
            "Duration of the last poll of a device, microseconds",
            poll_latency_last.clone(),
        );
        let poll_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "poll_latency_seconds",
            "Duration of device polls on this node",
            poll_latency.clone(),
        );
        let outbox_acquired = counter(
            &mut registry,
            "outbox_acquired_readings",
            "Polled readings written durably to the outbox",
        );
        let outbox_forwarded = counter(
            &mut registry,
            "outbox_forwarded_readings",
            "Outbox readings committed through Raft",
        );
        let outbox_dropped_records = counter(
            &mut registry,
            "outbox_dropped_records",
            "Poll records dropped because the outbox was full",
        );
        let watch_overflows = counter(
            &mut registry,
            "watch_overflows",
            "Subscriptions ended because their consumer fell too far behind",
        );
        let watch_slow_disconnects = counter(
            &mut registry,
            "watch_slow_disconnects",
            "WebSocket subscribers disconnected for not reading within --watch-send-timeout-ms",
        );
        let rate_limited = counter(
            &mut registry,
            "rate_limited_requests",
            "Public gRPC requests refused over their connection's --max-requests-per-second",
        );
        let peer_refused = counter(
            &mut registry,
            "peer_refused_calls",
            "Calls on the peer port refused: the certificate names no current member",
        );
        let tls_refused_handshakes = Family::<PortLabels, Gauge>::default();
        registry.register(
            "tls_refused_handshakes",
            "TLS handshakes refused or timed out since start, by port (bad or foreign certificate, plain text, silence)",
            tls_refused_handshakes.clone(),
        );
        let tls_reloads = Family::<PortLabels, Gauge>::default();
        registry.register(
            "tls_reloads",
            "Certificate reloads since start (SIGHUP or a file change), by port",
            tls_reloads.clone(),
        );
        let watch_delivered = counter(
            &mut registry,
            "watch_delivered_readings",
            "Readings queued to subscribers",
        );
        let watch_tag_pages = counter(
            &mut registry,
            "watch_tag_pages",
            "Catch-up pages read tag by tag, for subscriptions matching few tags",
        );
        let queries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "queries",
            "SQL queries run here, by outcome (ok or the error kind)",
            queries.clone(),
        );
        let query_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "query_latency_seconds",
            "Time to run a SQL query here, from parse to last row",
            query_latency.clone(),
        );
        let compacted_readings = counter(
            &mut registry,
            "compacted_readings",
            "Readings removed by history retention on this node",
        );
        let replica_mismatched_ranges = counter(
            &mut registry,
            "replica_mismatched_ranges",
            "Revision ranges this node's replica check (as leader) found to differ between members, each counted once",
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let watch_subscriptions = gauge(
            &mut registry,
            "watch_subscriptions",
            "Subscriptions open on this node",
        );
        let replica_checked_revision = gauge(
            &mut registry,
            "replica_checked_revision",
            "Revisions up to this one were compared on every member by this node's replica check (as leader)",
        );
        let replica_first_mismatch_revision = gauge(
            &mut registry,
            "replica_first_mismatch_revision",
            "First revision of the first range this node's replica check found to differ (0: none)",
        );
        let term = gauge(&mut registry, "raft_term", "Current Raft term");
        let commit_index = gauge(
            &mut registry,
            "raft_commit_index",
            "Highest committed log index known here",
        );
        let applied_index = gauge(
            &mut registry,
            "raft_applied_index",
            "Highest log index applied here",
        );
        let last_log_index = gauge(
            &mut registry,
            "raft_last_log_index",
            "Last log index in this node's log",
        );
        let is_leader = gauge(
            &mut registry,
            "raft_is_leader",
            "1 if this node is the leader",
        );
        let node_id = gauge(&mut registry, "node_id", "This node's id");
        let polled_devices = gauge(
            &mut registry,
            "polled_devices",
            "Devices this node polls now",
        );
        let device_connections = gauge(
            &mut registry,
            "device_connections",
            "Device connections this node holds open (Modbus TCP and serial, S7, EtherNet/IP; \
             devices behind one address share one)",
        );
        let polls_shed = counter(
            &mut registry,
            "polls_shed",
            "Due polls skipped because commits fell behind (back-pressure)",
        );
        let poll_admission = gauge(
            &mut registry,
            "poll_admission_percent",
            "Share of due polls made now, in percent (below 100 while commits fall behind)",
        );
        let ingest_refused = counter(
            &mut registry,
            "ingest_refused",
            "Ingest calls answered resource_exhausted because applying fell behind",
        );
        let outbox_records = gauge(
            &mut registry,
            "outbox_records",
            "Poll records waiting in the outbox",
        );
        let outbox_bytes = gauge(&mut registry, "outbox_bytes", "Bytes waiting in the outbox");
        let log_appends = gauge(
            &mut registry,
            "raft_log_appends",
            "Raft log append calls since start",
        );
        let log_fsyncs = gauge(
            &mut registry,
            "raft_log_fsyncs",
            "Raft log WAL fsyncs since start; appends per fsync is the group-commit factor",
        );
        let state_flushed_revision = gauge(
            &mut registry,
            "state_flushed_revision",
            "Last revision written to the state database by a flush (later ones are applied in memory, the Raft log holds them)",
        );
        let state_unflushed_bytes = gauge(
            &mut registry,
            "state_unflushed_bytes",
            "Approximate memory held by state applied since the last flush",
        );
        let disk_free_bytes = gauge(
            &mut registry,
            "disk_free_bytes",
            "Free bytes on the file system of the data directory",
        );
        let disk_low = gauge(
            &mut registry,
            "disk_low",
            "1 while the data directory's free space is below --min-free-disk and writes are refused",
        );
        let storage_write_stalled = Family::<DbLabels, Gauge>::default();
        registry.register(
            "storage_write_stalled",
            "1 while RocksDB stops or slows writes to the database (db=state, or node: the Raft log and outbox) because level-0 files, unflushed memtables or pending compaction piled up",
            storage_write_stalled.clone(),
        );
        let clock_offset = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "clock_offset_ms",
            "On the leader: how far each member's clock is ahead of the leader's (negative: behind), from its last probe",
            clock_offset.clone(),
        );
        let memory = Family::<PartLabels, Gauge>::default();
        registry.register(
            "memory_bytes",
            "The node's memory budget (part=budget) and what uses it: the shared block cache, the memtables of both databases, state applied but not yet flushed; with jemalloc, the bytes the whole process has allocated (heap_allocated), the pages of jemalloc's live slabs and runs (heap_active), its resident pages (heap_resident), its own metadata (heap_metadata) and the pages it has mapped (heap_mapped)",
            memory.clone(),
        );
        let snapshot_transfers = Family::<DirectionLabels, Gauge>::default();
        registry.register(
            "raft_snapshot_transfers",
            "Snapshot transfers done since start, sent (as leader) or received",
            snapshot_transfers.clone(),
        );
        let transfer_family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<TransferLabels, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let snapshot_files = transfer_family(
            &mut registry,
            "raft_snapshot_files",
            "Files of the snapshots transferred since start: shipped, or reused (the receiver held them)",
        );
        let snapshot_bytes = transfer_family(
            &mut registry,
            "raft_snapshot_bytes",
            "Bytes of the snapshots transferred since start: shipped, or reused (the receiver held them)",
        );
        let snapshot_last_files = transfer_family(
            &mut registry,
            "raft_snapshot_last_files",
            "Files of the last snapshot transfer: shipped, or reused (the receiver held them)",
        );
        let snapshot_last_bytes = transfer_family(
            &mut registry,
            "raft_snapshot_last_bytes",
            "Bytes of the last snapshot transfer: shipped, or reused (the receiver held them)",
        );
        Metrics {
            registry,
            proposals,
            proposal_latency,
            apply_latency,
            applied_entries,
            readings_ingested,
            readings_duplicate,
            assignment_changes,
            device_writes,
            polls,
            poll_errors,
            poll_missed,
            poll_latency_last,
            breaker_backoff,
            breaker_skipped,
            poll_latency,
            polled_devices,
            device_connections,
            polls_shed,
            poll_admission,
            ingest_refused,
            outbox_acquired,
            outbox_forwarded,
            outbox_dropped_records,
            watch_subscriptions,
            watch_overflows,
            watch_slow_disconnects,
            rate_limited,
            peer_refused,
            tls_ports: std::sync::OnceLock::new(),
            tls_refused_handshakes,
            tls_reloads,
            watch_delivered,
            watch_tag_pages,
            queries,
            query_latency,
            compacted_readings,
            replica_mismatched_ranges,
            replica_checked_revision,
            replica_first_mismatch_revision,
            outbox_records,
            outbox_bytes,
            term,
            commit_index,
            applied_index,
            last_log_index,
            is_leader,
            node_id,
            log_appends,
            log_fsyncs,
            state_flushed_revision,
            state_unflushed_bytes,
            disk_free_bytes,
            disk_low,
            storage_write_stalled,
            clock_offset,
            memory,
            snapshot_transfers,
            snapshot_files,
            snapshot_bytes,
            snapshot_last_files,
            snapshot_last_bytes,
        }
    }

    pub fn observe_write(&self, outcome: &str) {
        self.device_writes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn observe_proposal(&self, kind: &str, took: Duration, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.proposals
            .get_or_create(&ProposalLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
        self.proposal_latency.observe(took.as_secs_f64());
    }

    /// Member `node`'s clock offset from this node's, in milliseconds.
    pub fn set_clock_offset(&self, node: u64, offset_ms: i64) {
        self.clock_offset
            .get_or_create(&NodeLabels {
                node: node.to_string(),
            })
            .set(offset_ms);
    }

    /// Renders the text exposition format, refreshing Raft gauges first.
    pub fn render(&self, node: &Arc<RaftNode>) -> String {
        let m = node.metrics();
        self.term.set(m.current_term as i64);
        self.commit_index.set(node.commit_index() as i64);
        self.applied_index
            .set(m.last_applied.map(|l| l.index).unwrap_or(0) as i64);
        self.last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        self.is_leader.set(node.is_leader() as i64);
        self.node_id.set(node.id() as i64);
        let ob = node.node_store().outbox_stats();
        self.outbox_records.set(ob.records as i64);
        self.outbox_bytes.set(ob.bytes as i64);
        self.log_appends.set(
            node.log_stats()
                .appends
                .load(std::sync::atomic::Ordering::Relaxed) as i64,
        );
        self.log_fsyncs.set(
            node.log_stats()
                .fsyncs
                .load(std::sync::atomic::Ordering::Relaxed) as i64,
        );
        let state = node.state();
        self.state_flushed_revision
            .set(state.flushed_revision() as i64);
        self.state_unflushed_bytes
            .set(state.unflushed_bytes() as i64);
        let _ = node.disk().check();
        self.disk_free_bytes
            .set(node.disk().free().min(i64::MAX as u64) as i64);
        self.disk_low.set(node.disk().is_low() as i64);
        for (db, stalled) in [
            ("state", state.write_stalled()),
            ("node", node.node_store().write_stalled()),
        ] {
            if let Ok(stalled) = stalled {
                self.storage_write_stalled
                    .get_or_create(&DbLabels { db: db.into() })
                    .set(stalled as i64);
            }
        }
        let usage = state.memory_usage();
        for (part, bytes) in [
            ("budget", usage.budget),
            ("block_cache", usage.block_cache),
            ("memtables", usage.memtables),
            ("unflushed", usage.unflushed),
        ]
        .into_iter()
        .chain(heap_parts().into_iter().flatten())
        {
            self.memory
                .get_or_create(&PartLabels { part: part.into() })
                .set(bytes as i64);
        }
        let snapshots = node.snapshot_stats();
        self.set_transfers("sent", &snapshots.sent);
        self.set_transfers("received", &snapshots.received);
        for (port, tls) in self.tls_ports.get().into_iter().flatten() {
            let labels = PortLabels {
                port: port.to_string(),
            };
            let refused = tls.refused() as i64;
            self.tls_refused_handshakes
                .get_or_create(&labels)
                .set(refused);
            self.tls_reloads
                .get_or_create(&labels)
                .set(tls.reloads() as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// jemalloc's own counters, read after advancing its epoch (they are
/// cached until then): `heap_allocated`, the bytes the whole process has
/// allocated (Rust and RocksDB's C++, which allocates from jemalloc too:
/// see `main.rs`); `heap_active`, the pages of its live runs and slabs
/// (active less allocated: free slots in slabs that also hold live
/// objects, which cannot be returned); `heap_resident`, its resident pages
/// (active, its metadata and dirty pages not yet returned);
/// `heap_metadata`, its own bookkeeping; `heap_mapped`, the extents it has
/// mapped for data. `None` when jemalloc does not answer.
#[cfg(feature = "jemalloc")]
fn heap_parts() -> Option<[(&'static str, usize); HEAP_PARTS]> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some([
        ("heap_allocated", stats::allocated::read().ok()?),
        ("heap_active", stats::active::read().ok()?),
        ("heap_resident", stats::resident::read().ok()?),
        ("heap_metadata", stats::metadata::read().ok()?),
        ("heap_mapped", stats::mapped::read().ok()?),
    ])
}

/// How many of jemalloc's counters [`heap_parts`] exports.
const HEAP_PARTS: usize = 5;

/// Without jemalloc (built without the `jemalloc` feature) there are no
/// counters: the parts are absent.
#[cfg(not(feature = "jemalloc"))]
fn heap_parts() -> Option<[(&'static str, usize); HEAP_PARTS]> {
    None
}

impl Metrics {
    fn set_transfers(&self, direction: &str, stats: &bifrost_raft::transfer::TransferStats) {
        let (transfers, total, last) = stats.get();
        self.snapshot_transfers
            .get_or_create(&DirectionLabels {
                direction: direction.into(),
            })
            .set(transfers as i64);
        for (figures, files, bytes) in [
            (total, &self.snapshot_files, &self.snapshot_bytes),
            (last, &self.snapshot_last_files, &self.snapshot_last_bytes),
        ] {
            for (how, n_files, n_bytes) in [
                ("shipped", figures.files_shipped, figures.bytes_shipped),
                ("reused", figures.files_reused, figures.bytes_reused),
            ] {
                let labels = TransferLabels {
                    direction: direction.into(),
                    how: how.into(),
                };
                files.get_or_create(&labels).set(n_files as i64);
                bytes.get_or_create(&labels).set(n_bytes as i64);
            }
        }
    }
}

/// The metrics of a node as the README documents them: a Markdown table with
/// one row per metric family, named as scraped (counters end in `_total`),
/// with its labels. Generated from the registry, so the README cannot miss
/// one.
pub fn metrics_table() -> String {
    let metrics = Metrics::new();
    metrics.touch_labelled_families();
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &metrics.registry);
    let mut rows = vec![
        "| Metric | Type | Labels | Meaning |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    let mut help = "";
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').map_or("", |(_, h)| h);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                continue;
            };
            let scraped = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            };
            let labels = lines.peek().map_or(String::new(), |s| label_names(s));
            let meaning = help.trim_end_matches('.');
            rows.push(format!("| `{scraped}` | {kind} | {labels} | {meaning} |"));
        }
    }
    rows.join("\n") + "\n"
}

/// `device, outcome` from a sample line `name{device="x",outcome="y"} 0`
/// (histogram bucket labels `le` left out).
fn label_names(sample: &str) -> String {
    let Some(inner) = sample
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(inner, _)| inner)
    else {
        return String::new();
    };
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .filter(|k| *k != "le")
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Metrics {
    /// Creates one series in every labelled family: the encoder leaves out a
    /// family that has none, and the metrics table must list them all. A new
    /// labelled family goes here too.
    fn touch_labelled_families(&self) {
        let device = DeviceLabels {
            device: String::new(),
        };
        let outcome = OutcomeLabels {
            outcome: String::new(),
        };
        let _ = self.proposals.get_or_create(&ProposalLabels {
            kind: String::new(),
            result: String::new(),
        });
        let _ = self.device_writes.get_or_create(&outcome);
        let _ = self.queries.get_or_create(&outcome);
        let counters = [
            &self.polls,
            &self.poll_errors,
            &self.poll_missed,
            &self.breaker_skipped,
        ];
        for family in counters {
            let _ = family.get_or_create(&device);
        }
        let _ = self.poll_latency_last.get_or_create(&device);
        let _ = self.breaker_backoff.get_or_create(&device);
        let _ = self.clock_offset.get_or_create(&NodeLabels {
            node: String::new(),
        });
        let _ = self.memory.get_or_create(&PartLabels {
            part: String::new(),
        });
        let _ = self
            .storage_write_stalled
            .get_or_create(&DbLabels { db: String::new() });
        let port = PortLabels {
            port: String::new(),
        };
        let _ = self.tls_refused_handshakes.get_or_create(&port);
        let _ = self.tls_reloads.get_or_create(&port);
        let _ = self.snapshot_transfers.get_or_create(&DirectionLabels {
            direction: String::new(),
        });
        let transfer = TransferLabels {
            direction: String::new(),
            how: String::new(),
        };
        for family in [
            &self.snapshot_files,
            &self.snapshot_bytes,
            &self.snapshot_last_files,
            &self.snapshot_last_bytes,
        ] {
            let _ = family.get_or_create(&transfer);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- metrics table: generated by `metrics_table()`; begin -->\n";
    const END: &str = "<!-- metrics table: end -->";

    /// The README's metrics table is exactly what a node exports. On a
    /// mismatch, `BIFROST_UPDATE_README=1` rewrites the table in place.
    #[test]
    fn readme_lists_every_metric_the_node_exports_and_no_other() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("read README.md");
        let start = readme
            .find(BEGIN)
            .unwrap_or_else(|| panic!("README.md has no line {BEGIN:?}"))
            + BEGIN.len();
        let end = start
            + readme[start..]
                .find(END)
                .unwrap_or_else(|| panic!("README.md has no line {END:?} after the table"));
        let want = metrics_table();
        if readme[start..end] != want {
            if std::env::var("BIFROST_UPDATE_README").as_deref() == Ok("1") {
                let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
                std::fs::write(path, updated).expect("write README.md");
            } else {
                panic!(
                    "README.md's metrics table differs from what the node exports; \
                     run with BIFROST_UPDATE_README=1 to regenerate it. Expected:\n{want}"
                );
            }
        }
    }

    /// With jemalloc, its counters follow an allocation (this test binary
    /// allocates from it too: the feature exports it as `malloc`, which
    /// Rust's default allocator calls).
    #[cfg(feature = "jemalloc")]
    #[test]
    fn heap_parts_follow_what_is_allocated() {
        let part = |name: &str| {
            let parts = heap_parts().expect("jemalloc's counters");
            parts.iter().find(|p| p.0 == name).expect(name).1
        };
        let before = part("heap_allocated");
        let block = vec![1u8; 64 << 20];
        let during = part("heap_allocated");
        let resident = part("heap_resident");
        let (metadata, mapped) = (part("heap_metadata"), part("heap_mapped"));
        let active = part("heap_active");
        assert_eq!(block.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
        drop(block);
        // Other tests allocate and free meanwhile: allow them 32 MB.
        assert!(
            during >= before + (32 << 20),
            "allocated {before} -> {during} around 64 MB"
        );
        assert!(resident >= 32 << 20, "resident {resident}");
        // Its bookkeeping is resident and small; what it maps holds the
        // block, still allocated when it was read.
        assert!(
            metadata > 0 && metadata < resident / 4,
            "metadata {metadata} of resident {resident}"
        );
        assert!(mapped >= 64 << 20, "mapped {mapped} with 64 MB allocated");
        assert!(
            (64 << 20..=resident).contains(&active),
            "active {active}, resident {resident}"
        );
    }

    #[test]
    fn the_table_names_counters_as_scraped_and_gauges_as_they_are() {
        let table = metrics_table();
        let has = |row: &str| assert!(table.contains(row), "no {row:?} in\n{table}");
        has("| `bifrost_proposals_total` | counter | `kind`, `result` |");
        has("| `bifrost_raft_term` | gauge |  | Current Raft term |");
        has("| `bifrost_query_latency_seconds` | histogram |  |");
        has("| `bifrost_device_polls_total` | counter | `device` |");
    }
}
