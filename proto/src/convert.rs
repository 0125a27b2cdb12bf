//! Conversions between the public API's messages (`bifrost.v1`) and the
//! model (`bifrost-model`), in one place for both ends: the server converts
//! requests to model records and records back to replies; `bifrostctl` and
//! the client library use the same functions for quality levels and values.
//!
//! They live here, beside the generated messages, because this is the one
//! crate that both sides already depend on and the only one allowed to know
//! prost: the model stays free of wire types (no prost, no tonic), and no
//! crate has to depend on `server` to read an API message. Only plain data
//! mapping and the API's defaults (`0` means "not given") belong here;
//! validation of the records is the model's.

use bifrost_model::{
    Assignment, DataType, Deadband, Device, Grant, Invalid, NewReading, Order, Quality,
    QualityLevel, Reading, Role, Scale, Tag, User, Value,
};

use crate::v1 as pb;

/// A device from the API. Zero interval or timeout means the default.
pub fn device_from_pb(d: pb::Device) -> Device {
    let or_default = |ms: u64| {
        if ms == 0 {
            Device::DEFAULT_INTERVAL_MS
        } else {
            ms
        }
    };
    Device {
        name: d.name,
        protocol: d.protocol,
        endpoint: d.endpoint,
        unit_id: d.unit_id,
        poll_interval_ms: or_default(d.poll_interval_ms),
        timeout_ms: or_default(d.timeout_ms),
        retries: d.retries,
        enabled: d.enabled,
        labels: d.labels.into_iter().collect(),
        revision: 0,
    }
}

pub fn device_to_pb(d: Device) -> pb::Device {
    pb::Device {
        name: d.name,
        protocol: d.protocol,
        endpoint: d.endpoint,
        unit_id: d.unit_id,
        poll_interval_ms: d.poll_interval_ms,
        timeout_ms: d.timeout_ms,
        retries: d.retries,
        enabled: d.enabled,
        labels: d.labels.into_iter().collect(),
        revision: d.revision,
    }
}

/// A tag from the API. An unknown data type or order names the tag.
pub fn tag_from_pb(t: pb::Tag) -> Result<Tag, Invalid> {
    let prefix = |e: Invalid| Invalid::new(format!("tag '{}': {}", t.name, e.message));
    Ok(Tag {
        id: 0,
        data_type: DataType::parse(&t.data_type).map_err(prefix)?,
        byte_order: Order::parse(&t.byte_order).map_err(prefix)?,
        word_order: Order::parse(&t.word_order).map_err(prefix)?,
        scale: t.scale.map(scale_from_pb),
        deadband: t.deadband.map(|d| Deadband {
            value: d.value,
            percent: d.percent,
        }),
        name: t.name,
        device: t.device,
        address: t.address,
        scan_rate_ms: t.scan_rate_ms,
        units: t.units,
        description: t.description,
        writable: t.writable,
        length: t.length,
        revision: 0,
    })
}

fn scale_from_pb(s: pb::Scale) -> Scale {
    Scale {
        raw_lo: s.raw_lo,
        raw_hi: s.raw_hi,
        eng_lo: s.eng_lo,
        eng_hi: s.eng_hi,
    }
}

pub fn tag_to_pb(t: Tag) -> pb::Tag {
    pb::Tag {
        name: t.name,
        device: t.device,
        address: t.address,
        data_type: t.data_type.as_str().into(),
        byte_order: t.byte_order.as_str().into(),
        word_order: t.word_order.as_str().into(),
        scale: t.scale.map(|s| pb::Scale {
            raw_lo: s.raw_lo,
            raw_hi: s.raw_hi,
            eng_lo: s.eng_lo,
            eng_hi: s.eng_hi,
        }),
        deadband: t.deadband.map(|d| pb::Deadband {
            value: d.value,
            percent: d.percent,
        }),
        scan_rate_ms: t.scan_rate_ms,
        units: t.units,
        description: t.description,
        writable: t.writable,
        length: t.length,
        revision: t.revision,
    }
}

/// An absent value, or one with no kind set, is no value.
pub fn value_from_pb(v: Option<pb::Value>) -> Option<Value> {
    use pb::value::Kind;
    match v?.kind? {
        Kind::BoolValue(b) => Some(Value::Bool(b)),
        Kind::IntValue(i) => Some(Value::Int(i)),
        Kind::FloatValue(f) => Some(Value::Float(f)),
        Kind::StringValue(s) => Some(Value::Text(s)),
    }
}

pub fn value_to_pb(v: Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Int(i) => Kind::IntValue(i),
        Value::Float(f) => Kind::FloatValue(f),
        Value::Text(s) => Kind::StringValue(s),
    };
    pb::Value { kind: Some(kind) }
}

/// The model's level of an API quality level; `None` for a number the API
/// does not define.
pub fn quality_level_from_pb(level: i32) -> Option<QualityLevel> {
    match pb::QualityLevel::try_from(level).ok()? {
        pb::QualityLevel::QualityGood => Some(QualityLevel::Good),
        pb::QualityLevel::QualityUncertain => Some(QualityLevel::Uncertain),
        pb::QualityLevel::QualityBad => Some(QualityLevel::Bad),
    }
}

pub fn quality_level_to_pb(level: QualityLevel) -> pb::QualityLevel {
    match level {
        QualityLevel::Good => pb::QualityLevel::QualityGood,
        QualityLevel::Uncertain => pb::QualityLevel::QualityUncertain,
        QualityLevel::Bad => pb::QualityLevel::QualityBad,
    }
}

