//! TLS on a real cluster (issue 12, parts 1-3): every port speaks TLS only,
//! certificates come from `bifrostctl certs`'s code (the test kit's
//! `ClusterOptions::tls`), and
//! - the peer port takes Raft and node calls only from current members
//!   (certificates of another CA, of a user or of a removed member are
//!   refused, logged and counted), and the public port serves no Raft;
//! - clients are refused for an expired certificate, a wrong host name, a
//!   CA they do not trust, or plain text;
//! - the HTTP port serves a `wss://` subscriber written by others (Python
//!   `websockets`), and a rotated certificate after SIGHUP, no restart;
//! - a certificate that does not load stops the node, naming the file.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bifrost_proto::channel::Security;
use bifrost_proto::raft::raft_internal_client::RaftInternalClient;
use bifrost_proto::raft::RaftPayload;
use bifrost_proto::v1::bifrost_client::BifrostClient;
use bifrost_proto::v1::StatusRequest;
use bifrost_testkit::python;
use bifrost_tls::certs::{CertDir, NodeSpec, LEAF_DAYS};
use bifrost_tls::config::{certificates, client_config};
use bifrost_tls::connector::connect;
use common::*;
use rustls::pki_types::CertificateDer;

/// The certificate a TLS port at `addr` shows a client speaking `alpn`,
/// checked against `dir`'s CA, presenting user admin's certificate (the
/// handshake checks only the CA; the peer port's calls check the rest).
async fn shown_certificate(dir: &CertDir, addr: &str, alpn: &[u8]) -> CertificateDer<'static> {
    let identity = (dir.user_cert("admin"), dir.user_key("admin"));
    let config = client_config(
        &dir.ca_cert(),
        Some((identity.0.as_path(), identity.1.as_path())),
        &[alpn],
    )
    .unwrap();
    let tls = connect(addr, config).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// A metric of node `id` of a TLS cluster (its HTTP port is https), with
/// its labels as scraped (`name{port="peer"}`); 0 when absent.
async fn tls_metric(c: &TestCluster, id: u64, series: &str) -> u64 {
    let (_, page) = https_get(&c.pki(), &c.node(id).http, "/metrics")
        .await
        .unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Node 1's refused TLS handshakes on `port` so far.
async fn refused_handshakes(c: &TestCluster, port: &str) -> u64 {
    let series = format!("bifrost_tls_refused_handshakes{{port=\"{port}\"}}");
    tls_metric(c, 1, &series).await
}

/// Waits until node 1 has counted more refused handshakes on `port` than
/// `before`.
async fn wait_refused_handshake(c: &TestCluster, port: &str, before: u64) {
    wait_until_async(
        &format!("a refused handshake counted on the {port} port"),
        Duration::from_secs(10),
        || async { refused_handshakes(c, port).await > before },
    )
    .await;
}

/// A TLS cluster of `n` nodes with a leader.
async fn tls_cluster(n: u64) -> TestCluster {
    let c = TestCluster(Cluster::start(options(n, &[]).tls()).unwrap());
    c.wait_leader(&(1..=n).collect::<Vec<_>>(), Duration::from_secs(60))
        .await;
    c
}

/// Another cluster's CA, with certificates for its nodes 1 and 2 (on
/// localhost and 127.0.0.1) and user admin; the directory lives as long as
/// the first value.
fn another_cluster_ca() -> (tempfile::TempDir, CertDir) {
    let other = tempfile::tempdir().unwrap();
    let foreign = CertDir::new(other.path().join("pki"));
    let nodes = NodeSpec::parse_list("1=localhost+127.0.0.1,2=localhost+127.0.0.1").unwrap();
    foreign.init(&nodes, "admin", LEAF_DAYS).unwrap();
    (other, foreign)
}

/// Node `id`'s certificate and key in `dir`, as a client identity.
fn node_identity(dir: &CertDir, id: u64) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    Some((dir.node_cert(id), dir.node_key(id)))
}

