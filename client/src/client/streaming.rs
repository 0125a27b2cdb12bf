//! Streaming calls: SQL queries and resumable subscriptions.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tonic::{Code, Status};

use super::{CallKind, Client, NORMAL};
use crate::error::is_retryable_status;
use crate::proto::{
    watch_response, Column, Consistency, QueryRequest, QueryStats, Reading, Row, WatchRequest,
};
use crate::{Error, Result};

/// Subscriptions and local reads go to whichever node is next in the
/// rotation (the first endpoint first), not to the leader: every node
/// serves them.
const ANY: CallKind = CallKind {
    discover: false,
    long: false,
    idempotent: true,
};

/// A running query: its columns, then its rows as the server streams them.
pub struct QueryRows {
    pub columns: Vec<Column>,
    pending: std::collections::VecDeque<Row>,
    stream: tonic::Streaming<crate::proto::QueryResponse>,
    stats: Option<QueryStats>,
}

impl QueryRows {
    /// The next row; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Row>> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Ok(Some(r));
            }
            match self.stream.message().await.map_err(rpc)? {
                Some(m) => {
                    if m.stats.is_some() {
                        self.stats = m.stats;
                    }
                    self.pending.extend(m.rows);
                }
                None => return Ok(None),
            }
        }
    }

    /// Counts sent by the server at the end of the stream.
    pub fn stats(&self) -> Option<&QueryStats> {
        self.stats.as_ref()
    }

    /// Every remaining row.
    pub async fn collect(mut self) -> Result<(Vec<Column>, Vec<Row>, Option<QueryStats>)> {
        let mut rows = Vec::new();
        while let Some(r) = self.next().await? {
            rows.push(r);
        }
        Ok((self.columns, rows, self.stats))
    }
}

fn rpc(s: Status) -> Error {
    Error::Rpc(Box::new(s))
}

impl Client {
    /// Runs a SQL query. `Local` goes to the next node in the rotation (the
    /// first endpoint first); the others go to the leader when it is known.
    pub async fn query(&self, sql: &str, consistency: Consistency) -> Result<QueryRows> {
        let req = QueryRequest {
            sql: sql.to_string(),
            consistency: consistency as i32,
        };
        let kind = if consistency == Consistency::Local {
            ANY
        } else {
            NORMAL
        };
        let mut stream = self
            .call(kind, |mut c, _t| {
                let req = req.clone();
                async move { c.query(req).await }
            })
            .await?;
        let first = stream
            .message()
            .await
            .map_err(rpc)?
            .ok_or_else(|| rpc(Status::internal("query stream ended before its columns")))?;
        Ok(QueryRows {
            columns: first.columns,
            pending: first.rows.into(),
            stats: first.stats,
            stream,
        })
    }

    /// Sets how long history is kept (0: forever).
    pub async fn set_retention(&self, seconds: u64) -> Result<()> {
        let req = crate::proto::SetRetentionRequest { seconds };
        self.call(NORMAL, |mut c, t| {
            let req = super::timed(req, t);
            async move { c.set_retention(req).await }
        })
        .await?;
        Ok(())
    }

    /// Sets how long audit records are kept (0: forever).
    pub async fn set_audit_retention(&self, seconds: u64) -> Result<()> {
        let req = crate::proto::SetAuditRetentionRequest { seconds };
        self.call(NORMAL, |mut c, t| {
            let req = super::timed(req, t);
            async move { c.set_audit_retention(req).await }
        })
        .await?;
        Ok(())
    }

    /// A subscription that survives node failures: see [`Watcher`].
    pub fn watcher(&self, req: WatchRequest) -> Watcher {
        Watcher {
            client: self.clone(),
            last: req.from_revision,
            req,
            stream: None,
            reconnects: 0,
            failing_since: None,
        }
    }
}

/// What a [`Watcher`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A (re)connection: the node now serving, and the revision the stream
    /// continues after.
    Started {
        node_id: u64,
        endpoint: String,
        revision: u64,
        oldest_revision: u64,
    },
    /// Matching readings; all matching readings up to `revision` were sent.
    Readings {
        readings: Vec<Reading>,
        revision: u64,
        applied_us: i64,
    },
    /// Nothing new matched up to `revision`.
    Progress { revision: u64 },
}

/// A subscription that reconnects, to the same node or another, from the
/// last revision it saw (`from_revision` = the last revision of a readings or
/// progress message), so its output has no gap and no repeat. A `compacted`
/// error (the revision is no longer held) ends it; an `overflow` (this
/// consumer was too slow) reconnects from the revision the server names.
pub struct Watcher {
    client: Client,
    req: WatchRequest,
    last: Option<u64>,
    stream: Option<(tonic::Streaming<crate::proto::WatchResponse>, usize)>,
    reconnects: u64,
    failing_since: Option<Instant>,
}

impl Watcher {
    /// The last revision up to which everything matching was received.
    pub fn last_revision(&self) -> Option<u64> {
        self.last
    }

    /// How many times the subscription was re-established.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The next event. Errors only when the subscription cannot go on: the
    /// revision was compacted, the request is invalid, or no node could serve
    /// it for the client's whole deadline.
    pub async fn next(&mut self) -> Result<WatchEvent> {
        loop {
            if self.stream.is_none() {
                let mut req = self.req.clone();
                req.from_revision = self.last;
                let (stream, node) = self
                    .client
                    .call_at(ANY, |mut c, _t| {
                        let req = req.clone();
                        async move { c.watch(req).await }
                    })
                    .await?;
                self.stream = Some((stream, node));
            }
            let (stream, node) = self.stream.as_mut().expect("set above");
            let node = *node;
            let item = stream.next().await;
            match item {
                Some(Ok(m)) => {
                    self.failing_since = None;
                    match m.event {
                        Some(watch_response::Event::Started(s)) => {
                            if self.last.is_none() {
                                self.last = Some(s.revision);
                            }
                            return Ok(WatchEvent::Started {
                                node_id: s.node_id,
                                endpoint: self.client.endpoint_of(node),
                                revision: s.revision,
                                oldest_revision: s.oldest_revision,
                            });
                        }
                        Some(watch_response::Event::Readings(r)) => {
                            self.last = Some(r.revision);
                            return Ok(WatchEvent::Readings {
                                readings: r.readings,
                                revision: r.revision,
                                applied_us: r.applied_us,
                            });
                        }
                        Some(watch_response::Event::Progress(p)) => {
                            self.last = Some(p.revision);
                            return Ok(WatchEvent::Progress {
                                revision: p.revision,
                            });
                        }
                        None => continue,
                    }
                }
                Some(Err(s)) if s.code() == Code::OutOfRange => return Err(rpc(s)),
                Some(Err(s)) if s.code() == Code::InvalidArgument => return Err(rpc(s)),
                Some(Err(s))
                    if s.code() == Code::ResourceExhausted
                        && s.metadata().get("bifrost-resume-revision").is_some() =>
                {
                    // Too slow: start again from where the server says (the
                    // same as the last revision received).
                    self.stream = None;
                    self.reconnects += 1;
                }
                Some(Err(s)) if !is_retryable_status(&s) && s.code() != Code::Unknown => {
                    return Err(rpc(s))
                }
                // The node went away or the stream broke: another node.
                Some(Err(_)) | None => {
                    self.client.forget(node);
                    self.stream = None;
                    self.reconnects += 1;
                    let since = *self.failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.client.inner.opts.deadline {
                        return Err(rpc(Status::unavailable(
                            "subscription: no node could serve it within the deadline",
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
