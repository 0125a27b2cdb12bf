//! EtherNet/IP (CIP) for Logix controllers: the [`EnipDriver`], with its pure
//! parts in submodules: [`address`] (tag notation and EPATHs), [`codec`]
//! (encapsulation, CPF and CIP frames, values), [`plan`] (array runs and
//! Multiple Service Packet packing), [`identity`] (List Identity), and the
//! connection in [`session`].
//!
//! The codec is Bifrost's own (no crate has Multiple Service Packet, a
//! maintained async API and no FFI). The driver follows the Modbus driver's
//! habits: a per-request timeout after which the session is dropped and
//! reopened (a late reply would be taken for the next request's), retries
//! for timeouts and transport errors but never for CIP errors (they are
//! answers), backoff with ±20% jitter after a failed connect during which
//! reads return Bad `not_connected` at once, and no panics on odd devices.
//!
//! * **Connected messaging.** With `connected`, a Forward Open (Large
//!   Forward Open above 511 bytes) opens a class 3 connection to the Message
//!   Router in `slot`; requests go as Send Unit Data. When the controller
//!   refuses, requests go unconnected (Unconnected Send routed to the slot)
//!   and the refusal is logged and kept ([`EnipDriver::forward_open_refused`]).
//! * **Batching.** Tags are planned by [`plan`]: consecutive elements of an
//!   array are one Read Tag; reads are packed into Multiple Service Packets
//!   that fit `connection_size`; a read too large for it uses Read Tag
//!   Fragmented.
//! * **Error isolation.** A CIP error on one packed service makes only its
//!   tags Bad. When a read covering several array elements fails, each
//!   element is read alone, so only the element that does not exist goes Bad.
//! * **One session per controller.** Devices configured on one controller
//!   (same address, slot and connection parameters) share one session and
//!   Forward Open, taking turns request by request ([`shared_link`]).
//!
//! Quality reasons: `timeout`, `comm_failure` (refused, reset, malformed
//! reply), `not_connected` (in backoff), `cip_status:0xNN` or with an
//! extended status `cip_status:0xNN/0xEEEE`, `config_error` (bad address,
//! or the controller's type does not fit the tag's data type), Uncertain
//! `out_of_range` for a scaled value outside the raw range.
//!
//! Types: the controller's type comes from each read reply and must fit the
//! tag's `data_type` ([`codec::fits`]): BOOL→bool; SINT, INT→i16/i32/i64;
//! USINT→i16/u16/i32/u32/i64; UINT→u16/i32/u32/i64; DINT→i32/i64;
//! UDINT→u32/i64; LINT→i64; REAL→f32/f64; LREAL→f64; STRING (Logix, CIP or
//! SHORT_STRING)→string.

pub mod address;
pub mod codec;
pub mod identity;
pub mod plan;
pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bifrost_model::now_us;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::scaling::{prepare_write, to_engineering, validate_deadband, validate_scale};
use crate::shared::Registry;
use crate::{BrowseItem, DataType, Driver, Error, Health, Quality, Result, Sample, TagSpec, Value};
use address::TagPath;
use codec::{CipReply, CipType};
pub use identity::Identity;
use plan::{Batch, Plan, PlanLimits, Read};
use session::{CallError, Link};

/// The EtherNet/IP port.
pub const DEFAULT_PORT: u16 = 44818;

/// Per-device options (device labels `enip.slot`, `enip.connected`,
/// `enip.connection_size`).
#[derive(Clone, Debug, PartialEq)]
pub struct EnipOptions {
    /// How long one request (or connect step) may take.
    pub timeout: Duration,
    /// Extra attempts after a timeout or transport error.
    pub retries: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Backplane slot of the CPU (route path port 1).
    pub slot: u8,
    /// Try Forward Open; fall back to unconnected messaging when refused.
    pub connected: bool,
    /// Requested connection size in bytes, and the packing limit.
    pub connection_size: u16,
}

