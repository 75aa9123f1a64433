//! `summary.json`: the versioned, documented result of one run.
//!
//! Everything here is computed from the run's observations (`observe`); nothing is typed in.
//! Only [`Summary::run`] holds wall-clock values, so two runs of the same scenario and seed
//! serialise to identical bytes apart from that key. Maps are `BTreeMap` so key order is fixed.
//! The schema is documented field by field in `docs/summary-schema.md`; bump
//! [`SCHEMA_VERSION`] on any incompatible change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::net::packet::Hop;

mod bgp;
mod masquerade;
mod policy;
pub use bgp::{BgpNode, BgpSummary, ConvergencePeriod, Reached};
pub use masquerade::{MasqueradeNode, MasqueradeSummary};
pub use policy::{PolicyChange, PolicyChangeNode, PolicyConnection, PolicyNode, PolicySummary};

/// Version of the summary.json schema.
pub const SCHEMA_VERSION: u32 = 4;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub schema_version: u32,
    pub scenario: ScenarioInfo,
    pub totals: Totals,
    pub flows: Vec<FlowSummary>,
    pub nodes: Vec<NodeSummary>,
    /// Hop-by-hop path of the first packet of each flow.
    pub paths: Vec<PathTrace>,
    /// Encapsulation overhead measured by sending one datagram of each payload size between
    /// two pods on different nodes and comparing its frame on the sender pod's `eth0` with
    /// its frame on the sender node's NIC. Empty when the cluster has one node.
    pub overhead: Vec<OverheadPoint>,
    /// How Services were implemented and what it cost. `None` when the scenario has no
    /// Services.
    pub services: Option<ServicesSummary>,
    /// NetworkPolicy: the engine, its per-node cost, every connection's verdict. Left out
    /// when the scenario has no policies and the CNI has no policy engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySummary>,
    /// Calico's BGP control plane, when the scenario simulates it (`bgp:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpSummary>,
    /// Source NAT at POSTROUTING and `insert_failed`; left out when nothing was masqueraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<MasqueradeSummary>,
    /// Wall-clock facts about this run (the only non-deterministic part).
    pub run: RunInfo,
}

