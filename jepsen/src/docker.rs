//! The cluster under test as Docker containers: bring the compose project
//! (`docker-compose.yml` at the repository root) up and down, find each
//! node's container and address, and do to a node what a plant floor does to
//! a machine: cut its power (`docker kill -s KILL`), switch it on again
//! (`docker start`), freeze it (`docker pause`, the cgroup freezer; or
//! `SIGSTOP`/`SIGCONT`, which the process could in principle notice), and
//! read what it logged.
//!
//! Why shell out to the `docker` CLI instead of a Docker SDK crate: the
//! harness needs a dozen verbs, the CLI is what an engineer types to
//! reproduce a failure by hand (every command we run is printable), and it
//! keeps this crate free of an async HTTP stack. The cost is a process per
//! call (~20-50 ms), which is nothing next to the seconds a fault lasts.
//!
//! Compose comes in two spellings: the v2 plugin (`docker compose`) and the
//! standalone v1 tool (`docker-compose`); [`ComposeTool::detect`] takes
//! whichever answers (`BIFROST_COMPOSE` overrides). Every project gets its
//! own name (`-p`), so runs do not share containers or volumes, and its own
//! /24 (`BIFROST_NET`), because Docker refuses two networks with the same
//! subnet; [`Compose::up_any_net`] tries candidates until one is free.
//!
//! Addresses are fixed by the compose file: node `i` is `NET.(10+i)` with
//! gRPC on 7001, the peer port on 7101 and HTTP on 8001, the simulator
//! `NET.20:5020`. [`Compose::up`] checks Docker's answer against that layout,
//! so the two cannot drift apart silently. The host reaches every container
//! directly on the bridge; no port is published.
//!
//! **TLS.** The nodes run with TLS on every port, as in production. Each
//! project has a CA of its own, made (with `bifrost-tls`, as `bifrostctl
//! certs init` makes one) in a temporary directory the [`Compose`] value
//! owns, afresh before each `up` attempt, because a node's certificate must
//! name the address of the network that attempt uses (`nX` and `NET.1X`).
//! The directory goes to the compose file as `BIFROST_PKI` and is mounted
//! read-only at [`PKI_MOUNT`] in every node; the CA's key is moved out of it
//! first, since no node needs it. Clients connect as user `admin`
//! ([`Compose::security`], [`Compose::target`]); the HTTP port is HTTPS
//! ([`http_get`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_client::{ClientTls, Security};
use bifrost_tls::{CertDir, HostList, NodeSpec};

use crate::target::Target;

/// gRPC port of every node inside its container.
pub const GRPC_PORT: u16 = 7001;
/// Peer port (Raft, node-to-node calls) of every node; clients never use it.
pub const PEER_PORT: u16 = 7101;
/// HTTP port (`/healthz`, `/readyz`, `/metrics`) of every node, over TLS.
pub const HTTP_PORT: u16 = 8001;
/// Where the compose file mounts the certificate directory in each node.
pub const PKI_MOUNT: &str = "/pki";
/// The user whose certificate the harness's clients present.
pub const ADMIN: &str = "admin";
/// Modbus TCP port of the simulator.
pub const SIM_PORT: u16 = 5020;
/// Last octet of the simulator's address.
pub const SIM_HOST: u8 = 20;
/// The compose file's default network, `10.213.0.0/24`: unusual enough not
/// to collide with a LAN or a VPN.
pub const DEFAULT_NET: [u8; 3] = [10, 213, 0];
/// The compose file's default image, built by `scripts/image.sh`.
pub const DEFAULT_IMAGE: &str = "bifrost:dev";

/// The result type of this module and of [`crate::nemesis`].
pub type Result<T> = std::result::Result<T, Error>;

/// A Docker, Compose or firewall command that could not be run or failed,
/// or a wait that ran out of time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program is missing or could not be started.
    #[error("docker: cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    /// The command ran and exited non-zero; `stderr` is what it said.
    #[error("docker: `{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    /// A condition did not hold within the deadline.
    #[error("docker: {what} not within {after:?}")]
    Timeout { what: String, after: Duration },
    /// Anything else: an unexpected answer, a missing prerequisite.
    #[error("docker: {0}")]
    Other(String),
}

