//! Faults, and when to inject them.
//!
//! **Partitions** are cut from the host, in its firewall, between container
//! addresses: a [`Partition`] is a set of blocked (source, destination)
//! address pairs, and [`Firewall`] turns each pair into one rule
//!
//! ```text
//! iptables -w -I DOCKER-USER -s SRC/32 -d DST/32 -m comment --comment bifrost-nemesis:PROJECT -j DROP
//! ```
//!
//! `DOCKER-USER` is the chain Docker reserves for its users: `FORWARD` jumps
//! to it before Docker's own rules (and before the rule that accepts
//! established connections), so a pair is cut at once, open connections
//! included, and Docker never rewrites it. `DROP` rather than `REJECT`: a
//! partitioned peer goes silent, as a pulled cable does; nobody is told.
//! Traffic between two containers on one bridge is switched, not routed, so
//! it passes through iptables only when `br_netfilter` is active
//! (`net.bridge.bridge-nf-call-iptables = 1`, which Docker itself usually
//! turns on); [`bridge_netfilter`] checks it and turns it on if it can.
//! The host's own traffic to the containers (the harness's clients) goes
//! through `OUTPUT`/`INPUT`, not `FORWARD`, so clients reach every node on
//! either side of any partition, as Jepsen's clients do.
//!
//! Every rule carries the comment `bifrost-nemesis:PROJECT`, so healing
//! removes exactly our rules, found by listing the chain; a harness that
//! crashed leaves rules that the next heal (or [`Firewall::heal_all`])
//! removes. [`Firewall`] also heals when dropped.
//!
//! The helpers build the partitions Jepsen uses: [`Partition::isolate`] one
//! node (or the leader, given its id), [`Partition::split`] into a minority
//! and a majority, [`Partition::bridge`] (two halves that cannot see each
//! other but both see one node in the middle: the case where Raft's
//! "majority" overlaps and a naive implementation elects two leaders).
//!
//! **Process faults** are in [`crate::docker`]: kill -9 and restart, pause
//! and resume (cgroup freezer), `SIGSTOP`/`SIGCONT`.
//!
//! **Schedules**: [`Schedule::generate`] draws a timeline of faults from a
//! seed ([`rand::rngs::StdRng`]): each fault is held for a while, then
//! undone, then the cluster is left alone for a while, one fault at a time.
//! The schedule prints as text (`12.345s partition isolate n2`) and parses
//! back, so a failing run can be replayed from its log even if the generator
//! changes; the seed regenerates it as long as `rand` does not change.
//! [`Nemesis`] carries out one step against a running compose project.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::docker::{describe, output, run, Compose, Error, Result};

/// The chain Docker leaves to its users; `FORWARD` jumps to it first.
pub const CHAIN: &str = "DOCKER-USER";
/// Start of every rule comment of ours.
pub const TAG_PREFIX: &str = "bifrost-nemesis:";

// ---------------------------------------------------------------------------
// Partitions (pure)

/// Node id to its address on the cluster network.
pub type Addresses = BTreeMap<u64, Ipv4Addr>;

/// A network partition: the (source, destination) pairs whose packets are
/// dropped. Pairs are directed, so one-way partitions are expressible; the
/// helpers always block both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    blocked: BTreeSet<(Ipv4Addr, Ipv4Addr)>,
}

impl Partition {
    /// No pair blocked: a healed network.
    pub fn none() -> Partition {
        Partition::default()
    }

    /// Blocks packets from `src` to `dst` (one direction).
    pub fn block(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        if src != dst {
            self.blocked.insert((src, dst));
        }
    }

