//! The leader measures each member's wall clock against its own with every
//! probe: a node whose clock is ten seconds ahead (shifted with the fault
//! hook `BIFROST_FAULT_CLOCK_OFFSET_MS`, as a machine with a wrong clock
//! would be) shows in `bifrost_clock_offset_ms` and in one warning, while
//! the cluster works on.

mod common;

use std::time::Duration;

use common::*;

const AHEAD_MS: i64 = 10_000;

/// `bifrost_clock_offset_ms{node="ID"}` on the node at `http`.
async fn offset_ms(http: &str, id: u64) -> Option<i64> {
    let page = http_get(http, "/metrics").await;
    let prefix = format!("bifrost_clock_offset_ms{{node=\"{id}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_a_member_whose_clock_is_off() {
    let mut c = TestCluster(Cluster::create(options(3, &[])).unwrap());
    c.restart(1);
    c.restart(2);
    let ahead = AHEAD_MS.to_string();
    c.restart_with_env(3, &[("BIFROST_FAULT_CLOCK_OFFSET_MS", &ahead)])
        .unwrap();
    let leader = c.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let http = c.node(leader).http.clone();
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    // Seen from the leader, node 3 is ahead; from node 3, the others behind.
    let expected = |id: u64| match (leader, id) {
        (3, _) => -AHEAD_MS,
        (_, 3) => AHEAD_MS,
        _ => 0,
    };
    for &id in &others {
        let got = wait_until_async(
            "the leader's clock offsets",
            Duration::from_secs(30),
            || {
                let http = http.clone();
                async move { offset_ms(&http, id).await }
            },
        )
        .await;
        let want = expected(id);
        assert!(
            (got - want).abs() < 1_000,
            "node {id}: offset {got} ms, expected about {want}"
        );
    }
    let skewed = if leader == 3 { others[0] } else { 3 };
    wait_until("the leader's warning", Duration::from_secs(10), || {
        c.log_of(leader).contains("a member's clock is off")
            && c.log_of(leader).contains(&format!("node={skewed}"))
    });
    // Writes and reads go on.
    let tags = setup_tags(&c.client(), 1).await;
    c.client()
        .ingest(vec![reading("r1", &tags[0], 1, 1.0)])
        .await
        .unwrap();
}
