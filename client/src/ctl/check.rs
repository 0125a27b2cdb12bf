//! `check replicas`: does every node hold the same history?
//!
//! The comparison is the client library's ([`bifrost_client::replica`]);
//! this module prints its report and turns a difference into exit status 1.

use std::time::{Duration, Instant};

use bifrost_client::replica::{hex, CheckOptions, Progress, Report, DEFAULT_RANGE_SIZE};
use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

use super::output::{print_json, print_line, Output};
use super::{Common, Ctx, QuietFailure};

/// Time between progress lines on stderr (a short check prints none).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Subcommand, Debug)]
pub enum CheckCmd {
    /// Compare every member's history by revision range, up to the revision
    /// all have applied; name the first range that differs (and exit 1).
    Replicas(ReplicasArgs),
}

impl CheckCmd {
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            CheckCmd::Replicas(a) => a.common.timeout,
        }
    }
}

#[derive(Args, Debug)]
pub struct ReplicasArgs {
    /// Revisions per compared range.
    #[arg(long, default_value_t = DEFAULT_RANGE_SIZE,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub range_size: u64,
    #[command(flatten)]
    pub common: Common,
}

pub async fn check(ctx: &Ctx, cmd: CheckCmd) -> anyhow::Result<()> {
    let CheckCmd::Replicas(args) = cmd;
    let opts = CheckOptions {
        range_size: args.range_size,
        call_timeout: ctx.timeout,
        ..Default::default()
    };
    let mut last_line = Instant::now();
    let report = ctx
        .client()?
        .check_replicas(&opts, |p| {
            if let Progress::Compared { through, to } = p {
                if last_line.elapsed() >= PROGRESS_EVERY {
                    eprintln!("check: compared through revision {through} of {to}");
                    last_line = Instant::now();
                }
            }
        })
        .await?;
    match ctx.output {
        Output::Json => print_json(&report_json(&report))?,
        Output::Text | Output::Csv => print_line(report.text())?,
    }
    if report.agrees() {
        Ok(())
    } else {
        Err(QuietFailure.into())
    }
}

/// `{"agree", "range_size", "from", "through", "ranges", "readings",
/// "nodes": [...], "difference": null | {"first", "last", "nodes": [...]}}`.
pub fn report_json(r: &Report) -> Json {
    let c = &r.comparison;
    let nodes: Vec<Json> = r
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "addr": n.addr,
                "revision": n.revision,
                "oldest_revision": n.oldest_revision,
                "applied_index": n.applied_index,
            })
        })
        .collect();
    let difference = c.difference.as_ref().map(|d| {
        json!({
            "first": d.first,
            "last": d.last,
            "nodes": d.nodes.iter().map(|n| json!({
                "id": n.node_id,
                "count": n.count,
                "digest": hex(&n.digest),
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "agree": r.agrees(),
        "range_size": r.range_size,
        "from": c.from,
        "through": c.through,
        "ranges": c.ranges,
        "readings": c.readings,
        "nodes": nodes,
        "difference": difference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_client::replica::{Comparison, Difference, NodeRange, NodeState};

    #[test]
    fn the_json_report_names_the_differing_range_and_each_nodes_view() {
        let node = |id| NodeState {
            id,
            addr: format!("127.0.0.1:700{id}"),
            revision: 40,
            oldest_revision: 1,
            applied_index: 90,
        };
        let r = Report {
            nodes: vec![node(1), node(2)],
            range_size: 10,
            comparison: Comparison {
                from: 1,
                through: 20,
                ranges: 2,
                readings: 20,
                difference: Some(Difference {
                    first: 21,
                    last: 30,
                    nodes: vec![
                        NodeRange {
                            node_id: 1,
                            count: 10,
                            digest: vec![1, 2],
                        },
                        NodeRange {
                            node_id: 2,
                            count: 11,
                            digest: vec![3, 4],
                        },
                    ],
                }),
            },
        };
        let j = report_json(&r);
        assert_eq!(j["agree"], json!(false));
        assert_eq!(j["through"], json!(20));
        assert_eq!(j["nodes"][1]["addr"], json!("127.0.0.1:7002"));
        assert_eq!(
            j["difference"],
            json!({"first": 21, "last": 30, "nodes": [
                {"id": 1, "count": 10, "digest": "0102"},
                {"id": 2, "count": 11, "digest": "0304"},
            ]})
        );
    }
}
