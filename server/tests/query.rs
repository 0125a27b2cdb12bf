//! SQL queries on real `bifrost serve` processes: consistency levels, the
//! `cluster` and `devices` tables, errors that name what and where, limits,
//! and `bifrostctl query` in its three output formats. The engine's results
//! are checked in depth by its unit tests (query/src/tests.rs) and against
//! SQLite (query/src/diff_tests.rs).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bifrost_client::proto::{cell::Kind, Cell, QueryRequest};
use bifrost_client::{Client, Consistency};
use common::*;

fn cell(c: &Cell) -> String {
    match &c.kind {
        None => "NULL".into(),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::IntValue(i)) => i.to_string(),
        Some(Kind::FloatValue(f)) => f.to_string(),
        Some(Kind::TextValue(t)) => t.clone(),
        Some(Kind::TimestampUs(t)) => t.to_string(),
    }
}

async fn rows(client: &Client, sql: &str, c: Consistency) -> Vec<Vec<String>> {
    let (_, rows, _) = client.query(sql, c).await.unwrap().collect().await.unwrap();
    rows.iter()
        .map(|r| r.cells.iter().map(cell).collect())
        .collect()
}

/// The error of a query that must fail, as a gRPC status.
async fn query_error(client: &Client, sql: &str) -> tonic::Status {
    let res = match client.query(sql, Consistency::Local).await {
        Ok(r) => r.collect().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match res.expect_err(sql) {
        bifrost_client::Error::Rpc(s) => *s,
        other => panic!("{sql}: {other}"),
    }
}

use bifrost_model::now_us;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_see_acknowledged_writes_and_errors_name_what_and_where() {
    let cluster = TestCluster::start(3, &["--query-max-scan", "5000"]);
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let follower = [1, 2, 3].into_iter().find(|&n| n != leader).unwrap();
    let client = cluster.client();
    let tags = setup_tags(&client, 3).await;
    let on_follower = cluster.node_client(follower);
    let t0 = now_us() - 60_000_000;
    for round in 0..5u64 {
        // 10 readings per tag per round, one second apart.
        let batch = (0..30)
            .map(|i| {
                let k = round * 30 + i;
                reading(
                    &format!("q-{k}"),
                    &tags[(i % 3) as usize],
                    t0 + k as i64 * 1_000_000,
                    k as f64,
                )
            })
            .collect();
        client.ingest(batch).await.unwrap();
        // Acknowledged through the leader, read at once on a follower.
        let got = rows(
            &on_follower,
            "SELECT count(*) FROM readings WHERE tag = 'line1/t0'",
            Consistency::Linearizable,
        )
        .await;
        assert_eq!(got, vec![vec![((round + 1) * 10).to_string()]]);
    }
    // Aggregates against values computed here: tag t1 holds k = 1, 4, ... 148.
    let ks: Vec<u64> = (0..150).filter(|k| k % 3 == 1).collect();
    let sum: u64 = ks.iter().sum();
    let got = rows(
        &client,
        "SELECT tag, count(value), min(value), max(value), sum(value), last(value) \
         FROM readings WHERE tag IN ('line1/t1') GROUP BY tag",
        Consistency::Leader,
    )
    .await;
    assert_eq!(
        got,
        vec![vec![
            "line1/t1".to_string(),
            ks.len().to_string(),
            "1".into(),
            "148".into(),
            sum.to_string(),
            "148".into()
        ]]
    );
    // The cluster table: three members, exactly one leader, the right one.
    let members = rows(
        &on_follower,
        "SELECT node_id, role FROM cluster ORDER BY node_id",
        Consistency::Local,
    )
    .await;
    assert_eq!(members.len(), 3);
    let leaders: Vec<&Vec<String>> = members.iter().filter(|r| r[1] == "leader").collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0][0], leader.to_string());
    let devices = rows(
        &client,
        "SELECT name, protocol FROM devices",
        Consistency::Linearizable,
    )
    .await;
    assert_eq!(devices, vec![vec!["plc1".to_string(), "modbus-tcp".into()]]);

    // `leader` consistency on a follower is refused with the leader's address.
    let mut raw = cluster.raw_client(follower).await;
    let e = raw
        .query(QueryRequest {
            sql: "SELECT name FROM tags".into(),
            consistency: Consistency::Leader as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.metadata().get("bifrost-leader").is_some());

    // Errors: kind, message, line and column.
    let e = query_error(&client, "SELECT name\nFROM tags\nWHER name = 'a'").await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("line 3"), "{}", e.message());
    assert_eq!(e.metadata().get("bifrost-query-error").unwrap(), "syntax");
    let e = query_error(&client, "SELECT * FROM tagz").await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("tagz"), "{}", e.message());
    let e = query_error(&client, "SELECT tag, vlaue FROM readings").await;
    assert!(e.message().contains("vlaue"), "{}", e.message());
    assert!(e.message().contains("line 1, column 13"), "{}", e.message());
    assert_eq!(e.metadata().get("bifrost-column").unwrap(), "13");
    let e = query_error(&client, "SELECT avg(quality) FROM readings").await;
    assert_eq!(e.metadata().get("bifrost-query-error").unwrap(), "type");
    let e = query_error(
        &client,
        "SELECT a.tag FROM readings a JOIN tags b ON a.tag = b.name",
    )
    .await;
    assert_eq!(
        e.metadata().get("bifrost-query-error").unwrap(),
        "unsupported"
    );
    // Over the scan limit of this cluster (5000): 150 readings are fine,
    // 6000 more are not.
    let more = (0..6000)
        .map(|k| reading(&format!("m-{k}"), &tags[0], t0 - 1 - k as i64, 0.0))
        .collect();
    client.ingest(more).await.unwrap();
    let e = query_error(
        &client,
        "SELECT count(*) FROM readings WHERE tag = 'line1/t0'",
    )
    .await;
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("5000"), "{}", e.message());
    // Every node is still up and answers.
    for n in 1..=3 {
        let got = rows(
            &cluster.node_client(n),
            "SELECT count(*) FROM readings WHERE tag = 'line1/t2'",
            Consistency::Linearizable,
        )
        .await;
        assert_eq!(got, vec![vec!["50".to_string()]]);
    }
}

