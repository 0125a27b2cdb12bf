//! Shipping a snapshot to a follower, each file the follower lacks once.
//!
//! openraft's own transfer (InstallSnapshot) streams a snapshot as one
//! byte sequence, all of it every time. With its `generic-snapshot-data`
//! feature the transfer is ours (`RaftNetwork::full_snapshot` on the
//! leader; `Raft::begin_receiving_snapshot` and
//! `Raft::install_full_snapshot` on the follower), and it goes:
//!
//! 1. The leader offers the snapshot's file list (`SnapshotLacks`: name,
//!    size and content hash of each file). The follower answers the names
//!    of those its store does not hold.
//! 2. The leader opens one client stream (`SnapshotStream`): a [`Header`]
//!    (its vote, the snapshot's metadata and files, the names it ships),
//!    then those files' bytes in order, in chunks of at most
//!    `snapshot_max_chunk_size` (4 MiB). A channel of two chunks sits
//!    between the file reader and gRPC: no snapshot is held in memory, and
//!    a follower that takes no chunk for `install_snapshot_timeout` ends
//!    the transfer.
//! 3. The follower links the files it holds from its store into an
//!    incoming directory and writes the shipped ones there, checking each
//!    one's hash as its last byte arrives ([`Incoming`]). A bad file ends
//!    the transfer with an error naming it, before openraft sees anything.
//!    Then openraft installs the snapshot (`StateMachine::install_snapshot`)
//!    and its answer is the reply.
//!
//! Both sides count what each transfer shipped and what the follower
//! already held ([`SnapshotStats`], exported by the server as metrics) and
//! log one line per transfer.
//!
//! A failed transfer is a network error to openraft, which sends the
//! snapshot again later; never a storage error, which would stop the
//! leader. (A file removed under a transfer because a newer snapshot was
//! published is such a failure: the retry sends the newer snapshot.)

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bifrost_proto::raft::raft_internal_client::RaftInternalClient;
use bifrost_proto::raft::SnapshotPiece;
use bifrost_storage::codec::{decode, encode};
use openraft::error::{Fatal, NetworkError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::SnapshotResponse;
use openraft::{AnyError, Snapshot, SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Request, Streaming};
use tracing::Instrument;

use crate::network::{payload, unpayload};
use crate::snapshot::{check_files, FileEntry, Incoming, Store};
use crate::{NodeId, Raft, TypeConfig};

/// How long the leader waits for the follower's answer once every chunk
/// is sent: the follower installs the snapshot first.
const INSTALL_WAIT: Duration = Duration::from_secs(120);

/// How long the follower waits for the next message of a stream before it
/// gives the transfer up (a leader that hangs, not one that died: a closed
/// connection ends the stream at once).
const PIECE_WAIT: Duration = Duration::from_secs(30);

/// The next message of a snapshot stream, if any.
async fn next_piece(
    stream: &mut Streaming<SnapshotPiece>,
) -> Result<Option<SnapshotPiece>, String> {
    tokio::time::timeout(PIECE_WAIT, stream.message())
        .await
        .map_err(|_| format!("no snapshot chunk for {PIECE_WAIT:?}"))?
        .map_err(|s| format!("reading the snapshot stream: {}", s.message()))
}

/// The first message of a snapshot stream.
#[derive(Serialize, Deserialize)]
pub(crate) struct Header {
    vote: Vote<NodeId>,
    meta: SnapshotMeta<NodeId, crate::Member>,
    files: Vec<FileEntry>,
    /// The files whose bytes follow, in this order.
    shipped: Vec<String>,
}

/// What one transfer shipped, and what the follower already held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub files_shipped: u64,
    pub bytes_shipped: u64,
    pub files_reused: u64,
    pub bytes_reused: u64,
}

impl Figures {
    fn of(files: &[FileEntry], shipped: &[String]) -> Figures {
        let mut f = Figures::default();
        for file in files {
            if shipped.contains(&file.name) {
                f.files_shipped += 1;
                f.bytes_shipped += file.size;
            } else {
                f.files_reused += 1;
                f.bytes_reused += file.size;
            }
        }
        f
    }

    fn add(&mut self, other: Figures) {
        self.files_shipped += other.files_shipped;
        self.bytes_shipped += other.bytes_shipped;
        self.files_reused += other.files_reused;
        self.bytes_reused += other.bytes_reused;
    }
}

/// The snapshot transfers of one side of a node since it started.
#[derive(Debug, Default)]
pub struct TransferStats {
    /// Transfers done, their figures added up, and the last one's.
    inner: Mutex<(u64, Figures, Figures)>,
}

impl TransferStats {
    fn record(&self, figures: Figures) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0 += 1;
        inner.1.add(figures);
        inner.2 = figures;
    }

    /// Transfers done, their figures added up, and the last one's.
    pub fn get(&self) -> (u64, Figures, Figures) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Snapshot transfers this node sent (as leader) and received.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    pub sent: TransferStats,
    pub received: TransferStats,
}

