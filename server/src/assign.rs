//! Device-to-node assignment, decided by the leader.
//!
//! Every node runs [`run`]; only the current leader acts. It probes every
//! member with a `Ping` each `probe_interval` and counts a member as failed
//! when it has not answered for `failure_timeout`. Each round it computes the
//! wanted assignment ([`plan`]) and proposes the changes as one
//! `Command::Assign`, which stores a new epoch for every device whose owner
//! changes. The plan is sticky: a device stays with a live owner unless the
//! load is uneven by more than one device, so a healthy cluster sees no churn.
//!
//! The leader itself polls nothing while another member is alive: it carries
//! the Raft load, and the death of a leader then never leaves devices
//! unpolled for the length of an election plus a failure timeout.
//!
//! Bound: a dead poller is noticed after `failure_timeout` (1 s by default),
//! plus at most one probe round and one commit, within the 2 s promised for
//! devices polled every second or faster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_raft::{Command, RaftNode};
use bifrost_storage::{Assignment, Device};

use crate::metrics::Metrics;
use crate::peer::Peers;

#[derive(Clone, Debug)]
pub struct AssignOptions {
    pub probe_interval: Duration,
    pub failure_timeout: Duration,
}

impl Default for AssignOptions {
    fn default() -> Self {
        AssignOptions {
            probe_interval: Duration::from_millis(250),
            failure_timeout: Duration::from_millis(1000),
        }
    }
}

/// The wanted owner of every enabled device. `takers` may keep their
/// devices and receive more; `keepers` (members not yet heard from since
/// this leader took over) keep theirs but get none; any other owner (dead,
/// removed, or the leader itself) loses its devices. Pure, so it can be
/// tested alone.
pub fn plan(
    devices: &[Device],
    current: &BTreeMap<String, Assignment>,
    takers: &BTreeSet<u64>,
    keepers: &BTreeSet<u64>,
) -> BTreeMap<String, Option<u64>> {
    let mut want: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut load: BTreeMap<u64, Vec<String>> = takers.iter().map(|n| (*n, Vec::new())).collect();
    let mut homeless = Vec::new();
    for d in devices {
        if !d.enabled {
            want.insert(d.name.clone(), None);
            continue;
        }
        match current.get(&d.name) {
            Some(a) if takers.contains(&a.node) => {
                load.entry(a.node).or_default().push(d.name.clone())
            }
            Some(a) if keepers.contains(&a.node) => {
                want.insert(d.name.clone(), Some(a.node));
            }
            Some(a) if takers.is_empty() => {
                // Nobody can take it: leave it where it is.
                want.insert(d.name.clone(), Some(a.node));
            }
            _ => homeless.push(d.name.clone()),
        }
    }
    if takers.is_empty() {
        return want;
    }
    for name in homeless {
        let least = *load
            .iter()
            .min_by_key(|(n, v)| (v.len(), **n))
            .map(|(n, _)| n)
            .expect("takers is not empty");
        load.entry(least).or_default().push(name);
    }
    // Even out: move from the most to the least loaded while they differ by more than one.
    loop {
        let (max_n, max_len) = load
            .iter()
            .map(|(n, v)| (*n, v.len()))
            .max_by_key(|(n, l)| (*l, u64::MAX - n))
            .expect("takers");
        let (min_n, min_len) = load
            .iter()
            .map(|(n, v)| (*n, v.len()))
            .min_by_key(|(n, l)| (*l, *n))
            .expect("takers");
        if max_len <= min_len + 1 {
            break;
        }
        let moved = load
            .get_mut(&max_n)
            .and_then(|v| v.pop())
            .expect("non-empty");
        load.entry(min_n).or_default().push(moved);
    }
    for (node, names) in load {
        for name in names {
            want.insert(name, Some(node));
        }
    }
    want
}

/// Changes needed to go from `current` to `want`.
pub fn diff(
    current: &BTreeMap<String, Assignment>,
    want: &BTreeMap<String, Option<u64>>,
) -> Vec<(String, Option<u64>)> {
    let mut changes = Vec::new();
    for (name, node) in want {
        let now = current.get(name).map(|a| a.node);
        if now != *node {
            changes.push((name.clone(), *node));
        }
    }
    // Assignments of deleted devices are removed with the device itself.
    changes
}

