//! `report.html`: one self-contained page (inline CSS, charts as base64 PNG, no scripts, no
//! network fetches) that explains a run to someone who has not read its scenario.
//!
//! Every string taken from the summary goes through [`esc`]; numbers are shown in human units.

use std::fmt::Write;

use super::{base64, drop_rows, fmt_bps, fmt_count, fmt_ns, Chart, Section};
use crate::net::packet::Hop;
use crate::summary::{FlowSummary, LatencyStats, OverheadPoint, PathTrace, Summary};

pub(super) const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  margin: 0 auto; max-width: 1280px; padding: 1.5rem 2rem 3rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h3 { font-size: 1.02rem; margin: 1.4rem 0 .4rem; }
p.lead { font-size: 1.05rem; color: #414a53; margin-top: 0; }
nav { font-size: .9rem; margin: .8rem 0 1rem; }
nav a { margin-right: 1rem; color: #0969da; text-decoration: none; }
table { border-collapse: collapse; font-size: .86rem; margin: .5rem 0 1rem; }
th, td { padding: .3rem .6rem; text-align: left; vertical-align: top; border-bottom: 1px solid #e4e8ec; }
th { background: #f0f3f6; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f8f9fb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { text-align: left; width: 12rem; background: none; }
tr.drop td { background: #fde8e8; }
.ok { color: #1a7f37; }
.bad { color: #cf222e; font-weight: 600; }
.conservation { font-size: 1rem; padding: .6rem .8rem; background: #f6f8fa; border-left: 4px solid #1a7f37; }
.conservation.broken { border-left-color: #cf222e; }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e8ec; }
figcaption { font-size: .85rem; color: #57606a; }
footer { margin-top: 3rem; font-size: .8rem; color: #57606a; border-top: 1px solid #d0d7de; padding-top: .6rem; }
.muted { color: #8c959f; }
"#;

/// Renders the whole page.
pub(super) fn page(summary: &Summary, charts: &[Chart]) -> String {
    let mut out =
        String::with_capacity(64 * 1024 + charts.iter().map(|c| c.png.len() * 4 / 3).sum::<usize>());
    let title = format!("cnisim report: {}", summary.scenario.name);
    let _ = write!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = write!(out, "<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n", esc(&title));
    scenario(&mut out, summary);
    flows(&mut out, summary);
    services(&mut out, summary);
    masquerade(&mut out, summary);
    tcp(&mut out, summary, charts.iter().filter(|c| c.section == Section::Tcp));
    policy(&mut out, summary);
    bgp(&mut out, summary);
    overhead(&mut out, summary, charts.iter().filter(|c| c.section == Section::Overhead));
    figures(&mut out, charts.iter().filter(|c| c.section == Section::Charts));
    drops(&mut out, summary);
    nodes(&mut out, summary);
    cpu_breakdown(&mut out, summary);
    paths(&mut out, summary);
    footer(&mut out, summary);
    out.push_str("</body>\n</html>\n");
    out
}

fn scenario(out: &mut String, s: &Summary) {
    let sc = &s.scenario;
    let t = &s.totals;
    let _ = writeln!(out, "<header>\n<h1>cnisim report: {}</h1>", esc(&sc.name));
    let _ = writeln!(out, "<p class=\"lead\">{}</p>\n</header>", esc(&sc.description));
    // The Services section exists only when the scenario has Services.
    let services = if s.services.is_some() { "<a href=\"#services\">Services</a>" } else { "" };
    // So does the TCP section, with TCP workloads.
    let tcp = if s.flows.iter().any(|f| f.tcp.is_some()) { "<a href=\"#tcp\">TCP</a>" } else { "" };
    let policy = if s.policy.as_ref().is_some_and(|p| p.policies > 0) {
        "<a href=\"#policy\">NetworkPolicy</a>"
    } else {
        ""
    };
    let bgp = if s.bgp.is_some() { "<a href=\"#bgp\">BGP</a>" } else { "" };
    let masq = if s.masquerade.is_some() { "<a href=\"#masquerade\">Masquerade</a>" } else { "" };
    let _ = writeln!(
        out,
        "<nav><a href=\"#flows\">Flows</a>{services}{masq}{tcp}{policy}{bgp}<a href=\"#overhead\">Encapsulation overhead</a>\
         <a href=\"#charts\">Charts</a><a href=\"#drops\">Drops</a>\
         <a href=\"#cpu\">CPU</a><a href=\"#cpu-steps\">Where the CPU goes</a>\
         <a href=\"#paths\">Packet paths</a></nav>",
    );
    out.push_str("<h2 id=\"simulated\">What was simulated</h2>\n<table class=\"kv\"><tbody>\n");
    let facts = [
        ("CNI", sc.cni.clone()),
        ("Service proxy", sc.proxy.clone()),
        ("Nodes", fmt_count(sc.nodes as u64)),
        ("Pods", fmt_count(sc.pods as u64)),
        ("Node / pod / service CIDRs", format!("{} / {} / {}", sc.node_cidr, sc.pod_cidr, sc.service_cidr)),
        ("Underlay", sc.underlay.clone()),
        ("Seed", sc.seed.to_string()),
        ("Simulated duration", fmt_ns(sc.duration_ns)),
        ("Run ended at (simulated)", fmt_ns(t.end_ns)),
        ("Events / packet hops", format!("{} / {}", fmt_count(t.events), fmt_count(t.packet_hops))),
    ];
    for (key, value) in facts {
        let _ = writeln!(out, "<tr><th>{key}</th><td>{}</td></tr>", esc(&value));
    }
    out.push_str("</tbody></table>\n<h3>Workloads</h3>\n");
    let rows = sc
        .workloads
        .iter()
        .map(|w| vec![w.name.clone(), w.kind.clone(), w.params.clone(), fmt_count(w.flows as u64)]);
    table(out, &[("Workload", false), ("Kind", false), ("Parameters", false), ("Flows", true)], rows);
    conservation(out, s);
    warnings(out, s);
}

fn warnings(out: &mut String, s: &Summary) {
    if s.scenario.warnings.is_empty() {
        return;
    }
    out.push_str(
        "<div class=\"conservation broken\"><strong>The CNI could not set everything up</strong> \
         (as its agent would log it):<ul>",
    );
    for w in &s.scenario.warnings {
        let _ = writeln!(out, "<li><code>{}</code></li>", esc(w));
    }
    out.push_str("</ul></div>\n");
}

fn conservation(out: &mut String, s: &Summary) {
    let t = &s.totals;
    let holds = t.delivered.checked_add(t.dropped).and_then(|n| n.checked_add(t.in_flight)) == Some(t.sent);
    let (class, verdict) = if holds {
        ("", "<span class=\"ok\">holds</span>")
    } else {
        (" broken", "<span class=\"bad\">DOES NOT HOLD</span>")
    };
    // Path MTU discovery's messages, when there were any: the black hole shows as withheld.
    let icmp = if t.icmp_frag_needed + t.icmp_frag_needed_filtered > 0 {
        format!(
            " ICMP \"fragmentation needed\" sent: {}, withheld by the fabric's routers (filter_icmp): {}.",
            fmt_count(t.icmp_frag_needed),
            fmt_count(t.icmp_frag_needed_filtered)
        )
    } else {
        String::new()
    };
    let icmp = match t.icmp_port_unreachable {
        0 => icmp,
        n => {
            format!("{icmp} ICMP \"port unreachable\" sent for Services without endpoints: {}.", fmt_count(n))
        }
    };
    let _ = writeln!(
        out,
        "<p class=\"conservation{class}\">Packet conservation (data datagrams): sent {} = delivered {} + dropped {} \
         + in flight at the end {}: {verdict}. ARP frames sent: {}.{icmp}</p>",
        fmt_count(t.sent),
        fmt_count(t.delivered),
        fmt_count(t.dropped),
        fmt_count(t.in_flight),
        fmt_count(t.arp_frames),
    );
}

fn flows(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"flows\">Flows</h2>\n");
    out.push_str(
        "<p>One row per flow. Latency is one way, from the send call to delivery on the receiving socket; \
         RTT is per completed request/response exchange. Overhead is the extra bytes on the sender's \
         <code>eth0</code> (headers, encapsulation) relative to the UDP payload.</p>\n",
    );
    let cols = [
        ("#", true),
        ("Workload", false),
        ("Source → destination", false),
        ("Placement", false),
        ("Offered", true),
        ("Sent", true),
        ("Delivered", true),
        ("Dropped", true),
        ("p50", true),
        ("p99", true),
        ("Max", true),
        ("RTT p50", true),
        ("RTT p99", true),
        ("Throughput", true),
        ("Overhead", true),
    ];
    table(out, &cols, s.flows.iter().map(flow_row));
    out.push_str(
        "<p>Offered is what a CBR schedule asked for; a sender is never faster than its own core and \
         its socket's send buffer let it be, so it may send less (it blocks, as a blocking socket does). \
         The limit of each flow is the busiest core or userspace process its datagrams used.</p>\n",
    );
    let cols = [
        ("#", true),
        ("Workload", false),
        ("Limited by", false),
        ("Busy", true),
        ("Its busiest steps", false),
        ("CPU per datagram", true),
        ("Sender blocked", true),
        ("Peak send buffer", true),
        ("Peak receive buffer", true),
    ];
    let rows = s.flows.iter().map(|f| {
        let (place, busy, steps) = match &f.bottleneck {
            Some(b) => (
                b.place.clone(),
                format!("{:.1} %", b.utilisation * 100.0),
                b.top_steps
                    .iter()
                    .map(|(st, ns)| format!("{st} {}", fmt_ns(*ns)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        vec![
            f.id.to_string(),
            f.workload.clone(),
            place,
            busy,
            steps,
            if f.delivered > 0 { fmt_ns(f.cpu_ns_per_datagram.round() as u64) } else { "–".into() },
            if f.send_blocks > 0 { format!("{} times", fmt_count(f.send_blocks)) } else { "never".into() },
            format!("{} B", fmt_count(f.peak_send_buffer_bytes)),
            format!("{} B", fmt_count(f.peak_receive_buffer_bytes)),
        ]
    });
    out.push_str("<h3>What limits each flow</h3>\n");
    table(out, &cols, rows);
}

/// "Where the CPU goes": CPU served within the run by kernel step, per node and per flow.
fn cpu_breakdown(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"cpu-steps\">Where the CPU goes</h2>\n");
    let total = s.totals.cpu_ns;
    if total == 0 {
        out.push_str("<p>No CPU time was served.</p>\n");
        return;
    }
    let _ = writeln!(
        out,
        "<p>Every CPU nanosecond served within the run, split by the kernel step that spent it \
         ({} in all; the columns add up to it). Per flow, the same for the chains that carried its \
         datagrams, per delivered datagram.</p>",
        esc(&fmt_ns(total))
    );
    // Steps in the order of the most CPU overall.
    let mut steps: Vec<(&String, &u64)> = s.totals.cpu_by_step.iter().collect();
    steps.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut cols: Vec<(&str, bool)> = vec![("Step", false), ("All nodes", true), ("Share", true)];
    let names: Vec<String> = s.nodes.iter().map(|n| n.name.clone()).collect();
    cols.extend(names.iter().map(|n| (n.as_str(), true)));
    let rows = steps.iter().map(|(step, ns)| {
        let mut row =
            vec![step.to_string(), fmt_ns(**ns), format!("{:.1} %", **ns as f64 * 100.0 / total as f64)];
        row.extend(
            s.nodes.iter().map(|n| n.cpu_by_step.get(*step).map_or_else(|| "–".to_string(), |v| fmt_ns(*v))),
        );
        row
    });
    table(out, &cols, rows);
    let flow_names: Vec<String> = s.flows.iter().map(|f| format!("#{} {}", f.id, f.workload)).collect();
    let mut cols: Vec<(&str, bool)> = vec![("Step, per delivered datagram", false)];
    cols.extend(flow_names.iter().map(|n| (n.as_str(), true)));
    let rows = steps.iter().map(|(step, _)| {
        let mut row = vec![step.to_string()];
        row.extend(s.flows.iter().map(|f| match f.cpu_by_step.get(*step) {
            Some(&ns) if f.delivered > 0 => fmt_ns((ns as f64 / f.delivered as f64).round() as u64),
            _ => "–".to_string(),
        }));
        row
    });
    if !s.flows.is_empty() {
        table(out, &cols, rows);
    }
}

fn flow_row(f: &FlowSummary) -> Vec<String> {
    let route = format!("{}@{} → {}@{}", f.src_pod, f.src_node, f.dst_pod, f.dst_node);
    let placement = if f.same_node { "same node" } else { "cross node" };
    let lat = |stats: Option<&LatencyStats>, pick: fn(&LatencyStats) -> u64| match stats {
        Some(l) if l.count > 0 => fmt_ns(pick(l)),
        _ => "–".to_string(),
    };
    vec![
        f.id.to_string(),
        f.workload.clone(),
        route,
        placement.to_string(),
        f.offered.map_or_else(|| "–".to_string(), fmt_count),
        fmt_count(f.sent),
        fmt_count(f.delivered),
        fmt_count(f.dropped),
        lat(Some(&f.latency), |l| l.p50_ns),
        lat(Some(&f.latency), |l| l.p99_ns),
        lat(Some(&f.latency), |l| l.max_ns),
        lat(f.rtt.as_ref(), |l| l.p50_ns),
        lat(f.rtt.as_ref(), |l| l.p99_ns),
        fmt_bps(f.throughput_bps),
        format!("{:.2} %", f.overhead_ratio * 100.0),
    ]
}

/// "TCP": per stream of a bulk transfer, per request/response flow, and the TCP charts. Only
/// in runs with TCP workloads.
/// Which connections the policies allow, and what the plugin's engine installed and cost.
fn policy(out: &mut String, s: &Summary) {
    let Some(p) = s.policy.as_ref().filter(|p| p.policies > 0 || !p.changes.is_empty()) else { return };
    out.push_str("<h2 id=\"policy\">NetworkPolicy</h2>\n");
    if p.engine == "none" {
        let _ = writeln!(
            out,
            "<div class=\"conservation broken\"><strong>{} has no NetworkPolicy engine</strong>: the {} \
             policies are accepted by the API server and enforced by nothing; <span class=\"bad\">{} \
             connections they deny went through</span> (rows in red).</div>",
            esc(&s.scenario.cni),
            p.policies,
            p.denied_but_not_enforced
        );
    } else {
        let changing = if p.changes.is_empty() {
            String::new()
        } else {
            format!(" at the start and {} policy changes during the run (below),", p.changes.len())
        };
        let _ = writeln!(
            out,
            "<p>{} policies{changing} in {} namespaces, enforced by <code>{}</code>. A denied connection's \
             packets are dropped with <code>policy_denied</code>; <code>cnisim trace</code> shows the rule \
             walk and <code>cnisim describe</code> the installed rules.</p>",
            p.policies,
            p.namespaces,
            esc(&p.engine)
        );
    }
    let cols = [
        ("Workload", false),
        ("Source", false),
        ("Destination", false),
        ("Port", true),
        ("Policy verdict", false),
        ("Why", false),
    ];
    let unenforced = p.engine == "none";
    if !p.connections.is_empty() {
        out.push_str(
            "<p>The workloads' connections and what the policies in force at the start say of them.</p>\n",
        );
    }
    let _ = writeln!(out, "<table>{}<tbody>", head(&cols));
    for c in &p.connections {
        let verdict = match (c.allowed, unenforced) {
            (true, _) => "allowed",
            (false, true) => "denied, NOT enforced",
            (false, false) => "denied",
        };
        let row = [
            c.workload.clone(),
            c.src.clone(),
            c.dst.clone(),
            format!("{}/{}", c.port, c.protocol),
            verdict.to_string(),
            c.why.clone(),
        ];
        // Red: a connection the policies deny that went through.
        let class = if !c.allowed && unenforced { " class=\"drop\"" } else { "" };
        let _ = writeln!(out, "<tr{class}>{}</tr>", cells(&cols, &row));
    }
    out.push_str("</tbody></table>\n");
    if p.connections.is_empty() {
        // Nothing in force at the start: no verdicts to show.
        let n = out.rfind("<table>").expect("just written");
        out.truncate(n);
    }
    if p.engine != "none" {
        let cols = [
            ("Node", false),
            ("Rules", true),
            ("ipsets", true),
            ("NEW walks", true),
            ("Rules + lookups / walk", true),
            ("CPU / 1,000", true),
            ("Other walks", true),
            ("Rules / walk", true),
            ("Denied", true),
            ("Evaluated / denied", true),
        ];
        let rows = p.nodes.iter().map(|n| {
            vec![
                n.node.clone(),
                fmt_count(n.filter_rules as u64),
                format!("{} ({} members)", n.ipsets, fmt_count(n.ipset_members as u64)),
                fmt_count(n.new_walks),
                format!("{:.1} + {:.1}", n.rules_per_new_walk, n.ipset_lookups_per_new_walk),
                fmt_ns(n.cpu_ns_per_1000_new_walks),
                fmt_count(n.other_walks),
                format!("{:.1}", n.rules_per_other_walk),
                fmt_count(n.denied_packets),
                format!("{:.1}", n.evaluations_per_denied_packet),
            ]
        });
        out.push_str(
            "<p>The policy engine on each node: what it installed, and what its walks of packets in \
                      conntrack state NEW (a connection's first packet; every packet of a UDP flow nobody \
                      answers) and of the others cost.</p>\n",
        );
        table(out, &cols, rows);
    }
    policy_changes(out, p);
}

/// Each policy change and when each node enforced it.
/// Calico's BGP control plane: sessions and messages, each convergence period with what it cost
/// the workloads, and every BIRD's view (the figures of `summary.json` `bgp`).
fn bgp(out: &mut String, s: &Summary) {
    let Some(b) = s.bgp.as_ref() else { return };
    out.push_str("<h2 id=\"bgp\">BGP control plane</h2>\n");
    let reflectors =
        if b.reflectors.is_empty() { String::new() } else { format!(" ({})", esc(&b.reflectors.join(", "))) };
    let messages: Vec<String> =
        b.messages.iter().map(|(k, n)| format!("{} {}", fmt_count(*n), esc(k))).collect();
    let _ = writeln!(
        out,
        "<p>BIRD on every node, AS {}, {}{reflectors}: {} of {} sessions established at the end; {} \
         messages ({}, {} B) carried {} routes and {} withdrawals; BIRD's CPU {} in all, {} on the busiest \
         node. The data plane routes with what the speakers installed: a block without a route is dropped \
         until its route arrives.</p>",
        b.as_number,
        esc(&b.topology),
        fmt_count(b.sessions_established as u64),
        fmt_count(b.sessions as u64),
        fmt_count(b.messages.values().sum()),
        messages.join(", "),
        fmt_count(b.message_bytes),
        fmt_count(b.routes_announced),
        fmt_count(b.routes_withdrawn),
        fmt_ns(b.cpu_ns),
        fmt_ns(b.max_node_cpu_ns),
    );
    out.push_str(
        "<h3>Convergence</h3>\n<p>From the first BIRD's start until every live node has a route to every \
         block of every other live node, and again whenever live nodes lose routes to one another (\"routes \
         lost\": every reflector gone, a restart without graceful restart); after a node is taken away, until no live node routes through it \
         (the black hole: a powered-off node's peers wait for their hold timers); after a BIRD restart, \
         until its kernel routes are in sync again; after a node joins, until the routes to and from it are complete. Drops are the workload datagrams lost meanwhile: of \
         every flow for the start and for routes lost, of the flows to that node's pods for a change.</p>\n",
    );
    let cols = [("Cause", false), ("From", true), ("Until", true), ("Took", true), ("Datagrams lost", false)];
    let mut periods: Vec<&crate::summary::ConvergencePeriod> = b.convergence.iter().collect();
    periods.sort_by_key(|c| c.from_ns);
    let mut rows: Vec<Vec<String>> = periods
        .into_iter()
        .map(|c| {
            let lost: Vec<String> = c.drops.iter().map(|(r, n)| format!("{} {r}", fmt_count(*n))).collect();
            vec![
                c.cause.clone(),
                fmt_ns(c.from_ns),
                fmt_ns(c.to_ns),
                fmt_ns(c.duration_ns),
                if lost.is_empty() { "none".into() } else { lost.join(", ") },
            ]
        })
        .collect();
    rows.extend(b.unconverged.iter().map(|(cause, since)| {
        vec![cause.clone(), fmt_ns(*since), "not by the end".into(), "-".into(), "-".into()]
    }));
    table(out, &cols, rows.into_iter());
    let joins: Vec<(&String, &crate::summary::Reached)> =
        b.convergence.iter().filter_map(|c| c.reached.as_ref().map(|r| (&c.cause, r))).collect();
    if !joins.is_empty() {
        out.push_str(
            "<h3>Joins</h3>\n<p>How long after a node joined its pods became reachable from each other live \
             node: the first instant that node had a route to each of the new node's blocks. In a full mesh \
             the new node's own UPDATEs bring them; with reflectors, the reflectors pass them on.</p>\n",
        );
        let cols = [("Change", false), ("Nodes", true), ("First", true), ("Median", true), ("Last", true)];
        let rows = joins.into_iter().map(|(cause, r)| {
            vec![
                cause.clone(),
                fmt_count(r.peers as u64),
                fmt_ns(r.first_ns),
                fmt_ns(r.median_ns),
                fmt_ns(r.last_ns),
            ]
        });
        table(out, &cols, rows);
    }
    out.push_str(
        "<h3>Speakers</h3>\n<p>Each BIRD at the end (<code>cnisim describe</code> prints its <code>birdc show \
         protocols</code> and <code>show route</code>): sessions up, routes in its table (RIB) and in the \
         kernel (FIB), its messages and its CPU.</p>\n",
    );
    let cols = [
        ("Node", false),
        ("Role", false),
        ("Sessions up", true),
        ("RIB", true),
        ("FIB", true),
        ("Messages sent", true),
        ("Received", true),
        ("Kernel routes added", true),
        ("Removed", true),
        ("CPU", true),
        ("Memory", true),
    ];
    let rows = b.nodes.iter().map(|n| {
        vec![
            n.node.clone(),
            match (n.route_reflector, n.running) {
                (true, false) => "route reflector, off or stopped".into(),
                (false, false) => "speaker, off or stopped".into(),
                (true, true) => "route reflector".into(),
                (false, true) => "speaker".into(),
            },
            // A node that is off keeps the state it had; it has no session up.
            if n.running { format!("{}/{}", n.established, n.sessions) } else { format!("-/{}", n.sessions) },
            fmt_count(n.rib_routes as u64),
            fmt_count(n.fib_routes as u64),
            fmt_count(n.messages_sent),
            fmt_count(n.messages_received),
            fmt_count(n.kernel_routes_added),
            fmt_count(n.kernel_routes_removed),
            fmt_ns(n.cpu_ns),
            crate::memory::fmt_bytes(n.memory_bytes),
        ]
    });
    table(out, &cols, rows);
}

fn policy_changes(out: &mut String, p: &crate::summary::PolicySummary) {
    // No agent on any node (a plugin without a policy engine): nothing to show.
    if p.changes.iter().all(|c| c.nodes.is_empty()) {
        return;
    }
    out.push_str(
        "<h3>Policy changes</h3>\n<p>When each node's agent had written a created or deleted policy into the \
         kernel: the API server's watch event, the agent's earlier work, then its own (Felix: one \
         iptables-restore of the changed rules; weave-npc: one iptables or ipset command per rule or entry; \
         Cilium: the endpoints whose policy map changes regenerated). Until then the node enforces the old \
         policies; established connections are kept either way.</p>\n",
    );
    let cols = [
        ("Change", false),
        ("At", true),
        ("Everywhere after", true),
        ("Node", false),
        ("Enforced after", true),
        ("Agent CPU", true),
        ("Rules changed", true),
        ("Set entries", true),
        ("Commands", true),
        ("Endpoints", true),
    ];
    let mut rows = Vec::new();
    for ch in &p.changes {
        for (i, n) in ch.nodes.iter().enumerate() {
            let first = |v: String| if i == 0 { v } else { String::new() };
            rows.push(vec![
                first(ch.change.clone()),
                first(fmt_ns(ch.at_ns)),
                first(ch.enforced_everywhere_ns.map_or_else(|| "not by the end".to_string(), fmt_ns)),
                n.node.clone(),
                n.enforced_after_ns.map_or_else(|| "not by the end".to_string(), fmt_ns),
                fmt_ns(n.cpu_ns),
                fmt_count(n.rules_changed as u64),
                fmt_count(n.set_entries_changed as u64),
                fmt_count(n.commands as u64),
                fmt_count(n.endpoints as u64),
            ]);
        }
    }
    table(out, &cols, rows.into_iter());
}

fn tcp<'a>(out: &mut String, s: &Summary, charts: impl Iterator<Item = &'a Chart>) {
    let flows: Vec<&FlowSummary> = s.flows.iter().filter(|f| f.tcp.is_some()).collect();
    if flows.is_empty() {
        return;
    }
    out.push_str("<h2 id=\"tcp\">TCP</h2>\n");
    out.push_str(
        "<p>Segments are smoltcp's (CUBIC, Nagle, delayed ACKs as Linux's quickack and pingpong \
         modes, window scaling), through every device, rule and route of the data path. Goodput is \
         what the reading application got per second of the flow's time; a retransmission is a \
         data segment sent again; RTT is from a data segment's send to the ACK that covers it \
         (none from retransmitted data).</p>\n",
    );
    let cols = [
        ("#", true),
        ("Workload", false),
        ("Stream", true),
        ("Goodput", true),
        ("Read", true),
        ("Data segments", true),
        ("Retransmitted", true),
        ("RTT p50", true),
        ("RTT p99", true),
        ("Segments lost", false),
    ];
    let rows = flows.iter().filter(|f| f.rtt.is_none()).flat_map(|f| {
        let tcp = f.tcp.as_ref().expect("filtered");
        tcp.streams.iter().enumerate().map(move |(i, st)| {
            let lost = if st.drops_by_reason.is_empty() {
                "none".to_string()
            } else {
                st.drops_by_reason
                    .iter()
                    .map(|(r, n)| format!("{r} {}", fmt_count(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let retx = if st.data_segments[0] > 0 {
                format!(
                    "{} ({:.2} %)",
                    fmt_count(st.retransmits[0]),
                    st.retransmits[0] as f64 * 100.0 / st.data_segments[0] as f64
                )
            } else {
                "–".into()
            };
            let rtt = |ns: u64| if st.rtt.count > 0 { fmt_ns(ns) } else { "–".into() };
            vec![
                f.id.to_string(),
                f.workload.clone(),
                i.to_string(),
                fmt_bps(st.goodput_bps),
                format!("{} B", fmt_count(st.bytes_read)),
                fmt_count(st.data_segments[0]),
                retx,
                rtt(st.rtt.p50_ns),
                rtt(st.rtt.p99_ns),
                lost,
            ]
        })
    });
    out.push_str("<h3>Bulk transfers (iperf3-like), per stream</h3>\n");
    table(out, &cols, rows);
    let rr: Vec<&&FlowSummary> = flows.iter().filter(|f| f.rtt.is_some()).collect();
    if !rr.is_empty() {
        let cols = [
            ("#", true),
            ("Workload", false),
            ("Kind", false),
            ("Connections", true),
            ("Transactions", true),
            ("Per second", true),
            ("p50", true),
            ("p99", true),
            ("Max", true),
            ("Retransmitted", true),
        ];
        let rows = rr.iter().map(|f| {
            let tcp = f.tcp.as_ref().expect("filtered");
            let rtt = f.rtt.as_ref().expect("filtered");
            let secs = tcp.interval_ns as f64 * 100.0 / 1e9;
            let per_s = if secs > 0.0 {
                fmt_count((f.transactions as f64 / secs).round() as u64)
            } else {
                "–".into()
            };
            let retx: u64 = tcp.streams.iter().map(|s| s.retransmits[0] + s.retransmits[1]).sum();
            vec![
                f.id.to_string(),
                f.workload.clone(),
                if f.kind == "tcp_crr" {
                    "TCP_CRR (a connection per transaction)"
                } else {
                    "TCP_RR (one connection)"
                }
                .to_string(),
                match tcp.refused {
                    0 => fmt_count(tcp.connections),
                    n => format!("{} ({} refused)", fmt_count(tcp.connections), fmt_count(n)),
                },
                fmt_count(f.transactions),
                per_s,
                fmt_ns(rtt.p50_ns),
                fmt_ns(rtt.p99_ns),
                fmt_ns(rtt.max_ns),
                fmt_count(retx),
            ]
        });
        out.push_str("<h3>Request/response (netperf TCP_RR and TCP_CRR)</h3>\n");
        table(out, &cols, rows);
    }
    for c in charts {
        figure(out, c);
    }
}

fn figures<'a>(out: &mut String, charts: impl Iterator<Item = &'a Chart>) {
    out.push_str("<h2 id=\"charts\">Charts</h2>\n");
    for c in charts {
        figure(out, c);
    }
}

fn figure(out: &mut String, c: &Chart) {
    let (w, h) = super::charts::SIZE;
    let _ = writeln!(
        out,
        "<figure><img width=\"{w}\" height=\"{h}\" alt=\"{title}\" src=\"data:image/png;base64,{}\">\
         <figcaption>{title}. Data: <a href=\"{stem}.csv\">{stem}.csv</a>, image: \
         <a href=\"{stem}.png\">{stem}.png</a>.</figcaption></figure>",
        base64(&c.png),
        title = esc(&c.title),
        stem = c.stem,
    );
}

fn overhead<'a>(out: &mut String, s: &Summary, charts: impl Iterator<Item = &'a Chart>) {
    out.push_str("<h2 id=\"overhead\">Encapsulation overhead</h2>\n");
    if s.overhead.is_empty() {
        out.push_str(
            "<p class=\"muted\">Not measured: no two pods sit on different nodes, so no packet crosses \
             the underlay between pods and nothing is encapsulated.</p>\n",
        );
        return;
    }
    let _ = writeln!(out, "<p>{}</p>", esc(&overhead_sentence(&s.scenario.cni, &s.overhead)));
    out.push_str(
        "<p>Measured with one datagram per payload size from a pod to a pod on another node: its frame \
         on the sending pod's <code>eth0</code> against the frame that carried it on the sending node's \
         NIC. The percentage counts every byte on the NIC beyond the UDP payload (inner and outer \
         headers).</p>\n",
    );
    let cols = [
        ("Payload (B)", true),
        ("Frame on pod eth0 (B)", true),
        ("Frame on node NIC (B)", true),
        ("Overhead (B)", true),
        ("Overhead (% of payload)", true),
    ];
    let rows = s.overhead.iter().map(|p| {
        let reached = p.underlay_frame > 0;
        let on_nic = |text: String| if reached { text } else { "–".to_string() };
        vec![
            fmt_count(u64::from(p.payload)),
            fmt_count(p.pod_frame as u64),
            on_nic(fmt_count(p.underlay_frame as u64)),
            on_nic(crate::fmt::signed(p.overhead_bytes)),
            on_nic(format!("{:.1} %", p.overhead_pct)),
        ]
    });
    table(out, &cols, rows);
    for c in charts {
        figure(out, c);
    }
}

/// What the CNI adds per packet, in words derived from the measured bytes only.
fn overhead_sentence(cni: &str, points: &[OverheadPoint]) -> String {
    let reached: Vec<&OverheadPoint> = points.iter().filter(|p| p.underlay_frame > 0).collect();
    let (Some(first), Some(last)) = (reached.first(), reached.last()) else {
        return format!(
            "With {cni}, the probe datagram never reached the sending node's NIC, so the overhead \
             could not be measured."
        );
    };
    let mut text = if reached.iter().all(|p| p.overhead_bytes == first.overhead_bytes) {
        match (first.overhead_bytes, headers(first.overhead_bytes)) {
            (0, _) => format!(
                "{cni} adds no bytes per packet on the underlay: the frame on the node NIC is the frame \
                 the pod sent (no encapsulation)."
            ),
            (n, Some(what)) => {
                format!("{cni} adds {} B per packet on the underlay ({what}).", crate::fmt::signed(n))
            }
            (n, None) => format!("{cni} adds {} B per packet on the underlay.", crate::fmt::signed(n)),
        }
    } else {
        let mut groups: Vec<(i64, Vec<u32>)> = Vec::new();
        for p in &reached {
            match groups.last_mut() {
                Some((n, payloads)) if *n == p.overhead_bytes => payloads.push(p.payload),
                _ => groups.push((p.overhead_bytes, vec![p.payload])),
            }
        }
        let parts: Vec<String> = groups
            .iter()
            .map(|(n, payloads)| match payloads.as_slice() {
                [one] => format!("{} B at {} B payload", crate::fmt::signed(*n), fmt_count(u64::from(*one))),
                [lo, .., hi] => format!(
                    "{} B at {}–{} B payloads",
                    crate::fmt::signed(*n),
                    fmt_count(u64::from(*lo)),
                    fmt_count(u64::from(*hi))
                ),
                [] => unreachable!("a group holds at least one payload"),
            })
            .collect();
        format!(
            "{cni} adds a different number of bytes per packet on the underlay by payload size: {}.",
            parts.join(", ")
        )
    };
    let share = |p: &OverheadPoint| {
        let beyond = (p.underlay_frame as u64).saturating_sub(u64::from(p.payload));
        format!(
            "a {} B payload travels in a {} B frame, {} B ({:.1} % of the payload) beyond it",
            fmt_count(u64::from(p.payload)),
            fmt_count(p.underlay_frame as u64),
            fmt_count(beyond),
            p.overhead_pct
        )
    };
    if reached.len() > 1 {
        let _ = write!(text, " On the node NIC, {}; {}.", share(first), share(last));
    } else {
        let _ = write!(text, " On the node NIC, {}.", share(first));
    }
    let lost: Vec<String> =
        points.iter().filter(|p| p.underlay_frame == 0).map(|p| fmt_count(u64::from(p.payload))).collect();
    if !lost.is_empty() {
        let _ = write!(text, " The datagram with {} B payload never reached the node NIC.", lost.join(", "));
    }
    text
}

/// The headers that make up `bytes` of per-packet encapsulation, for the sizes real CNIs add.
fn headers(bytes: i64) -> Option<&'static str> {
    match bytes {
        20 => Some("an outer IPv4 header: IP-in-IP"),
        28 => Some("outer IPv4 and UDP headers around the pod's IP packet"),
        50 => Some("outer Ethernet, IPv4, UDP and VXLAN or Geneve headers: 14 + 20 + 8 + 8 B"),
        62 => Some("outer Ethernet, IPv4 and UDP headers and a Weave sleeve header: 14 + 20 + 8 + 20 B"),
        _ => None,
    }
}

fn services(out: &mut String, s: &Summary) {
    let Some(v) = &s.services else { return };
    out.push_str("<h2 id=\"services\">Services</h2>\n");
    let _ = writeln!(
        out,
        "<p>{} Services ({} ports, {} ready endpoints) implemented by <strong>{}</strong> on every node. \
         A connection's first datagram walks the proxy's rules and creates a conntrack entry with \
         the translation; every later datagram of the connection, both ways, is rewritten from that \
         entry. Connections between pods walk the rules too, and miss.</p>",
        fmt_count(v.services as u64),
        fmt_count(v.service_ports as u64),
        fmt_count(v.endpoints as u64),
        esc(&v.proxy)
    );
    let mean = |x: f64| crate::fmt::decimal(x, 1);
    let rows = [
        ("Rules installed (largest node)", fmt_count(v.rules_installed as u64)),
        (
            "Kernel memory of the rules",
            format!("{} KiB", fmt_count((v.rules_memory_bytes as u64).div_ceil(1024))),
        ),
        ("New connections (all nodes)", fmt_count(v.new_connections)),
        (
            "Rules evaluated per new connection, mean / worst",
            format!("{} / {}", mean(v.rules_evaluated_mean), fmt_count(u64::from(v.rules_evaluated_worst))),
        ),
        (
            "... of connections to a Service, mean / worst",
            format!(
                "{} / {}",
                mean(v.service_rules_evaluated_mean),
                fmt_count(u64::from(v.service_rules_evaluated_worst))
            ),
        ),
        ("Hash lookups per new connection, mean", mean(v.lookups_mean)),
        (
            "Translated / rejected (no endpoint) / conntrack full",
            format!(
                "{} / {} / {}",
                fmt_count(v.translated),
                fmt_count(v.rejected),
                fmt_count(v.conntrack_full)
            ),
        ),
        ("CPU per 1,000 new connections", fmt_ns(v.cpu_ns_per_1000_new_connections.round() as u64)),
        ("CPU per new connection to a Service", fmt_ns(v.cpu_ns_per_service_connection.round() as u64)),
        (
            "Established packets / CPU each",
            format!(
                "{} / {}",
                fmt_count(v.established_packets),
                fmt_ns(v.cpu_ns_per_established_packet.round() as u64)
            ),
        ),
        (
            "First datagram of a connection: p50 / p99",
            format!("{} / {}", fmt_ns(v.first_packet_latency.p50_ns), fmt_ns(v.first_packet_latency.p99_ns)),
        ),
        (
            "Later datagrams: p50 / p99",
            format!("{} / {}", fmt_ns(v.established_latency.p50_ns), fmt_ns(v.established_latency.p99_ns)),
        ),
        ("Most conntrack entries on a node", fmt_count(v.conntrack_peak_entries as u64)),
    ];
    out.push_str("<table class=\"kv\"><tbody>\n");
    for (k, val) in rows {
        let _ = writeln!(out, "<tr><th>{}</th><td class=\"num\">{}</td></tr>", esc(k), esc(&val));
    }
    out.push_str("</tbody></table>\n");
    if !v.endpoint_share.is_empty() {
        out.push_str("<h3>Load balancing: new connections per endpoint</h3>\n");
        let rows = v.endpoint_share.iter().flat_map(|(svc, pods)| {
            let total: u64 = pods.values().sum();
            pods.iter().map(move |(pod, n)| {
                vec![
                    svc.clone(),
                    pod.clone(),
                    fmt_count(*n),
                    format!("{:.1} %", *n as f64 * 100.0 / total.max(1) as f64),
                ]
            })
        });
        table(
            out,
            &[("Service", false), ("Endpoint pod", false), ("Connections", true), ("Share", true)],
            rows,
        );
    }
    if !v.syncs.is_empty() {
        out.push_str(
            "<h3>Sync: from a change to rules in place</h3>\n<p>After a pod is deleted, each node's proxy \
             rewrites its rules; until it has, new connections can still be sent to the deleted pod.</p>\n",
        );
        let rows = v.syncs.iter().map(|y| {
            vec![y.node.clone(), fmt_ns(y.changed_at_ns), fmt_ns(y.in_place_at_ns), fmt_ns(y.sync_ns)]
        });
        table(
            out,
            &[("Node", false), ("Change at", true), ("Rules in place at", true), ("Took", true)],
            rows,
        );
    }
}

fn masquerade(out: &mut String, s: &Summary) {
    let Some(m) = &s.masquerade else { return };
    out.push_str("<h2 id=\"masquerade\">Masquerade (source NAT)</h2>\n");
    out.push_str(
        "<p>Connections masqueraded to a node's address at POSTROUTING. The kernel keeps the client's \
         own source port when the rule has no <code>--random-fully</code> and the port is free, and \
         otherwise tries up to 248 ports from random offsets. A connection enters the conntrack table \
         only when its first packet has passed POSTROUTING: a port chosen while the connection \
         holding it was not yet confirmed on another core, or when every port tried was in use, \
         fails the confirmation, and the packet is dropped (<code>conntrack -S</code>: \
         insert_failed; a TCP client retransmits its SYN a second later).</p>\n",
    );
    let lost =
        |n: u64| if n > 0 { format!("<span class=\"bad\">{}</span>", fmt_count(n)) } else { fmt_count(n) };
    let _ = writeln!(
        out,
        "<table class=\"kv\"><tbody>\n<tr><th>Connections masqueraded</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>Kept their own source port</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>Tuples tried per connection, mean</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>Lost at confirmation (insert_failed)</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>&nbsp;&nbsp;racing an unconfirmed connection</th><td class=\"num\">{}</td></tr>\n\
         <tr><th>&nbsp;&nbsp;no free port among those tried</th><td class=\"num\">{}</td></tr>\n</tbody></table>",
        fmt_count(m.connections),
        fmt_count(m.source_port_kept),
        crate::fmt::decimal(m.tuples_tried_mean, 1),
        lost(m.insert_failed),
        fmt_count(m.insert_failed_race),
        fmt_count(m.insert_failed_no_port),
    );
    let rows = m.nodes.iter().map(|n| {
        vec![
            n.node.clone(),
            fmt_count(n.connections),
            fmt_count(n.insert_failed),
            fmt_count(n.conntrack_peak_entries as u64),
        ]
    });
    table(
        out,
        &[("Node", false), ("Masqueraded", true), ("insert_failed", true), ("Conntrack entries, peak", true)],
        rows,
    );
}

fn drops(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"drops\">Drops by reason</h2>\n");
    let rows = drop_rows(s);
    if rows.is_empty() {
        out.push_str(
            "<p class=\"ok\">No drops: every datagram and ARP frame sent was delivered or is still in flight.</p>\n",
        );
        return;
    }
    let share = |scope: &str, n: u64| match (scope, s.totals.sent) {
        ("data", sent) if sent > 0 => format!("{:.2} % of sent", n as f64 * 100.0 / sent as f64),
        _ => String::new(),
    };
    let cols = [("Scope", false), ("Reason", false), ("Count", true), ("Share", true)];
    let table_rows = rows.iter().map(|(scope, reason, n)| {
        let scope_name = if *scope == "data" { "data datagrams" } else { "ARP frames" };
        vec![scope_name.to_string(), reason.to_string(), fmt_count(*n), share(scope, *n)]
    });
    table(out, &cols, table_rows);
    if !s.totals.kernel_queue_drops.is_empty() {
        out.push_str(
            "<h3>Kernel queues</h3>\n<p>Drops in bounded queues, and where a Linux node shows them.</p>\n",
        );
        let rows = s
            .totals
            .kernel_queue_drops
            .iter()
            .map(|d| vec![d.reason.clone(), d.counter.clone(), fmt_count(d.count)]);
        table(out, &[("Reason", false), ("Linux counter", false), ("Count", true)], rows);
    }
    let per_flow: Vec<Vec<String>> = s
        .flows
        .iter()
        .flat_map(|f| {
            f.drops_by_reason
                .iter()
                .map(move |(r, n)| vec![f.id.to_string(), f.workload.clone(), r.clone(), fmt_count(*n)])
        })
        .collect();
    if !per_flow.is_empty() {
        out.push_str("<h3>Data drops by flow</h3>\n");
        table(
            out,
            &[("Flow", true), ("Workload", false), ("Reason", false), ("Count", true)],
            per_flow.into_iter(),
        );
    }
}

fn nodes(out: &mut String, s: &Summary) {
    let nodes = &s.nodes;
    out.push_str("<h2 id=\"cpu\">CPU per node</h2>\n");
    let per_datagram = if s.totals.delivered > 0 {
        fmt_ns(s.totals.cpu_ns_per_datagram.round() as u64)
    } else {
        "– (no datagram was delivered)".to_string()
    };
    let _ = writeln!(
        out,
        "<p>CPU per delivered datagram, all nodes, kernel + userspace: <strong>{}</strong>.</p>",
        esc(&per_datagram)
    );
    out.push_str(
        "<p>Busy share of each simulated kernel core over the run, the CPU time of userspace data-plane \
         processes, and the CPU (kernel and userspace) per packet the node processed.</p>\n",
    );
    if nodes.iter().any(|n| n.userspace_busy_ns > 0) {
        let _ = writeln!(
            out,
            "<p>{} moves packets through a userspace process: each packet costs it a wake-up, two system \
             calls and two copies between kernel and userspace, and the process works through its packets \
             one at a time from a single queue.</p>",
            esc(&s.scenario.cni)
        );
    }
    let cols = [
        ("Node", false),
        ("IP", false),
        ("Pod subnet", false),
        ("Pods", true),
        ("Packets processed", true),
        ("CPU per packet", true),
        ("Busy per core", false),
        ("Kernel busy", true),
        ("Userspace", true),
    ];
    let rows = nodes.iter().map(|n| {
        let cores: Vec<String> = n.cpu_utilisation.iter().map(|u| format!("{:.1} %", u * 100.0)).collect();
        vec![
            n.name.clone(),
            n.ip.clone(),
            n.pod_subnet.clone(),
            fmt_count(n.pods as u64),
            fmt_count(n.packets_processed),
            fmt_ns(n.cpu_ns_per_packet.round() as u64),
            cores.join(" · "),
            fmt_ns(n.cpu_busy_ns.iter().sum()),
            if n.userspace_busy_ns > 0 { fmt_ns(n.userspace_busy_ns) } else { "–".to_string() },
        ]
    });
    table(out, &cols, rows);
}

fn paths(out: &mut String, s: &Summary) {
    out.push_str("<h2 id=\"paths\">Packet paths</h2>\n");
    if s.paths.is_empty() {
        out.push_str("<p class=\"muted\">No packet was traced.</p>\n");
        return;
    }
    out.push_str("<p>Every device the first packet of each flow passed through, in order.</p>\n");
    for trace in &s.paths {
        path(out, s, trace);
    }
}

fn path(out: &mut String, s: &Summary, trace: &PathTrace) {
    let name = s.flows.iter().find(|f| f.id == trace.flow).map(super::flow_label);
    let name = name.unwrap_or_else(|| format!("flow {}", trace.flow));
    let _ = writeln!(out, "<h3>Flow {}: {}</h3>", esc(&name), esc(&trace.description));
    let start = trace.hops.first().map_or(0, |h| h.time_ns);
    let cols = [
        ("Simulated time", true),
        ("Since first hop", true),
        ("Place", false),
        ("Device", false),
        ("Action", false),
        ("Why", false),
        ("Size (B)", true),
    ];
    let rows = trace.hops.iter().map(|h| hop_row(h, start));
    let _ = writeln!(out, "<table>{}<tbody>", head(&cols));
    for (hop, row) in trace.hops.iter().zip(rows) {
        let class = if hop.action.contains("drop") { " class=\"drop\"" } else { "" };
        let _ = writeln!(out, "<tr{class}>{}</tr>", cells(&cols, &row));
    }
    out.push_str("</tbody></table>\n");
}

fn hop_row(h: &Hop, start: u64) -> Vec<String> {
    vec![
        crate::fmt::instant_ns(h.time_ns),
        format!("+{}", fmt_ns(h.time_ns.saturating_sub(start))),
        h.place.clone(),
        h.device.clone(),
        h.action.clone(),
        h.why.clone(),
        fmt_count(h.size as u64),
    ]
}

/// No wall-clock value: two runs of one scenario and seed give the same page.
fn footer(out: &mut String, s: &Summary) {
    let _ = writeln!(
        out,
        "<footer>summary schema version {} · cnisim {} · wall-clock time of this run in summary.json \
         (<code>run</code>)</footer>",
        s.schema_version,
        esc(&s.run.cnisim_version),
    );
}

/// A table with a header row; columns flagged `true` are numeric (right-aligned).
pub(super) fn table(out: &mut String, cols: &[(&str, bool)], rows: impl Iterator<Item = Vec<String>>) {
    let _ = writeln!(out, "<table>{}<tbody>", head(cols));
    for row in rows {
        let _ = writeln!(out, "<tr>{}</tr>", cells(cols, &row));
    }
    out.push_str("</tbody></table>\n");
}

fn head(cols: &[(&str, bool)]) -> String {
    let ths: String =
        cols.iter().map(|(name, num)| format!("<th{}>{}</th>", num_class(*num), esc(name))).collect();
    format!("<thead><tr>{ths}</tr></thead>")
}

fn cells(cols: &[(&str, bool)], row: &[String]) -> String {
    row.iter()
        .zip(cols)
        .map(|(cell, (_, num))| format!("<td{}>{}</td>", num_class(*num), esc(cell)))
        .collect()
}

fn num_class(num: bool) -> &'static str {
    if num {
        " class=\"num\""
    } else {
        ""
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
