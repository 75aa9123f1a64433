//! Userspace data-plane processes: flanneld's UDP proxy, Weave's sleeve router and
//! kube-proxy in userspace mode.
//!
//! A process is a single-threaded FIFO server of its own (both are one event loop). Each
//! packet it handles costs a wake-up (context switch), a read syscall and a copy in, a write
//! syscall and a copy out; then the kernel does the rest of the path on a core. `handle` is
//! the process logic: given the packet it read, what it writes, and where.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use smoltcp::wire::Ipv4Packet;

use crate::addr::Mac;
use crate::cluster::NodeId;
use crate::cost::CostProfile;
use crate::net::packet::{Packet, ETH_HEADER, UDP_HEADER};
use crate::net::route::{DevId, RouteTable};
use crate::net::NsId;
use crate::observe::DropReason;
use crate::time::{Duration, Instant};

/// flanneld's UDP backend port (backend/udp `defaultPort`).
pub const FLANNEL_UDP_PORT: u16 = 8285;
/// Weave's router port, used by sleeve (weaver `--port=6783`).
pub const WEAVE_SLEEVE_PORT: u16 = 6783;
/// Weave peer names are MACs, 6 bytes (router/peer_name_mac.go `NameSize`).
pub const WEAVE_NAME: usize = 6;

pub struct UserProc {
    pub name: String,
    pub node: NodeId,
    pub ns: NsId,
    pub kind: ProcKind,
    pub busy_until: Instant,
    /// CPU time served within the run.
    pub busy: Duration,
    pub packets: u64,
    /// What waits for the process: its tun queue and its socket's receive queue.
    pub queues: ProcQueues,
}

/// The bounded queues in front of a userspace process (drained in arrival order).
#[derive(Clone, Debug, Default)]
pub struct ProcQueues {
    /// Start times of device reads not yet started (the tun's `tx_ring`, or the capture
    /// port's packet queue).
    pub device: std::collections::VecDeque<Instant>,
    /// (start time, truesize) of socket reads not yet started.
    pub socket: std::collections::VecDeque<(Instant, u32)>,
    /// Bytes of `socket` (`sk_rmem_alloc`).
    pub socket_bytes: u64,
}

pub enum ProcKind {
    /// flanneld `udp` backend: reads IP packets from the `flannel0` tun, sends each raw as the
    /// payload of a UDP datagram to the owning node's flanneld (port 8285), and writes
    /// received payloads back into the tun (proxy_amd64.c `tun_to_udp`, `udp_to_tun`).
    FlannelUdp {
        tun: DevId,
        /// Subnet leases: pod subnet -> node IP (as routes `subnet via node`).
        leases: RouteTable,
    },
    /// Weave's router in sleeve mode: captures frames from the `weave` bridge through a pcap
    /// port, sends them to the peer owning the destination MAC (or every peer for broadcasts
    /// and unknown MACs) over UDP 6783 as `[sender name][src name][dst name][len][frame]`
    /// (router/sleeve.go, crypto.go `NonEncryptor`), injects received frames into the bridge.
    WeaveSleeve {
        port_dev: DevId,
        name: Mac,
        /// Every other peer: (node IP, peer name).
        peers: Vec<(Ipv4Addr, Mac)>,
        /// MAC -> peer that owns it, learned from received frames.
        macs: HashMap<Mac, (Ipv4Addr, Mac)>,
    },
    /// kube-proxy in userspace mode (pkg/proxy/userspace, v1.25): one listening UDP socket
    /// per Service port (the portal rules REDIRECT to it); for each client address a socket
    /// "connected" to a backend chosen round robin (`LoadBalancerRR`), closed after
    /// `UDPIdleTimeout` (250 ms) without traffic; replies are copied back to the client from
    /// the listening socket.
    KubeProxy(Box<KubeProxy>),
}

pub struct KubeProxy {
    /// Listening port -> (service, port index).
    pub portals: HashMap<u16, (usize, usize)>,
    /// The Services as this node's proxy last synced them.
    pub table: std::sync::Arc<crate::cluster::ServiceTable>,
    /// (listening port, client address) -> its backend connection.
    clients: HashMap<(u16, Ipv4Addr, u16), BackendConn>,
    /// Backend connection's local port -> (listening port, client address).
    by_port: HashMap<u16, (u16, Ipv4Addr, u16)>,
    /// Round-robin position per (service, port).
    rr: HashMap<(usize, usize), usize>,
    next_port: u16,
    /// The datagram handled last opened a backend connection.
    pub opened: bool,
    /// Connections opened per (service, endpoint pod).
    pub per_endpoint: std::collections::BTreeMap<(usize, crate::cluster::PodId), u64>,
}

struct BackendConn {
    backend: (Ipv4Addr, u16),
    local_port: u16,
    /// The address the client sent to (the REDIRECT target), which replies come from.
    local_addr: Ipv4Addr,
    last: Instant,
}

