//! Seeded random policy worlds for property tests: namespaces with labels, pods with labels and
//! addresses on nodes, and policies mixing every feature of the model (pod and namespace
//! selectors alone and combined, every selector operator, ipBlock with except, ports with
//! protocols and endPort ranges, default-deny policies, egress-only and both-direction
//! policies, policyTypes left to default). The same seed gives the same world.
//!
//! Labels come from a small vocabulary so that selectors match often enough for both verdicts
//! to be common.

use std::net::Ipv4Addr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    allowed_with, default_types, Endpoint, IpBlock, LabelSelector, Labels, Namespace, NetworkPolicy,
    Operator, Peer, PodRef, PolicyPort, PolicyType, PolicyWorld, Protocol, Requirement, Rule, Semantics,
};
use crate::addr::Ipv4Net;

/// How large a generated world is.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub namespaces: usize,
    pub nodes: usize,
    pub pods: usize,
    pub policies: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape { namespaces: 3, nodes: 3, pods: 12, policies: 6 }
    }
}

/// A pod of a generated world.
#[derive(Clone, Debug)]
pub struct GenPod {
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    pub ip: Ipv4Addr,
    pub node: usize,
}

impl GenPod {
    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint::Pod(PodRef {
            name: &self.name,
            namespace: &self.namespace,
            labels: &self.labels,
            ip: self.ip,
            node: self.node,
        })
    }
}

/// A generated cluster: the policies, the pods they apply to, node and outside addresses.
#[derive(Clone, Debug)]
pub struct GenWorld {
    pub world: PolicyWorld,
    pub pods: Vec<GenPod>,
    /// Node `i`'s address; its pods are in `10.244.<i>.0/24`.
    pub nodes: Vec<Ipv4Addr>,
    /// Addresses outside the cluster that connections may come from or go to.
    pub externals: Vec<Ipv4Addr>,
}

const KEYS: [&str; 4] = ["app", "tier", "team", "env"];
const VALUES: [&str; 3] = ["a", "b", "c"];
/// Ports connections use; policies pick ports and ranges around them.
pub const PORTS: [u16; 6] = [53, 80, 443, 5201, 8080, 9000];

/// A world of the given shape from `seed`.
pub fn world(seed: u64, shape: Shape) -> GenWorld {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let namespaces: Vec<Namespace> = (0..shape.namespaces.max(1))
        .map(|i| {
            let name = if i == 0 { "default".to_string() } else { format!("ns-{i}") };
            Namespace::new(&name, random_labels(&mut rng, 2))
        })
        .collect();
    let nodes: Vec<Ipv4Addr> =
        (0..shape.nodes.max(1)).map(|i| Ipv4Addr::new(192, 168, 0, i as u8 + 1)).collect();
    let mut per_node = vec![0u8; nodes.len()];
    let pods: Vec<GenPod> = (0..shape.pods)
        .map(|i| {
            let node = rng.random_range(0..nodes.len());
            per_node[node] = per_node[node].wrapping_add(1);
            GenPod {
                name: format!("pod-{i}"),
                namespace: namespaces[rng.random_range(0..namespaces.len())].name.clone(),
                labels: random_labels(&mut rng, 3),
                ip: Ipv4Addr::new(10, 244, node as u8, per_node[node].wrapping_add(1)),
                node,
            }
        })
        .collect();
    let externals =
        vec![Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(203, 0, 113, 200), Ipv4Addr::new(8, 8, 8, 8)];
    let mut g = GenWorld { world: PolicyWorld { namespaces, policies: Vec::new() }, pods, nodes, externals };
    for i in 0..shape.policies {
        let p = random_policy(&mut rng, &g, i);
        g.world.policies.push(p);
    }
    g
}

