//! Logix tag addresses: the notation a plant engineer types
//! (`Program:Main.Counts[3]`, `Recipe.Temps[0]`, `Grid[1,2]`), parsed into
//! parts, checked, and encoded as a CIP EPATH of ANSI extended symbolic
//! segments (0x91) and member/element segments (0x28/0x29/0x2A).
//!
//! Pure: no I/O, no knowledge of sessions or replies. It must not depend on
//! the codec or the driver; they depend on it.
//!
//! # Notation
//!
//! * A tag is one or more names joined by `.`: `Motor.Speed`, `Recipe.Temps`.
//!   A name starts with a letter or `_`, continues with letters, digits and
//!   `_`, and has at most 40 characters (the Logix limit). Names are
//!   case-insensitive in the controller; they are sent as written.
//! * The first name may be `Program:<name>` for a program-scoped tag:
//!   `Program:Main.Tag`. It becomes one symbolic segment, `Program:Main`.
//! * Any name may be followed by an index: `[3]`, `[1,2]` or `[1,2,3]` (at
//!   most three dimensions, each 0-4294967295): `Recipe[2].Temps[0]`.
//! * Bit access (`MyDint.5`) and bit-array indexing are not supported: a name
//!   must not start with a digit.
//! * Blanks around the whole address are ignored; blanks inside are an error.

use std::fmt;

/// Longest Logix name.
pub const MAX_NAME_LEN: usize = 40;
/// Most array dimensions of a Logix tag.
pub const MAX_DIMS: usize = 3;

/// One `.`-separated part of a tag path: a name and its array index, if any.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathPart {
    /// As written (`Program:Main`, `Temps`).
    pub name: String,
    /// Empty when the part is not indexed.
    pub index: Vec<u32>,
}

/// A parsed tag address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagPath {
    pub parts: Vec<PathPart>,
}

impl fmt::Display for TagPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&p.name)?;
            if !p.index.is_empty() {
                let idx: Vec<String> = p.index.iter().map(u32::to_string).collect();
                write!(f, "[{}]", idx.join(","))?;
            }
        }
        Ok(())
    }
}

impl TagPath {
    /// Parses an address (see the module docs); errors say what is wrong
    /// and at which character.
    pub fn parse(address: &str) -> Result<TagPath, String> {
        let text = address.trim();
        let err = |at: usize, what: String| {
            format!("address '{address}': {what} at character {}", at + 1)
        };
        if text.is_empty() {
            return Err(format!("address '{address}': empty address"));
        }
        let b = text.as_bytes();
        let mut parts = Vec::new();
        let mut i = 0;
        loop {
            let (name, next) =
                parse_name(text, i, parts.is_empty()).map_err(|(at, w)| err(at, w))?;
            i = next;
            let mut index = Vec::new();
            if i < b.len() && b[i] == b'[' {
                let (idx, next) = parse_index(text, i).map_err(|(at, w)| err(at, w))?;
                index = idx;
                i = next;
            }
            parts.push(PathPart { name, index });
            if i == b.len() {
                break;
            }
            if b[i] != b'.' {
                return Err(err(
                    i,
                    format!(
                        "unexpected '{}' (expected '.', '[' or the end)",
                        char_at(text, i)
                    ),
                ));
            }
            i += 1;
            if i == b.len() {
                return Err(err(i - 1, "a name must follow '.'".into()));
            }
        }
        Ok(TagPath { parts })
    }

    /// The path with the last part's index removed, as a lower-case key:
    /// tags with the same key and a one-dimensional last index are elements
    /// of one array, which the planner reads together. `None` when the tag is
    /// not such an element.
    pub fn array_key(&self) -> Option<(String, u32)> {
        let last = self.parts.last()?;
        if last.index.len() != 1 {
            return None;
        }
        let mut base = self.clone();
        base.parts.last_mut()?.index.clear();
        Some((base.to_string().to_ascii_lowercase(), last.index[0]))
    }

    /// The same path with the last part's one-dimensional index set to `at`.
    pub fn with_last_index(&self, at: u32) -> TagPath {
        let mut p = self.clone();
        if let Some(last) = p.parts.last_mut() {
            last.index = vec![at];
        }
        p
    }

    /// The EPATH: per part a symbolic segment, then one element segment per
    /// index. Fails only for a name longer than 255 bytes, which
    /// [`TagPath::parse`] never produces.
    pub fn epath(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            symbolic_segment(&mut out, part.name.as_bytes());
            for &i in &part.index {
                element_segment(&mut out, i);
            }
        }
        out
    }
}