/// The proxy's work, summed over nodes unless said otherwise.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServicesSummary {
    /// Proxy mode identifier ("iptables", "ipvs", "nftables", "ebpf" ...).
    pub proxy: String,
    pub services: usize,
    pub service_ports: usize,
    /// Ready endpoints over all Services, at the start.
    pub endpoints: usize,
    /// Rules (iptables/nftables rules, IPVS virtual+real servers+ipset entries+iptables
    /// rules, BPF map entries) installed on the node with the most, at the end of the run.
    pub rules_installed: usize,
    /// Kernel memory of that rule set, bytes (from the kernel's struct sizes).
    pub rules_memory_bytes: usize,
    /// Connections that reached the proxy's rules (conntrack misses, or connect() with socket
    /// LB), on every node. Connections to pods walk the rules too (and miss every Service).
    pub new_connections: u64,
    /// Rules evaluated per new connection: mean and the most for one.
    pub rules_evaluated_mean: f64,
    pub rules_evaluated_worst: u32,
    /// The same for the new connections that were translated to a Service endpoint.
    pub service_rules_evaluated_mean: f64,
    pub service_rules_evaluated_worst: u32,
    /// Hash lookups per new connection to a Service, mean.
    pub service_lookups_mean: f64,
    /// CPU of a translated new connection (rules, lookups, conntrack, NAT set-up), ns, mean.
    pub cpu_ns_per_service_connection: f64,
    /// Hash-table lookups per new connection, mean.
    pub lookups_mean: f64,
    /// New connections translated to an endpoint, rejected (no endpoint), and refused because
    /// the conntrack table was full; conntrack entries evicted to make room (`early_drop`).
    pub translated: u64,
    pub rejected: u64,
    pub conntrack_full: u64,
    pub conntrack_early_drops: u64,
    /// Established connections Cilium sent to a new backend because theirs had left the
    /// backend map (`lb4_local`).
    pub backends_reselected: u64,
    /// CPU spent on new connections' rules, lookups and conntrack set-up per 1,000 of them, ns.
    pub cpu_ns_per_1000_new_connections: f64,
    /// Packets that hit an existing conntrack entry, and the CPU per such packet, ns.
    pub established_packets: u64,
    pub cpu_ns_per_established_packet: f64,
    /// One-way latency of datagrams to Services that opened a connection, and of later ones.
    pub first_packet_latency: LatencyStats,
    pub established_latency: LatencyStats,
    /// Most conntrack entries any node held at once.
    pub conntrack_peak_entries: usize,
    /// New connections per endpoint pod, per Service ("web": {"web-1": 10, ...}); generated
    /// Services are left out.
    pub endpoint_share: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every node's sync after each change: when the change happened and when the node's
    /// rules were in place.
    pub syncs: Vec<SyncSummary>,
    /// The longest and the mean time from a change to rules in place on a node, ns (`None`
    /// without changes).
    pub sync_ns_max: Option<u64>,
    pub sync_ns_mean: Option<f64>,
    /// CPU time the proxies spent syncing, ns.
    pub sync_cpu_ns: u64,
    /// CPU time of the userspace proxy processes (userspace mode; 0 otherwise), ns: every
    /// datagram both ways passes through them.
    pub userspace_proxy_cpu_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SyncSummary {
    pub node: String,
    pub changed_at_ns: u64,
    pub in_place_at_ns: u64,
    pub sync_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScenarioInfo {
    pub name: String,
    pub description: String,
    pub cni: String,
    /// The proxy mode Services were implemented with.
    pub proxy: String,
    pub seed: u64,
    pub duration_ns: u64,
    pub nodes: usize,
    pub pods: usize,
    pub node_cidr: String,
    pub pod_cidr: String,
    pub service_cidr: String,
    /// e.g. "one L2 switch, 10Gbit ports, 5us propagation, MTU 1500, 512KiB queues, loss 0".
    pub underlay: String,
    pub workloads: Vec<WorkloadInfo>,
    /// What failed while the CNI set the nodes up, as its agent would log it (e.g. flanneld
    /// unable to add a host-gw route across racks). Empty when everything was installed.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkloadInfo {
    pub name: String,
    /// "udp_cbr" or "udp_rr".
    pub kind: String,
    /// Human-readable parameters, e.g. "100Mbit, 1400B payload".
    pub params: String,
    pub flows: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Data packets (workload datagrams) sent, delivered, dropped and still in flight at the
    /// end. Invariant (checked before a summary exists): sent = delivered + dropped + in_flight.
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub in_flight: u64,
    /// Data-packet drops by reason (reason strings are `observe::DropReason` names).
    pub drops_by_reason: BTreeMap<String, u64>,
    /// Control frames (ARP) sent and dropped, by reason.
    pub arp_frames: u64,
    pub arp_drops_by_reason: BTreeMap<String, u64>,
    /// ICMP "fragmentation needed" errors the kernels and routers sent, and those the fabric
    /// filtered (`underlay.filter_icmp`).
    pub icmp_frag_needed: u64,
    pub icmp_frag_needed_filtered: u64,
    /// ICMP "port unreachable" errors sent for new connections to Services without endpoints
    /// (kube-proxy's REJECT, IPVS, Cilium's no-backend response).
    pub icmp_port_unreachable: u64,
    /// Events the engine processed.
    pub events: u64,
    /// Device steps taken by packets (veth, bridge, routing, NIC, link, switch ...).
    pub packet_hops: u64,
    /// Simulated time at which the run ended, ns.
    pub end_ns: u64,
    /// CPU time every node served by the end of the run (kernel cores and userspace data-plane
    /// processes; work still queued at the end is left out) per datagram delivered, ns: the
    /// per-packet cost of the CNI's data path.
    pub cpu_ns_per_datagram: f64,
    /// CPU time served within the run on every node's cores and userspace data planes.
    pub cpu_ns: u64,
    /// `cpu_ns` by kernel step (only steps that took time); adds up to `cpu_ns`.
    pub cpu_by_step: BTreeMap<String, u64>,
    /// Drops in the kernel's bounded queues, with the counter a Linux node shows them in.
    pub kernel_queue_drops: Vec<KernelQueueDrops>,
}

/// Drops of one kernel queue, as a Linux node would count them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KernelQueueDrops {
    /// The drop reason key (`backlog_full`, `rx_ring_full`, ...).
    pub reason: String,
    /// Where Linux shows it (`/proc/net/softnet_stat`, `ethtool -S`, ...).
    pub counter: String,
    pub count: u64,
}

