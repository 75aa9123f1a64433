//! `cnisim compare`: every combination kept and judged from its run, verdicts whose figures are
//! compare.json's, byte-identical output whatever the threads or shards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cnisim::app;
use cnisim::cluster::{Cni, ProxyMode};
use cnisim::compare::{CompareResult, Options, Status};
use cnisim::sweep::Shard;

use crate::{repo, scratch};

fn opts(
    cnis: &[Cni],
    proxies: Option<&[ProxyMode]>,
    threads: Option<usize>,
    shard: Option<Shard>,
) -> Options {
    Options {
        cnis: Some(cnis.to_vec()),
        proxies: proxies.map(<[ProxyMode]>::to_vec),
        threads,
        progress: false,
        shard,
    }
}

/// `cnisim compare scenarios/quickstart.ron --cni all`, once for every test that reads it.
pub fn quickstart_all() -> &'static (PathBuf, CompareResult) {
    static RUN: OnceLock<(PathBuf, CompareResult)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("compare-qs-all");
        app::compare(
            &repo("scenarios/quickstart.ron"),
            Some(dir.join("out")),
            &opts(&Cni::ALL, None, None, None),
        )
        .unwrap()
    })
}

fn json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap()
}

#[test]
fn quickstart_under_every_cni_ranks_them_with_reasons() {
    let (dir, r) = quickstart_all();
    assert_eq!(r.combinations.len(), 15);
    let labels: Vec<&str> = r.combinations.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, Cni::ALL.map(|c| c.id()));
    // One L2 switch: every CNI delivers everything.
    assert!(r.combinations.iter().all(|c| c.status == Status::Works), "{labels:?}");
    let keys: Vec<&str> = r.verdicts.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "works",
            "latency:same-node",
            "latency:cross-node",
            "latency:rr",
            "throughput_per_core",
            "cpu_per_gbps",
            "overhead"
        ]
    );
    let cols: Vec<&str> = r.table.columns.iter().map(|c| c.key.as_str()).collect();
    for key in [
        "cross-node.p50",
        "rr.rtt_p99",
        "rr.tps",
        "sender.cpu_per_packet",
        "receiver.cores_per_gbps",
        "encap_bytes",
        "encap_pct",
        "pod_mtu",
    ] {
        assert!(cols.contains(&key), "column {key} missing from {cols:?}");
    }
    // The userspace data plane costs the most CPU per datagram, and the verdict says why.
    let tpc = r.verdicts.iter().find(|v| v.key == "throughput_per_core").unwrap();
    assert!(tpc.text.contains("Least: flannel-udp"), "{}", tpc.text);
    assert!(tpc.text.contains("crosses to flanneld"), "{}", tpc.text);
    // Encapsulating CNIs add what their headers weigh; the overhead verdict names the bytes.
    let fig = |cni: &str| r.combinations.iter().find(|c| c.cni == cni).unwrap().figures.as_ref().unwrap();
    assert_eq!(fig("flannel-vxlan").encap_overhead_bytes, Some(50));
    assert_eq!(fig("calico-ipip").encap_overhead_bytes, Some(20));
    assert_eq!(fig("flannel-host-gw").encap_overhead_bytes, Some(0));
    for f in [
        "report.html",
        "compare.json",
        "headline.csv",
        "verdicts.csv",
        "drops.csv",
        "paths.csv",
        "latency_cdf_rr.png",
        "latency_cdf_cross-node.csv",
        "throughput.png",
        "cpu_per_packet.png",
        "cpu_by_step.png",
        "cpu_by_step.csv",
        "overhead.png",
        "overhead.csv",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let headline = std::fs::read_to_string(dir.join("headline.csv")).unwrap();
    assert_eq!(headline.lines().count(), 16);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!html.contains("<script"));
    assert_eq!(html.matches("<details>").count(), 3 + 3 * 15, "one fold per workload, one per path");
}

/// Every figure a verdict states is the number compare.json holds where it points, and the
/// verdict's text shows it.
#[test]
fn every_verdict_figure_is_the_number_in_compare_json() {
    let (dir, r) = quickstart_all();
    check_figures(&json(dir), r);
}

