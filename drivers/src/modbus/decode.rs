//! Pure conversions between Modbus registers and values.
//!
//! A register is a 16-bit word; Modbus sends it high byte first, and
//! tokio-modbus hands it to us as a `u16`. Values wider than one register are
//! laid out differently by different vendors, so each tag names a byte order
//! (within each register) and a word order (of the registers). Writing the
//! value's big-endian bytes as `A B C D` (most significant first):
//!
//! | byte order | word order | registers on the wire | common name |
//! |------------|------------|-----------------------|-------------|
//! | big        | big        | `AB CD`  (default)    | ABCD        |
//! | big        | little     | `CD AB`               | CDAB        |
//! | little     | big        | `BA DC`               | BADC        |
//! | little     | little     | `DC BA`               | DCBA        |
//!
//! For four-register types "little word order" reverses all four registers
//! (`GH EF CD AB` for big byte order). Single-register types only honour the
//! byte order.
//!
//! A bool at `hr:N.B` is bit B (0 = least significant) of the register read
//! as a u16 in the tag's byte order, so it agrees with reading `hr:N` as u16.
//!
//! Strings hold two characters per register in register order (word order does
//! not apply); byte order says whether the first character of each pair is the
//! high byte (big, the usual) or the low byte. The text ends at the first NUL,
//! trailing blanks are trimmed, and bytes that are not UTF-8 are replaced by
//! U+FFFD.
//!
//! f32 values are widened to f64 through their shortest decimal form, so a
//! device's `123.456f32` is reported as `123.456`, not `123.45600128173828`;
//! writing that f64 back encodes the same f32 bits.

use crate::scaling::range_error;
use crate::{DataType, Order, Value};

/// Bytes of the value, most significant first, from its registers.
fn words_to_bytes(words: &[u16], byte_order: Order, word_order: Order) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 2);
    let mut push = |w: u16| {
        let [hi, lo] = w.to_be_bytes();
        match byte_order {
            Order::Big => out.extend_from_slice(&[hi, lo]),
            Order::Little => out.extend_from_slice(&[lo, hi]),
        }
    };
    match word_order {
        Order::Big => words.iter().copied().for_each(&mut push),
        Order::Little => words.iter().rev().copied().for_each(&mut push),
    }
    out
}

/// Registers for the value's bytes (most significant first); inverse of
/// [`words_to_bytes`].
fn bytes_to_words(bytes: &[u8], byte_order: Order, word_order: Order) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let (a, b) = (c[0], c.get(1).copied().unwrap_or(0));
            match byte_order {
                Order::Big => u16::from_be_bytes([a, b]),
                Order::Little => u16::from_be_bytes([b, a]),
            }
        })
        .collect();
    if word_order == Order::Little {
        words.reverse();
    }
    words
}

/// Widens an f32 through its shortest decimal representation.
pub fn f32_to_f64(x: f32) -> f64 {
    if !x.is_finite() {
        return x as f64;
    }
    format!("{x:?}").parse().unwrap_or(x as f64)
}

fn need(words: &[u16], n: usize, data_type: DataType) -> Result<(), String> {
    if words.len() != n {
        return Err(format!(
            "type {data_type} needs {n} registers, got {}",
            words.len()
        ));
    }
    Ok(())
}

/// Decodes a raw value (before scaling) from the registers a tag spans.
/// `bit` selects a bit of the first register for bools.
pub fn decode(
    words: &[u16],
    data_type: DataType,
    byte_order: Order,
    word_order: Order,
    bit: Option<u8>,
) -> Result<Value, String> {
    let b = |n: usize| -> Result<Vec<u8>, String> {
        need(words, n, data_type)?;
        Ok(words_to_bytes(words, byte_order, word_order))
    };
    Ok(match data_type {
        DataType::Bool => {
            need(words, 1, data_type)?;
            let bit = bit.ok_or("a bool in a register needs a bit number")?;
            Value::Bool(register_bit(words[0], bit, byte_order))
        }
        DataType::I16 => {
            let v = b(1)?;
            Value::Int(i16::from_be_bytes([v[0], v[1]]) as i64)
        }
        DataType::U16 => {
            let v = b(1)?;
            Value::Int(u16::from_be_bytes([v[0], v[1]]) as i64)
        }
        DataType::I32 => Value::Int(i32::from_be_bytes(arr(&b(2)?)) as i64),
        DataType::U32 => Value::Int(u32::from_be_bytes(arr(&b(2)?)) as i64),
        DataType::F32 => Value::Float(f32_to_f64(f32::from_be_bytes(arr(&b(2)?)))),
        DataType::I64 => Value::Int(i64::from_be_bytes(arr(&b(4)?))),
        DataType::F64 => Value::Float(f64::from_be_bytes(arr(&b(4)?))),
        DataType::String => {
            if words.is_empty() {
                return Err("type string needs at least 1 register".into());
            }
            let bytes = words_to_bytes(words, byte_order, Order::Big);
            let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
            let text = String::from_utf8_lossy(&bytes[..end]);
            Value::Text(text.trim_end_matches([' ', '\0']).to_string())
        }
    })
}

