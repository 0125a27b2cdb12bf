//! OPC UA client driver, on `async-opcua` (the maintained fork of the `opcua`
//! crate: pure-Rust crypto, tokio-based).
//!
//! # Addresses
//!
//! A tag's address is a NodeId string: `ns=2;s=Temperature`, `ns=2;i=1001`,
//! `i=2258`, GUID (`g=`) and opaque (`b=`) forms, and `nsu=<uri>;s=...` to name
//! the namespace by URI instead of by index. [`validate_address`] checks one
//! and says what is wrong (the grammar is in `opcua/address.rs`). A tag's
//! byte order, word order and length are Modbus notions, ignored here: OPC UA
//! values carry their own type.
//!
//! # How values are read: subscriptions first, polling as the fallback
//!
//! OPC UA servers push changes: a client creates a *subscription* and
//! *monitored items* in it, and the server samples the nodes and publishes
//! changes. That is cheaper for the server and the network than reading every
//! node on every poll, and it gives the device's own source timestamps. So on
//! each connection the driver creates one subscription and, for every node it
//! has been asked to read (the first [`Driver::read`] of a tag registers it),
//! one monitored item (queue size 1: the latest value is all a read returns).
//! `read` then answers from the values received, without a round trip.
//!
//! It polls, with the Read service, when:
//! - the options turn subscriptions off ([`OpcUaOptions::use_subscriptions`]),
//!   or the server refuses CreateSubscription: the whole connection polls;
//! - the server refuses to monitor a node (status per item, e.g.
//!   `BadNodeIdUnknown`): that node is polled, so its reads report the status;
//! - a monitored node has no value yet (the first read after connecting);
//! - the subscription has gone quiet: no publish response, not even a
//!   keep-alive, for three keep-alive periods. A server that silently dropped
//!   the subscription then still gives fresh values;
//! - a read on the connection ran out of time or failed since the last
//!   publish: a hung server's last subscribed values are not handed out as
//!   Good while its Read calls time out.
//!
//! [`OpcUaDriver::status`] shows the path in use ([`ReadPath`]) and counters
//! (data changes received, Read calls made), so tests and metrics can tell.
//! A node no read has asked for in [`OpcUaOptions::forget_after`] (its tag
//! was deleted) loses its monitored item.
//!
//! # Connections
//!
//! A supervisor task per driver connects, and after a failure or a lost
//! connection reconnects with exponential backoff (`reconnect_initial`
//! doubling up to `reconnect_max`). Every connection is a new session with a
//! new subscription and an empty value cache (why: `opcua/connection.rs`).
//! While the server is unreachable `read` returns Bad `not_connected` at once;
//! it never waits for a connection attempt. Whatever the state, a read waits
//! at most one `request_timeout` in all (subscribing new nodes, Read calls,
//! the connection's locks share that budget): a hung server that still holds
//! the TCP connection gives Bad `timeout` samples, until failed keep-alives
//! close the session. `read` needs no `connect` first: the first read starts
//! the supervisor and registers its nodes, which the new connection then
//! subscribes to. `connect` starts the supervisor if needed
//! and waits for the outcome of one attempt, so configuration errors (wrong
//! password, untrusted certificate, no matching endpoint) come back from it
//! as errors that say what to fix.
//!
//! # Timestamps
//!
//! A sample carries the server's timestamp (source, else server) when the
//! value changed since the tag's last sample, and the time of the read
//! otherwise (also for Bad samples of our own, like `not_connected`). Per tag,
//! timestamps only go forward, so the newest sample of a tag is always the
//! latest read: an unchanged variable whose source timestamp predates an
//! outage still replaces the outage's Bad samples when it is read again
//! (more in `stamp`, below).
//!
//! # Security
//!
//! [`Security::None`], or Basic256Sha256 with `Sign` or `SignAndEncrypt`.
//! Secure endpoints need a client certificate: it is read from, or on first
//! use generated into, the PKI directory (`own/cert.der`,
//! `private/private.pem`; a self-signed RSA-2048 certificate whose URI is
//! [`OpcUaOptions::application_uri`]). The server's certificate must be
//! trusted: unknown server certificates are stored in `<pki>/rejected` and the
//! connection fails with an error naming that file's directory; move the
//! certificate to `<pki>/trusted` to trust it. Only when
//! [`OpcUaOptions::trust_server_certs`] is set are unknown server
//! certificates trusted (and stored in `trusted`) automatically: convenient
//! on a closed network, but it gives up the protection against a server being
//! impersonated. Server certificates are also checked for validity dates,
//! host name and application URI. The server must in turn trust the client's
//! certificate (`<pki>/own/cert.der`); many servers keep it in a "rejected"
//! list until an administrator accepts it.
//!
//! # Quality
//!
//! Good, Uncertain and Bad statuses of a value map to the same levels, with
//! the server's status name as the reason (`BadNodeIdUnknown`,
//! `UncertainLastUsableValue`). Our own reasons: `not_connected` (no session),
//! `comm_failure` (the connection failed during the call), `timeout`,
//! `config_error` (a malformed address, or a node whose value does not fit the
//! tag's type), `out_of_range` (Bad: the value does not fit the tag's type;
//! Uncertain: it is outside the scale's raw range).

