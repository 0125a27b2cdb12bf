//! Just enough of EDN (Clojure's data notation) to read Jepsen histories:
//! `nil`, booleans, integers, strings, keywords, symbols, vectors, lists and
//! maps. Commas are whitespace, as in Clojure. Floats, characters, sets,
//! tags and comments are not needed and are rejected.

use crate::history::Value;

/// An EDN value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
    /// `:foo`, stored without the colon.
    Keyword(String),
    Symbol(String),
    /// A vector `[...]` or a list `(...)`.
    Vector(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    /// The value of `:name` in a map.
    pub fn get(&self, name: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(kw) if kw == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Converts to an operation value: `nil`, integers, strings and vectors
    /// of those.
    pub fn to_value(&self) -> Result<Value, String> {
        Ok(match self {
            Edn::Nil => Value::Nil,
            Edn::Int(i) => Value::Int(*i),
            Edn::Str(s) => Value::Str(s.clone()),
            Edn::Vector(items) => {
                Value::List(items.iter().map(Edn::to_value).collect::<Result<_, _>>()?)
            }
            other => return Err(format!("unsupported value {}", other.describe())),
        })
    }

    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Edn::Nil => "nil".into(),
            Edn::Bool(b) => b.to_string(),
            Edn::Int(i) => i.to_string(),
            Edn::Str(s) => format!("{s:?}"),
            Edn::Keyword(k) => format!(":{k}"),
            Edn::Symbol(s) => s.clone(),
            Edn::Vector(_) => "a vector".into(),
            Edn::Map(_) => "a map".into(),
        }
    }
}

/// Parses exactly one EDN value (surrounding whitespace allowed).
pub fn parse(text: &str) -> Result<Edn, String> {
    let mut p = Parser { s: text, pos: 0 };
    let v = p.value()?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(format!(
            "unexpected {:?} after the value at column {}",
            p.rest().chars().next().unwrap_or(' '),
            p.pos + 1
        ));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        self.pos += rest.len() - trimmed.len();
    }

    fn value(&mut self) -> Result<Edn, String> {
        self.skip_ws();
        let col = self.pos + 1;
        let Some(c) = self.rest().chars().next() else {
            return Err("unexpected end of line, expected a value".into());
        };
        match c {
            '[' | '(' => {
                self.pos += 1;
                let close = if c == '[' { ']' } else { ')' };
                Ok(Edn::Vector(self.items(close, col)?))
            }
            '{' => {
                self.pos += 1;
                let items = self.items('}', col)?;
                if items.len() % 2 != 0 {
                    return Err(format!("map at column {col} has an odd number of forms"));
                }
                let mut entries = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k, v));
                }
                Ok(Edn::Map(entries))
            }
            '"' => self.string(col),
            ']' | ')' | '}' => Err(format!("unexpected {c:?} at column {col}")),
            _ => self.atom(col),
        }
    }

    fn items(&mut self, close: char, col: usize) -> Result<Vec<Edn>, String> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.rest().chars().next() {
                None => return Err(format!("unclosed {close:?} opened at column {col}")),
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(_) => items.push(self.value()?),
            }
        }
    }

    fn string(&mut self, col: usize) -> Result<Edn, String> {
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(Edn::Str(out));
                }
                '\\' => match chars.next().map(|(_, e)| e) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(e @ ('"' | '\\')) => out.push(e),
                    Some(e) => {
                        return Err(format!(
                            "unsupported escape \\{e} in string at column {col}"
                        ))
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(format!("unterminated string starting at column {col}"))
    }

    fn atom(&mut self, col: usize) -> Result<Edn, String> {
        let rest = &self.s[self.pos..];
        let end = rest
            .find(|c: char| c.is_whitespace() || ",[](){}\"".contains(c))
            .unwrap_or(rest.len());
        let token = &rest[..end];
        self.pos += end;
        if let Some(kw) = token.strip_prefix(':') {
            if kw.is_empty() {
                return Err(format!("empty keyword at column {col}"));
            }
            return Ok(Edn::Keyword(kw.to_string()));
        }
        match token {
            "nil" => return Ok(Edn::Nil),
            "true" => return Ok(Edn::Bool(true)),
            "false" => return Ok(Edn::Bool(false)),
            _ => {}
        }
        let first = token.chars().next().unwrap_or(' ');
        let numeric = first.is_ascii_digit()
            || ((first == '-' || first == '+')
                && token[1..].starts_with(|c: char| c.is_ascii_digit()));
        if numeric {
            return token
                .strip_prefix('+')
                .unwrap_or(token)
                .parse::<i64>()
                .map(Edn::Int)
                .map_err(|_| {
                    format!("unsupported number {token:?} at column {col} (only integers)")
                });
        }
        Ok(Edn::Symbol(token.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jepsen_map() {
        let v =
            parse(r#"{:process 3, :type :ok, :f :get, :key "7", :value "x 0 \"q\" y"}"#).unwrap();
        assert_eq!(v.get("process"), Some(&Edn::Int(3)));
        assert_eq!(v.get("type"), Some(&Edn::Keyword("ok".into())));
        assert_eq!(v.get("value"), Some(&Edn::Str("x 0 \"q\" y".into())));
        assert_eq!(v.get("missing"), None);
    }

    #[test]
    fn reads_vectors_and_negative_numbers() {
        assert_eq!(
            parse("[3 -1]").unwrap().to_value().unwrap(),
            Value::List(vec![Value::Int(3), Value::Int(-1)])
        );
        assert_eq!(parse(" nil ").unwrap(), Edn::Nil);
    }

    #[test]
    fn rejects_what_it_cannot_read_with_a_column() {
        assert!(parse("[1 2").unwrap_err().contains("unclosed"));
        assert!(parse("1.5").unwrap_err().contains("only integers"));
        assert!(parse("{:a}").unwrap_err().contains("odd number"));
        assert!(parse("1 2").unwrap_err().contains("column 3"));
        assert!(parse("\"abc").unwrap_err().contains("unterminated"));
        assert!(parse(":timed-out").unwrap().to_value().is_err());
    }
}
