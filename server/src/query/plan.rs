//! From sqlparser's syntax tree to a checked plan: typed expressions over the
//! columns of one table, with every name resolved and every unsupported
//! construct rejected (with its position) before anything is read.

use sqlparser::ast::{self as sql, Spanned};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Span;

use super::pattern::Pattern;
use super::{Cell, Column, ColumnType, ErrorKind, QueryError};

type Result<T> = std::result::Result<T, QueryError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    Tags,
    Readings,
    Devices,
    Cluster,
}

/// Column positions in the rows each table produces.
pub(crate) mod col {
    pub const R_TAG: usize = 0;
    pub const R_TS: usize = 1;
    pub const R_VALUE: usize = 2;
    pub const R_QUALITY: usize = 3;
    pub const R_REVISION: usize = 5;

    pub const T_NAME: usize = 0;
    pub const T_QUALITY: usize = 10;
    pub const T_TS: usize = 12;
    pub const T_REVISION: usize = 13;
    /// The first column that comes from the current reading.
    pub const T_FIRST_CURRENT: usize = 9;
}

const READINGS: &[(&str, Ty)] = &[
    ("tag", Ty::Text),
    ("ts", Ty::Timestamp),
    ("value", Ty::Any),
    ("quality", Ty::Text),
    ("reason", Ty::Text),
    ("revision", Ty::Int),
    ("id", Ty::Text),
    ("server_ts", Ty::Timestamp),
];
const TAGS: &[(&str, Ty)] = &[
    ("name", Ty::Text),
    ("device", Ty::Text),
    ("address", Ty::Text),
    ("type", Ty::Text),
    ("units", Ty::Text),
    ("description", Ty::Text),
    ("writable", Ty::Bool),
    ("scan_rate_ms", Ty::Int),
    ("config_revision", Ty::Int),
    ("value", Ty::Any),
    ("quality", Ty::Text),
    ("reason", Ty::Text),
    ("ts", Ty::Timestamp),
    ("revision", Ty::Int),
];
const DEVICES: &[(&str, Ty)] = &[
    ("name", Ty::Text),
    ("protocol", Ty::Text),
    ("endpoint", Ty::Text),
    ("unit_id", Ty::Int),
    ("poll_interval_ms", Ty::Int),
    ("timeout_ms", Ty::Int),
    ("retries", Ty::Int),
    ("enabled", Ty::Bool),
    ("labels", Ty::Text),
    ("config_revision", Ty::Int),
    ("owner", Ty::Int),
    ("owner_epoch", Ty::Int),
];
const CLUSTER: &[(&str, Ty)] = &[
    ("node_id", Ty::Int),
    ("address", Ty::Text),
    ("role", Ty::Text),
    ("voter", Ty::Bool),
    ("is_leader", Ty::Bool),
    ("devices", Ty::Int),
];

impl Table {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Tags => "tags",
            Table::Readings => "readings",
            Table::Devices => "devices",
            Table::Cluster => "cluster",
        }
    }

    fn schema(self) -> &'static [(&'static str, Ty)] {
        match self {
            Table::Tags => TAGS,
            Table::Readings => READINGS,
            Table::Devices => DEVICES,
            Table::Cluster => CLUSTER,
        }
    }

    fn parse(name: &str) -> Option<Table> {
        [Table::Tags, Table::Readings, Table::Devices, Table::Cluster]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// `(ts, revision)` columns, by which first/last order rows.
    pub(crate) fn time_columns(self) -> Option<(usize, usize)> {
        match self {
            Table::Readings => Some((col::R_TS, col::R_REVISION)),
            Table::Tags => Some((col::T_TS, col::T_REVISION)),
            _ => None,
        }
    }

    /// The column holding the tag name, which selects the tags to visit.
    pub(crate) fn tag_column(self) -> Option<usize> {
        match self {
            Table::Readings => Some(col::R_TAG),
            Table::Tags => Some(col::T_NAME),
            _ => None,
        }
    }
}

