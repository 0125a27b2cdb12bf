//! Bad input gets a clear error that says what and where, the node stays up,
//! and nothing already stored changes.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bifrost_client::proto::{self, Reading};
use bifrost_client::{Client, Consistency, Error};
use common::*;
use tonic::Code;

fn expect_err(r: Result<impl std::fmt::Debug, Error>, code: Code, needles: &[&str]) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.code(), Some(code), "wrong code for: {e}");
    let msg = e
        .status()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    for n in needles {
        assert!(
            msg.contains(n),
            "error message {msg:?} does not mention {n:?}"
        );
    }
}

fn value(kind: proto::value::Kind) -> Option<proto::Value> {
    Some(proto::Value { kind: Some(kind) })
}

/// Everything a client can see of the stored data.
async fn snapshot_of_data(c: &Client, tags: &[String]) -> String {
    let devices = c.list_devices(Consistency::Linearizable).await.unwrap();
    let t = c.list_tags(None, Consistency::Linearizable).await.unwrap();
    let r = all_readings(c, tags, Consistency::Linearizable).await;
    let cur = c
        .get_current(tags.to_vec(), Consistency::Linearizable)
        .await
        .unwrap();
    format!("{devices:?}\n{t:?}\n{r:?}\n{cur:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let cluster = TestCluster::start(3, &[]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let c = cluster.client();
    let tags = setup_tags(&c, 2).await;
    c.put_tag(tag("line1/count", "plc1", "i16"), true)
        .await
        .unwrap();
    let mut all_tags = tags.clone();
    all_tags.push("line1/count".into());
    c.ingest(vec![
        reading("r1", &tags[0], 1, 1.0),
        reading("r2", &tags[1], 2, 2.0),
    ])
    .await
    .unwrap();
    let before = snapshot_of_data(&c, &all_tags).await;

    // Config.
    expect_err(
        c.put_tag(tag("line1/x", "nope", "f32"), true).await,
        Code::InvalidArgument,
        &["unknown device 'nope'"],
    );
    expect_err(
        c.put_device(device("plc1"), true).await,
        Code::AlreadyExists,
        &["device 'plc1' already exists"],
    );
    expect_err(
        c.put_tag(tag(&tags[0], "plc1", "f64"), true).await,
        Code::AlreadyExists,
        &["tag 'line1/t0' already exists"],
    );
    expect_err(
        c.put_tag(tag("line 1/x", "plc1", "f32"), true).await,
        Code::InvalidArgument,
        &["' ' at position 5"],
    );
    expect_err(
        c.put_tag(tag("line1//x", "plc1", "f32"), true).await,
        Code::InvalidArgument,
        &["segment 2 is empty"],
    );
    expect_err(
        c.put_tag(tag("", "plc1", "f32"), true).await,
        Code::InvalidArgument,
        &["name is empty"],
    );
    expect_err(
        c.put_tag(tag("line1/y", "plc1", "float"), true).await,
        Code::InvalidArgument,
        &["unknown data type 'float'"],
    );
    let mut d = device("plc2");
    d.protocol = "profibus".into();
    expect_err(
        c.put_device(d, true).await,
        Code::InvalidArgument,
        &["unknown protocol 'profibus'"],
    );
    expect_err(
        c.delete_device("plc1").await,
        Code::FailedPrecondition,
        &["still has 3 tag(s)"],
    );
    expect_err(
        c.delete_tag("ghost", false).await,
        Code::NotFound,
        &["unknown tag 'ghost'"],
    );

    // Readings: the error names the reading (1-based) and its id.
    let mut text = reading("x1", &tags[0], 3, 0.0);
    text.value = value(proto::value::Kind::StringValue("hot".into()));
    expect_err(
        c.ingest(vec![reading("ok1", &tags[0], 3, 1.0), text]).await,
        Code::InvalidArgument,
        &["reading 2 (id 'x1')", "string"],
    );
    let mut frac = reading("x2", "line1/count", 3, 0.0);
    frac.value = value(proto::value::Kind::FloatValue(1.5));
    expect_err(
        c.ingest(vec![frac]).await,
        Code::InvalidArgument,
        &["reading 1 (id 'x2')", "whole number"],
    );
    let mut big = reading("x3", "line1/count", 3, 0.0);
    big.value = value(proto::value::Kind::IntValue(70_000));
    expect_err(
        c.ingest(vec![big]).await,
        Code::InvalidArgument,
        &["70000 is outside the range of i16"],
    );
    expect_err(
        c.ingest(vec![reading("x4", "no/such/tag", 3, 1.0)]).await,
        Code::InvalidArgument,
        &["unknown tag 'no/such/tag'"],
    );
    let mut no_value = reading("x5", &tags[0], 3, 0.0);
    no_value.value = None;
    expect_err(
        c.ingest(vec![no_value]).await,
        Code::InvalidArgument,
        &["good reading needs a value"],
    );
    let mut odd_quality = reading("x6", &tags[0], 3, 0.0);
    odd_quality.quality = Some(proto::Quality {
        level: 9,
        reason: String::new(),
    });
    expect_err(
        c.ingest(vec![odd_quality]).await,
        Code::InvalidArgument,
        &["unknown quality level 9"],
    );
    expect_err(c.ingest(vec![]).await, Code::InvalidArgument, &["empty"]);
    let next_week = bifrost_model::now_us() + 7 * 86_400_000_000;
    expect_err(
        c.ingest(vec![reading("x7", &tags[0], next_week, 1.0)])
            .await,
        Code::InvalidArgument,
        &["reading 1 (id 'x7')", "more than a day ahead"],
    );
    expect_err(
        c.ingest(vec![reading("x8", &tags[0], -1, 1.0)]).await,
        Code::InvalidArgument,
        &["reading 1 (id 'x8')", "before 1970"],
    );
    let huge: Vec<Reading> = (0..10_001)
        .map(|i| reading(&format!("h{i}"), &tags[0], i, 1.0))
        .collect();
    expect_err(
        c.ingest(huge).await,
        Code::ResourceExhausted,
        &["10001 readings", "at most 10000"],
    );
    expect_err(
        c.get_current(vec!["nope".into()], Consistency::Local).await,
        Code::NotFound,
        &["unknown tag 'nope'"],
    );

    // Garbage bytes on the gRPC port of every node: the connection is
    // dropped, the node stays up.
    for n in cluster.nodes() {
        let mut s = std::net::TcpStream::connect(&n.grpc).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"\x00\xffGARBAGE\r\n\r\nPRI * HTTP/2.0\r\n\x16\x03\x01 junk junk")
            .unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
    // A well-formed gRPC call to the internal Raft service (on the peer
    // port) with a garbage payload.
    let mut raft = bifrost_proto::raft::raft_internal_client::RaftInternalClient::connect(format!(
        "http://{}",
        cluster.node(1).peer
    ))
    .await
    .unwrap();
    let err = raft
        .append_entries(bifrost_proto::raft::RaftPayload {
            data: vec![1, 0xff, 0xfe, 3],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("bad internal payload"),
        "{}",
        err.message()
    );
    let err = raft
        .vote(bifrost_proto::raft::RaftPayload { data: vec![] })
        .await
        .unwrap_err();
    assert!(err.message().contains("empty record"), "{}", err.message());

    // Every node is still up and serving, and nothing changed.
    for id in [1, 2, 3] {
        let s = cluster.node_client(id).status().await.unwrap();
        assert_ne!(s.leader_id, 0, "node {id} lost its leader");
    }
    let after = snapshot_of_data(&c, &all_tags).await;
    assert_eq!(before, after, "stored data changed after rejected input");
    // And it still accepts good input.
    c.ingest(vec![reading("r3", &tags[0], 5, 3.0)])
        .await
        .unwrap();
}

/// A partial ingest stores the good readings of a batch and names each bad
/// one (position, id, code, reason); the default stays all or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partial_ingest_stores_the_good_readings_and_lists_the_bad_ones() {
    let cluster = TestCluster::start(3, &[]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let c = cluster.client();
    let tags = setup_tags(&c, 1).await;
    let now = bifrost_model::now_us();
    let mut text = reading("p3", &tags[0], now, 0.0);
    text.value = value(proto::value::Kind::StringValue("open".into()));
    let batch = vec![
        reading("p1", &tags[0], now, 1.0),
        reading("p2", "no/such/tag", now, 2.0),
        text,
        reading("p4", &tags[0], now + 7 * 86_400_000_000, 4.0),
        reading("", &tags[0], now, 5.0),
        reading("p6", &tags[0], now + 1, 6.0),
    ];
    // All or nothing by default: the first bad reading refuses the batch.
    expect_err(
        c.ingest(batch.clone()).await,
        Code::InvalidArgument,
        &["reading 2 (id 'p2')", "unknown tag 'no/such/tag'"],
    );
    assert!(all_readings(&c, &tags, Consistency::Linearizable)
        .await
        .is_empty());

    let r = c.ingest_partial(batch.clone()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (2, 0));
    let rejected: Vec<(u32, &str, &str)> = r
        .rejected
        .iter()
        .map(|x| (x.index, x.id.as_str(), x.code.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "p2", "unknown_tag"),
            (2, "p3", "bad_value"),
            (3, "p4", "bad_timestamp"),
            (4, "", "bad_reading"),
        ]
    );
    assert!(
        r.rejected[1].reason.contains("reading 3 (id 'p3')"),
        "{:?}",
        r.rejected[1]
    );
    let stored: Vec<String> = all_readings(&c, &tags, Consistency::Linearizable)
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(stored, ["p1", "p6"]);
    // Sent again (a gateway retrying): the good ones are duplicates, the bad
    // ones listed again, nothing stored twice.
    let again = c.ingest_partial(batch).await.unwrap();
    assert_eq!(
        (again.stored, again.duplicates, again.rejected.len()),
        (0, 2, 4)
    );
    // A batch of only bad readings stores nothing and says why.
    let none = c
        .ingest_partial(vec![reading("q", "no/such/tag", now, 1.0)])
        .await
        .unwrap();
    assert_eq!((none.stored, none.last_revision), (0, 0));
    assert_eq!(none.rejected[0].code, "unknown_tag");
}
