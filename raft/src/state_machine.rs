//! The replicated state machine over [`StateStore`], and its snapshots.
//!
//! A snapshot is a RocksDB checkpoint of the state database (SST files
//! hard-linked, so taking it is cheap) packed into one tar file on disk. The
//! leader streams that file to a follower in chunks (openraft's chunked
//! transport reads it through [`SnapshotFile`]); the follower writes the
//! chunks to a file, unpacks it and swaps its state directory for it. No
//! snapshot is ever held in memory.
//!
//! A received snapshot is published before the state is switched to it,
//! and the log store does not purge past the applied state while an
//! install is under way (`installs` says why).
//!
//! Two crash points (`bifrost_storage::crash`) sit in the snapshot paths:
//! `snapshot-build` once the checkpoint is packed but not yet published,
//! and `snapshot-install` once a received snapshot is published and the
//! state switched to it, before openraft purges the log it replaces. A
//! restart must find a consistent node in both.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bifrost_storage::codec::{decode, encode};
use bifrost_storage::crash;
use bifrost_storage::{Rejection, StateStore};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::command::{Command, Outcome, Response};
use crate::installs::Installs;
use crate::{storage_err, Entry, LogId, NodeId, StorageError, TypeConfig};

type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// A snapshot on disk: a tar file of a state checkpoint.
pub struct SnapshotFile {
    pub path: PathBuf,
    file: tokio::fs::File,
}

impl SnapshotFile {
    async fn open(path: PathBuf) -> io::Result<SnapshotFile> {
        let file = tokio::fs::File::open(&path).await?;
        Ok(SnapshotFile { path, file })
    }
    async fn create(path: PathBuf) -> io::Result<SnapshotFile> {
        let file = tokio::fs::File::create(&path).await?;
        Ok(SnapshotFile { path, file })
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }
    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

/// Metadata kept beside each snapshot file (`<id>.meta`, JSON).
#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    meta: Meta,
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
    seq: std::sync::Arc<AtomicU64>,
    observer: Option<ApplyObserver>,
    /// Told when a received snapshot is being installed, for the log store.
    installs: std::sync::Arc<Installs>,
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    storage_err(ErrorSubject::StateMachine, verb, e)
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    storage_err(ErrorSubject::Snapshot(None), verb, e)
}

