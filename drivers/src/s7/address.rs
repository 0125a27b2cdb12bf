//! S7 address notation (`DB10.DBD4:REAL`, `M0.1`, `IW2`, ...) and the fit
//! between a PLC type and a tag's Bifrost data type, plus the pure decoding
//! and encoding of a PLC type's bytes.
//!
//! Pure: no I/O, no protocol framing (that is [`super::codec`]). Everything
//! here is big-endian, as S7 memory is; a tag's byte and word order settings
//! do not apply.

use std::fmt;

use crate::{DataType, Value};

/// An S7 memory area, with its S7comm area code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    /// Process inputs (`I`, German `E`), code 0x81.
    Input,
    /// Process outputs (`Q`, German `A`), code 0x82.
    Output,
    /// Flags / merkers (`M`), code 0x83.
    Merker,
    /// A data block (`DBn`), code 0x84.
    Db(u16),
}

impl Area {
    /// The area byte of an S7-Any address item.
    pub fn code(self) -> u8 {
        match self {
            Area::Input => 0x81,
            Area::Output => 0x82,
            Area::Merker => 0x83,
            Area::Db(_) => 0x84,
        }
    }

    /// The DB number of an address item (0 outside data blocks).
    pub fn db_number(self) -> u16 {
        match self {
            Area::Db(n) => n,
            _ => 0,
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Area::Input => f.write_str("I"),
            Area::Output => f.write_str("Q"),
            Area::Merker => f.write_str("M"),
            Area::Db(n) => write!(f, "DB{n}"),
        }
    }
}

/// A PLC data type as written after the colon (`:REAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlcType {
    Bool,
    Byte,
    Sint,
    Word,
    Int,
    Uint,
    Dword,
    Dint,
    Udint,
    Real,
    Lreal,
    Lint,
    /// S7 STRING with this maximum length: 2 header bytes (max, actual) and
    /// `n` characters.
    String(u8),
}

impl PlcType {
    /// Bytes the type occupies in PLC memory (a BOOL reads its byte).
    pub fn size(self) -> u32 {
        match self {
            PlcType::Bool | PlcType::Byte | PlcType::Sint => 1,
            PlcType::Word | PlcType::Int | PlcType::Uint => 2,
            PlcType::Dword | PlcType::Dint | PlcType::Udint | PlcType::Real => 4,
            PlcType::Lreal | PlcType::Lint => 8,
            PlcType::String(n) => n as u32 + 2,
        }
    }

    fn name(self) -> String {
        match self {
            PlcType::String(n) => format!("STRING[{n}]"),
            other => format!("{other:?}").to_ascii_uppercase(),
        }
    }

    /// The width letter that names this type's size, if S7 has one
    /// (`X`, `B`, `W`, `D`); `None` for LREAL, LINT and STRING.
    fn width(self) -> Option<Width> {
        match self.size() {
            _ if self == PlcType::Bool => Some(Width::Bit),
            1 => Some(Width::Byte),
            2 => Some(Width::Word),
            4 => Some(Width::Dword),
            _ => None,
        }
    }

    /// Range of an integer type.
    fn int_range(self) -> Option<(i64, i64)> {
        Some(match self {
            PlcType::Byte => (0, u8::MAX as i64),
            PlcType::Sint => (i8::MIN as i64, i8::MAX as i64),
            PlcType::Word | PlcType::Uint => (0, u16::MAX as i64),
            PlcType::Int => (i16::MIN as i64, i16::MAX as i64),
            PlcType::Dword | PlcType::Udint => (0, u32::MAX as i64),
            PlcType::Dint => (i32::MIN as i64, i32::MAX as i64),
            PlcType::Lint => (i64::MIN, i64::MAX),
            _ => return None,
        })
    }

    fn parse(s: &str) -> Result<PlcType, String> {
        let up = s.trim().to_ascii_uppercase();
        if let Some(rest) = up.strip_prefix("STRING") {
            return parse_string_length(rest).map(PlcType::String);
        }
        Ok(match up.as_str() {
            "BOOL" => PlcType::Bool,
            "BYTE" | "USINT" => PlcType::Byte,
            "SINT" => PlcType::Sint,
            "WORD" => PlcType::Word,
            "INT" => PlcType::Int,
            "UINT" => PlcType::Uint,
            "DWORD" => PlcType::Dword,
            "DINT" => PlcType::Dint,
            "UDINT" => PlcType::Udint,
            "REAL" => PlcType::Real,
            "LREAL" => PlcType::Lreal,
            "LINT" => PlcType::Lint,
            _ => {
                return Err(format!(
                    "unknown PLC type '{s}' (expected BOOL, BYTE, USINT, SINT, WORD, INT, UINT, \
                     DWORD, DINT, UDINT, REAL, LREAL, LINT or STRING[n])"
                ))
            }
        })
    }
}

