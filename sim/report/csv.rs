//! CSV files: the exact data behind each chart, plus `flows.csv` with every scalar flow field.
//!
//! RFC 4180 quoting (a field holding a comma, quote or line break is quoted, quotes doubled),
//! `\n` line ends, one header line. Durations are integer ns, utilisation a 0..1 fraction.

use crate::summary::{FlowSummary, LatencyStats, Summary};

/// `flow,quantile,latency_ns`: every CDF point of every flow.
pub(super) fn latency_cdf(summary: &Summary) -> String {
    let mut out = header(&["flow", "quantile", "latency_ns"]);
    for flow in &summary.flows {
        for (q, ns) in &flow.latency.cdf {
            row(&mut out, &[flow.id.to_string(), q.to_string(), ns.to_string()]);
        }
    }
    out
}

/// `flow,label,p50_ns,p99_ns,max_ns`: one row per flow with latency samples (as charted).
pub(super) fn latency_percentiles(summary: &Summary) -> String {
    let mut out = header(&["flow", "label", "p50_ns", "p99_ns", "max_ns"]);
    for flow in summary.flows.iter().filter(|f| f.latency.count > 0) {
        let l = &flow.latency;
        let times = [l.p50_ns, l.p99_ns, l.max_ns].map(|ns| ns.to_string());
        row(&mut out, &[[flow.id.to_string(), super::flow_label(flow)].as_slice(), &times].concat());
    }
    out
}

/// `node,core,utilisation,busy_ns`: one row per core.
pub(super) fn cpu(summary: &Summary) -> String {
    let mut out = header(&["node", "core", "utilisation", "busy_ns"]);
    for node in &summary.nodes {
        for (core, util) in node.cpu_utilisation.iter().enumerate() {
            let busy = node.cpu_busy_ns.get(core).map(u64::to_string).unwrap_or_default();
            row(&mut out, &[node.name.clone(), core.to_string(), util.to_string(), busy]);
        }
    }
    out
}

/// `scope,reason,count`: scope is `data` (workload datagrams) or `arp` (control frames).
pub(super) fn drops(summary: &Summary) -> String {
    let mut out = header(&["scope", "reason", "count"]);
    for (scope, reason, count) in super::drop_rows(summary) {
        row(&mut out, &[scope.to_string(), reason.to_string(), count.to_string()]);
    }
    out
}

/// `payload,pod_frame,underlay_frame,overhead_bytes,overhead_pct`: one row per probed payload
/// size, in bytes (`underlay_frame` 0: the datagram never reached the node NIC). Only the
/// header when the cluster has no cross-node pod pair.
pub(super) fn overhead(summary: &Summary) -> String {
    let mut out = header(&["payload", "pod_frame", "underlay_frame", "overhead_bytes", "overhead_pct"]);
    for p in &summary.overhead {
        let sizes = [p.payload.to_string(), p.pod_frame.to_string(), p.underlay_frame.to_string()];
        row(
            &mut out,
            &[sizes.as_slice(), &[p.overhead_bytes.to_string(), p.overhead_pct.to_string()]].concat(),
        );
    }
    out
}

/// `flow,stream,t_ns,<column>`: every point of one time series of every TCP stream (`t_ns` from
/// the flow's start, the end of the point's interval), as `tcp_goodput` (`goodput_bps`) or
/// `tcp_in_flight` (`in_flight_bytes`) charts it.
pub(super) fn tcp_series(
    summary: &Summary,
    column: &str,
    pick: fn(&crate::summary::StreamSummary) -> Vec<f64>,
) -> String {
    let mut out = header(&["flow", "stream", "t_ns", column]);
    for flow in &summary.flows {
        let Some(tcp) = &flow.tcp else { continue };
        for (i, st) in tcp.streams.iter().enumerate() {
            for (k, v) in pick(st).into_iter().enumerate() {
                let t = (k as u64 + 1) * tcp.interval_ns;
                row(&mut out, &[flow.id.to_string(), i.to_string(), t.to_string(), v.to_string()]);
            }
        }
    }
    out
}

