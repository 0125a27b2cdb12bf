//! The node-local database: Raft log, Raft metadata and the outbox.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::budget::MemoryBudget;
use crate::keys::{decode_u64, u64_key};
use crate::{Error, Result};

const CF_LOG: &str = "raft_log";
const CF_META: &str = "raft_meta";
const CF_OUTBOX: &str = "outbox";

const META_OUTBOX_NEXT: &str = "outbox_next";
pub(crate) const ALL_CFS: [&str; 3] = [CF_LOG, CF_META, CF_OUTBOX];

/// Raft log, vote and outbox of one node. Cheap to clone.
#[derive(Clone)]
pub struct NodeStore {
    db: Arc<DB>,
    outbox: Arc<Mutex<OutboxState>>,
}

/// In-memory bookkeeping of the outbox (rebuilt at open).
#[derive(Debug, Default)]
struct OutboxState {
    /// Next sequence number; never reused, even after the outbox empties,
    /// because sequence numbers become parts of reading ids.
    next: u64,
    /// The lowest sequence number that may still be stored: removals
    /// delete from here, so their range tombstones never overlap (nested
    /// ones each cost RocksDB memory per read of the memtable, quadratic in
    /// their number, until it is flushed).
    first: u64,
    records: u64,
    bytes: u64,
}

/// Depth of the outbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub records: u64,
    pub bytes: u64,
}

impl NodeStore {
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// Opens (or creates) the node database in `dir` with a budget of its
    /// own (see [`NodeStore::open_with`]).
    pub fn open(dir: &Path) -> Result<NodeStore> {
        NodeStore::open_with(dir, &MemoryBudget::default())
    }

