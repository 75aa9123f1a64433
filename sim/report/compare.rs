//! The outputs of `cnisim compare`: `report.html` (self-contained, charts inlined), one PNG and
//! CSV per chart, a CSV per table. Reads only the [`CompareResult`]; every sentence and figure
//! on the page comes from it (the verdicts are written by `compare` itself, with their figures).
//!
//! Files, in order: `report.html`; per workload `latency_cdf_<workload>.png/.csv`;
//! `throughput`, `cpu_per_packet`, `cpu_by_step`, `overhead` (PNG + CSV); then `headline.csv`,
//! `verdicts.csv`, `drops.csv`, `paths.csv`. The set depends only on the scenario's workloads,
//! never on the results: a chart with nothing to draw says so.

use std::fmt::Write;

use super::charts::compare::{self as charts, HBars, Line};
use super::csv::{header, row};
use super::html::{esc, CSS};
use super::{base64, OutputFile, RenderError};
use crate::compare::{Better, Column, Combination, CompareResult, Status};
use crate::cost::Step;
use crate::fmt;
use crate::net::packet::Hop;

/// A rendered chart and the CSV of exactly its data.
struct Figure {
    stem: String,
    title: String,
    caption: String,
    png: Vec<u8>,
    csv: String,
    /// Pixel size, for the `<img>` attributes.
    size: (u32, u32),
}

/// Renders every compare output file, in a fixed order.
pub fn render(r: &CompareResult) -> Result<Vec<OutputFile>, RenderError> {
    let mut figures = Vec::new();
    for wi in 0..r.scenario.workloads.len() {
        // A TCP stream has no datagram latencies: its goodput is in the throughput chart.
        if !r.scenario.workloads[wi].is_stream() {
            figures.push(latency_cdf(r, wi, &stem_for(r, wi))?);
        }
    }
    figures.push(throughput(r)?);
    figures.push(cpu_per_packet(r)?);
    figures.push(cpu_by_step(r)?);
    figures.push(overhead(r)?);
    let mut files = vec![OutputFile::new("report.html", page(r, &figures))];
    for f in figures {
        files.push(OutputFile::new(format!("{}.png", f.stem), f.png));
        files.push(OutputFile::new(format!("{}.csv", f.stem), f.csv));
    }
    files.push(OutputFile::new("headline.csv", headline_csv(r)));
    files.push(OutputFile::new("verdicts.csv", verdicts_csv(r)));
    files.push(OutputFile::new("drops.csv", drops_csv(r)));
    files.push(OutputFile::new("paths.csv", paths_csv(r)));
    Ok(files)
}

/// `latency_cdf_<workload>`, the workload's name kept to `[a-z0-9_-]`; its position instead
/// when two names would give the same file.
fn stem_for(r: &CompareResult, wi: usize) -> String {
    let slug =
        |name: &str| -> String {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect()
        };
    let mine = slug(&r.scenario.workloads[wi].name);
    let clash = r.scenario.workloads.iter().enumerate().any(|(j, w)| j != wi && slug(&w.name) == mine);
    if clash || mine.is_empty() {
        format!("latency_cdf_{}", wi + 1)
    } else {
        format!("latency_cdf_{mine}")
    }
}

/// The combinations that ran, with their position.
fn ran(r: &CompareResult) -> impl Iterator<Item = (usize, &Combination, &crate::compare::Figures)> {
    r.combinations.iter().enumerate().filter_map(|(i, c)| Some((i, c, c.figures.as_ref()?)))
}

