//! Modbus TCP and RTU: the [`ModbusDriver`], with its pure parts in
//! submodules: [`address`] (notation and type checks), [`decode`] (registers
//! to values and back) and [`plan`] (block reads).
//!
//! The transport is tokio-modbus (`tcp` and `rtu` features; RTU over a serial
//! port opened with tokio-serial). The driver adds what tokio-modbus leaves to
//! its user, each for a reason found on real plant floors:
//!
//! * **Per-request timeout, then reconnect.** tokio-modbus has no timeout, and
//!   after one a late reply is still on its way: the next request would read
//!   it and fail the transaction-id check (TCP) or mis-frame (RTU). So after
//!   any timeout or protocol error the connection is dropped and reopened.
//! * **Retries** (`retries` more attempts per request) for timeouts and
//!   transport errors; never for device exceptions, which are answers.
//! * **Backoff.** When connecting fails, the next attempt waits `backoff_min`,
//!   doubling (with ±20% jitter, so a thousand devices of a restarted gateway
//!   do not reconnect in lockstep) up to `backoff_max`. Until then a read
//!   returns Bad `not_connected` at once: a dead device costs its poller
//!   nothing.
//! * **Size limits and block reads** ([`plan`]): tokio-modbus sends whatever
//!   quantity it is given.
//! * **No panics on odd devices.** Requests go through `Client::call` and the
//!   response length is checked here: tokio-modbus's typed readers only
//!   `debug_assert!` it.
//! * **One connection per address.** Devices (unit ids) at one `host:port`,
//!   a gateway to an RTU line or a multi-unit server, share one TCP
//!   connection and take turns on it, as devices on one RTU line share the
//!   port; many gateways accept only a few connections.
//! * **Exception isolation.** When a block read covering several tags gets an
//!   exception, each of its tags is read alone, so only the tag that names a
//!   missing register goes Bad (`device_exception:2`), not its neighbours.
//!
//! Quality reasons: `timeout`, `comm_failure` (refused, reset, malformed or
//! mismatched response), `not_connected` (in backoff), `device_exception:<code>`,
//! `config_error` (bad address, type, scale, or a tag larger than the
//! device's request limit), and Uncertain `out_of_range` when a scaled tag's
//! raw value is outside the scale's raw range.
//!
//! # Endpoints
//!
//! * `modbus-tcp`: `HOST:PORT`, `HOST` (port 502), `[IPv6]:PORT`; a leading
//!   `tcp://` is accepted. The host is resolved at each connect.
//! * `modbus-rtu`: `PATH[:BAUD[:FRAMING]]`, e.g. `/dev/ttyUSB0:19200:8E1`.
//!   FRAMING is data bits (5-8), parity (`N`, `E`, `O`) and stop bits (1, 2).
//!   Defaults: 9600 baud, 8N1 (the Modbus spec's default is 8E1; many devices
//!   ship with 8N1, so say which). Unit ids 1-247 (0 is broadcast and never
//!   answers).
//!
//! Several RTU devices usually share one RS-485 line. Drivers for the same
//! serial path share one open port (a process-wide registry), and each
//! driver holds the line for the whole of its poll, so requests never
//! interleave. Their serial settings must agree.

pub mod address;
pub mod decode;
pub mod identify;
mod pipe;
pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use bifrost_model::now_us;
use tokio::sync::Mutex;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};

use crate::reconnect::Reconnect;
use crate::scaling::{prepare_write, to_engineering};
use crate::shared::Registry;
use crate::{BrowseItem, DataType, Driver, Error, Health, Quality, Result, Sample, TagSpec, Value};
pub use address::{validate as validate_address, validate_tag, ParsedAddress, Table};
use decode::{decode, encode};
use plan::{Plan, PlanLimits, ReadRequest};

/// Per-device options.
#[derive(Clone, Debug, PartialEq)]
pub struct ModbusOptions {
    /// Most unused registers (bits, for coils/discrete inputs) read to join
    /// two tags into one request. 0 for devices with holes in their map.
    pub max_gap: u16,
    /// Largest register read, 1-125.
    pub max_registers: u16,
    /// Largest coil/discrete-input read, 1-2000.
    pub max_bits: u16,
    /// How long one request (or connect) may take.
    pub timeout: Duration,
    /// Extra attempts after a timeout or transport error.
    pub retries: u32,
    /// First wait after a failed connect.
    pub backoff_min: Duration,
    /// Longest wait between connect attempts.
    pub backoff_max: Duration,
    /// Requests in flight at once on a Modbus TCP connection, 1-16: 1 (one
    /// at a time) unless the server is known to take more. Devices behind
    /// one address share its connection, opened with the first one's.
    pub pipeline: u16,
}

impl Default for ModbusOptions {
    fn default() -> Self {
        ModbusOptions {
            max_gap: 10,
            max_registers: plan::MAX_REGISTERS,
            max_bits: plan::MAX_BITS,
            timeout: Duration::from_secs(1),
            retries: 1,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            pipeline: 1,
        }
    }
}

impl ModbusOptions {
    /// What is wrong with these options, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=plan::MAX_REGISTERS).contains(&self.max_registers) {
            return Err(format!(
                "max_registers {} must be 1-125",
                self.max_registers
            ));
        }
        if !(1..=plan::MAX_BITS).contains(&self.max_bits) {
            return Err(format!("max_bits {} must be 1-2000", self.max_bits));
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0".into());
        }
        if !(1..=MAX_PIPELINE).contains(&self.pipeline) {
            return Err(format!(
                "pipeline {} must be 1-{MAX_PIPELINE}",
                self.pipeline
            ));
        }
        Ok(())
    }

    fn limits(&self) -> PlanLimits {
        PlanLimits {
            max_registers: self.max_registers,
            max_bits: self.max_bits,
            max_gap: self.max_gap,
        }
    }
}

