//! Calico's BGP control plane end to end (`scenarios/bgp-mesh-vs-rr.ron`,
//! `scenarios/node-failure.ron`): sessions per topology, every node's kernel with exactly the
//! other nodes' blocks after convergence and nothing before, the power-off black hole lasting
//! the (jittered) hold time, the graceful shutdown withdrawn at once, BGP on the wire as tshark
//! decodes it, and the same bytes for the same seed.

use cnisim::app::{self, Choice, RunOptions};
use cnisim::summary::Summary;

use crate::{repo, scratch, tshark, without_run};

fn run(file: &str, out: std::path::PathBuf, pcap: Vec<String>) -> Summary {
    let opts = RunOptions { out: Some(out), pcap, ..Default::default() };
    app::run(&repo(file), &opts).unwrap().summary
}

#[test]
fn a_mesh_has_a_session_per_pair_and_every_node_routes_every_other_block() {
    let dir = scratch("bgp-mesh");
    let s = run("scenarios/bgp-mesh-vs-rr.ron", dir.join("out"), vec!["node-1/eth0".into()]);
    let b = s.bgp.as_ref().expect("bgp summary");
    assert_eq!(b.topology, "node-to-node mesh");
    assert_eq!(b.sessions, 8 * 7 / 2);
    assert_eq!(b.sessions_established, 28);
    // Each node's block to each other node once: what the memory estimate counts.
    assert_eq!(b.routes_announced, 8 * 7);
    // The overhead probe measures IPIP's outer header on the converged routes.
    assert_eq!(s.overhead.len(), 7);
    assert!(s.overhead.iter().all(|o| o.overhead_bytes == 20), "{:?}", s.overhead);
    for n in &b.nodes {
        assert_eq!(n.fib_routes, 7, "{}: one block of each other node", n.node);
        assert_eq!(n.kernel_routes_added, 7);
        assert_eq!(n.established, 7);
    }
    // Nothing gets through before the 2 s connect delay; all of it after convergence.
    let start = &b.convergence[0];
    assert_eq!(start.cause, "start");
    assert!((2_000_000_000..2_100_000_000).contains(&start.to_ns), "{start:?}");
    let f = &s.flows[0];
    assert!(f.delivered > 0 && f.sent - f.delivered >= 240, "sent {} delivered {}", f.sent, f.delivered);
    // Every BGP message on node-1's wire decodes, nothing malformed.
    let pcap = dir.join("out/pcap/node-1-eth0.pcap");
    let p = pcap.to_str().unwrap();
    let msgs = tshark(&["-r", p, "-Y", "bgp", "-T", "fields", "-e", "bgp.type"]);
    let types: Vec<&str> = msgs.lines().flat_map(|l| l.split(',')).collect();
    assert!(types.contains(&"1") && types.contains(&"2") && types.contains(&"4"), "{types:?}");
    assert_eq!(tshark(&["-r", p, "-Y", "_ws.malformed"]).trim(), "");
    // describe shows BIRD's and calicoctl's views.
    let d = app::describe(&repo("scenarios/bgp-mesh-vs-rr.ron"), "node-1", None, Choice::default()).unwrap();
    assert!(d.contains("Mesh_192_168_0_8 BGP      master   up"), "{d}");
    assert!(d.contains("| node-to-node mesh | up    |"), "{d}");
    assert!(d.contains("proto bird"), "{d}");
    // Before the connect delay, no BGP route in the kernel.
    let early = app::describe(
        &repo("scenarios/bgp-mesh-vs-rr.ron"),
        "node-1",
        Some(cnisim::time::Duration::from_secs(1)),
        Choice::default(),
    )
    .unwrap();
    assert!(!early.contains("proto bird"), "{early}");
}

