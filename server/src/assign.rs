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
//! The leader itself polls nothing while another member may: it carries
//! the Raft load, and the death of a leader then never leaves devices
//! unpolled for the length of an election plus a failure timeout.
//!
//! Devices follow the network (`reach`): a device goes only to the nodes
//! its affinity labels allow, and leaves a node that reports it cannot
//! reach it (after a number of failed polls, avoided for a doubling hold
//! so it does not flap). A device no member that is up may poll is
//! *stranded*: unassigned, its tags marked Bad with a reason naming
//! the nodes it waits for, and given back as soon as one returns.
//!
//! Bound: a dead poller is noticed after `failure_timeout` (1 s by default),
//! plus at most one probe round and one commit, within the 2 s promised for
//! devices polled every second or faster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_model::poll::{IngestBatch, IngestedValue, PolledValue};
use bifrost_raft::{Command, RaftNode};
use bifrost_storage::{Assignment, Device, Quality, Reading, Tag};

use crate::clock::ClockCheck;
use crate::metrics::Metrics;
use crate::peer::{Peers, Probe};
use crate::reach::{Avoidance, FailoverOptions, Reachability};

#[derive(Clone, Debug)]
pub struct AssignOptions {
    pub probe_interval: Duration,
    /// A member whose clock is off from the leader's by more is reported.
    pub max_clock_offset: Duration,
    pub failure_timeout: Duration,
    /// When a device leaves a node that cannot reach it.
    pub failover: FailoverOptions,
    /// The labels this node advertises (`--node-label`).
    pub node_labels: BTreeMap<String, String>,
}

impl Default for AssignOptions {
    fn default() -> Self {
        AssignOptions {
            probe_interval: Duration::from_millis(250),
            max_clock_offset: Duration::from_millis(500),
            failure_timeout: Duration::from_millis(1000),
            failover: FailoverOptions::default(),
            node_labels: BTreeMap::new(),
        }
    }
}

/// What the leader knows of the members when it places devices.
pub struct Members<'a> {
    /// Alive members heard from since this leader took over: they keep
    /// their devices and may receive more.
    pub takers: &'a BTreeSet<u64>,
    /// Alive members not heard from yet: they keep theirs but get none.
    pub keepers: &'a BTreeSet<u64>,
    /// The leader, which polls a device only when no other member may.
    pub leader: Option<u64>,
    /// The labels each member advertises (`--node-label`).
    pub labels: &'a BTreeMap<u64, BTreeMap<String, String>>,
    /// (device, node): the node could not reach the device lately
    /// (`reach::Avoidance`); another eligible node is preferred.
    pub avoid: &'a BTreeSet<(String, u64)>,
}

/// The wanted owner of every device, and why some have none.
#[derive(Debug, Default)]
pub struct Plan {
    pub want: BTreeMap<String, Option<u64>>,
    /// Enabled devices no member may poll now, with the reason their tags
    /// are marked Bad with (naming the nodes).
    pub stranded: BTreeMap<String, String>,
}

/// Where one device may go.
enum Choice {
    /// Stays with (or goes to) this node, not to be moved for balance.
    Fixed(u64),
    /// Goes to the least loaded of these takers (staying where it is if
    /// that is one of them, unless the load is uneven).
    Among(BTreeSet<u64>),
    /// Nobody may take it now, but its owner may come back: leave it.
    Leave,
    Stranded(String),
}

