//! S7comm over ISO-on-TCP (port 102) for Siemens S7-300/400/1200/1500 and
//! LOGO!/S7-200 by TSAP: the [`S7Driver`], with its pure parts in
//! submodules: [`address`] (notation, type fit, value bytes), [`codec`]
//! (TPKT/COTP/S7 PDUs), [`plan`] (multi-variable reads under the PDU size)
//! and [`szl`] (module identification). The reference for configuring tags
//! is `drivers/docs/s7.md`.
//!
//! The driver follows the Modbus driver's habits:
//!
//! * **Per-request timeout, then reconnect.** S7 answers in order, matched
//!   by PDU reference; after a timeout a late answer would be taken for the
//!   next one, so the connection is dropped and reopened. A reply to another
//!   reference or a malformed reply does the same.
//! * **Retries** (`retries` more attempts) for timeouts and transport
//!   errors, never for answers from the PLC (return codes, header errors).
//! * **Backoff** with ±20% jitter after a failed connect; meanwhile reads
//!   return Bad `not_connected` at once.
//! * **Multi-variable reads** packed to the negotiated PDU size ([`plan`]).
//! * **Error isolation.** An item's return code affects only the tags of
//!   that item; when an item served several tags, they are read one by one
//!   so only the tag at the missing address goes Bad.
//! * **One connection per CPU.** Devices configured on one CPU (same
//!   address, TSAPs and PDU size) share its connection, a poll at a time
//!   ([`shared_link`]).
//!
//! Quality reasons: `timeout`, `comm_failure`, `not_connected`,
//! `s7_error:0x0A` (an item return code, two hex digits),
//! `s7_error:0x8104` (a header error, class and code), `config_error`,
//! and Uncertain `out_of_range` for scaled tags outside the raw range.
//!
//! Must not depend on the server or storage; it shares only the model's
//! value types and [`crate::scaling`] (through the Modbus driver's
//! protocol-free `to_engineering` / `prepare_write`).

pub mod address;
pub mod codec;
pub mod plan;
pub mod szl;

use std::time::Duration;

use bifrost_model::now_us;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::reconnect::Reconnect;
use crate::scaling::{prepare_write, to_engineering};
use crate::scaling::{validate_deadband, validate_scale};
use crate::shared::Registry;
use crate::{BrowseItem, DataType, Driver, Error, Health, Quality, Result, Sample, TagSpec, Value};
pub use address::{Area, PlcType, S7Address};
use codec::{Item, ItemResult, ReplyError};
use plan::Plan;
pub use szl::ModuleIdentity;

/// Default ISO-on-TCP port.
pub const DEFAULT_PORT: u16 = 102;

/// Per-device options (labels `s7.rack`, `s7.slot`, `s7.local_tsap`,
/// `s7.remote_tsap`, `s7.pdu_size` on the device).
#[derive(Clone, Debug, PartialEq)]
pub struct S7Options {
    /// How long one request (or the connect sequence) may take.
    pub timeout: Duration,
    /// Extra attempts after a timeout or transport error.
    pub retries: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Rack of the CPU (0-7).
    pub rack: u16,
    /// Slot of the CPU (0-31): 2 for S7-300, 0 or 1 for S7-1200/1500.
    pub slot: u16,
    /// Our TSAP; default 0x0100.
    pub local_tsap: Option<u16>,
    /// The PLC's TSAP; overrides rack/slot (LOGO! 0x0200, S7-200 0x0201).
    pub remote_tsap: Option<u16>,
    /// PDU size asked for; the PLC's answer (often 240 or 480) is used.
    pub pdu_size: u16,
}

impl Default for S7Options {
    fn default() -> Self {
        S7Options {
            timeout: Duration::from_secs(2),
            retries: 1,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            rack: 0,
            slot: 2,
            local_tsap: None,
            remote_tsap: None,
            pdu_size: 960,
        }
    }
}