impl Error {
    /// True when Docker refused a network because its subnet is taken.
    pub fn is_subnet_taken(&self) -> bool {
        match self {
            Error::Failed { stderr, .. } => {
                // "Pool overlaps with other one on this address space"
                stderr.to_ascii_lowercase().contains("overlaps")
            }
            _ => false,
        }
    }
}

/// The command line as one would type it (for messages and logs).
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
            s.push_str(&format!(" {a:?}"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` to completion with no stdin; its output whatever the status.
pub(crate) fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: describe(cmd),
            source,
        })
}

/// Runs `cmd`; its stdout, trimmed, when it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(Error::Failed {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker() -> Command {
    Command::new("docker")
}

/// `Ok` when the Docker daemon answers `docker info`; else why not.
pub fn available() -> std::result::Result<(), String> {
    match output(docker().args(["info", "--format", "{{.ServerVersion}}"])) {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`docker info` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The effective user id is 0 (from /proc, without a libc binding).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// What the Docker fault tests need and this machine lacks, in one
/// sentence: a Docker daemon that answers, and root (partitions are
/// iptables rules). The tests fail with it: they must not pass by skipping.
/// `scripts/test.sh` starts dockerd when it is installed; with
/// `BIFROST_SKIP_DOCKER=1` it leaves these tests out on purpose and says so.
pub fn fault_test_prerequisites() -> std::result::Result<(), String> {
    let mut missing = Vec::new();
    if let Err(why) = available() {
        missing.push(format!("a running Docker daemon ({why})"));
    }
    if !is_root() {
        missing.push("root (partitions are iptables rules)".to_string());
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "this test needs {}; run it through scripts/test.sh (which starts dockerd), \
         or set BIFROST_SKIP_DOCKER=1 for scripts/test.sh to leave the Docker tests out on purpose",
        missing.join(" and ")
    ))
}

/// True when the image exists locally (nothing can be pulled here).
pub fn image_exists(image: &str) -> Result<bool> {
    Ok(
        output(docker().args(["image", "inspect", "--format", "{{.Id}}", image]))?
            .status
            .success(),
    )
}

/// Which Compose is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComposeTool {
    /// `docker compose`, the v2 CLI plugin.
    Plugin,
    /// `docker-compose`, the standalone tool (v1, or v2 installed standalone).
    Standalone,
}

impl ComposeTool {
    /// The first that answers `version`: `BIFROST_COMPOSE` if set (`docker
    /// compose` or `docker-compose`), else the plugin, else the standalone.
    pub fn detect() -> Result<ComposeTool> {
        if let Ok(v) = std::env::var("BIFROST_COMPOSE") {
            return match v.trim() {
                "docker compose" => Ok(ComposeTool::Plugin),
                "docker-compose" => Ok(ComposeTool::Standalone),
                other => Err(Error::Other(format!(
                    "BIFROST_COMPOSE={other:?}: expected \"docker compose\" or \"docker-compose\""
                ))),
            };
        }
        for tool in [ComposeTool::Plugin, ComposeTool::Standalone] {
            if output(tool.command().arg("version")).is_ok_and(|o| o.status.success()) {
                return Ok(tool);
            }
        }
        Err(Error::Other(
            "neither `docker compose` nor `docker-compose` works; install one".into(),
        ))
    }

    fn command(self) -> Command {
        match self {
            ComposeTool::Plugin => {
                let mut c = docker();
                c.arg("compose");
                c
            }
            ComposeTool::Standalone => Command::new("docker-compose"),
        }
    }
}

impl fmt::Display for ComposeTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComposeTool::Plugin => "docker compose",
            ComposeTool::Standalone => "docker-compose",
        })
    }
}

/// One cluster node as the compose file defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's Raft id (1, 2, 3).
    pub id: u64,
    /// Compose service name (`n1`).
    pub service: String,
    /// Its address on the project's network.
    pub ip: Ipv4Addr,
}

