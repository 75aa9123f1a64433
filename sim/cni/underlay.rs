//! Pods directly on the underlay (containernetworking/plugins `macvlan` and `ipvlan`): no
//! bridge, no veth, no encapsulation.
//!
//! - macvlan (bridge mode, the plugin's default): each pod's `eth0` is a macvlan of the node's
//!   `eth0` with its own MAC. The whole pod CIDR is on-link, so pods reach pods on any node of
//!   the same L2 segment by ARP; a pod cannot reach its own node (macvlan isolates the lower
//!   device's stack), and nothing crosses a router.
//! - ipvlan L3: each pod's `eth0` is an ipvlan slave sharing the node's MAC; egress is routed in
//!   the node's namespace, so every node needs a route to every other node's pod subnet (the
//!   plugin installs none: the operator or a routing daemon does; cnisim installs them as
//!   flannel host-gw would, with the same L2 limits).

use crate::addr::{Ipv4Net, Mac};
use crate::cluster::Cni;
use crate::net::route::{Proto, Route};
use crate::world::{DeviceKind, World};

use super::{eth0, install, pod_netns};

pub(super) fn build(w: &mut World) {
    let c = w.cluster.clone();
    let macvlan = match c.cni {
        Cni::Macvlan => true,
        Cni::IpvlanL3 => false,
        other => unreachable!("not an underlay plugin: {other}"),
    };
    for (p, pod) in c.pods.iter().enumerate() {
        let lower = eth0(w, pod.node);
        let ns = pod_netns(w, p);
        if macvlan {
            let kind = DeviceKind::Macvlan { lower };
            let dev = w.add_upper(lower, ns, "eth0".into(), Mac::from_ip(pod.ip), pod.mtu, kind);
            w.add_addr(dev, pod.ip, c.network.pod_cidr.prefix());
        } else {
            let kind = DeviceKind::IpvlanL3 { lower };
            let mac = w.devices[lower].mac;
            let dev = w.add_upper(lower, ns, "eth0".into(), mac, pod.mtu, kind);
            w.add_addr(dev, pod.ip, c.network.node_subnet_prefix);
            w.add_route(Route::new(Ipv4Net::DEFAULT, None, dev, Proto::Boot)).expect("device route");
        }
    }
    if !macvlan {
        for (n, node) in c.nodes.iter().enumerate() {
            let dev = eth0(w, n);
            for (m, other) in c.nodes.iter().enumerate() {
                if m != n {
                    let route = Route::new(other.pod_subnet, Some(other.ip), dev, Proto::Static);
                    install(w, &format!("routes for ipvlan on {}", node.name), route);
                }
            }
        }
    }
}
