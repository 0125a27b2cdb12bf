//! A Modbus TCP device simulator: many devices, cheap enough for ten thousand.
//!
//! This is what `bifrost sim --listen HOST:PORT --devices N [--tags M]` runs,
//! and what the demo and the polling benchmark poll.
//!
//! # Layout
//!
//! Unit ids are limited to 1-247, so devices are spread over ports: device `i`
//! (0-based) is served at port `PORT + i / 247` with unit id `i % 247 + 1`.
//! 10,000 devices take 41 consecutive ports. A request for a unit id with no
//! device behind it (0, 248-255, or past the last device) gets exception 11
//! (gateway target device failed to respond), as from a real gateway.
//!
//! Every device has the same holding-register map:
//!
//! | holding registers | what                                                         |
//! |-------------------|--------------------------------------------------------------|
//! | 0-1               | COUNTER, u32, big-endian words (ABCD)                        |
//! | 2 ..              | M tags in rotation: sine (f32, 2 regs), ramp (u16), random (u16) |
//! | after the tags    | `writable` registers, read/write, initially 0                |
//!
//! The **counter** increases by exactly one on every read request that covers
//! register 0 or 1, and that response carries the new value (the first read
//! sees 1). So a poller that stores every counter reading has a gap-free
//! sequence exactly when it lost nothing, which is how the cluster's "no
//! acquired reading lost" tests are checked.
//!
//! Patterns are computed when read, from the time since the simulator
//! started, so ten thousand devices need no timers: sine has amplitude 100 and
//! period `sine_period` with a phase per device and tag; ramp counts 0-999 at
//! ten steps a second; random is uniform in 0-999 on every read. Coils
//! `0..writable` are read/write. Tag and counter registers are read-only
//! (exception 2 on write); there are no discrete inputs or input registers
//! (exception 2).
//!
//! # Implementation
//!
//! The server is hand-rolled on the MBAP frame rather than built on
//! tokio-modbus's `server` feature, for three reasons: its accept loop returns
//! on the first accept error (a full file table, `EMFILE`, is likely at ten
//! thousand connections) and cancels every open connection with it; each of
//! its connections carries two 8 KiB codec buffers; and its request decoder
//! computes `quantity * 2` in `u16`, which a malformed frame can overflow.
//! Here a connection is one task with a 512-byte buffer, device state is one
//! shared table of atomics (no task or thread per device), and a malformed
//! frame closes only its own connection. The client side of every test still
//! goes through tokio-modbus and pymodbus.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::DataType;

/// Most devices per port (the default): Modbus unit ids 1-247.
pub const UNITS_PER_PORT: u32 = 247;

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Number of devices, at least 1.
    pub devices: u32,
    /// Pattern tags per device (sine, ramp, random in rotation).
    pub tags: u16,
    /// Writable holding registers (after the tags) and coils per device.
    pub writable: u16,
    /// Period of the sine tags.
    pub sine_period: Duration,
    /// Devices (unit ids 1..=N) behind each port, 1-247: a port is a
    /// gateway with this many units.
    pub units_per_port: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            devices: 1,
            tags: 10,
            writable: 16,
            sine_period: Duration::from_secs(60),
            units_per_port: UNITS_PER_PORT,
        }
    }
}

/// The pattern a simulated tag follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Sine,
    Ramp,
    Random,
}

impl Pattern {
    fn of(tag: u16) -> Pattern {
        match tag % 3 {
            0 => Pattern::Sine,
            1 => Pattern::Ramp,
            _ => Pattern::Random,
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            Pattern::Sine => DataType::F32,
            Pattern::Ramp | Pattern::Random => DataType::U16,
        }
    }

    fn registers(self) -> u16 {
        if self == Pattern::Sine {
            2
        } else {
            1
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Sine => "sine",
            Pattern::Ramp => "ramp",
            Pattern::Random => "random",
        }
    }
}

/// One simulated tag, as a tag would be configured to read it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimTag {
    /// `sine0`, `ramp1`, `random2`, ...
    pub name: String,
    /// `hr:N`, zero-based; byte and word order are big (ABCD).
    pub address: String,
    pub data_type: DataType,
    pub pattern: Pattern,
}

