//! The Bifrost server: assembles a node from the Raft layer and the storage
//! engine, and serves the public gRPC API, the internal Raft service, and
//! HTTP (`/healthz`, `/readyz`, `/metrics`) on a second port.
//!
//! This is the only crate that knows all the others (storage, raft, proto).
//! Nothing depends on it.

pub mod api;
pub mod assign;
pub mod bench_storage;
pub mod demo;
pub mod devices;
pub mod http;
pub mod limits;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod outbox;
pub mod peer;
pub mod poller;
pub mod pressure;
pub mod query;
pub mod replica;
pub mod retention;
pub mod transport;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bifrost_proto::node::node_internal_server::NodeInternalServer;
use bifrost_proto::raft::raft_internal_server::RaftInternalServer;
use bifrost_proto::v1::bifrost_server::BifrostServer;
use bifrost_raft::network::MAX_MESSAGE_BYTES;
use bifrost_raft::service::InternalService;
use bifrost_raft::{NodeOptions, RaftNode};
use tracing::Instrument;

/// Everything `bifrost serve` needs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub id: u64,
    pub data_dir: PathBuf,
    /// gRPC address (clients and peers).
    pub listen: SocketAddr,
    /// HTTP address (health, metrics).
    pub http: SocketAddr,
    /// Address peers and clients should use for this node, if not `listen`.
    pub advertise: Option<String>,
    /// Initial cluster, `id -> host:port`.
    pub peers: BTreeMap<u64, String>,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    pub snapshot_logs: u64,
    pub keep_logs: u64,
    /// Bytes for the databases' block cache and memtables and the state
    /// applied since the last flush (`bifrost_storage::MemoryBudget`).
    pub memory_budget: usize,
    /// A member that has not answered the leader's probes for this long
    /// loses its devices to the others.
    pub failure_timeout_ms: u64,
    /// Outbox bound; beyond it the oldest poll records are dropped (counted).
    pub outbox_max_bytes: u64,
    /// Subscription limits and defaults.
    pub watch: watch::WatchOptions,
    /// Query limits.
    pub query: api::QueryLimits,
    /// Public requests a second per client connection (0: no limit).
    pub max_requests_per_second: u32,
    /// TLS for the HTTP/WebSocket port (plain text without).
    pub http_tls: Option<transport::TlsOptions>,
    /// How often the leader checks history retention.
    pub retention_check: Duration,
    /// The leader's periodic replica check.
    pub replica_check: replica::MonitorOptions,
}

/// Parses `1=HOST:PORT,2=HOST:PORT,...`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for (i, part) in s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {} ('{part}'): expected ID=HOST:PORT", i + 1))?;
        let id: u64 = id.trim().parse().map_err(|_| {
            format!(
                "peer {} ('{part}'): id '{id}' is not a positive number",
                i + 1
            )
        })?;
        if id == 0 {
            return Err(format!(
                "peer {} ('{part}'): id must be greater than 0",
                i + 1
            ));
        }
        let addr = addr.trim();
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
            format!(
                "peer {} ('{part}'): address '{addr}' is not HOST:PORT",
                i + 1
            )
        })?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!(
                "peer {} ('{part}'): address '{addr}' is not HOST:PORT",
                i + 1
            ));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("peer id {id} is listed twice"));
        }
    }
    Ok(peers)
}

