//! Compiling one SELECT: its FROM, WHERE, select list, GROUP BY, ORDER BY
//! and LIMIT, each in its own function.

use sqlparser::ast::{self as sql, Spanned};
use sqlparser::tokenizer::Span;

use super::catalog::{col, Table, Ty};
use super::expr::{Compiler, Mode};
use super::function::item_has_aggregate;
use super::plan::{AggPlan, AggSpec, Ex, OrderKey, Plan};
use super::Typed;
use crate::cell::Column;
use crate::error::{type_error, unsupported, ErrorKind, QueryError, Result};

/// One select-list item after wildcards are expanded: an expression or a
/// table column, and its output name.
pub(super) struct Item<'q> {
    expr: Option<&'q sql::Expr>,
    column: Option<usize>,
    name: String,
}

/// Outputs, their columns and the order keys of one query.
struct Outputs {
    exprs: Vec<Ex>,
    columns: Vec<Column>,
    order: Vec<OrderKey>,
}

pub(super) fn compile_query(q: &sql::Query) -> Result<Plan> {
    let select = single_select(q)?;
    reject_select_extras(select)?;
    let (table, alias) = resolve_table(select)?;
    let c = Compiler { table, alias };
    let filter = compile_filter(&c, select)?;
    let quality_filtered = table == Table::Readings
        && filter
            .as_ref()
            .is_some_and(|f| f.uses_column(col::R_QUALITY));
    let group_exprs = group_exprs(select)?;
    let is_agg = !group_exprs.is_empty() || select.projection.iter().any(item_has_aggregate);
    let items = select_items(&c, select, is_agg)?;
    let (agg, out) = if is_agg {
        let (agg, out) = compile_grouped(&c, q, group_exprs, &items)?;
        (Some(agg), out)
    } else {
        (None, compile_plain(&c, q, &items)?)
    };
    let (limit, offset) = compile_limit(q)?;
    Ok(Plan {
        table,
        filter,
        quality_filtered,
        agg,
        outputs: out.exprs,
        columns: out.columns,
        order: out.order,
        limit,
        offset,
    })
}

/// The one plain SELECT of `q`; every other query form is refused by name.
fn single_select(q: &sql::Query) -> Result<&sql::Select> {
    if let Some(w) = &q.with {
        return Err(unsupported("WITH (common table expressions)", w.span()));
    }
    if let Some(f) = &q.fetch {
        return Err(unsupported("FETCH (use LIMIT)", f.span()));
    }
    if !q.locks.is_empty() || q.for_clause.is_some() {
        return Err(unsupported("FOR ... clauses", q.span()));
    }
    if q.settings.is_some() || q.format_clause.is_some() || !q.pipe_operators.is_empty() {
        return Err(unsupported("SETTINGS, FORMAT and pipe operators", q.span()));
    }
    match q.body.as_ref() {
        sql::SetExpr::Select(s) => Ok(s),
        sql::SetExpr::SetOperation { op, .. } => Err(unsupported(
            format!("{} (set operations)", op.to_string().to_uppercase()),
            q.body.span(),
        )),
        sql::SetExpr::Query(inner) => Err(unsupported("a parenthesized subquery", inner.span())),
        sql::SetExpr::Values(v) => Err(unsupported("VALUES", v.span())),
        sql::SetExpr::Table(_) => Err(unsupported("TABLE", q.body.span())),
        _ => Err(unsupported(
            "writing (INSERT, UPDATE, DELETE, MERGE)",
            q.body.span(),
        )),
    }
}

fn compile_filter(c: &Compiler, select: &sql::Select) -> Result<Option<Ex>> {
    let Some(e) = &select.selection else {
        return Ok(None);
    };
    let t = c.expr(e, &mut Mode::Scalar("WHERE"))?;
    if !matches!(t.ty, Ty::Bool | Ty::Any | Ty::Null) {
        return Err(type_error(
            format!("WHERE needs a condition, not a {} expression", t.ty.name()),
            t.span,
        ));
    }
    Ok(Some(t.ex))
}

fn group_exprs(select: &sql::Select) -> Result<&[sql::Expr]> {
    match &select.group_by {
        sql::GroupByExpr::All(_) => Err(unsupported("GROUP BY ALL", select.group_by.span())),
        sql::GroupByExpr::Expressions(exprs, mods) => {
            if !mods.is_empty() {
                return Err(unsupported(
                    "GROUP BY modifiers (ROLLUP, CUBE, TOTALS)",
                    select.group_by.span(),
                ));
            }
            Ok(exprs)
        }
    }
}

