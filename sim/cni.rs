//! What each CNI plugin creates on a node. One builder per plugin; each reads like the
//! plugin's own netlink calls and cites where the behaviour comes from.
//!
//! Implemented so far: `flannel-host-gw`.

use crate::addr::Mac;
use crate::cluster::Cni;
use crate::net::bridge::Fdb;
use crate::net::route::{Proto, Route};
use crate::world::{DeviceKind, NsKind, World};

/// Builds the CNI's devices, addresses and routes on every node and pod of `w`.
pub fn build(w: &mut World) {
    match w.cluster.cni {
        Cni::FlannelHostGw => flannel_host_gw(w),
        other => unreachable!("scenario::resolve admits only implemented CNIs, got {other}"),
    }
}

/// flannel with the `host-gw` backend (flannel Documentation/backends.md; flannel's CNI
/// config delegates to the `bridge` plugin with `isDefaultGateway: true`):
/// - `cni0`: a Linux bridge holding the first address of the node's pod subnet;
/// - per pod, a veth pair: `eth0` in the pod (MAC `0a:58:<ip>`, the pod subnet route and
///   `default via <cni0 address>`), `vethXXXXXXXX` on the host, enslaved to `cni0`;
/// - per remote node, `ip route replace <its pod subnet> via <its node IP> dev eth0`, written
///   by flanneld from the subnet leases (no `proto`, so `ip route` shows none);
/// - `net.ipv4.ip_forward = 1`.
///
/// The routes need every node on one L2 segment: the next hop is the remote node itself.
fn flannel_host_gw(w: &mut World) {
    let cluster = w.cluster.clone();
    let subnet_prefix = cluster.network.node_subnet_prefix;
    for (n, node) in cluster.nodes.iter().enumerate() {
        let host = w.nodes[n].ns;
        let gw = cluster.pod_gateway(n);
        let pod_mtu = cluster.pods.iter().find(|p| p.node == n).map_or(node.mtu, |p| p.mtu);
        let bridge_kind = DeviceKind::Bridge { fdb: Fdb::default(), ports: Vec::new() };
        let cni0 = w.add_device(host, "cni0".into(), Mac::from_ip(gw), pod_mtu, bridge_kind);
        w.add_addr(cni0, gw, subnet_prefix);
        let eth0 = w.dev_by_name(host, "eth0").expect("build() created eth0");
        for (m, other) in cluster.nodes.iter().enumerate() {
            if m != n {
                let route = Route::new(other.pod_subnet, Some(other.ip), eth0, Proto::Boot);
                if let Err(e) = w.add_route(route) {
                    w.warnings.push(format!("flanneld on {}: {e}", node.name));
                }
            }
        }
    }
    for (p, pod) in cluster.pods.iter().enumerate() {
        let host = w.nodes[pod.node].ns;
        let ns = w.add_netns(pod.name.clone(), pod.node, NsKind::Pod(p), false);
        w.pod_ns[p] = ns;
        let host_name = format!("veth{:08x}", fnv32(pod.name.as_bytes()));
        let host_mac = Mac::local(0xee, p as u32 + 1);
        let (eth0, peer) =
            w.add_veth(ns, "eth0".into(), Mac::from_ip(pod.ip), host, host_name, host_mac, pod.mtu);
        let cni0 = w.dev_by_name(host, "cni0").expect("node bridge built above");
        w.enslave(cni0, peer);
        w.add_addr(eth0, pod.ip, subnet_prefix);
        let gw = cluster.pod_gateway(pod.node);
        w.add_route(Route::new(DEFAULT, Some(gw), eth0, Proto::Boot))
            .expect("the gateway is on the pod subnet");
    }
}

/// `0.0.0.0/0`.
const DEFAULT: crate::addr::Ipv4Net = crate::addr::Ipv4Net::DEFAULT;

/// FNV-1a, for stable interface names (the bridge plugin uses random ones).
fn fnv32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ *b as u32).wrapping_mul(0x0100_0193))
}
