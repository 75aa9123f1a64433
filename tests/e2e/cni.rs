//! Every CNI identifier end to end: the quickstart under `--cni ID` delivers everything, its
//! underlay frames carry exactly the plugin's encapsulation (measured from bytes, in the
//! summary and in the pcaps, decoded by tshark down to the inner UDP datagram), and the
//! per-packet CPU cost orders the plugins the way their data paths differ.

use std::collections::BTreeMap;

use cnisim::app::{self, RunOptions};
use cnisim::cluster::Cni;
use cnisim::summary::Summary;

use crate::{repo, scratch, tshark};

/// Extra bytes on the underlay per packet, and how tshark must be told to decode the port.
fn expected(cni: Cni) -> (i64, Option<&'static str>) {
    match cni {
        Cni::FlannelHostGw | Cni::CalicoBgp | Cni::CiliumNative | Cni::Macvlan | Cni::IpvlanL3 => (0, None),
        // Cross-subnet modes encapsulate only across subnets: one L2 switch means none.
        Cni::CalicoIpipCrossSubnet | Cni::CalicoVxlanCrossSubnet => (0, None),
        Cni::CalicoIpip => (20, None),
        Cni::FlannelUdp => (28, Some("udp.port==8285,ip")),
        Cni::FlannelVxlan | Cni::CiliumVxlan => (50, Some("udp.port==8472,vxlan")),
        Cni::CalicoVxlan => (50, None),
        Cni::CiliumGeneve => (50, None),
        Cni::WeaveFastdp => (50, Some("udp.port==6784,vxlan")),
        // 28 outer IPv4/UDP + 6 sender name + 14 frame header + 14 inner Ethernet.
        Cni::WeaveSleeve => (62, None),
    }
}

fn short_quickstart(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo("scenarios/quickstart.ron")).unwrap();
    let short = text.replacen("duration: \"1s\"", "duration: \"30ms\"", 1).replacen(
        "start: \"100ms\"",
        "start: \"5ms\"",
        1,
    );
    let path = dir.join("short.ron");
    std::fs::write(&path, short).unwrap();
    path
}

fn run(cni: Cni, dir: &std::path::Path, scenario: &std::path::Path) -> Summary {
    let out = dir.join(cni.id());
    let opts = RunOptions {
        out: Some(out),
        pcap: vec!["node-1/eth0".into()],
        seed: None,
        cni: Some(cni),
        proxy: None,
    };
    app::run(scenario, &opts).unwrap_or_else(|e| panic!("{cni}: {e}")).summary
}

