//! The workloads and checkers against a real cluster: three `bifrost serve`
//! processes on loopback with TLS on every port (the test kit's CA; the
//! clients present its `admin` certificate, as the harness's do in Docker),
//! the register, set and watch workloads for ten
//! seconds, the leader killed with `kill -9` in the middle and restarted,
//! then every checker (and the replica check) must pass and the results
//! folder must be complete.
//!
//! The cluster is started by `bifrost-testkit`. The server binary is
//! `$BIFROST_BIN`, else the `bifrost` in this test's target directory
//! (build it with `cargo build -p bifrost-server`).

use std::path::Path;
use std::time::{Duration, Instant};

use bifrost_client::ClientOptions;
use bifrost_jepsen::check::{self, Validity};
use bifrost_jepsen::plot::FaultWindow;
use bifrost_jepsen::workload::{register, set, watch, Recorder};
use bifrost_jepsen::Target;
use bifrost_testkit::{locate_bifrost, Cluster, ClusterOptions};

/// Three nodes of the `bifrost` binary with fast elections and TLS.
fn start_cluster() -> Cluster {
    let bin = locate_bifrost(None).unwrap();
    Cluster::start(
        ClusterOptions::new(bin, 3)
            .tls()
            .fast_elections()
            .rust_log("info"),
    )
    .unwrap()
}

fn assert_file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!text.is_empty(), "{name} is empty");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_set_and_watch_pass_every_checker_across_a_leader_kill() {
    let mut cluster = start_cluster();
    let target = Target::new(cluster.endpoints(), cluster.security());
    cluster
        .wait_healthy(&[1, 2, 3], Duration::from_secs(60))
        .await
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let recorder = Recorder::create(&results.join("history.jsonl")).unwrap();

    let set_opts = set::SetOptions::default();
    set::setup(&target, &set_opts).await.unwrap();
    let reg_opts = register::RegisterOptions::default();
    let watch_opts = watch::WatchOptions::over_tags(&set_opts.tags, 3);

    let until = Instant::now() + Duration::from_secs(10);
    let mut faults = vec![];
    let nemesis = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = target
            .client(ClientOptions::default())
            .unwrap()
            .status()
            .await
            .unwrap()
            .leader_id;
        let start = recorder.now();
        cluster.kill(leader).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.restart(leader).unwrap();
        faults.push(FaultWindow {
            start_us: start,
            end_us: recorder.now(),
            label: format!("kill -9 n{leader}"),
        });
    };
    let (r, s, w, ()) = tokio::join!(
        register::run(&target, &recorder, until, &reg_opts),
        set::run(&target, &recorder, until, &set_opts),
        watch::run(&target, &recorder, until, &watch_opts),
        nemesis,
    );
    r.unwrap();
    s.unwrap();
    w.unwrap();

    cluster
        .wait_healthy(&[1, 2, 3], Duration::from_secs(60))
        .await
        .unwrap();
    set::final_read(&target, &recorder, &set_opts)
        .await
        .unwrap();
    recorder.flush().unwrap();

    let records = recorder.records();
    let mut verdicts = check::check_all(&records, &check::CheckAllOptions::default());
    assert_eq!(verdicts.len(), 3, "register, set and watch: {verdicts:?}");
    // Every node holds the same history, as the harness checks after a run.
    let (replicas, line) = bifrost_jepsen::run::cluster::replica_verdict(&target).await;
    eprintln!("{line}");
    verdicts.push(replicas);
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
        "replicas.json",
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
        && v("watch", "reconnects") + v("watch", "resubscribes") > 0
        && v("replicas", "readings") > 50;
    if !ok || std::env::var_os("BIFROST_TEST_KEEP").is_some() {
        let kept = out.keep();
        eprintln!("results kept in {}", kept.join("results").display());
        assert!(ok, "{report}\nsummary: {summary}");
    }
}
