//! Felix's filter table (iptables dataplane) on one node: the static chains, a dispatch tree
//! per direction keyed on workload interface names, a `cali-fw-`/`cali-tw-` chain per local
//! endpoint, a `cali-pi-`/`cali-po-` chain per NetworkPolicy, the namespace and service-account
//! profiles, and an ipset per selector.
//!
//! Sources (projectcalico/calico, master of 2026-08):
//! - `felix/rules/static.go`: `StaticFilterForwardChains` (cali-FORWARD: clear the mark bits
//!   but accept, host-endpoint dispatch, `-i cali+ -j cali-from-wl-dispatch`, `-o cali+ -j
//!   cali-to-wl-dispatch`, to-host-endpoint, cali-cidr-block), `StaticFilterForwardAppendRules`
//!   (FORWARD ends with "Policy explicitly accepted packet." and a set of the accept bit),
//!   `filterWorkloadToHostChain` (cali-wl-to-host: the from-workload dispatch, then
//!   `DefaultEndpointToHostAction`, ACCEPT in Calico's manifests), `filterOutputChain` ("We
//!   don't currently police host -> endpoint according to the endpoint's ingress policy": `-o
//!   cali+ -j RETURN`, so the OUTPUT hook is not walked here).
//! - `felix/rules/dispatch.go`: `buildSingleDispatchChainTree` (names sorted, split by the
//!   character after their common prefix; a bin of one name is a rule in the root chain, a bin
//!   of several a `-g` to a child chain that repeats the end rule "Unknown interface" DROP).
//! - `felix/rules/endpoints.go`: `endpointIptablesChain` (conntrack rules: RELATED,ESTABLISHED
//!   ACCEPT, INVALID DROP; clear accept and pass; from a workload, DROP of VXLAN (UDP 4789) and
//!   IPIP packets, `AllowVXLANPacketsFromWorkloads`/`AllowIPIPPacketsFromWorkloads` false by
//!   default; "Start of tier default"; per policy a jump unless pass is set and "Return if
//!   policy accepted"; "End of tier default. DROP if no policies passed packet"; per profile a
//!   jump and "Return if profile accepted"; "DROP if no profiles matched"). Policy groups
//!   (several policies with one selector sharing a `cali-gi-` chain) are not built: each policy
//!   is jumped to from the endpoint chain, as Felix does for groups of one.
//! - `felix/rules/policy.go`: `ProtoRuleToIptablesRules` and `CombineMatchAndActionsForProtoRule`
//!   (an allow rule is `<match> -j MARK --set-xmark accept` then `-m mark --mark accept -j
//!   RETURN`; trailing RETURN rules of a chain are stripped; an ipBlock's excepts become a
//!   negated match block on scratch mark 0), `PolicyChainName` / `hash.GetLengthLimitedID`
//!   (the name if it fits 28 characters, else `_` and base64url(sha256(id)) truncated).
//! - `libcalico-go/lib/backend/k8s/conversion/conversion.go`: `k8sRuleToCalico` (one Calico
//!   rule per (protocol, peer), protocols sorted, the rule's ports merged; no ports: no
//!   protocol match), `NamespaceToProfile` (profile `kns.<ns>` allows both ways; `ksa.<ns>.<sa>`
//!   carries labels only).
//! - Marks (`felix/config`, `IptablesMarkMask` 0xffff0000): accept 0x10000, pass 0x20000,
//!   scratch0 0x40000, scratch1 0x80000.
//!
//! Departures: ipset names hash cnisim's rendering of the selector, not Felix's canonical
//! selector string; rules carry no `cali:<hash>` comments; a rule with more than 15 ports is
//! not split into multiport blocks; policies are ordered by name (k8s NetworkPolicies all have
//! order 1000 in tier default, Felix then sorts by name).

use std::fmt::Write as _;

use data_encoding::BASE64URL_NOPAD;
use sha2::{Digest, Sha224, Sha256};

