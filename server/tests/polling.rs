//! Polling end to end: a three-node cluster polls the simulator's counter
//! registers (each read request that covers a counter increments it by one),
//! so a gap in the stored counter values is a read that was answered but
//! never stored.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bifrost_client::proto::{self, Device, ImportRequest, Tag};
use bifrost_client::{Client, Consistency, HistoryQuery};
use common::*;

/// A simulator of `devices` devices with two pattern tags each, then three
/// nodes with `extra` arguments; and the simulator's port.
async fn start_with_sim(devices: u32, extra: &[&str]) -> (TestCluster, u16) {
    let sim = SimOptions::new(devices, 2);
    let cluster = TestCluster::start_with_sim(3, extra, sim).await;
    let port = cluster.sim().expect("simulator").port();
    (cluster, port)
}

const DEVICES: u32 = 6;
const INTERVAL_MS: u64 = 200;

fn dev_name(i: u32) -> String {
    format!("sim{i}")
}

fn counter_tag(i: u32) -> String {
    format!("plant/sim{i}/counter")
}

async fn configure(cluster: &TestCluster, port: u16) {
    let mut devices = vec![];
    let mut tags = vec![];
    for i in 0..DEVICES {
        devices.push(Device {
            name: dev_name(i),
            protocol: "modbus-tcp".into(),
            endpoint: format!("127.0.0.1:{port}"),
            unit_id: i + 1,
            poll_interval_ms: INTERVAL_MS,
            timeout_ms: 500,
            retries: 0,
            enabled: true,
            ..Default::default()
        });
        tags.push(Tag {
            name: counter_tag(i),
            device: dev_name(i),
            address: "hr:0".into(),
            data_type: "u32".into(),
            ..Default::default()
        });
        tags.push(Tag {
            name: format!("plant/sim{i}/sine"),
            device: dev_name(i),
            address: "hr:2".into(),
            data_type: "f32".into(),
            ..Default::default()
        });
    }
    let mut raw = cluster.raw_client(1).await;
    let r = raw
        .import(ImportRequest { devices, tags })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.devices, r.tags), (DEVICES as u64, 2 * DEVICES as u64));
}

async fn owners(client: &Client) -> BTreeMap<String, u64> {
    client
        .status()
        .await
        .unwrap()
        .assignments
        .into_iter()
        .map(|a| (a.device, a.node))
        .collect()
}

