//! `cnisim trace`: send one datagram from a pod to a pod and record every hop it takes, with
//! the ARP exchanges it triggers.

use std::fmt::Write;

use crate::cluster::{Client, Cluster, Target, Workload, WorkloadKind};
use crate::error::Error;
use crate::net::packet::Hop;
use crate::run::Simulation;
use crate::time::{Duration, Instant};
use crate::units::Bandwidth;

/// Which packet a hop belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopOf {
    Data,
    /// The answer to a request (Service traces).
    Reply,
    Arp,
}

pub struct Trace {
    pub header: String,
    /// Every hop, in time order (data and ARP interleaved).
    pub hops: Vec<(HopOf, Hop)>,
    /// "delivered after 23.4us" or "dropped: no_route".
    pub outcome: String,
    pub delivered: bool,
}

/// Runs `cluster` with no workload but one `payload`-byte UDP datagram from `from` to `to`
/// at `at` (t = 0 unless given), for up to 10 simulated seconds more (long enough for ARP to
/// give up). Until `at` the cluster runs as the scenario has it: its changes up to then happen
/// and its control plane (BGP) runs, so a datagram traced during a black hole meets the routes
/// the speakers left. A Service target gets one request/response exchange, and the answer's
/// path is traced too (its reverse translation).
pub fn trace(cluster: &Cluster, from: Client, to: Target, payload: u32) -> Result<Trace, Error> {
    trace_at(cluster, from, to, payload, Duration::ZERO, TRACE_PORT)
}

/// The destination port of a traced datagram to a pod or an outside host, unless told.
pub const TRACE_PORT: u16 = 5201;

/// [`trace`] of a datagram sent at `at` to destination `port` (a pod's or an outside host's;
/// a Service target has its own).
pub fn trace_at(
    cluster: &Cluster,
    from: Client,
    to: Target,
    payload: u32,
    at: Duration,
    port: u16,
) -> Result<Trace, Error> {
    let mut c = cluster.clone();
    c.duration = at + Duration::from_secs(10);
    c.changes.retain(|ch| ch.at <= Instant::ZERO + at);
    let start = Instant::ZERO + at;
    let to_pod = matches!(to, Target::Pod(_));
    c.workloads = vec![Workload {
        name: "trace".into(),
        kind: if to_pod {
            // One datagram: the next would leave after payload * 8 seconds.
            WorkloadKind::UdpCbr { rate: Bandwidth(1), payload }
        } else {
            WorkloadKind::UdpRr {
                request: payload,
                response: payload,
                think: Duration::ZERO,
                timeout: Duration::from_secs(9),
            }
        },
        flows: vec![(from, to)],
        port,
        start,
        duration: Duration::from_nanos(1),
        dont_fragment: false,
        new_connection_per_request: false,
    }];
    let mut sim = Simulation::new(&c);
    sim.world.trace_control = true;
    sim.run()?;
    let f = &sim.obs.flows[0];
    let first_delivered = f.trace_delivered;
    let (delivered, outcome) = if first_delivered && (to_pod || f.transactions == 1) {
        let what = if to_pod {
            format!("delivered after {} one-way", Duration::from_nanos(f.latency.min()))
        } else {
            format!("answered after {} round trip", Duration::from_nanos(f.rtt.max()))
        };
        (true, what)
    } else if let Some((r, _)) = f.drops.iter().next() {
        (false, format!("dropped: {}", r.name()))
    } else {
        (false, "still in flight after 10s".into())
    };
    let mut hops: Vec<(HopOf, Hop)> =
        f.trace.clone().unwrap_or_default().into_iter().map(|h| (HopOf::Data, h)).collect();
    hops.extend(f.reply_trace.clone().unwrap_or_default().into_iter().map(|h| (HopOf::Reply, h)));
    // The control frames the datagram caused (its ARP), not those before it was sent.
    let from_ns = start.as_nanos();
    hops.extend(
        sim.world.control_hops.iter().filter(|h| h.time_ns >= from_ns).cloned().map(|h| (HopOf::Arp, h)),
    );
    // The last hop of a delivered datagram is the application's `recvmsg` returning: the time
    // the result line gives (what `run` measures as latency), so both read one clock.
    hops.sort_by_key(|(_, h)| h.time_ns); // stable: keeps each packet's own order
    let (src_name, src_ip, src_node) = match from {
        Client::Pod(p) => {
            let p = &c.pods[p];
            (p.name.clone(), p.ip, c.nodes[p.node].name.clone())
        }
        Client::External(e) => (format!("ext/{}", c.externals[e].name), c.externals[e].ip, "outside".into()),
    };
    let target = match to {
        Target::External(e) => format!("ext/{} {} (outside)", c.externals[e].name, c.externals[e].ip),
        Target::Pod(q) => {
            let q = &c.pods[q];
            format!("{} {} ({})", q.name, q.ip, c.nodes[q.node].name)
        }
        Target::Service { service, port } => {
            let s = &c.services.services[service];
            let addr =
                s.cluster_ip.map_or("headless".to_string(), |ip| format!("{ip}:{}", s.ports[port].port));
            format!("service {}/{} {addr}", s.namespace, s.name)
        }
        Target::NodePort { service, port, node } => {
            let s = &c.services.services[service];
            let np = s.ports[port].node_port.unwrap_or(0);
            format!(
                "service {}/{} NodePort {}:{np} ({})",
                s.namespace, s.name, c.nodes[node].ip, c.nodes[node].name
            )
        }
        Target::AnyService { count, .. } => format!("any of {count} services"),
    };
    let when = if at == Duration::ZERO { String::new() } else { format!(" at {at}") };
    let header = format!(
        "trace: {src_name} {src_ip} ({src_node}) -> {target}, UDP {payload} B payload{when}, CNI {}, proxy {}",
        c.cni, c.proxy
    );
    Ok(Trace { header, hops, outcome, delivered })
}

