//! A cluster polling a real OPC UA server (asyncua from PyPI): browse and
//! create tags, live values through the poller, a write through the owner,
//! and Bad quality while the server is down.

mod common;

use std::time::Duration;

use bifrost_client::proto;
use bifrost_client::{Client, Consistency};
use common::*;

async fn current(client: &Client, tag: &str) -> Option<proto::Reading> {
    client
        .get_current(vec![tag.into()], Consistency::Linearizable)
        .await
        .ok()?
        .into_iter()
        .next()
}

async fn wait_for(
    client: &Client,
    tag: &str,
    what: &str,
    ok: impl Fn(&proto::Reading) -> bool,
) -> proto::Reading {
    wait_until_async(
        format!("{tag} to be {what}"),
        Duration::from_secs(60),
        || async {
            match current(client, tag).await {
                Some(r) if ok(&r) => Ok(r),
                last => Err(last),
            }
        },
    )
    .await
}

fn good(r: &proto::Reading) -> bool {
    r.quality
        .as_ref()
        .is_some_and(|q| q.level == proto::QualityLevel::QualityGood as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_browses_polls_and_writes_a_real_opcua_server() {
    let port = free_port();
    let mut peer = start_opcua_peer(port, &[]);
    let cluster = TestCluster::start(3, &[]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let endpoint = format!("opc.tcp://127.0.0.1:{port}");
    let mut raw = cluster.raw_client(3).await;
    raw.put_device(proto::PutDeviceRequest {
        device: Some(proto::Device {
            name: "ua1".into(),
            protocol: "opcua".into(),
            endpoint: endpoint.clone(),
            poll_interval_ms: 200,
            timeout_ms: 2000,
            enabled: true,
            ..Default::default()
        }),
        create_only: true,
        expected_revision: None,
        request_id: String::new(),
    })
    .await
    .unwrap();
    // Browse the server's variables and create a tag for each.
    let browsed = raw
        .browse(proto::BrowseRequest {
            endpoint: endpoint.clone(),
            node: "ns=2;s=Bifrost".into(),
            create_tags_on_device: "ua1".into(),
            tag_prefix: "ua".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let int16 = browsed
        .items
        .iter()
        .find(|i| i.address == "ns=2;s=Int16")
        .expect("Int16 listed");
    assert_eq!((int16.data_type.as_str(), int16.writable), ("i16", true));
    let counter = browsed
        .items
        .iter()
        .find(|i| i.address == "ns=2;s=Counter")
        .expect("Counter listed");
    assert!(!counter.writable);
    assert!(browsed.created >= 8, "created {} tags", browsed.created);
    let client = cluster.client();
    let tags = client
        .list_tags(Some("ua1"), Consistency::Linearizable)
        .await
        .unwrap();
    let name_of = |addr: &str| {
        tags.iter()
            .find(|t| t.address == addr)
            .map(|t| t.name.clone())
            .unwrap()
    };
    let (counter_tag, int16_tag, string_tag) = (
        name_of("ns=2;s=Counter"),
        name_of("ns=2;s=Int16"),
        name_of("ns=2;s=String"),
    );

    // Live values arrive and the counter moves.
    let first = wait_for(&client, &counter_tag, "good", good).await;
    let first_ts = first.ts_us;
    wait_for(&client, &counter_tag, "advancing", |r| {
        good(r) && r.ts_us > first_ts
    })
    .await;
    let s = wait_for(&client, &string_tag, "good", good).await;
    assert_eq!(
        s.value.and_then(|v| v.kind),
        Some(proto::value::Kind::StringValue("hello bifrost".into()))
    );

    // A write through the API runs on the owner and is read back.
    let v = Some(proto::Value {
        kind: Some(proto::value::Kind::IntValue(-321)),
    });
    let w = raw
        .write_tag(proto::WriteTagRequest {
            tag: int16_tag.clone(),
            value: v.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.outcome, "ok", "{w:?}");
    assert_eq!(w.read_back, v);
    wait_for(&client, &int16_tag, "showing the written value", |r| {
        r.value == v
    })
    .await;
    let w = raw
        .write_tag(proto::WriteTagRequest {
            tag: counter_tag.clone(),
            value: Some(proto::Value {
                kind: Some(proto::value::Kind::IntValue(1)),
            }),
        })
        .await;
    assert_eq!(
        w.unwrap_err().code(),
        tonic::Code::FailedPrecondition,
        "the counter is read-only"
    );

    // Server down: Bad quality with a reason. Back up: Good again.
    let _ = peer.0.kill();
    let _ = peer.0.wait();
    let bad = wait_for(&client, &counter_tag, "bad", |r| !good(r)).await;
    let reason = bad.quality.unwrap().reason;
    assert!(
        ["not_connected", "comm_failure", "timeout"]
            .iter()
            .any(|x| reason.starts_with(x)),
        "reason {reason:?}"
    );
    peer = start_opcua_peer(port, &[]);
    wait_for(&client, &counter_tag, "good again", good).await;
    drop(peer);
}
