//! Integer columns: timestamps, revisions, server-time offsets and `Int`
//! values. A column starts with a byte naming its [`IntCodec`]; the writer
//! encodes with each codec and keeps the smallest, so a column is never
//! bigger than the best of them plus one byte.
//!
//! [`IntCodec::DeltaRuns`] is the hand-written Gorilla-style codec: the first
//! value, the first delta, then deltas of deltas as zig-zag varints where a
//! run of zeros is written once with its length. A timestamp column polled at
//! an exact period, a counter or a constant is a handful of bytes whatever
//! its length. [`IntCodec::Pco`] wins as soon as the residuals are noisy
//! (poll jitter, random values): it entropy-codes them in about their
//! information content. [`IntCodec::PcoGrid`] is pco told to try its
//! integer-multiple mode with the column's typical step as the base: a
//! jittered timestamp is then a poll number (delta 1) and a latency
//! (stored as is, not as the difference of two latencies), which saves about
//! a bit per reading on timestamps and revisions (`examples/codec_bench.rs`).
//! Arithmetic wraps, so every `i64` (and every `u64` revision, cast)
//! round-trips.

use pco::ModeSpec;

use crate::pco_col::{put_pco, read_pco};
use crate::wire::{put_ivar, put_uvar, unzigzag, zigzag, Reader, Result};

/// How an integer column is encoded: its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntCodec {
    /// First value, first delta, then delta-of-delta varints with zero runs.
    DeltaRuns = 0,
    /// pco, delta order and binning chosen by pco.
    Pco = 1,
    /// pco trying integer multiples of the typical step (see [`grid_bases`]).
    PcoGrid = 2,
}

impl IntCodec {
    pub const ALL: [IntCodec; 3] = [IntCodec::DeltaRuns, IntCodec::Pco, IntCodec::PcoGrid];

    pub fn name(self) -> &'static str {
        match self {
            IntCodec::DeltaRuns => "dod-runs",
            IntCodec::Pco => "pco",
            IntCodec::PcoGrid => "pco-grid",
        }
    }
}

/// A column of `values` encoded with `codec` (tag byte included); empty
/// when there are no values. `PcoGrid` takes the smaller of its bases.
pub fn encode_ints_with(codec: IntCodec, values: &[i64]) -> Vec<u8> {
    match codec {
        IntCodec::PcoGrid => grid_bases(values)
            .into_iter()
            .map(|base| encode(codec, values, ModeSpec::TryIntMult(base)))
            .min_by_key(Vec::len)
            .unwrap_or_else(|| encode(codec, values, ModeSpec::Auto)),
        _ => encode(codec, values, ModeSpec::Auto),
    }
}

fn encode(codec: IntCodec, values: &[i64], mode: ModeSpec) -> Vec<u8> {
    let mut out = Vec::new();
    if values.is_empty() {
        return out;
    }
    out.push(codec as u8);
    match codec {
        IntCodec::DeltaRuns => put_delta_runs(&mut out, values),
        IntCodec::Pco | IntCodec::PcoGrid => put_pco(&mut out, values, mode),
    }
    out
}

/// Bases for pco's integer-multiple mode: the median step between
/// consecutive values, and that rounded to two significant digits (a poll
/// period of 1 s measures 1,000,0xx µs, its grid is 1,000,000). None when
/// the column does not mostly increase.
pub fn grid_bases(values: &[i64]) -> Vec<u64> {
    let mut steps: Vec<u64> = values
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .filter(|&d| d > 1)
        .map(|d| d as u64)
        .collect();
    if steps.len() < values.len() / 2 || steps.is_empty() {
        return Vec::new();
    }
    let mid = steps.len() / 2;
    let median = *steps.select_nth_unstable(mid).1;
    let unit = 10u64.pow(median.ilog10().saturating_sub(1));
    let rounded = (median + unit / 2) / unit * unit;
    let mut bases = vec![rounded, median];
    bases.dedup();
    bases
}

/// pco's smallest column (one byte of format, its chunk and page metadata)
/// is at least this big; a delta-runs column no bigger is kept without
/// trying pco, which saves its encode time on constant-step columns.
const PCO_CANNOT_BEAT: usize = 16;

/// Columns shorter than this are written with the hand-written codecs
/// only: pco's fixed cost eats most of what it could save on them, and
/// trying it several times dominates the encode time of the small runs a
/// flush writes (storage merges them into long chunks later).
pub const PCO_MIN_VALUES: usize = 64;