impl Default for EnipOptions {
    fn default() -> Self {
        EnipOptions {
            timeout: Duration::from_secs(2),
            retries: 1,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            slot: 0,
            connected: true,
            connection_size: 504,
        }
    }
}

/// Smallest and largest connection sizes accepted.
pub const CONNECTION_SIZE_RANGE: (u16, u16) = (100, 4002);
/// Largest unconnected message a Logix controller takes.
pub const UNCONNECTED_MAX: u16 = 504;

impl EnipOptions {
    fn validate(&self) -> Result<(), String> {
        let (lo, hi) = CONNECTION_SIZE_RANGE;
        if !(lo..=hi).contains(&self.connection_size) {
            return Err(format!(
                "connection_size {} must be {lo}-{hi}",
                self.connection_size
            ));
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0".into());
        }
        Ok(())
    }

    /// Packing limit: the connection size less the sequence count, or the
    /// unconnected limit when unconnected.
    fn limits(&self, connected: bool) -> PlanLimits {
        let size = if connected {
            self.connection_size
        } else {
            self.connection_size.min(UNCONNECTED_MAX)
        };
        PlanLimits {
            budget: size as usize - 2,
        }
    }
}

/// Splits `HOST[:PORT]` / `[v6]:PORT`.
fn parse_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    crate::endpoint::parse_host_port(endpoint, DEFAULT_PORT)
}

/// Checks an endpoint, `HOST[:PORT]` (port 44818 by default) or `[v6]:PORT`.
pub fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    parse_endpoint(endpoint).map(|_| ())
}

/// Checks a tag's address syntax, scale and deadband.
pub fn validate_tag(spec: &TagSpec) -> Result<()> {
    check_tag(spec).map(|_| ()).map_err(Error::Config)
}

fn check_tag(spec: &TagSpec) -> Result<TagPath, String> {
    let path = TagPath::parse(&spec.address).map_err(|e| format!("tag '{}': {e}", spec.name))?;
    if let Some(s) = &spec.scale {
        if !spec.data_type.is_numeric() {
            return Err(format!(
                "tag '{}': scale on a {} tag: only numeric tags scale",
                spec.name, spec.data_type
            ));
        }
        validate_scale(s).map_err(|e| format!("tag '{}': {e}", spec.name))?;
    }
    if let Some(db) = &spec.deadband {
        validate_deadband(db, spec.scale.as_ref(), spec.data_type)
            .map_err(|e| format!("tag '{}': {e}", spec.name))?;
    }
    Ok(path)
}

/// Asks the device at `addr` who it is (List Identity over TCP).
pub async fn list_identity(addr: SocketAddr, timeout: Duration) -> Result<Identity> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(&identity::request(1)).await?;
        let mut head = [0u8; codec::ENCAP_HEADER_LEN];
        s.read_exact(&mut head).await?;
        let h = codec::EncapHeader::parse(&head).map_err(std::io::Error::other)?;
        let mut body = vec![0u8; h.length as usize];
        s.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>((h, body))
    };
    let (h, body) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| {
            Error::Timeout(format!(
                "list identity {addr}: no answer within {timeout:?}"
            ))
        })?
        .map_err(|e| Error::Io(format!("list identity {addr}: {e}")))?;
    if h.command != codec::command::LIST_IDENTITY || h.status != 0 {
        return Err(Error::Io(format!(
            "list identity {addr}: reply command 0x{:04X} status 0x{:08X}",
            h.command, h.status
        )));
    }
    identity::parse_reply(&body).map_err(|e| Error::Io(format!("list identity {addr}: {e}")))
}

/// A plan with the tag list (addresses, data types) and the messaging mode
/// it was made for.
type CachedPlan = (Vec<(String, DataType)>, bool, Plan);

/// A session shared by the drivers of one controller (see [`shared_link`]).
type SharedLink = Arc<tokio::sync::Mutex<Link>>;

