//! Literal cases for every rule of the semantics, then properties over generated worlds.

use std::net::Ipv4Addr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::gen::{self, Shape};
use super::*;

/// A pod of the test world: (name, namespace, labels, ip, node).
struct P {
    name: &'static str,
    ns: &'static str,
    labels: Labels,
    ip: Ipv4Addr,
    node: usize,
}

fn pod(name: &'static str, ns: &'static str, labels: &[(&str, &str)], ip: [u8; 4], node: usize) -> P {
    P {
        name,
        ns,
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ip: Ipv4Addr::from(ip),
        node,
    }
}

impl P {
    fn e(&self) -> Endpoint<'_> {
        Endpoint::Pod(PodRef {
            name: self.name,
            namespace: self.ns,
            labels: &self.labels,
            ip: self.ip,
            node: self.node,
        })
    }
}

/// Namespaces `default` (no labels), `prod` (team=a, env=prod) and `dev` (team=b).
fn namespaces() -> Vec<Namespace> {
    let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    vec![
        Namespace::new("default", Labels::new()),
        Namespace::new("prod", l(&[("team", "a"), ("env", "prod")])),
        Namespace::new("dev", l(&[("team", "b")])),
    ]
}

fn world(policies: Vec<NetworkPolicy>) -> PolicyWorld {
    PolicyWorld { namespaces: namespaces(), policies }
}

/// A policy in `ns` selecting `sel`, its types defaulted as the API does when `types` is None.
fn policy(
    name: &str,
    ns: &str,
    sel: LabelSelector,
    types: Option<&[PolicyType]>,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
) -> NetworkPolicy {
    NetworkPolicy {
        name: name.into(),
        namespace: ns.into(),
        pod_selector: sel,
        policy_types: default_types(types, egress.len()),
        ingress,
        egress,
    }
}

fn rule(peers: Vec<Peer>, ports: Vec<PolicyPort>) -> Rule {
    Rule { peers, ports }
}
fn pods_peer(pairs: &[(&str, &str)]) -> Peer {
    Peer::Pods { pods: Some(LabelSelector::labels(pairs)), namespaces: None }
}
fn ns_peer(pairs: &[(&str, &str)]) -> Peer {
    Peer::Pods { pods: None, namespaces: Some(LabelSelector::labels(pairs)) }
}
fn tcp(port: u16) -> PolicyPort {
    PolicyPort { protocol: Protocol::Tcp, port: Some(port), end_port: None }
}
fn block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock(IpBlock {
        cidr: cidr.parse().unwrap(),
        except: except.iter().map(|e| e.parse().unwrap()).collect(),
    })
}

const T: Protocol = Protocol::Tcp;

/// The pods every case uses.
fn pods() -> (P, P, P, P) {
    (
        pod("web", "prod", &[("app", "web")], [10, 244, 1, 2], 1),
        pod("db", "prod", &[("app", "db")], [10, 244, 2, 2], 2),
        pod("client", "dev", &[("app", "client")], [10, 244, 0, 2], 0),
        pod("other", "default", &[("app", "web")], [10, 244, 0, 3], 0),
    )
}

fn allowed_by(policy: usize, rule: usize) -> Side {
    Side::Allowed { policy, rule }
}
fn denied(selecting: &[usize]) -> Side {
    Side::Denied { selecting: selecting.to_vec() }
}

#[test]
fn no_policies_allow_everything() {
    let (web, _, client, _) = pods();
    let v = allowed(&world(vec![]), client.e(), web.e(), T, 80);
    assert_eq!(v, Verdict { egress: Side::NotIsolated, ingress: Side::NotIsolated });
    assert!(v.is_allowed());
}

