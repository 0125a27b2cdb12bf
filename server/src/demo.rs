//! `bifrost demo`: a three-node cluster on loopback and a Modbus device
//! simulator, as child processes of this one, with a small plant configured
//! (20 devices x 10 tags plus a counter each), so that a new user sees live
//! values with one command.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The children, killed when dropped.
pub struct Cluster {
    pub children: Vec<Child>,
    pub grpc: Vec<String>,
    pub http: Vec<String>,
    /// Address of the simulator's first port.
    pub sim: String,
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
/// `base_port + 1..=3` and HTTP on `base_port + 1001..=1003`.
pub fn start(exe: &Path, data_dir: &Path, base_port: u16) -> anyhow::Result<Cluster> {
    if base_port == 0 || base_port > u16::MAX - 1003 {
        anyhow::bail!(
            "--base-port {base_port}: must be between 1 and {} (ports up to BASE+1003 are used)",
            u16::MAX - 1003
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
    let peers = grpc
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let sim = format!("127.0.0.1:{}", base_port + 500);
    let mut cluster = Cluster {
        children: vec![],
        grpc: grpc.clone(),
        http: http.clone(),
        sim: sim.clone(),
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
    let cfg = bifrost_drivers::sim::SimConfig {
        devices: DEMO_DEVICES,
        tags: DEMO_TAGS,
        ..Default::default()
    };
    let base: std::net::SocketAddr = cluster.sim.parse()?;
    let mut devices = vec![];
    let mut tags = vec![];
    for d in bifrost_drivers::sim::device_layout(base, &cfg) {
        devices.push(pb::Device {
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
        tags.push(pb::Tag {
            name: format!("plant/{}/counter", d.name),
            device: d.name.clone(),
            address: d.counter.clone(),
            data_type: "u32".into(),
            description: "reads answered by the simulated device".into(),
            ..Default::default()
        });
        for t in &d.tags {
            tags.push(pb::Tag {
                name: format!("plant/{}/{}", d.name, t.name),
                device: d.name.clone(),
                address: t.address.clone(),
                data_type: t.data_type.as_str().into(),
                ..Default::default()
            });
        }
    }
    let n_tags = tags.len();
    let mut client = bifrost_proto::v1::bifrost_client::BifrostClient::connect(format!(
        "http://{}",
        cluster.grpc[0]
    ))
    .await?;
    client.import(pb::ImportRequest { devices, tags }).await?;
    Ok((DEMO_DEVICES, n_tags))
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
            if http_get_ok(addr, "/readyz").await {
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

/// A minimal HTTP/1.0 GET: true on a 200 answer.
async fn http_get_ok(addr: &str, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = vec![0u8; 64];
    match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
        Ok(Ok(n)) => {
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200")
                || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.0 200")
        }
        _ => false,
    }
}
