//! The flush: everything applied since the last flush goes to the database
//! in one atomic write (a segment of readings, journal, current values,
//! reading ids, config and the applied log index), which is then synced.
//! After writing, segments are merged into per-tag runs a step at a time,
//! and small runs of a tag into bigger ones.
//!
//! A background thread flushes every [`FLUSH_INTERVAL`], or sooner when the
//! unflushed part reaches its share of the memory budget; snapshots and
//! retention flush on demand. One flush runs at a time. Another thread
//! merges, woken by each flush; a merge step writes under the flush lock,
//! so flushes wait for a merge's write, never for its reading and encoding.
//!
//! Crash points (see `crate::crash`): `flush-before-write` and
//! `flush-after-write` around a flush's one write (before its sync);
//! `merge-before-write` and `merge-after-write` around a merge step's
//! write (in `segments`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use rocksdb::{IteratorMode, ReadOptions, WriteBatch};

use super::chunks::{self, RunEntry, CF_CHUNKS, CF_RUNS, MERGE_FAN_IN, SEALED};
use super::hot::Frozen;
use super::ingest_ids::{self, CF_INGEST_IDS};
use super::journal::Record;
use super::segments::{self, SEGMENT_FAN_IN};
use super::{encode_current, Inner, StateStore, CF_CURRENT};
use crate::keys::u64_key;
use crate::Result;

/// Most tags whose small runs one round of the merger merges.
const MERGES_PER_ROUND: usize = 4_000;

/// Which tags' small runs are due for a merge.
#[derive(Default)]
pub(super) struct Merges {
    /// Level-0 runs written per tag since its last merge (in memory: after
    /// a restart a tag's older small runs join its next merge).
    unmerged: std::collections::HashMap<u64, u8>,
    due: std::collections::VecDeque<u64>,
}

/// Longest time applied state waits in memory (and, for the merger, the
/// longest it sleeps without being woken by a flush).
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    pub readings: u64,
}

impl StateStore {
    /// The last revision a flush wrote to the database.
    pub fn flushed_revision(&self) -> u64 {
        self.inner().hot.read().flushed_revision
    }

    /// Bytes held by what was applied since the last flush (a running
    /// flush's part included).
    pub fn unflushed_bytes(&self) -> usize {
        self.memory_usage().unflushed
    }

    /// Where the node's budgeted memory is: the shared block cache and
    /// memtables (both databases) and the unflushed state.
    pub fn memory_usage(&self) -> crate::MemoryUsage {
        let inner = self.inner();
        let unflushed = {
            let hot = inner.hot.read();
            hot.bytes + hot.frozen_bytes
        };
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

    /// Merges every flushed segment into per-tag runs now, however few
    /// there are (the merger merges them once [`SEGMENT_FAN_IN`] wait).
    pub fn merge_segments(&self) -> Result<()> {
        self.inner().merge_all_segments_then(|| ())
    }

    /// How many flushed segments wait to be merged into per-tag runs.
    pub fn segments_waiting(&self) -> Result<usize> {
        self.inner().segment_count()
    }
}

impl Inner {
    /// Writes what was applied since the last flush, durably, and wakes the
    /// merger. Apply goes on meanwhile (it waits only for the write).
    pub(super) fn flush(&self) -> Result<FlushStats> {
        let guard = self.flushing.lock();
        let Some(readings) = self.write_unflushed()? else {
            return Ok(FlushStats::default());
        };
        self.db.flush_wal(true)?;
        drop(guard);
        self.merge_wake.kick();
        Ok(FlushStats { readings })
    }

    /// The merger's work: the segment group in progress (or a new one, once
    /// [`SEGMENT_FAN_IN`] segments wait), step by step, then the small runs
    /// of a bounded number of tags. Flushes go on meanwhile.
    pub(super) fn merge_pending(&self, stop: &AtomicBool) -> Result<()> {
        let _merging = self.merging.lock();
        while !stop.load(Ordering::Relaxed) {
            if !self.merge_segments(SEGMENT_FAN_IN)? {
                break;
            }
        }
        self.merge_due_runs()?;
        Ok(())
    }

    /// Merges every segment into per-tag runs, whatever their number, and
    /// runs `then` before another merge may start (retention, a full
    /// compaction).
    pub(super) fn merge_all_segments_then<R>(&self, then: impl FnOnce() -> R) -> Result<R> {
        let _merging = self.merging.lock();
        while self.merge_segments(1)? {}
        Ok(then())
    }

    pub(super) fn segment_count(&self) -> Result<usize> {
        Ok(segments::headers(&self.db, ReadOptions::default())?.len())
    }

    /// One merge step of the group in progress (or of a new one, when at
    /// least `min` segments wait); false if there was nothing to merge. The
    /// step is read and encoded without holding up flushes, and written
    /// under the flush lock, for the tags that still hold history then.
    fn merge_segments(&self, min: usize) -> Result<bool> {
        let group = segments::group(segments::headers(&self.db, ReadOptions::default())?, min);
        if group.is_empty() {
            return Ok(false);
        }
        let oldest = self.cache.read().oldest;
        let mut step = segments::merge_step(&self.db, group, oldest, segments::STEP_POINTS)?;
        let tags = {
            // A purge reaches the disk only through a flush, which waits for
            // this lock: the tags known now are the ones to write.
            let _flushing = self.flushing.lock();
            let c = self.cache.read();
            step.retain_tags(|t| c.tags.holds_history(t));
            drop(c);
            step.write(&self.db)?
        };
        let mut merges = self.merges.lock();
        for tag in tags {
            let n = merges.unmerged.entry(tag).or_insert(0);
            *n += 1;
            if *n as usize >= MERGE_FAN_IN {
                *n = 0;
                merges.due.push_back(tag);
            }
        }
        Ok(true)
    }