/// The select list, with wildcards expanded.
fn select_items<'q>(c: &Compiler, select: &'q sql::Select, is_agg: bool) -> Result<Vec<Item<'q>>> {
    let all_columns = || {
        c.table
            .schema()
            .iter()
            .enumerate()
            .map(|(i, (name, _))| Item {
                expr: None,
                column: Some(i),
                name: name.to_string(),
            })
    };
    let mut items = Vec::new();
    for item in &select.projection {
        match item {
            sql::SelectItem::Wildcard(opts) => {
                check_wildcard(opts)?;
                if is_agg {
                    return Err(unsupported(
                        "SELECT * in an aggregate query",
                        opts.wildcard_token.0.span,
                    ));
                }
                items.extend(all_columns());
            }
            sql::SelectItem::QualifiedWildcard(kind, opts) => {
                check_wildcard(opts)?;
                check_qualified_wildcard(c, kind, item.span(), is_agg)?;
                items.extend(all_columns());
            }
            sql::SelectItem::UnnamedExpr(e) => items.push(Item {
                expr: Some(e),
                column: None,
                name: item_name(e),
            }),
            sql::SelectItem::ExprWithAlias { expr, alias } => items.push(Item {
                expr: Some(expr),
                column: None,
                name: alias.value.clone(),
            }),
            sql::SelectItem::ExprWithAliases { aliases, .. } => {
                return Err(unsupported(
                    "several aliases for one item",
                    aliases.first().map(|a| a.span).unwrap_or(Span::empty()),
                ))
            }
        }
    }
    Ok(items)
}

