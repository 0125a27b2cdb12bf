//! What `bench soak` samples of one node: its process from `/proc` (RSS,
//! threads, open file descriptors), its data directory (bytes on disk), its
//! `/metrics` (RocksDB memory, jemalloc's heap, polled readings committed)
//! and its `Status`
//! (the revision it has applied: one per committed reading).
//!
//! Reading `/proc` and walking the data directory need nothing but the
//! standard library; the node is reached through `poll`'s [`NodeProbe`].

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::super::common::{family_sum, labelled_sum};
use super::super::poll::{parse_status_value, NodeProbe, FORWARDED};

/// The gauge of the node's memory budget and its parts.
const MEMORY: &str = "bifrost_memory_bytes";
/// The parts of [`MEMORY`] that are RocksDB's: the shared block cache and
/// the memtables of both databases.
const ROCKSDB_PARTS: [&str; 2] = ["block_cache", "memtables"];
/// The part of [`MEMORY`] that is the whole budget (`--memory-budget`).
const BUDGET_PART: &str = "budget";
/// The parts of [`MEMORY`] that are jemalloc's own counters: every byte
/// the process has allocated (RocksDB's caches included), and the pages
/// jemalloc holds resident. A node built without jemalloc has neither.
const HEAP_ALLOCATED_PART: &str = "heap_allocated";
const HEAP_RESIDENT_PART: &str = "heap_resident";
const HEAP_METADATA_PART: &str = "heap_metadata";
const HEAP_ACTIVE_PART: &str = "heap_active";

/// One node at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct NodeSample {
    pub rss_kb: u64,
    /// Of `rss_kb`, the anonymous pages (heap, stacks, RocksDB's own
    /// mappings) and the file-backed ones (the binary's code and data as
    /// they are paged in, memory-mapped files): code pages grow as new
    /// paths run and stop at the binary's size.
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    pub threads: u64,
    pub fds: u64,
    /// Of `fds`, those of RocksDB table files (`*.sst`): one per table file
    /// of the node's databases, so they follow the data, not the load.
    pub table_fds: u64,
    /// Bytes allocated on disk under the data directory (as `du` counts
    /// them: each file once, hard links too).
    pub disk_bytes: u64,
    /// Block cache plus memtables; `None` when `/metrics` did not answer.
    pub rocksdb_bytes: Option<f64>,
    /// The node's memory budget (`--memory-budget`), which RocksDB's caches
    /// must stay within; `None` when `/metrics` did not answer.
    pub budget_bytes: Option<f64>,
    /// Bytes the process has allocated, as jemalloc counts them (Rust's and
    /// RocksDB's C++, the caches included); `None` when `/metrics` did not
    /// answer or the node was built without jemalloc.
    pub heap_allocated: Option<f64>,
    /// Pages jemalloc holds resident (allocated, its metadata, freed pages
    /// not yet returned); `None` as for `heap_allocated`.
    pub heap_resident: Option<f64>,
    /// Of `heap_resident`, jemalloc's own bookkeeping, and the pages of
    /// its live slabs and runs (active less allocated is the free slots
    /// among live objects; resident less active less metadata, freed
    /// pages not yet returned); `None` as for `heap_allocated`.
    pub heap_metadata: Option<f64>,
    pub heap_active: Option<f64>,
    /// The revision this node has applied; `None` when `Status` did not
    /// answer.
    pub revision: Option<u64>,
    /// Polled readings this node's outbox had committed through Raft;
    /// `None` when `/metrics` did not answer.
    pub forwarded: Option<f64>,
}

/// Samples the node of `probe`, whose data directory is `data_dir`.
pub(super) async fn sample(probe: &NodeProbe, data_dir: &Path) -> anyhow::Result<NodeSample> {
    let (status, metrics) = tokio::join!(probe.status(), probe.metrics());
    let pid = probe.pid;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("node {}: reading /proc/{pid}/status", probe.id))?;
    let (fds, table_fds) = count_fds(pid).with_context(|| format!("node {}", probe.id))?;
    let dir = data_dir.to_path_buf();
    let disk_bytes = tokio::task::spawn_blocking(move || disk_usage(&dir))
        .await
        .context("the disk walk")?
        .with_context(|| format!("node {}: bytes under {}", probe.id, data_dir.display()))?;
    let metrics = metrics.ok();
    let part = |p| {
        metrics
            .as_deref()
            .and_then(|m| labelled_sum(m, MEMORY, "part", p))
    };
    Ok(NodeSample {
        rss_kb: parse_status_value(&proc_status, "VmRSS:").unwrap_or(0),
        rss_anon_kb: parse_status_value(&proc_status, "RssAnon:").unwrap_or(0),
        rss_file_kb: parse_status_value(&proc_status, "RssFile:").unwrap_or(0),
        threads: parse_status_value(&proc_status, "Threads:").unwrap_or(0),
        fds,
        table_fds,
        disk_bytes,
        rocksdb_bytes: metrics.as_deref().and_then(rocksdb_bytes),
        budget_bytes: part(BUDGET_PART),
        heap_allocated: part(HEAP_ALLOCATED_PART),
        heap_resident: part(HEAP_RESIDENT_PART),
        heap_metadata: part(HEAP_METADATA_PART),
        heap_active: part(HEAP_ACTIVE_PART),
        revision: status.map(|s| s.revision),
        forwarded: metrics
            .as_deref()
            .map(|m| family_sum(m, FORWARDED).map_or(0.0, |(sum, _)| sum)),
    })
}

