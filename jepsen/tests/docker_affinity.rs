//! Polling follows the network, in a real three-node cluster in Docker
//! (the repository's `docker-compose.yml`, TLS on): firewall rules let only
//! node 2 reach the Modbus simulator, as when a cell network hangs off one
//! node. Two devices on the simulator:
//!
//! - `pinned` may run on node 2 only (`affinity.nodes=2`);
//! - `roaming` may run anywhere: wherever the leader first puts it, a node
//!   that cannot reach it reports so, and the leader moves it until it
//!   lands on node 2, the one node that can.
//!
//! Then node 2 is killed: `pinned`'s tag goes Bad with a reason naming
//! node 2 (nobody else may poll it), and `roaming`'s goes Bad with the
//! connection reason of the node that now tries it. Node 2 starts again:
//! both come back, their counters counting.
//!
//! Fails, saying what is missing, without Docker or root (as
//! `docker_faults`, whose image rules it shares; see there). Firewall
//! rules, containers, network and volumes are removed at the end.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bifrost_client::proto::{Device, Reading, Tag};
use bifrost_client::{Client, ClientOptions, Consistency};
use bifrost_jepsen::nemesis::{Nemesis, Partition};
use bifrost_jepsen::run::cluster::compose_for_test;
use bifrost_testkit::Wait;

/// Units 1 and 2 of the simulator; register 0-1 is a counter it bumps on
/// every read.
fn device(name: &str, sim: &str, unit: u32, only_node: Option<u64>) -> Device {
    let mut labels = std::collections::HashMap::new();
    if let Some(n) = only_node {
        labels.insert("affinity.nodes".to_string(), n.to_string());
    }
    Device {
        name: name.into(),
        protocol: "modbus-tcp".into(),
        endpoint: sim.into(),
        unit_id: unit,
        poll_interval_ms: 500,
        timeout_ms: 500,
        retries: 0,
        enabled: true,
        labels,
        ..Default::default()
    }
}

fn counter(device: &str) -> Tag {
    Tag {
        name: format!("{device}/counter"),
        device: device.into(),
        address: "hr:0".into(),
        data_type: "u32".into(),
        ..Default::default()
    }
}

/// The current reading of `tag`, if it has one.
fn current(rt: &tokio::runtime::Runtime, c: &Client, tag: &str) -> Option<Reading> {
    rt.block_on(c.get_current(vec![tag.to_string()], Consistency::Linearizable))
        .ok()?
        .into_iter()
        .next()
}

fn quality(r: &Reading) -> (String, String) {
    let q = r.quality.clone().unwrap_or_default();
    (q.level().as_str_name().to_string(), q.reason)
}

fn owner(rt: &tokio::runtime::Runtime, c: &Client, device: &str) -> Option<u64> {
    let status = rt.block_on(c.status()).ok()?;
    status
        .assignments
        .iter()
        .find(|a| a.device == device)
        .map(|a| a.node)
}

/// Waits until `tag` is Good and counts (two Good readings with different
/// revisions).
fn wait_counting(rt: &tokio::runtime::Runtime, c: &Client, tag: &str, limit: Duration) {
    let mut first: Option<u64> = None;
    Wait::new(format!("{tag} Good and counting"), limit)
        .every(Duration::from_millis(300))
        .until(|| {
            let Some(r) = current(rt, c, tag) else {
                return false;
            };
            if quality(&r).0 != "QUALITY_GOOD" {
                first = None;
                return false;
            }
            match first {
                None => {
                    first = Some(r.revision);
                    false
                }
                Some(rev) => r.revision > rev,
            }
        })
        .unwrap_or_else(|e| panic!("{e}; last: {:?}", current(rt, c, tag)));
}