#[test]
fn default_deny_ingress() {
    let (web, db, client, other) = pods();
    let w = world(vec![policy("deny", "prod", LabelSelector::all(), None, vec![], vec![])]);
    assert_eq!(allowed(&w, client.e(), web.e(), T, 80).ingress, denied(&[0]));
    assert_eq!(allowed(&w, web.e(), db.e(), T, 80).ingress, denied(&[0]), "same namespace too");
    // Other namespaces are untouched, and egress of prod's pods is not isolated.
    assert_eq!(
        allowed(&w, web.e(), other.e(), T, 80),
        Verdict { egress: Side::NotIsolated, ingress: Side::NotIsolated }
    );
}

#[test]
fn default_deny_egress_needs_the_type() {
    let (web, db, _, _) = pods();
    // Without policyTypes, a policy with no egress rules is Ingress only.
    let w = world(vec![policy("p", "prod", LabelSelector::all(), None, vec![], vec![])]);
    assert_eq!(allowed(&w, web.e(), db.e(), T, 80).egress, Side::NotIsolated);
    let w =
        world(vec![policy("p", "prod", LabelSelector::all(), Some(&[PolicyType::Egress]), vec![], vec![])]);
    let v = allowed(&w, web.e(), db.e(), T, 80);
    assert_eq!(v, Verdict { egress: denied(&[0]), ingress: Side::NotIsolated });
    assert!(!v.is_allowed());
}

#[test]
fn policy_types_default_from_egress_rules() {
    assert_eq!(default_types(None, 0), [PolicyType::Ingress]);
    assert_eq!(default_types(None, 1), [PolicyType::Ingress, PolicyType::Egress]);
    assert_eq!(default_types(Some(&[]), 1), [PolicyType::Ingress, PolicyType::Egress], "empty = omitted");
    assert_eq!(default_types(Some(&[PolicyType::Egress]), 0), [PolicyType::Egress]);
    assert_eq!(
        default_types(Some(&[PolicyType::Egress, PolicyType::Ingress, PolicyType::Egress]), 0),
        [PolicyType::Ingress, PolicyType::Egress]
    );
    // With egress rules and no types, the policy isolates ingress as well.
    let (web, db, _, _) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "db")]),
        None,
        vec![],
        vec![rule(vec![], vec![])],
    )]);
    assert_eq!(allowed(&w, web.e(), db.e(), T, 80).ingress, denied(&[0]));
    assert_eq!(allowed(&w, db.e(), web.e(), T, 80).egress, allowed_by(0, 0));
}

#[test]
fn egress_only_policy_leaves_ingress_open() {
    let (web, db, client, _) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "web")]),
        Some(&[PolicyType::Egress]),
        vec![rule(vec![], vec![])], // ignored: Ingress is not in policyTypes
        vec![rule(vec![pods_peer(&[("app", "db")])], vec![tcp(5432)])],
    )]);
    assert_eq!(allowed(&w, client.e(), web.e(), T, 80).ingress, Side::NotIsolated);
    assert_eq!(allowed(&w, web.e(), db.e(), T, 5432).egress, allowed_by(0, 0));
    assert_eq!(allowed(&w, web.e(), db.e(), T, 5433).egress, denied(&[0]));
    assert_eq!(allowed(&w, web.e(), client.e(), T, 5432).egress, denied(&[0]));
}

#[test]
fn allow_from_namespace_by_label() {
    let (web, db, client, other) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::all(),
        None,
        vec![rule(vec![ns_peer(&[("team", "b")])], vec![])],
        vec![],
    )]);
    assert_eq!(allowed(&w, client.e(), web.e(), T, 80).ingress, allowed_by(0, 0), "dev has team=b");
    assert_eq!(allowed(&w, other.e(), web.e(), T, 80).ingress, denied(&[0]));
    assert_eq!(allowed(&w, db.e(), web.e(), T, 80).ingress, denied(&[0]), "prod itself is team=a");
}

#[test]
fn namespace_name_label_selects_by_name() {
    let (web, _, client, _) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::all(),
        None,
        vec![rule(vec![ns_peer(&[(NAMESPACE_NAME_LABEL, "dev")])], vec![])],
        vec![],
    )]);
    assert_eq!(allowed(&w, client.e(), web.e(), T, 80).ingress, allowed_by(0, 0));
}

