//! Tags: named values on a device, with the data type, byte and word order,
//! scaling and deadband that say how to read them.

use serde::{Deserialize, Serialize};

use crate::{validate_name, DataType, Invalid};

/// Byte or word order of a multi-byte value. Spelt `big` / `little`; the
/// API's empty string means big. Variant order is persisted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Order {
    #[default]
    Big,
    Little,
}

impl Order {
    /// `""` (the API's "not given") and `big` are big-endian.
    pub fn parse(s: &str) -> Result<Order, Invalid> {
        match s {
            "" | "big" => Ok(Order::Big),
            "little" => Ok(Order::Little),
            other => Err(Invalid::new(format!(
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

/// A named value on a device. Field order is persisted.
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
    /// How often to read the tag; 0 means at its device's poll interval.
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
    /// A tag with the defaults of `tag add`: big byte and word order, no
    /// scale or deadband, device rate, read-only, no id or revision yet. Set
    /// other fields with struct update syntax:
    /// `Tag { writable: true, ..Tag::new("t", "plc", "hr:0", DataType::U16) }`.
    pub fn new(
        name: impl Into<String>,
        device: impl Into<String>,
        address: impl Into<String>,
        data_type: DataType,
    ) -> Tag {
        Tag {
            id: 0,
            name: name.into(),
            device: device.into(),
            address: address.into(),
            data_type,
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

    /// Checks everything about a tag that does not depend on other objects.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_name("tag", &self.name)?;
        if self.address.trim().is_empty() {
            return Err(Invalid::new(format!(
                "tag '{}': address is empty",
                self.name
            )));
        }
        if let Some(s) = &self.scale {
            self.validate_scale(s)?;
        }
        if let Some(d) = &self.deadband {
            if !d.value.is_finite() || d.value < 0.0 || (d.percent && d.value > 100.0) {
                return Err(Invalid::new(format!(
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

    fn validate_scale(&self, s: &Scale) -> Result<(), Invalid> {
        let finite = [s.raw_lo, s.raw_hi, s.eng_lo, s.eng_hi]
            .iter()
            .all(|v| v.is_finite());
        if !finite || s.raw_lo == s.raw_hi {
            return Err(Invalid::new(format!(
                "tag '{}': scale {}:{}:{}:{} needs finite numbers and raw_lo != raw_hi",
                self.name, s.raw_lo, s.raw_hi, s.eng_lo, s.eng_hi
            )));
        }
        if !self.data_type.is_numeric() {
            return Err(Invalid::new(format!(
                "tag '{}': a {} tag cannot be scaled",
                self.name, self.data_type
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_tag() -> Tag {
        Tag::new("line1/t", "plc1", "hr:0", DataType::F32)
    }

    #[test]
    fn new_tag_has_the_defaults_of_tag_add() {
        let t = sample_tag();
        assert_eq!((t.id, t.revision, t.scan_rate_ms, t.length), (0, 0, 0, 0));
        assert_eq!((t.byte_order, t.word_order), (Order::Big, Order::Big));
        assert_eq!((t.scale, t.deadband), (None, None));
        assert!(!t.writable && t.units.is_empty() && t.description.is_empty());
        assert!(t.validate().is_ok());
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

    #[test]
    fn bool_and_string_tags_cannot_be_scaled() {
        let t = Tag {
            scale: Some(Scale {
                raw_lo: 0.0,
                raw_hi: 1.0,
                eng_lo: 0.0,
                eng_hi: 10.0,
            }),
            ..Tag::new("a", "d", "coil:0", DataType::Bool)
        };
        let e = t.validate().unwrap_err();
        assert_eq!(e.message, "tag 'a': a bool tag cannot be scaled");
    }

    #[test]
    fn orders_parse_with_empty_meaning_big() {
        assert_eq!(Order::parse(""), Ok(Order::Big));
        assert_eq!(Order::parse("little"), Ok(Order::Little));
        assert!(Order::parse("middle")
            .unwrap_err()
            .message
            .contains("'middle'"));
    }
}
