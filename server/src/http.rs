//! HTTP side of a node: `/healthz` (the process answers), `/readyz` (it has a
//! leader and has applied everything committed before the probe: a
//! linearizable read barrier succeeds within a second), `/metrics`, and
//! `/ws`, subscriptions over WebSocket (JSON messages; the protocol is in
//! the README, "Subscriptions"). A WebSocket client's messages are bounded
//! ([`WS_MAX_MESSAGE`]: it sends one small subscribe request), and one that
//! does not read what it is sent within `--watch-send-timeout-ms` is
//! disconnected rather than held open; one that does not send a whole
//! request head within `--http-header-timeout-ms` is disconnected too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bifrost_raft::{Consistency, RaftNode};

use bifrost_model::Permission;
use tonic::Status;
use tracing::Instrument;

use crate::auth::{bearer_value, Auth, Caller, WS_TOKEN_PROTOCOL};
use crate::metrics::Metrics;
use crate::watch::{progress_interval, Credential, Event, Hub, WatchError, WatchRequest};

/// Largest WebSocket message or frame a client may send.
pub const WS_MAX_MESSAGE: usize = 64 * 1024;

/// What the HTTP handlers reach.
#[derive(Clone)]
pub struct HttpState {
    pub node: Arc<RaftNode>,
    pub metrics: Arc<Metrics>,
    pub hub: Arc<Hub>,
    pub auth: Arc<Auth>,
    /// The web UI's routes (see [`crate::web`]).
    pub web: crate::web::WebState,
}

#[derive(Clone)]
struct AppState {
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
    auth: Arc<Auth>,
    /// An `--insecure` node says so in every `/readyz` answer.
    insecure: bool,
    /// The port speaks TLS (the scheme a browser's `Origin` must have).
    tls: bool,
}

/// What `/readyz` adds for an `--insecure` node.
pub const INSECURE_WARNING: &str = "INSECURE: this node runs with --insecure: every port is plain \
     text and peers are not authenticated; do not use it in production\n";

/// Serves the HTTP port until `shutdown`; over TLS when `tls` is given,
/// else plain text (an `--insecure` node).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<bifrost_tls::ServerTls>>,
    state: HttpState,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let insecure = tls.is_none();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/ws", get(ws_handler))
        .with_state(AppState {
            node: state.node,
            metrics: state.metrics,
            hub: state.hub,
            auth: state.auth,
            insecure,
            tls: !insecure,
        })
        .merge(crate::web::router(state.web));
    if let Some(tls) = tls {
        // Nagle is turned off by the TLS accept loop.
        let listener = crate::transport::TlsListener::new(listener, &tls)?;
        serve_connections(listener, app, header_timeout, shutdown).await;
        return Ok(());
    }
    use axum::serve::ListenerExt;
    // Nagle off: subscription messages are small and latency-sensitive.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    serve_connections(listener, app, header_timeout, shutdown).await;
    Ok(())
}

/// How long open connections may take to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on each connection `listener` accepts, HTTP/1.1 with
/// upgrades (WebSocket), until `shutdown`; then lets open connections
/// finish for a while. A client that has not sent a whole request head
/// within `header_timeout` is disconnected, so slow or stalled clients
/// cannot hold connections open.
async fn serve_connections<L>(
    mut listener: L,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    L::Io: Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = builder.http1_only();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Each request knows its connection's address (audit records).
        let app = app.clone();
        let service = TowerToHyperService::new(tower::util::MapRequest::new(
            app,
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(crate::web::RemoteAddr(remote));
                req
            },
        ));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
            }
            .in_current_span(),
        );
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::info!("HTTP connections still open after the shutdown grace; closing");
        }
    }
}