use crate::addr::Ipv4Net;
use crate::net::filter::{CtStates, Dir, FilterTable, Iface, Match, Rule, SetId, Target, FORWARD, INPUT};
use crate::policy::{IpBlock, LabelSelector, NetworkPolicy, Peer, PodRef, PolicyType, PolicyWorld, Protocol};

const MARK_ACCEPT: u32 = 0x10000;
const MARK_PASS: u32 = 0x20000;
const MARK_SCRATCH0: u32 = 0x40000;
const MARK_SCRATCH1: u32 = 0x80000;
/// iptables' chain-name limit as Felix applies it (`felix/iptables/table.go`
/// `MaxChainNameLength = 28`).
const MAX_CHAIN_NAME: usize = 28;
/// ipset's name limit (`IPSET_MAXNAMELEN` 32 with the NUL: 31 characters).
const MAX_SET_NAME: usize = 31;
/// Felix's `VXLANPort` default.
const VXLAN_PORT: u16 = 4789;
/// The workload interface prefix (`InterfacePrefix` default "cali").
pub const IFACE_PREFIX: &str = "cali";

/// A pod as Felix knows it: its policy identity and its host-side interface.
#[derive(Clone, Copy, Debug)]
pub struct Workload<'a> {
    pub pod: PodRef<'a>,
    pub iface: &'a str,
}

/// Calico's host-side veth name for a pod: `cali` + the first 11 hex digits of
/// sha1("<namespace>.<pod>") (libcalico-go `conversion.VethNameForWorkload`).
pub fn veth_name(namespace: &str, pod: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{namespace}.{pod}")).digest().to_string();
    format!("{IFACE_PREFIX}{}", &digest[..11])
}

/// `hash.GetLengthLimitedID(prefix, suffix, 28)`.
fn limited_id(prefix: &str, suffix: &str) -> String {
    let suffix = if suffix.is_empty() { "_" } else { suffix };
    let total = prefix.len() + suffix.len();
    if total > MAX_CHAIN_NAME || (total == MAX_CHAIN_NAME && suffix.starts_with('_')) {
        let hash = BASE64URL_NOPAD.encode(&Sha256::digest(suffix.as_bytes()));
        return format!("{prefix}_{}", &hash[..MAX_CHAIN_NAME - 1 - prefix.len()]);
    }
    format!("{prefix}{suffix}")
}

/// The ipset name Felix gives a selector's set: `cali40` + `s:` + base64url(sha224) (ipsets
/// `NameForMainIPSet`, `hash.MakeUniqueID("s", selector)`), truncated to 31 characters.
fn set_name(selector: &str) -> String {
    let hash = BASE64URL_NOPAD.encode(&Sha224::digest(format!("s:{selector}").as_bytes()));
    let mut name = format!("cali40s:{hash}");
    name.truncate(MAX_SET_NAME);
    name
}

fn selector_text(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s.match_labels.iter().map(|(k, v)| format!("{k} == '{v}'")).collect();
    for r in &s.match_expressions {
        let vals = r.values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
        parts.push(match r.operator {
            crate::policy::Operator::In => format!("{} in {{ {vals} }}", r.key),
            crate::policy::Operator::NotIn => format!("{} not in {{ {vals} }}", r.key),
            crate::policy::Operator::Exists => format!("has({})", r.key),
            crate::policy::Operator::DoesNotExist => format!("! has({})", r.key),
        });
    }
    if parts.is_empty() {
        "all()".into()
    } else {
        parts.join(" && ")
    }
}

/// Inclusive destination-port ranges.
type Ports = Vec<(u16, u16)>;

/// One Calico rule of a converted policy: protocol, the peer, destination ports.
struct CalicoRule<'p> {
    protocol: Option<Protocol>,
    peer: Option<&'p Peer>,
    /// Inclusive ranges, merged; empty: every port.
    ports: Vec<(u16, u16)>,
}