/// Default maximum length of a STRING without `[n]`, as in STEP 7.
pub const DEFAULT_STRING_LENGTH: u8 = 254;

fn parse_string_length(rest: &str) -> Result<u8, String> {
    if rest.is_empty() {
        return Ok(DEFAULT_STRING_LENGTH);
    }
    let n = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| format!("STRING length must be written STRING[n], not STRING{rest}"))?;
    n.trim()
        .parse::<u8>()
        .ok()
        .filter(|n| (1..=254).contains(n))
        .ok_or_else(|| format!("STRING[{n}]: the length must be 1-254"))
}

/// The width letter of an address (`DBX`, `DBB`, `MW`, `ID`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    Bit,
    Byte,
    Word,
    Dword,
}

/// A parsed S7 address: where the bytes are and what they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S7Address {
    pub area: Area,
    /// First byte.
    pub byte: u32,
    /// Bit 0-7 within `byte`, for BOOL.
    pub bit: Option<u8>,
    pub plc_type: PlcType,
}

impl S7Address {
    /// Bytes read for this address.
    pub fn size(&self) -> u32 {
        self.plc_type.size()
    }

    /// One past the last byte.
    pub fn end(&self) -> u32 {
        self.byte + self.size()
    }
}

impl fmt::Display for S7Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if matches!(self.area, Area::Db(_)) {
            "."
        } else {
            ""
        };
        match self.bit {
            Some(bit) => write!(f, "{}{sep}{}.{bit}", self.area, self.byte),
            None => write!(
                f,
                "{}{sep}{}:{}",
                self.area,
                self.byte,
                self.plc_type.name()
            ),
        }
    }
}

/// Largest byte offset an S7-Any item can address (a 3-byte bit address).
pub const MAX_BYTE_OFFSET: u32 = (1 << 21) - 1;

/// Parses `address` for a tag of `data_type`. `string_length` (the tag's
/// `length`) is the STRING maximum when the address gives none. Errors name
/// the address and say what is wrong.
pub fn parse(address: &str, data_type: DataType, string_length: u32) -> Result<S7Address, String> {
    parse_inner(address, data_type, string_length).map_err(|e| format!("address '{address}': {e}"))
}

fn parse_inner(
    address: &str,
    data_type: DataType,
    string_length: u32,
) -> Result<S7Address, String> {
    let text = address.trim().to_ascii_uppercase();
    let (location, suffix) = match text.split_once(':') {
        Some((l, t)) => (l.trim(), Some(t)),
        None => (text.as_str(), None),
    };
    if location.is_empty() {
        return Err("empty address (expected e.g. DB10.DBD4:REAL, M0.1, IW2)".into());
    }
    let (area, width, rest) = split_area(location)?;
    let (byte, bit) = parse_offset(rest, width)?;
    let plc_type = match suffix {
        Some(t) => PlcType::parse(t)?,
        None => default_type(width, data_type, string_length)?,
    };
    check_width(width, plc_type)?;
    check_fit(plc_type, data_type)?;
    let a = S7Address {
        area,
        byte,
        bit,
        plc_type,
    };
    if a.end() - 1 > MAX_BYTE_OFFSET {
        return Err(format!(
            "byte offset {byte} is beyond S7's largest, {MAX_BYTE_OFFSET}"
        ));
    }
    Ok(a)
}

/// Splits `DB10.DBW4` into (DB10, Word, "4"), `M0.1` into (M, Bit, "0.1").
fn split_area(location: &str) -> Result<(Area, Width, &str), String> {
    if let Some(rest) = location.strip_prefix("DB") {
        let (number, item) = rest
            .split_once('.')
            .ok_or("a data block address needs an item after the DB number: DB1.DBW2")?;
        let db: u16 = number
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("DB number '{number}' must be 1-65535"))?;
        let item = item
            .strip_prefix("DB")
            .ok_or_else(|| format!("'{item}' must start with DBX, DBB, DBW or DBD"))?;
        let (width, offset) = split_width(item, true)?;
        return Ok((Area::Db(db), width, offset));
    }
    let mut chars = location.chars();
    let area = match chars.next() {
        Some('M') => Area::Merker,
        Some('I' | 'E') => Area::Input,
        Some('Q' | 'A') => Area::Output,
        _ => {
            return Err(
                "unknown area (expected DBn.DBX/DBB/DBW/DBD, M, I (E), Q (A); timers and \
                 counters are not supported)"
                    .into(),
            )
        }
    };
    let (width, offset) = split_width(chars.as_str(), false)?;
    Ok((area, width, offset))
}