/// The session to the controller at `host:port` reached with `opts`' route
/// and connection parameters, shared by every device (tag group) configured
/// on it: one TCP connection and one Forward Open per controller, not one
/// per device, as controllers allow only a few. The drivers take turns on
/// it request by request. Devices with other options (another slot or
/// connection size) get their own.
fn shared_link(host: &str, port: u16, opts: &EnipOptions) -> SharedLink {
    static LINKS: Registry<tokio::sync::Mutex<Link>> = Registry::new();
    let key = format!(
        "{host}:{port} slot {} connected {} size {}",
        opts.slot, opts.connected, opts.connection_size
    );
    LINKS.shared(key, || tokio::sync::Mutex::new(Link::new(host, port)))
}

/// An EtherNet/IP connection to one Logix controller.
pub struct EnipDriver {
    link: SharedLink,
    options: EnipOptions,
    health: Health,
    /// CIP requests this driver sent.
    requests: u64,
    /// The session's messaging mode and Forward Open refusal, as last seen.
    connected: bool,
    forward_open_refused: Option<String>,
    /// The last plan, and the tag list it was made for.
    plan: Option<CachedPlan>,
    /// CIP type of each tag address (lower case) as last read.
    types: HashMap<String, CipType>,
}

fn bad(reason: impl Into<String>, ts: i64) -> Sample {
    Sample {
        value: None,
        quality: Quality::bad(reason),
        source_ts_us: Some(ts),
    }
}

/// A sample from a raw value of CIP type `ty`, or Bad `config_error` when
/// the type does not fit the tag.
fn tag_sample(tag: &TagSpec, ty: CipType, raw: Value, ts: i64) -> Sample {
    if !codec::fits(ty, tag.data_type) {
        tracing::warn!(tag = %tag.name, address = %tag.address, cip_type = %ty.name(), data_type = %tag.data_type,
            "enip: the controller's type does not fit the tag's data type");
        return bad("config_error", ts);
    }
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

/// Checks that a reply answers `request` and has a success status
/// (0, or 0x06 when `partial_ok`).
fn check_reply<'a>(
    request: &[u8],
    bytes: &'a [u8],
    partial_ok: bool,
) -> Result<CipReply<'a>, CallError> {
    let reply = CipReply::parse(bytes).map_err(CallError::Comm)?;
    let ok = reply.status == 0 || (partial_ok && reply.status == codec::STATUS_PARTIAL);
    if !ok {
        return Err(CallError::Cip(reply.cip_status()));
    }
    let want = request.first().copied().unwrap_or(0) | codec::service::REPLY;
    if reply.service != want {
        return Err(CallError::Comm(format!(
            "reply service 0x{:02X} does not answer request service 0x{:02X}",
            reply.service,
            want & 0x7F
        )));
    }
    Ok(reply)
}

/// What one read returned: the type and the raw bytes of all its elements,
/// or why it failed; `Partial` when a Read Tag said 0x06 (redo fragmented).
enum ReadResult {
    Data(CipType, Vec<u8>),
    Partial,
    Failed(CallError),
}

fn read_result(request: &[u8], bytes: &[u8]) -> ReadResult {
    match check_reply(request, bytes, true) {
        Err(e) => ReadResult::Failed(e),
        Ok(r) if r.status == codec::STATUS_PARTIAL => ReadResult::Partial,
        Ok(r) => match codec::typed_data(r.data) {
            Ok((ty, data)) => ReadResult::Data(ty, data.to_vec()),
            Err(e) => ReadResult::Failed(CallError::Comm(e)),
        },
    }
}

impl EnipDriver {
    /// A driver for the controller at `endpoint`. Does not connect: the
    /// first read does (or [`Driver::connect`]).
    pub fn new(endpoint: &str, options: EnipOptions) -> Result<EnipDriver> {
        let (host, port) = parse_endpoint(endpoint).map_err(Error::Config)?;
        options
            .validate()
            .map_err(|e| Error::Config(format!("enip options: {e}")))?;
        Ok(EnipDriver {
            link: shared_link(&host, port, &options),
            options,
            health: Health::Connecting,
            requests: 0,
            connected: false,
            forward_open_refused: None,
            plan: None,
            types: HashMap::new(),
        })
    }