    /// Blocks both directions between `a` and `b`.
    pub fn block_both(&mut self, a: Ipv4Addr, b: Ipv4Addr) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Nodes in different groups cannot talk; nodes in no group talk to
    /// everyone. Unknown ids are an error.
    pub fn groups(addrs: &Addresses, groups: &[&[u64]]) -> std::result::Result<Self, String> {
        let mut seen = BTreeSet::new();
        for id in groups.iter().flat_map(|g| g.iter()) {
            if !addrs.contains_key(id) {
                return Err(format!("no node n{id}"));
            }
            if !seen.insert(*id) {
                return Err(format!("n{id} is in two groups"));
            }
        }
        let mut p = Partition::none();
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for a in g.iter() {
                    for b in h.iter() {
                        p.block_both(addrs[a], addrs[b]);
                    }
                }
            }
        }
        Ok(p)
    }

    /// `node` cannot reach any other node, nor they it. Given the leader's
    /// id, this is "isolate the leader".
    pub fn isolate(addrs: &Addresses, node: u64) -> std::result::Result<Self, String> {
        let rest: Vec<u64> = addrs.keys().copied().filter(|&n| n != node).collect();
        Partition::groups(addrs, &[&[node], &rest])
    }

    /// `minority` on one side, everyone else on the other. The minority
    /// must be non-empty and less than half.
    pub fn split(addrs: &Addresses, minority: &[u64]) -> std::result::Result<Self, String> {
        if minority.is_empty() || minority.len() * 2 >= addrs.len() {
            return Err(format!(
                "a minority of {} nodes needs 1 to {} members, not {}",
                addrs.len(),
                (addrs.len() - 1) / 2,
                minority.len()
            ));
        }
        let rest: Vec<u64> = addrs
            .keys()
            .copied()
            .filter(|n| !minority.contains(n))
            .collect();
        Partition::groups(addrs, &[minority, &rest])
    }

    /// `left` and `right` cannot talk to each other; `bridge` (in neither)
    /// talks to both.
    pub fn bridge(
        addrs: &Addresses,
        left: &[u64],
        bridge: u64,
        right: &[u64],
    ) -> std::result::Result<Self, String> {
        if !addrs.contains_key(&bridge) {
            return Err(format!("no node n{bridge}"));
        }
        if left.contains(&bridge) || right.contains(&bridge) {
            return Err(format!("the bridge n{bridge} must be in neither half"));
        }
        Partition::groups(addrs, &[left, right])
    }

    /// The blocked pairs, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.blocked.iter().copied()
    }

    /// True when packets from `src` to `dst` are dropped.
    pub fn is_blocked(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.blocked.contains(&(src, dst))
    }

    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty()
    }

    pub fn len(&self) -> usize {
        self.blocked.len()
    }
}

// ---------------------------------------------------------------------------
// Firewall rules (pure parts)

/// `bifrost-nemesis:PROJECT`, the comment on every rule of a project.
pub fn tag_for(project: &str) -> String {
    format!("{TAG_PREFIX}{project}")
}

fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty()
        || !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(Error::Other(format!(
            "rule tag {tag:?}: only letters, digits and -_.: (it is matched as one word of `iptables -S`)"
        )));
    }
    Ok(())
}

