//! How much memory a scenario needs, estimated from the resolved [`Cluster`] before anything
//! is built, so that one too big for the machine is refused with what drives it instead of
//! being killed half-way.
//!
//! The estimate is a sum of parts, each a count times a cost per item, the costs calibrated
//! against the peak resident set (`/usr/bin/time -v`) of real runs (README, "Memory"): the
//! process itself; per node and per pod state (namespaces, devices, addresses, tables); the
//! per-peer state most CNIs keep on every node for every other node (a route, and with
//! tunnels a neighbour and an FDB entry or a tunnel map entry: nodes x nodes in all); the
//! proxies' rules (one shared copy, or one per node in userspace mode and for IPVS's per-node
//! part); per-flow counters and histograms; pcap captures, buffered until the output is
//! written; connections tracked (a sender faster than its core blocks on its socket, and the
//! kernel's queues are bounded, so no backlog grows with the run).
//!
//! **Architecture Invariant:** the estimate reads only the model; it builds nothing.

use crate::cluster::{Cluster, Cni, ProxyMode, WorkloadKind, UDP_IP_HEADERS};
use crate::error::Error;

/// One part of an estimate: what it is and the bytes it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub what: String,
    pub bytes: u64,
}

/// The memory a scenario is expected to need at its peak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub total: u64,
    /// Largest first.
    pub parts: Vec<Part>,
}

/// The process with its code, fonts and report rendering, before any scenario state.
const BASE: u64 = 10 << 20;
/// A node: its namespace, devices, addresses, local routes, cores, proxy and conntrack.
const PER_NODE: u64 = 7 << 10;
/// A pod: namespace, veth pair, addresses, routes, neighbour table.
const PER_POD: u64 = 5 << 10;
/// Per-flow state: two latency histograms (1 ns to 1000 s at 3 significant digits: 254 KiB
/// of counters each) and counters.
const PER_FLOW: u64 = 512 << 10;
/// A tracked connection (conntrack entry indexed both ways).
const PER_CONNECTION: u64 = 300;
/// A BGP session beyond its two sockets' buffers: both ends' smoltcp sockets, the speakers'
/// peer state, BIRD's connection buffers and timers, and what a mesh still connecting holds
/// (SYNs and ARP queues): measured with 4 KiB socket buffers on meshes of 200 nodes (19,900
/// sessions, converged: 744 MB peak resident set, 37 KiB per session in all) and 300 nodes
/// (44,850 sessions, 15 s, still connecting: 2.44 GB, 54 KiB per session); the larger is kept.
const PER_BGP_SESSION: u64 = 40 << 10;
/// A route one speaker sent another ([`crate::cluster::Bgp::routes_sent`]): its Adj-RIB-Out
/// entry at the sender, its Adj-RIB-In entry, best-path index and kernel route at the
/// receiver, and the UPDATE's bytes while they wait for the sender's CPU and socket.
/// Measured with 1,000 and 2,000 nodes and 2 route reflectors (1,997,998 and 7,995,998
/// routes; the second run, 90 s, stopped at 7.3 M: 1.19 and 3.99 GB peak resident set, about
/// 400 and 440 B per route once the other parts are taken away).
const PER_BGP_ROUTE: u64 = 450;

/// Bytes a node keeps for each other node (routes, neighbours, FDB entries, tunnel maps),
/// measured at 1,000 nodes with one pod each (peak resident set less the rest of the estimate,
/// 22 MiB): host-gw 75 B, flannel-udp 75, ipvlan-l3 74, calico-ipip 86, calico-vxlan on one
/// switch 87, flannel-vxlan 162, calico-vxlan 243, cilium-geneve 156, weave-fastdp 81,
/// weave-sleeve 74; each rounded up.
fn per_peer(c: &Cluster) -> u64 {
    match c.cni {
        // Cross-subnet VXLAN encapsulates only to other subnets (racks); on one switch every
        // peer is a plain route.
        Cni::CalicoVxlanCrossSubnet if matches!(c.underlay.fabric, crate::cluster::Fabric::L2Switch) => 90,
        Cni::FlannelHostGw | Cni::FlannelUdp | Cni::IpvlanL3 => 80,
        Cni::CalicoBgp | Cni::CalicoIpip | Cni::CalicoIpipCrossSubnet => 90,
        Cni::FlannelVxlan => 165,
        Cni::CalicoVxlan | Cni::CalicoVxlanCrossSubnet => 245,
        Cni::CiliumVxlan | Cni::CiliumGeneve | Cni::CiliumNative => 160,
        Cni::WeaveFastdp => 85,
        Cni::WeaveSleeve => 80,
        // Pods reach other nodes through the underlay directly.
        Cni::Macvlan => 0,
    }
}

