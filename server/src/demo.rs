//! `bifrost demo`: a three-node cluster on loopback and a Modbus device
//! simulator, as child processes of this one, with a small plant configured
//! (20 devices x 10 tags plus a counter each), so that a new user sees live
//! values with one command. The cluster runs with TLS on every port, its
//! certificates made on first start in `pki/` of the data directory (a CA,
//! the three nodes' and user `admin`'s, as `bifrostctl certs init` makes
//! them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bifrost_proto::channel::Security;
use bifrost_tls::certs::{CertDir, NodeSpec, LEAF_DAYS};

/// The children, killed when dropped.
pub struct Cluster {
    pub children: Vec<Child>,
    pub grpc: Vec<String>,
    pub http: Vec<String>,
    /// Address of the simulator's first port.
    pub sim: String,
    /// The cluster's certificates.
    pub pki: CertDir,
    /// The bootstrap admin's password (for the web UI), made on the
    /// directory's first start.
    pub admin_password_file: PathBuf,
}

impl Cluster {
    /// How a client reaches the nodes: TLS as user `admin`.
    pub fn security(&self) -> Security {
        Security::tls(
            self.pki.ca_cert(),
            Some((self.pki.user_cert("admin"), self.pki.user_key("admin"))),
        )
    }
}

/// The demo's certificates in `data_dir/pki`, made if there are none yet.
fn certificates(data_dir: &Path) -> anyhow::Result<CertDir> {
    let pki = CertDir::new(data_dir.join("pki"));
    if !pki.ca_cert().exists() {
        let nodes = NodeSpec::parse_list(
            "1=localhost+127.0.0.1,2=localhost+127.0.0.1,3=localhost+127.0.0.1",
        )?;
        pki.init(&nodes, "admin", LEAF_DAYS)
            .with_context(|| format!("making the demo's certificates in {}", data_dir.display()))?;
    }
    // Demo directories made before device secrets have no data key yet.
    pki.ensure_data_key()
        .with_context(|| format!("making the demo's data key in {}", data_dir.display()))?;
    Ok(pki)
}

