//! Subscriptions on real `bifrost serve` processes: ordered, unique,
//! gap-free and resumable (the guarantees etcd's robustness tests check for
//! watch), over gRPC and over WebSocket with a client written by others
//! (Python `websockets`); retention and the `compacted` error; overflow of a
//! slow consumer; the subscription limit.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bifrost_client::proto::{self, Reading, WatchRequest};
use bifrost_client::{Client, Consistency, WatchEvent};
use common::*;

use bifrost_model::now_us;
use bifrost_testkit::python;

/// Creates `watched` tags `w/a/N` (matched by the test's pattern) and
/// `other` tags `x/N` (not matched).
async fn setup(client: &Client, watched: usize, other: usize) -> (Vec<String>, Vec<String>) {
    client.put_device(device("plc1"), true).await.unwrap();
    let mut w = vec![];
    let mut o = vec![];
    for i in 0..watched {
        let name = format!("w/a/{i}");
        client
            .put_tag(tag(&name, "plc1", "f64"), true)
            .await
            .unwrap();
        w.push(name);
    }
    for i in 0..other {
        let name = format!("x/{i}");
        client
            .put_tag(tag(&name, "plc1", "f64"), true)
            .await
            .unwrap();
        o.push(name);
    }
    (w, o)
}

/// Ingests batches over all `tags` until `stop`; returns the highest
/// revision acknowledged. Ids are unique per writer.
fn spawn_writer(
    client: Client,
    tags: Vec<String>,
    writer: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut seq = 0u64;
        let mut acked = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<Reading> = (0..20)
                .map(|k| {
                    seq += 1;
                    let t = &tags[(seq as usize + k) % tags.len()];
                    reading(&format!("{writer}-{seq}"), t, now_us(), seq as f64)
                })
                .collect();
            // Retried across the kill by the client; a failure after the
            // deadline would fail the comparison below anyway.
            if client.ingest(batch).await.is_ok() {
                acked += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acked
    })
}

/// What a subscriber received, checked as it arrives: revisions strictly
/// increase across reconnects (ordered, no repeat).
#[derive(Default)]
struct Received {
    readings: Vec<Reading>,
    nodes: Vec<u64>,
    last: u64,
}

impl Received {
    fn take(&mut self, ev: WatchEvent) {
        match ev {
            WatchEvent::Started { node_id, .. } => self.nodes.push(node_id),
            WatchEvent::Readings {
                readings, revision, ..
            } => {
                for r in readings {
                    assert!(
                        r.revision > self.last,
                        "revision {} after {}: out of order or repeated",
                        r.revision,
                        self.last
                    );
                    self.last = r.revision;
                    self.readings.push(r);
                }
                assert!(revision >= self.last);
            }
            WatchEvent::Progress { .. } => {}
        }
    }
}