/// Static types. `Interval` values are microseconds at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Int,
    Float,
    Text,
    Timestamp,
    Interval,
    Any,
    Null,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::Int => "integer",
            Ty::Float => "number",
            Ty::Text => "text",
            Ty::Timestamp => "timestamp",
            Ty::Interval => "interval",
            Ty::Any => "value",
            Ty::Null => "null",
        }
    }
    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }
    fn column_type(self) -> ColumnType {
        match self {
            Ty::Bool => ColumnType::Bool,
            Ty::Int | Ty::Interval => ColumnType::Int,
            Ty::Float => ColumnType::Float,
            Ty::Text => ColumnType::Text,
            Ty::Timestamp => ColumnType::Timestamp,
            Ty::Any | Ty::Null => ColumnType::Any,
        }
    }
}

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

/// A compiled expression with its static type and where it was written.
#[derive(Clone, Debug)]
struct Typed {
    ex: Ex,
    ty: Ty,
    span: Span,
}

fn unsupported(what: impl std::fmt::Display, span: Span) -> QueryError {
    QueryError::at(
        ErrorKind::Unsupported,
        format!("{what} is not supported"),
        span,
    )
}

fn type_error(msg: impl Into<String>, span: Span) -> QueryError {
    QueryError::at(ErrorKind::Type, msg, span)
}

/// sqlparser reports positions inside its message (`... at Line: 2, Column: 7`).
fn syntax_error(e: ParserError) -> QueryError {
    let text = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
        ParserError::RecursionLimitExceeded => {
            "the query is nested too deeply (recursion limit)".to_string()
        }
    };
    let mut err = QueryError::new(ErrorKind::Syntax, text.clone());
    if let Some(at) = text.rfind(" at Line: ") {
        let pos = &text[at + " at Line: ".len()..];
        if let Some((l, c)) = pos.split_once(", Column: ") {
            if let (Ok(l), Ok(c)) = (l.trim().parse(), c.trim().parse()) {
                err.line = Some(l);
                err.column = Some(c);
                err.message = text[..at].to_string();
            }
        }
    }
    err
}

pub(crate) fn compile(sql_text: &str) -> Result<Plan> {
    let stmts = Parser::parse_sql(&GenericDialect {}, sql_text).map_err(syntax_error)?;
    let stmt = match stmts.as_slice() {
        [] => return Err(QueryError::new(ErrorKind::Syntax, "the query is empty")),
        [one] => one,
        [_, second, ..] => {
            return Err(unsupported(
                "more than one statement per query",
                second.span(),
            ))
        }
    };
    match stmt {
        sql::Statement::Query(q) => compile_query(q),
        other => {
            let text = other.to_string();
            let word = text
                .split_whitespace()
                .next()
                .unwrap_or("this")
                .to_uppercase();
            Err(QueryError::at(
                ErrorKind::Unsupported,
                format!("{word} is not supported: queries are read-only SELECT statements"),
                other.span(),
            ))
        }
    }
}

