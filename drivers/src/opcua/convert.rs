//! Pure conversions between OPC UA values and Bifrost's: variants to
//! [`Value`]s for a tag's type and scale, values back to the variant type a
//! node holds, status codes to [`Quality`], DataType NodeIds to [`DataType`].
//!
//! OPC UA values carry their own type, so unlike Modbus there is no decoding
//! of bytes: the tag's [`DataType`] says what the value must fit. A value of a
//! different but compatible type is accepted (an Int32 node read by an `i16`
//! tag, a Float node by an `f64` tag); one that does not fit is Bad
//! `out_of_range` rather than silently wrapped, and one of an unrelated kind
//! (text for a number, an array) is Bad `config_error`: the tag's type is
//! wrong for the node.
//!
//! Writes are encoded to the *node's* built-in type (read from its DataType
//! attribute), because servers are strict: asyncua, for one, answers
//! `BadTypeMismatch` to an Int32 written to an Int16 variable.

use opcua::types::{DataValue, DateTime, NodeId, StatusCode, Variant};

use crate::scaling::{eng_to_raw, raw_in_range, raw_to_eng};
use crate::{DataType, Quality, Sample, TagSpec, Value};

/// Quality reasons this driver uses besides OPC UA status code names.
pub(crate) mod reason {
    pub const NOT_CONNECTED: &str = "not_connected";
    pub const COMM_FAILURE: &str = "comm_failure";
    pub const TIMEOUT: &str = "timeout";
    pub const CONFIG_ERROR: &str = "config_error";
    pub const OUT_OF_RANGE: &str = "out_of_range";
}

/// The symbolic name of a status code (`BadNodeIdUnknown`), without flags.
pub(crate) fn status_name(status: StatusCode) -> &'static str {
    status.sub_code().name()
}

/// Item-level status (a DataValue's) to quality. Good is good; Uncertain and
/// Bad keep the server's status name as the reason, so an operator sees
/// `BadNodeIdUnknown` or `UncertainLastUsableValue` as the server said it.
pub(crate) fn status_quality(status: StatusCode) -> Quality {
    if status.is_good() {
        Quality::good()
    } else if status.is_uncertain() {
        Quality::uncertain(status_name(status))
    } else {
        Quality::bad(status_name(status))
    }
}

/// True for the status codes a failed *service call* (not an item) gives
/// when the connection or channel is gone.
pub(crate) fn is_comm_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadCommunicationError
            | StatusCode::BadConnectionClosed
            | StatusCode::BadNotConnected
            | StatusCode::BadServerNotConnected
            | StatusCode::BadSecureChannelClosed
            | StatusCode::BadSecureChannelIdInvalid
            | StatusCode::BadSessionClosed
            | StatusCode::BadSessionIdInvalid
            | StatusCode::BadSessionNotActivated
            | StatusCode::BadDisconnect
            | StatusCode::BadEndOfStream
            | StatusCode::BadTcpInternalError
            | StatusCode::BadTcpSecureChannelUnknown
            | StatusCode::BadServerHalted
            | StatusCode::BadShutdown
    )
}

pub(crate) fn is_timeout_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BadTimeout | StatusCode::BadRequestTimeout
    )
}

/// Quality for every tag of a read whose service call failed as a whole.
pub(crate) fn service_failure_quality(status: StatusCode) -> Quality {
    if is_timeout_status(status) {
        Quality::bad(reason::TIMEOUT)
    } else if is_comm_status(status) {
        Quality::bad(reason::COMM_FAILURE)
    } else {
        Quality::bad(status_name(status))
    }
}

/// Microseconds since the Unix epoch; `None` for the null DateTime.
pub(crate) fn datetime_us(t: &DateTime) -> Option<i64> {
    if t.is_null() {
        None
    } else {
        Some(t.as_chrono().timestamp_micros())
    }
}

