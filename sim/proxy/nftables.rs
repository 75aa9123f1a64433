//! kube-proxy's nftables mode: the `ip kube-proxy` table, its verdict maps and chains.
//!
//! Built as `k8s/pkg/proxy/nftables/proxier.go` builds it (`setupNFTables` for the fixed part,
//! `syncProxyRules` per Service port): base chains at `dstnat - 10` (filter) and `dstnat` /
//! `srcnat` (nat); the `services` chain dispatching through the `service-ips` verdict map keyed
//! `ip daddr . meta l4proto . th dport` and, for local destinations, the `service-nodeports` map;
//! one `service-HASH-ns/name/udp/port` chain (`/tcp/` for TCP) per Service port choosing an endpoint with
//! `numgen random mod N vmap`; one `endpoint-HASH-...` chain per endpoint doing the DNAT.
//! Services without endpoints are handled in the filter chains through `no-endpoint-services` /
//! `no-endpoint-nodeports` (`goto reject-chain`, or `drop` for "no local endpoints").
//!
//! cnisim assumes kube-proxy's defaults: a `--cluster-cidr` local-traffic detector when the
//! table has one, masquerade mark 0x4000, `--nodeport-addresses` matching all local addresses
//! (the `fib daddr type local` form of the nodeports rule), no session affinity and no
//! LoadBalancer or external IPs (their maps exist but stay empty).

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use std::fmt::{self, Display, Write};
use std::net::Ipv4Addr;

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

use crate::addr::Ipv4Net;
use crate::cluster::{Protocol, ServiceKind, ServiceTable, TrafficPolicy};
use crate::net::conntrack::{Tuple, L4};
use crate::proxy::{Hook, Lookup, NodeView, Verdict};

/// Estimated kernel bytes per rule: `struct nft_rule` (a list head and a 64-bit handle/length
/// word, `include/net/netfilter/nf_tables.h`) plus about five expressions of an ops pointer and
/// 8-24 bytes of private data each. An estimate, not a measurement.
const RULE_BYTES: usize = 128;
/// Estimated bytes per map or set element: an `nft_rhash_elem` (rhash head, GC sequence,
/// `nft_set_ext` header) with a 12-byte concatenated key and a 16-byte `nft_data` verdict,
/// rounded to kmalloc-64. An estimate.
const ELEM_BYTES: usize = 64;
/// Estimated bytes per chain (`struct nft_chain` plus its name and rule blob header).
const CHAIN_BYTES: usize = 256;

/// The `services` chain's NodePort rule (the `--nodeport-addresses` match-all form).
const NODEPORTS_RULE: &str =
    "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports";
/// `nodeport-endpoints-check`'s rule.
const NODEPORT_CHECK_RULE: &str =
    "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports";
/// `service-endpoints-check`'s rule.
const SERVICE_CHECK_RULE: &str = "ip daddr . meta l4proto . th dport vmap @no-endpoint-services";
/// `cluster-ips-check`'s rule (no `ip daddr { <service CIDRs> } drop` rule: cnisim's table
/// carries no service CIDR).
const CLUSTER_IPS_RULE: &str =
    "ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"";

/// How a Service port without usable endpoints is answered in the filter chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NoEndpoints {
    /// No endpoints at all: `goto reject-chain` (ICMP port unreachable).
    Reject,
    /// externalTrafficPolicy Local and none on this node: `drop`.
    Drop,
}

/// One endpoint as its chain sees it.
#[derive(Clone, Debug)]
struct Ep {
    endpoint: usize,
    ip: Ipv4Addr,
    port: u16,
    chain: String,
}

/// One Service port and the chains kube-proxy generates for it.
#[derive(Clone, Debug)]
struct SvcPort {
    service: usize,
    port: usize,
    /// `ns/name` or `ns/name:port`, the comment of no-endpoint elements.
    port_name: String,
    /// `HASH-ns/name/udp/portname` (`servicePortChainNameBase`, the protocol lowercased).
    base: String,
    protocol: Protocol,
    cluster_ip: Ipv4Addr,
    port_num: u16,
    node_port: Option<u16>,
    local_policy: bool,
    cluster_eps: Vec<Ep>,
    local_eps: Vec<Ep>,
}

