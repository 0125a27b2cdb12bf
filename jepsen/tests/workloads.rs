//! The workloads and checkers against a real cluster: three `bifrost serve`
//! processes on loopback, the register, set and watch workloads for ten
//! seconds, the leader killed with `kill -9` in the middle and restarted,
//! then every checker must pass and the results folder must be complete.
//!
//! The server binary is `$BIFROST_BIN`, else the `bifrost` beside this
//! test's target directory, else `/var/cache/bifrost/target/debug/bifrost`
//! (build it with `cargo build -p bifrost-server`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bifrost_client::{Client, ClientOptions};
use bifrost_jepsen::check::{self, Validity};
use bifrost_jepsen::plot::FaultWindow;
use bifrost_jepsen::workload::{register, set, watch, Recorder};

fn bifrost_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BIFROST_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/workloads-HASH -> target/debug/bifrost
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bifrost")));
    if let Some(p) = beside.filter(|p| p.exists()) {
        return p;
    }
    let cached = PathBuf::from("/var/cache/bifrost/target/debug/bifrost");
    assert!(
        cached.exists(),
        "no bifrost binary: set BIFROST_BIN or run `cargo build -p bifrost-server`"
    );
    cached
}

/// A free port below Linux's ephemeral range, so that a client's outgoing
/// connection cannot take a dead node's port while it is down (see
/// server/tests/common/mod.rs).
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id() * 131
        + std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let _ = NEXT.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let port = 20_000 + (NEXT.fetch_add(1, Ordering::Relaxed) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Node {
    grpc: String,
    http: String,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    peers: String,
    nodes: BTreeMap<u64, Node>,
}

impl Cluster {
    fn start(n: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            nodes.insert(
                id,
                Node {
                    grpc: format!("127.0.0.1:{}", free_port()),
                    http: format!("127.0.0.1:{}", free_port()),
                    data: dir.path().join(format!("node{id}")),
                    log: dir.path().join(format!("node{id}.log")),
                    child: None,
                },
            );
        }
        let peers = nodes
            .iter()
            .map(|(id, n)| format!("{id}={}", n.grpc))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            bin: bifrost_bin(),
            dir,
            peers,
            nodes,
        };
        for id in 1..=n {
            c.restart(id);
        }
        c
    }

    fn restart(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(node.child.is_none(), "node {id} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["serve", "--id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.data)
            .args(["--listen", &node.grpc, "--http", &node.http])
            .args(["--peers", &self.peers])
            .args(["--heartbeat-ms", "50"])
            .args(["--election-min-ms", "400", "--election-max-ms", "800"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn bifrost");
        node.child = Some(child);
    }

    /// `kill -9`.
    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes.get_mut(&id).unwrap().child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.grpc.clone()).collect()
    }

    fn node_client(&self, id: u64) -> Client {
        Client::connect_with(
            vec![self.nodes[&id].grpc.clone()],
            ClientOptions {
                deadline: Duration::from_secs(2),
                request_timeout: Duration::from_secs(1),
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// Waits until every node in `among` names the same leader, one of them,
    /// and has applied what that leader had committed.
    async fn wait_healthy(&self, among: &[u64], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = vec![];
            for id in among {
                if let Ok(s) = self.node_client(*id).status().await {
                    seen.push((s.leader_id, s.commit_index, s.applied_index));
                }
            }
            if seen.len() == among.len()
                && among.contains(&seen[0].0)
                && seen.iter().all(|s| s.0 == seen[0].0)
            {
                let leader = seen[0].0;
                let commit = seen[among.iter().position(|id| *id == leader).unwrap()].1;
                if seen.iter().all(|s| s.2 >= commit) {
                    return leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "cluster {among:?} not healthy within {timeout:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (id, n) in &self.nodes {
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out += &format!("---- node {id} (last 30 lines) ----\n");
            for l in &lines[lines.len().saturating_sub(30)..] {
                out += l;
                out += "\n";
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("cluster directory kept: {}", dir.keep().display());
        }
    }
}

fn assert_file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!text.is_empty(), "{name} is empty");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_set_and_watch_pass_every_checker_across_a_leader_kill() {
    let mut cluster = Cluster::start(3);
    let endpoints = cluster.endpoints();
    cluster
        .wait_healthy(&[1, 2, 3], Duration::from_secs(60))
        .await;

    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let recorder = Recorder::create(&results.join("history.jsonl")).unwrap();

    let set_opts = set::SetOptions::default();
    set::setup(&endpoints, &set_opts).await.unwrap();
    let reg_opts = register::RegisterOptions::default();
    let watch_opts = watch::WatchOptions::over_tags(&set_opts.tags, 3);

    let until = Instant::now() + Duration::from_secs(10);
    let mut faults = vec![];
    let nemesis = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = Client::connect_with(endpoints.clone(), ClientOptions::default())
            .unwrap()
            .status()
            .await
            .unwrap()
            .leader_id;
        let start = recorder.now();
        cluster.kill(leader);
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.restart(leader);
        faults.push(FaultWindow {
            start_us: start,
            end_us: recorder.now(),
            label: format!("kill -9 n{leader}"),
        });
    };
    let (r, s, w, ()) = tokio::join!(
        register::run(&endpoints, &recorder, until, &reg_opts),
        set::run(&endpoints, &recorder, until, &set_opts),
        watch::run(&endpoints, &recorder, until, &watch_opts),
        nemesis,
    );
    r.unwrap();
    s.unwrap();
    w.unwrap();

    cluster
        .wait_healthy(&[1, 2, 3], Duration::from_secs(60))
        .await;
    set::final_read(&endpoints, &recorder, &set_opts)
        .await
        .unwrap();
    recorder.flush().unwrap();

    let records = recorder.records();
    let verdicts = check::check_all(&records, &check::CheckAllOptions::default());
    assert_eq!(verdicts.len(), 3, "register, set and watch: {verdicts:?}");
    let summary = check::write_results(
        &results,
        &records,
        &verdicts,
        &faults,
        recorder.start_epoch_us(),
    )
    .unwrap();

    for name in [
        "history.jsonl",
        "register.jsonl",
        "register.json",
        "set.json",
        "watch.json",
        "summary.json",
        "faults.json",
        "latency.svg",
        "throughput.svg",
    ] {
        assert_file(&results, name);
    }
    // The history file on disk is what the checkers saw.
    assert_eq!(
        bifrost_jepsen::workload::read_history(&results.join("history.jsonl")).unwrap(),
        records
    );
    // The register sub-history is in the format `bifrost-jepsen check` reads.
    let reg = bifrost_jepsen::Format::Jsonl
        .parse(&assert_file(&results, "register.jsonl"))
        .unwrap();
    assert!(!reg.events.is_empty());
    assert!(assert_file(&results, "latency.svg").contains("<svg"));
    assert!(assert_file(&results, "throughput.svg").contains("kill -9 n"));

    let report: Vec<String> = verdicts.iter().map(|v| v.to_string()).collect();
    let report = report.join("\n");
    eprintln!("{report}\nresults: {}", results.display());
    // Enough happened for the verdicts to mean something.
    let v = |name: &str, count: &str| {
        verdicts
            .iter()
            .find(|v| v.checker == name)
            .and_then(|v| v.counts.get(count).copied())
            .unwrap_or(0)
    };
    let ok = summary.valid == Validity::Valid
        && v("register", "read-ok") > 10
        && v("register", "cas-ok") > 0
        && v("set", "acknowledged") > 50
        && v("watch", "delivered") > 50
        && v("watch", "reconnects") + v("watch", "resubscribes") > 0;
    if !ok || std::env::var_os("BIFROST_TEST_KEEP").is_some() {
        let kept = out.keep();
        eprintln!("results kept in {}", kept.join("results").display());
        assert!(ok, "{report}\nsummary: {summary}");
    }
}
