//! The replica check on a real cluster: after real traffic (a purge
//! included) every node holds the same history, as the test kit's check,
//! `bifrostctl check replicas` and the leader's metrics all say; and a node
//! given a reading of its own behind Raft's back (written into its state
//! directory while it was down) is named, with the range holding that
//! reading, by all three.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bifrost_storage::{DataType, Device, NewReading, Protocol, Quality, StateStore, Tag, Value};
use bifrost_testkit::Error as KitError;
use common::*;

/// Nodes whose leader compares every completed range of `REPLICA_RANGE`
/// revisions five times a second.
const CHECK_OFTEN: &[&str] = &["--replica-check-ms", "200", "--replica-range", "100"];

/// `bifrostctl check replicas` in ranges of `REPLICA_RANGE`: success, stdout.
fn ctl_check(cluster: &TestCluster, output: &str) -> (bool, String) {
    let out = Command::new(bifrostctl())
        .args(["--endpoints", &cluster.endpoints().join(",")])
        .args(["--output", output, "check", "replicas", "--range-size"])
        .arg(REPLICA_RANGE.to_string())
        .output()
        .expect("run bifrostctl (build the workspace first)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// Ingests `n` readings with ids `{prefix}{i}` over `tags`, 50 per call.
async fn ingest(cluster: &TestCluster, tags: &[String], prefix: &str, n: usize) {
    let client = cluster.client();
    let all: Vec<_> = (0..n)
        .map(|i| {
            let tag = &tags[i % tags.len()];
            reading(&format!("{prefix}{i}"), tag, i as i64, i as f64 / 8.0)
        })
        .collect();
    for batch in all.chunks(50) {
        client.ingest(batch.to_vec()).await.unwrap();
    }
}

/// The greatest value of a metric over the nodes.
async fn max_metric(cluster: &TestCluster, name: &str) -> u64 {
    let mut max = 0;
    for n in cluster.nodes() {
        max = max.max(metric(&n.http, name).await.unwrap_or(0));
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_agree_after_traffic_and_a_purge_by_check_ctl_and_metric() {
    let cluster = TestCluster::start(3, CHECK_OFTEN);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let tags = setup_tags(&cluster.client(), 3).await;
    ingest(&cluster, &tags, "a", 600).await;
    // A purged tag's readings vanish from every node's history.
    cluster.client().delete_tag(&tags[2], true).await.unwrap();
    ingest(&cluster, &tags[..2], "b", 450).await;

    let report = cluster.assert_replicas_agree().await;
    let c = &report.comparison;
    assert_eq!((c.from, c.through), (1, 1_050), "{}", report.text());
    assert_eq!(
        (c.ranges, c.readings),
        (11, 1_050 - 200),
        "{}",
        report.text()
    );
    assert_eq!(report.nodes.len(), 3);
    assert!(report.nodes.iter().all(|n| n.revision == 1_050));

    let (ok, out) = ctl_check(&cluster, "text");
    assert!(ok, "{out}");
    assert!(
        out.ends_with("replicas agree through revision 1050 (11 ranges, 850 readings)\n"),
        "{out}"
    );
    assert!(
        out.contains("compared revisions 1..=1050 in ranges of 100\n"),
        "{out}"
    );
    let (ok, out) = ctl_check(&cluster, "json");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        ok && j["agree"] == true && j["difference"].is_null(),
        "{out}"
    );

    // The leader's own check reaches the last completed range, finding nothing.
    wait_until_async(
        "the leader's replica check to reach revision 1000",
        Duration::from_secs(30),
        || async { max_metric(&cluster, "bifrost_replica_checked_revision").await >= 1_000 },
    )
    .await;
    assert_eq!(
        max_metric(&cluster, "bifrost_replica_mismatched_ranges_total").await,
        0
    );
}

/// Writes one reading straight into the state of the (stopped) node whose
/// data directory is `data_dir`, past Raft: the divergence a storage bug
/// would cause. Returns its revision there. The reading's tag (and device)
/// are created with it: the state on disk holds what the node flushed,
/// which may lag behind what it had applied when it was killed.
fn add_reading_behind_rafts_back(data_dir: &Path) -> u64 {
    // The replicated state of a node is DATA_DIR/state (bifrost-raft's node).
    let state = StateStore::open(&data_dir.join("state")).unwrap();
    let mut batch = state.batch();
    let device = Device::new("rogue-plc", Protocol::ModbusTcp, "127.0.0.1:1");
    batch.put_device(device, true, None, 1).unwrap();
    let tag = Tag::new("rogue/t", "rogue-plc", "hr:0", DataType::F64);
    batch.put_tag(tag, true, None, 1).unwrap();
    let rogue = NewReading {
        id: "rogue".into(),
        tag: "rogue/t".into(),
        ts_us: 42,
        server_ts_us: 42,
        value: Some(Value::Float(13.0)),
        quality: Quality::good(),
    };
    let outcome = batch.insert_readings(vec![rogue], false).unwrap().unwrap();
    batch.commit().unwrap();
    state.sync().unwrap();
    assert_eq!(outcome.stored, 1);
    outcome.last_revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_holding_a_reading_of_its_own_is_named_with_its_range() {
    let mut cluster = TestCluster::start(3, CHECK_OFTEN);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let tags = setup_tags(&cluster.client(), 2).await;
    ingest(&cluster, &tags, "a", 250).await;
    cluster.assert_replicas_agree().await;

    // Node 3 flushes what it applied, then dies.
    wait_until_async(
        "node 3 to flush revision 250",
        Duration::from_secs(30),
        || async {
            metric(&cluster.node(3).http, "bifrost_state_flushed_revision")
                .await
                .unwrap_or(0)
                >= 250
        },
    )
    .await;
    cluster.kill(3);
    let rogue = add_reading_behind_rafts_back(&cluster.node(3).data_dir);
    assert_eq!(rogue, 251);
    cluster.restart(3);
    // Node 3 now numbers every later reading one higher than the others.
    ingest(&cluster, &tags, "b", 150).await;
    cluster
        .wait_healthy(&[1, 2, 3], Duration::from_secs(60))
        .await
        .unwrap();

    let e = cluster.check_replicas(REPLICA_RANGE).await.unwrap_err();
    let KitError::ReplicasDiffer(report) = &e else {
        panic!("expected a difference, got {e}");
    };
    let c = &report.comparison;
    let d = c.difference.as_ref().unwrap();
    assert_eq!((d.first, d.last), (201, 300), "{e}");
    assert_eq!((c.through, c.ranges, c.readings), (200, 2, 200), "{e}");
    let view: Vec<(u64, u64)> = d.nodes.iter().map(|n| (n.node_id, n.count)).collect();
    assert_eq!(view, [(1, 100), (2, 100), (3, 100)], "{e}");
    assert_eq!(d.nodes[0].digest, d.nodes[1].digest, "{e}");
    assert_ne!(d.nodes[2].digest, d.nodes[0].digest, "{e}");
    assert!(
        e.to_string()
            .contains("replicas differ in revisions 201..=300: node 1: 100 readings"),
        "{e}"
    );

    let (ok, out) = ctl_check(&cluster, "text");
    assert!(
        !ok,
        "bifrostctl check replicas succeeded on differing replicas: {out}"
    );
    assert!(
        out.contains("replicas differ in revisions 201..=300: node 1: 100 readings, digest "),
        "{out}"
    );

    // The leader's check finds it too, and counts it once confirmed.
    wait_until_async(
        "the leader's replica check to count the differing range 201..=300",
        Duration::from_secs(30),
        || async {
            max_metric(&cluster, "bifrost_replica_mismatched_ranges_total").await >= 1
                && max_metric(&cluster, "bifrost_replica_first_mismatch_revision").await == 201
        },
    )
    .await;
}
