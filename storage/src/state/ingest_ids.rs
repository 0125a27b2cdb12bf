//! The ingest id index: which client reading ids were stored lately, so
//! that a reading sent again (a retried request, a dual-write replay) is
//! stored once. Polled readings never come here: they are deduplicated per
//! outbox record (see `polled`).
//!
//! **Compact.** On disk an id is its own bytes as the key (RocksDB stores
//! a block's keys as deltas of the one before, so a producer's sequential
//! ids, `gw1:000123`, `gw1:000124`, cost a few bytes each, and a batch of
//! new ids skips every table whose key range it falls outside of) with the
//! minute it was stored as the value (4 bytes). In memory, the ids not
//! flushed yet are a map keyed by the id's 128-bit XXH3 fingerprint with a
//! cheap hasher, so an id is hashed once per node; two distinct ids share a
//! fingerprint with a probability of about n²/2¹²⁹ (for a trillion ids,
//! under 10⁻¹⁴).
//!
//! **Windowed.** An id is remembered for [`WINDOW_MINUTES`] (24 hours) of
//! the *ingest clock*: the latest server time of any reading ingested so
//! far, which is replicated state (it moves only forward, and only by
//! applied commands), so every replica forgets an id at the same command.
//! A reading sent again after that is stored again. Forgotten entries are
//! dropped by a RocksDB compaction filter that compares them with the clock
//! of the last *flush*: replay after a crash starts at or after that flush,
//! with a clock at least as late, so an entry the filter dropped is one
//! every replay would have forgotten too.
//!
//! Entries converted from a format-2 database (`bifrost migrate-data`)
//! carry [`KEPT`]: their server time is not known, so they are never
//! forgotten, as before.
//!
//! Knows nothing of Raft.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rocksdb::compaction_filter::Decision;
use rustc_hash::FxHasher;

/// The column family: reading id (UTF-8) -> stored minute (4 bytes,
/// big-endian).
pub(super) const CF_INGEST_IDS: &str = "ingest_ids";

/// How long an ingested id is remembered, in minutes of the ingest clock.
pub const WINDOW_MINUTES: u32 = 24 * 60;

/// The stored minute of an entry never forgotten (converted from format 2).
pub(super) const KEPT: u32 = u32::MAX;

/// An id not flushed yet: the minute it was stored, and the id for the
/// flush to write.
#[derive(Clone, Debug)]
pub(super) struct Unflushed {
    pub minute: u32,
    pub id: Box<str>,
}

/// Fingerprint -> id not flushed yet. The keys are already uniform hashes,
/// so a cheap hasher is enough.
pub(super) type IdMap = HashMap<u128, Unflushed, BuildHasherDefault<FxHasher>>;

/// The fingerprint of reading id `id`.
pub(super) fn fingerprint(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// The ingest clock's unit: whole minutes since the Unix epoch.
pub(super) fn minute_of(server_ts_us: i64) -> u32 {
    (server_ts_us.max(0) / 60_000_000).min(i64::from(KEPT - 1)) as u32
}

/// Whether an id stored at `minute` is still remembered at clock `now`.
pub(super) fn remembered(minute: u32, now: u32) -> bool {
    minute == KEPT || u64::from(minute) + u64::from(WINDOW_MINUTES) >= u64::from(now)
}

pub(super) fn value(minute: u32) -> [u8; 4] {
    minute.to_be_bytes()
}

/// The minute of a stored entry (a malformed one counts as kept, so a
/// damaged record can only make a duplicate be refused, never stored).
pub(super) fn minute_in(value: &[u8]) -> u32 {
    value
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(KEPT, u32::from_be_bytes)
}

/// The ingest clock of the last flush, shared with the compaction filter.
pub(super) type FlushedClock = Arc<AtomicU32>;

/// Adds the filter that drops entries forgotten at `clock` to the options
/// of the index's column family.
pub(super) fn add_filter(options: &mut rocksdb::Options, clock: FlushedClock) {
    options.set_compaction_filter("bifrost-ingest-id-window", move |_, _: &[u8], v: &[u8]| {
        if remembered(minute_in(v), clock.load(Ordering::Relaxed)) {
            Decision::Keep
        } else {
            Decision::Remove
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_remembered_for_the_window_then_forgotten() {
        let stored = minute_of(1_700_000_000_000_000);
        assert!(remembered(stored, stored));
        assert!(remembered(stored, stored + WINDOW_MINUTES));
        assert!(!remembered(stored, stored + WINDOW_MINUTES + 1));
        assert!(remembered(KEPT, u32::MAX - 1), "converted entries stay");
        assert_eq!(minute_in(&value(stored)), stored);
        assert_eq!(minute_in(b"xy"), KEPT, "a short record never frees an id");
    }

    #[test]
    fn fingerprints_tell_ids_apart_and_are_stable() {
        assert_ne!(fingerprint("a:1"), fingerprint("a:2"));
        assert_eq!(fingerprint("gw-7:123"), fingerprint("gw-7:123"));
        assert_eq!(minute_of(-5), 0);
        assert_eq!(minute_of(i64::MAX), KEPT - 1);
    }
}
