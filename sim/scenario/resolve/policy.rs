//! Namespaces and NetworkPolicy objects: checked as the API server's validation checks them
//! (`pkg/apis/networking/validation`: one peer kind per peer, `except` strictly inside `cidr`,
//! protocols TCP/UDP/SCTP, `endPort` only with a numeric `port` and not below it; selector
//! operators and their values as `metav1` validates them), `policyTypes` defaulted as the API
//! defaults it, then turned into the `policy` model.
//!
//! A CNI without a policy engine accepts the policies and enforces nothing, as on a real
//! cluster (the run warns).

use super::{Locator, Res};
use crate::addr::Ipv4Net;
use crate::policy::{
    default_types, IpBlock, LabelSelector, Namespace, NetworkPolicy, Operator, Peer, PolicyPort, PolicyType,
    Protocol, Requirement, Rule, NAMESPACE_NAME_LABEL,
};
use crate::scenario::locate::Seg;
use crate::scenario::{self, PortSpec, Scenario};

type Path = Vec<Seg<'static>>;

fn with(base: &[Seg<'static>], more: &[Seg<'static>]) -> Path {
    base.iter().chain(more).copied().collect()
}

/// A DNS-1123 label (a namespace name): lowercase letters, digits and '-', starting and ending
/// with a letter or digit, at most 63 characters. With `dots`, a DNS-1123 subdomain (an object
/// name): such labels joined by '.', at most 253 characters.
fn dns_name_problem(name: &str, dots: bool) -> Option<String> {
    let max = if dots { 253 } else { 63 };
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > max {
        return Some(format!("is longer than {max} characters"));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    if let Some(bad) = name.chars().find(|&c| !ok_char(c)) {
        return Some(format!("contains '{bad}'"));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let labels_ok = name.split('.').all(|l| alnum(l.chars().next()) && alnum(l.chars().last()));
    if !labels_ok {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// `default` (first, unless listed) and the listed namespaces, each with the name label the
/// API server adds; and every named pod's namespace checked against them.
pub(super) fn resolve_namespaces(loc: &Locator, s: &Scenario) -> Res<Vec<Namespace>> {
    let mut out: Vec<Namespace> = Vec::new();
    if !s.namespaces.iter().any(|n| n.name == "default") {
        out.push(Namespace::new("default", Default::default()));
    }
    for (i, n) in s.namespaces.iter().enumerate() {
        if let Some(problem) = dns_name_problem(&n.name, false) {
            return Err(loc.err(
                at!["namespaces", i, "name"],
                format!(
                    "namespace name '{}' {problem}: a namespace name is a DNS label (lowercase letters, \
                     digits and '-', starting and ending with a letter or digit, at most 63 characters)",
                    n.name
                ),
            ));
        }
        if s.namespaces[..i].iter().any(|m| m.name == n.name) {
            return Err(loc.err(
                at!["namespaces", i, "name"],
                format!("namespace '{}' is listed twice; list each namespace once", n.name),
            ));
        }
        if let Some(v) = n.labels.get(NAMESPACE_NAME_LABEL).filter(|v| **v != n.name) {
            return Err(loc.err(
                at!["namespaces", i, "labels", NAMESPACE_NAME_LABEL],
                format!(
                    "label {NAMESPACE_NAME_LABEL} is '{v}', but Kubernetes sets it to the namespace's name \
                     ('{}'); remove it",
                    n.name
                ),
            ));
        }
        out.push(Namespace::new(&n.name, n.labels.clone()));
    }
    for (i, p) in s.pods.iter().enumerate() {
        if !out.iter().any(|n| n.name == p.namespace) {
            return Err(loc.err(
                at!["pods", i, "namespace"],
                format!(
                    "pod '{}' is in unknown namespace '{}'; add it to `namespaces:` (namespaces are: {})",
                    p.name,
                    p.namespace,
                    names(&out)
                ),
            ));
        }
    }
    Ok(out)
}

fn names(namespaces: &[Namespace]) -> String {
    namespaces.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
}

pub(super) fn resolve_policies(
    loc: &Locator,
    s: &Scenario,
    namespaces: &[Namespace],
) -> Res<Vec<NetworkPolicy>> {
    let mut out: Vec<NetworkPolicy> = Vec::with_capacity(s.network_policies.len());
    for (i, p) in s.network_policies.iter().enumerate() {
        let base: Path = vec![Seg::Key("network_policies"), Seg::Idx(i)];
        if let Some(problem) = dns_name_problem(&p.name, true) {
            return Err(loc.err(
                &with(&base, &[Seg::Key("name")]),
                format!(
                    "network policy name '{}' {problem}: use lowercase letters, digits, '-' and '.', \
                     starting and ending with a letter or digit",
                    p.name
                ),
            ));
        }
        if !namespaces.iter().any(|n| n.name == p.namespace) {
            return Err(loc.err(
                &with(&base, &[Seg::Key("namespace")]),
                format!(
                    "network policy '{}' is in unknown namespace '{}'; add it to `namespaces:` \
                     (namespaces are: {})",
                    p.name,
                    p.namespace,
                    names(namespaces)
                ),
            ));
        }
        if out.iter().any(|q| q.name == p.name && q.namespace == p.namespace) {
            return Err(loc.err(
                &with(&base, &[Seg::Key("name")]),
                format!(
                    "network policy '{}' is defined twice in namespace '{}'; names are unique per namespace",
                    p.name, p.namespace
                ),
            ));
        }
        let pod_selector = selector(loc, &p.pod_selector, &with(&base, &[Seg::Key("pod_selector")]))?;
        let given = match &p.policy_types {
            None => None,
            Some(types) => {
                let mut v: Vec<PolicyType> = Vec::new();
                for (j, t) in types.iter().enumerate() {
                    let at = with(&base, &[Seg::Key("policy_types"), Seg::Idx(j)]);
                    let t = match t.as_str() {
                        "Ingress" => PolicyType::Ingress,
                        "Egress" => PolicyType::Egress,
                        other => {
                            return Err(loc.err(
                                &at,
                                format!("policy type '{other}' is not one of: Ingress, Egress (spelled as the API spells them)"),
                            ))
                        }
                    };
                    if v.contains(&t) {
                        return Err(loc.err(&at, format!("policy type {t:?} is given twice; give it once")));
                    }
                    v.push(t);
                }
                Some(v)
            }
        };
        let mut ingress = Vec::with_capacity(p.ingress.len());
        for (j, r) in p.ingress.iter().enumerate() {
            ingress.push(rule(
                loc,
                &with(&base, &[Seg::Key("ingress"), Seg::Idx(j)]),
                "from",
                &r.from,
                &r.ports,
            )?);
        }
        let mut egress = Vec::with_capacity(p.egress.len());
        for (j, r) in p.egress.iter().enumerate() {
            egress.push(rule(loc, &with(&base, &[Seg::Key("egress"), Seg::Idx(j)]), "to", &r.to, &r.ports)?);
        }
        out.push(NetworkPolicy {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            pod_selector,
            policy_types: default_types(given.as_deref(), egress.len()),
            ingress,
            egress,
        });
    }
    if let Some(g) = &s.generated_policies {
        generated(loc, g, namespaces, &mut out)?;
    }
    Ok(out)
}

/// The most policies `generated_policies` makes (and a `policies` sweep may ask for).
pub(super) const MAX_GENERATED_POLICIES: u64 = 100_000;

/// The label a generated policy's ingress rule selects its clients by.
pub const GENERATED_CLIENT_LABEL: &str = "policy-gen";

/// `generated_policies`: `gen-1` ... `gen-<count>`, appended after the listed policies.
fn generated(
    loc: &Locator,
    g: &scenario::GeneratedPolicies,
    namespaces: &[Namespace],
    out: &mut Vec<NetworkPolicy>,
) -> Res<()> {
    if g.count == 0 || u64::from(g.count) > MAX_GENERATED_POLICIES {
        return Err(loc.err(
            at!["generated_policies", "count"],
            format!(
                "generated_policies.count {} is outside 1..={}; change it",
                g.count,
                crate::fmt::count(MAX_GENERATED_POLICIES)
            ),
        ));
    }
    if !namespaces.iter().any(|n| n.name == g.namespace) {
        return Err(loc.err(
            at!["generated_policies", "namespace"],
            format!(
                "generated_policies.namespace '{}' is not a namespace; add it to `namespaces:` (namespaces \
                 are: {})",
                g.namespace,
                names(namespaces)
            ),
        ));
    }
    if g.port == 0 {
        return Err(loc.err(at!["generated_policies", "port"], "port 0 is not a port; give 1 to 65535"));
    }
    let pod_selector = selector(loc, &g.pod_selector, at!["generated_policies", "pod_selector"])?;
    for k in 1..=g.count {
        let name = format!("gen-{k}");
        if out.iter().any(|p| p.namespace == g.namespace && p.name == name) {
            return Err(loc.err(
                at!["generated_policies"],
                format!(
                    "network policy '{name}' in namespace '{}' is also made by generated_policies (gen-1, \
                     gen-2, ...); rename the listed one",
                    g.namespace
                ),
            ));
        }
        let client = LabelSelector::labels(&[(GENERATED_CLIENT_LABEL, &k.to_string())]);
        out.push(NetworkPolicy {
            name,
            namespace: g.namespace.clone(),
            pod_selector: pod_selector.clone(),
            policy_types: vec![PolicyType::Ingress],
            ingress: vec![Rule {
                peers: vec![Peer::Pods { pods: Some(client), namespaces: None }],
                ports: vec![
                    PolicyPort { protocol: Protocol::Tcp, port: Some(g.port), end_port: None },
                    PolicyPort { protocol: Protocol::Udp, port: Some(g.port), end_port: None },
                ],
            }],
            egress: Vec::new(),
        });
    }
    Ok(())
}

fn selector(loc: &Locator, s: &scenario::LabelSelectorSpec, at: &[Seg<'static>]) -> Res<LabelSelector> {
    let mut match_expressions = Vec::with_capacity(s.match_expressions.len());
    for (k, r) in s.match_expressions.iter().enumerate() {
        let here = with(at, &[Seg::Key("match_expressions"), Seg::Idx(k)]);
        if r.key.is_empty() {
            return Err(loc.err(&with(&here, &[Seg::Key("key")]), "key is empty; name the label to match"));
        }
        let Some(operator) = Operator::ALL.into_iter().find(|o| o.id() == r.operator) else {
            return Err(loc.err(
                &with(&here, &[Seg::Key("operator")]),
                format!("selector operator '{}' is not one of: In, NotIn, Exists, DoesNotExist", r.operator),
            ));
        };
        match operator {
            Operator::In | Operator::NotIn if r.values.is_empty() => {
                return Err(loc
                    .err(&here, format!("operator {} needs at least one value in `values`", operator.id())))
            }
            Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => {
                return Err(loc.err(
                    &with(&here, &[Seg::Key("values")]),
                    format!("operator {} takes no values; remove `values`", operator.id()),
                ))
            }
            _ => {}
        }
        match_expressions.push(Requirement { key: r.key.clone(), operator, values: r.values.clone() });
    }
    Ok(LabelSelector { match_labels: s.match_labels.clone(), match_expressions })
}

fn cidr(loc: &Locator, text: &str, at: &[Seg<'static>]) -> Res<Ipv4Net> {
    if text.contains(':') {
        return Err(loc.err(at, format!("'{text}' is an IPv6 CIDR; cnisim models IPv4 only")));
    }
    text.parse::<Ipv4Net>().map_err(|e| loc.err(at, e))
}

/// One ingress (`peers_key` "from") or egress ("to") rule.
fn rule(
    loc: &Locator,
    at: &[Seg<'static>],
    peers_key: &'static str,
    peers: &[scenario::PeerSpec],
    ports: &[scenario::PolicyPortSpec],
) -> Res<Rule> {
    let mut out = Rule::default();
    for (k, p) in peers.iter().enumerate() {
        let here = with(at, &[Seg::Key(peers_key), Seg::Idx(k)]);
        let peer =
            match (&p.pod_selector, &p.namespace_selector, &p.ip_block) {
                (None, None, None) => {
                    return Err(loc.err(
                        &here,
                        "this peer selects nothing: give pod_selector, namespace_selector (or both), or \
                     ip_block; to allow every peer, leave the list empty",
                    ))
                }
                (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => return Err(loc.err(
                    &with(&here, &[Seg::Key("ip_block")]),
                    "ip_block cannot share a peer with pod_selector or namespace_selector (the API allows \
                     one kind per peer); write them as two peers",
                )),
                (pods, namespaces, None) => Peer::Pods {
                    pods: pods
                        .as_ref()
                        .map(|s| selector(loc, s, &with(&here, &[Seg::Key("pod_selector")])))
                        .transpose()?,
                    namespaces: namespaces
                        .as_ref()
                        .map(|s| selector(loc, s, &with(&here, &[Seg::Key("namespace_selector")])))
                        .transpose()?,
                },
                (None, None, Some(b)) => {
                    let block_at = with(&here, &[Seg::Key("ip_block")]);
                    let net = cidr(loc, &b.cidr, &with(&block_at, &[Seg::Key("cidr")]))?;
                    let mut except = Vec::with_capacity(b.except.len());
                    for (e, text) in b.except.iter().enumerate() {
                        let e_at = with(&block_at, &[Seg::Key("except"), Seg::Idx(e)]);
                        let x = cidr(loc, text, &e_at)?;
                        if !(net.contains(x.network()) && x.prefix() > net.prefix()) {
                            return Err(loc.err(
                                &e_at,
                                format!(
                                "except {x} is not strictly inside cidr {net} (the API requires each except \
                                 to be a smaller block of cidr)"
                            ),
                            ));
                        }
                        except.push(x);
                    }
                    Peer::IpBlock(IpBlock { cidr: net, except })
                }
            };
        out.peers.push(peer);
    }
    for (k, p) in ports.iter().enumerate() {
        let here = with(at, &[Seg::Key("ports"), Seg::Idx(k)]);
        let protocol = match p.protocol.as_deref() {
            None => Protocol::Tcp,
            Some(t) => Protocol::ALL.into_iter().find(|p| p.id() == t).ok_or_else(|| {
                loc.err(
                    &with(&here, &[Seg::Key("protocol")]),
                    format!("protocol '{t}' is not one of: TCP, UDP, SCTP"),
                )
            })?,
        };
        let in_range = |n: i64, what: &str, at: &[Seg<'static>]| -> Res<u16> {
            u16::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| loc.err(at, format!("{what} {n} is outside 1..=65535")))
        };
        let port = match &p.port {
            None => None,
            Some(PortSpec::Number(n)) => Some(in_range(*n, "port", &with(&here, &[Seg::Key("port")]))?),
            Some(PortSpec::Name(name)) => {
                return Err(loc.err(
                    &with(&here, &[Seg::Key("port")]),
                    format!(
                        "named port '{name}' is not supported: cnisim's pods declare no container ports to \
                         resolve it against; write the port number"
                    ),
                ))
            }
        };
        let end_port = match (p.end_port, port) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(loc.err(
                    &with(&here, &[Seg::Key("end_port")]),
                    "end_port needs port: the range is port..=end_port; add port",
                ))
            }
            (Some(e), Some(start)) => {
                let e_at = with(&here, &[Seg::Key("end_port")]);
                let e = in_range(e, "end_port", &e_at)?;
                if e < start {
                    return Err(loc.err(
                        &e_at,
                        format!("end_port {e} is below port {start}; end_port must be at least port"),
                    ));
                }
                Some(e)
            }
        };
        out.ports.push(PolicyPort { protocol, port, end_port });
    }
    Ok(out)
}
