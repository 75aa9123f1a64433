//! What Cilium's agent makes of the cluster's NetworkPolicies: a security identity per set of
//! identity-relevant labels, CIDR identities for the prefixes ipBlocks name, the ipcache, and
//! every identity's policy map ([`PolicyMaps`], the datapath's side in `world::cilium_policy`).
//!
//! Sources (cilium/cilium):
//! - identity labels: pkg/k8s/utils/utils.go `SanitizePodLabels` (the pod's labels without
//!   Cilium's own `io.cilium.k8s` prefix, `io.kubernetes.pod.namespace`, the namespace's labels
//!   under `io.cilium.k8s.namespace.labels.`, the service account, the cluster name), filtered by
//!   pkg/labelsfilter/filter.go `defaultLabelPrefixCfg`;
//! - NetworkPolicy to rules: pkg/k8s/network_policy.go `ParseNetworkPolicy`,
//!   `parseNetworkPolicyPeer`, `parsePodSelector`, `parsePorts`;
//! - rules to map entries: pkg/policy (`DistillPolicy`, `allowAllIdentities`,
//!   `determineAllowLocalhostIngress` in mapstate.go, `PortRangeToMaskedPorts`).
//!
//! Identities are allocated in sorted order of their label sets from 256 (the real allocator
//! hands out free numbers in arrival order; the numbers are not part of any behaviour), CIDR
//! identities likewise from `1 << 24`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::addr::Ipv4Net;
use crate::policy::{
    IpBlock, LabelSelector, Labels, NetworkPolicy, Operator, Peer, PolicyPort, PolicyType, PolicyWorld,
};
use crate::world::cilium_policy::{
    EndpointPolicy, Identity, PolicyEntry, PolicyKey, PolicyMaps, TrafficDirection, ANY, FIRST_CLUSTER,
    FIRST_LOCAL, FULL_BITS, PROTO_BITS, RESERVED, WORLD,
};

/// `k8sConst.PodNamespaceLabel`.
const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// `k8sConst.PodNamespaceMetaLabels`: the prefix of a namespace's labels on its pods.
const NAMESPACE_LABELS: &str = "io.cilium.k8s.namespace.labels";
/// `k8sConst.PolicyLabelServiceAccount`.
const SERVICE_ACCOUNT: &str = "io.cilium.k8s.policy.serviceaccount";
/// `k8sConst.PolicyLabelCluster`.
const CLUSTER: &str = "io.cilium.k8s.policy.cluster";
/// `k8sConst.LabelPrefix`: labels a pod may not set itself (`filterPodLabels`).
const CILIUM_PREFIX: &str = "io.cilium.k8s";
/// `--cluster-name`'s default (pkg/defaults `ClusterName`, "default").
const CLUSTER_NAME: &str = "default";
/// cnisim's pods name no service account; the API server's admission gives them `default`.
const SERVICE_ACCOUNT_NAME: &str = "default";

/// A pod as the agent sees it: its namespace, labels and address.
#[derive(Clone, Copy, Debug)]
pub struct PodInfo<'a> {
    pub namespace: &'a str,
    pub labels: &'a Labels,
    pub ip: Ipv4Addr,
}

/// The compiled maps and each pod's identity (by the index it had in the input).
#[derive(Clone, Debug)]
pub struct Compiled {
    pub maps: PolicyMaps,
    pub pod_identity: Vec<Identity>,
}

/// Compiles `world`'s policies for `pods`; `nodes[n]` holds node `n`'s addresses (node IP and
/// router address), which the ipcache maps to host or remote-node.
#[cfg(test)]
pub fn compile(world: &PolicyWorld, pods: &[PodInfo], nodes: &[Vec<Ipv4Addr>]) -> Compiled {
    compile_after(world, pods, nodes, None)
}

