//! Limits at the public edge (issue 12, part 7) on a real node: a client
//! connection over its request rate is refused with `resource_exhausted`
//! and a retry hint while other connections go on; WebSocket clients (the
//! `websockets` library from PyPI) that send oversized messages or stop
//! reading are cut off, and counted; an HTTP client that does not finish
//! its request head in time is disconnected, while others are served.

mod common;

use std::time::Duration;

use bifrost_client::proto::StatusRequest;
use bifrost_testkit::python;
use common::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_misbehave.py");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_rate_is_refused_with_a_retry_hint_and_others_go_on() {
    let cluster = TestCluster::start(1, &["--max-requests-per-second", "20"]);
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let mut greedy = cluster.raw_client(1).await;
    let (mut ok, mut refused) = (0, None);
    for _ in 0..100 {
        match greedy.status(StatusRequest::default()).await {
            Ok(_) => ok += 1,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("100 calls at once on one connection must pass its limit");
    assert!(
        ok >= 20,
        "the burst (40) minus what was spent waiting for a leader: {ok}"
    );
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status
            .message()
            .contains("more than 20 requests/s on this connection"),
        "{}",
        status.message()
    );
    let hint: u64 = status
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=50).contains(&hint),
        "one token comes back every 50 ms: {hint}"
    );

    let mut other = cluster.raw_client(1).await;
    other
        .status(StatusRequest::default())
        .await
        .expect("another connection has its own allowance");
    let http = &cluster.node(1).http;
    assert!(metric(http, "bifrost_rate_limited_requests_total").await >= Some(1));

    // The client library waits as told and gets through.
    let client = cluster.node_client(1);
    for i in 0..60 {
        client
            .status()
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_clients_that_send_too_much_or_stop_reading_are_cut_off() {
    let cluster = TestCluster::start(1, &["--watch-send-timeout-ms", "1000"]);
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let client = cluster.client();
    let tags = setup_tags(&client, 10).await;
    let http = cluster.node(1).http.clone();
    let url = format!("ws://{http}/ws");

    let out = std::process::Command::new(python())
        .args([SCRIPT, "big", &url])
        .output()
        .expect("run ws_misbehave.py (BIFROST_PYTHON with websockets)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let big: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(big["closed"], true, "{big}");
    assert_eq!(big["close_code"], 1008, "policy violation: {big}");
    let reason = big["reason"].as_str().unwrap();
    assert!(
        reason.contains("too long"),
        "the close frame says why: {reason}"
    );

    // A subscriber that never reads while 50,000 readings (about 8 MB of
    // JSON) come: the node's sends back up and it lets the client go.
    let mut stalled = std::process::Command::new(python())
        .args([
            SCRIPT,
            "stall",
            &url,
            r#"{"type":"subscribe","patterns":["line1/*"]}"#,
            "60",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_async(
        "the stalled client subscribes",
        Duration::from_secs(30),
        || async { metric(&http, "bifrost_watch_subscriptions").await == Some(1) },
    )
    .await;
    for batch in 0..50 {
        let readings = (0..1000)
            .map(|i| {
                let n = batch * 1000 + i;
                reading(
                    &format!("r{n}"),
                    &tags[n % tags.len()],
                    1_700_000_000_000_000 + n as i64,
                    n as f64,
                )
            })
            .collect();
        client.ingest(readings).await.unwrap();
    }
    wait_until_async(
        "the client that stopped reading disconnected",
        Duration::from_secs(60),
        || async { metric(&http, "bifrost_watch_slow_disconnects_total").await == Some(1) },
    )
    .await;
    assert_eq!(metric(&http, "bifrost_watch_subscriptions").await, Some(0));
    let _ = stalled.kill();
    let _ = stalled.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_that_stalls_inside_its_request_head_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = TestCluster::start(1, &["--http-header-timeout-ms", "300"]);
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let http = cluster.node(1).http.clone();
    let mut slow = tokio::net::TcpStream::connect(&http).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The head never ends: the node closes the connection (its answer, if
    // any, is not a 200).
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the stalled connection was still open after 20 s"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("200 OK"), "{answer}");
    // Meanwhile, and after, whole requests are served.
    assert_eq!(http_get(&http, "/healthz").await, "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_message_over_the_size_limit_is_refused_and_the_node_goes_on() {
    use bifrost_client::proto::{IngestRequest, Reading, Value};
    let cluster = TestCluster::start(1, &[]);
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let mut raw = cluster.raw_client(1).await;
    // One reading whose text is 33 MiB: past the 32 MiB limit of a message.
    let huge = Reading {
        id: "huge".into(),
        tag: "t".into(),
        ts_us: 1,
        value: Some(Value {
            kind: Some(bifrost_client::proto::value::Kind::StringValue(
                "x".repeat(33 << 20),
            )),
        }),
        ..Default::default()
    };
    let refused = raw
        .ingest(IngestRequest {
            readings: vec![huge],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("message length too large"),
        "{refused:?}"
    );
    // Nothing was stored and the node answers as before.
    let status = raw
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.revision, 0, "{status:?}");
}
