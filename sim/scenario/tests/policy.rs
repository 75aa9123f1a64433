//! Namespaces and NetworkPolicy objects loaded into the model; the CNIs that would have to
//! enforce them refuse them until enforcement exists; the flows the policies deny.

use super::*;
use crate::cluster::PolicyPeer;
use crate::policy::{
    IpBlock, LabelSelector, Operator, Peer, PolicyPort, PolicyType, Protocol, Requirement, Side,
    NAMESPACE_NAME_LABEL,
};

/// Two namespaces, three pods, a Service, a default deny with two allows, and two workloads.
fn scenario(cni: &str) -> String {
    format!(
        r#"Scenario(name: "np", duration: "10ms", cni: "{cni}",
    nodes: Count(count: 2), pods_per_node: 1,
    namespaces: [(name: "prod", labels: {{"team": "a"}}), (name: "dev")],
    pods: [
        (name: "web", node: "node-1", namespace: "prod", labels: {{"app": "web"}}),
        (name: "db", node: "node-2", namespace: "prod", labels: {{"app": "db"}}),
        (name: "client", node: "node-1", namespace: "dev", labels: {{"app": "client"}}),
    ],
    services: [(name: "db", namespace: "prod", selector: {{"app": "db"}}, ports: [(port: 5432, protocol: "TCP")])],
    network_policies: [
        (name: "deny", namespace: "prod"),
        (name: "db-from-web", namespace: "prod", pod_selector: (match_labels: {{"app": "db"}}),
         ingress: [(from: [(pod_selector: (match_labels: {{"app": "web"}}))], ports: [(port: 5432)])]),
        (name: "web-egress", namespace: "prod",
         pod_selector: (match_expressions: [(key: "app", operator: "In", values: ["web"])]),
         policy_types: ["Egress"],
         egress: [(to: [(ip_block: (cidr: "10.244.0.0/16", except: ["10.244.0.0/24"]))],
                   ports: [(protocol: "TCP", port: 5000, end_port: 6000)])]),
        (name: "from-team-b", namespace: "dev",
         ingress: [(from: [(namespace_selector: (match_labels: {{"team": "b"}}), pod_selector: ())])]),
    ],
    workloads: [
        (name: "web-db", kind: TcpRr(request: 1, response: 1), from: Pod("web"), to: Service("db")),
        (name: "client-db", kind: TcpRr(request: 1, response: 1), from: Pod("client"), to: Pod("db"), port: 5432),
    ])"#
    )
}

