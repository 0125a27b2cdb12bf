//! Work that must run on a particular node: writes to a device (on the node
//! that owns it, with a driver connection of its own), the digests of a
//! node's own history for the replica check, and a node's own view of its
//! load (Raft indexes, outbox depth) for the web UI's cluster page. Another node asks for it
//! through [`crate::peer`]; this node runs it and returns the outcome.

use std::sync::Arc;
use std::time::Duration;

use bifrost_drivers::{Error as DriverError, TagSpec};
use bifrost_model::Assignment;
use bifrost_raft::{Consistency, RaftNode};
use bifrost_storage::Value;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::poller::DriverFactory;
use crate::replica::{self, Digests, Span};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LocalRequest {
    Write {
        tag: String,
        value: Value,
    },
    /// Answered with `Result<Digests, String>`.
    ReplicaDigests(Span),
    /// Answered with a [`NodeLoad`]. (Variants are appended only: they are
    /// encoded by position.)
    Load,
}

/// What a node says of itself: its Raft position and its local buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub node: u64,
    pub term: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// Readings waiting in this node's outbox (polled, not yet committed).
    pub outbox_records: u64,
    pub outbox_bytes: u64,
}

/// What a node says when asked to write to a device it does not poll
/// (nothing was sent to the device); older releases say it too.
const NOT_OWNER: &str = "does not poll device";

/// Outcome of a device write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// ok, rejected, timeout
    pub outcome: String,
    pub message: String,
    pub read_back: Option<Value>,
    pub node: u64,
}

impl WriteOutcome {
    /// Whether the node refused the write because it does not poll the
    /// device (it moved, or this node's view of who polls it is behind).
    pub fn refused_as_not_owner(&self) -> bool {
        self.outcome == "rejected" && self.message.contains(NOT_OWNER)
    }
}

pub struct Local {
    pub node: Arc<RaftNode>,
    pub metrics: Arc<Metrics>,
    pub factory: Arc<dyn DriverFactory>,
}

impl Local {
    /// This node's digests of `span` (see [`crate::replica`]).
    pub async fn replica_digests(&self, span: Span) -> Result<Digests, String> {
        replica::answer(&self.node, span).await
    }

    /// This node's Raft position and outbox depth.
    pub fn load(&self) -> NodeLoad {
        let m = self.node.metrics();
        let outbox = self.node.node_store().outbox_stats();
        NodeLoad {
            node: self.node.id(),
            term: m.current_term,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            outbox_records: outbox.records,
            outbox_bytes: outbox.bytes,
        }
    }

    /// Writes `value` to `tag` here; this node must own the tag's device.
    pub async fn write(&self, tag: &str, value: Value) -> WriteOutcome {
        let outcome = self.write_inner(tag, value).await;
        self.metrics.observe_write(&outcome.outcome);
        tracing::info!(%tag, outcome = %outcome.outcome, message = %outcome.message, "device write");
        outcome
    }

    /// Whether this node polls `device`, judged on a state at least as new
    /// as the one that sent the write here: a node that does not see itself
    /// as the owner first catches up with the leader's commits (it may be
    /// behind the node that routed the write). Else the owner it sees.
    async fn owns(&self, device: &str) -> Result<(), Option<Assignment>> {
        let mine = |a: Option<Assignment>| match a {
            Some(a) if a.node == self.node.id() => Ok(()),
            other => Err(other),
        };
        if mine(self.node.state().assignment(device)).is_ok() {
            return Ok(());
        }
        // On failure (no leader) the answer stands on what this node has.
        let _ = self.node.read_barrier(Consistency::Linearizable).await;
        mine(self.node.state().assignment(device))
    }

    async fn write_inner(&self, tag: &str, value: Value) -> WriteOutcome {
        let fail = |outcome: &str, message: String| WriteOutcome {
            outcome: outcome.into(),
            message,
            read_back: None,
            node: self.node.id(),
        };
        let Some(t) = self.node.state().tag(tag) else {
            return fail("rejected", format!("unknown tag '{tag}'"));
        };
        let Some(device) = self.node.state().device(&t.device) else {
            return fail("rejected", format!("unknown device '{}'", t.device));
        };
        if let Err(owner) = self.owns(&device.name).await {
            return fail(
                "rejected",
                format!(
                    "node {} {NOT_OWNER} '{}' (owner: {owner:?})",
                    self.node.id(),
                    device.name
                ),
            );
        }
        let mut driver = match self.factory.create_oneshot(&device) {
            Ok(d) => d,
            Err(e) => return fail("rejected", format!("device '{}': {e}", device.name)),
        };
        let budget =
            Duration::from_millis(device.timeout_ms.max(100) * (device.retries as u64 + 2) + 1_000);
        let spec = TagSpec::from(&t);
        let work = async {
            driver.connect().await?;
            driver.write(&spec, value).await
        };
        match tokio::time::timeout(budget, work).await {
            Err(_) => fail(
                "timeout",
                format!("no answer from device '{}' within {budget:?}", device.name),
            ),
            Ok(Err(DriverError::Timeout(m))) => fail("timeout", m),
            Ok(Err(e)) => fail("rejected", e.to_string()),
            Ok(Ok(read_back)) => WriteOutcome {
                outcome: "ok".into(),
                message: String::new(),
                read_back: Some(read_back),
                node: self.node.id(),
            },
        }
    }
}
