//! Conversions between the public protobuf types and the storage model. The
//! only place that knows both.

use bifrost_proto::v1 as pb;
use bifrost_storage::{
    DataType, Deadband, Device, NewReading, Order, Quality, QualityLevel, Reading, Rejection,
    Scale, Tag, Value,
};

pub fn device_from_pb(d: pb::Device) -> Device {
    Device {
        name: d.name,
        protocol: d.protocol,
        endpoint: d.endpoint,
        unit_id: d.unit_id,
        poll_interval_ms: if d.poll_interval_ms == 0 {
            1000
        } else {
            d.poll_interval_ms
        },
        timeout_ms: if d.timeout_ms == 0 {
            1000
        } else {
            d.timeout_ms
        },
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

pub fn tag_from_pb(t: pb::Tag) -> Result<Tag, Rejection> {
    let prefix = |e: Rejection| Rejection {
        message: format!("tag '{}': {}", t.name, e.message),
        ..e
    };
    Ok(Tag {
        id: 0,
        data_type: DataType::parse(&t.data_type).map_err(prefix)?,
        byte_order: Order::parse(&t.byte_order).map_err(prefix)?,
        word_order: Order::parse(&t.word_order).map_err(prefix)?,
        scale: t.scale.map(|s| Scale {
            raw_lo: s.raw_lo,
            raw_hi: s.raw_hi,
            eng_lo: s.eng_lo,
            eng_hi: s.eng_hi,
        }),
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

pub fn value_from_pb_opt(v: Option<pb::Value>) -> Option<Value> {
    value_from_pb(v)
}

pub fn value_to_pb_some(v: Value) -> pb::Value {
    value_to_pb(Some(v)).unwrap_or_default()
}

fn value_from_pb(v: Option<pb::Value>) -> Option<Value> {
    use pb::value::Kind;
    match v?.kind? {
        Kind::BoolValue(b) => Some(Value::Bool(b)),
        Kind::IntValue(i) => Some(Value::Int(i)),
        Kind::FloatValue(f) => Some(Value::Float(f)),
        Kind::StringValue(s) => Some(Value::Text(s)),
    }
}

fn value_to_pb(v: Option<Value>) -> Option<pb::Value> {
    use pb::value::Kind;
    let kind = match v? {
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Int(i) => Kind::IntValue(i),
        Value::Float(f) => Kind::FloatValue(f),
        Value::Text(s) => Kind::StringValue(s),
    };
    Some(pb::Value { kind: Some(kind) })
}

/// Converts an ingested reading; `index` (1-based) names it in errors.
pub fn reading_from_pb(
    index: usize,
    r: pb::Reading,
    server_ts_us: i64,
) -> Result<NewReading, Rejection> {
    let q = r.quality.unwrap_or_default();
    let level = match pb::QualityLevel::try_from(q.level) {
        Ok(pb::QualityLevel::QualityGood) => QualityLevel::Good,
        Ok(pb::QualityLevel::QualityUncertain) => QualityLevel::Uncertain,
        Ok(pb::QualityLevel::QualityBad) => QualityLevel::Bad,
        Err(_) => {
            return Err(Rejection::invalid(format!(
                "reading {index} (id '{}'): unknown quality level {}",
                r.id, q.level
            )))
        }
    };
    if r.tag.is_empty() {
        return Err(Rejection::invalid(format!(
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
    let level = match r.quality.level {
        QualityLevel::Good => pb::QualityLevel::QualityGood,
        QualityLevel::Uncertain => pb::QualityLevel::QualityUncertain,
        QualityLevel::Bad => pb::QualityLevel::QualityBad,
    };
    pb::Reading {
        id: r.id,
        tag: r.tag,
        ts_us: r.ts_us,
        value: value_to_pb(r.value),
        quality: Some(pb::Quality {
            level: level as i32,
            reason: r.quality.reason,
        }),
        server_ts_us: r.server_ts_us,
        revision: r.revision,
    }
}

/// What a driver needs to know about a tag.
pub fn tag_spec(t: &Tag) -> bifrost_drivers::TagSpec {
    use bifrost_drivers as d;
    d::TagSpec {
        name: t.name.clone(),
        address: t.address.clone(),
        data_type: data_type_to_driver(t.data_type),
        byte_order: order_to_driver(t.byte_order),
        word_order: order_to_driver(t.word_order),
        scale: t.scale.map(|s| d::Scale {
            raw_lo: s.raw_lo,
            raw_hi: s.raw_hi,
            eng_lo: s.eng_lo,
            eng_hi: s.eng_hi,
        }),
        deadband: t.deadband.map(|x| d::Deadband {
            value: x.value,
            percent: x.percent,
        }),
        length: t.length,
        writable: t.writable,
    }
}

pub fn data_type_to_driver(t: DataType) -> bifrost_drivers::DataType {
    use bifrost_drivers::DataType as D;
    match t {
        DataType::Bool => D::Bool,
        DataType::I16 => D::I16,
        DataType::U16 => D::U16,
        DataType::I32 => D::I32,
        DataType::U32 => D::U32,
        DataType::I64 => D::I64,
        DataType::F32 => D::F32,
        DataType::F64 => D::F64,
        DataType::String => D::String,
    }
}

pub fn data_type_from_driver(t: bifrost_drivers::DataType) -> DataType {
    use bifrost_drivers::DataType as D;
    match t {
        D::Bool => DataType::Bool,
        D::I16 => DataType::I16,
        D::U16 => DataType::U16,
        D::I32 => DataType::I32,
        D::U32 => DataType::U32,
        D::I64 => DataType::I64,
        D::F32 => DataType::F32,
        D::F64 => DataType::F64,
        D::String => DataType::String,
    }
}

fn order_to_driver(o: Order) -> bifrost_drivers::Order {
    match o {
        Order::Big => bifrost_drivers::Order::Big,
        Order::Little => bifrost_drivers::Order::Little,
    }
}

pub fn value_from_driver(v: bifrost_drivers::Value) -> Value {
    match v {
        bifrost_drivers::Value::Bool(b) => Value::Bool(b),
        bifrost_drivers::Value::Int(i) => Value::Int(i),
        bifrost_drivers::Value::Float(f) => Value::Float(f),
        bifrost_drivers::Value::Text(s) => Value::Text(s),
    }
}

pub fn value_to_driver(v: Value) -> bifrost_drivers::Value {
    match v {
        Value::Bool(b) => bifrost_drivers::Value::Bool(b),
        Value::Int(i) => bifrost_drivers::Value::Int(i),
        Value::Float(f) => bifrost_drivers::Value::Float(f),
        Value::Text(s) => bifrost_drivers::Value::Text(s),
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
}
