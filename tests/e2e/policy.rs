//! NetworkPolicy end to end (`scenarios/network-policy.ron`): Calico's Felix chains and
//! weave-npc's drop what the policies deny with `policy_denied` and let the rest through; flannel, with no policy
//! engine, delivers everything and says which connections went through against the policies;
//! the same seed gives the same bytes.

use cnisim::app::{self, Choice, RunOptions};
use cnisim::cluster::Cni;
use cnisim::summary::Summary;

use crate::{repo, scratch, without_run};

fn run(out: std::path::PathBuf, cni: Option<Cni>) -> Summary {
    let opts = RunOptions { out: Some(out), cni, ..Default::default() };
    app::run(&repo("scenarios/network-policy.ron"), &opts).unwrap().summary
}

fn flow<'a>(s: &'a Summary, name: &str) -> &'a cnisim::summary::FlowSummary {
    s.flows.iter().find(|f| f.workload == name).unwrap_or_else(|| panic!("flow {name}"))
}

#[test]
fn calico_and_weave_drop_what_the_policies_deny() {
    let dir = scratch("np-calico");
    for (cni, engine) in [
        (Cni::CalicoIpip, "calico-felix-iptables"),
        (Cni::CalicoBgp, "calico-felix-iptables"),
        (Cni::CalicoVxlan, "calico-felix-iptables"),
        (Cni::WeaveFastdp, "weave-npc-iptables"),
        (Cni::WeaveSleeve, "weave-npc-iptables"),
    ] {
        let s = run(dir.join(cni.id()), Some(cni));
        let p = s.policy.as_ref().expect("a policy section");
        assert_eq!(p.engine, engine);
        assert!(p.connections.iter().filter(|c| !c.allowed).count() == 3, "{cni}: {:?}", p.connections);
        assert_eq!(p.denied_but_not_enforced, 0);
        // Allowed by both ends' policies.
        assert!(flow(&s, "web-to-db").transactions > 1000, "{cni}");
        assert!(flow(&s, "web-dns").delivered > 1000, "{cni}");
        // Denied: every datagram dropped by the policy, nothing else.
        for name in ["dev-to-web", "web-to-db-udp"] {
            let f = flow(&s, name);
            assert!(f.sent > 100, "{cni} {name}");
            assert_eq!(f.delivered, 0, "{cni} {name}");
            assert_eq!(
                f.drops_by_reason.get("policy_denied"),
                Some(&f.sent),
                "{cni} {name}: {:?}",
                f.drops_by_reason
            );
        }
        // A TCP client whose SYNs are dropped completes no transaction.
        let crr = flow(&s, "dev-to-db");
        assert_eq!(crr.transactions, 0, "{cni}");
        // The denials happen where the policies are: db's node for dev-to-db (ingress), node-1
        // for the rest (web's ingress, web's egress). weave-npc lets a frame bridged out to the
        // router port go (`--physdev-out vethwe-bridge -j ACCEPT`): ingress is the destination
        // node's to enforce.
        let denied: Vec<u64> = p.nodes.iter().map(|n| n.denied_packets).collect();
        assert!(denied[0] > 0 && denied[1] > 0 && denied[2] == 0, "{cni}: {denied:?}");
        assert!(p.nodes[0].rules_per_new_walk > 10.0, "{cni}: {:?}", p.nodes[0]);
        assert!(s.totals.cpu_by_step.contains_key("policy"), "{cni}");
    }
}

#[test]
fn flannel_warns_and_delivers_what_the_policies_deny() {
    let dir = scratch("np-flannel");
    let s = run(dir.join("f"), Some(Cni::FlannelVxlan));
    let p = s.policy.as_ref().expect("a policy section");
    assert_eq!(p.engine, "none");
    assert_eq!(p.denied_but_not_enforced, 3, "{:?}", p.connections);
    let dev = flow(&s, "dev-to-web");
    assert_eq!(dev.delivered, dev.sent);
    assert!(
        s.scenario.warnings.iter().any(|w| w.contains("no NetworkPolicy engine")
            && w.contains("3 connections they deny go through")
            && w.contains("workload \"dev-to-web\"")),
        "{:?}",
        s.scenario.warnings
    );
    let html = std::fs::read_to_string(dir.join("f/report.html")).unwrap();
    assert!(html.contains("denied, NOT enforced") && html.contains("href=\"#policy\""));
}

