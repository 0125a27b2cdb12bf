//! Readings as JSON, both ways.
//!
//! Input (`bifrostctl ingest`) is JSON lines, one reading per line:
//!
//! ```text
//! {"id": "gw1-000042", "tag": "line1/press3/temperature", "ts": "2024-05-01T12:00:00Z", "value": 71.5, "quality": "good"}
//! {"id": "gw1-000043", "tag": "line1/press3/running", "ts": "2024-05-01T12:00:00Z", "value": null, "quality": "bad:comm_failure"}
//! ```
//!
//! `value` is a number, bool, string or null (or absent, meaning null);
//! `quality` is `good`, `uncertain` or `bad` (absent means `good`), with an
//! optional reason either after a colon or in a separate `reason` field.
//! Unknown fields are errors, so a misspelt `"vaule"` is caught instead of
//! silently storing a null. A JSON integer is stored as an integer, any
//! other number as a float.
//!
//! Output (`get`, `history`) is one object per reading:
//! `{"tag", "ts", "value", "quality", "reason"?, "revision"}` with `ts` in
//! RFC 3339 UTC with microseconds and `reason` only when not empty.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use bifrost_model as model;
use bifrost_proto::convert;

use crate::proto::{value::Kind, Quality, Reading, Value};
use crate::time::{format_ts_us, parse_rfc3339};
use crate::{Error, Result};

/// The JSON output shape of one reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingJson {
    pub tag: String,
    /// Source timestamp, RFC 3339 UTC with microseconds.
    pub ts: String,
    /// Number, bool, string, or null when the reading carries no value.
    pub value: Json,
    /// `good`, `uncertain` or `bad`.
    pub quality: String,
    /// Why the quality is not good; omitted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Cluster-wide revision at which the reading was committed.
    pub revision: u64,
}

impl From<&Reading> for ReadingJson {
    fn from(r: &Reading) -> Self {
        let q = r.quality.clone().unwrap_or_default();
        ReadingJson {
            tag: r.tag.clone(),
            ts: format_ts_us(r.ts_us),
            value: value_to_json(r.value.as_ref()),
            quality: quality_name(q.level),
            reason: (!q.reason.is_empty()).then_some(q.reason),
            revision: r.revision,
        }
    }
}

/// A reading as a JSON object in the output shape.
pub fn reading_to_json(r: &Reading) -> Json {
    serde_json::to_value(ReadingJson::from(r)).expect("plain struct serializes")
}

/// A reading as one line of JSON (no trailing newline).
pub fn reading_to_json_line(r: &Reading) -> String {
    serde_json::to_string(&ReadingJson::from(r)).expect("plain struct serializes")
}

/// The JSON form of a value; non-finite floats have none and become null.
pub fn value_to_json(v: Option<&Value>) -> Json {
    match v.and_then(|v| v.kind.as_ref()) {
        None => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::IntValue(i)) => Json::from(*i),
        Some(Kind::FloatValue(f)) => Json::from(*f),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
    }
}

/// The text form of a value for tables: like JSON, but strings unquoted and
/// no value as `-`.
pub fn value_to_text(v: Option<&Value>) -> String {
    match v.and_then(|v| v.kind.as_ref()) {
        None => "-".to_string(),
        Some(Kind::StringValue(s)) => s.clone(),
        Some(_) => value_to_json(v).to_string(),
    }
}

/// Lowercase name of a quality level (`good`, `uncertain`, `bad`).
pub fn quality_name(level: i32) -> String {
    match convert::quality_level_from_pb(level) {
        Some(l) => l.as_str().to_string(),
        None => format!("unknown({level})"),
    }
}

/// Parses `good`, `uncertain`, `bad`, optionally followed by `:reason`.
pub fn parse_quality(s: &str) -> std::result::Result<Quality, String> {
    let (level, reason) = match s.split_once(':') {
        Some((l, r)) => (l, r),
        None => (s, ""),
    };
    let Some(level) = model::QualityLevel::parse(&level.trim().to_ascii_lowercase()) else {
        return Err(format!(
            "quality {s:?} is not good, uncertain or bad (optionally with :reason)"
        ));
    };
    if s.contains(':') && reason.trim().is_empty() {
        return Err(format!("quality {s:?} has an empty reason after ':'"));
    }
    Ok(convert::quality_to_pb(model::Quality {
        level,
        reason: reason.trim().to_string(),
    }))
}

const FIELDS: &str = "id, tag, ts, value, quality, reason";

