//! Backups: a node's replicated state at one applied log index, as one
//! file, and seeding a new node from such a file.
//!
//! **Taking one** ([`write`]) costs a RocksDB checkpoint of the state
//! database (hard links, taken while writes go on), whose own metadata says
//! the log id it was applied up to, and reading its files once. The file is
//! a tar archive compressed with zstd (with zstd's frame checksum), so that
//! `tar --zstd -tvf` lists it: first `bifrost-backup.json`, the
//! [`Manifest`] (the applied log id, the revision, the cluster it came from,
//! every file's size and BLAKE3), then the checkpoint's files under
//! `state/`, in the manifest's order.
//!
//! **Restoring** ([`restore`]) reads the archive into a new data directory,
//! checking each file's size and hash as its last byte arrives (the same
//! [`Incoming`] a snapshot transfer uses), makes it the node's state, and
//! rewrites the membership it holds to the new cluster's. The node's log
//! starts after the backup's log id, and it has voted in that log id's term,
//! so the new cluster's first leader is elected in a later term and
//! continues the log where the backup ends; a node added later receives the
//! state as a snapshot. Every node of the new cluster is restored from the
//! same file. Nothing is left in the data directory if a restore fails.
//!
//! This module knows nothing of gRPC or of the server: the server streams
//! what [`write`] writes, and `bifrost restore` calls [`restore`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bifrost_storage::codec::encode;
use bifrost_storage::{MemoryBudget, NodeStore, StateStore};
use serde::{Deserialize, Serialize};

use crate::snapshot::{check_files, FileEntry, Incoming, Store};
use crate::state_machine::{checkpoint_ids, Membership, StateMachine};
use crate::{LogId, Member, NodeId};

/// The archive's first entry.
pub const MANIFEST_NAME: &str = "bifrost-backup.json";
/// What [`Manifest::kind`] says.
const KIND: &str = "bifrost-backup";
/// The layout this version writes and reads.
pub const FORMAT: u32 = 1;
/// The zstd level: fast, and most of a checkpoint is LZ4 blocks already.
const ZSTD_LEVEL: i32 = 3;
/// The largest manifest read (a checkpoint lists some thousands of files).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// What a backup holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `bifrost-backup`.
    pub kind: String,
    /// The archive's layout ([`FORMAT`]).
    pub format: u32,
    /// The Bifrost version that wrote it.
    pub written_by: String,
    /// The node it was taken on.
    pub node: NodeId,
    /// When, microseconds since the epoch.
    pub taken_at_us: i64,
    /// The state holds every log entry up to this one, and none after.
    pub last_log_id: LogId,
    /// The highest revision of a reading in it.
    pub revision: u64,
    /// The cluster it was taken in, as its state recorded it.
    pub membership: Membership,
    /// The state database's files, in the archive's order.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Bytes of the files, before compression.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Writes a backup of `state` to `out`. `work` is a directory on the
/// state's file system for the checkpoint (removed after). Blocking.
pub fn write(
    state: &StateStore,
    node: NodeId,
    work: &Path,
    out: impl Write,
) -> io::Result<Manifest> {
    fs::create_dir_all(work).map_err(|e| at(work, e))?;
    let cp = work.join("checkpoint");
    let result = checkpoint_and_write(state, node, &cp, out);
    let removed = fs::remove_dir_all(work).map_err(|e| at(work, e));
    let manifest = result?;
    removed?;
    Ok(manifest)
}

