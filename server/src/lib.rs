//! The Bifrost server: assembles a node from the Raft layer and the storage
//! engine, and serves the public gRPC API on one port, Raft and the
//! node-to-node calls on a peer port (`peer_port`), and HTTP (`/healthz`,
//! `/readyz`, `/metrics`, WebSocket) on a third; all three TLS unless the
//! node runs `--insecure` (`transport`).
//!
//! This is the only crate that knows all the others (storage, raft, proto).
//! Nothing depends on it.

pub mod allocator;
pub mod api;
pub mod assign;
pub mod auth;
pub mod bench_storage;
pub mod clock;
pub mod demo;
pub mod devices;
pub mod http;
pub mod limits;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod otlp;
pub mod outbox;
pub mod peer;
pub mod peer_port;
pub mod poller;
pub mod pressure;
pub mod query;
pub mod reach;
pub mod replica;
pub mod retention;
pub mod secrets;
pub mod settings;
pub mod systemd;
pub mod transport;
pub mod watch;
pub mod web;

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
use bifrost_raft::{Member, NodeOptions, RaftNode};
use tonic::service::interceptor::InterceptedService;
use tracing::Instrument;

/// Everything `bifrost serve` needs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub id: u64,
    pub data_dir: PathBuf,
    /// Public gRPC address (clients).
    pub listen: SocketAddr,
    /// Peer port: Raft and node-to-node calls only.
    pub peer_listen: SocketAddr,
    /// HTTP address (health, metrics, WebSocket).
    pub http: SocketAddr,
    /// Addresses clients and peers should use for this node, if not
    /// `listen` and `peer_listen`.
    pub advertise: Option<Member>,
    /// Initial cluster, `id -> public/peer addresses`.
    pub peers: BTreeMap<u64, Member>,
    /// Never form a cluster: wait to be added (`serve --join`).
    pub join: bool,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    pub snapshot_logs: u64,
    pub keep_logs: u64,
    /// Bytes for the databases' block cache and memtables and the state
    /// applied since the last flush (`bifrost_storage::MemoryBudget`).
    pub memory_budget: usize,
    /// Free bytes of the data directory's disk below which writes are
    /// refused (`bifrost_raft::disk_guard`; 0: never).
    pub min_free_disk: u64,
    /// A member that has not answered the leader's probes for this long
    /// loses its devices to the others.
    pub failure_timeout_ms: u64,
    /// When the leader moves a device off a node that cannot reach it.
    pub failover: reach::FailoverOptions,
    /// When a node stops polling a device that does not answer, for a while.
    pub breaker: reach::BreakerOptions,
    /// A member whose clock is off from the leader's by more is reported
    /// (logged once, `bifrost_clock_offset_ms`).
    pub max_clock_offset: Duration,
    /// Labels this node advertises for device affinity (`zone=cell3`).
    pub node_labels: BTreeMap<String, String>,
    /// Outbox bound; beyond it the oldest poll records are dropped (counted).
    pub outbox_max_bytes: u64,
    /// Subscription limits and defaults.
    pub watch: watch::WatchOptions,
    /// Query limits.
    pub query: api::QueryLimits,
    /// Public requests a second per client connection (0: no limit).
    pub max_requests_per_second: u32,
    /// An HTTP client that has not sent a whole request head within this
    /// long is disconnected.
    pub http_header_timeout: Duration,
    /// TLS on every port, or `--insecure` plain text.
    pub security: transport::NodeSecurity,
    /// Users and sessions (not checked on an `--insecure` node).
    pub auth: auth::AuthOptions,
    /// The cluster data key that seals device secrets (else from the
    /// environment, see `secrets`).
    pub data_key_file: Option<PathBuf>,
    /// How often the leader checks history retention.
    pub retention_check: Duration,
    /// The leader's periodic replica check.
    pub replica_check: replica::MonitorOptions,
}

