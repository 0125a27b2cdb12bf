//! Timestamps as `bifrostctl` takes them: the conversions themselves are
//! `bifrost_model::time`'s (RFC 3339 <-> microseconds); this module adds the
//! client's error type and the command-line forms `now` and `15m ago`.

pub use bifrost_model::time::now_us;
use bifrost_model::time::{format_rfc3339_us, parse_rfc3339_us};

use crate::{Error, Result};

/// Parses an RFC 3339 timestamp (any offset) into microseconds since the
/// epoch. Digits beyond microseconds are truncated towards the past.
pub fn parse_rfc3339(input: &str) -> Result<i64> {
    parse_rfc3339_us(input).map_err(|reason| Error::InvalidTimestamp {
        input: input.to_string(),
        reason,
    })
}

/// Formats microseconds since the epoch as RFC 3339 in UTC with
/// microseconds, e.g. `2024-05-01T12:00:00.000250Z`.
pub fn format_ts_us(ts_us: i64) -> String {
    // Only for |ts| beyond year 262143; still say something useful.
    format_rfc3339_us(ts_us).unwrap_or_else(|| format!("{ts_us}us"))
}

/// Parses a point in time as given on a command line: RFC 3339, `now`, or a
/// duration into the past such as `15m ago` / `2h30m ago` (humantime units).
pub fn parse_time_arg(input: &str) -> Result<i64> {
    parse_time_arg_at(input, now_us())
}

fn parse_time_arg_at(input: &str, now: i64) -> Result<i64> {
    let s = input.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(ago) = s.strip_suffix("ago") {
        let d = humantime::parse_duration(ago.trim()).map_err(|e| Error::InvalidTimestamp {
            input: input.to_string(),
            reason: format!("bad duration before \"ago\": {e}"),
        })?;
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        return Ok(now.saturating_sub(us));
    }
    parse_rfc3339(s).map_err(|_| Error::InvalidTimestamp {
        input: input.to_string(),
        reason: "expected RFC 3339 (2024-05-01T12:00:00Z), `now`, or a duration ago (`15m ago`)"
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_micros() {
        for us in [
            0,
            1,
            1_714_564_800_000_250,
            -1_500_000,
            253_402_300_799_999_999,
        ] {
            let text = format_ts_us(us);
            assert_eq!(parse_rfc3339(&text).unwrap(), us, "{text}");
        }
    }

    #[test]
    fn format_is_utc_with_six_fraction_digits() {
        assert_eq!(
            format_ts_us(1_714_564_800_000_250),
            "2024-05-01T12:00:00.000250Z"
        );
        assert_eq!(format_ts_us(0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let a = parse_rfc3339("2024-05-01T14:00:00+02:00").unwrap();
        let b = parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, 1_714_564_800_000_000);
    }

    #[test]
    fn nanoseconds_are_truncated_not_rounded() {
        let us = parse_rfc3339("2024-05-01T12:00:00.000000999Z").unwrap();
        assert_eq!(us, 1_714_564_800_000_000);
        let neg = parse_rfc3339("1969-12-31T23:59:59.9999999Z").unwrap();
        assert_eq!(neg, -1);
    }

    #[test]
    fn bad_timestamps_name_the_input() {
        for bad in [
            "",
            "yesterday",
            "2024-05-01",
            "2024-05-01 12:00:00",
            "2024-13-01T00:00:00Z",
        ] {
            let err = parse_rfc3339(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidTimestamp { .. }), "{bad}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn time_args_accept_now_and_ago() {
        let now = 1_000_000_000_000;
        assert_eq!(parse_time_arg_at("now", now).unwrap(), now);
        assert_eq!(
            parse_time_arg_at("15m ago", now).unwrap(),
            now - 900_000_000
        );
        assert_eq!(
            parse_time_arg_at("1970-01-01T00:00:01Z", now).unwrap(),
            1_000_000
        );
        assert!(parse_time_arg_at("soon ago", now).is_err());
    }
}