/// The busiest place a flow's datagrams were processed: what limits it under load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bottleneck {
    /// "node-1 core 3", or "flanneld on node-1" for a userspace data plane.
    pub place: String,
    /// Busy share of that core or process over the run.
    pub utilisation: f64,
    /// Its busiest kernel steps, most first (ns served within the run), at most three.
    pub top_steps: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlowSummary {
    pub id: usize,
    pub workload: String,
    pub kind: String,
    pub src_pod: String,
    pub dst_pod: String,
    pub src_node: String,
    pub dst_node: String,
    pub same_node: bool,
    pub src_ip: String,
    pub dst_ip: String,
    pub src_port: u16,
    pub dst_port: u16,
    /// Datagrams in both directions (requests and responses for request/response flows).
    /// Datagrams the workload asked to send in its active time (a CBR schedule's slots);
    /// `None` for streams (as many as the socket allows) and request/response.
    pub offered: Option<u64>,
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub drops_by_reason: BTreeMap<String, u64>,
    /// One-way latency of delivered datagrams (send call to socket delivery).
    pub latency: LatencyStats,
    /// Round-trip time of completed request/response exchanges (request/response flows only).
    pub rtt: Option<LatencyStats>,
    /// Request/response exchanges completed and timed out.
    pub transactions: u64,
    pub timeouts: u64,
    /// UDP payload bytes delivered.
    pub payload_bytes: u64,
    /// Bytes of the Ethernet frames that carried them, as received on the pod's `eth0`.
    pub wire_bytes: u64,
    /// Payload bits delivered per second of the workload's active time.
    pub throughput_bps: f64,
    /// (wire_bytes - payload_bytes) / payload_bytes.
    pub overhead_ratio: f64,
    /// Bytes the CNI adds on the underlay to this flow's packets: the traced first datagram's
    /// frame on the client node's NIC minus its frame on the client pod's `eth0`. `None` for
    /// same-node flows and untraced or undelivered ones.
    pub encap_overhead_bytes: Option<i64>,
    /// Times the sender blocked on a full send buffer (`SO_SNDBUF`).
    pub send_blocks: u64,
    /// Largest send and receive buffer occupancy of the flow's sockets, bytes of truesize.
    pub peak_send_buffer_bytes: u64,
    pub peak_receive_buffer_bytes: u64,
    /// CPU served within the run on the chains and processes that carried this flow's
    /// datagrams (both directions).
    pub cpu_ns: u64,
    /// `cpu_ns` by kernel step (only steps that took time).
    pub cpu_by_step: BTreeMap<String, u64>,
    /// `cpu_ns` per delivered datagram.
    pub cpu_ns_per_datagram: f64,
    /// The busiest core or process the flow used.
    pub bottleneck: Option<Bottleneck>,
    /// A TCP workload's connections (absent for UDP flows). For TCP flows `sent`, `delivered`
    /// and `latency` are empty (they count datagrams), `payload_bytes` is the bytes the
    /// applications read, and `rtt` (TCP_RR, TCP_CRR) is the transaction time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSummary>,
}

/// What a TCP flow's connections did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TcpSummary {
    /// Connections opened (one per stream, or one per transaction for TCP_CRR).
    pub connections: u64,
    /// Of them, refused before they were established (`ECONNREFUSED`: a RST answering the SYN,
    /// or an ICMP port unreachable from a Service without endpoints).
    pub refused: u64,
    /// Length of one interval of the time series, ns (the flow's active time in 100).
    pub interval_ns: u64,
    /// One per stream of a bulk transfer; request/response flows have one for all their
    /// connections.
    pub streams: Vec<StreamSummary>,
}

/// One TCP stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StreamSummary {
    /// Bytes the applications wrote, and read at the other end (both directions).
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Bits read within the flow's active time per second of it: the stream's goodput (what
    /// is read after it, queues draining, is in `bytes_read` only).
    pub goodput_bps: f64,
    /// Segments the client and the server sent (`[client, server]`), those with data, and
    /// retransmissions (sequence space sent before).
    pub segments: [u64; 2],
    pub data_segments: [u64; 2],
    pub retransmits: [u64; 2],
    pub retransmitted_bytes: u64,
    /// Round-trip times of the client's data segments, send to covering ACK (Karn's rule).
    pub rtt: LatencyStats,
    /// Segments lost on the way, by reason.
    pub drops_by_reason: BTreeMap<String, u64>,
    /// Per interval: goodput in bit/s, and the most client bytes in flight (sent, not yet
    /// acknowledged: what the congestion and receive windows let out).
    pub goodput_bps_series: Vec<f64>,
    pub in_flight_bytes_series: Vec<u32>,
}

