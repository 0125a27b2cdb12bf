//! A cluster of real `bifrost serve` processes on loopback, with their data
//! directories and logs (and optionally a simulator's log) in one
//! temporary directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use bifrost_proto::channel::Security;
use bifrost_proto::replica::{self, CheckOptions, Report};
use bifrost_proto::v1::bifrost_client::BifrostClient;
use bifrost_proto::v1::{StatusRequest, StatusResponse};

use crate::error::{io, Error, Result};
use crate::ports::free_port;
use crate::process::{tail, Proc};
use crate::sim::{SimOptions, Simulator};
use crate::wait::{Step, Wait};

/// Raft timing fast enough for tests on a loaded two-core machine.
pub const FAST_ELECTIONS: &[&str] = &[
    "--heartbeat-ms",
    "50",
    "--election-min-ms",
    "400",
    "--election-max-ms",
    "800",
];

/// Lines of each node's log printed when a test panics.
const TAIL_ON_PANIC: usize = 40;

/// How a cluster is started.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `bifrost` binary.
    pub bin: PathBuf,
    /// Nodes 1..=nodes form the initial cluster.
    pub nodes: u64,
    /// Arguments given to every node after its id, data dir and addresses.
    pub args: Vec<String>,
    /// Arguments given to one node only, after `args` (its labels, say).
    pub node_args: BTreeMap<u64, Vec<String>>,
    /// `RUST_LOG` of the nodes (inherited when `None`).
    pub rust_log: Option<String>,
    /// Prefix of the temporary directory's name.
    pub dir_prefix: String,
    /// Keep the directory when the cluster is dropped (it is always kept
    /// when the thread panics, or when `BIFROST_TEST_KEEP` is set).
    pub keep: bool,
    /// Have the kernel kill the processes when the thread that started them
    /// ends: for programs that start them from their main thread (the
    /// benchmarks), so that a killed parent leaves no servers behind.
    pub die_with_parent: bool,
    /// TLS on every port, certificates from a CA made for the cluster in
    /// `pki/` of its directory (see [`Cluster::security`]); else the
    /// nodes run `--insecure`.
    pub tls: bool,
    /// Node 1 is started with `--single` (a cluster of one) instead of
    /// `--peers`; nodes started later join it with `member add`.
    pub single: bool,
}

impl ClusterOptions {
    /// `nodes` nodes of `bin` with the server's default settings.
    pub fn new(bin: impl Into<PathBuf>, nodes: u64) -> ClusterOptions {
        ClusterOptions {
            bin: bin.into(),
            nodes,
            args: Vec::new(),
            node_args: BTreeMap::new(),
            rust_log: None,
            dir_prefix: "bifrost-cluster-".into(),
            keep: false,
            die_with_parent: false,
            tls: false,
            single: false,
        }
    }

    /// TLS on every port (see [`ClusterOptions::tls`]).
    pub fn tls(mut self) -> ClusterOptions {
        self.tls = true;
        self
    }

    /// Node 1 started with `--single` (see [`ClusterOptions::single`]).
    pub fn single(mut self) -> ClusterOptions {
        self.single = true;
        self
    }

    /// Adds [`FAST_ELECTIONS`] to the nodes' arguments.
    pub fn fast_elections(self) -> ClusterOptions {
        self.args(FAST_ELECTIONS)
    }

