//! The register workload: linearizable config.
//!
//! Each register is a device named `PREFIX<K>` whose label `value` holds an
//! integer; a device that does not exist is the register's initial `nil`.
//! Clients pick a register and one of:
//!
//! - `read`: a linearizable `ListDevices`, and the label of that device;
//! - `write V`: `PutDevice` with `value=V` (create or replace);
//! - `cas [OLD NEW]`: a linearizable read, then, only if it found `OLD`,
//!   `PutDevice` with `value=NEW` and `expected_revision` = the revision it
//!   read. If the read found another value the cas fails without writing:
//!   it observed, within its own interval, that the register was not `OLD`.
//!
//! Every request is **one attempt** on a raw stub of one node, never the
//! client library's retrying calls: a compare-and-set retried after a lost
//! answer reports a precondition failure although its first attempt took
//! effect, and the history would record as `fail` what happened. So a
//! timeout, a node that went away or a missing leader is `info`, and only a
//! refusal by the server (or a connection that was never made) is `fail`.
//!
//! Client *i* talks to node *i mod n* (forwarding to the leader is the
//! server's job, and part of what is tested). To keep each register's
//! history short enough to check, the registers in use change every
//! `ops_per_key` operations, as Jepsen's `independent` generator does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_client::proto::{Device, ListDevicesRequest, PutDeviceRequest};
use bifrost_client::Consistency;
use rand::{Rng, SeedableRng};

use super::{names, one_attempt, raw_stub, timed, Process, Recorder, Result};
use crate::history::{Function, Value};
use crate::target::Target;

/// How to run the register workload.
#[derive(Clone, Debug)]
pub struct RegisterOptions {
    /// Concurrent client processes.
    pub clients: usize,
    /// Registers in use at a time.
    pub keys: usize,
    /// Operations (over all clients) before moving on to fresh registers.
    pub ops_per_key: u64,
    /// Values written are drawn from `0..values`; a small range makes
    /// compare-and-set succeed often.
    pub values: i64,
    /// Device name prefix; the register number follows.
    pub prefix: String,
    /// Timeout of one request.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Pause between two operations of one client.
    pub pause: Duration,
    pub seed: u64,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            clients: 4,
            keys: 3,
            ops_per_key: 300,
            values: 5,
            prefix: "jepsen-reg-".to_string(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(500),
            pause: Duration::from_millis(10),
            seed: 1,
        }
    }
}

/// The label that holds a register's value.
pub const LABEL: &str = "value";

/// The device that stands for a register holding `value`.
pub fn device(name: &str, value: i64) -> Device {
    Device {
        name: name.to_string(),
        protocol: "modbus-tcp".into(),
        // Disabled, so no node ever polls it.
        endpoint: "127.0.0.1:1".into(),
        unit_id: 1,
        poll_interval_ms: 1000,
        timeout_ms: 1000,
        enabled: false,
        labels: HashMap::from([(LABEL.to_string(), value.to_string())]),
        ..Default::default()
    }
}

