//! The data-path part of a sweep report: shown when the sweep runs several CNIs or varies a
//! data-path parameter (payload, nodes, pods per node). One line per CNI (per CNI and proxy
//! when both vary) on charts of throughput, CPU per datagram and, for payload sweeps, the
//! encapsulation overhead; short verdicts computed from the points with their numbers in a
//! table; every point in a table and in `data_plane.csv`.
//!
//! **Architecture Invariant:** every number on the page is a field of a [`SweepPoint`] (or a
//! ratio of two), formatted with `crate::fmt`; nothing is typed in.

use std::fmt::Write;

use super::super::charts::{self, Series};
use super::super::html::{esc, table};
use super::super::{base64, OutputFile, RenderError};
use super::{label, line_head, of_line, Line};
use crate::cluster::Parameter;
use crate::fmt;
use crate::sweep::{DataPlane, SweepPoint, SweepResult};

/// Whether the report has a data-path part.
pub(super) fn shown(r: &SweepResult) -> bool {
    r.cnis.len() > 1 || !r.parameter.is_service()
}

/// The HTML pieces of the data-path part and its files.
pub(super) struct Rendered {
    pub findings: String,
    pub charts: String,
    pub points: String,
    pub files: Vec<OutputFile>,
}

type Metric = fn(&DataPlane) -> Option<f64>;

struct Chart {
    stem: &'static str,
    title: &'static str,
    y_desc: &'static str,
    value: Metric,
    /// Linear axes from 0 (else log-log).
    linear: bool,
    /// Payload sweeps only.
    payload_only: bool,
    explain: &'static str,
}

const CHARTS: [Chart; 3] = [
    Chart {
        stem: "throughput",
        title: "Payload delivered per second, every flow",
        y_desc: "throughput, Mbit/s (log)",
        value: |d| (d.throughput_bps > 0.0).then_some(d.throughput_bps / 1e6),
        linear: false,
        payload_only: false,
        explain: "The UDP payload the servers received per second of the workloads' time, all flows together. \
                  Below the offered rate it shows where a CNI's path (a full queue, a busy core, a userspace \
                  daemon, a pod MTU too small for the datagram) costs packets.",
    },
    Chart {
        stem: "cpu_per_datagram",
        title: "CPU per delivered datagram, every node",
        y_desc: "CPU time, µs",
        value: |d| d.cpu_ns_per_datagram.map(|ns| ns / 1e3),
        linear: true,
        payload_only: false,
        explain: "The CPU every node served (kernel steps and userspace data-plane processes) divided by the \
                  datagrams delivered: what one datagram costs end to end, both directions. Encapsulation, \
                  eBPF programs, userspace crossings and copies per byte all add to it; sweep.json has the \
                  split by kernel step.",
    },
    Chart {
        stem: "encap_overhead",
        title: "Encapsulation overhead on the underlay, per packet",
        y_desc: "% more bytes than the pod's frame",
        value: |d| d.encap_overhead_pct,
        linear: true,
        payload_only: true,
        explain: "What the CNI adds to a cross-node packet between the client pod's eth0 and the node's NIC \
                  (outer headers: VXLAN 50 B, Geneve 50 B and more with options, IPIP 20 B, WireGuard 60 B), as \
                  a share of the pod's frame: a fixed number of bytes weighs most on small packets. Routed \
                  CNIs add nothing.",
    },
];

/// "64 B", "2 nodes", "4 pods per node", "1,000 Services".
fn at(r: &SweepResult, v: u32) -> String {
    let n = fmt::count(u64::from(v));
    match r.parameter {
        Parameter::Payload => format!("{n} B"),
        Parameter::Nodes if v == 1 => "1 node".into(),
        Parameter::Nodes => format!("{n} nodes"),
        Parameter::PodsPerNode => format!("{n} pods per node"),
        Parameter::Services => format!("{n} Services"),
        Parameter::Endpoints => format!("{n} endpoints per Service"),
        Parameter::Policies if v == 1 => "1 policy".into(),
        Parameter::Policies => format!("{n} policies"),
    }
}