#[test]
fn power_off_black_holes_for_the_hold_time_and_a_stop_is_withdrawn_at_once() {
    let dir = scratch("bgp-fail");
    let s = run("scenarios/node-failure.ron", dir.join("a"), Vec::new());
    let b = s.bgp.as_ref().unwrap();
    assert_eq!(b.topology, "route reflectors");
    // Two reflectors peer with each other and with both clients: 1 + 2 * 2.
    assert_eq!(b.sessions, 5);
    let off = b.convergence.iter().find(|c| c.cause == "power_off node-3").expect("power-off converged");
    // BIRD arms the hold timer at 240 s minus up to a quarter, from the dead node's last
    // message (at most one keepalive, 80 s, before the power-off).
    let d = off.duration_ns as f64 / 1e9;
    assert!((180.0 - 80.0..=240.0).contains(&d), "black hole {d} s");
    assert!(off.drops.get("node_down").copied().unwrap_or(0) > 0, "{off:?}");
    let stop = b.convergence.iter().find(|c| c.cause == "stop_bird node-4").expect("stop converged");
    assert!(stop.duration_ns < 10_000_000, "withdrawn within a propagation round: {stop:?}");
    let n4 = b.nodes.iter().find(|n| n.node == "node-4").unwrap();
    assert!(!n4.running);
    assert_eq!(n4.kernel_routes_removed, 0, "BIRD's `persist`: the kernel keeps its routes");
    // Same seed, same bytes.
    let again = run("scenarios/node-failure.ron", dir.join("b"), Vec::new());
    let strip = |s: &Summary| without_run(serde_json::to_value(s).unwrap());
    assert_eq!(strip(&s), strip(&again));
}

/// `scenarios/bgp-mesh-vs-rr.ron` swept over small clusters: the sessions each topology has by
/// its formula, every node's kernel with every other block, the figures in the report, and the
/// same sweep.json points on 1 and 2 threads.
#[test]
fn the_topology_sweep_counts_sessions_by_topology_and_converges() {
    let dir = scratch("bgp-sweep");
    let text = std::fs::read_to_string(repo("scenarios/bgp-mesh-vs-rr.ron")).unwrap();
    let text = text.replace("values: [10, 25, 50, 100, 150]", "values: [8, 12]");
    assert!(text.contains("values: [8, 12]") && text.contains("bgp: [\"mesh\", \"rr:2\", \"rr:4\"]"));
    let path = dir.join("bgp-sweep.ron");
    std::fs::write(&path, text).unwrap();
    let (out, one) = app::sweep(&path, Some(dir.join("one")), Some(1), false, None).unwrap();
    assert_eq!(one.bgp_topologies, ["mesh", "rr:2", "rr:4"]);
    assert_eq!(one.points.len(), 6);
    for p in &one.points {
        let n = p.value as usize;
        let b = p.bgp.as_ref().expect("every point simulates BGP");
        let want = match p.topology.as_deref().unwrap() {
            "mesh" => n * (n - 1) / 2,
            "rr:2" => 1 + 2 * (n - 2),
            "rr:4" => 6 + 4 * (n - 4),
            t => panic!("{t}"),
        };
        assert_eq!((b.sessions, b.sessions_established), (want, want), "{:?} at {n}", p.topology);
        assert_eq!(b.fib_routes_max, n - 1, "{:?} at {n}", p.topology);
        let c = b.convergence_ns.expect("converged");
        assert!((2_000_000_000..2_500_000_000).contains(&c), "{c}");
    }
    // A reflector's CPU grows with its clients; a mesh node's with its peers.
    let cpu = |t: &str, v: u32| {
        one.points
            .iter()
            .find(|p| p.value == v && p.topology.as_deref() == Some(t))
            .unwrap()
            .bgp
            .as_ref()
            .unwrap()
            .cpu_ns_max
    };
    assert!(cpu("rr:2", 12) > cpu("rr:2", 8));
    assert!(cpu("mesh", 12) > cpu("mesh", 8));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("BGP sessions in the cluster") && html.contains("<h3>BGP control plane</h3>"));
    let csv = std::fs::read_to_string(out.join("bgp_sessions.csv")).unwrap();
    assert!(csv.starts_with("proxy,topology,value,bgp_sessions\niptables,mesh,8,28\n"), "{csv}");
    let (_, two) = app::sweep(&path, Some(dir.join("two")), Some(2), false, None).unwrap();
    assert_eq!(one.points, two.points);
}

