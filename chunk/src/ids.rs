//! The reading-id column: which readings carry a client id, as runs (polled
//! readings carry none, so a polled chunk's column is three bytes), then the
//! ids that are present, front-coded ([`crate::strings`]).

use crate::runs::{put_runs, read_runs};
use crate::strings::{put_front_coded, read_front_coded};
use crate::wire::{Reader, Result};

/// Appends the id column.
pub(crate) fn put_ids(out: &mut Vec<u8>, ids: &[Option<&str>]) {
    put_runs(out, ids.iter().map(|id| id.is_some() as u32));
    put_front_coded(out, ids.iter().flatten().copied());
}

/// Reads an id column of `n` readings.
pub(crate) fn read_ids(r: &mut Reader, n: usize) -> Result<Vec<Option<String>>> {
    let present = read_runs(r, n, 2)?;
    let count = present.iter().filter(|&&p| p == 1).count();
    let mut ids = read_front_coded(r, count)?.into_iter();
    // `ids` holds exactly one string per present reading.
    Ok(present
        .into_iter()
        .map(|p| if p == 1 { ids.next() } else { None })
        .collect())
}
