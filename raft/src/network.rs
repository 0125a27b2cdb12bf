//! Node-to-node transport: the internal `RaftInternal` gRPC service (server
//! side) and openraft's `RaftNetwork` over it (client side). Only cluster
//! peers may call this service. Payloads are postcard behind the format
//! version byte; remote Raft errors travel as data inside the payload, so a
//! gRPC error always means a transport problem.

use std::time::Duration;

use bifrost_proto::raft::raft_internal_client::RaftInternalClient;
use bifrost_proto::raft::raft_internal_server::RaftInternal;
use bifrost_proto::raft::RaftPayload;
use bifrost_storage::codec::{decode, encode};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::node::{Forwarded, RaftNode};
use crate::{NodeId, TypeConfig};

/// Largest internal message: AppendEntries are bounded to ~8 MiB by the log
/// reader, snapshot chunks to `snapshot_max_chunk_size`.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A lazily connecting client of a peer's internal service.
pub fn peer_client(addr: &str) -> Result<RaftInternalClient<Channel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad peer address '{addr}': {e}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5));
    Ok(RaftInternalClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

pub(crate) fn payload<T: Serialize>(v: &T) -> RaftPayload {
    RaftPayload { data: encode(v) }
}

pub(crate) fn unpayload<T: DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    decode(&p.data).map_err(|e| Status::invalid_argument(format!("bad internal payload: {e}")))
}

/// Creates [`PeerNetwork`]s for openraft's replication tasks.
#[derive(Clone, Default)]
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            target,
            client: peer_client(&node.addr),
        }
    }
}

/// openraft's view of one peer.
pub struct PeerNetwork {
    target: NodeId,
    client: Result<RaftInternalClient<Channel>, String>,
}

impl PeerNetwork {
    async fn call<Req, Resp, E>(
        &mut self,
        method: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
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
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
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
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}

/// Server side of the internal service.
pub struct InternalService {
    node: std::sync::Arc<RaftNode>,
    local: Option<std::sync::Arc<dyn LocalHandler>>,
}

impl InternalService {
    pub fn new(
        node: std::sync::Arc<RaftNode>,
        local: Option<std::sync::Arc<dyn LocalHandler>>,
    ) -> InternalService {
        InternalService { node, local }
    }
}

#[tonic::async_trait]
impl RaftInternal for InternalService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = unpayload(req.get_ref())?;
        let res = self.node.raft.append_entries(rpc).await;
        Ok(tonic::Response::new(payload(&res)))
    }

    async fn vote(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = unpayload(req.get_ref())?;
        let res = self.node.raft.vote(rpc).await;
        Ok(tonic::Response::new(payload(&res)))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = unpayload(req.get_ref())?;
        let res = self.node.raft.install_snapshot(rpc).await;
        Ok(tonic::Response::new(payload(&res)))
    }

    async fn propose(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let fwd: Forwarded = unpayload(req.get_ref())?;
        let res = self.node.execute_local(fwd).await;
        Ok(tonic::Response::new(payload(&res)))
    }

    async fn read_index(
        &self,
        _req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let res = self.node.local_read_index().await;
        Ok(tonic::Response::new(payload(&res)))
    }

    async fn ping(
        &self,
        _req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        Ok(tonic::Response::new(payload(&self.node.id)))
    }

    async fn local(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let Some(handler) = &self.local else {
            return Err(Status::unimplemented(
                "this node serves no node-local calls",
            ));
        };
        let reply = handler.handle(req.into_inner().data).await;
        Ok(tonic::Response::new(payload(&reply)))
    }
}

/// Node-local work that another node may ask this one to do (for example a
/// write to a device this node polls). The raft layer only carries the bytes.
#[tonic::async_trait]
pub trait LocalHandler: Send + Sync + 'static {
    async fn handle(&self, request: Vec<u8>) -> Result<Vec<u8>, String>;
}
