//! PNG charts drawn with plotters into an in-memory RGB buffer, then PNG-encoded.
//!
//! Text uses the bundled DejaVu Sans (registered once as "sans-serif"), so charts render the
//! same on every machine, with no system fonts. Every chart is 900x500 px; a chart with no
//! data still renders (titled, with a sentence saying why it is empty) so the file set is fixed.

use std::error::Error;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use super::{drop_rows, flow_label, RenderError};

/// The charts of `cnisim compare` (they use this module's drawing helpers).
pub(super) mod compare;
use crate::summary::{FlowSummary, Summary};

/// Width and height of every chart, px.
pub(super) const SIZE: (u32, u32) = (900, 500);
const FONT: &str = "sans-serif";
/// Most legend entries shown; further series are summarised in one entry.
const LEGEND_MAX: usize = 10;
/// Most bars annotated with their value; denser charts are left unlabelled.
const ANNOTATE_MAX: usize = 24;
/// Width of the legend column right of a bar chart, px.
const LEGEND_WIDTH: u32 = 130;
/// Width of one bar group in x-axis units (bar positions are integers).
const GROUP: i64 = 1000;
/// Tableau 10: distinct, colour-blind friendly enough, readable on white.
const PALETTE: [RGBColor; 10] = [
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

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

/// `latency_cdf.png`: one line per flow, x = one-way latency (µs), y = quantile.
pub(super) fn latency_cdf(summary: &Summary) -> Result<Vec<u8>, RenderError> {
    let title = "One-way latency CDF per flow";
    let flows: Vec<&FlowSummary> = summary.flows.iter().filter(|f| !f.latency.cdf.is_empty()).collect();
    render_png("latency_cdf", |root| {
        if flows.is_empty() {
            return message(root, title, "no latency samples: no datagram was delivered");
        }
        let points = flows.iter().flat_map(|f| f.latency.cdf.iter().map(|(_, ns)| *ns as f64 / 1e3));
        let (lo, hi) = padded_range(points);
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0f64..1f64)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.03))
            .bold_line_style(BLACK.mix(0.12))
            .x_desc("one-way latency (µs)")
            .y_desc("quantile")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()?;
        for (i, flow) in flows.iter().enumerate() {
            let style = PALETTE[i % PALETTE.len()].stroke_width(2);
            let line = flow.latency.cdf.iter().map(|(q, ns)| (*ns as f64 / 1e3, *q));
            let series = chart.draw_series(LineSeries::new(line, style))?;
            if i < LEGEND_MAX {
                series
                    .label(flow_label(flow))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            }
        }
        if flows.len() > LEGEND_MAX {
            let more = format!("... and {} more flows", flows.len() - LEGEND_MAX);
            chart.draw_series(LineSeries::new(std::iter::empty(), WHITE))?.label(more);
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// A TCP stream's label for legends: "1 eight-streams #3".
fn stream_label(flow: &FlowSummary, stream: usize, streams: usize) -> String {
    if streams == 1 {
        format!("{} {}", flow.id, flow.workload)
    } else {
        format!("{} {} #{stream}", flow.id, flow.workload)
    }
}

/// `tcp_goodput.png` or `tcp_in_flight.png`: one line per bulk TCP stream over the time since
/// its flow started (ms); `pick` chooses the series and its unit.
pub(super) fn tcp_series(
    summary: &Summary,
    chart_name: &'static str,
    title: &str,
    y_desc: &str,
    pick: fn(&crate::summary::StreamSummary) -> Vec<f64>,
) -> Result<Vec<u8>, RenderError> {
    // (label, [(ms, value)]) per stream of every bulk transfer.
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for flow in summary.flows.iter().filter(|f| f.rtt.is_none()) {
        let Some(tcp) = &flow.tcp else { continue };
        for (i, st) in tcp.streams.iter().enumerate() {
            let pts = pick(st)
                .into_iter()
                .enumerate()
                .map(|(k, v)| ((k as u64 + 1) as f64 * tcp.interval_ns as f64 / 1e6, v))
                .collect();
            lines.push((stream_label(flow, i, tcp.streams.len()), pts));
        }
    }
    render_png(chart_name, |root| {
        if lines.is_empty() {
            return message(root, title, "no TCP stream: the scenario has no TcpStream workload");
        }
        let x_hi = lines.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)).fold(0f64, f64::max);
        let y_max = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)).fold(0f64, f64::max);
        let y_top = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(0f64..x_hi.max(1e-3), 0f64..y_top)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.03))
            .bold_line_style(BLACK.mix(0.12))
            .x_desc("time since the flow started (ms)")
            .y_desc(y_desc)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()?;
        for (i, (label, pts)) in lines.iter().enumerate() {
            let style = PALETTE[i % PALETTE.len()].stroke_width(2);
            let series = chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
            if i < LEGEND_MAX {
                series.label(label).legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            }
        }
        if lines.len() > LEGEND_MAX {
            let more = format!("... and {} more streams", lines.len() - LEGEND_MAX);
            chart.draw_series(LineSeries::new(std::iter::empty(), WHITE))?.label(more);
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// `tcp_transactions.png`: CDF of the transaction times of each TCP_RR / TCP_CRR flow (µs).
pub(super) fn tcp_transactions(summary: &Summary) -> Result<Vec<u8>, RenderError> {
    let title = "TCP transaction time CDF per request/response flow";
    let flows: Vec<&FlowSummary> = summary
        .flows
        .iter()
        .filter(|f| f.tcp.is_some() && f.rtt.as_ref().is_some_and(|r| !r.cdf.is_empty()))
        .collect();
    render_png("tcp_transactions", |root| {
        if flows.is_empty() {
            return message(root, title, "no TCP transaction completed");
        }
        let cdf = |f: &&FlowSummary| f.rtt.as_ref().map(|r| r.cdf.clone()).unwrap_or_default();
        let points = flows.iter().flat_map(|f| cdf(f).into_iter().map(|(_, ns)| ns as f64 / 1e3));
        // A log axis: a tenth below the fastest and above the slowest.
        let (lo, hi) = points.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = (lo * 0.9, hi * 1.1);
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((lo.max(0.1)..hi.max(lo.max(0.1) * 2.0)).log_scale(), 0f64..1f64)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.03))
            .bold_line_style(BLACK.mix(0.12))
            .x_desc("transaction time (µs, log scale)")
            .y_desc("quantile")
            .x_label_formatter(&|v| log_tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()?;
        for (i, flow) in flows.iter().enumerate() {
            let style = PALETTE[i % PALETTE.len()].stroke_width(2);
            let line: Vec<(f64, f64)> =
                cdf(flow).into_iter().map(|(q, ns)| ((ns as f64 / 1e3).max(lo.max(0.1)), q)).collect();
            let series = chart.draw_series(LineSeries::new(line, style))?;
            if i < LEGEND_MAX {
                series
                    .label(flow_label(flow))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            }
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// `latency_percentiles.png`: p50 / p99 / max one-way latency per flow, grouped bars (µs).
pub(super) fn latency_percentiles(summary: &Summary) -> Result<Vec<u8>, RenderError> {
    let delivered: Vec<&FlowSummary> = summary.flows.iter().filter(|f| f.latency.count > 0).collect();
    let bars = Bars {
        title: "One-way latency per flow: p50 / p99 / max",
        x_desc: "flow (id and workload, see the flows table)",
        y_desc: "one-way latency (µs)",
        groups: delivered.iter().map(|f| format!("#{} {}", f.id, f.workload)).collect(),
        series: ["p50", "p99", "max"].map(String::from).to_vec(),
        values: delivered
            .iter()
            .map(|f| {
                [f.latency.p50_ns, f.latency.p99_ns, f.latency.max_ns]
                    .map(|ns| Some(ns as f64 / 1e3))
                    .to_vec()
            })
            .collect(),
        y_max: None,
        value_text: |us| super::sig3(us),
        empty: "no latency samples: no datagram was delivered",
    };
    render_png("latency_percentiles", |root| bars.draw(root))
}

/// `cpu.png`: busy percentage of each core, grouped by node.
pub(super) fn cpu(summary: &Summary) -> Result<Vec<u8>, RenderError> {
    let cores = summary.nodes.iter().map(|n| n.cpu_utilisation.len()).max().unwrap_or(0);
    let bars = Bars {
        title: "CPU utilisation per core, per node",
        x_desc: "node (one bar per core, core 0 first)",
        y_desc: "busy (% of simulated time)",
        groups: summary.nodes.iter().map(|n| n.name.clone()).collect(),
        series: (0..cores).map(|c| format!("core {c}")).collect(),
        values: summary
            .nodes
            .iter()
            .map(|n| (0..cores).map(|c| n.cpu_utilisation.get(c).map(|u| u * 100.0)).collect())
            .collect(),
        y_max: Some(100.0),
        value_text: |pct| format!("{pct:.1}%"),
        empty: "no nodes",
    };
    render_png("cpu", |root| bars.draw(root))
}

/// `drops.png`: dropped data packets and ARP frames by reason; says "no drops" when empty.
pub(super) fn drops(summary: &Summary) -> Result<Vec<u8>, RenderError> {
    let rows = drop_rows(summary);
    let mut reasons: Vec<&str> = rows.iter().map(|(_, reason, _)| *reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let scopes: Vec<(&str, &str)> = [("data", "data packets"), ("arp", "ARP frames")]
        .into_iter()
        .filter(|(scope, _)| rows.iter().any(|(s, _, _)| s == scope))
        .collect();
    let count = |scope: &str, reason: &str| {
        rows.iter().find(|(s, r, _)| *s == scope && *r == reason).map(|(_, _, n)| *n as f64)
    };
    let bars = Bars {
        title: "Drops by reason",
        x_desc: "reason",
        y_desc: "dropped (packets / frames)",
        groups: reasons.iter().map(|r| r.to_string()).collect(),
        series: scopes.iter().map(|(_, name)| name.to_string()).collect(),
        values: reasons.iter().map(|r| scopes.iter().map(|(s, _)| count(s, r)).collect()).collect(),
        y_max: None,
        value_text: |n| tick(n.round()),
        empty: "no drops: every datagram and ARP frame sent was delivered or is still in flight",
    };
    render_png("drops", |root| bars.draw(root))
}

/// `overhead.png`: bytes on the node NIC beyond the UDP payload, as % of the payload, against
/// the payload size: one line with a point (and its value) per probed size.
pub(super) fn overhead(summary: &Summary) -> Result<Vec<u8>, RenderError> {
    let title = super::overhead_title(summary);
    let points: Vec<(f64, f64)> = summary
        .overhead
        .iter()
        .filter(|p| p.underlay_frame > 0)
        .map(|p| (f64::from(p.payload), p.overhead_pct))
        .collect();
    render_png("overhead", |root| {
        if summary.overhead.is_empty() {
            return message(
                root,
                &title,
                "no cross-node pair: every pod is on one node, nothing is encapsulated",
            );
        }
        if points.is_empty() {
            return message(root, &title, "the probe datagram never reached the sending node's NIC");
        }
        let (lo, hi) = padded_range(points.iter().map(|(x, _)| *x));
        let y_max = points.iter().fold(0f64, |a, (_, y)| a.max(*y));
        let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(lo..hi, 0f64..y_top)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.03))
            .bold_line_style(BLACK.mix(0.12))
            .x_desc("UDP payload (B)")
            .y_desc("bytes on the node NIC beyond the payload (% of payload)")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()?;
        let color = PALETTE[0];
        chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?;
        let annotate = points.len() <= ANNOTATE_MAX;
        let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
        chart.draw_series(points.iter().map(|&(x, y)| {
            let text = if annotate { format!("{}%", super::sig3(y)) } else { String::new() };
            EmptyElement::at((x, y))
                + Circle::new((0, 0), 4, color.filled())
                + Text::new(text, (6, -4), style.clone())
        }))?;
        Ok(())
    })
}

/// A grouped bar chart: one group per x label, one coloured bar per series within a group.
struct Bars {
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    groups: Vec<String>,
    series: Vec<String>,
    /// `values[group][series]`; `None` draws no bar.
    values: Vec<Vec<Option<f64>>>,
    /// Fixed top of the y axis; `None` fits the data.
    y_max: Option<f64>,
    /// Text written above each bar when there are few bars.
    value_text: fn(f64) -> String,
    /// Sentence shown instead of axes when there are no groups or no series.
    empty: &'static str,
}

impl Bars {
    fn draw(&self, root: &Area) -> DrawResult {
        if self.groups.is_empty() || self.series.is_empty() {
            return message(root, self.title, self.empty);
        }
        let area = root.margin(10, 0, 0, 0).titled(self.title, (FONT, 22))?;
        let with_legend = self.series.len() > 1 && self.series.len() <= LEGEND_MAX;
        let (plot, side) = area.split_horizontally(SIZE.0 - if with_legend { LEGEND_WIDTH } else { 0 });
        let data_max = self.values.iter().flatten().flatten().fold(0.0, |a: f64, b| a.max(*b));
        let y_top = self.y_max.unwrap_or(if data_max > 0.0 { data_max * 1.15 } else { 1.0 });
        let (x_range, ticks) = self.x_axis();
        let max_chars = (plot.dim_in_pixel().0 as usize / ticks.len() / 8).max(4);
        let label = |x: &i64| {
            self.groups.get((x / GROUP) as usize).map(|l| truncate(l, max_chars)).unwrap_or_default()
        };
        let mut chart = ChartBuilder::on(&plot)
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(65)
            .build_cartesian_2d(x_range.with_key_points(ticks), 0f64..y_top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .y_labels(y_label_count(y_top))
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .x_label_formatter(&label)
            .y_label_formatter(&|v| tick(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()?;
        self.draw_bars(&mut chart, y_top)?;
        if with_legend {
            self.side_legend(&side)?;
        }
        Ok(())
    }

    /// The x range (at least three groups wide, so one or two groups are not giant bars) and
    /// the tick at the centre of each labelled group (at most 25 labels).
    fn x_axis(&self) -> (std::ops::Range<i64>, Vec<i64>) {
        let n = self.groups.len() as i64;
        let lo = -(3 - n).max(0) * GROUP / 2;
        let step = (n as usize).div_ceil(25);
        let ticks = (0..n).step_by(step).map(|i| i * GROUP + GROUP / 2).collect();
        (lo..lo + n.max(3) * GROUP, ticks)
    }

    fn draw_bars<C: CoordTranslate<From = (i64, f64)>>(
        &self,
        chart: &mut ChartContext<BitMapBackend, C>,
        y_top: f64,
    ) -> DrawResult {
        let width = (GROUP * 8 / 10 / self.series.len() as i64).max(1);
        let annotate = self.values.iter().flatten().flatten().count() <= ANNOTATE_MAX;
        for s in 0..self.series.len() {
            let color = PALETTE[s % PALETTE.len()];
            let bars: Vec<(i64, i64, f64)> = self
                .values
                .iter()
                .enumerate()
                .filter_map(|(g, row)| {
                    let x0 = g as i64 * GROUP + GROUP / 10 + s as i64 * width;
                    row.get(s).copied().flatten().map(|v| (x0, x0 + width, v))
                })
                .collect();
            chart.draw_series(
                bars.iter().map(|&(x0, x1, v)| Rectangle::new([(x0, 0.0), (x1, v)], color.filled())),
            )?;
            if annotate {
                chart
                    .draw_series(bars.iter().map(|&(x0, x1, v)| self.bar_text(((x0 + x1) / 2, v), y_top)))?;
            }
        }
        Ok(())
    }

    /// The value above its bar, or just inside its top (in white) when the bar nearly fills
    /// the plot, so the text is never clipped.
    fn bar_text(&self, (x, v): (i64, f64), y_top: f64) -> Text<'static, (i64, f64), String> {
        let inside = v > y_top * 0.93;
        let (color, vpos): (&'static RGBColor, _) =
            if inside { (&WHITE, VPos::Top) } else { (&BLACK, VPos::Bottom) };
        let style = TextStyle::from((FONT, 12).into_font()).color(color).pos(Pos::new(HPos::Center, vpos));
        Text::new((self.value_text)(v), (x, v), style)
    }

    /// Legend to the right of the plot: a colour swatch and the series name per line.
    fn side_legend(&self, side: &Area) -> DrawResult {
        let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (s, name) in self.series.iter().enumerate() {
            let y = 30 + 22 * s as i32;
            side.draw(&Rectangle::new([(4, y - 7), (18, y + 7)], PALETTE[s % PALETTE.len()].filled()))?;
            side.draw(&Text::new(name.as_str(), (24, y), style.clone()))?;
        }
        Ok(())
    }
}

/// Enough y labels for integer steps on small count axes, at most 11.
fn y_label_count(y_top: f64) -> usize {
    (y_top.ceil() as usize + 1).clamp(2, 11)
}

/// An axis tick without float noise, with thousands separators: "100", "2.5", "1,000,000".
fn tick(v: f64) -> String {
    crate::fmt::tick(v)
}

fn legend<'a, C: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, C>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

/// A chart with no axes: the title and one centred sentence.
fn message(root: &Area, title: &str, text: &str) -> DrawResult {
    let area = root.margin(10, 0, 0, 0).titled(title, (FONT, 22))?;
    let (w, h) = area.dim_in_pixel();
    let grey = BLACK.mix(0.6);
    let style =
        TextStyle::from((FONT, 20).into_font()).color(&grey).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(text, (w as i32 / 2, h as i32 / 2), style))?;
    Ok(())
}

/// An x range around `values` with 5% padding each side, never below zero.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = if hi > lo { (hi - lo) * 0.05 } else { hi * 0.1 + 1.0 };
    ((lo - pad).max(0.0), hi + pad)
}

/// Shortens a label to `max_chars` by eliding its middle ("worker-node-11" -> "work…de-11"),
/// keeping both the prefix and the distinguishing suffix.
fn truncate(label: &str, max_chars: usize) -> String {
    let chars: Vec<char> = label.chars().collect();
    if chars.len() <= max_chars {
        return label.to_string();
    }
    let keep = max_chars.saturating_sub(1);
    let head = keep / 2;
    let tail = keep - head;
    let mut short: String = chars[..head].iter().collect();
    short.push('…');
    short.extend(&chars[chars.len() - tail..]);
    short
}

/// Registers the bundled DejaVu Sans as "sans-serif" (once per process).
fn ensure_fonts() -> Result<(), RenderError> {
    static FONTS: OnceLock<Result<(), String>> = OnceLock::new();
    let register = || {
        let failed = |style: &str| format!("DejaVu Sans {style} is not a valid font");
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).map_err(|_| failed("regular"))?;
        register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).map_err(|_| failed("bold"))
    };
    FONTS.get_or_init(register).clone().map_err(RenderError::Font)
}

/// Draws into a white 900x500 RGB buffer with `draw`, then encodes it as PNG.
fn render_png(chart: &'static str, draw: impl FnOnce(&Area) -> DrawResult) -> Result<Vec<u8>, RenderError> {
    render_png_sized(chart, SIZE, draw)
}

/// [`render_png`] at another size (charts whose height follows their rows).
fn render_png_sized(
    chart: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(&Area) -> DrawResult,
) -> Result<Vec<u8>, RenderError> {
    ensure_fonts()?;
    let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        let drawn = || -> DrawResult {
            root.fill(&WHITE)?;
            draw(&root)?;
            root.present()?;
            Ok(())
        };
        drawn().map_err(|e| RenderError::Chart { chart, message: e.to_string() })?;
    }
    encode_png(chart, size, &rgb)
}

fn encode_png(chart: &'static str, size: (u32, u32), rgb: &[u8]) -> Result<Vec<u8>, RenderError> {
    let failed = |source| RenderError::Png { chart, source };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size.0, size.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Default rather than Best: the charts come out 2.5% larger and the whole quickstart run
    // (report included) takes 0.10 s instead of 0.16 s (farm-bench, 10 paired runs; issue 15).
    encoder.set_compression(png::Compression::Default);
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(rgb).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// One line of a scaling chart: a label, its points (x, y) and whether it is drawn dashed.
pub(super) struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Colour index into the palette (the same mode keeps its colour across charts).
    pub colour: usize,
}

/// A log-log line chart of `series` against the swept parameter. Points with y <= 0 cannot
/// be drawn on a log axis and are left out (the CSV has them).
pub(super) fn scaling(
    stem: &'static str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<Vec<u8>, RenderError> {
    render_png(stem, |root| {
        let pts = || series.iter().flat_map(|s| s.points.iter()).filter(|p| p.0 > 0.0 && p.1 > 0.0);
        if pts().next().is_none() {
            return message(root, title, "nothing to draw: every value is zero");
        }
        let (xlo, xhi) = pts().fold((f64::INFINITY, 0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
        let (ylo, yhi) = pts().fold((f64::INFINITY, 0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let (xlo, xhi) = (xlo / 1.3, xhi * 1.3);
        // A log axis is labelled at powers of ten: one must lie in the range.
        let (ylo, yhi) = (ylo / 2.0, yhi * 2.0);
        let decade = 10f64.powf(ylo.log10().ceil());
        let ylo = if decade > yhi { decade / 10.0 } else { ylo };
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.03))
            .bold_line_style(BLACK.mix(0.12))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| log_label(*v))
            .y_label_formatter(&|v| log_tick(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()?;
        for s in series {
            let colour = PALETTE[s.colour % PALETTE.len()];
            let style = colour.stroke_width(2);
            let line: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.0 > 0.0 && p.1 > 0.0).collect();
            let drawn = if s.dashed {
                chart.draw_series(DashedLineSeries::new(line.clone(), 8, 5, style))?
            } else {
                chart.draw_series(LineSeries::new(line.clone(), style))?
            };
            drawn.label(s.label.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// A label on a log x axis: only at 1, 2 and 5 times a power of ten ("10", "20", "50",
/// "100"), so the ticks between them do not crowd into each other.
fn log_label(v: f64) -> String {
    let v = v.round();
    if v <= 0.0 {
        return String::new();
    }
    let mag = 10f64.powi(v.log10().floor() as i32);
    let lead = (v / mag).round();
    if [1.0, 2.0, 5.0].contains(&lead) && (lead * mag - v).abs() < 0.5 {
        tick(v)
    } else {
        String::new()
    }
}

/// A tick on a log axis: "0.01", "2.5", "1,000".
fn log_tick(v: f64) -> String {
    if v >= 100.0 {
        tick(v.round())
    } else if v >= 1.0 {
        tick((v * 10.0).round() / 10.0)
    } else {
        format!("{v:.2e}").replace("e-", "e−")
    }
}

/// [`scaling`] on linear axes from 0, for measures that can be 0 (an overhead of 0 B) or
/// that a log axis would flatten. The x axis keeps the swept values' range.
pub(super) fn lines(
    stem: &'static str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<Vec<u8>, RenderError> {
    render_png(stem, |root| {
        let pts = || series.iter().flat_map(|s| s.points.iter());
        if pts().next().is_none() {
            return message(root, title, "nothing to draw: no point has a value");
        }
        let (xlo, xhi) =
            pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
        let yhi = pts().fold(0f64, |hi, p| hi.max(p.1));
        let pad = ((xhi - xlo) * 0.05).max(1.0);
        let yhi = if yhi > 0.0 { yhi * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((xlo - pad)..(xhi + pad), 0f64..yhi)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.03))
            .bold_line_style(BLACK.mix(0.12))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| tick(v.round()))
            .y_label_formatter(&|v| tick((*v * 100.0).round() / 100.0))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()?;
        for s in series {
            let colour = PALETTE[s.colour % PALETTE.len()];
            let style = colour.stroke_width(2);
            let line = s.points.clone();
            let drawn = if s.dashed {
                chart.draw_series(DashedLineSeries::new(line.clone(), 8, 5, style))?
            } else {
                chart.draw_series(LineSeries::new(line.clone(), style))?
            };
            drawn.label(s.label.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}