/// The wanted owner of every device: disabled ones none; each enabled one
/// a member its affinity allows (`reach::Affinity`), preferring takers
/// that did not fail to reach it, then the leader, then takers that did
/// (its current owner first). Sticky: a device stays with a live, allowed,
/// not avoided owner unless the load is uneven by more than one device, so
/// a healthy cluster sees no churn. Pure, so it can be tested alone.
pub fn plan<'d>(
    devices: impl IntoIterator<Item = &'d Device>,
    current: &BTreeMap<String, Assignment>,
    m: &Members,
) -> Plan {
    let mut out = Plan::default();
    let mut load: BTreeMap<u64, usize> = m.takers.iter().map(|n| (*n, 0)).collect();
    let mut movable: BTreeMap<u64, Vec<(String, BTreeSet<u64>)>> = BTreeMap::new();
    let mut homeless = Vec::new();
    for d in devices {
        let owner = current.get(&d.name).map(|a| a.node);
        let choice = if d.enabled {
            choose(d, owner, m)
        } else {
            Choice::Leave
        };
        match choice {
            _ if !d.enabled => {
                out.want.insert(d.name.clone(), None);
            }
            Choice::Fixed(n) => {
                if let Some(l) = load.get_mut(&n) {
                    *l += 1;
                }
                out.want.insert(d.name.clone(), Some(n));
            }
            Choice::Among(cands) => match owner.filter(|o| cands.contains(o)) {
                Some(o) => {
                    *load.entry(o).or_default() += 1;
                    movable.entry(o).or_default().push((d.name.clone(), cands));
                }
                None => homeless.push((d.name.clone(), cands)),
            },
            Choice::Leave => {
                out.want.insert(d.name.clone(), owner);
            }
            Choice::Stranded(reason) => {
                out.want.insert(d.name.clone(), None);
                out.stranded.insert(d.name.clone(), reason);
            }
        }
    }
    for (name, cands) in homeless {
        let least = least_loaded(&load, &cands);
        *load.entry(least).or_default() += 1;
        movable.entry(least).or_default().push((name, cands));
    }
    even_out(&mut load, &mut movable);
    for (node, devices) in movable {
        for (name, _) in devices {
            out.want.insert(name, Some(node));
        }
    }
    out
}

/// Where an enabled device may go (see [`plan`]).
fn choose(d: &Device, owner: Option<u64>, m: &Members) -> Choice {
    let affinity = crate::reach::Affinity::of(d).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring the device's affinity");
        Default::default()
    });
    let allowed = |n: &u64| affinity.allows(*n, m.labels.get(n));
    let avoided = |n: &u64| m.avoid.contains(&(d.name.clone(), *n));
    if let Some(o) = owner.filter(|o| m.keepers.contains(o) && allowed(o)) {
        return Choice::Fixed(o);
    }
    let takers: BTreeSet<u64> = m.takers.iter().copied().filter(allowed).collect();
    let fresh: BTreeSet<u64> = takers.iter().copied().filter(|n| !avoided(n)).collect();
    let leader = m.leader.filter(|l| !m.takers.contains(l) && allowed(l));
    if !fresh.is_empty() {
        return Choice::Among(fresh);
    }
    if let Some(l) = leader.filter(|l| !avoided(l)) {
        return Choice::Fixed(l);
    }
    if let Some(o) = owner.filter(|o| takers.contains(o)) {
        return Choice::Fixed(o);
    }
    if !takers.is_empty() {
        return Choice::Among(takers);
    }
    if let Some(l) = leader {
        return Choice::Fixed(l);
    }
    if m.takers.is_empty() && m.keepers.is_empty() && m.leader.is_none() {
        return Choice::Leave;
    }
    if m.keepers.iter().any(allowed) {
        return Choice::Leave; // An allowed member is alive but not heard from yet.
    }
    Choice::Stranded(stranded_reason(&affinity, m))
}

/// Why no member may poll a device: `unreachable: eligible node 2 is down`.
fn stranded_reason(affinity: &crate::reach::Affinity, m: &Members) -> String {
    match &affinity.nodes {
        Some(ids) if affinity.labels.is_empty() => {
            let list: Vec<String> = ids.iter().map(u64::to_string).collect();
            if ids.len() == 1 {
                format!("unreachable: eligible node {} is down", list[0])
            } else {
                format!("unreachable: eligible nodes {} are down", list.join(","))
            }
        }
        _ => {
            let up: BTreeSet<u64> = m
                .takers
                .iter()
                .chain(m.keepers)
                .chain(m.leader.iter())
                .copied()
                .collect();
            let up: Vec<String> = up.iter().map(u64::to_string).collect();
            format!(
                "unreachable: no node that is up (nodes {}) matches {}",
                up.join(","),
                affinity.describe()
            )
        }
    }
}

fn least_loaded(load: &BTreeMap<u64, usize>, among: &BTreeSet<u64>) -> u64 {
    *among
        .iter()
        .min_by_key(|n| (load.get(n).copied().unwrap_or(0), **n))
        .expect("a device is placed among one node at least")
}