fn split_width(item: &str, in_db: bool) -> Result<(Width, &str), String> {
    let mut chars = item.chars();
    let width = match chars.next() {
        Some('X') if in_db => Width::Bit,
        Some('B') => Width::Byte,
        Some('W') => Width::Word,
        Some('D') => Width::Dword,
        Some(c) if c.is_ascii_digit() && !in_db => return Ok((Width::Bit, item)),
        _ if in_db => return Err("expected DBX, DBB, DBW or DBD after the DB number".into()),
        _ => return Err("expected a byte.bit (M0.1) or a width letter B, W, D (MW10)".into()),
    };
    Ok((width, chars.as_str()))
}

fn parse_offset(rest: &str, width: Width) -> Result<(u32, Option<u8>), String> {
    let number = |s: &str, what: &str| -> Result<u32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{what} '{s}' is not a number"));
        }
        s.parse::<u32>()
            .map_err(|_| format!("{what} '{s}' is too large"))
    };
    match (width, rest.split_once('.')) {
        (Width::Bit, Some((byte, bit))) => {
            let bit = number(bit, "bit")?;
            if bit > 7 {
                return Err(format!("bit {bit} must be 0-7"));
            }
            Ok((number(byte, "byte offset")?, Some(bit as u8)))
        }
        (Width::Bit, None) => Err("a bit address needs byte.bit, e.g. DB1.DBX2.3 or M0.1".into()),
        (_, Some(_)) => Err("only bit addresses (DBX, M0.1) take a .bit".into()),
        (_, None) => Ok((number(rest, "byte offset")?, None)),
    }
}

/// The PLC type an address without `:TYPE` means for a tag of `data_type`.
fn default_type(width: Width, data_type: DataType, string_length: u32) -> Result<PlcType, String> {
    use DataType as D;
    Ok(match (width, data_type) {
        (Width::Bit, _) => PlcType::Bool,
        (Width::Byte, D::String) => {
            let n = if string_length == 0 {
                DEFAULT_STRING_LENGTH as u32
            } else {
                string_length
            };
            let n = u8::try_from(n)
                .ok()
                .filter(|n| *n <= 254)
                .ok_or_else(|| format!("string length {n} must be 1-254"))?;
            PlcType::String(n)
        }
        (Width::Byte, _) => PlcType::Byte,
        (Width::Word, D::I16) => PlcType::Int,
        (Width::Word, D::U16) => PlcType::Word,
        (Width::Dword, D::F32) => PlcType::Real,
        (Width::Dword, D::I32) => PlcType::Dint,
        (Width::Dword, D::U32) => PlcType::Dword,
        (w, t) => {
            let hint = match w {
                Width::Word => "add :INT or :WORD",
                _ => "add :REAL, :DINT or :DWORD",
            };
            return Err(format!(
                "a {t} tag needs the PLC type spelt out here: {hint}"
            ));
        }
    })
}

fn check_width(width: Width, plc_type: PlcType) -> Result<(), String> {
    match (plc_type.width(), width) {
        (Some(w), _) if w == width => Ok(()),
        (Some(Width::Bit), _) => Err("BOOL needs a bit address (DBX2.3, M0.1)".into()),
        (None, w) if w != Width::Bit => Ok(()),
        _ => Err(format!(
            "{} does not fit the width letter {} (B: 1 byte, W: 2, D: 4, X: a bit; LREAL, LINT \
             and STRING take any of B, W, D)",
            plc_type.name(),
            match width {
                Width::Bit => "X (a bit)",
                Width::Byte => "B",
                Width::Word => "W",
                Width::Dword => "D",
            }
        )),
    }
}

