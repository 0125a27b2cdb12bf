//! Where rows come from: the four tables as rows of cells, in the order
//! their source gives them.

use std::collections::BTreeMap;

use super::history::{merge_histories, scan_one_history, HistoryRange};
use super::select::{quality_filter, select_tags, ts_range, FULL};
use super::{Budget, ExecContext, Flow};
use crate::cell::Cell;
use crate::error::Result;
use crate::front::plan::{AggFn, AggSpec, Ex};
use crate::front::{col, Plan, Table};
use crate::model::{QualityLevel, Reading, Tag, Value};
use crate::store::{MemberInfo, ReadingFilter};

/// Where rows come from, and in which order.
pub(super) enum Source {
    Readings {
        /// In the order to visit (or, when merging, the order of ties).
        tags: Vec<Tag>,
        range: HistoryRange,
        /// Interleave the tags' histories by time instead of one tag after another.
        merge: bool,
    },
    Tags {
        tags: Vec<Tag>,
        with_current: bool,
    },
    Devices,
    Cluster,
    Audit,
}

/// The readings of the tags the filter admits, in its time range, oldest
/// first and one tag after another unless the caller says otherwise.
/// Readings no row could pass are skipped by the store: those of other
/// qualities than the filter admits, and unusable ones when `usable_only`.
pub(super) fn readings_source(plan: &Plan, ctx: &ExecContext<'_>, usable_only: bool) -> Source {
    let (tags, range) = readings_scope(plan, ctx, usable_only);
    Source::Readings {
        tags,
        range,
        merge: false,
    }
}

/// The tags the filter admits and the scan each of them gets (see
/// [`readings_source`]).
pub(super) fn readings_scope(
    plan: &Plan,
    ctx: &ExecContext<'_>,
    usable_only: bool,
) -> (Vec<Tag>, HistoryRange) {
    let (from_us, to_us) = match &plan.filter {
        Some(f) => ts_range(f, col::R_TS, ctx.now_us),
        None => FULL,
    };
    let mut filter = plan
        .filter
        .as_ref()
        .map_or(ReadingFilter::ALL, quality_filter);
    if usable_only {
        filter.levels[2] = false;
        filter.needs_value = true;
    }
    let range = HistoryRange {
        from_us,
        to_us,
        backward: false,
        filter,
    };
    (select_tags(plan, ctx.catalog), range)
}

pub(super) fn tags_source(plan: &Plan, ctx: &ExecContext<'_>) -> Source {
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
        tags: select_tags(plan, ctx.catalog),
        with_current,
    }
}

pub(super) fn source_for(plan: &Plan, ctx: &ExecContext<'_>) -> Source {
    match plan.table {
        Table::Readings => readings_source(plan, ctx, false),
        Table::Tags => tags_source(plan, ctx),
        Table::Devices => Source::Devices,
        Table::Cluster => Source::Cluster,
        Table::Audit => Source::Audit,
    }
}

/// Where a row goes: decides what to keep, and whether to go on.
pub(super) type RowSink<'f> = dyn FnMut(Vec<Cell>) -> Result<Flow> + 'f;

/// Feeds every row of `src` to `f` until it says stop.
pub(super) fn run_source(
    src: Source,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    f: &mut RowSink<'_>,
) -> Result<()> {
    match src {
        Source::Readings { tags, range, merge } if merge => {
            merge_histories(&tags, range, ctx, budget, f)
        }
        Source::Readings { tags, range, .. } => {
            for tag in &tags {
                if scan_one_history(tag, range, ctx, budget, f)? == Flow::Stop {
                    break;
                }
            }
            Ok(())
        }
        Source::Tags { tags, with_current } => run_tags(&tags, with_current, ctx, budget, f),
        Source::Devices => run_devices(ctx, budget, f),
        Source::Cluster => run_cluster(ctx, budget, f),
        Source::Audit => run_audit(ctx, budget, f),
    }
}

fn run_tags(
    tags: &[Tag],
    with_current: bool,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    f: &mut RowSink<'_>,
) -> Result<()> {
    for chunk in tags.chunks(256) {
        budget.check_deadline()?;
        let current = if with_current {
            ctx.catalog.current_many(chunk)?
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
    Ok(())
}

fn run_devices(ctx: &ExecContext<'_>, budget: &mut Budget, f: &mut RowSink<'_>) -> Result<()> {
    let owners = ctx.catalog.assignments();
    for d in ctx.catalog.devices() {
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
    Ok(())
}

fn run_audit(ctx: &ExecContext<'_>, budget: &mut Budget, f: &mut RowSink<'_>) -> Result<()> {
    for r in ctx.catalog.audit() {
        budget.tick()?;
        let row = vec![
            Cell::Timestamp(r.ts_us),
            Cell::Text(r.user),
            Cell::Text(r.source),
            Cell::Text(r.action),
            Cell::Text(r.target),
            Cell::Text(r.detail),
            Cell::Text(r.outcome),
            int(r.index),
        ];
        if f(row)? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

fn run_cluster(ctx: &ExecContext<'_>, budget: &mut Budget, f: &mut RowSink<'_>) -> Result<()> {
    let mut per_node: BTreeMap<u64, u64> = BTreeMap::new();
    for a in ctx.catalog.assignments().values() {
        *per_node.entry(a.node).or_default() += 1;
    }
    let mut members = ctx.cluster.members.clone();
    members.sort_by_key(|m| m.id);
    for m in members {
        budget.tick()?;
        let devices = per_node.get(&m.id).copied().unwrap_or(0);
        if f(member_row(m, devices))? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// Columns as listed for `cluster` in the catalog.
fn member_row(m: MemberInfo, devices: u64) -> Vec<Cell> {
    let role = if m.is_leader {
        "leader"
    } else if m.voter {
        "follower"
    } else {
        "learner"
    };
    vec![
        int(m.id),
        Cell::Text(m.address),
        Cell::Text(role.into()),
        Cell::Bool(m.voter),
        Cell::Bool(m.is_leader),
        int(devices),
    ]
}

pub(super) fn int(v: u64) -> Cell {
    Cell::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

pub(super) fn value_cell(v: Option<Value>) -> Cell {
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

/// Columns as listed for `readings` in the catalog.
pub(super) fn reading_row(r: Reading) -> Vec<Cell> {
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

/// Columns as listed for `tags` in the catalog.
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