pub fn quality_to_pb(q: Quality) -> pb::Quality {
    pb::Quality {
        level: quality_level_to_pb(q.level) as i32,
        reason: q.reason,
    }
}

/// Converts an ingested reading; `index` (1-based) names it in errors.
pub fn reading_from_pb(
    index: usize,
    r: pb::Reading,
    server_ts_us: i64,
) -> Result<NewReading, Invalid> {
    let q = r.quality.unwrap_or_default();
    let Some(level) = quality_level_from_pb(q.level) else {
        return Err(Invalid::new(format!(
            "reading {index} (id '{}'): unknown quality level {}",
            r.id, q.level
        )));
    };
    if r.tag.is_empty() {
        return Err(Invalid::new(format!(
            "reading {index} (id '{}'): tag is empty",
            r.id
        )));
    }
    Ok(NewReading {
        id: r.id,
        tag: r.tag,
        ts_us: r.ts_us,
        server_ts_us,
        value: value_from_pb(r.value),
        quality: Quality {
            level,
            reason: q.reason,
        },
    })
}

pub fn reading_to_pb(r: Reading) -> pb::Reading {
    pb::Reading {
        id: r.id,
        tag: r.tag,
        ts_us: r.ts_us,
        value: r.value.map(value_to_pb),
        quality: Some(quality_to_pb(r.quality)),
        server_ts_us: r.server_ts_us,
        revision: r.revision,
    }
}

/// Which node polls `device`.
/// A grant from the API: its role spelt in lower case, its globs checked.
pub fn grant_from_pb(g: pb::Grant) -> Result<Grant, Invalid> {
    let role: Role = g.role.parse().map_err(|e| Invalid::new(format!("{e}")))?;
    Grant::new(role, g.tags).map_err(|e| Invalid::new(e.to_string()))
}

pub fn grant_to_pb(g: &Grant) -> pb::Grant {
    pb::Grant {
        role: g.role().to_string(),
        tags: g.tags().to_vec(),
    }
}

/// A user as the API shows it: never its password hash. `sessions` is how
/// many sessions it holds.
pub fn user_to_pb(u: &User, sessions: u64) -> pb::User {
    pb::User {
        name: u.name.clone(),
        grants: u.grants.iter().map(grant_to_pb).collect(),
        revision: u.revision,
        sessions,
    }
}

pub fn assignment_to_pb(device: String, a: Assignment) -> pb::Assignment {
    pb::Assignment {
        device,
        node: a.node,
        epoch: a.epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_with_unknown_type_names_the_tag() {
        let t = pb::Tag {
            name: "a/b".into(),
            data_type: "f33".into(),
            ..Default::default()
        };
        let e = tag_from_pb(t).unwrap_err();
        assert!(
            e.message.contains("tag 'a/b'") && e.message.contains("'f33'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn readings_round_trip_values_and_quality() {
        let r = pb::Reading {
            id: "x".into(),
            tag: "t".into(),
            ts_us: 5,
            value: Some(pb::Value {
                kind: Some(pb::value::Kind::FloatValue(1.5)),
            }),
            quality: Some(pb::Quality {
                level: 2,
                reason: "comm_failure".into(),
            }),
            ..Default::default()
        };
        let n = reading_from_pb(1, r, 9).unwrap();
        assert_eq!(n.value, Some(Value::Float(1.5)));
        assert_eq!(n.quality.level, QualityLevel::Bad);
        assert_eq!(n.server_ts_us, 9);
        let bad = pb::Reading {
            id: "y".into(),
            tag: "t".into(),
            quality: Some(pb::Quality {
                level: 7,
                reason: String::new(),
            }),
            ..Default::default()
        };
        assert!(reading_from_pb(3, bad, 0)
            .unwrap_err()
            .message
            .contains("reading 3 (id 'y')"));
    }

    #[test]
    fn tags_and_devices_survive_the_wire() {
        let t = Tag {
            byte_order: Order::Little,
            scale: Some(Scale {
                raw_lo: 0.0,
                raw_hi: 10.0,
                eng_lo: 0.0,
                eng_hi: 1.0,
            }),
            units: "bar".into(),
            ..Tag::new("l/p", "plc", "hr:3", DataType::U32)
        };
        assert_eq!(tag_from_pb(tag_to_pb(t.clone())).unwrap(), t);
        let d = Device::new("plc", bifrost_model::Protocol::Opcua, "opc.tcp://h:4840");
        assert_eq!(device_from_pb(device_to_pb(d.clone())), d);
        let zero = device_from_pb(pb::Device::default());
        assert_eq!((zero.poll_interval_ms, zero.timeout_ms), (1000, 1000));
    }

    #[test]
    fn every_quality_level_and_value_kind_maps_both_ways() {
        for l in QualityLevel::ALL {
            assert_eq!(
                quality_level_from_pb(quality_level_to_pb(l) as i32),
                Some(l)
            );
        }
        for v in [
            Value::Bool(true),
            Value::Int(-2),
            Value::Float(0.25),
            Value::Text("on".into()),
        ] {
            assert_eq!(value_from_pb(Some(value_to_pb(v.clone()))), Some(v));
        }
        assert_eq!(value_from_pb(Some(pb::Value { kind: None })), None);
    }
}