/// A per-Service-port chain's name, `service-HASH-...`, `local-...` or `external-...`, written
/// out only when displayed (a lookup without a trace never spells it).
#[derive(Clone, Copy)]
struct ChainName<'a> {
    prefix: &'static str,
    base: &'a str,
}

impl Display for ChainName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.prefix, self.base)
    }
}

impl SvcPort {
    fn service_chain(&self) -> ChainName<'_> {
        ChainName { prefix: "service", base: &self.base }
    }
    fn local_chain(&self) -> ChainName<'_> {
        ChainName { prefix: "local", base: &self.base }
    }
    fn external_chain(&self) -> ChainName<'_> {
        ChainName { prefix: "external", base: &self.base }
    }
    fn has_endpoints(&self) -> bool {
        !self.cluster_eps.is_empty()
    }
    /// `usesExternalTrafficChain`: endpoints exist and the port is reachable from outside.
    fn uses_external(&self) -> bool {
        self.has_endpoints() && self.node_port.is_some()
    }
    /// `hasExternalEndpoints`.
    fn has_external_endpoints(&self) -> bool {
        if self.local_policy {
            !self.local_eps.is_empty()
        } else {
            self.has_endpoints()
        }
    }
}

/// The `ip kube-proxy` table kube-proxy programs on one node.
#[derive(Clone, Debug)]
pub struct NftTable {
    cluster_cidr: Option<Ipv4Net>,
    ports: Vec<SvcPort>,
    /// `service-ips`: (cluster IP, port, protocol) to the Service port whose chain it `goto`s
    /// (the map's key is `ipv4_addr . inet_proto . inet_service`).
    service_ips: FxHashMap<(Ipv4Addr, u16, L4), usize>,
    /// `service-nodeports`: (node port, protocol) to the Service port whose external chain it
    /// `goto`s.
    service_nodeports: FxHashMap<(u16, L4), usize>,
    /// `no-endpoint-services`.
    no_endpoint_services: FxHashMap<(Ipv4Addr, u16, L4), (usize, NoEndpoints)>,
    /// `no-endpoint-nodeports`.
    no_endpoint_nodeports: FxHashMap<(u16, L4), (usize, NoEndpoints)>,
    /// `cluster-ips`.
    cluster_ips: BTreeSet<Ipv4Addr>,
    /// Chains and rules of the table, counted once at build time (listing them renders text).
    chain_count: usize,
    rule_lines: usize,
}

impl NftTable {
    /// The table for `table` as seen from `node`: only ready endpoints; "local" endpoints are
    /// those on this node.
    pub fn build(table: &ServiceTable, node: &NodeView) -> NftTable {
        let mut nft = NftTable {
            cluster_cidr: table.cluster_cidr,
            ports: Vec::new(),
            service_ips: FxHashMap::default(),
            service_nodeports: FxHashMap::default(),
            no_endpoint_services: FxHashMap::default(),
            no_endpoint_nodeports: FxHashMap::default(),
            cluster_ips: BTreeSet::new(),
            chain_count: 0,
            rule_lines: 0,
        };
        for (s, svc) in table.services.iter().enumerate() {
            let Some(cluster_ip) = svc.cluster_ip.filter(|_| svc.kind != ServiceKind::Headless) else {
                continue;
            };
            for (p, sp) in svc.ports.iter().enumerate() {
                let stem = format!("{}/{}/{}/{}", svc.namespace, svc.name, sp.protocol.lower(), sp.name);
                let ep = |(endpoint, e): (usize, &crate::cluster::Endpoint)| Ep {
                    endpoint,
                    ip: e.ip,
                    port: sp.target_port,
                    chain: format!(
                        "endpoint-{}",
                        hash_and_truncate(&format!("{stem}__{}/{}", e.ip, sp.target_port))
                    ),
                };
                let sport = SvcPort {
                    service: s,
                    port: p,
                    port_name: svc.port_name(p),
                    base: hash_and_truncate(&stem),
                    protocol: sp.protocol,
                    cluster_ip,
                    port_num: sp.port,
                    node_port: sp.node_port.filter(|_| svc.kind == ServiceKind::NodePort),
                    local_policy: svc.external_traffic_policy == TrafficPolicy::Local,
                    cluster_eps: svc.ready().map(ep).collect(),
                    local_eps: svc.ready().filter(|(_, e)| e.node == node.id).map(ep).collect(),
                };
                nft.add_port(sport);
            }
        }
        let chains = nft.chains();
        nft.chain_count = chains.len();
        nft.rule_lines = chains.iter().map(|(_, _, r)| r.len()).sum();
        nft
    }

