//! Saturation as Linux shows it: bounded kernel queues, sender back-pressure, CPU counted when
//! served. Every run here is a full simulation; the assertions are on what it measured.

use std::collections::BTreeMap;
use std::path::Path;

use cnisim::cluster::{Cluster, Cni};
use cnisim::run::Simulation;
use cnisim::scenario::{self, Overrides};
use cnisim::summary::{RunInfo, Summary};

use crate::repo;

fn load(text: &str, cni: Option<Cni>) -> Cluster {
    let o = Overrides { cni, ..Default::default() };
    scenario::load_str_with(text, "test.ron", &o).unwrap_or_else(|e| panic!("{e}"))
}

fn simulate(c: &Cluster) -> (Simulation, Summary) {
    let mut sim = Simulation::new(c);
    sim.run().unwrap_or_else(|e| panic!("{}: {e}", c.cni));
    let s = Summary::from_run(&sim, Vec::new(), RunInfo::default());
    (sim, s)
}

/// A two-node cluster, one pod per node, with `workloads` and extra node fields.
fn two_nodes(node_extra: &str, workloads: &str) -> String {
    format!(
        r#"Scenario(name: "sat", seed: 3, duration: "20ms", cni: "flannel-host-gw",
            nodes: Count(count: 2, cores: 2 {node_extra}), pods_per_node: 3,
            workloads: [{workloads}])"#
    )
}

fn stream(name: &str, from: &str, to: &str, payload: u32, port: u16) -> String {
    format!(
        r#"(name: "{name}", kind: UdpStream(payload: {payload}), from: Pod("{from}"), to: Pod("{to}"), port: {port}),"#
    )
}

fn cbr(rate_mbit: u64, payload: u32) -> String {
    format!(
        r#"(name: "cbr", kind: UdpCbr(rate: "{rate_mbit}Mbit", payload: {payload}), from: Pod("node-1-pod-1"), to: Pod("node-2-pod-1")),"#
    )
}

/// No core and no userspace process is busier than the run lasted, and the CPU breakdown adds
/// up to the CPU served, for every shipped scenario and an overload.
#[test]
fn no_core_is_busier_than_the_run_and_the_breakdown_adds_up() {
    let mut files: Vec<_> = ["scenarios", "scenarios/cni"]
        .iter()
        .flat_map(|d| std::fs::read_dir(repo(d)).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ron") && !p.ends_with("rule-scaling.ron"))
        .collect();
    files.sort();
    let mut texts: Vec<(String, String)> =
        files.iter().map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap())).collect();
    let quick = std::fs::read_to_string(repo("scenarios/quickstart.ron")).unwrap();
    let overload =
        quick.replace(r#"UdpCbr(rate: "100Mbit", payload: 1200)"#, r#"UdpCbr(rate: "10Gbit", payload: 64)"#);
    assert_ne!(overload, quick);
    texts.push(("overload".into(), overload));
    for (name, text) in &texts {
        let (sim, s) = simulate(&load(text, None));
        let end = sim.end.as_nanos();
        for (n, node) in sim.world.nodes.iter().enumerate() {
            for (k, core) in node.cores.iter().enumerate() {
                assert!(core.busy.as_nanos() <= end, "{name}: node {n} core {k} busy {} > {end}", core.busy);
                let steps: u64 = core.steps.iter().map(|d| d.as_nanos()).sum();
                assert_eq!(steps, core.busy.as_nanos(), "{name}: node {n} core {k} breakdown");
            }
        }
        for p in &sim.world.procs {
            assert!(p.busy.as_nanos() <= end, "{name}: {} busy {} > {end}", p.name, p.busy);
        }
        let served: u64 = sim
            .world
            .nodes
            .iter()
            .flat_map(|n| n.cores.iter().map(|c| c.busy.as_nanos()))
            .chain(sim.world.procs.iter().map(|p| p.busy.as_nanos()))
            .sum();
        assert_eq!(s.totals.cpu_ns, served, "{name}");
        assert_eq!(s.totals.cpu_by_step.values().sum::<u64>(), served, "{name}");
        for f in &s.flows {
            assert_eq!(f.cpu_by_step.values().sum::<u64>(), f.cpu_ns, "{name}: flow {}", f.id);
        }
        for u in s.nodes.iter().flat_map(|n| &n.cpu_utilisation) {
            assert!(*u <= 1.0, "{name}: utilisation {u}");
        }
    }
}

