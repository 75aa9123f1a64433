//! TCP on smoltcp between pods: segments tshark decodes with valid checksums and no gaps on a
//! loss-free path, one stream limited by a core, TCP_RR and TCP_CRR transactions, and
//! byte-identical output for the same seed.

use cnisim::app::{self, RunOptions};
use cnisim::cluster::Cni;
use cnisim::summary::Summary;

use crate::{repo, scratch, tshark};

/// `scenarios/tcp.ron` shortened to `duration`, with one stream alone (no other workload).
fn one_stream(dir: &std::path::Path, duration: &str, loss: &str) -> std::path::PathBuf {
    let text = format!(
        r#"Scenario(
    name: "tcp-one", seed: 3, duration: "{duration}", cni: "flannel-host-gw",
    nodes: Count(count: 2, cores: 4, nic: "10Gbit"),
    pods_per_node: 1,
    underlay: (loss: {loss}),
    workloads: [(name: "s", kind: TcpStream(), from: Pod("node-1-pod-1"), to: Pod("node-2-pod-1"))],
)"#
    );
    let path = dir.join(format!("one-{duration}.ron"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(scenario: &std::path::Path, out: std::path::PathBuf, cni: Option<Cni>, pcap: Vec<String>) -> Summary {
    let opts = RunOptions { out: Some(out), pcap, seed: None, cni, proxy: None };
    app::run(scenario, &opts).unwrap().summary
}

/// [`run`] in proxy mode `proxy`, capturing on `pcap`.
fn run_proxy(scenario: &std::path::Path, out: std::path::PathBuf, proxy: &str, pcap: &str) -> Summary {
    let opts = RunOptions {
        out: Some(out),
        proxy: Some(proxy.parse().unwrap()),
        pcap: vec![pcap.into()],
        ..Default::default()
    };
    app::run(scenario, &opts).unwrap().summary
}

#[test]
fn tcp_scenario_streams_rr_and_crr() {
    let dir = scratch("tcp");
    let s = run(&repo("scenarios/tcp.ron"), dir.join("a"), None, vec![]);
    let by = |w: &str| s.flows.iter().find(|f| f.workload == w).unwrap();
    let one = by("one-stream").tcp.as_ref().unwrap();
    let eight = by("eight-streams").tcp.as_ref().unwrap();
    assert_eq!((one.connections, one.streams.len()), (1, 1));
    assert_eq!((eight.connections, eight.streams.len()), (8, 8));
    // One stream is served by one core of the receiver (with TSO and GRO: its NIC receive of
    // every segment and one stack traversal per merged packet): clearly less than the link.
    let g1 = one.streams[0].goodput_bps;
    assert!(g1 > 5e9 && g1 < 0.75 * 40e9, "one stream {g1}");
    // Every stream of the eight moves data; what the applications read is what was written
    // and acknowledged, never more.
    for st in &eight.streams {
        assert!(st.bytes_read > 0 && st.bytes_read <= st.bytes_written, "{st:?}");
        assert!(st.data_segments[0] > 0 && st.segments[1] > 0, "data one way, ACKs back");
    }
    // Eight streams spread over the cores fill the link: at least 90% of its 40 Gbit/s.
    let g8: f64 = eight.streams.iter().map(|st| st.goodput_bps).sum();
    assert!(g8 >= 0.9 * 40e9 && g8 > 1.3 * g1, "eight streams {g8} vs one {g1}");
    let rr = by("tcp-rr");
    assert!(rr.transactions > 1000, "TCP_RR transactions {}", rr.transactions);
    assert_eq!(rr.tcp.as_ref().unwrap().connections, 1, "TCP_RR keeps one connection");
    let crr = by("tcp-crr");
    let c = crr.tcp.as_ref().unwrap();
    assert!(crr.transactions > 100);
    // A new connection per transaction (the last one may still be open at the end).
    assert!(c.connections == crr.transactions || c.connections == crr.transactions + 1, "{c:?}");
    // A new connection costs a handshake and a close: TCP_CRR is slower than TCP_RR.
    assert!(crr.rtt.as_ref().unwrap().p50_ns > rr.rtt.as_ref().unwrap().p50_ns);
    assert!(s.totals.cpu_by_step.get("tcp").copied().unwrap_or(0) > 0);
}

#[test]
fn tcp_is_byte_identical_for_the_same_seed() {
    let dir = scratch("tcp-det");
    let scenario = one_stream(&dir, "20ms", "0.0");
    let pcap = vec!["node-1-pod-1/eth0".to_string()];
    run(&scenario, dir.join("a"), None, pcap.clone());
    run(&scenario, dir.join("b"), None, pcap);
    let strip = |p: &std::path::Path| {
        let t = std::fs::read_to_string(p.join("summary.json")).unwrap();
        t[..t.find("\"run\"").unwrap()].to_string()
    };
    assert_eq!(strip(&dir.join("a")), strip(&dir.join("b")));
    let pa = std::fs::read(dir.join("a/pcap/node-1-pod-1-eth0.pcap")).unwrap();
    assert_eq!(pa, std::fs::read(dir.join("b/pcap/node-1-pod-1-eth0.pcap")).unwrap());
}

#[test]
fn tshark_decodes_every_segment_with_valid_checksums() {
    if std::env::var_os("CNISIM_SKIP_TSHARK").is_some() {
        return;
    }
    let dir = scratch("tcp-pcap");
    // Every CNI: segments, super-packets and merged packets, through each data plane.
    let scenario = one_stream(&dir, "3ms", "0.0");
    for cni in Cni::ALL {
        let out = dir.join(cni.id());
        let s =
            run(&scenario, out.clone(), Some(cni), vec!["node-2-pod-1/eth0".into(), "node-1/eth0".into()]);
        let st = &s.flows[0].tcp.as_ref().unwrap().streams[0];
        assert!(st.drops_by_reason.is_empty(), "{cni}: loss-free path: {:?}", st.drops_by_reason);
        let pod = out.join("pcap/node-2-pod-1-eth0.pcap");
        let p = pod.to_str().unwrap();
        let bad = tshark(&[
            "-r", p, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-Y",
            "_ws.malformed or tcp.checksum.status == 0 or ip.checksum.status == 0 or tcp.analysis.lost_segment or tcp.analysis.retransmission",
        ]);
        assert!(bad.trim().is_empty(), "{cni}: {bad}");
        let handshake = tshark(&["-r", p, "-Y", "tcp.flags.syn == 1", "-T", "fields", "-e", "tcp.flags.str"]);
        assert_eq!(handshake.lines().count(), 2, "{cni}: SYN and SYN-ACK: {handshake}");
        let data = tshark(&["-r", p, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.len"]);
        assert!(data.lines().count() > 100, "{cni}: data segments");
        // On the underlay, the CNI's encapsulation carries the same segments. Weave's sleeve
        // frames its own protocol on UDP 6783, which tshark does not decode.
        if cni == Cni::WeaveSleeve {
            continue;
        }
        let nic = out.join("pcap/node-1-eth0.pcap");
        // flannel's VXLAN port is 8472 (the kernel's default, not IANA's 4789); flanneld's udp
        // backend carries bare IPv4 packets on 8285; Weave fastdp's VXLAN is on 6784.
        let n = tshark(&[
            "-r",
            nic.to_str().unwrap(),
            "-d",
            "udp.port==8472,vxlan",
            "-d",
            "udp.port==8285,ip",
            "-d",
            "udp.port==6784,vxlan",
            "-Y",
            "tcp.len > 0 and tcp.srcport != 0",
            "-T",
            "fields",
            "-e",
            "tcp.len",
        ]);
        assert!(n.lines().count() > 100, "{cni}: segments on node-1's NIC");
    }
}

#[test]
fn vxlan_carries_a_stream_slower_than_host_gw() {
    let dir = scratch("tcp-vxlan");
    let scenario = one_stream(&dir, "15ms", "0.0");
    let g = |cni| {
        let s = run(&scenario, dir.join(format!("{cni:?}")), Some(cni), vec![]);
        s.flows[0].tcp.as_ref().unwrap().streams[0].goodput_bps
    };
    let (hostgw, vxlan) = (g(Cni::FlannelHostGw), g(Cni::FlannelVxlan));
    assert!(vxlan < hostgw, "vxlan {vxlan} host-gw {hostgw}");
}

/// Loss on the cable costs a stream goodput: every lost segment is retransmitted (fast
/// retransmit on three duplicate ACKs), and the more is lost the more often the window falls
/// (smoltcp has no SACK: a second loss in one window waits for the RTO).
#[test]
fn loss_on_the_cable_costs_the_stream_goodput() {
    let dir = scratch("tcp-loss");
    let some = run(&one_stream(&dir, "30ms", "0.001"), dir.join("some"), None, vec![]);
    let more = run(&one_stream(&dir, "30ms", "0.005"), dir.join("more"), None, vec![]);
    let st = |s: &Summary| s.flows[0].tcp.as_ref().unwrap().streams[0].clone();
    let (a, b) = (st(&some), st(&more));
    for s in [&a, &b] {
        assert!(s.drops_by_reason.get("link_loss").copied().unwrap_or(0) > 0, "{s:?}");
        assert!(s.retransmits[0] > 0, "lost segments are sent again: {s:?}");
    }
    assert!(b.goodput_bps < a.goodput_bps, "0.5 %: {} 0.1 %: {}", b.goodput_bps, a.goodput_bps);
}

/// TCP_CRR to a ClusterIP Service beside 10,000 generated Services: every transaction is a new
/// connection through the proxy's first-packet path, so iptables' rule walk makes it slower
/// than IPVS's and nftables' hash lookups and eBPF's map lookups, and the walk shows in the
/// flow's CPU.
#[test]
fn tcp_crr_to_a_service_is_slowest_with_iptables() {
    let dir = scratch("tcp-svc");
    let text = r#"Scenario(
    name: "tcp-svc", seed: 5, duration: "30ms", cni: "flannel-vxlan",
    nodes: Count(count: 3, cores: 4),
    pods_per_node: 1,
    pods: [
        (name: "web-1", node: "node-2", labels: {"app": "web"}),
        (name: "web-2", node: "node-3", labels: {"app": "web"}),
    ],
    services: [(name: "web", selector: {"app": "web"}, ports: [(port: 80, target_port: 8080, protocol: "TCP")])],
    generated_services: (count: 10000, endpoints: 2, protocol: "TCP"),
    workloads: [(name: "crr", kind: TcpCrr(request: 64, response: 1024), from: Pod("node-1-pod-1"), to: Service("web"))],
)"#;
    let path = dir.join("svc.ron");
    std::fs::write(&path, text).unwrap();
    let tx = |proxy: &str| {
        let opts = RunOptions {
            out: Some(dir.join(proxy)),
            proxy: Some(proxy.parse().unwrap()),
            ..Default::default()
        };
        let s = app::run(&path, &opts).unwrap().summary;
        let f = &s.flows[0];
        let sv = s.services.as_ref().unwrap();
        assert!(sv.translated >= f.transactions, "{proxy}: every connection translated");
        let rules_cpu = f.cpu_by_step.get("service_rules").copied().unwrap_or(0);
        assert!(rules_cpu > 0, "{proxy}");
        (f.transactions, sv.service_rules_evaluated_mean, rules_cpu)
    };
    let (ipt, ipt_rules, ipt_cpu) = tx("iptables");
    let (ipvs, _, ipvs_cpu) = tx("ipvs");
    let (nft, _, nft_cpu) = tx("nftables");
    let (bpf, _, bpf_cpu) = tx("ebpf");
    assert!(ipt_rules > 9000.0, "iptables walks KUBE-SERVICES: {ipt_rules}");
    assert!(ipt < ipvs && ipt < nft && ipt < bpf, "iptables {ipt} ipvs {ipvs} nftables {nft} ebpf {bpf}");
    // The CPU breakdown: the rule walk is where iptables' time goes.
    assert!(ipt_cpu > 5 * ipvs_cpu.max(nft_cpu).max(bpf_cpu), "{ipt_cpu} {ipvs_cpu} {nft_cpu} {bpf_cpu}");
}

/// TCP_CRR to generated Services whose endpoints include the client pod itself: with socket LB
/// the connect() goes to the pod's own address, through `lo`; without, Cilium's `lb4_local`
/// source-NATs the hairpin to 169.254.42.1, and kube-proxy masquerades it. Every mode keeps
/// completing transactions (they stopped after the first hairpin before).
#[test]
fn tcp_crr_survives_connections_to_the_client_itself() {
    let dir = scratch("tcp-hairpin");
    let text = r#"Scenario(
    name: "tcp-hairpin", seed: 5, duration: "10ms", cni: "flannel-vxlan",
    nodes: Count(count: 3, cores: 4),
    pods_per_node: 1,
    generated_services: (count: 100, endpoints: 2, protocol: "TCP"),
    workloads: [(name: "crr", kind: TcpCrr(request: 64, response: 1024), from: Pod("node-1-pod-1"), to: AnyGeneratedService)],
)"#;
    let path = dir.join("hairpin.ron");
    std::fs::write(&path, text).unwrap();
    for proxy in ["iptables", "ebpf", "ebpf-no-socket-lb"] {
        let s = run_proxy(&path, dir.join(proxy), proxy, "node-1-pod-1/eth0");
        let f = &s.flows[0];
        assert!(f.transactions > 100, "{proxy}: {} transactions", f.transactions);
        if proxy == "ebpf-no-socket-lb" && std::env::var_os("CNISIM_SKIP_TSHARK").is_none() {
            let p = dir.join(proxy).join("pcap/node-1-pod-1-eth0.pcap");
            let src = tshark(&[
                "-r",
                p.to_str().unwrap(),
                "-Y",
                "ip.src == 169.254.42.1",
                "-T",
                "fields",
                "-e",
                "tcp.dstport",
            ]);
            assert!(src.lines().count() > 0, "the hairpin arrives from Cilium's service loopback address");
        }
    }
}

/// `one_stream` on a 10 Gbit/s link with these node offloads (`offloads: (...)`).
fn one_stream_with(dir: &std::path::Path, name: &str, offloads: &str) -> std::path::PathBuf {
    let text = format!(
        r#"Scenario(
    name: "tcp-offloads", seed: 3, duration: "10ms", cni: "flannel-host-gw",
    nodes: Count(count: 2, cores: 4, nic: "10Gbit", offloads: ({offloads})),
    pods_per_node: 1,
    workloads: [(name: "s", kind: TcpStream(), from: Pod("node-1-pod-1"), to: Pod("node-2-pod-1"))],
)"#
    );
    let path = dir.join(format!("{name}.ron"));
    std::fs::write(&path, text).unwrap();
    path
}

/// TSO/GSO and GRO, as Linux has them by default, let one core move a stream several times
/// faster than one segment at a time; a VXLAN stream costs the sender software segmentation
/// unless the NIC segments tunnels (`tx-udp_tnl-segmentation`); super-packets reach the pod
/// (GRO) and tshark decodes them with valid checksums; the same seed gives the same bytes.
#[test]
fn offloads_decide_what_one_core_carries() {
    let dir = scratch("tcp-offloads");
    let on = one_stream_with(&dir, "on", "");
    let off = one_stream_with(&dir, "off", "gso: false, tso: false, gro: false");
    let goodput = |s: &Summary| s.flows[0].tcp.as_ref().unwrap().streams[0].goodput_bps;
    let s_on = run(&on, dir.join("on"), None, vec!["node-2-pod-1/eth0".into()]);
    let s_off = run(&off, dir.join("off"), None, vec![]);
    // `describe` prints them as `ethtool -k` does.
    let d = app::describe(&off, "node-1", None, Default::default()).unwrap();
    assert!(d.contains("tcp-segmentation-offload: off\ngeneric-segmentation-offload: off\ngeneric-receive-offload: off\ntx-udp_tnl-segmentation: off"), "{d}");
    let d = app::describe(&on, "node-2", None, Default::default()).unwrap();
    assert!(
        d.contains("tcp-segmentation-offload: on\n")
            && d.contains("net.ipv4.tcp_limit_output_bytes = 4194304"),
        "{d}"
    );
    assert!(goodput(&s_on) > 1.5 * goodput(&s_off), "on {} off {}", goodput(&s_on), goodput(&s_off));
    // What merged: the receiver's NIC spent time in GRO, and without offloads nothing did.
    let offload = |s: &Summary, n: usize| s.nodes[n].cpu_by_step.get("offload").copied().unwrap_or(0);
    assert!(offload(&s_on, 1) > 0 && offload(&s_off, 1) == 0);
    // With TSO the sender's NIC cuts plain TCP in hardware: no software segmentation.
    assert_eq!(offload(&s_on, 0), 0, "{:?}", s_on.nodes[0].cpu_by_step);
    if std::env::var_os("CNISIM_SKIP_TSHARK").is_none() {
        let p = dir.join("on/pcap/node-2-pod-1-eth0.pcap");
        let p = p.to_str().unwrap();
        let big = tshark(&["-r", p, "-Y", "ip.len > 1500", "-T", "fields", "-e", "tcp.len"]);
        assert!(big.lines().count() > 10, "GRO packets reach the pod: {big}");
        let bad = tshark(&[
            "-r", p, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-Y",
            "_ws.malformed or tcp.checksum.status == 0 or ip.checksum.status == 0 or tcp.analysis.lost_segment",
        ]);
        assert!(bad.trim().is_empty(), "{bad}");
    }
    // VXLAN: software GSO on the sender unless the NIC has tunnel segmentation.
    let sw = run(&on, dir.join("vx-sw"), Some(Cni::FlannelVxlan), vec![]);
    let hw = one_stream_with(&dir, "hw", "tx_udp_tnl_segmentation: true");
    let hw = run(&hw, dir.join("vx-hw"), Some(Cni::FlannelVxlan), vec![]);
    assert!(
        offload(&sw, 0) > 0 && offload(&hw, 0) == 0,
        "{:?} {:?}",
        sw.nodes[0].cpu_by_step,
        hw.nodes[0].cpu_by_step
    );
    // Determinism with super-packets and merges.
    let again = run(&on, dir.join("on-again"), None, vec!["node-2-pod-1/eth0".into()]);
    // (summary.json's wall-clock figures aside.)
    assert_eq!(format!("{:?}", again.flows), format!("{:?}", s_on.flows));
    assert_eq!(format!("{:?}", again.nodes), format!("{:?}", s_on.nodes));
    assert_eq!(
        std::fs::read(dir.join("on/pcap/node-2-pod-1-eth0.pcap")).unwrap(),
        std::fs::read(dir.join("on-again/pcap/node-2-pod-1-eth0.pcap")).unwrap()
    );
    assert_eq!(goodput(&again), goodput(&s_on));
}

/// The PMTU black hole (`scenarios/mtu-blackhole-tcp.ron`): a ToR-spine MTU below the pods',
/// TCP's DF on every segment. With the fabric filtering ICMP the handshake completes and the
/// stream stalls; with the ICMP let through the sender's kernel learns the path MTU, cuts its
/// segments to fit and the stream runs.
#[test]
fn the_mtu_black_hole_stalls_a_stream_only_with_icmp_filtered() {
    let dir = scratch("tcp-blackhole");
    let filtered = repo("scenarios/mtu-blackhole-tcp.ron");
    let text = std::fs::read_to_string(&filtered).unwrap().replace("filter_icmp: true", "filter_icmp: false");
    let open = dir.join("open.ron");
    std::fs::write(&open, text).unwrap();
    let stream = |s: &Summary| s.flows[0].tcp.as_ref().unwrap().streams[0].clone();
    let s = run(&filtered, dir.join("filtered"), None, vec!["node-1-pod-1/eth0".into()]);
    let st = stream(&s);
    assert_eq!(st.bytes_read, 0, "{st:?}");
    assert!(st.bytes_written > 0 && st.drops_by_reason.get("mtu_exceeded").copied().unwrap_or(0) > 0);
    assert!(s.totals.icmp_frag_needed_filtered > 0 && s.totals.icmp_frag_needed == 0);
    // The report says what the fabric withheld.
    let html = std::fs::read_to_string(dir.join("filtered/report.html")).unwrap();
    let line =
        format!("withheld by the fabric's routers (filter_icmp): {}.", s.totals.icmp_frag_needed_filtered);
    assert!(html.contains(&line), "{line}");
    if std::env::var_os("CNISIM_SKIP_TSHARK").is_none() {
        let p = dir.join("filtered/pcap/node-1-pod-1-eth0.pcap");
        let flags = tshark(&["-r", p.to_str().unwrap(), "-Y", "tcp", "-T", "fields", "-e", "tcp.flags.str"]);
        let flags: Vec<&str> = flags.lines().map(str::trim).collect();
        // SYN, SYN-ACK, ACK: the handshake went through; then full-size segments, unanswered.
        assert!(flags.len() >= 4 && flags[0].contains('S') && flags[1].contains('S'), "{flags:?}");
    }
    let s = run(&open, dir.join("open"), None, vec![]);
    let st = stream(&s);
    assert!(s.totals.icmp_frag_needed > 0 && s.totals.icmp_frag_needed_filtered == 0);
    assert!(st.goodput_bps > 100e6, "the stream recovers once the path MTU is known: {st:?}");
}

/// TCP to and from a host outside the cluster: an external client's TCP_CRR and stream to a
/// NodePort (kube-proxy's DNAT on the addressed node), a pod's TCP_RR to the external host
/// (masqueraded by the CNI to its node's address); tshark finds the host's capture clean.
#[test]
fn tcp_runs_to_and_from_an_external_host() {
    let dir = scratch("tcp-external");
    let text = r#"Scenario(
    name: "ext", seed: 2, duration: "20ms", cni: "flannel-vxlan",
    nodes: Count(count: 3),
    external_hosts: ["internet"],
    pods: [(name: "web-1", node: "node-2", labels: {"app": "web"}), (name: "app", node: "node-3")],
    services: [(name: "web", kind: NodePort, selector: {"app": "web"},
                ports: [(port: 80, target_port: 8080, node_port: 30080, protocol: "TCP")])],
    workloads: [
        (name: "in", kind: TcpCrr(request: 100, response: 1000), from: External("internet"), to: NodePort(service: "web", node: "node-1")),
        (name: "in-stream", kind: TcpStream(), from: External("internet"), to: NodePort(service: "web", node: "node-2")),
        (name: "out", kind: TcpRr(request: 100, response: 500), from: Pod("app"), to: External("internet"), port: 443),
    ],
)"#;
    let path = dir.join("ext.ron");
    std::fs::write(&path, text).unwrap();
    let s = run(&path, dir.join("out"), None, vec!["internet/eth0".into()]);
    let by = |w: &str| s.flows.iter().find(|f| f.workload == w).unwrap();
    assert!(by("in").transactions > 10, "{:?}", by("in").transactions);
    let stream = &by("in-stream").tcp.as_ref().unwrap().streams[0];
    assert!(stream.goodput_bps > 1e9, "{stream:?}");
    assert!(by("out").transactions > 10);
    if std::env::var_os("CNISIM_SKIP_TSHARK").is_none() {
        let p = dir.join("out/pcap/internet-eth0.pcap");
        let p = p.to_str().unwrap();
        let bad = tshark(&[
            "-r", p, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-Y",
            "_ws.malformed or tcp.checksum.status == 0 or ip.checksum.status == 0 or tcp.analysis.lost_segment",
        ]);
        assert!(bad.trim().is_empty(), "{bad}");
        // The pod's connection reaches the host from its node's address (masquerade).
        let src = tshark(&[
            "-r",
            p,
            "-Y",
            "tcp.dstport == 443 and tcp.flags.syn == 1",
            "-T",
            "fields",
            "-e",
            "ip.src",
        ]);
        assert_eq!(src.lines().next().map(str::trim), Some("192.168.0.3"), "{src}");
    }
}

