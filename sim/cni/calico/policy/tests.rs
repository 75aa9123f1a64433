use super::*;
use crate::net::filter::{CtState, PacketInfo, Verdict};
use crate::policy::gen::{self, GenWorld, Shape};
use crate::policy::{Endpoint, Semantics};

fn workloads(g: &GenWorld) -> (Vec<String>, Vec<FilterTable>) {
    let ifaces: Vec<String> = g.pods.iter().map(|p| veth_name(&p.namespace, &p.name)).collect();
    let wl: Vec<Workload> = g
        .pods
        .iter()
        .zip(&ifaces)
        .map(|(p, i)| match p.endpoint() {
            Endpoint::Pod(pod) => Workload { pod, iface: i },
            _ => unreachable!(),
        })
        .collect();
    let tables = (0..g.nodes.len()).map(|n| filter_table(&g.world, &wl, n)).collect();
    (ifaces, tables)
}

/// What Felix's tables on the nodes a connection crosses decide for its first packet: the
/// source node's FORWARD (or INPUT, to its own node) from the source pod's interface, then
/// the destination node's FORWARD to the destination pod's; the host's own connections to its
/// pods take OUTPUT, which Felix does not police.
fn decide(
    g: &GenWorld,
    ifaces: &[String],
    tables: &[FilterTable],
    src: Endpoint,
    dst: Endpoint,
    protocol: Protocol,
    port: u16,
) -> bool {
    let iface = |p: &PodRef| &ifaces[g.pods.iter().position(|q| q.name == p.name).expect("generated pod")];
    let walk = |node: usize, hook, in_dev: &str, out_dev: &str| {
        let p = PacketInfo {
            in_dev,
            out_dev,
            src: src.ip(),
            dst: dst.ip(),
            proto: protocol.number(),
            dport: Some(port),
            ct: CtState::New,
            phys_in: "",
            phys_out: "",
            bridged: false,
            dst_local: false,
        };
        tables[node].walk(hook, &p, false).verdict == Verdict::Accept
    };
    match (src, dst) {
        (Endpoint::Pod(s), Endpoint::Pod(d)) if s.node == d.node => {
            walk(s.node, FORWARD, iface(&s), iface(&d))
        }
        (Endpoint::Pod(s), Endpoint::Pod(d)) => {
            walk(s.node, FORWARD, iface(&s), "eth0") && walk(d.node, FORWARD, "eth0", iface(&d))
        }
        (Endpoint::Pod(s), Endpoint::Node { node, .. }) if node == s.node => {
            walk(s.node, INPUT, iface(&s), "")
        }
        (Endpoint::Pod(s), _) => walk(s.node, FORWARD, iface(&s), "eth0"),
        (Endpoint::Node { node, .. }, Endpoint::Pod(d)) if node == d.node => true,
        (_, Endpoint::Pod(d)) => walk(d.node, FORWARD, "eth0", iface(&d)),
        _ => unreachable!("generated connections have a pod at one end"),
    }
}

/// The oracle property: Felix's chains decide every generated connection as the NetworkPolicy
/// semantics do. 200 worlds x 10 connections.
#[test]
fn felix_chains_agree_with_the_oracle() {
    let checked =
        gen::compare_with_oracle(14, 200, 10, Shape::default(), Semantics::default(), |g, s, d, p, port| {
            let (ifaces, tables) = workloads(g);
            decide(g, &ifaces, &tables, s, d, p, port)
        });
    assert_eq!(checked, Ok(2000));
}

/// A broken rule shows: with the end-of-tier DROP turned into a no-op, isolated pods accept
/// what no policy allows, and the harness names the first such connection.
#[test]
fn a_broken_end_of_tier_rule_is_caught() {
    let err =
        gen::compare_with_oracle(14, 200, 10, Shape::default(), Semantics::default(), |g, s, d, p, port| {
            let (ifaces, mut tables) = workloads(g);
            for t in &mut tables {
                for c in &mut t.chains {
                    for r in &mut c.rules {
                        if r.matches
                            .iter()
                            .any(|m| matches!(m, Match::Comment(c) if c.starts_with("End of tier")))
                        {
                            r.target = Target::Nothing;
                        }
                    }
                }
            }
            decide(g, &ifaces, &tables, s, d, p, port)
        })
        .expect_err("a broken table must disagree with the oracle");
    assert!(err.contains("the enforcement allowed it, the oracle says"), "{err}");
}

#[test]
fn veth_names_are_calicos() {
    // sha1("default.web-0") = 0d7763386da... (Python's hashlib): its first 11 hex digits.
    assert_eq!(veth_name("default", "web-0"), "cali0d7763386da");
}

#[test]
fn chain_names_are_length_limited_as_felix_does() {
    assert_eq!(limited_id("cali-pri-", "kns.default"), "cali-pri-kns.default");
    // Exactly 28 characters: kept.
    assert_eq!(limited_id("cali-pri-", "ksa.default.default"), "cali-pri-ksa.default.default");
    let long = limited_id("cali-pi-", "knp/default/allow-frontend-to-backend");
    assert_eq!(long.len(), 28);
    assert!(long.starts_with("cali-pi-_"), "{long}");
}

#[test]
fn k8s_rules_convert_one_calico_rule_per_protocol_and_peer() {
    use crate::policy::PolicyPort;
    let peer = Peer::Pods { pods: Some(LabelSelector::labels(&[("app", "a")])), namespaces: None };
    let r = crate::policy::Rule {
        peers: vec![peer.clone(), peer],
        ports: vec![
            PolicyPort { protocol: Protocol::Udp, port: Some(53), end_port: None },
            PolicyPort { protocol: Protocol::Tcp, port: Some(80), end_port: None },
            PolicyPort { protocol: Protocol::Tcp, port: Some(81), end_port: Some(90) },
        ],
    };
    let out = convert(&r);
    let got: Vec<(Option<Protocol>, Ports)> = out.iter().map(|c| (c.protocol, c.ports.clone())).collect();
    assert_eq!(
        got,
        vec![
            (Some(Protocol::Tcp), vec![(80, 90)]),
            (Some(Protocol::Tcp), vec![(80, 90)]),
            (Some(Protocol::Udp), vec![(53, 53)]),
            (Some(Protocol::Udp), vec![(53, 53)]),
        ]
    );
}
