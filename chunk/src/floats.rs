//! Float columns (`Float` values). A column starts with a byte naming its
//! [`FloatCodec`]; the writer encodes with each and keeps the smallest.
//!
//! [`FloatCodec::Gorilla`] is the XOR encoding of Facebook's Gorilla paper,
//! written with `bitstream-io`: each value's bits XOR the previous value's;
//! an unchanged value costs one bit, otherwise the meaningful bits are
//! written inside the previous window of leading and trailing zeros, or with
//! a new window (6 bits leading zeros, 6 bits length). It is exact for every
//! bit pattern (NaN payloads, -0.0, infinities) and cheap for slowly
//! changing or repeated values. [`FloatCodec::Pco`] detects an `f32` held in
//! an `f64` (the sine tags) and deltas, and usually wins on noisy signals;
//! [`FloatCodec::PcoF32`] hands pco the `f32`s themselves when every value
//! is one (as from an `f32` tag), which saves up to a third on chunks of a
//! thousand readings (`examples/codec_bench.rs`).

use bitstream_io::{BigEndian, BitRead, BitReader, BitWrite, BitWriter};

use pco::ModeSpec;

use crate::pco_col::{put_pco, read_pco};
use crate::wire::{Reader, Result};

/// How a float column is encoded: its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatCodec {
    /// Gorilla XOR of consecutive values' bits.
    Gorilla = 0,
    /// pco over the `f64`s.
    Pco = 1,
    /// pco over `f32`s, when every value is exactly an `f32`.
    PcoF32 = 2,
}

impl FloatCodec {
    pub const ALL: [FloatCodec; 3] = [FloatCodec::Gorilla, FloatCodec::Pco, FloatCodec::PcoF32];

    pub fn name(self) -> &'static str {
        match self {
            FloatCodec::Gorilla => "gorilla",
            FloatCodec::Pco => "pco",
            FloatCodec::PcoF32 => "pco-f32",
        }
    }
}

/// A column of `values` encoded with `codec` (tag byte included); empty
/// when there are no values. `PcoF32` falls back to `Pco` when a value is
/// not exactly an `f32`.
pub fn encode_floats_with(codec: FloatCodec, values: &[f64]) -> Vec<u8> {
    let mut out = Vec::new();
    if values.is_empty() {
        return out;
    }
    let narrow: Option<Vec<f32>> = match codec {
        FloatCodec::PcoF32 => values.iter().map(|&f| as_f32(f)).collect(),
        _ => None,
    };
    match (codec, narrow) {
        (FloatCodec::Gorilla, _) => {
            out.push(codec as u8);
            put_gorilla(&mut out, values);
        }
        (FloatCodec::PcoF32, Some(narrow)) => {
            out.push(codec as u8);
            put_pco(&mut out, &narrow, ModeSpec::Auto);
        }
        _ => {
            out.push(FloatCodec::Pco as u8);
            put_pco(&mut out, values, ModeSpec::Auto);
        }
    }
    out
}

/// `f` as an `f32`, if that keeps every bit of it. Never for a NaN: how a
/// cast treats NaN payloads may differ between machines, and a chunk may be
/// decoded on another one.
pub(crate) fn as_f32(f: f64) -> Option<f32> {
    let narrow = f as f32;
    (!f.is_nan() && f64::from(narrow).to_bits() == f.to_bits()).then_some(narrow)
}

/// Appends `values` with whichever codec gives the fewest bytes.
/// Appends `values` with whichever codec gives the fewest bytes; Gorilla
/// alone for columns shorter than [`crate::ints::PCO_MIN_VALUES`].
pub(crate) fn put_floats(out: &mut Vec<u8>, values: &[f64]) {
    let candidates: &[FloatCodec] = if values.len() >= crate::ints::PCO_MIN_VALUES {
        &FloatCodec::ALL
    } else {
        &[FloatCodec::Gorilla]
    };
    let best = candidates
        .iter()
        .copied()
        .map(|c| encode_floats_with(c, values))
        .min_by_key(Vec::len)
        .unwrap_or_default();
    out.extend_from_slice(&best);
}

/// Reads a column of `n` floats: the rest of `r`.
pub(crate) fn read_floats(r: &mut Reader, n: usize) -> Result<Vec<f64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let at = *r;
    match r.u8("float codec")? {
        0 => read_gorilla(r, n),
        1 => read_pco(r, n),
        2 => Ok(read_pco::<f32>(r, n)?.into_iter().map(f64::from).collect()),
        c => Err(at.error(format!("unknown float codec {c}"))),
    }
}

/// The window of meaningful bits: leading zeros and length.
#[derive(Clone, Copy)]
struct Window {
    lead: u32,
    len: u32,
}

fn put_gorilla(out: &mut Vec<u8>, values: &[f64]) {
    let mut w = BitWriter::endian(std::mem::take(out), BigEndian);
    let mut prev = values[0].to_bits();
    let mut window: Option<Window> = None;
    write(&mut w, 64, prev);
    for v in &values[1..] {
        let x = v.to_bits() ^ prev;
        prev = v.to_bits();
        put_xor(&mut w, x, &mut window);
    }
    w.byte_align().expect("writing to a Vec");
    *out = w.into_writer();
}

