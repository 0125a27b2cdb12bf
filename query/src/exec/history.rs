//! Reading tag histories through [`History`]: one tag after another, or
//! several merged by time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::source::{reading_row, RowSink};
use super::{Budget, ExecContext, Flow};
use crate::error::Result;
use crate::model::{Reading, Tag};
use crate::store::{History, Position, ReadingFilter, ScanRequest};

/// The part of every tag's scan that a query fixes: the time range (both
/// ends inclusive), the direction and the pushed-down filter.
#[derive(Clone, Copy, Debug)]
pub(super) struct HistoryRange {
    pub from_us: i64,
    pub to_us: i64,
    /// By (ts, revision) descending.
    pub backward: bool,
    pub filter: ReadingFilter,
}

impl HistoryRange {
    fn request<'t>(&self, tag: &'t Tag, budget: &Budget) -> ScanRequest<'t> {
        ScanRequest {
            tag,
            from: Position::first_at(self.from_us),
            to: Position::last_at(self.to_us),
            backward: self.backward,
            limit: None,
            max_read: budget.remaining(),
            filter: self.filter,
        }
    }
}

/// Runs one scan, counting what it read against the budget: each reading
/// handed over as it comes, the ones the filter skipped at the end.
fn scan(
    history: &dyn History,
    req: &ScanRequest<'_>,
    budget: &mut Budget,
    visit: &mut dyn FnMut(Reading) -> Result<bool>,
) -> Result<()> {
    budget.check_deadline()?;
    let mut failed = None;
    let outcome = history.scan(req, &mut |r| match budget.tick().and_then(|()| visit(r)) {
        Ok(go_on) => go_on,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    budget.add(outcome.read - outcome.visited)
}

/// Feeds the readings of one tag to `f`; returns `Stop` when `f` said so.
pub(super) fn scan_one_history(
    tag: &Tag,
    range: HistoryRange,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    f: &mut RowSink<'_>,
) -> Result<Flow> {
    let req = range.request(tag, budget);
    let mut flow = Flow::Continue;
    scan(ctx.history, &req, budget, &mut |r| {
        flow = f(reading_row(r))?;
        Ok(flow == Flow::Continue)
    })?;
    Ok(match flow {
        Flow::Stop => Flow::Stop,
        _ => Flow::Continue,
    })
}

/// How many readings a merge fetches from one tag at a time: enough to
/// amortise a seek, few enough that thousands of tags fit in memory.
const MERGE_CHUNK: u64 = 64;

/// One tag's place in a merge: readings fetched but not yet merged, and
/// where to continue.
struct MergeCursor<'t> {
    fetched: VecDeque<Reading>,
    rest: Option<ScanRequest<'t>>,
}

impl MergeCursor<'_> {
    /// Fetches the next chunk when nothing is left of the previous one.
    fn refill(&mut self, history: &dyn History, budget: &mut Budget) -> Result<()> {
        let Some(mut req) = self.rest.filter(|_| self.fetched.is_empty()) else {
            return Ok(());
        };
        req.limit = Some(MERGE_CHUNK);
        req.max_read = budget.remaining();
        let fetched = &mut self.fetched;
        scan(history, &req, budget, &mut |r| {
            fetched.push_back(r);
            Ok(true)
        })?;
        self.rest = match self.fetched.back() {
            Some(r) if self.fetched.len() as u64 == MERGE_CHUNK => after(req, Position::of(r)),
            _ => None,
        };
        Ok(())
    }

    /// The merge order of this cursor's next reading: time in the scan's
    /// direction, ties by the tag's place in the visiting order, then by
    /// revision in the scan's direction (revisions are unique).
    fn head_key(&self, rank: usize, backward: bool) -> Option<MergeKey> {
        self.fetched.front().map(|r| {
            let dir = |x: i128| if backward { -x } else { x };
            MergeKey(dir(r.ts_us.into()), rank, dir(r.revision.into()))
        })
    }
}

/// The rest of `req` after the reading at `pos` (in its direction).
fn after(mut req: ScanRequest<'_>, pos: Position) -> Option<ScanRequest<'_>> {
    if req.backward {
        req.to = pos.prev()?;
    } else {
        req.from = pos.next()?;
    }
    Some(req)
}

/// Smaller comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MergeKey(i128, usize, i128);

/// Feeds the readings of all `tags` to `f` ordered by time (see
/// [`MergeCursor::head_key`]), reading each tag's history in chunks, so a
/// `LIMIT` stops the reading after little more than the rows it returns.
pub(super) fn merge_histories(
    tags: &[Tag],
    range: HistoryRange,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    f: &mut RowSink<'_>,
) -> Result<()> {
    let mut cursors: Vec<MergeCursor<'_>> = tags
        .iter()
        .map(|tag| MergeCursor {
            fetched: VecDeque::new(),
            rest: Some(range.request(tag, budget)),
        })
        .collect();
    let mut heads = BinaryHeap::new();
    for (rank, c) in cursors.iter_mut().enumerate() {
        c.refill(ctx.history, budget)?;
        heads.extend(c.head_key(rank, range.backward).map(Reverse));
    }
    while let Some(Reverse(MergeKey(_, rank, _))) = heads.pop() {
        let c = &mut cursors[rank];
        let r = c.fetched.pop_front().expect("a head key has a reading");
        match f(reading_row(r))? {
            Flow::Stop => break,
            Flow::NextTag => continue,
            Flow::Continue => {}
        }
        c.refill(ctx.history, budget)?;
        heads.extend(c.head_key(rank, range.backward).map(Reverse));
    }
    Ok(())
}
