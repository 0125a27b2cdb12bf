//! The server side of the node-to-node Raft transport: the `RaftInternal`
//! gRPC service that hands AppendEntries and Vote to openraft, receives
//! snapshots (`crate::transfer`) and runs proposals and read-index requests
//! forwarded by followers. Only cluster peers may call it. The client side is
//! [`crate::network`].

use std::sync::Arc;

use bifrost_proto::raft::raft_internal_server::RaftInternal;
use bifrost_proto::raft::{RaftPayload, SnapshotPiece};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use tonic::{Request, Response, Status, Streaming};

use crate::network::{payload, unpayload};
use crate::node::{Forwarded, RaftNode};
use crate::snapshot::FileEntry;
use crate::{transfer, NodeId, TypeConfig};

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
        // Entries this disk has no room for are refused (the leader sends
        // them again later); heartbeats still reach openraft.
        if !rpc.entries.is_empty() {
            self.node
                .disk()
                .check()
                .map_err(Status::resource_exhausted)?;
        }
        let res = self.node.raft().append_entries(rpc).await;
        Ok(Response::new(payload(&res)))
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = unpayload(req.get_ref())?;
        let res = self.node.raft().vote(rpc).await;
        Ok(Response::new(payload(&res)))
    }

    async fn snapshot_lacks(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let files: Vec<FileEntry> = unpayload(req.get_ref())?;
        let res = transfer::lacking(self.node.snapshot_store(), &files);
        Ok(Response::new(payload(&res)))
    }

    async fn snapshot_stream(
        &self,
        req: Request<Streaming<SnapshotPiece>>,
    ) -> Result<Response<RaftPayload>, Status> {
        let node = &self.node;
        let res = transfer::receive(
            node.raft(),
            node.id(),
            node.snapshot_stats(),
            req.into_inner(),
        )
        .await;
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