/// Latency distribution, in nanoseconds. All zero when `count` is 0.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyStats {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// (quantile, latency ns) points of the distribution, for CDF charts.
    pub cdf: Vec<(f64, u64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeSummary {
    pub name: String,
    pub ip: String,
    pub pod_subnet: String,
    pub pods: usize,
    /// Busy fraction of each core over the run, 0..1.
    pub cpu_utilisation: Vec<f64>,
    /// Simulated CPU time spent per core, ns.
    pub cpu_busy_ns: Vec<u64>,
    /// CPU time of userspace data-plane processes on the node (flanneld udp, weave sleeve), ns.
    pub userspace_busy_ns: u64,
    /// Packets (frames) this node's kernel processed.
    pub packets_processed: u64,
    /// Mean CPU cost (kernel and userspace) per processed packet, ns.
    pub cpu_ns_per_packet: f64,
    /// Core and userspace CPU by kernel step (only steps that took time).
    pub cpu_by_step: BTreeMap<String, u64>,
    /// The node's kernel queue bounds (sysctls, txqueuelen, RX ring).
    pub kernel: crate::cluster::KernelQueues,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OverheadPoint {
    /// UDP payload, bytes.
    pub payload: u32,
    /// The datagram's Ethernet frame on the sending pod's `eth0`.
    pub pod_frame: usize,
    /// The frame that carried it on the sending node's NIC (0 if it never got there).
    pub underlay_frame: usize,
    /// underlay_frame - pod_frame.
    pub overhead_bytes: i64,
    /// Bytes on the underlay beyond the payload, as a percentage of the payload:
    /// (underlay_frame - payload) / payload * 100.
    pub overhead_pct: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PathTrace {
    pub flow: usize,
    pub description: String,
    pub hops: Vec<Hop>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub cnisim_version: String,
    pub wall_seconds: f64,
    pub events_per_second: f64,
}

// ---- building a summary from a finished run ----

use crate::cluster::WorkloadKind;
use crate::cost::{Step, StepTimes};
use crate::run::Simulation;
use crate::time::Duration;
use hdrhistogram::Histogram;

/// Quantiles sampled for the CDF in [`LatencyStats::cdf`].
const CDF_QUANTILES: [f64; 17] =
    [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0];

impl LatencyStats {
    pub fn from_histogram(h: &Histogram<u64>) -> LatencyStats {
        if h.is_empty() {
            return LatencyStats::default();
        }
        LatencyStats {
            count: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean().round() as u64,
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            cdf: CDF_QUANTILES.iter().map(|&q| (q, h.value_at_quantile(q))).collect(),
        }
    }
}

fn reasons(map: &BTreeMap<crate::observe::DropReason, u64>) -> BTreeMap<String, u64> {
    map.iter().map(|(r, n)| (r.name().to_string(), *n)).collect()
}

impl Summary {
    /// Summarises a finished (and conservation-checked) run.
    pub fn from_run(sim: &Simulation, overhead: Vec<OverheadPoint>, run: RunInfo) -> Summary {
        let c = &sim.world.cluster;
        let u = &c.underlay;
        let scenario = ScenarioInfo {
            name: c.name.clone(),
            description: c.description.clone(),
            cni: c.cni.id().to_string(),
            proxy: c.proxy.id().to_string(),
            seed: c.seed,
            duration_ns: c.duration.as_nanos(),
            nodes: c.nodes.len(),
            pods: c.pods.len(),
            node_cidr: c.network.node_cidr.to_string(),
            pod_cidr: c.network.pod_cidr.to_string(),
            service_cidr: c.network.service_cidr.to_string(),
            underlay: match &u.fabric {
                crate::cluster::Fabric::L2Switch => format!(
                    "one L2 switch, {} ports, {} propagation per cable, MTU {}, {} queues, loss {}",
                    u.bandwidth, u.propagation, u.mtu, u.queue, u.loss
                ),
                crate::cluster::Fabric::LeafSpine { racks, spines, uplink, uplink_mtu, .. } => format!(
                    "leaf-spine: {} racks (one ToR router each), {spines} spines, {uplink} ToR-spine cables (MTU {uplink_mtu}), \
                     ECMP by flow hash; {} rack ports, {} propagation per cable, MTU {}, {} queues, loss {}",
                    racks.len(),
                    u.bandwidth,
                    u.propagation,
                    u.mtu,
                    u.queue,
                    u.loss
                ),
            },
            warnings: {
                let mut w = sim.world.warnings.clone();
                if sim.world.warnings_more > 0 {
                    w.push(format!("... and {} more of the same kind", sim.world.warnings_more));
                }
                w
            },
            workloads: c
                .workloads
                .iter()
                .map(|w| WorkloadInfo {
                    name: w.name.clone(),
                    kind: kind_name(&w.kind).into(),
                    params: workload_params(&w.kind),
                    flows: w.flows.len(),
                })
                .collect(),
        };
        let flows: Vec<FlowSummary> =
            sim.flows.iter().enumerate().map(|(i, f)| flow_summary(sim, i, f)).collect();
        let services = services_summary(sim);
        let mut drops_by_reason = BTreeMap::new();
        for f in &sim.obs.flows {
            for (r, n) in &f.drops {
                *drops_by_reason.entry(r.name().to_string()).or_insert(0) += n;
            }
        }
        let sent = sim.obs.flows.iter().map(|f| f.sent).sum();
        let delivered = sim.obs.flows.iter().map(|f| f.delivered).sum();
        let totals = Totals {
            sent,
            delivered,
            dropped: sim.obs.dropped_total(),
            in_flight: sim.in_flight(),
            drops_by_reason,
            arp_frames: sim.world.arp_frames,
            icmp_frag_needed: sim.world.icmp_sent,
            icmp_frag_needed_filtered: sim.world.icmp_filtered,
            icmp_port_unreachable: sim.world.icmp_port_unreachable,
            arp_drops_by_reason: reasons(&sim.obs.arp_drops),
            events: sim.queue.processed(),
            packet_hops: sim.obs.packet_hops,
            end_ns: sim.end.as_nanos(),
            // Only the work of processed datagrams: the chains that carried them and were served.
            cpu_ns_per_datagram: {
                let cpu: u64 = flows.iter().map(|f| f.cpu_ns).sum();
                if delivered == 0 {
                    0.0
                } else {
                    cpu as f64 / delivered as f64
                }
            },
            cpu_ns: (0..sim.world.nodes.len())
                .map(|i| node_steps(sim, i).iter().map(|d| d.as_nanos()).sum::<u64>())
                .sum(),
            cpu_by_step: {
                let mut all = [Duration::ZERO; Step::COUNT];
                for i in 0..sim.world.nodes.len() {
                    for (a, d) in all.iter_mut().zip(node_steps(sim, i)) {
                        *a += d;
                    }
                }
                step_map(&all)
            },
            kernel_queue_drops: kernel_queue_drops(sim),
        };
        let end = sim.end.as_nanos().max(1);
        let nodes = c
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let node = &sim.world.nodes[i];
                let busy: Vec<u64> = node.cores.iter().map(|k| k.busy.as_nanos()).collect();
                let user = user_busy(sim, i);
                let total: u64 = busy.iter().sum::<u64>() + user;
                NodeSummary {
                    name: n.name.clone(),
                    ip: n.ip.to_string(),
                    pod_subnet: n.pod_subnet.to_string(),
                    pods: c.pods.iter().filter(|p| p.node == i).count(),
                    cpu_utilisation: busy.iter().map(|&b| b.min(end) as f64 / end as f64).collect(),
                    cpu_busy_ns: busy,
                    userspace_busy_ns: user,
                    packets_processed: node.packets,
                    cpu_ns_per_packet: if node.packets == 0 {
                        0.0
                    } else {
                        total as f64 / node.packets as f64
                    },
                    cpu_by_step: step_map(&node_steps(sim, i)),
                    kernel: node.kernel,
                }
            })
            .collect();
        let paths = sim
            .obs
            .flows
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let hops = f.trace.clone()?;
                Some(PathTrace { flow: i, description: flows[i].describe(), hops })
            })
            .collect();
        Summary {
            schema_version: SCHEMA_VERSION,
            scenario,
            totals,
            flows,
            nodes,
            paths,
            overhead,
            services,
            policy: policy::policy_summary(sim),
            bgp: bgp::bgp_summary(sim),
            masquerade: masquerade::masquerade_summary(sim),
            run,
        }
    }

    /// summary.json text: pretty-printed, keys in a fixed order.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Summary always serialises") + "\n"
    }
}

