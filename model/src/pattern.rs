//! Name patterns: SQL `LIKE` and path globs.
//!
//! Tag names are paths (`line1/press3/temperature`), so the glob is
//! path-aware: `*` matches within one segment (never a `/`), `**` matches
//! across segments (any run of characters, `/` included), `?` matches one
//! character other than `/`. `LIKE` keeps its SQL meaning: `%` is any run of
//! characters and `_` any one character, `/` included; `\` escapes the next
//! character (as in PostgreSQL), or the `ESCAPE` character when one is given.
//!
//! Both kinds are case-sensitive, as tag names are. The query engine uses
//! [`Pattern::literal_prefix`] to visit only the tag names that can match;
//! subscriptions use [`Pattern::glob`] for watch filters, and access rules
//! ([`crate::access`]) use it for the tags a grant covers. Pure: no I/O, no
//! dependency beyond `std`.

use std::fmt;

/// Which syntax a [`Pattern`] was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Like,
    Glob,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Lit(char),
    /// Exactly one character; `/` only if `slash`.
    One {
        slash: bool,
    },
    /// Any run of characters (possibly empty); containing `/` only if `slash`.
    Many {
        slash: bool,
    },
}

/// A compiled `LIKE` or glob pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    syntax: Syntax,
    parts: Vec<Part>,
    prefix: String,
}

