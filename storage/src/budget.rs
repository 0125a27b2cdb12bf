//! One memory budget per node, shared by its two databases and its
//! unflushed state: a single block cache (index and filter blocks are kept
//! in it too, not beside it), one memtable limit over every column family
//! of both databases, and the most state applied but not yet flushed
//! before a flush is started early. Sized from `bifrost serve
//! --memory-budget`; [`MemoryBudget::usage`] says where the memory is.
//!
//! Depends on RocksDB only.

use rocksdb::{BlockBasedOptions, Cache, Options, WriteBufferManager};

/// A node's memory budget and the RocksDB objects that enforce it. Cheap to
/// clone: clones share the cache and the memtable limit.
#[derive(Clone)]
pub struct MemoryBudget {
    total: usize,
    cache: Cache,
    memtables: WriteBufferManager,
    memtable_limit: usize,
    unflushed: usize,
}

/// Where a node's budgeted memory is, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub budget: usize,
    pub block_cache: usize,
    pub memtables: usize,
    pub unflushed: usize,
}

impl MemoryBudget {
    /// The budget when none is given.
    pub const DEFAULT: usize = 96 << 20;
    /// The smallest budget accepted.
    pub const MIN: usize = 16 << 20;
    /// Size of a table's data blocks before compression, which is what
    /// the block cache holds of them. RocksDB closes a block past 90% of
    /// it, so every cached data block is over 14.7 KB: a "large"
    /// allocation to jemalloc (over 14 KiB), an extent of its own whose
    /// pages go back to the system when the cache evicts it. RocksDB's
    /// 4 KiB default puts blocks in small size classes, slabs shared by
    /// blocks of different ages, and a cache churning through them keeps
    /// partly used slabs resident.
    pub const BLOCK_SIZE: usize = 16 << 10;

    /// Splits `total` bytes: 3/8 block cache, 3/8 memtables, 1/4 state
    /// applied since the last flush. Below [`MemoryBudget::MIN`] counts as
    /// the minimum.
    pub fn new(total: usize) -> MemoryBudget {
        let total = total.max(Self::MIN);
        let cache_bytes = total / 8 * 3;
        let memtable_limit = total / 8 * 3;
        let cache = Cache::new_lru_cache(cache_bytes);
        // No stalling: the limit is shared by two databases, and a write
        // stalled in one waits for flushes only that one triggers, so a
        // stall can last as long as the other holds the memory (seen:
        // /metrics unanswered for over 10 s). Over the limit, the database
        // written to flushes its memtables instead.
        let memtables = WriteBufferManager::new_write_buffer_manager(memtable_limit, false);
        MemoryBudget {
            total,
            cache,
            memtables,
            memtable_limit,
            unflushed: total / 4,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Unflushed state beyond which a flush starts at once.
    pub fn unflushed_limit(&self) -> usize {
        self.unflushed
    }

    /// Memtable size of one column family: a share of the limit, so that a
    /// busy family flushes in pieces the limit can hold several of.
    fn memtable_size(&self) -> usize {
        (self.memtable_limit / 8).max(1 << 20)
    }

    /// Database-wide options under this budget.
    pub(crate) fn db_options(&self) -> Options {
        let mut o = Options::default();
        o.set_write_buffer_manager(&self.memtables);
        o.set_db_write_buffer_size(self.memtable_limit);
        o
    }

    /// Options of one column family under this budget; `bloom` adds a
    /// bloom filter (point lookups of keys that are mostly absent).
    pub(crate) fn family_options(&self, bloom: bool) -> Options {
        let mut t = BlockBasedOptions::default();
        t.set_block_size(Self::BLOCK_SIZE);
        t.set_block_cache(&self.cache);
        t.set_cache_index_and_filter_blocks(true);
        t.set_pin_l0_filter_and_index_blocks_in_cache(true);
        if bloom {
            t.set_bloom_filter(10.0, false);
        }
        let mut o = Options::default();
        o.set_block_based_table_factory(&t);
        o.set_write_buffer_size(self.memtable_size());
        o
    }

    /// What the cache and the memtables hold now; `unflushed` is filled in
    /// by the state store.
    pub fn usage(&self) -> MemoryUsage {
        MemoryUsage {
            budget: self.total,
            block_cache: self.cache.get_usage(),
            memtables: self.memtables.get_usage(),
            unflushed: 0,
        }
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::new(Self::DEFAULT)
    }
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("total", &self.total)
            .field("memtable_limit", &self.memtable_limit)
            .field("unflushed", &self.unflushed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_and_never_below_the_minimum() {
        let b = MemoryBudget::new(80 << 20);
        assert_eq!(b.total(), 80 << 20);
        assert_eq!(b.unflushed_limit(), 20 << 20);
        assert_eq!(b.memtable_limit, 30 << 20);
        let tiny = MemoryBudget::new(1);
        assert_eq!(tiny.total(), MemoryBudget::MIN);
        assert_eq!(tiny.usage().budget, MemoryBudget::MIN);
    }

    /// The figure of `rocksdb.aggregated-table-properties` named `key`.
    fn table_property(props: &str, key: &str) -> f64 {
        props
            .split(';')
            .find_map(|p| {
                p.trim()
                    .strip_prefix(key)?
                    .strip_prefix('=')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {key:?} in table properties: {props}"))
    }

    #[test]
    fn tables_are_written_in_blocks_too_large_for_jemallocs_slabs() {
        let dir = tempfile::tempdir().unwrap();
        let budget = MemoryBudget::new(32 << 20);
        let mut o = budget.db_options();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        let cfs = [rocksdb::ColumnFamilyDescriptor::new(
            "f",
            budget.family_options(false),
        )];
        let db = rocksdb::DB::open_cf_descriptors(&o, dir.path(), cfs).unwrap();
        let cf = db.cf_handle("f").unwrap();
        for i in 0u32..20_000 {
            let value = format!("{:0>40}", i.wrapping_mul(2_654_435_761));
            db.put_cf(cf, i.to_be_bytes(), value).unwrap();
        }
        db.flush_cf(cf).unwrap();
        let props = db
            .property_value_cf(cf, "rocksdb.aggregated-table-properties")
            .unwrap()
            .unwrap();
        let raw = table_property(&props, "raw key size") + table_property(&props, "raw value size");
        let blocks = table_property(&props, "# data blocks");
        assert!(blocks >= 10.0, "too few blocks to judge: {props}");
        // Keys are delta-encoded in a block, so the raw bytes a block holds
        // are a little more than its size; with 4 KiB blocks this is ~4 KiB.
        let per_block = raw / blocks;
        assert!(
            per_block > 14.0 * 1024.0,
            "{per_block:.0} raw bytes per data block: {props}"
        );
    }
}
