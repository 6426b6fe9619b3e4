//! `rerank eval --plot`: the metrics of each stage as grouped bars, in PNG or SVG.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rerank::eval::{Metrics, METRICS};

const SIZE: (u32, u32) = (960, 520);
const COLORS: [RGBColor; 4] = [
    RGBColor(0x9e, 0xb3, 0xc2),
    RGBColor(0x1f, 0x5f, 0x99),
    RGBColor(0xd9, 0x82, 0x2b),
    RGBColor(0x4c, 0x9a, 0x2a),
];
/// TrueType fonts tried for the labels, in order (`RERANK_PLOT_FONT` first).
const FONTS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

/// An error unless `path` ends in `.png` or `.svg` (checked before any work is done).
pub fn check_path(path: &Path) -> Result<()> {
    match extension(path).as_deref() {
        Some("png") | Some("svg") => Ok(()),
        _ => bail!(
            "--plot {}: the file name must end in .png or .svg",
            path.display()
        ),
    }
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Draws `stages` (`(label, metrics)`) into `path`, a `.png` or `.svg` file.
pub fn draw(path: &Path, title: &str, stages: &[(String, Metrics)]) -> Result<()> {
    check_path(path)?;
    let ext = extension(path);
    register_font()?;
    let result = if ext.as_deref() == Some("png") {
        chart(
            BitMapBackend::new(path, SIZE).into_drawing_area(),
            title,
            stages,
        )
    } else {
        chart(
            SVGBackend::new(path, SIZE).into_drawing_area(),
            title,
            stages,
        )
    };
    result.with_context(|| format!("cannot draw {}", path.display()))
}

/// Loads a TrueType font for the labels (plotters draws text with it).
fn register_font() -> Result<()> {
    let candidates: Vec<PathBuf> = std::env::var_os("RERANK_PLOT_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(FONTS.iter().map(PathBuf::from))
        .collect();
    let Some(bytes) = candidates.iter().find_map(|p| std::fs::read(p).ok()) else {
        bail!(
            "--plot needs a TrueType font for its labels: none found (tried {}); set \
             RERANK_PLOT_FONT=/path/to/font.ttf or install fonts-dejavu-core",
            FONTS.join(", ")
        );
    };
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("--plot: the font file is not a usable TrueType font"))
}

/// A sans-serif label of `size` pixels centred on its position.
fn centered(size: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Center))
}

fn chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    stages: &[(String, Metrics)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let groups = METRICS.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .y_label_area_size(48)
        .x_label_area_size(10)
        .build_cartesian_2d(0f64..groups, 0f64..1.3)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("mean over queries")
        .y_labels(6)
        .draw()?;
    let width = 0.8 / stages.len().max(1) as f64;
    for (s, (label, metrics)) in stages.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let bars = METRICS.iter().enumerate().map(|(g, m)| {
            let x0 = g as f64 + 0.1 + s as f64 * width;
            let value = metrics.get(&m.name()).copied().unwrap_or(0.0);
            Rectangle::new([(x0, 0.0), (x0 + width * 0.95, value)], color.filled())
        });
        chart
            .draw_series(bars)?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let values = METRICS.iter().enumerate().map(|(g, m)| {
            let value = metrics.get(&m.name()).copied().unwrap_or(0.0);
            let x = g as f64 + 0.1 + (s as f64 + 0.475) * width;
            Text::new(format!("{value:.2}"), (x, value + 0.03), centered(13))
        });
        chart.draw_series(values)?;
    }
    let names = METRICS
        .iter()
        .enumerate()
        .map(|(g, m)| Text::new(m.name(), (g as f64 + 0.5, 1.1), centered(15)));
    chart.draw_series(names)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
