//! SQL queries: parsed before any wait, run on a blocking thread under the
//! node's limits, rows streamed in chunks ([`super::stream`]), each query
//! counted in the metrics by outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_proto::v1 as pb;
use tonic::Status;
use tracing::Instrument;

use super::arrow::{self, ArrowEncoder};
use super::stream::{self, ResponseStream};
use super::{convert, status, Api};
use crate::auth::Caller;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::query::{ClusterInfo, ExecContext, Limits, MemberInfo, Query, SeenBy, StoreView};
use bifrost_model::Access;

/// How long a query may run when the node's options do not say.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most rows a query may return when the node's options do not say.
pub const DEFAULT_MAX_QUERY_ROWS: u64 = 1_000_000;
/// Most readings a query may read when the node's options do not say.
pub const DEFAULT_MAX_QUERY_SCAN: u64 = 50_000_000;

/// Limits on one SQL query.
#[derive(Clone, Debug)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub max_rows: u64,
    pub max_scan: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: DEFAULT_QUERY_TIMEOUT,
            max_rows: DEFAULT_MAX_QUERY_ROWS,
            max_scan: DEFAULT_MAX_QUERY_SCAN,
        }
    }
}

/// Counts a finished query by `outcome` (`ok` or the error code) and
/// records its latency.
fn observe_query(metrics: &Metrics, outcome: &str, started: Instant) {
    metrics
        .queries
        .get_or_create(&OutcomeLabels {
            outcome: outcome.into(),
        })
        .inc();
    metrics
        .query_latency
        .observe(started.elapsed().as_secs_f64());
}

/// The members as this node's Raft layer sees them (the `cluster` table).
fn cluster_info(api: &Api) -> ClusterInfo {
    ClusterInfo {
        members: api
            .node
            .members()
            .into_iter()
            .map(|m| MemberInfo {
                id: m.id,
                voter: m.role != "learner",
                is_leader: m.role == "leader",
                address: m.addr,
            })
            .collect(),
    }
}

pub async fn query(
    api: &Api,
    caller: Caller,
    req: pb::QueryRequest,
) -> Result<ResponseStream<pb::QueryResponse>, Status> {
    Ok(prepare(api, caller, req).await?.stream())
}

/// [`query`], its result as one Arrow IPC stream (see `arrow`).
pub async fn query_arrow(
    api: &Api,
    caller: Caller,
    req: pb::QueryRequest,
) -> Result<ResponseStream<pb::ArrowChunk>, Status> {
    prepare(api, caller, req).await?.arrow_stream()
}

/// Parses a query and waits for its consistency; what runs it. The
/// query's span (exported with `--otlp-endpoint`) lasts until its last row
/// is sent.
async fn prepare(api: &Api, caller: Caller, req: pb::QueryRequest) -> Result<Run, Status> {
    let span = tracing::info_span!(parent: None, "query", sql = %req.sql,
                                   rows = tracing::field::Empty, scanned = tracing::field::Empty);
    prepare_in_span(api, caller, req, span.clone())
        .instrument(span)
        .await
}

async fn prepare_in_span(
    api: &Api,
    caller: Caller,
    req: pb::QueryRequest,
    span: tracing::Span,
) -> Result<Run, Status> {
    let started = Instant::now();
    // Everything that depends only on the text fails before any wait.
    let query = Query::parse(&req.sql).map_err(|e| {
        observe_query(&api.metrics, status::query_error_code(e.kind), started);
        status::query(&e)
    })?;
    api.read_barrier(req.consistency).await?;
    let limits = Limits {
        max_rows: api.limits.max_rows,
        max_scan: api.limits.max_scan,
        deadline: Some(started + api.limits.timeout),
    };
    let run = Run {
        query,
        cluster: cluster_info(api),
        state: api.node.state().clone(),
        limits,
        metrics: api.metrics.clone(),
        started,
        access: caller.restriction().cloned(),
        audit: caller.access.allows(bifrost_model::Permission::Administer),
        span,
    };
    Ok(run)
}

/// A parsed query and what it needs to run on a blocking thread.
struct Run {
    query: Query,
    cluster: ClusterInfo,
    state: bifrost_storage::StateStore,
    limits: Limits,
    metrics: Arc<Metrics>,
    started: Instant,
    /// The tags the caller may see, if not all.
    access: Option<Access>,
    /// Whether the caller may read the audit records (administrators).
    audit: bool,
    /// The query's span.
    span: tracing::Span,
}