impl Node {
    /// gRPC address, for `bifrostctl --endpoints` and the client library.
    pub fn grpc(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, GRPC_PORT))
    }

    /// HTTP address (`/healthz`, `/readyz`, `/metrics`).
    pub fn http(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, HTTP_PORT))
    }
}

/// A container's state as `docker inspect` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    /// Frozen by `docker pause`. (A `SIGSTOP`ped process still shows as
    /// running: Docker does not look inside.)
    Paused,
    /// Stopped, with its exit code (137 after `kill -s KILL`).
    Exited(i32),
    /// `created`, `restarting`, `removing`, `dead`.
    Other(String),
}

/// What a container wrote, as `docker logs` returns it: the two streams
/// separately, because their interleaving is lost. Bifrost logs to stderr.
#[derive(Clone, Debug, Default)]
pub struct Logs {
    pub stdout: String,
    pub stderr: String,
}

/// What to bring up.
#[derive(Clone, Debug)]
pub struct ComposeOptions {
    /// The compose file (default: `docker-compose.yml` at the repository root).
    pub file: PathBuf,
    /// The project name (`-p`): containers, network and volumes are named
    /// after it. Lowercase letters, digits, `-` and `_`.
    pub project: String,
    /// Image for every service (`BIFROST_IMAGE`).
    pub image: String,
    /// First three octets of the project's /24 (`BIFROST_NET`).
    pub net: [u8; 3],
    /// Number of nodes the compose file defines (`n1`..).
    pub nodes: u64,
}

impl ComposeOptions {
    /// The repository's compose file, a fresh project name starting with
    /// `prefix`, the default image and network, three nodes.
    pub fn new(prefix: &str) -> ComposeOptions {
        ComposeOptions {
            file: default_compose_file(),
            project: unique_project(prefix),
            image: DEFAULT_IMAGE.to_string(),
            net: DEFAULT_NET,
            nodes: 3,
        }
    }
}

/// `docker-compose.yml` at the repository root (found from this crate's
/// source directory, so it works from any working directory).
pub fn default_compose_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the jepsen crate sits inside the repository")
        .join("docker-compose.yml")
}

/// `prefix-PID-NANOS`, lowercased and cleaned to what Compose accepts.
pub fn unique_project(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let raw = format!("{prefix}-{}-{nanos:09}", std::process::id());
    raw.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
            _ => '-',
        })
        .collect()
}

/// Candidate networks for [`Compose::up_any_net`]: `10.213.X.0/24` for X
/// from a start derived from `seed` (say, the process id), wrapping within
/// 100..=249, so that parallel runs usually get different ones at once.
pub fn candidate_nets(seed: u64, count: usize) -> Vec<[u8; 3]> {
    (0..count as u64)
        .map(|i| [10, 213, (100 + (seed + i) % 150) as u8])
        .collect()
}

/// A compose project: the cluster's containers, their network and volumes,
/// and the certificates of its CA.
///
/// Dropping it takes the project down (containers, network, volumes) and
/// removes the certificates, unless [`Compose::keep`] was called, so a
/// failing test cleans up too.
pub struct Compose {
    tool: ComposeTool,
    opts: ComposeOptions,
    /// Holds `pki/` (mounted in the nodes) and the CA's key beside it.
    pki_root: tempfile::TempDir,
    /// Set once `up` has run, so that drop knows there is something to remove.
    started: bool,
    keep: bool,
}

impl Compose {
    /// Checks the compose file and image exist and makes the (empty)
    /// directory for the project's certificates; starts nothing.
    pub fn new(opts: ComposeOptions) -> Result<Compose> {
        if !opts.file.is_file() {
            return Err(Error::Other(format!(
                "compose file {} not found",
                opts.file.display()
            )));
        }
        if !image_exists(&opts.image)? {
            return Err(Error::Other(format!(
                "image {} not found; build it with scripts/image.sh (no image can be pulled)",
                opts.image
            )));
        }
        let pki_root = tempfile::Builder::new()
            .prefix("bifrost-jepsen-pki-")
            .tempdir()
            .map_err(|e| {
                Error::Other(format!(
                    "a temporary directory for the certificates of project {}: {e}",
                    opts.project
                ))
            })?;
        Ok(Compose {
            tool: ComposeTool::detect()?,
            opts,
            pki_root,
            started: false,
            keep: false,
        })
    }

