//! `summary.json`: the versioned, documented result of one run.
//!
//! Everything here is computed from the run's observations (`observe`); nothing is typed in.
//! Only [`Summary::run`] holds wall-clock values, so two runs of the same scenario and seed
//! serialise to identical bytes apart from that key. Maps are `BTreeMap` so key order is fixed.
//! The schema is documented field by field in `docs/summary-schema.md`; bump
//! [`SCHEMA_VERSION`] on any incompatible change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the summary.json schema.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub schema_version: u32,
    pub scenario: ScenarioInfo,
    pub totals: Totals,
    pub flows: Vec<FlowSummary>,
    pub nodes: Vec<NodeSummary>,
    /// Hop-by-hop path of the first packet of each flow.
    pub paths: Vec<PathTrace>,
    /// Wall-clock facts about this run (the only non-deterministic part).
    pub run: RunInfo,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScenarioInfo {
    pub name: String,
    pub description: String,
    pub cni: String,
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
    /// Events the engine processed.
    pub events: u64,
    /// Device steps taken by packets (veth, bridge, routing, NIC, link, switch ...).
    pub packet_hops: u64,
    /// Simulated time at which the run ended, ns.
    pub end_ns: u64,
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
    /// Bytes of the Ethernet frames that carried them, as seen on the sender's `eth0`.
    pub wire_bytes: u64,
    /// Payload bits delivered per second of the workload's active time.
    pub throughput_bps: f64,
    /// (wire_bytes - payload_bytes) / payload_bytes.
    pub overhead_ratio: f64,
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
    /// Packets (frames) this node's kernel processed.
    pub packets_processed: u64,
    /// Mean CPU cost per processed packet, ns.
    pub cpu_ns_per_packet: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PathTrace {
    pub flow: usize,
    pub description: String,
    pub hops: Vec<Hop>,
}

/// One step of a packet through a device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hop {
    pub time_ns: u64,
    /// Node or pod namespace the device lives in ("node-1", "pod web-0"), or "underlay".
    pub place: String,
    pub device: String,
    /// What happened: "xmit", "rx", "forward", "deliver", "drop", "arp request" ...
    pub action: String,
    /// Why, in words: the route, FDB entry or rule that decided it.
    pub why: String,
    /// Frame size in bytes at this step.
    pub size: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub cnisim_version: String,
    pub wall_seconds: f64,
    pub events_per_second: f64,
}