/// Why a transfer failed, as openraft should take it.
enum Failed {
    /// The follower cannot be reached: openraft backs off.
    Unreachable(String),
    /// Anything else: openraft sends a snapshot again.
    Other(String),
}

impl From<String> for Failed {
    fn from(e: String) -> Failed {
        Failed::Other(e)
    }
}

impl From<&str> for Failed {
    fn from(e: &str) -> Failed {
        Failed::Other(e.to_string())
    }
}

/// A gRPC failure of `what`; `unavailable` means the follower is not there.
fn call_failed(what: &str, s: tonic::Status) -> Failed {
    let message = format!("{what}: {}", s.message());
    match s.code() {
        tonic::Code::Unavailable => Failed::Unreachable(message),
        _ => Failed::Other(message),
    }
}

/// Sends the published `snapshot` to `target` (see the module docs);
/// returns the follower's answer once it has installed it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    client: &mut RaftInternalClient<Channel>,
    id: NodeId,
    target: NodeId,
    vote: Vote<NodeId>,
    snapshot: Snapshot<TypeConfig>,
    cancel: impl Future<Output = ReplicationClosed> + Send,
    option: &RPCOption,
    stats: &SnapshotStats,
) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
    let span = tracing::info_span!("node", id);
    let started = Instant::now();
    let snapshot_id = snapshot.meta.snapshot_id.clone();
    let total = snapshot.snapshot.bytes();
    let work = ship(client, vote, snapshot, option).instrument(span.clone());
    let (resp, figures) = tokio::select! {
        closed = cancel => return Err(closed.into()),
        r = work => r.map_err(|failed| {
            let context = format!("snapshot {snapshot_id} to node {target}");
            match failed {
                Failed::Unreachable(e) => StreamingError::Unreachable(Unreachable::new(
                    &AnyError::error(format!("{context}: {e}")),
                )),
                Failed::Other(e) => StreamingError::Network(NetworkError::new(
                    &AnyError::error(format!("{context}: {e}")),
                )),
            }
        })?,
    };
    stats.sent.record(figures);
    let _enter = span.enter();
    tracing::info!(
        snapshot = %snapshot_id,
        to = target,
        files_shipped = figures.files_shipped,
        bytes_shipped = figures.bytes_shipped,
        files_reused = figures.files_reused,
        bytes_reused = figures.bytes_reused,
        bytes_total = total,
        took_ms = started.elapsed().as_millis() as u64,
        "sent snapshot"
    );
    Ok(resp)
}

/// Asks what the follower lacks, streams that, and returns its answer.
async fn ship(
    client: &mut RaftInternalClient<Channel>,
    vote: Vote<NodeId>,
    snapshot: Snapshot<TypeConfig>,
    option: &RPCOption,
) -> Result<(SnapshotResponse<NodeId>, Figures), Failed> {
    let data = *snapshot.snapshot;
    if data.incoming.is_some() {
        return Err("only a published snapshot is sent".into());
    }
    let stall = option.hard_ttl();
    let lacking = ask_lacking(client, &data.files, stall).await?;
    let shipped: Vec<&FileEntry> = data
        .files
        .iter()
        .filter(|f| lacking.contains(&f.name))
        .collect();
    let header = Header {
        vote,
        meta: snapshot.meta,
        shipped: shipped.iter().map(|f| f.name.clone()).collect(),
        files: data.files.clone(),
    };
    let figures = Figures::of(&data.files, &header.shipped);
    let sources: Vec<(PathBuf, u64)> = shipped.iter().map(|f| (data.path(f), f.size)).collect();
    let chunk = option.snapshot_chunk_size().unwrap_or(4 << 20).max(1);
    let resp = stream(client, &header, sources, chunk, stall).await?;
    Ok((resp, figures))
}

/// The names of the files of `files` the follower lacks.
async fn ask_lacking(
    client: &mut RaftInternalClient<Channel>,
    files: &[FileEntry],
    stall: Duration,
) -> Result<Vec<String>, Failed> {
    let mut ask = Request::new(payload(&files));
    ask.set_timeout(stall);
    let lacking = client
        .snapshot_lacks(ask)
        .await
        .map_err(|s| call_failed("asking which files it lacks", s))?;
    let lacking: Result<Vec<String>, String> =
        unpayload(lacking.get_ref()).map_err(|s| s.message().to_string())?;
    Ok(lacking?)
}

/// Streams `header` and the `sources`' bytes; the follower's answer.
async fn stream(
    client: &mut RaftInternalClient<Channel>,
    header: &Header,
    sources: Vec<(PathBuf, u64)>,
    chunk: usize,
    stall: Duration,
) -> Result<SnapshotResponse<NodeId>, Failed> {
    let (tx, rx) = mpsc::channel(2);
    let first = SnapshotPiece {
        header: encode(header),
        data: Vec::new(),
    };
    tx.send(first).await.map_err(|_| "the stream closed")?;
    let mut feeder = tokio::spawn(feed(tx, sources, chunk, stall));
    let call = client.snapshot_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    tokio::pin!(call);
    let fed = tokio::select! {
        reply = &mut call => {
            feeder.abort();
            return Err(match reply {
                Ok(r) => answer(r.get_ref()).err().unwrap_or_else(|| "answered before the end".into()).into(),
                Err(s) => call_failed("streaming", s),
            });
        }
        fed = &mut feeder => fed,
    };
    fed.map_err(|e| e.to_string())??;
    let reply = tokio::time::timeout(INSTALL_WAIT, call)
        .await
        .map_err(|_| format!("no answer {INSTALL_WAIT:?} after the last chunk"))?
        .map_err(|s| call_failed("streaming", s))?;
    Ok(answer(reply.get_ref())?)
}

