//! `shmkit bench --plot FILE.svg|FILE.png`: one panel per case, one row
//! per impl, on a log axis so a 100× gap and a 10% gap both stay readable.
//!
//! Latency rows show the distribution (whisker p1–p99, box p25–p75, thick
//! tick at the median); throughput rows a bar to the median. Small hollow
//! dots are the per-round values, so the machine's modes stay visible; the
//! dashed line marks the floor's median; shmkit impls are orange, the floor
//! grey, peers blue.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use shmkit_cli::bench::engine::{CaseReport, ImplReport};
use shmkit_cli::bench::report::human;
use shmkit_cli::bench::Metric;

const WIDTH: u32 = 1200;
const ROW: u32 = 34;
const HEAD: u32 = 64;
const TOP: u32 = 76;
const FONT: &str = "sans-serif";

const FLOOR: RGBColor = RGBColor(110, 110, 110);
const PEER: RGBColor = RGBColor(52, 120, 200);
const SHMKIT: RGBColor = RGBColor(232, 118, 20);

/// Fonts tried for text layout (plotters measures text even for SVG).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
];

/// Checks the extension before a long run, so a typo fails fast.
pub fn check_path(p: &Path) -> Result<(), String> {
    match ext(p).as_deref() {
        Some("svg" | "png") => {}
        _ => {
            return Err(format!(
                "--plot {}: the file name must end in .svg or .png",
                p.display()
            ))
        }
    }
    load_font()
}

fn ext(p: &Path) -> Option<String> {
    p.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

fn load_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        for f in FONTS {
            if let Ok(bytes) = std::fs::read(f) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "--plot needs a TrueType font to lay out text and found none of {}; install \
             fonts-dejavu-core (Debian/Ubuntu) or dejavu-sans-fonts (Fedora)",
            FONTS.join(", ")
        ))
    })
    .clone()
}

/// Draws `reports` to `p` (SVG or PNG by extension).
pub fn draw(p: &Path, reports: &[CaseReport]) -> Result<(), String> {
    check_path(p)?;
    let cases: Vec<&CaseReport> = reports
        .iter()
        .filter(|c| c.impls.iter().any(|r| r.median().is_some()))
        .collect();
    if cases.is_empty() {
        return Err("nothing to plot: no impl produced a result".into());
    }
    let height = TOP + cases.iter().map(|c| panel_height(c)).sum::<u32>() + 10;
    if ext(p).as_deref() == Some("png") {
        let root = BitMapBackend::new(p, (WIDTH, height)).into_drawing_area();
        draw_on(&root, &cases)?;
        root.present()
            .map_err(|e| format!("writing {}: {e}", p.display()))
    } else {
        let root = SVGBackend::new(p, (WIDTH, height)).into_drawing_area();
        draw_on(&root, &cases)?;
        root.present()
            .map_err(|e| format!("writing {}: {e}", p.display()))
    }
}

fn rows(c: &CaseReport) -> Vec<&ImplReport> {
    c.impls.iter().filter(|r| r.median().is_some()).collect()
}

fn panel_height(c: &CaseReport) -> u32 {
    HEAD + ROW * rows(c).len() as u32 + 36
}

fn color(c: &CaseReport, name: &str) -> RGBColor {
    if c.case.floor == Some(name) {
        FLOOR
    } else if name.starts_with("shmkit") {
        SHMKIT
    } else {
        PEER
    }
}

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    cases: &[&CaseReport],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing the plot: {e}");
    root.fill(&WHITE).map_err(err)?;
    let (title, mut rest) = root.split_vertically(TOP);
    title
        .draw_text(
            "shmkit bench",
            &(FONT, 26).into_font().color(&BLACK),
            (20, 12),
        )
        .map_err(err)?;
    title
        .draw_text(
            "log scale · hollow dots: per-round values · latency: whisker p1–p99, box p25–p75, \
             tick = median · bars: median rate · dashed: the floor",
            &(FONT, 13).into_font().color(&RGBColor(90, 90, 90)),
            (20, 46),
        )
        .map_err(err)?;
    for c in cases {
        let (area, r) = rest.split_vertically(panel_height(c));
        rest = r;
        panel(&area, c)?;
    }
    Ok(())
}