impl StateMachine {
    /// `snapshot_dir` holds built and received snapshots; leftovers of an
    /// interrupted build or transfer are removed here.
    pub fn new(state: StateStore, snapshot_dir: &Path) -> io::Result<StateMachine> {
        std::fs::create_dir_all(snapshot_dir)?;
        for entry in std::fs::read_dir(snapshot_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("tmp-") || name.starts_with("incoming-") {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(p)?;
                } else {
                    std::fs::remove_file(p)?;
                }
            }
        }
        let now = bifrost_model::now_us().max(0) as u64;
        Ok(StateMachine {
            state,
            snapshot_dir: snapshot_dir.to_path_buf(),
            seq: std::sync::Arc::new(AtomicU64::new(now)),
            observer: None,
            installs: std::sync::Arc::default(),
        })
    }

    /// Reports each applied batch to `observer`.
    pub fn with_observer(mut self, observer: Option<ApplyObserver>) -> StateMachine {
        self.observer = observer;
        self
    }

    pub fn store(&self) -> &StateStore {
        &self.state
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

    /// The newest complete snapshot on disk that the state holds, if any. A
    /// snapshot past the applied state was published by an install that
    /// died before switching the state: it is not this node's yet.
    fn latest_snapshot(&self) -> io::Result<Option<(Meta, PathBuf)>> {
        let applied = self
            .applied_log_id()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut best: Option<(Meta, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.snapshot_dir)? {
            let p = entry?.path();
            if p.extension().and_then(|e| e.to_str()) != Some("meta") {
                continue;
            }
            let rec: SnapshotRecord = serde_json::from_slice(&std::fs::read(&p)?)
                .map_err(|e| io::Error::other(format!("{}: {e}", p.display())))?;
            let tar = p.with_extension("tar");
            if !tar.exists() || rec.meta.last_log_id > applied {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|(m, _)| rec.meta.last_log_id > m.last_log_id)
            {
                best = Some((rec.meta, tar));
            }
        }
        Ok(best)
    }

    /// Records `tar` as a complete snapshot with `meta` and removes older ones.
    fn publish_snapshot(&self, meta: &Meta, tar: &Path) -> io::Result<PathBuf> {
        let final_tar = self.snapshot_dir.join(format!("{}.tar", meta.snapshot_id));
        std::fs::rename(tar, &final_tar)?;
        let rec = SnapshotRecord { meta: meta.clone() };
        let meta_path = final_tar.with_extension("meta");
        let tmp = final_tar.with_extension("meta.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&rec).map_err(io::Error::other)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &meta_path)?;
        std::fs::File::open(&self.snapshot_dir)?.sync_all()?;
        for entry in std::fs::read_dir(&self.snapshot_dir)? {
            let p = entry?.path();
            let stem_is_current =
                p.file_stem().and_then(|s| s.to_str()) == Some(meta.snapshot_id.as_str());
            let ext = p.extension().and_then(|e| e.to_str());
            if !stem_is_current && matches!(ext, Some("tar") | Some("meta")) {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(final_tar)
    }

    /// Installs a snapshot received into `snapshot`, once it is on disk.
    async fn install_received(
        &self,
        meta: &Meta,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt;
        snapshot
            .flush()
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        snapshot
            .file
            .sync_all()
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let tar = snapshot.path.clone();
        drop(snapshot);
        let this = self.clone();
        let meta = meta.clone();
        let work = self.snapshot_dir.join(format!("tmp-{}", self.unique()));
        tokio::task::spawn_blocking(move || this.install_tar(&meta, &tar, &work))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?
    }

    /// Unpacks the snapshot `tar` under `work`, checks it, publishes it and
    /// switches the state to it. Published first: once the state is
    /// switched, a crash must find a snapshot covering it (openraft starts
    /// a node only if its log's purge point does not pass its current
    /// snapshot), and one published but not installed is ignored (see
    /// `latest_snapshot`).
    fn install_tar(&self, meta: &Meta, tar: &Path, work: &Path) -> Result<(), StorageError> {
        let dir = work.join("checkpoint");
        unpack(tar, &dir).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let (applied, _) =
            StateStore::checkpoint_meta(&dir).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let applied: Option<LogId> = match applied {
            Some(b) => decode(&b).map_err(|e| snap_err(ErrorVerb::Read, e))?,
            None => None,
        };
        if applied != meta.last_log_id {
            return Err(snap_err(
                ErrorVerb::Read,
                format!(
                    "snapshot {} holds state up to {applied:?}, its metadata says {:?}",
                    meta.snapshot_id, meta.last_log_id
                ),
            ));
        }
        self.publish_snapshot(meta, tar)
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
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

/// Packs the checkpoint directory `dir` into the tar file `dest`, fsynced.
fn pack(dir: &Path, dest: &Path) -> io::Result<()> {
    let file = std::fs::File::create(dest)?;
    let mut builder = tar::Builder::new(io::BufWriter::new(file));
    builder.append_dir_all(".", dir)?;
    let file = builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Unpacks a snapshot tar into `dest`, refusing entries that would escape it.
fn unpack(tar_path: &Path, dest: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dest)?;
    let mut archive = tar::Archive::new(io::BufReader::new(std::fs::File::open(tar_path)?));
    for entry in archive.entries()? {
        let mut entry = entry?;
        // `unpack_in` refuses paths with `..` or absolute paths.
        if !entry.unpack_in(dest)? {
            return Err(io::Error::other(format!(
                "snapshot entry {:?} escapes the target",
                entry.path()?
            )));
        }
    }
    for entry in std::fs::read_dir(dest)? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    std::fs::File::open(dest)?.sync_all()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let n = self.unique();
        let work = self.snapshot_dir.join(format!("tmp-{n}"));
        let this = self.clone();
        let built =
            tokio::task::spawn_blocking(move || -> Result<(Meta, PathBuf), StorageError> {
                std::fs::create_dir_all(&work).map_err(|e| snap_err(ErrorVerb::Write, e))?;
                let cp = work.join("checkpoint");
                this.state
                    .checkpoint(&cp)
                    .map_err(|e| snap_err(ErrorVerb::Write, e))?;
                // The checkpoint's own metadata says exactly what it contains,
                // even if entries were applied while it was taken.
                let (applied, membership) =
                    StateStore::checkpoint_meta(&cp).map_err(|e| snap_err(ErrorVerb::Read, e))?;
                let last_log_id: Option<LogId> = match applied {
                    Some(b) => decode(&b).map_err(|e| snap_err(ErrorVerb::Read, e))?,
                    None => None,
                };
                let last_membership: Membership = match membership {
                    Some(b) => decode(&b).map_err(|e| snap_err(ErrorVerb::Read, e))?,
                    None => Membership::default(),
                };
                let snapshot_id = match &last_log_id {
                    Some(l) => format!(
                        "{}-{}-{}-{n}",
                        l.leader_id.term, l.leader_id.node_id, l.index
                    ),
                    None => format!("0-0-0-{n}"),
                };
                let meta = Meta {
                    last_log_id,
                    last_membership,
                    snapshot_id,
                };
                let tar = work.join("snapshot.tar");
                pack(&cp, &tar).map_err(|e| snap_err(ErrorVerb::Write, e))?;
                crash::point("snapshot-build");
                let published = this
                    .publish_snapshot(&meta, &tar)
                    .map_err(|e| snap_err(ErrorVerb::Write, e))?;
                std::fs::remove_dir_all(&work).map_err(|e| snap_err(ErrorVerb::Write, e))?;
                Ok((meta, published))
            })
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))??;
        let (meta, path) = built;
        tracing::info!(snapshot = %meta.snapshot_id, "built snapshot");
        let file = SnapshotFile::open(path)
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        self.installs.begin();
        let path = self
            .snapshot_dir
            .join(format!("incoming-{}.tar", self.unique()));
        let file = SnapshotFile::create(path)
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let result = self.install_received(meta, snapshot).await;
        self.installs.end(result.is_ok());
        result
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let this = self.clone();
        let latest = tokio::task::spawn_blocking(move || this.latest_snapshot())
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        match latest {
            None => Ok(None),
            Some((meta, path)) => {
                let file = SnapshotFile::open(path)
                    .await
                    .map_err(|e| snap_err(ErrorVerb::Read, e))?;
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(file),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let built = sm.build_snapshot().await.unwrap().meta;
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
        let tar = dir.path().join("received.tar");
        std::fs::write(&tar, b"not read").unwrap();
        sm.publish_snapshot(&ahead, &tar).unwrap();
        assert!(
            sm.get_current_snapshot().await.unwrap().is_none(),
            "a snapshot past the applied index 2 was offered as current"
        );
    }
}
