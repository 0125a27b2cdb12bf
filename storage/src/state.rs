//! The replicated state database and its in-memory parts.
//!
//! Devices and tags are few (thousands, not millions) and read on every
//! ingest, so they are cached in memory ([`Cache`]); so are the current value
//! of every tag and everything applied since the last flush ([`hot::Hot`]).
//! Apply changes memory only: the Raft log is the write-ahead log, and a
//! flush (background, bounded in time and bytes) writes readings as
//! compressed per-tag chunks, the revision journal, config, indexes and the
//! applied log index in one atomic write. After a crash the consensus layer
//! replays the log from the flushed applied index; apply is deterministic,
//! so the replay rebuilds exactly what was lost.
//!
//! Readers see the flushed state through a RocksDB snapshot taken together
//! with a copy of the unflushed part they need, so a flush never makes a
//! reading appear twice or vanish.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bifrost_chunk::Point;
use parking_lot::{Mutex, RwLock};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, DB};
use serde::{Deserialize, Serialize};

use crate::budget::MemoryBudget;
use crate::codec::{decode, encode};
use crate::keys::{decode_u64, u64_key};
use crate::model::{Assignment, Device, Quality, Reading, Tag, Value};
use crate::{Error, Rejection, Result};

use chunks::{CF_CHUNKS, CF_RUNS};
use hot::{Current, Hot, HotPoint};
use ingest_ids::{FlushedClock, IdMap, CF_INGEST_IDS};
use journal::CF_JOURNAL;
use ops::Ops;
use segments::CF_SEGMENTS;
use tag_index::{TagIndex, TagMap};

pub use migrate::{Migration, Progress as MigrationProgress};
pub use scan::DeviceActivity;

const CF_DEVICES: &str = "devices";
const CF_TAGS: &str = "tags";
const CF_CURRENT: &str = "current";
const CF_ASSIGN: &str = "assignments";
const CF_META: &str = "meta";
const CF_REQUESTS: &str = "requests";
const CF_REQUESTS_BY_INDEX: &str = "requests_by_index";
pub(crate) const ALL_CFS: [&str; 12] = [
    CF_DEVICES,
    CF_TAGS,
    CF_CURRENT,
    CF_CHUNKS,
    CF_RUNS,
    CF_SEGMENTS,
    CF_JOURNAL,
    CF_INGEST_IDS,
    CF_META,
    CF_ASSIGN,
    CF_REQUESTS,
    CF_REQUESTS_BY_INDEX,
];

const META_APPLIED: &str = "applied";
const META_MEMBERSHIP: &str = "membership";
const META_REVISION: &str = "revision";
const META_NEXT_TAG_ID: &str = "next_tag_id";
/// Prefix of the meta keys of retired tags: `retired_tag/NAME` -> tag id.
const META_RETIRED_PREFIX: &str = "retired_tag/";
const META_OLDEST: &str = "oldest_revision";
const META_RETENTION: &str = "retention_seconds";
/// The ingest clock (see `ingest_ids`): minute, 8 bytes big-endian.
const META_INGEST_CLOCK: &str = "ingest_clock";

/// File in the state root naming the active database directory.
const POINTER: &str = "CURRENT_STATE";

/// What a checkpoint holds, read without opening it as a store: the
/// consensus layer's opaque applied and membership records, and the
/// highest revision of a reading in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointMeta {
    pub applied: Option<Vec<u8>>,
    pub membership: Option<Vec<u8>>,
    pub revision: u64,
    /// Its on-disk format ([`FORMAT`] if this code can open it).
    pub format: u64,
}

/// A reading as `current` stores it (tag and revision live elsewhere).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredReading {
    id: String,
    ts_us: i64,
    server_ts_us: i64,
    value: Option<Value>,
    quality: Quality,
}

impl StoredReading {
    fn from_point(p: Point) -> StoredReading {
        StoredReading {
            id: p.id.unwrap_or_default(),
            ts_us: p.ts_us,
            server_ts_us: p.server_ts_us,
            value: p.value,
            quality: p.quality,
        }
    }

    fn into_point(self, revision: u64) -> Point {
        Point {
            ts_us: self.ts_us,
            revision,
            server_ts_us: self.server_ts_us,
            value: self.value,
            quality: self.quality,
            id: (!self.id.is_empty()).then_some(self.id),
        }
    }
}

/// What `current` holds per tag: the revision (8 bytes, big-endian), then
/// the reading.
fn encode_current(c: &Current) -> Vec<u8> {
    let mut v = u64_key(c.revision).to_vec();
    v.extend_from_slice(&encode(&StoredReading::from_point(c.to_point())));
    v
}

fn decode_current(v: &[u8]) -> Result<Current> {
    let revision = decode_u64(v).ok_or_else(|| Error::Corrupt("current value too short".into()))?;
    let reading: StoredReading = decode(&v[8..])?;
    Ok(Current::from_point(reading.into_point(revision)))
}

fn retired_key(name: &str) -> Vec<u8> {
    format!("{META_RETIRED_PREFIX}{name}").into_bytes()
}

#[derive(Default)]
struct Cache {
    devices: BTreeMap<String, Device>,
    /// Live tags, and deleted ones whose history is kept.
    tags: TagIndex,
    revision: u64,
    /// Oldest revision still held (readings below it were compacted away).
    oldest: u64,
    retention_s: u64,
    next_tag_id: u64,
    applied: Option<Vec<u8>>,
    membership: Option<Vec<u8>>,
    assignments: BTreeMap<String, Assignment>,
    /// Changes whenever devices, tags or assignments change (see
    /// [`StateStore::config_generation`]).
    generation: u64,
    /// Settled outbox records per origin (see `polled`).
    origins: HashMap<String, polled::OriginState>,
    /// The ingest clock, in minutes (see `ingest_ids`).
    ingest_clock: u32,
    /// Users and their sessions (see `users`).
    users: users::Users,
    /// Audit records within retention (see `audit`).
    audit: audit::Audit,
}

struct Inner {
    db: DB,
    dir: PathBuf,
    cache: RwLock<Cache>,
    hot: RwLock<Hot>,
    /// Held by the one flush running (and by a merge while it writes).
    flushing: Mutex<()>,
    /// Held by the one merge running (the merger, or retention).
    merging: Mutex<()>,
    /// Wakes the background merger (after a flush).
    merge_wake: Arc<flush::Wake>,
    /// Wakes the background flusher early.
    wake: Arc<flush::Wake>,
    budget: MemoryBudget,
    /// Tags whose small runs are due for a merge.
    merges: Mutex<flush::Merges>,
    /// The ingest clock as of the last flush, for the id index's filter.
    flushed_clock: FlushedClock,
}

/// The replicated state of one node. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    /// Declared first so that it drops first: its last flush needs `active`.
    _flusher: Arc<flush::Flusher>,
    root: PathBuf,
    active: Arc<RwLock<Arc<Inner>>>,
    /// Declared after `active`: replaced databases are closed before the
    /// last clone of the store is gone.
    retirements: Arc<retire::Retirements>,
}

/// Result of storing a batch of readings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestOutcome {
    pub stored: u64,
    pub duplicates: u64,
    /// Invalid readings skipped (only when asked to skip rather than reject).
    pub skipped: u64,
    /// Highest revision assigned in this batch (0 when nothing was stored).
    pub last_revision: u64,
}

/// The on-disk format this code reads and writes (meta key `format`).
/// Format 1 (no key) kept one RocksDB record per reading; format 2 kept
/// every ingested reading id as a string, forever (`reading_ids`).
pub const FORMAT: u64 = 3;
const META_FORMAT: &str = "format";

/// The format of an older database, told by a column family only it has.
const OLD_FORMATS: [(&str, u64); 2] = [("history", 1), ("reading_ids", 2)];

/// The format of the database in `dir` if it is an older one (`None`: the
/// current format, or no database yet).
fn old_format(dir: &Path) -> Option<u64> {
    let families = DB::list_cf(&Options::default(), dir).ok()?;
    OLD_FORMATS
        .into_iter()
        .find(|(family, _)| families.iter().any(|f| f == family))
        .map(|(_, format)| format)
}

