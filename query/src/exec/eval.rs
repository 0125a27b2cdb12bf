//! Evaluating plan expressions over a row, with SQL's three-valued logic,
//! and the orders used for sorting and grouping.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::cell::Cell;
use crate::front::plan::{ArOp, CmpOp, Ex, OrderKey};
use crate::front::Plan;
use crate::store::bucket_start;

pub(super) fn passes(plan: &Plan, row: &[Cell], now: i64) -> bool {
    plan.filter
        .as_ref()
        .is_none_or(|f| matches!(ev(f, row, now).as_ref(), Cell::Bool(true)))
}

pub(super) fn sort_rows(rows: &mut [Vec<Cell>], order: &[OrderKey]) {
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
pub(super) fn cmp_total(a: &Cell, b: &Cell) -> Ordering {
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
pub(super) fn ev<'a>(ex: &'a Ex, row: &'a [Cell], now: i64) -> Cow<'a, Cell> {
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
        Ex::And(a, b) => owned(and(a, b, row, now)),
        Ex::Or(a, b) => owned(or(a, b, row, now)),
        Ex::Not(e) => owned(truth(&ev(e, row, now)).map_or(Cell::Null, |b| Cell::Bool(!b))),
        Ex::In {
            expr,
            list,
            negated,
        } => owned(in_list(expr, list, *negated, row, now)),
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
            Cell::Timestamp(t) => bucket_start(*t, *width).map_or(Cell::Null, Cell::Timestamp),
            _ => Cell::Null,
        }),
    }
}

/// `a AND b`: false if either is false, null if either is unknown.
fn and(a: &Ex, b: &Ex, row: &[Cell], now: i64) -> Cell {
    let x = truth(&ev(a, row, now));
    if x == Some(false) {
        return Cell::Bool(false);
    }
    match (x, truth(&ev(b, row, now))) {
        (_, Some(false)) => Cell::Bool(false),
        (Some(true), Some(true)) => Cell::Bool(true),
        _ => Cell::Null,
    }
}

/// `a OR b`: true if either is true, null if either is unknown.
fn or(a: &Ex, b: &Ex, row: &[Cell], now: i64) -> Cell {
    let x = truth(&ev(a, row, now));
    if x == Some(true) {
        return Cell::Bool(true);
    }
    match (x, truth(&ev(b, row, now))) {
        (_, Some(true)) => Cell::Bool(true),
        (Some(false), Some(false)) => Cell::Bool(false),
        _ => Cell::Null,
    }
}

/// `x [NOT] IN (list)`: null when x is null, or when no item is equal and
/// some cannot be compared.
fn in_list(x: &Ex, list: &[Ex], negated: bool, row: &[Cell], now: i64) -> Cell {
    let x = ev(x, row, now);
    if *x == Cell::Null {
        return Cell::Null;
    }
    let mut unknown = false;
    for item in list {
        match cmp_sql(&x, &ev(item, row, now)) {
            Some(Ordering::Equal) => return Cell::Bool(!negated),
            None => unknown = true,
            Some(_) => {}
        }
    }
    if unknown {
        Cell::Null
    } else {
        Cell::Bool(negated)
    }
}
