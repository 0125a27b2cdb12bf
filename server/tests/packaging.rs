//! What `packaging/` ships, checked against what the code reads: the default
//! settings file is one `bifrost serve` takes, the systemd unit starts the
//! node with it under the hardening it promises, and a node under a
//! `Type=notify` unit tells the service manager it is ready, feeds the
//! watchdog and says when it stops (a real `NOTIFY_SOCKET`, as systemd
//! gives one), and every metric the Grafana dashboard plots is one a running
//! node exports. The Debian package is built, unpacked and its unit checked
//! by systemd's own `systemd-analyze` (verify, and the security exposure
//! of its hardening).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bifrost_testkit::free_port;
use serde::Deserialize;

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

/// `serve`'s arguments for a cluster of one insecure node with its data in
/// `dir` and its HTTP port at `http`.
fn lone_node(dir: &Path, http: u16) -> Vec<String> {
    let (api, peer) = (free_port(), free_port());
    let data = dir.join("data").display().to_string();
    ["serve", "--id", "1", "--insecure", "--data-dir", &data]
        .iter()
        .chain(bifrost_testkit::FAST_ELECTIONS)
        .map(|a| a.to_string())
        .chain([
            "--listen".into(),
            format!("127.0.0.1:{api}"),
            "--peer-listen".into(),
            format!("127.0.0.1:{peer}"),
            "--http".into(),
            format!("127.0.0.1:{http}"),
            "--peers".into(),
            format!("1=127.0.0.1:{api}/127.0.0.1:{peer}"),
        ])
        .collect()
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
    let http = free_port();
    // systemd names the process the watchdog is for (WATCHDOG_PID): the
    // shell's own pid, which `exec` hands to the node.
    let mut node = Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_bifrost"),
        ])
        .args(lone_node(dir.path(), http))
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