fn check_figures(doc: &serde_json::Value, r: &CompareResult) {
    let mut checked = 0;
    for v in &r.verdicts {
        for f in &v.figures {
            let at = doc.pointer(&f.at).and_then(|x| x.as_f64());
            let at = at.unwrap_or_else(|| panic!("{}: {} points at no number", v.key, f.at));
            let value = match &f.over {
                None => at,
                Some(over) => {
                    let below = doc.pointer(over).and_then(|x| x.as_f64()).unwrap();
                    at / below
                }
            };
            assert_eq!(value, f.value, "{}: figure at {}", v.key, f.at);
            assert!(v.text.contains(&f.shown), "{}: text lacks {:?}: {}", v.key, f.shown, v.text);
            checked += 1;
        }
        // The table says the same as the figures it copies.
        for (c, col) in r.table.columns.iter().enumerate() {
            for (i, row) in r.table.rows.iter().enumerate() {
                if let Some(x) = row.values[c] {
                    let p = format!("/combinations/{i}/figures{}", col.source);
                    assert_eq!(
                        doc.pointer(&p).and_then(|v| v.as_f64()),
                        Some(x),
                        "{} of {}",
                        col.key,
                        row.label
                    );
                }
            }
        }
    }
    assert!(checked > 10, "only {checked} figures");
}

/// Where the CPU goes adds up: every combination's steps sum to its total CPU, each workload's
/// to its own, per datagram as in total; the userspace data planes spend it in userspace.
#[test]
fn cpu_by_step_adds_up_to_each_run_total() {
    let (dir, r) = quickstart_all();
    for c in &r.combinations {
        let f = c.figures.as_ref().unwrap();
        assert!(f.cpu_ns > 0, "{}", c.label);
        assert_eq!(f.cpu_by_step.values().sum::<u64>(), f.cpu_ns, "{}", c.label);
        let per: f64 = f.cpu_ns_per_datagram_by_step.values().sum();
        let whole = f.cpu_ns as f64 / f.delivered as f64;
        assert!((per - whole).abs() <= whole * 1e-9, "{}: {per} vs {whole}", c.label);
        for w in &f.workloads {
            assert!(w.cpu_ns > 0, "{} {}", c.label, w.name);
            assert_eq!(w.cpu_by_step.values().sum::<u64>(), w.cpu_ns, "{} {}", c.label, w.name);
        }
        // The workloads' chains are part of everything the nodes served.
        assert!(f.workloads.iter().map(|w| w.cpu_ns).sum::<u64>() <= f.cpu_ns, "{}", c.label);
    }
    let top = |cni: &str| {
        let f = r.combinations.iter().find(|c| c.cni == cni).unwrap().figures.as_ref().unwrap();
        let mut steps: Vec<(&String, &f64)> = f.cpu_ns_per_datagram_by_step.iter().collect();
        steps.sort_by(|a, b| b.1.total_cmp(a.1));
        steps[0].0.clone()
    };
    assert_eq!(top("flannel-udp"), "userspace");
    assert_eq!(top("weave-sleeve"), "userspace");
    let cilium = r.combinations.iter().find(|c| c.cni == "cilium-native").unwrap();
    assert!(cilium.figures.as_ref().unwrap().cpu_by_step.get("ebpf").is_some_and(|&ns| ns > 0));
    // The chart's data is the figures': one row per combination and step that took time.
    let csv = std::fs::read_to_string(dir.join("cpu_by_step.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("cilium-native,ebpf,")), "{csv}");
    // The verdict on CPU says where the most expensive combination's CPU goes.
    let tpc = r.verdicts.iter().find(|v| v.key == "throughput_per_core").unwrap();
    assert!(tpc.text.contains("Where its datagram's CPU goes: userspace "), "{}", tpc.text);
}

#[test]
fn combinations_that_cannot_work_here_stay_with_the_reason_the_run_found() {
    let dir = scratch("compare-fabric");
    let cnis = [Cni::FlannelHostGw, Cni::FlannelVxlan, Cni::CalicoBgp, Cni::Macvlan];
    let (out, r) = app::compare(
        &repo("scenarios/compare-cnis.ron"),
        Some(dir.join("out")),
        &opts(&cnis, None, Some(2), None),
    )
    .unwrap();
    let by = |cni: &str| r.combinations.iter().find(|c| c.cni == cni).unwrap();
    let hostgw = by("flannel-host-gw");
    assert_eq!(hostgw.status, Status::DoesNotWork);
    assert!(hostgw.status_reason.starts_with("rr: 0 of "), "{}", hostgw.status_reason);
    assert!(hostgw.status_reason.contains("dropped as no_route"), "{}", hostgw.status_reason);
    assert!(hostgw.status_reason.contains("Nexthop has invalid gateway"), "{}", hostgw.status_reason);
    assert_eq!(by("flannel-vxlan").status, Status::Works);
    assert_eq!(by("calico-bgp").status, Status::Works);
    // macvlan pods ARP for the server across the racks and never hear back: nothing is
    // dropped within the run, nothing is delivered either.
    let macvlan = by("macvlan");
    assert_eq!(macvlan.status, Status::DoesNotWork);
    assert!(
        macvlan.status_reason.contains("still queued or in flight when the run ended"),
        "{}",
        macvlan.status_reason
    );
    // It is in the table and the charts, judged, never the best.
    let row = r.table.rows.iter().find(|row| row.label == "flannel-host-gw").unwrap();
    assert!(row.best.iter().all(|b| !b));
    let works = &r.verdicts[0];
    assert_eq!(works.answer, ["flannel-vxlan", "calico-bgp"]);
    assert!(works.text.contains("flannel-host-gw does not work here: rr: 0 of"), "{}", works.text);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("id=\"notworking\""));
    check_figures(&json(&out), &r);
}

#[test]
fn services_without_socket_lb_do_not_reach_macvlan_pods_and_a_scenario_that_does_not_resolve_is_kept() {
    let dir = scratch("compare-svc");
    let proxies = [ProxyMode::Iptables, ProxyMode::Ebpf { socket_lb: true }];
    let (out, r) = app::compare(
        &repo("scenarios/services.ron"),
        Some(dir.join("out")),
        &opts(&[Cni::Macvlan, Cni::CiliumNative], Some(&proxies), None, None),
    )
    .unwrap();
    let labels: Vec<&str> = r.combinations.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(
        labels,
        ["macvlan / iptables", "macvlan / ebpf", "cilium-native / iptables", "cilium-native / ebpf"]
    );
    let macvlan = &r.combinations[0];
    assert_eq!(macvlan.status, Status::DoesNotWork);
    assert!(macvlan.status_reason.contains("web-new-conn: 0 of"), "{}", macvlan.status_reason);
    let fig = r.combinations[1].figures.as_ref().unwrap();
    assert!(fig.workloads[0].delivered > 0, "socket LB reaches the Service from macvlan pods");
    assert!(r.verdicts.iter().any(|v| v.key == "service_connection"));
    assert!(r.table.columns.iter().any(|c| c.key == "rules"));
    check_figures(&json(&out), &r);

    // A payload that fits flannel-host-gw's pod MTU (1500) but not flannel-vxlan's (1450).
    let text = std::fs::read_to_string(repo("scenarios/quickstart.ron"))
        .unwrap()
        .replace("payload: 1200", "payload: 1460");
    let path = dir.join("big.ron");
    std::fs::write(&path, text).unwrap();
    let (out, r) = app::compare(
        &path,
        Some(dir.join("big")),
        &opts(&[Cni::FlannelHostGw, Cni::FlannelVxlan], None, None, None),
    )
    .unwrap();
    let vxlan = &r.combinations[1];
    assert_eq!(vxlan.status, Status::CannotBeSetUp);
    assert!(vxlan.figures.is_none());
    assert!(vxlan.status_reason.contains("big.ron:"), "{}", vxlan.status_reason);
    assert!(vxlan.status_reason.contains("1460"), "{}", vxlan.status_reason);
    assert_eq!(r.combinations[0].status, Status::Works);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("cannot be set up here"));
}