    pub fn options(&self) -> &EnipOptions {
        &self.options
    }

    /// CIP requests sent so far (a Multiple Service Packet counts once;
    /// session and connection setup do not count).
    pub fn requests_sent(&self) -> u64 {
        self.requests
    }

    /// True while requests go over a Forward Open connection (as of this
    /// driver's last request).
    pub fn connected_messaging(&self) -> bool {
        self.connected
    }

    /// Why the controller refused the last Forward Open, if it did.
    pub fn forward_open_refused(&self) -> Option<&str> {
        self.forward_open_refused.as_deref()
    }

    /// Notes the shared session's state after using it.
    fn observe(&mut self, link: &Link) {
        self.health = link.health();
        self.connected = link.connected_messaging();
        self.forward_open_refused = link.forward_open_refused.clone();
    }

    /// Connects unless connected (`force`: even during the backoff).
    async fn ensure_connected(&mut self, force: bool) -> Result<(), CallError> {
        let link = self.link.clone();
        let mut link = link.lock().await;
        let r = link.ensure_connected(&self.options, force).await;
        self.observe(&link);
        r
    }

    /// Closes the connection and the session (best effort), for every
    /// driver sharing them.
    pub async fn close(&mut self) {
        let link = self.link.clone();
        let mut link = link.lock().await;
        link.close(&self.options).await;
        self.observe(&link);
    }

    fn plan_for(&mut self, tags: &[TagSpec]) -> Plan {
        let connected = self.connected;
        let key: Vec<(String, DataType)> = tags
            .iter()
            .map(|t| (t.address.clone(), t.data_type))
            .collect();
        if let Some((k, c, p)) = &self.plan {
            if *k == key && *c == connected {
                return p.clone();
            }
        }
        let p = plan::plan(tags, self.options.limits(connected));
        self.plan = Some((key, connected, p.clone()));
        p
    }

    async fn call(&mut self, cip: &[u8], force: bool) -> Result<Vec<u8>, CallError> {
        let link = self.link.clone();
        let mut link = link.lock().await;
        let before = link.requests;
        let r = link.call(cip, &self.options, force).await;
        self.requests += link.requests - before;
        self.observe(&link);
        r
    }

    /// Reads with Read Tag Fragmented until the controller says complete.
    async fn read_fragmented(&mut self, read: &Read) -> Result<(CipType, Vec<u8>), CallError> {
        let mut data = Vec::new();
        let mut ty: Option<CipType> = None;
        // Upper bound of what the elements can take: stops a device that
        // keeps saying "partial".
        let bound = read.elements as usize * (codec::LOGIX_STRING_SIZE + 2);
        loop {
            let req = codec::read_tag_fragmented(&read.epath, read.elements, data.len() as u32);
            let bytes = self.call(&req, false).await?;
            let reply = check_reply(&req, &bytes, true)?;
            let (t, chunk) = codec::typed_data(reply.data).map_err(CallError::Comm)?;
            if ty.is_some_and(|prev| prev != t) {
                return Err(CallError::Comm(format!(
                    "fragment type {} changed from an earlier fragment",
                    t.name()
                )));
            }
            ty = Some(t);
            data.extend_from_slice(chunk);
            if reply.status == 0 {
                return Ok((t, data));
            }
            if chunk.is_empty() || data.len() > bound {
                return Err(CallError::Comm(format!(
                    "read of {}: partial transfer that does not progress ({} bytes so far)",
                    read.path,
                    data.len()
                )));
            }
        }
    }

    /// One read sent alone: Read Tag, falling back to fragmented on 0x06.
    async fn read_single(&mut self, read: &Read) -> Result<(CipType, Vec<u8>), CallError> {
        let req = read.request();
        let bytes = self.call(&req, false).await?;
        match read_result(&req, &bytes) {
            ReadResult::Data(t, d) => Ok((t, d)),
            ReadResult::Partial => self.read_fragmented(read).await,
            ReadResult::Failed(e) => Err(e),
        }
    }

