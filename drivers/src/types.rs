//! Types shared by all drivers. These mirror the storage model on purpose:
//! drivers must not depend on storage, and the server converts between them.

use serde::{Deserialize, Serialize};

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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    #[default]
    Big,
    Little,
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

/// What a driver needs to know about one tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagSpec {
    pub name: String,
    /// Protocol notation (`hr:40001`, `holding:0`, `ns=2;s=Temperature`).
    pub address: String,
    pub data_type: DataType,
    pub byte_order: Order,
    pub word_order: Order,
    pub scale: Option<Scale>,
    pub deadband: Option<Deadband>,
    /// Registers a string spans.
    pub length: u32,
    pub writable: bool,
}

/// A value in engineering units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QualityLevel {
    Good,
    Uncertain,
    Bad,
}

/// Quality with a reason when not good: `comm_failure`, `timeout`,
/// `config_error`, `device_exception:<code>`, `out_of_range`, `not_connected`.
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
    pub fn bad(reason: impl Into<String>) -> Quality {
        Quality {
            level: QualityLevel::Bad,
            reason: reason.into(),
        }
    }
}

/// One read of one tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// `None` when the quality is Bad and nothing was read.
    pub value: Option<Value>,
    pub quality: Quality,
    /// Source timestamp from the device when it gives one (OPC UA), in
    /// microseconds since the epoch; the poller's clock otherwise.
    pub source_ts_us: Option<i64>,
}

// --- Additions for the Modbus driver (additive; used by scaling, decode, plan). ---

impl DataType {
    /// Lower-case name as written in config and error messages (`f32`, `string`).
    pub fn name(self) -> &'static str {
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

    /// True for the types whose values are numbers (all but bool and string).
    pub fn is_numeric(self) -> bool {
        !matches!(self, DataType::Bool | DataType::String)
    }

    /// The range of raw values the type can hold, for numeric types.
    pub fn raw_range(self) -> Option<(f64, f64)> {
        Some(match self {
            DataType::I16 => (i16::MIN as f64, i16::MAX as f64),
            DataType::U16 => (0.0, u16::MAX as f64),
            DataType::I32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::U32 => (0.0, u32::MAX as f64),
            DataType::I64 => (i64::MIN as f64, i64::MAX as f64),
            DataType::F32 => (f32::MIN as f64, f32::MAX as f64),
            DataType::F64 => (f64::MIN, f64::MAX),
            DataType::Bool | DataType::String => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Value {
    /// The value as a number: ints and floats as they are, bools as 0/1,
    /// text when it parses as a number. `None` otherwise.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Text(t) => t.trim().parse().ok(),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(t) => write!(f, "{t:?}"),
        }
    }
}

impl Quality {
    pub fn uncertain(reason: impl Into<String>) -> Quality {
        Quality {
            level: QualityLevel::Uncertain,
            reason: reason.into(),
        }
    }
    pub fn is_good(&self) -> bool {
        self.level == QualityLevel::Good
    }
}
