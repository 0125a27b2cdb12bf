//! Modbus tag addresses: parsing, and the checks that a data type fits.
//!
//! A Modbus device has four tables, each addressed on the wire by a zero-based
//! 16-bit offset. People write addresses in two traditions, and Bifrost takes
//! both:
//!
//! | table             | prefixed, zero-based       | classic, 1-based           | access     |
//! |-------------------|----------------------------|----------------------------|------------|
//! | coils             | `coil:N`                   | `00001`-`09999`, `000001`-`065536` | read/write |
//! | discrete inputs   | `di:N`, `discrete:N`       | `10001`-`19999`, `100001`-`165536` | read       |
//! | input registers   | `ir:N`, `input:N`          | `30001`-`39999`, `300001`-`365536` | read       |
//! | holding registers | `hr:N`, `holding:N`        | `40001`-`49999`, `400001`-`465536` | read/write |
//!
//! `N` is 0-65535. Prefixes are case-insensitive; surrounding blanks are ignored.
//!
//! # The rule for a prefix followed by a classic number
//!
//! With a table prefix the number is a **zero-based offset**, except when it is
//! written with **exactly five or six digits whose first digit is the table's
//! classic digit** (coil `0`, di `1`, ir `3`, hr `4`): then it is that table's
//! classic 1-based reference. So:
//!
//! * `hr:40001` = `hr:400001` = `40001` = `holding:0` (holding offset 0);
//! * `hr:5` is holding offset 5, `hr:40010` is holding offset 9;
//! * `coil:00001` is coil offset 0, while `coil:1` is coil offset 1;
//! * `hr:50000` (five digits, first digit not 4) is holding offset 50000.
//!
//! The cost of the rule: holding offsets 40000-49999 cannot be written as
//! `hr:4xxxx`; write them in six-digit classic form (`hr:440001` = offset
//! 40000) or with a leading zero (`hr:040000`). A six-digit number can never be
//! a zero-based offset unless it has a leading zero (the largest offset is
//! 65535), so `hr:300001` is an error, as is a classic number naming
//! reference 0 (`hr:40000`, `00000`).
//!
//! A bare number must be a classic five- or six-digit reference; shorter bare
//! numbers are ambiguous and rejected.
//!
//! # Bits in registers
//!
//! A bool can live in a coil, a discrete input, or one bit of a register:
//! `hr:10.3` is bit 3 of holding register 10, bit 0 being the least significant
//! bit of the register read as a u16 in the tag's byte order (so it agrees
//! with reading `hr:10` as u16; word order does not apply).
//! Writing such a bit reads the register, changes the bit and writes the
//! register back: not atomic against another master writing the same register.
//!
//! # Spans
//!
//! i16/u16 take one register, i32/u32/f32 two, i64/f64 four, a string its
//! `length` registers (two characters each, 1-125: a tag is always read in one
//! request). Coils and discrete inputs hold only bools. Only coils and holding
//! registers can be written.

use std::fmt;

use crate::scaling::{validate_deadband, validate_scale};
use crate::{DataType, TagSpec};

/// Most registers a string tag may span: one read request's worth.
pub const MAX_STRING_REGISTERS: u32 = 125;

/// One of the four Modbus tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Coil,
    DiscreteInput,
    InputRegister,
    HoldingRegister,
}

