//! The public gRPC service. Handlers validate, turn requests into commands or
//! reads, and map every error to a `Status` in one place ([`status`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bifrost_proto::convert;
use bifrost_proto::v1 as pb;
use bifrost_proto::v1::bifrost_server::Bifrost;
use bifrost_raft::{Command, Consistency, Outcome, ProposeError, RaftNode};
use bifrost_storage::{Rejection, RejectionKind};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;

/// How long a device write forwarded to the device's owner may take.
const FORWARDED_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// Most readings accepted in one ingest call.
pub const MAX_INGEST_BATCH: usize = 10_000;

pub struct Api {
    pub node: Arc<RaftNode>,
    pub metrics: Arc<Metrics>,
    pub local: Arc<crate::local::Local>,
    pub peers: Arc<crate::peer::Peers>,
    pub hub: Arc<crate::watch::Hub>,
    pub limits: QueryLimits,
}

/// Limits on one SQL query.
#[derive(Clone, Debug)]
pub struct QueryLimits {
    pub timeout: std::time::Duration,
    pub max_rows: u64,
    pub max_scan: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: std::time::Duration::from_secs(30),
            max_rows: 1_000_000,
            max_scan: 50_000_000,
        }
    }
}

/// `cmd`, applied at most once per `request_id` when one is given.
fn once(request_id: &str, cmd: Command) -> Result<Command, Status> {
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

/// A query error as a gRPC status; the kind, line and column are also in
/// metadata (`bifrost-query-error`, `bifrost-line`, `bifrost-column`).
pub fn query_status(e: &crate::query::QueryError) -> Status {
    use crate::query::ErrorKind as K;
    let msg = e.to_string();
    let mut s = match e.kind {
        K::Syntax | K::UnknownTable | K::UnknownColumn | K::Type | K::Unsupported => {
            Status::invalid_argument(msg)
        }
        K::Limit => Status::resource_exhausted(msg),
        K::Timeout => Status::deadline_exceeded(msg),
        K::Storage => Status::internal(msg),
    };
    let md = s.metadata_mut();
    if let Ok(v) = query_error_code(e.kind).parse() {
        md.insert("bifrost-query-error", v);
    }
    if let Some(l) = e.line.and_then(|l| l.to_string().parse().ok()) {
        md.insert("bifrost-line", l);
    }
    if let Some(c) = e.column.and_then(|c| c.to_string().parse().ok()) {
        md.insert("bifrost-column", c);
    }
    s
}

/// A query error kind as a stable code (metrics label, error metadata).
pub fn query_error_code(k: crate::query::ErrorKind) -> &'static str {
    use crate::query::ErrorKind as K;
    match k {
        K::Syntax => "syntax",
        K::UnknownTable => "unknown_table",
        K::UnknownColumn => "unknown_column",
        K::Type => "type",
        K::Unsupported => "unsupported",
        K::Limit => "limit",
        K::Timeout => "timeout",
        K::Storage => "storage",
    }
}

fn column_type(t: crate::query::ColumnType) -> pb::ColumnType {
    use crate::query::ColumnType as T;
    match t {
        T::Any => pb::ColumnType::Any,
        T::Bool => pb::ColumnType::Bool,
        T::Int => pb::ColumnType::Int,
        T::Float => pb::ColumnType::Float,
        T::Text => pb::ColumnType::Text,
        T::Timestamp => pb::ColumnType::Timestamp,
    }
}

fn cell_pb(c: crate::query::Cell) -> pb::Cell {
    use crate::query::Cell;
    use pb::cell::Kind;
    pb::Cell {
        kind: match c {
            Cell::Null => None,
            Cell::Bool(b) => Some(Kind::BoolValue(b)),
            Cell::Int(i) => Some(Kind::IntValue(i)),
            Cell::Float(f) => Some(Kind::FloatValue(f)),
            Cell::Text(t) => Some(Kind::TextValue(t)),
            Cell::Timestamp(us) => Some(Kind::TimestampUs(us)),
        },
    }
}

