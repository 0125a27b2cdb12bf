//! The Raft log and vote over [`NodeStore`], with group commit.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use bifrost_storage::codec::{decode, encode};
use bifrost_storage::{NodeStore, StateStore};

use crate::installs::Installs;
use crate::state_machine::StateMachine;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, Vote};

use crate::{storage_err, Entry, LogId, NodeId, StorageError, TypeConfig};

pub(crate) const META_VOTE: &str = "vote";
pub(crate) const META_PURGED: &str = "last_purged";
pub(crate) const META_COMMITTED: &str = "committed";

/// Most bytes of log entries returned for one replication request. openraft
/// 0.9 gives an AppendEntries one heartbeat interval to complete and sends
/// heartbeats on the same stream, so a message must cross the network, be
/// written and fsynced on a busy follower well within it: an overloaded
/// cluster then replicates in more, smaller steps instead of timing out,
/// retrying and losing its leader. (Compact polled records make 1 MiB about
/// 150,000 readings; 256 KiB about 40,000.)
const MAX_REPLICATION_BYTES: usize = 256 << 10;

/// Log store of one node. Clones share the database and the flusher.
#[derive(Clone)]
pub struct LogStore {
    node: NodeStore,
    /// Synced before logs are purged, so applied state never lags the purge point.
    state: StateStore,
    /// A purge past the applied state waits for an install under way.
    installs: Arc<Installs>,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
    /// Declared after `flusher`, whose last sender ends the thread.
    _flusher_thread: Arc<FlusherThread>,
    /// Latest committed index openraft reported, for status and metrics.
    committed: Arc<AtomicU64>,
    stats: Arc<LogStats>,
}

/// Counters that show how well appends are grouped into fsyncs.
#[derive(Debug, Default)]
pub struct LogStats {
    /// `append` calls (each one or more entries).
    pub appends: AtomicU64,
    /// WAL fsyncs made by the flusher; appends / fsyncs is the grouping factor.
    pub fsyncs: AtomicU64,
}

impl LogStore {
    /// Wraps `node`, the log of state machine `sm`, and starts its flusher
    /// thread, which lives as long as any clone of this store.
    pub fn new(node: NodeStore, sm: &StateMachine) -> LogStore {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let flush_node = node.clone();
        let stats = Arc::new(LogStats::default());
        let flush_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || flusher(flush_node, rx, flush_stats))
            .expect("spawn flusher thread");
        LogStore {
            node,
            state: sm.store().clone(),
            installs: sm.installs(),
            flusher: tx,
            _flusher_thread: Arc::new(FlusherThread(Some(thread))),
            committed: Arc::new(AtomicU64::new(0)),
            stats,
        }
    }

    /// Append and fsync counters.
    pub fn stats(&self) -> Arc<LogStats> {
        self.stats.clone()
    }

    /// Shared view of the latest committed log index.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn read_entries(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let raw = self
            .node
            .log_range(start, end)
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let mut out = Vec::with_capacity(raw.len());
        let mut bytes = 0;
        for (index, b) in raw {
            bytes += b.len();
            out.push(read_entry(index, &b)?);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Returns once the applied state reaches `upto`, if a snapshot install
    /// under way is to bring it there (see `installs`).
    async fn wait_applied(&self, upto: &LogId) -> Result<(), StorageError> {
        let covered = || {
            let applied = self.state.applied();
            let applied: Option<Option<LogId>> = applied.and_then(|b| decode(&b).ok());
            applied.flatten().is_some_and(|a| a.index >= upto.index)
        };
        self.installs.wait_covered(covered).await.map_err(|e| {
            let e = format!("purging the log up to {upto} past the applied state: {e}");
            storage_err(ErrorSubject::Logs, ErrorVerb::Delete, e)
        })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        match self
            .node
            .get_meta(key)
            .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Read, e))?
        {
            None => Ok(None),
            Some(b) => {
                Ok(Some(decode(&b).map_err(|e| {
                    storage_err(ErrorSubject::Store, ErrorVerb::Read, e)
                })?))
            }
        }
    }
}

/// The flusher thread, joined once the last clone of the store is gone:
/// its copy of the log database must be closed before the process exits,
/// or RocksDB aborts it ("pthread lock: Invalid argument") as its static
/// objects are torn down under a database still closing.
struct FlusherThread(Option<std::thread::JoinHandle<()>>);

impl Drop for FlusherThread {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// Acknowledges appends after one WAL fsync for all of those queued.
fn flusher(node: NodeStore, rx: mpsc::Receiver<LogFlushed<TypeConfig>>, stats: Arc<LogStats>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let result = node.sync();
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        for cb in waiting {
            cb.log_io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
        }
    }
}

