//! Path MTU handling: ICMP "fragmentation needed", IPv4 fragmentation on output and
//! reassembly on local delivery (net/ipv4/ip_output.c `ip_do_fragment`, ip_fragment.c,
//! icmp.c).

use super::*;

/// `ip_do_fragment`: splits the packet into fragments that fit `mtu` (DF cleared) and sends
/// each. The first fragment carries the datagram's accounting tag; the others are plain bytes
/// on the wire, and the datagram is delivered when the receiver reassembles it.
#[allow(clippy::too_many_arguments)]
pub(super) fn fragment_and_send(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    dev: DevId,
    nh: Ipv4Addr,
    mut pkt: Packet,
    mtu: u32,
) {
    {
        let mut ip = Ipv4Packet::new_unchecked(pkt.ip_mut());
        ip.set_dont_frag(false);
        ip.fill_checksum();
    }
    let frags = match crate::wire::ipv4frag::fragment(pkt.ip(), mtu as usize) {
        Ok(f) => f,
        Err(_) => return cx.drop(pkt, DropReason::MtuExceeded),
    };
    let n = frags.len();
    let len = pkt.frame.len() - ETH_HEADER;
    hop(w, cx, &mut pkt, dev, "fragment", || format!("{len} B > MTU {mtu}: {n} fragments"));
    for (i, f) in frags.into_iter().enumerate() {
        cx.charge(Step::Fragment, w.costs.ip_fragment);
        let mut frame = vec![0u8; ETH_HEADER];
        frame[12] = 0x08; // ethertype IPv4
        frame.extend_from_slice(&f);
        let meta = if i == 0 {
            std::mem::take(&mut pkt.meta)
        } else {
            crate::net::packet::Meta { trace: None, ..Default::default() }
        };
        dev_output(w, cx, ns, dev, nh, Packet { frame, meta });
    }
}

/// `icmp_send(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu)` for an oversized DF packet: quotes up
/// to 548 bytes of it, from this node's address towards the sender.
pub(super) fn send_frag_needed(w: &mut World, cx: &mut Ctx, ns: NsId, pkt: &Packet, mtu: u32) {
    if w.cluster.underlay.filter_icmp && matches!(w.netns[ns].kind, crate::world::NsKind::Router(_)) {
        // The fabric filters ICMP: the sender never learns (`underlay.filter_icmp`).
        w.icmp_filtered += 1;
        return;
    }
    let icmp = crate::wire::icmp_frag::frag_needed_linux(pkt.ip(), mtu.min(u16::MAX as u32) as u16);
    if send_icmp(w, cx, ns, pkt, icmp, None) {
        w.icmp_sent += 1;
    }
}

/// `icmp_send(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH)` for `pkt`, as a REJECT rule sends it (or
/// Cilium for a Service without backends, from the Service's address, `from`).
pub(super) fn send_port_unreachable(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    pkt: &Packet,
    from: Option<Ipv4Addr>,
) {
    let icmp = crate::wire::icmp_frag::port_unreachable_linux(pkt.ip());
    if send_icmp(w, cx, ns, pkt, icmp, from) {
        w.icmp_port_unreachable += 1;
    }
}

