//! Byte-level reading and writing shared by every column: LEB128 varints
//! (zig-zag for signed numbers, via `integer-encoding`), length-prefixed
//! sections, and a [`Reader`] that knows which section it reads and where it
//! is, so every error it returns names both. Reading never panics and never
//! allocates more than the input can justify: counts are checked against
//! [`MAX_POINTS`](crate::MAX_POINTS) or the bytes left before use.

use integer_encoding::VarInt;

use crate::ChunkError;

pub(crate) type Result<T> = std::result::Result<T, ChunkError>;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_uvar(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Appends `v` zig-zag encoded as a varint (small magnitudes, small bytes).
pub(crate) fn put_ivar(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Appends a length (varint) and the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uvar(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a section: what `write` produces, prefixed by its length.
pub(crate) fn put_section(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    write(&mut body);
    put_bytes(out, &body);
}

/// Zig-zag: 0, -1, 1, -2, ... to 0, 1, 2, 3, ...
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads one section of a chunk. `base` is the offset of `bytes[0]` in the
/// chunk, so errors carry chunk offsets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
    section: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize, section: &'static str) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            base,
            section,
        }
    }

    /// An error at the current position.
    pub(crate) fn error(&self, what: impl Into<String>) -> ChunkError {
        self.error_at(self.pos, what)
    }

    /// An error at `pos` bytes into this section.
    pub(crate) fn error_at(&self, pos: usize, what: impl Into<String>) -> ChunkError {
        ChunkError::Corrupt {
            section: self.section,
            offset: self.base + pos,
            what: what.into(),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.error(format!("{what}: no byte left")))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn uvar(&mut self, what: &str) -> Result<u64> {
        match u64::decode_var(&self.bytes[self.pos..]) {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => Err(self.error(format!("{what}: varint is cut off or too long"))),
        }
    }

    pub(crate) fn ivar(&mut self, what: &str) -> Result<i64> {
        self.uvar(what).map(unzigzag)
    }

    /// A varint that must be at most `max` (a count about to size a buffer).
    pub(crate) fn count(&mut self, what: &str, max: usize) -> Result<usize> {
        let at = self.pos;
        let v = self.uvar(what)?;
        if v > max as u64 {
            return Err(self.error_at(at, format!("{what} {v} is more than {max}")));
        }
        Ok(v as usize)
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "{what}: {n} bytes needed, {} left",
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length prefix: a varint no greater than the bytes after it.
    fn length(&mut self, what: &str) -> Result<usize> {
        let at = self.pos;
        let n = self.uvar(what)?;
        if n > self.remaining() as u64 {
            let left = self.remaining();
            return Err(self.error_at(at, format!("{what} of {n} bytes, {left} left")));
        }
        Ok(n as usize)
    }

    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.length(what)?;
        self.take(n, what)
    }

    /// A length-prefixed section, read by its own reader named `section`
    /// (which also names errors in the length prefix).
    pub(crate) fn section(&mut self, section: &'static str) -> Result<Reader<'a>> {
        let mut named = Reader { section, ..*self };
        let n = named.length("length")?;
        let start = named.pos;
        self.pos = start + n;
        Ok(Reader::new(
            &self.bytes[start..start + n],
            self.base + start,
            section,
        ))
    }

    /// Reads the section `name` holding `n` values with `read`, which must
    /// consume all of it.
    pub(crate) fn read_section<T>(
        &mut self,
        name: &'static str,
        n: usize,
        read: impl FnOnce(&mut Reader<'a>, usize) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut s = self.section(name)?;
        let values = read(&mut s, n)?;
        s.finish()?;
        Ok(values)
    }

    /// The unread rest of this section, which counts as read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        s
    }

    /// Checks that every byte of the section was read.
    pub(crate) fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(format!("{n} bytes left over after the section"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_the_extremes() {
        for v in [0, -1, 1, i64::MIN, i64::MAX, -12345] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn errors_name_the_section_and_the_chunk_offset() {
        let bytes = [5u8, 1, 2];
        let mut r = Reader::new(&bytes, 10, "values.text");
        let e = r.bytes("string").unwrap_err();
        assert_eq!(
            e.to_string(),
            "chunk values.text at byte 10: string of 5 bytes, 2 left"
        );
        let mut r = Reader::new(&[0x80, 0x80], 3, "timestamps");
        let e = r.uvar("first").unwrap_err();
        assert!(e.to_string().contains("timestamps at byte 3"), "{e}");
    }
}
