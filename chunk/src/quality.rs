//! The quality column: a dictionary of the distinct (level, reason) pairs in
//! order of first appearance (the reason is usually empty), then each
//! reading's entry as runs. A chunk of good readings costs five bytes.

use std::collections::HashMap;

use bifrost_model::{Quality, QualityLevel};

use crate::runs::{put_runs, read_runs};
use crate::strings::{put_str, read_str};
use crate::wire::{put_uvar, Reader, Result};

fn level_code(l: QualityLevel) -> u8 {
    match l {
        QualityLevel::Good => 0,
        QualityLevel::Uncertain => 1,
        QualityLevel::Bad => 2,
    }
}

/// Appends the quality column.
pub(crate) fn put_qualities(out: &mut Vec<u8>, qualities: &[&Quality]) {
    let mut index: HashMap<(u8, &str), u32> = HashMap::new();
    let mut dict: Vec<&Quality> = Vec::new();
    // Qualities come in long runs (mostly all good): a reading like the one
    // before it takes its code without a hash lookup.
    let mut last: Option<((u8, &str), u32)> = None;
    let codes: Vec<u32> = qualities
        .iter()
        .map(|q| {
            let key = (level_code(q.level), q.reason.as_str());
            if let Some((_, code)) = last.filter(|(k, _)| same_key(*k, key)) {
                return code;
            }
            let code = *index.entry(key).or_insert_with(|| {
                dict.push(q);
                dict.len() as u32 - 1
            });
            last = Some((key, code));
            code
        })
        .collect();
    put_uvar(out, dict.len() as u64);
    for q in &dict {
        out.push(level_code(q.level));
        put_str(out, &q.reason);
    }
    put_runs(out, codes);
}

/// Whether two (level, reason) keys are equal, without a string comparison
/// call when the reasons are empty (good readings have none).
fn same_key(a: (u8, &str), b: (u8, &str)) -> bool {
    a.0 == b.0 && a.1.len() == b.1.len() && (a.1.is_empty() || a.1 == b.1)
}

/// Reads a quality column of `n` readings.
pub(crate) fn read_qualities(r: &mut Reader, n: usize) -> Result<Vec<Quality>> {
    let size = r.count("quality dictionary size", n)?;
    let dict = (0..size)
        .map(|_| read_quality(r))
        .collect::<Result<Vec<_>>>()?;
    let codes = read_runs(r, n, size as u32)?;
    Ok(codes
        .into_iter()
        .map(|c| dict[c as usize].clone())
        .collect())
}

fn read_quality(r: &mut Reader) -> Result<Quality> {
    let at = *r;
    let level = match r.u8("quality level")? {
        0 => QualityLevel::Good,
        1 => QualityLevel::Uncertain,
        2 => QualityLevel::Bad,
        l => return Err(at.error(format!("unknown quality level {l}"))),
    };
    let reason = read_str(r, "quality reason")?;
    Ok(Quality { level, reason })
}
