//! Kills that land where they hurt: node 3 of a real cluster is started
//! with `BIFROST_CRASH_AT` naming one crash point after another (inside a
//! state flush, a segment merge step, a snapshot build, a snapshot
//! install), dies there by `abort()`, and is restarted without it. After
//! each crash every node must hold every acknowledged ingested reading
//! exactly once, every revision from 1 up exactly once, the same readings
//! as the others, and the replica check must be clean. Two simulated
//! devices are polled throughout, so acquired readings cross the crashes
//! too: no counter value is ever stored twice, and none is lost but a poll
//! in flight when its owner died.
//!
//! That a kill landed at its point is proven, not assumed: the node must
//! exit on its own by SIGABRT, with the line naming the point (and the
//! how-many-th time it was reached) in its log exactly once.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bifrost_client::proto::{self, Device, ImportRequest, Reading, Tag};
use bifrost_client::{Client, Consistency};
use bifrost_storage::crash;
use bifrost_testkit::Deadline;
use common::*;

/// The node that crashes.
const VICTIM: u64 = 3;
/// Log entries kept behind a snapshot: enough for the victim to catch up
/// from the log after a crash of a few seconds, so that its restart replays
/// its own log from its last flush instead of receiving a snapshot.
const KEEP_LOGS: u64 = 100;
/// A snapshot, so a flush, every this many log entries: flushes come
/// often, and eight of them (a segment group) soon wait to be merged.
const SNAPSHOT_LOGS: u64 = 20;
const DEVICES: u32 = 2;
const POLL_MS: u64 = 250;
/// How long a node may take to reach an armed point, and the others to
/// move on far enough.
const REACH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the victim dies, in order: while it ingests and polls (flush,
/// merge, snapshot build), then while it catches up by a snapshot.
const WHILE_RUNNING: &[&str] = &[
    "flush-before-write:2",
    "flush-after-write:2",
    "merge-before-write:1",
    "merge-after-write:1",
    "snapshot-build:1",
];
const WHILE_INSTALLING: &[&str] = &["install-before-switch:1", "snapshot-install:1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_inside_a_flush_merge_or_snapshot_loses_and_duplicates_nothing() {
    let mut run = Run::start().await;
    for spec in WHILE_RUNNING {
        run.arm(spec);
        let status = run.ingest_until_victim_exits().await;
        run.assert_died_at(spec, status);
        if spec.starts_with("snapshot-build") {
            run.assert_snapshot_build_left_unpublished();
        }
        run.cluster.restart(VICTIM);
        run.assert_consistent(spec).await;
    }
    for spec in WHILE_INSTALLING {
        run.leave_victim_behind().await;
        let installed = run.installs();
        run.arm(spec);
        let status = run.wait_victim_exit().await;
        run.assert_died_at(spec, status);
        run.cluster.restart(VICTIM);
        run.assert_consistent(spec).await;
        if spec.starts_with("install-before-switch") {
            // The half-installed state was dropped: the snapshot came again.
            assert!(
                run.installs() > installed,
                "no snapshot installed after {spec}"
            );
        }
    }
    assert!(
        run.victim_polled,
        "node {VICTIM} polled no device at any check: its crashes proved nothing for polling"
    );
}

/// The cluster, what was acknowledged, and how often the victim died.
struct Run {
    cluster: TestCluster,
    ingest_tags: Vec<String>,
    counter_tags: Vec<String>,
    acked: HashSet<String>,
    /// Ingest batches numbered so far (ids and timestamps stay unique).
    batches: Arc<AtomicU64>,
    /// Kills and crashes of the victim: each may lose the poll in flight
    /// of each device it polled.
    deaths: usize,
    /// Whether the victim polled a device at some check.
    victim_polled: bool,
}

fn counter_tag(i: u32) -> String {
    format!("plant/sim{i}/counter")
}

/// Imports the simulator's devices (polled) and their counter tags.
async fn configure_polling(cluster: &TestCluster, port: u16) -> Vec<String> {
    let devices = (0..DEVICES)
        .map(|i| Device {
            name: format!("sim{i}"),
            protocol: "modbus-tcp".into(),
            endpoint: format!("127.0.0.1:{port}"),
            unit_id: i + 1,
            poll_interval_ms: POLL_MS,
            timeout_ms: 1000,
            retries: 0,
            enabled: true,
            ..Default::default()
        })
        .collect();
    let tags = (0..DEVICES)
        .map(|i| Tag {
            name: counter_tag(i),
            device: format!("sim{i}"),
            address: "hr:0".into(),
            data_type: "u32".into(),
            ..Default::default()
        })
        .collect();
    let mut raw = cluster.raw_client(1).await;
    raw.import(ImportRequest { devices, tags }).await.unwrap();
    (0..DEVICES).map(counter_tag).collect()
}

/// Sends ingest batch `b` (20 readings over `tags`); its ids if it was
/// acknowledged (if not, it may or may not be stored).
async fn send(client: &Client, b: u64, tags: &[String]) -> Vec<String> {
    let readings: Vec<Reading> = (0..20u64)
        .map(|i| {
            let tag = &tags[((b + i) % tags.len() as u64) as usize];
            let ts = 1_000_000 + (b * 20 + i) as i64;
            reading(&format!("b{b}-{i}"), tag, ts, i as f64)
        })
        .collect();
    let ids: Vec<String> = readings.iter().map(|r| r.id.clone()).collect();
    match client.ingest(readings).await {
        Ok(resp) => {
            assert_eq!(resp.stored + resp.duplicates, ids.len() as u64, "{resp:?}");
            ids
        }
        Err(_) => vec![],
    }
}

impl Run {
    async fn start() -> Run {
        let sim = SimOptions::new(DEVICES, 1);
        let (snapshot_logs, keep_logs) = (SNAPSHOT_LOGS.to_string(), KEEP_LOGS.to_string());
        let args = [
            "--snapshot-logs",
            &snapshot_logs,
            "--keep-logs",
            &keep_logs,
            "--failure-timeout-ms",
            "1000",
        ];
        let cluster = TestCluster::start_with_sim(3, &args, sim).await;
        cluster
            .wait_leader(&[1, 2, 3], Duration::from_secs(30))
            .await;
        let port = cluster.sim().expect("simulator").port();
        let counter_tags = configure_polling(&cluster, port).await;
        let ingest_tags = setup_tags(&cluster.client(), 4).await;
        Run {
            cluster,
            ingest_tags,
            counter_tags,
            acked: HashSet::new(),
            batches: Arc::default(),
            deaths: 0,
            victim_polled: false,
        }
    }

    /// Restarts the victim (killing it first if it runs) with `spec` armed.
    fn arm(&mut self, spec: &str) {
        if self.cluster.node(VICTIM).is_running() {
            self.cluster.kill(VICTIM);
            self.deaths += 1;
        }
        self.cluster
            .restart_with_env(VICTIM, &[(crash::ENV, spec)])
            .unwrap();
    }

    async fn wait_victim_exit(&mut self) -> std::process::ExitStatus {
        let status = self.cluster.wait_exit(VICTIM, REACH_TIMEOUT).await.unwrap();
        self.deaths += 1;
        status
    }

    /// Ingests from two concurrent clients (of every node) until the victim
    /// exits, then stops; keeps what was acknowledged.
    async fn ingest_until_victim_exits(&mut self) -> std::process::ExitStatus {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (client, tags) = (self.cluster.client(), self.ingest_tags.clone());
                let (stop, batches) = (stop.clone(), self.batches.clone());
                tokio::spawn(async move {
                    let mut acked = vec![];
                    while !stop.load(Ordering::Relaxed) {
                        let b = batches.fetch_add(1, Ordering::Relaxed);
                        acked.extend(send(&client, b, &tags).await);
                    }
                    acked
                })
            })
            .collect();
        let status = self.wait_victim_exit().await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            self.acked.extend(w.await.unwrap());
        }
        status
    }

    /// Takes the victim down and ingests through the others until the
    /// leader has a snapshot far enough past the victim's log that the
    /// log it needs is purged: the victim can only catch up by a snapshot.
    async fn leave_victim_behind(&mut self) {
        let victim_log = self.cluster.status(VICTIM).await.unwrap().last_log_index;
        self.cluster.kill(VICTIM);
        self.deaths += 1;
        let leader = self
            .cluster
            .wait_leader(&[1, 2], Duration::from_secs(30))
            .await;
        let client = self.cluster.client_without(VICTIM);
        let wanted = victim_log + KEEP_LOGS + 30;
        let deadline = Deadline::new(
            format!("node {leader} to snapshot past index {wanted}"),
            REACH_TIMEOUT,
        );
        loop {
            let b = self.batches.fetch_add(1, Ordering::Relaxed);
            self.acked.extend(send(&client, b, &self.ingest_tags).await);
            let snapshot = self.cluster.status(leader).await.map(|s| s.snapshot_index);
            if snapshot.is_some_and(|s| s >= wanted) {
                return;
            }
            deadline
                .pause(|| format!("snapshot index {snapshot:?}"))
                .await;
        }
    }

    /// Snapshots the victim installed, as its log says.
    fn installs(&self) -> usize {
        self.cluster
            .log_of(VICTIM)
            .matches("installed snapshot")
            .count()
    }

    /// The victim exited on its own by SIGABRT, its log naming the point
    /// and the time it was reached, once.
    fn assert_died_at(&self, spec: &str, status: std::process::ExitStatus) {
        assert_eq!(
            status.signal(),
            Some(libc::SIGABRT),
            "node {VICTIM} armed with {spec} ended otherwise: {status}"
        );
        let (point, time) = spec.split_once(':').expect("NAME:N");
        let line = format!("crash point {point} reached (time {time}): aborting");
        let log = self.cluster.log_of(VICTIM);
        assert_eq!(
            log.matches(&line).count(),
            1,
            "node {VICTIM}'s log should name where it died once: {line:?}"
        );
    }

    /// A build killed between storing its files and publishing leaves its
    /// checkpoint in its work directory and, in the content store, files
    /// no published manifest lists (the restart removes both).
    fn assert_snapshot_build_left_unpublished(&self) {
        let dir = self.cluster.node(VICTIM).data_dir.join("snapshots");
        let paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let built = paths
            .iter()
            .filter(|p| p.join("checkpoint").join("CURRENT").is_file())
            .count();
        assert_eq!(built, 1, "one unpublished checkpoint in {}", dir.display());
        let mut listed = HashSet::new();
        for manifest in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
            for f in m["files"].as_array().unwrap() {
                listed.insert(f["hash"].as_str().unwrap().to_string());
            }
        }
        let unlisted = std::fs::read_dir(dir.join("files"))
            .unwrap()
            .filter(|e| !listed.contains(e.as_ref().unwrap().file_name().to_str().unwrap()))
            .count();
        assert!(
            unlisted > 0,
            "the build's files are not in the store of {}",
            dir.display()
        );
    }

    /// Once the cluster is healthy: the replica check is clean, and every
    /// node holds every acknowledged reading once, revisions 1..=its
    /// revision once each, and the same reading at each revision as the
    /// others.
    async fn assert_consistent(&mut self, after: &str) {
        self.cluster.assert_replicas_agree().await;
        let mut views = vec![];
        for id in 1..=3 {
            views.push(self.view(id, after).await);
        }
        let upto = views.iter().map(|v| v.revision).min().unwrap_or(0);
        let prefix = |v: &View| -> Vec<(u64, String, String)> {
            let below = v.by_revision.range(..=upto);
            below
                .map(|(r, (id, tag))| (*r, id.clone(), tag.clone()))
                .collect()
        };
        self.assert_polled_exactly_once(&views, after);
        self.victim_polled |= self.victim_polls().await;
        let first = prefix(&views[0]);
        for v in &views[1..] {
            let other = prefix(v);
            let differ = first.iter().zip(&other).find(|(a, b)| a != b);
            assert!(
                differ.is_none() && first.len() == other.len(),
                "after {after}: nodes 1 and {} differ up to revision {upto}: {differ:?}",
                v.node
            );
        }
    }

    /// Node `id`'s readings, checked on their own.
    async fn view(&self, id: u64, after: &str) -> View {
        let who = format!("after {after}, node {id}");
        // Readings up to this revision are all there whatever is polled
        // while the tags are read.
        let revision = self.cluster.status(id).await.expect("status").revision;
        let tags = [&self.ingest_tags[..], &self.counter_tags[..]].concat();
        let client = self.cluster.node_client(id);
        let readings = all_readings(&client, &tags, Consistency::Local).await;
        let view = View::new(id, revision, &readings, &self.counter_tags);
        view.assert_sound(&who);
        let missing: Vec<&String> = self
            .acked
            .iter()
            .filter(|a| !view.ids.contains_key(*a))
            .collect();
        assert!(
            missing.is_empty(),
            "{who}: {} of {} acknowledged readings missing, such as {:?}",
            missing.len(),
            self.acked.len(),
            &missing[..missing.len().min(5)]
        );
        view
    }

    /// Polled counters, on every node: no value stored twice, none lost
    /// beyond the polls in flight at the victim's deaths; and at some check
    /// the victim was polling (else its crashes proved nothing for polling).
    fn assert_polled_exactly_once(&self, views: &[View], after: &str) {
        for v in views {
            for (tag, values) in &v.counters {
                let who = format!("after {after}, node {}, {tag}", v.node);
                let dups: Vec<&i64> = values
                    .windows(2)
                    .filter(|w| w[0] == w[1])
                    .map(|w| &w[0])
                    .collect();
                assert!(
                    dups.is_empty(),
                    "{who}: counter values stored twice: {dups:?}"
                );
                let gaps: Vec<i64> = values.windows(2).flat_map(|w| w[0] + 1..w[1]).collect();
                assert!(
                    gaps.len() <= self.deaths,
                    "{who}: {} counter values lost in {} deaths of node {VICTIM}: {gaps:?}",
                    gaps.len(),
                    self.deaths
                );
            }
        }
    }

    /// Whether the victim polls a device now, as it says.
    async fn victim_polls(&self) -> bool {
        let status = self.cluster.status(VICTIM).await.expect("status");
        status.assignments.iter().any(|a| a.node == VICTIM)
    }
}