#[test]
fn policy_runs_are_byte_identical_for_the_same_seed() {
    let dir = scratch("np-det");
    let json = |d: &str| {
        run(dir.join(d), if d.starts_with('w') { Some(Cni::WeaveFastdp) } else { None });
        without_run(
            serde_json::from_slice(&std::fs::read(dir.join(d).join("summary.json")).unwrap()).unwrap(),
        )
    };
    assert_eq!(json("a"), json("b"));
    assert_eq!(json("wa"), json("wb"));
    let html = |d: &str| std::fs::read(dir.join(d).join("report.html")).unwrap();
    assert!(html("a") == html("b"));
    assert!(html("wa") == html("wb"));
}

/// weave-npc's chains and sets in `describe`, its walk in `trace`: a pod-to-pod datagram on one
/// node is bridged, and br_netfilter walks FORWARD with the ports as physdev.
#[test]
fn describe_prints_weave_npc_chains_and_trace_the_bridged_walk() {
    let path = repo("scenarios/network-policy.ron");
    let choice = Choice { cni: Some(Cni::WeaveFastdp), ..Choice::default() };
    let d = app::describe(&path, "node-1", None, choice).unwrap();
    assert!(d.contains("-A FORWARD -o weave -j DROP"), "{d}");
    assert!(
        d.contains("-A WEAVE-NPC -m physdev --physdev-out vethwe-bridge --physdev-is-bridged -j ACCEPT"),
        "{d}"
    );
    assert!(d.contains("DefaultAllow ingress isolation for namespace: prod"), "{d}");
    assert!(d.contains("Type: hash:ip"), "{d}");
    let t = app::trace(&path, "dev-client", "web", 64, choice).unwrap();
    let text = t.render();
    assert!(text.contains("filter FORWARD (weave -> weave, ctstate NEW)"), "{text}");
    assert!(text.contains("FORWARD #4: -o weave -j DROP"), "{text}");
    assert!(text.contains("result: dropped: policy_denied"), "{text}");
    // `--port`: web's DNS egress is allowed by the ipBlock rule on UDP 53 only.
    let dns = app::trace_at(&path, "web", "internet", 64, None, Some(53), choice).unwrap().render();
    assert!(dns.contains("-m udp --dport 53 -m comment --comment \"pods: namespace: prod, selector: app=web -> cidr: 0.0.0.0/0 except [10.0.0.0/8] (egress)\" -j WEAVE-NPC-EGRESS-ACCEPT"), "{dns}");
    assert!(!dns.contains("policy_denied"), "{dns}");
    let other = app::trace_at(&path, "web", "internet", 64, None, Some(54), choice).unwrap();
    assert_eq!(other.outcome, "dropped: policy_denied");
}

/// What weave-npc does differently from the API is said when the scenario asks for it: a port
/// range it reads as its first port, and it is enforced that way (a connection to the range's
/// second port is dropped, where Calico lets it in).
#[test]
fn weave_warns_of_end_port_and_enforces_the_first_port_only() {
    let dir = scratch("np-weave-endport");
    let text = std::fs::read_to_string(repo("scenarios/network-policy.ron")).unwrap();
    let text = text.replace("ports: [(port: 5432)])]),", "ports: [(port: 5431, end_port: 5432)])]),");
    assert!(text.contains("end_port: 5432"));
    let path = dir.join("np.ron");
    std::fs::write(&path, &text).unwrap();
    let run = |cni: Cni, d: &str| {
        let opts = RunOptions { out: Some(dir.join(d)), cni: Some(cni), ..Default::default() };
        app::run(&path, &opts).unwrap().summary
    };
    let w = run(Cni::WeaveFastdp, "w");
    assert!(
        w.scenario
            .warnings
            .iter()
            .any(|m| m.contains("policy prod/db-from-web ingress rule 0 allows TCP 5431-5432")
                && m.contains("only port 5431 is allowed")),
        "{:?}",
        w.scenario.warnings
    );
    assert_eq!(flow(&w, "web-to-db").transactions, 0);
    let c = run(Cni::CalicoIpip, "c");
    assert!(flow(&c, "web-to-db").transactions > 1000);
    // The summary's verdict is the one the plugin enforces.
    let verdict = |s: &Summary| {
        s.policy.as_ref().unwrap().connections.iter().find(|x| x.workload == "web-to-db").unwrap().allowed
    };
    assert!(!verdict(&w) && verdict(&c));
}

