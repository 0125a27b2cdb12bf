//! Compiling and type-checking expressions: columns, operators,
//! comparisons, BETWEEN, IN, LIKE and the IS tests. Function calls and
//! aggregates are in `function.rs`.

use sqlparser::ast::{self as sql, Spanned};
use sqlparser::tokenizer::Span;

use super::catalog::{col, Table, Ty};
use super::function::{arith_type, check_condition, has_aggregate, pattern_text};
use super::literal::{interval, literal, parse_timestamp};
use super::plan::{AggSpec, ArOp, CmpOp, Ex};
use super::Typed;
use crate::cell::Cell;
use crate::error::{type_error, unsupported, ErrorKind, QueryError, Result};
use crate::pattern::Pattern;

/// What kind of expression is being compiled.
pub(super) enum Mode<'m> {
    /// A plain row expression (WHERE, GROUP BY, select list without
    /// aggregates); the name of the clause is for error messages.
    Scalar(&'static str),
    /// A select-list or ORDER BY expression of an aggregate query: over
    /// group keys and aggregate results.
    Agg {
        keys: &'m [Ex],
        key_tys: &'m [Ty],
        aggs: &'m mut Vec<(AggSpec, Ty)>,
    },
}

pub(super) struct Compiler {
    pub table: Table,
    pub alias: Option<String>,
}

fn same_name(id: &sql::Ident, name: &str) -> bool {
    if id.quote_style.is_some() {
        id.value == name
    } else {
        id.value.eq_ignore_ascii_case(name)
    }
}

impl Compiler {
    pub(super) fn lookup(&self, id: &sql::Ident) -> Option<(usize, Ty)> {
        self.table
            .schema()
            .iter()
            .enumerate()
            .find(|(_, (name, _))| same_name(id, name))
            .map(|(i, (_, ty))| (i, *ty))
    }

    fn column(&self, id: &sql::Ident) -> Result<Typed> {
        match self.lookup(id) {
            Some((i, ty)) => Ok(Typed {
                ex: Ex::Col(i),
                ty,
                span: id.span,
            }),
            None => Err(QueryError::at(
                ErrorKind::UnknownColumn,
                format!(
                    "unknown column '{}' in table '{}'",
                    id.value,
                    self.table.name()
                ),
                id.span,
            )),
        }
    }

    pub(super) fn check_qualifier(&self, parts: &[String], span: Span) -> Result<()> {
        let ok = match parts {
            [q] => {
                q.eq_ignore_ascii_case(self.table.name())
                    || self
                        .alias
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(q))
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(QueryError::at(
                ErrorKind::UnknownTable,
                format!(
                    "unknown table '{}' (the query reads '{}')",
                    parts.join("."),
                    self.alias.as_deref().unwrap_or(self.table.name())
                ),
                span,
            ))
        }
    }

    pub(super) fn expr(&self, e: &sql::Expr, mode: &mut Mode) -> Result<Typed> {
        let span = e.span();
        if let Some(t) = self.group_key(e, mode) {
            return Ok(t);
        }
        let boolean = |ex: Ex| Typed {
            ex,
            ty: Ty::Bool,
            span,
        };
        match e {
            sql::Expr::Identifier(id) => self.column_in(id, mode),
            sql::Expr::CompoundIdentifier(ids) => self.qualified_column(e, ids, mode),
            sql::Expr::Value(v) => literal(&v.value, v.span),
            sql::Expr::Interval(i) => Ok(Typed {
                ex: Ex::Lit(Cell::Int(interval(i, span)?)),
                ty: Ty::Interval,
                span,
            }),
            sql::Expr::TypedString(ts) => typed_string(ts, span),
            sql::Expr::Nested(inner) => {
                let mut t = self.expr(inner, mode)?;
                t.span = span;
                Ok(t)
            }
            sql::Expr::UnaryOp { op, expr } => self.unary(op, expr, mode, span),
            sql::Expr::BinaryOp { left, op, right } => {
                let l = self.expr(left, mode)?;
                let r = self.expr(right, mode)?;
                self.binary(l, op, r, span)
            }
            sql::Expr::IsNull(inner) | sql::Expr::IsNotNull(inner) => {
                let t = self.expr(inner, mode)?;
                Ok(boolean(Ex::IsNull {
                    expr: Box::new(t.ex),
                    negated: matches!(e, sql::Expr::IsNotNull(_)),
                }))
            }
            sql::Expr::IsTrue(inner)
            | sql::Expr::IsFalse(inner)
            | sql::Expr::IsNotTrue(inner)
            | sql::Expr::IsNotFalse(inner) => self.is_truth(e, inner, mode).map(boolean),
            sql::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => self.between(expr, low, high, *negated, mode).map(boolean),
            sql::Expr::In {
                expr,
                target: sql::InTarget::List(list),
                negated,
                global: false,
            } => self.in_list(expr, list, *negated, mode).map(boolean),
            sql::Expr::Like { .. } => self.like(e, mode).map(boolean),
            sql::Expr::Function(f) => self.function(f, mode, span),
            other => Err(refused(other, span)),
        }
    }