fn x_desc(r: &SweepResult, linear: bool) -> String {
    let what = match r.parameter {
        Parameter::Payload => "payload, bytes",
        Parameter::Nodes => "nodes",
        Parameter::PodsPerNode => "pods per node",
        Parameter::Services => "Services",
        Parameter::Endpoints => "endpoints per Service",
        Parameter::Policies => "NetworkPolicies",
    };
    if linear {
        what.into()
    } else {
        format!("{what} (log)")
    }
}

fn dp(p: &SweepPoint) -> Option<&DataPlane> {
    p.data_plane.as_ref()
}

fn pct(v: f64) -> String {
    format!("{} %", fmt::decimal(v, 1))
}

fn encap(d: &DataPlane) -> String {
    match (d.encap_overhead_bytes, d.encap_overhead_pct) {
        (Some(b), Some(p)) => format!("{} B ({})", fmt::signed(b), pct(p)),
        (Some(b), None) => format!("{} B", fmt::signed(b)),
        _ => "–".into(),
    }
}

fn cpu(d: &DataPlane) -> String {
    d.cpu_ns_per_datagram.map_or("–".into(), fmt::ns_f)
}

pub(super) fn render(r: &SweepResult, lines: &[Line]) -> Result<Rendered, RenderError> {
    let mut files = Vec::new();
    let mut html = String::from("<h2 id=\"data-charts\">The data path</h2>\n");
    for c in CHARTS.iter().filter(|c| !c.payload_only || r.parameter == Parameter::Payload) {
        let series: Vec<Series> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| Series {
                label: l.label.clone(),
                points: of_line(r, l)
                    .into_iter()
                    .filter_map(|p| Some((f64::from(p.value), (c.value)(dp(p)?)?)))
                    .collect(),
                dashed: false,
                colour: i,
            })
            .collect();
        let x = x_desc(r, c.linear);
        let png = if c.linear {
            charts::lines(c.stem, c.title, &x, c.y_desc, &series)?
        } else {
            charts::scaling(c.stem, c.title, &x, c.y_desc, &series)?
        };
        let mut csv = format!("cni,proxy,value,{}\n", c.stem);
        for p in &r.points {
            let v = dp(p).and_then(c.value).map_or(String::new(), |v| format!("{v}"));
            let _ = writeln!(csv, "{},{},{},{v}", p.cni, p.proxy, p.value);
        }
        let _ = writeln!(
            html,
            "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{} Lines with the same values \
             draw on top of each other. Data: <a href=\"{stem}.csv\">{stem}.csv</a>, image: \
             <a href=\"{stem}.png\">{stem}.png</a>.</figcaption></figure>",
            esc(c.title),
            base64(&png),
            esc(c.explain),
            stem = c.stem
        );
        files.push(OutputFile::new(format!("{}.png", c.stem), png));
        files.push(OutputFile::new(format!("{}.csv", c.stem), csv.into_bytes()));
    }
    files.push(OutputFile::new("data_plane.csv", csv(r).into_bytes()));
    Ok(Rendered { findings: findings(r, lines), charts: html, points: points(r), files })
}