fn latency_cdf(r: &CompareResult, wi: usize, stem: &str) -> Result<Figure, RenderError> {
    let w = &r.scenario.workloads[wi];
    let rr = w.is_request_response();
    let what = if rr { "round-trip time" } else { "one-way latency" };
    let title = format!("{}: {what} CDF per combination", w.name);
    let mut csv = header(&["combination", "quantile", "latency_ns"]);
    let mut lines = Vec::new();
    for (i, c, f) in ran(r) {
        let Some(wf) = f.workloads.get(wi) else { continue };
        let stats = if rr { wf.rtt.as_ref() } else { Some(&wf.latency) };
        let Some(stats) = stats.filter(|s| s.count > 0) else { continue };
        for (q, ns) in &stats.cdf {
            row(&mut csv, &[c.label.clone(), q.to_string(), ns.to_string()]);
        }
        lines.push(Line {
            label: c.label.clone(),
            points: stats.cdf.iter().map(|(q, ns)| (*ns as f64 / 1e3, *q)).collect(),
            style: i,
        });
    }
    // A log axis only when the latencies span more than 20x: a narrower range gets too few
    // labels on one.
    let xs = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).filter(|x| *x > 0.0);
    let (lo, hi) = (xs().fold(f64::INFINITY, f64::min), xs().fold(0.0, f64::max));
    let log = hi > lo * 20.0;
    // The axis ends a little past the slowest p99, so a few outliers do not squeeze the rest.
    let p99 =
        lines.iter().filter_map(|l| l.points.iter().find(|p| p.1 >= 0.99).map(|p| p.0)).fold(0.0, f64::max);
    let cut = (p99 * 1.25 < hi).then_some(p99 * 1.25);
    let x_desc = format!("{what} (µs{})", if log { ", log scale" } else { "" });
    // Errors name the chart kind (a `'static` name), not the workload's file.
    let png =
        charts::lines("latency_cdf", &title, (&x_desc, "quantile"), log, Some((0.0, 1.0)), cut, &lines)?;
    Ok(Figure {
        stem: stem.to_string(),
        caption: format!(
            "{title}: the share of {} that took at most x, one line per combination ({}). Lines further \
             left are faster; a line that rises late has a long tail.{}",
            if rr { "exchanges" } else { "datagrams" },
            esc(&w.params),
            if cut.is_some() {
                " The axis ends past the slowest p99; the slowest samples are in the CSV."
            } else {
                ""
            }
        ),
        title,
        png,
        csv,
        size: (charts::WIDTH, charts::LINE_HEIGHT),
    })
}

fn throughput(r: &CompareResult) -> Result<Figure, RenderError> {
    let title = "Payload throughput per workload";
    let mut csv = header(&["combination", "workload", "throughput_bps"]);
    let mut values = Vec::new();
    for c in &r.combinations {
        let row_vals: Vec<Option<f64>> = match &c.figures {
            // A TCP workload delivers no datagrams; its throughput is what its applications read.
            Some(f) => f
                .workloads
                .iter()
                .map(|w| (w.delivered > 0 || w.throughput_bps > 0.0).then_some(w.throughput_bps))
                .collect(),
            None => vec![None; r.scenario.workloads.len()],
        };
        for (w, v) in r.scenario.workloads.iter().zip(&row_vals) {
            row(&mut csv, &[c.label.clone(), w.name.clone(), v.map(|v| v.to_string()).unwrap_or_default()]);
        }
        values.push(row_vals.iter().map(|v| v.map(|b| b / 1e6)).collect());
    }
    let bars = HBars {
        title,
        x_desc: "payload delivered (UDP) or read (TCP goodput), Mbit/s",
        rows: r.combinations.iter().map(|c| c.label.clone()).collect(),
        series: r.scenario.workloads.iter().map(|w| w.name.clone()).collect(),
        values,
        stacked: false,
        value_text: |v| fmt::bps(v * 1e6),
        missing: missing(r),
    };
    Ok(Figure {
        stem: "throughput".into(),
        title: title.into(),
        caption: "Payload bits delivered per second of each workload's time, summed over its flows (both \
                  directions for request/response). Constant-rate workloads deliver what they send when \
                  nothing is lost."
            .into(),
        size: (charts::WIDTH, bars.height()),
        png: bars.render("throughput")?,
        csv,
    })
}