/// The bootstrap admin's password for the web UI: `DIR/pki/admin-password`
/// (mode 0600), made with a random password the first time. A directory
/// whose cluster was made before the file existed keeps its admin's
/// one-time password (in the log of the node that was the first leader).
fn admin_password(pki: &CertDir) -> anyhow::Result<PathBuf> {
    use base64::Engine as _;
    use std::os::unix::fs::OpenOptionsExt;
    let path = pki.dir.join("admin-password");
    if !path.exists() {
        let mut bytes = [0u8; 15];
        rand::fill(&mut bytes);
        let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("making {}", path.display()))?;
        std::io::Write::write_all(&mut f, format!("{password}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// Size of the demo plant.
pub const DEMO_DEVICES: u32 = 20;
pub const DEMO_TAGS: u16 = 10;

fn pdeathsig(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts three `bifrost serve` processes of `exe` with gRPC on
/// `base_port + 1..=3`, HTTP on `base_port + 1001..=1003` and peer ports on
/// `base_port + 2001..=2003`.
pub fn start(exe: &Path, data_dir: &Path, base_port: u16) -> anyhow::Result<Cluster> {
    if base_port == 0 || base_port > u16::MAX - 2003 {
        anyhow::bail!(
            "--base-port {base_port}: must be between 1 and {} (ports up to BASE+2003 are used)",
            u16::MAX - 2003
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let grpc: Vec<String> = (1..=3)
        .map(|i| format!("127.0.0.1:{}", base_port + i))
        .collect();
    let http: Vec<String> = (1..=3)
        .map(|i| format!("127.0.0.1:{}", base_port + 1000 + i))
        .collect();
    let peer_ports: Vec<String> = (1..=3)
        .map(|i| format!("127.0.0.1:{}", base_port + 2000 + i))
        .collect();
    let peers = grpc
        .iter()
        .zip(&peer_ports)
        .enumerate()
        .map(|(i, (api, peer))| format!("{}={api}/{peer}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let sim = format!("127.0.0.1:{}", base_port + 500);
    let pki = certificates(data_dir)?;
    let admin_password_file = admin_password(&pki)?;
    let mut cluster = Cluster {
        children: vec![],
        grpc: grpc.clone(),
        http: http.clone(),
        sim: sim.clone(),
        pki: pki.clone(),
        admin_password_file: admin_password_file.clone(),
    };
    for i in 0..3 {
        let dir: PathBuf = data_dir.join(format!("node{}", i + 1));
        // Appended, so the logs of an earlier run stay readable.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join(format!("node{}.log", i + 1)))?;
        let mut cmd = Command::new(exe);
        // The nodes die with the demo, however it ends (even by SIGKILL).
        pdeathsig(&mut cmd);
        let child = cmd
            .args(["serve", "--id", &(i + 1).to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", &grpc[i], "--http", &http[i], "--peers", &peers])
            .args(["--peer-listen", &peer_ports[i]])
            .arg("--tls-cert")
            .arg(pki.node_cert(i as u64 + 1))
            .arg("--tls-key")
            .arg(pki.node_key(i as u64 + 1))
            .arg("--tls-ca")
            .arg(pki.ca_cert())
            .arg("--data-key-file")
            .arg(pki.data_key())
            .arg("--admin-password-file")
            .arg(&admin_password_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        cluster.children.push(child);
    }
    // Last, so children[i] is node i+1.
    let sim_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("sim.log"))?;
    let mut cmd = Command::new(exe);
    pdeathsig(&mut cmd);
    let child = cmd
        .args([
            "sim",
            "--listen",
            &sim,
            "--devices",
            &DEMO_DEVICES.to_string(),
        ])
        .args(["--tags", &DEMO_TAGS.to_string()])
        .stdin(Stdio::null())
        .stdout(sim_log.try_clone()?)
        .stderr(sim_log)
        .spawn()
        .with_context(|| format!("starting the simulator {}", exe.display()))?;
    cluster.children.push(child);
    Ok(cluster)
}

/// Creates the demo plant (idempotent: an import replaces what is there).
pub async fn configure_plant(cluster: &Cluster) -> anyhow::Result<(u32, usize)> {
    use bifrost_proto::v1 as pb;
    let base: std::net::SocketAddr = cluster.sim.parse()?;
    let (devices, tags) = sim_plant(base, DEMO_DEVICES, DEMO_TAGS);
    let n_tags = tags.len();
    let channel = cluster
        .security()
        .endpoint(&cluster.grpc[0])
        .map_err(anyhow::Error::msg)?
        .connect()
        .await
        .with_context(|| format!("connecting to node 1 at {}", cluster.grpc[0]))?;
    let mut client = bifrost_proto::v1::bifrost_client::BifrostClient::new(channel);
    let request = pb::ImportRequest { devices, tags };
    // A new cluster's first leader may still be making its bootstrap admin
    // (whose certificate the demo uses), or a leader may be changing: both
    // answer `unavailable`, and the import is retried.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.import(request.clone()).await {
            Ok(_) => return Ok((DEMO_DEVICES, n_tags)),
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => return Err(anyhow::anyhow!("importing the demo plant: {s}")),
        }
    }
}

/// Waits until every node's `/readyz` answers 200.
pub async fn wait_ready(cluster: &mut Cluster, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for (i, addr) in cluster.http.clone().iter().enumerate() {
        loop {
            if let Some(status) = cluster.children[i].try_wait()? {
                anyhow::bail!(
                    "node {} exited during start-up ({status}); see its log",
                    i + 1
                );
            }
            if https_get_ok(&cluster.pki, addr, "/readyz").await {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("node {} at {addr} not ready after {timeout:?}", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// A minimal HTTP/1.0 GET over TLS, checking the node against the demo's
/// CA: true on a 200 answer.
async fn https_get_ok(pki: &CertDir, addr: &str, path: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(3), https_get(pki, addr, path))
        .await
        .is_ok_and(|r| {
            r.is_ok_and(|head| head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"))
        })
}

async fn https_get(pki: &CertDir, addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = bifrost_tls::config::client_config(&pki.ca_cert(), None, &[b"http/1.1"])?;
    let mut tls = bifrost_tls::connector::connect(addr, config).await?;
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut head = vec![0u8; 64];
    let n = tls.read(&mut head).await?;
    Ok(String::from_utf8_lossy(&head[..n]).into_owned())
}

/// The devices and tags of a plant of `bifrost sim --devices N --tags T`
/// listening at `base`, polled every second: per device `plant/NAME/counter`,
/// the pattern tags `plant/NAME/sine0`, `ramp1`, ..., and a writable
/// `plant/NAME/setpoint` (the first writable holding register). The demo
/// imports it; so do the web UI's browser tests.
pub fn sim_plant(
    base: std::net::SocketAddr,
    devices: u32,
    tags: u16,
) -> (Vec<bifrost_proto::v1::Device>, Vec<bifrost_proto::v1::Tag>) {
    use bifrost_proto::v1 as pb;
    let cfg = bifrost_drivers::sim::SimConfig {
        devices,
        tags,
        ..Default::default()
    };
    let mut out_devices = vec![];
    let mut out_tags = vec![];
    for d in bifrost_drivers::sim::device_layout(base, &cfg) {
        out_devices.push(pb::Device {
            name: d.name.clone(),
            protocol: "modbus-tcp".into(),
            endpoint: d.endpoint.clone(),
            unit_id: d.unit as u32,
            poll_interval_ms: 1000,
            timeout_ms: 1000,
            retries: 1,
            enabled: true,
            ..Default::default()
        });
        out_tags.push(pb::Tag {
            name: format!("plant/{}/counter", d.name),
            device: d.name.clone(),
            address: d.counter.clone(),
            data_type: "u32".into(),
            description: "reads answered by the simulated device".into(),
            ..Default::default()
        });
        for t in &d.tags {
            out_tags.push(pb::Tag {
                name: format!("plant/{}/{}", d.name, t.name),
                device: d.name.clone(),
                address: t.address.clone(),
                data_type: t.data_type.as_str().into(),
                ..Default::default()
            });
        }
        if d.writable > 0 {
            out_tags.push(pb::Tag {
                name: format!("plant/{}/setpoint", d.name),
                device: d.name.clone(),
                address: format!("hr:{}", d.writable_start),
                data_type: "u16".into(),
                description: "a setpoint the operator may write".into(),
                writable: true,
                ..Default::default()
            });
        }
    }
    (out_devices, out_tags)
}
