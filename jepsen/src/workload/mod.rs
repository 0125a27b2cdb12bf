//! Workloads: concurrent clients that drive a running cluster through the
//! public API and record what they did and saw.
//!
//! Everything a client does goes through a [`Recorder`]: it logs an
//! `invoke` before sending a request and exactly one completion after it
//! (`ok`, `fail` or `info`), each stamped with microseconds since the
//! recorder was made, from one monotonic clock. The recorder writes every
//! event to a JSON-lines file as it happens (so a crashed run still leaves
//! its history) and keeps them in memory for the checkers and the plots.
//!
//! The file is the crate's own history format (see [`crate::format::jsonl`])
//! with three extra fields its parser ignores: `workload` (which workload
//! the event belongs to), `node` (the node the request went to) and `error`
//! (why an operation failed or is unknown). So `bifrost-jepsen check` reads
//! the register workload's events as they are, and [`read_history`] reads
//! the whole file back for checking a run again later.
//!
//! **Outcomes.** `fail` is only for requests that certainly did not take
//! effect: the server refused them (compare-and-set mismatch, bad input), or
//! the connection was never established. Everything else (a timeout, a node
//! that went away mid-call, no leader) is `info`: the operation may take
//! effect at any later time, or never. A process whose operation ended in
//! `info` is retired and the client goes on under a fresh process id, as in
//! Jepsen, because that operation is still "open" for the checker: one
//! process must never have two operations open at once.
//!
//! **Workloads** (each runs until a given [`Instant`]):
//!
//! - [`register`]: read, write and compare-and-set of a few registers (a
//!   device label per register), checked for linearizability.
//! - [`set`]: ingest of readings with unique ids; at the end every
//!   acknowledged id must be in the history.
//! - [`watch`]: subscribers that follow the set's tags and must see every
//!   committed reading once, in revision order.
//! - [`readings`]: the final read of polled counter tags, whose values
//!   must have no duplicates and gaps only where a fault allows them.

/// Whether tonic could not establish the connection, so no byte of the
/// request was sent (the client library's own test).
pub(crate) use bifrost_client::error::never_connected;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bifrost_client::Security;
use bifrost_model::now_us;
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::history::{Event, EventType, Function, History, Value};

pub mod readings;
pub mod register;
pub mod set;
pub mod watch;

/// What can stop a workload from running at all (an operation that goes
/// wrong is recorded, not returned).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setting up the cluster for the workload failed (creating its devices
    /// and tags), or a final read could not be made.
    #[error("workload: {0}")]
    Client(#[from] bifrost_client::Error),
    /// The history file could not be written or read.
    #[error("workload: history file: {0}")]
    Io(#[from] std::io::Error),
    /// A line of a history file is not a record.
    #[error("workload: history file line {line}: {message}")]
    Parse { line: usize, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The names of the workloads, as written in the `workload` field.
pub mod names {
    pub const REGISTER: &str = "register";
    pub const SET: &str = "set";
    pub const WATCH: &str = "watch";
    pub const READINGS: &str = "readings";
}

/// One recorded event: a line of the history file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub process: u64,
    pub kind: EventType,
    pub f: Function,
    /// The object the operation is on: a register's device name, a tag, a
    /// subscription's name.
    pub key: String,
    /// The argument (on `invoke`) or the result (on `ok`); `nil` on `fail`
    /// and `info`.
    pub value: Value,
    /// Microseconds since the recorder was made.
    pub time: u64,
    pub workload: String,
    /// The node the request was sent to (`HOST:PORT`), when known.
    pub node: Option<String>,
    /// Why the operation failed or its outcome is unknown.
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    process: u64,
    #[serde(rename = "type")]
    kind: String,
    f: String,
    key: String,
    value: serde_json::Value,
    time: u64,
    workload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Record {
    /// The record as one line of JSON (without the newline).
    pub fn to_line(&self) -> String {
        let line = Line {
            process: self.process,
            kind: self.kind.as_str().to_string(),
            f: self.f.as_str().to_string(),
            key: self.key.clone(),
            value: value_to_json(&self.value),
            time: self.time,
            workload: self.workload.clone(),
            node: self.node.clone(),
            error: self.error.clone(),
        };
        serde_json::to_string(&line).expect("a record always serialises")
    }

    /// Parses a line written by [`Record::to_line`].
    pub fn from_line(text: &str) -> std::result::Result<Record, String> {
        let l: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(Record {
            process: l.process,
            kind: EventType::parse(&l.kind).ok_or_else(|| format!("unknown type {:?}", l.kind))?,
            f: Function::parse(&l.f).ok_or_else(|| format!("unknown function {:?}", l.f))?,
            key: l.key,
            value: value_from_json(&l.value)?,
            time: l.time,
            workload: l.workload,
            node: l.node,
            error: l.error,
        })
    }

    /// The record as an event of the crate's history model; `line` is
    /// what error messages of the checker will cite.
    pub fn to_event(&self, line: usize) -> Event {
        Event {
            process: self.process,
            kind: self.kind,
            f: self.f,
            key: self.key.clone(),
            value: self.value.clone(),
            time: self.time,
            line,
        }
    }
}

/// A [`Value`] as JSON: `null`, integers, strings and arrays of those.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Int(i) => (*i).into(),
        Value::Str(s) => s.clone().into(),
        Value::List(items) => items.iter().map(value_to_json).collect(),
    }
}

fn value_from_json(v: &serde_json::Value) -> std::result::Result<Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Nil,
        J::Number(n) => Value::Int(n.as_i64().ok_or_else(|| format!("{n} is not an i64"))?),
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::List(
            items
                .iter()
                .map(value_from_json)
                .collect::<std::result::Result<_, _>>()?,
        ),
        J::Bool(_) | J::Object(_) => return Err(format!("unsupported value {v}")),
    })
}

