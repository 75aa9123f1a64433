//! The compiler on hand-written cases, then against the oracle on generated worlds.

use std::collections::BTreeSet;

use super::*;
use crate::policy::gen::{compare_with_oracle, GenWorld, Shape};
use crate::policy::{Endpoint, Namespace, Protocol, Rule, Semantics};
use crate::world::cilium_policy::{Verdict, HOST, REMOTE_NODE};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn equal_labels_in_two_namespaces_are_two_identities() {
    let world = PolicyWorld {
        namespaces: vec![
            Namespace::new("default", Labels::new()),
            Namespace::new("prod", labels(&[("team", "a")])),
        ],
        policies: Vec::new(),
    };
    let web = labels(&[("app", "web"), ("pod-template-hash", "5d8f7c9b4")]);
    let web2 = labels(&[("app", "web"), ("pod-template-hash", "77aa")]);
    let pods = [
        PodInfo { namespace: "default", labels: &web, ip: ip("10.244.0.2") },
        PodInfo { namespace: "default", labels: &web2, ip: ip("10.244.0.3") },
        PodInfo { namespace: "prod", labels: &web, ip: ip("10.244.1.2") },
    ];
    let c = compile(&world, &pods, &[vec![ip("192.168.0.1")], vec![ip("192.168.0.2")]]);
    // pod-template-hash is not identity-relevant: the first two share an identity.
    assert_eq!(c.pod_identity, [256, 256, 257]);
    assert_eq!(
        c.maps.identities[&257],
        [
            "k8s:app=web",
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod",
            "k8s:io.cilium.k8s.namespace.labels.team=a",
            "k8s:io.cilium.k8s.policy.cluster=default",
            "k8s:io.cilium.k8s.policy.serviceaccount=default",
            "k8s:io.kubernetes.pod.namespace=prod",
        ]
    );
    assert_eq!(c.maps.identities[&1], ["reserved:host"]);
    assert!(c.maps.policies.is_empty(), "no policy: every endpoint has the unrestricted map");
    assert!(c.maps.check(256, TrafficDirection::Ingress, 2, 6, 80).verdict.allows());
}

#[test]
fn the_label_filter_keeps_namespace_labels_and_drops_kubernetes_ones() {
    for (key, kept) in [
        ("app", true),
        ("app.kubernetes.io/name", true),
        ("io.kubernetes.pod.namespace", true),
        ("io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", true),
        ("io.cilium.k8s.policy.cluster", true),
        ("io.cilium.k8s.policy.serviceaccount", true),
        ("kubernetes.io/hostname", false),
        ("io.kubernetes.container.name", false),
        ("statefulset.kubernetes.io/pod-name", false),
        ("controller-revision-hash", false),
        ("pod-template-hash", false),
        ("node.beta.kubernetes.io/instance-type", false),
        ("k8s.io/thing", false),
        ("annotation.foo", false),
    ] {
        assert_eq!(identity_relevant(key), kept, "{key}");
    }
}

#[test]
fn masked_ports_cover_a_range_exactly() {
    for (start, end) in [(80, 80), (16, 31), (53, 9053), (1, 65535), (8080, 8090), (443, 9443), (0, 65535)] {
        let covered: BTreeSet<u16> = masked_ports(start, end)
            .into_iter()
            .flat_map(|(port, mask)| (0..=u16::MAX).filter(move |p| p & mask == port))
            .collect();
        let want: BTreeSet<u16> = (start..=end).collect();
        assert_eq!(covered, want, "{start}-{end}");
    }
    assert_eq!(masked_ports(16, 31), [(16, 0xfff0)]);
}