impl Table {
    /// The canonical prefix (`coil`, `di`, `ir`, `hr`).
    pub fn prefix(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "di",
            Table::InputRegister => "ir",
            Table::HoldingRegister => "hr",
        }
    }

    /// Plural name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Table::Coil => "coils",
            Table::DiscreteInput => "discrete inputs",
            Table::InputRegister => "input registers",
            Table::HoldingRegister => "holding registers",
        }
    }

    /// The leading digit of the table's classic references.
    pub fn classic_digit(self) -> u32 {
        match self {
            Table::Coil => 0,
            Table::DiscreteInput => 1,
            Table::InputRegister => 3,
            Table::HoldingRegister => 4,
        }
    }

    /// Coils and discrete inputs hold bits; the others 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Only coils and holding registers can be written.
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coil | Table::HoldingRegister)
    }

    fn from_prefix(p: &str) -> Option<Table> {
        Some(match p.to_ascii_lowercase().as_str() {
            "coil" => Table::Coil,
            "di" | "discrete" => Table::DiscreteInput,
            "ir" | "input" => Table::InputRegister,
            "hr" | "holding" => Table::HoldingRegister,
            _ => return None,
        })
    }

    fn from_classic_digit(d: u32) -> Option<Table> {
        Some(match d {
            0 => Table::Coil,
            1 => Table::DiscreteInput,
            3 => Table::InputRegister,
            4 => Table::HoldingRegister,
            _ => return None,
        })
    }
}

/// A checked tag address: which table, where, and how much of it the tag spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParsedAddress {
    pub table: Table,
    /// Zero-based offset on the wire.
    pub offset: u16,
    /// Bit within a register (0 = least significant), for bools in registers.
    pub bit: Option<u8>,
    /// Registers (or, in bit tables, bits) the tag spans; at least 1.
    pub count: u16,
}

impl ParsedAddress {
    /// One past the last register (or bit) the tag covers.
    pub fn end(&self) -> u32 {
        self.offset as u32 + self.count as u32
    }
}

impl fmt::Display for ParsedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.table.prefix(), self.offset)?;
        if let Some(b) = self.bit {
            write!(f, ".{b}")?;
        }
        Ok(())
    }
}

/// Parses an address into table, zero-based offset and optional bit, without
/// looking at the data type.
pub fn parse(address: &str) -> Result<(Table, u16, Option<u8>), String> {
    let s = address.trim();
    let err = |msg: String| format!("address '{address}': {msg}");
    if s.is_empty() {
        return Err(err("empty address".into()));
    }
    let (prefix, rest) = match s.split_once(':') {
        Some((p, r)) => (Some(p.trim()), r.trim()),
        None => (None, s),
    };
    let (number, bit) = match rest.split_once('.') {
        Some((n, b)) => (n, Some(b)),
        None => (rest, None),
    };
    if number.is_empty() {
        return Err(err("offset is missing".into()));
    }
    if !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("offset '{number}' is not a number")));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| err(format!("offset '{number}' is too large")))?;
    let first_digit = (number.as_bytes()[0] - b'0') as u32;

    let (table, offset) = match prefix {
        Some(p) => {
            let table = Table::from_prefix(p).ok_or_else(|| {
                err(format!(
                    "unknown table '{p}' (use coil, di/discrete, ir/input or hr/holding, \
                     or a classic reference such as 40001)"
                ))
            })?;
            let classic = matches!(number.len(), 5 | 6) && first_digit == table.classic_digit();
            if classic {
                (
                    table,
                    classic_offset(table, number.len(), value).map_err(err)?,
                )
            } else if value > u16::MAX as u64 {
                let d = table.classic_digit();
                return Err(err(format!(
                    "offset {value} is beyond 65535 (classic references of {} are {d}0001-{d}9999 \
                     and {d}00001-{d}65536)",
                    table.name()
                )));
            } else {
                (table, value as u16)
            }
        }
        None => {
            if !matches!(number.len(), 5 | 6) {
                return Err(err(format!(
                    "a bare number must be a classic 5- or 6-digit reference (such as 40001); \
                     for a zero-based offset write a table prefix, e.g. hr:{number}"
                )));
            }
            let table = Table::from_classic_digit(first_digit).ok_or_else(|| {
                err(format!(
                    "classic reference '{number}' starts with {first_digit}: only 0 (coils), \
                     1 (discrete inputs), 3 (input registers) and 4 (holding registers) exist"
                ))
            })?;
            (
                table,
                classic_offset(table, number.len(), value).map_err(err)?,
            )
        }
    };

    let bit = match bit {
        None => None,
        Some(b) => {
            if table.is_bits() {
                return Err(err(format!(
                    "a bit suffix '.{b}' only applies to registers, not {}",
                    table.name()
                )));
            }
            let n: u8 = b
                .parse()
                .ok()
                .filter(|n| *n < 16)
                .ok_or_else(|| err(format!("bit '{b}' must be 0-15")))?;
            Some(n)
        }
    };
    Ok((table, offset, bit))
}