/// The most requests in flight on one Modbus TCP connection.
pub const MAX_PIPELINE: u16 = 16;

/// Serial line settings of an RTU endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialSettings {
    pub path: String,
    pub baud: u32,
    /// 5-8.
    pub data_bits: u8,
    /// `N`, `E` or `O`.
    pub parity: char,
    /// 1 or 2.
    pub stop_bits: u8,
}

impl std::fmt::Display for SerialSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}{}{}",
            self.path, self.baud, self.data_bits, self.parity, self.stop_bits
        )
    }
}

/// Where a Modbus device is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Rtu(SerialSettings),
}

impl Endpoint {
    /// Parses an endpoint for protocol `modbus-tcp` or `modbus-rtu` (see the
    /// module docs for the formats).
    pub fn parse(protocol: &str, endpoint: &str) -> Result<Endpoint, String> {
        let ep = endpoint.trim();
        let err = |m: String| format!("endpoint '{endpoint}': {m}");
        if ep.is_empty() {
            return Err(err("empty endpoint".into()));
        }
        match protocol {
            "modbus-tcp" => {
                let ep = ep.strip_prefix("tcp://").unwrap_or(ep);
                let (host, port) = crate::endpoint::parse_host_port(ep, 502)?;
                Ok(Endpoint::Tcp { host, port })
            }
            "modbus-rtu" => {
                let mut rest = ep;
                let (mut data_bits, mut parity, mut stop_bits) = (8u8, 'N', 1u8);
                let mut baud = 9600u32;
                if let Some((head, last)) = rest.rsplit_once(':') {
                    if let Some(f) = parse_framing(last) {
                        (data_bits, parity, stop_bits) = f;
                        rest = head;
                    } else if last.len() == 3
                        && last.as_bytes()[0].is_ascii_digit()
                        && !last.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(err(format!(
                            "framing '{last}' must be data bits 5-8, parity N/E/O, stop bits 1-2 (e.g. 8N1)"
                        )));
                    }
                }
                if let Some((head, last)) = rest.rsplit_once(':') {
                    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
                        baud = last
                            .parse()
                            .ok()
                            .filter(|b| *b > 0)
                            .ok_or_else(|| err(format!("baud rate '{last}' is not valid")))?;
                        rest = head;
                    } else if !head.is_empty() {
                        return Err(err(format!(
                            "'{last}' is neither a baud rate nor a framing like 8N1 \
                             (format PATH[:BAUD[:FRAMING]])"
                        )));
                    }
                }
                if rest.is_empty() {
                    return Err(err("serial port path is missing".into()));
                }
                Ok(Endpoint::Rtu(SerialSettings {
                    path: rest.to_string(),
                    baud,
                    data_bits,
                    parity,
                    stop_bits,
                }))
            }
            other => Err(format!(
                "protocol '{other}' is not Modbus (expected modbus-tcp or modbus-rtu)"
            )),
        }
    }
}

fn parse_framing(s: &str) -> Option<(u8, char, u8)> {
    let b = s.as_bytes();
    if b.len() != 3 {
        return None;
    }
    let data = match b[0] {
        b'5'..=b'8' => b[0] - b'0',
        _ => return None,
    };
    let parity = match b[1].to_ascii_uppercase() {
        p @ (b'N' | b'E' | b'O') => p as char,
        _ => return None,
    };
    let stop = match b[2] {
        b'1' | b'2' => b[2] - b'0',
        _ => return None,
    };
    Some((data, parity, stop))
}

/// Checks a device's protocol, endpoint and unit id without connecting.
pub fn validate_endpoint(protocol: &str, endpoint: &str, unit: u8) -> Result<Endpoint, String> {
    let ep = Endpoint::parse(protocol, endpoint)?;
    if matches!(ep, Endpoint::Rtu(_)) && !(1..=247).contains(&unit) {
        return Err(format!(
            "unit id {unit}: RTU devices have unit ids 1-247 (0 is broadcast and never answers)"
        ));
    }
    Ok(ep)
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq)]
enum CallError {
    Timeout(String),
    Comm(String),
    NotConnected(String),
    Exception(u8),
}

impl CallError {
    fn reason(&self) -> String {
        match self {
            CallError::Timeout(_) => "timeout".into(),
            CallError::Comm(_) => "comm_failure".into(),
            CallError::NotConnected(_) => "not_connected".into(),
            CallError::Exception(c) => format!("device_exception:{c}"),
        }
    }

    fn into_error(self) -> Error {
        match self {
            CallError::Timeout(m) => Error::Timeout(m),
            CallError::Comm(m) => Error::Io(m),
            CallError::NotConnected(m) => Error::NotConnected(m),
            CallError::Exception(c) => {
                Error::Rejected(format!("device_exception:{c} ({})", exception_text(c)))
            }
        }
    }
}

/// The standard meaning of a Modbus exception code.
pub fn exception_text(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "non-standard exception",
    }
}

/// A connection (TCP socket or serial port) and its reconnect state. Shared
/// between drivers on one RTU line, and between drivers of one TCP
/// `host:port`.
struct Link {
    endpoint: Endpoint,
    conn: Option<Conn>,
    reconnect: Reconnect,
    /// Requests in flight at once on a TCP connection.
    depth: usize,
}