#[test]
fn describe_prints_felix_chains_and_trace_the_walk() {
    let path = repo("scenarios/network-policy.ron");
    let d = app::describe(&path, "node-2", None, Choice::default()).unwrap();
    assert!(d.contains("$ iptables-save -t filter"), "{d}");
    assert!(d.contains("-A cali-FORWARD -i cali+ -j cali-from-wl-dispatch"), "{d}");
    assert!(d.contains("KubernetesNetworkPolicy prod/db-from-web ingress"), "{d}");
    assert!(d.contains("$ ipset list") && d.contains("Name: cali40s:"), "{d}");
    let t = app::trace(&path, "dev-client", "web", 64, Choice::default()).unwrap();
    let text = t.render();
    assert!(text.contains("End of tier default. DROP if no policies passed packet"), "{text}");
    assert!(text.contains("result: dropped: policy_denied"), "{text}");
}

/// `scenarios/policy-change.ron` under each engine: batch-to-db is delivered until db's node
/// enforces the new policy, dropped until the relabelling is enforced, delivered again; web-to-db
/// throughout. Each node's agent takes at least the watch delay; only the nodes with work to
/// do spend CPU (every node for weave-npc, whose table is the same everywhere; every node's
/// ipcache for Cilium when an identity moves). Same seed, same bytes.
#[test]
fn policy_changes_are_enforced_after_each_agents_work() {
    let dir = scratch("np-change");
    let path = repo("scenarios/policy-change.ron");
    for (cni, busy_nodes) in
        [(Cni::CalicoIpip, [1, 1, 1]), (Cni::WeaveFastdp, [3, 3, 3]), (Cni::CiliumVxlan, [1, 3, 1])]
    {
        let run = |d: &str| {
            let opts = RunOptions {
                out: Some(dir.join(format!("{cni}-{d}"))),
                cni: Some(cni),
                ..Default::default()
            };
            app::run(&path, &opts).unwrap().summary
        };
        let s = run("a");
        let p = s.policy.as_ref().unwrap();
        let names: Vec<&str> = p.changes.iter().map(|c| c.change.as_str()).collect();
        assert_eq!(
            names,
            ["apply_policy prod/db-from-web", "label_pod batch app=web", "delete_policy prod/db-from-web"],
            "{cni}"
        );
        for (ch, busy) in p.changes.iter().zip(busy_nodes) {
            let all = ch.enforced_everywhere_ns.expect("enforced everywhere");
            assert!((10_000_000..30_000_000).contains(&all), "{cni}: {ch:?}");
            assert_eq!(ch.nodes.iter().filter(|n| n.cpu_ns > 0).count(), busy, "{cni}: {ch:?}");
        }
        let web = flow(&s, "web-to-db");
        assert_eq!(web.delivered, web.sent, "{cni}");
        // Denied from the policy's enforcement to the relabelling's (the slowest node has the
        // work that matters: db's for the policy, batch's or the ipsets' for the label): a send
        // every 0.4096 ms (a 512 B payload at 10 Mbit/s).
        let batch = flow(&s, "batch-to-db");
        let denied = *batch.drops_by_reason.get("policy_denied").unwrap_or(&0);
        let all = |i: usize| p.changes[i].enforced_everywhere_ns.unwrap() as f64;
        let window_ms = (30e6 + all(1) - all(0)) / 1e6;
        let expect = window_ms / (512.0 * 8.0 / 10e6 * 1e3);
        assert!((denied as f64 - expect).abs() <= 1.5, "{cni}: {denied} denied, {expect:.1} expected");
        assert_eq!(batch.delivered + denied, batch.sent, "{cni}: {:?}", batch.drops_by_reason);
        let json = |d: &str| {
            let path = dir.join(format!("{cni}-{d}")).join("summary.json");
            without_run(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
        };
        run("b");
        assert_eq!(json("a"), json("b"), "{cni}");
    }
    // `describe --at`: Felix's chain for the policy is on db's node once its agent has
    // written it (at 30 + 20 ms), not before.
    let at = |ms: u64| {
        let d =
            app::describe(&path, "node-2", Some(cnisim::time::Duration::from_millis(ms)), Choice::default());
        d.unwrap().contains("KubernetesNetworkPolicy prod/db-from-web ingress")
    };
    assert!(!at(45) && at(55));
    // flannel: no agent, nothing denied, and the run says the created policy is not enforced.
    let opts =
        RunOptions { out: Some(dir.join("flannel")), cni: Some(Cni::FlannelVxlan), ..Default::default() };
    let s = app::run(&path, &opts).unwrap().summary;
    assert!(s
        .policy
        .as_ref()
        .unwrap()
        .changes
        .iter()
        .all(|c| c.nodes.is_empty() && c.enforced_everywhere_ns.is_none()));
    let batch = flow(&s, "batch-to-db");
    assert_eq!(batch.delivered, batch.sent);
    assert!(
        s.scenario.warnings.iter().any(|w| w.contains("1 policies (1 of them created during the run)")),
        "{:?}",
        s.scenario.warnings
    );
}

/// `scenarios/policy-scaling.ron` at 10 and 1,000 policies: Calico's walk before a DROP grows
/// with the policies selecting the server, Cilium's policy-map lookups stay two; flannel runs no
/// engine. One thread and two give the same sweep.json.
#[test]
fn policy_sweep_calico_grows_cilium_stays_flat() {
    let dir = scratch("np-sweep");
    let text = std::fs::read_to_string(repo("scenarios/policy-scaling.ron")).unwrap();
    let text = text.replace("values: [10, 100, 1000, 10000]", "values: [10, 1000]");
    let path = dir.join("ps.ron");
    std::fs::write(&path, text).unwrap();
    let (out, r) = app::sweep(&path, Some(dir.join("a")), Some(1), false, None).unwrap();
    let at = |cni: &str, v: u32| {
        r.points.iter().find(|p| p.cni == cni && p.value == v).and_then(|p| p.policy.clone())
    };
    let (c10, c1k) = (at("calico-ipip", 10).unwrap(), at("calico-ipip", 1000).unwrap());
    assert!(c10.evaluations_per_denied_packet > 20.0, "{c10:?}");
    assert!(c1k.evaluations_per_denied_packet > 50.0 * c10.evaluations_per_denied_packet, "{c1k:?}");
    assert!(c1k.cpu_ns_per_1000_denied_packets > 50 * c10.cpu_ns_per_1000_denied_packets);
    // weave-npc: one WEAVE-NPC-INGRESS rule per policy, walked to the end before FORWARD's DROP.
    let (w10, w1k) = (at("weave-fastdp", 10).unwrap(), at("weave-fastdp", 1000).unwrap());
    assert!(w1k.evaluations_per_denied_packet > 50.0 * w10.evaluations_per_denied_packet, "{w10:?} {w1k:?}");
    let (l10, l1k) = (at("cilium-vxlan", 10).unwrap(), at("cilium-vxlan", 1000).unwrap());
    assert_eq!((l10.evaluations_per_denied_packet, l1k.evaluations_per_denied_packet), (2.0, 2.0));
    assert_eq!(l10.cpu_ns_per_1000_denied_packets, l1k.cpu_ns_per_1000_denied_packets);
    // The "late" policy's time to enforcement on every node: Felix's iptables-restore replaces
    // a table that grows with the policies, weave-npc's command copies it out and back, Cilium
    // syncs one endpoint's map whatever is installed.
    let update = |p: &cnisim::sweep::PolicyPoint| p.update_ns.expect("enforced by the end");
    assert!(update(&c1k) > update(&c10) && update(&w1k) > update(&w10), "{c10:?} {c1k:?} {w10:?} {w1k:?}");
    assert_eq!(update(&l10), update(&l1k));
    assert!(update(&c10) >= 10_000_000, "at least the watch delay: {c10:?}");
    assert!(at("flannel-vxlan", 10).is_none());
    assert!(out.join("policy_denied_cpu.png").exists() && out.join("policy_denied_cpu.csv").exists());
    assert!(out.join("policy_update_time.png").exists());
    let (_, r2) = app::sweep(&path, Some(dir.join("b")), Some(2), false, None).unwrap();
    let json = |d: &str| {
        without_run(serde_json::from_slice(&std::fs::read(dir.join(d).join("sweep.json")).unwrap()).unwrap())
    };
    assert_eq!(r2.points.len(), r.points.len());
    assert_eq!(json("a"), json("b"));
}
