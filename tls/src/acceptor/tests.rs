//! Real handshakes over loopback: concurrency of the accept loop, refusals
//! counted, and certificates replaced while serving.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::certs::{CertDir, NodeSpec, LEAF_DAYS};
use crate::config::{certificates, client_config};

fn certs() -> (tempfile::TempDir, CertDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    let nodes = NodeSpec::parse_list("1=n1+127.0.0.1,2=n2+127.0.0.1").unwrap();
    dir.init(&nodes, "admin", LEAF_DAYS).unwrap();
    (tmp, dir)
}

fn files(dir: &CertDir) -> ServerFiles {
    ServerFiles {
        ca: Some(dir.ca_cert()),
        cert: dir.node_cert(1),
        key: dir.node_key(1),
        client_auth: ClientAuth::Optional,
        alpn: vec![b"h2".to_vec()],
    }
}

async fn serving(
    dir: &CertDir,
) -> (
    Arc<ServerTls>,
    SocketAddr,
    mpsc::Receiver<(TlsConnection, SocketAddr)>,
) {
    let tls = ServerTls::load(files(dir)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = tls.accept(listener, Duration::from_secs(30));
    (tls, addr, rx)
}

/// Connects as user admin; returns the certificate the server showed.
async fn connect(dir: &CertDir, addr: SocketAddr) -> std::io::Result<CertificateDer<'static>> {
    let identity = (dir.user_cert("admin"), dir.user_key("admin"));
    let config = client_config(&dir.ca_cert(), Some((&identity.0, &identity.1)), &[b"h2"]).unwrap();
    let mut conn = crate::connector::connect(&addr.to_string(), config).await?;
    conn.write_all(b"x").await?;
    let shown = conn.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(shown)
}

fn file_cert(path: &Path) -> CertificateDer<'static> {
    certificates(path).unwrap().remove(0)
}

/// The served end of a connection: it reads the client's byte and says who
/// the client is.
async fn served(rx: &mut mpsc::Receiver<(TlsConnection, SocketAddr)>) -> crate::Identity {
    let (mut conn, _) = rx.recv().await.unwrap();
    let mut byte = [0u8; 1];
    conn.read_exact(&mut byte).await.unwrap();
    let chain = conn.get_ref().1.peer_certificates().unwrap();
    crate::Identity::of_certificate(&chain[0]).unwrap()
}

#[tokio::test]
async fn a_silent_or_plain_text_client_holds_up_nobody_and_is_counted() {
    let (_tmp, dir) = certs();
    let (tls, addr, mut rx) = serving(&dir).await;
    // Connected, says nothing: its handshake waits up to 30 s.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let shown = tokio::time::timeout(Duration::from_secs(10), connect(&dir, addr))
        .await
        .expect("a client behind a silent one must not wait for its deadline")
        .unwrap();
    assert_eq!(shown, file_cert(&dir.node_cert(1)));
    assert_eq!(served(&mut rx).await, crate::Identity::User("admin".into()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tls.refused() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the plain-text client is not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tls.refused(), 1, "only the plain-text client failed so far");
}

#[tokio::test]
async fn reload_serves_a_rotated_certificate_and_a_bad_file_keeps_the_last_good_one() {
    let (_tmp, dir) = certs();
    let (tls, addr, mut rx) = serving(&dir).await;
    let before = connect(&dir, addr).await.unwrap();
    served(&mut rx).await;
    assert_eq!(before, file_cert(&dir.node_cert(1)));

    dir.rotate_node(1, None, 30).unwrap();
    tls.reload().unwrap();
    let after = connect(&dir, addr).await.unwrap();
    served(&mut rx).await;
    assert_ne!(after, before);
    assert_eq!(after, file_cert(&dir.node_cert(1)));

    std::fs::write(dir.node_key(1), b"not a key").unwrap();
    let err = tls.reload().unwrap_err().to_string();
    assert!(err.contains("node-1.key"), "{err}");
    let still = connect(&dir, addr).await.unwrap();
    served(&mut rx).await;
    assert_eq!(still, after, "the last good certificate is still served");
    assert_eq!(tls.reloads(), 1);
}

#[tokio::test]
async fn a_changed_certificate_file_is_picked_up_without_a_signal() {
    let (_tmp, dir) = certs();
    let (tls, addr, mut rx) = serving(&dir).await;
    let watcher = tls.watch_files(Duration::from_millis(50));
    let before = connect(&dir, addr).await.unwrap();
    served(&mut rx).await;

    dir.rotate_node(1, None, 30).unwrap();
    let rotated = file_cert(&dir.node_cert(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let shown = connect(&dir, addr).await.unwrap();
        served(&mut rx).await;
        if shown == rotated {
            break;
        }
        assert_eq!(shown, before);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tls.reloads(), 1);
    watcher.abort();
}
