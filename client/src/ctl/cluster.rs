//! `status` and `member`.

use std::collections::BTreeMap;
use std::time::Duration;

use bifrost_client::proto::{Assignment, FailingDevice, Member, StatusResponse};
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{
    member_json, members_table, print_json, print_line, MemberJson, Output, Table,
};
use super::{Common, Ctx};

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Add a node: as a learner, then as a voter once it has caught up.
    Add(MemberAddArgs),
    /// Remove a node.
    Rm(MemberRmArgs),
}

impl MemberCmd {
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            MemberCmd::Add(a) => a.common.timeout,
            MemberCmd::Rm(a) => a.common.timeout,
        }
    }
}

#[derive(Args, Debug)]
pub struct MemberAddArgs {
    /// The new node's id.
    pub id: u64,
    /// The new node's public gRPC address, then its peer port's:
    /// HOST:PORT/HOST:PORT (its --listen and --peer-listen as others reach them).
    pub addr: String,
    /// Keep it a learner (replicates, does not vote).
    #[arg(long)]
    pub learner_only: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct MemberRmArgs {
    pub id: u64,
    #[command(flatten)]
    pub common: Common,
}

/// The JSON form of `status`: the promised fields first, then what else the
/// answering node reported.
#[derive(serde::Serialize)]
pub struct StatusJson<'a> {
    leader: Option<u64>,
    leader_addr: Option<&'a str>,
    term: u64,
    commit_index: u64,
    applied_index: u64,
    members: Vec<MemberJson<'a>>,
    last_log_index: u64,
    snapshot_index: u64,
    /// The node that answered, and its Raft state.
    node_id: u64,
    state: &'a str,
    /// Which node polls each device, by device name.
    assignments: Vec<AssignmentJson<'a>>,
    /// Highest reading revision applied on the answering node.
    revision: u64,
    /// Devices that did not answer their last polls, with their breakers.
    failing_devices: Vec<FailingJson<'a>>,
}

/// A device that did not answer its last polls (`breaker_backoff_ms` 0:
/// its circuit breaker is closed).
#[derive(serde::Serialize)]
pub struct FailingJson<'a> {
    device: &'a str,
    node: u64,
    failed_polls: u32,
    reason: &'a str,
    breaker_backoff_ms: u64,
    retry_in_ms: u64,
}

/// `{"device","node","epoch"}`, in that order.
#[derive(serde::Serialize)]
pub struct AssignmentJson<'a> {
    device: &'a str,
    node: u64,
    epoch: u64,
}

pub fn status_json(s: &StatusResponse) -> StatusJson<'_> {
    let has_leader = s.leader_id != 0;
    StatusJson {
        leader: has_leader.then_some(s.leader_id),
        leader_addr: (has_leader && !s.leader_addr.is_empty()).then_some(s.leader_addr.as_str()),
        term: s.term,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        members: s.members.iter().map(member_json).collect(),
        last_log_index: s.last_log_index,
        snapshot_index: s.snapshot_index,
        node_id: s.node_id,
        state: &s.state,
        assignments: sorted_assignments(&s.assignments)
            .into_iter()
            .map(|a| AssignmentJson {
                device: &a.device,
                node: a.node,
                epoch: a.epoch,
            })
            .collect(),
        revision: s.revision,
        failing_devices: s
            .failing_devices
            .iter()
            .map(|f| FailingJson {
                device: &f.device,
                node: f.node,
                failed_polls: f.failed_polls,
                reason: &f.reason,
                breaker_backoff_ms: f.backoff_ms,
                retry_in_ms: f.retry_in_ms,
            })
            .collect(),
    }
}

/// The failing devices: which node polls each, how often it failed and
/// why, and its circuit breaker (`open 4s, retry in 2.1s` or `closed`).
pub fn failing_table(failing: &[FailingDevice]) -> Table {
    let mut t = Table::new(&["DEVICE", "NODE", "FAILED POLLS", "REASON", "BREAKER"]);
    for f in failing {
        let breaker = match f.backoff_ms {
            0 => "closed".to_string(),
            ms => format!(
                "open {}s, retry in {:.1}s",
                round_secs(ms),
                f.retry_in_ms as f64 / 1000.0
            ),
        };
        t.row(vec![
            f.device.clone(),
            f.node.to_string(),
            f.failed_polls.to_string(),
            f.reason.clone(),
            breaker,
        ]);
    }
    t
}

