//! Cilium enforces NetworkPolicy in its eBPF datapath: two namespaces, a default-deny ingress
//! and an allow by namespace and label; the allowed UDP and TCP flows are delivered (across
//! nodes, on one node, through a Service), the denied ones dropped as `policy_denied`, under
//! the tunnel and native routing; the same bytes on every run and thread count.

use std::path::Path;

use cnisim::app::{self, RunOptions};
use cnisim::cluster::Cni;
use cnisim::summary::{FlowSummary, Summary};

use crate::scratch;

/// `web` in prod takes UDP 5000 and TCP 5201 from pods labelled `role: client` of namespace
/// dev only. `intruder` (dev, no label) and `imposter` (default, the same labels as `client`)
/// are denied. `web` may open nothing (a default-deny egress): its replies still go, as replies
/// of connections it accepted, through a Service on the same node too.
const SCENARIO: &str = r#"Scenario(name: "cilium-np", seed: 7, duration: "60ms", cni: "cilium-vxlan",
    nodes: Count(count: 2),
    namespaces: [(name: "prod", labels: {"team": "a"}), (name: "dev")],
    pods: [
        (name: "web", node: "node-1", namespace: "prod", labels: {"app": "web"}),
        (name: "client", node: "node-2", namespace: "dev", labels: {"role": "client"}),
        (name: "local", node: "node-1", namespace: "dev", labels: {"role": "client"}),
        (name: "intruder", node: "node-2", namespace: "dev"),
        (name: "imposter", node: "node-2", labels: {"role": "client"}),
    ],
    services: [(name: "web", namespace: "prod", selector: {"app": "web"}, ports: [(port: 80, target_port: 5000)])],
    network_policies: [
        (name: "deny", namespace: "prod"),
        (name: "web-from-clients", namespace: "prod", pod_selector: (match_labels: {"app": "web"}),
         ingress: [(from: [(namespace_selector: (match_labels: {"kubernetes.io/metadata.name": "dev"}),
                            pod_selector: (match_labels: {"role": "client"}))],
                    ports: [(protocol: "UDP", port: 5000), (protocol: "TCP", port: 5201)])]),
        (name: "web-opens-nothing", namespace: "prod", pod_selector: (match_labels: {"app": "web"}),
         policy_types: ["Egress"]),
    ],
    workloads: [
        (name: "udp-ok", kind: UdpCbr(rate: "10Mbit", payload: 500), from: Pod("client"), to: Pod("web"), port: 5000),
        (name: "udp-local", kind: UdpCbr(rate: "10Mbit", payload: 500), from: Pod("local"), to: Pod("web"), port: 5000),
        (name: "udp-svc", kind: UdpRr(request: 100, response: 100), from: Pod("client"), to: Service("web")),
        (name: "udp-svc-local", kind: UdpRr(request: 100, response: 100), from: Pod("local"), to: Service("web")),
        (name: "tcp-ok", kind: TcpRr(request: 100, response: 100), from: Pod("client"), to: Pod("web"), port: 5201),
        (name: "udp-intruder", kind: UdpCbr(rate: "10Mbit", payload: 500), from: Pod("intruder"), to: Pod("web"), port: 5000),
        (name: "udp-imposter", kind: UdpCbr(rate: "10Mbit", payload: 500), from: Pod("imposter"), to: Pod("web"), port: 5000),
        (name: "tcp-intruder", kind: TcpRr(request: 100, response: 100), from: Pod("intruder"), to: Pod("web"), port: 5201),
        (name: "udp-from-web", kind: UdpCbr(rate: "10Mbit", payload: 500), from: Pod("web"), to: Pod("client"), port: 6000),
        (name: "udp-wrong-port", kind: UdpCbr(rate: "10Mbit", payload: 500), from: Pod("client"), to: Pod("web"), port: 5001),
    ],
)"#;

fn run(path: &Path, out: &Path, cni: Cni) -> Summary {
    let opts = RunOptions { out: Some(out.to_path_buf()), cni: Some(cni), ..Default::default() };
    app::run(path, &opts).unwrap_or_else(|e| panic!("{cni}: {e}")).summary
}

fn flow<'a>(s: &'a Summary, workload: &str) -> &'a FlowSummary {
    s.flows.iter().find(|f| f.workload == workload).unwrap_or_else(|| panic!("no flow {workload}"))
}

