//! The crate's one error type.
//!
//! gRPC failures keep the `tonic::Status` whole, so a caller can match on the
//! code, and the message shows the code by name next to the server's text
//! (`AlreadyExists: device "press1" already exists`): that pair is what an
//! operator needs to tell "my request was wrong" from "the cluster is sick".

use std::error::Error as _;
use std::time::Duration;

use tonic::{Code, Status};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server (or the transport) answered with a gRPC error that is not
    /// worth retrying, or retrying was not allowed.
    #[error("{}", describe_status(.0))]
    Rpc(Box<Status>),

    /// Every attempt failed with a retryable error until the deadline passed.
    /// `status` is the last failure.
    #[error(
        "{} (gave up after {attempts} attempts in {:.1}s; last tried {last_endpoint})",
        describe_status(.status),
        .elapsed.as_secs_f64()
    )]
    GaveUp {
        status: Box<Status>,
        attempts: u32,
        elapsed: Duration,
        last_endpoint: String,
    },

    /// A call that is not safe to repeat (a device write) failed after the
    /// request was sent to `endpoint`, so it was not retried: the node may
    /// or may not have carried it out. `status` is the failure.
    #[error(
        "{} (sent to {endpoint}; not retried, because the write may have reached the device: \
         read the tag before writing again)",
        describe_status(.status)
    )]
    Unconfirmed {
        status: Box<Status>,
        endpoint: String,
    },

    /// `Client::connect` was given no endpoints.
    #[error("no endpoints given")]
    NoEndpoints,

    /// An endpoint that is not `HOST:PORT` (or a URL of the client's
    /// scheme: `http://HOST:PORT` plain, `https://HOST:PORT` with TLS).
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    /// The TLS files of `ClientOptions::security` could not be read or used
    /// for the node at `endpoint`; `reason` names the file when one is at
    /// fault.
    #[error("TLS for {endpoint}: {reason}")]
    Tls { endpoint: String, reason: String },

    /// Text that should have been an RFC 3339 timestamp, or a time outside the
    /// range the API can carry.
    #[error("invalid timestamp {input:?}: {reason}")]
    InvalidTimestamp { input: String, reason: String },

    /// A malformed line of JSON-lines input; `line` counts from 1.
    #[error("line {line}: {reason}")]
    InvalidLine { line: usize, reason: String },

    /// A malformed config document (import): `path` locates the bad part,
    /// e.g. `tags[3].data_type`; `reason` says what is wrong with it (with
    /// line and column when the JSON itself is at fault).
    #[error("{path}: {reason}")]
    InvalidDocument { path: String, reason: String },

    /// Reading JSON-lines input failed.
    #[error("read input: {0}")]
    Io(#[from] std::io::Error),

    /// The replica check could not compare: a node did not answer (named).
    /// Not a `source`: the message already holds the whole story.
    #[error("replica check: {0}")]
    Replica(bifrost_proto::replica::CheckError),

    /// The server answered OK but without something the API promises (for
    /// example a `PutDevice` reply without the device).
    #[error("unexpected response: {0}")]
    Protocol(String),
}

impl Error {
    /// The gRPC code, for errors that came from a call.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }

    /// The gRPC status, for errors that came from a call.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Rpc(s) => Some(s),
            Error::GaveUp { status, .. } | Error::Unconfirmed { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Whether a failed call may succeed if sent again, possibly to another
    /// node. See [`is_retryable_status`].
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Rpc(s) => is_retryable_status(s),
            _ => false,
        }
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Error::Rpc(Box::new(s))
    }
}

/// Whether a failed call may succeed if sent again, possibly to another node.
///
/// Retryable: the node is down or unreachable (`Unavailable`, which is also
/// what a node without a leader answers), it or the client gave up waiting
/// (`DeadlineExceeded`, and `Cancelled`, which is what tonic reports when the
/// client-side timeout fires), and transport failures that tonic could not
/// classify (connection reset mid-call shows up as `Unknown` or `Internal`
/// with a local error as its source; a server-sent status has no source).
///
/// Also retryable: a node over its load that did nothing and said when to
/// come back (`ResourceExhausted` with [`retry_after`]).
///
/// Not retryable: everything that is the request's own fault or a decision
/// of the cluster, such as `InvalidArgument`, `AlreadyExists`, `NotFound`,
/// `FailedPrecondition`, `ResourceExhausted` without a retry hint (a batch
/// too big, too many subscriptions), `PermissionDenied`, `Unauthenticated`
/// (another node would refuse the same credential).
pub fn is_retryable_status(s: &Status) -> bool {
    if retry_after(s).is_some() {
        return true;
    }
    if looks_like_tls(s) {
        return false;
    }
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => true,
        Code::Unknown | Code::Internal => s.source().is_some(),
        _ => false,
    }
}

/// How long an overloaded node asked the client to wait before sending the
/// same request again (`ResourceExhausted` with `retry-after-ms`). The node
/// did nothing with the request, so even a write may be sent again.
pub fn retry_after(s: &Status) -> Option<Duration> {
    if s.code() != Code::ResourceExhausted {
        return None;
    }
    let ms = s
        .metadata()
        .get("retry-after-ms")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

/// The local errors behind a status (its source, the source's source, and
/// so on): a transport failure's real cause.
pub fn causes<'a>(s: &'a Status) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(s.source(), |&e| e.source())
}

