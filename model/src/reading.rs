//! Readings: a tag's value at a time, with its quality.

use serde::{Deserialize, Serialize};

use crate::{Tag, Value};

/// OPC UA style quality level, spelt `good`, `uncertain`, `bad`. Variant
/// order is persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QualityLevel {
    Good,
    Uncertain,
    Bad,
}

impl QualityLevel {
    pub const ALL: [QualityLevel; 3] = [
        QualityLevel::Good,
        QualityLevel::Uncertain,
        QualityLevel::Bad,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QualityLevel::Good => "good",
            QualityLevel::Uncertain => "uncertain",
            QualityLevel::Bad => "bad",
        }
    }

    pub fn parse(s: &str) -> Option<QualityLevel> {
        QualityLevel::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Quality of a reading: a level and, when not good, a reason such as
/// `comm_failure`, `timeout`, `config_error`, `device_exception:<code>`,
/// `out_of_range`, `not_connected`.
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

    pub fn uncertain(reason: impl Into<String>) -> Quality {
        Quality {
            level: QualityLevel::Uncertain,
            reason: reason.into(),
        }
    }

    pub fn bad(reason: impl Into<String>) -> Quality {
        Quality {
            level: QualityLevel::Bad,
            reason: reason.into(),
        }
    }

    pub fn is_good(&self) -> bool {
        self.level == QualityLevel::Good
    }
}

/// Longest accepted reading id, in bytes.
pub const MAX_READING_ID_LEN: usize = 128;

/// A reading to be stored, as proposed (before it has a revision). Field
/// order is persisted (Raft log).
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

impl NewReading {
    /// Checks the reading against its tag and converts its value to the tag's
    /// type. The error names the reading and says what is wrong.
    pub fn check_against(&mut self, tag: &Tag) -> Result<(), String> {
        self.check_id()?;
        self.value = tag.accept(self.value.take(), &self.quality)?;
        Ok(())
    }

    /// Checks the reading's id alone (1 to [`MAX_READING_ID_LEN`] bytes).
    pub fn check_id(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > MAX_READING_ID_LEN {
            return Err(format!(
                "reading id must be 1 to {MAX_READING_ID_LEN} bytes, got {}",
                self.id.len()
            ));
        }
        Ok(())
    }
}

impl Tag {
    /// A value with `quality` as this tag stores it (see
    /// [`Tag::accept_value`]); a good reading must have one. The error names
    /// the tag.
    pub fn accept(&self, value: Option<Value>, quality: &Quality) -> Result<Option<Value>, String> {
        match value {
            None if quality.is_good() => {
                Err(format!("tag '{}': a good reading needs a value", self.name))
            }
            None => Ok(None),
            Some(v) => self.accept_value(v).map(Some),
        }
    }

    /// A value as this tag stores it, and takes it in a device write:
    /// converted to the tag's type, or for a scaled numeric tag to a float in
    /// engineering units (what its driver stores, see `drivers::scaling`).
    /// The error names the tag.
    pub fn accept_value(&self, value: Value) -> Result<Value, String> {
        if self.scale.is_some() && self.data_type.is_numeric() {
            return self.accept_engineering(value);
        }
        self.data_type
            .coerce(value)
            .map_err(|e| format!("tag '{}' is {}: {e}", self.name, self.data_type))
    }

    /// A scaled tag's value is a number in engineering units, kept as a float:
    /// the raw type's range and wholeness do not apply to it.
    fn accept_engineering(&self, value: Value) -> Result<Value, String> {
        match value {
            Value::Float(f) => Ok(Value::Float(f)),
            Value::Int(i) => Ok(Value::Float(i as f64)),
            other => Err(format!(
                "tag '{}' is a scaled {}: {} value {other} is not a number in engineering units",
                self.name,
                self.data_type,
                other.kind()
            )),
        }
    }
}

/// A committed reading, as read back. Field order is persisted.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    #[test]
    fn good_reading_needs_value_bad_may_lack_one() {
        let tag = Tag::new("line1/t", "plc1", "hr:0", DataType::F32);
        let mut r = NewReading {
            id: "1".into(),
            tag: tag.name.clone(),
            ts_us: 0,
            server_ts_us: 0,
            value: None,
            quality: Quality::good(),
        };
        assert!(r.check_against(&tag).unwrap_err().contains("needs a value"));
        r.quality = Quality::bad("comm_failure");
        assert!(r.check_against(&tag).is_ok());
        r.id = String::new();
        assert!(r.check_against(&tag).is_err());
    }

    #[test]
    fn values_are_coerced_to_the_tag_type_and_misfits_name_the_tag() {
        let tag = Tag::new("a/b", "plc1", "hr:0", DataType::U16);
        let mut r = NewReading {
            id: "1".into(),
            tag: tag.name.clone(),
            ts_us: 0,
            server_ts_us: 0,
            value: Some(Value::Float(7.0)),
            quality: Quality::good(),
        };
        r.check_against(&tag).unwrap();
        assert_eq!(r.value, Some(Value::Int(7)));
        r.value = Some(Value::Int(-1));
        let e = r.check_against(&tag).unwrap_err();
        assert!(e.starts_with("tag 'a/b' is u16: -1 is outside"), "{e}");
        r.id = "x".repeat(MAX_READING_ID_LEN + 1);
        assert!(r
            .check_against(&tag)
            .unwrap_err()
            .contains("1 to 128 bytes"));
    }

    #[test]
    fn scaled_tags_take_engineering_values_as_floats() {
        let mut tag = Tag::new("line1/speed", "plc1", "hr:4", DataType::U16);
        tag.scale = Some(crate::Scale {
            raw_lo: 0.0,
            raw_hi: 10.0,
            eng_lo: -5.0,
            eng_hi: -4.0,
        });
        let good = Quality::good();
        let accepted = tag.accept(Some(Value::Float(-4.9)), &good).unwrap();
        assert_eq!(accepted, Some(Value::Float(-4.9)));
        assert_eq!(
            tag.accept(Some(Value::Int(70000)), &good).unwrap(),
            Some(Value::Float(70000.0))
        );
        let e = tag
            .accept(Some(Value::Text("x".into())), &good)
            .unwrap_err();
        assert!(
            e.contains("line1/speed") && e.contains("engineering units"),
            "{e}"
        );
        tag.scale = None;
        assert!(tag.accept(Some(Value::Float(-4.9)), &good).is_err());
    }

    #[test]
    fn quality_levels_have_lower_case_names() {
        for l in QualityLevel::ALL {
            assert_eq!(QualityLevel::parse(l.as_str()), Some(l));
        }
        assert_eq!(QualityLevel::parse("Good"), None);
        assert!(Quality::uncertain("x").level == QualityLevel::Uncertain);
        assert!(Quality::good().is_good() && !Quality::bad("x").is_good());
    }
}
