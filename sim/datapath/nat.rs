//! Service translation on the packet path: netfilter's conntrack + nat hooks in a node's host
//! namespace (kube-proxy modes), and the tc programs on the host side of pod veths (eBPF).
//!
//! Every UDP packet through a hook is looked up in the node's conntrack table. A hit is
//! rewritten from the entry (DNAT for the original direction, the reverse for replies); a miss
//! is a new connection: the proxy's rules decide, and an entry records the decision, so the
//! rules run once per connection (`nf_nat_inet_fn`). Masquerade is applied at the same time as
//! DNAT, with the address routing picks for the new destination (POSTROUTING's MASQUERADE
//! target uses the outgoing device's address, which is that one).

use std::net::Ipv4Addr;

use smoltcp::wire::{IpProtocol, Ipv4Packet, UdpPacket};

use super::{hop, Ctx, Step};
use crate::cluster::Cni;
use crate::net::conntrack::Tuple;
use crate::net::conntrack::{Direction, Dnat, TableFull};
use crate::net::packet::Packet;
use crate::net::route::{DevId, RouteKind};
use crate::net::NsId;
use crate::observe::DropReason;
use crate::proxy::{Hook, Verdict};
use crate::world::World;

/// The UDP 5-tuple of an unfragmented IPv4/UDP packet (fragments are not tracked here).
pub(super) fn tuple_of(pkt: &Packet) -> Option<Tuple> {
    let ip = Ipv4Packet::new_checked(pkt.ip()).ok()?;
    if ip.next_header() != IpProtocol::Udp || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    Some(Tuple { src: ip.src_addr(), sport: udp.src_port(), dst: ip.dst_addr(), dport: udp.dst_port() })
}

/// Rewrites a packet's addresses and ports to `t`, fixing both checksums.
pub(super) fn rewrite(pkt: &mut Packet, t: &Tuple) {
    let mut ip = Ipv4Packet::new_unchecked(pkt.ip_mut());
    ip.set_src_addr(t.src);
    ip.set_dst_addr(t.dst);
    ip.fill_checksum();
    let had_csum = {
        let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
        udp.set_src_port(t.sport);
        udp.set_dst_port(t.dport);
        udp.checksum() != 0
    };
    if had_csum {
        let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
        udp.fill_checksum(&t.src.into(), &t.dst.into());
    }
}

/// A rule walk for a trace: runs of more than [`RUN_SHOWN`] x 2 rules that did not match (a
/// long KUBE-SERVICES before the Service's rule) keep their first and last few lines and say
/// how many were skipped between.
fn condense(walk: &[String]) -> Vec<String> {
    const RUN_SHOWN: usize = 3;
    let mut out = Vec::new();
    let mut i = 0;
    while i < walk.len() {
        let run = walk[i..].iter().take_while(|l| l.ends_with("[no match]")).count();
        if run > 2 * RUN_SHOWN + 1 {
            out.extend_from_slice(&walk[i..i + RUN_SHOWN]);
            out.push(format!("... {} more rules evaluated, none matched ...", run - 2 * RUN_SHOWN));
            out.extend_from_slice(&walk[i + run - RUN_SHOWN..i + run]);
            i += run;
        } else {
            out.push(walk[i].clone());
            i += 1;
        }
    }
    out
}

/// Whether a new connection is pod traffic headed out of the cluster network, which the CNI
/// masquerades: from a pod address to anything but a pod, a Service, a multicast group or this
/// node. Cilium also leaves traffic to the other nodes alone (its masquerading skips
/// destinations with the remote-node identity).
fn leaves_cluster(w: &World, hook: Hook, t: &Tuple, dst_local: bool) -> bool {
    let net = &w.cluster.network;
    let cilium = matches!(w.cluster.cni, Cni::CiliumVxlan | Cni::CiliumGeneve | Cni::CiliumNative);
    hook == Hook::Prerouting
        && w.cluster.cni.masquerades_outgoing()
        && net.pod_cidr.contains(t.src)
        && !net.pod_cidr.contains(t.dst)
        && !net.service_cidr.contains(t.dst)
        && !t.dst.is_multicast()
        && !dst_local
        && !(cilium && w.node_ips.contains(&t.dst))
}

