//! Encapsulating devices: the IPIP tunnel (`tunl0`), VXLAN and Geneve devices, and the Open
//! vSwitch datapath Weave fastdp drives.

use super::*;

/// `ip_tunnel_xmit` on a `remote any` IPIP device: wrap the packet in an outer IPv4 header to
/// the next hop, then route the result as a locally generated packet. As the fallback
/// `tunl0` does (parameters all zero, net/ipv4/ip_tunnel.c): TTL inherited from the inner
/// packet, DSCP 0 with the inner ECN bits, DF copied from the inner packet, protocol 4.
pub(super) fn ipip_xmit(w: &mut World, cx: &mut Ctx, ns: NsId, dev: DevId, nh: Ipv4Addr, mut pkt: Packet) {
    capture(w, cx, dev, &pkt);
    cx.charge(Step::Encap, w.costs.ipip_encap);
    let Some(src) = source_for(w, ns, nh) else {
        hop(w, cx, &mut pkt, dev, "drop", || format!("no route to tunnel endpoint {nh}"));
        return cx.drop(pkt, DropReason::NoRoute);
    };
    let ident = next_ident(w, ns);
    let outer = encap_ipv4(&pkt.frame[ETH_HEADER..], src, nh, IPPROTO_IPIP, ident, None);
    pkt.frame = outer;
    // A super-packet stays one (SKB_GSO_IPXIP4): the NIC or software GSO cuts both layers.
    if let Some(g) = pkt.meta.gso.as_mut() {
        g.encap = crate::net::gso::Encap::Ipip;
    }
    hop(w, cx, &mut pkt, dev, "encap", || format!("IPIP {src} -> {nh}"));
    ip_output(w, cx, ns, pkt);
}

/// Builds `[blank Ethernet][outer IPv4][payload]`. The outer header takes DSCP 0 with the
/// inner ECN bits, and TTL and DF from the inner header unless `ttl_df` fixes them.
pub(super) fn encap_ipv4(
    inner: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    ident: u16,
    ttl_df: Option<(u8, bool)>,
) -> Vec<u8> {
    let inner_ip = Ipv4Packet::new_unchecked(inner);
    let (ttl, df) = ttl_df.unwrap_or((inner_ip.hop_limit(), inner_ip.dont_frag()));
    let ecn = inner_ip.ecn();
    let total = IPV4_HEADER + inner.len();
    let mut frame = vec![0u8; ETH_HEADER + total];
    frame[ETH_HEADER + IPV4_HEADER..].copy_from_slice(inner);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH_HEADER..]);
    ip.set_version(4);
    ip.set_header_len(IPV4_HEADER as u8);
    ip.set_dscp(0);
    ip.set_ecn(ecn);
    ip.set_total_len(total as u16);
    ip.set_ident(ident);
    ip.clear_flags();
    ip.set_dont_frag(df);
    ip.set_frag_offset(0);
    ip.set_hop_limit(ttl);
    ip.set_next_header(proto);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    set_ethernet(&mut frame, Mac([0; 6]), Mac([0; 6]), EthernetProtocol::Ipv4);
    frame
}

/// An IPIP packet arrived for this host: strip the outer header and receive the inner packet
/// on the namespace's IPIP device (`ipip_rcv`).
pub(super) fn ipip_rcv(w: &mut World, cx: &mut Ctx, ns: NsId, mut pkt: Packet) {
    let Some(tunl) =
        w.netns[ns].devices.iter().copied().find(|&d| matches!(w.devices[d].kind, DeviceKind::Ipip))
    else {
        return cx.drop(pkt, DropReason::UnknownProtocol);
    };
    cx.charge(Step::Decap, w.costs.ipip_decap);
    let hl = Ipv4Packet::new_unchecked(pkt.ip()).header_len() as usize;
    pkt.frame.drain(ETH_HEADER..ETH_HEADER + hl);
    if let Some(g) = pkt.meta.gso.as_mut() {
        g.encap = crate::net::gso::Encap::Plain;
    }
    hop(w, cx, &mut pkt, tunl, "decap", || "IPIP: outer header removed".into());
    capture(w, cx, tunl, &pkt);
    ip_rcv(w, cx, tunl, pkt);
}