#[test]
fn pod_selector_alone_is_the_policys_namespace() {
    let (web, _, _, other) = pods();
    // `other` in default has app=web too, but a podSelector without namespaceSelector selects
    // prod's pods only.
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "db")]),
        None,
        vec![rule(vec![pods_peer(&[("app", "web")])], vec![])],
        vec![],
    )]);
    let (_, db, _, _) = pods();
    assert_eq!(allowed(&w, web.e(), db.e(), T, 80).ingress, allowed_by(0, 0));
    assert_eq!(allowed(&w, other.e(), db.e(), T, 80).ingress, denied(&[0]));
}

#[test]
fn pod_and_namespace_selector_in_one_peer_is_and() {
    let (_, db, client, other) = pods();
    let and = Peer::Pods {
        pods: Some(LabelSelector::labels(&[("app", "client")])),
        namespaces: Some(LabelSelector::labels(&[("team", "b")])),
    };
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "db")]),
        None,
        vec![rule(vec![and], vec![])],
        vec![],
    )]);
    let stray = pod("stray", "dev", &[("app", "web")], [10, 244, 0, 9], 0);
    assert_eq!(allowed(&w, client.e(), db.e(), T, 80).ingress, allowed_by(0, 0));
    assert_eq!(allowed(&w, stray.e(), db.e(), T, 80).ingress, denied(&[0]), "right namespace, wrong pod");
    let client_in_default = pod("c2", "default", &[("app", "client")], [10, 244, 0, 8], 0);
    assert_eq!(
        allowed(&w, client_in_default.e(), db.e(), T, 80).ingress,
        denied(&[0]),
        "right pod, wrong ns"
    );
    assert_eq!(allowed(&w, other.e(), db.e(), T, 80).ingress, denied(&[0]));
}

#[test]
fn two_peers_are_or() {
    let (_, db, client, _) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "db")]),
        None,
        vec![rule(vec![pods_peer(&[("app", "client")]), ns_peer(&[("team", "b")])], vec![])],
        vec![],
    )]);
    let stray = pod("stray", "dev", &[("app", "web")], [10, 244, 0, 9], 0);
    let client_in_default = pod("c2", "default", &[("app", "client")], [10, 244, 0, 8], 0);
    assert_eq!(allowed(&w, client.e(), db.e(), T, 80).ingress, allowed_by(0, 0));
    assert_eq!(allowed(&w, stray.e(), db.e(), T, 80).ingress, allowed_by(0, 0), "namespace peer");
    // The pod peer selects prod's pods only, so a client in default is in neither.
    assert_eq!(allowed(&w, client_in_default.e(), db.e(), T, 80).ingress, denied(&[0]));
}

#[test]
fn empty_namespace_selector_selects_every_namespace() {
    let (_, db, _, other) = pods();
    let any_ns = Peer::Pods {
        pods: Some(LabelSelector::labels(&[("app", "web")])),
        namespaces: Some(LabelSelector::all()),
    };
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "db")]),
        None,
        vec![rule(vec![any_ns], vec![])],
        vec![],
    )]);
    assert_eq!(allowed(&w, other.e(), db.e(), T, 80).ingress, allowed_by(0, 0));
    // Selectors never match a node or an outside address.
    assert_eq!(
        allowed(&w, Endpoint::External(Ipv4Addr::new(203, 0, 113, 1)), db.e(), T, 80).ingress,
        denied(&[0])
    );
}