fn checkpoint_and_write(
    state: &StateStore,
    node: NodeId,
    cp: &Path,
    out: impl Write,
) -> io::Result<Manifest> {
    state
        .checkpoint(cp)
        .map_err(|e| io::Error::other(format!("checkpoint into {}: {e}", cp.display())))?;
    let held = checkpoint_ids(cp).map_err(io::Error::other)?;
    let last_log_id = held.applied.ok_or_else(|| {
        io::Error::other("this node has applied nothing yet: there is nothing to back up")
    })?;
    let manifest = Manifest {
        kind: KIND.into(),
        format: FORMAT,
        written_by: env!("CARGO_PKG_VERSION").into(),
        node,
        taken_at_us: bifrost_model::now_us(),
        last_log_id,
        revision: held.revision,
        membership: held.membership,
        files: crate::snapshot::list_checkpoint(cp, |_, _| None)?,
    };
    let mut zstd = zstd::Encoder::new(out, ZSTD_LEVEL)?;
    zstd.include_checksum(true)?;
    let mut tar = tar::Builder::new(zstd);
    let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    let mtime = (manifest.taken_at_us / 1_000_000).max(0) as u64;
    append(&mut tar, MANIFEST_NAME, json.len() as u64, mtime, &json[..])?;
    for f in &manifest.files {
        let path = cp.join(&f.name);
        let file = fs::File::open(&path).map_err(|e| at(&path, e))?;
        // Checkpoint files never change: the size hashed is the size read.
        let name = format!("state/{}", f.name);
        append(&mut tar, &name, f.size, mtime, file).map_err(|e| at(&path, e))?;
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(manifest)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data.take(size))
}

/// Reads a backup from `input` into the directory `dest` (a checkpoint
/// then), checking every file against the manifest; `store` is where the
/// files go afterwards (nothing is taken from it). Blocking.
pub fn read(input: impl Read, dest: &Path, store: &Store) -> io::Result<Manifest> {
    let zstd = Unpacked(zstd::Decoder::new(input)?);
    let mut archive = tar::Archive::new(zstd);
    let mut entries = archive.entries()?;
    let mut first = entries
        .next()
        .ok_or_else(|| damaged("it holds no entry: not a Bifrost backup"))??;
    let name = entry_name(&first)?;
    if name != MANIFEST_NAME {
        return Err(damaged(format!(
            "its first entry is {name:?}, not {MANIFEST_NAME}: not a Bifrost backup"
        )));
    }
    let mut json = Vec::new();
    (&mut first)
        .take(MAX_MANIFEST_BYTES)
        .read_to_end(&mut json)?;
    let manifest = parse_manifest(&json)?;
    let names: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
    let mut incoming = Incoming::new(dest, store, &manifest.files, &names)?;
    let mut buf = vec![0u8; 1 << 20];
    for f in &manifest.files {
        let mut entry = entries
            .next()
            .ok_or_else(|| damaged(format!("it ends before file {} of its manifest", f.name)))??;
        let name = entry_name(&entry)?;
        if name != format!("state/{}", f.name) {
            return Err(damaged(format!(
                "entry {name:?} is where the manifest puts state/{}",
                f.name
            )));
        }
        if entry.size() != f.size {
            return Err(damaged(format!(
                "file {} is {} bytes in the archive, its manifest says {}",
                f.name,
                entry.size(),
                f.size
            )));
        }
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| damaged(format!("reading file {}: {e}", f.name)))?;
            if n == 0 {
                break;
            }
            incoming.write(&buf[..n]).map_err(damaged)?;
        }
    }
    incoming.finish().map_err(damaged)?;
    if let Some(extra) = entries.next() {
        let name = entry_name(&extra?)?;
        return Err(damaged(format!(
            "entry {name:?} follows the last file of its manifest"
        )));
    }
    Ok(manifest)
}

/// The decompressed archive; a read that fails (a damaged or cut-short
/// stream, zstd's checksum) says the backup is damaged.
struct Unpacked<R>(R);

impl<R: Read> Read for Unpacked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| damaged(format!("reading it: {e}")))
    }
}

fn entry_name<R: Read>(entry: &tar::Entry<R>) -> io::Result<String> {
    Ok(entry.path()?.to_string_lossy().into_owned())
}

