//! Configuration calls: devices, tags and bulk import. Records are checked
//! against the model's rules and their protocol's before they are proposed;
//! the state machine checks again when applying.

use std::collections::HashMap;

use bifrost_proto::convert;
use bifrost_proto::v1 as pb;
use bifrost_raft::{Command, Outcome};
use tonic::Status;

use super::{status, Api};
use crate::auth::Caller;
use crate::devices::{validate_device, validate_tag};
use crate::secrets;

/// `cmd`, applied at most once per `request_id` when one is given.
pub(super) fn once(request_id: &str, cmd: Command) -> Result<Command, Status> {
    if request_id.is_empty() {
        return Ok(cmd);
    }
    if request_id.len() > bifrost_raft::command::MAX_REQUEST_ID_LEN {
        return Err(Status::invalid_argument(format!(
            "request_id is {} bytes; at most {} are allowed",
            request_id.len(),
            bifrost_raft::command::MAX_REQUEST_ID_LEN
        )));
    }
    Ok(Command::Once {
        request_id: request_id.to_string(),
        command: Box::new(cmd),
    })
}

pub async fn put_device(
    api: &Api,
    req: pb::PutDeviceRequest,
) -> Result<pb::PutDeviceResponse, Status> {
    let device = req
        .device
        .ok_or_else(|| Status::invalid_argument("device is missing"))?;
    let mut device = convert::device_from_pb(device);
    device.validate().map_err(status::invalid)?;
    validate_device(&device).map_err(status::device_config)?;
    seal(api, &mut device).await?;
    let cmd = Command::PutDevice {
        device,
        create_only: req.create_only,
        expected_revision: req.expected_revision,
    };
    match api.write(once(&req.request_id, cmd)?).await? {
        Outcome::Device(d) => Ok(pb::PutDeviceResponse {
            device: Some(convert::device_to_pb(secrets::mask(d))),
        }),
        other => Err(status::unexpected(other)),
    }
}

pub async fn delete_device(
    api: &Api,
    req: pb::DeleteDeviceRequest,
) -> Result<pb::DeleteResponse, Status> {
    api.write(once(
        &req.request_id,
        Command::DeleteDevice { name: req.name },
    )?)
    .await?;
    Ok(pb::DeleteResponse {
        revision: api.node.commit_index(),
    })
}

pub async fn list_devices(
    api: &Api,
    req: pb::ListDevicesRequest,
) -> Result<pb::ListDevicesResponse, Status> {
    api.read_barrier(req.consistency).await?;
    let devices = api
        .node
        .state()
        .devices()
        .into_iter()
        .map(|d| convert::device_to_pb(secrets::mask(d)))
        .collect();
    Ok(pb::ListDevicesResponse { devices })
}

pub async fn put_tag(api: &Api, req: pb::PutTagRequest) -> Result<pb::PutTagResponse, Status> {
    let tag = req
        .tag
        .ok_or_else(|| Status::invalid_argument("tag is missing"))?;
    let tag = convert::tag_from_pb(tag).map_err(status::invalid)?;
    tag.validate().map_err(status::invalid)?;
    // The address is checked against the device's protocol; read the
    // device linearizably so a just-created one is seen.
    api.linearizable_barrier().await?;
    if let Some(device) = api.node.state().device(&tag.device) {
        validate_tag(&device, &tag).map_err(status::device_config)?;
    }
    let cmd = Command::PutTag {
        tag,
        create_only: req.create_only,
        expected_revision: req.expected_revision,
    };
    match api.write(once(&req.request_id, cmd)?).await? {
        Outcome::Tag(t) => Ok(pb::PutTagResponse {
            tag: Some(convert::tag_to_pb(t)),
        }),
        other => Err(status::unexpected(other)),
    }
}

pub async fn delete_tag(
    api: &Api,
    req: pb::DeleteTagRequest,
) -> Result<pb::DeleteResponse, Status> {
    // Without purge the history stays, for a tag created again under the
    // name to continue (see `Command::RetireTag`).
    let command = if req.purge {
        Command::DeleteTag { name: req.name }
    } else {
        Command::RetireTag { name: req.name }
    };
    api.write(once(&req.request_id, command)?).await?;
    Ok(pb::DeleteResponse {
        revision: api.node.commit_index(),
    })
}

/// The tags (of one device, if asked) the caller may see.
pub async fn list_tags(
    api: &Api,
    caller: &Caller,
    req: pb::ListTagsRequest,
) -> Result<pb::ListTagsResponse, Status> {
    api.read_barrier(req.consistency).await?;
    let device = (!req.device.is_empty()).then_some(req.device.as_str());
    let tags = api
        .node
        .state()
        .tags(device)
        .into_iter()
        .filter(|t| caller.visible(&t.name))
        .map(convert::tag_to_pb)
        .collect();
    Ok(pb::ListTagsResponse { tags })
}

/// Seals `device`'s secret labels (see [`secrets::seal_device`]), against
/// the device as this node holds it once it has seen every committed write.
async fn seal(api: &Api, device: &mut bifrost_model::Device) -> Result<(), Status> {
    if !device
        .labels
        .keys()
        .any(|k| bifrost_model::Device::is_secret_label(k))
    {
        return Ok(());
    }
    api.linearizable_barrier().await?;
    let existing = api.node.state().device(&device.name);
    secrets::seal_device(api.data_key.as_deref(), device, existing.as_ref())
        .map_err(Status::invalid_argument)
}

/// Devices and tags in one command. Each tag's address is checked against
/// its device: one in the same import, or else one already stored.
pub async fn import(api: &Api, req: pb::ImportRequest) -> Result<pb::ImportResponse, Status> {
    let mut devices: Vec<_> = req
        .devices
        .into_iter()
        .map(convert::device_from_pb)
        .collect();
    let mut by_name = HashMap::new();
    for d in &devices {
        d.validate().map_err(status::invalid)?;
        validate_device(d).map_err(status::device_config)?;
        by_name.insert(d.name.clone(), d.clone());
    }
    api.linearizable_barrier().await?;
    for d in &mut devices {
        let existing = api.node.state().device(&d.name);
        secrets::seal_device(api.data_key.as_deref(), d, existing.as_ref())
            .map_err(Status::invalid_argument)?;
    }
    let mut tags = Vec::with_capacity(req.tags.len());
    for t in req.tags {
        let t = convert::tag_from_pb(t).map_err(status::invalid)?;
        t.validate().map_err(status::invalid)?;
        let device = by_name
            .get(&t.device)
            .cloned()
            .or_else(|| api.node.state().device(&t.device));
        if let Some(d) = device {
            validate_tag(&d, &t).map_err(status::device_config)?;
        }
        tags.push(t);
    }
    match api.write(Command::Import { devices, tags }).await? {
        Outcome::Imported { devices, tags } => Ok(pb::ImportResponse { devices, tags }),
        other => Err(status::unexpected(other)),
    }
}