/// The committed history of `tags` on `client`'s node, in revision order.
async fn committed(client: &Client, tags: &[String]) -> Vec<(u64, String, String)> {
    let mut all: Vec<(u64, String, String)> = all_readings(client, tags, Consistency::Linearizable)
        .await
        .into_iter()
        .map(|r| (r.revision, r.tag, r.id))
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriber_cut_off_by_a_kill_resumes_on_another_node_without_gap_or_repeat() {
    let mut cluster = TestCluster::start(3, &["--progress-ms", "200"]);
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    // 45 more tags that nobody writes make the filter narrow (5 of 55
    // tags): the catch-ups read the watched tags one by one.
    let (watched, other) = setup(&client, 5, 50).await;
    let other: Vec<String> = other.into_iter().take(5).collect();
    // The subscriber starts on a follower A and knows one other node B.
    let a = [1, 2, 3].into_iter().find(|&n| n != leader).unwrap();
    let b = [1, 2, 3]
        .into_iter()
        .find(|&n| n != leader && n != a)
        .unwrap();
    let eps = cluster.endpoints();
    let sub_client = Client::connect_with(
        vec![eps[(a - 1) as usize].clone(), eps[(b - 1) as usize].clone()],
        opts(),
    )
    .unwrap();
    // Readings before the subscription exists: it starts from revision 0,
    // so these come from storage (catch-up), the rest live.
    let mut all_tags = watched.clone();
    all_tags.extend(other.iter().cloned());
    let pre: Vec<Reading> = (0..200)
        .map(|i| {
            reading(
                &format!("pre-{i}"),
                &all_tags[i % all_tags.len()],
                now_us(),
                i as f64,
            )
        })
        .collect();
    client.ingest(pre).await.unwrap();
    // A holds them before the subscription starts: they come from a
    // catch-up, not live.
    cluster.catch_up(a, leader, Duration::from_secs(30)).await;

    let mut watcher = sub_client.watcher(WatchRequest {
        patterns: vec!["w/**".into()],
        from_revision: Some(0),
        ..Default::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        cluster.client_without(a),
        all_tags.clone(),
        "live",
        stop.clone(),
    );
    let mut got = Received::default();
    // One deadline for all three phases; a stream that goes quiet cannot
    // outlast it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Receive for a while on A...
    tokio::time::timeout_at(deadline, async {
        while got.readings.len() < 300 {
            got.take(watcher.next().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no readings on node {a}"));
    assert_eq!(got.nodes, vec![a], "started on node {a}");
    let tag_pages = metric(&cluster.node(a).http, "bifrost_watch_tag_pages_total").await;
    assert!(
        tag_pages >= Some(1),
        "node {a} caught up tag by tag: {tag_pages:?}"
    );
    // ...then A dies mid-stream.
    cluster.kill(a);
    let kill_at = got.readings.len();
    tokio::time::timeout_at(deadline, async {
        while got.readings.len() < kill_at + 300 {
            got.take(watcher.next().await.unwrap());
        }
    })
    .await
    .expect("subscription did not resume");
    assert_eq!(got.nodes, vec![a, b], "resumed on node {b}");
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    // Everything committed is delivered: wait until the subscriber's
    // position (progress included) reaches the final revision.
    let survivor = cluster.node_client(b);
    let final_rev = survivor.status().await.unwrap().revision;
    tokio::time::timeout_at(deadline, async {
        while watcher.last_revision().unwrap_or(0) < final_rev {
            got.take(watcher.next().await.unwrap());
        }
    })
    .await
    .expect("subscriber never caught up");
    let expected = committed(&survivor, &watched).await;
    let received: Vec<(u64, String, String)> = got
        .readings
        .iter()
        .map(|r| (r.revision, r.tag.clone(), r.id.clone()))
        .collect();
    assert!(
        expected.len() > 600,
        "too little traffic: {}",
        expected.len()
    );
    assert_eq!(received.len(), expected.len(), "missing or extra readings");
    assert_eq!(received, expected, "received != committed history for w/**");
    assert!(watcher.reconnects() >= 1);
    cluster.restart(a);
    cluster.assert_replicas_agree().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_compacts_the_same_prefix_everywhere_and_old_revisions_get_compacted() {
    let cluster = TestCluster::start(3, &["--retention-check-ms", "200"]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    let (watched, _) = setup(&client, 2, 0).await;
    let hour = 3_600_000_000i64;
    // 100 readings two hours old, then 50 fresh ones.
    let old: Vec<Reading> = (0..100)
        .map(|i| {
            reading(
                &format!("old-{i}"),
                &watched[i % 2],
                now_us() - 2 * hour,
                i as f64,
            )
        })
        .collect();
    client.ingest(old).await.unwrap();
    let fresh: Vec<Reading> = (0..50)
        .map(|i| reading(&format!("new-{i}"), &watched[i % 2], now_us(), i as f64))
        .collect();
    client.ingest(fresh).await.unwrap();
    let before = client.status().await.unwrap();
    assert_eq!(before.oldest_revision, 1);
    assert_eq!(before.revision, 150);

    client.set_retention(3600).await.unwrap();
    // Every node ends up holding exactly revisions 101..=150.
    for n in 1..=3 {
        let c = cluster.node_client(n);
        let s = wait_until_async(
            format!("node {n} to hold revisions from 101 on"),
            Duration::from_secs(30),
            || async {
                let s = c.status().await.unwrap();
                if s.oldest_revision == 101 {
                    Ok(s)
                } else {
                    Err(format!("oldest revision {} (want 101)", s.oldest_revision))
                }
            },
        )
        .await;
        assert_eq!(s.retention_seconds, 3600);
        let held = all_readings(&c, &watched, Consistency::Local).await;
        assert_eq!(held.len(), 50, "node {n} holds {} readings", held.len());
        assert!(held.iter().all(|r| r.id.starts_with("new-")));
    }
    // A subscriber asking for a compacted revision gets an error naming the
    // oldest revision held, on every node.
    for n in 1..=3 {
        let mut w = cluster.node_client(n).watcher(WatchRequest {
            from_revision: Some(50),
            ..Default::default()
        });
        let e = w.next().await.unwrap_err().to_string();
        assert!(e.contains("compacted"), "{e}");
        assert!(e.contains("oldest revision held is 101"), "{e}");
    }
    // From the revision just before the oldest held, nothing is missing.
    let mut w = cluster.node_client(2).watcher(WatchRequest {
        from_revision: Some(100),
        ..Default::default()
    });
    let mut got = Received::default();
    while got.readings.len() < 50 {
        got.take(w.next().await.unwrap());
    }
    let revs: Vec<u64> = got.readings.iter().map(|r| r.revision).collect();
    assert_eq!(revs, (101..=150).collect::<Vec<_>>());
    // The replicas agree on what retention left, from the oldest held.
    let report = cluster.assert_replicas_agree().await;
    assert!(report.comparison.from >= 101, "{}", report.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_consumer_is_closed_with_the_revision_to_resume_from_and_limits_hold() {
    let cluster = TestCluster::start(3, &["--watch-buffer", "500", "--max-subscriptions", "3"]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    let (watched, _) = setup(&client, 4, 0).await;
    // A raw stream that is not read while readings pour in, on a connection
    // with small HTTP/2 windows (hyper's defaults, 2 MiB per stream, would
    // hold this whole test's traffic).
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.node(1).grpc))
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap();
    let mut raw = proto::bifrost_client::BifrostClient::new(channel);
    let mut stream = raw
        .watch(WatchRequest {
            from_revision: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Two more subscriptions fill the limit of three on node 1; a fourth is
    // refused with a message naming the limit.
    let mut extra = vec![];
    for _ in 0..2 {
        extra.push(
            raw.watch(WatchRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let refused = raw.watch(WatchRequest::default()).await;
    let e = match refused {
        Ok(s) => s.into_inner().message().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("limit is 3"), "{}", e.message());
    drop(extra);

    let mut n = 0u64;
    for b in 0..100 {
        let batch: Vec<Reading> = (0..200)
            .map(|i| {
                n += 1;
                reading(&format!("s-{b}-{i}"), &watched[i % 4], now_us(), n as f64)
            })
            .collect();
        client.ingest(batch).await.unwrap();
    }
    // Now read: in-order readings, then the overflow error with the
    // revision up to which everything was delivered.
    let mut got: Vec<u64> = vec![];
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    if let Some(proto::watch_response::Event::Readings(r)) = m.event {
                        got.extend(r.readings.iter().map(|r| r.revision));
                    }
                }
                Ok(None) => panic!("stream ended without an overflow error"),
                Err(s) => break s,
            }
        }
    })
    .await
    .expect("no overflow error within 60 s");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("too slow"),
        "{}",
        status.message()
    );
    let resume: u64 = status
        .metadata()
        .get("bifrost-resume-revision")
        .expect("resume revision in metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(resume < 20_000, "overflow expected before the end");
    // Delivered so far: exactly 1..=resume, nothing skipped.
    assert_eq!(got, (1..=resume).collect::<Vec<_>>());
    // Resuming from it delivers the rest, gap-free.
    let mut w = cluster.node_client(1).watcher(WatchRequest {
        from_revision: Some(resume),
        ..Default::default()
    });
    let mut rest = Received {
        last: resume,
        ..Default::default()
    };
    while rest.last < 20_000 {
        rest.take(w.next().await.unwrap());
    }
    let revs: Vec<u64> = rest.readings.iter().map(|r| r.revision).collect();
    assert_eq!(revs, (resume + 1..=20_000).collect::<Vec<_>>());
    // The node is still fine.
    assert_eq!(
        cluster.node_client(1).status().await.unwrap().revision,
        20_000
    );
}

/// Runs the `websockets` subscriber until `count` readings; returns its
/// JSON lines.
fn ws_watch(http: &str, subscribe: &str, count: usize) -> Vec<serde_json::Value> {
    ws_run(http, subscribe, count, 0)
}

/// Runs the `websockets` subscriber until `n` progress messages.
fn ws_watch_progress(http: &str, subscribe: &str, n: usize) -> Vec<serde_json::Value> {
    ws_run(http, subscribe, usize::MAX, n)
}

fn ws_run(http: &str, subscribe: &str, count: usize, progress: usize) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_watch.py");
    let url = format!("ws://{http}/ws");
    let count = count.min(1 << 40).to_string();
    let out = std::process::Command::new(python())
        .args([script, &url, subscribe, &count, "30", &progress.to_string()])
        .output()
        .expect("run the Python websockets client (BIFROST_PYTHON)");
    assert!(
        out.status.success(),
        "ws_watch.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_subscriber_written_by_others_resumes_on_another_node() {
    let mut cluster = TestCluster::start(3, &["--progress-ms", "300"]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    let (watched, other) = setup(&client, 3, 3).await;
    let mut all = watched.clone();
    all.extend(other);
    let ingest = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| reading(&format!("ws-{i}"), &all[i % all.len()], now_us(), i as f64))
            .collect::<Vec<_>>()
    };
    client.ingest(ingest(0, 120)).await.unwrap();

    // 60 of the 120 readings match; take the first 30 from node 1.
    let sub = r#"{"type":"subscribe","patterns":["w/*/*"],"from_revision":0}"#;
    let first = ws_watch(&cluster.node(1).http, sub, 30);
    assert_eq!(first[0]["type"], "started");
    assert_eq!(first[0]["node_id"], 1);
    let mut got: Vec<(u64, String)> = vec![];
    for m in &first {
        if m["type"] == "readings" {
            for r in m["readings"].as_array().unwrap() {
                got.push((
                    r["revision"].as_u64().unwrap(),
                    r["tag"].as_str().unwrap().into(),
                ));
            }
        }
    }
    let last = got.last().unwrap().0;
    // Node 1 goes away; the subscriber resumes on node 3 after the last
    // revision it got, while more readings arrive.
    cluster.kill(1);
    client.ingest(ingest(120, 60)).await.unwrap();
    let sub = format!(r#"{{"type":"subscribe","patterns":["w/*/*"],"from_revision":{last}}}"#);
    let want = 90 - got.len();
    let second = ws_watch(&cluster.node(3).http, &sub, want);
    assert_eq!(second[0]["node_id"], 3);
    for m in &second {
        if m["type"] == "readings" {
            for r in m["readings"].as_array().unwrap() {
                got.push((
                    r["revision"].as_u64().unwrap(),
                    r["tag"].as_str().unwrap().into(),
                ));
            }
        }
    }
    let expected: Vec<(u64, String)> = committed(&cluster.node_client(3), &watched)
        .await
        .into_iter()
        .map(|(rev, tag, _)| (rev, tag))
        .collect();
    assert_eq!(expected.len(), 90);
    assert_eq!(got, expected);

    // Bad requests get an error message naming the problem, then a close.
    let bad = ws_watch(
        &cluster.node(3).http,
        r#"{"type":"subscribe","patern":["a"]}"#,
        1,
    );
    assert_eq!(bad[0]["type"], "error");
    assert_eq!(bad[0]["code"], "bad_request");
    assert!(
        bad[0]["message"].as_str().unwrap().contains("patern"),
        "{}",
        bad[0]
    );
    assert_eq!(bad.last().unwrap()["done"], "error");
    let compacted_ok = ws_watch(
        &cluster.node(3).http,
        r#"{"type":"subscribe","patterns":["[bad"]}"#,
        1,
    );
    assert_eq!(compacted_ok[0]["code"], "bad_request");
    // Progress messages arrive while nothing matches.
    let idle = ws_watch_progress(
        &cluster.node(3).http,
        r#"{"type":"subscribe","tags":["nothing/here"],"progress_ms":100}"#,
        3,
    );
    let rev = cluster.node_client(3).status().await.unwrap().revision;
    let progress: Vec<&serde_json::Value> =
        idle.iter().filter(|m| m["type"] == "progress").collect();
    assert_eq!(progress.len(), 3, "{idle:?}");
    assert!(progress.iter().all(|m| m["revision"] == rev), "{idle:?}");
    assert_eq!(idle.last().unwrap()["done"], "progress");
    cluster.restart(1);
    cluster.assert_replicas_agree().await;
}