/// Every point's data-path figures, one row each.
pub(super) fn csv(r: &SweepResult) -> String {
    let mut s = String::from(
        "cni,proxy,parameter,value,pod_mtu,throughput_bps,sent,delivered,delivered_pct,cpu_ns,\
         cpu_ns_per_datagram,cross_node_flows,pod_frame_bytes,encap_overhead_bytes,encap_overhead_pct,invalid\n",
    );
    let opt = |v: Option<String>| v.unwrap_or_default();
    for p in &r.points {
        let _ = write!(s, "{},{},{},{},", p.cni, p.proxy, r.parameter.id(), p.value);
        match dp(p) {
            Some(d) => {
                let _ = writeln!(
                    s,
                    "{},{:.0},{},{},{},{},{},{},{},{},{},",
                    d.pod_mtu,
                    d.throughput_bps,
                    p.sent,
                    p.delivered,
                    opt(d.delivered_pct.map(|v| format!("{v:.3}"))),
                    d.cpu_ns,
                    opt(d.cpu_ns_per_datagram.map(|v| format!("{v:.1}"))),
                    d.cross_node_flows,
                    opt(d.pod_frame_bytes.map(|v| v.to_string())),
                    opt(d.encap_overhead_bytes.map(|v| v.to_string())),
                    opt(d.encap_overhead_pct.map(|v| format!("{v:.3}"))),
                );
            }
            None => {
                let why = p.invalid.as_deref().unwrap_or_default().replace('"', "\"\"");
                let _ = writeln!(s, ",,,,,,,,,,,\"{why}\"");
            }
        }
    }
    s
}