/// A datagram traced during the power-off black hole meets the stale BIRD route through the
/// dead node and dies there; traced after the hold timer, it finds no route to the block.
#[test]
fn a_datagram_traced_in_the_black_hole_shows_the_stale_route() {
    let path = repo("scenarios/node-failure.ron");
    let trace = |at: u64| {
        app::trace_at(
            &path,
            "node-1-pod-1",
            "node-3-pod-1",
            64,
            Some(cnisim::time::Duration::from_secs(at)),
            None,
            Choice::default(),
        )
        .unwrap()
    };
    let during = trace(15);
    assert!(during.header.contains("at 15s"), "{}", during.header);
    assert_eq!(during.outcome, "dropped: node_down");
    assert!(
        during
            .hops
            .iter()
            .any(|(_, h)| h.why.contains("matches 10.244.2.0/26 via 192.168.0.3 dev tunl0 proto bird")),
        "{}",
        during.render()
    );
    let after = trace(250);
    assert!(!after.delivered);
    assert!(!after.hops.iter().any(|(_, h)| h.why.contains("10.244.2.0/26")), "{}", after.render());
    assert!(
        after
            .hops
            .iter()
            .any(|(_, h)| h.why.contains("10.244.2.2 matches default via 192.168.0.254 dev eth0")),
        "{}",
        after.render()
    );
    // Before the power-off the same datagram is delivered.
    assert!(trace(8).delivered);
}

/// With BIRD started over a window, a peer that connects before the other end's BIRD listens is
/// refused and retries: the mesh still converges, from the first start, to complete FIBs, and
/// the same seed gives the same control plane.
#[test]
fn birds_started_over_a_window_converge_from_the_first_start() {
    let dir = scratch("bgp-spread");
    let text = std::fs::read_to_string(repo("scenarios/bgp-mesh-vs-rr.ron"))
        .unwrap()
        .replace("duration: \"5s\"", "duration: \"30s\"")
        .replace("    bgp: (\n", "    bgp: (\n        start_spread: \"10s\",\n");
    assert!(text.contains("start_spread: \"10s\""));
    let path = dir.join("spread.ron");
    std::fs::write(&path, text).unwrap();
    let s = run(path.to_str().unwrap(), dir.join("a"), Vec::new());
    let b = s.bgp.as_ref().unwrap();
    assert_eq!(b.sessions_established, 28);
    assert!(b.nodes.iter().all(|n| n.fib_routes == 7));
    let start = &b.convergence[0];
    assert_eq!(start.cause, "start");
    assert!(start.from_ns > 0 && start.from_ns < 10_000_000_000, "{start:?}");
    // Some peer connected before the other end's BIRD listened: refused, it tried again.
    let refused = (1..=8).any(|n| {
        [3, 5, 8].iter().any(|&at| {
            app::describe(
                &path,
                &format!("node-{n}"),
                Some(cnisim::time::Duration::from_secs(at)),
                Choice::default(),
            )
            .unwrap()
            .contains("Active        Socket: Connection refused")
        })
    });
    assert!(refused, "no connection was refused while BIRDs were starting");
    let again = run(path.to_str().unwrap(), dir.join("b"), Vec::new());
    assert_eq!(again.bgp, s.bgp);
}

