//! What a database occupies on disk, per column family, and a full
//! compaction to measure it at rest (benchmarks, diagnostics); the free
//! space of the file system a directory is on.

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

/// Bytes an unprivileged process may still write on the file system that
/// holds `path` (statvfs: available blocks times the fragment size).
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other(format!("{}: a NUL in the path", path.display())))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is written by statvfs
    // before it is read, which happens only when statvfs succeeded.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ));
        }
        st.assume_init()
    };
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}
