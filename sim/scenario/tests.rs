//! Tests of loading as a whole: the shipped scenarios resolve, defaults and overrides, leaf-spine
//! address plans, pod MTUs per CNI, and no input panics the loader.

use super::*;
use crate::cluster::{Client, CniOptions, Fabric, PodId, Target};

#[test]
fn quickstart_resolves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.ron");
    let c = match load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.name, "quickstart");
    assert_eq!(c.cni, crate::cluster::Cni::FlannelHostGw);
    let nodes: Vec<_> = c.nodes.iter().map(|n| (n.name.as_str(), n.ip.to_string())).collect();
    assert_eq!(
        nodes,
        [
            ("node-1", "192.168.0.1".into()),
            ("node-2", "192.168.0.2".into()),
            ("node-3", "192.168.0.3".into())
        ]
    );
    let subnets: Vec<_> = c.nodes.iter().map(|n| n.pod_subnet.to_string()).collect();
    assert_eq!(subnets, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);
    assert_eq!(c.pod_gateway(1).to_string(), "10.244.1.1");
    let pods: Vec<_> = c.pods.iter().map(|p| (p.name.as_str(), p.node, p.ip.to_string(), p.mtu)).collect();
    assert_eq!(
        pods,
        [
            ("node-1-pod-1", 0, "10.244.0.2".into(), 1500),
            ("node-1-pod-2", 0, "10.244.0.3".into(), 1500),
            ("node-2-pod-1", 1, "10.244.1.2".into(), 1500),
            ("node-2-pod-2", 1, "10.244.1.3".into(), 1500),
            ("node-3-pod-1", 2, "10.244.2.2".into(), 1500),
            ("node-3-pod-2", 2, "10.244.2.3".into(), 1500),
            ("server", 1, "10.244.1.4".into(), 1500),
        ]
    );
    assert_eq!(c.pods[6].labels.get("app").map(String::as_str), Some("server"));
    assert_eq!(c.pods[0].labels.get("node").map(String::as_str), Some("node-1"));
    let w: Vec<_> = c.workloads.iter().map(|w| (w.name.as_str(), w.flows.clone())).collect();
    assert_eq!(
        w,
        [
            ("same-node", vec![(Client::Pod(0), Target::Pod(1))]),
            ("cross-node", vec![(Client::Pod(0), Target::Pod(2))]),
            ("rr", vec![(Client::Pod(4), Target::Pod(6)), (Client::Pod(5), Target::Pod(6))])
        ]
    );
    assert_eq!(c.workloads[0].port, 5201);
    assert_eq!(c.workloads[2].start.as_nanos(), 100_000_000);
    assert_eq!(c.workloads[2].duration, Duration::from_millis(900));
    assert_eq!(c.duration, Duration::from_secs(1));
    assert_eq!(c.costs, CostProfile::default());
}

#[test]
fn missing_file_is_an_io_error() {
    let e = load(Path::new("/nonexistent/x.ron")).err();
    assert!(matches!(e, Some(Error::Io { .. })), "{e:?}");
}

#[test]
fn listed_nodes_defaults_and_cost_overrides() {
    let text = r#"Scenario(name: "l", duration: "10ms", cni: "flannel-host-gw",
            nodes: List([(name: "a"), (name: "b", cores: 8, nic: "25Gbit", mtu: 9000)]),
            pods: [(name: "p", node: "b"), (name: "q", node: "a")],
            workloads: [(name: "w", kind: UdpRr(request: 100, response: 8000), from: Pod("q"), to: Pod("p"),
                         start: "1ms", duration: "9ms")],
            costs: (veth_xmit: "400ns"))"#;
    let c = match load_str(text, "l.ron") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        (c.nodes[0].cores, c.nodes[0].mtu, c.nodes[0].nic_bandwidth),
        (4, 1500, Bandwidth(10_000_000_000))
    );
    assert_eq!((c.nodes[1].cores, c.nodes[1].mtu), (8, 9000));
    assert_eq!((c.pods[0].ip.to_string(), c.pods[0].mtu), ("10.244.1.2".to_string(), 9000));
    assert_eq!(c.pods[1].ip.to_string(), "10.244.0.2");
    assert_eq!(c.workloads[0].flows, [(Client::Pod(1), Target::Pod(0))]);
    assert_eq!(c.seed, 1);
    assert_eq!(c.costs.veth_xmit, Duration::from_nanos(400));
    assert_eq!(c.costs.bridge_forward, CostProfile::default().bridge_forward);
    assert_eq!(c.underlay.queue, ByteSize(512 * 1024));
}