    pub fn project(&self) -> &str {
        &self.opts.project
    }

    pub fn tool(&self) -> ComposeTool {
        self.tool
    }

    pub fn options(&self) -> &ComposeOptions {
        &self.opts
    }

    /// Leave the project running, and its certificates on disk, when this
    /// value drops (for looking at a failure by hand); prints how to reach
    /// and remove it then.
    pub fn keep(&mut self) {
        self.keep = true;
        self.pki_root.disable_cleanup(true);
    }

    /// `docker compose -p PROJECT -f FILE ARGS...` with the project's
    /// environment.
    pub fn compose_command(&self) -> Command {
        let mut c = self.tool.command();
        c.arg("-p")
            .arg(&self.opts.project)
            .arg("-f")
            .arg(&self.opts.file)
            .env("BIFROST_IMAGE", &self.opts.image)
            .env("BIFROST_NET", net_prefix(self.opts.net))
            .env("BIFROST_PKI", &self.pki().dir);
        c
    }

    /// The project's certificate directory (`BIFROST_PKI`): `ca.pem`,
    /// `node-N.pem` and `.key`, `user-admin.pem` and `.key`, once
    /// [`Compose::up`] has made them. The CA's key is not in it.
    pub fn pki(&self) -> CertDir {
        CertDir::new(self.pki_root.path().join("pki"))
    }

    /// The temporary directory that holds [`Compose::pki`] and the CA's
    /// key; removed when this value drops, unless [`Compose::keep`].
    pub fn pki_root(&self) -> &Path {
        self.pki_root.path()
    }

    /// How the harness's clients connect: TLS, checking the nodes against
    /// the project's CA, presenting user `admin`'s certificate.
    pub fn security(&self) -> Security {
        let pki = self.pki();
        Security::tls(
            pki.ca_cert(),
            Some((pki.user_cert(ADMIN), pki.user_key(ADMIN))),
        )
    }

    /// Every node's gRPC endpoint, with [`Compose::security`].
    pub fn target(&self) -> Target {
        let endpoints = self.nodes().iter().map(|n| n.grpc().to_string()).collect();
        Target::new(endpoints, self.security())
    }

    /// A new CA in [`Compose::pki`] for the project's current network (an
    /// earlier attempt's is removed): a certificate per node naming its
    /// host (`nX`) and address, and one for user `admin`. The CA's key then
    /// moves beside the directory, out of the nodes' reach: the harness
    /// signs nothing later.
    fn make_pki(&self) -> Result<()> {
        let pki = self.pki();
        let fail = |what: String| {
            Error::Other(format!(
                "certificates of project {} in {}: {what}",
                self.opts.project,
                pki.dir.display()
            ))
        };
        if pki.dir.exists() {
            std::fs::remove_dir_all(&pki.dir).map_err(|e| fail(format!("removing: {e}")))?;
        }
        let nodes: Vec<NodeSpec> = self
            .nodes()
            .into_iter()
            .map(|n| NodeSpec {
                id: n.id,
                hosts: HostList(vec![n.service, n.ip.to_string()]),
            })
            .collect();
        pki.init(&nodes, ADMIN, bifrost_tls::certs::LEAF_DAYS)
            .map_err(|e| fail(e.to_string()))?;
        let aside = self.pki_root.path().join("ca.key");
        std::fs::rename(pki.ca_key(), &aside)
            .map_err(|e| fail(format!("moving ca.key to {}: {e}", aside.display())))
    }

    /// The address of host `last` on the project's network.
    pub fn ip(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.opts.net;
        Ipv4Addr::new(a, b, c, last)
    }

    /// The nodes, by id, with the addresses the compose file gives them.
    pub fn nodes(&self) -> Vec<Node> {
        (1..=self.opts.nodes)
            .map(|id| self.node(id).expect("id in range"))
            .collect()
    }