/// Simulator bytes per unit of [`rules`] (two per Service port, two per endpoint of a port)
/// for one copy of a proxy mode's rule set, measured at 10,000 and 50,000 Services.
fn per_rule(mode: ProxyMode) -> u64 {
    match mode {
        ProxyMode::Iptables => 1000,
        ProxyMode::Nftables => 575,
        ProxyMode::Ipvs(_) => 280,
        ProxyMode::Ebpf { .. } => 275,
        // The shared Service table; each node adds [`PER_NODE_RULE`] per unit.
        ProxyMode::Userspace => 250,
    }
}

/// Userspace mode: what each node keeps per Service port (its portal rules in both chains, the
/// proxy's listening port and its entry in the proxy's port map): measured at 5,000 nodes x
/// 10,000 Services, 9.75 GiB peak resident set of which 7.35 GiB beyond the same run in
/// iptables mode, 154 B per node and Service port. A sync builds a node's new rules beside
/// the old ones until it is done, and a change makes every node sync: with changes, half as
/// much again (the nodes' syncs overlap in part; 50 nodes x 10,000 Services with a pod
/// deleted: 141 MiB measured, 233 B per node and Service port).
const PER_NODE_PORTAL: u64 = 154;

/// Estimates the peak memory of a run of `c`; `pcap`: the run captures on every interface
/// its globs match (assumed: all of them).
pub fn estimate(c: &Cluster, pcap: bool) -> Estimate {
    let n = c.nodes.len() as u64;
    let pods = c.pods.len() as u64;
    let mut parts = vec![
        Part { what: "the simulator itself".into(), bytes: BASE },
        Part { what: format!("{n} nodes"), bytes: n.saturating_mul(PER_NODE) },
        Part { what: format!("{pods} pods"), bytes: pods.saturating_mul(PER_POD) },
    ];
    // Calico routes each remote IPAM block (64 addresses) rather than each node.
    let blocks = match c.cni {
        Cni::CalicoBgp
        | Cni::CalicoIpip
        | Cni::CalicoIpipCrossSubnet
        | Cni::CalicoVxlan
        | Cni::CalicoVxlanCrossSubnet => {
            let most = (0..c.nodes.len()).map(|i| c.pods.iter().filter(|p| p.node == i).count()).max();
            (most.unwrap_or(0) as u64).div_ceil(64).max(1)
        }
        _ => 1,
    };
    let peers = n.saturating_mul(n.saturating_sub(1)).saturating_mul(blocks);
    parts.push(Part {
        what: format!(
            "{peers} per-peer entries of {} (routes, neighbours, FDB or tunnel map entries: every node keeps \
             some for every other node, so they grow with nodes x nodes)",
            c.cni
        ),
        bytes: peers.saturating_mul(per_peer(c)),
    });
    let rules = rules(c);
    if rules > 0 {
        let services = c.services.services.len();
        parts.push(Part {
            what: format!("the {} rules or map entries of {services} Services", c.proxy),
            bytes: rules.saturating_mul(per_rule(c.proxy)),
        });
        if c.proxy == ProxyMode::Userspace {
            // One proxy port per Service port with a cluster IP, as far as the ephemeral range
            // (32768-60999) goes.
            let ports = (crate::proxy::userspace::Portals::ports_needed(&c.services) as u64).min(28_232);
            let per = if c.changes.is_empty() { PER_NODE_PORTAL } else { PER_NODE_PORTAL * 3 / 2 };
            parts.push(Part {
                what: format!(
                    "userspace-mode portal rules and proxy sockets for {services} Services on each of {n} nodes"
                ),
                bytes: ports.saturating_mul(per).saturating_mul(n),
            });
        }
    }
    let flows: u64 = c.workloads.iter().map(|w| w.flows.len() as u64).sum();
    parts.push(Part {
        what: format!("{flows} flows (counters and latency histograms)"),
        bytes: flows.saturating_mul(PER_FLOW),
    });
    let (datagrams, frame_bytes) = datagrams(c);
    if pcap {
        // A datagram's frame is captured on every interface of its path (pod eth0, host veth,
        // bridge, NIC, at both ends: up to nine), into buffers that grow by doubling: twelve
        // times its bytes (measured: quickstart with --pcap '*' peaks at 561 MiB).
        parts.push(Part {
            what: format!(
                "pcap captures of {datagrams} datagrams (kept in memory until the output is written)"
            ),
            bytes: frame_bytes.saturating_mul(12),
        });
    }
    let sockets = tcp_sockets(c);
    if sockets > 0 {
        parts.push(Part {
            what: format!(
                "{sockets} TCP sockets' buffers (tcp_rmem and tcp_wmem maxima, {} B each, used whole by a \
                 stream)",
                crate::cluster::TCP_RMEM_MAX + crate::cluster::TCP_WMEM_MAX
            ),
            bytes: sockets
                .saturating_mul(u64::from(crate::cluster::TCP_RMEM_MAX + crate::cluster::TCP_WMEM_MAX)),
        });
    }
    if let Some(b) = &c.bgp {
        let sessions = b.sessions(c.nodes.len()) as u64;
        let per = 4 * b.socket_buffer() as u64 + PER_BGP_SESSION;
        parts.push(Part {
            what: format!(
                "{sessions} BGP sessions ({}: two sockets with two buffers of {} B each, and the speakers' state)",
                if b.reflectors.is_empty() { "the full mesh, one per pair of nodes" } else { "route reflectors" },
                b.socket_buffer()
            ),
            bytes: sessions.saturating_mul(per),
        });
        let routes = b.routes_sent(c.nodes.len(), blocks);
        parts.push(Part {
            what: format!(
                "{routes} routes the BIRD speakers send one another (each kept at both ends of its session: \
                 {})",
                if b.reflectors.is_empty() {
                    "every node's blocks to every other node"
                } else {
                    "every reflector sends every node's blocks to every peer"
                }
            ),
            bytes: routes.saturating_mul(PER_BGP_ROUTE),
        });
    }
    let connections = connections(c);
    if connections > 0 {
        parts.push(Part {
            what: format!("{connections} tracked connections"),
            bytes: connections.saturating_mul(PER_CONNECTION),
        });
    }
    parts.retain(|p| p.bytes > 0);
    parts.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.what.cmp(&b.what)));
    Estimate { total: parts.iter().fold(0u64, |t, p| t.saturating_add(p.bytes)), parts }
}

