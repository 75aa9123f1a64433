//! Service load balancing: the Services of a cluster and how each proxy mode looks them up.
//!
//! A node's proxy (kube-proxy in one of its modes, or Cilium's eBPF replacement) programs the
//! node's kernel from the same input: the cluster's Services and their ready endpoints. Each
//! mode keeps that input in the structure the real one builds (iptables chains evaluated rule
//! by rule, IPVS virtual servers in a hash table, nftables verdict maps, BPF service maps) and
//! answers one question for a connection's first packet: which endpoint, if any, and at what
//! cost in rules evaluated and hash lookups. NAT itself and the connection it creates belong to
//! conntrack (`net::conntrack`); this module only decides.

#[cfg(test)]
mod fixtures;
pub mod iptables;
pub mod ipvs;
pub mod nftables;
pub mod node;
pub mod userspace;

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::addr::Ipv4Net;
use crate::cluster::{NodeId, PodId};

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
    /// Invariant: non-empty, port numbers and names unique within the Service.
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

/// One port of a Service. The protocol is UDP (cnisim's only transport so far).
#[derive(Clone, Debug, Serialize)]
pub struct ServicePort {
    /// The port's name ("" when the Service has a single unnamed port).
    pub name: String,
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

/// What a proxy needs to know about the node it programs.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    /// The node's primary address (NodePorts listen on it).
    pub ip: Ipv4Addr,
}

/// A connection's first packet as the rules see it (UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// Where the lookup runs: the nat PREROUTING hook (packets arriving at the node, from pods or
/// from the wire) or OUTPUT (packets the node's own processes send).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Output,
}

/// The answer for one new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No Service matched; the packet goes on untranslated.
    NoService,
    /// Translate the destination to `endpoint` of port `port` of `service` (indices into the
    /// [`ServiceTable`]); `masq` when the rules marked the packet for masquerade (KUBE-MARK-MASQ
    /// or its equivalent).
    Dnat { service: usize, port: usize, endpoint: usize, masq: bool },
    /// The Service has no usable endpoint: the packet is rejected (ICMP port unreachable).
    Reject { service: usize, port: usize },
    /// Userspace mode: REDIRECT to the kube-proxy process's socket on local port `to`.
    Redirect { service: usize, port: usize, to: u16 },
}

/// A lookup's verdict and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Lookup {
    pub verdict: Verdict,
    /// Rules evaluated (each match attempt of each rule walked, in every chain).
    pub rules: u32,
    /// Hash-table lookups (ipset, IPVS service table, nftables map, BPF map).
    pub lookups: u32,
    /// The walk in words, one line per rule or lookup, when asked for (trace); else empty.
    pub walk: Vec<String>,
}
