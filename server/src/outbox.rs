//! The node-local outbox: where a polled reading becomes *acquired*, and from
//! where it is committed through Raft exactly once.
//!
//! The writer task takes polls from the pollers, encodes each once in its
//! compact form ([`DevicePoll`]: tag ids, native values, quality codes; no
//! reading ids, no tag names), writes every record that is waiting in one
//! synced RocksDB write (group commit: one fsync for many devices), and
//! wakes the forwarder. The forwarder sends the oldest records, bytes
//! unchanged, as one `Command::PolledRecords` (to the leader, through this
//! node if it is a follower) and deletes them only once that command is
//! committed. The state machine stores each (origin, sequence) once, so a
//! replay after a crash or a lost reply stores nothing twice. (The origin is
//! `ID-INCARNATION`: a node whose disk was replaced starts a new
//! incarnation, so its new sequence numbers cannot collide with the old
//! ones.)
//!
//! The outbox is bounded in bytes. When it is full, the oldest records are
//! dropped, counted in `bifrost_outbox_dropped_records` and logged: never
//! silently. Before that, while commits go on but fall behind, polling is
//! slowed down (see [`crate::pressure`]), so an overloaded cluster sheds
//! polls, counted, rather than acquired readings.

use std::sync::Arc;
use std::time::Duration;