/// `vxlan_xmit_one` / `geneve_xmit`: find the remote endpoint (FDB, or the eBPF tunnel key in
/// `collect_md` mode), wrap the frame in outer Ethernet/IPv4/UDP/VXLAN-or-Geneve headers and
/// route the result from the device's namespace.
///
/// Outer header as Linux builds it (drivers/net/vxlan/vxlan_core.c, geneve.c): TTL 64 (ttl 0
/// = ip4_dst_hoplimit), DSCP 0 with the inner ECN bits, DF only when configured, UDP source
/// port from the inner flow hash scaled into 32768-60999 (`udp_flow_src_port`), UDP checksum
/// computed unless zero-checksum mode is configured.
pub(super) fn udp_tunnel_xmit(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    cx.charge(Step::Encap, w.costs.vxlan_encap);
    let ns = w.devices[dev].ns;
    let t = w.devices[dev].tunnel().expect("caller matched UdpTunnel");
    let (inner_dst, _) = eth_dst_src(&pkt.frame);
    let remote = if t.metadata { pkt.meta.tunnel_key } else { t.fdb.get(&inner_dst).map(|ip| (*ip, t.vni)) };
    let Some((remote, vni)) = remote else {
        hop(w, cx, &mut pkt, dev, "drop", || format!("no FDB entry for {inner_dst}"));
        return cx.drop(pkt, DropReason::NoTunnelEndpoint);
    };
    let (proto, port, local, csum, df) = (t.proto, t.port, t.local, t.udp_csum, t.df);
    let inner = flow_hash(&pkt.frame);
    let hash = inner ^ (inner << 16);
    // udp_flow_src_port(min, max): VXLAN uses the ephemeral range 32768-60999 (port_min/max
    // unset), Geneve passes 1..USHRT_MAX (drivers/net/geneve.c).
    let (min, max) = match proto {
        TunnelProto::Vxlan => (32768u64, 61000u64),
        TunnelProto::Geneve => (1, 65535),
    };
    let sport = (((hash as u64 * (max - min)) >> 32) + min) as u16;
    let tun_hdr = match proto {
        TunnelProto::Vxlan => crate::wire::vxlan::HEADER_LEN,
        TunnelProto::Geneve => crate::wire::geneve::HEADER_LEN,
    };
    let udp_len = UDP_HEADER + tun_hdr + pkt.frame.len();
    let mut payload = vec![0u8; udp_len];
    match proto {
        TunnelProto::Vxlan => crate::wire::vxlan::Repr { vni }
            .emit(&mut crate::wire::vxlan::Packet::new_unchecked(&mut payload[UDP_HEADER..])),
        TunnelProto::Geneve => crate::wire::geneve::Repr {
            vni,
            protocol: crate::wire::geneve::ETHERNET_BRIDGING,
            options_len: 0,
            oam: false,
            critical: false,
        }
        .emit(&mut crate::wire::geneve::Packet::new_unchecked(&mut payload[UDP_HEADER..])),
    }
    payload[UDP_HEADER + tun_hdr..].copy_from_slice(&pkt.frame);
    {
        let mut udp = UdpPacket::new_unchecked(&mut payload[..]);
        udp.set_src_port(sport);
        udp.set_dst_port(port);
        udp.set_len(udp_len as u16);
        udp.set_checksum(0);
        if csum {
            crate::wire::csum::fill_udp(udp.into_inner(), local, remote);
        }
    }
    let ecn = Ipv4Packet::new_unchecked(&pkt.frame[ETH_HEADER..]).ecn();
    let ident = next_ident(w, ns);
    let mut outer = encap_ipv4(&payload, local, remote, IpProtocol::Udp, ident, Some((64, df)));
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut outer[ETH_HEADER..]);
        ip.set_ecn(ecn);
        ip.fill_checksum();
    }
    pkt.frame = outer;
    // A super-packet stays one (SKB_GSO_UDP_TUNNEL): the NIC or software GSO cuts both layers.
    if let Some(g) = pkt.meta.gso.as_mut() {
        g.encap = crate::net::gso::Encap::Udp { header: tun_hdr as u8 };
    }
    let name = if proto == TunnelProto::Vxlan { "VXLAN" } else { "Geneve" };
    hop(w, cx, &mut pkt, dev, "encap", || {
        format!("{name} VNI {vni} to {remote}:{port}, UDP source port {sport}")
    });
    ip_output(w, cx, ns, pkt);
}

