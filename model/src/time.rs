//! Time: the model and the API carry microseconds since the Unix epoch
//! (`ts_us`); people and JSON use RFC 3339. Formatted output is always UTC
//! with six fractional digits, so it sorts as text and round-trips exactly.

use chrono::{DateTime, SecondsFormat, Utc};

/// Wall-clock time in microseconds since the Unix epoch (0 if the clock is
/// before it).
pub fn now_us() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    now.saturating_add(fault_clock_offset_us())
}

/// For fault tests only: `BIFROST_FAULT_CLOCK_OFFSET_MS` (read once) shifts
/// every wall-clock reading of this process by that many milliseconds, as
/// a machine whose clock is wrong would (a preloaded fake-time library
/// deadlocks with jemalloc's start-up). 0 when unset.
fn fault_clock_offset_us() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("BIFROST_FAULT_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map_or(0, |ms| ms.saturating_mul(1000))
    })
}

/// Parses an RFC 3339 timestamp (any offset) into microseconds since the
/// epoch. Digits beyond microseconds are truncated towards the past. The
/// error says why, without repeating the input.
pub fn parse_rfc3339_us(input: &str) -> Result<i64, String> {
    let dt = DateTime::parse_from_rfc3339(input.trim())
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2024-05-01T12:00:00Z)"))?;
    let utc = dt.with_timezone(&Utc);
    // The sub-second part must floor, not round, to keep ordering.
    let secs = utc.timestamp();
    let micros = i64::from(utc.timestamp_subsec_micros());
    secs.checked_mul(1_000_000)
        .and_then(|s| s.checked_add(micros))
        .ok_or_else(|| "out of range".to_string())
}

/// Formats microseconds since the epoch as RFC 3339 in UTC with
/// microseconds, e.g. `2024-05-01T12:00:00.000250Z`; `None` beyond the
/// years chrono can represent (|year| > 262143).
pub fn format_rfc3339_us(ts_us: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_micros(ts_us)
        .map(|dt| dt.to_rfc3339_opts(SecondsFormat::Micros, true))
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
            let text = format_rfc3339_us(us).unwrap();
            assert_eq!(parse_rfc3339_us(&text).unwrap(), us, "{text}");
        }
    }

    #[test]
    fn format_is_utc_with_six_fraction_digits() {
        assert_eq!(
            format_rfc3339_us(1_714_564_800_000_250).unwrap(),
            "2024-05-01T12:00:00.000250Z"
        );
        assert_eq!(format_rfc3339_us(0).unwrap(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_rfc3339_us(i64::MAX), None);
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let a = parse_rfc3339_us("2024-05-01T14:00:00+02:00").unwrap();
        let b = parse_rfc3339_us("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, 1_714_564_800_000_000);
    }

    #[test]
    fn nanoseconds_are_truncated_not_rounded() {
        let us = parse_rfc3339_us("2024-05-01T12:00:00.000000999Z").unwrap();
        assert_eq!(us, 1_714_564_800_000_000);
        let neg = parse_rfc3339_us("1969-12-31T23:59:59.9999999Z").unwrap();
        assert_eq!(neg, -1);
    }

    #[test]
    fn bad_timestamps_say_what_is_expected() {
        for bad in ["", "yesterday", "2024-05-01", "2024-13-01T00:00:00Z"] {
            let e = parse_rfc3339_us(bad).unwrap_err();
            assert!(e.contains("expected RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_us() > 1_577_836_800_000_000);
    }
}