mod address;
mod browse;
mod connection;
mod convert;
pub mod discovery;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opcua::crypto::SecurityPolicy;
use opcua::types::{
    AttributeId, DataValue, MessageSecurityMode, NodeId, NumericRange, ReadValueId, StatusCode,
    TimestampsToReturn, Variant, WriteValue,
};

pub use address::validate_address;
use address::{parse_address, NodeAddress};
use connection::{Conn, LinkState, Shared};
use convert::{reason, Builtin};

use crate::{BrowseItem, Driver, Error, Health, Quality, Result, Sample, TagSpec, Value};

/// Message security of the connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// No signing, no encryption (security policy None).
    #[default]
    None,
    /// Basic256Sha256, messages signed.
    Basic256Sha256Sign,
    /// Basic256Sha256, messages signed and encrypted.
    Basic256Sha256SignAndEncrypt,
}

impl Security {
    fn policy_and_mode(self) -> (SecurityPolicy, MessageSecurityMode) {
        match self {
            Security::None => (SecurityPolicy::None, MessageSecurityMode::None),
            Security::Basic256Sha256Sign => {
                (SecurityPolicy::Basic256Sha256, MessageSecurityMode::Sign)
            }
            Security::Basic256Sha256SignAndEncrypt => (
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::SignAndEncrypt,
            ),
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::None => "None",
            Security::Basic256Sha256Sign => "Basic256Sha256/Sign",
            Security::Basic256Sha256SignAndEncrypt => "Basic256Sha256/SignAndEncrypt",
        })
    }
}

impl FromStr for Security {
    type Err = String;

    /// `none`, `basic256sha256-sign` or `basic256sha256-signandencrypt`
    /// (case-insensitive; `/` works as well as `-`, as printed by Display).
    fn from_str(s: &str) -> std::result::Result<Security, String> {
        match s.to_ascii_lowercase().replace('/', "-").as_str() {
            "none" => Ok(Security::None),
            "basic256sha256-sign" => Ok(Security::Basic256Sha256Sign),
            "basic256sha256-signandencrypt" => Ok(Security::Basic256Sha256SignAndEncrypt),
            _ => Err(format!(
                "unknown OPC UA security {s:?}: expected none, basic256sha256-sign \
                 or basic256sha256-signandencrypt"
            )),
        }
    }
}

/// Who the client logs in as.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Identity {
    #[default]
    Anonymous,
    UserPassword {
        user: String,
        password: String,
    },
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("Anonymous"),
            Identity::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"***")
                .finish(),
        }
    }
}

/// Everything the driver needs to reach one server. Build with
/// [`OpcUaOptions::new`] and change the public fields.
#[derive(Clone, Debug)]
pub struct OpcUaOptions {
    /// `opc.tcp://host:port[/path]` (port 4840 when left out).
    pub endpoint: String,
    pub security: Security,
    pub identity: Identity,
    /// Client certificate and key (`own/`, `private/`), trusted and rejected
    /// server certificates (`trusted/`, `rejected/`). Required for secure
    /// endpoints; `None` uses a directory under the system temp dir, which is
    /// only sensible with [`Security::None`].
    pub pki_dir: Option<PathBuf>,
    /// Trust any server certificate on first sight (and store it in
    /// `trusted/`). Off by default: see the module docs.
    pub trust_server_certs: bool,
    /// Application URI of this client, also written into a generated
    /// certificate. Servers that check it need it to match the certificate.
    pub application_uri: String,
    pub application_name: String,
    /// Deadline of every request to the server.
    pub request_timeout: Duration,
    /// Deadline of one connection attempt (endpoints, channel, session,
    /// subscription).
    pub connect_timeout: Duration,
    /// Keep-alive reads on an idle session; three failures close it.
    pub keep_alive_interval: Duration,
    /// Monitored-item subscriptions where the server supports them (default);
    /// `false` always polls with Read.
    pub use_subscriptions: bool,
    /// How often the server sends changes. Match it to the poll interval.
    pub publishing_interval: Duration,
    /// How often the server samples monitored nodes (default: the publishing
    /// interval).
    pub sampling_interval: Option<Duration>,
    /// A node no read has asked for in this long loses its monitored item
    /// (its tag was deleted or moved); a later read subscribes it again.
    pub forget_after: Duration,
    /// First reconnect delay; it doubles up to `reconnect_max`.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl OpcUaOptions {
    pub fn new(endpoint: impl Into<String>) -> OpcUaOptions {
        OpcUaOptions {
            endpoint: endpoint.into(),
            security: Security::None,
            identity: Identity::Anonymous,
            pki_dir: None,
            trust_server_certs: false,
            application_uri: "urn:bifrost:opcua-client".into(),
            application_name: "Bifrost".into(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(15),
            keep_alive_interval: Duration::from_secs(5),
            use_subscriptions: true,
            publishing_interval: Duration::from_millis(500),
            sampling_interval: None,
            forget_after: Duration::from_secs(600),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
        }
    }

    /// Checks the options without touching the network.
    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_endpoint(&self.endpoint)?;
        if self.security != Security::None && self.pki_dir.is_none() {
            return Err(format!(
                "OPC UA security {} needs a PKI directory for the client certificate",
                self.security
            ));
        }
        if let Some(problem) = self
            .pki_dir
            .as_deref()
            .and_then(connection::pki_dir_problem)
        {
            return Err(problem);
        }
        if let Identity::UserPassword { user, .. } = &self.identity {
            if user.is_empty() {
                return Err("OPC UA user name is empty".into());
            }
        }
        for (name, d) in [
            ("request timeout", self.request_timeout),
            ("connect timeout", self.connect_timeout),
            ("keep-alive interval", self.keep_alive_interval),
            ("publishing interval", self.publishing_interval),
            ("first reconnect delay", self.reconnect_initial),
            ("forget_after", self.forget_after),
        ] {
            if d.is_zero() {
                return Err(format!("OPC UA {name} must be more than zero"));
            }
        }
        if self.reconnect_max < self.reconnect_initial {
            return Err("OPC UA reconnect_max must be at least reconnect_initial".into());
        }
        if self.application_uri.is_empty() {
            return Err("OPC UA application URI is empty".into());
        }
        Ok(())
    }

