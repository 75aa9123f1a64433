//! Building a [`World`] from a [`Cluster`]: every node's host namespace and NIC, the underlay
//! (one switch, or a leaf-spine fabric of routers), hosts outside the cluster, the CNI's devices
//! and routes (`cni::build`), and each node's Service proxy with its rules.
//!
//! This is the only module that knows both the world's data (`world`) and the plugins that fill
//! it (`cni`); the world itself knows neither the plugins nor how it was built.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, Mac};
use crate::cluster::{Cluster, Fabric, NodeId, PodId, Rack};
use crate::cni;
use crate::engine::{Component, RngFactory};
use crate::net::route::{DevId, Proto, Route};
use crate::net::NsId;
use crate::time::{Duration, Instant};
use crate::world::*;

/// Builds the world for `cluster`: nodes with their host namespaces and NICs, the underlay
/// (switches, routers and cables), then whatever the CNI plugin creates.
pub fn build(cluster: &Cluster) -> World {
    let mut w = World {
        cluster: cluster.clone(),
        costs: cluster.costs.clone(),
        nodes: Vec::with_capacity(cluster.nodes.len()),
        netns: Vec::new(),
        devices: Vec::new(),
        links: Vec::new(),
        link_ends: Vec::new(),
        switches: Vec::new(),
        routers: Vec::new(),
        pcaps: Vec::new(),
        pod_ns: vec![usize::MAX; cluster.pods.len()],
        external_ns: Vec::new(),
        next_flood: 0,
        trace_control: false,
        control_hops: Vec::new(),
        arp_frames: 0,
        icmp_sent: 0,
        icmp_port_unreachable: 0,
        icmp_filtered: 0,
        warnings: Vec::new(),
        warnings_more: 0,
        procs: Vec::new(),
        proxies: Vec::new(),
        policy_stats: vec![Default::default(); cluster.nodes.len()],
        policy_agents: vec![Default::default(); cluster.nodes.len()],
        policy_syncs: Vec::new(),
        cilium_allocated: None,
        service_tables: vec![std::sync::Arc::new(start_services(cluster))],
        service_bpf: false,
        node_ips: cluster.nodes.iter().map(|n| n.ip).collect(),
        rngs: RngFactory::new(cluster.seed),
    };
    let u = cluster.underlay.clone();
    let segments = match &u.fabric {
        Fabric::L2Switch => 1,
        Fabric::LeafSpine { racks, .. } => racks.len(),
    };
    for r in 0..segments {
        let name = match &u.fabric {
            Fabric::L2Switch => "switch".to_string(),
            Fabric::LeafSpine { racks, .. } => format!("{}-switch", racks[r].name),
        };
        w.switches.push(Switch { name, ports: Vec::new(), mac_table: Default::default(), mtu: u.mtu });
    }
    crate::progress::stage("building the nodes", cluster.nodes.len() as u64);
    for (i, spec) in cluster.nodes.iter().enumerate() {
        crate::progress::inc();
        let nic = Nic {
            mac: Mac::local(0x00, i as u32 + 1),
            mtu: spec.mtu,
            ip: (spec.ip, spec.prefix),
            rack: spec.rack,
            rates: (spec.nic_bandwidth.0, u.bandwidth.0),
            gateway: spec.gateway,
        };
        let ns = add_host(&mut w, spec.name.clone(), i, NsKind::Host(i), true, nic);
        w.nodes.push(Node {
            ns,
            cores: vec![Core::default(); spec.cores as usize],
            kernel: spec.kernel,
            packets: 0,
            down: false,
        });
    }
    for (i, e) in cluster.externals.iter().enumerate() {
        let nic = Nic {
            mac: Mac::local(0x40, i as u32 + 1),
            mtu: u.mtu,
            ip: (e.ip, e.prefix),
            rack: e.rack,
            rates: (u.bandwidth.0, u.bandwidth.0),
            gateway: e.gateway,
        };
        let node = cluster.nodes.len() + i;
        let ns = add_host(&mut w, e.name.clone(), node, NsKind::External(i), false, nic);
        w.nodes.push(Node {
            ns,
            cores: vec![Core::default()],
            kernel: Default::default(),
            packets: 0,
            down: false,
        });
        w.external_ns.push(ns);
    }
    if let Fabric::LeafSpine { racks, spines, uplink, fabric_cidr, uplink_mtu } = &u.fabric {
        build_leaf_spine(&mut w, racks, *spines, (uplink.0, *uplink_mtu), *fabric_cidr);
    } else if let Some(gw) = upstream_gateway(&w.cluster) {
        build_upstream(&mut w, gw);
    }
    crate::progress::stage(&format!("{}: devices, routes and tables of every node", cluster.cni), 0);
    cni::build(&mut w);
    crate::progress::stage("the proxies' rules on every node", cluster.nodes.len() as u64);
    build_proxies(&mut w);
    for ns in &mut w.netns {
        ns.main.shrink_to_fit();
        ns.local.shrink_to_fit();
    }
    w
}

