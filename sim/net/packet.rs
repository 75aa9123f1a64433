//! Packets as byte buffers, and the few builders the data plane needs.
//!
//! A [`Packet`] is an Ethernet frame in a `Vec<u8>` plus simulator metadata that no device may
//! base a forwarding decision on (flow tag for accounting, trace). Headers are emitted and
//! parsed with `smoltcp::wire`, so sizes, checksums and pcaps are real.

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    IpProtocol, Ipv4Packet, UdpPacket,
};

use serde::{Deserialize, Serialize};

use crate::addr::Mac;
use crate::time::Instant;

pub const ETH_HEADER: usize = 14;
pub const IPV4_HEADER: usize = 20;
pub const UDP_HEADER: usize = 8;
/// Linux's default TTL (`net.ipv4.ip_default_ttl`).
pub const DEFAULT_TTL: u8 = 64;

/// Direction of a datagram within a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server (CBR datagrams, requests).
    Forward,
    /// Server to client (responses).
    Reverse,
}

/// Accounting tag of a workload datagram. Control frames (ARP) carry none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataTag {
    pub flow: u32,
    pub dir: Dir,
    pub seq: u64,
    pub sent_at: Instant,
    pub payload: u32,
    /// The first datagram of a connection (it takes the proxy's new-connection path).
    pub opens: bool,
}

/// One step of a traced packet through a device: what `trace` and the report's packet paths
/// show. Carried in [`Meta::trace`], collected by `observe`, serialised by `summary`.
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

/// Accounting tag of a TCP segment: the flow and the connection of it that sent it. TCP
/// segments carry no [`DataTag`] (they are not datagrams: packet conservation is about those).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTag {
    pub flow: u32,
    pub conn: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub data: Option<DataTag>,
    /// Set on the segments of a TCP workload's connections.
    pub tcp: Option<TcpTag>,
    /// Hops taken so far, when this packet is traced.
    pub trace: Option<Box<Vec<Hop>>>,
    /// Flood group of a data packet copied by a bridge or switch flood (0: not a copy).
    pub flood: u64,
    /// Tunnel metadata set by an eBPF program for a `collect_md` tunnel device (the
    /// `bpf_skb_set_tunnel_key` call): remote endpoint and VNI.
    pub tunnel_key: Option<(Ipv4Addr, u32)>,
    /// Send-buffer bytes this frame gives back to the socket that sent it (the datagram's
    /// `data.flow` and `data.dir`) when it leaves the host: the skb's truesize, carried by one
    /// frame of the send (0: none).
    pub sk_wmem: u32,
    /// The sending socket uses IP_PMTUDISC_DO (never fragment locally: EMSGSIZE instead);
    /// otherwise IP_PMTUDISC_WANT, Linux's default for UDP.
    pub pmtudisc_do: bool,
    /// The conntrack state the namespace's netfilter gave this packet at PREROUTING or OUTPUT
    /// (what `-m conntrack --ctstate` sees on the later hooks).
    pub ct: crate::net::filter::CtState,
    /// The conntrack entry this packet created, unconfirmed until the packet leaves the
    /// namespace: a filter DROP destroys it, as the kernel frees an unconfirmed entry with
    /// its skb.
    pub ct_unconfirmed: Option<crate::net::conntrack::EntryId>,
    /// A TSO/GSO super-packet's segment size and encapsulation (`skb_shinfo(skb)->gso_size`,
    /// `gso_type`): devices pass it whole and the NIC, or software GSO where a device cannot,
    /// cuts it into segments (`net::gso`). `None`: an ordinary packet.
    pub gso: Option<crate::net::gso::Gso>,
    /// The TCP socket that sent this skb ((TCP host, socket slot) in `run`): while the skb
    /// waits in a NIC's qdisc or is being sent, its bytes count against that socket's TCP
    /// small queues budget.
    pub tsq: Option<(u32, u32)>,
    /// A super-packet software GSO cuts when the driver takes it (`validate_xmit_skb`: the NIC
    /// lacks the offload): each segment is an skb of its own that keeps the socket's
    /// destructor (`tcp_gso_segment`), so each gives its TCP small queues bytes back at its
    /// own TX completion. A super-packet the NIC cuts in hardware is one skb: its bytes come
    /// back when its last segment has been sent.
    pub gso_software: bool,
}

#[derive(Clone, Debug)]
pub struct Packet {
    pub frame: Vec<u8>,
    pub meta: Meta,
}

impl Meta {
    /// The workload flow whose traffic this is (a datagram's or a TCP segment's), for CPU
    /// accounting.
    pub fn flow(&self) -> Option<u32> {
        self.data.map(|d| d.flow).or(self.tcp.map(|t| t.flow))
    }
}

