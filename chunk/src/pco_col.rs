//! Numeric columns through `pco` (pcodec), in its "wrapped" form: we keep
//! the count ourselves, so a column holds only pco's one-byte format version,
//! its chunk metadata and a single page — no magic number, no footer.
//!
//! pco picks the delta order (or none), detects float quantisation (an f32
//! held in an f64) and integer multiples, and entropy-codes what is left with
//! tANS, so it wins wherever the residuals are noisy. Its metadata costs a
//! few dozen bytes, which small or constant columns do not repay; the
//! callers ([`crate::ints`], [`crate::floats`]) therefore also try a
//! hand-written codec and keep whichever is smaller.

use pco::data_types::Number;
use pco::wrapped::{FileCompressor, FileDecompressor};
use pco::{ChunkConfig, ModeSpec, PagingSpec};

use crate::wire::{Reader, Result};

/// pco's compression level: 8 is its default; levels above it gain little
/// here and cost encode time (measured by `examples/codec_bench.rs`).
pub const LEVEL: usize = 8;

/// Appends `values` as a pco file header, chunk metadata and one page;
/// `mode` is `ModeSpec::Auto` or a hint pco tries against its own choice.
pub(crate) fn put_pco<T: Number>(out: &mut Vec<u8>, values: &[T], mode: ModeSpec) {
    let config = ChunkConfig::default()
        .with_compression_level(LEVEL)
        .with_mode_spec(mode)
        .with_paging_spec(PagingSpec::Exact(vec![values.len()]));
    let file = FileCompressor::default();
    // Writing to a Vec cannot fail, and the config is valid for every
    // number type we use (no 8-bit types) and every count from 1 to
    // MAX_POINTS (one page): a failure here is a bug.
    let mut chunk = file
        .chunk_compressor(values, &config)
        .expect("pco accepts the default config for i64, u64, f64");
    let out = file.write_header(out).expect("writing to a Vec");
    let out = chunk.write_meta(out).expect("writing to a Vec");
    chunk.write_page(0, out).expect("writing to a Vec");
}

/// Reads `n` numbers from the rest of `r`, which must hold exactly one pco page.
pub(crate) fn read_pco<T: Number>(r: &mut Reader, n: usize) -> Result<Vec<T>> {
    let start = *r;
    let bytes = r.rest();
    let fail = |e: pco::errors::PcoError| start.error(format!("pco: {e}"));
    let (file, rest) = FileDecompressor::new(bytes).map_err(fail)?;
    let (mut chunk, rest) = file.chunk_decompressor::<T, _>(rest).map_err(fail)?;
    let mut page = chunk.page_decompressor(rest, n).map_err(fail)?;
    let mut values = vec![T::default(); n];
    let progress = page.read(&mut values).map_err(fail)?;
    if progress.n_processed != n || !progress.finished {
        return Err(start.error(format!(
            "pco page holds {} numbers, {n} expected",
            progress.n_processed
        )));
    }
    let left = page.into_src().len();
    if left != 0 {
        return Err(start.error(format!("{left} bytes left over after the pco page")));
    }
    Ok(values)
}
