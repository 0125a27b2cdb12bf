//! TLS on a real node's HTTP/WebSocket port (issue 12, parts 2 and 3, so
//! far): certificates from `bifrostctl certs init`'s code, an HTTPS client
//! over rustls, a `wss://` subscriber written by others (Python
//! `websockets`), plain text refused, and a rotated certificate served
//! after SIGHUP without a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bifrost_testkit::python;
use bifrost_tls::certs::{CertDir, NodeSpec, LEAF_DAYS};
use bifrost_tls::config::{certificates, client_config};
use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` over TLS, checking the server against `dir`'s CA as
/// 127.0.0.1; returns the certificate the server showed and the response.
async fn https_get(
    dir: &CertDir,
    addr: &str,
    path: &str,
) -> std::io::Result<(CertificateDer<'static>, String)> {
    let config = client_config(&dir.ca_cert(), None, &[b"http/1.1"]).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let shown = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let mut response = String::new();
    tls.read_to_string(&mut response).await?;
    Ok((shown, response))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_speaks_tls_only_and_takes_a_rotated_certificate_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CertDir::new(tmp.path().join("certs"));
    dir.init(
        &NodeSpec::parse_list("1=n1+127.0.0.1").unwrap(),
        "admin",
        LEAF_DAYS,
    )
    .unwrap();
    let cert = dir.node_cert(1).display().to_string();
    let key = dir.node_key(1).display().to_string();
    let cluster = TestCluster::start(1, &["--tls-cert", &cert, "--tls-key", &key]);
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let http = cluster.node(1).http.clone();

    let (shown, response) = https_get(&dir, &http, "/healthz").await.unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") && response.ends_with("ok\n"),
        "{response}"
    );
    assert_eq!(shown, certificates(&dir.node_cert(1)).unwrap()[0]);
    assert_eq!(
        http_get(&http, "/healthz").await,
        "",
        "plain HTTP gets no answer"
    );

    // A subscriber written by others, over wss:// with the cluster CA.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_watch.py");
    let out = std::process::Command::new(python())
        .env("BIFROST_WS_CA", dir.ca_cert())
        .args([
            script,
            &format!("wss://{http}/ws"),
            r#"{"type":"subscribe","patterns":["nothing/**"]}"#,
            "1",
            "3",
        ])
        .output()
        .expect("run ws_watch.py (BIFROST_PYTHON with websockets)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "started", "{first}");

    // A new certificate, then SIGHUP: new connections get it.
    dir.rotate_node(1, None, 30).unwrap();
    let rotated = certificates(&dir.node_cert(1)).unwrap().remove(0);
    assert_ne!(rotated, shown);
    let rc = unsafe { libc::kill(cluster.pid(1) as i32, libc::SIGHUP) };
    assert_eq!(rc, 0);
    wait_until_async(
        "the rotated certificate served after SIGHUP",
        Duration::from_secs(10),
        || async {
            let (now_shown, response) = https_get(&dir, &http, "/healthz").await.unwrap();
            assert!(response.ends_with("ok\n"), "{response}");
            now_shown == rotated
        },
    )
    .await;
    // The file watcher may have reloaded it first; the signal's own reload
    // is in the log.
    wait_until_async(
        "a reload on SIGHUP in the log",
        Duration::from_secs(10),
        || async {
            cluster
                .log_of(1)
                .contains("SIGHUP: TLS certificate reloaded")
        },
    )
    .await;
    assert!(
        cluster.node(1).is_running(),
        "SIGHUP must not stop the node"
    );
}

#[test]
fn a_certificate_that_does_not_load_stops_the_node_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("node.key");
    std::fs::write(&key, "not a key").unwrap();
    let missing = tmp.path().join("missing.pem");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bifrost"))
        .args(["serve", "--id", "1", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--peers",
            "1=127.0.0.1:1",
        ])
        .arg("--tls-cert")
        .arg(&missing)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--tls-cert/--tls-key") && err.contains("missing.pem"),
        "{err}"
    );
}