/// The Services as the proxies first see them: without the endpoints on nodes that join later
/// (the endpoint controller adds a pod once its node is there and the pod is ready).
fn start_services(c: &Cluster) -> crate::cluster::ServiceTable {
    let mut t = c.services.clone();
    let joining = c.joining();
    if joining.contains(&true) {
        for s in &mut t.services {
            s.endpoints.retain(|e| !joining[e.node]);
        }
    }
    t
}

/// Each node's proxy, programmed from the scenario's Services, and the server sockets of every
/// endpoint.
fn build_proxies(w: &mut World) {
    use crate::cluster::ProxyMode;
    use crate::proxy::{node::NodeProxy, NodeView};
    let c = &w.cluster;
    let mode = c.proxy;
    w.service_bpf = matches!(mode, ProxyMode::Ebpf { .. })
        || matches!(
            c.cni,
            crate::cluster::Cni::CiliumVxlan
                | crate::cluster::Cni::CiliumGeneve
                | crate::cluster::Cni::CiliumNative
        );
    let table = w.service_tables[0].clone();
    let mut proxies = Vec::with_capacity(c.nodes.len());
    let mut rules = crate::proxy::node::NodeRules::new(mode, &table);
    for (i, n) in c.nodes.iter().enumerate() {
        let view = NodeView {
            id: i,
            name: n.name.clone(),
            ip: n.ip,
            random_fully: c.masquerade_random_fully.unwrap_or(true),
        };
        let max = c.conntrack_max.unwrap_or_else(|| crate::net::conntrack::kube_proxy_max(n.cores));
        let rng = w.rngs.stream(Component::Proxy, i as u64);
        proxies.push(NodeProxy::new(view, table.clone(), &mut rules, max, rng));
        crate::progress::inc();
    }
    w.proxies = proxies;
    if mode == ProxyMode::Userspace {
        let needed = crate::proxy::userspace::Portals::ports_needed(&table);
        let got = w.proxies.first().map_or(0, |p| p.proxy_ports.len());
        if got < needed {
            w.warn(format!(
                "kube-proxy (userspace): only {got} of {needed} Service ports got a proxy socket; the \
                 ephemeral port range 32768-60999 is exhausted, so the other Services are unreachable"
            ));
        }
        for node in 0..w.proxies.len() {
            let ns = w.nodes[node].ns;
            let pairs = table
                .services
                .iter()
                .enumerate()
                .filter(|(_, s)| s.cluster_ip.is_some())
                .flat_map(|(si, s)| (0..s.ports.len()).map(move |pi| (si, pi)));
            let portals: HashMap<u16, (usize, usize)> =
                w.proxies[node].proxy_ports.iter().copied().zip(pairs).collect();
            let proc = w.procs.len();
            for &port in portals.keys() {
                w.netns[ns].user_ports.insert(port, proc);
            }
            w.procs.push(crate::userspace::UserProc {
                name: "kube-proxy".into(),
                node,
                ns,
                kind: crate::userspace::ProcKind::KubeProxy(Box::new(crate::userspace::KubeProxy::new(
                    portals,
                    table.clone(),
                ))),
                busy_until: Instant::ZERO,
                busy: Duration::ZERO,
                packets: 0,
                queues: Default::default(),
            });
            w.proxies[node].proc = Some(proc);
        }
    }
    // Every endpoint's pod listens, also one on a node that joins later.
    let binds: Vec<(PodId, u16)> = w
        .cluster
        .services
        .services
        .iter()
        .flat_map(|s| {
            s.endpoints.iter().flat_map(move |e| s.ports.iter().map(move |p| (e.pod, p.target_port)))
        })
        .collect();
    for (pod, port) in binds {
        let ns = w.pod_ns[pod];
        w.netns[ns].udp_ports.insert(port);
    }
    let cilium = matches!(
        w.cluster.cni,
        crate::cluster::Cni::CiliumVxlan
            | crate::cluster::Cni::CiliumGeneve
            | crate::cluster::Cni::CiliumNative
    );
    if cilium && mode.is_kube_proxy() && !w.cluster.services.services.is_empty() {
        w.warn(format!(
            "{}: Cilium's bpf_lxc load-balances ClusterIP traffic from pods itself; kube-proxy's {mode} \
             rules only see NodePort and host traffic",
            w.cluster.cni
        ));
    }
    if matches!(w.cluster.cni, crate::cluster::Cni::Macvlan | crate::cluster::Cni::IpvlanL3)
        && !w.cluster.services.services.is_empty()
        && mode != (ProxyMode::Ebpf { socket_lb: true })
    {
        w.warn(format!(
            "{}: pod traffic bypasses the host namespace, so no proxy rules see it and ClusterIP \
             Services are unreachable from pods (socket-level LB, proxy ebpf, would work)",
            w.cluster.cni
        ));
    }
}

