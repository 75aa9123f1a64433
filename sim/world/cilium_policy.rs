//! Cilium's NetworkPolicy state as data: security identities, the ipcache that maps an address
//! to its identity, one policy map per identity, and the connection table that lets replies
//! through; with the policy map lookup the datapath runs ([`EndpointPolicy::lookup`], cilium
//! bpf/lib/policy.h `__policy_can_access`).
//!
//! `cni::cilium` compiles the maps from the cluster's NetworkPolicies at build time (they are
//! the same on every node, so one copy is shared); `datapath::ebpf` looks packets up in them.
//! Nothing here knows how a NetworkPolicy becomes map entries, and nothing here reads the
//! oracle (`policy::allowed_with`): the compiled maps are tested against it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use rustc_hash::FxHashMap;

use crate::addr::Ipv4Net;
use crate::cluster::NodeId;
use crate::net::conntrack::Conntrack;

/// A numeric security identity (cilium pkg/identity `NumericIdentity`).
pub type Identity = u32;

/// `IdentityUnknown`: in a policy key, every identity (the "L4-only" and "allow all" entries).
pub const ANY: Identity = 0;
/// `ReservedIdentityHost`: the local node (its addresses, and what its stack sends).
pub const HOST: Identity = 1;
/// `ReservedIdentityWorld`: anything outside the cluster. cnisim is IPv4-only, and
/// `GetWorldIdentityFromIP` returns `ReservedIdentityWorld` unless the agent runs dual-stack
/// (pkg/identity/numericidentity.go).
pub const WORLD: Identity = 2;
/// `ReservedIdentityRemoteNode`: another node of the cluster.
pub const REMOTE_NODE: Identity = 6;
/// The reserved identities and their labels, as `cilium-dbg identity list` prints them
/// (pkg/identity/numericidentity.go: host 1, world 2, unmanaged 3, health 4, init 5,
/// remote-node 6, kube-apiserver 7 (with remote-node's label), ingress 8).
pub const RESERVED: [(Identity, &[&str]); 8] = [
    (1, &["reserved:host"]),
    (2, &["reserved:world"]),
    (3, &["reserved:unmanaged"]),
    (4, &["reserved:health"]),
    (5, &["reserved:init"]),
    (6, &["reserved:remote-node"]),
    (7, &["reserved:kube-apiserver", "reserved:remote-node"]),
    (8, &["reserved:ingress"]),
];
/// Cluster-scoped identities (pods) are allocated from 256 (`MinimalAllocationIdentity`).
pub const FIRST_CLUSTER: Identity = 256;
/// Node-local identities (CIDR identities) carry `IdentityScopeLocal`, 1 << 24.
pub const FIRST_LOCAL: Identity = 1 << 24;

/// The `egress` bit of `struct policy_key` (pkg/policy/trafficdirection: Ingress 0, Egress 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrafficDirection {
    Ingress,
    Egress,
}

impl TrafficDirection {
    pub fn name(self) -> &'static str {
        match self {
            TrafficDirection::Ingress => "Ingress",
            TrafficDirection::Egress => "Egress",
        }
    }
}

/// `LPM_PROTO_PREFIX_BITS`: the protocol is specified, the port wildcarded.
pub const PROTO_BITS: u8 = 8;
/// `LPM_FULL_PREFIX_BITS`: protocol and destination port specified.
pub const FULL_BITS: u8 = PROTO_BITS + 16;

/// One key of the per-endpoint policy map `cilium_policy_v2` (bpf/lib/policy.h
/// `struct policy_key`): an exact identity and direction, then protocol and destination port
/// matched by longest prefix. `prefix` counts the bits of (protocol, port) that must match:
/// 0 wildcards both ("protocol can only be wildcarded if dport is also fully wildcarded"),
/// 8 the port, 9-23 the low bits of the port, 24 nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub direction: TrafficDirection,
    pub identity: Identity,
    /// Invariant: 0 when `prefix < 8`.
    pub proto: u8,
    /// Invariant: the bits past `prefix` are zero.
    pub dport: u16,
    /// Invariant: at most [`FULL_BITS`].
    pub prefix: u8,
}