    fn pki_dir(&self) -> PathBuf {
        self.pki_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("bifrost-opcua-pki"))
    }
}

/// Checks an endpoint URL: `opc.tcp://host[:port][/path]`.
pub fn validate_endpoint(url: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid OPC UA endpoint {url:?}: {why} (expected opc.tcp://host:port[/path])"
        ))
    };
    let Some(rest) = url.strip_prefix("opc.tcp://") else {
        return bad("it must start with opc.tcp://");
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return bad("the host is missing");
    }
    if let Some((host, port)) = authority.rsplit_once(':') {
        if !host.ends_with(']') || authority.starts_with('[') {
            if host.is_empty() {
                return bad("the host is missing");
            }
            if port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
                return bad(&format!("port {port:?} is not a number from 1 to 65535"));
            }
        }
    }
    if opcua::core::comms::url::hostname_port_from_url(url, 4840).is_err() {
        return bad("it does not parse as a URL");
    }
    Ok(())
}

/// How reads get their values on the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPath {
    /// From monitored items of a subscription (nodes the server would not
    /// monitor are still polled: see [`OpcUaStatus::polled_nodes`]).
    Subscription,
    /// Read service calls on every read.
    Polling,
}

/// What the driver is doing, for tests, metrics and `debug` output.
#[derive(Clone, Debug, PartialEq)]
pub struct OpcUaStatus {
    pub health: Health,
    /// `None` while not connected.
    pub read_path: Option<ReadPath>,
    /// Why the connection polls, when it does.
    pub polling_reason: Option<String>,
    /// Nodes with a monitored item on the current connection.
    pub monitored_items: usize,
    /// Nodes the server refused to monitor, polled instead.
    pub polled_nodes: usize,
    /// Data change notifications received since the driver was made.
    pub data_changes: u64,
    /// Read service calls made by `read` (polling and first values).
    pub read_calls: u64,
    /// Reads that polled because the subscription had gone quiet.
    pub stale_fallbacks: u64,
    /// Sessions opened since the driver was made.
    pub connects: u64,
    /// Delay before the next attempt while down.
    pub retry_in: Option<Duration>,
}

/// A connection to one OPC UA server. See the module docs.
pub struct OpcUaDriver {
    shared: Arc<Shared>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
    /// Parsed tag addresses, by address string.
    parsed: HashMap<String, std::result::Result<NodeAddress, String>>,
    /// When nodes no longer read were last looked for.
    last_forget: Instant,
    /// The timestamp last returned per tag name: timestamps never go back.
    last_ts: HashMap<String, i64>,
}

impl OpcUaDriver {
    /// A driver for one server. Checks the options; does not connect (that
    /// happens on [`Driver::connect`] or the first [`Driver::read`]).
    pub fn new(opts: OpcUaOptions) -> Result<OpcUaDriver> {
        opts.validate().map_err(Error::Config)?;
        Ok(OpcUaDriver {
            shared: Arc::new(Shared::new(opts)),
            supervisor: None,
            parsed: HashMap::new(),
            last_forget: Instant::now(),
            last_ts: HashMap::new(),
        })
    }

    pub fn options(&self) -> &OpcUaOptions {
        &self.shared.opts
    }

