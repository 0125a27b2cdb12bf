//! Whether RocksDB is holding a database's writes back: a write stall, when
//! level-0 files, unflushed memtables or pending compaction pile up faster
//! than its background work clears them. Writes then wait or are slowed,
//! which a node's commits feel as a pause; the node's metrics export it.
//!
//! Depends on RocksDB only.

use rocksdb::DB;

use crate::{NodeStore, Result, StateStore};

/// True while RocksDB stops or delays writes to `db`.
fn write_stalled(db: &DB) -> Result<bool> {
    let stopped = db.property_int_value("rocksdb.is-write-stopped")?;
    let delayed_rate = db.property_int_value("rocksdb.actual-delayed-write-rate")?;
    Ok(stopped.unwrap_or(0) > 0 || delayed_rate.unwrap_or(0) > 0)
}

impl StateStore {
    /// True while RocksDB stops or delays writes to the state database.
    pub fn write_stalled(&self) -> Result<bool> {
        self.with_db(write_stalled)
    }
}

impl NodeStore {
    /// True while RocksDB stops or delays writes to the node database (the
    /// Raft log and the outbox).
    pub fn write_stalled(&self) -> Result<bool> {
        write_stalled(self.db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// While set, the test database's compactions wait in their filter.
    static HOLD_COMPACTIONS: AtomicBool = AtomicBool::new(true);

    #[test]
    fn writes_held_back_by_piled_up_level0_files_are_a_stall_until_compaction_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.set_write_buffer_size(64 << 10);
        o.set_level_zero_file_num_compaction_trigger(2);
        o.set_level_zero_slowdown_writes_trigger(3);
        o.set_level_zero_stop_writes_trigger(4);
        o.set_compaction_filter("hold", |_level: u32, _key: &[u8], _value: &[u8]| {
            while HOLD_COMPACTIONS.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            rocksdb::CompactionDecision::Keep
        });
        let db = DB::open(&o, dir.path()).unwrap();
        assert!(
            !write_stalled(&db).unwrap(),
            "a new database is not stalled"
        );
        // Writes that would wait fail instead, so the test cannot hang.
        let mut no_wait = rocksdb::WriteOptions::default();
        no_wait.set_no_slowdown(true);
        let value = vec![7u8; 1024];
        let mut stalled = false;
        for i in 0u32..100_000 {
            let refused = db.put_opt(i.to_be_bytes(), &value, &no_wait).is_err();
            if (refused || i % 64 == 0) && write_stalled(&db).unwrap() {
                stalled = true;
                break;
            }
            if refused {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert!(stalled, "level-0 files piled up without a stall being seen");
        HOLD_COMPACTIONS.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(60);
        while write_stalled(&db).unwrap() {
            assert!(
                Instant::now() < deadline,
                "the stall outlived the compaction"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
