//! Calico (calico docs: networking/bgp, mtu, ippool; projectcalico/calico felix and
//! cni-plugin sources): pods on `cali*` veths with no bridge, /32 addresses and proxy ARP, IPAM
//! blocks (/26) affine to nodes, and per remote block a route that BIRD (BGP, IPIP) or Felix
//! (VXLAN) programs. Without `bgp:` in the scenario, routes come from the cluster's IPAM blocks
//! here: the routes the BGP full mesh (or ToR peering) would deliver once converged; with it,
//! BIRD's speakers (`run/bgp.rs`) install [`block_route`] when their sessions deliver a block.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, Mac};
use crate::cluster::{Cni, Fabric};
use crate::net::neigh::NeighState;
use crate::net::route::{Proto, Route};
use crate::world::{DeviceKind, UdpTunnel, World};

pub mod policy;

use super::{eth0, install, pod_netns, same_subnet};

/// Calico's IPv4 IPAM block size (IPPool `blockSize` default 26).
const BLOCK_PREFIX: u8 = 26;
/// The pods' fake gateway, answered by proxy ARP on every `cali*` interface.
const FAKE_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Host side MAC of every `cali*` veth (cni-plugin `dataplane_linux.go`).
const CALI_MAC: Mac = Mac([0xee; 6]);
/// Felix defaults `VXLANPort` 4789 and `VXLANVNI` 4096 (felix/config/config_params.go).
const VXLAN_PORT: u16 = crate::wire::vxlan::IANA_PORT;
const VXLAN_VNI: u32 = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encap {
    None,
    Ipip,
    Vxlan,
}

pub(super) fn build(w: &mut World) {
    let (encap, cross_subnet) = match w.cluster.cni {
        Cni::CalicoBgp => (Encap::None, false),
        Cni::CalicoIpip => (Encap::Ipip, false),
        Cni::CalicoIpipCrossSubnet => (Encap::Ipip, true),
        Cni::CalicoVxlan => (Encap::Vxlan, false),
        Cni::CalicoVxlanCrossSubnet => (Encap::Vxlan, true),
        other => unreachable!("not a Calico mode: {other}"),
    };
    pods(w);
    felix_filter(w);
    let c = w.cluster.clone();
    let blocks: Vec<Vec<Ipv4Net>> = (0..c.nodes.len()).map(|n| node_blocks(w, n)).collect();
    // Tunnel devices. The tunnel address is ordinal 0 of the node's first block, as a /32
    // (node/pkg/allocateip: handle `ipip-tunnel-addr-<node>` / `vxlan-tunnel-addr-<node>`).
    let mut tunnels = Vec::new();
    for (n, node) in c.nodes.iter().enumerate() {
        let ns = w.nodes[n].ns;
        let addr = blocks[n][0].network();
        let dev = match encap {
            Encap::None => None,
            Encap::Ipip => Some(w.add_device(
                ns,
                "tunl0".into(),
                Mac([0; 6]),
                node.mtu.saturating_sub(20),
                DeviceKind::Ipip,
            )),
            Encap::Vxlan => {
                let t = UdpTunnel::vxlan(VXLAN_VNI, VXLAN_PORT, node.ip, eth0(w, n));
                let mac = vtep_mac(&node.name);
                Some(w.add_udp_tunnel(ns, "vxlan.calico".into(), mac, node.mtu.saturating_sub(50), t))
            }
        };
        if let Some(d) = dev {
            w.add_addr(d, addr, 32);
        }
        tunnels.push(dev);
    }
    // With the BGP control plane simulated, BIRD installs the routes to other nodes' blocks
    // when its sessions deliver them (`run/bgp.rs`); without it they are here from the start.
    let bird_routes = c.bgp.is_none() || !c.cni.runs_bird();
    for (n, node) in c.nodes.iter().enumerate() {
        let who = format!("calico-node on {}", node.name);
        for (m, other) in c.nodes.iter().enumerate() {
            if m == n {
                continue;
            }
            let direct = encap == Encap::None || (cross_subnet && same_subnet(node, other));
            if encap == Encap::Vxlan && !direct {
                let dev = tunnels[n].expect("VXLAN mode has a device");
                let vtep = blocks[m][0].network();
                let ns = w.nodes[n].ns;
                w.netns[ns].neigh.update(vtep, vtep_mac(&other.name), dev, NeighState::Permanent);
                w.devices[dev]
                    .tunnel_mut()
                    .expect("vxlan.calico")
                    .fdb
                    .insert(vtep_mac(&other.name), other.ip);
                install(w, &who, Route::new(Ipv4Net::new(vtep, 32).expect("/32"), None, dev, Proto::Static));
            }
            if encap == Encap::Vxlan || bird_routes {
                for &block in &blocks[m] {
                    let route = block_route(w, n, m, block);
                    install(w, &who, route);
                }
            }
        }
    }
    if encap == Encap::None {
        if let Fabric::LeafSpine { .. } = c.underlay.fabric {
            fabric_routes(w, &blocks);
        }
    }
}

