//! What each CNI plugin creates on a node. One builder per plugin family, each reading like the
//! plugin's own netlink calls and citing where the behaviour comes from.
//!
//! Builders run after `world::build` has made every node's host namespace, `eth0` and the
//! underlay. They add pod namespaces, devices, addresses, routes, neighbour and FDB entries.
//! A route the kernel would refuse is not installed; the refusal goes to `World::warnings`, as
//! the plugin's agent would log it.

pub mod calico;
mod cilium;
mod flannel;
mod underlay;
mod weave;

use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, Mac};
use crate::cluster::{Cni, NodeId, NodeSpec, PodId};
use crate::net::bridge::Fdb;
use crate::net::route::{DevId, Proto, Route};
use crate::net::NsId;
use crate::world::{DeviceKind, NsKind, World};

/// Builds the CNI's devices, addresses and routes on every node and pod of `w`.
pub fn build(w: &mut World) {
    match w.cluster.cni {
        Cni::FlannelHostGw | Cni::FlannelVxlan | Cni::FlannelUdp => flannel::build(w),
        Cni::CalicoBgp
        | Cni::CalicoIpip
        | Cni::CalicoIpipCrossSubnet
        | Cni::CalicoVxlan
        | Cni::CalicoVxlanCrossSubnet => calico::build(w),
        Cni::CiliumVxlan | Cni::CiliumGeneve | Cni::CiliumNative => cilium::build(w),
        Cni::Macvlan | Cni::IpvlanL3 => underlay::build(w),
        Cni::WeaveSleeve | Cni::WeaveFastdp => weave::build(w),
    }
    unenforced_policies(w);
}

/// What a node's policy agent programs for a set of policies: a filter table (Felix,
/// weave-npc) or Cilium's policy maps.
#[derive(Debug)]
pub enum NodePolicy {
    Filter(Box<crate::net::filter::FilterTable>),
    /// The maps and each pod's security identity (by pod index), which a label change moves.
    Cilium {
        maps: std::sync::Arc<crate::world::cilium_policy::PolicyMaps>,
        pod_identity: std::sync::Arc<Vec<crate::world::cilium_policy::Identity>>,
    },
}

/// What each node's policy agent programs for the policies of `world`; `None` for a plugin
/// without a policy engine. `allocated`: Cilium's identities so far, which keep their numbers.
pub fn policy_states(
    c: &crate::cluster::Cluster,
    world: &crate::policy::PolicyWorld,
    allocated: Option<&crate::world::cilium_policy::PolicyMaps>,
) -> Option<Vec<NodePolicy>> {
    c.cni.policy_engine()?;
    Some(match c.cni {
        Cni::CiliumVxlan | Cni::CiliumGeneve | Cni::CiliumNative => {
            let compiled = cilium::compile(c, world, allocated);
            let maps = std::sync::Arc::new(compiled.maps);
            let pod_identity = std::sync::Arc::new(compiled.pod_identity);
            (0..c.nodes.len())
                .map(|_| NodePolicy::Cilium { maps: maps.clone(), pod_identity: pod_identity.clone() })
                .collect()
        }
        Cni::WeaveSleeve | Cni::WeaveFastdp => {
            let table = weave::npc_table(c, world);
            (0..c.nodes.len()).map(|_| NodePolicy::Filter(Box::new(table.clone()))).collect()
        }
        _ => calico::felix_tables(c, world).into_iter().map(|t| NodePolicy::Filter(Box::new(t))).collect(),
    })
}