use bifrost_model::poll::{DevicePoll, PolledValue};
use bifrost_raft::{Command, RaftNode};
use bifrost_storage::codec::decode;
use bifrost_storage::{Quality, StateStore, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use crate::metrics::Metrics;
use crate::pressure::Admission;

/// One poll of one device as outboxes of earlier versions kept it
/// (postcard behind the storage codec's version byte); sent on converted
/// to a [`DevicePoll`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LegacyPollRecord {
    pub device: String,
    pub readings: Vec<LegacyReading>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LegacyReading {
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

/// An outbox record in its compact form: as written, or converted from an
/// earlier version's record (tags looked up by name; unknown ones dropped).
pub fn compact_record(state: &StateStore, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if DevicePoll::is_encoded(&bytes) {
        return Ok(bytes);
    }
    let old: LegacyPollRecord = decode(&bytes).map_err(|e| e.to_string())?;
    let readings: Vec<PolledValue> = old
        .readings
        .into_iter()
        .filter_map(|r| {
            Some(PolledValue {
                tag_id: state.tag(&r.tag)?.id,
                ts_us: r.ts_us,
                value: r.value,
                quality: r.quality,
            })
        })
        .collect();
    let ts_us = readings.first().map_or(0, |r| r.ts_us);
    let epoch = state.assignment(&old.device).map_or(0, |a| a.epoch);
    Ok(DevicePoll {
        device: old.device,
        epoch,
        ts_us,
        readings,
    }
    .encode())
}

/// A batch of the oldest records after some sequence.
struct Batch {
    /// Oldest sequence in the outbox when the batch was read.
    floor: u64,
    last: u64,
    readings: u64,
    records: Vec<(u64, Vec<u8>)>,
}

/// The oldest outbox records after sequence `after`, holding at most `max`
/// readings (at least one record); `last` is 0 when there are none.
async fn next_batch(node: &Arc<RaftNode>, after: u64, max: usize) -> Result<Batch, String> {
    let store = node.node_store().clone();
    let state = node.state().clone();
    tokio::task::spawn_blocking(move || {
        let floor = store
            .outbox_peek(0, 1)
            .map_err(|e| e.to_string())?
            .first()
            .map_or(after + 1, |(seq, _)| *seq);
        let mut batch = Batch {
            floor,
            last: 0,
            readings: 0,
            records: Vec::new(),
        };
        for (seq, bytes) in store.outbox_peek(after, 4096).map_err(|e| e.to_string())? {
            let bytes =
                compact_record(&state, bytes).map_err(|e| format!("outbox record {seq}: {e}"))?;
            let n =
                DevicePoll::count(&bytes).map_err(|e| format!("outbox record {seq}: {e}"))? as u64;
            if !batch.records.is_empty() && batch.readings + n > max as u64 {
                break;
            }
            batch.readings += n;
            batch.records.push((seq, bytes));
            batch.last = seq;
        }
        Ok(batch)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Starts the writer, forwarder and admission-control tasks; returns where
/// pollers send records.
pub fn start(
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    opts: OutboxOptions,
    admission: Arc<Admission>,
) -> mpsc::Sender<DevicePoll> {
    let (tx, rx) = mpsc::channel::<DevicePoll>(16_384);
    let wake = Arc::new(Notify::new());
    let committed = Arc::new(LastCommit::default());
    tokio::spawn(writer(
        node.clone(),
        metrics.clone(),
        opts.clone(),
        rx,
        wake.clone(),
    ));
    tokio::spawn(forwarder(
        node.clone(),
        metrics.clone(),
        opts,
        wake,
        committed.clone(),
    ));
    tokio::spawn(admission_control(node, metrics, admission, committed));
    tx
}

/// When the forwarder last saw a batch commit.
#[derive(Default)]
struct LastCommit(std::sync::Mutex<Option<std::time::Instant>>);

impl LastCommit {
    fn now(&self) {
        *self.0.lock().expect("last commit lock") = Some(std::time::Instant::now());
    }

    fn within(&self, d: Duration) -> bool {
        self.0
            .lock()
            .expect("last commit lock")
            .is_some_and(|t| t.elapsed() < d)
    }
}

/// How long a commit may take before the cluster counts as not committing
/// (an outage, when polls are buffered rather than shed).
const COMMIT_QUIET: Duration = Duration::from_secs(5);

/// Once a second, sets the share of polls made from the age of the oldest
/// outbox record (see [`crate::pressure`]).
async fn admission_control(
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
    committed: Arc<LastCommit>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    metrics.poll_admission.set(100);
    loop {
        tick.tick().await;
        let store = node.node_store().clone();
        let oldest = tokio::task::spawn_blocking(move || store.outbox_peek(0, 1)).await;
        let oldest_ts = match oldest {
            Ok(Ok(records)) => records
                .first()
                .and_then(|(_, bytes)| DevicePoll::decode(bytes).ok())
                .map(|poll| poll.ts_us),
            _ => continue,
        };
        let age = oldest_ts.map_or(Duration::ZERO, |ts| {
            Duration::from_micros(bifrost_model::now_us().saturating_sub(ts).max(0) as u64)
        });
        let before = admission.share();
        let share = admission.update(age, committed.within(COMMIT_QUIET));
        metrics.poll_admission.set((share * 100.0).round() as i64);
        if (share < 1.0) != (before < 1.0) {
            let backlog_ms = age.as_millis() as u64;
            if share < 1.0 {
                tracing::warn!(
                    backlog_ms,
                    share,
                    "commits fall behind polling: shedding polls"
                );
            } else {
                tracing::warn!(
                    backlog_ms,
                    "commits keep up with polling: every poll is made again"
                );
            }
        }
    }
}

async fn writer(
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    opts: OutboxOptions,
    mut rx: mpsc::Receiver<DevicePoll>,
    wake: Arc<Notify>,
) {
    while let Some(first) = rx.recv().await {
        let mut records = vec![first.encode()];
        let mut readings = first.readings.len() as u64;
        while records.len() < 4096 {
            match rx.try_recv() {
                Ok(r) => {
                    readings += r.readings.len() as u64;
                    records.push(r.encode());
                }
                Err(_) => break,
            }
        }
        // The outbox must not eat the disk's reserve: while the node
        // refuses writes for want of space, polled records are dropped.
        if let Err(why) = node.disk().check() {
            metrics.outbox_dropped_records.inc_by(records.len() as u64);
            tracing::debug!(records = records.len(), readings, %why, "disk nearly full: poll records dropped");
            continue;
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
    committed: Arc<LastCommit>,
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
    // of it did commit is deduplicated by (origin, sequence).
    let mut inflight = futures::stream::FuturesOrdered::new();
    let mut sent_upto = 0u64;
    loop {
        while inflight.len() < opts.in_flight {
            let batch = match next_batch(&node, sent_upto, opts.max_batch_readings).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            };
            if batch.last == 0 {
                break;
            }
            sent_upto = batch.last;
            let node = node.clone();
            let origin = origin.clone();
            inflight.push_back(async move {
                let res = node
                    .propose(Command::PolledRecords {
                        origin,
                        floor: batch.floor,
                        records: batch.records,
                    })
                    .await;
                (batch.last, batch.readings, res)
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
                committed.now();
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
    use bifrost_model::{DataType, Device, Protocol, Tag};
    use bifrost_storage::codec::encode;

    #[test]
    fn a_record_of_an_earlier_version_is_sent_on_in_compact_form() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(dir.path()).unwrap();
        let mut b = state.batch();
        b.put_device(
            Device::new("d", Protocol::ModbusTcp, "127.0.0.1:502"),
            true,
            None,
            1,
        )
        .unwrap();
        let tag = b
            .put_tag(Tag::new("a", "d", "hr:0", DataType::F64), true, None, 1)
            .unwrap();
        b.commit().unwrap();
        let r = |tag: &str, v: f64| LegacyReading {
            tag: tag.into(),
            ts_us: 5,
            value: Some(Value::Float(v)),
            quality: Quality::good(),
        };
        let old = LegacyPollRecord {
            device: "d".into(),
            readings: vec![r("a", 1.0), r("gone", 2.0)],
        };
        let bytes = compact_record(&state, encode(&old)).unwrap();
        let poll = DevicePoll::decode(&bytes).unwrap();
        assert_eq!((poll.device.as_str(), poll.ts_us), ("d", 5));
        let got: Vec<_> = poll
            .readings
            .iter()
            .map(|r| (r.tag_id, r.value.clone()))
            .collect();
        assert_eq!(
            got,
            [(tag.id, Some(Value::Float(1.0)))],
            "the unknown tag is dropped"
        );
        // A compact record passes through untouched.
        assert_eq!(compact_record(&state, bytes.clone()).unwrap(), bytes);
        let e = compact_record(&state, vec![9, 9]).unwrap_err();
        assert!(!e.is_empty());
    }
}
