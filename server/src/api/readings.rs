//! Readings: ingest from clients, current values, and history streamed in
//! chunks ([`super::stream`]).

use std::collections::HashMap;

use bifrost_model::poll::{IngestBatch, IngestedValue, PolledValue};
use bifrost_model::Permission;
use bifrost_proto::convert;
use bifrost_proto::v1 as pb;
use bifrost_raft::{Command, Outcome};
use bifrost_storage::{Reading, Tag};
use tonic::Status;

use super::stream::{self, ResponseStream};
use super::{status, Api};
use crate::auth::Caller;
use crate::pressure::{INGEST_RETRY_AFTER, MAX_APPLY_BACKLOG};

/// Most readings accepted in one ingest call.
pub const MAX_INGEST_BATCH: usize = 10_000;

#[tracing::instrument(name = "ingest", parent = None, skip_all,
                     fields(readings = req.readings.len(), partial = req.partial))]
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
    if req.partial {
        return ingest_partly(api, readings).await;
    }
    let batch = checked_batch(api, readings)?.encode();
    match api.write(Command::Ingest { batch }).await? {
        Outcome::Ingested(o) => Ok(ingested(api, &o, Vec::new())),
        other => Err(status::unexpected(other)),
    }
}

/// A partial ingest: the readings that pass the checks here are proposed
/// (those the state machine then finds no longer fit are skipped there),
/// and every reading not stored is listed with its position and reason.
async fn ingest_partly(
    api: &Api,
    readings: Vec<pb::Reading>,
) -> Result<pb::IngestResponse, Status> {
    let (batch, mut rejected) = checked_partly(api, readings);
    if batch.batch.readings.is_empty() {
        return Ok(ingested(api, &Default::default(), rejected));
    }
    let command = Command::IngestPartly {
        batch: batch.batch.encode(),
    };
    match api.write(command).await? {
        Outcome::IngestedPartly {
            outcome,
            rejected: late,
        } => {
            rejected.extend(late.into_iter().map(|(i, reason)| {
                let (index, id) = batch.origin[i as usize].clone();
                pb::RejectedReading {
                    index,
                    id,
                    code: "tag_changed".into(),
                    reason,
                }
            }));
            rejected.sort_by_key(|r| r.index);
            Ok(ingested(api, &outcome, rejected))
        }
        other => Err(status::unexpected(other)),
    }
}

