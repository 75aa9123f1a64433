//! The outputs of `cnisim sweep`: `report.html`, one PNG (and its CSV) per scaling curve,
//! `rule_scaling.csv` with every point of a Service sweep, and for a sweep across CNIs or of a
//! data-path parameter (payload, nodes, pods per node) the data-path charts, verdicts and
//! `data_plane.csv` (`sweep/data.rs`). Reads only the [`SweepResult`].

mod data;

use std::fmt::Write;

use super::charts::{self, Series};
use super::html::{esc, table, CSS};
use super::{base64, fmt_count, fmt_ns, OutputFile, RenderError};
use crate::cluster::Parameter;
use crate::fmt;
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

/// A `policies` sweep's curves: what the policy engine installs and what a connection's first
/// packet costs it.
const POLICY_CURVES: [Curve; 5] = [
    Curve {
        stem: "policy_denied_cpu",
        title: "Policy CPU per 1,000 denied packets",
        y_desc: "ns (log)",
        value: |p| p.policy.as_ref().filter(|x| x.denied_packets > 0).map(|x| x.cpu_ns_per_1000_denied_packets as f64),
        dashed: None,
        explain: "What the policy engine spends on a packet before it drops it: a denied connection is walked \
                  past every policy that selects its destination (iptables), or looked up once (a policy map).",
    },
    Curve {
        stem: "policy_first_packet_cpu",
        title: "Policy enforcement CPU per 1,000 first packets",
        y_desc: "ns (log)",
        value: |p| p.policy.as_ref().filter(|x| x.new_walks > 0).map(|x| x.cpu_ns_per_1000_new_walks as f64),
        dashed: None,
        explain: "What the policy engine's walk of a packet in conntrack state NEW costs (Calico's and \
                  weave-npc's filter rules and ipset lookups, Cilium's policy-map lookups), from the cost \
                  profile, per 1,000 such packets, over every node.",
    },
    Curve {
        stem: "policy_evaluations",
        title: "Rules and lookups per first packet",
        y_desc: "rules + lookups (log)",
        value: |p| p.policy.as_ref().filter(|x| x.new_walks > 0).map(|x| x.evaluations_per_new_walk),
        dashed: None,
        explain: "Rules tested plus ipset or map lookups in one walk of a new connection's packet, on \
                  average.",
    },
    Curve {
        stem: "policy_installed",
        title: "Policy rules or entries installed on a node",
        y_desc: "rules / entries (log)",
        value: |p| p.policy.as_ref().map(|x| x.installed_max as f64),
        dashed: None,
        explain: "The policy engine's filter rules (or policy-map entries) on the node that has the most.",
    },
    Curve {
        stem: "policy_update_time",
        title: "Policy change to enforcement on every node",
        y_desc: "ms (log)",
        value: |p| p.policy.as_ref().and_then(|x| x.update_ns).map(|ns| ns as f64 / 1e6),
        dashed: None,
        explain: "From the scenario's first apply_policy or delete_policy change until the last node's agent \
                  had written it (Felix's iptables-restore, one iptables command per rule for weave-npc, \
                  Cilium's endpoint regeneration), watch delay included.",
    },
];