impl PolicyKey {
    /// A key with the wildcarded bits cleared, as the LPM trie compares them.
    pub fn new(
        direction: TrafficDirection,
        identity: Identity,
        proto: u8,
        dport: u16,
        prefix: u8,
    ) -> PolicyKey {
        let prefix = prefix.min(FULL_BITS);
        let proto = if prefix < PROTO_BITS { 0 } else { proto };
        let dport = if prefix <= PROTO_BITS { 0 } else { dport & (u16::MAX << (FULL_BITS - prefix)) };
        PolicyKey { direction, identity, proto, dport, prefix }
    }

    /// As `cilium-dbg bpf policy get` prints the column PORT/PROTO (pkg/maps/policymap
    /// `PortProtoString`): `ANY`, `TCP`, `80/TCP`, `8192-8447/TCP` for a masked port.
    pub fn port_proto(&self) -> String {
        let proto = proto_name(self.proto);
        match self.prefix {
            0 | PROTO_BITS => proto,
            FULL_BITS => format!("{}/{proto}", self.dport),
            p => {
                let span = u16::MAX >> (p - PROTO_BITS);
                format!("{}-{}/{proto}", self.dport, self.dport.saturating_add(span))
            }
        }
    }
}

/// `u8proto.U8proto.String()`: the names of the protocols policies carry.
pub fn proto_name(proto: u8) -> String {
    match proto {
        0 => "ANY".into(),
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}

/// `struct policy_entry`: an allow, or a deny (CiliumNetworkPolicy deny rules; a Kubernetes
/// NetworkPolicy only ever allows). No proxy port or auth type: L7 policy is not modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyEntry {
    pub deny: bool,
    /// What put the entry there: an index into [`PolicyMaps::origins`] (Cilium keeps the
    /// rule's labels with each map state entry, its "derived from").
    pub derived_from: u32,
}

/// What [`EndpointPolicy::lookup`] decided, with the entry that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        key: PolicyKey,
        entry: PolicyEntry,
    },
    /// `DROP_POLICY_DENY`: a deny entry matched.
    Denied {
        key: PolicyKey,
        entry: PolicyEntry,
    },
    /// `DROP_POLICY`: neither lookup found an entry.
    NoEntry,
}