/// Refuses a database written in another format, before opening it.
fn check_format(dir: &Path) -> Result<()> {
    match old_format(dir) {
        Some(found) => Err(Error::Format {
            dir: dir.to_path_buf(),
            found,
        }),
        None => Ok(()),
    }
}

/// Why the database in `dir`, in format `found`, is not opened.
fn format_error(dir: &Path, found: u64) -> Error {
    let dir = dir.to_path_buf();
    match found > FORMAT {
        true => Error::NewerFormat { dir, found },
        false => Error::Format { dir, found },
    }
}

/// Database options under `budget`: its shared block cache and memtable
/// limit (a node must fit beside others on a small industrial PC).
fn db_options(budget: &MemoryBudget) -> Options {
    let mut opts = budget.db_options();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts
}

/// The column families; `clock` is the flushed ingest clock the id
/// index's compaction filter forgets by.
fn cf_descriptors(budget: &MemoryBudget, clock: &FlushedClock) -> Vec<ColumnFamilyDescriptor> {
    ALL_CFS
        .into_iter()
        .map(|name| {
            // Every ingested reading is checked against the id index.
            let mut o = budget.family_options(name == CF_INGEST_IDS);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if name == CF_INGEST_IDS {
                ingest_ids::add_filter(&mut o, clock.clone());
            }
            ColumnFamilyDescriptor::new(name, o)
        })
        .collect()
}

fn read_u64(db: &DB, key: &str) -> Result<u64> {
    let cf = db.cf_handle(CF_META).expect("meta cf");
    match db.get_cf(cf, key)? {
        Some(v) => decode_u64(&v).ok_or_else(|| Error::Corrupt(format!("meta {key}"))),
        None => Ok(0),
    }
}

fn open_inner(dir: &Path, wakes: [Arc<flush::Wake>; 2], budget: &MemoryBudget) -> Result<Inner> {
    let [wake, merge_wake] = wakes;
    check_format(dir)?;
    let flushed_clock = FlushedClock::default();
    let db = DB::open_cf_descriptors(
        &db_options(budget),
        dir,
        cf_descriptors(budget, &flushed_clock),
    )?;
    match read_u64(&db, META_FORMAT)? {
        0 => db.put_cf(
            db.cf_handle(CF_META).expect("meta cf"),
            META_FORMAT,
            u64_key(FORMAT),
        )?,
        FORMAT => {}
        found => return Err(format_error(dir, found)),
    }
    let mut cache = Cache::default();
    {
        let cf = db.cf_handle(CF_DEVICES).expect("devices cf");
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (_, v) = item?;
            let d: Device = decode(&v)?;
            cache.devices.insert(d.name.clone(), d);
        }
        let cf = db.cf_handle(CF_TAGS).expect("tags cf");
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (_, v) = item?;
            let t: Tag = decode(&v)?;
            cache.tags.insert(t);
        }
        let meta = db.cf_handle(CF_META).expect("meta cf");
        let prefix = META_RETIRED_PREFIX.as_bytes();
        for item in db.iterator_cf(meta, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item?;
            let Some(name) = k.strip_prefix(prefix) else {
                break;
            };
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| Error::Corrupt("retired tag name is not UTF-8".into()))?;
            let id = decode_u64(&v).ok_or_else(|| Error::Corrupt(format!("retired tag {name}")))?;
            cache.tags.retire(name, id);
        }
        let prefix = polled::META_ORIGIN_PREFIX.as_bytes();
        for item in db.iterator_cf(meta, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item?;
            let Some(origin) = k.strip_prefix(prefix) else {
                break;
            };
            let origin = String::from_utf8(origin.to_vec())
                .map_err(|_| Error::Corrupt("origin name is not UTF-8".into()))?;
            cache.origins.insert(origin, decode(&v)?);
        }
        cache.users = users::Users::load(&db)?;
        cache.audit = audit::Audit::load(&db)?;
        cache.applied = db.get_cf(meta, META_APPLIED)?;
        cache.membership = db.get_cf(meta, META_MEMBERSHIP)?;
        let cf = db.cf_handle(CF_ASSIGN).expect("assignments cf");
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            let device = String::from_utf8(k.to_vec())
                .map_err(|_| Error::Corrupt("assignment key is not UTF-8".into()))?;
            cache.assignments.insert(device, decode(&v)?);
        }
    }
    cache.revision = read_u64(&db, META_REVISION)?;
    cache.oldest = read_u64(&db, META_OLDEST)?.max(1);
    cache.retention_s = read_u64(&db, META_RETENTION)?;
    cache.next_tag_id = read_u64(&db, META_NEXT_TAG_ID)?.max(1);
    cache.ingest_clock = read_u64(&db, META_INGEST_CLOCK)? as u32;
    flushed_clock.store(cache.ingest_clock, std::sync::atomic::Ordering::Relaxed);
    cache.generation = next_generation();
    let hot = Hot {
        flushed_revision: cache.revision,
        current: load_current(&db)?,
        ..Hot::default()
    };
    Ok(Inner {
        db,
        dir: dir.to_path_buf(),
        cache: RwLock::new(cache),
        hot: RwLock::new(hot),
        flushing: Mutex::new(()),
        merging: Mutex::new(()),
        merge_wake,
        wake,
        budget: budget.clone(),
        merges: Mutex::new(flush::Merges::default()),
        flushed_clock,
    })
}

fn load_current(db: &DB) -> Result<TagMap<Current>> {
    let cf = db.cf_handle(CF_CURRENT).expect("current cf");
    let mut out = TagMap::default();
    for item in db.iterator_cf(cf, IteratorMode::Start) {
        let (k, v) = item?;
        let tag = decode_u64(&k).ok_or_else(|| Error::Corrupt("current key".into()))?;
        out.insert(tag, decode_current(&v)?);
    }
    Ok(out)
}