fn better(m: Metric) -> &'static str {
    match m {
        Metric::RttNs | Metric::NsPerOp => "lower is better",
        Metric::MsgsPerS | Metric::BytesPerS => "higher is better",
    }
}

fn panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &CaseReport) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing the plot: {e}");
    let m = c.case.metric;
    let rows = rows(c);
    let n = rows.len();
    let latency = rows.iter().any(|r| r.hist.is_some());
    let mut lo = f64::MAX;
    let mut hi = f64::MIN_POSITIVE;
    for r in &rows {
        let mut vals: Vec<f64> = r.per_round.iter().flatten().copied().collect();
        vals.extend(r.percentile(1.0));
        vals.extend(r.percentile(99.0));
        for v in vals.into_iter().filter(|v| *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if lo > hi {
        return Ok(());
    }
    // Labels start right of the panel's largest value.
    let label_x = hi * 1.3;
    // Room on the left for bars to start, on the right for value labels.
    let lo = if latency { lo / 1.6 } else { lo / 4.0 };
    let hi = hi * 6.0;
    let caption = format!(
        "{}  —  {} [{}, {}]",
        c.case.name,
        c.case.description,
        m.as_str(),
        better(m)
    );
    let mut chart = ChartBuilder::on(area)
        .margin_left(10)
        .margin_right(20)
        .margin_top(8)
        .caption(caption, (FONT, 16).into_font())
        .x_label_area_size(28)
        .y_label_area_size(160)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(8)
        .x_label_formatter(&|x| human(*x, m))
        .x_label_style((FONT, 12).into_font())
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    let base = area.get_base_pixel();
    for (i, r) in rows.iter().enumerate() {
        let y = n as f64 - i as f64 - 0.5;
        let col = color(c, r.name);
        let Some(med) = r.median() else { continue };
        if let (Some(p1), Some(p25), Some(p75), Some(p99)) = (
            r.percentile(1.0),
            r.percentile(25.0),
            r.percentile(75.0),
            r.percentile(99.0),
        ) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(p1, y), (p99, y)],
                    col.stroke_width(2),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(p25, y - 0.28), (p75, y + 0.28)],
                    col.mix(0.35).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(p25, y - 0.28), (p75, y + 0.28)],
                    col.stroke_width(1),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(med, y - 0.36), (med, y + 0.36)],
                    col.stroke_width(4),
                )))
                .map_err(err)?;
        } else {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(lo, y - 0.3), (med, y + 0.3)],
                    col.mix(0.8).filled(),
                )))
                .map_err(err)?;
        }
        chart
            .draw_series(
                r.per_round
                    .iter()
                    .flatten()
                    .map(|&v| Circle::new((v, y), 4, BLACK.mix(0.75).stroke_width(1))),
            )
            .map_err(err)?;
        // Value and ratio in one column right of every row's data.
        let right = label_x;
        let ratio = r
            .ratio()
            .map_or(String::new(), |x| format!("   ×{x:.2} floor"));
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{}{ratio}", human(med, m)),
                (right, y + 0.18),
                (FONT, 13).into_font(),
            )))
            .map_err(err)?;
        // The impl's name in the label area, level with its row.
        let (_, py) = chart.backend_coord(&(lo, y));
        let label = if c.case.floor == Some(r.name) {
            format!("{} (floor)", r.name)
        } else {
            r.name.to_string()
        };
        area.draw_text(
            &label,
            &(FONT, 14).into_font().color(&col),
            (12, py - base.1 - 8),
        )
        .map_err(err)?;
    }
    if let Some(f) = c
        .case
        .floor
        .and_then(|f| rows.iter().find(|r| r.name == f))
        .and_then(|r| r.median())
    {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(f, 0.0), (f, n as f64)],
                6,
                4,
                FLOOR.stroke_width(1),
            ))
            .map_err(err)?;
    }
    Ok(())
}
