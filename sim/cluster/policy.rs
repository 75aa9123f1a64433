//! The NetworkPolicy verdict of every connection a cluster's workloads open, from the oracle
//! (`policy::allowed`): with a CNI that enforces nothing (flannel, macvlan, ipvlan) these are
//! the flows a policy meant to block that go through anyway.
//!
//! A connection is judged as the destination pod sees it, after the Service proxy: a flow to
//! a Service is one connection per endpoint pod at its target port (kube-proxy's DNAT happens
//! before any plugin's policy hook on the destination). A NodePort flow under
//! `externalTrafficPolicy: Cluster` is masqueraded by kube-proxy (`KUBE-EXT-*` jumps to
//! `KUBE-MARK-MASQ`), so an endpoint on another node sees the node the client addressed as its
//! source; an endpoint on that node is policed at its FORWARD hook, before POSTROUTING's
//! MASQUERADE, with the client's address. Under `Local` the client's address is kept.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::{Client, Cluster, NodeId, PodId, Protocol, Target, TrafficPolicy};
use crate::policy::{self, Endpoint, PodRef, Verdict};

/// One end of a connection, by index into the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyPeer {
    Pod(PodId),
    /// A node's own address (the source of a masqueraded NodePort connection).
    Node(NodeId),
    /// A host outside the cluster (`Cluster::externals`).
    External(usize),
}

/// One connection of a workload and the oracle's verdict on it, with the policies read as the
/// cluster's plugin reads them ([`Cni::policy_semantics`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFlow {
    /// Index into `Cluster::workloads`.
    pub workload: usize,
    pub src: PolicyPeer,
    pub dst: PolicyPeer,
    pub protocol: policy::Protocol,
    /// Destination port as the destination sees it (a Service's target port).
    pub port: u16,
    pub verdict: Verdict,
}

impl Cluster {
    /// Pod `p` as NetworkPolicy sees it.
    pub fn pod_ref(&self, p: PodId) -> PodRef<'_> {
        let pod = &self.pods[p];
        PodRef { name: &pod.name, namespace: &pod.namespace, labels: &pod.labels, ip: pod.ip, node: pod.node }
    }

    /// The address and identity NetworkPolicy sees for `peer`.
    pub fn policy_endpoint(&self, peer: PolicyPeer) -> Endpoint<'_> {
        match peer {
            PolicyPeer::Pod(p) => Endpoint::Pod(self.pod_ref(p)),
            PolicyPeer::Node(n) => Endpoint::Node { node: n, ip: self.nodes[n].ip },
            PolicyPeer::External(e) => {
                Endpoint::External(self.externals.get(e).map_or(Ipv4Addr::UNSPECIFIED, |h| h.ip))
            }
        }
    }

    /// Every distinct connection (source, destination, protocol, port) of each workload, in
    /// workload order, with the oracle's verdict.
    pub fn policy_flows(&self) -> Vec<PolicyFlow> {
        let mut out = Vec::new();
        for (wi, w) in self.workloads.iter().enumerate() {
            let pod_protocol = if w.kind.is_tcp() { policy::Protocol::Tcp } else { policy::Protocol::Udp };
            let mut seen: BTreeSet<(PolicyPeer, PolicyPeer, policy::Protocol, u16)> = BTreeSet::new();
            for &(client, target) in &w.flows {
                let src = match client {
                    Client::Pod(p) => PolicyPeer::Pod(p),
                    Client::External(e) => PolicyPeer::External(e),
                };
                // (service, port) pairs the target reaches, and the node whose masquerade the
                // endpoints on other nodes see as the source.
                let (services, masq): (Vec<(usize, usize)>, Option<NodeId>) = match target {
                    Target::Pod(s) => {
                        seen.insert((src, PolicyPeer::Pod(s), pod_protocol, w.port));
                        continue;
                    }
                    Target::External(e) => {
                        seen.insert((src, PolicyPeer::External(e), pod_protocol, w.port));
                        continue;
                    }
                    Target::Service { service, port } => (vec![(service, port)], None),
                    Target::NodePort { service, port, node } => {
                        let masqueraded = self
                            .services
                            .services
                            .get(service)
                            .is_some_and(|s| matches!(s.external_traffic_policy, TrafficPolicy::Cluster));
                        (vec![(service, port)], masqueraded.then_some(node))
                    }
                    Target::AnyService { first, count } => {
                        ((first..first + count).map(|s| (s, 0)).collect(), None)
                    }
                };
                for (s, port) in services {
                    let Some(svc) = self.services.services.get(s) else { continue };
                    let Some(sp) = svc.ports.get(port) else { continue };
                    let protocol = match sp.protocol {
                        Protocol::Tcp => policy::Protocol::Tcp,
                        Protocol::Udp => policy::Protocol::Udp,
                    };
                    for e in &svc.endpoints {
                        // MASQUERADE is POSTROUTING's: an endpoint on the node the client
                        // addressed is policed at that node's FORWARD with the client's address.
                        let src = match masq {
                            Some(n) if self.pods[e.pod].node != n => PolicyPeer::Node(n),
                            _ => src,
                        };
                        seen.insert((src, PolicyPeer::Pod(e.pod), protocol, sp.target_port));
                    }
                }
            }
            for (src, dst, protocol, port) in seen {
                // A pod's connection to itself (through a Service it backs) is left out: it
                // is not between two endpoints.
                if src == dst {
                    continue;
                }
                let verdict = policy::allowed_with(
                    &self.policy,
                    self.cni.policy_semantics(),
                    self.policy_endpoint(src),
                    self.policy_endpoint(dst),
                    protocol,
                    port,
                );
                out.push(PolicyFlow { workload: wi, src, dst, protocol, port, verdict });
            }
        }
        out
    }

    /// The connections NetworkPolicy denies: on a CNI without a policy engine, the flows a
    /// policy meant to block that go through. Empty when the cluster has no policies.
    pub fn policy_denied_flows(&self) -> Vec<PolicyFlow> {
        if self.policy.policies.is_empty() {
            return Vec::new();
        }
        self.policy_flows().into_iter().filter(|f| !f.verdict.is_allowed()).collect()
    }
}

impl PolicyFlow {
    /// `workload "w": pod prod/web (10.244.1.2) -> pod prod/db (10.244.2.2) TCP 5432: denied (...)`.
    pub fn describe(&self, c: &Cluster) -> String {
        let name = c.workloads.get(self.workload).map_or("?", |w| w.name.as_str());
        format!(
            "workload \"{name}\": {} -> {} {} {}: {}",
            c.policy_endpoint(self.src),
            c.policy_endpoint(self.dst),
            self.protocol,
            self.port,
            self.verdict.explain(&c.policy)
        )
    }
}