/// Resolves like [`load_str`] but lets unimplemented CNIs through, to check what
/// resolution does for them.
fn resolve_text(text: &str, overrides: &Overrides) -> Result<Cluster, ScenarioError> {
    let scenario: Scenario =
        ron::Options::default().from_str(text).map_err(|e| ron_error(&e, text, "t.ron"))?;
    resolve::resolve(scenario, &resolve::Locator { text, path: "t.ron" }, overrides)
}

fn ok(r: Result<Cluster, ScenarioError>) -> Cluster {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A scenario with `cni`, `extra` top-level fields, and a workload sending `payload` bytes.
fn with_cni(cni: &str, extra: &str, payload: u32) -> String {
    format!(
        r#"Scenario(name: "m", duration: "10ms", cni: "{cni}", {extra}
                nodes: List([(name: "a"), (name: "b", mtu: 9000)]), pods_per_node: 1,
                workloads: [(name: "w", kind: UdpCbr(rate: "1Mbit", payload: {payload}),
                             from: Pod("a-pod-1"), to: Pod("b-pod-1"))])"#
    )
}

#[test]
fn leaf_spine_racks_addresses_and_blocks() {
    let text = r#"Scenario(name: "ls", duration: "10ms", cni: "flannel-host-gw",
            network: (node_cidr: "10.0.0.0/16"),
            nodes: Count(count: 7),
            underlay: (fabric: LeafSpine(racks: 3, spines: 4, uplink: "100Gbit", fabric_cidr: "172.16.0.0/24")))"#;
    let c = ok(load_str(text, "ls.ron"));
    let Fabric::LeafSpine { racks, spines, uplink, fabric_cidr, .. } = &c.underlay.fabric else {
        panic!("expected a leaf-spine fabric, got {:?}", c.underlay.fabric);
    };
    let racks: Vec<_> =
        racks.iter().map(|r| (r.name.as_str(), r.subnet.to_string(), r.gateway.to_string())).collect();
    assert_eq!(
        racks,
        [
            ("rack-1", "10.0.0.0/24".into(), "10.0.0.1".into()),
            ("rack-2", "10.0.1.0/24".into(), "10.0.1.1".into()),
            ("rack-3", "10.0.2.0/24".into(), "10.0.2.1".into()),
        ]
    );
    assert_eq!(
        (*spines, *uplink, fabric_cidr.to_string()),
        (4, Bandwidth(100_000_000_000), "172.16.0.0/24".into())
    );
    // 7 nodes in 3 racks: i * 3 / 7 gives blocks of 3, 2, 2.
    let nodes: Vec<_> = c
        .nodes
        .iter()
        .map(|n| (n.rack, n.ip.to_string(), n.prefix, n.gateway.map(|g| g.to_string())))
        .collect();
    let gw = |r: u8| Some(format!("10.0.{r}.1"));
    assert_eq!(
        nodes,
        [
            (0, "10.0.0.2".into(), 24, gw(0)),
            (0, "10.0.0.3".into(), 24, gw(0)),
            (0, "10.0.0.4".into(), 24, gw(0)),
            (1, "10.0.1.2".into(), 24, gw(1)),
            (1, "10.0.1.3".into(), 24, gw(1)),
            (2, "10.0.2.2".into(), 24, gw(2)),
            (2, "10.0.2.3".into(), 24, gw(2)),
        ]
    );
    // Pod subnets do not depend on the fabric.
    assert_eq!(c.nodes[6].pod_subnet.to_string(), "10.244.6.0/24");
}