fn cpu_per_packet(r: &CompareResult) -> Result<Figure, RenderError> {
    let title = "CPU per packet";
    let mut series = Vec::new();
    if let Some(n) = &r.scenario.sender_node {
        series.push(format!("{n} (sender), per packet"));
    }
    if let Some(n) = &r.scenario.receiver_node {
        series.push(format!("{n} (receiver), per packet"));
    }
    series.push("all nodes, per datagram".to_string());
    let mut csv = header(&["combination", "measure", "cpu_ns"]);
    let mut values = Vec::new();
    for c in &r.combinations {
        let Some(f) = &c.figures else {
            values.push(vec![None; series.len()]);
            continue;
        };
        let mut v = Vec::new();
        if r.scenario.sender_node.is_some() {
            v.push(f.sender.as_ref().filter(|n| n.packets > 0).map(|n| n.cpu_ns_per_packet));
        }
        if r.scenario.receiver_node.is_some() {
            v.push(f.receiver.as_ref().filter(|n| n.packets > 0).map(|n| n.cpu_ns_per_packet));
        }
        v.push(f.cpu_ns_per_datagram);
        for (s, x) in series.iter().zip(&v) {
            row(&mut csv, &[c.label.clone(), s.clone(), x.map(|x| x.to_string()).unwrap_or_default()]);
        }
        values.push(v.iter().map(|x| x.map(|ns| ns / 1e3)).collect());
    }
    let bars = HBars {
        title,
        x_desc: "CPU time, µs (kernel and userspace)",
        rows: r.combinations.iter().map(|c| c.label.clone()).collect(),
        series,
        values,
        stacked: false,
        value_text: |us| fmt::ns_f(us * 1e3),
        missing: missing(r),
    };
    Ok(Figure {
        stem: "cpu_per_packet".into(),
        title: title.into(),
        caption: "CPU time per packet a node processed (every frame its kernel handled, ARP included), on \
                  the two ends of the first flow between nodes, and the CPU of every node per datagram \
                  delivered to a workload: what the CNI's data path costs."
            .into(),
        size: (charts::WIDTH, bars.height()),
        png: bars.render("cpu_per_packet")?,
        csv,
    })
}

/// Where the CPU goes: one stacked bar per combination, every node's CPU served within the run
/// split by kernel step, per datagram delivered to a workload.
fn cpu_by_step(r: &CompareResult) -> Result<Figure, RenderError> {
    let title = "Where the CPU goes, per datagram delivered";
    // The steps any combination spent time in, in the kernel's order (cost::Step::ALL).
    let steps: Vec<Step> = Step::ALL
        .into_iter()
        .filter(|s| ran(r).any(|(_, _, f)| f.cpu_by_step.get(s.name()).is_some_and(|&ns| ns > 0)))
        .collect();
    let mut csv = header(&["combination", "step", "cpu_ns", "cpu_ns_per_datagram"]);
    let mut values = Vec::new();
    for c in &r.combinations {
        let Some(f) = c.figures.as_ref().filter(|f| !f.cpu_ns_per_datagram_by_step.is_empty()) else {
            values.push(vec![None; steps.len()]);
            continue;
        };
        let mut v = Vec::new();
        for step in &steps {
            let ns = f.cpu_by_step.get(step.name()).copied().unwrap_or(0);
            let per = f.cpu_ns_per_datagram_by_step.get(step.name()).copied().unwrap_or(0.0);
            row(&mut csv, &[c.label.clone(), step.name().into(), ns.to_string(), per.to_string()]);
            v.push((ns > 0).then_some(per / 1e3));
        }
        values.push(v);
    }
    let bars = HBars {
        title,
        x_desc: "CPU time per delivered datagram, µs (all nodes, kernel and userspace)",
        rows: r.combinations.iter().map(|c| c.label.clone()).collect(),
        series: steps.iter().map(|s| s.name().to_string()).collect(),
        values,
        stacked: true,
        value_text: |us| fmt::ns_f(us * 1e3),
        missing: missing(r),
    };
    Ok(Figure {
        stem: "cpu_by_step".into(),
        title: title.into(),
        caption:
            "Every node's CPU time served within the run (the summary's <code>totals.cpu_by_step</code>, \
                  which adds up to <code>totals.cpu_ns</code>), split by kernel step and divided by the \
                  datagrams delivered to workloads. Each flow's own split is in its run's summary \
                  (<code>flows[].cpu_by_step</code>); per workload it is in compare.json."
                .into(),
        size: (charts::WIDTH, bars.height()),
        png: bars.render("cpu_by_step")?,
        csv,
    })
}