fn range_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = range_bounds(&range);
        self.read_entries(start, end, usize::MAX)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(start, end, MAX_REPLICATION_BYTES)
    }
}

/// Decodes log entry `index`. An entry this code cannot read (a command
/// a newer release added, a newer encoding) stops the node with an error
/// saying so, rather than being misread or skipped.
pub(crate) fn read_entry(index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    decode(bytes).map_err(|e| {
        let e = format!(
            "log entry {index} cannot be read by Bifrost {}: {e}. A newer release wrote it? \
             Upgrade this node to the release the others run (docs/operations.md, Upgrade)",
            env!("CARGO_PKG_VERSION")
        );
        storage_err(ErrorSubject::Logs, ErrorVerb::Read, e)
    })
}

/// Seeds the empty log of node `id`, whose state was set to hold every
/// entry up to `upto` (a restored backup): the log starts after `upto`,
/// which counts as committed, and the node has voted for itself in
/// `upto`'s term, so that the next leader's term is a later one and its
/// entries follow `upto` in log id order.
pub(crate) fn seed_after(node: &NodeStore, id: NodeId, upto: LogId) -> bifrost_storage::Result<()> {
    node.put_meta(META_COMMITTED, &encode(&Some(upto)), false)?;
    node.purge_log(upto.index, META_PURGED, &encode(&upto))?;
    let vote = Vote::new(upto.leader_id.term, id);
    node.put_meta(META_VOTE, &encode(&vote), true)
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.meta(META_PURGED)?;
        let last = self
            .node
            .log_last()
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            Some((index, bytes)) => Some(read_entry(index, &bytes)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        // Synced: a vote must never be forgotten, or a node could vote twice in a term.
        self.node
            .put_meta(META_VOTE, &encode(vote), true)
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(META_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        self.node
            .put_meta(META_COMMITTED, &encode(&committed), false)
            .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let c = self.meta::<Option<LogId>>(META_COMMITTED)?.flatten();
        if let Some(c) = c {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        Ok(c)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.node
            .append_log(entries.into_iter().map(|e| (e.log_id.index, encode(&e))))
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        // Readable now; durable (and acknowledged) after the flusher's next fsync.
        if let Err(mpsc::SendError(cb)) = self.flusher.send(callback) {
            cb.log_io_completed(Err(std::io::Error::other("log flusher stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.node
            .truncate_log(log_id.index)
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.wait_applied(&log_id).await?;
        self.state
            .sync()
            .map_err(|e| storage_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        self.node
            .purge_log(log_id.index, META_PURGED, &encode(&log_id))
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    #[test]
    fn an_entry_a_newer_release_wrote_is_refused_saying_so() {
        let log_id = LogId::new(CommittedLeaderId::new(2, 1), 7);
        // A command variant this code does not have, as a newer release
        // appends one: version byte, log id, payload `Normal`, variant 200.
        let mut unknown = vec![bifrost_storage::codec::VERSION];
        unknown.extend(postcard::to_stdvec(&log_id).unwrap());
        unknown.extend([1, 0xC8, 0x01, 0]);
        let e = read_entry(7, &unknown).unwrap_err().to_string();
        assert!(e.contains("log entry 7 cannot be read"), "{e}");
        assert!(e.contains("newer release"), "{e}");

        // A newer encoding altogether.
        let mut newer = encode(&Entry {
            log_id,
            payload: openraft::EntryPayload::Blank,
        });
        newer[0] = bifrost_storage::codec::VERSION + 1;
        let e = read_entry(7, &newer).unwrap_err().to_string();
        assert!(e.contains("a newer Bifrost writes"), "{e}");

        // What this release writes reads back.
        newer[0] = bifrost_storage::codec::VERSION;
        assert_eq!(read_entry(7, &newer).unwrap().log_id, log_id);
    }

    #[test]
    fn the_log_database_is_closed_once_the_last_clone_of_the_store_drops() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(&dir.path().join("state")).unwrap();
        let sm = StateMachine::new(state, &dir.path().join("snapshots")).unwrap();
        for round in 0..20 {
            // RocksDB refuses to open a database this process holds open.
            let node = NodeStore::open(&dir.path().join("node"))
                .unwrap_or_else(|e| panic!("round {round}: the log is still open: {e}"));
            let log = LogStore::new(node, &sm);
            let clone = log.clone();
            drop(log);
            drop(clone);
        }
    }
}
