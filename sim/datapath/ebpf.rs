//! Cilium's eBPF datapath, as the tc programs behave (cilium bpf/bpf_lxc.c, bpf_overlay.c,
//! bpf_host.c): packets from a pod are handled on the host-side `lxc` device's ingress hook
//! and never walk the host's bridge or netfilter path.
//!
//! - `cil_from_container`: answers the pod's ARP for its gateway; checks the pod's egress
//!   policy (`handle_ipv4_from_lxc` -> `policy_can_egress4`, whatever the destination); a
//!   destination that is a local endpoint is redirected straight to that endpoint's veth; a
//!   remote pod CIDR in tunnel mode gets a tunnel key (remote node, VNI = source security
//!   identity) and goes to the `collect_md` tunnel device; in native routing `bpf_fib_lookup` +
//!   `bpf_redirect_neigh` send it out of the native device; anything else goes up the stack.
//! - `cil_from_overlay` and `cil_from_netdev`: a destination that is a local endpoint is
//!   redirected to it; anything else goes up the stack.
//! - `cil_from_host` (on what the host sends through `cilium_host`): like
//!   `cil_from_container`, local endpoints by redirect and remote pods through the tunnel or
//!   the native device, with the host's identity (presented as remote-node in the tunnel).
//!
//! Every delivery to a local endpoint first checks its ingress policy (`ipv4_local_delivery`
//! tail-calls the endpoint's `ipv4_policy` -> `policy_can_ingress4`) against the source's
//! identity: the sending endpoint's; the VNI from the overlay (`bpf_overlay.c`: `*identity =
//! key.tunnel_id`); or the ipcache's for the source address (`bpf_host.c`, and
//! `tail_ipv4_to_endpoint` for what the host sends, keeping host only for its own addresses).
//! A policy check is skipped for a reply of a connection the node tracks (`CT_REPLY`) and for
//! a Service hairpin (`hairpin_flow`, the service loopback address); every other packet is
//! looked up, and a new connection the policy allows is tracked (see
//! [`crate::world::cilium_policy::PolicyCt`]).

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Ipv4Packet};

use super::{dev_xmit, hop, mac_of, neigh_output, netif_receive, Ctx, Step};
use crate::cluster::NodeId;
use crate::net::conntrack::{Direction, TcpFlags, TcpVerdict, Tuple, L4};
use crate::net::packet::{set_ethernet, Packet, ETH_HEADER};
use crate::net::route::DevId;
use crate::net::NsId;
use crate::observe::DropReason;
use crate::time::Instant;
use crate::world::cilium_policy::{
    proto_name, Identity, PolicyCt, TrafficDirection, Verdict, REMOTE_NODE, WORLD,
};
use crate::world::{EbpfHook, World};

/// The source `lb4_local` gives a Service connection sent back to its own client.
use super::nat::CILIUM_SERVICE_LOOPBACK as SERVICE_LOOPBACK;