    /// The map and set elements of one Service port (`syncProxyRules`, "Capture the clusterIP"
    /// and "Capture nodeports").
    fn add_port(&mut self, sp: SvcPort) {
        let i = self.ports.len();
        let l4 = sp.protocol.l4();
        self.cluster_ips.insert(sp.cluster_ip);
        if sp.has_endpoints() {
            self.service_ips.insert((sp.cluster_ip, sp.port_num, l4), i);
        } else {
            self.no_endpoint_services.insert((sp.cluster_ip, sp.port_num, l4), (i, NoEndpoints::Reject));
        }
        if let Some(np) = sp.node_port {
            if sp.has_endpoints() {
                self.service_nodeports.insert((np, l4), i);
            }
            if !sp.has_external_endpoints() {
                let v = if sp.has_endpoints() { NoEndpoints::Drop } else { NoEndpoints::Reject };
                self.no_endpoint_nodeports.insert((np, l4), (i, v));
            }
        }
        self.ports.push(sp);
    }

    /// A new connection's first packet, walked rule by rule.
    ///
    /// nat hook (`nat-prerouting` or `nat-output`, priority dstnat): `jump services`; in
    /// `services` the `service-ips` vmap (one lookup); on a miss, the nodeports rule `fib daddr
    /// type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports` (a
    /// lookup only when the destination is local). A hit `goto`s the service chain: its
    /// `ip daddr <vip> udp dport <port> ip saddr != <cidr> jump mark-for-masquerade`, then
    /// `numgen random mod N vmap { ... }` (one lookup in the anonymous map), whose index is the
    /// kernel's `reciprocal_scale(get_random_u32(), N)` = `(r * N) >> 32` (`nft_ng_random_gen`,
    /// `net/netfilter/nft_numgen.c`) with `r = random()`; then the endpoint chain: the hairpin
    /// rule `ip saddr <ep> jump mark-for-masquerade` and the DNAT rule. A `jump
    /// mark-for-masquerade` taken costs that chain's one rule too.
    ///
    /// Services without endpoints get no NAT; the filter chains decide, and only those chains are
    /// counted on that path: for OUTPUT `filter-output` runs first (dstnat - 10), for forwarded
    /// traffic `filter-forward` after NAT, for NodePorts `filter-input`. `reject-chain` answers
    /// with ICMP port unreachable ([`Verdict::Reject`]); the `drop` verdict for a Local-policy
    /// NodePort without local endpoints is [`Verdict::Drop`]. The filter-table checks that
    /// every new connection also passes (`firewall-check`, `cluster-ips-check`, the no-endpoint maps on a miss) are not counted.
    pub fn lookup(
        &self,
        hook: Hook,
        t: &Tuple,
        dst_is_local: bool,
        random: &mut dyn FnMut() -> u32,
        trace: bool,
    ) -> Lookup {
        let mut w = Walk { rules: 0, lookups: 0, walk: Vec::new(), trace };
        let reject = |w: Walk, check: &str, jump_from: &str, (i, v): (usize, NoEndpoints)| {
            let sp = &self.ports[i];
            let (service, port) = (sp.service, sp.port);
            w.filter_reject(jump_from, check, v, service, port)
        };
        if hook == Hook::Output {
            if let Some(&hit) = self.no_endpoint_services.get(&(t.dst, t.dport, t.proto)) {
                return reject(w, "service-endpoints-check", "filter-output", hit);
            }
        }
        let base = if hook == Hook::Prerouting { "nat-prerouting" } else { "nat-output" };
        w.rule(format_args!("{base}: jump services"));
        w.rule("services: ip daddr . meta l4proto . th dport vmap @service-ips");
        if let Some(&i) = self.service_ips.get(&(t.dst, t.dport, t.proto)) {
            w.lookup(true, "service-ips");
            return self.service_chain(w, i, t, random, false);
        }
        w.lookup(false, "service-ips");
        w.rule(format_args!("services: {NODEPORTS_RULE}"));
        let local = dst_is_local && t.dst.octets()[0] != 127;
        let nodeport = if local { self.service_nodeports.get(&(t.dport, t.proto)).copied() } else { None };
        if local {
            w.lookup(nodeport.is_some(), "service-nodeports");
        }
        if let Some(i) = nodeport {
            return self.external_chain(w, i, hook, t, random);
        }
        if local {
            if let Some(&hit) = self.no_endpoint_nodeports.get(&(t.dport, t.proto)) {
                return reject(w, "nodeport-endpoints-check", "filter-input", hit);
            }
        }
        match self.no_endpoint_services.get(&(t.dst, t.dport, t.proto)) {
            Some(&hit) => reject(w, "service-endpoints-check", "filter-forward", hit),
            None => w.done(Verdict::NoService),
        }
    }

