//! The ingest-set workload: no acknowledged reading is lost.
//!
//! Clients ingest small batches of readings to a few tags of their own,
//! every reading with an id used nowhere else. An ingest is recorded as an
//! `append` on the tag with the batch's ids as its value. Ingest is
//! idempotent by reading id, so these calls go through the client library
//! and its retries; a call that gave up is `info` (some or all of the batch
//! may be stored), and only a refusal is `fail`.
//!
//! After the run, and after the cluster has healed, [`final_read`] reads
//! each tag's whole history with linearizable consistency and records it as
//! a `read` of the tag whose value is `[[id revision] ...]`. The checker
//! ([`crate::check::set`]) compares the two; the watch checker uses the same
//! final reads as the truth about what was committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_client::proto::{self, Reading};
use bifrost_client::{ClientOptions, Consistency, HistoryQuery};
use rand::{Rng, SeedableRng};

use super::{names, Recorder, Result};
use crate::history::{Function, Value};
use crate::target::Target;

/// How to run the set workload.
#[derive(Clone, Debug)]
pub struct SetOptions {
    pub clients: usize,
    /// The tags readings go to; created by [`setup`] on `device`.
    pub tags: Vec<String>,
    /// The (disabled) device the tags belong to.
    pub device: String,
    /// Readings per ingest call: `1..=max_batch`.
    pub max_batch: usize,
    /// Reading ids are `PREFIX<N>`.
    pub id_prefix: String,
    /// Budget of one ingest call, retries included. Short, so that a call
    /// during a fault ends as `info` and the client goes on.
    pub deadline: Duration,
    /// Timeout of one attempt.
    pub request_timeout: Duration,
    pub pause: Duration,
    pub seed: u64,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            clients: 4,
            tags: (0..4).map(|i| format!("jepsen/set/t{i}")).collect(),
            device: "jepsen-set".to_string(),
            max_batch: 3,
            id_prefix: "jepsen-set-".to_string(),
            deadline: Duration::from_secs(3),
            request_timeout: Duration::from_secs(1),
            pause: Duration::from_millis(10),
            seed: 2,
        }
    }
}

impl SetOptions {
    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: self.request_timeout,
            deadline: self.deadline,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(300),
            leader_ttl: Duration::from_secs(5),
            ..Default::default()
        }
    }
}

/// Creates the device and the tags (create or replace, so running it again
/// is harmless). Retried by the client library until its deadline.
pub async fn setup(target: &Target, opts: &SetOptions) -> Result<()> {
    let client = target.client(setup_options())?;
    client
        .put_device(super::register::device(&opts.device, 0), false)
        .await?;
    for t in &opts.tags {
        client
            .put_tag(
                proto::Tag {
                    name: t.clone(),
                    device: opts.device.clone(),
                    address: "hr:0".into(),
                    data_type: "i64".into(),
                    ..Default::default()
                },
                false,
            )
            .await?;
    }
    Ok(())
}

/// Options for setup and final reads: patient, since the cluster should be
/// healthy then and an error ends the run.
pub(crate) fn setup_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(60),
        ..Default::default()
    }
}

/// Runs `opts.clients` ingesting processes until `until`.
pub async fn run(
    target: &Target,
    recorder: &Recorder,
    until: Instant,
    opts: &SetOptions,
) -> Result<()> {
    let next_id = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..opts.clients {
        // Each client starts on another node (the library then follows the
        // leader).
        let client = target.rotated(i).client(opts.client_options())?;
        let mut process = recorder.process(names::SET);
        let opts = opts.clone();
        let next_id = next_id.clone();
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed ^ ((i as u64 + 1) * 0x7f4a));
            while Instant::now() < until {
                let tag = opts.tags[rng.random_range(0..opts.tags.len())].clone();
                let n = rng.random_range(1..=opts.max_batch.max(1));
                let readings: Vec<Reading> = (0..n)
                    .map(|_| {
                        let seq = next_id.fetch_add(1, Ordering::Relaxed);
                        reading(&format!("{}{seq}", opts.id_prefix), &tag, seq as i64)
                    })
                    .collect();
                let ids = Value::List(readings.iter().map(|r| Value::Str(r.id.clone())).collect());
                let op = process.invoke(Function::Append, &tag, ids.clone());
                match client.ingest(readings).await {
                    Ok(_) => op.ok(ids),
                    Err(e) => op.error(&e),
                }
                tokio::time::sleep(opts.pause).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn reading(id: &str, tag: &str, v: i64) -> Reading {
    Reading {
        id: id.to_string(),
        tag: tag.to_string(),
        ts_us: bifrost_model::now_us(),
        value: Some(proto::Value {
            kind: Some(proto::value::Kind::IntValue(v)),
        }),
        quality: Some(proto::Quality {
            level: proto::QualityLevel::QualityGood as i32,
            reason: String::new(),
        }),
        ..Default::default()
    }
}

/// Reads every tag's whole history (linearizable) and records each as a
/// `read` whose value is `[[id revision] ...]`. Call it once the cluster
/// has healed; an error (no answer within a minute) is returned, and the
/// checkers then answer "unknown".
pub async fn final_read(target: &Target, recorder: &Recorder, opts: &SetOptions) -> Result<()> {
    let client = target.client(setup_options())?;
    let mut process = recorder.process(names::SET);
    for tag in &opts.tags {
        let op = process.invoke(Function::Read, tag, Value::Nil);
        let q = HistoryQuery {
            tag: tag.clone(),
            consistency: Consistency::Linearizable,
            ..Default::default()
        };
        match client.history_all(q).await {
            Ok(readings) => op.ok(Value::List(
                readings
                    .into_iter()
                    .map(|r| Value::List(vec![Value::Str(r.id), Value::Int(r.revision as i64)]))
                    .collect(),
            )),
            Err(e) => {
                op.info(e.to_string());
                return Err(e.into());
            }
        }
    }
    Ok(())
}
