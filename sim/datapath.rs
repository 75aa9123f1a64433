//! A node's kernel as a pipeline: what happens to a frame from one device to the next.
//!
//! Each function is one kernel step (veth transmit, bridge input, IPv4 receive, routing,
//! neighbour output ...). A step mutates the state it owns (FDB learning, neighbour entries),
//! adds its cost from the cost profile to the running chain in [`Ctx`], and calls the next
//! step. Anything that must happen later or outside the node (a frame on a cable, a datagram
//! handed to an application, a drop to account, a timer) is returned as an [`Action`]; the
//! engine in `sim` carries it out once the chain's CPU time has been served. Steps never
//! touch the event queue, so each is testable on literal bytes.
//!
//! The underlay switch is here too (`switch`): it is a device, but with no CPU.

mod bridge;
mod ebpf;
mod filter;
#[cfg(test)]
mod fuzzed;
mod mtu;
mod nat;
mod stacked;
mod switch;
mod tunnel;

use std::net::Ipv4Addr;

use bridge::{bridge_forward, bridge_input};
use mtu::{fragment_and_send, icmp_rcv, reassemble, send_frag_needed};
use stacked::{ipvlan_xmit, macvlan_xmit, upper_for};
pub use switch::switch_input;
use tunnel::{ipip_rcv, ipip_xmit, ovs_input, udp_tunnel_rcv, udp_tunnel_xmit};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket,
};

use crate::addr::Mac;
use crate::cost::{Step, StepTimes};
use crate::net::neigh::{NeighState, MCAST_SOLICIT};
use crate::net::packet::Hop;
use crate::net::packet::{
    arp_frame, flow_hash, mac_of, set_ethernet, Packet, ETH_HEADER, IPV4_HEADER, UDP_HEADER,
};
use crate::net::route::{DevId, Route, RouteKind};
use crate::net::{LinkId, NsId};
use crate::observe::DropReason;
use crate::time::{Duration, Instant};
use crate::world::{DeviceKind, TunnelProto, World};

/// IP protocol number 4, IPv4 encapsulation (RFC 2003); smoltcp has no name for it.
const IPPROTO_IPIP: IpProtocol = IpProtocol::Unknown(4);

/// What a chain of kernel steps asks the engine to do once its CPU time is served.
#[derive(Debug)]
pub enum Action {
    /// Put the frame on a cable.
    Transmit { link: LinkId, pkt: Packet },
    /// A switch's flood: put the frame on each of `links`, in order, the last with `pkt`
    /// itself and the others with its [`Packet::flood_copy`]. The same as one `Transmit` per
    /// link; the engine makes the copies only where they are needed (`Simulation::flood`).
    TransmitFlood { links: Vec<LinkId>, pkt: Packet },
    /// Hand the datagram to the application socket in namespace `ns`.
    Deliver { ns: NsId, pkt: Packet },
    /// The application in namespace `ns` has read the datagram (`recvmsg` returned).
    Read { ns: NsId, pkt: Packet },
    /// Hand the TCP segment to namespace `ns`'s TCP stack.
    DeliverTcp { ns: NsId, pkt: Packet },
    /// The frame is gone, for this reason.
    Drop { pkt: Packet, reason: DropReason },
    /// Fire the ARP retransmit timer for `ip` in `ns` after `after`.
    ArpTimer { ns: NsId, ip: Ipv4Addr, after: Duration },
    /// Hand the packet to userspace process `proc` (`World::procs`), read from its device or
    /// its socket.
    ToUser { proc: usize, input: crate::userspace::Input, pkt: Packet },
    /// A data frame was copied by a flood into `copies` frames (the original included), all
    /// stamped with flood group `group` (`fresh`: the group is new, else it grows).
    Flood { group: u64, fresh: bool, copies: u32 },
}

/// The running state of one chain of steps on one core.
pub struct Ctx {
    /// When the core started this chain.
    pub start: Instant,
    /// CPU time used so far.
    pub cost: Duration,
    /// `cost` split by step.
    pub steps: StepTimes,
    /// Device steps taken.
    pub hops: u64,
    pub actions: Vec<Action>,
    /// Forwarding in hardware (a fabric router): steps cost no CPU time.
    hardware: bool,
    /// The core's input backlog (`netdev_max_backlog`) is full: a veth transmit in this chain
    /// is dropped (`enqueue_to_backlog`). Set by the engine for process-context chains.
    pub backlog_full: bool,
    /// A veth in this chain queued the frame to the core's backlog.
    pub used_backlog: bool,
}

impl Ctx {
    pub fn new(start: Instant) -> Self {
        Ctx {
            start,
            cost: Duration::ZERO,
            steps: [Duration::ZERO; Step::COUNT],
            hops: 0,
            actions: Vec::new(),
            hardware: false,
            backlog_full: false,
            used_backlog: false,
        }
    }
    /// A chain on a hardware forwarder: steps are counted but cost nothing.
    pub fn hardware(start: Instant) -> Self {
        Ctx { hardware: true, ..Ctx::new(start) }
    }
    /// The time "now" inside the chain: start plus the CPU time spent so far.
    pub fn now(&self) -> Instant {
        self.start + self.cost
    }
    /// One device step costing `d`, spent on `step`.
    pub fn charge(&mut self, step: Step, d: Duration) {
        self.add(step, d);
        self.hops += 1;
    }
    /// More CPU time for the current step, without counting another device step.
    pub fn add(&mut self, step: Step, d: Duration) {
        if !self.hardware {
            self.cost += d;
            self.steps[step as usize] += d;
        }
    }
    fn drop(&mut self, pkt: Packet, reason: DropReason) {
        self.actions.push(Action::Drop { pkt, reason });
    }
}

