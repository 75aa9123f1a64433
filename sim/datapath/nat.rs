//! Service translation on the packet path: netfilter's conntrack + nat hooks in a node's host
//! namespace (kube-proxy modes), and the tc programs on the host side of pod veths (eBPF).
//!
//! Every UDP and TCP packet through a hook is looked up in the node's conntrack table. A hit
//! is rewritten from the entry (DNAT for the original direction, the reverse for replies); a
//! miss is a new connection: the proxy's rules decide, and an entry records the decision, so
//! the rules run once per connection (`nf_nat_inet_fn`). Masquerade waits for POSTROUTING
//! ([`postrouting`]), with the address of the route to the new destination and a port chosen
//! as `get_unique_tuple` does, among the connections already confirmed: an entry goes into the
//! hash table only at the end of POSTROUTING (or INPUT), so NAT on another core cannot see it
//! until then, and a clash is found only at confirmation (`insert_failed`). Cilium's BPF SNAT
//! of NodePort connections is set up with the DNAT (its map insert is atomic).
//!
//! TCP segments also drive the entry's state machine ([`Conntrack::track_tcp`]) on every hit
//! and on the insert. A segment conntrack finds INVALID (one that cannot open a connection,
//! such as a SYN-ACK or FIN with no entry, or an `sIV` transition) has no conntrack entry, so
//! the nat hooks never see it (`nf_nat_inet_fn` needs one): it goes on untranslated, and one to
//! a Service VIP then reaches no endpoint. kube-proxy's `-m conntrack --ctstate INVALID -j DROP`
//! in filter KUBE-FORWARD is not modelled (it would need a drop reason of its own). A SYN that
//! reopens a closed entry is looked up again as a new connection.

use std::net::Ipv4Addr;

use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

use super::{hop, Ctx, Step};
use crate::cluster::Cni;
use crate::net::conntrack::{Conntrack, Direction, Dnat, TableFull, TcpFlags, TcpState, TcpVerdict};
use crate::net::conntrack::{Taken, Tuple, L4};
use crate::net::filter::CtState;
use crate::net::packet::Packet;
use crate::net::route::{DevId, RouteKind};
use crate::net::NsId;
use crate::observe::DropReason;
use crate::proxy::{Hook, Verdict};
use crate::world::World;

/// The 5-tuple of an unfragmented IPv4 UDP or TCP packet (fragments are not tracked here).
pub(super) fn tuple_of(pkt: &Packet) -> Option<Tuple> {
    let ip = Ipv4Packet::new_checked(pkt.ip()).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.next_header() {
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).ok()?;
            Some(Tuple { src, sport: udp.src_port(), dst, dport: udp.dst_port(), proto: L4::Udp })
        }
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            Some(Tuple { src, sport: tcp.src_port(), dst, dport: tcp.dst_port(), proto: L4::Tcp })
        }
        _ => None,
    }
}

/// The flags conntrack reads from a TCP packet `tuple_of` accepted.
fn tcp_flags(pkt: &Packet) -> TcpFlags {
    let ip = Ipv4Packet::new_unchecked(pkt.ip());
    let tcp = TcpPacket::new_unchecked(ip.payload());
    TcpFlags { syn: tcp.syn(), ack: tcp.ack(), fin: tcp.fin(), rst: tcp.rst() }
}