/// `scenarios/bird-restart.ron`: BIRD restarted on a client and on a reflector under traffic.
/// Graceful restart keeps every route in use: nothing is lost, each restart has converged once
/// the new BIRD has every End-of-RIB (after the 2 s connect delay), its OPENs on the wire carry
/// the Restart State bit, and the kernel lost no route. Without graceful restart (restart time
/// 0) the peers drop the restarted node's routes and datagrams to it are lost.
#[test]
fn a_bird_restart_loses_nothing_with_graceful_restart_and_loses_datagrams_without() {
    let dir = scratch("bgp-restart");
    let s = run("scenarios/bird-restart.ron", dir.join("a"), vec!["node-4/eth0".into()]);
    let b = s.bgp.as_ref().unwrap();
    assert!(s.flows.iter().all(|f| f.delivered == f.sent), "{:?}", s.totals.drops_by_reason);
    for (cause, at) in [("restart_bird node-4", 10), ("restart_bird node-1", 30)] {
        let c = b.convergence.iter().find(|c| c.cause == cause).unwrap_or_else(|| panic!("{cause}: {b:?}"));
        assert_eq!(c.from_ns, at * 1_000_000_000);
        let d = c.duration_ns as f64 / 1e9;
        assert!((2.0..2.1).contains(&d), "{cause}: recovered in {d} s");
        assert!(c.drops.is_empty(), "{c:?}");
    }
    assert!(b.unconverged.is_empty());
    for n in &b.nodes {
        assert_eq!(n.established, n.sessions, "{}", n.node);
        assert_eq!(n.kernel_routes_removed, 0, "{}: no route left the kernel", n.node);
        assert_eq!(n.fib_routes, 3, "{}", n.node);
    }
    // Restart State is set by a BIRD started with -R until its recovery ends (calico-node
    // starts it so at boot too): on node-4's two OPENs after its restart at 10 s (sent at 12 s,
    // after the connect delay) but not on its peers' answers; on node-1's after 30 s but not on
    // node-4's answer. The capture decodes whole.
    let pcap = dir.join("a/pcap/node-4-eth0.pcap");
    let p = pcap.to_str().unwrap();
    let opens = tshark(&[
        "-r",
        p,
        "-Y",
        "bgp.type == 1",
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "ip.src",
        "-e",
        "bgp.cap.gr.timers.restart_flag",
    ]);
    let rows: Vec<Vec<&str>> = opens.lines().map(|l| l.split('\t').collect()).collect();
    let restarting = |from: &str, lo: f64, hi: f64| {
        rows.iter()
            .filter(|r| r[1] == from && (lo..hi).contains(&r[0].parse::<f64>().unwrap()))
            .map(|r| r[2] == "1" || r[2] == "True")
            .collect::<Vec<bool>>()
    };
    assert_eq!(restarting("192.168.0.4", 10.0, 30.0), [true, true], "{opens}");
    assert_eq!(restarting("192.168.0.1", 10.0, 30.0), [false], "{opens}");
    assert_eq!(restarting("192.168.0.1", 30.0, 60.0), [true], "{opens}");
    assert_eq!(restarting("192.168.0.4", 30.0, 60.0), [false], "{opens}");
    assert_eq!(tshark(&["-r", p, "-Y", "_ws.malformed || tcp.analysis.lost_segment"]).trim(), "");
    // Without graceful restart, node-2 drops node-4's route until it is announced again.
    let text = std::fs::read_to_string(repo("scenarios/bird-restart.ron")).unwrap().replace(
        "bgp: (route_reflectors: [\"node-1\", \"node-2\"]),",
        "bgp: (route_reflectors: [\"node-1\", \"node-2\"], graceful_restart: \"0s\"),",
    );
    let file = dir.join("no-gr.ron");
    std::fs::write(&file, text).unwrap();
    let opts = RunOptions { out: Some(dir.join("b")), ..Default::default() };
    let s0 = app::run(&file, &opts).unwrap().summary;
    let lost = s0.flows[0].sent - s0.flows[0].delivered;
    assert!(lost >= 25, "two seconds at 25 datagrams/s lost to node-4, got {lost}");
    // Same seed, same bytes.
    let again = run("scenarios/bird-restart.ron", dir.join("c"), vec!["node-4/eth0".into()]);
    let strip = |s: &Summary| without_run(serde_json::to_value(s).unwrap());
    assert_eq!(strip(&s), strip(&again));
    assert_eq!(std::fs::read(&pcap).unwrap(), std::fs::read(dir.join("c/pcap/node-4-eth0.pcap")).unwrap());
}

/// Two route reflectors, three clients: with one reflector powered off the clients keep the
/// other's paths (ADD-PATH gives them both) and lose nothing; with both off, once the hold
/// timers expire, the clients have no route to one another: "routes lost", not converged.
const RR_FAILURE: &str = r#"Scenario(
    name: "rr-failure",
    seed: 3,
    duration: "600s",
    cni: "calico-ipip",
    nodes: Count(count: 5, cores: 2),
    pods_per_node: 1,
    bgp: (route_reflectors: ["node-1", "node-2"]),
    changes: [
        (at: "10s", power_off: "node-1"),
        (at: "300s", power_off: "node-2"),
    ],
    workloads: [
        (name: "clients", kind: UdpCbr(rate: "20Kbit", payload: 500), from: Pod("node-3-pod-1"), to: Pod("node-5-pod-1"), start: "5s"),
    ],
)"#;

