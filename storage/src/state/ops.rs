//! Changes that apply decided but a flush has not written yet.
//!
//! Apply never writes the state database: the Raft log is the write-ahead
//! log, and a flush writes everything applied since the last one (readings,
//! config, indexes and the applied log index) in one atomic RocksDB write.
//! Config and index changes wait here, in the order they were made, until
//! then. Depends on RocksDB only.

use rocksdb::{WriteBatch, DB};

/// One pending change to a column family.
#[derive(Clone)]
enum Op {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Delete(&'static str, Vec<u8>),
    /// Deletes keys in `[from, to)`.
    DeleteRange(&'static str, Vec<u8>, Vec<u8>),
}

/// Pending changes, in order.
#[derive(Clone, Default)]
pub(super) struct Ops(Vec<Op>);

impl Ops {
    pub fn put(&mut self, cf: &'static str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.0
            .push(Op::Put(cf, key.as_ref().to_vec(), value.as_ref().to_vec()));
    }

    pub fn delete(&mut self, cf: &'static str, key: impl AsRef<[u8]>) {
        self.0.push(Op::Delete(cf, key.as_ref().to_vec()));
    }

    pub fn delete_range(&mut self, cf: &'static str, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) {
        self.0.push(Op::DeleteRange(
            cf,
            from.as_ref().to_vec(),
            to.as_ref().to_vec(),
        ));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Moves `other`'s changes behind these.
    pub fn append(&mut self, other: Ops) {
        self.0.extend(other.0);
    }

    /// Adds the changes, in order, to `wb`.
    pub fn write_into(&self, db: &DB, wb: &mut WriteBatch) {
        let cf = |name: &str| db.cf_handle(name).expect("column family created at open");
        for op in &self.0 {
            match op {
                Op::Put(name, k, v) => wb.put_cf(cf(name), k, v),
                Op::Delete(name, k) => wb.delete_cf(cf(name), k),
                Op::DeleteRange(name, from, to) => wb.delete_range_cf(cf(name), from, to),
            }
        }
    }
}
