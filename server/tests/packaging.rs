//! What `packaging/` ships, checked against what the code reads: the default
//! settings file is one `bifrost serve` takes, the systemd unit starts the
//! node with it under the hardening it promises, and a node under a
//! `Type=notify` unit tells the service manager it is ready, feeds the
//! watchdog and says when it stops (a real `NOTIFY_SOCKET`, as systemd
//! gives one).

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bifrost_testkit::free_port;

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

/// The `[Service]` (and other) keys of a unit file: key → values in order.
fn unit_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        keys.entry(k.to_string()).or_default().push(v.to_string());
    }
    keys
}

#[test]
fn the_unit_runs_the_shipped_settings_under_its_hardening() {
    let unit = std::fs::read_to_string(packaging().join("bifrost.service")).unwrap();
    let keys = unit_keys(&unit);
    let one = |k: &str| {
        keys.get(k)
            .map(|v| v.join(" "))
            .unwrap_or_else(|| panic!("no {k}="))
    };
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/bifrost serve --config /etc/bifrost/bifrost.toml"
    );
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("User"), "bifrost");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert!(one("WatchdogSec").ends_with('s'));

    // The shipped settings file is valid, and keeps its data where the
    // unit lets the node write (StateDirectory under /var/lib).
    let toml = packaging().join("bifrost.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_bifrost"))
        .args(["config", "check"])
        .arg(&toml)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings: toml::Table = std::fs::read_to_string(&toml).unwrap().parse().unwrap();
    let data_dir = settings["data-dir"].as_str().unwrap();
    assert_eq!(data_dir, format!("/var/lib/{}", one("StateDirectory")));
    for key in ["tls-cert", "tls-key", "tls-ca", "data-key-file"] {
        let path = settings[key].as_str().unwrap();
        assert!(
            path.starts_with(&format!("/etc/{}/", one("ConfigurationDirectory"))),
            "{key}: {path}"
        );
    }
}

/// Every message received on `sock` until `until` says stop or `limit` passes.
fn receive(
    sock: &UnixDatagram,
    limit: Duration,
    mut until: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !until(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    got
}

#[test]
fn a_node_under_systemd_says_ready_feeds_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (api, peer, http) = (free_port(), free_port(), free_port());
    // systemd names the process the watchdog is for (WATCHDOG_PID): the
    // shell's own pid, which `exec` hands to the node.
    let mut node = Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_bifrost"),
        ])
        .args(["serve", "--id", "1", "--insecure", "--heartbeat-ms", "50"])
        .args(["--election-min-ms", "400", "--election-max-ms", "800"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--peer-listen",
            &format!("127.0.0.1:{peer}"),
        ])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--peers", &format!("1=127.0.0.1:{api}/127.0.0.1:{peer}")])
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "400000") // systemd's WatchdogSec=0.4s: a ping every 0.2 s
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let got = receive(&sock, Duration::from_secs(60), |g| {
        g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3
            && g.iter().any(|m| m.starts_with("STATUS=ready"))
    });
    assert!(got.iter().any(|m| m == "READY=1"), "{got:?}");
    assert!(
        got.iter()
            .any(|m| m == "STATUS=ready: caught up with the leader"),
        "{got:?}"
    );
    assert!(
        got.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
        "{got:?}"
    );
    let ready = got.iter().position(|m| m == "READY=1").unwrap();
    let first_ping = got.iter().position(|m| m == "WATCHDOG=1").unwrap();
    assert!(ready < first_ping, "READY=1 comes first: {got:?}");

    // SIGTERM: STOPPING=1, and the process ends.
    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    let got = receive(&sock, Duration::from_secs(30), |g| {
        g.iter().any(|m| m == "STOPPING=1")
    });
    assert!(got.iter().any(|m| m == "STOPPING=1"), "{got:?}");
    let end = Instant::now() + Duration::from_secs(30);
    while node.try_wait().unwrap().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = node.try_wait().unwrap();
    let _ = node.kill();
    assert!(
        status.is_some(),
        "the node did not stop within 30 s of SIGTERM"
    );
}
