//! The replicated state machine over [`StateStore`], and its snapshots.
//!
//! A snapshot is a RocksDB checkpoint of the state database, kept as its
//! files in a content store (`snapshots/files/<hash>`) and a manifest
//! (`snapshots/<id>.manifest`, JSON: the Raft metadata and each file's
//! name, size and hash). Building one hard-links the checkpoint's SSTs into
//! the store and copies its few small other files; no byte of the history
//! is copied, and an SST already hashed for the previous snapshot is not
//! read again (`snapshot` says how). The leader ships a follower only the
//! files it lacks (`transfer`); the follower assembles a checkpoint from
//! its store and swaps its state directory for it. No snapshot is ever
//! held in memory.
//!
//! A received snapshot is published before the state is switched to it,
//! and the log store does not purge past the applied state while an
//! install is under way (`installs` says why).
//!
//! Two crash points (`bifrost_storage::crash`) sit in the snapshot paths:
//! `snapshot-build` once the checkpoint's files are in the store but the
//! snapshot is not yet published, and `snapshot-install` once a received
//! snapshot is published and the state switched to it, before openraft
//! purges the log it replaces. A restart must find a consistent node in
//! both.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bifrost_storage::codec::{decode, encode};
use bifrost_storage::crash;
use bifrost_storage::{ApplyBatch, Rejection, StateStore};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome, Response, UserChange};
use crate::installs::Installs;
use crate::snapshot::{FileEntry, SnapshotData, Store};
use crate::{storage_err, Entry, LogId, NodeId, StorageError, TypeConfig};

pub(crate) type Membership = StoredMembership<NodeId, crate::Member>;
type Meta = SnapshotMeta<NodeId, crate::Member>;

/// A published snapshot: `<id>.manifest` in the snapshot directory.
#[derive(Clone, Serialize, Deserialize)]
struct SnapshotRecord {
    meta: Meta,
    files: Vec<FileEntry>,
}

/// What one committed write of the state machine did.
#[derive(Debug)]
pub struct Applied {
    /// Time spent applying, and how many log entries.
    pub took: std::time::Duration,
    pub entries: usize,
    /// Readings `prev_revision + 1 ..= revision` became visible. A snapshot
    /// install reports its jump the same way, without readings.
    pub prev_revision: u64,
    pub revision: u64,
    /// Those readings in revision order, when the listener wanted them at
    /// the time of the apply.
    pub readings: Option<Vec<bifrost_model::Reading>>,
}

/// Told about every committed write of the state machine, after it is
/// visible to readers. Called on the apply thread: it must not block.
pub trait ApplyListener: Send + Sync {
    /// Whether the next applies should collect their readings.
    fn wants_readings(&self) -> bool {
        false
    }
    fn applied(&self, applied: Applied);
}

pub type ApplyObserver = std::sync::Arc<dyn ApplyListener>;

/// The state machine of one node. Clones share everything.
#[derive(Clone)]
pub struct StateMachine {
    state: StateStore,
    snapshot_dir: PathBuf,
    /// The files of the published snapshot, and of snapshots being received.
    store: Store,
    /// Held from putting a snapshot's files into the store to publishing
    /// it: openraft builds snapshots in a task of their own, which may end
    /// while a received snapshot is installed.
    publishing: std::sync::Arc<std::sync::Mutex<()>>,
    seq: std::sync::Arc<AtomicU64>,
    observer: Option<ApplyObserver>,
    /// Told when a received snapshot is being installed, for the log store.
    installs: std::sync::Arc<Installs>,
}

/// Applies one change to users or sessions (see [`UserChange`]).
fn apply_user_change(
    batch: &mut ApplyBatch,
    change: UserChange,
    index: u64,
) -> Result<Outcome, Rejection> {
    match change {
        UserChange::Add { user } => batch.add_user(user, false, index).map(Outcome::User),
        UserChange::Bootstrap { user } => batch.add_user(user, true, index).map(Outcome::User),
        UserChange::Delete { name } => batch.delete_user(&name).map(|_| Outcome::Deleted),
        UserChange::ChangeGrants { name, add, remove } => batch
            .change_grants(&name, add, remove, index)
            .map(Outcome::User),
        UserChange::SetPassword {
            name,
            password_hash,
        } => batch
            .set_password(&name, password_hash, index)
            .map(Outcome::User),
        UserChange::StartSession { session, now_us } => {
            batch.start_session(session, now_us).map(|_| Outcome::None)
        }
        UserChange::EndSession { token_hash } => {
            Ok(Outcome::SessionsEnded(batch.end_session(token_hash)))
        }
        UserChange::EndSessions { name } => batch.end_sessions(&name).map(Outcome::SessionsEnded),
    }
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    storage_err(ErrorSubject::StateMachine, verb, e)
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    storage_err(ErrorSubject::Snapshot(None), verb, e)
}