/// [`compile`], keeping the identities `previous` allocated: a label set or prefix that had an
/// identity keeps it, a new one gets the next number after every identity allocated so far (the
/// allocator hands out one ID per label set for as long as it is in use; numbers are not reused
/// within a run).
pub fn compile_after(
    world: &PolicyWorld,
    pods: &[PodInfo],
    nodes: &[Vec<Ipv4Addr>],
    previous: Option<&PolicyMaps>,
) -> Compiled {
    let mut maps = PolicyMaps::default();
    for (id, labels) in RESERVED {
        maps.identities.insert(id, labels.iter().map(|l| l.to_string()).collect());
    }
    // Cluster identities: one per distinct label set, numbered in sorted order.
    let pod_labels: Vec<Labels> = pods.iter().map(|p| identity_labels(world, p)).collect();
    let distinct: BTreeSet<&Labels> = pod_labels.iter().collect();
    let known: BTreeMap<&Vec<String>, Identity> =
        previous.map(|m| m.identities.iter().map(|(id, l)| (l, *id)).collect()).unwrap_or_default();
    let mut next_cluster = previous
        .and_then(|m| m.identities.keys().filter(|&&i| (FIRST_CLUSTER..FIRST_LOCAL).contains(&i)).max())
        .map_or(FIRST_CLUSTER, |&i| i + 1)
        .max(previous.map_or(FIRST_CLUSTER, |m| m.next_cluster));
    let mut next_local = previous
        .and_then(|m| m.identities.keys().filter(|&&i| i >= FIRST_LOCAL).max())
        .map_or(FIRST_LOCAL, |&i| i + 1)
        .max(previous.map_or(FIRST_LOCAL, |m| m.next_local));
    let allocate = |rendered: &Vec<String>, next: &mut Identity| {
        known.get(rendered).copied().unwrap_or_else(|| {
            *next += 1;
            *next - 1
        })
    };
    let cluster: BTreeMap<&Labels, Identity> = distinct
        .into_iter()
        .map(|l| {
            let rendered: Vec<String> = l.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect();
            (l, allocate(&rendered, &mut next_cluster))
        })
        .collect();
    for (labels, &id) in &cluster {
        maps.identities.insert(id, labels.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect());
    }
    let pod_identity: Vec<Identity> = pod_labels.iter().map(|l| cluster[l]).collect();
    for (p, &id) in pods.iter().zip(&pod_identity) {
        maps.ipcache.pods.insert(p.ip, id);
    }
    for (n, addrs) in nodes.iter().enumerate() {
        for &a in addrs {
            maps.ipcache.nodes.insert(a, n);
        }
    }
    // CIDR identities: every prefix an ipBlock names (cidr or except), 0.0.0.0/0 being world.
    let prefixes: BTreeSet<Ipv4Net> = world
        .policies
        .iter()
        .flat_map(|p| p.ingress.iter().chain(&p.egress))
        .flat_map(|r| &r.peers)
        .filter_map(|peer| match peer {
            Peer::IpBlock(b) => Some(std::iter::once(b.cidr).chain(b.except.iter().copied())),
            Peer::Pods { .. } => None,
        })
        .flatten()
        .filter(|n| n.prefix() > 0)
        .collect();
    let cidrs: Vec<(Ipv4Net, Identity)> = prefixes
        .into_iter()
        .map(|n| (n, allocate(&vec![format!("cidr:{n}"), "reserved:world".into()], &mut next_local)))
        .collect();
    maps.next_cluster = next_cluster;
    maps.next_local = next_local;
    for &(net, id) in &cidrs {
        maps.identities.insert(id, vec![format!("cidr:{net}"), "reserved:world".into()]);
    }
    maps.ipcache.cidrs = cidrs.clone();
    maps.ipcache.cidrs.sort_by_key(|(n, id)| (std::cmp::Reverse(n.prefix()), *id));

    // Each rule's selected identities and port keys, once: they do not depend on the endpoint.
    let identities: Vec<(&Labels, Identity)> = cluster.iter().map(|(l, id)| (*l, *id)).collect();
    let mut rules: Vec<[Vec<CompiledRule>; 2]> = Vec::with_capacity(world.policies.len());
    for p in &world.policies {
        let mut per_dir: [Vec<CompiledRule>; 2] = [Vec::new(), Vec::new()];
        for (d, dir) in [TrafficDirection::Ingress, TrafficDirection::Egress].into_iter().enumerate() {
            let list = if dir == TrafficDirection::Ingress { &p.ingress } else { &p.egress };
            for (r, rule) in list.iter().enumerate() {
                maps.origins.push(format!(
                    "NetworkPolicy {}/{} {} rule {r}",
                    p.namespace,
                    p.name,
                    dir.name().to_lowercase()
                ));
                let derived_from = (maps.origins.len() - 1) as u32;
                let remotes = if rule.peers.is_empty() {
                    // "If this field is empty or missing, this rule matches all sources":
                    // `WildcardSelector`, the ANY identity.
                    vec![ANY]
                } else {
                    let mut s = BTreeSet::new();
                    for peer in &rule.peers {
                        s.extend(select_peer(p, peer, &identities, &cidrs));
                    }
                    s.into_iter().collect()
                };
                let ports = if rule.ports.is_empty() {
                    vec![(0, 0, 0)]
                } else {
                    rule.ports.iter().flat_map(port_keys).collect()
                };
                per_dir[d].push(CompiledRule { derived_from, remotes, ports });
            }
        }
        rules.push(per_dir);
    }

    for (labels, id) in identities {
        let mut policy = EndpointPolicy::default();
        for (d, dir) in [TrafficDirection::Ingress, TrafficDirection::Egress].into_iter().enumerate() {
            let t = if dir == TrafficDirection::Ingress { PolicyType::Ingress } else { PolicyType::Egress };
            let selecting: Vec<usize> = world
                .policies
                .iter()
                .enumerate()
                .filter(|(_, p)| p.has(t) && subject(p).matches(labels))
                .map(|(i, _)| i)
                .collect();
            if selecting.is_empty() {
                policy.allow_any(dir);
                continue;
            }
            policy.enforced[d] = true;
            for i in selecting {
                for rule in &rules[i][d] {
                    let entry = PolicyEntry { deny: false, derived_from: rule.derived_from };
                    for &remote in &rule.remotes {
                        for &(proto, dport, prefix) in &rule.ports {
                            policy.insert(PolicyKey::new(dir, remote, proto, dport, prefix), entry);
                        }
                    }
                }
            }
        }
        policy.allow_localhost();
        if policy.enforced.iter().any(|&e| e) {
            maps.policies.insert(id, policy);
        }
    }
    Compiled { maps, pod_identity }
}