/// The rule for one blocked pair, after `-I CHAIN` / `-D CHAIN`.
pub fn rule_spec(src: Ipv4Addr, dst: Ipv4Addr, tag: &str) -> Vec<String> {
    [
        "-s",
        &format!("{src}/32"),
        "-d",
        &format!("{dst}/32"),
        "-m",
        "comment",
        "--comment",
        tag,
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Splits an `iptables -S` line into words, honouring double quotes (how
/// it prints comments with spaces) and `\"` inside them.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// From an `iptables -S CHAIN` listing, the specs (what follows `-A
/// CHAIN`) of the rules whose comment is accepted by `wanted`.
pub fn tagged_rules(listing: &str, chain: &str, wanted: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
    listing
        .lines()
        .filter_map(|line| {
            let w = words(line);
            if w.len() < 2 || w[0] != "-A" || w[1] != chain {
                return None;
            }
            let comment = w
                .windows(2)
                .find(|p| p[0] == "--comment")
                .map(|p| p[1].as_str())?;
            wanted(comment).then(|| w[2..].to_vec())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Firewall (effects)

/// Checks that bridged traffic passes through iptables
/// (`/proc/sys/net/bridge/bridge-nf-call-iptables` is 1), loading
/// `br_netfilter` and setting it if need be (root only). Without it the
/// rules between containers on one bridge are silently never consulted.
pub fn bridge_netfilter() -> Result<()> {
    const KEY: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    let read = || std::fs::read_to_string(KEY).map(|s| s.trim().to_string());
    if read().is_err() {
        // Not loaded (or built in and off); modprobe may not even exist.
        let _ = output(Command::new("modprobe").arg("br_netfilter"));
    }
    match read() {
        Ok(v) if v == "1" => return Ok(()),
        Ok(_) => {
            let _ = std::fs::write(KEY, "1");
        }
        Err(e) => {
            return Err(Error::Other(format!(
                "{KEY}: {e}; load br_netfilter (`modprobe br_netfilter`), or partitions between containers cannot be cut"
            )))
        }
    }
    match read() {
        Ok(v) if v == "1" => Ok(()),
        _ => Err(Error::Other(format!(
            "{KEY} is 0 and could not be set: run `sysctl -w net.bridge.bridge-nf-call-iptables=1` as root"
        ))),
    }
}

/// The host firewall, as far as one project's partitions go.
///
/// `BIFROST_IPTABLES` names the program (default `iptables`; it must be
/// the variant Docker uses, nft or legacy, which is the one that has the
/// `DOCKER-USER` chain).
pub struct Firewall {
    program: String,
    tag: String,
    /// The pairs our rules block now, as far as we know.
    applied: Partition,
}

impl Firewall {
    /// A firewall for rules tagged `tag` (see [`tag_for`]). Checks that the
    /// chain exists and that bridged traffic is filtered; removes rules
    /// left with this tag by an earlier run.
    pub fn new(tag: &str) -> Result<Firewall> {
        check_tag(tag)?;
        let program = std::env::var("BIFROST_IPTABLES").unwrap_or_else(|_| "iptables".into());
        let fw = Firewall {
            program,
            tag: tag.to_string(),
            applied: Partition::none(),
        };
        fw.list().map_err(|e| {
            Error::Other(format!(
                "no {CHAIN} chain via `{}` ({e}); is Docker running, and using this iptables (nft vs legacy)? Set BIFROST_IPTABLES",
                fw.program
            ))
        })?;
        bridge_netfilter()?;
        let mut fw = fw;
        fw.heal()?;
        Ok(fw)
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// What is blocked now.
    pub fn current(&self) -> &Partition {
        &self.applied
    }

    fn iptables(&self) -> Command {
        let mut c = Command::new(&self.program);
        // Wait for the xtables lock instead of failing when Docker holds it.
        c.arg("-w");
        c
    }

    fn list(&self) -> Result<String> {
        run(self.iptables().args(["-S", CHAIN]))
    }

    /// Makes `p` the partition in force: adds the rules it lacks, removes
    /// those it no longer has. New rules go in first, so a pair blocked
    /// before and after is never open in between.
    pub fn apply(&mut self, p: &Partition) -> Result<()> {
        for (src, dst) in p.pairs() {
            if !self.applied.is_blocked(src, dst) {
                run(self
                    .iptables()
                    .args(["-I", CHAIN])
                    .args(rule_spec(src, dst, &self.tag)))?;
                self.applied.block(src, dst);
            }
        }
        let stale: Vec<_> = self
            .applied
            .pairs()
            .filter(|&(s, d)| !p.is_blocked(s, d))
            .collect();
        for (src, dst) in stale {
            run(self
                .iptables()
                .args(["-D", CHAIN])
                .args(rule_spec(src, dst, &self.tag)))?;
            self.applied.blocked.remove(&(src, dst));
        }
        Ok(())
    }

    /// Removes every rule with our tag, whoever added it; how many.
    pub fn heal(&mut self) -> Result<usize> {
        let tag = self.tag.clone();
        let n = self.remove_where(|c| c == tag)?;
        self.applied = Partition::none();
        Ok(n)
    }

    /// Removes every rule of every project (`bifrost-nemesis:*`), such as
    /// those a crashed run left; how many.
    pub fn heal_all(&mut self) -> Result<usize> {
        self.remove_where(|c| c.starts_with(TAG_PREFIX))
    }

    fn remove_where(&self, wanted: impl Fn(&str) -> bool) -> Result<usize> {
        let specs = tagged_rules(&self.list()?, CHAIN, wanted);
        for spec in &specs {
            let mut c = self.iptables();
            c.args(["-D", CHAIN]).args(spec);
            let out = output(&mut c)?;
            // Gone already (another heal raced us) is fine; anything else not.
            if !out.status.success() && self.list()?.contains(&spec.join(" ")) {
                return Err(Error::Failed {
                    command: describe(&c),
                    status: out.status.to_string(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        Ok(specs.len())
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if let Err(e) = self.heal() {
            eprintln!("nemesis: healing {}: {e}", self.tag);
        }
    }
}

// ---------------------------------------------------------------------------
// Faults and schedules (pure)

/// A partition as the schedule names it; [`PartitionSpec::resolve`] turns it
/// into address pairs once the addresses (and the leader) are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionSpec {
    /// One node alone.
    Isolate(u64),
    /// Whoever leads when the step runs, alone.
    IsolateLeader,
    /// A minority and the majority.
    Split {
        minority: Vec<u64>,
        majority: Vec<u64>,
    },
    /// Two halves that only `bridge` connects.
    Bridge {
        left: Vec<u64>,
        bridge: u64,
        right: Vec<u64>,
    },
}

impl PartitionSpec {
    /// The pairs to block. `leader` is needed for [`PartitionSpec::IsolateLeader`].
    pub fn resolve(
        &self,
        addrs: &Addresses,
        leader: Option<u64>,
    ) -> std::result::Result<Partition, String> {
        match self {
            PartitionSpec::Isolate(n) => Partition::isolate(addrs, *n),
            PartitionSpec::IsolateLeader => match leader {
                Some(n) => Partition::isolate(addrs, n),
                None => Err("isolate-leader: there is no leader to isolate".into()),
            },
            PartitionSpec::Split { minority, majority } => {
                let p = Partition::split(addrs, minority)?;
                // The majority as written must be the rest, or the printed
                // schedule would not say what was done.
                let rest: Vec<u64> = addrs
                    .keys()
                    .copied()
                    .filter(|n| !minority.contains(n))
                    .collect();
                let mut m = majority.clone();
                m.sort_unstable();
                if m != rest {
                    return Err(format!(
                        "split: the majority must be every other node ({})",
                        nodes_text(&rest)
                    ));
                }
                Ok(p)
            }
            PartitionSpec::Bridge {
                left,
                bridge,
                right,
            } => Partition::bridge(addrs, left, *bridge, right),
        }
    }
}

/// One thing the nemesis does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `docker kill -s KILL`.
    Kill(u64),
    /// `docker start` after a kill.
    Restart(u64),
    /// `docker pause` (cgroup freezer).
    Pause(u64),
    /// `docker unpause`.
    Resume(u64),
    /// `SIGSTOP`.
    Stop(u64),
    /// `SIGCONT`.
    Cont(u64),
    /// Replace the network's partition by this one.
    Partition(PartitionSpec),
    /// Remove every partition rule.
    Heal,
}

fn nodes_text(ids: &[u64]) -> String {
    ids.iter()
        .map(|n| format!("n{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(n) => write!(f, "kill n{n}"),
            Fault::Restart(n) => write!(f, "restart n{n}"),
            Fault::Pause(n) => write!(f, "pause n{n}"),
            Fault::Resume(n) => write!(f, "resume n{n}"),
            Fault::Stop(n) => write!(f, "stop n{n}"),
            Fault::Cont(n) => write!(f, "cont n{n}"),
            Fault::Heal => write!(f, "heal"),
            Fault::Partition(p) => match p {
                PartitionSpec::Isolate(n) => write!(f, "partition isolate n{n}"),
                PartitionSpec::IsolateLeader => write!(f, "partition isolate-leader"),
                PartitionSpec::Split { minority, majority } => write!(
                    f,
                    "partition split {} | {}",
                    nodes_text(minority),
                    nodes_text(majority)
                ),
                PartitionSpec::Bridge {
                    left,
                    bridge,
                    right,
                } => write!(
                    f,
                    "partition bridge {} | n{bridge} | {}",
                    nodes_text(left),
                    nodes_text(right)
                ),
            },
        }
    }
}

fn parse_node(s: &str) -> std::result::Result<u64, String> {
    s.strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a node (n1, n2, ...)"))
}

fn parse_groups(words: &[&str]) -> std::result::Result<Vec<Vec<u64>>, String> {
    words
        .split(|w| *w == "|")
        .map(|g| {
            if g.is_empty() {
                Err("empty group between `|`".to_string())
            } else {
                g.iter().map(|w| parse_node(w)).collect()
            }
        })
        .collect()
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Fault, String> {
        let w: Vec<&str> = s.split_whitespace().collect();
        let one = |make: fn(u64) -> Fault| match &w[1..] {
            [n] => Ok(make(parse_node(n)?)),
            _ => Err(format!("{s:?}: expected `{} nN`", w[0])),
        };
        match w.first().copied() {
            Some("kill") => one(Fault::Kill),
            Some("restart") => one(Fault::Restart),
            Some("pause") => one(Fault::Pause),
            Some("resume") => one(Fault::Resume),
            Some("stop") => one(Fault::Stop),
            Some("cont") => one(Fault::Cont),
            Some("heal") if w.len() == 1 => Ok(Fault::Heal),
            Some("partition") => {
                let spec = match w.get(1).copied() {
                    Some("isolate") if w.len() == 3 => PartitionSpec::Isolate(parse_node(w[2])?),
                    Some("isolate-leader") if w.len() == 2 => PartitionSpec::IsolateLeader,
                    Some("split") => match parse_groups(&w[2..])?.as_slice() {
                        [minority, majority] => PartitionSpec::Split {
                            minority: minority.clone(),
                            majority: majority.clone(),
                        },
                        _ => return Err(format!("{s:?}: expected `split MINORITY | MAJORITY`")),
                    },
                    Some("bridge") => match parse_groups(&w[2..])?.as_slice() {
                        [left, bridge, right] if bridge.len() == 1 => PartitionSpec::Bridge {
                            left: left.clone(),
                            bridge: bridge[0],
                            right: right.clone(),
                        },
                        _ => return Err(format!("{s:?}: expected `bridge LEFT | nB | RIGHT`")),
                    },
                    _ => {
                        return Err(format!(
                        "{s:?}: expected `partition isolate nN|isolate-leader|split ..|bridge ..`"
                    ))
                    }
                };
                Ok(Fault::Partition(spec))
            }
            _ => Err(format!(
                "{s:?}: not a fault (kill, restart, pause, resume, stop, cont, partition, heal)"
            )),
        }
    }
}

/// The kinds of fault a schedule mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Kill -9 a random node, later start it again.
    Kill,
    /// Freeze a random node (cgroup freezer), later thaw it.
    Pause,
    /// `SIGSTOP` a random node, later `SIGCONT`.
    Stop,
    /// Cut a random node off from the others.
    Isolate,
    /// Cut off the leader of the moment.
    IsolateLeader,
    /// A random minority against the rest (3 nodes or more).
    Split,
    /// Two halves joined by one node (3 nodes or more).
    Bridge,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Stop,
        FaultKind::Isolate,
        FaultKind::IsolateLeader,
        FaultKind::Split,
        FaultKind::Bridge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Stop => "stop",
            FaultKind::Isolate => "isolate",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Split => "split",
            FaultKind::Bridge => "bridge",
        }
    }

    /// Whether the kind makes sense with `nodes` nodes.
    pub fn possible_with(self, nodes: usize) -> bool {
        match self {
            FaultKind::Split | FaultKind::Bridge => nodes >= 3,
            FaultKind::Isolate | FaultKind::IsolateLeader => nodes >= 2,
            FaultKind::Kill | FaultKind::Pause | FaultKind::Stop => nodes >= 1,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?}: not a fault kind ({})",
                    FaultKind::ALL.map(FaultKind::name).join(", ")
                )
            })
    }
}

/// What [`Schedule::generate`] draws from.
#[derive(Clone, Debug)]
pub struct ScheduleOptions {
    pub seed: u64,
    /// Node ids.
    pub nodes: Vec<u64>,
    /// Length of the run; every fault is undone before it ends.
    pub duration: Duration,
    /// Kinds to mix, each equally likely.
    pub kinds: Vec<FaultKind>,
    /// How long a fault lasts, drawn uniformly from this range.
    pub hold: (Duration, Duration),
    /// How long the cluster is left alone before each fault.
    pub quiet: (Duration, Duration),
}

impl ScheduleOptions {
    /// Every kind, faults of 2-8 s with 2-6 s of calm before each.
    pub fn new(seed: u64, nodes: Vec<u64>, duration: Duration) -> ScheduleOptions {
        ScheduleOptions {
            seed,
            nodes,
            duration,
            kinds: FaultKind::ALL.to_vec(),
            hold: (Duration::from_secs(2), Duration::from_secs(8)),
            quiet: (Duration::from_secs(2), Duration::from_secs(6)),
        }
    }
}

/// One step: at `at` after the start, do `fault`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
}

/// Steps in time order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was drawn from (printed as a comment; none when written
    /// by hand).
    pub seed: Option<u64>,
    pub steps: Vec<Step>,
}

fn draw(rng: &mut StdRng, (lo, hi): (Duration, Duration)) -> Duration {
    // Whole milliseconds, so that the printed schedule is exact.
    let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
    Duration::from_millis(if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    })
}

impl Schedule {
    /// A random schedule: calm, fault, hold, undo, calm, fault, ... until
    /// the next fault would not be undone before `duration`.
    pub fn generate(opts: &ScheduleOptions) -> std::result::Result<Schedule, String> {
        let mut nodes = opts.nodes.clone();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.is_empty() || nodes.contains(&0) {
            return Err("a schedule needs nodes, numbered from 1".into());
        }
        let kinds: Vec<FaultKind> = opts
            .kinds
            .iter()
            .copied()
            .filter(|k| k.possible_with(nodes.len()))
            .collect();
        if kinds.is_empty() {
            return Err(format!(
                "none of the kinds {:?} works with {} node(s)",
                opts.kinds,
                nodes.len()
            ));
        }
        if opts.hold.0 > opts.hold.1 || opts.quiet.0 > opts.quiet.1 {
            return Err("hold and quiet ranges must be (min, max)".into());
        }
        let mut rng = StdRng::seed_from_u64(opts.seed);
        let mut steps = Vec::new();
        let mut t = Duration::ZERO;
        loop {
            let start = t + draw(&mut rng, opts.quiet);
            let end = start + draw(&mut rng, opts.hold).max(Duration::from_millis(1));
            let kind = *kinds.choose(&mut rng).expect("not empty");
            let node = *nodes.choose(&mut rng).expect("not empty");
            let (fault, undo) = match kind {
                FaultKind::Kill => (Fault::Kill(node), Fault::Restart(node)),
                FaultKind::Pause => (Fault::Pause(node), Fault::Resume(node)),
                FaultKind::Stop => (Fault::Stop(node), Fault::Cont(node)),
                FaultKind::Isolate => (Fault::Partition(PartitionSpec::Isolate(node)), Fault::Heal),
                FaultKind::IsolateLeader => {
                    (Fault::Partition(PartitionSpec::IsolateLeader), Fault::Heal)
                }
                FaultKind::Split => {
                    let mut shuffled = nodes.clone();
                    shuffled.shuffle(&mut rng);
                    let size = rng.random_range(1..=(nodes.len() - 1) / 2);
                    let mut minority = shuffled[..size].to_vec();
                    let mut majority = shuffled[size..].to_vec();
                    minority.sort_unstable();
                    majority.sort_unstable();
                    (
                        Fault::Partition(PartitionSpec::Split { minority, majority }),
                        Fault::Heal,
                    )
                }
                FaultKind::Bridge => {
                    let mut shuffled = nodes.clone();
                    shuffled.shuffle(&mut rng);
                    let bridge = shuffled.pop().expect("3 or more");
                    let half = shuffled.len() / 2;
                    let mut left = shuffled[..half].to_vec();
                    let mut right = shuffled[half..].to_vec();
                    left.sort_unstable();
                    right.sort_unstable();
                    (
                        Fault::Partition(PartitionSpec::Bridge {
                            left,
                            bridge,
                            right,
                        }),
                        Fault::Heal,
                    )
                }
            };
            if end > opts.duration {
                break;
            }
            steps.push(Step { at: start, fault });
            steps.push(Step {
                at: end,
                fault: undo,
            });
            t = end;
        }
        Ok(Schedule {
            seed: Some(opts.seed),
            steps,
        })
    }
}

impl fmt::Display for Schedule {
    /// `# seed N` (if known), then one `SECONDS.MILLISs FAULT` line per step.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(seed) = self.seed {
            writeln!(f, "# seed {seed}")?;
        }
        for s in &self.steps {
            writeln!(
                f,
                "{}.{:03}s {}",
                s.at.as_secs(),
                s.at.subsec_millis(),
                s.fault
            )?;
        }
        Ok(())
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// Reads what `Display` writes; blank lines and other `#` comments are
    /// skipped. Times must not go backwards.
    fn from_str(text: &str) -> std::result::Result<Schedule, String> {
        let mut sched = Schedule::default();
        for (i, line) in text.lines().enumerate() {
            let at_line = |e: String| format!("line {}: {e}", i + 1);
            let line = line.trim();
            if let Some(c) = line.strip_prefix('#') {
                if let Some(seed) = c.trim().strip_prefix("seed ") {
                    sched.seed = Some(
                        seed.trim()
                            .parse()
                            .map_err(|e| at_line(format!("seed {seed:?}: {e}")))?,
                    );
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let (time, fault) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| at_line(format!("{line:?}: expected `SECONDSs FAULT`")))?;
            let secs: f64 = time
                .strip_suffix('s')
                .and_then(|t| t.parse().ok())
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| at_line(format!("{time:?}: expected seconds such as 1.250s")))?;
            let at = Duration::from_millis((secs * 1000.0).round() as u64);
            if sched.steps.last().is_some_and(|s| s.at > at) {
                return Err(at_line("time goes backwards".into()));
            }
            sched.steps.push(Step {
                at,
                fault: fault.trim().parse().map_err(at_line)?,
            });
        }
        Ok(sched)
    }
}

