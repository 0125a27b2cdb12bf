//! JSON of the HTTP side: readings as the WebSocket and `/api/current`
//! show them, tags, devices, query cells and values a page sends. The one
//! place where a node's types become the web's JSON (and back, for a
//! written value).

use bifrost_model::{Device, Tag, Value};
use bifrost_proto::v1 as pb;
use serde_json::{json, Value as Json};

/// A reading: `{"tag", "ts", "value", "quality", "reason"?, "revision", "id"}`.
pub fn reading(r: &bifrost_storage::Reading) -> Json {
    let mut v = json!({
        "tag": r.tag,
        "ts": ts(r.ts_us),
        "value": r.value.as_ref().map_or(Json::Null, value),
        "quality": r.quality.level.as_str(),
        "revision": r.revision,
        "id": r.id,
    });
    if !r.quality.reason.is_empty() {
        v["reason"] = r.quality.reason.clone().into();
    }
    v
}

/// A value as JSON: a bool, a number or a string (a float that JSON cannot
/// hold, NaN or infinite, as null).
pub fn value(v: &Value) -> Json {
    match v {
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Text(t) => t.clone().into(),
    }
}

/// A value a page sent (a write), as the gRPC value: numbers with a
/// fraction as floats, whole ones as integers (the node coerces them to
/// the tag's type, refusing what does not fit).
pub fn value_from(v: &Json) -> Result<pb::Value, String> {
    use pb::value::Kind;
    let kind = match v {
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntValue(i),
            None => Kind::FloatValue(n.as_f64().ok_or("a number out of range")?),
        },
        Json::String(s) => Kind::StringValue(s.clone()),
        other => {
            return Err(format!(
                "a value must be a bool, a number or a string, not {other}"
            ))
        }
    };
    Ok(pb::Value { kind: Some(kind) })
}

/// RFC 3339 with microseconds, UTC.
pub fn ts(us: i64) -> String {
    bifrost_model::time::format_rfc3339_us(us).unwrap_or_else(|| us.to_string())
}

/// A tag as the tag browser shows it; `can_write` is whether this caller
/// may write it, `owner` the node polling its device.
pub fn tag(t: &Tag, device: Option<&Device>, owner: Option<u64>, can_write: bool) -> Json {
    json!({
        "name": t.name,
        "device": t.device,
        "owner": owner,
        "data_type": t.data_type.to_string(),
        "units": t.units,
        "description": t.description,
        "writable": t.writable,
        "can_write": t.writable && can_write,
        "stale_after_ms": stale_after_ms(t, device),
    })
}

/// When a tag's value counts as stale: three of its poll periods (its
/// scan rate, else its device's interval), and never under 3 s.
pub fn stale_after_ms(t: &Tag, device: Option<&Device>) -> u64 {
    let period = match t.scan_rate_ms {
        0 => device.map_or(1_000, |d| d.poll_interval_ms),
        ms => ms,
    };
    (period.saturating_mul(3)).max(3_000)
}

/// A query's cell.
pub fn cell(c: &pb::Cell) -> Json {
    use pb::cell::Kind;
    match &c.kind {
        None => Json::Null,
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::IntValue(i)) => (*i).into(),
        Some(Kind::FloatValue(f)) => {
            serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number)
        }
        Some(Kind::TextValue(t)) => t.clone().into(),
        Some(Kind::TimestampUs(us)) => ts(*us).into(),
    }
}

/// A query column: `{"name", "type"}`.
pub fn column(c: &pb::Column) -> Json {
    let ty = match pb::ColumnType::try_from(c.r#type).unwrap_or(pb::ColumnType::Any) {
        pb::ColumnType::Any => "any",
        pb::ColumnType::Bool => "bool",
        pb::ColumnType::Int => "int",
        pb::ColumnType::Float => "float",
        pb::ColumnType::Text => "text",
        pb::ColumnType::Timestamp => "timestamp",
    };
    json!({"name": c.name, "type": ty})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_values_keep_their_kind_and_bad_ones_say_what_they_are() {
        use pb::value::Kind;
        let k = |v: Json| value_from(&v).unwrap().kind.unwrap();
        assert_eq!(k(json!(true)), Kind::BoolValue(true));
        assert_eq!(k(json!(42)), Kind::IntValue(42));
        assert_eq!(k(json!(42.5)), Kind::FloatValue(42.5));
        assert_eq!(k(json!("on")), Kind::StringValue("on".into()));
        let e = value_from(&json!([1])).unwrap_err();
        assert!(e.contains("[1]"), "{e}");
        assert!(value_from(&Json::Null).is_err());
    }

    #[test]
    fn staleness_follows_the_poll_period() {
        let mut t = Tag::new("a/b", "plc", "40001", bifrost_model::DataType::F64);
        let mut d = Device::new("plc", bifrost_model::Protocol::ModbusTcp, "127.0.0.1:502");
        d.poll_interval_ms = 5_000;
        assert_eq!(stale_after_ms(&t, Some(&d)), 15_000);
        t.scan_rate_ms = 200;
        assert_eq!(stale_after_ms(&t, Some(&d)), 3_000);
        t.scan_rate_ms = 0;
        assert_eq!(stale_after_ms(&t, None), 3_000);
    }
}