impl GenWorld {
    /// Every endpoint: pods, then nodes, then outside addresses.
    pub fn endpoints(&self) -> Vec<Endpoint<'_>> {
        let mut out: Vec<Endpoint> = self.pods.iter().map(GenPod::endpoint).collect();
        out.extend(self.nodes.iter().enumerate().map(|(node, &ip)| Endpoint::Node { node, ip }));
        out.extend(self.externals.iter().map(|&ip| Endpoint::External(ip)));
        out
    }

    /// A random connection (source, destination, protocol, port) from `rng`, the source and
    /// destination distinct and at least one of them a pod.
    pub fn connection<'a>(&'a self, rng: &mut impl Rng) -> (Endpoint<'a>, Endpoint<'a>, Protocol, u16) {
        let all = self.endpoints();
        let pods = self.pods.len();
        loop {
            let (s, d) = (rng.random_range(0..all.len()), rng.random_range(0..all.len()));
            if s == d || (s >= pods && d >= pods) {
                continue;
            }
            let protocol = match rng.random_range(0..10) {
                0..7 => Protocol::Tcp,
                7..9 => Protocol::Udp,
                _ => Protocol::Sctp,
            };
            let port = if rng.random_bool(0.8) {
                PORTS[rng.random_range(0..PORTS.len())]
            } else {
                rng.random_range(1..=u16::MAX)
            };
            return (all[s], all[d], protocol, port);
        }
    }
}