impl Packet {
    /// The packets a segmentation made of one packet with metadata `meta`, one per frame: the
    /// first keeps `meta` (and the trace), the others carry a copy without the trace, so the
    /// path is reported once.
    pub fn segments(meta: Meta, frames: Vec<Vec<u8>>) -> impl Iterator<Item = Packet> {
        let rest = Meta { trace: None, ..meta.clone() };
        let mut first = Some(meta);
        frames
            .into_iter()
            .map(move |frame| Packet { frame, meta: first.take().unwrap_or_else(|| rest.clone()) })
    }

    /// A copy made by a flood (bridge or switch). A traced data packet's copy keeps the history
    /// so far (each copy is the packet, as far as its receiver knows); a traced control frame's
    /// copy starts an empty trace, so the shared history is reported once.
    pub fn flood_copy(&self) -> Packet {
        let mut meta = self.meta.clone();
        if meta.data.is_none() {
            if let Some(t) = meta.trace.as_mut() {
                t.clear();
            }
        }
        Packet { frame: self.frame.clone(), meta }
    }

    pub fn is_data(&self) -> bool {
        self.meta.data.is_some()
    }
    pub fn len(&self) -> usize {
        self.frame.len()
    }
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }
    /// The IPv4 packet inside the frame (caller has checked the ethertype).
    pub fn ip(&self) -> &[u8] {
        &self.frame[ETH_HEADER..]
    }
    pub fn ip_mut(&mut self) -> &mut [u8] {
        &mut self.frame[ETH_HEADER..]
    }
}

pub fn eth_addr(m: Mac) -> EthernetAddress {
    EthernetAddress(m.0)
}
pub fn mac_of(e: EthernetAddress) -> Mac {
    Mac(e.0)
}

/// Builds an Ethernet frame holding an IPv4/UDP datagram with `payload_len` zero bytes of
/// payload. The Ethernet header is left zero: `neigh_output` writes it once the next hop's
/// MAC is known. IPv4 as Linux sends UDP with path MTU discovery on: DF set, TTL 64, DSCP 0.
pub fn udp_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload_len: usize,
    ident: u16,
) -> Vec<u8> {
    let udp_len = UDP_HEADER + payload_len;
    let ip_len = IPV4_HEADER + udp_len;
    let mut frame = vec![0u8; ETH_HEADER + ip_len];
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER..]);
        ip.set_version(4);
        ip.set_header_len(IPV4_HEADER as u8);
        ip.set_dscp(0);
        ip.set_ecn(0);
        ip.set_total_len(ip_len as u16);
        ip.set_ident(ident);
        ip.clear_flags();
        ip.set_dont_frag(true);
        ip.set_frag_offset(0);
        ip.set_hop_limit(DEFAULT_TTL);
        ip.set_next_header(IpProtocol::Udp);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
    }
    {
        let mut udp = UdpPacket::new_unchecked(&mut frame[ETH_HEADER + IPV4_HEADER..]);
        udp.set_src_port(sport);
        udp.set_dst_port(dport);
        udp.set_len(udp_len as u16);
        crate::wire::csum::fill_udp(udp.into_inner(), src, dst);
    }
    frame
}

/// Builds an Ethernet frame (header blank) holding a UDP datagram that carries `payload`, as a
/// userspace process's `sendto()` produces it: TTL 64, DF as given, checksum computed.
pub fn udp_frame_with(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    ident: u16,
    df: bool,
) -> Vec<u8> {
    let mut frame = udp_frame(src, dst, sport, dport, payload.len(), ident);
    frame[ETH_HEADER + IPV4_HEADER + UDP_HEADER..].copy_from_slice(payload);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER..]);
    ip.set_dont_frag(df);
    ip.fill_checksum();
    crate::wire::csum::fill_udp(&mut frame[ETH_HEADER + IPV4_HEADER..], src, dst);
    frame
}

/// Writes the Ethernet header of `frame`.
pub fn set_ethernet(frame: &mut [u8], dst: Mac, src: Mac, ethertype: EthernetProtocol) {
    let repr = EthernetRepr { src_addr: eth_addr(src), dst_addr: eth_addr(dst), ethertype };
    repr.emit(&mut EthernetFrame::new_unchecked(frame));
}

/// Builds an ARP request (broadcast) or reply frame. RFC 826; a request's target hardware
/// address is zero, as Linux sends it.
pub fn arp_frame(
    op: ArpOperation,
    src_mac: Mac,
    src_ip: Ipv4Addr,
    dst_mac: Mac,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let target_hw = if op == ArpOperation::Request { Mac([0; 6]) } else { dst_mac };
    let eth_dst = if op == ArpOperation::Request { Mac::BROADCAST } else { dst_mac };
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: eth_addr(src_mac),
        source_protocol_addr: src_ip,
        target_hardware_addr: eth_addr(target_hw),
        target_protocol_addr: target_ip,
    };
    let mut frame = vec![0u8; ETH_HEADER + repr.buffer_len()];
    set_ethernet(&mut frame, eth_dst, src_mac, EthernetProtocol::Arp);
    repr.emit(&mut ArpPacket::new_unchecked(&mut frame[ETH_HEADER..]));
    frame
}