/// An open connection: a serial line takes one request at a time, held by
/// its user for a whole poll; a TCP connection takes several, matched by
/// transaction id ([`pipe`]).
enum Conn {
    Serial(Context, crate::Counted),
    Tcp(Arc<pipe::Pipe>),
}

impl Link {
    fn new(endpoint: Endpoint, depth: usize) -> Link {
        Link {
            endpoint,
            conn: None,
            reconnect: Reconnect::default(),
            depth,
        }
    }

    fn health(&self) -> Health {
        self.reconnect.health(self.conn.is_some())
    }

    fn drop_connection(&mut self, why: &str) {
        if self.conn.take().is_some() {
            tracing::debug!(endpoint = ?self.endpoint, why, "modbus: dropping connection");
        }
        self.reconnect.lost(why);
    }

    /// Connects unless connected. Without `force`, refuses while the backoff
    /// after a failed connect has not elapsed.
    async fn ensure_connected(
        &mut self,
        opts: &ModbusOptions,
        force: bool,
    ) -> Result<(), CallError> {
        if let Some(Conn::Tcp(p)) = &self.conn {
            if let Some(why) = p.broken() {
                self.drop_connection(&why);
            }
        }
        if self.conn.is_some() {
            return Ok(());
        }
        if let Some(why) = self.reconnect.refused(force) {
            return Err(CallError::NotConnected(why));
        }
        match tokio::time::timeout(opts.timeout, open(&self.endpoint, self.depth)).await {
            Ok(Ok(conn)) => {
                self.conn = Some(conn);
                self.reconnect.connected();
                Ok(())
            }
            Ok(Err(e)) => Err(self.connect_failed(opts, CallError::Comm(format!("connect: {e}")))),
            Err(_) => Err(self.connect_failed(
                opts,
                CallError::Timeout(format!("connect: no answer within {:?}", opts.timeout)),
            )),
        }
    }

    /// The TCP connection, connecting if need be; `None` on a serial line.
    async fn pipe(
        &mut self,
        opts: &ModbusOptions,
        force: bool,
    ) -> Result<Option<Arc<pipe::Pipe>>, CallError> {
        self.ensure_connected(opts, force).await?;
        Ok(match &self.conn {
            Some(Conn::Tcp(p)) => Some(p.clone()),
            _ => None,
        })
    }

    fn connect_failed(&mut self, opts: &ModbusOptions, e: CallError) -> CallError {
        let msg = match &e {
            CallError::Timeout(m) | CallError::Comm(m) | CallError::NotConnected(m) => m.clone(),
            CallError::Exception(c) => format!("exception {c}"),
        };
        let backoff = self
            .reconnect
            .failed(opts.backoff_min, opts.backoff_max, msg.clone());
        tracing::debug!(endpoint = ?self.endpoint, error = %msg, ?backoff, "modbus: connect failed");
        e
    }

    /// One request on a serial line with timeout and retries. `force`
    /// connects even during backoff (writes: a person is waiting for the
    /// answer).
    async fn call_serial(
        &mut self,
        unit: u8,
        req: &Request<'static>,
        opts: &ModbusOptions,
        force: bool,
    ) -> Result<Response, CallError> {
        let mut attempt = 0;
        loop {
            self.ensure_connected(opts, force || attempt > 0).await?;
            let Some(Conn::Serial(ctx, _)) = self.conn.as_mut() else {
                unreachable!("a serial endpoint opens a serial line");
            };
            ctx.set_slave(Slave(unit));
            let err = match tokio::time::timeout(opts.timeout, ctx.call(req.clone())).await {
                Ok(Ok(Ok(rsp))) => return Ok(rsp),
                Ok(Ok(Err(exc))) => return Err(CallError::Exception(exception_code(exc))),
                Ok(Err(e)) => {
                    let msg = format!("{e}");
                    self.drop_connection(&msg);
                    CallError::Comm(msg)
                }
                Err(_) => {
                    let msg = format!("no answer within {:?}", opts.timeout);
                    // A late reply would mis-frame the next request.
                    self.drop_connection(&msg);
                    CallError::Timeout(msg)
                }
            };
            attempt += 1;
            if attempt > opts.retries {
                return Err(err);
            }
        }
    }
}

/// One request on the TCP connection of `link` with timeout and retries:
/// a timeout keeps the connection (a late reply is dropped by its
/// transaction id), a broken connection is reopened (once per broken
/// connection, whoever sees it first).
async fn call_tcp(
    link: &SharedLink,
    mut pipe: Arc<pipe::Pipe>,
    unit: u8,
    req: &Request<'static>,
    opts: &ModbusOptions,
) -> Result<Response, CallError> {
    let mut attempt = 0;
    loop {
        let err = match pipe.call(unit, req, opts.timeout).await {
            Ok(rsp) => return Ok(rsp),
            Err(pipe::PipeError::Exception(code)) => return Err(CallError::Exception(code)),
            Err(pipe::PipeError::Timeout) => {
                CallError::Timeout(format!("no answer within {:?}", opts.timeout))
            }
            Err(pipe::PipeError::Broken(why)) => CallError::Comm(why),
        };
        attempt += 1;
        if attempt > opts.retries {
            return Err(err);
        }
        if let CallError::Comm(_) = err {
            let mut l = link.lock().await;
            match l.pipe(opts, true).await? {
                Some(p) => pipe = p,
                None => unreachable!("a TCP endpoint opens a TCP connection"),
            }
        }
    }
}

