//! The charts of `cnisim compare`: many combinations on one chart, so every chart keeps a
//! legend column of its own and horizontal bars carry their full labels.
//!
//! Line `k` takes palette colour `k % 10`, solid for the first ten and dashed for the next ten,
//! so fifteen CNIs stay apart.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{message, render_png_sized, Area, DrawResult, FONT, PALETTE};
use crate::fmt;
use crate::report::RenderError;

/// Width of every compare chart, and of its legend column, px.
pub(in crate::report) const WIDTH: u32 = 1000;
const LEGEND: u32 = 250;
/// Height of a line chart, px.
pub(in crate::report) const LINE_HEIGHT: u32 = 520;

/// One line: its label and points; `style` picks colour and dash.
pub(in crate::report) struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub style: usize,
}

fn colour(style: usize) -> RGBColor {
    PALETTE[style % PALETTE.len()]
}

/// Colours of a stacked bar's parts: as many as there are kernel steps, so no two parts of a
/// bar share one (the ten of [`PALETTE`], then their light tints, as matplotlib's tab20).
fn stack_colour(k: usize) -> RGBColor {
    const LIGHT: [RGBColor; 10] = [
        RGBColor(174, 199, 232),
        RGBColor(255, 187, 120),
        RGBColor(152, 223, 138),
        RGBColor(255, 152, 150),
        RGBColor(197, 176, 213),
        RGBColor(196, 156, 148),
        RGBColor(247, 182, 210),
        RGBColor(199, 199, 199),
        RGBColor(219, 219, 141),
        RGBColor(158, 218, 229),
    ];
    match k / PALETTE.len() % 2 {
        0 => PALETTE[k % PALETTE.len()],
        _ => LIGHT[k % LIGHT.len()],
    }
}

fn dashed(style: usize) -> bool {
    (style / PALETTE.len()) % 2 == 1
}