    /// In an aggregate query, a group key (or an expression of one) may be
    /// used as is: it becomes that key's slot.
    fn group_key(&self, e: &sql::Expr, mode: &Mode) -> Option<Typed> {
        let Mode::Agg { keys, key_tys, .. } = mode else {
            return None;
        };
        if keys.is_empty() || has_aggregate(e) {
            return None;
        }
        let t = self.expr(e, &mut Mode::Scalar("GROUP BY")).ok()?;
        let i = keys.iter().position(|k| *k == t.ex)?;
        Some(Typed {
            ex: Ex::Slot(i),
            ty: key_tys[i],
            span: e.span(),
        })
    }

    /// `table.column` (or `alias.column`).
    fn qualified_column(
        &self,
        e: &sql::Expr,
        ids: &[sql::Ident],
        mode: &mut Mode,
    ) -> Result<Typed> {
        match ids {
            [qual @ .., last] if !qual.is_empty() => {
                let q: Vec<String> = qual.iter().map(|i| i.value.clone()).collect();
                self.check_qualifier(&q, qual[0].span)?;
                self.column_in(last, mode)
            }
            _ => Err(unsupported(format!("the name {e}"), e.span())),
        }
    }

    fn unary(
        &self,
        op: &sql::UnaryOperator,
        expr: &sql::Expr,
        mode: &mut Mode,
        span: Span,
    ) -> Result<Typed> {
        let t = self.expr(expr, mode)?;
        match op {
            sql::UnaryOperator::Not => {
                check_condition(&t, "NOT")?;
                Ok(Typed {
                    ex: Ex::Not(Box::new(t.ex)),
                    ty: Ty::Bool,
                    span,
                })
            }
            sql::UnaryOperator::Minus => match t.ty {
                Ty::Int | Ty::Float | Ty::Interval | Ty::Any | Ty::Null => Ok(Typed {
                    ex: Ex::Neg(Box::new(t.ex)),
                    ty: t.ty,
                    span,
                }),
                other => Err(type_error(
                    format!("cannot negate a {} ({expr})", other.name()),
                    span,
                )),
            },
            sql::UnaryOperator::Plus if t.ty.numeric() => Ok(t),
            other => Err(unsupported(format!("the operator {other}"), span)),
        }
    }

    /// `x IS [NOT] TRUE/FALSE`, which is never null: false when x is null.
    fn is_truth(&self, e: &sql::Expr, inner: &sql::Expr, mode: &mut Mode) -> Result<Ex> {
        let t = self.expr(inner, mode)?;
        check_condition(&t, "IS TRUE/FALSE")?;
        let want = matches!(e, sql::Expr::IsTrue(_) | sql::Expr::IsNotTrue(_));
        let negated = matches!(e, sql::Expr::IsNotTrue(_) | sql::Expr::IsNotFalse(_));
        let test = Ex::And(
            Box::new(Ex::IsNull {
                expr: Box::new(t.ex.clone()),
                negated: true,
            }),
            Box::new(Ex::Cmp(
                CmpOp::Eq,
                Box::new(t.ex),
                Box::new(Ex::Lit(Cell::Bool(want))),
            )),
        );
        Ok(if negated {
            Ex::Not(Box::new(test))
        } else {
            test
        })
    }

    /// `x [NOT] BETWEEN lo AND hi`, both ends inclusive.
    fn between(
        &self,
        x: &sql::Expr,
        lo: &sql::Expr,
        hi: &sql::Expr,
        negated: bool,
        mode: &mut Mode,
    ) -> Result<Ex> {
        let x = self.expr(x, mode)?;
        let lo = self.expr(lo, mode)?;
        let hi = self.expr(hi, mode)?;
        let ge = self.compare(x.clone(), CmpOp::GtEq, lo)?;
        let le = self.compare(x, CmpOp::LtEq, hi)?;
        let both = Ex::And(Box::new(ge), Box::new(le));
        Ok(if negated {
            Ex::Not(Box::new(both))
        } else {
            both
        })
    }