/// The route node `n` has to `block`, one of node `m`'s IPAM blocks: what BIRD's kernel
/// protocol installs for the BGP route (through `calico_kernel_programming` in
/// bird_ipam.cfg: `dev tunl0 onlink` for an IPIP pool's block when the peer needs the
/// tunnel), or what Felix programs for a VXLAN pool.
pub fn block_route(w: &World, n: usize, m: usize, block: Ipv4Net) -> Route {
    let c = &w.cluster;
    let (node, other) = (&c.nodes[n], &c.nodes[m]);
    let (encap, cross_subnet) = match c.cni {
        Cni::CalicoBgp => (Encap::None, false),
        Cni::CalicoIpip => (Encap::Ipip, false),
        Cni::CalicoIpipCrossSubnet => (Encap::Ipip, true),
        Cni::CalicoVxlan => (Encap::Vxlan, false),
        _ => (Encap::Vxlan, true),
    };
    let eth = eth0(w, n);
    let tunnel = |name: &str| w.dev_by_name(w.nodes[n].ns, name).expect("the mode's tunnel device");
    let direct = encap == Encap::None || (cross_subnet && same_subnet(node, other));
    match (direct, encap) {
        // BGP-learned next hop: the peer itself on a shared subnet, else the gateway the
        // recursive next hop resolves through (or, with ToR peering, the ToR that
        // re-advertised it: eBGP next-hop-self).
        // VXLAN pools' routes come from Felix (BIRD rejects them), with onlink.
        (true, _) if same_subnet(node, other) => match encap {
            Encap::Vxlan => Route::new(block, Some(other.ip), eth, Proto::Static).onlink(),
            _ => Route::new(block, Some(other.ip), eth, Proto::Bird),
        },
        (true, _) => match node.gateway {
            Some(gw) => Route::new(block, Some(gw), eth, Proto::Bird),
            None => Route::new(block, Some(other.ip), eth, Proto::Bird),
        },
        (false, Encap::Ipip) => Route::new(block, Some(other.ip), tunnel("tunl0"), Proto::Bird).onlink(),
        (false, _) => {
            let vtep = node_blocks(w, m)[0].network();
            Route::new(block, Some(vtep), tunnel("vxlan.calico"), Proto::Static).onlink()
        }
    }
}

/// The IPAM blocks of every node, as BIRD on that node originates them.
pub fn blocks(w: &World) -> Vec<Vec<Ipv4Net>> {
    (0..w.cluster.nodes.len()).map(|n| node_blocks(w, n)).collect()
}

/// The pods: a veth per pod, `eth0` inside with a /32 address, `169.254.1.1 dev eth0 scope
/// link` and `default via 169.254.1.1 dev eth0`; on the host `caliXXXXXXXXXXX` with MAC
/// ee:ee:ee:ee:ee:ee, proxy_arp = 1, and the route `<pod IP> dev caliX scope link`.
fn pods(w: &mut World) {
    let c = w.cluster.clone();
    for (p, pod) in c.pods.iter().enumerate() {
        let host = w.nodes[pod.node].ns;
        let ns = pod_netns(w, p);
        let name = policy::veth_name(&pod.namespace, &pod.name);
        let pod_mac = Mac::local(0xca, p as u32 + 1);
        let (eth0, cali) = w.add_veth(ns, "eth0".into(), pod_mac, host, name, CALI_MAC, pod.mtu);
        w.devices[cali].proxy_arp = true;
        w.add_addr(eth0, pod.ip, 32);
        let gw_net = Ipv4Net::new(FAKE_GATEWAY, 32).expect("/32");
        w.add_route(Route::new(gw_net, None, eth0, Proto::Boot)).expect("device route");
        w.add_route(Route::new(Ipv4Net::DEFAULT, Some(FAKE_GATEWAY), eth0, Proto::Boot)).expect("on-link");
        let host_route = Route::new(Ipv4Net::new(pod.ip, 32).expect("/32"), None, cali, Proto::Boot);
        w.add_route(host_route).expect("device route");
    }
}