    /// Merges the small runs of the tags due, at most [`MERGES_PER_ROUND`]
    /// of them (the rest wait for the next round). Returns chunks merged.
    fn merge_due_runs(&self) -> Result<u64> {
        let now: Vec<u64> = {
            let mut merges = self.merges.lock();
            let n = merges.due.len().min(MERGES_PER_ROUND);
            merges.due.drain(..n).collect()
        };
        let mut merged = 0;
        for tag in now {
            merged += self.merge_trailing_runs(tag)?;
        }
        Ok(merged)
    }

    /// Writes the unflushed part in one write. Apply goes on meanwhile:
    /// the part is frozen (taken out, still read from memory) under the
    /// lock, encoded outside it, and written and dropped from memory under
    /// it again. Returns how many readings were written, or `None` if there
    /// was nothing to write.
    fn write_unflushed(&self) -> Result<Option<u64>> {
        let (frozen, clock) = {
            let mut hot = self.hot.write();
            if hot.is_clean() {
                return Ok(None);
            }
            // The clock that goes with the frozen part (lock order: hot, then cache).
            (hot.freeze(), self.cache.read().ingest_clock)
        };
        let first = self.hot.read().flushed_revision + 1;
        let wb = self.batch_of(&frozen, first);
        let mut hot = self.hot.write();
        crate::crash::point("flush-before-write");
        if let Err(e) = self.db.write(wb) {
            hot.thaw(&frozen);
            return Err(e.into());
        }
        crate::crash::point("flush-after-write");
        self.flushed_clock.store(clock, Ordering::Relaxed);
        hot.flushed_revision += frozen.journal.len() as u64;
        hot.frozen = None;
        hot.frozen_bytes = 0;
        let readings = frozen.tail.values().map(|p| p.len() as u64).sum();
        Ok(Some(readings))
    }

    /// The database write of a frozen part whose first revision is `first`.
    fn batch_of(&self, frozen: &Frozen, first: u64) -> WriteBatch {
        let mut wb = WriteBatch::default();
        if !frozen.journal.is_empty() {
            let last = first + frozen.journal.len() as u64 - 1;
            segments::write(&self.db, &mut wb, first, last, &frozen.tail);
        }
        for record in Record::cut(first, &frozen.journal) {
            record.write(&self.db, &mut wb);
        }
        let current_cf = self.db.cf_handle(CF_CURRENT).expect("current cf");
        // In key order: a memtable's skip list starts each insert where the
        // last one went, so ordered keys cost less than hash-ordered ones
        // (100,000 tags change their current value between two flushes).
        let mut current: Vec<&(u64, Option<_>)> = frozen.current.iter().collect();
        current.sort_unstable_by_key(|(tag, _)| *tag);
        for (tag, current) in current {
            match current {
                Some(c) => wb.put_cf(current_cf, u64_key(*tag), encode_current(c)),
                None => wb.delete_cf(current_cf, u64_key(*tag)),
            }
        }
        let ids_cf = self.db.cf_handle(CF_INGEST_IDS).expect("ingest ids cf");
        for unflushed in frozen.ids.values() {
            wb.put_cf(
                ids_cf,
                unflushed.id.as_bytes(),
                ingest_ids::value(unflushed.minute),
            );
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
        let run = chunks::encode_run(tag, points, level);
        let _flushing = self.flushing.lock();
        if !self.cache.read().tags.holds_history(tag) {
            return Ok(0); // purged meanwhile: its runs are being deleted
        }
        chunks::put_run(&self.db, &mut wb, &run);
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

/// The background threads of one state store: the flusher and the
/// merger. Dropped with the last clone of the store: both stop, and the
/// state is flushed once more.
pub(super) struct Flusher {
    active: Weak<RwLock<Arc<Inner>>>,
    stop: Arc<AtomicBool>,
    wakes: [Arc<Wake>; 2],
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flusher {
    pub fn start(
        active: Weak<RwLock<Arc<Inner>>>,
        wake: Arc<Wake>,
        merge_wake: Arc<Wake>,
    ) -> Flusher {
        let stop = Arc::new(AtomicBool::new(false));
        let spawn = |name: &str, wake: Arc<Wake>, work: fn(&Inner, &AtomicBool)| {
            let (stop, active) = (stop.clone(), active.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || loop {
                    wake.wait(FLUSH_INTERVAL);
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Some(inner) = active_inner(&active) {
                        work(&inner, &stop);
                    }
                })
                .expect("spawning a state thread")
        };
        let threads = vec![
            spawn("state-flush", wake.clone(), |inner, _| flush_logged(inner)),
            spawn("state-merge", merge_wake.clone(), |inner, stop| {
                if let Err(e) = inner.merge_pending(stop) {
                    tracing::error!(dir = %inner.dir.display(), error = %e, "merging history failed; will retry");
                }
            }),
        ];
        Flusher {
            active,
            stop,
            wakes: [wake, merge_wake],
            threads,
        }
    }
}

/// The active state, if it is still open.
fn active_inner(active: &Weak<RwLock<Arc<Inner>>>) -> Option<Arc<Inner>> {
    let active = active.upgrade()?;
    let inner = active.read().clone();
    Some(inner)
}

/// Flushes; a failure is logged and the next flush tries again (the Raft
/// log still holds everything).
fn flush_logged(inner: &Inner) {
    if let Err(e) = inner.flush() {
        tracing::error!(dir = %inner.dir.display(), error = %e, "flushing the state failed; will retry");
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for wake in &self.wakes {
            wake.kick();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(inner) = active_inner(&self.active) {
            flush_logged(&inner);
        }
    }
}
