//! Device secrets stay secret (issue 12, part 5): an OPC UA password given
//! to a TLS cluster is sealed before it is replicated, opened only by the
//! node that polls the device (which logs in to a real asyncua server with
//! it), and shown by no answer: a canary password is in no file of any
//! node (Raft log, state, snapshots, logs) and in no API answer. An
//! export's placeholder keeps the stored secret, and is refused where
//! there is none.

mod common;

use std::time::Duration;

use bifrost_client::proto;
use bifrost_client::{Client, Consistency};
use common::*;
use tonic::Code;

const CANARY: &str = "canary-7Qx-opcua-pw";
const TAG: &str = "ua/counter";

fn opcua_device(name: &str, port: u16, password: &str) -> proto::Device {
    proto::Device {
        name: name.into(),
        protocol: "opcua".into(),
        endpoint: format!("opc.tcp://127.0.0.1:{port}/bifrost/"),
        poll_interval_ms: 200,
        timeout_ms: 2000,
        enabled: true,
        labels: [
            ("opcua.user".to_string(), "operator".to_string()),
            ("opcua.password".to_string(), password.to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

/// Waits until `TAG` has a good value newer than `after_us`.
async fn polled_after(client: &Client, after_us: i64) {
    wait_until_async(
        format!("{TAG} polled with the password"),
        Duration::from_secs(60),
        || async {
            let now = client
                .get_current(vec![TAG.into()], Consistency::Linearizable)
                .await
                .ok()
                .and_then(|r| r.into_iter().next());
            match now {
                Some(r)
                    if r.ts_us > after_us
                        && r.quality.as_ref().is_some_and(|q| {
                            q.level == proto::QualityLevel::QualityGood as i32
                        }) =>
                {
                    Ok(())
                }
                other => Err(other),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_password_is_sealed_used_for_polling_and_found_in_no_file_or_answer() {
    let port = free_port();
    let _peer = start_opcua_peer(port, &["--users", &format!("operator:{CANARY}")]);
    let c = TestCluster(Cluster::start(options(3, &["--snapshot-logs", "30"]).tls()).unwrap());
    c.wait_leader(&[1, 2, 3], Duration::from_secs(60)).await;
    let client = c.client();
    let start = bifrost_model::now_us();
    let stored = client
        .put_device(opcua_device("ua", port, CANARY), true)
        .await
        .unwrap();
    assert_eq!(stored.labels["opcua.password"], "(secret)");
    assert_eq!(stored.labels["opcua.user"], "operator");
    let tag = proto::Tag {
        name: TAG.into(),
        device: "ua".into(),
        address: "ns=2;s=Counter".into(),
        data_type: "i32".into(),
        ..Default::default()
    };
    client.put_tag(tag, true).await.unwrap();
    polled_after(&client, start).await;

    // The listing (and so an export) shows the placeholder; given back, it
    // keeps the secret, and polling goes on.
    let listed = client
        .list_devices(Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(listed[0].labels["opcua.password"], "(secret)");
    let mut changed = listed[0].clone();
    changed.poll_interval_ms = 300;
    client.put_device(changed.clone(), false).await.unwrap();
    let again = bifrost_model::now_us();
    polled_after(&client, again).await;
    // Under another name there is no secret to keep: refused, saying why.
    changed.name = "ua-copy".into();
    let e = client.put_device(changed.clone(), true).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(
        e.to_string()
            .contains("device 'ua-copy' label 'opcua.password' is the placeholder"),
        "{e}"
    );
    let e = client.import(vec![changed], vec![]).await.unwrap_err();
    assert!(e.to_string().contains("is the placeholder"), "{e}");

    // Enough entries for a snapshot on every node.
    for i in 0..40 {
        let t = proto::Tag {
            name: format!("fill/{i}"),
            device: "ua".into(),
            address: "ns=2;s=Counter".into(),
            data_type: "i32".into(),
            ..Default::default()
        };
        client.put_tag(t, true).await.unwrap();
    }
    for id in 1..=3 {
        let snapshots = c.node(id).data_dir.join("snapshots");
        wait_until(
            format!("a snapshot on node {id}"),
            Duration::from_secs(30),
            || {
                std::fs::read_dir(&snapshots)
                    .map(|d| d.count() > 0)
                    .unwrap_or(false)
            },
        );
    }

    // Every answer: none holds the password.
    let answers = [
        format!(
            "{:?}",
            client
                .list_devices(Consistency::Linearizable)
                .await
                .unwrap()
        ),
        format!("{:?}", client.status().await.unwrap()),
        format!(
            "{:?}",
            client
                .query("SELECT * FROM devices", Consistency::Linearizable)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
        ),
        // The audit trail records the device change, never the secret.
        format!(
            "{:?}",
            client
                .query("SELECT * FROM audit", Consistency::Linearizable)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
        ),
    ];
    for a in &answers {
        assert!(!a.contains(CANARY), "an answer holds the password: {a}");
    }
    assert!(answers[2].contains("(secret)"), "{}", answers[2]);
    assert!(
        answers[3].contains("ua"),
        "the device change is audited: {}",
        answers[3]
    );
    // `bifrostctl export` writes what the listing gives (checked above);
    // the metrics pages name devices too.
    for node in c.nodes() {
        let (_, page) = https_get(&c.pki(), &node.http, "/metrics").await.unwrap();
        assert!(page.contains("bifrost_"), "node {}: no metrics", node.id);
        assert!(
            !page.contains(CANARY),
            "node {}'s metrics hold the password",
            node.id
        );
    }
    // Every file of every node: data directories (Raft log, state,
    // snapshots) and logs. RocksDB blocks are LZ4-compressed, but LZ4 keeps
    // a block's first occurrence of a string as a literal (the canary has
    // no repeated 4-byte run of its own), so a leak would still show.
    let leaks = files_containing(&c.dir(), &[CANARY.as_bytes()]);
    assert!(leaks.is_empty(), "the password is in {leaks:?}");
}