/// Whether the node is caught up with the leader (a linearizable read
/// barrier within a second), or why not: what `/readyz` and the systemd
/// status say.
pub async fn readiness(node: &RaftNode) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(1),
        node.read_barrier(Consistency::Linearizable),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("not caught up within 1s".to_string()),
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (code, mut body) = match readiness(&s.node).await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    };
    if s.insecure {
        body.push_str(INSECURE_WARNING);
    }
    (code, body)
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(&s.node),
    )
}

/// The first message a WebSocket client sends.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    from_revision: Option<u64>,
    #[serde(default)]
    progress_ms: Option<u64>,
}

/// Authenticates the handshake (a session token in `Authorization: Bearer
/// TOKEN`, or, from a browser, in the subprotocol `bifrost.token.TOKEN`),
/// then upgrades. A refused handshake gets 401 or 403 with the reason.
async fn ws_handler(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> axum::response::Response {
    let (token, protocol) = match ws_token(&headers, s.tls) {
        Ok(found) => found,
        Err(e) => return refused_handshake(&e),
    };
    let caller = match s.auth.resolve(token.as_deref(), None).await {
        Ok(c) => c,
        Err(e) => return refused_handshake(&e),
    };
    if let Err(e) = caller.check(Permission::Read, None) {
        return refused_handshake(&e);
    }
    let ws = match protocol {
        Some(p) => ws.protocols([p]),
        None => ws,
    };
    ws.max_message_size(WS_MAX_MESSAGE)
        .max_frame_size(WS_MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let credential = s.auth.credential(&caller);
            ws_session(socket, s.hub, caller, credential)
        })
}

/// The token of a WebSocket handshake, and the subprotocol that carried
/// it (to be echoed), if it came that way; else the web UI's session
/// cookie, from a page of this node only (its `Origin`, see
/// [`crate::web::session`]).
fn ws_token(
    headers: &axum::http::HeaderMap,
    tls: bool,
) -> Result<(Option<String>, Option<String>), Status> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| Status::unauthenticated("the Authorization header is not ASCII"))?;
        return Ok((Some(bearer_value(v)?.to_string()), None));
    }
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| p.starts_with(WS_TOKEN_PROTOCOL));
    if let Some(p) = offered {
        let token = p[WS_TOKEN_PROTOCOL.len()..].to_string();
        return Ok((Some(token), Some(p.to_string())));
    }
    let Some(token) = crate::web::session::cookie_token(headers) else {
        return Ok((None, None));
    };
    crate::web::session::check_origin(headers, tls)
        .map_err(|e| Status::permission_denied(e.message))?;
    Ok((Some(token), None))
}

