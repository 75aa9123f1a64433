//! Small Service tables for the proxy modules' tests.

use std::net::Ipv4Addr;

use super::NodeView;
use crate::cluster::{Endpoint, Protocol, Service, ServiceKind, ServicePort, ServiceTable, TrafficPolicy};
use crate::net::conntrack::{Tuple, L4};

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn ep(pod: usize, addr: &str, node: usize) -> Endpoint {
    Endpoint { pod, ip: ip(addr), node, ready: true }
}

pub fn svc(
    name: &str,
    cip: &str,
    port: u16,
    np: Option<u16>,
    eps: Vec<Endpoint>,
    policy: TrafficPolicy,
) -> Service {
    Service {
        namespace: "default".into(),
        name: name.into(),
        kind: if np.is_some() { ServiceKind::NodePort } else { ServiceKind::ClusterIp },
        cluster_ip: Some(ip(cip)),
        ports: vec![ServicePort {
            name: String::new(),
            protocol: Protocol::Udp,
            port,
            target_port: port,
            node_port: np,
        }],
        endpoints: eps,
        external_traffic_policy: policy,
    }
}

pub fn node() -> NodeView {
    NodeView { id: 0, name: "node-0".into(), ip: ip("172.18.0.2"), random_fully: true }
}

pub fn table(services: Vec<Service>) -> ServiceTable {
    ServiceTable { services, cluster_cidr: Some("10.244.0.0/16".parse().unwrap()) }
}

/// A UDP tuple from port 40000.
pub fn t(src: &str, dst: &str, dport: u16) -> Tuple {
    Tuple { src: ip(src), sport: 40000, dst: ip(dst), dport, proto: L4::Udp }
}

/// The same as [`t`], TCP.
pub fn tcp(src: &str, dst: &str, dport: u16) -> Tuple {
    Tuple { proto: L4::Tcp, ..t(src, dst, dport) }
}

/// `s` with its one port's protocol set to `protocol`.
pub fn with_protocol(mut s: Service, protocol: Protocol) -> Service {
    s.ports[0].protocol = protocol;
    s
}

/// `n` ClusterIP Services `s0`, `s1` ... at 10.96.0.1, .2 ..., port 80, one endpoint each.
pub fn many(n: usize) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let cip = Ipv4Addr::from(u32::from(ip("10.96.0.0")) + i as u32 + 1).to_string();
            svc(&format!("s{i}"), &cip, 80, None, vec![ep(0, "10.244.1.7", 1)], TrafficPolicy::Cluster)
        })
        .collect()
}
