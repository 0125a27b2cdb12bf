//! Function calls: the aggregates (`count`, `avg`, `sum`, `min`, `max`,
//! `first`, `last`) and the scalar functions `now`, `time_bucket`, `glob`;
//! also the small type rules shared with `expr.rs`.

use sqlparser::ast as sql;
use sqlparser::tokenizer::Span;

use super::catalog::Ty;
use super::expr::{Compiler, Mode};
use super::plan::{AggFn, AggSpec, ArOp, Ex};
use super::select::object_name;
use super::Typed;
use crate::cell::Cell;
use crate::error::{type_error, unsupported, ErrorKind, QueryError, Result};
use crate::pattern::Pattern;

const AGGREGATES: &[&str] = &["count", "avg", "sum", "min", "max", "first", "last"];

fn function_name(f: &sql::Function) -> String {
    object_name(&f.name).join(".").to_lowercase()
}

pub(super) fn item_has_aggregate(item: &sql::SelectItem) -> bool {
    match item {
        sql::SelectItem::UnnamedExpr(e) | sql::SelectItem::ExprWithAlias { expr: e, .. } => {
            has_aggregate(e)
        }
        _ => false,
    }
}

/// Whether an aggregate call appears in `e` (through the supported forms).
pub(super) fn has_aggregate(e: &sql::Expr) -> bool {
    match e {
        sql::Expr::Function(f) => {
            (f.over.is_none() && AGGREGATES.contains(&function_name(f).as_str()))
                || match &f.args {
                    sql::FunctionArguments::List(l) => l.args.iter().any(|a| match a {
                        sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)) => {
                            has_aggregate(e)
                        }
                        _ => false,
                    }),
                    _ => false,
                }
        }
        sql::Expr::BinaryOp { left, right, .. } => has_aggregate(left) || has_aggregate(right),
        sql::Expr::UnaryOp { expr, .. } | sql::Expr::Nested(expr) => has_aggregate(expr),
        sql::Expr::IsNull(e) | sql::Expr::IsNotNull(e) => has_aggregate(e),
        sql::Expr::Between {
            expr, low, high, ..
        } => has_aggregate(expr) || has_aggregate(low) || has_aggregate(high),
        sql::Expr::In {
            expr,
            target: sql::InTarget::List(list),
            ..
        } => has_aggregate(expr) || list.iter().any(has_aggregate),
        _ => false,
    }
}

/// The arguments of a call: expressions, and whether it was `count(*)`.
struct Args<'f> {
    exprs: Vec<&'f sql::Expr>,
    star: bool,
}

impl Args<'_> {
    /// Checks that there are exactly `n` expressions (no `*`).
    fn expect(&self, name: &str, n: usize, example: &str, span: Span) -> Result<()> {
        if self.exprs.len() == n && !self.star {
            return Ok(());
        }
        Err(type_error(
            format!(
                "{name}() takes {n} argument{}, as in {example}",
                if n == 1 { "" } else { "s" }
            ),
            span,
        ))
    }
}

/// Refuses the call forms outside the subset and collects the arguments.
fn call_args<'f>(f: &'f sql::Function, name: &str, span: Span) -> Result<Args<'f>> {
    if f.over.is_some() {
        return Err(unsupported("window functions (OVER)", span));
    }
    if f.filter.is_some() {
        return Err(unsupported("FILTER (...) on aggregates", span));
    }
    if !f.within_group.is_empty() || f.null_treatment.is_some() {
        return Err(unsupported("WITHIN GROUP / IGNORE NULLS", span));
    }
    if !matches!(f.parameters, sql::FunctionArguments::None) {
        return Err(unsupported("parametric functions", span));
    }
    let l = match &f.args {
        sql::FunctionArguments::None => {
            return Ok(Args {
                exprs: Vec::new(),
                star: false,
            })
        }
        sql::FunctionArguments::Subquery(_) => return Err(unsupported("subqueries", span)),
        sql::FunctionArguments::List(l) => l,
    };
    if l.duplicate_treatment == Some(sql::DuplicateTreatment::Distinct) {
        return Err(unsupported(format!("DISTINCT inside {name}()"), span));
    }
    if !l.clauses.is_empty() {
        return Err(unsupported(format!("clauses inside {name}()"), span));
    }
    let mut args = Args {
        exprs: Vec::new(),
        star: false,
    };
    for a in &l.args {
        match a {
            sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)) => args.exprs.push(e),
            sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Wildcard)
                if name == "count" && l.args.len() == 1 =>
            {
                args.star = true
            }
            _ => return Err(unsupported(format!("this argument of {name}()"), span)),
        }
    }
    Ok(args)
}

