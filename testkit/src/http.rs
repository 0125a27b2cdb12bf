//! A plain HTTP/1.0 GET over loopback (a few lines of tokio, no HTTP client
//! crate): the server closes the connection after the response, so the body
//! is everything after the headers.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

/// The body of `GET path` from `addr` (`127.0.0.1:PORT`); an error unless
/// the status is 200 within `timeout`.
pub async fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String> {
    let fail = |reason: String| Error::Http {
        addr: addr.to_string(),
        path: path.to_string(),
        reason,
    };
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        std::io::Result::Ok(buf)
    };
    let buf = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("malformed HTTP response".into()))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(fail(format!("HTTP status {status:?}")));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err(fail(
            "unexpected chunked response to an HTTP/1.0 request".into(),
        ));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_get_reads_the_body_of_a_200() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for answer in [
                "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nbifrost_outbox_records 3\n",
                "HTTP/1.0 404 Not Found\r\n\r\nnope",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let body = http_get(&addr, "/metrics", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(body, "bifrost_outbox_records 3\n");
        let e = http_get(&addr, "/metrics", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
    }
}
