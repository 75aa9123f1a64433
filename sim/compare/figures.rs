//! One run's [`Figures`], from its [`Summary`], and the scenario's [`ScenarioFacts`].
//!
//! Everything is the summary's own figure, or a sum or quotient of its figures; the one thing
//! taken from the run's observations directly is a workload's latency over all of its flows
//! (their histograms added), which the summary keeps per flow only.

use std::collections::BTreeMap;

use super::{
    Figures, NodeFigures, OverheadFigure, PathFigure, ScenarioFacts, ServiceFigures, WorkloadFacts,
    WorkloadFigures,
};
use crate::cluster::{Client, Cluster, Fabric, Target, WorkloadKind};
use crate::run::Simulation;
use crate::summary::{kind_name, workload_params, LatencyStats, Summary};

/// What every combination shares, from the scenario as written.
pub(super) fn facts(c: &Cluster) -> ScenarioFacts {
    let u = &c.underlay;
    let underlay = match &u.fabric {
        Fabric::L2Switch => format!(
            "one L2 switch, {} ports, {} propagation per cable, MTU {}, {} queues, loss {}",
            u.bandwidth, u.propagation, u.mtu, u.queue, u.loss
        ),
        Fabric::LeafSpine { racks, spines, uplink, .. } => format!(
            "leaf-spine: {} racks (one ToR router each), {spines} spines, {uplink} ToR-spine cables, ECMP by \
             flow hash; {} rack ports, {} propagation per cable, MTU {}, {} queues, loss {}",
            racks.len(),
            u.bandwidth,
            u.propagation,
            u.mtu,
            u.queue,
            u.loss
        ),
    };
    let pod_pairs = c.workloads.iter().flat_map(|w| w.flows.iter()).filter_map(|&(a, t)| match (a, t) {
        (Client::Pod(a), Target::Pod(b)) => Some((c.pods[a].node, c.pods[b].node)),
        _ => None,
    });
    let pairs: Vec<(usize, usize)> = pod_pairs.collect();
    // Without a flow between pods (e.g. only clients of Services), the first client pod's node.
    let first_client = || {
        c.workloads.iter().flat_map(|w| w.flows.iter()).find_map(|&(a, _)| match a {
            Client::Pod(a) => Some(c.pods[a].node),
            Client::External(_) => None,
        })
    };
    let (sender, receiver) = match pairs.iter().find(|(a, b)| a != b).or(pairs.first()) {
        Some(&(a, b)) => (Some(a), (a != b).then_some(b)),
        None => (first_client(), None),
    };
    ScenarioFacts {
        name: c.name.clone(),
        description: c.description.clone(),
        seed: c.seed,
        duration_ns: c.duration.as_nanos(),
        nodes: c.nodes.len(),
        pods: c.pods.len(),
        services: c.services.services.len(),
        underlay,
        workloads: c
            .workloads
            .iter()
            .map(|w| WorkloadFacts {
                name: w.name.clone(),
                kind: kind_name(&w.kind).into(),
                params: workload_params(&w.kind),
                flows: w.flows.len(),
            })
            .collect(),
        sender_node: sender.map(|n| c.nodes[n].name.clone()),
        receiver_node: receiver.map(|n| c.nodes[n].name.clone()),
    }
}