#[test]
fn ip_block_with_except() {
    let (web, _, client, _) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "web")]),
        None,
        vec![rule(vec![block("203.0.113.0/24", &["203.0.113.128/25"])], vec![])],
        vec![],
    )]);
    let ext = |d| Endpoint::External(Ipv4Addr::new(203, 0, 113, d));
    assert_eq!(allowed(&w, ext(5), web.e(), T, 80).ingress, allowed_by(0, 0));
    assert_eq!(allowed(&w, ext(127), web.e(), T, 80).ingress, allowed_by(0, 0));
    assert_eq!(allowed(&w, ext(128), web.e(), T, 80).ingress, denied(&[0]), "first excepted address");
    assert_eq!(allowed(&w, ext(255), web.e(), T, 80).ingress, denied(&[0]));
    assert_eq!(
        allowed(&w, Endpoint::External(Ipv4Addr::new(198, 51, 100, 1)), web.e(), T, 80).ingress,
        denied(&[0])
    );
    assert_eq!(allowed(&w, client.e(), web.e(), T, 80).ingress, denied(&[0]));
}

#[test]
fn ip_block_matches_pod_addresses_unless_told_otherwise() {
    let (web, _, client, _) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "web")]),
        None,
        vec![rule(vec![block("10.244.0.0/16", &[])], vec![])],
        vec![],
    )]);
    assert_eq!(allowed(&w, client.e(), web.e(), T, 80).ingress, allowed_by(0, 0));
    let cilium = Semantics::CILIUM;
    assert_eq!(allowed_with(&w, cilium, client.e(), web.e(), T, 80).ingress, denied(&[0]));
    let node = Endpoint::Node { node: 0, ip: Ipv4Addr::new(10, 244, 0, 1) };
    assert_eq!(allowed_with(&w, cilium, node, web.e(), T, 80).ingress, denied(&[0]));
}

#[test]
fn egress_to_ip_block_outside() {
    let (web, db, _, _) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "web")]),
        Some(&[PolicyType::Egress]),
        vec![],
        vec![rule(vec![block("0.0.0.0/0", &["10.0.0.0/8", "192.168.0.0/16"])], vec![tcp(443)])],
    )]);
    assert_eq!(
        allowed(&w, web.e(), Endpoint::External(Ipv4Addr::new(8, 8, 8, 8)), T, 443).egress,
        allowed_by(0, 0)
    );
    assert_eq!(
        allowed(&w, web.e(), Endpoint::External(Ipv4Addr::new(8, 8, 8, 8)), T, 80).egress,
        denied(&[0])
    );
    assert_eq!(allowed(&w, web.e(), db.e(), T, 443).egress, denied(&[0]), "10/8 is excepted");
    let node = Endpoint::Node { node: 1, ip: Ipv4Addr::new(192, 168, 0, 2) };
    assert_eq!(allowed(&w, web.e(), node, T, 443).egress, denied(&[0]));
}

#[test]
fn end_port_range_is_inclusive() {
    let (web, _, client, _) = pods();
    let range = PolicyPort { protocol: Protocol::Tcp, port: Some(8000), end_port: Some(8080) };
    let w =
        world(vec![policy("p", "prod", LabelSelector::all(), None, vec![rule(vec![], vec![range])], vec![])]);
    for (port, ok) in [(7999, false), (8000, true), (8042, true), (8080, true), (8081, false)] {
        assert_eq!(allowed(&w, client.e(), web.e(), T, port).is_allowed(), ok, "port {port}");
    }
}

#[test]
fn protocol_must_match_and_defaults_to_tcp() {
    let (web, _, client, _) = pods();
    let all_udp = PolicyPort { protocol: Protocol::Udp, port: None, end_port: None };
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::all(),
        None,
        vec![rule(vec![], vec![tcp(53), all_udp])],
        vec![],
    )]);
    assert_eq!(allowed(&w, client.e(), web.e(), Protocol::Tcp, 53).ingress, allowed_by(0, 0));
    assert_eq!(allowed(&w, client.e(), web.e(), Protocol::Udp, 9999).ingress, allowed_by(0, 0));
    assert_eq!(allowed(&w, client.e(), web.e(), Protocol::Tcp, 54).ingress, denied(&[0]));
    assert_eq!(allowed(&w, client.e(), web.e(), Protocol::Sctp, 53).ingress, denied(&[0]));
}