/// Whether a failed call never reached the node: tonic could not establish
/// the connection (refused, unreachable, connect timeout), so no byte of the
/// request was sent.
pub fn never_connected(s: &Status) -> bool {
    causes(s).any(|e| e.is::<tonic::ConnectError>())
}

/// Whether a plain-text call reached a TLS port: the server's TLS alert,
/// read as HTTP/2, is a frame of an impossible size. Sending again never
/// helps; the client needs the cluster's CA.
pub fn looks_like_tls(s: &Status) -> bool {
    const SIGN: &str = "frame with invalid size";
    s.message().contains(SIGN) || causes(s).any(|e| e.to_string().contains(SIGN))
}

/// What to do about an `Unauthenticated` refusal; ends its message.
pub const LOGIN_HINT: &str =
    "log in with `bifrostctl login` (or give --cert/--key of a user certificate)";

/// `Code: message`, plus the local error chain for transport failures, whose
/// message alone is often just "transport error". An `Unauthenticated`
/// refusal ends with [`LOGIN_HINT`]; `PermissionDenied` shows the server's
/// message (the permission and tag missing) as it is.
pub fn describe_status(s: &Status) -> String {
    if looks_like_tls(s) {
        return "the node answered in TLS, but this client speaks plain text: \
                give the cluster's CA (--ca FILE or BIFROST_CA)"
            .to_string();
    }
    let mut out = format!("{:?}", s.code());
    let msg = s.message();
    if !msg.is_empty() {
        out.push_str(": ");
        out.push_str(msg);
    }
    for err in causes(s) {
        let text = err.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    if s.code() == Code::Unauthenticated {
        out.push_str("; ");
        out.push_str(LOGIN_HINT);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_error_shows_code_name_and_server_message() {
        let e = Error::from(Status::already_exists("device \"press1\" already exists"));
        assert_eq!(
            e.to_string(),
            "AlreadyExists: device \"press1\" already exists"
        );
        assert_eq!(e.code(), Some(Code::AlreadyExists));
    }

    #[test]
    fn gave_up_error_keeps_last_status_and_counts() {
        let e = Error::GaveUp {
            status: Box::new(Status::unavailable("no leader")),
            attempts: 7,
            elapsed: Duration::from_millis(30_040),
            last_endpoint: "http://10.0.0.3:7001".into(),
        };
        assert_eq!(
            e.to_string(),
            "Unavailable: no leader (gave up after 7 attempts in 30.0s; last tried http://10.0.0.3:7001)"
        );
        assert_eq!(e.code(), Some(Code::Unavailable));
    }

    #[test]
    fn request_errors_are_not_retried_and_outages_are() {
        for code in [
            Code::InvalidArgument,
            Code::AlreadyExists,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
        ] {
            assert!(!is_retryable_status(&Status::new(code, "x")), "{code:?}");
        }
        for code in [Code::Unavailable, Code::DeadlineExceeded] {
            assert!(is_retryable_status(&Status::new(code, "x")), "{code:?}");
        }
    }

    #[test]
    fn an_overloaded_node_is_retried_after_its_hint_and_other_limits_are_not() {
        let mut s = Status::resource_exhausted("node 1 is behind");
        assert_eq!(retry_after(&s), None);
        assert!(!is_retryable_status(&s));
        s.metadata_mut()
            .insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&s), Some(Duration::from_millis(250)));
        assert!(is_retryable_status(&s));
        let mut other = Status::invalid_argument("bad");
        other
            .metadata_mut()
            .insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(
            retry_after(&other),
            None,
            "only resource_exhausted carries a hint"
        );
    }

    #[test]
    fn refusals_of_credentials_are_final_and_unauthenticated_says_how_to_log_in() {
        for code in [Code::Unauthenticated, Code::PermissionDenied] {
            assert!(!is_retryable_status(&Status::new(code, "x")), "{code:?}");
            assert!(
                !Error::from(Status::new(code, "x")).is_retryable(),
                "{code:?}"
            );
        }
        let e = Error::from(Status::unauthenticated("session expired"));
        assert_eq!(
            e.to_string(),
            "Unauthenticated: session expired; log in with `bifrostctl login` \
             (or give --cert/--key of a user certificate)"
        );
        let denied = "user \"ann\" lacks permission write on tag \"line1/valve\"";
        let e = Error::from(Status::permission_denied(denied));
        assert_eq!(e.to_string(), format!("PermissionDenied: {denied}"));
    }

    #[test]
    fn unknown_is_retried_only_when_it_is_a_local_transport_failure() {
        // Sent by the server: no source.
        assert!(!is_retryable_status(&Status::unknown("handler panicked")));
        // Made by tonic from a local I/O error: has a source.
        let io = std::io::Error::other("connection reset by peer");
        let local = Status::from_error(Box::new(io));
        assert_eq!(local.code(), Code::Unknown);
        assert!(is_retryable_status(&local));
        assert!(describe_status(&local).contains("connection reset by peer"));
    }
}