fn is_local(w: &World, ns: NsId, a: Ipv4Addr) -> bool {
    w.netns[ns].local.lookup(a).is_some_and(|r| r.kind == RouteKind::Local)
}

/// netfilter PREROUTING (packets arriving, also bridged ones with br_netfilter) or OUTPUT
/// (locally sent) in host namespace `ns`. Returns the packet to go on with, or `None` when it
/// was dropped.
pub(super) fn netfilter(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    dev: DevId,
    hook: Hook,
    pkt: Packet,
) -> Option<Packet> {
    let Some(t) = tuple_of(&pkt) else { return Some(pkt) };
    translate(w, cx, ns, dev, hook, pkt, t, false)
}

/// The eBPF service program on the host side of a pod's veth, from the pod: per-packet service
/// lookup and DNAT through the node's connection table.
pub(super) fn bpf_from_pod(w: &mut World, cx: &mut Ctx, dev: DevId, pkt: Packet) -> Option<Packet> {
    let ns = w.devices[dev].ns;
    let Some(t) = tuple_of(&pkt) else { return Some(pkt) };
    // Only service addresses are looked up; pod-to-pod traffic passes with the program's
    // base cost (already charged by the hook that called us).
    if !w.cluster.network.service_cidr.contains(t.dst) {
        return bpf_reverse(w, cx, dev, pkt);
    }
    translate(w, cx, ns, dev, Hook::Prerouting, pkt, t, true)
}

/// The reverse translation for replies: on the way into the client pod (Cilium's
/// `lb4_rev_nat` on the to-container path) or, for a server pod's replies, on the way out of
/// it.
pub(super) fn bpf_reverse(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) -> Option<Packet> {
    let ns = w.devices[dev].ns;
    let node = w.netns[ns].node;
    let Some(t) = tuple_of(&pkt) else { return Some(pkt) };
    cx.charge(Step::ServiceRules, w.costs.hash_lookup);
    let now = cx.now();
    let p = &mut w.proxies[node];
    if let Some((id, Direction::Reply)) = p.bpf_ct.lookup(&t, now) {
        p.bpf_ct.refresh(id, Direction::Reply, now);
        let e = p.bpf_ct.get(id).clone();
        let back = Tuple {
            src: e.original.dst,
            sport: e.original.dport,
            dst: e.original.src,
            dport: e.original.sport,
        };
        cx.charge(Step::Netfilter, w.costs.nat_rewrite);
        rewrite(&mut pkt, &back);
        hop(w, cx, &mut pkt, dev, "rev-nat", || {
            format!(
                "reply {}:{} -> {}:{} reverse-translated to {}:{}",
                t.src, t.sport, t.dst, t.dport, back.src, back.sport
            )
        });
    }
    Some(pkt)
}