/// Where one simulated device is and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct SimDevice {
    /// 0-based device index.
    pub index: u32,
    /// `sim00042`: stable, sortable.
    pub name: String,
    /// `HOST:PORT` for protocol `modbus-tcp`.
    pub endpoint: String,
    pub unit: u8,
    /// Address of the u32 counter (`hr:0`).
    pub counter: String,
    pub tags: Vec<SimTag>,
    /// First writable holding register; `writable` of them follow.
    pub writable_start: u16,
    pub writable: u16,
}

/// Register map shared by all devices.
#[derive(Debug)]
struct Map {
    /// Start register of each tag.
    tag_start: Vec<u16>,
    /// One past the last tag register.
    writable_start: u16,
    /// One past the last holding register.
    hr_end: u32,
}

impl Map {
    fn new(cfg: &SimConfig) -> io::Result<Map> {
        let mut at: u32 = 2;
        let mut tag_start = Vec::with_capacity(cfg.tags as usize);
        for k in 0..cfg.tags {
            tag_start.push(at as u16);
            at += Pattern::of(k).registers() as u32;
        }
        let hr_end = at + cfg.writable as u32;
        if hr_end > 65_536 {
            return Err(invalid(format!(
                "{} tags and {} writable registers do not fit 65536 holding registers",
                cfg.tags, cfg.writable
            )));
        }
        Ok(Map {
            tag_start,
            writable_start: at as u16,
            hr_end,
        })
    }