/// A plugin with no policy engine: the API server accepts the policies and nothing enforces
/// them. The run says so, with the connections they deny that will go through.
fn unenforced_policies(w: &mut World) {
    let c = &w.cluster;
    if c.policy_catalog.is_empty() || c.cni.policy_engine().is_some() {
        return;
    }
    let denied = c.policy_denied_flows();
    let later = c.policy_catalog.len() - c.policy.policies.len();
    let created =
        if later > 0 { format!(" ({later} of them created during the run)") } else { String::new() };
    let mut msg = format!(
        "{}: no NetworkPolicy engine; {} policies{created} are accepted by the API server and enforced by nothing",
        c.cni,
        c.policy_catalog.len()
    );
    if denied.is_empty() && later == 0 {
        msg.push_str(" (no connection of the workloads is one they deny)");
    } else if denied.is_empty() {
        msg.push_str(" (the policies in force at the start deny no connection of the workloads)");
    } else {
        let _ = std::fmt::Write::write_fmt(
            &mut msg,
            format_args!("; {} connections they deny go through: ", denied.len()),
        );
        let shown: Vec<String> = denied.iter().take(5).map(|f| f.describe(c)).collect();
        msg.push_str(&shown.join("; "));
        if denied.len() > 5 {
            let _ = std::fmt::Write::write_fmt(&mut msg, format_args!("; and {} more", denied.len() - 5));
        }
    }
    w.warn(msg);
}

/// Whether node `b`'s address is inside node `a`'s own subnet (its `eth0` address and prefix):
/// how Calico's CrossSubnet (`nodeInOurSubnet`) and flannel's DirectRouting decide.
fn same_subnet(a: &NodeSpec, b: &NodeSpec) -> bool {
    Ipv4Net::new(Ipv4Addr::from(u32::from(a.ip) & (u32::MAX << (32 - a.prefix))), a.prefix)
        .is_some_and(|net| net.contains(b.ip))
}

/// Installs `route`, or records the kernel's refusal as the agent `who` would log it.
fn install(w: &mut World, who: &str, route: Route) {
    if let Err(e) = w.add_route(route) {
        w.warn(format!("{who}: {e}"));
    }
}

fn eth0(w: &World, node: NodeId) -> DevId {
    w.dev_by_name(w.nodes[node].ns, "eth0").expect("world::build creates eth0 on every node")
}

/// The bridge plugin's pod plumbing (containernetworking/plugins `bridge`, as flannel's CNI
/// config delegates to it with `isDefaultGateway: true`): a bridge `name` on each node holding
/// the first address of the node's pod subnet; per pod a veth pair, `eth0` in the pod (MAC
/// `0a:58:<ip>`, the pod subnet route and `default via <bridge address>`), `vethXXXXXXXX` on
/// the host, enslaved to the bridge.
fn bridge_pods(w: &mut World, name: &str) {
    let cluster = w.cluster.clone();
    let prefix = cluster.network.node_subnet_prefix;
    for (n, node) in cluster.nodes.iter().enumerate() {
        let gw = cluster.pod_gateway(n);
        let pod_mtu = cluster.pods.iter().find(|p| p.node == n).map_or(node.mtu, |p| p.mtu);
        let kind = DeviceKind::Bridge { fdb: Fdb::default(), ports: Vec::new() };
        let br = w.add_device(w.nodes[n].ns, name.into(), Mac::from_ip(gw), pod_mtu, kind);
        w.add_addr(br, gw, prefix);
    }
    for (p, pod) in cluster.pods.iter().enumerate() {
        let host = w.nodes[pod.node].ns;
        let ns = pod_netns(w, p);
        let host_name = format!("veth{:08x}", fnv32(pod.name.as_bytes()));
        let host_mac = Mac::local(0xee, p as u32 + 1);
        let (eth0, peer) =
            w.add_veth(ns, "eth0".into(), Mac::from_ip(pod.ip), host, host_name, host_mac, pod.mtu);
        let br = w.dev_by_name(host, name).expect("bridge built above");
        w.enslave(br, peer);
        w.add_addr(eth0, pod.ip, prefix);
        let gw = cluster.pod_gateway(pod.node);
        w.add_route(Route::new(Ipv4Net::DEFAULT, Some(gw), eth0, Proto::Boot))
            .expect("the gateway is on-link");
    }
}

/// Creates pod `p`'s network namespace (the pause container's).
fn pod_netns(w: &mut World, p: PodId) -> NsId {
    let pod = &w.cluster.pods[p];
    let (name, node) = (pod.name.clone(), pod.node);
    let ns = w.add_netns(name, node, NsKind::Pod(p), false);
    w.pod_ns[p] = ns;
    ns
}

/// FNV-1a, for stable interface names (the plugins use random ones).
fn fnv32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ *b as u32).wrapping_mul(0x0100_0193))
}

/// 64-bit FNV-1a, for longer stable names.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
}
