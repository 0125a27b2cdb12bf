//! [`Client`]: one handle on a whole cluster.
//!
//! The client keeps one lazily connected tonic `Channel` per known node (an
//! HTTP/2 connection shared by all concurrent calls) and remembers which node
//! is the leader. Every node is reached as [`ClientOptions::security`] says:
//! plain text (`http://HOST:PORT`) or TLS (`https://HOST:PORT`, the servers
//! checked against the CA, with a client certificate if one is given). Its
//! endpoint is made by [`Security::endpoint`] when the node becomes known,
//! which reads the TLS files then. A call goes like this:
//!
//! 1. If the leader is not known, or was learnt more than
//!    [`ClientOptions::leader_ttl`] ago, ask the next node in the rotation for
//!    `Status`. Its `leader_addr` becomes the target (added to the node list if
//!    it is new); with no leader known, the answering node itself is the
//!    target, since every node forwards writes. A `HOST:PORT` from the
//!    cluster gets the client's scheme.
//! 2. Send the request to the target with a per-attempt timeout.
//! 3. On a retryable failure (see [`crate::error::is_retryable_status`])
//!    forget the leader, move the rotation past the failed node, sleep with
//!    jittered exponential backoff and go to 1, until
//!    [`ClientOptions::deadline`] has passed since the call began. A
//!    not-leader error that carries the server's `bifrost-leader` metadata
//!    (`ID=HOST:PORT`) sets the leader directly instead.
//!
//! A non-leader follower that answers is fine: the next discovery (after the
//! TTL) moves the client to the leader, so a leader change that breaks nothing
//! costs at most the follower's forwarding hop for a while.
//!
//! [`Client::write_tag`] is the one call that is not idempotent: a device
//! write may switch something on. Step 3 applies to it only while the request
//! cannot have left the client: when the leader discovery in step 1 failed,
//! or when the connection to the target node could not be established
//! (tonic's `ConnectError`). Once the request was sent, any failure, including
//! `DeadlineExceeded` and `Unavailable`, ends the call with
//! [`Error::Unconfirmed`].
//!
//! Every stub the client makes carries its credentials: when a session
//! token is set ([`ClientOptions::token`], [`Client::login`],
//! [`Client::set_token`]), every request, leader discovery and streams
//! included, has `authorization: Bearer TOKEN` in its metadata. Refusals
//! (`Unauthenticated`, `PermissionDenied`) are final, never retried.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bifrost_proto::channel::Security;
use futures::{stream, Stream, TryStreamExt};
use rand::Rng;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::error::{is_retryable_status, retry_after};
use crate::proto::bifrost_client::BifrostClient;
use crate::proto::{
    AddMemberRequest, BackupChunk, BackupRequest, BrowseRequest, BrowseResponse, Consistency,
    DeleteDeviceRequest, DeleteTagRequest, Device, DiscoverRequest, DiscoveredDevice,
    GetCurrentRequest, HistoryRequest, ImportRequest, ImportResponse, IngestRequest,
    IngestResponse, ListDevicesRequest, ListTagsRequest, Member, PutDeviceRequest, PutTagRequest,
    Reading, RemoveMemberRequest, StatusRequest, StatusResponse, Tag, Value, WriteTagRequest,
    WriteTagResponse,
};
use crate::replica;
use crate::{Error, Result};

mod credentials;
mod streaming;
mod users;
use credentials::{Credentials, Stub};
pub use streaming::{QueryRows, WatchEvent, Watcher};

/// Timing of connections, attempts and retries; security and credentials.
#[derive(Clone)]
pub struct ClientOptions {
    /// How long to wait for a TCP connection to a node.
    pub connect_timeout: Duration,
    /// How long one attempt may wait for its answer (for `history`, for the
    /// stream to start). Membership changes, imports, browsing and device
    /// writes wait up to `deadline` instead, because adding a learner waits
    /// for it to catch up, a large import is a large log entry, and browsing
    /// and writing wait for a device.
    pub request_timeout: Duration,
    /// Overall time budget of one call including all retries. The first
    /// attempt is always made.
    pub deadline: Duration,
    /// First backoff between attempts; doubles after each failure.
    pub backoff_initial: Duration,
    /// Cap on the backoff.
    pub backoff_max: Duration,
    /// How long a discovered leader is trusted before `Status` is asked again.
    pub leader_ttl: Duration,
    /// Plain text (the default) or TLS, for every node, including those
    /// learnt from the cluster and those the replica check asks.
    pub security: Security,
    /// Session token sent with every call as `authorization: Bearer
    /// TOKEN` (from [`Client::login`] elsewhere, or a service's own);
    /// `None`: none. [`Client::login`] and [`Client::set_token`] replace
    /// it. Not shown by `Debug`.
    pub token: Option<String>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("deadline", &self.deadline)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("leader_ttl", &self.leader_ttl)
            .field("security", &self.security)
            .field("token", &self.token.as_ref().map(|_| "<token>"))
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            leader_ttl: Duration::from_secs(10),
            security: Security::Plain,
            token: None,
        }
    }
}

/// Readings of a history query, in time order, as the server streams them.
pub type ReadingStream = Pin<Box<dyn Stream<Item = Result<Reading>> + Send + 'static>>;

