//! Cilium (cilium docs; pkg/datapath, pkg/mtu, bpf/): pods on `lxc*` veths whose host side
//! runs `cil_from_container`, `cilium_host`/`cilium_net` holding the node's router address,
//! and either a `collect_md` tunnel device (`cilium_vxlan` on 8472, `cilium_geneve` on 6081:
//! outer UDP checksum zero, VNI = source security identity) or native routing with
//! `auto-direct-node-routes`. Pod devices keep the link MTU; in tunnel mode the pod's routes
//! carry MTU link - 50 (pkg/mtu `TunnelOverhead`).
//!
//! Security identities, the ipcache and the policy maps come from [`policy::compile`], once
//! for the cluster: every node's `CiliumMaps` shares them.

pub mod policy;

use std::sync::Arc;

use crate::addr::{Ipv4Net, Mac};
use crate::cluster::Cni;
use crate::net::route::{Proto, Route};
use crate::world::{CiliumMaps, EbpfHook, TunnelProto, UdpTunnel, World};

use super::{eth0, install, pod_netns};

/// The agent's compilation of `world`'s policies for the cluster's pods and nodes.
pub(super) fn compile(
    c: &crate::cluster::Cluster,
    world: &crate::policy::PolicyWorld,
    previous: Option<&crate::world::cilium_policy::PolicyMaps>,
) -> policy::Compiled {
    let pods: Vec<policy::PodInfo> = c
        .pods
        .iter()
        .map(|p| policy::PodInfo { namespace: &p.namespace, labels: &p.labels, ip: p.ip })
        .collect();
    let node_addrs: Vec<Vec<std::net::Ipv4Addr>> =
        (0..c.nodes.len()).map(|n| vec![c.nodes[n].ip, c.pod_gateway(n)]).collect();
    policy::compile_after(world, &pods, &node_addrs, previous)
}

pub(super) fn build(w: &mut World) {
    let c = w.cluster.clone();
    let tunnel = match c.cni {
        Cni::CiliumVxlan => Some((TunnelProto::Vxlan, "cilium_vxlan", crate::wire::vxlan::LINUX_LEGACY_PORT)),
        Cni::CiliumGeneve => Some((TunnelProto::Geneve, "cilium_geneve", crate::wire::geneve::PORT)),
        Cni::CiliumNative => None,
        other => unreachable!("not a Cilium mode: {other}"),
    };
    // Security identities (of the pod's identity-relevant labels, its namespace's among them),
    // the ipcache and the policy maps.
    let compiled = compile(&c, &c.policy, None);
    let identity = compiled.pod_identity;
    let shared = Arc::new(compiled.maps);
    w.cilium_allocated = Some(Arc::clone(&shared));
    for (n, node) in c.nodes.iter().enumerate() {
        let ns = w.nodes[n].ns;
        let router = c.pod_gateway(n);
        let (host, net) = w.add_veth(
            ns,
            "cilium_host".into(),
            Mac::local(0xc0, 2 * n as u32 + 1),
            ns,
            "cilium_net".into(),
            Mac::local(0xc0, 2 * n as u32 + 2),
            node.mtu,
        );
        w.add_addr(host, router, 32);
        w.devices[net].ebpf = Some(EbpfHook::FromHost);
        // The routes' next hop is the router address on cilium_host itself: the agent pins it to
        // cilium_net's MAC, so what the host routes there crosses the pair into cil_from_host.
        let net_mac = w.devices[net].mac;
        w.netns[ns].neigh.update(router, net_mac, host, crate::net::neigh::NeighState::Permanent);
        install(
            w,
            "cilium-agent",
            Route::new(node.pod_subnet, Some(router), host, Proto::Static).onlink().with_src(router),
        );
        let eth = eth0(w, n);
        w.devices[eth].ebpf = Some(EbpfHook::FromNetdev);
        let tun = tunnel.map(|(proto, name, port)| {
            let t = UdpTunnel {
                proto,
                vni: 0,
                port,
                local: node.ip,
                fdb: Default::default(),
                learning: false,
                udp_csum: false,
                df: false,
                metadata: true,
                underlay: None,
            };
            let d = w.add_udp_tunnel(ns, name.into(), Mac::local(0xc1, n as u32 + 1), node.mtu, t);
            w.devices[d].ebpf = Some(EbpfHook::FromOverlay);
            d
        });
        let mut maps = CiliumMaps {
            tunnel: tun,
            router_ip: Some(router),
            policy: Arc::clone(&shared),
            ..Default::default()
        };
        for (m, other) in c.nodes.iter().enumerate() {
            if m == n {
                continue;
            }
            maps.ipcache.insert(Route::new(
                other.pod_subnet,
                Some(other.ip),
                tun.unwrap_or(eth),
                Proto::Static,
            ));
            if tun.is_some() {
                // The host reaches remote pods through cilium_host, whose program tunnels them.
                install(
                    w,
                    "cilium-agent",
                    Route::new(other.pod_subnet, Some(router), host, Proto::Static)
                        .onlink()
                        .with_src(router)
                        .with_mtu(node.mtu.saturating_sub(50)),
                );
            } else {
                // auto-direct-node-routes: needs the other node on a shared L2 segment.
                install(
                    w,
                    &format!("cilium-agent on {}", node.name),
                    Route::new(other.pod_subnet, Some(other.ip), eth, Proto::Static),
                );
            }
        }
        w.netns[ns].cilium = Some(Box::new(maps));
    }
    for (p, pod) in c.pods.iter().enumerate() {
        let host = w.nodes[pod.node].ns;
        let ns = pod_netns(w, p);
        let name = format!("lxc{:012x}", super::fnv64(pod.name.as_bytes()) & 0xffff_ffff_ffff);
        let (eth0, lxc) = w.add_veth(
            ns,
            "eth0".into(),
            Mac::local(0xc2, p as u32 + 1),
            host,
            name,
            Mac::local(0xc3, p as u32 + 1),
            pod.mtu,
        );
        w.devices[lxc].ebpf = Some(EbpfHook::FromContainer);
        w.add_addr(eth0, pod.ip, 32);
        let router = c.pod_gateway(pod.node);
        let route_mtu = if tunnel.is_some() { pod.mtu.saturating_sub(50) } else { pod.mtu };
        w.add_route(Route::new(Ipv4Net::new(router, 32).expect("/32"), None, eth0, Proto::Boot))
            .expect("device route");
        w.add_route(Route::new(Ipv4Net::DEFAULT, Some(router), eth0, Proto::Boot).with_mtu(route_mtu))
            .expect("on-link");
        let maps = w.netns[host].cilium.as_mut().expect("built above");
        maps.endpoints.insert(pod.ip, (lxc, identity[p]));
    }
}