impl Compiler {
    pub(super) fn function(&self, f: &sql::Function, mode: &mut Mode, span: Span) -> Result<Typed> {
        let name = function_name(f);
        let args = call_args(f, &name, span)?;
        if AGGREGATES.contains(&name.as_str()) {
            return self.aggregate(&name, &args, mode, span);
        }
        match name.as_str() {
            "now" | "current_timestamp" => {
                args.expect(&name, 0, "now()", span)?;
                Ok(Typed {
                    ex: Ex::Now,
                    ty: Ty::Timestamp,
                    span,
                })
            }
            "time_bucket" => {
                args.expect(&name, 2, "time_bucket(INTERVAL '1 minute', ts)", span)?;
                self.time_bucket(&args, mode, span)
            }
            "glob" => {
                args.expect(&name, 2, "glob(tag, 'line1/*/temperature')", span)?;
                self.glob(&args, mode, span)
            }
            _ => Err(unsupported(
                format!(
                    "the function {name}() (functions: now, time_bucket, glob, and the aggregates {})",
                    AGGREGATES.join(", ")
                ),
                span,
            )),
        }
    }

    /// An aggregate call becomes a slot after the group keys; the same call
    /// written twice shares one slot.
    fn aggregate(&self, name: &str, args: &Args<'_>, mode: &mut Mode, span: Span) -> Result<Typed> {
        let Mode::Agg { aggs, key_tys, .. } = mode else {
            let Mode::Scalar(clause) = mode else {
                unreachable!("a mode is scalar or aggregate")
            };
            return Err(QueryError::at(
                ErrorKind::Unsupported,
                format!("aggregate {name}() is not allowed in {clause}"),
                span,
            ));
        };
        let (spec, ty) = self.aggregate_spec(name, args, span)?;
        let i = match aggs.iter().position(|(a, _)| *a == spec) {
            Some(i) => i,
            None => {
                aggs.push((spec, ty));
                aggs.len() - 1
            }
        };
        Ok(Typed {
            ex: Ex::Slot(key_tys.len() + i),
            ty,
            span,
        })
    }

    fn aggregate_spec(&self, name: &str, args: &Args<'_>, span: Span) -> Result<(AggSpec, Ty)> {
        if args.star {
            let spec = AggSpec {
                func: AggFn::CountStar,
                arg: None,
            };
            return Ok((spec, Ty::Int));
        }
        args.expect(name, 1, &format!("{name}(value)"), span)?;
        let arg = self.expr(args.exprs[0], &mut Mode::Scalar("an aggregate's argument"))?;
        let func = match name {
            "count" => AggFn::Count,
            "avg" => AggFn::Avg,
            "sum" => AggFn::Sum,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "first" => AggFn::First,
            _ => AggFn::Last,
        };
        let ty = self.aggregate_type(func, name, args.exprs[0], &arg, span)?;
        Ok((
            AggSpec {
                func,
                arg: Some(arg.ex),
            },
            ty,
        ))
    }