#[test]
fn ports_and_peers_must_both_match() {
    let (web, db, client, _) = pods();
    let w = world(vec![policy(
        "p",
        "prod",
        LabelSelector::labels(&[("app", "db")]),
        None,
        vec![rule(vec![pods_peer(&[("app", "web")])], vec![tcp(5432)])],
        vec![],
    )]);
    assert_eq!(allowed(&w, web.e(), db.e(), T, 5432).ingress, allowed_by(0, 0));
    assert_eq!(allowed(&w, web.e(), db.e(), T, 80).ingress, denied(&[0]), "right peer, wrong port");
    assert_eq!(allowed(&w, client.e(), db.e(), T, 5432).ingress, denied(&[0]), "right port, wrong peer");
}

#[test]
fn multiple_policies_are_a_union() {
    let (web, db, client, _) = pods();
    let w = world(vec![
        policy("deny", "prod", LabelSelector::all(), None, vec![], vec![]),
        policy(
            "from-web",
            "prod",
            LabelSelector::labels(&[("app", "db")]),
            None,
            vec![rule(vec![pods_peer(&[("app", "web")])], vec![])],
            vec![],
        ),
        policy(
            "from-dev",
            "prod",
            LabelSelector::labels(&[("app", "db")]),
            None,
            vec![rule(vec![ns_peer(&[("team", "b")])], vec![tcp(5432)])],
            vec![],
        ),
    ]);
    assert_eq!(allowed(&w, web.e(), db.e(), T, 1).ingress, allowed_by(1, 0));
    assert_eq!(allowed(&w, client.e(), db.e(), T, 5432).ingress, allowed_by(2, 0));
    assert_eq!(allowed(&w, client.e(), db.e(), T, 80).ingress, denied(&[0, 1, 2]));
    // web is selected by the deny only.
    assert_eq!(allowed(&w, db.e(), web.e(), T, 80).ingress, denied(&[0]));
}

#[test]
fn both_directions_must_allow() {
    let (web, db, _, _) = pods();
    let w = world(vec![
        policy(
            "web-out",
            "prod",
            LabelSelector::labels(&[("app", "web")]),
            Some(&[PolicyType::Egress]),
            vec![],
            vec![rule(vec![pods_peer(&[("app", "db")])], vec![])],
        ),
        policy(
            "db-in",
            "prod",
            LabelSelector::labels(&[("app", "db")]),
            None,
            vec![rule(vec![pods_peer(&[("app", "web")])], vec![tcp(5432)])],
            vec![],
        ),
    ]);
    let v = allowed(&w, web.e(), db.e(), T, 5432);
    assert_eq!(v, Verdict { egress: allowed_by(0, 0), ingress: allowed_by(1, 0) });
    let v = allowed(&w, web.e(), db.e(), T, 6000);
    assert_eq!(v, Verdict { egress: allowed_by(0, 0), ingress: denied(&[1]) });
    assert!(!v.is_allowed());
    assert_eq!(
        v.explain(&w),
        "denied (egress: allowed by prod/web-out rule 0; ingress: denied, selected by prod/db-in and no rule of theirs allows it)"
    );
}

#[test]
fn local_node_may_always_reach_its_pods() {
    let (web, _, _, _) = pods();
    let w = world(vec![policy("deny", "prod", LabelSelector::all(), None, vec![], vec![])]);
    let own = Endpoint::Node { node: 1, ip: Ipv4Addr::new(192, 168, 0, 2) };
    let remote = Endpoint::Node { node: 2, ip: Ipv4Addr::new(192, 168, 0, 3) };
    assert_eq!(
        allowed(&w, own, web.e(), T, 80),
        Verdict { egress: Side::NotAPod, ingress: Side::FromLocalNode }
    );
    assert_eq!(allowed(&w, remote, web.e(), T, 80).ingress, denied(&[0]));
}

