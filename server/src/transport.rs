//! How a node's ports take connections: plain TCP, or TLS through
//! `bifrost_tls::ServerTls` (each handshake in its own task, the
//! certificate replaced on SIGHUP or when its files change, without a
//! restart). Only the HTTP/WebSocket port can use TLS so far; the gRPC
//! port and the peer port follow (issue 12, parts 1 and 2).
//!
//! This module owns the glue between `bifrost_tls` and the servers (axum's
//! `Listener`); what certificates are and how they are checked is
//! `bifrost_tls`'s business.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bifrost_tls::{ClientAuth, ServerFiles, ServerTls, TlsConnection};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Longest a client may take over its TLS handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// How often certificate files are checked for a change.
const FILE_CHECK: Duration = Duration::from_secs(2);

/// `--tls-cert`, `--tls-key`: the node's certificate for its HTTP port.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The HTTP port's TLS side: browsers and scripts connect with no client
/// certificate, and speak HTTP/1.1 (WebSocket upgrades included).
pub fn http_tls(opts: &TlsOptions) -> anyhow::Result<Arc<ServerTls>> {
    let tls = ServerTls::load(ServerFiles {
        ca: None,
        cert: opts.cert.clone(),
        key: opts.key.clone(),
        client_auth: ClientAuth::None,
        alpn: vec![b"http/1.1".to_vec()],
    })?;
    Ok(tls)
}

/// Reloads `tls` on SIGHUP and whenever its files change, for as long as
/// the node runs; every outcome is logged.
pub fn reload_on_signal_or_change(tls: Arc<ServerTls>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    let watched = tls.clone();
    tokio::spawn(
        async move {
            while hangups.recv().await.is_some() {
                watched.reload_logged("SIGHUP");
            }
        }
        .in_current_span(),
    );
    // The watcher runs until the process ends.
    drop(tls.watch_files(FILE_CHECK));
    Ok(())
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
            accepted: tls.accept(listener, HANDSHAKE_DEADLINE),
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