fn wait_bad(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    tag: &str,
    limit: Duration,
    reason_ok: impl Fn(&str) -> bool,
) -> String {
    let mut seen = String::new();
    Wait::new(format!("{tag} Bad with the expected reason"), limit)
        .every(Duration::from_millis(300))
        .until(|| {
            let Some(r) = current(rt, c, tag) else {
                return false;
            };
            let (level, reason) = quality(&r);
            seen = format!("{level} {reason}");
            level == "QUALITY_BAD" && reason_ok(&reason)
        })
        .unwrap_or_else(|e| panic!("{e}; last: {seen}"));
    seen
}

#[test]
fn a_device_reachable_from_one_node_is_polled_there_and_waits_for_it() {
    let started = Instant::now();
    let compose = compose_for_test("bifrost-affinity", std::process::id() as u64 + 7);

    // Only node 2 reaches the simulator.
    let sim = compose.sim();
    let IpAddr::V4(sim_ip): IpAddr = sim.ip() else {
        panic!("the simulator has no IPv4 address: {sim}")
    };
    let addrs = compose.addresses();
    let mut cut = Partition::none();
    for n in [1u64, 3] {
        cut.block_both(addrs[&n], sim_ip);
    }
    let mut nemesis = Nemesis::new(&compose).unwrap();
    nemesis.partition(&cut).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = compose.target().client(ClientOptions::default()).unwrap();
    let sim_addr = sim.to_string();
    // roaming starts pinned to node 1, which cannot reach it: its tag goes
    // Bad there, which also shows the firewall works.
    for (d, unit, only) in [("pinned", 1, Some(2)), ("roaming", 2, Some(1))] {
        rt.block_on(client.put_device(device(d, &sim_addr, unit, only), true))
            .unwrap();
        rt.block_on(client.put_tag(counter(d), true)).unwrap();
    }
    wait_counting(&rt, &client, "pinned/counter", Duration::from_secs(60));
    let cut_off = wait_bad(
        &rt,
        &client,
        "roaming/counter",
        Duration::from_secs(30),
        |r| {
            ["timeout", "not_connected"]
                .iter()
                .any(|c| r.starts_with(c))
        },
    );
    assert_eq!(owner(&rt, &client, "roaming"), Some(1), "{cut_off}");
    // Free to go anywhere, it stays on node 1 until node 1 reports it cannot
    // reach it, then moves until it lands on node 2.
    rt.block_on(client.put_device(device("roaming", &sim_addr, 2, None), false))
        .unwrap();
    wait_counting(&rt, &client, "roaming/counter", Duration::from_secs(90));
    assert_eq!(owner(&rt, &client, "pinned"), Some(2));
    assert_eq!(
        owner(&rt, &client, "roaming"),
        Some(2),
        "roaming ends where the device answers"
    );
    eprintln!(
        "both polled by node 2 ({:.1}s)",
        started.elapsed().as_secs_f64()
    );

    // Node 2 dies: pinned waits for it, named; roaming is tried elsewhere.
    compose.kill(2).unwrap();
    let pinned = wait_bad(
        &rt,
        &client,
        "pinned/counter",
        Duration::from_secs(30),
        |r| r == "unreachable: eligible node 2 is down",
    );
    let roaming = wait_bad(
        &rt,
        &client,
        "roaming/counter",
        Duration::from_secs(30),
        |r| {
            ["timeout", "comm_failure", "not_connected"]
                .iter()
                .any(|c| r.starts_with(c))
        },
    );
    eprintln!(
        "node 2 down: pinned {pinned}, roaming {roaming} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        owner(&rt, &client, "pinned"),
        None,
        "nobody else may poll pinned"
    );

    // Node 2 returns: both come back to it.
    compose.start(2).unwrap();
    wait_counting(&rt, &client, "pinned/counter", Duration::from_secs(60));
    wait_counting(&rt, &client, "roaming/counter", Duration::from_secs(120));
    assert_eq!(owner(&rt, &client, "pinned"), Some(2));
    assert_eq!(owner(&rt, &client, "roaming"), Some(2));
    eprintln!(
        "node 2 back: both counting ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    nemesis.heal().unwrap();
}
