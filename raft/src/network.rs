//! The client side of the node-to-node Raft transport: openraft's
//! `RaftNetwork` over the internal `RaftInternal` gRPC service, and the
//! payload codec both sides share. The server side is [`crate::service`].
//! Payloads are postcard behind the format version byte; remote Raft errors
//! travel as data inside the payload, so a gRPC error always means a
//! transport problem.
//!
//! This module knows nothing of [`crate::node::RaftNode`]: the node uses it,
//! not the other way round.

use std::time::Duration;

use bifrost_proto::channel::Security;
use bifrost_proto::raft::raft_internal_client::RaftInternalClient;
use bifrost_proto::raft::RaftPayload;
use bifrost_storage::codec::{decode, encode};
use std::future::Future;
use std::sync::Arc;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend, Snapshot, Vote};
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::transfer::{self, SnapshotStats};
use crate::{Member, NodeId, TypeConfig};

/// Largest internal message: AppendEntries are bounded to ~1 MiB by the log
/// reader, snapshot chunks to `snapshot_max_chunk_size`, a snapshot's file
/// list to a few hundred bytes a file.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How every node-to-node connection is made (Raft transport and the
/// server's own peer calls alike), to a peer port: TLS with this node's
/// certificate (or plain text in an `--insecure` cluster), lazily, with a
/// short connect timeout, Nagle off and HTTP/2 keep-alives.
pub fn peer_endpoint(addr: &str, security: &Security) -> Result<Endpoint, String> {
    Ok(security
        .endpoint(addr)
        .map_err(|e| format!("peer {e}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5)))
}

/// A lazily connecting client of a peer's internal Raft service.
pub fn peer_client(addr: &str, security: &Security) -> Result<RaftInternalClient<Channel>, String> {
    Ok(
        RaftInternalClient::new(peer_endpoint(addr, security)?.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

pub(crate) fn payload<T: Serialize>(v: &T) -> RaftPayload {
    RaftPayload { data: encode(v) }
}

pub(crate) fn unpayload<T: DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    decode(&p.data).map_err(|e| {
        Status::invalid_argument(format!(
            "bad internal payload: a peer's message this node (Bifrost {}) cannot read: {e}. \
             Nodes may run the release before or after each other's, no further apart",
            env!("CARGO_PKG_VERSION")
        ))
    })
}

/// Creates [`PeerNetwork`]s for openraft's replication tasks.
#[derive(Clone)]
pub struct NetworkFactory {
    /// This node.
    pub id: NodeId,
    /// Where snapshot transfers are counted.
    pub stats: Arc<SnapshotStats>,
    /// How peer ports are reached.
    pub security: Security,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerNetwork {
        PeerNetwork {
            id: self.id,
            target,
            client: peer_client(&node.peer, &self.security),
            stats: self.stats.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct PeerNetwork {
    id: NodeId,
    target: NodeId,
    client: Result<RaftInternalClient<Channel>, String>,
    stats: Arc<SnapshotStats>,
}

impl PeerNetwork {
    async fn call<Req, Resp, E>(
        &mut self,
        method: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(
                    e.clone(),
                ))))
            }
        };
        let mut request = Request::new(payload(req));
        request.set_timeout(option.hard_ttl());
        let result = match method {
            "append" => client.append_entries(request).await,
            _ => client.vote(request).await,
        };
        let reply = match result {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let err = AnyError::error(format!("{method} to node {}: {status}", self.target));
                return Err(match status.code() {
                    tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&err)),
                    _ => RPCError::Network(NetworkError::new(&err)),
                });
            }
        };
        let decoded: Result<Resp, RaftError<NodeId, E>> = decode(&reply.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&AnyError::error(e.to_string()))))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }

    /// Ships the snapshot's files the target lacks (see [`crate::transfer`]).
    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(Unreachable::new(&AnyError::error(e.clone())).into()),
        };
        let (id, target) = (self.id, self.target);
        transfer::send(
            client,
            id,
            target,
            vote,
            snapshot,
            cancel,
            &option,
            &self.stats,
        )
        .await
    }
}
