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