fn compile_query(q: &sql::Query) -> Result<Plan> {
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
    let select = match q.body.as_ref() {
        sql::SetExpr::Select(s) => s,
        sql::SetExpr::SetOperation { op, .. } => {
            return Err(unsupported(
                format!("{} (set operations)", op.to_string().to_uppercase()),
                q.body.span(),
            ))
        }
        sql::SetExpr::Query(inner) => {
            return Err(unsupported("a parenthesized subquery", inner.span()))
        }
        sql::SetExpr::Values(v) => return Err(unsupported("VALUES", v.span())),
        sql::SetExpr::Table(_) => return Err(unsupported("TABLE", q.body.span())),
        _ => {
            return Err(unsupported(
                "writing (INSERT, UPDATE, DELETE, MERGE)",
                q.body.span(),
            ))
        }
    };
    reject_select_extras(select)?;
    let (table, alias) = resolve_table(select)?;
    let c = Compiler { table, alias };

    let filter = match &select.selection {
        None => None,
        Some(e) => {
            let t = c.expr(e, &mut Mode::Scalar("WHERE"))?;
            if !matches!(t.ty, Ty::Bool | Ty::Any | Ty::Null) {
                return Err(type_error(
                    format!("WHERE needs a condition, not a {} expression", t.ty.name()),
                    t.span,
                ));
            }
            Some(t.ex)
        }
    };
    let quality_filtered = table == Table::Readings
        && filter
            .as_ref()
            .is_some_and(|f| f.uses_column(col::R_QUALITY));

    let group_exprs: &[sql::Expr] = match &select.group_by {
        sql::GroupByExpr::All(_) => {
            return Err(unsupported("GROUP BY ALL", select.group_by.span()))
        }
        sql::GroupByExpr::Expressions(exprs, mods) => {
            if !mods.is_empty() {
                return Err(unsupported(
                    "GROUP BY modifiers (ROLLUP, CUBE, TOTALS)",
                    select.group_by.span(),
                ));
            }
            exprs
        }
    };
    let is_agg = !group_exprs.is_empty() || select.projection.iter().any(item_has_aggregate);

    // The select list, with wildcards expanded: (expression or column, name).
    let mut items: Vec<(Option<&sql::Expr>, Option<usize>, String, Span)> = Vec::new();
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
                for (i, (name, _)) in table.schema().iter().enumerate() {
                    items.push((None, Some(i), name.to_string(), Span::empty()));
                }
            }
            sql::SelectItem::QualifiedWildcard(kind, opts) => {
                check_wildcard(opts)?;
                let span = item.span();
                if let sql::SelectItemQualifiedWildcardKind::ObjectName(n) = kind {
                    c.check_qualifier(&object_name(n), span)?;
                } else {
                    return Err(unsupported("this wildcard", span));
                }
                if is_agg {
                    return Err(unsupported("SELECT * in an aggregate query", span));
                }
                for (i, (name, _)) in table.schema().iter().enumerate() {
                    items.push((None, Some(i), name.to_string(), Span::empty()));
                }
            }
            sql::SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    sql::Expr::Identifier(id) => id.value.clone(),
                    sql::Expr::CompoundIdentifier(ids) => {
                        ids.last().map(|i| i.value.clone()).unwrap_or_default()
                    }
                    other => other.to_string(),
                };
                items.push((Some(e), None, name, e.span()));
            }
            sql::SelectItem::ExprWithAlias { expr, alias } => {
                items.push((Some(expr), None, alias.value.clone(), expr.span()));
            }
            sql::SelectItem::ExprWithAliases { aliases, .. } => {
                return Err(unsupported(
                    "several aliases for one item",
                    aliases.first().map(|a| a.span).unwrap_or(Span::empty()),
                ))
            }
        }
    }

    let mut outputs = Vec::new();
    let mut columns = Vec::new();
    let agg = if is_agg {
        let mut keys: Vec<Typed> = Vec::new();
        for g in group_exprs {
            // GROUP BY may name an output column by position or alias.
            let target = match g {
                sql::Expr::Value(v) => match &v.value {
                    sql::Value::Number(n, _) => {
                        let pos = ordinal(n, items.len(), g.span(), "GROUP BY")?;
                        items[pos]
                            .0
                            .ok_or_else(|| unsupported("GROUP BY *", g.span()))?
                    }
                    _ => g,
                },
                sql::Expr::Identifier(id) if c.lookup(id).is_none() => items
                    .iter()
                    .find(|(e, _, name, _)| e.is_some() && name.eq_ignore_ascii_case(&id.value))
                    .and_then(|(e, ..)| *e)
                    .unwrap_or(g),
                _ => g,
            };
            let t = c.expr(target, &mut Mode::Scalar("GROUP BY"))?;
            keys.push(t);
        }
        let key_exs: Vec<Ex> = keys.iter().map(|k| k.ex.clone()).collect();
        let key_tys: Vec<Ty> = keys.iter().map(|k| k.ty).collect();
        let mut aggs: Vec<(AggSpec, Ty)> = Vec::new();
        for (e, _, name, _) in &items {
            let e = e.expect("wildcards are rejected in aggregate queries");
            let mut mode = Mode::Agg {
                keys: &key_exs,
                key_tys: &key_tys,
                aggs: &mut aggs,
            };
            let t = c.expr(e, &mut mode)?;
            outputs.push(t.ex);
            columns.push(Column {
                name: name.clone(),
                ty: t.ty.column_type(),
            });
        }
        // ORDER BY keys may add hidden outputs (and aggregates).
        let order = compile_order(q, &items, &mut outputs, &columns, |e| {
            let mut mode = Mode::Agg {
                keys: &key_exs,
                key_tys: &key_tys,
                aggs: &mut aggs,
            };
            c.expr(e, &mut mode)
        })?;
        Some((
            AggPlan {
                keys: key_exs,
                aggs: aggs.into_iter().map(|(a, _)| a).collect(),
            },
            order,
        ))
    } else {
        for (e, col_idx, name, _) in &items {
            let t = match (e, col_idx) {
                (Some(e), _) => c.expr(e, &mut Mode::Scalar("the select list"))?,
                (None, Some(i)) => Typed {
                    ex: Ex::Col(*i),
                    ty: table.schema()[*i].1,
                    span: Span::empty(),
                },
                (None, None) => unreachable!("an item is an expression or a column"),
            };
            outputs.push(t.ex);
            columns.push(Column {
                name: name.clone(),
                ty: t.ty.column_type(),
            });
        }
        None
    };
    let (agg, order) = match agg {
        Some((a, order)) => (Some(a), order),
        None => {
            let order = compile_order(q, &items, &mut outputs, &columns, |e| {
                c.expr(e, &mut Mode::Scalar("ORDER BY"))
            })?;
            (None, order)
        }
    };
    let (limit, offset) = compile_limit(q)?;
    Ok(Plan {
        table,
        filter,
        quality_filtered,
        agg,
        outputs,
        columns,
        order,
        limit,
        offset,
    })
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

