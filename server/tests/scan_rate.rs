//! Scan rates end to end, against a pymodbus server that counts the read
//! requests it answers (`tests/peers/modbus_counting.py`): a tag is read at
//! its own scan rate, not at its device's poll interval, and its stored
//! history holds a reading per read.
//!
//! The interpreter comes from `BIFROST_PYTHON` (default `python3`); without
//! pymodbus the test fails saying so, it never passes by skipping.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bifrost_client::proto::{Device, ImportRequest, Tag};
use bifrost_client::{Client, Consistency, HistoryQuery};
use bifrost_testkit::python;
use common::*;

/// The counting Modbus server; killed when dropped.
struct CountingPeer {
    child: Child,
    /// Read requests answered, by start address.
    reads: Arc<Mutex<HashMap<u16, u64>>>,
    port: u16,
}

impl CountingPeer {
    fn start() -> CountingPeer {
        let py = python();
        let script = format!(
            "{}/tests/peers/modbus_counting.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut child = Command::new(&py)
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {py} {script}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = ready
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{script} did not start (first line {ready:?}): is pymodbus importable by \
                     '{py}'? Run scripts/test.sh, which creates the test venv, or set \
                     BIFROST_PYTHON to a Python with `pip install -r drivers/tests/requirements.txt`"
                )
            });
        let reads = Arc::new(Mutex::new(HashMap::new()));
        let counts = reads.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                // READ <function code> <start address> <count>
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let ["READ", _, start, _] = fields[..] {
                    let start: u16 = start.parse().expect("start address");
                    *counts.lock().unwrap().entry(start).or_insert(0) += 1;
                }
            }
        });
        CountingPeer { child, reads, port }
    }

    fn reads_at(&self, start: u16) -> u64 {
        self.reads.lock().unwrap().get(&start).copied().unwrap_or(0)
    }
}

impl Drop for CountingPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Register of tag A: no scan rate, so read at its device's 1 s interval.
const A: u16 = 0;
/// Register of tag B, far from A: scan rate 200 ms on the same device.
const B: u16 = 500;
/// Register of tag C: scan rate 1 s on a device whose interval is 200 ms.
const C: u16 = 700;

fn modbus_device(name: &str, port: u16, poll_interval_ms: u64) -> Device {
    Device {
        name: name.into(),
        protocol: "modbus-tcp".into(),
        endpoint: format!("127.0.0.1:{port}"),
        unit_id: 1,
        poll_interval_ms,
        timeout_ms: 500,
        retries: 0,
        enabled: true,
        // Every tag its own request, so the counts are per tag.
        labels: [("modbus.max_gap".to_string(), "0".to_string())].into(),
        ..Default::default()
    }
}

fn u16_tag(name: &str, device: &str, register: u16, scan_rate_ms: u64) -> Tag {
    Tag {
        name: name.into(),
        device: device.into(),
        address: format!("hr:{register}"),
        data_type: "u16".into(),
        scan_rate_ms,
        ..Default::default()
    }
}

async fn history_len(client: &Client, tag: &str) -> usize {
    let q = HistoryQuery {
        tag: tag.into(),
        consistency: Consistency::Linearizable,
        ..Default::default()
    };
    client.history_all(q).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_tag_is_read_at_its_own_scan_rate() {
    let peer = CountingPeer::start();
    let cluster = TestCluster::start(1, &[]);
    cluster.wait_leader(&[1], Duration::from_secs(30)).await;
    let mut raw = cluster.raw_client(1).await;
    let r = raw
        .import(ImportRequest {
            devices: vec![
                modbus_device("mixed", peer.port, 1000),
                modbus_device("slow", peer.port, 200),
            ],
            tags: vec![
                u16_tag("scan/a", "mixed", A, 0),
                u16_tag("scan/b", "mixed", B, 200),
                u16_tag("scan/c", "slow", C, 1000),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.devices, r.tags), (2, 3));

    // Measure over a window that starts once every tag has been read.
    wait_until_async(
        "every tag read at least once",
        Duration::from_secs(30),
        || async { [A, B, C].iter().all(|&r| peer.reads_at(r) > 0) },
    )
    .await;
    let before = [A, B, C].map(|r| peer.reads_at(r));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let [a, b, c] = [A, B, C].map(|r| peer.reads_at(r));
    let (a, b, c) = (a - before[0], b - before[1], c - before[2]);
    eprintln!("reads in 4 s: A (device 1 s) {a}, B (200 ms) {b}, C (1 s, device 200 ms) {c}");
    // About 4, 20 and 4; before scan rates were honoured, A and B were
    // read equally often and C five times as often as A.
    assert!(a >= 1, "A was not read in 4 s");
    assert!(
        b >= 3 * a,
        "B (200 ms) read {b} times, A (1 s) {a}: B should be ~5x A"
    );
    assert!(c >= 1, "C was not read in 4 s");
    assert!(
        3 * c <= b,
        "C (scan rate 1 s on a 200 ms device) read {c} times, B (200 ms) {b}: \
         C must follow its own rate, not the device interval"
    );

    // Every read gives a new value (the peer's read count), so every read is
    // a stored reading.
    let client = cluster.client();
    let (hist_a, hist_b) = (
        history_len(&client, "scan/a").await,
        history_len(&client, "scan/b").await,
    );
    eprintln!("stored readings: A {hist_a}, B {hist_b}");
    assert!(hist_a >= 1, "no reading of A stored");
    assert!(
        hist_b >= 3 * hist_a,
        "B has {hist_b} stored readings, A {hist_a}: B should have ~5x A"
    );
}