    pub fn status(&self) -> OpcUaStatus {
        let c = &self.shared.counters;
        let mut status = OpcUaStatus {
            health: self.health(),
            read_path: None,
            polling_reason: None,
            monitored_items: 0,
            polled_nodes: 0,
            data_changes: c.data_changes.load(Ordering::Relaxed),
            read_calls: c.read_calls.load(Ordering::Relaxed),
            stale_fallbacks: c.stale_fallbacks.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            retry_in: None,
        };
        match &*self.shared.state.lock().unwrap() {
            LinkState::Connected(conn) => {
                status.read_path = Some(conn.read_path());
                status.polling_reason = conn.polling_reason.clone();
                if let Ok(items) = conn.items.try_lock() {
                    status.monitored_items = items.monitored.len();
                    status.polled_nodes = items.refused.len();
                }
            }
            LinkState::Down { retry_in, .. } if *retry_in != Duration::MAX => {
                status.retry_in = Some(*retry_in)
            }
            _ => {}
        }
        status
    }

    /// Closes the session politely (CloseSession, deleting the subscription)
    /// and stops reconnecting, waiting for the server's answer. Dropping the
    /// driver does the same in the background.
    pub async fn close(&mut self) {
        if let Some(task) = self.supervisor.take() {
            task.abort();
        }
        let old = std::mem::replace(&mut *self.shared.state.lock().unwrap(), LinkState::Idle);
        if let LinkState::Connected(conn) = old {
            let _ =
                tokio::time::timeout(self.shared.opts.request_timeout, conn.session.disconnect())
                    .await;
        }
    }

    fn ensure_started(&mut self) {
        if self.supervisor.is_none() {
            *self.shared.state.lock().unwrap() = LinkState::Connecting;
            self.supervisor = Some(tokio::spawn(connection::supervise(self.shared.clone())));
        }
    }

    fn parse(&mut self, address: &str) -> std::result::Result<NodeAddress, String> {
        if self.parsed.len() > 100_000 {
            self.parsed.clear();
        }
        self.parsed
            .entry(address.to_string())
            .or_insert_with(|| parse_address(address))
            .clone()
    }

    /// The current connection, or the error saying why there is none.
    fn conn_or_error(&self) -> Result<Arc<Conn>> {
        match &*self.shared.state.lock().unwrap() {
            LinkState::Connected(conn) => Ok(conn.clone()),
            LinkState::Down { error, .. } => Err(Error::NotConnected(error.to_string())),
            LinkState::Idle | LinkState::Connecting => Err(Error::NotConnected(format!(
                "opcua: not connected to {} yet",
                self.shared.opts.endpoint
            ))),
        }
    }

    fn resolve(&mut self, conn: &Conn, address: &str) -> Result<NodeId> {
        self.parse(address)
            .and_then(|a| a.resolve(&conn.namespaces))
            .map_err(Error::Config)
    }

    /// Stops monitoring nodes no read has asked for in `forget_after` (their
    /// tags were deleted or moved), checking at most every tenth of that.
    async fn forget_unread(&mut self, conn: &Conn, now: Instant, deadline: tokio::time::Instant) {
        let forget_after = self.shared.opts.forget_after;
        if now.duration_since(self.last_forget) < forget_after / 10 {
            return;
        }
        self.last_forget = now;
        let (gone, kept): (Vec<NodeId>, HashSet<NodeId>) = {
            let mut wanted = self.shared.wanted.lock().unwrap();
            let stale: Vec<NodeAddress> = wanted
                .iter()
                .filter(|(_, last)| now.duration_since(**last) > forget_after)
                .map(|(a, _)| a.clone())
                .collect();
            if stale.is_empty() {
                return;
            }
            for a in &stale {
                wanted.remove(a);
            }
            let kept = wanted
                .keys()
                .filter_map(|a| a.resolve(&conn.namespaces).ok())
                .collect();
            let gone = stale
                .iter()
                .filter_map(|a| a.resolve(&conn.namespaces).ok())
                .collect();
            (gone, kept)
        };
        // Two addresses (ns= and nsu=) may name one node: keep it if either is read.
        let gone: Vec<NodeId> = gone.into_iter().filter(|n| !kept.contains(n)).collect();
        conn.forget(&gone, deadline).await;
    }