    /// Adds arguments of every node.
    pub fn args(mut self, args: &[&str]) -> ClusterOptions {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Adds arguments of node `id` only.
    pub fn node_args(mut self, id: u64, args: &[&str]) -> ClusterOptions {
        let mine = self.node_args.entry(id).or_default();
        mine.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn rust_log(mut self, filter: &str) -> ClusterOptions {
        self.rust_log = Some(filter.into());
        self
    }
}

/// One node: its addresses, data directory and log.
pub struct Node {
    pub id: u64,
    /// Public gRPC address, `127.0.0.1:PORT`.
    pub grpc: String,
    /// Peer port address (Raft, node-to-node), `127.0.0.1:PORT`.
    pub peer: String,
    /// HTTP address (`/metrics`, `/readyz`, WebSocket), `127.0.0.1:PORT`.
    pub http: String,
    pub data_dir: PathBuf,
    proc: Proc,
}

impl Node {
    /// Its addresses as `--peers` and `member add` take them: `API/PEER`.
    pub fn member(&self) -> String {
        format!("{}/{}", self.grpc, self.peer)
    }

    pub fn log(&self) -> &Path {
        &self.proc.log
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_running()
    }

    /// Process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }
}

/// The processes of one cluster. Dropping it kills them all.
pub struct Cluster {
    opts: ClusterOptions,
    /// `1=API/PEER,2=API/PEER,...` of the initial nodes.
    peers: String,
    nodes: BTreeMap<u64, Node>,
    /// Nodes that run another binary than the cluster's ([`Cluster::set_binary`]).
    binaries: BTreeMap<u64, PathBuf>,
    sim: Option<Simulator>,
    /// `None` once kept.
    dir: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts the nodes of `opts`; they elect a leader by themselves (see
    /// [`Cluster::wait_leader`]).
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        let mut c = Cluster::create(opts)?;
        c.start_nodes()?;
        Ok(c)
    }

    /// The directory and the nodes' addresses, no process yet: for a
    /// caller that starts a simulator first.
    pub fn create(opts: ClusterOptions) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix(&opts.dir_prefix)
            .tempdir()
            .map_err(io("creating a temp dir for the cluster"))?;
        let mut c = Cluster {
            peers: String::new(),
            nodes: BTreeMap::new(),
            binaries: BTreeMap::new(),
            sim: None,
            dir: Some(dir),
            opts,
        };
        if c.opts.tls {
            c.make_ca()?;
        }
        for id in 1..=c.opts.nodes {
            c.add_node(id)?;
        }
        c.peers = c
            .nodes
            .values()
            .map(|n| format!("{}={}", n.id, n.member()))
            .collect::<Vec<_>>()
            .join(",");
        Ok(c)
    }

    /// The cluster's certificates: `pki/` of its directory.
    pub fn pki(&self) -> bifrost_tls::CertDir {
        bifrost_tls::CertDir::new(self.dir().join("pki"))
    }

    /// A CA, node 1's certificate and the `admin` user's.
    fn make_ca(&self) -> Result<()> {
        let node1 = bifrost_tls::NodeSpec {
            id: 1,
            hosts: loopback_hosts(),
        };
        self.pki()
            .init(&[node1], "admin", 30)
            .map_err(|e| Error::Setup(format!("cluster certificates: {e}")))?;
        Ok(())
    }

    /// How a client reaches the nodes: plain text, or TLS checking them
    /// against the cluster's CA as user `admin`.
    pub fn security(&self) -> Security {
        if !self.opts.tls {
            return Security::Plain;
        }
        let pki = self.pki();
        Security::tls(
            pki.ca_cert(),
            Some((pki.user_cert("admin"), pki.user_key("admin"))),
        )
    }

    fn add_node(&mut self, id: u64) -> Result<&Node> {
        if self.opts.tls && !self.pki().node_cert(id).exists() {
            self.pki()
                .rotate_node(id, Some(loopback_hosts()), 30)
                .map_err(|e| Error::Setup(format!("node {id} certificate: {e}")))?;
        }
        let dir = self.dir();
        let node = Node {
            id,
            grpc: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            http: format!("127.0.0.1:{}", free_port()),
            data_dir: dir.join(format!("node{id}")),
            proc: Proc::new(format!("node {id}"), dir.join(format!("node{id}.log"))),
        };
        Ok(self.nodes.entry(id).or_insert(node))
    }

    /// The initial cluster as `--peers` takes it: `1=API/PEER,2=API/PEER,...`.
    pub fn peers(&self) -> &str {
        &self.peers
    }

    /// Starts every node that is not running.
    pub fn start_nodes(&mut self) -> Result<()> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            if !self.nodes[&id].is_running() {
                self.restart(id)?;
            }
        }
        Ok(())
    }

    /// Starts a simulator whose log is `sim.log` in the cluster's directory.
    /// Start it before the nodes if it needs many ports: the nodes' ports
    /// are then taken.
    pub async fn start_sim(&mut self, opts: &SimOptions) -> Result<&Simulator> {
        let log = self.dir().join("sim.log");
        let sim = Simulator::start(&self.opts.bin, opts, log, self.opts.die_with_parent).await?;
        Ok(self.sim.insert(sim))
    }

    pub fn sim(&self) -> Option<&Simulator> {
        self.sim.as_ref()
    }

    /// Starts node `id`, which is not in the initial peer list: it waits to
    /// be added. Returns its addresses as `member add` takes them
    /// (`API/PEER`).
    pub fn start_joining(&mut self, id: u64) -> Result<String> {
        if self.nodes.contains_key(&id) {
            return Err(Error::Setup(format!("node {id} exists already")));
        }
        let member = self.add_node(id)?.member();
        self.restart(id)?;
        Ok(member)
    }

    /// (Re)starts node `id` from its data directory.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.restart_with_env(id, &[])
    }

    /// (Re)starts node `id` from its data directory with `env` added to
    /// its environment, for this run only (a crash point to arm, say).
    pub fn restart_with_env(&mut self, id: u64, env: &[(&str, &str)]) -> Result<()> {
        let bin = self.binaries.get(&id).unwrap_or(&self.opts.bin).clone();
        let peers = self.peers.clone();
        let initial = match self.opts.single && id == 1 {
            true => vec!["--single".to_string()],
            false => vec!["--peers".to_string(), peers],
        };
        let (mut args, rust_log) = (self.opts.args.clone(), self.opts.rust_log.clone());
        args.extend(self.opts.node_args.get(&id).into_iter().flatten().cloned());
        let die_with_parent = self.opts.die_with_parent;
        let security = self.security_args(id);
        let node = self.node_mut(id)?;
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen", &node.grpc, "--http", &node.http])
            .args(["--peer-listen", &node.peer])
            .args(&initial)
            .args(&security)
            .args(&args);
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        cmd.envs(env.iter().copied());
        node.proc.spawn(cmd, die_with_parent)?;
        Ok(())
    }

    /// `--insecure`, or node `id`'s TLS files.
    fn security_args(&self, id: u64) -> Vec<String> {
        if !self.opts.tls {
            return vec!["--insecure".into()];
        }
        let pki = self.pki();
        let path = |p: PathBuf| p.display().to_string();
        vec![
            "--tls-cert".into(),
            path(pki.node_cert(id)),
            "--tls-key".into(),
            path(pki.node_key(id)),
            "--tls-ca".into(),
            path(pki.ca_cert()),
            "--data-key-file".into(),
            path(pki.data_key()),
        ]
    }

    /// `SIGTERM` of node `id`, as systemd stops it, and waits until it has
    /// exited (a clean stop: in flight work finished, stores closed).
    pub async fn stop(&mut self, id: u64, timeout: Duration) -> Result<ExitStatus> {
        self.node(id).proc.signal(libc::SIGTERM)?;
        self.wait_exit(id, timeout).await
    }

    /// Node `id` runs `bin` from its next (re)start on, instead of the
    /// cluster's binary: an upgrade, one node at a time.
    pub fn set_binary(&mut self, id: u64, bin: impl Into<PathBuf>) {
        self.binaries.insert(id, bin.into());
    }

    /// `kill -9` of node `id` (nothing if it is not running).
    pub fn kill(&mut self, id: u64) -> Result<()> {
        self.node_mut(id)?.proc.kill();
        Ok(())
    }

    /// Waits until node `id` exits by itself (a crash, say) and returns
    /// how it ended; it is then stopped, ready for [`Cluster::restart`].
    /// An error if it was not running, or still runs after `timeout`.
    pub async fn wait_exit(&self, id: u64, timeout: Duration) -> Result<ExitStatus> {
        let proc = &self.node(id).proc;
        Wait::new(format!("node {id} to exit"), timeout)
            .until_async(|| async {
                match proc.reap() {
                    Ok(Some(status)) => Step::Done(status),
                    Ok(None) => Step::Pending(Some("still running".into())),
                    Err(e) => Step::Abort(e),
                }
            })
            .await
    }

    /// `SIGSTOP` of node `id`: it keeps its sockets but answers nothing.
    pub fn pause(&self, id: u64) -> Result<()> {
        self.node(id).proc.signal(libc::SIGSTOP)
    }

    /// `SIGCONT` of a paused node.
    pub fn resume(&self, id: u64) -> Result<()> {
        self.node(id).proc.signal(libc::SIGCONT)
    }

    /// Process id of running node `id`.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).proc.pid()
    }

    /// Node `id`; panics if there is none (a test's mistake).
    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut Node> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| Error::Setup(format!("no node {id} in this cluster")))
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// gRPC addresses of all nodes, in id order.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes().map(|n| n.grpc.clone()).collect()
    }

    /// gRPC addresses of all nodes but `id`.
    pub fn endpoints_without(&self, id: u64) -> Vec<String> {
        self.nodes()
            .filter(|n| n.id != id)
            .map(|n| n.grpc.clone())
            .collect()
    }

    /// The temporary directory holding data and logs.
    pub fn dir(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }

    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.node(id).log()).unwrap_or_default()
    }

    /// The last `lines` lines of every node's log, headed by the node.
    pub fn log_tails(&self, lines: usize) -> String {
        self.nodes()
            .map(|n| {
                format!(
                    "---- node {} log (last {lines} lines) ----\n{}\n",
                    n.id,
                    tail(n.log(), lines)
                )
            })
            .collect()
    }

    /// An error naming the first process (node or simulator) that has
    /// exited without being killed here, with its log's tail.
    pub fn check_alive(&self) -> Result<()> {
        for n in self.nodes() {
            n.proc.check_alive()?;
        }
        self.sim.as_ref().map_or(Ok(()), Simulator::check_alive)
    }

    /// Node `id`'s own `Status` (not the leader's), or `None` if it does
    /// not answer within five seconds.
    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        let endpoint = self
            .security()
            .endpoint(&self.node(id).grpc)
            .ok()?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5));
        let channel = endpoint.connect().await.ok()?;
        // Status carries every device assignment: large plants need room.
        let mut stub = BifrostClient::new(channel).max_decoding_message_size(64 << 20);
        let status = stub.status(StatusRequest {}).await.ok()?;
        Some(status.into_inner())
    }

    /// The replica check over gRPC, in ranges of `range_size` revisions:
    /// every member's history compared up to the revision all have
    /// applied. The report when they agree; otherwise
    /// [`Error::ReplicasDiffer`], whose message names the first differing
    /// range and each node's count and digest. Call it once the cluster is
    /// healthy again: a member that does not answer is an error.
    pub async fn check_replicas(&self, range_size: u64) -> Result<Report> {
        let opts = CheckOptions {
            range_size,
            security: self.security(),
            ..Default::default()
        };
        let report = replica::check(&self.endpoints(), &opts, |_| {})
            .await
            .map_err(|e| Error::ReplicaCheck(e.to_string()))?;
        if report.agrees() {
            Ok(report)
        } else {
            Err(Error::ReplicasDiffer(Box::new(report)))
        }
    }

    /// Waits until the nodes in `among` agree on a leader, one of them, and
    /// returns it. Gives up at once if a node died.
    pub async fn wait_leader(&self, among: &[u64], timeout: Duration) -> Result<u64> {
        Wait::new(format!("an agreed leader among nodes {among:?}"), timeout)
            .until_async(|| async {
                if let Err(e) = self.check_alive() {
                    return Step::Abort(e);
                }
                let mut seen = vec![];
                for id in among {
                    if let Some(s) = self.status(*id).await {
                        seen.push(s.leader_id);
                    }
                }
                // The leader must be one of `among`: right after a kill, the
                // survivors may still name the dead leader.
                match seen.first() {
                    Some(l)
                        if seen.len() == among.len()
                            && among.contains(l)
                            && seen.iter().all(|x| x == l) =>
                    {
                        Step::Done(*l)
                    }
                    _ => Step::Pending(Some(format!("leaders named: {seen:?}"))),
                }
            })
            .await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> Result<()> {
        Wait::new(format!("node {id} to apply index {index}"), timeout)
            .until_async(|| async {
                match self.status(id).await {
                    Some(s) if s.applied_index >= index => Step::Done(()),
                    Some(s) => Step::Pending(Some(format!("applied {}", s.applied_index))),
                    None => Step::Pending(Some("no answer".into())),
                }
            })
            .await
    }

    /// Waits until node `id` has applied everything node `from` (the
    /// leader) has committed now.
    pub async fn catch_up(&self, id: u64, from: u64, timeout: Duration) -> Result<()> {
        let commit = self
            .status(from)
            .await
            .ok_or_else(|| Error::Setup(format!("node {from} does not answer Status")))?
            .commit_index;
        self.wait_applied(id, commit, timeout).await
    }

    /// Waits until every node in `among` names the same leader, one of
    /// them, and has applied what that leader had committed; returns it.
    pub async fn wait_healthy(&self, among: &[u64], timeout: Duration) -> Result<u64> {
        Wait::new(format!("nodes {among:?} to be healthy"), timeout)
            .until_async(|| async {
                if let Err(e) = self.check_alive() {
                    return Step::Abort(e);
                }
                let mut seen = vec![];
                for id in among {
                    if let Some(s) = self.status(*id).await {
                        seen.push((*id, s.leader_id, s.commit_index, s.applied_index));
                    }
                }
                let leader = seen.first().map(|s| s.1).unwrap_or(0);
                let agreed = seen.len() == among.len()
                    && among.contains(&leader)
                    && seen.iter().all(|s| s.1 == leader);
                let commit = seen.iter().find(|s| s.0 == leader).map(|s| s.2);
                match commit {
                    Some(c) if agreed && seen.iter().all(|s| s.3 >= c) => Step::Done(leader),
                    _ => Step::Pending(Some(format!("(node, leader, commit, applied): {seen:?}"))),
                }
            })
            .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            n.proc.kill();
        }
        self.sim = None;
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.log_tails(TAIL_ON_PANIC));
        }
        if panicking || self.opts.keep || std::env::var_os("BIFROST_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster data and logs kept in {}", dir.keep().display());
            }
        }
    }
}

/// Where test nodes are reached: their certificates name these.
fn loopback_hosts() -> bifrost_tls::HostList {
    bifrost_tls::HostList(vec!["localhost".into(), "127.0.0.1".into()])
}

/// The `bifrost` server binary: `given`, else `$BIFROST_BIN`, else
/// `bifrost` beside the running executable or one directory up (a test
/// binary lives in `target/debug/deps`).
pub fn locate_bifrost(given: Option<&Path>) -> Result<PathBuf> {
    let path = match (given, std::env::var_os("BIFROST_BIN")) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => {
            let exe = std::env::current_exe().map_err(io("locating the running executable"))?;
            let beside = exe.parent().unwrap_or(Path::new(".")).join("bifrost");
            let up = exe
                .parent()
                .and_then(Path::parent)
                .map(|d| d.join("bifrost"));
            match up {
                Some(up) if !beside.is_file() && up.is_file() => up,
                _ => beside,
            }
        }
    };
    if !path.is_file() {
        return Err(Error::Setup(format!(
            "server binary not found at {} (build it with `cargo build -p bifrost-server`, \
             or give its path: --bifrost PATH or BIFROST_BIN)",
            path.display()
        )));
    }
    Ok(path)
}