/// TCP_CRR to a Service without endpoints: every mode that sends a packet answers the SYN
/// with an ICMP port unreachable (REJECT, IPVS, Cilium's no-backend response), the client's
/// connect() fails at once with ECONNREFUSED and it connects again 1 ms later; the capture on
/// the client shows the ICMP quoting its SYN. To a pod port nobody listens on, the SYN is
/// answered by a RST, refused the same way.
#[test]
fn refused_connections_get_an_icmp_port_unreachable_or_a_rst() {
    let dir = scratch("tcp-refused");
    let text = r#"Scenario(
    name: "tcp-refused", seed: 5, duration: "20ms", cni: "flannel-host-gw",
    nodes: Count(count: 2),
    pods_per_node: 1,
    services: [(name: "gone", selector: {"app": "gone"}, ports: [(port: 80, target_port: 8080, protocol: "TCP")])],
    workloads: [(name: "crr", kind: TcpCrr(request: 64, response: 64), from: Pod("node-1-pod-1"), to: Service("gone"))],
)"#;
    let path = dir.join("refused.ron");
    std::fs::write(&path, text).unwrap();
    for proxy in ["iptables", "ipvs", "nftables", "ebpf-no-socket-lb"] {
        let s = run_proxy(&path, dir.join(proxy), proxy, "node-1-pod-1/eth0");
        let f = &s.flows[0];
        let tcp = f.tcp.as_ref().unwrap();
        assert_eq!(f.transactions, 0, "{proxy}");
        // One try per millisecond (plus the ICMP's round trip): about 20 in 20 ms.
        assert!(tcp.refused >= 10 && tcp.refused <= tcp.connections, "{proxy}: {tcp:?}");
        assert_eq!(s.totals.icmp_port_unreachable, tcp.refused, "{proxy}: one ICMP per SYN");
        if std::env::var_os("CNISIM_SKIP_TSHARK").is_none() {
            let pcap = dir.join(proxy).join("pcap/node-1-pod-1-eth0.pcap");
            let quoted = tshark(&[
                "-r",
                pcap.to_str().unwrap(),
                "-o",
                "ip.check_checksum:TRUE",
                "-Y",
                "icmp.type == 3 && icmp.code == 3 && tcp.flags.syn == 1 && !_ws.expert.severity >= warning",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ]);
            assert_eq!(quoted.lines().count() as u64, tcp.refused, "{proxy}: {quoted}");
        }
    }
}