/// Parses one line of JSON-lines input. Blank lines give `Ok(None)`;
/// `line_no` (from 1) only labels errors.
pub fn parse_reading_line(line: &str, line_no: usize) -> Result<Option<Reading>> {
    let bad = |reason: String| Error::InvalidLine {
        line: line_no,
        reason,
    };
    if line.trim().is_empty() {
        return Ok(None);
    }
    let obj: Map<String, Json> = match serde_json::from_str::<Json>(line) {
        Ok(Json::Object(m)) => m,
        Ok(other) => {
            return Err(bad(format!(
                "expected a JSON object, found {}",
                json_kind(&other)
            )))
        }
        Err(e) => return Err(bad(format!("not valid JSON: {e}"))),
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !FIELDS.split(", ").any(|f| f == k.as_str()))
    {
        return Err(bad(format!("unknown field {k:?} (expected {FIELDS})")));
    }

    let text_field = |name: &str| -> Result<String> {
        match obj.get(name) {
            None | Some(Json::Null) => Err(bad(format!("missing field {name:?}"))),
            Some(Json::String(s)) if s.trim().is_empty() => {
                Err(bad(format!("field {name:?} is empty")))
            }
            Some(Json::String(s)) => Ok(s.clone()),
            Some(other) => Err(bad(format!(
                "field {name:?} must be a string, found {}",
                json_kind(other)
            ))),
        }
    };
    let id = text_field("id")?;
    let tag = text_field("tag")?;
    let ts_text = text_field("ts")?;
    let ts_us = parse_rfc3339(&ts_text).map_err(|e| bad(format!("field \"ts\": {e}")))?;

    let value = match obj.get("value") {
        None | Some(Json::Null) => None,
        Some(Json::Bool(b)) => Some(Kind::BoolValue(*b)),
        Some(Json::Number(n)) => Some(if let Some(i) = n.as_i64() {
            Kind::IntValue(i)
        } else if n.is_u64() {
            return Err(bad(format!(
                "field \"value\": integer {n} does not fit in i64"
            )));
        } else {
            Kind::FloatValue(
                n.as_f64()
                    .ok_or_else(|| bad(format!("field \"value\": {n}")))?,
            )
        }),
        Some(Json::String(s)) => Some(Kind::StringValue(s.clone())),
        Some(other) => {
            return Err(bad(format!(
                "field \"value\" must be a number, bool, string or null, found {}",
                json_kind(other)
            )))
        }
    };

    let mut quality = match obj.get("quality") {
        None | Some(Json::Null) => Quality::default(),
        Some(Json::String(s)) => {
            parse_quality(s).map_err(|e| bad(format!("field \"quality\": {e}")))?
        }
        Some(other) => {
            return Err(bad(format!(
                "field \"quality\" must be a string, found {}",
                json_kind(other)
            )))
        }
    };
    match obj.get("reason") {
        None | Some(Json::Null) => {}
        Some(Json::String(r)) if r.trim().is_empty() => {}
        Some(Json::String(r)) => {
            if !quality.reason.is_empty() && quality.reason != r.trim() {
                return Err(bad(format!(
                    "field \"reason\" ({r:?}) contradicts the reason in \"quality\" ({:?})",
                    quality.reason
                )));
            }
            quality.reason = r.trim().to_string();
        }
        Some(other) => {
            return Err(bad(format!(
                "field \"reason\" must be a string, found {}",
                json_kind(other)
            )))
        }
    }

    Ok(Some(Reading {
        id,
        tag,
        ts_us,
        value: value.map(|k| Value { kind: Some(k) }),
        quality: Some(quality),
        server_ts_us: 0,
        revision: 0,
    }))
}

