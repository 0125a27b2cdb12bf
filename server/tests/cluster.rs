//! End-to-end tests on three (or four) real `bifrost serve` processes.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bifrost_client::Consistency;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_write_acknowledged_by_one_node_is_read_linearizably_on_another() {
    let cluster = TestCluster::start(3, &[]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    cluster
        .node_client(1)
        .put_device(device("plc1"), true)
        .await
        .unwrap();
    for i in 0..15u64 {
        // Write through one node (often a follower, which forwards)...
        let writer = cluster.node_client(i % 3 + 1);
        let name = format!("area/tag{i}");
        writer
            .put_tag(tag(&name, "plc1", "f32"), true)
            .await
            .unwrap();
        // ...and read at once on another: the write must be visible.
        let reader = cluster.node_client((i + 1) % 3 + 1);
        let tags = reader
            .list_tags(None, Consistency::Linearizable)
            .await
            .unwrap();
        assert!(
            tags.iter().any(|t| t.name == name),
            "tag {name} acknowledged by node {} not visible on node {}",
            i % 3 + 1,
            (i + 1) % 3 + 1
        );
        let del = format!("area/tag{}", i.saturating_sub(1));
        if i > 0 && i % 4 == 0 {
            writer.delete_tag(&del, i % 8 == 0).await.unwrap();
            let tags = reader
                .list_tags(None, Consistency::Linearizable)
                .await
                .unwrap();
            assert!(
                !tags.iter().any(|t| t.name == del),
                "deleted tag {del} still visible"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_readings_survive_kill_of_the_leader_and_none_is_stored_twice() {
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let tags = setup_tags(&cluster.client(), 6).await;

    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = vec![];
    for w in 0..4 {
        let client = cluster.client();
        let (acked, stop, tags) = (acked.clone(), stop.clone(), tags.clone());
        workers.push(tokio::spawn(async move {
            let mut batch_no = 0u64;
            let mut failures = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..40)
                    .map(|i| {
                        let id = format!("w{w}-b{batch_no}-{i}");
                        let ts = (batch_no * 100 + i) as i64 * 1000;
                        reading(&id, &tags[(i as usize + w) % tags.len()], ts, i as f64)
                    })
                    .collect();
                let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
                match client.ingest(batch).await {
                    Ok(resp) => {
                        assert_eq!(resp.stored + resp.duplicates, ids.len() as u64);
                        acked.lock().unwrap().extend(ids);
                        batch_no += 1;
                    }
                    // Not acknowledged: may or may not be stored; not counted.
                    Err(_) => {
                        failures += 1;
                        batch_no += 1;
                    }
                }
            }
            failures
        }));
    }
    let wait_for = |n: usize| {
        let acked = acked.clone();
        async move {
            wait_until_async(
                format!("{n} acknowledged readings (ingest stalled below)"),
                Duration::from_secs(60),
                || {
                    let done = acked.lock().unwrap().len() >= n;
                    async move { done }
                },
            )
            .await;
        }
    };
    wait_for(2_000).await;
    cluster.kill(leader);
    let before_kill = acked.lock().unwrap().len();
    // Ingest must go on through the new leader.
    wait_for(before_kill + 2_000).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let check = |readings: Vec<bifrost_client::proto::Reading>, who: String| {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for r in &readings {
            *count.entry(r.id.clone()).or_default() += 1;
        }
        let dup: Vec<_> = count.iter().filter(|(_, c)| **c > 1).take(5).collect();
        assert!(dup.is_empty(), "{who}: readings stored twice: {dup:?}");
        let missing: Vec<_> = acked
            .iter()
            .filter(|id| !count.contains_key(*id))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "{who}: acknowledged readings missing: {missing:?} (of {})",
            acked.len()
        );
        let revisions: HashSet<u64> = readings.iter().map(|r| r.revision).collect();
        assert_eq!(
            revisions.len(),
            readings.len(),
            "{who}: revisions are not unique"
        );
    };
    for id in &survivors {
        let r = all_readings(&cluster.node_client(*id), &tags, Consistency::Linearizable).await;
        check(r, format!("survivor {id}"));
    }
    cluster.restart(leader);
    let new_leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    cluster
        .catch_up(leader, new_leader, Duration::from_secs(60))
        .await;
    let r = all_readings(&cluster.node_client(leader), &tags, Consistency::Local).await;
    check(r, format!("restarted node {leader}"));
    cluster.assert_replicas_agree().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_was_down_catches_up_through_a_snapshot() {
    let (mut cluster, client, tags) = start_snapshotting().await;
    // Node 3 goes down; pick a survivor as the one we watch.
    cluster.kill(3);
    let leader = cluster.wait_leader(&[1, 2], Duration::from_secs(30)).await;
    let mut ids = Vec::new();
    ingest_named(&client, &tags, "b", 200, &mut ids).await;
    let total = ids.len();
    // The leader has compacted its log well past where node 3 stopped.
    wait_snapshot_past(&cluster, leader, 100).await;
    cluster.restart(3);
    cluster.catch_up(3, leader, Duration::from_secs(60)).await;
    assert!(
        cluster.log_of(3).contains("installed snapshot"),
        "node 3 caught up without installing a snapshot"
    );
    let r = all_readings(&cluster.node_client(3), &tags, Consistency::Local).await;
    assert_eq!(
        r.len(),
        total,
        "node 3 holds {} of {total} readings after the snapshot",
        r.len()
    );
    // And it keeps replicating normally afterwards.
    client
        .ingest(vec![reading("after", &tags[0], 1_000_000, 1.0)])
        .await
        .unwrap();
    cluster.catch_up(3, leader, Duration::from_secs(30)).await;
    let r = all_readings(&cluster.node_client(3), &tags, Consistency::Local).await;
    assert!(r.iter().any(|r| r.id == "after"));
    cluster.assert_replicas_agree().await;
}

/// What node `id` reports of the last snapshot transfer on one side
/// (`sent` or `received`): (transfers since start, files and bytes
/// shipped, files and bytes reused).
async fn snapshot_transfer(cluster: &TestCluster, id: u64, direction: &str) -> [u64; 5] {
    let http = &cluster.node(id).http;
    let get = |name: &str, how: Option<&str>| {
        let name = match how {
            Some(how) => format!("{name}{{direction=\"{direction}\",how=\"{how}\"}}"),
            None => format!("{name}{{direction=\"{direction}\"}}"),
        };
        async move { metric(http, &name).await.unwrap_or(0) }
    };
    [
        get("bifrost_raft_snapshot_transfers", None).await,
        get("bifrost_raft_snapshot_last_files", Some("shipped")).await,
        get("bifrost_raft_snapshot_last_bytes", Some("shipped")).await,
        get("bifrost_raft_snapshot_last_files", Some("reused")).await,
        get("bifrost_raft_snapshot_last_bytes", Some("reused")).await,
    ]
}

/// Ingests `batches` batches of ten readings named `PREFIX-B-I` over
/// `tags`, adding their ids to `ids`.
async fn ingest_named(
    client: &bifrost_client::Client,
    tags: &[String],
    prefix: &str,
    batches: usize,
    ids: &mut Vec<String>,
) {
    let first_ts = ids.len() as i64;
    for b in 0..batches {
        let batch: Vec<_> = (0..10)
            .map(|i| {
                let ts = first_ts + (b * 10 + i) as i64;
                reading(
                    &format!("{prefix}-{b}-{i}"),
                    &tags[i % tags.len()],
                    ts,
                    b as f64,
                )
            })
            .collect();
        ids.extend(batch.iter().map(|r| r.id.clone()));
        client.ingest(batch).await.unwrap();
    }
}

/// Node `id` holds exactly the readings `ids`, each once.
async fn assert_holds_once(cluster: &TestCluster, id: u64, tags: &[String], ids: &[String]) {
    let held = all_readings(&cluster.node_client(id), tags, Consistency::Local).await;
    let mut seen = HashSet::new();
    for r in &held {
        assert!(seen.insert(r.id.clone()), "node {id} holds {} twice", r.id);
    }
    let expected: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        seen.len(),
        expected.len(),
        "node {id} holds {} readings, {} were acknowledged",
        seen.len(),
        expected.len()
    );
    assert_eq!(seen, expected, "node {id} holds other readings");
}

/// Three nodes that build a snapshot every 40 log entries and keep 5
/// behind it, with a leader, a client and three tags.
async fn start_snapshotting() -> (TestCluster, bifrost_client::Client, Vec<String>) {
    let cluster = TestCluster::start(3, &["--snapshot-logs", "40", "--keep-logs", "5"]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    let tags = setup_tags(&client, 3).await;
    (cluster, client, tags)
}

/// Waits until the leader's snapshot is past `index` and its log purged
/// past it (openraft purges a little after the build): a follower at
/// `index` can then only catch up through a snapshot.
async fn wait_snapshot_past(cluster: &TestCluster, leader: u64, index: u64) {
    wait_until_async(
        &format!("the leader to build a snapshot and purge its log past index {index}"),
        Duration::from_secs(30),
        || async {
            let s = cluster.node_client(leader).status().await.unwrap();
            if s.snapshot_index > index && s.purged_index > index {
                Ok(())
            } else {
                Err(s)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_behind_a_second_time_is_shipped_only_the_snapshot_files_it_lacks() {
    let (mut cluster, client, tags) = start_snapshotting().await;
    // Plant configuration that does not change afterwards: 300 tags with
    // 2 KB descriptions that do not compress, imported in four parts with
    // a snapshot build (a table flush) after each. RocksDB merges four
    // fresh tables of a column family into one on the bottom level, which
    // it then leaves alone (a lone fresh table is rewritten once more,
    // later, to drop its sequence numbers): the same file in both
    // snapshots below.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut ids = Vec::new();
    for part in 0..4 {
        let config: Vec<_> = (0..75)
            .map(|i| {
                let description: String = (0..128)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        format!("{:016x}", seed >> 1)
                    })
                    .collect();
                bifrost_client::proto::Tag {
                    description,
                    ..tag(&format!("line2/c{part}-{i}"), "plc1", "f64")
                }
            })
            .collect();
        client.import(vec![], config).await.unwrap();
        ingest_named(&client, &tags, &format!("w{part}"), 45, &mut ids).await;
    }

    // Down while the leader moves past it: it catches up through a snapshot.
    let stopped_at = cluster
        .node_client(3)
        .status()
        .await
        .unwrap()
        .last_log_index;
    cluster.kill(3);
    let leader = cluster.wait_leader(&[1, 2], Duration::from_secs(30)).await;
    ingest_named(&client, &tags, "a", 200, &mut ids).await;
    wait_snapshot_past(&cluster, leader, stopped_at + 100).await;
    cluster.restart(3);
    cluster.catch_up(3, leader, Duration::from_secs(60)).await;
    let first = snapshot_transfer(&cluster, 3, "received").await;
    assert!(first[0] >= 1, "node 3 caught up without a snapshot");
    assert!(
        first[2] > 0,
        "the first snapshot shipped nothing: {first:?}"
    );
    assert_holds_once(&cluster, 3, &tags, &ids).await;

    // Down again while more arrives and the leader builds a newer snapshot.
    let stopped_at = cluster
        .node_client(3)
        .status()
        .await
        .unwrap()
        .last_log_index;
    cluster.kill(3);
    ingest_named(&client, &tags, "b", 60, &mut ids).await;
    wait_snapshot_past(&cluster, leader, stopped_at + 20).await;
    let sent_before = snapshot_transfer(&cluster, leader, "sent").await[0];
    cluster.restart(3);
    cluster.catch_up(3, leader, Duration::from_secs(60)).await;
    let second = snapshot_transfer(&cluster, 3, "received").await;
    let [transfers, files_shipped, bytes_shipped, files_reused, bytes_reused] = second;
    eprintln!(
        "first snapshot: {} files, {} bytes shipped; second: {files_shipped} files, \
         {bytes_shipped} bytes shipped, {files_reused} files, {bytes_reused} bytes reused",
        first[1], first[2]
    );
    assert!(transfers >= 1, "node 3 caught up without a second snapshot");
    assert!(
        files_reused > 0,
        "no file of the first snapshot was reused: {second:?}"
    );
    assert!(
        bytes_reused > 0,
        "the second snapshot shipped all its bytes: {second:?}"
    );
    assert!(
        bytes_shipped < first[2],
        "the second snapshot shipped {bytes_shipped} bytes, the first {}",
        first[2]
    );
    // The leader counted the same transfer.
    let sent = snapshot_transfer(&cluster, leader, "sent").await;
    assert!(sent[0] > sent_before, "the leader counted no transfer");
    assert_eq!(sent[1..], second[1..], "the leader and node 3 disagree");
    assert_holds_once(&cluster, 3, &tags, &ids).await;
    cluster.assert_replicas_agree().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_added_at_run_time_joins_and_holds_all_data() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    let tags = setup_tags(&client, 2).await;
    for b in 0..20 {
        let batch: Vec<_> = (0..25)
            .map(|i| {
                reading(
                    &format!("pre{b}-{i}"),
                    &tags[i % 2],
                    (b * 25 + i) as i64,
                    0.5,
                )
            })
            .collect();
        client.ingest(batch).await.unwrap();
    }
    let addr = cluster.start_joining(4);
    let members = client.add_member(4, &addr, false).await.unwrap();
    let m4 = members
        .iter()
        .find(|m| m.id == 4)
        .expect("node 4 in membership");
    assert_ne!(m4.role, "learner", "node 4 should be a voter: {members:?}");
    client
        .ingest(vec![reading("post", &tags[0], 10_000_000, 2.0)])
        .await
        .unwrap();
    let status = client.status().await.unwrap();
    assert_eq!(status.members.len(), 4);
    cluster
        .wait_applied(4, status.commit_index, Duration::from_secs(30))
        .await;
    let r = all_readings(&cluster.node_client(4), &tags, Consistency::Local).await;
    assert_eq!(r.len(), 20 * 25 + 1);
    let devices = cluster
        .node_client(4)
        .list_devices(Consistency::Local)
        .await
        .unwrap();
    assert_eq!(devices.len(), 1);
    // Node 4 votes: with two of the original three down, 2 of 4 is no
    // majority, but with one down, 3 of 4 (including node 4) is.
    cluster.kill(1);
    cluster
        .wait_leader(&[2, 3, 4], Duration::from_secs(30))
        .await;
    cluster
        .node_client(4)
        .ingest(vec![reading("quorum-with-4", &tags[1], 20_000_000, 3.0)])
        .await
        .unwrap();
    // Removing a member shrinks the membership.
    let members = cluster.node_client(2).remove_member(1).await.unwrap();
    assert!(members.iter().all(|m| m.id != 1), "{members:?}");
    cluster.assert_replicas_agree().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_and_tag_updates_with_a_revision_precondition_are_compare_and_set() {
    let cluster = TestCluster::start(3, &[]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    // 0 means "must not exist yet".
    let d = client.put_device_if(device("reg"), 0).await.unwrap();
    let e = client.put_device_if(device("reg"), 0).await.unwrap_err();
    assert!(
        e.to_string().contains(&format!("it is {}", d.revision)),
        "{e}"
    );
    let mut v1 = device("reg");
    v1.labels.insert("value".into(), "1".into());
    let d1 = client.put_device_if(v1.clone(), d.revision).await.unwrap();
    assert!(d1.revision > d.revision);
    // A stale precondition changes nothing and names the actual revision.
    let mut v2 = device("reg");
    v2.labels.insert("value".into(), "2".into());
    let e = client.put_device_if(v2, d.revision).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("expected revision {}", d.revision)),
        "{msg}"
    );
    assert!(msg.contains(&format!("it is {}", d1.revision)), "{msg}");
    let now = client
        .list_devices(Consistency::Linearizable)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.name == "reg")
        .unwrap();
    assert_eq!(now.labels.get("value").map(String::as_str), Some("1"));
    assert_eq!(now.revision, d1.revision);
    // Tags work the same way.
    let t = client
        .put_tag_if(tag("reg/t", "reg", "f64"), 0)
        .await
        .unwrap();
    let mut t2 = tag("reg/t", "reg", "f64");
    t2.units = "bar".into();
    assert!(client
        .put_tag_if(t2.clone(), t.revision + 1000)
        .await
        .is_err());
    let t3 = client.put_tag_if(t2, t.revision).await.unwrap();
    assert_eq!(t3.units, "bar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_node_grows_into_three_with_member_add_and_keeps_every_reading() {
    let mut cluster = TestCluster(Cluster::start(options(1, &[]).single()).unwrap());
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let client = cluster.client();
    let tags = setup_tags(&client, 2).await;
    let mut ids = Vec::new();
    ingest_named(&client, &tags, "alone", 20, &mut ids).await;
    let status = client.status().await.unwrap();
    assert_eq!(status.members.len(), 1, "{:?}", status.members);
    assert_eq!(status.leader_id, 1);

    for id in [2, 3] {
        let addr = cluster.start_joining(id);
        let members = client.add_member(id, &addr, false).await.unwrap();
        assert!(
            members.iter().any(|m| m.id == id && m.role != "learner"),
            "{members:?}"
        );
    }
    ingest_named(&client, &tags, "three", 5, &mut ids).await;
    let commit = client.status().await.unwrap().commit_index;
    for id in [2, 3] {
        cluster
            .wait_applied(id, commit, Duration::from_secs(30))
            .await;
        assert_holds_once(&cluster, id, &tags, &ids).await;
    }
    // It is a cluster of three now: the first node's loss leaves a majority.
    cluster.kill(1);
    cluster.wait_leader(&[2, 3], Duration::from_secs(30)).await;
    ingest_named(&cluster.client_without(1), &tags, "without-1", 2, &mut ids).await;
    cluster.restart(1);
    let commit = cluster.node_client(2).status().await.unwrap().commit_index;
    cluster
        .wait_applied(1, commit, Duration::from_secs(30))
        .await;
    assert_holds_once(&cluster, 1, &tags, &ids).await;
    cluster.assert_replicas_agree().await;
}

#[test]
fn single_refuses_peers_and_an_unspecified_address_without_advertise() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bifrost"))
            .args(["serve", "--id", "1", "--insecure", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "0.0.0.0:0", "--peer-listen", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0", "--single"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let both = serve(&["--peers", "1=127.0.0.1:1/127.0.0.1:2"]);
    assert!(
        both.contains("'--single' cannot be used with '--peers"),
        "{both}"
    );
    let anywhere = serve(&[]);
    assert!(
        anywhere.contains("--single with --listen 0.0.0.0:0"),
        "{anywhere}"
    );
    assert!(anywhere.contains("give --advertise"), "{anywhere}");
}
