//! Disaster recovery end to end, with a writer ingesting throughout and
//! every reading it got acknowledged checked at the end:
//!
//! - a five-node cluster loses three nodes for good (the leader among
//!   them); `bifrost recover` tells the two survivors' logs apart, the
//!   longer one is forced into a new cluster of itself, and two new nodes
//!   are added to it;
//! - a dead node is replaced by an empty one under a new id (`member rm`,
//!   `member add`), and a node whose disk was wiped comes back under its
//!   own id (`member rm`, `serve --join`, `member add`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The cluster's members as the node behind `client` sees them.
async fn member_ids(client: &bifrost_client::Client) -> BTreeSet<u64> {
    let status = client.status().await.unwrap();
    status.members.iter().map(|m| m.id).collect()
}

/// `bifrost recover` of node `id`, given the other survivors' last logs
/// (`ID:TERM:INDEX`): success, stdout and stderr.
fn recover(data_dir: &Path, id: u64, force: bool, survivors: &[String]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bifrost"));
    cmd.arg("recover")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--id", &id.to_string()]);
    if force {
        cmd.arg("--force-new-cluster");
    }
    for s in survivors {
        cmd.args(["--survivor", s]);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `(term, index)` of the last log in `recover`'s report.
fn last_log(report: &str) -> (u64, u64) {
    let words: Vec<&str> = report.split_whitespace().collect();
    let at = words
        .windows(2)
        .position(|w| w == ["log", "term"])
        .unwrap_or_else(|| panic!("{report}"));
    let number = |i: usize| words[i].trim_end_matches(';').parse::<u64>().unwrap();
    assert_eq!(words[at + 3], "index", "{report}");
    (number(at + 2), number(at + 4))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_of_a_lost_majority_becomes_a_new_cluster_with_every_acknowledged_reading() {
    let mut c = TestCluster::start(5, &[]);
    let leader = c
        .wait_leader(&[1, 2, 3, 4, 5], Duration::from_secs(30))
        .await;
    let tags = setup_tags(&c.client(), 4).await;
    let writer = Writer::start(&c, tags.clone());
    writer.wait_acked(1_000).await;

    // Three nodes lost for good, the leader among them, while writing.
    let lost: Vec<u64> = std::iter::once(leader)
        .chain((1..=5).filter(|&id| id != leader).take(2))
        .collect();
    for &id in &lost {
        c.kill(id);
    }
    let survivors: Vec<u64> = (1..=5).filter(|id| !lost.contains(id)).collect();
    // Nothing commits any more: the writer's calls fail (an answer to a
    // call made before the loss may still arrive within a second).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stalled = writer.acked();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let acked = writer.stop().await;
    assert_eq!(
        acked.len(),
        stalled,
        "a write was acknowledged without a quorum"
    );
    for &id in &survivors {
        c.kill(id);
    }

    // Each survivor says where its log ends; the longer one is recovered.
    let mut ends = Vec::new();
    for &id in &survivors {
        let (ok, report) = recover(&c.node(id).data_dir, id, false, &[]);
        assert!(ok, "{report}");
        assert!(report.contains("voters 1, 2, 3, 4, 5"), "{report}");
        let (term, index) = last_log(&report);
        assert!(
            report.contains(&format!("--survivor {id}:{term}:{index}\n")),
            "{report}"
        );
        ends.push(((term, index), id));
    }
    ends.sort();
    let [(other_end, other), (chosen_end, chosen)] = ends[..] else {
        panic!("two survivors: {ends:?}")
    };
    let arg = |(term, index): (u64, u64), id: u64| vec![format!("{id}:{term}:{index}")];
    // Told the other's last log, each survivor names the one to recover,
    // and the shorter log refuses to be forced (a tie may go either way).
    let (ok, report) = recover(
        &c.node(chosen).data_dir,
        chosen,
        false,
        &arg(other_end, other),
    );
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!(
            "recover node {chosen}: its last log is the greatest"
        )),
        "{report}"
    );
    if other_end < chosen_end {
        let told = arg(chosen_end, chosen);
        let (ok, report) = recover(&c.node(other).data_dir, other, false, &told);
        assert!(
            ok && report.contains(&format!("recover node {chosen} instead")),
            "{report}"
        );
        let (ok, report) = recover(&c.node(other).data_dir, other, true, &told);
        assert!(
            !ok && report.contains(&format!("recover node {chosen} instead")),
            "{report}"
        );
    }
    let (ok, report) = recover(&c.node(chosen).data_dir, 99, true, &[]);
    assert!(
        !ok && report.contains("node 99 is not a member"),
        "{report}"
    );
    let (ok, report) = recover(
        &c.node(chosen).data_dir,
        chosen,
        true,
        &arg(other_end, other),
    );
    assert!(ok && report.contains("only voter"), "{report}");
    let (_, after) = recover(&c.node(chosen).data_dir, chosen, false, &[]);
    assert!(after.contains(&format!("voters {chosen}\n")), "{after}");

    c.restart(chosen);
    assert_eq!(
        c.wait_leader(&[chosen], Duration::from_secs(30)).await,
        chosen
    );
    let client = c.node_client(chosen);
    assert_holds_once(&client, &tags, &acked, chosen).await;

    // Grown back to three with new nodes; writes are acknowledged again.
    for id in [6, 7] {
        let addr = c.start_joining(id);
        client.add_member(id, &addr, false).await.unwrap();
    }
    assert_eq!(member_ids(&client).await, [chosen, 6, 7].into());
    client
        .ingest(vec![reading("after", &tags[0], 1, 2.0)])
        .await
        .unwrap();
    let commit = client.status().await.unwrap().commit_index;
    for id in [6, 7] {
        c.wait_applied(id, commit, Duration::from_secs(60)).await;
        assert_holds_once(&c.node_client(id), &tags, &acked, id).await;
    }
    c.assert_replicas_agree().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_replaced_by_a_new_one_and_a_wiped_node_rejoins_without_losing_a_reading() {
    let mut c = TestCluster::start(3, &[]);
    c.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let tags = setup_tags(&c.client(), 4).await;
    let writer = Writer::start(&c, tags.clone());
    writer.wait_acked(300).await;
    let admin = c.client();

    // Node 3 dies for good; an empty node 4 takes its place.
    c.kill(3);
    admin.remove_member(3).await.unwrap();
    let addr = c.start_joining(4);
    admin.add_member(4, &addr, false).await.unwrap();
    writer.wait_acked(writer.acked() + 300).await;

    // Node 2's disk is wiped: it is removed, comes back empty under its own
    // id without forming a cluster of its own, and is added again.
    c.kill(2);
    admin.remove_member(2).await.unwrap();
    std::fs::remove_dir_all(&c.node(2).data_dir).unwrap();
    c.restart_with_env(2, &[("BIFROST_JOIN", "true")]).unwrap();
    admin
        .add_member(2, &c.node(2).member(), false)
        .await
        .unwrap();
    writer.wait_acked(writer.acked() + 300).await;
    let acked = writer.stop().await;

    assert_eq!(member_ids(&admin).await, [1, 2, 4].into());
    let leader = c.wait_leader(&[1, 2, 4], Duration::from_secs(30)).await;
    for id in [1, 2, 4] {
        c.catch_up(id, leader, Duration::from_secs(60)).await;
        assert_holds_once(&c.node_client(id), &tags, &acked, id).await;
    }
    c.assert_replicas_agree().await;
}