/// One rule, compiled: the identities it allows and its (protocol, port, prefix) keys.
struct CompiledRule {
    derived_from: u32,
    remotes: Vec<Identity>,
    ports: Vec<(u8, u16, u8)>,
}

/// A pod's identity labels (keys without the `k8s:` source, which all of them have):
/// `SanitizePodLabels`, then the label filter.
fn identity_labels(world: &PolicyWorld, pod: &PodInfo) -> Labels {
    let mut l: Labels = pod
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with(CILIUM_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(ns) = world.namespace(pod.namespace) {
        for (k, v) in &ns.labels {
            // policy.JoinPath: the two parts joined by ".".
            l.insert(format!("{NAMESPACE_LABELS}.{k}"), v.clone());
        }
    }
    l.insert(POD_NAMESPACE.into(), pod.namespace.into());
    l.insert(SERVICE_ACCOUNT.into(), SERVICE_ACCOUNT_NAME.into());
    l.insert(CLUSTER.into(), CLUSTER_NAME.into());
    l.retain(|k, _| identity_relevant(k));
    l
}

/// pkg/labelsfilter's default prefixes: a label is kept unless an ignore prefix matches it,
/// or an include prefix matches a longer part of it than the shortest matching ignore ("the
/// label is accepted if the matching section in the label is greater than the ignored
/// matching section"). Each prefix is a regular expression matched at the key's start.
fn identity_relevant(key: &str) -> bool {
    const INCLUDE: [&str; 4] = [POD_NAMESPACE, NAMESPACE_LABELS, "app.kubernetes.io", CLUSTER];
    const IGNORE: [&str; 10] = [
        "io.kubernetes",
        "kubernetes.io",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "batch.kubernetes.io/job-completion-index",
        "k8s.io",
        "pod-template-generation",
        "pod-template-hash",
        "controller-revision-hash",
        "etcd_node",
    ];
    let included = INCLUDE.iter().filter(|p| key.starts_with(*p)).map(|p| p.len()).max().unwrap_or(0);
    let mut ignored: Vec<usize> = IGNORE.iter().filter(|p| key.starts_with(*p)).map(|p| p.len()).collect();
    // `.*beta\.kubernetes\.io`: the greedy `.*` runs to the last occurrence.
    const BETA: &str = "beta.kubernetes.io";
    if let Some(i) = key.rfind(BETA) {
        ignored.push(i + BETA.len());
    }
    // `annotation.*`: the whole key.
    if key.starts_with("annotation") {
        ignored.push(key.len());
    }
    match ignored.into_iter().min() {
        None => true,
        Some(shortest) => included > shortest,
    }
}

/// A Cilium endpoint selector over identity labels: `matchLabels` (each `key In (value)`) and
/// requirements, ANDed, with `k8s.io/apimachinery/pkg/labels` semantics (`NotIn` and
/// `DoesNotExist` match a missing key).
#[derive(Clone, Debug, Default)]
struct Selector {
    match_labels: BTreeMap<String, String>,
    requirements: Vec<(String, Operator, Vec<String>)>,
}

impl Selector {
    /// `sel`'s requirements with `prefix` in front of every key (`""` for pod selectors).
    fn from_k8s(sel: Option<&LabelSelector>, prefix: &str) -> Selector {
        let mut s = Selector::default();
        if let Some(sel) = sel {
            for (k, v) in &sel.match_labels {
                s.match_labels.insert(format!("{prefix}{k}"), v.clone());
            }
            for r in &sel.match_expressions {
                s.requirements.push((format!("{prefix}{}", r.key), r.operator, r.values.clone()));
            }
        }
        s
    }

    fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|(k, op, values)| {
                let v = labels.get(k);
                match op {
                    Operator::In => v.is_some_and(|v| values.contains(v)),
                    Operator::NotIn => !v.is_some_and(|v| values.contains(v)),
                    Operator::Exists => v.is_some(),
                    Operator::DoesNotExist => v.is_none(),
                }
            })
    }
}

