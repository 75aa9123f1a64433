//! Devices stacked on a NIC: macvlan in bridge mode and ipvlan in L3 mode.

use super::*;

/// `macvlan_queue_xmit` in bridge mode: a destination that is a sibling on the same lower
/// device is delivered inside it; broadcasts go to every sibling and out of the lower device;
/// anything else leaves through the lower device.
pub(super) fn macvlan_xmit(w: &mut World, cx: &mut Ctx, dev: DevId, lower: DevId, mut pkt: Packet) {
    cx.charge(Step::Macvlan, w.costs.macvlan_forward);
    let (dst, _) = eth_dst_src(&pkt.frame);
    let siblings: Vec<DevId> = w.devices[lower].uppers.iter().copied().filter(|&d| d != dev).collect();
    if dst.is_multicast() {
        hop(w, cx, &mut pkt, dev, "flood", || "broadcast: to sibling macvlans and the wire".into());
        stamp_flood(w, &mut pkt, siblings.len() + 1, &mut cx.actions);
        for &s in &siblings {
            dev_rx(w, cx, s, pkt.flood_copy());
        }
        return dev_xmit(w, cx, lower, pkt);
    }
    if let Some(&s) = siblings.iter().find(|&&s| w.devices[s].mac == dst) {
        hop(w, cx, &mut pkt, dev, "forward", || {
            format!("bridge mode: {dst} is sibling {}", w.devices[s].name)
        });
        return dev_rx(w, cx, s, pkt);
    }
    hop(w, cx, &mut pkt, dev, "forward", || format!("out of lower device {}", w.devices[lower].name));
    dev_xmit(w, cx, lower, pkt)
}

/// ipvlan L3 egress (`ipvlan_xmit_mode_l3`): a destination that is another slave of the same
/// lower device is received by it directly; anything else is routed in the lower device's
/// namespace as a locally generated packet.
pub(super) fn ipvlan_xmit(w: &mut World, cx: &mut Ctx, dev: DevId, lower: DevId, mut pkt: Packet) {
    cx.charge(Step::Macvlan, w.costs.macvlan_forward);
    capture(w, cx, dev, &pkt);
    let dst = Ipv4Packet::new_unchecked(pkt.ip()).dst_addr();
    let target =
        w.devices[lower].uppers.iter().copied().find(|&u| w.devices[u].addrs.iter().any(|a| a.0 == dst));
    if let Some(t) = target {
        hop(w, cx, &mut pkt, dev, "forward", || {
            format!("ipvlan L3: {dst} is slave {} on this node", w.netns[w.devices[t].ns].name)
        });
        capture(w, cx, t, &pkt);
        return ip_rcv(w, cx, t, pkt);
    }
    let host = w.devices[lower].ns;
    hop(w, cx, &mut pkt, dev, "forward", || {
        format!("ipvlan L3: routed in {}'s namespace", w.netns[host].name)
    });
    // L3 mode routes without netfilter (Documentation/networking/ipvlan.rst: only L3S mode
    // "acts like L3 mode except that iptables (conn-tracking) works").
    ip_route_output(w, cx, host, pkt)
}

/// A frame on a device with macvlan/ipvlan uppers: the upper it belongs to, if any.
pub(super) fn upper_for(w: &World, dev: DevId, frame: &[u8]) -> Option<DevId> {
    let uppers = &w.devices[dev].uppers;
    if uppers.is_empty() {
        return None;
    }
    let (dst, _) = eth_dst_src(frame);
    uppers.iter().copied().find(|&u| match w.devices[u].kind {
        DeviceKind::Macvlan { .. } => w.devices[u].mac == dst,
        DeviceKind::IpvlanL3 { .. } => {
            let eth = EthernetFrame::new_unchecked(frame);
            eth.ethertype() == EthernetProtocol::Ipv4
                && Ipv4Packet::new_checked(&frame[ETH_HEADER..])
                    .is_ok_and(|ip| w.devices[u].addrs.iter().any(|a| a.0 == ip.dst_addr()))
        }
        _ => false,
    })
}
