//! Aggregates folded from summaries instead of rows. When an aggregate
//! query on `readings` groups by nothing but the tag and one `time_bucket`
//! of `ts`, aggregates nothing but `value` (or counts rows), leaves quality
//! to the default rule (usable readings only), and filters by nothing but
//! tag names and time bounds, each tag's readings are asked for as one
//! summary per bucket ([`History::summarize`]). A store that keeps block
//! summaries then merges whole blocks and decodes only the blocks a bucket
//! or range bound cuts.
//!
//! The answer is the row-by-row answer (`agg.rs`), but for float sums and
//! averages, which are added in another order and may differ in their last
//! bits. Knows nothing of how the store keeps readings.

use super::agg::Groups;
use super::eval::ev;
use super::source::readings_scope;
use super::{Budget, ExecContext};
use crate::cell::Cell;
use crate::error::Result;
use crate::front::plan::{AggFn, AggPlan, CmpOp, Ex};
use crate::front::{col, Plan, Table};
use crate::store::SummaryRequest;

/// What a query that summaries can answer groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    /// The width of its `time_bucket` group key, if it has one.
    width_us: Option<i64>,
}

/// The shape of `plan` if summaries can answer it (`now_us`: the query's
/// `now()`).
pub(super) fn shape(plan: &Plan, agg: &AggPlan, now_us: i64) -> Option<Shape> {
    if plan.table != Table::Readings || plan.quality_filtered {
        return None;
    }
    if !plan.filter.as_ref().is_none_or(|f| bounds_only(f, now_us)) {
        return None;
    }
    let of_value = |a: &Option<Ex>| *a == Some(Ex::Col(col::R_VALUE));
    let aggs_ok = agg.aggs.iter().all(|a| match a.func {
        AggFn::CountStar => a.arg.is_none(),
        _ => of_value(&a.arg),
    });
    let mut width_us = None;
    for key in &agg.keys {
        match key {
            Ex::Col(col::R_TAG) => {}
            Ex::Bucket { width, expr } if **expr == Ex::Col(col::R_TS) && width_us.is_none() => {
                width_us = Some(*width)
            }
            _ => return None,
        }
    }
    aggs_ok.then_some(Shape { width_us })
}

/// Whether the filter is an AND of tests that the choice of tags and the
/// time range already apply exactly (so no row needs checking): a tag
/// name equal to, in or matching constants, and `ts` compared with a
/// constant time (`<>` excepted: a time range cannot leave one instant out).
fn bounds_only(ex: &Ex, now_us: i64) -> bool {
    let tag = Ex::Col(col::R_TAG);
    let ts = Ex::Col(col::R_TS);
    let text = |e: &Ex| matches!(e, Ex::Lit(Cell::Text(_)));
    let time = |e: &Ex| e.is_const() && matches!(ev(e, &[], now_us).as_ref(), Cell::Timestamp(_));
    match ex {
        Ex::And(a, b) => bounds_only(a, now_us) && bounds_only(b, now_us),
        Ex::Cmp(CmpOp::Eq, a, b) if (**a == tag && text(b)) || (text(a) && **b == tag) => true,
        Ex::Cmp(op, a, b) if *op != CmpOp::NotEq => {
            (**a == ts && time(b)) || (time(a) && **b == ts)
        }
        Ex::In {
            expr,
            list,
            negated: false,
        } => **expr == tag && list.iter().all(text),
        Ex::Match {
            expr,
            negated: false,
            ..
        } => **expr == tag,
        _ => false,
    }
}

/// Folds each chosen tag's summaries into `groups`, tag after tag, counting
/// the readings they cover against the budget.
pub(super) fn fold(
    plan: &Plan,
    agg: &AggPlan,
    shape: Shape,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    groups: &mut Groups<'_>,
) -> Result<()> {
    let (tags, range) = readings_scope(plan, ctx, true);
    if range.from_us > range.to_us {
        return Ok(());
    }
    for tag in &tags {
        budget.check_deadline()?;
        let req = SummaryRequest {
            tag,
            from_us: range.from_us,
            to_us: range.to_us,
            width_us: shape.width_us,
            max_read: budget.remaining(),
        };
        let buckets = ctx.history.summarize(&req)?;
        budget.add(buckets.iter().map(|(_, s)| s.count).sum())?;
        for (bucket, s) in buckets {
            let key = agg
                .keys
                .iter()
                .map(|k| match k {
                    Ex::Col(_) => Cell::Text(tag.name.clone()),
                    _ => bucket.map_or(Cell::Null, Cell::Timestamp),
                })
                .collect();
            groups.fold_summary(key, &s);
        }
    }
    Ok(())
}