/// Process-wide, so a generation is never repeated, not even across a
/// snapshot install that replaces the whole cache.
fn next_generation() -> u64 {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Writes `contents` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl StateStore {
    /// Opens the state under `root` with a budget of its own (see
    /// [`StateStore::open_with`]).
    pub fn open(root: &Path) -> Result<StateStore> {
        StateStore::open_with(root, &MemoryBudget::default())
    }

    /// Opens the state under `root` (creating an empty one if there is none)
    /// within `budget`, and removes database directories left behind by an
    /// interrupted install.
    pub fn open_with(root: &Path, budget: &MemoryBudget) -> Result<StateStore> {
        fs::create_dir_all(root)?;
        let pointer = root.join(POINTER);
        let active_name = match fs::read_to_string(&pointer) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = "sm-1".to_string();
                write_atomic(&pointer, name.as_bytes())?;
                name
            }
            Err(e) => return Err(e.into()),
        };
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("sm-") && name != active_name && entry.path().is_dir() {
                tracing::info!(dir = %entry.path().display(), "removing stale state directory");
                // Garbage only: failing to remove it (say, an old install
                // thread is removing it too) must not stop the node.
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove stale state directory");
                }
            }
        }
        let wake = Arc::new(flush::Wake::default());
        let merge_wake = Arc::new(flush::Wake::default());
        let wakes = [wake.clone(), merge_wake.clone()];
        let inner = open_inner(&root.join(&active_name), wakes, budget)?;
        let active = Arc::new(RwLock::new(Arc::new(inner)));
        Ok(StateStore {
            root: root.to_path_buf(),
            _flusher: Arc::new(flush::Flusher::start(
                Arc::downgrade(&active),
                wake,
                merge_wake,
            )),
            active,
            retirements: Arc::default(),
        })
    }

    fn inner(&self) -> Arc<Inner> {
        self.active.read().clone()
    }

    /// Runs `f` on the active database.
    pub(crate) fn with_db<R>(&self, f: impl FnOnce(&DB) -> R) -> R {
        f(&self.inner().db)
    }

    /// Starts an atomic batch of changes. Only one batch may be open at a time
    /// (the consensus layer applies entries from one task).
    pub fn batch(&self) -> ApplyBatch {
        let inner = self.inner();
        let (revision, next_tag_id, oldest, ingest_clock) = {
            let c = inner.cache.read();
            (c.revision, c.next_tag_id, c.oldest, c.ingest_clock)
        };
        ApplyBatch {
            inner,
            ops: Ops::default(),
            devices: HashMap::new(),
            tags: HashMap::new(),
            retired: HashMap::new(),
            prev_revision: revision,
            revision,
            oldest,
            retention_s: None,
            collected: None,
            requests: HashMap::new(),
            next_tag_id,
            applied: None,
            membership: None,
            ids: IdMap::default(),
            ingest_clock,
            current: TagMap::default(),
            newest: TagMap::default(),
            tail: TagMap::default(),
            journal: Vec::new(),
            purged: Vec::new(),
            origins: HashMap::new(),
            users: users::Pending::default(),
            audit: audit::PendingAudit::default(),
            assignments: HashMap::new(),
        }
    }

    /// Opaque "last applied" record of the consensus layer.
    pub fn applied(&self) -> Option<Vec<u8>> {
        self.inner().cache.read().applied.clone()
    }

    /// Opaque "last membership" record of the consensus layer.
    pub fn membership(&self) -> Option<Vec<u8>> {
        self.inner().cache.read().membership.clone()
    }

    /// A number that changes whenever devices, tags or assignments change,
    /// so a watcher can skip work when nothing did.
    pub fn config_generation(&self) -> u64 {
        self.inner().cache.read().generation
    }

    /// The tags of the devices `wanted` picks, grouped by device, in one
    /// pass; other devices' tags are not copied (a node copies only the
    /// tags it polls, not the whole plant's). Each list is sized to fit.
    pub fn tags_by_device(&self, wanted: impl Fn(&str) -> bool) -> HashMap<String, Vec<Tag>> {
        let inner = self.inner();
        let c = inner.cache.read();
        let mut out: HashMap<String, Vec<Tag>> = HashMap::new();
        for t in c.tags.iter().filter(|t| wanted(&t.device)) {
            out.entry(t.device.clone()).or_default().push(t.clone());
        }
        out.values_mut().for_each(Vec::shrink_to_fit);
        out
    }

    /// Which node polls each device.
    pub fn assignments(&self) -> BTreeMap<String, Assignment> {
        self.inner().cache.read().assignments.clone()
    }

    pub fn assignment(&self, device: &str) -> Option<Assignment> {
        self.inner().cache.read().assignments.get(device).copied()
    }

    /// The highest revision assigned to a committed reading.
    pub fn revision(&self) -> u64 {
        self.inner().cache.read().revision
    }

    /// The oldest revision still held: readings with a smaller revision have
    /// been removed by retention. 1 when nothing was ever removed.
    pub fn oldest_revision(&self) -> u64 {
        self.inner().cache.read().oldest
    }

    /// History retention in seconds (0: keep forever).
    pub fn retention_seconds(&self) -> u64 {
        self.inner().cache.read().retention_s
    }

    pub fn device(&self, name: &str) -> Option<Device> {
        self.inner().cache.read().devices.get(name).cloned()
    }

    /// Calls `f` with every device in name order, under the config cache's
    /// read lock and without copying them (config writes wait meanwhile, so
    /// `f` must not block).
    pub fn with_devices<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &Device>) -> R) -> R {
        let inner = self.inner();
        let c = inner.cache.read();
        f(&mut c.devices.values())
    }

    pub fn devices(&self) -> Vec<Device> {
        self.inner()
            .cache
            .read()
            .devices
            .values()
            .cloned()
            .collect()
    }

    pub fn tag(&self, name: &str) -> Option<Tag> {
        self.inner().cache.read().tags.get(name).cloned()
    }

    /// All tags, or those of one device, by name.
    pub fn tags(&self, device: Option<&str>) -> Vec<Tag> {
        let inner = self.inner();
        let c = inner.cache.read();
        c.tags
            .iter()
            .filter(|t| device.is_none_or(|d| t.device == d))
            .cloned()
            .collect()
    }

    /// Writes everything applied so far to the database and makes it
    /// durable (see [`StateStore::flush`]).
    pub fn sync(&self) -> Result<()> {
        self.flush().map(|_| ())
    }

    /// Flushes, then writes a consistent RocksDB checkpoint of the whole
    /// state into `dest` (which must not exist); SST files are hard-linked,
    /// not copied. The checkpoint's applied index says what it holds.
    pub fn checkpoint(&self, dest: &Path) -> Result<()> {
        let inner = self.inner();
        inner.flush()?;
        let cp = rocksdb::checkpoint::Checkpoint::new(&inner.db)?;
        cp.create_checkpoint(dest)?;
        Ok(())
    }

    /// Reads what the checkpoint in `dir` holds ([`CheckpointMeta`]).
    /// An old format is told by its column families, which are not opened.
    pub fn checkpoint_meta(dir: &Path) -> Result<CheckpointMeta> {
        if let Some(found) = old_format(dir) {
            return Err(format_error(dir, found));
        }
        let db = DB::open_cf_for_read_only(&Options::default(), dir, [CF_META], false)?;
        let meta = db.cf_handle(CF_META).expect("meta cf");
        Ok(CheckpointMeta {
            applied: db.get_cf(meta, META_APPLIED)?,
            membership: db.get_cf(meta, META_MEMBERSHIP)?,
            revision: read_u64(&db, META_REVISION)?,
            format: read_u64(&db, META_FORMAT)?,
        })
    }

    /// Replaces the whole state with the checkpoint in `src` (moved, not
    /// copied). Atomic: after a crash the node has either the old or the new
    /// state, never a mixture (crash point `install-before-switch` is the
    /// moment before the pointer file names the new one).
    pub fn install(&self, src: &Path) -> Result<()> {
        let mut active = self.active.write();
        let current = active
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("sm-1");
        let n: u64 = current.trim_start_matches("sm-").parse().unwrap_or(1);
        let name = format!("sm-{}", n + 1);
        let dest = self.root.join(&name);
        if dest.exists() {
            fs::remove_dir_all(&dest)?;
        }
        fs::rename(src, &dest)?;
        let wakes = [active.wake.clone(), active.merge_wake.clone()];
        let inner = open_inner(&dest, wakes, &active.budget)?;
        inner.db.flush_wal(true)?;
        crate::crash::point("install-before-switch");
        write_atomic(&self.root.join(POINTER), name.as_bytes())?;
        let old = std::mem::replace(&mut *active, Arc::new(inner));
        drop(active);
        // Readers may still hold the old database; it is removed once they are done.
        self.retirements.retire(old);
        Ok(())
    }

    /// Directory of the active database (for tests and diagnostics).
    pub fn active_dir(&self) -> PathBuf {
        self.inner().dir.clone()
    }
}

fn cf<'a>(inner: &'a Inner, name: &str) -> &'a rocksdb::ColumnFamily {
    inner
        .db
        .cf_handle(name)
        .expect("column family created at open")
}

fn point_to_reading(tag: &str, p: Point) -> Reading {
    Reading {
        id: p.id.unwrap_or_default(),
        tag: tag.to_string(),
        ts_us: p.ts_us,
        server_ts_us: p.server_ts_us,
        value: p.value,
        quality: p.quality,
        revision: p.revision,
    }
}