    fn in_list(
        &self,
        x: &sql::Expr,
        list: &[sql::Expr],
        negated: bool,
        mode: &mut Mode,
    ) -> Result<Ex> {
        let x = self.expr(x, mode)?;
        let mut out = Vec::with_capacity(list.len());
        for item in list {
            let t = self.expr(item, mode)?;
            // Type-check as `x = item`; keep the (possibly converted) item.
            match self.compare(x.clone(), CmpOp::Eq, t)? {
                Ex::Cmp(_, _, r) => out.push(*r),
                _ => unreachable!("compare builds a comparison"),
            }
        }
        Ok(Ex::In {
            expr: Box::new(x.ex),
            list: out,
            negated,
        })
    }

    /// `x [NOT] LIKE 'pattern' [ESCAPE 'c']`.
    fn like(&self, e: &sql::Expr, mode: &mut Mode) -> Result<Ex> {
        let sql::Expr::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } = e
        else {
            unreachable!("like() is called with a LIKE expression")
        };
        if *any {
            return Err(unsupported("LIKE ANY", e.span()));
        }
        let escape = escape_char_of(escape_char.as_deref())?;
        let x = self.expr(expr, mode)?;
        let p = self.expr(pattern, mode)?;
        let text = pattern_text(&x, &p, "LIKE")?;
        Ok(Ex::Match {
            expr: Box::new(x.ex),
            pattern: Pattern::like_with_escape(&text, escape),
            negated: *negated,
        })
    }

    fn column_in(&self, id: &sql::Ident, mode: &mut Mode) -> Result<Typed> {
        let t = self.column(id)?;
        if let Mode::Agg { .. } = mode {
            return Err(QueryError::at(
                ErrorKind::Unsupported,
                format!(
                    "column '{}' must be in GROUP BY or inside an aggregate such as last({})",
                    id.value, id.value
                ),
                id.span,
            ));
        }
        Ok(t)
    }

    fn binary(&self, l: Typed, op: &sql::BinaryOperator, r: Typed, span: Span) -> Result<Typed> {
        use sql::BinaryOperator as B;
        let cmp = match op {
            B::Eq => Some(CmpOp::Eq),
            B::NotEq => Some(CmpOp::NotEq),
            B::Lt => Some(CmpOp::Lt),
            B::LtEq => Some(CmpOp::LtEq),
            B::Gt => Some(CmpOp::Gt),
            B::GtEq => Some(CmpOp::GtEq),
            _ => None,
        };
        if let Some(c) = cmp {
            return Ok(Typed {
                ex: self.compare(l, c, r)?,
                ty: Ty::Bool,
                span,
            });
        }
        match op {
            B::And | B::Or => {
                let word = if *op == B::And { "AND" } else { "OR" };
                check_condition(&l, word)?;
                check_condition(&r, word)?;
                let (a, b) = (Box::new(l.ex), Box::new(r.ex));
                Ok(Typed {
                    ex: if *op == B::And {
                        Ex::And(a, b)
                    } else {
                        Ex::Or(a, b)
                    },
                    ty: Ty::Bool,
                    span,
                })
            }
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
                let a = match op {
                    B::Plus => ArOp::Add,
                    B::Minus => ArOp::Sub,
                    B::Multiply => ArOp::Mul,
                    B::Divide => ArOp::Div,
                    _ => ArOp::Mod,
                };
                arithmetic(l, a, op, r, span)
            }
            other => Err(unsupported(format!("the operator {other}"), span)),
        }
    }

    /// Type-checks `l op r`, turning RFC 3339 text compared with a timestamp
    /// into a timestamp and checking quality names.
    fn compare(&self, mut l: Typed, op: CmpOp, mut r: Typed) -> Result<Ex> {
        for (a, b) in [(&l, &r), (&r, &l)] {
            if let (Ex::Col(c), Ex::Lit(Cell::Text(s))) = (&a.ex, &b.ex) {
                let quality = match self.table {
                    Table::Readings => col::R_QUALITY,
                    Table::Tags => col::T_QUALITY,
                    _ => usize::MAX,
                };
                if *c == quality && !["good", "uncertain", "bad"].contains(&s.as_str()) {
                    return Err(type_error(
                        format!("quality is 'good', 'uncertain' or 'bad', not '{s}'"),
                        b.span,
                    ));
                }
            }
        }
        let to_ts = |t: &mut Typed| -> Result<()> {
            if let Ex::Lit(Cell::Text(s)) = &t.ex {
                t.ex = Ex::Lit(Cell::Timestamp(parse_timestamp(s, t.span)?));
                t.ty = Ty::Timestamp;
            }
            Ok(())
        };
        match (l.ty, r.ty) {
            (Ty::Timestamp, Ty::Text) => to_ts(&mut r)?,
            (Ty::Text, Ty::Timestamp) => to_ts(&mut l)?,
            _ => {}
        }
        let ok = match (l.ty, r.ty) {
            (Ty::Null, _) | (_, Ty::Null) => true,
            (a, b) if a.numeric() && b.numeric() => true,
            (Ty::Any, b) | (b, Ty::Any) => {
                matches!(b, Ty::Any | Ty::Bool | Ty::Int | Ty::Float | Ty::Text)
            }
            (a, b) => a == b,
        };
        if !ok {
            // Point at the side that is not a column, usually the literal.
            let at = if matches!(l.ex, Ex::Col(_)) { &r } else { &l };
            let hint = if l.ty == Ty::Timestamp || r.ty == Ty::Timestamp {
                " (write a time as RFC 3339 text such as '2026-11-28T10:00:00Z', or now() - INTERVAL '1 hour')"
            } else {
                ""
            };
            return Err(type_error(
                format!("cannot compare {} with {}{hint}", l.ty.name(), r.ty.name()),
                at.span,
            ));
        }
        Ok(Ex::Cmp(op, Box::new(l.ex), Box::new(r.ex)))
    }
}