/// `ReadIndex` on the peer port at `addr` as the holder of `identity`
/// (certificates of `ca`): the call's status code and message.
async fn peer_call(
    addr: &str,
    ca: &std::path::Path,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<(), tonic::Status> {
    let endpoint = Security::tls(ca, identity)
        .endpoint(addr)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let mut stub = RaftInternalClient::new(channel);
    stub.read_index(RaftPayload { data: vec![] })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_admits_current_members_only_and_counts_every_refusal() {
    let mut c = tls_cluster(3).await;
    let pki = c.pki();
    let peer1 = c.node(1).peer.clone();

    // A member's certificate: served.
    peer_call(&peer1, &pki.ca_cert(), node_identity(&pki, 2))
        .await
        .expect("node 2 is a member");

    // A user's certificate from the same CA: refused per call, saying why.
    let user = peer_call(
        &peer1,
        &pki.ca_cert(),
        Some((pki.user_cert("admin"), pki.user_key("admin"))),
    )
    .await
    .unwrap_err();
    assert_eq!(user.code(), tonic::Code::PermissionDenied, "{user:?}");
    assert!(user.message().contains("user 'admin'"), "{user:?}");
    assert!(tls_metric(&c, 1, "bifrost_peer_refused_calls_total").await >= 1);
    assert!(c.log_of(1).contains("refused a call on the peer port"));

    // A node certificate of another cluster's CA: refused in the handshake.
    let before = refused_handshakes(&c, "peer").await;
    let (_other, foreign) = another_cluster_ca();
    let refused = peer_call(&peer1, &pki.ca_cert(), node_identity(&foreign, 2)).await;
    assert!(refused.is_err(), "a foreign CA's node was served");
    wait_refused_handshake(&c, "peer", before).await;
    // No certificate at all: refused in the handshake too.
    assert!(peer_call(&peer1, &pki.ca_cert(), None).await.is_err());

    // The public port serves no Raft, whoever asks.
    let on_public = peer_call(
        &c.node(1).grpc.clone(),
        &pki.ca_cert(),
        node_identity(&pki, 2),
    )
    .await
    .unwrap_err();
    assert_eq!(
        on_public.code(),
        tonic::Code::Unimplemented,
        "{on_public:?}"
    );

    // A removed member: its certificate no longer opens the peer port.
    let leader = c.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let remove = if leader == 3 { 2 } else { 3 };
    c.client().remove_member(remove).await.unwrap();
    let keep = (1..=3).find(|id| *id != remove).unwrap();
    let keep_peer = c.node(keep).peer.clone();
    wait_until_async(
        "the removed member refused",
        Duration::from_secs(30),
        || async {
            match peer_call(&keep_peer, &pki.ca_cert(), node_identity(&pki, remove)).await {
                Err(s) => {
                    s.code() == tonic::Code::PermissionDenied
                        && s.message()
                            .contains(&format!("node {remove} is not a member"))
                }
                Ok(()) => false,
            }
        },
    )
    .await;
    c.kill(remove);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_refused_for_an_untrusted_ca_a_wrong_name_an_expired_certificate_or_plain_text()
{
    let c = tls_cluster(1).await;
    let pki = c.pki();
    let grpc = c.node(1).grpc.clone();
    let status = |endpoint: tonic::transport::Endpoint| async move {
        let channel = endpoint
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        BifrostClient::new(channel)
            .status(StatusRequest {})
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}"))
    };

    // The right CA and name, no client certificate (it is optional here):
    // the handshake passes, and the call then needs a user.
    let anonymous = status(Security::tls(pki.ca_cert(), None).endpoint(&grpc).unwrap())
        .await
        .unwrap_err();
    assert!(
        anonymous.contains("Unauthenticated") && anonymous.contains("no credential"),
        "{anonymous}"
    );
    // With user admin's certificate, the call passes.
    let identity = Some((pki.user_cert("admin"), pki.user_key("admin")));
    status(
        Security::tls(pki.ca_cert(), identity)
            .endpoint(&grpc)
            .unwrap(),
    )
    .await
    .expect("TLS with the cluster CA and a user certificate");

    // A CA the client does not trust (another cluster's).
    let (other, foreign) = another_cluster_ca();
    let err = status(
        Security::tls(foreign.ca_cert(), None)
            .endpoint(&grpc)
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );

    // A host name the certificate does not name.
    let wrong_name = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(pki.ca_cert()).unwrap(),
        ))
        .domain_name("historian.example");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{grpc}"))
        .unwrap()
        .tls_config(wrong_name)
        .unwrap();
    let err = status(endpoint).await.unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("name"),
        "{err}"
    );

    // An expired client certificate from the cluster's own CA.
    let (cert, key) = expired_user_certificate(&pki, other.path());
    let before = refused_handshakes(&c, "grpc").await;
    let err = status(
        Security::tls(pki.ca_cert(), Some((cert, key)))
            .endpoint(&grpc)
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert!(!err.is_empty());
    wait_refused_handshake(&c, "grpc", before).await;
    assert!(
        c.log_of(1).contains("certificate expired"),
        "the refusal names the reason"
    );

    // Plain text to a TLS port: no answer, and the client library says
    // at once what is missing instead of retrying.
    let err = status(Security::Plain.endpoint(&grpc).unwrap())
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    let plain = bifrost_client::Client::connect_with(vec![grpc.clone()], opts()).unwrap();
    let err = plain.status().await.unwrap_err().to_string();
    assert!(
        err.contains("answered in TLS") && err.contains("--ca"),
        "{err}"
    );
    assert_eq!(
        http_get(&c.node(1).http, "/healthz").await,
        "",
        "plain HTTP gets no answer"
    );
}