#[test]
fn one_reflector_down_loses_nothing_and_both_down_leave_the_clients_without_routes() {
    let dir = scratch("bgp-rr-failure");
    let file = dir.join("rr-failure.ron");
    std::fs::write(&file, RR_FAILURE).unwrap();
    let opts = RunOptions { out: Some(dir.join("a")), ..Default::default() };
    let s = app::run(&file, &opts).unwrap().summary;
    let b = s.bgp.as_ref().unwrap();
    let one = b.convergence.iter().find(|c| c.cause == "power_off node-1").expect("first reflector");
    assert!(one.drops.is_empty(), "{one:?}");
    // Between the two failures node-3 routes every other live block through node-2's paths.
    let mid = app::describe(&file, "node-3", Some(cnisim::time::Duration::from_secs(250)), Choice::default())
        .unwrap();
    for block in ["10.244.1.0/26", "10.244.3.0/26", "10.244.4.0/26"] {
        assert!(mid.contains(&format!("{block} via")), "{block}: {mid}");
    }
    assert!(!mid.contains("10.244.0.0/26 via"), "node-1's block withdrawn: {mid}");
    assert!(mid.contains("Error: Hold timer expired"), "{mid}");
    // With both gone the clients' routes to one another expire with their hold timers.
    let (cause, since) = b.unconverged.first().expect("routes lost for good");
    assert_eq!(cause, "routes lost after power_off node-2");
    let since_s = *since as f64 / 1e9;
    assert!((300.0 + 180.0 - 80.0..=540.0).contains(&since_s), "routes lost at {since_s} s");
    for n in b.nodes.iter().filter(|n| !n.route_reflector) {
        assert_eq!((n.established, n.fib_routes), (0, 0), "{}", n.node);
    }
    // 5 datagrams a second: everything sent after the loss (less what is still held for ARP at
    // the end), nothing before it.
    let f = &s.flows[0];
    let lost = (f.sent - f.delivered) as f64;
    let after = 5.0 * (600.0 - since_s);
    assert!((after - 20.0..=after + 5.0).contains(&lost), "lost {lost}, {after} sent after {since_s} s");
    let again =
        app::run(&file, &RunOptions { out: Some(dir.join("b")), ..Default::default() }).unwrap().summary;
    let strip = |s: &Summary| without_run(serde_json::to_value(s).unwrap());
    assert_eq!(strip(&s), strip(&again));
}

/// BIRD moves a running timer when it restarts it (`tm_start`): the queue holds one event per
/// timer, not one per restart (the hold timer restarts on every message received, the
/// keepalive timer on every message sent).
#[test]
fn a_restarted_timer_is_moved_not_queued_again() {
    let text = std::fs::read_to_string(repo("scenarios/bgp-mesh-vs-rr.ron")).unwrap();
    let c = cnisim::scenario::load_str(&text, "bgp-mesh-vs-rr.ron").unwrap();
    let mut sim = cnisim::run::Simulation::new(&c);
    sim.run().unwrap();
    let timers = sim
        .queue
        .pending()
        .filter(|e| {
            matches!(e, cnisim::run::Event::Bird { work: cnisim::run::bgp::BirdWork::Timer { .. }, .. })
        })
        .count();
    // 8 speakers with 7 peers each: hold and keepalive on each session, at least, plus an event
    // left behind each time a jittered restart moved a timer earlier (rare: a new low).
    let b = sim.bgp.as_ref().unwrap();
    let messages: u64 = b
        .birds
        .iter()
        .flat_map(|x| x.speaker.peers.iter())
        .map(|p| p.stats.received.iter().sum::<u64>() + p.stats.sent.iter().sum::<u64>())
        .sum();
    assert!(
        (8 * 7 * 2..messages as usize / 2).contains(&timers),
        "{timers} timer events for {messages} messages"
    );
}