/// `k8sRuleToCalico`: protocols (sorted by name) outer, peers inner.
fn convert(rule: &crate::policy::Rule) -> Vec<CalicoRule<'_>> {
    // protocol -> None (every port of it) or the ranges.
    let mut by_proto: Vec<(Option<Protocol>, Option<Ports>)> = Vec::new();
    for p in &rule.ports {
        let range = p.port.map(|lo| (lo, p.end_port.unwrap_or(lo)));
        match by_proto.iter_mut().find(|(pr, _)| *pr == Some(p.protocol)) {
            Some((_, ports)) => match (ports.as_mut(), range) {
                (Some(list), Some(r)) => list.push(r),
                (_, None) => *ports = None,
                (None, Some(_)) => {}
            },
            None => by_proto.push((Some(p.protocol), range.map(|r| vec![r]))),
        }
    }
    if by_proto.is_empty() {
        by_proto.push((None, None));
    }
    by_proto.sort_by_key(|(p, _)| p.map(|p| p.id()));
    let peers: Vec<Option<&Peer>> =
        if rule.peers.is_empty() { vec![None] } else { rule.peers.iter().map(Some).collect() };
    let mut out = Vec::new();
    for (protocol, ports) in by_proto {
        let ports = simplify(ports.unwrap_or_default());
        for &peer in &peers {
            out.push(CalicoRule { protocol, peer, ports: ports.clone() });
        }
    }
    out
}