/// Parses `1=API_HOST:PORT/PEER_HOST:PORT,2=...`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, Member>, String> {
    let mut peers = BTreeMap::new();
    for (i, part) in s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let (id, addr) = part.split_once('=').ok_or_else(|| {
            format!(
                "peer {} ('{part}'): expected ID=API_HOST:PORT/PEER_HOST:PORT",
                i + 1
            )
        })?;
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
        let member = Member::parse(addr).map_err(|e| format!("peer {} ({e})", i + 1))?;
        if peers.insert(id, member).is_some() {
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
        .unwrap_or_else(|| Member::new(opts.listen.to_string(), opts.peer_listen.to_string()));
    if let Some(listed) = opts.peers.get(&opts.id) {
        if *listed != advertise {
            anyhow::bail!(
                "--peers lists node {} at {listed}, but it advertises {advertise}",
                opts.id
            );
        }
    }
    // Bind first so a taken port fails fast, before anything is started.
    let bind = |addr: SocketAddr, what: &'static str| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for {what} on {addr}"))
    };
    let grpc_listener = bind(opts.listen, "gRPC (--listen)").await?;
    let peer_listener = bind(opts.peer_listen, "peers (--peer-listen)").await?;
    let http_listener = bind(opts.http, "HTTP (--http)").await?;
    // Certificates load before anything starts, too.
    let ports_tls = opts
        .security
        .load()
        .context("--tls-cert/--tls-key/--tls-ca")?;
    if ports_tls.is_none() {
        tracing::warn!(
            "INSECURE: --insecure: every port is plain text and the peer port checks no \
             certificate; anyone who reaches a port can read, write and rejoin the cluster"
        );
    }

    let admin_password = match &opts.auth.admin_password_file {
        Some(path) if opts.auth.enforce => Some(auth::bootstrap::read_password_file(path)?),
        _ => None,
    };

    let data_key = secrets::DataKey::load(opts.data_key_file.as_deref())
        .map_err(|e| anyhow::anyhow!("--data-key-file: {e}"))?;
    match &data_key {
        Some(k) => tracing::info!(
            data_key = k.id(),
            "device secrets are sealed with this data key"
        ),
        None => tracing::warn!(
            "no data key (--data-key-file or {}): devices with secret labels (passwords, \
             private keys) cannot be configured or polled by this node",
            secrets::DATA_KEY_ENV
        ),
    }

    let metrics = Arc::new(metrics::Metrics::new());
    if let Some(p) = &ports_tls {
        let _ = metrics.tls_ports.set(vec![
            ("peer", p.peer.clone()),
            ("grpc", p.grpc.clone()),
            ("http", p.http.clone()),
        ]);
    }
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
    node_opts.security = opts.security.peer_client();
    node_opts.heartbeat_ms = opts.heartbeat_ms;
    node_opts.election_min_ms = opts.election_min_ms;
    node_opts.election_max_ms = opts.election_max_ms;
    node_opts.snapshot_logs = opts.snapshot_logs;
    node_opts.keep_logs = opts.keep_logs;
    node_opts.memory_budget = opts.memory_budget;
    match allocator::fit_to_budget(opts.memory_budget) {
        Ok(allocator::Decay::AtOnce) => tracing::info!(
            budget_mib = opts.memory_budget >> 20,
            "a small memory budget: freed memory goes back to the system at once \
             (jemalloc dirty_decay_ms 0), at some cost in throughput"
        ),
        Ok(allocator::Decay::Unchanged(why)) => {
            tracing::debug!(why, "jemalloc's decay of freed pages unchanged")
        }
        Err(e) => tracing::warn!(error = %e, "jemalloc's decay of freed pages unchanged"),
    }
    node_opts.join = opts.join;
    node_opts.min_free_disk = opts.min_free_disk;
    let node = RaftNode::start(node_opts, Some(observer))
        .await
        .context("starting raft")?;
    tracing::info!(
        grpc = %opts.listen,
        peer = %opts.peer_listen,
        http = %opts.http,
        %advertise,
        tls = ports_tls.is_some(),
        "node started"
    );
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
        data_key: data_key.clone(),
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
        failover: opts.failover,
        node_labels: opts.node_labels.clone(),
        max_clock_offset: opts.max_clock_offset,
        ..Default::default()
    };
    let peers = Arc::new(peer::Peers::new(opts.security.peer_client()));
    let reach = Arc::new(reach::Reachability::new(opts.breaker));
    tokio::spawn(
        assign::run(
            node.clone(),
            peers.clone(),
            metrics.clone(),
            assign_opts,
            reach.clone(),
        )
        .in_current_span(),
    );
    tokio::spawn(
        poller::run(
            node.clone(),
            metrics.clone(),
            outbox_tx,
            factory,
            admission,
            reach.clone(),
        )
        .in_current_span(),
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
    let auth = auth::Auth::new(node.clone(), opts.auth.clone(), metrics.clone());
    if opts.auth.enforce {
        tokio::spawn(auth::bootstrap_admin(node.clone(), admin_password).in_current_span());
    }
    let api = Arc::new(api::Api {
        auth: auth.clone(),
        data_key,
        node: node.clone(),
        metrics: metrics.clone(),
        local: local.clone(),
        peers,
        hub: hub.clone(),
        limits: opts.query.clone(),
        reach: reach.clone(),
    });
    let web = web::WebState::new(api.clone(), ports_tls.is_some());
    let public = BifrostServer::from_arc(api)
        .max_decoding_message_size(api::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(api::MAX_MESSAGE_BYTES);
    let public = InterceptedService::new(public, limits::interceptor(rate_limit, metrics.clone()));
    let gate = peer_port::PeerGate::new(node.clone(), metrics.clone(), ports_tls.is_some());
    let internal = RaftInternalServer::new(InternalService::new(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let internal = InterceptedService::new(internal, gate.interceptor());
    let peer_service = InterceptedService::new(
        NodeInternalServer::new(peer::PeerService::new(
            opts.id,
            local,
            opts.node_labels.clone(),
            reach,
        )),
        gate.interceptor(),
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        systemd::stopping();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let grpc = transport::serve_grpc(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(public),
        grpc_listener,
        ports_tls.as_ref().map(|p| &p.grpc),
        "grpc",
        stopped(stop_rx.clone()),
    );
    let peer = transport::serve_grpc(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(internal)
            .add_service(peer_service),
        peer_listener,
        ports_tls.as_ref().map(|p| &p.peer),
        "peer",
        stopped(stop_rx.clone()),
    );
    let http = http::serve(
        http_listener,
        ports_tls.as_ref().map(|p| p.http.clone()),
        http::HttpState {
            node: node.clone(),
            metrics: metrics.clone(),
            hub: hub.clone(),
            auth,
            web,
        },
        opts.http_header_timeout,
        stopped(stop_rx.clone()),
    );
    // The ports are bound and Raft runs: a service manager may count the node as started.
    tokio::spawn(systemd::run(node.clone()).in_current_span());
    let (g, p, h) = tokio::join!(grpc, peer, http);
    node.shutdown().await;
    g.context("gRPC server")?;
    p.context("peer server")?;
    h.context("HTTP server")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_say_which() {
        let p =
            parse_peers("1=127.0.0.1:7001/127.0.0.1:7101, 2=host-b:7002/10.0.0.2:7102").unwrap();
        assert_eq!(
            p.get(&2),
            Some(&Member::new("host-b:7002", "10.0.0.2:7102"))
        );
        assert!(parse_peers("1=a:1/a:2,1=b:1/b:2")
            .unwrap_err()
            .contains("listed twice"));
        assert!(parse_peers("1=a:1/a:2,x=b:1/b:2")
            .unwrap_err()
            .contains("peer 2"));
        let no_peer = parse_peers("1=a:1").unwrap_err();
        assert!(
            no_peer.contains("peer 1") && no_peer.contains("PEER_HOST"),
            "{no_peer}"
        );
        assert!(parse_peers("1=nohost/a:2")
            .unwrap_err()
            .contains("not HOST:PORT"));
        assert!(parse_peers("0=a:1/a:2")
            .unwrap_err()
            .contains("greater than 0"));
        assert!(parse_peers("1=a:99999/a:2").is_err());
    }
}
