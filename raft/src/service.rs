//! The server side of the node-to-node Raft transport: the `RaftInternal`
//! gRPC service that hands AppendEntries, Vote and InstallSnapshot to
//! openraft and runs proposals and read-index requests forwarded by
//! followers. Only cluster peers may call it. The client side is
//! [`crate::network`].

use std::sync::Arc;

use bifrost_proto::raft::raft_internal_server::RaftInternal;
use bifrost_proto::raft::RaftPayload;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::{Request, Response, Status};

use crate::network::{payload, unpayload};
use crate::node::{Forwarded, RaftNode};
use crate::{NodeId, TypeConfig};

/// Server side of the internal Raft service of one node.
pub struct InternalService {
    node: Arc<RaftNode>,
}

impl InternalService {
    pub fn new(node: Arc<RaftNode>) -> InternalService {
        InternalService { node }
    }
}

#[tonic::async_trait]
impl RaftInternal for InternalService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = unpayload(req.get_ref())?;
        let res = self.node.raft().append_entries(rpc).await;
        Ok(Response::new(payload(&res)))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = unpayload(req.get_ref())?;
        let res = self.node.raft().vote(rpc).await;
        Ok(Response::new(payload(&res)))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = unpayload(req.get_ref())?;
        let res = self.node.raft().install_snapshot(rpc).await;
        Ok(Response::new(payload(&res)))
    }

    async fn propose(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let fwd: Forwarded = unpayload(req.get_ref())?;
        let res = self.node.execute_local(fwd).await;
        Ok(Response::new(payload(&res)))
    }

    async fn read_index(
        &self,
        _req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let res = self.node.local_read_index().await;
        Ok(Response::new(payload(&res)))
    }
}