/// Flow hash of a frame for RSS core selection and ECMP: a fixed mix of the IPv4 addresses,
/// protocol and ports (ARP: the two protocol addresses). Deterministic across runs.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return 0;
    };
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return 0;
            };
            let p = ip.payload();
            let ports = if p.len() >= 4 { u32::from_be_bytes([p[0], p[1], p[2], p[3]]) } else { 0 };
            tuple_hash(ip.src_addr(), ip.dst_addr(), ip.next_header().into(), ports)
        }
        _ => {
            let p = eth.payload();
            if p.len() < 28 {
                return 0;
            }
            let spa = Ipv4Addr::new(p[14], p[15], p[16], p[17]);
            let tpa = Ipv4Addr::new(p[24], p[25], p[26], p[27]);
            tuple_hash(spa, tpa, 0, 0)
        }
    }
}

/// The hash `flow_hash` computes, from the header fields (FNV-1a over 64-bit words).
/// `ports` is the source port in the high 16 bits and the destination port in the low 16.
pub fn tuple_hash(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ports: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in [u32::from(src) as u64, u32::from(dst) as u64, proto as u64, ports as u64] {
        h ^= x;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_bytes() {
        let mut f = udp_frame(Ipv4Addr::new(10, 244, 0, 2), Ipv4Addr::new(10, 244, 1, 2), 40000, 5201, 4, 1);
        set_ethernet(
            &mut f,
            Mac([0x0a, 0x58, 10, 244, 0, 1]),
            Mac([0x0a, 0x58, 10, 244, 0, 2]),
            EthernetProtocol::Ipv4,
        );
        #[rustfmt::skip]
        let expected: [u8; 46] = [
            // Ethernet: dst, src, type IPv4
            0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x02, 0x08, 0x00,
            // IPv4: v4 ihl5, tos 0, len 32, id 1, DF, ttl 64, udp, checksum, src, dst
            0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x23, 0xe1,
            0x0a, 0xf4, 0x00, 0x02, 0x0a, 0xf4, 0x01, 0x02,
            // UDP: 40000 -> 5201, len 12, checksum
            0x9c, 0x40, 0x14, 0x51, 0x00, 0x0c, 0x38, 0x59,
            // payload
            0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(f, expected);
        let ip = Ipv4Packet::new_checked(&f[ETH_HEADER..]).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
    }

    #[test]
    fn arp_request_bytes() {
        let f = arp_frame(
            ArpOperation::Request,
            Mac([0x0a, 0x58, 10, 244, 0, 2]),
            Ipv4Addr::new(10, 244, 0, 2),
            Mac::BROADCAST,
            Ipv4Addr::new(10, 244, 0, 1),
        );
        #[rustfmt::skip]
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x02, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x02, 0x0a, 0xf4, 0x00, 0x02,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0x00, 0x01,
        ];
        assert_eq!(f, expected);
    }
}

/// The memory an skb of `data` bytes is charged to a socket for (`skb->truesize`): the data
/// area rounded to the kmalloc cache `__alloc_skb` takes it from, with `skb_shared_info`
/// inside it, plus the `sk_buff` itself (`SKB_TRUESIZE`, include/linux/skbuff.h: on x86-64
/// `SKB_DATA_ALIGN(sizeof(struct sk_buff))` = 256 and `sizeof(struct skb_shared_info)` = 320).
/// kmalloc's caches above 192 bytes are powers of two up to 8192 (mm/slab_common.c), and
/// larger areas whole pages in powers of two, so with `skb_shared_info` inside (at least 320
/// bytes) the area is always a power of two.
pub fn skb_truesize(data: usize) -> u32 {
    let area = data.div_ceil(64) * 64 + 320;
    (area.next_power_of_two() + 256) as u32
}

/// Bytes in front of the data that a sender's skb reserves: `LL_RESERVED_SPACE` of an Ethernet
/// device (16) plus the 15 `__ip_append_data` adds for alignment.
pub const SEND_HEADROOM: usize = 16 + 15;
/// `NET_SKB_PAD`: headroom a driver reserves in a received skb (64 on x86-64).
pub const NET_SKB_PAD: usize = 64;

#[cfg(test)]
mod truesize_tests {
    use super::*;

    #[test]
    fn truesize_follows_the_kmalloc_caches() {
        // SK_WMEM_MAX is defined as 256 skbs of SKB_TRUESIZE(256) = 832 B each: 212,992 B.
        assert_eq!(256 + 256 + 320, 832);
        // A 64 B UDP payload: 64 + 28 + 31 = 123 B -> 128 + 320 = 448 -> kmalloc-512.
        assert_eq!(skb_truesize(64 + 28 + SEND_HEADROOM), 768);
        // 1,400 B: 1,459 -> 1,472 + 320 = 1,792 -> kmalloc-2048.
        assert_eq!(skb_truesize(1400 + 28 + SEND_HEADROOM), 2304);
    }
}
