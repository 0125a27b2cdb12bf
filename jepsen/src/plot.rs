//! Plots of a run: latency and throughput over time, with the faults shaded.
//!
//! Both are SVG, drawn with `plotters`' SVG backend, on the history's clock
//! (seconds since the recorder started). Fault windows are grey bands with
//! their label at the top, drawn under the data.
//!
//! - `latency.svg`: one point per completed operation at its invocation
//!   time, its latency on a log scale; the colour is the outcome (ok green,
//!   fail red, info orange), the marker the function.
//! - `throughput.svg`: completions per 1 s bin, one line per outcome.
//!
//! Only client operations are plotted: the register workload and the set
//! workload's ingests. Subscription messages (which wait for data) and the
//! final reads would only blur the picture.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;
use serde::Serialize;

use crate::history::{EventType, Function};
use crate::workload::{names, Record};

/// A time during which a fault was active, on the history's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    /// Microseconds since the recorder started.
    pub start_us: u64,
    pub end_us: u64,
    /// What the fault was (`kill n2`, `partition isolate n1`).
    pub label: String,
}

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 500;

/// The fill of fault bands: tests look for it.
pub const FAULT_FILL: RGBColor = RGBColor(128, 128, 128);
pub const FAULT_OPACITY: f64 = 0.2;

const OK: RGBColor = RGBColor(44, 160, 44);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const INFO: RGBColor = RGBColor(255, 127, 14);

fn outcome_colour(kind: EventType) -> RGBColor {
    match kind {
        EventType::Ok => OK,
        EventType::Fail => FAIL,
        _ => INFO,
    }
}

/// A completed client operation: function, outcome, invocation and
/// completion times (µs).
struct Op {
    f: Function,
    outcome: EventType,
    invoked: u64,
    completed: u64,
}

fn plotted(r: &Record) -> bool {
    r.workload == names::REGISTER || (r.workload == names::SET && r.f == Function::Append)
}

