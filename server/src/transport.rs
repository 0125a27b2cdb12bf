//! How a node's three ports take connections: plain text in an `--insecure`
//! node, else TLS through `bifrost_tls::ServerTls` (each handshake in its
//! own task, the certificate replaced on SIGHUP or when its files change,
//! without a restart):
//!
//! - the **peer port** requires a client certificate from the cluster CA
//!   (which node it names is checked per call, in `peer_port`);
//! - the **public gRPC port** accepts one, optionally (a user's);
//! - the **HTTP/WebSocket port** asks for none (a browser would prompt).
//!
//! This module owns the glue between `bifrost_tls` and the servers (a
//! tonic incoming stream, axum's `Listener`); what certificates are and
//! how they are checked is `bifrost_tls`'s business.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bifrost_proto::channel::Security;
use bifrost_tls::{ClientAuth, ServerFiles, ServerTls, TlsConnection};
use futures::Stream;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Longest a client may take over its TLS handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// How often certificate files are checked for a change.
const FILE_CHECK: Duration = Duration::from_secs(2);

/// `--tls-cert`, `--tls-key`, `--tls-ca`: the node's certificate and key
/// (served on every port, and shown to peers as a client) and the cluster
/// CA (which peers' and clients' certificates must be signed by).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// TLS or plain text, for the whole node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeSecurity {
    /// `--insecure`: every port plain text, no peer authentication.
    Insecure,
    Tls(TlsOptions),
}

/// The TLS server sides of a node's ports (none when insecure).
pub struct PortsTls {
    pub peer: Arc<ServerTls>,
    pub grpc: Arc<ServerTls>,
    pub http: Arc<ServerTls>,
}

impl NodeSecurity {
    /// How this node connects to its peers' peer ports: TLS with its own
    /// certificate as the client's.
    pub fn peer_client(&self) -> Security {
        match self {
            NodeSecurity::Insecure => Security::Plain,
            NodeSecurity::Tls(t) => {
                Security::tls(t.ca.clone(), Some((t.cert.clone(), t.key.clone())))
            }
        }
    }

    /// Loads every port's certificate (a bad file is an error naming it)
    /// and reloads them on SIGHUP and file changes from then on.
    pub fn load(&self) -> anyhow::Result<Option<PortsTls>> {
        let NodeSecurity::Tls(t) = self else {
            log_hangups()?;
            return Ok(None);
        };
        let files = |client_auth, alpn: &[u8]| ServerFiles {
            ca: Some(t.ca.clone()),
            cert: t.cert.clone(),
            key: t.key.clone(),
            client_auth,
            alpn: vec![alpn.to_vec()],
        };
        let ports = PortsTls {
            peer: ServerTls::load(files(ClientAuth::Required, b"h2"))?,
            grpc: ServerTls::load(files(ClientAuth::Optional, b"h2"))?,
            http: ServerTls::load(ServerFiles {
                ca: None,
                ..files(ClientAuth::None, b"http/1.1")
            })?,
        };
        reload_on_signal_or_change(&ports)?;
        Ok(Some(ports))
    }
}

/// An `--insecure` node has nothing to reload: SIGHUP (which would end
/// the process by default) is logged and otherwise ignored.
fn log_hangups() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(
        async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: nothing to reload (--insecure: no certificates)");
            }
        }
        .in_current_span(),
    );
    Ok(())
}

/// Reloads every port on SIGHUP and whenever its files change, for as
/// long as the node runs; every outcome is logged.
fn reload_on_signal_or_change(ports: &PortsTls) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    let all = [ports.peer.clone(), ports.grpc.clone(), ports.http.clone()];
    for tls in &all {
        // The watchers run until the process ends.
        drop(tls.watch_files(FILE_CHECK));
    }
    tokio::spawn(
        async move {
            while hangups.recv().await.is_some() {
                for tls in &all {
                    tls.reload_logged("SIGHUP");
                }
            }
        }
        .in_current_span(),
    );
    Ok(())
}

/// Serves `router` on `listener` until `shutdown`: through `tls`, else
/// plain text; `port` names it in log lines.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    tls: Option<&Arc<ServerTls>>,
    port: &'static str,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    match tls {
        Some(tls) => {
            let incoming = tls_incoming(listener, tls, port);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        // Nagle off on every accepted connection: `Server::tcp_nodelay`
        // does not apply to an incoming stream given here, and with Nagle
        // and delayed ACKs a small reply waited ~40 ms.
        None => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}

/// Connections of `listener` whose TLS handshake is done, as tonic's
/// incoming stream; handshakes log in the span `port`.
pub fn tls_incoming(
    listener: tokio::net::TcpListener,
    tls: &Arc<ServerTls>,
    port: &'static str,
) -> impl Stream<Item = std::io::Result<TlsConnection>> {
    let accepted = accept_in_span(listener, tls, port);
    futures::stream::unfold(accepted, |mut rx| async move {
        let (conn, _) = rx.recv().await?;
        Some((Ok(conn), rx))
    })
}

/// `tls.accept`, its log lines (refused handshakes) naming the port.
fn accept_in_span(
    listener: tokio::net::TcpListener,
    tls: &Arc<ServerTls>,
    port: &'static str,
) -> mpsc::Receiver<(TlsConnection, SocketAddr)> {
    tracing::info_span!("tls", port).in_scope(|| tls.accept(listener, HANDSHAKE_DEADLINE))
}

/// Connections whose TLS handshake is done, for `axum::serve`.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsConnection, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(
        listener: tokio::net::TcpListener,
        tls: &Arc<ServerTls>,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        Ok(TlsListener {
            accepted: accept_in_span(listener, tls, "http"),
            local,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsConnection, SocketAddr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended: no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