impl Run {
    /// The column names and types go in the first message only; the last
    /// one carries the statistics.
    fn stream(self) -> ResponseStream<pb::QueryResponse> {
        let mut columns = Some(
            self.query
                .columns()
                .iter()
                .map(convert::column_pb)
                .collect(),
        );
        let wrap = move |rows| pb::QueryResponse {
            columns: columns.take().unwrap_or_default(),
            rows,
            stats: None,
        };
        stream::chunked(wrap, move |out| {
            let res = self.execute(&mut |cells| out.push(convert::row_pb(cells)));
            Some(res.map(|stats| pb::QueryResponse {
                stats: Some(stats),
                ..out.take_rest()
            }))
        })
    }

    /// The result as one Arrow IPC stream in messages of
    /// [`arrow::BATCH_ROWS`] rows; the last one carries the statistics and
    /// the end-of-stream marker.
    fn arrow_stream(self) -> Result<ResponseStream<pb::ArrowChunk>, Status> {
        let mut encoder = ArrowEncoder::new(self.query.columns())
            .map_err(|e| Status::internal(format!("arrow schema: {e}")))?;
        // Rows of the query's own columns always encode; were one not to,
        // the stream the client reads would end early and say so there.
        let wrap = move |rows: Vec<Vec<bifrost_query::Cell>>| match encoder.encode(&rows) {
            Ok(ipc) => pb::ArrowChunk { ipc, stats: None },
            Err(e) => {
                tracing::error!(error = %e, "query result: arrow encoding failed");
                pb::ArrowChunk::default()
            }
        };
        Ok(stream::chunked_by(arrow::BATCH_ROWS, wrap, move |out| {
            let res = self.execute(&mut |cells| out.push(cells));
            Some(res.map(|stats| {
                let mut last = out.take_rest();
                last.ipc.extend(arrow::END_OF_STREAM);
                last.stats = Some(stats);
                last
            }))
        }))
    }

    /// Runs the query, handing each row to `sink`; its statistics.
    fn execute(
        &self,
        sink: &mut dyn FnMut(Vec<bifrost_query::Cell>) -> bool,
    ) -> Result<pb::QueryStats, Status> {
        let _in_span = self.span.enter();
        let view = SeenBy {
            view: StoreView(&self.state),
            access: self.access.as_ref(),
            audit: self.audit,
        };
        let ctx = ExecContext {
            catalog: &view,
            history: &view,
            cluster: &self.cluster,
            now_us: bifrost_model::now_us(),
            limits: self.limits,
        };
        let res = self.query.execute(&ctx, sink);
        let outcome = match &res {
            Ok(_) => "ok",
            Err(e) => status::query_error_code(e.kind),
        };
        observe_query(&self.metrics, outcome, self.started);
        match res {
            Ok(stats) => {
                self.span.record("rows", stats.rows);
                self.span.record("scanned", stats.scanned);
                Ok(pb::QueryStats {
                    rows: stats.rows,
                    scanned: stats.scanned,
                    elapsed_us: self.started.elapsed().as_micros() as u64,
                })
            }
            Err(e) => Err(status::query(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_model::{DataType, Device, Protocol, Tag};
    use futures::StreamExt;

    const TAGS: usize = 2 * stream::CHUNK + 7;

    /// A store holding `TAGS` tags on one device.
    fn store_with_tags() -> (tempfile::TempDir, bifrost_storage::StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let state = bifrost_storage::StateStore::open(dir.path()).unwrap();
        let mut b = state.batch();
        let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
        b.put_device(device, true, None, 1).unwrap();
        for i in 0..TAGS {
            let tag = Tag::new(format!("t{i:05}"), "plc", "hr:0", DataType::U16);
            b.put_tag(tag, true, None, 1).unwrap();
        }
        b.commit().unwrap();
        (dir, state)
    }

    #[tokio::test]
    async fn columns_come_first_and_statistics_last_with_rows_in_chunks() {
        let (_dir, state) = store_with_tags();
        let run = Run {
            query: Query::parse("SELECT name FROM tags").unwrap(),
            cluster: ClusterInfo { members: vec![] },
            state,
            limits: Limits {
                max_rows: DEFAULT_MAX_QUERY_ROWS,
                max_scan: DEFAULT_MAX_QUERY_SCAN,
                deadline: None,
            },
            metrics: Arc::new(Metrics::new()),
            started: Instant::now(),
            access: None,
            audit: true,
            span: tracing::Span::none(),
        };
        let messages: Vec<_> = run.stream().map(Result::unwrap).collect().await;
        let rows: Vec<usize> = messages.iter().map(|m| m.rows.len()).collect();
        assert_eq!(rows, vec![stream::CHUNK, stream::CHUNK, 7]);
        let columns: Vec<usize> = messages.iter().map(|m| m.columns.len()).collect();
        assert_eq!(columns, vec![1, 0, 0]);
        let stats: Vec<bool> = messages.iter().map(|m| m.stats.is_some()).collect();
        assert_eq!(stats, vec![false, false, true]);
        assert_eq!(messages[2].stats.unwrap().rows, TAGS as u64);
    }
}