fn overhead(r: &CompareResult) -> Result<Figure, RenderError> {
    let title = "Encapsulation overhead per payload size";
    let mut csv =
        header(&["combination", "payload", "pod_frame", "underlay_frame", "encap_bytes", "encap_pct"]);
    // Combinations with the same curve share one line, so none hides another.
    // (curve, the combinations drawing it).
    type Curve = Vec<(f64, f64)>;
    let mut groups: Vec<(Curve, Vec<String>)> = Vec::new();
    for (_, c, f) in ran(r) {
        for p in &f.overhead {
            row(
                &mut csv,
                &[
                    c.label.clone(),
                    p.payload.to_string(),
                    p.pod_frame.to_string(),
                    p.underlay_frame.to_string(),
                    p.encap_bytes.to_string(),
                    p.encap_pct.to_string(),
                ],
            );
        }
        let pts: Vec<(f64, f64)> = f
            .overhead
            .iter()
            .filter(|p| p.underlay_frame > 0)
            .map(|p| (f64::from(p.payload), p.encap_pct))
            .collect();
        if pts.is_empty() {
            continue;
        }
        // A curve that is a prefix of another (a smaller pod MTU probes fewer sizes) is the
        // same curve: the group keeps the longer one.
        let prefix = |a: &[(f64, f64)], b: &[(f64, f64)]| a.iter().zip(b).all(|(x, y)| x == y);
        match groups.iter_mut().find(|(g, _)| prefix(g, &pts)) {
            Some((g, names)) => {
                names.push(c.label.clone());
                if pts.len() > g.len() {
                    *g = pts;
                }
            }
            None => groups.push((pts, vec![c.label.clone()])),
        }
    }
    let lines: Vec<Line> = groups
        .into_iter()
        .enumerate()
        .map(|(k, (points, names))| {
            let bytes = r
                .combinations
                .iter()
                .find(|c| c.label == names[0])
                .and_then(|c| c.figures.as_ref()?.encap_overhead_bytes)
                .unwrap_or(0);
            let label = format!("{} B: {}", fmt::signed(bytes), names.join(", "));
            Line { label, points, style: k }
        })
        .collect();
    let png = charts::lines(
        "overhead",
        title,
        ("UDP payload (B)", "bytes added on the underlay, % of the pod's frame"),
        false,
        None,
        None,
        &lines,
    )?;
    Ok(Figure {
        stem: "overhead".into(),
        title: title.into(),
        caption: "One probe datagram per payload size from a pod to a pod on another node: the bytes its \
                  frame gains between the pod's eth0 and the node's NIC, as a share of the pod's frame. \
                  Combinations with the same curve share a line (the legend lists them, with the bytes \
                  added per packet)."
            .into(),
        png,
        csv,
        size: (charts::WIDTH, charts::LINE_HEIGHT),
    })
}

/// What a bar chart writes in the row of a combination without figures.
fn missing(r: &CompareResult) -> Vec<String> {
    r.combinations
        .iter()
        .map(|c| if c.figures.is_none() { c.status.words().to_string() } else { "nothing delivered".into() })
        .collect()
}

// ---- report.html ----