/// The BGP control plane's curves, for a sweep whose points simulate it (`bgp:`).
const BGP_CURVES: [Curve; 6] = [
    Curve {
        stem: "bgp_sessions",
        title: "BGP sessions in the cluster",
        y_desc: "sessions (log)",
        value: |p| p.bgp.as_ref().map(|b| b.sessions as f64),
        dashed: Some(("Established at the end", |p| p.bgp.as_ref().map(|b| b.sessions_established as f64))),
        explain: "One session per pair of nodes in the node-to-node mesh, N(N-1)/2; with route reflectors one \
                  per client per reflector and one per pair of reflectors. Dashed: the sessions both ends had \
                  Established when the run ended.",
    },
    Curve {
        stem: "bgp_messages",
        title: "BGP messages sent, every speaker",
        y_desc: "messages (log)",
        value: |p| p.bgp.as_ref().map(|b| b.messages as f64),
        dashed: Some(("UPDATEs", |p| p.bgp.as_ref().map(|b| b.updates as f64))),
        explain: "OPEN, KEEPALIVE, UPDATE (End-of-RIB included) and NOTIFICATION messages, each a real \
                  message on a simulated TCP connection. A reflector sends each client's block to every other \
                  client in an UPDATE of its own (the next hop and ORIGINATOR_ID differ).",
    },
    Curve {
        stem: "bgp_convergence",
        title: "Initial convergence: BIRD's start to every kernel route in place",
        y_desc: "seconds (log)",
        value: |p| p.bgp.as_ref().and_then(|b| b.convergence_ns).map(|ns| ns as f64 / 1e9),
        dashed: None,
        explain: "From t = 0, when every BIRD starts, to the moment the last live node's kernel has a route to \
                  every block of every other live node. The connect delay (2 s) comes first; what follows is \
                  handshakes, UPDATEs through reflectors, BIRD's single-threaded CPU and the routes it writes \
                  to the kernel. A point missing from the curve had not converged by the end of its run.",
    },
    Curve {
        stem: "bgp_reconvergence",
        title: "After the scenario's first change: time until the routes have converged again",
        y_desc: "seconds (log)",
        value: |p| p.bgp.as_ref().and_then(|b| b.reconvergence_ns).map(|ns| ns as f64 / 1e9),
        dashed: None,
        explain: "For a power-off, until no live node routes through the lost node: the peers learn nothing \
                  until their hold timer expires (240 s less BIRD's jitter), then withdraw; for a graceful stop, \
                  a Cease NOTIFICATION withdraws at once; traffic to the node's pods is black-holed meanwhile. \
                  For a BIRD restart, until its kernel routes are synced; for a node joining, until the routes \
                  to and from it are complete (its pods unreachable meanwhile). Empty when the scenario has no \
                  such change.",
    },
    Curve {
        stem: "bgp_cpu",
        title: "BIRD CPU on the busiest node",
        y_desc: "CPU ms (log)",
        value: |p| p.bgp.as_ref().filter(|b| b.cpu_ns_max > 0).map(|b| b.cpu_ns_max as f64 / 1e6),
        dashed: None,
        explain: "CPU BIRD used on the node where it used most, over the whole run: per message read or \
                  written and per route in it (bird_message, bird_route) and per kernel route written \
                  (netlink_object), served on one core as BIRD is single-threaded.",
    },
    Curve {
        stem: "bgp_memory",
        title: "BIRD memory on the largest node",
        y_desc: "MiB (log)",
        value: |p| p.bgp.as_ref().filter(|b| b.memory_bytes_max > 0).map(|b| b.memory_bytes_max as f64 / 1048576.0),
        dashed: None,
        explain: "An estimate from the sessions and routes the speaker holds (about 12 KiB per session, 200 B \
                  per route, BIRD 1.6's buffers and structures); a reflector holds every client's session.",
    },
];

