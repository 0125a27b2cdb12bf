//! The flush: everything applied since the last flush goes to the database
//! in one atomic write (chunks, journal, current values, reading ids, config
//! and the applied log index), which is then synced. After writing, small
//! runs of the tags just written are merged into bigger ones.
//!
//! A background thread flushes every [`FLUSH_INTERVAL`], or sooner when the
//! unflushed part reaches its share of the memory budget; snapshots and
//! retention flush on demand. One flush runs at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Weak};
use std::time::Duration;

use parking_lot::{MutexGuard, RwLock};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch};

use super::chunks::{self, RunEntry, CF_CHUNKS, CF_RUNS, MERGE_FAN_IN, SEALED};
use super::hot::Frozen;
use super::journal::Record;
use super::{encode_current, Inner, StateStore, CF_CURRENT, CF_IDS};
use crate::keys::u64_key;
use crate::Result;

/// Most tags whose small runs one flush merges.
const MERGES_PER_FLUSH: usize = 4_000;

/// Which tags' small runs are due for a merge.
#[derive(Default)]
pub(super) struct Merges {
    /// Level-0 runs written per tag since its last merge (in memory: after
    /// a restart a tag's older small runs join its next merge).
    unmerged: std::collections::HashMap<u64, u8>,
    due: std::collections::VecDeque<u64>,
}

/// Longest time applied state waits in memory. Longer flushes write each
/// tag's readings in fewer, bigger runs: with tens of thousands of tags the
/// cost of a flush grows with the tags written, not the readings.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    pub readings: u64,
    pub chunks_merged: u64,
}

impl StateStore {
    /// The last revision a flush wrote to the database.
    pub fn flushed_revision(&self) -> u64 {
        self.inner().hot.read().flushed_revision
    }

    /// Approximate bytes held by what was applied since the last flush.
    pub fn unflushed_bytes(&self) -> usize {
        self.inner().hot.read().bytes
    }

    /// Where the node's budgeted memory is: the shared block cache and
    /// memtables (both databases) and the unflushed state.
    pub fn memory_usage(&self) -> crate::MemoryUsage {
        let inner = self.inner();
        let unflushed = inner.hot.read().bytes;
        crate::MemoryUsage {
            unflushed,
            ..inner.budget.usage()
        }
    }

    /// Writes everything applied so far to the database, durably. Apply
    /// goes on meanwhile (it waits only for the write itself).
    pub fn flush(&self) -> Result<FlushStats> {
        self.inner().flush()
    }
}

impl Inner {
    pub(super) fn flush(&self) -> Result<FlushStats> {
        let (stats, _guard) = self.flush_and_hold()?;
        Ok(stats)
    }

    /// Flushes and keeps other flushes and merges out until the guard goes.
    pub(super) fn flush_and_hold(&self) -> Result<(FlushStats, MutexGuard<'_, ()>)> {
        let guard = self.flushing.lock();
        let Some((touched, readings)) = self.write_unflushed()? else {
            return Ok((FlushStats::default(), guard));
        };
        self.db.flush_wal(true)?;
        let mut stats = FlushStats {
            readings,
            chunks_merged: 0,
        };
        // A tag is looked at on disk only once it may have enough small
        // runs to merge (one seek per tag per flush would not keep up with
        // tens of thousands of tags), and a flush merges a bounded number of
        // tags: the rest wait in the queue for the next flushes.
        let mut merges = self.merges.lock();
        for tag in touched {
            let n = merges.unmerged.entry(tag).or_insert(0);
            *n += 1;
            if *n as usize >= MERGE_FAN_IN {
                *n = 0;
                merges.due.push_back(tag);
            }
        }
        let now: Vec<u64> = {
            let n = merges.due.len().min(MERGES_PER_FLUSH);
            merges.due.drain(..n).collect()
        };
        drop(merges);
        for tag in now {
            stats.chunks_merged += self.merge_trailing_runs(tag)?;
        }
        Ok((stats, guard))
    }

    /// Writes the unflushed part in one write. Apply goes on meanwhile:
    /// the part is frozen (taken out, still read from memory) under the
    /// lock, encoded outside it, and written and dropped from memory under
    /// it again. Returns the tags written and how many readings, or `None`
    /// if there was nothing to write.
    fn write_unflushed(&self) -> Result<Option<(Vec<u64>, u64)>> {
        let frozen = {
            let mut hot = self.hot.write();
            if hot.is_clean() {
                return Ok(None);
            }
            hot.freeze()
        };
        let first = self.hot.read().flushed_revision + 1;
        let wb = self.batch_of(&frozen, first);
        let mut hot = self.hot.write();
        if let Err(e) = self.db.write(wb) {
            hot.thaw(&frozen);
            return Err(e.into());
        }
        hot.flushed_revision += frozen.journal.len() as u64;
        hot.frozen = None;
        let readings = frozen.tail.values().map(|p| p.len() as u64).sum();
        Ok(Some((frozen.tail.keys().copied().collect(), readings)))
    }