/// A history query: readings of `tag` in `[from_us, to_us)`.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub tag: String,
    /// Inclusive lower bound, microseconds since the epoch; `None`: from the
    /// oldest reading held.
    pub from_us: Option<i64>,
    /// Exclusive upper bound; `None`: up to the newest.
    pub to_us: Option<i64>,
    /// At most this many readings; 0 means no limit.
    pub limit: u64,
    pub consistency: Consistency,
}

/// A handle on a Bifrost cluster. Cheap to clone; clones share connections
/// and what is known about the leader.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    opts: ClientOptions,
    state: Mutex<State>,
    /// The token sent with every call: `opts.token` at first.
    credentials: Credentials,
}

struct State {
    nodes: Vec<Node>,
    /// Rotation position: the node to try when no leader is known.
    next: usize,
    leader: Option<usize>,
    /// When `Status` last answered; `None` forces discovery on the next call.
    learnt_at: Option<Instant>,
}

impl State {
    /// Index of the node at `addr` (`HOST:PORT` or a URL), added if new (a
    /// node that joined after the client was made).
    fn node_index(&mut self, addr: &str, opts: &ClientOptions) -> Result<usize> {
        let url = normalize_endpoint(addr, &opts.security)?;
        if let Some(i) = self.nodes.iter().position(|n| n.url == url) {
            return Ok(i);
        }
        self.nodes.push(Node::new(url, opts)?);
        Ok(self.nodes.len() - 1)
    }
}

struct Node {
    /// `http://host:port` or `https://host:port`
    url: String,
    /// How to reach it, TLS files read, made when the node became known.
    endpoint: Endpoint,
    /// Created on first use, so that `connect` needs no runtime and makes no
    /// connection.
    channel: Option<Channel>,
}

impl Node {
    /// The node at `url` (as [`normalize_endpoint`] made it), its endpoint
    /// made with `opts`' security and timeouts.
    fn new(url: String, opts: &ClientOptions) -> Result<Node> {
        let endpoint = opts
            .security
            .endpoint(&url)
            .map_err(|reason| Error::Tls {
                endpoint: url.clone(),
                reason,
            })?
            .connect_timeout(opts.connect_timeout)
            .tcp_nodelay(true)
            // Notice a silently dead peer (partition, power loss) on an
            // idle-looking connection.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        Ok(Node {
            url,
            endpoint,
            channel: None,
        })
    }

    /// The node's channel, made (not connected) on first use.
    fn channel(&mut self) -> Channel {
        self.channel
            .get_or_insert_with(|| self.endpoint.connect_lazy())
            .clone()
    }
}

/// How a call uses the cluster.
#[derive(Clone, Copy)]
struct CallKind {
    /// Find the leader first (all calls but `status`).
    discover: bool,
    /// One attempt may use the whole remaining deadline.
    long: bool,
    /// Sending the request twice does no harm. When false, a request that
    /// may have reached a node is never sent again.
    idempotent: bool,
}

const NORMAL: CallKind = CallKind {
    discover: true,
    long: false,
    idempotent: true,
};
/// Membership changes, imports and browsing: one attempt may take long.
const LONG: CallKind = CallKind {
    discover: true,
    long: true,
    idempotent: true,
};
/// Calls any node answers itself (status, backups): no leader discovery,
/// so a client given one endpoint asks that node.
const STATUS: CallKind = CallKind {
    discover: false,
    long: false,
    idempotent: true,
};
/// Device writes: the server waits for the device and its read-back, so one
/// attempt may take the whole deadline; never repeated once sent.
const WRITE: CallKind = CallKind {
    discover: true,
    long: true,
    idempotent: false,
};

/// History chunks and ingest replies can be large; tonic's default 4 MiB
/// decoding limit is too tight for a big chunk of string readings.
const MAX_DECODE: usize = 64 << 20;

/// Extra wait beyond the gRPC timeout before the client abandons an attempt on
/// its own, for a server that ignores `grpc-timeout`.
const SLACK: Duration = Duration::from_millis(250);

impl Client {
    /// A client for the cluster reachable at `endpoints` (`HOST:PORT`, or
    /// `http://HOST:PORT`; comma-separated lists are split), plain text,
    /// with default options. Makes no connection: connections are made on
    /// first use, so this succeeds while nodes are down.
    pub fn connect(endpoints: Vec<String>) -> Result<Client> {
        Self::connect_with(endpoints, ClientOptions::default())
    }

