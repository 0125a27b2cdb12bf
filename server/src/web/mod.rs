//! The web UI: the embedded pages ([`assets`]) and the JSON routes under
//! `/api/` that they call, served on the node's HTTP port beside
//! `/metrics` and `/ws` (see `docs/web-ui.md`, the contract between the
//! pages and these routes).
//!
//! The routes are a thin skin over the gRPC service: each one resolves the
//! caller from the session cookie ([`session`]), and, wherever a gRPC call
//! does the job, calls the same [`Api`] handler with the same checks,
//! audit records and limits; only what gRPC has no call for (a folder of
//! the tag tree, a node's load) is answered here, with the caller's
//! visibility applied. Answers are JSON built in [`json`], the one
//! conversion module of this boundary (the WebSocket's messages too).
//!
//! Nothing here knows RocksDB or Raft internals beyond what [`Api`] and
//! the state store's read methods offer.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tonic::{Code, Status};

use crate::api::Api;

mod assets;
pub mod json;
mod plant;
mod routes;
pub mod session;
mod tags;

pub use session::RemoteAddr;

/// What the web routes reach.
#[derive(Clone)]
pub struct WebState {
    pub api: Arc<Api>,
    /// The HTTP port speaks TLS: cookies are `Secure`.
    pub tls: bool,
    /// The CSRF value of an `--insecure` node (which has no sessions):
    /// random per process.
    insecure_csrf: Arc<str>,
}

impl WebState {
    pub fn new(api: Arc<Api>, tls: bool) -> WebState {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        let insecure_csrf = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        WebState {
            api,
            tls,
            insecure_csrf: insecure_csrf.into(),
        }
    }
}

/// The pages and the JSON routes.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/ui/", get(assets::index))
        .route("/ui/{*path}", get(assets::file))
        .route("/api/session", get(routes::session))
        .route("/api/login", post(routes::login))
        .route("/api/logout", post(routes::logout))
        .route("/api/tree", get(routes::tree))
        .route("/api/search", get(routes::search))
        .route("/api/current", post(routes::current))
        .route("/api/query", post(routes::query))
        .route("/api/write", post(routes::write))
        .route("/api/devices", get(routes::devices))
        .route("/api/devices/enable", post(routes::enable_device))
        .route("/api/cluster", get(routes::cluster))
        .route("/api/audit", get(routes::audit))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> WebError {
    WebError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}", uri.path()),
    )
}

/// A failed route: its HTTP status and the JSON body
/// `{"error": {"code", "message", "line"?, "column"?}}`.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Where in a query's text (1-based), for query errors that know.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl WebError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> WebError {
        WebError {
            status,
            code,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

impl From<Status> for WebError {
    fn from(s: Status) -> WebError {
        let (status, code) = http_of(s.code());
        let number = |key: &str| {
            s.metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        };
        WebError {
            status,
            code,
            message: s.message().to_string(),
            line: number("bifrost-line"),
            column: number("bifrost-column"),
        }
    }
}

/// The HTTP status and the snake-case name of a gRPC code.
fn http_of(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::Ok => (StatusCode::OK, "ok"),
        Code::Cancelled => (StatusCode::BAD_REQUEST, "cancelled"),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "unknown"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted"),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "failed_precondition"),
        Code::Aborted => (StatusCode::CONFLICT, "aborted"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "out_of_range"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "unimplemented"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "data_loss"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(l) = self.line {
            error["line"] = l.into();
        }
        if let Some(c) = self.column {
            error["column"] = c.into();
        }
        let mut resp = (self.status, Json(serde_json::json!({ "error": error }))).into_response();
        assets::security_headers(resp.headers_mut());
        resp
    }
}

/// A route's JSON answer, with the security headers.
pub struct JsonAnswer(pub serde_json::Value);

impl IntoResponse for JsonAnswer {
    fn into_response(self) -> Response {
        let mut resp = Json(self.0).into_response();
        assets::security_headers(resp.headers_mut());
        resp.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            "no-store".parse().unwrap(),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_error_keeps_its_line_and_column() {
        let mut s = Status::invalid_argument("unknown column 'valu' at line 2, column 8");
        s.metadata_mut()
            .insert("bifrost-line", "2".parse().unwrap());
        s.metadata_mut()
            .insert("bifrost-column", "8".parse().unwrap());
        let e = WebError::from(s);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "invalid_argument");
        assert_eq!((e.line, e.column), (Some(2), Some(8)));
        let e = WebError::from(Status::unauthenticated("no session"));
        assert_eq!(
            (e.status, e.code, e.line),
            (StatusCode::UNAUTHORIZED, "unauthenticated", None)
        );
    }
}