/// compare.json without its wall-clock `run` key.
fn without_run(dir: &Path) -> serde_json::Value {
    let mut v = json(dir);
    v.as_object_mut().unwrap().remove("run");
    v
}

#[test]
fn output_is_identical_for_one_or_two_threads_and_for_three_shards_merged() {
    let dir = scratch("compare-det");
    let path = repo("scenarios/quickstart.ron");
    let cnis = [Cni::FlannelUdp, Cni::CalicoBgp, Cni::CiliumGeneve, Cni::Macvlan, Cni::WeaveSleeve];
    let one = app::compare(&path, Some(dir.join("one")), &opts(&cnis, None, Some(1), None)).unwrap().0;
    let two = app::compare(&path, Some(dir.join("two")), &opts(&cnis, None, Some(2), None)).unwrap().0;
    let shards: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let s = Shard { index: i, count: 3 };
            app::compare(&path, Some(dir.join(format!("shard-{i}"))), &opts(&cnis, None, Some(1), Some(s)))
                .unwrap()
                .0
        })
        .collect();
    // Given in any order.
    let merged = app::merge_compare(
        Some(dir.join("merged")),
        &[shards[2].clone(), shards[0].clone(), shards[1].clone()],
    )
    .unwrap()
    .0;
    let names = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    for other in [&two, &merged] {
        assert_eq!(names(&one), names(other));
        for f in names(&one) {
            if f == "compare.json" {
                assert_eq!(without_run(&one), without_run(other), "compare.json of {}", other.display());
                // Byte for byte once `run` is set aside: the same keys in the same order.
                let text = |d: &Path| {
                    let t = std::fs::read_to_string(d.join("compare.json")).unwrap();
                    t[..t.find("\n  \"run\": {").unwrap()].to_string()
                };
                assert_eq!(text(&one), text(other));
            } else {
                assert!(
                    std::fs::read(one.join(&f)).unwrap() == std::fs::read(other.join(&f)).unwrap(),
                    "{f} differs in {}",
                    other.display()
                );
            }
        }
    }
    // A shard's own report says what it is.
    let html = std::fs::read_to_string(shards[0].join("report.html")).unwrap();
    assert!(html.contains("This is shard 1 of 3"));
    // Merging refuses what is not one comparison.
    let e = app::merge_compare(Some(dir.join("bad")), &shards[..2]).err().unwrap().to_string();
    assert!(e.contains("shard 3/3 is missing"), "{e}");
    let e =
        app::merge_compare(Some(dir.join("bad")), &[shards[0].clone(), shards[0].clone(), shards[1].clone()])
            .err()
            .unwrap()
            .to_string();
    assert!(e.contains("given twice"), "{e}");
}

