//! What a run observes: per-flow counters and latency histograms, drops by reason, CPU per
//! core, traced paths. The engine feeds it; `summary` reads it. Nothing here schedules events.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;

use crate::cost::{Step, StepTimes};
use crate::net::packet::DataTag;
use crate::net::packet::Hop;
use crate::time::{Duration, Instant};

/// Why a frame was dropped. Every drop in the simulation carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// No route in the namespace's MAIN table matches the destination.
    NoRoute,
    /// The node the frame reached, or the packet was on, is powered off.
    NodeDown,
    /// A packet to forward arrived in a namespace with `ip_forward = 0`.
    NotForwarding,
    /// TTL would reach zero.
    TtlExceeded,
    /// Larger than the egress device's MTU with DF set (or EMSGSIZE for a local sender).
    MtuExceeded,
    /// A frame larger than the underlay switch's MTU.
    UnderlayMtuExceeded,
    /// Drop-tail queue of a cable full.
    QueueFull,
    /// Random loss on a cable.
    LinkLoss,
    /// ARP got no answer after `mcast_solicit` probes.
    UnresolvedNeighbour,
    /// More than `unres_qlen` packets waited for one neighbour.
    NeighbourQueueFull,
    /// UDP datagram to a port with no socket.
    PortUnreachable,
    /// IPv4 or UDP checksum wrong.
    BadChecksum,
    /// A flooded copy reached a host it was not addressed to (PACKET_OTHERHOST).
    NotForThisHost,
    /// A bridge or switch would send the frame back out of the port it came in on.
    SamePort,
    /// Not IPv4 or ARP, or an IPv4 protocol with no handler.
    UnknownProtocol,
    /// Malformed header.
    Malformed,
    /// A VXLAN/Geneve device had no FDB entry (or tunnel key) for the inner destination.
    NoTunnelEndpoint,
    /// A VXLAN/Geneve packet with a VNI the receiving device does not serve.
    WrongVni,
    /// A datagram's fragments were not all received within `ipfrag_time` (30 s), or the
    /// reassembly queue refused them.
    Reassembly,
    /// A new connection to a Service with no ready endpoint (kube-proxy's REJECT; Cilium's
    /// DROP_NO_SERVICE).
    ServiceNoEndpoints,
    /// The conntrack table was full and no entry could be evicted for a new connection.
    ConntrackFull,
    /// A new connection's entry could not be confirmed: another connection held its reply
    /// tuple (`insert_failed`: MASQUERADE picked a tuple a connection on another core had not
    /// confirmed yet, or found no free one).
    InsertFailed,
    /// A reply reached a connected socket from an address it is not connected to (the
    /// reverse translation did not happen).
    UnexpectedSource,
    /// A process could not bind a local port: the ephemeral range is in use (EADDRNOTAVAIL).
    NoEphemeralPort,
    /// The core's per-CPU input backlog held `netdev_max_backlog` packets (`enqueue_to_backlog`).
    BacklogFull,
    /// The NIC's receive ring had no free descriptor: the frame never reached the kernel.
    RxRingFull,
    /// The NIC's qdisc held `txqueuelen` packets (pfifo_fast's tail drop).
    QdiscFull,
    /// The receiving socket's buffer was over `SO_RCVBUF` (`__udp_enqueue_schedule_skb`).
    RcvbufFull,
    /// A tun device's queue towards its process held `txqueuelen` packets (`tun_net_xmit`).
    TunQueueFull,
    /// A NetworkPolicy the plugin enforces denied the connection (Calico's or weave-npc's
    /// filter chains, Cilium's policy map): the trace names the rule or map entry.
    PolicyDenied,
}

