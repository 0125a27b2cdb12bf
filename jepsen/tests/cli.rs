//! The `bifrost-jepsen check` command as scripts see it: exactly one word on
//! stdout, and the exit status.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bifrost-jepsen"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `text` to a file in a fresh temporary directory (removed when the
/// returned guard drops).
fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

const ETCD: &str = "testdata/linearizability/etcd-jepsen";

#[test]
fn linearizable_prints_the_word_and_exits_0() {
    let o = run(&[
        "check",
        "--format",
        "etcd-jepsen",
        &format!("{ETCD}/etcd_002.log"),
    ]);
    assert_eq!(stdout(&o), "linearizable\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn not_linearizable_exits_1_and_explains_on_stderr() {
    let o = run(&[
        "check",
        "--format",
        "etcd-jepsen",
        &format!("{ETCD}/etcd_000.log"),
    ]);
    assert_eq!(stdout(&o), "not linearizable\n");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("longest linearizable prefix"), "{err}");
    assert!(err.contains("stuck in state"), "{err}");

    let o = run(&[
        "check",
        "--format",
        "kv",
        "testdata/linearizability/kv/c10-bad.txt",
    ]);
    assert_eq!(stdout(&o), "not linearizable\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("on key \"7\""), "{}", stderr(&o));
}

#[test]
fn running_out_of_time_prints_unknown_and_exits_2() {
    // 30 concurrent writes, then a read of a value none wrote.
    let mut text = String::new();
    for p in 0..30 {
        text += &format!(
            "{{\"process\":{p},\"type\":\"invoke\",\"f\":\"write\",\"value\":{p},\"time\":0}}\n"
        );
    }
    for p in 0..30 {
        text += &format!(
            "{{\"process\":{p},\"type\":\"ok\",\"f\":\"write\",\"value\":{p},\"time\":1}}\n"
        );
    }
    text += "{\"process\":99,\"type\":\"invoke\",\"f\":\"read\",\"time\":2}\n";
    text += "{\"process\":99,\"type\":\"ok\",\"f\":\"read\",\"value\":-1,\"time\":3}\n";
    let (_dir, path) = temp_file("slow.jsonl", &text);
    let o = run(&["check", "--timeout", "100ms", path.to_str().unwrap()]);
    assert_eq!(stdout(&o), "unknown\n");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_malformed_line_names_file_and_line_and_exits_3() {
    let (_dir, path) = temp_file(
        "bad.log",
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\n",
    );
    let o = run(&["check", "--format", "etcd-jepsen", path.to_str().unwrap()]);
    assert_eq!(stdout(&o), "");
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:2: ", path.display())), "{err}");
    assert!(err.contains("value is missing"), "{err}");
}

#[test]
fn bad_arguments_and_missing_files_exit_3_not_2() {
    let o = run(&["check", "--format", "nonsense", "x"]);
    assert_eq!(o.status.code(), Some(3));
    let o = run(&["check", Path::new("no/such/file").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("no/such/file"), "{}", stderr(&o));
}

#[test]
fn jsonl_is_the_default_format() {
    let (_dir, path) = temp_file(
        "ok.jsonl",
        "{\"process\":1,\"type\":\"invoke\",\"f\":\"write\",\"key\":\"k\",\"value\":1,\"time\":1}\n\
         {\"process\":1,\"type\":\"ok\",\"f\":\"write\",\"key\":\"k\",\"value\":1,\"time\":2}\n",
    );
    let o = run(&["check", path.to_str().unwrap()]);
    assert_eq!(stdout(&o), "linearizable\n");
    assert_eq!(o.status.code(), Some(0));
}