/// Records a hop on a traced packet.
fn hop(w: &World, cx: &Ctx, pkt: &mut Packet, dev: DevId, action: &str, why: impl FnOnce() -> String) {
    if let Some(t) = pkt.meta.trace.as_mut() {
        let d = &w.devices[dev];
        t.push(Hop {
            time_ns: cx.now().as_nanos(),
            place: w.place(d.ns),
            device: d.name.clone(),
            action: action.to_string(),
            why: why(),
            size: pkt.frame.len(),
        });
    }
}

fn capture(w: &mut World, cx: &Ctx, dev: DevId, pkt: &Packet) {
    if let Some(p) = w.pcaps[dev].as_mut() {
        // A super-packet's TCP checksum is partial (`net::gso`): the capture gets it complete.
        let full;
        let frame = match pkt.meta.gso {
            Some(g) => {
                let mut f = pkt.frame.clone();
                crate::net::gso::fill_checksums(&mut f, g.encap);
                full = f;
                &full[..]
            }
            None => &pkt.frame[..],
        };
        let bytes = if p.is_raw() { &frame[ETH_HEADER..] } else { frame };
        p.record(cx.now(), bytes);
    }
}

/// A socket in namespace `ns` sends the IPv4/UDP datagram in `pkt` (Ethernet header blank).
pub fn udp_send(w: &mut World, cx: &mut Ctx, ns: NsId, mut pkt: Packet) {
    let payload = pkt.frame.len() - ETH_HEADER - 28;
    cx.charge(Step::Socket, w.costs.udp_send);
    cx.add(Step::Copy, w.costs.copy(payload));
    let eth0 = w.netns[ns].devices.get(1).copied().unwrap_or(0);
    hop(w, cx, &mut pkt, eth0, "sendmsg", || format!("UDP socket, {payload} B payload"));
    ip_output(w, cx, ns, pkt);
}

/// A TCP stack in namespace `ns` sends the segment in `pkt` (Ethernet header blank):
/// `tcp_transmit_skb`, then `ip_queue_xmit` routes it as any local packet.
pub fn tcp_output(w: &mut World, cx: &mut Ctx, ns: NsId, mut pkt: Packet) {
    cx.charge(Step::Tcp, w.costs.tcp_xmit);
    let eth0 = w.netns[ns].devices.get(1).copied().unwrap_or(0);
    let len = pkt_len(&pkt);
    hop(w, cx, &mut pkt, eth0, "tcp xmit", || format!("TCP segment, {len} B"));
    ip_output(w, cx, ns, pkt);
}

fn pkt_len(pkt: &Packet) -> usize {
    pkt.frame.len() - ETH_HEADER
}

/// Routes a locally generated packet (`ip_route_output_key`, then [`ip_finish_output`]).
fn ip_output(w: &mut World, cx: &mut Ctx, ns: NsId, mut pkt: Packet) {
    if w.has_netfilter(ns) {
        let dev = w.netns[ns].devices[0];
        match nat::netfilter(w, cx, ns, dev, crate::proxy::Hook::Output, pkt) {
            Some(p) => pkt = p,
            None => return,
        }
    }
    ip_route_output(w, cx, ns, pkt)
}

/// The routing half of [`ip_output`], without the OUTPUT netfilter hook.
fn ip_route_output(w: &mut World, cx: &mut Ctx, ns: NsId, mut pkt: Packet) {
    let dst = Ipv4Packet::new_unchecked(pkt.ip()).dst_addr();
    cx.charge(Step::Routing, w.costs.fib_lookup);
    // The LOCAL table comes first (rule 0): a packet to one of the namespace's own addresses
    // leaves through `lo` (`ip_route_output_key_hash_rcu`: RTN_LOCAL, `dev_out` = loopback).
    if w.netns[ns].local.lookup(dst).is_some_and(|r| r.kind == RouteKind::Local) {
        let lo = w.netns[ns].devices[0];
        hop(w, cx, &mut pkt, lo, "route", || format!("local {dst} via lo"));
        set_ethernet(&mut pkt.frame, Mac([0; 6]), Mac([0; 6]), EthernetProtocol::Ipv4);
        return dev_xmit(w, cx, lo, pkt);
    }
    let Some(route) = w.netns[ns].main.lookup(dst).cloned() else {
        let dev = w.netns[ns].devices[0];
        hop(w, cx, &mut pkt, dev, "drop", || format!("no route to {dst} (ENETUNREACH)"));
        return cx.drop(pkt, DropReason::NoRoute);
    };
    ip_finish_output(w, cx, ns, &route, dst, pkt, None);
}