#[test]
fn cilium_delivers_the_allowed_flows_and_drops_the_denied_ones() {
    let dir = scratch("cilium-np");
    let path = dir.join("np.ron");
    std::fs::write(&path, SCENARIO).unwrap();
    for cni in [Cni::CiliumVxlan, Cni::CiliumNative] {
        let s = run(&path, &dir.join(cni.id()), cni);
        for w in ["udp-ok", "udp-local"] {
            let f = flow(&s, w);
            assert!(f.sent > 100, "{cni} {w}: {}", f.sent);
            assert_eq!(f.dropped, 0, "{cni} {w}: {:?}", f.drops_by_reason);
            assert!(f.delivered + 2 >= f.sent, "{cni} {w}: {} of {}", f.delivered, f.sent);
        }
        for w in ["udp-svc", "udp-svc-local", "tcp-ok"] {
            let f = flow(&s, w);
            assert!(f.transactions > 50, "{cni} {w}: {} transactions", f.transactions);
            assert_eq!(f.dropped, 0, "{cni} {w}: {:?}", f.drops_by_reason);
        }
        for w in ["udp-intruder", "udp-imposter", "udp-wrong-port", "udp-from-web"] {
            let f = flow(&s, w);
            assert!(f.sent > 100, "{cni} {w}");
            assert_eq!(f.delivered, 0, "{cni} {w}");
            assert_eq!(
                f.drops_by_reason.get("policy_denied"),
                Some(&f.sent),
                "{cni} {w}: {:?}",
                f.drops_by_reason
            );
        }
        assert_eq!(flow(&s, "tcp-intruder").transactions, 0, "{cni}");
        let t = &s.totals;
        assert!(
            t.drops_by_reason.get("policy_denied").is_some_and(|&n| n > 300),
            "{cni}: {:?}",
            t.drops_by_reason
        );
        // summary.json says so too.
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(cni.id()).join("summary.json")).unwrap()).unwrap();
        assert!(
            json["totals"]["drops_by_reason"]["policy_denied"].as_u64().is_some_and(|n| n > 300),
            "{cni}"
        );
    }
}

/// `describe` lists the identities and the node's endpoints' policy maps.
#[test]
fn describe_prints_identities_and_policy_maps() {
    let dir = scratch("cilium-np-describe");
    let path = dir.join("np.ron");
    std::fs::write(&path, SCENARIO).unwrap();
    let d = app::describe(&path, "node-1", None, Default::default()).unwrap();
    for want in [
        "$ cilium-dbg identity list",
        "k8s:io.kubernetes.pod.namespace=prod",
        "pod prod/web, identity 256; policy enforcement: ingress Enabled, egress Enabled)",
        "Allow    Ingress     1          ANY              0       allow-localhost-ingress",
        "5000/UDP         24      NetworkPolicy prod/web-from-clients ingress rule 0",
        "pod dev/local, identity 259; policy enforcement: ingress Disabled, egress Disabled)",
        "Allow    Egress      0          ANY              0       allow-any-egress",
    ] {
        assert!(d.contains(want), "{want:?} not in:\n{d}");
    }
}

/// The same scenario twice and on one and two threads: the same bytes.
#[test]
fn cilium_policy_outputs_are_byte_identical() {
    let dir = scratch("cilium-np-det");
    let path = dir.join("np.ron");
    std::fs::write(&path, SCENARIO).unwrap();
    let files = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    let without_run = |d: &Path, name: &str| {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join(name)).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("run");
        v
    };
    for cni in [Cni::CiliumVxlan, Cni::CiliumNative] {
        let (a, b) = (dir.join(format!("{}-a", cni.id())), dir.join(format!("{}-b", cni.id())));
        run(&path, &a, cni);
        run(&path, &b, cni);
        assert_eq!(files(&a), files(&b));
        for f in files(&a) {
            if f == "summary.json" {
                assert_eq!(without_run(&a, &f), without_run(&b, &f), "{cni}");
            } else {
                assert!(
                    std::fs::read(a.join(&f)).unwrap() == std::fs::read(b.join(&f)).unwrap(),
                    "{cni}: {f}"
                );
            }
        }
    }
    let cnis = vec![Cni::CiliumVxlan, Cni::CiliumGeneve, Cni::CiliumNative];
    let (one, two) = crate::compare_on_one_and_two_threads(&path, &dir, cnis, None);
    assert_eq!(files(&one), files(&two));
    for f in files(&one) {
        if f == "compare.json" {
            assert_eq!(without_run(&one, &f), without_run(&two, &f));
        } else {
            assert!(std::fs::read(one.join(&f)).unwrap() == std::fs::read(two.join(&f)).unwrap(), "{f}");
        }
    }
}
