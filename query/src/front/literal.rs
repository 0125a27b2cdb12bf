//! Literals: numbers, text, booleans, timestamps (RFC 3339 or a bare date)
//! and intervals (`'1 hour 30 minutes'`, `'5' MINUTE`), all parsed at
//! compile time.

use sqlparser::ast as sql;
use sqlparser::tokenizer::Span;

use super::catalog::Ty;
use super::plan::Ex;
use super::Typed;
use crate::cell::Cell;
use crate::error::{type_error, unsupported, Result};

pub(super) fn literal(v: &sql::Value, span: Span) -> Result<Typed> {
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
pub(super) fn interval(i: &sql::Interval, span: Span) -> Result<i64> {
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
    let total = match &i.leading_field {
        Some(field) => interval_in_field(&text, field, span)?,
        None => interval_words(&text, span)?,
    };
    if !total.is_finite() || total.abs() >= i64::MAX as f64 {
        return Err(type_error(
            format!("interval '{text}' is out of range"),
            span,
        ));
    }
    Ok(total.round() as i64)
}

fn bad_interval(text: &str, span: Span) -> crate::QueryError {
    type_error(format!("interval '{text}': {INTERVAL_HINT}"), span)
}

/// `INTERVAL '5' MINUTE`: a number in the unit of the field.
fn interval_in_field(text: &str, field: &sql::DateTimeField, span: Span) -> Result<f64> {
    let unit = match field {
        sql::DateTimeField::Week(_) => "week".to_string(),
        other => other.to_string(),
    };
    let per = unit_us(&unit).ok_or_else(|| unsupported(format!("intervals in {unit}"), span))?;
    let n: f64 = text.trim().parse().map_err(|_| bad_interval(text, span))?;
    Ok(n * per)
}

/// `'1 hour 30 minutes'`: number and unit pairs, summed; also one
/// number with its unit written without a space (`'90s'`, `'5min'`).
fn interval_words(text: &str, span: Span) -> Result<f64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() == 1 {
        let split = text
            .trim()
            .find(|c: char| c.is_ascii_alphabetic())
            .map(|at| text.trim().split_at(at));
        if let Some((n, u)) = split {
            return amount_in_unit(text, n, u, span);
        }
    }
    if words.is_empty() || words.len() % 2 == 1 {
        return Err(bad_interval(text, span));
    }
    words
        .chunks(2)
        .map(|pair| amount_in_unit(text, pair[0], pair[1], span))
        .sum()
}

/// `n` units of `unit`, in microseconds; `text` is the whole interval, for errors.
fn amount_in_unit(text: &str, n: &str, unit: &str, span: Span) -> Result<f64> {
    let n: f64 = n.parse().map_err(|_| bad_interval(text, span))?;
    let per = unit_us(unit).ok_or_else(|| {
        type_error(
            format!("interval '{text}': unknown unit '{unit}'; {INTERVAL_HINT}"),
            span,
        )
    })?;
    Ok(n * per)
}
