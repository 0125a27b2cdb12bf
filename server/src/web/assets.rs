//! The web UI's files, embedded at build time (`server/build.rs` lists
//! `server/web/`), served at `/ui/PATH` and `/` (the page itself). Each
//! answer carries an ETag (a hash of the file) and `no-cache`, so a browser
//! revalidates and gets a new UI right after an upgrade, and the security
//! headers every UI response has ([`security_headers`]).
//!
//! This module knows nothing of sessions or the API: the files are public
//! (they hold no data; the data comes from the JSON routes, which check
//! the caller).

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    /// Relative to `server/web/`, with `/` separators.
    pub path: &'static str,
    pub content_type: &'static str,
    pub etag: &'static str,
    pub body: &'static [u8],
}

/// Every file under `server/web/`, by path.
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The embedded file at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET /` and `GET /ui/`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/{*path}`.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(if path.is_empty() { "index.html" } else { &path }, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = find(path) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no file '{path}' in the web UI\n"),
        )
            .into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == asset.etag.as_bytes());
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h);
    resp
}

/// What every UI and API answer carries: scripts, styles, images and
/// connections from this node only, nothing inline (the pages set styles
/// through the DOM, which the policy allows); no framing; no MIME
/// sniffing; no referrer sent elsewhere.
pub fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_the_chart_library_are_embedded() {
        let page = find("index.html").expect("index.html embedded");
        assert!(page.content_type.starts_with("text/html"));
        let page = std::str::from_utf8(page.body).unwrap();
        assert!(page.contains("/ui/app.js"), "the page loads app.js");
        let chart = find("vendor/dygraph.min.js").expect("dygraphs embedded");
        assert!(chart.body.len() > 100_000);
        assert!(find("app.js")
            .unwrap()
            .content_type
            .starts_with("text/javascript"));
        assert!(find("../Cargo.toml").is_none());
    }

    #[test]
    fn etags_differ_between_files() {
        let mut tags: Vec<&str> = ASSETS.iter().map(|a| a.etag).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }
}
