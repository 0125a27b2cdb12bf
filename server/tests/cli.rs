//! `bifrostctl` against a real cluster, in the exact forms the acceptance
//! checks use, with `--output json`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn ctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    ctl_with(&[], endpoints, args, stdin)
}

/// [`ctl`] with `env` set.
fn ctl_with(
    env: &[(&str, String)],
    endpoints: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut cmd = Command::new(bifrostctl());
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--endpoints", endpoints, "--output", "json"])
        .args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ok(endpoints: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (success, out, err) = ctl(endpoints, args, stdin);
    assert!(success, "bifrostctl {args:?} failed: {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bifrostctl_drives_a_real_cluster_with_json_output() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let eps = cluster.endpoints().join(",");

    let status: Value = serde_json::from_str(&ok(&eps, &["status"], None)).unwrap();
    assert_eq!(status["leader"], leader);
    assert!(status["term"].as_u64().unwrap() >= 1);
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let roles: Vec<&str> = members
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{roles:?}"
    );
    assert!(members
        .iter()
        .all(|m| m["id"].is_u64() && m["addr"].is_string()));

    ok(
        &eps,
        &[
            "device",
            "add",
            "press1",
            "--protocol",
            "modbus-tcp",
            "--endpoint",
            "127.0.0.1:5020",
            "--unit",
            "3",
            "--interval",
            "1s",
            // Not polled: nothing listens there, and polled Bad readings
            // would mix with the ingested ones this test checks.
            "--disabled",
        ],
        None,
    );
    let (success, _, err) = ctl(
        &eps,
        &[
            "device",
            "add",
            "press1",
            "--protocol",
            "modbus-tcp",
            "--endpoint",
            "127.0.0.1:5020",
        ],
        None,
    );
    assert!(!success && err.contains("already exists"), "{err}");
    let devices: Value = serde_json::from_str(&ok(&eps, &["device", "list"], None)).unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    ok(
        &eps,
        &[
            "tag",
            "add",
            "line1/press1/temp",
            "--device",
            "press1",
            "--address",
            "hr:40001",
            "--type",
            "f32",
            "--units",
            "degC",
        ],
        None,
    );
    ok(
        &eps,
        &[
            "tag",
            "add",
            "line1/press1/count",
            "--device",
            "press1",
            "--address",
            "hr:10",
            "--type",
            "u16",
        ],
        None,
    );
    let tags: Value = serde_json::from_str(&ok(&eps, &["tag", "list"], None)).unwrap();
    assert_eq!(tags.as_array().unwrap().len(), 2, "{tags}");

    let lines = "\
{\"id\": \"a1\", \"tag\": \"line1/press1/temp\", \"ts\": \"2026-11-28T10:00:00Z\", \"value\": 21.5, \"quality\": \"good\"}
{\"id\": \"a2\", \"tag\": \"line1/press1/temp\", \"ts\": \"2026-11-28T10:00:01Z\", \"value\": 22.0, \"quality\": \"good\"}
{\"id\": \"a3\", \"tag\": \"line1/press1/count\", \"ts\": \"2026-11-28T10:00:01Z\", \"value\": 7, \"quality\": \"good\"}
";
    let acked: Value = serde_json::from_str(&ok(&eps, &["ingest", "-"], Some(lines))).unwrap();
    assert_eq!(acked["acknowledged"], 3);
    // The same file again is acknowledged and stored nowhere twice.
    let again: Value = serde_json::from_str(&ok(&eps, &["ingest", "-"], Some(lines))).unwrap();
    assert_eq!(
        (again["acknowledged"].as_u64(), again["duplicates"].as_u64()),
        (Some(3), Some(3))
    );

    let cur: Value = serde_json::from_str(&ok(
        &eps,
        &[
            "get",
            "line1/press1/temp",
            "line1/press1/count",
            "--consistency",
            "linearizable",
        ],
        None,
    ))
    .unwrap();
    let cur = cur.as_array().unwrap();
    assert_eq!(cur.len(), 2);
    assert_eq!(cur[0]["tag"], "line1/press1/temp");
    assert_eq!(cur[0]["value"], 22.0);
    assert_eq!(cur[0]["quality"], "good");
    assert!(cur[0]["ts"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-28T10:00:01"));
    assert!(cur[0]["revision"].as_u64().unwrap() >= 1);
    assert_eq!(cur[1]["value"], 7);

    let hist = ok(
        &eps,
        &[
            "history",
            "line1/press1/temp",
            "--from",
            "2026-11-28T09:00:00Z",
            "--to",
            "2026-11-28T11:00:00Z",
            "--consistency",
            "local",
        ],
        None,
    );
    let rows: Vec<Value> = hist
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{hist}");
    assert_eq!(rows[0]["value"], 21.5);
    assert_eq!(rows[1]["value"], 22.0);
    let hist = ok(
        &eps,
        &[
            "history",
            "line1/press1/temp",
            "--from",
            "2026-11-28T10:00:01Z",
        ],
        None,
    );
    assert_eq!(
        hist.lines().count(),
        1,
        "--from is inclusive and filters: {hist}"
    );

    // A bad line names its line number and nothing is sent.
    let bad = "{\"id\": \"b1\", \"tag\": \"line1/press1/temp\", \"ts\": \"2026-11-28T10:00:02Z\", \"value\": 1.0}\n{\"id\": \"b2\", \"tag\": \"line1/press1/temp\", \"ts\": \"yesterday\", \"value\": 1.0}\n";
    let (success, _, err) = ctl(&eps, &["ingest", "-"], Some(bad));
    assert!(!success && err.contains("line 2"), "{err}");
    let hist = ok(&eps, &["history", "line1/press1/temp"], None);
    assert_eq!(
        hist.lines().count(),
        2,
        "a rejected file stored something: {hist}"
    );
    // --partial stores the good line and names the bad one (exit 1).
    let mixed = "\
{\"id\": \"m1\", \"tag\": \"line1/press1/count\", \"ts\": \"2026-11-27T10:00:02Z\", \"value\": 8, \"quality\": \"good\"}
{\"id\": \"m2\", \"tag\": \"line9/none\", \"ts\": \"2026-11-27T10:00:02Z\", \"value\": 1, \"quality\": \"good\"}
";
    let (success, out, err) = ctl(&eps, &["ingest", "-", "--partial"], Some(mixed));
    assert!(!success, "a rejected reading fails the command");
    let partial: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (partial["stored"].as_u64(), partial["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        err.contains("stdin: reading 2 (id \"m2\") not stored: unknown_tag"),
        "{err}"
    );

    ok(&eps, &["tag", "rm", "line1/press1/count"], None);
    let (success, _, err) = ctl(&eps, &["get", "line1/press1/count"], None);
    assert!(!success && err.contains("unknown tag"), "{err}");

    // `tag rm` keeps the history and says so; the same name continues it.
    let add_temp = [
        "tag",
        "add",
        "line1/press1/temp",
        "--device",
        "press1",
        "--address",
        "hr:40001",
        "--type",
        "f32",
    ];
    let rm: Value =
        serde_json::from_str(&ok(&eps, &["tag", "rm", "line1/press1/temp"], None)).unwrap();
    assert_eq!(rm["history"], "kept", "{rm}");
    let (success, _, err) = ctl(&eps, &["tag", "rm", "line1/press1/temp"], None);
    assert!(!success && err.contains("already deleted"), "{err}");
    ok(&eps, &add_temp, None);
    let hist = ok(&eps, &["history", "line1/press1/temp"], None);
    assert_eq!(hist.lines().count(), 2, "kept history: {hist}");
    // `--purge` erases it, and says so.
    let rm: Value = serde_json::from_str(&ok(
        &eps,
        &["tag", "rm", "line1/press1/temp", "--purge"],
        None,
    ))
    .unwrap();
    assert_eq!(rm["history"], "purged", "{rm}");
    ok(&eps, &add_temp, None);
    let hist = ok(&eps, &["history", "line1/press1/temp"], None);
    assert_eq!(hist.lines().count(), 0, "purged history: {hist}");
    // In text, the answer says which it did.
    let text = Command::new(bifrostctl())
        .args(["--endpoints", &eps, "tag", "rm", "line1/press1/temp"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&text.stdout);
    assert!(said.contains("its history is kept"), "{said}");
}

/// `bifrost migrate-data` on what it cannot convert says what and where,
/// and changes nothing. (The conversion itself is tested in
/// `bifrost-storage` on a format-1 database written record by record.)
#[test]
fn migrate_data_names_what_it_cannot_convert() {
    let run = |dir: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_bifrost"))
            .args(["migrate-data", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ok, err) = run(&tmp.path().join("nowhere"));
    assert!(
        !ok && err.contains("nowhere") && err.contains("no 'state' directory"),
        "{err}"
    );
    // A data directory of the current format: nothing to do.
    let state = tmp.path().join("node1").join("state");
    drop(bifrost_storage::StateStore::open(&state).unwrap());
    let (ok, err) = run(&tmp.path().join("node1"));
    assert!(!ok && err.contains("already in format 3"), "{err}");
    assert!(
        bifrost_storage::StateStore::open(&state).is_ok(),
        "left as it was"
    );
}

/// `bifrostctl certs`: init writes a CA, node and admin certificates with
/// private keys only the owner reads, refuses a second CA in the same
/// directory, rotate replaces one node's pair, user adds a client one.
/// (What the certificates are good for is tested in `bifrost-tls` with
/// real handshakes.)
#[test]
fn certs_init_rotate_and_user_write_files_and_refuse_a_second_ca() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let dir_arg = dir.to_str().unwrap();
    let written = |out: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(out).unwrap();
        v["written"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
    };
    let init = [
        "certs",
        "init",
        dir_arg,
        "--nodes",
        "1=n1+127.0.0.1,2=n2,3=n3",
    ];
    let files = written(&ok("127.0.0.1:1", &init, None));
    let expected = [
        "ca.pem",
        "ca.key",
        "node-1.pem",
        "node-1.key",
        "node-2.pem",
        "node-2.key",
        "node-3.pem",
        "node-3.key",
        "user-admin.pem",
        "user-admin.key",
        "data.key",
    ];
    assert_eq!(files, expected);
    for name in expected {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let want = if name.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{name}");
    }

    let ca_key = std::fs::read(dir.join("ca.key")).unwrap();
    let (success, _, err) = ctl("127.0.0.1:1", &init, None);
    assert!(
        !success && err.contains("ca.pem") && err.contains("a CA is already here"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("ca.key")).unwrap(), ca_key);

    let old = std::fs::read(dir.join("node-2.pem")).unwrap();
    let files = written(&ok(
        "127.0.0.1:1",
        &["certs", "rotate", dir_arg, "--node", "2"],
        None,
    ));
    assert_eq!(files, ["node-2.pem", "node-2.key"]);
    assert_ne!(std::fs::read(dir.join("node-2.pem")).unwrap(), old);

    let files = written(&ok(
        "127.0.0.1:1",
        &["certs", "user", dir_arg, "alice"],
        None,
    ));
    assert_eq!(files, ["user-alice.pem", "user-alice.key"]);

    let (success, _, err) = ctl(
        "127.0.0.1:1",
        &["certs", "init", "/tmp/x", "--nodes", "1=bad_host"],
        None,
    );
    assert!(
        !success && err.contains("--nodes") && err.contains("host 'bad_host'"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_keeps_a_private_session_that_user_commands_use_until_logout() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let admin_password = dir.path().join("admin-password");
    std::fs::write(&admin_password, "bootstrap-secret-1\n").unwrap();
    let opts = options(
        3,
        &["--admin-password-file", admin_password.to_str().unwrap()],
    )
    .tls();
    let cluster = TestCluster(Cluster::start(opts).unwrap());
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let eps = cluster.endpoints().join(",");
    let session = dir.path().join("config/bifrost/session");
    let env = [
        ("BIFROST_CA", cluster.pki().ca_cert().display().to_string()),
        ("BIFROST_SESSION_FILE", session.display().to_string()),
        ("BIFROST_PASSWORD", "bootstrap-secret-1".to_string()),
    ];
    let run = |args: &[&str]| ctl_with(&env, &eps, args, None);

    // No session, no certificate: refused, saying how to log in.
    let (ok, _, err) = run(&["status"]);
    assert!(!ok && err.contains("bifrostctl login"), "{err}");

    let (ok, _, err) = run(&["login", "--user", "admin"]);
    assert!(ok, "login: {err}");
    let mode = std::fs::metadata(&session).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "session file mode {mode:o}");
    assert!(!std::fs::read_to_string(&session)
        .unwrap()
        .contains("bootstrap-secret-1"));

    let alice_password = dir.path().join("alice-password");
    std::fs::write(&alice_password, "alice-secret-99\n").unwrap();
    let (ok, _, err) = run(&[
        "user",
        "add",
        "alice",
        "--role",
        "viewer",
        "--tags",
        "line1/**",
        "--password-file",
        alice_password.to_str().unwrap(),
    ]);
    assert!(ok, "user add: {err}");
    let (ok, out, err) = run(&["user", "list"]);
    assert!(ok, "user list: {err}");
    let users: Value = serde_json::from_str(&out).unwrap();
    let alice = users
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "alice"))
        .unwrap_or_else(|| panic!("alice missing from {users}"));
    assert_eq!(alice["grants"][0]["role"], "viewer", "{alice}");
    let (ok, out, err) = run(&["whoami"]);
    assert!(ok, "whoami: {err}");
    let me: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(me["via"], "token", "{me}");

    let (ok, _, err) = run(&["logout"]);
    assert!(ok, "logout: {err}");
    assert!(!session.exists(), "logout leaves the session file");
    let (ok, _, err) = run(&["user", "list"]);
    assert!(!ok && err.contains("bifrostctl login"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_starts_a_tls_cluster_with_users_and_configures_its_plant() {
    use std::io::{BufRead, BufReader};
    let base = bifrost_testkit::free_port_block(2004).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_bifrost"))
        .args(["demo", "--base-port", &base.to_string(), "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = demo.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let configured = loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.starts_with("simulator at") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(
        configured,
        "the demo did not configure its plant:\n{}",
        seen.join("\n")
    );
    assert!(
        dir.path().join("pki/data.key").exists(),
        "the demo's data key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_finds_the_simulators_units_and_adds_them_as_devices() {
    let sim = SimOptions::new(2, 1);
    let cluster = TestCluster::start_with_sim(3, &[], sim).await;
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let eps = cluster.endpoints().join(",");
    let port = cluster.sim().unwrap().port().to_string();
    // Units 1 and 2 answer; the other loopback addresses refuse.
    let out = ok(
        &eps,
        &[
            "discover",
            "modbus-tcp",
            "127.0.0.1-2",
            "--port",
            &port,
            "--unit",
            "1",
            "--unit",
            "2",
            "--rate",
            "50",
            "--add-devices",
            "found",
        ],
        None,
    );
    let found: Value = serde_json::from_str(&out).unwrap();
    let found = found.as_array().unwrap();
    let units: Vec<u64> = found
        .iter()
        .map(|d| d["unit_id"].as_u64().unwrap())
        .collect();
    assert_eq!(found.len(), 2, "{out}");
    assert!(units.contains(&1) && units.contains(&2), "{out}");
    let endpoint = format!("127.0.0.1:{port}");
    assert!(
        found.iter().all(|d| d["endpoint"] == endpoint.as_str()),
        "{out}"
    );
    assert!(found.iter().all(|d| d["details"]["found_by"]
        .as_str()
        .unwrap()
        .starts_with("register read")));
    let devices: Value = serde_json::from_str(&ok(&eps, &["device", "list"], None)).unwrap();
    let added: Vec<&Value> = devices
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["name"].as_str().unwrap().starts_with("found"))
        .collect();
    assert_eq!(added.len(), 2, "{devices}");
    assert!(added
        .iter()
        .all(|d| d["protocol"] == "modbus-tcp" && d["endpoint"] == endpoint.as_str()));

    // Wider than a /24: refused before anything is probed, saying why.
    let (success, _, err) = ctl(&eps, &["discover", "modbus-tcp", "10.9.0.0/16"], None);
    assert!(!success);
    assert!(err.contains("wider than a /24"), "{err}");
}