/// A node joins a converged cluster (`scenarios/node-join.ron`), in the mesh and with two
/// reflectors: a session to every mesh peer (or to each reflector), no route to its block
/// anywhere before the join nor within the peers' connect delay after it, every node's
/// routes complete after it, the new node's pods unreachable until then and its own client
/// served once it has the routes back; the same bytes for the same seed.
#[test]
fn a_joining_node_is_reachable_once_its_peers_have_its_route() {
    let shipped = std::fs::read_to_string(repo("scenarios/node-join.ron")).unwrap();
    for (rr, sessions) in [(false, 8 * 7 / 2), (true, 1 + 2 * 6)] {
        let dir = scratch(if rr { "bgp-join-rr" } else { "bgp-join-mesh" });
        let file = dir.join("node-join.ron");
        let text =
            if rr { shipped.replace("// route_reflectors", "route_reflectors") } else { shipped.clone() };
        std::fs::write(&file, &text).unwrap();
        let s =
            app::run(&file, &RunOptions { out: Some(dir.join("a")), ..Default::default() }).unwrap().summary;
        let b = s.bgp.as_ref().unwrap();
        assert_eq!((b.sessions, b.sessions_established), (sessions, sessions), "rr {rr}");
        assert!(b.unconverged.is_empty(), "{:?}", b.unconverged);
        for n in &b.nodes {
            assert_eq!(n.fib_routes, 7, "{}: every other node's block", n.node);
        }
        let join = b.convergence.iter().find(|c| c.cause == "join_node node-8").expect("join converged");
        assert_eq!(join.from_ns, 10_000_000_000);
        let r = join.reached.as_ref().expect("reachability");
        assert_eq!(r.peers, 7);
        // Each peer's new session opens after its 2 s connect delay (a reflector's, for the
        // clients), then one OPEN/KEEPALIVE round trip and an UPDATE on a LAN.
        assert!(r.first_ns >= 2_000_000_000 && r.last_ns < 2_050_000_000, "{r:?}");
        assert!(r.first_ns <= r.median_ns && r.median_ns <= r.last_ns);
        assert!(join.duration_ns >= r.last_ns, "{join:?}");
        // node-3's datagrams to node-8's pod: 250 a second from 5 s, none through before
        // node-3 has the route (12 s), all of them after.
        let to_new = &s.flows[0];
        let lost = to_new.sent - to_new.delivered;
        assert!((7 * 250..7 * 250 + 10).contains(&lost), "lost {lost} of {}", to_new.sent);
        // Dropped where they go without a route: at the site's router.
        assert_eq!(join.drops.keys().collect::<Vec<_>>(), ["no_route"], "{join:?}");
        // The request/response client on node-8 starts at 11 s: its SYN follows node-8's
        // default route to the site's router, which has no route to pods, until node-8 has
        // node-4's route; then it is retransmitted.
        let from_new = &s.flows[1];
        assert!(from_new.transactions > 100_000, "{from_new:?}");
        let syn = &from_new.tcp.as_ref().unwrap().streams[0];
        assert!(syn.retransmits[0] > 0 && syn.drops_by_reason.contains_key("no_route"), "{syn:?}");
        // What node-3's kernel and BIRD show before the join, in the connect delay, after.
        let at = |secs| {
            app::describe(&file, "node-3", Some(cnisim::time::Duration::from_secs(secs)), Choice::default())
                .unwrap()
        };
        let before = at(5);
        assert!(!before.contains("10.244.7.0/26") && !before.contains("192_168_0_8"), "{before}");
        let waiting = at(11);
        assert!(!waiting.contains("10.244.7.0/26 via"), "{waiting}");
        let peer = if rr { "Node_192_168_0_1" } else { "Mesh_192_168_0_8" };
        assert!(waiting.contains(peer), "{waiting}");
        let after = at(13);
        assert!(after.contains("10.244.7.0/26 via 192.168.0.8 dev tunl0 proto bird onlink"), "{after}");
        let again = app::run(&file, &RunOptions { out: Some(dir.join("b")), ..Default::default() }).unwrap();
        let strip = |s: &Summary| without_run(serde_json::to_value(s).unwrap());
        assert_eq!(strip(&s), strip(&again.summary));
    }
}