/// A driver's hold on its link for one poll or write: the serial line,
/// locked for all of it; or the TCP connection, shared with the others.
enum Held<'a> {
    Serial(tokio::sync::MutexGuard<'a, Link>),
    Tcp(&'a SharedLink, Arc<pipe::Pipe>),
}

impl<'a> Held<'a> {
    /// Connects (unless in backoff, or `force`) and holds the link.
    async fn take(
        link: &'a SharedLink,
        opts: &ModbusOptions,
        force: bool,
    ) -> Result<Held<'a>, CallError> {
        let mut guard = link.lock().await;
        Ok(match guard.pipe(opts, force).await? {
            Some(p) => Held::Tcp(link, p),
            None => Held::Serial(guard),
        })
    }

    async fn call(
        &mut self,
        unit: u8,
        req: &Request<'static>,
        opts: &ModbusOptions,
        force: bool,
    ) -> Result<Response, CallError> {
        match self {
            Held::Serial(l) => l.call_serial(unit, req, opts, force).await,
            // Connected already (`take`); a retry reconnects regardless.
            Held::Tcp(link, p) => call_tcp(link, p.clone(), unit, req, opts).await,
        }
    }

    /// Block reads: one after another on a serial line, all in flight at
    /// once on TCP (as many as the connection's depth allows).
    async fn read_blocks(
        &mut self,
        unit: u8,
        opts: &ModbusOptions,
        blocks: &[(Table, u16, u16)],
    ) -> Vec<Result<Data, CallError>> {
        match self {
            Held::Serial(l) => {
                let mut out = Vec::with_capacity(blocks.len());
                for &(table, start, count) in blocks {
                    let req = read_request(table, start, count);
                    let r = l.call_serial(unit, &req, opts, false).await;
                    out.push(r.and_then(|rsp| response_data(rsp, count)));
                }
                out
            }
            Held::Tcp(link, p) => {
                let calls = blocks.iter().map(|&(table, start, count)| {
                    let (link, p) = (*link, p.clone());
                    async move {
                        let req = read_request(table, start, count);
                        let rsp = call_tcp(link, p, unit, &req, opts).await?;
                        response_data(rsp, count)
                    }
                });
                futures::future::join_all(calls).await
            }
        }
    }

    async fn health(&mut self) -> Health {
        match self {
            Held::Serial(l) => l.health(),
            Held::Tcp(link, _) => link.lock().await.health(),
        }
    }
}

fn exception_code(e: ExceptionCode) -> u8 {
    u8::from(e)
}

async fn open(endpoint: &Endpoint, depth: usize) -> std::io::Result<Conn> {
    match endpoint {
        Endpoint::Tcp { host, port } => {
            let mut last = None;
            for addr in tokio::net::lookup_host((host.as_str(), *port)).await? {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        return Ok(Conn::Tcp(Arc::new(pipe::Pipe::new(stream, depth))));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no address"))
            }))
        }
        Endpoint::Rtu(s) => {
            use tokio_serial::{DataBits, Parity, SerialPortBuilderExt, StopBits};
            let port = tokio_serial::new(&s.path, s.baud)
                .data_bits(match s.data_bits {
                    5 => DataBits::Five,
                    6 => DataBits::Six,
                    7 => DataBits::Seven,
                    _ => DataBits::Eight,
                })
                .parity(match s.parity {
                    'E' => Parity::Even,
                    'O' => Parity::Odd,
                    _ => Parity::None,
                })
                .stop_bits(if s.stop_bits == 2 {
                    StopBits::Two
                } else {
                    StopBits::One
                })
                .open_native_async()
                .map_err(|e| std::io::Error::other(format!("{}: {e}", s.path)))?;
            Ok(Conn::Serial(
                tokio_modbus::client::rtu::attach(port),
                crate::Counted::new(),
            ))
        }
    }
}

type SharedLink = Arc<Mutex<Link>>;

/// Open RTU lines by serial path, with the settings they were opened with.
type Lines = HashMap<String, (SerialSettings, Weak<Mutex<Link>>)>;

/// The process-wide registry of open RTU lines, so devices on one RS-485
/// line share it.
fn rtu_lines() -> &'static StdMutex<Lines> {
    static LINES: OnceLock<StdMutex<Lines>> = OnceLock::new();
    LINES.get_or_init(Default::default)
}

/// The link to the Modbus TCP server at `host:port`, shared by every
/// device (unit id) behind it, as a gateway to an RTU line or a
/// multi-unit server expects: one connection, the unit id set per
/// request, `depth` requests in flight at once (the `pipeline` option of
/// the device that opened it: 1, one at a time, unless the server is known
/// to take more). A timeout costs only its request; a broken connection
/// is reopened for all of them. Devices at different addresses keep their
/// own connections. (Measured: 10,000 simulated devices behind 41 ports
/// held 5,000 connections per node before, about 16 KB of buffers each.)
fn tcp_link(endpoint: &Endpoint, host: &str, port: u16, depth: usize) -> SharedLink {
    static SOCKETS: Registry<Mutex<Link>> = Registry::new();
    SOCKETS.shared(format!("{host}:{port}"), || {
        Mutex::new(Link::new(endpoint.clone(), depth))
    })
}

fn rtu_link(settings: &SerialSettings) -> Result<SharedLink, String> {
    let mut lines = rtu_lines().lock().unwrap_or_else(|p| p.into_inner());
    lines.retain(|_, (_, w)| w.strong_count() > 0);
    if let Some((existing, weak)) = lines.get(&settings.path) {
        if let Some(link) = weak.upgrade() {
            if existing != settings {
                return Err(format!(
                    "serial port {} is already in use as {existing}; devices on one line must \
                     use the same settings, not {settings}",
                    settings.path
                ));
            }
            return Ok(link);
        }
    }
    let link = Arc::new(Mutex::new(Link::new(Endpoint::Rtu(settings.clone()), 1)));
    lines.insert(
        settings.path.clone(),
        (settings.clone(), Arc::downgrade(&link)),
    );
    Ok(link)
}

