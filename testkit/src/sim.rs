//! The Modbus device simulator, `bifrost sim`, on a block of free
//! consecutive loopback ports: device `i` answers on port `base + i / U`
//! with unit id `i % U + 1`, where `U` is the units per port (247 unless
//! told).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::ports::free_port_block;
use crate::process::Proc;
use crate::wait::{Step, Wait};

/// Modbus unit ids per simulator port, unless told otherwise.
pub const UNITS_PER_PORT: u32 = 247;

/// How long the simulator may take to listen on all its ports.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Simulated devices.
    pub devices: u32,
    /// Pattern tags per device (`bifrost sim --tags`).
    pub tags: u16,
    /// Devices behind each port (`bifrost sim --units-per-port`, 1-247).
    pub units_per_port: u32,
}

impl SimOptions {
    /// `devices` devices of `tags` tags, 247 behind each port.
    pub fn new(devices: u32, tags: u16) -> SimOptions {
        SimOptions {
            devices,
            tags,
            units_per_port: UNITS_PER_PORT,
        }
    }
}

/// A running simulator; dropping it kills it.
pub struct Simulator {
    proc: Proc,
    base: u16,
    ports: u32,
    units_per_port: u32,
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
        let per_port = opts.units_per_port.clamp(1, UNITS_PER_PORT);
        let ports = opts.devices.max(1).div_ceil(per_port);
        let base = free_port_block(ports)?;
        let mut cmd = Command::new(bin);
        cmd.arg("sim")
            .args(["--listen", &format!("127.0.0.1:{base}")])
            .args(["--devices", &opts.devices.to_string()])
            .args(["--tags", &opts.tags.to_string()])
            .args(["--units-per-port", &per_port.to_string()]);
        let mut proc = Proc::new("simulator".into(), log);
        proc.spawn(cmd, die_with_parent)?;
        let sim = Simulator {
            proc,
            base,
            ports,
            units_per_port: per_port,
        };
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

    /// The first port (the first `units_per_port` devices).
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
            u32::from(self.base) + device / self.units_per_port
        )
    }

    /// Modbus unit id of device `i`.
    pub fn unit_of(&self, device: u32) -> u32 {
        device % self.units_per_port + 1
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