    /// The result type of `func` over `arg` (written as `text`).
    fn aggregate_type(
        &self,
        func: AggFn,
        name: &str,
        text: &sql::Expr,
        arg: &Typed,
        span: Span,
    ) -> Result<Ty> {
        Ok(match func {
            AggFn::Count | AggFn::CountStar => Ty::Int,
            AggFn::Avg | AggFn::Sum => {
                if !matches!(arg.ty, Ty::Int | Ty::Float | Ty::Any | Ty::Null) {
                    return Err(type_error(
                        format!("{name}() needs numbers, but {text} is a {}", arg.ty.name()),
                        arg.span,
                    ));
                }
                match (func, arg.ty) {
                    (AggFn::Avg, _) => Ty::Float,
                    (_, Ty::Null) => Ty::Any,
                    (_, t) => t,
                }
            }
            AggFn::First | AggFn::Last => {
                if self.table.time_columns().is_none() {
                    return Err(unsupported(
                        format!(
                            "{name}() on table '{}' (it orders rows by ts; only tags and readings have one)",
                            self.table.name()
                        ),
                        span,
                    ));
                }
                arg.ty
            }
            AggFn::Min | AggFn::Max => arg.ty,
        })
    }

    fn time_bucket(&self, args: &Args<'_>, mode: &mut Mode, span: Span) -> Result<Typed> {
        let w = self.expr(args.exprs[0], mode)?;
        let width =
            match (&w.ex, w.ty) {
                (Ex::Lit(Cell::Int(us)), Ty::Interval) if *us > 0 => *us,
                _ => return Err(type_error(
                    "time_bucket() needs a positive interval first, such as INTERVAL '1 minute'",
                    w.span,
                )),
            };
        let t = self.expr(args.exprs[1], mode)?;
        if !matches!(t.ty, Ty::Timestamp | Ty::Null) {
            return Err(type_error(
                format!(
                    "time_bucket() needs a timestamp second, not a {}",
                    t.ty.name()
                ),
                t.span,
            ));
        }
        Ok(Typed {
            ex: Ex::Bucket {
                width,
                expr: Box::new(t.ex),
            },
            ty: Ty::Timestamp,
            span,
        })
    }

    fn glob(&self, args: &Args<'_>, mode: &mut Mode, span: Span) -> Result<Typed> {
        let x = self.expr(args.exprs[0], mode)?;
        let p = self.expr(args.exprs[1], mode)?;
        let text = pattern_text(&x, &p, "glob()")?;
        let pattern = Pattern::glob(&text).map_err(|m| type_error(m, p.span))?;
        Ok(Typed {
            ex: Ex::Match {
                expr: Box::new(x.ex),
                pattern,
                negated: false,
            },
            ty: Ty::Bool,
            span,
        })
    }
}

pub(super) fn check_condition(t: &Typed, word: &str) -> Result<()> {
    if matches!(t.ty, Ty::Bool | Ty::Any | Ty::Null) {
        Ok(())
    } else {
        Err(type_error(
            format!("{word} needs conditions, not a {}", t.ty.name()),
            t.span,
        ))
    }
}

pub(super) fn pattern_text(x: &Typed, p: &Typed, what: &str) -> Result<String> {
    if !matches!(x.ty, Ty::Text | Ty::Any | Ty::Null) {
        return Err(type_error(
            format!("{what} matches text, not a {}", x.ty.name()),
            x.span,
        ));
    }
    match &p.ex {
        Ex::Lit(Cell::Text(s)) => Ok(s.clone()),
        _ => Err(type_error(
            format!(
                "{what} needs a text pattern such as 'line1/%', not a {}",
                p.ty.name()
            ),
            p.span,
        )),
    }
}

pub(super) fn arith_type(op: ArOp, l: Ty, r: Ty) -> Option<Ty> {
    use Ty::*;
    Some(match (l, r) {
        (Null, _) | (_, Null) => Null,
        (Timestamp, Interval) if matches!(op, ArOp::Add | ArOp::Sub) => Timestamp,
        (Interval, Timestamp) if op == ArOp::Add => Timestamp,
        (Interval, Interval) if matches!(op, ArOp::Add | ArOp::Sub) => Interval,
        (Int, Int) => Int,
        (a, b) if a.numeric() && b.numeric() => Float,
        (Any, b) | (b, Any) if matches!(b, Any | Int | Float) => Any,
        _ => return None,
    })
}
