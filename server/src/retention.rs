//! History retention. The retention period is replicated state (set with
//! `SetRetention`); the leader checks it periodically and proposes a
//! `Compact` command that removes a prefix of revisions, so every node removes
//! exactly the same readings and agrees on the oldest revision held.
//!
//! Only a prefix is removed: the cut is the first revision, from the oldest
//! held, whose reading is not older than the retention period. Revisions held
//! therefore stay contiguous and a subscriber resuming from a revision still
//! held never meets a hole; a late reading with an old timestamp stays until
//! the readings committed before it expire.

use std::sync::Arc;
use std::time::Duration;

use bifrost_raft::command::{Command, Outcome};
use bifrost_raft::RaftNode;

use crate::metrics::Metrics;

/// Revisions looked at (and so at most removed) by one `Compact` command.
const MAX_PER_COMPACTION: usize = 50_000;

pub async fn run(node: Arc<RaftNode>, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !node.is_leader() {
            continue;
        }
        match compact_once(&node).await {
            Ok(Some((removed, oldest))) => {
                metrics.compacted_readings.inc_by(removed);
                tracing::info!(
                    removed,
                    oldest_revision = oldest,
                    "retention removed readings"
                );
                // More may be due: go again without waiting a whole period.
                if removed as usize >= MAX_PER_COMPACTION {
                    tick.reset_immediately();
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "retention check failed"),
        }
    }
}

/// One retention step on the leader: `(removed, oldest revision held)` when
/// something was due.
async fn compact_once(node: &Arc<RaftNode>) -> anyhow::Result<Option<(u64, u64)>> {
    let state = node.state().clone();
    let seconds = state.retention_seconds();
    if seconds == 0 {
        return Ok(None);
    }
    let cutoff = bifrost_model::now_us().saturating_sub((seconds as i64).saturating_mul(1_000_000));
    let oldest = state.oldest_revision();
    let point =
        tokio::task::spawn_blocking(move || state.compaction_point(cutoff, MAX_PER_COMPACTION))
            .await??;
    if point <= oldest {
        return Ok(None);
    }
    let resp = node
        .propose(Command::Compact {
            below_revision: point,
        })
        .await?;
    match resp.result {
        Ok(Outcome::Compacted {
            removed,
            oldest_revision,
        }) => Ok(Some((removed, oldest_revision))),
        Ok(other) => anyhow::bail!("unexpected outcome {other:?}"),
        Err(rej) => anyhow::bail!("compaction rejected: {rej}"),
    }
}