/// The answer to an ingest, counted in the metrics.
fn ingested(
    api: &Api,
    o: &bifrost_storage::IngestOutcome,
    rejected: Vec<pb::RejectedReading>,
) -> pb::IngestResponse {
    api.metrics.readings_ingested.inc_by(o.stored);
    api.metrics.readings_duplicate.inc_by(o.duplicates);
    pb::IngestResponse {
        stored: o.stored,
        duplicates: o.duplicates,
        last_revision: o.last_revision,
        rejected,
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

/// How far ahead of the cluster's clock a reading's time may be.
const MAX_AHEAD_US: i64 = 24 * 3600 * 1_000_000;

/// Why one reading of a call is refused: a `RejectedReading` code and a
/// message naming the reading.
struct Refusal {
    code: &'static str,
    reason: String,
}

/// Tags looked up once per call.
type TagCache = HashMap<String, Option<Tag>>;

/// Checks reading `i` (from 0) of a call against its tag; the value the
/// log carries, resolved to the tag's id.
fn check_reading(
    api: &Api,
    tags: &mut TagCache,
    i: usize,
    r: pb::Reading,
    server_ts_us: i64,
) -> Result<IngestedValue, Refusal> {
    let refuse = |code, reason| Refusal { code, reason };
    let mut n = convert::reading_from_pb(i + 1, r, server_ts_us)
        .map_err(|e| refuse("bad_reading", e.message))?;
    let at = format!("reading {} (id '{}')", i + 1, n.id);
    n.check_id()
        .map_err(|e| refuse("bad_reading", format!("{at}: {e}")))?;
    if n.ts_us < 0 || n.ts_us > server_ts_us.saturating_add(MAX_AHEAD_US) {
        let what = format!(
            "{at}: timestamp {} µs is before 1970 or more than a day ahead of the cluster's clock ({server_ts_us} µs)",
            n.ts_us
        );
        return Err(refuse("bad_timestamp", what));
    }
    let tag = tags
        .entry(n.tag.clone())
        .or_insert_with(|| api.node.state().tag(&n.tag));
    let Some(tag) = tag.as_ref() else {
        return Err(refuse(
            "unknown_tag",
            format!("{at}: unknown tag '{}'", n.tag),
        ));
    };
    n.value = tag
        .accept(n.value.take(), &n.quality)
        .map_err(|e| refuse("bad_value", format!("{at}: {e}")))?;
    let value = PolledValue {
        tag_id: tag.id,
        ts_us: n.ts_us,
        value: n.value,
        quality: n.quality,
    };
    Ok(IngestedValue { id: n.id, value })
}

/// The readings of an ingest call, each checked against its tag and
/// resolved to its tag id, as the compact batch the log carries: all or
/// nothing, the first bad reading refuses the call. An early, local check:
/// the state machine checks again when applying (the tag may have changed
/// meanwhile).
fn checked_batch(api: &Api, readings: Vec<pb::Reading>) -> Result<IngestBatch, Status> {
    let server_ts_us = bifrost_model::now_us();
    let mut tags = TagCache::new();
    let readings = readings
        .into_iter()
        .enumerate()
        .map(|(i, r)| check_reading(api, &mut tags, i, r, server_ts_us))
        .collect::<Result<Vec<_>, Refusal>>()
        .map_err(|r| Status::invalid_argument(r.reason))?;
    Ok(IngestBatch {
        server_ts_us,
        readings,
    })
}

/// A partial ingest's batch: the readings that passed, with where each
/// came from in the call (position, id).
struct PartialBatch {
    batch: IngestBatch,
    origin: Vec<(u32, String)>,
}

/// The readings of a partial ingest that pass the checks, and the others
/// as rejections.
fn checked_partly(
    api: &Api,
    readings: Vec<pb::Reading>,
) -> (PartialBatch, Vec<pb::RejectedReading>) {
    let server_ts_us = bifrost_model::now_us();
    let mut tags = TagCache::new();
    let mut passed = Vec::with_capacity(readings.len());
    let mut origin = Vec::with_capacity(readings.len());
    let mut rejected = Vec::new();
    for (i, r) in readings.into_iter().enumerate() {
        let id = r.id.clone();
        match check_reading(api, &mut tags, i, r, server_ts_us) {
            Ok(v) => {
                origin.push((i as u32, id));
                passed.push(v);
            }
            Err(refusal) => rejected.push(pb::RejectedReading {
                index: i as u32,
                id,
                code: refusal.code.into(),
                reason: refusal.reason,
            }),
        }
    }
    let batch = IngestBatch {
        server_ts_us,
        readings: passed,
    };
    (PartialBatch { batch, origin }, rejected)
}

/// The current readings of `tags` after the read barrier `consistency`
/// asks for, each tag first checked against `caller`'s grants: the one
/// place for both the gRPC call and the web's `/api/current`. A tag with
/// no reading is left out; an unknown tag is an error naming it.
pub async fn current(
    api: &Api,
    caller: &Caller,
    tags: &[String],
    consistency: i32,
) -> Result<Vec<Reading>, Status> {
    for tag in tags {
        caller.check(Permission::Read, Some(tag))?;
    }
    api.read_barrier(consistency).await?;
    let state = api.node.state();
    let mut readings = Vec::with_capacity(tags.len());
    for name in tags {
        match state.current(name).map_err(status::storage)? {
            Ok(Some(r)) => readings.push(r),
            Ok(None) => {}
            Err(rej) => return Err(status::rejection(rej)),
        }
    }
    Ok(readings)
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