/// The join sweep (`cnisim sweep scenarios/node-join.ron`, cut to 8 and 12 nodes): every point
/// measures the join's period and what it lost, the same points on 1 and 2 threads.
#[test]
fn the_join_sweep_measures_each_join_the_same_on_any_thread_count() {
    let dir = scratch("bgp-join-sweep");
    let text = std::fs::read_to_string(repo("scenarios/node-join.ron")).unwrap();
    let text = text.replace("values: [8, 25, 50, 100]", "values: [8, 12]");
    assert!(text.contains("values: [8, 12]"));
    let path = dir.join("node-join.ron");
    std::fs::write(&path, text).unwrap();
    let (out, one) = app::sweep(&path, Some(dir.join("one")), Some(1), false, None).unwrap();
    assert_eq!(one.points.len(), 4);
    for p in &one.points {
        let b = p.bgp.as_ref().unwrap();
        let join = b.reconvergence_ns.expect("the join converged");
        // The peers' connect delay, then a round of messages.
        assert!((2_000_000_000..2_100_000_000).contains(&join), "{join} at {} {:?}", p.value, p.topology);
        assert!(b.reconvergence_drops > 0, "{:?}", p.topology);
    }
    let png = std::fs::metadata(out.join("bgp_reconvergence.png")).unwrap();
    assert!(png.len() > 1000);
    let (_, two) = app::sweep(&path, Some(dir.join("two")), Some(2), false, None).unwrap();
    assert_eq!(one.points, two.points);
}

/// A Service with a pod on a joining node: the pod is no endpoint until the join, then every
/// proxy syncs it in at once, before the peers have the node's route (2 s later): what the
/// proxies send it meanwhile is lost at the site's router, as when a pod is ready before its
/// node's BGP routes have spread.
#[test]
fn a_joining_nodes_pods_become_endpoints_at_the_join_before_their_routes() {
    const SVC: &str = r#"Scenario(
    name: "join-svc", seed: 3, duration: "20s", cni: "calico-ipip",
    nodes: Count(count: 4, cores: 2),
    pods_per_node: 1,
    pods: [(name: "web-a", node: "node-2", labels: {"app": "web"}), (name: "web-b", node: "node-4", labels: {"app": "web"})],
    services: [(name: "web", selector: {"app": "web"}, ports: [(port: 80, target_port: 5201)])],
    bgp: (),
    changes: [(at: "10s", join_node: "node-4")],
    workloads: [
        (name: "rr", kind: UdpRr(request: 64, response: 256, think: "1ms", timeout: "50ms"), from: Pod("node-1-pod-1"), to: Service("web"), start: "1s", new_connection_per_request: true),
    ],
)"#;
    let dir = scratch("bgp-join-svc");
    let file = dir.join("join-svc.ron");
    std::fs::write(&file, SVC).unwrap();
    let s = app::run(&file, &RunOptions { out: Some(dir.join("a")), ..Default::default() }).unwrap().summary;
    let sv = s.services.as_ref().unwrap();
    // Every node's proxy syncs once, for the join.
    assert_eq!(sv.syncs.len(), 4, "{:?}", sv.syncs);
    assert!(sv.syncs.iter().all(|y| y.changed_at_ns == 10_000_000_000), "{:?}", sv.syncs);
    let share = &sv.endpoint_share["web"];
    let (a, b) = (share["web-a"], share["web-b"]);
    // About 1,000 requests a second: 9 s to web-a alone, then 10 s shared.
    assert!(a > 8 * 1000 && b > 1000 && a > 2 * b, "{share:?}");
    // Lost from the sync (10.002 s) until node-1 has node-4's route (12 s): web-b's share.
    let f = &s.flows[0];
    assert_eq!(f.drops_by_reason.keys().collect::<Vec<_>>(), ["no_route"], "{:?}", f.drops_by_reason);
    assert!((30..=100).contains(&f.timeouts), "{} timeouts", f.timeouts);
}
