//! Running a plan: choose the tags and the time range to read, scan in the
//! order the query needs when the store can give it (so rows stream and
//! LIMIT stops the scan), otherwise collect, aggregate or sort in memory.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bifrost_storage::{QualityLevel, Reading, StateStore, Tag, Value};

use super::pattern::Pattern;
use super::plan::{col, AggFn, AggPlan, AggSpec, ArOp, CmpOp, Ex, OrderKey, Plan, Table};
use super::{Cell, ErrorKind, ExecContext, ExecStats, QueryError};

type Result<T> = std::result::Result<T, QueryError>;

/// What a row consumer wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Done with this tag's history; go on with the next tag.
    NextTag,
    Stop,
}

/// Counts rows read against the scan limit and watches the deadline.
struct Budget {
    scanned: u64,
    max_scan: u64,
    deadline: Option<Instant>,
    noun: &'static str,
}

impl Budget {
    fn tick(&mut self) -> Result<()> {
        self.scanned += 1;
        if self.max_scan > 0 && self.scanned > self.max_scan {
            return Err(QueryError::new(
                ErrorKind::Limit,
                format!(
                    "query would scan more than {} {} (limit); narrow the tag filter or time range",
                    self.max_scan, self.noun
                ),
            ));
        }
        // Every 256 rows: reading the clock per row would cost more than the row.
        if self.scanned & 255 == 0 {
            self.check_deadline()?;
        }
        Ok(())
    }