/// Rewrites a packet's addresses and ports to `t`, updating the IPv4 checksum and the TCP one
/// (mandatory) or the UDP one (when the sender filled it: it is optional) for the words that
/// changed, as `nf_nat_ipv4_manip_pkt` and `inet_proto_csum_replace4` do (the pseudo-header's
/// addresses and the ports), a UDP checksum that comes out zero sent as all ones
/// (`CSUM_MANGLED_0`, net/netfilter/nf_nat_proto.c).
pub(super) fn rewrite(pkt: &mut Packet, t: &Tuple) {
    use crate::wire::csum::replace;
    let mut ip = Ipv4Packet::new_unchecked(pkt.ip_mut());
    // The words that change: both addresses (in the pseudo-header) and both ports.
    let mut before = [0u8; 12];
    before[..4].copy_from_slice(&ip.src_addr().octets());
    before[4..8].copy_from_slice(&ip.dst_addr().octets());
    ip.set_src_addr(t.src);
    ip.set_dst_addr(t.dst);
    ip.fill_checksum();
    let seg = ip.payload_mut();
    before[8..].copy_from_slice(&seg[..4]);
    let mut after = [0u8; 12];
    after[..4].copy_from_slice(&t.src.octets());
    after[4..8].copy_from_slice(&t.dst.octets());
    after[8..10].copy_from_slice(&t.sport.to_be_bytes());
    after[10..].copy_from_slice(&t.dport.to_be_bytes());
    seg[..4].copy_from_slice(&after[8..]);
    let at = if t.proto == L4::Tcp { 16 } else { 6 };
    let check = u16::from_be_bytes([seg[at], seg[at + 1]]);
    if t.proto == L4::Udp && check == 0 {
        return;
    }
    let new = match replace(check, &before, &after) {
        0 if t.proto == L4::Udp => 0xffff,
        c => c,
    };
    seg[at..at + 2].copy_from_slice(&new.to_be_bytes());
}

/// Updates entry `id` for a packet seen in `dir`: a UDP entry's timeout, or a TCP entry's state
/// from the packet's flags.
fn track(
    table: &mut Conntrack,
    id: u32,
    dir: Direction,
    pkt: &Packet,
    t: &Tuple,
    now: crate::time::Instant,
) -> TcpVerdict {
    match t.proto {
        L4::Udp => {
            table.refresh(id, dir, now);
            TcpVerdict::Accept
        }
        L4::Tcp => table.track_tcp(id, dir, tcp_flags(pkt), now),
    }
}

fn invalid(w: &mut World, cx: &mut Ctx, pkt: &mut Packet, dev: DevId, t: &Tuple, why: &str) {
    hop(w, cx, pkt, dev, "conntrack", || {
        format!("{}:{} -> {}:{} tcp: INVALID ({why}), not translated", t.src, t.sport, t.dst, t.dport)
    });
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
    mut pkt: Packet,
) -> Option<Packet> {
    let Some(t) = tuple_of(&pkt) else {
        // Not TCP or UDP: the ICMP errors the datapath sends (fragmentation needed) are
        // RELATED to the connection they quote (nf_conntrack_icmp `icmp_error_message`).
        let icmp = smoltcp::wire::Ipv4Packet::new_unchecked(pkt.ip()).next_header() == IpProtocol::Icmp;
        pkt.meta.ct = if icmp { CtState::Related } else { CtState::Untracked };
        pkt.meta.ct_unconfirmed = None;
        return Some(pkt);
    };
    translate(w, cx, ns, dev, hook, pkt, t, false)
}

/// The connection `pkt` created in `ns`, if it is still this packet's (a flood copy can carry
/// the id of an entry another copy's DROP destroyed, and the slot may since hold another
/// connection): the packet is its original tuple after DNAT.
pub(super) fn own_entry(
    w: &World,
    ns: NsId,
    pkt: &Packet,
) -> Option<(usize, crate::net::conntrack::EntryId, Tuple)> {
    let id = pkt.meta.ct_unconfirmed?;
    let node = w.netns[ns].node;
    let t = tuple_of(pkt)?;
    let e = w.proxies.get(node)?.conntrack.try_get(id)?;
    let o = &e.original;
    let ours = (o.src, o.sport, o.proto) == (t.src, t.sport, t.proto)
        && (e.reply.src, e.reply.sport) == (t.dst, t.dport);
    ours.then_some((node, id, t))
}