pub(super) fn ingress(w: &mut World, cx: &mut Ctx, dev: DevId, hook: EbpfHook, mut pkt: Packet) {
    cx.charge(Step::Ebpf, w.costs.ebpf_prog);
    let host = w.devices[dev].ns;
    let Ok(eth) = EthernetFrame::new_checked(&pkt.frame[..]) else {
        return cx.drop(pkt, DropReason::Malformed);
    };
    match eth.ethertype() {
        EthernetProtocol::Arp if hook == EbpfHook::FromContainer => return arp_responder(w, cx, dev, pkt),
        EthernetProtocol::Ipv4 => {}
        _ => return netif_receive(w, cx, dev, pkt),
    }
    let Ok(ip) = Ipv4Packet::new_checked(&pkt.frame[ETH_HEADER..]) else {
        return cx.drop(pkt, DropReason::Malformed);
    };
    let (src, dst, ttl) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
    let node = w.netns[host].node;
    let maps = w.netns[host].cilium.as_ref().expect("eBPF hooks only on Cilium nodes");
    let local = maps.endpoints.get(&dst).copied();
    let from_node = matches!(hook, EbpfHook::FromContainer | EbpfHook::FromHost);
    let remote = if from_node { maps.ipcache.lookup(dst).cloned() } else { None };
    // The endpoint the program serves (its `SECLABEL`) for `cil_from_container`: the one behind
    // this lxc, whatever source address the packet has (a reply the service program already
    // reverse-translated comes from the VIP); for the host's program, the source's endpoint.
    let src_ep = match hook {
        EbpfHook::FromContainer => lxc_endpoint(w, dev),
        _ => maps.endpoints.get(&src).copied(),
    };
    // The identity the tunnel carries: the sending endpoint's, else the host's, which "any node
    // encapsulating will map ... to be presented as REMOTE_NODE_ID" (bpf_overlay.c;
    // lib/encap.h `__encap_with_nodeid`: HOST_ID becomes LOCAL_NODE_ID).
    let fallback = if hook == EbpfHook::FromHost { REMOTE_NODE } else { WORLD };
    let (tunnel, identity) = (maps.tunnel, src_ep.map_or(fallback, |e| e.1));
    // The source identity the destination's ingress policy sees.
    let src_identity: Option<Identity> = match hook {
        EbpfHook::FromContainer => src_ep.map(|e| e.1),
        EbpfHook::FromOverlay => Some(pkt.meta.tunnel_key.map_or(WORLD, |(_, vni)| vni)),
        EbpfHook::FromNetdev | EbpfHook::FromHost => Some(maps.policy.ipcache.identity(node, src)),
    };
    if hook == EbpfHook::FromContainer {
        if let Some((lxc, id)) = src_ep {
            let remote_id = maps.policy.ipcache.identity(node, dst);
            let check = Check { dir: TrafficDirection::Egress, lxc, identity: id, remote: remote_id };
            pkt = match enforce(w, cx, host, dev, check, pkt) {
                Some(p) => p,
                None => return,
            };
        }
    }
    if local.is_none() && remote.is_none() {
        hop(w, cx, &mut pkt, dev, "ebpf", || format!("{dst} is not a Cilium endpoint: to the stack"));
        if hook == EbpfHook::FromOverlay {
            // Host delivery (`ipv4_host_delivery`): the decapsulated frame still carries the
            // sending node's MACs; the program hands it to the host stack addressed to it.
            let (own, src) =
                (w.devices[dev].mac, mac_of(EthernetFrame::new_unchecked(&pkt.frame[..]).src_addr()));
            set_ethernet(&mut pkt.frame, own, src, EthernetProtocol::Ipv4);
        }
        return netif_receive(w, cx, dev, pkt);
    }
    if ttl <= 1 {
        return cx.drop(pkt, DropReason::TtlExceeded);
    }
    // ipv4_l3(): decrement the TTL and fix the checksum.
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut pkt.frame[ETH_HEADER..]);
        ip.set_hop_limit(ttl - 1);
        ip.fill_checksum();
    }
    if let Some((lxc, id)) = local {
        if let Some(remote) = src_identity {
            let check = Check { dir: TrafficDirection::Ingress, lxc, identity: id, remote };
            pkt = match enforce(w, cx, host, dev, check, pkt) {
                Some(p) => p,
                None => return,
            };
        }
        // Redirect to the endpoint's veth: its peer is the pod's eth0.
        let peer_mac = match w.devices[lxc].kind {
            crate::world::DeviceKind::Veth { peer } => w.devices[peer].mac,
            _ => unreachable!("endpoints are veths"),
        };
        set_ethernet(&mut pkt.frame, peer_mac, w.devices[lxc].mac, EthernetProtocol::Ipv4);
        hop(w, cx, &mut pkt, dev, "ebpf", || {
            format!("{dst} is local endpoint {}: redirect", w.devices[lxc].name)
        });
        return dev_xmit(w, cx, lxc, pkt);
    }
    let route = remote.expect("checked above");
    let node_ip = route.gateway.expect("ipcache entries name a tunnel endpoint");
    match tunnel {
        Some(t) => {
            pkt.meta.tunnel_key = Some((node_ip, identity));
            hop(w, cx, &mut pkt, dev, "ebpf", || {
                format!("ipcache: {dst} in {} on node {node_ip}: tunnel key VNI {identity}", route.dst)
            });
            dev_xmit(w, cx, t, pkt)
        }
        None => {
            // bpf_fib_lookup in the host table, then bpf_redirect_neigh to the native device.
            cx.charge(Step::Routing, w.costs.fib_lookup);
            let Some(fib) = w.netns[host].main.lookup(dst).cloned() else {
                return cx.drop(pkt, DropReason::NoRoute);
            };
            let nh = fib.gateway.unwrap_or(dst);
            hop(w, cx, &mut pkt, dev, "ebpf", || {
                format!("bpf_fib_lookup: {dst} via {nh} dev {}: redirect_neigh", w.devices[fib.dev].name)
            });
            neigh_output(w, cx, host, fib.dev, nh, pkt)
        }
    }
}