    /// The reads of one Multiple Service Packet; per read its result.
    async fn read_packed(&mut self, reads: &[&Read]) -> Vec<ReadResult> {
        let requests: Vec<Vec<u8>> = reads.iter().map(|r| r.request()).collect();
        let msp = codec::multiple_service_packet(&requests);
        let failed_all = |e: CallError| {
            reads
                .iter()
                .map(|_| ReadResult::Failed(e.clone()))
                .collect()
        };
        let bytes = match self.call(&msp, false).await {
            Ok(b) => b,
            Err(e) => return failed_all(e),
        };
        let reply = match CipReply::parse(&bytes) {
            Ok(r) if r.status == 0 || r.status == codec::STATUS_EMBEDDED_ERROR => r,
            Ok(r) => return failed_all(CallError::Cip(r.cip_status())),
            Err(e) => return failed_all(CallError::Comm(e)),
        };
        match codec::multiple_service_replies(reply.data) {
            Ok(replies) if replies.len() == reads.len() => requests
                .iter()
                .zip(replies)
                .map(|(req, rep)| read_result(req, rep))
                .collect(),
            Ok(replies) => failed_all(CallError::Comm(format!(
                "multiple service reply has {} replies for {} requests",
                replies.len(),
                reads.len()
            ))),
            Err(e) => failed_all(CallError::Comm(e)),
        }
    }

    /// Splits a read's data into samples for its tags.
    fn fill(
        &mut self,
        tags: &[TagSpec],
        plan: &Plan,
        r: usize,
        ty: CipType,
        data: &[u8],
        out: &mut [Option<Sample>],
    ) {
        let read = &plan.reads[r];
        let ts = now_us();
        match codec::decode_values(ty, data, read.elements as usize) {
            Ok(values) => {
                for &i in &read.tags {
                    let slot = plan.slots[i].as_ref().expect("planned");
                    self.types
                        .insert(tags[i].address.trim().to_ascii_lowercase(), ty);
                    out[i] = Some(tag_sample(&tags[i], ty, values[slot.element].clone(), ts));
                }
            }
            Err(e) => {
                let config = e.contains("not an atomic type");
                tracing::warn!(read = %read.path, error = %e, "enip: cannot decode reply");
                for &i in &read.tags {
                    out[i] = Some(bad(
                        if config {
                            "config_error"
                        } else {
                            "comm_failure"
                        },
                        ts,
                    ));
                }
            }
        }
    }

    /// A tag read alone (isolation after a failed multi-element read).
    async fn read_alone(&mut self, tag: &TagSpec) -> Sample {
        let Ok(path) = TagPath::parse(&tag.address) else {
            return bad("config_error", now_us());
        };
        let read = Read {
            epath: path.epath(),
            path,
            elements: 1,
            tags: vec![0],
            reply_size: 0,
            fragmented: false,
        };
        match self.read_single(&read).await {
            Ok((ty, data)) => match codec::decode_values(ty, &data, 1) {
                Ok(mut v) => {
                    self.types
                        .insert(tag.address.trim().to_ascii_lowercase(), ty);
                    tag_sample(tag, ty, v.remove(0), now_us())
                }
                Err(e) => {
                    tracing::warn!(tag = %tag.name, error = %e, "enip: cannot decode reply");
                    bad("comm_failure", now_us())
                }
            },
            Err(e) => {
                tracing::debug!(tag = %tag.name, error = %e, "enip: read failed");
                bad(e.reason(), now_us())
            }
        }
    }

