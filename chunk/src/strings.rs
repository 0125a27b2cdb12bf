//! String columns. `Text` values repeat (a state name, a recipe), so they
//! get a dictionary of the distinct strings in order of first appearance and
//! the codes as runs. Reading ids are nearly all distinct but share prefixes
//! (`gw1-000123`, `gw1-000124`), so they are front-coded: each id is the
//! length of the prefix it shares with the previous one and the rest.

use std::collections::HashMap;

use crate::runs::{put_runs, read_runs};
use crate::wire::{put_bytes, put_uvar, Reader, Result};

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

pub(crate) fn read_str(r: &mut Reader, what: &str) -> Result<String> {
    let at = *r;
    let bytes = r.bytes(what)?;
    utf8(&at, bytes.to_vec(), what)
}

fn utf8(at: &Reader, bytes: Vec<u8>, what: &str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| at.error(format!("{what} is not UTF-8: {e}")))
}

/// Appends the dictionary of `strings` and their codes as runs.
pub(crate) fn put_dictionary<'a>(out: &mut Vec<u8>, strings: impl IntoIterator<Item = &'a str>) {
    let mut dict: HashMap<&str, u32> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let codes: Vec<u32> = strings
        .into_iter()
        .map(|s| {
            *dict.entry(s).or_insert_with(|| {
                order.push(s);
                order.len() as u32 - 1
            })
        })
        .collect();
    put_uvar(out, order.len() as u64);
    for s in &order {
        put_str(out, s);
    }
    put_runs(out, codes);
}

/// Reads `n` strings written by [`put_dictionary`].
pub(crate) fn read_dictionary(r: &mut Reader, n: usize) -> Result<Vec<String>> {
    let size = r.count("dictionary size", n)?;
    let dict = (0..size)
        .map(|_| read_str(r, "dictionary entry"))
        .collect::<Result<Vec<_>>>()?;
    let codes = read_runs(r, n, size as u32)?;
    Ok(codes
        .into_iter()
        .map(|c| dict[c as usize].clone())
        .collect())
}

/// Appends `strings` front-coded.
pub(crate) fn put_front_coded<'a>(out: &mut Vec<u8>, strings: impl IntoIterator<Item = &'a str>) {
    let mut prev: &[u8] = &[];
    for s in strings {
        let s = s.as_bytes();
        let shared = prev.iter().zip(s).take_while(|(a, b)| a == b).count();
        put_uvar(out, shared as u64);
        put_bytes(out, &s[shared..]);
        prev = s;
    }
}

/// Reads `n` strings written by [`put_front_coded`].
pub(crate) fn read_front_coded(r: &mut Reader, n: usize) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(n.min(r.remaining()));
    for i in 0..n {
        let at = *r;
        let prev = out.last().map_or(&[][..], |s| s.as_bytes());
        let shared = r.count("shared prefix", prev.len())?;
        let mut s = prev[..shared].to_vec();
        s.extend_from_slice(r.bytes("suffix")?);
        out.push(utf8(&at, s, &format!("string {i}"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_and_front_coding_round_trip_and_are_small() {
        let texts = ["idle", "idle", "run", "idle", "", "ünïcode"];
        let mut out = Vec::new();
        put_dictionary(&mut out, texts);
        let got = read_dictionary(&mut Reader::new(&out, 0, "t"), texts.len()).unwrap();
        assert_eq!(got, texts);

        let ids: Vec<String> = (0..100).map(|i| format!("gateway-7-{i:06}")).collect();
        let mut out = Vec::new();
        put_front_coded(&mut out, ids.iter().map(String::as_str));
        assert!(out.len() < 5 * ids.len(), "{} bytes", out.len());
        let got = read_front_coded(&mut Reader::new(&out, 0, "t"), ids.len()).unwrap();
        assert_eq!(got, ids);
    }

    #[test]
    fn a_split_character_is_an_error_not_a_panic() {
        // "é" is two bytes; a shared prefix of one byte plus a stray suffix.
        let mut out = Vec::new();
        put_front_coded(&mut out, ["é"]);
        put_uvar(&mut out, 1);
        put_bytes(&mut out, b"x");
        let e = read_front_coded(&mut Reader::new(&out, 0, "ids"), 2).unwrap_err();
        assert!(e.to_string().contains("string 1 is not UTF-8"), "{e}");
    }
}
