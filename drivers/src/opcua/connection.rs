//! The connection life cycle: one supervisor task per driver owns the
//! async-opcua client and keeps a session open, reconnecting with capped
//! exponential backoff; the driver's calls only look at the current state.
//!
//! Why our own supervisor rather than async-opcua's built-in reconnect loop:
//! the library retries a failed first connection silently (so a wrong
//! password would never reach `connect()` as an error), and on reconnect it
//! transfers or recreates subscriptions behind our back. Here every
//! connection is a fresh session (`session_retry_limit(0)`: the library
//! never reconnects on its own) whose subscription and monitored items we
//! create from the set of nodes the driver has been asked to read, and whose
//! value cache starts empty, so a value from before an outage can never be
//! reported as current after it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use opcua::client::{
    Client, ClientBuilder, DataChangeCallback, IdentityToken, Session, SessionPollResult,
    SubscriptionActivity,
};
use opcua::core::comms::url::url_with_replaced_hostname;
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    DataValue, EndpointDescription, ExtensionObject, MonitoredItemCreateRequest, MonitoringMode,
    MonitoringParameters, NamespaceMap, NodeId, ReadValueId, StatusCode, TimestampsToReturn,
    UserTokenType, VariableId, Variant,
};
use tokio::sync::{watch, Notify};

use super::address::NodeAddress;
use super::convert::{is_comm_status, is_timeout_status, status_name};
use super::{Identity, OpcUaOptions, ReadPath, Security};
use crate::Error;

/// Monitored items created per CreateMonitoredItems call, and nodes per Read
/// call, unless the server's OperationLimits say less.
const ITEMS_PER_CALL: usize = 500;
const NODES_PER_READ: usize = 500;
/// Subscription keep-alive: the server answers a publish request at least
/// every `publishing_interval * KEEP_ALIVE_COUNT` even with nothing to say.
pub(crate) const KEEP_ALIVE_COUNT: u32 = 10;
/// The server drops a subscription nobody has published on for this many
/// intervals (must be at least three keep-alives).
const LIFETIME_COUNT: u32 = 6 * KEEP_ALIVE_COUNT;

type EventStream = Pin<Box<dyn Stream<Item = Result<SessionPollResult, StatusCode>> + Send>>;

/// State shared by the driver and its supervisor task.
pub(crate) struct Shared {
    pub opts: OpcUaOptions,
    pub state: Mutex<LinkState>,
    /// Bumped when a connection attempt ends, either way (`connect` waits on it).
    pub attempts: watch::Sender<u64>,
    /// Wakes the supervisor from its backoff for an attempt now.
    pub kick: Notify,
    /// Nodes the driver has been asked to read, with when it was last asked:
    /// monitored on every connection until not read for `forget_after`.
    pub wanted: Mutex<HashMap<NodeAddress, Instant>>,
    pub counters: Arc<Counters>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub data_changes: AtomicU64,
    pub read_calls: AtomicU64,
    pub connects: AtomicU64,
    pub stale_fallbacks: AtomicU64,
}

pub(crate) enum LinkState {
    /// The supervisor has not been started.
    Idle,
    Connecting,
    Connected(Arc<Conn>),
    Down {
        error: Error,
        retry_in: Duration,
    },
}

/// One open session.
pub(crate) struct Conn {
    pub session: Arc<Session>,
    pub namespaces: NamespaceMap,
    /// The subscription holding our monitored items; `None` when reads poll.
    pub subscription: Option<u32>,
    /// Why reads poll on this connection, when they do.
    pub polling_reason: Option<String>,
    pub items: tokio::sync::Mutex<Items>,
    /// Latest value per monitored node, as the subscription delivered it.
    pub values: Arc<Mutex<HashMap<NodeId, DataValue>>>,
    /// When the subscription last heard from the server (data or keep-alive).
    pub last_publish: Arc<Mutex<Instant>>,
    /// When a read on this connection last ran out of time or failed.
    /// Subscribed values are trusted again only once a publish arrives
    /// after it: a hung server's last values must not come back as Good.
    pub last_failure: Mutex<Option<Instant>>,
    pub sampling_interval: Duration,
    /// Nodes per Read call and monitored items per CreateMonitoredItems call
    /// this server takes.
    pub nodes_per_read: usize,
    pub items_per_call: usize,
    _event_loop: AbortOnDrop,
}