    /// Node `id` (1-based).
    pub fn node(&self, id: u64) -> Result<Node> {
        if id == 0 || id > self.opts.nodes {
            return Err(Error::Other(format!(
                "no node {id}: the project has nodes 1..={}",
                self.opts.nodes
            )));
        }
        Ok(Node {
            id,
            service: format!("n{id}"),
            ip: self.ip(10 + id as u8),
        })
    }

    /// Node id to address, what [`crate::nemesis`] builds rules from.
    pub fn addresses(&self) -> BTreeMap<u64, Ipv4Addr> {
        self.nodes().into_iter().map(|n| (n.id, n.ip)).collect()
    }

    /// The simulator's Modbus TCP address (devices are units 1..=N on it).
    pub fn sim(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip(SIM_HOST), SIM_PORT))
    }

    /// Comma-separated gRPC addresses, for `bifrostctl --endpoints`.
    pub fn endpoints(&self) -> String {
        self.nodes()
            .iter()
            .map(|n| n.grpc().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Makes the project's certificates for its network (a new CA), then
    /// `up -d`, then checks that every container is running at the address
    /// the layout says. For a project that is down: running nodes would
    /// reload the new certificates and lose their peers.
    pub fn up(&mut self) -> Result<()> {
        self.make_pki()?;
        self.started = true;
        run(self.compose_command().args(["up", "-d", "--no-build"]))?;
        let mut services: Vec<(String, Ipv4Addr)> = self
            .nodes()
            .into_iter()
            .map(|n| (n.service, n.ip))
            .collect();
        services.push(("sim".into(), self.ip(SIM_HOST)));
        for (service, want) in services {
            let got = self.address(&service)?;
            if got != want {
                return Err(Error::Other(format!(
                    "{service} is at {got}, not {want}: the compose file and docker.rs disagree"
                )));
            }
        }
        Ok(())
    }

    /// [`Compose::up`] on the first of `nets` whose subnet is free (taking
    /// down what a refused attempt left). The chosen one is then in
    /// [`Compose::options`].
    pub fn up_any_net(&mut self, nets: &[[u8; 3]]) -> Result<()> {
        let mut last = None;
        for &net in nets {
            self.opts.net = net;
            match self.up() {
                Ok(()) => return Ok(()),
                Err(e) if e.is_subnet_taken() => {
                    let _ = self.down();
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Other("no candidate network given".into())))
    }

    /// Removes the project: containers (frozen ones are thawed first, so
    /// they can be stopped), the network and the volumes.
    pub fn down(&mut self) -> Result<()> {
        if let Ok(ids) = self.container_ids() {
            for id in ids.values() {
                let _ = output(docker().args(["unpause", id]));
                let _ = output(docker().args(["kill", "-s", "CONT", id]));
            }
        }
        run(self
            .compose_command()
            .args(["down", "-v", "--remove-orphans", "-t", "1"]))?;
        self.started = false;
        Ok(())
    }

    /// Service name to container id, for every container of the project
    /// (running or not).
    pub fn container_ids(&self) -> Result<BTreeMap<String, String>> {
        let out = run(docker().args([
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.opts.project),
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
        ]))?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(s, id)| (s.to_string(), id.to_string()))
            .collect())
    }

    /// The container id of `service` (`n1`, `sim`).
    pub fn container_id(&self, service: &str) -> Result<String> {
        self.container_ids()?.remove(service).ok_or_else(|| {
            Error::Other(format!(
                "no container for service {service} in project {}",
                self.opts.project
            ))
        })
    }

    /// The address Docker gave `service` on the project's network.
    pub fn address(&self, service: &str) -> Result<Ipv4Addr> {
        let id = self.container_id(service)?;
        let out = run(docker().args([
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &id,
        ]))?;
        out.split_whitespace()
            .find_map(|a| a.parse().ok())
            .ok_or_else(|| Error::Other(format!("{service} has no IPv4 address ({out:?})")))
    }

    /// The state of `service`'s container.
    pub fn state(&self, service: &str) -> Result<ContainerState> {
        let id = self.container_id(service)?;
        let out = run(docker().args([
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &id,
        ]))?;
        let (status, code) = out.split_once(' ').unwrap_or((&out, "0"));
        Ok(match status {
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "exited" => ContainerState::Exited(code.parse().unwrap_or(-1)),
            other => ContainerState::Other(other.to_string()),
        })
    }

    fn container_verb(&self, node: u64, args: &[&str]) -> Result<()> {
        let id = self.container_id(&self.node(node)?.service)?;
        run(docker().args(args).arg(&id)).map(drop)
    }

    /// Power off: `docker kill -s KILL`. Nothing is flushed; what was
    /// fsynced survives in the node's volume.
    pub fn kill(&self, node: u64) -> Result<()> {
        self.container_verb(node, &["kill", "-s", "KILL"])
    }

    /// Power on after [`Compose::kill`] (or a crash): `docker start`. Same
    /// container, same volume, same address.
    pub fn start(&self, node: u64) -> Result<()> {
        self.container_verb(node, &["start"])
    }

    /// Freeze every process of the node with the cgroup freezer (`docker
    /// pause`): the process cannot run, see or handle it; its sockets stay
    /// open and the kernel still completes TCP handshakes on listening
    /// sockets, but nothing is answered. The closest thing to a long GC
    /// pause or a stalled VM.
    pub fn pause(&self, node: u64) -> Result<()> {
        self.container_verb(node, &["pause"])
    }

    /// Thaw after [`Compose::pause`].
    pub fn unpause(&self, node: u64) -> Result<()> {
        self.container_verb(node, &["unpause"])
    }

    /// `SIGSTOP` to the node's process (`docker kill -s STOP`): like
    /// [`Compose::pause`], by signal rather than freezer.
    pub fn sigstop(&self, node: u64) -> Result<()> {
        self.container_verb(node, &["kill", "-s", "STOP"])
    }

    /// `SIGCONT` after [`Compose::sigstop`].
    pub fn sigcont(&self, node: u64) -> Result<()> {
        self.container_verb(node, &["kill", "-s", "CONT"])
    }

    /// Runs `program args...` inside `service`'s running container (`docker
    /// exec`): the image has `bifrost` and `bifrostctl` and nothing else, so
    /// `bifrostctl` from inside a node is how to see the network as that
    /// node sees it. The output whatever the exit status.
    pub fn exec(&self, service: &str, program: &str, args: &[&str]) -> Result<Output> {
        let id = self.container_id(service)?;
        output(docker().args(["exec", &id, program]).args(args))
    }

    /// `bifrostctl ARGS...` inside `service`'s container, over TLS as user
    /// `admin` with the mounted certificates (`--ca /pki/ca.pem --cert
    /// /pki/user-admin.pem --key /pki/user-admin.key`). Give `--endpoints`
    /// a name the nodes' certificates carry (`NET.1X:7001` or `nX:7001`;
    /// not `127.0.0.1`). The output whatever the exit status.
    pub fn bifrostctl(&self, service: &str, args: &[&str]) -> Result<Output> {
        let ca = format!("{PKI_MOUNT}/ca.pem");
        let cert = format!("{PKI_MOUNT}/user-{ADMIN}.pem");
        let key = format!("{PKI_MOUNT}/user-{ADMIN}.key");
        let tls = ["--ca", &ca, "--cert", &cert, "--key", &key];
        let all: Vec<&str> = tls.iter().copied().chain(args.iter().copied()).collect();
        self.exec(service, "bifrostctl", &all)
    }

    /// Everything `service` has written since its container was created
    /// (across restarts).
    pub fn logs(&self, service: &str) -> Result<Logs> {
        let id = self.container_id(service)?;
        let mut cmd = docker();
        cmd.args(["logs", &id]);
        let out = output(&mut cmd)?;
        if !out.status.success() {
            return Err(Error::Failed {
                command: describe(&cmd),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(Logs {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `GET path` of `node`'s HTTP port over TLS, checked against the
    /// project's CA ([`http_get`] with [`Compose::security`]).
    pub fn http_get(
        &self,
        node: &Node,
        path: &str,
        timeout: Duration,
    ) -> io::Result<(u16, String)> {
        http_get(node.http(), path, timeout, &self.security())
    }

    /// Waits until every node answers `GET path` with 200 over TLS
    /// (`/healthz`: the process serves; `/readyz`: it also has a leader and
    /// is caught up). The timeout names the node and its last answer.
    pub fn wait_http(&self, path: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for node in self.nodes() {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let probe = left.min(Duration::from_secs(2));
                let answer = self.http_get(&node, path, probe);
                match answer {
                    Ok((200, _)) => break,
                    _ if left.is_zero() => {
                        let last = match answer {
                            Ok((code, body)) => format!("{code} {}", body.trim()),
                            Err(e) => e.to_string(),
                        };
                        return Err(Error::Timeout {
                            what: format!(
                                "{} answering {path} at https://{} (last: {last})",
                                node.service,
                                node.http()
                            ),
                            after: timeout,
                        });
                    }
                    _ => std::thread::sleep(Duration::from_millis(100).min(left)),
                }
            }
        }
        Ok(())
    }

    /// [`Compose::wait_http`] on `/healthz`.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        self.wait_http("/healthz", timeout)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        if self.keep {
            let pki = self.pki();
            eprintln!(
                "docker: leaving project {} running; reach it with: bifrostctl --ca {} --cert {} --key {} --endpoints {}; \
                 remove it with: BIFROST_NET={} BIFROST_PKI={} {} -p {} -f {} down -v (and rm -r {})",
                self.opts.project,
                pki.ca_cert().display(),
                pki.user_cert(ADMIN).display(),
                pki.user_key(ADMIN).display(),
                self.endpoints(),
                net_prefix(self.opts.net),
                pki.dir.display(),
                self.tool,
                self.opts.project,
                self.opts.file.display(),
                self.pki_root.path().display()
            );
            return;
        }
        if let Err(e) = self.down() {
            eprintln!("docker: taking down project {}: {e}", self.opts.project);
        }
    }
}

/// `10.213.0` for `[10, 213, 0]`.
pub fn net_prefix(net: [u8; 3]) -> String {
    format!("{}.{}.{}", net[0], net[1], net[2])
}

/// A minimal HTTP/1.0 `GET`: the status code and body. With TLS
/// (`security` is [`Security::Tls`]) the node is checked against the CA
/// by its address, which its certificate must name; plain text otherwise.
/// Connecting, the handshake, writing and each read are bounded by what is
/// left of `timeout`, so a frozen node shows up as an error of kind
/// `TimedOut` or `WouldBlock`, not as a hang. A TLS file that cannot be
/// used is an `InvalidInput` error naming it, before anything connects.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    security: &Security,
) -> io::Result<(u16, String)> {
    let timeout = timeout.max(Duration::from_millis(1));
    let deadline = Instant::now() + timeout;
    let tls = match security {
        Security::Plain => None,
        Security::Tls(files) => Some(https_connection(addr, files)?),
    };
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    let clock = tcp.try_clone()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let buf = match tls {
        None => exchange(tcp, &request, &clock, deadline)?,
        Some(conn) => exchange(
            rustls::StreamOwned::new(conn, tcp),
            &request,
            &clock,
            deadline,
        )?,
    };
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP answer"))?;
    Ok((status, body.to_string()))
}

/// A rustls client of the node at `addr` (the name it checks), from the
/// files of `tls`; errors name the file.
fn https_connection(addr: SocketAddr, tls: &ClientTls) -> io::Result<rustls::ClientConnection> {
    let identity = tls
        .identity
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    let invalid = |e: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TLS for https://{addr}: {e}"),
        )
    };
    let config = bifrost_tls::config::client_config(&tls.ca, identity, &[b"http/1.1"])
        .map_err(|e| invalid(e.to_string()))?;
    rustls::ClientConnection::new(Arc::new(config), addr.ip().into())
        .map_err(|e| invalid(e.to_string()))
}