    /// `external-...`: masquerade for Cluster policy, or the Local-policy short-circuits.
    fn external_chain(
        &self,
        mut w: Walk,
        i: usize,
        hook: Hook,
        t: &Tuple,
        random: &mut dyn FnMut() -> u32,
    ) -> Lookup {
        let sp = &self.ports[i];
        let ext = sp.external_chain();
        if !sp.local_policy {
            w.rule(format_args!("{ext}: jump mark-for-masquerade"));
            w.mark();
            w.rule(format_args!("{ext}: goto {}", sp.service_chain()));
            return self.service_chain(w, i, t, random, true);
        }
        if let Some(cidr) = self.cluster_cidr {
            w.rule(format_args!("{ext}: ip saddr {cidr} goto {}", sp.service_chain()));
            if cidr.contains(t.src) {
                return self.service_chain(w, i, t, random, false);
            }
        }
        let from_node = hook == Hook::Output;
        w.rule(format_args!("{ext}: fib saddr type local jump mark-for-masquerade"));
        if from_node {
            w.mark();
        }
        w.rule(format_args!("{ext}: fib saddr type local goto {}", sp.service_chain()));
        if from_node {
            return self.service_chain(w, i, t, random, true);
        }
        if sp.local_eps.is_empty() {
            let hit = self.no_endpoint_nodeports[&(t.dport, t.proto)];
            return w.filter_reject("filter-input", "nodeport-endpoints-check", hit.1, sp.service, sp.port);
        }
        w.rule(format_args!("{ext}: goto {}", sp.local_chain()));
        self.numgen(w, sp.local_chain(), &sp.local_eps, i, t, random, false)
    }

    /// `service-...` (Cluster policy): the off-cluster masquerade rule, then numgen.
    fn service_chain(
        &self,
        mut w: Walk,
        i: usize,
        t: &Tuple,
        random: &mut dyn FnMut() -> u32,
        masq: bool,
    ) -> Lookup {
        let sp = &self.ports[i];
        let chain = sp.service_chain();
        let mut masq = masq;
        if let Some(cidr) = self.cluster_cidr {
            w.rule(format_args!("{chain}: {}", masq_rule(sp, cidr)));
            let to_vip = t.dst == sp.cluster_ip && t.dport == sp.port_num && t.proto == sp.protocol.l4();
            if to_vip && !cidr.contains(t.src) {
                w.mark();
                masq = true;
            }
        }
        self.numgen(w, chain, &sp.cluster_eps, i, t, random, masq)
    }