/// A DataValue read or received for `tag`, as a sample. The timestamp is the
/// source timestamp, else the server's, else none (the poller stamps it).
pub(crate) fn sample_from_data_value(dv: &DataValue, tag: &TagSpec) -> Sample {
    let source_ts_us = dv
        .source_timestamp
        .as_ref()
        .and_then(datetime_us)
        .or_else(|| dv.server_timestamp.as_ref().and_then(datetime_us));
    let status = dv.status.unwrap_or(StatusCode::Good);
    if status.is_bad() {
        return Sample {
            value: None,
            quality: status_quality(status),
            source_ts_us,
        };
    }
    let decoded = match &dv.value {
        None | Some(Variant::Empty) => {
            Err(format!("the node has no value ({})", status_name(status)))
        }
        Some(v) => decode(v, tag),
    };
    match decoded {
        Ok((value, quality)) => {
            // A server's Uncertain wins over our own (out_of_range) remark.
            let quality = if status.is_uncertain() {
                status_quality(status)
            } else {
                quality
            };
            Sample {
                value: Some(value),
                quality,
                source_ts_us,
            }
        }
        Err(why) => {
            let reason = if why.contains("out of range") {
                reason::OUT_OF_RANGE
            } else {
                reason::CONFIG_ERROR
            };
            tracing::debug!(tag = %tag.name, address = %tag.address, "opcua: {why}");
            Sample {
                value: None,
                quality: Quality::bad(reason),
                source_ts_us,
            }
        }
    }
}

/// A scalar as one of four raw kinds.
#[derive(Clone, Debug, PartialEq)]
enum Raw {
    Bool(bool),
    Int(i128),
    Float(f64),
    Text(String),
}

fn raw_of(v: &Variant) -> Result<Raw, String> {
    Ok(match v {
        Variant::Boolean(b) => Raw::Bool(*b),
        Variant::SByte(i) => Raw::Int(*i as i128),
        Variant::Byte(i) => Raw::Int(*i as i128),
        Variant::Int16(i) => Raw::Int(*i as i128),
        Variant::UInt16(i) => Raw::Int(*i as i128),
        Variant::Int32(i) => Raw::Int(*i as i128),
        Variant::UInt32(i) => Raw::Int(*i as i128),
        Variant::Int64(i) => Raw::Int(*i as i128),
        Variant::UInt64(i) => Raw::Int(*i as i128),
        Variant::Float(f) => Raw::Float(*f as f64),
        Variant::Double(f) => Raw::Float(*f),
        Variant::String(s) => Raw::Text(s.as_ref().to_string()),
        Variant::LocalizedText(t) => Raw::Text(t.text.as_ref().to_string()),
        Variant::Array(_) => {
            return Err("the node holds an array; only scalars are supported".into())
        }
        other => {
            return Err(format!(
                "the node holds a {:?}, which has no Bifrost type",
                other.type_id()
            ))
        }
    })
}

fn int_range(t: DataType) -> Option<(i128, i128)> {
    Some(match t {
        DataType::I16 => (i16::MIN as i128, i16::MAX as i128),
        DataType::U16 => (0, u16::MAX as i128),
        DataType::I32 => (i32::MIN as i128, i32::MAX as i128),
        DataType::U32 => (0, u32::MAX as i128),
        DataType::I64 => (i64::MIN as i128, i64::MAX as i128),
        _ => return None,
    })
}

/// A variant as the value of `tag`: checked against the tag's type, then
/// scaled. Values outside the scale's raw range are extrapolated and marked
/// Uncertain `out_of_range` (as the Modbus driver does).
pub(crate) fn decode(v: &Variant, tag: &TagSpec) -> Result<(Value, Quality), String> {
    let t = tag.data_type;
    let raw = raw_of(v)?;
    let mismatch = || format!("a {t} tag cannot hold the node's value {v:?}");
    let value = match t {
        DataType::Bool => match raw {
            Raw::Bool(b) => Value::Bool(b),
            Raw::Int(i) => Value::Bool(i != 0),
            _ => return Err(mismatch()),
        },
        DataType::I16 | DataType::U16 | DataType::I32 | DataType::U32 | DataType::I64 => {
            let i = match raw {
                Raw::Int(i) => i,
                Raw::Bool(b) => b as i128,
                Raw::Float(f) if f.fract() == 0.0 && f.abs() < 1e19 => f as i128,
                _ => return Err(mismatch()),
            };
            let (lo, hi) = int_range(t).expect("integer type");
            if i < lo || i > hi {
                return Err(format!(
                    "the node's value {i} is out of range for a {t} tag"
                ));
            }
            Value::Int(i as i64)
        }
        DataType::F32 | DataType::F64 => match raw {
            Raw::Int(i) => Value::Float(i as f64),
            Raw::Float(f) => Value::Float(f),
            _ => return Err(mismatch()),
        },
        DataType::String => match raw {
            Raw::Text(s) => Value::Text(s),
            Raw::Bool(b) => Value::Text(b.to_string()),
            Raw::Int(i) => Value::Text(i.to_string()),
            Raw::Float(f) => Value::Text(f.to_string()),
        },
    };
    match (&tag.scale, &value) {
        (Some(scale), Value::Int(_) | Value::Float(_)) => {
            let raw = value.as_f64().expect("numeric");
            let quality = if raw_in_range(scale, raw) {
                Quality::good()
            } else {
                Quality::uncertain(reason::OUT_OF_RANGE)
            };
            Ok((Value::Float(raw_to_eng(scale, raw)), quality))
        }
        _ => Ok((value, Quality::good())),
    }
}