/// Renders every sweep output file, in a fixed order.
pub fn render(r: &SweepResult) -> Result<Vec<OutputFile>, RenderError> {
    let x_desc = match r.parameter {
        Parameter::Services => "Services (log)",
        Parameter::Endpoints => "endpoints per Service (log)",
        Parameter::Policies => "NetworkPolicies (log)",
        Parameter::Nodes => "nodes (log)",
        _ => "",
    };
    let mut files = Vec::new();
    let mut figures = Vec::new();
    let service = r.parameter.is_service();
    let all_lines = lines(r);
    let policy = r.parameter == Parameter::Policies;
    let bgp = r.points.iter().any(|p| p.bgp.is_some());
    for c in CURVES
        .iter()
        .filter(|_| service)
        .chain(POLICY_CURVES.iter().filter(|_| policy))
        .chain(BGP_CURVES.iter().filter(|_| bgp))
    {
        let mut series = Vec::new();
        for (i, line) in all_lines.iter().enumerate() {
            let pts = |f: Metric| -> Vec<(f64, f64)> {
                of_line(r, line).into_iter().filter_map(|p| Some((p.value as f64, f(p)?))).collect()
            };
            let points = pts(c.value);
            if points.is_empty() {
                // A line with no value at any point (a CNI without a policy engine on the policy
                // curves) is left out of the chart and its legend.
                continue;
            }
            series.push(Series { label: line.label.clone(), points, dashed: false, colour: i });
            if let Some((what, f)) = c.dashed {
                series.push(Series {
                    label: format!("{} {what}", line.label),
                    points: pts(f),
                    dashed: true,
                    colour: i,
                });
            }
        }
        let png = charts::scaling(c.stem, c.title, x_desc, c.y_desc, &series)?;
        let mut csv = format!("{}value,{}\n", key_head(r), c.stem);
        for p in &r.points {
            let v = (c.value)(p).filter(|_| p.invalid.is_none()).map_or(String::new(), |v| format!("{v}"));
            let _ = writeln!(csv, "{}{},{v}", key(r, p), p.value);
        }
        figures.push((c, base64(&png)));
        files.push(OutputFile::new(format!("{}.png", c.stem), png));
        files.push(OutputFile::new(format!("{}.csv", c.stem), csv.into_bytes()));
    }
    let data = if data::shown(r) { Some(data::render(r, &all_lines)?) } else { None };
    let mut out = vec![OutputFile::new("report.html", page(r, &figures, data.as_ref()).into_bytes())];
    out.append(&mut files);
    if service {
        out.push(OutputFile::new("rule_scaling.csv", rule_scaling_csv(r).into_bytes()));
    }
    if let Some(d) = data {
        out.extend(d.files);
    }
    Ok(out)
}

/// One line of every chart: a CNI, proxy mode and BGP topology of the sweep.
pub(super) struct Line {
    /// What varies of the three ("CNI / proxy" when both do), or the proxy mode.
    pub label: String,
    pub cni: String,
    pub proxy: String,
    pub topology: Option<String>,
}

/// The sweep's lines, CNI-major, then proxy, then topology.
pub(super) fn lines(r: &SweepResult) -> Vec<Line> {
    let topologies: Vec<Option<String>> = if r.bgp_topologies.is_empty() {
        vec![None]
    } else {
        r.bgp_topologies.iter().cloned().map(Some).collect()
    };
    let mut out = Vec::new();
    for cni in &r.cnis {
        for proxy in &r.proxies {
            for t in &topologies {
                let label = name(r, cni, proxy, t.as_deref());
                out.push(Line { label, cni: cni.clone(), proxy: proxy.clone(), topology: t.clone() });
            }
        }
    }
    out
}

/// A line's name: the parts the sweep varies, or the proxy mode when none does.
fn name(r: &SweepResult, cni: &str, proxy: &str, topology: Option<&str>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if r.cnis.len() > 1 {
        parts.push(cni);
    }
    if r.proxies.len() > 1 || (parts.is_empty() && topology.is_none()) {
        parts.push(proxy);
    }
    parts.extend(topology);
    parts.join(" / ")
}

/// How charts and tables name a point's line.
pub(super) fn label(r: &SweepResult, p: &SweepPoint) -> String {
    name(r, &p.cni, &p.proxy, p.topology.as_deref())
}

/// The points of one line that could be set up, in value order.
pub(super) fn of_line<'a>(r: &'a SweepResult, line: &Line) -> Vec<&'a SweepPoint> {
    r.points
        .iter()
        .filter(|p| {
            p.proxy == line.proxy && p.cni == line.cni && p.topology == line.topology && p.invalid.is_none()
        })
        .collect()
}

/// The CSV columns naming a point: "proxy," ("cni," first when CNIs are swept, "topology,"
/// after when BGP topologies are).
fn key_head(r: &SweepResult) -> String {
    let cni = if r.cnis.len() > 1 { "cni," } else { "" };
    let topology = if r.bgp_topologies.is_empty() { "" } else { "topology," };
    format!("{cni}proxy,{topology}")
}

fn key(r: &SweepResult, p: &SweepPoint) -> String {
    let cni = if r.cnis.len() > 1 { format!("{},", p.cni) } else { String::new() };
    let topology = p.topology.as_ref().map_or(String::new(), |t| format!("{t},"));
    format!("{cni}{},{topology}", p.proxy)
}