impl FlowSummary {
    /// "web-0 (node-1) -> db-0 (node-2)".
    pub fn describe(&self) -> String {
        format!("{} ({}) -> {} ({})", self.src_pod, self.src_node, self.dst_pod, self.dst_node)
    }
}

/// From a flow's traced first datagram: its frame size leaving the client pod against its size
/// on the client node's NIC.
fn encap_overhead(sim: &Simulation, i: usize, f: &crate::run::Flow) -> Option<i64> {
    let c = &sim.world.cluster;
    let (crate::cluster::Client::Pod(client), crate::cluster::Target::Pod(server)) = (f.client, f.target)
    else {
        return None;
    };
    let (client, server) = (&c.pods[client], &c.pods[server]);
    if client.node == server.node {
        return None;
    }
    let hops = sim.obs.flows[i].trace.as_ref()?;
    let pod_place = format!("pod/{}", client.name);
    let node = &c.nodes[client.node].name;
    let pod = hops.iter().find(|h| h.place == pod_place && h.action == "sendmsg")?.size;
    let nic = hops.iter().find(|h| &h.place == node && h.device == "eth0" && h.action == "xmit")?.size;
    Some(nic as i64 - pod as i64)
}

/// CPU served on node `node` (cores and userspace processes, which the world also keeps for
/// external hosts) by step.
fn node_steps(sim: &Simulation, node: usize) -> StepTimes {
    let mut s = [Duration::ZERO; Step::COUNT];
    for core in &sim.world.nodes[node].cores {
        for (a, d) in s.iter_mut().zip(core.steps) {
            *a += d;
        }
    }
    s[Step::Userspace as usize] += Duration::from_nanos(user_busy(sim, node));
    s
}