impl DropReason {
    /// Stable key used in summary.json and CSVs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no_route",
            DropReason::NodeDown => "node_down",
            DropReason::NotForwarding => "ip_forward_disabled",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::UnderlayMtuExceeded => "underlay_mtu_exceeded",
            DropReason::QueueFull => "queue_full",
            DropReason::LinkLoss => "link_loss",
            DropReason::UnresolvedNeighbour => "unresolved_neighbour",
            DropReason::NeighbourQueueFull => "neighbour_queue_full",
            DropReason::PortUnreachable => "port_unreachable",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::NotForThisHost => "not_for_this_host",
            DropReason::SamePort => "same_port",
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::Malformed => "malformed",
            DropReason::NoTunnelEndpoint => "no_tunnel_endpoint",
            DropReason::WrongVni => "wrong_vni",
            DropReason::ServiceNoEndpoints => "service_no_endpoints",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::InsertFailed => "conntrack_insert_failed",
            DropReason::UnexpectedSource => "unexpected_source",
            DropReason::NoEphemeralPort => "no_ephemeral_port",
            DropReason::Reassembly => "reassembly_failed",
            DropReason::BacklogFull => "backlog_full",
            DropReason::RxRingFull => "rx_ring_full",
            DropReason::QdiscFull => "qdisc_drop",
            DropReason::RcvbufFull => "rcvbuf_full",
            DropReason::TunQueueFull => "tun_queue_full",
            DropReason::PolicyDenied => "policy_denied",
        }
    }

    /// The counter a Linux node shows this drop in, for the kernel-queue drops.
    pub fn kernel_counter(self) -> Option<&'static str> {
        Some(match self {
            DropReason::BacklogFull => "/proc/net/softnet_stat, 2nd column (dropped)",
            DropReason::RxRingFull => "ethtool -S eth0: rx_missed_errors",
            DropReason::QdiscFull => "tc -s qdisc show dev eth0: dropped",
            DropReason::RcvbufFull => "/proc/net/snmp Udp: RcvbufErrors",
            DropReason::TunQueueFull => "ip -s link show flannel0: TX dropped",
            DropReason::QueueFull => "switch port output drops",
            DropReason::InsertFailed => "conntrack -S: insert_failed",
            _ => return None,
        })
    }
}

/// Observations of one flow.
pub struct FlowObs {
    pub sent: u64,
    pub delivered: u64,
    pub drops: BTreeMap<DropReason, u64>,
    pub latency: Histogram<u64>,
    pub rtt: Histogram<u64>,
    pub transactions: u64,
    pub timeouts: u64,
    pub payload_bytes: u64,
    pub wire_bytes: u64,
    pub trace: Option<Vec<Hop>>,
    /// Whether `trace` is the path of a delivered copy (preferred over a dropped one).
    pub trace_delivered: bool,
    /// The traced path of the answer to the first request (request/response flows).
    pub reply_trace: Option<Vec<Hop>>,
    /// Times the sender found its send buffer full and blocked.
    pub send_blocks: u64,
    /// CPU time of the chains that carried this flow's datagrams (both directions), served
    /// within the run, by kernel step.
    pub steps: StepTimes,
    /// The same CPU time by (node, core) it was served on.
    pub cores: BTreeMap<(usize, usize), Duration>,
    /// CPU time of userspace data-plane processes (`World::procs` index) spent on this flow.
    pub procs: BTreeMap<usize, Duration>,
    /// A TCP workload's streams.
    pub tcp: Option<TcpObs>,
}

/// Samples in a stream's time series: the workload's active time in this many intervals.
pub const TCP_SERIES_POINTS: usize = 100;

/// What a TCP flow's connections did.
pub struct TcpObs {
    /// One per stream of a bulk transfer; a request/response flow has one for all its
    /// connections.
    pub streams: Vec<StreamObs>,
    /// Connections opened.
    pub connections: u64,
    /// Connections refused before they were established: a RST answering the SYN (no
    /// listener) or an ICMP port unreachable (a Service without endpoints), `ECONNREFUSED`.
    pub refused: u64,
    start: Instant,
    /// Length of one time-series interval.
    pub interval: Duration,
}

/// One TCP stream's counters.
pub struct StreamObs {
    /// Bytes the applications wrote and read (goodput: what reached the reader).
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Segments sent by the client (`[0]`) and the server (`[1]`); those that carried data;
    /// those that were retransmissions (sequence space already sent).
    pub segments: [u64; 2],
    pub data_segments: [u64; 2],
    pub retransmits: [u64; 2],
    pub retransmitted_bytes: u64,
    /// Round-trip times of the client's data: send to the ACK that covers it (Karn's rule).
    pub rtt: Histogram<u64>,
    /// Segments lost on the way, by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Per interval: bytes read by the receiver; the most client bytes in flight (sent, not
    /// acknowledged: what the congestion and receive windows allow).
    pub goodput: Vec<u64>,
    pub in_flight: Vec<u32>,
}