fn round_secs(ms: u64) -> String {
    match ms % 1000 {
        0 => (ms / 1000).to_string(),
        _ => format!("{:.1}", ms as f64 / 1000.0),
    }
}

fn sorted_assignments(a: &[Assignment]) -> Vec<&Assignment> {
    let mut v: Vec<&Assignment> = a.iter().collect();
    v.sort_by(|x, y| x.device.cmp(&y.device));
    v
}

/// `N assigned (node 1: a, node 2: b, ...)`: every member, with 0 for a
/// member that polls nothing, and any non-member that still holds devices.
pub fn assignment_summary(s: &StatusResponse) -> String {
    let mut per_node: BTreeMap<u64, usize> = s.members.iter().map(|m| (m.id, 0)).collect();
    for a in &s.assignments {
        *per_node.entry(a.node).or_default() += 1;
    }
    let nodes: Vec<String> = per_node
        .iter()
        .map(|(id, n)| format!("node {id}: {n}"))
        .collect();
    if nodes.is_empty() {
        format!("{} assigned", s.assignments.len())
    } else {
        format!("{} assigned ({})", s.assignments.len(), nodes.join(", "))
    }
}

pub fn status_text(s: &StatusResponse) -> String {
    let leader = if s.leader_id == 0 {
        "none".to_string()
    } else {
        format!("{} ({})", s.leader_id, s.leader_addr)
    };
    let mut out = format!(
        "leader         {leader}\nterm           {}\ncommit index   {}\napplied index  {}\nrevision       {}\ndevices        {}\nanswered by    node {} ({})\n\n",
        s.term,
        s.commit_index,
        s.applied_index,
        s.revision,
        assignment_summary(s),
        s.node_id,
        s.state
    );
    out.push_str(&members_table(&s.members).render());
    if !s.failing_devices.is_empty() {
        let whose = match s.node_id == s.leader_id {
            true => "every node's, as the leader heard them".to_string(),
            false => format!("node {}'s own; the leader lists every node's", s.node_id),
        };
        out.push_str(&format!("\nfailing devices ({whose})\n"));
        out.push_str(&failing_table(&s.failing_devices).render());
    }
    out
}

pub async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let s = ctx.client()?.status().await?;
    match ctx.output {
        Output::Json => print_json(&status_json(&s))?,
        Output::Text | Output::Csv => print_line(status_text(&s).trim_end())?,
    }
    Ok(())
}

pub async fn member(ctx: &Ctx, cmd: MemberCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let members = match cmd {
        MemberCmd::Add(a) => client.add_member(a.id, &a.addr, a.learner_only).await?,
        MemberCmd::Rm(a) => client.remove_member(a.id).await?,
    };
    print_members(ctx, &members)
}