fn parse_manifest(json: &[u8]) -> io::Result<Manifest> {
    #[derive(Deserialize)]
    struct Head {
        kind: String,
        format: u32,
        written_by: String,
    }
    let head: Head = serde_json::from_slice(json)
        .map_err(|e| damaged(format!("its manifest is not readable: {e}")))?;
    if head.kind != KIND {
        return Err(damaged(format!("its manifest is of kind {:?}", head.kind)));
    }
    if head.format != FORMAT {
        return Err(io::Error::other(format!(
            "it is in backup format {} (written by Bifrost {}); this Bifrost ({}) reads format {FORMAT}",
            head.format,
            head.written_by,
            env!("CARGO_PKG_VERSION")
        )));
    }
    let manifest: Manifest = serde_json::from_slice(json)
        .map_err(|e| damaged(format!("its manifest is not readable: {e}")))?;
    check_files(&manifest.files)?;
    Ok(manifest)
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// The new cluster's members, as the restored state now records them.
    pub members: BTreeSet<NodeId>,
}

/// Seeds `data_dir`, which must hold no node's data, with the backup read
/// from `input`, as node `id` of a new cluster of `peers`. Nothing is left
/// in `data_dir` if it fails. Blocking.
pub fn restore(
    input: impl Read,
    data_dir: &Path,
    id: NodeId,
    peers: &BTreeMap<NodeId, Member>,
    budget: &MemoryBudget,
) -> io::Result<Restored> {
    if !peers.contains_key(&id) {
        let ids: Vec<String> = peers.keys().map(|p| p.to_string()).collect();
        return Err(io::Error::other(format!(
            "node {id} is not one of the peers ({}): every node of the new cluster is listed",
            ids.join(", ")
        )));
    }
    let parts = ["state", "node", "snapshots"].map(|p| data_dir.join(p));
    for part in &parts {
        if fs::read_dir(part).is_ok_and(|mut d| d.next().is_some()) {
            return Err(io::Error::other(format!(
                "{} already holds a node's data ({}): a restore seeds a new node, give it an \
                 empty data directory",
                data_dir.display(),
                part.display()
            )));
        }
    }
    let result = seed(input, data_dir, id, peers, budget);
    if result.is_err() {
        for part in &parts {
            let _ = fs::remove_dir_all(part);
        }
    }
    result
}

fn seed(
    input: impl Read,
    data_dir: &Path,
    id: NodeId,
    peers: &BTreeMap<NodeId, Member>,
    budget: &MemoryBudget,
) -> io::Result<Restored> {
    let state = StateStore::open_with(&data_dir.join("state"), budget).map_err(io::Error::other)?;
    let sm = StateMachine::new(state.clone(), &data_dir.join("snapshots"))?;
    let incoming: PathBuf = data_dir.join("snapshots").join("incoming-restore");
    let manifest = read(input, &incoming, sm.snapshot_store())?;
    let held = checkpoint_ids(&incoming).map_err(io::Error::other)?;
    if held.applied != Some(manifest.last_log_id) || held.revision != manifest.revision {
        return Err(damaged(format!(
            "its state holds log entries up to {:?} and revision {}, its manifest says {} and {}",
            held.applied, held.revision, manifest.last_log_id, manifest.revision
        )));
    }
    state.install(&incoming).map_err(io::Error::other)?;
    let members: BTreeSet<NodeId> = peers.keys().copied().collect();
    let config = openraft::Membership::new(vec![members.clone()], peers.clone());
    let upto = manifest.last_log_id;
    let mut batch = state.batch();
    batch.set_membership(encode(&Membership::new(Some(upto), config)));
    batch.set_applied(encode(&Some(upto)));
    batch.commit().map_err(io::Error::other)?;
    state.sync().map_err(io::Error::other)?;
    // The snapshot a node added later receives: this state, new members.
    sm.publish_current().map_err(io::Error::other)?;
    let node = NodeStore::open_with(&data_dir.join("node"), budget).map_err(io::Error::other)?;
    crate::log_store::seed_after(&node, id, upto).map_err(io::Error::other)?;
    Ok(Restored { manifest, members })
}