/// After routing: pick the next hop (ECMP by flow hash), check the MTU (the route's, else the
/// device's), and hand the packet to the device's output path. `in_dev` is the ingress device
/// of a forwarded packet (`None` for a local one).
fn ip_finish_output(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    route: &Route,
    dst: Ipv4Addr,
    mut pkt: Packet,
    in_dev: Option<DevId>,
) {
    let hash = if route.ecmp.is_empty() { 0 } else { flow_hash(&pkt.frame) };
    let (dev, gw) = route.nexthop(hash);
    // POSTROUTING, on the route already chosen (ip_output -> NF_INET_POST_ROUTING ->
    // ip_finish_output).
    if pkt.meta.ct_unconfirmed.is_some() && w.has_netfilter(ns) {
        match nat::postrouting(w, cx, ns, route, dev, pkt) {
            Some(p) => pkt = p,
            None => return,
        }
    }
    let (len, df, tcp) = {
        let ip = Ipv4Packet::new_unchecked(pkt.ip());
        (ip.total_len() as u32, ip.dont_frag(), ip.next_header() == IpProtocol::Tcp)
    };
    let mut mtu = route.mtu.unwrap_or(w.devices[dev].mtu);
    if in_dev.is_none() {
        if let Some(&p) = w.netns[ns].pmtu.get(&dst) {
            mtu = mtu.min(p);
        }
    }
    let action = if in_dev.is_some() { "forward" } else { "route" };
    hop(w, cx, &mut pkt, dev, action, || describe_route(w, route, dev, gw, dst));
    let nh = gw.unwrap_or(dst);
    if let Some(g) = pkt.meta.gso {
        // ip_finish_output_gso: a super-packet whose segments fit goes on whole
        // (`skb_gso_validate_network_len`); one whose segments do not is cut in software and
        // each segment takes the ordinary path (DF: "fragmentation needed").
        let seg = crate::net::gso::network_header_len(&pkt.frame, g.encap)
            .map_or(len, |h| (h + g.size as usize) as u32);
        if seg <= mtu {
            return dev_output(w, cx, ns, dev, nh, pkt);
        }
        for p in software_gso(w, cx, pkt) {
            ip_finish_output(w, cx, ns, route, dst, p, in_dev);
        }
        return;
    }
    if len <= mtu {
        return dev_output(w, cx, ns, dev, nh, pkt);
    }
    match in_dev {
        // ip_forward: DF set and too big: "fragmentation needed" back to the sender.
        Some(_) if df => {
            hop(w, cx, &mut pkt, dev, "drop", || {
                format!("{len} B > MTU {mtu} with DF: ICMP frag needed sent")
            });
            send_frag_needed(w, cx, ns, &pkt, mtu);
            cx.drop(pkt, DropReason::MtuExceeded)
        }
        // TCP sets DF on every segment and never fragments: once the path MTU is known (an
        // ICMP "fragmentation needed" lowered `pmtu`), `tcp_mtu_reduced` shrinks the MSS and
        // what goes out is cut to fit (`tcp_fragment`, net/ipv4/tcp_output.c). smoltcp keeps
        // its MSS, so the kernel cuts its segment where Linux's TCP would have.
        None if df && tcp => {
            let fit = crate::net::gso::network_header_len(&pkt.frame, crate::net::gso::Encap::Plain)
                .and_then(|h| (mtu as usize).checked_sub(h))
                .filter(|&size| size > 0)
                .and_then(|size| {
                    let g = crate::net::gso::Gso { size: size as u16, encap: crate::net::gso::Encap::Plain };
                    crate::net::gso::segment(&pkt.frame, g)
                });
            let Some(frames) = fit else { return cx.drop(pkt, DropReason::MtuExceeded) };
            hop(w, cx, &mut pkt, dev, "segment", || {
                format!("{len} B TCP segment > path MTU {mtu}: {} segments (MSS lowered)", frames.len())
            });
            for seg in Packet::segments(pkt.meta, frames) {
                dev_output(w, cx, ns, dev, nh, seg);
            }
        }
        // A socket with IP_PMTUDISC_DO: EMSGSIZE, nothing sent.
        None if pkt.meta.pmtudisc_do => {
            hop(w, cx, &mut pkt, dev, "drop", || {
                format!("{len} B > path MTU {mtu}: EMSGSIZE (IP_PMTUDISC_DO)")
            });
            cx.drop(pkt, DropReason::MtuExceeded)
        }
        // Fragment: forwarded packets without DF, local ones under IP_PMTUDISC_WANT.
        _ => fragment_and_send(w, cx, ns, dev, nh, pkt, mtu),
    }
}

/// Sends an IPv4 packet out of `dev` towards next hop `nh`: L2 devices resolve the neighbour,
/// L3 tunnels encapsulate straight away.
fn dev_output(w: &mut World, cx: &mut Ctx, ns: NsId, dev: DevId, nh: Ipv4Addr, pkt: Packet) {
    match w.devices[dev].kind {
        DeviceKind::Ipip => ipip_xmit(w, cx, ns, dev, nh, pkt),
        DeviceKind::IpvlanL3 { lower } => ipvlan_xmit(w, cx, dev, lower, pkt),
        DeviceKind::Tun { proc } => {
            // A tun without IFF_VNET_HDR (flanneld's) takes no GSO: `validate_xmit_skb` cuts a
            // super-packet in software before `tun_net_xmit`.
            for mut pkt in software_gso(w, cx, pkt) {
                capture(w, cx, dev, &pkt);
                hop(w, cx, &mut pkt, dev, "to user", || format!("tun: queued for {}", w.procs[proc].name));
                cx.actions.push(Action::ToUser { proc, input: crate::userspace::Input::Device, pkt });
            }
        }
        _ => neigh_output(w, cx, ns, dev, nh, pkt),
    }
}

/// The source address the kernel picks to reach `dst` from `ns`: the route's `src`, else the
/// first address of the route's device.
pub(crate) fn source_for(w: &World, ns: NsId, dst: Ipv4Addr) -> Option<Ipv4Addr> {
    let r = w.netns[ns].main.lookup(dst)?;
    r.src.or_else(|| w.devices[r.dev].addrs.first().map(|a| a.0))
}

fn next_ident(w: &mut World, ns: NsId) -> u16 {
    let n = &mut w.netns[ns];
    let id = n.next_ident;
    n.next_ident = n.next_ident.wrapping_add(1);
    id
}