impl S7Options {
    fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0".into());
        }
        if self.rack > 7 {
            return Err(format!("rack {} must be 0-7", self.rack));
        }
        if self.slot > 31 {
            return Err(format!("slot {} must be 0-31", self.slot));
        }
        if !(plan::MIN_PDU..=65535).contains(&self.pdu_size) {
            return Err(format!(
                "pdu_size {} must be at least {}",
                self.pdu_size,
                plan::MIN_PDU
            ));
        }
        Ok(())
    }

    fn tsaps(&self) -> (u16, u16) {
        (
            self.local_tsap.unwrap_or(0x0100),
            self.remote_tsap
                .unwrap_or_else(|| codec::remote_tsap(self.rack, self.slot)),
        )
    }
}

/// Parses `HOST`, `HOST:PORT` or `[IPv6]:PORT` (port 102 by default).
fn parse_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    crate::endpoint::parse_host_port(endpoint, DEFAULT_PORT)
}

/// Checks an endpoint (`HOST[:PORT]`, `[v6]:PORT`) without connecting.
pub fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    parse_endpoint(endpoint).map(|_| ())
}

/// Checks a tag's address, type, scale and deadband. Errors name the tag
/// and the address and say what is wrong.
pub fn validate_tag(spec: &TagSpec) -> Result<()> {
    check_tag(spec)
        .map(|_| ())
        .map_err(|e| Error::Config(format!("tag '{}': {e}", spec.name)))
}

fn check_tag(spec: &TagSpec) -> Result<S7Address, String> {
    let a = address::parse(&spec.address, spec.data_type, spec.length)?;
    if let Some(s) = &spec.scale {
        if !spec.data_type.is_numeric() {
            return Err(format!(
                "scale on a {} tag: only numeric tags scale",
                spec.data_type
            ));
        }
        validate_scale(s)?;
    }
    if let Some(db) = &spec.deadband {
        validate_deadband(db, spec.scale.as_ref(), spec.data_type)?;
    }
    Ok(a)
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq)]
enum CallError {
    Timeout(String),
    Comm(String),
    NotConnected(String),
    /// Header error: class and code.
    Header(u8, u8),
    /// Data item return code.
    Item(u8),
}

impl CallError {
    fn reason(&self) -> String {
        match self {
            CallError::Timeout(_) => "timeout".into(),
            CallError::Comm(_) => "comm_failure".into(),
            CallError::NotConnected(_) => "not_connected".into(),
            CallError::Header(c, k) => {
                format!("s7_error:0x{:04X}", ReplyError::header_code(*c, *k))
            }
            CallError::Item(rc) => format!("s7_error:0x{rc:02X}"),
        }
    }

    /// Transport failures end the poll: the connection is gone.
    fn is_transport(&self) -> bool {
        matches!(
            self,
            CallError::Timeout(_) | CallError::Comm(_) | CallError::NotConnected(_)
        )
    }

    fn message(&self) -> String {
        match self {
            CallError::Timeout(m) | CallError::Comm(m) | CallError::NotConnected(m) => m.clone(),
            CallError::Header(c, k) => format!(
                "S7 header error class 0x{c:02X} code 0x{k:02X} (0x{:04X}: {})",
                ReplyError::header_code(*c, *k),
                codec::header_error_text(*c, *k)
            ),
            CallError::Item(rc) => {
                format!("s7_error:0x{rc:02X} ({})", codec::item_error_text(*rc))
            }
        }
    }

    fn into_error(self) -> Error {
        match &self {
            CallError::Timeout(m) => Error::Timeout(m.clone()),
            CallError::Comm(m) => Error::Io(m.clone()),
            CallError::NotConnected(m) => Error::NotConnected(m.clone()),
            CallError::Header(..) | CallError::Item(_) => Error::Rejected(self.message()),
        }
    }
}

impl From<ReplyError> for CallError {
    fn from(e: ReplyError) -> CallError {
        match e {
            ReplyError::Malformed(m) => CallError::Comm(format!("malformed reply: {m}")),
            ReplyError::Header { class, code } => CallError::Header(class, code),
        }
    }
}

/// An open ISO connection after Setup Communication.
struct Conn {
    stream: TcpStream,
    pdu_size: u16,
    _counted: crate::Counted,
}