fn classic_offset(table: Table, digits: usize, value: u64) -> Result<u16, String> {
    let digit = table.classic_digit() as u64;
    let (base, max) = if digits == 5 {
        (10_000, 9_999)
    } else {
        (100_000, 65_536)
    };
    let n = value - digit * base;
    if n == 0 || n > max {
        let lo = digit * base + 1;
        let hi = digit * base + max;
        return Err(format!(
            "classic reference {value:0digits$} is outside {} {lo:0digits$}-{hi:0digits$} \
             (classic references are 1-based)",
            table.name()
        ));
    }
    Ok((n - 1) as u16)
}

/// How many registers (or bits) a value of `data_type` spans.
pub fn span(data_type: DataType, length: u32) -> Result<u16, String> {
    Ok(match data_type {
        DataType::Bool | DataType::I16 | DataType::U16 => 1,
        DataType::I32 | DataType::U32 | DataType::F32 => 2,
        DataType::I64 | DataType::F64 => 4,
        DataType::String => {
            if length == 0 || length > MAX_STRING_REGISTERS {
                return Err(format!(
                    "type string needs a length of 1-{MAX_STRING_REGISTERS} registers \
                     (2 characters each), got {length}"
                ));
            }
            length as u16
        }
    })
}

/// Parses `address` and checks that `data_type` (with `length` registers for
/// strings) fits there. Exported as `bifrost_drivers::modbus::validate_address`.
pub fn validate(address: &str, data_type: DataType, length: u32) -> Result<ParsedAddress, String> {
    let (table, offset, bit) = parse(address)?;
    let err = |msg: String| format!("address '{address}': {msg}");
    let count = span(data_type, length).map_err(err)?;
    if table.is_bits() && data_type != DataType::Bool {
        return Err(err(format!(
            "{} hold only bools, not {data_type}",
            table.name()
        )));
    }
    if !table.is_bits() {
        match (data_type, bit) {
            (DataType::Bool, None) => {
                return Err(err(format!(
                    "a bool in {} needs a bit number, e.g. {}:{offset}.0",
                    table.name(),
                    table.prefix()
                )))
            }
            (t, Some(b)) if t != DataType::Bool => {
                return Err(err(format!(
                    "bit suffix '.{b}' only fits type bool, not {t}"
                )))
            }
            _ => {}
        }
    }
    let parsed = ParsedAddress {
        table,
        offset,
        bit,
        count,
    };
    let left = 65_536 - offset as u32;
    if count as u32 > left {
        let unit = if table.is_bits() { "bits" } else { "registers" };
        return Err(err(format!(
            "type {data_type} needs {count} {unit} but address {parsed} leaves {left}"
        )));
    }
    Ok(parsed)
}