/// A machine's `eth0` on the underlay.
struct Nic {
    mac: Mac,
    mtu: u32,
    ip: (Ipv4Addr, u8),
    rack: usize,
    /// (NIC rate, switch port rate).
    rates: (u64, u64),
    /// The rack's ToR in a leaf-spine fabric; else the upstream gateway is used.
    gateway: Option<Ipv4Addr>,
}

/// A host namespace with `eth0` cabled to its rack's switch and a default route: a node, or a
/// machine outside the cluster.
fn add_host(w: &mut World, name: String, node: NodeId, kind: NsKind, forward: bool, nic: Nic) -> NsId {
    let ns = w.add_netns(name, node, kind, forward);
    let dev = w.add_device(ns, "eth0".into(), nic.mac, nic.mtu, DeviceKind::Nic { tx: 0 });
    w.add_addr(dev, nic.ip.0, nic.ip.1);
    let propagation = w.cluster.underlay.propagation;
    w.attach_to_switch(nic.rack, dev, nic.rates.0, nic.rates.1, propagation);
    // The NIC's qdiscs in front of the cable: `mq` with one pfifo_fast of txqueuelen packets
    // per transmit queue, and one transmit queue per core (the channel count mlx5, ena and
    // multiqueue virtio_net default to; XPS maps each core to its own). cnisim keeps one
    // queue for the cable: it holds txqueuelen packets per core.
    let (txqueuelen, cores) = match kind {
        NsKind::Host(n) => (w.cluster.nodes[n].kernel.txqueuelen, w.cluster.nodes[n].cores),
        // A host outside the cluster has one core (`World::nodes`).
        _ => (crate::cluster::KernelQueues::default().txqueuelen, 1),
    };
    if let DeviceKind::Nic { tx } = w.devices[dev].kind {
        // pfifo_fast limits packets (skbs), not bytes: a TSO super-packet is one skb. The
        // underlay's byte budget is the switch ports'.
        w.links[tx].packet_limit = Some(txqueuelen as usize * cores as usize);
        w.links[tx].queue_limit = u64::MAX;
    }
    if let Some(gw) = nic.gateway.or_else(|| upstream_gateway(&w.cluster)) {
        w.add_route(Route::new(Ipv4Net::DEFAULT, Some(gw), dev, Proto::Boot))
            .expect("the gateway is on the host's own subnet");
    }
    ns
}

/// On one L2 switch, the nodes' default gateway: the last host address of `node_cidr` when no
/// node holds it, the site's upstream router ([`build_upstream`]). Linux hosts always have
/// one, and Calico's proxy ARP for 169.254.1.1 relies on the host having a route to it.
fn upstream_gateway(c: &Cluster) -> Option<Ipv4Addr> {
    let net = c.network.node_cidr;
    let gw = net.nth(net.size().checked_sub(2)?)?;
    (net.hosts() >= 2 && c.nodes.iter().all(|n| n.ip != gw)).then_some(gw)
}

