//! weave-npc's filter table and ipsets (Weave Net 2.8, weaveworks/weave master of 2023-01):
//! the same on every node, since weave-npc puts every pod of the cluster in its sets and its
//! rules name sets, not interfaces.
//!
//! Sources:
//! - `net/bridge.go` `ConfigureIPTables` (the weave router, with NPC on): at the top of FORWARD
//!   `-i weave -j WEAVE-NPC-EGRESS`, `-o weave -j WEAVE-NPC`, `-o weave -m state --state NEW
//!   -j NFLOG --nflog-group 86`, `-o weave -j DROP`, `-i weave ! -o weave -j ACCEPT`, `-o weave
//!   -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`; `-A INPUT -i weave -j
//!   WEAVE-NPC-EGRESS`. The bridge port to the router is `vethwe-bridge`.
//! - `prog/weave-npc/main.go` `createBaseRules`: WEAVE-NPC (established accepted; multicast
//!   accepted, `--allow-mcast` being on by default; a frame bridged out to the router port is
//!   accepted, ingress being enforced on the destination's node; NEW to WEAVE-NPC-DEFAULT and
//!   WEAVE-NPC-INGRESS), WEAVE-NPC-EGRESS-ACCEPT (sets mark 0x40000), WEAVE-NPC-EGRESS
//!   (established accepted; frames bridged in from the router port, to a local address and to
//!   multicast return; NEW to WEAVE-NPC-EGRESS-DEFAULT, then, unmarked, to
//!   WEAVE-NPC-EGRESS-CUSTOM).
//! - `npc/controller.go` `AddNetworkPolicy`: the first policy with Egress in its types (or
//!   egress rules) appends `NFLOG` and `-m mark ! --mark 0x40000/0x40000 -j DROP` to
//!   WEAVE-NPC-EGRESS.
//! - `npc/namespace.go`: per namespace a `hash:ip` set of all its pods and an
//!   ingress/egress default-allow set of the pods no policy of that direction selects, whose
//!   bypass rules go in WEAVE-NPC-DEFAULT (`-j ACCEPT`) and WEAVE-NPC-EGRESS-DEFAULT (`-j
//!   WEAVE-NPC-EGRESS-ACCEPT`, `-j RETURN`) when the namespace is added.
//! - `npc/analyser.go`, `npc/rule.go`, `npc/selector.go`, `npc/ipblock.go`: one rule per
//!   (peer, port) of each policy rule, ingress rules `-j ACCEPT` in WEAVE-NPC-INGRESS, egress
//!   rules a `-j WEAVE-NPC-EGRESS-ACCEPT` and `-j RETURN` pair in WEAVE-NPC-EGRESS-CUSTOM; a
//!   rule identical to one already provisioned (same text) is not added twice. A podSelector
//!   peer is a `hash:ip` set of the policy's namespace, a namespaceSelector peer a `list:set`
//!   of the selected namespaces' pod sets, both together a `hash:ip` set, an ipBlock `-s`/`-d`
//!   CIDR with a `hash:net` set of its excepts negated. Set names are `weave-` + `shortName`
//!   (SHA-1 in base 85) of the namespace and the selector's string.
//!
//! What weave-npc does that the API does not say (the oracle's [`Semantics::WEAVE_NPC`]):
//! `endPort` is not read (`npc/analyser.go` `port()` takes `Port` only), so a range allows its
//! first port only; and a pod's traffic to its own node's addresses skips egress policy
//! (`--dst-type LOCAL -j RETURN`).
//!
//! Departures: rules are provisioned in policy order (weave-npc iterates Go maps, so its order
//! differs from run to run; verdicts do not depend on it, the rules a walk tests do); the
//! control-port INPUT rule of the router (`127.0.0.1:6784`) is not built; ipset entries carry
//! no comments.
//!
//! [`Semantics::WEAVE_NPC`]: crate::policy::Semantics::WEAVE_NPC

use std::collections::BTreeMap;

use sha1_smol::Sha1;

use crate::addr::Ipv4Net;
use crate::net::filter::{
    CtStates, Dir, FilterTable, Iface, Match, Rule, SetId, SetType, Target, FORWARD, INPUT,
};
use crate::policy::{IpBlock, LabelSelector, NetworkPolicy, Operator, Peer, PodRef, PolicyType, PolicyWorld};