/// How many block-read plans a driver keeps: one per distinct tag list it is
/// asked to read. A poller reading tags at several scan rates alternates
/// between a few lists (the fast tags alone, fast and slow together, ...).
const PLANS_KEPT: usize = 8;

/// What a read planned for: the tags' addresses, types and lengths.
type PlanKey = Vec<(String, DataType, u32)>;

/// Plans of the last few tag lists read, most recently used first, so an
/// unchanged list is not re-planned.
#[derive(Default)]
struct PlanCache {
    entries: Vec<(PlanKey, Plan)>,
    /// Plans made (cache misses), for tests.
    made: u64,
}

impl PlanCache {
    fn matches(key: &PlanKey, tags: &[TagSpec]) -> bool {
        key.len() == tags.len()
            && key.iter().zip(tags).all(|((a, t, l), tag)| {
                *a == tag.address && *t == tag.data_type && *l == tag.length
            })
    }

    /// The plan for `tags`, made (evicting the least recently used beyond
    /// [`PLANS_KEPT`]) when none is kept.
    fn get(&mut self, tags: &[TagSpec], limits: &PlanLimits) -> &Plan {
        match self
            .entries
            .iter()
            .position(|(k, _)| Self::matches(k, tags))
        {
            Some(i) => {
                let hit = self.entries.remove(i);
                self.entries.insert(0, hit);
            }
            None => {
                let parsed: Vec<_> = tags.iter().map(check_tag_for_read).collect();
                let key = tags
                    .iter()
                    .map(|t| (t.address.clone(), t.data_type, t.length))
                    .collect();
                self.entries.insert(0, (key, plan::plan(&parsed, limits)));
                self.entries.truncate(PLANS_KEPT);
                self.made += 1;
            }
        }
        &self.entries[0].1
    }
}

/// A Modbus TCP or RTU device.
pub struct ModbusDriver {
    link: SharedLink,
    unit: u8,
    options: ModbusOptions,
    health: Health,
    plans: PlanCache,
}

impl ModbusDriver {
    /// A driver for the device at `endpoint` (protocol `modbus-tcp` or
    /// `modbus-rtu`) with unit id `unit`. Does not connect: the first read
    /// does (or [`Driver::connect`]).
    pub fn new(
        protocol: &str,
        endpoint: &str,
        unit: u8,
        options: ModbusOptions,
    ) -> Result<ModbusDriver> {
        let ep = validate_endpoint(protocol, endpoint, unit).map_err(Error::Config)?;
        options
            .validate()
            .map_err(|e| Error::Config(format!("modbus options: {e}")))?;
        let link = match &ep {
            Endpoint::Tcp { host, port } => tcp_link(&ep, host, *port, options.pipeline as usize),
            Endpoint::Rtu(s) => rtu_link(s).map_err(Error::Config)?,
        };
        Ok(ModbusDriver {
            link,
            unit,
            options,
            health: Health::Connecting,
            plans: PlanCache::default(),
        })
    }

    /// Shorthand for `new("modbus-tcp", ...)`.
    pub fn tcp(endpoint: &str, unit: u8, options: ModbusOptions) -> Result<ModbusDriver> {
        ModbusDriver::new("modbus-tcp", endpoint, unit, options)
    }

    /// Shorthand for `new("modbus-rtu", ...)`.
    pub fn rtu(endpoint: &str, unit: u8, options: ModbusOptions) -> Result<ModbusDriver> {
        ModbusDriver::new("modbus-rtu", endpoint, unit, options)
    }

    pub fn options(&self) -> &ModbusOptions {
        &self.options
    }
}

fn check_tag_for_read(tag: &TagSpec) -> Result<ParsedAddress, String> {
    let a = validate_address(&tag.address, tag.data_type, tag.length)?;
    if let Some(s) = &tag.scale {
        crate::scaling::validate_scale(s)?;
    }
    Ok(a)
}

fn bad(reason: impl Into<String>, ts: i64) -> Sample {
    Sample {
        value: None,
        quality: Quality::bad(reason),
        source_ts_us: Some(ts),
    }
}

/// Register or bit data of one response.
enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

fn read_request(table: Table, start: u16, count: u16) -> Request<'static> {
    match table {
        Table::Coil => Request::ReadCoils(start, count),
        Table::DiscreteInput => Request::ReadDiscreteInputs(start, count),
        Table::InputRegister => Request::ReadInputRegisters(start, count),
        Table::HoldingRegister => Request::ReadHoldingRegisters(start, count),
    }
}

/// Checks a read response against its request.
fn response_data(rsp: Response, count: u16) -> Result<Data, CallError> {
    let n = count as usize;
    match rsp {
        Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) => {
            if w.len() != n {
                return Err(CallError::Comm(format!(
                    "device answered {} registers for a read of {n}",
                    w.len()
                )));
            }
            Ok(Data::Words(w))
        }
        Response::ReadCoils(mut b) | Response::ReadDiscreteInputs(mut b) => {
            if b.len() < n {
                return Err(CallError::Comm(format!(
                    "device answered {} bits for a read of {n}",
                    b.len()
                )));
            }
            b.truncate(n);
            Ok(Data::Bits(b))
        }
        other => Err(CallError::Comm(format!("unexpected response {other:?}"))),
    }
}