    /// Handles one read's outcome: samples, isolation, or fragmented redo.
    async fn settle(
        &mut self,
        tags: &[TagSpec],
        plan: &Plan,
        r: usize,
        result: ReadResult,
        out: &mut [Option<Sample>],
    ) -> Option<CallError> {
        let read = &plan.reads[r];
        let result = match result {
            ReadResult::Partial => match self.read_fragmented(read).await {
                Ok((t, d)) => ReadResult::Data(t, d),
                Err(e) => ReadResult::Failed(e),
            },
            other => other,
        };
        match result {
            ReadResult::Data(ty, data) => self.fill(tags, plan, r, ty, &data, out),
            ReadResult::Failed(e) if e.is_transport() => return Some(e),
            ReadResult::Failed(e) if read.elements > 1 => {
                tracing::debug!(read = %read.path, error = %e, "enip: array read refused, reading its elements one by one");
                for &i in &read.tags {
                    out[i] = Some(self.read_alone(&tags[i]).await);
                }
            }
            ReadResult::Failed(e) => {
                tracing::debug!(read = %read.path, error = %e, "enip: read refused");
                let ts = now_us();
                for &i in &read.tags {
                    out[i] = Some(bad(e.reason(), ts));
                }
            }
            ReadResult::Partial => {}
        }
        None
    }

    /// Sends the batches of a plan.
    async fn run_plan(&mut self, tags: &[TagSpec], plan: &Plan, out: &mut [Option<Sample>]) {
        for batch in &plan.batches {
            let reads: Vec<usize> = match batch {
                Batch::Single(r) | Batch::Fragmented(r) => vec![*r],
                Batch::Multiple(rs) => rs.clone(),
            };
            let results = match batch {
                Batch::Single(r) => vec![match self.read_single(&plan.reads[*r]).await {
                    Ok((t, d)) => ReadResult::Data(t, d),
                    Err(e) => ReadResult::Failed(e),
                }],
                Batch::Fragmented(r) => vec![match self.read_fragmented(&plan.reads[*r]).await {
                    Ok((t, d)) => ReadResult::Data(t, d),
                    Err(e) => ReadResult::Failed(e),
                }],
                Batch::Multiple(rs) => {
                    let list: Vec<&Read> = rs.iter().map(|&r| &plan.reads[r]).collect();
                    self.read_packed(&list).await
                }
            };
            for (r, result) in reads.into_iter().zip(results) {
                if let Some(e) = self.settle(tags, plan, r, result, out).await {
                    // The link is down: every tag not read yet shares the reason.
                    tracing::debug!(error = %e, "enip: read failed");
                    let ts = now_us();
                    for s in out.iter_mut().filter(|s| s.is_none()) {
                        *s = Some(bad(e.reason(), ts));
                    }
                    return;
                }
            }
        }
    }

    /// The CIP type of a tag: as last read, or read now.
    async fn learn_type(&mut self, tag: &TagSpec) -> Result<CipType> {
        let key = tag.address.trim().to_ascii_lowercase();
        if let Some(t) = self.types.get(&key) {
            return Ok(*t);
        }
        let s = self.read_alone(tag).await;
        match self.types.get(&key) {
            Some(t) => Ok(*t),
            None => Err(reason_error(&tag.name, &s.quality.reason)),
        }
    }
}

fn reason_error(tag: &str, reason: &str) -> Error {
    let m = format!("tag '{tag}': reading its type failed: {reason}");
    match reason {
        "timeout" => Error::Timeout(m),
        "not_connected" => Error::NotConnected(m),
        "comm_failure" => Error::Io(m),
        "config_error" => Error::Config(m),
        _ => Error::Rejected(m),
    }
}

#[async_trait::async_trait]
impl Driver for EnipDriver {
    async fn connect(&mut self) -> Result<()> {
        self.ensure_connected(true)
            .await
            .map_err(CallError::into_error)
    }