/// Two nodes, a TCP Service with its one endpoint on node-2, a client pod on node-1: TCP_RR,
/// TCP_CRR and a short stream to the Service.
const RELAYED: &str = r#"Scenario(
    name: "tcp-userspace", seed: 9, duration: "20ms", cni: "flannel-host-gw", proxy: "userspace",
    nodes: Count(count: 2, cores: 4, nic: "10Gbit"),
    pods: [(name: "web-1", node: "node-2", labels: {"app": "web"}), (name: "client", node: "node-1")],
    services: [(name: "web", selector: {"app": "web"}, ports: [(port: 80, target_port: 8080, protocol: "TCP")])],
    workloads: [
        (name: "rr", kind: TcpRr(request: 64, response: 1024), from: Pod("client"), to: Service("web"), port: 5201),
        (name: "crr", kind: TcpCrr(request: 64, response: 1024), from: Pod("client"), to: Service("web"), port: 5202),
        (name: "stream", kind: TcpStream(), from: Pod("client"), to: Service("web"), start: "10ms"),
    ],
)"#;

/// kube-proxy's userspace mode relays a TCP connection through its own process: the client's
/// connection ends at the proxy's socket on the node (REDIRECTed by the portal rule, answered
/// from the Service's address), and the proxy connects to the endpoint from the node's own
/// address. Every workload completes; the proxy's CPU is counted as the userspace step; each
/// new connection costs a second handshake and the proxy's accept and dial, so TCP_CRR is
/// slower than with iptables.
#[test]
fn userspace_proxy_relays_tcp_over_a_connection_of_its_own() {
    let dir = scratch("tcp-userspace");
    let path = dir.join("relay.ron");
    std::fs::write(&path, RELAYED).unwrap();
    let s = run_proxy(&path, dir.join("userspace"), "userspace", "*");
    let by = |s: &Summary, w: &str| s.flows.iter().find(|f| f.workload == w).unwrap().clone();
    let (rr, crr, stream) = (by(&s, "rr"), by(&s, "crr"), by(&s, "stream"));
    assert!(rr.transactions > 200, "TCP_RR through the proxy: {}", rr.transactions);
    assert!(crr.transactions > 50, "TCP_CRR through the proxy: {}", crr.transactions);
    let st = &stream.tcp.as_ref().unwrap().streams[0];
    assert!(st.goodput_bps > 1e9 && st.bytes_read <= st.bytes_written, "{st:?}");
    for f in [&rr, &crr, &stream] {
        assert!(f.cpu_by_step.get("userspace").copied().unwrap_or(0) > 0, "{}: the proxy's CPU", f.workload);
    }
    let ipt = run_proxy(&path, dir.join("iptables"), "iptables", "node-1/eth0");
    let crr_ipt = by(&ipt, "crr");
    assert!(crr.transactions < crr_ipt.transactions, "{} vs {}", crr.transactions, crr_ipt.transactions);
    assert!(crr.rtt.as_ref().unwrap().p50_ns > crr_ipt.rtt.as_ref().unwrap().p50_ns);
    assert_eq!(by(&ipt, "crr").cpu_by_step.get("userspace"), None);
    if std::env::var_os("CNISIM_SKIP_TSHARK").is_some() {
        return;
    }
    let pcap = |name: &str| dir.join("userspace/pcap").join(name).to_str().unwrap().to_string();
    let fields = |file: &str, filter: &str, field: &str| {
        tshark(&["-r", &pcap(file), "-Y", filter, "-T", "fields", "-e", field])
    };
    // The endpoint's connections all come from node-1 itself, none from the client pod.
    let srcs = fields("web-1-eth0.pcap", "tcp.flags.syn == 1 && tcp.flags.ack == 0", "ip.src");
    assert!(srcs.lines().count() > 50 && srcs.lines().all(|l| l == "192.168.0.1"), "{srcs}");
    // The client sees its SYN-ACKs from the Service's address and port: the REDIRECT undone.
    let synacks = fields("client-eth0.pcap", "tcp.flags.syn == 1 && tcp.flags.ack == 1", "ip.src");
    assert!(synacks.lines().count() > 50 && synacks.lines().all(|l| l == "10.96.0.2"), "{synacks}");
    // Both connections are whole: tshark finds no malformed or lost segment on either side.
    for file in ["web-1-eth0.pcap", "client-eth0.pcap"] {
        let bad = fields(
            file,
            "_ws.malformed || tcp.analysis.lost_segment || tcp.checksum.status == 0",
            "frame.number",
        );
        assert_eq!(bad.trim(), "", "{file}");
    }
}

