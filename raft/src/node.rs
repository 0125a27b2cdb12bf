//! A running Raft member: openraft plus our stores, bootstrap from a static
//! peer list, write forwarding and read-index reads.
//!
//! **Writes on a follower are forwarded.** A follower sends the command to the
//! leader over the internal service; the leader runs it and returns the
//! result. The leader never forwards again: if it lost leadership meanwhile it
//! answers `NotLeader` with its best hint, and the follower retries (bounded).
//! Clients may therefore talk to any member.
//!
//! **Linearizable reads** use a read index: the leader confirms its leadership
//! with a quorum and returns its commit point; the reading node waits until it
//! has applied that far and then reads locally.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_proto::channel::Security;
use bifrost_proto::raft::raft_internal_client::RaftInternalClient;
use bifrost_storage::{MemoryBudget, NodeStore, StateStore};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::command::{Command, Response};
use crate::disk_guard::DiskGuard;
use crate::log_store::LogStore;
use crate::network::{payload, peer_client, unpayload, NetworkFactory};
use crate::snapshot::Store;
use crate::state_machine::StateMachine;
use crate::transfer::SnapshotStats;
use crate::{LogId, Member, NodeId, Raft};

/// Timing and sizing of a node; tests shorten the timeouts.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Addresses clients and peers use to reach this node.
    pub advertise: Member,
    /// The initial cluster. A fresh node that is in it bootstraps with it.
    pub peers: BTreeMap<NodeId, Member>,
    /// Never bootstrap: a fresh node waits to be added even if `peers`
    /// lists it (a node replacing one of the same id).
    pub join: bool,
    /// How this node reaches its peers' peer ports.
    pub security: Security,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot, for slightly lagging followers.
    pub keep_logs: u64,
    /// Bytes of memory for both databases' caches and memtables and the
    /// unflushed state (see `bifrost_storage::MemoryBudget`).
    pub memory_budget: usize,
    /// Free bytes of the data directory's disk below which writes are
    /// refused (see `disk_guard`; 0: never).
    pub min_free_disk: u64,
}

impl NodeOptions {
    pub fn new(
        id: NodeId,
        data_dir: PathBuf,
        advertise: Member,
        peers: BTreeMap<NodeId, Member>,
    ) -> Self {
        NodeOptions {
            id,
            data_dir,
            advertise,
            peers,
            join: false,
            security: Security::Plain,
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000,
            snapshot_logs: 20_000,
            keep_logs: 1_000,
            memory_budget: MemoryBudget::DEFAULT,
            min_free_disk: 0,
        }
    }
}

/// Consistency of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every write acknowledged before the read began.
    Linearizable,
    /// This node's applied state, possibly stale.
    Local,
    /// The leader's applied state, without a quorum round: served only by
    /// the node that believes it leads (a deposed leader that does not know
    /// it yet may answer stale). Other nodes refuse with the leader's address.
    Leader,
}

/// Why a proposal or read barrier did not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    #[error("raft: not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, Member)> },
    #[error("raft: unavailable: {0}")]
    Unavailable(String),
    #[error("raft: {0}")]
    Fatal(String),
    #[error("raft: membership change refused: {0}")]
    Membership(String),
    /// The disk of the node named in the message is nearly full.
    #[error("{0}")]
    DiskFull(String),
}

/// Work a follower forwards to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Forwarded {
    Write(Command),
    AddMember {
        id: NodeId,
        addr: Member,
        learner_only: bool,
    },
    RemoveMember {
        id: NodeId,
    },
}

/// Reply to [`Forwarded`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ForwardReply {
    Written(Response),
    Members(Vec<MemberInfo>),
}

/// One cluster member as reported by status calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    /// Public gRPC address.
    pub addr: String,
    /// Peer port address.
    pub peer: String,
    /// leader, follower or learner
    pub role: String,
}

/// A running member.
pub struct RaftNode {
    id: NodeId,
    raft: Raft,
    state: StateStore,
    node_store: NodeStore,
    options: NodeOptions,
    committed: Arc<std::sync::atomic::AtomicU64>,
    /// Append/fsync counters of the log store.
    log_stats: Arc<crate::log_store::LogStats>,
    /// Where received snapshot files are kept.
    snapshot_store: Store,
    snapshot_stats: Arc<SnapshotStats>,
    peers: Mutex<HashMap<String, RaftInternalClient<Channel>>>,
    /// Refuses writes while the disk is nearly full.
    disk: DiskGuard,
}

