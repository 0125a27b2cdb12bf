//! What a run asks of the cluster besides the workloads: who leads, whether
//! it has recovered, whether the outboxes are empty, whether every node
//! holds the same history (the replica check), the simulated plant, and
//! putting every node back on its feet.
//!
//! Everything here looks from the outside, as the workloads do, over TLS
//! as the [`Target`] says: the public gRPC API (`Status` of each node on
//! its own, never through a client that would follow the leader and hide a
//! node that is behind), and `/metrics` over HTTPS for the two gauges that
//! say a node has nothing left to forward (`bifrost_polled_devices`,
//! `bifrost_outbox_records`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bifrost_client::proto::{self, StatusResponse};
use bifrost_client::replica::{CheckOptions, Report};
use bifrost_client::{ClientOptions, Consistency};
use serde_json::json;

use crate::check::Verdict;
use crate::docker::{self, Compose, ContainerState};
use crate::target::Target;

/// `Status` of the first node of `node` (a [`Target::only`]), asked of
/// that node alone, one short attempt.
pub async fn node_status(node: &Target, timeout: Duration) -> Option<StatusResponse> {
    let client = node
        .client(ClientOptions {
            connect_timeout: timeout,
            request_timeout: timeout,
            deadline: timeout,
            ..Default::default()
        })
        .ok()?;
    tokio::time::timeout(timeout + Duration::from_millis(200), client.status())
        .await
        .ok()?
        .ok()
}

/// Each node's own status (`None`: it did not answer), in endpoint order,
/// asked of all at once.
pub async fn statuses(target: &Target, timeout: Duration) -> Vec<Option<StatusResponse>> {
    let asks: Vec<_> = target
        .endpoints
        .iter()
        .map(|e| target.only(e))
        .map(|node| tokio::spawn(async move { node_status(&node, timeout).await }))
        .collect();
    let mut out = Vec::with_capacity(asks.len());
    for a in asks {
        out.push(a.await.ok().flatten());
    }
    out
}

/// The node that leads now: one that says it is the leader, with the
/// highest term among those (after a partition heals, a deposed leader may
/// still think it leads for a moment, in an older term); else the leader
/// the answers with the highest term name.
pub fn leader_of(statuses: &[Option<StatusResponse>]) -> Option<u64> {
    let answers = statuses.iter().flatten();
    let self_declared = answers
        .clone()
        .filter(|s| s.state == "Leader" && s.leader_id == s.node_id)
        .max_by_key(|s| s.term)
        .map(|s| s.node_id);
    self_declared.or_else(|| {
        answers
            .filter(|s| s.leader_id != 0)
            .max_by_key(|s| s.term)
            .map(|s| s.leader_id)
    })
}