impl Conn {
    async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(frame).await
    }

    /// Reads one TPKT frame and returns its COTP TPDU.
    async fn recv_tpdu(&mut self) -> std::io::Result<Vec<u8>> {
        let mut header = [0u8; codec::TPKT_HEADER_LEN];
        self.stream.read_exact(&mut header).await?;
        let len = codec::tpkt_length(&header).map_err(std::io::Error::other)?;
        let mut tpdu = vec![0u8; len - codec::TPKT_HEADER_LEN];
        self.stream.read_exact(&mut tpdu).await?;
        Ok(tpdu)
    }

    /// Sends an S7 PDU and returns the reply PDU (reassembled from COTP
    /// fragments).
    async fn exchange(&mut self, pdu: &[u8]) -> std::io::Result<Vec<u8>> {
        self.send(&codec::data_frame(pdu)).await?;
        let mut reply = Vec::new();
        loop {
            let tpdu = self.recv_tpdu().await?;
            let (payload, last) = codec::parse_data_tpdu(&tpdu).map_err(std::io::Error::other)?;
            reply.extend_from_slice(payload);
            if last {
                return Ok(reply);
            }
            if reply.len() > 65535 {
                return Err(std::io::Error::other("reply longer than 64 KiB"));
            }
        }
    }
}

/// TCP connect, COTP connection request/confirm, Setup Communication.
async fn open(host: &str, port: u16, opts: &S7Options) -> Result<Conn, CallError> {
    let comm = |what: &str, e: String| CallError::Comm(format!("{what}: {e}"));
    let mut last = None;
    let mut stream = None;
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| comm("resolving", e.to_string()))?;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e.to_string()),
        }
    }
    let stream = stream.ok_or_else(|| {
        comm(
            "connect",
            last.unwrap_or_else(|| format!("{host}: no address")),
        )
    })?;
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        pdu_size: 0,
        _counted: crate::Counted::new(),
    };
    let (local, remote) = opts.tsaps();
    let io = |e: std::io::Error| comm("ISO connect", e.to_string());
    conn.send(&codec::connect_request(local, remote))
        .await
        .map_err(io)?;
    let cc = conn.recv_tpdu().await.map_err(io)?;
    codec::parse_connect_confirm(&cc).map_err(CallError::Comm)?;
    let setup = codec::setup_communication(0, opts.pdu_size);
    let reply = conn
        .exchange(&setup)
        .await
        .map_err(|e| comm("setup communication", e.to_string()))?;
    let granted = codec::parse_setup_reply(&reply, 0)?;
    if granted < plan::MIN_PDU {
        return Err(CallError::Comm(format!(
            "the PLC granted a PDU size of {granted}, less than {}",
            plan::MIN_PDU
        )));
    }
    conn.pdu_size = granted.min(opts.pdu_size);
    Ok(conn)
}

/// How many read plans a driver keeps (one per distinct tag list).
const PLANS_KEPT: usize = 8;

/// What a plan was made for: the PDU size and the tags' addresses, types,
/// lengths.
type PlanKey = (u16, Vec<(String, DataType, u32)>);

/// The connection to one CPU and its reconnect state, shared by the
/// drivers of every device configured on that CPU (see [`shared_link`]).
struct Link {
    host: String,
    port: u16,
    /// The options of the device that made the link (devices sharing it
    /// agree on the TSAPs and PDU size; the first one's timeouts apply).
    options: S7Options,
    conn: Option<Conn>,
    reconnect: Reconnect,
    pdu_ref: u16,
}

type SharedLink = std::sync::Arc<tokio::sync::Mutex<Link>>;

/// The link to the CPU at `host:port` with `opts`' TSAPs and PDU size,
/// shared by every device on it: one connection per CPU, as a CPU allows
/// few (an S7-300 about 8 to 16, shared with its HMIs and programming
/// tools), so a CPU configured as several devices (one per DB, say) still
/// costs one. The drivers take turns a poll at a time: S7 answers one job
/// after another on a connection here (the CPU's parallel jobs, its
/// negotiated AmQ, are not used).
fn shared_link(host: &str, port: u16, opts: &S7Options) -> SharedLink {
    static LINKS: Registry<tokio::sync::Mutex<Link>> = Registry::new();
    let (local, remote) = opts.tsaps();
    let key = format!(
        "{host}:{port} tsap {local:04X}/{remote:04X} pdu {}",
        opts.pdu_size
    );
    LINKS.shared(key, || tokio::sync::Mutex::new(Link::new(host, port, opts)))
}