    async fn read(&mut self, tags: &[TagSpec]) -> Vec<Sample> {
        let mut out: Vec<Option<Sample>> = vec![None; tags.len()];
        if tags.is_empty() {
            return Vec::new();
        }
        // Connect first: the plan's budget depends on the messaging mode.
        if let Err(e) = self.ensure_connected(false).await {
            let ts = now_us();
            return tags
                .iter()
                .map(|t| match check_tag(t) {
                    Err(_) => bad("config_error", ts),
                    Ok(_) => bad(e.reason(), ts),
                })
                .collect();
        }
        let plan = self.plan_for(tags);
        for (i, slot) in plan.slots.iter().enumerate() {
            if let Err(e) = slot {
                tracing::debug!(tag = %tags[i].name, error = %e, "enip: tag not read");
                out[i] = Some(bad("config_error", now_us()));
            }
        }
        self.run_plan(tags, &plan, &mut out).await;
        out.into_iter()
            .map(|s| s.unwrap_or_else(|| bad("comm_failure", now_us())))
            .collect()
    }

    async fn write(&mut self, tag: &TagSpec, value: Value) -> Result<Value> {
        if !tag.writable {
            return Err(Error::Config(format!("tag '{}' is not writable", tag.name)));
        }
        let path = check_tag(tag).map_err(Error::Config)?;
        let raw = prepare_write(&value, tag.data_type, tag.scale.as_ref())
            .map_err(|e| Error::Config(format!("tag '{}': {e}", tag.name)))?;
        self.ensure_connected(true)
            .await
            .map_err(CallError::into_error)?;
        let ty = self.learn_type(tag).await?;
        if !codec::fits(ty, tag.data_type) {
            return Err(Error::Config(format!(
                "tag '{}': the controller's {} does not fit data type {}",
                tag.name,
                ty.name(),
                tag.data_type
            )));
        }
        let data = codec::encode_value(ty, &raw)
            .map_err(|e| Error::Config(format!("tag '{}': {e}", tag.name)))?;
        let req = codec::write_tag(&path.epath(), ty, 1, &data);
        let result = match self.call(&req, true).await {
            Ok(bytes) => check_reply(&req, &bytes, false).map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            if let CallError::Cip(_) = e {
                // The type may have changed (a download): learn it again.
                self.types.remove(&tag.address.trim().to_ascii_lowercase());
            }
            return Err(prefix(e.into_error(), &tag.name));
        }
        let back = self.read_alone(tag).await;
        let read_back = back.value.ok_or_else(|| {
            Error::Io(format!(
                "tag '{}': written, but the read-back failed: {}",
                tag.name, back.quality.reason
            ))
        })?;
        let back_raw = prepare_write(&read_back, tag.data_type, tag.scale.as_ref()).ok();
        let same = back_raw.and_then(|b| codec::encode_value(ty, &b).ok()) == Some(data);
        if !same {
            return Err(Error::Rejected(format!(
                "tag '{}': wrote {value} but the controller reads back {read_back}",
                tag.name
            )));
        }
        Ok(read_back)
    }

    async fn browse(&mut self, _node: Option<&str>) -> Result<Vec<BrowseItem>> {
        Err(Error::Config(
            "browsing Logix tags is not supported yet: add tags by name (Counts[3], Program:Main.Tag)".into(),
        ))
    }

    fn health(&self) -> Health {
        self.health.clone()
    }
}