    fn check_deadline(&self) -> Result<()> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(QueryError::new(
                ErrorKind::Timeout,
                format!(
                    "query passed its deadline after scanning {} {}; narrow the tag filter or time range",
                    self.scanned, self.noun
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Applies OFFSET, LIMIT and the row limit, and hands rows to the sink.
struct Emitter<'s> {
    sink: &'s mut dyn FnMut(Vec<Cell>) -> bool,
    visible: usize,
    skip: u64,
    limit: Option<u64>,
    max_rows: u64,
    rows: u64,
}

impl Emitter<'_> {
    fn emit(&mut self, mut row: Vec<Cell>) -> Result<Flow> {
        if self.limit.is_some_and(|l| self.rows >= l) {
            return Ok(Flow::Stop);
        }
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(Flow::Continue);
        }
        if self.max_rows > 0 && self.rows >= self.max_rows {
            return Err(QueryError::new(
                ErrorKind::Limit,
                format!(
                    "query returns more than {} rows (limit); add a LIMIT or narrow the query",
                    self.max_rows
                ),
            ));
        }
        row.truncate(self.visible);
        self.rows += 1;
        if !(self.sink)(row) || self.limit.is_some_and(|l| self.rows >= l) {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }
}

pub(crate) fn execute(
    plan: &Plan,
    ctx: &ExecContext<'_>,
    sink: &mut dyn FnMut(Vec<Cell>) -> bool,
) -> Result<ExecStats> {
    let mut budget = Budget {
        scanned: 0,
        max_scan: ctx.limits.max_scan,
        deadline: ctx.limits.deadline,
        noun: match plan.table {
            Table::Readings => "readings",
            Table::Tags => "tags",
            Table::Devices => "devices",
            Table::Cluster => "members",
        },
    };
    budget.check_deadline()?;
    let mut em = Emitter {
        sink,
        visible: plan.columns.len(),
        skip: plan.offset,
        limit: plan.limit,
        max_rows: ctx.limits.max_rows,
        rows: 0,
    };
    if plan.limit != Some(0) {
        match &plan.agg {
            None => run_plain(plan, ctx, &mut budget, &mut em)?,
            Some(a) => run_agg(plan, a, ctx, &mut budget, &mut em)?,
        }
    }
    Ok(ExecStats {
        rows: em.rows,
        scanned: budget.scanned,
    })
}

/// Where rows come from, and in which order.
enum Source {
    Readings {
        /// In the order to visit (or, when merging, the order of ties).
        tags: Vec<Tag>,
        from_us: i64,
        to_us: i64,
        /// Each tag's history by (ts, revision) descending.
        reverse: bool,
        /// Interleave the tags' histories by time instead of one tag after another.
        merge: bool,
    },
    Tags {
        tags: Vec<Tag>,
        with_current: bool,
    },
    Devices,
    Cluster,
}

fn readings_source(plan: &Plan, ctx: &ExecContext<'_>, reverse: bool) -> Source {
    let (from_us, to_us) = match &plan.filter {
        Some(f) => ts_range(f, col::R_TS, ctx.now_us),
        None => FULL,
    };
    Source::Readings {
        tags: select_tags(plan, ctx.state),
        from_us,
        to_us,
        reverse,
        merge: false,
    }
}

fn tags_source(plan: &Plan, ctx: &ExecContext<'_>) -> Source {
    let current = col::T_FIRST_CURRENT..=col::T_REVISION;
    let uses = |e: &Ex| current.clone().any(|c| e.uses_column(c));
    // first() and last() order the rows by the current reading's (ts, revision).
    let by_time = |s: &AggSpec| matches!(s.func, AggFn::First | AggFn::Last);
    let with_current = plan.filter.as_ref().is_some_and(uses)
        || plan.outputs.iter().any(uses)
        || plan.agg.as_ref().is_some_and(|a| {
            a.keys.iter().any(uses)
                || a.aggs.iter().filter_map(|s| s.arg.as_ref()).any(uses)
                || a.aggs.iter().any(by_time)
        });
    Source::Tags {
        tags: select_tags(plan, ctx.state),
        with_current,
    }
}

fn source_for(plan: &Plan, ctx: &ExecContext<'_>) -> Source {
    match plan.table {
        Table::Readings => readings_source(plan, ctx, false),
        Table::Tags => tags_source(plan, ctx),
        Table::Devices => Source::Devices,
        Table::Cluster => Source::Cluster,
    }
}

/// Feeds every row of `src` to `f` (which decides what to keep) until it says stop.
fn run_source(
    src: Source,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    f: &mut dyn FnMut(Vec<Cell>) -> Result<Flow>,
) -> Result<()> {
    match src {
        Source::Readings {
            tags,
            from_us,
            to_us,
            reverse,
            merge,
        } => {
            let scan = HistoryScan {
                from: (from_us, 0),
                to: (to_us, u64::MAX),
                reverse,
            };
            if merge {
                merge_histories(&tags, scan, ctx, budget, f)?;
            } else {
                for tag in &tags {
                    if scan_one_history(tag, scan, ctx, budget, f)? == Flow::Stop {
                        break;
                    }
                }
            }
        }
        Source::Tags { tags, with_current } => {
            for chunk in tags.chunks(256) {
                budget.check_deadline()?;
                let current = if with_current {
                    ctx.state.current_many(chunk)?
                } else {
                    vec![None; chunk.len()]
                };
                for (t, cur) in chunk.iter().zip(current) {
                    budget.tick()?;
                    if f(tag_row(t, cur))? == Flow::Stop {
                        return Ok(());
                    }
                }
            }
        }
        Source::Devices => {
            let owners = ctx.state.assignments();
            for d in ctx.state.devices() {
                budget.tick()?;
                let a = owners.get(&d.name);
                let labels = serde_json::to_string(&d.labels).unwrap_or_else(|_| "{}".into());
                let row = vec![
                    Cell::Text(d.name),
                    Cell::Text(d.protocol),
                    Cell::Text(d.endpoint),
                    Cell::Int(d.unit_id.into()),
                    int(d.poll_interval_ms),
                    int(d.timeout_ms),
                    Cell::Int(d.retries.into()),
                    Cell::Bool(d.enabled),
                    Cell::Text(labels),
                    int(d.revision),
                    a.map_or(Cell::Null, |a| int(a.node)),
                    a.map_or(Cell::Null, |a| int(a.epoch)),
                ];
                if f(row)? == Flow::Stop {
                    break;
                }
            }
        }
        Source::Cluster => {
            let mut per_node: BTreeMap<u64, u64> = BTreeMap::new();
            for a in ctx.state.assignments().values() {
                *per_node.entry(a.node).or_default() += 1;
            }
            let mut members = ctx.cluster.members.clone();
            members.sort_by_key(|m| m.id);
            for m in members {
                budget.tick()?;
                let role = if m.is_leader {
                    "leader"
                } else if m.voter {
                    "follower"
                } else {
                    "learner"
                };
                let row = vec![
                    int(m.id),
                    Cell::Text(m.address),
                    Cell::Text(role.into()),
                    Cell::Bool(m.voter),
                    Cell::Bool(m.is_leader),
                    int(per_node.get(&m.id).copied().unwrap_or(0)),
                ];
                if f(row)? == Flow::Stop {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// One tag's history between two `(ts, revision)` positions, both inclusive.
#[derive(Clone, Copy, Debug)]
struct HistoryScan {
    from: (i64, u64),
    to: (i64, u64),
    reverse: bool,
}

impl HistoryScan {
    /// The rest of the scan after the reading at `pos` (in scan direction).
    fn after(mut self, pos: (i64, u64)) -> Option<HistoryScan> {
        if self.reverse {
            self.to = match pos {
                (t, 0) => (t.checked_sub(1)?, u64::MAX),
                (t, r) => (t, r - 1),
            };
        } else {
            self.from = match pos {
                (t, u64::MAX) => (t.checked_add(1)?, 0),
                (t, r) => (t, r + 1),
            };
        }
        Some(self)
    }
}

/// Feeds the readings of one tag in `scan` to `f`; returns `Stop` when `f` said so.
fn scan_one_history(
    tag: &Tag,
    scan: HistoryScan,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    f: &mut dyn FnMut(Vec<Cell>) -> Result<Flow>,
) -> Result<Flow> {
    budget.check_deadline()?;
    let mut outcome = Ok(Flow::Continue);
    ctx.state
        .scan_history_between(tag, scan.from, scan.to, scan.reverse, |r| {
            outcome = budget.tick().and_then(|()| f(reading_row(r)));
            outcome == Ok(Flow::Continue)
        })?;
    outcome.map(|flow| match flow {
        Flow::Stop => Flow::Stop,
        _ => Flow::Continue,
    })
}

/// How many readings a merge fetches from one tag at a time: enough to
/// amortise a seek, few enough that thousands of tags fit in memory.
const MERGE_CHUNK: usize = 64;

/// One tag's place in a merge: readings fetched but not yet merged, and
/// where to continue.
struct MergeCursor<'t> {
    tag: &'t Tag,
    fetched: std::collections::VecDeque<Reading>,
    rest: Option<HistoryScan>,
}

impl MergeCursor<'_> {
    /// Fetches the next chunk when nothing is left of the previous one.
    fn refill(&mut self, ctx: &ExecContext<'_>, budget: &mut Budget) -> Result<()> {
        let Some(scan) = self.rest.filter(|_| self.fetched.is_empty()) else {
            return Ok(());
        };
        budget.check_deadline()?;
        let mut failed = Ok(());
        let fetched = &mut self.fetched;
        ctx.state
            .scan_history_between(self.tag, scan.from, scan.to, scan.reverse, |r| {
                failed = budget.tick();
                fetched.push_back(r);
                failed.is_ok() && fetched.len() < MERGE_CHUNK
            })?;
        failed?;
        self.rest = match self.fetched.back() {
            Some(r) if self.fetched.len() == MERGE_CHUNK => scan.after((r.ts_us, r.revision)),
            _ => None,
        };
        Ok(())
    }

    /// The merge order of this cursor's next reading: time in the scan's
    /// direction, ties by the tag's place in the visiting order, then by
    /// revision in the scan's direction (revisions are unique).
    fn head_key(&self, rank: usize, reverse: bool) -> Option<MergeKey> {
        self.fetched.front().map(|r| {
            let dir = |x: i128| if reverse { -x } else { x };
            MergeKey(dir(r.ts_us.into()), rank, dir(r.revision.into()))
        })
    }
}

/// Smaller comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MergeKey(i128, usize, i128);

/// Feeds the readings of all `tags` to `f` ordered by time (see
/// [`MergeCursor::head_key`]), reading each tag's history in chunks, so a
/// `LIMIT` stops the scan after little more than the rows it returns.
fn merge_histories(
    tags: &[Tag],
    scan: HistoryScan,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    f: &mut dyn FnMut(Vec<Cell>) -> Result<Flow>,
) -> Result<()> {
    use std::cmp::Reverse;
    let mut cursors: Vec<MergeCursor<'_>> = tags
        .iter()
        .map(|tag| MergeCursor {
            tag,
            fetched: Default::default(),
            rest: Some(scan),
        })
        .collect();
    let mut heads = std::collections::BinaryHeap::new();
    for (rank, c) in cursors.iter_mut().enumerate() {
        c.refill(ctx, budget)?;
        heads.extend(c.head_key(rank, scan.reverse).map(Reverse));
    }
    while let Some(Reverse(MergeKey(_, rank, _))) = heads.pop() {
        let c = &mut cursors[rank];
        let r = c.fetched.pop_front().expect("a head key has a reading");
        match f(reading_row(r))? {
            Flow::Stop => break,
            Flow::NextTag => continue,
            Flow::Continue => {}
        }
        c.refill(ctx, budget)?;
        heads.extend(c.head_key(rank, scan.reverse).map(Reverse));
    }
    Ok(())
}

fn int(v: u64) -> Cell {
    Cell::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn value_cell(v: Option<Value>) -> Cell {
    match v {
        None => Cell::Null,
        Some(Value::Bool(b)) => Cell::Bool(b),
        Some(Value::Int(i)) => Cell::Int(i),
        Some(Value::Float(x)) => Cell::Float(x),
        Some(Value::Text(s)) => Cell::Text(s),
    }
}

fn quality_cell(level: QualityLevel) -> Cell {
    Cell::Text(
        match level {
            QualityLevel::Good => "good",
            QualityLevel::Uncertain => "uncertain",
            QualityLevel::Bad => "bad",
        }
        .into(),
    )
}

fn reason_cell(reason: String) -> Cell {
    if reason.is_empty() {
        Cell::Null
    } else {
        Cell::Text(reason)
    }
}

/// Columns as listed for `readings` in plan.rs.
fn reading_row(r: Reading) -> Vec<Cell> {
    vec![
        Cell::Text(r.tag),
        Cell::Timestamp(r.ts_us),
        value_cell(r.value),
        quality_cell(r.quality.level),
        reason_cell(r.quality.reason),
        int(r.revision),
        Cell::Text(r.id),
        Cell::Timestamp(r.server_ts_us),
    ]
}

/// Columns as listed for `tags` in plan.rs.
fn tag_row(t: &Tag, cur: Option<Reading>) -> Vec<Cell> {
    let mut row = vec![
        Cell::Text(t.name.clone()),
        Cell::Text(t.device.clone()),
        Cell::Text(t.address.clone()),
        Cell::Text(t.data_type.as_str().into()),
        Cell::Text(t.units.clone()),
        Cell::Text(t.description.clone()),
        Cell::Bool(t.writable),
        int(t.scan_rate_ms),
        int(t.revision),
    ];
    match cur {
        None => row.extend([Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null]),
        Some(r) => row.extend([
            value_cell(r.value),
            quality_cell(r.quality.level),
            reason_cell(r.quality.reason),
            Cell::Timestamp(r.ts_us),
            int(r.revision),
        ]),
    }
    row
}

fn passes(plan: &Plan, row: &[Cell], now: i64) -> bool {
    plan.filter
        .as_ref()
        .is_none_or(|f| matches!(ev(f, row, now).as_ref(), Cell::Bool(true)))
}

fn project(outputs: &[Ex], row: &[Cell], now: i64) -> Vec<Cell> {
    outputs
        .iter()
        .map(|e| ev(e, row, now).into_owned())
        .collect()
}

fn run_plain(
    plan: &Plan,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    em: &mut Emitter<'_>,
) -> Result<()> {
    let now = ctx.now_us;
    let (src, streaming) = plain_source(plan, ctx);
    if streaming {
        return run_source(src, ctx, budget, &mut |row| {
            if !passes(plan, &row, now) {
                return Ok(Flow::Continue);
            }
            em.emit(project(&plan.outputs, &row, now))
        });
    }
    // Sorted in memory; with a LIMIT only the best OFFSET + LIMIT rows are kept.
    let keep = plan.limit.map(|l| l.saturating_add(plan.offset));
    let mut buf: Vec<Vec<Cell>> = Vec::new();
    run_source(src, ctx, budget, &mut |row| {
        if passes(plan, &row, now) {
            buf.push(project(&plan.outputs, &row, now));
            if let Some(keep) = keep {
                let keep = usize::try_from(keep).unwrap_or(usize::MAX);
                if buf.len() >= keep.saturating_mul(2).max(1024) {
                    sort_rows(&mut buf, &plan.order);
                    buf.truncate(keep);
                }
            }
        }
        Ok(Flow::Continue)
    })?;
    sort_rows(&mut buf, &plan.order);
    for row in buf {
        if em.emit(row)? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// The source for a query without aggregates, and whether its scan order
/// already is the requested order (so rows can stream).
fn plain_source(plan: &Plan, ctx: &ExecContext<'_>) -> (Source, bool) {
    // Sort keys that are plain columns: (column, descending).
    let keys: Option<Vec<(usize, bool)>> = plan
        .order
        .iter()
        .map(|k| match plan.outputs[k.idx] {
            Ex::Col(c) => Some((c, k.desc)),
            _ => None,
        })
        .collect();
    match plan.table {
        Table::Readings => {
            let Source::Readings {
                mut tags,
                from_us,
                to_us,
                ..
            } = readings_source(plan, ctx, false)
            else {
                unreachable!("readings_source builds a readings source")
            };
            let order = keys.and_then(|keys| readings_scan_order(keys, tags.len() <= 1));
            // Not served by the scan: rows are sorted in memory, where ties
            // keep the scan order (see `ts_sorted_descending`).
            let (tags_desc, reverse, merge) =
                order.unwrap_or((false, ts_sorted_descending(plan), false));
            if tags_desc {
                tags.reverse();
            }
            (
                Source::Readings {
                    tags,
                    from_us,
                    to_us,
                    reverse,
                    merge,
                },
                order.is_some(),
            )
        }
        Table::Tags => {
            let Source::Tags {
                mut tags,
                with_current,
            } = tags_source(plan, ctx)
            else {
                unreachable!("tags_source builds a tags source")
            };
            let order = keys.and_then(|keys| match keys.as_slice() {
                [] => Some(false),
                [(col::T_NAME, d)] => Some(*d),
                _ => None,
            });
            if order == Some(true) {
                tags.reverse();
            }
            (Source::Tags { tags, with_current }, order.is_some())
        }
        _ => (source_for(plan, ctx), plan.order.is_empty()),
    }
}

/// Whether reading the tags' histories in some way yields rows in the order
/// of `keys` (plain columns with their direction): as (tags descending,
/// each history reversed, merged by time). Ties in ORDER BY come by tag
/// ascending (unless it is a key), then by (ts, revision) ascending, or
/// descending when `ts` is sorted descending.
fn readings_scan_order(mut keys: Vec<(usize, bool)>, one_tag: bool) -> Option<(bool, bool, bool)> {
    if one_tag {
        // One tag: ordering by tag is a no-op.
        keys.retain(|(c, _)| *c != col::R_TAG);
    }
    match keys.as_slice() {
        [] => Some((false, false, false)),
        [(col::R_TAG, d)] => Some((*d, false, false)),
        [(col::R_TAG, d), (col::R_TS, r)] => Some((*d, *r, false)),
        [(col::R_TS, r)] => Some((false, *r, !one_tag)),
        [(col::R_TS, r), (col::R_TAG, d)] => Some((*d, *r, !one_tag)),
        _ => None,
    }
}

/// Whether the first ORDER BY key on `ts` itself is descending: then
/// readings that tie on every key come by revision descending, as they
/// do when the scan serves the order. An in-memory sort is stable, so
/// reading each history in that direction gives the same ties.
fn ts_sorted_descending(plan: &Plan) -> bool {
    plan.order
        .iter()
        .find(|k| plan.outputs[k.idx] == Ex::Col(col::R_TS))
        .is_some_and(|k| k.desc)
}

fn run_agg(
    plan: &Plan,
    agg: &AggPlan,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    em: &mut Emitter<'_>,
) -> Result<()> {
    let now = ctx.now_us;
    let time_cols = plan.table.time_columns();
    let usable_only = plan.table == Table::Readings && !plan.quality_filtered;
    // Every aggregate is last() (or every one first()), per tag or overall:
    // one seek per tag finds the only row that matters.
    let seek = if plan.table == Table::Readings
        && (agg.keys.is_empty() || agg.keys == [Ex::Col(col::R_TAG)])
        && !agg.aggs.is_empty()
    {
        if agg.aggs.iter().all(|a| a.func == AggFn::Last) {
            Some(true)
        } else if agg.aggs.iter().all(|a| a.func == AggFn::First) {
            Some(false)
        } else {
            None
        }
    } else {
        None
    };
    let src = match plan.table {
        Table::Readings => readings_source(plan, ctx, seek.unwrap_or(false)),
        _ => source_for(plan, ctx),
    };
    let fresh = || -> Vec<Acc> { agg.aggs.iter().map(Acc::new).collect() };
    let mut groups: BTreeMap<Key, Vec<Acc>> = BTreeMap::new();
    if agg.keys.is_empty() {
        groups.insert(Key(Vec::new()), fresh());
    }
    run_source(src, ctx, budget, &mut |row| {
        if !passes(plan, &row, now) {
            return Ok(Flow::Continue);
        }
        if usable_only
            && (row[col::R_VALUE] == Cell::Null || row[col::R_QUALITY] == Cell::Text("bad".into()))
        {
            return Ok(Flow::Continue);
        }
        let key = Key(agg
            .keys
            .iter()
            .map(|k| ev(k, &row, now).into_owned())
            .collect());
        let accs = groups.entry(key).or_insert_with(fresh);
        let at = time_cols.and_then(|(ts, rev)| match (&row[ts], &row[rev]) {
            (Cell::Timestamp(t), Cell::Int(r)) => Some((*t, *r)),
            _ => None,
        });
        for (acc, spec) in accs.iter_mut().zip(&agg.aggs) {
            let v = spec.arg.as_ref().map(|a| ev(a, &row, now));
            acc.feed(v.as_deref(), at);
        }
        Ok(if seek.is_some() {
            Flow::NextTag
        } else {
            Flow::Continue
        })
    })?;
    let mut rows: Vec<Vec<Cell>> = groups
        .into_iter()
        .map(|(key, accs)| {
            let mut slots = key.0;
            slots.extend(accs.into_iter().map(Acc::finish));
            project(&plan.outputs, &slots, now)
        })
        .collect();
    sort_rows(&mut rows, &plan.order);
    for row in rows {
        if em.emit(row)? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// A group key, ordered with [`cmp_total`].
#[derive(Debug)]
struct Key(Vec<Cell>);

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| cmp_total(a, b))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.0.len().cmp(&other.0.len()))
    }
}

/// An aggregate's running state.
enum Acc {
    Count(u64),
    Sum {
        int: i128,
        float: f64,
        any_float: bool,
        n: u64,
    },
    Avg {
        sum: f64,
        n: u64,
    },
    Min(Option<Cell>),
    Max(Option<Cell>),
    /// Keeps the row with the smallest (ts, revision), or the greatest.
    First(Option<((i64, i64), Cell)>),
    Last(Option<((i64, i64), Cell)>),
}

impl Acc {
    fn new(spec: &AggSpec) -> Acc {
        match spec.func {
            AggFn::CountStar | AggFn::Count => Acc::Count(0),
            AggFn::Sum => Acc::Sum {
                int: 0,
                float: 0.0,
                any_float: false,
                n: 0,
            },
            AggFn::Avg => Acc::Avg { sum: 0.0, n: 0 },
            AggFn::Min => Acc::Min(None),
            AggFn::Max => Acc::Max(None),
            AggFn::First => Acc::First(None),
            AggFn::Last => Acc::Last(None),
        }
    }

    /// `v` is the argument's value (None for `count(*)`); `at` the row's (ts, revision).
    fn feed(&mut self, v: Option<&Cell>, at: Option<(i64, i64)>) {
        match self {
            Acc::Count(n) => {
                if v.is_none_or(|v| *v != Cell::Null) {
                    *n += 1;
                }
            }
            Acc::Sum {
                int,
                float,
                any_float,
                n,
            } => match v {
                Some(Cell::Int(i)) => {
                    *int += i128::from(*i);
                    *n += 1;
                }
                Some(Cell::Float(x)) => {
                    *float += x;
                    *any_float = true;
                    *n += 1;
                }
                _ => {}
            },
            Acc::Avg { sum, n } => match v {
                Some(Cell::Int(i)) => {
                    *sum += *i as f64;
                    *n += 1;
                }
                Some(Cell::Float(x)) => {
                    *sum += x;
                    *n += 1;
                }
                _ => {}
            },
            Acc::Min(best) => keep(best, v, Ordering::Less),
            Acc::Max(best) => keep(best, v, Ordering::Greater),
            Acc::First(best) => keep_at(best, v, at, Ordering::Less),
            Acc::Last(best) => keep_at(best, v, at, Ordering::Greater),
        }
    }

    fn finish(self) -> Cell {
        match self {
            Acc::Count(n) => int(n),
            Acc::Sum { n: 0, .. } | Acc::Avg { n: 0, .. } => Cell::Null,
            Acc::Sum {
                int,
                float,
                any_float,
                ..
            } => {
                if any_float {
                    Cell::Float(float + int as f64)
                } else {
                    i64::try_from(int).map_or(Cell::Float(int as f64), Cell::Int)
                }
            }
            Acc::Avg { sum, n } => Cell::Float(sum / n as f64),
            Acc::Min(v) | Acc::Max(v) => v.unwrap_or(Cell::Null),
            Acc::First(v) | Acc::Last(v) => v.map_or(Cell::Null, |(_, c)| c),
        }
    }
}

/// Keeps `v` if it is the first non-null value or compares as `want` with the kept one.
fn keep(best: &mut Option<Cell>, v: Option<&Cell>, want: Ordering) {
    if let Some(v) = v.filter(|v| **v != Cell::Null) {
        if best.as_ref().is_none_or(|b| cmp_total(v, b) == want) {
            *best = Some(v.clone());
        }
    }
}

/// Keeps `v` if its row's (ts, revision) is the first seen or compares as `want`.
fn keep_at(
    best: &mut Option<((i64, i64), Cell)>,
    v: Option<&Cell>,
    at: Option<(i64, i64)>,
    want: Ordering,
) {
    if let (Some(v), Some(at)) = (v, at) {
        if best.as_ref().is_none_or(|(b, _)| at.cmp(b) == want) {
            *best = Some((at, v.clone()));
        }
    }
}

fn sort_rows(rows: &mut [Vec<Cell>], order: &[OrderKey]) {
    if order.is_empty() {
        return;
    }
    rows.sort_by(|a, b| {
        for k in order {
            let (x, y) = (&a[k.idx], &b[k.idx]);
            let o = match (*x == Cell::Null, *y == Cell::Null) {
                (true, true) => Ordering::Equal,
                (true, false) if k.nulls_first => Ordering::Less,
                (true, false) => Ordering::Greater,
                (false, true) if k.nulls_first => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) if k.desc => cmp_total(y, x),
                (false, false) => cmp_total(x, y),
            };
            if o.is_ne() {
                return o;
            }
        }
        Ordering::Equal
    });
}

fn rank(c: &Cell) -> u8 {
    match c {
        Cell::Null => 0,
        Cell::Bool(_) => 1,
        Cell::Int(_) | Cell::Float(_) => 2,
        Cell::Text(_) => 3,
        Cell::Timestamp(_) => 4,
    }
}

/// A total order over cells (for sorting and grouping): null, bools,
/// numbers, text, timestamps.
fn cmp_total(a: &Cell, b: &Cell) -> Ordering {
    match (a, b) {
        (Cell::Bool(x), Cell::Bool(y)) => x.cmp(y),
        (Cell::Int(x), Cell::Int(y)) => x.cmp(y),
        (Cell::Int(x), Cell::Float(y)) => (*x as f64).total_cmp(y),
        (Cell::Float(x), Cell::Int(y)) => x.total_cmp(&(*y as f64)),
        (Cell::Float(x), Cell::Float(y)) => x.total_cmp(y),
        (Cell::Text(x), Cell::Text(y)) => x.cmp(y),
        (Cell::Timestamp(x), Cell::Timestamp(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// SQL comparison: None when either side is null or the two cannot be
/// compared (a text value against a number).
fn cmp_sql(a: &Cell, b: &Cell) -> Option<Ordering> {
    match (a, b) {
        (Cell::Bool(x), Cell::Bool(y)) => Some(x.cmp(y)),
        (Cell::Int(x), Cell::Int(y)) => Some(x.cmp(y)),
        (Cell::Int(x), Cell::Float(y)) => (*x as f64).partial_cmp(y),
        (Cell::Float(x), Cell::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Cell::Float(x), Cell::Float(y)) => x.partial_cmp(y),
        (Cell::Text(x), Cell::Text(y)) => Some(x.cmp(y)),
        (Cell::Timestamp(x), Cell::Timestamp(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn truth(c: &Cell) -> Option<bool> {
    match c {
        Cell::Bool(b) => Some(*b),
        _ => None,
    }
}

fn holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o.is_eq(),
        CmpOp::NotEq => o.is_ne(),
        CmpOp::Lt => o.is_lt(),
        CmpOp::LtEq => o.is_le(),
        CmpOp::Gt => o.is_gt(),
        CmpOp::GtEq => o.is_ge(),
    }
}

fn arith(op: ArOp, a: &Cell, b: &Cell) -> Cell {
    use Cell::{Float, Int, Null, Timestamp};
    let float = |x: f64, y: f64| -> Cell {
        Float(match op {
            ArOp::Add => x + y,
            ArOp::Sub => x - y,
            ArOp::Mul => x * y,
            ArOp::Div => x / y,
            ArOp::Mod => x % y,
        })
    };
    match (a, b) {
        // Intervals are microseconds (Int) at run time.
        (Timestamp(t), Int(d)) => match op {
            ArOp::Add => t.checked_add(*d).map_or(Null, Timestamp),
            ArOp::Sub => t.checked_sub(*d).map_or(Null, Timestamp),
            _ => Null,
        },
        (Int(d), Timestamp(t)) if op == ArOp::Add => t.checked_add(*d).map_or(Null, Timestamp),
        (Int(x), Int(y)) => match op {
            ArOp::Add => x.checked_add(*y),
            ArOp::Sub => x.checked_sub(*y),
            ArOp::Mul => x.checked_mul(*y),
            ArOp::Div => x.checked_div(*y),
            ArOp::Mod => x.checked_rem(*y),
        }
        .map_or(Null, Int),
        (Int(x), Float(y)) => float(*x as f64, *y),
        (Float(x), Int(y)) => float(*x, *y as f64),
        (Float(x), Float(y)) => float(*x, *y),
        _ => Null,
    }
}

/// Evaluates `ex` over `row`; columns and literals are borrowed, not copied.
fn ev<'a>(ex: &'a Ex, row: &'a [Cell], now: i64) -> Cow<'a, Cell> {
    let owned = Cow::Owned;
    match ex {
        Ex::Col(i) | Ex::Slot(i) => row.get(*i).map_or(owned(Cell::Null), Cow::Borrowed),
        Ex::Lit(c) => Cow::Borrowed(c),
        Ex::Now => owned(Cell::Timestamp(now)),
        Ex::Neg(e) => owned(match ev(e, row, now).as_ref() {
            Cell::Int(i) => i.checked_neg().map_or(Cell::Null, Cell::Int),
            Cell::Float(x) => Cell::Float(-x),
            _ => Cell::Null,
        }),
        Ex::Arith(op, a, b) => owned(arith(*op, &ev(a, row, now), &ev(b, row, now))),
        Ex::Cmp(op, a, b) => owned(match cmp_sql(&ev(a, row, now), &ev(b, row, now)) {
            None => Cell::Null,
            Some(o) => Cell::Bool(holds(*op, o)),
        }),
        Ex::And(a, b) => {
            let x = truth(&ev(a, row, now));
            if x == Some(false) {
                return owned(Cell::Bool(false));
            }
            owned(match (x, truth(&ev(b, row, now))) {
                (_, Some(false)) => Cell::Bool(false),
                (Some(true), Some(true)) => Cell::Bool(true),
                _ => Cell::Null,
            })
        }
        Ex::Or(a, b) => {
            let x = truth(&ev(a, row, now));
            if x == Some(true) {
                return owned(Cell::Bool(true));
            }
            owned(match (x, truth(&ev(b, row, now))) {
                (_, Some(true)) => Cell::Bool(true),
                (Some(false), Some(false)) => Cell::Bool(false),
                _ => Cell::Null,
            })
        }
        Ex::Not(e) => owned(truth(&ev(e, row, now)).map_or(Cell::Null, |b| Cell::Bool(!b))),
        Ex::In {
            expr,
            list,
            negated,
        } => {
            let x = ev(expr, row, now);
            if *x == Cell::Null {
                return owned(Cell::Null);
            }
            let mut unknown = false;
            for item in list {
                match cmp_sql(&x, &ev(item, row, now)) {
                    Some(Ordering::Equal) => return owned(Cell::Bool(!negated)),
                    None => unknown = true,
                    Some(_) => {}
                }
            }
            owned(if unknown {
                Cell::Null
            } else {
                Cell::Bool(*negated)
            })
        }
        Ex::Match {
            expr,
            pattern,
            negated,
        } => owned(match ev(expr, row, now).as_ref() {
            Cell::Text(s) => Cell::Bool(pattern.matches(s) != *negated),
            _ => Cell::Null,
        }),
        Ex::IsNull { expr, negated } => {
            owned(Cell::Bool((*ev(expr, row, now) == Cell::Null) != *negated))
        }
        Ex::Bucket { width, expr } => owned(match ev(expr, row, now).as_ref() {
            Cell::Timestamp(t) => t
                .div_euclid(*width)
                .checked_mul(*width)
                .map_or(Cell::Null, Cell::Timestamp),
            _ => Cell::Null,
        }),
    }
}

const FULL: (i64, i64) = (i64::MIN, i64::MAX);
/// Any range with its start after its end is empty.
const EMPTY: (i64, i64) = (i64::MAX, i64::MIN);

/// The inclusive range of `ts` values that can satisfy `ex` (a superset: the
/// filter still checks every row). Only comparisons of the column with
/// constants, combined with AND/OR, narrow it.
fn ts_range(ex: &Ex, ts: usize, now: i64) -> (i64, i64) {
    match ex {
        Ex::Cmp(op, a, b) => {
            let (op, c) = if **a == Ex::Col(ts) && b.is_const() {
                (*op, b)
            } else if **b == Ex::Col(ts) && a.is_const() {
                (op.flip(), a)
            } else {
                return FULL;
            };
            match ev(c, &[], now).as_ref() {
                Cell::Timestamp(t) => bound(op, *t),
                Cell::Null => EMPTY,
                _ => FULL,
            }
        }
        Ex::And(a, b) => {
            let (x, y) = (ts_range(a, ts, now), ts_range(b, ts, now));
            (x.0.max(y.0), x.1.min(y.1))
        }
        Ex::Or(a, b) => {
            let (x, y) = (ts_range(a, ts, now), ts_range(b, ts, now));
            if x.0 > x.1 {
                y
            } else if y.0 > y.1 {
                x
            } else {
                (x.0.min(y.0), x.1.max(y.1))
            }
        }
        _ => FULL,
    }
}

fn bound(op: CmpOp, t: i64) -> (i64, i64) {
    match op {
        CmpOp::Eq => (t, t),
        CmpOp::NotEq => FULL,
        CmpOp::Lt => t.checked_sub(1).map_or(EMPTY, |t| (i64::MIN, t)),
        CmpOp::LtEq => (i64::MIN, t),
        CmpOp::Gt => t.checked_add(1).map_or(EMPTY, |t| (t, i64::MAX)),
        CmpOp::GtEq => (t, i64::MAX),
    }
}

/// Which tag names the filter admits, as far as that can be told from
/// comparisons of the name column with constants.
#[derive(Debug)]
enum TagSel {
    All,
    Names(BTreeSet<String>),
    Pattern(Pattern),
    And(Box<TagSel>, Box<TagSel>),
    Or(Box<TagSel>, Box<TagSel>),
}

impl TagSel {
    fn of(ex: &Ex, c: usize) -> TagSel {
        let is_col = |e: &Ex| *e == Ex::Col(c);
        match ex {
            Ex::Cmp(CmpOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
                (x, Ex::Lit(Cell::Text(s))) | (Ex::Lit(Cell::Text(s)), x) if is_col(x) => {
                    TagSel::Names([s.clone()].into())
                }
                _ => TagSel::All,
            },
            Ex::In {
                expr,
                list,
                negated: false,
            } if is_col(expr) => {
                let names: Option<BTreeSet<String>> = list
                    .iter()
                    .map(|e| match e {
                        Ex::Lit(Cell::Text(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                names.map_or(TagSel::All, TagSel::Names)
            }
            Ex::Match {
                expr,
                pattern,
                negated: false,
            } if is_col(expr) => TagSel::Pattern(pattern.clone()),
            Ex::And(a, b) => match (TagSel::of(a, c), TagSel::of(b, c)) {
                (TagSel::All, x) | (x, TagSel::All) => x,
                (x, y) => TagSel::And(Box::new(x), Box::new(y)),
            },
            Ex::Or(a, b) => match (TagSel::of(a, c), TagSel::of(b, c)) {
                (TagSel::All, _) | (_, TagSel::All) => TagSel::All,
                (x, y) => TagSel::Or(Box::new(x), Box::new(y)),
            },
            _ => TagSel::All,
        }
    }

    fn admits(&self, name: &str) -> bool {
        match self {
            TagSel::All => true,
            TagSel::Names(n) => n.contains(name),
            TagSel::Pattern(p) => p.matches(name),
            TagSel::And(a, b) => a.admits(name) && b.admits(name),
            TagSel::Or(a, b) => a.admits(name) || b.admits(name),
        }
    }

    /// Smaller is narrower: a rough guide to which side of an AND to enumerate.
    fn breadth(&self) -> usize {
        match self {
            TagSel::All => usize::MAX,
            TagSel::Names(n) => n.len(),
            TagSel::Pattern(p) => usize::MAX / 2 - p.literal_prefix().len(),
            TagSel::And(a, b) => a.breadth().min(b.breadth()),
            TagSel::Or(a, b) => a.breadth().saturating_add(b.breadth()),
        }
    }

    /// The admitted tags, by name.
    fn tags(&self, state: &StateStore) -> BTreeMap<String, Tag> {
        let by_name = |v: Vec<Tag>| v.into_iter().map(|t| (t.name.clone(), t)).collect();
        match self {
            TagSel::All => by_name(state.tags_with_prefix("")),
            TagSel::Names(names) => names
                .iter()
                .filter_map(|n| state.tag(n))
                .map(|t| (t.name.clone(), t))
                .collect(),
            TagSel::Pattern(p) => by_name(
                state
                    .tags_with_prefix(p.literal_prefix())
                    .into_iter()
                    .filter(|t| p.matches(&t.name))
                    .collect(),
            ),
            TagSel::And(a, b) => {
                let (narrow, other) = if a.breadth() <= b.breadth() {
                    (a, b)
                } else {
                    (b, a)
                };
                let mut tags = narrow.tags(state);
                tags.retain(|name, _| other.admits(name));
                tags
            }
            TagSel::Or(a, b) => {
                let mut tags = a.tags(state);
                tags.extend(b.tags(state));
                tags
            }
        }
    }
}

/// The tags whose rows can pass the filter, by name.
fn select_tags(plan: &Plan, state: &StateStore) -> Vec<Tag> {
    let c = plan.table.tag_column().expect("a table with tag names");
    let sel = plan
        .filter
        .as_ref()
        .map_or(TagSel::All, |f| TagSel::of(f, c));
    sel.tags(state).into_values().collect()
}