/// `l op r` for an arithmetic operator, with its result type.
fn arithmetic(l: Typed, a: ArOp, op: &sql::BinaryOperator, r: Typed, span: Span) -> Result<Typed> {
    let ty = arith_type(a, l.ty, r.ty).ok_or_else(|| {
        type_error(
            format!(
                "cannot apply '{op}' to a {} and a {}",
                l.ty.name(),
                r.ty.name()
            ),
            span,
        )
    })?;
    Ok(Typed {
        ex: Ex::Arith(a, Box::new(l.ex), Box::new(r.ex)),
        ty,
        span,
    })
}

/// `TIMESTAMP '...'`.
fn typed_string(ts: &sql::TypedString, span: Span) -> Result<Typed> {
    match &ts.data_type {
        sql::DataType::Timestamp(..) | sql::DataType::Datetime(_) => {
            let text = match &ts.value.value {
                sql::Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            };
            Ok(Typed {
                ex: Ex::Lit(Cell::Timestamp(parse_timestamp(&text, span)?)),
                ty: Ty::Timestamp,
                span,
            })
        }
        other => Err(unsupported(format!("{other} literals"), span)),
    }
}

/// LIKE's escape character: `\` unless ESCAPE names another (or none, with '').
fn escape_char_of(escape: Option<&sql::Expr>) -> Result<Option<char>> {
    const HINT: &str = "ESCAPE needs a single character, such as '!'";
    match escape {
        None => Ok(Some('\\')),
        Some(sql::Expr::Value(v)) => match &v.value {
            sql::Value::SingleQuotedString(s) if s.chars().count() == 1 => Ok(s.chars().next()),
            sql::Value::SingleQuotedString(s) if s.is_empty() => Ok(None),
            _ => Err(type_error(HINT, v.span)),
        },
        Some(other) => Err(type_error(HINT, other.span())),
    }
}

/// The error for an expression outside the subset, naming it.
fn refused(e: &sql::Expr, span: Span) -> QueryError {
    match e {
        sql::Expr::In {
            target: sql::InTarget::Subquery(_),
            ..
        }
        | sql::Expr::Subquery(_)
        | sql::Expr::Exists { .. } => unsupported("subqueries", span),
        sql::Expr::In { .. } => unsupported("this form of IN (only lists)", span),
        sql::Expr::ILike { .. } => {
            unsupported("ILIKE (tag names are case-sensitive; use LIKE)", span)
        }
        sql::Expr::SimilarTo { .. } | sql::Expr::RLike { .. } => {
            unsupported("regular expressions (use LIKE or glob())", span)
        }
        sql::Expr::Case { .. } => unsupported("CASE", span),
        sql::Expr::Cast { .. } => unsupported("CAST", span),
        sql::Expr::Wildcard(_) | sql::Expr::QualifiedWildcard(..) => {
            unsupported("* inside an expression", span)
        }
        other => {
            let text = other.to_string();
            let short: String = text.chars().take(40).collect();
            unsupported(format!("the expression `{short}`"), span)
        }
    }
}