/// The policy's subject: its pod selector plus `io.kubernetes.pod.namespace = <namespace>`
/// (`parsePodSelector`).
fn subject(p: &NetworkPolicy) -> Selector {
    let mut s = Selector::from_k8s(Some(&p.pod_selector), "");
    s.match_labels.insert(POD_NAMESPACE.into(), p.namespace.clone());
    s
}

/// `parseNetworkPolicyPeer`: the pod selector gets `io.cilium.k8s.policy.cluster = <cluster>`;
/// a namespace selector's keys get the namespace-labels prefix (an empty one becomes
/// `io.kubernetes.pod.namespace Exists`: every namespace) and it is ANDed with the pod selector;
/// a pod selector alone gets the policy's namespace. So every peer selector needs the cluster
/// label, which only pod identities carry: host, world, remote-node and CIDR identities are
/// never selected by one.
fn peer_selector(
    p: &NetworkPolicy,
    pods: Option<&LabelSelector>,
    namespaces: Option<&LabelSelector>,
) -> Selector {
    let mut s = Selector::from_k8s(pods, "");
    s.match_labels.insert(CLUSTER.into(), CLUSTER_NAME.into());
    match namespaces {
        Some(ns) => {
            let n = Selector::from_k8s(Some(ns), &format!("{NAMESPACE_LABELS}."));
            if n.match_labels.is_empty() && n.requirements.is_empty() {
                s.requirements.push((POD_NAMESPACE.into(), Operator::Exists, Vec::new()));
            }
            s.match_labels.extend(n.match_labels);
            s.requirements.extend(n.requirements);
        }
        None => {
            s.match_labels.insert(POD_NAMESPACE.into(), p.namespace.clone());
        }
    }
    s
}