/// Pairs invocations and completions of the plotted workloads by process.
fn operations(records: &[Record]) -> Vec<Op> {
    let mut open: BTreeMap<u64, u64> = BTreeMap::new();
    let mut ops = Vec::new();
    for r in records.iter().filter(|r| plotted(r)) {
        if r.kind == EventType::Invoke {
            open.insert(r.process, r.time);
        } else if let Some(invoked) = open.remove(&r.process) {
            ops.push(Op {
                f: r.f,
                outcome: r.kind,
                invoked,
                completed: r.time,
            });
        }
    }
    ops
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The time axis: to the last event or fault end, at least 1 s.
fn x_end(records: &[Record], faults: &[FaultWindow]) -> f64 {
    let last = records
        .iter()
        .filter(|r| plotted(r))
        .map(|r| r.time)
        .chain(faults.iter().map(|f| f.end_us))
        .max()
        .unwrap_or(0);
    seconds(last).max(1.0) * 1.02
}

type Error = Box<dyn std::error::Error>;

/// The latency plot as SVG text.
pub fn latency_svg(records: &[Record], faults: &[FaultWindow]) -> Result<String, Error> {
    let ops = operations(records);
    let lat_ms = |o: &Op| ((o.completed - o.invoked) as f64 / 1e3).max(0.1);
    let y_max = ops.iter().map(lat_ms).fold(10.0f64, f64::max) * 1.5;
    let x_max = x_end(records, faults);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Latency (ms, log scale) by invocation time",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, (0.1f64..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (ms)")
            .draw()?;
        chart.draw_series(faults.iter().map(|f| {
            Rectangle::new(
                [(seconds(f.start_us), 0.1), (seconds(f.end_us), y_max)],
                FAULT_FILL.mix(FAULT_OPACITY).filled(),
            )
        }))?;
        chart.draw_series(faults.iter().map(|f| {
            Text::new(
                f.label.clone(),
                (seconds(f.start_us), y_max / 1.3),
                ("sans-serif", 12).into_font(),
            )
        }))?;
        for f in [
            Function::Read,
            Function::Write,
            Function::Cas,
            Function::Append,
        ] {
            for outcome in [EventType::Ok, EventType::Fail, EventType::Info] {
                let points: Vec<(f64, f64)> = ops
                    .iter()
                    .filter(|o| o.f == f && o.outcome == outcome)
                    .map(|o| (seconds(o.invoked), lat_ms(o)))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let style = outcome_colour(outcome).filled();
                let label = format!("{f} {outcome} ({})", points.len());
                let pts = points.into_iter();
                // read ●, write ▲, cas ✕, append ■.
                match f {
                    Function::Write => chart
                        .draw_series(pts.map(|p| TriangleMarker::new(p, 4, style)))?
                        .label(label)
                        .legend(move |c| TriangleMarker::new(c, 4, style)),
                    Function::Cas => chart
                        .draw_series(pts.map(|p| Cross::new(p, 3, style)))?
                        .label(label)
                        .legend(move |c| Cross::new(c, 3, style)),
                    Function::Append => chart
                        .draw_series(pts.map(|p| {
                            EmptyElement::at(p) + Rectangle::new([(-3, -3), (3, 3)], style)
                        }))?
                        .label(label)
                        .legend(move |(x, y)| {
                            Rectangle::new([(x - 3, y - 3), (x + 3, y + 3)], style)
                        }),
                    _ => chart
                        .draw_series(pts.map(|p| Circle::new(p, 3, style)))?
                        .label(label)
                        .legend(move |c| Circle::new(c, 3, style)),
                };
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// The throughput plot as SVG text.
pub fn throughput_svg(records: &[Record], faults: &[FaultWindow]) -> Result<String, Error> {
    let ops = operations(records);
    let x_max = x_end(records, faults);
    let bins = x_max.ceil() as usize + 1;
    let mut counts: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (name, kind) in [
        ("ok", EventType::Ok),
        ("fail", EventType::Fail),
        ("info", EventType::Info),
    ] {
        let mut c = vec![0u32; bins];
        for o in ops.iter().filter(|o| o.outcome == kind) {
            c[(o.completed / 1_000_000) as usize] += 1;
        }
        counts.insert(name, c);
    }
    let y_max = counts
        .values()
        .flat_map(|c| c.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Throughput (completions per second)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("ops/s")
            .draw()?;
        chart.draw_series(faults.iter().map(|f| {
            Rectangle::new(
                [(seconds(f.start_us), 0.0), (seconds(f.end_us), y_max)],
                FAULT_FILL.mix(FAULT_OPACITY).filled(),
            )
        }))?;
        chart.draw_series(faults.iter().map(|f| {
            Text::new(
                f.label.clone(),
                (seconds(f.start_us), y_max * 0.97),
                ("sans-serif", 12).into_font(),
            )
        }))?;
        for (name, kind) in [
            ("ok", EventType::Ok),
            ("fail", EventType::Fail),
            ("info", EventType::Info),
        ] {
            let c = &counts[name];
            let total: u32 = c.iter().sum();
            if total == 0 {
                continue;
            }
            let colour = outcome_colour(kind);
            // Each bin's count at the middle of its second.
            let points = c
                .iter()
                .enumerate()
                .map(|(i, n)| (i as f64 + 0.5, *n as f64));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                .label(format!("{name} ({total})"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Writes `latency.svg` and `throughput.svg` into `dir`.
pub fn write_plots(dir: &Path, records: &[Record], faults: &[FaultWindow]) -> std::io::Result<()> {
    let latency = latency_svg(records, faults).map_err(|e| std::io::Error::other(e.to_string()))?;
    std::fs::write(dir.join("latency.svg"), latency)?;
    let throughput =
        throughput_svg(records, faults).map_err(|e| std::io::Error::other(e.to_string()))?;
    std::fs::write(dir.join("throughput.svg"), throughput)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        records: &mut Vec<Record>,
        process: u64,
        f: Function,
        outcome: EventType,
        t0: u64,
        t1: u64,
    ) {
        for (kind, time) in [(EventType::Invoke, t0), (outcome, t1)] {
            records.push(Record {
                process,
                kind,
                f,
                key: "k".into(),
                value: crate::history::Value::Nil,
                time,
                workload: if f == Function::Append {
                    names::SET
                } else {
                    names::REGISTER
                }
                .into(),
                node: None,
                error: None,
            });
        }
    }

    fn sample() -> (Vec<Record>, Vec<FaultWindow>) {
        let mut r = vec![];
        let mut t = 0;
        for i in 0..60u64 {
            let (f, outcome) = match i % 5 {
                0 => (Function::Read, EventType::Ok),
                1 => (Function::Write, EventType::Ok),
                2 => (Function::Cas, EventType::Fail),
                3 => (Function::Append, EventType::Ok),
                _ => (Function::Write, EventType::Info),
            };
            op(&mut r, i, f, outcome, t, t + 2_000 + i * 1_000);
            t += 100_000;
        }
        let faults = vec![
            FaultWindow {
                start_us: 1_000_000,
                end_us: 2_500_000,
                label: "kill n1".into(),
            },
            FaultWindow {
                start_us: 4_000_000,
                end_us: 5_000_000,
                label: "partition <n2>".into(),
            },
        ];
        (r, faults)
    }

    /// Fault bands as plotters writes them.
    fn bands(svg: &str) -> usize {
        svg.lines()
            .filter(|l| {
                l.contains("<rect")
                    && l.contains("fill=\"#808080\"")
                    && l.contains("opacity=\"0.2\"")
            })
            .count()
    }

    fn assert_well_formed(svg: &str) {
        let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
    }

    #[test]
    fn latency_plot_is_svg_with_a_band_per_fault_and_a_legend() {
        let (records, faults) = sample();
        let svg = latency_svg(&records, &faults).unwrap();
        assert_well_formed(&svg);
        assert_eq!(bands(&svg), 2, "{svg}");
        // Labels are escaped text.
        assert!(svg.contains("partition &lt;n2&gt;"), "{svg}");
        for legend in [
            "read ok (12)",
            "write info (12)",
            "cas fail (12)",
            "append ok (12)",
        ] {
            assert!(svg.contains(legend), "{legend} missing");
        }
    }

    #[test]
    fn throughput_plot_is_svg_with_a_band_per_fault_and_a_line_per_outcome() {
        let (records, faults) = sample();
        let svg = throughput_svg(&records, &faults).unwrap();
        assert_well_formed(&svg);
        assert_eq!(bands(&svg), 2);
        assert!(svg.contains("ok (36)") && svg.contains("fail (12)") && svg.contains("info (12)"));
        assert!(svg.matches("<polyline").count() >= 3, "{svg}");
    }

    #[test]
    fn an_empty_run_still_plots() {
        for svg in [
            latency_svg(&[], &[]).unwrap(),
            throughput_svg(&[], &[]).unwrap(),
        ] {
            assert_well_formed(&svg);
            assert_eq!(bands(&svg), 0);
        }
    }
}