fn snap_read(e: impl std::fmt::Display) -> StorageError {
    snap_err(ErrorVerb::Read, e)
}

fn snap_write(e: impl std::fmt::Display) -> StorageError {
    snap_err(ErrorVerb::Write, e)
}

/// The manifest file of the snapshot `id` in `dir`.
fn manifest_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.manifest"))
}

impl StateMachine {
    /// `snapshot_dir` holds the published snapshot and the store of its
    /// files. Leftovers of an interrupted build or transfer, and tar
    /// snapshots of older versions, are removed here (openraft builds a
    /// snapshot at start when the log is purged and none is offered).
    pub fn new(state: StateStore, snapshot_dir: &Path) -> io::Result<StateMachine> {
        std::fs::create_dir_all(snapshot_dir)?;
        for entry in std::fs::read_dir(snapshot_dir)? {
            let p = entry?.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let ext = p.extension().and_then(|e| e.to_str());
            if name.starts_with("tmp-") || name.starts_with("incoming-") {
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            } else if matches!(ext, Some("tar") | Some("meta") | Some("tmp")) {
                std::fs::remove_file(&p)?;
            }
        }
        let store = Store::open(&snapshot_dir.join("files"))?;
        let now = bifrost_model::now_us().max(0) as u64;
        let sm = StateMachine {
            state,
            snapshot_dir: snapshot_dir.to_path_buf(),
            store,
            publishing: std::sync::Arc::default(),
            seq: std::sync::Arc::new(AtomicU64::new(now)),
            observer: None,
            installs: std::sync::Arc::default(),
        };
        // Files of a build or an install that died before publishing.
        let records = sm.records()?;
        sm.store.retain(records.iter().flat_map(|r| &r.files))?;
        Ok(sm)
    }

    /// Reports each applied batch to `observer`.
    pub fn with_observer(mut self, observer: Option<ApplyObserver>) -> StateMachine {
        self.observer = observer;
        self
    }

    pub fn store(&self) -> &StateStore {
        &self.state
    }

    /// The store of snapshot files (what a sender asks this node about).
    pub fn snapshot_store(&self) -> &Store {
        &self.store
    }

    /// What this state machine's log store waits on before a purge.
    pub(crate) fn installs(&self) -> std::sync::Arc<Installs> {
        self.installs.clone()
    }

