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
/// Owners a write is tried on when the device moves while it is routed.
const WRITE_ATTEMPTS: usize = 3;

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
    let value = tag.accept_value(value).map_err(Status::invalid_argument)?;
    let outcome = write_on_owner(api, &tag, value).await?;
    Ok(convert::write_outcome_pb(outcome))
}

/// Writes `value` to `tag` on the node that polls its device. A write the
/// node refuses because it no longer polls the device (it moved while the
/// write was routed; nothing reached the device) is tried again on the new
/// owner, once this node has applied the move; any other outcome, a
/// timeout above all (the device may have taken it), is final.
async fn write_on_owner(api: &Api, tag: &Tag, value: Value) -> Result<WriteOutcome, Status> {
    let mut attempt = 1;
    loop {
        let owner = owner_of(api, &tag.device)?;
        let outcome = write_on(api, tag, value.clone(), owner).await?;
        if !outcome.refused_as_not_owner() || attempt == WRITE_ATTEMPTS {
            return Ok(outcome);
        }
        api.linearizable_barrier().await?;
        if api.node.state().assignment(&tag.device) == Some(owner) {
            return Ok(outcome);
        }
        tracing::info!(tag = %tag.name, from = owner.node, attempt, "device moved during a write: trying its new owner");
        attempt += 1;
    }
}

fn owner_of(api: &Api, device: &str) -> Result<bifrost_model::Assignment, Status> {
    api.node.state().assignment(device).ok_or_else(|| {
        Status::failed_precondition(format!(
            "device '{}' is not polled by any node (is it disabled?)",
            device
        ))
    })
}

/// Writes `value` to `tag` on node `owner` (this one, or forwarded).
async fn write_on(
    api: &Api,
    tag: &Tag,
    value: Value,
    owner: bifrost_model::Assignment,
) -> Result<WriteOutcome, Status> {
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

/// Probes the request's targets for devices from this node and streams
/// each one found (see `bifrost_drivers::discover`). A bad request is
/// refused before anything is sent on the network.
pub fn discover(
    req: pb::DiscoverRequest,
) -> Result<super::stream::ResponseStream<pb::DiscoveredDevice>, Status> {
    use bifrost_drivers::discover::{self, DiscoverOptions};
    let protocol = bifrost_model::Protocol::parse(&req.protocol).ok_or_else(|| {
        Status::invalid_argument(format!(
            "unknown protocol '{}' (expected opcua, modbus-tcp, enip or s7)",
            req.protocol
        ))
    })?;
    let units = req
        .units
        .iter()
        .map(|u| match u8::try_from(*u) {
            Ok(u) if (1..=247).contains(&u) => Ok(u),
            _ => Err(Status::invalid_argument(format!(
                "unit id {u} is out of range (1-247)"
            ))),
        })
        .collect::<Result<Vec<u8>, Status>>()?;
    let port = match req.port {
        0 => None,
        p => Some(u16::try_from(p).map_err(|_| {
            Status::invalid_argument(format!("port {p} is out of range (1-65535)"))
        })?),
    };
    let opts = DiscoverOptions {
        protocol,
        targets: req.targets,
        port,
        units,
        timeout: std::time::Duration::from_millis(if req.timeout_ms == 0 {
            1000
        } else {
            req.timeout_ms
        }),
        rate_per_second: if req.rate_per_second == 0 {
            10
        } else {
            req.rate_per_second
        },
    };
    discover::plan(&opts).map_err(Status::invalid_argument)?;
    let (found_tx, mut found_rx) = tokio::sync::mpsc::channel(16);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let scan = tokio::spawn(discover::run(opts, found_tx));
        while let Some(c) = found_rx.recv().await {
            if tx.send(Ok(convert::discovered_pb(c))).await.is_err() {
                scan.abort(); // The client went away: stop probing.
                return;
            }
        }
        if let Ok(Err(e)) = scan.await {
            let _ = tx.send(Err(Status::invalid_argument(e))).await;
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
