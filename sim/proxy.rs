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

use crate::cluster::NodeId;

/// What a proxy needs to know about the node it programs.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    /// The node's primary address (NodePorts listen on it).
    pub ip: Ipv4Addr,
    /// The node's iptables has `--random-fully` (1.6.2 and later; `HasRandomFully()`), so
    /// kube-proxy's KUBE-POSTROUTING MASQUERADE gets it (scenario `masquerade_random_fully`).
    pub random_fully: bool,
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
    /// The Service has no usable endpoint here and the packet is dropped without an answer
    /// (a Local-policy NodePort without local endpoints: kube-proxy's `-j DROP`, nftables'
    /// `drop` verdict).
    Drop { service: usize, port: usize },
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