/// The end of INPUT for a packet delivered locally: `ipv4_confirm` puts the connection it
/// created into the hash table.
pub(super) fn confirm_local(w: &mut World, cx: &Ctx, ns: NsId, pkt: &mut Packet) {
    if let Some((node, id, _)) = own_entry(w, ns, pkt) {
        w.proxies[node].conntrack.confirm(id, cx.now());
    }
    pkt.meta.ct_unconfirmed = None;
}

/// Whether the MASQUERADE rule that took a connection has `--random-fully`: kube-proxy's
/// (`KUBE-POSTROUTING`, a connection the Service rules marked) has it where iptables does
/// (`proxier.iptables.HasRandomFully()`; the nftables proxier's `masquerade fully-random`
/// always), the CNI's as [`Cni::masquerade_random_fully`] says; the scenario can set both.
fn random_fully(w: &World, by_kube_proxy: bool) -> bool {
    if by_kube_proxy && w.cluster.proxy == crate::cluster::ProxyMode::Nftables {
        return true;
    }
    w.cluster.masquerade_random_fully.unwrap_or(by_kube_proxy || w.cluster.cni.masquerade_random_fully())
}

/// nat POSTROUTING for a packet routed out of `dev` by `route`, then the confirmation of the connection
/// it created (`ipv4_confirm`, the hook's last entry). A connection the rules marked for
/// masquerade gets the source address of the route (its `src`, else `dev`'s first address,
/// as MASQUERADE's `inet_select_addr` on the outgoing device) and a port chosen as the kernel does
/// ([`crate::proxy::node::NodeProxy::nat_source_port`]); the entry goes into the table a
/// rewrite later. If another connection holds the reply tuple by then (one that another core
/// had not confirmed when the port was chosen, or the last port tried when none was free),
/// `__nf_conntrack_confirm` drops the packet and counts `insert_failed`: a TCP or UDP clash
/// of reply tuples with different original ones is not resolved (`nf_ct_resolve_clash`:
/// TCP has no `allow_clash`; for UDP `__nf_ct_resolve_clash` accepts only a NAT-less winner
/// or identical tuples).
pub(super) fn postrouting(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    route: &crate::net::route::Route,
    dev: DevId,
    mut pkt: Packet,
) -> Option<Packet> {
    let own = own_entry(w, ns, &pkt);
    pkt.meta.ct_unconfirmed = None;
    let Some((node, id, t)) = own else { return Some(pkt) };
    let e = w.proxies[node].conntrack.get(id);
    if !e.masq_pending {
        w.proxies[node].conntrack.confirm(id, cx.now());
        return Some(pkt);
    }
    let (reply, by_kube_proxy) = (e.reply, e.dnat.is_some());
    let random_fully = random_fully(w, by_kube_proxy);
    let src = route.src.or_else(|| w.devices[dev].addrs.first().map(|a| a.0)).unwrap_or(t.src);
    let at = cx.now();
    let p = &mut w.proxies[node];
    let rovers = w.cluster.nat_port_rovers;
    let choice = p.nat_source_port(id, Tuple { dst: src, ..reply }, t.sport, random_fully, rovers, at);
    let m = &mut p.stats.masquerade;
    m.connections += 1;
    m.source_port_kept += u64::from(choice.kept);
    m.tuples_tried += u64::from(choice.tried);
    cx.charge(Step::Netfilter, w.costs.hash_lookup * u64::from(choice.tried) + w.costs.nat_rewrite);
    let out = Tuple { src, sport: choice.port, ..t };
    if choice.taken != Taken::Free {
        let p = &mut w.proxies[node];
        p.conntrack.insert_failed += 1;
        p.conntrack.remove(id);
        let race = choice.taken == Taken::Unconfirmed;
        if race {
            p.stats.masquerade.insert_failed_race += 1;
        } else {
            p.stats.masquerade.insert_failed_no_port += 1;
        }
        hop(w, cx, &mut pkt, dev, "drop", || {
            let why = if race {
                "held by a connection not yet confirmed when the port was chosen"
            } else {
                "every port tried is in use"
            };
            format!(
                "MASQUERADE {}:{} to {}:{}: {why}; nf_conntrack confirm: insert_failed",
                t.src, t.sport, out.src, out.sport
            )
        });
        cx.drop(pkt, DropReason::InsertFailed);
        return None;
    }
    let p = &mut w.proxies[node];
    p.conntrack.set_snat(id, (src, choice.port), at);
    p.conntrack.confirm(id, cx.now());
    rewrite(&mut pkt, &out);
    hop(w, cx, &mut pkt, dev, "snat", || {
        let how = match (choice.kept, random_fully) {
            (true, _) => " (its own port was free)",
            (false, true) => " (--random-fully)",
            (false, false) => " (its own port was taken)",
        };
        format!("{}:{} masqueraded to {}:{}{how}", t.src, t.sport, out.src, out.sport)
    });
    Some(pkt)
}

