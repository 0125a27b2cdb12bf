//! Audit records in the replicated state.
//!
//! They live in the `meta` column family under `audit/` followed by the
//! record's time (8 bytes, order-preserving) and log index, so they are in
//! time order and the ones past retention are one key range. They are
//! people's actions (config changes, device writes, logins), not readings:
//! few enough that every node holds the ones within retention in memory,
//! like users, and answers the SQL `audit` table from there.
//!
//! Retention (`audit_retention_seconds` in `meta`, default
//! [`DEFAULT_AUDIT_RETENTION_S`], 0: forever) is applied when a record is
//! added, against the time the proposer put in the command, so every
//! replica forgets the same records.

use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode, DB};

use super::{read_u64, ApplyBatch, StateStore, CF_META};
use crate::codec::{decode, encode};
use crate::keys::{ordered_i64, u64_key};
use crate::model::AuditRecord;
use crate::Result;

const META_AUDIT_PREFIX: &str = "audit/";
const META_AUDIT_RETENTION: &str = "audit_retention_seconds";
/// How long audit records are kept unless set otherwise: a year.
pub const DEFAULT_AUDIT_RETENTION_S: u64 = 365 * 24 * 3600;

fn audit_key(ts_us: i64, index: u64) -> Vec<u8> {
    let mut k = META_AUDIT_PREFIX.as_bytes().to_vec();
    k.extend_from_slice(&u64_key(ordered_i64(ts_us)));
    k.extend_from_slice(&u64_key(index));
    k
}

/// The audit records held, by (time, log index), and their retention.
#[derive(Default)]
pub(super) struct Audit {
    records: BTreeMap<(i64, u64), AuditRecord>,
    /// Seconds; `None` in a state that never set it (the default applies).
    retention_s: Option<u64>,
}

impl Audit {
    pub fn load(db: &DB) -> Result<Audit> {
        let meta = db.cf_handle(CF_META).expect("meta cf");
        let prefix = META_AUDIT_PREFIX.as_bytes();
        let mut records = BTreeMap::new();
        for item in db.iterator_cf(meta, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let r: AuditRecord = decode(&v)?;
            records.insert((r.ts_us, r.index), r);
        }
        let retention_s = db
            .get_cf(meta, META_AUDIT_RETENTION)?
            .map(|_| read_u64(db, META_AUDIT_RETENTION))
            .transpose()?;
        Ok(Audit {
            records,
            retention_s,
        })
    }

    fn retention_s(&self) -> u64 {
        self.retention_s.unwrap_or(DEFAULT_AUDIT_RETENTION_S)
    }

    pub fn apply(&mut self, pending: PendingAudit) {
        if let Some(s) = pending.retention_s {
            self.retention_s = Some(s);
        }
        if let Some(cutoff) = pending.forget_before_us {
            self.records = self.records.split_off(&(cutoff, 0));
        }
        for r in pending.added {
            self.records.insert((r.ts_us, r.index), r);
        }
    }
}

/// Audit changes of one apply batch.
#[derive(Default)]
pub(super) struct PendingAudit {
    added: Vec<AuditRecord>,
    /// Records older than this (microseconds) are forgotten.
    forget_before_us: Option<i64>,
    retention_s: Option<u64>,
}

impl StateStore {
    /// The audit records held, oldest first.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        let inner = self.inner();
        let c = inner.cache.read();
        c.audit.records.values().cloned().collect()
    }

    /// How long audit records are kept, in seconds (0: forever).
    pub fn audit_retention_seconds(&self) -> u64 {
        self.inner().cache.read().audit.retention_s()
    }
}

impl ApplyBatch {
    fn audit_retention_now(&self) -> u64 {
        self.audit
            .retention_s
            .unwrap_or_else(|| self.inner.cache.read().audit.retention_s())
    }