    /// The samples of one read, with the timestamps the server gave (or
    /// none). Waits for nothing past one `request_timeout` from its start.
    async fn read_samples(&mut self, tags: &[TagSpec]) -> Vec<Sample> {
        let bad = |reason: &str| Sample {
            value: None,
            quality: Quality::bad(reason),
            source_ts_us: None,
        };
        // Malformed addresses are settled first: they are wrong whatever the
        // connection. The others are registered for monitoring, also while
        // down, so the next connection subscribes to them at once.
        let now = Instant::now();
        let mut samples: Vec<Option<Sample>> = vec![None; tags.len()];
        let mut addresses: Vec<Option<NodeAddress>> = vec![None; tags.len()];
        for (i, tag) in tags.iter().enumerate() {
            match self.parse(&tag.address) {
                Ok(address) => {
                    let mut wanted = self.shared.wanted.lock().unwrap();
                    match wanted.get_mut(&address) {
                        Some(last) => *last = now,
                        None => {
                            wanted.insert(address.clone(), now);
                        }
                    }
                    addresses[i] = Some(address);
                }
                Err(why) => {
                    tracing::debug!(tag = %tag.name, "opcua: {why}");
                    samples[i] = Some(bad(reason::CONFIG_ERROR));
                }
            }
        }
        let Some(conn) = self.shared.conn() else {
            return samples
                .into_iter()
                .map(|s| s.unwrap_or_else(|| bad(reason::NOT_CONNECTED)))
                .collect();
        };
        let shared = self.shared.clone();
        let opts = &shared.opts;
        let timeout = opts.request_timeout;
        // Everything below shares one budget: a read that finds the server
        // hung, or the connection busy, gives up after one request timeout.
        let deadline = tokio::time::Instant::now() + timeout;
        self.forget_unread(&conn, now, deadline).await;

        let mut nodes: Vec<Option<NodeId>> = vec![None; tags.len()];
        for (i, address) in addresses.iter().enumerate() {
            let Some(address) = address else { continue };
            match address.resolve(&conn.namespaces) {
                Ok(node) => nodes[i] = Some(node),
                Err(why) => {
                    tracing::debug!(tag = %tags[i].name, "opcua: {why}");
                    samples[i] = Some(bad(reason::CONFIG_ERROR));
                }
            }
        }

        // Subscribed values where we have them.
        let mut cached: HashMap<NodeId, DataValue> = HashMap::new();
        if conn.subscription.is_some() {
            let all: Vec<NodeId> = nodes.iter().flatten().cloned().collect();
            conn.ensure_monitored(&all, timeout, deadline).await;
            let quiet_limit = (opts.publishing_interval * connection::KEEP_ALIVE_COUNT * 3)
                .max(opts.request_timeout);
            let last_publish = *conn.last_publish.lock().unwrap();
            let failed_since = conn
                .last_failure
                .lock()
                .unwrap()
                .is_some_and(|failed| failed >= last_publish);
            let quiet = failed_since || last_publish.elapsed() > quiet_limit;
            if quiet {
                self.shared
                    .counters
                    .stale_fallbacks
                    .fetch_add(1, Ordering::Relaxed);
            } else if let Ok(items) = tokio::time::timeout_at(deadline, conn.items.lock()).await {
                let values = conn.values.lock().unwrap();
                for node in nodes.iter().flatten() {
                    if items.monitored.contains_key(node) {
                        if let Some(dv) = values.get(node) {
                            cached.insert(node.clone(), dv.clone());
                        }
                    }
                }
            }
        }

        // The rest with Read calls.
        let mut to_poll: Vec<NodeId> = Vec::new();
        let mut queued: HashSet<&NodeId> = HashSet::new();
        for node in nodes.iter().flatten() {
            if !cached.contains_key(node) && queued.insert(node) {
                to_poll.push(node.clone());
            }
        }
        let mut polled: HashMap<NodeId, DataValue> = HashMap::new();
        let mut poll_failure: Option<Quality> = None;
        // Servers cap the nodes per Read (MaxNodesPerRead): ask in chunks.
        for chunk in to_poll.chunks(conn.nodes_per_read) {
            if tokio::time::Instant::now() >= deadline {
                poll_failure = Some(Quality::bad(reason::TIMEOUT));
                break;
            }
            self.shared
                .counters
                .read_calls
                .fetch_add(1, Ordering::Relaxed);
            let reads: Vec<ReadValueId> =
                chunk.iter().cloned().map(ReadValueId::new_value).collect();
            let call = conn.session.read(&reads, TimestampsToReturn::Both, 0.0);
            match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(values)) if values.len() == chunk.len() => {
                    polled.extend(chunk.iter().cloned().zip(values));
                }
                Ok(Ok(_)) => poll_failure = Some(Quality::bad("BadUnexpectedError")),
                Ok(Err(e)) => {
                    tracing::debug!("opcua: read of {} nodes failed: {e}", chunk.len());
                    poll_failure = Some(convert::service_failure_quality(e.status()));
                }
                Err(_) => poll_failure = Some(Quality::bad(reason::TIMEOUT)),
            }
            if poll_failure.is_some() {
                // The connection is likely gone or hung: do not wait again.
                break;
            }
        }
        if poll_failure.is_some() {
            *conn.last_failure.lock().unwrap() = Some(Instant::now());
        }

        tags.iter()
            .zip(samples)
            .zip(nodes)
            .map(|((tag, settled), node)| {
                if let Some(s) = settled {
                    return s;
                }
                let node = node.expect("unsettled tags have a node");
                match cached.get(&node).or_else(|| polled.get(&node)) {
                    Some(dv) => convert::sample_from_data_value(dv, tag),
                    None => Sample {
                        value: None,
                        quality: poll_failure
                            .clone()
                            .unwrap_or_else(|| Quality::bad(reason::COMM_FAILURE)),
                        source_ts_us: None,
                    },
                }
            })
            .collect()
    }

    /// Reads attributes of one node in one call.
    async fn read_attributes(
        &self,
        conn: &Conn,
        node: &NodeId,
        attributes: &[AttributeId],
    ) -> Result<Vec<DataValue>> {
        let reads: Vec<ReadValueId> = attributes
            .iter()
            .map(|a| ReadValueId::new(node.clone(), *a))
            .collect();
        let what = format!("read {node}");
        let call = conn.session.read(&reads, TimestampsToReturn::Both, 0.0);
        match tokio::time::timeout(self.shared.opts.request_timeout, call).await {
            Ok(Ok(values)) if values.len() == reads.len() => Ok(values),
            Ok(Ok(_)) => Err(Error::Rejected(format!(
                "opcua: {what}: wrong number of results"
            ))),
            Ok(Err(e)) => Err(service_error(&what, e.status(), &e.to_string())),
            Err(_) => Err(Error::Timeout(format!("opcua: {what}: no answer in time"))),
        }
    }
}

