//! The Services of the resolved model and how the scenario says they are implemented: the
//! proxy mode, the Service table with ports and ready endpoints. Every proxy mode (`proxy`)
//! programs a node from this data; it is part of the model, not of any proxy.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::addr::Ipv4Net;
use crate::cluster::{NodeId, PodId};
use crate::net::conntrack::L4;

/// How Services are implemented on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyMode {
    /// kube-proxy's removed userspace mode: REDIRECT to a proxy process that opens its own
    /// connection to the backend.
    Userspace,
    /// kube-proxy iptables mode (the default on Linux).
    Iptables,
    /// kube-proxy IPVS mode with a scheduler.
    Ipvs(IpvsScheduler),
    /// kube-proxy nftables mode.
    Nftables,
    /// Cilium's kube-proxy replacement: per-packet service lookup in tc programs, and with
    /// `socket_lb` the translation at connect()/sendmsg() instead.
    Ebpf { socket_lb: bool },
}

impl ProxyMode {
    /// Every mode, in the order reports and sweeps list them.
    pub const ALL: [ProxyMode; 9] = [
        ProxyMode::Userspace,
        ProxyMode::Iptables,
        ProxyMode::Ipvs(IpvsScheduler::Rr),
        ProxyMode::Ipvs(IpvsScheduler::Lc),
        ProxyMode::Ipvs(IpvsScheduler::Sh),
        ProxyMode::Ipvs(IpvsScheduler::Sed),
        ProxyMode::Nftables,
        ProxyMode::Ebpf { socket_lb: true },
        ProxyMode::Ebpf { socket_lb: false },
    ];

    /// The identifier used in scenarios, on the command line and in outputs.
    pub fn id(self) -> &'static str {
        match self {
            ProxyMode::Userspace => "userspace",
            ProxyMode::Iptables => "iptables",
            ProxyMode::Ipvs(IpvsScheduler::Rr) => "ipvs",
            ProxyMode::Ipvs(IpvsScheduler::Lc) => "ipvs-lc",
            ProxyMode::Ipvs(IpvsScheduler::Sh) => "ipvs-sh",
            ProxyMode::Ipvs(IpvsScheduler::Sed) => "ipvs-sed",
            ProxyMode::Nftables => "nftables",
            ProxyMode::Ebpf { socket_lb: true } => "ebpf",
            ProxyMode::Ebpf { socket_lb: false } => "ebpf-no-socket-lb",
        }
    }

    /// Whether the mode is kube-proxy's (it programs netfilter or IPVS and syncs from the
    /// Service and EndpointSlice informers) rather than Cilium's agent.
    pub fn is_kube_proxy(self) -> bool {
        !matches!(self, ProxyMode::Ebpf { .. })
    }
}

impl std::str::FromStr for ProxyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<ProxyMode, String> {
        ProxyMode::ALL.into_iter().find(|m| m.id() == s).ok_or_else(|| {
            let all = ProxyMode::ALL.iter().map(|m| m.id()).collect::<Vec<_>>().join(", ");
            format!("unknown proxy mode '{s}', expected one of: {all}")
        })
    }
}

impl Serialize for ProxyMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl std::fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// IPVS schedulers kube-proxy accepts (`--ipvs-scheduler`) that cnisim models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpvsScheduler {
    /// Round robin (kube-proxy's default).
    Rr,
    /// Least connection: overhead = active * 256 + inactive.
    Lc,
    /// Source hashing on the client address.
    Sh,
    /// Shortest expected delay: (active + 1) / weight.
    Sed,
}

impl IpvsScheduler {
    pub fn id(self) -> &'static str {
        match self {
            IpvsScheduler::Rr => "rr",
            IpvsScheduler::Lc => "lc",
            IpvsScheduler::Sh => "sh",
            IpvsScheduler::Sed => "sed",
        }
    }
}

/// The Services the proxies program, with the cluster facts the rules depend on.
#[derive(Clone, Debug, Default)]
pub struct ServiceTable {
    pub services: Vec<Service>,
    /// The pod CIDR: kube-proxy's `--cluster-cidr` local-traffic detector (`! -s cidr` marks
    /// traffic from outside the cluster for masquerade).
    pub cluster_cidr: Option<Ipv4Net>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Service {
    /// Kubernetes namespace ("default" unless the scenario says otherwise).
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    /// The virtual IP, from the service CIDR; `None` for a headless Service.
    pub cluster_ip: Option<Ipv4Addr>,
    /// Invariant: non-empty; names and (port number, protocol) pairs unique within the Service.
    pub ports: Vec<ServicePort>,
    /// Endpoints in EndpointSlice order (sorted by IP, as kube-proxy sorts them).
    pub endpoints: Vec<Endpoint>,
    pub external_traffic_policy: TrafficPolicy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    ClusterIp,
    NodePort,
    /// `clusterIP: None`: no virtual IP and nothing for any proxy to program; clients resolve
    /// the endpoints' addresses directly.
    Headless,
}

/// externalTrafficPolicy of a NodePort Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficPolicy {
    /// Any endpoint in the cluster; the client's address is masqueraded.
    Cluster,
    /// Only endpoints on the receiving node; the client's address is kept.
    Local,
}

/// A Service port's transport protocol, serialised as Kubernetes spells it (`"TCP"`, `"UDP"`).
/// SCTP is not modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// Every protocol, in the order error messages list them.
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

    /// As Kubernetes spells it in a Service (`"TCP"`), and as `ipvsadm -Ln` prints it.
    pub fn id(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// Lowercase, as iptables (`-p tcp`), nftables (`tcp dport`), ipset members (`tcp:80`) and
    /// kube-proxy's chain-name hashes (`strings.ToLower(string(protocol))`) spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The packet-level protocol conntrack tuples carry.
    pub fn l4(self) -> L4 {
        match self {
            Protocol::Tcp => L4::Tcp,
            Protocol::Udp => L4::Udp,
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        Protocol::ALL.into_iter().find(|p| p.id() == s).ok_or_else(|| {
            let all = Protocol::ALL.iter().map(|p| p.id()).collect::<Vec<_>>().join(", ");
            format!("unknown protocol '{s}', expected one of: {all}")
        })
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// One port of a Service.
#[derive(Clone, Debug, Serialize)]
pub struct ServicePort {
    /// The port's name ("" when the Service has a single unnamed port).
    pub name: String,
    /// Invariant: (port, protocol) is unique within the Service (53/UDP and 53/TCP may coexist).
    pub protocol: Protocol,
    pub port: u16,
    /// The port on the endpoint pods.
    pub target_port: u16,
    /// For NodePort Services: the port opened on every node (30000-32767).
    pub node_port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub pod: PodId,
    pub ip: Ipv4Addr,
    pub node: NodeId,
    pub ready: bool,
}

impl Service {
    /// kube-proxy's `ServicePortName` string, `namespace/name:port` (`namespace/name` for an
    /// unnamed port): the input of every chain-name hash.
    pub fn port_name(&self, port: usize) -> String {
        let p = &self.ports[port].name;
        if p.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{p}", self.namespace, self.name)
        }
    }

    /// Ready endpoints, the only ones any proxy programs.
    pub fn ready(&self) -> impl Iterator<Item = (usize, &Endpoint)> {
        self.endpoints.iter().enumerate().filter(|(_, e)| e.ready)
    }
}
