//! Parsers for flag values that are more than a number: scaling, deadband,
//! labels and durations. Each returns a message that says what was expected,
//! which clap prints after the flag name.

use bifrost_client::proto::{Deadband, Scale};

/// `RAW_LO:RAW_HI:ENG_LO:ENG_HI`, e.g. `0:4095:-10:10`.
pub fn parse_scale(s: &str) -> Result<Scale, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 4 {
        return Err(format!(
            "expected RAW_LO:RAW_HI:ENG_LO:ENG_HI (4 numbers), got {} part(s)",
            parts.len()
        ));
    }
    let names = ["RAW_LO", "RAW_HI", "ENG_LO", "ENG_HI"];
    let mut v = [0.0f64; 4];
    for (i, p) in parts.iter().enumerate() {
        v[i] = parse_finite(p).map_err(|e| format!("{}: {e}", names[i]))?;
    }
    if v[0] == v[1] {
        return Err(format!(
            "RAW_LO and RAW_HI are both {}; the raw range must not be empty",
            v[0]
        ));
    }
    Ok(Scale {
        raw_lo: v[0],
        raw_hi: v[1],
        eng_lo: v[2],
        eng_hi: v[3],
    })
}

/// `N` (absolute, engineering units) or `N%` (percent of the engineering
/// range), N >= 0.
pub fn parse_deadband(s: &str) -> Result<Deadband, String> {
    let (num, percent) = match s.trim().strip_suffix('%') {
        Some(n) => (n, true),
        None => (s, false),
    };
    let value = parse_finite(num)?;
    if value < 0.0 {
        return Err(format!("{value} is negative; a deadband is 0 or more"));
    }
    if percent && value > 100.0 {
        return Err(format!("{value}% is more than 100% of the range"));
    }
    Ok(Deadband { value, percent })
}

/// `KEY=VALUE`; the key must not be empty, the value may be.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        Some(_) => Err("empty key (expected KEY=VALUE)".into()),
        None => Err(format!("{s:?} has no '=' (expected KEY=VALUE)")),
    }
}

/// A positive duration (humantime: `500ms`, `1s`, `2m`) as whole milliseconds.
pub fn parse_ms(s: &str) -> Result<u64, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 500ms, 1s, 2m)"))?;
    let ms = u64::try_from(d.as_millis()).map_err(|_| "too long".to_string())?;
    if ms == 0 {
        return Err("must be at least 1ms".into());
    }
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err("must be a whole number of milliseconds".into());
    }
    Ok(ms)
}

fn parse_finite(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("missing number".into());
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{t:?} is not a finite number")),
        Err(_) => Err(format!("{t:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_parses_four_numbers_including_negatives() {
        let s = parse_scale("0:4095:-10:10.5").unwrap();
        assert_eq!(
            (s.raw_lo, s.raw_hi, s.eng_lo, s.eng_hi),
            (0.0, 4095.0, -10.0, 10.5)
        );
        // An inverted range is legal (e.g. a sensor wired backwards).
        assert_eq!(parse_scale("4095:0:0:100").unwrap().raw_lo, 4095.0);
    }

    #[test]
    fn scale_rejects_bad_input_with_reason() {
        let e = parse_scale("0:4095:0").unwrap_err();
        assert!(e.contains("4 numbers") && e.contains("3 part"), "{e}");
        assert!(parse_scale("0:4095:0:100:5")
            .unwrap_err()
            .contains("5 part"));
        let e = parse_scale("0:abc:0:100").unwrap_err();
        assert!(e.starts_with("RAW_HI: ") && e.contains("\"abc\""), "{e}");
        assert!(parse_scale("0:10::100")
            .unwrap_err()
            .starts_with("ENG_LO: missing"));
        assert!(parse_scale("0:inf:0:100").unwrap_err().contains("finite"));
        assert!(parse_scale("5:5:0:100")
            .unwrap_err()
            .contains("must not be empty"));
    }

    #[test]
    fn deadband_absolute_and_percent() {
        let d = parse_deadband("0.5").unwrap();
        assert_eq!((d.value, d.percent), (0.5, false));
        let d = parse_deadband("2%").unwrap();
        assert_eq!((d.value, d.percent), (2.0, true));
        assert_eq!(parse_deadband("0").unwrap().value, 0.0);
    }

    #[test]
    fn deadband_rejects_bad_input_with_reason() {
        assert!(parse_deadband("-1").unwrap_err().contains("negative"));
        assert!(parse_deadband("%").unwrap_err().contains("missing number"));
        assert!(parse_deadband("abc").unwrap_err().contains("not a number"));
        assert!(parse_deadband("150%")
            .unwrap_err()
            .contains("more than 100%"));
        assert!(parse_deadband("NaN").unwrap_err().contains("finite"));
        // 150 absolute is fine: only percentages are capped.
        assert_eq!(parse_deadband("150").unwrap().value, 150.0);
    }

    #[test]
    fn labels_need_a_key_and_an_equals_sign() {
        assert_eq!(parse_label("line=1").unwrap(), ("line".into(), "1".into()));
        assert_eq!(
            parse_label("note=a=b").unwrap(),
            ("note".into(), "a=b".into())
        );
        assert_eq!(parse_label("empty=").unwrap(), ("empty".into(), "".into()));
        assert!(parse_label("=x").unwrap_err().contains("empty key"));
        assert!(parse_label("line").unwrap_err().contains("no '='"));
    }

    #[test]
    fn durations_become_positive_milliseconds() {
        assert_eq!(parse_ms("500ms").unwrap(), 500);
        assert_eq!(parse_ms("1s").unwrap(), 1000);
        assert_eq!(parse_ms("2m").unwrap(), 120_000);
        assert!(parse_ms("0s").unwrap_err().contains("at least 1ms"));
        assert!(parse_ms("1500us").unwrap_err().contains("whole number"));
        assert!(parse_ms("fast").is_err());
    }
}