#[test]
fn leaf_spine_defaults_and_listed_racks() {
    let text = r#"Scenario(name: "ls", duration: "10ms", cni: "flannel-host-gw",
            network: (node_cidr: "192.168.0.0/22"),
            nodes: List([(name: "a", rack: 2), (name: "b"), (name: "c"), (name: "d", rack: 2)]),
            underlay: (fabric: LeafSpine(racks: 2)))"#;
    let c = ok(load_str(text, "ls.ron"));
    let Fabric::LeafSpine { racks, spines, uplink, fabric_cidr, .. } = &c.underlay.fabric else {
        panic!("expected a leaf-spine fabric");
    };
    assert_eq!(racks.len(), 2);
    assert_eq!(
        (*spines, *uplink, fabric_cidr.to_string()),
        (2, Bandwidth(40_000_000_000), "172.31.0.0/16".into())
    );
    // a and d by `rack:`; b and c by position (1 * 2 / 4 = 0, 2 * 2 / 4 = 1).
    let nodes: Vec<_> = c.nodes.iter().map(|n| (n.name.as_str(), n.rack, n.ip.to_string())).collect();
    assert_eq!(
        nodes,
        [
            ("a", 1, "192.168.1.2".into()),
            ("b", 0, "192.168.0.2".into()),
            ("c", 1, "192.168.1.3".into()),
            ("d", 1, "192.168.1.4".into()),
        ]
    );
}

#[test]
fn l2_switch_is_the_default_fabric() {
    let c = ok(load_str(&with_cni("flannel-host-gw", "", 100), "m.ron"));
    assert!(matches!(c.underlay.fabric, Fabric::L2Switch));
    let nodes: Vec<_> = c.nodes.iter().map(|n| (n.ip.to_string(), n.prefix, n.rack, n.gateway)).collect();
    assert_eq!(nodes, [("192.168.0.1".into(), 24, 0, None), ("192.168.0.2".into(), 24, 0, None)]);
    assert_eq!((c.cni_options.mtu, c.cni_options.direct_routing), (None, false));
}

#[test]
fn pod_mtu_defaults_follow_the_cni() {
    let none = CniOptions::default();
    let cases = [
        (Cni::FlannelHostGw, 1500, 1500),
        (Cni::FlannelVxlan, 1500, 1450),
        (Cni::FlannelUdp, 1500, 1472),
        (Cni::CalicoIpip, 9000, 8980),
        (Cni::CiliumVxlan, 1500, 1500),
        (Cni::WeaveFastdp, 9000, 1376),
    ];
    for (cni, node, pod) in cases {
        assert_eq!(pod_mtu(cni, &none, node), pod, "{cni} on a {node} B node");
    }
    let set = CniOptions { mtu: Some(1400), direct_routing: false };
    assert_eq!(pod_mtu(Cni::FlannelVxlan, &set, 9000), 1400);

    // Through resolution, per node: a is 1500, b is 9000.
    let mtus = |cni: &str, extra: &str| -> Vec<u32> {
        ok(resolve_text(&with_cni(cni, extra, 100), &Overrides::default()))
            .pods
            .iter()
            .map(|p| p.mtu)
            .collect()
    };
    assert_eq!(mtus("flannel-vxlan", ""), [1450, 8950]);
    assert_eq!(mtus("calico-ipip", ""), [1480, 8980]);
    assert_eq!(mtus("weave-sleeve", ""), [1376, 1376]);
    assert_eq!(mtus("flannel-vxlan", "cni_options: (mtu: 1600),"), [1600, 1600]);
    let c = ok(resolve_text(
        &with_cni("flannel-vxlan", "cni_options: (direct_routing: true),", 100),
        &Overrides::default(),
    ));
    assert!(c.cni_options.direct_routing);
}

#[test]
fn payload_checked_against_the_final_pod_mtu() {
    let e = resolve_text(&with_cni("flannel-vxlan", "", 1440), &Overrides::default()).err();
    let msg = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains(
            "payload 1440 B + 28 B of IPv4/UDP headers exceeds the MTU 1450 of client pod 'a-pod-1' (the \
                 default pod MTU of flannel-vxlan on a node with MTU 1500; cni_options.mtu sets another); \
                 a pod sends datagrams of at most its MTU; lower payload to ≤ MTU-28 = 1422"
        ),
        "{msg}"
    );
    assert!(msg.starts_with("t.ron:3:78: "), "{msg}");
    // The same payload fits host-gw's 1500.
    ok(resolve_text(&with_cni("flannel-host-gw", "", 1440), &Overrides::default()));
}