    /// The database write of a frozen part whose first revision is `first`.
    fn batch_of(&self, frozen: &Frozen, first: u64) -> WriteBatch {
        let mut wb = WriteBatch::default();
        for (tag, points) in &frozen.tail {
            chunks::write_run(&self.db, &mut wb, *tag, points.clone(), 0);
        }
        for record in Record::cut(first, &frozen.journal) {
            record.write(&self.db, &mut wb);
        }
        let current_cf = self.db.cf_handle(CF_CURRENT).expect("current cf");
        for (tag, current) in &frozen.current {
            match current {
                Some(c) => wb.put_cf(current_cf, u64_key(*tag), encode_current(c)),
                None => wb.delete_cf(current_cf, u64_key(*tag)),
            }
        }
        let ids_cf = self.db.cf_handle(CF_IDS).expect("reading ids cf");
        for (id, revision) in &frozen.ids {
            match revision {
                Some(r) => wb.put_cf(ids_cf, id.as_bytes(), u64_key(*r)),
                None => wb.delete_cf(ids_cf, id.as_bytes()),
            }
        }
        frozen.ops.write_into(&self.db, &mut wb);
        wb
    }

    /// Merges the newest runs of `tag` while [`MERGE_FAN_IN`] of them share a
    /// level, each merge making one run a level up. Returns chunks merged.
    fn merge_trailing_runs(&self, tag: u64) -> Result<u64> {
        let mut merged = 0;
        loop {
            let runs = self.trailing_runs(tag)?;
            if runs.len() < MERGE_FAN_IN {
                return Ok(merged);
            }
            merged += self.merge(tag, &runs)?;
        }
    }

    /// The chunks of the newest runs of `tag` that share the newest run's
    /// level (none if that run is sealed), grouped by run.
    fn trailing_runs(&self, tag: u64) -> Result<Vec<Vec<RunEntry>>> {
        let runs_cf = self.db.cf_handle(CF_RUNS).expect("runs cf");
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(chunks::run_key(tag, 0).to_vec());
        let last = chunks::run_key(tag, u64::MAX);
        let mut out: Vec<Vec<RunEntry>> = Vec::new();
        let iter = self.db.iterator_cf_opt(
            runs_cf,
            ro,
            IteratorMode::From(&last, rocksdb::Direction::Reverse),
        );
        for item in iter {
            let (k, v) = item?;
            let e = RunEntry::parse(&k, &v)?;
            let level = out.first().map(|r| r[0].level);
            if e.level == SEALED || level.is_some_and(|l| l != e.level) {
                break;
            }
            match out.last_mut() {
                Some(run) if run[0].run_min_rev == e.run_min_rev => run.push(e),
                _ => out.push(vec![e]),
            }
        }
        Ok(out)
    }

    /// Rewrites `runs` (consecutive, one level) as one run a level up.
    fn merge(&self, tag: u64, runs: &[Vec<RunEntry>]) -> Result<u64> {
        let chunks_cf = self.db.cf_handle(CF_CHUNKS).expect("chunks cf");
        let runs_cf = self.db.cf_handle(CF_RUNS).expect("runs cf");
        let oldest = self.cache.read().oldest;
        let mut wb = WriteBatch::default();
        let mut points = Vec::new();
        let mut n = 0;
        for e in runs.iter().flatten() {
            let key = e.chunk_key();
            if let Some(bytes) = self.db.get_cf(chunks_cf, key)? {
                let decoded = chunks::decode_chunk(&key, &bytes)?;
                points.extend(decoded.into_iter().filter(|p| p.revision >= oldest));
            }
            wb.delete_cf(chunks_cf, key);
            wb.delete_cf(runs_cf, chunks::run_key(tag, e.max_rev));
            n += 1;
        }
        let level = runs[0][0].level.saturating_add(1).min(SEALED - 1);
        chunks::write_run(&self.db, &mut wb, tag, points, level);
        self.db.write(wb)?;
        Ok(n)
    }
}

/// Wakes the flusher thread early.
#[derive(Default)]
pub(super) struct Wake {
    kicked: std::sync::Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    pub fn kick(&self) {
        *self.kicked.lock().expect("wake lock") = true;
        self.cv.notify_one();
    }

    /// Waits until kicked or `timeout` passed.
    fn wait(&self, timeout: Duration) {
        let guard = self.kicked.lock().expect("wake lock");
        let (mut kicked, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |k| !*k)
            .expect("wake lock");
        *kicked = false;
    }
}

/// The background flusher of one state store. Dropped with the last clone
/// of the store: it flushes once more and stops its thread.
pub(super) struct Flusher {
    active: Weak<RwLock<Arc<Inner>>>,
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    pub fn start(active: Weak<RwLock<Arc<Inner>>>, wake: Arc<Wake>) -> Flusher {
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_stop, thread_wake, thread_active) =
            (stop.clone(), wake.clone(), active.clone());
        let thread = std::thread::Builder::new()
            .name("state-flush".into())
            .spawn(move || loop {
                thread_wake.wait(FLUSH_INTERVAL);
                if thread_stop.load(Ordering::Relaxed) {
                    return;
                }
                flush_active(&thread_active);
            })
            .expect("spawning the state flusher");
        Flusher {
            active,
            stop,
            wake,
            thread: Some(thread),
        }
    }
}

/// Flushes the active state, if it is still open; a failure is logged and
/// the next flush tries again (the Raft log still holds everything).
fn flush_active(active: &Weak<RwLock<Arc<Inner>>>) {
    let Some(active) = active.upgrade() else {
        return;
    };
    let inner = active.read().clone();
    drop(active);
    if let Err(e) = inner.flush() {
        tracing::error!(dir = %inner.dir.display(), error = %e, "flushing the state failed; will retry");
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.kick();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        flush_active(&self.active);
    }
}