/// `SimplifyPorts`: sorted, overlapping and adjacent ranges merged.
fn simplify(mut ports: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ports.sort();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in ports {
        match out.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Builds Felix's filter table for `node` from the policies and every workload of the
/// cluster (the local ones get endpoint chains; all of them are ipset members).
pub fn filter_table(world: &PolicyWorld, workloads: &[Workload], node: usize) -> FilterTable {
    let mut t = FilterTable::new();
    let local: Vec<&Workload> = {
        let mut l: Vec<&Workload> = workloads.iter().filter(|w| w.pod.node == node).collect();
        l.sort_by(|a, b| a.iface.cmp(b.iface));
        l.dedup_by(|a, b| a.iface == b.iface);
        l
    };
    let cali = || Iface::parse(&format!("{IFACE_PREFIX}+"));
    let set_mark = |value, mask| Target::SetMark { value, mask };
    let mark_set = |bit: u32| Match::Mark { value: bit, mask: bit, invert: false };
    let mark_clear = |bit: u32| Match::Mark { value: 0, mask: bit, invert: false };
    let comment = |s: &str| Match::Comment(s.to_string());

    // Static chains.
    let cali_input = t.chain("cali-INPUT");
    let cali_forward = t.chain("cali-FORWARD");
    let from_hep = t.chain("cali-from-hep-forward");
    let from_wl = t.chain("cali-from-wl-dispatch");
    let to_wl = t.chain("cali-to-wl-dispatch");
    let to_hep = t.chain("cali-to-hep-forward");
    let cidr_block = t.chain("cali-cidr-block");
    let wl_to_host = t.chain("cali-wl-to-host");
    t.append(INPUT, Rule::new(vec![], Target::Jump(cali_input)));
    t.append(
        cali_input,
        Rule::new(vec![Match::In { iface: cali(), invert: false }], Target::Goto(wl_to_host)),
    );
    t.append(wl_to_host, Rule::new(vec![], Target::Jump(from_wl)));
    t.append(wl_to_host, Rule::new(vec![comment("Configured DefaultEndpointToHostAction")], Target::Accept));
    t.append(FORWARD, Rule::new(vec![], Target::Jump(cali_forward)));
    t.append(
        FORWARD,
        Rule::new(vec![comment("Policy explicitly accepted packet."), mark_set(MARK_ACCEPT)], Target::Accept),
    );
    t.append(FORWARD, Rule::new(vec![], set_mark(MARK_ACCEPT, MARK_ACCEPT)));
    let all_but_accept = (MARK_ACCEPT | MARK_PASS | MARK_SCRATCH0 | MARK_SCRATCH1) & !MARK_ACCEPT;
    t.append(cali_forward, Rule::new(vec![], set_mark(0, all_but_accept)));
    t.append(cali_forward, Rule::new(vec![mark_clear(MARK_ACCEPT)], Target::Jump(from_hep)));
    t.append(
        cali_forward,
        Rule::new(vec![Match::In { iface: cali(), invert: false }], Target::Jump(from_wl)),
    );
    t.append(cali_forward, Rule::new(vec![Match::Out { iface: cali(), invert: false }], Target::Jump(to_wl)));
    t.append(cali_forward, Rule::new(vec![], Target::Jump(to_hep)));
    t.append(cali_forward, Rule::new(vec![], Target::Jump(cidr_block)));

    // Policy chains, built on first use; profiles.
    let policy_chain = |t: &mut FilterTable, pi: usize, ty: PolicyType| -> usize {
        let p = &world.policies[pi];
        let (prefix, dir) = match ty {
            PolicyType::Ingress => ("cali-pi-", "ingress"),
            PolicyType::Egress => ("cali-po-", "egress"),
        };
        let name = limited_id(prefix, &format!("knp/{}/{}", p.namespace, p.name));
        if let Some(id) = t.find(&name) {
            return id;
        }
        let id = t.chain(&name);
        let rules = policy_rules(t, world, workloads, p, ty);
        let chain_comment = format!("KubernetesNetworkPolicy {}/{} {dir}", p.namespace, p.name);
        let mut rules = if rules.is_empty() { vec![Rule::new(vec![], Target::Nothing)] } else { rules };
        rules[0].matches.insert(0, Match::Comment(chain_comment));
        t.chains[id].rules = rules;
        id
    };

    let mut from_names = Vec::new();
    for w in &local {
        let ns = w.pod.namespace;
        for ty in [PolicyType::Egress, PolicyType::Ingress] {
            let (prefix, profile_prefix, dir) = match ty {
                PolicyType::Egress => ("cali-fw-", "cali-pro-", "egress"),
                PolicyType::Ingress => ("cali-tw-", "cali-pri-", "ingress"),
            };
            let selecting: Vec<usize> = {
                let mut v: Vec<usize> = world
                    .policies
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.has(ty) && selects(p, &w.pod))
                    .map(|(i, _)| i)
                    .collect();
                v.sort_by(|&a, &b| {
                    let (a, b) = (&world.policies[a], &world.policies[b]);
                    (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
                });
                v
            };
            let mut rules = vec![
                Rule::new(vec![Match::Ct(CtStates::RELATED_ESTABLISHED)], Target::Accept),
                Rule::new(vec![Match::Ct(CtStates::INVALID)], Target::Drop),
                Rule::new(vec![], set_mark(0, MARK_ACCEPT | MARK_PASS)),
            ];
            if ty == PolicyType::Egress {
                rules.push(Rule::new(
                    vec![
                        Match::Proto(17),
                        Match::Dports(vec![(VXLAN_PORT, VXLAN_PORT)]),
                        comment("DROP VXLAN encapped packets originating in workloads"),
                    ],
                    Target::Drop,
                ));
                rules.push(Rule::new(
                    vec![Match::Proto(4), comment("DROP IPinIP encapped packets originating in workloads")],
                    Target::Drop,
                ));
            }
            if !selecting.is_empty() {
                rules.push(Rule::new(vec![comment("Start of tier default")], set_mark(0, MARK_PASS)));
                for &pi in &selecting {
                    let chain = policy_chain(&mut t, pi, ty);
                    rules.push(Rule::new(vec![mark_clear(MARK_PASS)], Target::Jump(chain)));
                    rules.push(Rule::new(
                        vec![comment("Return if policy accepted"), mark_set(MARK_ACCEPT)],
                        Target::Return,
                    ));
                }
                rules.push(Rule::new(
                    vec![
                        comment("End of tier default. DROP if no policies passed packet"),
                        mark_clear(MARK_PASS),
                    ],
                    Target::Drop,
                ));
            }
            for profile in [format!("kns.{ns}"), format!("ksa.{ns}.default")] {
                let name = limited_id(profile_prefix, &profile);
                let chain = match t.find(&name) {
                    Some(c) => c,
                    None => {
                        let c = t.chain(&name);
                        let text = format!("Profile {profile} {dir}");
                        // kns profiles allow everything (the allow rule's RETURN is stripped as
                        // the chain's last); ksa profiles have no rules.
                        let target = if profile.starts_with("kns.") {
                            set_mark(MARK_ACCEPT, MARK_ACCEPT)
                        } else {
                            Target::Nothing
                        };
                        t.append(c, Rule::new(vec![Match::Comment(text)], target));
                        c
                    }
                };
                rules.push(Rule::new(vec![], Target::Jump(chain)));
                rules.push(Rule::new(
                    vec![comment("Return if profile accepted"), mark_set(MARK_ACCEPT)],
                    Target::Return,
                ));
            }
            rules.push(Rule::new(vec![comment("DROP if no profiles matched")], Target::Drop));
            let chain = t.chain(&limited_id(prefix, w.iface));
            t.chains[chain].rules = rules;
            if ty == PolicyType::Egress {
                from_names.push((w.iface, chain));
            }
        }
    }
    let to_names: Vec<(&str, usize)> = local
        .iter()
        .map(|w| (w.iface, t.find(&limited_id("cali-tw-", w.iface)).expect("built above")))
        .collect();
    dispatch(&mut t, from_wl, "cali-from-wl-dispatch", &from_names, true);
    dispatch(&mut t, to_wl, "cali-to-wl-dispatch", &to_names, false);
    t
}

/// `buildSingleDispatchChainTree`.
fn dispatch(t: &mut FilterTable, root: usize, root_name: &str, names: &[(&str, usize)], incoming: bool) {
    let iface_match = |iface: Iface| {
        if incoming {
            Match::In { iface, invert: false }
        } else {
            Match::Out { iface, invert: false }
        }
    };
    let end = || Rule::new(vec![Match::Comment("Unknown interface".into())], Target::Drop);
    let common = common_prefix(names.iter().map(|(n, _)| *n));
    let mut bins: Vec<(String, Vec<(&str, usize)>)> = Vec::new();
    for &(name, chain) in names {
        let prefix =
            if name.len() > common.len() { name[..common.len() + 1].to_string() } else { common.clone() };
        match bins.last_mut() {
            Some((p, v)) if *p == prefix => v.push((name, chain)),
            _ => bins.push((prefix, vec![(name, chain)])),
        }
    }
    for (prefix, members) in bins {
        if members.len() == 1 {
            let (name, chain) = members[0];
            t.append(root, Rule::new(vec![iface_match(Iface::Exact(name.into()))], Target::Goto(chain)));
            continue;
        }
        let child = t.chain(&format!("{root_name}-{}", &prefix[common.len()..]));
        t.append(root, Rule::new(vec![iface_match(Iface::Prefix(prefix.clone()))], Target::Goto(child)));
        for (name, chain) in members {
            t.append(child, Rule::new(vec![iface_match(Iface::Exact(name.into()))], Target::Goto(chain)));
        }
        t.append(child, end());
    }
    t.append(root, end());
}

fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = names.next() else { return String::new() };
    let mut len = first.len();
    for n in names {
        len = first.bytes().zip(n.bytes()).take(len).take_while(|(a, b)| a == b).count();
    }
    first[..len].to_string()
}

/// Whether policy `p` selects pod `pod` (its namespace, its pod selector).
fn selects(p: &NetworkPolicy, pod: &PodRef) -> bool {
    p.namespace == pod.namespace && p.pod_selector.matches(pod.labels)
}

/// The pods a peer selects, relative to the policy's namespace.
fn peer_selects(world: &PolicyWorld, p: &NetworkPolicy, peer: &Peer, pod: &PodRef) -> bool {
    match peer {
        Peer::Pods { pods, namespaces } => {
            let ns_ok = match namespaces {
                None => pod.namespace == p.namespace,
                Some(sel) => world.namespace(pod.namespace).is_some_and(|n| sel.matches(&n.labels)),
            };
            ns_ok && pods.as_ref().is_none_or(|s| s.matches(pod.labels))
        }
        Peer::IpBlock(_) => false,
    }
}

/// The iptables rules of one direction of policy `p`.
fn policy_rules(
    t: &mut FilterTable,
    world: &PolicyWorld,
    workloads: &[Workload],
    p: &NetworkPolicy,
    ty: PolicyType,
) -> Vec<Rule> {
    let (k8s_rules, dir) = match ty {
        PolicyType::Ingress => (&p.ingress, Dir::Src),
        PolicyType::Egress => (&p.egress, Dir::Dst),
    };
    let mut out = Vec::new();
    for r in k8s_rules {
        for cr in convert(r) {
            let mut matches = Vec::new();
            let mut block = Vec::new();
            if let Some(proto) = cr.protocol {
                matches.push(Match::Proto(proto.number()));
            }
            match cr.peer {
                None => {}
                Some(peer @ Peer::Pods { pods, namespaces }) => {
                    let text = peer_text(p, pods.as_ref(), namespaces.as_ref());
                    let set: SetId = t.set(&set_name(&text), || {
                        workloads
                            .iter()
                            .filter(|w| peer_selects(world, p, peer, &w.pod))
                            .filter_map(|w| Ipv4Net::new(w.pod.ip, 32))
                            .collect()
                    });
                    matches.push(Match::Set { set, dir, invert: false });
                }
                Some(Peer::IpBlock(IpBlock { cidr, except })) => {
                    // `filterNets`: a catch-all CIDR is no match at all.
                    if cidr.prefix() != 0 {
                        matches.push(Match::Net { dir, net: *cidr, invert: false });
                    }
                    if !except.is_empty() {
                        // AppendNegatedCIDRMatchBlock: scratch0 set, cleared by any except.
                        block.push(Rule::new(
                            vec![],
                            Target::SetMark { value: MARK_SCRATCH0, mask: MARK_SCRATCH0 | MARK_SCRATCH1 },
                        ));
                        for e in except {
                            block.push(Rule::new(
                                vec![Match::Net { dir, net: *e, invert: false }],
                                Target::SetMark { value: 0, mask: MARK_SCRATCH0 },
                            ));
                        }
                        matches.push(Match::Mark {
                            value: MARK_SCRATCH0,
                            mask: MARK_SCRATCH0,
                            invert: false,
                        });
                    }
                }
            }
            if !cr.ports.is_empty() {
                matches.push(Match::Dports(cr.ports));
            }
            out.extend(block);
            out.push(Rule::new(matches, Target::SetMark { value: MARK_ACCEPT, mask: MARK_ACCEPT }));
            out.push(Rule::new(
                vec![Match::Mark { value: MARK_ACCEPT, mask: MARK_ACCEPT, invert: false }],
                Target::Return,
            ));
        }
    }
    while out.last().is_some_and(|r| r.target == Target::Return) {
        out.pop();
    }
    out
}

fn peer_text(p: &NetworkPolicy, pods: Option<&LabelSelector>, namespaces: Option<&LabelSelector>) -> String {
    let mut s = String::from("projectcalico.org/orchestrator == 'k8s'");
    match namespaces {
        None => {
            let _ = write!(s, " && projectcalico.org/namespace == '{}'", p.namespace);
        }
        Some(n) => {
            let _ = write!(s, " && ns({})", selector_text(n));
        }
    }
    if let Some(pods) = pods {
        let _ = write!(s, " && ({})", selector_text(pods));
    }
    s
}

#[cfg(test)]
mod tests;
