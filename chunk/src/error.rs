//! The one error type of this crate: what is wrong with a chunk's bytes, and
//! where (the section or column and the byte offset from the chunk's start).

use thiserror::Error;

/// A chunk that cannot be read. Every variant says what is wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// Fewer bytes than a version byte and a checksum.
    #[error("chunk is {len} bytes, shorter than a version byte and a checksum ({min})")]
    TooShort { len: usize, min: usize },
    /// The first byte names a format this build does not read.
    #[error(
        "chunk format version {found} is not supported (this build reads versions 1 to {supported})"
    )]
    Version { found: u8, supported: u8 },
    /// The trailing CRC-32 does not match the bytes before it: the chunk was
    /// truncated, extended or changed after it was written.
    #[error("chunk checksum mismatch over bytes 0..{len}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        len: usize,
        stored: u32,
        computed: u32,
    },
    /// A section passed the checksum but does not parse (a bug in a writer,
    /// or bytes made to match the checksum).
    #[error("chunk {section} at byte {offset}: {what}")]
    Corrupt {
        /// `header`, `timestamps`, `values.float`, ...
        section: &'static str,
        /// Offset from the first byte of the chunk.
        offset: usize,
        what: String,
    },
}