async fn read_block(
    held: &mut Held<'_>,
    unit: u8,
    opts: &ModbusOptions,
    table: Table,
    start: u16,
    count: u16,
) -> Result<Data, CallError> {
    let rsp = held
        .call(unit, &read_request(table, start, count), opts, false)
        .await?;
    response_data(rsp, count)
}

/// Decodes and scales one tag from its request's data.
fn tag_sample(
    tag: &TagSpec,
    data: &Data,
    index: u16,
    count: u16,
    bit: Option<u8>,
    ts: i64,
) -> Sample {
    let (i, n) = (index as usize, count as usize);
    let raw = match data {
        Data::Bits(bits) => Ok(Value::Bool(bits[i])),
        Data::Words(words) => decode(
            &words[i..i + n],
            tag.data_type,
            tag.byte_order,
            tag.word_order,
            bit,
        ),
    };
    match raw {
        Err(e) => {
            tracing::warn!(tag = %tag.name, error = %e, "modbus: cannot decode");
            bad("config_error", ts)
        }
        Ok(raw) => {
            let (value, in_range) = to_engineering(raw, tag.scale.as_ref());
            let quality = if in_range {
                Quality::good()
            } else {
                Quality::uncertain("out_of_range")
            };
            Sample {
                value: Some(value),
                quality,
                source_ts_us: Some(ts),
            }
        }
    }
}

#[async_trait::async_trait]
impl Driver for ModbusDriver {
    async fn connect(&mut self) -> Result<()> {
        let link = self.link.clone();
        let mut link = link.lock().await;
        let r = link.ensure_connected(&self.options, true).await;
        self.health = link.health();
        r.map_err(CallError::into_error)
    }

    async fn read(&mut self, tags: &[TagSpec]) -> Vec<Sample> {
        let unit = self.unit;
        let opts = self.options.clone();
        let link = self.link.clone();
        let plan = self.plans.get(tags, &opts.limits());
        let mut out: Vec<Option<Sample>> = vec![None; tags.len()];
        for (i, slot) in plan.slots.iter().enumerate() {
            if let Err(e) = slot {
                tracing::debug!(tag = %tags[i].name, error = %e, "modbus: tag not read");
                out[i] = Some(bad("config_error", now_us()));
            }
        }
        let mut held = match Held::take(&link, &opts, false).await {
            Ok(held) => held,
            Err(e) => {
                let ts = now_us();
                for req in &plan.requests {
                    for &i in &req.tags {
                        out[i] = Some(bad(e.reason(), ts));
                    }
                }
                self.health = link.lock().await.health();
                return out
                    .into_iter()
                    .map(|s| s.expect("every tag has a sample"))
                    .collect();
            }
        };
        let blocks: Vec<(Table, u16, u16)> = plan
            .requests
            .iter()
            .map(|r| (r.table, r.start, r.count))
            .collect();
        let results = held.read_blocks(unit, &opts, &blocks).await;
        for ((ri, req), result) in plan.requests.iter().enumerate().zip(results) {
            let ReadRequest {
                table,
                start,
                count,
                tags: members,
            } = req;
            match result {
                Ok(data) => {
                    let ts = now_us();
                    for &i in members {
                        let s = plan.slots[i].as_ref().expect("placed");
                        debug_assert_eq!(s.request, ri);
                        out[i] = Some(tag_sample(&tags[i], &data, s.index, s.count, s.bit, ts));
                    }
                }
                Err(CallError::Exception(code)) if members.len() > 1 => {
                    tracing::debug!(table = ?table, start, count, code, "modbus: block read refused, reading its tags one by one");
                    for &i in members {
                        let s = plan.slots[i].as_ref().expect("placed");
                        let a = check_tag_for_read(&tags[i]).expect("planned tags parse");
                        let sample =
                            match read_block(&mut held, unit, &opts, a.table, a.offset, a.count)
                                .await
                            {
                                Ok(data) => {
                                    tag_sample(&tags[i], &data, 0, s.count, s.bit, now_us())
                                }
                                Err(e) => bad(e.reason(), now_us()),
                            };
                        out[i] = Some(sample);
                    }
                }
                Err(e) => {
                    let ts = now_us();
                    for &i in members {
                        out[i] = Some(bad(e.reason(), ts));
                    }
                }
            }
        }
        self.health = held.health().await;
        out.into_iter()
            .map(|s| s.expect("every tag has a sample"))
            .collect()
    }

    async fn write(&mut self, tag: &TagSpec, value: Value) -> Result<Value> {
        if !tag.writable {
            return Err(Error::Config(format!("tag '{}' is not writable", tag.name)));
        }
        let a = validate_tag(tag).map_err(Error::Config)?;
        let raw = prepare_write(&value, tag.data_type, tag.scale.as_ref())
            .map_err(|e| Error::Config(format!("tag '{}': {e}", tag.name)))?;
        let unit = self.unit;
        let opts = self.options.clone();
        let link = self.link.clone();
        let r = match Held::take(&link, &opts, true).await {
            Ok(mut held) => {
                let r = write_held(&mut held, unit, &opts, tag, &a, &raw).await;
                self.health = held.health().await;
                r
            }
            Err(e) => {
                self.health = link.lock().await.health();
                Err(e)
            }
        };
        let (data, expected) = r.map_err(CallError::into_error)?;
        let sample = tag_sample(tag, &data, 0, a.count, a.bit, now_us());
        let read_back = sample.value.clone().ok_or_else(|| {
            Error::Io(format!(
                "tag '{}': read-back could not be decoded",
                tag.name
            ))
        })?;
        let matches = match (&data, &expected) {
            (Data::Bits(b), Data::Bits(e)) => b == e,
            (Data::Words(w), Data::Words(e)) => match a.bit {
                Some(bit) => {
                    decode::register_bit(w[0], bit, tag.byte_order)
                        == decode::register_bit(e[0], bit, tag.byte_order)
                }
                None => w == e,
            },
            _ => false,
        };
        if !matches {
            return Err(Error::Rejected(format!(
                "tag '{}': wrote {value} but the device reads back {read_back}",
                tag.name
            )));
        }
        Ok(read_back)
    }