/// A subscription error as a gRPC status. The revision to resume from is
/// also in metadata (`bifrost-oldest-revision`, `bifrost-resume-revision`).
pub fn watch_status(e: crate::watch::WatchError) -> Status {
    use crate::watch::WatchError as W;
    let msg = e.to_string();
    let (mut s, key, rev) = match e {
        W::Compacted { oldest, .. } => (
            Status::out_of_range(format!("compacted: {msg}")),
            "bifrost-oldest-revision",
            Some(oldest),
        ),
        W::Overflow { resume_from, .. } => (
            Status::resource_exhausted(format!("overflow: {msg}")),
            "bifrost-resume-revision",
            Some(resume_from),
        ),
        W::TooMany { .. } => (Status::resource_exhausted(msg), "", None),
        W::Invalid(_) => (Status::invalid_argument(msg), "", None),
        W::Storage(_) => (Status::internal(msg), "", None),
    };
    if let Some(rev) = rev {
        if let Ok(v) = rev.to_string().parse() {
            s.metadata_mut().insert(key, v);
        }
    }
    s
}

/// A record or request that breaks a model rule is an invalid argument.
pub fn invalid_status(e: bifrost_model::Invalid) -> Status {
    Status::invalid_argument(e.message)
}

/// Maps a rejection to its gRPC status.
pub fn rejection_status(r: Rejection) -> Status {
    match r.kind {
        RejectionKind::InvalidArgument => Status::invalid_argument(r.message),
        RejectionKind::AlreadyExists => Status::already_exists(r.message),
        RejectionKind::NotFound => Status::not_found(r.message),
        RejectionKind::FailedPrecondition => Status::failed_precondition(r.message),
    }
}

/// Maps a Raft-level failure to its gRPC status; the leader's address, when
/// known, is in the `bifrost-leader` metadata as `ID=HOST:PORT`.
pub fn status(e: ProposeError) -> Status {
    match e {
        ProposeError::NotLeader { leader } => {
            let mut s = Status::unavailable(format!("not the leader; leader is {leader:?}"));
            if let Some((id, addr)) = leader {
                if let Ok(v) = format!("{id}={addr}").parse() {
                    s.metadata_mut().insert("bifrost-leader", v);
                }
            }
            s
        }
        ProposeError::Unavailable(m) => Status::unavailable(m),
        ProposeError::Membership(m) => Status::failed_precondition(m),
        ProposeError::Fatal(m) => Status::internal(m),
    }
}

fn consistency(c: i32) -> Result<Consistency, Status> {
    match pb::Consistency::try_from(c) {
        Ok(pb::Consistency::Unspecified) | Ok(pb::Consistency::Linearizable) => {
            Ok(Consistency::Linearizable)
        }
        Ok(pb::Consistency::Local) => Ok(Consistency::Local),
        Ok(pb::Consistency::Leader) => Ok(Consistency::Leader),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown consistency level {c}"
        ))),
    }
}

fn storage_status(e: bifrost_storage::Error) -> Status {
    Status::internal(e.to_string())
}

fn members_pb(members: Vec<bifrost_raft::node::MemberInfo>) -> Vec<pb::Member> {
    members
        .into_iter()
        .map(|m| pb::Member {
            id: m.id,
            addr: m.addr,
            role: m.role,
        })
        .collect()
}

impl Api {
    async fn write(&self, cmd: Command) -> Result<Outcome, Status> {
        let kind = cmd.kind();
        let start = Instant::now();
        let res = self.node.propose(cmd).await;
        self.metrics.observe_proposal(
            kind,
            start.elapsed(),
            res.as_ref().map(|r| r.result.is_ok()).unwrap_or(false),
        );
        let resp = res.map_err(status)?;
        resp.result.map_err(rejection_status)
    }