/// Steps that took time, by name.
fn step_map(s: &StepTimes) -> BTreeMap<String, u64> {
    Step::ALL
        .iter()
        .filter(|st| s[**st as usize] > Duration::ZERO)
        .map(|st| (st.name().to_string(), s[*st as usize].as_nanos()))
        .collect()
}

fn kernel_queue_drops(sim: &Simulation) -> Vec<KernelQueueDrops> {
    let mut by: BTreeMap<crate::observe::DropReason, u64> = BTreeMap::new();
    for f in &sim.obs.flows {
        for (r, n) in &f.drops {
            *by.entry(*r).or_default() += n;
        }
    }
    by.into_iter()
        .filter_map(|(r, count)| {
            let counter = r.kernel_counter()?;
            Some(KernelQueueDrops { reason: r.name().into(), counter: counter.into(), count })
        })
        .collect()
}

/// The busiest core or userspace process among those that served `o`'s datagrams.
fn bottleneck(sim: &Simulation, o: &crate::observe::FlowObs) -> Option<Bottleneck> {
    let end = sim.end.as_nanos().max(1) as f64;
    let names = |node: usize| sim.world.netns[sim.world.nodes[node].ns].name.clone();
    let cores = o.cores.keys().map(|&(n, c)| {
        let core = &sim.world.nodes[n].cores[c];
        (core.busy, format!("{} core {c}", names(n)), core.steps)
    });
    let procs = o.procs.keys().map(|&p| {
        let proc = &sim.world.procs[p];
        let mut s = [Duration::ZERO; Step::COUNT];
        s[Step::Userspace as usize] = proc.busy;
        (proc.busy, format!("{} on {}", proc.name, names(proc.node)), s)
    });
    // Busiest first; ties go to the first in (node, core) order, then processes.
    let (busy, place, steps) =
        cores.chain(procs).fold(None, |best: Option<(Duration, String, StepTimes)>, x| match &best {
            Some(b) if b.0 >= x.0 => best,
            _ => Some(x),
        })?;
    let mut top: Vec<(String, u64)> = step_map(&steps).into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(3);
    Some(Bottleneck { place, utilisation: busy.as_nanos() as f64 / end, top_steps: top })
}

/// Datagrams a CBR schedule asks for in `active`: slot k at floor(k x payload x 8 s / rate),
/// counted while before the end (the slots `run` schedules).
fn offered(kind: &WorkloadKind, active: Duration) -> Option<u64> {
    let WorkloadKind::UdpCbr { rate, payload } = *kind else { return None };
    let per = u128::from(payload) * 8 * 1_000_000_000;
    Some((u128::from(active.as_nanos()) * u128::from(rate.0)).div_ceil(per) as u64)
}

/// CPU time of the userspace data-plane processes on node `node`.
fn user_busy(sim: &Simulation, node: usize) -> u64 {
    sim.world.procs.iter().filter(|p| p.node == node).map(|p| p.busy.as_nanos()).sum()
}

/// A workload kind's parameters in words, as reports show them.
pub fn workload_params(k: &WorkloadKind) -> String {
    match k {
        WorkloadKind::UdpCbr { rate, payload } => format!("{rate}, {payload} B payload"),
        WorkloadKind::UdpStream { payload } => format!("as fast as the socket allows, {payload} B payload"),
        WorkloadKind::UdpRr { request, response, think, timeout } => {
            format!("{request} B request, {response} B response, think {think}, timeout {timeout}")
        }
        WorkloadKind::TcpStream { streams, write } => {
            let s = if *streams == 1 { "" } else { "s" };
            format!("{streams} stream{s}, {write} B writes")
        }
        WorkloadKind::TcpRr { request, response } => {
            format!("{request} B request, {response} B response, one connection")
        }
        WorkloadKind::TcpCrr { request, response } => {
            format!("{request} B request, {response} B response, a new connection each")
        }
    }
}

/// A workload kind's key in summary.json and compare.json (`udp_cbr`, ...).
pub fn kind_name(k: &WorkloadKind) -> &'static str {
    match k {
        WorkloadKind::UdpCbr { .. } => "udp_cbr",
        WorkloadKind::UdpStream { .. } => "udp_stream",
        WorkloadKind::UdpRr { .. } => "udp_rr",
        WorkloadKind::TcpStream { .. } => "tcp_stream",
        WorkloadKind::TcpRr { .. } => "tcp_rr",
        WorkloadKind::TcpCrr { .. } => "tcp_crr",
    }
}

