//! Cilium's eBPF datapath, as the tc programs behave (cilium bpf/bpf_lxc.c, bpf_overlay.c,
//! bpf_host.c): packets from a pod are handled on the host-side `lxc` device's ingress hook
//! and never walk the host's bridge or netfilter path.
//!
//! - `cil_from_container`: answers the pod's ARP for its gateway; a destination that is a
//!   local endpoint is redirected straight to that endpoint's veth; a remote pod CIDR in
//!   tunnel mode gets a tunnel key (remote node, VNI = source security identity) and goes to
//!   the `collect_md` tunnel device; in native routing `bpf_fib_lookup` +
//!   `bpf_redirect_neigh` send it out of the native device; anything else goes up the stack.
//! - `cil_from_overlay` and `cil_from_netdev`: a destination that is a local endpoint is
//!   redirected to it; anything else goes up the stack.
//! - `cil_from_host` (on what the host sends through `cilium_host`): like
//!   `cil_from_container`, local endpoints by redirect and remote pods through the tunnel or
//!   the native device, with the host's identity.

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Ipv4Packet};

use super::{dev_xmit, hop, mac_of, neigh_output, netif_receive, Ctx, Step};
use crate::net::packet::{set_ethernet, Packet, ETH_HEADER};
use crate::net::route::DevId;
use crate::observe::DropReason;
use crate::world::{EbpfHook, World};

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
    let maps = w.netns[host].cilium.as_ref().expect("eBPF hooks only on Cilium nodes");
    let local = maps.endpoints.get(&dst).copied();
    let from_node = matches!(hook, EbpfHook::FromContainer | EbpfHook::FromHost);
    let remote = if from_node { maps.ipcache.lookup(dst).cloned() } else { None };
    // Reserved identities: 1 is the host, 2 the world (cilium pkg/identity).
    let fallback = if hook == EbpfHook::FromHost { 1 } else { 2 };
    let (tunnel, identity) = (maps.tunnel, maps.endpoints.get(&src).map_or(fallback, |e| e.1));
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
    if let Some((lxc, _)) = local {
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