fn prefix(e: Error, tag: &str) -> Error {
    match e {
        Error::Rejected(m) => Error::Rejected(format!("tag '{tag}': {m}")),
        Error::Timeout(m) => Error::Timeout(format!("tag '{tag}': {m}")),
        Error::Io(m) => Error::Io(format!("tag '{tag}': {m}")),
        Error::NotConnected(m) => Error::NotConnected(format!("tag '{tag}': {m}")),
        Error::Config(m) => Error::Config(format!("tag '{tag}': {m}")),
    }
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scale;

    fn tag(address: &str, data_type: DataType) -> TagSpec {
        TagSpec {
            name: "t1".into(),
            ..TagSpec::new(address, data_type)
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("plc1").unwrap(), ("plc1".into(), 44818));
        assert_eq!(
            parse_endpoint("10.0.0.5:2222").unwrap(),
            ("10.0.0.5".into(), 2222)
        );
        assert_eq!(
            parse_endpoint("[::1]:44818").unwrap(),
            ("::1".into(), 44818)
        );
        assert_eq!(
            parse_endpoint("[fe80::1]").unwrap(),
            ("fe80::1".into(), 44818)
        );
        for (bad, why) in [
            ("", "empty"),
            (":44818", "host is missing"),
            ("plc:0", "port '0'"),
            ("plc:x", "port 'x'"),
            ("::1", "brackets"),
            ("[::1", "missing ']'"),
        ] {
            let e = validate_endpoint(bad).unwrap_err();
            assert!(
                e.contains(why) && e.contains(&format!("'{bad}'")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn tags_are_validated_with_their_name_and_address() {
        assert!(validate_tag(&tag("Program:Main.Counts[3]", DataType::I32)).is_ok());
        let e = validate_tag(&tag("Counts[3", DataType::I32)).unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if m.contains("tag 't1'") && m.contains("'Counts[3'")),
            "{e:?}"
        );
        let mut t = tag("Name", DataType::String);
        t.scale = Some(Scale {
            raw_lo: 0.0,
            raw_hi: 1.0,
            eng_lo: 0.0,
            eng_hi: 2.0,
        });
        assert!(
            matches!(validate_tag(&t), Err(Error::Config(m)) if m.contains("only numeric tags scale"))
        );
    }

    #[test]
    fn writes_are_prepared_for_the_data_type() {
        assert_eq!(
            prepare_write(&Value::Int(5), DataType::I16, None),
            Ok(Value::Int(5))
        );
        assert!(prepare_write(&Value::Int(40000), DataType::I16, None).is_err());
        assert_eq!(
            prepare_write(&Value::Text("on".into()), DataType::Bool, None),
            Ok(Value::Bool(true))
        );
        let s = Scale {
            raw_lo: 0.0,
            raw_hi: 32000.0,
            eng_lo: 0.0,
            eng_hi: 100.0,
        };
        assert_eq!(
            prepare_write(&Value::Float(50.0), DataType::I16, Some(&s)),
            Ok(Value::Int(16000))
        );
        assert!(prepare_write(&Value::Bool(true), DataType::F32, None).is_err());
    }

    #[test]
    fn options_are_checked() {
        let bad = EnipOptions {
            connection_size: 50,
            ..Default::default()
        };
        assert!(
            matches!(EnipDriver::new("plc", bad), Err(Error::Config(m)) if m.contains("connection_size 50"))
        );
        let o = EnipOptions {
            connection_size: 4002,
            ..Default::default()
        };
        assert_eq!(o.limits(true).budget, 4000);
        assert_eq!(
            o.limits(false).budget,
            502,
            "unconnected messages stay within 504 bytes"
        );
    }

    #[tokio::test]
    async fn refused_connection_is_comm_failure_then_not_connected_during_backoff() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let opts = EnipOptions {
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
            ..Default::default()
        };
        let mut d = EnipDriver::new(&format!("127.0.0.1:{port}"), opts).unwrap();
        let tags = [tag("A", DataType::I32), tag("B[", DataType::I32)];
        let s = d.read(&tags).await;
        assert_eq!(s[0].quality, Quality::bad("comm_failure"));
        assert_eq!(s[1].quality, Quality::bad("config_error"));
        assert!(matches!(d.health(), Health::Down(_)));
        let s = tokio::time::timeout(Duration::from_secs(30), d.read(&tags))
            .await
            .expect("no wait in backoff");
        assert_eq!(s[0].quality, Quality::bad("not_connected"));
    }

    #[tokio::test]
    async fn silent_device_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let opts = EnipOptions {
            timeout: Duration::from_millis(100),
            ..Default::default()
        };
        let mut d = EnipDriver::new(&addr.to_string(), opts).unwrap();
        let s = d.read(&[tag("A", DataType::I32)]).await;
        assert_eq!(s[0].quality, Quality::bad("timeout"));
        let e = list_identity(addr, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    }
}