/// Cilium's service loopback address, the source of a pod's connection to a Service that picked
/// the pod itself (`--ipv4-service-loopback-address`, default 169.254.42.1).
pub(super) const CILIUM_SERVICE_LOOPBACK: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 42, 1);

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
        let e = p.bpf_ct.get(id).clone();
        if track(&mut p.bpf_ct, id, Direction::Reply, &pkt, &t, now) == TcpVerdict::Invalid {
            invalid(w, cx, &mut pkt, dev, &t, "not a valid reply in its state");
            return Some(pkt);
        }
        let back = e.original.inverse();
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
    pkt.meta.ct_unconfirmed = None;
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
    let mut known = None;
    if let Some((id, dir)) = hit {
        let table = table(&mut w.proxies[node], bpf);
        // The entry as it was before this packet: a RST answering a SYN deletes it, and the
        // packet is still translated from it.
        let e = table.get(id).clone();
        match track(table, id, dir, &pkt, &t, now) {
            TcpVerdict::Accept | TcpVerdict::Killed => known = Some((e, dir)),
            TcpVerdict::Invalid => {
                let why = format!("not valid in {}", e.tcp.map_or("", |c| c.state.name()));
                invalid(w, cx, &mut pkt, dev, &t, &why);
                pkt.meta.ct = CtState::Invalid;
                return Some(pkt);
            }
            TcpVerdict::Reopen => hop(w, cx, &mut pkt, dev, "conntrack", || {
                "SYN for a closed connection: the old entry is destroyed, the SYN tracked as new".into()
            }),
        }
    }
    if let Some((e, dir)) = known {
        // ctinfo: a reply, or a packet of a connection that has seen one, is ESTABLISHED;
        // the original direction stays NEW until then (nf_conntrack_core `resolve_normal_ct`).
        pkt.meta.ct =
            if dir == Direction::Reply || e.seen_reply { CtState::Established } else { CtState::New };
        let to = match dir {
            // As the connection's first packet was rewritten: the inverse of the reply tuple.
            Direction::Original => e.reply.inverse(),
            Direction::Reply => e.original.inverse(),
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
    // A new connection: the rules decide, unless conntrack cannot open one with this segment
    // (`tcp_new`: only a SYN, or an ACK picked up mid-stream).
    let flags = (t.proto == L4::Tcp).then(|| tcp_flags(&pkt));
    if flags.is_some_and(|f| TcpState::opening(f).is_none()) {
        invalid(w, cx, &mut pkt, dev, &t, "no connection, and this segment cannot open one");
        pkt.meta.ct = CtState::Invalid;
        return Some(pkt);
    }
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
    let reply_plain = t.inverse();
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
            hop(w, cx, &mut pkt, dev, "drop", || {
                format!("service {name} has no endpoints: REJECT, ICMP port unreachable to {}", t.src)
            });
            // kube-proxy's REJECT answers from the route back to the client; Cilium's
            // tail_no_service_ipv4 from the Service's own address.
            super::mtu::send_port_unreachable(w, cx, ns, &pkt, bpf.then_some(t.dst));
            cx.drop(pkt, DropReason::ServiceNoEndpoints);
            return None;
        }
        Verdict::Drop { service, .. } => {
            let name = w.proxies[node].table.services[service].name.clone();
            hop(w, cx, &mut pkt, dev, "drop", || format!("service {name} has no local endpoints: DROP"));
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
            (Tuple { src: addr, sport: to, dst: t.src, dport: t.sport, proto: t.proto }, None, false)
        }
        Verdict::Dnat { service, port, endpoint, masq } => {
            let table = &w.proxies[node].table;
            let s = &table.services[service];
            let to = (s.endpoints[endpoint].ip, s.ports[port].target_port);
            let d = Dnat { service, port, endpoint, from: (t.dst, t.dport), to };
            let pod = s.endpoints[endpoint].pod;
            *w.proxies[node].stats.per_endpoint.entry((service, pod)).or_default() += 1;
            (Tuple { src: to.0, sport: to.1, dst: t.src, dport: t.sport, proto: t.proto }, Some(d), masq)
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
    pkt.meta.ct = CtState::New;
    pkt.meta.ct_unconfirmed = Some(id);
    if let Some(f) = flags {
        let v = table(&mut w.proxies[node], bpf).track_tcp(id, Direction::Original, f, now);
        debug_assert_eq!(v, TcpVerdict::Accept, "an opening segment is tracked");
    }
    let mut out = Tuple { src: t.src, sport: t.sport, dst: reply.src, dport: reply.sport, proto: t.proto };
    if bpf && dnat.is_some() && reply.src == t.src {
        // "Special loopback case: The origin endpoint has transmitted to a service which is
        // being translated back to the source. [...] Perform NAT on the source address to make
        // it appear from an outside address" (cilium bpf/lib/lb.h, `lb4_local`): the source
        // becomes IPV4_LOOPBACK, the agent's `--ipv4-service-loopback-address` (169.254.42.1
        // by default); the reply to it is reverse-translated by the same entry.
        table(&mut w.proxies[node], bpf).set_snat(id, (CILIUM_SERVICE_LOOPBACK, t.sport), now);
        out.src = CILIUM_SERVICE_LOOPBACK;
    }
    if masq && bpf {
        // Cilium's BPF SNAT of a NodePort connection to a remote backend, in the same program.
        let src = super::source_for(w, ns, out.dst).unwrap_or(t.src);
        let base = Tuple { dst: src, ..reply };
        match w.proxies[node].masquerade_port(base) {
            Some(port) => {
                table(&mut w.proxies[node], bpf).set_snat(id, (src, port), now);
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
                let snat = if masq && bpf {
                    format!(", masquerade to {}:{}", out.src, out.sport)
                } else {
                    String::new()
                };
                format!("{}:{} -> DNAT to {}:{}{snat}", t.dst, t.dport, out.dst, out.dport)
            });
        }
    }
    Some(pkt)
}