fn object_name(n: &sql::ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            sql::ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn resolve_table(s: &sql::Select) -> Result<(Table, Option<String>)> {
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
    let span = from.relation.span();
    let sql::TableFactor::Table {
        name,
        alias,
        args,
        with_hints,
        version,
        with_ordinality,
        partitions,
        json_path,
        sample,
        index_directives,
        inheritance,
    } = &from.relation
    else {
        return Err(match &from.relation {
            sql::TableFactor::Derived { .. } => unsupported("subqueries in FROM", span),
            _ => unsupported("this kind of FROM item (only table names)", span),
        });
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
        return Err(unsupported("table options in FROM", span));
    }
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

/// A 1-based output position written as a number.
fn ordinal(n: &str, len: usize, span: Span, clause: &str) -> Result<usize> {
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
    items: &[(Option<&sql::Expr>, Option<usize>, String, Span)],
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
        let nulls_first = o.options.nulls_first.unwrap_or(desc);
        let by_name = match &o.expr {
            sql::Expr::Value(v) => match &v.value {
                sql::Value::Number(n, _) => {
                    Some(ordinal(n, columns.len(), o.expr.span(), "ORDER BY")?)
                }
                _ => None,
            },
            // An output name wins over a table column of the same name (SQL).
            sql::Expr::Identifier(id) => items
                .iter()
                .position(|(_, _, name, _)| name.eq_ignore_ascii_case(&id.value)),
            _ => None,
        };
        let idx = match by_name {
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

const AGGREGATES: &[&str] = &["count", "avg", "sum", "min", "max", "first", "last"];

fn function_name(f: &sql::Function) -> String {
    object_name(&f.name).join(".").to_lowercase()
}

fn item_has_aggregate(item: &sql::SelectItem) -> bool {
    match item {
        sql::SelectItem::UnnamedExpr(e) | sql::SelectItem::ExprWithAlias { expr: e, .. } => {
            has_aggregate(e)
        }
        _ => false,
    }
}

/// Whether an aggregate call appears in `e` (through the supported forms).
fn has_aggregate(e: &sql::Expr) -> bool {
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

/// What kind of expression is being compiled.
enum Mode<'m> {
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

struct Compiler {
    table: Table,
    alias: Option<String>,
}

fn same_name(id: &sql::Ident, name: &str) -> bool {
    if id.quote_style.is_some() {
        id.value == name
    } else {
        id.value.eq_ignore_ascii_case(name)
    }
}

impl Compiler {
    fn lookup(&self, id: &sql::Ident) -> Option<(usize, Ty)> {
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

    fn check_qualifier(&self, parts: &[String], span: Span) -> Result<()> {
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

    fn expr(&self, e: &sql::Expr, mode: &mut Mode) -> Result<Typed> {
        let span = e.span();
        if let Mode::Agg { keys, key_tys, .. } = mode {
            // A group key (or an expression of one) may be used as is.
            if !keys.is_empty() && !has_aggregate(e) {
                if let Ok(t) = self.expr(e, &mut Mode::Scalar("GROUP BY")) {
                    if let Some(i) = keys.iter().position(|k| *k == t.ex) {
                        return Ok(Typed {
                            ex: Ex::Slot(i),
                            ty: key_tys[i],
                            span,
                        });
                    }
                }
            }
        }
        match e {
            sql::Expr::Identifier(id) => self.column_in(id, mode),
            sql::Expr::CompoundIdentifier(ids) => match ids.as_slice() {
                [qual @ .., last] if !qual.is_empty() => {
                    let q: Vec<String> = qual.iter().map(|i| i.value.clone()).collect();
                    self.check_qualifier(&q, qual[0].span)?;
                    self.column_in(last, mode)
                }
                _ => Err(unsupported(format!("the name {e}"), span)),
            },
            sql::Expr::Value(v) => literal(&v.value, v.span),
            sql::Expr::Interval(i) => Ok(Typed {
                ex: Ex::Lit(Cell::Int(interval(i, span)?)),
                ty: Ty::Interval,
                span,
            }),
            sql::Expr::TypedString(ts) => match &ts.data_type {
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
            },
            sql::Expr::Nested(inner) => {
                let mut t = self.expr(inner, mode)?;
                t.span = span;
                Ok(t)
            }
            sql::Expr::UnaryOp { op, expr } => {
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
            sql::Expr::BinaryOp { left, op, right } => {
                let l = self.expr(left, mode)?;
                let r = self.expr(right, mode)?;
                self.binary(l, op, r, span)
            }
            sql::Expr::IsNull(inner) | sql::Expr::IsNotNull(inner) => {
                let t = self.expr(inner, mode)?;
                Ok(Typed {
                    ex: Ex::IsNull {
                        expr: Box::new(t.ex),
                        negated: matches!(e, sql::Expr::IsNotNull(_)),
                    },
                    ty: Ty::Bool,
                    span,
                })
            }
            sql::Expr::IsTrue(inner)
            | sql::Expr::IsFalse(inner)
            | sql::Expr::IsNotTrue(inner)
            | sql::Expr::IsNotFalse(inner) => {
                let t = self.expr(inner, mode)?;
                check_condition(&t, "IS TRUE/FALSE")?;
                let want = matches!(e, sql::Expr::IsTrue(_) | sql::Expr::IsNotTrue(_));
                let negated = matches!(e, sql::Expr::IsNotTrue(_) | sql::Expr::IsNotFalse(_));
                // `x IS TRUE` is never null: false when x is null.
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
                Ok(Typed {
                    ex: if negated {
                        Ex::Not(Box::new(test))
                    } else {
                        test
                    },
                    ty: Ty::Bool,
                    span,
                })
            }
            sql::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.expr(expr, mode)?;
                let lo = self.expr(low, mode)?;
                let hi = self.expr(high, mode)?;
                let ge = self.compare(x.clone(), CmpOp::GtEq, lo)?;
                let le = self.compare(x, CmpOp::LtEq, hi)?;
                let both = Ex::And(Box::new(ge), Box::new(le));
                Ok(Typed {
                    ex: if *negated {
                        Ex::Not(Box::new(both))
                    } else {
                        both
                    },
                    ty: Ty::Bool,
                    span,
                })
            }
            sql::Expr::In {
                expr,
                target: sql::InTarget::List(list),
                negated,
                global: false,
            } => {
                let x = self.expr(expr, mode)?;
                let mut out = Vec::with_capacity(list.len());
                for item in list {
                    let t = self.expr(item, mode)?;
                    // Type-check as `x = item`; keep the (possibly converted) item.
                    match self.compare(x.clone(), CmpOp::Eq, t)? {
                        Ex::Cmp(_, _, r) => out.push(*r),
                        _ => unreachable!("compare builds a comparison"),
                    }
                }
                Ok(Typed {
                    ex: Ex::In {
                        expr: Box::new(x.ex),
                        list: out,
                        negated: *negated,
                    },
                    ty: Ty::Bool,
                    span,
                })
            }
            sql::Expr::In {
                target: sql::InTarget::Subquery(_),
                ..
            }
            | sql::Expr::Subquery(_)
            | sql::Expr::Exists { .. } => Err(unsupported("subqueries", span)),
            sql::Expr::In { .. } => Err(unsupported("this form of IN (only lists)", span)),
            sql::Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(unsupported("LIKE ANY", span));
                }
                let x = self.expr(expr, mode)?;
                let p = self.expr(pattern, mode)?;
                let escape = match escape_char.as_deref() {
                    None => Some('\\'),
                    Some(sql::Expr::Value(v)) => match &v.value {
                        sql::Value::SingleQuotedString(s) if s.chars().count() == 1 => {
                            s.chars().next()
                        }
                        sql::Value::SingleQuotedString(s) if s.is_empty() => None,
                        _ => {
                            return Err(type_error(
                                "ESCAPE needs a single character, such as '!'",
                                v.span,
                            ))
                        }
                    },
                    Some(other) => {
                        return Err(type_error(
                            "ESCAPE needs a single character, such as '!'",
                            other.span(),
                        ))
                    }
                };
                let text = pattern_text(&x, &p, "LIKE")?;
                Ok(Typed {
                    ex: Ex::Match {
                        expr: Box::new(x.ex),
                        pattern: Pattern::like_with_escape(&text, escape),
                        negated: *negated,
                    },
                    ty: Ty::Bool,
                    span,
                })
            }
            sql::Expr::ILike { .. } => Err(unsupported(
                "ILIKE (tag names are case-sensitive; use LIKE)",
                span,
            )),
            sql::Expr::SimilarTo { .. } | sql::Expr::RLike { .. } => Err(unsupported(
                "regular expressions (use LIKE or glob())",
                span,
            )),
            sql::Expr::Function(f) => self.function(f, mode, span),
            sql::Expr::Case { .. } => Err(unsupported("CASE", span)),
            sql::Expr::Cast { .. } => Err(unsupported("CAST", span)),
            sql::Expr::Wildcard(_) | sql::Expr::QualifiedWildcard(..) => {
                Err(unsupported("* inside an expression", span))
            }
            other => {
                let text = other.to_string();
                let short: String = text.chars().take(40).collect();
                Err(unsupported(format!("the expression `{short}`"), span))
            }
        }
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

    fn function(&self, f: &sql::Function, mode: &mut Mode, span: Span) -> Result<Typed> {
        let name = function_name(f);
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
        let mut star = false;
        let args: Vec<&sql::Expr> = match &f.args {
            sql::FunctionArguments::None => Vec::new(),
            sql::FunctionArguments::Subquery(_) => return Err(unsupported("subqueries", span)),
            sql::FunctionArguments::List(l) => {
                if l.duplicate_treatment == Some(sql::DuplicateTreatment::Distinct) {
                    return Err(unsupported(format!("DISTINCT inside {name}()"), span));
                }
                if !l.clauses.is_empty() {
                    return Err(unsupported(format!("clauses inside {name}()"), span));
                }
                let mut out = Vec::new();
                for a in &l.args {
                    match a {
                        sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(e)) => out.push(e),
                        sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Wildcard)
                            if name == "count" && l.args.len() == 1 =>
                        {
                            star = true
                        }
                        _ => return Err(unsupported(format!("this argument of {name}()"), span)),
                    }
                }
                out
            }
        };
        let arity = |n: usize, example: &str| -> Result<()> {
            if args.len() == n && !star {
                Ok(())
            } else {
                Err(type_error(
                    format!(
                        "{name}() takes {n} argument{}, as in {example}",
                        if n == 1 { "" } else { "s" }
                    ),
                    span,
                ))
            }
        };
        if AGGREGATES.contains(&name.as_str()) {
            let Mode::Agg { aggs, key_tys, .. } = mode else {
                let clause = match mode {
                    Mode::Scalar(c) => *c,
                    Mode::Agg { .. } => unreachable!(),
                };
                return Err(QueryError::at(
                    ErrorKind::Unsupported,
                    format!("aggregate {name}() is not allowed in {clause}"),
                    span,
                ));
            };
            let (spec, ty) = if star {
                (
                    AggSpec {
                        func: AggFn::CountStar,
                        arg: None,
                    },
                    Ty::Int,
                )
            } else {
                arity(1, &format!("{name}(value)"))?;
                let arg = self.expr(args[0], &mut Mode::Scalar("an aggregate's argument"))?;
                let func = match name.as_str() {
                    "count" => AggFn::Count,
                    "avg" => AggFn::Avg,
                    "sum" => AggFn::Sum,
                    "min" => AggFn::Min,
                    "max" => AggFn::Max,
                    "first" => AggFn::First,
                    _ => AggFn::Last,
                };
                let ty = match func {
                    AggFn::Count | AggFn::CountStar => Ty::Int,
                    AggFn::Avg | AggFn::Sum => {
                        if !matches!(arg.ty, Ty::Int | Ty::Float | Ty::Any | Ty::Null) {
                            return Err(type_error(
                                format!(
                                    "{name}() needs numbers, but {} is a {}",
                                    args[0],
                                    arg.ty.name()
                                ),
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
                };
                (
                    AggSpec {
                        func,
                        arg: Some(arg.ex),
                    },
                    ty,
                )
            };
            let n_keys = key_tys.len();
            let i = match aggs.iter().position(|(a, _)| *a == spec) {
                Some(i) => i,
                None => {
                    aggs.push((spec, ty));
                    aggs.len() - 1
                }
            };
            return Ok(Typed {
                ex: Ex::Slot(n_keys + i),
                ty,
                span,
            });
        }
        match name.as_str() {
            "now" | "current_timestamp" => {
                arity(0, "now()")?;
                Ok(Typed {
                    ex: Ex::Now,
                    ty: Ty::Timestamp,
                    span,
                })
            }
            "time_bucket" => {
                arity(2, "time_bucket(INTERVAL '1 minute', ts)")?;
                let w = self.expr(args[0], mode)?;
                let width = match (&w.ex, w.ty) {
                    (Ex::Lit(Cell::Int(us)), Ty::Interval) if *us > 0 => *us,
                    _ => {
                        return Err(type_error(
                            "time_bucket() needs a positive interval first, such as INTERVAL '1 minute'",
                            w.span,
                        ))
                    }
                };
                let t = self.expr(args[1], mode)?;
                if !matches!(t.ty, Ty::Timestamp | Ty::Null) {
                    return Err(type_error(
                        format!("time_bucket() needs a timestamp second, not a {}", t.ty.name()),
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
            "glob" => {
                arity(2, "glob(tag, 'line1/*/temperature')")?;
                let x = self.expr(args[0], mode)?;
                let p = self.expr(args[1], mode)?;
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
            _ => Err(unsupported(
                format!(
                    "the function {name}() (functions: now, time_bucket, glob, and the aggregates {})",
                    AGGREGATES.join(", ")
                ),
                span,
            )),
        }
    }
}

fn check_condition(t: &Typed, word: &str) -> Result<()> {
    if matches!(t.ty, Ty::Bool | Ty::Any | Ty::Null) {
        Ok(())
    } else {
        Err(type_error(
            format!("{word} needs conditions, not a {}", t.ty.name()),
            t.span,
        ))
    }
}

fn pattern_text(x: &Typed, p: &Typed, what: &str) -> Result<String> {
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

fn arith_type(op: ArOp, l: Ty, r: Ty) -> Option<Ty> {
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

fn literal(v: &sql::Value, span: Span) -> Result<Typed> {
    let (cell, ty) = match v {
        sql::Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => (Cell::Int(i), Ty::Int),
            Err(_) => match n.parse::<f64>() {
                Ok(f) => (Cell::Float(f), Ty::Float),
                Err(_) => return Err(type_error(format!("'{n}' is not a number"), span)),
            },
        },
        sql::Value::SingleQuotedString(s) => (Cell::Text(s.clone()), Ty::Text),
        sql::Value::Boolean(b) => (Cell::Bool(*b), Ty::Bool),
        sql::Value::Null => (Cell::Null, Ty::Null),
        other => return Err(unsupported(format!("the literal {other}"), span)),
    };
    Ok(Typed {
        ex: Ex::Lit(cell),
        ty,
        span,
    })
}

/// RFC 3339 (`2026-11-28T10:00:00Z`, `...+01:00`, a space instead of `T`)
/// or a bare date (midnight UTC), to microseconds since the epoch.
pub(crate) fn parse_timestamp(s: &str, span: Span) -> Result<i64> {
    let t = s.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .or_else(|| chrono::DateTime::parse_from_rfc3339(&t.replacen(' ', "T", 1)).ok())
        .map(|d| d.timestamp_micros())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().timestamp_micros())
        });
    parsed.ok_or_else(|| {
        type_error(
            format!(
                "'{s}' is not an RFC 3339 timestamp (write e.g. '2026-11-28T10:00:00Z' or '2026-11-28T10:00:00+01:00')"
            ),
            span,
        )
    })
}

fn unit_us(unit: &str) -> Option<f64> {
    let u = unit.to_ascii_lowercase();
    let u = u.as_str();
    Some(match u {
        "us" | "usec" | "usecs" | "microsecond" | "microseconds" => 1.0,
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1e3,
        "s" | "sec" | "secs" | "second" | "seconds" => 1e6,
        "m" | "min" | "mins" | "minute" | "minutes" => 60e6,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600e6,
        "d" | "day" | "days" => 86_400e6,
        "w" | "week" | "weeks" => 7.0 * 86_400e6,
        _ => return None,
    })
}

const INTERVAL_HINT: &str =
    "write e.g. INTERVAL '90 seconds', '5 minutes', '1 hour', '2 days' or '1 hour 30 minutes'";

/// An interval in microseconds.
fn interval(i: &sql::Interval, span: Span) -> Result<i64> {
    if i.last_field.is_some() {
        return Err(unsupported("intervals with TO", span));
    }
    let text = match i.value.as_ref() {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::SingleQuotedString(s) => s.clone(),
            sql::Value::Number(n, _) => n.clone(),
            _ => return Err(type_error(INTERVAL_HINT, span)),
        },
        _ => return Err(type_error(INTERVAL_HINT, span)),
    };
    let total: f64 = match &i.leading_field {
        Some(field) => {
            let unit = match field {
                sql::DateTimeField::Week(_) => "week".to_string(),
                other => other.to_string(),
            };
            let per =
                unit_us(&unit).ok_or_else(|| unsupported(format!("intervals in {unit}"), span))?;
            let n: f64 = text
                .trim()
                .parse()
                .map_err(|_| type_error(format!("interval '{text}': {INTERVAL_HINT}"), span))?;
            n * per
        }
        None => {
            let words: Vec<&str> = text.split_whitespace().collect();
            if words.is_empty() || words.len() & 1 == 1 {
                // Also accept `90s`, `5min` written without a space.
                let split = text
                    .trim()
                    .find(|c: char| c.is_ascii_alphabetic())
                    .map(|at| text.trim().split_at(at));
                match split {
                    Some((n, u)) if words.len() == 1 => {
                        let n: f64 = n.parse().map_err(|_| {
                            type_error(format!("interval '{text}': {INTERVAL_HINT}"), span)
                        })?;
                        n * unit_us(u).ok_or_else(|| {
                            type_error(
                                format!("interval '{text}': unknown unit '{u}'; {INTERVAL_HINT}"),
                                span,
                            )
                        })?
                    }
                    _ => {
                        return Err(type_error(
                            format!("interval '{text}': {INTERVAL_HINT}"),
                            span,
                        ))
                    }
                }
            } else {
                let mut sum = 0.0;
                for pair in words.chunks(2) {
                    let n: f64 = pair[0].parse().map_err(|_| {
                        type_error(format!("interval '{text}': {INTERVAL_HINT}"), span)
                    })?;
                    let per = unit_us(pair[1]).ok_or_else(|| {
                        type_error(
                            format!(
                                "interval '{text}': unknown unit '{}'; {INTERVAL_HINT}",
                                pair[1]
                            ),
                            span,
                        )
                    })?;
                    sum += n * per;
                }
                sum
            }
        }
    };
    if !total.is_finite() || total.abs() >= i64::MAX as f64 {
        return Err(type_error(
            format!("interval '{text}' is out of range"),
            span,
        ));
    }
    Ok(total.round() as i64)
}