/// Reads a history file written by a [`Recorder`].
pub fn read_history(path: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (i, line) in BufReader::new(File::open(path)?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(Record::from_line(&line).map_err(|message| Error::Parse {
            line: i + 1,
            message,
        })?);
    }
    Ok(out)
}

/// Writes records as a history file (one line each).
pub fn write_history(path: &Path, records: &[Record]) -> Result<()> {
    let mut w = std::io::BufWriter::new(File::create(path)?);
    for r in records {
        writeln!(w, "{}", r.to_line())?;
    }
    w.flush()?;
    Ok(())
}

/// The events of one workload as a history of the crate's model (lines
/// numbered from 1 in that sub-history), for the linearizability checker.
pub fn history_of(records: &[Record], workload: &str) -> History {
    History {
        events: records
            .iter()
            .filter(|r| r.workload == workload)
            .enumerate()
            .map(|(i, r)| r.to_event(i + 1))
            .collect(),
    }
}

/// A thread-safe recorder of events. Cheap to clone; clones share the file,
/// the clock and the process ids.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Shared>,
}

struct Shared {
    start: Instant,
    start_epoch_us: i64,
    path: Option<PathBuf>,
    state: Mutex<State>,
}

struct State {
    records: Vec<Record>,
    file: Option<std::io::BufWriter<File>>,
    next_process: u64,
    /// The first write error; recording goes on in memory.
    io_error: Option<String>,
}

impl Recorder {
    /// A recorder that also writes every event to `path` (created or
    /// truncated) as it is recorded.
    pub fn create(path: &Path) -> Result<Recorder> {
        let file = std::io::BufWriter::new(File::create(path)?);
        Ok(Self::build(Some(file), Some(path.to_path_buf())))
    }

    /// A recorder that only keeps events in memory.
    pub fn in_memory() -> Recorder {
        Self::build(None, None)
    }