/// The pod's ARP request for its gateway is answered by the program with the lxc MAC.
fn arp_responder(w: &mut World, cx: &mut Ctx, dev: DevId, pkt: Packet) {
    let repr = ArpPacket::new_checked(&pkt.frame[ETH_HEADER..]).and_then(|p| ArpRepr::parse(&p));
    let Ok(ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    }) = repr
    else {
        return super::consume(w, pkt);
    };
    let asker = (mac_of(source_hardware_addr), source_protocol_addr);
    super::arp_reply(w, cx, dev, pkt, target_protocol_addr, asker);
}

/// One policy check: the endpoint (its `lxc` device and identity), the direction, and the
/// identity of the other end.
#[derive(Clone, Copy, Debug)]
struct Check {
    dir: TrafficDirection,
    lxc: DevId,
    identity: Identity,
    remote: Identity,
}

/// What policy needs of a packet's transport header.
enum L4Info {
    /// UDP or TCP, with the ports (a later fragment's from its first, `ipv4_handle_fragmentation`)
    /// and a TCP segment's flags (none for a later fragment).
    Ports { tuple: Tuple, flags: Option<TcpFlags> },
    /// ICMP: the errors cnisim's kernels send are `CT_RELATED` to a tracked connection, and
    /// `--allow-icmp-frag-needed` (on by default) lets "fragmentation needed" through
    /// (bpf/lib/policy.h `allow_icmp_frag_needed`).
    Icmp,
    /// Another protocol: looked up with port 0, not tracked.
    Other(u8),
    /// A later fragment of a datagram whose first fragment this node did not see
    /// (`DROP_FRAG_NOT_FOUND`).
    UnknownFragment,
}