/// Whether a tag of `data_type` can hold every value of `plc_type`.
fn check_fit(plc_type: PlcType, data_type: DataType) -> Result<(), String> {
    let fits = match (plc_type, data_type) {
        (PlcType::Bool, t) => t == DataType::Bool,
        (PlcType::String(_), t) => t == DataType::String,
        (PlcType::Real, t) => matches!(t, DataType::F32 | DataType::F64),
        (PlcType::Lreal, t) => t == DataType::F64,
        (p, t) => {
            let (lo, hi) = p.int_range().unwrap_or((0, 0));
            match t {
                // Floats hold integers exactly up to their mantissa.
                DataType::F32 => lo >= -(1 << 24) && hi <= 1 << 24,
                DataType::F64 => lo >= -(1 << 53) && hi <= 1 << 53,
                DataType::Bool | DataType::String => false,
                t => t
                    .raw_range()
                    .is_some_and(|(tlo, thi)| tlo <= lo as f64 && hi as f64 <= thi),
            }
        }
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "PLC type {} does not fit a {data_type} tag",
            plc_type.name()
        ))
    }
}

/// Decodes `bytes` (exactly [`S7Address::size`] of them) as the address's
/// PLC type.
pub fn decode(a: &S7Address, bytes: &[u8]) -> Result<Value, String> {
    let need = a.size() as usize;
    if bytes.len() != need {
        return Err(format!(
            "{a}: {} bytes for a {need}-byte value",
            bytes.len()
        ));
    }
    let arr = |n: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[8 - n..].copy_from_slice(&bytes[..n]);
        b
    };
    Ok(match a.plc_type {
        PlcType::Bool => Value::Bool(bytes[0] >> a.bit.unwrap_or(0) & 1 == 1),
        PlcType::Byte => Value::Int(bytes[0] as i64),
        PlcType::Sint => Value::Int(bytes[0] as i8 as i64),
        PlcType::Word | PlcType::Uint => {
            Value::Int(u16::from_be_bytes([bytes[0], bytes[1]]) as i64)
        }
        PlcType::Int => Value::Int(i16::from_be_bytes([bytes[0], bytes[1]]) as i64),
        PlcType::Dword | PlcType::Udint => Value::Int(u64::from_be_bytes(arr(4)) as i64),
        PlcType::Dint => Value::Int(u64::from_be_bytes(arr(4)) as u32 as i32 as i64),
        PlcType::Real => Value::Float(f32::from_bits(u64::from_be_bytes(arr(4)) as u32) as f64),
        PlcType::Lreal => Value::Float(f64::from_be_bytes(arr(8))),
        PlcType::Lint => Value::Int(i64::from_be_bytes(arr(8))),
        PlcType::String(_) => Value::Text(decode_string(a, bytes)?),
    })
}

fn decode_string(a: &S7Address, bytes: &[u8]) -> Result<String, String> {
    let (max, actual) = (bytes[0] as usize, bytes[1] as usize);
    let room = bytes.len() - 2;
    if actual > max.max(room) || actual > room {
        return Err(format!(
            "{a}: STRING header says {actual} characters of {max}, but only {room} were read"
        ));
    }
    // S7 strings are single-byte (Latin-1 on the PLC side): map bytes to chars.
    Ok(bytes[2..2 + actual].iter().map(|&b| b as char).collect())
}

/// Encodes a raw value (already scaled and checked by the caller) as the
/// address's PLC type. BOOL encodes as one byte 0/1 (the bit item's data).
pub fn encode(a: &S7Address, raw: &Value) -> Result<Vec<u8>, String> {
    let int = || -> Result<i64, String> {
        let i = match raw {
            Value::Int(i) => *i,
            Value::Float(f) if f.fract() == 0.0 && f.is_finite() => *f as i64,
            other => {
                return Err(format!(
                    "{} needs an integer, got {other}",
                    a.plc_type.name()
                ))
            }
        };
        let (lo, hi) = a.plc_type.int_range().unwrap_or((i64::MIN, i64::MAX));
        if i < lo || i > hi {
            return Err(format!(
                "{i} is outside the range of {} ({lo}..={hi})",
                a.plc_type.name()
            ));
        }
        Ok(i)
    };
    let float = || match raw {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        other => Err(format!("{} needs a number, got {other}", a.plc_type.name())),
    };
    Ok(match a.plc_type {
        PlcType::Bool => match raw {
            Value::Bool(b) => vec![*b as u8],
            other => return Err(format!("BOOL needs true/false, got {other}")),
        },
        PlcType::Byte | PlcType::Sint => vec![int()? as u8],
        PlcType::Word | PlcType::Uint | PlcType::Int => (int()? as u16).to_be_bytes().to_vec(),
        PlcType::Dword | PlcType::Udint | PlcType::Dint => (int()? as u32).to_be_bytes().to_vec(),
        PlcType::Lint => int()?.to_be_bytes().to_vec(),
        PlcType::Real => {
            let f = float()?;
            if f.is_finite() && f.abs() > f32::MAX as f64 {
                return Err(format!("{f} is outside the range of REAL"));
            }
            (f as f32).to_be_bytes().to_vec()
        }
        PlcType::Lreal => float()?.to_be_bytes().to_vec(),
        PlcType::String(max) => encode_string(raw, max)?,
    })
}

