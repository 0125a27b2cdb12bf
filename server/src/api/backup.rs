//! `Backup`: the replicated state as this node has applied it, streamed as
//! the archive `bifrost_raft::backup` writes, after a read barrier so that
//! it holds every write acknowledged before the call. The archive is
//! written on a blocking thread into [`Sink`], which sends it a chunk at a
//! time and hashes what it sends; a client that goes away stops the
//! writer, and the checkpoint it took is removed.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bifrost_proto::v1 as pb;
use tonic::Status;

use super::stream::{self, Chunks, ResponseStream};
use super::Api;

/// Bytes of the archive per message.
const CHUNK_BYTES: usize = 1 << 20;

/// Tells apart the work directories of backups under way at once.
static NEXT: AtomicU64 = AtomicU64::new(1);

type Out<W> = Chunks<Vec<u8>, pb::BackupChunk, W>;

/// The archive's bytes as they are written: sent in chunks and hashed.
struct Sink<'a, W> {
    out: &'a mut Out<W>,
    pending: Vec<u8>,
    bytes: u64,
    hasher: blake3::Hasher,
}

impl<W: FnMut(Vec<Vec<u8>>) -> pb::BackupChunk> io::Write for Sink<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(data);
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        if self.pending.len() >= CHUNK_BYTES {
            let full = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK_BYTES));
            if !self.out.push(full) {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the client went away",
                ));
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn chunk(parts: Vec<Vec<u8>>) -> pb::BackupChunk {
    pb::BackupChunk {
        data: parts.concat(),
        summary: None,
    }
}

pub async fn backup(api: &Api) -> Result<ResponseStream<pb::BackupChunk>, Status> {
    api.linearizable_barrier().await?;
    let state = api.node.state().clone();
    let node_id = api.node.id();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Under `snapshots/`, whose `tmp-*` leftovers a restart removes.
    let work = api
        .node
        .options()
        .data_dir
        .join("snapshots")
        .join(format!("tmp-backup-{n}"));
    Ok(stream::chunked_by(1, chunk, move |out| {
        let mut sink = Sink {
            out,
            pending: Vec::with_capacity(CHUNK_BYTES),
            bytes: 0,
            hasher: blake3::Hasher::new(),
        };
        let manifest = match bifrost_raft::backup::write(&state, node_id, &work, &mut sink) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return None,
            Err(e) => {
                tracing::warn!(error = %e, "backup failed");
                return Some(Err(Status::internal(format!(
                    "backup on node {node_id}: {e}"
                ))));
            }
        };
        tracing::info!(
            index = manifest.last_log_id.index,
            revision = manifest.revision,
            bytes = sink.bytes,
            "backup sent"
        );
        let summary = pb::BackupSummary {
            node_id,
            log_index: manifest.last_log_id.index,
            log_term: manifest.last_log_id.leader_id.term,
            revision: manifest.revision,
            files: manifest.files.len() as u64,
            state_bytes: manifest.bytes(),
            archive_bytes: sink.bytes,
            blake3: sink.hasher.finalize().to_hex().to_string(),
            taken_at_us: manifest.taken_at_us,
        };
        Some(Ok(pb::BackupChunk {
            data: sink.pending,
            summary: Some(summary),
        }))
    }))
}