/// An S7 CPU.
pub struct S7Driver {
    link: SharedLink,
    options: S7Options,
    /// Most recently used first.
    plans: Vec<(PlanKey, Plan)>,
    /// The link's health and PDU size as of this driver's last use.
    health: Health,
    pdu_size: Option<u16>,
}

impl S7Driver {
    /// A driver for the CPU at `endpoint`. Does not connect: the first read
    /// does (or [`Driver::connect`]).
    pub fn new(endpoint: &str, options: S7Options) -> Result<S7Driver> {
        let (host, port) = parse_endpoint(endpoint).map_err(Error::Config)?;
        options
            .validate()
            .map_err(|e| Error::Config(format!("s7 options: {e}")))?;
        Ok(S7Driver {
            link: shared_link(&host, port, &options),
            options,
            plans: Vec::new(),
            health: Health::Connecting,
            pdu_size: None,
        })
    }

    pub fn options(&self) -> &S7Options {
        &self.options
    }

    /// The PDU size negotiated on the connection, as of the last use.
    pub fn negotiated_pdu_size(&self) -> Option<u16> {
        self.pdu_size
    }

    /// Closes the connection (a later read reconnects), for every driver
    /// sharing it.
    pub async fn close(&mut self) {
        let link = self.link.clone();
        let mut link = link.lock().await;
        link.close().await;
        self.observe(&link);
    }

    fn observe(&mut self, link: &Link) {
        self.health = link.health_now();
        self.pdu_size = link.negotiated_pdu_size();
    }

    fn plan_for(&mut self, tags: &[TagSpec], pdu: u16) -> Plan {
        let key_of = |tags: &[TagSpec]| -> PlanKey {
            let list = tags
                .iter()
                .map(|t| (t.address.clone(), t.data_type, t.length))
                .collect();
            (pdu, list)
        };
        let key = key_of(tags);
        if let Some(i) = self.plans.iter().position(|(k, _)| *k == key) {
            let hit = self.plans.remove(i);
            self.plans.insert(0, hit);
        } else {
            let parsed: Vec<_> = tags.iter().map(check_tag).collect();
            self.plans.insert(0, (key, plan::plan(&parsed, pdu)));
            self.plans.truncate(PLANS_KEPT);
        }
        self.plans[0].1.clone()
    }
}

impl Link {
    fn new(host: &str, port: u16, options: &S7Options) -> Link {
        Link {
            host: host.into(),
            port,
            options: options.clone(),
            conn: None,
            reconnect: Reconnect::default(),
            pdu_ref: 0,
        }
    }

    /// The PDU size negotiated on the current connection.
    fn negotiated_pdu_size(&self) -> Option<u16> {
        self.conn.as_ref().map(|c| c.pdu_size)
    }