/// ANSI extended symbolic segment: 0x91, length, bytes, a pad byte when the
/// length is odd (EPATHs are 16-bit aligned).
pub fn symbolic_segment(out: &mut Vec<u8>, name: &[u8]) {
    let name = &name[..name.len().min(255)];
    out.push(0x91);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    if name.len() % 2 == 1 {
        out.push(0);
    }
}

/// Member/element segment, the smallest that holds `i`: 0x28 (8-bit), 0x29
/// (pad, 16-bit LE), 0x2A (pad, 32-bit LE).
pub fn element_segment(out: &mut Vec<u8>, i: u32) {
    if i <= 0xFF {
        out.extend_from_slice(&[0x28, i as u8]);
    } else if i <= 0xFFFF {
        out.extend_from_slice(&[0x29, 0x00]);
        out.extend_from_slice(&(i as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[0x2A, 0x00]);
        out.extend_from_slice(&i.to_le_bytes());
    }
}

fn char_at(text: &str, i: usize) -> char {
    text[i..].chars().next().unwrap_or('?')
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

type ParseErr = (usize, String);

/// A name starting at `start`; the first part may be `Program:<name>`.
fn parse_name(text: &str, start: usize, first: bool) -> Result<(String, usize), ParseErr> {
    let b = text.as_bytes();
    let ident = |from: usize| -> Result<usize, ParseErr> {
        match b.get(from) {
            None => return Err((from.saturating_sub(1), "a name is missing".into())),
            Some(c) if c.is_ascii_digit() => return Err((
                from,
                "a name must start with a letter or '_' (bit access like Tag.5 is not supported)"
                    .into(),
            )),
            Some(c) if !is_name_start(*c) => {
                return Err((
                    from,
                    format!("'{}' cannot start a name", char_at(text, from)),
                ))
            }
            Some(_) => {}
        }
        let mut end = from;
        while end < b.len() && is_name_char(b[end]) {
            end += 1;
        }
        if end - from > MAX_NAME_LEN {
            return Err((
                from,
                format!(
                    "name '{}' is longer than {MAX_NAME_LEN} characters",
                    &text[from..end]
                ),
            ));
        }
        Ok(end)
    };
    let mut end = ident(start)?;
    if end < b.len() && b[end] == b':' {
        if !first || !text[start..end].eq_ignore_ascii_case("program") {
            return Err((
                end,
                "':' is only allowed in a leading 'Program:<name>'".into(),
            ));
        }
        end = ident(end + 1)?;
    }
    Ok((text[start..end].to_string(), end))
}

/// `[a]`, `[a,b]` or `[a,b,c]` starting at the `[` at `start`.
fn parse_index(text: &str, start: usize) -> Result<(Vec<u32>, usize), ParseErr> {
    let b = text.as_bytes();
    let close = text[start..]
        .find(']')
        .map(|o| start + o)
        .ok_or((start, "'[' without a closing ']'".to_string()))?;
    let mut index = Vec::new();
    let mut at = start + 1;
    for piece in text[start + 1..close].split(',') {
        let n = piece
            .parse::<u32>()
            .ok()
            .filter(|_| !piece.is_empty() && piece.bytes().all(|c| c.is_ascii_digit()))
            .ok_or((
                at,
                format!("index '{piece}' must be a whole number 0-4294967295"),
            ))?;
        index.push(n);
        at += piece.len() + 1;
    }
    if index.len() > MAX_DIMS {
        return Err((
            start,
            format!(
                "{} dimensions; Logix arrays have at most {MAX_DIMS}",
                index.len()
            ),
        ));
    }
    let next = close + 1;
    if next < b.len() && b[next] == b'[' {
        return Err((next, "write several dimensions as [a,b], not [a][b]".into()));
    }
    Ok((index, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(a: &str) -> Vec<(String, Vec<u32>)> {
        TagPath::parse(a)
            .unwrap()
            .parts
            .into_iter()
            .map(|p| (p.name, p.index))
            .collect()
    }

    #[test]
    fn good_addresses_parse_into_parts() {
        assert_eq!(parts("Temp"), vec![("Temp".into(), vec![])]);
        assert_eq!(
            parts(" Program:Main.Counts[3] "),
            vec![("Program:Main".into(), vec![]), ("Counts".into(), vec![3])]
        );
        assert_eq!(
            parts("Recipe[2].Temps[0]"),
            vec![("Recipe".into(), vec![2]), ("Temps".into(), vec![0])]
        );
        assert_eq!(parts("Grid[1,2,3]"), vec![("Grid".into(), vec![1, 2, 3])]);
        assert_eq!(
            parts("_x1.y_2"),
            vec![("_x1".into(), vec![]), ("y_2".into(), vec![])]
        );
        let p = TagPath::parse("program:Main.Counts[3]").unwrap();
        assert_eq!(p.to_string(), "program:Main.Counts[3]");
    }

    #[test]
    fn bad_addresses_say_what_and_where() {
        let cases = [
            ("", "empty address"),
            ("Counts[", "without a closing ']' at character 7"),
            ("Counts[x]", "index 'x' must be a whole number"),
            ("Counts[-1]", "index '-1'"),
            ("Counts[1][2]", "write several dimensions as [a,b]"),
            ("Grid[1,2,3,4]", "4 dimensions"),
            (
                "Motor.5",
                "bit access like Tag.5 is not supported) at character 7",
            ),
            ("Motor.", "a name must follow '.'"),
            ("Motor..Speed", "'.' cannot start a name at character 7"),
            (
                "Mo tor",
                "unexpected ' ' (expected '.', '[' or the end) at character 3",
            ),
            (
                "Main:Tag",
                "only allowed in a leading 'Program:<name>' at character 5",
            ),
            ("A.Program:Main", "only allowed in a leading"),
            ("Program:", "a name is missing"),
            ("Counts[3]x", "unexpected 'x'"),
            ("Tëmp", "unexpected"),
        ];
        for (a, want) in cases {
            let e = TagPath::parse(a).unwrap_err();
            assert!(e.contains(want), "'{a}': {e} (wanted '{want}')");
            assert!(
                e.contains(&format!("'{a}'")),
                "error names the address: {e}"
            );
        }
        let long = "A".repeat(41);
        assert!(TagPath::parse(&long)
            .unwrap_err()
            .contains("longer than 40"));
        assert!(TagPath::parse(&"A".repeat(40)).is_ok());
    }

    #[test]
    fn epath_symbolic_segments_are_padded_to_even_length() {
        // "Temp": 0x91, len 4, 'T' 'e' 'm' 'p' (even: no pad).
        assert_eq!(
            TagPath::parse("Temp").unwrap().epath(),
            [0x91, 0x04, b'T', b'e', b'm', b'p']
        );
        // "Counts": 6 bytes, then element 3 as an 8-bit element segment.
        assert_eq!(
            TagPath::parse("Counts[3]").unwrap().epath(),
            [0x91, 0x06, b'C', b'o', b'u', b'n', b't', b's', 0x28, 0x03]
        );
        // An odd-length name, "Big", gets a pad byte 0x00.
        assert_eq!(
            TagPath::parse("Big").unwrap().epath(),
            [0x91, 0x03, b'B', b'i', b'g', 0x00]
        );
    }

    #[test]
    fn element_segments_grow_with_the_index() {
        let e = |i| {
            let mut v = Vec::new();
            element_segment(&mut v, i);
            v
        };
        assert_eq!(e(0), [0x28, 0x00]);
        assert_eq!(e(255), [0x28, 0xFF]);
        // 16-bit: 0x29, pad, little-endian.
        assert_eq!(e(256), [0x29, 0x00, 0x00, 0x01]);
        assert_eq!(e(0x1234), [0x29, 0x00, 0x34, 0x12]);
        // 32-bit: 0x2A, pad, little-endian.
        assert_eq!(e(0x0001_0000), [0x2A, 0x00, 0x00, 0x00, 0x01, 0x00]);
        assert_eq!(
            TagPath::parse("Grid[1,300]").unwrap().epath(),
            [0x91, 0x04, b'G', b'r', b'i', b'd', 0x28, 0x01, 0x29, 0x00, 0x2C, 0x01]
        );
    }

    #[test]
    fn array_keys_group_elements_of_one_array_only() {
        let k = |a: &str| TagPath::parse(a).unwrap().array_key();
        assert_eq!(k("Counts[3]"), Some(("counts".into(), 3)));
        assert_eq!(k("counts[4]"), Some(("counts".into(), 4)));
        assert_eq!(
            k("Program:Main.Counts[0]"),
            Some(("program:main.counts".into(), 0))
        );
        assert_eq!(k("Recipe[1].Temps[0]"), Some(("recipe[1].temps".into(), 0)));
        assert_eq!(k("Temp"), None);
        assert_eq!(k("Grid[1,2]"), None);
        assert_eq!(k("Counts[3].Value"), None);
        assert_eq!(
            TagPath::parse("Counts[3]")
                .unwrap()
                .with_last_index(7)
                .to_string(),
            "Counts[7]"
        );
    }
}