#[test]
fn policies_load_into_the_model() {
    let c = ok(load_str(&scenario("flannel-vxlan"), "np.ron"));
    let ns: Vec<_> = c.policy.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(ns, ["default", "prod", "dev"]);
    assert_eq!(c.policy.namespaces[1].labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(c.policy.namespaces[2].labels.get(NAMESPACE_NAME_LABEL).map(String::as_str), Some("dev"));
    let pod_ns: Vec<_> = c.pods.iter().map(|p| (p.name.as_str(), p.namespace.as_str())).collect();
    assert_eq!(
        pod_ns,
        [
            ("node-1-pod-1", "default"),
            ("node-2-pod-1", "default"),
            ("web", "prod"),
            ("db", "prod"),
            ("client", "dev")
        ]
    );
    let p = &c.policy.policies;
    assert_eq!(p.len(), 4);
    assert_eq!((p[0].name.as_str(), p[0].namespace.as_str()), ("deny", "prod"));
    assert_eq!(p[0].pod_selector, LabelSelector::all());
    assert_eq!(p[0].policy_types, [PolicyType::Ingress], "defaulted: no egress rules");
    assert!(p[0].ingress.is_empty());
    assert_eq!(
        p[1].ingress[0].peers,
        [Peer::Pods { pods: Some(LabelSelector::labels(&[("app", "web")])), namespaces: None }]
    );
    assert_eq!(
        p[1].ingress[0].ports,
        [PolicyPort { protocol: Protocol::Tcp, port: Some(5432), end_port: None }]
    );
    assert_eq!(
        p[2].pod_selector.match_expressions,
        [Requirement { key: "app".into(), operator: Operator::In, values: vec!["web".into()] }]
    );
    assert_eq!(p[2].policy_types, [PolicyType::Egress]);
    assert_eq!(
        p[2].egress[0].peers,
        [Peer::IpBlock(IpBlock {
            cidr: "10.244.0.0/16".parse().unwrap(),
            except: vec!["10.244.0.0/24".parse().unwrap()]
        })]
    );
    assert_eq!(
        p[2].egress[0].ports,
        [PolicyPort { protocol: Protocol::Tcp, port: Some(5000), end_port: Some(6000) }]
    );
    assert_eq!(
        p[3].ingress[0].peers,
        [Peer::Pods {
            pods: Some(LabelSelector::all()),
            namespaces: Some(LabelSelector::labels(&[("team", "b")]))
        }]
    );
}

#[test]
fn flows_the_policies_deny() {
    let c = ok(load_str(&scenario("flannel-host-gw"), "np.ron"));
    let flows = c.policy_flows();
    let (web, db, client) =
        (c.pod_by_name("web").unwrap(), c.pod_by_name("db").unwrap(), c.pod_by_name("client").unwrap());
    let seen: Vec<_> = flows
        .iter()
        .map(|f| (f.workload, f.src, f.dst, f.protocol, f.port, f.verdict.is_allowed()))
        .collect();
    assert_eq!(
        seen,
        [
            (0, PolicyPeer::Pod(web), PolicyPeer::Pod(db), Protocol::Tcp, 5432, true),
            (1, PolicyPeer::Pod(client), PolicyPeer::Pod(db), Protocol::Tcp, 5432, false),
        ]
    );
    assert_eq!(flows[0].verdict.egress, Side::Allowed { policy: 2, rule: 0 });
    assert_eq!(flows[0].verdict.ingress, Side::Allowed { policy: 1, rule: 0 });
    let denied = c.policy_denied_flows();
    assert_eq!(denied.len(), 1);
    assert_eq!(
        denied[0].describe(&c),
        "workload \"client-db\": pod dev/client (10.244.0.4) -> pod prod/db (10.244.1.3) TCP 5432: denied \
         (egress: no policy selects the pod; ingress: denied, selected by prod/deny, prod/db-from-web and no \
         rule of theirs allows it)"
    );
}

#[test]
fn cnis_without_a_policy_engine_accept_policies() {
    for cni in Cni::ALL.into_iter().filter(|c| !c.enforces_network_policy()) {
        let c = ok(load_str(&scenario(cni.id()), "np.ron"));
        assert_eq!(c.policy.policies.len(), 4, "{cni}");
    }
}

#[test]
fn every_cni_loads_policies_and_none_loads_without() {
    for cni in Cni::ALL {
        let c = ok(load_str(&scenario(cni.id()), "np.ron"));
        assert_eq!(c.policy.policies.len(), 4, "{cni}");
    }
    // No policies: nothing to enforce, every CNI loads.
    let none = scenario("calico-bgp");
    let start = none.find("    network_policies: [").unwrap();
    let end = none.find("    workloads:").unwrap();
    let none = format!("{}    network_policies: [],\n{}", &none[..start], &none[end..]);
    let c = ok(load_str(&none, "np.ron"));
    assert!(c.policy.policies.is_empty() && c.policy_denied_flows().is_empty());
}

#[test]
fn scenarios_without_policies_have_the_default_namespace_only() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.ron");
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.policy.namespaces.len(), 1);
    assert_eq!(c.policy.namespaces[0].name, "default");
    assert!(c.policy.policies.is_empty());
    assert!(c.pods.iter().all(|p| p.namespace == "default"));
    assert!(c.policy_denied_flows().is_empty());
    assert!(c.policy_flows().iter().all(|f| f.verdict.is_allowed()));
}
