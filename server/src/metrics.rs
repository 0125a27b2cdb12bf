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
    term: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    last_log_index: Gauge,
    is_leader: Gauge,
    node_id: Gauge,
    log_appends: Gauge,
    log_fsyncs: Gauge,
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
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
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
        Metrics {
            registry,
            proposals,
            proposal_latency,
            apply_latency,
            applied_entries,
            readings_ingested,
            readings_duplicate,
            term,
            commit_index,
            applied_index,
            last_log_index,
            is_leader,
            node_id,
            log_appends,
            log_fsyncs,
        }
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

    /// Renders the text exposition format, refreshing Raft gauges first.
    pub fn render(&self, node: &Arc<RaftNode>) -> String {
        let m = node.raft.metrics().borrow().clone();
        self.term.set(m.current_term as i64);
        self.commit_index.set(node.commit_index() as i64);
        self.applied_index
            .set(m.last_applied.map(|l| l.index).unwrap_or(0) as i64);
        self.last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        self.is_leader.set(node.is_leader() as i64);
        self.node_id.set(node.id as i64);
        self.log_appends.set(
            node.log_stats
                .appends
                .load(std::sync::atomic::Ordering::Relaxed) as i64,
        );
        self.log_fsyncs.set(
            node.log_stats
                .fsyncs
                .load(std::sync::atomic::Ordering::Relaxed) as i64,
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