/// Every point, one row each.
pub fn rule_scaling_csv(r: &SweepResult) -> String {
    let mut s = key_head(r);
    s.push_str(
        "parameter,value,services,endpoints,rules_installed,rules_memory_bytes,rules_evaluated_mean,\
         rules_evaluated_worst,rules_evaluated_all_mean,lookups_mean,first_packet_p50_ns,first_packet_mean_ns,\
         established_p50_ns,established_mean_ns,cpu_ns_per_1000_new_connections,\
         userspace_cpu_ns_per_1000_datagrams,sync_ns_max,new_connections,translated,sent,delivered\n",
    );
    let param = r.parameter.id();
    for p in r.points.iter().filter(|p| p.invalid.is_none()) {
        let _ = writeln!(
            s,
            "{}{param},{},{},{},{},{},{:.3},{},{:.3},{:.3},{},{},{},{},{:.0},{:.0},{},{},{},{},{}",
            key(r, p),
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

/// Rules evaluated plus hash lookups per new connection to a Service.
fn steps(p: &SweepPoint) -> f64 {
    p.rules_evaluated_mean + p.lookups_mean
}

/// The exponent k of y ~ x^k between the two largest values of a mode (where fixed costs no
/// longer hide the trend); `None` with fewer than two usable points.
fn exponent(pts: &[&SweepPoint], f: fn(&SweepPoint) -> f64) -> Option<f64> {
    let n = pts.len();
    let (p, q) = (pts.get(n.checked_sub(2)?)?, pts.get(n - 1)?);
    let (x0, x1, y0, y1) = (p.value as f64, q.value as f64, f(p), f(q));
    (x1 > x0 && y0 > 0.0 && y1 > 0.0).then(|| (y1 / y0).ln() / (x1 / x0).ln())
}

/// The possessive ending of a name: "iptables'", "ipvs'", "nftables'", but "ebpf's".
fn possessive(name: &str) -> &'static str {
    if name.ends_with('s') {
        "'"
    } else {
        "'s"
    }
}

/// "a", "a and b", "a, b and c".
pub(super) fn names(list: &[&str]) -> String {
    match list {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// First datagram against later ones at a point: their p50 ratio, when both were measured.
fn first_ratio(p: &SweepPoint) -> Option<f64> {
    (p.first_packet_p50_ns > 0 && p.established_p50_ns > 0)
        .then(|| p.first_packet_p50_ns as f64 / p.established_p50_ns as f64)
}

/// "What the curves say": a few short verdicts computed from the points, then the numbers
/// they rest on, one row per mode.
fn findings(out: &mut String, r: &SweepResult) {
    let unit = match r.parameter {
        Parameter::Services => "Services",
        _ => "endpoints per Service",
    };
    let (Some(&lo), Some(&hi)) = (r.values.first(), r.values.last()) else { return };
    let at = |v: u32| fmt_count(u64::from(v));
    out.push_str("<h2 id=\"findings\">What the curves say</h2>\n<ul>\n");
    let all_lines = lines(r);
    let modes: Vec<(&str, Vec<&SweepPoint>)> =
        all_lines.iter().map(|l| (l.label.as_str(), of_line(r, l))).filter(|(_, p)| !p.is_empty()).collect();
    // The walk per new connection: growing or flat.
    // Growing: more than twice the work at the top of the range as at its bottom.
    let grows = |pts: &[&SweepPoint]| steps(pts[pts.len() - 1]) > 2.0 * steps(pts[0]);
    let growing: Vec<&str> = modes.iter().filter(|(_, p)| p.len() > 1 && grows(p)).map(|(m, _)| *m).collect();
    let flat: Vec<&str> = modes.iter().filter(|(_, p)| p.len() > 1 && !grows(p)).map(|(m, _)| *m).collect();
    for m in &growing {
        let pts = &modes.iter().find(|(n, _)| n == m).expect("listed").1;
        let (a, b) = (pts[0], pts[pts.len() - 1]);
        let _ = writeln!(
            out,
            "<li><strong>{}</strong>{} work per new connection grows with the {unit}: {} rules + lookups at {}, \
             {} at {}.</li>",
            esc(m),
            possessive(m),
            fmt::decimal(steps(a), 1),
            at(a.value),
            fmt::decimal(steps(b), 1),
            at(b.value)
        );
    }
    if !flat.is_empty() {
        let most = modes
            .iter()
            .filter(|(m, _)| flat.contains(m))
            .flat_map(|(_, p)| p.iter().map(|p| steps(p)))
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "<li>The work stays flat under <strong>{}</strong>: at most {} rules + lookups at any count, one hash \
             lookup finds the Service.</li>",
            esc(&names(&flat)),
            fmt::decimal(most, 1)
        );
    }
    // The first datagram's penalty: from which value it stays above a round factor.
    for (m, pts) in &modes {
        let Some(top) = pts.last().and_then(|p| first_ratio(p)) else {
            if let Some(b) = pts.last().filter(|b| b.first_packet_p50_ns == 0) {
                let _ = writeln!(
                    out,
                    "<li>Under <strong>{}</strong> no datagram to a Service was answered at {} {unit} ({} of {} \
                     delivered; the drops are in that point's run).</li>",
                    esc(m),
                    at(b.value),
                    fmt_count(b.delivered),
                    fmt_count(b.sent)
                );
            }
            continue;
        };
        // From which value on the ratio stays at or above `f`.
        let from = |f: f64| {
            (0..pts.len())
                .find(|&i| pts[i..].iter().all(|p| first_ratio(p).is_some_and(|x| x >= f)))
                .map(|i| pts[i].value)
        };
        // The largest round factor that holds over more than the last point, else the
        // largest that holds at all.
        let reached: Vec<(f64, u32)> = [100.0, 10.0, 2.0]
            .into_iter()
            .filter(|f| top >= *f)
            .filter_map(|f| Some((f, from(f)?)))
            .collect();
        let Some(&(factor, from)) = reached.iter().find(|(_, v)| *v < hi).or(reached.last()) else {
            continue;
        };
        let from = Some(from);
        let b = pts[pts.len() - 1];
        let since = match from {
            Some(v) if v > lo => format!("Above about {} {unit}", at(v)),
            _ => format!("At every count from {}", at(lo)),
        };
        let _ = writeln!(
            out,
            "<li>{since}, <strong>{}</strong>{} first datagram to a Service takes more than {}× as long as \
             later ones: {} against {} at {}.</li>",
            esc(m),
            possessive(m),
            factor,
            fmt_ns(b.first_packet_p50_ns),
            fmt_ns(b.established_p50_ns),
            at(b.value)
        );
    }
    // Syncs and memory at the top of the range.
    let tops: Vec<&SweepPoint> = modes.iter().filter_map(|(_, p)| p.last().copied()).collect();
    let synced: Vec<&SweepPoint> = tops.iter().copied().filter(|p| p.sync_ns_max.is_some()).collect();
    if let (Some(slow), Some(fast)) =
        (synced.iter().max_by_key(|p| p.sync_ns_max), synced.iter().min_by_key(|p| p.sync_ns_max))
    {
        if slow.sync_ns_max != fast.sync_ns_max {
            let _ = writeln!(
                out,
                "<li>After an endpoint change at {} {unit}, rules were in place slowest under <strong>{}</strong> \
                 ({}) and fastest under <strong>{}</strong> ({}).</li>",
                at(hi),
                esc(&label(r, slow)),
                fmt_ns(slow.sync_ns_max.unwrap_or(0)),
                esc(&label(r, fast)),
                fmt_ns(fast.sync_ns_max.unwrap_or(0))
            );
        }
    }
    let kib = |p: &SweepPoint| fmt::bytes(p.rules_memory_bytes as u64);
    if let (Some(big), Some(small)) =
        (tops.iter().max_by_key(|p| p.rules_memory_bytes), tops.iter().min_by_key(|p| p.rules_memory_bytes))
    {
        if big.rules_memory_bytes != small.rules_memory_bytes {
            let _ = writeln!(
                out,
                "<li>At {} {unit} the rules take the most kernel memory under <strong>{}</strong> ({}), the least \
                 under <strong>{}</strong> ({}).</li>",
                at(hi),
                esc(&label(r, big)),
                kib(big),
                esc(&label(r, small)),
                kib(small)
            );
        }
    }
    out.push_str("</ul>\n<p>The numbers these rest on, per mode (every point is in the last table):</p>\n");
    let c0 = format!("Rules + lookups at {}", at(lo));
    let c1 = format!("at {}", at(hi));
    let c3 = format!("First / later datagram at {}", at(hi));
    let c4 = format!("Sync at {}", at(lo));
    let c5 = format!("Sync at {}", at(hi));
    let c6 = format!("Memory at {}", at(hi));
    let cols = [
        (line_head(r), false),
        (c0.as_str(), true),
        (c1.as_str(), true),
        ("Growth at the top (y ~ x^k)", true),
        (c3.as_str(), true),
        (c4.as_str(), true),
        (c5.as_str(), true),
        (c6.as_str(), true),
    ];
    let rows = modes.iter().map(|(m, pts)| {
        let (a, b) = (pts[0], pts[pts.len() - 1]);
        let sync = |p: &SweepPoint| p.sync_ns_max.map_or("–".to_string(), fmt_ns);
        vec![
            m.to_string(),
            fmt::decimal(steps(a), 1),
            fmt::decimal(steps(b), 1),
            exponent(pts, steps).map_or("–".into(), |k| format!("k = {}", fmt::decimal(k, 2))),
            match first_ratio(b) {
                Some(x) => format!(
                    "{} / {} ({})",
                    fmt_ns(b.first_packet_p50_ns),
                    fmt_ns(b.established_p50_ns),
                    fmt::ratio(x)
                ),
                None => "–".into(),
            },
            sync(a),
            sync(b),
            kib(b),
        ]
    });
    table(out, &cols, rows);
}

/// The header of a column naming lines.
pub(super) fn line_head(r: &SweepResult) -> &'static str {
    match (r.cnis.len() > 1, r.proxies.len() > 1, !r.bgp_topologies.is_empty()) {
        (true, true, true) => "CNI / proxy / BGP topology",
        (true, true, false) => "CNI / proxy",
        (true, false, true) => "CNI / BGP topology",
        (true, false, false) => "CNI",
        (false, true, true) => "Proxy / BGP topology",
        (false, false, true) => "BGP topology",
        (false, _, false) => "Proxy",
    }
}

fn page(r: &SweepResult, figures: &[(&Curve, String)], data: Option<&data::Rendered>) -> String {
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
        Parameter::Payload => "every workload's payload",
        Parameter::Nodes => "the number of nodes",
        Parameter::PodsPerNode => "the number of pods per node",
        Parameter::Policies => "the number of NetworkPolicies (generated_policies.count)",
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
    let values = r.values.iter().map(|v| fmt_count(*v as u64)).collect::<Vec<_>>().join(", ");
    if r.cnis.len() > 1 || !r.parameter.is_service() {
        let _ = writeln!(
            out,
            "<p>The scenario was simulated {} times: at each value of {what} ({values}) under each CNI ({}) and \
             each proxy mode ({}){}. Every point is a full run: packets cross the CNI's devices, tunnels and \
             rules as they do in a cluster, and the CPU is the cost profile's per step; nothing below is a \
             formula.</p>",
            r.points.len(),
            esc(&r.cnis.join(", ")),
            esc(&r.proxies.join(", ")),
            if r.bgp_topologies.is_empty() {
                String::new()
            } else {
                esc(&format!(" and each BGP topology ({})", r.bgp_topologies.join(", ")))
            }
        );
    } else {
        let _ = writeln!(
            out,
            "<p>The scenario was simulated {} times: at each value of {what} ({values}) under each proxy mode \
             ({}), CNI {}. Every point is a full run: the proxy's rules are built as the real one builds them \
             and each new connection walks them; nothing below is a formula.</p>",
            r.points.len(),
            esc(&r.proxies.join(", ")),
            esc(&r.cni)
        );
    }
    if r.parameter.is_service() {
        findings(&mut out, r);
    }
    if let Some(d) = data {
        out.push_str(&d.findings);
    }
    let invalid: Vec<&SweepPoint> = r.points.iter().filter(|p| p.invalid.is_some()).collect();
    if !invalid.is_empty() {
        out.push_str(
            "<div class=\"conservation broken\"><strong>Some points cannot be set up</strong> (the scenario \
             does not resolve there; they were not run):<ul>",
        );
        for p in invalid {
            let _ = writeln!(
                out,
                "<li>{} at {}: cannot be set up: <code>{}</code></li>",
                esc(&label(r, p)),
                fmt_count(p.value as u64),
                esc(p.invalid.as_deref().unwrap_or_default())
            );
        }
        out.push_str("</ul></div>\n");
    }
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
                    esc(&label(r, p)),
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
             values draw on top of each other. Data: <a href=\"{stem}.csv\">{stem}.csv</a>, image: \
             <a href=\"{stem}.png\">{stem}.png</a>.</figcaption></figure>",
            esc(c.title),
            esc(c.explain),
            stem = c.stem
        );
    }
    if let Some(d) = data {
        out.push_str(&d.charts);
    }
    out.push_str("<h2 id=\"points\">Every point</h2>\n");
    if let Some(d) = data {
        out.push_str(&d.points);
    }
    if r.parameter.is_service() {
        service_points(&mut out, r);
    }
    if r.points.iter().any(|p| p.bgp.is_some()) {
        bgp_points(&mut out, r);
    }
    // Wall-clock facts stay in sweep.json's `run`, so this page is the same on every machine.
    let _ = writeln!(
        out,
        "<footer>cnisim {} · {} points · wall-clock time in sweep.json</footer>\n</body>\n</html>",
        esc(&r.run.cnisim_version),
        r.points.len()
    );
    out
}

