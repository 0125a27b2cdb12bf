//! How a gRPC client reaches a node: the one place where an address becomes
//! a tonic [`Endpoint`], plain text (`http://`) or TLS (`https://`, through
//! tonic's rustls integration on ring). The server's peer calls, the Raft
//! transport, `bifrostctl`, the test kit and the fault-testing harness all
//! connect through here.
//!
//! TLS material is named by its files and read each time an endpoint is
//! made, so a certificate rotated on disk is used by the next connection
//! without a restart. This module knows nothing of certificates beyond
//! handing their PEM to tonic; making and checking them is `bifrost-tls`'s
//! business.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How connections are secured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// Plain text: `--insecure` clusters only.
    #[default]
    Plain,
    /// TLS, checking the server against a CA, optionally presenting a
    /// client certificate.
    Tls(ClientTls),
}

/// Files of a TLS client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM of the CA that signed the servers' certificates.
    pub ca: PathBuf,
    /// PEM certificate and key presented to the server, if any.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl Security {
    /// TLS checking servers against `ca`, presenting `identity` if given.
    pub fn tls(ca: impl Into<PathBuf>, identity: Option<(PathBuf, PathBuf)>) -> Security {
        Security::Tls(ClientTls {
            ca: ca.into(),
            identity,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Security::Plain => "http",
            Security::Tls(_) => "https",
        }
    }

    /// `HOST:PORT`, or a URL of this security's scheme, as a URL
    /// (`https://HOST:PORT`); a URL of the other scheme is an error that
    /// says which flag is missing.
    pub fn url(&self, addr: &str) -> Result<String, String> {
        let addr = addr.trim().trim_end_matches('/');
        let rest = match addr.split_once("://") {
            None => addr,
            Some((scheme, rest)) if scheme == self.scheme() => rest,
            Some(("https", _)) => {
                return Err(format!(
                    "'{addr}' is a TLS address, but no CA was given to check it (--ca)"
                ))
            }
            Some(("http", _)) => {
                return Err(format!(
                    "'{addr}' is a plain-text address, but TLS was asked for (--ca)"
                ))
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "'{addr}': unknown scheme '{scheme}' (expected HOST:PORT)"
                ))
            }
        };
        if rest.is_empty() || rest.contains('/') {
            return Err(format!("'{addr}' is not HOST:PORT"));
        }
        Ok(format!("{}://{rest}", self.scheme()))
    }

    /// An endpoint for `addr` (`HOST:PORT` or a URL): lazily connecting,
    /// the TLS files read now. Errors name the address or the file.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let url = self.url(addr)?;
        let endpoint =
            Endpoint::from_shared(url.clone()).map_err(|e| format!("bad address '{addr}': {e}"))?;
        match self {
            Security::Plain => Ok(endpoint),
            Security::Tls(tls) => endpoint
                .tls_config(tls.config()?)
                .map_err(|e| format!("TLS for {url}: {}", with_sources(&e))),
        }
    }
}

impl ClientTls {
    /// tonic's TLS configuration from the files, read now.
    pub fn config(&self) -> Result<ClientTlsConfig, String> {
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca)?));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(config)
    }
}

/// An error and its causes, `: `-separated (tonic's own message is only
/// "transport error").
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_the_scheme_of_the_security_and_refuse_the_other() {
        let plain = Security::Plain;
        let tls = Security::tls("/nonexistent/ca.pem", None);
        assert_eq!(plain.url("n1:7001").unwrap(), "http://n1:7001");
        assert_eq!(plain.url("http://n1:7001/").unwrap(), "http://n1:7001");
        assert_eq!(tls.url("n1:7001").unwrap(), "https://n1:7001");
        assert_eq!(tls.url("https://[::1]:7001").unwrap(), "https://[::1]:7001");
        assert!(plain.url("https://n1:7001").unwrap_err().contains("--ca"));
        assert!(tls
            .url("http://n1:7001")
            .unwrap_err()
            .contains("plain-text"));
        assert!(plain.url("ftp://n1:7001").unwrap_err().contains("ftp"));
        assert!(plain.url("n1:7001/x").unwrap_err().contains("HOST:PORT"));
    }

    #[test]
    fn a_missing_tls_file_is_named() {
        let tls = Security::tls("/nonexistent/ca.pem", None);
        let err = tls.endpoint("n1:7001").unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