fn cnisim(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cnisim")).current_dir(dir).args(args).output().unwrap()
}

#[test]
fn command_line_lists_default_directories_and_errors() {
    let dir = scratch("compare-cli");
    let qs = repo("scenarios/quickstart.ron");
    let qs = qs.to_str().unwrap();
    let o = cnisim(&dir, &["compare", qs, "--cni", "flannel-vxlan,calico-bgp", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join("reports/quickstart-compare/report.html").is_file());
    let o = cnisim(&dir, &["compare", qs, "--cni", "flannel-vxlan,calico-bgp", "--shard", "2/2", "--quiet"]);
    assert!(o.status.success());
    assert!(dir.join("reports/quickstart-compare-shard-2-of-2/compare.json").is_file());
    let cases: [(&[&str], &str); 5] = [
        (&["compare", qs, "--quiet"], "has no compare section; give --cni"),
        (&["compare", qs, "--cni", "calico,flannel-vxlan"], "unknown CNI 'calico', expected 'all' or one of"),
        (&["compare", qs, "--cni", "all,macvlan"], "'all' stands for every CNI"),
        (&["compare", qs, "--cni", "macvlan,", "--quiet"], "has an empty item"),
        (&["compare", qs, "--cni", "macvlan", "--proxy", "ipvs,ipvs"], "proxy mode 'ipvs' is listed twice"),
    ];
    for (args, want) in cases {
        let o = cnisim(&dir, args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // `run` names what was run: the scenario as written, or with its overrides.
    let o = cnisim(&dir, &["run", qs]);
    assert!(o.status.success());
    assert!(dir.join("reports/quickstart/report.html").is_file());
    let o = cnisim(&dir, &["run", qs, "--cni", "calico-ipip"]);
    assert!(o.status.success());
    assert!(dir.join("reports/quickstart--calico-ipip--iptables/report.html").is_file());
    let o = cnisim(&dir, &["run", qs, "--proxy", "ipvs"]);
    assert!(o.status.success());
    assert!(dir.join("reports/quickstart--flannel-host-gw--ipvs/report.html").is_file());
}

/// The comparison architects make first: one TCP stream and eight under two CNIs. The
/// throughput chart's CSV carries each TCP workload's goodput, and with Linux's offloads a
/// host-gw stream outruns a VXLAN one (the software GSO of VXLAN on the sender and its
/// encapsulation on both ends).
#[test]
fn tcp_workloads_are_compared_by_their_goodput() {
    let dir = scratch("compare-tcp");
    let text = std::fs::read_to_string(repo("scenarios/tcp.ron"))
        .unwrap()
        .replace(r#"duration: "200ms""#, r#"duration: "20ms""#)
        .replace(r#"duration: "100ms","#, r#"duration: "10ms","#)
        .replace(r#"start: "100ms","#, r#"start: "10ms","#);
    let path = dir.join("tcp.ron");
    std::fs::write(&path, text).unwrap();
    let (out, r) = app::compare(
        &path,
        Some(dir.join("out")),
        &opts(&[Cni::FlannelHostGw, Cni::FlannelVxlan], None, None, None),
    )
    .unwrap();
    let csv = std::fs::read_to_string(out.join("throughput.csv")).unwrap();
    let goodput = |combination: &str, workload: &str| -> f64 {
        let line = csv.lines().find(|l| l.starts_with(&format!("{combination},{workload},"))).unwrap();
        line.rsplit(',').next().unwrap().parse().unwrap_or_else(|_| panic!("no figure: {line}"))
    };
    assert!(goodput("flannel-host-gw", "one-stream") > goodput("flannel-vxlan", "one-stream"), "{csv}");
    assert!(goodput("flannel-host-gw", "eight-streams") > goodput("flannel-host-gw", "one-stream"));
    assert!(goodput("flannel-vxlan", "tcp-rr") > 0.0);
    assert!(r.combinations.iter().all(|c| c.figures.is_some()));
}