/// Runs `opts.clients` processes against `target`'s nodes until `until`.
pub async fn run(
    target: &Target,
    recorder: &Recorder,
    until: Instant,
    opts: &RegisterOptions,
) -> Result<()> {
    let ops = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..opts.clients {
        let endpoint = target.endpoints[i % target.endpoints.len()].clone();
        let stub = raw_stub(&endpoint, &target.security, opts.connect_timeout)?;
        let mut process = recorder.process(names::REGISTER);
        process.set_node(Some(endpoint));
        let opts = opts.clone();
        let ops = ops.clone();
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed ^ ((i as u64 + 1) * 0x9e37));
            let mut client = Client {
                stub,
                opts: &opts,
                unreachable: false,
            };
            while Instant::now() < until {
                let n = ops.fetch_add(1, Ordering::Relaxed);
                let key = format!(
                    "{}{}",
                    opts.prefix,
                    (n / opts.ops_per_key.max(1)) * opts.keys as u64
                        + rng.random_range(0..opts.keys.max(1) as u64)
                );
                match rng.random_range(0..3) {
                    0 => client.read(&mut process, &key).await,
                    1 => {
                        let v = rng.random_range(0..opts.values);
                        client.write(&mut process, &key, v).await
                    }
                    _ => {
                        let old = rng.random_range(0..opts.values);
                        let new = rng.random_range(0..opts.values);
                        client.cas(&mut process, &key, old, new).await
                    }
                }
                // A node that is down refuses at once: do not spin on it.
                let pause = if std::mem::take(&mut client.unreachable) {
                    opts.pause.max(Duration::from_millis(100))
                } else {
                    opts.pause
                };
                tokio::time::sleep(pause).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

type Stub = bifrost_client::proto::bifrost_client::BifrostClient<tonic::transport::Channel>;

struct Client<'a> {
    stub: Stub,
    opts: &'a RegisterOptions,
    /// The last request could not connect.
    unreachable: bool,
}

impl Client<'_> {
    /// The register's value and the device's revision (0 when absent).
    async fn get(&mut self, key: &str) -> std::result::Result<(Value, u64), tonic::Status> {
        let req = timed(
            ListDevicesRequest {
                consistency: Consistency::Linearizable as i32,
            },
            self.opts.timeout,
        );
        let resp = one_attempt(self.opts.timeout, self.stub.list_devices(req))
            .await
            .inspect_err(|s| self.unreachable = super::never_connected(s))?;
        let Some(d) = resp.devices.into_iter().find(|d| d.name == key) else {
            return Ok((Value::Nil, 0));
        };
        let value = match d.labels.get(LABEL).map(|v| v.parse::<i64>()) {
            Some(Ok(v)) => Value::Int(v),
            // A device of ours always has the label; anything else is read
            // as what it is, and the checker will object.
            Some(Err(_)) => Value::Str(d.labels[LABEL].clone()),
            None => Value::Nil,
        };
        Ok((value, d.revision))
    }

    async fn read(&mut self, p: &mut Process, key: &str) {
        let op = p.invoke(Function::Read, key, Value::Nil);
        match self.get(key).await {
            Ok((v, _)) => op.ok(v),
            // A read changes nothing: whatever went wrong, it did not
            // happen (the checker drops unknown reads anyway).
            Err(s) => op.fail(format!("{:?}: {}", s.code(), s.message())),
        }
    }

    async fn put(
        &mut self,
        key: &str,
        value: i64,
        expected: Option<u64>,
    ) -> std::result::Result<(), tonic::Status> {
        let req = timed(
            PutDeviceRequest {
                device: Some(device(key, value)),
                create_only: false,
                expected_revision: expected,
                // The server applies a request id at most once, so its own
                // retry of a forwarded write cannot apply it twice.
                request_id: format!("{:032x}", rand::random::<u128>()),
            },
            self.opts.timeout,
        );
        one_attempt(self.opts.timeout, self.stub.put_device(req))
            .await
            .map(|_| ())
            .inspect_err(|s| self.unreachable = super::never_connected(s))
    }

    async fn write(&mut self, p: &mut Process, key: &str, v: i64) {
        let op = p.invoke(Function::Write, key, Value::Int(v));
        match self.put(key, v, None).await {
            Ok(()) => op.ok(Value::Int(v)),
            Err(s) => op.status(&s),
        }
    }

    async fn cas(&mut self, p: &mut Process, key: &str, old: i64, new: i64) {
        let arg = Value::List(vec![Value::Int(old), Value::Int(new)]);
        let op = p.invoke(Function::Cas, key, arg.clone());
        let revision = match self.get(key).await {
            Ok((Value::Int(v), rev)) if v == old => rev,
            Ok((v, _)) => return op.fail(format!("read {v}, not {old}")),
            Err(s) => return op.fail(format!("read before cas: {:?}: {}", s.code(), s.message())),
        };
        match self.put(key, new, Some(revision)).await {
            Ok(()) => op.ok(arg),
            Err(s) => op.status(&s),
        }
    }
}
