//! Query errors: a kind, a message, and where in the query text.

use std::fmt;

use sqlparser::tokenizer::Span;

use crate::store::StoreError;

/// What kind of error a query met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not SQL (from sqlparser).
    Syntax,
    UnknownTable,
    UnknownColumn,
    /// An operand or argument of the wrong type.
    Type,
    /// Valid SQL outside the supported subset.
    Unsupported,
    /// A scan or row limit was reached.
    Limit,
    /// The deadline passed.
    Timeout,
    /// The storage engine failed (not the query's fault).
    Storage,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax error",
            ErrorKind::UnknownTable => "unknown table",
            ErrorKind::UnknownColumn => "unknown column",
            ErrorKind::Type => "type error",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Limit => "limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Storage => "storage error",
        }
    }
}

/// Why a query failed, and where in its text when that is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
    /// 1-based line of the offending part of the query.
    pub line: Option<u64>,
    /// 1-based column (in characters) of the offending part of the query.
    pub column: Option<u64>,
}

impl QueryError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> QueryError {
        QueryError {
            kind,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    /// An error at the start of `span` (sqlparser leaves some spans empty:
    /// then the position is unknown).
    pub(crate) fn at(kind: ErrorKind, message: impl Into<String>, span: Span) -> QueryError {
        let mut e = QueryError::new(kind, message);
        if span.start.line > 0 {
            e.line = Some(span.start.line);
            e.column = Some(span.start.column);
        }
        e
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " at line {l}, column {c}"),
            (Some(l), None) => write!(f, " at line {l}"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for QueryError {}

impl From<StoreError> for QueryError {
    fn from(e: StoreError) -> QueryError {
        QueryError::new(ErrorKind::Storage, e.0)
    }
}

pub(crate) type Result<T> = std::result::Result<T, QueryError>;

/// An unsupported construct, named, at its position.
pub(crate) fn unsupported(what: impl fmt::Display, span: Span) -> QueryError {
    QueryError::at(
        ErrorKind::Unsupported,
        format!("{what} is not supported"),
        span,
    )
}

pub(crate) fn type_error(msg: impl Into<String>, span: Span) -> QueryError {
    QueryError::at(ErrorKind::Type, msg, span)
}
