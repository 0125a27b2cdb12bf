//! Calls that reach a device rather than the stored state: writing a value
//! to a tag's device (through the node that polls it) and browsing a
//! device's address space.

use std::time::Duration;

use bifrost_model::Value;
use bifrost_proto::convert::value_from_pb;
use bifrost_proto::v1 as pb;
use bifrost_raft::Command;
use bifrost_storage::Tag;
use tonic::Status;

use super::{convert, status, Api};
use crate::local::WriteOutcome;

/// How long a device write forwarded to the device's owner may take.
const FORWARDED_WRITE_TIMEOUT: Duration = Duration::from_secs(25);

pub async fn write_tag(
    api: &Api,
    req: pb::WriteTagRequest,
) -> Result<pb::WriteTagResponse, Status> {
    api.linearizable_barrier().await?;
    let tag = api
        .node
        .state()
        .tag(&req.tag)
        .ok_or_else(|| status::unknown_tag(&req.tag))?;
    if !tag.writable {
        return Err(Status::failed_precondition(format!(
            "tag '{}' is not writable (create it with --writable)",
            tag.name
        )));
    }
    let value =
        value_from_pb(req.value).ok_or_else(|| Status::invalid_argument("value is missing"))?;
    let value = tag.data_type.coerce(value).map_err(|e| {
        Status::invalid_argument(format!("tag '{}' is {}: {e}", tag.name, tag.data_type))
    })?;
    let outcome = write_on_owner(api, &tag, value).await?;
    Ok(convert::write_outcome_pb(outcome))
}

/// Writes `value` to `tag` on the node that polls its device: here, or
/// forwarded to that node.
async fn write_on_owner(api: &Api, tag: &Tag, value: Value) -> Result<WriteOutcome, Status> {
    let owner = api.node.state().assignment(&tag.device).ok_or_else(|| {
        Status::failed_precondition(format!(
            "device '{}' is not polled by any node (is it disabled?)",
            tag.device
        ))
    })?;
    if owner.node == api.node.id() {
        return Ok(api.local.write(&tag.name, value).await);
    }
    let owner_member = api.node.member(owner.node).ok_or_else(|| {
        Status::unavailable(format!(
            "owner node {} of device '{}' is not a member",
            owner.node, tag.device
        ))
    })?;
    api.peers
        .write(
            &owner_member.peer,
            &tag.name,
            value,
            FORWARDED_WRITE_TIMEOUT,
        )
        .await
        .map_err(|e| status::owner_unreachable(owner.node, e))
}

/// Lists what a device offers; with `create_tags_on_device`, also creates a
/// tag for each variable found on that (stored) device.
pub async fn browse(api: &Api, req: pb::BrowseRequest) -> Result<pb::BrowseResponse, Status> {
    let node = (!req.node.is_empty()).then_some(req.node.as_str());
    let items = crate::devices::browse(&req.endpoint, node)
        .await
        .map_err(status::browse_failed)?;
    let mut created = 0;
    if !req.create_tags_on_device.is_empty() {
        api.linearizable_barrier().await?;
        let device = api
            .node
            .state()
            .device(&req.create_tags_on_device)
            .ok_or_else(|| {
                Status::not_found(format!("unknown device '{}'", req.create_tags_on_device))
            })?;
        let tags = crate::devices::tags_from_browse(&device, &req.tag_prefix, &items)
            .map_err(status::device_config)?;
        created = tags.len() as u64;
        api.write(Command::Import {
            devices: vec![],
            tags,
        })
        .await?;
    }
    Ok(pb::BrowseResponse {
        items: items.into_iter().map(convert::browse_item_pb).collect(),
        created,
    })
}