impl Pattern {
    /// A path glob: `*` (one segment), `**` (any number of segments), `?`
    /// (one character, not `/`), `\` escapes. Errors say what is wrong and where.
    pub fn glob(pattern: &str) -> Result<Pattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    let run = chars[i..].iter().take_while(|&&c| c == '*').count();
                    if run > 2 {
                        return Err(format!(
                            "glob '{pattern}': {run} '*' in a row at position {} (use '*' for one segment, '**' for any number)",
                            i + 1
                        ));
                    }
                    parts.push(Part::Many { slash: run == 2 });
                    i += run;
                }
                '?' => {
                    parts.push(Part::One { slash: false });
                    i += 1;
                }
                '\\' => {
                    let Some(&c) = chars.get(i + 1) else {
                        return Err(format!("glob '{pattern}': '\\' at the end escapes nothing"));
                    };
                    parts.push(Part::Lit(c));
                    i += 2;
                }
                c @ ('[' | ']' | '{' | '}') => {
                    return Err(format!(
                        "glob '{pattern}': '{c}' at position {} is not supported (only '*', '**' and '?'; escape it as '\\{c}')",
                        i + 1
                    ));
                }
                c => {
                    parts.push(Part::Lit(c));
                    i += 1;
                }
            }
        }
        Ok(Pattern::new(pattern, Syntax::Glob, parts))
    }

    /// A SQL `LIKE` pattern with `\` as the escape character.
    pub fn like(pattern: &str) -> Pattern {
        Pattern::like_with_escape(pattern, Some('\\'))
    }

    /// A SQL `LIKE` pattern with the given escape character (or none). An
    /// escape character at the very end stands for itself.
    pub fn like_with_escape(pattern: &str, escape: Option<char>) -> Pattern {
        let mut parts = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if Some(c) == escape {
                parts.push(Part::Lit(chars.next().unwrap_or(c)));
                continue;
            }
            match c {
                '%' => {
                    if parts.last() != Some(&Part::Many { slash: true }) {
                        parts.push(Part::Many { slash: true });
                    }
                }
                '_' => parts.push(Part::One { slash: true }),
                c => parts.push(Part::Lit(c)),
            }
        }
        Pattern::new(pattern, Syntax::Like, parts)
    }

    fn new(source: &str, syntax: Syntax, parts: Vec<Part>) -> Pattern {
        let prefix = parts
            .iter()
            .map_while(|p| match p {
                Part::Lit(c) => Some(*c),
                _ => None,
            })
            .collect();
        Pattern {
            source: source.to_string(),
            syntax,
            parts,
            prefix,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// The characters every match starts with (everything before the first
    /// wildcard). Empty when the pattern starts with a wildcard.
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the pattern has no wildcard at all (it matches one name).
    pub fn is_literal(&self) -> bool {
        self.prefix.chars().count() == self.parts.len()
    }

    /// Whether the whole of `text` matches the pattern.
    pub fn matches(&self, text: &str) -> bool {
        if !text.starts_with(&self.prefix) {
            return false;
        }
        if self.is_literal() {
            return text.len() == self.prefix.len();
        }
        let text: Vec<char> = text.chars().collect();
        // reach[j]: the parts seen so far can match text[..j] exactly.
        let mut reach = vec![false; text.len() + 1];
        reach[0] = true;
        for part in &self.parts {
            let mut next = vec![false; text.len() + 1];
            for j in 0..=text.len() {
                next[j] = match *part {
                    Part::Lit(c) => j > 0 && reach[j - 1] && text[j - 1] == c,
                    Part::One { slash } => j > 0 && reach[j - 1] && (slash || text[j - 1] != '/'),
                    Part::Many { slash } => {
                        reach[j] || (j > 0 && next[j - 1] && (slash || text[j - 1] != '/'))
                    }
                };
            }
            if !next.contains(&true) {
                return false;
            }
            reach = next;
        }
        reach[text.len()]
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({:?})", self.syntax, self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_star_stays_in_one_segment_and_double_star_crosses() {
        let p = Pattern::glob("plant/*/temp").unwrap();
        assert!(p.matches("plant/line1/temp"));
        assert!(!p.matches("plant/line1/press/temp"));
        assert!(!p.matches("plant/line1/temp2"));
        assert!(p.matches("plant//temp"), "'*' may be empty");
        assert_eq!(p.literal_prefix(), "plant/");

        let p = Pattern::glob("plant/**/temp").unwrap();
        assert!(p.matches("plant/line1/press/temp"));
        assert!(p.matches("plant/x/temp"));
        assert!(!p.matches("plant/x/temp/y"));

        let p = Pattern::glob("plant/**").unwrap();
        assert!(p.matches("plant/a/b/c"));
        assert!(!p.matches("plan/a"));
    }

    #[test]
    fn glob_question_mark_is_one_non_slash_character() {
        let p = Pattern::glob("line?/t").unwrap();
        assert!(p.matches("line1/t"));
        assert!(!p.matches("line12/t"));
        assert!(!p.matches("line/t"));
        assert!(!p.matches("line//t"));
        assert_eq!(p.literal_prefix(), "line");
    }

    #[test]
    fn glob_errors_say_what_and_where() {
        assert!(Pattern::glob("a/***")
            .unwrap_err()
            .contains("3 '*' in a row at position 3"));
        assert!(Pattern::glob("a\\")
            .unwrap_err()
            .contains("escapes nothing"));
        assert!(Pattern::glob("a/[bc]")
            .unwrap_err()
            .contains("'[' at position 3"));
        let p = Pattern::glob("a\\*b").unwrap();
        assert!(p.matches("a*b"));
        assert!(!p.matches("axb"));
        assert!(p.is_literal());
    }

    #[test]
    fn like_percent_and_underscore_cross_slashes() {
        let p = Pattern::like("line1/%");
        assert!(p.matches("line1/a/b"));
        assert!(p.matches("line1/"));
        assert!(!p.matches("line2/a"));
        assert_eq!(p.literal_prefix(), "line1/");

        let p = Pattern::like("%temp");
        assert!(p.matches("a/b/temp"));
        assert!(!p.matches("a/b/temp2"));
        assert_eq!(p.literal_prefix(), "");

        let p = Pattern::like("a_c");
        assert!(p.matches("abc"));
        assert!(p.matches("a/c"));
        assert!(!p.matches("ac"));
        assert!(!p.matches("abbc"));

        let p = Pattern::like("a%b%c");
        assert!(p.matches("abc"));
        assert!(p.matches("a123b456c"));
        assert!(!p.matches("a123c456b"));
    }

    #[test]
    fn like_escapes() {
        let p = Pattern::like("a\\_b");
        assert!(p.matches("a_b"));
        assert!(!p.matches("axb"));
        assert_eq!(p.literal_prefix(), "a_b");
        let p = Pattern::like_with_escape("a!%%", Some('!'));
        assert!(p.matches("a%xyz"));
        assert!(!p.matches("axyz"));
        let p = Pattern::like_with_escape("a\\%", None);
        assert!(p.matches("a\\anything"));
        assert!(Pattern::like("exact/name").is_literal());
        assert!(Pattern::like("exact/name").matches("exact/name"));
        assert!(!Pattern::like("exact/name").matches("exact/name2"));
    }
}