/// A line chart, x on a log axis when `log_x` (points with x <= 0 are left out there), the
/// x axis cut at `x_max` when given (lines leave the plot there).
pub(in crate::report) fn lines(
    stem: &'static str,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    log_x: bool,
    y_range: Option<(f64, f64)>,
    x_max: Option<f64>,
    lines: &[Line],
) -> Result<Vec<u8>, RenderError> {
    render_png_sized(stem, (WIDTH, LINE_HEIGHT), |root| {
        let drawable = |p: &&(f64, f64)| !log_x || p.0 > 0.0;
        let pts = || lines.iter().flat_map(|l| l.points.iter()).filter(drawable);
        if pts().next().is_none() {
            return message(root, title, "nothing to draw: no combination has data for this chart");
        }
        let area = root.margin(10, 0, 0, 0).titled(title, (FONT, 22))?;
        let (plot, side) = area.split_horizontally(WIDTH - LEGEND);
        let (xlo, xhi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let xhi = x_max.filter(|m| *m > xlo).map_or(xhi, |m| m.min(xhi));
        let (ylo, yhi) = y_range.unwrap_or_else(|| {
            let top = pts().fold(0f64, |a, p| a.max(p.1));
            (0.0, if top > 0.0 { top * 1.1 } else { 1.0 })
        });
        let mut builder = ChartBuilder::on(&plot);
        builder.margin(15).x_label_area_size(45).y_label_area_size(65);
        // One mesh style for both axis kinds (a closure cannot be generic over them).
        macro_rules! style_mesh {
            ($mesh:expr) => {
                $mesh
                    .light_line_style(BLACK.mix(0.03))
                    .bold_line_style(BLACK.mix(0.12))
                    .x_desc(x_desc)
                    .y_desc(y_desc)
                    .axis_desc_style((FONT, 15))
                    .label_style((FONT, 13))
            };
        }
        if log_x {
            let (xlo, xhi) = (xlo / 1.15, xhi * 1.15);
            let mut chart = builder.build_cartesian_2d((xlo..xhi).log_scale(), ylo..yhi)?;
            style_mesh!(chart.configure_mesh())
                .x_labels(12)
                .x_label_formatter(&|v| fmt::tick(round_tick(*v)))
                .y_label_formatter(&|v| fmt::tick(*v))
                .draw()?;
            for l in lines {
                let line: Vec<(f64, f64)> = l.points.iter().copied().filter(|p| p.0 > 0.0).collect();
                draw_line(&mut chart, line, l.style)?;
            }
        } else {
            let pad = if xhi > xlo { (xhi - xlo) * 0.04 } else { 1.0 };
            let mut chart = builder.build_cartesian_2d((xlo - pad).max(0.0)..xhi + pad, ylo..yhi)?;
            style_mesh!(chart.configure_mesh())
                .x_label_formatter(&|v| fmt::tick(*v))
                .y_label_formatter(&|v| fmt::tick(*v))
                .draw()?;
            for l in lines {
                draw_line(&mut chart, l.points.clone(), l.style)?;
                if l.points.len() <= 12 {
                    let c = colour(l.style);
                    chart.draw_series(l.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
                }
            }
        }
        legend_column(&side, lines.iter().map(|l| (l.label.as_str(), l.style)), true, colour)
    })
}

/// A log-axis tick value rounded to two significant digits, so labels read "20", not "19.98".
fn round_tick(v: f64) -> f64 {
    if v <= 0.0 {
        return v;
    }
    let mag = 10f64.powf(v.log10().floor() - 1.0);
    (v / mag).round() * mag
}

fn draw_line<DB: DrawingBackend, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, DB, CT>,
    points: Vec<(f64, f64)>,
    style: usize,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let s = colour(style).stroke_width(2);
    if dashed(style) {
        chart.draw_series(DashedLineSeries::new(points, 7, 4, s))?;
    } else {
        chart.draw_series(LineSeries::new(points, s))?;
    }
    Ok(())
}

/// Legend entries down a column: a line (or a square) in the entry's style, then its label,
/// wrapped after commas onto more lines when it is long.
fn legend_column<'a>(
    side: &Area,
    entries: impl Iterator<Item = (&'a str, usize)>,
    as_lines: bool,
    colour_of: fn(usize) -> RGBColor,
) -> DrawResult {
    let text = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let max_chars = ((LEGEND - 40) / 7) as usize;
    let mut y = 40;
    for (label, style) in entries {
        let c = colour_of(style);
        if as_lines {
            let s = c.stroke_width(3);
            if dashed(style) {
                side.draw(&PathElement::new([(4, y), (10, y)], s))?;
                side.draw(&PathElement::new([(15, y), (22, y)], s))?;
            } else {
                side.draw(&PathElement::new([(4, y), (22, y)], s))?;
            }
        } else {
            side.draw(&Rectangle::new([(6, y - 6), (20, y + 6)], c.filled()))?;
        }
        for line in wrap(label, max_chars) {
            side.draw(&Text::new(super::truncate(&line, max_chars), (28, y), text.clone()))?;
            y += 16;
        }
        y += 4;
    }
    Ok(())
}

/// Splits `label` into lines of at most `width` characters, after ", " where it can.
fn wrap(label: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for (k, part) in label.split(", ").enumerate() {
        let piece = if k == 0 { part.to_string() } else { format!(", {part}") };
        if !current.is_empty() && current.chars().count() + piece.chars().count() > width {
            lines.push(std::mem::take(&mut current));
            current = piece.trim_start_matches(", ").to_string();
        } else {
            current.push_str(&piece);
        }
    }
    lines.push(current);
    lines
}

/// Horizontal bars: one band per row (a combination, its full label on the left), one bar per
/// series within it, or the series stacked end to end when `stacked` (e.g. CPU split by kernel
/// step). `values[row][series]`; `None` draws nothing and `missing` is written instead.
pub(in crate::report) struct HBars<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub rows: Vec<String>,
    pub series: Vec<String>,
    pub values: Vec<Vec<Option<f64>>>,
    pub stacked: bool,
    pub value_text: fn(f64) -> String,
    /// Written in a row without any value ("does not work here").
    pub missing: Vec<String>,
}

/// Pixels per bar and around each band.
const BAR: u32 = 13;
const BAND_GAP: u32 = 10;
const LABEL_WIDTH: u32 = 200;