/// Writes `request` to `stream` and reads until the server closes, each
/// socket operation bounded by what is left until `deadline` (set on
/// `clock`, a handle of the stream's socket).
fn exchange(
    mut stream: impl Read + Write,
    request: &str,
    clock: &TcpStream,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no full answer in time",
            ));
        }
        Ok(left)
    };
    clock.set_write_timeout(Some(left()?))?;
    // A TLS handshake reads while the request is written.
    clock.set_read_timeout(Some(left()?))?;
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        clock.set_read_timeout(Some(left()?))?;
        match stream.read(&mut chunk)? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_project_names_are_what_compose_accepts() {
        let p = unique_project("Bifrost Jepsen.T");
        assert!(p.starts_with("bifrost-jepsen-t-"), "{p}");
        assert!(p
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'));
    }

    #[test]
    fn candidate_nets_stay_in_10_213_100_to_249() {
        let nets = candidate_nets(148, 4);
        assert_eq!(
            nets,
            vec![
                [10, 213, 248],
                [10, 213, 249],
                [10, 213, 100],
                [10, 213, 101]
            ]
        );
        assert!(candidate_nets(u32::MAX as u64, 300)
            .iter()
            .all(|n| (100..=249).contains(&n[2])));
    }

    #[test]
    fn subnet_conflicts_are_recognised() {
        let e = Error::Failed {
            command: "docker-compose up".into(),
            status: "exit status: 1".into(),
            stderr: "Pool overlaps with other one on this address space".into(),
        };
        assert!(e.is_subnet_taken());
        assert!(!Error::Other("x".into()).is_subnet_taken());
    }

    /// A CA in a temporary directory whose node 1 is `127.0.0.1`.
    fn loopback_pki() -> (tempfile::TempDir, CertDir) {
        let dir = tempfile::tempdir().unwrap();
        let pki = CertDir::new(dir.path().join("pki"));
        let nodes = NodeSpec::parse_list("1=127.0.0.1").unwrap();
        pki.init(&nodes, ADMIN, 1).unwrap();
        (dir, pki)
    }

    /// Serves `connections` HTTPS connections on loopback as node 1 of
    /// `pki`: each reads a request and answers `answer`, then closes.
    fn https_server(pki: &CertDir, connections: usize, answer: &'static str) -> SocketAddr {
        let config = bifrost_tls::config::server_config(
            None,
            &pki.node_cert(1),
            &pki.node_key(1),
            bifrost_tls::ClientAuth::None,
            &[b"http/1.1"],
        )
        .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for _ in 0..connections {
                let (tcp, _) = listener.accept().unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => request.push(byte[0]),
                        _ => break,
                    }
                }
                if request.ends_with(b"\r\n\r\n") {
                    let _ = tls.write_all(answer.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        addr
    }

    #[test]
    fn https_gets_check_the_node_against_the_ca() {
        let (_dir, pki) = loopback_pki();
        let addr = https_server(&pki, 2, "HTTP/1.0 200 OK\r\n\r\nready\n");
        let ours = Security::tls(pki.ca_cert(), None);
        let got = http_get(addr, "/readyz", Duration::from_secs(5), &ours).unwrap();
        assert_eq!(got, (200, "ready\n".to_string()));
        // Another CA does not vouch for the node.
        let (_other_dir, other) = loopback_pki();
        let theirs = Security::tls(other.ca_cert(), None);
        let e = http_get(addr, "/readyz", Duration::from_secs(5), &theirs).unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
    }

    #[test]
    fn a_missing_ca_is_named_before_connecting() {
        let tls = Security::tls("/nonexistent/ca.pem", None);
        let unreachable = SocketAddr::from(([192, 0, 2, 1], 8001));
        let e = http_get(unreachable, "/", Duration::from_secs(30), &tls).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_node_that_never_answers_the_handshake_is_a_timeout() {
        let (_dir, pki) = loopback_pki();
        // Accepts (as the kernel does for a frozen node) and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let t = Instant::now();
        let tls = Security::tls(pki.ca_cert(), None);
        let e = http_get(addr, "/healthz", Duration::from_millis(500), &tls).unwrap_err();
        let took = t.elapsed();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{e}"
        );
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(3),
            "{took:?}"
        );
        drop(held.join());
    }

    #[test]
    fn commands_print_as_typed() {
        let mut c = Command::new("iptables");
        c.args(["-m", "comment", "--comment", "a b", ""]);
        assert_eq!(describe(&c), r#"iptables -m comment --comment "a b" """#);
    }
}
