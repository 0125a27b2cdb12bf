//! Aggregate queries: rows are folded into groups (a map ordered by the
//! group keys), then each group becomes one output row. Where the query's
//! shape allows, whole buckets of readings are folded from their summaries
//! instead of row by row (`summarized.rs`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::eval::{cmp_total, ev, passes, sort_rows};
use super::source::{int, readings_source, run_source, source_for, value_cell};
use super::summarized;
use super::{Budget, Emitter, ExecContext, Flow};
use crate::cell::Cell;
use crate::error::Result;
use crate::front::plan::{AggFn, AggPlan, AggSpec, Ex};
use crate::front::{col, Plan, Table};
use crate::store::Summary;

pub(super) fn run_agg(
    plan: &Plan,
    agg: &AggPlan,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    em: &mut Emitter<'_>,
) -> Result<()> {
    let now = ctx.now_us;
    // Aggregates on readings skip Bad readings and readings without a
    // value, unless the WHERE clause mentions quality: the store skips them.
    let usable_only = plan.table == Table::Readings && !plan.quality_filtered;
    let seek = seek_direction(plan, agg);
    let mut groups = Groups::new(plan, agg, now);
    match summarized::shape(plan, agg, now).filter(|_| seek.is_none()) {
        Some(shape) => summarized::fold(plan, agg, shape, ctx, budget, &mut groups)?,
        None => fold_rows(plan, seek, usable_only, ctx, budget, &mut groups)?,
    }
    let mut rows = groups.finish();
    sort_rows(&mut rows, &plan.order);
    em.emit_all(rows)
}

/// Feeds every row the source gives and the filter passes to its group
/// (with `seek`, only each tag's first or last).
fn fold_rows(
    plan: &Plan,
    seek: Option<bool>,
    usable_only: bool,
    ctx: &ExecContext<'_>,
    budget: &mut Budget,
    groups: &mut Groups<'_>,
) -> Result<()> {
    let now = ctx.now_us;
    let src = match plan.table {
        Table::Readings => {
            let mut src = readings_source(plan, ctx, usable_only);
            if let super::source::Source::Readings { range, .. } = &mut src {
                range.backward = seek == Some(true);
            }
            src
        }
        _ => source_for(plan, ctx),
    };
    run_source(src, ctx, budget, &mut |row| {
        if passes(plan, &row, now) {
            groups.fold(&row);
            if seek.is_some() {
                return Ok(Flow::NextTag);
            }
        }
        Ok(Flow::Continue)
    })
}

/// The groups seen so far, by key, with their running aggregates.
pub(super) struct Groups<'p> {
    plan: &'p Plan,
    agg: &'p AggPlan,
    now: i64,
    map: BTreeMap<Key, Vec<Acc>>,
}

impl<'p> Groups<'p> {
    /// No group yet; without GROUP BY, the one group that always exists.
    fn new(plan: &'p Plan, agg: &'p AggPlan, now: i64) -> Groups<'p> {
        let mut g = Groups {
            plan,
            agg,
            now,
            map: BTreeMap::new(),
        };
        if agg.keys.is_empty() {
            g.map
                .insert(Key(Vec::new()), agg.aggs.iter().map(Acc::new).collect());
        }
        g
    }

    /// Adds one row to its group.
    fn fold(&mut self, row: &[Cell]) {
        let now = self.now;
        let key = Key(self
            .agg
            .keys
            .iter()
            .map(|k| ev(k, row, now).into_owned())
            .collect());
        let at = self
            .plan
            .table
            .time_columns()
            .and_then(|(ts, rev)| match (&row[ts], &row[rev]) {
                (Cell::Timestamp(t), Cell::Int(r)) => Some((*t, *r)),
                _ => None,
            });
        let agg = self.agg;
        let accs = self
            .map
            .entry(key)
            .or_insert_with(|| agg.aggs.iter().map(Acc::new).collect());
        for (acc, spec) in accs.iter_mut().zip(&self.agg.aggs) {
            let v = spec.arg.as_ref().map(|a| ev(a, row, now));
            acc.feed(v.as_deref(), at);
        }
    }

    /// Adds the usable readings `s` summarises to the group `key` (the
    /// group keys' values): what folding them row by row would do.
    pub(super) fn fold_summary(&mut self, key: Vec<Cell>, s: &Summary) {
        if s.usable == 0 {
            return;
        }
        let agg = self.agg;
        let accs = self
            .map
            .entry(Key(key))
            .or_insert_with(|| agg.aggs.iter().map(Acc::new).collect());
        for acc in accs {
            acc.absorb(s);
        }
    }

    /// One output row per group, in key order.
    fn finish(self) -> Vec<Vec<Cell>> {
        let (plan, now) = (self.plan, self.now);
        self.map
            .into_iter()
            .map(|(key, accs)| {
                let mut slots = key.0;
                slots.extend(accs.into_iter().map(Acc::finish));
                plan.outputs
                    .iter()
                    .map(|e| ev(e, &slots, now).into_owned())
                    .collect()
            })
            .collect()
    }
}

/// When every aggregate is last() (or every one first()), per tag or
/// overall, one seek per tag finds the only row that matters: Some(true)
/// to read each history backward and stop at its first row, Some(false)
/// forward.
fn seek_direction(plan: &Plan, agg: &AggPlan) -> Option<bool> {
    let per_tag = agg.keys.is_empty() || agg.keys == [Ex::Col(col::R_TAG)];
    if plan.table != Table::Readings || !per_tag || agg.aggs.is_empty() {
        return None;
    }
    if agg.aggs.iter().all(|a| a.func == AggFn::Last) {
        Some(true)
    } else if agg.aggs.iter().all(|a| a.func == AggFn::First) {
        Some(false)
    } else {
        None
    }
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

    /// Feeds the usable readings `s` summarises, as `feed` would one by one
    /// with the reading's value as the argument (or none, for `count(*)`).
    /// Float sums come out added in another order: equal up to rounding.
    fn absorb(&mut self, s: &Summary) {
        let edge = |e: &Option<crate::store::Edge>| {
            e.as_ref().map(|e| {
                let at = (e.ts_us, i64::try_from(e.revision).unwrap_or(i64::MAX));
                (at, value_cell(Some(e.value.clone())))
            })
        };
        // A summary without usable values has no min or max: Null, which
        // `keep` passes over.
        let value = |v: &Option<crate::model::Value>| value_cell(v.clone());
        match self {
            Acc::Count(n) => *n += s.usable,
            Acc::Sum {
                int,
                float,
                any_float,
                n,
            } => {
                *int += s.int_sum;
                *float += s.float_sum;
                *any_float |= match s.floats {
                    Some(f) => f > 0,
                    None => s.float_sum.to_bits() != 0,
                };
                *n += s.numeric;
            }
            Acc::Avg { sum, n } => {
                if s.numeric > 0 {
                    *sum += s.float_sum + s.int_sum as f64;
                    *n += s.numeric;
                }
            }
            Acc::Min(best) => keep(best, Some(&value(&s.min)), Ordering::Less),
            Acc::Max(best) => keep(best, Some(&value(&s.max)), Ordering::Greater),
            Acc::First(best) => {
                if let Some((at, v)) = edge(&s.first) {
                    keep_at(best, Some(&v), Some(at), Ordering::Less);
                }
            }
            Acc::Last(best) => {
                if let Some((at, v)) = edge(&s.last) {
                    keep_at(best, Some(&v), Some(at), Ordering::Greater);
                }
            }
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