/// Sends the ICMP message `icmp` about `pkt` back to its sender, from `src` or, by default,
/// the address the route towards the sender gives (`__icmp_send` with `saddr` 0 for a
/// forwarded packet). False when there is no route back.
fn send_icmp(
    w: &mut World,
    cx: &mut Ctx,
    ns: NsId,
    pkt: &Packet,
    icmp: Vec<u8>,
    src: Option<Ipv4Addr>,
) -> bool {
    let orig_src = Ipv4Packet::new_unchecked(pkt.ip()).src_addr();
    let Some(src) = src.or_else(|| source_for(w, ns, orig_src)) else { return false };
    let ident = next_ident(w, ns);
    let total = IPV4_HEADER + icmp.len();
    let mut frame = vec![0u8; ETH_HEADER + total];
    frame[12] = 0x08; // ethertype IPv4; the addresses are written by neigh_output
    frame[ETH_HEADER + IPV4_HEADER..].copy_from_slice(&icmp);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER..]);
        ip.set_version(4);
        ip.set_header_len(IPV4_HEADER as u8);
        ip.set_dscp(0x30); // precedence "internetwork control" (IPTOS_PREC_INTERNETCONTROL)
        ip.set_total_len(total as u16);
        ip.set_ident(ident);
        ip.clear_flags();
        ip.set_dont_frag(true);
        ip.set_hop_limit(64);
        ip.set_next_header(IpProtocol::Icmp);
        ip.set_src_addr(src);
        ip.set_dst_addr(orig_src);
        ip.fill_checksum();
    }
    ip_output(w, cx, ns, Packet { frame, meta: control_meta(w) });
    true
}

/// An ICMP message for this host: "fragmentation needed" records a path MTU exception for the
/// quoted destination (`ipv4_sk_update_pmtu`); others are ignored.
pub(super) fn icmp_rcv(w: &mut World, ns: NsId, pkt: Packet) {
    let ip = Ipv4Packet::new_unchecked(pkt.ip());
    if let Some((mtu, quoted)) = crate::wire::icmp_frag::parse_frag_needed(ip.payload()) {
        // The quote is truncated (548 B at most): read the destination from the header bytes.
        let dst = Ipv4Addr::new(quoted[16], quoted[17], quoted[18], quoted[19]);
        let e = w.netns[ns].pmtu.entry(dst).or_insert(u32::MAX);
        *e = (*e).min(mtu as u32);
    }
    consume(w, pkt);
}

/// `ip_defrag`: queue a fragment; returns the whole datagram once complete. The first
/// fragment's metadata waits with the queue, so the datagram stays accounted for.
pub(super) fn reassemble(w: &mut World, cx: &mut Ctx, ns: NsId, mut pkt: Packet) -> Option<Packet> {
    cx.charge(Step::Fragment, w.costs.ip_reassemble);
    let now = cx.now();
    let key = {
        let ip = Ipv4Packet::new_unchecked(pkt.ip());
        crate::wire::ipv4frag::FragKey {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol: ip.next_header().into(),
            ident: ip.ident(),
        }
    };
    // ipfrag_time: datagrams waiting longer than 30 s are dropped.
    let limit = crate::wire::ipv4frag::LINUX_FRAG_TIME_NS;
    let expired: Vec<_> = w.netns[ns]
        .frag_meta
        .iter()
        .filter(|(_, (_, t))| now.saturating_since(*t).as_nanos() >= limit)
        .map(|(k, _)| *k)
        .collect();
    if !expired.is_empty() {
        w.netns[ns].reasm.expire(now.as_nanos().saturating_sub(limit));
        for k in expired {
            if let Some((meta, _)) = w.netns[ns].frag_meta.remove(&k) {
                cx.drop(Packet { frame: Vec::new(), meta }, DropReason::Reassembly);
            }
        }
    }
    if pkt.meta.data.is_some() || pkt.meta.trace.is_some() {
        w.netns[ns].frag_meta.insert(key, (std::mem::take(&mut pkt.meta), now));
    }
    match w.netns[ns].reasm.push(pkt.ip(), now.as_nanos()) {
        Ok(Some(whole)) => {
            let meta = w.netns[ns].frag_meta.remove(&key).map(|m| m.0).unwrap_or_default();
            let mut frame = pkt.frame[..ETH_HEADER].to_vec();
            frame.extend_from_slice(&whole);
            Some(Packet { frame, meta })
        }
        Ok(None) => None,
        Err(_) => {
            if let Some((meta, _)) = w.netns[ns].frag_meta.remove(&key) {
                cx.drop(Packet { frame: Vec::new(), meta }, DropReason::Reassembly);
            }
            None
        }
    }
}
