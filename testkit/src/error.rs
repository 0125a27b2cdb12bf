//! The kit's one error type. Its `Debug` is its `Display`, so that a test's
//! `.unwrap()` prints a readable sentence.

use std::path::PathBuf;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(thiserror::Error)]
pub enum Error {
    #[error("testkit: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("testkit: {label} exited ({status}); last lines of {}:\n{tail}", log.display())]
    Exited {
        label: String,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("testkit: timed out after {timeout:?} waiting for {what}{}", last.as_deref().map(|l| format!("; last seen: {l}")).unwrap_or_default())]
    Timeout {
        what: String,
        timeout: Duration,
        last: Option<String>,
    },
    #[error("testkit: GET http://{addr}{path}: {reason}")]
    Http {
        addr: String,
        path: String,
        reason: String,
    },
    #[error("testkit: {0}")]
    Setup(String),
    /// The replica check could not compare (a node did not answer, named).
    #[error("testkit: replica check: {0}")]
    ReplicaCheck(String),
    /// The nodes hold different histories: the report names the first
    /// differing range, with each node's count and digest.
    #[error("testkit: {}", .0.text())]
    ReplicasDiffer(Box<bifrost_proto::replica::Report>),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// An [`Error::Io`] naming what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