    fn build(file: Option<std::io::BufWriter<File>>, path: Option<PathBuf>) -> Recorder {
        Recorder {
            inner: Arc::new(Shared {
                start: Instant::now(),
                start_epoch_us: now_us(),
                path,
                state: Mutex::new(State {
                    records: Vec::new(),
                    file,
                    next_process: 0,
                    io_error: None,
                }),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Poisoning only means a panic elsewhere; the records stay whole.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file events are written to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// When the clock started.
    pub fn start(&self) -> Instant {
        self.inner.start
    }

    /// Wall-clock time of the start, microseconds since the Unix epoch
    /// (to relate history times to reading timestamps).
    pub fn start_epoch_us(&self) -> i64 {
        self.inner.start_epoch_us
    }

    /// Microseconds since the start.
    pub fn now(&self) -> u64 {
        self.time_of(Instant::now())
    }

    /// `at` on the recorder's clock, in microseconds (0 before the start).
    pub fn time_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.inner.start).as_micros() as u64
    }

    /// A time of the recorder's clock as wall-clock microseconds since the
    /// epoch.
    pub fn to_epoch_us(&self, time: u64) -> i64 {
        self.inner.start_epoch_us + time as i64
    }

    /// A new client process of `workload`, with a fresh id.
    pub fn process(&self, workload: &str) -> Process {
        Process {
            recorder: self.clone(),
            id: self.fresh_id(),
            workload: workload.to_string(),
            node: None,
        }
    }

    fn fresh_id(&self) -> u64 {
        let mut st = self.state();
        let id = st.next_process;
        st.next_process += 1;
        id
    }

    /// Records one event, stamped now. Events are stamped under the lock,
    /// so the file and the in-memory list are in time order.
    fn record(&self, mut r: Record) {
        let mut st = self.state();
        r.time = self.now();
        if let Some(f) = st.file.as_mut() {
            // One line per event, flushed, so the file is complete up to
            // the last event if the harness dies.
            let res = writeln!(f, "{}", r.to_line()).and_then(|_| f.flush());
            if let Err(e) = res {
                st.io_error.get_or_insert_with(|| e.to_string());
            }
        }
        st.records.push(r);
    }

    /// A copy of every event so far, in time order.
    pub fn records(&self) -> Vec<Record> {
        self.state().records.clone()
    }

    /// How many events were recorded.
    pub fn len(&self) -> usize {
        self.state().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flushes the file; reports the first write error, if there was one.
    pub fn flush(&self) -> Result<()> {
        let mut st = self.state();
        if let Some(e) = st.io_error.clone() {
            return Err(Error::Io(std::io::Error::other(e)));
        }
        if let Some(f) = st.file.as_mut() {
            f.flush()?;
        }
        Ok(())
    }
}

/// One client process: runs one operation at a time.
pub struct Process {
    recorder: Recorder,
    id: u64,
    workload: String,
    node: Option<String>,
}

impl Process {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The node this process's requests go to, written on its events.
    pub fn set_node(&mut self, node: Option<String>) {
        self.node = node;
    }

    /// Records the invocation of an operation. Complete it with one of the
    /// methods of [`Invocation`]; one that is dropped stays open (the
    /// checker reads it as unknown), and the process must not invoke again.
    pub fn invoke(&mut self, f: Function, key: &str, value: Value) -> Invocation<'_> {
        self.recorder.record(Record {
            process: self.id,
            kind: EventType::Invoke,
            f,
            key: key.to_string(),
            value,
            time: 0,
            workload: self.workload.clone(),
            node: self.node.clone(),
            error: None,
        });
        Invocation {
            process: self,
            f,
            key: key.to_string(),
            started: Instant::now(),
        }
    }

    fn complete(
        &mut self,
        kind: EventType,
        f: Function,
        key: String,
        value: Value,
        error: Option<String>,
    ) {
        self.recorder.record(Record {
            process: self.id,
            kind,
            f,
            key,
            value,
            time: 0,
            workload: self.workload.clone(),
            node: self.node.clone(),
            error,
        });
        if kind == EventType::Info {
            self.id = self.recorder.fresh_id();
        }
    }
}

/// An operation in flight.
#[must_use = "an invocation must be completed with ok, fail or info"]
pub struct Invocation<'a> {
    process: &'a mut Process,
    f: Function,
    key: String,
    started: Instant,
}

impl Invocation<'_> {
    /// How long since the invocation.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// It took effect; `value` is its result.
    pub fn ok(self, value: Value) {
        self.process
            .complete(EventType::Ok, self.f, self.key, value, None);
    }

    /// It certainly did not take effect.
    pub fn fail(self, error: impl Into<String>) {
        self.process.complete(
            EventType::Fail,
            self.f,
            self.key,
            Value::Nil,
            Some(error.into()),
        );
    }

    /// Its outcome is unknown. The process is retired: it continues under a
    /// fresh id.
    pub fn info(self, error: impl Into<String>) {
        self.process.complete(
            EventType::Info,
            self.f,
            self.key,
            Value::Nil,
            Some(error.into()),
        );
    }

    /// Completes with what an error says about the outcome: `fail` when the
    /// request certainly did not take effect, else `info`.
    pub fn error(self, e: &bifrost_client::Error) {
        match classify_client_error(e) {
            Outcome::Rejected => self.fail(e.to_string()),
            Outcome::Unknown => self.info(e.to_string()),
        }
    }

    /// Like [`Invocation::error`], for a status of a single raw attempt.
    pub fn status(self, s: &Status) {
        let text = format!("{:?}: {}", s.code(), s.message());
        match classify_status(s) {
            Outcome::Rejected => self.fail(text),
            Outcome::Unknown => self.info(text),
        }
    }
}

/// What a failed request says about whether it took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It certainly did not.
    Rejected,
    /// It may have, or may yet.
    Unknown,
}

/// Classifies the status of one attempt: the server refused the request
/// (a check failed, the input is bad) or the connection was never made,
/// versus anything that may have happened after the request was sent.
pub fn classify_status(s: &Status) -> Outcome {
    if never_connected(s) {
        return Outcome::Rejected;
    }
    match s.code() {
        Code::FailedPrecondition
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::OutOfRange
        | Code::Unimplemented => Outcome::Rejected,
        _ => Outcome::Unknown,
    }
}