impl TcpObs {
    pub fn new(streams: usize, start: Instant, end: Instant) -> TcpObs {
        let span = end.saturating_since(start).as_nanos().max(1);
        let interval = Duration::from_nanos(span.div_ceil(TCP_SERIES_POINTS as u64).max(1));
        TcpObs {
            streams: (0..streams)
                .map(|_| StreamObs {
                    bytes_written: 0,
                    bytes_read: 0,
                    segments: [0; 2],
                    data_segments: [0; 2],
                    retransmits: [0; 2],
                    retransmitted_bytes: 0,
                    rtt: new_histogram(),
                    drops: BTreeMap::new(),
                    goodput: vec![0; TCP_SERIES_POINTS],
                    in_flight: vec![0; TCP_SERIES_POINTS],
                })
                .collect(),
            connections: 0,
            refused: 0,
            start,
            interval,
        }
    }

    fn slot(&self, t: Instant) -> usize {
        ((t.saturating_since(self.start).as_nanos() / self.interval.as_nanos()) as usize)
            .min(TCP_SERIES_POINTS - 1)
    }

    /// The receiver of `stream` read `bytes` at `t`. What it reads after the flow's active
    /// time (the queues draining once the writer stopped) counts in `bytes_read`, not in the
    /// goodput series (whose sum the goodput is).
    pub fn read(&mut self, stream: usize, t: Instant, bytes: u64) {
        let active =
            t.saturating_since(self.start).as_nanos() < self.interval.as_nanos() * TCP_SERIES_POINTS as u64;
        let i = self.slot(t);
        let s = &mut self.streams[stream];
        s.bytes_read += bytes;
        if active {
            s.goodput[i] += bytes;
        }
    }

    /// `bytes` of the client's data of `stream` were in flight at `t`.
    pub fn in_flight(&mut self, stream: usize, t: Instant, bytes: u32) {
        let i = self.slot(t);
        let s = &mut self.streams[stream];
        s.in_flight[i] = s.in_flight[i].max(bytes);
    }
}

impl FlowObs {
    fn new() -> Self {
        FlowObs {
            sent: 0,
            delivered: 0,
            drops: BTreeMap::new(),
            latency: new_histogram(),
            rtt: new_histogram(),
            transactions: 0,
            timeouts: 0,
            payload_bytes: 0,
            wire_bytes: 0,
            trace: None,
            trace_delivered: false,
            reply_trace: None,
            send_blocks: 0,
            steps: [Duration::ZERO; Step::COUNT],
            cores: BTreeMap::new(),
            procs: BTreeMap::new(),
            tcp: None,
        }
    }
}

/// A latency histogram: 1 ns to 1000 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1_000_000_000_000, 3).expect("static bounds are valid")
}

/// Copies of one flooded data packet still travelling.
struct FloodGroup {
    live: u32,
    delivered: bool,
    reason: DropReason,
}

#[derive(Default)]
pub struct Observations {
    pub flows: Vec<FlowObs>,
    pub arp_frames: u64,
    pub arp_drops: BTreeMap<DropReason, u64>,
    pub packet_hops: u64,
    /// One-way latency of datagrams to a Service (ClusterIP, headless, NodePort or generated) that
    /// opened a connection (the proxy's first-packet path), and of the later ones.
    pub first_packet: Option<Histogram<u64>>,
    pub established: Option<Histogram<u64>>,
    floods: HashMap<u64, FloodGroup>,
}

impl Observations {
    pub fn new(flows: usize) -> Self {
        Observations {
            flows: (0..flows).map(|_| FlowObs::new()).collect(),
            first_packet: Some(new_histogram()),
            established: Some(new_histogram()),
            ..Default::default()
        }
    }

    /// A chain carrying `flow`'s datagram was served on `core` of `node`, spending `steps`.
    pub fn flow_cpu(&mut self, flow: u32, node: usize, core: usize, steps: &StepTimes) {
        let f = &mut self.flows[flow as usize];
        let mut total = Duration::ZERO;
        for (t, &d) in f.steps.iter_mut().zip(steps) {
            *t += d;
            total += d;
        }
        *f.cores.entry((node, core)).or_default() += total;
    }