/// `a / b`, `None` when `b` is 0.
fn per(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The figures of one finished run.
pub(super) fn figures(sim: &Simulation, s: &Summary, facts: &ScenarioFacts) -> Figures {
    let c = &sim.world.cluster;
    let t = &s.totals;
    let cpu_ns = t.cpu_ns;
    let payload_bits: u64 = s.flows.iter().map(|f| f.payload_bytes * 8).sum();
    let node = |name: &Option<String>| -> Option<NodeFigures> {
        let n = s.nodes.iter().find(|n| Some(&n.name) == name.as_ref())?;
        let bits: u64 = s
            .flows
            .iter()
            .filter(|f| f.src_node == n.name || f.dst_node == n.name)
            .map(|f| f.payload_bytes * 8)
            .sum();
        // What the node served within the run, as `totals.cpu_ns` counts it.
        let busy = n.cpu_by_step.values().sum::<u64>();
        Some(NodeFigures {
            name: n.name.clone(),
            cpu_ns: busy,
            packets: n.packets_processed,
            cpu_ns_per_packet: n.cpu_ns_per_packet,
            payload_bits: bits,
            cores_per_gbps: per(busy as f64, bits as f64),
        })
    };
    let sender = node(&facts.sender_node);
    let receiver = node(&facts.receiver_node);
    let ends_cores_per_gbps = match (&sender, &receiver) {
        (Some(a), Some(b)) => a.cores_per_gbps.zip(b.cores_per_gbps).map(|(x, y)| x + y),
        (Some(a), None) => a.cores_per_gbps,
        _ => None,
    };
    let workloads = c.workloads.iter().enumerate().map(|(wi, w)| workload(sim, s, wi, w)).collect();
    let overhead: Vec<OverheadFigure> = s
        .overhead
        .iter()
        .map(|p| {
            let encap = if p.underlay_frame > 0 { p.overhead_bytes } else { 0 };
            OverheadFigure {
                payload: p.payload,
                pod_frame: p.pod_frame,
                underlay_frame: p.underlay_frame,
                encap_bytes: encap,
                encap_pct: if p.pod_frame > 0 { encap as f64 * 100.0 / p.pod_frame as f64 } else { 0.0 },
            }
        })
        .collect();
    let services = s.services.as_ref().map(|v| ServiceFigures {
        proxy: v.proxy.clone(),
        rules_installed: v.rules_installed,
        rules_memory_bytes: v.rules_memory_bytes,
        new_connections: v.new_connections,
        translated: v.translated,
        rules_evaluated_mean: v.service_rules_evaluated_mean,
        cpu_ns_per_service_connection: (v.translated > 0).then_some(v.cpu_ns_per_service_connection),
        first_packet_p50_ns: (v.first_packet_latency.count > 0).then_some(v.first_packet_latency.p50_ns),
        established_p50_ns: (v.established_latency.count > 0).then_some(v.established_latency.p50_ns),
        sync_ns_max: v.sync_ns_max,
    });
    // The first traced flow of each workload.
    let paths = c
        .workloads
        .iter()
        .filter_map(|w| {
            let p = s.paths.iter().find(|p| s.flows.get(p.flow).is_some_and(|f| f.workload == w.name))?;
            Some(PathFigure {
                workload: w.name.clone(),
                flow: p.flow,
                description: p.description.clone(),
                hops: p.hops.clone(),
            })
        })
        .collect();
    Figures {
        pod_mtu: c.pods.iter().map(|p| p.mtu).min().unwrap_or(0),
        sent: t.sent,
        delivered: t.delivered,
        dropped: t.dropped,
        in_flight: t.in_flight,
        drops_by_reason: t.drops_by_reason.clone(),
        arp_drops_by_reason: t.arp_drops_by_reason.clone(),
        warnings: s.scenario.warnings.clone(),
        cpu_ns,
        cpu_by_step: t.cpu_by_step.clone(),
        cpu_ns_per_datagram_by_step: match t.delivered {
            0 => BTreeMap::new(),
            d => t.cpu_by_step.iter().map(|(k, &ns)| (k.clone(), ns as f64 / d as f64)).collect(),
        },
        userspace_cpu_ns: s.nodes.iter().map(|n| n.userspace_busy_ns).sum(),
        cpu_ns_per_datagram: (t.delivered > 0).then_some(t.cpu_ns_per_datagram),
        payload_bits,
        gbps_per_core: per(payload_bits as f64, cpu_ns as f64),
        workloads,
        sender,
        receiver,
        ends_cores_per_gbps,
        encap_overhead_bytes: overhead.iter().rfind(|p| p.underlay_frame > 0).map(|p| p.encap_bytes),
        overhead,
        services,
        masquerade: s
            .masquerade
            .as_ref()
            .map(|m| super::MasqueradeFigures { connections: m.connections, insert_failed: m.insert_failed }),
        paths,
        events: t.events,
        packet_hops: t.packet_hops,
    }
}

/// A workload's figures: counters summed over its flows, latency over all their datagrams.
fn workload(sim: &Simulation, s: &Summary, wi: usize, w: &crate::cluster::Workload) -> WorkloadFigures {
    let flows: Vec<usize> = (0..sim.flows.len()).filter(|&i| sim.flows[i].workload == wi).collect();
    let merged = |pick: fn(&crate::observe::FlowObs) -> &hdrhistogram::Histogram<u64>| {
        let mut it = flows.iter().map(|&i| pick(&sim.obs.flows[i]));
        let mut h = it.next()?.clone();
        for other in it {
            // Every flow histogram has the same bounds, so adding cannot fail.
            h.add(other).ok()?;
        }
        Some(LatencyStats::from_histogram(&h))
    };
    let sum = |f: fn(&crate::summary::FlowSummary) -> u64| flows.iter().map(|&i| f(&s.flows[i])).sum::<u64>();
    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    let mut cpu_by_step: BTreeMap<String, u64> = BTreeMap::new();
    for &i in &flows {
        for (r, n) in &s.flows[i].drops_by_reason {
            *drops.entry(r.clone()).or_default() += n;
        }
        for (step, ns) in &s.flows[i].cpu_by_step {
            *cpu_by_step.entry(step.clone()).or_default() += ns;
        }
    }
    let cpu_ns = sum(|f| f.cpu_ns);
    let (sent, delivered, dropped) = (sum(|f| f.sent), sum(|f| f.delivered), sum(|f| f.dropped));
    let rr = matches!(
        w.kind,
        WorkloadKind::UdpRr { .. } | WorkloadKind::TcpRr { .. } | WorkloadKind::TcpCrr { .. }
    );
    let transactions = sum(|f| f.transactions);
    WorkloadFigures {
        name: w.name.clone(),
        kind: kind_name(&w.kind).into(),
        sent,
        delivered,
        dropped,
        in_flight: sent.saturating_sub(delivered + dropped),
        drops_by_reason: drops,
        delivered_pct: per(delivered as f64 * 100.0, sent as f64),
        throughput_bps: flows.iter().map(|&i| s.flows[i].throughput_bps).sum(),
        latency: merged(|o| &o.latency).unwrap_or_default(),
        rtt: if rr { Some(merged(|o| &o.rtt).unwrap_or_default()) } else { None },
        transactions,
        timeouts: sum(|f| f.timeouts),
        transactions_per_s: if rr { per(transactions as f64, w.duration.as_secs_f64()) } else { None },
        cpu_ns,
        cpu_by_step,
        cpu_ns_per_datagram: per(cpu_ns as f64, delivered as f64),
    }
}
