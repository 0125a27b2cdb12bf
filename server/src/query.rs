//! The query engine (`bifrost-query`) over this node's replicated state.
//!
//! The engine reads through two traits of its own, [`Catalog`] and
//! [`History`]; [`StoreView`] implements them over the RocksDB
//! [`StateStore`]. This adapter lives here because `server` is the only
//! crate that knows both: `storage` stays free of SQL and the engine free of
//! RocksDB. The server's `History` call reads through the same trait
//! ([`history`]), so swapping the history store means implementing
//! [`History`] once.

use std::collections::BTreeMap;

use bifrost_model::{Access, AuditRecord};
use bifrost_storage::{Assignment, Device, Reading, Rejection, StateStore, Tag};

pub use bifrost_query::store::{
    BucketSummaries, Position, ReadingFilter, ScanOutcome, ScanRequest, SummaryRequest,
};
pub use bifrost_query::*;

/// The query engine's view of a [`StateStore`].
#[derive(Clone, Copy)]
pub struct StoreView<'a>(pub &'a StateStore);

fn store_error(e: bifrost_storage::Error) -> StoreError {
    StoreError(e.to_string())
}

impl Catalog for StoreView<'_> {
    fn tags_with_prefix(&self, prefix: &str) -> Vec<Tag> {
        self.0.tags_with_prefix(prefix)
    }

    fn tag(&self, name: &str) -> Option<Tag> {
        self.0.tag(name)
    }

    fn current_many(&self, tags: &[Tag]) -> Result<Vec<Option<Reading>>, StoreError> {
        self.0.current_many(tags).map_err(store_error)
    }

    fn devices(&self) -> Vec<Device> {
        self.0.devices()
    }

    fn assignments(&self) -> BTreeMap<String, Assignment> {
        self.0.assignments()
    }

    fn audit(&self) -> Vec<AuditRecord> {
        self.0.audit_records()
    }
}

impl History for StoreView<'_> {
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        visit: &mut dyn FnMut(Reading) -> bool,
    ) -> Result<ScanOutcome, StoreError> {
        let mut out = ScanOutcome::default();
        if req.limit == Some(0) {
            return Ok(out);
        }
        let (from, to) = (
            (req.from.ts_us, req.from.revision),
            (req.to.ts_us, req.to.revision),
        );
        self.0
            .scan_history_between(req.tag, from, to, req.backward, |r| {
                out.read += 1;
                if req.filter.admits(&r) {
                    out.visited += 1;
                    if !visit(r) || req.limit == Some(out.visited) {
                        return false;
                    }
                }
                req.max_read != Some(out.read)
            })
            .map_err(store_error)?;
        Ok(out)
    }

    fn summarize(&self, req: &SummaryRequest<'_>) -> Result<BucketSummaries, StoreError> {
        let bucket_of = |ts_us| req.bucket_of(ts_us);
        let range = (req.from_us, req.to_us);
        let buckets = self
            .0
            .summarize_history(req.tag, range, &bucket_of, req.max_read)
            .map_err(store_error)?;
        Ok(buckets.into_iter().collect())
    }
}

/// A [`StoreView`] that shows only the tags `access` may see (every tag
/// with `None`): a query of a user restricted to `line1/**` finds no other
/// tag, so no row, current value or reading of one. Devices, assignments
/// and members are not tags and are shown to every reader; the audit
/// records only to administrators (`audit`).
#[derive(Clone, Copy)]
pub struct SeenBy<'a> {
    pub view: StoreView<'a>,
    pub access: Option<&'a Access>,
    pub audit: bool,
}

impl SeenBy<'_> {
    fn shows(&self, tag: &Tag) -> bool {
        self.access.is_none_or(|a| a.visible(&tag.name))
    }
}

impl Catalog for SeenBy<'_> {
    fn tags_with_prefix(&self, prefix: &str) -> Vec<Tag> {
        let mut tags = self.view.tags_with_prefix(prefix);
        tags.retain(|t| self.shows(t));
        tags
    }

    fn tag(&self, name: &str) -> Option<Tag> {
        self.view.tag(name).filter(|t| self.shows(t))
    }

    fn current_many(&self, tags: &[Tag]) -> Result<Vec<Option<Reading>>, StoreError> {
        self.view.current_many(tags)
    }

    /// Devices with their secrets masked (see [`crate::secrets::mask`]).
    fn devices(&self) -> Vec<Device> {
        self.view
            .devices()
            .into_iter()
            .map(crate::secrets::mask)
            .collect()
    }

    fn assignments(&self) -> BTreeMap<String, Assignment> {
        self.view.assignments()
    }

    fn audit(&self) -> Vec<AuditRecord> {
        if self.audit {
            self.view.audit()
        } else {
            Vec::new()
        }
    }
}

impl History for SeenBy<'_> {
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        visit: &mut dyn FnMut(Reading) -> bool,
    ) -> Result<ScanOutcome, StoreError> {
        if !self.shows(req.tag) {
            return Ok(ScanOutcome::default());
        }
        self.view.scan(req, visit)
    }

    fn summarize(&self, req: &SummaryRequest<'_>) -> Result<BucketSummaries, StoreError> {
        if !self.shows(req.tag) {
            return Ok(BucketSummaries::default());
        }
        self.view.summarize(req)
    }
}

/// Readings of `tag` with `from_us <= ts < to_us`, oldest first, at most
/// `limit` (0: all), passed to `visit` until it returns false: the server's
/// `History` call. Returns how many were passed.
pub fn history(
    state: &StateStore,
    tag: &str,
    from_us: i64,
    to_us: i64,
    limit: u64,
    visit: impl FnMut(Reading) -> bool,
) -> Result<Result<u64, Rejection>, StoreError> {
    let Some(tag) = state.tag(tag) else {
        return Ok(Err(Rejection::not_found(format!("unknown tag '{tag}'"))));
    };
    let Some(last) = to_us.checked_sub(1).filter(|last| from_us <= *last) else {
        return Ok(Ok(0));
    };
    let req = ScanRequest {
        limit: (limit > 0).then_some(limit),
        ..ScanRequest::between(&tag, from_us, last)
    };
    let mut visit = visit;
    let out = StoreView(state).scan(&req, &mut visit)?;
    Ok(Ok(out.visited))
}

#[cfg(test)]
mod tests;
