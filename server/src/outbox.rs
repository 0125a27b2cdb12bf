//! The node-local outbox: where a polled reading becomes *acquired*, and from
//! where it is committed through Raft exactly once.
//!
//! The writer task takes poll results from the pollers, writes every record
//! that is waiting in one synced RocksDB write (group commit: one fsync for
//! many devices), and wakes the forwarder. The forwarder sends the oldest
//! records as one `Command::Polled` (to the leader, through this node if it
//! is a follower) and deletes them only once that command is committed. A
//! reading's id is `node:sequence:index`, derived from the outbox record it
//! sits in, so a replay after a crash or a lost reply carries the same ids
//! and the state machine stores each reading once. (`node` is
//! `ID-INCARNATION`: a node whose disk was replaced starts a new incarnation,
//! so its new sequence numbers cannot collide with the old ones.)
//!
//! The outbox is bounded in bytes. When it is full, the oldest records are
//! dropped, counted in `bifrost_outbox_dropped_readings` and logged: never
//! silently.

use std::sync::Arc;
use std::time::Duration;

use bifrost_raft::{Command, RaftNode};
use bifrost_storage::codec::{decode, encode};
use bifrost_storage::{NewReading, Quality, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use crate::metrics::Metrics;

/// One poll of one device, as kept in the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollRecord {
    pub device: String,
    pub readings: Vec<PolledReading>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolledReading {
    pub tag: String,
    pub ts_us: i64,
    pub value: Option<Value>,
    pub quality: Quality,
}

#[derive(Clone, Debug)]
pub struct OutboxOptions {
    /// Most bytes kept; beyond it the oldest records are dropped (counted).
    pub max_bytes: u64,
    /// Most readings in one forwarded command.
    pub max_batch_readings: usize,
    /// Forwarded commands waiting for their commit at once.
    pub in_flight: usize,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            max_bytes: 1 << 30,
            max_batch_readings: 5_000,
            in_flight: 4,
        }
    }
}

/// Turns an outbox record into the readings it commits, with stable ids:
/// `NODE-INCARNATION:SEQ:INDEX`.
pub fn to_readings(origin: &str, seq: u64, record: PollRecord) -> Vec<NewReading> {
    record
        .readings
        .into_iter()
        .enumerate()
        .map(|(i, r)| NewReading {
            id: format!("{origin}:{seq}:{i}"),
            tag: r.tag,
            ts_us: r.ts_us,
            server_ts_us: r.ts_us,
            value: r.value,
            quality: r.quality,
        })
        .collect()
}