    /// The tag covering register `addr` in the tag area, and the word within it.
    fn tag_at(&self, addr: u16) -> (u16, u16) {
        let k = self.tag_start.partition_point(|&s| s <= addr) - 1;
        (k as u16, addr - self.tag_start[k])
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check(cfg: &SimConfig, base: SocketAddr) -> io::Result<u32> {
    if cfg.devices == 0 {
        return Err(invalid("the simulator needs at least one device".into()));
    }
    if cfg.sine_period.is_zero() {
        return Err(invalid("sine period must be more than 0".into()));
    }
    if !(1..=UNITS_PER_PORT).contains(&cfg.units_per_port) {
        return Err(invalid(format!(
            "{} units per port: Modbus unit ids are 1-{UNITS_PER_PORT}",
            cfg.units_per_port
        )));
    }
    let ports = cfg.devices.div_ceil(cfg.units_per_port);
    if base.port() != 0 && base.port() as u32 + ports - 1 > 65_535 {
        return Err(invalid(format!(
            "{} devices need {ports} ports from {}, past 65535",
            cfg.devices,
            base.port()
        )));
    }
    Ok(ports)
}

/// The devices `serve(base, cfg, ..)` simulates: endpoint, unit id, counter
/// and tag addresses. An unspecified listen address (`0.0.0.0`, `::`) is
/// reported as loopback, the address a local poller would dial.
pub fn device_layout(base: SocketAddr, cfg: &SimConfig) -> Vec<SimDevice> {
    let Ok(map) = Map::new(cfg) else {
        return Vec::new();
    };
    let ip = match base.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let tags: Vec<SimTag> = (0..cfg.tags)
        .map(|k| {
            let p = Pattern::of(k);
            SimTag {
                name: format!("{}{k}", p.name()),
                address: format!("hr:{}", map.tag_start[k as usize]),
                data_type: p.data_type(),
                pattern: p,
            }
        })
        .collect();
    let per_port = cfg.units_per_port.max(1);
    (0..cfg.devices)
        .map(|i| SimDevice {
            index: i,
            name: format!("sim{i:05}"),
            endpoint: SocketAddr::new(ip, base.port().wrapping_add((i / per_port) as u16))
                .to_string(),
            unit: (i % per_port + 1) as u8,
            counter: "hr:0".into(),
            tags: tags.clone(),
            writable_start: map.writable_start,
            writable: cfg.writable,
        })
        .collect()
}

/// Per-device mutable state.
#[derive(Debug)]
struct Device {
    counter: AtomicU32,
    registers: Box<[AtomicU16]>,
    coils: Box<[AtomicBool]>,
}

/// Everything the connections share.
#[derive(Debug)]
struct State {
    cfg: SimConfig,
    map: Map,
    started: Instant,
    devices: Vec<Device>,
}

// Exception codes.
const ILLEGAL_FUNCTION: u8 = 1;
const ILLEGAL_ADDRESS: u8 = 2;
const ILLEGAL_VALUE: u8 = 3;
const TARGET_FAILED: u8 = 11;

impl State {
    fn new(cfg: SimConfig) -> io::Result<State> {
        let map = Map::new(&cfg)?;
        let devices = (0..cfg.devices)
            .map(|_| Device {
                counter: AtomicU32::new(0),
                registers: (0..cfg.writable).map(|_| AtomicU16::new(0)).collect(),
                coils: (0..cfg.writable).map(|_| AtomicBool::new(false)).collect(),
            })
            .collect();
        Ok(State {
            cfg,
            map,
            started: Instant::now(),
            devices,
        })
    }

    /// Answers one request PDU for `unit` on the `port`-th port, appending the
    /// response PDU to `out`.
    fn handle(&self, port: u32, unit: u8, pdu: &[u8], out: &mut Vec<u8>) {
        let fc = pdu.first().copied().unwrap_or(0);
        if let Err(code) = self.answer(port, unit, pdu, out) {
            out.push(fc | 0x80);
            out.push(code);
        }
    }

    fn answer(&self, port: u32, unit: u8, pdu: &[u8], out: &mut Vec<u8>) -> Result<(), u8> {
        let per_port = self.cfg.units_per_port;
        if unit == 0 || unit as u32 > per_port {
            return Err(TARGET_FAILED);
        }
        let index = port as u64 * per_port as u64 + unit as u64 - 1;
        if index >= self.devices.len() as u64 {
            return Err(TARGET_FAILED);
        }
        let dev = &self.devices[index as usize];
        let fc = *pdu.first().ok_or(ILLEGAL_FUNCTION)?;
        let u16_at = |i: usize| -> Result<u16, u8> {
            pdu.get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or(ILLEGAL_VALUE)
        };
        let writable = self.cfg.writable as u32;
        let wstart = self.map.writable_start as u32;
        match fc {
            0x01 => {
                let (addr, qty) = (u16_at(1)? as u32, u16_at(3)? as u32);
                if pdu.len() != 5 || !(1..=2000).contains(&qty) {
                    return Err(ILLEGAL_VALUE);
                }
                if addr + qty > writable {
                    return Err(ILLEGAL_ADDRESS);
                }
                let bytes = qty.div_ceil(8) as usize;
                out.push(fc);
                out.push(bytes as u8);
                let first = out.len();
                out.resize(first + bytes, 0);
                for i in 0..qty {
                    if dev.coils[(addr + i) as usize].load(Ordering::Relaxed) {
                        out[first + (i / 8) as usize] |= 1 << (i % 8);
                    }
                }
            }
            0x03 => {
                let (addr, qty) = (u16_at(1)? as u32, u16_at(3)? as u32);
                if pdu.len() != 5 || !(1..=125).contains(&qty) {
                    return Err(ILLEGAL_VALUE);
                }
                if addr + qty > self.map.hr_end {
                    return Err(ILLEGAL_ADDRESS);
                }
                out.push(fc);
                out.push((qty * 2) as u8);
                let counter = if addr < 2 {
                    let v = dev.counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
                    [(v >> 16) as u16, v as u16]
                } else {
                    [0, 0]
                };
                let t = self.started.elapsed().as_secs_f64();
                for a in addr..addr + qty {
                    let w = if a < 2 {
                        counter[a as usize]
                    } else if a < wstart {
                        self.tag_word(index as u32, a as u16, t)
                    } else {
                        dev.registers[(a - wstart) as usize].load(Ordering::Relaxed)
                    };
                    out.extend_from_slice(&w.to_be_bytes());
                }
            }
            0x05 => {
                let (addr, value) = (u16_at(1)? as u32, u16_at(3)?);
                if pdu.len() != 5 || !(value == 0xFF00 || value == 0) {
                    return Err(ILLEGAL_VALUE);
                }
                if addr >= writable {
                    return Err(ILLEGAL_ADDRESS);
                }
                dev.coils[addr as usize].store(value == 0xFF00, Ordering::Relaxed);
                out.extend_from_slice(&pdu[..5]);
            }
            0x06 => {
                let (addr, value) = (u16_at(1)? as u32, u16_at(3)?);
                if pdu.len() != 5 {
                    return Err(ILLEGAL_VALUE);
                }
                if addr < wstart || addr >= wstart + writable {
                    return Err(ILLEGAL_ADDRESS);
                }
                dev.registers[(addr - wstart) as usize].store(value, Ordering::Relaxed);
                out.extend_from_slice(&pdu[..5]);
            }
            0x0F => {
                let (addr, qty) = (u16_at(1)? as u32, u16_at(3)? as u32);
                let bytes = *pdu.get(5).ok_or(ILLEGAL_VALUE)? as usize;
                if !(1..=1968).contains(&qty)
                    || bytes != qty.div_ceil(8) as usize
                    || pdu.len() != 6 + bytes
                {
                    return Err(ILLEGAL_VALUE);
                }
                if addr + qty > writable {
                    return Err(ILLEGAL_ADDRESS);
                }
                for i in 0..qty {
                    let on = pdu[6 + (i / 8) as usize] >> (i % 8) & 1 == 1;
                    dev.coils[(addr + i) as usize].store(on, Ordering::Relaxed);
                }
                out.extend_from_slice(&pdu[..5]);
            }
            0x10 => {
                let (addr, qty) = (u16_at(1)? as u32, u16_at(3)? as u32);
                let bytes = *pdu.get(5).ok_or(ILLEGAL_VALUE)? as usize;
                if !(1..=123).contains(&qty) || bytes != qty as usize * 2 || pdu.len() != 6 + bytes
                {
                    return Err(ILLEGAL_VALUE);
                }
                if addr < wstart || addr + qty > wstart + writable {
                    return Err(ILLEGAL_ADDRESS);
                }
                for i in 0..qty as usize {
                    let v = u16::from_be_bytes([pdu[6 + 2 * i], pdu[7 + 2 * i]]);
                    dev.registers[addr as usize - wstart as usize + i].store(v, Ordering::Relaxed);
                }
                out.extend_from_slice(&pdu[..5]);
            }
            0x02 | 0x04 => return Err(ILLEGAL_ADDRESS),
            _ => return Err(ILLEGAL_FUNCTION),
        }
        Ok(())
    }

    /// A word of a pattern tag at `t` seconds.
    fn tag_word(&self, device: u32, addr: u16, t: f64) -> u16 {
        let (k, word) = self.map.tag_at(addr);
        match Pattern::of(k) {
            Pattern::Sine => {
                let phase = ((device as u64 * 37 + k as u64 * 11) % 360) as f64 / 360.0;
                let x = t / self.cfg.sine_period.as_secs_f64() + phase;
                let v = (100.0 * (std::f64::consts::TAU * x).sin()) as f32;
                let bits = v.to_bits();
                if word == 0 {
                    (bits >> 16) as u16
                } else {
                    bits as u16
                }
            }
            Pattern::Ramp => {
                let offset = device as u64 * 13 + k as u64 * 101;
                (((t * 10.0) as u64 + offset) % 1000) as u16
            }
            Pattern::Random => rand::random_range(0..1000),
        }
    }
}

/// Raises the soft open-file limit to the hard limit (each simulated device's
/// poller holds a socket). Returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    // rlim_t is u64 on Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    Ok(lim.rlim_cur as u64)
}

/// A bound simulator, not yet serving.
#[derive(Debug)]
pub struct SimServer {
    listeners: Vec<TcpListener>,
    state: Arc<State>,
}

impl SimServer {
    /// Binds the listeners: one port for every 247 devices, from `base`.
    /// With port 0 the first port is chosen by the system and the others
    /// follow it (retried from another first port when one of them is taken).
    pub async fn bind(base: SocketAddr, cfg: SimConfig) -> io::Result<SimServer> {
        let ports = check(&cfg, base)?;
        if let Err(e) = raise_fd_limit() {
            tracing::warn!(error = %e, "sim: cannot raise the open-file limit");
        }
        let state = Arc::new(State::new(cfg)?);
        // With port 0 the system picks the first port; if one of the ports
        // after it is taken, try again from another first port.
        let attempts = if base.port() == 0 { 20 } else { 1 };
        let mut last_err = None;
        for _ in 0..attempts {
            match bind_ports(base, ports).await {
                Ok(listeners) => return Ok(SimServer { listeners, state }),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// The first port's address (device 0's endpoint).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0]
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The devices served, as [`device_layout`] gives them.
    pub fn layout(&self) -> Vec<SimDevice> {
        device_layout(self.local_addr(), &self.state.cfg)
    }

    /// Serves until `shutdown` completes; then closes every connection.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut accepts = tokio::task::JoinSet::new();
        for (port, listener) in self.listeners.into_iter().enumerate() {
            let state = self.state.clone();
            let stop = stop_rx.clone();
            accepts.spawn(accept_loop(listener, port as u32, state, stop));
        }
        tracing::info!(devices = self.state.cfg.devices, "sim: serving");
        shutdown.await;
        let _ = stop_tx.send(true);
        while accepts.join_next().await.is_some() {}
        Ok(())
    }
}

/// Binds `ports` consecutive ports from `base` (the first may be port 0).
async fn bind_ports(base: SocketAddr, ports: u32) -> io::Result<Vec<TcpListener>> {
    let first = TcpListener::bind(base).await?;
    let first_port = first.local_addr()?.port();
    if first_port as u32 + ports - 1 > 65_535 {
        return Err(invalid(format!(
            "{ports} ports from {first_port} run past 65535"
        )));
    }
    let mut listeners = vec![first];
    for p in 1..ports {
        let addr = SocketAddr::new(base.ip(), first_port + p as u16);
        listeners.push(
            TcpListener::bind(addr).await.map_err(|e| {
                io::Error::new(e.kind(), format!("sim: cannot listen on {addr}: {e}"))
            })?,
        );
    }
    Ok(listeners)
}

/// Binds and serves until `shutdown` completes. See [`device_layout`] for
/// where each device is.
pub async fn serve(
    base: SocketAddr,
    cfg: SimConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    SimServer::bind(base, cfg).await?.run(shutdown).await
}

async fn accept_loop(
    listener: TcpListener,
    port: u32,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, port, state.clone(), stop.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: keep the open connections, retry soon.
                    tracing::warn!(error = %e, "sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    port: u32,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    if *stop.borrow() {
        return;
    }
    tokio::select! {
        _ = stop.changed() => {}
        r = frames(&mut stream, port, &state) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "sim: connection closed");
            }
        }
    }
}

