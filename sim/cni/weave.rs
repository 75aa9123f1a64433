//! Weave Net (weave site/tasks/manage/fastdp.md, router/sleeve.go, router/fastdp.go): one L2
//! network for all pods (the whole pod CIDR on-link), pods on the `weave` bridge through
//! `vethwepl*` veths, MTU 1376, and between nodes either
//! - sleeve: the userspace router captures frames from the bridge and sends them over UDP 6783
//!   (`[sender][src peer][dst peer][length][frame]`), or
//! - fastdp: the OVS kernel datapath `datapath`, joined to the bridge by the `vethwe-bridge` /
//!   `vethwe-datapath` pair, sends frames through the VXLAN vport `vxlan-6784` (UDP 6784, DF
//!   set, UDP checksum zero, VNI = src short ID | dst short ID << 12).

use crate::addr::{Ipv4Net, Mac};
use crate::cluster::Cni;
use crate::net::bridge::Fdb;
use crate::net::route::{Proto, Route};
use crate::time::{Duration, Instant};
use crate::userspace::{ProcKind, UserProc, WEAVE_SLEEVE_PORT};
use crate::world::{DeviceKind, OvsDatapath, TunnelProto, UdpTunnel, World};

use super::{fnv32, pod_netns};

pub mod policy;

/// The fastdp VXLAN port (`vxlan-6784`).
const FASTDP_PORT: u16 = 6784;

/// The peer name of node `n`'s router (weave peer names are MACs).
fn peer_name(n: usize) -> Mac {
    Mac::local(0x77, n as u32 + 1)
}

pub(super) fn build(w: &mut World) {
    let c = w.cluster.clone();
    let fastdp = match c.cni {
        Cni::WeaveSleeve => false,
        Cni::WeaveFastdp => true,
        other => unreachable!("not a Weave mode: {other}"),
    };
    let prefix = c.network.pod_cidr.prefix();
    let mut bridges = Vec::new();
    for (n, node) in c.nodes.iter().enumerate() {
        let ns = w.nodes[n].ns;
        let mtu = c.pods.iter().find(|p| p.node == n).map_or(1376, |p| p.mtu);
        let kind = DeviceKind::Bridge { fdb: Fdb::default(), ports: Vec::new() };
        let br = w.add_device(ns, "weave".into(), Mac::local(0x70, n as u32 + 1), mtu, kind);
        w.add_addr(br, c.pod_gateway(n), prefix);
        bridges.push(br);
        let others = |f: &dyn Fn(usize) -> bool| {
            c.nodes.iter().enumerate().filter(|(m, _)| f(*m)).map(|(m, o)| (m, o.ip)).collect::<Vec<_>>()
        };
        if fastdp {
            let (to_br, to_dp) = w.add_veth(
                ns,
                "vethwe-bridge".into(),
                Mac::local(0x71, n as u32 + 1),
                ns,
                "vethwe-datapath".into(),
                Mac::local(0x72, n as u32 + 1),
                mtu,
            );
            w.enslave(br, to_br);
            let t = UdpTunnel {
                proto: TunnelProto::Vxlan,
                vni: 0,
                port: FASTDP_PORT,
                local: node.ip,
                fdb: Default::default(),
                learning: false,
                udp_csum: false,
                df: true,
                metadata: true,
                underlay: None,
            };
            let vport = w.add_udp_tunnel(
                ns,
                format!("vxlan-{FASTDP_PORT}"),
                Mac::local(0x73, n as u32 + 1),
                65535,
                t,
            );
            let peers = others(&|m| m != n).into_iter().map(|(m, ip)| (ip, m as u32 + 1)).collect();
            let dp = OvsDatapath {
                local_port: to_dp,
                tunnel: vport,
                short_id: n as u32 + 1,
                peers,
                macs: Default::default(),
            };
            let dp = w.add_device(
                ns,
                "datapath".into(),
                Mac::local(0x74, n as u32 + 1),
                mtu,
                DeviceKind::Ovs(Box::new(dp)),
            );
            w.devices[to_dp].master = Some(dp);
            w.devices[vport].master = Some(dp);
        } else {
            let proc = w.procs.len();
            let port = w.add_device(
                ns,
                "vethwe-pcap".into(),
                Mac::local(0x75, n as u32 + 1),
                mtu,
                DeviceKind::UserPort { proc },
            );
            w.enslave(br, port);
            let peers = others(&|m| m != n).into_iter().map(|(m, ip)| (ip, peer_name(m))).collect();
            w.procs.push(UserProc {
                name: "weaver".into(),
                node: n,
                ns,
                kind: ProcKind::WeaveSleeve {
                    port_dev: port,
                    name: peer_name(n),
                    peers,
                    macs: Default::default(),
                },
                busy_until: Instant::ZERO,
                busy: Duration::ZERO,
                packets: 0,
                queues: Default::default(),
            });
            w.netns[ns].user_ports.insert(WEAVE_SLEEVE_PORT, proc);
        }
    }
    for (p, pod) in c.pods.iter().enumerate() {
        let host = w.nodes[pod.node].ns;
        let ns = pod_netns(w, p);
        let name = format!("vethwepl{:07x}", fnv32(pod.name.as_bytes()) & 0xfff_ffff);
        let (eth0, peer) = w.add_veth(
            ns,
            "eth0".into(),
            Mac::from_ip(pod.ip),
            host,
            name,
            Mac::local(0x76, p as u32 + 1),
            pod.mtu,
        );
        w.enslave(bridges[pod.node], peer);
        w.add_addr(eth0, pod.ip, prefix);
        let gw = c.pod_gateway(pod.node);
        w.add_route(Route::new(Ipv4Net::DEFAULT, Some(gw), eth0, Proto::Boot))
            .expect("the gateway is on-link");
    }
    npc_filter(w);
}

/// The bridge's port to the router: `vethwe-bridge` (fastdp); in sleeve mode cnisim's router
/// captures on its bridge port itself (Weave has the pair vethwe-bridge / vethwe-pcap there),
/// so the rules name that port.
fn bridge_port(cni: Cni) -> &'static str {
    if cni == Cni::WeaveFastdp {
        "vethwe-bridge"
    } else {
        "vethwe-pcap"
    }
}

/// weave-npc's filter table on every node (weave-kube runs it in every Weave pod, with or
/// without policies: its chains guard the bridge from the start).
fn npc_filter(w: &mut World) {
    let c = w.cluster.clone();
    for msg in policy::departures(&c.policy_catalog) {
        w.warn(msg);
    }
    let table = npc_table(&c, &c.policy);
    for n in 0..c.nodes.len() {
        let ns = w.nodes[n].ns;
        w.netns[ns].filter = Some(Box::new(table.clone()));
    }
}

/// weave-npc's table (the same on every node) for the policies of `world`.
pub(super) fn npc_table(
    c: &crate::cluster::Cluster,
    world: &crate::policy::PolicyWorld,
) -> crate::net::filter::FilterTable {
    let pods: Vec<crate::policy::PodRef> = (0..c.pods.len()).map(|p| c.pod_ref(p)).collect();
    policy::filter_table(world, &pods, bridge_port(c.cni))
}
