//! Linear scaling between raw device values and engineering units, and the
//! deadband filter that decides which samples are worth reporting.
//!
//! Both are pure and protocol-independent: a driver decodes a raw number,
//! scales it with [`raw_to_eng`], and the poller asks a per-tag
//! [`DeadbandFilter`] whether the sample goes to the outbox. Writes go the
//! other way with [`eng_to_raw`]. [`to_engineering`] and [`prepare_write`]
//! do both for a whole value, for every driver: a raw value to engineering
//! units with its range check, a user's value to the raw value a type can
//! hold (or why not).
//!
//! # Scaling
//!
//! A [`Scale`] maps the raw interval `[raw_lo, raw_hi]` linearly onto
//! `[eng_lo, eng_hi]`. Either interval may be inverted (`eng_hi < eng_lo`); the
//! raw interval must not be empty, or every raw value would map to one point
//! and writes could not be inverted. Values outside the raw interval are
//! extrapolated, not clamped: the driver marks them Uncertain `out_of_range`
//! instead (a transmitter above its span is information, not noise).
//!
//! # Deadband
//!
//! A deadband suppresses changes too small to matter. The filter compares a
//! new value with the last *reported* value (not the last seen one), so a slow
//! drift is still reported once it has accumulated past the band. A change is
//! reported when `|new - last| > band` (strictly, as OPC UA's "exceeds"), so
//! a band of 0 reports every change and suppresses only repeats.
//!
//! * Absolute: `band = value`, in engineering units.
//! * Percent: `band = value / 100 * |eng_hi - eng_lo|` of the tag's scale.
//!   **A percent deadband without a scale is rejected**: a type's natural range
//!   (±3.4e38 for f32, 4.3e9 for u32) gives bands that are either useless or
//!   surprising, and the engineering range is what the percentage means to
//!   the person who typed it. Add a `--scale`, or use an absolute band.
//!
//! Deadbands apply to numeric types only; [`validate_deadband`] rejects them
//! on bool and string tags. Without a deadband every sample is reported.
//! Whatever the band, the first sample and any change of quality (level or
//! reason) are always reported, so a tag going Bad, or coming back, is never
//! hidden.

use crate::{DataType, Deadband, Quality, Sample, Scale, Value};

/// Checks that a scale can be used in both directions.
pub fn validate_scale(scale: &Scale) -> Result<(), String> {
    let all = [scale.raw_lo, scale.raw_hi, scale.eng_lo, scale.eng_hi];
    if all.iter().any(|v| !v.is_finite()) {
        return Err(format!(
            "scale {}: all four bounds must be finite numbers",
            show_scale(scale)
        ));
    }
    if scale.raw_lo == scale.raw_hi {
        return Err(format!(
            "scale {}: the raw range is empty (raw_lo = raw_hi)",
            show_scale(scale)
        ));
    }
    Ok(())
}

fn show_scale(s: &Scale) -> String {
    format!("{}:{}:{}:{}", s.raw_lo, s.raw_hi, s.eng_lo, s.eng_hi)
}

/// Raw device value to engineering units.
pub fn raw_to_eng(scale: &Scale, raw: f64) -> f64 {
    scale.eng_lo
        + (raw - scale.raw_lo) * (scale.eng_hi - scale.eng_lo) / (scale.raw_hi - scale.raw_lo)
}

/// Engineering units to the raw device value (the inverse of [`raw_to_eng`]).
/// The result is not rounded: the encoder rounds for integer types.
pub fn eng_to_raw(scale: &Scale, eng: f64) -> f64 {
    if scale.eng_hi == scale.eng_lo {
        // A flat engineering range has no inverse; the low raw end is as good
        // as any and keeps the function total.
        return scale.raw_lo;
    }
    scale.raw_lo
        + (eng - scale.eng_lo) * (scale.raw_hi - scale.raw_lo) / (scale.eng_hi - scale.eng_lo)
}