fn flow_summary(sim: &Simulation, i: usize, f: &crate::run::Flow) -> FlowSummary {
    let c = &sim.world.cluster;
    let o = &sim.obs.flows[i];
    let (src_pod, src_node, client_node) = match f.client {
        crate::cluster::Client::Pod(p) => {
            let cp = &c.pods[p];
            (cp.name.clone(), c.nodes[cp.node].name.clone(), Some(cp.node))
        }
        crate::cluster::Client::External(e) => (format!("ext/{}", c.externals[e].name), "-".into(), None),
    };
    let (dst_pod, dst_node, same_node) = match f.target {
        crate::cluster::Target::Pod(s) => {
            let sp = &c.pods[s];
            (sp.name.clone(), c.nodes[sp.node].name.clone(), Some(sp.node) == client_node)
        }
        crate::cluster::Target::Service { service, .. } => {
            (format!("svc/{}", c.services.services[service].name), "-".into(), false)
        }
        crate::cluster::Target::NodePort { service, node, .. } => {
            (format!("nodeport/{}", c.services.services[service].name), c.nodes[node].name.clone(), false)
        }
        crate::cluster::Target::AnyService { count, .. } => {
            (format!("any of {count} services"), "-".into(), false)
        }
        crate::cluster::Target::External(e) => (format!("ext/{}", c.externals[e].name), "-".into(), false),
    };
    let active = (f.end.saturating_since(f.start)).as_secs_f64();
    let cpu_ns: u64 = o.steps.iter().map(|d| d.as_nanos()).sum();
    let rtt = matches!(
        f.kind,
        WorkloadKind::UdpRr { .. } | WorkloadKind::TcpRr { .. } | WorkloadKind::TcpCrr { .. }
    )
    .then(|| LatencyStats::from_histogram(&o.rtt));
    let tcp = o.tcp.as_ref().map(|t| {
        let secs = t.interval.as_nanos() as f64 / 1e9;
        TcpSummary {
            connections: t.connections,
            refused: t.refused,
            interval_ns: t.interval.as_nanos(),
            streams: t
                .streams
                .iter()
                .map(|st| StreamSummary {
                    bytes_written: st.bytes_written,
                    bytes_read: st.bytes_read,
                    goodput_bps: if active > 0.0 {
                        st.goodput.iter().sum::<u64>() as f64 * 8.0 / active
                    } else {
                        0.0
                    },
                    segments: st.segments,
                    data_segments: st.data_segments,
                    retransmits: st.retransmits,
                    retransmitted_bytes: st.retransmitted_bytes,
                    rtt: LatencyStats::from_histogram(&st.rtt),
                    drops_by_reason: reasons(&st.drops),
                    goodput_bps_series: st.goodput.iter().map(|&b| b as f64 * 8.0 / secs).collect(),
                    in_flight_bytes_series: st.in_flight.clone(),
                })
                .collect(),
        }
    });
    FlowSummary {
        id: i,
        workload: c.workloads[f.workload].name.clone(),
        kind: kind_name(&f.kind).into(),
        src_pod,
        dst_pod,
        src_node,
        dst_node,
        same_node,
        src_ip: f.client_ip.to_string(),
        dst_ip: f.dst.0.to_string(),
        src_port: f.sport,
        dst_port: f.dst.1,
        offered: offered(&f.kind, f.end.saturating_since(f.start)),
        sent: o.sent,
        delivered: o.delivered,
        dropped: o.drops.values().sum(),
        drops_by_reason: reasons(&o.drops),
        latency: LatencyStats::from_histogram(&o.latency),
        rtt,
        transactions: o.transactions,
        timeouts: o.timeouts,
        payload_bytes: o.payload_bytes,
        wire_bytes: o.wire_bytes,
        // A TCP flow's: its streams' goodput (what was read within the active time).
        throughput_bps: match &tcp {
            Some(t) => t.streams.iter().map(|s| s.goodput_bps).sum(),
            None if active > 0.0 => o.payload_bytes as f64 * 8.0 / active,
            None => 0.0,
        },
        encap_overhead_bytes: encap_overhead(sim, i, f),
        send_blocks: o.send_blocks,
        peak_send_buffer_bytes: f.socks.iter().map(|s| s.peak_wmem).max().unwrap_or(0),
        peak_receive_buffer_bytes: f.socks.iter().map(|s| s.peak_rmem).max().unwrap_or(0),
        cpu_ns,
        cpu_by_step: step_map(&o.steps),
        cpu_ns_per_datagram: if o.delivered > 0 { cpu_ns as f64 / o.delivered as f64 } else { 0.0 },
        bottleneck: bottleneck(sim, o),
        overhead_ratio: if o.payload_bytes > 0 && o.wire_bytes >= o.payload_bytes {
            (o.wire_bytes - o.payload_bytes) as f64 / o.payload_bytes as f64
        } else {
            0.0
        },
        tcp,
    }
}