/// What is still in flight at the end is bounded by the buffers and queues the scenario
/// configures, however hard the senders push.
#[test]
fn in_flight_is_bounded_by_the_configured_buffers() {
    let quick = std::fs::read_to_string(repo("scenarios/quickstart.ron")).unwrap();
    let overload =
        quick.replace(r#"UdpCbr(rate: "100Mbit", payload: 1200)"#, r#"UdpCbr(rate: "10Gbit", payload: 64)"#);
    let c = load(&overload, None);
    let (sim, s) = simulate(&c);
    // Every datagram in flight sits in a socket buffer (at least 768 B of truesize each), a
    // core's RX ring or backlog, a qdisc, or a cable's byte queue (a frame is at least 60 B).
    let k = cnisim::cluster::KernelQueues::default();
    // No socket ever holds more than its buffer plus the skb that went over it.
    for f in &s.flows {
        assert!(
            f.peak_send_buffer_bytes <= u64::from(k.wmem_default) + 2_304,
            "flow {}: {}",
            f.id,
            f.peak_send_buffer_bytes
        );
    }
    let sockets = 2 * sim.flows.len() as u64 * u64::from(k.wmem_default + k.rmem_default) / 768;
    let cores: u64 = sim.world.nodes.iter().map(|n| n.cores.len() as u64).sum();
    let kernel = cores * u64::from(k.rx_ring + k.netdev_max_backlog) + sim.world.nodes.len() as u64 * 1000;
    let cables: u64 = sim.world.links.iter().map(|l| l.queue_limit / 60 + 1).sum();
    let bound = sockets + kernel + cables;
    assert!(s.totals.in_flight <= bound, "in flight {} > bound {bound}", s.totals.in_flight);
    // And far below it here: the sender blocks on its own core before any queue fills.
    assert!(s.totals.in_flight < 1_000, "{}", s.totals.in_flight);
    // The sender sent what its core allowed, not what it asked for.
    let same = &s.flows[0];
    assert!(same.offered.unwrap() > 10 * same.sent, "offered {:?} sent {}", same.offered, same.sent);
}

/// Offered 2x and 10x what the path carries, a kernel data plane delivers what it delivers at
/// 1.2x (within 10%): the excess is blocked at the sender or dropped where Linux drops it.
#[test]
fn kernel_data_planes_do_not_collapse_under_overload() {
    for cni in [Cni::FlannelHostGw, Cni::FlannelVxlan, Cni::CalicoIpip, Cni::CiliumGeneve] {
        // What one flow carries: a stream as fast as the socket allows.
        let (_, s) = simulate(&load(
            &two_nodes("", &stream("s", "node-1-pod-1", "node-2-pod-1", 64, 5201)),
            Some(cni),
        ));
        let capacity_bps = s.flows[0].throughput_bps;
        let delivered = |factor: f64| {
            let rate = (capacity_bps * factor / 1e6) as u64;
            let (_, s) = simulate(&load(&two_nodes("", &cbr(rate, 64)), Some(cni)));
            let f = &s.flows[0];
            f.delivered as f64
        };
        let base = delivered(1.2);
        for factor in [2.0, 10.0] {
            let d = delivered(factor);
            assert!((d - base).abs() <= 0.1 * base, "{cni}: {d} delivered at {factor}x, {base} at 1.2x");
        }
    }
}

fn drops(s: &Summary) -> BTreeMap<String, u64> {
    s.totals.drops_by_reason.clone()
}

fn counter_of(s: &Summary, reason: &str) -> String {
    s.totals
        .kernel_queue_drops
        .iter()
        .find(|d| d.reason == reason)
        .unwrap_or_else(|| panic!("no {reason} in {:?}", s.totals.kernel_queue_drops))
        .counter
        .clone()
}

/// A receiver slower than its sender overflows its socket's receive buffer (RcvbufErrors).
#[test]
fn a_slow_reader_overflows_its_receive_buffer() {
    let text = std::fs::read_to_string(repo("scenarios/saturation.ron")).unwrap();
    let (_, s) = simulate(&load(&text, None));
    assert!(drops(&s)["rcvbuf_full"] > 0, "{:?}", drops(&s));
    assert!(counter_of(&s, "rcvbuf_full").contains("RcvbufErrors"));
    // A smaller buffer overflows sooner.
    let small = text.replace(
        "nodes: Count(count: 2, cores: 4,",
        r#"nodes: Count(count: 2, cores: 4, sysctls: {"net.core.rmem_default": 16384},"#,
    );
    assert_ne!(small, text);
    let (_, t) = simulate(&load(&small, None));
    assert!(drops(&t)["rcvbuf_full"] > drops(&s)["rcvbuf_full"]);
    assert!(
        t.flows[0].peak_receive_buffer_bytes <= 16_384 + 4_096,
        "{}",
        t.flows[0].peak_receive_buffer_bytes
    );
}

/// Frames from three senders to one single-core receiver overrun a small RX ring.
#[test]
fn a_busy_core_overruns_its_rx_ring() {
    let text = r#"Scenario(name: "rx", seed: 1, duration: "10ms", cni: "flannel-host-gw",
        nodes: List([(name: "a", cores: 4), (name: "b", cores: 4), (name: "c", cores: 4),
                     (name: "sink", cores: 1, rx_ring: 64)]),
        pods_per_node: 2,
        workloads: [(name: "in", kind: UdpStream(payload: 64), from: Labels({}), to: Pod("sink-pod-1"))])"#;
    let (_, s) = simulate(&load(text, None));
    assert!(drops(&s).get("rx_ring_full").copied().unwrap_or(0) > 0, "{:?}", drops(&s));
    assert!(counter_of(&s, "rx_ring_full").contains("rx_missed_errors"));
}

