//! The plan: what the front hands to execution. Typed expressions over
//! the columns of one table (names resolved, literals and times parsed),
//! the aggregation, the order and the limits.

use super::catalog::Table;
use crate::cell::{Cell, Column};
use crate::pattern::Pattern;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    /// The operator with its operands swapped (`a < b` is `b > a`).
    pub(crate) fn flip(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
            other => other,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// A compiled expression. `Col` indexes a table row, `Slot` a group row
/// (group keys, then aggregate results).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ex {
    Col(usize),
    Slot(usize),
    Lit(Cell),
    Now,
    Neg(Box<Ex>),
    Arith(ArOp, Box<Ex>, Box<Ex>),
    Cmp(CmpOp, Box<Ex>, Box<Ex>),
    And(Box<Ex>, Box<Ex>),
    Or(Box<Ex>, Box<Ex>),
    Not(Box<Ex>),
    In {
        expr: Box<Ex>,
        list: Vec<Ex>,
        negated: bool,
    },
    Match {
        expr: Box<Ex>,
        pattern: Pattern,
        negated: bool,
    },
    IsNull {
        expr: Box<Ex>,
        negated: bool,
    },
    /// Start of the `width`-µs bucket holding a timestamp (epoch-aligned).
    Bucket {
        width: i64,
        expr: Box<Ex>,
    },
}

impl Ex {
    /// Whether the expression reads no column (so it can be evaluated once).
    pub(crate) fn is_const(&self) -> bool {
        match self {
            Ex::Col(_) | Ex::Slot(_) => false,
            Ex::Lit(_) | Ex::Now => true,
            Ex::Neg(e) | Ex::Not(e) => e.is_const(),
            Ex::Arith(_, a, b) | Ex::Cmp(_, a, b) | Ex::And(a, b) | Ex::Or(a, b) => {
                a.is_const() && b.is_const()
            }
            Ex::In { expr, list, .. } => expr.is_const() && list.iter().all(Ex::is_const),
            Ex::Match { expr, .. } | Ex::IsNull { expr, .. } | Ex::Bucket { expr, .. } => {
                expr.is_const()
            }
        }
    }

    /// Whether the expression reads column `c` of the table row.
    pub(crate) fn uses_column(&self, c: usize) -> bool {
        match self {
            Ex::Col(i) => *i == c,
            Ex::Slot(_) | Ex::Lit(_) | Ex::Now => false,
            Ex::Neg(e) | Ex::Not(e) => e.uses_column(c),
            Ex::Arith(_, a, b) | Ex::Cmp(_, a, b) | Ex::And(a, b) | Ex::Or(a, b) => {
                a.uses_column(c) || b.uses_column(c)
            }
            Ex::In { expr, list, .. } => {
                expr.uses_column(c) || list.iter().any(|e| e.uses_column(c))
            }
            Ex::Match { expr, .. } | Ex::IsNull { expr, .. } | Ex::Bucket { expr, .. } => {
                expr.uses_column(c)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AggFn {
    CountStar,
    Count,
    Avg,
    Sum,
    Min,
    Max,
    First,
    Last,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AggSpec {
    pub func: AggFn,
    pub arg: Option<Ex>,
}

#[derive(Debug)]
pub(crate) struct AggPlan {
    /// Group keys, over table rows.
    pub keys: Vec<Ex>,
    pub aggs: Vec<AggSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OrderKey {
    /// Index into [`Plan::outputs`].
    pub idx: usize,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub table: Table,
    pub filter: Option<Ex>,
    /// The WHERE clause mentions `quality` (see the aggregation rule).
    pub quality_filtered: bool,
    pub agg: Option<AggPlan>,
    /// Visible columns first, then hidden sort keys. Over table rows, or
    /// over group rows when `agg` is set.
    pub outputs: Vec<Ex>,
    pub columns: Vec<Column>,
    pub order: Vec<OrderKey>,
    pub limit: Option<u64>,
    pub offset: u64,
}