#[test]
fn selector_operators() {
    let l = |pairs: &[(&str, &str)]| -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let req = |key: &str, operator, values: &[&str]| LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
    };
    let a = l(&[("tier", "front")]);
    let none = Labels::new();
    assert!(req("tier", Operator::In, &["front", "back"]).matches(&a));
    assert!(!req("tier", Operator::In, &["back"]).matches(&a));
    assert!(!req("tier", Operator::In, &["front"]).matches(&none));
    assert!(!req("tier", Operator::NotIn, &["front"]).matches(&a));
    assert!(req("tier", Operator::NotIn, &["back"]).matches(&a));
    assert!(req("tier", Operator::NotIn, &["front"]).matches(&none), "NotIn matches a missing key");
    assert!(req("tier", Operator::Exists, &[]).matches(&a));
    assert!(!req("tier", Operator::Exists, &[]).matches(&none));
    assert!(req("tier", Operator::DoesNotExist, &[]).matches(&none));
    assert!(!req("tier", Operator::DoesNotExist, &[]).matches(&a));
    // matchLabels and matchExpressions are ANDed.
    let mut both = req("tier", Operator::Exists, &[]);
    both.match_labels.insert("app".into(), "x".into());
    assert!(!both.matches(&a));
    assert!(both.matches(&l(&[("tier", "front"), ("app", "x")])));
    assert!(LabelSelector::all().matches(&none));
}

#[test]
fn selected_by_policy_in_another_namespace_is_not_isolated() {
    let (web, _, client, other) = pods();
    // A deny-all in dev does not select prod's or default's pods.
    let w = world(vec![policy(
        "deny",
        "dev",
        LabelSelector::all(),
        Some(&[PolicyType::Ingress, PolicyType::Egress]),
        vec![],
        vec![],
    )]);
    assert_eq!(
        allowed(&w, other.e(), web.e(), T, 80),
        Verdict { egress: Side::NotIsolated, ingress: Side::NotIsolated }
    );
    assert_eq!(allowed(&w, client.e(), web.e(), T, 80).egress, denied(&[0]));
    assert_eq!(allowed(&w, web.e(), client.e(), T, 80).ingress, denied(&[0]));
}

// ---- Properties over generated worlds ----

#[test]
fn generator_is_deterministic() {
    let a = gen::world(7, Shape::default());
    let b = gen::world(7, Shape::default());
    assert_eq!(a.world, b.world);
    assert_eq!(format!("{:?}", a.pods), format!("{:?}", b.pods));
    assert_ne!(a.world, gen::world(8, Shape::default()).world);
}