fn describe_route(w: &World, r: &Route, dev: DevId, gw: Option<Ipv4Addr>, dst: Ipv4Addr) -> String {
    let name = &w.devices[dev].name;
    let ecmp = if r.ecmp.len() > 1 { format!(" (ECMP, {} paths)", r.ecmp.len()) } else { String::new() };
    let dst_net = if r.dst.prefix() == 0 { "default".to_string() } else { r.dst.to_string() };
    // A route BIRD installed says so, as `ip route` shows it.
    let proto = if r.proto == crate::net::route::Proto::Bird { " proto bird" } else { "" };
    match gw {
        Some(gw) => format!("{dst} matches {dst_net} via {gw} dev {name}{proto}{ecmp}"),
        None => format!("{dst} matches {dst_net} dev {name}{proto} (on-link)"),
    }
}

/// Resolves the next hop and sends (`neigh_resolve_output`).
fn neigh_output(w: &mut World, cx: &mut Ctx, ns: NsId, dev: DevId, nh: Ipv4Addr, mut pkt: Packet) {
    cx.charge(Step::Ip, w.costs.neigh_output);
    if let Some(n) = w.netns[ns].neigh.lookup(nh) {
        let src = w.devices[dev].mac;
        set_ethernet(&mut pkt.frame, n.mac, src, EthernetProtocol::Ipv4);
        return dev_xmit(w, cx, dev, pkt);
    }
    hop(w, cx, &mut pkt, dev, "queue", || format!("next hop {nh} unresolved: waiting for ARP"));
    let src_ip = Ipv4Packet::new_unchecked(pkt.ip()).src_addr();
    let (fresh, evicted) = w.netns[ns].neigh.enqueue(nh, dev, pkt);
    if let Some(old) = evicted {
        cx.drop(old, DropReason::NeighbourQueueFull);
    }
    if fresh {
        send_arp_request(w, cx, ns, dev, nh, Some(src_ip));
        cx.actions.push(Action::ArpTimer { ns, ip: nh, after: crate::net::neigh::RETRANS_TIME });
    }
}

/// Sends a who-has for `target` out of `dev`. The sender address is the queued packet's source
/// when it is local (arp_announce = 0), else an address of the device or the namespace.
fn send_arp_request(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    dev: DevId,
    target: Ipv4Addr,
    hint: Option<Ipv4Addr>,
) {
    let is_local = |a: Ipv4Addr| w.netns[ns].local.lookup(a).is_some_and(|r| r.kind == RouteKind::Local);
    // inet_select_addr: the device's own address, else any non-loopback address of the
    // namespace (a Calico cali* device has none of its own).
    let any_addr = || {
        w.netns[ns]
            .devices
            .iter()
            .flat_map(|&d| w.devices[d].addrs.iter())
            .map(|a| a.0)
            .find(|a| !a.is_loopback())
    };
    let src =
        hint.filter(|a| is_local(*a)).or_else(|| w.devices[dev].addrs.first().map(|a| a.0)).or_else(any_addr);
    let Some(src) = src else { return };
    let frame = arp_frame(ArpOperation::Request, w.devices[dev].mac, src, Mac::BROADCAST, target);
    let pkt = Packet { frame, meta: control_meta(w) };
    dev_xmit(w, cx, dev, pkt);
}

/// Metadata for a control frame the kernel creates: traced when tracing everything.
fn control_meta(w: &World) -> crate::net::packet::Meta {
    crate::net::packet::Meta { trace: w.trace_control.then(Default::default), ..Default::default() }
}

/// A control frame reached the end of its life normally: keep its trace.
fn consume(w: &mut World, mut pkt: Packet) {
    if let Some(t) = pkt.meta.trace.take() {
        w.control_hops.extend(*t);
    }
}

/// The ARP retransmit timer for `ip` in `ns` fired.
pub fn arp_timer(w: &mut World, cx: &mut Ctx, ns: NsId, ip: Ipv4Addr) {
    let Some(inc) = w.netns[ns].neigh.incomplete_mut(ip) else {
        return;
    };
    inc.probes += 1;
    let dev = inc.dev;
    if inc.probes >= MCAST_SOLICIT {
        for mut pkt in w.netns[ns].neigh.fail(ip) {
            hop(w, cx, &mut pkt, dev, "drop", || {
                format!("no ARP reply from {ip} after {MCAST_SOLICIT} probes")
            });
            cx.drop(pkt, DropReason::UnresolvedNeighbour);
        }
        return;
    }
    send_arp_request(w, cx, ns, dev, ip, None);
    cx.actions.push(Action::ArpTimer { ns, ip, after: crate::net::neigh::RETRANS_TIME });
}

