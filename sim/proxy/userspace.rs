//! kube-proxy's userspace mode (removed in v1.26): iptables "portal" rules redirect each
//! Service port to a socket of the kube-proxy process, which opens its own connection to a
//! backend and copies datagrams both ways.
//!
//! Layout from pkg/proxy/userspace/proxier.go (v1.25): the nat chains `KUBE-PORTALS-CONTAINER`
//! (jumped to from PREROUTING) and `KUBE-PORTALS-HOST` (from OUTPUT) hold one rule per Service
//! port, `-d VIP/32 -p udp -m comment --comment "ns/svc:port" -m udp --dport PORT -j REDIRECT
//! --to-ports PROXYPORT` (`-p tcp -m tcp` for a TCP port) (container) or `-j DNAT --to-destination NODEIP:PROXYPORT` (host);
//! NodePorts get `KUBE-NODEPORT-CONTAINER` / `KUBE-NODEPORT-HOST` rules on `--dport NODEPORT`.
//! The proxy port is whatever the kernel gave the proxy's listening socket (`:0`).

use std::fmt::Write;

use super::{Hook, Lookup, NodeView, Verdict};
use crate::cluster::{Protocol, ServiceTable};
use crate::net::conntrack::Tuple;

/// kube-proxy userspace's `UDPIdleTimeout` default: a client's backend connection is closed
/// after this long without traffic (pkg/proxy/apis/config/v1alpha1/defaults.go).
pub const UDP_IDLE_TIMEOUT: crate::time::Duration = crate::time::Duration::from_millis(250);

#[derive(Clone, Debug)]
struct Portal {
    service: usize,
    port: usize,
    /// (address, port) the rule matches: the cluster IP, or `None` for a NodePort rule (any
    /// local address).
    vip: Option<std::net::Ipv4Addr>,
    dport: u16,
    protocol: Protocol,
    proxy_port: u16,
    comment: String,
}

/// The portal rules of one node.
pub struct Portals {
    node: NodeView,
    /// Cluster-IP portals in Service order, then NodePort portals.
    portals: Vec<Portal>,
}

impl Portals {
    /// `proxy_ports[i]` is the proxy's listening port for the i-th (service, port) pair in
    /// table order.
    pub fn build(table: &ServiceTable, node: &NodeView, proxy_ports: &[u16]) -> Portals {
        let mut portals = Vec::new();
        let mut nodeports = Vec::new();
        let mut k = 0;
        for (si, s) in table.services.iter().enumerate() {
            let Some(vip) = s.cluster_ip else { continue };
            for (pi, p) in s.ports.iter().enumerate() {
                // No socket could be opened for it (ephemeral ports exhausted): no portal.
                let Some(&proxy_port) = proxy_ports.get(k) else { continue };
                k += 1;
                let comment = s.port_name(pi);
                portals.push(Portal {
                    service: si,
                    port: pi,
                    vip: Some(vip),
                    dport: p.port,
                    protocol: p.protocol,
                    proxy_port,
                    comment: comment.clone(),
                });
                if let Some(np) = p.node_port {
                    nodeports.push(Portal {
                        service: si,
                        port: pi,
                        vip: None,
                        dport: np,
                        protocol: p.protocol,
                        proxy_port,
                        comment,
                    });
                }
            }
        }
        portals.extend(nodeports);
        Portals { node: node.clone(), portals }
    }

    /// The (service, port) pairs that get a proxy port, in the order `build` expects them.
    pub fn ports_needed(table: &ServiceTable) -> usize {
        table.services.iter().filter(|s| s.cluster_ip.is_some()).map(|s| s.ports.len()).sum()
    }

    /// A new connection: the PREROUTING (container) or OUTPUT (host) chain, rule by rule.
    pub fn walk(&self, hook: Hook, t: &Tuple, dst_is_local: bool, trace: bool) -> Lookup {
        let chain = match hook {
            Hook::Prerouting => "KUBE-PORTALS-CONTAINER",
            Hook::Output => "KUBE-PORTALS-HOST",
        };
        let mut walk = Vec::new();
        let mut rules = 1; // the jump from PREROUTING/OUTPUT
        for p in &self.portals {
            rules += 1;
            let hit = p.protocol.l4() == t.proto
                && match p.vip {
                    Some(vip) => t.dst == vip && t.dport == p.dport,
                    None => dst_is_local && t.dport == p.dport,
                };
            if trace {
                walk.push(format!(
                    "nat {} [{}]",
                    self.rule_text(chain, p),
                    if hit { "match" } else { "no match" }
                ));
            }
            if hit {
                let verdict = Verdict::Redirect { service: p.service, port: p.port, to: p.proxy_port };
                return Lookup { verdict, rules, lookups: 0, walk };
            }
        }
        Lookup { verdict: Verdict::NoService, rules, lookups: 0, walk }
    }