fn encode_string(raw: &Value, max: u8) -> Result<Vec<u8>, String> {
    let text = match raw {
        Value::Text(t) => t.clone(),
        other => other.to_string(),
    };
    let mut out = vec![max, 0];
    for c in text.chars() {
        let b = u8::try_from(c as u32)
            .map_err(|_| format!("'{c}' cannot be written to an S7 STRING (Latin-1 only)"))?;
        out.push(b);
    }
    let len = out.len() - 2;
    if len > max as usize {
        return Err(format!("{len} characters do not fit STRING[{max}]"));
    }
    out[1] = len as u8;
    // Write the header and the characters only; the rest of the string's
    // room keeps whatever it held, as in the PLC.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    fn p(a: &str, t: DataType) -> S7Address {
        parse(a, t, 0).unwrap_or_else(|e| panic!("{e}"))
    }

    fn e(a: &str, t: DataType) -> std::string::String {
        parse(a, t, 0).unwrap_err()
    }

    #[test]
    fn data_block_addresses_parse() {
        let a = p("DB10.DBD4:REAL", F32);
        assert_eq!(
            (a.area, a.byte, a.bit, a.plc_type),
            (Area::Db(10), 4, None, PlcType::Real)
        );
        let a = p("db1.dbx2.3", Bool);
        assert_eq!(
            (a.area, a.byte, a.bit, a.plc_type),
            (Area::Db(1), 2, Some(3), PlcType::Bool)
        );
        assert_eq!(p("DB1.DBB0", U16).plc_type, PlcType::Byte);
        assert_eq!(p("DB1.DBW2", I16).plc_type, PlcType::Int);
        assert_eq!(p("DB1.DBW2", U16).plc_type, PlcType::Word);
        assert_eq!(p("DB1.DBD4", I32).plc_type, PlcType::Dint);
        assert_eq!(p("DB1.DBD4", U32).plc_type, PlcType::Dword);
        assert_eq!(p("DB1.DBB8:LREAL", F64).size(), 8);
        assert_eq!(p("DB1.DBD8:LREAL", F64).size(), 8);
        assert_eq!(p("DB1.DBB20:STRING[16]", String).size(), 18);
        assert_eq!(p("DB1.DBB20:STRING", String).size(), 256);
        assert_eq!(
            parse("DB1.DBB20", String, 10).unwrap().plc_type,
            PlcType::String(10)
        );
        assert_eq!(p(" DB1.DBW2 : int ", I32).plc_type, PlcType::Int);
    }

    #[test]
    fn merker_input_output_addresses_parse_with_german_letters() {
        let a = p("M0.1", Bool);
        assert_eq!((a.area, a.byte, a.bit), (Area::Merker, 0, Some(1)));
        assert_eq!(p("MB10", U16).area, Area::Merker);
        assert_eq!(p("MW10", I16).plc_type, PlcType::Int);
        assert_eq!(p("MD10:REAL", F32).plc_type, PlcType::Real);
        assert_eq!(p("I0.0", Bool).area, Area::Input);
        assert_eq!(p("E0.7", Bool).bit, Some(7));
        assert_eq!(p("EW2", U16).area, Area::Input);
        assert_eq!(p("Q1.0", Bool).area, Area::Output);
        assert_eq!(p("A1.0", Bool).area, Area::Output);
        assert_eq!(p("QD4:DINT", I64).area, Area::Output);
        assert_eq!(p("IB3", I16).area.code(), 0x81);
    }

    #[test]
    fn bad_addresses_say_what_and_where() {
        let cases = [
            ("DB0.DBW0", U16, "DB number '0'"),
            ("DB1.DBQ0", U16, "DBX, DBB, DBW or DBD"),
            ("DB1", U16, "needs an item"),
            ("DB1.DBX2", Bool, "byte.bit"),
            ("DB1.DBX2.8", Bool, "bit 8 must be 0-7"),
            ("DB1.DBW2.1", U16, "only bit addresses"),
            ("DB1.DBWx", U16, "byte offset 'X' is not a number"),
            ("T5", U16, "unknown area"),
            ("", U16, "empty address"),
            ("DB1.DBW2:REAL", F32, "REAL does not fit the width letter W"),
            ("DB1.DBX0.0:INT", I16, "does not fit the width letter X"),
            ("DB1.DBW0:BOOL", Bool, "BOOL needs a bit address"),
            ("DB1.DBD0:FLOAT", F32, "unknown PLC type 'FLOAT'"),
            ("DB1.DBB0:STRING[300]", String, "1-254"),
            ("DB1.DBD0:DWORD", I32, "DWORD does not fit a i32 tag"),
            ("DB1.DBD0:REAL", I32, "REAL does not fit"),
            ("DB1.DBB0:LREAL", F32, "LREAL does not fit a f32 tag"),
            ("DB1.DBW0", I32, "add :INT or :WORD"),
            ("DB1.DBD0", I64, "add :REAL, :DINT or :DWORD"),
            ("M0.1", U16, "BOOL does not fit a u16 tag"),
            ("DB1.DBB99999999", U16, "beyond S7's largest"),
        ];
        for (addr, t, want) in cases {
            let got = e(addr, t);
            assert!(got.contains(want), "{addr}: {got} (wanted '{want}')");
            assert!(got.starts_with(&format!("address '{addr}'")), "{got}");
        }
    }

    #[test]
    fn types_fit_wider_tags_only() {
        assert!(parse("DB1.DBB0", I16, 0).is_ok()); // BYTE 0..255 in i16
        assert!(parse("DB1.DBB0:SINT", U16, 0).is_err());
        assert!(parse("DB1.DBW0:WORD", I32, 0).is_ok());
        assert!(parse("DB1.DBW0:WORD", F32, 0).is_ok());
        assert!(parse("DB1.DBD0:DINT", F32, 0).is_err()); // not exact
        assert!(parse("DB1.DBD0:DINT", F64, 0).is_ok());
        assert!(parse("DB1.DBB0:LINT", F64, 0).is_err());
        assert!(parse("DB1.DBD0:REAL", F64, 0).is_ok());
    }

    #[test]
    fn values_decode_and_encode_big_endian() {
        let a = p("DB1.DBD0:REAL", F32);
        assert_eq!(
            decode(&a, &[0x42, 0xF6, 0xE9, 0x79]).unwrap(),
            Value::Float(123.456f32 as f64)
        );
        assert_eq!(
            encode(&a, &Value::Float(123.456)).unwrap(),
            vec![0x42, 0xF6, 0xE9, 0x79]
        );
        let a = p("DB1.DBD0:DINT", I32);
        assert_eq!(
            decode(&a, &[0xFF, 0xFF, 0xFF, 0xFE]).unwrap(),
            Value::Int(-2)
        );
        let a = p("DB1.DBW0:INT", I16);
        assert_eq!(encode(&a, &Value::Int(-2)).unwrap(), vec![0xFF, 0xFE]);
        assert!(encode(&a, &Value::Int(40000))
            .unwrap_err()
            .contains("outside the range of INT"));
        let a = p("DB1.DBX0.5", Bool);
        assert_eq!(decode(&a, &[0b0010_0000]).unwrap(), Value::Bool(true));
        assert_eq!(decode(&a, &[0b1101_1111]).unwrap(), Value::Bool(false));
        let a = p("DB1.DBB0:STRING[4]", String);
        assert_eq!(
            decode(&a, &[4, 2, b'h', b'i', 0, 0]).unwrap(),
            Value::Text("hi".into())
        );
        assert!(decode(&a, &[4, 9, b'h', b'i', 0, 0])
            .unwrap_err()
            .contains("9 characters"));
        assert!(decode(&a, &[4]).is_err());
        assert_eq!(
            encode(&a, &Value::Text("abc".into())).unwrap(),
            vec![4, 3, b'a', b'b', b'c']
        );
        assert!(encode(&a, &Value::Text("abcde".into()))
            .unwrap_err()
            .contains("do not fit"));
        let a = p("DB1.DBB0:LREAL", F64);
        assert_eq!(
            decode(&a, &(-9876.54321f64).to_be_bytes()).unwrap(),
            Value::Float(-9876.54321)
        );
    }
}
