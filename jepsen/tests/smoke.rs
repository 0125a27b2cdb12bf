//! The CI smoke run: `bifrost-jepsen run` for a minute on a three-node
//! cluster in Docker, all four workloads, every nemesis kind at least once,
//! and every checker must say valid.
//!
//! It calls the library's [`run::run`], as the binary does. The seed is
//! random (printed, with the command that replays it) unless
//! `BIFROST_SMOKE_SEED` is set; a minute of faults is short, so different
//! seeds over many CI runs cover more than one seed forever would.
//!
//! Fails, saying what is missing, when `docker info` fails, when not
//! running as root (partitions are iptables rules) or when the image cannot
//! be built: it never passes by skipping. `scripts/test.sh` starts dockerd
//! if needed, and leaves this test out (saying so) only when
//! `BIFROST_SKIP_DOCKER=1` is set on purpose. The image is chosen as
//! in `docker_faults.rs` ([`cluster::image_for_tests`]): built in seconds
//! from the `bifrost` and `bifrostctl` beside this test (or in
//! `BIFROST_BIN_DIR`), or `BIFROST_JEPSEN_IMAGE`. About two minutes: setup
//! ~15 s, the run 60 s, the watch drain, recovery and final reads ~10 s,
//! teardown ~10 s.
//!
//! On failure the results folder is kept and its path printed; set
//! `BIFROST_TEST_KEEP=1` to keep it anyway, `BIFROST_JEPSEN_KEEP=1` to leave
//! the cluster up.

use std::path::Path;
use std::time::{Duration, Instant};

use bifrost_jepsen::check::Validity;
use bifrost_jepsen::docker;
use bifrost_jepsen::nemesis::FaultKind;
use bifrost_jepsen::run::{self, cluster, RunOptions, Workload};
use bifrost_jepsen::workload::read_history;

fn assert_file(dir: &Path, name: &str) {
    let path = dir.join(name);
    let len = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert!(len > 0, "{} is empty", path.display());
}

#[test]
fn a_minute_of_every_fault_under_every_workload_passes_every_checker() {
    if let Err(missing) = docker::fault_test_prerequisites() {
        panic!("{missing}");
    }
    let started = Instant::now();
    let image = cluster::image_for_tests()
        .unwrap_or_else(|e| panic!("no image to test: building it failed: {e}"));
    let seed = std::env::var("BIFROST_SMOKE_SEED")
        .ok()
        .map(|s| s.parse().expect("BIFROST_SMOKE_SEED is a number"))
        .unwrap_or_else(|| rand::random::<u32>() as u64);
    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("results");
    let opts = RunOptions {
        time: Duration::from_secs(60),
        seed: Some(seed),
        kinds: FaultKind::ALL.to_vec(),
        workloads: Workload::ALL.to_vec(),
        image,
        results: Some(results.clone()),
        keep: std::env::var_os("BIFROST_JEPSEN_KEEP").is_some(),
        ..RunOptions::default()
    };
    eprintln!("smoke run: seed {seed}, results in {}", results.display());
    let report = match run::run(&opts) {
        Ok(report) => report,
        Err(e) => {
            let kept = out.keep();
            panic!(
                "the run could not be set up: {e} (seed {seed}; results kept in {})",
                kept.join("results").display()
            )
        }
    };
    let text = run::summary_text(&report, &opts);

    let mut problems = Vec::new();
    if report.summary.valid != Validity::Valid {
        problems.push(format!("the verdict is {}", report.summary.valid));
    }
    for k in FaultKind::ALL {
        if !report.kinds_applied.contains_key(&k) {
            problems.push(format!(
                "no {} fault was applied",
                run::plan::nemesis_name(k)
            ));
        }
    }
    // Enough happened for the verdicts to mean something.
    let count = |checker: &str, what: &str| {
        report
            .verdicts
            .iter()
            .find(|v| v.checker == checker)
            .and_then(|v| v.counts.get(what).copied())
            .unwrap_or(0)
    };
    for (checker, what, least) in [
        ("register", "read-ok", 10),
        ("register", "cas-ok", 1),
        ("set", "acknowledged", 100),
        ("watch", "delivered", 100),
        ("readings", "readings", 100),
        ("readings", "kills", 1),
        ("replicas", "readings", 100),
    ] {
        let n = count(checker, what);
        if n < least {
            problems.push(format!(
                "{checker}: {what} is {n}, expected at least {least}"
            ));
        }
    }

    for name in [
        "history.jsonl",
        "register.jsonl",
        "register.json",
        "set.json",
        "watch.json",
        "readings.json",
        "recovery.json",
        "replicas.json",
        "summary.json",
        "summary.txt",
        "faults.json",
        "latency.svg",
        "throughput.svg",
        "schedule.txt",
        "seed.txt",
        "run.json",
        "run.log",
        "logs/n1.log",
        "logs/n2.log",
        "logs/n3.log",
        "logs/sim.log",
    ] {
        assert_file(&results, name);
    }
    // The history on disk reads back, nemesis events included: one pair per
    // step, and the final heal.
    let history = read_history(&results.join("history.jsonl")).unwrap();
    let nemesis_events = history
        .iter()
        .filter(|r| r.workload == run::NEMESIS)
        .count();
    assert_eq!(
        nemesis_events,
        2 * (report.plan.schedule.steps.len() + 1),
        "nemesis events in the history"
    );
    let schedule = std::fs::read_to_string(results.join("schedule.txt")).unwrap();
    assert_eq!(
        schedule
            .parse::<bifrost_jepsen::nemesis::Schedule>()
            .unwrap()
            .steps,
        report.plan.schedule.steps,
        "schedule.txt replays the run's schedule"
    );

    eprintln!(
        "{text}\nsmoke run took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if !problems.is_empty() || std::env::var_os("BIFROST_TEST_KEEP").is_some() {
        let kept = out.keep();
        eprintln!("results kept in {}", kept.join("results").display());
        assert!(problems.is_empty(), "{}\n{text}", problems.join("\n"));
    }
}