/// The scalar built-in types a write can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    Boolean,
    SByte,
    Byte,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Float,
    Double,
    String,
}

impl Builtin {
    /// The built-in type of a DataType NodeId (namespace 0, i=1..12), if it
    /// is one of the scalars above. Enumerations (i=29 and subtypes) travel
    /// as Int32.
    pub(crate) fn of_data_type(id: &NodeId) -> Option<Builtin> {
        if id.namespace != 0 {
            return None;
        }
        let opcua::types::Identifier::Numeric(n) = id.identifier else {
            return None;
        };
        Some(match n {
            1 => Builtin::Boolean,
            2 => Builtin::SByte,
            3 => Builtin::Byte,
            4 => Builtin::Int16,
            5 => Builtin::UInt16,
            6 => Builtin::Int32,
            7 => Builtin::UInt32,
            8 => Builtin::Int64,
            9 => Builtin::UInt64,
            10 => Builtin::Float,
            11 => Builtin::Double,
            12 => Builtin::String,
            29 => Builtin::Int32,
            _ => return None,
        })
    }

    /// The built-in type matching a tag's type, for nodes whose DataType is
    /// not a plain built-in (a server-specific subtype).
    pub(crate) fn of_tag(t: DataType) -> Builtin {
        match t {
            DataType::Bool => Builtin::Boolean,
            DataType::I16 => Builtin::Int16,
            DataType::U16 => Builtin::UInt16,
            DataType::I32 => Builtin::Int32,
            DataType::U32 => Builtin::UInt32,
            DataType::I64 => Builtin::Int64,
            DataType::F32 => Builtin::Float,
            DataType::F64 => Builtin::Double,
            DataType::String => Builtin::String,
        }
    }

    fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Builtin::SByte => (i8::MIN as i128, i8::MAX as i128),
            Builtin::Byte => (0, u8::MAX as i128),
            Builtin::Int16 => (i16::MIN as i128, i16::MAX as i128),
            Builtin::UInt16 => (0, u16::MAX as i128),
            Builtin::Int32 => (i32::MIN as i128, i32::MAX as i128),
            Builtin::UInt32 => (0, u32::MAX as i128),
            Builtin::Int64 => (i64::MIN as i128, i64::MAX as i128),
            Builtin::UInt64 => (0, u64::MAX as i128),
            _ => return None,
        })
    }
}

/// A Bifrost DataType for a node's DataType NodeId, where one fits: SByte and
/// Byte widen to i16/u16; UInt64 has none (it does not fit an i64).
pub(crate) fn data_type_of(id: &NodeId) -> Option<DataType> {
    Some(match Builtin::of_data_type(id)? {
        Builtin::Boolean => DataType::Bool,
        Builtin::SByte | Builtin::Int16 => DataType::I16,
        Builtin::Byte | Builtin::UInt16 => DataType::U16,
        Builtin::Int32 => DataType::I32,
        Builtin::UInt32 => DataType::U32,
        Builtin::Int64 => DataType::I64,
        Builtin::UInt64 => return None,
        Builtin::Float => DataType::F32,
        Builtin::Double => DataType::F64,
        Builtin::String => DataType::String,
    })
}