/// Felix's filter table on every node (policy enforcement; programmed with or without
/// policies: the endpoint chains and profiles are there from the pod's start).
fn felix_filter(w: &mut World) {
    let c = w.cluster.clone();
    for (n, table) in felix_tables(&c, &c.policy).into_iter().enumerate() {
        let ns = w.nodes[n].ns;
        w.netns[ns].filter = Some(Box::new(table));
    }
}

/// Felix's filter table of every node for the policies of `world`.
pub(super) fn felix_tables(
    c: &crate::cluster::Cluster,
    world: &crate::policy::PolicyWorld,
) -> Vec<crate::net::filter::FilterTable> {
    let ifaces: Vec<String> = c.pods.iter().map(|p| policy::veth_name(&p.namespace, &p.name)).collect();
    let workloads: Vec<policy::Workload> =
        (0..c.pods.len()).map(|p| policy::Workload { pod: c.pod_ref(p), iface: &ifaces[p] }).collect();
    (0..c.nodes.len()).map(|n| policy::filter_table(world, &workloads, n)).collect()
}

/// The IPAM blocks affine to node `n`: its first block (holding the tunnel address) and every
/// block holding one of its pods, in address order.
fn node_blocks(w: &World, n: usize) -> Vec<Ipv4Net> {
    let c = &w.cluster;
    let subnet = c.nodes[n].pod_subnet;
    let prefix = BLOCK_PREFIX.max(subnet.prefix());
    let block_of =
        |ip: Ipv4Addr| Ipv4Net::new(Ipv4Addr::from(u32::from(ip) & (u32::MAX << (32 - prefix))), prefix);
    let mut set: BTreeSet<Ipv4Net> =
        c.pods.iter().filter(|p| p.node == n).filter_map(|p| block_of(p.ip)).collect();
    set.insert(subnet.subnet(prefix, 0).expect("prefix is at least the subnet's"));
    set.into_iter().collect()
}

/// Routes the fabric learns when every node peers with its ToR (Calico "peering with ToR
/// routers"): each ToR routes its nodes' blocks to the node, each spine routes every rack's
/// blocks to that rack's ToR.
fn fabric_routes(w: &mut World, blocks: &[Vec<Ipv4Net>]) {
    let c = w.cluster.clone();
    for (n, node) in c.nodes.iter().enumerate() {
        let tor_ns =
            w.routers.iter().copied().find(|&r| w.netns[r].name == format!("rack-{}-tor", node.rack + 1));
        let Some(tor) = tor_ns else { continue };
        let tor_eth = w.dev_by_name(tor, "eth0").expect("ToRs have eth0");
        for &b in &blocks[n] {
            install(
                w,
                &format!("BGP on {}", w.netns[tor].name),
                Route::new(b, Some(node.ip), tor_eth, Proto::Bird),
            );
        }
        for s in 0..w.routers.len() {
            let spine = w.routers[s];
            if !w.netns[spine].name.starts_with("spine-") {
                continue;
            }
            let rack_net = Ipv4Net::new(
                Ipv4Addr::from(u32::from(node.ip) & (u32::MAX << (32 - node.prefix))),
                node.prefix,
            )
            .expect("masked");
            let Some(via) = w.netns[spine].main.lookup(rack_net.network()).cloned() else { continue };
            for &b in &blocks[n] {
                let r = Route::new(b, via.gateway, via.dev, Proto::Bird);
                install(w, &format!("BGP on {}", w.netns[spine].name), r);
            }
        }
    }
}

/// Felix's VTEP MAC when none is configured: 0x66 ('f') then the first five bytes of
/// SHA-1(node name) (felix/calc/vxlan_resolver.go `vtepMACForHost`).
fn vtep_mac(node: &str) -> Mac {
    let sha = sha1_smol::Sha1::from(node.as_bytes()).digest().bytes();
    Mac([0x66, sha[0], sha[1], sha[2], sha[3], sha[4]])
}

#[cfg(test)]
mod tests {
    #[test]
    fn vtep_mac_follows_felix() {
        // python3 -c "import hashlib; print(hashlib.sha1(b'node-1').hexdigest()[:10])" -> b36828398e
        assert_eq!(super::vtep_mac("node-1").to_string(), "66:b3:68:28:39:8e");
    }
}
