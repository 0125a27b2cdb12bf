//! The cluster: this node's view of it (`status`), membership changes, the
//! retention setting, and the digests of this node's history for the replica
//! check (`replica_digests`, answered here, never forwarded).

use bifrost_proto::convert::assignment_to_pb;
use bifrost_proto::v1 as pb;
use bifrost_raft::{Command, Member};
use tonic::Status;

use super::convert::{digests_pb, members_pb};
use super::{status, Api};
use crate::replica::{self, Span};

pub fn status(api: &Api) -> pb::StatusResponse {
    let node = &api.node;
    let m = node.metrics();
    let state = node.state();
    let (leader_id, leader_addr) = node
        .leader()
        .map_or((0, String::new()), |(id, m)| (id, m.api));
    pb::StatusResponse {
        node_id: node.id(),
        leader_id,
        leader_addr,
        term: m.current_term,
        commit_index: node.commit_index(),
        applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
        last_log_index: m.last_log_index.unwrap_or(0),
        members: members_pb(node.members()),
        state: format!("{:?}", m.state),
        snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
        purged_index: m.purged.map(|l| l.index).unwrap_or(0),
        revision: state.revision(),
        oldest_revision: state.oldest_revision(),
        retention_seconds: state.retention_seconds(),
        audit_retention_seconds: state.audit_retention_seconds(),
        assignments: state
            .assignments()
            .into_iter()
            .map(|(device, a)| assignment_to_pb(device, a))
            .collect(),
        failing_devices: api
            .reach
            .view(node.id(), node.is_leader())
            .into_iter()
            .map(|(node, u)| pb::FailingDevice {
                device: u.device,
                node,
                failed_polls: u.failed_polls,
                reason: u.reason,
                backoff_ms: u.backoff_ms,
                retry_in_ms: u.retry_in_ms,
            })
            .collect(),
    }
}

pub async fn add_member(
    api: &Api,
    req: pb::AddMemberRequest,
) -> Result<pb::AddMemberResponse, Status> {
    if req.id == 0 {
        return Err(Status::invalid_argument("member id must be greater than 0"));
    }
    let addr = Member::parse(&req.addr)
        .map_err(|e| Status::invalid_argument(format!("member {} address {e}", req.id)))?;
    let members = api
        .node
        .add_member(req.id, addr, req.learner_only)
        .await
        .map_err(status::propose)?;
    Ok(pb::AddMemberResponse {
        members: members_pb(members),
    })
}

pub async fn remove_member(
    api: &Api,
    req: pb::RemoveMemberRequest,
) -> Result<pb::RemoveMemberResponse, Status> {
    let members = api
        .node
        .remove_member(req.id)
        .await
        .map_err(status::propose)?;
    Ok(pb::RemoveMemberResponse {
        members: members_pb(members),
    })
}

pub async fn set_retention(
    api: &Api,
    req: pb::SetRetentionRequest,
) -> Result<pb::SetRetentionResponse, Status> {
    let seconds = req.seconds;
    api.write(Command::SetRetention { seconds }).await?;
    Ok(pb::SetRetentionResponse { seconds })
}

pub async fn set_audit_retention(
    api: &Api,
    req: pb::SetAuditRetentionRequest,
) -> Result<pb::SetAuditRetentionResponse, Status> {
    let seconds = req.seconds;
    api.write(Command::SetAuditRetention { seconds }).await?;
    Ok(pb::SetAuditRetentionResponse { seconds })
}

pub async fn replica_digests(
    api: &Api,
    req: pb::ReplicaDigestsRequest,
) -> Result<pb::ReplicaDigestsResponse, Status> {
    let span = Span::new(req.from_revision, req.to_revision, req.range_size)
        .map_err(Status::invalid_argument)?;
    let digests = replica::answer(&api.node, span)
        .await
        .map_err(status::storage)?;
    Ok(digests_pb(digests))
}
