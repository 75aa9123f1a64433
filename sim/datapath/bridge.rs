//! The Linux bridge (flannel's `cni0`, Weave's `weave`): learning each frame's source in the
//! FDB, then local delivery (the bridge's own and its ports' addresses), forwarding by FDB entry
//! or flooding, with br_netfilter's PREROUTING hook on bridged IPv4 frames.

use super::*;

/// `br_handle_frame`: learn the source, then deliver locally, forward or flood.
pub(super) fn bridge_input(w: &mut World, cx: &mut Ctx, br: DevId, port: DevId, mut pkt: Packet) {
    cx.charge(Step::Bridge, w.costs.bridge_forward);
    let (dst, src) = eth_dst_src(&pkt.frame);
    let now = cx.now();
    let br_mac = w.devices[br].mac;
    if let DeviceKind::Bridge { fdb, .. } = &mut w.devices[br].kind {
        fdb.learn(src, port, now);
    }
    if dst == br_mac {
        hop(w, cx, &mut pkt, br, "local", || format!("to the bridge's own MAC {dst}: up to the host stack"));
        capture(w, cx, br, &pkt);
        return netif_receive(w, cx, br, pkt);
    }
    if dst.is_multicast() {
        // Broadcast: every other port, and the host stack through the bridge device.
        hop(w, cx, &mut pkt, br, "flood", || format!("broadcast from {}", w.devices[port].name));
        let copy = pkt.flood_copy();
        bridge_flood(w, cx, br, Some(port), copy);
        capture(w, cx, br, &pkt);
        return netif_receive(w, cx, br, pkt);
    }
    // br_netfilter (bridge-nf-call-iptables = 1, which Kubernetes requires): bridged IPv4
    // frames pass the nat PREROUTING hook too, so replies between pods of one bridge are
    // reverse-translated and new connections walk the rules.
    let mut pkt = pkt;
    let ns = w.devices[br].ns;
    if w.has_netfilter(ns)
        && EthernetFrame::new_unchecked(&pkt.frame[..]).ethertype() == EthernetProtocol::Ipv4
    {
        match nat::netfilter(w, cx, ns, br, crate::proxy::Hook::Prerouting, pkt) {
            Some(p) => pkt = p,
            None => return,
        }
    }
    bridge_forward(w, cx, br, Some(port), pkt);
}

/// Forwards a unicast frame by FDB, flooding when the destination is unknown.
pub(super) fn bridge_forward(
    w: &mut World,
    cx: &mut Ctx,
    br: DevId,
    in_port: Option<DevId>,
    mut pkt: Packet,
) {
    let (dst, _) = eth_dst_src(&pkt.frame);
    let now = cx.now();
    let entry = match &w.devices[br].kind {
        DeviceKind::Bridge { fdb, .. } => fdb.lookup(dst, now),
        _ => None,
    };
    if dst.is_multicast() {
        hop(w, cx, &mut pkt, br, "flood", || format!("broadcast {dst} from the host stack"));
        return bridge_flood(w, cx, br, in_port, pkt);
    }
    match entry {
        Some(e) if e.permanent && in_port.is_some() => {
            // A port's own MAC: the frame is for this host.
            hop(w, cx, &mut pkt, br, "local", || format!("{dst} is a local port address"));
            netif_receive(w, cx, br, pkt)
        }
        Some(e) if Some(e.port) == in_port => {
            hop(w, cx, &mut pkt, br, "drop", || format!("{dst} is behind the ingress port"));
            cx.drop(pkt, DropReason::SamePort)
        }
        Some(e) => {
            hop(w, cx, &mut pkt, br, "forward", || format!("FDB: {dst} on {}", w.devices[e.port].name));
            let Some(pkt) = bridged_filter(w, cx, br, in_port, e.port, pkt) else { return };
            dev_xmit(w, cx, e.port, pkt)
        }
        None => {
            hop(w, cx, &mut pkt, br, "flood", || format!("{dst} not in FDB: unknown unicast"));
            bridge_flood(w, cx, br, in_port, pkt)
        }
    }
}

fn bridge_flood(w: &mut World, cx: &mut Ctx, br: DevId, in_port: Option<DevId>, pkt: Packet) {
    let ports: Vec<DevId> = match &w.devices[br].kind {
        DeviceKind::Bridge { ports, .. } => ports.iter().copied().filter(|p| Some(*p) != in_port).collect(),
        _ => Vec::new(),
    };
    if ports.is_empty() {
        return cx.drop(pkt, DropReason::NotForThisHost);
    }
    let mut pkt = pkt;
    stamp_flood(w, &mut pkt, ports.len(), &mut cx.actions);
    let (last, others) = ports.split_last().expect("checked non-empty");
    for &p in others {
        let copy = pkt.flood_copy();
        if let Some(copy) = bridged_filter(w, cx, br, in_port, p, copy) {
            dev_xmit(w, cx, p, copy);
        }
    }
    if let Some(pkt) = bridged_filter(w, cx, br, in_port, *last, pkt) {
        dev_xmit(w, cx, *last, pkt);
    }
}

/// br_netfilter's FORWARD hook (`br_nf_forward_ip`, bridge-nf-call-iptables = 1): a bridged
/// IPv4 frame from port `in_port` to port `out` walks the filter table's FORWARD chain with
/// the bridge as both `-i` and `-o` and the ports as `--physdev-in` / `--physdev-out` (how
/// weave-npc sees pod-to-pod traffic on one node). Frames the host sends through the bridge
/// (`in_port` None) take OUTPUT, which no policy engine here polices.
fn bridged_filter(
    w: &mut World,
    cx: &mut Ctx,
    br: DevId,
    in_port: Option<DevId>,
    out: DevId,
    pkt: Packet,
) -> Option<Packet> {
    let ns = w.devices[br].ns;
    let Some(in_port) = in_port else { return Some(pkt) };
    if w.netns[ns].filter.is_none()
        || EthernetFrame::new_unchecked(&pkt.frame[..]).ethertype() != EthernetProtocol::Ipv4
    {
        return Some(pkt);
    }
    filter::hook(w, cx, ns, crate::net::filter::FORWARD, Some(br), Some(br), Some((in_port, out)), pkt)
}
