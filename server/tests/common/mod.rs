//! What the end-to-end tests share: a [`TestCluster`] (the test kit's
//! cluster of this build's `bifrost`, with the client library's clients)
//! and small fixtures (devices, tags, readings). Processes are started and
//! waited for by `bifrost-testkit` only; every wait is for a condition with
//! a deadline, never a fixed sleep.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use bifrost_testkit::{
    free_port, wait_until, wait_until_async, Cluster, ClusterOptions, ReplicaReport, SimOptions,
};

use bifrost_client::proto::{self, bifrost_client::BifrostClient, Device, Reading, Tag};
use bifrost_client::{Client, ClientOptions, Consistency, HistoryQuery};

/// Test nodes log at info, Raft included.
const RUST_LOG: &str = "info,openraft=info";

/// Revisions per range of the tests' replica checks: small, so that a
/// difference is named closely in a test's few thousand readings.
pub const REPLICA_RANGE: u64 = 100;

/// A [`Cluster`] of this build's `bifrost` with fast elections, and the
/// clients tests talk to it with. Its methods panic with the kit's message
/// where the kit returns an error: a test has nothing better to do.
pub struct TestCluster(pub Cluster);

impl Deref for TestCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.0
    }
}

/// `n` nodes of this build's `bifrost` with fast elections and `extra`
/// arguments.
pub fn options(n: u64, extra: &[&str]) -> ClusterOptions {
    ClusterOptions::new(env!("CARGO_BIN_EXE_bifrost"), n)
        .fast_elections()
        .args(extra)
        .rust_log(RUST_LOG)
}

impl TestCluster {
    /// Starts `n` nodes that form one cluster.
    pub fn start(n: u64, extra: &[&str]) -> TestCluster {
        TestCluster(Cluster::start(options(n, extra)).unwrap())
    }

    /// A simulator (log in the cluster's directory), then `n` nodes.
    pub async fn start_with_sim(n: u64, extra: &[&str], sim: SimOptions) -> TestCluster {
        let mut c = Cluster::create(options(n, extra)).unwrap();
        c.start_sim(&sim).await.unwrap();
        c.start_nodes().unwrap();
        TestCluster(c)
    }

    /// Starts a node that is not in the initial peer list; it waits to be added.
    pub fn start_joining(&mut self, id: u64) -> String {
        self.0.start_joining(id).unwrap()
    }

    /// (Re)starts node `id` from its data directory.
    pub fn restart(&mut self, id: u64) {
        self.0.restart(id).unwrap()
    }

    /// `kill -9` of node `id`.
    pub fn kill(&mut self, id: u64) {
        self.0.kill(id).unwrap()
    }

    /// Process id of running node `id`.
    pub fn pid(&self, id: u64) -> u32 {
        self.0.pid(id).expect("node is running")
    }

    pub fn client(&self) -> Client {
        Client::connect_with(self.endpoints(), self.opts()).unwrap()
    }

    /// A client of every node but `id` (which is down or stopped).
    pub fn client_without(&self, id: u64) -> Client {
        Client::connect_with(self.endpoints_without(id), self.opts()).unwrap()
    }

    /// A client that talks to node `id` only.
    pub fn node_client(&self, id: u64) -> Client {
        Client::connect_with(vec![self.node(id).grpc.clone()], self.opts()).unwrap()
    }

    /// The tests' client options, plain or TLS as the cluster runs.
    pub fn opts(&self) -> ClientOptions {
        ClientOptions {
            security: self.security(),
            ..opts()
        }
    }

    /// A raw gRPC client of node `id`, for calls the client library does not wrap.
    pub async fn raw_client(&self, id: u64) -> BifrostClient<tonic::transport::Channel> {
        let channel = self
            .security()
            .endpoint(&self.node(id).grpc)
            .unwrap()
            .connect()
            .await
            .unwrap();
        BifrostClient::new(channel)
    }

