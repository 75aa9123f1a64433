//! Small clusters built in code, for unit tests and benchmarks (not part of the public API).

use std::collections::BTreeMap;

use crate::addr::Ipv4Net;
use crate::cluster::*;
use crate::cost::CostProfile;
use crate::time::{Duration, Instant};
use crate::units::{Bandwidth, ByteSize};

/// A flannel-host-gw cluster of `nodes` nodes with `pods` pods each, and one workload per
/// (client, server) pair given by pod index.
pub fn cluster(nodes: usize, pods: usize, kind: WorkloadKind, pairs: &[(usize, usize)]) -> Cluster {
    let node_cidr: Ipv4Net = "192.168.0.0/24".parse().unwrap();
    let pod_cidr: Ipv4Net = "10.244.0.0/16".parse().unwrap();
    let node_specs: Vec<NodeSpec> = (0..nodes)
        .map(|i| NodeSpec {
            name: format!("node-{}", i + 1),
            ip: node_cidr.nth(i as u64 + 1).unwrap(),
            cores: 2,
            nic_bandwidth: Bandwidth(10_000_000_000),
            mtu: 1500,
            pod_subnet: pod_cidr.subnet(24, i as u64).unwrap(),
            prefix: 24,
            rack: 0,
            gateway: None,
            kernel: Default::default(),
        })
        .collect();
    let pod_specs: Vec<PodSpec> = (0..nodes * pods)
        .map(|p| PodSpec {
            name: format!("node-{}-pod-{}", p / pods + 1, p % pods + 1),
            node: p / pods,
            ip: node_specs[p / pods].pod_subnet.nth((p % pods) as u64 + 2).unwrap(),
            mtu: 1500,
            labels: BTreeMap::new(),
            namespace: "default".into(),
        })
        .collect();
    Cluster {
        name: "test".into(),
        description: String::new(),
        seed: 1,
        duration: Duration::from_millis(10),
        cni: Cni::FlannelHostGw,
        network: Network {
            node_cidr,
            pod_cidr,
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            node_subnet_prefix: 24,
        },
        nodes: node_specs,
        pods: pod_specs,
        cni_options: CniOptions::default(),
        underlay: Underlay {
            fabric: Fabric::L2Switch,
            bandwidth: Bandwidth(10_000_000_000),
            propagation: Duration::from_micros(5),
            mtu: 1500,
            queue: ByteSize(512 * 1024),
            loss: 0.0,
            filter_icmp: false,
        },
        workloads: vec![Workload {
            name: "w".into(),
            kind,
            flows: pairs
                .iter()
                .map(|&(c, s)| (crate::cluster::Client::Pod(c), crate::cluster::Target::Pod(s)))
                .collect(),
            new_connection_per_request: false,
            port: 5201,
            start: Instant::ZERO,
            duration: Duration::from_millis(5),
            dont_fragment: false,
        }],
        costs: CostProfile::default(),
        proxy: crate::cluster::ProxyMode::Iptables,
        services: crate::cluster::ServiceTable::default(),
        generated: (0, 0),
        changes: Vec::new(),
        bgp: None,
        conntrack_max: None,
        masquerade_random_fully: None,
        nat_port_rovers: false,
        sweep: None,
        compare: None,
        externals: Vec::new(),
        policy: crate::policy::PolicyWorld {
            namespaces: vec![crate::policy::Namespace::new("default", BTreeMap::new())],
            policies: Vec::new(),
        },
        policy_catalog: Vec::new(),
        label_changes: Vec::new(),
    }
}
