//! The tag-store data model: devices, tags, readings, and the rules that decide
//! whether a value fits a tag. These types are what `storage` persists; the
//! public API's protobuf types are converted to and from them in `server`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Rejection;

/// Longest accepted device or tag name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Protocols a device may speak.
pub const PROTOCOLS: &[&str] = &["modbus-tcp", "modbus-rtu", "opcua"];

/// A device that is polled over one protocol connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    /// One of [`PROTOCOLS`].
    pub protocol: String,
    /// `host:port`, a serial port, or an `opc.tcp://` URL.
    pub endpoint: String,
    pub unit_id: u32,
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    /// Raft log index of the command that last changed this device.
    pub revision: u64,
}

impl Device {
    /// Checks everything about a device that does not depend on other objects.
    pub fn validate(&self) -> Result<(), Rejection> {
        validate_name("device", &self.name)?;
        if !PROTOCOLS.contains(&self.protocol.as_str()) {
            return Err(Rejection::invalid(format!(
                "device '{}': unknown protocol '{}' (expected one of: {})",
                self.name,
                self.protocol,
                PROTOCOLS.join(", ")
            )));
        }
        if self.endpoint.trim().is_empty() {
            return Err(Rejection::invalid(format!(
                "device '{}': endpoint is empty",
                self.name
            )));
        }
        if self.poll_interval_ms == 0 {
            return Err(Rejection::invalid(format!(
                "device '{}': poll interval must be greater than zero",
                self.name
            )));
        }
        Ok(())
    }
}

/// The data type of a tag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    Bool,
    I16,
    U16,
    I32,
    U32,
    I64,
    F32,
    F64,
    String,
}

impl DataType {
    pub const ALL: [DataType; 9] = [
        DataType::Bool,
        DataType::I16,
        DataType::U16,
        DataType::I32,
        DataType::U32,
        DataType::I64,
        DataType::F32,
        DataType::F64,
        DataType::String,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::I16 => "i16",
            DataType::U16 => "u16",
            DataType::I32 => "i32",
            DataType::U32 => "u32",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::String => "string",
        }
    }

    pub fn parse(s: &str) -> Result<DataType, Rejection> {
        DataType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Rejection::invalid(format!(
                    "unknown data type '{s}' (expected one of: bool, i16, u16, i32, u32, i64, f32, f64, string)"
                ))
            })
    }

    /// The inclusive integer range of an integer type.
    fn int_range(self) -> Option<(i64, i64)> {
        match self {
            DataType::I16 => Some((i16::MIN as i64, i16::MAX as i64)),
            DataType::U16 => Some((0, u16::MAX as i64)),
            DataType::I32 => Some((i32::MIN as i64, i32::MAX as i64)),
            DataType::U32 => Some((0, u32::MAX as i64)),
            DataType::I64 => Some((i64::MIN, i64::MAX)),
            _ => None,
        }
    }

    /// Converts `value` to this type's canonical representation, or says why
    /// it does not fit. Integers written as whole floats (`3.0`) are accepted.
    pub fn coerce(self, value: Value) -> Result<Value, String> {
        match (self, value) {
            (DataType::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
            (DataType::String, Value::Text(s)) => Ok(Value::Text(s)),
            (DataType::F32, Value::Float(f)) if f.is_finite() && f.abs() > f32::MAX as f64 => {
                Err(format!("{f} is outside the range of f32"))
            }
            (DataType::F32 | DataType::F64, Value::Float(f)) => Ok(Value::Float(f)),
            (DataType::F32 | DataType::F64, Value::Int(i)) => Ok(Value::Float(i as f64)),
            (t, Value::Int(i)) if t.int_range().is_some() => {
                let (lo, hi) = t.int_range().unwrap_or((0, 0));
                if i < lo || i > hi {
                    Err(format!(
                        "{i} is outside the range of {} ({lo}..={hi})",
                        t.as_str()
                    ))
                } else {
                    Ok(Value::Int(i))
                }
            }
            (t, Value::Float(f)) if t.int_range().is_some() => {
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err(format!(
                        "{f} is not a whole number, but the tag is {}",
                        t.as_str()
                    ));
                }
                // Whole floats beyond i64 saturate in the cast; the range check catches them.
                if f < i64::MIN as f64 || f >= i64::MAX as f64 {
                    return Err(format!("{f} is outside the range of {}", t.as_str()));
                }
                t.coerce(Value::Int(f as i64))
            }
            (t, v) => Err(format!(
                "{} value {v} does not fit a {} tag",
                v.kind(),
                t.as_str()
            )),
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Byte or word order of a multi-byte value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    #[default]
    Big,
    Little,
}

impl Order {
    pub fn parse(s: &str) -> Result<Order, Rejection> {
        match s {
            "" | "big" => Ok(Order::Big),
            "little" => Ok(Order::Little),
            other => Err(Rejection::invalid(format!(
                "unknown byte/word order '{other}' (expected big or little)"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Big => "big",
            Order::Little => "little",
        }
    }
}

/// Linear scaling from a raw range to an engineering range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub raw_lo: f64,
    pub raw_hi: f64,
    pub eng_lo: f64,
    pub eng_hi: f64,
}

/// Smallest change that is reported; `percent` of the engineering range when set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deadband {
    pub value: f64,
    pub percent: bool,
}

/// A named value on a device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    /// Stable internal id, assigned when the tag is first created; history is
    /// keyed by it, so a deleted and re-created tag does not inherit history.
    pub id: u64,
    pub name: String,
    pub device: String,
    pub address: String,
    pub data_type: DataType,
    pub byte_order: Order,
    pub word_order: Order,
    pub scale: Option<Scale>,
    pub deadband: Option<Deadband>,
    pub scan_rate_ms: u64,
    pub units: String,
    pub description: String,
    pub writable: bool,
    /// Registers spanned by a string tag.
    pub length: u32,
    /// Raft log index of the command that last changed this tag.
    pub revision: u64,
}

impl Tag {
    /// Checks everything about a tag that does not depend on other objects.
    pub fn validate(&self) -> Result<(), Rejection> {
        validate_name("tag", &self.name)?;
        if self.address.trim().is_empty() {
            return Err(Rejection::invalid(format!(
                "tag '{}': address is empty",
                self.name
            )));
        }
        if let Some(s) = &self.scale {
            let finite = [s.raw_lo, s.raw_hi, s.eng_lo, s.eng_hi]
                .iter()
                .all(|v| v.is_finite());
            if !finite || s.raw_lo == s.raw_hi {
                return Err(Rejection::invalid(format!(
                    "tag '{}': scale {}:{}:{}:{} needs finite numbers and raw_lo != raw_hi",
                    self.name, s.raw_lo, s.raw_hi, s.eng_lo, s.eng_hi
                )));
            }
            if matches!(self.data_type, DataType::Bool | DataType::String) {
                return Err(Rejection::invalid(format!(
                    "tag '{}': a {} tag cannot be scaled",
                    self.name, self.data_type
                )));
            }
        }
        if let Some(d) = &self.deadband {
            if !d.value.is_finite() || d.value < 0.0 || (d.percent && d.value > 100.0) {
                return Err(Rejection::invalid(format!(
                    "tag '{}': deadband {}{} must be between 0 and {}",
                    self.name,
                    d.value,
                    if d.percent { "%" } else { "" },
                    if d.percent { "100%" } else { "infinity" }
                )));
            }
        }
        Ok(())
    }
}

/// A value as stored. Integer types are stored as `Int`, floats as `Float`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Text(_) => "string",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// OPC UA style quality level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QualityLevel {
    Good,
    Uncertain,
    Bad,
}

