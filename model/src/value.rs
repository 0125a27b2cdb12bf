//! Data types and values: what a tag holds and how a value is made to fit it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// The data type of a tag's value. Spelt in lower case (`f32`, `string`) in
/// flags, JSON documents and the API. Variant order is persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

    /// Lower-case name as written in config and error messages (`f32`).
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

    pub fn parse(s: &str) -> Result<DataType, Invalid> {
        DataType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Invalid::new(format!(
                    "unknown data type '{s}' (expected one of: bool, i16, u16, i32, u32, i64, f32, f64, string)"
                ))
            })
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
            // As a write takes them (drivers::scaling::prepare_write); SQL and CSV sources
            // have no booleans.
            (DataType::Bool, Value::Int(i @ (0 | 1))) => Ok(Value::Bool(i == 1)),
            (DataType::Bool, Value::Float(f)) if f == 0.0 || f == 1.0 => Ok(Value::Bool(f == 1.0)),
            (DataType::String, Value::Text(s)) => Ok(Value::Text(s)),
            (DataType::F32, Value::Float(f)) if f.is_finite() && f.abs() > f32::MAX as f64 => {
                Err(format!("{f} is outside the range of f32"))
            }
            (DataType::F32 | DataType::F64, Value::Float(f)) => Ok(Value::Float(f)),
            (DataType::F32 | DataType::F64, Value::Int(i)) => Ok(Value::Float(i as f64)),
            (t, Value::Int(i)) if t.int_range().is_some() => t.coerce_int(i),
            (t, Value::Float(f)) if t.int_range().is_some() => t.coerce_whole_float(f),
            (t, v) => Err(format!(
                "{} value {v} does not fit a {} tag",
                v.kind(),
                t.as_str()
            )),
        }
    }

    fn coerce_int(self, i: i64) -> Result<Value, String> {
        let (lo, hi) = self.int_range().unwrap_or((0, 0));
        if i < lo || i > hi {
            Err(format!(
                "{i} is outside the range of {} ({lo}..={hi})",
                self.as_str()
            ))
        } else {
            Ok(Value::Int(i))
        }
    }

    fn coerce_whole_float(self, f: f64) -> Result<Value, String> {
        if f.fract() != 0.0 || !f.is_finite() {
            return Err(format!(
                "{f} is not a whole number, but the tag is {}",
                self.as_str()
            ));
        }
        // Whole floats beyond i64 saturate in the cast; the range check catches them.
        if f < i64::MIN as f64 || f >= i64::MAX as f64 {
            return Err(format!("{f} is outside the range of {}", self.as_str()));
        }
        self.coerce_int(f as i64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value in engineering units, as stored and as a driver reads or writes
/// it. Integer types are held as `Int`, floats as `Float`. Variant order is
/// persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Value {
    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Text(_) => "string",
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(DataType::Bool.coerce(Value::Int(1)), Ok(Value::Bool(true)));
        assert_eq!(
            DataType::Bool.coerce(Value::Float(0.0)),
            Ok(Value::Bool(false))
        );
        assert!(DataType::Bool.coerce(Value::Int(2)).is_err());
        assert!(DataType::Bool.coerce(Value::Float(0.5)).is_err());
        assert_eq!(
            DataType::String.coerce(Value::Text("a".into())),
            Ok(Value::Text("a".into()))
        );
        assert!(DataType::I64.coerce(Value::Float(1e19)).is_err());
    }

    #[test]
    fn whole_floats_out_of_an_integer_range_say_so() {
        let e = DataType::U16.coerce(Value::Float(70000.0)).unwrap_err();
        assert_eq!(e, "70000 is outside the range of u16 (0..=65535)");
        assert!(DataType::I16.coerce(Value::Float(f64::NAN)).is_err());
    }

    #[test]
    fn names_parse_back_and_unknown_names_list_the_choices() {
        for t in DataType::ALL {
            assert_eq!(DataType::parse(t.as_str()), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        let e = DataType::parse("f33").unwrap_err();
        assert!(e.message.contains("'f33'") && e.message.contains("i16, u16"));
    }

    #[test]
    fn numeric_types_have_raw_ranges() {
        assert_eq!(DataType::U16.raw_range(), Some((0.0, 65535.0)));
        assert_eq!(DataType::Bool.raw_range(), None);
        assert!(!DataType::String.is_numeric() && DataType::I64.is_numeric());
    }

    #[test]
    fn values_as_numbers() {
        assert_eq!(Value::Bool(true).as_f64(), Some(1.0));
        assert_eq!(Value::Int(-3).as_f64(), Some(-3.0));
        assert_eq!(Value::Text(" 2.5 ".into()).as_f64(), Some(2.5));
        assert_eq!(Value::Text("x".into()).as_f64(), None);
        assert_eq!(Value::Text("a".into()).to_string(), "\"a\"");
    }
}