/// The output name of an unaliased item: a column's own name, else its text.
fn item_name(e: &sql::Expr) -> String {
    match e {
        sql::Expr::Identifier(id) => id.value.clone(),
        sql::Expr::CompoundIdentifier(ids) => {
            ids.last().map(|i| i.value.clone()).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

fn check_qualified_wildcard(
    c: &Compiler,
    kind: &sql::SelectItemQualifiedWildcardKind,
    span: Span,
    is_agg: bool,
) -> Result<()> {
    if let sql::SelectItemQualifiedWildcardKind::ObjectName(n) = kind {
        c.check_qualifier(&object_name(n), span)?;
    } else {
        return Err(unsupported("this wildcard", span));
    }
    if is_agg {
        return Err(unsupported("SELECT * in an aggregate query", span));
    }
    Ok(())
}

/// A query without aggregates: one output per item, then ORDER BY.
fn compile_plain(c: &Compiler, q: &sql::Query, items: &[Item<'_>]) -> Result<Outputs> {
    let mut exprs = Vec::new();
    let mut columns = Vec::new();
    for item in items {
        let t = match (item.expr, item.column) {
            (Some(e), _) => c.expr(e, &mut Mode::Scalar("the select list"))?,
            (None, Some(i)) => Typed {
                ex: Ex::Col(i),
                ty: c.table.schema()[i].1,
                span: Span::empty(),
            },
            (None, None) => unreachable!("an item is an expression or a column"),
        };
        exprs.push(t.ex);
        columns.push(Column {
            name: item.name.clone(),
            ty: t.ty.column_type(),
        });
    }
    let order = compile_order(q, items, &mut exprs, &columns, |e| {
        c.expr(e, &mut Mode::Scalar("ORDER BY"))
    })?;
    Ok(Outputs {
        exprs,
        columns,
        order,
    })
}

/// The group keys; GROUP BY may name an output column by position or alias.
fn group_keys(c: &Compiler, group_exprs: &[sql::Expr], items: &[Item<'_>]) -> Result<Vec<Typed>> {
    let mut keys = Vec::new();
    for g in group_exprs {
        let target = match g {
            sql::Expr::Value(v) => match &v.value {
                sql::Value::Number(n, _) => {
                    let pos = ordinal(n, items.len(), g.span(), "GROUP BY")?;
                    items[pos]
                        .expr
                        .ok_or_else(|| unsupported("GROUP BY *", g.span()))?
                }
                _ => g,
            },
            sql::Expr::Identifier(id) if c.lookup(id).is_none() => items
                .iter()
                .find(|i| i.expr.is_some() && i.name.eq_ignore_ascii_case(&id.value))
                .and_then(|i| i.expr)
                .unwrap_or(g),
            _ => g,
        };
        keys.push(c.expr(target, &mut Mode::Scalar("GROUP BY"))?);
    }
    Ok(keys)
}

/// An aggregate query: outputs over group keys and aggregate results.
fn compile_grouped(
    c: &Compiler,
    q: &sql::Query,
    group_exprs: &[sql::Expr],
    items: &[Item<'_>],
) -> Result<(AggPlan, Outputs)> {
    let keys = group_keys(c, group_exprs, items)?;
    let key_exs: Vec<Ex> = keys.iter().map(|k| k.ex.clone()).collect();
    let key_tys: Vec<Ty> = keys.iter().map(|k| k.ty).collect();
    let mut aggs: Vec<(AggSpec, Ty)> = Vec::new();
    let mut compile = |e: &sql::Expr| {
        let mut mode = Mode::Agg {
            keys: &key_exs,
            key_tys: &key_tys,
            aggs: &mut aggs,
        };
        c.expr(e, &mut mode)
    };
    let mut exprs = Vec::new();
    let mut columns = Vec::new();
    for item in items {
        let e = item
            .expr
            .expect("wildcards are rejected in aggregate queries");
        let t = compile(e)?;
        exprs.push(t.ex);
        columns.push(Column {
            name: item.name.clone(),
            ty: t.ty.column_type(),
        });
    }
    // ORDER BY keys may add hidden outputs (and aggregates).
    let order = compile_order(q, items, &mut exprs, &columns, compile)?;
    let agg = AggPlan {
        keys: key_exs,
        aggs: aggs.into_iter().map(|(a, _)| a).collect(),
    };
    Ok((
        agg,
        Outputs {
            exprs,
            columns,
            order,
        },
    ))
}

fn check_wildcard(opts: &sql::WildcardAdditionalOptions) -> Result<()> {
    if opts.opt_ilike.is_some()
        || opts.opt_exclude.is_some()
        || opts.opt_except.is_some()
        || opts.opt_replace.is_some()
        || opts.opt_rename.is_some()
        || opts.opt_alias.is_some()
    {
        return Err(unsupported(
            "wildcard options (EXCLUDE, EXCEPT, REPLACE, RENAME)",
            opts.wildcard_token.0.span,
        ));
    }
    Ok(())
}

fn reject_select_extras(s: &sql::Select) -> Result<()> {
    let at = s.select_token.0.span;
    if let Some(d) = &s.distinct {
        let what = match d {
            sql::Distinct::On(_) => "DISTINCT ON",
            _ => "DISTINCT",
        };
        return Err(unsupported(what, at));
    }
    if s.top.is_some() {
        return Err(unsupported("TOP (use LIMIT)", at));
    }
    if s.into.is_some() {
        return Err(unsupported("SELECT INTO", at));
    }
    if let Some(h) = &s.having {
        return Err(unsupported("HAVING", h.span()));
    }
    if let Some(q) = &s.qualify {
        return Err(unsupported("QUALIFY", q.span()));
    }
    if !s.named_window.is_empty() {
        return Err(unsupported("WINDOW (window functions)", at));
    }
    if s.prewhere.is_some()
        || !s.lateral_views.is_empty()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || s.exclude.is_some()
        || s.select_modifiers.is_some()
        || !s.optimizer_hints.is_empty()
    {
        return Err(unsupported("this dialect-specific SELECT clause", at));
    }
    Ok(())
}

pub(super) fn object_name(n: &sql::ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            sql::ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn resolve_table(s: &sql::Select) -> Result<(Table, Option<String>)> {
    let relation = single_relation(s)?;
    let span = relation.span();
    let sql::TableFactor::Table { name, alias, .. } = relation else {
        return Err(match relation {
            sql::TableFactor::Derived { .. } => unsupported("subqueries in FROM", span),
            _ => unsupported("this kind of FROM item (only table names)", span),
        });
    };
    reject_table_options(relation)?;
    let parts = object_name(name);
    let table = match parts.as_slice() {
        [one] => Table::parse(one),
        _ => None,
    }
    .ok_or_else(|| {
        QueryError::at(
            ErrorKind::UnknownTable,
            format!("unknown table '{name}' (tables: tags, readings, devices, cluster)"),
            span,
        )
    })?;
    let alias = match alias {
        None => None,
        Some(a) if a.columns.is_empty() => Some(a.name.value.clone()),
        Some(a) => return Err(unsupported("column aliases on a table", a.name.span)),
    };
    Ok((table, alias))
}

/// The one FROM item, without joins.
fn single_relation(s: &sql::Select) -> Result<&sql::TableFactor> {
    let from = match s.from.as_slice() {
        [] => {
            return Err(unsupported(
                "SELECT without FROM (name one of the tables tags, readings, devices, cluster)",
                s.select_token.0.span,
            ))
        }
        [one] => one,
        [_, second, ..] => {
            return Err(unsupported(
                "joins (more than one table in FROM)",
                second.relation.span(),
            ))
        }
    };
    if let Some(j) = from.joins.first() {
        return Err(unsupported("JOIN", j.relation.span()));
    }
    Ok(&from.relation)
}

fn reject_table_options(relation: &sql::TableFactor) -> Result<()> {
    let sql::TableFactor::Table {
        args,
        with_hints,
        version,
        with_ordinality,
        partitions,
        json_path,
        sample,
        index_directives,
        inheritance,
        ..
    } = relation
    else {
        return Ok(());
    };
    if args.is_some()
        || !with_hints.is_empty()
        || version.is_some()
        || *with_ordinality
        || !partitions.is_empty()
        || json_path.is_some()
        || sample.is_some()
        || !index_directives.is_empty()
        || inheritance.is_some()
    {
        return Err(unsupported("table options in FROM", relation.span()));
    }
    Ok(())
}

/// A 1-based output position written as a number.
pub(super) fn ordinal(n: &str, len: usize, span: Span, clause: &str) -> Result<usize> {
    match n.parse::<usize>() {
        Ok(i) if (1..=len).contains(&i) => Ok(i - 1),
        _ => Err(type_error(
            format!("{clause} {n}: there is no output column {n} (the select list has {len})"),
            span,
        )),
    }
}

fn compile_order(
    q: &sql::Query,
    items: &[Item<'_>],
    outputs: &mut Vec<Ex>,
    columns: &[Column],
    mut compile: impl FnMut(&sql::Expr) -> Result<Typed>,
) -> Result<Vec<OrderKey>> {
    let Some(ob) = &q.order_by else {
        return Ok(Vec::new());
    };
    if ob.interpolate.is_some() {
        return Err(unsupported("INTERPOLATE", ob.span()));
    }
    let exprs = match &ob.kind {
        sql::OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL", ob.span())),
        sql::OrderByKind::Expressions(e) => e,
    };
    let mut keys = Vec::new();
    for o in exprs {
        let (desc, nulls_first) = order_direction(o)?;
        let idx = match output_named(&o.expr, items, columns.len())? {
            Some(i) => i,
            None => {
                let t = compile(&o.expr)?;
                match outputs.iter().position(|x| *x == t.ex) {
                    Some(i) => i,
                    None => {
                        outputs.push(t.ex);
                        outputs.len() - 1
                    }
                }
            }
        };
        keys.push(OrderKey {
            idx,
            desc,
            nulls_first,
        });
    }
    Ok(keys)
}

/// (descending, nulls first) of one ORDER BY item; nulls come last
/// ascending and first descending unless it says otherwise.
fn order_direction(o: &sql::OrderByExpr) -> Result<(bool, bool)> {
    if o.with_fill.is_some() {
        return Err(unsupported("WITH FILL", o.expr.span()));
    }
    let desc = match &o.options.sort {
        None | Some(sql::OrderBySort::Asc) => false,
        Some(sql::OrderBySort::Desc) => true,
        Some(sql::OrderBySort::Using(_)) => {
            return Err(unsupported("ORDER BY ... USING", o.expr.span()))
        }
    };
    Ok((desc, o.options.nulls_first.unwrap_or(desc)))
}

/// The output an ORDER BY item names by position or output name, if any.
fn output_named(e: &sql::Expr, items: &[Item<'_>], outputs: usize) -> Result<Option<usize>> {
    Ok(match e {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::Number(n, _) => Some(ordinal(n, outputs, e.span(), "ORDER BY")?),
            _ => None,
        },
        // An output name wins over a table column of the same name (SQL).
        sql::Expr::Identifier(id) => items
            .iter()
            .position(|i| i.name.eq_ignore_ascii_case(&id.value)),
        _ => None,
    })
}

fn compile_limit(q: &sql::Query) -> Result<(Option<u64>, u64)> {
    fn count(e: &sql::Expr, what: &str) -> Result<u64> {
        if let sql::Expr::Value(v) = e {
            if let sql::Value::Number(n, _) = &v.value {
                if let Ok(n) = n.parse::<u64>() {
                    return Ok(n);
                }
            }
        }
        Err(type_error(
            format!("{what} needs a whole number, not {e}"),
            e.span(),
        ))
    }
    match &q.limit_clause {
        None => Ok((None, 0)),
        Some(sql::LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if let Some(b) = limit_by.first() {
                return Err(unsupported("LIMIT BY", b.span()));
            }
            let limit = match limit {
                None => None,
                Some(sql::Expr::Value(v)) if matches!(v.value, sql::Value::Null) => None,
                Some(e) => Some(count(e, "LIMIT")?),
            };
            let offset = match offset {
                None => 0,
                Some(o) => count(&o.value, "OFFSET")?,
            };
            Ok((limit, offset))
        }
        Some(sql::LimitClause::OffsetCommaLimit { offset, limit }) => {
            Ok((Some(count(limit, "LIMIT")?), count(offset, "OFFSET")?))
        }
    }
}