/// Transmits a frame on a device (`dev_queue_xmit`).
fn dev_xmit(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    let software_gso_here = matches!(w.devices[dev].kind, DeviceKind::Nic { .. })
        && pkt.meta.gso.is_some_and(|g| !nic_segments(w.offloads(w.devices[dev].ns), g.encap));
    // Taps see what the driver is handed (`dev_queue_xmit_nit` in `xmit_one`): a super-packet
    // the NIC cuts, or the segments software GSO cut before it (`validate_xmit_skb`).
    if !software_gso_here {
        capture(w, cx, dev, &pkt);
    }
    match w.devices[dev].kind {
        DeviceKind::Veth { peer } => {
            if w.service_bpf && w.is_pod_facing(dev) {
                // tc egress towards the pod: reverse translation of service replies.
                match nat::bpf_reverse(w, cx, dev, pkt) {
                    Some(p) => pkt = p,
                    None => return,
                }
            }
            if cx.backlog_full {
                // veth_xmit -> __netif_rx -> enqueue_to_backlog: the core's input queue holds
                // netdev_max_backlog packets (net/core/dev.c); softnet_stat counts the drop.
                hop(w, cx, &mut pkt, dev, "drop", || "per-CPU backlog full (netdev_max_backlog)".into());
                return cx.drop(pkt, DropReason::BacklogFull);
            }
            cx.used_backlog = true;
            cx.charge(Step::Veth, w.costs.veth_xmit);
            hop(w, cx, &mut pkt, dev, "xmit", || format!("veth to peer {}", w.devices[peer].name));
            dev_rx(w, cx, peer, pkt);
        }
        DeviceKind::Bridge { .. } => {
            // The host stack sends out of the bridge: forward by FDB as if from no port.
            bridge_forward(w, cx, dev, None, pkt);
        }
        DeviceKind::Nic { tx } => {
            if software_gso_here {
                // validate_xmit_skb: the NIC lacks the offload, so the kernel cuts the
                // super-packet when the qdisc hands it to the driver (it held it as one skb):
                // the segments' CPU is charged here, the bytes are cut where the frames go on
                // the cable (`enqueue`), as with TSO; taps see the segments.
                let g = pkt.meta.gso.expect("software_gso_here");
                let n = crate::net::gso::segment_count(&pkt.frame, g) as u64;
                cx.add(Step::Offload, w.costs.gso_segment * n);
                cx.charge(Step::Nic, w.costs.nic_xmit * n);
                if w.pcaps[dev].is_some() {
                    for seg in crate::net::gso::segment(&pkt.frame, g).unwrap_or_default() {
                        capture(w, cx, dev, &Packet { frame: seg, meta: Default::default() });
                    }
                }
                hop(w, cx, &mut pkt, dev, "xmit", || {
                    format!("NIC transmit to the underlay (GSO in software: {n} segments of {} B)", g.size)
                });
                pkt.meta.gso_software = true;
                cx.actions.push(Action::Transmit { link: tx, pkt });
                return;
            }
            cx.charge(Step::Nic, w.costs.nic_xmit);
            let gso = pkt.meta.gso;
            hop(w, cx, &mut pkt, dev, "xmit", || match gso {
                Some(g) => {
                    format!("NIC transmit to the underlay (TSO: segments of {} B in hardware)", g.size)
                }
                None => "NIC transmit to the underlay".into(),
            });
            cx.actions.push(Action::Transmit { link: tx, pkt });
        }
        DeviceKind::Loopback => {
            hop(w, cx, &mut pkt, dev, "xmit", || "loopback".into());
            netif_receive(w, cx, dev, pkt);
        }
        DeviceKind::Ipip => unreachable!("L3 tunnels are entered through dev_output, never with a frame"),
        DeviceKind::UdpTunnel(_) => udp_tunnel_xmit(w, cx, dev, pkt),
        DeviceKind::Macvlan { lower } => macvlan_xmit(w, cx, dev, lower, pkt),
        DeviceKind::IpvlanL3 { .. } | DeviceKind::Tun { .. } => {
            unreachable!("L3 devices are entered through dev_output, never with a frame")
        }
        DeviceKind::Ovs(_) => unreachable!("the OVS datapath is only entered through its ports"),
        DeviceKind::UserPort { proc } => {
            // Weave's router reads MTU-sized frames: a super-packet is cut first (a departure
            // from Linux, whose AF_PACKET socket would read it whole; ARCHITECTURE.md).
            for mut pkt in software_gso(w, cx, pkt) {
                hop(w, cx, &mut pkt, dev, "to user", || format!("captured by {}", w.procs[proc].name));
                cx.actions.push(Action::ToUser { proc, input: crate::userspace::Input::Device, pkt });
            }
        }
    }
}

/// Whether a NIC with these offloads segments a super-packet wrapped as `encap` in hardware.
fn nic_segments(o: crate::cluster::Offloads, encap: crate::net::gso::Encap) -> bool {
    use crate::net::gso::Encap;
    o.tso
        && match encap {
            Encap::Plain => true,
            Encap::Ipip => o.tx_ipxip4_segmentation,
            Encap::Udp { .. } => o.tx_udp_tnl_segmentation,
        }
}

/// `skb_gso_segment` in software, where a device cannot take a super-packet: its segments,
/// each charged `gso_segment`; any other packet comes back alone.
fn software_gso(w: &World, cx: &mut Ctx, mut pkt: Packet) -> Vec<Packet> {
    let Some(g) = pkt.meta.gso.take() else { return vec![pkt] };
    let Some(frames) = crate::net::gso::segment(&pkt.frame, g) else { return vec![pkt] };
    cx.add(Step::Offload, w.costs.gso_segment * frames.len() as u64);
    Packet::segments(pkt.meta, frames).collect()
}