/// Moves devices from the most to the least loaded taker while they differ
/// by more than one and some device on the first may go to the second.
fn even_out(
    load: &mut BTreeMap<u64, usize>,
    movable: &mut BTreeMap<u64, Vec<(String, BTreeSet<u64>)>>,
) {
    loop {
        let Some((&max_n, &max_len)) = load.iter().max_by_key(|(n, l)| (**l, u64::MAX - **n))
        else {
            return;
        };
        let (&min_n, &min_len) = load.iter().min_by_key(|(n, l)| (**l, **n)).expect("load");
        if max_len <= min_len + 1 {
            return;
        }
        let on_max = movable.entry(max_n).or_default();
        let Some(i) = on_max.iter().rposition(|(_, cands)| cands.contains(&min_n)) else {
            return;
        };
        let moved = on_max.remove(i);
        movable.entry(min_n).or_default().push(moved);
        *load.get_mut(&max_n).expect("max") -= 1;
        *load.entry(min_n).or_default() += 1;
    }
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

/// The leader's assignment loop; runs until the process ends. `reach` is
/// this node's own reachability report (the others come with their probe
/// replies).
pub async fn run(
    node: Arc<RaftNode>,
    peers: Arc<Peers>,
    metrics: Arc<Metrics>,
    opts: AssignOptions,
    reach: Arc<Reachability>,
) {
    let mut liveness = Liveness::default();
    let mut avoidance = Avoidance::default();
    let mut stranded: BTreeMap<String, Mark> = BTreeMap::new();
    let mut clocks = ClockCheck::new(opts.max_clock_offset);
    let mut tick = tokio::time::interval(opts.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !node.is_leader() {
            liveness.leading_since = None;
            stranded.clear();
            continue;
        }
        let members: Vec<(u64, String)> =
            node.members().into_iter().map(|m| (m.id, m.peer)).collect();
        let mut replies = probe(&node, &peers, &members, &opts).await;
        replies.insert(
            node.id(),
            Probe {
                id: node.id(),
                labels: opts.node_labels.clone(),
                unreachable: reach.reports(),
                clock: None,
            },
        );
        let offsets = replies
            .iter()
            .filter_map(|(id, r)| Some((*id, r.clock?)))
            .collect();
        clocks.observe(&offsets, &metrics);
        reach.set_cluster(
            replies
                .iter()
                .map(|(id, r)| (*id, r.unreachable.clone()))
                .collect(),
        );
        let (takers, keepers) = liveness.update(node.id(), &members, &replies, &opts);
        let current = node.state().assignments();
        let now = Instant::now();
        avoidance.retain_members(&members.iter().map(|(id, _)| *id).collect());
        // Each node's devices, grouped once rather than once per node.
        let mut owned: HashMap<u64, BTreeMap<String, u64>> = HashMap::new();
        for (d, a) in &current {
            owned.entry(a.node).or_default().insert(d.clone(), a.epoch);
        }
        let none = BTreeMap::new();
        for (id, reply) in &replies {
            let theirs = owned.get(id).unwrap_or(&none);
            avoidance.note(*id, &reply.unreachable, theirs, opts.failover, now);
        }
        liveness
            .labels
            .extend(replies.into_iter().map(|(id, r)| (id, r.labels)));
        let avoid = avoidance.avoided(now);
        let members = Members {
            takers: &takers,
            keepers: &keepers,
            leader: Some(node.id()),
            labels: &liveness.labels,
            avoid: &avoid,
        };
        // Planned over the cached devices in place: copying 10,000 devices
        // four times a second cost a node about 10 MB each time.
        let wanted = node
            .state()
            .with_devices(|devices| plan(devices, &current, &members));
        mark_stranded(&node, &mut stranded, &wanted.stranded).await;
        propose_changes(
            &node,
            &metrics,
            diff(&current, &wanted.want),
            &takers,
            &keepers,
        )
        .await;
    }
}

/// What the leader remembers of the members' answers to its probes.
#[derive(Default)]
struct Liveness {
    last_ok: HashMap<u64, Instant>,
    /// Members that answered a probe since this node became leader.
    heard: BTreeSet<u64>,
    leading_since: Option<Instant>,
    /// The labels each member advertised in its last answer.
    labels: BTreeMap<u64, BTreeMap<String, String>>,
}

impl Liveness {
    /// Takes this round's answers; the takers (alive and heard from) and
    /// keepers (alive, not heard from yet), the leader in neither.
    fn update(
        &mut self,
        me: u64,
        members: &[(u64, String)],
        replies: &BTreeMap<u64, Probe>,
        opts: &AssignOptions,
    ) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let now = Instant::now();
        if self.leading_since.is_none() {
            // A new leader has no history of who answered: give everyone a
            // full timeout to keep their devices, but no new ones until they
            // answer.
            self.last_ok = members.iter().map(|(id, _)| (*id, now)).collect();
            self.heard.clear();
            self.leading_since = Some(now);
        }
        for id in replies.keys().filter(|id| **id != me) {
            self.last_ok.insert(*id, now);
            self.heard.insert(*id);
        }
        let ids: BTreeSet<u64> = members.iter().map(|(id, _)| *id).collect();
        self.last_ok.retain(|id, _| ids.contains(id));
        self.heard.retain(|id| ids.contains(id));
        self.labels.retain(|id, _| ids.contains(id));
        let alive = |id: &u64| {
            self.last_ok
                .get(id)
                .is_some_and(|t| t.elapsed() < opts.failure_timeout)
        };
        let takers: BTreeSet<u64> = self
            .heard
            .iter()
            .copied()
            .filter(|id| *id != me && alive(id))
            .collect();
        let keepers = ids
            .iter()
            .copied()
            .filter(|id| *id != me && alive(id) && !takers.contains(id))
            .collect();
        (takers, keepers)
    }
}

