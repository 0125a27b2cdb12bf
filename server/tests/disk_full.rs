//! A node whose disk fills up refuses writes with an error that says so,
//! stays up and answers reads, lets a command that frees space through,
//! and takes writes again once space returns; every acknowledged reading
//! is kept. A follower whose disk fills up refuses new log entries while
//! the other two go on committing, and catches up once space returns. The
//! data directory is a small tmpfs, grown while the node runs (mounting
//! needs root, which CI has; elsewhere the test fails saying so).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bifrost_client::proto::Reading;
use bifrost_client::Consistency;
use common::*;
use tonic::Code;

/// A tmpfs of `size` MiB mounted on a directory; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test mounts a tmpfs as a node's data directory: run it as root (CI does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"],
            dir,
        );
        Tmpfs(dir.to_path_buf())
    }

    fn grow(&self, mib: u32) {
        mount(&["-o", &format!("remount,size={mib}m")], &self.0);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], dir: &Path) {
    let out = Command::new("mount").args(args).arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "mount {args:?} {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A reading id of the longest kind, different every time.
fn long_id(n: usize) -> String {
    let hash = blake3::hash(&n.to_le_bytes()).to_hex().to_string();
    format!("{n}-{hash}{hash}")[..120].to_string()
}

/// Readings `n..n + 1000` over `tags`, with the longest ids: the ids and
/// the batch to ingest.
fn long_batch(n: usize, tags: &[String]) -> (Vec<String>, Vec<Reading>) {
    let ids: Vec<String> = (n..n + 1000).map(long_id).collect();
    let batch = ids
        .iter()
        .enumerate()
        .map(|(i, id)| reading(id, &tags[i % tags.len()], (n + i) as i64, i as f64))
        .collect();
    (ids, batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_clearly_and_they_resume_when_space_returns() {
    let opts = options(1, &["--min-free-disk", "16MiB"]).single();
    let mut c = TestCluster(Cluster::create(opts).unwrap());
    let disk = Tmpfs::mount(&c.node(1).data_dir, 48);
    c.start_nodes().unwrap();
    c.wait_leader(&[1], Duration::from_secs(30)).await;
    let client = c.client();
    let tags = setup_tags(&client, 4).await;
    let pid = c.pid(1);

    let mut acked = Vec::new();
    let mut n = 0;
    let refusal = loop {
        assert!(n < 2_000_000, "the disk never filled up");
        let (ids, batch) = long_batch(n, &tags);
        n += 1000;
        match client.ingest(batch).await {
            Ok(_) => acked.extend(ids),
            Err(e) => break e,
        }
    };
    let status = refusal.status().unwrap_or_else(|| panic!("{refusal}"));
    assert_eq!(status.code(), Code::ResourceExhausted, "{refusal}");
    let msg = status.message();
    assert!(
        msg.contains("node 1") && msg.contains("--min-free-disk"),
        "{msg}"
    );
    assert!(
        msg.contains("writes are refused until space is freed"),
        "{msg}"
    );
    assert!(
        acked.len() >= 10_000,
        "refused after only {} readings",
        acked.len()
    );

    // Up, readable, and saying why.
    assert_eq!(c.pid(1), pid, "the node restarted");
    assert_eq!(metric(&c.node(1).http, "bifrost_disk_low").await, Some(1));
    let current = client
        .get_current(tags.clone(), Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(current.len(), tags.len());
    // Setting the retention frees space: it is not refused.
    client.set_retention(0).await.unwrap();
    let e = client.put_device(device("plc2"), true).await.unwrap_err();
    assert_eq!(
        e.status().map(|s| s.code()),
        Some(Code::ResourceExhausted),
        "{e}"
    );

    disk.grow(256);
    let after = vec![reading("after-growth", &tags[0], 1, 1.0)];
    wait_until_async(
        "an ingest after the disk grew",
        Duration::from_secs(30),
        || {
            let (client, after) = (client.clone(), after.clone());
            async move { client.ingest(after).await.is_ok() }
        },
    )
    .await;
    acked.push("after-growth".into());
    assert_eq!(metric(&c.node(1).http, "bifrost_disk_low").await, Some(0));
    assert_eq!(c.pid(1), pid, "the node restarted");
    assert_holds_once(&client, &tags, &acked, 1).await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_full_disk_refuses_entries_and_catches_up_when_space_returns() {
    let opts = options(3, &["--min-free-disk", "16MiB"]);
    let mut c = TestCluster(Cluster::create(opts).unwrap());
    let disk = Tmpfs::mount(&c.node(3).data_dir, 48);
    c.start_nodes().unwrap();
    // Node 3 must be a follower: while it leads, its own disk refuses writes.
    if c.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await == 3 {
        c.kill(3);
        c.wait_leader(&[1, 2], Duration::from_secs(30)).await;
        c.restart(3);
    }
    let client = c.client();
    let tags = setup_tags(&client, 4).await;
    let pid = c.pid(3);

    // The majority takes every batch while node 3's disk fills.
    let mut acked = Vec::new();
    let mut n = 0;
    while metric(&c.node(3).http, "bifrost_disk_low").await != Some(1) {
        assert!(n < 2_000_000, "node 3's disk never filled up");
        let (ids, batch) = long_batch(n, &tags);
        n += 1000;
        client.ingest(batch).await.unwrap();
        acked.extend(ids);
    }
    // Low, it applies nothing more; the others commit without it.
    async fn applied(c: &TestCluster) -> u64 {
        c.0.status(3).await.map_or(0, |s| s.applied_index)
    }
    let held = applied(&c).await;
    for i in 0..20 {
        let id = format!("while-low-{i}");
        client
            .ingest(vec![reading(&id, &tags[0], 3_000_000 + i as i64, 1.0)])
            .await
            .unwrap();
        acked.push(id);
    }
    let commit = client.status().await.unwrap().commit_index;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stuck = applied(&c).await;
    assert!(
        stuck < commit,
        "node 3 applied {stuck} of {commit} (from {held}) with its disk low"
    );
    assert_eq!(c.pid(3), pid, "node 3 restarted");

    disk.grow(256);
    c.wait_applied(3, commit, Duration::from_secs(60)).await;
    assert_eq!(metric(&c.node(3).http, "bifrost_disk_low").await, Some(0));
    assert_eq!(c.pid(3), pid, "node 3 restarted");
    assert_holds_once(&c.node_client(3), &tags, &acked, 3).await;
    drop(c);
}
