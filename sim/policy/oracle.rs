//! The oracle: whether NetworkPolicy allows a connection, from the API's semantics alone.
//!
//! From `NetworkPolicySpec` (k8s.io/api/networking/v1/types.go):
//! - ingress: "Traffic is allowed to a pod if there are no NetworkPolicies selecting the pod
//!   (and cluster policy otherwise allows the traffic), OR if the traffic source is the pod's
//!   local node, OR if the traffic matches at least one ingress rule across all of the
//!   NetworkPolicy objects whose podSelector matches the pod."
//! - egress: "Outgoing traffic is allowed if there are no NetworkPolicies selecting the pod
//!   (...), OR if the traffic matches at least one egress rule across all of the NetworkPolicy
//!   objects whose podSelector matches the pod."
//!
//! A policy selects a pod for a direction only if its `policyTypes` hold that direction (the
//! concepts page: a pod is isolated for ingress "if there is any NetworkPolicy that both
//! selects the pod and has "Ingress" in its policyTypes"). A connection needs both: "both the
//! egress policy on the source pod and the ingress policy on the destination pod need to allow
//! the connection". Policies are decided on a connection's first packet; replies of an allowed
//! connection are allowed (the concepts page: "the reply traffic for that connection will also
//! be implicitly allowed"), which the caller handles by asking only about the initiator's side.
//!
//! **ipBlock and cluster addresses.** The API leaves open whether an ipBlock matches pod IPs
//! ("cluster ingress and egress mechanisms often require rewriting the source or destination IP
//! of packets ... it is undefined whether this happens before or after NetworkPolicy
//! processing"). The default [`Semantics`] matches an ipBlock against the address the packet
//! carries, pod or node or outside, as Calico and weave-npc do (an ipBlock becomes an ipset of
//! CIDRs matched on the IP header). Cilium does not: its CIDR rules select only addresses
//! outside the cluster (its docs: CIDR rules "do not apply to traffic where both sides of the
//! connection are either managed by Cilium or use an IP belonging to a node in the cluster");
//! [`Semantics::ip_block_matches_cluster`] = false gives that reading.

use super::{Endpoint, NetworkPolicy, Peer, PolicyType, PolicyWorld, Protocol, Rule};

/// The choices the API leaves to the plugin, and where a plugin departs from the API (so its
/// enforcement can be tested against what it means to do, and a report can say what it does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Semantics {
    /// An ipBlock matches pod and node addresses too (true: the packet's address, whatever it
    /// is), or only addresses outside the cluster (false: Cilium's reading).
    pub ip_block_matches_cluster: bool,
    /// `endPort` is honoured (false: a port range allows its first port only, as weave-npc,
    /// written before `endPort` existed, reads it).
    pub end_port: bool,
    /// Egress policy applies to a pod's traffic to its own node's addresses (false: weave-npc
    /// returns from its egress chain for `--dst-type LOCAL`).
    pub egress_to_own_node: bool,
    /// Rules of a direction count only in policies whose `policyTypes` hold it (false:
    /// weave-npc provisions every policy's ingress and egress rules whatever its types, so
    /// they allow traffic of a pod another policy isolates).
    pub rules_follow_policy_types: bool,
}

impl Default for Semantics {
    fn default() -> Self {
        Semantics::API
    }
}

impl Semantics {
    /// The API's definition, as Calico enforces it.
    pub const API: Semantics = Semantics {
        ip_block_matches_cluster: true,
        end_port: true,
        egress_to_own_node: true,
        rules_follow_policy_types: true,
    };
    /// Cilium: CIDR rules select only addresses outside the cluster.
    pub const CILIUM: Semantics = Semantics { ip_block_matches_cluster: false, ..Semantics::API };
    /// weave-npc 2.8 (`cni::weave::policy` cites where each comes from).
    pub const WEAVE_NPC: Semantics = Semantics {
        end_port: false,
        egress_to_own_node: false,
        rules_follow_policy_types: false,
        ..Semantics::API
    };
}

/// What one direction (the source's egress or the destination's ingress) decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// That end is not a pod: no NetworkPolicy can select it.
    NotAPod,
    /// No policy of this direction selects the pod: it is not isolated.
    NotIsolated,
    /// Ingress from the destination pod's own node, which the API always allows.
    FromLocalNode,
    /// Egress to the source pod's own node, which the plugin does not police
    /// ([`Semantics::egress_to_own_node`] false).
    ToOwnNode,
    /// Allowed by rule `rule` (from 0, in `ingress` or `egress`) of policy `policy` (index in
    /// [`PolicyWorld::policies`]): the first allowing rule in policy order.
    Allowed { policy: usize, rule: usize },
    /// Isolated by these policies (indices, in order) and none of their rules allows it.
    Denied { selecting: Vec<usize> },
}

impl Side {
    pub fn allows(&self) -> bool {
        !matches!(self, Side::Denied { .. })
    }
}