/// True when `raw` lies within the scale's raw interval (either direction).
pub fn raw_in_range(scale: &Scale, raw: f64) -> bool {
    let (lo, hi) = if scale.raw_lo <= scale.raw_hi {
        (scale.raw_lo, scale.raw_hi)
    } else {
        (scale.raw_hi, scale.raw_lo)
    };
    raw >= lo && raw <= hi
}

/// Checks a tag's deadband against its type and scale (see the module docs).
pub fn validate_deadband(
    deadband: &Deadband,
    scale: Option<&Scale>,
    data_type: DataType,
) -> Result<(), String> {
    if !deadband.value.is_finite() || deadband.value < 0.0 {
        return Err(format!(
            "deadband {}: must be a finite number >= 0",
            deadband.value
        ));
    }
    if !data_type.is_numeric() {
        return Err(format!(
            "deadband on a {data_type} tag: deadbands apply to numeric types only"
        ));
    }
    if deadband.percent {
        if deadband.value > 100.0 {
            return Err(format!(
                "deadband {}%: must be at most 100%",
                deadband.value
            ));
        }
        if scale.is_none() {
            return Err(format!(
                "deadband {}%: a percent deadband is a share of the engineering range and \
                 needs a scale (--scale RAW_LO:RAW_HI:ENG_LO:ENG_HI); or give an absolute deadband",
                deadband.value
            ));
        }
    }
    if let Some(s) = scale {
        validate_scale(s)?;
    }
    Ok(())
}

/// Decides, per tag, whether a new sample is reported. Keeps the last
/// reported value and quality.
#[derive(Clone, Debug)]
pub struct DeadbandFilter {
    /// Absolute band in engineering units; `None` reports every sample.
    band: Option<f64>,
    last: Option<(Option<Value>, Quality)>,
}

impl DeadbandFilter {
    /// A filter for a tag. Fails with a message for a deadband that
    /// [`validate_deadband`] rejects.
    pub fn new(
        deadband: Option<&Deadband>,
        scale: Option<&Scale>,
        data_type: DataType,
    ) -> Result<DeadbandFilter, String> {
        let band = match deadband {
            None => None,
            Some(db) => {
                validate_deadband(db, scale, data_type)?;
                Some(match (db.percent, scale) {
                    (true, Some(s)) => db.value / 100.0 * (s.eng_hi - s.eng_lo).abs(),
                    _ => db.value,
                })
            }
        };
        Ok(DeadbandFilter { band, last: None })
    }

    /// A filter that reports everything.
    pub fn report_all() -> DeadbandFilter {
        DeadbandFilter {
            band: None,
            last: None,
        }
    }

    /// The band in engineering units (`None`: no deadband).
    pub fn band(&self) -> Option<f64> {
        self.band
    }

    /// Whether `sample` should be reported; if so it becomes the new
    /// reference value.
    pub fn should_report(&mut self, sample: &Sample) -> bool {
        let report = match (&self.band, &self.last) {
            (_, None) => true,
            (None, Some(_)) => true,
            (Some(band), Some((last_value, last_quality))) => {
                last_quality != &sample.quality || value_moved(last_value, &sample.value, *band)
            }
        };
        if report {
            self.last = Some((sample.value.clone(), sample.quality.clone()));
        }
        report
    }

    /// Forgets the reference value: the next sample is reported.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

fn value_moved(last: &Option<Value>, new: &Option<Value>, band: f64) -> bool {
    match (last, new) {
        (None, None) => false,
        (Some(a), Some(b)) => match (numeric(a), numeric(b)) {
            (Some(x), Some(y)) => {
                if x.is_nan() || y.is_nan() {
                    x.is_nan() != y.is_nan()
                } else {
                    (y - x).abs() > band
                }
            }
            // Bool and text: any change counts.
            _ => a != b,
        },
        _ => true,
    }
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(_) | Value::Text(_) => None,
    }
}

