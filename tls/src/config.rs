//! rustls configurations from PEM files: a server's (its certificate and
//! key, and whether and how clients must show a certificate signed by the
//! cluster CA) and a client's (the CA to check servers against, and
//! optionally its own certificate). Every error names the file.
//!
//! The ring provider is given to each configuration explicitly, so nothing
//! depends on a process-wide default being installed first.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{Error, Result};

/// Which client certificates a server asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// None (browsers, token-only clients).
    None,
    /// One signed by the CA if the client has one; clients without one
    /// are let through to authenticate otherwise (a token).
    Optional,
    /// One signed by the CA, or the handshake fails (the peer port).
    Required,
}

/// The crypto provider every configuration here uses: ring. rustls marks
/// it deprecated because it has no post-quantum key exchange; aws-lc-rs,
/// which has, compiles far more C and needs CMake in some builds.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's configuration; `alpn` lists the protocols it speaks
/// (`h2` for gRPC, `http/1.1` for HTTP and WebSocket).
pub fn server_config(
    ca: Option<&Path>,
    cert: &Path,
    key: &Path,
    auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS versions", e.to_string()))?;
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let ca = ca.ok_or_else(|| {
                Error::invalid(
                    "client certificates",
                    "checking them needs the cluster CA (--tls-ca)",
                )
            })?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots(ca)?.into(), provider());
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| Error::invalid(ca.display().to_string(), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| {
            Error::invalid(
                format!("{} and {}", cert.display(), key.display()),
                e.to_string(),
            )
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client's configuration: servers are checked against `ca`; with
/// `identity` (certificate, key) the client shows that certificate.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS versions", e.to_string()))?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| {
                Error::invalid(
                    format!("{} and {}", cert.display(), key.display()),
                    e.to_string(),
                )
            })?,
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The certificates of a PEM file (a chain: the leaf first).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(path.display().to_string(), format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::invalid(
            path.display().to_string(),
            "holds no certificate",
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| Error::invalid(path.display().to_string(), format!("no private key: {e}")))
}

fn roots(ca: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| {
            Error::invalid(
                ca.display().to_string(),
                format!("not a CA certificate: {e}"),
            )
        })?;
    }
    Ok(roots)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
