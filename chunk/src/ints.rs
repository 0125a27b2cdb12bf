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
//! information content. Arithmetic wraps, so every `i64` (and every `u64`
//! revision, cast) round-trips.

use crate::pco_col::{put_pco, read_pco};
use crate::wire::{put_ivar, put_uvar, unzigzag, zigzag, Reader, Result};

/// How an integer column is encoded: its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntCodec {
    /// First value, first delta, then delta-of-delta varints with zero runs.
    DeltaRuns = 0,
    /// pco, delta order and binning chosen by pco.
    Pco = 1,
}

impl IntCodec {
    pub const ALL: [IntCodec; 2] = [IntCodec::DeltaRuns, IntCodec::Pco];

    pub fn name(self) -> &'static str {
        match self {
            IntCodec::DeltaRuns => "dod-runs",
            IntCodec::Pco => "pco",
        }
    }
}

/// A column of `values` encoded with `codec` (tag byte included); empty
/// when there are no values.
pub fn encode_ints_with(codec: IntCodec, values: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    if values.is_empty() {
        return out;
    }
    out.push(codec as u8);
    match codec {
        IntCodec::DeltaRuns => put_delta_runs(&mut out, values),
        IntCodec::Pco => put_pco(&mut out, values),
    }
    out
}

/// pco's smallest column (one byte of format, its chunk and page metadata)
/// is bigger than this; a delta-runs column this small is kept without
/// trying pco, which saves its encode time on constant-step columns.
const PCO_CANNOT_BEAT: usize = 16;

/// Appends `values` with whichever codec gives the fewest bytes.
pub(crate) fn put_ints(out: &mut Vec<u8>, values: &[i64]) {
    let mut best = encode_ints_with(IntCodec::DeltaRuns, values);
    if best.len() > PCO_CANNOT_BEAT {
        let pco = encode_ints_with(IntCodec::Pco, values);
        if pco.len() < best.len() {
            best = pco;
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
        1 => read_pco(r, n),
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