    fn unique(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn applied_log_id(&self) -> Result<Option<LogId>, StorageError> {
        match self.state.applied() {
            None => Ok(None),
            Some(b) => decode(&b).map_err(|e| sm_err(ErrorVerb::Read, e)),
        }
    }

    fn stored_membership(&self) -> Result<Membership, StorageError> {
        match self.state.membership() {
            None => Ok(Membership::default()),
            Some(b) => decode(&b).map_err(|e| sm_err(ErrorVerb::Read, e)),
        }
    }

    /// Every published snapshot on disk (normally one).
    fn records(&self) -> io::Result<Vec<SnapshotRecord>> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.snapshot_dir)? {
            let p = entry?.path();
            if p.extension().and_then(|e| e.to_str()) != Some("manifest") {
                continue;
            }
            let rec: SnapshotRecord = serde_json::from_slice(&std::fs::read(&p)?)
                .map_err(|e| io::Error::other(format!("{}: {e}", p.display())))?;
            records.push(rec);
        }
        Ok(records)
    }

    /// The newest published snapshot that the state holds, if any. A
    /// snapshot past the applied state was published by an install that
    /// died before switching the state: it is not this node's yet.
    fn latest_snapshot(&self) -> io::Result<Option<SnapshotRecord>> {
        let applied = self
            .applied_log_id()
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(self
            .records()?
            .into_iter()
            .filter(|r| r.meta.last_log_id <= applied)
            .max_by(|a, b| a.meta.last_log_id.cmp(&b.meta.last_log_id)))
    }

    /// Publishes `rec`, whose files are in the store, and removes older
    /// snapshots and the files only they listed.
    fn publish_snapshot(&self, rec: &SnapshotRecord) -> io::Result<()> {
        self.store.sync()?;
        let path = manifest_path(&self.snapshot_dir, &rec.meta.snapshot_id);
        let tmp = path.with_extension("manifest.tmp");
        std::fs::write(&tmp, serde_json::to_vec(rec).map_err(io::Error::other)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.snapshot_dir)?.sync_all()?;
        for entry in std::fs::read_dir(&self.snapshot_dir)? {
            let p = entry?.path();
            if p != path && p.extension().and_then(|e| e.to_str()) == Some("manifest") {
                std::fs::remove_file(&p)?;
            }
        }
        self.store.retain(&rec.files)?;
        Ok(())
    }

    /// The published snapshot `rec` as openraft sees it.
    fn snapshot_of(&self, rec: SnapshotRecord) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: rec.meta,
            snapshot: Box::new(SnapshotData {
                files: rec.files,
                store: self.store.clone(),
                incoming: None,
            }),
        }
    }

    /// Takes a checkpoint under `work`, puts its files into the store and
    /// publishes it. Blocking.
    fn build(&self, n: u64, work: &Path) -> Result<SnapshotRecord, StorageError> {
        std::fs::create_dir_all(work).map_err(snap_write)?;
        let cp = work.join("checkpoint");
        self.state.checkpoint(&cp).map_err(snap_write)?;
        // The checkpoint's own metadata says exactly what it contains, even
        // if entries were applied while it was taken.
        let Held {
            applied: last_log_id,
            membership: last_membership,
            ..
        } = checkpoint_ids(&cp)?;
        let snapshot_id = match &last_log_id {
            Some(l) => format!(
                "{}-{}-{}-{n}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("0-0-0-{n}"),
        };
        let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.latest_snapshot().map_err(snap_read)?;
        if let Some(newer) = previous
            .as_ref()
            .filter(|p| p.meta.last_log_id > last_log_id)
        {
            // A snapshot received while this one was taken: it stays.
            std::fs::remove_dir_all(work).map_err(snap_write)?;
            return Ok(newer.clone());
        }
        let previous = previous.map(|r| r.files).unwrap_or_default();
        let files = self.store.describe(&cp, &previous).map_err(snap_write)?;
        for f in &files {
            self.store.put(&cp.join(&f.name), f).map_err(snap_write)?;
        }
        crash::point("snapshot-build");
        let rec = SnapshotRecord {
            meta: Meta {
                last_log_id,
                last_membership,
                snapshot_id,
            },
            files,
        };
        self.publish_snapshot(&rec).map_err(snap_write)?;
        std::fs::remove_dir_all(work).map_err(snap_write)?;
        Ok(rec)
    }

    /// Builds and publishes a snapshot of the state as it is now (a state
    /// seeded from a backup, which no log entry led to). Blocking.
    pub(crate) fn publish_current(&self) -> Result<(), StorageError> {
        let n = self.unique();
        self.build(n, &self.snapshot_dir.join(format!("tmp-{n}")))
            .map(|_| ())
    }

    /// Installs the received snapshot `data`: puts its files into the
    /// store (their hashes were checked as they arrived), assembles a
    /// checkpoint from the store under `work`, checks it holds what `meta`
    /// says, publishes it and switches the state to it. Published first:
    /// once the state is switched, a crash must find a snapshot covering it
    /// (openraft starts a node only if its log's purge point does not pass
    /// its current snapshot), and one published but not installed is
    /// ignored (see `latest_snapshot`). Blocking.
    fn install_data(
        &self,
        meta: &Meta,
        data: &SnapshotData,
        work: &Path,
    ) -> Result<(), StorageError> {
        crate::snapshot::check_files(&data.files).map_err(snap_read)?;
        let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        for f in &data.files {
            self.store.put(&data.path(f), f).map_err(snap_read)?;
        }
        let dir = work.join("checkpoint");
        self.store.assemble(&data.files, &dir).map_err(snap_read)?;
        let applied = checkpoint_ids(&dir)?.applied;
        if applied != meta.last_log_id {
            return Err(snap_read(format!(
                "snapshot {} holds state up to {applied:?}, its metadata says {:?}",
                meta.snapshot_id, meta.last_log_id
            )));
        }
        let rec = SnapshotRecord {
            meta: meta.clone(),
            files: data.files.clone(),
        };
        self.publish_snapshot(&rec).map_err(snap_write)?;
        let prev_revision = self.state.revision();
        self.state
            .install(&dir)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        crash::point("snapshot-install");
        if let Some(obs) = &self.observer {
            obs.applied(Applied {
                took: std::time::Duration::ZERO,
                entries: 0,
                prev_revision,
                revision: self.state.revision(),
                readings: None,
            });
        }
        std::fs::remove_dir_all(work).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    fn apply_one(
        batch: &mut bifrost_storage::ApplyBatch,
        index: u64,
        cmd: Command,
    ) -> Result<Response, StorageError> {
        let result = match cmd {
            Command::PutDevice {
                device,
                create_only,
                expected_revision,
            } => batch
                .put_device(device, create_only, expected_revision, index)
                .map(Outcome::Device),
            Command::DeleteDevice { name } => batch.delete_device(&name).map(|_| Outcome::Deleted),
            Command::PutTag {
                tag,
                create_only,
                expected_revision,
            } => batch
                .put_tag(tag, create_only, expected_revision, index)
                .map(Outcome::Tag),
            Command::DeleteTag { name } => batch.delete_tag(&name, true).map(|_| Outcome::Deleted),
            Command::RetireTag { name } => batch.delete_tag(&name, false).map(|_| Outcome::Deleted),
            Command::Readings { readings } => batch
                .insert_readings(readings, false)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?
                .map(Outcome::Ingested),
            Command::Ingest { batch: bytes } => batch
                .insert_ingested(&bytes)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?
                .map(Outcome::Ingested),
            Command::IngestPartly { batch: bytes } => batch
                .insert_ingested_partly(&bytes)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?
                .map(|(outcome, rejected)| Outcome::IngestedPartly { outcome, rejected }),
            Command::Polled { node: _, readings } => batch
                .insert_readings(readings, true)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?
                .map(Outcome::Ingested),
            Command::PolledRecords {
                origin,
                floor,
                records,
            } => Ok(Outcome::Ingested(
                batch.insert_polled(&origin, floor, records),
            )),
            Command::Assign { changes } => {
                for (device, node) in changes {
                    // A device deleted since the leader decided is skipped.
                    if let Err(e) = batch.assign(&device, node, index) {
                        tracing::debug!(%device, error = %e, "assignment skipped");
                    }
                }
                Ok(Outcome::None)
            }
            Command::Import { devices, tags } => batch
                .import(devices, tags, index)
                .map(|(devices, tags)| Outcome::Imported { devices, tags }),
            Command::SetRetention { seconds } => {
                batch.set_retention(seconds);
                Ok(Outcome::None)
            }
            Command::Users(change) => apply_user_change(batch, change, index),
            Command::Audit { record, now_us } => {
                batch.add_audit(record, index, now_us);
                Ok(Outcome::None)
            }
            Command::SetAuditRetention { seconds } => {
                batch.set_audit_retention(seconds);
                Ok(Outcome::None)
            }
            Command::Once {
                request_id,
                command,
            } => {
                if matches!(*command, Command::Once { .. } | Command::Compact { .. }) {
                    Err(Rejection::invalid(format!(
                        "request '{request_id}': a {} command cannot be wrapped",
                        command.kind()
                    )))
                } else if let Some(bytes) = batch
                    .request_result(
                        &request_id,
                        index.saturating_sub(crate::command::REMEMBER_REQUESTS),
                    )
                    .map_err(|e| sm_err(ErrorVerb::Read, e))?
                {
                    // Applied before: answer as the first time.
                    let first: Result<Outcome, Rejection> =
                        decode(&bytes).map_err(|e| sm_err(ErrorVerb::Read, e))?;
                    first
                } else {
                    let r = StateMachine::apply_one(batch, index, *command)?;
                    batch
                        .remember_request(
                            &request_id,
                            index,
                            encode(&r.result),
                            index.saturating_sub(crate::command::REMEMBER_REQUESTS),
                        )
                        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                    r.result
                }
            }
            Command::Compact { below_revision } => {
                let removed = batch
                    .compact(below_revision)
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                Ok(Outcome::Compacted {
                    removed,
                    oldest_revision: batch.oldest_revision(),
                })
            }
        };
        Ok(Response { result, index })
    }
}

/// What a checkpoint holds: its applied log id, its membership and the
/// highest revision of a reading in it.
pub(crate) struct Held {
    pub applied: Option<LogId>,
    pub membership: Membership,
    pub revision: u64,
}

/// Reads what the checkpoint `dir` holds; one in a format this code does
/// not read is refused, saying so, before anything uses it.
pub(crate) fn checkpoint_ids(dir: &Path) -> Result<Held, StorageError> {
    let r = |e: String| snap_read(format!("{}: {e}", dir.display()));
    let meta = StateStore::checkpoint_meta(dir).map_err(|e| r(e.to_string()))?;
    if meta.format != bifrost_storage::FORMAT {
        let who = match meta.format > bifrost_storage::FORMAT {
            true => "a newer Bifrost: upgrade this node to the release the others run",
            false => "an older Bifrost",
        };
        return Err(r(format!(
            "it holds state in format {}, written by {who}; this one reads format {}",
            meta.format,
            bifrost_storage::FORMAT
        )));
    }
    let applied = match meta.applied {
        Some(b) => decode(&b).map_err(|e| r(e.to_string()))?,
        None => None,
    };
    let membership = match meta.membership {
        Some(b) => decode(&b).map_err(|e| r(e.to_string()))?,
        None => Membership::default(),
    };
    Ok(Held {
        applied,
        membership,
        revision: meta.revision,
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let n = self.unique();
        let work = self.snapshot_dir.join(format!("tmp-{n}"));
        let this = self.clone();
        let started = std::time::Instant::now();
        let rec = tokio::task::spawn_blocking(move || this.build(n, &work))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))??;
        tracing::info!(
            snapshot = %rec.meta.snapshot_id,
            files = rec.files.len(),
            bytes = rec.files.iter().map(|f| f.size).sum::<u64>(),
            took_ms = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(self.snapshot_of(rec))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.applied_log_id()?, self.stored_membership()?))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(vec![]);
        };
        let state = self.state.clone();
        let observer = self.observer.clone();
        let started = std::time::Instant::now();
        // RocksDB calls block; keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let new_batch = || {
                let mut b = state.batch();
                if observer.as_ref().is_some_and(|o| o.wants_readings()) {
                    b.collect_readings();
                }
                b
            };
            let finish = |batch: bifrost_storage::ApplyBatch, n: usize| {
                let c = batch.commit().map_err(|e| sm_err(ErrorVerb::Write, e))?;
                if let Some(obs) = &observer {
                    obs.applied(Applied {
                        took: started.elapsed(),
                        entries: n,
                        prev_revision: c.prev_revision,
                        revision: c.revision,
                        readings: c.readings,
                    });
                }
                Ok::<_, StorageError>(())
            };
            let mut batch = new_batch();
            let mut in_batch: Option<LogId> = None;
            let mut batch_entries = 0;
            let mut out = Vec::with_capacity(entries.len());
            for entry in entries {
                let index = entry.log_id.index;
                // A compaction reads what is committed, so whatever this
                // batch holds so far is committed first, with its own
                // "applied" marker.
                if matches!(entry.payload, EntryPayload::Normal(Command::Compact { .. })) {
                    if let Some(prev) = in_batch.take() {
                        batch.set_applied(encode(&Some(prev)));
                        finish(std::mem::replace(&mut batch, new_batch()), batch_entries)?;
                        batch_entries = 0;
                    }
                }
                in_batch = Some(entry.log_id);
                batch_entries += 1;
                match entry.payload {
                    EntryPayload::Blank => out.push(Response {
                        result: Ok(Outcome::None),
                        index,
                    }),
                    EntryPayload::Normal(cmd) => {
                        out.push(StateMachine::apply_one(&mut batch, index, cmd)?)
                    }
                    EntryPayload::Membership(m) => {
                        batch.set_membership(encode(&Membership::new(Some(entry.log_id), m)));
                        out.push(Response {
                            result: Ok(Outcome::None),
                            index,
                        });
                    }
                }
            }
            batch.set_applied(encode(&Some(last)));
            finish(batch, batch_entries)?;
            Ok(out)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// An empty incoming directory for the transfer to fill (`transfer`
    /// does, with [`crate::snapshot::Incoming`]).
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        self.installs.begin();
        let dir = self
            .snapshot_dir
            .join(format!("incoming-{}", self.unique()));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, format!("{}: {e}", dir.display())))?;
        Ok(Box::new(SnapshotData {
            files: Vec::new(),
            store: self.store.clone(),
            incoming: Some(dir),
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let this = self.clone();
        let meta = meta.clone();
        let work = self.snapshot_dir.join(format!("tmp-{}", self.unique()));
        let result = tokio::task::spawn_blocking(move || {
            let result = this.install_data(&meta, &snapshot, &work);
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&work);
            }
            result
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))
        .and_then(|r| r);
        self.installs.end(result.is_ok());
        result
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let this = self.clone();
        let latest = tokio::task::spawn_blocking(move || this.latest_snapshot())
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(latest.map(|rec| self.snapshot_of(rec)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Incoming;
    use bifrost_model::{Device, Protocol};
    use bifrost_storage::RejectionKind;
    use openraft::CommittedLeaderId;

    fn device(name: &str, label: &str) -> Device {
        Device {
            retries: 0,
            enabled: false,
            labels: [("value".to_string(), label.to_string())].into(),
            ..Device::new(name, Protocol::ModbusTcp, "127.0.0.1:502")
        }
    }

    fn entry(index: u64, cmd: Command) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn once(id: &str, cmd: Command) -> Command {
        Command::Once {
            request_id: id.into(),
            command: Box::new(cmd),
        }
    }

    #[tokio::test]
    async fn a_retried_request_gets_its_first_result_and_is_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(&dir.path().join("state")).unwrap();
        let mut sm = StateMachine::new(state.clone(), &dir.path().join("snap")).unwrap();
        let create = |label: &str| Command::PutDevice {
            device: device("reg", label),
            create_only: true,
            expected_revision: None,
        };
        let cas = |label: &str, expected: u64| Command::PutDevice {
            device: device("reg", label),
            create_only: false,
            expected_revision: Some(expected),
        };
        // The same create twice in one apply batch (a retry that got in
        // behind its first attempt), then a create with another id.
        let out = sm
            .apply(vec![
                entry(1, once("a", create("1"))),
                entry(2, once("a", create("1"))),
                entry(3, once("b", create("1"))),
            ])
            .await
            .unwrap();
        let Ok(Outcome::Device(first)) = &out[0].result else {
            panic!("{:?}", out[0])
        };
        assert_eq!(first.revision, 1);
        assert_eq!(
            out[1].result, out[0].result,
            "the retry answers as the first"
        );
        let Err(e) = &out[2].result else {
            panic!("{:?}", out[2])
        };
        assert_eq!(e.kind, RejectionKind::AlreadyExists);
        // A compare-and-set retried in a later batch: still its first
        // (successful) answer, not a precondition failure, and applied once.
        let out = sm
            .apply(vec![entry(4, once("c", cas("2", 1)))])
            .await
            .unwrap();
        assert!(out[0].result.is_ok(), "{:?}", out[0]);
        let out = sm
            .apply(vec![
                entry(5, once("c", cas("2", 1))),
                entry(6, once("d", cas("3", 1))),
            ])
            .await
            .unwrap();
        let Ok(Outcome::Device(d)) = &out[0].result else {
            panic!("{:?}", out[0])
        };
        assert_eq!(d.revision, 4, "the result of entry 4");
        let Err(e) = &out[1].result else {
            panic!("{:?}", out[1])
        };
        assert_eq!(e.kind, RejectionKind::FailedPrecondition);
        let now = state.device("reg").unwrap();
        assert_eq!(now.revision, 4);
        assert_eq!(now.labels["value"], "2");
        // Wrapping what must not be wrapped is refused, deterministically.
        let out = sm
            .apply(vec![entry(7, once("e", once("f", create("x"))))])
            .await
            .unwrap();
        assert!(out[0].result.is_err());
    }

    #[tokio::test]
    async fn a_snapshot_published_past_the_applied_state_is_not_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(&dir.path().join("state")).unwrap();
        let mut sm = StateMachine::new(state, &dir.path().join("snap")).unwrap();
        let put = |name: &str| Command::PutDevice {
            device: device(name, "x"),
            create_only: true,
            expected_revision: None,
        };
        sm.apply(vec![entry(1, put("a")), entry(2, put("b"))])
            .await
            .unwrap();
        let built = sm.build_snapshot().await.unwrap();
        let (built, files) = (built.meta, built.snapshot.files);
        assert_eq!(built.last_log_id.map(|l| l.index), Some(2));
        let current = sm.get_current_snapshot().await.unwrap().unwrap().meta;
        assert_eq!(current, built);

        // An install that died after publishing its snapshot, before
        // switching the state: the snapshot covers entries not applied.
        let ahead = Meta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 9)),
            snapshot_id: "1-1-9-0".into(),
            ..built
        };
        sm.publish_snapshot(&SnapshotRecord { meta: ahead, files })
            .unwrap();
        assert!(
            sm.get_current_snapshot().await.unwrap().is_none(),
            "a snapshot past the applied index 2 was offered as current"
        );
    }

    /// A state machine over a fresh state in `dir`, with `n` devices
    /// applied as entries `1..=n`.
    async fn machine(dir: &Path, n: u64) -> StateMachine {
        let state = StateStore::open(&dir.join("state")).unwrap();
        let mut sm = StateMachine::new(state, &dir.join("snapshots")).unwrap();
        add_devices(&mut sm, 1..=n).await;
        sm
    }

    async fn add_devices(sm: &mut StateMachine, indexes: std::ops::RangeInclusive<u64>) {
        let entries = indexes
            .map(|i| {
                let put = Command::PutDevice {
                    device: device(&format!("d{i}"), "x"),
                    create_only: true,
                    expected_revision: None,
                };
                entry(i, put)
            })
            .collect::<Vec<_>>();
        sm.apply(entries).await.unwrap();
    }

    /// The bytes the leader would ship for the `shipped` files of `data`.
    fn shipped_bytes(data: &SnapshotData, shipped: &[String]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for f in data.files.iter().filter(|f| shipped.contains(&f.name)) {
            bytes.extend(std::fs::read(data.path(f)).unwrap());
        }
        bytes
    }

    /// Receives `snapshot` on `sm` as the transfer does, its bytes changed
    /// by `tamper` on the way; the snapshot as received, or the error.
    async fn receive(
        sm: &mut StateMachine,
        snapshot: &Snapshot<TypeConfig>,
        tamper: impl FnOnce(&mut Vec<u8>),
    ) -> std::io::Result<Box<SnapshotData>> {
        let files = &snapshot.snapshot.files;
        let lacking: Vec<String> = sm
            .snapshot_store()
            .lacking(files)
            .into_iter()
            .map(|f| f.name.clone())
            .collect();
        let mut bytes = shipped_bytes(&snapshot.snapshot, &lacking);
        tamper(&mut bytes);
        let mut data = sm.begin_receiving_snapshot().await.unwrap();
        let dir = data.incoming.clone().unwrap();
        let mut incoming = Incoming::new(&dir, &data.store, files, &lacking)?;
        for chunk in bytes.chunks(1000) {
            incoming.write(chunk)?;
        }
        incoming.finish()?;
        data.files = files.clone();
        Ok(data)
    }

    /// The largest file of a snapshot.
    fn largest(data: &SnapshotData) -> &FileEntry {
        data.files.iter().max_by_key(|f| f.size).unwrap()
    }

    async fn assert_nothing_installed(sm: &mut StateMachine) {
        assert_eq!(sm.applied_state().await.unwrap().0, None, "state changed");
        assert!(
            sm.get_current_snapshot().await.unwrap().is_none(),
            "a snapshot was published"
        );
        assert!(sm.store().device("d1").is_none(), "a device arrived");
    }

    #[tokio::test]
    async fn a_corrupt_received_file_is_refused_naming_it_and_nothing_is_installed() {
        let (l, f) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = machine(l.path(), 20).await;
        let snapshot = leader.build_snapshot().await.unwrap();
        let mut follower = machine(f.path(), 0).await;
        let target = largest(&snapshot.snapshot).clone();
        // The follower lacks every file: they arrive in the list's order.
        let offset: u64 = snapshot
            .snapshot
            .files
            .iter()
            .take_while(|f| f.name != target.name)
            .map(|f| f.size)
            .sum();
        let offset = offset as usize + target.size as usize / 2;
        let e = receive(&mut follower, &snapshot, |b| b[offset] ^= 1)
            .await
            .expect_err("a corrupt file was taken");
        assert!(e.to_string().contains(&target.name), "{e}");
        assert!(e.to_string().contains("hashes to"), "{e}");
        assert!(
            follower
                .snapshot_store()
                .lacking(&snapshot.snapshot.files)
                .len()
                == snapshot.snapshot.files.len(),
            "a file entered the store"
        );
        assert_nothing_installed(&mut follower).await;
    }

    #[tokio::test]
    async fn a_truncated_received_file_is_refused_naming_it_and_nothing_is_installed() {
        let (l, f) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = machine(l.path(), 20).await;
        let snapshot = leader.build_snapshot().await.unwrap();
        let mut follower = machine(f.path(), 0).await;
        let last = snapshot
            .snapshot
            .files
            .iter()
            .rfind(|f| f.size > 0)
            .unwrap();
        let e = receive(&mut follower, &snapshot, |b| b.truncate(b.len() - 1))
            .await
            .expect_err("a truncated stream was taken");
        assert!(e.to_string().contains(&last.name), "{e}");
        assert_nothing_installed(&mut follower).await;

        // A file cut short on disk after it arrived: the install refuses it.
        let mut data = receive(&mut follower, &snapshot, |_| {}).await.unwrap();
        let target = largest(&data).clone();
        let path = data.path(&target);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(target.size / 2)
            .unwrap();
        data.files = snapshot.snapshot.files.clone();
        let e = follower
            .install_snapshot(&snapshot.meta, data)
            .await
            .expect_err("a truncated file was installed");
        assert!(e.to_string().contains(&target.name), "{e}");
        assert_nothing_installed(&mut follower).await;
    }

    #[tokio::test]
    async fn a_follower_holding_the_previous_snapshot_lacks_only_the_new_files() {
        let (l, f) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = machine(l.path(), 20).await;
        let first = leader.build_snapshot().await.unwrap();
        let mut follower = machine(f.path(), 0).await;
        let data = receive(&mut follower, &first, |_| {}).await.unwrap();
        follower.install_snapshot(&first.meta, data).await.unwrap();
        assert!(follower.store().device("d20").is_some());
        assert_eq!(
            follower.get_current_snapshot().await.unwrap().unwrap().meta,
            first.meta
        );

        add_devices(&mut leader, 21..=40).await;
        let second = leader.build_snapshot().await.unwrap();
        let files = &second.snapshot.files;
        let lacking = follower.snapshot_store().lacking(files);
        let shared: Vec<&FileEntry> = files
            .iter()
            .filter(|f| first.snapshot.files.contains(f) && f.name.ends_with(".sst"))
            .collect();
        assert!(
            !shared.is_empty(),
            "the second snapshot shares no SST with the first"
        );
        assert!(
            shared.iter().all(|f| !lacking.contains(f)),
            "the follower lacks a file it received before"
        );
        // Built without copying: the store's SSTs are the live database's
        // very files.
        let live = leader.store().active_dir();
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        for f in files.iter().filter(|f| f.name.ends_with(".sst")) {
            if live.join(&f.name).exists() {
                assert_eq!(
                    ino(&live.join(&f.name)),
                    ino(&second.snapshot.path(f)),
                    "{} was copied",
                    f.name
                );
            }
        }
        let data = receive(&mut follower, &second, |_| {}).await.unwrap();
        follower.install_snapshot(&second.meta, data).await.unwrap();
        assert!(follower.store().device("d40").is_some());
        // Only the second snapshot's files are kept.
        let kept = std::fs::read_dir(f.path().join("snapshots/files"))
            .unwrap()
            .count();
        let hashes: std::collections::HashSet<&str> =
            files.iter().map(|f| f.hash.as_str()).collect();
        assert_eq!(kept, hashes.len());
    }
}