impl Verdict {
    pub fn allows(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// A policy check: the verdict and how many map lookups it took (one when the L3 lookup
/// finds a deny, else two), which the datapath charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub verdict: Verdict,
    pub map_lookups: u32,
}

/// The policy map of an endpoint (`cilium_policy_v2_<endpoint id>`), one per identity here:
/// the agent computes one `selectorPolicy` per identity and distils the same entries for every
/// endpoint of it (pkg/policy/distillery.go).
#[derive(Clone, Debug, Default)]
pub struct EndpointPolicy {
    entries: FxHashMap<PolicyKey, PolicyEntry>,
    /// Per direction, bit `p` set when some entry has prefix length `p`: the LPM emulation
    /// tries only those lengths.
    prefixes: [u32; 2],
    /// Per direction (ingress, egress): some policy selects the endpoint. False means the
    /// agent's allow-all entry (`allowAllIdentities`) is what the map holds for it.
    pub enforced: [bool; 2],
}

impl EndpointPolicy {
    /// Adds an entry. A key already present keeps its entry unless the new one denies
    /// (deny takes precedence, pkg/policy/mapstate.go `denyPreferredInsert`).
    pub fn insert(&mut self, key: PolicyKey, entry: PolicyEntry) {
        let e = self.entries.entry(key).or_insert(entry);
        if entry.deny && !e.deny {
            *e = entry;
        }
        self.prefixes[key.direction as usize] |= 1 << key.prefix;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in `cilium-dbg bpf policy get`'s order (pkg/maps/policymap
    /// `PolicyEntriesDump.Less`: denies first, then direction, then identity), ties broken by
    /// protocol, port and prefix so the order is total.
    pub fn sorted(&self) -> Vec<(PolicyKey, PolicyEntry)> {
        let mut v: Vec<(PolicyKey, PolicyEntry)> = self.entries.iter().map(|(k, e)| (*k, *e)).collect();
        v.sort_by_key(|(k, e)| (!e.deny, k.direction, k.identity, k.proto, k.dport, k.prefix));
        v
    }

    /// One `map_lookup_elem` on the LPM trie: the entry of `identity` whose (protocol, port)
    /// prefix is the longest that matches.
    fn lpm(
        &self,
        direction: TrafficDirection,
        identity: Identity,
        proto: u8,
        dport: u16,
    ) -> Option<(PolicyKey, PolicyEntry)> {
        let present = self.prefixes[direction as usize];
        (0..=FULL_BITS).rev().filter(|p| present & (1 << p) != 0).find_map(|p| {
            let key = PolicyKey::new(direction, identity, proto, dport, p);
            self.entries.get(&key).map(|e| (key, *e))
        })
    }

    /// `__policy_can_access` (bpf/lib/policy.h): "L3 lookup: an exact match on L3 identity and
    /// LPM match on L4 proto and port"; a deny found there decides at once; then the "L4-only
    /// lookup: a wildcard match on L3 identity". The L4-only entry is chosen if it denies, if
    /// there is no L3 entry, or if its prefix is longer (proxy port priorities are all equal:
    /// no L7 policy); otherwise the L3 entry; with neither, `DROP_POLICY`.
    pub fn lookup(&self, direction: TrafficDirection, remote: Identity, proto: u8, dport: u16) -> Lookup {
        let l3 = self.lpm(direction, remote, proto, dport);
        if let Some((key, entry)) = l3.filter(|(_, e)| e.deny) {
            return Lookup { verdict: Verdict::Denied { key, entry }, map_lookups: 1 };
        }
        let l4 = self.lpm(direction, ANY, proto, dport);
        let chosen = match (l3, l4) {
            (l3, Some(l4)) if l4.1.deny || l3.is_none_or(|l3| l4.0.prefix > l3.0.prefix) => Some(l4),
            (Some(l3), _) => Some(l3),
            (None, l4) => l4,
        };
        let verdict = match chosen {
            Some((key, entry)) if entry.deny => Verdict::Denied { key, entry },
            Some((key, entry)) => Verdict::Allowed { key, entry },
            None => Verdict::NoEntry,
        };
        Lookup { verdict, map_lookups: 2 }
    }
}

/// The ipcache (`cilium_ipcache`) as far as policy needs it: the identity of an address.
#[derive(Clone, Debug, Default)]
pub struct Ipcache {
    /// Every pod's address (the agents share all endpoints' identities cluster-wide).
    pub pods: FxHashMap<Ipv4Addr, Identity>,
    /// Every node's addresses (its node IP and its `cilium_host` router address).
    pub nodes: FxHashMap<Ipv4Addr, NodeId>,
    /// The prefixes CIDR rules name, each with its CIDR identity, longest prefix first.
    pub cidrs: Vec<(Ipv4Net, Identity)>,
}

impl Ipcache {
    /// `lookup_ip4_remote_endpoint` on node `me`: a pod's identity; `host` for the node's own
    /// addresses, `remote-node` for the other nodes' (the agent upserts its own node IPs as
    /// host and the others as remote-node); then the longest CIDR prefix containing the
    /// address; else `world` (the ipcache's `0.0.0.0/0` entry).
    pub fn identity(&self, me: NodeId, ip: Ipv4Addr) -> Identity {
        if let Some(&id) = self.pods.get(&ip) {
            return id;
        }
        if let Some(&n) = self.nodes.get(&ip) {
            return if n == me { HOST } else { REMOTE_NODE };
        }
        self.cidrs.iter().find(|(net, _)| net.contains(ip)).map_or(WORLD, |(_, id)| *id)
    }
}

/// Everything policy needs that is the same on every node: identities, ipcache, policy maps.
#[derive(Clone, Debug)]
pub struct PolicyMaps {
    /// Every identity with its labels, sorted (`k8s:app=web`, `cidr:8.8.0.0/16`,
    /// `reserved:world`), as `cilium-dbg identity list` prints them.
    pub identities: BTreeMap<Identity, Vec<String>>,
    pub ipcache: Ipcache,
    /// The map of every identity some policy selects.
    pub policies: FxHashMap<Identity, EndpointPolicy>,
    /// The map of an endpoint no policy selects in either direction (allow any, both ways,
    /// and the local host).
    pub unrestricted: EndpointPolicy,
    /// What each entry was derived from ([`PolicyEntry::derived_from`]).
    pub origins: Vec<String>,
    /// The next cluster and local (CIDR) identity the allocator hands out.
    pub next_cluster: Identity,
    pub next_local: Identity,
}

/// [`PolicyMaps::origins`] index of the local host's ingress entry (pkg/policy/mapstate.go
/// `LabelAllowLocalHostIngress`).
pub const ORIGIN_LOCALHOST: u32 = 0;
/// Index of the allow-all entry of an unenforced direction (`LabelAllowAnyIngress`,
/// `LabelAllowAnyEgress`).
pub const ORIGIN_ANY_INGRESS: u32 = 1;
pub const ORIGIN_ANY_EGRESS: u32 = 2;

impl Default for PolicyMaps {
    /// No policies: every endpoint's map allows everything.
    fn default() -> Self {
        PolicyMaps {
            identities: BTreeMap::new(),
            ipcache: Ipcache::default(),
            policies: FxHashMap::default(),
            unrestricted: EndpointPolicy::unrestricted(),
            origins: vec![
                "allow-localhost-ingress".into(),
                "allow-any-ingress".into(),
                "allow-any-egress".into(),
            ],
            next_cluster: FIRST_CLUSTER,
            next_local: FIRST_LOCAL,
        }
    }
}

impl EndpointPolicy {
    /// The entries `allowAllIdentities(true, true)` and `determineAllowLocalhostIngress` give
    /// an endpoint no policy selects.
    pub fn unrestricted() -> EndpointPolicy {
        let mut p = EndpointPolicy::default();
        p.allow_any(TrafficDirection::Ingress);
        p.allow_any(TrafficDirection::Egress);
        p.allow_localhost();
        p
    }