/// Runs one node until `shutdown` resolves.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let advertise = opts
        .advertise
        .clone()
        .or_else(|| opts.peers.get(&opts.id).cloned())
        .unwrap_or_else(|| opts.listen.to_string());
    if let Some(listed) = opts.peers.get(&opts.id) {
        if *listed != advertise {
            anyhow::bail!(
                "--peers lists node {} at {listed}, but it advertises {advertise}",
                opts.id
            );
        }
    }
    // Bind first so a taken port fails fast, before anything is started.
    let grpc_listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", opts.listen))?;
    let http_listener = tokio::net::TcpListener::bind(opts.http)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", opts.http))?;
    // Certificates load before anything starts, too.
    let http_tls = match &opts.http_tls {
        Some(t) => {
            let tls = transport::http_tls(t).context("--tls-cert/--tls-key")?;
            transport::reload_on_signal_or_change(tls.clone()).context("SIGHUP handler")?;
            Some(tls)
        }
        None => None,
    };

    let metrics = Arc::new(metrics::Metrics::new());
    let listener = Arc::new(watch::Listener {
        hub: std::sync::OnceLock::new(),
        metrics: metrics.clone(),
    });
    let observer: bifrost_raft::ApplyObserver = listener.clone();
    let mut node_opts = NodeOptions::new(
        opts.id,
        opts.data_dir.clone(),
        advertise.clone(),
        opts.peers.clone(),
    );
    node_opts.heartbeat_ms = opts.heartbeat_ms;
    node_opts.election_min_ms = opts.election_min_ms;
    node_opts.election_max_ms = opts.election_max_ms;
    node_opts.snapshot_logs = opts.snapshot_logs;
    node_opts.keep_logs = opts.keep_logs;
    node_opts.memory_budget = opts.memory_budget;
    let node = RaftNode::start(node_opts, Some(observer))
        .await
        .context("starting raft")?;
    tracing::info!(grpc = %opts.listen, http = %opts.http, %advertise, "node started");
    let hub = Arc::new(watch::Hub::new(
        opts.id,
        node.state().clone(),
        opts.watch.clone(),
        metrics.clone(),
    ));
    let _ = listener.hub.set(hub.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<BifrostServer<api::Api>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(bifrost_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("reflection service")?;
    let factory: Arc<dyn poller::DriverFactory> = Arc::new(devices::Factory {
        pki_dir: opts.data_dir.join("pki"),
    });
    let local = Arc::new(local::Local {
        node: node.clone(),
        metrics: metrics.clone(),
        factory: factory.clone(),
    });
    let admission = Arc::new(pressure::Admission::default());
    let outbox_tx = outbox::start(
        node.clone(),
        metrics.clone(),
        outbox::OutboxOptions {
            max_bytes: opts.outbox_max_bytes,
            ..Default::default()
        },
        admission.clone(),
    );
    let assign_opts = assign::AssignOptions {
        failure_timeout: Duration::from_millis(opts.failure_timeout_ms),
        ..Default::default()
    };
    let peers = Arc::new(peer::Peers::default());
    tokio::spawn(
        assign::run(node.clone(), peers.clone(), metrics.clone(), assign_opts).in_current_span(),
    );
    tokio::spawn(
        poller::run(node.clone(), metrics.clone(), outbox_tx, factory, admission).in_current_span(),
    );
    tokio::spawn(
        retention::run(node.clone(), metrics.clone(), opts.retention_check).in_current_span(),
    );
    tokio::spawn(
        replica::monitor(
            node.clone(),
            peers.clone(),
            metrics.clone(),
            opts.replica_check.clone(),
        )
        .in_current_span(),
    );

    let rate_limit = Arc::new(limits::RateLimit::new(
        opts.max_requests_per_second,
        opts.max_requests_per_second.saturating_mul(2),
    ));
    let public = BifrostServer::new(api::Api {
        node: node.clone(),
        metrics: metrics.clone(),
        local: local.clone(),
        peers,
        hub: hub.clone(),
        limits: opts.query.clone(),
    })
    .max_decoding_message_size(api::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(api::MAX_MESSAGE_BYTES);
    let public = tonic::service::interceptor::InterceptedService::new(
        public,
        limits::interceptor(rate_limit, metrics.clone()),
    );
    let internal = RaftInternalServer::new(InternalService::new(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let peer_service = NodeInternalServer::new(peer::PeerService::new(opts.id, local));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(public)
        .add_service(internal)
        .add_service(peer_service)
        .serve_with_incoming_shutdown(
            // Nagle off on every accepted connection: `Server::tcp_nodelay`
            // does not apply to an incoming stream given here, and with
            // Nagle and delayed ACKs a small reply waited ~40 ms.
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            stopped(stop_rx.clone()),
        );
    let http = http::serve(
        http_listener,
        http_tls,
        node.clone(),
        metrics.clone(),
        hub.clone(),
        stopped(stop_rx.clone()),
    );
    let (g, h) = tokio::join!(grpc, http);
    node.shutdown().await;
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_say_which() {
        let p = parse_peers("1=127.0.0.1:7001, 2=host-b:7002").unwrap();
        assert_eq!(p.get(&2).map(String::as_str), Some("host-b:7002"));
        assert!(parse_peers("1=a:1,1=b:2")
            .unwrap_err()
            .contains("listed twice"));
        assert!(parse_peers("1=a:1,x=b:2").unwrap_err().contains("peer 2"));
        assert!(parse_peers("1=nohost")
            .unwrap_err()
            .contains("not HOST:PORT"));
        assert!(parse_peers("0=a:1").unwrap_err().contains("greater than 0"));
        assert!(parse_peers("1=a:99999").is_err());
    }
}