/// Appends `values` with whichever codec gives the fewest bytes (pco only
/// for columns of [`PCO_MIN_VALUES`] or more).
pub(crate) fn put_ints(out: &mut Vec<u8>, values: &[i64]) {
    let mut best = encode_ints_with(IntCodec::DeltaRuns, values);
    if best.len() > PCO_CANNOT_BEAT && values.len() >= PCO_MIN_VALUES {
        for codec in [IntCodec::Pco, IntCodec::PcoGrid] {
            let pco = encode_ints_with(codec, values);
            if pco.len() < best.len() {
                best = pco;
            }
        }
    }
    out.extend_from_slice(&best);
}

/// Reads a column of `n` integers: the rest of `r`.
pub(crate) fn read_ints(r: &mut Reader, n: usize) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let at = *r;
    match r.u8("integer codec")? {
        0 => read_delta_runs(r, n),
        1 | 2 => read_pco(r, n),
        c => Err(at.error(format!("unknown integer codec {c}"))),
    }
}

fn put_delta_runs(out: &mut Vec<u8>, values: &[i64]) {
    put_ivar(out, values[0]);
    if values.len() < 2 {
        return;
    }
    let first_delta = values[1].wrapping_sub(values[0]);
    put_ivar(out, first_delta);
    let mut zeros = 0u64;
    for dd in deltas_of_deltas(values) {
        if dd == 0 {
            zeros += 1;
            continue;
        }
        put_zeros(out, &mut zeros);
        put_uvar(out, zigzag(dd));
    }
    put_zeros(out, &mut zeros);
}

/// A run of `zeros` zero deltas-of-deltas: a 0, then the run length less one.
fn put_zeros(out: &mut Vec<u8>, zeros: &mut u64) {
    if *zeros > 0 {
        put_uvar(out, 0);
        put_uvar(out, *zeros - 1);
        *zeros = 0;
    }
}

fn deltas_of_deltas(values: &[i64]) -> impl Iterator<Item = i64> + '_ {
    values.windows(3).map(|w| {
        let d1 = w[1].wrapping_sub(w[0]);
        let d2 = w[2].wrapping_sub(w[1]);
        d2.wrapping_sub(d1)
    })
}

fn read_delta_runs(r: &mut Reader, n: usize) -> Result<Vec<i64>> {
    let mut values = Vec::with_capacity(n);
    values.push(r.ivar("first value")?);
    if n < 2 {
        return Ok(values);
    }
    let mut delta = r.ivar("first delta")?;
    values.push(values[0].wrapping_add(delta));
    while values.len() < n {
        let dd = unzigzag(r.uvar("delta of delta")?);
        let repeat = if dd == 0 {
            1 + r.count("zero run", n - values.len() - 1)?
        } else {
            1
        };
        delta = delta.wrapping_add(dd);
        for _ in 0..repeat {
            let last = values[values.len() - 1];
            values.push(last.wrapping_add(delta));
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_with(bytes: &[u8], n: usize) -> Vec<i64> {
        let mut r = Reader::new(bytes, 0, "ints");
        let values = read_ints(&mut r, n).unwrap();
        r.finish().unwrap();
        values
    }

    proptest! {
        #[test]
        fn every_codec_round_trips(values in proptest::collection::vec(any::<i64>(), 0..300),
                                   step in any::<i64>(), regular in any::<bool>()) {
            let values: Vec<i64> = match regular {
                true => (0..values.len() as i64).map(|i| i.wrapping_mul(step)).collect(),
                false => values,
            };
            for codec in IntCodec::ALL {
                let bytes = encode_ints_with(codec, &values);
                prop_assert_eq!(decode_with(&bytes, values.len()), values.clone());
            }
            let mut best = Vec::new();
            put_ints(&mut best, &values);
            let tried: &[IntCodec] = if values.len() >= PCO_MIN_VALUES {
                &IntCodec::ALL
            } else {
                &[IntCodec::DeltaRuns]
            };
            let smallest = tried.iter().map(|c| encode_ints_with(*c, &values).len()).min();
            prop_assert_eq!(best.len(), smallest.unwrap());
        }
    }

    #[test]
    fn pco_cannot_beat_a_tiny_delta_runs_column() {
        for n in 1..200 {
            for values in [vec![7; n], (0..n as i64).map(|i| i * i).collect()] {
                for codec in [IntCodec::Pco, IntCodec::PcoGrid] {
                    let len = encode_ints_with(codec, &values).len();
                    assert!(len >= PCO_CANNOT_BEAT, "{codec:?}, {n} values: {len} bytes");
                }
            }
        }
    }

    #[test]
    fn grid_bases_round_the_median_step() {
        let ts: Vec<i64> = (0..100).map(|i| i * 1_000_000 + (i * 37) % 3000).collect();
        assert_eq!(grid_bases(&ts), vec![1_000_000, 1_000_037]);
        assert_eq!(grid_bases(&[5, 5, 5]), Vec::<u64>::new());
        assert_eq!(grid_bases(&[0, 10_000, 20_000]), vec![10_000]);
    }
}