/// An engineering value for `tag` as the variant to write to a node of
/// built-in type `node`: unscaled, range-checked against the tag's type and
/// the node's, and refused (with the reason) when it does not fit.
pub(crate) fn encode(value: &Value, tag: &TagSpec, node: Builtin) -> Result<Variant, String> {
    let t = tag.data_type;
    // Undo the scale first: the tag's type and the node hold raw values.
    let raw = match (&tag.scale, value) {
        (Some(scale), Value::Int(_) | Value::Float(_)) if t.is_numeric() => {
            let raw = eng_to_raw(scale, value.as_f64().expect("numeric"));
            if int_range(t).is_some() {
                Raw::Int(checked_integral(raw.round(), t)?)
            } else {
                Raw::Float(raw)
            }
        }
        (_, Value::Bool(b)) => Raw::Bool(*b),
        (_, Value::Int(i)) => Raw::Int(*i as i128),
        (_, Value::Float(f)) => Raw::Float(*f),
        (_, Value::Text(s)) => Raw::Text(s.clone()),
    };
    // The tag's own type first: a value that does not fit it is refused even
    // when the node could take it.
    let raw = match (t, raw) {
        (DataType::Bool, Raw::Bool(b)) => Raw::Bool(b),
        (DataType::Bool, Raw::Int(i)) if i == 0 || i == 1 => Raw::Bool(i == 1),
        (DataType::String, Raw::Text(s)) => Raw::Text(s),
        (DataType::F32 | DataType::F64, Raw::Int(i)) => Raw::Float(i as f64),
        (DataType::F32, Raw::Float(f)) => {
            if f.is_finite() && f.abs() > f32::MAX as f64 {
                return Err(format!("{f} is out of range for an f32 tag"));
            }
            Raw::Float(f)
        }
        (DataType::F64, Raw::Float(f)) => Raw::Float(f),
        (t, Raw::Int(i)) if int_range(t).is_some() => {
            let (lo, hi) = int_range(t).expect("integer type");
            if i < lo || i > hi {
                return Err(format!("{i} is out of range for a {t} tag ({lo}..={hi})"));
            }
            Raw::Int(i)
        }
        (t, Raw::Float(f)) if int_range(t).is_some() => Raw::Int(checked_integral(f, t)?),
        (t, raw) => return Err(format!("a {t} tag cannot be written with {}", show(&raw))),
    };
    to_variant(raw, node)
}

fn checked_integral(f: f64, t: DataType) -> Result<i128, String> {
    if !f.is_finite() || f.fract() != 0.0 {
        return Err(format!("{f} is not a whole number, as a {t} tag needs"));
    }
    let (lo, hi) = int_range(t).expect("integer type");
    if f < lo as f64 || f > hi as f64 {
        return Err(format!("{f} is out of range for a {t} tag ({lo}..={hi})"));
    }
    Ok(f as i128)
}

fn show(raw: &Raw) -> String {
    match raw {
        Raw::Bool(b) => format!("the bool {b}"),
        Raw::Int(i) => format!("the integer {i}"),
        Raw::Float(f) => format!("the number {f}"),
        Raw::Text(s) => format!("the text {s:?}"),
    }
}