#[cfg(test)]
mod tests {
    use super::{condense, rewrite, tcp_flags, tuple_of};
    use crate::net::conntrack::{Conntrack, Direction, TcpFlags, TcpState, TcpVerdict, Tuple, L4};
    use crate::net::packet::{Packet, ETH_HEADER};
    use crate::time::Instant;
    use smoltcp::wire::{Ipv4Packet, TcpPacket};

    /// 10.244.0.2:40000 -> 10.96.0.10:80, SYN, seq 1, window 64240, checksums valid.
    const SYN_TO_VIP: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x13, 0x3d, 0x0a, 0xf4, 0x00, 0x02, 0x0a,
        0x60, 0x00, 0x0a, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02,
        0xfa, 0xf0, 0x03, 0x01, 0x00, 0x00,
    ];
    /// The same SYN DNATed to the endpoint 10.244.1.5:8080.
    const SYN_TO_ENDPOINT: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x11, 0xae, 0x0a, 0xf4, 0x00, 0x02, 0x0a,
        0xf4, 0x01, 0x05, 0x9c, 0x40, 0x1f, 0x90, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02,
        0xfa, 0xf0, 0xe2, 0x31, 0x00, 0x00,
    ];
    /// The endpoint's SYN-ACK, 10.244.1.5:8080 -> 10.244.0.2:40000, seq 7, ack 2.
    const SYN_ACK_FROM_ENDPOINT: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x11, 0xae, 0x0a, 0xf4, 0x01, 0x05, 0x0a,
        0xf4, 0x00, 0x02, 0x1f, 0x90, 0x9c, 0x40, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x02, 0x50, 0x12,
        0xfa, 0xf0, 0xe2, 0x19, 0x00, 0x00,
    ];
    /// That SYN-ACK reverse-translated: from the VIP 10.96.0.10:80.
    const SYN_ACK_FROM_VIP: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x13, 0x3d, 0x0a, 0x60, 0x00, 0x0a, 0x0a,
        0xf4, 0x00, 0x02, 0x00, 0x50, 0x9c, 0x40, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x02, 0x50, 0x12,
        0xfa, 0xf0, 0x02, 0xe9, 0x00, 0x00,
    ];

    fn packet(ip: &[u8]) -> Packet {
        let mut frame = vec![0u8; ETH_HEADER];
        frame.extend_from_slice(ip);
        Packet { frame, meta: Default::default() }
    }

    fn checksums_valid(pkt: &Packet) -> bool {
        let ip = Ipv4Packet::new_checked(pkt.ip()).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        ip.verify_checksum() && tcp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into())
    }

    #[test]
    fn tcp_syn_to_a_vip_is_dnated_and_its_reply_reverse_translated() {
        let ip = |s: &str| s.parse().unwrap();
        let mut syn = packet(&SYN_TO_VIP);
        let t = tuple_of(&syn).expect("an unfragmented TCP segment has a tuple");
        assert_eq!(
            t,
            Tuple { src: ip("10.244.0.2"), sport: 40000, dst: ip("10.96.0.10"), dport: 80, proto: L4::Tcp }
        );
        assert_eq!(tcp_flags(&syn), TcpFlags::SYN);
        // The rules chose 10.244.1.5:8080; conntrack records the binding, the SYN is rewritten.
        let reply = Tuple { src: ip("10.244.1.5"), sport: 8080, dst: t.src, dport: t.sport, proto: L4::Tcp };
        let mut ct = Conntrack::new(8);
        let id = ct.insert(t, reply, None, false, Instant::ZERO).unwrap();
        assert_eq!(ct.track_tcp(id, Direction::Original, tcp_flags(&syn), Instant::ZERO), TcpVerdict::Accept);
        rewrite(&mut syn, &reply.inverse());
        assert!(checksums_valid(&syn), "IPv4 and TCP checksums fixed after DNAT");
        assert_eq!(syn.ip(), &SYN_TO_ENDPOINT[..]);
        // The endpoint answers; the reply tuple finds the entry and is rewritten from the VIP.
        let mut syn_ack = packet(&SYN_ACK_FROM_ENDPOINT);
        let rt = tuple_of(&syn_ack).unwrap();
        let (rid, dir) = ct.lookup(&rt, Instant::ZERO).expect("the reply finds its connection");
        assert_eq!((rid, dir), (id, Direction::Reply));
        assert_eq!(ct.track_tcp(rid, dir, tcp_flags(&syn_ack), Instant::ZERO), TcpVerdict::Accept);
        assert_eq!(ct.get(id).tcp.unwrap().state, TcpState::SynRecv);
        rewrite(&mut syn_ack, &ct.get(id).original.inverse());
        assert!(checksums_valid(&syn_ack));
        assert_eq!(syn_ack.ip(), &SYN_ACK_FROM_VIP[..]);
    }

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