/// Everything about a Modbus tag that can be checked without the device:
/// address and span ([`validate`]), writability of the table, scale and
/// deadband. The server should call this when a tag is created or changed.
pub fn validate_tag(tag: &TagSpec) -> Result<ParsedAddress, String> {
    let parsed = validate(&tag.address, tag.data_type, tag.length)?;
    if tag.writable && !parsed.table.is_writable() {
        return Err(format!(
            "address '{}': {} are read-only, the tag cannot be writable",
            tag.address,
            parsed.table.name()
        ));
    }
    if let Some(s) = &tag.scale {
        if !tag.data_type.is_numeric() {
            return Err(format!(
                "scale on a {} tag: only numeric tags scale",
                tag.data_type
            ));
        }
        validate_scale(s)?;
    }
    if let Some(db) = &tag.deadband {
        validate_deadband(db, tag.scale.as_ref(), tag.data_type)?;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;
    use Table::*;

    fn at(a: &str) -> (Table, u16, Option<u8>) {
        parse(a).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn prefixed_offsets_are_zero_based() {
        assert_eq!(at("hr:5"), (HoldingRegister, 5, None));
        assert_eq!(at("holding:0"), (HoldingRegister, 0, None));
        assert_eq!(at("coil:1"), (Coil, 1, None));
        assert_eq!(at("di:7"), (DiscreteInput, 7, None));
        assert_eq!(at("discrete:7"), (DiscreteInput, 7, None));
        assert_eq!(at("ir:65535"), (InputRegister, 65535, None));
        assert_eq!(at("input:12"), (InputRegister, 12, None));
        assert_eq!(at("  HR:12 "), (HoldingRegister, 12, None));
    }

    #[test]
    fn classic_references_are_one_based() {
        assert_eq!(at("00001"), (Coil, 0, None));
        assert_eq!(at("09999"), (Coil, 9998, None));
        assert_eq!(at("10001"), (DiscreteInput, 0, None));
        assert_eq!(at("30001"), (InputRegister, 0, None));
        assert_eq!(at("40001"), (HoldingRegister, 0, None));
        assert_eq!(at("49999"), (HoldingRegister, 9998, None));
        assert_eq!(at("400001"), (HoldingRegister, 0, None));
        assert_eq!(at("465536"), (HoldingRegister, 65535, None));
        assert_eq!(at("000001"), (Coil, 0, None));
        assert_eq!(at("365536"), (InputRegister, 65535, None));
    }

    #[test]
    fn prefix_with_classic_number_equals_the_classic_reference() {
        assert_eq!(at("hr:40001"), at("40001"));
        assert_eq!(at("hr:40001"), (HoldingRegister, 0, None));
        assert_eq!(at("hr:40010"), (HoldingRegister, 9, None));
        assert_eq!(at("hr:400001"), (HoldingRegister, 0, None));
        assert_eq!(at("ir:30001"), (InputRegister, 0, None));
        assert_eq!(at("di:10005"), (DiscreteInput, 4, None));
        assert_eq!(at("coil:00001"), (Coil, 0, None));
        // Five digits not starting with the table's digit: an offset.
        assert_eq!(at("hr:50000"), (HoldingRegister, 50000, None));
        assert_eq!(at("hr:00005"), (HoldingRegister, 5, None));
        // Escapes for offsets that would read as classic.
        assert_eq!(at("hr:040000"), (HoldingRegister, 40000, None));
        assert_eq!(at("hr:440001"), (HoldingRegister, 40000, None));
    }

    #[test]
    fn register_bits_parse() {
        assert_eq!(at("hr:10.3"), (HoldingRegister, 10, Some(3)));
        assert_eq!(at("40011.15"), (HoldingRegister, 10, Some(15)));
        assert!(parse("hr:10.16")
            .unwrap_err()
            .contains("bit '16' must be 0-15"));
        assert!(parse("coil:1.2")
            .unwrap_err()
            .contains("only applies to registers"));
    }

    #[test]
    fn malformed_addresses_say_what_and_where() {
        assert_eq!(
            parse("hr:abc").unwrap_err(),
            "address 'hr:abc': offset 'abc' is not a number"
        );
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("hr:").unwrap_err().contains("missing"));
        assert!(parse("xx:5").unwrap_err().contains("unknown table 'xx'"));
        assert!(parse("5").unwrap_err().contains("bare number"));
        assert!(parse("20001").unwrap_err().contains("starts with 2"));
        assert!(parse("hr:70000").unwrap_err().contains("beyond 65535"));
        assert!(parse("hr:40000").unwrap_err().contains("1-based"));
        assert!(parse("40000").unwrap_err().contains("1-based"));
        assert!(parse("465537").unwrap_err().contains("outside"));
        assert!(parse("hr:300001").unwrap_err().contains("400001-465536"));
        assert!(parse("hr:-1").unwrap_err().contains("not a number"));
    }

    #[test]
    fn types_span_the_right_number_of_registers() {
        assert_eq!(validate("hr:0", I16, 0).unwrap().count, 1);
        assert_eq!(validate("hr:0", U16, 0).unwrap().count, 1);
        assert_eq!(validate("hr:0", I32, 0).unwrap().count, 2);
        assert_eq!(validate("hr:0", U32, 0).unwrap().count, 2);
        assert_eq!(validate("hr:0", F32, 0).unwrap().count, 2);
        assert_eq!(validate("hr:0", I64, 0).unwrap().count, 4);
        assert_eq!(validate("hr:0", F64, 0).unwrap().count, 4);
        assert_eq!(validate("hr:0", String, 10).unwrap().count, 10);
        assert_eq!(validate("coil:0", Bool, 0).unwrap().count, 1);
        assert_eq!(validate("hr:4.2", Bool, 0).unwrap().count, 1);
    }

    #[test]
    fn types_that_do_not_fit_are_rejected() {
        assert_eq!(
            validate("hr:65534", F64, 0).unwrap_err(),
            "address 'hr:65534': type f64 needs 4 registers but address hr:65534 leaves 2"
        );
        assert!(validate("465536", F32, 0).unwrap_err().contains("leaves 1"));
        assert!(validate("hr:65535", U16, 0).is_ok());
        assert!(validate("coil:3", U16, 0)
            .unwrap_err()
            .contains("coils hold only bools"));
        assert!(validate("di:3", F32, 0)
            .unwrap_err()
            .contains("discrete inputs hold only bools"));
        assert!(validate("hr:3", Bool, 0)
            .unwrap_err()
            .contains("needs a bit number"));
        assert!(validate("hr:3.1", U16, 0)
            .unwrap_err()
            .contains("only fits type bool"));
        assert!(validate("hr:3", String, 0)
            .unwrap_err()
            .contains("length of 1-125"));
        assert!(validate("hr:3", String, 126).is_err());
        assert!(validate("hr:65530", String, 7)
            .unwrap_err()
            .contains("leaves 6"));
    }

    fn tag(address: &str, data_type: DataType, writable: bool) -> TagSpec {
        TagSpec {
            name: "t".into(),
            address: address.into(),
            data_type,
            byte_order: Default::default(),
            word_order: Default::default(),
            scale: None,
            deadband: None,
            length: 0,
            writable,
        }
    }

    #[test]
    fn only_coils_and_holding_registers_are_writable() {
        assert!(validate_tag(&tag("coil:1", Bool, true)).is_ok());
        assert!(validate_tag(&tag("hr:1", U16, true)).is_ok());
        assert!(validate_tag(&tag("ir:1", U16, true))
            .unwrap_err()
            .contains("read-only"));
        assert!(validate_tag(&tag("di:1", Bool, true))
            .unwrap_err()
            .contains("read-only"));
        assert!(validate_tag(&tag("ir:1", U16, false)).is_ok());
    }

    #[test]
    fn tag_scale_and_deadband_are_checked() {
        let mut t = tag("hr:1", U16, false);
        t.scale = Some(crate::Scale {
            raw_lo: 1.0,
            raw_hi: 1.0,
            eng_lo: 0.0,
            eng_hi: 1.0,
        });
        assert!(validate_tag(&t).unwrap_err().contains("raw range is empty"));
        let mut t = tag("hr:1", U16, false);
        t.deadband = Some(crate::Deadband {
            value: 1.0,
            percent: true,
        });
        assert!(validate_tag(&t).unwrap_err().contains("needs a scale"));
        let mut t = tag("coil:1", Bool, false);
        t.scale = Some(crate::Scale {
            raw_lo: 0.0,
            raw_hi: 1.0,
            eng_lo: 0.0,
            eng_hi: 1.0,
        });
        assert!(validate_tag(&t).is_err());
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(
            validate("40011.15", Bool, 0).unwrap().to_string(),
            "hr:10.15"
        );
        assert_eq!(validate("00001", Bool, 0).unwrap().to_string(), "coil:0");
    }
}