/// `grpc_status.py` (Python grpcio) against `addr` with `ca` and, if
/// given, a client certificate: its JSON line, or its error.
fn grpcio_status(
    addr: &str,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/grpc_status.py");
    let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/proto");
    let mut cmd = std::process::Command::new(python());
    cmd.args([script, proto, addr]).arg(ca);
    if let Some((cert, key)) = identity {
        cmd.arg(cert).arg(key);
    }
    let out = cmd
        .output()
        .expect("run grpc_status.py (BIFROST_PYTHON with grpcio)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "grpc_status.py: {e}; stdout {stdout}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_reads_status_over_mutual_tls_and_is_refused_without_the_ca() {
    let c = tls_cluster(3).await;
    let pki = c.pki();
    let (cert, key) = (pki.user_cert("admin"), pki.user_key("admin"));
    let status = grpcio_status(&c.node(2).grpc, &pki.ca_cert(), Some((&cert, &key)));
    assert_eq!(status["node_id"], 2, "{status}");
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status}");
    for m in members {
        let id = m["id"].as_u64().unwrap();
        assert_eq!(m["addr"], c.node(id).grpc, "{status}");
        assert_eq!(m["peer_addr"], c.node(id).peer, "{status}");
    }
    let (_other, foreign) = another_cluster_ca();
    let refused = grpcio_status(&c.node(2).grpc, &foreign.ca_cert(), None);
    assert_eq!(refused["error"], "UNAVAILABLE", "{refused}");
}

/// A client certificate for user `late` signed by `pki`'s CA whose
/// validity ended yesterday, written to `dir`.
fn expired_user_certificate(
    pki: &CertDir,
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.ca_key()).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(pki.ca_cert()).unwrap(), ca_key)
            .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "urn:bifrost:user:late".try_into().unwrap(),
    )];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(10);
    params.not_after = now - time::Duration::days(1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("late.pem"), dir.join("late.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_speaks_tls_only_and_takes_a_rotated_certificate_on_sighup() {
    let c = tls_cluster(1).await;
    let dir = c.pki();
    let http = c.node(1).http.clone();

    let (shown, response) = https_get(&dir, &http, "/healthz").await.unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") && response.ends_with("ok\n"),
        "{response}"
    );
    assert_eq!(shown, certificates(&dir.node_cert(1)).unwrap()[0]);
    let (_, ready) = https_get(&dir, &http, "/readyz").await.unwrap();
    assert!(!ready.contains("INSECURE"), "{ready}");

    // A subscriber written by others, over wss:// with the cluster CA and
    // a session token (the HTTP port asks no client certificate).
    let admin = c.client();
    let grant = bifrost_client::Grant::everywhere(bifrost_client::Role::Viewer);
    admin
        .add_user("watcher", "watcher-password", vec![grant])
        .await
        .unwrap();
    admin.login("watcher", "watcher-password").await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_watch.py");
    let out = std::process::Command::new(python())
        .env("BIFROST_WS_CA", dir.ca_cert())
        .env("BIFROST_WS_TOKEN", admin.token().unwrap())
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
    let rc = unsafe { libc::kill(c.pid(1) as i32, libc::SIGHUP) };
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
        || async { c.log_of(1).contains("SIGHUP: TLS certificate reloaded") },
    )
    .await;
    assert!(c.node(1).is_running(), "SIGHUP must not stop the node");
    // The gRPC and peer ports reloaded the same files.
    let (grpc, peer) = (c.node(1).grpc.clone(), c.node(1).peer.clone());
    assert_eq!(shown_certificate(&dir, &grpc, b"h2").await, rotated);
    assert_eq!(shown_certificate(&dir, &peer, b"h2").await, rotated);
    assert!(tls_metric(&c, 1, r#"bifrost_tls_reloads{port="http"}"#).await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_takes_a_new_certificate_under_load_and_no_write_fails() {
    let mut c = tls_cluster(3).await;
    let pki = c.pki();
    let client = c.client();
    client.put_device(device("plc1"), true).await.unwrap();
    client
        .put_tag(tag("line/t", "plc1", "f64"), true)
        .await
        .unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, done) = (client.clone(), done.clone());
        tokio::spawn(async move {
            let mut n = 0i64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let r = reading(&format!("r{n}"), "line/t", 1_000_000 + n, n as f64);
                client
                    .ingest(vec![r])
                    .await
                    .map_err(|e| format!("write {n}: {e}"))?;
                n += 1;
            }
            Ok::<i64, String>(n)
        })
    };
    for id in 1..=3u64 {
        pki.rotate_node(id, None, 30).unwrap();
        let rotated = certificates(&pki.node_cert(id)).unwrap().remove(0);
        assert_eq!(unsafe { libc::kill(c.pid(id) as i32, libc::SIGHUP) }, 0);
        let peer = c.node(id).peer.clone();
        wait_until_async(
            &format!("node {id}'s peer port showing its new certificate"),
            Duration::from_secs(10),
            || async { shown_certificate(&pki, &peer, b"h2").await == rotated },
        )
        .await;
    }
    // The nodes talk to each other with the new certificates: a leader
    // change needs fresh peer connections and votes.
    let leader = c.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    c.kill(leader);
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    c.wait_leader(&rest, Duration::from_secs(30)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer
        .await
        .unwrap()
        .expect("every write during the rotation succeeds");
    assert!(written > 0);
    let got = client
        .history_all(bifrost_client::HistoryQuery {
            tag: "line/t".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        got.len() as i64,
        written,
        "every acknowledged reading is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_node_says_so_in_readyz_and_survives_sighup() {
    let c = TestCluster::start(1, &[]);
    c.wait_leader(&[1], Duration::from_secs(30)).await;
    let ready = http_get(&c.node(1).http, "/readyz").await;
    assert!(
        ready.contains("INSECURE") && ready.contains("--insecure"),
        "{ready}"
    );
    assert!(c.log_of(1).contains("INSECURE"));
    // SIGHUP (a reload elsewhere) must not end an insecure node.
    assert_eq!(unsafe { libc::kill(c.pid(1) as i32, libc::SIGHUP) }, 0);
    wait_until_async("SIGHUP logged", Duration::from_secs(10), || async {
        c.log_of(1).contains("SIGHUP: nothing to reload")
    })
    .await;
    assert!(c.node(1).is_running(), "SIGHUP stopped an insecure node");
}

/// `bifrost serve` with `args` after its id, data directory and ports:
/// it must fail; returns its standard error.
fn serve_fails(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bifrost"))
        .args(["serve", "--id", "1", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"])
        .args([
            "--http",
            "127.0.0.1:0",
            "--peers",
            "1=127.0.0.1:1/127.0.0.1:2",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "bifrost serve {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_node_needs_tls_or_an_explicit_insecure_and_a_bad_certificate_stops_it_naming_the_file() {
    let err = serve_fails(&[]);
    assert!(
        err.contains("--insecure") && err.contains("--tls-cert"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("node.key");
    std::fs::write(&key, "not a key").unwrap();
    let missing = tmp.path().join("missing.pem").display().to_string();
    let key = key.display().to_string();
    let err = serve_fails(&["--tls-cert", &missing, "--tls-key", &key]);
    assert!(err.contains("--tls-ca"), "a CA is required too: {err}");
    let err = serve_fails(&[
        "--tls-cert",
        &missing,
        "--tls-key",
        &key,
        "--tls-ca",
        &missing,
    ]);
    assert!(
        err.contains("--tls-cert/--tls-key/--tls-ca") && err.contains("missing.pem"),
        "{err}"
    );
    let err = serve_fails(&[
        "--tls-cert",
        &missing,
        "--tls-key",
        &key,
        "--tls-ca",
        &missing,
        "--insecure",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
}
