//! The quickstart scenario: what it delivers, how latency follows the underlay, and what
//! describe and trace show.

use cnisim::app::{self, RunOptions};
use cnisim::run::Simulation;
use cnisim::scenario::load_str;
use cnisim::summary::Summary;

use crate::{repo, scratch};

fn quickstart_text() -> String {
    std::fs::read_to_string(repo("scenarios/quickstart.ron")).unwrap()
}

#[test]
fn run_writes_a_complete_report() {
    let out = scratch("qs").join("report");
    let o = app::run(
        &repo("scenarios/quickstart.ron"),
        &RunOptions { out: Some(out.clone()), ..Default::default() },
    )
    .unwrap();
    for f in ["report.html", "summary.json", "flows.csv", "latency_cdf.png", "cpu.png", "drops.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let s: Summary = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    // The file holds what the run returned (floats under `run` may differ in the last digit).
    assert_eq!(
        (&s.scenario, &s.totals, &s.flows, &s.nodes, &s.paths),
        (&o.summary.scenario, &o.summary.totals, &o.summary.flows, &o.summary.nodes, &o.summary.paths)
    );
    let t = &s.totals;
    assert!(t.sent > 0);
    assert_eq!(t.sent, t.delivered + t.dropped + t.in_flight);
    assert_eq!(t.dropped, 0, "{:?}", t.drops_by_reason);
    // 100 Mbit/s of 1200 B datagrams for 1 s: one every 96 us, 10417 in all (k = 0..10416).
    let same = &s.flows[0];
    assert_eq!((same.workload.as_str(), same.sent, same.delivered), ("same-node", 10417, 10417));
    // 1200 B payload in a 1242 B frame (14 Ethernet + 20 IPv4 + 8 UDP).
    assert_eq!(same.wire_bytes, 10417 * 1242);
    assert!((same.overhead_ratio - 42.0 / 1200.0).abs() < 1e-12);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // No Services in the quickstart: no Services section, and no link to one.
    assert!(!html.contains("id=\"services\"") && !html.contains("href=\"#services\""));
    assert!(html.contains("node-1-pod-1") && html.contains("flannel-host-gw"));
}

#[test]
fn same_node_is_faster_than_cross_node_which_pays_the_wire() {
    let c = load_str(&quickstart_text(), "quickstart.ron").unwrap();
    let mut sim = Simulation::new(&c);
    sim.run().unwrap();
    let s = Summary::from_run(
        &sim,
        Vec::new(),
        cnisim::summary::RunInfo { cnisim_version: String::new(), wall_seconds: 0.0, events_per_second: 0.0 },
    );
    let (same, cross) = (&s.flows[0], &s.flows[1]);
    assert!(same.same_node && !cross.same_node);
    assert!(
        same.latency.p50_ns < cross.latency.p50_ns,
        "{} vs {}",
        same.latency.p50_ns,
        cross.latency.p50_ns
    );
    // Cross-node: two cables of 5 us, each serialising 1242 + 24 B at 10 Gbit/s (1012.8 ns).
    let wire = 2 * 5_000 + 2 * 1_013;
    assert!(cross.latency.min_ns >= wire, "{} < {wire}", cross.latency.min_ns);
}

/// Raising the cable propagation delay moves cross-node latency by exactly the added delay on
/// both cables, and leaves same-node latency alone.
#[test]
fn latency_follows_link_propagation() {
    let base = quickstart_text();
    assert!(base.contains("propagation: \"5us\""));
    let slow = base.replace("propagation: \"5us\"", "propagation: \"55us\"");
    let p50 = |text: &str| {
        let mut sim = Simulation::new(&load_str(text, "q.ron").unwrap());
        sim.run().unwrap();
        let f = &sim.obs.flows;
        (f[0].latency.value_at_quantile(0.5), f[1].latency.value_at_quantile(0.5))
    };
    let (same_a, cross_a) = p50(&base);
    let (same_b, cross_b) = p50(&slow);
    assert_eq!(same_a, same_b, "same-node traffic never touches a cable");
    let added = cross_b as i64 - cross_a as i64;
    // Two cables, +50 us each; histogram resolution is 3 significant digits.
    assert!((added - 100_000).abs() <= 200, "cross-node p50 moved by {added} ns");
}

#[test]
fn describe_prints_host_gw_tables() {
    let s = app::describe(&repo("scenarios/quickstart.ron"), "node-1", None, Default::default()).unwrap();
    for want in [
        "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500",
        "cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP",
        "master cni0 state UP",
        "inet 192.168.0.1/24 brd 192.168.0.255 scope global eth0",
        "10.244.1.0/24 via 192.168.0.2 dev eth0\n",
        "10.244.2.0/24 via 192.168.0.3 dev eth0\n",
        "10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1",
        "local 10.244.0.1 dev cni0 proto kernel scope host src 10.244.0.1",
        "default via 10.244.0.1 dev eth0",
        "net.ipv4.ip_forward = 1",
        "0a:58:0a:f4:00:02 dev veth",
        "192.168.0.2 dev eth0 lladdr 02:00:00:00:00:02 REACHABLE",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    let err =
        app::describe(&repo("scenarios/quickstart.ron"), "node-9", None, Default::default()).err().unwrap();
    assert!(err.to_string().contains("nodes: node-1, node-2, node-3"), "{err}");
}

#[test]
fn trace_shows_arp_then_the_routed_path() {
    let t =
        app::trace(&repo("scenarios/quickstart.ron"), "node-1-pod-1", "node-2-pod-1", 64, Default::default())
            .unwrap();
    assert!(t.delivered, "{}", t.render());
    let data: Vec<String> = t
        .hops
        .iter()
        .filter(|(of, _)| *of == cnisim::trace::HopOf::Data)
        // The nat-table walk of each new connection is checked in tests/e2e/services.rs.
        .filter(|(_, h)| h.action != "nat" && h.action != "rule")
        .map(|(_, h)| format!("{} {} {}", h.place, h.device, h.action))
        .collect();
    let expected = [
        "pod/node-1-pod-1 eth0 sendmsg",
        "pod/node-1-pod-1 eth0 route",
        "pod/node-1-pod-1 eth0 queue",
        "pod/node-1-pod-1 eth0 resume",
        "pod/node-1-pod-1 eth0 xmit",
        "node-1 cni0 local",
        "node-1 eth0 forward",
        "node-1 eth0 queue",
        "node-1 eth0 resume",
        "node-1 eth0 xmit",
        "underlay switch port 0 forward",
        "node-2 eth0 rx",
        "node-2 cni0 forward",
        "node-2 cni0 queue",
        "node-2 cni0 resume",
    ];
    assert_eq!(&data[..expected.len()], expected, "{}", t.render());
    // The kernel queues the datagram on the socket; the application's recvmsg reads it.
    assert_eq!(data[data.len() - 2..], ["pod/node-2-pod-1 eth0 deliver", "pod/node-2-pod-1 socket recvmsg"]);
    assert!(t.hops.iter().any(|(of, h)| *of == cnisim::trace::HopOf::Arp && h.action == "arp"));
}