/// A frame arrives on a device from its wire or peer.
fn dev_rx(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    capture(w, cx, dev, &pkt);
    if w.service_bpf && w.is_pod_facing(dev) {
        // The eBPF service program on the host side of the pod's veth (tc ingress).
        if w.devices[dev].ebpf.is_none() {
            cx.charge(Step::Ebpf, w.costs.ebpf_prog);
        }
        match nat::bpf_from_pod(w, cx, dev, pkt) {
            Some(p) => pkt = p,
            None => return,
        }
    }
    if let Some(hook) = w.devices[dev].ebpf {
        return ebpf::ingress(w, cx, dev, hook, pkt);
    }
    if let Some(upper) = upper_for(w, dev, &pkt.frame) {
        cx.charge(Step::Macvlan, w.costs.macvlan_forward);
        let mut pkt = pkt;
        hop(w, cx, &mut pkt, upper, "rx", || {
            format!("demultiplexed to {} in {}", w.devices[upper].name, w.netns[w.devices[upper].ns].name)
        });
        capture(w, cx, upper, &pkt);
        return match w.devices[upper].kind {
            DeviceKind::IpvlanL3 { .. } => ip_rcv(w, cx, upper, pkt),
            _ => netif_receive(w, cx, upper, pkt),
        };
    }
    if !w.devices[dev].uppers.is_empty() {
        let (dst, _) = eth_dst_src(&pkt.frame);
        if dst.is_multicast() && !pkt.is_data() {
            // Broadcasts (ARP) reach every macvlan, and the lower device's own stack.
            let ups: Vec<DevId> = w.devices[dev]
                .uppers
                .iter()
                .copied()
                .filter(|&u| matches!(w.devices[u].kind, DeviceKind::Macvlan { .. }))
                .collect();
            for u in ups {
                capture(w, cx, u, &pkt);
                netif_receive(w, cx, u, pkt.flood_copy());
            }
        }
    }
    match w.devices[dev].master {
        Some(m) if matches!(w.devices[m].kind, DeviceKind::Ovs(_)) => ovs_input(w, cx, m, dev, pkt),
        Some(br) => bridge_input(w, cx, br, dev, pkt),
        None => netif_receive(w, cx, dev, pkt),
    }
}

/// A userspace process in `ns` sends `payload` to `dst:port` from its socket bound to
/// `sport` (and to `src` when given, else the address routing picks).
#[allow(clippy::too_many_arguments)]
pub fn user_send_udp(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    (src, sport): (Option<Ipv4Addr>, u16),
    (dst, port): (Ipv4Addr, u16),
    payload: &[u8],
    mut pkt: Packet,
    df: bool,
) {
    cx.charge(Step::Socket, w.costs.udp_send);
    let Some(src) = src.or_else(|| source_for(w, ns, dst)) else {
        return cx.drop(pkt, DropReason::NoRoute);
    };
    let ident = next_ident(w, ns);
    pkt.frame = crate::net::packet::udp_frame_with(src, dst, sport, port, payload, ident, df);
    ip_output(w, cx, ns, pkt);
}

/// A userspace process writes an IP packet into its tun device: it is received there.
pub fn tun_write(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    hop(w, cx, &mut pkt, dev, "rx", || "written to the tun by its process".into());
    capture(w, cx, dev, &pkt);
    ip_rcv(w, cx, dev, pkt);
}

/// A userspace process injects a frame through its capture port into the bridge.
pub fn user_inject(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    hop(w, cx, &mut pkt, dev, "inject", || "frame injected by its process".into());
    dev_rx(w, cx, dev, pkt);
}

/// A frame from the underlay reaches a node's NIC (NAPI poll).
pub fn nic_rx(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    cx.charge(Step::Nic, w.costs.nic_rx);
    if let Some(g) = pkt.meta.gso {
        // A packet GRO merged: the driver received each segment, GRO merged each.
        let n = crate::net::gso::segment_count(&pkt.frame, g) as u64;
        cx.add(Step::Nic, w.costs.nic_rx * (n - 1));
        cx.add(Step::Offload, w.costs.gro_receive * n);
        hop(w, cx, &mut pkt, dev, "rx", || format!("NIC receive, GRO: {n} segments merged"));
    }
    hop(w, cx, &mut pkt, dev, "rx", || "NIC receive".into());
    // A runt (shorter than its Ethernet header) never leaves the NIC's MAC; every later step
    // reads the header unchecked. Found by `fuzz/` (datapath target).
    let len = pkt.frame.len();
    if len < ETH_HEADER {
        hop(w, cx, &mut pkt, dev, "drop", || format!("runt frame of {len} B"));
        return cx.drop(pkt, DropReason::Malformed);
    }
    dev_rx(w, cx, dev, pkt);
}

fn eth_dst_src(frame: &[u8]) -> (Mac, Mac) {
    let eth = EthernetFrame::new_unchecked(frame);
    (mac_of(eth.dst_addr()), mac_of(eth.src_addr()))
}

/// Before a data frame is copied `copies` ways, puts it in a flood group so the copies are
/// accounted as one packet.
fn stamp_flood(w: &mut World, pkt: &mut Packet, copies: usize, out: &mut Vec<Action>) {
    if !pkt.is_data() || copies < 2 {
        return;
    }
    let fresh = pkt.meta.flood == 0;
    if fresh {
        w.next_flood += 1;
        pkt.meta.flood = w.next_flood;
    }
    out.push(Action::Flood { group: pkt.meta.flood, fresh, copies: copies as u32 });
}

/// `__netif_receive_skb`: accept frames addressed to this device, hand them to ARP or IPv4.
fn netif_receive(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    let Ok(eth) = EthernetFrame::new_checked(&pkt.frame[..]) else {
        return cx.drop(pkt, DropReason::Malformed);
    };
    let dst = mac_of(eth.dst_addr());
    let ethertype = eth.ethertype();
    if dst != w.devices[dev].mac && !dst.is_multicast() {
        hop(w, cx, &mut pkt, dev, "drop", || format!("frame for {dst}, not this device"));
        return cx.drop(pkt, DropReason::NotForThisHost);
    }
    match ethertype {
        EthernetProtocol::Arp => arp_rcv(w, cx, dev, pkt),
        EthernetProtocol::Ipv4 => ip_rcv(w, cx, dev, pkt),
        _ => cx.drop(pkt, DropReason::UnknownProtocol),
    }
}