#[test]
fn every_cni_delivers_with_its_exact_overhead() {
    let dir = scratch("cni");
    let scenario = short_quickstart(&dir);
    let tshark_ok = std::env::var_os("CNISIM_SKIP_TSHARK").is_none();
    let mut cpu = BTreeMap::new();
    for cni in Cni::ALL {
        let s = run(cni, &dir, &scenario);
        let t = &s.totals;
        assert_eq!(t.dropped, 0, "{cni}: {:?}", t.drops_by_reason);
        assert_eq!(t.sent, t.delivered + t.in_flight, "{cni}");
        assert!(t.delivered > 1000, "{cni}: {}", t.delivered);
        let (overhead, decode) = expected(cni);
        assert!(!s.overhead.is_empty(), "{cni}");
        for p in &s.overhead {
            assert_eq!(p.overhead_bytes, overhead, "{cni} at {} B payload: {p:?}", p.payload);
            assert_eq!(p.pod_frame, p.payload as usize + 42, "{cni}");
        }
        let cross = s.flows.iter().find(|f| f.workload == "cross-node").expect("quickstart has it");
        assert_eq!(cross.encap_overhead_bytes, Some(overhead), "{cni}: per-flow overhead in summary.json");
        cpu.insert(cni, t.cpu_ns_per_datagram);
        if !tshark_ok {
            continue;
        }
        // The cross-node flow's frames on node-1's NIC: 1242 B pod frames plus the overhead,
        // every checksum valid, nothing malformed, decoded down to the inner datagram.
        let pcap = dir.join(cni.id()).join("pcap/node-1-eth0.pcap");
        let pcap = pcap.to_str().unwrap();
        let mut base = vec!["-r", pcap, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"];
        if let Some(d) = decode {
            base.extend(["-d", d]);
        }
        let bad = tshark(&[&base[..], &["-Y", "_ws.malformed || _ws.expert.severity >= warning || ip.checksum.status == 0 || udp.checksum.status == 0"]].concat());
        assert!(bad.trim().is_empty(), "{cni}: problems in {pcap}:\n{bad}");
        let len = (1242 + overhead).to_string();
        let filter = format!("frame.len == {len}");
        let protos = tshark(&[&base[..], &["-Y", &filter, "-T", "fields", "-e", "frame.protocols"]].concat());
        let first =
            protos.lines().next().unwrap_or_else(|| panic!("{cni}: no {len} B frames on node-1 eth0"));
        if cni != Cni::WeaveSleeve {
            assert!(first.ends_with("ip:udp:data"), "{cni}: decoded as {first}");
            assert!(first.matches(":ip").count() == if overhead == 0 { 1 } else { 2 }, "{cni}: {first}");
        } else {
            assert!(first.starts_with("eth:ethertype:ip:udp"), "{cni}: {first}");
        }
    }
    // Per-packet CPU: userspace plugins far above kernel overlays, overlays above IPIP, IPIP
    // above no encapsulation.
    let c = |x: Cni| cpu[&x];
    for user in [Cni::FlannelUdp, Cni::WeaveSleeve] {
        for kernel in [Cni::FlannelVxlan, Cni::CalicoVxlan, Cni::CiliumGeneve, Cni::WeaveFastdp] {
            assert!(c(user) > 1.5 * c(kernel), "{user} {} vs {kernel} {}", c(user), c(kernel));
        }
    }
    for overlay in [Cni::FlannelVxlan, Cni::CalicoVxlan] {
        assert!(
            c(overlay) > c(Cni::CalicoIpip),
            "{overlay} {} vs calico-ipip {}",
            c(overlay),
            c(Cni::CalicoIpip)
        );
    }
    assert!(c(Cni::CalicoIpip) > c(Cni::CalicoBgp), "{cpu:?}");
    assert!(c(Cni::FlannelVxlan) > c(Cni::FlannelHostGw), "{cpu:?}");
}

#[test]
fn host_gw_fails_across_racks_with_the_reason() {
    let out = scratch("ls").join("r");
    let o = app::run(&repo("scenarios/leaf-spine.ron"), &RunOptions { out: Some(out), ..Default::default() })
        .unwrap();
    let s = o.summary;
    let cross = s.flows.iter().find(|f| f.workload == "cross-rack").expect("cross-rack flow");
    let same = s.flows.iter().find(|f| f.workload == "same-rack").expect("same-rack flow");
    assert_eq!(cross.delivered, 0);
    assert_eq!(cross.drops_by_reason.get("no_route"), Some(&cross.sent), "{:?}", cross.drops_by_reason);
    assert_eq!(same.delivered, same.sent);
    assert!(
        s.scenario.warnings.iter().any(|w| w.contains("Nexthop has invalid gateway")),
        "{:?}",
        s.scenario.warnings
    );
}

#[test]
fn ipip_crosssubnet_encapsulates_only_across_racks() {
    let scenario = repo("scenarios/cni/calico-ipip-crosssubnet.ron");
    let trace = |to: &str| app::trace(&scenario, "node-1-pod-1", to, 64, Default::default()).unwrap();
    let encap = |t: &cnisim::trace::Trace| t.hops.iter().any(|(_, h)| h.action == "encap");
    let same_rack = trace("node-2-pod-1");
    let cross_rack = trace("node-3-pod-1");
    assert!(same_rack.delivered && cross_rack.delivered);
    assert!(!encap(&same_rack), "{}", same_rack.render());
    assert!(encap(&cross_rack), "{}", cross_rack.render());
    let nic = |t: &cnisim::trace::Trace| {
        t.hops
            .iter()
            .filter(|(of, _)| *of == cnisim::trace::HopOf::Data)
            .find(|(_, h)| h.place == "node-1" && h.device == "eth0" && h.action == "xmit")
            .map(|(_, h)| h.size)
    };
    assert_eq!(nic(&cross_rack).unwrap(), nic(&same_rack).unwrap() + 20);
}

#[test]
fn mtu_blackhole_drops_with_icmp_and_dont_fragment() {
    let out = scratch("mtu").join("r");
    let opts =
        RunOptions { out: Some(out.clone()), pcap: vec!["node-1-pod-1/eth0".into()], ..Default::default() };
    let s = app::run(&repo("scenarios/mtu-blackhole.ron"), &opts).unwrap().summary;
    let big = &s.flows[0];
    assert_eq!(big.delivered, 0, "{big:?}");
    assert_eq!(big.drops_by_reason.get("mtu_exceeded"), Some(&big.sent));
    assert!(s.flows[1].delivered > 0 && s.flows[1].delivered == s.flows[1].sent);
    if std::env::var_os("CNISIM_SKIP_TSHARK").is_none() {
        let pcap = out.join("pcap/node-1-pod-1-eth0.pcap");
        let icmp = tshark(&[
            "-r",
            pcap.to_str().unwrap(),
            "-Y",
            "icmp.type == 3 && icmp.code == 4 && icmp.mtu == 1450",
        ]);
        assert!(!icmp.trim().is_empty(), "no ICMP fragmentation-needed reached the pod");
    }
}

#[test]
fn describe_shows_what_each_plugin_programs() {
    let d = |id: &str| {
        app::describe(&repo(&format!("scenarios/cni/{id}.ron")), "node-1", None, Default::default()).unwrap()
    };
    let checks: [(&str, &[&str]); 4] = [
        (
            "flannel-vxlan",
            &[
                "vxlan id 1 local 192.168.0.1 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum",
                "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
                "02:f1:00:00:00:02 dev flannel.1 dst 192.168.0.2 self permanent",
                "10.244.1.0 dev flannel.1 lladdr 02:f1:00:00:00:02 PERMANENT",
            ],
        ),
        (
            "calico-ipip",
            &[
                "tunl0: <NOARP,UP,LOWER_UP> mtu 1480",
                "ipip any remote any local any ttl inherit nopmtudisc",
                "10.244.1.0/26 via 192.168.0.2 dev tunl0 proto bird onlink",
                "default via 169.254.1.1 dev eth0",
                "link/ether ee:ee:ee:ee:ee:ee",
            ],
        ),
        (
            "cilium-vxlan",
            &[
                "vxlan external id 0 srcport 0 0 dstport 8472 nolearning ttl auto noudpcsum",
                "default via 10.244.0.1 dev eth0 mtu 1450",
                "cilium_host",
            ],
        ),
        ("weave-fastdp", &["vxlan-6784", "openvswitch datapath", "master weave"]),
    ];
    for (id, wants) in checks {
        let s = d(id);
        for want in wants {
            assert!(s.contains(want), "{id}: missing {want:?} in:\n{s}");
        }
    }
}

/// flannel-vxlan's DirectRouting: nodes on one subnet get host-gw routes, no encapsulation.
#[test]
fn flannel_direct_routing_skips_vxlan_on_one_subnet() {
    let dir = scratch("direct");
    let text = std::fs::read_to_string(short_quickstart(&dir)).unwrap();
    let direct = text.replacen(
        "cni: \"flannel-host-gw\",",
        "cni: \"flannel-vxlan\",\n    cni_options: (direct_routing: true),",
        1,
    );
    assert_ne!(direct, text);
    let path = dir.join("direct.ron");
    std::fs::write(&path, direct).unwrap();
    let s =
        app::run(&path, &RunOptions { out: Some(dir.join("out")), ..Default::default() }).unwrap().summary;
    assert!(s.overhead.iter().all(|p| p.overhead_bytes == 0), "{:?}", s.overhead);
    let d = app::describe(&path, "node-1", None, Default::default()).unwrap();
    assert!(d.contains("10.244.1.0/24 via 192.168.0.2 dev eth0\n"), "{d}");
    assert!(!d.contains("dev flannel.1 onlink"), "{d}");
}