/// An atomic set of changes to the state. Checks see earlier changes of the
/// same batch. Nothing is visible to readers until [`ApplyBatch::commit`].
pub struct ApplyBatch {
    inner: Arc<Inner>,
    ops: Ops,
    devices: HashMap<String, Option<Device>>,
    tags: HashMap<String, Option<Tag>>,
    /// Retired tags as changed by this batch (`None`: no longer retired).
    retired: HashMap<String, Option<u64>>,
    /// Revision when the batch started, and as changed by it.
    prev_revision: u64,
    revision: u64,
    oldest: u64,
    retention_s: Option<u64>,
    /// Readings stored by this batch, when asked for (see
    /// [`ApplyBatch::collect_readings`]).
    collected: Option<Vec<Reading>>,
    /// Request results recorded by this batch: id -> (log index, result).
    requests: HashMap<String, (u64, Vec<u8>)>,
    next_tag_id: u64,
    applied: Option<Vec<u8>>,
    membership: Option<Vec<u8>>,
    /// Ingested reading ids stored by this batch: fingerprint -> minute.
    ids: IdMap,
    /// The ingest clock, as moved by this batch (see `ingest_ids`).
    ingest_clock: u32,
    /// Current values as changed by this batch (`None`: the tag went).
    current: TagMap<Option<Current>>,
    /// `(ts, revision)` of the newest reading this batch stored per tag,
    /// when it replaces the current value.
    newest: TagMap<(i64, u64)>,
    /// Readings stored by this batch, per tag id, in revision order.
    tail: TagMap<Vec<HotPoint>>,
    /// `(tag id, ts)` of each revision this batch assigned.
    journal: Vec<(u64, i64)>,
    /// Tags whose history this batch purged.
    purged: Vec<u64>,
    /// Origins whose settled records this batch changed.
    origins: HashMap<String, polled::OriginState>,
    assignments: HashMap<String, Option<Assignment>>,
    /// Users and sessions as changed by this batch.
    users: users::Pending,
    /// Audit records and retention as changed by this batch.
    audit: audit::PendingAudit,
}

/// What a committed batch changed, for those who follow the state.
#[derive(Debug, Default)]
pub struct Committed {
    /// Revision before and after the batch: readings `prev_revision + 1 ..=
    /// revision` were stored by it.
    pub prev_revision: u64,
    pub revision: u64,
    /// Those readings in revision order, if collected.
    pub readings: Option<Vec<Reading>>,
}

impl ApplyBatch {
    /// Keeps a copy of every reading this batch stores, returned by
    /// [`ApplyBatch::commit`] (costs a clone per reading; ask only when
    /// someone listens).
    pub fn collect_readings(&mut self) {
        self.collected.get_or_insert_with(Vec::new);
    }

    /// The result recorded for request `id` by [`ApplyBatch::remember_request`]
    /// at a log index at or after `not_before` (older ones count as
    /// forgotten, whether or not they were removed yet).
    pub fn request_result(&self, id: &str, not_before: u64) -> Result<Option<Vec<u8>>> {
        let found = match self.requests.get(id) {
            Some(r) => Some(r.clone()),
            None => match self.inner.hot.read().request(id) {
                Some(r) => Some(r),
                None => self
                    .inner
                    .db
                    .get_cf(cf(&self.inner, CF_REQUESTS), id.as_bytes())?
                    .map(|v| {
                        let index = decode_u64(&v).unwrap_or(0);
                        (index, v.get(8..).unwrap_or_default().to_vec())
                    }),
            },
        };
        Ok(found
            .filter(|(index, _)| *index >= not_before)
            .map(|(_, r)| r))
    }

    /// Records the (opaque) result of request `id`, applied at log `index`,
    /// so that a retry of the same request gets it instead of applying
    /// again; and removes requests applied before `forget_before` that
    /// the database holds.
    pub fn remember_request(
        &mut self,
        id: &str,
        index: u64,
        result: Vec<u8>,
        forget_before: u64,
    ) -> Result<()> {
        let by_index = cf(&self.inner, CF_REQUESTS_BY_INDEX);
        // Keys are index | id, so this is a prefix scan.
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(u64_key(forget_before).to_vec());
        for item in self
            .inner
            .db
            .iterator_cf_opt(by_index, ro, IteratorMode::Start)
        {
            let (k, _) = item?;
            self.ops.delete(CF_REQUESTS, &k[8..]);
            self.ops.delete(CF_REQUESTS_BY_INDEX, &k);
        }
        let mut key = u64_key(index).to_vec();
        key.extend_from_slice(id.as_bytes());
        self.ops.put(CF_REQUESTS_BY_INDEX, key, []);
        let mut v = u64_key(index).to_vec();
        v.extend_from_slice(&result);
        self.ops.put(CF_REQUESTS, id.as_bytes(), v);
        self.requests.insert(id.to_string(), (index, result));
        Ok(())
    }

    /// Oldest revision held, as changed by this batch.
    pub fn oldest_revision(&self) -> u64 {
        self.oldest
    }

    /// Sets the history retention (0: keep forever).
    pub fn set_retention(&mut self, seconds: u64) {
        self.ops.put(CF_META, META_RETENTION, u64_key(seconds));
        self.retention_s = Some(seconds);
    }

    /// Removes every reading with a revision below `below` (history,
    /// journal and reading id; current values stay) and makes `below` the
    /// oldest revision held; readers stop seeing them at once, the space is
    /// freed by the next flush. Only readings already committed are looked
    /// at, so it must start a batch of its own (the caller commits what came
    /// before first); it flushes them first. Returns how many readings were
    /// removed.
    pub fn compact(&mut self, below: u64) -> Result<u64> {
        let below = below.min(self.revision + 1);
        if below <= self.oldest {
            return Ok(0);
        }
        self.inner.flush()?;
        let (db, oldest) = (&self.inner.db, self.oldest);
        let ops = &mut self.ops;
        let removed = self
            .inner
            .merge_all_segments_then(|| revisions::remove_below(db, oldest, below, ops))??;
        self.ops.put(CF_META, META_OLDEST, u64_key(below));
        self.oldest = below;
        Ok(removed)
    }

    fn device(&self, name: &str) -> Option<Device> {
        match self.devices.get(name) {
            Some(d) => d.clone(),
            None => self.inner.cache.read().devices.get(name).cloned(),
        }
    }

    fn tag(&self, name: &str) -> Option<Tag> {
        match self.tags.get(name) {
            Some(t) => t.clone(),
            None => self.inner.cache.read().tags.get(name).cloned(),
        }
    }

    /// Records the consensus layer's "last applied" marker in this batch.
    pub fn set_applied(&mut self, bytes: Vec<u8>) {
        self.ops.put(CF_META, META_APPLIED, &bytes);
        self.applied = Some(bytes);
    }

    /// Records the consensus layer's membership in this batch.
    pub fn set_membership(&mut self, bytes: Vec<u8>) {
        self.ops.put(CF_META, META_MEMBERSHIP, &bytes);
        self.membership = Some(bytes);
    }

    /// Creates or replaces a device. `expected_revision`, when set, must equal
    /// the device's current revision (0 = must not exist).
    pub fn put_device(
        &mut self,
        mut device: Device,
        create_only: bool,
        expected_revision: Option<u64>,
        revision: u64,
    ) -> Result<Device, Rejection> {
        device.validate()?;
        let existing = self.device(&device.name);
        if create_only && existing.is_some() {
            return Err(Rejection::exists(format!(
                "device '{}' already exists",
                device.name
            )));
        }
        check_expected(
            "device",
            &device.name,
            existing.as_ref().map(|d| d.revision),
            expected_revision,
        )?;
        device.revision = revision;
        self.ops
            .put(CF_DEVICES, device.name.as_bytes(), encode(&device));
        self.devices
            .insert(device.name.clone(), Some(device.clone()));
        Ok(device)
    }