    /// Waits until the nodes in `among` agree on a leader, and returns it.
    pub async fn wait_leader(&self, among: &[u64], timeout: Duration) -> u64 {
        self.0.wait_leader(among, timeout).await.unwrap()
    }

    /// Waits until node `id` has applied everything node `from` (the
    /// leader) has committed now.
    pub async fn catch_up(&self, id: u64, from: u64, timeout: Duration) {
        self.0.catch_up(id, from, timeout).await.unwrap()
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) {
        self.0.wait_applied(id, index, timeout).await.unwrap()
    }
}

impl TestCluster {
    /// The end of a fault test: once every running node is healthy again
    /// (one leader, everything committed applied), every member's history
    /// is compared by revision range. Panics naming the first differing
    /// range with each node's count and digest, or if nothing was compared.
    pub async fn assert_replicas_agree(&self) -> ReplicaReport {
        let running: Vec<u64> = self
            .nodes()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect();
        self.0
            .wait_healthy(&running, Duration::from_secs(60))
            .await
            .unwrap();
        let report = self.0.check_replicas(REPLICA_RANGE).await.unwrap();
        assert!(
            report.comparison.readings > 0,
            "the replica check compared nothing:\n{}",
            report.text()
        );
        report
    }
}

/// The body of `GET path` from a node's HTTP address, or "" on any failure.
pub async fn http_get(addr: &str, path: &str) -> String {
    bifrost_testkit::http_get(addr, path, Duration::from_secs(5))
        .await
        .unwrap_or_default()
}

/// `GET path` over TLS, checking the server against `dir`'s CA as
/// 127.0.0.1; returns the certificate the server showed and the response.
pub async fn https_get(
    dir: &bifrost_tls::CertDir,
    addr: &str,
    path: &str,
) -> std::io::Result<(rustls::pki_types::CertificateDer<'static>, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = bifrost_tls::config::client_config(&dir.ca_cert(), None, &[b"http/1.1"]).unwrap();
    let mut tls = bifrost_tls::connector::connect(addr, config).await?;
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let shown = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let mut response = String::new();
    tls.read_to_string(&mut response).await?;
    Ok((shown, response))
}

/// A metric's value on the node at `http`, if it is exported.
pub async fn metric(http: &str, name: &str) -> Option<u64> {
    metric_in(&http_get(http, "/metrics").await, name)
}

/// A metric's value in a `/metrics` page already fetched, if it is there:
/// several figures read from one page are of one moment.
pub fn metric_in(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

pub fn opts() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(30),
        ..Default::default()
    }
}

pub fn device(name: &str) -> Device {
    Device {
        name: name.into(),
        protocol: "modbus-tcp".into(),
        endpoint: "127.0.0.1:1".into(),
        unit_id: 1,
        poll_interval_ms: 1000,
        timeout_ms: 1000,
        enabled: false,
        ..Default::default()
    }
}

pub fn tag(name: &str, device: &str, ty: &str) -> Tag {
    Tag {
        name: name.into(),
        device: device.into(),
        address: "hr:0".into(),
        data_type: ty.into(),
        ..Default::default()
    }
}

pub fn reading(id: &str, tag: &str, ts_us: i64, v: f64) -> Reading {
    Reading {
        id: id.into(),
        tag: tag.into(),
        ts_us,
        value: Some(proto::Value {
            kind: Some(proto::value::Kind::FloatValue(v)),
        }),
        quality: Some(proto::Quality {
            level: proto::QualityLevel::QualityGood as i32,
            reason: String::new(),
        }),
        ..Default::default()
    }
}

/// Readings per call of a [`Writer`].
const WRITER_BATCH: usize = 20;

