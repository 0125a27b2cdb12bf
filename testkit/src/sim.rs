//! The Modbus device simulator, `bifrost sim`, on a block of free
//! consecutive loopback ports: device `i` answers on port `base + i / 247`
//! with unit id `i % 247 + 1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::ports::free_port_block;
use crate::process::Proc;
use crate::wait::{Step, Wait};

/// Modbus unit ids per simulator port.
pub const UNITS_PER_PORT: u32 = 247;

/// How long the simulator may take to listen on all its ports.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Simulated devices.
    pub devices: u32,
    /// Pattern tags per device (`bifrost sim --tags`).
    pub tags: u16,
}

/// A running simulator; dropping it kills it.
pub struct Simulator {
    proc: Proc,
    base: u16,
    ports: u32,
}

impl Simulator {
    /// Starts `bin sim` with its output in `log`, and waits until it
    /// listens on all its ports.
    pub async fn start(
        bin: &Path,
        opts: &SimOptions,
        log: PathBuf,
        die_with_parent: bool,
    ) -> Result<Simulator> {
        let ports = opts.devices.max(1).div_ceil(UNITS_PER_PORT);
        let base = free_port_block(ports)?;
        let mut cmd = Command::new(bin);
        cmd.arg("sim")
            .args(["--listen", &format!("127.0.0.1:{base}")])
            .args(["--devices", &opts.devices.to_string()])
            .args(["--tags", &opts.tags.to_string()]);
        let mut proc = Proc::new("simulator".into(), log);
        proc.spawn(cmd, die_with_parent)?;
        let sim = Simulator { proc, base, ports };
        let last = sim.last_port();
        Wait::new(
            format!("the simulator to listen on port {last}"),
            LISTEN_TIMEOUT,
        )
        .until_async(|| async {
            if let Err(e) = sim.check_alive() {
                return Step::Abort(e);
            }
            match tokio::net::TcpStream::connect(("127.0.0.1", last)).await {
                Ok(_) => Step::Done(()),
                Err(e) => Step::Pending(Some(e.to_string())),
            }
        })
        .await?;
        Ok(sim)
    }

    /// The first port (devices 0..247).
    pub fn port(&self) -> u16 {
        self.base
    }

    pub fn last_port(&self) -> u16 {
        self.base + (self.ports - 1) as u16
    }

    /// `127.0.0.1:PORT` of device `i`.
    pub fn endpoint_of(&self, device: u32) -> String {
        format!(
            "127.0.0.1:{}",
            u32::from(self.base) + device / UNITS_PER_PORT
        )
    }

    /// Modbus unit id of device `i`.
    pub fn unit_of(device: u32) -> u32 {
        device % UNITS_PER_PORT + 1
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn log(&self) -> &Path {
        &self.proc.log
    }

    /// An error naming the simulator and its log's tail if it has exited.
    pub fn check_alive(&self) -> Result<()> {
        self.proc.check_alive()
    }
}