    fn rule_text(&self, chain: &str, p: &Portal) -> String {
        let chain = match (chain, p.vip) {
            ("KUBE-PORTALS-CONTAINER", None) => "KUBE-NODEPORT-CONTAINER",
            ("KUBE-PORTALS-HOST", None) => "KUBE-NODEPORT-HOST",
            (c, _) => c,
        };
        let dst = p.vip.map_or(String::new(), |v| format!("-d {v}/32 "));
        let target = if chain.ends_with("HOST") {
            format!("-j DNAT --to-destination {}:{}", self.node.ip, p.proxy_port)
        } else {
            format!("-j REDIRECT --to-ports {}", p.proxy_port)
        };
        let proto = p.protocol.lower();
        format!(
            "-A {chain} {dst}-p {proto} -m comment --comment \"{}\" -m {proto} --dport {} {target}",
            p.comment, p.dport
        )
    }

    /// Rules installed: two per portal (container and host) plus the four jumps.
    pub fn rule_count(&self) -> usize {
        4 + 2 * self.portals.len()
    }

    /// `iptables-save -t nat` for the portal chains.
    pub fn save(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", super::iptables::SAVE_HEADER);
        s.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
        for c in
            ["KUBE-NODEPORT-CONTAINER", "KUBE-NODEPORT-HOST", "KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST"]
        {
            let _ = writeln!(s, ":{c} - [0:0]");
        }
        s.push_str("-A PREROUTING -m comment --comment \"handle ClusterIPs; NOTE: this must be before the NodePort rules\" -j KUBE-PORTALS-CONTAINER\n");
        s.push_str("-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment \"handle service NodePorts; NOTE: this must be the last rule in the chain\" -j KUBE-NODEPORT-CONTAINER\n");
        s.push_str("-A OUTPUT -m comment --comment \"handle ClusterIPs; NOTE: this must be before the NodePort rules\" -j KUBE-PORTALS-HOST\n");
        s.push_str("-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment \"handle service NodePorts; NOTE: this must be the last rule in the chain\" -j KUBE-NODEPORT-HOST\n");
        for chain in ["KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST"] {
            for p in &self.portals {
                let _ = writeln!(s, "{}", self.rule_text(chain, p));
            }
        }
        s.push_str("COMMIT\n");
        let _ = writeln!(s, "{}", super::iptables::SAVE_FOOTER);
        s
    }

    /// ipt_entry (112 B) + udp, comment and REDIRECT/DNAT structs, about 400 B a rule
    /// (struct sizes as in `iptables::NatTable::memory_bytes`).
    pub fn memory_bytes(&self) -> usize {
        self.rule_count() * 400
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Endpoint, Service, ServiceKind, ServicePort, TrafficPolicy};
    use crate::net::conntrack::L4;

    fn table() -> ServiceTable {
        let svc = |name: &str, ip: [u8; 4], np: Option<u16>| Service {
            namespace: "default".into(),
            name: name.into(),
            kind: if np.is_some() { ServiceKind::NodePort } else { ServiceKind::ClusterIp },
            cluster_ip: Some(ip.into()),
            ports: vec![ServicePort {
                name: String::new(),
                protocol: Protocol::Udp,
                port: 80,
                target_port: 8080,
                node_port: np,
            }],
            endpoints: vec![Endpoint { pod: 0, ip: [10, 244, 1, 2].into(), node: 1, ready: true }],
            external_traffic_policy: TrafficPolicy::Cluster,
        };
        ServiceTable {
            services: vec![svc("a", [10, 96, 0, 2], None), svc("b", [10, 96, 0, 3], Some(30080))],
            cluster_cidr: None,
        }
    }

    fn node() -> NodeView {
        NodeView { id: 0, name: "node-1".into(), ip: [192, 168, 0, 1].into(), random_fully: true }
    }

    #[test]
    fn portals_redirect_in_order() {
        let p = Portals::build(&table(), &node(), &[40001, 40002]);
        let t = |dst: [u8; 4], dport| Tuple {
            src: [10, 244, 0, 2].into(),
            sport: 5555,
            dst: dst.into(),
            dport,
            proto: L4::Udp,
        };
        let l = p.walk(Hook::Prerouting, &t([10, 96, 0, 3], 80), false, true);
        assert_eq!(l.verdict, Verdict::Redirect { service: 1, port: 0, to: 40002 });
        assert_eq!(l.rules, 3);
        assert_eq!(
            l.walk[1],
            "nat -A KUBE-PORTALS-CONTAINER -d 10.96.0.3/32 -p udp -m comment --comment \"default/b\" -m udp \
             --dport 80 -j REDIRECT --to-ports 40002 [match]"
        );
        let np = p.walk(Hook::Prerouting, &t([192, 168, 0, 1], 30080), true, false);
        assert_eq!(np.verdict, Verdict::Redirect { service: 1, port: 0, to: 40002 });
        assert_eq!(np.rules, 4);
        let miss = p.walk(Hook::Prerouting, &t([10, 244, 1, 2], 8080), false, false);
        assert_eq!((miss.verdict, miss.rules), (Verdict::NoService, 4));
        let tcp = Tuple { proto: L4::Tcp, ..t([10, 96, 0, 3], 80) };
        assert_eq!(
            p.walk(Hook::Prerouting, &tcp, false, false).verdict,
            Verdict::NoService,
            "UDP portals only"
        );
        assert_eq!(p.rule_count(), 10);
        assert!(p.save().contains(
            "-A KUBE-PORTALS-HOST -d 10.96.0.2/32 -p udp -m comment --comment \"default/a\" -m udp --dport 80 \
             -j DNAT --to-destination 192.168.0.1:40001\n"
        ));
    }
}