    /// `numgen random mod N vmap { ... }` and the chosen endpoint chain.
    #[allow(clippy::too_many_arguments)]
    fn numgen(
        &self,
        mut w: Walk,
        chain: ChainName<'_>,
        eps: &[Ep],
        i: usize,
        t: &Tuple,
        random: &mut dyn FnMut() -> u32,
        masq: bool,
    ) -> Lookup {
        w.rule(format_args!("{chain}: numgen random mod {} vmap {{ ... }}", eps.len()));
        let pick = ((u64::from(random()) * eps.len() as u64) >> 32) as usize;
        w.lookup(true, format_args!("numgen vmap element {pick}"));
        let ep = &eps[pick];
        w.rule(format_args!("{}: ip saddr {} jump mark-for-masquerade", ep.chain, ep.ip));
        let hairpin = t.src == ep.ip;
        if hairpin {
            w.mark();
        }
        let sp = &self.ports[i];
        let proto = sp.protocol.lower();
        w.rule(format_args!("{}: meta l4proto {proto} dnat to {}:{}", ep.chain, ep.ip, ep.port));
        w.done(Verdict::Dnat {
            service: sp.service,
            port: sp.port,
            endpoint: ep.endpoint,
            masq: masq || hairpin,
        })
    }

    /// `nft list table ip kube-proxy`: nft's `table_print` (sets and maps, then chains, each in
    /// the kernel's creation order, blank lines between them), `set_print` (`elements = { ... }`
    /// one element per line for maps and concatenations, two addresses per line for an
    /// ipv4_addr set: `calculate_delim` in `src/expression.c`) and `chain_print`
    /// (`prio2str`: `dstnat - 10`, but `-110` on input/forward hooks where dstnat is not a
    /// standard priority). Chain creation follows `setupNFTables` then, per Service port, the
    /// endpoint chains, `service-`, `local-` and `external-`. Elements are printed sorted by key.
    pub fn list(&self) -> String {
        let mut out = String::from("table ip kube-proxy {\n\tcomment \"rules for kube-proxy\"\n");
        let mut blocks: Vec<String> = self.sets();
        blocks.extend(
            self.chains().into_iter().map(|(name, decl, rules)| chain_text(&name, decl.as_deref(), &rules)),
        );
        out.push_str(&blocks.join("\n"));
        out.push_str("}\n");
        out
    }

    /// The sets and maps in `setupNFTables` order, printed.
    fn sets(&self) -> Vec<String> {
        let concat = "ipv4_addr . inet_proto . inet_service : verdict";
        let np = "inet_proto . inet_service : verdict";
        let ips: Vec<String> = self.cluster_ips.iter().map(|ip| ip.to_string()).collect();
        let mut svc: Vec<_> = self.service_ips.iter().collect();
        svc.sort();
        let svc = svc.iter().map(|(&(ip, port, l4), &i)| {
            format!("{ip} . {} . {port} : goto {}", l4.name(), self.ports[i].service_chain())
        });
        let mut nps: Vec<_> = self.service_nodeports.iter().collect();
        nps.sort();
        let nps = nps.iter().map(|((port, l4), &i)| {
            format!("{} . {port} : goto {}", l4.name(), self.ports[i].external_chain())
        });
        let mut noep: Vec<_> = self.no_endpoint_services.iter().collect();
        noep.sort();
        let noep = noep
            .iter()
            .map(|((ip, port, l4), v)| format!("{ip} . {} . {port}{}", l4.name(), self.noep_value(**v)));
        let mut nonp: Vec<_> = self.no_endpoint_nodeports.iter().collect();
        nonp.sort();
        let nonp =
            nonp.iter().map(|((port, l4), v)| format!("{} . {port}{}", l4.name(), self.noep_value(**v)));
        vec![
            set_text("set", "cluster-ips", "ipv4_addr", "Active ClusterIPs", &ips, false),
            set_text(
                "map",
                "no-endpoint-services",
                concat,
                "vmap to drop or reject packets to services with no endpoints",
                &noep.collect::<Vec<_>>(),
                true,
            ),
            set_text(
                "map",
                "no-endpoint-nodeports",
                np,
                "vmap to drop or reject packets to service nodeports with no endpoints",
                &nonp.collect::<Vec<_>>(),
                true,
            ),
            set_text(
                "map",
                "firewall-ips",
                concat,
                "destinations that are subject to LoadBalancerSourceRanges",
                &[],
                true,
            ),
            set_text(
                "map",
                "service-ips",
                concat,
                "ClusterIP, ExternalIP and LoadBalancer IP traffic",
                &svc.collect::<Vec<_>>(),
                true,
            ),
            set_text("map", "service-nodeports", np, "NodePort traffic", &nps.collect::<Vec<_>>(), true),
        ]
    }