fn answer(reply: &bifrost_proto::raft::RaftPayload) -> Result<SnapshotResponse<NodeId>, String> {
    let answer: Result<SnapshotResponse<NodeId>, String> =
        unpayload(reply).map_err(|s| s.message().to_string())?;
    answer
}

/// Reads the shipped files (`size` bytes of each) into the stream, a chunk
/// at a time.
async fn feed(
    tx: mpsc::Sender<SnapshotPiece>,
    sources: Vec<(PathBuf, u64)>,
    chunk: usize,
    stall: Duration,
) -> Result<(), String> {
    for (path, size) in sources {
        let failed = |e: std::io::Error| format!("reading {}: {e}", path.display());
        let mut file = tokio::fs::File::open(&path).await.map_err(failed)?;
        let mut left = size;
        while left > 0 {
            let mut data = vec![0; (chunk as u64).min(left) as usize];
            file.read_exact(&mut data).await.map_err(failed)?;
            left -= data.len() as u64;
            let piece = SnapshotPiece {
                header: Vec::new(),
                data,
            };
            tokio::time::timeout(stall, tx.send(piece))
                .await
                .map_err(|_| format!("the follower took no chunk for {stall:?}"))?
                .map_err(|_| "the stream closed".to_string())?;
        }
    }
    Ok(())
}

/// On the follower: which of `files` its store lacks, by name.
pub(crate) fn lacking(store: &Store, files: &[FileEntry]) -> Result<Vec<String>, String> {
    check_files(files).map_err(|e| e.to_string())?;
    Ok(store
        .lacking(files)
        .into_iter()
        .map(|f| f.name.clone())
        .collect())
}

/// On the follower: receives a snapshot stream and has openraft install
/// it; the answer for the leader.
pub(crate) async fn receive(
    raft: &Raft,
    id: NodeId,
    stats: &SnapshotStats,
    stream: Streaming<SnapshotPiece>,
) -> Result<SnapshotResponse<NodeId>, String> {
    let span = tracing::info_span!("node", id);
    let started = Instant::now();
    let result = receive_into(raft, stream).instrument(span.clone()).await;
    let _enter = span.enter();
    match &result {
        Ok((snapshot_id, figures, _)) => {
            stats.received.record(*figures);
            tracing::info!(
                snapshot = %snapshot_id,
                files_shipped = figures.files_shipped,
                bytes_shipped = figures.bytes_shipped,
                files_reused = figures.files_reused,
                bytes_reused = figures.bytes_reused,
                took_ms = started.elapsed().as_millis() as u64,
                "received snapshot"
            )
        }
        Err(e) => tracing::warn!(error = %e, "snapshot transfer refused"),
    }
    result.map(|(_, _, resp)| resp)
}

async fn receive_into(
    raft: &Raft,
    mut stream: Streaming<SnapshotPiece>,
) -> Result<(String, Figures, SnapshotResponse<NodeId>), String> {
    let first = next_piece(&mut stream)
        .await?
        .ok_or("the snapshot stream is empty")?;
    let header: Header =
        decode(&first.header).map_err(|e| format!("snapshot stream header: {e}"))?;
    let mut data = raft
        .begin_receiving_snapshot()
        .await
        .map_err(|e| e.to_string())?;
    let dir = data
        .incoming
        .clone()
        .ok_or("the state machine gave no incoming directory")?;
    let _remove = RemoveOnDrop(dir.clone());
    let figures = Figures::of(&header.files, &header.shipped);
    let mut incoming = {
        let (dir, store, files) = (dir.clone(), data.store.clone(), header.files.clone());
        let shipped = header.shipped.clone();
        blocking(move || Incoming::new(&dir, &store, &files, &shipped)).await?
    };
    while let Some(piece) = next_piece(&mut stream).await? {
        incoming = blocking(move || incoming.write(&piece.data).map(|()| incoming)).await?;
    }
    blocking(move || incoming.finish()).await?;
    data.files = header.files;
    let snapshot_id = header.meta.snapshot_id.clone();
    let snapshot = Snapshot {
        meta: header.meta,
        snapshot: data,
    };
    let resp = raft
        .install_full_snapshot(header.vote, snapshot)
        .await
        .map_err(|e| format!("installing snapshot {snapshot_id}: {e}"))?;
    Ok((snapshot_id, figures, resp))
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Removes an incoming directory when the transfer is over, however it
/// ended (an install moved what it needed out of it).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        remove_dir(&self.0);
    }
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove incoming snapshot directory");
        }
    }
}
