//! The outputs of `cnisim sweep`: `report.html`, one PNG (and its CSV) per scaling curve,
//! `rule_scaling.csv` with every point. Reads only the [`SweepResult`].

use std::fmt::Write;

use super::charts::{self, Series};
use super::html::{esc, table, CSS};
use super::{base64, fmt_count, fmt_ns, OutputFile, RenderError};
use crate::cluster::Parameter;
use crate::sweep::{SweepPoint, SweepResult};

/// A metric of a point, in a chart's unit; `None` when the point has no value for it.
type Metric = fn(&SweepPoint) -> Option<f64>;

/// One curve family: a chart of one metric for every mode.
struct Curve {
    stem: &'static str,
    title: &'static str,
    y_desc: &'static str,
    /// The metric, in the chart's unit; `None` when the point has no value for it.
    value: Metric,
    /// A second, dashed line per mode (established packets on the latency chart).
    dashed: Option<(&'static str, Metric)>,
    /// What the curve means, in plain words.
    explain: &'static str,
}

const CURVES: [Curve; 6] = [
    Curve {
        stem: "rules_installed",
        title: "Rules installed on a node",
        y_desc: "rules / entries (log)",
        value: |p| Some(p.rules_installed as f64),
        dashed: None,
        explain: "Everything the proxy programs into one node's kernel: iptables and nftables rules and map \
                  elements, IPVS virtual and real servers with their ipset entries and the few iptables rules \
                  IPVS mode keeps, BPF map entries. Every mode grows with the number of Services: each one \
                  needs its own entries.",
    },
    Curve {
        stem: "match_steps",
        title: "Work per new connection to a Service",
        y_desc: "rules evaluated + hash lookups (log)",
        value: |p| Some(p.rules_evaluated_mean + p.lookups_mean),
        dashed: None,
        explain: "How many rules a connection's first packet is matched against, plus the hash-table lookups \
                  (ipset, IPVS, nftables maps, BPF maps), on average. iptables walks KUBE-SERVICES in order until \
                  the Service's rule, so the walk grows with the Services ahead of it; the other modes find the \
                  Service with one hash lookup whatever the count.",
    },
    Curve {
        stem: "first_packet_latency",
        title: "One-way latency to a Service: first datagram (solid), later ones (dashed)",
        y_desc: "p50 latency, µs (log)",
        value: |p| (p.first_packet_p50_ns > 0).then(|| p.first_packet_p50_ns as f64 / 1e3),
        dashed: Some(("established", |p| (p.established_p50_ns > 0).then(|| p.established_p50_ns as f64 / 1e3))),
        explain: "The median one-way latency of the datagram that opens a connection (it pays for the rule \
                  walk on the client's node, and on the server's node, where the already-translated packet \
                  is a new connection again) and of the datagrams after it, which conntrack handles with one \
                  lookup in every mode.",
    },
    Curve {
        stem: "cpu_per_1000_connections",
        title: "Kernel CPU per 1,000 new connections to Services",
        y_desc: "CPU time, µs (log)",
        value: |p| (p.cpu_ns_per_1000_new_connections > 0.0).then(|| p.cpu_ns_per_1000_new_connections / 1e3),
        dashed: None,
        explain: "CPU the kernel spends setting up 1,000 connections: rules evaluated, lookups, the conntrack \
                  entry and the NAT binding, from the cost profile. With socket-level load balancing the \
                  translation happens once in connect(). The userspace proxy's own CPU is in the table below.",
    },
    Curve {
        stem: "sync_time",
        title: "Time from an endpoint change to rules in place on a node",
        y_desc: "sync time, ms (log)",
        value: |p| p.sync_ns_max.filter(|&n| n > 0).map(|n| n as f64 / 1e6),
        dashed: None,
        explain: "After a pod is deleted, each node's proxy must rewrite its rules; until then new connections \
                  can still be sent to the deleted pod. iptables restores the whole table (the kernel replaces \
                  it in one piece), so the time grows with every rule; IPVS and nftables change only the \
                  affected objects, but kube-proxy still walks every Service on each sync; Cilium's agent \
                  updates a few map entries.",
    },
    Curve {
        stem: "rules_memory",
        title: "Kernel memory of the rule set on a node",
        y_desc: "KiB (log)",
        value: |p| (p.rules_memory_bytes > 0).then(|| p.rules_memory_bytes as f64 / 1024.0),
        dashed: None,
        explain: "The kernel's copy of the rules, from the sizes of its structures (ipt_entry and its matches \
                  and targets, IPVS service and destination structs, nftables rules and set elements, BPF hash \
                  map elements).",
    },
];

/// Renders every sweep output file, in a fixed order.
pub fn render(r: &SweepResult) -> Result<Vec<OutputFile>, RenderError> {
    let x_desc = match r.parameter {
        Parameter::Services => "Services (log)",
        Parameter::Endpoints => "endpoints per Service (log)",
    };
    let mut files = Vec::new();
    let mut figures = Vec::new();
    for c in &CURVES {
        let mut series = Vec::new();
        for (i, mode) in r.proxies.iter().enumerate() {
            let pts = |f: Metric| -> Vec<(f64, f64)> {
                r.points
                    .iter()
                    .filter(|p| &p.proxy == mode)
                    .filter_map(|p| Some((p.value as f64, f(p)?)))
                    .collect()
            };
            series.push(Series { label: mode.clone(), points: pts(c.value), dashed: false, colour: i });
            if let Some((what, f)) = c.dashed {
                series.push(Series {
                    label: format!("{mode} {what}"),
                    points: pts(f),
                    dashed: true,
                    colour: i,
                });
            }
        }
        let png = charts::scaling(c.stem, c.title, x_desc, c.y_desc, &series)?;
        let mut csv = format!("proxy,value,{}\n", c.stem);
        for p in &r.points {
            let v = (c.value)(p).map_or(String::new(), |v| format!("{v}"));
            let _ = writeln!(csv, "{},{},{v}", p.proxy, p.value);
        }
        figures.push((c, base64(&png)));
        files.push(OutputFile::new(format!("{}.png", c.stem), png));
        files.push(OutputFile::new(format!("{}.csv", c.stem), csv.into_bytes()));
    }
    let mut out = vec![OutputFile::new("report.html", page(r, &figures).into_bytes())];
    out.append(&mut files);
    out.push(OutputFile::new("rule_scaling.csv", rule_scaling_csv(r).into_bytes()));
    Ok(out)
}

/// Every point, one row each.
pub fn rule_scaling_csv(r: &SweepResult) -> String {
    let mut s = String::from(
        "proxy,parameter,value,services,endpoints,rules_installed,rules_memory_bytes,rules_evaluated_mean,\
         rules_evaluated_worst,rules_evaluated_all_mean,lookups_mean,first_packet_p50_ns,first_packet_mean_ns,\
         established_p50_ns,established_mean_ns,cpu_ns_per_1000_new_connections,\
         userspace_cpu_ns_per_1000_datagrams,sync_ns_max,new_connections,translated,sent,delivered\n",
    );
    let param = match r.parameter {
        Parameter::Services => "services",
        Parameter::Endpoints => "endpoints",
    };
    for p in &r.points {
        let _ = writeln!(
            s,
            "{},{param},{},{},{},{},{},{:.3},{},{:.3},{:.3},{},{},{},{},{:.0},{:.0},{},{},{},{},{}",
            p.proxy,
            p.value,
            p.services,
            p.endpoints,
            p.rules_installed,
            p.rules_memory_bytes,
            p.rules_evaluated_mean,
            p.rules_evaluated_worst,
            p.rules_evaluated_all_mean,
            p.lookups_mean,
            p.first_packet_p50_ns,
            p.first_packet_mean_ns,
            p.established_p50_ns,
            p.established_mean_ns,
            p.cpu_ns_per_1000_new_connections,
            p.userspace_cpu_ns_per_1000_datagrams,
            p.sync_ns_max.map_or(String::new(), |n| n.to_string()),
            p.new_connections,
            p.translated,
            p.sent,
            p.delivered
        );
    }
    s
}

/// How a metric grows over the sweep, in words: the overall factor from the smallest to the
/// largest value, and the shape from the exponent k of y ~ x^k between the two largest
/// values (where fixed costs no longer hide the trend).
fn growth(x: (f64, f64), y: (f64, f64), tail: Option<((f64, f64), (f64, f64))>) -> String {
    if y.0 <= 0.0 || y.1 <= 0.0 || x.1 <= x.0 {
        return String::new();
    }
    let ((tx0, tx1), (ty0, ty1)) =
        tail.filter(|((a, b), (c, d))| b > a && *c > 0.0 && *d > 0.0).unwrap_or((x, y));
    let k = (ty1 / ty0).ln() / (tx1 / tx0).ln();
    let shape = if k > 0.8 {
        "about in proportion"
    } else if k > 0.2 {
        "more slowly than the count"
    } else if k > -0.2 {
        "hardly at all (flat)"
    } else {
        "downwards"
    };
    format!(
        "×{:.1} while the count grew ×{:.0}; at the top of the range it grows {shape}",
        y.1 / y.0,
        x.1 / x.0
    )
}

fn page(r: &SweepResult, figures: &[(&Curve, String)]) -> String {
    let mut out = String::with_capacity(512 * 1024);
    let title = format!("cnisim sweep: {}", r.scenario);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{CSS}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n<p class=\"lead\">{}</p>\n</header>\n",
        esc(&title),
        esc(&title),
        esc(&format!("Base scenario: {}", r.description))
    );
    let what = match r.parameter {
        Parameter::Services => "the number of Services",
        Parameter::Endpoints => "the number of endpoints per Service",
    };
    if let Some(s) = r.shard {
        let _ = writeln!(
            out,
            "<p class=\"conservation broken\">This is shard {} of {}: {} of the sweep's {} points. Join every \
             shard's directory with <code>cnisim merge</code> for the whole sweep.</p>",
            s.index,
            s.count,
            r.points.len(),
            r.total_points
        );
    }
    let _ = writeln!(
        out,
        "<p>The scenario was simulated {} times: at each value of {what} ({}) under each proxy mode ({}), \
         CNI {}. Every point is a full run: the proxy's rules are built as the real one builds them and each \
         new connection walks them; nothing below is a formula.</p>",
        r.points.len(),
        r.values.iter().map(|v| fmt_count(*v as u64)).collect::<Vec<_>>().join(", "),
        esc(&r.proxies.join(", ")),
        esc(&r.cni)
    );
    out.push_str("<h2 id=\"findings\">What the curves say</h2>\n<ul>\n");
    for mode in &r.proxies {
        let pts: Vec<&SweepPoint> = r.points.iter().filter(|p| &p.proxy == mode).collect();
        let (Some(a), Some(b)) = (pts.first(), pts.last()) else { continue };
        let x = (a.value as f64, b.value as f64);
        let steps = |p: &SweepPoint| p.rules_evaluated_mean + p.lookups_mean;
        // The two largest values, for the shape of each curve.
        let tail = |f: &dyn Fn(&SweepPoint) -> f64| {
            let n = pts.len();
            (n >= 2).then(|| {
                let (p, q) = (pts[n - 2], pts[n - 1]);
                ((p.value as f64, q.value as f64), (f(p), f(q)))
            })
        };
        let sync_of = |p: &SweepPoint| p.sync_ns_max.unwrap_or(0) as f64;
        let sync = match (a.sync_ns_max, b.sync_ns_max) {
            (Some(sa), Some(sb)) => format!(
                "; a sync took {} at {} and {} at {} ({})",
                fmt_ns(sa),
                fmt_count(a.value as u64),
                fmt_ns(sb),
                fmt_count(b.value as u64),
                growth(x, (sa as f64, sb as f64), tail(&sync_of))
            ),
            _ => String::new(),
        };
        let latency = if b.first_packet_p50_ns == 0 {
            format!(
                "no datagram to a Service was answered at {} ({} of {} datagrams delivered; the drops are \
                 in that point's run)",
                fmt_count(b.value as u64),
                fmt_count(b.delivered),
                fmt_count(b.sent)
            )
        } else {
            format!(
                "its first datagram took {} (p50) against {} for later ones at {}",
                fmt_ns(b.first_packet_p50_ns),
                fmt_ns(b.established_p50_ns),
                fmt_count(b.value as u64)
            )
        };
        let _ = writeln!(
            out,
            "<li><strong>{}</strong>: a new connection to a Service cost {:.1} rules + lookups at {} and {:.1} at {} \
             ({}); {latency}{sync}.</li>",
            esc(mode),
            steps(a),
            fmt_count(a.value as u64),
            steps(b),
            fmt_count(b.value as u64),
            growth(x, (steps(a), steps(b)), tail(&steps)),
        );
    }
    out.push_str("</ul>\n");
    let warned: Vec<&SweepPoint> = r.points.iter().filter(|p| !p.warnings.is_empty()).collect();
    if !warned.is_empty() {
        out.push_str(
            "<div class=\"conservation broken\"><strong>Some points could not be set up fully</strong> \
             (as the proxy or the CNI would log it):<ul>",
        );
        for p in warned {
            for w in &p.warnings {
                let _ = writeln!(
                    out,
                    "<li>{} at {}: <code>{}</code></li>",
                    esc(&p.proxy),
                    fmt_count(p.value as u64),
                    esc(w)
                );
            }
        }
        out.push_str("</ul></div>\n");
    }
    out.push_str("<h2 id=\"charts\">Curves</h2>\n");
    for (c, b64) in figures {
        let _ = writeln!(
            out,
            "<figure><img alt=\"{}\" src=\"data:image/png;base64,{b64}\"><figcaption>{} Modes with the same \
             values draw on top of each other. Data: <code>{}.csv</code>.</figcaption></figure>",
            esc(c.title),
            esc(c.explain),
            c.stem
        );
    }
    out.push_str("<h2 id=\"points\">Every point</h2>\n");
    let cols = [
        ("Proxy", false),
        ("Value", true),
        ("Rules installed", true),
        ("Memory", true),
        ("Rules eval. mean / worst", true),
        ("Lookups", true),
        ("First pkt p50", true),
        ("Later p50", true),
        ("CPU / 1k conns", true),
        ("Userspace CPU / 1k dgrams", true),
        ("Sync", true),
        ("Delivered / sent", true),
    ];
    let rows = r.points.iter().map(|p| {
        vec![
            p.proxy.clone(),
            fmt_count(p.value as u64),
            fmt_count(p.rules_installed as u64),
            format!("{} KiB", fmt_count((p.rules_memory_bytes as u64).div_ceil(1024))),
            format!("{:.1} / {}", p.rules_evaluated_mean, p.rules_evaluated_worst),
            format!("{:.1}", p.lookups_mean),
            fmt_ns(p.first_packet_p50_ns),
            fmt_ns(p.established_p50_ns),
            fmt_ns(p.cpu_ns_per_1000_new_connections.round() as u64),
            fmt_ns(p.userspace_cpu_ns_per_1000_datagrams.round() as u64),
            p.sync_ns_max.map_or("-".into(), fmt_ns),
            format!("{} / {}", fmt_count(p.delivered), fmt_count(p.sent)),
        ]
    });
    table(&mut out, &cols, rows);
    // Wall-clock facts stay in sweep.json's `run`, so this page is the same on every machine.
    let _ = writeln!(
        out,
        "<footer>cnisim {} · {} points · wall-clock time in sweep.json</footer>\n</body>\n</html>",
        esc(&r.run.cnisim_version),
        r.points.len()
    );
    out
}
