//! Recovering from the loss of a majority: what a stopped node's log holds
//! ([`inspect`]), and making a survivor the only voter of its cluster
//! ([`force_new_cluster`]).
//!
//! A cluster that has lost a majority of its voters for good cannot elect a
//! leader or commit anything, and Raft offers no way out that keeps its
//! guarantees. The way out here is the one etcd's `--force-new-cluster`
//! takes: on the survivor whose log is the longest (the greatest last log
//! id: term, then index; [`Position`] tells each survivor's), a membership
//! entry naming that node alone is appended to its log, in a term after
//! every term it has seen, and the node votes for itself in that term. When
//! it starts, that membership is in effect (openraft uses the last
//! membership in the log, committed or not), so it elects itself and commits
//! its whole log, then the others are added back with `member add`.
//!
//! What this gives up, and the operator is told: entries that reached only
//! nodes now lost are gone, and entries the survivor holds but the old
//! cluster never committed are committed now. An acknowledged write was on
//! a majority, so the longest log among the survivors holds every one of
//! them as long as one node of that majority survived.
//!
//! This module works on a stopped node's stores (RocksDB's lock refuses a
//! running one) and knows nothing of the server.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use bifrost_storage::codec::{decode, encode};
use bifrost_storage::{MemoryBudget, NodeStore, StateStore};
use openraft::{CommittedLeaderId, EntryPayload, Vote};
use serde::Serialize;

use crate::log_store::{read_entry, META_COMMITTED, META_PURGED, META_VOTE};
use crate::state_machine::Membership;
use crate::{Entry, LogId, Member, NodeId};

/// Where a stopped node's log and state stand.
#[derive(Clone, Debug, Serialize)]
pub struct Position {
    /// Its last log entry: compare these (term, then index) across
    /// survivors; the greatest is the one to recover.
    pub last_log: Option<LogId>,
    /// The last entry it knew to be committed.
    pub committed: Option<LogId>,
    /// The last entry its state has applied.
    pub applied: Option<LogId>,
    /// The term of its vote (the latest term it has seen).
    pub vote_term: u64,
    /// The voters and members of the membership in effect (the last in its
    /// log, else its state's), with their addresses.
    pub voters: BTreeSet<NodeId>,
    pub members: BTreeMap<NodeId, Member>,
}

impl Position {
    /// `term T index I`, or `empty`.
    pub fn last_log_text(&self) -> String {
        match &self.last_log {
            Some(l) => format!("term {} index {}", l.leader_id.term, l.index),
            None => "empty".into(),
        }
    }
}

/// Another survivor's last log, as its own `bifrost recover` printed it
/// (`ID:TERM:INDEX`), so that one node can say which survivor to recover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurvivorLog {
    pub id: NodeId,
    pub term: u64,
    pub index: u64,
}

impl SurvivorLog {
    /// `id`'s last log from its [`Position`]; term and index 0 when the
    /// log is empty.
    pub fn of(id: NodeId, p: &Position) -> Self {
        let (term, index) = p.last_log.map_or((0, 0), |l| (l.leader_id.term, l.index));
        SurvivorLog { id, term, index }
    }

    fn log_text(&self) -> String {
        format!("term {} index {}", self.term, self.index)
    }
}

impl std::fmt::Display for SurvivorLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.id, self.term, self.index)
    }
}

impl std::str::FromStr for SurvivorLog {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [id, term, index] = parts[..] else {
            return Err(format!(
                "`{s}` has {} part(s); expected ID:TERM:INDEX, as another survivor's \
                 `bifrost recover` printed it",
                parts.len()
            ));
        };
        let number = |what: &str, v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("{what} `{v}` in `{s}` is not a whole number (ID:TERM:INDEX)"))
        };
        Ok(SurvivorLog {
            id: number("ID", id)?,
            term: number("TERM", term)?,
            index: number("INDEX", index)?,
        })
    }
}

/// Which survivor to recover: the one whose last log is the greatest (term
/// first, then index), `own` among `others`; `own` wins a tie, since
/// either holds every entry the other does. Errors when `others` names
/// `own`'s node or one node twice.
pub fn most_up_to_date(own: SurvivorLog, others: &[SurvivorLog]) -> Result<SurvivorLog, String> {
    let mut seen = BTreeSet::from([own.id]);
    for o in others {
        if !seen.insert(o.id) {
            return Err(if o.id == own.id {
                format!("--survivor {o} names node {}, the node recovered here: give the others' positions", o.id)
            } else {
                format!("--survivor names node {} twice", o.id)
            });
        }
    }
    let key = |s: &SurvivorLog| (s.term, s.index);
    Ok(others
        .iter()
        .copied()
        .fold(own, |best, o| if key(&o) > key(&best) { o } else { best }))
}