/// The size of one copy of the proxies' rule set, in units of two per Service port and two
/// per endpoint of each port.
fn rules(c: &Cluster) -> u64 {
    let ports: u64 = c.services.services.iter().map(|s| s.ports.len() as u64).sum();
    let endpoints: u64 = c.services.services.iter().map(|s| (s.ports.len() * s.endpoints.len()) as u64).sum();
    ports.saturating_add(endpoints).saturating_mul(2)
}

/// Workload datagrams a run sends (both ways) and the bytes of their frames.
fn datagrams(c: &Cluster) -> (u64, u64) {
    let (mut count, mut bytes) = (0u64, 0u64);
    for w in &c.workloads {
        let secs = w.duration.as_nanos().min(c.duration.as_nanos()) as f64 / 1e9;
        let (per_flow, frame) = match w.kind {
            WorkloadKind::UdpCbr { rate, payload } => {
                let offered = rate.0 as f64 / (f64::from(payload) * 8.0);
                (offered.min(max_send_rate(c, payload)) * secs, payload + UDP_IP_HEADERS + 14)
            }
            WorkloadKind::UdpStream { payload } => {
                (max_send_rate(c, payload) * secs, payload + UDP_IP_HEADERS + 14)
            }
            // A stream carries at most its client's NIC rate in segments of about an MTU.
            WorkloadKind::TcpStream { streams, .. } => {
                let per = c.nodes.first().map_or(0.0, |n| n.nic_bandwidth.0 as f64 / (1500.0 * 8.0));
                (per * secs * f64::from(streams), 1514)
            }
            WorkloadKind::TcpRr { request, response } | WorkloadKind::TcpCrr { request, response } => {
                (4.0 * secs / 30e-6, (request + response) / 2 + 54)
            }
            // A closed loop: at most one exchange per round trip of some 20 us, plus think time.
            WorkloadKind::UdpRr { request, response, think, .. } => {
                let cycle = think.as_nanos() as f64 / 1e9 + 20e-6;
                (2.0 * secs / cycle, (request + response) / 2 + UDP_IP_HEADERS + 14)
            }
        };
        let n = (per_flow.ceil() as u64).saturating_mul(w.flows.len() as u64);
        count = count.saturating_add(n);
        bytes = bytes.saturating_add(n.saturating_mul(u64::from(frame) + 16));
    }
    (count, bytes)
}

