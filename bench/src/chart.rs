//! PNG charts: throughput over time (1 s buckets) and latency percentile
//! curves (x: 1/(1-p) on a log scale, as HdrHistogram's plots).
//!
//! Text needs a TrueType font, registered at run time from
//! [`FONT_PATHS`] (`fonts-dejavu-core`, installed by `scripts/setup.sh`).
//! Without one, no chart is drawn and the caller is told why.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

/// Fonts tried, in order.
pub const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Registers the first font found as "sans-serif", once.
fn font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = FONT_PATHS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| {
                format!(
                    "no font for the charts (looked for {}; run bench/scripts/setup.sh)",
                    FONT_PATHS.join(", ")
                )
            })?;
        // The registry keeps a 'static reference; registered once per process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the font could not be read".to_string())
    })
    .clone()
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A line chart of named series of (x, y) points.
struct Lines<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    series: &'a [(&'a str, Vec<(f64, f64)>)],
    /// Vertical lines: (x, label).
    marks: &'a [(f64, &'a str)],
}

fn draw_lines(path: &Path, l: &Lines<'_>, log_x_percentiles: bool) -> Result<(), String> {
    font()?;
    let points = || l.series.iter().flat_map(|(_, s)| s.iter());
    let x_max = points().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.1;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(l.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    let to_pct = |x: &f64| {
        let p = 100.0 - 100.0 / 10f64.powf(*x);
        format!("{p:.*}%", (x.round() as usize).saturating_sub(2))
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(l.x_desc).y_desc(l.y_desc);
    if log_x_percentiles {
        mesh.x_label_formatter(&to_pct).x_labels(8);
    }
    mesh.draw().map_err(err)?;
    for (i, (name, pts)) in l.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    for (x, name) in l.marks {
        let grey = RGBColor(90, 90, 90);
        chart
            .draw_series(LineSeries::new([(*x, 0.0), (*x, y_max)], grey))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Throughput over time: one line per series of (second, MiB/s), and a
/// vertical line at each of `marks` (e.g. where the test phase starts).
pub fn throughput(
    path: &Path,
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    marks: &[(f64, &str)],
) -> Result<(), String> {
    draw_lines(
        path,
        &Lines {
            title,
            x_desc: "seconds since the start of the run",
            y_desc: "MiB/s",
            series,
            marks,
        },
        false,
    )
}

/// Latency percentile curves: one line per series of (percentile, ms).
pub fn percentiles(
    path: &Path,
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), String> {
    let log: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(n, pts)| {
            let pts = pts
                .iter()
                .map(|(p, ms)| ((1.0 / (1.0 - p / 100.0)).log10(), *ms))
                .collect();
            (*n, pts)
        })
        .collect();
    draw_lines(
        path,
        &Lines {
            title,
            x_desc: "percentile",
            y_desc: "latency (ms)",
            series: &log,
            marks: &[],
        },
        true,
    )
}