/// The metric families a node exports (`# TYPE NAME KIND` lines).
fn families(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The `bifrost_*` names an expression uses, as families (a counter's
/// `_total`, a histogram's `_bucket`/`_sum`/`_count` removed).
fn metrics_used(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("bifrost_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        out.push(family.to_string());
    }
    out
}

fn expressions(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_plots_is_one_a_node_exports() {
    let path = packaging().join("grafana/bifrost-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for p in panels {
        let targets = p["targets"].as_array().map_or(0, Vec::len);
        assert!(targets > 0, "panel {} plots nothing", p["title"]);
    }

    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let mut node = tokio::process::Command::new(env!("CARGO_BIN_EXE_bifrost"))
        .args(lone_node(dir.path(), http))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{http}");
    let metrics = bifrost_testkit::wait_until_async(
        "the node's /metrics",
        Duration::from_secs(60),
        || async { bifrost_testkit::http_get(&addr, "/metrics", Duration::from_secs(2)).await },
    )
    .await;
    let exported = families(&metrics);
    assert!(exported.contains("bifrost_raft_is_leader"), "{exported:?}");
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        for m in metrics_used(e) {
            assert!(
                exported.contains(&m),
                "{}: {m} (in {e:?}) is not a metric a node exports",
                path.display()
            );
            used.insert(m);
        }
    }
    // The dashboard watches what an operator must see.
    for m in [
        "bifrost_raft_is_leader",
        "bifrost_readings_ingested",
        "bifrost_polled_devices",
        "bifrost_outbox_records",
        "bifrost_outbox_dropped_records",
        "bifrost_memory_bytes",
    ] {
        assert!(used.contains(m), "the dashboard does not plot {m}");
    }
    assert_eq!(
        metrics_used("rate(bifrost_a_total[1m]) / bifrost_b_bucket"),
        ["bifrost_a", "bifrost_b"]
    );
    node.kill().await.unwrap();
}

/// The documents of `packaging/kubernetes/bifrost.yaml`, by kind and name.
fn manifests() -> BTreeMap<(String, String), serde_yaml::Value> {
    let text = std::fs::read_to_string(packaging().join("kubernetes/bifrost.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let v = serde_yaml::Value::deserialize(doc).expect("a YAML document");
            let kind = v["kind"].as_str().expect("kind").to_string();
            let name = v["metadata"]["name"].as_str().expect("name").to_string();
            ((kind, name), v)
        })
        .collect()
}

fn text(v: &serde_yaml::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not text: {v:?}"))
}

/// `name: number` of a list of ports.
fn ports(list: &serde_yaml::Value, number_key: &str) -> BTreeMap<String, u64> {
    list.as_sequence()
        .expect("a list of ports")
        .iter()
        .map(|p| {
            (
                text(&p["name"]).to_string(),
                p[number_key].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_kubernetes_manifests_start_nodes_the_way_the_node_reads_its_settings() {
    let m = manifests();
    let get = |kind: &str, name: &str| {
        m.get(&(kind.to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let sts = get("StatefulSet", "bifrost");
    let headless = get("Service", "bifrost");
    let pod = &sts["spec"]["template"];
    let container = &pod["spec"]["containers"][0];

    // The settings file the pods read: valid, and its ports, addresses and
    // files are the ones the objects around it use.
    let toml = text(&get("ConfigMap", "bifrost-config")["data"]["bifrost.toml"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bifrost.toml");
    std::fs::write(&file, toml).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_bifrost"))
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let settings: BTreeMap<String, toml::Value> = toml::from_str(toml).unwrap();
    let port_of = |key: &str| -> u64 {
        let addr = settings[key].as_str().unwrap();
        addr.rsplit_once(':').unwrap().1.parse().unwrap()
    };
    let container_ports = ports(&container["ports"], "containerPort");
    let expected = BTreeMap::from([
        ("grpc".to_string(), port_of("listen")),
        ("peer".to_string(), port_of("peer-listen")),
        ("http".to_string(), port_of("http")),
    ]);
    assert_eq!(container_ports, expected);
    assert_eq!(ports(&headless["spec"]["ports"], "port"), expected);
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let api_ports = ports(&get("Service", "bifrost-api")["spec"]["ports"], "port");
    assert!(
        !api_ports.contains_key("peer"),
        "clients never get the peer port"
    );

    // Peers: pod N of the StatefulSet is node N+1 at its stable name.
    let replicas = sts["spec"]["replicas"].as_u64().unwrap();
    let service = text(&sts["spec"]["serviceName"]);
    assert_eq!(service, "bifrost");
    let peers: Vec<String> = (0..replicas)
        .map(|i| {
            let host = format!("bifrost-{i}.{service}");
            let (api, peer) = (port_of("listen"), port_of("peer-listen"));
            format!("{}={host}:{api}/{host}:{peer}", i + 1)
        })
        .collect();
    assert_eq!(settings["peers"].as_str().unwrap(), peers.join(","));

    // Mounts: the settings file where --config says, the data where
    // data-dir says, certificates where the tls keys point.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert_eq!(args, ["serve", "--config", "/etc/bifrost/bifrost.toml"]);
    let mounts: BTreeMap<&str, &str> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (text(&v["name"]), text(&v["mountPath"])))
        .collect();
    assert_eq!(mounts["config"], args[2]);
    assert_eq!(mounts["data"], settings["data-dir"].as_str().unwrap());
    for key in ["tls-cert", "tls-key", "tls-ca"] {
        let path = settings[key].as_str().unwrap();
        assert!(
            path.starts_with(&format!("{}/", mounts["pki"])),
            "{key} = {path}"
        );
    }
    let claims = sts["spec"]["volumeClaimTemplates"].as_sequence().unwrap();
    assert_eq!(text(&claims[0]["metadata"]["name"]), "data");

    // The node takes its id from the pod's name, and the data key from
    // the Secret; probes ask /readyz and /healthz over TLS on the HTTP port.
    let env: BTreeMap<&str, &serde_yaml::Value> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (text(&e["name"]), &e["valueFrom"]))
        .collect();
    assert_eq!(
        text(&env["BIFROST_ID_FROM_NAME"]["fieldRef"]["fieldPath"]),
        "metadata.name"
    );
    assert_eq!(
        text(&env["BIFROST_DATA_KEY"]["secretKeyRef"]["key"]),
        "data.key"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!((text(&get["path"]), text(&get["port"])), (path, "http"));
        assert_eq!(text(&get["scheme"]), "HTTPS", "the HTTP port speaks TLS");
    }

    // What pod bifrost-1 runs, as the node parses it: node 2, its own
    // certificate, the shared peers.
    let show = Command::new(env!("CARGO_BIN_EXE_bifrost"))
        .args(["config", "show", "--config"])
        .arg(&file)
        .env("BIFROST_ID_FROM_NAME", "bifrost-1")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{show:?}");
    assert!(shown.contains("bifrost-1"), "{shown}");
    assert!(shown.contains("node-{id}.pem"), "{shown}");

    // The disruption budget keeps a majority, over the StatefulSet's pods.
    let pdb = get("PodDisruptionBudget", "bifrost");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(replicas / 2));
    let labels = &pod["metadata"]["labels"];
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], *labels);
    assert_eq!(sts["spec"]["selector"]["matchLabels"], *labels);
    assert_eq!(headless["spec"]["selector"], *labels);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(
        pod["spec"]["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
}

/// `dpkg-deb ARGS`, its standard output; fails saying what is missing.
fn dpkg_deb(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("dpkg-deb (Debian package dpkg) is needed: {e}"));
    assert!(out.status.success(), "dpkg-deb {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_debian_package_installs_the_binaries_unit_settings_and_man_pages() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_bifrost")).parent().unwrap();
    assert!(
        bin_dir.join("bifrostctl").exists(),
        "bifrostctl is missing next to bifrost: build the workspace first (cargo build --workspace)"
    );
    let out = tempfile::tempdir().unwrap();
    let script = packaging().join("../scripts/deb.sh");
    let built = Command::new("bash")
        .arg(&script)
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(out.path())
        .args(["--version", "0.1.0~test", "--compression", "none"])
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let deb = PathBuf::from(
        String::from_utf8(built.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    );
    assert!(deb.to_string_lossy().ends_with(".deb"), "{deb:?}");

    let field = |f: &str| dpkg_deb(&[OsStr::new("-f"), deb.as_os_str(), OsStr::new(f)]);
    assert_eq!(field("Package").trim(), "bifrost");
    assert_eq!(field("Version").trim(), "0.1.0~test");
    assert!(field("Depends").contains("adduser"));
    // Paths with their modes, as dpkg will install them (owned by root).
    let contents = dpkg_deb(&[OsStr::new("--contents"), deb.as_os_str()]);
    let mode_of = |path: &str| -> String {
        let line = contents
            .lines()
            .find(|l| l.ends_with(&format!(".{path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{contents}"));
        assert!(line.contains("root/root"), "{line}");
        line.split_whitespace().next().unwrap().to_string()
    };
    assert_eq!(mode_of("/usr/bin/bifrost"), "-rwxr-xr-x");
    assert_eq!(mode_of("/usr/bin/bifrostctl"), "-rwxr-xr-x");
    assert_eq!(mode_of("/lib/systemd/system/bifrost.service"), "-rw-r--r--");
    assert_eq!(mode_of("/etc/bifrost/bifrost.toml"), "-rw-r-----");
    mode_of("/usr/share/man/man1/bifrost.1.gz");
    mode_of("/usr/share/man/man1/bifrost-serve.1.gz");
    mode_of("/usr/share/doc/bifrost/bifrost-dashboard.json");

    // The control files: the settings file survives upgrades, the
    // install creates the user the unit runs as.
    let control = tempfile::tempdir().unwrap();
    dpkg_deb(&[
        OsStr::new("--control"),
        deb.as_os_str(),
        control.path().as_os_str(),
    ]);
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/bifrost/bifrost.toml");
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    assert!(postinst.contains("dialout"), "{postinst}");

    // What it unpacks: the shipped settings pass the shipped binary's
    // check, and the serve page lists the flags with their variables.
    let root = tempfile::tempdir().unwrap();
    dpkg_deb(&[OsStr::new("-x"), deb.as_os_str(), root.path().as_os_str()]);
    let check = Command::new(root.path().join("usr/bin/bifrost"))
        .args(["config", "check"])
        .arg(root.path().join("etc/bifrost/bifrost.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let page = Command::new("zcat")
        .arg(root.path().join("usr/share/man/man1/bifrost-serve.1.gz"))
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains(".TH bifrost-serve"), "{page}");
    assert!(page.contains("BIFROST_DATA_DIR"), "{page}");
    assert!(page.contains("single"), "{page}");
    systemd_checks(root.path());
}

/// `systemd-analyze ARGS` run in `dir`: whether it succeeded, and what it
/// printed (both streams).
fn systemd_analyze(dir: &Path, args: &[&OsStr]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze (Debian package systemd; scripts/test.sh installs it) is needed: {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// systemd's own checks of the unit as the package installs it, in the
/// unpacked package's root (`root`), with the host's units beside it (for
/// the targets it names) and the host's `kill` (its ExecReload): `verify`
/// has nothing to say about it, not even a warning, and `security` rates
/// its exposure low. A misspelt key makes `verify` speak, so its silence
/// means something.
fn systemd_checks(root: &Path) {
    let units = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&units).unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg("/lib/systemd/system")
        .arg(&units)
        .status()
        .unwrap();
    assert!(copied.success(), "copying the host's units");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.join("bin/kill")).unwrap();
    let unit = root.join("lib/systemd/system/bifrost.service");
    let root_arg = format!("--root={}", root.display());
    let verify = |unit: &Path| {
        systemd_analyze(
            root,
            &[
                OsStr::new("verify"),
                OsStr::new(&root_arg),
                unit.as_os_str(),
            ],
        )
    };
    let (ok, said) = verify(&unit);
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    let text = std::fs::read_to_string(&unit).unwrap();
    let misspelt = root.join("lib/systemd/system/bifrost-misspelt.service");
    std::fs::write(&misspelt, text.replace("ProtectSystem=", "ProtectSystm=")).unwrap();
    let (_, said) = verify(&misspelt);
    assert!(
        said.contains("ProtectSystm"),
        "verify notices a misspelt key: {said}"
    );

    let (ok, said) = systemd_analyze(
        root,
        &[
            OsStr::new("security"),
            OsStr::new("--offline=yes"),
            OsStr::new(&root_arg),
            OsStr::new("bifrost.service"),
        ],
    );
    let level: f64 = said
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for bifrost.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {said}"));
    assert!(ok, "systemd-analyze security: {said}");
    println!(
        "systemd-analyze security: bifrost.service exposure level {level} (0 safest, 10 unsafe)"
    );
    // 2.1 when written; the unit without its hardening section scores 9.2.
    assert!(level <= 3.0, "the unit's exposure level is {level}: {said}");
}