fn put_xor(w: &mut BitWriter<Vec<u8>, BigEndian>, x: u64, window: &mut Option<Window>) {
    if x == 0 {
        return write(w, 1, 0);
    }
    let (lead, trail) = (x.leading_zeros(), x.trailing_zeros());
    match *window {
        Some(win) if lead >= win.lead && 64 - trail <= win.lead + win.len => {
            write(w, 2, 0b10);
            write(w, win.len, x >> (64 - win.lead - win.len));
        }
        _ => {
            let len = 64 - lead - trail;
            write(w, 2, 0b11);
            write(w, 6, lead as u64);
            write(w, 6, len as u64 - 1);
            write(w, len, x >> trail);
            *window = Some(Window { lead, len });
        }
    }
}

fn write(w: &mut BitWriter<Vec<u8>, BigEndian>, bits: u32, value: u64) {
    w.write_var(bits, value).expect("writing to a Vec");
}

fn read_gorilla(r: &mut Reader, n: usize) -> Result<Vec<f64>> {
    let start = *r;
    let mut bits = BitReader::endian(r.rest(), BigEndian);
    let mut values = Vec::with_capacity(n);
    let mut window: Option<Window> = None;
    let mut prev = 0u64;
    while values.len() < n {
        let i = values.len();
        let fail = |what: &str| start.error(format!("value {i} of {n}: {what}"));
        prev = match i {
            0 => read(&mut bits, 64).map_err(|_| fail("bit stream ends early"))?,
            _ => prev ^ read_xor(&mut bits, &mut window).map_err(fail)?,
        };
        values.push(f64::from_bits(prev));
    }
    bits.byte_align();
    match bits.into_reader().len() {
        0 => Ok(values),
        left => Err(start.error(format!("{left} bytes left over after {n} values"))),
    }
}

fn read_xor(
    bits: &mut BitReader<&[u8], BigEndian>,
    window: &mut Option<Window>,
) -> std::result::Result<u64, &'static str> {
    const EOF: &str = "bit stream ends early";
    if read(bits, 1).map_err(|_| EOF)? == 0 {
        return Ok(0);
    }
    if read(bits, 1).map_err(|_| EOF)? == 1 {
        let lead = read(bits, 6).map_err(|_| EOF)? as u32;
        let len = read(bits, 6).map_err(|_| EOF)? as u32 + 1;
        if lead + len > 64 {
            return Err("window of meaningful bits exceeds 64 bits");
        }
        *window = Some(Window { lead, len });
    }
    let win = window.ok_or("reuses a window before one was set")?;
    let m = read(bits, win.len).map_err(|_| EOF)?;
    Ok(m << (64 - win.lead - win.len))
}

fn read(bits: &mut BitReader<&[u8], BigEndian>, n: u32) -> std::io::Result<u64> {
    bits.read_var::<u64>(n)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_with(bytes: &[u8], n: usize) -> Vec<u64> {
        let mut r = Reader::new(bytes, 0, "floats");
        let values = read_floats(&mut r, n).unwrap();
        r.finish().unwrap();
        values.into_iter().map(f64::to_bits).collect()
    }

    proptest! {
        #[test]
        fn every_codec_round_trips_every_bit(bits in proptest::collection::vec(any::<u64>(), 0..300),
                                              narrow in any::<bool>()) {
            let values: Vec<f64> = bits.iter().map(|&b| match narrow {
                true => f64::from(f32::from_bits(b as u32)),
                false => f64::from_bits(b),
            }).collect();
            let bits: Vec<u64> = values.iter().map(|f| f.to_bits()).collect();
            for codec in FloatCodec::ALL {
                let bytes = encode_floats_with(codec, &values);
                prop_assert_eq!(decode_with(&bytes, values.len()), bits.clone());
            }
        }
    }

    #[test]
    fn f32_values_go_to_pco_as_f32_and_others_do_not() {
        let narrow: Vec<f64> = (0..1000)
            .map(|i| f64::from((i as f32 * 0.1).sin()))
            .collect();
        assert_eq!(encode_floats_with(FloatCodec::PcoF32, &narrow)[0], 2);
        let mut best = Vec::new();
        put_floats(&mut best, &narrow);
        assert_eq!(best[0], FloatCodec::PcoF32 as u8);
        let wide: Vec<f64> = narrow.iter().map(|f| f + 1e-12).collect();
        assert_eq!(encode_floats_with(FloatCodec::PcoF32, &wide)[0], 1);
        assert_eq!(as_f32(f64::NAN), None);
    }

    #[test]
    fn gorilla_keeps_repeats_to_a_bit() {
        let bytes = encode_floats_with(FloatCodec::Gorilla, &[21.5; 800]);
        assert_eq!(bytes.len(), 1 + 8 + 100);
    }
}