/// The leader's assignment loop; runs until the process ends.
pub async fn run(
    node: Arc<RaftNode>,
    peers: Arc<Peers>,
    metrics: Arc<Metrics>,
    opts: AssignOptions,
) {
    let mut last_ok: HashMap<u64, Instant> = HashMap::new();
    // Members that answered a probe since this node became leader.
    let mut heard: BTreeSet<u64> = BTreeSet::new();
    let mut leading_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(opts.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !node.is_leader() {
            leading_since = None;
            continue;
        }
        let members: Vec<(u64, String)> =
            node.members().into_iter().map(|m| (m.id, m.peer)).collect();
        let now = Instant::now();
        if leading_since.is_none() {
            // A new leader has no history of who answered: give everyone a
            // full timeout to keep their devices, but no new ones until they
            // answer.
            last_ok = members.iter().map(|(id, _)| (*id, now)).collect();
            heard.clear();
            leading_since = Some(now);
        }
        let probes = members
            .iter()
            .filter(|(id, _)| *id != node.id())
            .map(|(id, addr)| {
                let peers = peers.clone();
                let timeout = opts.probe_interval.max(Duration::from_millis(200));
                async move { (*id, peers.ping(addr, timeout).await == Some(*id)) }
            });
        for (id, ok) in futures::future::join_all(probes).await {
            if ok {
                last_ok.insert(id, Instant::now());
                heard.insert(id);
            }
        }
        let member_ids: BTreeSet<u64> = members.iter().map(|(id, _)| *id).collect();
        last_ok.retain(|id, _| member_ids.contains(id));
        heard.retain(|id| member_ids.contains(id));
        let alive = |id: &u64| {
            last_ok
                .get(id)
                .is_some_and(|t| t.elapsed() < opts.failure_timeout)
        };
        // The leader polls only when no one else can: it carries the Raft
        // load, and a leader's death then never stops polling for the
        // length of an election.
        let mut takers: BTreeSet<u64> = heard
            .iter()
            .copied()
            .filter(|id| *id != node.id() && alive(id))
            .collect();
        let keepers: BTreeSet<u64> = member_ids
            .iter()
            .copied()
            .filter(|id| *id != node.id() && alive(id) && !takers.contains(id))
            .collect();
        if takers.is_empty() && keepers.is_empty() {
            takers.insert(node.id());
        }
        let current = node.state().assignments();
        let want = plan(&node.state().devices(), &current, &takers, &keepers);
        let changes = diff(&current, &want);
        if changes.is_empty() {
            continue;
        }
        let n = changes.len() as u64;
        tracing::info!(changes = n, ?takers, ?keepers, "reassigning devices");
        for chunk in changes.chunks(5_000) {
            match node
                .propose(Command::Assign {
                    changes: chunk.to_vec(),
                })
                .await
            {
                Ok(_) => {
                    metrics.assignment_changes.inc_by(chunk.len() as u64);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not commit assignment");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, enabled: bool) -> Device {
        Device {
            retries: 0,
            enabled,
            ..Device::new(name, bifrost_model::Protocol::ModbusTcp, "h:1")
        }
    }

    fn devices(n: usize) -> Vec<Device> {
        (0..n).map(|i| dev(&format!("d{i:02}"), true)).collect()
    }

    fn apply(current: &mut BTreeMap<String, Assignment>, want: &BTreeMap<String, Option<u64>>) {
        for (name, node) in want {
            match node {
                Some(n) => {
                    current.insert(name.clone(), Assignment { node: *n, epoch: 1 });
                }
                None => {
                    current.remove(name);
                }
            }
        }
    }

    fn counts(want: &BTreeMap<String, Option<u64>>) -> BTreeMap<u64, usize> {
        let mut c = BTreeMap::new();
        for n in want.values().flatten() {
            *c.entry(*n).or_default() += 1;
        }
        c
    }

    #[test]
    fn fresh_devices_are_spread_evenly_and_disabled_ones_unassigned() {
        let mut ds = devices(10);
        ds.push(dev("off", false));
        let want = plan(&ds, &BTreeMap::new(), &[1, 2, 3].into(), &BTreeSet::new());
        assert_eq!(counts(&want), BTreeMap::from([(1, 4), (2, 3), (3, 3)]));
        assert_eq!(want["off"], None);
    }

    #[test]
    fn a_stable_cluster_sees_no_churn() {
        let ds = devices(10);
        let mut cur = BTreeMap::new();
        let want = plan(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        apply(&mut cur, &want);
        let again = plan(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        assert!(diff(&cur, &again).is_empty());
    }

    #[test]
    fn a_dead_nodes_devices_move_and_only_those() {
        let ds = devices(9);
        let mut cur = BTreeMap::new();
        let first = plan(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        apply(&mut cur, &first);
        let on_3: BTreeSet<String> = cur
            .iter()
            .filter(|(_, a)| a.node == 3)
            .map(|(n, _)| n.clone())
            .collect();
        let want = plan(&ds, &cur, &[1, 2].into(), &BTreeSet::new());
        let changes = diff(&cur, &want);
        let moved: BTreeSet<String> = changes.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(moved, on_3, "only the dead node's devices move");
        assert!(changes.iter().all(|(_, n)| matches!(n, Some(1) | Some(2))));
        assert_eq!(
            counts(&want).values().copied().collect::<Vec<_>>(),
            vec![5, 4]
        );
    }

    #[test]
    fn nodes_in_grace_keep_their_devices_but_get_no_new_ones() {
        let ds = devices(6);
        let mut cur = BTreeMap::new();
        let first = plan(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        apply(&mut cur, &first);
        // New leader 1 has heard from 2 only; 3 is in grace.
        let want = plan(&ds, &cur, &[2].into(), &[3].into());
        let on = |n: u64| want.values().filter(|v| **v == Some(n)).count();
        assert_eq!(on(1), 0, "the leader's devices move away");
        assert_eq!(on(3), 2, "node 3 keeps its devices");
        assert_eq!(on(2), 4, "node 2 takes the leader's devices");
        // Nobody can take anything: nothing changes.
        let none = plan(&ds, &cur, &BTreeSet::new(), &BTreeSet::new());
        assert!(diff(&cur, &none).is_empty());
    }

    #[test]
    fn a_joining_node_gets_a_fair_share() {
        let ds = devices(12);
        let mut cur = BTreeMap::new();
        let first = plan(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        apply(&mut cur, &first);
        let want = plan(&ds, &cur, &[1, 2, 3, 4].into(), &BTreeSet::new());
        assert_eq!(
            counts(&want),
            BTreeMap::from([(1, 3), (2, 3), (3, 3), (4, 3)])
        );
        assert_eq!(
            diff(&cur, &want).len(),
            3,
            "only three devices move to the new node"
        );
    }
}