    /// Deletes a device that no tag refers to.
    pub fn delete_device(&mut self, name: &str) -> Result<(), Rejection> {
        if self.device(name).is_none() {
            return Err(Rejection::not_found(format!("unknown device '{name}'")));
        }
        let mut users: Vec<String> = {
            let c = self.inner.cache.read();
            c.tags
                .iter()
                .filter(|t| t.device == name && !self.tags.contains_key(&t.name))
                .map(|t| t.name.clone())
                .collect()
        };
        users.extend(
            self.tags
                .values()
                .flatten()
                .filter(|t| t.device == name)
                .map(|t| t.name.clone()),
        );
        if !users.is_empty() {
            users.sort();
            return Err(Rejection::precondition(format!(
                "device '{name}' still has {} tag(s) ({}); delete them first",
                users.len(),
                users.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        self.ops.delete(CF_DEVICES, name.as_bytes());
        self.ops.delete(CF_ASSIGN, name.as_bytes());
        self.devices.insert(name.to_string(), None);
        self.assignments.insert(name.to_string(), None);
        Ok(())
    }

    fn assignment(&self, device: &str) -> Option<Assignment> {
        match self.assignments.get(device) {
            Some(a) => *a,
            None => self.inner.cache.read().assignments.get(device).copied(),
        }
    }

    /// Assigns `device` to `node` (or unassigns it). The epoch becomes
    /// `index` when the owner changes, so a stale owner can tell it was replaced.
    pub fn assign(&mut self, device: &str, node: Option<u64>, index: u64) -> Result<(), Rejection> {
        let current = self.assignment(device);
        match node {
            None => {
                self.ops.delete(CF_ASSIGN, device.as_bytes());
                self.assignments.insert(device.to_string(), None);
            }
            Some(node) => {
                if self.device(device).is_none() {
                    return Err(Rejection::not_found(format!(
                        "cannot assign unknown device '{device}'"
                    )));
                }
                if current.is_some_and(|a| a.node == node) {
                    return Ok(());
                }
                let a = Assignment { node, epoch: index };
                self.ops.put(CF_ASSIGN, device.as_bytes(), encode(&a));
                self.assignments.insert(device.to_string(), Some(a));
            }
        }
        Ok(())
    }

    /// Creates or replaces a tag; a replaced tag keeps its id and history.
    pub fn put_tag(
        &mut self,
        mut tag: Tag,
        create_only: bool,
        expected_revision: Option<u64>,
        revision: u64,
    ) -> Result<Tag, Rejection> {
        tag.validate()?;
        if self.device(&tag.device).is_none() {
            return Err(Rejection::invalid(format!(
                "tag '{}': unknown device '{}'",
                tag.name, tag.device
            )));
        }
        let existing = self.tag(&tag.name);
        if create_only && existing.is_some() {
            return Err(Rejection::exists(format!(
                "tag '{}' already exists",
                tag.name
            )));
        }
        check_expected(
            "tag",
            &tag.name,
            existing.as_ref().map(|t| t.revision),
            expected_revision,
        )?;
        tag.id = match (&existing, self.retired_id(&tag.name)) {
            (Some(t), _) => t.id,
            (None, Some(id)) => {
                self.unretire(&tag.name);
                id
            }
            (None, None) => {
                let id = self.next_tag_id;
                self.next_tag_id += 1;
                self.ops
                    .put(CF_META, META_NEXT_TAG_ID, u64_key(self.next_tag_id));
                id
            }
        };
        tag.revision = revision;
        self.ops.put(CF_TAGS, tag.name.as_bytes(), encode(&tag));
        self.tags.insert(tag.name.clone(), Some(tag.clone()));
        Ok(tag)
    }

    /// Creates or replaces many devices and tags, all or nothing: everything
    /// is checked before anything is written.
    pub fn import(
        &mut self,
        devices: Vec<Device>,
        tags: Vec<Tag>,
        revision: u64,
    ) -> Result<(u64, u64), Rejection> {
        let mut names = std::collections::HashSet::new();
        for d in &devices {
            d.validate()?;
            if !names.insert(d.name.as_str()) {
                return Err(Rejection::invalid(format!(
                    "import lists device '{}' twice",
                    d.name
                )));
            }
        }
        let mut tag_names = std::collections::HashSet::new();
        for t in &tags {
            t.validate()?;
            if !tag_names.insert(t.name.as_str()) {
                return Err(Rejection::invalid(format!(
                    "import lists tag '{}' twice",
                    t.name
                )));
            }
            if !names.contains(t.device.as_str()) && self.device(&t.device).is_none() {
                return Err(Rejection::invalid(format!(
                    "tag '{}': unknown device '{}'",
                    t.name, t.device
                )));
            }
        }
        let counts = (devices.len() as u64, tags.len() as u64);
        for d in devices {
            self.put_device(d, false, None, revision)?;
        }
        for t in tags {
            self.put_tag(t, false, None, revision)?;
        }
        Ok(counts)
    }

    /// Deletes a tag and its current value. With `purge` its history goes
    /// too; without, the history is kept under the tag's id and a tag created
    /// again under the same name continues it. Purging a name that was
    /// deleted earlier without purge erases the history it kept.
    pub fn delete_tag(&mut self, name: &str, purge: bool) -> Result<(), Rejection> {
        let id = match (self.tag(name), self.retired_id(name)) {
            (Some(tag), _) => {
                self.ops.delete(CF_TAGS, name.as_bytes());
                self.current.insert(tag.id, None);
                self.newest.remove(&tag.id);
                self.tags.insert(name.to_string(), None);
                tag.id
            }
            (None, Some(id)) if purge => {
                self.unretire(name);
                id
            }
            (None, Some(_)) => {
                return Err(Rejection::not_found(format!(
                    "tag '{name}' was already deleted (its history is kept; --purge erases it)"
                )))
            }
            (None, None) => return Err(Rejection::not_found(format!("unknown tag '{name}'"))),
        };
        if purge {
            let (chunks, runs) = chunks::tag_ranges(id);
            self.ops.delete_range(CF_CHUNKS, chunks.0, chunks.1);
            self.ops.delete_range(CF_RUNS, runs.0, runs.1);
            self.tail.remove(&id);
            self.purged.push(id);
        } else {
            self.ops.put(CF_META, retired_key(name), u64_key(id));
            self.retired.insert(name.to_string(), Some(id));
        }
        Ok(())
    }

    /// The id of `name` if it is a retired tag (deleted, history kept).
    fn retired_id(&self, name: &str) -> Option<u64> {
        match self.retired.get(name) {
            Some(id) => *id,
            None => self.inner.cache.read().tags.retired_id(name),
        }
    }

    fn unretire(&mut self, name: &str) {
        self.ops.delete(CF_META, retired_key(name));
        self.retired.insert(name.to_string(), None);
    }

    /// Adds one new reading of tag `tag_id` (named `tag`) to the batch.
    fn store_point(&mut self, tag_id: u64, tag: &str, point: Point) {
        self.journal.push((tag_id, point.ts_us));
        if let Some(c) = self.collected.as_mut() {
            c.push(point_to_reading(tag, point.clone()));
        }
        if self.is_newer(tag_id, point.ts_us, point.revision) {
            // Made a current value once per tag, at commit.
            self.newest.insert(tag_id, (point.ts_us, point.revision));
        }
        self.tail
            .entry(tag_id)
            .or_default()
            .push(HotPoint::from_point(point));
    }

    /// Whether a reading at `(ts, rev)` replaces the tag's current value.
    fn is_newer(&self, tag_id: u64, ts: i64, rev: u64) -> bool {
        let existing = match (self.newest.get(&tag_id), self.current.get(&tag_id)) {
            (Some(&pos), _) => Some(pos),
            (None, Some(c)) => c.as_ref().map(|c| (c.ts_us, c.revision)),
            (None, None) => self
                .inner
                .hot
                .read()
                .current
                .get(&tag_id)
                .map(|c| (c.ts_us, c.revision)),
        };
        existing.is_none_or(|old| (ts, rev) >= old)
    }

    /// Publishes the batch's changes to readers; the next flush writes them
    /// (the Raft log is the durable record until then). Waits for a flush
    /// when the unflushed state is far over its budget.
    pub fn commit(mut self) -> Result<Committed> {
        // Lock order: hot, then cache. Both change together, so a reader
        // never sees a revision without its reading.
        let mut hot_guard = self.inner.hot.write();
        let mut c = self.inner.cache.write();
        if !(self.devices.is_empty() && self.tags.is_empty() && self.assignments.is_empty()) {
            c.generation = next_generation();
        }
        for (name, d) in self.devices {
            match d {
                Some(d) => c.devices.insert(name, d),
                None => c.devices.remove(&name),
            };
        }
        for (name, t) in self.tags {
            match t {
                Some(t) => c.tags.insert(t),
                None => drop(c.tags.remove(&name)),
            }
        }
        for (name, id) in self.retired {
            match id {
                Some(id) => c.tags.retire(name, id),
                None => c.tags.unretire(&name),
            }
        }
        for (name, a) in self.assignments {
            match a {
                Some(a) => c.assignments.insert(name, a),
                None => c.assignments.remove(&name),
            };
        }
        c.origins.extend(self.origins);
        c.users.apply(self.users);
        c.audit.apply(self.audit);
        c.revision = self.revision;
        c.oldest = self.oldest;
        if let Some(r) = self.retention_s {
            c.retention_s = r;
        }
        c.next_tag_id = self.next_tag_id;
        if self.ingest_clock != c.ingest_clock {
            c.ingest_clock = self.ingest_clock;
            let clock = u64::from(self.ingest_clock);
            self.ops.put(CF_META, META_INGEST_CLOCK, u64_key(clock));
        }
        if let Some(a) = self.applied {
            c.applied = Some(a);
        }
        if let Some(m) = self.membership {
            c.membership = Some(m);
        }
        drop(c);
        let hot = &mut *hot_guard;
        for tag in &self.purged {
            hot.drop_tail(*tag);
        }
        for (tag, (_, revision)) in self.newest {
            let point = self
                .tail
                .get(&tag)
                .and_then(|ps| ps.iter().rev().find(|p| p.revision == revision));
            if let Some(p) = point {
                self.current.insert(tag, Some(p.clone()));
            }
        }
        hot.add_readings(self.tail, self.journal);
        for (tag, current) in self.current {
            match current {
                Some(c) => hot.current.insert(tag, c),
                None => hot.current.remove(&tag),
            };
            hot.dirty_current.insert(tag);
        }
        if self.revision != self.prev_revision {
            self.ops.put(CF_META, META_REVISION, u64_key(self.revision));
        }
        hot.ops.append(self.ops);
        hot.ids.extend(self.ids);
        hot.requests.extend(self.requests);
        // Flush at the limit; past twice the limit, counting what a running
        // flush holds, wait for the flush.
        let limit = self.inner.budget.unflushed_limit();
        let (full, far_over) = (
            hot.bytes >= limit,
            hot.bytes + hot.frozen_bytes >= 2 * limit,
        );
        drop(hot_guard);
        if far_over {
            // The flush is not keeping up: apply waits for one, so memory
            // stays bounded and commits slow down to what the disk takes.
            self.inner.flush()?;
        } else if full {
            self.inner.wake.kick();
        }
        Ok(Committed {
            prev_revision: self.prev_revision,
            revision: self.revision,
            readings: self.collected,
        })
    }
}

fn check_expected(
    what: &str,
    name: &str,
    actual: Option<u64>,
    expected: Option<u64>,
) -> Result<(), Rejection> {
    match expected {
        None => Ok(()),
        Some(e) if e == actual.unwrap_or(0) => Ok(()),
        Some(e) => Err(Rejection::precondition(format!(
            "{what} '{name}': expected revision {e}, but it is {}",
            match actual {
                Some(a) => a.to_string(),
                None => "absent".to_string(),
            }
        ))),
    }
}

mod audit;
mod chunks;
#[cfg(test)]
mod engine_tests;
mod flush;
mod hot;
mod ingest;
mod ingest_ids;
mod journal;
mod migrate;
mod ops;
mod polled;
mod read;
mod retire;
mod revisions;
mod scan;
mod segments;
mod summarize;
mod tag_index;
mod users;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Assignment, DataType, NewReading, Protocol, QualityLevel};
    use crate::RejectionKind;

    fn device(name: &str) -> Device {
        Device {
            retries: 1,
            ..Device::new(name, Protocol::ModbusTcp, "127.0.0.1:502")
        }
    }

    fn tag(name: &str, dev: &str, ty: DataType) -> Tag {
        Tag::new(name, dev, "hr:0", ty)
    }

    fn reading(id: &str, tag: &str, ts: i64, v: f64) -> NewReading {
        NewReading {
            id: id.into(),
            tag: tag.into(),
            ts_us: ts,
            server_ts_us: ts,
            value: Some(Value::Float(v)),
            quality: Quality::good(),
        }
    }

    trait Strict {
        fn insert_all(&mut self, r: Vec<NewReading>) -> Result<Result<IngestOutcome, Rejection>>;
    }
    impl Strict for ApplyBatch {
        fn insert_all(&mut self, r: Vec<NewReading>) -> Result<Result<IngestOutcome, Rejection>> {
            self.insert_readings(r, false)
        }
    }

    #[test]
    fn request_results_are_remembered_across_batches_and_reopen_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            let mut b = s.batch();
            assert_eq!(b.request_result("r1", 0).unwrap(), None);
            b.remember_request("r1", 10, b"one".to_vec(), 0).unwrap();
            // Seen within the same batch...
            assert_eq!(b.request_result("r1", 0).unwrap(), Some(b"one".to_vec()));
            b.commit().unwrap();
            let mut b = s.batch();
            // ...and in later ones.
            assert_eq!(b.request_result("r1", 0).unwrap(), Some(b"one".to_vec()));
            b.remember_request("r2", 20, b"two".to_vec(), 0).unwrap();
            b.commit().unwrap();
        }
        let s = StateStore::open(dir.path()).unwrap();
        let mut b = s.batch();
        assert_eq!(b.request_result("r2", 0).unwrap(), Some(b"two".to_vec()));
        // Forgetting everything applied before index 15 drops r1 only.
        b.remember_request("r3", 30, b"three".to_vec(), 15).unwrap();
        b.commit().unwrap();
        // From index 15 on, r1 is forgotten whether or not it was removed
        // yet; the next flush removes it.
        let b = s.batch();
        assert_eq!(b.request_result("r1", 15).unwrap(), None);
        assert_eq!(b.request_result("r2", 15).unwrap(), Some(b"two".to_vec()));
        assert_eq!(b.request_result("r3", 15).unwrap(), Some(b"three".to_vec()));
        drop(b);
        s.flush().unwrap();
        assert_eq!(s.batch().request_result("r1", 0).unwrap(), None, "removed");
    }

