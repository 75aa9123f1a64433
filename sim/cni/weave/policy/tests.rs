use super::*;
use crate::net::filter::{CtState, PacketInfo, Verdict};
use crate::policy::gen::{self, GenWorld, Shape};
use crate::policy::{Endpoint, Protocol, Semantics};

const PORT: &str = "vethwe-bridge";

fn table(g: &GenWorld) -> FilterTable {
    let pods: Vec<PodRef> = g
        .pods
        .iter()
        .map(|p| match p.endpoint() {
            Endpoint::Pod(pod) => pod,
            _ => unreachable!(),
        })
        .collect();
    filter_table(&g.world, &pods, PORT)
}

/// What weave-npc's table (the same on every node) decides for a connection's first packet,
/// on each node it crosses: pods of one node are bridged pod port to pod port; between nodes
/// the frame is bridged out to the router port on the source and in from it on the
/// destination; a pod's packet to its own node takes INPUT from the bridge, to anywhere else
/// FORWARD out of eth0 (routed); a remote node reaches a pod over the overlay (bridged in from
/// the router port), an outside host through eth0 (routed); a node's own connections to its
/// pods take OUTPUT, which weave-npc does not police.
fn decide(t: &FilterTable, src: Endpoint, dst: Endpoint, protocol: Protocol, port: u16) -> bool {
    let veth = |p: &PodRef| format!("vethwepl{}", p.name);
    let walk = |hook, in_dev: &str, out_dev: &str, phys: Option<(&str, &str)>, dst_local: bool| {
        let p = PacketInfo {
            in_dev,
            out_dev,
            src: src.ip(),
            dst: dst.ip(),
            proto: protocol.number(),
            dport: Some(port),
            ct: CtState::New,
            phys_in: phys.map_or("", |p| p.0),
            phys_out: phys.map_or("", |p| p.1),
            bridged: phys.is_some(),
            dst_local,
        };
        t.walk(hook, &p, false).verdict == Verdict::Accept
    };
    let bridged = |a: &str, b: &str| walk(FORWARD, BRIDGE, BRIDGE, Some((a, b)), false);
    match (src, dst) {
        (Endpoint::Pod(s), Endpoint::Pod(d)) if s.node == d.node => bridged(&veth(&s), &veth(&d)),
        (Endpoint::Pod(s), Endpoint::Pod(d)) => bridged(&veth(&s), PORT) && bridged(PORT, &veth(&d)),
        (Endpoint::Pod(s), Endpoint::Node { node, .. }) if node == s.node => {
            walk(INPUT, BRIDGE, "", None, true)
        }
        (Endpoint::Pod(_), _) => walk(FORWARD, BRIDGE, "eth0", None, false),
        (Endpoint::Node { node, .. }, Endpoint::Pod(d)) if node == d.node => true,
        (Endpoint::Node { .. }, Endpoint::Pod(d)) => bridged(PORT, &veth(&d)),
        (_, Endpoint::Pod(_)) => walk(FORWARD, "eth0", BRIDGE, None, false),
        _ => unreachable!("generated connections have a pod at one end"),
    }
}

/// The oracle property: weave-npc's chains decide every generated connection as the
/// NetworkPolicy semantics do, read as weave-npc reads them. 200 worlds x 10 connections.
#[test]
fn weave_npc_chains_agree_with_the_oracle() {
    let checked =
        gen::compare_with_oracle(21, 200, 10, Shape::default(), Semantics::WEAVE_NPC, |g, s, d, p, port| {
            decide(&table(g), s, d, p, port)
        });
    assert_eq!(checked, Ok(2000));
}

/// ... and they are not the API's: on the same worlds the API's reading differs (endPort, the
/// own node, rules outside the policy's types), so the departures are real.
#[test]
fn weave_npc_departs_from_the_api() {
    let err = gen::compare_with_oracle(21, 200, 10, Shape::default(), Semantics::API, |g, s, d, p, port| {
        decide(&table(g), s, d, p, port)
    });
    assert!(err.is_err(), "weave-npc should differ from the API somewhere in 2,000 connections");
}

/// A broken rule shows: without the DROP at the end of FORWARD for the bridge, an isolated
/// pod accepts what no policy allows.
#[test]
fn a_broken_forward_drop_is_caught() {
    let err =
        gen::compare_with_oracle(21, 200, 10, Shape::default(), Semantics::WEAVE_NPC, |g, s, d, p, port| {
            let mut t = table(g);
            for r in &mut t.chains[FORWARD].rules {
                if r.target == Target::Drop {
                    r.target = Target::Nothing;
                }
            }
            decide(&t, s, d, p, port)
        })
        .expect_err("a broken table must disagree with the oracle");
    eprintln!("{err}");
    assert!(err.contains("the enforcement allowed it, the oracle says denied"), "{err}");
}