/// Parses a whole JSON-lines input. Stops at the first bad line, so a caller
/// that parses before sending sends nothing from a malformed file.
pub fn parse_reading_lines(input: impl BufRead) -> Result<Vec<Reading>> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| Error::InvalidLine {
            line: i + 1,
            reason: e.to_string(),
        })?;
        if let Some(r) = parse_reading_line(&line, i + 1)? {
            out.push(r);
        }
    }
    Ok(out)
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::QualityLevel;
    use serde_json::json;

    fn parse(line: &str) -> Reading {
        parse_reading_line(line, 1).unwrap().unwrap()
    }

    fn err(line: &str, line_no: usize) -> String {
        match parse_reading_line(line, line_no) {
            Err(e @ Error::InvalidLine { .. }) => e.to_string(),
            other => panic!("expected InvalidLine for {line}, got {other:?}"),
        }
    }

    #[test]
    fn good_line_with_float_value() {
        let r = parse(
            r#"{"id": "a1", "tag": "line1/t", "ts": "2024-05-01T12:00:00.5Z", "value": 1.5, "quality": "good"}"#,
        );
        assert_eq!(r.id, "a1");
        assert_eq!(r.tag, "line1/t");
        assert_eq!(r.ts_us, 1_714_564_800_500_000);
        assert_eq!(r.value.unwrap().kind, Some(Kind::FloatValue(1.5)));
        assert_eq!(
            r.quality.unwrap(),
            Quality {
                level: QualityLevel::QualityGood as i32,
                reason: "".into()
            }
        );
    }

    #[test]
    fn value_kinds_map_to_the_api_value() {
        let base = r#""id":"x","tag":"t","ts":"2024-05-01T12:00:00Z""#;
        let kind = |v: &str| {
            parse(&format!("{{{base},\"value\":{v}}}"))
                .value
                .and_then(|v| v.kind)
        };
        assert_eq!(kind("42"), Some(Kind::IntValue(42)));
        assert_eq!(kind("-7"), Some(Kind::IntValue(-7)));
        assert_eq!(kind("42.0"), Some(Kind::FloatValue(42.0)));
        assert_eq!(kind("true"), Some(Kind::BoolValue(true)));
        assert_eq!(kind("\"open\""), Some(Kind::StringValue("open".into())));
        assert_eq!(kind("null"), None);
        // Absent value is null too.
        assert_eq!(parse(&format!("{{{base}}}")).value, None);
    }

    #[test]
    fn quality_reason_inline_or_separate() {
        let base = r#""id":"x","tag":"t","ts":"2024-05-01T12:00:00Z""#;
        let q = |extra: &str| parse(&format!("{{{base},{extra}}}")).quality.unwrap();
        let bad_comm = Quality {
            level: QualityLevel::QualityBad as i32,
            reason: "comm_failure".into(),
        };
        assert_eq!(q(r#""quality":"bad:comm_failure""#), bad_comm);
        assert_eq!(q(r#""quality":"bad","reason":"comm_failure""#), bad_comm);
        assert_eq!(
            q(r#""quality":"bad:comm_failure","reason":"comm_failure""#),
            bad_comm
        );
        assert_eq!(
            q(r#""quality":"uncertain""#).level,
            QualityLevel::QualityUncertain as i32
        );
        // Absent quality is good.
        assert_eq!(
            parse(&format!("{{{base}}}")).quality.unwrap().level,
            QualityLevel::QualityGood as i32
        );
    }

    #[test]
    fn blank_lines_are_skipped() {
        assert!(parse_reading_line("   ", 4).unwrap().is_none());
        let input =
            "\n{\"id\":\"a\",\"tag\":\"t\",\"ts\":\"2024-05-01T12:00:00Z\",\"value\":1}\n\n";
        assert_eq!(parse_reading_lines(input.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn each_kind_of_bad_line_names_its_line_and_problem() {
        let ts = r#""ts":"2024-05-01T12:00:00Z""#;
        let cases: Vec<(String, &str)> = vec![
            ("{not json".into(), "not valid JSON"),
            ("[1,2]".into(), "expected a JSON object, found an array"),
            (format!(r#"{{"tag":"t",{ts}}}"#), "missing field \"id\""),
            (format!(r#"{{"id":"a",{ts}}}"#), "missing field \"tag\""),
            (r#"{"id":"a","tag":"t"}"#.into(), "missing field \"ts\""),
            (
                format!(r#"{{"id":"","tag":"t",{ts}}}"#),
                "field \"id\" is empty",
            ),
            (
                format!(r#"{{"id":5,"tag":"t",{ts}}}"#),
                "field \"id\" must be a string, found a number",
            ),
            (
                r#"{"id":"a","tag":"t","ts":"yesterday"}"#.into(),
                "field \"ts\": invalid timestamp \"yesterday\"",
            ),
            (
                r#"{"id":"a","tag":"t","ts":1714564800}"#.into(),
                "field \"ts\" must be a string",
            ),
            (
                format!(r#"{{"id":"a","tag":"t",{ts},"value":[1]}}"#),
                "field \"value\" must be a number, bool, string or null, found an array",
            ),
            (
                format!(r#"{{"id":"a","tag":"t",{ts},"value":18446744073709551615}}"#),
                "does not fit in i64",
            ),
            (
                format!(r#"{{"id":"a","tag":"t",{ts},"quality":"ok"}}"#),
                "field \"quality\": quality \"ok\" is not good, uncertain or bad",
            ),
            (
                format!(r#"{{"id":"a","tag":"t",{ts},"quality":"bad:"}}"#),
                "empty reason",
            ),
            (
                format!(r#"{{"id":"a","tag":"t",{ts},"quality":2}}"#),
                "field \"quality\" must be a string",
            ),
            (
                format!(
                    r#"{{"id":"a","tag":"t",{ts},"quality":"bad:timeout","reason":"comm_failure"}}"#
                ),
                "contradicts",
            ),
            (
                format!(r#"{{"id":"a","tag":"t",{ts},"vaule":1}}"#),
                "unknown field \"vaule\"",
            ),
        ];
        for (i, (line, want)) in cases.iter().enumerate() {
            let line_no = 10 + i;
            let msg = err(line, line_no);
            assert!(msg.starts_with(&format!("line {line_no}: ")), "{msg}");
            assert!(msg.contains(want), "line {line}: {msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn bad_line_in_a_file_is_reported_with_its_number() {
        let input = concat!(
            "{\"id\":\"a\",\"tag\":\"t\",\"ts\":\"2024-05-01T12:00:00Z\",\"value\":1}\n",
            "\n",
            "{\"id\":\"b\",\"tag\":\"t\",\"ts\":\"2024-05-01T12:00:01Z\",\"value\":{}}\n",
        );
        let e = parse_reading_lines(input.as_bytes()).unwrap_err();
        match e {
            Error::InvalidLine { line, reason } => {
                assert_eq!(line, 3);
                assert!(reason.contains("\"value\""), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reading_json_shape() {
        let mut r = Reading {
            id: "ignored".into(),
            tag: "line1/t".into(),
            ts_us: 1_714_564_800_000_250,
            value: Some(Value {
                kind: Some(Kind::FloatValue(71.5)),
            }),
            quality: Some(Quality {
                level: QualityLevel::QualityGood as i32,
                reason: String::new(),
            }),
            server_ts_us: 5,
            revision: 42,
        };
        assert_eq!(
            reading_to_json(&r),
            json!({"tag": "line1/t", "ts": "2024-05-01T12:00:00.000250Z", "value": 71.5,
                   "quality": "good", "revision": 42})
        );
        assert_eq!(
            reading_to_json_line(&r),
            r#"{"tag":"line1/t","ts":"2024-05-01T12:00:00.000250Z","value":71.5,"quality":"good","revision":42}"#
        );

        r.value = None;
        r.quality = Some(Quality {
            level: QualityLevel::QualityBad as i32,
            reason: "comm_failure".into(),
        });
        assert_eq!(
            reading_to_json(&r),
            json!({"tag": "line1/t", "ts": "2024-05-01T12:00:00.000250Z", "value": null,
                   "quality": "bad", "reason": "comm_failure", "revision": 42})
        );
    }

    #[test]
    fn value_json_and_text_forms() {
        let v = |k: Kind| Some(Value { kind: Some(k) });
        assert_eq!(value_to_json(v(Kind::IntValue(-3)).as_ref()), json!(-3));
        assert_eq!(
            value_to_json(v(Kind::BoolValue(false)).as_ref()),
            json!(false)
        );
        assert_eq!(
            value_to_json(v(Kind::StringValue("a".into())).as_ref()),
            json!("a")
        );
        assert_eq!(
            value_to_json(v(Kind::FloatValue(f64::NAN)).as_ref()),
            Json::Null
        );
        assert_eq!(
            value_to_text(v(Kind::StringValue("a b".into())).as_ref()),
            "a b"
        );
        assert_eq!(value_to_text(v(Kind::FloatValue(2.5)).as_ref()), "2.5");
        assert_eq!(value_to_text(None), "-");
        assert_eq!(
            quality_name(QualityLevel::QualityUncertain as i32),
            "uncertain"
        );
        assert_eq!(quality_name(9), "unknown(9)");
    }

    #[test]
    fn parsed_line_round_trips_to_output_shape() {
        let r = parse(
            r#"{"id":"a","tag":"t","ts":"2024-05-01T12:00:00.000001Z","value":true,"quality":"uncertain:stale"}"#,
        );
        let out = ReadingJson::from(&r);
        assert_eq!(out.ts, "2024-05-01T12:00:00.000001Z");
        assert_eq!(out.value, json!(true));
        assert_eq!(out.quality, "uncertain");
        assert_eq!(out.reason.as_deref(), Some("stale"));
    }
}
