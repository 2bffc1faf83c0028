//! Charts of suite results, as SVG next to the JSON (`<output dir>/<suite>.svg`).
//!
//! plotters draws them with its SVG backend only: text becomes SVG `<text>` that the viewer
//! renders, so no font files, bitmap codecs or C libraries are built into the benchmark (its
//! layout uses plotters' built-in estimate of text width, good enough for axis labels).
//!
//! Two panel kinds cover the suites: grouped bars (one group per size or case, one bar per
//! implementation) and lines (a figure against worker count).

use std::path::Path;

use plotters::prelude::*;

/// Series colours, in order; the same index gets the same colour in every panel of a chart, so
/// one legend reads across panels.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const PANEL_WIDTH: u32 = 620;
const PANEL_HEIGHT: u32 = 400;
const TITLE_HEIGHT: u32 = 40;
const SINGLE_WIDTH: u32 = 900;

fn colour(index: usize) -> RGBColor {
    COLOURS[index % COLOURS.len()]
}

/// One named series of values.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// For bars: one value per group. For lines: (x, y) points, x ascending.
    pub values: Vec<(f64, f64)>,
}

impl Series {
    /// A series of bar heights, one per group.
    pub fn bars(name: impl Into<String>, heights: impl IntoIterator<Item = f64>) -> Self {
        Self {
            name: name.into(),
            values: heights.into_iter().map(|h| (0.0, h)).collect(),
        }
    }

    /// A series of (x, y) points for a line.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            values: points,
        }
    }
}

/// One chart panel.
#[derive(Debug, Clone)]
pub enum Panel {
    /// Grouped bars: for each group (a size, a case), one bar per series.
    Bars {
        title: String,
        y_label: String,
        groups: Vec<String>,
        series: Vec<Series>,
    },
    /// Lines through points whose x are counts (rounded to whole numbers, e.g. workers);
    /// `reference` draws a grey horizontal line (e.g. ideal scaling).
    Lines {
        title: String,
        x_label: String,
        y_label: String,
        series: Vec<Series>,
        reference: Option<f64>,
    },
}

/// Draws `panels` in a grid of `columns` under `title` and writes the SVG to `path`.
pub fn draw(path: &Path, title: &str, panels: &[Panel], columns: usize) -> Result<(), String> {
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    // One panel alone gets more width, so a long caption fits.
    let size = (
        (PANEL_WIDTH * columns as u32).max(SINGLE_WIDTH),
        PANEL_HEIGHT * rows as u32 + TITLE_HEIGHT,
    );
    let fail = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let body = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| fail(&e))?;
    for (panel, area) in panels.iter().zip(body.split_evenly((rows, columns))) {
        match panel {
            Panel::Bars {
                title,
                y_label,
                groups,
                series,
            } => draw_bars(&area, title, y_label, groups, series),
            Panel::Lines {
                title,
                x_label,
                y_label,
                series,
                reference,
            } => draw_lines(&area, title, x_label, y_label, series, *reference),
        }
        .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    println!("  (chart: {})", path.display());
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

/// The top of the y axis: a little above the largest value, so bars and points stay inside.
fn y_top(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max > 0.0 { max * 1.15 } else { 1.0 }
}

fn draw_bars(
    area: &Area<'_>,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[Series],
) -> DrawResult {
    // Half-slot coordinates: each bar is two units wide and each group leaves one bar's gap,
    // so a group's centre always falls on an integer, where its label goes.
    let per_group = series.len() as i32 + 1;
    let slots = groups.len() as i32 * per_group;
    // Extra headroom over the tallest bar for the legend.
    let top = 1.2 * y_top(series.iter().flat_map(|s| s.values.iter().map(|v| v.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0..2 * slots, 0.0..top)?;
    let centre_label = |x: &i32| {
        let group = x / (2 * per_group);
        let centre = group * 2 * per_group + series.len() as i32;
        if *x == centre {
            groups.get(group as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(2)
        .x_labels(2 * slots as usize + 1)
        .x_label_formatter(&centre_label)
        .set_tick_mark_size(LabelAreaPosition::Bottom, 0)
        .y_desc(y_label)
        .label_style(("sans-serif", 12))
        .draw()?;
    for (index, s) in series.iter().enumerate() {
        let style = colour(index).filled();
        let bars = s
            .values
            .iter()
            .enumerate()
            .filter_map(move |(group, &(_, height))| {
                let left = 2 * (group as i32 * per_group + index as i32);
                height
                    .is_finite()
                    .then(|| Rectangle::new([(left, 0.0), (left + 2, height)], style))
            });
        chart
            .draw_series(bars)?
            .label(s.name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], style));
    }
    // The legend goes over the lower end of the chart, so it hides as little as possible.
    let group_max = |group: usize| {
        series
            .iter()
            .filter_map(|s| s.values.get(group).map(|v| v.1))
            .fold(0.0, f64::max)
    };
    let legend_at = if group_max(0) > group_max(groups.len().saturating_sub(1)) {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::UpperLeft
    };
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 12))
        .draw()
}

fn draw_lines(
    area: &Area<'_>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    reference: Option<f64>,
) -> DrawResult {
    // x is a count (workers): integer axis, so ticks fall on whole numbers only.
    let points = || series.iter().flat_map(|s| s.values.iter().copied());
    let x_max = points().map(|p| p.0.round() as i32).fold(1, i32::max) + 1;
    let top = y_top(points().map(|p| p.1).chain(reference));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0..x_max, 0.0..top)?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .max_light_lines(2)
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 12))
        .draw()?;
    if let Some(level) = reference {
        chart.draw_series(LineSeries::new(
            [(0, level), (x_max, level)],
            BLACK.mix(0.35).stroke_width(1),
        ))?;
    }
    for (index, s) in series.iter().enumerate() {
        let style = colour(index).stroke_width(2);
        let finite = s
            .values
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| (x.round() as i32, y));
        chart
            .draw_series(LineSeries::new(finite, style).point_size(3))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 12))
        .draw()
}