/// Bit `bit` (0 = least significant) of a register read as a u16 in
/// `byte_order`: `hr:10.3` means bit 3 of what `hr:10` reads as u16.
pub fn register_bit(word: u16, bit: u8, byte_order: Order) -> bool {
    let v = match byte_order {
        Order::Big => word,
        Order::Little => word.swap_bytes(),
    };
    v >> bit & 1 == 1
}

/// The register `word` with bit `bit` (as in [`register_bit`]) set to `on`.
pub fn with_register_bit(word: u16, bit: u8, byte_order: Order, on: bool) -> u16 {
    let mask = match byte_order {
        Order::Big => 1u16 << bit,
        Order::Little => (1u16 << bit).swap_bytes(),
    };
    if on {
        word | mask
    } else {
        word & !mask
    }
}

fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&v[..N]);
    a
}

/// Encodes a raw value (after inverse scaling, see [`prepare_write`]) into
/// registers. Bools are not encoded here: a coil is written as a coil, a bit
/// in a register by read-modify-write.
pub fn encode(
    raw: &Value,
    data_type: DataType,
    byte_order: Order,
    word_order: Order,
    length: u32,
) -> Result<Vec<u16>, String> {
    let int = || match raw {
        Value::Int(i) => Ok(*i),
        other => Err(format!("type {data_type} needs an integer, got {other}")),
    };
    let float = || match raw {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        other => Err(format!("type {data_type} needs a number, got {other}")),
    };
    let ranged = |i: i64| -> Result<i64, String> {
        let (lo, hi) = data_type.raw_range().unwrap_or((f64::MIN, f64::MAX));
        if (i as f64) < lo || (i as f64) > hi {
            return Err(range_error(&Value::Int(i), data_type));
        }
        Ok(i)
    };
    let bytes: Vec<u8> = match data_type {
        DataType::Bool => return Err("bools are written as coils or register bits".into()),
        DataType::I16 => (ranged(int()?)? as i16).to_be_bytes().to_vec(),
        DataType::U16 => (ranged(int()?)? as u16).to_be_bytes().to_vec(),
        DataType::I32 => (ranged(int()?)? as i32).to_be_bytes().to_vec(),
        DataType::U32 => (ranged(int()?)? as u32).to_be_bytes().to_vec(),
        DataType::I64 => int()?.to_be_bytes().to_vec(),
        DataType::F32 => {
            let f = float()?;
            if f.is_finite() && f.abs() > f32::MAX as f64 {
                return Err(range_error(raw, data_type));
            }
            (f as f32).to_be_bytes().to_vec()
        }
        DataType::F64 => float()?.to_be_bytes().to_vec(),
        DataType::String => {
            let Value::Text(t) = raw else {
                return Err(format!("type string needs text, got {raw}"));
            };
            let cap = length as usize * 2;
            if t.len() > cap {
                return Err(format!(
                    "text of {} bytes does not fit {length} registers ({cap} bytes)",
                    t.len()
                ));
            }
            let mut b = t.as_bytes().to_vec();
            b.resize(cap, 0);
            return Ok(bytes_to_words(&b, byte_order, Order::Big));
        }
    };
    Ok(bytes_to_words(&bytes, byte_order, word_order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaling::{prepare_write, to_engineering};
    use crate::Scale;
    use DataType::*;
    use Order::{Big, Little};

    const ORDERS: [(Order, Order, &str); 4] = [
        (Big, Big, "ABCD"),
        (Big, Little, "CDAB"),
        (Little, Big, "BADC"),
        (Little, Little, "DCBA"),
    ];

    #[test]
    fn f32_123_456_in_all_four_orders() {
        // 123.456f32 = 0x42F6E979: A=42 B=F6 C=E9 D=79.
        let expected = [
            ("ABCD", [0x42F6, 0xE979]),
            ("CDAB", [0xE979, 0x42F6]),
            ("BADC", [0xF642, 0x79E9]),
            ("DCBA", [0x79E9, 0xF642]),
        ];
        for ((bo, wo, name), (ename, words)) in ORDERS.iter().zip(expected) {
            assert_eq!(*name, ename);
            assert_eq!(
                decode(&words, F32, *bo, *wo, None).unwrap(),
                Value::Float(123.456),
                "{name}"
            );
            assert_eq!(
                encode(&Value::Float(123.456), F32, *bo, *wo, 0).unwrap(),
                words.to_vec(),
                "{name}"
            );
        }
    }

    #[test]
    fn f64_in_all_four_orders() {
        // 1234.5678f64 = 0x40934A456D5CFAAD.
        let abcd = [0x4093, 0x4A45, 0x6D5C, 0xFAAD];
        let cases = [
            (Big, Big, abcd),
            (Big, Little, [0xFAAD, 0x6D5C, 0x4A45, 0x4093]),
            (Little, Big, [0x9340, 0x454A, 0x5C6D, 0xADFA]),
            (Little, Little, [0xADFA, 0x5C6D, 0x454A, 0x9340]),
        ];
        for (bo, wo, words) in cases {
            assert_eq!(
                decode(&words, F64, bo, wo, None).unwrap(),
                Value::Float(1234.5678)
            );
            assert_eq!(
                encode(&Value::Float(1234.5678), F64, bo, wo, 0).unwrap(),
                words.to_vec()
            );
        }
    }

    #[test]
    fn integers_decode_with_sign_and_order() {
        assert_eq!(
            decode(&[0xFFFE], I16, Big, Big, None).unwrap(),
            Value::Int(-2)
        );
        assert_eq!(
            decode(&[0xFFFE], U16, Big, Big, None).unwrap(),
            Value::Int(65534)
        );
        assert_eq!(
            decode(&[0x3412], U16, Little, Big, None).unwrap(),
            Value::Int(0x1234)
        );
        // -123456 = 0xFFFE1DC0
        assert_eq!(
            decode(&[0xFFFE, 0x1DC0], I32, Big, Big, None).unwrap(),
            Value::Int(-123456)
        );
        assert_eq!(
            decode(&[0x1DC0, 0xFFFE], I32, Big, Little, None).unwrap(),
            Value::Int(-123456)
        );
        assert_eq!(
            decode(&[0xFEFF, 0xC01D], I32, Little, Big, None).unwrap(),
            Value::Int(-123456)
        );
        assert_eq!(
            decode(&[0xC01D, 0xFEFF], I32, Little, Little, None).unwrap(),
            Value::Int(-123456)
        );
        assert_eq!(
            decode(&[0xDEAD, 0xBEEF], U32, Big, Big, None).unwrap(),
            Value::Int(0xDEADBEEF)
        );
        // -1234567890123 = 0xFFFFFEE08E04FB35
        let w = [0xFFFF, 0xFEE0, 0x8E04, 0xFB35];
        assert_eq!(
            decode(&w, I64, Big, Big, None).unwrap(),
            Value::Int(-1234567890123)
        );
        let rev = [0xFB35, 0x8E04, 0xFEE0, 0xFFFF];
        assert_eq!(
            decode(&rev, I64, Big, Little, None).unwrap(),
            Value::Int(-1234567890123)
        );
    }

    #[test]
    fn every_type_round_trips_in_every_order() {
        let values = [
            (I16, Value::Int(-12345)),
            (U16, Value::Int(54321)),
            (I32, Value::Int(-2_000_000_000)),
            (U32, Value::Int(4_000_000_000)),
            (I64, Value::Int(i64::MIN + 7)),
            (F32, Value::Float(-0.15625)),
            (F64, Value::Float(std::f64::consts::PI)),
            (String, Value::Text("Press 3".into())),
        ];
        for (bo, wo, name) in ORDERS {
            for (t, v) in &values {
                let words = encode(v, *t, bo, wo, 4).unwrap();
                assert_eq!(&decode(&words, *t, bo, wo, None).unwrap(), v, "{t} {name}");
            }
        }
    }

    #[test]
    fn register_bits_count_from_the_least_significant() {
        assert_eq!(
            decode(&[0b1000], Bool, Big, Big, Some(3)).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            decode(&[0b1000], Bool, Big, Big, Some(2)).unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            decode(&[0x8000], Bool, Big, Big, Some(15)).unwrap(),
            Value::Bool(true)
        );
        // Little byte order: the bit of the byte-swapped value.
        assert_eq!(
            decode(&[0x0080], Bool, Little, Big, Some(15)).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            decode(&[0x0100], Bool, Little, Big, Some(0)).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(with_register_bit(0x0000, 0, Little, true), 0x0100);
        assert_eq!(with_register_bit(0xFFFF, 15, Big, false), 0x7FFF);
        assert_eq!(with_register_bit(0xFFFF, 15, Little, false), 0xFF7F);
    }

    #[test]
    fn strings_are_two_chars_per_register_and_trimmed() {
        // "HELLO" + NUL padding in 4 registers.
        let w = [0x4845, 0x4C4C, 0x4F00, 0x0000];
        assert_eq!(
            decode(&w, String, Big, Big, None).unwrap(),
            Value::Text("HELLO".into())
        );
        let swapped = [0x4548, 0x4C4C, 0x004F, 0x0000];
        assert_eq!(
            decode(&swapped, String, Little, Big, None).unwrap(),
            Value::Text("HELLO".into())
        );
        // Word order does not reorder strings.
        assert_eq!(
            decode(&w, String, Big, Little, None).unwrap(),
            Value::Text("HELLO".into())
        );
        // Space padding is trimmed; text after the first NUL is dropped.
        let padded = [0x4142, 0x2020];
        assert_eq!(
            decode(&padded, String, Big, Big, None).unwrap(),
            Value::Text("AB".into())
        );
        let junk = [0x4100, 0x4242];
        assert_eq!(
            decode(&junk, String, Big, Big, None).unwrap(),
            Value::Text("A".into())
        );
        assert_eq!(
            encode(&Value::Text("ABC".into()), String, Big, Big, 3).unwrap(),
            vec![0x4142, 0x4300, 0x0000]
        );
        assert_eq!(
            encode(&Value::Text("ABC".into()), String, Little, Big, 2).unwrap(),
            vec![0x4241, 0x0043]
        );
        assert!(encode(&Value::Text("ABCDE".into()), String, Big, Big, 2)
            .unwrap_err()
            .contains("does not fit 2 registers"));
    }

    #[test]
    fn wrong_register_counts_are_errors_not_panics() {
        assert!(decode(&[1], F32, Big, Big, None).is_err());
        assert!(decode(&[1, 2, 3], F64, Big, Big, None).is_err());
        assert!(decode(&[], String, Big, Big, None).is_err());
        assert!(decode(&[1], Bool, Big, Big, None).is_err());
    }

    #[test]
    fn writes_refuse_values_the_type_cannot_hold() {
        assert!(prepare_write(&Value::Int(70000), U16, None)
            .unwrap_err()
            .contains("outside the range of u16 (0 to 65535)"));
        assert!(prepare_write(&Value::Int(-1), U32, None).is_err());
        assert!(prepare_write(&Value::Float(12.5), I16, None)
            .unwrap_err()
            .contains("whole number"));
        assert!(prepare_write(&Value::Float(1e39), F32, None).is_err());
        assert!(prepare_write(&Value::Float(f64::NAN), F64, None).is_err());
        assert!(prepare_write(&Value::Text("abc".into()), I32, None).is_err());
        assert!(prepare_write(&Value::Text("maybe".into()), Bool, None).is_err());
        assert!(prepare_write(&Value::Bool(true), U16, None).is_err());
        assert_eq!(
            prepare_write(&Value::Text(" 42 ".into()), U16, None).unwrap(),
            Value::Int(42)
        );
        assert_eq!(
            prepare_write(&Value::Float(42.0), U16, None).unwrap(),
            Value::Int(42)
        );
        assert_eq!(
            prepare_write(&Value::Int(i64::MAX), I64, None).unwrap(),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            prepare_write(&Value::Text("on".into()), Bool, None).unwrap(),
            Value::Bool(true)
        );
        assert!(encode(&Value::Int(70000), U16, Big, Big, 0).is_err());
    }

    #[test]
    fn writes_apply_the_inverse_scale_and_round() {
        let s = Scale {
            raw_lo: 0.0,
            raw_hi: 1000.0,
            eng_lo: 0.0,
            eng_hi: 100.0,
        };
        assert_eq!(
            prepare_write(&Value::Float(12.34), U16, Some(&s)).unwrap(),
            Value::Int(123)
        );
        assert_eq!(
            prepare_write(&Value::Int(50), U16, Some(&s)).unwrap(),
            Value::Int(500)
        );
        let err = prepare_write(&Value::Float(7000.0), U16, Some(&s)).unwrap_err();
        assert!(err.contains("raw 70000 after scaling"), "{err}");
        assert_eq!(
            prepare_write(&Value::Float(1.5), F32, Some(&s)).unwrap(),
            Value::Float(15.0)
        );
    }

    #[test]
    fn scaling_marks_raw_values_outside_the_range() {
        let s = Scale {
            raw_lo: 0.0,
            raw_hi: 1000.0,
            eng_lo: 0.0,
            eng_hi: 100.0,
        };
        assert_eq!(
            to_engineering(Value::Int(500), Some(&s)),
            (Value::Float(50.0), true)
        );
        assert_eq!(
            to_engineering(Value::Int(1500), Some(&s)),
            (Value::Float(150.0), false)
        );
        assert_eq!(to_engineering(Value::Int(7), None), (Value::Int(7), true));
    }

    #[test]
    fn f32_widening_keeps_the_decimal_the_device_meant() {
        assert_eq!(f32_to_f64(123.456), 123.456);
        assert_eq!(f32_to_f64(0.1), 0.1);
        assert_eq!(f32_to_f64(1e30), 1e30);
        assert_eq!((f32_to_f64(123.456) as f32).to_bits(), 123.456f32.to_bits());
        assert!(f32_to_f64(f32::NAN).is_nan());
    }
}