/// `arp_process`: answer requests for local addresses, learn senders, release queued packets.
fn arp_rcv(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    cx.charge(Step::Arp, w.costs.arp_process);
    hop(w, cx, &mut pkt, dev, "arp", || "ARP input".into());
    let ns = w.devices[dev].ns;
    let Ok(repr) = ArpPacket::new_checked(&pkt.frame[ETH_HEADER..]).and_then(|p| ArpRepr::parse(&p)) else {
        return cx.drop(pkt, DropReason::Malformed);
    };
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = repr
    else {
        return cx.drop(pkt, DropReason::Malformed);
    };
    let sender_mac = mac_of(source_hardware_addr);
    let target_is_local = w.netns[ns]
        .local
        .lookup(target_protocol_addr)
        .is_some_and(|r| r.kind == RouteKind::Local && r.dst.prefix() == 32);
    let released = match operation {
        ArpOperation::Request if target_is_local => {
            // arp_ignore = 0: answer for any local address; learn the asker (neigh_event_ns).
            let q = w.netns[ns].neigh.update(source_protocol_addr, sender_mac, dev, NeighState::Reachable);
            arp_reply(w, cx, dev, pkt, target_protocol_addr, (sender_mac, source_protocol_addr));
            q
        }
        ArpOperation::Reply => {
            let known = w.netns[ns].neigh.lookup(source_protocol_addr).is_some()
                || w.netns[ns].neigh.incomplete_mut(source_protocol_addr).is_some();
            consume(w, pkt);
            if !known {
                return; // arp_accept = 0: unsolicited replies create no entry.
            }
            w.netns[ns].neigh.update(source_protocol_addr, sender_mac, dev, NeighState::Reachable)
        }
        ArpOperation::Request if proxy_arp_target(w, dev, target_protocol_addr) => {
            // proxy_arp: the target is routed out of another device, so answer with our MAC
            // (arp_process -> arp_fwd_proxy; Calico's cali* devices answer for 169.254.1.1).
            return arp_reply(w, cx, dev, pkt, target_protocol_addr, (sender_mac, source_protocol_addr));
        }
        _ => return consume(w, pkt), // A request for someone else: ignored.
    };
    for mut q in released {
        hop(w, cx, &mut q, dev, "resume", || format!("{source_protocol_addr} is at {sender_mac}"));
        cx.charge(Step::Ip, w.costs.neigh_output);
        set_ethernet(&mut q.frame, sender_mac, w.devices[dev].mac, EthernetProtocol::Ipv4);
        dev_xmit(w, cx, dev, q);
    }
}

/// Answers the ARP request `request` on `dev`: "`target` is at `dev`'s MAC", to the asker.
fn arp_reply(
    w: &mut World,
    cx: &mut Ctx,
    dev: DevId,
    request: Packet,
    target: Ipv4Addr,
    asker: (Mac, Ipv4Addr),
) {
    let reply = arp_frame(ArpOperation::Reply, w.devices[dev].mac, target, asker.0, asker.1);
    let meta = control_meta(w);
    w.arp_frames += 1;
    consume(w, request);
    dev_xmit(w, cx, dev, Packet { frame: reply, meta });
}

/// Whether `dev` answers ARP for `target` by proxy: proxy_arp on, and the target routed out of
/// a different device.
fn proxy_arp_target(w: &World, dev: DevId, target: Ipv4Addr) -> bool {
    let d = &w.devices[dev];
    d.proxy_arp
        && w.netns[d.ns].main.lookup(target).is_some_and(|r| r.kind == RouteKind::Unicast && r.dev != dev)
}

/// `ip_rcv` + `ip_route_input`: deliver locally or forward.
fn ip_rcv(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    cx.charge(Step::Ip, w.costs.ip_rcv);
    let ns = w.devices[dev].ns;
    let Ok(ip) = Ipv4Packet::new_checked(pkt.ip()) else {
        return cx.drop(pkt, DropReason::Malformed);
    };
    if !ip.verify_checksum() {
        return cx.drop(pkt, DropReason::BadChecksum);
    }
    if w.has_netfilter(ns) {
        match nat::netfilter(w, cx, ns, dev, crate::proxy::Hook::Prerouting, pkt) {
            Some(p) => pkt = p,
            None => return,
        }
    }
    let ip = Ipv4Packet::new_unchecked(pkt.ip());
    let (dst, ttl) = (ip.dst_addr(), ip.hop_limit());
    cx.charge(Step::Routing, w.costs.fib_lookup);
    if w.netns[ns].local.lookup(dst).is_some_and(|r| r.kind != RouteKind::Unicast) {
        return ip_local_deliver(w, cx, ns, dev, pkt);
    }
    if !w.netns[ns].ip_forward {
        hop(w, cx, &mut pkt, dev, "drop", || format!("{dst} is not local and ip_forward = 0"));
        return cx.drop(pkt, DropReason::NotForwarding);
    }
    let Some(route) = w.netns[ns].main.lookup(dst).cloned() else {
        hop(w, cx, &mut pkt, dev, "drop", || format!("no route to {dst}"));
        return cx.drop(pkt, DropReason::NoRoute);
    };
    if ttl <= 1 {
        hop(w, cx, &mut pkt, dev, "drop", || "TTL exceeded".into());
        return cx.drop(pkt, DropReason::TtlExceeded);
    }
    cx.charge(Step::Ip, w.costs.ip_forward);
    {
        let mut ip = Ipv4Packet::new_unchecked(pkt.ip_mut());
        ip.set_hop_limit(ttl - 1);
        ip.fill_checksum();
    }
    if w.netns[ns].filter.is_some() {
        match filter::hook(w, cx, ns, crate::net::filter::FORWARD, Some(dev), Some(route.dev), None, pkt) {
            Some(p) => pkt = p,
            None => return,
        }
    }
    ip_finish_output(w, cx, ns, &route, dst, pkt, Some(dev));
}

