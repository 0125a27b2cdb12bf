//! The front half of the engine: from SQL text to a checked [`Plan`].
//!
//! `sqlparser` builds the syntax tree; [`compile`] checks it against the
//! supported subset and the table [`catalog`], resolves every name, parses
//! literals and times ([`literal`]) and type-checks expressions
//! ([`expr`], [`function`]), so every error that depends only on the text is
//! reported here with its position, before anything is read. Nothing here
//! reads data or knows how it is stored.

pub(crate) mod catalog;
mod expr;
mod function;
mod literal;
pub(crate) mod plan;
mod select;

use sqlparser::ast::{self as sql, Spanned};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Span;

pub(crate) use catalog::{col, Table};
pub(crate) use plan::Plan;

use crate::error::{unsupported, ErrorKind, QueryError, Result};
use catalog::Ty;
use plan::Ex;

/// A compiled expression with its static type and where it was written.
#[derive(Clone, Debug)]
struct Typed {
    ex: Ex,
    ty: Ty,
    span: Span,
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
        sql::Statement::Query(q) => select::compile_query(q),
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