/// `bifrostctl` from the same target directory as this test.
fn bifrostctl() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("bifrostctl")
}

fn ctl(endpoints: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bifrostctl())
        .args(["--endpoints", endpoints])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bifrostctl_query_prints_table_json_and_csv() {
    let cluster = TestCluster::start(3, &[]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    let tags = setup_tags(&client, 2).await;
    let ts = 1_700_000_000_000_000i64;
    client
        .ingest(vec![
            reading("c1", &tags[0], ts, 1.5),
            reading("c2", &tags[1], ts + 1_000_000, 2.5),
        ])
        .await
        .unwrap();
    let eps = cluster.endpoints().join(",");
    let sql = "SELECT tag, ts, value FROM readings WHERE tag LIKE 'line1/%' ORDER BY tag";
    let (ok, out, err) = ctl(&eps, &["query", sql, "--output", "csv"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "tag,ts,value\nline1/t0,2023-11-14T22:13:20.000000Z,1.5\nline1/t1,2023-11-14T22:13:21.000000Z,2.5\n"
    );
    let (ok, out, err) = ctl(
        &eps,
        &["query", sql, "--output", "json", "--consistency", "local"],
    );
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["tag"], "line1/t1");
    assert_eq!(lines[1]["value"], 2.5);
    // JSON keys come in the SELECT's order, not sorted.
    let (ok, out, err) = ctl(
        &eps,
        &[
            "query",
            "SELECT value, tag FROM readings WHERE tag LIKE 'line1/%' ORDER BY tag",
            "--output",
            "json",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "{\"value\":1.5,\"tag\":\"line1/t0\"}\n{\"value\":2.5,\"tag\":\"line1/t1\"}\n"
    );
    let (ok, out, err) = ctl(&eps, &["query", sql, "--output", "table"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("tag "), "{out}");
    assert!(out.trim_end().ends_with("(2 rows)"), "{out}");
    // `watch` prints one JSON line per reading, from a revision on.
    let (ok, out, err) = ctl(
        &eps,
        &["watch", "line1/*", "--from-revision", "0", "--count", "2"],
    );
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["tag"], "line1/t0");
    assert_eq!(lines[0]["revision"], 1);
    assert_eq!(lines[1]["value"], 2.5);
    assert_eq!(lines[1]["revision"], 2);
    // `retention` sets and shows the replicated retention.
    let (ok, out, err) = ctl(&eps, &["retention", "30d", "--output", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["retention_seconds"], 30 * 86400);
    assert_eq!(v["oldest_revision"], 1);
    let (ok, _, err) = ctl(&eps, &["retention", "soon"]);
    assert!(!ok);
    assert!(err.contains("retention 'soon'"), "{err}");
    // A bad query: exit 1 and the error on stderr, with its position.
    let (ok, _, err) = ctl(&eps, &["query", "SELECT nme FROM tags"]);
    assert!(!ok);
    assert!(err.contains("nme") && err.contains("column 8"), "{err}");
}

/// `QueryArrow` streams the same rows as `Query`, as one Arrow IPC stream
/// of typed columns in batches of 16384 rows, statistics in the last message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn arrow_results_are_the_query_rows_as_typed_record_batches() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use futures::StreamExt;

    const N: usize = 40_000;
    let cluster = TestCluster::start(3, &[]);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let client = cluster.client();
    let tags = setup_tags(&client, 1).await;
    let t0 = bifrost_model::now_us() - N as i64 * 1000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(10_000) {
        let batch = chunk
            .iter()
            .map(|i| {
                reading(
                    &format!("a{i}"),
                    &tags[0],
                    t0 + *i as i64 * 1000,
                    *i as f64 / 4.0,
                )
            })
            .collect();
        client.ingest(batch).await.unwrap();
    }
    let sql = format!(
        "SELECT ts, tag, value, quality, revision FROM readings WHERE tag = '{}'",
        tags[0]
    );
    let mut raw = cluster.raw_client(2).await;
    let request = QueryRequest {
        sql: sql.clone(),
        consistency: bifrost_client::proto::Consistency::Linearizable as i32,
    };
    let messages: Vec<_> = raw
        .query_arrow(request)
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(messages.len(), N.div_ceil(16_384), "one message per batch");
    let stats = messages.last().unwrap().stats.unwrap();
    assert_eq!(stats.rows, N as u64);
    let ipc: Vec<u8> = messages
        .iter()
        .flat_map(|m| m.ipc.iter().copied())
        .collect();
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["ts", "tag", "value", "value_text", "quality", "revision"]
    );
    let (mut ts, mut values, mut revisions) = (vec![], vec![], vec![]);
    for batch in reader {
        let b = batch.unwrap();
        ts.extend(
            b.column(0)
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .iter()
                .copied(),
        );
        values.extend(
            b.column(2)
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .copied(),
        );
        revisions.extend(
            b.column(5)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .copied(),
        );
        assert!(b
            .column(4)
            .as_string::<i32>()
            .iter()
            .all(|q| q == Some("good")));
    }
    // The same rows as the row API, in the same order.
    let rows = rows(&client, &sql, Consistency::Linearizable).await;
    assert_eq!(rows.len(), N);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], ts[i].to_string(), "ts of row {i}");
        assert_eq!(
            row[2].parse::<f64>().unwrap(),
            values[i],
            "value of row {i}"
        );
        assert_eq!(row[4], revisions[i].to_string(), "revision of row {i}");
    }
    assert_eq!(values[N - 1], (N - 1) as f64 / 4.0);
    // A bad query fails the stream with the same error as Query's.
    let bad = raw
        .query_arrow(QueryRequest {
            sql: "SELECT nope FROM readings".into(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("nope"), "{}", bad.message());
}