/// `value 70000 is outside the range of u16 (0 to 65535)`.
pub(crate) fn range_error(v: &Value, data_type: DataType) -> String {
    match data_type.raw_range() {
        Some((lo, hi)) if data_type != DataType::F32 && data_type != DataType::F64 => {
            format!("value {v} is outside the range of {data_type} ({lo} to {hi})")
        }
        _ => format!("value {v} is outside the range of {data_type}"),
    }
}

/// Scales a raw value to engineering units. Returns the value and whether the
/// raw value lay inside the scale's raw range (always true without a scale).
/// Bools and strings pass through unchanged.
pub fn to_engineering(raw: Value, scale: Option<&Scale>) -> (Value, bool) {
    let Some(s) = scale else { return (raw, true) };
    let x = match &raw {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(_) | Value::Text(_) => return (raw, true),
    };
    (Value::Float(raw_to_eng(s, x)), raw_in_range(s, x))
}

/// Turns a value in engineering units, as a user gave it, into the raw value
/// to encode for `data_type`: coerces text and numbers, applies the inverse
/// scale (rounding to whole numbers for integer types), and refuses values
/// the type cannot hold, with a message that says why.
pub fn prepare_write(
    value: &Value,
    data_type: DataType,
    scale: Option<&Scale>,
) -> Result<Value, String> {
    match data_type {
        DataType::Bool => {
            let b = match value {
                Value::Bool(b) => Some(*b),
                Value::Int(0) => Some(false),
                Value::Int(1) => Some(true),
                Value::Float(f) if *f == 0.0 => Some(false),
                Value::Float(f) if *f == 1.0 => Some(true),
                Value::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "on" => Some(true),
                    "false" | "0" | "off" => Some(false),
                    _ => None,
                },
                _ => None,
            };
            b.map(Value::Bool)
                .ok_or_else(|| format!("type bool needs true/false (or 1/0), got {value}"))
        }
        DataType::String => Ok(Value::Text(match value {
            Value::Text(t) => t.clone(),
            other => other.to_string(),
        })),
        _ => {
            if let (Value::Int(i), None) = (value, scale) {
                // Exact path: no detour through f64 for large 64-bit values.
                return match data_type {
                    DataType::F32 | DataType::F64 => Ok(Value::Float(*i as f64)),
                    _ => encode_range_check(*i, data_type).map(Value::Int),
                };
            }
            let x = match value {
                Value::Bool(_) => None,
                other => other.as_f64(),
            }
            .ok_or_else(|| format!("type {data_type} needs a number, got {value}"))?;
            if !x.is_finite() {
                return Err(format!(
                    "type {data_type} needs a finite number, got {value}"
                ));
            }
            let raw = match scale {
                Some(s) => eng_to_raw(s, x),
                None => x,
            };
            let scaled_note = || match scale {
                Some(_) => format!(" (raw {raw} after scaling)"),
                None => String::new(),
            };
            let (lo, hi) = data_type.raw_range().expect("numeric type");
            match data_type {
                DataType::F32 | DataType::F64 => {
                    if raw < lo || raw > hi {
                        return Err(format!(
                            "{}{}",
                            range_error(value, data_type),
                            scaled_note()
                        ));
                    }
                    Ok(Value::Float(raw))
                }
                _ => {
                    let r = if scale.is_some() { raw.round() } else { raw };
                    if scale.is_none() && r.fract() != 0.0 {
                        return Err(format!(
                            "type {data_type} needs a whole number, got {value}"
                        ));
                    }
                    if r < lo || r > hi {
                        return Err(format!(
                            "{}{}",
                            range_error(value, data_type),
                            scaled_note()
                        ));
                    }
                    Ok(Value::Int(r as i64))
                }
            }
        }
    }
}

