//! `bench soak`'s chart: a PNG with one panel per quantity and one line
//! per node over the run, the warm-up shaded; each panel's y range is that
//! of the samples after the warm-up (earlier ones are clipped), and is
//! written at its top and bottom left.
//!
//! plotters draws the frames, grid and lines; its text needs a font
//! feature (`ttf` wants fontconfig, `ab_glyph` a registered font file, and
//! without either a bitmap panics on text), so the few labels here (panel
//! titles, the y range, the time axis, the legend) are drawn by a 3x5 pixel
//! font of our own, [`GLYPHS`]: the chart needs no font on the machine.

use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One panel: its title and, per node, its (seconds, value) points.
pub(super) struct Panel {
    pub title: String,
    pub series: Vec<Vec<(f64, f64)>>,
}

const WIDTH: u32 = 1400;
const ROW_HEIGHT: u32 = 300;
const LEGEND_HEIGHT: u32 = 40;
const COLUMNS: usize = 2;
/// Pixels per font pixel.
const SCALE: i32 = 3;
const NODE_COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];
const WARMUP: RGBColor = RGBColor(230, 230, 230);
const GRID: RGBColor = RGBColor(215, 215, 215);

pub(super) fn node_color(k: usize) -> RGBColor {
    NODE_COLORS[k % NODE_COLORS.len()]
}

/// Draws `panels` for the nodes `nodes` (ids, in series order) over
/// `0..end_s` seconds with `0..warmup_s` shaded, into the PNG file `path`.
pub(super) fn draw(
    path: &Path,
    panels: &[Panel],
    nodes: &[u64],
    warmup_s: f64,
    end_s: f64,
) -> anyhow::Result<()> {
    let rows = panels.len().div_ceil(COLUMNS).max(1) as u32;
    let size = (WIDTH, LEGEND_HEIGHT + rows * ROW_HEIGHT);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let (legend, body) = root.split_vertically(LEGEND_HEIGHT);
    draw_legend(&legend, nodes, end_s)?;
    let areas = body.split_evenly((rows as usize, COLUMNS));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel, warmup_s, end_s.max(1.0))
            .with_context(|| format!("drawing the {} panel", panel.title))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn draw_legend(
    area: &DrawingArea<BitMapBackend, Shift>,
    nodes: &[u64],
    end_s: f64,
) -> anyhow::Result<()> {
    let mut x = text(
        area,
        12,
        12,
        &format!("BIFROST SOAK {}", span_text(end_s)),
        BLACK,
    )? + 40;
    for (k, id) in nodes.iter().enumerate() {
        area.draw(&Rectangle::new(
            [(x, 16), (x + 24, 20)],
            node_color(k).filled(),
        ))?;
        x = text(area, x + 32, 12, &format!("NODE {id}"), node_color(k))? + 30;
    }
    area.draw(&Rectangle::new([(x, 10), (x + 24, 28)], WARMUP.filled()))?;
    text(area, x + 32, 12, "WARM-UP", BLACK)?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    panel: &Panel,
    warmup_s: f64,
    end_s: f64,
) -> anyhow::Result<()> {
    // The range of the judged samples: a warm-up far off (a store's first
    // bytes per reading) would flatten what the verdict looks at; it is
    // clipped instead.
    let judged = || panel.series.iter().flatten().filter(|p| p.0 >= warmup_s);
    let (lo, hi) = if judged().next().is_some() {
        y_range(judged().map(|p| p.1))
    } else {
        y_range(panel.series.iter().flatten().map(|p| p.1))
    };
    let mut chart = ChartBuilder::on(area)
        .margin_top(30)
        .margin_left(90)
        .margin_bottom(30)
        .margin_right(16)
        .build_cartesian_2d(0.0..end_s, lo..hi)?;
    let plot = chart.plotting_area();
    plot.draw(&Rectangle::new(
        [(0.0, lo), (warmup_s.min(end_s), hi)],
        WARMUP.filled(),
    ))?;
    for k in 1..4 {
        let y = lo + (hi - lo) * f64::from(k) / 4.0;
        plot.draw(&PathElement::new(vec![(0.0, y), (end_s, y)], GRID))?;
    }
    for (k, points) in panel.series.iter().enumerate() {
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            node_color(k).stroke_width(2),
        ))?;
    }
    let plot = chart.plotting_area();
    plot.draw(&Rectangle::new([(0.0, lo), (end_s, hi)], BLACK))?;

    // Labels, in the panel's own pixels.
    let (xs, ys) = plot.get_pixel_range();
    let (ax, ay) = (area.get_base_pixel().0, area.get_base_pixel().1);
    let (left, right) = (xs.start - ax, xs.end - ax);
    let (top, bottom) = (ys.start - ay, ys.end - ay);
    text(area, left, top - 22, &panel.title.to_uppercase(), BLACK)?;
    let label_h = 5 * SCALE;
    let hi_text = number_text(hi);
    text(area, left - 8 - text_width(&hi_text), top, &hi_text, BLACK)?;
    let lo_text = number_text(lo);
    let lo_y = bottom - label_h;
    text(area, left - 8 - text_width(&lo_text), lo_y, &lo_text, BLACK)?;
    text(area, left, bottom + 8, "0", BLACK)?;
    let end = span_text(end_s);
    text(area, right - text_width(&end), bottom + 8, &end, BLACK)?;
    Ok(())
}