impl KubeProxy {
    pub fn new(
        portals: HashMap<u16, (usize, usize)>,
        table: std::sync::Arc<crate::cluster::ServiceTable>,
    ) -> Self {
        KubeProxy {
            portals,
            table,
            clients: HashMap::new(),
            by_port: HashMap::new(),
            rr: HashMap::new(),
            next_port: 32768,
            opened: false,
            per_endpoint: Default::default(),
        }
    }

    /// A local port for a new backend connection: the kernel's ephemeral range, in order,
    /// skipping the ones in use.
    fn alloc_port(&mut self) -> Option<u16> {
        for _ in 0..=(60999 - 32768) {
            let p = self.next_port;
            self.next_port = if p >= 60999 { 32768 } else { p + 1 };
            if !self.by_port.contains_key(&p) && !self.portals.contains_key(&p) {
                return Some(p);
            }
        }
        None
    }

    /// The backend a new connection to port `pi` of Service `si` goes to: the next ready
    /// endpoint round robin (`LoadBalancerRR.NextEndpoint`), counted; `None` without one.
    pub fn next_endpoint(&mut self, si: usize, pi: usize) -> Option<(Ipv4Addr, u16)> {
        let svc = &self.table.services[si];
        let n = svc.ready().count();
        if n == 0 {
            return None;
        }
        let i = self.rr.entry((si, pi)).or_insert(0);
        let (_, e) = svc.ready().nth(*i % n).expect("fewer than n");
        *i = (*i + 1) % n;
        *self.per_endpoint.entry((si, e.pod)).or_default() += 1;
        Some((e.ip, svc.ports[pi].target_port))
    }

