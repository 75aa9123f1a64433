//! The underlay switch: a learning L2 switch between the nodes' NICs. It is a device, but no
//! node's: it has no CPU and forwards store-and-forward with no processing delay.

use super::*;

/// Underlay switch `sw` receives a frame on `port`: learn, then forward or flood. Pushes the
/// resulting transmissions or drop.
pub fn switch_input(
    w: &mut World,
    sw: usize,
    port: usize,
    mut pkt: Packet,
    now: Instant,
    out: &mut Vec<Action>,
) {
    // A runt (shorter than its Ethernet header) is dropped by the switch's MAC, as by a NIC's
    // (`nic_rx`). Found by `fuzz/` (datapath target).
    if pkt.frame.len() < ETH_HEADER {
        return out.push(Action::Drop { pkt, reason: DropReason::Malformed });
    }
    let (dst, src) = eth_dst_src(&pkt.frame);
    let switch = &mut w.switches[sw];
    if !src.is_multicast() {
        switch.mac_table.insert(src, port);
    }
    let name = &switch.name;
    // The words of a hop are written only for a traced frame.
    let push = |pkt: &mut Packet, action: &str, why: &dyn Fn() -> String| {
        if let Some(t) = pkt.meta.trace.as_mut() {
            t.push(Hop {
                time_ns: now.as_nanos(),
                place: "underlay".into(),
                device: format!("{name} port {port}"),
                action: action.into(),
                why: why(),
                size: pkt.frame.len(),
            });
        }
    };
    let l3 = pkt.frame.len() - ETH_HEADER;
    if l3 > switch.mtu as usize {
        push(&mut pkt, "drop", &|| format!("{l3} B frame payload > underlay MTU {}", switch.mtu));
        return out.push(Action::Drop { pkt, reason: DropReason::UnderlayMtuExceeded });
    }
    let known = (!dst.is_multicast()).then(|| switch.mac_table.get(&dst).copied()).flatten();
    match known {
        Some(p) if p == port => {
            push(&mut pkt, "drop", &|| format!("{dst} is behind the ingress port"));
            out.push(Action::Drop { pkt, reason: DropReason::SamePort })
        }
        Some(p) => {
            push(&mut pkt, "forward", &|| format!("MAC table: {dst} on port {p}"));
            out.push(Action::Transmit { link: switch.ports[p], pkt })
        }
        None => {
            push(&mut pkt, "flood", &|| format!("{dst} unknown or broadcast"));
            let links: Vec<LinkId> =
                switch.ports.iter().enumerate().filter(|&(p, _)| p != port).map(|(_, l)| *l).collect();
            if links.is_empty() {
                return out.push(Action::Drop { pkt, reason: DropReason::NotForThisHost });
            }
            stamp_flood(w, &mut pkt, links.len(), out);
            out.push(Action::TransmitFlood { links, pkt });
        }
    }
}