/// Conntrack lookup, then the proxy's rules for a new connection (Cilium's service maps when
/// `from_pod_veth`).
#[allow(clippy::too_many_arguments)]
fn translate(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    dev: DevId,
    hook: Hook,
    mut pkt: Packet,
    t: Tuple,
    from_pod_veth: bool,
) -> Option<Packet> {
    let node = w.netns[ns].node;
    let now = cx.now();
    cx.charge(Step::Netfilter, w.costs.conntrack_lookup);
    fn table(p: &mut crate::proxy::node::NodeProxy, bpf: bool) -> &mut crate::net::conntrack::Conntrack {
        if bpf {
            &mut p.bpf_ct
        } else {
            &mut p.conntrack
        }
    }
    let bpf = from_pod_veth;
    let mut hit = table(&mut w.proxies[node], bpf).lookup(&t, now);
    if let Some((id, Direction::Original)) = hit.filter(|_| bpf) {
        // lb4_local on an established entry looks its backend up again; "if the lookup fails
        // it means the user deleted the backend out from underneath us": it selects a new one
        // and updates the entry (bpf/lib/lb.h). Here: the entry goes, the service lookup below
        // picks a live backend and tracks the connection anew.
        let p = &mut w.proxies[node];
        let gone = p.bpf_ct.get(id).dnat.as_ref().is_some_and(|d| !p.backend_live(d));
        if gone {
            cx.charge(Step::ServiceRules, w.costs.hash_lookup);
            let p = &mut w.proxies[node];
            p.bpf_ct.remove(id);
            p.stats.reselected += 1;
            hop(w, cx, &mut pkt, dev, "conntrack", || {
                "established, but its backend left the backend map: lb4_local selects a new one".into()
            });
            hit = None;
        }
    }
    if let Some((id, dir)) = hit {
        let table = table(&mut w.proxies[node], bpf);
        table.refresh(id, dir, now);
        let e = table.get(id).clone();
        let to = match dir {
            // As the connection's first packet was rewritten: the inverse of the reply tuple.
            Direction::Original => {
                Tuple { src: e.reply.dst, sport: e.reply.dport, dst: e.reply.src, dport: e.reply.sport }
            }
            Direction::Reply => Tuple {
                src: e.original.dst,
                sport: e.original.dport,
                dst: e.original.src,
                dport: e.original.sport,
            },
        };
        let mut cost = w.costs.conntrack_lookup;
        if to != t {
            cx.charge(Step::Netfilter, w.costs.nat_rewrite);
            cost += w.costs.nat_rewrite;
            rewrite(&mut pkt, &to);
            hop(w, cx, &mut pkt, dev, "conntrack", || {
                let what = if dir == Direction::Original { "established" } else { "reply" };
                format!(
                    "{what}: {}:{} -> {}:{} rewritten to {}:{} -> {}:{}",
                    t.src, t.sport, t.dst, t.dport, to.src, to.sport, to.dst, to.dport
                )
            });
        }
        let s = &mut w.proxies[node].stats;
        s.established_packets += 1;
        s.established_cpu += cost;
        return Some(pkt);
    }
    // A new connection: the rules decide.
    let (dst_local, src_local) = (is_local(w, ns, t.dst), is_local(w, ns, t.src));
    let traced = pkt.meta.trace.is_some();
    let nc = w.proxies[node].new_connection(&w.costs, hook, &t, dst_local, src_local, from_pod_veth, traced);
    cx.charge(Step::ServiceRules, nc.cost);
    let lookup = nc.lookup;
    if traced {
        let mode = w.proxies[node].mode;
        let head = format!(
            "new connection {}:{} -> {}:{}: {mode} evaluated {} rules, {} hash lookups",
            t.src, t.sport, t.dst, t.dport, lookup.rules, lookup.lookups
        );
        hop(w, cx, &mut pkt, dev, "nat", || head);
        for line in condense(&lookup.walk) {
            hop(w, cx, &mut pkt, dev, "rule", || line);
        }
    }
    let reply_plain = Tuple { src: t.dst, sport: t.dport, dst: t.src, dport: t.sport };
    let (reply, dnat, masq) = match lookup.verdict {
        Verdict::NoService if leaves_cluster(w, hook, &t, dst_local) => {
            // The CNI's outgoing masquerade (flannel's FLANNEL-POSTRTG, Calico's natOutgoing,
            // Cilium's masquerading, Weave's NAT): one more POSTROUTING rule, then MASQUERADE.
            cx.charge(Step::Netfilter, w.costs.iptables_rule);
            hop(w, cx, &mut pkt, dev, "rule", || {
                format!("{}: pod traffic leaving the cluster network: MASQUERADE", w.cluster.cni)
            });
            (reply_plain, None, true)
        }
        Verdict::NoService => (reply_plain, None, false),
        Verdict::Reject { service, .. } => {
            let name = w.proxies[node].table.services[service].name.clone();
            hop(w, cx, &mut pkt, dev, "drop", || format!("service {name} has no endpoints: REJECT"));
            cx.drop(pkt, DropReason::ServiceNoEndpoints);
            return None;
        }
        Verdict::Redirect { to, .. } => {
            // REDIRECT: to the primary address of the incoming interface (the node's address
            // for locally generated packets, where kube-proxy's HOST rule DNATs to it).
            let addr = match hook {
                Hook::Prerouting => w.devices[dev].addrs.first().map(|a| a.0),
                Hook::Output => None,
            };
            let addr = addr.unwrap_or(w.cluster.nodes[node].ip);
            (Tuple { src: addr, sport: to, dst: t.src, dport: t.sport }, None, false)
        }
        Verdict::Dnat { service, port, endpoint, masq } => {
            let table = &w.proxies[node].table;
            let s = &table.services[service];
            let to = (s.endpoints[endpoint].ip, s.ports[port].target_port);
            let d = Dnat { service, port, endpoint, from: (t.dst, t.dport), to };
            let pod = s.endpoints[endpoint].pod;
            *w.proxies[node].stats.per_endpoint.entry((service, pod)).or_default() += 1;
            (Tuple { src: to.0, sport: to.1, dst: t.src, dport: t.sport }, Some(d), masq)
        }
    };
    let id = match table(&mut w.proxies[node], bpf).insert(t, reply, dnat, masq, now) {
        Ok(id) => id,
        Err(TableFull) => {
            w.proxies[node].stats.conntrack_full += 1;
            hop(w, cx, &mut pkt, dev, "drop", || "nf_conntrack: table full, dropping packet".into());
            cx.drop(pkt, DropReason::ConntrackFull);
            return None;
        }
    };
    let mut out = Tuple { src: t.src, sport: t.sport, dst: reply.src, dport: reply.sport };
    if masq {
        // MASQUERADE --random-fully: the source the route to the endpoint would use.
        let src = super::source_for(w, ns, out.dst).unwrap_or(t.src);
        let base = Tuple { dst: src, ..reply };
        match w.proxies[node].masquerade_port(base) {
            Some(port) => {
                table(&mut w.proxies[node], bpf).set_snat(id, (src, port));
                out.src = src;
                out.sport = port;
            }
            None => {
                hop(w, cx, &mut pkt, dev, "drop", || "no free masquerade port".into());
                cx.drop(pkt, DropReason::ConntrackFull);
                return None;
            }
        }
    }
    if out != t {
        rewrite(&mut pkt, &out);
        if (out.dst, out.dport) == (t.dst, t.dport) {
            hop(w, cx, &mut pkt, dev, "snat", || {
                format!("{}:{} masqueraded to {}:{}", t.src, t.sport, out.src, out.sport)
            });
        } else {
            hop(w, cx, &mut pkt, dev, "dnat", || {
                let snat =
                    if masq { format!(", masquerade to {}:{}", out.src, out.sport) } else { String::new() };
                format!("{}:{} -> DNAT to {}:{}{snat}", t.dst, t.dport, out.dst, out.dport)
            });
        }
    }
    Some(pkt)
}

#[cfg(test)]
mod tests {
    use super::condense;

    #[test]
    fn long_runs_of_misses_are_condensed() {
        let mut walk = vec!["jump [match]".to_string()];
        walk.extend((0..10).map(|i| format!("svc {i} [no match]")));
        walk.push("svc 10 [match]".into());
        let c = condense(&walk);
        assert_eq!(c.len(), 1 + 3 + 1 + 3 + 1);
        assert_eq!(c[4], "... 4 more rules evaluated, none matched ...");
        assert_eq!(c[5], "svc 7 [no match]");
        assert_eq!(c[8], "svc 10 [match]");
        let short: Vec<String> = walk[..8].to_vec();
        assert_eq!(condense(&short), short, "7 misses are shown in full");
    }
}
