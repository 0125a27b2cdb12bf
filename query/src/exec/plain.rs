//! Queries without aggregates: stream rows in scan order when the scans
//! can give the ORDER BY's order, otherwise sort in memory.

use super::eval::{ev, passes, sort_rows};
use super::source::{readings_source, run_source, source_for, tags_source, Source};
use super::{Budget, Emitter, ExecContext, Flow};
use crate::cell::Cell;
use crate::error::Result;
use crate::front::plan::Ex;
use crate::front::{col, Plan, Table};

fn project(outputs: &[Ex], row: &[Cell], now: i64) -> Vec<Cell> {
    outputs
        .iter()
        .map(|e| ev(e, row, now).into_owned())
        .collect()
}

pub(super) fn run_plain(
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
    let keep = plan
        .limit
        .map(|l| usize::try_from(l.saturating_add(plan.offset)).unwrap_or(usize::MAX));
    let mut buf: Vec<Vec<Cell>> = Vec::new();
    run_source(src, ctx, budget, &mut |row| {
        if passes(plan, &row, now) {
            buf.push(project(&plan.outputs, &row, now));
            if let Some(keep) = keep {
                if buf.len() >= keep.saturating_mul(2).max(1024) {
                    sort_rows(&mut buf, &plan.order);
                    buf.truncate(keep);
                }
            }
        }
        Ok(Flow::Continue)
    })?;
    sort_rows(&mut buf, &plan.order);
    em.emit_all(buf)
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
        Table::Readings => readings_in_order(plan, ctx, keys),
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

/// The readings source for `keys`, and whether it delivers them in order.
fn readings_in_order(
    plan: &Plan,
    ctx: &ExecContext<'_>,
    keys: Option<Vec<(usize, bool)>>,
) -> (Source, bool) {
    let Source::Readings {
        mut tags,
        mut range,
        ..
    } = readings_source(plan, ctx, false)
    else {
        unreachable!("readings_source builds a readings source")
    };
    let order = keys.and_then(|keys| readings_scan_order(keys, tags.len() <= 1));
    // Not served by the scan: rows are sorted in memory, where ties keep
    // the scan order (see `ts_sorted_descending`).
    let (tags_desc, backward, merge) = order.unwrap_or((false, ts_sorted_descending(plan), false));
    if tags_desc {
        tags.reverse();
    }
    range.backward = backward;
    (Source::Readings { tags, range, merge }, order.is_some())
}

/// Whether reading the tags' histories in some way yields rows in the order
/// of `keys` (plain columns with their direction): as (tags descending,
/// each history backward, merged by time). Ties in ORDER BY come by tag
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