/// Classifies an error of the client library. Only a non-retryable answer
/// to a call is definite: after retries (`GaveUp`) an earlier attempt may
/// have taken effect, and a retried compare-and-set can even report a
/// precondition failure that its own first attempt caused.
pub fn classify_client_error(e: &bifrost_client::Error) -> Outcome {
    match e {
        bifrost_client::Error::Rpc(s) => classify_status(s),
        _ => Outcome::Unknown,
    }
}

/// A raw gRPC stub of one node: a single attempt per call, no retries and no
/// leader discovery, so that what the history says about an operation is
/// exactly what one request did. Secured as `security` says; an error
/// names the endpoint and what is wrong with it or its TLS files.
pub fn raw_stub(
    endpoint: &str,
    security: &Security,
    connect_timeout: Duration,
) -> Result<bifrost_client::proto::bifrost_client::BifrostClient<tonic::transport::Channel>> {
    let url = security
        .url(endpoint)
        .map_err(|reason| bifrost_client::Error::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        })?;
    let channel = security
        .endpoint(&url)
        .map_err(|reason| bifrost_client::Error::Tls {
            endpoint: endpoint.to_string(),
            reason,
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(bifrost_client::proto::bifrost_client::BifrostClient::new(
        channel,
    ))
}

/// Runs `fut` with a gRPC timeout of `timeout` and gives up on its own a
/// little later, for a server that ignores the timeout.
pub async fn one_attempt<T, F>(timeout: Duration, fut: F) -> std::result::Result<T, Status>
where
    F: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
{
    match tokio::time::timeout(timeout + Duration::from_millis(200), fut).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {:.1}s",
            timeout.as_secs_f64()
        ))),
    }
}

/// A request with a gRPC timeout.
pub fn timed<M>(msg: M, timeout: Duration) -> tonic::Request<M> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

/// Which node polls each device, as the cluster reports it (for telling
/// the [`readings`] checker whose devices a killed node owned).
pub async fn assignments(
    client: &bifrost_client::Client,
) -> Result<std::collections::BTreeMap<String, u64>> {
    Ok(client
        .status()
        .await?
        .assignments
        .into_iter()
        .map(|a| (a.device, a.node))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_parse_as_the_crate_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let rec = Recorder::create(&path).unwrap();
        let mut p = rec.process("register");
        p.set_node(Some("127.0.0.1:7001".into()));
        p.invoke(
            Function::Cas,
            "k",
            Value::List(vec![Value::Int(1), Value::Int(2)]),
        )
        .info("timeout");
        assert_eq!(p.id(), 1, "a process that got info is retired");
        p.invoke(Function::Read, "k", Value::Nil).ok(Value::Int(2));
        rec.flush().unwrap();

        let back = read_history(&path).unwrap();
        assert_eq!(back, rec.records());
        assert_eq!(back.len(), 4);
        assert!(back.windows(2).all(|w| w[0].time <= w[1].time));
        assert_eq!(back[1].error.as_deref(), Some("timeout"));
        assert_eq!(back[2].process, 1);

        // The crate's parser reads the same file (extra fields ignored).
        let text = std::fs::read_to_string(&path).unwrap();
        let h = crate::Format::Jsonl.parse(&text).unwrap();
        assert_eq!(h.events.len(), 4);
        let ops = h.operations().unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[1].outcome, crate::Outcome::Ok(Value::Int(2)));
    }

    #[test]
    fn a_refused_check_is_definite_and_a_timeout_is_not() {
        assert_eq!(
            classify_status(&Status::failed_precondition("expected revision 3")),
            Outcome::Rejected
        );
        assert_eq!(
            classify_status(&Status::deadline_exceeded("slow")),
            Outcome::Unknown
        );
        assert_eq!(
            classify_status(&Status::unavailable("no leader")),
            Outcome::Unknown
        );
        let gave_up = bifrost_client::Error::GaveUp {
            status: Box::new(Status::failed_precondition("x")),
            attempts: 2,
            elapsed: Duration::from_secs(1),
            last_endpoint: "a:1".into(),
        };
        assert_eq!(classify_client_error(&gave_up), Outcome::Unknown);
    }

    #[test]
    fn raw_stubs_name_a_bad_endpoint_or_tls_file() {
        let plain = raw_stub("https://n1:7001", &Security::Plain, Duration::from_secs(1));
        let e = plain.unwrap_err().to_string();
        assert!(e.contains("https://n1:7001") && e.contains("--ca"), "{e}");
        let tls = Security::tls("/nonexistent/ca.pem", None);
        let e = raw_stub("n1:7001", &tls, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("n1:7001") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