/// Reads MBAP frames and answers them until the peer closes or sends
/// something that is not Modbus TCP.
async fn frames(stream: &mut TcpStream, port: u32, state: &State) -> io::Result<()> {
    let (rd, mut wr) = stream.split();
    let mut rd = BufReader::with_capacity(512, rd);
    let mut header = [0u8; 7];
    let mut pdu = [0u8; 253];
    let mut out: Vec<u8> = Vec::with_capacity(260);
    loop {
        match rd.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let protocol = u16::from_be_bytes([header[2], header[3]]);
        let len = u16::from_be_bytes([header[4], header[5]]) as usize;
        if protocol != 0 || !(2..=254).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a Modbus TCP frame (protocol {protocol}, length {len})"),
            ));
        }
        let pdu = &mut pdu[..len - 1];
        rd.read_exact(pdu).await?;
        out.clear();
        out.extend_from_slice(&header[..4]);
        out.extend_from_slice(&[0, 0, header[6]]);
        state.handle(port, header[6], pdu, &mut out);
        let rsp_len = (out.len() - 6) as u16;
        out[4..6].copy_from_slice(&rsp_len.to_be_bytes());
        wr.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(devices: u32, tags: u16) -> State {
        State::new(SimConfig {
            devices,
            tags,
            ..Default::default()
        })
        .unwrap()
    }

    fn ask(s: &State, port: u32, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        s.handle(port, unit, pdu, &mut out);
        out
    }

    fn read_hr(s: &State, unit: u8, addr: u16, qty: u16) -> Vec<u8> {
        let mut pdu = vec![3];
        pdu.extend_from_slice(&addr.to_be_bytes());
        pdu.extend_from_slice(&qty.to_be_bytes());
        ask(s, 0, unit, &pdu)
    }

    #[test]
    fn layout_spreads_devices_over_ports_by_247_units() {
        let base: SocketAddr = "0.0.0.0:15000".parse().unwrap();
        let l = device_layout(
            base,
            &SimConfig {
                devices: 10_000,
                tags: 10,
                ..Default::default()
            },
        );
        assert_eq!(l.len(), 10_000);
        assert_eq!((l[0].endpoint.as_str(), l[0].unit), ("127.0.0.1:15000", 1));
        assert_eq!(
            (l[246].endpoint.as_str(), l[246].unit),
            ("127.0.0.1:15000", 247)
        );
        assert_eq!(
            (l[247].endpoint.as_str(), l[247].unit),
            ("127.0.0.1:15001", 1)
        );
        assert_eq!(
            (l[9999].endpoint.as_str(), l[9999].unit),
            ("127.0.0.1:15040", (9999 % 247 + 1) as u8)
        );
        assert_eq!(l[0].counter, "hr:0");
        let tags: Vec<_> = l[0]
            .tags
            .iter()
            .map(|t| (t.name.as_str(), t.address.as_str(), t.data_type))
            .collect();
        assert_eq!(
            &tags[..4],
            &[
                ("sine0", "hr:2", DataType::F32),
                ("ramp1", "hr:4", DataType::U16),
                ("random2", "hr:5", DataType::U16),
                ("sine3", "hr:6", DataType::F32),
            ]
        );
        // 10 tags: 4 sines (8 regs) + 6 singles = 14 registers from 2.
        assert_eq!(l[0].writable_start, 16);
    }

    #[test]
    fn every_layout_address_is_a_valid_tag_address() {
        for d in device_layout("127.0.0.1:502".parse().unwrap(), &SimConfig::default()) {
            crate::modbus::validate_address(&d.counter, DataType::U32, 0).unwrap();
            for t in d.tags {
                crate::modbus::validate_address(&t.address, t.data_type, 0).unwrap();
            }
        }
    }

    #[test]
    fn counter_increases_by_one_per_read_that_covers_it() {
        let s = state(2, 3);
        assert_eq!(read_hr(&s, 1, 0, 2), vec![3, 4, 0, 0, 0, 1]);
        assert_eq!(
            read_hr(&s, 1, 1, 1),
            vec![3, 2, 0, 2],
            "covering only the low word counts"
        );
        assert_eq!(
            read_hr(&s, 1, 0, 6)[2..6],
            [0, 0, 0, 3],
            "a block read counts once"
        );
        read_hr(&s, 1, 2, 3);
        assert_eq!(
            read_hr(&s, 1, 0, 2)[2..6],
            [0, 0, 0, 4],
            "reads not covering it do not count"
        );
        assert_eq!(
            read_hr(&s, 2, 0, 2)[2..6],
            [0, 0, 0, 1],
            "each device has its own counter"
        );
    }

    #[test]
    fn sine_is_a_plausible_f32_and_ramp_and_random_stay_in_range() {
        let s = state(1, 3);
        let r = read_hr(&s, 1, 2, 4);
        let sine = f32::from_be_bytes([r[2], r[3], r[4], r[5]]);
        assert!((-100.0..=100.0).contains(&sine), "{sine}");
        let ramp = u16::from_be_bytes([r[6], r[7]]);
        let random = u16::from_be_bytes([r[8], r[9]]);
        assert!(ramp < 1000 && random < 1000);
    }

    #[test]
    fn writable_registers_and_coils_take_writes() {
        let s = state(1, 3); // tags 2..6, writable 6..22
        assert_eq!(
            ask(&s, 0, 1, &[6, 0, 6, 0x12, 0x34]),
            vec![6, 0, 6, 0x12, 0x34]
        );
        assert_eq!(read_hr(&s, 1, 6, 1), vec![3, 2, 0x12, 0x34]);
        assert_eq!(
            ask(&s, 0, 1, &[0x10, 0, 7, 0, 2, 4, 0xAB, 0xCD, 0xEF, 0x01]),
            vec![0x10, 0, 7, 0, 2]
        );
        assert_eq!(read_hr(&s, 1, 7, 2), vec![3, 4, 0xAB, 0xCD, 0xEF, 0x01]);
        assert_eq!(ask(&s, 0, 1, &[5, 0, 3, 0xFF, 0]), vec![5, 0, 3, 0xFF, 0]);
        assert_eq!(ask(&s, 0, 1, &[1, 0, 0, 0, 5]), vec![1, 1, 0b01000]);
        assert_eq!(
            ask(&s, 0, 1, &[0x0F, 0, 0, 0, 3, 1, 0b101]),
            vec![0x0F, 0, 0, 0, 3]
        );
        assert_eq!(ask(&s, 0, 1, &[1, 0, 0, 0, 5]), vec![1, 1, 0b01101]);
    }

    #[test]
    fn bad_requests_get_the_right_exceptions() {
        let s = state(2, 3);
        assert_eq!(
            ask(&s, 0, 1, &[6, 0, 0, 0, 1]),
            vec![0x86, 2],
            "counter is read-only"
        );
        assert_eq!(
            ask(&s, 0, 1, &[6, 0, 3, 0, 1]),
            vec![0x86, 2],
            "tags are read-only"
        );
        assert_eq!(read_hr(&s, 1, 20, 5), vec![0x83, 2], "past the end");
        assert_eq!(read_hr(&s, 1, 0, 126), vec![0x83, 3], "more than 125");
        assert_eq!(read_hr(&s, 1, 0, 0), vec![0x83, 3]);
        assert_eq!(ask(&s, 0, 1, &[4, 0, 0, 0, 1]), vec![0x84, 2]);
        assert_eq!(ask(&s, 0, 1, &[0x2B, 0x0E, 1, 0]), vec![0xAB, 1]);
        assert_eq!(ask(&s, 0, 1, &[3, 0]), vec![0x83, 3], "truncated");
        assert_eq!(
            ask(&s, 0, 3, &[3, 0, 0, 0, 1]),
            vec![0x83, 11],
            "no device 3"
        );
        assert_eq!(ask(&s, 0, 0, &[3, 0, 0, 0, 1]), vec![0x83, 11], "unit 0");
        assert_eq!(
            ask(&s, 1, 1, &[3, 0, 0, 0, 1]),
            vec![0x83, 11],
            "no second port"
        );
        assert_eq!(
            ask(&s, 0, 1, &[0x10, 0, 6, 0xFF, 0xFF, 0xFE]),
            vec![0x90, 3],
            "huge quantity"
        );
        assert_eq!(ask(&s, 0, 1, &[]), vec![0x80, 1]);
    }

    #[test]
    fn configs_that_cannot_be_served_are_refused() {
        let base: SocketAddr = "127.0.0.1:65530".parse().unwrap();
        assert!(check(
            &SimConfig {
                devices: 0,
                ..Default::default()
            },
            base
        )
        .is_err());
        assert!(check(
            &SimConfig {
                devices: 247 * 7,
                ..Default::default()
            },
            base
        )
        .is_err());
        assert!(check(
            &SimConfig {
                devices: 247 * 6,
                ..Default::default()
            },
            base
        )
        .is_ok());
        assert!(State::new(SimConfig {
            tags: 0,
            writable: 65535,
            ..Default::default()
        })
        .is_err());
    }

    #[tokio::test]
    async fn a_malformed_frame_closes_only_its_connection() {
        let server = SimServer::bind("127.0.0.1:0".parse().unwrap(), SimConfig::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));
        let mut bad = TcpStream::connect(addr).await.unwrap();
        bad.write_all(&[0, 1, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1])
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            bad.read(&mut buf).await.unwrap(),
            0,
            "closed without an answer"
        );
        let mut good = TcpStream::connect(addr).await.unwrap();
        good.write_all(&[0, 9, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2])
            .await
            .unwrap();
        let mut rsp = [0u8; 13];
        good.read_exact(&mut rsp).await.unwrap();
        assert_eq!(rsp, [0, 9, 0, 0, 0, 7, 1, 3, 4, 0, 0, 0, 1]);
        stop_tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert_eq!(
            good.read(&mut buf).await.unwrap(),
            0,
            "shutdown closes connections"
        );
    }
}