    /// Userspace process `proc` spent `d` on one of `flow`'s datagrams.
    pub fn flow_user_cpu(&mut self, flow: u32, proc: usize, d: Duration) {
        let f = &mut self.flows[flow as usize];
        f.steps[Step::Userspace as usize] += d;
        *f.procs.entry(proc).or_default() += d;
    }

    /// A datagram to a Service was delivered after `latency`.
    pub fn service_datagram(&mut self, opens: bool, latency: Duration) {
        let h = if opens { &mut self.first_packet } else { &mut self.established };
        if let Some(h) = h.as_mut() {
            h.saturating_record(latency.as_nanos().max(1));
        }
    }

    pub fn sent(&mut self, tag: &DataTag) {
        self.flows[tag.flow as usize].sent += 1;
    }

    /// A data packet reached its socket at `now`. Returns false for a duplicate copy.
    pub fn delivered(&mut self, tag: &DataTag, flood: u64, frame_len: usize, now: Instant) -> bool {
        if flood != 0 {
            let g = self.floods.get_mut(&flood).expect("flood group registered");
            g.live -= 1;
            let first = !g.delivered;
            g.delivered = true;
            if g.live == 0 {
                self.floods.remove(&flood);
            }
            if !first {
                return false;
            }
        }
        let f = &mut self.flows[tag.flow as usize];
        f.delivered += 1;
        f.payload_bytes += tag.payload as u64;
        f.wire_bytes += frame_len as u64;
        f.latency.saturating_record(now.saturating_since(tag.sent_at).as_nanos().max(1));
        true
    }

    /// A frame was dropped. Data packets are charged to their flow; a flooded copy only counts
    /// once every copy is gone without one being delivered.
    pub fn dropped(&mut self, tag: Option<&DataTag>, flood: u64, reason: DropReason) {
        let Some(tag) = tag else {
            *self.arp_drops.entry(reason).or_default() += 1;
            return;
        };
        let mut reason = reason;
        if flood != 0 {
            let g = self.floods.get_mut(&flood).expect("flood group registered");
            g.live -= 1;
            if reason != DropReason::NotForThisHost {
                g.reason = reason;
            }
            if g.live > 0 {
                return;
            }
            let g = self.floods.remove(&flood).expect("present");
            if g.delivered {
                return;
            }
            reason = g.reason;
        }
        *self.flows[tag.flow as usize].drops.entry(reason).or_default() += 1;
    }

    /// Registers `copies` travelling copies of a data packet in flood group `group` (the
    /// original included). A packet already in the group (`fresh` false) just grows it.
    pub fn flooded(&mut self, group: u64, fresh: bool, copies: u32) {
        if fresh {
            let g = FloodGroup { live: copies, delivered: false, reason: DropReason::NotForThisHost };
            self.floods.insert(group, g);
        } else {
            self.floods.get_mut(&group).expect("flood group registered").live += copies - 1;
        }
    }

    /// Whether a flood group still counts as in flight (not yet delivered).
    pub fn flood_in_flight(&self, group: u64) -> bool {
        self.floods.get(&group).is_some_and(|g| !g.delivered)
    }

    pub fn rtt(&mut self, flow: u32, rtt: Duration) {
        let f = &mut self.flows[flow as usize];
        f.rtt.saturating_record(rtt.as_nanos().max(1));
        f.transactions += 1;
    }

    pub fn timeout(&mut self, flow: u32) {
        self.flows[flow as usize].timeouts += 1;
    }

    pub fn dropped_total(&self) -> u64 {
        self.flows.iter().map(|f| f.drops.values().sum::<u64>()).sum()
    }

    /// Workload datagrams dropped so far, by reason.
    pub fn drops_by_reason(&self) -> std::collections::BTreeMap<DropReason, u64> {
        let mut by = std::collections::BTreeMap::new();
        for f in &self.flows {
            for (r, n) in &f.drops {
                *by.entry(*r).or_default() += n;
            }
        }
        by
    }
}