/// The BGP figures of every point that was run, one row each.
fn bgp_points(out: &mut String, r: &SweepResult) {
    out.push_str("<h3>BGP control plane</h3>\n");
    let cols = [
        (line_head(r), false),
        ("Value", true),
        ("Sessions (Established)", true),
        ("Messages (UPDATEs)", true),
        ("Bytes", true),
        ("Convergence", true),
        ("Reconvergence (drops)", true),
        ("BIRD CPU, busiest", true),
        ("BIRD memory, largest", true),
        ("RIB / FIB, largest", true),
    ];
    let rows = r.points.iter().filter_map(|p| Some((p, p.bgp.as_ref()?))).map(|(p, b)| {
        vec![
            label(r, p),
            fmt_count(p.value as u64),
            format!("{} ({})", fmt_count(b.sessions as u64), fmt_count(b.sessions_established as u64)),
            format!("{} ({})", fmt_count(b.messages), fmt_count(b.updates)),
            fmt_count(b.message_bytes),
            b.convergence_ns.map_or("not by the end".into(), fmt_ns),
            b.reconvergence_ns
                .map_or("-".into(), |ns| format!("{} ({})", fmt_ns(ns), fmt_count(b.reconvergence_drops))),
            fmt_ns(b.cpu_ns_max),
            format!("{} KiB", fmt_count(b.memory_bytes_max.div_ceil(1024))),
            format!("{} / {}", fmt_count(b.rib_routes_max as u64), fmt_count(b.fib_routes_max as u64)),
        ]
    });
    table(out, &cols, rows);
}

