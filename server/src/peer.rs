//! The server's own node-to-node calls (`bifrost.node.v1`, not Raft): the
//! leader's liveness probes of members (answered with the node's labels and
//! the devices it cannot reach, see `reach`), a device write forwarded to the
//! node that polls the device, and the leader asking a member for the
//! digests of its history (the periodic replica check). [`PeerService`]
//! answers them; [`Peers`] makes them, with one cached connection per peer
//! address.
//!
//! Connections are made the same way as the Raft transport's
//! ([`bifrost_raft::network::peer_endpoint`]), to peer ports. This service
//! is served on the peer port only, behind `peer_port::PeerGate`: only
//! cluster members reach it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bifrost_proto::channel::Security;
use bifrost_proto::node::node_internal_client::NodeInternalClient;
use bifrost_proto::node::node_internal_server::NodeInternal;
use bifrost_proto::node::{self, local_reply, LocalCall, LocalReply, PingReply, PingRequest};
use bifrost_raft::network::peer_endpoint;
use bifrost_storage::codec::{decode, encode};
use bifrost_storage::Value;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::local::{Local, LocalRequest, NodeLoad, WriteOutcome};
use crate::reach::{Reachability, Unreachable};
use crate::replica::{Digests, Span};

/// Answers peers' calls on this node.
pub struct PeerService {
    node_id: u64,
    local: Arc<Local>,
    /// Advertised in every probe answer (`--node-label`).
    labels: BTreeMap<String, String>,
    reach: Arc<Reachability>,
}

impl PeerService {
    pub fn new(
        node_id: u64,
        local: Arc<Local>,
        labels: BTreeMap<String, String>,
        reach: Arc<Reachability>,
    ) -> PeerService {
        PeerService {
            node_id,
            local,
            labels,
            reach,
        }
    }
}

/// A member's answer to the leader's probe.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    pub id: u64,
    pub labels: BTreeMap<String, String>,
    pub unreachable: Vec<Unreachable>,
    /// How far the node's clock was ahead of this one's (negative: behind),
    /// and the round trip that bounds the error (half of it), in
    /// microseconds; `None` from a node that does not send its clock.
    pub clock: Option<crate::clock::Offset>,
}

#[tonic::async_trait]
impl NodeInternal for PeerService {
    async fn ping(&self, _req: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let unreachable = self
            .reach
            .reports()
            .into_iter()
            .map(|u| node::Unreachable {
                device: u.device,
                epoch: u.epoch,
                failed_polls: u.failed_polls,
                reason: u.reason,
                backoff_ms: u.backoff_ms,
                retry_in_ms: u.retry_in_ms,
            })
            .collect();
        Ok(Response::new(PingReply {
            node_id: self.node_id,
            labels: self.labels.clone().into_iter().collect(),
            unreachable,
            now_us: bifrost_model::now_us(),
        }))
    }

    async fn local(&self, req: Request<LocalCall>) -> Result<Response<LocalReply>, Status> {
        let result = match decode::<LocalRequest>(&req.get_ref().request) {
            Err(e) => local_reply::Result::Error(format!("bad node-local request: {e}")),
            Ok(LocalRequest::Write { tag, value }) => {
                local_reply::Result::Ok(encode(&self.local.write(&tag, value).await))
            }
            Ok(LocalRequest::ReplicaDigests(span)) => {
                local_reply::Result::Ok(encode(&self.local.replica_digests(span).await))
            }
            Ok(LocalRequest::Load) => local_reply::Result::Ok(encode(&self.local.load())),
        };
        Ok(Response::new(LocalReply {
            result: Some(result),
        }))
    }
}

/// Calls other nodes' [`PeerService`]s, at their peer addresses.
pub struct Peers {
    security: Security,
    clients: Mutex<HashMap<String, NodeInternalClient<Channel>>>,
}

impl Peers {
    pub fn new(security: Security) -> Peers {
        Peers {
            security,
            clients: Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, addr: &str) -> Result<NodeInternalClient<Channel>, String> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c = NodeInternalClient::new(peer_endpoint(addr, &self.security)?.connect_lazy());
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Probes the node at `addr`; its answer when it gave one within `timeout`.
    pub async fn ping(&self, addr: &str, timeout: Duration) -> Option<Probe> {
        let mut client = self.client(addr).await.ok()?;
        let mut req = Request::new(PingRequest {});
        req.set_timeout(timeout);
        let sent_us = bifrost_model::now_us();
        let reply = tokio::time::timeout(timeout, client.ping(req))
            .await
            .ok()?
            .ok()?
            .into_inner();
        let clock = crate::clock::Offset::measure(sent_us, reply.now_us, bifrost_model::now_us());
        let unreachable = reply
            .unreachable
            .into_iter()
            .map(|u| Unreachable {
                device: u.device,
                epoch: u.epoch,
                failed_polls: u.failed_polls,
                reason: u.reason,
                backoff_ms: u.backoff_ms,
                retry_in_ms: u.retry_in_ms,
            })
            .collect();
        Some(Probe {
            id: reply.node_id,
            labels: reply.labels.into_iter().collect(),
            unreachable,
            clock,
        })
    }

    /// Asks the node at `addr` (which must poll the tag's device) to write
    /// `value` to `tag` and read it back.
    pub async fn write(
        &self,
        addr: &str,
        tag: &str,
        value: Value,
        timeout: Duration,
    ) -> Result<WriteOutcome, String> {
        let request = LocalRequest::Write {
            tag: tag.to_string(),
            value,
        };
        self.local(addr, &request, timeout, "write outcome").await
    }

    /// The digests of the history of the node at `addr` over `span`.
    pub async fn replica_digests(
        &self,
        addr: &str,
        span: Span,
        timeout: Duration,
    ) -> Result<Digests, String> {
        let request = LocalRequest::ReplicaDigests(span);
        self.local::<Result<Digests, String>>(addr, &request, timeout, "replica digests")
            .await?
            .map_err(|e| format!("node at {addr}: {e}"))
    }

    /// The Raft position and outbox depth of the node at `addr`.
    pub async fn load(&self, addr: &str, timeout: Duration) -> Result<NodeLoad, String> {
        self.local(addr, &LocalRequest::Load, timeout, "node load")
            .await
    }

    /// Runs `request` on the node at `addr`; its reply, decoded as `T`
    /// (`what` names it in errors).
    async fn local<T: DeserializeOwned>(
        &self,
        addr: &str,
        request: &LocalRequest,
        timeout: Duration,
        what: &str,
    ) -> Result<T, String> {
        let mut client = self.client(addr).await?;
        let mut req = Request::new(LocalCall {
            request: encode(request),
        });
        req.set_timeout(timeout);
        let reply = client
            .local(req)
            .await
            .map_err(|s| format!("node at {addr}: {}", s.message()))?;
        match reply.into_inner().result {
            Some(local_reply::Result::Ok(bytes)) => {
                decode::<T>(&bytes).map_err(|e| format!("node at {addr}: undecodable {what}: {e}"))
            }
            Some(local_reply::Result::Error(e)) => Err(format!("node at {addr}: {e}")),
            None => Err(format!("node at {addr}: empty reply")),
        }
    }
}