/// A UDP datagram for a tunnel device's port: check the outer UDP checksum, strip the
/// outer headers, check the VNI, learn the remote if learning, receive the inner frame on the
/// device (`vxlan_rcv`, `geneve_rx`).
pub(super) fn udp_tunnel_rcv(w: &mut World, cx: &mut Ctx, dev: DevId, mut pkt: Packet) {
    cx.charge(Step::Decap, w.costs.vxlan_decap);
    let (outer_src, udp_off) = {
        let ip = Ipv4Packet::new_unchecked(pkt.ip());
        (ip.src_addr(), ETH_HEADER + ip.header_len() as usize)
    };
    let t = w.devices[dev].tunnel().expect("tunnel_ports maps to tunnel devices");
    let (proto, vni_ok, metadata) = (t.proto, t.vni, t.metadata);
    let parsed = match proto {
        TunnelProto::Vxlan => crate::wire::vxlan::Packet::new_checked(&pkt.frame[udp_off + UDP_HEADER..])
            .and_then(|p| {
                crate::wire::vxlan::Repr::parse(&p).map(|r| (r.vni, crate::wire::vxlan::HEADER_LEN))
            }),
        TunnelProto::Geneve => crate::wire::geneve::Packet::new_checked(&pkt.frame[udp_off + UDP_HEADER..])
            .and_then(|p| crate::wire::geneve::Repr::parse(&p).map(|r| (r.vni, r.buffer_len()))),
    };
    let Ok((vni, hdr)) = parsed else {
        return cx.drop(pkt, DropReason::Malformed);
    };
    if !metadata && vni != vni_ok {
        hop(w, cx, &mut pkt, dev, "drop", || format!("VNI {vni}, device serves {vni_ok}"));
        return cx.drop(pkt, DropReason::WrongVni);
    }
    pkt.frame.drain(..udp_off + UDP_HEADER + hdr);
    if pkt.frame.len() < ETH_HEADER {
        return cx.drop(pkt, DropReason::Malformed);
    }
    if let Some(g) = pkt.meta.gso.as_mut() {
        g.encap = crate::net::gso::Encap::Plain;
    }
    let (_, inner_src) = eth_dst_src(&pkt.frame);
    if let Some(t) = w.devices[dev].tunnel_mut() {
        if t.learning {
            t.fdb.insert(inner_src, outer_src);
        }
    }
    hop(w, cx, &mut pkt, dev, "decap", || format!("VNI {vni} from {outer_src}"));
    if metadata {
        pkt.meta.tunnel_key = Some((outer_src, vni)); // bpf_skb_get_tunnel_key / OVS tun_key
    }
    dev_rx(w, cx, dev, pkt);
}

/// Weave fastdp's OVS datapath receives a frame on `port`: learn the source, then send to the
/// local port, to the peer owning the destination (VXLAN with tunnel id src | dst << 12), or
/// for broadcasts and unknown MACs from the local port to every peer.
pub(super) fn ovs_input(w: &mut World, cx: &mut Ctx, dp: DevId, port: DevId, mut pkt: Packet) {
    cx.charge(Step::Ovs, w.costs.ovs_flow);
    let (dst, src) = eth_dst_src(&pkt.frame);
    let DeviceKind::Ovs(o) = &mut w.devices[dp].kind else { unreachable!("caller matched Ovs") };
    let from_tunnel = port == o.tunnel;
    let learned = if from_tunnel { pkt.meta.tunnel_key.map(|(ip, vni)| (ip, vni & 0xfff)) } else { None };
    if !src.is_multicast() {
        o.macs.insert(src, learned);
    }
    let (local, tunnel, me) = (o.local_port, o.tunnel, o.short_id);
    let known = if dst.is_multicast() { None } else { o.macs.get(&dst).copied() };
    let targets: Vec<Option<(Ipv4Addr, u32)>> = match known {
        Some(t) => vec![t],
        None if from_tunnel => vec![None],
        None => o.peers.iter().map(|p| Some(*p)).collect(),
    };
    if targets.is_empty() {
        return cx.drop(pkt, DropReason::NotForThisHost);
    }
    hop(w, cx, &mut pkt, dp, "flow", || match known {
        Some(None) => format!("{dst} is behind the local port"),
        Some(Some((ip, sid))) => format!("{dst} is behind peer {sid} at {ip}"),
        None => format!("{dst} unknown or broadcast: {} copies", targets.len()),
    });
    stamp_flood(w, &mut pkt, targets.len(), &mut cx.actions);
    let last = targets.len() - 1;
    for (i, t) in targets.into_iter().enumerate() {
        let mut copy = if i == last {
            std::mem::replace(&mut pkt, Packet { frame: Vec::new(), meta: Default::default() })
        } else {
            pkt.flood_copy()
        };
        match t {
            None if from_tunnel || port != local => dev_xmit(w, cx, local, copy),
            None => cx.drop(copy, DropReason::SamePort),
            Some((ip, sid)) => {
                copy.meta.tunnel_key = Some((ip, me | sid << 12));
                dev_xmit(w, cx, tunnel, copy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipip_outer_header_bytes() {
        // Inner: 10.244.0.2 -> 10.244.1.2, UDP, 4 B payload, TTL 64, DF, ident 1.
        let inner =
            crate::net::packet::udp_frame([10, 244, 0, 2].into(), [10, 244, 1, 2].into(), 40000, 5201, 4, 1);
        let outer = encap_ipv4(
            &inner[ETH_HEADER..],
            [192, 168, 0, 1].into(),
            [192, 168, 0, 2].into(),
            IPPROTO_IPIP,
            9,
            None,
        );
        // Checksum computed independently: python3 RFC 1071 over the 20 header bytes -> 0xb969.
        #[rustfmt::skip]
        let expected_header = [
            0x45, 0x00, 0x00, 0x34, 0x00, 0x09, 0x40, 0x00, 0x40, 0x04, 0xb9, 0x69,
            0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0x02,
        ];
        assert_eq!(outer[ETH_HEADER..ETH_HEADER + 20], expected_header);
        assert_eq!(outer[ETH_HEADER + 20..], inner[ETH_HEADER..]);
    }
}