/// [`leader_of`] the nodes, asked until one is found or `timeout` passes.
pub async fn find_leader(target: &Target, timeout: Duration) -> Option<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = leader_of(&statuses(target, Duration::from_secs(1)).await) {
            return Some(l);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What [`agreed`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    pub leader: u64,
    pub term: u64,
    /// The leader's commit index that every node had applied.
    pub commit_index: u64,
}

/// Whether every node answers, names the same leader (one of them) in the
/// same term, and has applied everything that leader had committed when
/// asked first. `Err` says what is still missing.
pub async fn agreed(target: &Target) -> Result<Agreement, String> {
    let first = statuses(target, Duration::from_secs(2)).await;
    let mut views = Vec::new();
    for (e, s) in target.endpoints.iter().zip(&first) {
        match s {
            Some(s) => views.push(s),
            None => return Err(format!("{e} does not answer")),
        }
    }
    let (leader, term) = (views[0].leader_id, views[0].term);
    if leader == 0 {
        return Err(format!("node {} knows no leader", views[0].node_id));
    }
    if let Some(v) = views
        .iter()
        .find(|v| (v.leader_id, v.term) != (leader, term))
    {
        return Err(format!(
            "node {} follows {} in term {}, node {} follows {leader} in term {term}",
            v.node_id, v.leader_id, v.term, views[0].node_id
        ));
    }
    let Some(commit_index) = views
        .iter()
        .find(|v| v.node_id == leader)
        .map(|v| v.commit_index)
    else {
        return Err(format!("the leader {leader} is not one of the nodes"));
    };
    // Applied indexes asked after the leader's commit index was read.
    let again = statuses(target, Duration::from_secs(2)).await;
    for (e, s) in target.endpoints.iter().zip(&again) {
        match s {
            Some(s) if s.applied_index >= commit_index => {}
            Some(s) => {
                return Err(format!(
                    "node {} has applied {} of the leader's {commit_index}",
                    s.node_id, s.applied_index
                ))
            }
            None => return Err(format!("{e} does not answer")),
        }
    }
    Ok(Agreement {
        leader,
        term,
        commit_index,
    })
}

/// [`agreed`], asked until it holds or `timeout` passes (then the last
/// reason it did not).
pub async fn wait_agreed(target: &Target, timeout: Duration) -> Result<Agreement, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match agreed(target).await {
            Ok(a) => return Ok(a),
            Err(why) if Instant::now() >= deadline => {
                return Err(format!("not within {timeout:?}: {why}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A gauge or counter without labels from a Prometheus text page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(char::is_whitespace)?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// One node's `bifrost_polled_devices` and `bifrost_outbox_records`, from
/// its `/metrics` over HTTPS.
pub fn forwarding_state(compose: &Compose, node: &docker::Node) -> Result<(u64, u64), String> {
    let (code, page) = compose
        .http_get(node, "/metrics", Duration::from_secs(2))
        .map_err(|e| format!("n{}: https://{}/metrics: {e}", node.id, node.http()))?;
    if code != 200 {
        return Err(format!("n{}: /metrics answered {code}", node.id));
    }
    let get = |name: &str| {
        metric(&page, name)
            .map(|v| v as u64)
            .ok_or_else(|| format!("n{}: no {name} in /metrics", node.id))
    };
    Ok((
        get("bifrost_polled_devices")?,
        get("bifrost_outbox_records")?,
    ))
}

/// Waits until no node polls any device and every outbox is empty, seen
/// twice in a row a second apart (a poll that was under way when its
/// device was disabled reaches the outbox after the poller stopped).
pub fn wait_drained(compose: &Compose, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut calm = 0;
    loop {
        let mut why = None;
        for n in compose.nodes() {
            match forwarding_state(compose, &n) {
                Ok((0, 0)) => {}
                Ok((polled, records)) => {
                    why = Some(format!(
                        "n{} polls {polled} device(s) and has {records} outbox record(s)",
                        n.id
                    ))
                }
                Err(e) => why = Some(e),
            }
        }
        match why {
            None => {
                calm += 1;
                if calm >= 2 {
                    return Ok(());
                }
            }
            Some(_) if Instant::now() < deadline => calm = 0,
            Some(why) => return Err(format!("outboxes not drained within {timeout:?}: {why}")),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The repository's simulated plant (`deploy/plant.json`).
pub fn default_plant() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the jepsen crate sits inside the repository")
        .join("deploy/plant.json")
}

/// The plant to import: the document at `path`, its first `devices`
/// devices (all if `None`) and their tags, with the simulator's address of
/// the compose file's default network replaced by `sim` (the project's)
/// and no retries (see the comment below).
pub fn load_plant(
    path: &Path,
    devices: Option<usize>,
    sim: &str,
) -> Result<bifrost_client::document::ConfigDocument, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc = bifrost_client::document::parse_config_document(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(n) = devices {
        doc.devices.truncate(n);
        let keep: Vec<String> = doc.devices.iter().map(|d| d.name.clone()).collect();
        doc.tags.retain(|t| keep.contains(&t.device));
    }
    let default_sim = format!(
        "{}.{}:{}",
        docker::net_prefix(docker::DEFAULT_NET),
        docker::SIM_HOST,
        docker::SIM_PORT
    );
    for d in &mut doc.devices {
        if d.endpoint == default_sim {
            d.endpoint = sim.to_string();
        }
        // No retries: a request that timed out, or whose connection broke,
        // may still have reached the simulator, which counted it, and its
        // retry then reads the next value. Without retries that poll is
        // stored as failed, which the counter checker knows to explain; a
        // retried one left a gap it could not (seen under load: a node just
        // resumed from SIGSTOP).
        d.retries = 0;
    }
    Ok(doc)
}

/// The plant's counter tags (`.../counter`, the simulator's reads-answered
/// register) and their devices.
pub fn counter_tags(doc: &bifrost_client::document::ConfigDocument) -> BTreeMap<String, String> {
    doc.tags
        .iter()
        .filter(|t| t.name.ends_with("/counter"))
        .map(|t| (t.name.clone(), t.device.clone()))
        .collect()
}

fn patient() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(60),
        ..Default::default()
    }
}

/// Imports the plant, then waits until every device is assigned to a node
/// and every counter tag has a value.
pub async fn import_plant(
    target: &Target,
    doc: &bifrost_client::document::ConfigDocument,
    timeout: Duration,
) -> Result<(), String> {
    let client = target.client(patient()).map_err(|e| e.to_string())?;
    client
        .import(doc.devices.clone(), doc.tags.clone())
        .await
        .map_err(|e| format!("importing the plant: {e}"))?;
    let counters: Vec<String> = counter_tags(doc).into_keys().collect();
    let deadline = Instant::now() + timeout;
    loop {
        let why = match client.status().await {
            Ok(s) => {
                let assigned: Vec<&str> = s
                    .assignments
                    .iter()
                    .filter(|a| a.node != 0)
                    .map(|a| a.device.as_str())
                    .collect();
                let unassigned = doc
                    .devices
                    .iter()
                    .filter(|d| !assigned.contains(&d.name.as_str()))
                    .count();
                if unassigned > 0 {
                    format!("{unassigned} device(s) not assigned")
                } else {
                    match client
                        .get_current(counters.clone(), Consistency::Linearizable)
                        .await
                    {
                        Ok(r) if r.len() == counters.len() => return Ok(()),
                        Ok(r) => format!(
                            "{} of {} counter tags have a value",
                            r.len(),
                            counters.len()
                        ),
                        Err(e) => e.to_string(),
                    }
                }
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!("the plant is not polled within {timeout:?}: {why}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Disables every device of the plant (one import), so that polling stops
/// and the outboxes can drain before the final reads.
pub async fn disable_plant(
    target: &Target,
    doc: &bifrost_client::document::ConfigDocument,
) -> Result<(), String> {
    let client = target.client(patient()).map_err(|e| e.to_string())?;
    let devices: Vec<proto::Device> = doc
        .devices
        .iter()
        .map(|d| proto::Device {
            enabled: false,
            ..d.clone()
        })
        .collect();
    client
        .import(devices, Vec::new())
        .await
        .map(drop)
        .map_err(|e| format!("disabling the plant: {e}"))
}

/// Puts every node back on its feet: thaws frozen ones, continues stopped
/// ones, starts killed ones. What it did, one line per action (errors
/// included: a node that cannot be started is for the recovery wait to
/// report).
pub fn revive_all(compose: &Compose) -> Vec<String> {
    let mut done = Vec::new();
    for n in compose.nodes() {
        let state = compose.state(&n.service);
        let step = match state {
            Ok(ContainerState::Paused) => Some(("unpause", compose.unpause(n.id))),
            Ok(ContainerState::Exited(_)) => Some(("start", compose.start(n.id))),
            Ok(_) => None,
            Err(e) => {
                done.push(format!("n{}: state unknown: {e}", n.id));
                None
            }
        };
        if let Some((verb, r)) = step {
            done.push(match r {
                Ok(()) => format!("{verb} n{}", n.id),
                Err(e) => format!("{verb} n{} failed: {e}", n.id),
            });
        }
        // Docker cannot see a SIGSTOP; a SIGCONT to a running process is
        // harmless. (Not to a stopped container, which refuses it.)
        if matches!(compose.state(&n.service), Ok(ContainerState::Running)) {
            let _ = compose.sigcont(n.id);
        }
    }
    done
}

/// A healthy cluster in Docker for a test: the prerequisites checked, the
/// image of [`image_for_tests`], a compose project named after `prefix` on
/// the first free /24 of [`docker::candidate_nets`] for `net_seed`, kept
/// after the test when `BIFROST_JEPSEN_KEEP` is set. Panics naming what is
/// missing or what failed: a test must never pass by skipping.
pub fn compose_for_test(prefix: &str, net_seed: u64) -> Compose {
    if let Err(missing) = docker::fault_test_prerequisites() {
        panic!("{missing}");
    }
    let mut opts = docker::ComposeOptions::new(prefix);
    opts.image =
        image_for_tests().unwrap_or_else(|e| panic!("no image to test: building it failed: {e}"));
    let mut compose = Compose::new(opts).unwrap();
    if std::env::var_os("BIFROST_JEPSEN_KEEP").is_some() {
        compose.keep();
    }
    compose
        .up_any_net(&docker::candidate_nets(net_seed, 30))
        .unwrap();
    eprintln!(
        "project {} on {}.0/24 via {}",
        compose.project(),
        docker::net_prefix(compose.options().net),
        compose.tool()
    );
    compose.wait_healthy(Duration::from_secs(60)).unwrap();
    compose
}

/// The image a test should run, as `tests/docker_faults.rs` chooses it:
///
/// - `BIFROST_JEPSEN_IMAGE`, if set, as it is;
/// - else `bifrost:jepsen-test`, built by `scripts/image.sh --bin-dir` from
///   the `bifrost` and `bifrostctl` in `BIFROST_BIN_DIR`, or beside the
///   test binary (`target/debug`, where `cargo nextest run --workspace`
///   leaves them); seconds, no Rust is compiled;
/// - else `bifrost:dev` if `scripts/image.sh` has built one (it may be
///   older than the source; a line on stderr says so).
pub fn image_for_tests() -> Result<String, String> {
    if let Ok(image) = std::env::var("BIFROST_JEPSEN_IMAGE") {
        return Ok(image);
    }
    let bin_dir = std::env::var_os("BIFROST_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // target/debug/deps/TEST-HASH -> target/debug
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_default();
    let have_bins = ["bifrost", "bifrostctl"]
        .iter()
        .all(|b| bin_dir.join(b).is_file());
    if !have_bins {
        if docker::image_exists(docker::DEFAULT_IMAGE).unwrap_or(false) {
            eprintln!(
                "no bifrost binaries in {}: testing the existing image {} (rebuild it with scripts/image.sh)",
                bin_dir.display(),
                docker::DEFAULT_IMAGE
            );
            return Ok(docker::DEFAULT_IMAGE.to_string());
        }
        return Err(format!(
            "{} has no bifrost and bifrostctl, and there is no image {}: build them first \
             (cargo build -p bifrost-server -p bifrost-client, or scripts/image.sh), \
             or set BIFROST_BIN_DIR or BIFROST_JEPSEN_IMAGE",
            bin_dir.display(),
            docker::DEFAULT_IMAGE
        ));
    }
    let tag = "bifrost:jepsen-test";
    build_image(&bin_dir, tag)?;
    Ok(tag.to_string())
}

/// `scripts/image.sh --bin-dir DIR --tag TAG`: packages binaries already
/// built into an image.
pub fn build_image(bin_dir: &Path, tag: &str) -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the jepsen crate sits inside the repository")
        .join("scripts/image.sh");
    let out = Command::new(&script)
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(["--tag", tag])
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/image.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The `replicas` verdict: every node's history compared by revision range
/// (the replica check of `bifrost-client`). Invalid when a range differs
/// (the anomaly names it, with each node's count and digest); unknown when
/// a node could not be asked.
pub async fn replica_verdict(target: &Target) -> (Verdict, String) {
    let mut v = Verdict::new("replicas");
    let client = match target.client(ClientOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            v.unknown(format!("could not compare: {e}"));
            return (v, format!("replicas: could not compare: {e}"));
        }
    };
    match client
        .check_replicas(&CheckOptions::default(), |_| {})
        .await
    {
        Ok(report) => {
            replica_counts(&mut v, &report);
            let line = report.verdict();
            (v, line)
        }
        Err(e) => {
            v.unknown(format!("could not compare: {e}"));
            (v, format!("replicas: could not compare: {e}"))
        }
    }
}

fn replica_counts(v: &mut Verdict, report: &Report) {
    let c = &report.comparison;
    v.count("nodes", report.nodes.len() as u64);
    v.count("through", c.through);
    v.count("ranges", c.ranges);
    v.count("readings", c.readings);
    if let Some(d) = &c.difference {
        let nodes: Vec<_> = d
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "node": n.node_id,
                    "count": n.count,
                    "digest": bifrost_client::replica::hex(&n.digest),
                })
            })
            .collect();
        v.anomaly(
            "replicas-differ",
            &format!("revisions {}..={}", d.first, d.last),
            report.verdict(),
            json!({"first": d.first, "last": d.last, "nodes": nodes}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(node: u64, leader: u64, term: u64, state: &str) -> Option<StatusResponse> {
        Some(StatusResponse {
            node_id: node,
            leader_id: leader,
            term,
            state: state.into(),
            ..Default::default()
        })
    }

    #[test]
    fn the_leader_is_the_self_declared_one_of_the_highest_term() {
        // n1 was cut off and still believes it leads term 3; n2 and n3
        // moved on to term 4 under n3.
        let s = [
            status(1, 1, 3, "Leader"),
            status(2, 3, 4, "Follower"),
            status(3, 3, 4, "Leader"),
        ];
        assert_eq!(leader_of(&s), Some(3));
        // The leader itself does not answer: its followers name it.
        let s = [
            None,
            status(2, 1, 4, "Follower"),
            status(3, 0, 5, "Candidate"),
        ];
        assert_eq!(leader_of(&s), Some(1));
        assert_eq!(leader_of(&[None, None]), None);
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let page = "# HELP bifrost_outbox_records Poll records\n\
                    # TYPE bifrost_outbox_records gauge\n\
                    bifrost_outbox_records 3\n\
                    bifrost_outbox_records_total 9\n\
                    bifrost_polled_devices 0\n";
        assert_eq!(metric(page, "bifrost_outbox_records"), Some(3.0));
        assert_eq!(metric(page, "bifrost_polled_devices"), Some(0.0));
        assert_eq!(metric(page, "bifrost_outbox_bytes"), None);
    }

    #[test]
    fn the_plant_points_at_the_projects_simulator_and_can_be_cut_down() {
        let doc = load_plant(&default_plant(), Some(3), "10.213.7.20:5020").unwrap();
        assert_eq!(doc.devices.len(), 3);
        assert!(doc.devices.iter().all(|d| d.endpoint == "10.213.7.20:5020"));
        assert!(doc.devices.iter().all(|d| d.retries == 0));
        assert!(doc
            .tags
            .iter()
            .all(|t| doc.devices.iter().any(|d| d.name == t.device)));
        let counters = counter_tags(&doc);
        assert_eq!(counters.len(), 3);
        assert_eq!(counters["plant/sim00000/counter"], "sim00000");
        let all = load_plant(&default_plant(), None, "x:1").unwrap();
        assert_eq!(all.devices.len(), 20);
    }
}