fn services_summary(sim: &Simulation) -> Option<ServicesSummary> {
    let c = &sim.world.cluster;
    if c.services.services.is_empty() {
        return None;
    }
    let ps = &sim.world.proxies;
    let sum =
        |f: &dyn Fn(&crate::proxy::node::ProxyStats) -> u64| ps.iter().map(|p| f(&p.stats)).sum::<u64>();
    let new = sum(&|s| s.new_connections);
    let per = |x: u64| if new > 0 { x as f64 / new as f64 } else { 0.0 };
    let translated = sum(&|s| s.translated);
    let per_translated = |x: u64| if translated > 0 { x as f64 / translated as f64 } else { 0.0 };
    let established = sum(&|s| s.established_packets);
    let mut endpoint_share: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let user_picks = sim.world.procs.iter().filter_map(|p| match &p.kind {
        crate::userspace::ProcKind::KubeProxy(k) => Some(&k.per_endpoint),
        _ => None,
    });
    for picks in ps.iter().map(|p| &p.stats.per_endpoint).chain(user_picks) {
        for (&(svc, pod), &n) in picks {
            if svc >= c.generated.0 && svc < c.generated.0 + c.generated.1 {
                continue;
            }
            let name = c.services.services[svc].name.clone();
            *endpoint_share.entry(name).or_default().entry(c.pods[pod].name.clone()).or_default() += n;
        }
    }
    let syncs: Vec<SyncSummary> = ps
        .iter()
        .flat_map(|p| {
            p.stats.syncs.iter().map(|&(at, done)| SyncSummary {
                node: p.node.name.clone(),
                changed_at_ns: at.as_nanos(),
                in_place_at_ns: done.as_nanos(),
                sync_ns: (done - at).as_nanos(),
            })
        })
        .collect();
    let hist = |h: &Option<hdrhistogram::Histogram<u64>>| {
        h.as_ref().map(LatencyStats::from_histogram).unwrap_or_default()
    };
    Some(ServicesSummary {
        proxy: c.proxy.id().into(),
        services: c.services.services.len(),
        service_ports: c.services.services.iter().map(|s| s.ports.len()).sum(),
        endpoints: c.services.services.iter().map(|s| s.ready().count()).sum(),
        rules_installed: ps.iter().map(|p| p.rules.installed()).max().unwrap_or(0),
        rules_memory_bytes: ps
            .iter()
            .max_by_key(|p| p.rules.installed())
            .map_or(0, |p| p.rules.memory_bytes()),
        new_connections: new,
        rules_evaluated_mean: per(sum(&|s| s.rules_evaluated)),
        rules_evaluated_worst: ps.iter().map(|p| p.stats.rules_worst).max().unwrap_or(0),
        service_rules_evaluated_mean: per_translated(sum(&|s| s.translated_rules)),
        service_rules_evaluated_worst: ps.iter().map(|p| p.stats.translated_rules_worst).max().unwrap_or(0),
        service_lookups_mean: per_translated(sum(&|s| s.translated_lookups)),
        cpu_ns_per_service_connection: per_translated(sum(&|s| s.translated_cpu.as_nanos())),
        lookups_mean: per(sum(&|s| s.lookups)),
        translated: sum(&|s| s.translated),
        rejected: sum(&|s| s.rejected),
        conntrack_full: sum(&|s| s.conntrack_full),
        conntrack_early_drops: ps.iter().map(|p| p.conntrack.early_dropped).sum(),
        backends_reselected: sum(&|s| s.reselected),
        cpu_ns_per_1000_new_connections: per(sum(&|s| s.new_connection_cpu.as_nanos())) * 1000.0,
        established_packets: established,
        cpu_ns_per_established_packet: if established > 0 {
            sum(&|s| s.established_cpu.as_nanos()) as f64 / established as f64
        } else {
            0.0
        },
        first_packet_latency: hist(&sim.obs.first_packet),
        established_latency: hist(&sim.obs.established),
        conntrack_peak_entries: ps.iter().map(|p| p.conntrack.peak).max().unwrap_or(0),
        endpoint_share,
        sync_ns_max: syncs.iter().map(|s| s.sync_ns).max(),
        sync_ns_mean: (!syncs.is_empty())
            .then(|| syncs.iter().map(|s| s.sync_ns as f64).sum::<f64>() / syncs.len() as f64),
        syncs,
        sync_cpu_ns: sum(&|s| s.sync_cpu.as_nanos()),
        userspace_proxy_cpu_ns: sim
            .world
            .procs
            .iter()
            .filter(|p| matches!(p.kind, crate::userspace::ProcKind::KubeProxy(_)))
            .map(|p| p.busy.as_nanos())
            .sum(),
    })
}