fn encode_range_check(i: i64, data_type: DataType) -> Result<i64, String> {
    let ok = match data_type {
        DataType::I16 => i16::try_from(i).is_ok(),
        DataType::U16 => u16::try_from(i).is_ok(),
        DataType::I32 => i32::try_from(i).is_ok(),
        DataType::U32 => u32::try_from(i).is_ok(),
        _ => true,
    };
    if ok {
        Ok(i)
    } else {
        Err(range_error(&Value::Int(i), data_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(raw_lo: f64, raw_hi: f64, eng_lo: f64, eng_hi: f64) -> Scale {
        Scale {
            raw_lo,
            raw_hi,
            eng_lo,
            eng_hi,
        }
    }

    fn good(v: f64) -> Sample {
        Sample {
            value: Some(Value::Float(v)),
            quality: Quality::good(),
            source_ts_us: None,
        }
    }

    #[test]
    fn scaling_maps_both_ways() {
        let s = scale(0.0, 32000.0, 0.0, 100.0);
        assert_eq!(raw_to_eng(&s, 16000.0), 50.0);
        assert_eq!(eng_to_raw(&s, 50.0), 16000.0);
        let s = scale(4000.0, 20000.0, -50.0, 150.0);
        assert_eq!(raw_to_eng(&s, 4000.0), -50.0);
        assert_eq!(raw_to_eng(&s, 20000.0), 150.0);
        for raw in [4000.0, 7777.0, 12000.0, 25000.0] {
            let back = eng_to_raw(&s, raw_to_eng(&s, raw));
            assert!((back - raw).abs() < 1e-9, "{raw} -> {back}");
        }
    }

    #[test]
    fn inverted_ranges_scale_and_check_range() {
        let s = scale(0.0, 1000.0, 100.0, 0.0);
        assert_eq!(raw_to_eng(&s, 250.0), 75.0);
        assert_eq!(eng_to_raw(&s, 75.0), 250.0);
        let s = scale(1000.0, 0.0, 0.0, 10.0);
        assert!(raw_in_range(&s, 500.0));
        assert!(!raw_in_range(&s, 1000.5));
    }

    #[test]
    fn values_outside_the_raw_range_are_extrapolated_and_flagged() {
        let s = scale(0.0, 100.0, 0.0, 10.0);
        assert_eq!(raw_to_eng(&s, 200.0), 20.0);
        assert!(!raw_in_range(&s, 200.0));
        assert!(raw_in_range(&s, 100.0));
    }

    #[test]
    fn empty_or_non_finite_scales_are_rejected() {
        assert!(validate_scale(&scale(5.0, 5.0, 0.0, 1.0))
            .unwrap_err()
            .contains("raw range is empty"));
        assert!(validate_scale(&scale(0.0, f64::NAN, 0.0, 1.0)).is_err());
        assert!(validate_scale(&scale(0.0, 1.0, 0.0, 0.0)).is_ok());
    }

    #[test]
    fn first_sample_is_always_reported() {
        let db = Deadband {
            value: 5.0,
            percent: false,
        };
        let mut f = DeadbandFilter::new(Some(&db), None, DataType::F32).unwrap();
        assert!(f.should_report(&good(10.0)));
    }

    #[test]
    fn absolute_deadband_compares_with_last_reported_value() {
        let db = Deadband {
            value: 1.0,
            percent: false,
        };
        let mut f = DeadbandFilter::new(Some(&db), None, DataType::F64).unwrap();
        assert!(f.should_report(&good(10.0)));
        assert!(!f.should_report(&good(10.6)));
        assert!(
            !f.should_report(&good(11.0)),
            "exactly the band is not a change"
        );
        // Drift accumulates against 10.0, the last reported value.
        assert!(f.should_report(&good(11.2)));
        assert!(!f.should_report(&good(10.3)));
        assert!(f.should_report(&good(10.1)));
    }

    #[test]
    fn zero_deadband_suppresses_only_repeats() {
        let db = Deadband {
            value: 0.0,
            percent: false,
        };
        let mut f = DeadbandFilter::new(Some(&db), None, DataType::I32).unwrap();
        let int = |i| Sample {
            value: Some(Value::Int(i)),
            quality: Quality::good(),
            source_ts_us: None,
        };
        assert!(f.should_report(&int(3)));
        assert!(!f.should_report(&int(3)));
        assert!(f.should_report(&int(4)));
    }

    #[test]
    fn percent_deadband_is_a_share_of_the_engineering_range() {
        let db = Deadband {
            value: 2.0,
            percent: true,
        };
        let s = scale(0.0, 65535.0, 0.0, 500.0);
        let mut f = DeadbandFilter::new(Some(&db), Some(&s), DataType::U16).unwrap();
        assert_eq!(f.band(), Some(10.0));
        assert!(f.should_report(&good(100.0)));
        assert!(!f.should_report(&good(109.9)));
        assert!(f.should_report(&good(110.5)));
        // Inverted engineering range: the band is still positive.
        let s = scale(0.0, 100.0, 50.0, -50.0);
        let f = DeadbandFilter::new(Some(&db), Some(&s), DataType::U16).unwrap();
        assert_eq!(f.band(), Some(2.0));
    }

    #[test]
    fn percent_deadband_without_scale_is_rejected() {
        let db = Deadband {
            value: 1.0,
            percent: true,
        };
        let err = DeadbandFilter::new(Some(&db), None, DataType::F32).unwrap_err();
        assert!(err.contains("needs a scale"), "{err}");
    }

    #[test]
    fn deadband_on_non_numeric_or_negative_is_rejected() {
        let db = Deadband {
            value: 1.0,
            percent: false,
        };
        assert!(validate_deadband(&db, None, DataType::Bool)
            .unwrap_err()
            .contains("numeric"));
        let neg = Deadband {
            value: -1.0,
            percent: false,
        };
        assert!(validate_deadband(&neg, None, DataType::F32).is_err());
        let big = Deadband {
            value: 150.0,
            percent: true,
        };
        let s = scale(0.0, 1.0, 0.0, 1.0);
        assert!(validate_deadband(&big, Some(&s), DataType::F32).is_err());
    }

    #[test]
    fn quality_changes_are_always_reported() {
        let db = Deadband {
            value: 100.0,
            percent: false,
        };
        let mut f = DeadbandFilter::new(Some(&db), None, DataType::F32).unwrap();
        assert!(f.should_report(&good(1.0)));
        let bad = Sample {
            value: None,
            quality: Quality::bad("timeout"),
            source_ts_us: None,
        };
        assert!(f.should_report(&bad));
        assert!(!f.should_report(&bad), "same bad quality again is not news");
        let other = Sample {
            value: None,
            quality: Quality::bad("comm_failure"),
            source_ts_us: None,
        };
        assert!(f.should_report(&other), "a new reason is a quality change");
        assert!(
            f.should_report(&good(1.0)),
            "recovery is reported even without a value change"
        );
        let unc = Sample {
            value: Some(Value::Float(1.0)),
            quality: Quality::uncertain("out_of_range"),
            source_ts_us: None,
        };
        assert!(f.should_report(&unc));
    }

    #[test]
    fn no_deadband_reports_every_sample() {
        let mut f = DeadbandFilter::new(None, None, DataType::F32).unwrap();
        assert!(f.should_report(&good(1.0)));
        assert!(f.should_report(&good(1.0)));
        f.reset();
        assert!(f.should_report(&good(1.0)));
    }

    #[test]
    fn nan_transitions_are_reported() {
        let db = Deadband {
            value: 1.0,
            percent: false,
        };
        let mut f = DeadbandFilter::new(Some(&db), None, DataType::F32).unwrap();
        assert!(f.should_report(&good(1.0)));
        assert!(f.should_report(&good(f64::NAN)));
        assert!(!f.should_report(&good(f64::NAN)));
        assert!(f.should_report(&good(1.0)));
    }
}