const COMPARE_CSS: &str = r#"
td.best { background: #dafbe1; font-weight: 600; }
td .ratio { color: #57606a; font-size: .78rem; margin-left: .3rem; }
tr.notworking td { color: #8c959f; }
tr.notworking td.status { color: #cf222e; font-weight: 600; }
td.status, td.label { white-space: nowrap; }
.verdict { margin: .3rem 0 1rem; }
.verdict h3 { margin-bottom: .2rem; }
.verdict p { margin: .2rem 0; }
.scroll { overflow-x: auto; }
details { margin: .5rem 0 .8rem; }
details > summary { cursor: pointer; font-weight: 600; }
details details { margin-left: 1.2rem; }
details details > summary { font-weight: 400; }
td.path { font-size: .8rem; }
"#;

fn page(r: &CompareResult, figures: &[Figure]) -> String {
    let mut out =
        String::with_capacity(64 * 1024 + figures.iter().map(|f| f.png.len() * 4 / 3).sum::<usize>());
    let title = format!("cnisim compare: {}", r.scenario.name);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{CSS}{COMPARE_CSS}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n<p class=\"lead\">{}</p>\n</header>\n",
        esc(&title),
        esc(&title),
        esc(&r.scenario.description)
    );
    let failing = r.combinations.iter().any(|c| c.status != Status::Works);
    let _ = writeln!(
        out,
        "<nav><a href=\"#verdicts\">Verdicts</a><a href=\"#headline\">Headline table</a>{}\
         <a href=\"#charts\">Charts</a><a href=\"#drops\">Drops</a><a href=\"#paths\">Packet paths</a>\
         <a href=\"#compared\">What was compared</a></nav>",
        if failing { "<a href=\"#notworking\">Does not work here</a>" } else { "" }
    );
    if let Some(s) = r.shard {
        let _ = writeln!(
            out,
            "<p class=\"conservation broken\">This is shard {} of {}: {} of the comparison's {} combinations, \
             judged among themselves only. Join every shard's directory with <code>cnisim merge</code> for \
             the whole comparison.</p>",
            s.index,
            s.count,
            fmt::count(r.combinations.len() as u64),
            fmt::count(r.total_combinations as u64)
        );
    }
    let _ = writeln!(
        out,
        "<p>The scenario was simulated {} times, once per combination of CNI ({}) and proxy mode ({}), each \
         a full run with the same seed ({}). Every figure below comes from those runs.</p>",
        fmt::count(r.combinations.len() as u64),
        esc(&r.cnis.join(", ")),
        esc(&r.proxies.join(", ")),
        r.scenario.seed
    );
    verdicts(&mut out, r);
    headline(&mut out, r);
    not_working(&mut out, r);
    out.push_str("<h2 id=\"charts\">Charts</h2>\n");
    for f in figures {
        let _ = writeln!(
            out,
            "<figure><img width=\"{}\" height=\"{}\" alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{} \
             Data: <a href=\"{stem}.csv\">{stem}.csv</a>, image: <a href=\"{stem}.png\">{stem}.png</a>.\
             </figcaption></figure>",
            f.size.0,
            f.size.1,
            esc(&f.title),
            base64(&f.png),
            f.caption,
            stem = esc(&f.stem)
        );
    }
    drops(&mut out, r);
    paths(&mut out, r);
    compared(&mut out, r);
    // Wall-clock facts stay in compare.json's `run`, so this page is the same on every machine.
    let _ = writeln!(
        out,
        "<footer>compare.json schema version {} · cnisim {} · {} combinations · wall-clock time in \
         compare.json</footer>\n</body>\n</html>",
        r.schema_version,
        esc(&r.run.cnisim_version),
        fmt::count(r.combinations.len() as u64)
    );
    out
}

fn verdicts(out: &mut String, r: &CompareResult) {
    out.push_str("<h2 id=\"verdicts\">Verdicts</h2>\n");
    if r.verdicts.is_empty() {
        out.push_str("<p class=\"muted\">No verdicts: nothing ran.</p>\n");
    }
    for v in &r.verdicts {
        let answer = match v.answer.len() {
            0 => "none".to_string(),
            n if n == r.combinations.len() && n > 2 => format!("all {n}"),
            _ => v.answer.join(", "),
        };
        let _ = writeln!(
            out,
            "<div class=\"verdict\"><h3>{}: <span class=\"ok\">{}</span></h3><p>{}</p></div>",
            esc(&v.question),
            esc(&answer),
            esc(&v.text)
        );
    }
    out.push_str(
        "<p class=\"muted\">Each verdict's numbers are in compare.json (<code>verdicts[].figures</code> point \
         at them) and in the tables below.</p>\n",
    );
}

/// A table value in its unit.
fn show(unit: &str, v: f64) -> String {
    match unit {
        "ns" => fmt::ns_f(v),
        "bit/s" => fmt::bps(v),
        "1/s" => format!("{}/s", fmt::decimal(v, 0)),
        "(Gbit/s)/core" => format!("{} Gbit/s", fmt::sig3(v)),
        "cores/(Gbit/s)" => format!("{} cores", fmt::sig3(v)),
        "B" => format!("{} B", fmt::signed(v.round() as i64)),
        "%" => format!("{v:.1} %"),
        _ => fmt::decimal(v, 0),
    }
}

fn headline(out: &mut String, r: &CompareResult) {
    out.push_str("<h2 id=\"headline\">Headline table</h2>\n");
    out.push_str(
        "<p>One row per combination. The best value of each column (among the combinations that work here) \
         is <strong>highlighted</strong>; <span class=\"muted\">×r</span> is a value divided by the best \
         (above 1: more than the best, below 1: less). Data: <a href=\"headline.csv\">headline.csv</a>.</p>\n",
    );
    let t = &r.table;
    let groups: [(&str, Vec<usize>); 2] = [
        ("Workloads", (0..t.columns.len()).filter(|&c| t.columns[c].workload.is_some()).collect()),
        (
            "CPU, overhead and limits",
            (0..t.columns.len()).filter(|&c| t.columns[c].workload.is_none()).collect(),
        ),
    ];
    for (name, cols) in groups {
        if cols.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<h3>{name}</h3>\n<div class=\"scroll\"><table><thead><tr><th>Combination</th><th>Status</th>"
        );
        for &c in &cols {
            let col: &Column = &t.columns[c];
            let arrow = match col.better {
                Better::Lower => "lower is better",
                Better::Higher => "higher is better",
            };
            let _ = write!(out, "<th class=\"num\" title=\"{arrow}\">{}</th>", esc(&col.title));
        }
        out.push_str("</tr></thead><tbody>\n");
        for row in &t.rows {
            let class = if row.status == Status::Works { "" } else { " class=\"notworking\"" };
            let _ = write!(
                out,
                "<tr{class}><td class=\"label\">{}</td><td class=\"status\">{}</td>",
                esc(&row.label),
                esc(row.status.words())
            );
            for &c in &cols {
                let unit = &t.columns[c].unit;
                match row.values[c] {
                    None => out.push_str("<td class=\"num muted\">–</td>"),
                    Some(v) => {
                        let best = row.best[c];
                        let ratio = match row.ratio[c] {
                            Some(x) if !best => format!("<span class=\"ratio\">{}</span>", fmt::ratio(x)),
                            _ => String::new(),
                        };
                        let _ = write!(
                            out,
                            "<td class=\"num{}\">{}{ratio}</td>",
                            if best { " best" } else { "" },
                            esc(&show(unit, v))
                        );
                    }
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></div>\n");
    }
}

fn not_working(out: &mut String, r: &CompareResult) {
    let bad: Vec<&Combination> = r.combinations.iter().filter(|c| c.status != Status::Works).collect();
    if bad.is_empty() {
        return;
    }
    out.push_str("<h2 id=\"notworking\">Does not work here</h2>\n");
    out.push_str(
        "<p>Decided from each run's results: a combination works when every workload delivered at least \
         99 % of the share the best combination delivered. Here is what the simulation found for the \
         others.</p>\n<table><thead><tr><th>Combination</th><th>Status</th><th>What the run found</th></tr></thead><tbody>\n",
    );
    for c in bad {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"status bad\">{}</td><td>{}</td></tr>",
            esc(&c.label),
            esc(c.status.words()),
            esc(&c.status_reason)
        );
    }
    out.push_str("</tbody></table>\n");
}

fn drops(out: &mut String, r: &CompareResult) {
    out.push_str("<h2 id=\"drops\">Drops by reason</h2>\n");
    let mut reasons: Vec<&str> =
        ran(r).flat_map(|(_, _, f)| f.drops_by_reason.keys().map(String::as_str)).collect();
    reasons.sort_unstable();
    reasons.dedup();
    if reasons.is_empty() {
        out.push_str("<p class=\"ok\">No combination dropped a workload datagram.</p>\n");
        return;
    }
    out.push_str(
        "<p>Workload datagrams dropped, by the reason the simulated kernel gave; combinations not listed \
         dropped none. Data: <a href=\"drops.csv\">drops.csv</a>.</p>\n<div class=\"scroll\"><table><thead><tr><th>Combination</th>",
    );
    for reason in &reasons {
        let _ = write!(out, "<th class=\"num\">{}</th>", esc(reason));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (_, c, f) in ran(r).filter(|(_, _, f)| !f.drops_by_reason.is_empty()) {
        let _ = write!(out, "<tr><td class=\"label\">{}</td>", esc(&c.label));
        for reason in &reasons {
            let n = f.drops_by_reason.get(*reason).copied().unwrap_or(0);
            let _ = write!(out, "<td class=\"num\">{}</td>", if n == 0 { "–".into() } else { fmt::count(n) });
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

/// The devices a path passes, with consecutive hops on one device folded into one.
fn compact(hops: &[Hop]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut last: Option<(&str, &str)> = None;
    for h in hops {
        if last == Some((h.place.as_str(), h.device.as_str())) {
            continue;
        }
        last = Some((&h.place, &h.device));
        parts.push(format!("{} {}", h.place, h.device));
    }
    parts.join(" → ")
}

fn paths(out: &mut String, r: &CompareResult) {
    out.push_str(
        "<h2 id=\"paths\">Packet paths</h2>\n<p>The first datagram of each workload under each combination: \
         the devices it crossed, side by side; open a combination for every hop with what each device did \
         and why. Data: <a href=\"paths.csv\">paths.csv</a>.</p>\n",
    );
    for w in &r.scenario.workloads {
        let _ = writeln!(
            out,
            "<details><summary>{}: the first datagram's path under each combination</summary>",
            esc(&w.name)
        );
        out.push_str(
            "<table><thead><tr><th>Combination</th><th class=\"num\">Hops</th><th class=\"num\">Last hop after</th>\
             <th>End</th><th>Devices, in order</th></tr></thead><tbody>\n",
        );
        let mut full = String::new();
        for (_, c, f) in ran(r) {
            let Some(p) = f.paths.iter().find(|p| p.workload == w.name) else {
                let _ = writeln!(
                    out,
                    "<tr><td class=\"label\">{}</td><td class=\"num\">–</td><td class=\"num\">–</td>\
                     <td colspan=\"2\" class=\"muted\">no traced datagram of this workload finished its path \
                     by the end of the run</td></tr>",
                    esc(&c.label)
                );
                continue;
            };
            let end = match p.hops.last() {
                Some(h) if h.action.contains("drop") => format!("dropped: {}", h.why),
                Some(h) if h.action == "deliver" => "delivered".to_string(),
                Some(h) => h.action.clone(),
                None => "–".into(),
            };
            let span = match (p.hops.first(), p.hops.last()) {
                (Some(a), Some(b)) => fmt::ns(b.time_ns.saturating_sub(a.time_ns)),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "<tr><td class=\"label\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
                 <td class=\"path\">{}</td></tr>",
                esc(&c.label),
                fmt::count(p.hops.len() as u64),
                esc(&span),
                esc(&end),
                esc(&compact(&p.hops))
            );
            let _ = writeln!(
                full,
                "<details><summary>{}: {}</summary><table><thead><tr><th class=\"num\">Since first hop</th>\
                 <th>Place</th><th>Device</th><th>Action</th><th>Why</th><th class=\"num\">Size (B)</th></tr></thead><tbody>",
                esc(&c.label),
                esc(&p.description)
            );
            let start = p.hops.first().map_or(0, |h| h.time_ns);
            for h in &p.hops {
                let _ = writeln!(
                    full,
                    "<tr><td class=\"num\">+{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                    esc(&fmt::ns(h.time_ns.saturating_sub(start))),
                    esc(&h.place),
                    esc(&h.device),
                    esc(&h.action),
                    esc(&h.why),
                    fmt::count(h.size as u64)
                );
            }
            full.push_str("</tbody></table></details>\n");
        }
        out.push_str("</tbody></table>\n");
        out.push_str(&full);
        out.push_str("</details>\n");
    }
}

fn compared(out: &mut String, r: &CompareResult) {
    let s = &r.scenario;
    out.push_str("<h2 id=\"compared\">What was compared</h2>\n<table class=\"kv\"><tbody>\n");
    let facts = [
        ("Scenario", s.name.clone()),
        ("CNIs", r.cnis.join(", ")),
        ("Service proxies", r.proxies.join(", ")),
        (
            "Nodes / pods / Services",
            format!(
                "{} / {} / {}",
                fmt::count(s.nodes as u64),
                fmt::count(s.pods as u64),
                fmt::count(s.services as u64)
            ),
        ),
        ("Underlay", s.underlay.clone()),
        ("Seed", s.seed.to_string()),
        ("Simulated duration", fmt::ns(s.duration_ns)),
        (
            "CPU measured on",
            match (&s.sender_node, &s.receiver_node) {
                (Some(a), Some(b)) => {
                    format!("{a} (sender) and {b} (receiver): the first flow between two nodes")
                }
                (Some(a), None) => format!("{a} (no flow leaves its node)"),
                _ => "no pod-to-pod flow".into(),
            },
        ),
    ];
    for (k, v) in facts {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    out.push_str("</tbody></table>\n<h3>Workloads</h3>\n");
    super::html::table(
        out,
        &[("Workload", false), ("Kind", false), ("Parameters", false), ("Flows", true)],
        s.workloads
            .iter()
            .map(|w| vec![w.name.clone(), w.kind.clone(), w.params.clone(), fmt::count(w.flows as u64)]),
    );
    let warned: Vec<&Combination> = r
        .combinations
        .iter()
        .filter(|c| c.figures.as_ref().is_some_and(|f| !f.warnings.is_empty()))
        .collect();
    if !warned.is_empty() {
        out.push_str("<h3>What the CNIs logged</h3>\n");
        for c in warned {
            let Some(f) = &c.figures else { continue };
            let _ = writeln!(
                out,
                "<details><summary>{}: {} warnings</summary><ul>",
                esc(&c.label),
                fmt::count(f.warnings.len() as u64)
            );
            for w in &f.warnings {
                let _ = writeln!(out, "<li><code>{}</code></li>", esc(w));
            }
            out.push_str("</ul></details>\n");
        }
    }
}

// ---- CSV ----

fn headline_csv(r: &CompareResult) -> String {
    let mut names =
        vec!["index".to_string(), "combination".into(), "cni".into(), "proxy".into(), "status".into()];
    names.extend(r.table.columns.iter().map(|c| c.key.clone()));
    names.push("status_reason".into());
    let mut out = String::new();
    row(&mut out, &names);
    for (c, t) in r.combinations.iter().zip(&r.table.rows) {
        let mut fields = vec![
            c.index.to_string(),
            c.label.clone(),
            c.cni.clone(),
            c.proxy.clone(),
            c.status.words().to_string(),
        ];
        fields.extend(t.values.iter().map(|v| v.map(|v| v.to_string()).unwrap_or_default()));
        fields.push(c.status_reason.clone());
        row(&mut out, &fields);
    }
    out
}

fn verdicts_csv(r: &CompareResult) -> String {
    let mut out = header(&["key", "question", "answer", "text"]);
    for v in &r.verdicts {
        row(&mut out, &[v.key.clone(), v.question.clone(), v.answer.join(";"), v.text.clone()]);
    }
    out
}

fn drops_csv(r: &CompareResult) -> String {
    let mut out = header(&["combination", "scope", "reason", "count"]);
    for (_, c, f) in ran(r) {
        let data = f.drops_by_reason.iter().map(|(k, n)| ("data", k, n));
        for (scope, reason, n) in data.chain(f.arp_drops_by_reason.iter().map(|(k, n)| ("arp", k, n))) {
            row(&mut out, &[c.label.clone(), scope.into(), reason.clone(), n.to_string()]);
        }
    }
    out
}

fn paths_csv(r: &CompareResult) -> String {
    let mut out =
        header(&["combination", "workload", "hop", "time_ns", "place", "device", "action", "why", "size"]);
    for (_, c, f) in ran(r) {
        for p in &f.paths {
            for (k, h) in p.hops.iter().enumerate() {
                row(
                    &mut out,
                    &[
                        c.label.clone(),
                        p.workload.clone(),
                        k.to_string(),
                        h.time_ns.to_string(),
                        h.place.clone(),
                        h.device.clone(),
                        h.action.clone(),
                        h.why.clone(),
                        h.size.to_string(),
                    ],
                );
            }
        }
    }
    out
}