    /// `allowAllIdentities` for one direction: the key ANY/ANY/ANY.
    pub fn allow_any(&mut self, direction: TrafficDirection) {
        let derived_from = match direction {
            TrafficDirection::Ingress => ORIGIN_ANY_INGRESS,
            TrafficDirection::Egress => ORIGIN_ANY_EGRESS,
        };
        self.insert(PolicyKey::new(direction, ANY, 0, 0, 0), PolicyEntry { deny: false, derived_from });
    }

    /// `determineAllowLocalhostIngress` (pkg/policy/mapstate.go): with
    /// `AlwaysAllowLocalhost()` the key `localHostKey` (host identity, ingress, any port) allows.
    /// The agent's default `--allow-localhost=auto` becomes `always` in Kubernetes mode
    /// ("Kubernetes demands that the localhost can always reach local pods", daemon/cmd).
    pub fn allow_localhost(&mut self) {
        let key = PolicyKey::new(TrafficDirection::Ingress, HOST, 0, 0, 0);
        self.insert(key, PolicyEntry { deny: false, derived_from: ORIGIN_LOCALHOST });
    }
}

impl PolicyMaps {
    /// The policy map of an endpoint of `identity`.
    pub fn policy(&self, identity: Identity) -> &EndpointPolicy {
        self.policies.get(&identity).unwrap_or(&self.unrestricted)
    }

    /// The policy check the datapath runs for an endpoint of `identity` in `direction` against
    /// `remote` (the peer's identity) on `proto`/`dport`: its policy map's lookup.
    pub fn check(
        &self,
        identity: Identity,
        direction: TrafficDirection,
        remote: Identity,
        proto: u8,
        dport: u16,
    ) -> Lookup {
        self.policy(identity).lookup(direction, remote, proto, dport)
    }