    /// Stores `record` at log index `index`, and forgets the records older
    /// than the retention before `now_us` (the proposer's clock).
    pub fn add_audit(&mut self, mut record: AuditRecord, index: u64, now_us: i64) {
        record.index = index;
        let retention = self.audit_retention_now();
        if retention > 0 {
            let span = i64::try_from(retention.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
            let cutoff = now_us.saturating_sub(span);
            // From the oldest record, not from the start: successive range
            // deletions that overlap each cost memory on every read.
            if let Some(oldest) = self.oldest_audit_ts().filter(|&ts| ts < cutoff) {
                self.ops
                    .delete_range(CF_META, audit_key(oldest, 0), audit_key(cutoff, 0));
            }
            let keep = self
                .audit
                .forget_before_us
                .map_or(cutoff, |c| c.max(cutoff));
            self.audit.forget_before_us = Some(keep);
            self.audit.added.retain(|r| r.ts_us >= keep);
        }
        self.ops
            .put(CF_META, audit_key(record.ts_us, index), encode(&record));
        self.audit.added.push(record);
    }

    /// The timestamp of the oldest audit record held, this batch's included,
    /// that no earlier deletion of this batch covers (the cache learns of
    /// them only when the batch is applied).
    fn oldest_audit_ts(&self) -> Option<i64> {
        let held = self
            .inner
            .cache
            .read()
            .audit
            .records
            .keys()
            .next()
            .map(|k| k.0)
            .map(|ts| self.audit.forget_before_us.map_or(ts, |f| ts.max(f)));
        let added = self.audit.added.iter().map(|r| r.ts_us).min();
        held.into_iter().chain(added).min()
    }

    /// Sets how long audit records are kept (0: forever); applied with the
    /// next record.
    pub fn set_audit_retention(&mut self, seconds: u64) {
        self.ops
            .put(CF_META, META_AUDIT_RETENTION, u64_key(seconds));
        self.audit.retention_s = Some(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts_us: i64, action: &str) -> AuditRecord {
        AuditRecord {
            ts_us,
            user: "alice".into(),
            source: "10.0.0.9:50123".into(),
            action: action.into(),
            target: "line1/valve".into(),
            detail: "1".into(),
            outcome: "ok".into(),
            index: 0,
        }
    }

    const DAY: i64 = 24 * 3600 * 1_000_000;

    #[test]
    fn records_are_kept_in_time_order_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = StateStore::open(dir.path()).unwrap();
            let mut b = state.batch();
            b.add_audit(record(2 * DAY, "b"), 7, 2 * DAY);
            b.add_audit(record(DAY, "a"), 8, 2 * DAY);
            b.commit().unwrap();
            state.flush().unwrap();
        }
        let state = StateStore::open(dir.path()).unwrap();
        let held = state.audit_records();
        let seen: Vec<(&str, u64)> = held.iter().map(|r| (r.action.as_str(), r.index)).collect();
        assert_eq!(seen, [("a", 8), ("b", 7)]);
        assert_eq!(state.audit_retention_seconds(), DEFAULT_AUDIT_RETENTION_S);
    }

    #[test]
    fn records_past_the_retention_are_forgotten_by_the_next_record_on_every_path() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(dir.path()).unwrap();
        let mut b = state.batch();
        b.set_audit_retention(2 * 24 * 3600);
        b.add_audit(record(DAY, "old"), 1, DAY);
        b.add_audit(record(3 * DAY, "kept"), 2, 3 * DAY);
        b.commit().unwrap();
        state.flush().unwrap();
        // Day 4: the day-1 record is more than two days old.
        let mut b = state.batch();
        b.add_audit(record(4 * DAY, "new"), 3, 4 * DAY);
        b.commit().unwrap();
        let actions = |s: &StateStore| -> Vec<String> {
            s.audit_records().into_iter().map(|r| r.action).collect()
        };
        assert_eq!(actions(&state), ["kept", "new"]);
        state.flush().unwrap();
        drop(state);
        let state = StateStore::open(dir.path()).unwrap();
        assert_eq!(
            actions(&state),
            ["kept", "new"],
            "the database forgot them too"
        );
        assert_eq!(state.audit_retention_seconds(), 2 * 24 * 3600);
    }
}
