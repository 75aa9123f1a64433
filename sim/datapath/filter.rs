//! The netfilter filter table on the FORWARD and INPUT hooks (`ip_forward` ->
//! `NF_INET_FORWARD`, `ip_local_deliver` -> `NF_INET_LOCAL_IN`), as a policy engine programmed
//! it in the node's namespace (`Netns::filter`). The walk's rules and ipset lookups are the
//! CPU it costs; a DROP is a `policy_denied` drop naming the rule, and destroys the conntrack
//! entry the packet created (the kernel frees an unconfirmed entry with its skb).
//!
//! IPv4 fragments are not walked: Linux's conntrack reassembles a datagram before PREROUTING
//! (nf_defrag_ipv4) so the filter sees it whole; cnisim forwards fragments one by one and
//! lets them pass this hook (a departure listed in ARCHITECTURE.md).

use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

use super::{hop, Ctx, Step};
use crate::net::filter::{ChainId, PacketInfo, Verdict, FORWARD};
use crate::net::packet::Packet;
use crate::net::route::DevId;
use crate::net::NsId;
use crate::observe::DropReason;
use crate::world::World;

/// Walks `hook` of `ns`'s filter table for `pkt` arriving on `in_dev` and leaving by
/// `out_dev`; `ports` are the bridge ports of a bridged frame (br_netfilter's FORWARD hook,
/// `br_nf_forward_ip`: `in_dev` and `out_dev` are then the bridge). Returns the packet if
/// accepted; a dropped packet has been accounted.
#[allow(clippy::too_many_arguments)]
pub(super) fn hook(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    hook: ChainId,
    in_dev: Option<DevId>,
    out_dev: Option<DevId>,
    ports: Option<(DevId, DevId)>,
    mut pkt: Packet,
) -> Option<Packet> {
    let Some(table) = w.netns[ns].filter.as_deref() else { return Some(pkt) };
    let Ok(ip) = Ipv4Packet::new_checked(pkt.ip()) else { return Some(pkt) };
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Some(pkt);
    }
    let proto = ip.next_header();
    let dport = match proto {
        IpProtocol::Tcp => TcpPacket::new_checked(ip.payload()).ok().map(|t| t.dst_port()),
        IpProtocol::Udp => UdpPacket::new_checked(ip.payload()).ok().map(|u| u.dst_port()),
        // SCTP: the destination port is the second 16-bit word, as for TCP and UDP.
        IpProtocol::Unknown(132) => ip.payload().get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]])),
        _ => None,
    };
    let name = |d: Option<DevId>| d.map_or("", |d| w.devices[d].name.as_str());
    let dst = ip.dst_addr();
    let dst_local = table.uses_addrtype
        && w.netns[ns].local.lookup(dst).is_some_and(|r| r.kind == crate::net::route::RouteKind::Local);
    // Masquerade comes at POSTROUTING, after this hook (`nat::postrouting`): the walk sees the
    // source the packet had before SNAT (weave-npc matches pod sources by ipset).
    let node = w.netns[ns].node;
    let entry = super::nat::own_entry(w, ns, &pkt).map(|(_, id, _)| id);
    let src = ip.src_addr();
    let info = PacketInfo {
        in_dev: name(in_dev),
        out_dev: name(out_dev),
        src,
        dst,
        proto: u8::from(proto),
        dport,
        ct: pkt.meta.ct,
        phys_in: name(ports.map(|p| p.0)),
        phys_out: name(ports.map(|p| p.1)),
        bridged: ports.is_some(),
        dst_local,
    };
    let traced = pkt.meta.trace.is_some();
    let walk = table.walk(hook, &info, traced);
    let cost =
        w.costs.iptables_rule * u64::from(walk.rules) + w.costs.hash_lookup * u64::from(walk.set_lookups);
    cx.charge(Step::Policy, cost);
    // The counters describe policy work: packets from or to a pod (not, say, the tunnel
    // packets the INPUT hook also sees, whose walk is charged all the same).
    let facing = |d: Option<DevId>| d.is_some_and(|d| w.is_pod_facing(d));
    let workload = facing(in_dev)
        || facing(out_dev)
        || facing(ports.map(|p| p.0))
        || facing(ports.map(|p| p.1))
        || in_dev.is_some_and(|d| w.is_pod_bridge(d))
        || out_dev.is_some_and(|d| w.is_pod_bridge(d));
    let s = &mut w.policy_stats[node];
    match (workload, info.ct) {
        (false, _) => {}
        (true, crate::net::filter::CtState::New) => {
            s.new_walks += 1;
            s.new_rules += u64::from(walk.rules);
            s.new_set_lookups += u64::from(walk.set_lookups);
            s.new_cpu += cost;
        }
        (true, _) => {
            s.other_walks += 1;
            s.other_rules += u64::from(walk.rules);
        }
    }
    let dev = in_dev.or(out_dev).unwrap_or(0);
    if traced {
        let hook_name = if hook == FORWARD { "FORWARD" } else { "INPUT" };
        let head = format!(
            "filter {hook_name} ({} -> {}, ctstate {}): {} rules, {} ipset lookups",
            info.in_dev,
            info.out_dev,
            info.ct.name(),
            walk.rules,
            walk.set_lookups
        );
        hop(w, cx, &mut pkt, dev, "filter", || head);
        for line in walk.lines {
            hop(w, cx, &mut pkt, dev, "rule", || line);
        }
    }
    if walk.verdict == Verdict::Accept {
        return Some(pkt);
    }
    let s = &mut w.policy_stats[node];
    s.denied += 1;
    s.denied_evaluations += u64::from(walk.rules + walk.set_lookups);
    s.denied_cpu += cost;
    pkt.meta.ct_unconfirmed = None;
    if let Some(id) = entry {
        w.proxies[node].conntrack.remove(id);
    }
    let table = w.netns[ns].filter.as_deref().expect("walked above");
    let why = match walk.decided_by {
        Some((c, i)) => format!("policy: {} #{} -j DROP", table.chains[c].name, i + 1),
        None => "policy: chain policy DROP".to_string(),
    };
    hop(w, cx, &mut pkt, dev, "drop", || why);
    cx.drop(pkt, DropReason::PolicyDenied);
    None
}
