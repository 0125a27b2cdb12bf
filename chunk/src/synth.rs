//! Synthetic chunks shaped like the device simulator's signals
//! (`bifrost-drivers`' `sim` module), for this crate's tests and
//! `examples/codec_bench.rs`: sine (an `f32` of amplitude 100 and period
//! 60 s, kept as `Float`), ramp (0-999 at ten steps a second, `Int`),
//! counter (+1 per read, `Int`) and random (uniform 0-999, `Int`), polled
//! every second, good quality, no ids.
//!
//! Timestamps are exactly one second apart, or with poll jitter: the time
//! is taken after the read, 1-4 ms after the scheduled poll. Revisions grow
//! by 10,000 a reading (the other tags committed in between), plus 0-49
//! with jitter (the tag's place in its batch moves). A fraction of readings
//! arrive late: they keep their time but get a revision up to a minute
//! later. Points come sorted by (time, revision), as storage encodes them.
//! Deterministic for a seed; no dependency (splitmix64).

use bifrost_model::{Quality, Value};

use crate::Point;

/// A signal kind of the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Sine,
    Ramp,
    Counter,
    Random,
}

impl Signal {
    pub const ALL: [Signal; 4] = [Signal::Sine, Signal::Ramp, Signal::Counter, Signal::Random];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Sine => "sine",
            Signal::Ramp => "ramp",
            Signal::Counter => "counter",
            Signal::Random => "random",
        }
    }
}

/// What chunk to make.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub signal: Signal,
    pub points: usize,
    /// Poll jitter on timestamps and revisions.
    pub jitter: bool,
    /// Fraction of readings that arrive late (0.01 for 1%).
    pub late: f64,
    pub seed: u64,
}

/// Microseconds since the epoch of the first scheduled poll.
const START_US: i64 = 1_700_000_000_000_000;
const PERIOD_US: i64 = 1_000_000;
const REVISION_STEP: u64 = 10_000;

/// The points of a chunk of `shape`, sorted by (time, revision).
pub fn points(shape: &Shape) -> Vec<Point> {
    let mut rng = SplitMix(shape.seed);
    let phase = rng.below(360) as f64 / 360.0;
    let ramp_offset = rng.below(1000);
    let first_revision = 1_000_000 + rng.below(REVISION_STEP);
    let mut points: Vec<Point> = (0..shape.points)
        .map(|i| {
            let latency = if shape.jitter {
                1000 + rng.below(3000)
            } else {
                0
            };
            let ts_us = START_US + i as i64 * PERIOD_US + latency as i64;
            let place = if shape.jitter { rng.below(50) } else { 0 };
            let late = rng.unit() < shape.late;
            let delay = if late { 1 + rng.below(60) } else { 0 };
            let revision = first_revision + (i as u64 + delay) * REVISION_STEP + place;
            let t = (ts_us - START_US) as f64 / 1e6;
            let value = match shape.signal {
                Signal::Sine => Value::Float(sine(t, phase)),
                Signal::Ramp => Value::Int(((t * 10.0) as i64 + ramp_offset as i64) % 1000),
                Signal::Counter => Value::Int(1 + i as i64),
                Signal::Random => Value::Int(rng.below(1000) as i64),
            };
            Point {
                ts_us,
                revision,
                server_ts_us: ts_us,
                value: Some(value),
                quality: Quality::good(),
                id: None,
            }
        })
        .collect();
    points.sort_by_key(|p| (p.ts_us, p.revision));
    points
}

/// The simulator's sine: an `f32`, amplitude 100, period 60 s.
fn sine(t: f64, phase: f64) -> f64 {
    let x = t / 60.0 + phase;
    (100.0 * (std::f64::consts::TAU * x).sin()) as f32 as f64
}

/// splitmix64: small, fast, good enough for test data.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
