//! A TLS server side whose certificate can be replaced while it runs:
//! [`ServerTls`] holds the current rustls configuration, built from its
//! files, and hands each new connection the configuration of the moment.
//! [`ServerTls::reload`] (on SIGHUP, or when [`ServerTls::watch_files`]
//! sees a file change) builds a new one; a bad file keeps the old one and
//! says why. Connections already open keep the certificate they began with.
//!
//! [`ServerTls::accept`] runs the handshakes of a listener, each in its own
//! task with a deadline, so one slow or silent client holds up nobody;
//! finished connections come out of a channel, for tonic's
//! `serve_with_incoming` or axum's `serve`. Failed handshakes are logged
//! and counted. Nothing here knows what protocol runs inside.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::{server_config, ClientAuth};
use crate::Result;

/// A connection whose handshake is done.
pub type TlsConnection = TlsStream<TcpStream>;

/// Accepted connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// What a TLS server is built from.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    /// The cluster CA, which client certificates are checked against
    /// (needed unless `client_auth` is [`ClientAuth::None`]).
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_auth: ClientAuth,
    /// Protocols offered by ALPN: `h2` for gRPC, `http/1.1` for HTTP.
    pub alpn: Vec<Vec<u8>>,
}

/// A server's TLS configuration, replaceable while it serves.
pub struct ServerTls {
    files: ServerFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// Modification times and sizes of the files when last loaded.
    loaded_stamp: RwLock<Vec<Option<(SystemTime, u64)>>>,
    refused: AtomicU64,
    reloads: AtomicU64,
}

impl ServerTls {
    /// Loads the files; an error names the file that is wrong.
    pub fn load(files: ServerFiles) -> Result<Arc<ServerTls>> {
        let stamp = stamp(&files);
        let config = build(&files)?;
        Ok(Arc::new(ServerTls {
            files,
            current: RwLock::new(Arc::new(config)),
            loaded_stamp: RwLock::new(stamp),
            refused: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        }))
    }

    pub fn files(&self) -> &ServerFiles {
        &self.files
    }

    /// Builds the configuration from the files again and uses it for new
    /// connections. On error the old one stays in use.
    pub fn reload(&self) -> Result<()> {
        let stamp = stamp(&self.files);
        let config = build(&self.files)?;
        *self.current.write().expect("tls config lock") = Arc::new(config);
        *self.loaded_stamp.write().expect("tls stamp lock") = stamp;
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// [`reload`](Self::reload) because of `cause` (`SIGHUP`, `file change`),
    /// logging the outcome; false if the files did not load.
    pub fn reload_logged(&self, cause: &str) -> bool {
        match self.reload() {
            Ok(()) => {
                tracing::info!(cert = %self.files.cert.display(), "{cause}: TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "{cause}: TLS files do not load; keeping the old ones");
                false
            }
        }
    }

    /// Handshakes refused or failed since start (wrong CA, no client
    /// certificate, not TLS at all, too slow).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Counts a connection refused after its handshake (a peer whose
    /// certificate names no current member, say).
    pub fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("tls config lock").clone())
    }

    /// Accepts connections on `listener` and runs their handshakes, each
    /// with `deadline`; finished ones come out of the returned channel. It
    /// stops when the receiver is dropped. Its tasks (and their log lines)
    /// run in the caller's tracing span.
    pub fn accept(
        self: &Arc<Self>,
        listener: TcpListener,
        deadline: Duration,
    ) -> mpsc::Receiver<(TlsConnection, SocketAddr)> {
        let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
        let tls = self.clone();
        tokio::spawn(
            async move {
                loop {
                    let (tcp, peer) = tokio::select! {
                        _ = tx.closed() => break,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(e) => {
                                // Out of file descriptors, say: wait, not spin.
                                tracing::warn!(error = %e, "accepting a connection");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        },
                    };
                    let _ = tcp.set_nodelay(true);
                    let (tls, tx) = (tls.clone(), tx.clone());
                    tokio::spawn(
                        async move { tls.handshake(tcp, peer, deadline, tx).await }
                            .in_current_span(),
                    );
                }
            }
            .in_current_span(),
        );
        rx
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        deadline: Duration,
        tx: mpsc::Sender<(TlsConnection, SocketAddr)>,
    ) {
        match tokio::time::timeout(deadline, self.acceptor().accept(tcp)).await {
            Ok(Ok(conn)) => {
                let _ = tx.send((conn, peer)).await;
            }
            Ok(Err(e)) => {
                self.count_refused();
                tracing::warn!(%peer, error = %e, "TLS handshake refused");
            }
            Err(_) => {
                self.count_refused();
                tracing::warn!(%peer, ?deadline, "TLS handshake took too long");
            }
        }
    }

    /// Reloads the files whenever one of them changes (checked every
    /// `every`), until the returned task is aborted. A change that does not
    /// load is logged, and tried again at the next change.
    pub fn watch_files(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = stamp(&tls.files);
                if now == *tls.loaded_stamp.read().expect("tls stamp lock") {
                    continue;
                }
                if !tls.reload_logged("file change") {
                    // Tried again at the next change, not at every tick.
                    *tls.loaded_stamp.write().expect("tls stamp lock") = now;
                }
            }
        })
    }
}

fn build(files: &ServerFiles) -> Result<ServerConfig> {
    let alpn: Vec<&[u8]> = files.alpn.iter().map(Vec::as_slice).collect();
    server_config(
        files.ca.as_deref(),
        &files.cert,
        &files.key,
        files.client_auth,
        &alpn,
    )
}

fn stamp(files: &ServerFiles) -> Vec<Option<(SystemTime, u64)>> {
    [files.ca.as_ref(), Some(&files.cert), Some(&files.key)]
        .into_iter()
        .flatten()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
