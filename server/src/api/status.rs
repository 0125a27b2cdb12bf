//! Every error of the public API as a gRPC `Status`, in one place: the code
//! each failure gets, its text, and the metadata clients act on
//! (`bifrost-leader`, `bifrost-query-error`/`-line`/`-column`,
//! `bifrost-oldest-revision`, `bifrost-resume-revision`, `retry-after-ms`).
//!
//! Handlers still write the text of a bad request they detect themselves
//! (a missing field, an unknown tag); everything that turns another crate's
//! error into a status is here. The texts and codes are part of the API:
//! clients and the end-to-end tests check them.

use bifrost_raft::{Outcome, ProposeError};
use bifrost_storage::{Rejection, RejectionKind};
use tonic::Status;

use crate::query::{ErrorKind, QueryError};
use crate::watch::WatchError;

/// A Raft-level failure; the leader's address, when known, is in the
/// `bifrost-leader` metadata as `ID=HOST:PORT` (its public address).
pub fn propose(e: ProposeError) -> Status {
    match e {
        ProposeError::NotLeader { leader } => {
            let known = match &leader {
                Some((id, member)) => format!("node {id} at {}", member.api),
                None => "not known yet".into(),
            };
            let mut s = Status::unavailable(format!("not the leader; the leader is {known}"));
            if let Some((id, member)) = leader {
                if let Ok(v) = format!("{id}={}", member.api).parse() {
                    s.metadata_mut().insert("bifrost-leader", v);
                }
            }
            s
        }
        ProposeError::Unavailable(m) => Status::unavailable(m),
        ProposeError::Membership(m) => Status::failed_precondition(m),
        ProposeError::Fatal(m) => Status::internal(m),
        ProposeError::DiskFull(m) => Status::resource_exhausted(m),
    }
}

/// The node is over its load and did nothing: `resource_exhausted`, with
/// the time to wait before sending the same request again in the
/// `retry-after-ms` metadata (clients retry such a refusal, and only such).
pub fn overloaded(message: String, retry_after: std::time::Duration) -> Status {
    let mut s = Status::resource_exhausted(format!(
        "{message}; nothing was done, retry in {} ms",
        retry_after.as_millis()
    ));
    if let Ok(v) = retry_after.as_millis().to_string().parse() {
        s.metadata_mut().insert("retry-after-ms", v);
    }
    s
}

/// A command the state machine refused.
pub fn rejection(r: Rejection) -> Status {
    match r.kind {
        RejectionKind::InvalidArgument => Status::invalid_argument(r.message),
        RejectionKind::AlreadyExists => Status::already_exists(r.message),
        RejectionKind::NotFound => Status::not_found(r.message),
        RejectionKind::FailedPrecondition => Status::failed_precondition(r.message),
    }
}

/// A record or request that breaks a model rule is an invalid argument.
pub fn invalid(e: bifrost_model::Invalid) -> Status {
    Status::invalid_argument(e.message)
}

/// A device or tag whose settings its protocol cannot use (the message of
/// `devices::validate_*` and `devices::tags_from_browse`).
pub fn device_config(message: String) -> Status {
    Status::invalid_argument(message)
}

/// A failed read of this node's storage (RocksDB or the query engine's
/// view of it).
pub fn storage(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// A write answered with an outcome of another command: a bug, not a
/// client error.
pub fn unexpected(outcome: Outcome) -> Status {
    Status::internal(format!("unexpected outcome {outcome:?}"))
}

/// A request naming a tag that does not exist.
pub fn unknown_tag(name: &str) -> Status {
    Status::not_found(format!("unknown tag '{name}'"))
}

/// A device browse that failed. The device is unreachable, not this node:
/// not worth a retry.
pub fn browse_failed(message: String) -> Status {
    Status::failed_precondition(message)
}

/// A device write that could not be forwarded to the node polling the device.
pub fn owner_unreachable(owner: u64, message: String) -> Status {
    Status::unavailable(format!("owner node {owner}: {message}"))
}

/// A query error; the kind, line and column are also in metadata
/// (`bifrost-query-error`, `bifrost-line`, `bifrost-column`).
pub fn query(e: &QueryError) -> Status {
    let msg = e.to_string();
    let mut s = match e.kind {
        ErrorKind::Syntax
        | ErrorKind::UnknownTable
        | ErrorKind::UnknownColumn
        | ErrorKind::Type
        | ErrorKind::Unsupported => Status::invalid_argument(msg),
        ErrorKind::Limit => Status::resource_exhausted(msg),
        ErrorKind::Timeout => Status::deadline_exceeded(msg),
        ErrorKind::Storage => Status::internal(msg),
    };
    let md = s.metadata_mut();
    if let Ok(v) = query_error_code(e.kind).parse() {
        md.insert("bifrost-query-error", v);
    }
    if let Some(l) = e.line.and_then(|l| l.to_string().parse().ok()) {
        md.insert("bifrost-line", l);
    }
    if let Some(c) = e.column.and_then(|c| c.to_string().parse().ok()) {
        md.insert("bifrost-column", c);
    }
    s
}

/// A query error kind as a stable code (metrics label, error metadata).
pub fn query_error_code(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Syntax => "syntax",
        ErrorKind::UnknownTable => "unknown_table",
        ErrorKind::UnknownColumn => "unknown_column",
        ErrorKind::Type => "type",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Limit => "limit",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Storage => "storage",
    }
}

/// A subscription error. The revision to resume from is also in metadata
/// (`bifrost-oldest-revision`, `bifrost-resume-revision`).
pub fn watch(e: WatchError) -> Status {
    let msg = e.to_string();
    let (mut s, key, rev) = match e {
        WatchError::Compacted { oldest, .. } => (
            Status::out_of_range(format!("compacted: {msg}")),
            "bifrost-oldest-revision",
            Some(oldest),
        ),
        WatchError::Overflow { resume_from, .. } => (
            Status::resource_exhausted(format!("overflow: {msg}")),
            "bifrost-resume-revision",
            Some(resume_from),
        ),
        WatchError::TooMany { .. } => (Status::resource_exhausted(msg), "", None),
        WatchError::Invalid(_) => (Status::invalid_argument(msg), "", None),
        WatchError::Denied(_) => (Status::permission_denied(msg), "", None),
        WatchError::Unauthenticated(_) => (Status::unauthenticated(msg), "", None),
        WatchError::Storage(_) => (Status::internal(msg), "", None),
    };
    if let Some(rev) = rev {
        if let Ok(v) = rev.to_string().parse() {
            s.metadata_mut().insert(key, v);
        }
    }
    s
}