/// `tcp_v4_rcv`: a segment for the namespace's TCP stack (its checksum, socket lookup and
/// state machine are smoltcp's, once the chain's time has been served). A namespace with no
/// TCP stack has no socket on any TCP port.
fn tcp_rcv(w: &mut World, cx: &mut Ctx, ns: NsId, dev: DevId, mut pkt: Packet) {
    if !w.netns[ns].tcp_stack {
        hop(w, cx, &mut pkt, dev, "drop", || "no TCP socket in this namespace".into());
        return cx.drop(pkt, DropReason::PortUnreachable);
    }
    // tcp_v4_rcv's checksum check (`tcp_checksum_complete`); a packet GRO merged was
    // validated segment by segment before it was (CHECKSUM_UNNECESSARY).
    if pkt.meta.gso.is_none() {
        let ip = Ipv4Packet::new_unchecked(pkt.ip());
        let ok = smoltcp::wire::TcpPacket::new_checked(ip.payload())
            .is_ok_and(|t| crate::wire::csum::tcp_ok(t.into_inner(), ip.src_addr(), ip.dst_addr()));
        if !ok {
            hop(w, cx, &mut pkt, dev, "drop", || "TCP checksum error".into());
            return cx.drop(pkt, DropReason::BadChecksum);
        }
    }
    cx.charge(Step::Tcp, w.costs.tcp_rcv);
    let len = pkt_len(&pkt);
    hop(w, cx, &mut pkt, dev, "deliver", || format!("TCP segment, {len} B"));
    cx.actions.push(Action::DeliverTcp { ns, pkt });
}

/// Whether `pkt` is an ICMP port unreachable quoting a TCP segment.
fn icmp_about_tcp(pkt: &Packet) -> bool {
    let ip = Ipv4Packet::new_unchecked(pkt.ip());
    crate::wire::icmp_frag::parse_port_unreachable(ip.payload()).is_some_and(|q| q.len() > 9 && q[9] == 6)
}

/// `ip_local_deliver` -> `udp_rcv`: checksum, socket lookup, copy to the application.
fn ip_local_deliver(w: &mut World, cx: &mut Ctx, ns: NsId, dev: DevId, mut pkt: Packet) {
    let ip = Ipv4Packet::new_unchecked(pkt.ip());
    if ip.more_frags() || ip.frag_offset() != 0 {
        let Some(whole) = reassemble(w, cx, ns, pkt) else { return };
        pkt = whole;
        hop(w, cx, &mut pkt, dev, "reassemble", || "all fragments received".into());
    }
    if w.netns[ns].filter.is_some() {
        match filter::hook(w, cx, ns, crate::net::filter::INPUT, Some(dev), None, None, pkt) {
            Some(p) => pkt = p,
            None => return,
        }
    }
    if pkt.meta.ct_unconfirmed.is_some() {
        nat::confirm_local(w, cx, ns, &mut pkt);
    }
    let ip = Ipv4Packet::new_unchecked(pkt.ip());
    match ip.next_header() {
        IpProtocol::Icmp => {
            // A port unreachable about a TCP segment is `tcp_v4_err`'s, in the TCP stack.
            if w.netns[ns].tcp_stack && icmp_about_tcp(&pkt) {
                cx.charge(Step::Tcp, w.costs.tcp_rcv);
                hop(w, cx, &mut pkt, dev, "deliver", || "ICMP port unreachable about a TCP segment".into());
                return cx.actions.push(Action::DeliverTcp { ns, pkt });
            }
            return icmp_rcv(w, ns, pkt);
        }
        IpProtocol::Udp => {}
        IpProtocol::Tcp => return tcp_rcv(w, cx, ns, dev, pkt),
        IpProtocol::Unknown(4) => return ipip_rcv(w, cx, ns, pkt),
        _ => return cx.drop(pkt, DropReason::UnknownProtocol),
    }
    let ip = Ipv4Packet::new_unchecked(pkt.ip());
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
        return cx.drop(pkt, DropReason::Malformed);
    };
    // The checksum covers the datagram as its length field gives it (smoltcp's `len()`).
    let datagram = &ip.payload()[..usize::from(udp.len())];
    if !crate::wire::csum::udp_ok(datagram, src, dst) {
        return cx.drop(pkt, DropReason::BadChecksum);
    }
    let (port, payload) = (udp.dst_port(), udp.payload().len());
    if let Some(&tun) = w.netns[ns].tunnel_ports.get(&port) {
        return udp_tunnel_rcv(w, cx, tun, pkt);
    }
    if let Some(&proc) = w.netns[ns].user_ports.get(&port) {
        cx.charge(Step::Socket, w.costs.udp_deliver);
        hop(w, cx, &mut pkt, dev, "to user", || format!("UDP port {port}: socket of {}", w.procs[proc].name));
        return cx.actions.push(Action::ToUser { proc, input: crate::userspace::Input::Socket, pkt });
    }
    if !w.netns[ns].udp_ports.contains(&port) {
        hop(w, cx, &mut pkt, dev, "drop", || format!("no socket on UDP port {port}"));
        return cx.drop(pkt, DropReason::PortUnreachable);
    }
    cx.charge(Step::Socket, w.costs.udp_deliver);
    hop(w, cx, &mut pkt, dev, "deliver", || format!("UDP socket on port {port}, {payload} B payload"));
    cx.actions.push(Action::Deliver { ns, pkt });
}