/// Which nodes have monitored items on this connection.
#[derive(Default)]
pub(crate) struct Items {
    /// Monitored nodes and their server-side monitored item ids.
    pub monitored: HashMap<NodeId, u32>,
    /// Nodes the server would not monitor (status per node): polled instead.
    pub refused: HashMap<NodeId, StatusCode>,
}

impl Conn {
    pub(crate) fn read_path(&self) -> ReadPath {
        if self.subscription.is_some() {
            ReadPath::Subscription
        } else {
            ReadPath::Polling
        }
    }

    /// Creates monitored items for the nodes among `nodes` that have none
    /// yet. Nodes the server refuses are remembered and polled. Each call to
    /// the server waits at most `timeout`, and nothing waits past `deadline`:
    /// chunks not sent by then are left for a later call.
    pub(crate) async fn ensure_monitored(
        &self,
        nodes: &[NodeId],
        timeout: Duration,
        deadline: tokio::time::Instant,
    ) {
        let Some(subscription) = self.subscription else {
            return;
        };
        let Ok(mut items) = tokio::time::timeout_at(deadline, self.items.lock()).await else {
            return;
        };
        let mut seen = HashSet::new();
        let fresh: Vec<NodeId> = nodes
            .iter()
            .filter(|n| {
                !items.monitored.contains_key(*n)
                    && !items.refused.contains_key(*n)
                    && seen.insert(*n)
            })
            .cloned()
            .collect();
        for chunk in fresh.chunks(self.items_per_call) {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let requests: Vec<MonitoredItemCreateRequest> = chunk
                .iter()
                .map(|node| {
                    MonitoredItemCreateRequest::new(
                        ReadValueId::new_value(node.clone()),
                        MonitoringMode::Reporting,
                        MonitoringParameters {
                            client_handle: 0,
                            sampling_interval: self.sampling_interval.as_secs_f64() * 1000.0,
                            filter: ExtensionObject::null(),
                            // Only the latest value matters: reads return one.
                            queue_size: 1,
                            discard_oldest: true,
                        },
                    )
                })
                .collect();
            let call = self.session.create_monitored_items(
                subscription,
                TimestampsToReturn::Both,
                requests,
            );
            match tokio::time::timeout_at((now + timeout).min(deadline), call).await {
                Ok(Ok(results)) => {
                    for (node, created) in chunk.iter().zip(results.iter()) {
                        let status = created.result.status_code;
                        if status.is_good() {
                            items
                                .monitored
                                .insert(node.clone(), created.result.monitored_item_id);
                        } else {
                            tracing::info!(node = %node, "opcua: server refused to monitor: {status}; polling it");
                            items.refused.insert(node.clone(), status);
                        }
                    }
                }
                // The call failed as a whole: poll these nodes on this
                // connection rather than retrying on every read.
                Ok(Err(e)) => {
                    tracing::warn!(
                        "opcua: CreateMonitoredItems failed: {e}; polling {} nodes",
                        chunk.len()
                    );
                    for node in chunk {
                        items.refused.insert(node.clone(), e.status());
                    }
                }
                Err(_) => {
                    tracing::warn!(
                        "opcua: CreateMonitoredItems timed out; polling {} nodes",
                        chunk.len()
                    );
                    for node in chunk {
                        items.refused.insert(node.clone(), StatusCode::BadTimeout);
                    }
                }
            }
        }
    }

