//! Sweeps across CNIs and of the data-path parameters: the overhead per CNI equals its outer
//! headers, a nodes sweep, a point a CNI cannot carry kept as such, shards merged and thread
//! counts give the same bytes.

use std::path::{Path, PathBuf};

use cnisim::app;
use cnisim::sweep::{SweepPoint, SweepResult};

use crate::{repo, scratch};

/// `scenarios/overhead-sweep.ron` with another `sweep:` section.
fn with_sweep(dir: &Path, sweep: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo("scenarios/overhead-sweep.ron")).unwrap();
    let start = text.find("    sweep: (").unwrap();
    let path = dir.join("sweep.ron");
    std::fs::write(&path, format!("{}    sweep: {sweep},\n)\n", &text[..start])).unwrap();
    path
}

fn at<'a>(r: &'a SweepResult, cni: &str, value: u32) -> &'a SweepPoint {
    r.points.iter().find(|p| p.cni == cni && p.value == value).unwrap()
}

#[test]
fn payload_sweep_overhead_per_cni_is_its_outer_headers() {
    let dir = scratch("sweep-overhead");
    let (out, r) =
        app::sweep(&repo("scenarios/overhead-sweep.ron"), Some(dir.join("out")), None, false, None).unwrap();
    assert_eq!(r.cnis, ["flannel-vxlan", "flannel-host-gw", "calico-ipip", "cilium-geneve", "weave-fastdp"]);
    assert_eq!(r.points.len(), 25);
    // Value-major, then CNI order.
    assert_eq!((r.points[1].value, r.points[1].cni.as_str()), (64, "flannel-host-gw"));
    assert!(r.points.iter().enumerate().all(|(i, p)| p.index == i));
    for (cni, header) in
        [("flannel-vxlan", 50), ("calico-ipip", 20), ("flannel-host-gw", 0), ("cilium-geneve", 50)]
    {
        for &v in &r.values {
            let d = at(&r, cni, v).data_plane.as_ref().unwrap();
            assert_eq!(d.encap_overhead_bytes, Some(header), "{cni} at {v}");
            assert_eq!(
                d.pod_frame_bytes,
                Some(u64::from(v) + 42),
                "{cni} at {v}: payload + UDP, IPv4, Ethernet"
            );
            let pct = header as f64 * 100.0 / (f64::from(v) + 42.0);
            assert!((d.encap_overhead_pct.unwrap() - pct).abs() < 1e-9, "{cni} at {v}");
            assert!(d.throughput_bps > 0.0 && d.cpu_ns_per_datagram.unwrap() > 0.0);
            let steps: f64 = d.cpu_ns_per_datagram_by_step.values().sum();
            let all = d.cpu_ns as f64 / at(&r, cni, v).delivered as f64;
            assert!((steps - all).abs() < 1e-6, "{cni} at {v}: steps add up to the nodes' CPU");
            assert!(d.cpu_ns_per_datagram.unwrap() <= all + 1e-6, "{cni} at {v}: the flows' share of it");
        }
    }
    // weave's pod MTU (1376) cannot carry 1,400 B: kept, with the loader's message.
    let w = at(&r, "weave-fastdp", 1400);
    assert!(w.data_plane.is_none());
    assert!(w.invalid.as_deref().unwrap().contains("exceeds the MTU 1376"), "{:?}", w.invalid);
    assert_eq!(at(&r, "weave-fastdp", 1024).data_plane.as_ref().unwrap().pod_mtu, 1376);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for want in [
        "At 64 B, <strong>calico-ipip</strong> adds 20 B per packet (18.9 % more bytes on the wire than the \
         pod's frame of 106 B); at 1,400 B, the same bytes: 1.4 %.",
        "<strong>flannel-host-gw</strong> adds nothing",
        "weave-fastdp at 1,400: cannot be set up: <code>",
    ] {
        assert!(html.contains(want), "{want} not in the report");
    }
    for f in [
        "throughput.png",
        "cpu_per_datagram.png",
        "encap_overhead.png",
        "data_plane.csv",
        "encap_overhead.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join("rule_scaling.csv").exists(), "no Service curves for a payload sweep");
    let csv = std::fs::read_to_string(out.join("data_plane.csv")).unwrap();
    assert_eq!(csv.lines().count(), 26);
}

#[test]
fn nodes_sweep_runs_every_count() {
    let dir = scratch("sweep-nodes");
    let path = with_sweep(
        &dir,
        r#"(parameter: "nodes", values: [4, 2], cnis: ["flannel-vxlan", "calico-bgp"], proxies: ["iptables"])"#,
    );
    let (_, r) = app::sweep(&path, Some(dir.join("out")), None, false, None).unwrap();
    assert_eq!(r.values, [2, 4]);
    assert_eq!(r.points.len(), 4);
    for p in &r.points {
        let d = p.data_plane.as_ref().unwrap();
        assert!(p.delivered > 0 && d.cpu_ns > 0, "{} at {}", p.cni, p.value);
    }
    assert_eq!(at(&r, "calico-bgp", 4).data_plane.as_ref().unwrap().encap_overhead_bytes, Some(0));
}

#[test]
fn cni_sweeps_are_deterministic_sharded_and_threaded() {
    let dir = scratch("sweep-cni-det");
    let path = with_sweep(
        &dir,
        r#"(parameter: "payload", values: [1400, 64, 512], cnis: ["calico-ipip", "weave-sleeve", "cilium-vxlan"], proxies: ["iptables", "nftables"])"#,
    );
    let (a, ra) = app::sweep(&path, Some(dir.join("one")), Some(1), false, None).unwrap();
    let (b, rb) = app::sweep(&path, Some(dir.join("two")), Some(2), false, None).unwrap();
    assert_eq!(ra.points, rb.points);
    assert_eq!(ra.points.len(), 18);
    let files = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(files(&a), files(&b));
    for f in files(&a).iter().filter(|f| *f != "sweep.json") {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    let shards: Vec<PathBuf> = (1..=4)
        .map(|i| {
            let shard = Some(format!("{i}/4").parse().unwrap());
            app::sweep(&path, Some(dir.join(format!("shard-{i}"))), Some(1), false, shard).unwrap().0
        })
        .collect();
    let (m, rm) = app::merge(Some(dir.join("merged")), &shards).unwrap();
    assert_eq!(rm.points, ra.points);
    assert_eq!(files(&m), files(&a));
    for f in files(&a).iter().filter(|f| *f != "sweep.json") {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(m.join(f)).unwrap(), "merged {f}");
    }
    // sweep.json too, but for the wall-clock facts.
    let strip = |d: &Path| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("sweep.json")).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("run");
        v
    };
    assert_eq!(strip(&a), strip(&m));
}

#[test]
fn a_value_no_cni_can_carry_stops_the_sweep() {
    let dir = scratch("sweep-cni-bad");
    let path = with_sweep(
        &dir,
        r#"(parameter: "payload", values: [64, 1460], cnis: ["flannel-vxlan", "calico-ipip"])"#,
    );
    let e = app::sweep(&path, Some(dir.join("out")), None, false, None).err().unwrap().to_string();
    assert!(e.contains("payload 1460 B + 28 B of IPv4/UDP headers exceeds the MTU 1450"), "{e}");
}
