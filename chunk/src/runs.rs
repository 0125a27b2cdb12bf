//! Run-length encoding of small symbols: the value variants, booleans,
//! quality codes, text dictionary codes and id presence. A column of `n`
//! symbols is written as the number of runs, then each run's symbol and
//! length (varints); plant data changes state rarely, so a column is usually
//! one run of a few bytes. The reader checks every symbol against the
//! alphabet and that the runs add up to exactly `n`.

use crate::wire::{put_uvar, Reader, Result};

/// Appends the runs of `symbols`.
pub(crate) fn put_runs(out: &mut Vec<u8>, symbols: impl IntoIterator<Item = u32>) {
    let runs = runs_of(symbols);
    put_uvar(out, runs.len() as u64);
    for (symbol, len) in runs {
        put_uvar(out, symbol as u64);
        put_uvar(out, len as u64);
    }
}

fn runs_of(symbols: impl IntoIterator<Item = u32>) -> Vec<(u32, usize)> {
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for s in symbols {
        match runs.last_mut() {
            Some((last, len)) if *last == s => *len += 1,
            _ => runs.push((s, 1)),
        }
    }
    runs
}

/// Reads runs adding up to `n` symbols, each below `alphabet`, and expands them.
pub(crate) fn read_runs(r: &mut Reader, n: usize, alphabet: u32) -> Result<Vec<u32>> {
    let n_runs = r.count("run count", n)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n_runs {
        let at_symbol = *r;
        let symbol = r.uvar("run symbol")?;
        if symbol >= alphabet as u64 {
            return Err(at_symbol.error(format!("run symbol {symbol} is not below {alphabet}")));
        }
        let len = r.count("run length", n - out.len())?;
        if len == 0 {
            return Err(r.error("a run of length 0"));
        }
        out.resize(out.len() + len, symbol as u32);
    }
    if out.len() != n {
        return Err(r.error(format!("runs cover {} of {n} symbols", out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(symbols: &[u32], alphabet: u32) -> Vec<u8> {
        let mut out = Vec::new();
        put_runs(&mut out, symbols.iter().copied());
        let mut r = Reader::new(&out, 0, "test");
        assert_eq!(read_runs(&mut r, symbols.len(), alphabet).unwrap(), symbols);
        r.finish().unwrap();
        out
    }

    #[test]
    fn runs_round_trip_and_a_constant_column_takes_three_bytes() {
        assert_eq!(round_trip(&[2; 1000], 3).len(), 4);
        round_trip(&[], 1);
        round_trip(&[0, 1, 1, 0, 2, 2, 2], 3);
    }

    #[test]
    fn runs_that_do_not_add_up_or_leave_the_alphabet_are_errors() {
        let mut out = Vec::new();
        put_runs(&mut out, [0, 0, 1]);
        let e = read_runs(&mut Reader::new(&out, 0, "quality"), 4, 2).unwrap_err();
        assert!(e.to_string().contains("cover 3 of 4"), "{e}");
        let e = read_runs(&mut Reader::new(&out, 0, "quality"), 3, 1).unwrap_err();
        assert!(e.to_string().contains("symbol 1 is not below 1"), "{e}");
        let e = read_runs(&mut Reader::new(&out, 0, "quality"), 2, 2).unwrap_err();
        assert!(e.to_string().contains("run length 1 is more than 0"), "{e}");
    }
}