    /// ` comment "ns/name" : goto reject-chain` or `... : drop`.
    fn noep_value(&self, (i, v): (usize, NoEndpoints)) -> String {
        let verdict = if v == NoEndpoints::Reject { "goto reject-chain" } else { "drop" };
        format!(" comment \"{}\" : {verdict}", self.ports[i].port_name)
    }

    /// Every chain in creation order: (name, base-chain declaration, rules).
    fn chains(&self) -> Vec<(String, Option<String>, Vec<String>)> {
        let mut chains = base_chains();
        let masq_mark = "0x00004000";
        let fixed: [(&str, Vec<String>); 8] = [
            ("nodeport-endpoints-check", vec![NODEPORT_CHECK_RULE.into()]),
            ("service-endpoints-check", vec![SERVICE_CHECK_RULE.into()]),
            ("firewall-check", vec!["ip daddr . meta l4proto . th dport vmap @firewall-ips".into()]),
            (
                "services",
                vec!["ip daddr . meta l4proto . th dport vmap @service-ips".into(), NODEPORTS_RULE.into()],
            ),
            (
                "masquerading",
                vec![
                    format!("meta mark & {masq_mark} == 0x00000000 return"),
                    format!("meta mark set meta mark ^ {masq_mark}"),
                    "masquerade fully-random".into(),
                ],
            ),
            ("cluster-ips-check", vec![CLUSTER_IPS_RULE.into()]),
            ("mark-for-masquerade", vec![format!("meta mark set meta mark | {masq_mark}")]),
            ("reject-chain", vec!["reject".into()]),
        ];
        for (name, rules) in fixed {
            let decl = (name == "reject-chain")
                .then(|| "comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\"".to_string());
            chains.push((name.to_string(), decl.map(|c| format!("#{c}")), rules));
        }
        for sp in &self.ports {
            self.port_chains(sp, &mut chains);
        }
        chains
    }

    /// The chains of one Service port, in `syncProxyRules`' `ensureChain` order.
    fn port_chains(&self, sp: &SvcPort, chains: &mut Vec<(String, Option<String>, Vec<String>)>) {
        if !sp.has_endpoints() {
            return;
        }
        for ep in &sp.cluster_eps {
            let rules = vec![
                format!("ip saddr {} jump mark-for-masquerade", ep.ip),
                format!("meta l4proto {} dnat to {}:{}", sp.protocol.lower(), ep.ip, ep.port),
            ];
            chains.push((ep.chain.clone(), None, rules));
        }
        let mut rules: Vec<String> =
            self.cluster_cidr.iter().map(|&c| masq_rule(sp, c).to_string()).collect();
        rules.push(numgen_rule(&sp.cluster_eps));
        chains.push((sp.service_chain().to_string(), None, rules));
        if sp.local_policy && !sp.local_eps.is_empty() {
            chains.push((sp.local_chain().to_string(), None, vec![numgen_rule(&sp.local_eps)]));
        }
        if sp.uses_external() {
            chains.push((sp.external_chain().to_string(), None, self.external_rules(sp)));
        }
    }