/// RocksDB's memory in a node's metrics text: the sum of the
/// [`ROCKSDB_PARTS`] of `bifrost_memory_bytes`; `None` without any.
pub(super) fn rocksdb_bytes(metrics: &str) -> Option<f64> {
    let parts: Vec<f64> = ROCKSDB_PARTS
        .iter()
        .filter_map(|p| labelled_sum(metrics, MEMORY, "part", p))
        .collect();
    (!parts.is_empty()).then(|| parts.iter().sum())
}

/// Open file descriptors of process `pid` (the entries of `/proc/PID/fd`),
/// and how many of them are RocksDB table files (`*.sst`).
pub(super) fn count_fds(pid: u32) -> anyhow::Result<(u64, u64)> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))?;
    let (mut all, mut tables) = (0, 0);
    for entry in entries.flatten() {
        all += 1;
        // A descriptor closed since the listing has no target: not a table.
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if target.extension().is_some_and(|e| e == "sst") {
            tables += 1;
        }
    }
    Ok((all, tables))
}

/// Bytes allocated to the files under `root` (512-byte blocks, as `du`
/// counts; each inode once, so a checkpoint's hard links count once).
/// Files that vanish during the walk (RocksDB deletes obsolete ones) are
/// skipped; symbolic links are not followed.
pub(super) fn disk_usage(root: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut first = true;
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !first => continue,
            Err(e) => return Err(e),
        };
        first = false;
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let meta = match entry.path().symlink_metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_rss_and_threads() {
        let status = "Name:\tbifrost\nVmHWM:\t   61232 kB\nVmRSS:\t   50000 kB\nRssAnon:\t   38000 kB\nRssFile:\t   12000 kB\nThreads:\t41\nSigQ:\t0/63338\n";
        assert_eq!(parse_status_value(status, "VmRSS:"), Some(50_000));
        assert_eq!(parse_status_value(status, "RssAnon:"), Some(38_000));
        assert_eq!(parse_status_value(status, "RssFile:"), Some(12_000));
        assert_eq!(parse_status_value(status, "Threads:"), Some(41));
        // Our own process, for real: a test binary runs several threads.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(parse_status_value(&own, "Threads:").unwrap() >= 1);
        assert!(parse_status_value(&own, "VmRSS:").unwrap() > 0);
        assert!(parse_status_value(&own, "RssFile:").unwrap() > 0);
    }

    #[test]
    fn open_files_are_counted_and_table_files_told_apart() {
        let pid = std::process::id();
        let dir = tempfile::tempdir().unwrap();
        let (before, tables_before) = count_fds(pid).unwrap();
        let open = |name: String| std::fs::File::create(dir.path().join(name)).unwrap();
        let files: Vec<std::fs::File> = (0..5).map(|i| open(format!("f{i}"))).collect();
        let tables: Vec<std::fs::File> = (0..3).map(|i| open(format!("00001{i}.sst"))).collect();
        let (during, tables_during) = count_fds(pid).unwrap();
        drop((files, tables));
        // Other tests open and close files at the same time: allow for them,
        // but eight files held open must show, three of them tables (no
        // other test opens one).
        assert!(during >= before + 8 - 2, "{before} -> {during}");
        assert_eq!(tables_during, tables_before + 3);
        assert!(count_fds(u32::MAX).is_err());
    }

    #[test]
    fn disk_use_counts_every_file_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(disk_usage(dir.path()).unwrap(), 0);
        let sub = dir.path().join("state/sst");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("a"), vec![1u8; 100_000]).unwrap();
        std::fs::write(dir.path().join("b"), vec![1u8; 10_000]).unwrap();
        let files = disk_usage(dir.path()).unwrap();
        assert!(
            (110_000..=110_000 + 2 * 65_536).contains(&files),
            "{files} bytes for 110,000 bytes of files"
        );
        // A hard link (a checkpoint's) and a symbolic link add nothing.
        std::fs::hard_link(sub.join("a"), dir.path().join("a-link")).unwrap();
        std::os::unix::fs::symlink(sub.join("a"), dir.path().join("a-sym")).unwrap();
        assert_eq!(disk_usage(dir.path()).unwrap(), files);
        assert!(disk_usage(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn rocksdb_memory_is_block_cache_plus_memtables() {
        let text = "\
# TYPE bifrost_memory_bytes gauge
bifrost_memory_bytes{part=\"budget\"} 100663296
bifrost_memory_bytes{part=\"block_cache\"} 4000000
bifrost_memory_bytes{part=\"memtables\"} 2000000
bifrost_memory_bytes{part=\"unflushed\"} 500000
bifrost_memory_bytes{part=\"heap_allocated\"} 16000000
";
        assert_eq!(rocksdb_bytes(text), Some(6_000_000.0));
        assert_eq!(
            labelled_sum(text, MEMORY, "part", BUDGET_PART),
            Some(100663296.0)
        );
        assert_eq!(
            labelled_sum(text, MEMORY, "part", HEAP_ALLOCATED_PART),
            Some(16_000_000.0)
        );
        // Built without jemalloc: no such part.
        assert_eq!(labelled_sum(text, MEMORY, "part", HEAP_RESIDENT_PART), None);
        assert_eq!(rocksdb_bytes("bifrost_node_id 1\n"), None);
    }
}
