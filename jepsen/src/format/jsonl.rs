//! Our harness's history format: one JSON object per line.
//!
//! ```text
//! {"process":3,"type":"invoke","f":"cas","key":"k","value":[1,2],"time":123456}
//! {"process":3,"type":"ok","f":"cas","key":"k","value":[1,2],"time":125001}
//! ```
//!
//! - `process` (required): the client process, a non-negative integer. A
//!   process runs one operation at a time; after an `info` it may go on.
//! - `type` (required): `invoke`, `ok`, `fail` or `info` (see
//!   [`crate::history`] for what they promise).
//! - `f` (required): `read`, `write`, `cas` (register) or `get`, `put`,
//!   `append` (key-value map).
//! - `key` (optional, default `""`): the object the operation is on. Every
//!   key is an independent register (or map entry).
//! - `value` (optional, default `null`): `null`, an integer, a string, or an
//!   array of those. The argument on `invoke` (`[old, new]` for `cas`), the
//!   result on `ok` (the value a `read` returned). Ignored on `fail` and
//!   `info`.
//! - `time` (optional): a monotonic timestamp, in nanoseconds by convention.
//!   Either every line has one or none does (then the line order is the
//!   time order). Events with equal times are taken as concurrent.
//!
//! Other fields (`node`, `error`, ...) are ignored, so the harness can add
//! what helps a human read the file.

use serde::{Deserialize, Serialize};

use super::{completion_value, RawEvent};
use crate::history::{Event, EventType, Function, Value};

#[derive(Deserialize, Serialize)]
struct Record {
    process: u64,
    #[serde(rename = "type")]
    kind: String,
    f: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
}

pub(crate) fn parse_line(line: &str) -> Result<RawEvent, String> {
    let r: Record = serde_json::from_str(line).map_err(|e| format!("invalid JSON event: {e}"))?;
    let kind = EventType::parse(&r.kind).ok_or_else(|| {
        format!(
            "unknown type {:?} (expected invoke, ok, fail or info)",
            r.kind
        )
    })?;
    let f = Function::parse(&r.f).ok_or_else(|| {
        format!(
            "unknown function {:?} (expected read, write, cas, get, put or append)",
            r.f
        )
    })?;
    let value = completion_value(kind, from_json(&r.value))?;
    Ok(RawEvent {
        event: Event {
            process: r.process,
            kind,
            f,
            key: r.key,
            value,
            time: 0,
            line: 0,
        },
        time: r.time,
    })
}

fn from_json(v: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Nil,
        J::Number(n) => Value::Int(
            n.as_i64()
                .ok_or_else(|| format!("value {n} is not a 64-bit integer"))?,
        ),
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::List(items.iter().map(from_json).collect::<Result<_, _>>()?),
        J::Bool(_) | J::Object(_) => {
            return Err(format!(
                "unsupported value {v} (expected null, an integer, a string or an array)"
            ))
        }
    })
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Int(i) => (*i).into(),
        Value::Str(s) => s.clone().into(),
        Value::List(items) => items.iter().map(to_json).collect(),
    }
}

/// Writes one event as a line of this format (without the newline). The
/// time is always written.
pub fn to_line(e: &Event) -> String {
    let r = Record {
        process: e.process,
        kind: e.kind.as_str().to_string(),
        f: e.f.as_str().to_string(),
        key: e.key.clone(),
        value: to_json(&e.value),
        time: Some(e.time),
    };
    serde_json::to_string(&r).expect("a record always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;

    #[test]
    fn the_documented_example_parses_and_round_trips() {
        let line =
            r#"{"process":3,"type":"invoke","f":"cas","key":"k","value":[1,2],"time":123456}"#;
        let h = Format::Jsonl.parse(line).unwrap();
        let e = &h.events[0];
        assert_eq!(
            (e.process, e.kind, e.f, e.time),
            (3, EventType::Invoke, Function::Cas, 123456)
        );
        assert_eq!(e.value, Value::List(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(to_line(e), line);
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |l: &str| Format::Jsonl.parse(l).unwrap_err().to_string();
        assert!(err(r#"{"process":1,"type":"invoke"}"#).contains("missing field `f`"));
        assert!(err(r#"{"process":1,"type":"begin","f":"read"}"#).contains("unknown type"));
        assert!(err(r#"{"process":1,"type":"invoke","f":"incr"}"#).contains("unknown function"));
        assert!(
            err(r#"{"process":1,"type":"invoke","f":"write","value":1.5}"#)
                .contains("not a 64-bit integer")
        );
        assert!(err("not json").starts_with("line 1: invalid JSON"));
    }

    #[test]
    fn info_values_are_informational() {
        let h = Format::Jsonl
            .parse(r#"{"process":1,"type":"info","f":"write","value":{"error":"timeout"}}"#)
            .unwrap();
        assert_eq!(h.events[0].value, Value::Nil);
    }
}