    /// Like [`Client::connect`], with explicit options. With TLS
    /// ([`ClientOptions::security`]) an endpoint may also be given as
    /// `https://HOST:PORT`, and the TLS files are read here: one that cannot
    /// be read or used is [`Error::Tls`], naming it.
    pub fn connect_with(endpoints: Vec<String>, opts: ClientOptions) -> Result<Client> {
        let mut state = State {
            nodes: Vec::new(),
            next: 0,
            leader: None,
            learnt_at: None,
        };
        for e in endpoints.iter().flat_map(|e| e.split(',')) {
            if !e.trim().is_empty() {
                state.node_index(e, &opts)?;
            }
        }
        if state.nodes.is_empty() {
            return Err(Error::NoEndpoints);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                credentials: Credentials::new(opts.token.clone()),
                opts,
                state: Mutex::new(state),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// URLs of all nodes known, including leaders learnt from `Status`.
    pub fn endpoints(&self) -> Vec<String> {
        self.state().nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// URL of node `i`.
    fn endpoint_of(&self, i: usize) -> String {
        self.state().nodes[i].url.clone()
    }

    /// URL of the leader as last learnt, if any.
    pub fn leader(&self) -> Option<String> {
        let st = self.state();
        st.leader.map(|i| st.nodes[i].url.clone())
    }

    /// Creates or replaces a device; with `create_only`, an existing name is
    /// `AlreadyExists` (also when a retry follows a lost successful answer).
    /// Returns the device as stored, with its revision.
    pub async fn put_device(&self, device: Device, create_only: bool) -> Result<Device> {
        self.put_device_req(PutDeviceRequest {
            device: Some(device),
            create_only,
            expected_revision: None,
            request_id: new_request_id(),
        })
        .await
    }

    /// Compare-and-set of a device: applied only if its revision is still
    /// `expected_revision` (0: only if it does not exist); otherwise a
    /// `FailedPrecondition` error naming the actual revision. A retried
    /// attempt whose first try did commit also fails that way, so after an
    /// `Unavailable` or timeout the outcome is unknown: read the device.
    pub async fn put_device_if(&self, device: Device, expected_revision: u64) -> Result<Device> {
        self.put_device_req(PutDeviceRequest {
            device: Some(device),
            create_only: false,
            expected_revision: Some(expected_revision),
            request_id: new_request_id(),
        })
        .await
    }

    async fn put_device_req(&self, req: PutDeviceRequest) -> Result<Device> {
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.put_device(req).await }
            })
            .await?;
        resp.device
            .ok_or_else(|| Error::Protocol("PutDevice reply without a device".into()))
    }