/// Quality of a reading: a level and, when not good, a reason such as
/// `comm_failure`, `timeout`, `config_error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quality {
    pub level: QualityLevel,
    pub reason: String,
}

impl Quality {
    pub fn good() -> Quality {
        Quality {
            level: QualityLevel::Good,
            reason: String::new(),
        }
    }
}

/// A reading to be stored, as proposed (before it has a revision).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewReading {
    /// Chosen by the producer; a second reading with the same id is a duplicate.
    pub id: String,
    pub tag: String,
    /// Source timestamp, microseconds since the Unix epoch.
    pub ts_us: i64,
    /// When the cluster received it, microseconds since the Unix epoch.
    pub server_ts_us: i64,
    pub value: Option<Value>,
    pub quality: Quality,
}

/// Which node polls a device. `epoch` is the log index of the command that
/// gave the device to this node; it changes whenever the owner changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub node: u64,
    pub epoch: u64,
}

/// Longest accepted reading id, in bytes.
pub const MAX_READING_ID_LEN: usize = 128;

impl NewReading {
    /// Checks the reading against its tag and converts its value to the tag's
    /// type. The error names the reading and says what is wrong.
    pub fn check_against(&mut self, tag: &Tag) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > MAX_READING_ID_LEN {
            return Err(format!(
                "reading id must be 1 to {MAX_READING_ID_LEN} bytes, got {}",
                self.id.len()
            ));
        }
        match self.value.take() {
            None if self.quality.level == QualityLevel::Good => {
                return Err(format!("tag '{}': a good reading needs a value", tag.name))
            }
            None => {}
            Some(v) => {
                let v = tag
                    .data_type
                    .coerce(v)
                    .map_err(|e| format!("tag '{}' is {}: {e}", tag.name, tag.data_type))?;
                self.value = Some(v);
            }
        }
        Ok(())
    }
}

/// A committed reading, as read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub id: String,
    pub tag: String,
    pub ts_us: i64,
    pub server_ts_us: i64,
    pub value: Option<Value>,
    pub quality: Quality,
    /// Cluster-wide revision assigned when it was committed.
    pub revision: u64,
}