/// How long a forwarded call or read barrier may look for a leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);

impl RaftNode {
    /// Opens the stores under `data_dir` and starts openraft.
    pub async fn start(
        options: NodeOptions,
        observer: Option<crate::state_machine::ApplyObserver>,
    ) -> crate::Result<Arc<RaftNode>> {
        let budget = MemoryBudget::new(options.memory_budget);
        let node_store = NodeStore::open_with(&options.data_dir.join("node"), &budget)?;
        let state = StateStore::open_with(&options.data_dir.join("state"), &budget)?;
        let sm = StateMachine::new(state.clone(), &options.data_dir.join("snapshots"))?
            .with_observer(observer);
        let snapshot_store = sm.snapshot_store().clone();
        let snapshot_stats = Arc::new(SnapshotStats::default());
        let log = LogStore::new(node_store.clone(), &sm);
        let committed = log.committed_index();
        let log_stats = log.stats();
        let config = Config {
            cluster_name: "bifrost".into(),
            heartbeat_interval: options.heartbeat_ms,
            election_timeout_min: options.election_min_ms,
            election_timeout_max: options.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_logs),
            max_in_snapshot_log_to_keep: options.keep_logs,
            max_payload_entries: 64,
            snapshot_max_chunk_size: 4 << 20,
            install_snapshot_timeout: 5_000,
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| crate::Error::Config(e.to_string()))?,
        );
        let network = NetworkFactory {
            id: options.id,
            stats: snapshot_stats.clone(),
            security: options.security.clone(),
        };
        let raft = Raft::new(options.id, config, network, log, sm)
            .await
            .map_err(|e| crate::Error::Config(e.to_string()))?;
        let disk = DiskGuard::new(options.id, options.data_dir.clone(), options.min_free_disk);
        let node = Arc::new(RaftNode {
            id: options.id,
            raft,
            state,
            node_store,
            options,
            committed,
            log_stats,
            snapshot_store,
            snapshot_stats,
            peers: Mutex::new(HashMap::new()),
            disk,
        });
        node.bootstrap().await?;
        Ok(node)
    }

    /// A fresh node listed in the initial peers forms the cluster with them.
    /// Every such node does so with the same member list, which openraft
    /// documents as safe. A node that is not listed waits to be added.
    async fn bootstrap(&self) -> crate::Result<()> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| crate::Error::Config(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        if self.options.join || !self.options.peers.contains_key(&self.id) {
            tracing::info!("waiting to be added to a cluster (bifrostctl member add)");
            return Ok(());
        }
        let members = self.options.peers.clone();
        match self.raft.initialize(members).await {
            Ok(()) => tracing::info!(peers = ?self.options.peers, "initialized a new cluster"),
            Err(e) => tracing::info!(error = %e, "cluster already initialized"),
        }
        Ok(())
    }

    /// The free-space check of this node's data directory.
    pub fn disk(&self) -> &DiskGuard {
        &self.disk
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The replicated state as applied on this node (possibly behind the
    /// leader: use [`RaftNode::read_barrier`] first for a consistent read).
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// This node's own store: its Raft log, vote and outbox.
    pub fn node_store(&self) -> &NodeStore {
        &self.node_store
    }

    /// The options this node was started with.
    pub fn options(&self) -> &NodeOptions {
        &self.options
    }

    /// Append and fsync counters of the Raft log (for metrics).
    pub fn log_stats(&self) -> &crate::log_store::LogStats {
        &self.log_stats
    }

    /// Snapshot transfers this node sent and received (for metrics).
    pub fn snapshot_stats(&self) -> &SnapshotStats {
        &self.snapshot_stats
    }

    /// The store of snapshot files, for the transfer's receiving side.
    pub(crate) fn snapshot_store(&self) -> &Store {
        &self.snapshot_store
    }

    /// openraft's current view: term, role, leader, log indexes, membership.
    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// The openraft handle, for the Raft transport's server side.
    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The current leader's id and addresses, if known.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let member = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, member))
    }

    /// Highest log index known to be committed.
    pub fn commit_index(&self) -> u64 {
        self.committed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Members with their roles.
    pub fn members(&self) -> Vec<MemberInfo> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| MemberInfo {
                id: *id,
                addr: n.api.clone(),
                peer: n.peer.clone(),
                role: if Some(*id) == m.current_leader {
                    "leader".into()
                } else if voters.contains(id) {
                    "follower".into()
                } else {
                    "learner".into()
                },
            })
            .collect()
    }

    async fn wait_leader(&self, deadline: Instant) -> Result<(NodeId, Member), ProposeError> {
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProposeError::Unavailable(
                    "no leader elected; is a majority of nodes up?".into(),
                ));
            }
            let _ = tokio::time::timeout(left, rx.changed()).await;
        }
    }

    async fn peer(&self, addr: &str) -> Result<RaftInternalClient<Channel>, ProposeError> {
        let mut peers = self.peers.lock().await;
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let c = peer_client(addr, &self.options.security).map_err(ProposeError::Unavailable)?;
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Runs `work` here if this node leads, else on the leader.
    async fn route(&self, work: Forwarded) -> Result<ForwardReply, ProposeError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut hint: Option<(NodeId, Member)> = None;
        loop {
            let (leader, member) = match hint.take() {
                Some(h) => h,
                None => self.wait_leader(deadline).await?,
            };
            let result = if leader == self.id {
                self.execute_local(work.clone()).await
            } else {
                let addr = &member.peer;
                let mut client = self.peer(addr).await?;
                let mut req = tonic::Request::new(payload(&work));
                req.set_timeout(Duration::from_secs(30));
                match client.propose(req).await {
                    Ok(reply) => unpayload::<Result<ForwardReply, ProposeError>>(reply.get_ref())
                        .map_err(|s| ProposeError::Fatal(s.message().to_string()))?,
                    Err(s) => Err(ProposeError::Unavailable(format!(
                        "leader {leader} at {addr}: {}",
                        s.message()
                    ))),
                }
            };
            match result {
                Err(ProposeError::NotLeader { leader }) if Instant::now() < deadline => {
                    hint = leader;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(ProposeError::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// Runs forwarded work on this node, which must be the leader.
    pub async fn execute_local(&self, work: Forwarded) -> Result<ForwardReply, ProposeError> {
        match work {
            Forwarded::Write(cmd) => {
                self.disk.admit(&cmd)?;
                match self.raft.client_write(cmd).await {
                    Ok(r) => Ok(ForwardReply::Written(r.data)),
                    Err(e) => Err(self.map_write_error(e)),
                }
            }
            Forwarded::AddMember {
                id,
                addr,
                learner_only,
            } => {
                self.raft
                    .add_learner(id, addr, true)
                    .await
                    .map_err(|e| self.map_write_error(e))?;
                if !learner_only {
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                        .await
                        .map_err(|e| self.map_write_error(e))?;
                }
                Ok(ForwardReply::Members(self.members()))
            }
            Forwarded::RemoveMember { id } => {
                let m = self.raft.metrics().borrow().clone();
                let membership = m.membership_config.membership();
                if membership.get_node(&id).is_none() {
                    return Err(ProposeError::Membership(format!(
                        "node {id} is not a member"
                    )));
                }
                if membership.voter_ids().any(|v| v == id) {
                    self.raft
                        .change_membership(ChangeMembers::RemoveVoters([id].into()), false)
                        .await
                        .map_err(|e| self.map_write_error(e))?;
                }
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes([id].into()), false)
                    .await
                    .map_err(|e| self.map_write_error(e))?;
                Ok(ForwardReply::Members(self.members()))
            }
        }
    }

    fn map_write_error(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, Member>>,
    ) -> ProposeError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader {
                leader: f.leader_id.zip(f.leader_node),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                ProposeError::Membership(c.to_string())
            }
            RaftError::Fatal(f) => ProposeError::Fatal(f.to_string()),
        }
    }

    /// Commits `cmd` through the leader and returns what applying it produced.
    #[tracing::instrument(name = "propose", skip_all, fields(command = cmd.kind()))]
    pub async fn propose(&self, cmd: Command) -> Result<Response, ProposeError> {
        self.disk.admit(&cmd)?;
        match self.route(Forwarded::Write(cmd)).await? {
            ForwardReply::Written(r) => Ok(r),
            ForwardReply::Members(_) => {
                Err(ProposeError::Fatal("unexpected reply to a write".into()))
            }
        }
    }

    /// Adds a node as a learner and, unless `learner_only`, then as a voter.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: Member,
        learner_only: bool,
    ) -> Result<Vec<MemberInfo>, ProposeError> {
        match self
            .route(Forwarded::AddMember {
                id,
                addr,
                learner_only,
            })
            .await?
        {
            ForwardReply::Members(m) => Ok(m),
            ForwardReply::Written(_) => Err(ProposeError::Fatal("unexpected reply".into())),
        }
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<Vec<MemberInfo>, ProposeError> {
        match self.route(Forwarded::RemoveMember { id }).await? {
            ForwardReply::Members(m) => Ok(m),
            ForwardReply::Written(_) => Err(ProposeError::Fatal("unexpected reply".into())),
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the log
    /// id a linearizable read must wait for.
    pub async fn local_read_index(&self) -> Result<Option<LogId>, ProposeError> {
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(read),
            Err(RaftError::APIError(e)) => match e {
                openraft::error::CheckIsLeaderError::ForwardToLeader(f) => {
                    Err(ProposeError::NotLeader {
                        leader: f.leader_id.zip(f.leader_node),
                    })
                }
                openraft::error::CheckIsLeaderError::QuorumNotEnough(q) => Err(
                    ProposeError::Unavailable(format!("leader cannot reach a quorum: {q}")),
                ),
            },
            Err(RaftError::Fatal(f)) => Err(ProposeError::Fatal(f.to_string())),
        }
    }

    /// Waits until a read at `consistency` may be served from this node.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), ProposeError> {
        if consistency == Consistency::Local {
            return Ok(());
        }
        if consistency == Consistency::Leader {
            if !self.is_leader() {
                return Err(ProposeError::NotLeader {
                    leader: self.leader(),
                });
            }
            // Everything this leader has committed is applied first.
            let committed = self.commit_index();
            return self
                .raft
                .wait(Some(LEADER_WAIT))
                .applied_index_at_least(Some(committed), "leader read")
                .await
                .map(|_| ())
                .map_err(|e| {
                    ProposeError::Unavailable(format!("waiting to apply up to {committed}: {e}"))
                });
        }
        let deadline = Instant::now() + LEADER_WAIT;
        let read = loop {
            let (leader, member) = self.wait_leader(deadline).await?;
            let res = if leader == self.id {
                self.local_read_index().await
            } else {
                let addr = &member.peer;
                let mut client = self.peer(addr).await?;
                let mut req = tonic::Request::new(payload(&()));
                req.set_timeout(Duration::from_secs(5));
                match client.read_index(req).await {
                    Ok(r) => unpayload::<Result<Option<LogId>, ProposeError>>(r.get_ref())
                        .map_err(|s| ProposeError::Fatal(s.message().to_string()))?,
                    Err(s) => Err(ProposeError::Unavailable(format!(
                        "leader {leader} at {addr}: {}",
                        s.message()
                    ))),
                }
            };
            match res {
                Ok(r) => break r,
                Err(ProposeError::NotLeader { .. }) | Err(ProposeError::Unavailable(_))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => return Err(e),
            }
        };
        if let Some(read) = read {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            self.raft
                .wait(Some(left))
                .applied_index_at_least(Some(read.index), "read barrier")
                .await
                .map_err(|e| {
                    ProposeError::Unavailable(format!("waiting to apply up to {}: {e}", read.index))
                })?;
        }
        Ok(())
    }

    /// Addresses of member `id`, if it is one.
    pub fn member(&self, id: NodeId) -> Option<Member> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// Whether this node has a membership yet (it has none until it is
    /// bootstrapped or added to a cluster).
    pub fn has_membership(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let has = m.membership_config.membership().nodes().next().is_some();
        has
    }

    /// Stops openraft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
