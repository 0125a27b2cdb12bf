//! The client side of a plain TLS connection, the counterpart of
//! [`crate::acceptor`]: a TCP connection to `HOST:PORT` whose server is
//! checked, by that host, against a client configuration from
//! [`crate::config::client_config`]. For what speaks HTTP/1.1 or raw bytes
//! over TLS (readiness probes, tests that look at the certificate a port
//! serves); gRPC clients connect through tonic's own TLS
//! (`bifrost_proto::channel`), not here. Nothing here knows what protocol
//! runs inside.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

/// A client connection whose handshake is done.
pub type ClientConnection = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects to `addr` (`HOST:PORT`, `[IPV6]:PORT`) and completes the
/// handshake, the server's certificate checked for `HOST`.
pub async fn connect(addr: &str, config: ClientConfig) -> io::Result<ClientConnection> {
    let name = server_name(addr)?;
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The host of `HOST:PORT` as the name the server's certificate must carry.
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let (host, _port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad(format!("'{addr}' is not HOST:PORT")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        bad(format!(
            "'{addr}': '{host}' is not a host name or address: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        assert_eq!(
            server_name("127.0.0.1:8001").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("[::1]:8001").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("n1.plant:8001").unwrap(),
            ServerName::try_from("n1.plant").unwrap()
        );
        assert!(server_name("n1")
            .unwrap_err()
            .to_string()
            .contains("HOST:PORT"));
        assert!(server_name("bad host:1").is_err());
    }
}