fn refused_handshake(e: &Status) -> axum::response::Response {
    let code = match e.code() {
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    (code, format!("{}\n", e.message())).into_response()
}

fn ws_error(e: &WatchError) -> serde_json::Value {
    let code = match e {
        WatchError::Compacted { .. } => "compacted",
        WatchError::Overflow { .. } => "overflow",
        WatchError::TooMany { .. } => "too_many_subscriptions",
        WatchError::Invalid(_) => "bad_request",
        WatchError::Denied(_) => "permission_denied",
        WatchError::Unauthenticated(_) => "unauthenticated",
        WatchError::Storage(_) => "internal",
    };
    let mut v = serde_json::json!({"type": "error", "code": code, "message": e.to_string()});
    match e {
        WatchError::Compacted { oldest, .. } => v["oldest_revision"] = (*oldest).into(),
        WatchError::Overflow { resume_from, .. } => {
            v["resume_from_revision"] = (*resume_from).into()
        }
        _ => {}
    }
    v
}

fn event_json(ev: &Event) -> serde_json::Value {
    match ev {
        Event::Started {
            revision,
            oldest_revision,
            node_id,
        } => serde_json::json!({
            "type": "started",
            "revision": revision,
            "oldest_revision": oldest_revision,
            "node_id": node_id,
        }),
        Event::Readings {
            readings,
            revision,
            applied_us,
        } => serde_json::json!({
            "type": "readings",
            "revision": revision,
            "applied_us": applied_us,
            "readings": readings.iter().map(crate::web::json::reading).collect::<Vec<_>>(),
        }),
        Event::Progress { revision } => serde_json::json!({
            "type": "progress",
            "revision": revision,
        }),
    }
}

/// Closes a connection whose client broke the protocol or a limit (a
/// message over [`WS_MAX_MESSAGE`]), saying why in the close frame
/// (policy violation, 1008).
async fn refuse(socket: &mut axum::extract::ws::WebSocket, e: &axum::Error) {
    use axum::extract::ws::{CloseFrame, Message};
    let mut reason = format!("refused: {e}");
    // A close frame's reason holds at most 123 bytes.
    while reason.len() > 123 {
        reason.pop();
    }
    tracing::warn!(error = %e, "WebSocket client refused");
    let frame = CloseFrame {
        code: axum::extract::ws::close_code::POLICY,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn ws_session(
    mut socket: axum::extract::ws::WebSocket,
    hub: Arc<Hub>,
    caller: Caller,
    credential: Option<Credential>,
) {
    use axum::extract::ws::{CloseFrame, Message};
    async fn fail(socket: &mut axum::extract::ws::WebSocket, e: &WatchError) {
        let _ = socket
            .send(Message::Text(ws_error(e).to_string().into()))
            .await;
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code: axum::extract::ws::close_code::POLICY,
                reason: "subscription ended".into(),
            })))
            .await;
    }
    // The first text message must be a subscribe request.
    let first = tokio::time::timeout(Duration::from_secs(30), socket.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return,
        Ok(Some(Err(e))) => return refuse(&mut socket, &e).await,
        Ok(Some(Ok(_))) => {
            let e = WatchError::Invalid(
                "the first message must be a JSON text message {\"type\":\"subscribe\",...}".into(),
            );
            return fail(&mut socket, &e).await;
        }
        Err(_) => {
            let e = WatchError::Invalid("no subscribe message within 30 s".into());
            return fail(&mut socket, &e).await;
        }
    };
    let req = match serde_json::from_str::<Subscribe>(&text) {
        Ok(r) if r.kind == "subscribe" => r,
        Ok(r) => {
            let e = WatchError::Invalid(format!(
                "unknown message type '{}' (expected 'subscribe')",
                r.kind
            ));
            return fail(&mut socket, &e).await;
        }
        Err(e) => {
            let e = WatchError::Invalid(format!("subscribe message: {e}"));
            return fail(&mut socket, &e).await;
        }
    };
    if let Some(tag) = req.tags.iter().find(|t| !caller.visible(t)) {
        let denied = caller.check(Permission::Read, Some(tag)).err();
        let e = WatchError::Denied(denied.map(|s| s.message().to_string()).unwrap_or_default());
        return fail(&mut socket, &e).await;
    }
    let mut sub = match hub.subscribe(WatchRequest {
        tags: req.tags,
        patterns: req.patterns,
        from_revision: req.from_revision,
        progress: req.progress_ms.and_then(progress_interval),
        access: caller.restriction().cloned(),
        credential,
    }) {
        Ok(s) => s,
        Err(e) => return fail(&mut socket, &e).await,
    };
    let send_timeout = hub.options().ws_send_timeout;
    loop {
        tokio::select! {
            ev = sub.next() => match ev {
                Some(Ok(ev)) => {
                    let msg = Message::Text(event_json(&ev).to_string().into());
                    match tokio::time::timeout(send_timeout, socket.send(msg)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            hub.count_slow_disconnect();
                            tracing::warn!(
                                ?send_timeout,
                                "WebSocket subscriber not reading: disconnected"
                            );
                            return;
                        }
                    }
                }
                Some(Err(e)) => return fail(&mut socket, &e).await,
                None => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None => return,
                Some(Err(e)) => return refuse(&mut socket, &e).await,
                // Pings are answered by the library; other messages are ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}
