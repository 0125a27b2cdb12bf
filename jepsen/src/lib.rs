//! Bifrost's fault-injection test harness: it will run a cluster in Docker,
//! break it (kill nodes, partition the network, pause processes, skew
//! clocks), record what clients saw, and check the record against what the
//! cluster promises. This first part is the checker for the first promise
//! ("config is linearizable"): a history of operations goes in, a verdict
//! comes out.
//!
//! The harness tests the cluster from the *outside*, the way a plant-floor
//! program sees it: through the public client API and Docker. So this crate
//! must not depend on `bifrost-storage`, `bifrost-raft` or `bifrost-server`,
//! nor on RocksDB or any other internals: a checker that shares code with
//! the thing it checks can share its bugs too. (It may later depend on
//! `bifrost-client`, the public client library.)
//!
//! - [`history`]: operations as recorded (invoke, then ok, fail or info), and
//!   how invocations pair with their completions.
//! - [`format`](mod@format): readers for our own JSON-lines format and for
//!   two formats of published Jepsen histories, used to validate the checker.
//! - [`model`]: sequential specifications (a register with read, write and
//!   compare-and-set; a key-value map with get, put and append).
//! - [`checker`]: the linearizability search (Wing & Gong, with Lowe's
//!   just-in-time linearization and memoisation, as in porcupine), run per key.
//! - [`workload`]: the history recorder and the workloads that drive a
//!   cluster through `bifrost-client` (register, ingest set, watch, polled
//!   counters).
//! - [`mod@check`]: a checker per workload, each with a JSON verdict, and the
//!   results folder of a run; [`plot`]: its latency and throughput plots.
//! - [`docker`] and [`nemesis`]: the cluster in Docker (TLS on, with a CA
//!   of its own per project) and the faults; [`target`]: the nodes'
//!   endpoints and the security every client of the harness connects with.
//! - [`mod@run`]: `bifrost-jepsen run`, all of the above in one run: plan,
//!   set up, run under faults, heal, check, write the results folder.

pub mod check;
pub mod checker;
pub mod docker;
pub mod format;
pub mod history;
pub mod model;
pub mod nemesis;
pub mod plot;
pub mod run;
pub mod target;
pub mod workload;

pub use checker::{check, check_history, CheckOptions, Failure, GaveUp, Limit, Report, Verdict};
pub use format::Format;
pub use history::{Event, EventType, Function, History, Operation, Outcome, Value};
pub use model::{KvMap, Model, ModelKind, Register};
pub use target::Target;

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong before the search starts. The search itself
/// cannot fail: it answers [`Verdict::Unknown`] when it runs out of time or
/// memory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not a well-formed history: a line does not parse, or an
    /// operation completes without having been invoked, and so on. `line` is
    /// 1-based.
    #[error("line {line}: {message}")]
    Input { line: usize, message: String },

    /// The history uses an operation the chosen model does not have.
    #[error("line {line}: model {model} has no {function} operation")]
    UnsupportedOperation {
        line: usize,
        model: &'static str,
        function: Function,
    },
}

impl Error {
    pub(crate) fn input(line: usize, message: impl Into<String>) -> Self {
        Error::Input {
            line,
            message: message.into(),
        }
    }

    /// The 1-based input line the error is about.
    pub fn line(&self) -> usize {
        match self {
            Error::Input { line, .. } | Error::UnsupportedOperation { line, .. } => *line,
        }
    }

    /// What is wrong, without the line (for `FILE:LINE: what` messages).
    pub fn detail(&self) -> String {
        match self {
            Error::Input { message, .. } => message.clone(),
            Error::UnsupportedOperation {
                model, function, ..
            } => format!("model {model} has no {function} operation"),
        }
    }
}
