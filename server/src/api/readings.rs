//! Readings: ingest from clients, current values, and history streamed in
//! chunks ([`super::stream`]).

use std::collections::HashMap;

use bifrost_model::poll::{IngestBatch, IngestedValue, PolledValue};
use bifrost_proto::convert;
use bifrost_proto::v1 as pb;
use bifrost_raft::{Command, Outcome};
use bifrost_storage::Tag;
use tonic::Status;

use super::stream::{self, ResponseStream};
use super::{status, Api};
use crate::pressure::{INGEST_RETRY_AFTER, MAX_APPLY_BACKLOG};

/// Most readings accepted in one ingest call.
pub const MAX_INGEST_BATCH: usize = 10_000;

pub async fn ingest(api: &Api, req: pb::IngestRequest) -> Result<pb::IngestResponse, Status> {
    let readings = req.readings;
    if readings.is_empty() {
        return Err(Status::invalid_argument("ingest batch is empty"));
    }
    if readings.len() > MAX_INGEST_BATCH {
        return Err(Status::resource_exhausted(format!(
            "ingest batch has {} readings; at most {MAX_INGEST_BATCH} are accepted per call",
            readings.len()
        )));
    }
    refuse_when_behind(api)?;
    let batch = checked_batch(api, readings)?.encode();
    match api.write(Command::Ingest { batch }).await? {
        Outcome::Ingested(o) => {
            api.metrics.readings_ingested.inc_by(o.stored);
            api.metrics.readings_duplicate.inc_by(o.duplicates);
            Ok(pb::IngestResponse {
                stored: o.stored,
                duplicates: o.duplicates,
                last_revision: o.last_revision,
            })
        }
        other => Err(status::unexpected(other)),
    }
}

/// Refuses an ingest (before doing anything) while this node has more log
/// entries waiting to be applied than [`MAX_APPLY_BACKLOG`]: the client is
/// told to come back later rather than queue more behind the backlog.
fn refuse_when_behind(api: &Api) -> Result<(), Status> {
    let m = api.node.metrics();
    let applied = m.last_applied.map_or(0, |l| l.index);
    let backlog = m.last_log_index.unwrap_or(0).saturating_sub(applied);
    if backlog <= MAX_APPLY_BACKLOG {
        return Ok(());
    }
    api.metrics.ingest_refused.inc();
    Err(status::overloaded(
        format!(
            "node {} is behind: {backlog} log entries wait to be applied (at most {MAX_APPLY_BACKLOG})",
            api.node.id()
        ),
        INGEST_RETRY_AFTER,
    ))
}

/// The readings of an ingest call, each checked against its tag and
/// resolved to its tag id, as the compact batch the log carries. An early,
/// local check: the state machine checks again when applying (the tag may
/// have changed meanwhile).
fn checked_batch(api: &Api, readings: Vec<pb::Reading>) -> Result<IngestBatch, Status> {
    let server_ts_us = bifrost_model::now_us();
    let mut batch = Vec::with_capacity(readings.len());
    let mut tags: HashMap<String, Tag> = HashMap::new();
    for (i, r) in readings.into_iter().enumerate() {
        let mut n = convert::reading_from_pb(i + 1, r, server_ts_us).map_err(status::invalid)?;
        let invalid = |id: &str, what: String| {
            Status::invalid_argument(format!("reading {} (id '{id}'): {what}", i + 1))
        };
        if !tags.contains_key(&n.tag) {
            let Some(tag) = api.node.state().tag(&n.tag) else {
                return Err(invalid(&n.id, format!("unknown tag '{}'", n.tag)));
            };
            tags.insert(n.tag.clone(), tag);
        }
        let tag = &tags[&n.tag];
        if let Err(e) = n.check_against(tag) {
            return Err(invalid(&n.id, e));
        }
        let value = PolledValue {
            tag_id: tag.id,
            ts_us: n.ts_us,
            value: n.value,
            quality: n.quality,
        };
        batch.push(IngestedValue { id: n.id, value });
    }
    Ok(IngestBatch {
        server_ts_us,
        readings: batch,
    })
}

pub async fn get_current(
    api: &Api,
    req: pb::GetCurrentRequest,
) -> Result<pb::GetCurrentResponse, Status> {
    api.read_barrier(req.consistency).await?;
    let mut readings = Vec::with_capacity(req.tags.len());
    for name in &req.tags {
        match api.node.state().current(name).map_err(status::storage)? {
            Ok(Some(r)) => readings.push(convert::reading_to_pb(r)),
            Ok(None) => {}
            Err(rej) => return Err(status::rejection(rej)),
        }
    }
    Ok(pb::GetCurrentResponse { readings })
}

/// Readings of one tag, oldest first, in messages of [`stream::CHUNK`].
pub async fn history(
    api: &Api,
    req: pb::HistoryRequest,
) -> Result<ResponseStream<pb::HistoryResponse>, Status> {
    api.read_barrier(req.consistency).await?;
    let from = req.from_us.unwrap_or(i64::MIN);
    let to = req.to_us.unwrap_or(i64::MAX);
    if api.node.state().tag(&req.tag).is_none() {
        return Err(status::unknown_tag(&req.tag));
    }
    let state = api.node.state().clone();
    let wrap = |readings| pb::HistoryResponse { readings };
    Ok(stream::chunked(wrap, move |out| {
        let res = crate::query::history(&state, &req.tag, from, to, req.limit, |r| {
            out.push(convert::reading_to_pb(r))
        });
        match res {
            Ok(Ok(_)) if !out.is_empty() => Some(Ok(out.take_rest())),
            Ok(Ok(_)) => None,
            Ok(Err(rej)) => Some(Err(status::rejection(rej))),
            Err(e) => Some(Err(status::storage(e))),
        }
    }))
}
