//! Device and tag names: path-like, `line1/press3/temperature`.

use crate::Invalid;

/// Longest accepted device or tag name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Names are path-like: segments of `[A-Za-z0-9_.-]` separated by single `/`.
/// `what` (`tag`, `device`) starts the error message.
pub fn validate_name(what: &str, name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::new(format!("{what} name is empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Invalid::new(format!(
            "{what} name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )));
    }
    for (i, seg) in name.split('/').enumerate() {
        if seg.is_empty() {
            return Err(Invalid::new(format!(
                "{what} name '{name}': segment {} is empty (no leading, trailing or double '/')",
                i + 1
            )));
        }
        if seg == "." || seg == ".." {
            return Err(Invalid::new(format!(
                "{what} name '{name}': segment '{seg}' is not allowed"
            )));
        }
        if let Some((pos, c)) = seg
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            let col = name.split('/').take(i).map(|s| s.len() + 1).sum::<usize>() + pos + 1;
            return Err(Invalid::new(format!(
                "{what} name '{name}': character {c:?} at position {col} is not allowed (use letters, digits, '_', '-', '.', and '/' between segments)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_path_rules() {
        assert!(validate_name("tag", "line1/press3/temperature").is_ok());
        assert!(validate_name("tag", "a.b-c_d").is_ok());
        let e = validate_name("tag", "line1//x").unwrap_err();
        assert!(e.message.contains("segment 2 is empty"), "{}", e.message);
        let e = validate_name("tag", "/x").unwrap_err();
        assert!(e.message.contains("segment 1 is empty"), "{}", e.message);
        let e = validate_name("tag", "line 1").unwrap_err();
        assert!(e.message.contains("' ' at position 5"), "{}", e.message);
        let e = validate_name("tag", "a/b$").unwrap_err();
        assert!(e.message.contains("'$' at position 4"), "{}", e.message);
        assert!(validate_name("tag", "").is_err());
        assert!(validate_name("tag", "a/../b").is_err());
        assert!(validate_name("tag", &"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