    fn handle(&mut self, now: Instant, pkt: Packet) -> Vec<Output> {
        self.opened = false;
        let ip = Ipv4Packet::new_unchecked(&pkt.frame[ETH_HEADER..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let udp = smoltcp::wire::UdpPacket::new_unchecked(ip.payload());
        let (sport, dport) = (udp.src_port(), udp.dst_port());
        let payload = udp.payload().to_vec();
        if let Some(&(si, pi)) = self.portals.get(&dport) {
            let key = (dport, src, sport);
            let idle = crate::proxy::userspace::UDP_IDLE_TIMEOUT;
            if let Some(c) = self.clients.get(&key) {
                if now.saturating_since(c.last) > idle {
                    let c = self.clients.remove(&key).expect("present");
                    self.by_port.remove(&c.local_port);
                }
            }
            if !self.clients.contains_key(&key) {
                let Some(backend) = self.next_endpoint(si, pi) else {
                    return vec![Output::Drop { pkt, reason: DropReason::ServiceNoEndpoints }];
                };
                let Some(local_port) = self.alloc_port() else {
                    return vec![Output::Drop { pkt, reason: DropReason::NoEphemeralPort }];
                };
                let conn = BackendConn { backend, local_port, local_addr: dst, last: now };
                self.opened = true;
                self.by_port.insert(local_port, key);
                self.clients.insert(key, conn);
            }
            let c = self.clients.get_mut(&key).expect("inserted");
            c.last = now;
            let (backend, local_port) = (c.backend, c.local_port);
            return vec![Output::Udp {
                src: None,
                sport: local_port,
                dst: backend.0,
                port: backend.1,
                payload,
                df: false,
                pkt,
            }];
        }
        // A backend's reply on a connection's local port: copy it to the client.
        let Some(&(listen, caddr, cport)) = self.by_port.get(&dport) else {
            return vec![Output::Drop { pkt, reason: DropReason::PortUnreachable }];
        };
        let c = self.clients.get_mut(&(listen, caddr, cport)).expect("indexed both ways");
        c.last = now;
        let local_addr = c.local_addr;
        vec![Output::Udp {
            src: Some(local_addr),
            sport: listen,
            dst: caddr,
            port: cport,
            payload,
            df: false,
            pkt,
        }]
    }
}

/// Where the process read the packet from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Its device (tun, pcap port): a packet leaving this node.
    Device,
    /// Its UDP socket: a datagram from a peer.
    Socket,
}

/// What the process writes.
#[derive(Debug)]
pub enum Output {
    /// `sendto()` on its UDP socket bound to `sport`, with DF on the outer header or not;
    /// `src` pins the source address (else routing picks it).
    Udp {
        src: Option<Ipv4Addr>,
        sport: u16,
        dst: Ipv4Addr,
        port: u16,
        payload: Vec<u8>,
        df: bool,
        pkt: Packet,
    },
    /// `write()` to the tun: an IP packet enters the kernel on `dev`.
    Tun {
        dev: DevId,
        pkt: Packet,
    },
    /// Frame injected into the bridge through the pcap port `dev`.
    Inject {
        dev: DevId,
        pkt: Packet,
    },
    Drop {
        pkt: Packet,
        reason: DropReason,
    },
}

impl UserProc {
    /// Handles one packet; returns what to write and the CPU time the process spent.
    pub fn handle(
        &mut self,
        costs: &CostProfile,
        now: Instant,
        input: Input,
        pkt: Packet,
    ) -> (Vec<Output>, Duration) {
        self.packets += 1;
        let len_in = pkt.frame.len();
        let out = match (&mut self.kind, input) {
            (ProcKind::FlannelUdp { leases, .. }, Input::Device) => flannel_out(leases, pkt),
            (ProcKind::FlannelUdp { tun, .. }, Input::Socket) => flannel_in(*tun, pkt),
            (ProcKind::WeaveSleeve { name, peers, macs, .. }, Input::Device) => {
                sleeve_out(*name, peers, macs, pkt)
            }
            (ProcKind::WeaveSleeve { port_dev, macs, .. }, Input::Socket) => sleeve_in(*port_dev, macs, pkt),
            (ProcKind::KubeProxy(k), _) => k.handle(now, pkt),
        };
        let len_out: usize = out
            .iter()
            .map(|o| match o {
                Output::Udp { payload, .. } => payload.len(),
                Output::Tun { pkt, .. } | Output::Inject { pkt, .. } => pkt.frame.len(),
                Output::Drop { .. } => 0,
            })
            .sum();
        let writes = out.iter().filter(|o| !matches!(o, Output::Drop { .. })).count() as u64;
        let cost = costs.context_switch
            + costs.syscall
            + costs.copy(len_in)
            + costs.syscall.saturating_mul(writes)
            + costs.copy(len_out);
        (out, cost)
    }
}

/// Decrements the TTL of the IP packet at `ip` with an incremental checksum update, as
/// flanneld's `decrement_ttl` does; false when it reaches zero.
fn decrement_ttl(ip: &mut [u8]) -> bool {
    let mut p = Ipv4Packet::new_unchecked(ip);
    let ttl = p.hop_limit();
    if ttl <= 1 {
        return false;
    }
    p.set_hop_limit(ttl - 1);
    p.fill_checksum();
    true
}

fn flannel_out(leases: &RouteTable, mut pkt: Packet) -> Vec<Output> {
    let dst = Ipv4Packet::new_unchecked(&pkt.frame[ETH_HEADER..]).dst_addr();
    let Some(node) = leases.lookup(dst).and_then(|r| r.gateway) else {
        return vec![Output::Drop { pkt, reason: DropReason::NoRoute }];
    };
    if !decrement_ttl(&mut pkt.frame[ETH_HEADER..]) {
        return vec![Output::Drop { pkt, reason: DropReason::TtlExceeded }];
    }
    let payload = pkt.frame[ETH_HEADER..].to_vec();
    // An ordinary UDP socket: path MTU discovery on (IP_PMTUDISC_WANT), so DF is set.
    vec![Output::Udp {
        src: None,
        sport: FLANNEL_UDP_PORT,
        dst: node,
        port: FLANNEL_UDP_PORT,
        payload,
        df: true,
        pkt,
    }]
}

fn flannel_in(tun: DevId, mut pkt: Packet) -> Vec<Output> {
    // The datagram's payload is the inner IP packet: keep a blank Ethernet header before it.
    let ip_hl = Ipv4Packet::new_unchecked(&pkt.frame[ETH_HEADER..]).header_len() as usize;
    pkt.frame.drain(ETH_HEADER..ETH_HEADER + ip_hl + UDP_HEADER);
    if !decrement_ttl(&mut pkt.frame[ETH_HEADER..]) {
        return vec![Output::Drop { pkt, reason: DropReason::TtlExceeded }];
    }
    vec![Output::Tun { dev: tun, pkt }]
}

fn sleeve_header(sender: Mac, src: Mac, dst: Mac, frame: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(3 * WEAVE_NAME + 2 + frame.len());
    b.extend_from_slice(&sender.0);
    b.extend_from_slice(&src.0);
    b.extend_from_slice(&dst.0);
    b.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    b.extend_from_slice(frame);
    b
}

fn sleeve_out(
    name: Mac,
    peers: &[(Ipv4Addr, Mac)],
    macs: &HashMap<Mac, (Ipv4Addr, Mac)>,
    pkt: Packet,
) -> Vec<Output> {
    let dst = Mac([pkt.frame[0], pkt.frame[1], pkt.frame[2], pkt.frame[3], pkt.frame[4], pkt.frame[5]]);
    let targets: Vec<(Ipv4Addr, Mac)> = match macs.get(&dst) {
        Some(&p) if !dst.is_multicast() => vec![p],
        _ => peers.to_vec(),
    };
    // Frames without DF go through a socket with IP_PMTUDISC_DONT; DF frames through the DF
    // sender (router/sleeve.go), so the outer DF follows the inner one.
    let df = u16::from_be_bytes([pkt.frame[12], pkt.frame[13]]) == 0x0800
        && Ipv4Packet::new_checked(&pkt.frame[ETH_HEADER..]).is_ok_and(|ip| ip.dont_frag());
    let mut out = Vec::with_capacity(targets.len());
    for (i, (ip, peer)) in targets.iter().enumerate() {
        let payload =
            sleeve_header(name, name, if targets.len() == 1 { *peer } else { Mac::BROADCAST }, &pkt.frame);
        let copy = if i + 1 == targets.len() { pkt.clone() } else { pkt.flood_copy() };
        out.push(Output::Udp {
            src: None,
            sport: WEAVE_SLEEVE_PORT,
            dst: *ip,
            port: WEAVE_SLEEVE_PORT,
            payload,
            df,
            pkt: copy,
        });
    }
    out
}

fn sleeve_in(port_dev: DevId, macs: &mut HashMap<Mac, (Ipv4Addr, Mac)>, mut pkt: Packet) -> Vec<Output> {
    let outer_src = Ipv4Packet::new_unchecked(&pkt.frame[ETH_HEADER..]).src_addr();
    let ip_hl = Ipv4Packet::new_unchecked(&pkt.frame[ETH_HEADER..]).header_len() as usize;
    let start = ETH_HEADER + ip_hl + UDP_HEADER;
    let body = &pkt.frame[start..];
    if body.len() < 3 * WEAVE_NAME + 2 + ETH_HEADER {
        return vec![Output::Drop { pkt, reason: DropReason::Malformed }];
    }
    let mut sender = [0u8; 6];
    sender.copy_from_slice(&body[..WEAVE_NAME]);
    let len = u16::from_be_bytes([body[3 * WEAVE_NAME], body[3 * WEAVE_NAME + 1]]) as usize;
    let frame_at = start + 3 * WEAVE_NAME + 2;
    // The carried frame must hold at least an Ethernet header (found by the datapath fuzz
    // target: a sleeve packet whose length field is 0 panicked reading the inner source MAC).
    if len < ETH_HEADER || pkt.frame.len() < frame_at + len {
        return vec![Output::Drop { pkt, reason: DropReason::Malformed }];
    }
    pkt.frame = pkt.frame[frame_at..frame_at + len].to_vec();
    let src = Mac([pkt.frame[6], pkt.frame[7], pkt.frame[8], pkt.frame[9], pkt.frame[10], pkt.frame[11]]);
    macs.insert(src, (outer_src, Mac(sender)));
    vec![Output::Inject { dev: port_dev, pkt }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeve_frame_bytes() {
        // [sender name][src peer][dst peer][length, big-endian][frame] (router/crypto.go).
        let frame = [0xaa, 0xbb, 0xcc];
        let b =
            sleeve_header(Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]), &frame);
        #[rustfmt::skip]
        let expected = [
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
            0x00, 0x03,
            0xaa, 0xbb, 0xcc,
        ];
        assert_eq!(b, expected);
    }