/// Reads the protocol and ports of the IPv4 packet in `pkt` (already checked by the caller),
/// remembering a first fragment's ports for the fragments after it.
fn l4_info(pkt: &Packet, ct: &mut PolicyCt) -> L4Info {
    let ip = Ipv4Packet::new_unchecked(&pkt.frame[ETH_HEADER..]);
    let proto = u8::from(ip.next_header());
    let l4 = match proto {
        1 => return L4Info::Icmp,
        6 => L4::Tcp,
        17 => L4::Udp,
        other => return L4Info::Other(other),
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let key = (src, dst, ip.ident(), proto);
    let tuple = |(sport, dport): (u16, u16)| Tuple { src, sport, dst, dport, proto: l4 };
    if ip.frag_offset() != 0 {
        let Some(&ports) = ct.frags.get(&key) else { return L4Info::UnknownFragment };
        if !ip.more_frags() {
            ct.frags.remove(&key);
        }
        return L4Info::Ports { tuple: tuple(ports), flags: None };
    }
    let hl = ip.header_len() as usize;
    let b = pkt.frame.get(ETH_HEADER + hl..).unwrap_or(&[]);
    let need = if l4 == L4::Tcp { 14 } else { 4 };
    if b.len() < need {
        return L4Info::Other(proto);
    }
    let ports = (u16::from_be_bytes([b[0], b[1]]), u16::from_be_bytes([b[2], b[3]]));
    if ip.more_frags() {
        ct.frags.insert(key, ports);
    }
    // TCP flags byte: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10.
    let flags = (l4 == L4::Tcp).then(|| {
        let f = b[13];
        TcpFlags { syn: f & 0x02 != 0, ack: f & 0x10 != 0, fin: f & 0x01 != 0, rst: f & 0x04 != 0 }
    });
    L4Info::Ports { tuple: tuple(ports), flags }
}

/// The tuple a packet had before `datapath::nat` reverse-translated it on the way out of a
/// Service's endpoint pod (a same-node Service connection: the reply leaves already from the
/// VIP). Cilium looks the reply up in its CT first and applies `lb4_rev_nat` after, so policy
/// sees the endpoint's own address; the Service connection's entry holds it.
fn before_rev_nat(w: &mut World, node: NodeId, t: Tuple, now: Instant) -> Tuple {
    if !w.cluster.network.service_cidr.contains(t.src) {
        return t;
    }
    let Some(p) = w.proxies.get_mut(node) else { return t };
    match p.bpf_ct.lookup(&t.inverse(), now) {
        Some((id, Direction::Original)) => p.bpf_ct.get(id).reply,
        _ => t,
    }
}

/// The local endpoint (`lxc` device, identity) whose pod is behind `lxc`: its pod's `eth0`
/// address is the endpoint's.
fn lxc_endpoint(w: &World, lxc: DevId) -> Option<(DevId, Identity)> {
    let crate::world::DeviceKind::Veth { peer } = w.devices[lxc].kind else { return None };
    let ip = w.devices[peer].addrs.first()?.0;
    let maps = w.netns[w.devices[lxc].ns].cilium.as_ref()?;
    maps.endpoints.get(&ip).copied().filter(|e| e.0 == lxc)
}

/// `pod default/web` for the endpoint behind `lxc`.
fn endpoint_name(w: &World, lxc: DevId) -> String {
    let pod = match w.devices[lxc].kind {
        crate::world::DeviceKind::Veth { peer } => match w.netns[w.devices[peer].ns].kind {
            crate::world::NsKind::Pod(p) => w.cluster.pods.get(p),
            _ => None,
        },
        _ => None,
    };
    match pod {
        Some(p) => format!("{} (pod {}/{})", w.devices[lxc].name, p.namespace, p.name),
        None => w.devices[lxc].name.clone(),
    }
}

/// Updates a tracked connection for a packet seen in `dir` of it; false when the entry is gone
/// (a SYN reopening a closed TCP connection): the packet is then a new connection.
fn track(
    ct: &mut crate::net::conntrack::Conntrack,
    id: u32,
    dir: Direction,
    t: &Tuple,
    flags: Option<TcpFlags>,
    now: Instant,
) -> bool {
    match (t.proto, flags) {
        (L4::Udp, _) => {
            ct.refresh(id, dir, now);
            true
        }
        (L4::Tcp, Some(f)) => ct.track_tcp(id, dir, f, now) != TcpVerdict::Reopen,
        (L4::Tcp, None) => true,
    }
}

/// The policy check of one packet at one endpoint (`ipv4_policy` for ingress, the policy part
/// of `handle_ipv4_from_lxc` for egress): the connection-tracking lookup in the node's two
/// scopes, then, unless it is a reply, the policy map lookup, each charged. Returns the packet
/// to go on with, or `None` when it was dropped (`DROP_POLICY`, `policy_denied`).
fn enforce(w: &mut World, cx: &mut Ctx, host: NsId, dev: DevId, c: Check, mut pkt: Packet) -> Option<Packet> {
    let node = w.netns[host].node;
    let now = cx.now();
    let info = {
        let maps = w.netns[host].cilium.as_mut().expect("eBPF hooks only on Cilium nodes");
        l4_info(&pkt, &mut maps.policy_ct)
    };
    let (tuple, flags, proto, dport) = match info {
        L4Info::Icmp => return Some(pkt),
        L4Info::UnknownFragment => {
            hop(w, cx, &mut pkt, dev, "drop", || {
                "fragment of a datagram whose first fragment was not seen".into()
            });
            cx.drop(pkt, DropReason::Reassembly);
            return None;
        }
        L4Info::Other(p) => (None, None, p, 0),
        L4Info::Ports { tuple, flags } => {
            let t = before_rev_nat(w, node, tuple, now);
            (Some(t), flags, t.proto.number(), t.dport)
        }
    };
    if tuple.is_some_and(|t| t.src == SERVICE_LOOPBACK || t.dst == SERVICE_LOOPBACK) {
        // "When an endpoint connects to itself via service clusterIP, we need to skip the
        // policy enforcement" (bpf_lxc.c, `hairpin_flow` and the loopback check).
        return Some(pkt);
    }
    let other = match c.dir {
        TrafficDirection::Ingress => TrafficDirection::Egress,
        TrafficDirection::Egress => TrafficDirection::Ingress,
    };
    let maps = w.netns[host].cilium.as_mut().expect("eBPF hooks only on Cilium nodes");
    // ct_lookup4: an entry of this scope (established, or a reply to one this endpoint's side
    // opened the other way), or a reply to an entry of the other scope.
    let mut hit = tuple.and_then(|t| {
        let own = maps.policy_ct.scope(c.dir).lookup(&t, now).map(|(id, d)| (c.dir, id, d));
        own.or_else(|| match maps.policy_ct.scope(other).lookup(&t, now) {
            Some((id, Direction::Reply)) => Some((other, id, Direction::Reply)),
            _ => None,
        })
    });
    if let (Some((scope, id, d)), Some(t)) = (hit, tuple) {
        if !track(maps.policy_ct.scope(scope), id, d, &t, flags, now) {
            hit = None;
        }
    }
    if let Some((_, _, Direction::Reply)) = hit {
        hop(w, cx, &mut pkt, dev, "policy", || {
            format!("{} of {}: CT_REPLY, not looked up", c.dir.name().to_lowercase(), endpoint_name(w, c.lxc))
        });
        return Some(pkt);
    }
    let lookup = maps.policy.check(c.identity, c.dir, c.remote, proto, dport);
    let verdict = lookup.verdict;
    let allowed = verdict.allows();
    let mut full = false;
    if allowed && hit.is_none() {
        if let Some(t) = tuple {
            // "Only create CT entry for accepted connections."
            let table = maps.policy_ct.scope(c.dir);
            match table.insert(t, t.inverse(), None, false, now) {
                Ok(id) => {
                    if let Some(f) = flags {
                        let _ = table.track_tcp(id, Direction::Original, f, now);
                    }
                }
                Err(_) => full = true,
            }
        }
    }
    let cost = w.costs.ebpf_policy_lookup * lookup.map_lookups as u64;
    cx.charge(Step::Policy, cost);
    let stats = &mut w.policy_stats[node];
    if hit.is_none() {
        stats.new_walks += 1;
        stats.new_set_lookups += lookup.map_lookups as u64;
        stats.new_cpu += cost;
    } else {
        stats.other_walks += 1;
    }
    if !allowed {
        stats.denied += 1;
        stats.denied_evaluations += lookup.map_lookups as u64;
        stats.denied_cpu += cost;
    }
    let what = || {
        let state = if hit.is_some() { "CT_ESTABLISHED" } else { "CT_NEW" };
        format!(
            "{} of {}, identity {}: {state}, looked up identity {} {dport}/{}",
            c.dir.name().to_lowercase(),
            endpoint_name(w, c.lxc),
            c.identity,
            c.remote,
            proto_name(proto)
        )
    };
    match verdict {
        Verdict::Allowed { key, entry } => {
            let maps = w.netns[host].cilium.as_ref().expect("checked above");
            let origin = maps.policy.origin(&entry).to_string();
            hop(w, cx, &mut pkt, dev, "policy", || {
                format!(
                    "{}: entry {} {} {} allows ({origin})",
                    what(),
                    key.direction.name(),
                    key.identity,
                    key.port_proto()
                )
            });
        }
        Verdict::Denied { key, .. } => {
            hop(w, cx, &mut pkt, dev, "drop", || {
                format!("{}: deny entry {} {} → DROP_POLICY_DENY", what(), key.identity, key.port_proto())
            });
            cx.drop(pkt, DropReason::PolicyDenied);
            return None;
        }
        Verdict::NoEntry => {
            hop(w, cx, &mut pkt, dev, "drop", || format!("{}: policy map: no entry → DROP_POLICY", what()));
            cx.drop(pkt, DropReason::PolicyDenied);
            return None;
        }
    }
    if full {
        hop(w, cx, &mut pkt, dev, "drop", || "CT map full: DROP_CT_CREATE_FAILED".into());
        cx.drop(pkt, DropReason::ConntrackFull);
        return None;
    }
    Some(pkt)
}
