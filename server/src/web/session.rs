//! Who calls a web route, and the browser's protections: the session
//! cookie (`bifrost_session`, HttpOnly, SameSite=Strict, Secure over TLS),
//! the CSRF value a page sends back on every POST, and the `Origin` check.
//!
//! A route takes a [`Ctx`]: the session token (from the cookie, or from
//! `Authorization: Bearer` for scripts), checked against CSRF and
//! `Origin` when the request changes something and the token came from
//! the cookie (a browser attaches cookies by itself, not headers). The
//! token is then handed to the gRPC handlers as a gRPC call's would be
//! ([`Ctx::request`]), so the caller is resolved and checked in one place,
//! `crate::auth`.

use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use cookie::{Cookie, SameSite};

use super::{WebError, WebState};
use crate::auth::{bearer_value, Caller};

/// The session cookie's name.
pub const COOKIE: &str = "bifrost_session";

/// The header a page sends its CSRF value in.
pub const CSRF_HEADER: &str = "x-bifrost-csrf";

/// The address a connection came from, put in each request's extensions
/// by the HTTP server (for audit records).
#[derive(Clone, Copy, Debug)]
pub struct RemoteAddr(pub SocketAddr);

/// The caller of a web route, as far as the request says.
pub struct Ctx {
    pub token: Option<String>,
    remote: Option<SocketAddr>,
}

impl FromRequestParts<WebState> for Ctx {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Ctx, WebError> {
        let (token, from_cookie) = match bearer(&parts.headers)? {
            Some(t) => (Some(t), false),
            None => (cookie_token(&parts.headers), true),
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        if !safe {
            check_origin(&parts.headers, state.tls)?;
            if from_cookie {
                check_csrf(state, token.as_deref(), &parts.headers)?;
            }
        }
        Ok(Ctx {
            token,
            remote: parts.extensions.get::<RemoteAddr>().map(|r| r.0),
        })
    }
}

impl Ctx {
    /// A caller without a session yet (logging in), from `remote`.
    pub fn anonymous(remote: Option<SocketAddr>) -> Ctx {
        Ctx {
            token: None,
            remote,
        }
    }

    /// `msg` as a gRPC request from this caller: their token as the bearer
    /// token, their address as the peer's.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(v) = self
            .token
            .as_ref()
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            req.metadata_mut().insert("authorization", v);
        }
        req.extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: self.remote,
            });
        req
    }

    /// The caller, resolved as a gRPC call's would be.
    pub async fn caller(&self, state: &WebState) -> Result<Caller, WebError> {
        Ok(state.api.auth.resolve(self.token.as_deref(), None).await?)
    }
}

fn bearer(headers: &HeaderMap) -> Result<Option<String>, WebError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| {
        WebError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the Authorization header is not ASCII",
        )
    })?;
    Ok(Some(bearer_value(v)?.to_string()))
}

/// The session token in the request's `Cookie` headers, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

/// The CSRF value of a session: derived from its token (which the page
/// cannot read), so it cannot be guessed without the token and needs no
/// storage; on an `--insecure` node, the node's random value.
pub fn csrf_value(state: &WebState, token: Option<&str>) -> String {
    match token {
        Some(t) if state.api.auth.options().enforce => {
            let key = blake3::derive_key("bifrost web UI 2026-12 CSRF", t.as_bytes());
            key[..16].iter().map(|b| format!("{b:02x}")).collect()
        }
        _ => state.insecure_csrf.to_string(),
    }
}

fn check_csrf(state: &WebState, token: Option<&str>, headers: &HeaderMap) -> Result<(), WebError> {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let expected = csrf_value(state, token);
    match sent {
        Some(s) if constant_time_eq(s.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(csrf_error(
            "the X-Bifrost-Csrf header does not match this session",
        )),
        None => Err(csrf_error(
            "a POST with the session cookie needs the X-Bifrost-Csrf header (from /api/session)",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn csrf_error(message: &str) -> WebError {
    WebError::new(StatusCode::FORBIDDEN, "csrf", message)
}

/// Refuses a request a browser sent from another site's page: its
/// `Origin`, when it has one, must be this node as the request addresses
/// it (`Host`).
pub fn check_origin(headers: &HeaderMap, tls: bool) -> Result<(), WebError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let scheme = if tls { "https" } else { "http" };
    if origin.to_str().ok() == Some(&format!("{scheme}://{host}")) {
        return Ok(());
    }
    Err(csrf_error(&format!(
        "cross-origin request refused: Origin {:?} is not this node ({scheme}://{host})",
        origin
    )))
}

/// The `Set-Cookie` value that starts a session of `ttl_s` seconds.
pub fn set_cookie(token: &str, ttl_s: i64, tls: bool) -> HeaderValue {
    let c = Cookie::build((COOKIE, token.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .path("/")
        .max_age(cookie::time::Duration::seconds(ttl_s.max(0)))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("a token is base64url")
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie(tls: bool) -> HeaderValue {
    set_cookie("", 0, tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_session_token_comes_from_its_cookie_only() {
        let h = headers(&[("cookie", "theme=dark; bifrost_session=abc123; x=y")]);
        assert_eq!(cookie_token(&h).as_deref(), Some("abc123"));
        let h = headers(&[("cookie", "bifrost_sessionx=abc; other=1")]);
        assert_eq!(cookie_token(&h), None);
        assert_eq!(
            cookie_token(&headers(&[("cookie", "bifrost_session=")])),
            None
        );
    }

    #[test]
    fn another_sites_origin_is_refused() {
        let same = headers(&[
            ("host", "10.0.0.5:8001"),
            ("origin", "https://10.0.0.5:8001"),
        ]);
        assert!(check_origin(&same, true).is_ok());
        assert!(check_origin(&same, false).is_err(), "scheme must match");
        let other = headers(&[
            ("host", "10.0.0.5:8001"),
            ("origin", "https://evil.example"),
        ]);
        let e = check_origin(&other, true).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "csrf"));
        assert!(e.message.contains("evil.example"), "{}", e.message);
        assert!(check_origin(&headers(&[("host", "a:1")]), true).is_ok());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let c = set_cookie("tok", 3600, true);
        let c = c.to_str().unwrap();
        for part in [
            "bifrost_session=tok",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!set_cookie("tok", 1, false)
            .to_str()
            .unwrap()
            .contains("Secure"));
        assert!(clear_cookie(true).to_str().unwrap().contains("Max-Age=0"));
    }
}