    #[test]
    fn polled_readings_skip_what_no_longer_fits_instead_of_rejecting() {
        let (_d, s) = setup();
        let mut b = s.batch();
        let out = b
            .insert_readings(
                vec![
                    reading("ok", "l1/t", 1, 1.0),
                    reading("gone", "deleted/tag", 1, 1.0),
                    reading("frac", "l1/p", 1, 1.5),
                ],
                true,
            )
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        assert_eq!((out.stored, out.skipped, out.duplicates), (1, 2, 0));
        assert_eq!(history_values(&s, "l1/t").len(), 1);
    }

    #[test]
    fn config_generation_changes_with_config_only() {
        let (_d, s) = setup();
        let g0 = s.config_generation();
        let mut b = s.batch();
        b.insert_readings(vec![reading("a", "l1/t", 1, 1.0)], false)
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        assert_eq!(s.config_generation(), g0, "readings are not config");
        let mut b = s.batch();
        b.assign("plc1", Some(1), 3).unwrap();
        b.commit().unwrap();
        let g1 = s.config_generation();
        assert_ne!(g1, g0);
        let by_dev = s.tags_by_device(|d| d == "plc1");
        assert_eq!(by_dev["plc1"].len(), 2);
    }

    #[test]
    fn tags_by_device_copies_only_the_devices_wanted() {
        let (_d, s) = setup();
        let mut b = s.batch();
        b.put_device(device("plc2"), true, None, 2).unwrap();
        b.put_tag(tag("l2/t", "plc2", DataType::F64), true, None, 2)
            .unwrap();
        b.commit().unwrap();
        let only_plc2 = s.tags_by_device(|d| d == "plc2");
        let names: Vec<&str> = only_plc2["plc2"].iter().map(|t| t.name.as_str()).collect();
        assert_eq!((only_plc2.len(), names), (1, vec!["l2/t"]));
        assert!(s.tags_by_device(|_| false).is_empty());
        let all = s.tags_by_device(|_| true);
        assert_eq!((all["plc1"].len(), all["plc2"].len()), (2, 1));
        let mut seen = vec![];
        s.with_devices(|ds| seen.extend(ds.map(|d| d.name.clone())));
        assert_eq!(seen, ["plc1", "plc2"]);
    }