    fn observe_query(&self, outcome: &str, started: Instant) {
        self.metrics
            .queries
            .get_or_create(&crate::metrics::OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        self.metrics
            .query_latency
            .observe(started.elapsed().as_secs_f64());
    }

    /// The members as this node's Raft layer sees them (the `cluster` table).
    fn cluster_info(&self) -> crate::query::ClusterInfo {
        crate::query::ClusterInfo {
            members: self
                .node
                .members()
                .into_iter()
                .map(|m| crate::query::MemberInfo {
                    id: m.id,
                    voter: m.role != "learner",
                    is_leader: m.role == "leader",
                    address: m.addr,
                })
                .collect(),
        }
    }

    async fn barrier(&self, c: i32) -> Result<(), Status> {
        self.node
            .read_barrier(consistency(c)?)
            .await
            .map_err(status)
    }
}

type HistoryStream = Pin<Box<dyn Stream<Item = Result<pb::HistoryResponse, Status>> + Send>>;
type QueryStream = Pin<Box<dyn Stream<Item = Result<pb::QueryResponse, Status>> + Send>>;
type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Bifrost for Api {
    async fn put_device(
        &self,
        req: Request<pb::PutDeviceRequest>,
    ) -> Result<Response<pb::PutDeviceResponse>, Status> {
        let req = req.into_inner();
        let device = req
            .device
            .ok_or_else(|| Status::invalid_argument("device is missing"))?;
        let device = convert::device_from_pb(device);
        device.validate().map_err(invalid_status)?;
        crate::devices::validate_device(&device).map_err(Status::invalid_argument)?;
        match self
            .write(once(
                &req.request_id,
                Command::PutDevice {
                    device,
                    create_only: req.create_only,
                    expected_revision: req.expected_revision,
                },
            )?)
            .await?
        {
            Outcome::Device(d) => Ok(Response::new(pb::PutDeviceResponse {
                device: Some(convert::device_to_pb(d)),
            })),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn delete_device(
        &self,
        req: Request<pb::DeleteDeviceRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = req.into_inner();
        self.write(once(
            &req.request_id,
            Command::DeleteDevice { name: req.name },
        )?)
        .await?;
        Ok(Response::new(pb::DeleteResponse {
            revision: self.node.commit_index(),
        }))
    }

    async fn list_devices(
        &self,
        req: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        self.barrier(req.get_ref().consistency).await?;
        let devices = self
            .node
            .state()
            .devices()
            .into_iter()
            .map(convert::device_to_pb)
            .collect();
        Ok(Response::new(pb::ListDevicesResponse { devices }))
    }

    async fn put_tag(
        &self,
        req: Request<pb::PutTagRequest>,
    ) -> Result<Response<pb::PutTagResponse>, Status> {
        let req = req.into_inner();
        let tag = req
            .tag
            .ok_or_else(|| Status::invalid_argument("tag is missing"))?;
        let tag = convert::tag_from_pb(tag).map_err(invalid_status)?;
        tag.validate().map_err(invalid_status)?;
        // The address is checked against the device's protocol; read the
        // device linearizably so a just-created one is seen.
        self.barrier(0).await?;
        if let Some(device) = self.node.state().device(&tag.device) {
            crate::devices::validate_tag(&device, &tag).map_err(Status::invalid_argument)?;
        }
        match self
            .write(once(
                &req.request_id,
                Command::PutTag {
                    tag,
                    create_only: req.create_only,
                    expected_revision: req.expected_revision,
                },
            )?)
            .await?
        {
            Outcome::Tag(t) => Ok(Response::new(pb::PutTagResponse {
                tag: Some(convert::tag_to_pb(t)),
            })),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn delete_tag(
        &self,
        req: Request<pb::DeleteTagRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = req.into_inner();
        let command = if req.purge {
            Command::DeleteTag { name: req.name }
        } else {
            Command::RetireTag { name: req.name }
        };
        self.write(once(&req.request_id, command)?).await?;
        Ok(Response::new(pb::DeleteResponse {
            revision: self.node.commit_index(),
        }))
    }

    async fn list_tags(
        &self,
        req: Request<pb::ListTagsRequest>,
    ) -> Result<Response<pb::ListTagsResponse>, Status> {
        let req = req.into_inner();
        self.barrier(req.consistency).await?;
        let device = (!req.device.is_empty()).then_some(req.device.as_str());
        let tags = self
            .node
            .state()
            .tags(device)
            .into_iter()
            .map(convert::tag_to_pb)
            .collect();
        Ok(Response::new(pb::ListTagsResponse { tags }))
    }

    async fn ingest(
        &self,
        req: Request<pb::IngestRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let readings = req.into_inner().readings;
        if readings.is_empty() {
            return Err(Status::invalid_argument("ingest batch is empty"));
        }
        if readings.len() > MAX_INGEST_BATCH {
            return Err(Status::resource_exhausted(format!(
                "ingest batch has {} readings; at most {MAX_INGEST_BATCH} are accepted per call",
                readings.len()
            )));
        }
        let now = bifrost_model::now_us();
        let mut batch = Vec::with_capacity(readings.len());
        let mut tags: std::collections::HashMap<String, bifrost_storage::Tag> = Default::default();
        for (i, r) in readings.into_iter().enumerate() {
            let mut n = convert::reading_from_pb(i + 1, r, now).map_err(invalid_status)?;
            // Early, local check; the state machine checks again when applying.
            if !tags.contains_key(&n.tag) {
                let Some(tag) = self.node.state().tag(&n.tag) else {
                    return Err(Status::invalid_argument(format!(
                        "reading {} (id '{}'): unknown tag '{}'",
                        i + 1,
                        n.id,
                        n.tag
                    )));
                };
                tags.insert(n.tag.clone(), tag);
            }
            n.check_against(&tags[&n.tag]).map_err(|e| {
                Status::invalid_argument(format!("reading {} (id '{}'): {e}", i + 1, n.id))
            })?;
            batch.push(n);
        }
        match self.write(Command::Readings { readings: batch }).await? {
            Outcome::Ingested(o) => {
                self.metrics.readings_ingested.inc_by(o.stored);
                self.metrics.readings_duplicate.inc_by(o.duplicates);
                Ok(Response::new(pb::IngestResponse {
                    stored: o.stored,
                    duplicates: o.duplicates,
                    last_revision: o.last_revision,
                }))
            }
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn get_current(
        &self,
        req: Request<pb::GetCurrentRequest>,
    ) -> Result<Response<pb::GetCurrentResponse>, Status> {
        let req = req.into_inner();
        self.barrier(req.consistency).await?;
        let mut readings = Vec::with_capacity(req.tags.len());
        for name in &req.tags {
            match self.node.state().current(name).map_err(storage_status)? {
                Ok(Some(r)) => readings.push(convert::reading_to_pb(r)),
                Ok(None) => {}
                Err(rej) => return Err(rejection_status(rej)),
            }
        }
        Ok(Response::new(pb::GetCurrentResponse { readings }))
    }

    type HistoryStream = HistoryStream;

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<HistoryStream>, Status> {
        let req = req.into_inner();
        self.barrier(req.consistency).await?;
        let from = req.from_us.unwrap_or(i64::MIN);
        let to = req.to_us.unwrap_or(i64::MAX);
        if self.node.state().tag(&req.tag).is_none() {
            return Err(Status::not_found(format!("unknown tag '{}'", req.tag)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::HistoryResponse, Status>>(4);
        let state = self.node.state().clone();
        tokio::task::spawn_blocking(move || {
            const CHUNK: usize = 1000;
            let mut chunk = Vec::with_capacity(CHUNK);
            let res = crate::query::history(&state, &req.tag, from, to, req.limit, |r| {
                chunk.push(convert::reading_to_pb(r));
                if chunk.len() == CHUNK {
                    let readings = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    // A closed channel means the client went away: stop scanning.
                    return tx
                        .blocking_send(Ok(pb::HistoryResponse { readings }))
                        .is_ok();
                }
                true
            });
            let last = match res {
                Ok(Ok(_)) if !chunk.is_empty() => Some(Ok(pb::HistoryResponse { readings: chunk })),
                Ok(Ok(_)) => None,
                Ok(Err(rej)) => Some(Err(rejection_status(rej))),
                Err(e) => Some(Err(Status::internal(e.to_string()))),
            };
            if let Some(m) = last {
                let _ = tx.blocking_send(m);
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type QueryStream = QueryStream;

    async fn query(&self, req: Request<pb::QueryRequest>) -> Result<Response<QueryStream>, Status> {
        use crate::query::{Cell, ExecContext, Limits, Query};
        let started = Instant::now();
        let req = req.into_inner();
        // Everything that depends only on the text fails before any wait.
        let query = Query::parse(&req.sql).map_err(|e| {
            self.observe_query(query_error_code(e.kind), started);
            query_status(&e)
        })?;
        self.barrier(req.consistency).await?;
        let columns: Vec<pb::Column> = query
            .columns()
            .iter()
            .map(|c| pb::Column {
                name: c.name.clone(),
                r#type: column_type(c.ty) as i32,
            })
            .collect();
        let cluster = self.cluster_info();
        let state = self.node.state().clone();
        let limits = Limits {
            max_rows: self.limits.max_rows,
            max_scan: self.limits.max_scan,
            deadline: Some(started + self.limits.timeout),
        };
        let metrics = self.metrics.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::QueryResponse, Status>>(4);
        tokio::task::spawn_blocking(move || {
            const CHUNK: usize = 1000;
            let mut first = Some(columns);
            let mut rows = Vec::with_capacity(CHUNK);
            let now_us = bifrost_model::now_us();
            let view = crate::query::StoreView(&state);
            let ctx = ExecContext {
                catalog: &view,
                history: &view,
                cluster: &cluster,
                now_us,
                limits,
            };
            let to_pb = |cells: Vec<Cell>| pb::Row {
                cells: cells.into_iter().map(cell_pb).collect(),
            };
            let res = query.execute(&ctx, &mut |cells| {
                rows.push(to_pb(cells));
                if rows.len() == CHUNK {
                    let msg = pb::QueryResponse {
                        columns: first.take().unwrap_or_default(),
                        rows: std::mem::replace(&mut rows, Vec::with_capacity(CHUNK)),
                        stats: None,
                    };
                    // A closed channel: the client went away; stop.
                    return tx.blocking_send(Ok(msg)).is_ok();
                }
                true
            });
            let outcome = match &res {
                Ok(_) => "ok",
                Err(e) => query_error_code(e.kind),
            };
            metrics
                .queries
                .get_or_create(&crate::metrics::OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc();
            metrics
                .query_latency
                .observe(started.elapsed().as_secs_f64());
            let last = match res {
                Ok(stats) => Ok(pb::QueryResponse {
                    columns: first.take().unwrap_or_default(),
                    rows,
                    stats: Some(pb::QueryStats {
                        rows: stats.rows,
                        scanned: stats.scanned,
                        elapsed_us: started.elapsed().as_micros() as u64,
                    }),
                }),
                Err(e) => Err(query_status(&e)),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        use crate::watch::Event;
        let req = req.into_inner();
        let sub = self
            .hub
            .subscribe(crate::watch::WatchRequest {
                tags: req.tags,
                patterns: req.patterns,
                from_revision: req.from_revision,
                progress: (req.progress_ms > 0)
                    .then(|| std::time::Duration::from_millis(req.progress_ms.max(10))),
            })
            .map_err(watch_status)?;
        let stream = futures::stream::unfold(Some(sub), |sub| async move {
            let mut sub = sub?;
            let event = match sub.next().await? {
                Ok(Event::Started {
                    revision,
                    oldest_revision,
                    node_id,
                }) => pb::watch_response::Event::Started(pb::WatchStarted {
                    revision,
                    node_id,
                    oldest_revision,
                }),
                Ok(Event::Readings {
                    readings,
                    revision,
                    applied_us,
                }) => pb::watch_response::Event::Readings(pb::WatchReadings {
                    readings: readings.into_iter().map(convert::reading_to_pb).collect(),
                    revision,
                    applied_us,
                }),
                Ok(Event::Progress { revision }) => {
                    pb::watch_response::Event::Progress(pb::WatchProgress { revision })
                }
                // The stream ends after its error.
                Err(e) => return Some((Err(watch_status(e)), None)),
            };
            Some((Ok(pb::WatchResponse { event: Some(event) }), Some(sub)))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_retention(
        &self,
        req: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::SetRetentionResponse>, Status> {
        let seconds = req.into_inner().seconds;
        self.write(Command::SetRetention { seconds }).await?;
        Ok(Response::new(pb::SetRetentionResponse { seconds }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let m = self.node.metrics();
        let (leader_id, leader_addr) = self.node.leader().unwrap_or((0, String::new()));
        Ok(Response::new(pb::StatusResponse {
            node_id: self.node.id(),
            leader_id,
            leader_addr,
            term: m.current_term,
            commit_index: self.node.commit_index(),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            members: members_pb(self.node.members()),
            state: format!("{:?}", m.state),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            revision: self.node.state().revision(),
            oldest_revision: self.node.state().oldest_revision(),
            retention_seconds: self.node.state().retention_seconds(),
            assignments: self
                .node
                .state()
                .assignments()
                .into_iter()
                .map(|(device, a)| pb::Assignment {
                    device,
                    node: a.node,
                    epoch: a.epoch,
                })
                .collect(),
        }))
    }

    async fn write_tag(
        &self,
        req: Request<pb::WriteTagRequest>,
    ) -> Result<Response<pb::WriteTagResponse>, Status> {
        let req = req.into_inner();
        self.barrier(0).await?;
        let tag = self
            .node
            .state()
            .tag(&req.tag)
            .ok_or_else(|| Status::not_found(format!("unknown tag '{}'", req.tag)))?;
        if !tag.writable {
            return Err(Status::failed_precondition(format!(
                "tag '{}' is not writable (create it with --writable)",
                tag.name
            )));
        }
        let value = convert::value_from_pb(req.value)
            .ok_or_else(|| Status::invalid_argument("value is missing"))?;
        let value = tag.data_type.coerce(value).map_err(|e| {
            Status::invalid_argument(format!("tag '{}' is {}: {e}", tag.name, tag.data_type))
        })?;
        let owner = self.node.state().assignment(&tag.device).ok_or_else(|| {
            Status::failed_precondition(format!(
                "device '{}' is not polled by any node (is it disabled?)",
                tag.device
            ))
        })?;
        let outcome = if owner.node == self.node.id() {
            self.local.write(&tag.name, value).await
        } else {
            let addr = self.node.member_addr(owner.node).ok_or_else(|| {
                Status::unavailable(format!(
                    "owner node {} of device '{}' is not a member",
                    owner.node, tag.device
                ))
            })?;
            self.peers
                .write(&addr, &tag.name, value, FORWARDED_WRITE_TIMEOUT)
                .await
                .map_err(|e| Status::unavailable(format!("owner node {}: {e}", owner.node)))?
        };
        Ok(Response::new(pb::WriteTagResponse {
            outcome: outcome.outcome,
            message: outcome.message,
            read_back: outcome.read_back.map(convert::value_to_pb),
            node: outcome.node,
        }))
    }

    async fn browse(
        &self,
        req: Request<pb::BrowseRequest>,
    ) -> Result<Response<pb::BrowseResponse>, Status> {
        let req = req.into_inner();
        let items = crate::devices::browse(
            &req.endpoint,
            (!req.node.is_empty()).then_some(req.node.as_str()),
        )
        .await
        // The device is unreachable, not this node: not worth a retry.
        .map_err(Status::failed_precondition)?;
        let mut created = 0;
        if !req.create_tags_on_device.is_empty() {
            self.barrier(0).await?;
            let device = self
                .node
                .state()
                .device(&req.create_tags_on_device)
                .ok_or_else(|| {
                    Status::not_found(format!("unknown device '{}'", req.create_tags_on_device))
                })?;
            let tags = crate::devices::tags_from_browse(&device, &req.tag_prefix, &items)
                .map_err(Status::invalid_argument)?;
            created = tags.len() as u64;
            self.write(Command::Import {
                devices: vec![],
                tags,
            })
            .await?;
        }
        Ok(Response::new(pb::BrowseResponse {
            items: items
                .into_iter()
                .map(|i| pb::BrowseItem {
                    address: i.address,
                    name: i.name,
                    kind: i.kind,
                    data_type: i
                        .data_type
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    writable: i.writable,
                })
                .collect(),
            created,
        }))
    }

    async fn import(
        &self,
        req: Request<pb::ImportRequest>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        let req = req.into_inner();
        let devices: Vec<_> = req
            .devices
            .into_iter()
            .map(convert::device_from_pb)
            .collect();
        let mut by_name = std::collections::HashMap::new();
        for d in &devices {
            d.validate().map_err(invalid_status)?;
            crate::devices::validate_device(d).map_err(Status::invalid_argument)?;
            by_name.insert(d.name.clone(), d.clone());
        }
        self.barrier(0).await?;
        let mut tags = Vec::with_capacity(req.tags.len());
        for t in req.tags {
            let t = convert::tag_from_pb(t).map_err(invalid_status)?;
            t.validate().map_err(invalid_status)?;
            let device = by_name
                .get(&t.device)
                .cloned()
                .or_else(|| self.node.state().device(&t.device));
            if let Some(d) = device {
                crate::devices::validate_tag(&d, &t).map_err(Status::invalid_argument)?;
            }
            tags.push(t);
        }
        match self.write(Command::Import { devices, tags }).await? {
            Outcome::Imported { devices, tags } => {
                Ok(Response::new(pb::ImportResponse { devices, tags }))
            }
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let req = req.into_inner();
        if req.id == 0 {
            return Err(Status::invalid_argument("member id must be greater than 0"));
        }
        if req.addr.parse::<std::net::SocketAddr>().is_err() && !req.addr.contains(':') {
            return Err(Status::invalid_argument(format!(
                "member address '{}' is not HOST:PORT",
                req.addr
            )));
        }
        let members = self
            .node
            .add_member(req.id, req.addr, req.learner_only)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AddMemberResponse {
            members: members_pb(members),
        }))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let members = self
            .node
            .remove_member(req.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveMemberResponse {
            members: members_pb(members),
        }))
    }
}