/// The relayed connections are byte-identical for the same seed, and a comparison of proxy
/// modes gives the same bytes on one and two threads.
#[test]
fn userspace_tcp_relay_is_byte_identical() {
    let dir = scratch("tcp-userspace-det");
    let path = dir.join("relay.ron");
    std::fs::write(&path, RELAYED).unwrap();
    run_proxy(&path, dir.join("a"), "userspace", "node-1/*");
    run_proxy(&path, dir.join("b"), "userspace", "node-1/*");
    let summary = |d: &str| {
        crate::without_run(
            serde_json::from_slice(&std::fs::read(dir.join(d).join("summary.json")).unwrap()).unwrap(),
        )
    };
    assert_eq!(summary("a"), summary("b"));
    for p in std::fs::read_dir(dir.join("a/pcap")).unwrap() {
        let n = p.unwrap().file_name();
        let a = std::fs::read(dir.join("a/pcap").join(&n)).unwrap();
        assert!(a == std::fs::read(dir.join("b/pcap").join(&n)).unwrap(), "{n:?}");
    }
    let cnis = vec![Cni::FlannelHostGw, Cni::CalicoIpip];
    let proxies = Some(vec!["userspace".parse().unwrap(), "iptables".parse().unwrap()]);
    let (one, two) = crate::compare_on_one_and_two_threads(&path, &dir, cnis, proxies);
    let json = |d: &std::path::Path| {
        crate::without_run(serde_json::from_slice(&std::fs::read(d.join("compare.json")).unwrap()).unwrap())
    };
    assert_eq!(json(&one), json(&two));
}