/// The bridge weave-npc guards.
const BRIDGE: &str = "weave";
/// `npc.EgressMark`.
const EGRESS_MARK: u32 = 0x40000;
/// The NFLOG group weave-npc logs blocked connections to (read by its ulogd).
const NFLOG_GROUP: u16 = 86;

/// `npc.ShortNameSymbols`.
const SHORT_NAME_SYMBOLS: &[u8; 85] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789(){}[]+=_$%^!*|/?.;:@#~";

/// `npc.shortName`: SHA-1 of `s` as a big number, written in base 85 least significant digit
/// first.
fn short_name(s: &str) -> String {
    let mut n = Sha1::from(s).digest().bytes();
    let mut out = String::new();
    while n.iter().any(|&b| b != 0) {
        // Long division of the 160-bit big-endian number by 85.
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 85) as u8;
            rem = cur % 85;
        }
        out.push(char::from(SHORT_NAME_SYMBOLS[rem as usize]));
    }
    out
}

fn set_name(key: &str) -> String {
    format!("weave-{}", short_name(key))
}

/// `metav1.LabelSelectorAsSelector(s).String()`: requirements sorted by key, `k=v`,
/// `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas; empty for the selector of
/// everything.
pub fn selector_string(s: &LabelSelector) -> String {
    let mut reqs: Vec<(&str, String)> =
        s.match_labels.iter().map(|(k, v)| (k.as_str(), format!("{k}={v}"))).collect();
    for r in &s.match_expressions {
        let mut values = r.values.clone();
        values.sort();
        let text = match r.operator {
            Operator::In => format!("{} in ({})", r.key, values.join(",")),
            Operator::NotIn => format!("{} notin ({})", r.key, values.join(",")),
            Operator::Exists => r.key.clone(),
            Operator::DoesNotExist => format!("!{}", r.key),
        };
        reqs.push((r.key.as_str(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(b.0));
    reqs.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(",")
}

/// The table weave-npc and the weave router program on a node. `bridge_port` is the bridge's
/// port to the router (`--bridge-port-name`, `vethwe-bridge`).
pub fn filter_table(world: &PolicyWorld, pods: &[PodRef], bridge_port: &str) -> FilterTable {
    let mut b = Builder { t: FilterTable::new(), world, pods, rules: BTreeMap::new() };
    let t = &mut b.t;
    // User chains in iptables-save's (alphabetical) order.
    let main = t.chain("WEAVE-NPC");
    let default = t.chain("WEAVE-NPC-DEFAULT");
    let egress = t.chain("WEAVE-NPC-EGRESS");
    let egress_accept = t.chain("WEAVE-NPC-EGRESS-ACCEPT");
    let custom = t.chain("WEAVE-NPC-EGRESS-CUSTOM");
    let egress_default = t.chain("WEAVE-NPC-EGRESS-DEFAULT");
    let ingress = t.chain("WEAVE-NPC-INGRESS");
    let weave = || Iface::Exact(BRIDGE.into());
    let comment = |s: &str| Match::Comment(s.into());
    let not_marked = || Match::Mark { value: EGRESS_MARK, mask: EGRESS_MARK, invert: true };
    let port = |i: bool, o: bool| Match::Physdev {
        phys_in: i.then(|| Iface::Exact(bridge_port.into())),
        phys_out: o.then(|| Iface::Exact(bridge_port.into())),
        is_bridged: true,
    };
    let before_kube = "NOTE: this must go before '-j KUBE-FORWARD'";

    t.append(INPUT, Rule::new(vec![Match::In { iface: weave(), invert: false }], Target::Jump(egress)));
    let forward = [
        Rule::new(
            vec![Match::In { iface: weave(), invert: false }, comment(before_kube)],
            Target::Jump(egress),
        ),
        Rule::new(
            vec![Match::Out { iface: weave(), invert: false }, comment(before_kube)],
            Target::Jump(main),
        ),
        Rule::new(
            vec![Match::Out { iface: weave(), invert: false }, Match::State(CtStates::NEW)],
            Target::Nflog(NFLOG_GROUP),
        ),
        Rule::new(vec![Match::Out { iface: weave(), invert: false }], Target::Drop),
        Rule::new(
            vec![Match::In { iface: weave(), invert: false }, Match::Out { iface: weave(), invert: true }],
            Target::Accept,
        ),
        Rule::new(
            vec![Match::Out { iface: weave(), invert: false }, Match::Ct(CtStates::RELATED_ESTABLISHED)],
            Target::Accept,
        ),
    ];
    for r in forward {
        t.append(FORWARD, r);
    }
    let multicast = Ipv4Net::new(std::net::Ipv4Addr::new(224, 0, 0, 0), 4).expect("224.0.0.0/4");
    let mcast = Match::Net { dir: Dir::Dst, net: multicast, invert: false };
    t.append(main, Rule::new(vec![Match::State(CtStates::RELATED_ESTABLISHED)], Target::Accept));
    t.append(main, Rule::new(vec![mcast.clone()], Target::Accept));
    t.append(main, Rule::new(vec![port(false, true)], Target::Accept));
    t.append(main, Rule::new(vec![Match::State(CtStates::NEW)], Target::Jump(default)));
    t.append(main, Rule::new(vec![Match::State(CtStates::NEW)], Target::Jump(ingress)));
    t.append(egress_accept, Rule::new(vec![], Target::SetMark { value: EGRESS_MARK, mask: EGRESS_MARK }));
    t.append(egress, Rule::new(vec![Match::State(CtStates::RELATED_ESTABLISHED)], Target::Accept));
    t.append(egress, Rule::new(vec![port(true, false)], Target::Return));
    t.append(egress, Rule::new(vec![Match::DstLocal], Target::Return));
    t.append(egress, Rule::new(vec![mcast], Target::Return));
    t.append(egress, Rule::new(vec![Match::State(CtStates::NEW)], Target::Jump(egress_default)));
    t.append(egress, Rule::new(vec![Match::State(CtStates::NEW), not_marked()], Target::Jump(custom)));

    // Namespaces: their pod sets, default-allow sets and bypass rules.
    for ns in &world.namespaces {
        b.namespace_sets(&ns.name);
        let (ing, eg) = b.default_allow_sets(&ns.name);
        let text = |dir: &str| format!("DefaultAllow {dir} isolation for namespace: {}", ns.name);
        let t = &mut b.t;
        t.append(
            default,
            Rule::new(
                vec![Match::Set { set: ing, dir: Dir::Dst, invert: false }, comment(&text("ingress"))],
                Target::Accept,
            ),
        );
        for target in [Target::Jump(egress_accept), Target::Return] {
            t.append(
                egress_default,
                Rule::new(
                    vec![Match::Set { set: eg, dir: Dir::Src, invert: false }, comment(&text("egress"))],
                    target,
                ),
            );
        }
    }
    // Policies, in order.
    for p in &world.policies {
        b.policy(p, ingress, custom, egress_accept);
    }
    if world.policies.iter().any(|p| p.has(PolicyType::Egress) || !p.egress.is_empty()) {
        let t = &mut b.t;
        t.append(
            egress,
            Rule::new(vec![Match::State(CtStates::NEW), not_marked()], Target::Nflog(NFLOG_GROUP)),
        );
        t.append(egress, Rule::new(vec![not_marked()], Target::Drop));
    }
    b.t
}

/// What the policies ask that weave-npc does differently, one warning each: a port range
/// (`endPort`) and rules of a direction the policy's `policyTypes` leave out.
pub fn departures(policies: &[NetworkPolicy]) -> Vec<String> {
    let mut out = Vec::new();
    for p in policies {
        for (ty, rules) in [(PolicyType::Ingress, &p.ingress), (PolicyType::Egress, &p.egress)] {
            let dir = if ty == PolicyType::Ingress { "ingress" } else { "egress" };
            for (i, r) in rules.iter().enumerate() {
                for pp in &r.ports {
                    if let (Some(lo), Some(hi)) = (pp.port, pp.end_port) {
                        out.push(format!(
                            "weave-npc: policy {}/{} {dir} rule {i} allows {} {lo}-{hi}, but weave-npc ignores \
                             endPort: only port {lo} is allowed",
                            p.namespace, p.name, pp.protocol
                        ));
                    }
                }
            }
            if !rules.is_empty() && !p.has(ty) {
                out.push(format!(
                    "weave-npc: policy {}/{} has {dir} rules but policyTypes leaves {dir} out; weave-npc \
                     provisions them anyway, so they allow {dir} traffic of the pods it selects whenever \
                     another policy isolates them",
                    p.namespace, p.name
                ));
            }
        }
    }
    out
}

struct Builder<'a> {
    t: FilterTable,
    world: &'a PolicyWorld,
    pods: &'a [PodRef<'a>],
    /// Rules provisioned, by their text (`ruleSpec.key`): weave-npc adds each once.
    rules: BTreeMap<String, ()>,
}

/// How a rule names one end: its matches and the comment's words for it.
struct Host {
    matches: Vec<Match>,
    comment: String,
}

impl Builder<'_> {
    fn ips(&self, f: impl Fn(&PodRef) -> bool) -> Vec<Ipv4Net> {
        self.pods.iter().filter(|p| f(p)).filter_map(|p| Ipv4Net::new(p.ip, 32)).collect()
    }

    /// The namespace's set of all its pods (`ns.allPods`, the empty pod selector).
    fn namespace_sets(&mut self, ns: &str) -> SetId {
        let members = self.ips(|p| p.namespace == ns);
        self.t.typed_set(&set_name(&format!("{ns}:")), SetType::HashIp, || members)
    }

    /// The ingress and egress default-allow sets: the namespace's pods no policy of that
    /// direction selects.
    fn default_allow_sets(&mut self, ns: &str) -> (SetId, SetId) {
        let world = self.world;
        let selected = |p: &PodRef, ty: PolicyType| {
            world.policies.iter().any(|q| q.has(ty) && q.namespace == ns && q.pod_selector.matches(p.labels))
        };
        let ing = self.ips(|p| p.namespace == ns && !selected(p, PolicyType::Ingress));
        let eg = self.ips(|p| p.namespace == ns && !selected(p, PolicyType::Egress));
        let i = self.t.typed_set(&set_name(&format!("ingress-default-allow:{ns}")), SetType::HashIp, || ing);
        let e = self.t.typed_set(&set_name(&format!("egress-default-allow:{ns}")), SetType::HashIp, || eg);
        (i, e)
    }

    /// A pod selector of namespace `ns` (`newSelectorSpec(pods, nil, ..., ns, HashIP)`).
    fn pod_selector(&mut self, ns: &str, sel: &LabelSelector, dir: Dir) -> Host {
        let key = selector_string(sel);
        let members = self.ips(|p| p.namespace == ns && sel.matches(p.labels));
        let set = self.t.typed_set(&set_name(&format!("{ns}:{key}")), SetType::HashIp, || members);
        Host {
            matches: vec![Match::Set { set, dir, invert: false }],
            comment: format!("pods: namespace: {ns}, selector: {key}"),
        }
    }

    fn peer(&mut self, p: &NetworkPolicy, peer: &Peer, dir: Dir) -> Host {
        let world = self.world;
        let ns_matches =
            |sel: &LabelSelector, ns: &str| world.namespace(ns).is_some_and(|n| sel.matches(&n.labels));
        match peer {
            Peer::Pods { pods: Some(pods), namespaces: None } => self.pod_selector(&p.namespace, pods, dir),
            Peer::Pods { pods, namespaces: Some(nss) } => {
                let key = format!(
                    "{}{}",
                    selector_string(nss),
                    pods.as_ref().map(selector_string).unwrap_or_default()
                );
                let name = set_name(&format!(":{key}"));
                let set = match pods {
                    // namespaceSelector alone: a list of the namespaces' pod sets.
                    None => {
                        let members: Vec<SetId> = world
                            .namespaces
                            .iter()
                            .filter(|n| nss.matches(&n.labels))
                            .map(|n| {
                                self.t
                                    .find_set(&set_name(&format!("{}:", n.name)))
                                    .expect("namespace sets first")
                            })
                            .collect();
                        self.t.typed_set(&name, SetType::ListSet(members), Vec::new)
                    }
                    Some(pods) => {
                        let members = self.ips(|q| ns_matches(nss, q.namespace) && pods.matches(q.labels));
                        self.t.typed_set(&name, SetType::HashIp, || members)
                    }
                };
                Host {
                    matches: vec![Match::Set { set, dir, invert: false }],
                    comment: format!("namespaces: selector: {key}"),
                }
            }
            Peer::Pods { pods: None, namespaces: None } => {
                unreachable!("a pods peer has a selector (validated)")
            }
            Peer::IpBlock(IpBlock { cidr, except }) => {
                let mut matches = Vec::new();
                if cidr.prefix() != 0 {
                    matches.push(Match::Net { dir, net: *cidr, invert: false });
                }
                let cidr_text = format!("{}/{}", cidr.network(), cidr.prefix());
                if except.is_empty() {
                    return Host { matches, comment: format!("cidr: {cidr_text}") };
                }
                let mut texts: Vec<String> =
                    except.iter().map(|e| format!("{}/{}", e.network(), e.prefix())).collect();
                texts.sort();
                let key = texts.join(" ");
                let name = set_name(&format!("{}:ipblock-except:{key}", p.namespace));
                let set = self.t.typed_set(&name, SetType::HashNet, || except.clone());
                matches.push(Match::Set { set, dir, invert: true });
                Host { matches, comment: format!("cidr: {cidr_text} except [{key}]") }
            }
        }
    }

    /// `analysePolicy` and `ruleSet.provision` for one policy.
    fn policy(&mut self, p: &NetworkPolicy, ingress: usize, custom: usize, accept: usize) {
        // Every rule, whatever the policy's types (`analysePolicy` reads `Spec.Ingress` and
        // `Spec.Egress` as they are).
        for ty in [PolicyType::Ingress, PolicyType::Egress] {
            let (rules, target_dir, peer_dir) = match ty {
                PolicyType::Ingress => (&p.ingress, Dir::Dst, Dir::Src),
                PolicyType::Egress => (&p.egress, Dir::Src, Dir::Dst),
            };
            for r in rules {
                let peers: Vec<Option<&Peer>> =
                    if r.peers.is_empty() { vec![None] } else { r.peers.iter().map(Some).collect() };
                for peer in peers {
                    let target = self.pod_selector(&p.namespace, &p.pod_selector, target_dir);
                    let other = peer.map(|peer| self.peer(p, peer, peer_dir));
                    // `withNormalisedProtoAndPort`: the protocol (TCP if unset), the port or
                    // 0:65535; `endPort` unread.
                    let ports: Vec<Option<(u8, u16, u16)>> = if r.ports.is_empty() {
                        vec![None]
                    } else {
                        r.ports
                            .iter()
                            .map(|pp| {
                                Some((
                                    pp.protocol.number(),
                                    pp.port.unwrap_or(0),
                                    pp.port.unwrap_or(u16::MAX),
                                ))
                            })
                            .collect()
                    };
                    for port in ports {
                        self.provision(ty, &target, other.as_ref(), port, ingress, custom, accept);
                    }
                }
            }
        }
    }

    /// `newRuleSpec` and provisioning: `-p`, the source's matches, the destination's, the
    /// port, the comment `src -> dst (ingress|egress)`.
    #[allow(clippy::too_many_arguments)]
    fn provision(
        &mut self,
        ty: PolicyType,
        target: &Host,
        other: Option<&Host>,
        port: Option<(u8, u16, u16)>,
        ingress: usize,
        custom: usize,
        accept: usize,
    ) {
        let (src, dst) = match ty {
            PolicyType::Ingress => (other, Some(target)),
            PolicyType::Egress => (Some(target), other),
        };
        let mut matches = Vec::new();
        if let Some((proto, _, _)) = port {
            matches.push(Match::Proto(proto));
        }
        let words = |h: Option<&Host>| h.map_or_else(|| "anywhere".to_string(), |h| h.comment.clone());
        for h in [src, dst].into_iter().flatten() {
            matches.extend(h.matches.iter().cloned());
        }
        if let Some((_, lo, hi)) = port {
            matches.push(Match::Dport(lo, hi));
        }
        let dir = if ty == PolicyType::Ingress { "ingress" } else { "egress" };
        matches.push(Match::Comment(format!("{} -> {} ({dir})", words(src), words(dst))));
        let probe = Rule::new(matches.clone(), Target::Accept);
        let key = self.t.rule_text(&probe);
        if self.rules.insert(key, ()).is_some() {
            return;
        }
        match ty {
            PolicyType::Ingress => self.t.append(ingress, probe),
            PolicyType::Egress => {
                self.t.append(custom, Rule::new(matches.clone(), Target::Jump(accept)));
                self.t.append(custom, Rule::new(matches, Target::Return));
            }
        }
    }
}

#[cfg(test)]
mod tests;