fn print_members(ctx: &Ctx, members: &[Member]) -> anyhow::Result<()> {
    match ctx.output {
        Output::Json => {
            print_json(&json!({"members": members.iter().map(member_json).collect::<Vec<_>>()}))?
        }
        Output::Text | Output::Csv => members_table(members).print()?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn sample(leader_id: u64) -> StatusResponse {
        StatusResponse {
            oldest_revision: 1,
            retention_seconds: 0,
            audit_retention_seconds: 0,
            node_id: 2,
            leader_id,
            leader_addr: if leader_id == 0 {
                String::new()
            } else {
                "127.0.0.1:7001".into()
            },
            term: 3,
            commit_index: 120,
            applied_index: 119,
            last_log_index: 121,
            members: vec![
                Member {
                    id: 1,
                    addr: "127.0.0.1:7001".into(),
                    peer_addr: "127.0.0.1:7101".into(),
                    role: "leader".into(),
                },
                Member {
                    id: 2,
                    addr: "127.0.0.1:7002".into(),
                    role: "follower".into(),
                    ..Default::default()
                },
            ],
            state: "Follower".into(),
            snapshot_index: 0,
            purged_index: 0,
            assignments: vec![
                Assignment {
                    device: "press3".into(),
                    node: 2,
                    epoch: 40,
                },
                Assignment {
                    device: "oven1".into(),
                    node: 2,
                    epoch: 41,
                },
                Assignment {
                    device: "mixer".into(),
                    node: 4,
                    epoch: 12,
                },
            ],
            revision: 5321,
            failing_devices: vec![],
        }
    }

    #[test]
    fn status_json_has_the_promised_fields() {
        let sample = sample(1);
        let text = serde_json::to_string(&status_json(&sample)).unwrap();
        assert!(
            text.starts_with(r#"{"leader":1,"leader_addr":"127.0.0.1:7001","term":3,"#),
            "{text}"
        );
        let j: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(j["leader"], json!(1));
        assert_eq!(j["leader_addr"], json!("127.0.0.1:7001"));
        assert_eq!(j["term"], json!(3));
        assert_eq!(j["commit_index"], json!(120));
        assert_eq!(j["applied_index"], json!(119));
        assert_eq!(
            j["members"],
            json!([
                {"id": 1, "addr": "127.0.0.1:7001", "peer_addr": "127.0.0.1:7101", "role": "leader"},
                {"id": 2, "addr": "127.0.0.1:7002", "peer_addr": "", "role": "follower"},
            ])
        );
    }

    #[test]
    fn status_json_leader_is_null_without_a_leader() {
        let sample = sample(0);
        let j = serde_json::to_value(status_json(&sample)).unwrap();
        assert_eq!(j["leader"], Json::Null);
        assert_eq!(j["leader_addr"], Json::Null);
    }

    #[test]
    fn status_text_names_leader_and_lists_members() {
        let t = status_text(&sample(1));
        assert!(t.starts_with("leader         1 (127.0.0.1:7001)\n"), "{t}");
        assert!(
            t.contains(
                "\nID  ADDR            PEER            ROLE\n1   127.0.0.1:7001  127.0.0.1:7101  leader\n"
            ),
            "{t}"
        );
        assert!(status_text(&sample(0)).starts_with("leader         none\n"));
        assert!(
            t.contains("\nrevision       5321\ndevices        3 assigned (node 1: 0, node 2: 2, node 4: 1)\n"),
            "{t}"
        );
    }

    #[test]
    fn status_text_lists_failing_devices_with_their_breakers() {
        let mut s = sample(2);
        assert!(!status_text(&s).contains("failing devices"));
        let failing = |device: &str, backoff_ms, retry_in_ms| FailingDevice {
            device: device.into(),
            node: 4,
            failed_polls: 5,
            reason: "timeout".into(),
            backoff_ms,
            retry_in_ms,
        };
        s.failing_devices = vec![failing("press1", 4000, 2100), failing("press2", 0, 0)];
        let t = status_text(&s);
        assert!(
            t.contains("\nfailing devices (every node's, as the leader heard them)\n"),
            "{t}"
        );
        assert!(
            t.contains("press1  4     5             timeout  open 4s, retry in 2.1s\n"),
            "{t}"
        );
        assert!(
            t.ends_with("press2  4     5             timeout  closed\n"),
            "{t}"
        );
        s.leader_id = 1;
        assert!(status_text(&s).contains("(node 2's own; the leader lists every node's)"));
        let j = serde_json::to_value(status_json(&s)).unwrap();
        assert_eq!(j["failing_devices"][0]["breaker_backoff_ms"], 4000);
        assert_eq!(j["failing_devices"][1]["reason"], "timeout");
    }

    #[test]
    fn assignment_summary_counts_per_node() {
        let mut s = sample(1);
        // Members with no devices show 0; a non-member holding devices shows.
        assert_eq!(
            assignment_summary(&s),
            "3 assigned (node 1: 0, node 2: 2, node 4: 1)"
        );
        s.assignments.clear();
        assert_eq!(assignment_summary(&s), "0 assigned (node 1: 0, node 2: 0)");
        s.members.clear();
        assert_eq!(assignment_summary(&s), "0 assigned");
    }

    #[test]
    fn status_json_has_assignments_and_revision() {
        let sample = sample(1);
        let j = serde_json::to_value(status_json(&sample)).unwrap();
        assert_eq!(j["revision"], json!(5321));
        assert_eq!(
            j["assignments"],
            json!([
                {"device": "mixer", "node": 4, "epoch": 12},
                {"device": "oven1", "node": 2, "epoch": 41},
                {"device": "press3", "node": 2, "epoch": 40},
            ])
        );
    }
}