fn to_variant(raw: Raw, node: Builtin) -> Result<Variant, String> {
    let node_name = format!("{node:?}");
    match (node, raw) {
        (Builtin::Boolean, Raw::Bool(b)) => Ok(Variant::Boolean(b)),
        (Builtin::Boolean, Raw::Int(i)) if i == 0 || i == 1 => Ok(Variant::Boolean(i == 1)),
        (Builtin::String, Raw::Text(s)) => Ok(Variant::String(s.into())),
        (Builtin::Float, Raw::Float(f)) => {
            if f.is_finite() && f.abs() > f32::MAX as f64 {
                return Err(format!("{f} is out of range for the node's type Float"));
            }
            Ok(Variant::Float(f as f32))
        }
        (Builtin::Float, Raw::Int(i)) => Ok(Variant::Float(i as f32)),
        (Builtin::Double, Raw::Float(f)) => Ok(Variant::Double(f)),
        (Builtin::Double, Raw::Int(i)) => Ok(Variant::Double(i as f64)),
        (b, Raw::Bool(v)) if b.int_range().is_some() => to_variant(Raw::Int(v as i128), b),
        (b, Raw::Float(f)) if b.int_range().is_some() => {
            if !f.is_finite() || f.fract() != 0.0 {
                return Err(format!(
                    "{f} is not a whole number, as the node's type {node_name} needs"
                ));
            }
            to_variant(Raw::Int(f as i128), b)
        }
        (b, Raw::Int(i)) if b.int_range().is_some() => {
            let (lo, hi) = b.int_range().expect("integer type");
            if i < lo || i > hi {
                return Err(format!(
                    "{i} is out of range for the node's type {node_name} ({lo}..={hi})"
                ));
            }
            Ok(match b {
                Builtin::SByte => Variant::SByte(i as i8),
                Builtin::Byte => Variant::Byte(i as u8),
                Builtin::Int16 => Variant::Int16(i as i16),
                Builtin::UInt16 => Variant::UInt16(i as u16),
                Builtin::Int32 => Variant::Int32(i as i32),
                Builtin::UInt32 => Variant::UInt32(i as u32),
                Builtin::Int64 => Variant::Int64(i as i64),
                _ => Variant::UInt64(i as u64),
            })
        }
        (_, raw) => Err(format!(
            "the node's type {node_name} cannot take {}",
            show(&raw)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Order, QualityLevel, Scale};

    fn tag(t: DataType) -> TagSpec {
        TagSpec {
            name: "t".into(),
            address: "ns=2;s=X".into(),
            data_type: t,
            byte_order: Order::Big,
            word_order: Order::Big,
            scale: None,
            deadband: None,
            length: 0,
            writable: true,
        }
    }

    fn scaled(t: DataType, raw_lo: f64, raw_hi: f64, eng_lo: f64, eng_hi: f64) -> TagSpec {
        TagSpec {
            scale: Some(Scale {
                raw_lo,
                raw_hi,
                eng_lo,
                eng_hi,
            }),
            ..tag(t)
        }
    }

    fn value(v: Variant, t: DataType) -> Value {
        let (value, q) = decode(&v, &tag(t)).unwrap();
        assert_eq!(q, Quality::good());
        value
    }

    #[test]
    fn every_scalar_type_decodes_exactly() {
        assert_eq!(
            value(Variant::Boolean(true), DataType::Bool),
            Value::Bool(true)
        );
        assert_eq!(
            value(Variant::Int16(-1234), DataType::I16),
            Value::Int(-1234)
        );
        assert_eq!(
            value(Variant::UInt16(54321), DataType::U16),
            Value::Int(54321)
        );
        assert_eq!(
            value(Variant::Int32(-123456789), DataType::I32),
            Value::Int(-123456789)
        );
        assert_eq!(
            value(Variant::UInt32(u32::MAX), DataType::U32),
            Value::Int(u32::MAX as i64)
        );
        let big = -9007199254740993i64;
        assert_eq!(value(Variant::Int64(big), DataType::I64), Value::Int(big));
        assert_eq!(
            value(Variant::Float(1234.5678), DataType::F32),
            Value::Float(1234.5678f32 as f64)
        );
        assert_eq!(
            value(Variant::Double(2.5e-300), DataType::F64),
            Value::Float(2.5e-300)
        );
        assert_eq!(
            value(Variant::String("hé".into()), DataType::String),
            Value::Text("hé".into())
        );
    }

    #[test]
    fn compatible_types_widen_and_narrow_when_the_value_fits() {
        assert_eq!(value(Variant::Int32(-5), DataType::I16), Value::Int(-5));
        assert_eq!(value(Variant::Byte(200), DataType::U16), Value::Int(200));
        assert_eq!(value(Variant::Double(12.0), DataType::I32), Value::Int(12));
        assert_eq!(value(Variant::Int16(7), DataType::F64), Value::Float(7.0));
        assert_eq!(
            value(Variant::UInt32(0), DataType::Bool),
            Value::Bool(false)
        );
        assert_eq!(
            value(Variant::Double(1.5), DataType::String),
            Value::Text("1.5".into())
        );
    }

    #[test]
    fn values_that_do_not_fit_the_tag_are_refused_with_a_reason() {
        let e = decode(&Variant::Int32(70000), &tag(DataType::I16)).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = decode(&Variant::Int16(-1), &tag(DataType::U32)).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = decode(&Variant::Double(2.5), &tag(DataType::I32)).unwrap_err();
        assert!(e.contains("cannot hold"), "{e}");
        let e = decode(&Variant::String("x".into()), &tag(DataType::F32)).unwrap_err();
        assert!(e.contains("cannot hold"), "{e}");
        let e = decode(&Variant::from(vec![1i32, 2]), &tag(DataType::I32)).unwrap_err();
        assert!(e.contains("array"), "{e}");
    }

    #[test]
    fn scaling_maps_raw_to_engineering_and_flags_out_of_range() {
        let t = scaled(DataType::I16, 0.0, 4000.0, 0.0, 100.0);
        let (v, q) = decode(&Variant::Int16(2000), &t).unwrap();
        assert_eq!((v, q), (Value::Float(50.0), Quality::good()));
        let (v, q) = decode(&Variant::Int16(8000), &t).unwrap();
        assert_eq!(v, Value::Float(200.0));
        assert_eq!(q, Quality::uncertain("out_of_range"));
    }

    #[test]
    fn data_values_become_samples_with_status_and_source_time() {
        let t = tag(DataType::I32);
        // 1_700_000_000 s after the Unix epoch.
        let ts = DateTime::ymd_hms_nano(2023, 11, 14, 22, 13, 20, 123_456_000);
        let dv = DataValue {
            value: Some(Variant::Int32(5)),
            status: Some(StatusCode::Good),
            source_timestamp: Some(ts),
            server_timestamp: Some(DateTime::null()),
            ..DataValue::null()
        };
        let s = sample_from_data_value(&dv, &t);
        assert_eq!(s.value, Some(Value::Int(5)));
        assert_eq!(s.quality, Quality::good());
        // OPC UA keeps 100 ns ticks: microseconds survive.
        assert_eq!(s.source_ts_us, Some(1_700_000_000_123_456));

        let bad = DataValue {
            status: Some(StatusCode::BadNodeIdUnknown),
            ..DataValue::null()
        };
        let s = sample_from_data_value(&bad, &t);
        assert_eq!(s.value, None);
        assert_eq!(s.quality, Quality::bad("BadNodeIdUnknown"));

        let unc = DataValue {
            value: Some(Variant::Int32(5)),
            status: Some(StatusCode::UncertainLastUsableValue),
            ..DataValue::null()
        };
        let s = sample_from_data_value(&unc, &t);
        assert_eq!(s.value, Some(Value::Int(5)));
        assert_eq!(s.quality.level, QualityLevel::Uncertain);
        assert_eq!(s.quality.reason, "UncertainLastUsableValue");

        let mismatch = DataValue::value_only(Variant::String("x".into()));
        assert_eq!(
            sample_from_data_value(&mismatch, &t).quality,
            Quality::bad("config_error")
        );
        let too_big = DataValue::value_only(Variant::Int64(1 << 40));
        assert_eq!(
            sample_from_data_value(&too_big, &t).quality,
            Quality::bad("out_of_range")
        );
        let empty = DataValue::value_only(Variant::Empty);
        assert_eq!(
            sample_from_data_value(&empty, &t).quality,
            Quality::bad("config_error")
        );
    }

    #[test]
    fn service_failures_map_to_comm_reasons() {
        assert_eq!(
            service_failure_quality(StatusCode::BadTimeout),
            Quality::bad("timeout")
        );
        assert_eq!(
            service_failure_quality(StatusCode::BadConnectionClosed),
            Quality::bad("comm_failure")
        );
        assert_eq!(
            service_failure_quality(StatusCode::BadTooManyOperations),
            Quality::bad("BadTooManyOperations")
        );
        assert_eq!(status_quality(StatusCode::Good), Quality::good());
    }

    #[test]
    fn writes_encode_to_the_node_type() {
        let enc = |v: Value, t: DataType, b: Builtin| encode(&v, &tag(t), b);
        assert_eq!(
            enc(Value::Int(-7), DataType::I16, Builtin::Int16),
            Ok(Variant::Int16(-7))
        );
        assert_eq!(
            enc(Value::Int(7), DataType::I32, Builtin::Int16),
            Ok(Variant::Int16(7))
        );
        assert_eq!(
            enc(Value::Float(7.0), DataType::I32, Builtin::Int32),
            Ok(Variant::Int32(7))
        );
        assert_eq!(
            enc(Value::Bool(true), DataType::Bool, Builtin::Boolean),
            Ok(Variant::Boolean(true))
        );
        assert_eq!(
            enc(Value::Float(1.25), DataType::F32, Builtin::Float),
            Ok(Variant::Float(1.25))
        );
        assert_eq!(
            enc(Value::Int(3), DataType::F64, Builtin::Double),
            Ok(Variant::Double(3.0))
        );
        assert_eq!(
            enc(Value::Text("hi".into()), DataType::String, Builtin::String),
            Ok(Variant::String("hi".into()))
        );
        let big = -9007199254740993i64;
        assert_eq!(
            enc(Value::Int(big), DataType::I64, Builtin::Int64),
            Ok(Variant::Int64(big))
        );
    }

    #[test]
    fn writes_that_do_not_fit_are_refused_with_the_reason() {
        let enc = |v: Value, t: DataType, b: Builtin| encode(&v, &tag(t), b).unwrap_err();
        assert!(enc(Value::Int(70000), DataType::I16, Builtin::Int16)
            .contains("out of range for a i16 tag"));
        assert!(enc(Value::Int(300), DataType::I32, Builtin::Byte).contains("node's type Byte"));
        assert!(enc(Value::Int(-1), DataType::U16, Builtin::UInt16).contains("out of range"));
        assert!(enc(Value::Float(2.5), DataType::I32, Builtin::Int32).contains("whole number"));
        assert!(enc(Value::Text("x".into()), DataType::F64, Builtin::Double)
            .contains("cannot be written"));
        assert!(enc(Value::Int(2), DataType::Bool, Builtin::Boolean).contains("cannot be written"));
        assert!(enc(Value::Float(1e39), DataType::F32, Builtin::Float).contains("out of range"));
        assert!(
            enc(Value::Float(1e39), DataType::F64, Builtin::Float).contains("node's type Float")
        );
    }

    #[test]
    fn scaled_writes_are_unscaled_and_rounded_for_integer_tags() {
        let t = scaled(DataType::I16, 0.0, 4000.0, 0.0, 100.0);
        assert_eq!(
            encode(&Value::Float(50.0), &t, Builtin::Int16),
            Ok(Variant::Int16(2000))
        );
        assert_eq!(
            encode(&Value::Float(12.3456), &t, Builtin::Int16),
            Ok(Variant::Int16(494))
        );
        assert!(encode(&Value::Float(1000.0), &t, Builtin::Int16)
            .unwrap_err()
            .contains("out of range"));
        let f = scaled(DataType::F64, 0.0, 1.0, 0.0, 100.0);
        assert_eq!(
            encode(&Value::Float(25.0), &f, Builtin::Double),
            Ok(Variant::Double(0.25))
        );
    }

    #[test]
    fn data_type_ids_map_to_bifrost_types() {
        assert_eq!(data_type_of(&NodeId::new(0, 1u32)), Some(DataType::Bool));
        assert_eq!(data_type_of(&NodeId::new(0, 3u32)), Some(DataType::U16));
        assert_eq!(data_type_of(&NodeId::new(0, 8u32)), Some(DataType::I64));
        assert_eq!(data_type_of(&NodeId::new(0, 9u32)), None);
        assert_eq!(data_type_of(&NodeId::new(0, 11u32)), Some(DataType::F64));
        assert_eq!(data_type_of(&NodeId::new(0, 12u32)), Some(DataType::String));
        assert_eq!(data_type_of(&NodeId::new(0, 13u32)), None, "DateTime");
        assert_eq!(
            data_type_of(&NodeId::new(2, 1u32)),
            None,
            "server-specific type"
        );
    }
}