/// Many senders on one core, with a one-packet backlog, overflow it (softnet_stat dropped).
#[test]
fn many_senders_on_one_core_overflow_the_backlog() {
    let text = r#"Scenario(name: "bl", seed: 1, duration: "5ms", cni: "flannel-host-gw",
        nodes: List([(name: "a", cores: 1, sysctls: {"net.core.netdev_max_backlog": 1}), (name: "b", cores: 4)]),
        pods_per_node: 6,
        workloads: [(name: "out", kind: UdpStream(payload: 64), from: Node("a"), to: Pod("b-pod-1"))])"#;
    let (_, s) = simulate(&load(text, None));
    assert!(drops(&s).get("backlog_full").copied().unwrap_or(0) > 0, "{:?}", drops(&s));
    assert!(counter_of(&s, "backlog_full").contains("softnet_stat"));
}

/// A NIC slower than its senders fills its qdisc; a single sender is held back by its own
/// send buffer first and blocks instead of dropping.
#[test]
fn a_slow_nic_blocks_one_sender_and_drops_at_the_qdisc_for_many() {
    let one = two_nodes(r#", nic: "100Mbit""#, &stream("s", "node-1-pod-1", "node-2-pod-1", 1000, 5201));
    let (_, s) = simulate(&load(&one, None));
    let f = &s.flows[0];
    assert!(f.send_blocks > 0, "the sender never blocked");
    assert_eq!(f.dropped, 0, "{:?}", f.drops_by_reason);
    // It sent what the NIC carries (100 Mbit/s of 1,070 B frames on the wire, 20 ms) plus what
    // the send buffer holds, not what its core could have sent.
    let on_the_wire = 100_000_000 * 20 / 1000 / (1070 * 8);
    let in_the_buffer = 212_992 / 2_304 + 1;
    assert!((on_the_wire..=on_the_wire + in_the_buffer + 2).contains(&f.sent), "{}", f.sent);
    assert!(f.peak_send_buffer_bytes <= 212_992 + 2_304, "{}", f.peak_send_buffer_bytes);
    let many: String = (1..=3)
        .map(|i| stream(&format!("s{i}"), &format!("node-1-pod-{i}"), "node-2-pod-1", 1000, 5200 + i))
        .collect();
    let text = two_nodes(r#", nic: "100Mbit", txqueuelen: 100"#, &many);
    let (_, s) = simulate(&load(&text, None));
    assert!(drops(&s).get("qdisc_drop").copied().unwrap_or(0) > 0, "{:?}", drops(&s));
    assert!(counter_of(&s, "qdisc_drop").contains("tc -s qdisc"));
}

/// flanneld reads flannel0 slower than three streams write it: the tun queue overflows.
#[test]
fn flanneld_slower_than_its_tun_drops_at_the_tun_queue() {
    let many: String = (1..=3)
        .map(|i| stream(&format!("s{i}"), &format!("node-1-pod-{i}"), "node-2-pod-1", 64, 5200 + i))
        .collect();
    let (_, s) = simulate(&load(&two_nodes("", &many), Some(Cni::FlannelUdp)));
    assert!(drops(&s).get("tun_queue_full").copied().unwrap_or(0) > 0, "{:?}", drops(&s));
    assert!(counter_of(&s, "tun_queue_full").contains("flannel0"));
}

/// Each flow names its bottleneck: the saturated core and the steps that took its time.
#[test]
fn the_report_names_each_flows_bottleneck() {
    let text = std::fs::read_to_string(repo("scenarios/saturation.ron")).unwrap();
    let (_, s) = simulate(&load(&text, Some(Cni::FlannelVxlan)));
    let b = s.flows[0].bottleneck.as_ref().unwrap();
    // Busy for the half of the run the 64 B flow ran: its core was saturated then.
    assert!(b.utilisation > 0.45, "{b:?}");
    assert!(!b.top_steps.is_empty());
    let dir = crate::scratch("sat-report");
    let opts = cnisim::app::RunOptions {
        out: Some(dir.join("r")),
        cni: Some(Cni::FlannelVxlan),
        ..Default::default()
    };
    cnisim::app::run(Path::new(&repo("scenarios/saturation.ron")), &opts).unwrap();
    let html = std::fs::read_to_string(dir.join("r/report.html")).unwrap();
    assert!(html.contains(&b.place), "the report names {}", b.place);
    assert!(html.contains("Where the CPU goes"));
}

/// Same scenario and seed, same bytes, with queues overflowing everywhere.
#[test]
fn saturation_is_deterministic() {
    let text = std::fs::read_to_string(repo("scenarios/saturation.ron")).unwrap();
    for cni in [Cni::FlannelHostGw, Cni::FlannelUdp, Cni::WeaveSleeve] {
        let a = simulate(&load(&text, Some(cni))).1.to_json();
        let b = simulate(&load(&text, Some(cni))).1.to_json();
        assert_eq!(a, b, "{cni}");
    }
}
