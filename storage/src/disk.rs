//! What a database occupies on disk, per column family, and a full
//! compaction to measure it at rest (benchmarks, diagnostics).

use rocksdb::DB;

use crate::{NodeStore, Result, StateStore};

/// Bytes of one column family's table files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyBytes {
    pub family: &'static str,
    pub bytes: u64,
}

fn usage(db: &DB, families: &[&'static str]) -> Result<Vec<FamilyBytes>> {
    families
        .iter()
        .map(|&family| {
            let cf = db.cf_handle(family).expect("column family created at open");
            let bytes = db
                .property_int_value_cf(cf, "rocksdb.total-sst-files-size")?
                .unwrap_or(0);
            Ok(FamilyBytes { family, bytes })
        })
        .collect()
}

/// Writes memtables out and compacts every family fully, so that table
/// sizes show the data at rest (deleted keys gone, compressed).
fn compact(db: &DB, families: &[&'static str]) -> Result<()> {
    for &family in families {
        let cf = db.cf_handle(family).expect("column family created at open");
        db.flush_cf(cf)?;
        db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
    }
    Ok(())
}

impl StateStore {
    /// Table-file bytes per column family (flush first to include the
    /// latest applies).
    pub fn disk_usage(&self) -> Result<Vec<FamilyBytes>> {
        self.with_db(|db| usage(db, &crate::state::ALL_CFS))
    }

    /// Flushes applied state, then compacts the database fully.
    pub fn compact_disk(&self) -> Result<()> {
        self.flush()?;
        self.merge_segments()?;
        self.with_db(|db| compact(db, &crate::state::ALL_CFS))
    }
}

impl NodeStore {
    /// Table-file bytes per column family.
    pub fn disk_usage(&self) -> Result<Vec<FamilyBytes>> {
        usage(self.db(), &crate::node::ALL_CFS)
    }

    /// Compacts the database fully.
    pub fn compact_disk(&self) -> Result<()> {
        compact(self.db(), &crate::node::ALL_CFS)
    }
}