/// Names are path-like: segments of `[A-Za-z0-9_.-]` separated by single `/`.
pub fn validate_name(what: &str, name: &str) -> Result<(), Rejection> {
    if name.is_empty() {
        return Err(Rejection::invalid(format!("{what} name is empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Rejection::invalid(format!(
            "{what} name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )));
    }
    for (i, seg) in name.split('/').enumerate() {
        if seg.is_empty() {
            return Err(Rejection::invalid(format!(
                "{what} name '{name}': segment {} is empty (no leading, trailing or double '/')",
                i + 1
            )));
        }
        if seg == "." || seg == ".." {
            return Err(Rejection::invalid(format!(
                "{what} name '{name}': segment '{seg}' is not allowed"
            )));
        }
        if let Some((pos, c)) = seg
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            let col = name.split('/').take(i).map(|s| s.len() + 1).sum::<usize>() + pos + 1;
            return Err(Rejection::invalid(format!(
                "{what} name '{name}': character {c:?} at position {col} is not allowed (use letters, digits, '_', '-', '.', and '/' between segments)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_path_rules() {
        assert!(validate_name("tag", "line1/press3/temperature").is_ok());
        assert!(validate_name("tag", "a.b-c_d").is_ok());
        let e = validate_name("tag", "line1//x").unwrap_err();
        assert!(e.message.contains("segment 2 is empty"), "{}", e.message);
        let e = validate_name("tag", "/x").unwrap_err();
        assert!(e.message.contains("segment 1 is empty"), "{}", e.message);
        let e = validate_name("tag", "line 1").unwrap_err();
        assert!(e.message.contains("' ' at position 5"), "{}", e.message);
        let e = validate_name("tag", "a/b$").unwrap_err();
        assert!(e.message.contains("'$' at position 4"), "{}", e.message);
        assert!(validate_name("tag", "").is_err());
        assert!(validate_name("tag", "a/../b").is_err());
        assert!(validate_name("tag", &"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn values_are_coerced_to_tag_types() {
        assert_eq!(DataType::I16.coerce(Value::Float(3.0)), Ok(Value::Int(3)));
        assert!(DataType::I16
            .coerce(Value::Int(40000))
            .unwrap_err()
            .contains("outside"));
        assert!(DataType::U16.coerce(Value::Int(-1)).is_err());
        assert_eq!(
            DataType::U16.coerce(Value::Int(65535)),
            Ok(Value::Int(65535))
        );
        assert!(DataType::I32
            .coerce(Value::Float(1.5))
            .unwrap_err()
            .contains("whole"));
        assert_eq!(DataType::F32.coerce(Value::Int(2)), Ok(Value::Float(2.0)));
        assert!(DataType::F32.coerce(Value::Float(1e300)).is_err());
        assert!(DataType::F64
            .coerce(Value::Text("x".into()))
            .unwrap_err()
            .contains("string"));
        assert!(DataType::Bool.coerce(Value::Int(1)).is_err());
        assert_eq!(
            DataType::String.coerce(Value::Text("a".into())),
            Ok(Value::Text("a".into()))
        );
        assert!(DataType::I64.coerce(Value::Float(1e19)).is_err());
    }

    #[test]
    fn good_reading_needs_value_bad_may_lack_one() {
        let tag = sample_tag();
        let mut r = NewReading {
            id: "1".into(),
            tag: tag.name.clone(),
            ts_us: 0,
            server_ts_us: 0,
            value: None,
            quality: Quality::good(),
        };
        assert!(r.check_against(&tag).unwrap_err().contains("needs a value"));
        r.quality = Quality {
            level: QualityLevel::Bad,
            reason: "comm_failure".into(),
        };
        assert!(r.check_against(&tag).is_ok());
        r.id = String::new();
        assert!(r.check_against(&tag).is_err());
    }

    #[test]
    fn tag_validation_rejects_bad_scale_and_deadband() {
        let mut t = sample_tag();
        t.scale = Some(Scale {
            raw_lo: 1.0,
            raw_hi: 1.0,
            eng_lo: 0.0,
            eng_hi: 1.0,
        });
        assert!(t
            .validate()
            .unwrap_err()
            .message
            .contains("raw_lo != raw_hi"));
        t.scale = None;
        t.deadband = Some(Deadband {
            value: 150.0,
            percent: true,
        });
        assert!(t.validate().is_err());
        t.deadband = Some(Deadband {
            value: 0.5,
            percent: false,
        });
        assert!(t.validate().is_ok());
    }

    pub(crate) fn sample_tag() -> Tag {
        Tag {
            id: 1,
            name: "line1/t".into(),
            device: "plc1".into(),
            address: "hr:0".into(),
            data_type: DataType::F32,
            byte_order: Order::Big,
            word_order: Order::Big,
            scale: None,
            deadband: None,
            scan_rate_ms: 0,
            units: String::new(),
            description: String::new(),
            writable: false,
            length: 0,
            revision: 0,
        }
    }
}