    /// Closes the connection (a later read reconnects).
    async fn close(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = c.stream.shutdown().await;
        }
    }

    fn drop_connection(&mut self, why: &str) {
        if self.conn.take().is_some() {
            tracing::debug!(host = %self.host, port = self.port, why, "s7: dropping connection");
        }
        self.reconnect.lost(why);
    }

    async fn ensure_connected(&mut self, force: bool) -> Result<(), CallError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let Some(why) = self.reconnect.refused(force) {
            return Err(CallError::NotConnected(why));
        }
        let opts = self.options.clone();
        let r = tokio::time::timeout(opts.timeout, open(&self.host, self.port, &opts)).await;
        let e = match r {
            Ok(Ok(conn)) => {
                tracing::debug!(host = %self.host, pdu = conn.pdu_size, "s7: connected");
                self.conn = Some(conn);
                self.reconnect.connected();
                return Ok(());
            }
            Ok(Err(e)) => e,
            Err(_) => CallError::Timeout(format!("connect: no answer within {:?}", opts.timeout)),
        };
        let backoff = self
            .reconnect
            .failed(opts.backoff_min, opts.backoff_max, e.message());
        tracing::debug!(host = %self.host, error = %e.message(), ?backoff, "s7: connect failed");
        Err(e)
    }

    /// One request with timeout and retries: `build` makes the PDU for a
    /// reference, `parse` reads the reply. `force` connects even during
    /// backoff (writes, identify: someone waits for the answer).
    async fn call<T>(
        &mut self,
        build: impl Fn(u16) -> Vec<u8>,
        parse: impl Fn(&[u8], u16) -> Result<T, ReplyError>,
        force: bool,
    ) -> Result<T, CallError> {
        let mut attempt = 0;
        loop {
            self.ensure_connected(force || attempt > 0).await?;
            self.pdu_ref = self.pdu_ref.wrapping_add(1).max(1);
            let pdu_ref = self.pdu_ref;
            let conn = self.conn.as_mut().expect("connected");
            let timeout = self.options.timeout;
            let err = match tokio::time::timeout(timeout, conn.exchange(&build(pdu_ref))).await {
                Ok(Ok(reply)) => match parse(&reply, pdu_ref) {
                    Ok(v) => return Ok(v),
                    Err(ReplyError::Header { class, code }) => {
                        return Err(CallError::Header(class, code))
                    }
                    Err(malformed) => CallError::from(malformed),
                },
                Ok(Err(e)) => CallError::Comm(e.to_string()),
                Err(_) => CallError::Timeout(format!("no answer within {timeout:?}")),
            };
            self.drop_connection(&err.message());
            attempt += 1;
            if attempt > self.options.retries {
                return Err(err);
            }
        }
    }

    async fn read_items(&mut self, items: &[Item]) -> Result<Vec<ItemResult>, CallError> {
        let n = items.len();
        self.call(
            |r| codec::read_var_request(r, items),
            |pdu, r| codec::parse_read_var_reply(pdu, r, n),
            false,
        )
        .await
    }

    /// Runs a plan: per range, its bytes or why it could not be read.
    async fn execute(&mut self, plan: &Plan) -> Vec<Result<Vec<u8>, CallError>> {
        let mut out: Vec<Result<Vec<u8>, CallError>> = plan
            .ranges
            .iter()
            .map(|r| Ok(vec![0u8; (r.end - r.start) as usize]))
            .collect();
        let mut gone: Option<CallError> = None;
        for request in &plan.requests {
            let items: Vec<Item> = request.iter().map(|p| p.item).collect();
            let results = match &gone {
                Some(e) => Err(e.clone()),
                None => self.read_items(&items).await,
            };
            match results {
                Ok(results) => {
                    for (p, res) in request.iter().zip(results) {
                        let start = plan.ranges[p.range].start;
                        store_item(&mut out[p.range], start, &p.item, res);
                    }
                }
                Err(e) => {
                    if e.is_transport() {
                        gone = Some(e.clone());
                    }
                    for p in request {
                        if out[p.range].is_ok() {
                            out[p.range] = Err(e.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// Reads tags (all parse) one by one: for the tags of a range that
    /// failed with an answer from the PLC.
    async fn read_alone(&mut self, tag: &TagSpec, pdu: u16) -> Sample {
        let plan = plan::plan(&[check_tag(tag)], pdu);
        let mut ranges = self.execute(&plan).await;
        match ranges.pop() {
            Some(Ok(bytes)) => tag_sample(tag, &bytes, 0, now_us()),
            Some(Err(e)) => bad(e.reason()),
            None => bad("config_error"),
        }
    }

    fn health_now(&self) -> Health {
        self.reconnect.health(self.conn.is_some())
    }

    /// Writes `bytes` at `a` in as many Write Var requests as the PDU needs.
    async fn write_bytes(&mut self, a: &S7Address, bytes: &[u8]) -> Result<(), CallError> {
        self.ensure_connected(true).await?;
        let pdu = self.negotiated_pdu_size().unwrap_or(plan::MIN_PDU) as usize;
        let chunk = pdu.saturating_sub(codec::WRITE_OVERHEAD).max(1);
        let mut offset = 0;
        while offset < bytes.len() {
            let part = &bytes[offset..(offset + chunk).min(bytes.len())];
            let item = Item {
                area: a.area,
                byte: a.byte + offset as u32,
                bit: a.bit.filter(|_| a.plc_type == PlcType::Bool),
                count: part.len() as u16,
            };
            let r = self
                .call(
                    |r| codec::write_var_request(r, &item, part),
                    codec::parse_write_var_reply,
                    true,
                )
                .await?;
            r.map_err(CallError::Item)?;
            offset += part.len();
        }
        Ok(())
    }
}

/// Copies one item's bytes into its range's buffer, or records its error.
fn store_item(
    range: &mut Result<Vec<u8>, CallError>,
    range_start: u32,
    item: &Item,
    res: ItemResult,
) {
    let Ok(buf) = range else { return };
    let at = (item.byte - range_start) as usize;
    match res {
        Ok(bytes) if bytes.len() == item.count as usize => {
            buf[at..at + bytes.len()].copy_from_slice(&bytes)
        }
        Ok(bytes) => {
            *range = Err(CallError::Comm(format!(
                "PLC answered {} bytes for an item of {} at {}",
                bytes.len(),
                item.count,
                item.area
            )))
        }
        Err(rc) => *range = Err(CallError::Item(rc)),
    }
}

fn bad(reason: impl Into<String>) -> Sample {
    Sample {
        value: None,
        quality: Quality::bad(reason),
        source_ts_us: Some(now_us()),
    }
}

/// Decodes and scales one tag from its range's bytes (`offset` is the
/// tag's first byte within them).
fn tag_sample(tag: &TagSpec, bytes: &[u8], offset: usize, ts: i64) -> Sample {
    let decoded = check_tag(tag).and_then(|a| {
        let end = offset + a.size() as usize;
        let slice = bytes.get(offset..end).ok_or("range shorter than the tag")?;
        address::decode(&a, slice)
    });
    match decoded {
        Err(e) => {
            tracing::warn!(tag = %tag.name, error = %e, "s7: cannot decode");
            bad("config_error")
        }
        Ok(raw) => {
            let (value, in_range) = to_engineering(raw, tag.scale.as_ref());
            Sample {
                value: Some(value),
                quality: if in_range {
                    Quality::good()
                } else {
                    Quality::uncertain("out_of_range")
                },
                source_ts_us: Some(ts),
            }
        }
    }
}

#[async_trait::async_trait]
impl Driver for S7Driver {
    async fn connect(&mut self) -> Result<()> {
        let link = self.link.clone();
        let mut link = link.lock().await;
        let r = link.ensure_connected(true).await;
        self.observe(&link);
        r.map_err(CallError::into_error)
    }

    async fn read(&mut self, tags: &[TagSpec]) -> Vec<Sample> {
        let mut out: Vec<Option<Sample>> = vec![None; tags.len()];
        // The connection is held for the whole poll: one job at a time.
        let link = self.link.clone();
        let mut link = link.lock().await;
        let connected = link.ensure_connected(false).await;
        let pdu = link.negotiated_pdu_size().unwrap_or(plan::MIN_PDU);
        let plan = self.plan_for(tags, pdu);
        for (i, slot) in plan.slots.iter().enumerate() {
            match (slot, &connected) {
                (Err(e), _) => {
                    tracing::debug!(tag = %tags[i].name, error = %e, "s7: tag not read");
                    out[i] = Some(bad("config_error"));
                }
                (Ok(_), Err(e)) => out[i] = Some(bad(e.reason())),
                (Ok(_), Ok(())) => {}
            }
        }
        if connected.is_ok() {
            let results = link.execute(&plan).await;
            for (range, result) in plan.ranges.iter().zip(results) {
                let ts = now_us();
                for &i in &range.tags {
                    let sample = match &result {
                        Ok(bytes) => {
                            let offset = check_tag(&tags[i]).map(|a| a.byte - range.start);
                            tag_sample(&tags[i], bytes, offset.unwrap_or(0) as usize, ts)
                        }
                        Err(e) if !e.is_transport() && range.tags.len() > 1 => {
                            link.read_alone(&tags[i], pdu).await
                        }
                        Err(e) => bad(e.reason()),
                    };
                    out[i] = Some(sample);
                }
            }
        }
        self.observe(&link);
        out.into_iter()
            .map(|s| s.unwrap_or_else(|| bad("config_error")))
            .collect()
    }

    async fn write(&mut self, tag: &TagSpec, value: Value) -> Result<Value> {
        if !tag.writable {
            return Err(Error::Config(format!("tag '{}' is not writable", tag.name)));
        }
        let a = check_tag(tag).map_err(|e| Error::Config(format!("tag '{}': {e}", tag.name)))?;
        let raw = prepare_write(&value, tag.data_type, tag.scale.as_ref())
            .and_then(|raw| address::encode(&a, &raw).map(|b| (raw, b)))
            .map_err(|e| Error::Config(format!("tag '{}' at {}: {e}", tag.name, tag.address)));
        let (raw, bytes) = raw?;
        let link = self.link.clone();
        let mut link = link.lock().await;
        let written = link.write_bytes(&a, &bytes).await;
        self.observe(&link);
        written.map_err(|e| with_tag(e, tag))?;
        let pdu = link.negotiated_pdu_size().unwrap_or(plan::MIN_PDU);
        let plan = plan::plan(&[Ok(a)], pdu);
        let back = link.execute(&plan).await.pop();
        self.observe(&link);
        drop(link);
        let back = match back {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(with_tag(e, tag)),
            None => return Err(Error::Io(format!("tag '{}': nothing read back", tag.name))),
        };
        let read_raw = address::decode(&a, &back)
            .map_err(|e| Error::Io(format!("tag '{}': read-back: {e}", tag.name)))?;
        let expected = match &raw {
            Value::Text(_) | Value::Bool(_) => raw.clone(),
            _ => address::decode(&a, &bytes).unwrap_or(raw.clone()),
        };
        if read_raw != expected {
            return Err(Error::Rejected(format!(
                "tag '{}': wrote {value} but the PLC reads back {read_raw}",
                tag.name
            )));
        }
        Ok(to_engineering(read_raw, tag.scale.as_ref()).0)
    }

    async fn browse(&mut self, _node: Option<&str>) -> Result<Vec<BrowseItem>> {
        Err(Error::Config(
            "S7 has no browsable address space over S7comm: add tags by address \
             (DB10.DBD4:REAL, M0.1, IW2, ...)"
                .into(),
        ))
    }

    fn health(&self) -> Health {
        self.health.clone()
    }
}

fn with_tag(e: CallError, tag: &TagSpec) -> Error {
    match e.into_error() {
        Error::Rejected(m) => {
            Error::Rejected(format!("tag '{}' at {}: {m}", tag.name, tag.address))
        }
        other => other,
    }
}

/// Connects to the CPU at `endpoint` and reads its module identification
/// (SZL 0x0011) and, when it answers, its component identification (SZL
/// 0x001C), for discovery.
pub async fn identify(endpoint: &str, options: &S7Options) -> Result<ModuleIdentity> {
    let (host, port) = parse_endpoint(endpoint).map_err(Error::Config)?;
    options
        .validate()
        .map_err(|e| Error::Config(format!("s7 options: {e}")))?;
    // A link of its own: closing it must not close a polling driver's.
    let mut link = Link::new(&host, port, options);
    let r = identify_on(&mut link).await;
    link.close().await;
    r
}

async fn identify_on(d: &mut Link) -> Result<ModuleIdentity> {
    let mut id = ModuleIdentity::default();
    let body = read_szl(d, 0x0011).await?;
    szl::parse_module_identification(&body, &mut id)
        .map_err(|e| Error::Io(format!("SZL 0x0011: {e}")))?;
    match read_szl(d, 0x001C).await {
        Ok(body) => {
            if let Err(e) = szl::parse_component_identification(&body, &mut id) {
                tracing::debug!(error = %e, "s7: SZL 0x001C not understood");
            }
        }
        Err(e) => tracing::debug!(error = %e, "s7: no SZL 0x001C"),
    }
    Ok(id)
}

async fn read_szl(d: &mut Link, szl_id: u16) -> Result<Vec<u8>> {
    let r = d
        .call(
            |r| codec::szl_request(r, szl_id, 0),
            codec::parse_szl_reply,
            true,
        )
        .await
        .map_err(CallError::into_error)?;
    r.map_err(|rc| {
        Error::Rejected(format!(
            "SZL 0x{szl_id:04X}: return code 0x{rc:02X} ({})",
            codec::item_error_text(rc)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(address: &str, data_type: DataType) -> TagSpec {
        crate::TagSpec::new(address, data_type)
    }

    #[test]
    fn endpoints_parse_with_port_102_by_default() {
        assert_eq!(
            parse_endpoint("10.0.0.5").unwrap(),
            ("10.0.0.5".into(), 102)
        );
        assert_eq!(parse_endpoint("plc:1102").unwrap(), ("plc".into(), 1102));
        assert_eq!(parse_endpoint("[::1]:1102").unwrap(), ("::1".into(), 1102));
        assert_eq!(
            parse_endpoint("[fe80::1]").unwrap(),
            ("fe80::1".into(), 102)
        );
        assert!(validate_endpoint("plc:0").unwrap_err().contains("port '0'"));
        assert!(validate_endpoint(":102")
            .unwrap_err()
            .contains("host is missing"));
        assert!(validate_endpoint("::1:102")
            .unwrap_err()
            .contains("brackets"));
        assert!(validate_endpoint("").is_err());
    }

    #[test]
    fn options_and_tags_are_checked() {
        let o = S7Options {
            rack: 8,
            ..Default::default()
        };
        assert!(matches!(S7Driver::new("h", o), Err(Error::Config(m)) if m.contains("rack 8")));
        let o = S7Options {
            pdu_size: 10,
            ..Default::default()
        };
        assert!(S7Driver::new("h", o).is_err());
        assert_eq!(S7Options::default().tsaps(), (0x0100, 0x0102));
        let o = S7Options {
            remote_tsap: Some(0x0200),
            ..Default::default()
        };
        assert_eq!(o.tsaps().1, 0x0200);
        let e = validate_tag(&tag("DB1.DBW0:REAL", DataType::F32)).unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if m.starts_with("tag 'DB1.DBW0:REAL': address 'DB1.DBW0:REAL'")),
            "{e}"
        );
        assert!(validate_tag(&tag("DB10.DBD4:REAL", DataType::F32)).is_ok());
    }

    #[tokio::test]
    async fn refused_connection_is_comm_failure_then_not_connected_during_backoff() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let opts = S7Options {
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
            ..Default::default()
        };
        let mut d = S7Driver::new(&format!("127.0.0.1:{port}"), opts).unwrap();
        let tags = [tag("MW0", DataType::I16), tag("T1", DataType::I16)];
        let s = d.read(&tags).await;
        assert_eq!(s[0].quality, Quality::bad("comm_failure"));
        assert_eq!(s[1].quality, Quality::bad("config_error"));
        assert!(matches!(d.health(), Health::Down(_)));
        let s = tokio::time::timeout(Duration::from_secs(30), d.read(&tags))
            .await
            .expect("must not wait during backoff");
        assert_eq!(s[0].quality, Quality::bad("not_connected"));
    }

    #[tokio::test]
    async fn silent_plc_times_out_and_a_garbage_answer_is_comm_failure() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // First connection: silent. Later ones: answer garbage.
        tokio::spawn(async move {
            let mut held = Vec::new();
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                n += 1;
                if n > 1 {
                    let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                }
                held.push(s);
            }
        });
        let opts = S7Options {
            timeout: Duration::from_millis(200),
            retries: 0,
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            ..Default::default()
        };
        let mut d = S7Driver::new(&addr.to_string(), opts).unwrap();
        let s = d.read(&[tag("MW0", DataType::I16)]).await;
        assert_eq!(s[0].quality, Quality::bad("timeout"));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let s = d.read(&[tag("MW0", DataType::I16)]).await;
        assert_eq!(s[0].quality, Quality::bad("comm_failure"));
    }
}
