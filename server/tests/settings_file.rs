//! `bifrost serve --config FILE`, the BIFROST_* variables and `bifrost config
//! show|check`, run as an operator would: the real binary, a real file, a
//! node that comes up from it.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bifrost_testkit::{free_port, http_get, wait_until_async};

/// The test's own BIFROST_* variables: none may set what a test sets.
fn bifrost_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("BIFROST_"))
        .collect()
}

fn bifrost(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bifrost"));
    for k in bifrost_vars() {
        cmd.env_remove(k);
    }
    cmd.env_remove("RUST_BACKTRACE")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

/// The row of `key` in `config show`'s table: (value, source).
fn shown(out: &str, key: &str) -> (String, String) {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no {key} in\n{out}"));
    let rest: Vec<&str> = line.split_whitespace().skip(1).collect();
    let at = rest
        .iter()
        .position(|w| ["flag", "env", "file", "default", "not"].contains(w))
        .unwrap_or_else(|| panic!("no source in {line:?}"));
    (rest[..at].join(" "), rest[at..].join(" "))
}

#[test]
fn check_names_the_file_and_line_of_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = write(
        d,
        "good.toml",
        "# a node\nid = 2\nheartbeat-ms = 50\nnode-label = [\"zone=a\"]\ninsecure = true\n",
    );
    let o = bifrost(&["config", "check", &good], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("4 settings"), "{out}");

    let cases = [
        (
            "unknown.toml",
            "id = 2\n\ndata_dri = \"x\"\n",
            ":3: unknown key 'data_dri'",
        ),
        (
            "dashes.toml",
            "data_dir = \"x\"\n",
            "did you mean 'data-dir'",
        ),
        (
            "value.toml",
            "id = 2\nmemory-budget = \"lots\"\n",
            ":2: memory-budget = \"lots\": invalid value 'lots'",
        ),
        (
            "small.toml",
            "id = 2\nmemory-budget = \"8MiB\"\n",
            ":2: memory-budget = \"8MiB\": invalid value '8MiB'",
        ),
        ("zero.toml", "id = 0\n", ":1: id = 0: invalid value '0'"),
        (
            "switch.toml",
            "insecure = \"yes\"\n",
            ":1: insecure: a switch takes true or false",
        ),
        ("syntax.toml", "id = 2\nlisten = \n", ":2: "),
        (
            "clash.toml",
            "insecure = true\nadmin-password-file = \"/p\"\n",
            "cannot be used with",
        ),
    ];
    for (name, body, want) in cases {
        let path = write(d, name, body);
        let o = bifrost(&["config", "check", &path], &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&path) && err.contains(want),
            "{name}: want {want:?} in {err}"
        );
    }
    let o = bifrost(
        &[
            "config",
            "check",
            &d.join("missing.toml").display().to_string(),
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).1.contains("missing.toml"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn show_says_which_of_flag_env_file_and_default_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "node.toml",
        "heartbeat-ms = 200\nelection-min-ms = 600\nelection-max-ms = 1200\nnode-label = [\"zone=a\", \"rack=2\"]\n",
    );
    let o = bifrost(
        &[
            "config",
            "show",
            "--config",
            &file,
            "--election-max-ms",
            "1500",
        ],
        &[
            ("BIFROST_ELECTION_MIN_MS", "700"),
            ("BIFROST_DATA_KEY", "c2VjcmV0"),
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        shown(&out, "heartbeat-ms"),
        ("200".into(), format!("file {file}:1"))
    );
    assert_eq!(
        shown(&out, "election-min-ms"),
        ("700".into(), "env BIFROST_ELECTION_MIN_MS".into())
    );
    assert_eq!(
        shown(&out, "election-max-ms"),
        ("1500".into(), "flag".into())
    );
    assert_eq!(
        shown(&out, "snapshot-logs"),
        ("20000".into(), "default".into())
    );
    assert_eq!(
        shown(&out, "node-label"),
        ("zone=a,rack=2".into(), format!("file {file}:4"))
    );
    assert_eq!(shown(&out, "id"), (String::new(), "not set".into()));
    // The data key is a secret: said to be set, never shown.
    assert!(
        out.contains("(data key)") && !out.contains("c2VjcmV0"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_from_its_settings_file_and_a_bad_one_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, peer, http) = (free_port(), free_port(), free_port());
    let data = d.join("data");
    let body = format!(
        "id = 1\ndata-dir = \"{}\"\nlisten = \"127.0.0.1:{api}\"\npeer-listen = \"127.0.0.1:{peer}\"\n\
         http = \"127.0.0.1:{http}\"\npeers = \"1=127.0.0.1:{api}/127.0.0.1:{peer}\"\ninsecure = true\n\
         heartbeat-ms = 50\nelection-min-ms = 400\nelection-max-ms = 800\n",
        data.display()
    );
    let file = write(d, "node.toml", &body);

    // A value the file gets wrong stops serve before it touches anything.
    let bad = write(
        d,
        "bad.toml",
        &body.replace("heartbeat-ms = 50", "heartbeat-ms = \"fast\""),
    );
    let o = bifrost(&["serve", "--config", &bad], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{bad}:8: heartbeat-ms = \"fast\"")),
        "{err}"
    );
    assert!(
        !data.exists(),
        "a refused configuration created {}",
        data.display()
    );
    // So does the environment's, named as the variable; a flag wins over it.
    let o = bifrost(
        &["serve", "--config", &file],
        &[("BIFROST_HEARTBEAT_MS", "fast")],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("environment BIFROST_HEARTBEAT_MS: invalid value 'fast'"),
        "{err}"
    );
    let o = bifrost(
        &["serve", "--config", &file, "--heartbeat-ms", "soon"],
        &[("BIFROST_HEARTBEAT_MS", "fast")],
    );
    let (_, err) = text(&o);
    assert!(
        o.status.code() == Some(2) && err.contains("'soon'") && !err.contains("environment"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "a refused environment created {}",
        data.display()
    );

    let mut node = tokio::process::Command::new(env!("CARGO_BIN_EXE_bifrost"));
    for k in bifrost_vars() {
        node.env_remove(k);
    }
    let mut node = node
        .args(["serve", "--config", &file])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{http}");
    let ready = wait_until_async("the node's /readyz", Duration::from_secs(60), || async {
        http_get(&addr, "/readyz", Duration::from_secs(2)).await
    })
    .await;
    assert!(ready.contains("ready"), "{ready}");
    assert!(
        data.join("state").is_dir(),
        "the data directory of the file is used"
    );
    node.kill().await.unwrap();
}
