//! flannel (flannel Documentation/backends.md; backend/hostgw, backend/vxlan): one pod subnet
//! per node from the subnet leases, pods on the `cni0` bridge, and per remote node what the
//! backend programs.

use crate::addr::Mac;
use crate::cluster::Cni;
use crate::net::neigh::NeighState;
use crate::net::route::{Proto, Route, RouteTable};
use crate::time::{Duration, Instant};
use crate::userspace::{ProcKind, UserProc, FLANNEL_UDP_PORT};
use crate::world::{DeviceKind, UdpTunnel, World};

use super::{bridge_pods, eth0, install, same_subnet};

/// flannel's VXLAN network identifier and port (backend/vxlan: `VNI` default 1, `Port` 0 =
/// the kernel's default 8472).
const VNI: u32 = 1;
const PORT: u16 = crate::wire::vxlan::LINUX_LEGACY_PORT;

pub(super) fn build(w: &mut World) {
    bridge_pods(w, "cni0");
    match w.cluster.cni {
        Cni::FlannelHostGw => host_gw(w),
        Cni::FlannelVxlan => vxlan(w),
        Cni::FlannelUdp => udp(w),
        other => unreachable!("not a flannel backend: {other}"),
    }
}

/// host-gw: per remote node, `ip route replace <its subnet> via <its node IP> dev eth0`. The
/// kernel refuses a gateway that is not on a connected subnet ("Nexthop has invalid gateway",
/// ENETUNREACH): flanneld logs it and retries, and that node's pods stay unreachable.
fn host_gw(w: &mut World) {
    let c = w.cluster.clone();
    for (n, node) in c.nodes.iter().enumerate() {
        let dev = eth0(w, n);
        for (m, other) in c.nodes.iter().enumerate() {
            if m != n {
                let route = Route::new(other.pod_subnet, Some(other.ip), dev, Proto::Boot);
                install(w, &format!("flanneld on {}", node.name), route);
            }
        }
    }
}

/// udp: `flannel0`, a tun (no packet-info header) with `<subnet>.0/<cluster prefix>` and MTU
/// of `eth0` minus 28, so the kernel's connected route sends the whole pod network into it;
/// flanneld reads each packet, finds the lease holding the destination and sends the packet
/// as the payload of a UDP datagram from port 8285 to that node's port 8285 (backend/udp).
fn udp(w: &mut World) {
    let c = w.cluster.clone();
    let mut leases = RouteTable::default();
    for node in &c.nodes {
        leases.insert(Route::new(node.pod_subnet, Some(node.ip), 0, Proto::Static));
    }
    for (n, node) in c.nodes.iter().enumerate() {
        let ns = w.nodes[n].ns;
        let proc = w.procs.len();
        let tun = w.add_device(
            ns,
            "flannel0".into(),
            Mac([0; 6]),
            node.mtu.saturating_sub(28),
            DeviceKind::Tun { proc },
        );
        w.add_addr(tun, node.pod_subnet.network(), c.network.pod_cidr.prefix());
        w.procs.push(UserProc {
            name: "flanneld".into(),
            node: n,
            ns,
            kind: ProcKind::FlannelUdp { tun, leases: leases.clone() },
            busy_until: Instant::ZERO,
            busy: Duration::ZERO,
            packets: 0,
            queues: Default::default(),
        });
        w.netns[ns].user_ports.insert(FLANNEL_UDP_PORT, proc);
    }
}

/// The VTEP MAC of node `n`'s `flannel.1` (flannel lets the kernel pick a random one and
/// publishes it in the node annotation `flannel.alpha.coreos.com/backend-data`).
fn vtep_mac(n: usize) -> Mac {
    Mac::local(0xf1, n as u32 + 1)
}

/// vxlan: `flannel.1` (VNI 1, port 8472, learning off, outer UDP checksum on: the kernel
/// default, since flannel's netlink call sets no `udpcsum`), address `<subnet>.0/32`, MTU of
/// `eth0` minus 50. Per remote node: the route `<subnet> via <subnet>.0 dev flannel.1 onlink`,
/// a permanent neighbour `<subnet>.0 lladdr <VTEP MAC>` and a permanent FDB entry
/// `<VTEP MAC> dst <node IP>`. With `DirectRouting`, nodes on the same subnet get a host-gw
/// route instead.
fn vxlan(w: &mut World) {
    let c = w.cluster.clone();
    let mut vteps = Vec::new();
    for (n, node) in c.nodes.iter().enumerate() {
        let ns = w.nodes[n].ns;
        let under = eth0(w, n);
        let t = UdpTunnel::vxlan(VNI, PORT, node.ip, under);
        let dev = w.add_udp_tunnel(ns, "flannel.1".into(), vtep_mac(n), node.mtu.saturating_sub(50), t);
        w.add_addr(dev, node.pod_subnet.network(), 32);
        vteps.push(dev);
    }
    for (n, node) in c.nodes.iter().enumerate() {
        let who = format!("flanneld on {}", node.name);
        for (m, other) in c.nodes.iter().enumerate() {
            if m == n {
                continue;
            }
            if c.cni_options.direct_routing && same_subnet(node, other) {
                let route = Route::new(other.pod_subnet, Some(other.ip), eth0(w, n), Proto::Boot);
                install(w, &who, route);
                continue;
            }
            let dev = vteps[n];
            let remote_vtep = other.pod_subnet.network();
            let ns = w.nodes[n].ns;
            w.netns[ns].neigh.update(remote_vtep, vtep_mac(m), dev, NeighState::Permanent);
            w.devices[dev].tunnel_mut().expect("flannel.1 is a tunnel").fdb.insert(vtep_mac(m), other.ip);
            install(w, &who, Route::new(other.pod_subnet, Some(remote_vtep), dev, Proto::Boot).onlink());
        }
    }
}
