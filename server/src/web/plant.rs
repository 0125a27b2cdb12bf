//! The plant's routes: devices with their polling state (`/api/devices`),
//! enabling and disabling one (`/api/devices/enable`, a `PutDevice` of the
//! same device with `enabled` changed, guarded by its revision), and the
//! cluster's members with each one's own Raft position and outbox depth
//! (`/api/cluster`, asked of each member over the peer port).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use bifrost_model::Device;
use bifrost_proto::v1 as pb;
use bifrost_proto::v1::bifrost_server::Bifrost;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::routes::Body;
use super::session::Ctx;
use super::{json as to_json, JsonAnswer, WebError, WebState};
use crate::reach::Unreachable;

/// How long a member may take to say its load.
const LOAD_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /api/devices`: every device with its owner, newest reading,
/// failures and circuit breaker, as this node knows them (the leader knows
/// every node's failures; a follower its own).
pub async fn devices(State(s): State<WebState>, ctx: Ctx) -> Result<JsonAnswer, WebError> {
    let list = s
        .api
        .list_devices(ctx.request(pb::ListDevicesRequest { consistency: 0 }))
        .await?
        .into_inner()
        .devices;
    let node = &s.api.node;
    let state = node.state();
    let assignments = state.assignments();
    let failing: HashMap<String, Unreachable> = s
        .api
        .reach
        .view(node.id(), node.is_leader())
        .into_iter()
        .map(|(_, u)| (u.device.clone(), u))
        .collect();
    let activity = state.device_activity();
    let mut out = vec![];
    for d in list {
        let seen = activity.get(&d.name).copied().unwrap_or_default();
        let fail = failing.get(&d.name);
        out.push(json!({
            "name": d.name,
            "protocol": d.protocol,
            "endpoint": d.endpoint,
            "unit_id": d.unit_id,
            "enabled": d.enabled,
            "poll_interval_ms": d.poll_interval_ms,
            "owner": assignments.get(&d.name).map(|a| a.node),
            "last_poll": seen.newest_ts_us.map(to_json::ts),
            "failed_polls": fail.map_or(0, |f| f.failed_polls),
            "error": fail.map(|f| f.reason.clone()),
            "breaker": if fail.is_some_and(|f| f.backoff_ms > 0) { "open" } else { "closed" },
            "retry_in_ms": fail.map_or(0, |f| f.retry_in_ms),
            "tags": seen.tags,
        }));
    }
    Ok(JsonAnswer(json!({ "devices": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnableBody {
    device: String,
    enabled: bool,
}

/// `POST /api/devices/enable`: turns polling of a device on or off.
pub async fn enable_device(
    State(s): State<WebState>,
    ctx: Ctx,
    Body(body): Body<EnableBody>,
) -> Result<JsonAnswer, WebError> {
    let Some(device) = s.api.node.state().device(&body.device) else {
        return Err(WebError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no device '{}'", body.device),
        ));
    };
    let revision = device.revision;
    let mut changed: Device = crate::secrets::mask(device);
    changed.enabled = body.enabled;
    let answer = s
        .api
        .put_device(ctx.request(pb::PutDeviceRequest {
            device: Some(bifrost_proto::convert::device_to_pb(changed)),
            create_only: false,
            expected_revision: Some(revision),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let d = answer.device.unwrap_or_default();
    Ok(JsonAnswer(json!({
        "device": {"name": d.name, "enabled": d.enabled, "revision": d.revision},
    })))
}

/// `GET /api/cluster`: the members, and what each says of itself.
pub async fn cluster(State(s): State<WebState>, ctx: Ctx) -> Result<JsonAnswer, WebError> {
    let status = s
        .api
        .status(ctx.request(pb::StatusRequest {}))
        .await?
        .into_inner();
    let mut devices: HashMap<u64, usize> = HashMap::new();
    for a in &status.assignments {
        *devices.entry(a.node).or_default() += 1;
    }
    let loads = futures::future::join_all(status.members.iter().map(|m| async {
        if m.id == status.node_id {
            Ok(s.api.local.load())
        } else {
            s.api.peers.load(&m.peer_addr, LOAD_TIMEOUT).await
        }
    }))
    .await;
    let nodes: Vec<Json> = status
        .members
        .iter()
        .zip(loads)
        .map(|(m, load)| {
            let mut n = json!({
                "id": m.id,
                "addr": m.addr,
                "role": m.role,
                "devices": devices.get(&m.id).copied().unwrap_or(0),
                "reachable": load.is_ok(),
            });
            match load {
                Ok(l) => {
                    n["term"] = l.term.into();
                    n["applied_index"] = l.applied_index.into();
                    n["last_log_index"] = l.last_log_index.into();
                    n["outbox"] = l.outbox_records.into();
                    n["outbox_bytes"] = l.outbox_bytes.into();
                }
                Err(e) => n["error"] = e.into(),
            }
            n
        })
        .collect();
    Ok(JsonAnswer(json!({
        "node_id": status.node_id,
        "leader_id": status.leader_id,
        "term": status.term,
        "nodes": nodes,
    })))
}