/// Ingests batches until stopped, keeping the id of every reading
/// acknowledged. Calls give up quickly: with no quorum they fail, and the
/// writer goes on trying.
pub struct Writer {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub fn start(cluster: &TestCluster, tags: Vec<String>) -> Writer {
        let opts = ClientOptions {
            deadline: Duration::from_secs(3),
            ..cluster.opts()
        };
        let client = Client::connect_with(cluster.endpoints(), opts).unwrap();
        let (acked, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let task = {
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<String> = (n..n + WRITER_BATCH).map(|i| format!("w{i}")).collect();
                    let batch = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| reading(id, &tags[i % tags.len()], (n + i) as i64, 1.0))
                        .collect();
                    if client.ingest(batch).await.is_ok() {
                        acked.lock().unwrap().extend(ids);
                    }
                    n += WRITER_BATCH;
                }
            })
        };
        Writer { acked, stop, task }
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub async fn wait_acked(&self, n: usize) {
        let acked = self.acked.clone();
        wait_until_async("acknowledged writes", Duration::from_secs(60), move || {
            let acked = acked.clone();
            async move { acked.lock().unwrap().len() >= n }
        })
        .await;
    }

    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Asserts that the node behind `client` holds every one of `acked` (ids
/// of readings of `tags`) from its own state, and no reading twice: no id
/// and no revision twice.
pub async fn assert_holds_once(client: &Client, tags: &[String], acked: &[String], node: u64) {
    let readings = all_readings(client, tags, Consistency::Local).await;
    let ids: std::collections::HashSet<&str> = readings.iter().map(|r| r.id.as_str()).collect();
    let revisions: std::collections::HashSet<u64> = readings.iter().map(|r| r.revision).collect();
    assert_eq!(
        ids.len(),
        readings.len(),
        "node {node} holds a reading id twice"
    );
    assert_eq!(
        revisions.len(),
        readings.len(),
        "node {node} holds a revision twice"
    );
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "node {node} lacks {} acknowledged readings: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

/// `bifrostctl` from the same target directory as this test.
pub fn bifrostctl() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let p = dir.join("bifrostctl");
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// Every reading of `tags` on the node behind `client`.
pub async fn all_readings(
    client: &Client,
    tags: &[String],
    consistency: Consistency,
) -> Vec<Reading> {
    let mut out = vec![];
    for t in tags {
        let q = HistoryQuery {
            tag: t.clone(),
            consistency,
            ..Default::default()
        };
        out.extend(client.history_all(q).await.unwrap());
    }
    out
}

/// Creates one device and `n` f64 tags `t0..`, returns the tag names.
pub async fn setup_tags(client: &Client, n: usize) -> Vec<String> {
    client.put_device(device("plc1"), true).await.unwrap();
    let mut names = vec![];
    for i in 0..n {
        let name = format!("line1/t{i}");
        client
            .put_tag(tag(&name, "plc1", "f64"), true)
            .await
            .unwrap();
        names.push(name);
    }
    names
}

/// An OPC UA server written by others (asyncua, `drivers/tests/peers/
/// opcua_server.py`) on `port`, with `extra` arguments (`--users
/// USER:PASSWORD`); killed when dropped.
pub struct OpcUaPeer(pub std::process::Child);

impl Drop for OpcUaPeer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts an [`OpcUaPeer`] and waits until it is ready.
pub fn start_opcua_peer(port: u16, extra: &[&str]) -> OpcUaPeer {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let py = bifrost_testkit::python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../drivers/tests/peers/opcua_server.py"
    );
    let mut child = Command::new(&py)
        .args([script, "--port", &port.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {py}: {e}; run scripts/test.sh, which installs asyncua")
        });
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.trim() == "READY" => break,
            Some(Ok(_)) => continue,
            _ => panic!(
                "the asyncua peer exited before READY: is asyncua installed? run scripts/test.sh"
            ),
        }
    }
    OpcUaPeer(child)
}

/// The files under `dir` (data directories, logs) that contain any of
/// `needles`: for checks that a secret was stored nowhere.
pub fn files_containing(dir: &std::path::Path, needles: &[&[u8]]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if needles
                    .iter()
                    .any(|n| bytes.windows(n.len()).any(|w| w == *n))
                {
                    found.push(path);
                }
            }
        }
    }
    found
}
