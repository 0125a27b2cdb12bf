//! Bifrost's TLS material, in one place: the cluster's certificate
//! authority and the node and user certificates it signs ([`certs`]), and
//! who a certificate says its holder is ([`identity`]), and the rustls
//! configurations of servers and clients built from those files
//! ([`config`]), and a server side whose certificate is replaced while
//! it runs ([`acceptor`]), and its client counterpart for connections
//! that are not gRPC ([`connector`]).
//!
//! A cluster has its own CA. Each node holds a certificate naming its node
//! id (`urn:bifrost:node:N` in the subject alternative names) and the host
//! names and addresses it is reached at, usable both to serve and, towards
//! its peers, as a client. A user's client certificate names the user
//! (`urn:bifrost:user:NAME`). Peers accept each other only by the node id
//! in a certificate signed by the cluster CA; host names matter to clients
//! checking the server.
//!
//! Cryptography is rustls on ring, and certificates are made with rcgen:
//! nothing here is hand-written. This crate knows nothing of Raft, storage,
//! gRPC or the server; `server` and `client` build their transports from it.

pub mod acceptor;
pub mod certs;
pub mod config;
pub mod connector;
pub mod identity;

pub use acceptor::{ServerFiles, ServerTls, TlsConnection};
pub use certs::{CertDir, HostList, NodeSpec};
pub use config::ClientAuth;
pub use connector::ClientConnection;
pub use identity::Identity;

/// What went wrong with TLS material, naming the file or the input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{what}: {source}")]
    Rcgen { what: String, source: rcgen::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn rcgen(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Error {
        let what = what.into();
        move |source| Error::Rcgen { what, source }
    }
}