    /// A sleeve packet whose length field is shorter than an Ethernet header is malformed
    /// (the datapath fuzz target's crash-6f4f4da3: length 0 with bytes after it).
    #[test]
    fn a_sleeve_packet_carrying_less_than_a_frame_header_is_malformed() {
        for len in [0u8, 13] {
            let mut body = sleeve_header(
                Mac([2, 0, 0, 0, 0, 1]),
                Mac([2, 0, 0, 0, 0, 1]),
                Mac([2, 0, 0, 0, 0, 2]),
                &[0; 14],
            );
            body[3 * WEAVE_NAME + 1] = len;
            let frame = crate::net::packet::udp_frame_with(
                [192, 168, 0, 1].into(),
                [192, 168, 0, 3].into(),
                6784,
                6784,
                &body,
                1,
                true,
            );
            let pkt = Packet { frame, meta: Default::default() };
            let out = sleeve_in(0, &mut HashMap::default(), pkt);
            assert!(matches!(out[..], [Output::Drop { reason: DropReason::Malformed, .. }]), "length {len}");
        }
    }

    #[test]
    fn flannel_ttl_decrement_keeps_checksum_valid() {
        let mut f = crate::net::packet::udp_frame([10, 244, 0, 2].into(), [10, 244, 1, 2].into(), 1, 2, 0, 7);
        assert!(decrement_ttl(&mut f[ETH_HEADER..]));
        let ip = Ipv4Packet::new_checked(&f[ETH_HEADER..]).unwrap();
        assert_eq!(ip.hop_limit(), 63);
        assert!(ip.verify_checksum());
    }
}