    /// Opens (or creates) the node database in `dir`, its block cache and
    /// memtables within `budget` (shared with the state database).
    pub fn open_with(dir: &Path, budget: &MemoryBudget) -> Result<NodeStore> {
        std::fs::create_dir_all(dir)?;
        let mut opts = budget.db_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The log is written sequentially and read mostly at its tail.
        opts.set_max_total_wal_size(256 << 20);
        let cfs = ALL_CFS
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, budget.family_options(false)));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let store = NodeStore {
            db: Arc::new(db),
            outbox: Arc::default(),
        };
        let mut st = OutboxState::default();
        let (mut first, mut last) = (None, 0);
        for item in store
            .db
            .iterator_cf(store.cf(CF_OUTBOX), IteratorMode::Start)
        {
            let (k, v) = item?;
            last = decode_u64(&k).ok_or_else(|| Error::Corrupt("outbox key".into()))?;
            first.get_or_insert(last);
            st.records += 1;
            st.bytes += v.len() as u64;
        }
        let saved = match store.get_meta(META_OUTBOX_NEXT)? {
            Some(v) => decode_u64(&v).ok_or_else(|| Error::Corrupt("outbox_next".into()))?,
            None => 1,
        };
        st.next = saved.max(last + 1);
        st.first = first.unwrap_or(st.next);
        *store.outbox.lock().expect("outbox lock") = st;
        Ok(store)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // The column families are created at open; a missing one is a bug.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// A random name of this database, made when it was created. It tells
    /// apart two lives of a node id (say, after its disk was replaced), so
    /// ids derived from local sequence numbers never collide.
    pub fn incarnation(&self) -> Result<String> {
        const KEY: &str = "incarnation";
        if let Some(v) = self.get_meta(KEY)? {
            return String::from_utf8(v).map_err(|_| Error::Corrupt("incarnation".into()));
        }
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let name = format!("{:08x}", h.finish() as u32);
        self.put_meta(KEY, name.as_bytes(), true)?;
        Ok(name)
    }

    /// Appends log entries `(index, bytes)` without syncing: they are readable
    /// at once, and durable only after the next [`NodeStore::sync`].
    pub fn append_log<I>(&self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (u64, Vec<u8>)>,
    {
        let cf = self.cf(CF_LOG);
        let mut wb = WriteBatch::default();
        for (index, bytes) in entries {
            wb.put_cf(cf, u64_key(index), bytes);
        }
        self.db.write(wb)?;
        Ok(())
    }

    /// Makes every write issued so far durable (fsyncs the write-ahead log).
    /// One call covers all earlier unsynced writes: this is the group commit.
    pub fn sync(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Log entries with `start <= index < end`, in order.
    pub fn log_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let iter = self.db.iterator_cf(
            self.cf(CF_LOG),
            IteratorMode::From(&u64_key(start), Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            let index = decode_u64(&k).ok_or_else(|| Error::Corrupt("raft_log key".into()))?;
            if index >= end {
                break;
            }
            out.push((index, v.to_vec()));
        }
        Ok(out)
    }

    /// The last log entry, if any.
    pub fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut iter = self.db.iterator_cf(self.cf(CF_LOG), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                let index = decode_u64(&k).ok_or_else(|| Error::Corrupt("raft_log key".into()))?;
                Ok(Some((index, v.to_vec())))
            }
        }
    }

    /// Deletes log entries with `index >= from` (conflicting entries), synced.
    pub fn truncate_log(&self, from: u64) -> Result<()> {
        let cf = self.cf(CF_LOG);
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(cf, u64_key(from), u64_key(u64::MAX));
        wb.delete_cf(cf, u64_key(u64::MAX));
        self.write_synced(wb)
    }

    /// Deletes log entries with `index <= upto` and records `meta_value`
    /// under `meta_key` in the same atomic, synced write.
    /// The range deleted starts at the first entry left, not at 0, so
    /// successive purges' range tombstones do not overlap.
    pub fn purge_log(&self, upto: u64, meta_key: &str, meta_value: &[u8]) -> Result<()> {
        let end = upto.saturating_add(1);
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META), meta_key.as_bytes(), meta_value);
        if let Some(first) = self.log_first()?.filter(|&first| first < end) {
            wb.delete_range_cf(self.cf(CF_LOG), u64_key(first), u64_key(end));
        }
        self.write_synced(wb)
    }

    /// Index of the first log entry, if any.
    fn log_first(&self) -> Result<Option<u64>> {
        match self
            .db
            .iterator_cf(self.cf(CF_LOG), IteratorMode::Start)
            .next()
        {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item?;
                Ok(Some(
                    decode_u64(&k).ok_or_else(|| Error::Corrupt("log key".into()))?,
                ))
            }
        }
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_META), key.as_bytes())?)
    }

    /// Stores a metadata record; with `sync` it is durable when this returns.
    pub fn put_meta(&self, key: &str, value: &[u8], sync: bool) -> Result<()> {
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META), key.as_bytes(), value);
        if sync {
            self.write_synced(wb)
        } else {
            Ok(self.db.write(wb)?)
        }
    }

    fn write_synced(&self, wb: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// Appends records to the outbox under increasing sequence numbers and
    /// returns the first one used. Synced: when this returns, the records
    /// survive a crash.
    pub fn outbox_push(&self, records: &[Vec<u8>]) -> Result<u64> {
        let mut st = self.outbox.lock().expect("outbox lock");
        let first = st.next;
        let cf = self.cf(CF_OUTBOX);
        let mut wb = WriteBatch::default();
        let mut bytes = 0;
        for (i, r) in records.iter().enumerate() {
            wb.put_cf(cf, u64_key(first + i as u64), r);
            bytes += r.len() as u64;
        }
        let next = first + records.len() as u64;
        wb.put_cf(self.cf(CF_META), META_OUTBOX_NEXT, u64_key(next));
        self.write_synced(wb)?;
        st.next = next;
        st.records += records.len() as u64;
        st.bytes += bytes;
        Ok(first)
    }

    /// Up to `limit` outbox records in sequence order, starting after `after`.
    pub fn outbox_peek(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let start = u64_key(after.saturating_add(1));
        let iter = self.db.iterator_cf(
            self.cf(CF_OUTBOX),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter.take(limit) {
            let (k, v) = item?;
            let seq = decode_u64(&k).ok_or_else(|| Error::Corrupt("outbox key".into()))?;
            out.push((seq, v.to_vec()));
        }
        Ok(out)
    }

    /// Removes outbox records with `seq <= upto`.
    pub fn outbox_remove_upto(&self, upto: u64) -> Result<OutboxStats> {
        let mut st = self.outbox.lock().expect("outbox lock");
        if upto < st.first {
            return Ok(OutboxStats::default());
        }
        let (mut n, mut bytes) = (0, 0);
        let start = u64_key(st.first);
        let mode = IteratorMode::From(&start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_OUTBOX), mode) {
            let (k, v) = item?;
            if decode_u64(&k).ok_or_else(|| Error::Corrupt("outbox key".into()))? > upto {
                break;
            }
            n += 1;
            bytes += v.len() as u64;
        }
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(
            self.cf(CF_OUTBOX),
            u64_key(st.first),
            u64_key(upto.saturating_add(1)),
        );
        self.db.write(wb)?;
        st.first = upto.saturating_add(1);
        st.records -= n.min(st.records);
        st.bytes -= bytes.min(st.bytes);
        Ok(OutboxStats { records: n, bytes })
    }

    /// Drops the oldest records until the outbox holds at most `max_bytes`;
    /// returns what was dropped (the caller counts and logs it).
    pub fn outbox_trim(&self, max_bytes: u64) -> Result<OutboxStats> {
        let upto = {
            let st = self.outbox.lock().expect("outbox lock");
            if st.bytes <= max_bytes {
                return Ok(OutboxStats::default());
            }
            let mut excess = st.bytes - max_bytes;
            let mut upto = 0;
            let start = u64_key(st.first);
            let mode = IteratorMode::From(&start, Direction::Forward);
            for item in self.db.iterator_cf(self.cf(CF_OUTBOX), mode) {
                let (k, v) = item?;
                upto = decode_u64(&k).ok_or_else(|| Error::Corrupt("outbox key".into()))?;
                if v.len() as u64 >= excess {
                    break;
                }
                excess -= v.len() as u64;
            }
            upto
        };
        self.outbox_remove_upto(upto)
    }

    /// Records and bytes now in the outbox.
    pub fn outbox_stats(&self) -> OutboxStats {
        let st = self.outbox.lock().expect("outbox lock");
        OutboxStats {
            records: st.records,
            bytes: st.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(r: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
        r.map(|i| (i, format!("e{i}").into_bytes())).collect()
    }

    #[test]
    fn log_append_range_truncate_purge() {
        let dir = tempfile::tempdir().unwrap();
        let s = NodeStore::open(dir.path()).unwrap();
        assert_eq!(s.log_last().unwrap(), None);
        s.append_log(entries(1..11)).unwrap();
        assert_eq!(s.log_range(3, 6).unwrap(), entries(3..6));
        assert_eq!(s.log_last().unwrap(), Some((10, b"e10".to_vec())));
        s.truncate_log(8).unwrap();
        assert_eq!(s.log_last().unwrap().unwrap().0, 7);
        s.purge_log(4, "purged", b"4").unwrap();
        assert_eq!(s.log_range(0, 100).unwrap(), entries(5..8));
        assert_eq!(s.get_meta("purged").unwrap(), Some(b"4".to_vec()));
        assert_eq!(s.log_range(6, 6).unwrap(), vec![]);
    }

    #[test]
    fn log_and_meta_survive_reopen_after_sync() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = NodeStore::open(dir.path()).unwrap();
            s.append_log(entries(1..4)).unwrap();
            s.sync().unwrap();
            s.put_meta("vote", b"v1", true).unwrap();
        }
        let s = NodeStore::open(dir.path()).unwrap();
        assert_eq!(s.log_range(0, 10).unwrap(), entries(1..4));
        assert_eq!(s.get_meta("vote").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(s.get_meta("missing").unwrap(), None);
        let inc = s.incarnation().unwrap();
        assert_eq!(inc.len(), 8);
        drop(s);
        let s = NodeStore::open(dir.path()).unwrap();
        assert_eq!(s.incarnation().unwrap(), inc, "stable across reopen");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            NodeStore::open(other.path())
                .unwrap()
                .incarnation()
                .unwrap(),
            inc
        );
    }

    #[test]
    fn outbox_is_fifo_removal_is_by_sequence_and_sequences_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let s = NodeStore::open(dir.path()).unwrap();
        let first = s.outbox_push(&[b"a".to_vec(), b"b".to_vec()]).unwrap();
        let second = s.outbox_push(&[b"c".to_vec()]).unwrap();
        assert_eq!((first, second), (1, 3));
        assert_eq!(
            s.outbox_peek(0, 2).unwrap(),
            vec![(1, b"a".to_vec()), (2, b"b".to_vec())]
        );
        assert_eq!(s.outbox_peek(2, 10).unwrap(), vec![(3, b"c".to_vec())]);
        assert_eq!(
            s.outbox_stats(),
            OutboxStats {
                records: 3,
                bytes: 3
            }
        );
        assert_eq!(
            s.outbox_remove_upto(2).unwrap(),
            OutboxStats {
                records: 2,
                bytes: 2
            }
        );
        assert_eq!(s.outbox_peek(0, 10).unwrap(), vec![(3, b"c".to_vec())]);
        s.outbox_remove_upto(3).unwrap();
        assert_eq!(s.outbox_stats(), OutboxStats::default());
        // Empty now, but sequence numbers keep increasing, also across reopen.
        assert_eq!(s.outbox_push(&[b"d".to_vec()]).unwrap(), 4);
        s.outbox_remove_upto(4).unwrap();
        drop(s);
        let s = NodeStore::open(dir.path()).unwrap();
        assert_eq!(s.outbox_push(&[b"e".to_vec()]).unwrap(), 5);
        assert_eq!(
            s.outbox_stats(),
            OutboxStats {
                records: 1,
                bytes: 1
            }
        );
    }

    #[test]
    fn outbox_trim_drops_the_oldest_records_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = NodeStore::open(dir.path()).unwrap();
        for i in 0..10u8 {
            s.outbox_push(&[vec![i; 100]]).unwrap();
        }
        assert_eq!(s.outbox_trim(2_000).unwrap(), OutboxStats::default());
        let dropped = s.outbox_trim(350).unwrap();
        assert_eq!(
            dropped,
            OutboxStats {
                records: 7,
                bytes: 700
            }
        );
        let left: Vec<u64> = s
            .outbox_peek(0, 100)
            .unwrap()
            .into_iter()
            .map(|(q, _)| q)
            .collect();
        assert_eq!(left, vec![8, 9, 10]);
    }

    #[test]
    fn outbox_removal_resumes_where_the_last_one_ended_also_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = NodeStore::open(dir.path()).unwrap();
        for i in 0..6u8 {
            s.outbox_push(&[vec![i; 10]]).unwrap();
        }
        assert_eq!(s.outbox_remove_upto(2).unwrap().records, 2);
        // Already gone: nothing to count, nothing deleted again.
        assert_eq!(s.outbox_remove_upto(1).unwrap(), OutboxStats::default());
        drop(s);
        // Reopened, the first record left is 3.
        let s = NodeStore::open(dir.path()).unwrap();
        let removed = s.outbox_remove_upto(4).unwrap();
        assert_eq!(
            removed,
            OutboxStats {
                records: 2,
                bytes: 20
            }
        );
        assert_eq!(s.outbox_trim(10).unwrap().records, 1);
        let left: Vec<u64> = s
            .outbox_peek(0, 10)
            .unwrap()
            .into_iter()
            .map(|(q, _)| q)
            .collect();
        assert_eq!(left, vec![6]);
        assert_eq!(
            s.outbox_stats(),
            OutboxStats {
                records: 1,
                bytes: 10
            }
        );
    }

    #[test]
    fn a_log_purge_deletes_from_the_first_entry_left() {
        let dir = tempfile::tempdir().unwrap();
        let s = NodeStore::open(dir.path()).unwrap();
        s.append_log(entries(1..21)).unwrap();
        s.purge_log(5, "purged", b"5").unwrap();
        assert_eq!(s.log_first().unwrap(), Some(6));
        s.purge_log(12, "purged", b"12").unwrap();
        assert_eq!(s.log_range(0, 100).unwrap(), entries(13..21));
        // A purge of what is gone already changes nothing else.
        s.purge_log(3, "purged", b"3").unwrap();
        assert_eq!(s.log_range(0, 100).unwrap(), entries(13..21));
        s.purge_log(30, "purged", b"30").unwrap();
        assert_eq!(s.log_first().unwrap(), None);
    }
}