fn damaged(msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the backup is damaged or not one: {msg}"),
    )
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::LogStore;
    use bifrost_model::{DataType, Device, NewReading, Protocol, Quality, Tag, Value};
    use openraft::storage::RaftLogStorage;
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Vote};

    const TAKEN_AT: u64 = 42;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn peers(ids: &[u64]) -> BTreeMap<NodeId, Member> {
        ids.iter()
            .map(|&i| {
                (
                    i,
                    Member::new(format!("10.0.0.{i}:7001"), format!("10.0.0.{i}:7101")),
                )
            })
            .collect()
    }

    /// A state with a device, a tag and `n` readings, applied up to
    /// `TAKEN_AT` in term 3 by a cluster of nodes 1-3.
    fn state_with_readings(dir: &Path, n: usize) -> StateStore {
        let state = StateStore::open(&dir.join("state")).unwrap();
        let mut b = state.batch();
        let plc = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
        b.put_device(plc, true, None, 1).unwrap();
        let tag = Tag::new("line1/t0", "plc", "hr:0", DataType::F64);
        b.put_tag(tag, true, None, 1).unwrap();
        let readings = (0..n)
            .map(|i| NewReading {
                id: format!("r{i}"),
                tag: "line1/t0".into(),
                ts_us: 1_700_000_000_000_000 + i as i64,
                server_ts_us: 1_700_000_000_000_000 + i as i64,
                value: Some(Value::Float(i as f64)),
                quality: Quality::good(),
            })
            .collect();
        b.insert_readings(readings, false).unwrap().unwrap();
        let old = openraft::Membership::new(vec![[1, 2, 3].into()], peers(&[1, 2, 3]));
        b.set_membership(encode(&Membership::new(Some(log_id(1, 1, 1)), old)));
        b.set_applied(encode(&Some(log_id(3, 2, TAKEN_AT))));
        b.commit().unwrap();
        state.sync().unwrap();
        state
    }

    fn backup_of(state: &StateStore, dir: &Path) -> (Vec<u8>, Manifest) {
        let mut out = Vec::new();
        let manifest = write(state, 2, &dir.join("work"), &mut out).unwrap();
        assert!(!dir.join("work").exists(), "the checkpoint was left behind");
        (out, manifest)
    }

    fn restore_into(bytes: &[u8], dir: &Path, id: NodeId) -> io::Result<Restored> {
        restore(bytes, dir, id, &peers(&[4, 5, 6]), &MemoryBudget::default())
    }

    fn holds_nothing(dir: &Path) -> bool {
        ["state", "node", "snapshots"]
            .iter()
            .all(|p| !dir.join(p).exists())
    }

    #[tokio::test]
    async fn a_restored_node_holds_the_same_readings_and_revisions_with_the_new_members() {
        let src = tempfile::tempdir().unwrap();
        let state = state_with_readings(src.path(), 500);
        let (bytes, manifest) = backup_of(&state, src.path());
        assert_eq!(manifest.last_log_id, log_id(3, 2, TAKEN_AT));
        assert_eq!(manifest.revision, state.revision());
        assert!(manifest.revision >= 500, "revision {}", manifest.revision);
        let original = state.readings_after(0, 10_000).unwrap();
        // Written after the backup: not in it.
        let mut b = state.batch();
        let late = NewReading {
            id: "late".into(),
            ..new_reading_like(&original[0].tag)
        };
        b.insert_readings(vec![late], false).unwrap().unwrap();
        b.commit().unwrap();

        let dst = tempfile::tempdir().unwrap();
        let done = restore_into(&bytes, dst.path(), 5).unwrap();
        assert_eq!(done.members, [4, 5, 6].into());

        let restored = StateStore::open(&dst.path().join("state")).unwrap();
        assert_eq!(restored.readings_after(0, 10_000).unwrap(), original);
        assert_eq!(restored.revision(), manifest.revision);
        let sm = StateMachine::new(restored, &dst.path().join("snapshots")).unwrap();
        let mut sm2 = sm.clone();
        let (applied, membership) = sm2.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(3, 2, TAKEN_AT)));
        let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        assert_eq!(voters, [4, 5, 6].into());
        let snapshot = sm2.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(3, 2, TAKEN_AT)));
        assert_eq!(snapshot.meta.last_membership, membership);

        let node = NodeStore::open(&dst.path().join("node")).unwrap();
        let mut log = LogStore::new(node, &sm);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(3, 2, TAKEN_AT)));
        assert_eq!(state.last_log_id, Some(log_id(3, 2, TAKEN_AT)));
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 5)));
    }

    fn new_reading_like(tag: &str) -> NewReading {
        NewReading {
            id: String::new(),
            tag: tag.into(),
            ts_us: 1_800_000_000_000_000,
            server_ts_us: 1_800_000_000_000_000,
            value: Some(Value::Float(-1.0)),
            quality: Quality::good(),
        }
    }

    /// The archive decompressed, as tar bytes.
    fn untar_bytes(bytes: &[u8]) -> Vec<u8> {
        zstd::decode_all(bytes).unwrap()
    }

    fn compress(tar: &[u8]) -> Vec<u8> {
        zstd::encode_all(tar, 3).unwrap()
    }

    #[test]
    fn a_damaged_backup_is_refused_naming_the_damage_and_leaves_no_data() {
        let src = tempfile::tempdir().unwrap();
        let state = state_with_readings(src.path(), 200);
        let (bytes, manifest) = backup_of(&state, src.path());
        let dst = tempfile::tempdir().unwrap();

        // A byte flipped in the compressed stream.
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        let e = restore_into(&flipped, dst.path(), 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("damaged"), "{e}");
        assert!(holds_nothing(dst.path()), "a failed restore left data");

        // Cut short.
        let e = restore_into(&bytes[..bytes.len() * 2 / 3], dst.path(), 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("damaged") || e.contains("ended"), "{e}");
        assert!(holds_nothing(dst.path()));

        // Well-formed zstd and tar, but one file's content changed: its
        // hash names it.
        let largest = manifest.files.iter().max_by_key(|f| f.size).unwrap();
        let mut tar = untar_bytes(&bytes);
        let at = find_entry_data(&tar, &format!("state/{}", largest.name));
        tar[at + (largest.size as usize) / 2] ^= 1;
        let e = restore_into(&compress(&tar), dst.path(), 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&largest.name) && e.contains("hashes to"), "{e}");
        assert!(holds_nothing(dst.path()));

        // Not a backup at all.
        let e = restore_into(b"hello", dst.path(), 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("damaged or not one"), "{e}");

        // The intact one still restores.
        restore_into(&bytes, dst.path(), 4).unwrap();
    }

    /// Where the data of the tar entry `name` begins in `tar`.
    fn find_entry_data(tar: &[u8], name: &str) -> usize {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            if entry.path().unwrap().to_string_lossy() == name {
                return entry.raw_file_position() as usize;
            }
        }
        panic!("no entry {name}");
    }

    #[test]
    fn a_backup_of_another_format_is_refused_saying_which() {
        let src = tempfile::tempdir().unwrap();
        let state = state_with_readings(src.path(), 10);
        let (bytes, mut manifest) = backup_of(&state, src.path());
        manifest.format = 2;
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, MANIFEST_NAME, json.len() as u64, 0, &json[..]).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let e = restore_into(&compress(&tar.into_inner().unwrap()), dst.path(), 4)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("format 2") && e.contains("reads format 1"),
            "{e}"
        );
        assert!(holds_nothing(dst.path()));
        restore_into(&bytes, dst.path(), 4).unwrap();
    }

    #[test]
    fn a_restore_refuses_a_data_dir_with_data_and_a_node_not_in_the_peers() {
        let src = tempfile::tempdir().unwrap();
        let state = state_with_readings(src.path(), 10);
        let (bytes, _) = backup_of(&state, src.path());
        let dst = tempfile::tempdir().unwrap();
        let e = restore_into(&bytes, dst.path(), 7).unwrap_err().to_string();
        assert!(
            e.contains("node 7 is not one of the peers (4, 5, 6)"),
            "{e}"
        );
        restore_into(&bytes, dst.path(), 4).unwrap();
        let before = StateStore::open(&dst.path().join("state"))
            .unwrap()
            .revision();
        let e = restore_into(&bytes, dst.path(), 4).unwrap_err().to_string();
        assert!(e.contains("already holds a node's data"), "{e}");
        // What was there is untouched.
        let after = StateStore::open(&dst.path().join("state")).unwrap();
        assert_eq!(after.revision(), before);
    }
}
