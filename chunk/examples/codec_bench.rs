//! Bytes per reading and speed of the chunk encoding on the simulator's
//! signal kinds: `cargo run --release -p bifrost-chunk --example codec_bench`.
//!
//! For each signal, timing (exact 1 s or with poll jitter) and chunk size it
//! prints the bytes per point of every candidate codec on the timestamp,
//! revision and value columns, the whole chunk as `encode` makes it (header,
//! all columns and checksum), and encode and decode speed (median of several
//! runs). The last line sums it up for hour-long chunks (3600 points).

use std::time::Instant;

use bifrost_chunk::floats::{encode_floats_with, FloatCodec};
use bifrost_chunk::ints::{encode_ints_with, IntCodec};
use bifrost_chunk::synth::{points, Shape, Signal};
use bifrost_chunk::{decode, encode, Point};
use bifrost_model::Value;

const SIZES: [usize; 3] = [120, 1000, 3600];
const RUNS: usize = 7;

fn main() {
    println!(
        "{:<8} {:<6} {:>5} | {:<22} | {:<22} | {:<22} | {:>6} | {:>8} {:>8}",
        "signal",
        "timing",
        "n",
        "ts B/pt",
        "revision B/pt",
        "value B/pt",
        "chunk",
        "enc Mpt/s",
        "dec Mpt/s"
    );
    let mut summary = Vec::new();
    for jitter in [false, true] {
        for signal in Signal::ALL {
            for n in SIZES {
                let row = row(signal, jitter, n);
                if n == 3600 {
                    summary.push((signal, jitter, row));
                }
            }
        }
    }
    print_summary(&summary);
}

/// Chunk bytes per point, encode and decode points per second.
type Figures = (f64, f64, f64);

fn row(signal: Signal, jitter: bool, n: usize) -> Figures {
    let shape = Shape {
        signal,
        points: n,
        jitter,
        late: 0.01,
        seed: 7,
    };
    let pts = points(&shape);
    let bytes = encode(&pts);
    assert_eq!(decode(&bytes).expect("decodes").len(), n);
    let chunk = bytes.len() as f64 / n as f64;
    let enc = speed(n, || {
        encode(&pts);
    });
    let dec = speed(n, || {
        decode(&bytes).expect("decodes");
    });
    println!(
        "{:<8} {:<6} {:>5} | {:<22} | {:<22} | {:<22} | {:>6.3} | {:>8.2} {:>8.2}",
        signal.name(),
        if jitter { "jitter" } else { "exact" },
        n,
        int_candidates(&pts.iter().map(|p| p.ts_us).collect::<Vec<_>>()),
        int_candidates(&pts.iter().map(|p| p.revision as i64).collect::<Vec<_>>()),
        value_candidates(&pts),
        chunk,
        enc / 1e6,
        dec / 1e6
    );
    (chunk, enc, dec)
}

fn int_candidates(values: &[i64]) -> String {
    let n = values.len() as f64;
    IntCodec::ALL
        .iter()
        .map(|&c| {
            format!(
                "{} {:.3}",
                c.name(),
                encode_ints_with(c, values).len() as f64 / n
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn value_candidates(pts: &[Point]) -> String {
    let floats: Vec<f64> = pts
        .iter()
        .filter_map(|p| match p.value {
            Some(Value::Float(f)) => Some(f),
            _ => None,
        })
        .collect();
    if floats.is_empty() {
        let ints: Vec<i64> = pts
            .iter()
            .filter_map(|p| match p.value {
                Some(Value::Int(i)) => Some(i),
                _ => None,
            })
            .collect();
        return int_candidates(&ints);
    }
    let n = floats.len() as f64;
    FloatCodec::ALL
        .iter()
        .map(|&c| {
            format!(
                "{} {:.3}",
                c.name(),
                encode_floats_with(c, &floats).len() as f64 / n
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Points per second of `work` on `n` points: the median of [`RUNS`] runs,
/// each repeating `work` for at least 20 ms.
fn speed(n: usize, mut work: impl FnMut()) -> f64 {
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let mut reps = 0;
            while reps == 0 || start.elapsed().as_millis() < 20 {
                work();
                reps += 1;
            }
            (reps * n) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn print_summary(rows: &[(Signal, bool, Figures)]) {
    let bpp = |jitter: bool| {
        rows.iter()
            .filter(|r| r.1 == jitter)
            .map(|(s, _, f)| format!("{} {:.2}", s.name(), f.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mean =
        |f: fn(&Figures) -> f64| rows.iter().map(|r| f(&r.2)).sum::<f64>() / rows.len() as f64;
    println!(
        "codec: {} B/pt with 3600-point chunks, 1 s polls with jitter, 1% late (exact 1 s: {}), encode {:.1} Mpt/s, decode {:.1} Mpt/s",
        bpp(true),
        bpp(false),
        mean(|f| f.1) / 1e6,
        mean(|f| f.2) / 1e6
    );
}