/// Probes every other member; the answers of those that answered as themselves.
async fn probe(
    node: &RaftNode,
    peers: &Peers,
    members: &[(u64, String)],
    opts: &AssignOptions,
) -> BTreeMap<u64, Probe> {
    let timeout = opts.probe_interval.max(Duration::from_millis(200));
    let probes = members
        .iter()
        .filter(|(id, _)| *id != node.id())
        .map(|(id, addr)| async move { (*id, peers.ping(addr, timeout).await) });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .filter_map(|(id, reply)| reply.filter(|r| r.id == id).map(|r| (id, r)))
        .collect()
}

async fn propose_changes(
    node: &RaftNode,
    metrics: &Metrics,
    changes: Vec<(String, Option<u64>)>,
    takers: &BTreeSet<u64>,
    keepers: &BTreeSet<u64>,
) {
    if changes.is_empty() {
        return;
    }
    tracing::info!(
        changes = changes.len(),
        ?takers,
        ?keepers,
        "reassigning devices"
    );
    for chunk in changes.chunks(5_000) {
        let command = Command::Assign {
            changes: chunk.to_vec(),
        };
        match node.propose(command).await {
            Ok(_) => {
                metrics.assignment_changes.inc_by(chunk.len() as u64);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not commit assignment");
                return;
            }
        }
    }
}

/// How long after marking a stranded device's tags the leader marks again
/// any of them a later reading replaced: the device's last owner polls it
/// until it applies its unassignment (and finishes a poll under way), and
/// such a reading must not hide why the device stopped. After that, a
/// reading of those tags is someone's on purpose and is left alone.
const STRANDED_SETTLE: Duration = Duration::from_secs(10);

/// A stranded device's mark: why, and when it was first made.
struct Mark {
    reason: String,
    at: Instant,
}

/// Marks the tags of each stranded device (no member may poll it) Bad with
/// the reason, once per device and reason while this node leads, and again
/// within [`STRANDED_SETTLE`] for those a late poll replaced: nobody polls
/// them, so nothing else would say why they stopped.
async fn mark_stranded(
    node: &RaftNode,
    marked: &mut BTreeMap<String, Mark>,
    stranded: &BTreeMap<String, String>,
) {
    marked.retain(|d, m| stranded.get(d) == Some(&m.reason));
    for (device, reason) in stranded {
        let settling = match marked.get(device) {
            None => false,
            Some(m) if m.at.elapsed() < STRANDED_SETTLE => true,
            Some(_) => continue,
        };
        let mut tags = node.state().tags(Some(device));
        if settling {
            tags = not_saying(node, tags, reason);
        }
        if let Err(e) = mark_bad(node, &tags, reason).await {
            tracing::warn!(device = %device, error = %e, "could not mark the tags of a stranded device");
            continue;
        }
        if !settling {
            tracing::warn!(device = %device, reason = %reason, tags = tags.len(), "no node may poll device; marked its tags bad");
            let at = Instant::now();
            marked.insert(
                device.clone(),
                Mark {
                    reason: reason.clone(),
                    at,
                },
            );
        }
    }
}

/// Those of `tags` whose current value is not Bad for `reason`.
fn not_saying(node: &RaftNode, tags: Vec<Tag>, reason: &str) -> Vec<Tag> {
    let Ok(current) = node.state().current_many(&tags) else {
        return tags;
    };
    let says = |c: &Option<Reading>| {
        c.as_ref()
            .is_some_and(|c| c.quality == Quality::bad(reason))
    };
    tags.into_iter()
        .zip(current)
        .filter(|(_, c)| !says(c))
        .map(|(t, _)| t)
        .collect()
}