fn int_value(r: &Reading) -> Option<i64> {
    match r.value.as_ref()?.kind.as_ref()? {
        proto::value::Kind::IntValue(v) => Some(*v),
        _ => None,
    }
}

/// One node's readings, by id and by revision, and its polled counters.
struct View {
    node: u64,
    /// The node's applied revision, asked before its readings.
    revision: u64,
    /// How often each ingested reading's id is held (polled readings
    /// carry none: their counters tell them apart).
    ids: HashMap<String, usize>,
    /// Revision -> (id, tag), and how many readings claim each revision.
    by_revision: BTreeMap<u64, (String, String)>,
    revision_claims: HashMap<u64, usize>,
    /// Each counter tag's stored values, sorted.
    counters: BTreeMap<String, Vec<i64>>,
}

impl View {
    fn new(node: u64, revision: u64, readings: &[Reading], counter_tags: &[String]) -> View {
        let mut v = View {
            node,
            revision,
            ids: HashMap::new(),
            by_revision: BTreeMap::new(),
            revision_claims: HashMap::new(),
            counters: counter_tags.iter().map(|t| (t.clone(), vec![])).collect(),
        };
        for r in readings {
            if !r.id.is_empty() {
                *v.ids.entry(r.id.clone()).or_default() += 1;
            }
            if let (Some(values), Some(value)) = (v.counters.get_mut(&r.tag), int_value(r)) {
                values.push(value);
            }
            *v.revision_claims.entry(r.revision).or_default() += 1;
            v.by_revision
                .insert(r.revision, (r.id.clone(), r.tag.clone()));
        }
        v.counters.values_mut().for_each(|c| c.sort_unstable());
        v
    }

    /// No id twice, no revision twice, none missing up to `revision`,
    /// every device polled.
    fn assert_sound(&self, who: &str) {
        let twice: Vec<_> = self.ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "{who}: readings stored more than once: {twice:?}"
        );
        let shared: Vec<_> = self
            .revision_claims
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect();
        assert!(
            shared.is_empty(),
            "{who}: revisions held by several readings: {shared:?}"
        );
        let holes: Vec<u64> = (1..=self.revision)
            .filter(|r| !self.by_revision.contains_key(r))
            .take(5)
            .collect();
        assert!(
            holes.is_empty(),
            "{who}: revisions up to {} are not dense; missing {holes:?}",
            self.revision
        );
        for (tag, values) in &self.counters {
            assert!(!values.is_empty(), "{who}: {tag} was never polled");
        }
    }
}