/// The oldest outbox records after sequence `after`, as one batch of at
/// most `max` readings (at least one record); `(0, [])` when there are none.
async fn next_batch(
    node: &Arc<RaftNode>,
    origin: &str,
    after: u64,
    max: usize,
) -> Result<(u64, Vec<NewReading>), String> {
    let store = node.node_store().clone();
    let origin = origin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut readings = Vec::new();
        let mut last = 0;
        for (seq, bytes) in store.outbox_peek(after, 4096).map_err(|e| e.to_string())? {
            let record: PollRecord = decode(&bytes).map_err(|e| e.to_string())?;
            if !readings.is_empty() && readings.len() + record.readings.len() > max {
                break;
            }
            readings.extend(to_readings(&origin, seq, record));
            last = seq;
        }
        Ok((last, readings))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Starts the writer and forwarder tasks; returns where pollers send records.
pub fn start(
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    opts: OutboxOptions,
) -> mpsc::Sender<PollRecord> {
    let (tx, rx) = mpsc::channel::<PollRecord>(16_384);
    let wake = Arc::new(Notify::new());
    tokio::spawn(writer(
        node.clone(),
        metrics.clone(),
        opts.clone(),
        rx,
        wake.clone(),
    ));
    tokio::spawn(forwarder(node, metrics, opts, wake));
    tx
}

async fn writer(
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    opts: OutboxOptions,
    mut rx: mpsc::Receiver<PollRecord>,
    wake: Arc<Notify>,
) {
    while let Some(first) = rx.recv().await {
        let mut records = vec![encode(&first)];
        let mut readings = first.readings.len() as u64;
        while records.len() < 4096 {
            match rx.try_recv() {
                Ok(r) => {
                    readings += r.readings.len() as u64;
                    records.push(encode(&r));
                }
                Err(_) => break,
            }
        }
        let store = node.node_store().clone();
        let max = opts.max_bytes;
        let res = tokio::task::spawn_blocking(move || {
            store.outbox_push(&records)?;
            store.outbox_trim(max)
        })
        .await;
        match res {
            Ok(Ok(dropped)) => {
                metrics.outbox_acquired.inc_by(readings);
                if dropped.records > 0 {
                    metrics.outbox_dropped_records.inc_by(dropped.records);
                    tracing::warn!(
                        records = dropped.records,
                        bytes = dropped.bytes,
                        max_bytes = max,
                        "outbox full: dropped the oldest poll records"
                    );
                }
            }
            // Losing the outbox disk is the one way to lose acquired
            // readings; say so loudly and keep trying with the next records.
            Ok(Err(e)) => {
                tracing::error!(error = %e, readings, "outbox write failed: readings lost")
            }
            Err(e) => tracing::error!(error = %e, "outbox writer task failed"),
        }
        wake.notify_one();
    }
}

async fn forwarder(
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    opts: OutboxOptions,
    wake: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(50);
    let origin = loop {
        match node.node_store().incarnation() {
            Ok(inc) => break format!("{}-{inc}", node.id()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read this node's incarnation; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // Several batches are in flight at once (a commit takes a round trip and
    // an fsync); they are confirmed in order, so the outbox is only ever cut
    // at a prefix. After a failure the unconfirmed rest is sent again; what
    // of it did commit is deduplicated by reading id.
    let mut inflight = futures::stream::FuturesOrdered::new();
    let mut sent_upto = 0u64;
    loop {
        while inflight.len() < opts.in_flight {
            let (last, readings) =
                match next_batch(&node, &origin, sent_upto, opts.max_batch_readings).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the outbox failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                };
            if last == 0 {
                break;
            }
            sent_upto = last;
            let node = node.clone();
            inflight.push_back(async move {
                let n = readings.len() as u64;
                let res = node
                    .propose(Command::Polled {
                        node: node.id(),
                        readings,
                    })
                    .await;
                (last, n, res)
            });
        }
        let Some((last, n, res)) = futures::StreamExt::next(&mut inflight).await else {
            let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
            continue;
        };
        let failure = match res {
            Ok(resp) => match resp.result {
                Ok(_) => None,
                // Polled batches skip what does not fit; a rejection here is
                // a bug, not bad data: keep the records.
                Err(rej) => Some(format!("polled batch rejected: {rej}")),
            },
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                let store = node.node_store().clone();
                let _ = tokio::task::spawn_blocking(move || store.outbox_remove_upto(last)).await;
                metrics.outbox_forwarded.inc_by(n);
                backoff = Duration::from_millis(50);
            }
            Some(e) => {
                tracing::debug!(error = %e, readings = n, "outbox flush failed; will retry");
                inflight.clear();
                // Everything up to the last confirmed batch is gone from the
                // outbox; start again right after it.
                sent_upto = 0;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_storage::QualityLevel;

    fn record() -> PollRecord {
        let r = |tag: &str, v: f64| PolledReading {
            tag: tag.into(),
            ts_us: 5,
            value: Some(Value::Float(v)),
            quality: Quality {
                level: QualityLevel::Good,
                reason: String::new(),
            },
        };
        PollRecord {
            device: "d".into(),
            readings: vec![r("a", 1.0), r("b", 2.0)],
        }
    }

    #[test]
    fn a_replayed_record_gets_the_same_ids_and_another_record_other_ids() {
        let first = to_readings("2-0badcafe", 7, record());
        let replay = to_readings("2-0badcafe", 7, record());
        assert_eq!(first, replay);
        let ids: Vec<&str> = first.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["2-0badcafe:7:0", "2-0badcafe:7:1"]);
        let next = to_readings("2-0badcafe", 8, record());
        assert!(next.iter().all(|r| !ids.contains(&r.id.as_str())));
        let new_life = to_readings("2-12345678", 7, record());
        assert!(new_life.iter().all(|r| !ids.contains(&r.id.as_str())));
    }

    #[test]
    fn records_survive_the_outbox_encoding() {
        let bytes = encode(&record());
        assert_eq!(decode::<PollRecord>(&bytes).unwrap(), record());
    }
}