/// Over many seeds the generator uses every feature, and both verdicts are common.
#[test]
fn generator_covers_every_feature() {
    let (mut seen, mut verdicts) = (std::collections::BTreeSet::new(), [0usize; 2]);
    for seed in 0..300 {
        let g = gen::world(seed, Shape::default());
        for p in &g.world.policies {
            if p.policy_types == [PolicyType::Egress] {
                seen.insert("egress-only");
            }
            if p.has(PolicyType::Ingress) && p.ingress.is_empty() {
                seen.insert("default-deny-ingress");
            }
            if p.has(PolicyType::Egress) && p.egress.is_empty() {
                seen.insert("default-deny-egress");
            }
            for r in p.ingress.iter().chain(&p.egress) {
                for peer in &r.peers {
                    match peer {
                        Peer::Pods { pods: Some(_), namespaces: Some(_) } => seen.insert("pod-and-namespace"),
                        Peer::Pods { pods: None, .. } => seen.insert("namespace-only"),
                        Peer::Pods { namespaces: None, .. } => seen.insert("pod-only"),
                        Peer::IpBlock(b) if !b.except.is_empty() => seen.insert("ip-block-except"),
                        Peer::IpBlock(_) => seen.insert("ip-block"),
                    };
                    if let Peer::Pods { pods: Some(s), .. } = peer {
                        for e in &s.match_expressions {
                            seen.insert(e.operator.id());
                        }
                    }
                }
                for port in &r.ports {
                    seen.insert(port.protocol.id());
                    if port.end_port.is_some() {
                        seen.insert("end-port");
                    }
                }
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..20 {
            let (s, d, proto, port) = g.connection(&mut rng);
            verdicts[allowed(&g.world, s, d, proto, port).is_allowed() as usize] += 1;
        }
    }
    let want = [
        "egress-only",
        "default-deny-ingress",
        "default-deny-egress",
        "pod-and-namespace",
        "namespace-only",
        "pod-only",
        "ip-block-except",
        "ip-block",
        "In",
        "NotIn",
        "Exists",
        "DoesNotExist",
        "TCP",
        "UDP",
        "SCTP",
        "end-port",
    ];
    for w in want {
        assert!(seen.contains(w), "the generator never produced {w}");
    }
    let total = verdicts[0] + verdicts[1];
    assert!(verdicts[0] * 10 > total && verdicts[1] * 10 > total, "verdicts too one-sided: {verdicts:?}");
}

/// Metamorphic properties: adding a rule never denies what was allowed; an allow-all rule in
/// every policy allows everything; a policy that selects no pod changes nothing.
#[test]
fn oracle_is_monotonic_in_rules() {
    for seed in 0..200 {
        let g = gen::world(seed, Shape::default());
        let mut more = g.world.clone();
        let mut open = g.world.clone();
        let mut inert = g.world.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfeed);
        for (i, p) in more.policies.iter_mut().enumerate() {
            let extra = gen::world(seed * 1000 + i as u64, Shape { policies: 1, ..Shape::default() });
            if let Some(q) = extra.world.policies.first() {
                p.ingress.extend(q.ingress.iter().cloned());
                p.egress.extend(q.egress.iter().cloned());
            }
        }
        for p in &mut open.policies {
            p.ingress.push(Rule::default());
            p.egress.push(Rule::default());
        }
        inert.policies.push(NetworkPolicy {
            name: "selects-nothing".into(),
            namespace: "default".into(),
            pod_selector: LabelSelector::labels(&[("no-such-key", "x")]),
            policy_types: vec![PolicyType::Ingress, PolicyType::Egress],
            ingress: vec![],
            egress: vec![],
        });
        for _ in 0..50 {
            let (s, d, proto, port) = g.connection(&mut rng);
            let before = allowed(&g.world, s, d, proto, port);
            if before.is_allowed() {
                assert!(
                    allowed(&more, s, d, proto, port).is_allowed(),
                    "seed {seed}: a rule denied {s} -> {d}"
                );
            }
            assert!(
                allowed(&open, s, d, proto, port).is_allowed(),
                "seed {seed}: allow-all denied {s} -> {d}"
            );
            assert_eq!(allowed(&inert, s, d, proto, port), before, "seed {seed}: {s} -> {d}");
        }
    }
}

/// The harness enforcement will be tested with: the oracle agrees with itself on 1,000
/// connections, and an evaluator with one rule broken (ipBlock `except` ignored) is caught,
/// with the connection that differs.
#[test]
fn comparing_with_the_oracle_finds_a_broken_rule() {
    let sem = Semantics::default();
    let n = gen::compare_with_oracle(1, 50, 20, Shape::default(), sem, |g, s, d, proto, port| {
        allowed(&g.world, s, d, proto, port).is_allowed()
    });
    assert_eq!(n, Ok(1000));
    let broken = gen::compare_with_oracle(1, 200, 50, Shape::default(), sem, |g, s, d, proto, port| {
        let mut w = g.world.clone();
        for p in &mut w.policies {
            for r in p.ingress.iter_mut().chain(p.egress.iter_mut()) {
                for peer in &mut r.peers {
                    if let Peer::IpBlock(b) = peer {
                        b.except.clear();
                    }
                }
            }
        }
        allowed(&w, s, d, proto, port).is_allowed()
    });
    let message = broken.expect_err("ignoring except must show");
    assert!(
        message.starts_with("world seed ")
            && message.contains("the enforcement allowed it, the oracle says denied"),
        "{message}"
    );
}
