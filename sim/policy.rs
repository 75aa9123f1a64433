//! Kubernetes NetworkPolicy (`networking.k8s.io/v1`) as data, and an oracle that says whether
//! a connection is allowed by the policies alone.
//!
//! The model follows the API's own definition, `k8s.io/api/networking/v1/types.go`
//! (`NetworkPolicySpec`, `NetworkPolicyIngressRule`, `NetworkPolicyEgressRule`,
//! `NetworkPolicyPeer`, `IPBlock`, `NetworkPolicyPort`), the label selectors of
//! `k8s.io/apimachinery/pkg/apis/meta/v1` (`LabelSelector`, `LabelSelectorRequirement`) and the
//! concepts page <https://kubernetes.io/docs/concepts/services-networking/network-policies/>.
//! The values here are already validated (`scenario` refuses what the API server refuses);
//! nothing in this module fails.
//!
//! [`allowed`] is written from those semantics only, independently of any CNI's enforcement
//! (none reads it): enforcement code (Calico's chains, Cilium's identities and policy maps,
//! weave-npc) is tested against it on generated worlds ([`gen`]).
//!
//! Not handled: IPv6, named ports (the loader refuses them), AdminNetworkPolicy, and
//! hostNetwork pods (cnisim has none: a node's own address is an [`Endpoint::Node`]).

pub mod gen;
mod oracle;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use crate::addr::Ipv4Net;

pub use oracle::{allowed, allowed_with, Semantics, Side, Verdict};

/// Labels of a pod or a namespace.
pub type Labels = BTreeMap<String, String>;

/// The label Kubernetes puts on every namespace, with the namespace's name as its value (set by
/// the API server since 1.21, so `namespaceSelector` can select a namespace by name).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace and its labels (the ones `namespaceSelector` matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Invariant: holds [`NAMESPACE_NAME_LABEL`] = `name`.
    pub labels: Labels,
}

impl Namespace {
    /// A namespace with `labels` plus the name label the API server adds.
    pub fn new(name: &str, mut labels: Labels) -> Namespace {
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        Namespace { name: name.to_string(), labels }
    }
}

/// `metav1.LabelSelector`: "The requirements are ANDed" (matchLabels and matchExpressions
/// together). An empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// `matchLabels`: each entry is the requirement `key In (value)`.
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

/// `metav1.LabelSelectorRequirement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Invariant: non-empty for `In` and `NotIn`, empty for `Exists` and `DoesNotExist` (the
    /// API's validation).
    pub values: Vec<String>,
}

/// `metav1.LabelSelectorOperator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Operator {
    pub const ALL: [Operator; 4] = [Operator::In, Operator::NotIn, Operator::Exists, Operator::DoesNotExist];

    /// As the API spells it.
    pub fn id(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        }
    }
}

impl LabelSelector {
    /// The selector that selects everything (`{}`).
    pub fn all() -> LabelSelector {
        LabelSelector::default()
    }

    /// `matchLabels` only.
    pub fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether `labels` satisfy every requirement. `NotIn` matches a missing key, as
    /// `k8s.io/apimachinery/pkg/labels` does ("the key does not exist, or its value is not in
    /// the set").
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    Operator::In => value.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => !value.is_some_and(|v| r.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// `PolicyType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyType {
    Ingress,
    Egress,
}

/// Transport protocol of `NetworkPolicyPort.protocol` (`core/v1.Protocol`: TCP, UDP, SCTP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The IP protocol number (6, 17, 132).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// As the API spells it.
    pub fn id(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// `NetworkPolicyPort`: "If present, only traffic on the specified protocol AND port will be
/// matched"; with `endPort`, the range `port..=endPort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyPort {
    /// Defaults to TCP when the field is left out.
    pub protocol: Protocol,
    /// `None`: every port of the protocol.
    pub port: Option<u16>,
    /// Invariant: only with `port`, and at least `port`.
    pub end_port: Option<u16>,
}

impl PolicyPort {
    pub fn matches(&self, protocol: Protocol, port: u16) -> bool {
        protocol == self.protocol
            && match (self.port, self.end_port) {
                (None, _) => true,
                (Some(p), None) => port == p,
                (Some(p), Some(e)) => (p..=e).contains(&port),
            }
    }
}

/// `IPBlock`: addresses in `cidr` and in none of `except`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpBlock {
    pub cidr: Ipv4Net,
    /// Invariant: each a strict subset of `cidr` (the API rejects others).
    pub except: Vec<Ipv4Net>,
}

impl IpBlock {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

/// `NetworkPolicyPeer`: either pods (by pod and/or namespace labels) or an IP block; the API
/// allows no other combination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `podSelector` alone: pods of the policy's namespace; `namespaceSelector` alone: every
    /// pod of the selected namespaces; both in one peer: the pods matching `pods` in the
    /// namespaces matching `namespaces` (AND). Invariant: at least one is `Some`.
    Pods {
        pods: Option<LabelSelector>,
        namespaces: Option<LabelSelector>,
    },
    IpBlock(IpBlock),
}

/// One ingress or egress rule: "The traffic must match both ports and from" (or `to`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// `from` (ingress) or `to` (egress); empty: every peer.
    pub peers: Vec<Peer>,
    /// Empty: every port.
    pub ports: Vec<PolicyPort>,
}

/// A `NetworkPolicy` in a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub name: String,
    pub namespace: String,
    /// Selects the pods of `namespace` the policy applies to; empty: all of them.
    pub pod_selector: LabelSelector,
    /// Invariant: non-empty, sorted, no duplicates; already defaulted (see [`default_types`]).
    pub policy_types: Vec<PolicyType>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

impl NetworkPolicy {
    pub fn has(&self, t: PolicyType) -> bool {
        self.policy_types.contains(&t)
    }
}

/// `policyTypes` as the API server defaults it when left out
/// (`SetDefaults_NetworkPolicySpec`): Ingress always, and Egress if the policy has egress
/// rules. Given types are returned sorted and deduplicated.
pub fn default_types(given: Option<&[PolicyType]>, egress_rules: usize) -> Vec<PolicyType> {
    let mut out = match given {
        Some(g) if !g.is_empty() => g.to_vec(),
        _ if egress_rules > 0 => vec![PolicyType::Ingress, PolicyType::Egress],
        _ => vec![PolicyType::Ingress],
    };
    out.sort();
    out.dedup();
    out
}

/// The namespaces and policies of a cluster: what the oracle reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyWorld {
    pub namespaces: Vec<Namespace>,
    pub policies: Vec<NetworkPolicy>,
}

impl PolicyWorld {
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.name == name)
    }
}

/// A pod as policies see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodRef<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub labels: &'a Labels,
    pub ip: Ipv4Addr,
    /// The node it runs on (index into the cluster's nodes).
    pub node: usize,
}

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Pod(PodRef<'a>),
    /// A node's own address (its kubelet, a hostNetwork process, or traffic masqueraded to it).
    Node {
        node: usize,
        ip: Ipv4Addr,
    },
    /// An address outside the cluster.
    External(Ipv4Addr),
}

impl Endpoint<'_> {
    pub fn ip(&self) -> Ipv4Addr {
        match *self {
            Endpoint::Pod(p) => p.ip,
            Endpoint::Node { ip, .. } | Endpoint::External(ip) => ip,
        }
    }
}

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pod(p) => write!(f, "pod {}/{} ({})", p.namespace, p.name, p.ip),
            Endpoint::Node { ip, .. } => write!(f, "node {ip}"),
            Endpoint::External(ip) => write!(f, "{ip}"),
        }
    }
}

#[cfg(test)]
mod tests;