impl Trace {
    /// A table: time, packet, place, device, action, size, why.
    pub fn render(&self) -> String {
        let mut s = format!("{}\n", self.header);
        let _ = writeln!(
            s,
            "{:>12}  {:<4}  {:<22} {:<14} {:<8} {:>5}  why",
            "time", "pkt", "place", "device", "action", "size"
        );
        for (of, h) in &self.hops {
            let pkt = match of {
                HopOf::Data => "udp",
                HopOf::Reply => "rep",
                HopOf::Arp => "arp",
            };
            let t = format!("{:.3}us", h.time_ns as f64 / 1e3);
            let _ = writeln!(
                s,
                "{t:>12}  {pkt:<4}  {:<22} {:<14} {:<8} {:>5}  {}",
                h.place, h.device, h.action, h.size, h.why
            );
        }
        let _ = writeln!(s, "result: {}", self.outcome);
        s
    }
}

/// Payload sizes the overhead probe sends.
pub const PROBE_PAYLOADS: [u32; 7] = [64, 128, 256, 512, 1024, 1200, 1400];

/// Measures encapsulation overhead from the bytes: for each payload size that fits the client
/// pod's MTU, one traced datagram between two pods on different nodes (the first cross-node
/// flow's, else the first such pair), all in one run, 1 ms apart; the frame leaving the client
/// pod against the frame on its node's NIC. Empty when no two pods sit on different nodes.
pub fn overhead_probe(cluster: &Cluster) -> Result<Vec<crate::summary::OverheadPoint>, Error> {
    let pods = &cluster.pods;
    let from_flows = cluster
        .workloads
        .iter()
        .flat_map(|w| w.flows.iter().copied())
        .filter_map(|(a, t)| match (a, t) {
            (crate::cluster::Client::Pod(a), Target::Pod(b)) => Some((a, b)),
            _ => None,
        })
        .find(|&(a, b)| pods[a].node != pods[b].node);
    let any_pair = || {
        let a = pods.first()?;
        let b = pods.iter().position(|p| p.node != a.node)?;
        Some((0, b))
    };
    let Some((from, to)) = from_flows.or_else(any_pair) else { return Ok(Vec::new()) };
    let sizes: Vec<u32> = PROBE_PAYLOADS.into_iter().filter(|p| p + 28 <= pods[from].mtu).collect();
    let c = probe_cluster(cluster, from, to, &sizes);
    let mut sim = Simulation::new(&c);
    sim.run()?;
    // In the probe's cluster the client is pod 0, on node 0.
    let (client, node) = (format!("pod/{}", c.pods[0].name), &c.nodes[0].name);
    let points = sizes
        .iter()
        .enumerate()
        // A datagram that never left the node (no route to the peer) shows no overhead.
        .filter_map(|(i, &payload)| {
            let hops = sim.obs.flows[i].trace.as_deref().unwrap_or_default();
            let pod_frame =
                hops.iter().find(|h| h.place == client && h.action == "sendmsg").map_or(0, |h| h.size);
            let underlay_frame = hops
                .iter()
                .find(|h| &h.place == node && h.device == "eth0" && h.action == "xmit")
                .map(|h| h.size)?;
            let overhead_pct = (underlay_frame as f64 - payload as f64) / payload as f64 * 100.0;
            Some(crate::summary::OverheadPoint {
                payload,
                pod_frame,
                underlay_frame,
                overhead_bytes: underlay_frame as i64 - pod_frame as i64,
                overhead_pct,
            })
        })
        .collect();
    Ok(points)
}