/// The identities one peer selects.
fn select_peer(
    p: &NetworkPolicy,
    peer: &Peer,
    identities: &[(&Labels, Identity)],
    cidrs: &[(Ipv4Net, Identity)],
) -> Vec<Identity> {
    match peer {
        Peer::Pods { pods, namespaces } => {
            let s = peer_selector(p, pods.as_ref(), namespaces.as_ref());
            identities.iter().filter(|(l, _)| s.matches(l)).map(|(_, id)| *id).collect()
        }
        Peer::IpBlock(b) => select_cidr(b, cidrs),
    }
}

/// A CIDR rule (`ipBlockToCIDRRule`: the cidr with its `ExceptCIDRs`) selects the CIDR
/// identity of every prefix inside `cidr` and inside no `except`, and world when `cidr` is
/// `0.0.0.0/0`. Since the ipcache gives an address the identity of its longest prefix, that is
/// exactly the addresses in `cidr` and in no `except`, outside the cluster: pods and nodes have
/// identities of their own, so "CIDR rules do not apply to traffic where both sides of the
/// connection are either managed by Cilium or use an IP belonging to a node in the cluster"
/// (Cilium docs, policy language, CIDR based).
fn select_cidr(b: &IpBlock, cidrs: &[(Ipv4Net, Identity)]) -> Vec<Identity> {
    let within = |q: &Ipv4Net, outer: &Ipv4Net| q.prefix() >= outer.prefix() && outer.contains(q.network());
    let mut out: Vec<Identity> = cidrs
        .iter()
        .filter(|(q, _)| within(q, &b.cidr) && !b.except.iter().any(|e| within(q, e)))
        .map(|(_, id)| *id)
        .collect();
    if b.cidr.prefix() == 0 {
        out.push(WORLD);
    }
    out
}

/// A policy port's map keys as (protocol, port, prefix): `parsePorts` makes a missing port
/// "0", every port of the protocol (prefix 8); a port the full key (24); a range the masked
/// ports of `PortRangeToMaskedPorts`, each a prefix of 8 + its mask's bits.
fn port_keys(p: &PolicyPort) -> Vec<(u8, u16, u8)> {
    let proto = p.protocol.number();
    match (p.port, p.end_port) {
        (None, _) => vec![(proto, 0, PROTO_BITS)],
        (Some(port), None) => vec![(proto, port, FULL_BITS)],
        (Some(port), Some(end)) => masked_ports(port, end)
            .into_iter()
            .map(|(port, mask)| (proto, port, PROTO_BITS + mask.count_ones() as u8))
            .collect(),
    }
}

/// `maskedPort`: `port` with its `wildcard_bits` lowest bits wildcarded, as (port, mask).
fn masked(port: u16, wildcard_bits: u32) -> (u16, u16) {
    let mask = u16::MAX.checked_shl(wildcard_bits).unwrap_or(0);
    (port & mask, mask)
}

/// `PortRangeToMaskedPorts` (cilium pkg/policy): the masked ports that together cover
/// `start..=end` exactly, approaching the range's highest differing bit from both sides.
fn masked_ports(start: u16, end: u16) -> Vec<(u16, u16)> {
    if start == 0 && (end == 0 || end == u16::MAX) {
        return vec![(0, 0)];
    }
    if end <= start {
        return vec![(start, u16::MAX)];
    }
    let common = (start ^ end).leading_zeros();
    let mask = u16::MAX >> common;
    if start & mask == 0 && !end & mask == 0 {
        return vec![masked(start, 16 - common)];
    }
    let middle_bit = 16 - 1 - common;
    let middle = 1u16 << middle_bit;
    let mut ports = Vec::new();
    let mut bit = (start | middle).trailing_zeros();
    ports.push(masked(start, bit));
    bit += 1;
    while bit < middle_bit {
        if start & (1 << bit) == 0 {
            ports.push(masked(start.wrapping_add(1 << bit), bit));
        }
        bit += 1;
    }
    bit = (!end | middle).trailing_zeros();
    ports.push(masked(end, bit));
    bit += 1;
    while bit < middle_bit {
        if end & (1 << bit) != 0 {
            ports.push(masked(end.wrapping_sub(1 << bit), bit));
        }
        bit += 1;
    }
    ports
}

#[cfg(test)]
mod tests;
