//! A real cluster of `bifrost serve` processes on loopback, for end-to-end
//! tests. Every wait is for a condition with a deadline, never a fixed sleep.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bifrost_client::proto::{self, bifrost_client::BifrostClient, Device, Reading, Tag};
use bifrost_client::{Client, ClientOptions, Consistency, HistoryQuery};

pub struct NodeProc {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Peers given on the command line.
    pub peers: String,
    child: Option<Child>,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, NodeProc>,
    pub extra_args: Vec<String>,
    pub peers: String,
}

/// A free port below Linux's ephemeral range (32768-60999). A port from
/// that range (what binding port 0 gives) can be taken, while its node is
/// down, by some client's outgoing connection, and a client dialling a
/// dead node on loopback can even connect to itself on it; then the node
/// cannot come back on its port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() * 97
        + std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let port = 20_000 + (NEXT.fetch_add(1, Ordering::Relaxed) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Timing fast enough for tests on a loaded two-core machine.
pub const FAST: &[&str] = &[
    "--heartbeat-ms",
    "50",
    "--election-min-ms",
    "400",
    "--election-max-ms",
    "800",
];

impl TestCluster {
    /// Starts `n` nodes that form one cluster.
    pub fn start(n: u64, extra: &[&str]) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<(u64, String, String)> = (1..=n)
            .map(|id| {
                (
                    id,
                    format!("127.0.0.1:{}", free_port()),
                    format!("127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        let peers = addrs
            .iter()
            .map(|(id, g, _)| format!("{id}={g}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut extra_args: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
        extra_args.extend(extra.iter().map(|s| s.to_string()));
        let mut cluster = TestCluster {
            dir,
            nodes: BTreeMap::new(),
            extra_args,
            peers: peers.clone(),
        };
        for (id, grpc, http) in addrs {
            cluster.add_proc(id, grpc, http, peers.clone());
            cluster.restart(id);
        }
        cluster
    }

    fn add_proc(&mut self, id: u64, grpc: String, http: String, peers: String) {
        let data_dir = self.dir.path().join(format!("node{id}"));
        let log = self.dir.path().join(format!("node{id}.log"));
        self.nodes.insert(
            id,
            NodeProc {
                id,
                grpc,
                http,
                data_dir,
                log,
                peers,
                child: None,
            },
        );
    }

    /// Starts a node that is not in the initial peer list; it waits to be added.
    pub fn start_joining(&mut self, id: u64) -> String {
        let grpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        self.add_proc(id, grpc.clone(), http, self.peers.clone());
        self.restart(id);
        grpc
    }

    /// (Re)starts node `id` from its data directory.
    pub fn restart(&mut self, id: u64) {
        let extra = self.extra_args.clone();
        let node = self.nodes.get_mut(&id).expect("known node");
        assert!(node.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bifrost"))
            .args(["serve", "--id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args([
                "--listen",
                &node.grpc,
                "--http",
                &node.http,
                "--peers",
                &node.peers,
            ])
            .args(&extra)
            .env("RUST_LOG", "info,openraft=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn bifrost");
        node.child = Some(child);
    }

    /// `kill -9` of node `id`.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(mut c) = node.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Process id of running node `id`.
    pub fn pid(&self, id: u64) -> u32 {
        self.nodes[&id]
            .child
            .as_ref()
            .expect("node is running")
            .id()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.grpc.clone()).collect()
    }

    pub fn client(&self) -> Client {
        Client::connect_with(self.endpoints(), opts()).unwrap()
    }

    /// A client of every node but `id` (which is down or stopped).
    pub fn client_without(&self, id: u64) -> Client {
        let eps = self
            .nodes
            .values()
            .filter(|n| n.id != id)
            .map(|n| n.grpc.clone())
            .collect();
        Client::connect_with(eps, opts()).unwrap()
    }

    /// A client that talks to node `id` only.
    pub fn node_client(&self, id: u64) -> Client {
        Client::connect_with(vec![self.nodes[&id].grpc.clone()], opts()).unwrap()
    }

    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default()
    }

    /// Waits until the nodes in `among` agree on a leader, and returns it.
    pub async fn wait_leader(&self, among: &[u64], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = vec![];
            for id in among {
                if let Ok(s) = self.node_client(*id).status().await {
                    seen.push(s.leader_id);
                }
            }
            // The leader must be one of `among`: right after a kill, the
            // survivors may still name the dead leader.
            if seen.len() == among.len()
                && among.contains(&seen[0])
                && seen.iter().all(|l| *l == seen[0])
            {
                return seen[0];
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?} within {timeout:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `id` has applied everything node `from` (the
    /// leader) has committed now.
    pub async fn catch_up(&self, id: u64, from: u64, timeout: Duration) {
        let commit = self.node_client(from).status().await.unwrap().commit_index;
        self.wait_applied(id, commit, timeout).await;
    }

    /// A raw gRPC client of node `id`, for calls the client library does not wrap.
    pub async fn raw_client(&self, id: u64) -> BifrostClient<tonic::transport::Channel> {
        BifrostClient::connect(format!("http://{}", self.nodes[&id].grpc))
            .await
            .unwrap()
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = self.node_client(id).status().await {
                if s.applied_index >= index {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply index {index} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() || std::env::var_os("BIFROST_TEST_KEEP").is_some() {
            eprintln!("cluster directory: {}", self.dir.path().display());
            for n in self.nodes.values() {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- node {} log (last 40 lines) ----", n.id);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
            // Keep the directory for a post-mortem.
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            let _ = dir.keep();
        }
    }
}

/// A plain HTTP GET; the body, or "" on any failure.
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
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