/// Names as weave-npc makes them (python3: base 85 of sha1, least significant digit first);
/// `weave-k?Z;25^M}|1s7P3|H9i;*;MhG`, the default namespace's pod set, is the name every
/// Weave cluster's `ipset list` shows.
#[test]
fn set_names_are_weave_npcs() {
    assert_eq!(set_name("default:"), "weave-k?Z;25^M}|1s7P3|H9i;*;MhG");
    assert_eq!(set_name("ingress-default-allow:default"), "weave-;rGqyMIl1HN^cfDki~Z$3]6!N");
    assert_eq!(set_name("prod:app=web"), "weave-anQEOy+O~B?^X}4nos;CnjBJo");
}

#[test]
fn selectors_print_as_apimachinery_does() {
    use crate::policy::Requirement;
    let mut s = LabelSelector::labels(&[("tier", "db"), ("app", "web")]);
    s.match_expressions.push(Requirement {
        key: "env".into(),
        operator: Operator::NotIn,
        values: vec!["prod".into(), "dev".into()],
    });
    s.match_expressions.push(Requirement {
        key: "x".into(),
        operator: Operator::DoesNotExist,
        values: vec![],
    });
    assert_eq!(selector_string(&s), "app=web,env notin (dev,prod),tier=db,!x");
    assert_eq!(selector_string(&LabelSelector::all()), "");
}

/// The table of one namespace with a default deny and an allow by label, as iptables-save
/// prints it.
#[test]
fn saves_weave_npcs_chains() {
    use crate::policy::{Namespace, NetworkPolicy, PolicyPort, Rule as PRule};
    let labels_web: crate::policy::Labels = [("app".to_string(), "web".to_string())].into();
    let labels_cli: crate::policy::Labels = [("app".to_string(), "cli".to_string())].into();
    let pods = [
        PodRef {
            name: "web",
            namespace: "default",
            labels: &labels_web,
            ip: "10.32.0.2".parse().unwrap(),
            node: 0,
        },
        PodRef {
            name: "cli",
            namespace: "default",
            labels: &labels_cli,
            ip: "10.32.0.3".parse().unwrap(),
            node: 0,
        },
    ];
    let allow = NetworkPolicy {
        name: "allow-cli".into(),
        namespace: "default".into(),
        pod_selector: LabelSelector::labels(&[("app", "web")]),
        policy_types: vec![PolicyType::Ingress],
        ingress: vec![PRule {
            peers: vec![Peer::Pods {
                pods: Some(LabelSelector::labels(&[("app", "cli")])),
                namespaces: None,
            }],
            ports: vec![PolicyPort { protocol: Protocol::Tcp, port: Some(80), end_port: None }],
        }],
        egress: vec![],
    };
    let world = PolicyWorld {
        namespaces: vec![Namespace::new("default", Default::default())],
        policies: vec![allow],
    };
    let t = filter_table(&world, &pods, PORT);
    let saved = t.save();
    for line in [
        "-A FORWARD -i weave -m comment --comment \"NOTE: this must go before '-j KUBE-FORWARD'\" -j WEAVE-NPC-EGRESS",
        "-A FORWARD -o weave -m state --state NEW -j NFLOG --nflog-group 86",
        "-A FORWARD -i weave ! -o weave -j ACCEPT",
        "-A WEAVE-NPC -m physdev --physdev-out vethwe-bridge --physdev-is-bridged -j ACCEPT",
        "-A WEAVE-NPC-EGRESS -m addrtype --dst-type LOCAL -j RETURN",
        "-A WEAVE-NPC-DEFAULT -m set --match-set weave-;rGqyMIl1HN^cfDki~Z$3]6!N dst -m comment --comment \
         \"DefaultAllow ingress isolation for namespace: default\" -j ACCEPT",
        "-A WEAVE-NPC-INGRESS -p tcp -m set --match-set weave-{cli} src -m set --match-set weave-{web} \
         dst -m tcp --dport 80 -m comment --comment \"pods: namespace: default, selector: app=cli -> pods: namespace: \
         default, selector: app=web (ingress)\" -j ACCEPT",
    ] {
        let line =
            line.replace("{cli}", &short_name("default:app=cli")).replace("{web}", &short_name("default:app=web"));
        assert!(saved.lines().any(|l| l == line), "missing {line}\n{saved}");
    }
    // No egress policy: no egress DROP.
    assert!(!saved.contains("-A WEAVE-NPC-EGRESS -m mark ! --mark 0x40000/0x40000 -j DROP"), "{saved}");
    // web is isolated for ingress: not in its namespace's ingress default-allow set; cli is.
    let sets = t.save_sets();
    let ing = &t.sets[t.find_set(&set_name("ingress-default-allow:default")).unwrap()];
    assert_eq!(ing.members().len(), 1, "{sets}");
    assert_eq!(ing.members()[0].network().to_string(), "10.32.0.3");
    assert!(sets.contains("Type: hash:ip"), "{sets}");
}