/// A dial to an endpoint on a node that has been powered off gets no answer: after
/// `EndpointDialTimeouts`' first 250 ms the proxy gives up on it and dials the next endpoint,
/// which answers, so each connection round robin sends to the dead one waits 250 ms.
#[test]
fn userspace_proxy_dials_the_next_endpoint_after_a_timeout() {
    let dir = scratch("tcp-userspace-dial");
    let text = r#"Scenario(
    name: "dial", seed: 2, duration: "700ms", cni: "flannel-host-gw", proxy: "userspace",
    nodes: Count(count: 3),
    pods: [
        (name: "web-2", node: "node-2", labels: {"app": "web"}),
        (name: "web-3", node: "node-3", labels: {"app": "web"}),
        (name: "client", node: "node-1"),
    ],
    services: [(name: "web", selector: {"app": "web"}, ports: [(port: 80, target_port: 8080, protocol: "TCP")])],
    workloads: [(name: "crr", kind: TcpCrr(request: 64, response: 1024), from: Pod("client"), to: Service("web"))],
    changes: [(at: "100ms", power_off: "node-3")],
)"#;
    let path = dir.join("dial.ron");
    std::fs::write(&path, text).unwrap();
    let s = run(&path, dir.join("out"), None, vec![]);
    let f = &s.flows[0];
    assert!(f.transactions > 500, "transactions: {}", f.transactions);
    // Two connections after the power-off wait out a dial timeout each (at 350 and 600 ms).
    let max = f.rtt.as_ref().unwrap().max_ns;
    assert!((250_000_000..251_000_000).contains(&max), "the slowest transaction waited one timeout: {max}");
    let tcp = f.tcp.as_ref().unwrap();
    assert_eq!(tcp.refused, 0, "the client's connections were all accepted");
}