/// The oracle's answer for one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The source pod's egress.
    pub egress: Side,
    /// The destination pod's ingress.
    pub ingress: Side,
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }

    /// One line for messages: what allowed the connection, or which policies denied it.
    pub fn explain(&self, world: &PolicyWorld) -> String {
        let name = |i: usize| {
            world.policies.get(i).map_or_else(|| format!("#{i}"), |p| format!("{}/{}", p.namespace, p.name))
        };
        let side = |s: &Side, dir: &str| match s {
            Side::NotAPod => format!("{dir}: not a pod"),
            Side::NotIsolated => format!("{dir}: no policy selects the pod"),
            Side::FromLocalNode => format!("{dir}: from the pod's own node (always allowed)"),
            Side::ToOwnNode => format!("{dir}: to the pod's own node (not policed by the plugin)"),
            Side::Allowed { policy, rule } => format!("{dir}: allowed by {} rule {rule}", name(*policy)),
            Side::Denied { selecting } => format!(
                "{dir}: denied, selected by {} and no rule of theirs allows it",
                selecting.iter().map(|&i| name(i)).collect::<Vec<_>>().join(", ")
            ),
        };
        format!(
            "{} ({}; {})",
            if self.is_allowed() { "allowed" } else { "denied" },
            side(&self.egress, "egress"),
            side(&self.ingress, "ingress")
        )
    }
}

/// Whether NetworkPolicy allows a connection from `src` to `dst` on `protocol`/`port` (the
/// destination port), with the default [`Semantics`].
pub fn allowed(world: &PolicyWorld, src: Endpoint, dst: Endpoint, protocol: Protocol, port: u16) -> Verdict {
    allowed_with(world, Semantics::default(), src, dst, protocol, port)
}

/// [`allowed`] under the given reading of what the API leaves open.
pub fn allowed_with(
    world: &PolicyWorld,
    sem: Semantics,
    src: Endpoint,
    dst: Endpoint,
    protocol: Protocol,
    port: u16,
) -> Verdict {
    Verdict {
        egress: side(world, sem, PolicyType::Egress, src, dst, protocol, port),
        ingress: side(world, sem, PolicyType::Ingress, dst, src, protocol, port),
    }
}

/// One direction: `me` is the pod whose policies apply (the source for egress, the destination
/// for ingress), `peer` the other end.
fn side(
    world: &PolicyWorld,
    sem: Semantics,
    dir: PolicyType,
    me: Endpoint,
    peer: Endpoint,
    protocol: Protocol,
    port: u16,
) -> Side {
    let Endpoint::Pod(pod) = me else {
        return Side::NotAPod;
    };
    let selecting: Vec<usize> = world
        .policies
        .iter()
        .enumerate()
        .filter(|(_, p)| p.has(dir) && p.namespace == pod.namespace && p.pod_selector.matches(pod.labels))
        .map(|(i, _)| i)
        .collect();
    if selecting.is_empty() {
        return Side::NotIsolated;
    }
    if let Endpoint::Node { node, .. } = peer {
        if node == pod.node {
            if dir == PolicyType::Ingress {
                return Side::FromLocalNode;
            }
            if !sem.egress_to_own_node {
                return Side::ToOwnNode;
            }
        }
    }
    // The policies whose rules may allow it: those isolating the pod, or with weave-npc's
    // reading every policy of its namespace selecting it, whatever its types.
    let rule_sources: Vec<usize> = if sem.rules_follow_policy_types {
        selecting.clone()
    } else {
        world
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.namespace == pod.namespace && p.pod_selector.matches(pod.labels))
            .map(|(i, _)| i)
            .collect()
    };
    for &i in &rule_sources {
        let policy = &world.policies[i];
        let rules = if dir == PolicyType::Ingress { &policy.ingress } else { &policy.egress };
        if let Some(rule) =
            rules.iter().position(|r| rule_matches(world, sem, policy, r, peer, protocol, port))
        {
            return Side::Allowed { policy: i, rule };
        }
    }
    Side::Denied { selecting }
}

/// "The traffic must match both ports and from": each list ORs its items, an empty list
/// matches everything.
fn rule_matches(
    world: &PolicyWorld,
    sem: Semantics,
    policy: &NetworkPolicy,
    rule: &Rule,
    peer: Endpoint,
    protocol: Protocol,
    port: u16,
) -> bool {
    let port_matches = |p: &super::PolicyPort| {
        if sem.end_port {
            p.matches(protocol, port)
        } else {
            super::PolicyPort { end_port: None, ..*p }.matches(protocol, port)
        }
    };
    (rule.ports.is_empty() || rule.ports.iter().any(port_matches))
        && (rule.peers.is_empty() || rule.peers.iter().any(|p| peer_matches(world, sem, policy, p, peer)))
}

fn peer_matches(
    world: &PolicyWorld,
    sem: Semantics,
    policy: &NetworkPolicy,
    peer: &Peer,
    e: Endpoint,
) -> bool {
    match peer {
        Peer::IpBlock(block) => {
            block.contains(e.ip()) && (sem.ip_block_matches_cluster || matches!(e, Endpoint::External(_)))
        }
        Peer::Pods { pods, namespaces } => {
            // Selectors select pods only: a node's address or an outside one never matches.
            let Endpoint::Pod(p) = e else {
                return false;
            };
            let namespace_ok = match namespaces {
                // "Otherwise it selects the pods matching podSelector in the policy's own
                // namespace."
                None => p.namespace == policy.namespace,
                Some(sel) => world.namespace(p.namespace).is_some_and(|n| sel.matches(&n.labels)),
            };
            namespace_ok && pods.as_ref().is_none_or(|sel| sel.matches(p.labels))
        }
    }
}