    /// The rules of `external-...`.
    fn external_rules(&self, sp: &SvcPort) -> Vec<String> {
        let svc = sp.service_chain();
        if !sp.local_policy {
            return vec!["jump mark-for-masquerade".into(), format!("goto {svc}")];
        }
        let mut rules = Vec::new();
        if let Some(cidr) = self.cluster_cidr {
            rules.push(format!("ip saddr {cidr} goto {svc} comment \"short-circuit pod traffic\""));
        }
        rules.push(
            "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"".into(),
        );
        rules.push(format!("fib saddr type local goto {svc} comment \"short-circuit local traffic\""));
        if sp.has_external_endpoints() {
            rules.push(format!("goto {}", sp.local_chain()));
        }
        rules
    }

    /// Rules in every chain.
    pub fn rules(&self) -> usize {
        self.rule_lines
    }

    /// Rules plus map and set elements.
    pub fn rule_count(&self) -> usize {
        self.rules() + self.map_elements()
    }

    /// Elements of the named sets and maps plus those of the anonymous `numgen` vmaps.
    pub fn map_elements(&self) -> usize {
        let anonymous: usize = self
            .ports
            .iter()
            .filter(|sp| sp.has_endpoints())
            .map(|sp| sp.cluster_eps.len() + if sp.local_policy { sp.local_eps.len() } else { 0 })
            .sum();
        self.cluster_ips.len()
            + self.service_ips.len()
            + self.service_nodeports.len()
            + self.no_endpoint_services.len()
            + self.no_endpoint_nodeports.len()
            + anonymous
    }

    /// Kernel memory estimate from the per-rule, per-element and per-chain estimates above.
    pub fn memory_bytes(&self) -> usize {
        self.chain_count * CHAIN_BYTES + self.rules() * RULE_BYTES + self.map_elements() * ELEM_BYTES
    }
}

/// The eight base chains of `nftablesBaseChains` with their jump rules (`nftablesJumpChains`).
fn base_chains() -> Vec<(String, Option<String>, Vec<String>)> {
    let base = |name: &str, kind: &str, hook: &str, prio: &str, rules: &[&str]| {
        let decl = format!("type {kind} hook {hook} priority {prio}; policy accept;");
        (name.to_string(), Some(decl), rules.iter().map(|r| r.to_string()).collect())
    };
    vec![
        base(
            "filter-prerouting",
            "filter",
            "prerouting",
            "dstnat - 10",
            &["ct state new jump firewall-check"],
        ),
        base(
            "filter-input",
            "filter",
            "input",
            "-110",
            &["ct state new jump nodeport-endpoints-check", "ct state new jump service-endpoints-check"],
        ),
        base(
            "filter-forward",
            "filter",
            "forward",
            "-110",
            &["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"],
        ),
        base(
            "filter-output",
            "filter",
            "output",
            "dstnat - 10",
            &["ct state new jump service-endpoints-check", "ct state new jump firewall-check"],
        ),
        base(
            "filter-output-post-dnat",
            "filter",
            "output",
            "dstnat + 10",
            &["ct state new jump cluster-ips-check"],
        ),
        base("nat-prerouting", "nat", "prerouting", "dstnat", &["jump services"]),
        base("nat-output", "nat", "output", "dstnat", &["jump services"]),
        base("nat-postrouting", "nat", "postrouting", "srcnat", &["jump masquerading"]),
    ]
}

/// The internal-traffic masquerade rule of a service chain (`localDetector.IfNotLocalNFT()`),
/// written out only when displayed.
fn masq_rule(sp: &SvcPort, cidr: Ipv4Net) -> MasqRule {
    MasqRule { ip: sp.cluster_ip, port: sp.port_num, protocol: sp.protocol, cidr }
}

struct MasqRule {
    ip: Ipv4Addr,
    port: u16,
    protocol: Protocol,
    cidr: Ipv4Net,
}

impl Display for MasqRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let MasqRule { ip, port, protocol, cidr } = self;
        let p = protocol.lower();
        write!(f, "ip daddr {ip} {p} dport {port} ip saddr != {cidr} jump mark-for-masquerade")
    }
}