/// Compares a decision procedure (an enforcement under test) with the oracle on `worlds`
/// worlds generated from `seed` (world `i` from `seed + i`), `per_world` connections each.
/// Returns the number of connections checked, or the first mismatch: the world's seed, the
/// connection, both answers and the oracle's explanation, so a failing enforcement names the
/// triple that differs.
pub fn compare_with_oracle(
    seed: u64,
    worlds: u64,
    per_world: usize,
    shape: Shape,
    sem: Semantics,
    mut decide: impl FnMut(&GenWorld, Endpoint, Endpoint, Protocol, u16) -> bool,
) -> Result<usize, String> {
    let mut checked = 0;
    for i in 0..worlds {
        let world_seed = seed.wrapping_add(i);
        let g = world(world_seed, shape);
        let mut rng = ChaCha8Rng::seed_from_u64(world_seed ^ 0x5eed_c0ee);
        for _ in 0..per_world {
            let (src, dst, protocol, port) = g.connection(&mut rng);
            let want = allowed_with(&g.world, sem, src, dst, protocol, port);
            let got = decide(&g, src, dst, protocol, port);
            if got != want.is_allowed() {
                return Err(format!(
                    "world seed {world_seed}: {src} -> {dst} {protocol} {port}: the enforcement {} it, the \
                     oracle says {}",
                    if got { "allowed" } else { "denied" },
                    want.explain(&g.world)
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

fn random_labels(rng: &mut impl Rng, max: usize) -> Labels {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| (pick(rng, &KEYS).to_string(), pick(rng, &VALUES).to_string())).collect()
}

fn pick<'a, T>(rng: &mut impl Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn random_selector(rng: &mut impl Rng) -> LabelSelector {
    let mut s = LabelSelector::default();
    if rng.random_bool(0.3) {
        return s;
    }
    for _ in 0..rng.random_range(0..=2) {
        s.match_labels.insert(pick(rng, &KEYS).to_string(), pick(rng, &VALUES).to_string());
    }
    for _ in 0..rng.random_range(0..=2) {
        let operator = *pick(rng, &Operator::ALL);
        let values = match operator {
            Operator::In | Operator::NotIn => {
                let mut v: Vec<String> =
                    (0..rng.random_range(1..=2)).map(|_| pick(rng, &VALUES).to_string()).collect();
                v.sort();
                v.dedup();
                v
            }
            Operator::Exists | Operator::DoesNotExist => Vec::new(),
        };
        s.match_expressions.push(Requirement { key: pick(rng, &KEYS).to_string(), operator, values });
    }
    s
}

/// A CIDR around one of the world's addresses (pod, node or outside), of a random prefix.
fn random_cidr(rng: &mut impl Rng, g: &GenWorld, min_prefix: u8) -> Ipv4Net {
    let all: Vec<Ipv4Addr> = g
        .pods
        .iter()
        .map(|p| p.ip)
        .chain(g.nodes.iter().copied())
        .chain(g.externals.iter().copied())
        .collect();
    let ip = *pick(rng, &all);
    let prefix = rng.random_range(min_prefix..=32);
    let masked = if prefix == 0 { 0 } else { u32::from(ip) & (u32::MAX << (32 - prefix)) };
    Ipv4Net::new(Ipv4Addr::from(masked), prefix)
        .unwrap_or_else(|| Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("0.0.0.0/0 is a network"))
}

fn random_ip_block(rng: &mut impl Rng, g: &GenWorld) -> IpBlock {
    let min_prefix = if rng.random_bool(0.1) { 0 } else { 8 };
    let cidr = random_cidr(rng, g, min_prefix);
    let mut except = Vec::new();
    if cidr.prefix() < 32 {
        for _ in 0..rng.random_range(0..=2) {
            // A strict subset: a longer prefix of an address inside `cidr`.
            let e = random_cidr(rng, g, cidr.prefix() + 1);
            if cidr.contains(e.network()) && e.prefix() > cidr.prefix() {
                except.push(e);
            }
        }
    }
    IpBlock { cidr, except }
}

fn random_peer(rng: &mut impl Rng, g: &GenWorld) -> Peer {
    match rng.random_range(0..4) {
        0 => Peer::Pods { pods: Some(random_selector(rng)), namespaces: None },
        1 => Peer::Pods { pods: None, namespaces: Some(random_selector(rng)) },
        2 => Peer::Pods { pods: Some(random_selector(rng)), namespaces: Some(random_selector(rng)) },
        _ => Peer::IpBlock(random_ip_block(rng, g)),
    }
}

fn random_port(rng: &mut impl Rng) -> PolicyPort {
    let protocol = if rng.random_bool(0.7) { Protocol::Tcp } else { *pick(rng, &Protocol::ALL) };
    match rng.random_range(0..4) {
        0 => PolicyPort { protocol, port: None, end_port: None },
        1 | 2 => PolicyPort { protocol, port: Some(*pick(rng, &PORTS)), end_port: None },
        _ => {
            let p = *pick(rng, &PORTS);
            let e = p.saturating_add(rng.random_range(0..=9000));
            PolicyPort { protocol, port: Some(p), end_port: Some(e) }
        }
    }
}

fn random_rule(rng: &mut impl Rng, g: &GenWorld) -> Rule {
    let peers = if rng.random_bool(0.2) {
        Vec::new()
    } else {
        (0..rng.random_range(1..=3)).map(|_| random_peer(rng, g)).collect()
    };
    let ports = if rng.random_bool(0.35) {
        Vec::new()
    } else {
        (0..rng.random_range(1..=2)).map(|_| random_port(rng)).collect()
    };
    Rule { peers, ports }
}

/// None at all (a default deny for the direction) about a fifth of the time.
fn random_rules(rng: &mut impl Rng, g: &GenWorld) -> Vec<Rule> {
    if rng.random_bool(0.2) {
        Vec::new()
    } else {
        (0..rng.random_range(1..=3)).map(|_| random_rule(rng, g)).collect()
    }
}

fn random_policy(rng: &mut impl Rng, g: &GenWorld, i: usize) -> NetworkPolicy {
    let namespace = pick(rng, &g.world.namespaces).name.clone();
    let pod_selector = random_selector(rng);
    let ingress = random_rules(rng, g);
    let egress = random_rules(rng, g);
    let given: Option<Vec<PolicyType>> = match rng.random_range(0..4) {
        0 => None,
        1 => Some(vec![PolicyType::Ingress]),
        2 => Some(vec![PolicyType::Egress]),
        _ => Some(vec![PolicyType::Ingress, PolicyType::Egress]),
    };
    let policy_types = default_types(given.as_deref(), egress.len());
    NetworkPolicy { name: format!("policy-{i}"), namespace, pod_selector, policy_types, ingress, egress }
}