impl HBars<'_> {
    pub(in crate::report) fn height(&self) -> u32 {
        let per = if self.stacked { 1 } else { self.series.len().max(1) as u32 };
        (120 + self.rows.len() as u32 * (per * BAR + BAND_GAP)).max(260)
    }

    pub(in crate::report) fn render(&self, stem: &'static str) -> Result<Vec<u8>, RenderError> {
        render_png_sized(stem, (WIDTH, self.height()), |root| self.draw(root))
    }

    fn draw(&self, root: &Area) -> DrawResult {
        let total = |row: &[Option<f64>]| -> f64 {
            if self.stacked {
                row.iter().flatten().sum()
            } else {
                row.iter().flatten().fold(0.0, |a: f64, b| a.max(*b))
            }
        };
        let top = self.values.iter().map(|r| total(r)).fold(0.0, f64::max);
        if self.rows.is_empty() || top <= 0.0 {
            return message(root, self.title, "nothing to draw: no combination has data for this chart");
        }
        let area = root.margin(10, 0, 0, 0).titled(self.title, (FONT, 22))?;
        let legend = self.series.len() > 1;
        let (plot, side) = area.split_horizontally(WIDTH - if legend { LEGEND } else { 0 });
        let n = self.rows.len() as f64;
        let mut chart = ChartBuilder::on(&plot)
            .margin(15)
            .margin_left(5)
            .x_label_area_size(45)
            .y_label_area_size(LABEL_WIDTH)
            .build_cartesian_2d(0f64..top * 1.18, 0f64..n)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .x_desc(self.x_desc)
            .x_label_formatter(&|v| fmt::tick(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()?;
        let s = self.series.len().max(1) as f64;
        let label_style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        let value_style = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        let grey = BLACK.mix(0.55);
        let note_style =
            TextStyle::from((FONT, 12).into_font()).color(&grey).pos(Pos::new(HPos::Left, VPos::Center));
        let max_chars = (LABEL_WIDTH / 7) as usize;
        for (r, row) in self.values.iter().enumerate() {
            // Row 0 at the top.
            let band = n - r as f64 - 1.0;
            let (y0, y1) = (band + 0.12, band + 0.88);
            let (lx, ly) = chart.backend_coord(&(0.0, (y0 + y1) / 2.0));
            root.draw(&Text::new(
                super::truncate(&self.rows[r], max_chars),
                (lx - 6, ly),
                label_style.clone(),
            ))?;
            if row.iter().all(Option::is_none) {
                if let Some(note) = self.missing.get(r).filter(|m| !m.is_empty()) {
                    chart.draw_series(std::iter::once(Text::new(
                        note.clone(),
                        (top * 0.01, (y0 + y1) / 2.0),
                        note_style.clone(),
                    )))?;
                }
                continue;
            }
            let mut start = 0.0;
            for (k, v) in row.iter().enumerate() {
                let Some(v) = *v else { continue };
                let c = if self.stacked { stack_colour(k) } else { colour(k) };
                let (a, b, bar_y0, bar_y1) = if self.stacked {
                    (start, start + v, y0, y1)
                } else {
                    let h = (y1 - y0) / s;
                    let yk1 = y1 - h * k as f64;
                    (0.0, v, yk1 - h * 0.92, yk1)
                };
                chart.draw_series(std::iter::once(Rectangle::new([(a, bar_y0), (b, bar_y1)], c.filled())))?;
                if !self.stacked {
                    chart.draw_series(std::iter::once(Text::new(
                        (self.value_text)(v),
                        (b + top * 0.005, (bar_y0 + bar_y1) / 2.0),
                        value_style.clone(),
                    )))?;
                }
                start += v;
            }
            if self.stacked {
                chart.draw_series(std::iter::once(Text::new(
                    (self.value_text)(start),
                    (start + top * 0.005, (y0 + y1) / 2.0),
                    value_style.clone(),
                )))?;
            }
        }
        if legend {
            let colour_of = if self.stacked { stack_colour } else { colour };
            legend_column(
                &side,
                self.series.iter().enumerate().map(|(k, l)| (l.as_str(), k)),
                false,
                colour_of,
            )?;
        }
        Ok(())
    }
}