    /// What an entry was derived from.
    pub fn origin(&self, entry: &PolicyEntry) -> &str {
        self.origins.get(entry.derived_from as usize).map_or("?", |s| s.as_str())
    }
}

/// The datapath's connection tracking for policy on one node, in the two scopes of Cilium's
/// CT map (bpf/lib/conntrack.h): `CT_EGRESS`, the connections local endpoints opened, and
/// `CT_INGRESS`, the ones they accepted. A packet whose tuple is a reply of either is
/// `CT_REPLY` and skips policy ("Skip policy enforcement for return traffic", bpf_lxc.c); every
/// other packet is looked up in the policy map, and a new connection the policy allows gets an
/// entry ("Only create CT entry for accepted connections").
///
/// Each scope is a [`Conntrack`] of `bpf-ct-global-any-max` entries (Cilium keeps both scopes,
/// and TCP apart from the rest, in one pair of maps), with netfilter's timeouts and TCP states,
/// as the service translation's table (`NodeProxy::bpf_ct`) has.
#[derive(Clone, Debug)]
pub struct PolicyCt {
    pub egress: Conntrack,
    pub ingress: Conntrack,
    /// IPv4 fragment tracking (bpf/lib/ipfrag.h, `--enable-ipv4-fragment-tracking`, on by
    /// default): the ports of a datagram's first fragment, for its later fragments, by
    /// (source, destination, IP id, protocol).
    pub frags: FxHashMap<(Ipv4Addr, Ipv4Addr, u16, u8), (u16, u16)>,
}

impl Default for PolicyCt {
    fn default() -> Self {
        let max = crate::proxy::node::BPF_CT_MAX;
        PolicyCt { egress: Conntrack::new(max), ingress: Conntrack::new(max), frags: FxHashMap::default() }
    }
}

impl PolicyCt {
    pub fn scope(&mut self, direction: TrafficDirection) -> &mut Conntrack {
        match direction {
            TrafficDirection::Ingress => &mut self.ingress,
            TrafficDirection::Egress => &mut self.egress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(derived_from: u32) -> PolicyEntry {
        PolicyEntry { deny: false, derived_from }
    }

    #[test]
    fn keys_clear_their_wildcarded_bits_and_print_as_the_cli_does() {
        let k = PolicyKey::new(TrafficDirection::Ingress, 300, 6, 8447, 16);
        assert_eq!((k.proto, k.dport), (6, 8192));
        assert_eq!(k.port_proto(), "8192-8447/TCP");
        assert_eq!(PolicyKey::new(TrafficDirection::Egress, 0, 17, 53, 24).port_proto(), "53/UDP");
        assert_eq!(PolicyKey::new(TrafficDirection::Egress, 0, 17, 53, 8).port_proto(), "UDP");
        let any = PolicyKey::new(TrafficDirection::Egress, 0, 17, 53, 0);
        assert_eq!((any.proto, any.dport, any.port_proto().as_str()), (0, 0, "ANY"));
    }

    #[test]
    fn the_longer_prefix_wins_between_l3_and_l4_only_and_l3_breaks_ties() {
        let mut p = EndpointPolicy::default();
        let ing = TrafficDirection::Ingress;
        p.insert(PolicyKey::new(ing, 300, 6, 0, 8), allow(10)); // identity 300, any TCP port
        p.insert(PolicyKey::new(ing, ANY, 6, 80, 24), allow(11)); // anyone, TCP 80
        p.insert(PolicyKey::new(ing, ANY, 6, 0, 8), allow(12)); // anyone, any TCP port
        let got = |id, port| match p.lookup(ing, id, 6, port).verdict {
            Verdict::Allowed { entry, .. } => Some(entry.derived_from),
            _ => None,
        };
        assert_eq!(got(300, 80), Some(11), "L4-only 80/TCP is longer than 300's TCP");
        assert_eq!(got(300, 81), Some(10), "equal prefixes: the L3 entry");
        assert_eq!(got(301, 81), Some(12));
        assert_eq!(p.lookup(ing, 301, 17, 81), Lookup { verdict: Verdict::NoEntry, map_lookups: 2 });
        assert_eq!(p.lookup(TrafficDirection::Egress, 300, 6, 80).verdict, Verdict::NoEntry);
        // A deny found by the L3 lookup decides after one lookup.
        p.insert(PolicyKey::new(ing, 300, 6, 80, 24), PolicyEntry { deny: true, derived_from: 13 });
        let l = p.lookup(ing, 300, 6, 80);
        assert!(matches!(l.verdict, Verdict::Denied { .. }) && l.map_lookups == 1);
    }

    #[test]
    fn the_ipcache_tells_host_from_remote_node_and_cidrs_by_longest_prefix() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let net = |s: &str, p| Ipv4Net::new(ip(s), p).unwrap();
        let mut c = Ipcache::default();
        c.pods.insert(ip("10.244.1.2"), 256);
        c.nodes.insert(ip("192.168.0.1"), 0);
        c.nodes.insert(ip("192.168.0.2"), 1);
        c.cidrs = vec![(net("203.0.113.128", 25), FIRST_LOCAL + 1), (net("203.0.113.0", 24), FIRST_LOCAL)];
        assert_eq!(c.identity(0, ip("10.244.1.2")), 256);
        assert_eq!(c.identity(0, ip("192.168.0.1")), HOST);
        assert_eq!(c.identity(0, ip("192.168.0.2")), REMOTE_NODE);
        assert_eq!(c.identity(0, ip("203.0.113.200")), FIRST_LOCAL + 1);
        assert_eq!(c.identity(0, ip("203.0.113.10")), FIRST_LOCAL);
        assert_eq!(c.identity(0, ip("8.8.8.8")), WORLD);
    }
}