    /// Deletes a device; returns the revision of the change.
    pub async fn delete_device(&self, name: &str) -> Result<u64> {
        let req = DeleteDeviceRequest {
            name: name.to_string(),
            request_id: new_request_id(),
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.delete_device(req).await }
            })
            .await?;
        Ok(resp.revision)
    }

    pub async fn list_devices(&self, consistency: Consistency) -> Result<Vec<Device>> {
        let req = ListDevicesRequest {
            consistency: consistency as i32,
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req, t);
                async move { c.list_devices(req).await }
            })
            .await?;
        Ok(resp.devices)
    }

    /// Creates or replaces a tag; `create_only` as for [`Client::put_device`].
    pub async fn put_tag(&self, tag: Tag, create_only: bool) -> Result<Tag> {
        self.put_tag_req(PutTagRequest {
            tag: Some(tag),
            create_only,
            expected_revision: None,
            request_id: new_request_id(),
        })
        .await
    }

    /// Compare-and-set of a tag, like [`Client::put_device_if`].
    pub async fn put_tag_if(&self, tag: Tag, expected_revision: u64) -> Result<Tag> {
        self.put_tag_req(PutTagRequest {
            tag: Some(tag),
            create_only: false,
            expected_revision: Some(expected_revision),
            request_id: new_request_id(),
        })
        .await
    }

    async fn put_tag_req(&self, req: PutTagRequest) -> Result<Tag> {
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.put_tag(req).await }
            })
            .await?;
        resp.tag
            .ok_or_else(|| Error::Protocol("PutTag reply without a tag".into()))
    }

    /// Deletes a tag; returns the revision of the change. Its history is kept
    /// (a tag created again under the name continues it) unless `purge`.
    pub async fn delete_tag(&self, name: &str, purge: bool) -> Result<u64> {
        let req = DeleteTagRequest {
            name: name.to_string(),
            purge,
            request_id: new_request_id(),
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.delete_tag(req).await }
            })
            .await?;
        Ok(resp.revision)
    }

    /// All tags, or only those of `device`.
    pub async fn list_tags(
        &self,
        device: Option<&str>,
        consistency: Consistency,
    ) -> Result<Vec<Tag>> {
        let req = ListTagsRequest {
            consistency: consistency as i32,
            device: device.unwrap_or_default().to_string(),
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.list_tags(req).await }
            })
            .await?;
        Ok(resp.tags)
    }

    /// Stores a batch of readings (at most 10,000, the server's limit). Safe
    /// to retry: a reading id already stored is counted in `duplicates`, so
    /// after a retry `stored + duplicates` is still the batch size.
    pub async fn ingest(&self, readings: Vec<Reading>) -> Result<IngestResponse> {
        self.ingest_with(readings, false).await
    }

    /// Stores the valid readings of a batch and lists each invalid one in
    /// `rejected` (position, id, code, reason) instead of refusing the
    /// whole batch. Safe to retry like [`Client::ingest`].
    pub async fn ingest_partial(&self, readings: Vec<Reading>) -> Result<IngestResponse> {
        self.ingest_with(readings, true).await
    }

    async fn ingest_with(&self, readings: Vec<Reading>, partial: bool) -> Result<IngestResponse> {
        let req = IngestRequest { readings, partial };
        self.call(NORMAL, |mut c, t| {
            let req = timed(req.clone(), t);
            async move { c.ingest(req).await }
        })
        .await
    }

    /// Current value of each tag that has one, in request order.
    pub async fn get_current(
        &self,
        tags: Vec<String>,
        consistency: Consistency,
    ) -> Result<Vec<Reading>> {
        let req = GetCurrentRequest {
            tags,
            consistency: consistency as i32,
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.get_current(req).await }
            })
            .await?;
        Ok(resp.readings)
    }

    /// Streams readings of one tag in time order. Starting the stream is
    /// retried like any call; a failure after readings have flowed ends the
    /// stream with that error (resuming is the caller's choice, since only
    /// it knows what it has consumed).
    pub async fn history(&self, query: HistoryQuery) -> Result<ReadingStream> {
        let req = HistoryRequest {
            tag: query.tag,
            from_us: query.from_us,
            to_us: query.to_us,
            consistency: query.consistency as i32,
            limit: query.limit,
        };
        // No grpc-timeout here: it would bound the whole stream, and a long
        // history is not an error. The client still bounds the wait for the
        // stream to start.
        let streaming = self
            .call(NORMAL, |mut c, _t| {
                let req = req.clone();
                async move { c.history(req).await }
            })
            .await?;
        let readings = streaming
            .map_err(Error::from)
            .map_ok(|chunk| stream::iter(chunk.readings.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(readings))
    }

    /// [`Client::history`], collected.
    pub async fn history_all(&self, query: HistoryQuery) -> Result<Vec<Reading>> {
        self.history(query).await?.try_collect().await
    }

    /// Cluster status as seen by the leader if one is known, else by whichever
    /// node answers first. Also refreshes what the client knows of the leader.
    pub async fn status(&self) -> Result<StatusResponse> {
        let (resp, node) = self
            .call_at(STATUS, |mut c, t| async move {
                c.status(timed(StatusRequest {}, t)).await
            })
            .await?;
        self.learn(node, &resp);
        Ok(resp)
    }

    /// Compares the history of every member of the cluster (members as the
    /// first endpoint that answers lists them; each asked on its own, not
    /// through the leader), with `progress` told how far it is. A node that
    /// does not answer is an error naming it; differing histories are not
    /// an error but a [`replica::Report`] that does not agree. The nodes are
    /// reached as this client reaches them: `opts.security` is replaced by
    /// [`ClientOptions::security`]. The check makes its own connections and
    /// sends no session token: against a cluster that requires one, reach
    /// it with a user certificate (`ClientOptions::security`).
    pub async fn check_replicas(
        &self,
        opts: &replica::CheckOptions,
        progress: impl FnMut(replica::Progress),
    ) -> Result<replica::Report> {
        let opts = replica::CheckOptions {
            security: self.inner.opts.security.clone(),
            token: self.token(),
            ..opts.clone()
        };
        replica::check(&self.endpoints(), &opts, progress)
            .await
            .map_err(Error::Replica)
    }

    /// Adds node `id` at `addr` (its gRPC address, `HOST:PORT`): as a learner,
    /// then as a voter once caught up unless `learner_only`. Returns the
    /// resulting membership.
    pub async fn add_member(&self, id: u64, addr: &str, learner_only: bool) -> Result<Vec<Member>> {
        let req = AddMemberRequest {
            id,
            addr: addr.to_string(),
            learner_only,
        };
        let resp = self
            .call(LONG, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.add_member(req).await }
            })
            .await?;
        Ok(resp.members)
    }

    /// Removes node `id`; returns the resulting membership.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<Member>> {
        let req = RemoveMemberRequest { id };
        let resp = self
            .call(LONG, |mut c, t| {
                let req = timed(req, t);
                async move { c.remove_member(req).await }
            })
            .await?;
        Ok(resp.members)
    }

    /// Writes `value` to the device behind `tag` through the node that polls
    /// it, which reads the value back and reports the outcome: `ok`,
    /// `rejected` (by the device, with its reason in `message`) or `timeout`.
    /// A tag that is not writable, or a value that does not fit the tag's
    /// type, is refused with `FailedPrecondition` / `InvalidArgument`.
    ///
    /// Not idempotent, so not retried like other calls: only failures that
    /// happen before the request can have reached a node (leader discovery,
    /// a connection that could not be established) are retried. Any failure
    /// after sending, including `DeadlineExceeded` and `Unavailable`, is
    /// returned as [`Error::Unconfirmed`]: the device may or may not have
    /// been written, so read the tag before writing again. The attempt may
    /// use the whole [`ClientOptions::deadline`], since the server waits for
    /// the device.
    pub async fn write_tag(&self, tag: &str, value: Value) -> Result<WriteTagResponse> {
        let req = WriteTagRequest {
            tag: tag.to_string(),
            value: Some(value),
        };
        self.call(WRITE, |mut c, t| {
            let req = timed(req.clone(), t);
            async move { c.write_tag(req).await }
        })
        .await
    }

    /// Lists the variables and objects under `node` (a NodeId such as
    /// `ns=2;s=Line1`; `None`: the Objects folder) of the OPC UA server at
    /// `endpoint` (`opc.tcp://HOST:PORT[/path]`), as seen from a cluster
    /// node. With `create_on = Some((device, prefix))`, the server also
    /// creates (or replaces) a tag named `PREFIX/<browse name>` on that
    /// existing device for every variable whose type maps to a Bifrost type;
    /// `created` counts them. Retried like other calls (creating is
    /// create-or-replace).
    pub async fn browse(
        &self,
        endpoint: &str,
        node: Option<&str>,
        create_on: Option<(&str, &str)>,
    ) -> Result<BrowseResponse> {
        let (device, prefix) = create_on.unwrap_or_default();
        let req = BrowseRequest {
            endpoint: endpoint.to_string(),
            node: node.unwrap_or_default().to_string(),
            create_tags_on_device: device.to_string(),
            tag_prefix: prefix.to_string(),
        };
        self.call(LONG, |mut c, t| {
            let req = timed(req.clone(), t);
            async move { c.browse(req).await }
        })
        .await
    }

    /// Looks for devices at `req.targets` from a cluster node and streams
    /// each one found, as found. Starting is retried like other calls;
    /// the scan itself is not (it would probe everything again).
    pub async fn discover(
        &self,
        req: DiscoverRequest,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<DiscoveredDevice>> + Send>>> {
        // No grpc-timeout: a paced scan of a /24 takes as long as it takes.
        let streaming = self
            .call(NORMAL, |mut c, _t| {
                let req = req.clone();
                async move { c.discover(req).await }
            })
            .await?;
        Ok(Box::pin(streaming.map_err(Error::from)))
    }

    /// Creates or replaces `devices` and `tags` in one Raft command: all of
    /// them or, if any is invalid, none. A tag may name a device of the same
    /// import or one that exists already. Returns how many of each were
    /// stored. Safe to retry (create-or-replace); one attempt may use the
    /// whole deadline, since a large import is a large log entry.
    pub async fn import(&self, devices: Vec<Device>, tags: Vec<Tag>) -> Result<ImportResponse> {
        let req = ImportRequest { devices, tags };
        self.call(LONG, |mut c, t| {
            let req = timed(req.clone(), t);
            async move { c.import(req).await }
        })
        .await
    }

    /// Starts a backup on the node this client reaches first (give one
    /// endpoint to choose it): the archive's bytes in chunks, the summary in
    /// the last one. Starting is retried like other calls; the stream is
    /// not (see `bifrostctl backup`, which checks what it received).
    pub async fn backup(&self) -> Result<Pin<Box<dyn Stream<Item = Result<BackupChunk>> + Send>>> {
        // No grpc-timeout: a large state takes as long as it takes.
        let streaming = self
            .call(STATUS, |mut c, _t| async move {
                c.backup(BackupRequest {}).await
            })
            .await?;
        Ok(Box::pin(streaming.map_err(Error::from)))
    }

    async fn call<T, F, Fut>(&self, kind: CallKind, f: F) -> Result<T>
    where
        F: FnMut(Stub, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        Ok(self.call_at(kind, f).await?.0)
    }

    /// Runs `f` against the best node until it succeeds, fails for good, or
    /// the deadline passes. `f` gets a stub and the time the attempt may take.
    /// Returns the answer and the index of the node that gave it.
    async fn call_at<T, F, Fut>(&self, kind: CallKind, mut f: F) -> Result<(T, usize)>
    where
        F: FnMut(Stub, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let opts = &self.inner.opts;
        let start = tokio::time::Instant::now();
        let deadline = start + opts.deadline;
        let mut backoff = opts.backoff_initial;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let budget = if kind.long {
                remaining
            } else {
                opts.request_timeout.min(remaining)
            }
            .max(Duration::from_millis(10));
            let (node, status, sent) = match self.attempt(kind, budget, &mut f).await {
                Ok(ok) => return Ok(ok),
                Err(failure) => failure,
            };
            if !is_retryable_status(&status) {
                return Err(Error::Rpc(Box::new(status)));
            }
            if let Some(wait) = retry_after(&status) {
                // Overloaded and did nothing: same node, after the hint.
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                if remaining <= wait {
                    return Err(Error::GaveUp {
                        status: Box::new(status),
                        attempts,
                        elapsed: start.elapsed(),
                        last_endpoint: self.endpoint_of(node),
                    });
                }
                let jitter = rand::rng().random_range(1.0..=1.5);
                tokio::time::sleep(wait.mul_f64(jitter).min(remaining)).await;
                continue;
            }
            if !kind.idempotent && sent && !crate::error::never_connected(&status) {
                let endpoint = self.forget(node);
                return Err(Error::Unconfirmed {
                    status: Box::new(status),
                    endpoint,
                });
            }
            let url = self.forget(node);
            // A follower that cannot forward says where the leader is.
            if let Some(hint) = leader_hint(&status) {
                self.hint_leader(&hint);
            }
            tracing::debug!(endpoint = %url, code = ?status.code(), message = status.message(), attempts, "retryable failure");

            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining < Duration::from_millis(10) {
                return Err(Error::GaveUp {
                    status: Box::new(status),
                    attempts,
                    elapsed: start.elapsed(),
                    last_endpoint: url,
                });
            }
            let jitter = rand::rng().random_range(0.5..=1.0);
            tokio::time::sleep(backoff.mul_f64(jitter).min(remaining)).await;
            backoff = (backoff * 2).min(opts.backoff_max);
        }
    }

    /// One attempt: discovery if needed, then the call. A failure names the
    /// node it happened on and whether the request itself was sent (false:
    /// it failed in discovery).
    async fn attempt<T, F, Fut>(
        &self,
        kind: CallKind,
        budget: Duration,
        f: &mut F,
    ) -> std::result::Result<(T, usize), (usize, Status, bool)>
    where
        F: FnMut(Stub, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let begun = Instant::now();
        let (mut target, stale) = self.pick();
        if kind.discover && stale {
            let (stub, url) = self.stub(target);
            let fut = async move {
                let mut stub = stub;
                stub.status(timed(StatusRequest {}, budget)).await
            };
            let resp = within(budget, &url, fut)
                .await
                .map_err(|s| (target, s, false))?;
            target = self.learn(target, &resp);
        }
        let left = budget
            .saturating_sub(begun.elapsed())
            .max(Duration::from_millis(10));
        let (stub, url) = self.stub(target);
        let resp = within(left, &url, f(stub, left))
            .await
            .map_err(|s| (target, s, true))?;
        Ok((resp, target))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent in a
        // way that matters (worst case a stale leader), so ignore poisoning.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node to use and whether the leader must be (re)discovered first.
    fn pick(&self) -> (usize, bool) {
        let st = self.state();
        let fresh = st
            .learnt_at
            .is_some_and(|t| t.elapsed() < self.inner.opts.leader_ttl);
        (st.leader.unwrap_or(st.next), !fresh)
    }

    /// A stub for node `i` that sends the client's credentials, creating
    /// the node's channel on first use.
    fn stub(&self, i: usize) -> (Stub, String) {
        let mut st = self.state();
        let node = &mut st.nodes[i];
        let credentials = self.inner.credentials.clone();
        let stub = BifrostClient::with_interceptor(node.channel(), credentials)
            .max_decoding_message_size(MAX_DECODE);
        (stub, node.url.clone())
    }

    /// Records what `Status` from node `answered` says about the leader and
    /// returns the node to send to.
    fn learn(&self, answered: usize, s: &StatusResponse) -> usize {
        let mut st = self.state();
        st.learnt_at = Some(Instant::now());
        let leader = (s.leader_id != 0 && !s.leader_addr.is_empty())
            .then(|| self.known_node(&mut st, &s.leader_addr))
            .flatten();
        st.leader = leader;
        leader.unwrap_or_else(|| {
            st.next = answered;
            answered
        })
    }

    /// Trusts a leader address from a `bifrost-leader` hint until the TTL.
    fn hint_leader(&self, addr: &str) {
        let mut st = self.state();
        if let Some(i) = self.known_node(&mut st, addr) {
            st.leader = Some(i);
            st.learnt_at = Some(Instant::now());
        }
    }

    /// Index of the node at `addr`, a leader address from the cluster
    /// (`HOST:PORT`, given the client's scheme), added if new; `None`
    /// (logged) if it cannot be used.
    fn known_node(&self, st: &mut State, addr: &str) -> Option<usize> {
        st.node_index(addr, &self.inner.opts)
            .map_err(|e| tracing::debug!("ignoring leader address: {e}"))
            .ok()
    }

    /// After a retryable failure on node `i`: stop trusting what we knew and
    /// move the rotation past it. Returns the node's URL.
    fn forget(&self, i: usize) -> String {
        let mut st = self.state();
        if st.leader == Some(i) {
            st.leader = None;
        }
        st.learnt_at = None;
        // Rotate over the nodes given to connect() and any learnt since.
        st.next = (i + 1) % st.nodes.len();
        st.nodes[i].url.clone()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints())
            .field("leader", &self.leader())
            .finish()
    }
}