#[test]
fn cni_override_replaces_the_file() {
    let vxlan = Overrides { cni: Some(Cni::FlannelVxlan), ..Default::default() };
    let hostgw = Overrides { cni: Some(Cni::FlannelHostGw), ..Default::default() };
    // A file naming an unimplemented CNI loads under an implemented override ...
    let c = ok(load_str_with(&with_cni("calico-ipip", "", 1440), "m.ron", &hostgw));
    assert_eq!((c.cni, c.pods[0].mtu), (Cni::FlannelHostGw, 1500));
    // ... and the MTU default and size checks follow the override.
    let e = resolve_text(&with_cni("flannel-host-gw", "", 1440), &vxlan).err();
    let msg = e.map(|e| e.message).unwrap_or_default();
    assert!(
        msg.contains("exceeds the MTU 1450") && msg.contains("flannel-vxlan (--cni flannel-vxlan)"),
        "{msg}"
    );
    let c = ok(resolve_text(&with_cni("flannel-host-gw", "", 100), &vxlan));
    assert_eq!((c.cni, c.pods[0].mtu), (Cni::FlannelVxlan, 1450));
    // direct_routing follows the override too.
    let e = load_str_with(
        &with_cni("flannel-vxlan", "cni_options: (direct_routing: true),", 100),
        "m.ron",
        &hostgw,
    );
    let msg = e.err().map(|e| e.message).unwrap_or_default();
    assert!(msg.contains("but the CNI is flannel-host-gw (--cni flannel-host-gw)"), "{msg}");
}

#[test]
fn pod_mtu_below_ipv4_minimum_is_an_error() {
    let text = with_cni("flannel-vxlan", "", 10).replace("(name: \"a\")", "(name: \"a\", mtu: 100)");
    let e = resolve_text(&text, &Overrides::default()).err().map(|e| e.message).unwrap_or_default();
    assert!(e.contains("node mtu 100 leaves flannel-vxlan pods an MTU of 50, below the IPv4 minimum of 68; raise the node mtu to at least 118"), "{e}");
    // A pod MTU above the node's is allowed: that is the misconfiguration to simulate.
    ok(resolve_text(&with_cni("flannel-vxlan", "cni_options: (mtu: 9000),", 100), &Overrides::default()));
}

#[test]
fn leaf_spine_example_resolves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/leaf-spine.ron");
    let c = match load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let Fabric::LeafSpine { racks, spines, .. } = &c.underlay.fabric else {
        panic!("expected a leaf-spine fabric");
    };
    assert_eq!((racks.len(), *spines, c.nodes.len()), (3, 2, 6));
    let rack_of = |pod: PodId| c.nodes[c.pods[pod].node].rack;
    let flows: Vec<_> = c
        .workloads
        .iter()
        .map(|w| {
            (
                rack_of(match w.flows[0].0 {
                    Client::Pod(p) => p,
                    Client::External(_) => unreachable!(),
                }),
                rack_of(match w.flows[0].1 {
                    Target::Pod(p) => p,
                    _ => unreachable!(),
                }),
            )
        })
        .collect();
    assert_eq!(flows, [(0, 0), (0, 2)]);
}

/// Truncated or mangled files give errors, never panics.
#[test]
fn never_panics_on_damaged_input() {
    for file in ["scenarios/quickstart.ron", "scenarios/leaf-spine.ron"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(path).unwrap_or_default();
        assert!(!text.is_empty(), "{file} missing");
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for (k, &i) in bounds.iter().enumerate() {
            assert!(i >= text.trim_end().len() || load_str(&text[..i], "q.ron").is_err());
            let next = bounds.get(k + 1).copied().unwrap_or(text.len());
            let _ = load_str(&format!("{}{}", &text[..i], &text[next..]), "q.ron");
        }
    }
}

mod policy;