/// Commits a Bad reading with `reason`, now, for each of `tags`.
async fn mark_bad(node: &RaftNode, tags: &[Tag], reason: &str) -> anyhow::Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let now_us = bifrost_model::now_us();
    let readings = tags
        .iter()
        .map(|t| IngestedValue {
            id: format!("bifrost.stranded/{}/{now_us}", t.id),
            value: PolledValue {
                tag_id: t.id,
                ts_us: now_us,
                value: None,
                quality: Quality::bad(reason),
            },
        })
        .collect();
    let batch = IngestBatch {
        server_ts_us: now_us,
        readings,
    };
    node.propose(Command::Ingest {
        batch: batch.encode(),
    })
    .await?;
    Ok(())
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

    /// The plan's owners with no labels, no avoidance and no leader.
    fn plan_for(
        ds: &[Device],
        cur: &BTreeMap<String, Assignment>,
        takers: &BTreeSet<u64>,
        keepers: &BTreeSet<u64>,
    ) -> BTreeMap<String, Option<u64>> {
        let m = Members {
            takers,
            keepers,
            leader: None,
            labels: &BTreeMap::new(),
            avoid: &BTreeSet::new(),
        };
        plan(ds, cur, &m).want
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
        let want = plan_for(&ds, &BTreeMap::new(), &[1, 2, 3].into(), &BTreeSet::new());
        assert_eq!(counts(&want), BTreeMap::from([(1, 4), (2, 3), (3, 3)]));
        assert_eq!(want["off"], None);
    }

    #[test]
    fn a_stable_cluster_sees_no_churn() {
        let ds = devices(10);
        let mut cur = BTreeMap::new();
        let want = plan_for(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        apply(&mut cur, &want);
        let again = plan_for(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        assert!(diff(&cur, &again).is_empty());
    }

    #[test]
    fn a_dead_nodes_devices_move_and_only_those() {
        let ds = devices(9);
        let mut cur = BTreeMap::new();
        let first = plan_for(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        apply(&mut cur, &first);
        let on_3: BTreeSet<String> = cur
            .iter()
            .filter(|(_, a)| a.node == 3)
            .map(|(n, _)| n.clone())
            .collect();
        let want = plan_for(&ds, &cur, &[1, 2].into(), &BTreeSet::new());
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
        let first = plan_for(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        apply(&mut cur, &first);
        // New leader 1 has heard from 2 only; 3 is in grace.
        let want = plan_for(&ds, &cur, &[2].into(), &[3].into());
        let on = |n: u64| want.values().filter(|v| **v == Some(n)).count();
        assert_eq!(on(1), 0, "the leader's devices move away");
        assert_eq!(on(3), 2, "node 3 keeps its devices");
        assert_eq!(on(2), 4, "node 2 takes the leader's devices");
        // Nobody can take anything: nothing changes.
        let none = plan_for(&ds, &cur, &BTreeSet::new(), &BTreeSet::new());
        assert!(diff(&cur, &none).is_empty());
    }

    #[test]
    fn a_joining_node_gets_a_fair_share() {
        let ds = devices(12);
        let mut cur = BTreeMap::new();
        let first = plan_for(&ds, &cur, &[1, 2, 3].into(), &BTreeSet::new());
        apply(&mut cur, &first);
        let want = plan_for(&ds, &cur, &[1, 2, 3, 4].into(), &BTreeSet::new());
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

    fn on_nodes(name: &str, nodes: &str) -> Device {
        let mut d = dev(name, true);
        d.labels.insert("affinity.nodes".into(), nodes.into());
        d
    }

    fn members<'a>(
        takers: &'a BTreeSet<u64>,
        labels: &'a BTreeMap<u64, BTreeMap<String, String>>,
        avoid: &'a BTreeSet<(String, u64)>,
        leader: u64,
    ) -> Members<'a> {
        Members {
            takers,
            keepers: EMPTY,
            leader: Some(leader),
            labels,
            avoid,
        }
    }

    static EMPTY: &BTreeSet<u64> = &BTreeSet::new();

    #[test]
    fn a_device_goes_only_to_the_nodes_its_affinity_allows() {
        let mut ds = devices(6);
        ds.push(on_nodes("rtu", "3"));
        let mut zoned = dev("cell3", true);
        zoned.labels.insert("affinity.zone".into(), "cell3".into());
        ds.push(zoned);
        let labels = BTreeMap::from([(2, BTreeMap::from([("zone".into(), "cell3".into())]))]);
        let takers = BTreeSet::from([2, 3, 4]);
        let p = plan(
            &ds,
            &BTreeMap::new(),
            &members(&takers, &labels, &BTreeSet::new(), 1),
        );
        assert_eq!(p.want["rtu"], Some(3));
        assert_eq!(p.want["cell3"], Some(2));
        assert!(p.stranded.is_empty());
        // Balancing never moves them: the others even out around them.
        let c = counts(&p.want);
        assert!(
            c.values().max().unwrap() - c.values().min().unwrap() <= 1,
            "{c:?}"
        );
    }

    #[test]
    fn the_leader_polls_a_device_only_it_may_poll() {
        let ds = vec![on_nodes("only-1", "1"), dev("free", true)];
        let takers = BTreeSet::from([2, 3]);
        let p = plan(
            &ds,
            &BTreeMap::new(),
            &members(&takers, &BTreeMap::new(), &BTreeSet::new(), 1),
        );
        assert_eq!(p.want["only-1"], Some(1));
        assert_ne!(p.want["free"], Some(1), "the leader takes nothing else");
    }

    #[test]
    fn a_device_whose_nodes_are_down_is_stranded_with_their_names() {
        let ds = vec![on_nodes("a", "2"), on_nodes("b", "2,3"), dev("c", true)];
        let mut cur = BTreeMap::new();
        cur.insert("a".to_string(), Assignment { node: 2, epoch: 4 });
        let takers = BTreeSet::from([4]);
        let p = plan(
            &ds,
            &cur,
            &members(&takers, &BTreeMap::new(), &BTreeSet::new(), 1),
        );
        assert_eq!(
            (p.want["a"], p.want["b"], p.want["c"]),
            (None, None, Some(4))
        );
        assert_eq!(p.stranded["a"], "unreachable: eligible node 2 is down");
        assert_eq!(p.stranded["b"], "unreachable: eligible nodes 2,3 are down");
        assert!(!p.stranded.contains_key("c"));
        // Node 2 is back (heard from): a goes home.
        let takers = BTreeSet::from([2, 4]);
        let p = plan(
            &ds,
            &cur,
            &members(&takers, &BTreeMap::new(), &BTreeSet::new(), 1),
        );
        assert_eq!(p.want["a"], Some(2));
        assert!(p.stranded.is_empty());
    }

    #[test]
    fn a_device_leaves_a_node_that_cannot_reach_it_and_stays_when_all_failed() {
        let ds = devices(4);
        let mut cur = BTreeMap::new();
        let takers = BTreeSet::from([2, 3]);
        let none = BTreeSet::new();
        let first = plan(&ds, &cur, &members(&takers, &BTreeMap::new(), &none, 1)).want;
        apply(&mut cur, &first);
        let victim = "d00".to_string();
        let from = cur[&victim].node;
        let other = if from == 2 { 3 } else { 2 };
        let avoid = BTreeSet::from([(victim.clone(), from)]);
        let p = plan(&ds, &cur, &members(&takers, &BTreeMap::new(), &avoid, 1));
        let changes = diff(&cur, &p.want);
        assert!(
            changes.contains(&(victim.clone(), Some(other))),
            "{changes:?}"
        );
        // One other device may move back to even out the load, no more.
        assert!(changes.len() <= 2, "{changes:?}");
        assert_eq!(counts(&p.want), BTreeMap::from([(2, 2), (3, 2)]));
        assert!(p.want.iter().all(|(d, n)| d != &victim || *n != Some(from)));
        // Both takers failed it: the leader tries.
        let avoid = BTreeSet::from([(victim.clone(), 2), (victim.clone(), 3)]);
        let p = plan(&ds, &cur, &members(&takers, &BTreeMap::new(), &avoid, 1));
        assert_eq!(p.want[&victim], Some(1));
        // Every node failed it, the leader too: it stays where it is.
        let avoid = BTreeSet::from([
            (victim.clone(), 1),
            (victim.clone(), 2),
            (victim.clone(), 3),
        ]);
        let p = plan(&ds, &cur, &members(&takers, &BTreeMap::new(), &avoid, 1));
        assert_eq!(p.want[&victim], Some(from));
    }
}
