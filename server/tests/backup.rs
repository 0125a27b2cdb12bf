//! Backup and restore end to end: `bifrostctl backup` from a follower of a
//! cluster that keeps ingesting, `bifrost restore` of that file into three
//! fresh data directories, and a new cluster started on them that holds
//! exactly the readings up to the backup's revision, with their revisions,
//! continues from there, and hands the state to a node added later.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bifrost_client::proto::Reading;
use bifrost_client::{Client, Consistency};
use common::*;
use serde_json::Value;

/// Readings ingested before the backup starts, and per batch after.
const BEFORE: usize = 2_000;
const BATCH: usize = 50;

/// `(id, tag, ts, revision)` of each reading, by revision.
fn by_revision(readings: &[Reading]) -> BTreeMap<u64, (String, String, i64)> {
    readings
        .iter()
        .map(|r| (r.revision, (r.id.clone(), r.tag.clone(), r.ts_us)))
        .collect()
}

async fn ingest(client: &Client, tags: &[String], prefix: &str, from: usize, n: usize) {
    let batch: Vec<_> = (from..from + n)
        .map(|i| {
            reading(
                &format!("{prefix}{i}"),
                &tags[i % tags.len()],
                i as i64,
                i as f64,
            )
        })
        .collect();
    client.ingest(batch).await.unwrap();
}

/// `bifrostctl --endpoints ENDPOINT --output json backup FILE`: its JSON.
fn backup(endpoint: &str, file: &Path) -> Value {
    let out = Command::new(bifrostctl())
        .args(["--endpoints", endpoint, "--output", "json", "backup"])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bifrostctl backup failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `bifrost restore FILE` of node `id` of `cluster`: success, output.
fn restore(cluster: &TestCluster, id: u64, file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bifrost"))
        .arg("restore")
        .arg(file)
        .arg("--data-dir")
        .arg(&cluster.node(id).data_dir)
        .args(["--id", &id.to_string(), "--peers", cluster.peers()])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_ingesting_restores_into_a_new_cluster_with_the_same_revisions() {
    let old = TestCluster::start(3, &[]);
    let leader = old.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let client = old.client();
    let tags = setup_tags(&client, 4).await;
    for from in (0..BEFORE).step_by(BATCH) {
        ingest(&client, &tags, "before-", from, BATCH).await;
    }

    // Writes go on while the backup is taken, from a follower.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (client, tags, stop, acked) = (old.client(), tags.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut from = 0;
            while !stop.load(Ordering::Relaxed) {
                ingest(&client, &tags, "during-", from, BATCH).await;
                from += BATCH;
                acked.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let acked_at_least = |n: u64| {
        let acked = acked.clone();
        move || {
            let acked = acked.clone();
            async move { acked.load(Ordering::Relaxed) >= n }
        }
    };
    wait_until_async(
        "writes before the backup",
        Duration::from_secs(30),
        acked_at_least(5),
    )
    .await;
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("plant.backup");
    let summary = {
        let (endpoint, file) = (old.node(follower).grpc.clone(), file.clone());
        tokio::task::spawn_blocking(move || backup(&endpoint, &file))
            .await
            .unwrap()
    };
    let after_backup = acked_at_least(acked.load(Ordering::Relaxed) + 5);
    wait_until_async(
        "writes after the backup",
        Duration::from_secs(30),
        after_backup,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    assert_eq!(summary["node_id"], follower);
    let revision = summary["revision"].as_u64().unwrap();
    let index = summary["log_index"].as_u64().unwrap();
    assert!(revision >= BEFORE as u64, "{summary}");
    // The file is what the node sent.
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        bytes.len() as u64,
        summary["archive_bytes"].as_u64().unwrap()
    );
    assert_eq!(blake3::hash(&bytes).to_hex().as_str(), summary["blake3"]);
    // A second backup does not replace it without --force.
    let again = Command::new(bifrostctl())
        .args(["--endpoints", &old.node(follower).grpc, "backup"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let all_old = all_readings(&client, &tags, Consistency::Linearizable).await;
    let old_by_rev = by_revision(&all_old);
    let expected: BTreeMap<_, _> = old_by_rev
        .range(..=revision)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert!(
        old_by_rev.range(revision + 1..).next().is_some(),
        "no write was acknowledged after the backup's revision {revision}"
    );
    assert!(
        expected
            .values()
            .filter(|(id, ..)| id.starts_with("during-"))
            .count()
            > 0,
        "no write of those made while ingesting is in the backup"
    );

    // A new cluster from the file: every node restored, then started.
    let mut new = TestCluster(Cluster::create(options(3, &[])).unwrap());
    for id in 1..=3 {
        let (ok, text) = restore(&new, id, &file);
        assert!(ok, "restore of node {id}: {text}");
        assert!(text.contains(&format!("at log index {index}")), "{text}");
    }
    let (ok, text) = restore(&new, 1, &file);
    assert!(
        !ok && text.contains("already holds a node's data"),
        "{text}"
    );
    new.start_nodes().unwrap();
    new.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let new_client = new.client();
    let restored = all_readings(&new_client, &tags, Consistency::Linearizable).await;
    let restored_by_rev = by_revision(&restored);
    assert_eq!(restored.len(), restored_by_rev.len(), "a revision twice");
    assert_eq!(restored_by_rev.len(), expected.len());
    assert!(
        restored_by_rev == expected,
        "the restored readings differ from those up to revision {revision}"
    );
    for i in 0..BEFORE {
        let id = format!("before-{i}");
        assert!(
            restored.iter().any(|r| r.id == id),
            "{id}, acknowledged before the backup, is missing"
        );
    }
    let status = new_client.status().await.unwrap();
    assert_eq!(status.revision, revision);
    assert!(status.term > summary["log_term"].as_u64().unwrap());
    assert!(status.commit_index > index);

    // It goes on from there, and a node added later gets the state.
    ingest(&new_client, &tags, "after-", 0, BATCH).await;
    let after = all_readings(&new_client, &tags, Consistency::Linearizable).await;
    let newest: Vec<_> = after
        .iter()
        .filter(|r| r.id.starts_with("after-"))
        .collect();
    assert_eq!(newest.len(), BATCH);
    assert!(newest.iter().all(|r| r.revision > revision));
    let addr = new.start_joining(4);
    new_client.add_member(4, &addr, false).await.unwrap();
    let commit = new_client.status().await.unwrap().commit_index;
    new.wait_applied(4, commit, Duration::from_secs(60)).await;
    let on_4 = all_readings(&new.node_client(4), &tags, Consistency::Local).await;
    assert!(
        by_revision(&on_4) == by_revision(&after),
        "node 4 does not hold the restored state"
    );
    new.assert_replicas_agree().await;
}