    /// Deletes the monitored items of `nodes` (nodes no tag reads any more),
    /// waiting for nothing past `deadline` (what is left over stays on the
    /// server until the session ends: harmless).
    pub(crate) async fn forget(&self, nodes: &[NodeId], deadline: tokio::time::Instant) {
        let Ok(mut items) = tokio::time::timeout_at(deadline, self.items.lock()).await else {
            return;
        };
        let mut ids = Vec::new();
        for node in nodes {
            items.refused.remove(node);
            if let Some(id) = items.monitored.remove(node) {
                ids.push(id);
            }
        }
        {
            let mut values = self.values.lock().unwrap();
            for node in nodes {
                values.remove(node);
            }
        }
        let Some(subscription) = self.subscription else {
            return;
        };
        if ids.is_empty() {
            return;
        }
        let call = self.session.delete_monitored_items(subscription, &ids);
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(_)) => {
                tracing::debug!("opcua: stopped monitoring {} nodes no tag reads", ids.len())
            }
            // They stay on the server until the session ends; harmless.
            Ok(Err(e)) => tracing::debug!("opcua: DeleteMonitoredItems failed: {e}"),
            Err(_) => tracing::debug!("opcua: DeleteMonitoredItems timed out"),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Shared {
    pub(crate) fn new(opts: OpcUaOptions) -> Shared {
        Shared {
            opts,
            state: Mutex::new(LinkState::Idle),
            attempts: watch::channel(0).0,
            kick: Notify::new(),
            wanted: Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
        }
    }

    fn set_state(&self, state: LinkState) {
        *self.state.lock().unwrap() = state;
    }

    fn attempt_done(&self) {
        self.attempts.send_modify(|n| *n += 1);
    }

    pub(crate) fn conn(&self) -> Option<Arc<Conn>> {
        match &*self.state.lock().unwrap() {
            LinkState::Connected(c) => Some(c.clone()),
            _ => None,
        }
    }
}

/// Runs until aborted: connect, wait for the connection to drop, back off,
/// again.
pub(crate) async fn supervise(shared: Arc<Shared>) {
    let opts = &shared.opts;
    let client = {
        let opts = opts.clone();
        match tokio::task::spawn_blocking(move || build_client(&opts)).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return give_up(&shared, error).await,
            Err(e) => {
                return give_up(&shared, Error::Config(format!("opcua: client set-up: {e}"))).await
            }
        }
    };
    let mut delay = opts.reconnect_initial;
    loop {
        shared.set_state(LinkState::Connecting);
        let attempt = tokio::time::timeout(opts.connect_timeout, connect_once(&client, &shared));
        match attempt.await {
            Ok(Ok((conn, mut lost))) => {
                delay = opts.reconnect_initial;
                shared.counters.connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(endpoint = %opts.endpoint, path = ?conn.read_path(), "opcua: connected");
                shared.set_state(LinkState::Connected(conn));
                shared.attempt_done();
                let reason = loop {
                    if let Some(reason) = lost.borrow_and_update().clone() {
                        break reason;
                    }
                    if lost.changed().await.is_err() {
                        break "session event loop ended".to_string();
                    }
                };
                tracing::warn!(endpoint = %opts.endpoint, "opcua: connection lost: {reason}");
                shared.set_state(LinkState::Down {
                    error: Error::Io(format!("connection to {} lost: {reason}", opts.endpoint)),
                    retry_in: delay,
                });
            }
            Ok(Err(error)) => {
                tracing::warn!(endpoint = %opts.endpoint, "opcua: connect failed: {error}; retrying in {delay:?}");
                shared.set_state(LinkState::Down {
                    error,
                    retry_in: delay,
                });
                shared.attempt_done();
            }
            Err(_) => {
                let error = Error::Timeout(format!(
                    "connecting to {} took longer than {:?}",
                    opts.endpoint, opts.connect_timeout
                ));
                tracing::warn!("opcua: {error}; retrying in {delay:?}");
                shared.set_state(LinkState::Down {
                    error,
                    retry_in: delay,
                });
                shared.attempt_done();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.kick.notified() => {}
        }
        delay = (delay * 2).min(opts.reconnect_max);
    }
}

/// A configuration that cannot work: stay down with the error, answering
/// every `connect` with it.
async fn give_up(shared: &Shared, error: Error) {
    tracing::error!("opcua: {error}");
    shared.set_state(LinkState::Down {
        error,
        retry_in: Duration::MAX,
    });
    loop {
        shared.attempt_done();
        shared.kick.notified().await;
    }
}

pub(super) fn build_client(opts: &OpcUaOptions) -> Result<Client, Error> {
    let pki = opts.pki_dir();
    let secure = opts.security != Security::None;
    let client = ClientBuilder::new()
        .application_name(opts.application_name.clone())
        .application_uri(opts.application_uri.clone())
        .product_uri("urn:bifrost")
        .pki_dir(&pki)
        // A key pair is only made (into pki/own and pki/private) when needed.
        .create_sample_keypair(secure)
        .trust_server_certs(opts.trust_server_certs)
        .verify_server_certs(true)
        .session_retry_limit(0)
        .recreate_subscriptions(false)
        .request_timeout(opts.request_timeout)
        .keep_alive_interval(opts.keep_alive_interval)
        .max_failed_keep_alive_count(3)
        .session_name("bifrost")
        .client()
        .map_err(|errors| Error::Config(format!("opcua client: {}", errors.join("; "))))?;
    if secure {
        for file in ["own/cert.der", "private/private.pem"] {
            if !pki.join(file).is_file() {
                return Err(Error::Config(format!(
                    "opcua: {} needs a client certificate, but {} could not be read or created",
                    opts.security,
                    pki.join(file).display()
                )));
            }
        }
    }
    Ok(client)
}

/// One connection attempt: endpoints, session, subscription, monitored items.
/// Returns the connection and a receiver that gets the reason it was lost.
async fn connect_once(
    client: &Client,
    shared: &Shared,
) -> Result<(Arc<Conn>, watch::Receiver<Option<String>>), Error> {
    let opts = &shared.opts;
    let url = opts.endpoint.as_str();
    let endpoints = client
        .get_server_endpoints_from_url(url)
        .await
        .map_err(|e| reach_error(url, e.status(), &e.to_string()))?;
    let endpoint = choose_endpoint(opts, &endpoints)?;
    let identity = match &opts.identity {
        Identity::Anonymous => IdentityToken::Anonymous,
        Identity::UserPassword { user, password } => {
            IdentityToken::new_user_name(user.clone(), password.clone())
        }
    };
    let (session, event_loop) = client
        .session_builder()
        .connect_to_endpoint_directly(endpoint)
        .map_err(|e| Error::Config(format!("opcua: endpoint {url}: {e}")))?
        .user_identity_token(identity)
        .build(client.certificate_store().clone())
        .map_err(|e| Error::Config(format!("opcua: endpoint {url}: {e}")))?;

    let mut events: EventStream = Box::pin(event_loop.enter());
    loop {
        match events.next().await {
            Some(Ok(SessionPollResult::Reconnected(_))) => break,
            Some(Ok(_)) => {}
            Some(Err(status)) => return Err(session_error(opts, status)),
            None => {
                return Err(Error::Io(format!(
                    "opcua: {url}: session closed while connecting"
                )))
            }
        }
    }

    // From here on the event loop must keep running for any request to work.
    let (lost_tx, lost_rx) = watch::channel(None);
    let last_publish = Arc::new(Mutex::new(Instant::now()));
    let event_loop = {
        let last_publish = last_publish.clone();
        tokio::spawn(async move {
            let reason = loop {
                match events.next().await {
                    Some(Ok(SessionPollResult::ConnectionLost(status))) => {
                        break status.to_string()
                    }
                    Some(Ok(SessionPollResult::Subscription(SubscriptionActivity::Publish))) => {
                        *last_publish.lock().unwrap() = Instant::now();
                    }
                    Some(Ok(_)) => {}
                    Some(Err(status)) => break status.to_string(),
                    None => break "session closed".to_string(),
                }
            };
            let _ = lost_tx.send(Some(reason));
        })
    };
    let event_loop = AbortOnDrop(event_loop);

    let namespaces = match session.read_namespace_array().await {
        Ok(map) => map,
        Err(e) => {
            // Only nsu= addresses need it; the rest works without.
            tracing::warn!("opcua: could not read the namespace array: {e}");
            NamespaceMap::new()
        }
    };

    let (nodes_per_read, items_per_call) = operation_limits(&session, opts.request_timeout).await;

    let values: Arc<Mutex<HashMap<NodeId, DataValue>>> = Arc::default();
    let (subscription, polling_reason) = if opts.use_subscriptions {
        let values = values.clone();
        let counters = shared.counters.clone();
        let callback = DataChangeCallback::new(move |dv, item| {
            counters.data_changes.fetch_add(1, Ordering::Relaxed);
            values
                .lock()
                .unwrap()
                .insert(item.item_to_monitor().node_id.clone(), dv);
        });
        let created = session
            .create_subscription(
                opts.publishing_interval,
                LIFETIME_COUNT,
                KEEP_ALIVE_COUNT,
                0,
                0,
                true,
                callback,
            )
            .await;
        match created {
            Ok(id) => (Some(id), None),
            Err(e) if is_comm_status(e.status()) || is_timeout_status(e.status()) => {
                return Err(reach_error(url, e.status(), &e.to_string()))
            }
            Err(e) => {
                tracing::info!("opcua: {url} refused a subscription ({e}); reads will poll");
                (
                    None,
                    Some(format!(
                        "the server refused a subscription: {}",
                        status_name(e.status())
                    )),
                )
            }
        }
    } else {
        (
            None,
            Some("subscriptions are disabled in the options".to_string()),
        )
    };

    let conn = Arc::new(Conn {
        session,
        namespaces,
        subscription,
        polling_reason,
        items: tokio::sync::Mutex::new(Items::default()),
        values,
        last_publish,
        last_failure: Mutex::new(None),
        sampling_interval: opts.sampling_interval.unwrap_or(opts.publishing_interval),
        nodes_per_read,
        items_per_call,
        _event_loop: event_loop,
    });
    let wanted: Vec<NodeId> = {
        let wanted = shared.wanted.lock().unwrap();
        wanted
            .keys()
            .filter_map(|a| a.resolve(&conn.namespaces).ok())
            .collect()
    };
    // Bounded by the attempt's own deadline (connect_timeout) as well.
    let far = tokio::time::Instant::now() + opts.connect_timeout;
    conn.ensure_monitored(&wanted, opts.request_timeout, far)
        .await;
    Ok((conn, lost_rx))
}

/// How many nodes one Read, and monitored items one CreateMonitoredItems, may
/// carry: our defaults, or less when the server's OperationLimits say so
/// (0 or unreadable means no limit given).
async fn operation_limits(session: &Session, timeout: Duration) -> (usize, usize) {
    let ids = [
        VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
        VariableId::Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
    ];
    let reads: Vec<ReadValueId> = ids
        .iter()
        .map(|id| ReadValueId::new_value((*id).into()))
        .collect();
    let limits = match tokio::time::timeout(
        timeout,
        session.read(&reads, TimestampsToReturn::Neither, 0.0),
    )
    .await
    {
        Ok(Ok(values)) => values,
        _ => Vec::new(),
    };
    let limit = |i: usize, default: usize| match limits.get(i).and_then(|dv| dv.value.as_ref()) {
        Some(Variant::UInt32(n)) if *n > 0 => default.min(*n as usize),
        _ => default,
    };
    (limit(0, NODES_PER_READ), limit(1, ITEMS_PER_CALL))
}

/// The server endpoint matching the configured security, with the host name
/// we were given (servers often advertise one we cannot resolve).
fn choose_endpoint(
    opts: &OpcUaOptions,
    endpoints: &[EndpointDescription],
) -> Result<EndpointDescription, Error> {
    let (policy, mode) = opts.security.policy_and_mode();
    let url = opts.endpoint.as_str();
    let matching = Client::find_matching_endpoint(endpoints, url, policy, mode).or_else(|| {
        // Same security, different path: take it, at the address we know works.
        let mut e = endpoints
            .iter()
            .find(|e| {
                e.security_mode == mode
                    && SecurityPolicy::from_uri(e.security_policy_uri.as_ref()) == policy
            })?
            .clone();
        e.endpoint_url = url.into();
        Some(e)
    });
    let Some(mut endpoint) = matching else {
        let offered: Vec<String> = endpoints
            .iter()
            .map(|e| {
                let p = SecurityPolicy::from_uri(e.security_policy_uri.as_ref());
                format!("{p}/{}", e.security_mode)
            })
            .collect();
        return Err(Error::Config(format!(
            "opcua: {url} has no endpoint with security {}; it offers: {}",
            opts.security,
            if offered.is_empty() {
                "nothing".to_string()
            } else {
                offered.join(", ")
            }
        )));
    };
    if let Ok(host) = opcua::core::comms::url::hostname_from_url(url) {
        if let Ok(u) = url_with_replaced_hostname(endpoint.endpoint_url.as_ref(), &host) {
            endpoint.endpoint_url = u.into();
        }
    }
    let wanted_token = match opts.identity {
        Identity::Anonymous => UserTokenType::Anonymous,
        Identity::UserPassword { .. } => UserTokenType::UserName,
    };
    let tokens = endpoint.user_identity_tokens.clone().unwrap_or_default();
    if !tokens.is_empty() && !tokens.iter().any(|t| t.token_type == wanted_token) {
        let accepted: Vec<String> = tokens
            .iter()
            .map(|t| format!("{:?}", t.token_type))
            .collect();
        return Err(Error::Config(format!(
            "opcua: {url} ({}) does not accept {} login; it accepts: {}",
            opts.security,
            match opts.identity {
                Identity::Anonymous => "anonymous",
                Identity::UserPassword { .. } => "user/password",
            },
            accepted.join(", ")
        )));
    }
    Ok(endpoint)
}

/// Failing to reach the server at all.
fn reach_error(url: &str, status: StatusCode, detail: &str) -> Error {
    if is_timeout_status(status) {
        Error::Timeout(format!("opcua: {url}: {detail}"))
    } else {
        Error::Io(format!("opcua: cannot reach {url}: {detail}"))
    }
}

/// The session event loop failed to open a channel or session: say why in
/// the terms an operator can act on.
fn session_error(opts: &OpcUaOptions, status: StatusCode) -> Error {
    let url = opts.endpoint.as_str();
    let name = status_name(status);
    let pki = opts.pki_dir();
    match status {
        StatusCode::BadUserAccessDenied
        | StatusCode::BadIdentityTokenRejected
        | StatusCode::BadIdentityTokenInvalid => match &opts.identity {
            Identity::UserPassword { user, .. } => Error::Rejected(format!(
                "opcua: {url} refused the login of user {user:?} ({name}): wrong user name or password?"
            )),
            Identity::Anonymous => Error::Rejected(format!(
                "opcua: {url} refused anonymous login ({name}): configure a user and password"
            )),
        },
        StatusCode::BadCertificateUntrusted
        | StatusCode::BadCertificateChainIncomplete
        | StatusCode::BadCertificateIssuerRevocationUnknown
        | StatusCode::BadCertificateRevocationUnknown => Error::Config(format!(
            "opcua: the certificate of {url} is not trusted ({name}): it was saved in {}; \
             move it to {} to trust it, or set trust_server_certs",
            pki.join("rejected").display(),
            pki.join("trusted").display()
        )),
        StatusCode::BadCertificateHostNameInvalid | StatusCode::BadCertificateUriInvalid => {
            Error::Config(format!(
                "opcua: the certificate of {url} does not match its host name or application URI ({name})"
            ))
        }
        StatusCode::BadSecurityChecksFailed
        | StatusCode::BadCertificateInvalid
        | StatusCode::BadCertificateTimeInvalid
        | StatusCode::BadSecurityPolicyRejected => Error::Rejected(format!(
            "opcua: {url} refused the secure channel ({name}): the server may not trust this \
             client's certificate ({}), or a certificate has expired",
            pki.join("own/cert.der").display()
        )),
        s if is_timeout_status(s) => Error::Timeout(format!("opcua: {url}: {name}")),
        s if is_comm_status(s) => Error::Io(format!("opcua: cannot reach {url}: {name}")),
        _ => Error::Rejected(format!("opcua: connecting to {url} failed: {name}")),
    }
}

/// Whether a path looks like a directory we may create certificates in.
pub(crate) fn pki_dir_problem(dir: &Path) -> Option<String> {
    if dir.as_os_str().is_empty() {
        return Some("the PKI directory is empty".into());
    }
    if dir.exists() && !dir.is_dir() {
        return Some(format!("the PKI path {} is not a directory", dir.display()));
    }
    None
}