// ---------------------------------------------------------------------------
// The nemesis (effects)

/// Carries out faults against a running compose project. Dropping it heals
/// the network (processes are left as they are: the project's own drop
/// removes them).
pub struct Nemesis<'a> {
    compose: &'a Compose,
    firewall: Firewall,
}

impl<'a> Nemesis<'a> {
    /// Prepares the firewall for `compose`'s project (see [`Firewall::new`]).
    pub fn new(compose: &'a Compose) -> Result<Nemesis<'a>> {
        Ok(Nemesis {
            compose,
            firewall: Firewall::new(&tag_for(compose.project()))?,
        })
    }

    pub fn firewall(&mut self) -> &mut Firewall {
        &mut self.firewall
    }

    /// Blocks exactly the pairs of `p` between the project's containers.
    pub fn partition(&mut self, p: &Partition) -> Result<()> {
        self.firewall.apply(p)
    }

    /// Removes our partition rules.
    pub fn heal(&mut self) -> Result<()> {
        self.firewall.heal().map(drop)
    }

    /// Does `fault`. `leader` is the current leader's id, needed only by
    /// `partition isolate-leader`. Returns what was done, resolved (for
    /// the run's log): `partition isolate-leader (n2)`.
    pub fn apply(&mut self, fault: &Fault, leader: Option<u64>) -> Result<String> {
        let c = self.compose;
        match fault {
            Fault::Kill(n) => c.kill(*n)?,
            Fault::Restart(n) => c.start(*n)?,
            Fault::Pause(n) => c.pause(*n)?,
            Fault::Resume(n) => c.unpause(*n)?,
            Fault::Stop(n) => c.sigstop(*n)?,
            Fault::Cont(n) => c.sigcont(*n)?,
            Fault::Heal => self.heal()?,
            Fault::Partition(spec) => {
                let p = spec
                    .resolve(&c.addresses(), leader)
                    .map_err(|e| Error::Other(format!("{fault}: {e}")))?;
                self.partition(&p)?;
                if let (PartitionSpec::IsolateLeader, Some(l)) = (spec, leader) {
                    return Ok(format!("{fault} (n{l})"));
                }
            }
        }
        Ok(fault.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u64) -> Addresses {
        (1..=n)
            .map(|i| (i, Ipv4Addr::new(10, 213, 0, 10 + i as u8)))
            .collect()
    }

    fn ip(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, 0, 10 + i)
    }

    /// The pairs as `a>b` strings over node numbers, for compact asserts.
    fn pairs(p: &Partition) -> Vec<String> {
        p.pairs()
            .map(|(s, d)| format!("{}>{}", s.octets()[3] - 10, d.octets()[3] - 10))
            .collect()
    }

    #[test]
    fn isolating_a_node_cuts_it_both_ways_from_every_other() {
        let p = Partition::isolate(&addrs(3), 1).unwrap();
        assert_eq!(pairs(&p), ["1>2", "1>3", "2>1", "3>1"]);
        assert!(!p.is_blocked(ip(2), ip(3)));
    }

    #[test]
    fn a_split_cuts_every_minority_majority_pair_and_nothing_inside_a_side() {
        let p = Partition::split(&addrs(5), &[2, 4]).unwrap();
        assert_eq!(p.len(), 2 * 2 * 3);
        for (a, b) in [(2, 1), (2, 3), (2, 5), (4, 1), (4, 3), (4, 5)] {
            assert!(
                p.is_blocked(ip(a), ip(b)) && p.is_blocked(ip(b), ip(a)),
                "{a}-{b}"
            );
        }
        assert!(!p.is_blocked(ip(2), ip(4)));
        assert!(!p.is_blocked(ip(1), ip(5)));
    }

    #[test]
    fn a_split_needs_a_true_minority() {
        assert!(Partition::split(&addrs(5), &[1, 2, 3]).is_err());
        assert!(Partition::split(&addrs(4), &[1, 2]).is_err());
        assert!(Partition::split(&addrs(3), &[]).is_err());
        assert!(Partition::split(&addrs(3), &[9]).is_err());
    }

    #[test]
    fn a_bridge_leaves_the_middle_node_connected_to_both_halves() {
        let p = Partition::bridge(&addrs(5), &[1, 2], 3, &[4, 5]).unwrap();
        assert_eq!(
            pairs(&p),
            ["1>4", "1>5", "2>4", "2>5", "4>1", "4>2", "5>1", "5>2"]
        );
        let p3 = Partition::bridge(&addrs(3), &[1], 2, &[3]).unwrap();
        assert_eq!(pairs(&p3), ["1>3", "3>1"]);
        assert!(Partition::bridge(&addrs(3), &[1, 2], 2, &[3]).is_err());
    }

    #[test]
    fn rules_are_iptables_drop_rules_with_our_comment() {
        let spec = rule_spec(ip(1), ip(2), "bifrost-nemesis:p1");
        assert_eq!(
            spec.join(" "),
            "-s 10.213.0.11/32 -d 10.213.0.12/32 -m comment --comment bifrost-nemesis:p1 -j DROP"
        );
        assert!(check_tag("bifrost-nemesis:p-1_2").is_ok());
        assert!(check_tag("has space").is_err());
        assert!(check_tag("").is_err());
    }

    #[test]
    fn heal_finds_exactly_our_rules_in_a_listing() {
        let listing = r#"-N DOCKER-USER
-A DOCKER-USER -s 10.213.0.13/32 -d 10.213.0.11/32 -m comment --comment bifrost-nemesis:p1 -j DROP
-A DOCKER-USER -s 10.213.0.12/32 -d 10.213.0.11/32 -m comment --comment "bifrost-nemesis:p1" -j DROP
-A DOCKER-USER -s 10.213.0.11/32 -d 10.213.0.13/32 -m comment --comment bifrost-nemesis:p2 -j DROP
-A DOCKER-USER -s 10.0.0.1/32 -m comment --comment "not bifrost-nemesis:p1" -j DROP
-A FORWARD -m comment --comment bifrost-nemesis:p1 -j DROP
-A DOCKER-USER -j RETURN"#;
        // iptables-legacy prints the comment bare, iptables-nft in quotes.
        let ours = tagged_rules(listing, CHAIN, |c| c == "bifrost-nemesis:p1");
        assert_eq!(ours.len(), 2);
        assert_eq!(ours[1], rule_spec(ip(2), ip(1), "bifrost-nemesis:p1"));
        assert_eq!(
            ours[0],
            rule_spec(ip(3), ip(1), "bifrost-nemesis:p1"),
            "what -D needs to delete it"
        );
        let all = tagged_rules(listing, CHAIN, |c| c.starts_with(TAG_PREFIX));
        assert_eq!(all.len(), 3);
        assert_eq!(
            words(r#"-A X --comment "a \"b\" c" -j DROP"#),
            ["-A", "X", "--comment", r#"a "b" c"#, "-j", "DROP"]
        );
    }

    fn opts(seed: u64) -> ScheduleOptions {
        ScheduleOptions::new(seed, vec![1, 2, 3, 4, 5], Duration::from_secs(120))
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let a = Schedule::generate(&opts(7)).unwrap();
        assert_eq!(a, Schedule::generate(&opts(7)).unwrap());
        assert_ne!(a, Schedule::generate(&opts(8)).unwrap());
    }

    #[test]
    fn every_fault_is_undone_before_the_next_and_before_the_end() {
        for seed in 0..200 {
            let o = opts(seed);
            let s = Schedule::generate(&o).unwrap();
            assert!(!s.steps.is_empty(), "seed {seed}");
            assert_eq!(s.steps.len() % 2, 0);
            let mut last = Duration::ZERO;
            for pair in s.steps.chunks(2) {
                let (f, u) = (&pair[0], &pair[1]);
                assert!(
                    f.at >= last + o.quiet.0,
                    "seed {seed}: calm before {}",
                    f.fault
                );
                let hold = u.at - f.at;
                assert!(hold >= o.hold.0 && hold <= o.hold.1, "seed {seed}");
                let expected_undo = match &f.fault {
                    Fault::Kill(n) => Fault::Restart(*n),
                    Fault::Pause(n) => Fault::Resume(*n),
                    Fault::Stop(n) => Fault::Cont(*n),
                    Fault::Partition(_) => Fault::Heal,
                    other => panic!("seed {seed}: {other} is not a fault to start with"),
                };
                assert_eq!(u.fault, expected_undo);
                last = u.at;
            }
            assert!(last <= o.duration);
        }
    }

    #[test]
    fn generated_partitions_resolve_against_the_cluster() {
        let a = addrs(5);
        let mut kinds = BTreeSet::new();
        for seed in 0..100 {
            for step in Schedule::generate(&opts(seed)).unwrap().steps {
                if let Fault::Partition(spec) = &step.fault {
                    let p = spec.resolve(&a, Some(2)).unwrap();
                    assert!(!p.is_empty(), "{}", step.fault);
                    if let PartitionSpec::Split { minority, .. } = spec {
                        assert!(minority.len() * 2 < a.len());
                    }
                }
                kinds.insert(
                    step.fault
                        .to_string()
                        .split(' ')
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
        }
        // A long enough mix uses every kind.
        for k in [
            "kill",
            "restart",
            "pause",
            "resume",
            "stop",
            "cont",
            "heal",
            "partition isolate",
            "partition isolate-leader",
            "partition split",
            "partition bridge",
        ] {
            assert!(
                kinds.iter().any(|s| s.starts_with(k)),
                "{k} never drawn: {kinds:?}"
            );
        }
    }

    #[test]
    fn only_the_chosen_kinds_are_drawn() {
        let mut o = opts(3);
        o.kinds = vec![FaultKind::Kill];
        let s = Schedule::generate(&o).unwrap();
        assert!(s
            .steps
            .iter()
            .all(|st| matches!(st.fault, Fault::Kill(_) | Fault::Restart(_))));
        o.nodes = vec![1, 2];
        o.kinds = vec![FaultKind::Bridge, FaultKind::Split];
        assert!(Schedule::generate(&o).is_err());
    }

    #[test]
    fn a_printed_schedule_parses_back_to_itself() {
        for seed in 0..50 {
            let s = Schedule::generate(&opts(seed)).unwrap();
            let text = s.to_string();
            assert!(text.starts_with(&format!("# seed {seed}\n")));
            assert_eq!(text.parse::<Schedule>().unwrap(), s, "{text}");
        }
    }

    #[test]
    fn a_schedule_reads_as_text() {
        let text = "# seed 1\n\
                    1.500s partition bridge n1 | n3 | n2\n\
                    4.000s heal\n\
                    6.250s kill n2\n\
                    9.000s restart n2\n\
                    10.000s partition split n3 | n1 n2\n\
                    11.000s partition isolate-leader\n";
        let s: Schedule = text.parse().unwrap();
        assert_eq!(s.to_string(), text);
        assert_eq!(s.steps[2].at, Duration::from_millis(6250));
        assert_eq!(
            s.steps[0].fault,
            Fault::Partition(PartitionSpec::Bridge {
                left: vec![1],
                bridge: 3,
                right: vec![2]
            })
        );
    }

    #[test]
    fn bad_schedule_lines_say_where_and_what() {
        for (text, want) in [
            ("1s explode n1", "line 1: \"explode n1\": not a fault"),
            ("1s kill 2", "line 1: \"2\" is not a node"),
            ("2s heal\n1s heal", "line 2: time goes backwards"),
            ("soon heal", "line 1: \"soon\": expected seconds"),
            (
                "1s partition bridge n1 | n2 n3 | n4",
                "expected `bridge LEFT | nB | RIGHT`",
            ),
        ] {
            let e = text.parse::<Schedule>().unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn split_specs_must_name_the_real_majority() {
        let spec = PartitionSpec::Split {
            minority: vec![1],
            majority: vec![2],
        };
        assert!(spec.resolve(&addrs(3), None).is_err());
        assert!(PartitionSpec::IsolateLeader
            .resolve(&addrs(3), None)
            .is_err());
        assert_eq!(
            PartitionSpec::IsolateLeader
                .resolve(&addrs(3), Some(3))
                .unwrap(),
            Partition::isolate(&addrs(3), 3).unwrap()
        );
    }
}