/// `numgen random mod N vmap { 0 : goto endpoint-..., ... }` (`writeServiceToEndpointRules`).
fn numgen_rule(eps: &[Ep]) -> String {
    let elems: Vec<String> = eps.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", e.chain)).collect();
    format!("numgen random mod {} vmap {{ {} }}", eps.len(), elems.join(", "))
}

/// `hashAndTruncate`: the first 8 characters of base32(sha256(name)), a dash, the name.
pub fn hash_and_truncate(name: &str) -> String {
    let hash = Sha256::digest(name.as_bytes());
    format!("{}-{name}", &BASE32.encode(&hash)[..8])
}

/// One set or map as `set_print` prints it.
fn set_text(kind: &str, name: &str, ty: &str, comment: &str, elems: &[String], one_per_line: bool) -> String {
    let mut s = format!("\t{kind} {name} {{\n\t\ttype {ty}\n\t\tcomment \"{comment}\"\n");
    if !elems.is_empty() {
        s.push_str("\t\telements = { ");
        for (i, e) in elems.iter().enumerate() {
            if i > 0 {
                s.push_str(if one_per_line || i % 2 == 0 { ",\n\t\t\t     " } else { ", " });
            }
            s.push_str(e);
        }
        s.push_str(" }\n");
    }
    s.push_str("\t}\n");
    s
}

/// One chain as `chain_print` prints it. `decl` is a base-chain declaration, or a comment
/// (prefixed `#`) printed on its own line after the brace.
fn chain_text(name: &str, decl: Option<&str>, rules: &[String]) -> String {
    let mut s = format!("\tchain {name} {{");
    match decl {
        Some(c) if c.starts_with('#') => {
            let _ = write!(s, "\n\t\t{}\n", &c[1..]);
        }
        Some(d) => {
            let _ = write!(s, "\n\t\t{d}\n");
        }
        None => s.push('\n'),
    }
    for r in rules {
        let _ = writeln!(s, "\t\t{r}");
    }
    s.push_str("\t}\n");
    s
}

/// Rules and lookups counted along a walk. The words are built only for a trace: `rule` and
/// `note` take `format_args!` (or a literal) and render it in `note` when `trace` is set, so a
/// lookup without a trace formats nothing.
struct Walk {
    rules: u32,
    lookups: u32,
    walk: Vec<String>,
    trace: bool,
}

impl Walk {
    fn rule(&mut self, text: impl Display) {
        self.rules += 1;
        self.note(text);
    }
    fn lookup(&mut self, hit: bool, what: impl Display) {
        self.lookups += 1;
        self.note(format_args!("  lookup {what}: {}", if hit { "hit" } else { "miss" }));
    }
    /// The one rule of `mark-for-masquerade`.
    fn mark(&mut self) {
        self.rule("mark-for-masquerade: meta mark set meta mark | 0x00004000");
    }
    fn note(&mut self, text: impl Display) {
        if self.trace {
            self.walk.push(text.to_string());
        }
    }
    /// The filter-chain path to a no-endpoint verdict: the base chain's `ct state new jump`,
    /// the check chain's vmap (one lookup), and `reject-chain`'s rule when it rejects.
    fn filter_reject(
        mut self,
        base: &str,
        check: &str,
        v: NoEndpoints,
        service: usize,
        port: usize,
    ) -> Lookup {
        self.rule(format_args!("{base}: ct state new jump {check}"));
        let map = if check == "nodeport-endpoints-check" {
            "no-endpoint-nodeports"
        } else {
            "no-endpoint-services"
        };
        self.rule(format_args!("{check}: ... vmap @{map}"));
        self.lookup(true, map);
        match v {
            NoEndpoints::Reject => {
                self.rule("reject-chain: reject");
                self.done(Verdict::Reject { service, port })
            }
            NoEndpoints::Drop => {
                self.note("verdict drop");
                self.done(Verdict::Drop { service, port })
            }
        }
    }
    fn done(self, verdict: Verdict) -> Lookup {
        Lookup { verdict, rules: self.rules, lookups: self.lookups, walk: self.walk }
    }
}

#[cfg(test)]
mod tests;