/// The site's upstream router on a single L2 switch: `eth0` with the nodes' gateway address,
/// a route to the node subnet and nothing else. What the nodes send it for an address they
/// have no route of their own to (a pod block whose BGP route has not arrived or was
/// withdrawn) is dropped there as `no_route`, as a site router that is not a BGP peer of the
/// cluster (Calico's node-to-node mesh or reflectors) has no route to pod blocks; it sends no
/// ICMP unreachable (ARCHITECTURE.md).
fn build_upstream(w: &mut World, gw: Ipv4Addr) {
    let u = w.cluster.underlay.clone();
    let ns = w.add_router("upstream".into());
    let port = w.add_device(ns, "eth0".into(), Mac::local(0x50, 1), u.mtu, DeviceKind::Nic { tx: 0 });
    w.add_addr(port, gw, w.cluster.network.node_cidr.prefix());
    w.attach_to_switch(0, port, u.bandwidth.0, u.bandwidth.0, u.propagation);
}

/// The routers of a leaf-spine fabric. Each ToR is a router with `eth0` on its rack's switch
/// (holding the rack gateway address) and `swpN` towards spine N over a /31 from
/// `fabric_cidr`; its default route spreads over the spines by ECMP. Each spine has `swpN`
/// towards ToR N and one route per rack subnet. The ToR-to-rack-switch hop stands for the
/// ToR's own switching ASIC: a cable with no propagation delay at the uplink rate times the
/// spine count, so it adds serialisation but never becomes the bottleneck.
fn build_leaf_spine(
    w: &mut World,
    racks: &[Rack],
    spines: u32,
    (uplink, uplink_mtu): (u64, u32),
    fabric_cidr: Ipv4Net,
) {
    let u = w.cluster.underlay.clone();
    let mut tor_uplinks = Vec::new();
    let tors: Vec<NsId> = racks
        .iter()
        .enumerate()
        .map(|(r, rack)| {
            let ns = w.add_router(format!("{}-tor", rack.name));
            let port = w.add_device(
                ns,
                "eth0".into(),
                Mac::local(0x10, r as u32 + 1),
                u.mtu,
                DeviceKind::Nic { tx: 0 },
            );
            w.add_addr(port, rack.gateway, rack.subnet.prefix());
            let asic = uplink.saturating_mul(spines as u64);
            w.attach_to_switch(r, port, asic, asic, Duration::ZERO);
            ns
        })
        .collect();
    for s in 0..spines as usize {
        let spine = w.add_router(format!("spine-{}", s + 1));
        for (r, rack) in racks.iter().enumerate() {
            let p2p = fabric_cidr
                .subnet(31, (r * spines as usize + s) as u64)
                .expect("validated: fabric_cidr holds the /31s");
            let (tor_ip, spine_ip) = (p2p.network(), p2p.nth(1).expect("a /31 has 2 addresses"));
            let tor_if = w.add_device(
                tors[r],
                format!("swp{}", s + 1),
                Mac::local(0x20, (r * 256 + s) as u32 + 1),
                uplink_mtu,
                DeviceKind::Nic { tx: 0 },
            );
            let spine_if = w.add_device(
                spine,
                format!("swp{}", r + 1),
                Mac::local(0x30, (s * 4096 + r) as u32 + 1),
                uplink_mtu,
                DeviceKind::Nic { tx: 0 },
            );
            w.add_addr(tor_if, tor_ip, 31);
            w.add_addr(spine_if, spine_ip, 31);
            w.cable(tor_if, spine_if, uplink, u.propagation);
            tor_uplinks.push((r, spine_ip, tor_if));
            w.add_route(Route::new(rack.subnet, Some(tor_ip), spine_if, Proto::Static))
                .expect("connected /31");
        }
    }
    for (r, &tor) in tors.iter().enumerate() {
        let ecmp: Vec<(Ipv4Addr, DevId)> =
            tor_uplinks.iter().filter(|(rr, ..)| *rr == r).map(|&(_, ip, dev)| (ip, dev)).collect();
        let (gw, dev) = ecmp[0];
        debug_assert_eq!(w.devices[dev].ns, tor);
        let route = Route {
            ecmp: ecmp.into_boxed_slice(),
            ..Route::new(Ipv4Net::DEFAULT, Some(gw), dev, Proto::Static)
        };
        w.add_route(route).expect("connected /31s");
    }
}