    async fn browse(&mut self, _node: Option<&str>) -> Result<Vec<BrowseItem>> {
        Err(Error::Config(
            "modbus devices have no address space to browse: add tags by address (hr:0, 40001, ...)".into(),
        ))
    }

    fn health(&self) -> Health {
        self.health.clone()
    }
}

/// Writes while holding the link; returns the read-back data and the data
/// expected in it.
async fn write_held(
    link: &mut Held<'_>,
    unit: u8,
    opts: &ModbusOptions,
    tag: &TagSpec,
    a: &ParsedAddress,
    raw: &Value,
) -> Result<(Data, Data), CallError> {
    let expected = match (a.table, raw) {
        (Table::Coil, Value::Bool(b)) => {
            link.call(unit, &Request::WriteSingleCoil(a.offset, *b), opts, true)
                .await?;
            Data::Bits(vec![*b])
        }
        (Table::HoldingRegister, Value::Bool(b)) => {
            let bit = a.bit.expect("validated: bools in registers have a bit");
            // Read-modify-write: not atomic against another master.
            let current =
                match read_block(link, unit, opts, Table::HoldingRegister, a.offset, 1).await? {
                    Data::Words(w) => w[0],
                    Data::Bits(_) => unreachable!("register read returns words"),
                };
            let word = decode::with_register_bit(current, bit, tag.byte_order, *b);
            link.call(
                unit,
                &Request::WriteSingleRegister(a.offset, word),
                opts,
                true,
            )
            .await?;
            Data::Words(vec![word])
        }
        (Table::HoldingRegister, raw) => {
            let words = encode(
                raw,
                tag.data_type,
                tag.byte_order,
                tag.word_order,
                tag.length,
            )
            .map_err(|e| CallError::Comm(format!("encode: {e}")))?;
            let req = if words.len() == 1 {
                Request::WriteSingleRegister(a.offset, words[0])
            } else {
                Request::WriteMultipleRegisters(a.offset, words.clone().into())
            };
            link.call(unit, &req, opts, true).await?;
            Data::Words(words)
        }
        _ => unreachable!("validate_tag admits writes to coils and holding registers only"),
    };
    let back = link
        .call(unit, &read_request(a.table, a.offset, a.count), opts, true)
        .await?;
    Ok((response_data(back, a.count)?, expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn tcp_endpoints_parse() {
        let t = |s| Endpoint::parse("modbus-tcp", s);
        assert_eq!(
            t("10.0.0.5:5020").unwrap(),
            Endpoint::Tcp {
                host: "10.0.0.5".into(),
                port: 5020
            }
        );
        assert_eq!(
            t("plc1").unwrap(),
            Endpoint::Tcp {
                host: "plc1".into(),
                port: 502
            }
        );
        assert_eq!(
            t("tcp://plc1:503").unwrap(),
            Endpoint::Tcp {
                host: "plc1".into(),
                port: 503
            }
        );
        assert_eq!(
            t("[::1]:1502").unwrap(),
            Endpoint::Tcp {
                host: "::1".into(),
                port: 1502
            }
        );
        assert!(t("plc1:0").unwrap_err().contains("port '0'"));
        assert!(t("plc1:http").unwrap_err().contains("port 'http'"));
        assert!(t(":502").unwrap_err().contains("host is missing"));
        assert!(t("::1:502").unwrap_err().contains("brackets"));
        assert!(t("").is_err());
    }

    #[test]
    fn rtu_endpoints_parse() {
        let r = |s| match Endpoint::parse("modbus-rtu", s) {
            Ok(Endpoint::Rtu(s)) => Ok(s.to_string()),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(
            r("/dev/ttyUSB0:19200:8E1").unwrap(),
            "/dev/ttyUSB0:19200:8E1"
        );
        assert_eq!(r("/dev/ttyUSB0").unwrap(), "/dev/ttyUSB0:9600:8N1");
        assert_eq!(r("/dev/ttyUSB0:38400").unwrap(), "/dev/ttyUSB0:38400:8N1");
        assert_eq!(r("/dev/ttyS1:7o2").unwrap(), "/dev/ttyS1:9600:7O2");
        assert_eq!(r("COM3:115200:8N2").unwrap(), "COM3:115200:8N2");
        assert!(r("/dev/ttyUSB0:19200:9N1")
            .unwrap_err()
            .contains("framing '9N1'"));
        assert!(r("/dev/ttyUSB0:fast")
            .unwrap_err()
            .contains("neither a baud rate"));
        assert!(r(":9600").unwrap_err().contains("path is missing"));
        assert!(Endpoint::parse("opcua", "x")
            .unwrap_err()
            .contains("not Modbus"));
    }

    #[test]
    fn rtu_unit_ids_are_checked() {
        assert!(validate_endpoint("modbus-rtu", "/dev/ttyS0", 0)
            .unwrap_err()
            .contains("1-247"));
        assert!(validate_endpoint("modbus-rtu", "/dev/ttyS0", 248).is_err());
        assert!(validate_endpoint("modbus-tcp", "h:502", 0).is_ok());
        assert!(validate_endpoint("modbus-tcp", "h:502", 255).is_ok());
    }

    #[test]
    fn options_are_checked() {
        let o = ModbusOptions {
            max_registers: 126,
            ..Default::default()
        };
        assert!(ModbusDriver::tcp("h:502", 1, o).is_err());
        let o = ModbusOptions {
            max_bits: 0,
            ..Default::default()
        };
        assert!(ModbusDriver::tcp("h:502", 1, o).is_err());
    }

    #[test]
    fn devices_on_one_serial_line_share_it_and_must_agree() {
        let a =
            ModbusDriver::rtu("/dev/bifrost-test-line:19200:8E1", 1, Default::default()).unwrap();
        let b =
            ModbusDriver::rtu("/dev/bifrost-test-line:19200:8E1", 2, Default::default()).unwrap();
        assert!(Arc::ptr_eq(&a.link, &b.link));
        let c = ModbusDriver::rtu("/dev/bifrost-test-line:9600:8N1", 3, Default::default());
        assert!(matches!(c, Err(Error::Config(m)) if m.contains("already in use")));
        drop((a, b));
        assert!(
            ModbusDriver::rtu("/dev/bifrost-test-line:9600:8N1", 3, Default::default()).is_ok()
        );
    }

    fn tag(address: &str, data_type: DataType) -> TagSpec {
        TagSpec {
            name: address.into(),
            address: address.into(),
            data_type,
            byte_order: Default::default(),
            word_order: Default::default(),
            scale: None,
            deadband: None,
            length: 0,
            writable: false,
        }
    }

    #[test]
    fn alternating_tag_lists_are_planned_once_each_and_the_cache_is_bounded() {
        let limits = ModbusOptions::default().limits();
        let fast = [tag("hr:500", DataType::U16)];
        let both = [tag("hr:0", DataType::U16), tag("hr:500", DataType::U16)];
        let mut cache = PlanCache::default();
        for _ in 0..5 {
            assert_eq!(cache.get(&fast, &limits).slots.len(), 1);
            assert_eq!(cache.get(&both, &limits).slots.len(), 2);
        }
        assert_eq!(
            cache.made, 2,
            "two lists, two plans, however they alternate"
        );
        // A plan answers for its own list: the key is the tags, in order.
        let plan = cache.get(&both, &limits);
        let starts: Vec<u16> = plan.requests.iter().map(|r| r.start).collect();
        assert_eq!(starts, vec![0, 500]);
        // More lists than kept: the least recently used is planned again.
        let lists: Vec<[TagSpec; 1]> = (0..PLANS_KEPT as u16)
            .map(|i| [tag(&format!("hr:{}", 100 + i), DataType::U16)])
            .collect();
        for l in &lists {
            cache.get(l, &limits);
        }
        assert_eq!(cache.entries.len(), PLANS_KEPT);
        let made = cache.made;
        cache.get(&lists[PLANS_KEPT - 1], &limits);
        assert_eq!(cache.made, made, "a recent list is still kept");
        cache.get(&fast, &limits);
        assert_eq!(cache.made, made + 1, "the oldest list was evicted");
    }

    #[tokio::test]
    async fn refused_connection_is_comm_failure_then_not_connected_during_backoff() {
        // A port that was free a moment ago: connecting is refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let opts = ModbusOptions {
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
            ..Default::default()
        };
        let mut d = ModbusDriver::tcp(&format!("127.0.0.1:{port}"), 1, opts).unwrap();
        let tags = [
            tag("hr:0", DataType::U16),
            tag("hr:9", DataType::U16),
            tag("hr:x", DataType::U16),
        ];
        let s = d.read(&tags).await;
        assert_eq!(s[0].quality, Quality::bad("comm_failure"));
        assert_eq!(s[1].quality, Quality::bad("comm_failure"));
        assert_eq!(s[2].quality, Quality::bad("config_error"));
        assert!(matches!(d.health(), Health::Down(_)));
        // The backoff is a minute: a read that waited it out would outlast
        // this bound.
        let s = tokio::time::timeout(Duration::from_secs(30), d.read(&tags))
            .await
            .expect("must not wait during backoff");
        assert_eq!(s[0].quality, Quality::bad("not_connected"));
        let err = d
            .write(&tag("hr:0", DataType::U16), Value::Int(1))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(m) if m.contains("not writable")));
    }

    #[tokio::test]
    async fn silent_device_times_out_and_the_retry_goes_on_the_same_connection() {
        // Accepts connections and reads requests but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(StdMutex::new((0usize, Vec::new())));
        let h = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                h.lock().unwrap().0 += 1;
                let h = h.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut frame = [0u8; 12];
                    while s.read_exact(&mut frame).await.is_ok() {
                        h.lock()
                            .unwrap()
                            .1
                            .push(u16::from_be_bytes([frame[0], frame[1]]));
                    }
                });
            }
        });
        let opts = ModbusOptions {
            timeout: Duration::from_millis(100),
            retries: 1,
            ..Default::default()
        };
        let mut d = ModbusDriver::tcp(&addr.to_string(), 1, opts).unwrap();
        let s = d.read(&[tag("hr:0", DataType::U16)]).await;
        assert_eq!(s[0].quality, Quality::bad("timeout"));
        // The retry went on the same connection, under a new transaction
        // id: a late reply to the first would be told apart and dropped.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (connections, tids) = seen.lock().unwrap().clone();
            if tids.len() == 2 {
                assert_eq!(connections, 1, "a timeout keeps the connection");
                assert_ne!(tids[0], tids[1], "{tids:?}");
                break;
            }
            assert!(Instant::now() < deadline, "requests seen: {tids:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(d.health(), Health::Connected);
    }
}