/// The y range of a panel: its values with 5% to spare, or around a lone
/// value (0..1 without any).
pub(super) fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.01).max(0.5);
    (lo - pad, hi + pad)
}

/// A label for a value: no decimals from 100 up.
fn number_text(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// `1H30M`, `3M`, `45S`: the time axis's end.
pub(super) fn span_text(secs: f64) -> String {
    let d = std::time::Duration::from_secs(secs.round() as u64);
    humantime::format_duration(d)
        .to_string()
        .replace(' ', "")
        .to_uppercase()
}

/// Glyphs of the pixel font: five rows of three pixels, the top row in the
/// highest bits, `1` a drawn pixel.
const GLYPHS: [(char, u16); 42] = [
    ('0', 0b111_101_101_101_111),
    ('1', 0b010_110_010_010_111),
    ('2', 0b111_001_111_100_111),
    ('3', 0b111_001_111_001_111),
    ('4', 0b101_101_111_001_001),
    ('5', 0b111_100_111_001_111),
    ('6', 0b111_100_111_101_111),
    ('7', 0b111_001_001_001_001),
    ('8', 0b111_101_111_101_111),
    ('9', 0b111_101_111_001_111),
    ('A', 0b010_101_111_101_101),
    ('B', 0b110_101_110_101_110),
    ('C', 0b011_100_100_100_011),
    ('D', 0b110_101_101_101_110),
    ('E', 0b111_100_110_100_111),
    ('F', 0b111_100_110_100_100),
    ('G', 0b011_100_101_101_011),
    ('H', 0b101_101_111_101_101),
    ('I', 0b111_010_010_010_111),
    ('J', 0b001_001_001_101_010),
    ('K', 0b101_101_110_101_101),
    ('L', 0b100_100_100_100_111),
    ('M', 0b101_111_111_101_101),
    ('N', 0b110_101_101_101_101),
    ('O', 0b010_101_101_101_010),
    ('P', 0b110_101_110_100_100),
    ('Q', 0b010_101_101_110_011),
    ('R', 0b110_101_110_101_101),
    ('S', 0b011_100_010_001_110),
    ('T', 0b111_010_010_010_010),
    ('U', 0b101_101_101_101_111),
    ('V', 0b101_101_101_101_010),
    ('W', 0b101_101_111_111_101),
    ('X', 0b101_101_010_101_101),
    ('Y', 0b101_101_010_010_010),
    ('Z', 0b111_001_010_100_111),
    ('.', 0b000_000_000_000_010),
    ('-', 0b000_000_111_000_000),
    ('+', 0b000_010_111_010_000),
    ('/', 0b001_001_010_100_100),
    (':', 0b000_010_000_010_000),
    ('(', 0b001_010_010_010_001),
];

/// The glyph of `c` (letters in either case); `None` for a character the
/// font lacks (drawn as a space).
pub(super) fn glyph(c: char) -> Option<u16> {
    let c = c.to_ascii_uppercase();
    GLYPHS.iter().find(|g| g.0 == c).map(|g| g.1)
}

/// Width in pixels of `s` in the pixel font.
fn text_width(s: &str) -> i32 {
    (s.chars().count() as i32 * 4 - 1).max(0) * SCALE
}

/// Draws `s` with its top-left corner at (x, y); returns the x after it.
fn text(
    area: &DrawingArea<BitMapBackend, Shift>,
    x: i32,
    y: i32,
    s: &str,
    color: RGBColor,
) -> anyhow::Result<i32> {
    let mut at = x;
    for c in s.chars() {
        let bits = glyph(c).unwrap_or(0);
        for row in 0..5 {
            for col in 0..3 {
                if bits & (1 << (14 - (row * 3 + col))) != 0 {
                    let (px, py) = (at + col * SCALE, y + row * SCALE);
                    area.draw(&Rectangle::new(
                        [(px, py), (px + SCALE, py + SCALE)],
                        color.filled(),
                    ))?;
                }
            }
        }
        at += 4 * SCALE;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_font_has_every_character_the_chart_writes() {
        let labels = [
            "BIFROST SOAK 72H",
            "NODE 3",
            "WARM-UP",
            "RSS MB",
            "OPEN FDS",
            "THREADS",
            "ROCKSDB MB",
            "DISK MB",
            "DISK B/READING",
            "-12.5",
            "1H30M",
        ];
        for l in labels {
            for c in l.chars().filter(|c| *c != ' ') {
                assert!(glyph(c).is_some(), "{c:?} of {l:?}");
            }
        }
        // Distinct glyphs for distinct characters (a copy-paste slip shows).
        let mut seen = std::collections::HashSet::new();
        assert!(GLYPHS.iter().all(|g| seen.insert(g.1)));
        assert_eq!(text_width("ABC"), 11 * SCALE);
        assert_eq!(span_text(5400.0), "1H30M");
        assert_eq!(span_text(180.0), "3M");
    }

    #[test]
    fn y_ranges_hold_every_value() {
        assert_eq!(y_range([].into_iter()), (0.0, 1.0));
        let (lo, hi) = y_range([10.0, 30.0].into_iter());
        assert!(lo < 10.0 && hi > 30.0 && hi - lo < 25.0, "{lo}..{hi}");
        // A flat series still gets a range.
        let (lo, hi) = y_range([61.0, 61.0].into_iter());
        assert!(lo < 61.0 && hi > 61.0);
    }

    #[test]
    fn a_chart_is_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soak.png");
        let line = |k: f64| (0..20).map(|i| (i as f64 * 10.0, k + i as f64)).collect();
        let panels = vec![
            Panel {
                title: "RSS MB".into(),
                series: vec![line(80.0), line(90.0), line(85.0)],
            },
            Panel {
                title: "open fds".into(),
                series: vec![vec![(0.0, 61.0)], Vec::new(), line(1.0)],
            },
            Panel {
                title: "nothing".into(),
                series: Vec::new(),
            },
        ];
        draw(&path, &panels, &[1, 2, 3], 60.0, 190.0).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // Width and height from the IHDR chunk: two rows of panels.
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        assert_eq!(be(&bytes[16..20]), WIDTH);
        assert_eq!(be(&bytes[20..24]), LEGEND_HEIGHT + 2 * ROW_HEIGHT);
        assert!(draw(
            &dir.path().join("no/such/dir/x.png"),
            &panels,
            &[1],
            0.0,
            10.0
        )
        .is_err());
    }
}