/// TCP sockets alive at once: both ends of every stream, of every request/response flow's
/// connection (a connect-per-transaction flow has one open at a time).
fn tcp_sockets(c: &Cluster) -> u64 {
    let per = |k: &WorkloadKind| match *k {
        WorkloadKind::TcpStream { streams, .. } => 2 * u64::from(streams),
        WorkloadKind::TcpRr { .. } | WorkloadKind::TcpCrr { .. } => 2,
        _ => 0,
    };
    c.workloads.iter().map(|w| per(&w.kind).saturating_mul(w.flows.len() as u64)).sum()
}

/// Connections conntrack holds at the end: one per flow, or one per request for workloads that
/// open a connection per request (entries outlive the 30 s UDP timeout in most runs).
fn connections(c: &Cluster) -> u64 {
    if c.services.services.is_empty() {
        return 0;
    }
    let ct_max = c.conntrack_max.map_or(u64::MAX, |m| m as u64 * c.nodes.len() as u64);
    let mut total = 0u64;
    for w in &c.workloads {
        let flows = w.flows.len() as u64;
        let per = match w.kind {
            WorkloadKind::UdpRr { think, .. } if w.new_connection_per_request => {
                let secs = w.duration.as_nanos().min(c.duration.as_nanos()) as f64 / 1e9;
                (secs / (think.as_nanos() as f64 / 1e9 + 20e-6)).ceil() as u64
            }
            _ => 1,
        };
        total = total.saturating_add(flows.saturating_mul(per));
    }
    total.min(ct_max)
}

/// Datagrams per second one flow of `payload` bytes can send at most: its core spends at
/// least the socket send, the payload copy, a route lookup and the neighbour output on each (a
/// sender blocks on its socket rather than queue without bound).
fn max_send_rate(c: &Cluster, payload: u32) -> f64 {
    let k = &c.costs;
    let cost = (k.udp_send + k.copy(payload as usize) + k.fib_lookup + k.neigh_output).as_nanos().max(1);
    1e9 / cost as f64
}

/// Refuses `total` bytes over the memory cap ([`crate::memory::cap`]; none: no check) with
/// [`Error::TooBig`]: "`what` needs `needs`; that is more than the limit ...".
pub fn check(what: &str, total: u64, needs: &str) -> Result<(), Error> {
    let Some(cap) = crate::memory::cap() else { return Ok(()) };
    if total <= cap {
        return Ok(());
    }
    Err(Error::TooBig(format!(
        "{what} needs {needs}; that is more than the memory limit of {} (--max-memory; by default 80% of the \
         memory this process may have): shrink what drives it or raise --max-memory; nothing was built \
         or written",
        crate::memory::fmt_bytes(cap)
    )))
}

/// [`check`] for one run.
pub fn check_run(what: &str, e: &Estimate) -> Result<(), Error> {
    check(what, e.total, &e.describe())
}