/// Stored counter values of device `i`: (value, reading id, ts).
async fn counters(client: &Client, i: u32) -> Vec<(i64, String, i64)> {
    let q = HistoryQuery {
        tag: counter_tag(i),
        consistency: Consistency::Linearizable,
        ..Default::default()
    };
    let mut out: Vec<(i64, String, i64)> = client
        .history_all(q)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.value?.kind? {
            proto::value::Kind::IntValue(v) => Some((v, r.id, r.ts_us)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// Values missing between the smallest and largest stored value, and values stored twice.
fn gaps_and_dups(values: &[(i64, String, i64)]) -> (Vec<i64>, Vec<i64>) {
    let mut gaps = vec![];
    let mut dups = vec![];
    for w in values.windows(2) {
        if w[1].0 == w[0].0 {
            dups.push(w[0].0);
        }
        gaps.extend(w[0].0 + 1..w[1].0);
    }
    (gaps, dups)
}

async fn wait_all_polled(client: &Client, min_each: usize) {
    wait_until_async(
        format!("every device to be polled {min_each} times"),
        Duration::from_secs(60),
        || async {
            for i in 0..DEVICES {
                let n = counters(client, i).await.len();
                if n < min_each {
                    return Err(format!("device {i}: {n}"));
                }
            }
            Ok(())
        },
    )
    .await;
}

/// Waits until every device's stored counter has grown by `more` values.
async fn wait_progress(client: &Client, more: usize) {
    let mut base = vec![];
    for i in 0..DEVICES {
        base.push(counters(client, i).await.len());
    }
    wait_until_async(
        format!("every device's counter to grow by {more} values"),
        Duration::from_secs(60),
        || async {
            for i in 0..DEVICES {
                let n = counters(client, i).await.len();
                if n < base[i as usize] + more {
                    return Err(format!("device {i} stopped making progress: {n}"));
                }
            }
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_owner_loses_no_reading_and_killed_owner_loses_at_most_the_one_in_flight() {
    let (mut cluster, port) = start_with_sim(DEVICES, &["--failure-timeout-ms", "1000"]).await;
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    configure(&cluster, port).await;
    let leader_at_start = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    wait_all_polled(&client, 5).await;
    let owners_before = owners(&client).await;
    assert_eq!(
        owners_before.len(),
        DEVICES as usize,
        "every device is assigned: {owners_before:?}"
    );
    let per_node = owners_before
        .values()
        .fold(BTreeMap::<u64, usize>::new(), |mut m, n| {
            *m.entry(*n).or_default() += 1;
            m
        });
    let leader = leader_at_start;
    assert!(
        !per_node.contains_key(&leader),
        "the leader polls nothing while others can: {per_node:?}"
    );
    assert_eq!(
        per_node.len(),
        2,
        "devices are spread over both followers: {per_node:?}"
    );

    // (a) SIGSTOP the owner of sim0 for 10 s, then SIGCONT.
    let paused = owners_before[&dev_name(0)];
    cluster.pause(paused).unwrap();
    let stopped_at = Instant::now();
    let survivors = cluster.client_without(paused);
    // Its devices move to the others while it is stopped.
    wait_until_async(
        "sim0 to be reassigned while its owner is stopped",
        Duration::from_secs(30),
        || async { owners(&survivors).await[&dev_name(0)] != paused },
    )
    .await;
    // Stopped for 10 s in all: a pause of that length is the scenario.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped_at.elapsed())).await;
    cluster.resume(paused).unwrap();
    let commit = survivors.status().await.unwrap().commit_index;
    cluster
        .wait_applied(paused, commit, Duration::from_secs(60))
        .await;
    wait_progress(&client, 5).await;
    for i in 0..DEVICES {
        let values = counters(&client, i).await;
        let (gaps, dups) = gaps_and_dups(&values);
        assert!(
            gaps.is_empty(),
            "device {i}: counter values missing after SIGSTOP/SIGCONT: {gaps:?}"
        );
        assert!(
            dups.is_empty(),
            "device {i}: counter values stored twice: {dups:?}"
        );
    }

    // (b) kill -9 the owner of sim1 and restart it later.
    let owners_now = owners(&client).await;
    let victim = owners_now[&dev_name(1)];
    let victims_devices: Vec<u32> = (0..DEVICES)
        .filter(|i| owners_now[&dev_name(*i)] == victim)
        .collect();
    let killed_at_us = chrono::Utc::now().timestamp_micros();
    cluster.kill(victim);
    let survivors = cluster.client_without(victim);
    wait_until_async(
        format!("the devices of killed node {victim} to be reassigned"),
        Duration::from_secs(30),
        || async {
            let o = owners(&survivors).await;
            victims_devices.iter().all(|i| o[&dev_name(*i)] != victim)
        },
    )
    .await;
    wait_progress(&survivors, 5).await;
    // (c) polling of the killed node's devices resumed within the bound:
    // two poll intervals or 2 s, whichever is larger.
    let bound_us = (2 * INTERVAL_MS).max(2_000) as i64 * 1_000;
    for i in &victims_devices {
        let values = counters(&survivors, *i).await;
        let first_after = values
            .iter()
            .filter(|(_, id, ts)| *ts > killed_at_us && !id.starts_with(&format!("{victim}-")))
            .map(|(_, _, ts)| *ts)
            .min()
            .expect("readings from the new owner");
        let took = first_after - killed_at_us;
        assert!(
            took <= bound_us,
            "device {i}: polling resumed {took} us after the kill (bound {bound_us} us)"
        );
    }
    cluster.restart(victim);
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    cluster
        .catch_up(victim, leader, Duration::from_secs(60))
        .await;
    // The restarted node flushes what its outbox held.
    wait_until_async(
        "the restarted node's outbox to drain",
        Duration::from_secs(30),
        || async {
            let m = http_get(&cluster.node(victim).http, "/metrics").await;
            m.lines().any(|l| l == "bifrost_outbox_records 0")
        },
    )
    .await;
    wait_progress(&client, 3).await;
    for i in 0..DEVICES {
        let values = counters(&client, i).await;
        let (gaps, dups) = gaps_and_dups(&values);
        assert!(
            dups.is_empty(),
            "device {i}: counter values stored twice: {dups:?}"
        );
        let allowed = if victims_devices.contains(&i) { 1 } else { 0 };
        assert!(
            gaps.len() <= allowed,
            "device {i}: {} counter values missing after one kill (at most {allowed}): {gaps:?}",
            gaps.len()
        );
    }
    cluster.assert_replicas_agree().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn device_writes_run_on_the_owner_are_confirmed_and_bad_ones_refused() {
    let (cluster, port) = start_with_sim(2, &[]).await;
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let mut raw = cluster.raw_client(1).await;
    let device = |i: u32| Device {
        name: dev_name(i),
        protocol: "modbus-tcp".into(),
        endpoint: format!("127.0.0.1:{port}"),
        unit_id: i + 1,
        poll_interval_ms: INTERVAL_MS,
        timeout_ms: 500,
        enabled: true,
        ..Default::default()
    };
    let tag = |name: &str, address: &str, ty: &str, writable: bool| Tag {
        name: name.into(),
        device: dev_name(0),
        address: address.into(),
        data_type: ty.into(),
        writable,
        ..Default::default()
    };
    // With --tags 2 the simulator's writable holding registers start at 5.
    raw.import(ImportRequest {
        devices: vec![device(0)],
        tags: vec![
            tag("w/setpoint", "hr:5", "u16", true),
            tag("w/counter", "hr:0", "u32", false),
            tag("w/flag", "coil:3", "bool", true),
            Tag {
                // Engineering 0-100 over raw 0-10000: its readings are fractional floats.
                scale: Some(proto::Scale {
                    raw_lo: 0.0,
                    raw_hi: 10_000.0,
                    eng_lo: 0.0,
                    eng_hi: 100.0,
                }),
                ..tag("w/percent", "hr:6", "u16", true)
            },
        ],
    })
    .await
    .unwrap();
    let client = cluster.client();
    // Wait until someone polls the device.
    let owner = wait_until_async(
        "the device to be assigned",
        Duration::from_secs(30),
        || async { owners(&client).await.get(&dev_name(0)).copied() },
    )
    .await;
    let int = |v: i64| {
        Some(proto::Value {
            kind: Some(proto::value::Kind::IntValue(v)),
        })
    };
    // Sent to every node in turn: non-owners forward to the owner.
    for (n, v) in [(1u64, 1234i64), (2, 4321), (3, 65535)] {
        let mut c = cluster.raw_client(n).await;
        let r = c
            .write_tag(proto::WriteTagRequest {
                tag: "w/setpoint".into(),
                value: int(v),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.outcome, "ok", "write via node {n}: {r:?}");
        assert_eq!(r.node, owner, "the write ran on the owner");
        assert_eq!(r.read_back, int(v));
    }
    let flag = Some(proto::Value {
        kind: Some(proto::value::Kind::BoolValue(true)),
    });
    let r = raw
        .write_tag(proto::WriteTagRequest {
            tag: "w/flag".into(),
            value: flag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.outcome.as_str(), r.read_back), ("ok", flag));
    // The polled value follows the write.
    wait_until_async(
        "the polled value to show the write",
        Duration::from_secs(30),
        || async {
            let cur = client
                .get_current(vec!["w/setpoint".into()], Consistency::Linearizable)
                .await
                .unwrap();
            if cur.first().and_then(|r| r.value.clone()) == int(65535) {
                Ok(())
            } else {
                Err(cur)
            }
        },
    )
    .await;
    // A scaled tag is written in engineering units and stored as polled, a
    // float that is no whole number although the register is a u16.
    let percent = Some(proto::Value {
        kind: Some(proto::value::Kind::FloatValue(42.5)),
    });
    let r = raw
        .write_tag(proto::WriteTagRequest {
            tag: "w/percent".into(),
            value: percent.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.outcome.as_str(), &r.read_back), ("ok", &percent));
    wait_until_async(
        "the scaled tag's polled value stored",
        Duration::from_secs(30),
        || async {
            let cur = client
                .get_current(vec!["w/percent".into()], Consistency::Linearizable)
                .await
                .unwrap();
            if cur.first().and_then(|r| r.value.clone()) == percent {
                Ok(())
            } else {
                Err(cur)
            }
        },
    )
    .await;
    // 1000 % is raw 100000, more than a u16 holds: the driver refuses it.
    let r = raw
        .write_tag(proto::WriteTagRequest {
            tag: "w/percent".into(),
            value: Some(proto::Value {
                kind: Some(proto::value::Kind::FloatValue(1000.0)),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, "rejected", "{r:?}");
    assert!(r.message.contains("w/percent"), "{r:?}");
    // Refused: not writable, out of the type's range, wrong type, unknown tag.
    let err = raw
        .write_tag(proto::WriteTagRequest {
            tag: "w/counter".into(),
            value: int(1),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("not writable"), "{}", err.message());
    let err = raw
        .write_tag(proto::WriteTagRequest {
            tag: "w/setpoint".into(),
            value: int(70_000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("outside the range of u16"),
        "{}",
        err.message()
    );
    let text = Some(proto::Value {
        kind: Some(proto::value::Kind::StringValue("hi".into())),
    });
    let err = raw
        .write_tag(proto::WriteTagRequest {
            tag: "w/setpoint".into(),
            value: text,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = raw
        .write_tag(proto::WriteTagRequest {
            tag: "nope".into(),
            value: int(1),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_device_config_gets_clear_errors_and_disturbs_nothing_else() {
    let (cluster, port) = start_with_sim(1, &[]).await;
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let mut raw = cluster.raw_client(2).await;
    let good = Device {
        name: "good".into(),
        protocol: "modbus-tcp".into(),
        endpoint: format!("127.0.0.1:{port}"),
        unit_id: 1,
        poll_interval_ms: INTERVAL_MS,
        timeout_ms: 300,
        enabled: true,
        ..Default::default()
    };
    // Nothing listens on port 1: an unreachable endpoint.
    let dead = Device {
        name: "dead".into(),
        endpoint: "127.0.0.1:1".into(),
        ..good.clone()
    };
    let tag = |name: &str, device: &str, address: &str, ty: &str| Tag {
        name: name.into(),
        device: device.into(),
        address: address.into(),
        data_type: ty.into(),
        ..Default::default()
    };
    raw.import(ImportRequest {
        devices: vec![good.clone(), dead.clone()],
        tags: vec![
            tag("good/counter", "good", "hr:0", "u32"),
            tag("dead/x", "dead", "hr:0", "u16"),
        ],
    })
    .await
    .unwrap();
    let client = cluster.client();
    let before = client
        .list_tags(None, Consistency::Linearizable)
        .await
        .unwrap();

    let expect = |r: Result<tonic::Response<proto::PutTagResponse>, tonic::Status>,
                  needle: &str| {
        let e = r.expect_err("expected an error");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().contains(needle),
            "{:?} does not mention {needle:?}",
            e.message()
        );
    };
    let put = |t: Tag| proto::PutTagRequest {
        tag: Some(t),
        create_only: true,
        expected_revision: None,
        request_id: String::new(),
    };
    expect(
        raw.put_tag(put(tag("g/a", "good", "hr:abc", "u16"))).await,
        "hr:abc",
    );
    expect(
        raw.put_tag(put(tag("g/b", "good", "hr:65534", "f64")))
            .await,
        "65534",
    );
    expect(
        raw.put_tag(put(tag("g/c", "good", "coil:1", "f32"))).await,
        "coil",
    );
    expect(
        raw.put_tag(put(tag("g/d", "good", "ns=2;s=x", "f32")))
            .await,
        "ns=2;s=x",
    );
    let mut bad = good.clone();
    bad.name = "bad1".into();
    bad.protocol = "bacnet".into();
    let e = raw
        .put_device(proto::PutDeviceRequest {
            device: Some(bad),
            create_only: true,
            expected_revision: None,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("unknown protocol 'bacnet'"),
        "{}",
        e.message()
    );
    let mut bad = good.clone();
    bad.name = "bad2".into();
    bad.endpoint = "no-port-here:".into();
    let e = raw
        .put_device(proto::PutDeviceRequest {
            device: Some(bad),
            create_only: true,
            expected_revision: None,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    // A bad import changes nothing at all, even its good parts.
    let e = raw
        .import(ImportRequest {
            devices: vec![],
            tags: vec![
                tag("g/ok", "good", "hr:2", "f32"),
                tag("g/bad", "good", "hr:x", "f32"),
            ],
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("hr:x"), "{}", e.message());
    assert_eq!(
        client
            .list_tags(None, Consistency::Linearizable)
            .await
            .unwrap(),
        before
    );

    // The unreachable device reads Bad with a reason; the good one stays Good.
    let dead_quality = wait_until_async(
        "good/counter to read Good and dead/x Bad",
        Duration::from_secs(30),
        || async {
            let cur = client
                .get_current(
                    vec!["good/counter".into(), "dead/x".into()],
                    Consistency::Linearizable,
                )
                .await
                .unwrap();
            let quality = |t: &str| {
                cur.iter()
                    .find(|r| r.tag == t)
                    .and_then(|r| r.quality.clone())
            };
            match (quality("good/counter"), quality("dead/x")) {
                (Some(g), Some(d))
                    if g.level == proto::QualityLevel::QualityGood as i32
                        && d.level == proto::QualityLevel::QualityBad as i32 =>
                {
                    Ok(d)
                }
                _ => Err(cur),
            }
        },
    )
    .await;
    assert!(
        ["comm_failure", "not_connected", "timeout"]
            .iter()
            .any(|r| dead_quality.reason.starts_with(r)),
        "unclear reason for an unreachable device: {:?}",
        dead_quality.reason
    );
    // And the good device keeps being polled while the dead one fails.
    let count = |c: Client| async move {
        let q = HistoryQuery {
            tag: "good/counter".into(),
            consistency: Consistency::Linearizable,
            ..Default::default()
        };
        c.history_all(q).await.unwrap().len()
    };
    let n0 = count(client.clone()).await;
    wait_until_async(
        "the good device to be polled 5 more times",
        Duration::from_secs(30),
        || async { count(client.clone()).await >= n0 + 5 },
    )
    .await;
}

/// Outbox depth of a node, from its metrics.
async fn outbox_records(cluster: &TestCluster, id: u64) -> Option<u64> {
    let m = http_get(&cluster.node(id).http, "/metrics").await;
    m.lines()
        .find_map(|l| l.strip_prefix("bifrost_outbox_records "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_from_the_majority_keeps_polling_and_flushes_when_it_can() {
    let (mut cluster, port) = start_with_sim(DEVICES, &["--failure-timeout-ms", "1000"]).await;
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    configure(&cluster, port).await;
    let client = cluster.client();
    wait_all_polled(&client, 3).await;
    let owners_now = owners(&client).await;
    let lonely = owners_now[&dev_name(0)];
    let its_devices: Vec<u32> = (0..DEVICES)
        .filter(|i| owners_now[&dev_name(*i)] == lonely)
        .collect();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != lonely).collect();
    // The other two go away: `lonely` has no majority and no leader.
    for n in &others {
        cluster.kill(*n);
    }
    // It keeps polling into its outbox.
    wait_until_async(
        format!("cut-off node {lonely} to buffer 10 records in its outbox"),
        Duration::from_secs(30),
        || async { outbox_records(&cluster, lonely).await.unwrap_or(0) >= 10 },
    )
    .await;
    let local = cluster.node_client(lonely);
    let before = counters_local(&local, its_devices[0]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        counters_local(&local, its_devices[0]).await.len(),
        before.len(),
        "nothing can commit without a majority"
    );
    for n in &others {
        cluster.restart(*n);
    }
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    // It flushes everything it buffered.
    wait_until_async(
        format!("node {lonely} to flush its outbox"),
        Duration::from_secs(60),
        || async { outbox_records(&cluster, lonely).await == Some(0) },
    )
    .await;
    wait_progress(&client, 3).await;
    for i in its_devices {
        let values = counters(&client, i).await;
        let (gaps, dups) = gaps_and_dups(&values);
        assert!(
            gaps.is_empty(),
            "device {i} polled by the cut-off node has gaps: {gaps:?}"
        );
        assert!(dups.is_empty(), "device {i}: stored twice: {dups:?}");
    }
    cluster.assert_replicas_agree().await;
}

/// Counter values of device `i` as node-local state shows them.
async fn counters_local(client: &Client, i: u32) -> Vec<(i64, String, i64)> {
    let q = HistoryQuery {
        tag: counter_tag(i),
        consistency: Consistency::Local,
        ..Default::default()
    };
    client
        .history_all(q)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.value?.kind? {
            proto::value::Kind::IntValue(v) => Some((v, r.id, r.ts_us)),
            _ => None,
        })
        .collect()
}

/// Sets the labels of device `i` (replacing the device as `configure` made it).
async fn label_device(client: &Client, port: u16, i: u32, labels: &[(&str, &str)]) {
    let device = Device {
        name: dev_name(i),
        protocol: "modbus-tcp".into(),
        endpoint: format!("127.0.0.1:{port}"),
        unit_id: i + 1,
        poll_interval_ms: INTERVAL_MS,
        timeout_ms: 500,
        retries: 0,
        enabled: true,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    client.put_device(device, false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_go_only_to_nodes_with_the_labels_they_need() {
    // Node 2 is in cell 2; node 3 in cell 3 and holds the serial line.
    let opts = options(3, &[])
        .node_args(2, &["--node-label", "zone=cell2"])
        .node_args(
            3,
            &[
                "--node-label",
                "zone=cell3",
                "--node-label",
                "serial=/dev/ttyS0",
            ],
        );
    let mut c = Cluster::create(opts).unwrap();
    c.start_sim(&SimOptions::new(DEVICES, 2)).await.unwrap();
    c.start_nodes().unwrap();
    let cluster = TestCluster(c);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(60))
        .await;
    let port = cluster.sim().unwrap().port();
    configure(&cluster, port).await;
    let client = cluster.client();
    label_device(
        &client,
        port,
        0,
        &[
            ("affinity.zone", "cell3"),
            ("affinity.serial", "/dev/ttyS0"),
        ],
    )
    .await;
    label_device(&client, port, 1, &[("affinity.zone", "cell2")]).await;
    label_device(&client, port, 2, &[("affinity.zone", "cell9")]).await;
    wait_until_async(
        "devices on the nodes their labels name",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let o = owners(&client).await;
                o.get("sim0") == Some(&3) && o.get("sim1") == Some(&2) && !o.contains_key("sim2")
            }
        },
    )
    .await;
    // No node is in cell 9: sim2's tags are Bad, saying so.
    let stranded = wait_until_async(
        "sim2's counter Bad naming zone=cell9",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let r = client
                    .get_current(vec![counter_tag(2)], Consistency::Linearizable)
                    .await
                    .ok()?;
                let q = r.first()?.quality.clone()?;
                let bad = q.level == proto::QualityLevel::QualityBad as i32;
                (bad && q.reason.contains("matches zone=cell9")).then_some(q.reason)
            }
        },
    )
    .await;
    assert_eq!(
        stranded,
        "unreachable: no node that is up (nodes 1,2,3) matches zone=cell9"
    );
    // The others are polled where they belong.
    let before = counters(&client, 0).await.len();
    wait_until_async("sim0 and sim1 polled", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            counters(&client, 0).await.len() > before + 2 && counters(&client, 1).await.len() > 2
        }
    })
    .await;
}

/// `bifrost_device_breaker_*` and `bifrost_device_polls_total` of `device`
/// on the node at `http`: (backoff ms, skipped polls, polls).
async fn breaker_metrics(http: &str, device: &str) -> (u64, u64, u64) {
    let label = format!("{{device=\"{device}\"}}");
    let get = |name: &str| {
        let name = format!("{name}{label}");
        async move { metric(http, &name).await.unwrap_or(0) }
    };
    (
        get("bifrost_device_breaker_backoff_ms").await,
        get("bifrost_device_breaker_skipped_polls_total").await,
        get("bifrost_device_polls_total").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_answering_is_held_back_by_its_breaker_and_resumes_when_it_answers() {
    let args = ["--breaker-after-polls", "3", "--breaker-max-backoff", "2s"];
    let sim = SimOptions::new(1, 2);
    let cluster = TestCluster::start_with_sim(1, &args, sim).await;
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let port = cluster.sim().expect("simulator").port();
    let client = cluster.client();
    let dev = Device {
        name: "sim0".into(),
        protocol: "modbus-tcp".into(),
        endpoint: format!("127.0.0.1:{port}"),
        unit_id: 1,
        poll_interval_ms: 100,
        timeout_ms: 200,
        retries: 0,
        enabled: true,
        ..Default::default()
    };
    let tag = Tag {
        name: counter_tag(0),
        device: "sim0".into(),
        address: "hr:0".into(),
        data_type: "u32".into(),
        ..Default::default()
    };
    let mut raw = cluster.raw_client(1).await;
    raw.import(ImportRequest {
        devices: vec![dev],
        tags: vec![tag],
    })
    .await
    .unwrap();
    wait_until_async(
        "first counter readings",
        Duration::from_secs(30),
        || async { counters(&client, 0).await.len() >= 3 },
    )
    .await;

    // The simulator stops answering (its connections stay open): polls
    // time out, and after three the breaker holds them back, 1 s, then 2 s.
    let sim_pid = cluster
        .sim()
        .unwrap()
        .pid()
        .expect("simulator pid")
        .to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &sim_pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {sim_pid}");
    };
    signal("-STOP");
    let http = cluster.node(1).http.clone();
    let failing = wait_until_async(
        "sim0 failing with its breaker at the 2 s maximum",
        Duration::from_secs(30),
        || async {
            let s = client.status().await.map_err(|e| e.to_string())?;
            match s.failing_devices.iter().find(|f| f.device == "sim0") {
                Some(f) if f.backoff_ms == 2000 => Ok(f.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!((failing.node, failing.reason.as_str()), (1, "timeout"));
    assert!(failing.failed_polls >= 4, "{failing:?}");
    assert_eq!(breaker_metrics(&http, "sim0").await.0, 2000);
    // While it is open, most due polls are skipped, not tried: a trial every
    // 2 s against ten polls due a second.
    let before = breaker_metrics(&http, "sim0").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = breaker_metrics(&http, "sim0").await;
    let (skipped, tried) = (after.1 - before.1, after.2 - before.2);
    assert!(
        skipped > 3 * tried && tried <= 4,
        "skipped {skipped}, tried {tried} in 4 s"
    );

    // It answers again: the next trial closes the breaker and polling resumes.
    signal("-CONT");
    let seen = counters(&client, 0).await.len();
    wait_until_async(
        "breaker closed and new readings",
        Duration::from_secs(30),
        || async {
            let s = client.status().await.map_err(|e| e.to_string())?;
            let m = breaker_metrics(&http, "sim0").await;
            let n = counters(&client, 0).await.len();
            match s.failing_devices.is_empty() && m.0 == 0 && n > seen + 5 {
                true => Ok(()),
                false => Err(format!("{:?} {m:?} {n}", s.failing_devices)),
            }
        },
    )
    .await;
}
