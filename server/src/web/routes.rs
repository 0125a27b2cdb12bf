//! The web routes that are gRPC calls in JSON: the session (login,
//! logout, who is calling), SQL queries, device writes and the audit
//! view. Each goes through the same [`Api`](crate::api::Api) handler as
//! the gRPC call, so the checks, limits and audit records are the same.
//! The tag tree and current values are in [`super::tags`], devices and
//! the cluster in [`super::plant`].

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use bifrost_model::{Permission, Role};
use bifrost_proto::v1 as pb;
use bifrost_proto::v1::bifrost_server::Bifrost;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::session::{self, Ctx, RemoteAddr};
use super::{json as to_json, JsonAnswer, WebError, WebState};
use crate::auth::Caller;

pub use super::plant::{cluster, devices, enable_device};
pub use super::tags::{current, search, tree};

/// A JSON request body; a body that is not the JSON the route expects is
/// a 400 saying what is wrong and where (serde's message, with line and
/// column).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Body<T>, WebError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(WebError::bad_request(format!(
                "request body: {}",
                e.body_text()
            ))),
        }
    }
}

/// `GET /api/session`.
pub async fn session(State(s): State<WebState>, ctx: Ctx) -> Result<JsonAnswer, WebError> {
    let caller = ctx.caller(&s).await?;
    Ok(JsonAnswer(session_json(&s, &caller, ctx.token.as_deref())))
}

/// The session as the pages see it (see docs/web-ui.md).
fn session_json(s: &WebState, caller: &Caller, token: Option<&str>) -> Json {
    let mut roles: Vec<Role> = caller.access.grants().iter().map(|g| g.role()).collect();
    roles.sort();
    roles.dedup();
    let expires_us = caller
        .token_hash
        .and_then(|h| s.api.node.state().session(&h))
        .map(|session| session.expires_us);
    json!({
        "user": caller.user.as_ref().map(|u| u.name.clone()),
        "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "insecure": !s.api.auth.options().enforce,
        "csrf": session::csrf_value(s, token),
        "expires_us": expires_us,
        "now_us": bifrost_model::now_us(),
        "node_id": s.api.node.id(),
        "can": {
            "write": roles.iter().any(|r| *r >= Permission::WriteDevice.least_role()),
            "configure": caller.check(Permission::Configure, None).is_ok(),
            "administer": caller.check(Permission::Administer, None).is_ok(),
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    user: String,
    password: String,
}

/// `POST /api/login`: the gRPC `Login`, and the session cookie.
pub async fn login(
    State(s): State<WebState>,
    headers: HeaderMap,
    remote: Option<axum::Extension<RemoteAddr>>,
    Body(body): Body<LoginBody>,
) -> Result<Response, WebError> {
    session::check_origin(&headers, s.tls)?;
    let anonymous = Ctx::anonymous(remote.map(|r| r.0 .0));
    let answer = s
        .api
        .login(anonymous.request(pb::LoginRequest {
            user: body.user,
            password: body.password,
        }))
        .await?
        .into_inner();
    let caller = s.api.auth.resolve(Some(&answer.token), None).await?;
    let ttl_s = (answer.expires_us - bifrost_model::now_us()) / 1_000_000;
    let body = session_json(&s, &caller, Some(&answer.token));
    let mut resp = JsonAnswer(body).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(&answer.token, ttl_s, s.tls),
    );
    Ok(resp)
}

/// `POST /api/logout`: ends the session (everywhere: it is replicated)
/// and clears the cookie.
pub async fn logout(State(s): State<WebState>, ctx: Ctx) -> Result<Response, WebError> {
    if s.api.auth.options().enforce {
        s.api.logout(ctx.request(pb::LogoutRequest {})).await?;
    }
    let mut resp = JsonAnswer(json!({})).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie(s.tls));
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    sql: String,
}

/// `POST /api/query`: the gRPC `Query`, collected into one answer.
pub async fn query(
    State(s): State<WebState>,
    ctx: Ctx,
    Body(body): Body<QueryBody>,
) -> Result<JsonAnswer, WebError> {
    Ok(JsonAnswer(run_query(&s, &ctx, body.sql).await?))
}

/// Runs `sql` as the caller: `{"columns", "rows", "stats"}`.
async fn run_query(s: &WebState, ctx: &Ctx, sql: String) -> Result<Json, WebError> {
    let req = ctx.request(pb::QueryRequest {
        sql,
        consistency: 0,
    });
    let mut stream = s.api.query(req).await?.into_inner();
    let (mut columns, mut rows, mut stats) = (vec![], vec![], Json::Null);
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        columns.extend(msg.columns.iter().map(to_json::column));
        rows.extend(
            msg.rows
                .iter()
                .map(|r| Json::Array(r.cells.iter().map(to_json::cell).collect())),
        );
        if let Some(st) = msg.stats {
            stats = json!({"rows": st.rows, "scanned": st.scanned, "elapsed_us": st.elapsed_us});
        }
    }
    Ok(json!({"columns": columns, "rows": rows, "stats": stats}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBody {
    tag: String,
    value: Json,
}

/// `POST /api/write`: the gRPC `WriteTag` (on the node polling the tag's
/// device, forwarded there if need be); a device's refusal or silence is
/// an answer (`outcome`), not an error.
pub async fn write(
    State(s): State<WebState>,
    ctx: Ctx,
    Body(body): Body<WriteBody>,
) -> Result<JsonAnswer, WebError> {
    let value = to_json::value_from(&body.value)
        .map_err(|e| WebError::bad_request(format!("value for '{}': {e}", body.tag)))?;
    let answer = s
        .api
        .write_tag(ctx.request(pb::WriteTagRequest {
            tag: body.tag,
            value: Some(value),
        }))
        .await?
        .into_inner();
    let read_back = bifrost_proto::convert::value_from_pb(answer.read_back);
    Ok(JsonAnswer(json!({
        "outcome": answer.outcome,
        "message": answer.message,
        "read_back": read_back.as_ref().map_or(Json::Null, to_json::value),
        "node": answer.node,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
}

/// `GET /api/audit?limit=N`: the newest audit records (admins only).
pub async fn audit(
    State(s): State<WebState>,
    ctx: Ctx,
    Query(q): Query<AuditQuery>,
) -> Result<JsonAnswer, WebError> {
    ctx.caller(&s).await?.check(Permission::Administer, None)?;
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    let sql = format!(
        "SELECT ts, username, source, action, target, detail, outcome FROM audit \
         ORDER BY ts DESC, revision DESC LIMIT {limit}"
    );
    let result = run_query(&s, &ctx, sql).await?;
    let keys = [
        "ts", "user", "source", "action", "target", "detail", "outcome",
    ];
    let records: Vec<Json> = result["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let cells = row.as_array().cloned().unwrap_or_default();
            Json::Object(keys.iter().map(|k| k.to_string()).zip(cells).collect())
        })
        .collect();
    Ok(JsonAnswer(json!({ "records": records })))
}