/// The Service figures of every point that was run, one row each.
fn service_points(out: &mut String, r: &SweepResult) {
    let cols = [
        (line_head(r), false),
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
    let rows = r.points.iter().filter(|p| p.invalid.is_none()).map(|p| {
        vec![
            label(r, p),
            fmt_count(p.value as u64),
            fmt_count(p.rules_installed as u64),
            format!("{} KiB", fmt_count((p.rules_memory_bytes as u64).div_ceil(1024))),
            format!(
                "{} / {}",
                fmt::decimal(p.rules_evaluated_mean, 1),
                fmt_count(u64::from(p.rules_evaluated_worst))
            ),
            fmt::decimal(p.lookups_mean, 1),
            fmt_ns(p.first_packet_p50_ns),
            fmt_ns(p.established_p50_ns),
            fmt_ns(p.cpu_ns_per_1000_new_connections.round() as u64),
            fmt_ns(p.userspace_cpu_ns_per_1000_datagrams.round() as u64),
            p.sync_ns_max.map_or("-".into(), fmt_ns),
            format!("{} / {}", fmt_count(p.delivered), fmt_count(p.sent)),
        ]
    });
    table(out, &cols, rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::SweepRun;

    /// A point whose walk grows with `value` (`linear`) or stays at 9, with a first datagram
    /// that costs one ns per rule walked more than later ones.
    fn point(proxy: &str, value: u32, linear: bool) -> SweepPoint {
        let walk = if linear { f64::from(value) / 2.0 } else { 9.0 };
        SweepPoint {
            index: 0,
            proxy: proxy.into(),
            value,
            services: value as usize,
            endpoints: 3 * value as usize,
            rules_installed: if linear { 5 * value as usize } else { 2 * value as usize },
            rules_memory_bytes: if linear { 3000 * value as usize } else { 500 * value as usize },
            rules_evaluated_mean: walk,
            rules_evaluated_worst: walk as u32,
            rules_evaluated_all_mean: walk,
            lookups_mean: 0.0,
            first_packet_p50_ns: 15_000 + (walk * 40.0) as u64,
            first_packet_mean_ns: 0,
            established_p50_ns: 15_000,
            established_mean_ns: 0,
            cpu_ns_per_1000_new_connections: 0.0,
            userspace_cpu_ns_per_1000_datagrams: 0.0,
            sync_ns_max: Some(if linear { 25_000 * u64::from(value) } else { 2_000_000 }),
            new_connections: 10,
            translated: 10,
            sent: 100,
            delivered: 100,
            warnings: Vec::new(),
            cni: "flannel-vxlan".into(),
            invalid: None,
            data_plane: None,
            policy: None,
            topology: None,
            bgp: None,
        }
    }

    #[test]
    fn findings_are_short_verdicts_with_their_numbers_in_a_table() {
        let values = vec![10, 1_000, 5_000, 20_000, 50_000];
        let points =
            values.iter().flat_map(|&v| [point("iptables", v, true), point("nftables", v, false)]).collect();
        let r = SweepResult {
            scenario: "s".into(),
            description: String::new(),
            cni: "flannel-vxlan".into(),
            parameter: Parameter::Services,
            values,
            proxies: vec!["iptables".into(), "nftables".into()],
            cnis: vec!["flannel-vxlan".into()],
            bgp_topologies: Vec::new(),
            points,
            shard: None,
            total_points: 10,
            run: SweepRun { cnisim_version: "0".into(), wall_seconds: 0.0, threads: 1 },
        };
        let mut out = String::new();
        findings(&mut out, &r);
        for want in [
            "<li><strong>iptables</strong>' work per new connection grows with the Services: 5.0 rules + lookups \
             at 10, 25,000.0 at 50,000.</li>",
            "<li>The work stays flat under <strong>nftables</strong>: at most 9.0 rules + lookups at any count",
            // 15 µs + 40 ns per rule walked: 10x from 3,375 rules (6,750 Services), so from the
            // 20,000 point on; 1,015,000 ns at 50,000.
            "<li>Above about 20,000 Services, <strong>iptables</strong>' first datagram to a Service takes more \
             than 10× as long as later ones: 1.01 ms against 15.0 µs at 50,000.</li>",
            "rules were in place slowest under <strong>iptables</strong> (1.25 s) and fastest under \
             <strong>nftables</strong> (2.00 ms)",
            "the most kernel memory under <strong>iptables</strong> (143 MiB)",
            "<td class=\"num\">1.01 ms / 15.0 µs (68×)</td>",
        ] {
            assert!(out.contains(want), "{want}\nnot in\n{out}");
        }
    }
}