impl Estimate {
    /// "about 7.9 GiB (7.8 GiB for ...; 12 MiB for ...)" (the three largest parts).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .take(3)
            .map(|p| format!("{} for {}", crate::memory::fmt_bytes(p.bytes), p.what))
            .collect();
        format!("about {} ({})", crate::memory::fmt_bytes(self.total), parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::cluster;
    use crate::units::Bandwidth;

    #[test]
    fn a_bgp_mesh_needs_its_sessions_and_reflectors_far_less() {
        let kind = WorkloadKind::UdpCbr { rate: Bandwidth(1_000_000), payload: 100 };
        let mut c = cluster(200, 1, kind, &[(0, 1)]);
        c.cni = Cni::CalicoIpip;
        c.bgp = Some(crate::cluster::Bgp {
            as_number: 64512,
            reflectors: Vec::new(),
            cluster_id: std::net::Ipv4Addr::new(244, 0, 0, 1),
            timers: crate::bgp::Timers::default(),
            start_spread: crate::time::Duration::ZERO,
        });
        let mesh = estimate(&c, false);
        assert!(mesh.parts[0].what.starts_with("19900 BGP sessions (the full mesh"), "{}", mesh.describe());
        assert_eq!(mesh.parts[0].bytes, 19_900 * (4 * 4096 + (40 << 10)));
        c.bgp.as_mut().unwrap().reflectors = vec![0, 1];
        let rr = estimate(&c, false);
        let part = rr.parts.iter().find(|p| p.what.contains("BGP sessions")).unwrap();
        assert_eq!(part.bytes, (1 + 2 * 198) * (4 * 16384 + (40 << 10)));
        assert!(rr.total * 10 < mesh.total, "{} {}", rr.describe(), mesh.describe());
    }

    #[test]
    fn the_routes_bgp_speakers_send_grow_with_nodes_squared_and_reflectors() {
        let mut b = crate::cluster::Bgp {
            as_number: 64512,
            reflectors: Vec::new(),
            cluster_id: std::net::Ipv4Addr::new(244, 0, 0, 1),
            timers: crate::bgp::Timers::default(),
            start_spread: crate::time::Duration::ZERO,
        };
        assert_eq!(b.routes_sent(8, 1), 56);
        assert_eq!(b.routes_sent(8, 3), 168);
        // What a 1,000-node run with 2 reflectors announced (summary.json `routes_announced`).
        b.reflectors = vec![0, 1];
        assert_eq!(b.routes_sent(1000, 1), 1_997_998);
        // At 5,000 nodes that is 50 M routes: refused on a 24 GB machine (the cap is 80% of
        // what is available), not killed half-way.
        assert_eq!(b.routes_sent(5000, 1), 49_989_998);
        assert!(b.routes_sent(5000, 1) * PER_BGP_ROUTE > 20 << 30);
        let kind = WorkloadKind::UdpCbr { rate: Bandwidth(1_000_000), payload: 100 };
        let mut c = cluster(250, 1, kind, &[(0, 1)]);
        c.cni = Cni::CalicoIpip;
        c.bgp = Some(b);
        let e = estimate(&c, false);
        let part = e.parts.iter().find(|p| p.what.contains("routes the BIRD speakers send")).unwrap();
        assert_eq!(part.bytes, (2 * 248 + 2 * 249 * 249) * PER_BGP_ROUTE, "{}", e.describe());
    }

    #[test]
    fn small_clusters_need_little_and_nodes_grow_quadratically() {
        let kind = WorkloadKind::UdpCbr { rate: Bandwidth(100_000_000), payload: 1000 };
        let small = estimate(&cluster(2, 1, kind.clone(), &[(0, 1)]), false);
        assert!(small.total < 20 << 20, "{}", small.describe());
        let big = estimate(&cluster(200, 1, kind, &[(0, 1)]), false);
        let peers = big.parts.iter().find(|p| p.what.contains("per-peer")).unwrap();
        assert!(peers.what.starts_with("39800 per-peer entries"), "{}", peers.what);
    }

    #[test]
    fn a_sender_faster_than_its_core_needs_no_more_than_a_slow_one() {
        // The sender blocks on its socket: asking for 10 Gbit/s of 64 B datagrams costs no
        // more memory than what its core can send, and nothing queues without bound.
        let fast = WorkloadKind::UdpCbr { rate: Bandwidth(10_000_000_000), payload: 64 };
        let e = estimate(&cluster(2, 1, fast, &[(0, 1)]), true);
        let slower = WorkloadKind::UdpCbr { rate: Bandwidth(1_000_000_000), payload: 64 };
        let f = estimate(&cluster(2, 1, slower, &[(0, 1)]), true);
        assert_eq!(e.total, f.total, "{} vs {}", e.describe(), f.describe());
        assert!(!e.describe().contains("queued"), "{}", e.describe());
    }
}
