//! The readings workload: polling continues, and no acquired reading is
//! lost.
//!
//! The cluster itself is the client here: it polls simulated devices whose
//! `u32` counter register goes up by exactly one per poll, so the stored
//! values of a counter tag must be consecutive. The harness sets up the
//! simulator, the devices and the counter tags; this workload records two
//! things:
//!
//! - while the run goes on, [`run`] samples which node polls each device
//!   (`Status.assignments`) and records each sample as a `read` of the key
//!   [`ASSIGNMENTS`] whose value is `[EPOCH_US [[DEVICE NODE] ...]]`, so the
//!   checker knows whose devices a killed node had;
//! - at the end (after the cluster has healed and the outboxes drained),
//!   [`final_read`] records the tag-to-device map as a `read` of [`TAGS`]
//!   (`[[TAG DEVICE] ...]`), then each counter tag's whole history as a
//!   `read` of the tag whose value is `[[VALUE ID TS_US] ...]`.
//!
//! The checker ([`crate::check::readings`]) then looks for duplicates and
//! for gaps that no fault explains.

use std::time::{Duration, Instant};

use bifrost_client::proto;
use bifrost_client::{ClientOptions, Consistency, HistoryQuery};

use super::{names, Recorder, Result};
use crate::history::{Function, Value};
use crate::target::Target;

/// The key of assignment samples.
pub const ASSIGNMENTS: &str = ":assignments";
/// The key of the tag-to-device map read at the end.
pub const TAGS: &str = ":tags";

/// How to run the readings workload.
#[derive(Clone, Debug)]
pub struct ReadingsOptions {
    /// The counter tags.
    pub tags: Vec<String>,
    /// How often to sample the assignments.
    pub sample_interval: Duration,
}

impl Default for ReadingsOptions {
    fn default() -> Self {
        ReadingsOptions {
            tags: Vec::new(),
            sample_interval: Duration::from_millis(250),
        }
    }
}

/// Samples the device assignments until `until`.
pub async fn run(
    target: &Target,
    recorder: &Recorder,
    until: Instant,
    opts: &ReadingsOptions,
) -> Result<()> {
    let client = target.client(ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        deadline: Duration::from_secs(1),
        ..Default::default()
    })?;
    let mut process = recorder.process(names::READINGS);
    while Instant::now() < until {
        let op = process.invoke(Function::Read, ASSIGNMENTS, Value::Nil);
        let at = bifrost_model::now_us();
        match client.status().await {
            Ok(s) => op.ok(Value::List(vec![
                Value::Int(at),
                Value::List(
                    s.assignments
                        .into_iter()
                        .map(|a| Value::List(vec![Value::Str(a.device), Value::Int(a.node as i64)]))
                        .collect(),
                ),
            ])),
            // Status changes nothing.
            Err(e) => op.fail(e.to_string()),
        }
        tokio::time::sleep(opts.sample_interval).await;
    }
    Ok(())
}

/// Reads which device each tag belongs to and the history of every tag in
/// `tags`, and records them. An error (no answer within a minute) is
/// returned after recording `info`.
pub async fn final_read(target: &Target, recorder: &Recorder, tags: &[String]) -> Result<()> {
    let client = target.client(super::set::setup_options())?;
    let mut process = recorder.process(names::READINGS);
    let op = process.invoke(Function::Read, TAGS, Value::Nil);
    match client.list_tags(None, Consistency::Linearizable).await {
        Ok(all) => op.ok(Value::List(
            all.into_iter()
                .filter(|t| tags.contains(&t.name))
                .map(|t| Value::List(vec![Value::Str(t.name), Value::Str(t.device)]))
                .collect(),
        )),
        Err(e) => {
            op.info(e.to_string());
            return Err(e.into());
        }
    }
    for tag in tags {
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
                    .map(|r| {
                        let v = match r.value.and_then(|v| v.kind) {
                            Some(proto::value::Kind::IntValue(i)) => Value::Int(i),
                            Some(proto::value::Kind::FloatValue(f)) if f.fract() == 0.0 => {
                                Value::Int(f as i64)
                            }
                            // Bad quality, or not a counter: not a value.
                            _ => Value::Nil,
                        };
                        Value::List(vec![v, Value::Str(r.id), Value::Int(r.ts_us)])
                    })
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