impl Drop for OpcUaDriver {
    /// Stops reconnecting and closes an open session in the background
    /// (CloseSession), so a driver made for one write does not leave a
    /// session on the server until it times out: small servers allow few.
    fn drop(&mut self) {
        if let Some(task) = self.supervisor.take() {
            task.abort();
        }
        let old = std::mem::replace(&mut *self.shared.state.lock().unwrap(), LinkState::Idle);
        if let (LinkState::Connected(conn), Ok(runtime)) =
            (old, tokio::runtime::Handle::try_current())
        {
            let timeout = self.shared.opts.request_timeout;
            runtime.spawn(async move {
                let _ = tokio::time::timeout(timeout, conn.session.disconnect()).await;
            });
        }
    }
}

/// The timestamp of a sample. The server's (source, else server timestamp)
/// when the value changed since the tag's last sample, that is when it is
/// later than the timestamp last returned for the tag (for a tag's first
/// sample: later than now); else the time of the read. Always later than the
/// timestamp last returned for the tag.
///
/// Why: the samples of a tag are stored by timestamp and the newest one is
/// its current value. Bad samples while the server cannot be read (Bad
/// `not_connected`, `timeout`) carry the time of the read. A variable that
/// has not changed since before then comes back with its old source
/// timestamp; stored by that, its Good samples would all be older than the
/// last Bad one, and the tag would show Bad for as long as the value does not
/// change. The same goes for a new driver (the poller makes one on every
/// configuration change) after Bad samples of the one before it, and for a
/// server whose clock is ahead of ours, which would hide Bad samples behind
/// its last Good one.
fn stamp(server_ts: Option<i64>, last: Option<i64>, now_us: i64) -> i64 {
    let floor = match last {
        Some(last) => last.saturating_add(1),
        None => now_us,
    };
    match server_ts {
        Some(ts) if ts >= floor => ts,
        _ => now_us.max(floor),
    }
}

/// A failed service call as a driver error.
fn service_error(what: &str, status: StatusCode, detail: &str) -> Error {
    if convert::is_timeout_status(status) {
        Error::Timeout(format!("opcua: {what}: {detail}"))
    } else if convert::is_comm_status(status) {
        Error::Io(format!("opcua: {what}: {detail}"))
    } else {
        Error::Rejected(format!("opcua: {what}: {}", convert::status_name(status)))
    }
}

#[async_trait::async_trait]
impl Driver for OpcUaDriver {
    async fn connect(&mut self) -> Result<()> {
        let mut attempts = self.shared.attempts.subscribe();
        let seen = *attempts.borrow_and_update();
        self.ensure_started();
        match &*self.shared.state.lock().unwrap() {
            LinkState::Connected(_) => return Ok(()),
            LinkState::Down { .. } => self.shared.kick.notify_one(),
            _ => {}
        }
        let wait = self.shared.opts.connect_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(wait, attempts.wait_for(|n| *n > seen)).await;
        match &*self.shared.state.lock().unwrap() {
            LinkState::Connected(_) => Ok(()),
            LinkState::Down { error, .. } => Err(error.clone()),
            LinkState::Idle | LinkState::Connecting => Err(Error::Timeout(format!(
                "opcua: no connection to {} within {wait:?}",
                self.shared.opts.endpoint
            ))),
        }
    }

