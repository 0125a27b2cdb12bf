//! What a filter lets through before any row is read: the tags to visit,
//! the time range of each tag's scan, and the quality levels the store may
//! skip.

use std::collections::{BTreeMap, BTreeSet};

use super::eval::ev;
use crate::cell::Cell;
use crate::front::plan::{CmpOp, Ex};
use crate::front::{col, Plan};
use crate::model::Tag;
use crate::pattern::Pattern;
use crate::store::{Catalog, ReadingFilter};

pub(super) const FULL: (i64, i64) = (i64::MIN, i64::MAX);
/// Any range with its start after its end is empty.
const EMPTY: (i64, i64) = (i64::MAX, i64::MIN);

/// The inclusive range of `ts` values that can satisfy `ex` (a superset: the
/// filter still checks every row). Only comparisons of the column with
/// constants, combined with AND/OR, narrow it.
pub(super) fn ts_range(ex: &Ex, ts: usize, now: i64) -> (i64, i64) {
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
    fn tags(&self, catalog: &dyn Catalog) -> BTreeMap<String, Tag> {
        let by_name = |v: Vec<Tag>| v.into_iter().map(|t| (t.name.clone(), t)).collect();
        match self {
            TagSel::All => by_name(catalog.tags_with_prefix("")),
            TagSel::Names(names) => names
                .iter()
                .filter_map(|n| catalog.tag(n))
                .map(|t| (t.name.clone(), t))
                .collect(),
            TagSel::Pattern(p) => by_name(
                catalog
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
                let mut tags = narrow.tags(catalog);
                tags.retain(|name, _| other.admits(name));
                tags
            }
            TagSel::Or(a, b) => {
                let mut tags = a.tags(catalog);
                tags.extend(b.tags(catalog));
                tags
            }
        }
    }
}

/// The tags whose rows can pass the filter, by name.
pub(super) fn select_tags(plan: &Plan, catalog: &dyn Catalog) -> Vec<Tag> {
    let c = plan.table.tag_column().expect("a table with tag names");
    let sel = plan
        .filter
        .as_ref()
        .map_or(TagSel::All, |f| TagSel::of(f, c));
    sel.tags(catalog).into_values().collect()
}

/// The quality levels a `readings` filter can admit, from its top-level
/// AND of `quality = '...'` and `quality IN (...)` tests; every level when
/// it has none. A superset: the filter still checks every row.
pub(super) fn quality_filter(ex: &Ex) -> ReadingFilter {
    let mut f = ReadingFilter::ALL;
    f.levels = quality_levels(ex);
    f
}

fn quality_levels(ex: &Ex) -> [bool; 3] {
    let level = |e: &Ex| match e {
        Ex::Lit(Cell::Text(s)) => ["good", "uncertain", "bad"].iter().position(|q| q == s),
        _ => None,
    };
    let only = |names: &[&Ex]| -> Option<[bool; 3]> {
        let mut levels = [false; 3];
        for n in names {
            levels[level(n)?] = true;
        }
        Some(levels)
    };
    let is_quality = |e: &Ex| *e == Ex::Col(col::R_QUALITY);
    let found = match ex {
        Ex::Cmp(CmpOp::Eq, a, b) if is_quality(a) => only(&[b.as_ref()]),
        Ex::Cmp(CmpOp::Eq, a, b) if is_quality(b) => only(&[a.as_ref()]),
        Ex::In {
            expr,
            list,
            negated: false,
        } if is_quality(expr) => only(&list.iter().collect::<Vec<_>>()),
        Ex::And(a, b) => {
            let (x, y) = (quality_levels(a), quality_levels(b));
            Some([x[0] && y[0], x[1] && y[1], x[2] && y[2]])
        }
        _ => None,
    };
    found.unwrap_or([true; 3])
}
