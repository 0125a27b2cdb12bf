//! A rolling upgrade: a cluster of the previous release's `bifrost`
//! (`scripts/previous-release.sh` builds it from the commit in
//! `packaging/previous-release`; `scripts/test.sh` does so and sets
//! `BIFROST_PREVIOUS_BIN`) has its nodes stopped and started again on this
//! build's binary one at a time, followers first, while a writer ingests.
//! Every acknowledged reading ends up on every node once, with one
//! revision, and the replicas agree.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// The previous release's binary; a missing one fails the test saying how
/// to make it.
fn previous_release() -> PathBuf {
    let Some(path) = std::env::var_os("BIFROST_PREVIOUS_BIN") else {
        panic!(
            "BIFROST_PREVIOUS_BIN is not set: it names the previous release's bifrost, which \
             scripts/previous-release.sh builds and prints (scripts/test.sh runs it)"
        )
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "BIFROST_PREVIOUS_BIN names {}, which is not a file",
        path.display()
    );
    path
}

/// The binary node `id` runs now.
fn running_binary(c: &TestCluster, id: u64) -> PathBuf {
    let pid = c.pid(id);
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_from_the_previous_release_loses_and_duplicates_no_reading() {
    let previous = canonical(&previous_release());
    let current = canonical(Path::new(env!("CARGO_BIN_EXE_bifrost")));
    assert_ne!(previous, current);
    let opts = ClusterOptions {
        bin: previous.clone(),
        ..options(3, &[])
    };
    let mut c = TestCluster(Cluster::start(opts).unwrap());
    let leader = c.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    for id in 1..=3 {
        assert_eq!(running_binary(&c, id), previous);
    }
    let tags = setup_tags(&c.client(), 4).await;
    let writer = Writer::start(&c, tags.clone());
    writer.wait_acked(300).await;

    let mut order: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    order.push(leader);
    for id in order {
        let status = c.stop(id, Duration::from_secs(30)).await.unwrap();
        assert!(status.success(), "node {id} stopped with {status}");
        c.set_binary(id, &current);
        c.restart(id);
        c.0.wait_healthy(&[1, 2, 3], Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(running_binary(&c, id), current);
        writer.wait_acked(writer.acked() + 300).await;
    }
    let acked = writer.stop().await;

    let leader = c.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    for id in 1..=3 {
        c.catch_up(id, leader, Duration::from_secs(60)).await;
        assert_holds_once(&c.node_client(id), &tags, &acked, id).await;
    }
    c.assert_replicas_agree().await;
}