    async fn read(&mut self, tags: &[TagSpec]) -> Vec<Sample> {
        self.ensure_started();
        let samples = self.read_samples(tags).await;
        // Timestamps that never go back per tag (see the module docs).
        let now_us = bifrost_model::now_us();
        if self.last_ts.len() > 100_000 {
            self.last_ts.clear();
        }
        tags.iter()
            .zip(samples)
            .map(|(tag, mut sample)| {
                let last = self.last_ts.get(&tag.name).copied();
                let ts = stamp(sample.source_ts_us, last, now_us);
                self.last_ts.insert(tag.name.clone(), ts);
                sample.source_ts_us = Some(ts);
                sample
            })
            .collect()
    }

    async fn write(&mut self, tag: &TagSpec, value: Value) -> Result<Value> {
        if !tag.writable {
            return Err(Error::Config(format!(
                "tag {} is not writable (mark it writable to allow writes)",
                tag.name
            )));
        }
        self.parse(&tag.address).map_err(Error::Config)?;
        self.ensure_started();
        let conn = self.conn_or_error()?;
        let node = self.resolve(&conn, &tag.address)?;

        // The node's type (servers want exactly it) and whether we may write.
        let attrs = self
            .read_attributes(
                &conn,
                &node,
                &[AttributeId::DataType, AttributeId::UserAccessLevel],
            )
            .await?;
        let status = attrs[0].status.unwrap_or(StatusCode::Good);
        if status.is_bad() {
            return Err(Error::Rejected(format!(
                "opcua: {node}: {}",
                convert::status_name(status)
            )));
        }
        if let Some(Variant::Byte(access)) = &attrs[1].value {
            if access & 0x02 == 0 {
                return Err(Error::Rejected(format!(
                    "opcua: {node} is read-only on the server (user access level {access:#04x})"
                )));
            }
        }
        let builtin = match &attrs[0].value {
            Some(Variant::NodeId(dt)) => Builtin::of_data_type(dt),
            _ => None,
        }
        .unwrap_or_else(|| Builtin::of_tag(tag.data_type));
        let variant = convert::encode(&value, tag, builtin)
            .map_err(|why| Error::Config(format!("write {} = {value}: {why}", tag.name)))?;

        let what = format!("write {node}");
        let write = WriteValue {
            node_id: node.clone(),
            attribute_id: AttributeId::Value as u32,
            index_range: NumericRange::None,
            value: DataValue::value_only(variant.clone()),
        };
        let writes = [write];
        let call = conn.session.write(&writes);
        let started = Instant::now();
        match tokio::time::timeout(self.shared.opts.request_timeout, call).await {
            Ok(Ok(results)) => match results.first() {
                Some(s) if s.is_good() => {}
                Some(s) => {
                    return Err(Error::Rejected(format!(
                        "opcua: {what}: {}",
                        convert::status_name(*s)
                    )))
                }
                None => {
                    return Err(Error::Rejected(format!(
                        "opcua: {what}: the server returned no result"
                    )))
                }
            },
            Ok(Err(e)) => return Err(service_error(&what, e.status(), &e.to_string())),
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "opcua: {what}: no answer within {:?}",
                    started.elapsed()
                )))
            }
        }

        // Read back: the write counts only if the node now holds the value.
        let back = self
            .read_attributes(&conn, &node, &[AttributeId::Value])
            .await?;
        let back = back.into_iter().next().expect("one value");
        let status = back.status.unwrap_or(StatusCode::Good);
        if status.is_bad() {
            return Err(Error::Rejected(format!(
                "opcua: {node} accepted the write but reading it back gave {}",
                convert::status_name(status)
            )));
        }
        if back.value.as_ref() != Some(&variant) {
            return Err(Error::Rejected(format!(
                "opcua: {node} accepted {variant:?} but reads back {:?}",
                back.value
            )));
        }
        let sample = convert::sample_from_data_value(&back, tag);
        // The subscription will say so too; until then reads see the new value.
        if conn.subscription.is_some() {
            let mut values = conn.values.lock().unwrap();
            if values.contains_key(&node) {
                values.insert(node, back);
            }
        }
        sample.value.ok_or_else(|| {
            Error::Rejected(format!(
                "opcua: {} read back no value ({})",
                tag.name, sample.quality.reason
            ))
        })
    }

    async fn browse(&mut self, node: Option<&str>) -> Result<Vec<BrowseItem>> {
        self.ensure_started();
        let conn = self.conn_or_error()?;
        let node = match node {
            None => browse::objects_folder(),
            Some(address) => self.resolve(&conn, address)?,
        };
        browse::browse(&conn, node, self.shared.opts.request_timeout).await
    }

    fn health(&self) -> Health {
        match &*self.shared.state.lock().unwrap() {
            LinkState::Connected(_) => Health::Connected,
            LinkState::Idle | LinkState::Connecting => Health::Connecting,
            LinkState::Down { error, .. } => Health::Down(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert!(validate_endpoint("opc.tcp://plc1:4840").is_ok());
        assert!(validate_endpoint("opc.tcp://127.0.0.1:4840/freeopcua/server/").is_ok());
        assert!(validate_endpoint("opc.tcp://plc1").is_ok());
        assert!(validate_endpoint("opc.tcp://[::1]:4840").is_ok());
        for (url, why) in [
            ("http://plc1:4840", "opc.tcp://"),
            ("opc.tcp://", "host is missing"),
            ("opc.tcp://:4840", "host is missing"),
            ("opc.tcp://plc1:x", "port \"x\""),
            ("opc.tcp://plc1:70000", "port"),
            ("opc.tcp://plc1:0", "port"),
        ] {
            let e = validate_endpoint(url).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn options_are_checked() {
        let ok = OpcUaOptions::new("opc.tcp://plc1:4840");
        assert!(ok.validate().is_ok());
        let secure = OpcUaOptions {
            security: Security::Basic256Sha256Sign,
            ..ok.clone()
        };
        assert!(secure.validate().unwrap_err().contains("PKI directory"));
        let nobody = OpcUaOptions {
            identity: Identity::UserPassword {
                user: String::new(),
                password: "x".into(),
            },
            ..ok.clone()
        };
        assert!(nobody.validate().unwrap_err().contains("user name"));
        let zero = OpcUaOptions {
            request_timeout: Duration::ZERO,
            ..ok
        };
        assert!(zero.validate().unwrap_err().contains("request timeout"));
    }

    #[test]
    fn security_names_round_trip() {
        for s in [
            Security::None,
            Security::Basic256Sha256Sign,
            Security::Basic256Sha256SignAndEncrypt,
        ] {
            assert_eq!(s.to_string().parse::<Security>(), Ok(s));
        }
        assert_eq!(
            "BASIC256SHA256-SIGN".parse::<Security>(),
            Ok(Security::Basic256Sha256Sign)
        );
        assert!("aes"
            .parse::<Security>()
            .unwrap_err()
            .contains("basic256sha256-sign"));
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let id = Identity::UserPassword {
            user: "op".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{id:?}");
        assert!(
            shown.contains("op") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn timestamps_only_go_forward_per_tag() {
        let now = 1_700_000_000_000_000;
        // First sample: a source timestamp from before now is replaced by
        // now (older samples of the tag may be stored already).
        assert_eq!(stamp(Some(now - 5_000_000), None, now), now);
        assert_eq!(stamp(None, None, now), now);
        // A server clock ahead of ours is kept.
        assert_eq!(stamp(Some(now + 7), None, now), now + 7);
        // A change since the last sample keeps its source timestamp.
        assert_eq!(stamp(Some(now - 10), Some(now - 20), now), now - 10);
        // Unchanged since (same or older source timestamp): the read time.
        assert_eq!(stamp(Some(now - 20), Some(now - 20), now), now);
        assert_eq!(stamp(Some(now - 99), Some(now - 20), now), now);
        // A variable unchanged since before an outage, read after it: newer
        // than the Bad samples of the outage.
        let bad = stamp(None, Some(now - 1_000), now - 500);
        assert_eq!(bad, now - 500);
        assert_eq!(stamp(Some(now - 60_000_000), Some(bad), now), now);
        // Never at or before the last one, whatever the clocks do.
        assert_eq!(stamp(None, Some(now + 1_000), now), now + 1_001);
        assert_eq!(
            stamp(Some(now + 1_000), Some(now + 1_000), now),
            now + 1_001
        );
        assert_eq!(stamp(None, Some(i64::MAX), now), i64::MAX);
    }

    #[tokio::test]
    async fn an_unreachable_server_gives_bad_samples_at_once() {
        // A port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut opts = OpcUaOptions::new(format!("opc.tcp://127.0.0.1:{port}"));
        // Reconnects a minute apart: a read that waited for the next attempt
        // instead of answering at once would outlast the 30 s bound below.
        opts.reconnect_initial = Duration::from_secs(60);
        opts.reconnect_max = Duration::from_secs(60);
        let mut driver = OpcUaDriver::new(opts).unwrap();
        let err = driver.connect().await.unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err}");
        assert!(err.to_string().contains("cannot reach"), "{err}");
        let tag = TagSpec {
            name: "t".into(),
            address: "ns=2;s=X".into(),
            data_type: crate::DataType::I32,
            byte_order: crate::Order::Big,
            word_order: crate::Order::Big,
            scale: None,
            deadband: None,
            length: 0,
            writable: false,
        };
        let samples = tokio::time::timeout(
            Duration::from_secs(30),
            driver.read(std::slice::from_ref(&tag)),
        )
        .await
        .expect("a read while unreachable answers at once, not after the next reconnect");
        assert_eq!(samples[0].quality, Quality::bad("not_connected"));
        assert!(
            samples[0].source_ts_us.is_some(),
            "Bad samples carry the read time"
        );
        assert!(matches!(
            driver.health(),
            Health::Down(_) | Health::Connecting
        ));
        assert!(driver.browse(None).await.is_err());
    }
}