/// default/web is selected by a default-deny ingress and an allow from app=client on TCP
/// 8000-8080; everything else about it is checked through the maps.
#[test]
fn a_default_deny_and_an_allow_by_label() {
    let world = PolicyWorld {
        namespaces: vec![Namespace::new("default", Labels::new()), Namespace::new("dev", Labels::new())],
        policies: vec![
            NetworkPolicy {
                name: "deny".into(),
                namespace: "default".into(),
                pod_selector: LabelSelector::all(),
                policy_types: vec![PolicyType::Ingress],
                ingress: Vec::new(),
                egress: Vec::new(),
            },
            NetworkPolicy {
                name: "from-client".into(),
                namespace: "default".into(),
                pod_selector: LabelSelector::labels(&[("app", "web")]),
                policy_types: vec![PolicyType::Ingress],
                ingress: vec![Rule {
                    peers: vec![Peer::Pods {
                        pods: Some(LabelSelector::labels(&[("app", "client")])),
                        namespaces: None,
                    }],
                    ports: vec![PolicyPort {
                        protocol: Protocol::Tcp,
                        port: Some(8000),
                        end_port: Some(8080),
                    }],
                }],
                egress: Vec::new(),
            },
        ],
    };
    let (web, client) = (labels(&[("app", "web")]), labels(&[("app", "client")]));
    let pods = [
        PodInfo { namespace: "default", labels: &web, ip: ip("10.244.0.2") },
        PodInfo { namespace: "default", labels: &client, ip: ip("10.244.1.2") },
        PodInfo { namespace: "dev", labels: &client, ip: ip("10.244.1.3") },
    ];
    let c = compile(&world, &pods, &[vec![ip("192.168.0.1")], vec![ip("192.168.0.2")]]);
    let [w, cl, dev] = [c.pod_identity[0], c.pod_identity[1], c.pod_identity[2]];
    let ing = |remote, port| c.maps.check(w, TrafficDirection::Ingress, remote, 6, port);
    match ing(cl, 8080).verdict {
        Verdict::Allowed { key, entry } => {
            assert_eq!((key.identity, key.port_proto()), (cl, "8080/TCP".to_string()));
            assert_eq!(c.maps.origin(&entry), "NetworkPolicy default/from-client ingress rule 0");
        }
        v => panic!("{v:?}"),
    }
    assert!(ing(cl, 7999).verdict == Verdict::NoEntry);
    assert!(ing(dev, 8000).verdict == Verdict::NoEntry, "client in dev is another identity");
    assert!(ing(HOST, 22).verdict.allows(), "the local host always");
    assert!(ing(REMOTE_NODE, 8000).verdict == Verdict::NoEntry);
    assert!(c.maps.check(w, TrafficDirection::Egress, WORLD, 17, 53).verdict.allows(), "egress not enforced");
    assert_eq!(c.maps.policy(w).enforced, [true, false]);
}

fn pod_infos(g: &GenWorld) -> Vec<PodInfo<'_>> {
    g.pods.iter().map(|p| PodInfo { namespace: &p.namespace, labels: &p.labels, ip: p.ip }).collect()
}

/// Decides a connection with the compiled maps as the datapath does: the source pod's egress
/// map against the destination's identity from the ipcache (on the source's node), then the
/// destination pod's ingress map against the source's identity as the destination's node
/// resolves it (the local node's own address is host, another node's remote-node).
fn decide(
    world: &PolicyWorld,
    g: &GenWorld,
    src: Endpoint,
    dst: Endpoint,
    protocol: Protocol,
    port: u16,
) -> bool {
    let nodes: Vec<Vec<Ipv4Addr>> = g.nodes.iter().map(|&a| vec![a]).collect();
    let c = compile(world, &pod_infos(g), &nodes);
    let m = &c.maps;
    let proto = protocol.number();
    let egress = match src {
        Endpoint::Pod(p) => {
            let remote = m.ipcache.identity(p.node, dst.ip());
            m.check(m.ipcache.pods[&p.ip], TrafficDirection::Egress, remote, proto, port).verdict.allows()
        }
        _ => true,
    };
    let ingress = match dst {
        Endpoint::Pod(p) => {
            let remote = m.ipcache.identity(p.node, src.ip());
            m.check(m.ipcache.pods[&p.ip], TrafficDirection::Ingress, remote, proto, port).verdict.allows()
        }
        _ => true,
    };
    egress && ingress
}

const CILIUM: Semantics = Semantics::CILIUM;

#[test]
fn the_compiled_maps_agree_with_the_oracle() {
    let shape = Shape::default();
    let n = compare_with_oracle(0xc111, 100, 20, shape, CILIUM, |g, s, d, p, port| {
        decide(&g.world, g, s, d, p, port)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 2000);
    // Larger worlds: more namespaces, nodes and policies.
    let big = Shape { namespaces: 5, nodes: 4, pods: 30, policies: 15 };
    let n = compare_with_oracle(0xc222, 40, 30, big, CILIUM, |g, s, d, p, port| {
        decide(&g.world, g, s, d, p, port)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1200);
}

/// A compiler that drops a rule's detail is caught: here ipBlock `except`s are ignored, and
/// in the second case a pod selector no longer keeps to the policy's namespace.
#[test]
fn a_broken_compiler_disagrees_with_the_oracle() {
    let broken = |mutate: fn(&mut Peer)| {
        compare_with_oracle(0xc111, 100, 20, Shape::default(), CILIUM, |g, s, d, p, port| {
            let mut w = g.world.clone();
            w.policies.iter_mut().flat_map(|p| p.ingress.iter_mut().chain(p.egress.iter_mut())).for_each(
                |r| {
                    r.peers.iter_mut().for_each(mutate);
                },
            );
            decide(&w, g, s, d, p, port)
        })
    };
    let e = broken(|peer| {
        if let Peer::IpBlock(b) = peer {
            b.except.clear();
        }
    })
    .expect_err("ignoring except must be caught");
    assert!(e.contains("the oracle says"), "{e}");
    println!("except ignored: {e}");
    let e = broken(|peer| {
        if let Peer::Pods { pods: Some(p), namespaces: None } = peer {
            *peer = Peer::Pods { pods: Some(p.clone()), namespaces: Some(LabelSelector::all()) };
        }
    })
    .expect_err("a pod selector in every namespace must be caught");
    println!("pod selector across namespaces: {e}");
}