    #[test]
    fn assignments_change_epoch_only_when_the_owner_changes() {
        let (_d, s) = setup();
        let mut b = s.batch();
        b.assign("plc1", Some(2), 10).unwrap();
        assert!(b.assign("ghost", Some(1), 10).is_err());
        b.commit().unwrap();
        assert_eq!(
            s.assignment("plc1"),
            Some(Assignment { node: 2, epoch: 10 })
        );
        let mut b = s.batch();
        b.assign("plc1", Some(2), 11).unwrap();
        b.commit().unwrap();
        assert_eq!(
            s.assignment("plc1").unwrap().epoch,
            10,
            "same owner keeps its epoch"
        );
        let mut b = s.batch();
        b.assign("plc1", Some(3), 12).unwrap();
        b.commit().unwrap();
        assert_eq!(
            s.assignment("plc1"),
            Some(Assignment { node: 3, epoch: 12 })
        );
        // Deleting the device drops its assignment.
        let mut b = s.batch();
        b.delete_tag("l1/t", false).unwrap();
        b.delete_tag("l1/p", true).unwrap();
        b.delete_device("plc1").unwrap();
        b.commit().unwrap();
        assert!(s.assignments().is_empty());
    }

    fn setup() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let mut b = s.batch();
        b.put_device(device("plc1"), true, None, 1).unwrap();
        b.put_tag(tag("l1/t", "plc1", DataType::F64), true, None, 1)
            .unwrap();
        b.put_tag(tag("l1/p", "plc1", DataType::I16), true, None, 1)
            .unwrap();
        b.commit().unwrap();
        (dir, s)
    }

    fn history_values(s: &StateStore, tag: &str) -> Vec<(i64, Option<Value>, u64)> {
        let mut out = vec![];
        let tag = s.tag(tag).unwrap();
        s.scan_history_between(&tag, (i64::MIN, 0), (i64::MAX, u64::MAX), false, |r| {
            out.push((r.ts_us, r.value, r.revision));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn readings_get_revisions_history_and_current() {
        let (_d, s) = setup();
        let mut b = s.batch();
        let out = b
            .insert_all(vec![
                reading("a", "l1/t", 20, 2.0),
                reading("b", "l1/t", 10, 1.0),
                reading("c", "l1/t", 30, 3.0),
            ])
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        assert_eq!(
            out,
            IngestOutcome {
                stored: 3,
                duplicates: 0,
                skipped: 0,
                last_revision: 3
            }
        );
        assert_eq!(
            history_values(&s, "l1/t"),
            vec![
                (10, Some(Value::Float(1.0)), 2),
                (20, Some(Value::Float(2.0)), 1),
                (30, Some(Value::Float(3.0)), 3)
            ]
        );
        let cur = s.current("l1/t").unwrap().unwrap().unwrap();
        assert_eq!((cur.ts_us, cur.revision), (30, 3));
        // An older reading arriving later does not replace the current value.
        let mut b = s.batch();
        b.insert_all(vec![reading("d", "l1/t", 5, 0.5)])
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        assert_eq!(s.current("l1/t").unwrap().unwrap().unwrap().ts_us, 30);
        assert_eq!(s.revision(), 4);
        let revs: Vec<u64> = s
            .readings_after(1, 10)
            .unwrap()
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(revs, vec![2, 3, 4]);
        assert!(s.current("nope").unwrap().is_err());
        assert_eq!(s.current("l1/p").unwrap().unwrap(), None);
    }

    #[test]
    fn duplicate_ids_are_stored_once_across_and_within_batches() {
        let (_d, s) = setup();
        let mut b = s.batch();
        let out = b
            .insert_all(vec![
                reading("a", "l1/t", 1, 1.0),
                reading("a", "l1/t", 2, 2.0),
            ])
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        assert_eq!((out.stored, out.duplicates), (1, 1));
        let mut b = s.batch();
        let out = b
            .insert_all(vec![
                reading("a", "l1/t", 1, 1.0),
                reading("z", "l1/t", 3, 3.0),
            ])
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        assert_eq!((out.stored, out.duplicates), (1, 1));
        assert_eq!(history_values(&s, "l1/t").len(), 2);
    }

    /// Ingests one reading with id `id` received at `minute` (of the
    /// ingest clock); returns (stored, duplicates).
    fn ingest_at(s: &StateStore, id: &str, minute: i64) -> (u64, u64) {
        let mut r = reading(id, "l1/t", minute * 60_000_000, 1.0);
        r.server_ts_us = r.ts_us;
        let mut b = s.batch();
        let out = b.insert_all(vec![r]).unwrap().unwrap();
        b.commit().unwrap();
        (out.stored, out.duplicates)
    }

    fn ids_on_disk(s: &StateStore) -> usize {
        s.with_db(|db| {
            let cf = db.cf_handle(CF_INGEST_IDS).unwrap();
            db.iterator_cf(cf, IteratorMode::Start).count()
        })
    }

    #[test]
    fn an_ingested_id_is_remembered_for_the_window_across_flush_and_reopen_then_forgotten() {
        let (d, s) = setup();
        let start = 29_000_000; // minutes since the epoch (2025)
        let window = i64::from(ingest_ids::WINDOW_MINUTES);
        assert_eq!(ingest_at(&s, "x", start), (1, 0));
        s.flush().unwrap();
        drop(s);
        let s = StateStore::open(d.path()).unwrap();
        // The clock is where the newest ingested reading put it.
        assert_eq!(ingest_at(&s, "x", start + window - 1), (0, 1));
        assert_eq!(ingest_at(&s, "y", start + window), (1, 0));
        assert_eq!(ingest_at(&s, "x", start + window), (0, 1), "still inside");
        // Another reading moves the clock one minute past x's window: x is
        // forgotten, from memory and from disk alike.
        assert_eq!(ingest_at(&s, "z", start + window + 1), (1, 0));
        s.flush().unwrap();
        assert_eq!(ids_on_disk(&s), 3);
        s.with_db(|db| {
            let cf = db.cf_handle(CF_INGEST_IDS).unwrap();
            db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        });
        assert_eq!(ids_on_disk(&s), 2, "the filter dropped x, kept y and z");
        assert_eq!(ingest_at(&s, "x", start + window + 1), (1, 0));
        assert_eq!(ingest_at(&s, "x", start + window + 2), (0, 1));
        assert_eq!(ingest_at(&s, "y", start + window + 2), (0, 1));
        // A clock that went back (a new leader's clock behind) forgets
        // nothing and brings nothing back.
        assert_eq!(ingest_at(&s, "z", start), (0, 1));
        assert_eq!(history_values(&s, "l1/t").len(), 4);
    }

    #[test]
    fn the_id_filter_forgets_only_by_the_flushed_clock() {
        // Replay after a crash starts at the last flush: an entry the
        // filter drops must already be forgotten at the flushed clock.
        let (_d, s) = setup();
        let start = 29_000_000;
        let window = i64::from(ingest_ids::WINDOW_MINUTES);
        assert_eq!(ingest_at(&s, "x", start), (1, 0));
        s.flush().unwrap();
        // Not flushed: the clock moved past x's window in memory only.
        assert_eq!(ingest_at(&s, "z", start + window + 5), (1, 0));
        s.with_db(|db| {
            let cf = db.cf_handle(CF_INGEST_IDS).unwrap();
            db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        });
        assert_eq!(
            ids_on_disk(&s),
            1,
            "x stays until a flush carries the clock"
        );
    }

    #[test]
    fn a_bad_reading_rejects_the_whole_batch() {
        let (_d, s) = setup();
        let mut b = s.batch();
        let mut bad = reading("y", "l1/p", 2, 1.5);
        bad.quality = Quality::good();
        let err = b
            .insert_all(vec![reading("x", "l1/t", 1, 1.0), bad])
            .unwrap()
            .unwrap_err();
        assert!(
            err.message.contains("reading 2 (id 'y')"),
            "{}",
            err.message
        );
        assert!(err.message.contains("whole number"), "{}", err.message);
        let err = b
            .insert_all(vec![reading("q", "ghost", 1, 1.0)])
            .unwrap()
            .unwrap_err();
        assert!(err.message.contains("unknown tag 'ghost'"));
        b.commit().unwrap();
        assert!(history_values(&s, "l1/t").is_empty());
        assert_eq!(s.revision(), 0);
    }

    #[test]
    fn config_rules_are_enforced() {
        let (_d, s) = setup();
        let mut b = s.batch();
        let e = b.put_device(device("plc1"), true, None, 2).unwrap_err();
        assert_eq!(e.kind, RejectionKind::AlreadyExists);
        let e = b
            .put_tag(tag("x", "nodev", DataType::F32), true, None, 2)
            .unwrap_err();
        assert!(e.message.contains("unknown device 'nodev'"));
        let e = b
            .put_tag(tag("bad name", "plc1", DataType::F32), true, None, 2)
            .unwrap_err();
        assert_eq!(e.kind, RejectionKind::InvalidArgument);
        let e = b.delete_device("plc1").unwrap_err();
        assert!(e.message.contains("still has 2 tag(s)"), "{}", e.message);
        let e = b.put_device(device("plc1"), false, Some(7), 2).unwrap_err();
        assert_eq!(e.kind, RejectionKind::FailedPrecondition);
        let mut d = device("plc1");
        d.protocol = "carrier-pigeon".into();
        assert!(b
            .put_device(d, false, None, 2)
            .unwrap_err()
            .message
            .contains("unknown protocol"));
        // Replacing a tag keeps its id.
        let id = s.tag("l1/t").unwrap().id;
        let t = b
            .put_tag(tag("l1/t", "plc1", DataType::F32), false, Some(1), 3)
            .unwrap();
        assert_eq!((t.id, t.revision), (id, 3));
        b.commit().unwrap();
        assert_eq!(s.tag("l1/t").unwrap().data_type, DataType::F32);
    }

    #[test]
    fn deleting_a_tag_keeps_its_history_and_recreating_continues_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let mut b = s.batch();
        b.put_device(device("plc1"), true, None, 1).unwrap();
        b.put_tag(tag("l1/t", "plc1", DataType::F64), true, None, 1)
            .unwrap();
        b.insert_all(vec![reading("a", "l1/t", 1, 1.0)])
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        let id = s.tag("l1/t").unwrap().id;
        let mut b = s.batch();
        b.delete_tag("l1/t", false).unwrap();
        b.commit().unwrap();
        assert!(s.tag("l1/t").is_none());
        assert!(
            s.current("l1/t").unwrap().is_err(),
            "no tag, no current value"
        );
        // Kept: the committed reading is still in revision order, named.
        let kept = s.readings_after(0, 10).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].tag, "l1/t");
        // Deleting it again says it is gone and how to erase what is kept.
        let mut b = s.batch();
        let e = b.delete_tag("l1/t", false).unwrap_err();
        assert!(e.message.contains("already deleted"), "{}", e.message);
        drop(b);
        // The retirement survives a reopen; a new tag of that name takes
        // the id back and its history continues.
        drop(s);
        let s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.readings_after(0, 10).unwrap()[0].tag, "l1/t");
        let mut b = s.batch();
        let again = b
            .put_tag(tag("l1/t", "plc1", DataType::F64), true, None, 4)
            .unwrap();
        assert_eq!(again.id, id);
        b.insert_all(vec![reading("b", "l1/t", 2, 2.0)])
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        let values: Vec<i64> = history_values(&s, "l1/t").iter().map(|r| r.0).collect();
        assert_eq!(values, vec![1, 2]);
        // A different new tag gets a fresh id.
        let mut b = s.batch();
        let other = b
            .put_tag(tag("l1/other", "plc1", DataType::F64), true, None, 5)
            .unwrap();
        assert_ne!(other.id, id);
    }

    #[test]
    fn purging_a_deleted_tag_erases_the_history_it_kept() {
        let (_d, s) = setup();
        let mut b = s.batch();
        b.insert_all(vec![reading("a", "l1/t", 1, 1.0)])
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        let mut b = s.batch();
        b.delete_tag("l1/t", false).unwrap();
        b.commit().unwrap();
        let mut b = s.batch();
        b.delete_tag("l1/t", true).unwrap();
        b.commit().unwrap();
        assert!(s.readings_after(0, 10).unwrap().is_empty());
        let mut b = s.batch();
        let e = b.delete_tag("l1/t", true).unwrap_err();
        assert!(e.message.contains("unknown tag"), "{}", e.message);
        b.put_tag(tag("l1/t", "plc1", DataType::F64), true, None, 5)
            .unwrap();
        b.commit().unwrap();
        assert!(history_values(&s, "l1/t").is_empty());
    }

    #[test]
    fn purging_a_tag_drops_its_history_and_recreating_starts_fresh() {
        let (_d, s) = setup();
        let mut b = s.batch();
        b.insert_all(vec![reading("a", "l1/t", 1, 1.0)])
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        let mut b = s.batch();
        b.delete_tag("l1/t", true).unwrap();
        b.put_tag(tag("l1/t", "plc1", DataType::F64), true, None, 5)
            .unwrap();
        b.commit().unwrap();
        assert!(history_values(&s, "l1/t").is_empty());
        assert_eq!(s.current("l1/t").unwrap().unwrap(), None);
        assert!(s.readings_after(0, 10).unwrap().is_empty());
    }

    #[test]
    fn state_and_meta_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            let mut b = s.batch();
            b.put_device(device("plc1"), true, None, 1).unwrap();
            b.put_tag(tag("t", "plc1", DataType::F64), true, None, 1)
                .unwrap();
            b.insert_all(vec![reading("a", "t", 1, 1.0)])
                .unwrap()
                .unwrap();
            b.set_applied(b"applied-1".to_vec());
            b.commit().unwrap();
        }
        let s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.applied(), Some(b"applied-1".to_vec()));
        assert_eq!(s.revision(), 1);
        assert_eq!(s.tags(Some("plc1")).len(), 1);
        let mut b = s.batch();
        let t = b
            .put_tag(tag("u", "plc1", DataType::F64), true, None, 2)
            .unwrap();
        assert_eq!(t.id, 2, "tag ids continue after reopen");
    }

    #[test]
    fn checkpoint_install_replaces_state_atomically() {
        let (_d1, a) = setup();
        let mut b = a.batch();
        b.insert_all(vec![reading("a", "l1/t", 1, 1.0)])
            .unwrap()
            .unwrap();
        b.set_applied(b"A".to_vec());
        b.commit().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let cp = tmp.path().join("cp");
        a.checkpoint(&cp).unwrap();
        assert_eq!(
            StateStore::checkpoint_meta(&cp).unwrap().applied,
            Some(b"A".to_vec())
        );

        let dir2 = tempfile::tempdir().unwrap();
        let other = StateStore::open(dir2.path()).unwrap();
        let mut b = other.batch();
        b.put_device(device("zzz"), true, None, 1).unwrap();
        b.commit().unwrap();
        other.install(&cp).unwrap();
        assert!(other.device("zzz").is_none());
        assert_eq!(history_values(&other, "l1/t").len(), 1);
        assert_eq!(other.applied(), Some(b"A".to_vec()));
        drop(other);
        let reopened = StateStore::open(dir2.path()).unwrap();
        assert_eq!(reopened.applied(), Some(b"A".to_vec()));
        assert_eq!(reopened.revision(), 1);
        let q = reopened.current("l1/t").unwrap().unwrap().unwrap();
        assert_eq!(q.quality.level, QualityLevel::Good);
    }

    #[test]
    fn a_database_replaced_under_a_reader_is_closed_and_gone_once_the_store_drops() {
        let (_d1, a) = setup();
        let tmp = tempfile::tempdir().unwrap();
        let cp = tmp.path().join("cp");
        a.checkpoint(&cp).unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        let other = StateStore::open(dir2.path()).unwrap();
        let old_dir = other.active_dir();
        let reader = other.batch();
        other.install(&cp).unwrap();
        assert!(old_dir.exists(), "removed while a reader held it");
        drop(reader);
        drop(other);
        // Nothing of the replaced database may outlive the store: a process
        // exiting while it still closes is aborted by RocksDB.
        assert!(
            !old_dir.exists(),
            "{} outlived the store",
            old_dir.display()
        );
    }
}
