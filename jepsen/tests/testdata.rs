//! The checker against published Jepsen histories whose verdicts an
//! independent checker (porcupine) established: every file of both testdata
//! folders must get the same verdict, within its time bound.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bifrost_jepsen::{check_history, CheckOptions, Format, Verdict};

/// Far above what any file needs (tens of milliseconds in a debug build), so
/// a slow CI machine does not flake, but low enough that a search gone
/// exponential fails the test instead of hanging it.
const TIME_BOUND: Duration = Duration::from_secs(10);

fn data_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/linearizability")
        .join(sub)
}

fn check_file(path: &Path, format: Format) -> (Verdict, Duration) {
    let text = std::fs::read_to_string(path).unwrap();
    let history = format
        .parse(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let opts = CheckOptions {
        timeout: TIME_BOUND,
        ..CheckOptions::default()
    };
    let start = Instant::now();
    let report = check_history(&history, format.model(), &opts).unwrap();
    (report.verdict, start.elapsed())
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn every_etcd_history_gets_the_verdict_in_verdicts() {
    let dir = data_dir("etcd-jepsen");
    let verdicts = std::fs::read_to_string(dir.join("VERDICTS")).unwrap();
    let mut listed = Vec::new();
    let mut mismatches = Vec::new();
    for line in verdicts.lines().filter(|l| !l.trim().is_empty()) {
        let (name, expected) = line.split_once(' ').unwrap();
        let expected = match expected.trim() {
            "linearizable" => Verdict::Linearizable,
            "not-linearizable" => Verdict::NotLinearizable,
            other => panic!("VERDICTS: unknown verdict {other:?}"),
        };
        let (got, took) = check_file(&dir.join(name), Format::EtcdJepsen);
        if got != expected {
            mismatches.push(format!(
                "{name}: expected {expected}, got {got} in {took:?}"
            ));
        }
        listed.push(dir.join(name));
    }
    // No file is left out of the comparison.
    assert_eq!(
        listed,
        files(&dir, "log"),
        "VERDICTS and the .log files differ"
    );
    assert_eq!(listed.len(), 82);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_kv_history_gets_the_verdict_its_name_says() {
    let dir = data_dir("kv");
    let files = files(&dir, "txt");
    assert_eq!(files.len(), 4);
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = if name.ends_with("-ok") {
            Verdict::Linearizable
        } else if name.ends_with("-bad") {
            Verdict::NotLinearizable
        } else {
            panic!("{name}: neither -ok nor -bad")
        };
        let (got, took) = check_file(&path, Format::Kv);
        assert_eq!(got, expected, "{name} (took {took:?})");
    }
}