/// `flow,quantile,transaction_ns`: every CDF point of every TCP request/response flow's
/// transaction times.
pub(super) fn tcp_transactions(summary: &Summary) -> String {
    let mut out = header(&["flow", "quantile", "transaction_ns"]);
    for flow in summary.flows.iter().filter(|f| f.tcp.is_some()) {
        for (q, ns) in flow.rtt.iter().flat_map(|r| &r.cdf) {
            row(&mut out, &[flow.id.to_string(), q.to_string(), ns.to_string()]);
        }
    }
    out
}

/// One row per flow with every scalar field of `FlowSummary`; `rtt_*` are empty without RTT.
pub(super) fn flows(summary: &Summary) -> String {
    let mut names: Vec<String> = [
        "id",
        "workload",
        "kind",
        "src_pod",
        "dst_pod",
        "src_node",
        "dst_node",
        "same_node",
        "src_ip",
        "dst_ip",
        "src_port",
        "dst_port",
        "sent",
        "delivered",
        "dropped",
        "drops_by_reason",
    ]
    .map(String::from)
    .to_vec();
    names.extend(stats_names("latency"));
    names.extend(stats_names("rtt"));
    let tail = [
        "transactions",
        "timeouts",
        "payload_bytes",
        "wire_bytes",
        "throughput_bps",
        "overhead_ratio",
        "encap_overhead_bytes",
    ];
    names.extend(tail.map(String::from));
    let mut out = String::new();
    row(&mut out, &names);
    for flow in &summary.flows {
        row(&mut out, &flow_fields(flow));
    }
    out
}

fn flow_fields(f: &FlowSummary) -> Vec<String> {
    let drops: Vec<String> = f.drops_by_reason.iter().map(|(r, n)| format!("{r}={n}")).collect();
    let mut v = vec![
        f.id.to_string(),
        f.workload.clone(),
        f.kind.clone(),
        f.src_pod.clone(),
        f.dst_pod.clone(),
        f.src_node.clone(),
        f.dst_node.clone(),
        f.same_node.to_string(),
        f.src_ip.clone(),
        f.dst_ip.clone(),
        f.src_port.to_string(),
        f.dst_port.to_string(),
        f.sent.to_string(),
        f.delivered.to_string(),
        f.dropped.to_string(),
        drops.join(";"),
    ];
    v.extend(stats_fields(Some(&f.latency)));
    v.extend(stats_fields(f.rtt.as_ref()));
    v.extend([f.transactions, f.timeouts, f.payload_bytes, f.wire_bytes].map(|n| n.to_string()));
    v.extend([f.throughput_bps, f.overhead_ratio].map(|x| x.to_string()));
    v.push(f.encap_overhead_bytes.map(|b| b.to_string()).unwrap_or_default());
    v
}

const STATS: [&str; 8] = ["count", "min_ns", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"];

fn stats_names(prefix: &str) -> Vec<String> {
    STATS.iter().map(|s| format!("{prefix}_{s}")).collect()
}

fn stats_fields(stats: Option<&LatencyStats>) -> Vec<String> {
    let Some(s) = stats else {
        return vec![String::new(); STATS.len()];
    };
    [s.count, s.min_ns, s.mean_ns, s.p50_ns, s.p90_ns, s.p99_ns, s.p999_ns, s.max_ns]
        .map(|n| n.to_string())
        .to_vec()
}

pub(super) fn header(names: &[&str]) -> String {
    let mut out = String::new();
    row(&mut out, &names.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    out
}

pub(super) fn row(out: &mut String, fields: &[String]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(field));
    }
    out.push('\n');
}

/// Quotes a field if it holds a comma, quote or line break (RFC 4180).
fn quote(field: &str) -> std::borrow::Cow<'_, str> {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field.into()
    }
}