/// The cluster the overhead probe runs in: the two pods' nodes and those two pods alone, with
/// one workload per payload size from the first to the second. What a packet between two pods
/// carries on the wire is the CNI's encapsulation and depends on nothing else of the cluster:
/// no Services, NetworkPolicies, changes or BGP (the probe runs on converged routes, as without
/// `bgp:`), so at 5,000 nodes its build is two nodes' instead of a second build of them all.
fn probe_cluster(
    cluster: &Cluster,
    from: crate::cluster::PodId,
    to: crate::cluster::PodId,
    sizes: &[u32],
) -> Cluster {
    let (a, b) = (cluster.pods[from].node, cluster.pods[to].node);
    let pod = |p: crate::cluster::PodId, node| crate::cluster::PodSpec { node, ..cluster.pods[p].clone() };
    // Every field named, so that a new one has to say whether the probe needs it.
    let mut c = Cluster {
        name: cluster.name.clone(),
        description: String::new(),
        seed: cluster.seed,
        duration: Duration::from_secs(10),
        cni: cluster.cni,
        cni_options: cluster.cni_options.clone(),
        network: cluster.network.clone(),
        nodes: vec![cluster.nodes[a].clone(), cluster.nodes[b].clone()],
        pods: vec![pod(from, 0), pod(to, 1)],
        underlay: cluster.underlay.clone(),
        workloads: Vec::new(),
        costs: cluster.costs.clone(),
        proxy: cluster.proxy,
        services: crate::cluster::ServiceTable {
            services: Vec::new(),
            cluster_cidr: cluster.services.cluster_cidr,
        },
        generated: (0, 0),
        changes: Vec::new(),
        bgp: None,
        conntrack_max: cluster.conntrack_max,
        masquerade_random_fully: cluster.masquerade_random_fully,
        nat_port_rovers: cluster.nat_port_rovers,
        sweep: None,
        compare: None,
        externals: cluster.externals.clone(),
        policy: Default::default(),
        policy_catalog: Vec::new(),
        label_changes: Vec::new(),
    };
    c.workloads = sizes
        .iter()
        .enumerate()
        .map(|(i, &payload)| Workload {
            name: format!("probe-{payload}"),
            // One datagram: the next would leave after payload * 8 seconds.
            kind: WorkloadKind::UdpCbr { rate: Bandwidth(1), payload },
            flows: vec![(Client::Pod(0), Target::Pod(1))],
            port: 5201 + i as u16,
            start: Instant::ZERO + Duration::from_millis(i as u64),
            duration: Duration::from_nanos(1),
            dont_fragment: false,
            new_connection_per_request: false,
        })
        .collect();
    c
}