/// Why `chosen`, not `own`, must be recovered, for the operator.
pub fn not_this_one(own: SurvivorLog, chosen: SurvivorLog) -> String {
    format!(
        "node {}'s last log ({}) is greater than node {}'s ({}): recover node {} instead, \
         since acknowledged readings may be only in its log",
        chosen.id,
        chosen.log_text(),
        own.id,
        own.log_text(),
        chosen.id
    )
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn open(data_dir: &Path) -> io::Result<(NodeStore, StateStore)> {
    for part in ["node", "state"] {
        if !data_dir.join(part).is_dir() {
            return Err(err(format!(
                "{} is not a node's data directory (it has no {part}/)",
                data_dir.display()
            )));
        }
    }
    let budget = MemoryBudget::default();
    let node = NodeStore::open_with(&data_dir.join("node"), &budget)
        .map_err(|e| err(format!("{} (is the node still running?)", e)))?;
    let state = StateStore::open_with(&data_dir.join("state"), &budget).map_err(err)?;
    Ok((node, state))
}

fn meta<T: serde::de::DeserializeOwned>(node: &NodeStore, key: &str) -> io::Result<Option<T>> {
    match node.get_meta(key).map_err(err)? {
        Some(b) => decode(&b).map(Some).map_err(err),
        None => Ok(None),
    }
}

/// Reads where the stopped node in `data_dir` stands.
pub fn inspect(data_dir: &Path) -> io::Result<Position> {
    let (node, state) = open(data_dir)?;
    position(&node, &state)
}

fn position(node: &NodeStore, state: &StateStore) -> io::Result<Position> {
    let applied: Option<LogId> = match state.applied() {
        Some(b) => decode(&b).map_err(err)?,
        None => None,
    };
    let mut membership: Membership = match state.membership() {
        Some(b) => decode(&b).map_err(err)?,
        None => Membership::default(),
    };
    let purged: Option<LogId> = meta(node, META_PURGED)?;
    let mut last_log = purged;
    let from = applied.map_or(0, |a| a.index + 1);
    for (index, bytes) in node.log_range(from, u64::MAX).map_err(err)? {
        let entry = read_entry(index, &bytes).map_err(err)?;
        if let EntryPayload::Membership(m) = &entry.payload {
            membership = Membership::new(Some(entry.log_id), m.clone());
        }
        last_log = Some(entry.log_id);
    }
    if let Some((index, bytes)) = node.log_last().map_err(err)? {
        let entry = read_entry(index, &bytes).map_err(err)?;
        last_log = last_log.max(Some(entry.log_id));
    }
    let committed: Option<LogId> = meta::<Option<LogId>>(node, META_COMMITTED)?.flatten();
    let vote: Option<Vote<NodeId>> = meta(node, META_VOTE)?;
    let config = membership.membership();
    Ok(Position {
        last_log,
        committed,
        applied,
        vote_term: vote.map_or(0, |v| v.leader_id.term),
        voters: config.voter_ids().collect(),
        members: config.nodes().map(|(id, m)| (*id, m.clone())).collect(),
    })
}

/// Makes node `id`, stopped, in `data_dir`, the only voter of its cluster
/// (see the module's comment). Returns where it stood before.
pub fn force_new_cluster(data_dir: &Path, id: NodeId) -> io::Result<Position> {
    let (node, state) = open(data_dir)?;
    let before = position(&node, &state)?;
    let Some(me) = before.members.get(&id).cloned() else {
        let ids: Vec<String> = before.members.keys().map(|i| i.to_string()).collect();
        return Err(err(format!(
            "node {id} is not a member of the cluster this data directory knows (members: {}); \
             is --id right?",
            ids.join(", ")
        )));
    };
    let Some(last) = before.last_log else {
        return Err(err("this node's log is empty: it never joined a cluster"));
    };
    let term = last.leader_id.term.max(before.vote_term) + 1;
    let config = openraft::Membership::new(vec![[id].into()], BTreeMap::from([(id, me)]));
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, id), last.index + 1),
        payload: EntryPayload::Membership(config),
    };
    node.append_log([(entry.log_id.index, encode(&entry))])
        .map_err(err)?;
    node.sync().map_err(err)?;
    node.put_meta(META_VOTE, &encode(&Vote::new(term, id)), true)
        .map_err(err)?;
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(id: NodeId, term: u64, index: u64) -> SurvivorLog {
        SurvivorLog { id, term, index }
    }

    #[test]
    fn the_greatest_term_wins_then_the_greatest_index_and_a_tie_keeps_this_node() {
        let own = log(1, 3, 500);
        assert_eq!(most_up_to_date(own, &[]), Ok(own));
        assert_eq!(most_up_to_date(own, &[log(2, 3, 499)]), Ok(own));
        assert_eq!(most_up_to_date(own, &[log(2, 3, 500)]), Ok(own));
        assert_eq!(most_up_to_date(own, &[log(2, 3, 501)]), Ok(log(2, 3, 501)));
        // A later term beats a longer log of an earlier one.
        assert_eq!(
            most_up_to_date(own, &[log(2, 2, 900), log(3, 4, 10)]),
            Ok(log(3, 4, 10))
        );
        let why = not_this_one(own, log(3, 4, 10));
        assert!(why.contains("recover node 3 instead"), "{why}");
        assert!(
            why.contains("(term 4 index 10)") && why.contains("(term 3 index 500)"),
            "{why}"
        );
    }

    #[test]
    fn a_survivor_is_read_as_id_term_index_and_bad_ones_say_what_is_wrong() {
        assert_eq!("2:7:1234".parse(), Ok(log(2, 7, 1234)));
        assert_eq!(log(2, 7, 1234).to_string(), "2:7:1234");
        let e = "2:7".parse::<SurvivorLog>().unwrap_err();
        assert!(
            e.contains("has 2 part(s)") && e.contains("ID:TERM:INDEX"),
            "{e}"
        );
        let e = "2:seven:1234".parse::<SurvivorLog>().unwrap_err();
        assert!(e.contains("TERM `seven`"), "{e}");
        let e = most_up_to_date(log(1, 1, 1), &[log(1, 2, 2)]).unwrap_err();
        assert!(e.contains("node 1, the node recovered here"), "{e}");
        let e = most_up_to_date(log(1, 1, 1), &[log(2, 2, 2), log(2, 2, 2)]).unwrap_err();
        assert!(e.contains("node 2 twice"), "{e}");
    }
}