/// The verdicts, then the numbers they rest on, one row per line.
fn findings(r: &SweepResult, lines: &[Line]) -> String {
    let mut out = String::from("<h2 id=\"data-findings\">What the data-path curves say</h2>\n<ul>\n");
    let runs: Vec<(&Line, Vec<&SweepPoint>)> =
        lines.iter().map(|l| (l, of_line(r, l))).filter(|(_, p)| p.iter().any(|p| dp(p).is_some())).collect();
    if r.parameter == Parameter::Payload {
        // The overhead depends on the CNI, not the proxy: one verdict per CNI, from its first line.
        let mut zero = Vec::new();
        for cni in &r.cnis {
            let Some((_, pts)) = runs.iter().find(|(l, _)| &l.cni == cni) else { continue };
            let with: Vec<(&SweepPoint, &DataPlane)> = pts
                .iter()
                .filter_map(|p| Some((*p, dp(p).filter(|d| d.encap_overhead_bytes.is_some())?)))
                .collect();
            let (Some(&(a, da)), Some(&(b, db))) = (with.first(), with.last()) else { continue };
            if with.iter().all(|(_, d)| d.encap_overhead_bytes == Some(0)) {
                zero.push(cni.as_str());
                continue;
            }
            let bytes = |d: &DataPlane| fmt::signed(d.encap_overhead_bytes.unwrap_or(0));
            let share = |d: &DataPlane| d.encap_overhead_pct.map_or("–".into(), pct);
            let _ = write!(
                out,
                "<li>At {}, <strong>{}</strong> adds {} B per packet ({} more bytes on the wire than the pod's \
                 frame of {} B)",
                at(r, a.value),
                esc(cni),
                bytes(da),
                share(da),
                da.pod_frame_bytes.map_or("–".into(), fmt::count)
            );
            if b.index != a.index {
                let same = if da.encap_overhead_bytes == db.encap_overhead_bytes {
                    "the same bytes".to_string()
                } else {
                    format!("{} B", bytes(db))
                };
                let _ = write!(out, "; at {}, {same}: {}", at(r, b.value), share(db));
            }
            out.push_str(".</li>\n");
        }
        if !zero.is_empty() {
            let names: Vec<String> = zero.iter().map(|c| format!("<strong>{}</strong>", esc(c))).collect();
            let _ = writeln!(
                out,
                "<li>{} {} nothing: the pod's frame goes on the wire as it is, at every payload.</li>",
                super::names(&names.iter().map(String::as_str).collect::<Vec<_>>()),
                if zero.len() == 1 { "adds" } else { "add" }
            );
        }
    }
    // At the top of the range: throughput and CPU per datagram, best against worst.
    let Some(&hi) = r.values.last() else { return out };
    let tops: Vec<(&Line, &SweepPoint, &DataPlane)> = runs
        .iter()
        .filter_map(|(l, pts)| {
            let p = pts.iter().rev().find(|p| p.value == hi)?;
            Some((*l, *p, dp(p)?))
        })
        .collect();
    // Throughput: at the value where the lines differ the most (most against least).
    let at_value = |v: u32| -> Vec<(&Line, &SweepPoint, &DataPlane)> {
        runs.iter()
            .filter_map(|(l, pts)| {
                let p = pts.iter().find(|p| p.value == v)?;
                Some((*l, *p, dp(p)?))
            })
            .collect()
    };
    let spread = |v: u32| {
        let ts: Vec<f64> = at_value(v).iter().map(|t| t.2.throughput_bps).collect();
        let (lo, hi) = ts.iter().fold((f64::INFINITY, 0f64), |(a, b), &t| (a.min(t), b.max(t)));
        (ts.len() > 1 && lo > 0.0).then(|| hi / lo)
    };
    let widest = r
        .values
        .iter()
        .filter_map(|&v| Some((v, spread(v)?)))
        .filter(|(_, s)| *s >= 1.01)
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
    if let Some((v, _)) = widest {
        let ts = at_value(v);
        let most = ts.iter().max_by(|a, b| a.2.throughput_bps.total_cmp(&b.2.throughput_bps));
        let least = ts.iter().min_by(|a, b| a.2.throughput_bps.total_cmp(&b.2.throughput_bps));
        if let (Some(m), Some(l)) = (most, least) {
            let _ = writeln!(
                out,
                "<li>The throughputs differ the most at {}: <strong>{}</strong> delivered {} ({} of what was \
                 sent), <strong>{}</strong> {} ({}).</li>",
                at(r, v),
                esc(&m.0.label),
                fmt::bps(m.2.throughput_bps),
                m.2.delivered_pct.map_or("–".into(), pct),
                esc(&l.0.label),
                fmt::bps(l.2.throughput_bps),
                l.2.delivered_pct.map_or("–".into(), pct)
            );
        }
    } else if let Some(t) = tops.first().filter(|_| tops.len() > 1) {
        let _ = writeln!(
            out,
            "<li>Every line delivered the same payload rate at every value, within 1 % ({} at {}).</li>",
            fmt::bps(t.2.throughput_bps),
            at(r, hi)
        );
    }
    if tops.len() > 1 {
        let costs: Vec<(&Line, f64)> =
            tops.iter().filter_map(|t| Some((t.0, t.2.cpu_ns_per_datagram?))).collect();
        let cheap = costs.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        let dear = costs.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(c), Some(d)) = (cheap, dear) {
            if d.1 > c.1 && c.1 > 0.0 {
                let _ = writeln!(
                    out,
                    "<li>At {}, a datagram costs the least CPU under <strong>{}</strong> ({}) and the most under \
                     <strong>{}</strong> ({}, {} as much).</li>",
                    at(r, hi),
                    esc(&c.0.label),
                    fmt::ns_f(c.1),
                    esc(&d.0.label),
                    fmt::ns_f(d.1),
                    fmt::ratio(d.1 / c.1)
                );
            }
        }
    }
    // Across the range: the line whose CPU per datagram changes the most.
    type Ends<'a> = ((&'a SweepPoint, f64), (&'a SweepPoint, f64));
    fn change<'a>(pts: &[&'a SweepPoint]) -> Option<Ends<'a>> {
        let a = pts.first().and_then(|p| Some((*p, dp(p)?.cpu_ns_per_datagram?)))?;
        let b = pts.last().and_then(|p| Some((*p, dp(p)?.cpu_ns_per_datagram?)))?;
        (a.0.value < b.0.value && a.1 > 0.0).then_some((a, b))
    }
    let grows = runs
        .iter()
        .filter_map(|(l, pts)| Some((*l, change(pts)?)))
        .max_by(|x, y| (x.1 .1 .1 / x.1 .0 .1).ln().abs().total_cmp(&(y.1 .1 .1 / y.1 .0 .1).ln().abs()));
    if let Some((l, ((a, ca), (b, cb)))) = grows {
        let _ = writeln!(
            out,
            "<li>From {} to {}, CPU per datagram changes the most under <strong>{}</strong>: {} to {} ({}).</li>",
            at(r, a.value),
            at(r, b.value),
            esc(&l.label),
            fmt::ns_f(ca),
            fmt::ns_f(cb),
            fmt::ratio(cb / ca)
        );
    }
    let unset = r.points.iter().filter(|p| p.invalid.is_some()).count();
    if unset > 0 {
        let _ = writeln!(
            out,
            "<li>{} {} cannot be set up (listed below with the loader's reason) and {} not on the charts.</li>",
            fmt::count(unset as u64),
            if unset == 1 { "point" } else { "points" },
            if unset == 1 { "is" } else { "are" }
        );
    }
    out.push_str(
        "</ul>\n<p>The numbers these rest on (every point is in the table under “Every point”):</p>\n",
    );
    let lo = r.values.first().copied().unwrap_or(0);
    let c_mtu = "Pod MTU".to_string();
    let c_o0 = format!("Overhead at {}", at(r, lo));
    let c_o1 = format!("Overhead at {}", at(r, hi));
    let c_t0 = format!("Throughput at {}", at(r, lo));
    let c_t1 = format!("Throughput at {}", at(r, hi));
    let c_c0 = format!("CPU / datagram at {}", at(r, lo));
    let c_c1 = format!("CPU / datagram at {}", at(r, hi));
    let c_d1 = format!("Delivered at {}", at(r, hi));
    let cols = [
        (line_head(r), false),
        (c_mtu.as_str(), true),
        (c_o0.as_str(), true),
        (c_o1.as_str(), true),
        (c_t0.as_str(), true),
        (c_t1.as_str(), true),
        (c_c0.as_str(), true),
        (c_c1.as_str(), true),
        (c_d1.as_str(), true),
    ];
    let rows = lines.iter().map(|l| {
        let pts = of_line(r, l);
        let find = |v: u32| pts.iter().find(|p| p.value == v).and_then(|p| dp(p));
        let show = |v: u32, f: &dyn Fn(&DataPlane) -> String| find(v).map_or("cannot be set up".into(), f);
        vec![
            l.label.clone(),
            pts.iter()
                .filter_map(|p| dp(p))
                .map(|d| d.pod_mtu)
                .min()
                .map_or("–".into(), |m| fmt::count(m.into())),
            show(lo, &encap),
            show(hi, &encap),
            show(lo, &|d| fmt::bps(d.throughput_bps)),
            show(hi, &|d| fmt::bps(d.throughput_bps)),
            show(lo, &cpu),
            show(hi, &cpu),
            show(hi, &|d| d.delivered_pct.map_or("–".into(), pct)),
        ]
    });
    table(&mut out, &cols, rows);
    out
}

/// Every point's data-path figures.
fn points(r: &SweepResult) -> String {
    let mut out = String::new();
    let cols = [
        (line_head(r), false),
        ("Value", true),
        ("Pod MTU", true),
        ("Throughput", true),
        ("Delivered / sent", true),
        ("CPU / datagram", true),
        ("Costliest step / datagram", false),
        ("Encapsulation", true),
    ];
    let rows = r.points.iter().map(|p| match dp(p) {
        None => vec![
            label(r, p),
            fmt::count(p.value.into()),
            format!("cannot be set up: {}", p.invalid.as_deref().unwrap_or_default()),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ],
        Some(d) => vec![
            label(r, p),
            fmt::count(p.value.into()),
            fmt::count(d.pod_mtu.into()),
            fmt::bps(d.throughput_bps),
            format!("{} / {}", fmt::count(p.delivered), fmt::count(p.sent)),
            cpu(d),
            d.cpu_ns_per_datagram_by_step
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map_or("–".into(), |(k, v)| format!("{k}: {}", fmt::ns_f(*v))),
            encap(d),
        ],
    });
    table(&mut out, &cols, rows);
    out
}