/// The leader address a node put in the `bifrost-leader` metadata
/// (`ID=HOST:PORT`) of a not-leader error, if any.
fn leader_hint(s: &Status) -> Option<String> {
    let v = s.metadata().get("bifrost-leader")?.to_str().ok()?;
    let (_, addr) = v.split_once('=')?;
    (!addr.trim().is_empty()).then(|| addr.trim().to_string())
}

/// A fresh id for a config write, kept across its retries so that a retry
/// of an attempt that did commit is not applied twice.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A request that tells the server (and tonic's client-side timer) how long
/// the client will wait.
fn timed<M>(msg: M, timeout: Duration) -> Request<M> {
    let mut r = Request::new(msg);
    r.set_timeout(timeout);
    r
}

/// Awaits `fut` for at most `budget` (+ slack), turning a timeout into
/// `DeadlineExceeded` that names the node.
async fn within<T>(
    budget: Duration,
    url: &str,
    fut: impl Future<Output = std::result::Result<Response<T>, Status>>,
) -> std::result::Result<T, Status> {
    match tokio::time::timeout(budget + SLACK, fut).await {
        Ok(r) => r.map(Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer from {url} within {:.1}s",
            budget.as_secs_f64()
        ))),
    }
}

/// `HOST:PORT`, or a URL of `security`'s scheme, to `http://HOST:PORT`
/// (plain) or `https://HOST:PORT` (TLS), checked. A URL of the other scheme
/// is refused with a reason that says so.
pub fn normalize_endpoint(input: &str, security: &Security) -> Result<String> {
    let bad = |reason: &str| Error::InvalidEndpoint {
        endpoint: input.to_string(),
        reason: reason.to_string(),
    };
    if input.trim().is_empty() {
        return Err(bad("empty"));
    }
    let url = security.url(input).map_err(|e| bad(&e))?;
    let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| bad(&e.to_string()))?;
    let uri = endpoint.uri();
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("missing host (expected HOST:PORT)"));
    }
    if uri.port_u16().is_none() {
        return Err(bad("missing port (expected HOST:PORT)"));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(bad("unexpected path (expected HOST:PORT)"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Security = Security::Plain;

    /// A cluster CA made in a temporary directory (kept while the first
    /// value lives), and TLS security trusting it.
    fn tls() -> (tempfile::TempDir, Security) {
        let dir = tempfile::tempdir().unwrap();
        let certs = bifrost_tls::CertDir::new(dir.path().join("certs"));
        let nodes = bifrost_tls::NodeSpec::parse_list("1=localhost").unwrap();
        certs.init(&nodes, "admin", 1).unwrap();
        (dir, Security::tls(certs.ca_cert(), None))
    }

    fn tls_opts(security: Security) -> ClientOptions {
        ClientOptions {
            security,
            ..Default::default()
        }
    }

    #[test]
    fn endpoints_get_http_scheme_and_are_checked() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:7001", &PLAIN).unwrap(),
            "http://127.0.0.1:7001"
        );
        assert_eq!(
            normalize_endpoint(" node-2:7002 ", &PLAIN).unwrap(),
            "http://node-2:7002"
        );
        assert_eq!(
            normalize_endpoint("http://[::1]:7003/", &PLAIN).unwrap(),
            "http://[::1]:7003"
        );
        for bad in [
            "",
            "node-1",
            "https://node-1:7001",
            "node-1:notaport",
            "node-1:7001/x",
        ] {
            assert!(
                matches!(
                    normalize_endpoint(bad, &PLAIN),
                    Err(Error::InvalidEndpoint { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_tls_endpoint_without_tls_is_refused_naming_it_and_the_flag() {
        let e = normalize_endpoint("https://node-1:7001", &PLAIN)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("https://node-1:7001") && e.contains("--ca"),
            "{e}"
        );
    }

    #[test]
    fn with_tls_endpoints_get_https_scheme_and_plain_urls_are_refused() {
        // Only the URL is made: the CA file is not read.
        let tls = Security::tls("/nonexistent/ca.pem", None);
        assert_eq!(
            normalize_endpoint("node-1:7001", &tls).unwrap(),
            "https://node-1:7001"
        );
        assert_eq!(
            normalize_endpoint("https://[::1]:7003/", &tls).unwrap(),
            "https://[::1]:7003"
        );
        let e = normalize_endpoint("http://node-1:7001", &tls).unwrap_err();
        assert!(matches!(e, Error::InvalidEndpoint { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("http://node-1:7001") && e.contains("plain-text"),
            "{e}"
        );
        for bad in ["", "node-1", "node-1:notaport", "node-1:7001/x"] {
            assert!(
                matches!(
                    normalize_endpoint(bad, &tls),
                    Err(Error::InvalidEndpoint { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn an_unreadable_ca_file_is_named_when_connecting() {
        let opts = tls_opts(Security::tls("/nonexistent/ca.pem", None));
        let e = Client::connect_with(vec!["a:1".into()], opts).unwrap_err();
        assert!(matches!(e, Error::Tls { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("/nonexistent/ca.pem") && e.contains("https://a:1"),
            "{e}"
        );
    }

    #[test]
    fn discovered_addresses_take_the_https_scheme() {
        let (_dir, security) = tls();
        let c = Client::connect_with(vec!["a:1,https://b:2".into()], tls_opts(security)).unwrap();
        assert_eq!(c.endpoints(), vec!["https://a:1", "https://b:2"]);
        assert_eq!(c.learn(0, &status(4, "d:4")), 2);
        assert_eq!(c.leader().as_deref(), Some("https://d:4"));
        c.hint_leader("c:3");
        assert_eq!(c.leader().as_deref(), Some("https://c:3"));
        // A plain-text leader address is not used for a TLS client.
        assert_eq!(c.learn(1, &status(5, "http://e:5")), 1);
        assert_eq!(c.leader(), None);
        assert_eq!(c.endpoints().len(), 4);
    }

    #[tokio::test]
    async fn the_replica_check_reaches_nodes_as_the_client_does() {
        let (_dir, security) = tls();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c =
            Client::connect_with(vec![format!("127.0.0.1:{port}")], tls_opts(security)).unwrap();
        // Plain options: with them the https endpoint would be refused
        // unasked ("no CA"); the client's TLS is used, so the node is asked.
        let e = c
            .check_replicas(&replica::CheckOptions::default(), |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(!e.contains("--ca"), "{e}");
        assert!(e.contains(&format!("https://127.0.0.1:{port}")), "{e}");
    }

    #[test]
    fn connect_dedups_and_splits_comma_lists() {
        let c = Client::connect(vec!["a:1,b:2".into(), "a:1".into(), " ".into()]).unwrap();
        assert_eq!(c.endpoints(), vec!["http://a:1", "http://b:2"]);
        assert!(matches!(Client::connect(vec![]), Err(Error::NoEndpoints)));
    }

    fn status(leader_id: u64, leader_addr: &str) -> StatusResponse {
        StatusResponse {
            leader_id,
            leader_addr: leader_addr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn learning_a_leader_outside_the_list_adds_it() {
        let c = Client::connect(vec!["a:1".into(), "b:2".into()]).unwrap();
        let target = c.learn(0, &status(4, "d:4"));
        assert_eq!(target, 2);
        assert_eq!(c.leader().as_deref(), Some("http://d:4"));
        assert_eq!(c.endpoints().len(), 3);
        // A known leader is reused, not added twice.
        assert_eq!(c.learn(1, &status(2, "b:2")), 1);
        assert_eq!(c.endpoints().len(), 3);
        assert_eq!(c.pick(), (1, false));
    }

    #[test]
    fn no_leader_means_the_answering_node_is_the_target() {
        let c = Client::connect(vec!["a:1".into(), "b:2".into()]).unwrap();
        assert_eq!(c.learn(1, &status(0, "")), 1);
        assert_eq!(c.leader(), None);
        assert_eq!(c.pick(), (1, false));
    }

    #[test]
    fn failure_forgets_the_leader_and_rotates() {
        let c = Client::connect(vec!["a:1".into(), "b:2".into(), "c:3".into()]).unwrap();
        assert_eq!(c.pick(), (0, true));
        c.learn(0, &status(3, "c:3"));
        assert_eq!(c.pick(), (2, false));
        assert_eq!(c.forget(2), "http://c:3");
        assert_eq!(c.leader(), None);
        // Wrapped around past the failed node, and discovery is due again.
        assert_eq!(c.pick(), (0, true));
    }

    #[tokio::test]
    async fn non_retryable_error_returns_at_once() {
        let c = Client::connect_with(vec!["a:1".into()], ClientOptions::default()).unwrap();
        let mut calls = 0;
        let r: Result<()> = c
            .call(STATUS, |_stub, _t| {
                calls += 1;
                async { Err(Status::not_found("tag \"x\" not found")) }
            })
            .await;
        // One attempt, so no backoff was slept either.
        assert_eq!(calls, 1);
        assert_eq!(r.unwrap_err().to_string(), "NotFound: tag \"x\" not found");
    }

    #[tokio::test]
    async fn retryable_errors_rotate_nodes_until_success() {
        let opts = ClientOptions {
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            ..Default::default()
        };
        let c = Client::connect_with(vec!["a:1".into(), "b:2".into()], opts).unwrap();
        let mut calls = 0;
        let (value, node) = c
            .call_at(STATUS, |_stub, _t| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(Status::unavailable("no leader"))
                    } else {
                        Ok(Response::new(n))
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 3);
        // Tried a, then b, then a again.
        assert_eq!(node, 0);
    }

    #[tokio::test]
    async fn an_overloaded_node_gets_the_same_write_again_after_its_hint() {
        let opts = ClientOptions {
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            ..Default::default()
        };
        let c = Client::connect_with(vec!["a:1".into(), "b:2".into()], opts).unwrap();
        let overloaded = || {
            let mut s = Status::resource_exhausted("node 1 is behind");
            s.metadata_mut()
                .insert("retry-after-ms", "40".parse().unwrap());
            s
        };
        // A write that needs no discovery (the test has no real node).
        let write = CallKind {
            discover: false,
            long: false,
            idempotent: false,
        };
        let mut calls = 0;
        let started = tokio::time::Instant::now();
        let (value, node) = c
            .call_at(write, |_stub, _t| {
                calls += 1;
                let n = calls;
                let refusal = overloaded();
                async move {
                    if n < 3 {
                        Err(refusal)
                    } else {
                        Ok(Response::new(n))
                    }
                }
            })
            .await
            .unwrap();
        // A write was sent again (the node did nothing with it), to the
        // same node, after waiting at least the hint each time.
        assert_eq!((value, node), (3, 0));
        assert!(
            started.elapsed() >= Duration::from_millis(80),
            "{:?}",
            started.elapsed()
        );
        // Without the hint the same refusal is final.
        let r: Result<()> = c
            .call(write, |_stub, _t| async {
                Err(Status::resource_exhausted("batch too big"))
            })
            .await;
        assert_eq!(r.unwrap_err().code(), Some(tonic::Code::ResourceExhausted));
    }

    #[tokio::test]
    async fn retries_stop_at_the_deadline() {
        let opts = ClientOptions {
            deadline: Duration::from_millis(200),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..Default::default()
        };
        let c = Client::connect_with(vec!["a:1".into()], opts).unwrap();
        let started = tokio::time::Instant::now();
        let r: Result<()> = c
            .call(STATUS, |_stub, _t| async {
                Err(Status::unavailable("no leader"))
            })
            .await;
        // It kept trying until about the deadline (a lower bound, which a
        // loaded machine cannot break), and then stopped: the call returned,
        // after no more attempts than jittered backoffs of at least 5 ms fit
        // in 200 ms. No upper bound on wall-clock time: a loaded machine may
        // run late.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        match r.unwrap_err() {
            Error::GaveUp {
                status, attempts, ..
            } => {
                assert_eq!(status.code(), tonic::Code::Unavailable);
                assert!((3..=41).contains(&attempts), "{attempts}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn refused_connection_is_retried_then_reported_as_unavailable() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = ClientOptions {
            deadline: Duration::from_millis(300),
            backoff_initial: Duration::from_millis(10),
            ..Default::default()
        };
        let c = Client::connect_with(vec![format!("127.0.0.1:{port}")], opts).unwrap();
        match c.status().await.unwrap_err() {
            Error::GaveUp {
                status,
                attempts,
                last_endpoint,
                ..
            } => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(attempts >= 2, "{attempts}");
                assert_eq!(last_endpoint, format!("http://127.0.0.1:{port}"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_leader_hint_in_metadata_sets_the_leader() {
        let c = Client::connect(vec!["a:1".into(), "b:2".into()]).unwrap();
        let mut s = Status::unavailable("not the leader");
        s.metadata_mut()
            .insert("bifrost-leader", "3=c:3".parse().unwrap());
        assert_eq!(leader_hint(&s).as_deref(), Some("c:3"));
        c.hint_leader("c:3");
        assert_eq!(c.leader().as_deref(), Some("http://c:3"));
        assert_eq!(c.pick(), (2, false));
        assert_eq!(leader_hint(&Status::unavailable("no leader")), None);
    }
}
